//! Wire encodings of the SmartAnthill protocol stack
//! (`protocols/smartanthill-protocol-stack.rst`, "Data Types").
//!
//! * [Encoded-Unsigned-Int<max=N>](encode_uint) and
//!   [Encoded-Signed-Int<max=N>](encode_sint) in the *bijective* variant: every extra
//!   byte adds one before the shift, so each value has exactly one encoding
//!   (`127 -> 7f`, `128 -> 80 00`, `16512 -> 80 80 00`); see `docs/decisions.md`.
//! * SmartAnthill Half-Float: IEEE 754 binary16 stored as two little-endian bytes.
//! * Little-endian fixed fields ("SmartAnthill Endianness") and bitfield helpers.
//!
//! Every decoder works on a byte slice and returns the value together with the number
//! of bytes consumed; malformed input is an [`Error`], never a panic.

use crate::error::Error;
use half::f16;

/// Largest supported `max=` parameter.
pub const MAX_MAX: u8 = 8;

/// Longest possible encoding, in bytes (for `max=8`).
pub const MAX_ENCODED_LEN: usize = 10;

/// Maximum number of bytes an Encoded-*-Int<max=`max`> may occupy on the wire
/// (the table "max= / maximum Encoded-Unsigned-Int bytes" of the spec).
///
/// Returns `None` for a `max` outside `1..=8`.
pub const fn max_encoded_len(max: u8) -> Option<usize> {
    match max {
        1..=7 => Some(max as usize + 1),
        8 => Some(MAX_ENCODED_LEN),
        _ => None,
    }
}

/// Largest value an Encoded-Unsigned-Int<max=`max`> may carry: `2^(8*max) - 1`.
pub const fn max_uint_value(max: u8) -> u64 {
    if max >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * max as u32)) - 1
    }
}

/// Number of bytes the bijective encoding of `value` takes (1..=10).
pub const fn uint_len(value: u64) -> usize {
    let mut v = value;
    let mut n = 1;
    while v >= 0x80 {
        v = (v >> 7) - 1;
        n += 1;
    }
    n
}

/// Writes `value` as Encoded-Unsigned-Int<max=`max`> into `out`.
///
/// Returns the number of bytes written. Fails with [`Error::ValueOutOfRange`] if the
/// value does not fit `max`, [`Error::InvalidEncoding`] for a bad `max`, and
/// [`Error::BufferTooSmall`] if `out` is too short.
pub fn encode_uint(value: u64, max: u8, out: &mut [u8]) -> Result<usize, Error> {
    if max_encoded_len(max).is_none() {
        return Err(Error::InvalidEncoding);
    }
    if value > max_uint_value(max) {
        return Err(Error::ValueOutOfRange);
    }
    let mut v = value;
    let mut i = 0;
    loop {
        let slot = out.get_mut(i).ok_or(Error::BufferTooSmall)?;
        if v < 0x80 {
            *slot = v as u8;
            return Ok(i + 1);
        }
        *slot = 0x80 | (v & 0x7f) as u8;
        // Bijective step: remove the one that the next byte implicitly adds.
        v = (v >> 7) - 1;
        i += 1;
    }
}

/// [`encode_uint`] for `max` in `1..=4`, in 32-bit arithmetic: the same bytes, length
/// and errors (a `max` outside `1..=4` is [`Error::InvalidEncoding`]).
pub fn encode_uint32(value: u32, max: u8, out: &mut [u8]) -> Result<usize, Error> {
    if !matches!(max, 1..=4) {
        return Err(Error::InvalidEncoding);
    }
    if value > u32::MAX >> (32 - 8 * u32::from(max)) {
        return Err(Error::ValueOutOfRange);
    }
    let mut v = value;
    let mut i = 0;
    loop {
        let slot = out.get_mut(i).ok_or(Error::BufferTooSmall)?;
        if v < 0x80 {
            *slot = v as u8;
            return Ok(i + 1);
        }
        *slot = 0x80 | (v & 0x7f) as u8;
        v = (v >> 7) - 1;
        i += 1;
    }
}

/// [`uint_to_array`] for `max` in `1..=4` ([`encode_uint32`] into a 5-byte buffer).
pub fn uint32_to_array(value: u32, max: u8) -> Result<([u8; 5], usize), Error> {
    let mut buf = [0u8; 5];
    let n = encode_uint32(value, max, &mut buf)?;
    Ok((buf, n))
}

/// Reads an Encoded-Unsigned-Int<max=`max`> from the start of `input`.
///
/// Returns `(value, bytes consumed)`. Errors: [`Error::UnexpectedEnd`] if `input` ends
/// inside the number, [`Error::InvalidEncoding`] if the last allowed byte has its high
/// bit set (or `max` is not in `1..=8`), [`Error::ValueOutOfRange`] if the value
/// exceeds `2^(8*max) - 1`.
pub fn decode_uint(input: &[u8], max: u8) -> Result<(u64, usize), Error> {
    let limit = max_encoded_len(max).ok_or(Error::InvalidEncoding)?;
    let mut value: u64 = 0;
    for i in 0..limit {
        let b = *input.get(i).ok_or(Error::UnexpectedEnd)?;
        let shift = 7 * i as u32;
        let digit = u64::from(b & 0x7f) + u64::from(i > 0);
        let term = digit
            .checked_shl(shift)
            .filter(|t| t >> shift == digit)
            .ok_or(Error::ValueOutOfRange)?;
        value = value.checked_add(term).ok_or(Error::ValueOutOfRange)?;
        if b & 0x80 == 0 {
            if value > max_uint_value(max) {
                return Err(Error::ValueOutOfRange);
            }
            return Ok((value, i + 1));
        }
    }
    Err(Error::InvalidEncoding)
}

/// [`decode_uint`] for `max` in `1..=4`, in 32-bit arithmetic: the same value, length
/// and errors (a `max` outside `1..=4` is [`Error::InvalidEncoding`]).
pub fn decode_uint32(input: &[u8], max: u8) -> Result<(u32, usize), Error> {
    if !matches!(max, 1..=4) {
        return Err(Error::InvalidEncoding);
    }
    // The end first, then the value from its last byte back, seven bits at a time.
    let mut n = 0;
    loop {
        let b = *input.get(n).ok_or(Error::UnexpectedEnd)?;
        n += 1;
        if b & 0x80 == 0 {
            break;
        }
        if n > usize::from(max) {
            return Err(Error::InvalidEncoding);
        }
    }
    let mut value: u32 = 0;
    let mut i = n;
    while i > 0 {
        i -= 1;
        let b = input.get(i).copied().unwrap_or(0);
        // Each byte after the first adds one (the bijective step).
        let digit = u32::from(b & 0x7f) + u32::from(i > 0);
        value = value
            .checked_mul(0x80)
            .and_then(|v| v.checked_add(digit))
            .ok_or(Error::ValueOutOfRange)?;
    }
    if value > u32::MAX >> (32 - 8 * u32::from(max)) {
        return Err(Error::ValueOutOfRange);
    }
    Ok((value, n))
}

/// [`decode_sint`] for `max` in `1..=2`, in 32-bit arithmetic (the same value, length
/// and errors; a `max` outside `1..=2` is [`Error::InvalidEncoding`]).
pub fn decode_sint32(input: &[u8], max: u8) -> Result<(i32, usize), Error> {
    if max > 2 {
        return Err(Error::InvalidEncoding);
    }
    let (u, n) = decode_uint32(input, max)?;
    Ok((((u >> 1) as i32) ^ -((u & 1) as i32), n))
}

/// Zig-zag maps a signed value onto an unsigned one (`0, -1, 1, -2 -> 0, 1, 2, 3`).
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub const fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Smallest and largest value an Encoded-Signed-Int<max=`max`> may carry.
pub const fn sint_range(max: u8) -> (i64, i64) {
    if max >= 8 {
        (i64::MIN, i64::MAX)
    } else {
        let half = 1i64 << (8 * max as u32 - 1);
        (-half, half - 1)
    }
}

/// Writes `value` as Encoded-Signed-Int<max=`max`> (zig-zag, then unsigned).
pub fn encode_sint(value: i64, max: u8, out: &mut [u8]) -> Result<usize, Error> {
    let (lo, hi) = sint_range(max);
    if value < lo || value > hi {
        return Err(Error::ValueOutOfRange);
    }
    encode_uint(zigzag(value), max, out)
}

/// Reads an Encoded-Signed-Int<max=`max`>; see [`decode_uint`] for the errors.
pub fn decode_sint(input: &[u8], max: u8) -> Result<(i64, usize), Error> {
    let (u, n) = decode_uint(input, max)?;
    Ok((unzigzag(u), n))
}

/// Encodes `value` into a fresh fixed buffer; returns the buffer and the used length.
pub fn uint_to_array(value: u64, max: u8) -> Result<([u8; MAX_ENCODED_LEN], usize), Error> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let n = encode_uint(value, max, &mut buf)?;
    Ok((buf, n))
}

/// Decodes a SmartAnthill Half-Float (2 bytes, little-endian IEEE binary16).
pub fn decode_half(input: &[u8]) -> Result<f16, Error> {
    Ok(f16::from_bits(read_u16_le(input)?))
}

/// Encodes a SmartAnthill Half-Float.
pub fn encode_half(value: f16) -> [u8; 2] {
    value.to_bits().to_le_bytes()
}

/// Reads a little-endian `u16` from the start of `input`.
pub fn read_u16_le(input: &[u8]) -> Result<u16, Error> {
    match input {
        [a, b, ..] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(Error::UnexpectedEnd),
    }
}

/// Reads a little-endian `u32` from the start of `input`.
pub fn read_u32_le(input: &[u8]) -> Result<u32, Error> {
    match input {
        [a, b, c, d, ..] => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => Err(Error::UnexpectedEnd),
    }
}

/// Reads an unsigned little-endian integer of `input.len()` (at most 8) bytes.
pub fn read_uint_le(input: &[u8]) -> Result<u64, Error> {
    if input.len() > 8 {
        return Err(Error::ValueOutOfRange);
    }
    Ok(input
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Writes the low `out.len()` (at most 8) bytes of `value`, little-endian.
pub fn write_uint_le(value: u64, out: &mut [u8]) {
    for (i, slot) in out.iter_mut().enumerate().take(8) {
        *slot = (value >> (8 * i)) as u8;
    }
}

/// Extracts bits `lo..=hi` of a bitfield substrate (bit 0 is the least significant).
///
/// Bits beyond 63 read as zero, so this never panics.
pub const fn bits(substrate: u64, lo: u32, hi: u32) -> u64 {
    if lo > hi || lo > 63 {
        return 0;
    }
    let width = hi - lo + 1;
    let v = substrate >> lo;
    if width >= 64 {
        v
    } else {
        v & ((1u64 << width) - 1)
    }
}

/// Returns bit `n` of a bitfield substrate.
pub const fn bit(substrate: u64, n: u32) -> bool {
    bits(substrate, n, n) != 0
}

/// Returns `substrate` with bits `lo..=hi` replaced by the low bits of `field`.
pub const fn set_bits(substrate: u64, lo: u32, hi: u32, field: u64) -> u64 {
    if lo > hi || lo > 63 {
        return substrate;
    }
    let width = hi - lo + 1;
    let mask = if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    (substrate & !(mask << lo)) | ((field & mask) << lo)
}

/// Calls `f` with every input of up to `max_len` bytes whose bytes are chosen from
/// the boundary values of the encodings (0, 1, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff).
#[cfg(test)]
pub(crate) fn boundary_inputs(max_len: usize, mut f: impl FnMut(&[u8])) {
    const B: [u8; 8] = [0x00, 0x01, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff];
    let mut input = [0u8; 8];
    for len in 0..=max_len.min(input.len()) {
        for k in 0..8usize.pow(len as u32) {
            let mut x = k;
            for b in input.iter_mut().take(len) {
                *b = B[x % 8];
                x /= 8;
            }
            f(&input[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64, max: u8) -> ([u8; MAX_ENCODED_LEN], usize) {
        uint_to_array(v, max).expect("value fits")
    }

    #[test]
    fn spec_vectors() {
        let cases: &[(u64, u8, &[u8])] = &[
            (0, 1, &[0x00]),
            (127, 1, &[0x7f]),
            (128, 1, &[0x80, 0x00]),
            (656, 2, &[0x90, 0x04]),
            (16511, 2, &[0xff, 0x7f]),
            (16512, 3, &[0x80, 0x80, 0x00]),
            (
                0x8000_0000_0002,
                6,
                &[0x82, 0xff, 0xfe, 0xfe, 0xfe, 0xfe, 0x1e],
            ),
        ];
        for (v, max, bytes) in cases {
            let (buf, n) = enc(*v, *max);
            assert_eq!(&buf[..n], *bytes, "encode {v}");
            assert_eq!(
                decode_uint(bytes, *max),
                Ok((*v, bytes.len())),
                "decode {v}"
            );
            assert_eq!(uint_len(*v), bytes.len());
        }
    }

    #[test]
    fn table_boundaries() {
        // The first value needing n bytes is the sum of 128^k for k in 1..n.
        let mut first = 0u64;
        for n in 1..=9usize {
            assert_eq!(uint_len(first), n, "first of {n}");
            if first > 0 {
                assert_eq!(uint_len(first - 1), n - 1);
            }
            first += 1u64 << (7 * n);
        }
        assert_eq!(uint_len(u64::MAX), 10);
    }

    #[test]
    fn rejects_too_long_and_high_bit_on_last() {
        // max=1 allows 2 bytes; the second must have its high bit clear.
        assert_eq!(
            decode_uint(&[0x80, 0x80, 0x00], 1),
            Err(Error::InvalidEncoding)
        );
        assert_eq!(decode_uint(&[0xff, 0xff], 1), Err(Error::InvalidEncoding));
        // 2 bytes decode but exceed 255 for max=1.
        assert_eq!(decode_uint(&[0x80, 0x01], 1), Err(Error::ValueOutOfRange));
        assert_eq!(decode_uint(&[0xff, 0x00], 1), Ok((255, 2)));
        assert_eq!(decode_uint(&[0x80, 0x01], 1).ok(), None);
        assert_eq!(decode_uint(&[0x80], 2), Err(Error::UnexpectedEnd));
        assert_eq!(decode_uint(&[], 2), Err(Error::UnexpectedEnd));
        assert_eq!(decode_uint(&[0], 0), Err(Error::InvalidEncoding));
        assert_eq!(decode_uint(&[0], 9), Err(Error::InvalidEncoding));
        // Ten bytes whose value overflows u64.
        assert_eq!(
            decode_uint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                8
            ),
            Err(Error::ValueOutOfRange)
        );
        assert_eq!(
            encode_uint(256, 1, &mut [0; 4]),
            Err(Error::ValueOutOfRange)
        );
        assert_eq!(encode_uint(128, 1, &mut [0; 1]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn u64_max_round_trip() {
        let (buf, n) = enc(u64::MAX, 8);
        assert_eq!(n, 10);
        assert_eq!(decode_uint(&buf[..n], 8), Ok((u64::MAX, 10)));
    }

    #[test]
    fn signed_vectors() {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        assert_eq!(encode_sint(-1, 1, &mut buf), Ok(1));
        assert_eq!(buf[0], 0x01);
        assert_eq!(encode_sint(1, 1, &mut buf), Ok(1));
        assert_eq!(buf[0], 0x02);
        assert_eq!(encode_sint(-65, 1, &mut buf), Ok(2));
        assert_eq!(&buf[..2], &[0x81, 0x00]);
        assert_eq!(decode_sint(&[0x81, 0x00], 1), Ok((-65, 2)));
        assert_eq!(encode_sint(128, 1, &mut buf), Err(Error::ValueOutOfRange));
        assert_eq!(encode_sint(-128, 1, &mut buf), Ok(2));
        assert_eq!(decode_sint(&buf[..2], 1), Ok((-128, 2)));
    }

    #[test]
    fn half_float_layout() {
        // 1.0 = sign 0, exponent 15 (bits 10..14), fraction 0 -> 0x3c00 little-endian.
        assert_eq!(encode_half(f16::from_f32(1.0)), [0x00, 0x3c]);
        assert_eq!(encode_half(f16::from_f32(-2.0)), [0x00, 0xc0]);
        assert_eq!(decode_half(&[0x00, 0x3c]), Ok(f16::from_f32(1.0)));
        assert_eq!(decode_half(&[0x00]), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn bitfields() {
        assert_eq!(bits(0b1011_0100, 2, 4), 0b101);
        assert!(bit(0b100, 2));
        assert_eq!(bits(u64::MAX, 0, 63), u64::MAX);
        assert_eq!(bits(1, 64, 70), 0);
        assert_eq!(set_bits(0, 2, 4, 0b111_111), 0b11100);
        assert_eq!(read_uint_le(&[1, 2, 3]), Ok(0x030201));
        let mut out = [0u8; 3];
        write_uint_le(0x030201, &mut out);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(read_u32_le(&[1, 0, 0]), Err(Error::UnexpectedEnd));
    }

    /// The 32-bit decoders give what the 64-bit ones give for every short input
    /// whose bytes are chosen from the boundary values of the encoding.
    #[test]
    fn decode_32_matches_64_on_boundaries() {
        boundary_inputs(6, |input| {
            for max in 0..=9u8 {
                let want = if (1..=4).contains(&max) {
                    decode_uint(input, max).map(|(v, n)| (v as u32, n))
                } else {
                    Err(Error::InvalidEncoding)
                };
                assert_eq!(decode_uint32(input, max), want, "{input:02x?} max {max}");
                let want = if max <= 2 {
                    decode_sint(input, max).map(|(v, n)| (v as i32, n))
                } else {
                    Err(Error::InvalidEncoding)
                };
                assert_eq!(decode_sint32(input, max), want, "{input:02x?} max {max}");
            }
        });
    }

    /// Every value up to 2^16 + 1 and the values around 2^24 and 2^32 (the ends of
    /// max=3 and max=4), for every `max` in 1..=4: the 32-bit encoder writes the
    /// 64-bit one's bytes (or fails as it does), and both decoders read them back
    /// alike, also as signed values.
    #[test]
    fn encode_32_matches_64_on_every_short_value() {
        let ends = [1u32 << 24, u32::MAX].into_iter().flat_map(|e| e - 2..=e);
        for v in (0..=0x1_0001).chain(ends) {
            for max in 1..=4u8 {
                let (mut a, mut b) = ([0u8; 6], [0u8; 6]);
                let got = encode_uint32(v, max, &mut b);
                assert_eq!(got, encode_uint(u64::from(v), max, &mut a), "{v} max {max}");
                assert_eq!(a, b, "{v} max {max}");
                let Ok(n) = got else { continue };
                assert_eq!(decode_uint32(&b, max), Ok((v, n)), "{v} max {max}");
                if max <= 2 {
                    let want = decode_sint(&b, max).map(|(s, n)| (s as i32, n));
                    assert_eq!(decode_sint32(&b, max), want, "{v} max {max}");
                }
            }
        }
    }

    proptest! {
        /// The 32-bit encoder writes what the 64-bit one writes, with the same
        /// errors, for any value, `max` and room.
        #[test]
        fn encode_32_matches_64(v: u32, small in 0u32..0x20000, max in 0u8..=9, room in 0usize..7) {
            for v in [v, small] {
                let (mut a, mut b) = ([0u8; 6], [0u8; 6]);
                let want = if (1..=4).contains(&max) {
                    encode_uint(u64::from(v), max, &mut a[..room])
                } else {
                    Err(Error::InvalidEncoding)
                };
                prop_assert_eq!(encode_uint32(v, max, &mut b[..room]), want);
                if (1..=4).contains(&max) {
                    prop_assert_eq!(a, b);
                }
                let want = if (1..=4).contains(&max) {
                    uint_to_array(u64::from(v), max).map(|(a, n)| (a[..n].to_vec(), n))
                } else {
                    Err(Error::InvalidEncoding)
                };
                prop_assert_eq!(uint32_to_array(v, max).map(|(a, n)| (a[..n].to_vec(), n)), want);
            }
        }

        /// The 32-bit decoders agree with the 64-bit ones on any input.
        #[test]
        fn decode_32_matches_64(input in proptest::collection::vec(any::<u8>(), 0..7), max in 1u8..=4) {
            prop_assert_eq!(
                decode_uint32(&input, max),
                decode_uint(&input, max).map(|(v, n)| (v as u32, n))
            );
            if max <= 2 {
                prop_assert_eq!(
                    decode_sint32(&input, max),
                    decode_sint(&input, max).map(|(v, n)| (v as i32, n))
                );
            }
        }

        #[test]
        fn uint_round_trip(v: u64, max in 1u8..=8) {
            let mut buf = [0u8; MAX_ENCODED_LEN];
            match encode_uint(v, max, &mut buf) {
                Ok(n) => {
                    prop_assert!(n <= max_encoded_len(max).unwrap_or(0));
                    prop_assert_eq!(n, uint_len(v));
                    prop_assert_eq!(decode_uint(&buf[..n], max), Ok((v, n)));
                }
                Err(e) => {
                    prop_assert_eq!(e, Error::ValueOutOfRange);
                    prop_assert!(v > max_uint_value(max));
                }
            }
        }

        #[test]
        fn sint_round_trip(v: i64, max in 1u8..=8) {
            let mut buf = [0u8; MAX_ENCODED_LEN];
            let (lo, hi) = sint_range(max);
            match encode_sint(v, max, &mut buf) {
                Ok(n) => prop_assert_eq!(decode_sint(&buf[..n], max), Ok((v, n))),
                Err(_) => prop_assert!(v < lo || v > hi),
            }
        }

        #[test]
        fn decode_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..12), max in 1u8..=8) {
            // Whatever decodes must re-encode to exactly the bytes consumed.
            if let Ok((v, n)) = decode_uint(&bytes, max) {
                let (buf, m) = uint_to_array(v, max).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(&buf[..m], &bytes[..n]);
            }
        }

        #[test]
        fn half_round_trip(bits_: u16) {
            let h = f16::from_bits(bits_);
            prop_assert_eq!(decode_half(&encode_half(h)).map(f16::to_bits), Ok(bits_));
        }
    }
}
