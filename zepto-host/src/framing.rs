//! SADLP framing for the host's byte-stream links, on top of the kernel's
//! [`zepto_kernel::sadlp`] encoder and streaming decoder.

use std::io;

use zepto_kernel::sadlp;

use crate::link::MAX_PACKET;

/// Encodes packets into SADLP frames.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framer;

impl Framer {
    /// The frame carrying `packet`.
    pub fn encode(&self, packet: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; sadlp::encoded_len(packet.len())];
        let n = sadlp::encode(packet, &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        out.truncate(n);
        Ok(out)
    }
}

/// Decodes SADLP frames from a byte stream, skipping garbage and text between them.
pub struct Deframer {
    decoder: sadlp::Decoder<{ sadlp::decoder_buffer_len(MAX_PACKET) }>,
}

impl Default for Deframer {
    fn default() -> Self {
        Self {
            decoder: sadlp::Decoder::new(),
        }
    }
}

impl Deframer {
    /// Feeds received bytes; returns the packets they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (used, packet) = self.decoder.feed(bytes);
            if let Some(p) = packet {
                out.push(p.to_vec());
            }
            bytes = bytes.get(used..).unwrap_or(&[]);
        }
        out
    }

    /// Frames dropped so far (bad CRC, malformed or over-long).
    pub fn dropped(&self) -> u32 {
        let s = self.decoder.stats();
        s.bad_crc + s.malformed + s.oversize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_frames_from_noisy_stream() {
        let f = Framer;
        let mut stream = b"kernel: hello\r\n".to_vec();
        stream.extend(f.encode(&[1, 2, 0, 3]).unwrap());
        stream.extend([0x55, 0xaa, 0x13]);
        stream.extend(f.encode(&[9; 40]).unwrap());
        let mut d = Deframer::default();
        // Byte-by-byte and in one go give the same packets.
        let mut one_by_one = Vec::new();
        for b in &stream {
            one_by_one.extend(d.push(std::slice::from_ref(b)));
        }
        assert_eq!(one_by_one, vec![vec![1, 2, 0, 3], vec![9; 40]]);
        assert_eq!(Deframer::default().push(&stream), one_by_one);
        assert!(d.dropped() >= 1);
    }
}
