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
//!
//! Memory protection: the kernel maps a client's buffer into the service only
//! if the memory-protection unit can cover it with a free region, and upcalls
//! the service either way. The service end therefore replays that decision
//! ([`regions`]) and never touches a buffer that may be unmapped: such a
//! request is refused with an error notification (the service shares a
//! marker of 1..=3 bytes with the client, which no unit can map, and notifies
//! it; the client sees the marker's length in its upcall, [`Refusal`]).
//! Clients share [`SharedBuffer`]s, which every unit maps.
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
use libtock_platform::{syscall_class, DefaultConfig, ErrorCode, Syscalls};

pub mod regions;
pub use regions::{Refusal, RegionRules, Regions};

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

/// A client's IPC buffer: `len()` bytes, a power of two of at least 32,
/// aligned to its length, so every memory-protection unit maps it with one
/// region ([`RegionRules::always_maps`]).
pub trait SharedBuffer {
    /// The bytes.
    fn bytes(&mut self) -> &mut [u8];
}

macro_rules! shared_buffers {
    ($($name:ident $n:literal),*) => {$(
        #[doc = concat!("A ", stringify!($n), "-byte IPC buffer aligned to ", stringify!($n), " bytes.")]
        #[repr(C, align($n))]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// All zeros.
            pub const fn new() -> Self {
                Self([0; $n])
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl SharedBuffer for $name {
            fn bytes(&mut self) -> &mut [u8] {
                &mut self.0
            }
        }
    )*};
}
shared_buffers!(Buffer32 32, Buffer64 64, Buffer128 128);

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

    /// Called for a request refused without reading its buffer (the client
    /// gets an error notification).
    fn refused(&mut self, client: ProcessIndex, why: Refusal) {
        let _ = (client, why);
    }
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
    /// The buffer stays shared only while this call runs, but the kernel maps
    /// it into the service for good on the first notify, and a service has
    /// only a few regions: a client uses one buffer for all its requests (a
    /// service accepts only the buffer a client shared first).
    /// If the service has not subscribed yet, the kernel drops the
    /// notification and this call waits forever: use
    /// [`Ipc::request_timeout`] unless the service is known to listen.
    ///
    /// A refused request (the service did not read the buffer) fails with
    /// [`refusal_error`] of the [`Refusal`].
    pub fn request<B: SharedBuffer>(
        service: ProcessIndex,
        buffer: &mut B,
    ) -> Result<(), ErrorCode> {
        Self::request_any(service, buffer.bytes(), None)
    }

    /// Like [`Ipc::request`], but gives up after `timeout_ms` milliseconds
    /// (alarm driver) with `NoAck`. A client retries on `NoAck`: that also
    /// covers a service that had not subscribed yet when it was notified.
    /// The service may still answer a request it got after the client gave
    /// up, so the client must not use the buffer for anything else.
    pub fn request_timeout<B: SharedBuffer>(
        service: ProcessIndex,
        buffer: &mut B,
        timeout_ms: u32,
    ) -> Result<(), ErrorCode> {
        Self::request_any(service, buffer.bytes(), Some(timeout_ms))
    }

    /// Like [`Ipc::request_timeout`] (no timeout if `None`) with any slice
    /// as the shared buffer. A slice that the memory-protection unit cannot
    /// map is refused by a service using this crate; this exists to exercise
    /// that refusal.
    pub fn request_any(
        service: ProcessIndex,
        buffer: &mut [u8],
        timeout_ms: Option<u32>,
    ) -> Result<(), ErrorCode> {
        dispatch_index!(service, request_on, service, buffer, timeout_ms)
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
                if let Some((_, len, _)) = reply.get() {
                    break match Refusal::from_len(len) {
                        Some(why) => Err(refusal_error(why)),
                        None => Ok(()),
                    };
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
    /// ([`ServiceEnd::reply`]), now or later; a request whose buffer the
    /// kernel may not have mapped is answered with [`ServiceEnd::refuse`].
    /// Subscribing is the first thing a service should do after it starts: a
    /// notify that arrives before still costs the service a region, and its
    /// upcall (dropped by the kernel) is not replayed.
    pub fn with_service<R>(
        own: ProcessIndex,
        f: impl FnOnce(&ServiceEnd<'_>) -> R,
    ) -> Result<R, ErrorCode> {
        Self::with_service_rules(own, RegionRules::TARGET, f)
    }

    /// Like [`Ipc::with_service`] with the region rules of another board
    /// than [`RegionRules::TARGET`].
    pub fn with_service_rules<R>(
        own: ProcessIndex,
        rules: RegionRules,
        f: impl FnOnce(&ServiceEnd<'_>) -> R,
    ) -> Result<R, ErrorCode> {
        match own.get() {
            0 => Self::with_service_on::<0, R>(own, rules, f),
            1 => Self::with_service_on::<1, R>(own, rules, f),
            2 => Self::with_service_on::<2, R>(own, rules, f),
            3 => Self::with_service_on::<3, R>(own, rules, f),
            _ => Err(ErrorCode::Invalid),
        }
    }

    fn with_service_on<const SLOT: u32, R>(
        own: ProcessIndex,
        rules: RegionRules,
        f: impl FnOnce(&ServiceEnd<'_>) -> R,
    ) -> Result<R, ErrorCode> {
        let inbox = Inbox::new(rules);
        // Error markers: 3 bytes per client slot, never read or written.
        let mut markers = [0u8; 3 * MAX_PROCESSES as usize];
        let end = ServiceEnd {
            own,
            inbox: &inbox,
            markers: markers.as_mut_ptr(),
            marked: Default::default(),
            allow: Self::allow_marker,
            notify: Self::notify_client,
        };
        let result = share::scope::<Subscribe<_, DRIVER_NUM, SLOT>, _, _>(|subscribe| {
            S::subscribe::<_, _, C, DRIVER_NUM, SLOT>(subscribe, &inbox)?;
            Ok(f(&end))
        });
        end.unshare_markers();
        result
    }

    /// Read-write allow of `len` bytes at `ptr` on slot `client` (raw, so the
    /// marker stays shared after this returns; `ServiceEnd` unshares it).
    fn allow_marker(client: u32, ptr: *mut u8, len: usize) -> Result<(), ErrorCode> {
        // SAFETY: Read-Write Allow per TRD 104 (driver, buffer number,
        // address, length). The marker bytes live in `with_service_on`'s
        // frame and are unshared (zero-length allow) before it returns; no
        // reference to them exists meanwhile, and the kernel neither reads
        // nor writes IPC buffers itself.
        let [r0, r1, _, _] = unsafe {
            S::syscall4::<{ syscall_class::ALLOW_RW }>([
                DRIVER_NUM.into(),
                client.into(),
                ptr.into(),
                len.into(),
            ])
        };
        if r0.as_u32() == u32::from(libtock_platform::return_variant::FAILURE_2_U32) {
            Err(ErrorCode::try_from(r1.as_u32()).unwrap_or(ErrorCode::Fail))
        } else {
            Ok(())
        }
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
                let flow = match request.with_buffer(|b| service.handle(request.client, b)) {
                    Ok(flow) => {
                        // A client that has gone away cannot be notified.
                        let _ = end.reply(request.client);
                        flow
                    }
                    Err(why) => {
                        service.refused(request.client, why);
                        let _ = end.refuse(request.client, why);
                        ControlFlow::Continue(())
                    }
                };
                if flow.is_break() {
                    return;
                }
            }
        })
    }
}

/// The error a client's request fails with when the service refused it.
pub fn refusal_error(why: Refusal) -> ErrorCode {
    match why {
        Refusal::Rules => ErrorCode::Invalid,
        Refusal::NotFirst => ErrorCode::Already,
        Refusal::NoRegion => ErrorCode::NoMem,
    }
}

/// A request a service received: the client and the buffer it shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client's process index.
    pub client: ProcessIndex,
    len: u32,
    addr: u32,
    verdict: Result<(), Refusal>,
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

    /// Address of the client's shared buffer (0: none).
    pub fn addr(&self) -> u32 {
        self.addr
    }

    /// Why the buffer must not be touched, if so.
    pub fn refusal(&self) -> Option<Refusal> {
        self.verdict.err()
    }

    /// Runs `f` on the client's shared buffer (empty if it shared none), or
    /// fails without touching it if the kernel may not have mapped it.
    pub fn with_buffer<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Refusal> {
        self.verdict?;
        if self.is_empty() {
            return Ok(f(&mut []));
        }
        // SAFETY: (len, addr) come from the kernel's IPC upcall: the buffer
        // the client shared with this process on our index. `Regions::check`
        // replayed the kernel's region allocation for that upcall and found
        // the whole buffer inside a region the kernel added to this process
        // (regions for IPC buffers are never removed). The memory belongs to
        // the client, never to this process's own data, so no other Rust
        // reference of this process aliases it, and the slice does not
        // outlive `f`.
        let buffer =
            unsafe { core::slice::from_raw_parts_mut(self.addr as usize as *mut u8, self.len()) };
        Ok(f(buffer))
    }
}

/// The service end of IPC while [`Ipc::with_service`] runs.
pub struct ServiceEnd<'a> {
    own: ProcessIndex,
    inbox: &'a Inbox,
    markers: *mut u8,
    /// Length of the marker shared on each client's slot (0: none).
    marked: [Cell<u8>; MAX_PROCESSES as usize],
    allow: fn(u32, *mut u8, usize) -> Result<(), ErrorCode>,
    notify: fn(ProcessIndex) -> Result<(), ErrorCode>,
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

    /// The region rules in use.
    pub fn rules(&self) -> RegionRules {
        self.inbox.regions.rules()
    }

    /// Notifies `client` that its reply is in its buffer (the upcall carries
    /// no buffer of ours).
    pub fn reply(&self, client: ProcessIndex) -> Result<(), ErrorCode> {
        let i = client.get();
        if let Some(m) = self.marked.get(i as usize).filter(|m| m.get() != 0) {
            (self.allow)(i, core::ptr::null_mut(), 0)?;
            m.set(0);
        }
        (self.notify)(client)
    }

    /// Notifies `client` that its request was refused unread: shares a
    /// marker of `why as u8` bytes (1..=3, which no memory-protection unit
    /// maps, so the client gets no region for it) on the client's slot, so
    /// its upcall carries that length. The marker stays shared until the next
    /// [`ServiceEnd::reply`] to that client: the kernel reads the allow when
    /// it delivers the upcall, which can be later.
    pub fn refuse(&self, client: ProcessIndex, why: Refusal) -> Result<(), ErrorCode> {
        let i = client.get();
        let m = self.marked.get(i as usize).ok_or(ErrorCode::Invalid)?;
        if m.get() != why as u8 {
            if m.get() != 0 {
                (self.allow)(i, core::ptr::null_mut(), 0)?;
                m.set(0);
            }
            let ptr = self.markers.wrapping_add(3 * i as usize);
            (self.allow)(i, ptr, why as usize)?;
            m.set(why as u8);
        }
        (self.notify)(client)
    }

    fn unshare_markers(&self) {
        for (i, m) in (0..MAX_PROCESSES).zip(self.marked.iter()) {
            if m.get() != 0 && (self.allow)(i, core::ptr::null_mut(), 0).is_ok() {
                m.set(0);
            }
        }
    }
}

/// Pending requests of a service: at most one per client, since a client
/// waits for its reply before it can send again; and the replay of the
/// kernel's regions for IPC buffers.
struct Inbox {
    pending: [Cell<Option<Request>>; MAX_PROCESSES as usize],
    regions: Regions<{ MAX_PROCESSES as usize }>,
}

impl Inbox {
    fn new(rules: RegionRules) -> Self {
        Self {
            pending: Default::default(),
            regions: Regions::new(rules),
        }
    }

    fn take(&self) -> Option<Request> {
        self.pending.iter().find_map(Cell::take)
    }
}

impl Upcall<AnyId> for Inbox {
    fn upcall(&self, caller: u32, len: u32, addr: u32) {
        // Every upcall may have cost a region: replay it before anything else.
        let verdict = self.regions.check(caller as usize, len, addr);
        if let (Some(slot), Ok(client)) =
            (self.pending.get(caller as usize), ProcessIndex::new(caller))
        {
            slot.set(Some(Request {
                client,
                len,
                addr,
                verdict,
            }));
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_regions;
