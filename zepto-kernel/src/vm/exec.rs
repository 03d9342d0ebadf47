//! Executing one Zepto VM instruction straight from the program bytes, and the
//! reply frames the instructions build.

use super::insn::{op, Cmp, FieldType, FieldValue, Rd, ReplyFlags, Target, UnOp};
use super::reply::{self, PluginException};
use super::{caps, exc_of, expr, Ctx, Exc, Run, Vm, VmHal};
use super::{F_CMD_LAST, F_MCUSLEEP_INVOKED, F_MCU_SLEEPING, IN_PARALLEL, ONE, READY};
use super::{MEDIUM, SMALL, TINY, WAIT_MCUSLEEP, WAIT_MCUSLEEP_TXON, WAIT_PLUGIN, WAIT_SLEEP};
use crate::error::Error;
use crate::hal::WaitingFor;
use crate::heap::{Handle, Heap, Part};
use crate::plugins::{Bodypart, PluginFault, PluginStep};
use half::f16;

impl<const LEVEL: u8, const RS: usize, const ES: usize, const PT: usize> Vm<LEVEL, RS, ES, PT> {
    pub(super) fn check_new_frame(&self, ti: usize) -> Result<(), Exc> {
        let frames = usize::from(self.ctx(ti).frames);
        if frames >= 255 || (RS > 0 && frames >= RS) {
            return Err(Exc::ReplyStackOverflow);
        }
        Ok(())
    }

    /// Truncates the body that starts at `body_at` so that the frame fits the reply
    /// buffer limit; returns true if it did.
    pub(super) fn fit(&self, heap: &mut Heap<'_>, hr: Handle, body_at: usize) -> Result<bool, Exc> {
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

    pub(super) fn close(
        &mut self,
        ti: usize,
        heap: &mut Heap<'_>,
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
    pub(super) fn copy_program(
        heap: &mut Heap<'_>,
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

    pub(super) fn frame_count_check(&self, ti: usize, n: i16) -> Result<usize, Exc> {
        if LEVEL == ONE && n != -1 {
            return Err(Exc::InvalidParameter);
        }
        reply::resolve_reply_number(n, self.ctx(ti).frames)
    }

    pub(super) fn read_field(
        heap: &Heap<'_>,
        hr: Handle,
        idx: usize,
        fields: &[u8],
    ) -> Result<FieldValue, Exc> {
        let span = reply::nth_frame(heap, hr, idx).map_err(|_| Exc::InvalidReplyNumber)?;
        let body = heap
            .reply(hr)
            .map_err(exc_of)?
            .get(span.body..span.end)
            .ok_or(Exc::InvalidReplyNumber)?;
        // The fields are read in order; the value is the last one's.
        let mut pos = 0;
        let mut rest = fields;
        while let Some((c, tail)) = rest.split_first() {
            let t = FieldType::from_code(*c).ok_or(Exc::InvalidParameter)?;
            let (v, n) = t.read_raw(body.get(pos..).unwrap_or(&[]))?;
            if tail.is_empty() {
                return Ok(t.value(v));
            }
            pos += n;
            rest = tail;
        }
        Err(Exc::InvalidParameter)
    }

    /// Appends the DEVICECAPS answer for indicator `f`; returns true if it did not
    /// fit.
    pub(super) fn devicecap(&self, heap: &mut Heap<'_>, hr: Handle, f: u8) -> Result<bool, Exc> {
        let mut out = [0u8; 12];
        // The answer: one byte, or up to three numbers of which the first is a
        // DEVICE-CAPS-UINT2 (shifted left by one) and the others plain.
        let mut vals = [0u32; 3];
        let mut k = 1;
        let mut byte = None;
        match f {
            caps::SACCP_GUARANTEED_PAYLOAD => vals[0] = u32::from(self.cfg.guaranteed_payload),
            caps::LEVEL => byte = Some(LEVEL),
            caps::REPLY_BUFFER_AND_EXPR_STACK_BYTE_SIZES => {
                let r = u32::from(self.cfg.max_reply_buffer);
                let e = (ES * 2) as u32;
                vals = [r, e, r + e];
                k = 3;
            }
            caps::REPLY_STACK_SIZE => vals[0] = if RS == 0 { 255 } else { RS as u32 },
            caps::EXPR_FLOAT_TYPE if LEVEL >= SMALL => byte = Some(caps::FLOAT_HALF),
            caps::MAX_PSEUDOTHREADS => vals[0] = PT as u32,
            _ => byte = Some(caps::UNSUPPORTED),
        }
        let mut n = 0;
        if let Some(b) = byte {
            out[0] = b;
            n = 1;
        } else {
            for (i, v) in vals.iter().take(k).enumerate() {
                let v = if i == 0 {
                    (*v).min(0x7fff) << 1
                } else {
                    (*v).min(0xffff)
                };
                n += crate::encoding::encode_uint32(v, 2, out.get_mut(n..).unwrap_or(&mut []))
                    .unwrap_or(0);
            }
        }
        match heap.append_reply(hr, out.get(..n).unwrap_or(&[])) {
            Ok(()) => Ok(false),
            Err(Error::OutOfMemory) => Ok(true),
            Err(e) => Err(exc_of(e)),
        }
    }

    pub(super) fn jump(c: &Ctx, next: u16, delta: i16) -> Result<u16, Exc> {
        let t = i32::from(next) + i32::from(delta);
        if t < i32::from(c.start) || t > i32::from(c.end) {
            return Err(Exc::InvalidParameter);
        }
        Ok(t as u16)
    }

    pub(super) fn hal_result(r: Result<(), Error>) -> Result<(), Exc> {
        match r {
            Ok(()) | Err(Error::Unsupported) => Ok(()),
            Err(_) => Err(Exc::HalError),
        }
    }

    /// Executes (or continues) the instruction at the PC of context `ti`, reading
    /// its operands from the program bytes. An instruction is read whole (every
    /// operand checked, the first problem is its exception) before it acts;
    /// instructions above `LEVEL` are INVALIDINSTRUCTION before their operands are
    /// read, and the arms that execute them are compiled only into VMs that have
    /// them.
    pub(super) fn step(
        &mut self,
        ti: usize,
        heap: &mut Heap<'_>,
        h: Handle,
        plugins: &mut [Bodypart<'_>],
        hal: &mut dyn VmHal,
    ) -> Result<Run, Exc> {
        let c = self.ctx(ti);
        let hr = self.reply_handle(h, ti)?;
        let pc = usize::from(c.pc);
        let code = heap
            .request(h)
            .map_err(exc_of)?
            .get(pc..usize::from(c.end))
            .ok_or(Exc::InvalidInstruction)?;
        let (tiny, small, medium) = (LEVEL >= TINY, LEVEL >= SMALL, LEVEL >= MEDIUM);
        let mut r = Rd::new(code);
        let opcode = r.u8();
        r.end()?;
        // The PC after the instruction, once it was read whole.
        let next = |r: &Rd<'_>| r.end().map(|n| c.pc + n as u16);
        let mut new_pc;
        // A reply frame the instruction wrote, closed after the match: (its body's
        // start, truncated, the plugin's exception).
        let mut frame = None;
        match opcode {
            op::DEVICECAPS => {
                while r.u8() != 0 {}
                new_pc = next(&r)?;
                self.check_new_frame(ti)?;
                let at = heap.reply_len(hr).map_err(exc_of)?;
                let mut trunc = false;
                // Once an answer does not fit (with the frame's FLAGS-AND-SIZE),
                // the frame is truncated there: no later indicator is answered,
                // so the body is a prefix of the whole answer.
                for p in pc + 1..usize::from(new_pc) - 1 {
                    let f = heap
                        .request(h)
                        .map_err(exc_of)?
                        .get(p)
                        .copied()
                        .ok_or(Exc::InvalidInstruction)?;
                    let before = heap.reply_len(hr).map_err(exc_of)?;
                    trunc = self.devicecap(heap, hr, f)?;
                    let body = heap.reply_len(hr).map_err(exc_of)? - at;
                    let header = crate::encoding::uint_len(((body as u64) << 2) | 3);
                    if !trunc && heap.free_bytes() < header {
                        heap.truncate_reply(hr, before).map_err(exc_of)?;
                        trunc = true;
                    }
                    if trunc {
                        break;
                    }
                }
                frame = Some((at, trunc, None));
            }
            op::EXEC => {
                let bodypart = r.sint2();
                let data_len = usize::from(r.uint2());
                r.bytes(data_len);
                new_pc = next(&r)?;
                let data_at = usize::from(new_pc) - data_len;
                let idx = plugins
                    .iter()
                    .position(|b| b.id == bodypart)
                    .ok_or(Exc::UnknownBodypart)?;
                let entry = plugins.get_mut(idx).ok_or(Exc::UnknownBodypart)?;
                let mut cur = c;
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
                frame = Some((at, trunc, e));
            }
            op::PUSHREPLY => {
                let n = usize::from(r.uint2());
                r.bytes(n);
                new_pc = next(&r)?;
                self.check_new_frame(ti)?;
                let at = heap.reply_len(hr).map_err(exc_of)?;
                let trunc = Self::copy_program(heap, h, hr, usize::from(new_pc) - n, n)?;
                frame = Some((at, trunc, None));
            }
            op::SLEEP => {
                let ms = r.uint(4);
                new_pc = next(&r)?;
                if let Some(w) = self.sleep(ti, hal, ms, WAIT_SLEEP)? {
                    return Ok(Run::Waiting(w));
                }
            }
            op::TRANSMITTER => {
                let on = match r.u8() {
                    0 => false,
                    1 => true,
                    _ => return Err(r.bail(Exc::InvalidParameter)),
                };
                new_pc = next(&r)?;
                Self::hal_result(hal.set_transmitter(on))?;
            }
            op::MCUSLEEP => {
                let secs = r.uint(4);
                let f = r.u8();
                if f & !3 != 0 {
                    return Err(r.bail(Exc::InvalidParameter));
                }
                new_pc = next(&r)?;
                let transmitter_on_when_back = f & 1 != 0;
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
                // Saturating, in 32-bit arithmetic (no 64-bit product).
                let ms = if secs > u32::MAX / 1000 {
                    u32::MAX
                } else {
                    secs * 1000
                };
                if let Some(w) = self.sleep(ti, hal, ms, kind)? {
                    return Ok(Run::Waiting(w));
                }
                self.flags &= !F_MCU_SLEEPING;
                Self::hal_result(hal.set_receiver(true))?;
                if transmitter_on_when_back {
                    Self::hal_result(hal.set_transmitter(true))?;
                }
            }
            op::POPREPLIES => {
                let n = r.uint2();
                new_pc = next(&r)?;
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
            op::EXIT => {
                let f = r.u8();
                if f & !7 != 0 {
                    return Err(r.bail(Exc::InvalidParameter));
                }
                let flags = match f & 3 {
                    0 => ReplyFlags::None,
                    1 => ReplyFlags::IsFirst,
                    2 => ReplyFlags::IsLast,
                    _ => return Err(r.bail(Exc::ProgramErrorInvalidReplyFlag)),
                };
                let padding_to = if f & 4 != 0 { Some(r.uint2()) } else { None };
                next(&r)?;
                if ti != 0 {
                    return Err(Exc::InvalidInstruction);
                }
                return Ok(Run::Exit(flags, padding_to));
            }
            op::APPENDTOREPLY => {
                let reply = r.sint2();
                let Some(field) = FieldType::from_code(r.u8()) else {
                    return Err(r.bail(Exc::InvalidParameter));
                };
                let Ok((_, n)) = field.read(r.rest()) else {
                    return Err(r.bail(Exc::InvalidInstruction));
                };
                let mut buf = [0u8; 4];
                let data = r.bytes(n);
                buf.get_mut(..data.len())
                    .ok_or(Exc::InvalidInstruction)?
                    .copy_from_slice(data);
                new_pc = next(&r)?;
                let add = buf.get(..n).unwrap_or(&[]);
                let idx = self.frame_count_check(ti, reply)?;
                let span = reply::nth_frame(heap, hr, idx).map_err(exc_of)?;
                reply::insert(heap, hr, span.end, add).map_err(exc_of)?;
                let old = heap
                    .reply(hr)
                    .map_err(exc_of)?
                    .get(span.flags_at..)
                    .ok_or(Exc::InvalidInstruction)?;
                let (v, l) = crate::encoding::decode_uint32(old, 2).map_err(exc_of)?;
                let size = (v >> 2) + n as u32;
                let nv = (size << 2) | (v & 3);
                let (enc, el) =
                    crate::encoding::uint32_to_array(nv, 2).map_err(|_| Exc::OutOfMemory)?;
                reply::remove(heap, hr, span.flags_at, l).map_err(exc_of)?;
                reply::insert(heap, hr, span.flags_at, enc.get(..el).unwrap_or(&[]))
                    .map_err(exc_of)?;
                if heap.reply_len(hr).map_err(exc_of)? > usize::from(self.cfg.max_reply_buffer) {
                    return Err(Exc::OutOfMemory);
                }
            }
            op::JMP if tiny => {
                let delta = r.sint2();
                new_pc = next(&r)?;
                new_pc = Self::jump(&c, new_pc, delta)?;
            }
            op::MOVEREPLYTOFRONT if tiny => {
                let reply = r.sint2();
                new_pc = next(&r)?;
                let idx = self.frame_count_check(ti, reply)?;
                let span = reply::nth_frame(heap, hr, idx).map_err(exc_of)?;
                let rep = heap.reply_mut(hr).map_err(exc_of)?;
                let front = rep.get_mut(..span.end).ok_or(Exc::InvalidReplyNumber)?;
                reply::rotate_left(front, span.start);
            }
            op::PUSHEXPR_CONSTANT if small => {
                let value = r.half();
                new_pc = next(&r)?;
                self.push(ti, value)?;
            }
            op::PUSHEXPR_REPLYFIELD if small => {
                let reply = r.sint2();
                let fields = r.fields();
                new_pc = next(&r)?;
                let idx = self.frame_count_check(ti, reply)?;
                let v = match Self::read_field(heap, hr, idx, fields)? {
                    FieldValue::Half(x) => x,
                    FieldValue::Int(i) if (-65504..=65504).contains(&i) => expr::from_i64(i),
                    FieldValue::Int(_) => return Err(Exc::InvalidExprData),
                };
                self.push(ti, v)?;
            }
            // The plain forms work on the top of the stack, the _EX forms on
            // operands, the _EX2 forms also store where their target says.
            op::EXPRUNOP..=op::EXPRUNOP_EX2 if small => {
                let op = r.unop();
                let src = (opcode != op::EXPRUNOP).then(|| r.operand());
                let dst = if opcode == op::EXPRUNOP_EX2 {
                    r.target()
                } else {
                    Target::Push
                };
                new_pc = next(&r)?;
                self.unop_ex(ti, op, src, dst)?;
            }
            op::EXPRBINOP..=op::EXPRBINOP_EX2 if small => {
                let op = r.binop();
                let ab = (opcode != op::EXPRBINOP).then(|| (r.operand(), r.operand()));
                let dst = if opcode == op::EXPRBINOP_EX2 {
                    r.target()
                } else {
                    Target::Push
                };
                new_pc = next(&r)?;
                self.binop_ex(ti, op, ab, dst)?;
            }
            // The compare-and-jump instructions: JMPIFREPLYFIELD compares a reply
            // field with an integer, JMPIFEXPR the popped top with a half-float,
            // its _EX form an operand, and INCANDJMPIF / DECANDJMPIF a slot they
            // change in place; the low two bits of the opcode's distance from the
            // first of its kind give the comparison (Lt for INCANDJMPIF, Gt for
            // DECANDJMPIF).
            op::JMPIFREPLYFIELD_LT..=op::JMPIFREPLYFIELD_NE
            | op::JMPIFEXPR_LT..=op::JMPIFEXPR_EX_NE
            | op::INCANDJMPIF
            | op::DECANDJMPIF
                if tiny =>
            {
                let field = opcode <= op::JMPIFREPLYFIELD_NE;
                if !field && !small {
                    return Err(Exc::InvalidInstruction);
                }
                let i = if field {
                    opcode - op::JMPIFREPLYFIELD_LT
                } else {
                    opcode - op::JMPIFEXPR_LT
                };
                let in_place = opcode >= op::INCANDJMPIF;
                let (mut reply, mut fields, mut offset, mut src) = (0, &[][..], 0, None);
                if field {
                    reply = r.sint2();
                    fields = r.fields();
                } else if in_place {
                    offset = r.sint2();
                    if offset == 0 {
                        return Err(r.bail(Exc::InvalidParameter));
                    }
                } else if i >= 4 {
                    src = Some(r.operand());
                }
                let threshold = if field {
                    expr::int_key(i64::from(r.sint2()))
                } else {
                    expr::key(r.half())
                };
                let delta = r.sint2();
                new_pc = next(&r)?;
                let v = if field {
                    let idx = self.frame_count_check(ti, reply)?;
                    match Self::read_field(heap, hr, idx, fields)? {
                        FieldValue::Int(i) => expr::int_key(i),
                        FieldValue::Half(x) => expr::key(x),
                    }
                } else if in_place {
                    let op = if opcode == op::INCANDJMPIF {
                        UnOp::Inc
                    } else {
                        UnOp::Dec
                    };
                    expr::key(self.modify(ti, offset, |x| expr::unop(op, x))?)
                } else {
                    expr::key(self.take(ti, src)?)
                };
                if expr::holds(Cmp::from_index(i), v, threshold) {
                    new_pc = Self::jump(&c, new_pc, delta)?;
                }
            }
            op::CALL if small => {
                let addr = r.uint2();
                new_pc = next(&r)?;
                if addr < c.start || addr >= c.end {
                    return Err(Exc::InvalidParameter);
                }
                self.push(ti, f16::from_bits(new_pc))?;
                new_pc = addr;
            }
            op::RET if small => {
                let t = self.pop(ti)?.to_bits();
                if t < c.start || t > c.end {
                    return Err(Exc::InvalidParameter);
                }
                new_pc = t;
            }
            op::SWITCH | op::SWITCH_EX if small => {
                let src = if opcode == op::SWITCH_EX {
                    Some(r.operand())
                } else {
                    None
                };
                let count = r.uint2();
                let start = r.pos;
                for _ in 0..count {
                    r.sint2();
                    r.sint2();
                    if r.failed() {
                        break;
                    }
                }
                new_pc = next(&r)?;
                let v = expr::to_int(self.take(ti, src)?);
                let mut cases = Rd::new(code.get(start..).unwrap_or(&[]));
                for _ in 0..count {
                    let (k, d) = (cases.sint2(), cases.sint2());
                    if i32::from(k) == v {
                        new_pc = Self::jump(&c, new_pc, d)?;
                        break;
                    }
                }
            }
            op::PARALLEL if medium => {
                let count = r.uint2();
                if count == 0 {
                    return Err(r.bail(Exc::InvalidParameter));
                }
                let mut ctxs = [Ctx::default(); PT];
                for i in 0..usize::from(count) {
                    let len = usize::from(r.uint2());
                    let at = c.pc + r.pos as u16;
                    r.bytes(len);
                    if r.failed() {
                        break;
                    }
                    if let Some(slot) = ctxs.get_mut(i) {
                        *slot = Ctx {
                            pc: at,
                            start: at,
                            end: at + len as u16,
                            status: READY,
                            ..Ctx::default()
                        };
                    }
                }
                next(&r)?;
                if ti != 0 {
                    return Err(Exc::InvalidInstruction);
                }
                let n = usize::from(count);
                if n > PT {
                    return Err(Exc::InvalidParameter);
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
        if let Some((at, trunc, e)) = frame {
            self.close(ti, heap, hr, at, trunc, e)?;
        }
        let cur = self.ctx_mut(ti)?;
        cur.pc = new_pc;
        cur.status = READY;
        Ok(Run::Continue)
    }

    /// SLEEP-like wait of `ms`; `None` when it is over.
    pub(super) fn sleep(
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
}
