//! SACCP, the SmartAnthill Command & Control Protocol (`protocols/saccp.rst`).
//!
//! On the device, SACCP sits between SAGDP and the Zepto VM:
//!
//! * [`Saccp::receive`] takes a command packet (the request) and writes the
//!   *Execution-Layer-Program* as its reply, so after `convert_reply_to_request` the VM
//!   sees the program as its request. [`Saccp::exec_flags`] tells the VM the chain
//!   position rules it must follow. Malformed commands and checksum mismatches are
//!   answered at once with an ERROR reply ([`HandlerOutcome::ReplyDown`], to be sent
//!   through SAGDP with [`Saccp::error_reply_status`]).
//! * [`Saccp::send`] takes the VM's reply buffer (the request) and its [`VmStatus`] and
//!   writes the OK or EXCEPTION reply packet.
//!
//! The last program is kept in a heap handle owned by SACCP, for REPEAT_OLD_PROGRAM and
//! REUSE_OLD_PROGRAM; both carry a truncated OMAC-AES128 ("SACCP Checksum", key = 16
//! bytes 0xA5) of the program the client believes the device holds.
//!
//! The [`client`] module builds the three command forms and decodes replies.
//!
//! Command packet (client -> device):
//!
//! ```text
//! | head: type bits 0..2, EXTRA-HEADERS bit 3, bits 4..7 zero | [extra headers] | body |
//! NEW_PROGRAM:        body = | program |
//! REPEAT_OLD_PROGRAM: body = | Checksum-Length (4..16) | Checksum |
//! REUSE_OLD_PROGRAM:  body = | Checksum-Length | Checksum | fragments |
//! ```
//!
//! Reply packet (device -> client), the first field an Encoded-Unsigned-Int<max=2>:
//!
//! ```text
//! OK:        type 0 | TRUNCATED bit 3 | size bits 4..           , then size bytes
//! EXCEPTION: type 2 | IS-EXCEPTION bit 3 = 1 | TRUNCATED bit 4 | size bits 5.. , data
//! ERROR:     type 2 | IS-EXCEPTION bit 3 = 0 | ERROR-CODE bits 4..
//! ```

use crate::cipher::{BlockCipher128, KeyInit128};
use crate::error::{Error, HandlerOutcome};
use crate::heap::{Handle, Heap, Parser, Part};
use crate::sagdp::PacketStatus;
use aes::Aes128;
use core::marker::PhantomData;

/// Request type (bits 0..2 of the head byte): pairing (not supported here).
pub const REQ_PAIRING: u8 = 0;
/// Request type: over-the-air programming (not supported here).
pub const REQ_OTA_PROGRAMMING: u8 = 1;
/// Request type: execute the program in this packet.
pub const REQ_NEW_PROGRAM: u8 = 2;
/// Request type: execute the program kept from last time.
pub const REQ_REPEAT_OLD_PROGRAM: u8 = 3;
/// Request type: execute a program assembled from fragments of the old one.
pub const REQ_REUSE_OLD_PROGRAM: u8 = 4;
/// Request type: PHY and routing data (not supported here).
pub const REQ_PHY_AND_ROUTING_DATA: u8 = 5;

/// Head byte bit 3: extra headers follow.
pub const EXTRA_HEADERS_FLAG: u8 = 0x08;
/// Head byte bits 4..7: reserved, must be zero.
pub const HEAD_RESERVED: u8 = 0xF0;

/// Reply type (bits 0..2 of the reply's first field): OK.
pub const REPLY_OK: u16 = 0;
/// Reply type: ERROR (an exception when bit 3 is set).
pub const REPLY_ERROR: u16 = 2;

/// Extra header type: end of headers (length 0).
pub const HDR_END_OF_HEADERS: u16 = 0;
/// Extra header type: enable zeptoerr (length 1).
pub const HDR_ENABLE_ZEPTOERR: u16 = 1;

/// Reuse fragment: verbatim bytes follow.
pub const FRAGMENT_VERBATIM: u8 = 0;
/// Reuse fragment: a range of the old program.
pub const FRAGMENT_REFERENCE: u8 = 1;

/// Shortest allowed Checksum-Length.
pub const MIN_CHECKSUM_LEN: u8 = 4;
/// Longest allowed Checksum-Length (a whole OMAC tag).
pub const MAX_CHECKSUM_LEN: u8 = 16;

/// Largest Execution-Layer-Reply in an OK reply (size field bits 4..15).
pub const MAX_OK_SIZE: usize = 0x0FFF;
/// Largest Exception-Data (size field bits 5..15).
pub const MAX_EXCEPTION_SIZE: usize = 0x07FF;

/// The key of the SACCP Checksum.
const CHECKSUM_KEY: [u8; 16] = [0xA5; 16];

/// An SACCP ERROR-CODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// SACCP_ERROR_INVALID_FORMAT.
    pub const INVALID_FORMAT: ErrorCode = ErrorCode(1);
    /// SACCP_ERROR_OLD_PROGRAM_CHECKSUM_DOESNT_MATCH.
    pub const OLD_PROGRAM_CHECKSUM_DOESNT_MATCH: ErrorCode = ErrorCode(2);
    /// SACCP_ERROR_ENTROPY_RECOVERY_NEEDED.
    pub const ENTROPY_RECOVERY_NEEDED: ErrorCode = ErrorCode(3);
    /// SACCP_ERROR_ENTROPY_RECOVERY_COMPLETED.
    pub const ENTROPY_RECOVERY_COMPLETED: ErrorCode = ErrorCode(4);
    /// Largest code that fits the field (bits 4..15).
    pub const MAX: u16 = 0x0FFF;
}

/// The SACCP Checksum: the full 16-byte OMAC (CMAC-AES128) of `data` under the key of
/// sixteen 0xA5 bytes. The wire carries its first Checksum-Length bytes.
pub fn checksum(data: &[u8]) -> [u8; 16] {
    checksum_with::<Aes128>(data)
}

/// An AES-128 implementation for the checksum: the software `aes` crate, or a
/// port's hardware block through [`crate::hwaes`].
pub trait ChecksumAes: BlockCipher128 + KeyInit128 {}

impl<T: BlockCipher128 + KeyInit128> ChecksumAes for T {}

/// [`checksum`] computed with the AES-128 implementation `A`.
pub fn checksum_with<A: ChecksumAes>(data: &[u8]) -> [u8; 16] {
    crate::eax::cmac(&expand::<A>(&CHECKSUM_KEY), data)
}

/// The checksum's cipher, its key expanded out of line: the key schedule's frame
/// then does not add to the frame that holds the round keys during the CMAC (where
/// the key schedule is inlined, e.g. with Speck as SASP's cipher, that frame is on
/// a device's deepest stack path).
#[inline(never)]
fn expand<A: ChecksumAes>(key: &[u8; 16]) -> A {
    A::new(key)
}

/// The ENABLE_ZEPTOERR extra header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZeptoErr {
    /// TRUNCATE-MOST-RECENT: on overflow drop the newest records (else the oldest).
    pub truncate_most_recent: bool,
}

/// The extra headers of a command packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExtraHeaders {
    /// `Some` when ENABLE_ZEPTOERR is present.
    pub zeptoerr: Option<ZeptoErr>,
}

/// Which command produced the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramSource {
    /// NEW_PROGRAM.
    New,
    /// REPEAT_OLD_PROGRAM.
    Repeat,
    /// REUSE_OLD_PROGRAM.
    Reuse,
}

/// What the Zepto VM needs to know about the program SACCP hands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecFlags {
    /// The command started a chain (it was SAGDP "first").
    pub is_first: bool,
    /// The command ended its chain (SAGDP "terminating"): the device may not answer
    /// in this chain; a reply must start a new chain ("is-first").
    pub is_last: bool,
    /// Which command form carried the program.
    pub source: ProgramSource,
    /// Extra headers of the command.
    pub headers: ExtraHeaders,
}

impl ExecFlags {
    /// The chain position of the VM's reply when the program exits normally:
    /// `Terminating` if the command expects a reply in its chain, `First` (a new
    /// chain) if the command was the chain's last packet.
    pub const fn reply_status(&self) -> PacketStatus {
        if self.is_last {
            PacketStatus::First
        } else {
            PacketStatus::Terminating
        }
    }
}

/// How the Execution Layer finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmStatus {
    /// Normal completion; the request is the reply buffer.
    Ok {
        /// The VM already truncated its reply.
        truncated: bool,
    },
    /// A Zepto exception; the request is the exception data.
    Exception {
        /// The VM already truncated the exception data.
        truncated: bool,
    },
}

/// The device side of SACCP. `A` is the AES-128 implementation of the checksum
/// (the software `aes` crate unless the port has AES in hardware).
#[derive(Debug, Clone)]
pub struct Saccp<A = Aes128> {
    old: Option<Handle>,
    has_old: bool,
    flags: Option<ExecFlags>,
    error_status: PacketStatus,
    aes: PhantomData<A>,
}

impl Default for Saccp {
    fn default() -> Self {
        Self::new()
    }
}

impl Saccp {
    /// A new instance; call [`init`](Self::init) before use.
    pub const fn new() -> Self {
        Self::with_aes()
    }
}

impl<A: ChecksumAes> Saccp<A> {
    /// A new instance with the checksum's AES-128 in `A`; call
    /// [`init`](Self::init) before use.
    pub const fn with_aes() -> Self {
        Self {
            old: None,
            has_old: false,
            flags: None,
            error_status: PacketStatus::Terminating,
            aes: PhantomData,
        }
    }

    /// Forgets the handle of the old program after the whole heap was reset (the
    /// block may now be another owner's), so that [`init`](Self::init) allocates a
    /// new one.
    pub fn heap_was_reset(&mut self) {
        self.old = None;
    }

    /// Allocates (first call) or empties the handle holding the old program and
    /// forgets it. After the whole heap was reset, call
    /// [`heap_was_reset`](Self::heap_was_reset) first.
    pub fn init(&mut self, heap: &mut Heap<'_>) -> Result<(), Error> {
        let old = match self.old {
            Some(h) if heap.clear_reply(h).is_ok() => h,
            _ => heap.alloc()?,
        };
        // What `with_aes` gives, in place (the pattern names every field).
        let Self {
            old: kept,
            has_old,
            flags,
            error_status,
            aes: _,
        } = self;
        *kept = Some(old);
        *has_old = false;
        *flags = None;
        *error_status = PacketStatus::Terminating;
        Ok(())
    }

    /// After [`receive`](Self::receive) returned [`HandlerOutcome::Pass`]: what the VM
    /// needs to run the program.
    pub const fn exec_flags(&self) -> Option<ExecFlags> {
        self.flags
    }

    /// After [`receive`](Self::receive) returned [`HandlerOutcome::ReplyDown`]: the
    /// SAGDP chain position of the ERROR reply.
    pub const fn error_reply_status(&self) -> PacketStatus {
        self.error_status
    }

    /// The full SACCP Checksum of the kept program, if there is one.
    pub fn old_program_checksum(&self, heap: &Heap<'_>) -> Result<Option<[u8; 16]>, Error> {
        match self.old {
            Some(h) if self.has_old => Ok(Some(checksum_with::<A>(heap.reply(h)?))),
            _ => Ok(None),
        }
    }

    /// The kept program, if there is one.
    pub fn old_program<'h>(&self, heap: &'h Heap<'_>) -> Result<Option<&'h [u8]>, Error> {
        match self.old {
            Some(h) if self.has_old => Ok(Some(heap.reply(h)?)),
            _ => Ok(None),
        }
    }

    /// Handles a command packet (the request of `h`) delivered by SAGDP with chain
    /// position `status`.
    ///
    /// * [`HandlerOutcome::Pass`]: the reply is the program; see
    ///   [`exec_flags`](Self::exec_flags). The program is kept for later
    ///   REPEAT/REUSE commands.
    /// * [`HandlerOutcome::ReplyDown`]: the reply is an SACCP ERROR packet for SAGDP
    ///   send with [`error_reply_status`](Self::error_reply_status); the kept program
    ///   is unchanged.
    ///
    /// Local failures (heap full, uninitialised) are errors; an Error Message status
    /// is [`Error::InvalidState`].
    // Out of line (also from the pump): the checksum it computes first stays in this
    // frame, not in the pump's, which is under every path of a device.
    #[inline(never)]
    pub fn receive(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        status: PacketStatus,
    ) -> Result<HandlerOutcome, Error> {
        let checksum = self.checksum_for(heap, h)?;
        self.receive_with(heap, h, status, checksum)
    }

    /// What `Saccp::receive_with` needs for the command in the request of `h`:
    /// the checksum of the kept program if the command is a REPEAT_OLD_PROGRAM or
    /// REUSE_OLD_PROGRAM (which compare it with theirs; `None` without a kept
    /// program or for other commands). Computed before the command is parsed, the
    /// expanded checksum key does not sit on top of the parser's frame, which
    /// would be the deepest stack of a device.
    #[inline(never)]
    pub fn checksum_for(&self, heap: &Heap<'_>, h: Handle) -> Result<Option<[u8; 16]>, Error> {
        match heap.request(h)?.first().map(|b| b & 0x07) {
            Some(REQ_REPEAT_OLD_PROGRAM | REQ_REUSE_OLD_PROGRAM) => self.old_program_checksum(heap),
            _ => Ok(None),
        }
    }

    /// [`Saccp::receive`] with the kept program's checksum computed beforehand by
    /// [`Saccp::checksum_for`] on the same request. Private: a stale checksum would
    /// let a REPEAT run a program the client's checksum did not name.
    #[inline(never)]
    fn receive_with(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        status: PacketStatus,
        checksum: Option<[u8; 16]>,
    ) -> Result<HandlerOutcome, Error> {
        let old = self.old.ok_or(Error::InvalidState)?;
        let (is_first, is_last) = match status {
            PacketStatus::First => (true, false),
            PacketStatus::Intermediate => (false, false),
            PacketStatus::Terminating => (false, true),
            PacketStatus::ErrorMessage => return Err(Error::InvalidState),
        };
        self.flags = None;
        self.error_status = if is_last {
            PacketStatus::First
        } else {
            PacketStatus::Terminating
        };
        heap.clear_reply(h)?;
        match self.parse_command(heap, h, old, checksum) {
            Ok((source, headers)) => {
                // Keep the program for REPEAT / REUSE.
                self.has_old = false;
                heap.set_reply_of(old, h)?;
                self.has_old = true;
                self.flags = Some(ExecFlags {
                    is_first,
                    is_last,
                    source,
                    headers,
                });
                Ok(HandlerOutcome::Pass)
            }
            Err(e) => {
                heap.clear_reply(h)?;
                let code = match e {
                    // `check_old`'s mismatch (no heap or parser call fails so).
                    Error::AuthenticationFailed => ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH,
                    Error::UnexpectedEnd
                    | Error::InvalidEncoding
                    | Error::ValueOutOfRange
                    | Error::Malformed => ErrorCode::INVALID_FORMAT,
                    local => return Err(local),
                };
                heap.append_reply_u8(h, short_error_field(code))?;
                Ok(HandlerOutcome::ReplyDown)
            }
        }
    }

    /// Parses the command and writes the program to the reply of `h`. A command
    /// that gets an ERROR reply fails with a format error ([`Error::Malformed`] and
    /// the like: INVALID_FORMAT) or [`Error::AuthenticationFailed`] (the old
    /// program's checksum does not match); any other error is local.
    fn parse_command(
        &self,
        heap: &mut Heap<'_>,
        h: Handle,
        old: Handle,
        checksum: Option<[u8; 16]>,
    ) -> Result<(ProgramSource, ExtraHeaders), Error> {
        let mut p = heap.parser(h)?;
        let head = p.u8(heap)?;
        if head & HEAD_RESERVED != 0 {
            return Err(Error::Malformed);
        }
        let kind = head & 0x07;
        if !matches!(
            kind,
            REQ_NEW_PROGRAM | REQ_REPEAT_OLD_PROGRAM | REQ_REUSE_OLD_PROGRAM
        ) {
            return Err(Error::Malformed);
        }
        let headers = if head & EXTRA_HEADERS_FLAG != 0 {
            parse_extra_headers(heap, &mut p)?
        } else {
            ExtraHeaders::default()
        };
        if kind != REQ_NEW_PROGRAM {
            // REPEAT_OLD_PROGRAM and REUSE_OLD_PROGRAM name the kept program.
            self.check_old(heap, &mut p, checksum)?;
        }
        match kind {
            REQ_NEW_PROGRAM => {
                // The program is the rest of the command: it becomes the reply in
                // place (the parser reads the whole request).
                heap.split_request(h, p.position())?;
                Ok((ProgramSource::New, headers))
            }
            REQ_REPEAT_OLD_PROGRAM => {
                if !p.is_empty() {
                    return Err(Error::Malformed);
                }
                heap.set_reply_of(h, old)?;
                Ok((ProgramSource::Repeat, headers))
            }
            _ => {
                let old_len = heap.reply_len(old)?;
                while !p.is_empty() {
                    let tag = p.u8(heap)?;
                    let len = usize::from(p.uint2(heap)?);
                    match tag {
                        FRAGMENT_VERBATIM => {
                            let start = p.position();
                            p.skip(heap, len)?;
                            heap.append_reply_from(h, h, Part::Request, start..start + len)?;
                        }
                        FRAGMENT_REFERENCE => {
                            let off = usize::from(p.uint2(heap)?);
                            let end = off
                                .checked_add(len)
                                .filter(|e| *e <= old_len)
                                .ok_or(Error::ValueOutOfRange)?;
                            heap.append_reply_from(h, old, Part::Reply, off..end)?;
                        }
                        _ => return Err(Error::Malformed),
                    }
                }
                Ok((ProgramSource::Reuse, headers))
            }
        }
    }

    /// Reads Checksum-Length and Checksum and compares them with the kept
    /// program's `checksum` ([`Error::AuthenticationFailed`] if they differ).
    fn check_old(
        &self,
        heap: &Heap<'_>,
        p: &mut Parser,
        checksum: Option<[u8; 16]>,
    ) -> Result<(), Error> {
        let n = p.u8(heap)?;
        if !(MIN_CHECKSUM_LEN..=MAX_CHECKSUM_LEN).contains(&n) {
            return Err(Error::Malformed);
        }
        let got = p.bytes(heap, usize::from(n))?;
        match checksum {
            Some(sum) if sum.get(..got.len()) == Some(got) => Ok(()),
            _ => Err(Error::AuthenticationFailed),
        }
    }

    /// Wraps the VM's reply buffer (the request of `h`) into an OK or EXCEPTION reply.
    /// Data longer than the size field allows is truncated and flagged TRUNCATED.
    /// Returns [`HandlerOutcome::Pass`] (on to SAGDP send).
    #[inline(never)]
    pub fn send(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        status: VmStatus,
    ) -> Result<HandlerOutcome, Error> {
        let len = heap.request_len(h)?;
        heap.clear_reply(h)?;
        // The field's layout: its type bits, where TRUNCATED goes and where the
        // size starts (the size takes the bits above it, up to MAX_OK_SIZE or
        // MAX_EXCEPTION_SIZE).
        const _: () = assert!(MAX_OK_SIZE == (u16::MAX >> 4) as usize);
        const _: () = assert!(MAX_EXCEPTION_SIZE == (u16::MAX >> 5) as usize);
        let (kind, t_bit, truncated) = match status {
            VmStatus::Ok { truncated } => (REPLY_OK, 3, truncated),
            VmStatus::Exception { truncated } => (REPLY_ERROR | 1 << 3, 4, truncated),
        };
        let n = len.min(usize::from(u16::MAX >> (t_bit + 1)));
        let t = truncated || n < len;
        let field = kind | u16::from(t) << t_bit | (n as u16) << (t_bit + 1);
        // The reply buffer stays where it is, the field goes in front of it; what
        // does not fit the size field is cut off behind it.
        let (buf, k) = crate::encoding::uint32_to_array(u32::from(field), 2)?;
        heap.wrap_request(h, buf.get(..k).ok_or(Error::BufferTooSmall)?)?;
        heap.truncate_reply(h, k + n)?;
        self.flags = None;
        Ok(HandlerOutcome::Pass)
    }

    /// Writes an ERROR reply with `code` (e.g. to start a device chain with
    /// ENTROPY_RECOVERY_NEEDED). The request of `h` is ignored.
    pub fn send_error(
        &mut self,
        heap: &mut Heap<'_>,
        h: Handle,
        code: ErrorCode,
    ) -> Result<HandlerOutcome, Error> {
        heap.clear_reply(h)?;
        write_error(heap, h, code)?;
        Ok(HandlerOutcome::Pass)
    }
}

/// The ERROR reply's field for a code below 8, whose Encoded-Unsigned-Int is one
/// byte (the field itself, below 0x80): what [`write_error`] writes for it.
const fn short_error_field(code: ErrorCode) -> u8 {
    (REPLY_ERROR | (code.0 & 0x07) << 4) as u8
}

const _: () = assert!(
    short_error_field(ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH) < 0x80
        && short_error_field(ErrorCode::INVALID_FORMAT) < 0x80
        && ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH.0 < 8
        && ErrorCode::INVALID_FORMAT.0 < 8
);

fn write_error(heap: &mut Heap<'_>, h: Handle, code: ErrorCode) -> Result<(), Error> {
    if code.0 > ErrorCode::MAX {
        return Err(Error::ValueOutOfRange);
    }
    heap.append_reply_uint(h, u64::from(REPLY_ERROR | code.0 << 4), 2)
}

/// Parses extra headers up to END_OF_HEADERS. Unknown header types are skipped by
/// their length.
fn parse_extra_headers(heap: &Heap<'_>, p: &mut Parser) -> Result<ExtraHeaders, Error> {
    let mut out = ExtraHeaders::default();
    loop {
        let v = p.uint2(heap)?;
        let kind = v & 0x7;
        let len = (v >> 3) as usize;
        match kind {
            HDR_END_OF_HEADERS => {
                return if len == 0 {
                    Ok(out)
                } else {
                    Err(Error::Malformed)
                };
            }
            HDR_ENABLE_ZEPTOERR => {
                let data = p.bytes(heap, len)?;
                match data {
                    [b] if b & 0xFE == 0 => {
                        out.zeptoerr = Some(ZeptoErr {
                            truncate_most_recent: b & 1 != 0,
                        });
                    }
                    _ => return Err(Error::Malformed),
                }
            }
            _ => p.skip(heap, len)?,
        }
    }
}

/// The client side: building commands and decoding replies.
pub mod client {
    use super::*;

    /// One fragment of a REUSE_OLD_PROGRAM command.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fragment<'a> {
        /// Bytes carried in the command.
        Verbatim(&'a [u8]),
        /// `len` bytes of the old program starting at `offset`.
        Reference {
            /// Offset in the old program.
            offset: u16,
            /// Number of bytes.
            len: u16,
        },
    }

    /// A decoded SACCP reply.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Reply<'a> {
        /// SACCP_OK with the Execution-Layer-Reply.
        Ok {
            /// TRUNCATED-FLAG.
            truncated: bool,
            /// The Execution-Layer-Reply.
            data: &'a [u8],
        },
        /// SACCP_ERROR with IS-EXCEPTION: a Zepto VM exception.
        Exception {
            /// EXCEPTION-TRUNCATED-FLAG.
            truncated: bool,
            /// The Exception-Data.
            data: &'a [u8],
        },
        /// SACCP_ERROR with an ERROR-CODE.
        Error(ErrorCode),
    }

    fn head(heap: &mut Heap<'_>, h: Handle, kind: u8, headers: &ExtraHeaders) -> Result<(), Error> {
        match headers.zeptoerr {
            None => heap.append_reply_u8(h, kind),
            Some(z) => {
                heap.append_reply_u8(h, kind | EXTRA_HEADERS_FLAG)?;
                heap.append_reply_uint(h, u64::from(HDR_ENABLE_ZEPTOERR | 1 << 3), 2)?;
                heap.append_reply_u8(h, u8::from(z.truncate_most_recent))?;
                heap.append_reply_uint(h, u64::from(HDR_END_OF_HEADERS), 2)
            }
        }
    }

    fn checksum_field(
        heap: &mut Heap<'_>,
        h: Handle,
        old_program: &[u8],
        checksum_len: u8,
    ) -> Result<(), Error> {
        if !(MIN_CHECKSUM_LEN..=MAX_CHECKSUM_LEN).contains(&checksum_len) {
            return Err(Error::ValueOutOfRange);
        }
        let sum = checksum(old_program);
        heap.append_reply_u8(h, checksum_len)?;
        heap.append_reply(
            h,
            sum.get(..usize::from(checksum_len))
                .ok_or(Error::ValueOutOfRange)?,
        )
    }

    /// Appends a NEW_PROGRAM command to the reply of `h`.
    pub fn build_new_program(
        heap: &mut Heap<'_>,
        h: Handle,
        headers: &ExtraHeaders,
        program: &[u8],
    ) -> Result<(), Error> {
        head(heap, h, REQ_NEW_PROGRAM, headers)?;
        heap.append_reply(h, program)
    }

    /// Appends a REPEAT_OLD_PROGRAM command for `old_program` (the program the client
    /// believes the device keeps) with a checksum of `checksum_len` (4..=16) bytes.
    pub fn build_repeat_old_program(
        heap: &mut Heap<'_>,
        h: Handle,
        headers: &ExtraHeaders,
        old_program: &[u8],
        checksum_len: u8,
    ) -> Result<(), Error> {
        head(heap, h, REQ_REPEAT_OLD_PROGRAM, headers)?;
        checksum_field(heap, h, old_program, checksum_len)
    }

    /// Appends a REUSE_OLD_PROGRAM command: checksum of `old_program`, then
    /// `fragments`.
    pub fn build_reuse_old_program(
        heap: &mut Heap<'_>,
        h: Handle,
        headers: &ExtraHeaders,
        old_program: &[u8],
        checksum_len: u8,
        fragments: &[Fragment<'_>],
    ) -> Result<(), Error> {
        head(heap, h, REQ_REUSE_OLD_PROGRAM, headers)?;
        checksum_field(heap, h, old_program, checksum_len)?;
        for f in fragments {
            match *f {
                Fragment::Verbatim(bytes) => {
                    let len = u16::try_from(bytes.len()).map_err(|_| Error::ValueOutOfRange)?;
                    heap.append_reply_u8(h, FRAGMENT_VERBATIM)?;
                    heap.append_reply_uint(h, u64::from(len), 2)?;
                    heap.append_reply(h, bytes)?;
                }
                Fragment::Reference { offset, len } => {
                    heap.append_reply_u8(h, FRAGMENT_REFERENCE)?;
                    heap.append_reply_uint(h, u64::from(len), 2)?;
                    heap.append_reply_uint(h, u64::from(offset), 2)?;
                }
            }
        }
        Ok(())
    }

    /// Decodes a reply packet. The size field must match the data exactly
    /// ([`Error::Malformed`] otherwise, and for unknown reply types).
    pub fn decode_reply(bytes: &[u8]) -> Result<Reply<'_>, Error> {
        let (v, n) = crate::encoding::decode_uint(bytes, 2)?;
        let rest = bytes.get(n..).ok_or(Error::UnexpectedEnd)?;
        let v = v as u16;
        match v & 0x7 {
            REPLY_OK => {
                let size = usize::from(v >> 4);
                if rest.len() != size {
                    return Err(Error::Malformed);
                }
                Ok(Reply::Ok {
                    truncated: v & 0x8 != 0,
                    data: rest,
                })
            }
            REPLY_ERROR if v & 0x8 != 0 => {
                let size = usize::from(v >> 5);
                if rest.len() != size {
                    return Err(Error::Malformed);
                }
                Ok(Reply::Exception {
                    truncated: v & 0x10 != 0,
                    data: rest,
                })
            }
            REPLY_ERROR => {
                if !rest.is_empty() {
                    return Err(Error::Malformed);
                }
                Ok(Reply::Error(ErrorCode(v >> 4)))
            }
            _ => Err(Error::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client::{self, Fragment, Reply};
    use super::*;
    use crate::heap::HeapMem;
    use proptest::prelude::*;

    type H = HeapMem<1024, 6>;

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    /// OMAC-AES128 under 16 x 0xA5 (computed independently with `openssl mac CMAC`).
    const SUM_EMPTY: [u8; 16] = [
        0x62, 0x25, 0x78, 0x54, 0xD6, 0xAF, 0xB5, 0xCB, 0x30, 0x19, 0x14, 0xAE, 0x87, 0xED, 0xBC,
        0x8A,
    ];
    const SUM_0802: [u8; 16] = [
        0x65, 0x97, 0xA3, 0xC3, 0x95, 0x92, 0xA6, 0xCD, 0xCC, 0xF3, 0xDD, 0x51, 0x00, 0xCB, 0xAC,
        0x37,
    ];
    const SUM_ALPHABET: [u8; 16] = [
        0x23, 0x2C, 0x34, 0x53, 0xD1, 0xB8, 0xA6, 0xA5, 0x9A, 0xE6, 0x24, 0x47, 0x09, 0xA6, 0xD5,
        0x65,
    ];

    struct Rig {
        heap: H,
        c: Saccp,
        h: Handle,
    }

    impl Rig {
        fn new() -> Self {
            let mut heap_mem = H::new();
            let mut heap = heap_mem.heap();
            let mut c = Saccp::new();
            c.init(&mut heap).unwrap();
            let h = heap.alloc().unwrap();
            Rig {
                heap: heap_mem,
                c,
                h,
            }
        }
        fn recv(&mut self, bytes: &[u8], st: PacketStatus) -> HandlerOutcome {
            self.heap.heap().set_request(self.h, bytes).unwrap();
            self.c.receive(&mut self.heap.heap(), self.h, st).unwrap()
        }
        fn reply(&self) -> Vec<u8> {
            self.heap.reply(self.h).unwrap().to_vec()
        }
        fn old(&mut self) -> Option<Vec<u8>> {
            self.c
                .old_program(&self.heap.heap())
                .unwrap()
                .map(<[u8]>::to_vec)
        }
        fn build(&mut self, f: impl FnOnce(&mut Heap<'_>, Handle) -> Result<(), Error>) -> Vec<u8> {
            self.heap.heap().set_request(self.h, &[]).unwrap();
            f(&mut self.heap.heap(), self.h).unwrap();
            self.reply()
        }
    }

    #[test]
    fn checksum_matches_independent_cmac() {
        assert_eq!(checksum(&[]), SUM_EMPTY);
        assert_eq!(checksum(&[0x08, 0x02]), SUM_0802);
        assert_eq!(checksum(ALPHABET), SUM_ALPHABET);
    }

    #[test]
    fn new_program_becomes_vm_request() {
        let mut r = Rig::new();
        assert_eq!(
            r.recv(&[0x02, 0x08, 0x02], PacketStatus::First),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x08, 0x02]);
        let f = r.c.exec_flags().unwrap();
        assert!(f.is_first && !f.is_last);
        assert_eq!(f.source, ProgramSource::New);
        assert_eq!(f.headers, ExtraHeaders::default());
        assert_eq!(f.reply_status(), PacketStatus::Terminating);
        assert_eq!(r.old(), Some(vec![0x08, 0x02]));
        assert_eq!(
            r.c.old_program_checksum(&r.heap.heap()).unwrap(),
            Some(SUM_0802)
        );
        // The pump's next step: the program is the VM's request.
        r.heap.heap().convert_reply_to_request(r.h).unwrap();
        assert_eq!(r.heap.request(r.h).unwrap(), [0x08, 0x02]);
        // A terminating command: the VM's reply must open a new chain.
        assert_eq!(
            r.recv(&[0x02, 0x01], PacketStatus::Terminating),
            HandlerOutcome::Pass
        );
        let f = r.c.exec_flags().unwrap();
        assert!(!f.is_first && f.is_last);
        assert_eq!(f.reply_status(), PacketStatus::First);
        assert_eq!(
            r.recv(&[0x02], PacketStatus::Intermediate),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [] as [u8; 0]);
        assert_eq!(r.old(), Some(vec![]));
    }

    #[test]
    fn extra_headers() {
        let mut r = Rig::new();
        // EXTRA-HEADERS flag; ENABLE_ZEPTOERR (type 1, length 1 -> 0x09) with
        // TRUNCATE-MOST-RECENT; END_OF_HEADERS; program.
        assert_eq!(
            r.recv(&[0x0A, 0x09, 0x01, 0x00, 0x42], PacketStatus::First),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x42]);
        assert_eq!(
            r.c.exec_flags().unwrap().headers.zeptoerr,
            Some(ZeptoErr {
                truncate_most_recent: true
            })
        );
        // An unknown header type (5, length 2 -> 0x15) is skipped.
        assert_eq!(
            r.recv(&[0x0A, 0x15, 0xEE, 0xEE, 0x00, 0x43], PacketStatus::First),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x43]);
        assert_eq!(r.c.exec_flags().unwrap().headers, ExtraHeaders::default());
        // Malformed header lists: END with a length, ZEPTOERR reserved bits, ZEPTOERR
        // of length 2, missing END.
        for bad in [
            &[0x0A, 0x08, 0x00][..],
            &[0x0A, 0x09, 0x02, 0x00],
            &[0x0A, 0x11, 0x01, 0x00, 0x00],
            &[0x0A, 0x09, 0x01],
        ] {
            assert_eq!(
                r.recv(bad, PacketStatus::First),
                HandlerOutcome::ReplyDown,
                "{bad:x?}"
            );
            assert_eq!(r.reply(), [0x12], "{bad:x?}");
        }
        // The kept program is the last good one.
        assert_eq!(r.old(), Some(vec![0x43]));
    }

    #[test]
    fn errors_are_byte_exact_and_keep_state() {
        let mut r = Rig::new();
        r.recv(&[0x02, 0x08, 0x02], PacketStatus::First);
        // INVALID_FORMAT (code 1): 2 | 1 << 4 = 0x12.
        for bad in [
            &[][..],
            &[0x12, 0x00],
            &[0x82],
            &[0x00],
            &[0x01],
            &[0x05],
            &[0x07],
        ] {
            assert_eq!(
                r.recv(bad, PacketStatus::Intermediate),
                HandlerOutcome::ReplyDown
            );
            assert_eq!(r.reply(), [0x12]);
            assert_eq!(r.c.exec_flags(), None);
            assert_eq!(r.c.error_reply_status(), PacketStatus::Terminating);
        }
        // CHECKSUM_DOESNT_MATCH (code 2): 0x22. An error to a terminating command
        // starts a new chain.
        assert_eq!(
            r.recv(&[0x03, 0x04, 0, 0, 0, 0], PacketStatus::Terminating),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply(), [0x22]);
        assert_eq!(r.c.error_reply_status(), PacketStatus::First);
        assert_eq!(r.old(), Some(vec![0x08, 0x02]));
    }

    #[test]
    fn repeat_old_program() {
        let mut r = Rig::new();
        // Nothing kept yet: the checksum cannot match.
        assert_eq!(
            r.recv(&[0x03, 0x04, 0x65, 0x97, 0xA3, 0xC3], PacketStatus::First),
            HandlerOutcome::ReplyDown
        );
        assert_eq!(r.reply(), [0x22]);
        r.recv(&[0x02, 0x08, 0x02], PacketStatus::First);
        assert_eq!(
            r.recv(&[0x03, 0x04, 0x65, 0x97, 0xA3, 0xC3], PacketStatus::First),
            HandlerOutcome::Pass
        );
        assert_eq!(r.reply(), [0x08, 0x02]);
        assert_eq!(r.c.exec_flags().unwrap().source, ProgramSource::Repeat);
        let mut full = vec![0x03, 16];
        full.extend_from_slice(&SUM_0802);
        assert_eq!(r.recv(&full, PacketStatus::First), HandlerOutcome::Pass);
        assert_eq!(r.reply(), [0x08, 0x02]);
        // Wrong checksum byte; lengths 3 and 17; trailing byte.
        for (bad, code) in [
            (&[0x03, 0x04, 0x65, 0x97, 0xA3, 0xC4][..], 0x22),
            (&[0x03, 0x03, 0x65, 0x97, 0xA3], 0x12),
            (&[0x03, 0x11, 0x65, 0x97, 0xA3, 0xC3], 0x12),
            (&[0x03, 0x04, 0x65, 0x97, 0xA3, 0xC3, 0x00], 0x12),
            (&[0x03, 0x05, 0x65, 0x97, 0xA3, 0xC3], 0x12),
        ] {
            assert_eq!(r.recv(bad, PacketStatus::First), HandlerOutcome::ReplyDown);
            assert_eq!(r.reply(), [code], "{bad:x?}");
        }
        // With extra headers before the checksum.
        assert_eq!(
            r.recv(
                &[0x0B, 0x09, 0x00, 0x00, 0x04, 0x65, 0x97, 0xA3, 0xC3],
                PacketStatus::First
            ),
            HandlerOutcome::Pass
        );
        assert_eq!(
            r.c.exec_flags().unwrap().headers.zeptoerr,
            Some(ZeptoErr {
                truncate_most_recent: false
            })
        );
    }

    #[test]
    fn reuse_old_program() {
        let mut r = Rig::new();
        let mut new = vec![0x02];
        new.extend_from_slice(ALPHABET);
        r.recv(&new, PacketStatus::First);
        // REFERENCE(len 3, off 0) "ABC", VERBATIM "xy", REFERENCE(len 2, off 24) "YZ".
        let cmd = [
            0x04, 0x04, 0x23, 0x2C, 0x34, 0x53, 0x01, 0x03, 0x00, 0x00, 0x02, b'x', b'y', 0x01,
            0x02, 0x18,
        ];
        assert_eq!(r.recv(&cmd, PacketStatus::First), HandlerOutcome::Pass);
        assert_eq!(r.reply(), b"ABCxyYZ");
        assert_eq!(r.c.exec_flags().unwrap().source, ProgramSource::Reuse);
        assert_eq!(r.old(), Some(b"ABCxyYZ".to_vec()));
        // The old checksum no longer matches.
        assert_eq!(r.recv(&cmd, PacketStatus::First), HandlerOutcome::ReplyDown);
        assert_eq!(r.reply(), [0x22]);
        let sum = checksum(b"ABCxyYZ");
        let head = [0x04, 0x04, sum[0], sum[1], sum[2], sum[3]];
        for (tail, expect) in [
            // Reference past the end (offset 5 + len 3 > 7).
            (&[0x01, 0x03, 0x05][..], None),
            (&[0x01, 0x02, 0x05], Some(&b"YZ"[..])),
            // Verbatim longer than the packet.
            (&[0x00, 0x05, b'a'], None),
            // Unknown fragment tag.
            (&[0x02, 0x00], None),
            // Truncated fragment.
            (&[0x01, 0x01], None),
            // No fragments: an empty program.
            (&[], Some(&b""[..])),
        ] {
            // Start each case from the same kept program.
            let mut keep = vec![0x02];
            keep.extend_from_slice(b"ABCxyYZ");
            r.recv(&keep, PacketStatus::First);
            let mut pkt = head.to_vec();
            pkt.extend_from_slice(tail);
            match expect {
                Some(p) => {
                    assert_eq!(r.recv(&pkt, PacketStatus::First), HandlerOutcome::Pass);
                    assert_eq!(r.reply(), p);
                }
                None => {
                    assert_eq!(r.recv(&pkt, PacketStatus::First), HandlerOutcome::ReplyDown);
                    assert_eq!(r.reply(), [0x12], "{tail:x?}");
                    assert_eq!(r.old(), Some(b"ABCxyYZ".to_vec()));
                }
            }
        }
    }

    #[test]
    fn send_wraps_vm_reply() {
        let mut r = Rig::new();
        r.heap.heap().set_request(r.h, &[1, 2, 3]).unwrap();
        assert_eq!(
            r.c.send(&mut r.heap.heap(), r.h, VmStatus::Ok { truncated: false }),
            Ok(HandlerOutcome::Pass)
        );
        assert_eq!(r.reply(), [0x30, 1, 2, 3]);
        r.heap.heap().set_request(r.h, &[7; 8]).unwrap();
        r.c.send(&mut r.heap.heap(), r.h, VmStatus::Ok { truncated: true })
            .unwrap();
        // 8 << 4 | TRUNCATED = 0x88 = 136 -> bijective 0x88 0x00.
        assert_eq!(r.reply()[..2], [0x88, 0x00]);
        assert_eq!(r.reply().len(), 10);
        r.heap.heap().set_request(r.h, &[0xE1, 0xE2]).unwrap();
        r.c.send(
            &mut r.heap.heap(),
            r.h,
            VmStatus::Exception { truncated: false },
        )
        .unwrap();
        // 2 | IS-EXCEPTION | 2 << 5 = 0x4A.
        assert_eq!(r.reply(), [0x4A, 0xE1, 0xE2]);
        r.heap.heap().set_request(r.h, &[]).unwrap();
        r.c.send(
            &mut r.heap.heap(),
            r.h,
            VmStatus::Exception { truncated: true },
        )
        .unwrap();
        assert_eq!(r.reply(), [0x1A]);
        r.c.send_error(&mut r.heap.heap(), r.h, ErrorCode::ENTROPY_RECOVERY_NEEDED)
            .unwrap();
        assert_eq!(r.reply(), [0x32]);
        assert_eq!(
            r.c.send_error(&mut r.heap.heap(), r.h, ErrorCode(0x1000)),
            Err(Error::ValueOutOfRange)
        );
    }

    #[test]
    fn init_forgets_the_kept_program_and_flags() {
        let mut r = Rig::new();
        assert_eq!(
            r.recv(&[REQ_NEW_PROGRAM, 0x08, 0x02], PacketStatus::Terminating),
            HandlerOutcome::Pass
        );
        assert!(r.c.exec_flags().is_some());
        assert_eq!(r.c.error_reply_status(), PacketStatus::First);
        assert_eq!(r.old(), Some(vec![0x08, 0x02]));
        let old = r.c.old;
        r.c.init(&mut r.heap.heap()).unwrap();
        assert_eq!(r.c.old, old);
        assert_eq!(r.old(), None);
        assert_eq!(r.c.exec_flags(), None);
        assert_eq!(r.c.error_reply_status(), PacketStatus::Terminating);
        assert!(r.heap.reply(old.unwrap()).unwrap().is_empty());
    }

    #[test]
    fn send_truncates_oversized_replies() {
        let mut heap_mem = HeapMem::<9000, 3>::new();
        let mut heap = heap_mem.heap();
        let mut c = Saccp::new();
        c.init(&mut heap).unwrap();
        let h = heap.alloc().unwrap();
        heap.set_request(h, &[0x5A; MAX_OK_SIZE + 1]).unwrap();
        c.send(&mut heap, h, VmStatus::Ok { truncated: false })
            .unwrap();
        match client::decode_reply(heap.reply(h).unwrap()).unwrap() {
            Reply::Ok { truncated, data } => {
                assert!(truncated);
                assert_eq!(data.len(), MAX_OK_SIZE);
            }
            other => panic!("{other:?}"),
        }
        heap.set_request(h, &[0x5A; MAX_EXCEPTION_SIZE + 3])
            .unwrap();
        c.send(&mut heap, h, VmStatus::Exception { truncated: false })
            .unwrap();
        match client::decode_reply(heap.reply(h).unwrap()).unwrap() {
            Reply::Exception { truncated, data } => {
                assert!(truncated);
                assert_eq!(data.len(), MAX_EXCEPTION_SIZE);
            }
            other => panic!("{other:?}"),
        }
    }

    /// An oversized reply needs room for its field only (3 bytes: the size is at
    /// its largest; the rest is cut off in place): the reply is the field and the
    /// first bytes of the VM's buffer.
    #[test]
    fn oversized_replies_are_cut_in_place_in_a_full_heap() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        for (status, max) in [
            (VmStatus::Ok { truncated: false }, MAX_OK_SIZE),
            (VmStatus::Exception { truncated: false }, MAX_EXCEPTION_SIZE),
        ] {
            let mut heap_mem = HeapMem::<5003, 2>::new();
            let mut heap = heap_mem.heap();
            let mut c = Saccp::new();
            c.init(&mut heap).unwrap();
            let h = heap.alloc().unwrap();
            heap.set_request(h, &data).unwrap();
            assert_eq!(heap.free_bytes(), 3);
            assert_eq!(c.send(&mut heap, h, status), Ok(HandlerOutcome::Pass));
            let (truncated, body) = match client::decode_reply(heap.reply(h).unwrap()).unwrap() {
                Reply::Ok { truncated, data } | Reply::Exception { truncated, data } => {
                    (truncated, data.to_vec())
                }
                other => panic!("{other:?}"),
            };
            assert!(truncated);
            assert_eq!(body, data[..max]);
            assert_eq!(heap.reply(h).unwrap().len(), 3 + max);
        }
    }

    #[test]
    fn client_builds_byte_exact_commands() {
        let mut r = Rig::new();
        let none = ExtraHeaders::default();
        let zerr = ExtraHeaders {
            zeptoerr: Some(ZeptoErr {
                truncate_most_recent: true,
            }),
        };
        assert_eq!(
            r.build(|hp, h| client::build_new_program(hp, h, &none, &[0x08, 0x02])),
            [0x02, 0x08, 0x02]
        );
        assert_eq!(
            r.build(|hp, h| client::build_new_program(hp, h, &zerr, &[0x42])),
            [0x0A, 0x09, 0x01, 0x00, 0x42]
        );
        assert_eq!(
            r.build(|hp, h| client::build_repeat_old_program(hp, h, &none, &[0x08, 0x02], 4)),
            [0x03, 0x04, 0x65, 0x97, 0xA3, 0xC3]
        );
        assert_eq!(
            r.build(|hp, h| client::build_reuse_old_program(
                hp,
                h,
                &none,
                ALPHABET,
                4,
                &[
                    Fragment::Reference { offset: 0, len: 3 },
                    Fragment::Verbatim(b"xy"),
                    Fragment::Reference { offset: 24, len: 2 },
                ]
            )),
            [
                0x04, 0x04, 0x23, 0x2C, 0x34, 0x53, 0x01, 0x03, 0x00, 0x00, 0x02, b'x', b'y', 0x01,
                0x02, 0x18
            ]
        );
        r.heap.heap().set_request(r.h, &[]).unwrap();
        for n in [3, 17] {
            assert_eq!(
                client::build_repeat_old_program(&mut r.heap.heap(), r.h, &none, &[], n),
                Err(Error::ValueOutOfRange)
            );
        }
    }

    #[test]
    fn client_decodes_replies() {
        assert_eq!(
            client::decode_reply(&[0x30, 1, 2, 3]),
            Ok(Reply::Ok {
                truncated: false,
                data: &[1, 2, 3]
            })
        );
        assert_eq!(
            client::decode_reply(&[0x4A, 9, 9]),
            Ok(Reply::Exception {
                truncated: false,
                data: &[9, 9]
            })
        );
        assert_eq!(
            client::decode_reply(&[0x12]),
            Ok(Reply::Error(ErrorCode::INVALID_FORMAT))
        );
        assert_eq!(
            client::decode_reply(&[0x22]),
            Ok(Reply::Error(ErrorCode::OLD_PROGRAM_CHECKSUM_DOESNT_MATCH))
        );
        assert_eq!(
            client::decode_reply(&[0x42]),
            Ok(Reply::Error(ErrorCode::ENTROPY_RECOVERY_COMPLETED))
        );
        for bad in [
            &[][..],
            &[0x30, 1],
            &[0x10, 1, 2],
            &[0x12, 0],
            &[0x01],
            &[0x07],
            &[0x80],
        ] {
            assert!(client::decode_reply(bad).is_err(), "{bad:x?}");
        }
    }

    #[test]
    fn uninitialised_or_error_status_is_rejected() {
        let mut heap_mem = H::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.set_request(h, &[0x02]).unwrap();
        assert_eq!(
            Saccp::new().receive(&mut heap, h, PacketStatus::First),
            Err(Error::InvalidState)
        );
        let mut r = Rig::new();
        r.heap.heap().set_request(r.h, &[0x02]).unwrap();
        assert_eq!(
            r.c.receive(&mut r.heap.heap(), r.h, PacketStatus::ErrorMessage),
            Err(Error::InvalidState)
        );
    }

    fn fragments() -> impl Strategy<Value = Vec<(bool, Vec<u8>, u16, u16)>> {
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..20),
                0u16..40,
                0u16..40,
            ),
            0..8,
        )
    }

    proptest! {
        /// Commands built by the client give the device exactly the program the client
        /// meant, for all three forms.
        #[test]
        fn client_commands_round_trip(
            old in proptest::collection::vec(any::<u8>(), 0..40),
            frags in fragments(),
            zerr in proptest::option::of(any::<bool>()),
            sum_len in 4u8..=16,
        ) {
            let mut r = Rig::new();
            let headers = ExtraHeaders {
                zeptoerr: zerr.map(|t| ZeptoErr { truncate_most_recent: t }),
            };
            let pkt = r.build(|hp, h| client::build_new_program(hp, h, &headers, &old));
            prop_assert_eq!(r.recv(&pkt, PacketStatus::First), HandlerOutcome::Pass);
            prop_assert_eq!(r.reply(), old.clone());
            prop_assert_eq!(r.c.exec_flags().unwrap().headers, headers);
            let pkt = r.build(|hp, h| client::build_repeat_old_program(hp, h, &headers, &old, sum_len));
            prop_assert_eq!(r.recv(&pkt, PacketStatus::Intermediate), HandlerOutcome::Pass);
            prop_assert_eq!(r.reply(), old.clone());
            // Only in-range references (the device rejects others).
            let mut expect = Vec::new();
            let list: Vec<Fragment<'_>> = frags
                .iter()
                .map(|(verbatim, bytes, off, len)| {
                    let off = (*off).min(old.len() as u16);
                    let len = (*len).min(old.len() as u16 - off);
                    if *verbatim {
                        expect.extend_from_slice(bytes);
                        Fragment::Verbatim(bytes)
                    } else {
                        expect.extend_from_slice(&old[usize::from(off)..usize::from(off + len)]);
                        Fragment::Reference { offset: off, len }
                    }
                })
                .collect();
            let pkt = r.build(|hp, h| client::build_reuse_old_program(hp, h, &headers, &old, sum_len, &list));
            prop_assert_eq!(r.recv(&pkt, PacketStatus::Terminating), HandlerOutcome::Pass);
            prop_assert_eq!(r.reply(), expect.clone());
            prop_assert_eq!(r.old(), Some(expect));
        }

        /// Device replies decode to what the VM produced.
        #[test]
        fn replies_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300), exc in any::<bool>(), t in any::<bool>(), code in 0u16..=ErrorCode::MAX) {
            let mut r = Rig::new();
            r.heap.heap().set_request(r.h, &data).unwrap();
            let st = if exc { VmStatus::Exception { truncated: t } } else { VmStatus::Ok { truncated: t } };
            r.c.send(&mut r.heap.heap(), r.h, st).unwrap();
            let reply = r.reply();
            let expect = if exc {
                Reply::Exception { truncated: t, data: &data }
            } else {
                Reply::Ok { truncated: t, data: &data }
            };
            prop_assert_eq!(client::decode_reply(&reply), Ok(expect));
            r.c.send_error(&mut r.heap.heap(), r.h, ErrorCode(code)).unwrap();
            let err = r.reply();
            prop_assert_eq!(client::decode_reply(&err), Ok(Reply::Error(ErrorCode(code))));
        }

        /// Any bytes give either a program (Pass) or a decodable ERROR (ReplyDown);
        /// a rejected command leaves the kept program alone.
        #[test]
        fn arbitrary_commands(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Rig::new();
            r.recv(&[0x02, 0xAB, 0xCD], PacketStatus::First);
            match r.recv(&bytes, PacketStatus::Intermediate) {
                HandlerOutcome::Pass => {
                    let f = r.c.exec_flags().unwrap();
                    prop_assert_eq!(r.old(), Some(r.reply()));
                    if f.source == ProgramSource::New {
                        prop_assert!(bytes.ends_with(&r.reply()));
                    }
                }
                HandlerOutcome::ReplyDown => {
                    let err = r.reply();
                    prop_assert!(matches!(client::decode_reply(&err), Ok(Reply::Error(_))));
                    prop_assert_eq!(r.old(), Some(vec![0xAB, 0xCD]));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
