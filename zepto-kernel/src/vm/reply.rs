//! Reply frames and the reply buffer (zepto-vm.rst "Reply Buffer and Reply Frames"),
//! plus the decoder a client uses to read a reply buffer or a VM exception.
//!
//! A frame is `| OPTIONAL-HEADERS | FLAGS-AND-SIZE | REPLY-BODY |`. FLAGS-AND-SIZE is
//! an Encoded-Unsigned-Int<max=2> with bit 0 = 1 (last header), bit 1 = truncated,
//! bits 2.. = body size. An optional header starts with an Encoded-Unsigned-Int<max=2>
//! with bit 0 = 0, bits 1..3 = type, bits 4.. = data size.

use super::ExceptionCode;
use crate::encoding;
use crate::error::Error;
use crate::heap::{Handle, Heap};

/// Optional header type of Plugin-Exception.
pub const HEADER_PLUGIN_EXCEPTION: u8 = 0;
/// Optional header type of Plugin-Exception-Call-Trace.
pub const HEADER_CALL_TRACE: u8 = 2;

/// A plugin exception as carried by the Plugin-Exception header
/// (`| EXCEPTION-CODE | EXCEPTION-FILE-HASH | EXCEPTION-LINE |`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginException {
    /// EXCEPTION-CODE (Encoded-Unsigned-Int<max=2>).
    pub code: u16,
    /// EXCEPTION-FILE-HASH (2 bytes, little-endian).
    pub file_hash: u16,
    /// EXCEPTION-LINE (Encoded-Unsigned-Int<max=2>).
    pub line: u16,
}

/// One decoded reply frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The Plugin-Exception header, if present.
    pub exception: Option<PluginException>,
    /// The raw Plugin-Exception-Call-Trace data, if present.
    pub call_trace: Option<&'a [u8]>,
    /// The truncation flag of FLAGS-AND-SIZE.
    pub truncated: bool,
    /// REPLY-BODY.
    pub body: &'a [u8],
}

/// Layout of one frame inside a reply buffer (offsets relative to the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameSpan {
    /// First byte of the frame (its first header).
    pub start: usize,
    /// First byte of FLAGS-AND-SIZE.
    pub flags_at: usize,
    /// First byte of the body.
    pub body: usize,
    /// One past the last body byte.
    pub end: usize,
    /// Truncation flag.
    pub truncated: bool,
}

/// Parses the frame at `at` of `buf`.
#[inline(never)]
pub(crate) fn frame_span(buf: &[u8], at: usize) -> Result<FrameSpan, Error> {
    let mut pos = at;
    loop {
        let rest = buf.get(pos..).ok_or(Error::Malformed)?;
        let (v, n) = encoding::decode_uint32(rest, 2)?;
        // At most 0xFFFF (max=2).
        let v = v as usize;
        if v & 1 == 0 {
            let size = v >> 4;
            pos += n + size;
            if pos > buf.len() {
                return Err(Error::Malformed);
            }
        } else {
            let body = pos + n;
            let end = body + (v >> 2);
            if end > buf.len() {
                return Err(Error::Malformed);
            }
            return Ok(FrameSpan {
                start: at,
                flags_at: pos,
                body,
                end,
                truncated: v & 2 != 0,
            });
        }
    }
}

/// Iterator over the frames of a reply buffer; stops with an error on malformed data.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Decodes a reply buffer into frames.
pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames { buf, pos: 0 }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = decode_frame(self.buf, self.pos);
        match &r {
            Ok((_, end)) => self.pos = *end,
            Err(_) => self.pos = self.buf.len(),
        }
        Some(r.map(|(f, _)| f))
    }
}

fn decode_frame(buf: &[u8], at: usize) -> Result<(Frame<'_>, usize), Error> {
    let span = frame_span(buf, at)?;
    let mut frame = Frame {
        exception: None,
        call_trace: None,
        truncated: span.truncated,
        body: buf.get(span.body..span.end).ok_or(Error::Malformed)?,
    };
    let mut pos = at;
    while pos < span.flags_at {
        let rest = buf.get(pos..).ok_or(Error::Malformed)?;
        let (v, n) = encoding::decode_uint(rest, 2)?;
        let data = rest.get(n..n + (v >> 4) as usize).ok_or(Error::Malformed)?;
        match ((v >> 1) & 7) as u8 {
            HEADER_PLUGIN_EXCEPTION => {
                let (code, a) = encoding::decode_uint(data, 2)?;
                let hash = encoding::read_u16_le(data.get(a..).ok_or(Error::Malformed)?)?;
                let (line, _) = encoding::decode_uint(data.get(a + 2..).unwrap_or(&[]), 2)?;
                frame.exception = Some(PluginException {
                    code: code as u16,
                    file_hash: hash,
                    line: line as u16,
                });
            }
            HEADER_CALL_TRACE => frame.call_trace = Some(data),
            _ => {}
        }
        pos += n + data.len();
    }
    Ok((frame, span.end))
}

/// A VM exception as found at the start of an exception reply:
/// `| EXCEPTION-CODE | FLAGS-AND-INSTRUCTION-POSITION | EXISTING-REPLY-BUFFER-DATA |`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionReply<'a> {
    /// EXCEPTION-CODE (raw; see [`ExceptionCode::from_code`]).
    pub code: u16,
    /// Offset of the failing instruction within the program.
    pub position: u16,
    /// True if the reply buffer data that follows was truncated.
    pub truncated: bool,
    /// The reply buffer as it was when the exception happened (frames).
    pub reply_buffer: &'a [u8],
}

/// Decodes an exception reply.
pub fn decode_exception(buf: &[u8]) -> Result<ExceptionReply<'_>, Error> {
    let (code, a) = encoding::decode_uint(buf, 2)?;
    let (fp, b) = encoding::decode_uint(buf.get(a..).unwrap_or(&[]), 2)?;
    Ok(ExceptionReply {
        code: code as u16,
        position: (fp >> 1) as u16,
        truncated: fp & 1 != 0,
        reply_buffer: buf.get(a + b..).unwrap_or(&[]),
    })
}

/// Encodes an exception header into `out`; returns its length.
pub(crate) fn exception_header(
    code: ExceptionCode,
    position: u16,
    truncated: bool,
    out: &mut [u8; 6],
) -> usize {
    let mut n = encoding::encode_uint32(u32::from(code.code()), 2, out).unwrap_or(0);
    let fp = (u32::from(position) << 1) | u32::from(truncated);
    n += encoding::encode_uint32(fp, 2, out.get_mut(n..).unwrap_or(&mut [])).unwrap_or(0);
    n
}

/// Rotates `s` left by `mid` (the element at `mid` comes first) with three
/// reversals: a few dozen bytes of code where `core`'s `rotate_left` pulls in its
/// block-swap routines (about 450 B on Cortex-M0). `mid` beyond `s` does nothing.
pub(crate) fn rotate_left<T>(s: &mut [T], mid: usize) {
    if let Some((a, b)) = s.split_at_mut_checked(mid) {
        a.reverse();
        b.reverse();
        s.reverse();
    }
}

/// Inserts `data` at `at` of the reply of `h` (append, then rotate into place); `at`
/// beyond the reply is an error that leaves the reply as it was.
pub(crate) fn insert(heap: &mut Heap<'_>, h: Handle, at: usize, data: &[u8]) -> Result<(), Error> {
    if at > heap.reply_len(h)? {
        return Err(Error::ValueOutOfRange);
    }
    heap.append_reply(h, data)?;
    let tail = heap
        .reply_mut(h)?
        .get_mut(at..)
        .ok_or(Error::ValueOutOfRange)?;
    let mid = tail.len() - data.len();
    rotate_left(tail, mid);
    Ok(())
}

/// Removes `n` bytes at `at` from the reply of `h`.
pub(crate) fn remove(heap: &mut Heap<'_>, h: Handle, at: usize, n: usize) -> Result<(), Error> {
    let len = {
        let rep = heap.reply_mut(h)?;
        let tail = rep.get_mut(at..).ok_or(Error::ValueOutOfRange)?;
        if n > tail.len() {
            return Err(Error::ValueOutOfRange);
        }
        rotate_left(tail, n);
        rep.len()
    };
    heap.truncate_reply(h, len - n)
}

/// Finishes a frame whose body starts at `body_at` and runs to the end of the reply:
/// inserts the optional Plugin-Exception header and FLAGS-AND-SIZE in front of it.
pub(crate) fn close_frame(
    heap: &mut Heap<'_>,
    h: Handle,
    body_at: usize,
    truncated: bool,
    exception: Option<PluginException>,
) -> Result<(), Error> {
    let body_len = heap.reply_len(h)?.saturating_sub(body_at);
    let v = ((body_len as u32) << 2) | 1 | (u32::from(truncated) << 1);
    let mut hdr = [0u8; 20];
    let mut n = 0;
    if let Some(e) = exception {
        let mut data = [0u8; 8];
        let mut d = encoding::encode_uint32(u32::from(e.code), 2, &mut data)?;
        data.get_mut(d..d + 2)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(&e.file_hash.to_le_bytes());
        d += 2;
        d += encoding::encode_uint32(u32::from(e.line), 2, data.get_mut(d..).unwrap_or(&mut []))?;
        let hv = (HEADER_PLUGIN_EXCEPTION as u32) << 1 | (d as u32) << 4;
        n += encoding::encode_uint32(hv, 2, &mut hdr)?;
        let data = data.get(..d).ok_or(Error::BufferTooSmall)?;
        hdr.get_mut(n..n + d)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(data);
        n += d;
    }
    n += encoding::encode_uint32(v, 2, hdr.get_mut(n..).unwrap_or(&mut []))?;
    insert(heap, h, body_at, hdr.get(..n).unwrap_or(&[]))
}

/// Offset of frame `index` (0-based) in the reply of `h`.
pub(crate) fn nth_frame(heap: &Heap<'_>, h: Handle, index: usize) -> Result<FrameSpan, Error> {
    let buf = heap.reply(h)?;
    let mut pos = 0;
    for _ in 0..index {
        pos = frame_span(buf, pos)?.end;
    }
    frame_span(buf, pos)
}

/// Resolves REPLY-NUMBER against `count` frames: `n >= 0` is the n-th frame,
/// `-1` the last, `-count` the first.
pub(crate) fn resolve_reply_number(n: i16, count: u8) -> Result<usize, ExceptionCode> {
    let count = i32::from(count);
    let n = i32::from(n);
    let idx = if n >= 0 { n } else { count + n };
    if idx < 0 || idx >= count {
        return Err(ExceptionCode::InvalidReplyNumber);
    }
    Ok(idx as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::HeapMem;
    use proptest::prelude::*;

    /// Every rotation amount of every length up to 9, including 0, the length
    /// itself and one beyond it (which leaves the slice as it was).
    #[test]
    fn rotate_left_matches_core_for_every_amount() {
        for len in 0..10u8 {
            let orig: Vec<u8> = (0..len).collect();
            for mid in 0..=usize::from(len) + 1 {
                let mut got = orig.clone();
                rotate_left(&mut got, mid);
                let mut want = orig.clone();
                if mid <= want.len() {
                    want.rotate_left(mid);
                }
                assert_eq!(got, want, "len {len} mid {mid}");
            }
        }
    }

    proptest! {
        /// Insertion puts the bytes at their place and keeps the rest in order;
        /// a place beyond the reply is an error that changes nothing.
        #[test]
        fn insert_puts_bytes_in_place(
            reply in proptest::collection::vec(any::<u8>(), 0..40),
            data in proptest::collection::vec(any::<u8>(), 0..8),
            at in 0usize..48,
        ) {
            let mut heap_mem = HeapMem::<128, 2>::new();
            let mut heap = heap_mem.heap();
            let h = heap.alloc().unwrap();
            heap.append_reply(h, &reply).unwrap();
            let r = insert(&mut heap, h, at, &data);
            if at <= reply.len() {
                prop_assert_eq!(r, Ok(()));
                let mut want = reply.clone();
                want.splice(at..at, data.iter().copied());
                prop_assert_eq!(heap.reply(h).unwrap(), &want[..]);
            } else {
                prop_assert_eq!(r, Err(Error::ValueOutOfRange));
                prop_assert_eq!(heap.reply(h).unwrap(), &reply[..]);
            }
        }
    }
}
