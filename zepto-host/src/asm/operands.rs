//! Parsing of instruction operands: numbers, half-floats, hex strings, field types,
//! stack operands and jump targets.

use half::f16;
use zepto_kernel::encoding;
use zepto_kernel::vm::insn::{BinOp, Cmp, FieldType, Operand, Target, UnOp, MAX_EXPR_OFFSET};

use super::parse::{is_label_name, Ref};
use super::{err, AsmError};

pub(super) fn parse_int(line: usize, tok: &str, what: &str) -> Result<i64, AsmError> {
    let t = tok.trim_start_matches('+');
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(h) = t.strip_prefix("-0x") {
        i64::from_str_radix(h, 16).ok().map(|v| -v)
    } else {
        t.parse::<i64>().ok()
    };
    v.map_or_else(
        || err(line, format!("bad {what} '{tok}': expected an integer")),
        Ok,
    )
}

pub(super) fn in_range(line: usize, v: i64, lo: i64, hi: i64, what: &str) -> Result<i64, AsmError> {
    if v < lo || v > hi {
        return err(line, format!("{what} {v} out of range ({lo}..={hi})"));
    }
    Ok(v)
}

/// An Encoded-Signed-Int<max=2> value.
pub(super) fn sint2(line: usize, tok: &str, what: &str) -> Result<i16, AsmError> {
    let (lo, hi) = encoding::sint_range(2);
    let v = in_range(line, parse_int(line, tok, what)?, lo, hi, what)?;
    Ok(v as i16)
}

/// An Encoded-Unsigned-Int<max=`max`> value.
pub(super) fn uint(line: usize, tok: &str, max: u8, what: &str) -> Result<u64, AsmError> {
    let hi = encoding::max_uint_value(max).min(i64::MAX as u64) as i64;
    Ok(in_range(line, parse_int(line, tok, what)?, 0, hi, what)? as u64)
}

pub(super) fn half(line: usize, tok: &str, what: &str) -> Result<f16, AsmError> {
    let v: f32 = tok.parse().map_err(|_| AsmError {
        line,
        message: format!("bad {what} '{tok}': expected a number (half-float)"),
    })?;
    let h = f16::from_f32(v);
    if v.is_finite() && h.is_infinite() {
        return err(
            line,
            format!("{what} {tok} out of half-float range (-65504..=65504)"),
        );
    }
    Ok(h)
}

pub(super) fn hex_string(line: usize, tok: &str, what: &str) -> Result<Vec<u8>, AsmError> {
    let inner = tok
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| AsmError {
            line,
            message: format!("bad {what} '{tok}': expected hex bytes in quotes, e.g. \"01ff\""),
        })?;
    crate::cli::parse_hex(inner).map_err(|e| AsmError {
        line,
        message: format!("bad {what}: {}", e.message),
    })
}

pub(super) fn field_type(line: usize, tok: &str) -> Result<FieldType, AsmError> {
    Ok(match tok.to_ascii_uppercase().as_str() {
        "UINT" => FieldType::EncodedUint,
        "SINT" => FieldType::EncodedSint,
        "BYTE" => FieldType::Byte,
        "U16" => FieldType::TwoBytes,
        "HALF" => FieldType::HalfFloat,
        _ => {
            return err(
                line,
                format!("bad field type '{tok}' (UINT, SINT, BYTE, U16, HALF)"),
            )
        }
    })
}

pub(super) fn fields(line: usize, tok: &str) -> Result<Vec<u8>, AsmError> {
    tok.split(',')
        .map(|t| field_type(line, t).map(FieldType::code))
        .collect()
}

pub(super) fn unop(line: usize, tok: &str) -> Result<UnOp, AsmError> {
    (0..=6)
        .filter_map(UnOp::from_code)
        .find(|o| o.name().eq_ignore_ascii_case(tok))
        .map_or_else(
            || {
                err(
                    line,
                    format!("bad UNOP '{tok}' (POP, COPY, MINUS, BITNEG, NOT, INC, DEC)"),
                )
            },
            Ok,
        )
}

pub(super) fn binop(line: usize, tok: &str) -> Result<BinOp, AsmError> {
    (0..=8)
        .filter_map(BinOp::from_code)
        .find(|o| o.name().eq_ignore_ascii_case(tok))
        .map_or_else(
            || {
                err(
                    line,
                    format!(
                        "bad BINOP '{tok}' (PLUS, MINUS, SHL, SHR, USHR, BITAND, BITOR, AND, OR)"
                    ),
                )
            },
            Ok,
        )
}

pub(super) fn stack_offset(line: usize, tok: &str, what: &str) -> Result<i16, AsmError> {
    let v = parse_int(line, tok, what)?;
    if v == 0 {
        return err(line, format!("{what} must not be 0"));
    }
    let lo = -i64::from(MAX_EXPR_OFFSET) - 1;
    Ok(in_range(line, v, lo, i64::from(MAX_EXPR_OFFSET), what)? as i16)
}

pub(super) fn operand(line: usize, tok: &str) -> Result<Operand, AsmError> {
    if let Some(v) = tok.strip_prefix('#') {
        return Ok(Operand::Immediate(half(line, v, "immediate")?));
    }
    if let Some(o) = tok
        .strip_prefix("pop@")
        .or_else(|| tok.strip_prefix("POP@"))
    {
        return Ok(Operand::Stack {
            offset: stack_offset(line, o, "stack offset")?,
            pop: true,
        });
    }
    if let Some(o) = tok.strip_prefix('@') {
        return Ok(Operand::Stack {
            offset: stack_offset(line, o, "stack offset")?,
            pop: false,
        });
    }
    err(
        line,
        format!("bad operand '{tok}' (#value immediate, @n stack slot, pop@n slot popped)"),
    )
}

pub(super) fn target(line: usize, tok: &str) -> Result<Target, AsmError> {
    let lower = tok.to_ascii_lowercase();
    if lower == "->top" {
        return Ok(Target::Push);
    }
    if let Some(o) = lower.strip_prefix("->ins@") {
        return Ok(Target::Insert(stack_offset(line, o, "stack offset")?));
    }
    if let Some(o) = lower.strip_prefix("->@") {
        return Ok(Target::Replace(stack_offset(line, o, "stack offset")?));
    }
    err(
        line,
        format!("bad result target '{tok}' (->top, ->@n replace, ->ins@n insert)"),
    )
}

pub(super) fn jump_ref(line: usize, tok: &str) -> Result<Ref, AsmError> {
    if is_label_name(tok) {
        return Ok(Ref::Label(tok.to_string()));
    }
    parse_int(line, tok, "jump delta or label").map(Ref::Num)
}

pub(super) fn cmp_of(suffix: &str) -> Option<Cmp> {
    Some(match suffix {
        "LT" => Cmp::Lt,
        "GT" => Cmp::Gt,
        "EQ" => Cmp::Eq,
        "NE" => Cmp::Ne,
        _ => return None,
    })
}
