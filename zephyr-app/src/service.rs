//! Local clients: the pump thread's side of the Zepto service, and the Rust client
//! API.
//!
//! Client threads put requests into per-slot mailboxes (`service.c`, C API in
//! `include/zepto/service.h`); the pump thread takes them, runs them in
//! zepto-kernel's [`Service`] (its own VM and plugin table, apart from the network
//! device's) and writes the replies back, waking each client on its own semaphore. A
//! program that waits (SLEEP, a waiting plugin) is answered when [`Service::poll`]
//! reports it finished.

use core::ffi::c_int;

use zephyr::kconfig;
use zepto_kernel::hal::WaitingFor;
use zepto_kernel::pump::Execution;
use zepto_kernel::service::{self, Op, Service, Status};

use crate::hal::ZephyrHal;

/// Client slots (`CONFIG_ZEPTO_SERVICE_SLOTS`).
pub const SLOTS: usize = kconfig::CONFIG_ZEPTO_SERVICE_SLOTS as usize;
/// Program bytes per slot (`CONFIG_ZEPTO_SERVICE_PROGRAM_SIZE`).
pub const PROGRAM: usize = kconfig::CONFIG_ZEPTO_SERVICE_PROGRAM_SIZE as usize;
/// Mailbox size (`CONFIG_ZEPTO_SERVICE_BUFFER_SIZE`).
pub const BUFFER: usize = kconfig::CONFIG_ZEPTO_SERVICE_BUFFER_SIZE as usize;
/// Heap of the service's VM: the network device's size (`CONFIG_ZEPTO_HEAP_SIZE`),
/// so that both use one copy of the heap's code (a smaller service heap costs 2.5 KB
/// of flash for a second copy and saves 256 B of RAM).
pub const HEAP: usize = crate::pump::HEAP;
/// Heap handles of the service's VM: the network device's count, for the same
/// reason.
pub const HANDLES: usize = crate::pump::HANDLES;

extern "C" {
    fn zepto_box_take(slot: u32, buf: *mut u8, cap: usize, seq: *mut u32) -> c_int;
    fn zepto_box_reply(slot: u32, seq: u32, reply: *const u8, len: usize);
    fn zepto_service_call_ms(
        slot: u32,
        op: u8,
        program: *const u8,
        len: usize,
        data: *mut u8,
        cap: usize,
        reply: *mut CReply,
        timeout_ms: i32,
    ) -> c_int;
}

/// `struct zepto_reply` of `include/zepto/service.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CReply {
    status: u8,
    detail: u8,
    len: u16,
    full_len: u16,
}

/// The service the pump thread runs (held where it was built: it is about a
/// kilobyte), with what it owes its clients.
pub struct LocalService<'s, 't, 'p, V: Execution> {
    svc: &'s mut Service<'t, 'p, V, SLOTS, PROGRAM, HEAP, HANDLES>,
    /// Sequence number of each slot's request whose reply is still owed (pending).
    owed: [Option<u32>; SLOTS],
    /// Round trips answered.
    pub answered: u32,
}

impl<'s, 't, 'p, V: Execution> LocalService<'s, 't, 'p, V> {
    /// Wraps a kernel service.
    pub fn new(svc: &'s mut Service<'t, 'p, V, SLOTS, PROGRAM, HEAP, HANDLES>) -> Self {
        LocalService {
            svc,
            owed: [None; SLOTS],
            answered: 0,
        }
    }

    /// Handles every queued request, resumes a waiting program, delivers finished
    /// ones; returns what the service waits for.
    pub fn poll(&mut self, hal: &mut ZephyrHal) -> Option<WaitingFor> {
        let mut buf = [0u8; BUFFER];
        for slot in 0..SLOTS {
            let mut seq = 0u32;
            // SAFETY: `buf` and `seq` are valid for writes; the C side copies at most
            // `buf.len()` bytes.
            let n = unsafe { zepto_box_take(slot as u32, buf.as_mut_ptr(), buf.len(), &mut seq) };
            if n < 0 {
                continue;
            }
            // A new request replaces the one still owed for this slot (the kernel
            // service cancels its program).
            if let Some(o) = self.owed.get_mut(slot) {
                *o = None;
            }
            let status = self.svc.handle(slot, &mut buf, hal);
            if status == Status::Pending {
                if let Some(o) = self.owed.get_mut(slot) {
                    *o = Some(seq);
                }
            } else {
                self.answer(slot, seq, &buf);
            }
        }
        let p = self.svc.poll(hal);
        if let Some(slot) = p.finished {
            // `deliver` writes the final reply only over the PENDING reply the client
            // was given; the client's copy of it lives in its mailbox, so the pump
            // hands over a PENDING buffer when it still owes the reply and anything
            // else (which drops the result and frees the VM) when it does not.
            let owed = self.owed.get_mut(slot).and_then(Option::take);
            let mark: &[u8] = if owed.is_some() {
                &service::PENDING_REPLY
            } else {
                &[0xff]
            };
            if let Some(head) = buf.get_mut(..mark.len()) {
                head.copy_from_slice(mark);
            }
            if let (Some(seq), Some(_)) = (owed, self.svc.deliver(slot, &mut buf)) {
                self.answer(slot, seq, &buf);
            }
        }
        p.wait
    }

    fn answer(&mut self, slot: usize, seq: u32, buf: &[u8]) {
        let len = service::decode_reply(buf)
            .map(|r| service::REPLY_HEADER + r.data.len())
            .unwrap_or(service::REPLY_HEADER)
            .min(buf.len());
        // SAFETY: `buf` is valid for reads of `len` <= `buf.len()` bytes.
        unsafe { zepto_box_reply(slot as u32, seq, buf.as_ptr(), len) };
        self.answered = self.answered.wrapping_add(1);
    }
}

/// A reply received by [`call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// STATUS (see [`Status`]; `None` for a value this build does not know).
    pub status: Option<Status>,
    /// DETAIL.
    pub detail: u8,
    /// DATA bytes copied into the caller's buffer.
    pub len: usize,
    /// DATA bytes the reply had.
    pub full_len: usize,
}

/// Rust client API: sends `op` with `program` from `slot` and waits up to
/// `timeout_ms` (negative: forever) for the final reply, whose DATA goes to `data`.
/// `Err` is a negative errno of `zepto_service_call` (`-EAGAIN` at the timeout,
/// `-EBUSY`, `-EINVAL`, `-E2BIG`).
pub fn call(
    slot: u32,
    op: Op,
    program: &[u8],
    data: &mut [u8],
    timeout_ms: i32,
) -> Result<Reply, c_int> {
    let mut r = CReply::default();
    // SAFETY: every pointer is valid for its length; `r` is a `struct zepto_reply`.
    let rc = unsafe {
        zepto_service_call_ms(
            slot,
            op as u8,
            program.as_ptr(),
            program.len(),
            data.as_mut_ptr(),
            data.len(),
            &mut r,
            timeout_ms,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    Ok(Reply {
        status: Status::from_u8(r.status),
        detail: r.detail,
        len: usize::from(r.len),
        full_len: usize::from(r.full_len),
    })
}
