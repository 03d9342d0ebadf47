//! Fake of the kernel's IPC driver (0x10000) for `libtock_unittest`.
//!
//! It plays both the other processes and the kernel's bookkeeping:
//! - processes registered with [`FakeIpc::add_process`] are found by
//!   discovery;
//! - a process registered with a responder acts as a service: a
//!   notify-service (command 2) runs the responder on the buffer the process
//!   under test shared on that service's slot, then upcalls it the way the
//!   kernel does for notify-client (subscribe number and arg0 = service
//!   index);
//! - requests queued with [`FakeIpc::queue_request`] come from clients: each
//!   is copied into "client memory" below 4 GiB (upcall arguments are 32-bit
//!   addresses, as on Tock; each client has its own 1 KiB at a 1 KiB
//!   boundary) and delivered by an upcall on the service's own index with
//!   (client index, length, address); a notify-client (command 3) records the
//!   reply, or the refusal if the service shares a buffer on the client's
//!   slot (its length), and delivers the next queued request.

use libtock_platform::{CommandReturn, ErrorCode};
use libtock_unittest::{command_return, DriverInfo, DriverShareRef, RoAllowBuffer, RwAllowBuffer};
use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec::Vec;

use crate::{command, ALLOW_RO_SEARCH, DRIVER_NUM, MAX_PROCESSES};

type Responder = Box<dyn FnMut(&mut [u8]) -> usize>;

/// A queued client request: (client, offset in its area, bytes, buffer length).
type Queued = (u32, usize, Vec<u8>, usize);

/// Bytes of client memory per client process.
const CLIENT_AREA: usize = 1024;

/// Memory of the fake client processes: one page mapped below 4 GiB.
struct ClientMemory {
    addr: *mut u8,
    len: usize,
}

impl ClientMemory {
    fn new() -> Self {
        let len = 4096;
        // SAFETY: anonymous private mapping with no address hint; the result
        // is checked before use.
        let addr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap(MAP_32BIT) failed");
        assert!((addr as usize) < (1 << 32));
        Self {
            addr: addr.cast(),
            len,
        }
    }

    /// Fills client `client`'s area with 0xAA and puts `data` at `offset`.
    /// Returns the data's address.
    fn store(&self, client: u32, offset: usize, data: &[u8]) -> usize {
        let area = client as usize * CLIENT_AREA;
        assert!(area + CLIENT_AREA <= self.len && offset + data.len() <= CLIENT_AREA);
        // SAFETY: the range is inside the mapping, which is writable and alive
        // until drop; no slice into it is alive (the service's slice ended
        // before it notified the client).
        unsafe {
            core::ptr::write_bytes(self.addr.add(area), 0xAA, CLIENT_AREA);
            let at = self.addr.add(area + offset);
            core::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
            at as usize
        }
    }

    /// Copies `len` bytes at `addr` (inside the mapping) out.
    fn load(&self, addr: usize, len: usize) -> Vec<u8> {
        let base = self.addr as usize;
        assert!(addr >= base && addr + len <= base + self.len);
        // SAFETY: as in `store`; the range is inside the mapping.
        unsafe { core::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
    }
}

impl Drop for ClientMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe {
            libc::munmap(self.addr.cast(), self.len);
        }
    }
}

pub struct FakeIpc {
    share_ref: DriverShareRef,
    processes: RefCell<Vec<(Vec<u8>, u32)>>,
    responders: RefCell<Vec<(u32, Responder)>>,
    search: Cell<RoAllowBuffer>,
    shared: RefCell<Vec<RwAllowBuffer>>,
    own_index: Cell<u32>,
    memory: ClientMemory,
    requests: RefCell<VecDeque<Queued>>,
    in_flight: Cell<Option<(u32, usize, usize)>>,
    replies: RefCell<Vec<(u32, Vec<u8>)>>,
    refusals: RefCell<Vec<(u32, usize, Vec<u8>)>>,
    notifications: RefCell<Vec<(u32, u32)>>,
}

impl FakeIpc {
    /// `own_index` is the index of the process under test.
    pub fn new(own_index: u32) -> Rc<Self> {
        Rc::new(Self {
            share_ref: Default::default(),
            processes: Default::default(),
            responders: Default::default(),
            search: Default::default(),
            shared: RefCell::new((0..MAX_PROCESSES).map(|_| Default::default()).collect()),
            own_index: Cell::new(own_index),
            memory: ClientMemory::new(),
            requests: Default::default(),
            in_flight: Cell::new(None),
            replies: Default::default(),
            refusals: Default::default(),
            notifications: Default::default(),
        })
    }

    pub fn add_process(&self, name: &[u8], index: u32) {
        self.processes.borrow_mut().push((name.to_vec(), index));
    }

    /// Adds a service process at `index` answering with `responder`.
    pub fn add_service(
        &self,
        name: &[u8],
        index: u32,
        mut responder: impl FnMut(&mut [u8]) + 'static,
    ) {
        self.add_refusing_service(name, index, move |b| {
            responder(b);
            0
        });
    }

    /// Adds a service process at `index` whose `responder` answers in place
    /// and returns the length of the buffer it shares back (0: none; a
    /// refusal marker otherwise).
    pub fn add_refusing_service(
        &self,
        name: &[u8],
        index: u32,
        responder: impl FnMut(&mut [u8]) -> usize + 'static,
    ) {
        self.add_process(name, index);
        self.responders
            .borrow_mut()
            .push((index, Box::new(responder)));
    }

    /// Queues a request from client `client` (empty = client shared no buffer).
    pub fn queue_request(&self, client: u32, request: &[u8]) {
        self.queue_request_at(client, 0, request, request.len());
    }

    /// Queues a request from client `client` whose shared buffer is `len`
    /// bytes at `offset` in the client's (1 KiB aligned) area, starting
    /// with `request` (the rest 0xAA).
    pub fn queue_request_at(&self, client: u32, offset: usize, request: &[u8], len: usize) {
        assert!(request.len() <= len);
        self.requests
            .borrow_mut()
            .push_back((client, offset, request.to_vec(), len));
    }

    /// Delivers the next queued request to the service under test, if any.
    pub fn deliver_next(&self) {
        let Some((client, offset, request, len)) = self.requests.borrow_mut().pop_front() else {
            return;
        };
        let addr = if len == 0 {
            0
        } else {
            self.memory.store(client, offset, &request)
        };
        self.in_flight.set(Some((client, addr, len)));
        self.share_ref
            .schedule_upcall(self.own_index.get(), (client, len as u32, addr as u32))
            .expect("upcall number out of range");
    }

    /// Replies the service under test sent: (client, contents of the
    /// client's buffer when it was notified).
    pub fn take_replies(&self) -> Vec<(u32, Vec<u8>)> {
        self.replies.take()
    }

    /// Requests the service under test refused: (client, length of the
    /// marker it shared, contents of the client's buffer when notified).
    pub fn take_refusals(&self) -> Vec<(u32, usize, Vec<u8>)> {
        self.refusals.take()
    }

    /// All notify commands: (command, target index).
    pub fn take_notifications(&self) -> Vec<(u32, u32)> {
        self.notifications.take()
    }

    fn is_process(&self, index: u32) -> bool {
        self.processes.borrow().iter().any(|(_, i)| *i == index)
    }

    fn notify_service(&self, service: u32) -> CommandReturn {
        if !self.is_process(service) {
            return command_return::failure(ErrorCode::Invalid);
        }
        let mut responders = self.responders.borrow_mut();
        if let Some((_, responder)) = responders.iter_mut().find(|(i, _)| *i == service) {
            let mut shared = self.shared.borrow_mut();
            let marker = responder(&mut shared[service as usize]) as u32;
            let ptr = if marker == 0 { 0 } else { 0x1000 };
            self.share_ref
                .schedule_upcall(service, (service, marker, ptr))
                .expect("upcall number out of range");
        }
        command_return::success()
    }

    fn notify_client(&self, client: u32) -> CommandReturn {
        if !self.is_process(client) {
            return command_return::failure(ErrorCode::Invalid);
        }
        if let Some((in_flight, addr, len)) = self.in_flight.get() {
            if in_flight == client {
                self.in_flight.set(None);
                let bytes = if len == 0 {
                    Vec::new()
                } else {
                    self.memory.load(addr, len)
                };
                // What the kernel would pass in the client's upcall: the
                // buffer the service shares on the client's slot.
                let marker = self.shared.borrow()[client as usize].len();
                if marker == 0 {
                    self.replies.borrow_mut().push((client, bytes));
                } else {
                    self.refusals.borrow_mut().push((client, marker, bytes));
                }
                self.deliver_next();
            }
        }
        command_return::success()
    }
}

impl libtock_unittest::fake::SyscallDriver for FakeIpc {
    fn info(&self) -> DriverInfo {
        DriverInfo::new(DRIVER_NUM).upcall_count(MAX_PROCESSES)
    }

    fn register(&self, share_ref: DriverShareRef) {
        self.share_ref.replace(share_ref);
    }

    fn allow_readonly(
        &self,
        buffer_num: u32,
        buffer: RoAllowBuffer,
    ) -> Result<RoAllowBuffer, (RoAllowBuffer, ErrorCode)> {
        if buffer_num == ALLOW_RO_SEARCH {
            Ok(self.search.replace(buffer))
        } else {
            Err((buffer, ErrorCode::Invalid))
        }
    }

    fn allow_readwrite(
        &self,
        buffer_num: u32,
        buffer: RwAllowBuffer,
    ) -> Result<RwAllowBuffer, (RwAllowBuffer, ErrorCode)> {
        match self.shared.borrow_mut().get_mut(buffer_num as usize) {
            Some(slot) => Ok(core::mem::replace(slot, buffer)),
            None => Err((buffer, ErrorCode::Invalid)),
        }
    }

    fn command(&self, command_id: u32, argument0: u32, _argument1: u32) -> CommandReturn {
        match command_id {
            command::EXISTS => command_return::success(),
            command::DISCOVER => {
                let search = self.search.take();
                let found = self
                    .processes
                    .borrow()
                    .iter()
                    .find(|(name, _)| name[..] == search[..])
                    .map(|(_, index)| *index);
                self.search.set(search);
                match found {
                    Some(index) => command_return::success_u32(index),
                    None => command_return::failure(ErrorCode::NoDevice),
                }
            }
            command::NOTIFY_SERVICE => {
                self.notifications
                    .borrow_mut()
                    .push((command_id, argument0));
                self.notify_service(argument0)
            }
            command::NOTIFY_CLIENT => {
                self.notifications
                    .borrow_mut()
                    .push((command_id, argument0));
                self.notify_client(argument0)
            }
            _ => command_return::failure(ErrorCode::NoSupport),
        }
    }
}
