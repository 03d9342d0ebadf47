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

/// Streaming SADLP decoder with an `N`-byte buffer for the encoded frame
/// (use [`decoder_buffer_len`] of the largest packet).
#[derive(Debug, Clone)]
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
    stats: DecoderStats,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
            stats: DecoderStats {
                frames: 0,
                oversize: 0,
                malformed: 0,
                bad_crc: 0,
            },
        }
    }

    /// Counters of delivered and dropped frames.
    pub const fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Forgets a partly received frame (e.g. after a link reset).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Feeds one byte; returns the packet when this byte completes a valid frame.
    /// The packet borrows the decoder's buffer until the next call.
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
            self.stats.oversize = self.stats.oversize.saturating_add(1);
            return None;
        }
        if len == 0 {
            return None;
        }
        let frame = self.buf.get_mut(..len)?;
        let n = match cobs::decode_in_place(frame) {
            Ok(n) if n > CRC_LEN => n,
            _ => {
                self.stats.malformed = self.stats.malformed.saturating_add(1);
                return None;
            }
        };
        let (packet, crc) = self.buf.get(..n)?.split_at(n - CRC_LEN);
        let stored = u16::from_le_bytes([*crc.first()?, *crc.get(1)?]);
        if CRC16.checksum(packet) != stored {
            self.stats.bad_crc = self.stats.bad_crc.saturating_add(1);
            return None;
        }
        self.stats.frames = self.stats.frames.saturating_add(1);
        Some(packet)
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

    proptest! {
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
