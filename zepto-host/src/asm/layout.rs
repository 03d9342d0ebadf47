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
pub(super) fn encode_block(
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
