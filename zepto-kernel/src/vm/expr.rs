//! Half-float arithmetic of the expression stack (zepto-vm.rst, Level Small), in
//! integers: no floating-point code, hardware or software, is involved.
//!
//! Every finite binary16 value is a whole multiple of 2^-24 below 2^41 of them, so
//! `+`, `-`, `+1` and `-1` add the exact values as integers and round the sum once to
//! the nearest half-float (ties to even), as IEEE binary16 arithmetic does; a result
//! beyond ±65504 becomes ±infinity. The bit and logic operations first convert their
//! operands to integers ("zero exponent"): truncation towards zero into an `i32`
//! (NaN becomes 0, infinities saturate); the result is converted back with rounding.
//! Special values follow IEEE 754 as the `f32` arithmetic of a Cortex-M does (the
//! figures before this module were computed in `f32`, rounded to `f16`): a NaN
//! operand gives that NaN, quieted and with the sign cleared (the first operand's if
//! both are NaN); `inf - inf` is the positive quiet NaN; `-0 + -0` is `-0`.

use super::insn::{BinOp, Cmp, UnOp};
use half::f16;

const SIGN: u16 = 0x8000;
const INF: u16 = 0x7c00;
const QUIET: u16 = 0x0200;

fn is_nan(b: u16) -> bool {
    b & 0x7fff > INF
}

/// The exact value of a finite half-float, in units of 2^-24.
fn fixed(b: u16) -> i64 {
    let e = (b >> 10) & 0x1f;
    let m = i64::from(b & 0x3ff);
    let mag = if e == 0 { m } else { (m | 0x400) << (e - 1) };
    if b & SIGN != 0 {
        -mag
    } else {
        mag
    }
}

/// The half-float nearest to `k` units of 2^-24 (ties to even; ±infinity beyond
/// 65504).
fn round(k: i64) -> u16 {
    let sign = if k < 0 { SIGN } else { 0 };
    let mag = k.unsigned_abs();
    // Below 2048 units the encoding is the value itself (subnormals and the first
    // binade). Above, keep 11 significant bits: shift by `s`, and the exponent field
    // is `s` more than that of the kept bits (a carry of the rounding moves into it).
    let mut s = 0u32;
    while s < 40 && mag >> s >= 2048 {
        s += 1;
    }
    let mut kept = mag >> s;
    if s > 0 {
        let rest = mag & ((1u64 << s) - 1);
        let half = 1u64 << (s - 1);
        if rest > half || (rest == half && kept & 1 == 1) {
            kept += 1;
        }
    }
    let bits = (u64::from(s) << 10) + kept;
    if bits >= u64::from(INF) {
        sign | INF
    } else {
        sign | bits as u16
    }
}

/// `a + b` in binary16.
fn add(a: u16, b: u16) -> u16 {
    let (ma, mb) = (a & 0x7fff, b & 0x7fff);
    if is_nan(a) {
        return ma | QUIET;
    }
    if is_nan(b) {
        return mb | QUIET;
    }
    if ma == INF {
        return if mb == INF && (a ^ b) & SIGN != 0 {
            INF | QUIET
        } else {
            a
        };
    }
    if mb == INF {
        return b;
    }
    if ma == 0 && mb == 0 {
        return a & b;
    }
    round(fixed(a) + fixed(b))
}

/// The integer value of a stack entry: truncated towards zero, NaN is 0, infinities
/// saturate.
pub fn to_int(v: f16) -> i32 {
    let b = v.to_bits();
    if is_nan(b) {
        return 0;
    }
    if b & 0x7fff == INF {
        return if b & SIGN != 0 { i32::MIN } else { i32::MAX };
    }
    let k = fixed(b);
    // |v| <= 65504: the truncated magnitude fits.
    let t = (k.unsigned_abs() >> 24) as i32;
    if k < 0 {
        -t
    } else {
        t
    }
}

/// The half-float nearest to the integer `i`.
fn from_int(i: i64) -> f16 {
    if i.unsigned_abs() >= 1 << 17 {
        return f16::from_bits(if i < 0 { SIGN | INF } else { INF });
    }
    f16::from_bits(round(i << 24))
}

/// The half-float nearest to the integer `i` (a reply field pushed to the stack).
pub fn from_i64(i: i64) -> f16 {
    from_int(i)
}

fn truth(b: bool) -> f16 {
    if b {
        f16::ONE
    } else {
        f16::ZERO
    }
}

/// A key that orders half-floats as IEEE comparisons do (`-0 == +0`, infinities at
/// the ends), in units of 2^-24, so an integer `i` compares with it as `i << 24`;
/// `None` for NaN.
pub fn key(v: f16) -> Option<i64> {
    let b = v.to_bits();
    if is_nan(b) {
        return None;
    }
    Some(match b {
        INF => 1 << 50,
        0xfc00 => -(1 << 50),
        _ => fixed(b),
    })
}

/// The key of the integer `i` (see [`key`]).
pub fn int_key(i: i64) -> Option<i64> {
    Some(i.clamp(-(1 << 25), 1 << 25) << 24)
}

/// Applies a comparison to two keys (IEEE semantics: only `Ne` holds for NaN).
pub fn holds(cmp: Cmp, value: Option<i64>, threshold: Option<i64>) -> bool {
    match (value, threshold) {
        (Some(v), Some(t)) => match cmp {
            Cmp::Lt => v < t,
            Cmp::Gt => v > t,
            Cmp::Eq => v == t,
            Cmp::Ne => v != t,
        },
        _ => cmp == Cmp::Ne,
    }
}

/// Applies a unary operation (`Pop` returns the operand unchanged; the caller drops it).
pub fn unop(op: UnOp, v: f16) -> f16 {
    match op {
        UnOp::Pop | UnOp::Copy => v,
        UnOp::Minus => -v,
        UnOp::BitNeg => from_int(i64::from(!to_int(v))),
        UnOp::Not => truth(to_int(v) == 0),
        UnOp::Inc => f16::from_bits(add(v.to_bits(), f16::ONE.to_bits())),
        UnOp::Dec => f16::from_bits(add(v.to_bits(), SIGN | f16::ONE.to_bits())),
    }
}

/// Applies a binary operation `a op b` (`a` is the second-topmost operand).
pub fn binop(op: BinOp, a: f16, b: f16) -> f16 {
    let (x, y) = (to_int(a), to_int(b));
    // Shift counts outside 0..32 shift everything out.
    let count = u32::try_from(y).ok().filter(|c| *c < 32);
    match op {
        BinOp::Plus => f16::from_bits(add(a.to_bits(), b.to_bits())),
        BinOp::Minus => f16::from_bits(add(a.to_bits(), b.to_bits() ^ SIGN)),
        BinOp::Shl => from_int(count.map_or(0, |c| i64::from(x.wrapping_shl(c)))),
        BinOp::Shr => from_int(i64::from(x >> count.unwrap_or(31))),
        BinOp::Ushr => from_int(count.map_or(0, |c| i64::from((x as u32) >> c))),
        BinOp::BitAnd => from_int(i64::from(x & y)),
        BinOp::BitOr => from_int(i64::from(x | y)),
        BinOp::And => truth(x != 0 && y != 0),
        BinOp::Or => truth(x != 0 || y != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(v: f32) -> f16 {
        f16::from_f32(v)
    }

    #[test]
    fn arithmetic_and_bits() {
        assert_eq!(binop(BinOp::Plus, h(1.5), h(2.25)), h(3.75));
        assert_eq!(binop(BinOp::Minus, h(1.0), h(3.0)), h(-2.0));
        assert_eq!(binop(BinOp::Shl, h(3.0), h(4.0)), h(48.0));
        assert_eq!(binop(BinOp::Shr, h(-8.0), h(1.0)), h(-4.0));
        assert_eq!(binop(BinOp::Ushr, h(8.0), h(2.0)), h(2.0));
        assert_eq!(binop(BinOp::Shl, h(1.0), h(40.0)), h(0.0));
        assert_eq!(binop(BinOp::BitAnd, h(12.7), h(10.0)), h(8.0));
        assert_eq!(binop(BinOp::BitOr, h(12.0), h(3.0)), h(15.0));
        assert_eq!(binop(BinOp::And, h(0.5), h(1.0)), h(0.0));
        assert_eq!(binop(BinOp::Or, h(0.0), h(2.0)), h(1.0));
        assert_eq!(unop(UnOp::BitNeg, h(0.0)), h(-1.0));
        assert_eq!(unop(UnOp::Not, h(0.9)), h(1.0));
        assert_eq!(unop(UnOp::Minus, h(2.0)), h(-2.0));
        // Half-float precision: 2048 + 1 rounds back to 2048 (the spec's caveat).
        assert_eq!(unop(UnOp::Inc, h(2048.0)), h(2048.0));
        assert_eq!(unop(UnOp::Dec, h(0.0)), h(-1.0));
        assert!(binop(BinOp::Plus, h(65504.0), h(65504.0)).is_infinite());
        assert_eq!(to_int(f16::NAN), 0);
    }

    #[test]
    fn special_values() {
        let inf = f16::INFINITY;
        let nan = binop(BinOp::Minus, inf, inf);
        assert_eq!(nan.to_bits(), 0x7e00);
        assert_eq!(binop(BinOp::Plus, inf, h(1.0)), inf);
        assert_eq!(binop(BinOp::Plus, h(-0.0), h(-0.0)).to_bits(), 0x8000);
        assert_eq!(binop(BinOp::Plus, h(-0.0), h(0.0)).to_bits(), 0);
        assert_eq!(binop(BinOp::Minus, h(3.0), h(3.0)).to_bits(), 0);
        // A NaN operand comes back quieted, without its sign.
        assert_eq!(
            binop(BinOp::Plus, f16::from_bits(0xfc01), h(1.0)).to_bits(),
            0x7e01
        );
        assert_eq!(to_int(inf), i32::MAX);
        assert_eq!(to_int(-inf), i32::MIN);
        assert_eq!(to_int(h(-2.75)), -2);
        assert_eq!(from_int(65519).to_bits(), h(65504.0).to_bits());
        assert!(from_int(65520).is_infinite());
        assert!(from_int(-(1 << 40)).is_infinite());
        assert!(holds(Cmp::Ne, key(f16::NAN), key(h(1.0))));
        assert!(!holds(Cmp::Eq, key(f16::NAN), key(f16::NAN)));
        assert!(holds(Cmp::Eq, key(h(-0.0)), key(h(0.0))));
        assert!(holds(Cmp::Lt, key(-inf), key(h(-65504.0))));
        assert!(holds(Cmp::Gt, key(h(2.5)), int_key(2)));
        assert!(!holds(Cmp::Lt, key(inf), int_key(i64::MAX)));
    }

    /// The result `f32` arithmetic gives for non-NaN operands (one rounding to f32,
    /// one to f16: the same as one rounding, as f32 has more than twice the bits).
    fn via_f32(a: f16, b: f16) -> f16 {
        f16::from_f32(a.to_f32() + b.to_f32())
    }

    proptest! {
        /// Integer addition and rounding agree with `f32` arithmetic for every pair
        /// of non-NaN half-floats (bit for bit, signed zeros included).
        #[test]
        fn add_matches_f32(a in any::<u16>(), b in any::<u16>()) {
            let (x, y) = (f16::from_bits(a), f16::from_bits(b));
            prop_assume!(!x.is_nan() && !y.is_nan());
            let want = via_f32(x, y);
            if want.is_nan() {
                prop_assert_eq!(add(a, b), 0x7e00);
            } else {
                prop_assert_eq!(add(a, b), want.to_bits());
            }
        }

        /// Conversions and comparisons agree with `f32` for every half-float.
        #[test]
        fn conversions_match_f32(a in any::<u16>(), i in -70000i64..70000, t in any::<i16>()) {
            let x = f16::from_bits(a);
            prop_assert_eq!(to_int(x), x.to_f32() as i32);
            prop_assert_eq!(from_int(i).to_bits(), f16::from_f32(i as f32).to_bits());
            let y = f16::from_bits(t as u16);
            for cmp in [Cmp::Lt, Cmp::Gt, Cmp::Eq, Cmp::Ne] {
                prop_assert_eq!(holds(cmp, key(x), key(y)), cmp.holds(x.to_f32(), y.to_f32()));
                prop_assert_eq!(holds(cmp, key(x), int_key(i64::from(t))), cmp.holds(x.to_f32(), f32::from(t)));
                prop_assert_eq!(holds(cmp, int_key(i), int_key(i64::from(t))), cmp.holds(i as f32, f32::from(t)));
            }
        }
    }
}
