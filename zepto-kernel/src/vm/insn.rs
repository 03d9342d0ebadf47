//! Zepto VM instructions as values: decoding from bytes, encoding back, and a
//! readable one-line assembly form ([`core::fmt::Display`]).
//!
//! Used by clients building, reading and printing programs. The VM executes straight
//! from the program bytes with the same byte cursor (`Rd`) and operand readers, so
//! it accepts and rejects exactly what [`Instruction::decode`] does. Variable parts
//! (plugin data, FIELD-SEQUENCEs, SWITCH tables, PARALLEL bodies) borrow the program
//! bytes, so nothing here allocates.

use super::{ExceptionCode, Level};
use crate::encoding;
use core::fmt;
use half::f16;

/// Opcode values (`ZEPTOVM_OP_*`).
#[allow(missing_docs)]
pub mod op {
    pub const DEVICECAPS: u8 = 0x01;
    pub const EXEC: u8 = 0x02;
    pub const PUSHREPLY: u8 = 0x03;
    pub const SLEEP: u8 = 0x04;
    pub const TRANSMITTER: u8 = 0x05;
    pub const MCUSLEEP: u8 = 0x06;
    pub const POPREPLIES: u8 = 0x07;
    pub const EXIT: u8 = 0x08;
    pub const APPENDTOREPLY: u8 = 0x09;
    pub const JMP: u8 = 0x0A;
    pub const JMPIFREPLYFIELD_LT: u8 = 0x0B;
    pub const JMPIFREPLYFIELD_GT: u8 = 0x0C;
    pub const JMPIFREPLYFIELD_EQ: u8 = 0x0D;
    pub const JMPIFREPLYFIELD_NE: u8 = 0x0E;
    pub const MOVEREPLYTOFRONT: u8 = 0x0F;
    pub const PUSHEXPR_CONSTANT: u8 = 0x10;
    pub const PUSHEXPR_REPLYFIELD: u8 = 0x11;
    pub const EXPRUNOP: u8 = 0x12;
    pub const EXPRUNOP_EX: u8 = 0x13;
    pub const EXPRUNOP_EX2: u8 = 0x14;
    pub const EXPRBINOP: u8 = 0x15;
    pub const EXPRBINOP_EX: u8 = 0x16;
    pub const EXPRBINOP_EX2: u8 = 0x17;
    pub const JMPIFEXPR_LT: u8 = 0x18;
    pub const JMPIFEXPR_GT: u8 = 0x19;
    pub const JMPIFEXPR_EQ: u8 = 0x1A;
    pub const JMPIFEXPR_NE: u8 = 0x1B;
    pub const JMPIFEXPR_EX_LT: u8 = 0x1C;
    pub const JMPIFEXPR_EX_GT: u8 = 0x1D;
    pub const JMPIFEXPR_EX_EQ: u8 = 0x1E;
    pub const JMPIFEXPR_EX_NE: u8 = 0x1F;
    pub const CALL: u8 = 0x20;
    pub const RET: u8 = 0x21;
    pub const SWITCH: u8 = 0x22;
    pub const SWITCH_EX: u8 = 0x23;
    pub const INCANDJMPIF: u8 = 0x24;
    pub const DECANDJMPIF: u8 = 0x25;
    pub const PARALLEL: u8 = 0x26;
}

/// The lowest VM level that supports `opcode`, or `None` for an unknown opcode.
pub const fn opcode_level(opcode: u8) -> Option<Level> {
    match opcode {
        0x01..=0x09 => Some(Level::One),
        0x0A..=0x0F => Some(Level::Tiny),
        0x10..=0x25 => Some(Level::Small),
        0x26 => Some(Level::Medium),
        _ => None,
    }
}

/// Comparison sub-code of the conditional jumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Jump if value < threshold.
    Lt,
    /// Jump if value > threshold.
    Gt,
    /// Jump if value == threshold.
    Eq,
    /// Jump if value != threshold.
    Ne,
}

impl Cmp {
    pub(crate) const fn from_index(i: u8) -> Cmp {
        match i & 3 {
            0 => Cmp::Lt,
            1 => Cmp::Gt,
            2 => Cmp::Eq,
            _ => Cmp::Ne,
        }
    }
    const fn index(self) -> u8 {
        self as u8
    }
    /// Applies the comparison (IEEE semantics: only `Ne` holds for NaN).
    pub fn holds(self, value: f32, threshold: f32) -> bool {
        match self {
            Cmp::Lt => value < threshold,
            Cmp::Gt => value > threshold,
            Cmp::Eq => value == threshold,
            Cmp::Ne => value != threshold,
        }
    }
    const fn name(self) -> &'static str {
        match self {
            Cmp::Lt => "LT",
            Cmp::Gt => "GT",
            Cmp::Eq => "EQ",
            Cmp::Ne => "NE",
        }
    }
}

/// REPLY-FLAGS of EXIT (and of the reply the VM hands to SACCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFlags {
    /// Neither first nor last in the packet chain (0).
    None,
    /// The reply starts a new packet chain (1).
    IsFirst,
    /// The reply ends the packet chain (2).
    IsLast,
}

impl ReplyFlags {
    const fn name(self) -> &'static str {
        match self {
            ReplyFlags::None => "NONE",
            ReplyFlags::IsFirst => "ISFIRST",
            ReplyFlags::IsLast => "ISLAST",
        }
    }
}

/// FIELD-SEQUENCE / DATA-TYPE codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Encoded-Unsigned-Int<max=2> (code 1).
    EncodedUint,
    /// Encoded-Signed-Int<max=2> (code 2).
    EncodedSint,
    /// One byte, unsigned (code 3).
    Byte,
    /// Two bytes, little-endian unsigned (code 4).
    TwoBytes,
    /// SmartAnthill Half-Float (code 5).
    HalfFloat,
}

/// END_OF_SEQUENCE code terminating a FIELD-SEQUENCE.
pub const END_OF_SEQUENCE: u8 = 0;

impl FieldType {
    /// Parses a code (END_OF_SEQUENCE is not a field type).
    pub const fn from_code(c: u8) -> Option<FieldType> {
        match c {
            1 => Some(FieldType::EncodedUint),
            2 => Some(FieldType::EncodedSint),
            3 => Some(FieldType::Byte),
            4 => Some(FieldType::TwoBytes),
            5 => Some(FieldType::HalfFloat),
            _ => None,
        }
    }
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            FieldType::EncodedUint => 1,
            FieldType::EncodedSint => 2,
            FieldType::Byte => 3,
            FieldType::TwoBytes => 4,
            FieldType::HalfFloat => 5,
        }
    }
    const fn name(self) -> &'static str {
        match self {
            FieldType::EncodedUint => "UINT",
            FieldType::EncodedSint => "SINT",
            FieldType::Byte => "BYTE",
            FieldType::TwoBytes => "U16",
            FieldType::HalfFloat => "HALF",
        }
    }
    /// Reads one field of this type from the start of `input`: `(value, length)`.
    pub fn read(self, input: &[u8]) -> Result<(FieldValue, usize), ExceptionCode> {
        self.read_raw(input).map(|(v, n)| (self.value(v), n))
    }
    /// [`FieldType::read`] with the value as an `i32` (a half-float's bits).
    pub(crate) fn read_raw(self, input: &[u8]) -> Result<(i32, usize), ExceptionCode> {
        let r = match self {
            FieldType::EncodedUint | FieldType::EncodedSint => encoding::decode_uint32(input, 2)
                .map(|(u, n)| {
                    if self == FieldType::EncodedSint {
                        (((u >> 1) as i32) ^ -((u & 1) as i32), n)
                    } else {
                        (u as i32, n)
                    }
                }),
            FieldType::Byte => input
                .first()
                .map(|b| (i32::from(*b), 1))
                .ok_or(crate::Error::UnexpectedEnd),
            FieldType::TwoBytes | FieldType::HalfFloat => {
                encoding::read_u16_le(input).map(|v| (i32::from(v), 2))
            }
        };
        r.map_err(|e| match e {
            crate::Error::UnexpectedEnd => ExceptionCode::InvalidParameter,
            _ => ExceptionCode::InvalidEncodedSize,
        })
    }
    /// The value [`FieldType::read_raw`] read as `v`.
    pub(crate) fn value(self, v: i32) -> FieldValue {
        if self == FieldType::HalfFloat {
            FieldValue::Half(f16::from_bits(v as u16))
        } else {
            FieldValue::Int(i64::from(v))
        }
    }
}

/// A value read from a reply field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    /// An integer field.
    Int(i64),
    /// A half-float field.
    Half(f16),
}

impl FieldValue {
    /// The value as `f32` (exact for every 2-byte field).
    pub fn to_f32(self) -> f32 {
        match self {
            FieldValue::Int(i) => i as f32,
            FieldValue::Half(h) => h.to_f32(),
        }
    }
}

/// Unary expression operations (UNOP codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// Removes the operand (0).
    Pop,
    /// `=` (1).
    Copy,
    /// `-` (2).
    Minus,
    /// `~` on the integer part (3).
    BitNeg,
    /// `!` on the integer part (4).
    Not,
    /// `+1` (5).
    Inc,
    /// `-1` (6).
    Dec,
}

impl UnOp {
    /// Parses a UNOP code.
    pub const fn from_code(c: u8) -> Option<UnOp> {
        Some(match c {
            0 => UnOp::Pop,
            1 => UnOp::Copy,
            2 => UnOp::Minus,
            3 => UnOp::BitNeg,
            4 => UnOp::Not,
            5 => UnOp::Inc,
            6 => UnOp::Dec,
            _ => return None,
        })
    }
    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// Assembly name.
    pub const fn name(self) -> &'static str {
        match self {
            UnOp::Pop => "POP",
            UnOp::Copy => "COPY",
            UnOp::Minus => "MINUS",
            UnOp::BitNeg => "BITNEG",
            UnOp::Not => "NOT",
            UnOp::Inc => "INC",
            UnOp::Dec => "DEC",
        }
    }
}

/// Binary expression operations (BINOP codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+` (0).
    Plus,
    /// `-` (1).
    Minus,
    /// `<<` (2).
    Shl,
    /// `>>` (3).
    Shr,
    /// `>>>` (4).
    Ushr,
    /// `&` (5).
    BitAnd,
    /// `|` (6).
    BitOr,
    /// `&&` (7).
    And,
    /// `||` (8).
    Or,
}

impl BinOp {
    /// Parses a BINOP code.
    pub const fn from_code(c: u8) -> Option<BinOp> {
        Some(match c {
            0 => BinOp::Plus,
            1 => BinOp::Minus,
            2 => BinOp::Shl,
            3 => BinOp::Shr,
            4 => BinOp::Ushr,
            5 => BinOp::BitAnd,
            6 => BinOp::BitOr,
            7 => BinOp::And,
            8 => BinOp::Or,
            _ => return None,
        })
    }
    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// Assembly name.
    pub const fn name(self) -> &'static str {
        match self {
            BinOp::Plus => "PLUS",
            BinOp::Minus => "MINUS",
            BinOp::Shl => "SHL",
            BinOp::Shr => "SHR",
            BinOp::Ushr => "USHR",
            BinOp::BitAnd => "BITAND",
            BinOp::BitOr => "BITOR",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }
}

/// Largest |EXPR-OFFSET| an Encoded-Signed-Int<max=2> substrate can carry.
pub const MAX_EXPR_OFFSET: i16 = 16383;

/// An operand of the `_EX` instructions (POP-FLAG-AND-EXPR-OFFSET and its optional
/// immediate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// EXPR-OFFSET = 0: the half-float that follows in the program.
    Immediate(f16),
    /// A stack slot: positive offsets count from the top (1 = topmost), negative ones
    /// from the bottom (-1 = `expr_stack[0]`); `pop` removes the slot afterwards.
    Stack {
        /// EXPR-OFFSET, never 0, within ±[`MAX_EXPR_OFFSET`].
        offset: i16,
        /// POP-FLAG.
        pop: bool,
    },
}

/// Where EXPRUNOP_EX2 / EXPRBINOP_EX2 put their result (PUSH-FLAG-AND-PUSH-EXPR-OFFSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// PUSH-FLAG=1, offset 0: push on top.
    Push,
    /// PUSH-FLAG=1, offset ≠ 0: insert before the slot at this offset.
    Insert(i16),
    /// PUSH-FLAG=0, offset ≠ 0: overwrite the slot at this offset.
    Replace(i16),
}

/// The bodies of a PARALLEL instruction (each: size, then instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads<'a> {
    count: u16,
    raw: &'a [u8],
}

impl<'a> Threads<'a> {
    /// Wraps already-encoded bodies (`count` × |size|instructions|).
    /// Use [`Threads::encode_into`] to build `raw`.
    pub fn from_raw(count: u16, raw: &'a [u8]) -> Result<Self, ExceptionCode> {
        let t = Threads { count, raw };
        let mut n = 0usize;
        let mut it = t.iter_offsets();
        for r in &mut it {
            r?;
            n += 1;
        }
        if n != usize::from(count) || it.pos != raw.len() {
            return Err(ExceptionCode::InvalidInstruction);
        }
        Ok(t)
    }
    /// Number of pseudo-threads.
    pub const fn count(&self) -> u16 {
        self.count
    }
    /// The encoded bodies.
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// `(offset of the body within raw, body length)` of each pseudo-thread.
    pub fn iter_offsets(&self) -> ThreadIter<'a> {
        ThreadIter {
            raw: self.raw,
            pos: 0,
            left: self.count,
        }
    }
    /// The instruction bytes of each pseudo-thread.
    pub fn bodies(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let raw = self.raw;
        self.iter_offsets()
            .filter_map(move |r| r.ok().and_then(|(o, l)| raw.get(o..o + l)))
    }
    /// Writes `bodies` as |size|instructions| pairs into `out`; returns the length.
    pub fn encode_into(bodies: &[&[u8]], out: &mut [u8]) -> Result<usize, crate::Error> {
        let mut n = 0;
        for b in bodies {
            n += encoding::encode_uint(b.len() as u64, 2, out.get_mut(n..).unwrap_or(&mut []))?;
            out.get_mut(n..n + b.len())
                .ok_or(crate::Error::BufferTooSmall)?
                .copy_from_slice(b);
            n += b.len();
        }
        Ok(n)
    }
}

/// Iterator of [`Threads::iter_offsets`].
#[derive(Debug, Clone)]
pub struct ThreadIter<'a> {
    raw: &'a [u8],
    pos: usize,
    left: u16,
}

impl Iterator for ThreadIter<'_> {
    type Item = Result<(usize, usize), ExceptionCode>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let rest = self.raw.get(self.pos..).unwrap_or(&[]);
        let r = encoding::decode_uint(rest, 2)
            .map_err(enc_err)
            .and_then(|(len, n)| {
                let start = self.pos + n;
                let len = len as usize;
                if start + len > self.raw.len() {
                    return Err(ExceptionCode::InvalidInstruction);
                }
                self.pos = start + len;
                Ok((start, len))
            });
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// The entries of a SWITCH table (|CASE-VALUE|DELTA| pairs, both
/// Encoded-Signed-Int<max=2>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchCases<'a> {
    count: u16,
    raw: &'a [u8],
}

impl<'a> SwitchCases<'a> {
    /// Wraps already-encoded entries; see [`SwitchCases::encode_into`].
    pub fn from_raw(count: u16, raw: &'a [u8]) -> Result<Self, ExceptionCode> {
        let mut r = Rd::new(raw);
        for _ in 0..count {
            r.sint2();
            r.sint2();
            if let Some(e) = r.err {
                return Err(e);
            }
        }
        if r.pos != raw.len() {
            return Err(ExceptionCode::InvalidInstruction);
        }
        Ok(SwitchCases { count, raw })
    }
    /// Number of entries.
    pub const fn count(&self) -> u16 {
        self.count
    }
    /// The encoded entries.
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// `(case value, delta)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (i16, i16)> + 'a {
        let mut r = Rd::new(self.raw);
        (0..self.count).map_while(move |_| {
            let case = (r.sint2(), r.sint2());
            r.err.is_none().then_some(case)
        })
    }
    /// Writes `(case, delta)` pairs into `out`; returns the length.
    pub fn encode_into(cases: &[(i16, i16)], out: &mut [u8]) -> Result<usize, crate::Error> {
        let mut n = 0;
        for (c, d) in cases {
            for v in [c, d] {
                n += encoding::encode_sint(i64::from(*v), 2, out.get_mut(n..).unwrap_or(&mut []))?;
            }
        }
        Ok(n)
    }
}

/// One Zepto VM instruction. Field names follow the spec; see `docs/vm.md`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum Instruction<'a> {
    /// REQUESTED-FIELDS indicators (without the DEVICECAPS_END_OF_LIST byte, which
    /// encoding adds; none of them is 0).
    DeviceCaps {
        fields: &'a [u8],
    },
    Exec {
        bodypart: i16,
        data: &'a [u8],
    },
    PushReply {
        data: &'a [u8],
    },
    Sleep {
        ms: u32,
    },
    Transmitter {
        on: bool,
    },
    McuSleep {
        secs: u32,
        transmitter_on_when_back: bool,
        may_drop_earlier: bool,
    },
    PopReplies {
        n: u16,
    },
    Exit {
        flags: ReplyFlags,
        padding_to: Option<u16>,
    },
    AppendToReply {
        reply: i16,
        field: FieldType,
        data: &'a [u8],
    },
    Jmp {
        delta: i16,
    },
    /// `fields`: FIELD-SEQUENCE codes without END_OF_SEQUENCE (at least one).
    JmpIfReplyField {
        cmp: Cmp,
        reply: i16,
        fields: &'a [u8],
        threshold: i16,
        delta: i16,
    },
    MoveReplyToFront {
        reply: i16,
    },
    PushExprConstant {
        value: f16,
    },
    PushExprReplyField {
        reply: i16,
        fields: &'a [u8],
    },
    ExprUnop {
        op: UnOp,
    },
    ExprUnopEx {
        op: UnOp,
        src: Operand,
    },
    ExprUnopEx2 {
        op: UnOp,
        src: Operand,
        dst: Target,
    },
    ExprBinop {
        op: BinOp,
    },
    ExprBinopEx {
        op: BinOp,
        a: Operand,
        b: Operand,
    },
    ExprBinopEx2 {
        op: BinOp,
        a: Operand,
        b: Operand,
        dst: Target,
    },
    JmpIfExpr {
        cmp: Cmp,
        threshold: f16,
        delta: i16,
    },
    JmpIfExprEx {
        cmp: Cmp,
        src: Operand,
        threshold: f16,
        delta: i16,
    },
    Call {
        addr: u16,
    },
    Ret,
    Switch {
        cases: SwitchCases<'a>,
    },
    SwitchEx {
        src: Operand,
        cases: SwitchCases<'a>,
    },
    IncAndJmpIf {
        offset: i16,
        threshold: f16,
        delta: i16,
    },
    DecAndJmpIf {
        offset: i16,
        threshold: f16,
        delta: i16,
    },
    Parallel {
        threads: Threads<'a>,
    },
}

fn enc_err(e: crate::Error) -> ExceptionCode {
    match e {
        crate::Error::UnexpectedEnd => ExceptionCode::InvalidInstruction,
        _ => ExceptionCode::InvalidEncodedSize,
    }
}

/// Byte cursor used by the decoder and by the VM, which executes straight from the
/// program bytes. A read that fails records its exception (the first one is kept)
/// and returns a default value, so a decoder makes its reads one after another and
/// checks [`Rd::end`] once, at the end.
pub(crate) struct Rd<'a> {
    b: &'a [u8],
    pub(crate) pos: usize,
    err: Option<ExceptionCode>,
}

impl<'a> Rd<'a> {
    pub(crate) const fn new(b: &'a [u8]) -> Self {
        Rd {
            b,
            pos: 0,
            err: None,
        }
    }
    /// Records `e` unless an earlier read failed.
    fn fail(&mut self, e: ExceptionCode) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }
    /// The first exception: an earlier read's, else `e`.
    pub(crate) fn bail(&self, e: ExceptionCode) -> ExceptionCode {
        self.err.unwrap_or(e)
    }
    /// The number of bytes read, or the first failed read's exception.
    pub(crate) fn end(&self) -> Result<usize, ExceptionCode> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(self.pos),
        }
    }
    /// True once a read failed.
    pub(crate) const fn failed(&self) -> bool {
        self.err.is_some()
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or(&[])
    }
    pub(crate) fn u8(&mut self) -> u8 {
        match self.rest().first() {
            Some(&v) => {
                self.pos += 1;
                v
            }
            None => {
                self.fail(ExceptionCode::InvalidInstruction);
                0
            }
        }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        match self.rest().get(..n) {
            Some(v) => {
                self.pos += n;
                v
            }
            None => {
                self.fail(ExceptionCode::InvalidInstruction);
                &[]
            }
        }
    }
    pub(crate) fn uint(&mut self, max: u8) -> u32 {
        match encoding::decode_uint32(self.rest(), max) {
            Ok((v, n)) => {
                self.pos += n;
                v
            }
            Err(e) => {
                self.fail(enc_err(e));
                0
            }
        }
    }
    pub(crate) fn uint2(&mut self) -> u16 {
        self.uint(2) as u16
    }
    pub(crate) fn sint2(&mut self) -> i16 {
        // Zig-zag back from the unsigned form (0 after a failed read).
        let u = self.uint(2);
        ((u >> 1) as i16) ^ -((u & 1) as i16)
    }
    pub(crate) fn half(&mut self) -> f16 {
        match encoding::decode_half(self.rest()) {
            Ok(v) => {
                self.pos += 2;
                v
            }
            Err(e) => {
                self.fail(enc_err(e));
                f16::ZERO
            }
        }
    }
    pub(crate) fn fields(&mut self) -> &'a [u8] {
        let start = self.pos;
        loop {
            let c = self.u8();
            if self.err.is_some() {
                return &[];
            }
            if c == END_OF_SEQUENCE {
                break;
            }
            if FieldType::from_code(c).is_none() {
                self.fail(ExceptionCode::InvalidParameter);
                return &[];
            }
        }
        let seq = self.b.get(start..self.pos - 1).unwrap_or(&[]);
        if seq.is_empty() {
            self.fail(ExceptionCode::InvalidParameter);
        }
        seq
    }
    pub(crate) fn operand(&mut self) -> Operand {
        let v = self.sint2();
        let (pop, offset) = (v & 1 != 0, v >> 1);
        if offset == 0 {
            if pop {
                self.fail(ExceptionCode::InvalidParameter);
            }
            return Operand::Immediate(self.half());
        }
        Operand::Stack { offset, pop }
    }
    pub(crate) fn target(&mut self) -> Target {
        let v = self.sint2();
        let (push, offset) = (v & 1 != 0, v >> 1);
        match (push, offset) {
            (true, 0) => Target::Push,
            (false, 0) => {
                self.fail(ExceptionCode::InvalidParameter);
                Target::Push
            }
            (true, o) => Target::Insert(o),
            (false, o) => Target::Replace(o),
        }
    }
    pub(crate) fn unop(&mut self) -> UnOp {
        let c = self.u8();
        UnOp::from_code(c).unwrap_or_else(|| {
            self.fail(ExceptionCode::InvalidParameter);
            UnOp::Pop
        })
    }
    pub(crate) fn binop(&mut self) -> BinOp {
        let c = self.u8();
        BinOp::from_code(c).unwrap_or_else(|| {
            self.fail(ExceptionCode::InvalidParameter);
            BinOp::Plus
        })
    }
}

impl<'a> Instruction<'a> {
    /// Decodes the instruction at the start of `code`; returns it and its length.
    ///
    /// Errors are the VM exception the instruction raises: an unknown opcode or a
    /// program ending inside an instruction is [`ExceptionCode::InvalidInstruction`],
    /// a malformed Encoded-Int is [`ExceptionCode::InvalidEncodedSize`], an invalid
    /// value (reserved bits, unknown UNOP, ...) is
    /// [`ExceptionCode::InvalidParameter`] or the program error the spec names.
    pub fn decode(code: &'a [u8]) -> Result<(Instruction<'a>, usize), ExceptionCode> {
        Self::decode_upto::<{ Level::Medium as u8 }>(code)
    }

    /// [`Instruction::decode`] for a VM of level `MAX`: an instruction of a higher
    /// level is [`ExceptionCode::InvalidInstruction`], like an unknown opcode. The
    /// level tests are constants, so a VM of a low level does not contain the
    /// decoders (nor what they pull in, such as half-floats) of the levels above.
    #[inline(never)]
    pub(crate) fn decode_upto<const MAX: u8>(
        code: &'a [u8],
    ) -> Result<(Instruction<'a>, usize), ExceptionCode> {
        const fn has<const MAX: u8>(l: Level) -> bool {
            l as u8 <= MAX
        }
        let tiny = has::<MAX>(Level::Tiny);
        let small = has::<MAX>(Level::Small);
        let medium = has::<MAX>(Level::Medium);
        let mut r = Rd::new(code);
        let opcode = r.u8();
        if let Some(e) = r.err {
            return Err(e);
        }
        let insn = match opcode {
            op::DEVICECAPS => {
                let start = r.pos;
                while r.u8() != 0 {}
                Instruction::DeviceCaps {
                    fields: code.get(start..r.pos - 1).unwrap_or(&[]),
                }
            }
            op::EXEC => {
                let bodypart = r.sint2();
                let n = r.uint2();
                Instruction::Exec {
                    bodypart,
                    data: r.bytes(usize::from(n)),
                }
            }
            op::PUSHREPLY => {
                let n = r.uint2();
                Instruction::PushReply {
                    data: r.bytes(usize::from(n)),
                }
            }
            op::SLEEP => Instruction::Sleep { ms: r.uint(4) },
            op::TRANSMITTER => match r.u8() {
                0 => Instruction::Transmitter { on: false },
                1 => Instruction::Transmitter { on: true },
                _ => return Err(r.bail(ExceptionCode::InvalidParameter)),
            },
            op::MCUSLEEP => {
                let secs = r.uint(4);
                let f = r.u8();
                if f & !3 != 0 {
                    return Err(r.bail(ExceptionCode::InvalidParameter));
                }
                Instruction::McuSleep {
                    secs,
                    transmitter_on_when_back: f & 1 != 0,
                    may_drop_earlier: f & 2 != 0,
                }
            }
            op::POPREPLIES => Instruction::PopReplies { n: r.uint2() },
            op::EXIT => {
                let f = r.u8();
                if f & !7 != 0 {
                    return Err(r.bail(ExceptionCode::InvalidParameter));
                }
                let flags = match f & 3 {
                    0 => ReplyFlags::None,
                    1 => ReplyFlags::IsFirst,
                    2 => ReplyFlags::IsLast,
                    _ => return Err(r.bail(ExceptionCode::ProgramErrorInvalidReplyFlag)),
                };
                let padding_to = if f & 4 != 0 { Some(r.uint2()) } else { None };
                Instruction::Exit { flags, padding_to }
            }
            op::APPENDTOREPLY => {
                let reply = r.sint2();
                let Some(field) = FieldType::from_code(r.u8()) else {
                    return Err(r.bail(ExceptionCode::InvalidParameter));
                };
                let Ok((_, n)) = field.read(r.rest()) else {
                    return Err(r.bail(ExceptionCode::InvalidInstruction));
                };
                Instruction::AppendToReply {
                    reply,
                    field,
                    data: r.bytes(n),
                }
            }
            op::JMP if tiny => Instruction::Jmp { delta: r.sint2() },
            op::JMPIFREPLYFIELD_LT..=op::JMPIFREPLYFIELD_NE if tiny => {
                Instruction::JmpIfReplyField {
                    cmp: Cmp::from_index(opcode - op::JMPIFREPLYFIELD_LT),
                    reply: r.sint2(),
                    fields: r.fields(),
                    threshold: r.sint2(),
                    delta: r.sint2(),
                }
            }
            op::MOVEREPLYTOFRONT if tiny => Instruction::MoveReplyToFront { reply: r.sint2() },
            op::PUSHEXPR_CONSTANT if small => Instruction::PushExprConstant { value: r.half() },
            op::PUSHEXPR_REPLYFIELD if small => Instruction::PushExprReplyField {
                reply: r.sint2(),
                fields: r.fields(),
            },
            op::EXPRUNOP if small => Instruction::ExprUnop { op: r.unop() },
            op::EXPRUNOP_EX if small => Instruction::ExprUnopEx {
                op: r.unop(),
                src: r.operand(),
            },
            op::EXPRUNOP_EX2 if small => Instruction::ExprUnopEx2 {
                op: r.unop(),
                src: r.operand(),
                dst: r.target(),
            },
            op::EXPRBINOP if small => Instruction::ExprBinop { op: r.binop() },
            op::EXPRBINOP_EX if small => Instruction::ExprBinopEx {
                op: r.binop(),
                a: r.operand(),
                b: r.operand(),
            },
            op::EXPRBINOP_EX2 if small => Instruction::ExprBinopEx2 {
                op: r.binop(),
                a: r.operand(),
                b: r.operand(),
                dst: r.target(),
            },
            op::JMPIFEXPR_LT..=op::JMPIFEXPR_NE if small => Instruction::JmpIfExpr {
                cmp: Cmp::from_index(opcode - op::JMPIFEXPR_LT),
                threshold: r.half(),
                delta: r.sint2(),
            },
            op::JMPIFEXPR_EX_LT..=op::JMPIFEXPR_EX_NE if small => Instruction::JmpIfExprEx {
                cmp: Cmp::from_index(opcode - op::JMPIFEXPR_EX_LT),
                src: r.operand(),
                threshold: r.half(),
                delta: r.sint2(),
            },
            op::CALL if small => Instruction::Call { addr: r.uint2() },
            op::RET if small => Instruction::Ret,
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
                    if r.err.is_some() {
                        break;
                    }
                }
                let cases = SwitchCases {
                    count,
                    raw: code.get(start..r.pos).unwrap_or(&[]),
                };
                match src {
                    Some(src) => Instruction::SwitchEx { src, cases },
                    None => Instruction::Switch { cases },
                }
            }
            op::INCANDJMPIF | op::DECANDJMPIF if small => {
                let offset = r.sint2();
                if offset == 0 {
                    return Err(r.bail(ExceptionCode::InvalidParameter));
                }
                let threshold = r.half();
                let delta = r.sint2();
                if opcode == op::INCANDJMPIF {
                    Instruction::IncAndJmpIf {
                        offset,
                        threshold,
                        delta,
                    }
                } else {
                    Instruction::DecAndJmpIf {
                        offset,
                        threshold,
                        delta,
                    }
                }
            }
            op::PARALLEL if medium => {
                let count = r.uint2();
                if count == 0 {
                    return Err(r.bail(ExceptionCode::InvalidParameter));
                }
                let start = r.pos;
                for _ in 0..count {
                    let n = r.uint2();
                    r.bytes(usize::from(n));
                    if r.err.is_some() {
                        break;
                    }
                }
                Instruction::Parallel {
                    threads: Threads {
                        count,
                        raw: code.get(start..r.pos).unwrap_or(&[]),
                    },
                }
            }
            _ => return Err(r.bail(ExceptionCode::InvalidInstruction)),
        };
        match r.err {
            Some(e) => Err(e),
            None => Ok((insn, r.pos)),
        }
    }

    /// The opcode byte.
    pub const fn opcode(&self) -> u8 {
        match self {
            Instruction::DeviceCaps { .. } => op::DEVICECAPS,
            Instruction::Exec { .. } => op::EXEC,
            Instruction::PushReply { .. } => op::PUSHREPLY,
            Instruction::Sleep { .. } => op::SLEEP,
            Instruction::Transmitter { .. } => op::TRANSMITTER,
            Instruction::McuSleep { .. } => op::MCUSLEEP,
            Instruction::PopReplies { .. } => op::POPREPLIES,
            Instruction::Exit { .. } => op::EXIT,
            Instruction::AppendToReply { .. } => op::APPENDTOREPLY,
            Instruction::Jmp { .. } => op::JMP,
            Instruction::JmpIfReplyField { cmp, .. } => op::JMPIFREPLYFIELD_LT + cmp.index(),
            Instruction::MoveReplyToFront { .. } => op::MOVEREPLYTOFRONT,
            Instruction::PushExprConstant { .. } => op::PUSHEXPR_CONSTANT,
            Instruction::PushExprReplyField { .. } => op::PUSHEXPR_REPLYFIELD,
            Instruction::ExprUnop { .. } => op::EXPRUNOP,
            Instruction::ExprUnopEx { .. } => op::EXPRUNOP_EX,
            Instruction::ExprUnopEx2 { .. } => op::EXPRUNOP_EX2,
            Instruction::ExprBinop { .. } => op::EXPRBINOP,
            Instruction::ExprBinopEx { .. } => op::EXPRBINOP_EX,
            Instruction::ExprBinopEx2 { .. } => op::EXPRBINOP_EX2,
            Instruction::JmpIfExpr { cmp, .. } => op::JMPIFEXPR_LT + cmp.index(),
            Instruction::JmpIfExprEx { cmp, .. } => op::JMPIFEXPR_EX_LT + cmp.index(),
            Instruction::Call { .. } => op::CALL,
            Instruction::Ret => op::RET,
            Instruction::Switch { .. } => op::SWITCH,
            Instruction::SwitchEx { .. } => op::SWITCH_EX,
            Instruction::IncAndJmpIf { .. } => op::INCANDJMPIF,
            Instruction::DecAndJmpIf { .. } => op::DECANDJMPIF,
            Instruction::Parallel { .. } => op::PARALLEL,
        }
    }

    /// Encodes into `out`; returns the number of bytes written.
    ///
    /// Fails with [`crate::Error::BufferTooSmall`] if `out` is short, and with
    /// [`crate::Error::ValueOutOfRange`] for values the wire cannot carry (an operand
    /// offset beyond ±[`MAX_EXPR_OFFSET`], data longer than 65535 bytes, a 0 byte
    /// among DEVICECAPS indicators, an unknown FIELD-SEQUENCE code, ...).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, crate::Error> {
        let mut w = Wr { out, pos: 0 };
        w.u8(self.opcode())?;
        match *self {
            Instruction::DeviceCaps { fields } => {
                if fields.contains(&0) {
                    return Err(crate::Error::ValueOutOfRange);
                }
                w.bytes(fields)?;
                w.u8(0)?;
            }
            Instruction::Exec { bodypart, data } => {
                w.sint(bodypart)?;
                w.len_bytes(data)?;
            }
            Instruction::PushReply { data } => w.len_bytes(data)?,
            Instruction::Sleep { ms } => w.uint(u64::from(ms), 4)?,
            Instruction::Transmitter { on } => w.u8(u8::from(on))?,
            Instruction::McuSleep {
                secs,
                transmitter_on_when_back,
                may_drop_earlier,
            } => {
                w.uint(u64::from(secs), 4)?;
                w.u8(u8::from(transmitter_on_when_back) | (u8::from(may_drop_earlier) << 1))?;
            }
            Instruction::PopReplies { n } => w.uint(u64::from(n), 2)?,
            Instruction::Exit { flags, padding_to } => {
                w.u8(flags as u8 | if padding_to.is_some() { 4 } else { 0 })?;
                if let Some(p) = padding_to {
                    w.uint(u64::from(p), 2)?;
                }
            }
            Instruction::AppendToReply { reply, field, data } => {
                w.sint(reply)?;
                w.u8(field.code())?;
                match field.read(data) {
                    Ok((_, n)) if n == data.len() => w.bytes(data)?,
                    _ => return Err(crate::Error::ValueOutOfRange),
                }
            }
            Instruction::Jmp { delta } => w.sint(delta)?,
            Instruction::JmpIfReplyField {
                reply,
                fields,
                threshold,
                delta,
                ..
            } => {
                w.sint(reply)?;
                w.fields(fields)?;
                w.sint(threshold)?;
                w.sint(delta)?;
            }
            Instruction::MoveReplyToFront { reply } => w.sint(reply)?,
            Instruction::PushExprConstant { value } => w.half(value)?,
            Instruction::PushExprReplyField { reply, fields } => {
                w.sint(reply)?;
                w.fields(fields)?;
            }
            Instruction::ExprUnop { op } => w.u8(op.code())?,
            Instruction::ExprUnopEx { op, src } => {
                w.u8(op.code())?;
                w.operand(src)?;
            }
            Instruction::ExprUnopEx2 { op, src, dst } => {
                w.u8(op.code())?;
                w.operand(src)?;
                w.target(dst)?;
            }
            Instruction::ExprBinop { op } => w.u8(op.code())?,
            Instruction::ExprBinopEx { op, a, b } => {
                w.u8(op.code())?;
                w.operand(a)?;
                w.operand(b)?;
            }
            Instruction::ExprBinopEx2 { op, a, b, dst } => {
                w.u8(op.code())?;
                w.operand(a)?;
                w.operand(b)?;
                w.target(dst)?;
            }
            Instruction::JmpIfExpr {
                threshold, delta, ..
            } => {
                w.half(threshold)?;
                w.sint(delta)?;
            }
            Instruction::JmpIfExprEx {
                src,
                threshold,
                delta,
                ..
            } => {
                w.operand(src)?;
                w.half(threshold)?;
                w.sint(delta)?;
            }
            Instruction::Call { addr } => w.uint(u64::from(addr), 2)?,
            Instruction::Ret => {}
            Instruction::Switch { cases } => {
                w.uint(u64::from(cases.count), 2)?;
                w.bytes(cases.raw)?;
            }
            Instruction::SwitchEx { src, cases } => {
                w.operand(src)?;
                w.uint(u64::from(cases.count), 2)?;
                w.bytes(cases.raw)?;
            }
            Instruction::IncAndJmpIf {
                offset,
                threshold,
                delta,
            }
            | Instruction::DecAndJmpIf {
                offset,
                threshold,
                delta,
            } => {
                if offset == 0 {
                    return Err(crate::Error::ValueOutOfRange);
                }
                w.sint(offset)?;
                w.half(threshold)?;
                w.sint(delta)?;
            }
            Instruction::Parallel { threads } => {
                if threads.count == 0 {
                    return Err(crate::Error::ValueOutOfRange);
                }
                w.uint(u64::from(threads.count), 2)?;
                w.bytes(threads.raw)?;
            }
        }
        Ok(w.pos)
    }
}

struct Wr<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Wr<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), crate::Error> {
        self.out
            .get_mut(self.pos..self.pos + b.len())
            .ok_or(crate::Error::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos += b.len();
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), crate::Error> {
        self.bytes(&[v])
    }
    fn uint(&mut self, v: u64, max: u8) -> Result<(), crate::Error> {
        let (b, n) = encoding::uint_to_array(v, max)?;
        self.bytes(b.get(..n).unwrap_or(&[]))
    }
    fn sint(&mut self, v: i16) -> Result<(), crate::Error> {
        let mut b = [0u8; encoding::MAX_ENCODED_LEN];
        let n = encoding::encode_sint(i64::from(v), 2, &mut b)?;
        self.bytes(b.get(..n).unwrap_or(&[]))
    }
    fn half(&mut self, v: f16) -> Result<(), crate::Error> {
        self.bytes(&encoding::encode_half(v))
    }
    fn len_bytes(&mut self, data: &[u8]) -> Result<(), crate::Error> {
        let n = u16::try_from(data.len()).map_err(|_| crate::Error::ValueOutOfRange)?;
        self.uint(u64::from(n), 2)?;
        self.bytes(data)
    }
    fn fields(&mut self, f: &[u8]) -> Result<(), crate::Error> {
        if f.is_empty() || f.iter().any(|c| FieldType::from_code(*c).is_none()) {
            return Err(crate::Error::ValueOutOfRange);
        }
        self.bytes(f)?;
        self.u8(END_OF_SEQUENCE)
    }
    fn substrate(&mut self, offset: i16, flag: bool) -> Result<(), crate::Error> {
        if !(-MAX_EXPR_OFFSET - 1..=MAX_EXPR_OFFSET).contains(&offset) {
            return Err(crate::Error::ValueOutOfRange);
        }
        self.sint(offset * 2 + i16::from(flag))
    }
    fn operand(&mut self, o: Operand) -> Result<(), crate::Error> {
        match o {
            Operand::Immediate(v) => {
                self.substrate(0, false)?;
                self.half(v)
            }
            Operand::Stack { offset: 0, .. } => Err(crate::Error::ValueOutOfRange),
            Operand::Stack { offset, pop } => self.substrate(offset, pop),
        }
    }
    fn target(&mut self, t: Target) -> Result<(), crate::Error> {
        match t {
            Target::Push => self.substrate(0, true),
            Target::Insert(0) | Target::Replace(0) => Err(crate::Error::ValueOutOfRange),
            Target::Insert(o) => self.substrate(o, true),
            Target::Replace(o) => self.substrate(o, false),
        }
    }
}

/// Hex dump in quotes: `"0a0b"`.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str("\"")
    }
}

struct Fields<'a>(&'a [u8]);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match FieldType::from_code(*c) {
                Some(t) => f.write_str(t.name())?,
                None => write!(f, "?{c}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Immediate(v) => write!(f, "#{}", v.to_f32()),
            Operand::Stack { offset, pop: true } => write!(f, "pop@{offset}"),
            Operand::Stack { offset, pop: false } => write!(f, "@{offset}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Push => f.write_str("->top"),
            Target::Insert(o) => write!(f, "->ins@{o}"),
            Target::Replace(o) => write!(f, "->@{o}"),
        }
    }
}

/// Writes a whole program, one instruction per line (see `docs/vm.md`); bytes that
/// do not decode are written as `.bytes "hex"`.
pub fn write_program(f: &mut dyn fmt::Write, code: &[u8]) -> fmt::Result {
    let mut pos = 0;
    while let Some(rest) = code.get(pos..).filter(|r| !r.is_empty()) {
        match Instruction::decode(rest) {
            Ok((i, n)) => {
                writeln!(f, "{i}")?;
                pos += n;
            }
            Err(_) => {
                writeln!(f, ".bytes {}", Hex(rest))?;
                break;
            }
        }
    }
    Ok(())
}

impl fmt::Display for Instruction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Instruction::DeviceCaps { fields } => {
                f.write_str("DEVICECAPS")?;
                for x in fields {
                    write!(f, " {x}")?;
                }
                Ok(())
            }
            Instruction::Exec { bodypart, data } => write!(f, "EXEC {bodypart} {}", Hex(data)),
            Instruction::PushReply { data } => write!(f, "PUSHREPLY {}", Hex(data)),
            Instruction::Sleep { ms } => write!(f, "SLEEP {ms}"),
            Instruction::Transmitter { on } => write!(f, "TRANSMITTER {}", u8::from(on)),
            Instruction::McuSleep {
                secs,
                transmitter_on_when_back,
                may_drop_earlier,
            } => {
                write!(f, "MCUSLEEP {secs}")?;
                if transmitter_on_when_back {
                    f.write_str(" TXON")?;
                }
                if may_drop_earlier {
                    f.write_str(" MAYDROP")?;
                }
                Ok(())
            }
            Instruction::PopReplies { n } => write!(f, "POPREPLIES {n}"),
            Instruction::Exit { flags, padding_to } => {
                write!(f, "EXIT {}", flags.name())?;
                if let Some(p) = padding_to {
                    write!(f, " PAD {p}")?;
                }
                Ok(())
            }
            Instruction::AppendToReply { reply, field, data } => {
                write!(f, "APPENDTOREPLY {reply} {} {}", field.name(), Hex(data))
            }
            Instruction::Jmp { delta } => write!(f, "JMP {delta}"),
            Instruction::JmpIfReplyField {
                cmp,
                reply,
                fields,
                threshold,
                delta,
            } => write!(
                f,
                "JMPIFREPLYFIELD_{} {reply} {} {threshold} {delta}",
                cmp.name(),
                Fields(fields)
            ),
            Instruction::MoveReplyToFront { reply } => write!(f, "MOVEREPLYTOFRONT {reply}"),
            Instruction::PushExprConstant { value } => {
                write!(f, "PUSHEXPR_CONSTANT {}", value.to_f32())
            }
            Instruction::PushExprReplyField { reply, fields } => {
                write!(f, "PUSHEXPR_REPLYFIELD {reply} {}", Fields(fields))
            }
            Instruction::ExprUnop { op } => write!(f, "EXPRUNOP {}", op.name()),
            Instruction::ExprUnopEx { op, src } => write!(f, "EXPRUNOP_EX {} {src}", op.name()),
            Instruction::ExprUnopEx2 { op, src, dst } => {
                write!(f, "EXPRUNOP_EX2 {} {src} {dst}", op.name())
            }
            Instruction::ExprBinop { op } => write!(f, "EXPRBINOP {}", op.name()),
            Instruction::ExprBinopEx { op, a, b } => {
                write!(f, "EXPRBINOP_EX {} {a} {b}", op.name())
            }
            Instruction::ExprBinopEx2 { op, a, b, dst } => {
                write!(f, "EXPRBINOP_EX2 {} {a} {b} {dst}", op.name())
            }
            Instruction::JmpIfExpr {
                cmp,
                threshold,
                delta,
            } => write!(f, "JMPIFEXPR_{} {} {delta}", cmp.name(), threshold.to_f32()),
            Instruction::JmpIfExprEx {
                cmp,
                src,
                threshold,
                delta,
            } => write!(
                f,
                "JMPIFEXPR_EX_{} {src} {} {delta}",
                cmp.name(),
                threshold.to_f32()
            ),
            Instruction::Call { addr } => write!(f, "CALL {addr}"),
            Instruction::Ret => f.write_str("RET"),
            Instruction::Switch { cases } => {
                f.write_str("SWITCH")?;
                for (c, d) in cases.iter() {
                    write!(f, " {c}=>{d}")?;
                }
                Ok(())
            }
            Instruction::SwitchEx { src, cases } => {
                write!(f, "SWITCH_EX {src}")?;
                for (c, d) in cases.iter() {
                    write!(f, " {c}=>{d}")?;
                }
                Ok(())
            }
            Instruction::IncAndJmpIf {
                offset,
                threshold,
                delta,
            } => write!(f, "INCANDJMPIF @{offset} {} {delta}", threshold.to_f32()),
            Instruction::DecAndJmpIf {
                offset,
                threshold,
                delta,
            } => write!(f, "DECANDJMPIF @{offset} {} {delta}", threshold.to_f32()),
            Instruction::Parallel { threads } => {
                f.write_str("PARALLEL")?;
                for body in threads.bodies() {
                    f.write_str(" {")?;
                    let mut pos = 0;
                    let mut first = true;
                    while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
                        f.write_str(if first { " " } else { "; " })?;
                        first = false;
                        match Instruction::decode(rest) {
                            Ok((i, n)) => {
                                write!(f, "{i}")?;
                                pos += n;
                            }
                            Err(_) => {
                                write!(f, ".bytes {}", Hex(rest))?;
                                break;
                            }
                        }
                    }
                    f.write_str(" }")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;
    use crate::Error;

    fn exc(e: Error) -> ExceptionCode {
        match e {
            Error::UnexpectedEnd => ExceptionCode::InvalidParameter,
            _ => ExceptionCode::InvalidEncodedSize,
        }
    }

    /// Each field type reads what the 64-bit decoders read, with the same errors,
    /// for every input of up to three bytes chosen from the encoding's boundaries.
    #[test]
    fn read_matches_the_64_bit_decoders() {
        encoding::boundary_inputs(4, |input| {
            for code in 1..=5 {
                let t = FieldType::from_code(code).unwrap();
                let want = match t {
                    FieldType::EncodedUint => {
                        encoding::decode_uint(input, 2).map(|(v, n)| (FieldValue::Int(v as i64), n))
                    }
                    FieldType::EncodedSint => {
                        encoding::decode_sint(input, 2).map(|(v, n)| (FieldValue::Int(v), n))
                    }
                    FieldType::Byte => input
                        .first()
                        .map(|b| (FieldValue::Int(i64::from(*b)), 1))
                        .ok_or(Error::UnexpectedEnd),
                    FieldType::TwoBytes => {
                        encoding::read_u16_le(input).map(|v| (FieldValue::Int(i64::from(v)), 2))
                    }
                    FieldType::HalfFloat => {
                        encoding::decode_half(input).map(|v| (FieldValue::Half(v), 2))
                    }
                }
                .map_err(exc);
                // Half-floats by their bits (NaN is not equal to itself).
                let bits = |r: Result<(FieldValue, usize), ExceptionCode>| {
                    r.map(|(v, n)| match v {
                        FieldValue::Int(i) => (i, false, n),
                        FieldValue::Half(h) => (i64::from(h.to_bits()), true, n),
                    })
                };
                assert_eq!(bits(t.read(input)), bits(want), "{t:?} {input:02x?}");
            }
        });
    }
}
