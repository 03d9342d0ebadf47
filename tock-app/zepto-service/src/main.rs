//! Zepto service app: answers IPC requests with the placeholder protocol
//! (`zepto_tock_ipc::placeholder`) until the Zepto main pump takes over.
#![no_main]
#![no_std]
use core::fmt::Write;
use core::ops::ControlFlow;
use libtock::console::Console;
use libtock::runtime::{set_main, stack_size, TockSyscalls};
use zepto_tock_ipc::placeholder::{self, PlaceholderService};
use zepto_tock_ipc::{ProcessIndex, Service};

set_main! {main}
stack_size! {0x400}

type Ipc = zepto_tock_ipc::Ipc<TockSyscalls>;

/// Package name (elf2tab `-n`) the service discovers to find its own index.
const NAME: &[u8] = b"zepto-service";

struct App {
    proto: PlaceholderService,
}

impl Service for App {
    fn ready(&mut self, own: ProcessIndex) {
        let _ = writeln!(
            Console::writer(),
            "zepto-service: ready, process {}",
            own.get()
        );
    }

    fn handle(&mut self, client: ProcessIndex, buffer: &mut [u8]) -> ControlFlow<()> {
        let op = buffer.first().copied();
        self.proto.answer(buffer);
        let status = placeholder::decode(buffer).map(|(status, _)| status);
        let _ = writeln!(
            Console::writer(),
            "zepto-service: client {} op {:?} ({} B) -> status {:?}",
            client.get(),
            op,
            buffer.len(),
            status
        );
        ControlFlow::Continue(())
    }
}

fn main() {
    let mut app = App {
        proto: PlaceholderService::default(),
    };
    if let Err(e) = Ipc::serve(NAME, &mut app) {
        let _ = writeln!(Console::writer(), "zepto-service: IPC failed: {e:?}");
    }
}
