use super::*;
use crate::plugins::{Echo, Ping, SimSensor};
use crate::testhal::TestHal;
use crate::vm::insn::{Instruction, ReplyFlags};
use crate::vm::reply;
use crate::vm::{ExceptionCode, VmConfig, VmSmall};
use proptest::prelude::*;

type Vm = VmSmall<4, 8>;
type Svc<'t, 'p> = Service<'t, 'p, Vm, 3, 24, 256, 2>;

/// `EXEC 1` (Ping, no data): opcode, BODYPART-ID 1 (Encoded-Signed-Int: 1 -> 0x02),
/// DATA-SIZE 0.
const PING: [u8; 3] = [0x02, 0x02, 0x00];
/// `EXEC 2 [0xAB, 0xCD]` (Echo).
const ECHO: [u8; 5] = [0x02, 0x04, 0x02, 0xAB, 0xCD];
/// Reply buffer of PING: one frame, FLAGS-AND-SIZE = (1 << 2) | 1 = 0x05, body 0x01.
const PING_REPLY: [u8; 2] = [0x05, 0x01];

fn program(insns: &[Instruction<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in insns {
        let mut buf = [0u8; 64];
        let n = i.encode(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn request(op: u8, program: &[u8], size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    buf[0] = op;
    buf[1..3].copy_from_slice(&(program.len() as u16).to_le_bytes());
    buf[3..3 + program.len()].copy_from_slice(program);
    buf
}

struct Fixture {
    ping: Ping,
    echo: Echo,
    sensor: SimSensor,
    hal: TestHal<64>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            ping: Ping,
            echo: Echo,
            sensor: SimSensor::new(100, 1, 50),
            hal: TestHal::default(),
        }
    }
}

macro_rules! service {
    ($fx:ident, $table:ident, $svc:ident) => {
        let mut $table = [
            Bodypart::new(1, &mut $fx.ping),
            Bodypart::new(2, &mut $fx.echo),
            Bodypart::new(3, &mut $fx.sensor),
        ];
        let mut $svc: Svc<'_, '_> =
            Service::new(Vm::new(VmConfig::default()), &mut $table, &mut $fx.hal).unwrap();
    };
}

#[test]
fn program_bytes_match_the_instruction_encoder() {
    let p = program(&[Instruction::Exec {
        bodypart: 1,
        data: &[],
    }]);
    assert_eq!(p, PING);
    let p = program(&[Instruction::Exec {
        bodypart: 2,
        data: &[0xAB, 0xCD],
    }]);
    assert_eq!(p, ECHO);
}

#[test]
fn load_then_execute_exact_bytes() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let mut buf = request(0, &PING, 16);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Ok);
    assert_eq!(buf[..4], [0x00, 0x00, 0x00, 0x00]);
    assert!(svc.is_loaded(0));
    let mut buf = request(1, &[], 16);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Ok);
    assert_eq!(buf[..6], [0x00, 0x00, 0x02, 0x00, 0x05, 0x01]);
    // The program stays loaded: execute again.
    let mut buf = request(1, &[], 16);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Ok);
    let r = decode_reply(&buf).unwrap();
    assert_eq!(
        (r.status, r.detail, r.data),
        (Status::Ok, 0, &PING_REPLY[..])
    );
}

#[test]
fn load_and_execute_echo() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let mut buf = request(2, &ECHO, 16);
    assert_eq!(svc.handle(1, &mut buf, &mut fx.hal), Status::Ok);
    // One frame, size 2: (2 << 2) | 1 = 0x09.
    assert_eq!(buf[..7], [0x00, 0x00, 0x03, 0x00, 0x09, 0xAB, 0xCD]);
    let r = decode_reply(&buf).unwrap();
    let frame = reply::frames(r.data).next().unwrap().unwrap();
    assert_eq!(frame.body, [0xAB, 0xCD]);
}

#[test]
fn slots_are_separate() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let mut a = request(0, &PING, 16);
    let mut b = request(0, &ECHO, 16);
    assert_eq!(svc.handle(0, &mut a, &mut fx.hal), Status::Ok);
    assert_eq!(svc.handle(1, &mut b, &mut fx.hal), Status::Ok);
    let mut c = request(1, &[], 16);
    assert_eq!(svc.handle(2, &mut c, &mut fx.hal), Status::NoProgram);
    assert_eq!(c[..4], [0x05, 0x00, 0x00, 0x00]);
    let mut a = request(1, &[], 16);
    let mut b = request(1, &[], 16);
    svc.handle(1, &mut b, &mut fx.hal);
    svc.handle(0, &mut a, &mut fx.hal);
    assert_eq!(decode_reply(&a).unwrap().data, PING_REPLY);
    assert_eq!(decode_reply(&b).unwrap().data, [0x09, 0xAB, 0xCD]);
}

#[test]
fn error_replies_exact_bytes() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    // Unknown op 7: DETAIL echoes it.
    let mut buf = request(7, &[], 8);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::UnknownOp);
    assert_eq!(buf[..4], [0x02, 0x07, 0x00, 0x00]);
    // LEN past the end of the buffer.
    let mut buf = vec![0x00, 0x10, 0x00, 0x01, 0x02];
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Malformed);
    assert_eq!(buf[..4], [0x03, 0x00, 0x00, 0x00]);
    // EXECUTE carrying a program.
    let mut buf = request(1, &PING, 8);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Malformed);
    // Program longer than the slot (24 bytes): nothing stored.
    let mut buf = request(0, &[0x02; 25], 32);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::TooBig);
    assert_eq!(buf[..4], [0x04, 0x00, 0x00, 0x00]);
    assert!(!svc.is_loaded(0));
    // No such slot.
    let mut buf = request(0, &PING, 8);
    assert_eq!(svc.handle(3, &mut buf, &mut fx.hal), Status::NoSlot);
    assert_eq!(buf[..4], [0x09, 0x00, 0x00, 0x00]);
    // A buffer too short for a reply header.
    let mut buf = vec![0x01, 0x00, 0x00];
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Malformed);
    assert_eq!(buf, [0x03, 0x00, 0x00]);
    let mut empty: [u8; 0] = [];
    assert_eq!(svc.handle(0, &mut empty, &mut fx.hal), Status::Malformed);
}

#[test]
fn vm_exception_reply() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    // EXEC of body part 9, which has no plugin.
    let mut buf = request(2, &[0x02, 0x12, 0x00], 32);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::VmException);
    let r = decode_reply(&buf).unwrap();
    assert_eq!(r.status, Status::VmException);
    assert_eq!(r.detail, ExceptionCode::UnknownBodypart as u8);
    let e = reply::decode_exception(r.data).unwrap();
    assert_eq!(e.code, ExceptionCode::UnknownBodypart.code());
    assert_eq!(e.position, 0);
    // An invalid opcode.
    let mut buf = request(2, &[0xEE], 32);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::VmException);
    assert_eq!(buf[1], ExceptionCode::InvalidInstruction as u8);
}

#[test]
fn reply_too_big_for_the_buffer_is_cut_and_flagged() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let echo = program(&[Instruction::Exec {
        bodypart: 2,
        data: &[1, 2, 3, 4, 5, 6, 7, 8],
    }]);
    // The reply is 9 bytes: FLAGS-AND-SIZE (8 << 2) | 1 = 0x21 and the body.
    let mut buf = request(2, &echo, 14);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Ok);
    assert_eq!(buf[..13], [0, 0, 9, 0, 0x21, 1, 2, 3, 4, 5, 6, 7, 8]);
    // Delivered later into a buffer with room for 6 bytes of DATA.
    let prog = program(&[
        Instruction::Sleep { ms: 1 },
        Instruction::Exec {
            bodypart: 2,
            data: &[1, 2, 3, 4, 5, 6, 7, 8],
        },
    ]);
    let mut buf = request(2, &prog, 16);
    assert_eq!(svc.handle(0, &mut buf, &mut fx.hal), Status::Pending);
    fx.hal.now_ms += 1;
    assert_eq!(svc.poll(&mut fx.hal).finished, Some(0));
    let mut small = [0u8; 10];
    small[..4].copy_from_slice(&PENDING_REPLY);
    assert_eq!(svc.deliver(0, &mut small), Some(Status::TooBig));
    assert_eq!(small, [0x04, 0x01, 6, 0, 0x21, 1, 2, 3, 4, 5]);
}

#[test]
fn sleeping_program_is_pending_then_delivered() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let prog = program(&[
        Instruction::Sleep { ms: 300 },
        Instruction::PushReply { data: &[0x42] },
        Instruction::Exit {
            flags: ReplyFlags::IsLast,
            padding_to: None,
        },
    ]);
    let mut a = request(2, &prog, 16);
    assert_eq!(svc.handle(0, &mut a, &mut fx.hal), Status::Pending);
    assert_eq!(a[..4], [0x07, 0x00, 0x00, 0x00]);
    let p = svc.poll(&mut fx.hal);
    assert_eq!(p.finished, None);
    assert_eq!(p.wait.unwrap().timeout_ms, Some(300));
    // Another client is told to come back later; its program is stored.
    let mut b = request(2, &PING, 16);
    assert_eq!(svc.handle(1, &mut b, &mut fx.hal), Status::Busy);
    assert_eq!(b[..4], [0x06, 0x00, 0x00, 0x00]);
    assert!(svc.is_loaded(1));
    fx.hal.now_ms += 299;
    assert_eq!(svc.poll(&mut fx.hal).wait.unwrap().timeout_ms, Some(1));
    fx.hal.now_ms += 1;
    let p = svc.poll(&mut fx.hal);
    assert_eq!(
        p,
        ServicePoll {
            finished: Some(0),
            wait: None
        }
    );
    // Only the finished slot can take the reply.
    let mut other = [0u8; 16];
    other[..4].copy_from_slice(&PENDING_REPLY);
    assert_eq!(svc.deliver(1, &mut other), None);
    assert_eq!(other[4..], [0u8; 12]);
    assert_eq!(svc.deliver(0, &mut a), Some(Status::Ok));
    assert_eq!(a[..6], [0x00, 0x00, 0x02, 0x00, 0x05, 0x42]);
    assert_eq!(svc.deliver(0, &mut a), None);
    assert_eq!(
        svc.poll(&mut fx.hal),
        ServicePoll {
            finished: None,
            wait: None
        }
    );
    // Now the other client's program runs.
    let mut b = request(1, &[], 16);
    assert_eq!(svc.handle(1, &mut b, &mut fx.hal), Status::Ok);
    assert_eq!(decode_reply(&b).unwrap().data, PING_REPLY);
}

#[test]
fn waiting_plugin_finishes_on_a_later_poll() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let mut a = request(2, &[0x02, 0x06, 0x00], 16);
    assert_eq!(svc.handle(2, &mut a, &mut fx.hal), Status::Pending);
    fx.hal.now_ms += 50;
    assert_eq!(svc.poll(&mut fx.hal).finished, Some(2));
    assert_eq!(svc.deliver(2, &mut a), Some(Status::Ok));
    // TWO-BYTE body 100 = 0x0064: FLAGS-AND-SIZE (2 << 2) | 1.
    assert_eq!(a[..7], [0x00, 0x00, 0x03, 0x00, 0x09, 0x64, 0x00]);
}

#[test]
fn a_final_reply_never_overwrites_a_new_request() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let sleep = program(&[Instruction::Sleep { ms: 10 }]);
    let mut a = request(2, &sleep, 16);
    assert_eq!(svc.handle(0, &mut a, &mut fx.hal), Status::Pending);
    fx.hal.now_ms += 10;
    assert_eq!(svc.poll(&mut fx.hal).finished, Some(0));
    // The client gave up and wrote a new request before the reply went out.
    let mut b = request(1, &[], 16);
    let before = b.clone();
    assert_eq!(svc.deliver(0, &mut b), None);
    assert_eq!(b, before);
    // The result is dropped and the VM free: the new request is served.
    assert_eq!(svc.poll(&mut fx.hal).finished, None);
    assert_eq!(svc.handle(0, &mut b, &mut fx.hal), Status::Pending);
}

#[test]
fn a_new_request_cancels_the_clients_pending_program() {
    let mut fx = Fixture::new();
    service!(fx, table, svc);
    let sleep = program(&[Instruction::Sleep { ms: 1000 }]);
    let mut a = request(2, &sleep, 16);
    assert_eq!(svc.handle(0, &mut a, &mut fx.hal), Status::Pending);
    assert_eq!(svc.active_slot(), Some(0));
    let mut a = request(2, &PING, 16);
    assert_eq!(svc.handle(0, &mut a, &mut fx.hal), Status::Ok);
    assert_eq!(decode_reply(&a).unwrap().data, PING_REPLY);
    assert_eq!(svc.active_slot(), None);
    fx.hal.now_ms += 2000;
    assert_eq!(svc.poll(&mut fx.hal).finished, None);
}

#[test]
fn encode_and_decode_helpers() {
    let mut buf = [0u8; 8];
    assert_eq!(encode_request(&mut buf, Op::LoadExecute, &PING), Ok(6));
    assert_eq!(buf[..6], [0x02, 0x03, 0x00, 0x02, 0x02, 0x00]);
    assert_eq!(
        encode_request(&mut buf, Op::Load, &[0; 6]),
        Err(Error::BufferTooSmall)
    );
    assert_eq!(decode_reply(&[0x00, 0x00, 0x01]), Err(Error::UnexpectedEnd));
    assert_eq!(
        decode_reply(&[0x0A, 0x00, 0x00, 0x00]),
        Err(Error::Malformed)
    );
    assert_eq!(
        decode_reply(&[0x00, 0x00, 0x02, 0x00, 0x05]),
        Err(Error::UnexpectedEnd)
    );
    assert_eq!(Op::from_u8(3), None);
    for s in 0..=9 {
        assert_eq!(Status::from_u8(s).map(|s| s as u8), Some(s));
    }
}

proptest! {
    /// Random buffers from random slots never panic and always get a well-formed
    /// reply; a later request still works.
    #[test]
    fn random_requests_get_well_formed_replies(
        reqs in proptest::collection::vec(
            (0usize..4, proptest::collection::vec(any::<u8>(), 0..40), 0u64..100),
            1..20,
        )
    ) {
        let mut fx = Fixture::new();
        service!(fx, table, svc);
        for (slot, mut buf, dt) in reqs {
            let status = svc.handle(slot, &mut buf, &mut fx.hal);
            if buf.len() >= REPLY_HEADER {
                let r = decode_reply(&buf).unwrap();
                prop_assert_eq!(r.status, status);
                prop_assert!(r.data.len() <= buf.len() - REPLY_HEADER);
            } else {
                prop_assert_eq!(status, Status::Malformed);
            }
            fx.hal.now_ms += dt;
            let p = svc.poll(&mut fx.hal);
            if let Some(s) = p.finished {
                let mut out = [0u8; 32];
                out[..4].copy_from_slice(&PENDING_REPLY);
                let st = svc.deliver(s, &mut out).unwrap();
                prop_assert_eq!(decode_reply(&out).unwrap().status, st);
            }
        }
        // Whatever happened, a fresh client request is answered.
        // (The client whose program is pending cancels it; others would be busy.)
        let slot = svc.active_slot().unwrap_or(0);
        let mut buf = request(2, &PING, 16);
        let st = svc.handle(slot, &mut buf, &mut fx.hal);
        prop_assert!(st == Status::Ok, "status {:?}", st);
        prop_assert_eq!(decode_reply(&buf).unwrap().data, &PING_REPLY[..]);
    }
}
