//! Property tests: instruction encode/decode round trips, Display never fails, and
//! random programs at every level never panic, end or yield within the budget, and
//! leave no heap block behind.

use half::f16;
use proptest::prelude::*;
use zepto_kernel::hal::{Waiter, WaitingFor};
use zepto_kernel::plugins::*;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::*;
use zepto_kernel::vm::reply::{decode_exception, frames};
use zepto_kernel::vm::*;
use zepto_kernel::HeapMem;

fn operand(v: i16, imm: u16, pop: bool) -> Operand {
    let offset = v.clamp(-16384, 16383);
    if offset == 0 {
        Operand::Immediate(f16::from_bits(imm))
    } else {
        Operand::Stack { offset, pop }
    }
}

fn target(v: i16, push: bool) -> Target {
    match (v.clamp(-16384, 16383), push) {
        (0, _) => Target::Push,
        (o, true) => Target::Insert(o),
        (o, false) => Target::Replace(o),
    }
}

/// Builds instruction number `k` from raw material; `buf` holds encoded sub-parts.
fn build<'a>(
    k: u8,
    a: i16,
    b: i16,
    u: u16,
    w: u32,
    data: &'a [u8],
    buf: &'a mut [u8; 64],
) -> Instruction<'a> {
    let cmp = [Cmp::Lt, Cmp::Gt, Cmp::Eq, Cmp::Ne][usize::from(u % 4)];
    let fields: &'a [u8] = &[1, 2, 3, 4, 5][..usize::from(u % 5) + 1];
    let unop = UnOp::from_code((u % 7) as u8).unwrap();
    let binop = BinOp::from_code((u % 9) as u8).unwrap();
    let half = f16::from_bits(u);
    match k % 29 {
        0 => Instruction::DeviceCaps {
            fields: &[1, 2, 3, 4, 5, 6, 0x42][..data.len().min(7)],
        },
        1 => Instruction::Exec { bodypart: a, data },
        2 => Instruction::PushReply { data },
        3 => Instruction::Sleep { ms: w },
        4 => Instruction::Transmitter { on: a & 1 == 0 },
        5 => Instruction::McuSleep {
            secs: w,
            transmitter_on_when_back: a & 1 == 0,
            may_drop_earlier: b & 1 == 0,
        },
        6 => Instruction::PopReplies { n: u },
        7 => Instruction::Exit {
            flags: [ReplyFlags::None, ReplyFlags::IsFirst, ReplyFlags::IsLast][usize::from(u % 3)],
            padding_to: (a & 1 == 0).then_some(u),
        },
        8 => {
            buf[..2].copy_from_slice(&u.to_le_bytes());
            Instruction::AppendToReply {
                reply: a,
                field: FieldType::TwoBytes,
                data: &buf[..2],
            }
        }
        9 => Instruction::Jmp { delta: a },
        10 => Instruction::JmpIfReplyField {
            cmp,
            reply: a,
            fields,
            threshold: b,
            delta: a.wrapping_add(b),
        },
        11 => Instruction::MoveReplyToFront { reply: a },
        12 => Instruction::PushExprConstant { value: half },
        13 => Instruction::PushExprReplyField { reply: a, fields },
        14 => Instruction::ExprUnop { op: unop },
        15 => Instruction::ExprUnopEx {
            op: unop,
            src: operand(a, u, b & 1 == 0),
        },
        16 => Instruction::ExprUnopEx2 {
            op: unop,
            src: operand(a, u, b & 1 == 0),
            dst: target(b, a & 2 == 0),
        },
        17 => Instruction::ExprBinop { op: binop },
        18 => Instruction::ExprBinopEx {
            op: binop,
            a: operand(a, u, true),
            b: operand(b, u, false),
        },
        19 => Instruction::ExprBinopEx2 {
            op: binop,
            a: operand(a, u, false),
            b: operand(b, u, true),
            dst: target(a, b & 1 == 0),
        },
        20 => Instruction::JmpIfExpr {
            cmp,
            threshold: half,
            delta: a,
        },
        21 => Instruction::JmpIfExprEx {
            cmp,
            src: operand(a, u, false),
            threshold: half,
            delta: b,
        },
        22 => Instruction::Call { addr: u },
        23 => Instruction::Ret,
        24 | 25 => {
            let n = SwitchCases::encode_into(&[(a, b), (b, a)], buf).unwrap();
            let cases = SwitchCases::from_raw(2, &buf[..n]).unwrap();
            if k % 29 == 24 {
                Instruction::Switch { cases }
            } else {
                Instruction::SwitchEx {
                    src: operand(a, u, true),
                    cases,
                }
            }
        }
        26 => Instruction::IncAndJmpIf {
            offset: if a == 0 { 1 } else { a },
            threshold: half,
            delta: b,
        },
        27 => Instruction::DecAndJmpIf {
            offset: if b == 0 { -1 } else { b },
            threshold: half,
            delta: a,
        },
        _ => {
            let n = Threads::encode_into(&[data, &[0x12, 0x01]], buf).unwrap();
            Instruction::Parallel {
                threads: Threads::from_raw(2, &buf[..n]).unwrap(),
            }
        }
    }
}

fn encode(i: &Instruction) -> Vec<u8> {
    let mut out = [0u8; 256];
    let n = i.encode(&mut out).unwrap();
    out[..n].to_vec()
}

proptest! {
    #[test]
    fn encode_decode_round_trip(k in 0u8..29, a: i16, b: i16, u: u16, w: u32,
                                data in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut buf = [0u8; 64];
        let insn = build(k, a, b, u, w, &data, &mut buf);
        let bytes = encode(&insn);
        let (back, n) = Instruction::decode(&bytes).unwrap();
        prop_assert_eq!(n, bytes.len());
        prop_assert_eq!(encode(&back), bytes.clone());
        prop_assert_eq!(back.opcode(), bytes[0]);
        prop_assert_eq!(format!("{back}"), format!("{insn}"));
        if !format!("{insn}").contains("NaN") {
            prop_assert_eq!(back, insn);
        }
        // A decoded instruction followed by garbage still decodes to the same length.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xAB; 4]);
        prop_assert_eq!(Instruction::decode(&longer).unwrap().1, n);
        // Any strict prefix is an invalid (truncated) instruction.
        for cut in 0..n {
            prop_assert!(Instruction::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn decoded_bytes_re_encode_identically(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok((insn, n)) = Instruction::decode(&bytes) {
            prop_assert_eq!(encode(&insn), bytes[..n].to_vec());
            let _ = format!("{insn}");
        }
        let mut s = String::new();
        write_program(&mut s, &bytes).unwrap();
    }

    #[test]
    fn reply_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        for f in frames(&bytes) {
            let _ = f;
        }
        let _ = decode_exception(&bytes);
    }

    #[test]
    fn random_programs_end_or_yield(level in 0u8..4, parts in proptest::collection::vec(
        (0u8..29, any::<i16>(), any::<i16>(), any::<u16>(), 0u32..500,
         proptest::collection::vec(any::<u8>(), 0..6), any::<bool>()), 0..12),
        is_last: bool)
    {
        // Mostly valid instructions with small jumps, sometimes raw garbage.
        let mut program = Vec::new();
        for (k, a, b, u, w, data, raw) in &parts {
            if *raw {
                program.extend_from_slice(data);
            } else {
                let mut buf = [0u8; 64];
                let insn = build(*k, a % 8, b % 8, u % 64, *w, data, &mut buf);
                program.extend(encode(&insn));
            }
        }
        let flags = ExecFlags { is_first: !is_last, is_last };
        match level {
            0 => check(&mut VmOne::new(cfg()), &program, flags),
            1 => check(&mut VmTiny::<4>::new(cfg()), &program, flags),
            2 => check(&mut VmSmall::<4, 8>::new(cfg()), &program, flags),
            _ => check(&mut VmMedium::<4, 16, 4>::new(cfg()), &program, flags),
        }
    }
}

fn cfg() -> VmConfig {
    VmConfig {
        budget: 40,
        guaranteed_payload: 48,
        max_reply_buffer: 128,
    }
}

fn check<const L: u8, const RS: usize, const ES: usize, const PT: usize>(
    vm: &mut Vm<L, RS, ES, PT>,
    program: &[u8],
    flags: ExecFlags,
) {
    let mut heap_mem = HeapMem::<1024, 8>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let (mut ping, mut echo, mut pin) = (Ping, Echo, DigitalPin { pin: 2 });
    let mut sensor = SimSensor::new(10, 3, 20);
    let mut table = [
        Bodypart::new(0, &mut ping),
        Bodypart::new(1, &mut echo),
        Bodypart::new(2, &mut pin),
        Bodypart::new(-1, &mut sensor),
    ];
    let h = heap.alloc().unwrap();
    heap.set_request(h, program).unwrap();
    let mut step = vm.start(&mut heap, h, flags, &mut table, &mut hal).unwrap();
    for _ in 0..50 {
        match step {
            VmStep::Done { exception, .. } => {
                let reply = heap.reply(h).unwrap();
                assert!(reply.len() <= 128);
                match exception {
                    Some(e) => {
                        let d = decode_exception(reply).unwrap();
                        assert_eq!(d.code, e.code.code());
                        assert!(usize::from(d.position) <= program.len());
                    }
                    None => {
                        for f in frames(reply) {
                            f.unwrap();
                        }
                    }
                }
                break;
            }
            VmStep::Waiting(w) => {
                let w: WaitingFor = w;
                let wake = hal.wait_for(&w);
                step = vm.resume(&mut heap, h, &mut table, &mut hal, wake).unwrap();
            }
        }
    }
    // Every call fed the watchdog; whatever state, abort frees pseudo-thread blocks.
    assert!(hal.watchdog_feeds >= 1);
    vm.abort(&mut heap, &mut table);
    assert!(!vm.is_running());
    assert_eq!(heap.handles_in_use(), 1);
}
