//! Tock inter-process communication for libtock-rs apps.
//!
//! libtock-rs has no IPC API; this crate wraps the kernel's IPC driver
//! (`kernel::ipc::IPC`, driver number `0x10000`) in the libtock-rs style:
//! every function is generic over [`Syscalls`] so it runs on Tock
//! (`libtock_runtime::TockSyscalls`) and on the host's fake kernel
//! (`libtock_unittest::fake::Syscalls`).
//!
//! Kernel ABI used here:
//! - read-only allow 0: package name to search for (exact bytes, no NUL);
//! - command 0: driver exists; command 1: discover -> process index, or
//!   `NODEVICE` if no process has that package name;
//! - command 2 (arg0 = service index): notify the service;
//!   command 3 (arg0 = client index): notify the client;
//! - read-write allow slot N: the buffer this process shares with process N
//!   (a client allows on slot = service index);
//! - subscribe N: a service subscribes on its own index, a client on the
//!   service's index; upcall arguments are (caller index, length, address) of
//!   the buffer the caller shared with the upcalled process.
//!
//! A process finds its own index by discovering its own package name (the
//! `-n`/`--package-name` given to elf2tab).
//!
//! IPC upcalls are delivered on Yield-Wait / Yield-NoWait only, which is what
//! this crate uses.
#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod placeholder;

use core::cell::Cell;
use core::ops::ControlFlow;
use libtock_platform::allow_ro::AllowRo;
use libtock_platform::allow_rw::AllowRw;
use libtock_platform::share;
use libtock_platform::subscribe::{AnyId, Subscribe, Upcall};
use libtock_platform::{DefaultConfig, ErrorCode, Syscalls};

/// Driver number of the kernel's IPC driver.
pub const DRIVER_NUM: u32 = 0x10000;

/// Number of process slots supported (process indices `0..MAX_PROCESSES`).
///
/// Matches `NUM_PROCS` of the `qemu_rv32_virt` board. Allow and subscribe
/// numbers are compile-time constants in libtock-rs, so each slot costs one
/// monomorphised copy of the request / serve loop.
pub const MAX_PROCESSES: u32 = 4;

/// Command numbers of the IPC driver.
pub mod command {
    /// Does the driver exist.
    pub const EXISTS: u32 = 0;
    /// Discover a process by package name (read-only allow 0).
    pub const DISCOVER: u32 = 1;
    /// Notify the service whose index is arg0.
    pub const NOTIFY_SERVICE: u32 = 2;
    /// Notify the client whose index is arg0.
    pub const NOTIFY_CLIENT: u32 = 3;
}

/// Read-only allow slot holding the package name to discover.
pub const ALLOW_RO_SEARCH: u32 = 0;

/// Index of a process as numbered by the kernel's IPC driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessIndex(u32);

impl ProcessIndex {
    /// Wraps a raw index; fails with `Invalid` unless it is below
    /// [`MAX_PROCESSES`].
    pub fn new(index: u32) -> Result<Self, ErrorCode> {
        if index < MAX_PROCESSES {
            Ok(Self(index))
        } else {
            Err(ErrorCode::Invalid)
        }
    }

    /// The raw index.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A service's request handler, driven by [`Ipc::serve`].
pub trait Service {
    /// Called once after the service has subscribed and before it waits for
    /// the first request. `own` is the service's own process index.
    fn ready(&mut self, own: ProcessIndex) {
        let _ = own;
    }

    /// Handles one request in place: `buffer` is the memory the client
    /// shared (empty if it shared none); the reply is written into it. The
    /// client is notified after this returns. `Break` ends [`Ipc::serve`]
    /// after that notification.
    fn handle(&mut self, client: ProcessIndex, buffer: &mut [u8]) -> ControlFlow<()>;
}

/// The IPC driver, generic over the system call implementation.
pub struct Ipc<S: Syscalls, C: Config = DefaultConfig>(S, C);

/// System call configuration needed by [`Ipc`].
pub trait Config:
    libtock_platform::allow_ro::Config
    + libtock_platform::allow_rw::Config
    + libtock_platform::subscribe::Config
{
}
impl<
        T: libtock_platform::allow_ro::Config
            + libtock_platform::allow_rw::Config
            + libtock_platform::subscribe::Config,
    > Config for T
{
}

/// Runs `$f::<N>($args)` for the runtime index `$index` (0..MAX_PROCESSES).
macro_rules! dispatch_index {
    ($index:expr, $f:ident, $($arg:expr),*) => {
        match $index.get() {
            0 => Self::$f::<0>($($arg),*),
            1 => Self::$f::<1>($($arg),*),
            2 => Self::$f::<2>($($arg),*),
            3 => Self::$f::<3>($($arg),*),
            _ => Err(ErrorCode::Invalid),
        }
    };
}

impl<S: Syscalls, C: Config> Ipc<S, C> {
    /// Checks that the kernel has the IPC driver.
    pub fn exists() -> Result<(), ErrorCode> {
        S::command(DRIVER_NUM, command::EXISTS, 0, 0).to_result()
    }

    /// Finds the process whose package name is exactly `name`.
    /// `NoDevice` if there is none.
    pub fn discover(name: &[u8]) -> Result<ProcessIndex, ErrorCode> {
        share::scope::<AllowRo<_, DRIVER_NUM, ALLOW_RO_SEARCH>, _, _>(|allow| {
            S::allow_ro::<C, DRIVER_NUM, ALLOW_RO_SEARCH>(allow, name)?;
            let index: u32 = S::command(DRIVER_NUM, command::DISCOVER, 0, 0).to_result()?;
            ProcessIndex::new(index)
        })
    }

    /// Schedules the service's upcall (caller = this process).
    pub fn notify_service(service: ProcessIndex) -> Result<(), ErrorCode> {
        S::command(DRIVER_NUM, command::NOTIFY_SERVICE, service.get(), 0).to_result()
    }

    /// Schedules the client's upcall (caller = this process).
    pub fn notify_client(client: ProcessIndex) -> Result<(), ErrorCode> {
        S::command(DRIVER_NUM, command::NOTIFY_CLIENT, client.get(), 0).to_result()
    }

    /// Client side: shares `buffer` with `service`, notifies it and waits
    /// until the service notifies back. The service answers in place, so
    /// `buffer` holds the reply when this returns `Ok`.
    ///
    /// The buffer stays shared only while this call runs. Every notify lets
    /// the kernel add a memory-protection region for the shared buffer to the
    /// service, so a client should reuse one buffer for all its requests.
    /// If the service has not subscribed yet, the kernel drops the
    /// notification and this call waits forever.
    pub fn request(service: ProcessIndex, buffer: &mut [u8]) -> Result<(), ErrorCode> {
        dispatch_index!(service, request_on, service, buffer)
    }

    fn request_on<const SLOT: u32>(
        service: ProcessIndex,
        buffer: &mut [u8],
    ) -> Result<(), ErrorCode> {
        let reply: Cell<Option<(u32, u32, u32)>> = Cell::new(None);
        share::scope::<(AllowRw<_, DRIVER_NUM, SLOT>, Subscribe<_, DRIVER_NUM, SLOT>), _, _>(
            |handle| {
                let (allow, subscribe) = handle.split();
                S::allow_rw::<C, DRIVER_NUM, SLOT>(allow, buffer)?;
                S::subscribe::<_, _, C, DRIVER_NUM, SLOT>(subscribe, &reply)?;
                Self::notify_service(service)?;
                // Only the service at index SLOT upcalls on subscribe number SLOT.
                while reply.get().is_none() {
                    S::yield_wait();
                }
                Ok(())
            },
        )
    }

    /// Service side: finds its own index by discovering `own_name`,
    /// subscribes on it and answers requests with `service` until a handler
    /// returns `Break`. Requests from different clients that arrive while
    /// one is handled are kept (one per client) and answered in turn.
    pub fn serve<H: Service>(own_name: &[u8], service: &mut H) -> Result<(), ErrorCode> {
        let own = Self::discover(own_name)?;
        dispatch_index!(own, serve_on, own, service)
    }

    fn serve_on<const SLOT: u32>(
        own: ProcessIndex,
        service: &mut impl Service,
    ) -> Result<(), ErrorCode> {
        let inbox = Inbox::default();
        share::scope::<Subscribe<_, DRIVER_NUM, SLOT>, _, _>(|subscribe| {
            S::subscribe::<_, _, C, DRIVER_NUM, SLOT>(subscribe, &inbox)?;
            service.ready(own);
            loop {
                // Check before yielding: the handler may itself yield (e.g.
                // to print), which can run our upcall early.
                let Some((client, len, addr)) = inbox.take() else {
                    S::yield_wait();
                    continue;
                };
                let flow = if addr == 0 || len == 0 {
                    service.handle(client, &mut [])
                } else {
                    // SAFETY: (len, addr) come from the kernel: they describe
                    // the buffer `client` shared with this process on our
                    // index, and the kernel gave this process access to it
                    // before delivering the upcall. The client shares it for
                    // the duration of its request and only waits (in
                    // `request`) until we notify it below, so nothing else
                    // uses the memory while this slice lives.
                    let buffer = unsafe {
                        core::slice::from_raw_parts_mut(addr as usize as *mut u8, len as usize)
                    };
                    service.handle(client, buffer)
                };
                // A client that has gone away cannot be notified; keep serving.
                let _ = Self::notify_client(client);
                if flow.is_break() {
                    return Ok(());
                }
            }
        })
    }
}

/// Pending requests of a service: at most one per client, since a client
/// waits for its reply before it can send again.
#[derive(Default)]
struct Inbox {
    pending: [Cell<Option<(u32, u32)>>; MAX_PROCESSES as usize],
}

impl Inbox {
    fn take(&self) -> Option<(ProcessIndex, u32, u32)> {
        (0..MAX_PROCESSES)
            .zip(self.pending.iter())
            .find_map(|(client, slot)| {
                slot.take()
                    .map(|(len, addr)| (ProcessIndex(client), len, addr))
            })
    }
}

impl Upcall<AnyId> for Inbox {
    fn upcall(&self, caller: u32, len: u32, addr: u32) {
        if let Some(slot) = self.pending.get(caller as usize) {
            slot.set(Some((len, addr)));
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
