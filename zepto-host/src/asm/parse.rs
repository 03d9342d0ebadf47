//! Parsing: statements -> instructions with unresolved targets.

use std::collections::HashMap;

use half::f16;
use zepto_kernel::vm::insn::{Cmp, Instruction, Operand, ReplyFlags};

use super::lex::{tokens, Piece};
use super::operands::*;
use super::{err, error, AsmError};

/// A jump delta or CALL address: a number as written, or a label.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ref {
    Num(i64),
    Label(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Insn {
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
pub(super) enum StmtKind {
    Label(String),
    Insn(Insn),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stmt {
    pub(super) line: usize,
    pub(super) kind: StmtKind,
}

pub(super) struct Cursor {
    pieces: Vec<Piece>,
    pos: usize,
}

impl Cursor {
    /// A cursor at the first piece.
    pub(super) fn new(pieces: Vec<Piece>) -> Self {
        Self { pieces, pos: 0 }
    }
    fn peek(&self) -> Option<&Piece> {
        self.pieces.get(self.pos)
    }
    fn next(&mut self) -> Option<Piece> {
        let p = self.pieces.get(self.pos).cloned();
        self.pos += 1;
        p
    }
}

pub(super) fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses statements up to the `}` closing a block opened at line `open` (or to the end
/// of the source for the top level). Errors go to `errors` and parsing goes on with the
/// next statement; a statement that does not parse leaves no bytes.
pub(super) fn parse_block(
    c: &mut Cursor,
    open: Option<usize>,
    errors: &mut Vec<AsmError>,
) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    loop {
        let Some(piece) = c.next() else {
            if let Some(l) = open {
                errors.push(error(
                    l,
                    "PARALLEL block opened here is never closed ('}' missing)",
                ));
            }
            return stmts;
        };
        let (line, text) = match piece {
            Piece::Close(l) => {
                if open.is_some() {
                    return stmts;
                }
                errors.push(error(l, "'}' without an open PARALLEL block"));
                continue;
            }
            Piece::Open(l) => {
                errors.push(error(l, "'{' outside PARALLEL (write PARALLEL { ... })"));
                // Skip the block, so that its `}` is not reported too.
                parse_block(c, Some(l), &mut Vec::new());
                continue;
            }
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
                errors.push(error(
                    line,
                    format!("bad label name '{name}' (letters, digits, '_' and '.'; not starting with a digit)"),
                ));
            } else if let Some(prev) = labels.get(name) {
                errors.push(error(
                    line,
                    format!("label '{name}' is already defined at line {prev}"),
                ));
            } else {
                labels.insert(name.to_string(), line);
                stmts.push(Stmt {
                    line,
                    kind: StmtKind::Label(name.to_string()),
                });
            }
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
                errors.push(error(
                    line,
                    "PARALLEL takes blocks: PARALLEL { ... } { ... }",
                ));
            }
            let mut blocks = Vec::new();
            while let Some(Piece::Open(l)) = c.peek() {
                let l = *l;
                c.next();
                blocks.push(parse_block(c, Some(l), errors));
            }
            if blocks.is_empty() {
                errors.push(error(
                    line,
                    "PARALLEL needs at least one block: PARALLEL { ... } { ... }",
                ));
                continue;
            }
            Insn::Parallel(blocks)
        } else {
            match parse_insn(line, &mnemonic, toks.get(1..).unwrap_or(&[])) {
                Ok(i) => i,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        };
        stmts.push(Stmt {
            line,
            kind: StmtKind::Insn(insn),
        });
    }
}

/// Encodes an instruction with the kernel encoder.
pub(super) fn kernel_encode(
    line: usize,
    i: &Instruction<'_>,
    cap: usize,
) -> Result<Vec<u8>, AsmError> {
    let mut buf = vec![0u8; cap + 32];
    match i.encode(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(buf)
        }
        Err(e) => err(line, format!("cannot encode {i}: {e:?}")),
    }
}

pub(super) fn parse_insn(line: usize, m: &str, args: &[String]) -> Result<Insn, AsmError> {
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
