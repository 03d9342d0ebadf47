//! Zepto VM behaviour: exact reply bytes per instruction and level, every VM
//! exception, loops, subroutines, SWITCH, PARALLEL, waits, budget and override.

use half::f16;
use zepto_kernel::hal::{Waiter, WaitingFor, WakeReason};
use zepto_kernel::heap::Handle;
use zepto_kernel::plugins::*;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::insn::*;
use zepto_kernel::vm::reply::{decode_exception, frames};
use zepto_kernel::vm::*;
use zepto_kernel::{Error, Heap, HeapMem, Parser};

/// Appends one byte, then throws (code 70, file hash 0xBEEF, line 12).
struct Thrower;
impl Plugin for Thrower {
    fn handle(
        &mut self,
        _c: &mut Parser,
        heap: &mut Heap<'_>,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        heap.append_reply_u8(reply, 7)?;
        Err(PluginFault::Exception(PluginException {
            code: 70,
            file_hash: 0xBEEF,
            line: 12,
        }))
    }
}

/// Fails with a kernel error.
struct Broken;
impl Plugin for Broken {
    fn handle(
        &mut self,
        _c: &mut Parser,
        _h: &mut Heap<'_>,
        _r: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        Err(PluginFault::Kernel(Error::Bus))
    }
}

/// Replies nothing.
struct Mute;
impl Plugin for Mute {
    fn handle(
        &mut self,
        _c: &mut Parser,
        _h: &mut Heap<'_>,
        _r: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        Ok(PluginStep::Done)
    }
}

const PING: i16 = 1;
const ECHO: i16 = 2;
const PIN: i16 = 3;
const SENSOR: i16 = 4;
const SLOW_A: i16 = 5;
const SLOW_B: i16 = 6;
const THROW: i16 = 7;
const BROKEN: i16 = 8;
const MUTE: i16 = 9;

fn cfg() -> VmConfig {
    VmConfig {
        budget: 100,
        guaranteed_payload: 48,
        max_reply_buffer: 256,
    }
}

fn p(insns: &[Instruction]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in insns {
        let mut buf = [0u8; 512];
        let n = i.encode(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn h16(v: f32) -> f16 {
    f16::from_f32(v)
}

/// The usual command: it opens a chain, so the reply closes it (ISLAST).
const USUAL: ExecFlags = ExecFlags {
    is_first: true,
    is_last: false,
};

/// A command that closed its chain: only a new chain (ISFIRST) can answer it, and
/// MCUSLEEP (receiver off) is allowed.
const CLOSING: ExecFlags = ExecFlags {
    is_first: false,
    is_last: true,
};

struct Outcome {
    step: VmStep,
    reply: Vec<u8>,
    waits: Vec<WaitingFor>,
    hal: TestHal<64>,
    handles_in_use: usize,
}

impl Outcome {
    fn exception(&self) -> Option<VmException> {
        match self.step {
            VmStep::Done { exception, .. } => exception,
            _ => panic!("not done"),
        }
    }
    fn flags(&self) -> ReplyFlags {
        match self.step {
            VmStep::Done { flags, .. } => flags,
            _ => panic!("not done"),
        }
    }
    fn bodies(&self) -> Vec<Vec<u8>> {
        frames(&self.reply)
            .map(|f| f.unwrap().body.to_vec())
            .collect()
    }
    /// `(code, position)` of a VM exception, checked against the reply bytes.
    fn exc(&self) -> (ExceptionCode, u16) {
        let e = self.exception().expect("exception expected");
        let r = decode_exception(&self.reply).unwrap();
        assert_eq!(r.code, e.code.code());
        assert_eq!(r.position, e.position);
        (e.code, e.position)
    }
}

/// Runs `program` to the end, waiting (in simulated time) whenever the VM asks.
fn run<const L: u8, const RS: usize, const ES: usize, const PT: usize>(
    vm: &mut Vm<L, RS, ES, PT>,
    program: &[u8],
    flags: ExecFlags,
) -> Outcome {
    let mut heap_mem = HeapMem::<2048, 12>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    run_in(vm, program, flags, &mut heap, &mut hal)
}

fn run_in<const L: u8, const RS: usize, const ES: usize, const PT: usize>(
    vm: &mut Vm<L, RS, ES, PT>,
    program: &[u8],
    flags: ExecFlags,
    heap: &mut Heap<'_>,
    hal: &mut TestHal<64>,
) -> Outcome {
    let (mut ping, mut echo, mut pin) = (Ping, Echo, DigitalPin { pin: 3 });
    let mut sensor = SimSensor::new(100, 5, 0);
    let mut slow_a = SimSensor::new(1000, 1, 300);
    let mut slow_b = SimSensor::new(2000, 1, 100);
    let (mut throw, mut broken, mut mute) = (Thrower, Broken, Mute);
    let mut table = [
        Bodypart::new(PING, &mut ping),
        Bodypart::new(ECHO, &mut echo),
        Bodypart::new(PIN, &mut pin),
        Bodypart::new(SENSOR, &mut sensor),
        Bodypart::new(SLOW_A, &mut slow_a),
        Bodypart::new(SLOW_B, &mut slow_b),
        Bodypart::new(THROW, &mut throw),
        Bodypart::new(BROKEN, &mut broken),
        Bodypart::new(MUTE, &mut mute),
    ];
    let h = heap.alloc().unwrap();
    heap.set_request(h, program).unwrap();
    let mut step = vm.start(heap, h, flags, &mut table, hal).unwrap();
    let mut waits = Vec::new();
    for _ in 0..1000 {
        let VmStep::Waiting(w) = step else { break };
        waits.push(w);
        let wake = hal.wait_for(&w);
        step = vm.resume(heap, h, &mut table, hal, wake).unwrap();
    }
    assert!(matches!(step, VmStep::Done { .. }), "program did not end");
    assert!(!vm.is_running());
    let reply = heap.reply(h).unwrap().to_vec();
    // The program stays in the request.
    assert_eq!(heap.request(h).unwrap(), program);
    heap.free(h).unwrap();
    let handles_in_use = heap_handles(heap);
    Outcome {
        step,
        reply,
        waits,
        hal: hal.clone(),
        handles_in_use,
    }
}

fn heap_handles(heap: &mut Heap<'_>) -> usize {
    // Allocate until full to count free handles, then give them back.
    let mut got = Vec::new();
    while let Ok(h) = heap.alloc() {
        got.push(h);
    }
    let free = got.len();
    for h in got {
        heap.free(h).unwrap();
    }
    12 - free
}

fn small() -> VmSmall<8, 8> {
    Vm::new(cfg())
}
fn medium() -> VmMedium<8, 16, 4> {
    Vm::new(cfg())
}

// ----- Level One ------------------------------------------------------------------

#[test]
fn pushreply_exact_bytes() {
    let mut vm = VmOne::new(cfg());
    let o = run(&mut vm, &[0x03, 0x02, 0x01, 0x02], USUAL);
    assert_eq!(o.reply, [0x09, 0x01, 0x02]);
    assert_eq!(o.flags(), ReplyFlags::IsLast);
    assert_eq!(o.exception(), None);
}

#[test]
fn exec_ping_echo_and_pin() {
    let mut vm = VmOne::new(cfg());
    // EXEC 1 "" ; EXEC 2 "abc" ; EXEC 3 "01" ; EXEC 3 "02"
    let prog = [
        0x02, 0x02, 0x00, 0x02, 0x04, 0x03, b'a', b'b', b'c', 0x02, 0x06, 0x01, 0x01, 0x02, 0x06,
        0x01, 0x02,
    ];
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(
        o.reply,
        [0x05, 0x01, 0x0d, b'a', b'b', b'c', 0x05, 0x01, 0x05, 0x01]
    );
    assert!(o.hal.pins[3]);
}

#[test]
fn plugin_exception_lands_in_its_frame() {
    let mut vm = VmOne::new(cfg());
    let o = run(
        &mut vm,
        &p(&[
            Instruction::Exec {
                bodypart: THROW,
                data: &[],
            },
            Instruction::Exec {
                bodypart: PING,
                data: &[],
            },
        ]),
        USUAL,
    );
    assert_eq!(
        o.reply,
        [0x40, 0x46, 0xEF, 0xBE, 0x0C, 0x05, 0x07, 0x05, 0x01]
    );
    let f: Vec<_> = frames(&o.reply).map(|f| f.unwrap()).collect();
    assert_eq!(
        f[0].exception,
        Some(PluginException {
            code: 70,
            file_hash: 0xBEEF,
            line: 12
        })
    );
    assert_eq!(f[1].exception, None);
}

#[test]
fn devicecaps_exact_bytes() {
    let mut vm = small();
    // LEVEL, FLOAT TYPE, REPLY STACK, PSEUDOTHREADS, unknown 7, PAYLOAD, SIZES
    let o = run(&mut vm, &[0x01, 2, 5, 4, 6, 7, 1, 3, 0], USUAL);
    assert_eq!(
        o.reply,
        [0x2d, 0x02, 0x01, 0x10, 0x00, 0xFF, 0x60, 0x80, 0x03, 0x10, 0x90, 0x01]
    );
    // VM-One has no expression stack: float type unsupported.
    let mut one = VmOne::new(cfg());
    let o = run(&mut one, &[0x01, 2, 5, 0], USUAL);
    assert_eq!(o.reply, [0x09, 0x00, 0xFF]);
    // Medium reports its pseudo-thread count.
    let mut m = medium();
    let o = run(&mut m, &[0x01, 2, 6, 0], USUAL);
    assert_eq!(o.reply, [0x09, 0x03, 0x08]);
}

#[test]
fn above_level_instruction_is_invalid() {
    let jmp = [0x0A, 0x00];
    let mut one = VmOne::new(cfg());
    let o = run(&mut one, &[0x03, 0x01, 0xAA, 0x0A, 0x00], USUAL);
    assert_eq!(o.exc(), (ExceptionCode::InvalidInstruction, 3));
    assert_eq!(o.reply, [0x01, 0x06, 0x05, 0xAA]);
    let mut tiny = VmTiny::<4>::new(cfg());
    assert_eq!(
        run(&mut tiny, &jmp, USUAL).exc().0,
        ExceptionCode::ProgramErrorInvalidReplySequence
    );
    let o = run(&mut tiny, &[0x10, 0x00, 0x3c], USUAL);
    assert_eq!(o.exc(), (ExceptionCode::InvalidInstruction, 0));
    let mut s = small();
    let o = run(&mut s, &[0x26, 0x01, 0x00], USUAL);
    assert_eq!(o.exc(), (ExceptionCode::InvalidInstruction, 0));
    for bad in [0x00u8, 0x27, 0xFF] {
        let mut m = medium();
        assert_eq!(
            run(&mut m, &[bad], USUAL).exc(),
            (ExceptionCode::InvalidInstruction, 0)
        );
    }
}

#[test]
fn exception_codes_one() {
    let mut vm = VmOne::new(cfg());
    // INVALIDENCODEDSIZE: POPREPLIES with a 4-byte Encoded-Int<max=2>.
    assert_eq!(
        run(&mut vm, &[0x07, 0xFF, 0xFF, 0xFF], USUAL).exc(),
        (ExceptionCode::InvalidEncodedSize, 0)
    );
    // PLUGINERROR: kernel error, and an empty reply.
    assert_eq!(
        run(&mut vm, &[0x02, 0x10, 0x00], USUAL).exc(),
        (ExceptionCode::PluginError, 0)
    );
    assert_eq!(
        run(&mut vm, &[0x02, 0x12, 0x00], USUAL).exc(),
        (ExceptionCode::PluginError, 0)
    );
    // Unknown body part.
    assert_eq!(
        run(&mut vm, &[0x02, 0x7e, 0x00], USUAL).exc(),
        (ExceptionCode::UnknownBodypart, 0)
    );
    // INVALIDPARAMETER: POPREPLIES 1 and APPENDTOREPLY 0 on VM-One, TRANSMITTER 2.
    assert_eq!(
        run(&mut vm, &[0x07, 0x01], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
    assert_eq!(
        run(&mut vm, &[0x03, 0x01, 0x01, 0x09, 0x00, 0x03, 0x05], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 3)
    );
    assert_eq!(
        run(&mut vm, &[0x05, 0x02], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
    // EXIT with REPLY-FLAGS=3.
    assert_eq!(
        run(&mut vm, &[0x03, 0x01, 0x01, 0x08, 0x03], USUAL).exc(),
        (ExceptionCode::ProgramErrorInvalidReplyFlag, 3)
    );
    // Truncated instruction.
    assert_eq!(
        run(&mut vm, &[0x03, 0x05, 0x01], USUAL).exc(),
        (ExceptionCode::InvalidInstruction, 0)
    );
}

#[test]
fn exit_rules() {
    let mut vm = VmOne::new(cfg());
    let push = [0x03, 0x01, 0x42];
    // Usual pattern: the command opened a chain, implicit EXIT ISLAST closes it.
    assert_eq!(run(&mut vm, &push, USUAL).flags(), ReplyFlags::IsLast);
    // Empty reply buffer at exit.
    assert_eq!(
        run(&mut vm, &[], USUAL).exc(),
        (ExceptionCode::ProgramErrorInvalidReplySequence, 0)
    );
    // EXIT ISFIRST inside the chain the command opened.
    let mut prog = push.to_vec();
    prog.extend_from_slice(&[0x08, 0x01]);
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc(),
        (ExceptionCode::ProgramErrorInvalidReplySequence, 3)
    );
    // Long command-reply: a command that closed its chain must EXIT ISFIRST.
    let not_last = CLOSING;
    let o = run(&mut vm, &prog, not_last);
    assert_eq!((o.exception(), o.flags()), (None, ReplyFlags::IsFirst));
    assert_eq!(
        run(&mut vm, &push, not_last).exc(),
        (ExceptionCode::ProgramErrorInvalidReplySequence, 3)
    );
    // Forced padding is reported, and must cover the reply buffer.
    let mut prog = push.to_vec();
    prog.extend_from_slice(&[0x08, 0x06, 0x0A]);
    let o = run(&mut vm, &prog, USUAL);
    assert!(matches!(
        o.step,
        VmStep::Done {
            flags: ReplyFlags::IsLast,
            padding_to: Some(10),
            exception: None
        }
    ));
    let mut prog = push.to_vec();
    prog.extend_from_slice(&[0x08, 0x06, 0x01]);
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc(),
        (ExceptionCode::InvalidParameter, 3)
    );
    // Reserved EXIT bits.
    assert_eq!(
        run(&mut vm, &[0x08, 0x0A], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
}

#[test]
fn mcusleep_rules_and_wait() {
    let mut vm = VmOne::new(cfg());
    // MCUSLEEP 2 TXON ; PUSHREPLY "01" ; EXIT ISFIRST
    let prog = [0x06, 0x02, 0x01, 0x03, 0x01, 0x01, 0x08, 0x01];
    let o = run(&mut vm, &prog, CLOSING);
    assert_eq!(o.exception(), None);
    assert_eq!(o.flags(), ReplyFlags::IsFirst);
    assert_eq!(o.waits, [WaitingFor::time(2000)]);
    assert!(o.hal.receiver_on && o.hal.transmitter_on);
    assert_eq!(o.reply, [0x05, 0x01]);
    // Inside an open chain: program error, receiver untouched.
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(
        o.exc(),
        (ExceptionCode::ProgramErrorInvalidReplySequence, 0)
    );
    // After MCUSLEEP the implicit EXIT ISLAST is a program error, so is an EXIT
    // ISLAST, and an empty buffer.
    let o = run(&mut vm, &[0x03, 0x01, 0x01, 0x06, 0x00, 0x00], CLOSING);
    assert_eq!(
        o.exc(),
        (ExceptionCode::ProgramErrorInvalidReplySequence, 6)
    );
    assert_eq!(o.flags(), ReplyFlags::IsFirst);
    // Reserved MCUSLEEP bits.
    assert_eq!(
        run(&mut vm, &[0x06, 0x00, 0x04], CLOSING).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
}

/// DEVICECAPS in a full heap: once an indicator's answer does not fit, the frame is
/// truncated there and no later indicator is answered, so the body stays a prefix
/// of the whole answer (a client reads the answers in the order it asked for
/// them). Here three answers of 5 bytes fit and the 4th does not; the LEVEL
/// answer asked for after it (1 byte) would still fit, and must not be appended.
#[test]
fn devicecaps_out_of_room_answers_a_prefix() {
    let sizes = run(&mut small(), &[0x01, 3, 0], USUAL).bodies().remove(0);
    assert_eq!(sizes.len(), 5);
    for threes in [16, 17] {
        let mut program = vec![0x01];
        program.extend(vec![3; threes]);
        program.extend([2, 0]);
        // The request and room for four answers of 5 bytes minus 2 bytes.
        let mut heap_mem = HeapMem::<36, 4>::new();
        let mut heap = heap_mem.heap();
        let mut hal = TestHal::<64>::default();
        let o = run_in(&mut small(), &program, USUAL, &mut heap, &mut hal);
        assert_eq!(o.exception(), None);
        let f: Vec<_> = frames(&o.reply).map(|f| f.unwrap()).collect();
        assert_eq!(f.len(), 1);
        assert!(f[0].truncated);
        assert_eq!(f[0].body, sizes.repeat(3), "{threes} x SIZES, then LEVEL");
    }
}

/// DEVICECAPS in every heap from too small for any answer to big enough for all:
/// never an exception (a frame that does not fit is truncated, its header always
/// has room), the body a prefix of the whole answer, truncated exactly when
/// shorter.
#[test]
fn devicecaps_in_every_heap_size_truncates_never_fails() {
    let program = [0x01, 3, 3, 3, 3, 2, 2, 0];
    let whole = run(&mut small(), &program, USUAL).bodies().remove(0);
    assert_eq!(whole.len(), 22);
    macro_rules! each_heap {
        ($($n:literal)*) => {$({
            let mut heap_mem = HeapMem::<$n, 4>::new();
            let mut heap = heap_mem.heap();
            let mut hal = TestHal::<64>::default();
            let o = run_in(&mut small(), &program, USUAL, &mut heap, &mut hal);
            assert_eq!(o.exception(), None, "heap {}", $n);
            let f: Vec<_> = frames(&o.reply).map(|f| f.unwrap()).collect();
            assert_eq!(f.len(), 1);
            assert!(whole.starts_with(f[0].body), "heap {}", $n);
            assert_eq!(f[0].truncated, f[0].body.len() < whole.len(), "heap {}", $n);
        })*};
    }
    each_heap!(10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36);
}

#[test]
fn sleep_waits_until_its_deadline() {
    let mut vm = VmOne::new(cfg());
    let mut heap_mem = HeapMem::<256, 4>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &[0x04, 0x64, 0x03, 0x01, 0x01])
        .unwrap();
    let mut ping = Ping;
    let mut t = [Bodypart::new(1, &mut ping)];
    let s = vm.start(&mut heap, h, USUAL, &mut t, &mut hal).unwrap();
    assert_eq!(s, VmStep::Waiting(WaitingFor::time(100)));
    assert!(vm.is_running());
    hal.now_ms += 40; // woken early (e.g. by a pin)
    let s = vm
        .resume(&mut heap, h, &mut t, &mut hal, WakeReason::Pin(1))
        .unwrap();
    assert_eq!(s, VmStep::Waiting(WaitingFor::time(60)));
    hal.now_ms += 60;
    let s = vm
        .resume(&mut heap, h, &mut t, &mut hal, WakeReason::Timeout)
        .unwrap();
    assert!(matches!(
        s,
        VmStep::Done {
            exception: None,
            ..
        }
    ));
    assert_eq!(heap.reply(h).unwrap(), [0x05, 0x01]);
    // Resume when nothing runs.
    assert_eq!(
        vm.resume(&mut heap, h, &mut t, &mut hal, WakeReason::Timeout),
        Err(Error::InvalidState)
    );
}

#[test]
fn transmitter_instruction() {
    let mut vm = VmOne::new(cfg());
    let o = run(&mut vm, &[0x05, 0x00, 0x03, 0x01, 0x01], USUAL);
    assert!(!o.hal.transmitter_on);
}

// ----- Level Tiny -----------------------------------------------------------------

#[test]
fn popreplies_appendtoreply_movetofront() {
    let mut vm = VmTiny::<4>::new(cfg());
    let three = [0x03, 0x01, 0x0A, 0x03, 0x01, 0x0B, 0x03, 0x01, 0x0C];
    let mut prog = three.to_vec();
    prog.extend_from_slice(&[0x07, 0x01]); // POPREPLIES 1
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.reply, [0x05, 0x0A, 0x05, 0x0B]);
    let mut prog = three.to_vec();
    prog.extend_from_slice(&[0x07, 0x00, 0x03, 0x01, 0x0D]); // POPREPLIES 0, PUSHREPLY
    assert_eq!(run(&mut vm, &prog, USUAL).reply, [0x05, 0x0D]);
    let mut prog = three.to_vec();
    prog.extend_from_slice(&[0x07, 0x04]);
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc(),
        (ExceptionCode::InvalidReplyNumber, 9)
    );
    // APPENDTOREPLY 0 U16 0x0201 ; APPENDTOREPLY -1 BYTE 9
    let mut prog = three.to_vec();
    prog.extend_from_slice(&[0x09, 0x00, 0x04, 0x01, 0x02, 0x09, 0x01, 0x03, 0x09]);
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(
        o.reply,
        [0x0D, 0x0A, 0x01, 0x02, 0x05, 0x0B, 0x09, 0x0C, 0x09]
    );
    // MOVEREPLYTOFRONT -2 (the middle frame)
    let mut prog = three.to_vec();
    prog.extend_from_slice(&[0x0F, 0x03]);
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.reply, [0x05, 0x0B, 0x05, 0x0A, 0x05, 0x0C]);
    // REPLY-NUMBER out of range, both signs.
    for n in [0x06u8, 0x07] {
        let mut prog = three.to_vec();
        prog.extend_from_slice(&[0x0F, n]); // 3, -4
        assert_eq!(
            run(&mut vm, &prog, USUAL).exc(),
            (ExceptionCode::InvalidReplyNumber, 9)
        );
    }
    // Reply stack overflow: five frames on a stack of four.
    let mut prog = three.to_vec();
    prog.extend_from_slice(&three[..6]);
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc(),
        (ExceptionCode::ReplyStackOverflow, 12)
    );
}

#[test]
fn jumps_and_reply_field_conditions() {
    let mut vm = VmTiny::<4>::new(cfg());
    let prog = p(&[
        Instruction::Exec {
            bodypart: SENSOR,
            data: &[],
        }, // value 100
        Instruction::JmpIfReplyField {
            cmp: Cmp::Eq,
            reply: -1,
            fields: &[4],
            threshold: 100,
            delta: 3,
        },
        Instruction::PushReply { data: &[0xEE] }, // skipped (3 bytes)
        Instruction::JmpIfReplyField {
            cmp: Cmp::Lt,
            reply: 0,
            fields: &[3],
            threshold: 100,
            delta: 3,
        }, // first byte 100 (0x64) not < 100
        Instruction::PushReply { data: &[0xAA] },
        Instruction::Jmp { delta: 3 },
        Instruction::PushReply { data: &[0xBB] }, // skipped
    ]);
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.bodies(), vec![vec![100, 0], vec![0xAA]]);
    // A field beyond the body, and a jump out of the program.
    let prog = p(&[
        Instruction::PushReply { data: &[1] },
        Instruction::JmpIfReplyField {
            cmp: Cmp::Ne,
            reply: -1,
            fields: &[3, 3],
            threshold: 0,
            delta: 0,
        },
    ]);
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc(),
        (ExceptionCode::InvalidParameter, 3)
    );
    assert_eq!(
        run(&mut vm, &[0x0A, 0x02], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
    assert_eq!(
        run(&mut vm, &[0x0A, 0x05], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
    // Backward jump over the program start.
    assert_eq!(
        run(&mut vm, &[0x0A, 0x05], USUAL).exc().0,
        ExceptionCode::InvalidParameter
    );
    // Empty FIELD-SEQUENCE.
    assert_eq!(
        run(&mut vm, &[0x0B, 0x01, 0x00, 0x00, 0x00], USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
}

// ----- Level Small ----------------------------------------------------------------

fn stack_after(program: &[u8]) -> Vec<f32> {
    let mut vm = small();
    let mut prog = program.to_vec();
    prog.extend_from_slice(&[0x03, 0x01, 0x00]);
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.exception(), None, "{:?}", o.reply);
    vm.expr_stack().iter().map(|v| v.to_f32()).collect()
}

fn imm(v: f32) -> Operand {
    Operand::Immediate(h16(v))
}
fn at(offset: i16) -> Operand {
    Operand::Stack { offset, pop: false }
}
fn pop_at(offset: i16) -> Operand {
    Operand::Stack { offset, pop: true }
}
fn c(v: f32) -> Instruction<'static> {
    Instruction::PushExprConstant { value: h16(v) }
}

#[test]
fn expression_instructions() {
    // PUSHEXPR_CONSTANT 1.5 -> 10 00 3e
    assert_eq!(p(&[c(1.5)]), [0x10, 0x00, 0x3e]);
    assert_eq!(stack_after(&[0x10, 0x00, 0x3e]), [1.5]);
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            c(2.5),
            Instruction::ExprBinop { op: BinOp::Minus }
        ])),
        [-1.5]
    );
    assert_eq!(
        stack_after(&p(&[c(3.0), Instruction::ExprUnop { op: UnOp::Inc }])),
        [4.0]
    );
    assert_eq!(
        stack_after(&p(&[c(3.0), Instruction::ExprUnop { op: UnOp::Pop }])),
        Vec::<f32>::new()
    );
    // EX: operand from the bottom, kept; result pushed.
    assert_eq!(
        stack_after(&p(&[
            c(5.0),
            c(7.0),
            Instruction::ExprUnopEx {
                op: UnOp::Minus,
                src: at(-1)
            }
        ])),
        [5.0, 7.0, -5.0]
    );
    // EX with pop of a lower slot collapses the stack.
    assert_eq!(
        stack_after(&p(&[
            c(5.0),
            c(7.0),
            Instruction::ExprUnopEx {
                op: UnOp::Copy,
                src: pop_at(2)
            }
        ])),
        [7.0, 5.0]
    );
    // EX2 replace / insert.
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            c(2.0),
            Instruction::ExprUnopEx2 {
                op: UnOp::Dec,
                src: at(1),
                dst: Target::Replace(-1)
            }
        ])),
        [1.0, 2.0]
    );
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            c(2.0),
            Instruction::ExprUnopEx2 {
                op: UnOp::Minus,
                src: imm(4.0),
                dst: Target::Insert(1)
            }
        ])),
        [1.0, -4.0, 2.0]
    );
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            Instruction::ExprUnopEx2 {
                op: UnOp::Copy,
                src: imm(9.0),
                dst: Target::Insert(-1)
            }
        ])),
        [9.0, 1.0]
    );
    // BINOP_EX with immediates and pops; BINOP_EX2 into a slot.
    assert_eq!(
        stack_after(&p(&[
            c(12.0),
            Instruction::ExprBinopEx {
                op: BinOp::BitAnd,
                a: pop_at(1),
                b: imm(10.0)
            }
        ])),
        [8.0]
    );
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            c(2.0),
            Instruction::ExprBinopEx2 {
                op: BinOp::Shl,
                a: at(2),
                b: imm(3.0),
                dst: Target::Replace(1)
            }
        ])),
        [1.0, 8.0]
    );
    // Both operands the same popped slot: popped once.
    assert_eq!(
        stack_after(&p(&[
            c(1.0),
            c(3.0),
            Instruction::ExprBinopEx {
                op: BinOp::Plus,
                a: pop_at(1),
                b: pop_at(1)
            }
        ])),
        [1.0, 6.0]
    );
    // PUSHEXPR_REPLYFIELD: second field of a reply.
    assert_eq!(
        stack_after(&p(&[
            Instruction::PushReply {
                data: &[0x05, 0x00, 0x3c]
            },
            Instruction::PushExprReplyField {
                reply: -1,
                fields: &[3, 5]
            },
            Instruction::PopReplies { n: 1 },
        ])),
        [1.0]
    );
}

#[test]
fn expression_exceptions() {
    let mut vm = VmSmall::<4, 2>::new(cfg());
    let cases: Vec<(Vec<u8>, ExceptionCode)> = vec![
        (
            p(&[Instruction::ExprUnop { op: UnOp::Inc }]),
            ExceptionCode::ExprStackUnderflow,
        ),
        (
            p(&[c(1.0), Instruction::ExprBinop { op: BinOp::Plus }]),
            ExceptionCode::ExprStackUnderflow,
        ),
        (
            p(&[
                c(1.0),
                Instruction::JmpIfExprEx {
                    cmp: Cmp::Lt,
                    src: at(2),
                    threshold: h16(0.0),
                    delta: 0,
                },
            ]),
            ExceptionCode::ExprStackInvalidOffset,
        ),
        (
            p(&[c(1.0), c(2.0), c(3.0)]),
            ExceptionCode::ExprStackOverflow,
        ),
        (
            p(&[
                Instruction::PushReply {
                    data: &[0xFF, 0xFF],
                },
                Instruction::PushExprReplyField {
                    reply: 0,
                    fields: &[4],
                },
            ]),
            ExceptionCode::InvalidExprData,
        ),
        (
            p(&[Instruction::JmpIfExpr {
                cmp: Cmp::Eq,
                threshold: h16(0.0),
                delta: 0,
            }]),
            ExceptionCode::ExprStackUnderflow,
        ),
        (p(&[Instruction::Ret]), ExceptionCode::ExprStackUnderflow),
        (
            p(&[c(100.0), Instruction::Ret]),
            ExceptionCode::InvalidParameter,
        ),
        (
            p(&[Instruction::Call { addr: 9 }]),
            ExceptionCode::InvalidParameter,
        ),
        // UNOP 9, POP of an immediate, EX2 with PUSH-FLAG=0 and offset 0.
        (vec![0x12, 0x09], ExceptionCode::InvalidParameter),
        (
            vec![0x13, 0x01, 0x02, 0x00, 0x3c],
            ExceptionCode::InvalidParameter,
        ),
        (
            vec![0x14, 0x01, 0x03, 0x00],
            ExceptionCode::InvalidParameter,
        ),
        (
            vec![0x24, 0x00, 0x00, 0x3c, 0x00],
            ExceptionCode::InvalidParameter,
        ),
    ];
    for (prog, code) in cases {
        let o = run(&mut vm, &prog, USUAL);
        assert_eq!(o.exception().map(|e| e.code), Some(code), "{prog:02x?}");
    }
}

#[test]
fn jmpifexpr_and_nan() {
    let prog = p(&[
        c(2.0),
        Instruction::JmpIfExpr {
            cmp: Cmp::Gt,
            threshold: h16(1.0),
            delta: 3,
        },
        c(9.0), // skipped
        c(f32::NAN),
        Instruction::JmpIfExpr {
            cmp: Cmp::Ne,
            threshold: h16(0.0),
            delta: 3,
        },
        c(8.0), // skipped: NaN != 0
        c(5.0),
    ]);
    assert_eq!(stack_after(&prog), [5.0]);
}

#[test]
fn loop_with_incandjmpif_collects_replies() {
    // i = 0; do { EXEC sensor } while (++i < 3)
    let body = p(&[Instruction::Exec {
        bodypart: SENSOR,
        data: &[],
    }]);
    let back = -((body.len() + 5) as i16);
    let mut prog = p(&[c(0.0)]);
    prog.extend_from_slice(&body);
    prog.extend(p(&[Instruction::IncAndJmpIf {
        offset: 1,
        threshold: h16(3.0),
        delta: back,
    }]));
    let mut vm = small();
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.bodies(), vec![vec![100, 0], vec![105, 0], vec![110, 0]]);
    assert_eq!(vm.expr_stack(), [h16(3.0)]);
    // DECANDJMPIF counting down from 2: two iterations.
    let mut prog = p(&[c(2.0)]);
    prog.extend_from_slice(&body);
    prog.extend(p(&[Instruction::DecAndJmpIf {
        offset: -1,
        threshold: h16(0.0),
        delta: back,
    }]));
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.bodies().len(), 2);
}

#[test]
fn call_and_ret() {
    // 0: CALL 6 ; 2: PUSHREPLY 02 ; 5: EXIT ISLAST ; 7: PUSHREPLY 01 ; 10: RET
    let prog = p(&[
        Instruction::Call { addr: 7 },
        Instruction::PushReply { data: &[2] },
        Instruction::Exit {
            flags: ReplyFlags::IsLast,
            padding_to: None,
        },
        Instruction::PushReply { data: &[1] },
        Instruction::Ret,
    ]);
    assert_eq!(prog.len(), 11);
    let mut vm = small();
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.reply, [0x05, 0x01, 0x05, 0x02]);
    assert!(vm.expr_stack().is_empty());
}

#[test]
fn switch_and_switch_ex() {
    let mut cases = [0u8; 32];
    let n = SwitchCases::encode_into(&[(1, 3), (2, 6)], &mut cases).unwrap();
    let cases = SwitchCases::from_raw(2, &cases[..n]).unwrap();
    let arms = p(&[
        Instruction::PushReply { data: &[0] }, // default
        Instruction::PushReply { data: &[1] }, // case 1
        Instruction::PushReply { data: &[2] }, // case 2
    ]);
    for (v, expect) in [
        (1.0, vec![vec![1], vec![2]]),
        (2.7, vec![vec![2]]),
        (7.0, vec![vec![0], vec![1], vec![2]]),
    ] {
        let mut prog = p(&[c(v), Instruction::Switch { cases }]);
        prog.extend_from_slice(&arms);
        let mut vm = small();
        let o = run(&mut vm, &prog, USUAL);
        assert_eq!(o.bodies(), expect, "{v}");
        assert!(vm.expr_stack().is_empty());
        let mut prog = p(&[c(v), Instruction::SwitchEx { src: at(1), cases }]);
        prog.extend_from_slice(&arms);
        let o = run(&mut vm, &prog, USUAL);
        assert_eq!(o.bodies(), expect, "{v}");
        assert_eq!(vm.expr_stack(), [h16(v)]);
    }
}

// ----- Level Medium ---------------------------------------------------------------

fn parallel(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut raw = [0u8; 512];
    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
    let n = Threads::encode_into(&refs, &mut raw).unwrap();
    let t = Threads::from_raw(bodies.len() as u16, &raw[..n]).unwrap();
    p(&[Instruction::Parallel { threads: t }])
}

#[test]
fn parallel_results_in_declaration_order() {
    // Thread 1 waits 300 ms (slow A), thread 2 100 ms (slow B): B finishes first.
    let t1 = p(&[
        Instruction::Exec {
            bodypart: SLOW_A,
            data: &[],
        },
        c(1.0),
    ]);
    let t2 = p(&[
        Instruction::Exec {
            bodypart: SLOW_B,
            data: &[],
        },
        c(2.0),
        Instruction::PushReply { data: &[0xB2] },
    ]);
    let mut prog = p(&[Instruction::PushReply { data: &[0xA0] }, c(7.0)]);
    prog.extend(parallel(&[t1, t2]));
    prog.extend(p(&[Instruction::PushReply { data: &[0xC0] }]));
    let mut vm = medium();
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.exception(), None, "{:02x?}", o.reply);
    assert_eq!(
        o.bodies(),
        vec![
            vec![0xA0],
            vec![0xE8, 0x03],
            vec![0xD0, 0x07],
            vec![0xB2],
            vec![0xC0]
        ]
    );
    assert_eq!(vm.expr_stack(), [h16(7.0), h16(1.0), h16(2.0)]);
    // Both plugins waited at the same time: 300 ms in all, not 400.
    assert_eq!(o.hal.now_ms, 300);
    assert_eq!(o.handles_in_use, 0);
}

#[test]
fn parallel_frozen_stack_access() {
    // Main stack [10, 20]; the thread reads the frozen part through EX offsets.
    let t = p(&[
        c(1.0),
        // own topmost (1) + frozen bottom (10) -> push 11
        Instruction::ExprBinopEx {
            op: BinOp::Plus,
            a: at(1),
            b: at(-1),
        },
        // offset 3 = past own two -> frozen topmost (20); -3 = own bottom (1)
        Instruction::ExprBinopEx {
            op: BinOp::Minus,
            a: at(3),
            b: at(-3),
        },
    ]);
    let mut prog = p(&[c(10.0), c(20.0)]);
    prog.extend(parallel(&[t]));
    prog.extend(p(&[Instruction::PushReply { data: &[0] }]));
    let mut vm = medium();
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.exception(), None);
    assert_eq!(
        vm.expr_stack()
            .iter()
            .map(|v| v.to_f32())
            .collect::<Vec<_>>(),
        [10.0, 20.0, 1.0, 11.0, 19.0]
    );
    // Popping, replacing or incrementing a frozen slot is a violation.
    for bad in [
        Instruction::ExprUnopEx {
            op: UnOp::Copy,
            src: pop_at(1),
        },
        Instruction::ExprUnopEx2 {
            op: UnOp::Copy,
            src: imm(0.0),
            dst: Target::Replace(-1),
        },
        Instruction::IncAndJmpIf {
            offset: 1,
            threshold: h16(0.0),
            delta: 0,
        },
    ] {
        let mut prog = p(&[c(10.0)]);
        prog.extend(parallel(&[p(&[bad])]));
        let o = run(&mut vm, &prog, USUAL);
        assert_eq!(o.exc(), (ExceptionCode::ExprStackFrozenViolation, 6));
        assert_eq!(o.handles_in_use, 0);
    }
}

#[test]
fn parallel_exceptions() {
    let mut vm = medium();
    let exit = p(&[Instruction::Exit {
        flags: ReplyFlags::IsLast,
        padding_to: None,
    }]);
    let mut prog = p(&[Instruction::PushReply { data: &[0x11] }]);
    prog.extend(parallel(&[
        p(&[Instruction::PushReply { data: &[0x22] }]),
        exit,
    ]));
    let o = run(&mut vm, &prog, USUAL);
    // The EXIT at offset 3+1+1+1+3+1 of the program; thread buffers are kept in order.
    assert_eq!(o.exc(), (ExceptionCode::InvalidInstruction, 10));
    let e = decode_exception(&o.reply).unwrap();
    let bodies: Vec<_> = frames(e.reply_buffer)
        .map(|f| f.unwrap().body.to_vec())
        .collect();
    assert_eq!(bodies, vec![vec![0x11], vec![0x22]]);
    assert_eq!(o.handles_in_use, 0);
    // Nested PARALLEL, too many threads, and a jump out of a thread.
    let nested = parallel(&[p(&[c(1.0)])]);
    let mut prog = parallel(&[nested]);
    prog.extend(p(&[Instruction::PushReply { data: &[0] }]));
    assert_eq!(
        run(&mut vm, &prog, USUAL).exc().0,
        ExceptionCode::InvalidInstruction
    );
    let five: Vec<Vec<u8>> = (0..5).map(|_| p(&[c(1.0)])).collect();
    assert_eq!(
        run(&mut vm, &parallel(&five), USUAL).exc(),
        (ExceptionCode::InvalidParameter, 0)
    );
    let jump_out = parallel(&[p(&[Instruction::Jmp { delta: 2 }])]);
    assert_eq!(
        run(&mut vm, &jump_out, USUAL).exc(),
        (ExceptionCode::InvalidParameter, 3)
    );
    // PARALLEL with no heap block left for the thread replies.
    let mut heap_mem = HeapMem::<512, 1>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let o = run_in(
        &mut vm,
        &parallel(&[p(&[c(1.0)])]),
        USUAL,
        &mut heap,
        &mut hal,
    );
    assert_eq!(o.exc(), (ExceptionCode::OutOfMemory, 0));
}

#[test]
fn same_plugin_in_two_threads_is_serialised() {
    let t = p(&[Instruction::Exec {
        bodypart: SLOW_B,
        data: &[],
    }]);
    let prog = parallel(&[t.clone(), t]);
    let mut vm = medium();
    let o = run(&mut vm, &prog, USUAL);
    assert_eq!(o.exception(), None);
    assert_eq!(o.bodies(), vec![vec![0xD0, 0x07], vec![0xD1, 0x07]]);
    assert_eq!(o.hal.now_ms, 200);
}

// ----- budget, abort, limits ------------------------------------------------------

#[test]
fn budget_yields_and_watchdog_is_fed() {
    let mut vm = VmTiny::<4>::new(VmConfig {
        budget: 10,
        ..cfg()
    });
    let mut heap_mem = HeapMem::<256, 4>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let h = heap.alloc().unwrap();
    heap.set_request(h, &[0x0A, 0x03]).unwrap(); // JMP -2 forever
    let mut t: [Bodypart; 0] = [];
    let s = vm.start(&mut heap, h, USUAL, &mut t, &mut hal).unwrap();
    assert_eq!(s, VmStep::Waiting(WaitingFor::time(0)));
    for _ in 0..5 {
        let s = vm
            .resume(&mut heap, h, &mut t, &mut hal, WakeReason::Timeout)
            .unwrap();
        assert_eq!(s, VmStep::Waiting(WaitingFor::time(0)));
    }
    assert_eq!(hal.watchdog_feeds, 6);
    vm.abort(&mut heap, &mut t);
    assert!(!vm.is_running());
}

#[test]
fn new_program_overrides_a_waiting_one() {
    let mut vm = medium();
    let mut heap_mem = HeapMem::<512, 6>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let mut slow = SimSensor::new(5, 1, 1000);
    let mut ping = Ping;
    let mut t = [
        Bodypart::new(SLOW_A, &mut slow),
        Bodypart::new(PING, &mut ping),
    ];
    let h = heap.alloc().unwrap();
    let waiting = parallel(&[p(&[Instruction::Exec {
        bodypart: SLOW_A,
        data: &[],
    }])]);
    heap.set_request(h, &waiting).unwrap();
    let s = vm.start(&mut heap, h, USUAL, &mut t, &mut hal).unwrap();
    assert_eq!(s, VmStep::Waiting(WaitingFor::time(1000)));
    assert_eq!(heap.handles_in_use(), 2);
    let h2 = heap.alloc().unwrap();
    heap.set_request(h2, &[0x02, 0x02, 0x00]).unwrap();
    let s = vm.start(&mut heap, h2, USUAL, &mut t, &mut hal).unwrap();
    assert!(matches!(
        s,
        VmStep::Done {
            exception: None,
            ..
        }
    ));
    assert_eq!(heap.reply(h2).unwrap(), [0x05, 0x01]);
    // The pseudo-thread block is freed; the sensor forgot its measurement.
    assert_eq!(heap.handles_in_use(), 2);
    let _ = t;
    assert_eq!(slow.count, 0);
}

#[test]
fn reply_buffer_limit_truncates_frames() {
    let mut vm = VmOne::new(VmConfig {
        max_reply_buffer: 8,
        ..cfg()
    });
    let o = run(
        &mut vm,
        &[0x03, 0x06, 1, 2, 3, 4, 5, 6, 0x03, 0x01, 9],
        USUAL,
    );
    // First frame truncated to 5 bytes of body (flags: size 5, truncated).
    assert_eq!(o.exc(), (ExceptionCode::OutOfMemory, 8));
    // The frame was cut to 5 body bytes (flags 0x17: size 5, truncated); the
    // exception reply then keeps only what fits in 8 bytes, and says so.
    assert_eq!(o.reply, [0x0E, 0x11, 0x17, 0x01]);
    let e = decode_exception(&o.reply).unwrap();
    assert!(e.truncated);
    assert_eq!(e.reply_buffer, [0x17, 0x01]);
}

/// The table in docs/vm.md ("RAM per level"); update both together.
#[test]
fn ram_per_level() {
    use core::mem::size_of;
    let sizes = [
        size_of::<VmOne>(),
        size_of::<VmTiny<4>>(),
        size_of::<VmTiny<8>>(),
        size_of::<VmSmall<8, 4>>(),
        size_of::<VmSmall<8, 32>>(),
        size_of::<VmMedium<8, 32, 4>>(),
        size_of::<VmMedium<8, 128, 8>>(),
    ];
    println!("{sizes:?}");
    assert_eq!(sizes, [24, 24, 24, 32, 88, 160, 424]);
}

#[test]
fn assembly_display() {
    let mut sw = [0u8; 8];
    let n = SwitchCases::encode_into(&[(1, 3), (2, 6)], &mut sw).unwrap();
    let cases = SwitchCases::from_raw(2, &sw[..n]).unwrap();
    let lines = [
        (
            Instruction::DeviceCaps { fields: &[2, 5, 6] },
            "DEVICECAPS 2 5 6",
        ),
        (
            Instruction::Exec {
                bodypart: 5,
                data: &[3],
            },
            "EXEC 5 \"03\"",
        ),
        (
            Instruction::McuSleep {
                secs: 10,
                transmitter_on_when_back: true,
                may_drop_earlier: true,
            },
            "MCUSLEEP 10 TXON MAYDROP",
        ),
        (
            Instruction::Exit {
                flags: ReplyFlags::IsLast,
                padding_to: Some(32),
            },
            "EXIT ISLAST PAD 32",
        ),
        (
            Instruction::AppendToReply {
                reply: -1,
                field: FieldType::TwoBytes,
                data: &[0x34, 0x12],
            },
            "APPENDTOREPLY -1 U16 \"3412\"",
        ),
        (
            Instruction::JmpIfReplyField {
                cmp: Cmp::Lt,
                reply: -1,
                fields: &[1, 3],
                threshold: 10,
                delta: 3,
            },
            "JMPIFREPLYFIELD_LT -1 UINT,BYTE 10 3",
        ),
        (c(1.5), "PUSHEXPR_CONSTANT 1.5"),
        (
            Instruction::ExprUnopEx2 {
                op: UnOp::Copy,
                src: pop_at(1),
                dst: Target::Insert(2),
            },
            "EXPRUNOP_EX2 COPY pop@1 ->ins@2",
        ),
        (
            Instruction::ExprBinopEx {
                op: BinOp::Shl,
                a: at(2),
                b: imm(3.0),
            },
            "EXPRBINOP_EX SHL @2 #3",
        ),
        (
            Instruction::JmpIfExpr {
                cmp: Cmp::Gt,
                threshold: h16(2.0),
                delta: -7,
            },
            "JMPIFEXPR_GT 2 -7",
        ),
        (Instruction::Switch { cases }, "SWITCH 1=>3 2=>6"),
        (
            Instruction::IncAndJmpIf {
                offset: 1,
                threshold: h16(5.0),
                delta: -9,
            },
            "INCANDJMPIF @1 5 -9",
        ),
    ];
    for (i, text) in lines {
        assert_eq!(i.to_string(), text);
    }
    let prog = parallel(&[
        p(&[
            Instruction::Exec {
                bodypart: 5,
                data: &[1],
            },
            c(1.0),
        ]),
        p(&[Instruction::Exec {
            bodypart: 6,
            data: &[],
        }]),
    ]);
    let mut s = String::new();
    write_program(&mut s, &prog).unwrap();
    assert_eq!(
        s,
        "PARALLEL { EXEC 5 \"01\"; PUSHEXPR_CONSTANT 1 } { EXEC 6 \"\" }\n"
    );
    let mut s = String::new();
    write_program(&mut s, &[0x21, 0x03, 0x05]).unwrap();
    assert_eq!(s, "RET\n.bytes \"0305\"\n");
}

/// A program that fills the whole heap leaves no room for any reply, not even an
/// exception header: the VM reports `OutOfMemory` as an error, stops, and runs the
/// next program normally.
#[test]
fn program_filling_the_heap_is_an_error_not_a_panic() {
    let mut vm = VmSmall::<4, 8>::new(cfg());
    let mut heap_mem = HeapMem::<64, 2>::new();
    let mut heap = heap_mem.heap();
    let mut hal = TestHal::<64>::default();
    let mut table: [Bodypart<'_>; 0] = [];
    let h = heap.alloc().unwrap();
    // 64 bytes of an invalid opcode: the exception needs room the heap lacks.
    heap.set_request(h, &[0xff; 64]).unwrap();
    assert_eq!(
        vm.start(&mut heap, h, USUAL, &mut table, &mut hal),
        Err(Error::OutOfMemory)
    );
    assert!(!vm.is_running());
    heap.set_request(h, &[0x03, 0x01, 0x42]).unwrap();
    let step = vm.start(&mut heap, h, USUAL, &mut table, &mut hal).unwrap();
    assert!(matches!(
        step,
        VmStep::Done {
            exception: None,
            ..
        }
    ));
    assert_eq!(heap.reply(h).unwrap(), &[0x05, 0x42]);
}
