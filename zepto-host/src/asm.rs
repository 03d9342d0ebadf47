//! Zepto VM assembler and disassembler.
//!
//! [`assemble`] accepts the one-line assembly form that
//! [`zepto_kernel::vm::insn::Instruction`] prints (`docs/vm.md`), plus comments, labels
//! as jump and CALL targets, `.bytes "hex"` and PARALLEL blocks written over several
//! lines. The full syntax is in `docs/assembly.md`. Every instruction is encoded by the
//! kernel's own [`Instruction::encode`], so the bytes are exactly what the VM decodes.
//!
//! [`disassemble`] prints a program the way the kernel does
//! ([`zepto_kernel::vm::insn::write_program`]); [`listing`] adds byte offsets and the
//! targets of jumps.

use std::collections::HashMap;
use std::fmt;

use half::f16;
use zepto_kernel::encoding;
use zepto_kernel::vm::insn::{
    self, BinOp, Cmp, FieldType, Instruction, Operand, ReplyFlags, SwitchCases, Target, Threads,
    UnOp, MAX_EXPR_OFFSET,
};

/// An assembly error: the 1-based source line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError {
    /// 1-based line number in the source.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AsmError {}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, AsmError> {
    Err(AsmError {
        line,
        message: message.into(),
    })
}

/// Assembles `source` into program bytes.
pub fn assemble(source: &str) -> Result<Vec<u8>, AsmError> {
    let pieces = lex(source)?;
    let mut cursor = Cursor { pieces, pos: 0 };
    let stmts = parse_block(&mut cursor, None)?;
    let (code, deferred) = encode_block(&stmts, 0, &[], false)?;
    match deferred {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// Disassembles `code`, one instruction per line, exactly as the kernel prints it
/// (bytes that do not decode end the listing as `.bytes "hex"`). The text assembles
/// back to the same bytes (NaN payloads of half-floats excepted: every NaN is written
/// `NaN` and assembles to `0x7e00`).
pub fn disassemble(code: &[u8]) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = insn::write_program(&mut s, code);
    s
}

/// One line of a [`listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingLine {
    /// Byte offset of the instruction in the program.
    pub offset: usize,
    /// The instruction bytes.
    pub bytes: Vec<u8>,
    /// The instruction in assembly form (or `.bytes "hex"` for undecodable bytes).
    pub text: String,
    /// Absolute targets of the jumps this instruction can make.
    pub targets: Vec<i64>,
}

/// Decodes `code` into one [`ListingLine`] per top-level instruction.
pub fn listing(code: &[u8]) -> Vec<ListingLine> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rest) = code.get(pos..).filter(|r| !r.is_empty()) {
        match Instruction::decode(rest) {
            Ok((i, n)) => {
                let end = (pos + n) as i64;
                let targets = match i {
                    Instruction::Jmp { delta }
                    | Instruction::JmpIfReplyField { delta, .. }
                    | Instruction::JmpIfExpr { delta, .. }
                    | Instruction::JmpIfExprEx { delta, .. }
                    | Instruction::IncAndJmpIf { delta, .. }
                    | Instruction::DecAndJmpIf { delta, .. } => vec![end + i64::from(delta)],
                    Instruction::Call { addr } => vec![i64::from(addr)],
                    Instruction::Switch { cases } | Instruction::SwitchEx { cases, .. } => {
                        cases.iter().map(|(_, d)| end + i64::from(d)).collect()
                    }
                    _ => Vec::new(),
                };
                out.push(ListingLine {
                    offset: pos,
                    bytes: rest.get(..n).unwrap_or(&[]).to_vec(),
                    text: i.to_string(),
                    targets,
                });
                pos += n;
            }
            Err(_) => {
                out.push(ListingLine {
                    offset: pos,
                    bytes: rest.to_vec(),
                    text: format!(".bytes \"{}\"", crate::cli::hex(rest)),
                    targets: Vec::new(),
                });
                break;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Lexing: lines -> statements and braces.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Open(usize),
    Close(usize),
    Text(usize, String),
}

/// True if a `}` follows outside quotes.
fn close_follows(rest: &[char]) -> bool {
    let mut in_q = false;
    for c in rest {
        match c {
            '"' => in_q = !in_q,
            '}' if !in_q => return true,
            _ => {}
        }
    }
    false
}

/// Splits the source into statements and braces. `;` separates statements inside a
/// brace block opened and closed on the same line (the one-line PARALLEL form);
/// everywhere else it starts a comment.
fn lex(source: &str) -> Result<Vec<Piece>, AsmError> {
    let mut out = Vec::new();
    for (i, text) in source.lines().enumerate() {
        let line = i + 1;
        let chars: Vec<char> = text.chars().collect();
        let mut cur = String::new();
        let mut in_q = false;
        let mut depth = 0usize;
        let flush = |cur: &mut String, out: &mut Vec<Piece>| {
            let t = cur.trim();
            if !t.is_empty() {
                out.push(Piece::Text(line, t.to_string()));
            }
            cur.clear();
        };
        for (k, &c) in chars.iter().enumerate() {
            if in_q {
                cur.push(c);
                if c == '"' {
                    in_q = false;
                }
                continue;
            }
            match c {
                '"' => {
                    in_q = true;
                    cur.push(c);
                }
                '{' => {
                    flush(&mut cur, &mut out);
                    out.push(Piece::Open(line));
                    depth += 1;
                }
                '}' => {
                    flush(&mut cur, &mut out);
                    out.push(Piece::Close(line));
                    depth = depth.saturating_sub(1);
                }
                ';' => {
                    if depth > 0 && close_follows(chars.get(k + 1..).unwrap_or(&[])) {
                        flush(&mut cur, &mut out);
                    } else {
                        break;
                    }
                }
                _ => cur.push(c),
            }
        }
        if in_q {
            return err(line, "unterminated string (missing closing '\"')");
        }
        flush(&mut cur, &mut out);
    }
    Ok(out)
}

/// Splits a statement into tokens at whitespace; a quoted string is one token.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if in_q {
            cur.push(c);
            if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
            cur.push(c);
        } else if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// ---------------------------------------------------------------------------
// Parsing: statements -> instructions with unresolved targets.

/// A jump delta or CALL address: a number as written, or a label.
#[derive(Debug, Clone, PartialEq)]
enum Ref {
    Num(i64),
    Label(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Insn {
    /// Already encoded (no target to resolve).
    Fixed(Vec<u8>),
    Jmp(Ref),
    JmpIfReplyField {
        cmp: Cmp,
        reply: i16,
        fields: Vec<u8>,
        threshold: i16,
        target: Ref,
    },
    JmpIfExpr {
        cmp: Cmp,
        threshold: f16,
        target: Ref,
    },
    JmpIfExprEx {
        cmp: Cmp,
        src: Operand,
        threshold: f16,
        target: Ref,
    },
    Call(Ref),
    Switch {
        src: Option<Operand>,
        cases: Vec<(i16, Ref)>,
    },
    Counter {
        inc: bool,
        offset: i16,
        threshold: f16,
        target: Ref,
    },
    Parallel(Vec<Vec<Stmt>>),
}

#[derive(Debug, Clone, PartialEq)]
enum StmtKind {
    Label(String),
    Insn(Insn),
}

#[derive(Debug, Clone, PartialEq)]
struct Stmt {
    line: usize,
    kind: StmtKind,
}

struct Cursor {
    pieces: Vec<Piece>,
    pos: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&Piece> {
        self.pieces.get(self.pos)
    }
    fn next(&mut self) -> Option<Piece> {
        let p = self.pieces.get(self.pos).cloned();
        self.pos += 1;
        p
    }
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses statements up to the `}` closing a block opened at line `open` (or to the end
/// of the source for the top level).
fn parse_block(c: &mut Cursor, open: Option<usize>) -> Result<Vec<Stmt>, AsmError> {
    let mut stmts = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    loop {
        let Some(piece) = c.next() else {
            return match open {
                Some(l) => err(
                    l,
                    "PARALLEL block opened here is never closed ('}' missing)",
                ),
                None => Ok(stmts),
            };
        };
        let (line, text) = match piece {
            Piece::Close(l) => {
                if open.is_some() {
                    return Ok(stmts);
                }
                return err(l, "'}' without an open PARALLEL block");
            }
            Piece::Open(l) => return err(l, "'{' outside PARALLEL (write PARALLEL { ... })"),
            Piece::Text(l, t) => (l, t),
        };
        let mut rest = text.as_str();
        // Labels: `name:` alone or before an instruction.
        loop {
            let first = rest.split_whitespace().next().unwrap_or("");
            let Some(name) = first.strip_suffix(':') else {
                break;
            };
            if !is_label_name(name) {
                return err(
                    line,
                    format!("bad label name '{name}' (letters, digits, '_' and '.'; not starting with a digit)"),
                );
            }
            if let Some(prev) = labels.insert(name.to_string(), line) {
                return err(
                    line,
                    format!("label '{name}' is already defined at line {prev}"),
                );
            }
            stmts.push(Stmt {
                line,
                kind: StmtKind::Label(name.to_string()),
            });
            rest = rest
                .trim_start()
                .get(first.len()..)
                .unwrap_or("")
                .trim_start();
        }
        if rest.is_empty() {
            continue;
        }
        let toks = tokens(rest);
        let mnemonic = toks
            .first()
            .map(|t| t.to_ascii_uppercase())
            .unwrap_or_default();
        let insn = if mnemonic == "PARALLEL" {
            if toks.len() > 1 {
                return err(line, "PARALLEL takes blocks: PARALLEL { ... } { ... }");
            }
            let mut blocks = Vec::new();
            while let Some(Piece::Open(l)) = c.peek() {
                let l = *l;
                c.next();
                blocks.push(parse_block(c, Some(l))?);
            }
            if blocks.is_empty() {
                return err(
                    line,
                    "PARALLEL needs at least one block: PARALLEL { ... } { ... }",
                );
            }
            Insn::Parallel(blocks)
        } else {
            parse_insn(line, &mnemonic, toks.get(1..).unwrap_or(&[]))?
        };
        stmts.push(Stmt {
            line,
            kind: StmtKind::Insn(insn),
        });
    }
}

fn parse_int(line: usize, tok: &str, what: &str) -> Result<i64, AsmError> {
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

fn in_range(line: usize, v: i64, lo: i64, hi: i64, what: &str) -> Result<i64, AsmError> {
    if v < lo || v > hi {
        return err(line, format!("{what} {v} out of range ({lo}..={hi})"));
    }
    Ok(v)
}

/// An Encoded-Signed-Int<max=2> value.
fn sint2(line: usize, tok: &str, what: &str) -> Result<i16, AsmError> {
    let (lo, hi) = encoding::sint_range(2);
    let v = in_range(line, parse_int(line, tok, what)?, lo, hi, what)?;
    Ok(v as i16)
}

/// An Encoded-Unsigned-Int<max=`max`> value.
fn uint(line: usize, tok: &str, max: u8, what: &str) -> Result<u64, AsmError> {
    let hi = encoding::max_uint_value(max).min(i64::MAX as u64) as i64;
    Ok(in_range(line, parse_int(line, tok, what)?, 0, hi, what)? as u64)
}

fn half(line: usize, tok: &str, what: &str) -> Result<f16, AsmError> {
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

fn hex_string(line: usize, tok: &str, what: &str) -> Result<Vec<u8>, AsmError> {
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

fn field_type(line: usize, tok: &str) -> Result<FieldType, AsmError> {
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

fn fields(line: usize, tok: &str) -> Result<Vec<u8>, AsmError> {
    tok.split(',')
        .map(|t| field_type(line, t).map(FieldType::code))
        .collect()
}

fn unop(line: usize, tok: &str) -> Result<UnOp, AsmError> {
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

fn binop(line: usize, tok: &str) -> Result<BinOp, AsmError> {
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

fn stack_offset(line: usize, tok: &str, what: &str) -> Result<i16, AsmError> {
    let v = parse_int(line, tok, what)?;
    if v == 0 {
        return err(line, format!("{what} must not be 0"));
    }
    let lo = -i64::from(MAX_EXPR_OFFSET) - 1;
    Ok(in_range(line, v, lo, i64::from(MAX_EXPR_OFFSET), what)? as i16)
}

fn operand(line: usize, tok: &str) -> Result<Operand, AsmError> {
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

fn target(line: usize, tok: &str) -> Result<Target, AsmError> {
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

fn jump_ref(line: usize, tok: &str) -> Result<Ref, AsmError> {
    if is_label_name(tok) {
        return Ok(Ref::Label(tok.to_string()));
    }
    parse_int(line, tok, "jump delta or label").map(Ref::Num)
}

fn cmp_of(suffix: &str) -> Option<Cmp> {
    Some(match suffix {
        "LT" => Cmp::Lt,
        "GT" => Cmp::Gt,
        "EQ" => Cmp::Eq,
        "NE" => Cmp::Ne,
        _ => return None,
    })
}

/// Encodes an instruction with the kernel encoder.
fn kernel_encode(line: usize, i: &Instruction<'_>, cap: usize) -> Result<Vec<u8>, AsmError> {
    let mut buf = vec![0u8; cap + 32];
    match i.encode(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(buf)
        }
        Err(e) => err(line, format!("cannot encode {i}: {e:?}")),
    }
}

fn parse_insn(line: usize, m: &str, args: &[String]) -> Result<Insn, AsmError> {
    let n_args = |lo: usize, hi: usize, usage: &str| -> Result<(), AsmError> {
        if args.len() < lo || args.len() > hi {
            return err(line, format!("{m} expects: {m} {usage}"));
        }
        Ok(())
    };
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let fixed = |i: Instruction<'_>, cap: usize| kernel_encode(line, &i, cap).map(Insn::Fixed);
    match m {
        ".BYTES" => {
            n_args(1, 1, "\"hex\"")?;
            Ok(Insn::Fixed(hex_string(line, a(0), "bytes")?))
        }
        "DEVICECAPS" => {
            let mut f = Vec::new();
            for t in args {
                let v = uint(line, t, 1, "DEVICECAPS indicator")?;
                if v == 0 {
                    return err(line, "DEVICECAPS indicator 0 is the end-of-list marker");
                }
                f.push(v as u8);
            }
            fixed(Instruction::DeviceCaps { fields: &f }, f.len())
        }
        "EXEC" => {
            n_args(2, 2, "BODYPART-ID \"hex\"")?;
            let data = hex_string(line, a(1), "plugin data")?;
            if data.len() > 0xFFFF {
                return err(line, "plugin data longer than 65535 bytes");
            }
            fixed(
                Instruction::Exec {
                    bodypart: sint2(line, a(0), "BODYPART-ID")?,
                    data: &data,
                },
                data.len(),
            )
        }
        "PUSHREPLY" => {
            n_args(1, 1, "\"hex\"")?;
            let data = hex_string(line, a(0), "reply data")?;
            if data.len() > 0xFFFF {
                return err(line, "reply data longer than 65535 bytes");
            }
            fixed(Instruction::PushReply { data: &data }, data.len())
        }
        "SLEEP" => {
            n_args(1, 1, "MILLISECONDS")?;
            let ms = uint(line, a(0), 4, "milliseconds")?;
            fixed(Instruction::Sleep { ms: ms as u32 }, 0)
        }
        "TRANSMITTER" => {
            n_args(1, 1, "0|1")?;
            let on = match a(0) {
                "0" => false,
                "1" => true,
                t => return err(line, format!("bad TRANSMITTER value '{t}' (0 or 1)")),
            };
            fixed(Instruction::Transmitter { on }, 0)
        }
        "MCUSLEEP" => {
            n_args(1, 3, "SECONDS [TXON] [MAYDROP]")?;
            let secs = uint(line, a(0), 4, "seconds")? as u32;
            let (mut txon, mut maydrop) = (false, false);
            for t in args.get(1..).unwrap_or(&[]) {
                match t.to_ascii_uppercase().as_str() {
                    "TXON" => txon = true,
                    "MAYDROP" => maydrop = true,
                    _ => return err(line, format!("bad MCUSLEEP flag '{t}' (TXON, MAYDROP)")),
                }
            }
            fixed(
                Instruction::McuSleep {
                    secs,
                    transmitter_on_when_back: txon,
                    may_drop_earlier: maydrop,
                },
                0,
            )
        }
        "POPREPLIES" => {
            n_args(1, 1, "N")?;
            let n = uint(line, a(0), 2, "count")? as u16;
            fixed(Instruction::PopReplies { n }, 0)
        }
        "EXIT" => {
            if !(args.len() == 1 || args.len() == 3) {
                return err(line, "EXIT expects: EXIT NONE|ISFIRST|ISLAST [PAD n]");
            }
            let flags = match a(0).to_ascii_uppercase().as_str() {
                "NONE" => ReplyFlags::None,
                "ISFIRST" => ReplyFlags::IsFirst,
                "ISLAST" => ReplyFlags::IsLast,
                t => {
                    return err(
                        line,
                        format!("bad EXIT flags '{t}' (NONE, ISFIRST, ISLAST)"),
                    )
                }
            };
            let padding_to = if args.len() == 3 {
                if !a(1).eq_ignore_ascii_case("PAD") {
                    return err(line, format!("expected PAD, found '{}'", a(1)));
                }
                Some(uint(line, a(2), 2, "padding size")? as u16)
            } else {
                None
            };
            fixed(Instruction::Exit { flags, padding_to }, 0)
        }
        "APPENDTOREPLY" => {
            n_args(3, 3, "REPLY TYPE \"hex\"")?;
            let reply = sint2(line, a(0), "reply number")?;
            let field = field_type(line, a(1))?;
            let data = hex_string(line, a(2), "field data")?;
            match field.read(&data) {
                Ok((_, n)) if n == data.len() => {}
                _ => {
                    return err(
                        line,
                        format!(
                            "data \"{}\" is not one {} field",
                            crate::cli::hex(&data),
                            a(1)
                        ),
                    )
                }
            }
            fixed(
                Instruction::AppendToReply {
                    reply,
                    field,
                    data: &data,
                },
                data.len(),
            )
        }
        "JMP" => {
            n_args(1, 1, "DELTA|LABEL")?;
            Ok(Insn::Jmp(jump_ref(line, a(0))?))
        }
        "MOVEREPLYTOFRONT" => {
            n_args(1, 1, "REPLY")?;
            let reply = sint2(line, a(0), "reply number")?;
            fixed(Instruction::MoveReplyToFront { reply }, 0)
        }
        "PUSHEXPR_CONSTANT" => {
            n_args(1, 1, "VALUE")?;
            let value = half(line, a(0), "constant")?;
            fixed(Instruction::PushExprConstant { value }, 0)
        }
        "PUSHEXPR_REPLYFIELD" => {
            n_args(2, 2, "REPLY FIELDS")?;
            let reply = sint2(line, a(0), "reply number")?;
            let f = fields(line, a(1))?;
            fixed(
                Instruction::PushExprReplyField { reply, fields: &f },
                f.len(),
            )
        }
        "EXPRUNOP" => {
            n_args(1, 1, "OP")?;
            fixed(
                Instruction::ExprUnop {
                    op: unop(line, a(0))?,
                },
                0,
            )
        }
        "EXPRUNOP_EX" => {
            n_args(2, 2, "OP SRC")?;
            fixed(
                Instruction::ExprUnopEx {
                    op: unop(line, a(0))?,
                    src: operand(line, a(1))?,
                },
                0,
            )
        }
        "EXPRUNOP_EX2" => {
            n_args(3, 3, "OP SRC ->DST")?;
            fixed(
                Instruction::ExprUnopEx2 {
                    op: unop(line, a(0))?,
                    src: operand(line, a(1))?,
                    dst: target(line, a(2))?,
                },
                0,
            )
        }
        "EXPRBINOP" => {
            n_args(1, 1, "OP")?;
            fixed(
                Instruction::ExprBinop {
                    op: binop(line, a(0))?,
                },
                0,
            )
        }
        "EXPRBINOP_EX" => {
            n_args(3, 3, "OP A B")?;
            fixed(
                Instruction::ExprBinopEx {
                    op: binop(line, a(0))?,
                    a: operand(line, a(1))?,
                    b: operand(line, a(2))?,
                },
                0,
            )
        }
        "EXPRBINOP_EX2" => {
            n_args(4, 4, "OP A B ->DST")?;
            fixed(
                Instruction::ExprBinopEx2 {
                    op: binop(line, a(0))?,
                    a: operand(line, a(1))?,
                    b: operand(line, a(2))?,
                    dst: target(line, a(3))?,
                },
                0,
            )
        }
        "CALL" => {
            n_args(1, 1, "ADDRESS|LABEL")?;
            Ok(Insn::Call(jump_ref(line, a(0))?))
        }
        "RET" => {
            n_args(0, 0, "")?;
            fixed(Instruction::Ret, 0)
        }
        "SWITCH" | "SWITCH_EX" => {
            let (src, cases_at) = if m == "SWITCH_EX" {
                if args.is_empty() {
                    return err(line, "SWITCH_EX expects: SWITCH_EX SRC CASE=>TARGET...");
                }
                (Some(operand(line, a(0))?), 1)
            } else {
                (None, 0)
            };
            let mut cases = Vec::new();
            for t in args.get(cases_at..).unwrap_or(&[]) {
                let (c, d) = t.split_once("=>").ok_or_else(|| AsmError {
                    line,
                    message: format!("bad case '{t}' (CASE=>DELTA or CASE=>LABEL)"),
                })?;
                cases.push((sint2(line, c, "case value")?, jump_ref(line, d)?));
            }
            if cases.len() > 0xFFFF {
                return err(line, "more than 65535 cases");
            }
            Ok(Insn::Switch { src, cases })
        }
        "INCANDJMPIF" | "DECANDJMPIF" => {
            n_args(3, 3, "@SLOT THRESHOLD DELTA|LABEL")?;
            let slot = a(0).strip_prefix('@').ok_or_else(|| AsmError {
                line,
                message: format!("bad counter '{}': expected @n", a(0)),
            })?;
            Ok(Insn::Counter {
                inc: m == "INCANDJMPIF",
                offset: match sint2(line, slot, "counter offset")? {
                    0 => return err(line, "counter offset must not be 0"),
                    o => o,
                },
                threshold: half(line, a(1), "threshold")?,
                target: jump_ref(line, a(2))?,
            })
        }
        _ => {
            if let Some(c) = m.strip_prefix("JMPIFREPLYFIELD_").and_then(cmp_of) {
                n_args(4, 4, "REPLY FIELDS THRESHOLD DELTA|LABEL")?;
                return Ok(Insn::JmpIfReplyField {
                    cmp: c,
                    reply: sint2(line, a(0), "reply number")?,
                    fields: fields(line, a(1))?,
                    threshold: sint2(line, a(2), "threshold")?,
                    target: jump_ref(line, a(3))?,
                });
            }
            if let Some(c) = m.strip_prefix("JMPIFEXPR_EX_").and_then(cmp_of) {
                n_args(3, 3, "SRC THRESHOLD DELTA|LABEL")?;
                return Ok(Insn::JmpIfExprEx {
                    cmp: c,
                    src: operand(line, a(0))?,
                    threshold: half(line, a(1), "threshold")?,
                    target: jump_ref(line, a(2))?,
                });
            }
            if let Some(c) = m.strip_prefix("JMPIFEXPR_").and_then(cmp_of) {
                n_args(2, 2, "THRESHOLD DELTA|LABEL")?;
                return Ok(Insn::JmpIfExpr {
                    cmp: c,
                    threshold: half(line, a(0), "threshold")?,
                    target: jump_ref(line, a(1))?,
                });
            }
            err(line, format!("unknown mnemonic '{m}'"))
        }
    }
}

// ---------------------------------------------------------------------------
// Layout and encoding.

type Scope = HashMap<String, usize>;

/// Resolution context of one block.
struct Ctx<'s> {
    scopes: &'s [&'s Scope],
    /// Start and end offsets of the block's code (the program, or a pseudo-thread).
    start: usize,
    end: usize,
    in_thread: bool,
}

impl Ctx<'_> {
    fn lookup(&self, line: usize, name: &str) -> Result<usize, AsmError> {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name).copied())
            .map_or_else(|| err(line, format!("undefined label '{name}'")), Ok)
    }
    fn where_(&self) -> &'static str {
        if self.in_thread {
            "its pseudo-thread"
        } else {
            "the program"
        }
    }
}

/// Keeps the first layout-dependent error; reported only once the layout settles.
fn defer(deferred: &mut Option<AsmError>, e: AsmError) {
    if deferred.is_none() {
        *deferred = Some(e);
    }
}

/// A jump delta: numbers as written; a label relative to the end of the instruction
/// (`at + size`), checked to stay within the block.
fn delta(
    line: usize,
    r: &Ref,
    end_of_insn: usize,
    cx: &Ctx<'_>,
    deferred: &mut Option<AsmError>,
) -> Result<i16, AsmError> {
    let (lo, hi) = encoding::sint_range(2);
    match r {
        Ref::Num(n) => Ok(in_range(line, *n, lo, hi, "jump delta")? as i16),
        Ref::Label(name) => {
            let t = cx.lookup(line, name)?;
            if t < cx.start || t > cx.end {
                defer(
                    deferred,
                    AsmError {
                        line,
                        message: format!(
                            "jump out of range: label '{name}' (offset {t}) is outside {} \
                             (offsets {}..={})",
                            cx.where_(),
                            cx.start,
                            cx.end
                        ),
                    },
                );
            }
            let d = t as i64 - end_of_insn as i64;
            if d < lo || d > hi {
                defer(
                    deferred,
                    AsmError {
                        line,
                        message: format!("jump out of range: delta {d} to '{name}' does not fit"),
                    },
                );
                return Ok(0);
            }
            Ok(d as i16)
        }
    }
}

fn encode_stmt(
    s: &Stmt,
    at: usize,
    size: usize,
    cx: &Ctx<'_>,
    deferred: &mut Option<AsmError>,
) -> Result<Vec<u8>, AsmError> {
    let line = s.line;
    let end = at + size;
    let insn = match &s.kind {
        StmtKind::Label(_) => return Ok(Vec::new()),
        StmtKind::Insn(i) => i,
    };
    match insn {
        Insn::Fixed(b) => Ok(b.clone()),
        Insn::Jmp(r) => {
            let delta = delta(line, r, end, cx, deferred)?;
            kernel_encode(line, &Instruction::Jmp { delta }, 0)
        }
        Insn::JmpIfReplyField {
            cmp,
            reply,
            fields,
            threshold,
            target,
        } => {
            let delta = delta(line, target, end, cx, deferred)?;
            let i = Instruction::JmpIfReplyField {
                cmp: *cmp,
                reply: *reply,
                fields,
                threshold: *threshold,
                delta,
            };
            kernel_encode(line, &i, fields.len())
        }
        Insn::JmpIfExpr {
            cmp,
            threshold,
            target,
        } => {
            let delta = delta(line, target, end, cx, deferred)?;
            let i = Instruction::JmpIfExpr {
                cmp: *cmp,
                threshold: *threshold,
                delta,
            };
            kernel_encode(line, &i, 0)
        }
        Insn::JmpIfExprEx {
            cmp,
            src,
            threshold,
            target,
        } => {
            let delta = delta(line, target, end, cx, deferred)?;
            let i = Instruction::JmpIfExprEx {
                cmp: *cmp,
                src: *src,
                threshold: *threshold,
                delta,
            };
            kernel_encode(line, &i, 0)
        }
        Insn::Counter {
            inc,
            offset,
            threshold,
            target,
        } => {
            let delta = delta(line, target, end, cx, deferred)?;
            let i = if *inc {
                Instruction::IncAndJmpIf {
                    offset: *offset,
                    threshold: *threshold,
                    delta,
                }
            } else {
                Instruction::DecAndJmpIf {
                    offset: *offset,
                    threshold: *threshold,
                    delta,
                }
            };
            kernel_encode(line, &i, 0)
        }
        Insn::Call(r) => {
            let addr = match r {
                Ref::Num(n) => in_range(line, *n, 0, 0xFFFF, "CALL address")? as u16,
                Ref::Label(name) => {
                    let t = cx.lookup(line, name)?;
                    if t < cx.start || t >= cx.end {
                        defer(
                            deferred,
                            AsmError {
                                line,
                                message: format!(
                                    "CALL out of range: label '{name}' (offset {t}) is not an \
                                     instruction of {}",
                                    cx.where_()
                                ),
                            },
                        );
                    }
                    u16::try_from(t).unwrap_or(0)
                }
            };
            kernel_encode(line, &Instruction::Call { addr }, 0)
        }
        Insn::Switch { src, cases } => {
            let mut resolved = Vec::with_capacity(cases.len());
            for (c, r) in cases {
                resolved.push((*c, delta(line, r, end, cx, deferred)?));
            }
            let mut raw = vec![0u8; resolved.len() * 6];
            let n = SwitchCases::encode_into(&resolved, &mut raw)
                .or_else(|e| err(line, format!("cannot encode cases: {e:?}")))?;
            raw.truncate(n);
            let table = SwitchCases::from_raw(resolved.len() as u16, &raw)
                .or_else(|e| err(line, format!("cannot encode cases: {e:?}")))?;
            let i = match src {
                Some(src) => Instruction::SwitchEx {
                    src: *src,
                    cases: table,
                },
                None => Instruction::Switch { cases: table },
            };
            kernel_encode(line, &i, raw.len())
        }
        Insn::Parallel(blocks) => encode_parallel(line, blocks, at, cx, deferred),
    }
}

fn encode_parallel(
    line: usize,
    blocks: &[Vec<Stmt>],
    at: usize,
    cx: &Ctx<'_>,
    deferred: &mut Option<AsmError>,
) -> Result<Vec<u8>, AsmError> {
    let count = u16::try_from(blocks.len()).or_else(|_| err(line, "too many pseudo-threads"))?;
    let head = 1 + encoding::uint_len(u64::from(count));
    let mut lens = vec![0usize; blocks.len()];
    for _ in 0..64 {
        let mut o = at + head;
        let mut bodies = Vec::with_capacity(blocks.len());
        let mut inner: Option<AsmError> = None;
        for (b, len) in blocks.iter().zip(&lens) {
            let start = o + encoding::uint_len(*len as u64);
            let (code, d) = encode_block(b, start, cx.scopes, true)?;
            if let Some(e) = d {
                defer(&mut inner, e);
            }
            o = start + len;
            bodies.push(code);
        }
        let new_lens: Vec<usize> = bodies.iter().map(Vec::len).collect();
        if new_lens == lens {
            if let Some(e) = inner {
                defer(deferred, e);
            }
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let total: usize = bodies.iter().map(|b| b.len() + 3).sum();
            let mut raw = vec![0u8; total];
            let n = Threads::encode_into(&refs, &mut raw)
                .or_else(|e| err(line, format!("cannot encode PARALLEL: {e:?}")))?;
            raw.truncate(n);
            let threads = Threads::from_raw(count, &raw)
                .or_else(|e| err(line, format!("cannot encode PARALLEL: {e:?}")))?;
            return kernel_encode(line, &Instruction::Parallel { threads }, raw.len());
        }
        lens = new_lens;
    }
    err(line, "the layout of this PARALLEL does not settle")
}

/// Encodes a block placed at `base`: returns its bytes and the first layout-dependent
/// error (jump out of range), which only counts once the whole layout has settled.
fn encode_block(
    stmts: &[Stmt],
    base: usize,
    outer: &[&Scope],
    in_thread: bool,
) -> Result<(Vec<u8>, Option<AsmError>), AsmError> {
    // Sizes start at 0 and grow towards the fixed point (a delta's encoded length
    // only grows as the code between grows).
    let mut sizes = vec![0usize; stmts.len()];
    for _ in 0..64 {
        let mut offsets = Vec::with_capacity(stmts.len());
        let mut labels: Scope = HashMap::new();
        let mut o = base;
        for (s, size) in stmts.iter().zip(&sizes) {
            offsets.push(o);
            if let StmtKind::Label(name) = &s.kind {
                labels.insert(name.clone(), o);
            }
            o += size;
        }
        let mut scopes: Vec<&Scope> = outer.to_vec();
        scopes.push(&labels);
        let cx = Ctx {
            scopes: &scopes,
            start: base,
            end: o,
            in_thread,
        };
        let mut deferred = None;
        let mut code = Vec::with_capacity(o - base);
        let mut new_sizes = Vec::with_capacity(stmts.len());
        for ((s, at), size) in stmts.iter().zip(&offsets).zip(&sizes) {
            let b = encode_stmt(s, *at, *size, &cx, &mut deferred)?;
            new_sizes.push(b.len());
            code.extend_from_slice(&b);
        }
        if new_sizes == sizes {
            if base + code.len() > 0xFFFF {
                return err(
                    stmts.last().map_or(1, |s| s.line),
                    format!(
                        "program too long ({} bytes; at most 65535)",
                        base + code.len()
                    ),
                );
            }
            return Ok((code, deferred));
        }
        sizes = new_sizes;
    }
    err(
        stmts.first().map_or(1, |s| s.line),
        "the layout of the jumps does not settle",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asm(s: &str) -> Vec<u8> {
        assemble(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    fn asm_err(s: &str) -> AsmError {
        assemble(s).expect_err("should fail")
    }

    #[test]
    fn simple_program() {
        assert_eq!(
            asm("EXEC 1 \"\"\nEXEC 2 \"6869\" ; echo\n\nEXIT ISLAST\n"),
            vec![0x02, 0x02, 0x00, 0x02, 0x04, 0x02, 0x68, 0x69, 0x08, 0x02]
        );
    }

    #[test]
    fn backward_and_forward_labels() {
        // loop = 3; DECANDJMPIF (6 bytes) at 6 ends at 12 -> delta -8; JMP 3 skips EXEC 2.
        let code = asm("PUSHEXPR_CONSTANT 3\nloop: EXEC 1 \"\"\nDECANDJMPIF @1 0 loop\nJMP end\nEXEC 2 \"\"\nend:");
        let numeric =
            asm("PUSHEXPR_CONSTANT 3\nEXEC 1 \"\"\nDECANDJMPIF @1 0 -8\nJMP 3\nEXEC 2 \"\"");
        assert_eq!(code, numeric);
        assert_eq!(
            disassemble(&code),
            "PUSHEXPR_CONSTANT 3\nEXEC 1 \"\"\nDECANDJMPIF @1 0 -8\nJMP 3\nEXEC 2 \"\"\n"
        );
    }

    #[test]
    fn call_label_is_absolute() {
        let code = asm("CALL f\nEXIT ISLAST\nf: EXEC 1 \"\"\nRET");
        assert_eq!(&code[..2], &[0x20, 0x04]);
    }

    #[test]
    fn switch_labels() {
        let code =
            asm("PUSHEXPR_CONSTANT 2\nSWITCH 1=>one 2=>two\none: EXEC 1 \"\"\ntwo: EXEC 2 \"\"");
        let d = disassemble(&code);
        // SWITCH (6 bytes) at 3 ends at 9 = one; two = 12.
        assert_eq!(
            d,
            "PUSHEXPR_CONSTANT 2\nSWITCH 1=>0 2=>3\nEXEC 1 \"\"\nEXEC 2 \"\"\n"
        );
    }

    #[test]
    fn long_jumps_settle() {
        // A backward jump over more than 63 bytes needs a 2-byte delta.
        let mut s = String::from("top:\n");
        for _ in 0..40 {
            s.push_str("EXEC 1 \"\"\n");
        }
        s.push_str("JMP top\n");
        let code = asm(&s);
        let jmp = &code[120..];
        let (i, n) = Instruction::decode(jmp).unwrap();
        assert_eq!(n, jmp.len());
        assert_eq!(
            i,
            Instruction::Jmp {
                delta: -(code.len() as i16)
            }
        );
    }

    #[test]
    fn parallel_forms_agree() {
        let one = asm("PARALLEL { EXEC 1 \"\"; PUSHEXPR_CONSTANT 1 } { EXEC 2 \"\" }");
        let multi = asm(
            "PARALLEL {        ; first thread\n  EXEC 1 \"\"\n  PUSHEXPR_CONSTANT 1\n} {\n  EXEC 2 \"\" ; second\n}\n",
        );
        assert_eq!(one, multi);
        assert_eq!(
            one,
            vec![0x26, 0x02, 0x06, 0x02, 0x02, 0x00, 0x10, 0x00, 0x3c, 0x03, 0x02, 0x04, 0x00]
        );
        assert_eq!(
            disassemble(&one),
            "PARALLEL { EXEC 1 \"\"; PUSHEXPR_CONSTANT 1 } { EXEC 2 \"\" }\n"
        );
    }

    #[test]
    fn labels_local_to_threads() {
        let code = asm(
            "PARALLEL {\nagain: EXEC 1 \"\"\nJMPIFREPLYFIELD_LT -1 BYTE 1 again\n} {\nagain: EXEC 2 \"\"\n}\nEXIT ISLAST",
        );
        let d = disassemble(&code);
        assert!(
            d.starts_with("PARALLEL { EXEC 1 \"\"; JMPIFREPLYFIELD_LT -1 BYTE 1 -9 }"),
            "{d}"
        );
        // A jump from a thread to a label outside it is refused.
        let e = asm_err("out:\nPARALLEL {\nJMP out\n}");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("outside its pseudo-thread"), "{e}");
    }

    #[test]
    fn errors_have_lines() {
        let e = asm_err("EXEC 1 \"\"\nFROB 3");
        assert_eq!((e.line, e.message.as_str()), (2, "unknown mnemonic 'FROB'"));
        let e = asm_err("\n\nJMP nowhere");
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "undefined label 'nowhere'")
        );
        let e = asm_err("SLEEP x");
        assert!(e.message.contains("bad milliseconds 'x'"), "{e}");
        let e = asm_err("EXEC 99999 \"\"");
        assert!(e.message.contains("out of range"), "{e}");
        let e = asm_err("a:\na:");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("already defined at line 1"));
        let e = asm_err("PARALLEL {\nEXEC 1 \"\"");
        assert_eq!(e.line, 1);
        let e = asm_err("}");
        assert!(e.message.contains("without an open"));
        let e = asm_err("APPENDTOREPLY -1 U16 \"01\"");
        assert!(e.message.contains("not one U16 field"), "{e}");
        let e = asm_err("EXPRUNOP_EX MINUS @0");
        assert!(e.message.contains("must not be 0"), "{e}");
        let e = asm_err("PUSHEXPR_CONSTANT 70000");
        assert!(e.message.contains("half-float range"), "{e}");
        let e = asm_err("EXEC 1 \"01");
        assert!(e.message.contains("unterminated"), "{e}");
    }

    #[test]
    fn jump_out_of_program() {
        let e = asm_err("JMP after\nPARALLEL {\nafter: EXEC 1 \"\"\n}");
        assert!(e.message.contains("undefined label"), "{e}");
        let e = asm_err("CALL end\nEXEC 1 \"\"\nend:");
        assert!(e.message.contains("CALL out of range"), "{e}");
    }

    #[test]
    fn bytes_directive_and_undecodable_tail() {
        let code = asm("EXEC 1 \"\"\n.bytes \"ff00\"");
        assert_eq!(code, vec![2, 2, 0, 0xff, 0]);
        assert_eq!(disassemble(&code), "EXEC 1 \"\"\n.bytes \"ff00\"\n");
        assert_eq!(asm(&disassemble(&code)), code);
    }

    #[test]
    fn listing_offsets_and_targets() {
        let code = asm("top: EXEC 1 \"\"\nJMP top");
        let l = listing(&code);
        assert_eq!(l.len(), 2);
        assert_eq!((l[1].offset, l[1].targets.clone()), (3, vec![0]));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn roundtrip(bytes: &[u8]) -> Result<(), TestCaseError> {
            let Ok((i, n)) = Instruction::decode(bytes) else {
                return Ok(());
            };
            let text = i.to_string();
            // NaN payloads cannot be written in assembly.
            prop_assume!(!text.contains("NaN"));
            let mut buf = vec![0u8; bytes.len() + 16];
            let k = i
                .encode(&mut buf)
                .expect("kernel re-encodes what it decoded");
            prop_assert_eq!(&buf[..k], &bytes[..n]);
            let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(&back[..], &bytes[..n], "{}", text);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            /// decode -> Display -> assemble gives the kernel's bytes, for every opcode.
            #[test]
            fn display_assembles_back(op in 1u8..=0x26, tail in proptest::collection::vec(any::<u8>(), 0..24)) {
                let mut bytes = vec![op];
                bytes.extend(tail);
                roundtrip(&bytes)?;
            }

            /// PARALLEL bodies made of real instructions (and trailing garbage).
            #[test]
            fn parallel_bodies(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..4), ops in proptest::collection::vec(1u8..=0x26, 4)) {
                let mut refs = Vec::new();
                let mut owned = Vec::new();
                for (b, op) in bodies.iter().zip(ops) {
                    let mut v = vec![op];
                    v.extend(b);
                    owned.push(v);
                }
                for v in &owned { refs.push(v.as_slice()); }
                let mut raw = vec![0u8; 200];
                let n = Threads::encode_into(&refs, &mut raw).unwrap();
                let t = Threads::from_raw(refs.len() as u16, &raw[..n]).unwrap();
                let mut buf = vec![0u8; 256];
                let k = Instruction::Parallel { threads: t }.encode(&mut buf).unwrap();
                roundtrip(&buf[..k])?;
            }

            /// Whole programs: disassemble -> assemble is the identity.
            #[test]
            fn programs(code in proptest::collection::vec(any::<u8>(), 0..64)) {
                let text = disassemble(&code);
                prop_assume!(!text.contains("NaN"));
                let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
                prop_assert_eq!(back, code);
            }

            /// The assembler never panics on arbitrary text.
            #[test]
            fn no_panic(s in "[ -~\n]{0,80}") {
                let _ = assemble(&s);
            }
        }
    }
}
