//! The compare-and-jump instructions (JMPIFREPLYFIELD, JMPIFEXPR, JMPIFEXPR_EX,
//! INCANDJMPIF, DECANDJMPIF) for every comparison kind over edge values (signed
//! zeros, infinities, NaN, the largest half-floats, 2048 where INC stops counting),
//! the levels that accept them, and FLAGS-AND-SIZE at its encoding boundaries.

use half::f16;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::*;
use zepto_kernel::vm::reply::frames;
use zepto_kernel::vm::*;
use zepto_kernel::HeapMem;

fn cfg(max_reply_buffer: u16) -> VmConfig {
    VmConfig {
        budget: 100,
        guaranteed_payload: 48,
        max_reply_buffer,
    }
}

fn p(insns: &[Instruction]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in insns {
        let mut buf = vec![0u8; 8192];
        let n = i.encode(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Runs `program` to its end; the exception and the reply.
fn run<const L: u8, const RS: usize, const ES: usize, const PT: usize>(
    vm: &mut Vm<L, RS, ES, PT>,
    program: &[u8],
) -> (Option<VmException>, Vec<u8>) {
    let mut heap_mem = HeapMem::<12288, 4>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let h = heap.alloc().unwrap();
    heap.set_request(h, program).unwrap();
    let flags = ExecFlags {
        is_first: true,
        is_last: false,
    };
    let step = vm.start(&mut heap, h, flags, &mut [], &mut hal).unwrap();
    let VmStep::Done { exception, .. } = step else {
        panic!("program waits")
    };
    (exception, heap.reply(h).unwrap().to_vec())
}

/// Half-floats at the edges: signed zeros, smallest subnormal, one, 2048 (where
/// adding one no longer changes the value), the largest finite values,
/// infinities and a NaN.
const EDGES: [u16; 14] = [
    0x0000, 0x8000, 0x0001, 0x3c00, 0xbc00, 0x4000, 0x67ff, 0x6800, 0xe800, 0x7bff, 0xfbff, 0x7c00,
    0xfc00, 0x7e00,
];

fn holds(cmp: Cmp, v: f32, t: f32) -> bool {
    match cmp {
        Cmp::Lt => v < t,
        Cmp::Gt => v > t,
        Cmp::Eq => v == t,
        Cmp::Ne => v != t,
    }
}

const CMPS: [Cmp; 4] = [Cmp::Lt, Cmp::Gt, Cmp::Eq, Cmp::Ne];
const MARK: f32 = 7.0;

fn bits(s: &[f16]) -> Vec<u16> {
    s.iter().map(|v| v.to_bits()).collect()
}

/// Runs `PUSH 9, PUSH v, <jump over the next PUSH 7>, PUSH 7` on VM-Small; the
/// stack after it, as bits.
fn stack_after(v: f16, jump: Instruction) -> Vec<u16> {
    let c = |x: f16| Instruction::PushExprConstant { value: x };
    let mut prog = p(&[c(f16::from_f32(9.0)), c(v), jump, c(f16::from_f32(MARK))]);
    // A program must reply.
    prog.extend(p(&[Instruction::PushReply { data: &[] }]));
    let mut vm = VmSmall::<4, 8>::new(cfg(256));
    let (e, _) = run(&mut vm, &prog);
    assert_eq!(e, None, "{prog:02x?}");
    bits(vm.expr_stack())
}

#[test]
fn jmpifexpr_every_kind_and_operand_form() {
    let (nine, mark) = (f16::from_f32(9.0).to_bits(), f16::from_f32(MARK).to_bits());
    for cmp in CMPS {
        for vb in EDGES {
            for tb in EDGES {
                let (v, t) = (f16::from_bits(vb), f16::from_bits(tb));
                let taken = holds(cmp, v.to_f32(), t.to_f32());
                let tail = |kept: bool| {
                    let mut s = vec![nine];
                    s.extend(kept.then_some(vb));
                    s.extend((!taken).then_some(mark));
                    s
                };
                let why = format!("{cmp:?} {vb:04x} {tb:04x}");
                let plain = Instruction::JmpIfExpr {
                    cmp,
                    threshold: t,
                    delta: 3,
                };
                assert_eq!(stack_after(v, plain), tail(false), "{why}");
                for (offset, pop) in [(1, true), (1, false), (-2, true), (-2, false)] {
                    let ex = Instruction::JmpIfExprEx {
                        cmp,
                        src: Operand::Stack { offset, pop },
                        threshold: t,
                        delta: 3,
                    };
                    assert_eq!(stack_after(v, ex), tail(!pop), "{why} {offset} {pop}");
                }
                // An immediate operand: the stack is left alone.
                let imm = Instruction::JmpIfExprEx {
                    cmp,
                    src: Operand::Immediate(v),
                    threshold: t,
                    delta: 3,
                };
                assert_eq!(stack_after(v, imm), tail(true), "{why} immediate");
            }
        }
    }
}

#[test]
fn incandjmpif_and_decandjmpif_every_edge_value() {
    let (nine, mark) = (f16::from_f32(9.0).to_bits(), f16::from_f32(MARK).to_bits());
    for vb in EDGES {
        for tb in EDGES {
            let (v, t) = (f16::from_bits(vb), f16::from_bits(tb));
            for inc in [true, false] {
                let d = if inc { 1.0 } else { -1.0 };
                let after = f16::from_f32(v.to_f32() + d);
                let cmp = if inc { Cmp::Lt } else { Cmp::Gt };
                let taken = holds(cmp, after.to_f32(), t.to_f32());
                for offset in [1, -2] {
                    let insn = if inc {
                        Instruction::IncAndJmpIf {
                            offset,
                            threshold: t,
                            delta: 3,
                        }
                    } else {
                        Instruction::DecAndJmpIf {
                            offset,
                            threshold: t,
                            delta: 3,
                        }
                    };
                    let mut want = vec![nine, after.to_bits()];
                    if after.is_nan() {
                        // NaN stays a NaN (its payload is not part of the result).
                        let got = stack_after(v, insn);
                        assert!(f16::from_bits(got[1]).is_nan(), "{vb:04x}");
                        assert_eq!(got.len(), if taken { 2 } else { 3 });
                        continue;
                    }
                    want.extend((!taken).then_some(mark));
                    assert_eq!(stack_after(v, insn), want, "{inc} {vb:04x} {tb:04x}");
                }
            }
        }
    }
}

#[test]
fn compare_and_jump_operand_errors() {
    let mut vm = VmSmall::<4, 8>::new(cfg(256));
    // PUSH 1 at 0; the instruction at 3.
    let cases: [(&[u8], ExceptionCode); 7] = [
        // EXPRUNOP POP (at 3), then JMPIFEXPR_LT (at 5) on the empty stack.
        (
            &[0x12, 0x00, 0x18, 0x00, 0x3c, 0x00],
            ExceptionCode::ExprStackUnderflow,
        ),
        // JMPIFEXPR_EX_EQ at offset 2 of a one-value stack.
        (
            &[0x1E, 0x08, 0x00, 0x3c, 0x00],
            ExceptionCode::ExprStackInvalidOffset,
        ),
        // JMPIFEXPR_EX_NE with an immediate and the pop flag: invalid.
        (
            &[0x1F, 0x02, 0x00, 0x3c, 0x00],
            ExceptionCode::InvalidParameter,
        ),
        // INCANDJMPIF at offset 0.
        (
            &[0x24, 0x00, 0x00, 0x3c, 0x00],
            ExceptionCode::InvalidParameter,
        ),
        // DECANDJMPIF at offset 2 of a one-value stack.
        (
            &[0x25, 0x04, 0x00, 0x3c, 0x00],
            ExceptionCode::ExprStackInvalidOffset,
        ),
        // INCANDJMPIF ending inside its THRESHOLD.
        (&[0x24, 0x01, 0x00], ExceptionCode::InvalidInstruction),
        // DECANDJMPIF jumping before the program.
        (
            &[0x25, 0x01, 0x00, 0xbc, 0x4F],
            ExceptionCode::InvalidParameter,
        ),
    ];
    for (insn, code) in cases {
        let mut prog = vec![0x10, 0x00, 0x3c];
        prog.extend_from_slice(insn);
        let (e, _) = run(&mut vm, &prog);
        let e = e.unwrap_or_else(|| panic!("{prog:02x?}"));
        let at = if insn[0] == 0x12 { 5 } else { 3 };
        assert_eq!((e.code, e.position), (code, at), "{prog:02x?}");
    }
}

#[test]
fn jmpifreplyfield_every_kind_and_field_type() {
    // (reply bytes, field type, its value as the comparison sees it)
    let fields: [(&[u8], u8, f64); 10] = [
        (&[0x00], 3, 0.0),
        (&[0x80], 3, 128.0),
        (&[0xff], 3, 255.0),
        (&[0xff, 0xff], 4, 65535.0),
        (&[0x00, 0x80], 4, 32768.0),
        (&[0x01], 2, -1.0),
        (&[0x02], 2, 1.0),
        (&[0x81, 0x00], 1, 129.0),
        (&[0x00, 0xbc], 5, -1.0),
        (&[0x00, 0x7e], 5, f64::NAN),
    ];
    let thresholds = [-32768i16, -1, 0, 1, 127, 128, 255, 256, 32767];
    for (body, ft, value) in fields {
        for (i, cmp) in CMPS.into_iter().enumerate() {
            for t in thresholds {
                let mut prog = p(&[Instruction::PushReply { data: body }]);
                let at = prog.len();
                prog.extend(p(&[
                    Instruction::JmpIfReplyField {
                        cmp,
                        reply: -1,
                        fields: &[ft],
                        threshold: t,
                        delta: 3,
                    },
                    Instruction::PushReply { data: &[0xAA] },
                ]));
                assert_eq!(prog[at], 0x0B + i as u8);
                let taken = holds(cmp, value as f32, f32::from(t));
                for level in 1..4 {
                    let (e, reply) = match level {
                        1 => run(&mut VmTiny::<4>::new(cfg(256)), &prog),
                        2 => run(&mut VmSmall::<4, 4>::new(cfg(256)), &prog),
                        _ => run(&mut VmMedium::<4, 4, 2>::new(cfg(256)), &prog),
                    };
                    assert_eq!(e, None, "{prog:02x?}");
                    let n = frames(&reply).count();
                    assert_eq!(n, if taken { 1 } else { 2 }, "{cmp:?} {body:02x?} {t}");
                }
            }
        }
    }
}

#[test]
fn compare_and_jump_levels() {
    // Each instruction after a one-byte PUSHREPLY (so JMPIFREPLYFIELD has a reply)
    // and PUSHEXPR_CONSTANT 1.0 (Small and up), jumping 0.
    let insns: Vec<(u8, Vec<u8>)> = (0x0Bu8..=0x0E)
        .map(|o| (o, vec![o, 0x01, 0x03, 0x00, 0x00, 0x00]))
        .chain((0x18u8..=0x1B).map(|o| (o, vec![o, 0x00, 0x3c, 0x00])))
        .chain((0x1Cu8..=0x1F).map(|o| (o, vec![o, 0x04, 0x00, 0x3c, 0x00])))
        .chain([0x24u8, 0x25].map(|o| (o, vec![o, 0x01, 0x00, 0x3c, 0x00])))
        .collect();
    for (opcode, insn) in insns {
        let small_only = opcode >= 0x18;
        let mut prog = vec![0x03, 0x01, 0x05];
        let mut with_expr = prog.clone();
        with_expr.extend([0x10, 0x00, 0x3c]);
        prog.extend(&insn);
        with_expr.extend(&insn);
        let (e, _) = run(&mut VmOne::new(cfg(256)), &prog);
        let e = e.unwrap();
        assert_eq!((e.code, e.position), (ExceptionCode::InvalidInstruction, 3));
        let (e, _) = run(&mut VmTiny::<4>::new(cfg(256)), &prog);
        if small_only {
            let e = e.unwrap();
            assert_eq!((e.code, e.position), (ExceptionCode::InvalidInstruction, 3));
        } else {
            assert_eq!(e, None, "{opcode:02x}");
        }
        let (e, _) = run(&mut VmSmall::<4, 4>::new(cfg(256)), &with_expr);
        assert_eq!(e, None, "{opcode:02x}");
        let (e, _) = run(&mut VmMedium::<4, 4, 2>::new(cfg(256)), &with_expr);
        assert_eq!(e, None, "{opcode:02x}");
    }
}

/// FLAGS-AND-SIZE is Encoded-Unsigned-Int<max=2> of `size << 2 | flags`: one byte
/// up to a 31-byte body, two bytes from 32 up to 4127, three from 4128.
#[test]
fn frame_size_at_encoding_boundaries() {
    for (len, header) in [
        (0usize, &[0x01u8][..]),
        (31, &[0x7d]),
        (32, &[0x81, 0x00]),
        (4127, &[0xfd, 0x7f]),
        (4128, &[0x81, 0x80, 0x00]),
    ] {
        let data = vec![0x5a; len];
        let prog = p(&[Instruction::PushReply { data: &data }]);
        let mut vm = VmOne::new(cfg(6000));
        let (e, reply) = run(&mut vm, &prog);
        assert_eq!(e, None);
        assert_eq!(&reply[..header.len()], header, "{len}");
        assert_eq!(&reply[header.len()..], &data[..], "{len}");
        // With a reply buffer of just header and body, the body is cut to leave
        // room for the longest (3-byte) FLAGS-AND-SIZE, and the frame says so.
        let limit = (len + header.len()) as u16;
        let room = usize::from(limit).saturating_sub(3);
        let mut vm = VmOne::new(cfg(limit));
        let (e, reply) = run(&mut vm, &prog);
        assert_eq!(e, None);
        let f: Vec<_> = frames(&reply).map(|f| f.unwrap()).collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].truncated, len > room, "{len}");
        assert_eq!(f[0].body, &data[..len.min(room)], "{len}");
        assert!(reply.len() <= usize::from(limit), "{len}");
    }
}
