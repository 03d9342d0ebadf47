//! SADLP for byte links (UART, pty, a console): packet framing that survives noise.
//!
//! A frame on the wire is
//!
//! `0x00 | COBS(packet | CRC-16) | 0x00`
//!
//! * COBS (Consistent Overhead Byte Stuffing) removes every `0x00` from the encoded
//!   bytes, so `0x00` only ever delimits frames and a receiver finds the next frame
//!   boundary after any garbage;
//! * the CRC is CRC-16/IBM-SDLC (the X.25 CRC: poly 0x1021 reflected, init and
//!   xor-out 0xFFFF) of the packet, appended little-endian before encoding;
//! * the leading `0x00` ends whatever text or noise preceded the frame on the line
//!   (e.g. a kernel log line), so that noise is discarded as one bad frame instead of
//!   corrupting the packet. Empty frames (two `0x00` in a row) are idle and ignored.
//!
//! [`Decoder`] is a streaming decoder with a fixed buffer: bytes go in one at a time
//! or in chunks, complete packets come out; over-long frames, COBS errors and bad
//! CRCs are dropped and counted. It never panics. [`encode`] writes one frame.
//!
//! [`encode_in_place`] and [`decode_in_place`] do the same inside one buffer, so a
//! port whose link driver reads and writes app memory directly (e.g. Tock's console
//! allow buffers) can frame and unframe a packet inside its Zepto heap block without
//! a separate frame buffer.
//! On datagram links (UDP) one datagram is one packet and SADLP is not used.

use crate::error::Error;
use crc::{Crc, CRC_16_IBM_SDLC};

/// The frame CRC.
pub const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// Frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// CRC bytes per frame.
pub const CRC_LEN: usize = 2;

/// Largest number of wire bytes a frame carrying `packet_len` bytes takes
/// (both delimiters included).
pub const fn encoded_len(packet_len: usize) -> usize {
    cobs::max_encoding_length(packet_len + CRC_LEN) + 2
}

/// Buffer size a [`Decoder`] needs to receive packets of up to `packet_len` bytes.
pub const fn decoder_buffer_len(packet_len: usize) -> usize {
    cobs::max_encoding_length(packet_len + CRC_LEN)
}

/// Writes the frame carrying `packet` into `out`; returns its length in bytes.
/// Fails with [`Error::BufferTooSmall`] if `out` is shorter than
/// [`encoded_len`]`(packet.len())` needs, and with [`Error::ValueOutOfRange`] for an
/// empty packet.
pub fn encode(packet: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    if packet.is_empty() {
        return Err(Error::ValueOutOfRange);
    }
    let (first, body) = out.split_first_mut().ok_or(Error::BufferTooSmall)?;
    *first = DELIMITER;
    let crc = CRC16.checksum(packet).to_le_bytes();
    let mut enc = cobs::CobsEncoder::new(body);
    enc.push(packet).map_err(|_| Error::BufferTooSmall)?;
    enc.push(&crc).map_err(|_| Error::BufferTooSmall)?;
    let n = enc.finalize();
    *body.get_mut(n).ok_or(Error::BufferTooSmall)? = DELIMITER;
    Ok(n + 2)
}

/// Frames the packet in `buf[..len]` in place: on success `buf[..n]` holds the whole
/// frame (both delimiters) and `n` is returned; the bytes are the same [`encode`]
/// writes. `buf` must be at least [`encoded_len`]`(len)` long
/// ([`Error::BufferTooSmall`] otherwise, `buf` unchanged); an empty packet is
/// [`Error::ValueOutOfRange`].
pub fn encode_in_place(buf: &mut [u8], len: usize) -> Result<usize, Error> {
    if len == 0 {
        return Err(Error::ValueOutOfRange);
    }
    let total = encoded_len(len);
    if buf.len() < total || len > buf.len() {
        return Err(Error::BufferTooSmall);
    }
    let crc = CRC16
        .checksum(buf.get(..len).ok_or(Error::BufferTooSmall)?)
        .to_le_bytes();
    // Move packet | CRC to the end of the frame area. The encoder below then
    // writes at most one code byte ahead of the data it has consumed, so it never
    // overwrites bytes it has not read yet: the data starts `total - m` bytes in,
    // more than the leading delimiter plus every code byte.
    let m = len + CRC_LEN;
    let src = total - m;
    buf.copy_within(..len, src);
    buf.get_mut(src + len..total)
        .ok_or(Error::BufferTooSmall)?
        .copy_from_slice(&crc);
    let mut code_at = 1usize;
    let mut out = 2usize;
    let mut code = 1u8;
    for k in src..total {
        let b = *buf.get(k).ok_or(Error::BufferTooSmall)?;
        if b == DELIMITER {
            *buf.get_mut(code_at).ok_or(Error::BufferTooSmall)? = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            *buf.get_mut(out).ok_or(Error::BufferTooSmall)? = b;
            out += 1;
            code += 1;
            if code == 0xff && k + 1 < total {
                *buf.get_mut(code_at).ok_or(Error::BufferTooSmall)? = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    *buf.get_mut(code_at).ok_or(Error::BufferTooSmall)? = code;
    *buf.first_mut().ok_or(Error::BufferTooSmall)? = DELIMITER;
    *buf.get_mut(out).ok_or(Error::BufferTooSmall)? = DELIMITER;
    Ok(out + 1)
}

/// Unframes, in place, one frame body: the bytes between two delimiters, without
/// them. On success the packet is `frame[..n]` and `n` is returned. Fails with
/// [`Error::Malformed`] for bytes that are not COBS or too short for a CRC and one
/// packet byte, and with [`Error::AuthenticationFailed`] for a CRC mismatch; the
/// buffer's contents are then unspecified.
pub fn decode_in_place(frame: &mut [u8]) -> Result<usize, Error> {
    let n = match cobs::decode_in_place(frame) {
        Ok(n) if n > CRC_LEN => n,
        _ => return Err(Error::Malformed),
    };
    let (packet, crc) = frame
        .get(..n)
        .ok_or(Error::Malformed)?
        .split_at(n - CRC_LEN);
    let stored = u16::from_le_bytes([
        *crc.first().ok_or(Error::Malformed)?,
        *crc.get(1).ok_or(Error::Malformed)?,
    ]);
    if CRC16.checksum(packet) != stored {
        return Err(Error::AuthenticationFailed);
    }
    Ok(n - CRC_LEN)
}

/// What a [`Decoder`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames delivered.
    pub frames: u32,
    /// Frames longer than the buffer.
    pub oversize: u32,
    /// Frames that were not valid COBS or too short for a CRC and one byte.
    pub malformed: u32,
    /// Frames whose CRC did not match.
    pub bad_crc: u32,
}

/// Where a [`Decoder`] counts what it delivered and dropped: [`DecoderStats`], or
/// `()` for a port that reads no counters (16 bytes less).
pub trait FrameCounters {
    /// A frame was delivered.
    fn frame(&mut self);
    /// A frame was longer than the buffer.
    fn oversize(&mut self);
    /// A frame was not valid COBS or too short for a CRC and one byte.
    fn malformed(&mut self);
    /// A frame's CRC did not match.
    fn bad_crc(&mut self);
}

impl FrameCounters for DecoderStats {
    fn frame(&mut self) {
        crate::count(&mut self.frames);
    }
    fn oversize(&mut self) {
        crate::count(&mut self.oversize);
    }
    fn malformed(&mut self) {
        crate::count(&mut self.malformed);
    }
    fn bad_crc(&mut self) {
        crate::count(&mut self.bad_crc);
    }
}

impl FrameCounters for () {
    fn frame(&mut self) {}
    fn oversize(&mut self) {}
    fn malformed(&mut self) {}
    fn bad_crc(&mut self) {}
}

/// Streaming SADLP decoder with an `N`-byte buffer for the encoded frame
/// (use [`decoder_buffer_len`] of the largest packet), counting frames in `S`.
#[derive(Debug, Clone)]
pub struct Decoder<const N: usize, S = DecoderStats> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
    stats: S,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self::with_counters(DecoderStats {
            frames: 0,
            oversize: 0,
            malformed: 0,
            bad_crc: 0,
        })
    }
}

impl<const N: usize> Decoder<N, ()> {
    /// An empty decoder that counts nothing.
    pub const fn uncounted() -> Self {
        Self::with_counters(())
    }
}

impl<const N: usize, S> Decoder<N, S> {
    /// An empty decoder counting in `stats`.
    pub const fn with_counters(stats: S) -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
            stats,
        }
    }

    /// Counters of delivered and dropped frames.
    pub const fn stats(&self) -> &S {
        &self.stats
    }
}

impl<const N: usize, S: FrameCounters> Decoder<N, S> {
    /// Forgets a partly received frame (e.g. after a link reset).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Feeds one byte; returns the packet when this byte completes a valid frame.
    /// The packet borrows the decoder's buffer until the next call.
    #[inline(never)]
    pub fn push(&mut self, byte: u8) -> Option<&[u8]> {
        if byte != DELIMITER {
            match self.buf.get_mut(self.len) {
                Some(slot) if !self.overflow => {
                    *slot = byte;
                    self.len += 1;
                }
                _ => self.overflow = true,
            }
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overflow) {
            self.stats.oversize();
            return None;
        }
        if len == 0 {
            return None;
        }
        match decode_in_place(self.buf.get_mut(..len)?) {
            Ok(n) => {
                self.stats.frame();
                self.buf.get(..n)
            }
            Err(Error::AuthenticationFailed) => {
                self.stats.bad_crc();
                None
            }
            Err(_) => {
                self.stats.malformed();
                None
            }
        }
    }

    /// Feeds bytes from `input` until a frame completes or the input ends. Returns
    /// how many bytes were consumed and the packet, if one completed; call again
    /// with the rest of the input.
    pub fn feed<'a>(&'a mut self, input: &[u8]) -> (usize, Option<&'a [u8]>) {
        for (i, b) in input.iter().enumerate() {
            if *b == DELIMITER {
                // Only a delimiter can complete a frame: decide outside the borrow.
                let done = self.push_delimiter_len();
                if let Some(n) = done {
                    return (i + 1, self.buf.get(..n));
                }
            } else {
                let _ = self.push(*b);
            }
        }
        (input.len(), None)
    }

    /// Handles a delimiter; returns the packet length if a frame completed (the
    /// packet is then at the start of the buffer).
    fn push_delimiter_len(&mut self) -> Option<usize> {
        self.push(DELIMITER).map(<[u8]>::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 64;
    type D = Decoder<{ decoder_buffer_len(MAX) }>;

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; encoded_len(p.len())];
        let n = encode(p, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn decode_all(d: &mut D, mut input: &[u8]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while !input.is_empty() {
            let (used, pkt) = d.feed(input);
            if let Some(p) = pkt {
                got.push(p.to_vec());
            }
            input = &input[used..];
        }
        got
    }

    #[test]
    fn frame_is_byte_exact() {
        // CRC-16/IBM-SDLC of "123456789" is 0x906E (catalogue check value).
        assert_eq!(CRC16.checksum(b"123456789"), 0x906e);
        let crc = CRC16.checksum(&[0x11, 0x00, 0x22]).to_le_bytes();
        assert_eq!(
            frame(&[0x11, 0x00, 0x22]),
            vec![0x00, 0x02, 0x11, 0x04, 0x22, crc[0], crc[1], 0x00]
        );
        let f = frame(&[0x11, 0x00, 0x22]);
        assert!(!f[1..f.len() - 1].contains(&0));
        assert_eq!(encode(&[], &mut [0u8; 8]), Err(Error::ValueOutOfRange));
        let exact = frame(&[1, 2, 3]).len();
        assert_eq!(exact, encoded_len(3));
        let mut out = vec![0u8; exact - 1];
        assert_eq!(encode(&[1, 2, 3], &mut out), Err(Error::BufferTooSmall));
        assert_eq!(
            encode(&[1, 2, 3], &mut [0u8; 1]),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(encode(&[1, 2, 3], &mut []), Err(Error::BufferTooSmall));
    }

    #[test]
    fn decodes_byte_by_byte_and_in_chunks() {
        let p1 = [1u8, 0, 2, 0, 0, 3];
        let p2 = [0x7fu8; 40];
        let mut wire = frame(&p1);
        wire.extend(frame(&p2));
        let mut d = D::new();
        let mut got = Vec::new();
        for b in &wire {
            if let Some(p) = d.push(*b) {
                got.push(p.to_vec());
            }
        }
        assert_eq!(got, vec![p1.to_vec(), p2.to_vec()]);
        let mut d = D::new();
        assert_eq!(decode_all(&mut d, &wire), vec![p1.to_vec(), p2.to_vec()]);
        assert_eq!(d.stats().frames, 2);
        assert_eq!(
            d.stats().malformed + d.stats().bad_crc + d.stats().oversize,
            0
        );
    }

    #[test]
    fn skips_log_lines_and_garbage() {
        let p = [0x42u8, 0x00, 0x99];
        let mut wire = b"[    0.123] kernel: console ready\r\n".to_vec();
        wire.extend(frame(&p));
        wire.extend(b"INFO zepto: hello\n");
        wire.extend(frame(&p));
        wire.extend([0xff, 0x13, 0x37]);
        let mut d = D::new();
        assert_eq!(decode_all(&mut d, &wire), vec![p.to_vec(), p.to_vec()]);
        // Each stretch of text before a frame's leading delimiter is one dropped frame.
        assert_eq!(d.stats().frames, 2);
        assert_eq!(d.stats().malformed + d.stats().bad_crc, 2);
    }

    #[test]
    fn drops_corrupted_and_oversize_frames() {
        let p = [5u8; 10];
        let mut bad = frame(&p);
        bad[4] ^= 0x10;
        let mut wire = bad;
        let big = [1u8; MAX + 1];
        wire.extend(frame(&big));
        wire.extend(frame(&p));
        let mut d = D::new();
        assert_eq!(decode_all(&mut d, &wire), vec![p.to_vec()]);
        assert_eq!(d.stats().bad_crc, 1);
        assert_eq!(d.stats().oversize, 1);
        // The largest packet fits.
        let mut d = D::new();
        let max = [9u8; MAX];
        assert_eq!(decode_all(&mut d, &frame(&max)), vec![max.to_vec()]);
        // A frame too short for a CRC and a byte.
        let mut d = D::new();
        assert_eq!(decode_all(&mut d, &[0, 3, 1, 1, 0]), Vec::<Vec<u8>>::new());
        assert_eq!(d.stats().malformed, 1);
    }

    #[test]
    fn in_place_matches_streaming() {
        let p = [0x11u8, 0x00, 0x22];
        let mut buf = [0xeeu8; 16];
        buf[..3].copy_from_slice(&p);
        let n = encode_in_place(&mut buf, 3).unwrap();
        assert_eq!(&buf[..n], frame(&p).as_slice());
        let mut body = buf[1..n - 1].to_vec();
        assert_eq!(decode_in_place(&mut body), Ok(3));
        assert_eq!(&body[..3], &p);
        // Too small, empty, bad CRC, not COBS.
        let mut small = [1u8; 7];
        assert_eq!(encode_in_place(&mut small, 3), Err(Error::BufferTooSmall));
        assert_eq!(small, [1u8; 7]);
        assert_eq!(encode_in_place(&mut buf, 0), Err(Error::ValueOutOfRange));
        let mut bad = frame(&p)[1..7].to_vec();
        bad[1] ^= 1;
        assert_eq!(decode_in_place(&mut bad), Err(Error::AuthenticationFailed));
        assert_eq!(decode_in_place(&mut [5, 1, 1]), Err(Error::Malformed));
        assert_eq!(decode_in_place(&mut [3, 1, 1]), Err(Error::Malformed));
        assert_eq!(decode_in_place(&mut []), Err(Error::Malformed));
        // Runs of non-zero bytes around COBS's 254-byte block boundary.
        for len in [252usize, 253, 254, 255, 507, 508, 509] {
            let p: Vec<u8> = (0..len).map(|i| (i % 255 + 1) as u8).collect();
            let mut buf = vec![0u8; encoded_len(len)];
            buf[..len].copy_from_slice(&p);
            let n = encode_in_place(&mut buf, len).unwrap();
            assert_eq!(&buf[..n], frame(&p).as_slice(), "len {len}");
        }
    }

    proptest! {
        /// A decoder that counts nothing (the micro:bit's) delivers exactly the
        /// packets of a counting one, from frames mixed with garbage, corrupted and
        /// oversize frames, byte by byte.
        #[test]
        fn an_uncounted_decoder_delivers_what_a_counted_one_does(
            parts in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..MAX + 8), 0u8..4), 1..8)
        ) {
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for (p, how) in &parts {
                match how {
                    0 => wire.extend(p),
                    1 => {
                        let mut f = frame(p);
                        let i = f.len() / 2;
                        f[i] ^= 0x21;
                        wire.extend(f);
                    }
                    _ => {
                        wire.extend(frame(p));
                        if p.len() <= MAX {
                            sent.push(p.clone());
                        }
                    }
                }
            }
            let mut counted = D::new();
            let mut uncounted = Decoder::<{ decoder_buffer_len(MAX) }, ()>::uncounted();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for byte in &wire {
                if let Some(p) = counted.push(*byte) {
                    a.push(p.to_vec());
                }
                if let (_, Some(p)) = uncounted.feed(&[*byte]) {
                    b.push(p.to_vec());
                }
            }
            prop_assert_eq!(&a, &b);
            // Every clean frame arrives (a corrupted one may only eat garbage).
            for p in &sent {
                prop_assert!(a.contains(p));
            }
        }
    }

    proptest! {
        /// In-place framing writes exactly the bytes of [`encode`] (packets of every
        /// length up to and across COBS's 254-byte blocks) and decodes back.
        #[test]
        fn prop_in_place_round_trip(
            p in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>(), 1u8..=255], 1..600),
            spare in 0usize..4,
        ) {
            let want = frame(&p);
            let mut buf = vec![0xa5u8; encoded_len(p.len()) + spare];
            buf[..p.len()].copy_from_slice(&p);
            let n = encode_in_place(&mut buf, p.len()).unwrap();
            prop_assert_eq!(&buf[..n], want.as_slice());
            let mut body = buf[1..n - 1].to_vec();
            let k = decode_in_place(&mut body).unwrap();
            prop_assert_eq!(&body[..k], p.as_slice());
        }

        /// Arbitrary bytes never panic the in-place decoder.
        #[test]
        fn prop_decode_in_place_total(mut b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(n) = decode_in_place(&mut b) {
                prop_assert!(n + CRC_LEN <= b.len());
            }
        }

        /// Frames mixed with random garbage (that contains no frame delimiter inside
        /// a frame): every intact frame comes out, in order, and nothing else.
        #[test]
        fn prop_garbage_and_frames(
            items in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 1..=MAX).prop_map(Ok),
                    proptest::collection::vec(any::<u8>(), 0..50).prop_map(Err),
                ],
                0..20),
            chunk in 1usize..40,
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for it in &items {
                match it {
                    Ok(p) => { wire.extend(frame(p)); expected.push(p.clone()); }
                    Err(g) => wire.extend(g),
                }
            }
            let mut d = D::new();
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                let mut rest = c;
                while !rest.is_empty() {
                    let (used, p) = d.feed(rest);
                    if let Some(p) = p { got.push(p.to_vec()); }
                    rest = &rest[used..];
                }
            }
            // Garbage may (rarely) form a frame that passes the CRC; every intact
            // frame must be among the output, in order.
            let mut it = got.iter();
            for e in &expected {
                prop_assert!(it.any(|g| g == e), "frame lost");
            }
            prop_assert!(got.len() >= expected.len());
        }

        /// Arbitrary input never panics and never yields more than the buffer.
        #[test]
        fn prop_decoder_total(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = D::new();
            for b in bytes {
                if let Some(p) = d.push(b) {
                    prop_assert!(!p.is_empty() && p.len() <= MAX);
                }
            }
        }
    }
}
