//! Zepto client app: finds `zepto-service` by package name, sends
//! placeholder-protocol requests over IPC and prints the replies.
#![no_main]
#![no_std]
use core::fmt::Write;
use libtock::alarm::{Alarm, Milliseconds};
use libtock::console::Console;
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use zepto_tock_ipc::placeholder::{self, OP_EXECUTE, OP_LOAD};
use zepto_tock_ipc::ProcessIndex;

set_main! {main}
stack_size! {0x400}

type Ipc = zepto_tock_ipc::Ipc<TockSyscalls>;

const SERVICE: &[u8] = b"zepto-service";

/// Requests sent in order: (op, payload). Op 7 is undefined on purpose.
const REQUESTS: [(u8, &[u8]); 3] = [(OP_LOAD, &[0x01, 0x02, 0x03]), (OP_EXECUTE, &[]), (7, &[])];

fn request(service: ProcessIndex, buffer: &mut [u8], op: u8, payload: &[u8]) {
    let mut out = Console::writer();
    if placeholder::encode(buffer, op, payload).is_err() {
        let _ = writeln!(out, "zepto-client: request does not fit");
        return;
    }
    match Ipc::request(service, buffer) {
        Ok(()) => match placeholder::decode(buffer) {
            Ok((status, reply)) => {
                let _ = writeln!(
                    out,
                    "zepto-client: op {op} -> status {status} payload {reply:02x?}"
                );
            }
            Err(e) => {
                let _ = writeln!(out, "zepto-client: op {op} -> bad reply {e:?}");
            }
        },
        Err(e) => {
            let _ = writeln!(out, "zepto-client: op {op} -> IPC error {e:?}");
        }
    }
}

fn main() {
    let mut out = Console::writer();
    // The service must have subscribed before our first notify, or the kernel
    // drops it; give it a moment after boot.
    let _ = Alarm::sleep_for(Milliseconds(50));
    let service = match Ipc::discover(SERVICE) {
        Ok(service) => service,
        Err(e) => {
            let _ = writeln!(out, "zepto-client: no zepto-service: {e:?}");
            return;
        }
    };
    let _ = writeln!(
        out,
        "zepto-client: zepto-service is process {}",
        service.get()
    );
    // One buffer for all requests: each notify maps the shared buffer into
    // the service, and a process has only a few memory-protection regions.
    let mut buffer = [0u8; 32];
    for (op, payload) in REQUESTS {
        request(service, &mut buffer, op, payload);
    }
    let _ = writeln!(out, "zepto-client: done");
}
