//! A misbehaving IPC client: it shares buffers with `zepto-service` that the
//! kernel cannot map (odd address), or that are not the buffer it shared
//! first (grown, a second and a third buffer). The service must refuse each
//! one unread with an error notification and go on serving; the buffer it
//! shared first keeps working. Prints what it expected and what it got.
#![no_main]
#![no_std]
use core::fmt::Write;
use libtock::alarm::{Alarm, Milliseconds};
use libtock::console::Console;
use libtock::platform::ErrorCode;
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use zepto_kernel::service::{self, Op, Status};
use zepto_tock_ipc::{Buffer32, Buffer64, ProcessIndex};

set_main! {main}
stack_size! {0x400}

type Ipc = zepto_tock_ipc::Ipc<TockSyscalls>;

const SERVICE: &[u8] = b"zepto-service";
const TRIES: u32 = 5;
const TIMEOUT_MS: u32 = 1000;
/// Lets the well-behaved client share its buffer first (see README: a
/// client that shares several buffers early can take the service's last
/// region).
const START_DELAY_MS: u32 = 500;

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(Console::writer(), $($t)*);
    }};
}

/// Sends a LOAD of `EXEC 1` (Ping) in `buffer` and returns the outcome.
fn load(service: ProcessIndex, buffer: &mut [u8]) -> Result<Status, ErrorCode> {
    let mut last = Err(ErrorCode::NoAck);
    for _ in 0..TRIES {
        if service::encode_request(buffer, Op::Load, &[0x02, 0x02, 0x00]).is_err() {
            // Too small for a request: send the op byte only.
            if let Some(b) = buffer.first_mut() {
                *b = Op::Load as u8;
            }
        }
        last = Ipc::request_any(service, buffer, Some(TIMEOUT_MS));
        if last != Err(ErrorCode::NoAck) {
            break;
        }
    }
    last?;
    service::decode_reply(buffer)
        .map(|r| r.status)
        .map_err(|_| ErrorCode::Fail)
}

fn check(what: &str, got: Result<Status, ErrorCode>, want: Result<Status, ErrorCode>) -> bool {
    let ok = got == want;
    say!(
        "zepto-bad-client: {what}: {got:?} ({})",
        if ok { "as expected" } else { "UNEXPECTED" }
    );
    ok
}

fn main() {
    let _ = Alarm::sleep_for(Milliseconds(START_DELAY_MS));
    let mut service = Err(ErrorCode::NoDevice);
    for _ in 0..TRIES {
        service = Ipc::discover(SERVICE);
        if service.is_ok() {
            break;
        }
        let _ = Alarm::sleep_for(Milliseconds(20));
    }
    let Ok(service) = service else {
        say!("zepto-bad-client: no zepto-service");
        return;
    };
    // Its first buffer: the first 32 bytes of a 64-byte aligned block.
    let mut block = Buffer64::new();
    let mut odd = Buffer64::new();
    let mut second = Buffer32::new();
    let mut third = Buffer32::new();
    let refused_rules = Err(ErrorCode::Invalid);
    let refused_not_first = Err(ErrorCode::Already);
    let mut all = true;
    all &= check(
        "first buffer, 32 B",
        load(service, &mut block.0[..32]),
        Ok(Status::Ok),
    );
    all &= check(
        "odd address, 3 B",
        load(service, &mut odd.0[1..4]),
        refused_rules,
    );
    all &= check(
        "odd address, 32 B",
        load(service, &mut odd.0[1..33]),
        refused_rules,
    );
    all &= check(
        "grown to 64 B",
        load(service, &mut block.0),
        refused_not_first,
    );
    all &= check(
        "second buffer",
        load(service, &mut second.0),
        refused_not_first,
    );
    all &= check(
        "third buffer",
        load(service, &mut third.0),
        refused_not_first,
    );
    all &= check(
        "first buffer again",
        load(service, &mut block.0[..32]),
        Ok(Status::Ok),
    );
    say!(
        "zepto-bad-client: done ({})",
        if all {
            "all as expected"
        } else {
            "NOT as expected"
        }
    );
}
