//! Zepto client: finds `zepto-service` by package name, shares one buffer
//! with it over IPC and uses the service protocol (`zepto_kernel::service`):
//! loads a program, runs it several times, loads and runs others (one of
//! them waits in the service), and sends bad requests that must come back as
//! errors. Every request has a timeout and is retried, which also covers a
//! service that has not subscribed yet when the client starts.
#![no_main]
#![no_std]
use core::fmt::Write;
use libtock::alarm::{Alarm, Milliseconds};
use libtock::console::Console;
use libtock::platform::ErrorCode;
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use zepto_kernel::service::{self, Op, Status};
use zepto_kernel::vm::reply;
use zepto_tock_ipc::{Buffer32, ProcessIndex};

set_main! {main}
stack_size! {0x400}

type Ipc = zepto_tock_ipc::Ipc<TockSyscalls>;

const SERVICE: &[u8] = b"zepto-service";
/// Attempts per request (and for discovery).
const TRIES: u32 = 5;
/// Time to wait for a reply before retrying.
const TIMEOUT_MS: u32 = 1000;
/// Times the whole sequence runs (with a pause between), so local requests
/// interleave with network traffic the service handles meanwhile.
const ROUNDS: u32 = 3;
const PAUSE_MS: u32 = 1500;

/// `EXEC 1` (Ping): reply body `01`.
const PING: &[u8] = &[0x02, 0x02, 0x00];
/// `EXEC 2 "Zep"` (Echo): reply body `5a 65 70`.
const ECHO: &[u8] = &[0x02, 0x04, 0x03, b'Z', b'e', b'p'];
/// `EXEC 3` (a simulated sensor that takes 100 ms): a two-byte value.
const SENSOR: &[u8] = &[0x02, 0x06, 0x00];
/// `EXEC 9`: no such body part, a VM exception.
const NO_PLUGIN: &[u8] = &[0x02, 0x12, 0x00];

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(Console::writer(), $($t)*);
    }};
}

struct Hex<'a>(&'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Sends `request` (raw bytes) and returns once a reply is in `buffer`.
fn exchange(service: ProcessIndex, buffer: &mut Buffer32, request: &[u8]) -> Result<(), ErrorCode> {
    let mut last = Err(ErrorCode::NoAck);
    for attempt in 1..=TRIES {
        // The service may have written a PENDING reply before we gave up:
        // always start from the request bytes.
        match buffer.0.get_mut(..request.len()) {
            Some(b) => b.copy_from_slice(request),
            None => return Err(ErrorCode::Size),
        }
        last = Ipc::request_timeout(service, buffer, TIMEOUT_MS);
        match last {
            Err(ErrorCode::NoAck) => say!("zepto-client: no reply (attempt {attempt}), retrying"),
            _ => break,
        }
    }
    last
}

fn print_reply(what: &str, buffer: &[u8]) {
    let r = match service::decode_reply(buffer) {
        Ok(r) => r,
        Err(e) => {
            say!("zepto-client: {what} -> undecodable reply {e:?}");
            return;
        }
    };
    match r.status {
        Status::Ok if r.data.is_empty() => say!("zepto-client: {what} -> OK"),
        Status::Ok => {
            let mut w = Console::writer();
            let _ = write!(w, "zepto-client: {what} -> OK, reply");
            for f in reply::frames(r.data) {
                let _ = match f {
                    Ok(f) => write!(w, " [{}]", Hex(f.body)),
                    Err(e) => write!(w, " [bad frame {e:?}]"),
                };
            }
            let _ = writeln!(w);
        }
        Status::VmException => match reply::decode_exception(r.data) {
            Ok(e) => say!(
                "zepto-client: {what} -> VM exception {} at {}",
                e.code,
                e.position
            ),
            Err(_) => say!("zepto-client: {what} -> VM exception {}", r.detail),
        },
        s => say!("zepto-client: {what} -> error {s:?} (detail {})", r.detail),
    }
}

fn call(service: ProcessIndex, buffer: &mut Buffer32, what: &str, op: u8, program: &[u8]) {
    let mut req = [0u8; 32];
    let n = match Op::from_u8(op) {
        Some(op) => service::encode_request(&mut req, op, program),
        // A request with an undefined op, built by hand.
        None => {
            req[0] = op;
            Ok(service::REQUEST_HEADER)
        }
    };
    let Ok(n) = n else {
        say!("zepto-client: {what}: request does not fit");
        return;
    };
    match exchange(service, buffer, &req[..n]) {
        Ok(()) => print_reply(what, &buffer.0),
        Err(e) => say!("zepto-client: {what} -> IPC error {e:?}"),
    }
}

fn main() {
    let mut service = Err(ErrorCode::NoDevice);
    for _ in 0..TRIES {
        service = Ipc::discover(SERVICE);
        if service.is_ok() {
            break;
        }
        let _ = Alarm::sleep_for(Milliseconds(20));
    }
    let service = match service {
        Ok(s) => s,
        Err(e) => {
            say!("zepto-client: no zepto-service: {e:?}");
            return;
        }
    };
    say!("zepto-client: zepto-service is process {}", service.get());
    // One buffer for all requests, aligned so every memory-protection unit
    // maps it: the kernel maps it into the service at the first notify, a
    // service has only a few regions and accepts only a client's first buffer.
    let mut buffer = Buffer32::new();
    let b = &mut buffer;
    for round in 1..=ROUNDS {
        say!("zepto-client: round {round}");
        call(service, b, "load ping", Op::Load as u8, PING);
        for what in ["execute #1", "execute #2", "execute #3"] {
            call(service, b, what, Op::Execute as u8, &[]);
        }
        call(service, b, "load+execute echo", Op::LoadExecute as u8, ECHO);
        call(
            service,
            b,
            "load+execute sensor",
            Op::LoadExecute as u8,
            SENSOR,
        );
        call(service, b, "execute sensor", Op::Execute as u8, &[]);
        call(
            service,
            b,
            "load+execute exec 9",
            Op::LoadExecute as u8,
            NO_PLUGIN,
        );
        call(service, b, "bad op 9", 9, &[]);
        if round < ROUNDS {
            let _ = Alarm::sleep_for(Milliseconds(PAUSE_MS));
        }
    }
    say!("zepto-client: done");
}
