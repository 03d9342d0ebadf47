//! Half-float arithmetic of the expression stack (zepto-vm.rst, Level Small).
//!
//! `+`, `-`, `+1`, `-1` and unary minus are IEEE binary16 operations (computed in
//! `f32`, rounded once to `f16`). The bit and logic operations first convert their
//! operands to integers ("zero exponent"): truncation towards zero into an `i32`
//! (NaN becomes 0, infinities saturate); the result is converted back with rounding
//! (a result beyond ±65504 becomes ±infinity).

use super::insn::{BinOp, UnOp};
use half::f16;

/// The integer value of a stack entry.
pub fn to_int(v: f16) -> i32 {
    // `as` saturates and maps NaN to 0: never panics.
    v.to_f32() as i32
}

fn from_int(i: i64) -> f16 {
    f16::from_f32(i as f32)
}

fn truth(b: bool) -> f16 {
    if b {
        f16::ONE
    } else {
        f16::ZERO
    }
}

/// Applies a unary operation (`Pop` returns the operand unchanged; the caller drops it).
pub fn unop(op: UnOp, v: f16) -> f16 {
    match op {
        UnOp::Pop | UnOp::Copy => v,
        UnOp::Minus => -v,
        UnOp::BitNeg => from_int(i64::from(!to_int(v))),
        UnOp::Not => truth(to_int(v) == 0),
        UnOp::Inc => f16::from_f32(v.to_f32() + 1.0),
        UnOp::Dec => f16::from_f32(v.to_f32() - 1.0),
    }
}

/// Applies a binary operation `a op b` (`a` is the second-topmost operand).
pub fn binop(op: BinOp, a: f16, b: f16) -> f16 {
    let (x, y) = (to_int(a), to_int(b));
    // Shift counts outside 0..32 shift everything out.
    let count = u32::try_from(y).ok().filter(|c| *c < 32);
    match op {
        BinOp::Plus => f16::from_f32(a.to_f32() + b.to_f32()),
        BinOp::Minus => f16::from_f32(a.to_f32() - b.to_f32()),
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
}
