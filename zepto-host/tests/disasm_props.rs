//! `zepto disasm` output assembles back to the same bytes: a property over random
//! valid programs of every VM level, made of every instruction the level has
//! (PARALLEL bodies included), encoded by the kernel's own encoder.

use half::f16;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use zepto_host::asm::{annotated, assemble};
use zepto_kernel::encoding::{max_uint_value, sint_range};
use zepto_kernel::vm::insn::{
    opcode_level, BinOp, Cmp, FieldType, Instruction, Operand, ReplyFlags, SwitchCases, Target,
    Threads, UnOp, MAX_EXPR_OFFSET,
};
use zepto_kernel::vm::Level;

/// Encoded bytes of one instruction.
type Code = Vec<u8>;

fn encode(i: &Instruction<'_>) -> Code {
    let mut out = vec![0u8; 4096];
    let n = i
        .encode(&mut out)
        .unwrap_or_else(|e| panic!("{i:?}: {e:?}"));
    out.truncate(n);
    out
}

fn sint2() -> impl Strategy<Value = i16> {
    let (lo, hi) = sint_range(2);
    (lo..=hi).prop_map(|v| i16::try_from(v).unwrap())
}

fn uint2() -> impl Strategy<Value = u16> {
    (0..=max_uint_value(2)).prop_map(|v| u16::try_from(v).unwrap())
}

fn uint4() -> impl Strategy<Value = u32> {
    (0..=max_uint_value(4)).prop_map(|v| u32::try_from(v).unwrap())
}

/// Any half-float bit pattern (NaNs and infinities included).
fn half() -> impl Strategy<Value = f16> {
    any::<u16>().prop_map(f16::from_bits)
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..6)
}

fn cmp() -> impl Strategy<Value = Cmp> {
    prop_oneof![Just(Cmp::Lt), Just(Cmp::Gt), Just(Cmp::Eq), Just(Cmp::Ne)]
}

fn fields() -> impl Strategy<Value = Vec<u8>> {
    vec(1u8..=5, 1..4)
}

fn unop() -> impl Strategy<Value = UnOp> {
    (0u8..7).prop_map(|c| UnOp::from_code(c).unwrap())
}

fn binop() -> impl Strategy<Value = BinOp> {
    (0u8..9).prop_map(|c| BinOp::from_code(c).unwrap())
}

fn offset() -> impl Strategy<Value = i16> {
    (-MAX_EXPR_OFFSET - 1..=MAX_EXPR_OFFSET).prop_filter("offset 0", |o| *o != 0)
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        half().prop_map(Operand::Immediate),
        (offset(), any::<bool>()).prop_map(|(offset, pop)| Operand::Stack { offset, pop }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Push),
        offset().prop_map(Target::Insert),
        offset().prop_map(Target::Replace),
    ]
}

/// One field of the given type with a valid value: the bytes `FieldType::read` takes.
fn field_value() -> impl Strategy<Value = (FieldType, Vec<u8>)> {
    ((1u8..=5), vec(any::<u8>(), 4)).prop_filter_map("unreadable field", |(c, raw)| {
        let f = FieldType::from_code(c)?;
        let (_, n) = f.read(&raw).ok()?;
        Some((f, raw[..n].to_vec()))
    })
}

fn cases() -> impl Strategy<Value = Vec<(i16, i16)>> {
    vec((sint2(), sint2()), 0..4)
}

fn switch_cases(cases: &[(i16, i16)], f: impl FnOnce(SwitchCases<'_>) -> Code) -> Code {
    let mut raw = vec![0u8; cases.len() * 6];
    let n = SwitchCases::encode_into(cases, &mut raw).unwrap();
    f(SwitchCases::from_raw(u16::try_from(cases.len()).unwrap(), &raw[..n]).unwrap())
}

/// Every instruction except PARALLEL, each with random valid operands; Level One's
/// restrictions (POPREPLIES 0, APPENDTOREPLY -1) when `level` is One.
fn simple(level: Level) -> Vec<BoxedStrategy<Code>> {
    let one = level == Level::One;
    let mut s: Vec<BoxedStrategy<Code>> = vec![
        vec(1u8..=255, 0..6)
            .prop_map(|f| encode(&Instruction::DeviceCaps { fields: &f }))
            .boxed(),
        (sint2(), data())
            .prop_map(|(bodypart, d)| encode(&Instruction::Exec { bodypart, data: &d }))
            .boxed(),
        data()
            .prop_map(|d| encode(&Instruction::PushReply { data: &d }))
            .boxed(),
        uint4()
            .prop_map(|ms| encode(&Instruction::Sleep { ms }))
            .boxed(),
        any::<bool>()
            .prop_map(|on| encode(&Instruction::Transmitter { on }))
            .boxed(),
        (uint4(), any::<bool>(), any::<bool>())
            .prop_map(|(secs, t, m)| {
                encode(&Instruction::McuSleep {
                    secs,
                    transmitter_on_when_back: t,
                    may_drop_earlier: m,
                })
            })
            .boxed(),
        (if one {
            Just(0).boxed()
        } else {
            uint2().boxed()
        })
        .prop_map(|n| encode(&Instruction::PopReplies { n }))
        .boxed(),
        (
            prop_oneof![
                Just(ReplyFlags::None),
                Just(ReplyFlags::IsFirst),
                Just(ReplyFlags::IsLast)
            ],
            proptest::option::of(uint2()),
        )
            .prop_map(|(flags, padding_to)| encode(&Instruction::Exit { flags, padding_to }))
            .boxed(),
        (
            if one {
                Just(-1).boxed()
            } else {
                sint2().boxed()
            },
            field_value(),
        )
            .prop_map(|(reply, (field, d))| {
                encode(&Instruction::AppendToReply {
                    reply,
                    field,
                    data: &d,
                })
            })
            .boxed(),
    ];
    if level >= Level::Tiny {
        s.extend([
            sint2()
                .prop_map(|delta| encode(&Instruction::Jmp { delta }))
                .boxed(),
            (cmp(), sint2(), fields(), sint2(), sint2())
                .prop_map(|(cmp, reply, f, threshold, delta)| {
                    encode(&Instruction::JmpIfReplyField {
                        cmp,
                        reply,
                        fields: &f,
                        threshold,
                        delta,
                    })
                })
                .boxed(),
            sint2()
                .prop_map(|reply| encode(&Instruction::MoveReplyToFront { reply }))
                .boxed(),
        ]);
    }
    if level >= Level::Small {
        s.extend([
            half()
                .prop_map(|value| encode(&Instruction::PushExprConstant { value }))
                .boxed(),
            (sint2(), fields())
                .prop_map(|(reply, f)| {
                    encode(&Instruction::PushExprReplyField { reply, fields: &f })
                })
                .boxed(),
            unop()
                .prop_map(|op| encode(&Instruction::ExprUnop { op }))
                .boxed(),
            (unop(), operand())
                .prop_map(|(op, src)| encode(&Instruction::ExprUnopEx { op, src }))
                .boxed(),
            (unop(), operand(), target())
                .prop_map(|(op, src, dst)| encode(&Instruction::ExprUnopEx2 { op, src, dst }))
                .boxed(),
            binop()
                .prop_map(|op| encode(&Instruction::ExprBinop { op }))
                .boxed(),
            (binop(), operand(), operand())
                .prop_map(|(op, a, b)| encode(&Instruction::ExprBinopEx { op, a, b }))
                .boxed(),
            (binop(), operand(), operand(), target())
                .prop_map(|(op, a, b, dst)| encode(&Instruction::ExprBinopEx2 { op, a, b, dst }))
                .boxed(),
            (cmp(), half(), sint2())
                .prop_map(|(cmp, threshold, delta)| {
                    encode(&Instruction::JmpIfExpr {
                        cmp,
                        threshold,
                        delta,
                    })
                })
                .boxed(),
            (cmp(), operand(), half(), sint2())
                .prop_map(|(cmp, src, threshold, delta)| {
                    encode(&Instruction::JmpIfExprEx {
                        cmp,
                        src,
                        threshold,
                        delta,
                    })
                })
                .boxed(),
            uint2()
                .prop_map(|addr| encode(&Instruction::Call { addr }))
                .boxed(),
            Just(encode(&Instruction::Ret)).boxed(),
            cases()
                .prop_map(|c| switch_cases(&c, |cases| encode(&Instruction::Switch { cases })))
                .boxed(),
            (operand(), cases())
                .prop_map(|(src, c)| {
                    switch_cases(&c, |cases| encode(&Instruction::SwitchEx { src, cases }))
                })
                .boxed(),
            (offset(), half(), sint2(), any::<bool>())
                .prop_map(|(offset, threshold, delta, inc)| {
                    encode(&if inc {
                        Instruction::IncAndJmpIf {
                            offset,
                            threshold,
                            delta,
                        }
                    } else {
                        Instruction::DecAndJmpIf {
                            offset,
                            threshold,
                            delta,
                        }
                    })
                })
                .boxed(),
        ]);
    }
    s
}

/// PARALLEL with 1 to 3 bodies, each 0 to 3 instructions drawn from `inner`.
fn parallel(inner: BoxedStrategy<Code>) -> BoxedStrategy<Code> {
    vec(vec(inner, 0..4).prop_map(|is| is.concat()), 1..4)
        .prop_map(|bodies| {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let mut raw = vec![0u8; bodies.iter().map(|b| b.len() + 3).sum()];
            let n = Threads::encode_into(&refs, &mut raw).unwrap();
            let threads = Threads::from_raw(u16::try_from(refs.len()).unwrap(), &raw[..n]).unwrap();
            encode(&Instruction::Parallel { threads })
        })
        .boxed()
}

/// One valid instruction of `level`: every instruction of the level, and for Medium
/// PARALLEL whose bodies may hold a PARALLEL of their own.
fn instruction(level: Level) -> BoxedStrategy<Code> {
    let base = simple(level);
    if level < Level::Medium {
        return Union::new(base).boxed();
    }
    let mut nested = base.clone();
    nested.push(parallel(Union::new(base.clone()).boxed()));
    let mut all = base;
    all.push(parallel(Union::new(nested).boxed()));
    Union::new(all).boxed()
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::One),
        Just(Level::Tiny),
        Just(Level::Small),
        Just(Level::Medium)
    ]
}

/// A program of up to 12 instructions of one level.
fn program() -> impl Strategy<Value = (Level, Code)> {
    level().prop_flat_map(|l| {
        (
            Just(l),
            vec(instruction(l), 0..12).prop_map(|is| is.concat()),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// What `zepto disasm` prints assembles back to the program's bytes.
    #[test]
    fn disasm_assembles_back((level, code) in program()) {
        let text = annotated(&code).join("\n");
        let back = assemble(&text)
            .map_err(|e| TestCaseError::fail(format!("{level:?}: {e}\n{text}")))?;
        prop_assert_eq!(&back, &code, "{:?}:\n{}", level, text);
        // Instructions print as instructions; raw bytes only stand for a half-float
        // NaN, whose payload the assembly syntax cannot write.
        for line in text.lines().filter(|l| l.starts_with(".bytes")) {
            prop_assert!(line.contains("NaN"), "{}", line);
        }
    }
}

/// The generator covers every opcode of every level, and nothing above the level.
#[test]
fn generator_covers_every_instruction() {
    let mut runner = TestRunner::deterministic();
    for l in [Level::One, Level::Tiny, Level::Small, Level::Medium] {
        let strategy = instruction(l);
        let mut seen = [false; 0x27];
        for _ in 0..3000 {
            let code = strategy.new_tree(&mut runner).unwrap().current();
            let op = code[0];
            assert!(opcode_level(op).is_some_and(|ol| ol <= l), "{l:?}: {op:#x}");
            seen[usize::from(op)] = true;
        }
        for op in 1u8..=0x26 {
            let expected = opcode_level(op).is_some_and(|ol| ol <= l);
            assert_eq!(seen[usize::from(op)], expected, "{l:?}: opcode {op:#x}");
        }
    }
}
