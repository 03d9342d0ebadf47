//! Zepto VM (`protocols/zepto-vm.rst`): the byte-code interpreter that runs a SACCP
//! program and builds its reply buffer.
//!
//! * [`Vm`] is a resumable state machine: [`Vm::start`] runs a program (the *request*
//!   of a heap handle) and writes the reply buffer as the *reply* of that handle; when
//!   the program sleeps, waits for a plugin, or uses up its instruction budget, the VM
//!   returns [`VmStep::Waiting`] and the caller calls [`Vm::resume`] later.
//! * The level (One, Tiny, Small, Medium) and the stack sizes are const generics;
//!   see [`VmOne`], [`VmTiny`], [`VmSmall`], [`VmMedium`].
//! * [`insn`] encodes, decodes and prints instructions; [`reply`] decodes reply
//!   buffers and exception replies (both are what a client needs).
//!
//! Choices the spec leaves open are listed in `docs/vm.md` and `docs/decisions.md`.

mod exec;
pub mod expr;
pub mod insn;
pub mod reply;
mod stack;

use crate::error::Error;
use crate::hal::{Clock, McuSleep, Pins, Transceiver, WaitingFor, WakeReason, Watchdog};
use crate::heap::{Handle, Heap};
use crate::plugins::Bodypart;
use half::f16;
use insn::ReplyFlags;

/// The HAL facilities the VM and plugins use (blanket-implemented).
pub trait VmHal: Clock + Pins + Transceiver + McuSleep + Watchdog {}

impl<T: Clock + Pins + Transceiver + McuSleep + Watchdog> VmHal for T {}

/// Zepto VM levels (the value is the ZEPTOVM_LEVEL reported by DEVICECAPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Linear programs only.
    One = 0,
    /// Adds jumps and reply manipulation.
    Tiny = 1,
    /// Adds the expression stack, calls, SWITCH and loops.
    Small = 2,
    /// Adds PARALLEL.
    Medium = 3,
}

/// `LEVEL` parameter of [`Vm`] for Zepto VM-One.
pub const ONE: u8 = Level::One as u8;
/// `LEVEL` parameter of [`Vm`] for Zepto VM-Tiny.
pub const TINY: u8 = Level::Tiny as u8;
/// `LEVEL` parameter of [`Vm`] for Zepto VM-Small.
pub const SMALL: u8 = Level::Small as u8;
/// `LEVEL` parameter of [`Vm`] for Zepto VM-Medium.
pub const MEDIUM: u8 = Level::Medium as u8;

/// Zepto VM-One.
pub type VmOne = Vm<ONE, 0, 0, 0>;
/// Zepto VM-Tiny with a reply stack of `RS` frames.
pub type VmTiny<const RS: usize> = Vm<TINY, RS, 0, 0>;
/// Zepto VM-Small with `ES` expression stack entries.
pub type VmSmall<const RS: usize, const ES: usize> = Vm<SMALL, RS, ES, 0>;
/// Zepto VM-Medium with `PT` pseudo-threads.
pub type VmMedium<const RS: usize, const ES: usize, const PT: usize> = Vm<MEDIUM, RS, ES, PT>;

/// VM exception codes (EXCEPTION-CODE of the exception reply). Codes 1-11 are the
/// spec's list in its order; 12-16 name cases the spec mentions without a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ExceptionCode {
    InvalidInstruction = 1,
    InvalidEncodedSize = 2,
    PluginError = 3,
    InvalidParameter = 4,
    InvalidReplyNumber = 5,
    ExprStackUnderflow = 6,
    ExprStackInvalidOffset = 7,
    ExprStackFrozenViolation = 8,
    ExprStackOverflow = 9,
    ProgramErrorInvalidReplyFlag = 10,
    ProgramErrorInvalidReplySequence = 11,
    /// A reply field does not fit the expression stack type.
    InvalidExprData = 12,
    /// More reply frames than ZEPTOVM_REPLY_STACK_SIZE.
    ReplyStackOverflow = 13,
    /// The reply buffer (or the heap) cannot hold even a truncated frame, or a
    /// PARALLEL could not get its heap blocks.
    OutOfMemory = 14,
    /// The HAL refused an operation (other than "unsupported").
    HalError = 15,
    /// EXEC names a BODYPART-ID with no plugin.
    UnknownBodypart = 16,
}

impl ExceptionCode {
    /// The wire value.
    pub const fn code(self) -> u16 {
        self as u16
    }
    /// Parses a wire value.
    pub const fn from_code(c: u16) -> Option<Self> {
        use ExceptionCode::*;
        Some(match c {
            1 => InvalidInstruction,
            2 => InvalidEncodedSize,
            3 => PluginError,
            4 => InvalidParameter,
            5 => InvalidReplyNumber,
            6 => ExprStackUnderflow,
            7 => ExprStackInvalidOffset,
            8 => ExprStackFrozenViolation,
            9 => ExprStackOverflow,
            10 => ProgramErrorInvalidReplyFlag,
            11 => ProgramErrorInvalidReplySequence,
            12 => InvalidExprData,
            13 => ReplyStackOverflow,
            14 => OutOfMemory,
            15 => HalError,
            16 => UnknownBodypart,
            _ => return None,
        })
    }
}

/// DEVICECAPS indicators.
pub mod caps {
    /// End of the REQUESTED-FIELDS list.
    pub const END_OF_LIST: u8 = 0;
    /// SACCP_GUARANTEED_PAYLOAD (DEVICE-CAPS-UINT2).
    pub const SACCP_GUARANTEED_PAYLOAD: u8 = 1;
    /// ZEPTOVM_LEVEL (1 byte).
    pub const LEVEL: u8 = 2;
    /// ZEPTOVM_REPLY_BUFFER_AND_EXPR_STACK_BYTE_SIZES (3 fields).
    pub const REPLY_BUFFER_AND_EXPR_STACK_BYTE_SIZES: u8 = 3;
    /// ZEPTOVM_REPLY_STACK_SIZE (DEVICE-CAPS-UINT2).
    pub const REPLY_STACK_SIZE: u8 = 4;
    /// ZEPTOVM_EXPR_FLOAT_TYPE (1 byte).
    pub const EXPR_FLOAT_TYPE: u8 = 5;
    /// ZEPTOVM_MAX_PSEUDOTHREADS (DEVICE-CAPS-UINT2).
    pub const MAX_PSEUDOTHREADS: u8 = 6;
    /// Reply byte for an unsupported indicator.
    pub const UNSUPPORTED: u8 = 0xFF;
    /// ZEPTOVM_EXPR_FLOAT_TYPE values.
    pub const FLOAT_ROUGH_HALF: u8 = 0;
    /// HALF_FLOAT: what this implementation uses.
    pub const FLOAT_HALF: u8 = 1;
    /// FLOAT (4 bytes).
    pub const FLOAT_FLOAT: u8 = 2;
    /// DOUBLE (8 bytes).
    pub const FLOAT_DOUBLE: u8 = 3;
}

/// Flags SACCP passes with a program (the packet-chain flags of the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecFlags {
    /// The command packet had 'is-first'.
    pub is_first: bool,
    /// The command packet had 'is-last'.
    pub is_last: bool,
}

/// Build/port parameters of a VM instance (reported by DEVICECAPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmConfig {
    /// Instructions executed per [`Vm::start`] / [`Vm::resume`] before the VM yields.
    pub budget: u16,
    /// SACCP_GUARANTEED_PAYLOAD reported by DEVICECAPS.
    pub guaranteed_payload: u16,
    /// MAX_REPLY_BUFFER_SIZE: frames are truncated to keep each reply buffer within it.
    pub max_reply_buffer: u16,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            budget: 256,
            guaranteed_payload: 64,
            max_reply_buffer: 256,
        }
    }
}

/// A VM exception that ended a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmException {
    /// What went wrong.
    pub code: ExceptionCode,
    /// Offset of the failing instruction in the program.
    pub position: u16,
    /// The reply buffer data in the exception reply was truncated.
    pub truncated: bool,
}

/// What [`Vm::start`] and [`Vm::resume`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStep {
    /// The program ended; the reply of the program's handle is the reply buffer
    /// (or, with `exception`, the exception reply).
    Done {
        /// Packet-chain flags of the reply (EXIT's REPLY-FLAGS).
        flags: ReplyFlags,
        /// EXIT's FORCED-PADDING-TO, to be applied by the layers below.
        padding_to: Option<u16>,
        /// Set if the program ended with a VM exception.
        exception: Option<VmException>,
    },
    /// Call [`Vm::resume`] after this wait (a timeout of 0: the budget ran out).
    Waiting(WaitingFor),
}

// Context status values.
const READY: u8 = 0;
const WAIT_PLUGIN: u8 = 1;
const WAIT_SLEEP: u8 = 2;
const WAIT_MCUSLEEP: u8 = 3;
const WAIT_MCUSLEEP_TXON: u8 = 4;
const FINISHED: u8 = 5;
const IN_PARALLEL: u8 = 6;

// VM flag bits.
const F_RUNNING: u8 = 1;
const F_CMD_FIRST: u8 = 2;
const F_CMD_LAST: u8 = 4;
const F_MCUSLEEP_INVOKED: u8 = 8;
const F_MCU_SLEEPING: u8 = 16;

/// One instruction stream: the program, or one pseudo-thread of a PARALLEL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ctx {
    pc: u16,
    start: u16,
    end: u16,
    /// Reply offset where the frame of a waiting EXEC starts.
    frame_start: u16,
    /// Low 32 bits of the clock when a SLEEP/MCUSLEEP ends.
    deadline: u32,
    status: u8,
    frames: u8,
    expr_len: u8,
}

/// Result of running one context.
enum Run {
    Continue,
    Waiting(WaitingFor),
    /// Another pseudo-thread uses the same plugin; try again later.
    Deferred,
    Finished,
    Exit(ReplyFlags, Option<u16>),
}

type Exc = ExceptionCode;

#[inline(never)]
fn exc_of(e: Error) -> Exc {
    match e {
        Error::OutOfMemory | Error::NoFreeHandle => Exc::OutOfMemory,
        Error::InvalidEncoding | Error::ValueOutOfRange => Exc::InvalidEncodedSize,
        _ => Exc::InvalidInstruction,
    }
}

/// The Zepto VM. `LEVEL` is one of [`ONE`], [`TINY`], [`SMALL`], [`MEDIUM`]; `RS` is
/// ZEPTOVM_REPLY_STACK_SIZE (frames per reply buffer; 0 = up to 255), `ES` is
/// ZEPTOVM_EXPR_STACK_SIZE (half-float entries, shared by all pseudo-threads), `PT`
/// is ZEPTOVM_MAX_PSEUDOTHREADS.
#[derive(Debug, Clone)]
pub struct Vm<const LEVEL: u8, const RS: usize, const ES: usize, const PT: usize> {
    cfg: VmConfig,
    flags: u8,
    nthreads: u8,
    main: Ctx,
    threads: [Ctx; PT],
    handles: [Option<Handle>; PT],
    expr: [f16; ES],
}

impl<const LEVEL: u8, const RS: usize, const ES: usize, const PT: usize> Vm<LEVEL, RS, ES, PT> {
    const CHECK: () = assert!(LEVEL <= MEDIUM && RS <= 255 && ES <= 255 && PT <= 255);

    /// A stopped VM.
    pub const fn new(cfg: VmConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        const Z: Ctx = Ctx {
            pc: 0,
            start: 0,
            end: 0,
            frame_start: 0,
            deadline: 0,
            status: FINISHED,
            frames: 0,
            expr_len: 0,
        };
        Self {
            cfg,
            flags: 0,
            nthreads: 0,
            main: Z,
            threads: [Z; PT],
            handles: [None; PT],
            expr: [f16::ZERO; ES],
        }
    }

    /// The level of this VM.
    pub const fn level(&self) -> Level {
        match LEVEL {
            ONE => Level::One,
            TINY => Level::Tiny,
            SMALL => Level::Small,
            _ => Level::Medium,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// True while a program is started and not finished.
    pub const fn is_running(&self) -> bool {
        self.flags & F_RUNNING != 0
    }

    /// True while the program waits in MCUSLEEP (the receiver is off; the port may
    /// use [`McuSleep::mcu_sleep`] for the wait).
    pub const fn is_mcu_sleeping(&self) -> bool {
        self.flags & F_MCU_SLEEPING != 0
    }

    /// The expression stack of the main program (for tests and debugging).
    pub fn expr_stack(&self) -> &[f16] {
        self.expr
            .get(..usize::from(self.main.expr_len))
            .unwrap_or(&[])
    }

    /// Starts the program in the request of `h`, aborting a running one ("Overriding
    /// Command"). The reply of `h` becomes the reply buffer.
    pub fn start(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        flags: ExecFlags,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<VmStep, Error> {
        if self.is_running() {
            self.abort(heap, plugins);
        }
        let len = u16::try_from(heap.request_len(h)?).map_err(|_| Error::ValueOutOfRange)?;
        heap.clear_reply(h)?;
        self.main = Ctx {
            end: len,
            status: READY,
            ..Ctx::default()
        };
        self.nthreads = 0;
        self.flags = F_RUNNING
            | if flags.is_first { F_CMD_FIRST } else { 0 }
            | if flags.is_last { F_CMD_LAST } else { 0 };
        self.run(heap, h, plugins, hal)
    }

    /// Continues after [`VmStep::Waiting`]. Waiting plugins are called again whatever
    /// the wake reason (they check their own condition); SLEEP checks the clock.
    pub fn resume(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
        wake: WakeReason,
    ) -> Result<VmStep, Error> {
        let _ = wake;
        if !self.is_running() {
            return Err(Error::InvalidState);
        }
        self.run(heap, h, plugins, hal)
    }

    /// Aborts the running program: waiting plugins are told to drop their call and
    /// the heap blocks of pseudo-threads are freed. The reply of the program's handle
    /// is left as it is.
    pub fn abort(&mut self, heap: &mut Heap<'_>, plugins: &mut [Bodypart<'_>]) {
        self.release(heap, plugins, None);
        self.main.status = FINISHED;
        self.flags = 0;
    }

    /// Frees pseudo-thread blocks (appending their replies to `merge_into` first, in
    /// declaration order) and aborts pending plugin calls. Returns false if a reply
    /// could not be appended.
    fn release(
        &mut self,
        heap: &mut Heap<'_>,
        plugins: &mut [Bodypart<'_>],
        merge_into: Option<Handle>,
    ) -> bool {
        let mut complete = true;
        for i in 0..usize::from(self.nthreads) {
            if let Some(Some(th)) = self.handles.get(i).copied() {
                if let Some(h) = merge_into {
                    complete &= heap.append_reply_of(h, th).is_ok();
                }
                let _ = heap.free(th);
            }
        }
        self.handles = [None; PT];
        self.nthreads = 0;
        for b in plugins.iter_mut() {
            if b.pending {
                b.plugin.abort();
                b.pending = false;
            }
        }
        complete
    }

    fn ctx(&self, ti: usize) -> Ctx {
        if ti == 0 {
            self.main
        } else {
            self.threads.get(ti - 1).copied().unwrap_or_default()
        }
    }

    fn ctx_mut(&mut self, ti: usize) -> Result<&mut Ctx, Exc> {
        if ti == 0 {
            Ok(&mut self.main)
        } else {
            self.threads.get_mut(ti - 1).ok_or(Exc::InvalidInstruction)
        }
    }

    fn reply_handle(&self, h: Handle, ti: usize) -> Result<Handle, Exc> {
        if ti == 0 {
            Ok(h)
        } else {
            self.handles
                .get(ti - 1)
                .copied()
                .flatten()
                .ok_or(Exc::InvalidInstruction)
        }
    }

    /// The chain flags of an implicit EXIT: the reply closes the client's open chain,
    /// or opens a new one if the command closed it (or MCUSLEEP ran). See the EXIT
    /// rules in `docs/decisions.md`.
    fn default_flags(&self) -> ReplyFlags {
        if self.flags & (F_MCUSLEEP_INVOKED | F_CMD_LAST) == 0 {
            ReplyFlags::IsLast
        } else {
            ReplyFlags::IsFirst
        }
    }

    fn run(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<VmStep, Error> {
        hal.feed();
        let mut budget = self.cfg.budget;
        'rounds: loop {
            // Only PARALLEL (VM-Medium) starts pseudo-threads.
            if LEVEL < MEDIUM || self.nthreads == 0 {
                // One exception path for the program's and the EXIT's exceptions.
                let e = 'exc: {
                    let (f, p) = match self.run_ctx(0, heap, h, plugins, hal, &mut budget) {
                        Ok(Run::Continue) => return Ok(VmStep::Waiting(WaitingFor::time(0))),
                        Ok(Run::Waiting(w)) => return Ok(VmStep::Waiting(w)),
                        Ok(Run::Deferred) => continue 'rounds,
                        Ok(Run::Finished) => (ReplyFlags::IsLast, None),
                        Ok(Run::Exit(f, p)) => (f, p),
                        Err(e) => break 'exc e,
                    };
                    match self.exit(heap, h, plugins, f, p)? {
                        Ok(step) => return Ok(step),
                        Err(e) => e,
                    }
                };
                return self.raise(heap, h, plugins, e, self.main.pc);
            }
            // PARALLEL: one round over the pseudo-threads.
            let mut wait: Option<WaitingFor> = None;
            let mut progress = false;
            let mut all_done = true;
            for ti in 1..=usize::from(self.nthreads) {
                if self.ctx(ti).status == FINISHED {
                    continue;
                }
                let before = budget;
                match self.run_ctx(ti, heap, h, plugins, hal, &mut budget) {
                    Ok(Run::Continue) => return Ok(VmStep::Waiting(WaitingFor::time(0))),
                    Ok(Run::Waiting(w)) => {
                        all_done = false;
                        wait = Some(wait.map_or(w, |x| x.merge(&w)));
                    }
                    Ok(Run::Deferred) => all_done = false,
                    Ok(Run::Finished) => {
                        progress = true;
                        if let Ok(c) = self.ctx_mut(ti) {
                            c.status = FINISHED;
                        }
                    }
                    Ok(Run::Exit(..)) => {
                        return self.raise(
                            heap,
                            h,
                            plugins,
                            Exc::InvalidInstruction,
                            self.ctx(ti).pc,
                        )
                    }
                    Err(e) => return self.raise(heap, h, plugins, e, self.ctx(ti).pc),
                }
                progress |= budget != before;
            }
            if all_done {
                if let Err(e) = self.join(heap, h, plugins) {
                    return self.raise(heap, h, plugins, e, self.main.pc);
                }
            } else if !progress {
                return Ok(VmStep::Waiting(wait.unwrap_or(WaitingFor::time(0))));
            } else if budget == 0 {
                return Ok(VmStep::Waiting(WaitingFor::time(0)));
            }
        }
    }

    /// Ends a PARALLEL: appends the pseudo-thread reply buffers in declaration order;
    /// their expression stacks already lie on top of the main one.
    fn join(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
    ) -> Result<(), Exc> {
        let mut frames = u16::from(self.main.frames);
        let mut len = u16::from(self.main.expr_len);
        for c in self.threads.iter().take(usize::from(self.nthreads)) {
            frames += u16::from(c.frames);
            len += u16::from(c.expr_len);
        }
        // The program goes on after the PARALLEL instruction, where its last body
        // ends.
        let last = usize::from(self.nthreads).checked_sub(1);
        let end = last.and_then(|i| self.threads.get(i)).map(|c| c.end);
        let after = end.ok_or(Exc::InvalidInstruction)?;
        if !self.release(heap, plugins, Some(h)) {
            return Err(Exc::OutOfMemory);
        }
        if heap.reply_len(h).map_err(exc_of)? > usize::from(self.cfg.max_reply_buffer) {
            return Err(Exc::OutOfMemory);
        }
        self.main.frames = u8::try_from(frames).map_err(|_| Exc::ReplyStackOverflow)?;
        if RS > 0 && usize::from(self.main.frames) > RS {
            return Err(Exc::ReplyStackOverflow);
        }
        self.main.expr_len = len as u8;
        self.main.status = READY;
        self.main.pc = after;
        Ok(())
    }

    /// Ends the program with an EXIT (`flags`, `padding_to`), or returns the
    /// exception the EXIT raises (at the PC of the main context).
    fn exit(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        flags: ReplyFlags,
        padding_to: Option<u16>,
    ) -> Result<Result<VmStep, Exc>, Error> {
        let empty = heap.reply_len(h)? == 0;
        // A command that left its chain open is answered inside it (not ISFIRST); a
        // command that closed its chain (is-last), or a program that went through
        // MCUSLEEP, can only be answered by a new chain (ISFIRST).
        let ok = if self.flags & (F_MCUSLEEP_INVOKED | F_CMD_LAST) != 0 {
            !empty && flags == ReplyFlags::IsFirst
        } else {
            !empty && flags != ReplyFlags::IsFirst
        };
        if !ok {
            return Ok(Err(Exc::ProgramErrorInvalidReplySequence));
        }
        if let Some(p) = padding_to {
            if usize::from(p) < heap.reply_len(h)? {
                return Ok(Err(Exc::InvalidParameter));
            }
        }
        self.release(heap, plugins, None);
        self.flags = 0;
        self.main.status = FINISHED;
        Ok(Ok(VmStep::Done {
            flags,
            padding_to,
            exception: None,
        }))
    }

    /// Turns the reply buffer into the exception reply and ends the program.
    fn raise(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        code: Exc,
        position: u16,
    ) -> Result<VmStep, Error> {
        let mut truncated = !self.release(heap, plugins, Some(h));
        let position = position.min(0x7fff);
        let limit = usize::from(self.cfg.max_reply_buffer).saturating_sub(6);
        if heap.reply_len(h)? > limit {
            heap.truncate_reply(h, limit)?;
            truncated = true;
        }
        let mut hdr = [0u8; 6];
        loop {
            let n = reply::exception_header(code, position, truncated, &mut hdr);
            match reply::insert(heap, h, 0, hdr.get(..n).unwrap_or(&[])) {
                Ok(()) => break,
                Err(Error::OutOfMemory) => {
                    let len = heap.reply_len(h)?;
                    if len == 0 {
                        // Not even the exception header fits (the program fills the
                        // heap): the program is over, and the caller gets the error.
                        self.flags = 0;
                        self.main.status = FINISHED;
                        return Err(Error::OutOfMemory);
                    }
                    heap.truncate_reply(h, len.saturating_sub(6))?;
                    truncated = true;
                }
                Err(e) => return Err(e),
            }
        }
        let flags = self.default_flags();
        self.flags = 0;
        self.main.status = FINISHED;
        Ok(VmStep::Done {
            flags,
            padding_to: None,
            exception: Some(VmException {
                code,
                position,
                truncated,
            }),
        })
    }

    /// Runs context `ti` until it waits, ends, or the budget runs out.
    fn run_ctx(
        &mut self,
        ti: usize,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
        budget: &mut u16,
    ) -> Result<Run, Exc> {
        loop {
            let c = self.ctx(ti);
            if c.pc >= c.end {
                return Ok(Run::Finished);
            }
            if *budget == 0 {
                return Ok(Run::Continue);
            }
            match self.step(ti, heap, h, plugins, hal)? {
                Run::Continue => *budget -= 1,
                Run::Deferred => return Ok(Run::Deferred),
                // A wait executes nothing: it does not count against the budget
                // (so a round of waiting pseudo-threads is seen as no progress).
                Run::Waiting(w) => return Ok(Run::Waiting(w)),
                other => {
                    *budget = budget.saturating_sub(1);
                    return Ok(other);
                }
            }
            if LEVEL >= MEDIUM && ti == 0 && self.nthreads > 0 {
                return Ok(Run::Deferred);
            }
        }
    }
}
