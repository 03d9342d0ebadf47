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

pub mod expr;
pub mod insn;
pub mod reply;

use crate::error::Error;
use crate::hal::{Clock, McuSleep, Pins, Transceiver, WaitingFor, WakeReason, Watchdog};
use crate::heap::{Handle, HeapOps, Part};
use crate::plugins::{Bodypart, PluginFault, PluginStep};
use half::f16;
use insn::{FieldType, Instruction, Operand, ReplyFlags, Target};
use reply::PluginException;

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
        heap: &mut dyn HeapOps,
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
        heap: &mut dyn HeapOps,
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
    pub fn abort(&mut self, heap: &mut dyn HeapOps, plugins: &mut [Bodypart<'_>]) {
        self.release(heap, plugins, None);
        self.main.status = FINISHED;
        self.flags = 0;
    }

    /// Frees pseudo-thread blocks (appending their replies to `merge_into` first, in
    /// declaration order) and aborts pending plugin calls. Returns false if a reply
    /// could not be appended.
    fn release(
        &mut self,
        heap: &mut dyn HeapOps,
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
        heap: &mut dyn HeapOps,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<VmStep, Error> {
        hal.feed();
        let mut budget = self.cfg.budget;
        loop {
            // Only PARALLEL (VM-Medium) starts pseudo-threads.
            if LEVEL < MEDIUM || self.nthreads == 0 {
                match self.run_ctx(0, heap, h, plugins, hal, &mut budget) {
                    Ok(Run::Continue) => return Ok(VmStep::Waiting(WaitingFor::time(0))),
                    Ok(Run::Waiting(w)) => return Ok(VmStep::Waiting(w)),
                    Ok(Run::Deferred) => continue,
                    Ok(Run::Finished) => {
                        return self.exit(heap, h, plugins, ReplyFlags::IsLast, None)
                    }
                    Ok(Run::Exit(f, p)) => return self.exit(heap, h, plugins, f, p),
                    Err(e) => return self.raise(heap, h, plugins, e, self.main.pc),
                }
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
        heap: &mut dyn HeapOps,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
    ) -> Result<(), Exc> {
        let mut frames = u16::from(self.main.frames);
        let mut len = u16::from(self.main.expr_len);
        for c in self.threads.iter().take(usize::from(self.nthreads)) {
            frames += u16::from(c.frames);
            len += u16::from(c.expr_len);
        }
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
        // The PARALLEL instruction itself is skipped.
        let prog = heap.request(h).map_err(exc_of)?;
        let code = prog
            .get(usize::from(self.main.pc)..usize::from(self.main.end))
            .ok_or(Exc::InvalidInstruction)?;
        let (_, n) = Instruction::decode_upto::<LEVEL>(code)?;
        self.main.pc += n as u16;
        Ok(())
    }

    fn exit(
        &mut self,
        heap: &mut dyn HeapOps,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        flags: ReplyFlags,
        padding_to: Option<u16>,
    ) -> Result<VmStep, Error> {
        let pos = self.main.pc;
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
            return self.raise(heap, h, plugins, Exc::ProgramErrorInvalidReplySequence, pos);
        }
        if let Some(p) = padding_to {
            if usize::from(p) < heap.reply_len(h)? {
                return self.raise(heap, h, plugins, Exc::InvalidParameter, pos);
            }
        }
        self.release(heap, plugins, None);
        self.flags = 0;
        self.main.status = FINISHED;
        Ok(VmStep::Done {
            flags,
            padding_to,
            exception: None,
        })
    }

    /// Turns the reply buffer into the exception reply and ends the program.
    fn raise(
        &mut self,
        heap: &mut dyn HeapOps,
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
            match heap.prepend_reply(h, hdr.get(..n).unwrap_or(&[])) {
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

    // ----- expression stack -------------------------------------------------------

    /// `(frozen, base, len)` of context `ti`'s view of the expression stack.
    fn geometry(&self, ti: usize) -> (usize, usize, usize) {
        if ti == 0 {
            return (0, 0, usize::from(self.main.expr_len));
        }
        let frozen = usize::from(self.main.expr_len);
        let before: usize = self
            .threads
            .iter()
            .take(ti - 1)
            .map(|c| usize::from(c.expr_len))
            .sum();
        (frozen, frozen + before, usize::from(self.ctx(ti).expr_len))
    }

    fn total_expr(&self) -> usize {
        let (frozen, _, _) = self.geometry(1);
        if self.nthreads == 0 {
            return usize::from(self.main.expr_len);
        }
        frozen
            + self
                .threads
                .iter()
                .take(usize::from(self.nthreads))
                .map(|c| usize::from(c.expr_len))
                .sum::<usize>()
    }

    /// Absolute index of EXPR-OFFSET `offset` and whether it lies in the frozen part.
    fn resolve(&self, ti: usize, offset: i16) -> Result<(usize, bool), Exc> {
        let (frozen, base, len) = self.geometry(ti);
        let k = usize::from(offset.unsigned_abs());
        if offset > 0 {
            if k <= len {
                return Ok((base + len - k, false));
            }
            let j = k - len;
            if j <= frozen {
                return Ok((frozen - j, true));
            }
        } else if offset < 0 {
            let i = k - 1;
            if i < frozen {
                return Ok((i, true));
            }
            if i - frozen < len {
                return Ok((base + i - frozen, false));
            }
        }
        Err(Exc::ExprStackInvalidOffset)
    }

    fn get(&self, abs: usize) -> Result<f16, Exc> {
        self.expr
            .get(abs)
            .copied()
            .ok_or(Exc::ExprStackInvalidOffset)
    }

    fn insert_at(&mut self, ti: usize, abs: usize, v: f16) -> Result<(), Exc> {
        let total = self.total_expr();
        if total >= ES {
            return Err(Exc::ExprStackOverflow);
        }
        let slice = self
            .expr
            .get_mut(abs..=total)
            .ok_or(Exc::ExprStackInvalidOffset)?;
        slice.rotate_right(1);
        if let Some(s) = slice.first_mut() {
            *s = v;
        }
        let c = self.ctx_mut(ti)?;
        c.expr_len += 1;
        Ok(())
    }

    fn remove_at(&mut self, ti: usize, abs: usize) -> Result<(), Exc> {
        let total = self.total_expr();
        let slice = self
            .expr
            .get_mut(abs..total)
            .ok_or(Exc::ExprStackInvalidOffset)?;
        slice.rotate_left(1);
        let c = self.ctx_mut(ti)?;
        c.expr_len = c.expr_len.checked_sub(1).ok_or(Exc::ExprStackUnderflow)?;
        Ok(())
    }

    fn push(&mut self, ti: usize, v: f16) -> Result<(), Exc> {
        let (_, base, len) = self.geometry(ti);
        self.insert_at(ti, base + len, v)
    }

    fn pop(&mut self, ti: usize) -> Result<f16, Exc> {
        let (_, base, len) = self.geometry(ti);
        if len == 0 {
            return Err(Exc::ExprStackUnderflow);
        }
        let v = self.get(base + len - 1)?;
        self.remove_at(ti, base + len - 1)?;
        Ok(v)
    }

    /// Reads an operand: its value and the slot to pop afterwards.
    fn operand(&self, ti: usize, o: Operand) -> Result<(f16, Option<usize>), Exc> {
        match o {
            Operand::Immediate(v) => Ok((v, None)),
            Operand::Stack { offset, pop } => {
                let (abs, frozen) = self.resolve(ti, offset)?;
                if pop && frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                Ok((self.get(abs)?, pop.then_some(abs)))
            }
        }
    }

    /// Pops the given slots (highest first, each once).
    fn pop_slots(&mut self, ti: usize, a: Option<usize>, b: Option<usize>) -> Result<(), Exc> {
        let (hi, lo) = match (a, b) {
            (Some(x), Some(y)) if x == y => (Some(x), None),
            (Some(x), Some(y)) => (Some(x.max(y)), Some(x.min(y))),
            (x, y) => (x.or(y), None),
        };
        for s in [hi, lo].into_iter().flatten() {
            self.remove_at(ti, s)?;
        }
        Ok(())
    }

    fn store(&mut self, ti: usize, dst: Target, v: f16) -> Result<(), Exc> {
        match dst {
            Target::Push => self.push(ti, v),
            Target::Insert(o) => {
                let (abs, frozen) = self.resolve(ti, o)?;
                if frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                self.insert_at(ti, abs, v)
            }
            Target::Replace(o) => {
                let (abs, frozen) = self.resolve(ti, o)?;
                if frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                let s = self.expr.get_mut(abs).ok_or(Exc::ExprStackInvalidOffset)?;
                *s = v;
                Ok(())
            }
        }
    }

    fn modify(&mut self, ti: usize, offset: i16, f: impl Fn(f16) -> f16) -> Result<f16, Exc> {
        let (abs, frozen) = self.resolve(ti, offset)?;
        if frozen {
            return Err(Exc::ExprStackFrozenViolation);
        }
        let s = self.expr.get_mut(abs).ok_or(Exc::ExprStackInvalidOffset)?;
        *s = f(*s);
        Ok(*s)
    }

    // ----- reply frames -----------------------------------------------------------

    fn check_new_frame(&self, ti: usize) -> Result<(), Exc> {
        let frames = usize::from(self.ctx(ti).frames);
        if frames >= 255 || (RS > 0 && frames >= RS) {
            return Err(Exc::ReplyStackOverflow);
        }
        Ok(())
    }

    /// Truncates the body that starts at `body_at` so that the frame fits the reply
    /// buffer limit; returns true if it did.
    fn fit(&self, heap: &mut dyn HeapOps, hr: Handle, body_at: usize) -> Result<bool, Exc> {
        let limit = usize::from(self.cfg.max_reply_buffer).saturating_sub(3);
        if body_at > limit {
            return Err(Exc::OutOfMemory);
        }
        if heap.reply_len(hr).map_err(exc_of)? > limit {
            heap.truncate_reply(hr, limit).map_err(exc_of)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn close(
        &mut self,
        ti: usize,
        heap: &mut dyn HeapOps,
        hr: Handle,
        body_at: usize,
        truncated: bool,
        e: Option<PluginException>,
    ) -> Result<(), Exc> {
        let truncated = self.fit(heap, hr, body_at)? | truncated;
        reply::close_frame(heap, hr, body_at, truncated, e).map_err(exc_of)?;
        if heap.reply_len(hr).map_err(exc_of)? > usize::from(self.cfg.max_reply_buffer) {
            return Err(Exc::OutOfMemory);
        }
        let c = self.ctx_mut(ti)?;
        c.frames += 1;
        Ok(())
    }

    /// Copies program bytes `[from, from+len)` of `h` to the reply of `hr`; returns
    /// true if the heap ran out of room (the copy is then truncated).
    fn copy_program(
        heap: &mut dyn HeapOps,
        h: Handle,
        hr: Handle,
        from: usize,
        len: usize,
    ) -> Result<bool, Exc> {
        // What does not fit is cut off (the frame is then marked truncated).
        let n = len.min(heap.free_bytes());
        heap.append_reply_from(hr, h, Part::Request, from..from + n)
            .map_err(exc_of)?;
        Ok(n < len)
    }

    fn frame_count_check(&self, ti: usize, n: i16) -> Result<usize, Exc> {
        if LEVEL == ONE && n != -1 {
            return Err(Exc::InvalidParameter);
        }
        reply::resolve_reply_number(n, self.ctx(ti).frames)
    }

    fn read_field(
        heap: &dyn HeapOps,
        hr: Handle,
        idx: usize,
        fields: &[u8],
    ) -> Result<insn::FieldValue, Exc> {
        let span = reply::nth_frame(heap, hr, idx).map_err(|_| Exc::InvalidReplyNumber)?;
        let body = heap
            .reply(hr)
            .map_err(exc_of)?
            .get(span.body..span.end)
            .ok_or(Exc::InvalidReplyNumber)?;
        let mut pos = 0;
        let mut value = None;
        for c in fields {
            let t = FieldType::from_code(*c).ok_or(Exc::InvalidParameter)?;
            let (v, n) = t.read(body.get(pos..).unwrap_or(&[]))?;
            pos += n;
            value = Some(v);
        }
        value.ok_or(Exc::InvalidParameter)
    }

    fn devicecaps(&self, heap: &mut dyn HeapOps, hr: Handle, fields: &[u8]) -> Result<bool, Exc> {
        let mut out = [0u8; 12];
        for f in fields {
            let mut n = 0;
            let put_uint = |v: u64, caps: bool, n: &mut usize, out: &mut [u8; 12]| {
                let v = if caps {
                    v.min(0x7fff) << 1
                } else {
                    v.min(0xffff)
                };
                *n += crate::encoding::encode_uint(v, 2, out.get_mut(*n..).unwrap_or(&mut []))
                    .unwrap_or(0);
            };
            match *f {
                caps::SACCP_GUARANTEED_PAYLOAD => put_uint(
                    u64::from(self.cfg.guaranteed_payload),
                    true,
                    &mut n,
                    &mut out,
                ),
                caps::LEVEL => {
                    out[0] = LEVEL;
                    n = 1;
                }
                caps::REPLY_BUFFER_AND_EXPR_STACK_BYTE_SIZES => {
                    let r = u64::from(self.cfg.max_reply_buffer);
                    let e = (ES * 2) as u64;
                    put_uint(r, true, &mut n, &mut out);
                    put_uint(e, false, &mut n, &mut out);
                    put_uint(r + e, false, &mut n, &mut out);
                }
                caps::REPLY_STACK_SIZE => put_uint(
                    if RS == 0 { 255 } else { RS as u64 },
                    true,
                    &mut n,
                    &mut out,
                ),
                caps::EXPR_FLOAT_TYPE if LEVEL >= SMALL => {
                    out[0] = caps::FLOAT_HALF;
                    n = 1;
                }
                caps::MAX_PSEUDOTHREADS => put_uint(PT as u64, true, &mut n, &mut out),
                _ => {
                    out[0] = caps::UNSUPPORTED;
                    n = 1;
                }
            }
            match heap.append_reply(hr, out.get(..n).unwrap_or(&[])) {
                Ok(()) => {}
                Err(Error::OutOfMemory) => return Ok(true),
                Err(e) => return Err(exc_of(e)),
            }
        }
        Ok(false)
    }

    fn jump(c: &Ctx, next: u16, delta: i16) -> Result<u16, Exc> {
        let t = i32::from(next) + i32::from(delta);
        if t < i32::from(c.start) || t > i32::from(c.end) {
            return Err(Exc::InvalidParameter);
        }
        Ok(t as u16)
    }

    fn hal_result(r: Result<(), Error>) -> Result<(), Exc> {
        match r {
            Ok(()) | Err(Error::Unsupported) => Ok(()),
            Err(_) => Err(Exc::HalError),
        }
    }

    /// Runs context `ti` until it waits, ends, or the budget runs out.
    fn run_ctx(
        &mut self,
        ti: usize,
        heap: &mut dyn HeapOps,
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

    /// Executes (or continues) the instruction at the PC of context `ti`.
    fn step(
        &mut self,
        ti: usize,
        heap: &mut dyn HeapOps,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<Run, Exc> {
        let c = self.ctx(ti);
        let hr = self.reply_handle(h, ti)?;
        let prog = heap.request(h).map_err(exc_of)?;
        let code = prog
            .get(usize::from(c.pc)..usize::from(c.end))
            .ok_or(Exc::InvalidInstruction)?;
        // Instructions above LEVEL are not decoded (InvalidInstruction), and the
        // arms that execute them below are compiled only into VMs that have them.
        let (insn, len) = Instruction::decode_upto::<LEVEL>(code)?;
        let (tiny, small, medium) = (LEVEL >= TINY, LEVEL >= SMALL, LEVEL >= MEDIUM);
        let next = c.pc + len as u16;
        let mut new_pc = next;
        match insn {
            Instruction::DeviceCaps { fields } => {
                let (from, n) = (usize::from(c.pc) + 1, fields.len());
                self.check_new_frame(ti)?;
                let at = heap.reply_len(hr).map_err(exc_of)?;
                let mut f = [0u8; 16];
                let mut trunc = false;
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(f.len());
                    let src = heap
                        .request(h)
                        .map_err(exc_of)?
                        .get(from + done..from + done + k)
                        .ok_or(Exc::InvalidInstruction)?;
                    let dst = f.get_mut(..k).ok_or(Exc::InvalidInstruction)?;
                    dst.copy_from_slice(src);
                    trunc |= self.devicecaps(heap, hr, dst)?;
                    done += k;
                }
                self.close(ti, heap, hr, at, trunc, None)?;
            }
            Instruction::Exec { bodypart, data } => {
                let data_at = usize::from(next) - data.len();
                let data_len = data.len();
                let idx = plugins
                    .iter()
                    .position(|b| b.id == bodypart)
                    .ok_or(Exc::UnknownBodypart)?;
                let entry = plugins.get_mut(idx).ok_or(Exc::UnknownBodypart)?;
                let mut cur = self.ctx(ti);
                if cur.status != WAIT_PLUGIN {
                    if entry.pending && ti != 0 {
                        // Another pseudo-thread is in a call of this plugin.
                        return Ok(Run::Deferred);
                    }
                    self.check_new_frame(ti)?;
                    cur.frame_start = heap.reply_len(hr).map_err(exc_of)? as u16;
                }
                let mut parser = heap.parser(h).map_err(exc_of)?;
                parser.set_position(data_at).map_err(exc_of)?;
                let mut cmd = parser.sub_parser(data_len).map_err(exc_of)?;
                let r = entry.plugin.handle(&mut cmd, heap, hr, hal);
                let at = usize::from(cur.frame_start);
                let (trunc, e) = match r {
                    Ok(PluginStep::Waiting(w)) => {
                        entry.pending = true;
                        cur.status = WAIT_PLUGIN;
                        *self.ctx_mut(ti)? = cur;
                        return Ok(Run::Waiting(w));
                    }
                    Ok(PluginStep::Done) => (false, None),
                    Err(PluginFault::Exception(e)) => (false, Some(e)),
                    Err(PluginFault::Kernel(Error::OutOfMemory)) => (true, None),
                    Err(PluginFault::Kernel(_)) => {
                        entry.pending = false;
                        return Err(Exc::PluginError);
                    }
                };
                entry.pending = false;
                cur.status = READY;
                *self.ctx_mut(ti)? = cur;
                let body = heap.reply_len(hr).map_err(exc_of)?.saturating_sub(at);
                if body == 0 && e.is_none() && !trunc {
                    return Err(Exc::PluginError);
                }
                self.close(ti, heap, hr, at, trunc, e)?;
            }
            Instruction::PushReply { data } => {
                let (from, n) = (usize::from(next) - data.len(), data.len());
                self.check_new_frame(ti)?;
                let at = heap.reply_len(hr).map_err(exc_of)?;
                let trunc = Self::copy_program(heap, h, hr, from, n)?;
                self.close(ti, heap, hr, at, trunc, None)?;
            }
            Instruction::Sleep { ms } => {
                if let Some(w) = self.sleep(ti, hal, ms, WAIT_SLEEP)? {
                    return Ok(Run::Waiting(w));
                }
            }
            Instruction::Transmitter { on } => Self::hal_result(hal.set_transmitter(on))?,
            Instruction::McuSleep {
                secs,
                transmitter_on_when_back,
                ..
            } => {
                if c.status == READY {
                    if self.flags & F_CMD_LAST == 0 {
                        return Err(Exc::ProgramErrorInvalidReplySequence);
                    }
                    self.flags |= F_MCUSLEEP_INVOKED | F_MCU_SLEEPING;
                    Self::hal_result(hal.set_receiver(false))?;
                }
                let kind = if transmitter_on_when_back {
                    WAIT_MCUSLEEP_TXON
                } else {
                    WAIT_MCUSLEEP
                };
                if let Some(w) = self.sleep(ti, hal, secs.saturating_mul(1000), kind)? {
                    return Ok(Run::Waiting(w));
                }
                self.flags &= !F_MCU_SLEEPING;
                Self::hal_result(hal.set_receiver(true))?;
                if transmitter_on_when_back {
                    Self::hal_result(hal.set_transmitter(true))?;
                }
            }
            Instruction::PopReplies { n } => {
                if LEVEL == ONE && n != 0 {
                    return Err(Exc::InvalidParameter);
                }
                let frames = c.frames;
                let keep = if n == 0 {
                    0
                } else {
                    usize::from(frames)
                        .checked_sub(usize::from(n))
                        .ok_or(Exc::InvalidReplyNumber)?
                };
                let cut = if keep == usize::from(frames) {
                    heap.reply_len(hr).map_err(exc_of)?
                } else {
                    reply::nth_frame(heap, hr, keep).map_err(exc_of)?.start
                };
                heap.truncate_reply(hr, cut).map_err(exc_of)?;
                self.ctx_mut(ti)?.frames = keep as u8;
            }
            Instruction::Exit { flags, padding_to } => {
                if ti != 0 {
                    return Err(Exc::InvalidInstruction);
                }
                return Ok(Run::Exit(flags, padding_to));
            }
            Instruction::AppendToReply { reply, data, .. } => {
                let mut buf = [0u8; 4];
                let n = data.len();
                buf.get_mut(..n)
                    .ok_or(Exc::InvalidInstruction)?
                    .copy_from_slice(data);
                let idx = self.frame_count_check(ti, reply)?;
                let span = reply::nth_frame(heap, hr, idx).map_err(exc_of)?;
                let add = buf.get(..n).unwrap_or(&[]);
                reply::insert(heap, hr, span.end, add).map_err(exc_of)?;
                let old = heap
                    .reply(hr)
                    .map_err(exc_of)?
                    .get(span.flags_at..)
                    .ok_or(Exc::InvalidInstruction)?;
                let (v, l) = crate::encoding::decode_uint(old, 2).map_err(exc_of)?;
                let size = (v >> 2) + n as u64;
                let nv = (size << 2) | (v & 3);
                let (enc, el) =
                    crate::encoding::uint_to_array(nv, 2).map_err(|_| Exc::OutOfMemory)?;
                reply::remove(heap, hr, span.flags_at, l).map_err(exc_of)?;
                reply::insert(heap, hr, span.flags_at, enc.get(..el).unwrap_or(&[]))
                    .map_err(exc_of)?;
                if heap.reply_len(hr).map_err(exc_of)? > usize::from(self.cfg.max_reply_buffer) {
                    return Err(Exc::OutOfMemory);
                }
            }
            Instruction::Jmp { delta } if tiny => new_pc = Self::jump(&c, next, delta)?,
            Instruction::JmpIfReplyField {
                cmp,
                reply,
                fields,
                threshold,
                delta,
            } if tiny => {
                let idx = self.frame_count_check(ti, reply)?;
                let v = Self::read_field(heap, hr, idx, fields)?;
                if cmp.holds(v.to_f32(), f32::from(threshold)) {
                    new_pc = Self::jump(&c, next, delta)?;
                }
            }
            Instruction::MoveReplyToFront { reply } if tiny => {
                let idx = self.frame_count_check(ti, reply)?;
                let span = reply::nth_frame(heap, hr, idx).map_err(exc_of)?;
                let (_, rep) = heap.split_mut(hr).map_err(exc_of)?;
                rep.get_mut(..span.end)
                    .ok_or(Exc::InvalidReplyNumber)?
                    .rotate_right(span.end - span.start);
            }
            Instruction::PushExprConstant { value } if small => self.push(ti, value)?,
            Instruction::PushExprReplyField { reply, fields } if small => {
                let idx = self.frame_count_check(ti, reply)?;
                let v = match Self::read_field(heap, hr, idx, fields)? {
                    insn::FieldValue::Half(x) => x,
                    insn::FieldValue::Int(i) if (-65504..=65504).contains(&i) => {
                        f16::from_f32(i as f32)
                    }
                    insn::FieldValue::Int(_) => return Err(Exc::InvalidExprData),
                };
                self.push(ti, v)?;
            }
            Instruction::ExprUnop { op } if small => {
                let v = self.pop(ti)?;
                if op != insn::UnOp::Pop {
                    self.push(ti, expr::unop(op, v))?;
                }
            }
            Instruction::ExprUnopEx { op, src } if small => {
                self.unop_ex(ti, op, src, Target::Push)?
            }
            Instruction::ExprUnopEx2 { op, src, dst } if small => self.unop_ex(ti, op, src, dst)?,
            Instruction::ExprBinop { op } if small => {
                let b = self.pop(ti)?;
                let a = self.pop(ti)?;
                self.push(ti, expr::binop(op, a, b))?;
            }
            Instruction::ExprBinopEx { op, a, b } if small => {
                self.binop_ex(ti, op, a, b, Target::Push)?
            }
            Instruction::ExprBinopEx2 { op, a, b, dst } if small => {
                self.binop_ex(ti, op, a, b, dst)?
            }
            Instruction::JmpIfExpr {
                cmp,
                threshold,
                delta,
            } if small => {
                let v = self.pop(ti)?;
                if cmp.holds(v.to_f32(), threshold.to_f32()) {
                    new_pc = Self::jump(&c, next, delta)?;
                }
            }
            Instruction::JmpIfExprEx {
                cmp,
                src,
                threshold,
                delta,
            } if small => {
                let (v, slot) = self.operand(ti, src)?;
                self.pop_slots(ti, slot, None)?;
                if cmp.holds(v.to_f32(), threshold.to_f32()) {
                    new_pc = Self::jump(&c, next, delta)?;
                }
            }
            Instruction::Call { addr } if small => {
                if addr < c.start || addr >= c.end {
                    return Err(Exc::InvalidParameter);
                }
                self.push(ti, f16::from_bits(next))?;
                new_pc = addr;
            }
            Instruction::Ret if small => {
                let t = self.pop(ti)?.to_bits();
                if t < c.start || t > c.end {
                    return Err(Exc::InvalidParameter);
                }
                new_pc = t;
            }
            Instruction::Switch { cases } if small => {
                let v = expr::to_int(self.pop(ti)?);
                if let Some((_, d)) = cases.iter().find(|(k, _)| i32::from(*k) == v) {
                    new_pc = Self::jump(&c, next, d)?;
                }
            }
            Instruction::SwitchEx { src, cases } if small => {
                let (v, slot) = self.operand(ti, src)?;
                self.pop_slots(ti, slot, None)?;
                let v = expr::to_int(v);
                if let Some((_, d)) = cases.iter().find(|(k, _)| i32::from(*k) == v) {
                    new_pc = Self::jump(&c, next, d)?;
                }
            }
            Instruction::IncAndJmpIf {
                offset,
                threshold,
                delta,
            } if small => {
                let v = self.modify(ti, offset, |x| expr::unop(insn::UnOp::Inc, x))?;
                if v.to_f32() < threshold.to_f32() {
                    new_pc = Self::jump(&c, next, delta)?;
                }
            }
            Instruction::DecAndJmpIf {
                offset,
                threshold,
                delta,
            } if small => {
                let v = self.modify(ti, offset, |x| expr::unop(insn::UnOp::Dec, x))?;
                if v.to_f32() > threshold.to_f32() {
                    new_pc = Self::jump(&c, next, delta)?;
                }
            }
            Instruction::Parallel { threads } if medium => {
                if ti != 0 {
                    return Err(Exc::InvalidInstruction);
                }
                let n = usize::from(threads.count());
                if n > PT {
                    return Err(Exc::InvalidParameter);
                }
                let raw_at = usize::from(next) - threads.raw().len();
                let mut ctxs = [Ctx::default(); PT];
                for (slot, r) in ctxs.iter_mut().zip(threads.iter_offsets()) {
                    let (o, l) = r?;
                    let s = (raw_at + o) as u16;
                    *slot = Ctx {
                        pc: s,
                        start: s,
                        end: s + l as u16,
                        status: READY,
                        ..Ctx::default()
                    };
                }
                self.threads = ctxs;
                self.nthreads = n as u8;
                for i in 0..n {
                    match heap.alloc() {
                        Ok(th) => {
                            if let Some(s) = self.handles.get_mut(i) {
                                *s = Some(th);
                            }
                        }
                        Err(_) => return Err(Exc::OutOfMemory),
                    }
                }
                self.main.status = IN_PARALLEL;
                return Ok(Run::Continue);
            }
            _ => return Err(Exc::InvalidInstruction),
        }
        let cur = self.ctx_mut(ti)?;
        cur.pc = new_pc;
        cur.status = READY;
        Ok(Run::Continue)
    }

    /// SLEEP-like wait of `ms`; `None` when it is over.
    fn sleep(
        &mut self,
        ti: usize,
        hal: &mut dyn VmHal,
        ms: u32,
        kind: u8,
    ) -> Result<Option<WaitingFor>, Exc> {
        let now = hal.now_ms() as u32;
        let c = self.ctx_mut(ti)?;
        if c.status == READY {
            if ms == 0 {
                return Ok(None);
            }
            c.status = kind;
            c.deadline = now.wrapping_add(ms);
            return Ok(Some(WaitingFor::time(ms)));
        }
        let left = c.deadline.wrapping_sub(now) as i32;
        if left > 0 {
            return Ok(Some(WaitingFor::time(left as u32)));
        }
        c.status = READY;
        Ok(None)
    }

    fn unop_ex(&mut self, ti: usize, op: insn::UnOp, src: Operand, dst: Target) -> Result<(), Exc> {
        if op == insn::UnOp::Pop {
            return match src {
                Operand::Immediate(_) => Err(Exc::InvalidParameter),
                Operand::Stack { offset, .. } => {
                    let (abs, frozen) = self.resolve(ti, offset)?;
                    if frozen {
                        return Err(Exc::ExprStackFrozenViolation);
                    }
                    self.remove_at(ti, abs)
                }
            };
        }
        let (v, slot) = self.operand(ti, src)?;
        self.pop_slots(ti, slot, None)?;
        self.store(ti, dst, expr::unop(op, v))
    }

    fn binop_ex(
        &mut self,
        ti: usize,
        op: insn::BinOp,
        a: Operand,
        b: Operand,
        dst: Target,
    ) -> Result<(), Exc> {
        let (x, sa) = self.operand(ti, a)?;
        let (y, sb) = self.operand(ti, b)?;
        self.pop_slots(ti, sa, sb)?;
        self.store(ti, dst, expr::binop(op, x, y))
    }
}
