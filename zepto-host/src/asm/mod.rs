//! Zepto VM assembler and disassembler.
//!
//! [`assemble`] accepts the one-line assembly form that
//! [`zepto_kernel::vm::insn::Instruction`] prints (`docs/vm.md`), plus comments, labels
//! as jump and CALL targets, `.bytes "hex"` and PARALLEL blocks written over several
//! lines. The full syntax is in `docs/assembly.md`. Every instruction is encoded by the
//! kernel's own [`Instruction::encode`], so the bytes are exactly what the VM decodes.
//!
//! [`disassemble`] prints a program the way the kernel does
//! ([`zepto_kernel::vm::insn::write_program`]); [`annotated`] is what `zepto disasm`
//! prints: text that assembles back to the same bytes, with byte offsets and jump
//! targets in comments; [`listing`] gives offsets, bytes and targets as data.

use std::fmt;

use zepto_kernel::vm::insn::{self, Instruction};

mod layout;
mod lex;
mod operands;
mod parse;
#[cfg(test)]
mod tests;

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

/// An [`AsmError`] at `line`.
pub(super) fn error(line: usize, message: impl Into<String>) -> AsmError {
    AsmError {
        line,
        message: message.into(),
    }
}

/// `Err` of an [`AsmError`] at `line`.
pub(super) fn err<T>(line: usize, message: impl Into<String>) -> Result<T, AsmError> {
    Err(error(line, message))
}

/// Every error of a source, in line order (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmErrors(pub Vec<AsmError>);

impl AsmErrors {
    /// The errors as `file:line: message`, one per line: how `zepto asm` and `zepto
    /// send --asm` report them.
    pub fn report(&self, file: &str) -> String {
        self.0
            .iter()
            .map(|e| format!("{file}:{}: {}", e.line, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for AsmErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AsmErrors {}

/// Assembles `source` into program bytes, or reports every error it finds: each
/// statement that does not parse, and then every label that does not resolve. Jumps
/// out of range are reported only when every statement parsed (until then the layout
/// is not the real one).
pub fn assemble(source: &str) -> Result<Vec<u8>, AsmErrors> {
    let mut errors = Vec::new();
    let pieces = lex::lex(source, &mut errors);
    let mut cursor = parse::Cursor::new(pieces);
    let stmts = parse::parse_block(&mut cursor, None, &mut errors);
    let parsed = errors.is_empty();
    let mut code = Vec::new();
    match layout::encode_block(&stmts, 0, &[], false) {
        Ok((c, found)) => {
            code = c;
            errors.extend(found.errors);
            if parsed {
                errors.extend(found.layout);
            }
        }
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        return Ok(code);
    }
    errors.sort_by_key(|e| e.line);
    errors.dedup();
    Err(AsmErrors(errors))
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

/// Widest instruction text that [`annotated`] aligns its comments after.
const COMMENT_COLUMN: usize = 32;

/// The disassembly `zepto disasm` prints: one line per instruction, its byte offset
/// (decimal, like jump deltas and CALL addresses) and the targets of its jumps in a
/// comment (`JMP -5  ; 0007 -> 0005`). The text assembles back to `code` exactly: an
/// instruction whose text would not (a half-float NaN with a payload, which the
/// assembly syntax writes only as `NaN`) is written as `.bytes "hex"`, with the
/// instruction in the comment.
pub fn annotated(code: &[u8]) -> Vec<String> {
    let lines = listing(code);
    let texts: Vec<String> = lines
        .iter()
        .map(|l| {
            if assemble(&l.text).is_ok_and(|b| b == l.bytes) {
                l.text.clone()
            } else {
                format!(".bytes \"{}\"", crate::cli::hex(&l.bytes))
            }
        })
        .collect();
    let width = texts
        .iter()
        .map(String::len)
        .filter(|n| *n <= COMMENT_COLUMN)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .zip(texts)
        .map(|(l, text)| {
            let mut s = format!("{text:<width$}  ; {:04}", l.offset);
            if !l.targets.is_empty() {
                let t: Vec<String> = l
                    .targets
                    .iter()
                    .map(|t| {
                        if *t >= 0 {
                            format!("{t:04}")
                        } else {
                            t.to_string()
                        }
                    })
                    .collect();
                s.push_str(&format!(" -> {}", t.join(", ")));
            }
            if text != l.text {
                s.push_str(&format!(" {}", l.text));
            }
            s
        })
        .collect()
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
