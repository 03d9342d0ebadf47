//! The expression stack of the Zepto VM (Level Small): half-float entries, shared by
//! the pseudo-threads of a PARALLEL as described in `docs/vm.md`.

use super::insn::{self, Operand, Target};
use super::{expr, reply, Exc, Vm};
use half::f16;

impl<const LEVEL: u8, const RS: usize, const ES: usize, const PT: usize> Vm<LEVEL, RS, ES, PT> {
    /// `(frozen, base, len)` of context `ti`'s view of the expression stack.
    pub(super) fn geometry(&self, ti: usize) -> (usize, usize, usize) {
        if ti == 0 {
            return (0, 0, usize::from(self.main.expr_len));
        }
        let frozen = usize::from(self.main.expr_len);
        let before: usize = self
            .threads
            .iter()
            .take(ti - 1)
            .map(|c| usize::from(c.expr_len))
            .sum();
        (frozen, frozen + before, usize::from(self.ctx(ti).expr_len))
    }

    pub(super) fn total_expr(&self) -> usize {
        let (frozen, _, _) = self.geometry(1);
        if self.nthreads == 0 {
            return usize::from(self.main.expr_len);
        }
        frozen
            + self
                .threads
                .iter()
                .take(usize::from(self.nthreads))
                .map(|c| usize::from(c.expr_len))
                .sum::<usize>()
    }

    /// Absolute index of EXPR-OFFSET `offset` and whether it lies in the frozen part.
    pub(super) fn resolve(&self, ti: usize, offset: i16) -> Result<(usize, bool), Exc> {
        let (frozen, base, len) = self.geometry(ti);
        let k = usize::from(offset.unsigned_abs());
        if offset > 0 {
            if k <= len {
                return Ok((base + len - k, false));
            }
            let j = k - len;
            if j <= frozen {
                return Ok((frozen - j, true));
            }
        } else if offset < 0 {
            let i = k - 1;
            if i < frozen {
                return Ok((i, true));
            }
            if i - frozen < len {
                return Ok((base + i - frozen, false));
            }
        }
        Err(Exc::ExprStackInvalidOffset)
    }

    pub(super) fn get(&self, abs: usize) -> Result<f16, Exc> {
        self.expr
            .get(abs)
            .copied()
            .ok_or(Exc::ExprStackInvalidOffset)
    }

    pub(super) fn insert_at(&mut self, ti: usize, abs: usize, v: f16) -> Result<(), Exc> {
        let total = self.total_expr();
        if total >= ES {
            return Err(Exc::ExprStackOverflow);
        }
        let slice = self
            .expr
            .get_mut(abs..=total)
            .ok_or(Exc::ExprStackInvalidOffset)?;
        reply::rotate_left(slice, slice.len() - 1);
        if let Some(s) = slice.first_mut() {
            *s = v;
        }
        let c = self.ctx_mut(ti)?;
        c.expr_len += 1;
        Ok(())
    }

    pub(super) fn remove_at(&mut self, ti: usize, abs: usize) -> Result<(), Exc> {
        let total = self.total_expr();
        let slice = self
            .expr
            .get_mut(abs..total)
            .ok_or(Exc::ExprStackInvalidOffset)?;
        reply::rotate_left(slice, 1);
        let c = self.ctx_mut(ti)?;
        c.expr_len = c.expr_len.checked_sub(1).ok_or(Exc::ExprStackUnderflow)?;
        Ok(())
    }

    pub(super) fn push(&mut self, ti: usize, v: f16) -> Result<(), Exc> {
        let (_, base, len) = self.geometry(ti);
        self.insert_at(ti, base + len, v)
    }

    pub(super) fn pop(&mut self, ti: usize) -> Result<f16, Exc> {
        let (_, base, len) = self.geometry(ti);
        if len == 0 {
            return Err(Exc::ExprStackUnderflow);
        }
        let v = self.get(base + len - 1)?;
        self.remove_at(ti, base + len - 1)?;
        Ok(v)
    }

    /// Reads an operand: its value and the slot to pop afterwards.
    pub(super) fn operand(&self, ti: usize, o: Operand) -> Result<(f16, Option<usize>), Exc> {
        match o {
            Operand::Immediate(v) => Ok((v, None)),
            Operand::Stack { offset, pop } => {
                let (abs, frozen) = self.resolve(ti, offset)?;
                if pop && frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                Ok((self.get(abs)?, pop.then_some(abs)))
            }
        }
    }

    /// The value an instruction consumes: operand `src` (its slot popped if it
    /// says so), or with `None` the popped top of the stack.
    pub(super) fn take(&mut self, ti: usize, src: Option<Operand>) -> Result<f16, Exc> {
        match src {
            Some(src) => {
                let (v, slot) = self.operand(ti, src)?;
                self.pop_slots(ti, slot, None)?;
                Ok(v)
            }
            None => self.pop(ti),
        }
    }

    /// Pops the given slots (highest first, each once).
    pub(super) fn pop_slots(
        &mut self,
        ti: usize,
        a: Option<usize>,
        b: Option<usize>,
    ) -> Result<(), Exc> {
        let (hi, lo) = match (a, b) {
            (Some(x), Some(y)) if x == y => (Some(x), None),
            (Some(x), Some(y)) => (Some(x.max(y)), Some(x.min(y))),
            (x, y) => (x.or(y), None),
        };
        for s in [hi, lo].into_iter().flatten() {
            self.remove_at(ti, s)?;
        }
        Ok(())
    }

    pub(super) fn store(&mut self, ti: usize, dst: Target, v: f16) -> Result<(), Exc> {
        match dst {
            Target::Push => self.push(ti, v),
            Target::Insert(o) => {
                let (abs, frozen) = self.resolve(ti, o)?;
                if frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                self.insert_at(ti, abs, v)
            }
            Target::Replace(o) => {
                let (abs, frozen) = self.resolve(ti, o)?;
                if frozen {
                    return Err(Exc::ExprStackFrozenViolation);
                }
                let s = self.expr.get_mut(abs).ok_or(Exc::ExprStackInvalidOffset)?;
                *s = v;
                Ok(())
            }
        }
    }

    pub(super) fn modify(
        &mut self,
        ti: usize,
        offset: i16,
        f: impl Fn(f16) -> f16,
    ) -> Result<f16, Exc> {
        let (abs, frozen) = self.resolve(ti, offset)?;
        if frozen {
            return Err(Exc::ExprStackFrozenViolation);
        }
        let s = self.expr.get_mut(abs).ok_or(Exc::ExprStackInvalidOffset)?;
        *s = f(*s);
        Ok(*s)
    }

    /// EXPRUNOP (`src` `None`: the top of the stack) and its _EX forms.
    pub(super) fn unop_ex(
        &mut self,
        ti: usize,
        op: insn::UnOp,
        src: Option<Operand>,
        dst: Target,
    ) -> Result<(), Exc> {
        if op == insn::UnOp::Pop {
            return match src {
                None => self.pop(ti).map(drop),
                Some(Operand::Immediate(_)) => Err(Exc::InvalidParameter),
                Some(Operand::Stack { offset, .. }) => {
                    let (abs, frozen) = self.resolve(ti, offset)?;
                    if frozen {
                        return Err(Exc::ExprStackFrozenViolation);
                    }
                    self.remove_at(ti, abs)
                }
            };
        }
        let v = self.take(ti, src)?;
        self.store(ti, dst, expr::unop(op, v))
    }

    /// EXPRBINOP (`ab` `None`: the two topmost values, the top one second) and its
    /// _EX forms.
    pub(super) fn binop_ex(
        &mut self,
        ti: usize,
        op: insn::BinOp,
        ab: Option<(Operand, Operand)>,
        dst: Target,
    ) -> Result<(), Exc> {
        let (x, y) = match ab {
            Some((a, b)) => {
                let (x, sa) = self.operand(ti, a)?;
                let (y, sb) = self.operand(ti, b)?;
                self.pop_slots(ti, sa, sb)?;
                (x, y)
            }
            None => {
                let y = self.pop(ti)?;
                (self.pop(ti)?, y)
            }
        };
        self.store(ti, dst, expr::binop(op, x, y))
    }
}
