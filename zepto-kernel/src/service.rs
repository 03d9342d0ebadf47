//! The local service protocol: how a program on the same device (a Tock process, a
//! Zephyr thread) asks the Zepto service to load and run Zepto VM programs.
//!
//! A client owns one buffer that it shares with the service. It writes a request at
//! the start of the buffer, the service handles it with [`Service::handle`] and
//! overwrites the buffer with the reply. Byte layouts (all integers little-endian):
//!
//! ```text
//! request:  OP (u8) | LEN (u16) | PROGRAM (LEN bytes)
//! reply:    STATUS (u8) | DETAIL (u8) | LEN (u16) | DATA (LEN bytes)
//! ```
//!
//! [`Op`] and [`Status`] list the values; `docs/service.md` describes them. Each
//! client has its own [`Service`] slot holding its loaded program, so a client never
//! sees another client's program or reply. The service has one VM: while it runs one
//! client's program (a program may wait in SLEEP or in a plugin), other clients get
//! [`Status::Busy`]; the waiting client gets [`Status::Pending`] at once and the final
//! reply later, when [`Service::poll`] reports its slot and the port calls
//! [`Service::deliver`] (and notifies the client).
//!
//! ```
//! use zepto_kernel::plugins::{Bodypart, Ping};
//! use zepto_kernel::service::{self, Op, Service, Status};
//! use zepto_kernel::testhal::TestHal;
//! use zepto_kernel::vm::{VmConfig, VmTiny};
//!
//! let mut ping = Ping;
//! let mut table = [Bodypart::new(1, &mut ping)];
//! let mut hal = TestHal::<64>::default();
//! let mut svc: Service<'_, '_, VmTiny<4>, 2, 32, 256, 2> =
//!     Service::new(VmTiny::new(VmConfig::default()), &mut table, &mut hal).unwrap();
//! let mut buf = [0u8; 32];
//! // EXEC bodypart 1 (Ping) with no data.
//! service::encode_request(&mut buf, Op::LoadExecute, &[0x02, 0x02, 0x00]).unwrap();
//! assert_eq!(svc.handle(0, &mut buf, &mut hal), Status::Ok);
//! let reply = service::decode_reply(&buf).unwrap();
//! assert_eq!(reply.status, Status::Ok);
//! ```

use crate::error::Error;
use crate::hal::{WaitingFor, WakeReason};
use crate::heap::{Handle, HeapMem};
use crate::plugins::{self, Bodypart};
use crate::pump::Execution;
use crate::vm::{ExecFlags, VmHal, VmStep};

/// Bytes of the request header (OP, LEN).
pub const REQUEST_HEADER: usize = 3;
/// Bytes of the reply header (STATUS, DETAIL, LEN).
pub const REPLY_HEADER: usize = 4;

/// What a client asks (the OP byte of a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Store PROGRAM in the client's slot (replacing the one there).
    Load = 0,
    /// Run the program in the client's slot; LEN must be 0.
    Execute = 1,
    /// Store PROGRAM, then run it.
    LoadExecute = 2,
}

impl Op {
    /// Parses an OP byte.
    pub const fn from_u8(v: u8) -> Option<Op> {
        match v {
            0 => Some(Op::Load),
            1 => Some(Op::Execute),
            2 => Some(Op::LoadExecute),
            _ => None,
        }
    }
}

/// The STATUS byte of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done. DATA is the VM's reply buffer for [`Op::Execute`] and
    /// [`Op::LoadExecute`], empty for [`Op::Load`].
    Ok = 0,
    /// The program ended with a VM exception: DETAIL is the exception code, DATA the
    /// VM's exception reply.
    VmException = 1,
    /// OP is not a known operation; DETAIL is the OP byte.
    UnknownOp = 2,
    /// The request is malformed: the buffer is shorter than a reply header, LEN runs
    /// past the end of the buffer, or [`Op::Execute`] carries a program.
    Malformed = 3,
    /// Too big: DETAIL 0 = the program exceeds the slot (nothing was stored), DETAIL
    /// 1 = the VM's reply did not fit the buffer (DATA holds its first bytes).
    TooBig = 4,
    /// [`Op::Execute`] with no program loaded in the client's slot.
    NoProgram = 5,
    /// The VM runs another client's program; try again later.
    Busy = 6,
    /// The program waits (SLEEP, a plugin); the final reply replaces this one later.
    Pending = 7,
    /// The service failed locally (e.g. its heap is too small for the program).
    Internal = 8,
    /// The client has no slot (its index is beyond the service's slot table).
    NoSlot = 9,
}

impl Status {
    /// Parses a STATUS byte.
    pub const fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::VmException,
            2 => Status::UnknownOp,
            3 => Status::Malformed,
            4 => Status::TooBig,
            5 => Status::NoProgram,
            6 => Status::Busy,
            7 => Status::Pending,
            8 => Status::Internal,
            9 => Status::NoSlot,
            _ => return None,
        })
    }
}

/// The reply header of [`Status::Pending`] (STATUS 7, DETAIL 0, LEN 0).
pub const PENDING_REPLY: [u8; REPLY_HEADER] = [Status::Pending as u8, 0, 0, 0];

/// DETAIL of [`Status::TooBig`]: the program does not fit the slot.
pub const TOO_BIG_PROGRAM: u8 = 0;
/// DETAIL of [`Status::TooBig`]: the reply does not fit the buffer.
pub const TOO_BIG_REPLY: u8 = 1;

/// Writes a request into `buf`; returns the bytes used.
pub fn encode_request(buf: &mut [u8], op: Op, program: &[u8]) -> Result<usize, Error> {
    let len = u16::try_from(program.len()).map_err(|_| Error::ValueOutOfRange)?;
    let total = REQUEST_HEADER
        .checked_add(program.len())
        .ok_or(Error::ValueOutOfRange)?;
    let out = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    let (head, body) = out.split_at_mut(REQUEST_HEADER);
    let [lo, hi] = len.to_le_bytes();
    head.copy_from_slice(&[op as u8, lo, hi]);
    body.copy_from_slice(program);
    Ok(total)
}

/// A decoded reply, borrowing DATA from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyView<'a> {
    /// STATUS.
    pub status: Status,
    /// DETAIL.
    pub detail: u8,
    /// DATA.
    pub data: &'a [u8],
}

/// Decodes the reply in `buf`: [`Error::Malformed`] for an unknown status,
/// [`Error::UnexpectedEnd`] if the header or DATA is cut off.
pub fn decode_reply(buf: &[u8]) -> Result<ReplyView<'_>, Error> {
    let head = buf.get(..REPLY_HEADER).ok_or(Error::UnexpectedEnd)?;
    let (&[status, detail, lo, hi], rest) = (
        <&[u8; REPLY_HEADER]>::try_from(head).map_err(|_| Error::UnexpectedEnd)?,
        buf.get(REPLY_HEADER..).unwrap_or(&[]),
    );
    let len = usize::from(u16::from_le_bytes([lo, hi]));
    Ok(ReplyView {
        status: Status::from_u8(status).ok_or(Error::Malformed)?,
        detail,
        data: rest.get(..len).ok_or(Error::UnexpectedEnd)?,
    })
}

/// Writes a reply into `buf`, DATA cut to what fits; returns the status written.
/// A buffer shorter than [`REPLY_HEADER`] gets [`Status::Malformed`] in its first
/// byte (if it has one) and zeros after it.
fn write_reply(buf: &mut [u8], status: Status, detail: u8, data: &[u8]) -> Status {
    let room = buf.len().saturating_sub(REPLY_HEADER);
    if buf.len() < REPLY_HEADER {
        buf.fill(0);
        if let Some(b) = buf.first_mut() {
            *b = Status::Malformed as u8;
        }
        return Status::Malformed;
    }
    let (status, detail, data) = if data.len() <= room {
        (status, detail, data)
    } else {
        (
            Status::TooBig,
            TOO_BIG_REPLY,
            data.get(..room).unwrap_or(&[]),
        )
    };
    // `room` and therefore DATA fit a u16 only if the buffer is small enough.
    let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
    let [lo, hi] = (data.len() as u16).to_le_bytes();
    if let Some(h) = buf.get_mut(..REPLY_HEADER) {
        h.copy_from_slice(&[status as u8, detail, lo, hi]);
    }
    if let Some(d) = buf
        .get_mut(REPLY_HEADER..)
        .and_then(|b| b.get_mut(..data.len()))
    {
        d.copy_from_slice(data);
    }
    status
}

/// One client's slot: its loaded program.
#[derive(Debug, Clone, Copy)]
struct Slot<const P: usize> {
    program: [u8; P],
    len: u16,
    loaded: bool,
}

impl<const P: usize> Slot<P> {
    const EMPTY: Self = Self {
        program: [0; P],
        len: 0,
        loaded: false,
    };

    fn program(&self) -> &[u8] {
        self.program.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// What the VM is doing for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Nothing.
    Idle,
    /// The slot's program waits for `what`, counted from `since_ms`.
    Waiting {
        slot: usize,
        what: WaitingFor,
        since_ms: u64,
    },
    /// The slot's program ended; its reply waits for [`Service::deliver`].
    Finished {
        slot: usize,
        status: Status,
        detail: u8,
    },
}

/// What [`Service::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePoll {
    /// A slot whose pending program has ended: call [`Service::deliver`] for it.
    pub finished: Option<usize>,
    /// What the service waits for before the next [`Service::poll`] (`None`: only
    /// for new requests).
    pub wait: Option<WaitingFor>,
}

/// The service: `S` client slots of up to `P` program bytes each, one VM `V` with the
/// service's own plugin table, and a heap of `N` bytes and `B` handles for the
/// running program and its reply (one handle, plus one per PARALLEL pseudo-thread).
pub struct Service<
    't,
    'p,
    V: Execution,
    const S: usize,
    const P: usize,
    const N: usize,
    const B: usize,
> {
    mem: HeapMem<N, B>,
    h: Handle,
    vm: V,
    plugins: &'t mut [Bodypart<'p>],
    slots: [Slot<P>; S],
    run: Run,
}

impl<'t, 'p, V: Execution, const S: usize, const P: usize, const N: usize, const B: usize>
    Service<'t, 'p, V, S, P, N, B>
{
    const CHECK: () = assert!(
        B >= 1 && P <= u16::MAX as usize,
        "the service needs a heap handle and programs of at most 65535 bytes"
    );

    /// A service with empty slots; initialises the plugins of `plugins`.
    pub fn new<H: VmHal>(
        vm: V,
        plugins: &'t mut [Bodypart<'p>],
        hal: &mut H,
    ) -> Result<Self, Error> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        plugins::init_all(plugins, hal)?;
        let mut mem = HeapMem::new();
        let h = mem.heap().alloc()?;
        Ok(Self {
            mem,
            h,
            vm,
            plugins,
            slots: [Slot::EMPTY; S],
            run: Run::Idle,
        })
    }

    /// True if `slot` has a program loaded.
    pub fn is_loaded(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.loaded)
    }

    /// The slot whose program the VM holds (waiting, or finished and not delivered).
    pub fn active_slot(&self) -> Option<usize> {
        match self.run {
            Run::Idle => None,
            Run::Waiting { slot, .. } | Run::Finished { slot, .. } => Some(slot),
        }
    }

    /// Handles the request in `buf` from the client of `slot` and writes the reply
    /// over it; returns the reply's status. Never fails: every problem is a status.
    ///
    /// A request from the client whose program is pending cancels that program
    /// (as a new command overrides a running one on the network side).
    pub fn handle<H: VmHal>(&mut self, slot: usize, buf: &mut [u8], hal: &mut H) -> Status {
        if buf.len() < REPLY_HEADER {
            return write_reply(buf, Status::Malformed, 0, &[]);
        }
        if slot >= S {
            return write_reply(buf, Status::NoSlot, 0, &[]);
        }
        let (op, len) = match buf {
            [op, lo, hi, ..] => (*op, usize::from(u16::from_le_bytes([*lo, *hi]))),
            _ => return write_reply(buf, Status::Malformed, 0, &[]),
        };
        let Some(op) = Op::from_u8(op) else {
            return write_reply(buf, Status::UnknownOp, op, &[]);
        };
        let Some(program) = buf.get(REQUEST_HEADER..).and_then(|rest| rest.get(..len)) else {
            return write_reply(buf, Status::Malformed, 0, &[]);
        };
        if op == Op::Execute && len != 0 {
            return write_reply(buf, Status::Malformed, 0, &[]);
        }
        if self.active_slot() == Some(slot) {
            self.cancel();
        }
        if op != Op::Execute {
            let Some(s) = self.slots.get_mut(slot) else {
                return write_reply(buf, Status::NoSlot, 0, &[]);
            };
            let Some(dst) = s.program.get_mut(..len) else {
                return write_reply(buf, Status::TooBig, TOO_BIG_PROGRAM, &[]);
            };
            dst.copy_from_slice(program);
            s.len = len as u16;
            s.loaded = true;
            if op == Op::Load {
                return write_reply(buf, Status::Ok, 0, &[]);
            }
        }
        self.execute(slot, buf, hal)
    }

    /// Starts the program of `slot` and answers in `buf`.
    fn execute<H: VmHal>(&mut self, slot: usize, buf: &mut [u8], hal: &mut H) -> Status {
        if self.run != Run::Idle {
            return write_reply(buf, Status::Busy, 0, &[]);
        }
        let Some(s) = self.slots.get(slot).filter(|s| s.loaded) else {
            return write_reply(buf, Status::NoProgram, 0, &[]);
        };
        if self.mem.heap().set_request(self.h, s.program()).is_err() {
            return write_reply(buf, Status::Internal, 0, &[]);
        }
        // A local command is a complete command-reply exchange: the first packet of
        // an open chain (see "EXIT rules" in docs/decisions.md).
        let flags = ExecFlags {
            is_first: true,
            is_last: false,
        };
        let step = self
            .vm
            .start(&mut self.mem.heap(), self.h, flags, self.plugins, hal);
        match self.after_step(slot, step, hal) {
            Run::Finished { status, detail, .. } => self.write_vm_reply(buf, status, detail),
            _ => write_reply(buf, Status::Pending, 0, &[]),
        }
    }

    /// Records what the VM reported for `slot` and returns the new state.
    fn after_step<H: VmHal>(
        &mut self,
        slot: usize,
        step: Result<VmStep, Error>,
        hal: &mut H,
    ) -> Run {
        self.run = match step {
            Ok(VmStep::Waiting(what)) => Run::Waiting {
                slot,
                what,
                since_ms: hal.now_ms(),
            },
            Ok(VmStep::Done { exception, .. }) => {
                let (status, detail) = match exception {
                    Some(e) => (Status::VmException, e.code as u8),
                    None => (Status::Ok, 0),
                };
                Run::Finished {
                    slot,
                    status,
                    detail,
                }
            }
            Err(_) => {
                self.vm.abort(&mut self.mem.heap(), self.plugins);
                let _ = self.mem.heap().clear_reply(self.h);
                Run::Finished {
                    slot,
                    status: Status::Internal,
                    detail: 0,
                }
            }
        };
        self.run
    }

    /// Copies the VM's reply (or nothing, for an internal error) into `buf`.
    fn write_vm_reply(&mut self, buf: &mut [u8], status: Status, detail: u8) -> Status {
        self.run = Run::Idle;
        let data = match status {
            Status::Ok | Status::VmException => self.mem.reply(self.h).unwrap_or(&[]),
            _ => &[],
        };
        let written = write_reply(buf, status, detail, data);
        let _ = self.mem.heap().set_request(self.h, &[]);
        written
    }

    /// Drops the active program (waiting or finished) without replying.
    fn cancel(&mut self) {
        if let Run::Waiting { .. } = self.run {
            self.vm.abort(&mut self.mem.heap(), self.plugins);
        }
        let _ = self.mem.heap().set_request(self.h, &[]);
        self.run = Run::Idle;
    }

    /// Resumes a waiting program whose wait is over. Returns the slot whose program
    /// has ended (until [`Service::deliver`] is called for it) and what to wait for.
    pub fn poll<H: VmHal>(&mut self, hal: &mut H) -> ServicePoll {
        if let Run::Waiting {
            slot,
            what,
            since_ms,
        } = self.run
        {
            if let Some(wake) = wait_over(&what, since_ms, hal) {
                let step = self
                    .vm
                    .resume(&mut self.mem.heap(), self.h, self.plugins, hal, wake);
                self.after_step(slot, step, hal);
            }
        }
        match self.run {
            Run::Idle => ServicePoll {
                finished: None,
                wait: None,
            },
            Run::Finished { slot, .. } => ServicePoll {
                finished: Some(slot),
                wait: None,
            },
            Run::Waiting { what, since_ms, .. } => {
                let now = hal.now_ms();
                let mut w = what;
                w.timeout_ms = what.timeout_ms.map(|t| {
                    let end = since_ms.saturating_add(u64::from(t));
                    end.saturating_sub(now).min(u64::from(u32::MAX)) as u32
                });
                ServicePoll {
                    finished: None,
                    wait: Some(w),
                }
            }
        }
    }

    /// Writes the final reply of `slot`'s finished program into `buf` (that client's
    /// buffer) and frees the VM for the next program.
    ///
    /// The reply is written only over the PENDING reply the client was given
    /// ([`PENDING_REPLY`]); if the buffer holds anything else (the client gave up
    /// and wrote a new request, or passed no buffer) the result is dropped, `buf`
    /// is left alone and `None` is returned, as it is when `slot` has no finished
    /// program.
    pub fn deliver(&mut self, slot: usize, buf: &mut [u8]) -> Option<Status> {
        match self.run {
            Run::Finished {
                slot: s,
                status,
                detail,
            } if s == slot => {
                if buf.starts_with(&PENDING_REPLY) {
                    Some(self.write_vm_reply(buf, status, detail))
                } else {
                    let _ = self.mem.heap().set_request(self.h, &[]);
                    self.run = Run::Idle;
                    None
                }
            }
            _ => None,
        }
    }
}

/// Whether a VM wait has ended, and why (the same rule as the main pump's).
fn wait_over<H: VmHal>(w: &WaitingFor, since_ms: u64, hal: &mut H) -> Option<WakeReason> {
    for (pin, value) in w.pins() {
        if hal.read_pin(pin).ok() == Some(value) {
            return Some(WakeReason::Pin(pin));
        }
    }
    match w.timeout_ms {
        Some(t) if hal.now_ms() >= since_ms.saturating_add(u64::from(t)) => {
            Some(WakeReason::Timeout)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
