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

/// The kernel's alarm driver, used for request timeouts.
mod alarm {
    pub const DRIVER_NUM: u32 = 0x0;
    pub const FREQUENCY: u32 = 1;
    pub const SET_RELATIVE: u32 = 5;
    pub const STOP: u32 = 3;
    pub const CALLBACK: u32 = 0;
}

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
    /// notification and this call waits forever: use
    /// [`Ipc::request_timeout`] unless the service is known to listen.
    pub fn request(service: ProcessIndex, buffer: &mut [u8]) -> Result<(), ErrorCode> {
        dispatch_index!(service, request_on, service, buffer, None)
    }

    /// Like [`Ipc::request`], but gives up after `timeout_ms` milliseconds
    /// (alarm driver) with `NoAck`. A client retries on `NoAck`: that also
    /// covers a service that had not subscribed yet when it was notified.
    /// The service may still answer a request it got after the client gave
    /// up, so the client must not use the buffer for anything else.
    pub fn request_timeout(
        service: ProcessIndex,
        buffer: &mut [u8],
        timeout_ms: u32,
    ) -> Result<(), ErrorCode> {
        dispatch_index!(service, request_on, service, buffer, Some(timeout_ms))
    }

    fn request_on<const SLOT: u32>(
        service: ProcessIndex,
        buffer: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<(), ErrorCode> {
        let reply: Cell<Option<(u32, u32, u32)>> = Cell::new(None);
        let expired: Cell<Option<(u32, u32)>> = Cell::new(None);
        share::scope::<
            (
                AllowRw<_, DRIVER_NUM, SLOT>,
                Subscribe<_, DRIVER_NUM, SLOT>,
                Subscribe<_, { alarm::DRIVER_NUM }, { alarm::CALLBACK }>,
            ),
            _,
            _,
        >(|handle| {
            let (allow, subscribe, alarm_sub) = handle.split();
            S::allow_rw::<C, DRIVER_NUM, SLOT>(allow, buffer)?;
            S::subscribe::<_, _, C, DRIVER_NUM, SLOT>(subscribe, &reply)?;
            let ticks = match timeout_ms {
                Some(ms) => {
                    let hz: u32 =
                        S::command(alarm::DRIVER_NUM, alarm::FREQUENCY, 0, 0).to_result()?;
                    S::subscribe::<_, _, C, { alarm::DRIVER_NUM }, { alarm::CALLBACK }>(
                        alarm_sub, &expired,
                    )?;
                    Some((u64::from(ms) * u64::from(hz) / 1000).min(u64::from(u32::MAX)) as u32)
                }
                None => None,
            };
            Self::notify_service(service)?;
            if let Some(ticks) = ticks {
                S::command(alarm::DRIVER_NUM, alarm::SET_RELATIVE, ticks, 0)
                    .to_result::<u32, ErrorCode>()?;
            }
            // Only the service at index SLOT upcalls on subscribe number SLOT.
            let result = loop {
                if reply.get().is_some() {
                    break Ok(());
                }
                if expired.get().is_some() {
                    break Err(ErrorCode::NoAck);
                }
                S::yield_wait();
            };
            if timeout_ms.is_some() {
                let _ = S::command(alarm::DRIVER_NUM, alarm::STOP, 0, 0);
            }
            result
        })
    }

    /// Service side: subscribes on the service's own index `own` and runs
    /// `f` with the [`ServiceEnd`] that collects requests; unsubscribes when
    /// `f` returns. `f` runs the service's event loop: it takes requests
    /// with [`ServiceEnd::take`], answers them in the client's buffer
    /// ([`Request::with_buffer`]) and notifies the client
    /// ([`Ipc::notify_client`]), now or later.
    pub fn with_service<R>(
        own: ProcessIndex,
        f: impl FnOnce(&ServiceEnd<'_>) -> R,
    ) -> Result<R, ErrorCode> {
        match own.get() {
            0 => Self::with_service_on::<0, R>(own, f),
            1 => Self::with_service_on::<1, R>(own, f),
            2 => Self::with_service_on::<2, R>(own, f),
            3 => Self::with_service_on::<3, R>(own, f),
            _ => Err(ErrorCode::Invalid),
        }
    }

    fn with_service_on<const SLOT: u32, R>(
        own: ProcessIndex,
        f: impl FnOnce(&ServiceEnd<'_>) -> R,
    ) -> Result<R, ErrorCode> {
        let inbox = Inbox::default();
        share::scope::<Subscribe<_, DRIVER_NUM, SLOT>, _, _>(|subscribe| {
            S::subscribe::<_, _, C, DRIVER_NUM, SLOT>(subscribe, &inbox)?;
            Ok(f(&ServiceEnd { own, inbox: &inbox }))
        })
    }

    /// Service side: finds its own index by discovering `own_name`,
    /// subscribes on it and answers requests with `service` until a handler
    /// returns `Break`. Requests from different clients that arrive while
    /// one is handled are kept (one per client) and answered in turn.
    pub fn serve<H: Service>(own_name: &[u8], service: &mut H) -> Result<(), ErrorCode> {
        let own = Self::discover(own_name)?;
        Self::serve_on(own, service)
    }

    fn serve_on(own: ProcessIndex, service: &mut impl Service) -> Result<(), ErrorCode> {
        Self::with_service(own, |end| {
            service.ready(own);
            loop {
                // Check before yielding: the handler may itself yield (e.g.
                // to print), which can run our upcall early.
                let Some(request) = end.take() else {
                    S::yield_wait();
                    continue;
                };
                let flow = request.with_buffer(|buffer| service.handle(request.client, buffer));
                // A client that has gone away cannot be notified; keep serving.
                let _ = Self::notify_client(request.client);
                if flow.is_break() {
                    return;
                }
            }
        })
    }
}

/// A request a service received: the client and the buffer it shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client's process index.
    pub client: ProcessIndex,
    len: u32,
    addr: u32,
}

impl Request {
    /// Length of the client's shared buffer (0: it shared none).
    pub fn len(&self) -> usize {
        if self.addr == 0 {
            0
        } else {
            self.len as usize
        }
    }

    /// True if the client shared no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the client's shared buffer (empty if it shared none).
    pub fn with_buffer<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        if self.is_empty() {
            return f(&mut []);
        }
        // SAFETY: (len, addr) come from the kernel's IPC upcall: they describe
        // the buffer the client shared with this process on our index, and the
        // kernel mapped it into this process (memory-protection region) before
        // delivering the upcall; the mapping is not removed afterwards. The
        // memory belongs to the client, never to this process's own data, so
        // no other Rust reference of this process aliases it, and the slice
        // does not outlive `f`.
        let buffer =
            unsafe { core::slice::from_raw_parts_mut(self.addr as usize as *mut u8, self.len()) };
        f(buffer)
    }
}

/// The service end of IPC while [`Ipc::with_service`] runs.
pub struct ServiceEnd<'a> {
    own: ProcessIndex,
    inbox: &'a Inbox,
}

impl ServiceEnd<'_> {
    /// The service's own process index.
    pub fn own(&self) -> ProcessIndex {
        self.own
    }

    /// The next pending request (one per client, lowest index first). Upcalls
    /// arrive only while the process yields.
    pub fn take(&self) -> Option<Request> {
        self.inbox.take()
    }
}

/// Pending requests of a service: at most one per client, since a client
/// waits for its reply before it can send again.
#[derive(Default)]
struct Inbox {
    pending: [Cell<Option<(u32, u32)>>; MAX_PROCESSES as usize],
}

impl Inbox {
    fn take(&self) -> Option<Request> {
        (0..MAX_PROCESSES)
            .zip(self.pending.iter())
            .find_map(|(client, slot)| {
                slot.take().map(|(len, addr)| Request {
                    client: ProcessIndex(client),
                    len,
                    addr,
                })
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
