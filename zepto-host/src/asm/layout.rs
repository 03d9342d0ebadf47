//! Layout and encoding: placing statements, resolving labels, encoding with the
//! kernel's encoder.

use std::collections::HashMap;

use zepto_kernel::encoding;
use zepto_kernel::vm::insn::{Instruction, SwitchCases, Threads};

use super::operands::in_range;
use super::parse::{kernel_encode, Insn, Ref, Stmt, StmtKind};
use super::{err, AsmError};

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

/// What encoding a block found wrong.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Errors that hold whatever the layout (undefined labels, numbers out of range).
    pub(super) errors: Vec<AsmError>,
    /// Errors of the layout (jumps and CALLs out of range): they count only when
    /// every statement parsed, since a statement that did not parse has no bytes.
    pub(super) layout: Vec<AsmError>,
}

impl Found {
    fn extend(&mut self, other: Found) {
        self.errors.extend(other.errors);
        self.layout.extend(other.layout);
    }
}

/// A jump delta: numbers as written; a label relative to the end of the instruction
/// (`at + size`), checked to stay within the block. A delta that cannot be had is
/// recorded in `found` and encoded as 0.
fn delta(line: usize, r: &Ref, end_of_insn: usize, cx: &Ctx<'_>, found: &mut Found) -> i16 {
    let (lo, hi) = encoding::sint_range(2);
    match r {
        Ref::Num(n) => match in_range(line, *n, lo, hi, "jump delta") {
            Ok(d) => d as i16,
            Err(e) => {
                found.errors.push(e);
                0
            }
        },
        Ref::Label(name) => {
            let t = match cx.lookup(line, name) {
                Ok(t) => t,
                Err(e) => {
                    found.errors.push(e);
                    return 0;
                }
            };
            if t < cx.start || t > cx.end {
                found.layout.push(AsmError {
                    line,
                    message: format!(
                        "jump out of range: label '{name}' (offset {t}) is outside {} \
                             (offsets {}..={})",
                        cx.where_(),
                        cx.start,
                        cx.end
                    ),
                });
            }
            let d = t as i64 - end_of_insn as i64;
            if d < lo || d > hi {
                found.layout.push(AsmError {
                    line,
                    message: format!("jump out of range: delta {d} to '{name}' does not fit"),
                });
                return 0;
            }
            d as i16
        }
    }
}

fn encode_stmt(
    s: &Stmt,
    at: usize,
    size: usize,
    cx: &Ctx<'_>,
    found: &mut Found,
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
            let delta = delta(line, r, end, cx, found);
            kernel_encode(line, &Instruction::Jmp { delta }, 0)
        }
        Insn::JmpIfReplyField {
            cmp,
            reply,
            fields,
            threshold,
            target,
        } => {
            let delta = delta(line, target, end, cx, found);
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
            let delta = delta(line, target, end, cx, found);
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
            let delta = delta(line, target, end, cx, found);
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
            let delta = delta(line, target, end, cx, found);
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
                    let t = match cx.lookup(line, name) {
                        Ok(t) => t,
                        Err(e) => {
                            found.errors.push(e);
                            0
                        }
                    };
                    if t < cx.start || t >= cx.end {
                        found.layout.push(AsmError {
                            line,
                            message: format!(
                                "CALL out of range: label '{name}' (offset {t}) is not an \
                                     instruction of {}",
                                cx.where_()
                            ),
                        });
                    }
                    u16::try_from(t).unwrap_or(0)
                }
            };
            kernel_encode(line, &Instruction::Call { addr }, 0)
        }
        Insn::Switch { src, cases } => {
            let mut resolved = Vec::with_capacity(cases.len());
            for (c, r) in cases {
                resolved.push((*c, delta(line, r, end, cx, found)));
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
        Insn::Parallel(blocks) => encode_parallel(line, blocks, at, cx, found),
    }
}

fn encode_parallel(
    line: usize,
    blocks: &[Vec<Stmt>],
    at: usize,
    cx: &Ctx<'_>,
    found: &mut Found,
) -> Result<Vec<u8>, AsmError> {
    let count = u16::try_from(blocks.len()).or_else(|_| err(line, "too many pseudo-threads"))?;
    let head = 1 + encoding::uint_len(u64::from(count));
    let mut lens = vec![0usize; blocks.len()];
    for _ in 0..64 {
        let mut o = at + head;
        let mut bodies = Vec::with_capacity(blocks.len());
        let mut inner = Found::default();
        for (b, len) in blocks.iter().zip(&lens) {
            let start = o + encoding::uint_len(*len as u64);
            let (code, f) = encode_block(b, start, cx.scopes, true)?;
            inner.extend(f);
            o = start + len;
            bodies.push(code);
        }
        let new_lens: Vec<usize> = bodies.iter().map(Vec::len).collect();
        if new_lens == lens {
            found.extend(inner);
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

/// Encodes a block placed at `base`: returns its bytes and what it found wrong once the
/// layout has settled (the errors of earlier layouts do not count).
pub(super) fn encode_block(
    stmts: &[Stmt],
    base: usize,
    outer: &[&Scope],
    in_thread: bool,
) -> Result<(Vec<u8>, Found), AsmError> {
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
        let mut found = Found::default();
        let mut code = Vec::with_capacity(o - base);
        let mut new_sizes = Vec::with_capacity(stmts.len());
        for ((s, at), size) in stmts.iter().zip(&offsets).zip(&sizes) {
            let b = encode_stmt(s, *at, *size, &cx, &mut found)?;
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
            return Ok((code, found));
        }
        sizes = new_sizes;
    }
    err(
        stmts.first().map_or(1, |s| s.line),
        "the layout of the jumps does not settle",
    )
}
