//! High-precision reference values of a lossc program, by ball arithmetic over `dashu-float`.
//!
//! Every value is a ball: a midpoint at P bits and a radius (kept as log2 of an absolute
//! bound). Each operation rounds its midpoint at P bits (dashu's results are correctly
//! rounded) and grows the radius by the rounding error plus the input radii times a bound
//! on the derivative, with a factor 2 of slack. A value is resolved when its radius is
//! far below one ulp of the target dtype; otherwise the evaluation is repeated at 2P bits
//! (Ziv's strategy), up to [`MAX_PRECISION`]. Comparisons and selects whose balls overlap,
//! arguments too large for the exponent range and domain edges inside a ball give
//! `Unknown` rather than a guess, so a reference is either right or absent.
//!
//! Fused ops are evaluated from their real definitions in cancellation-free forms (any form
//! is exact over the reals; the balls account for the rounding of the form used).
//! Batch ops (`batch_*`) are not supported: one row is one sample.

use dashu_float::round::mode::HalfEven;
use dashu_float::{Context, FBig};

use lossc::ir::{Dtype, Graph, Kind, NodeId, Op};
use lossc::program::Program;

type F = FBig<HalfEven, 2>;
type Fp = Result<dashu_float::round::Rounded<F>, dashu_float::FpError>;

/// Largest |x| whose exp is computed (beyond: unknown for x > 0, a zero ball for x < 0).
const EXP_LIMIT: f64 = 1e6;

/// Highest working precision tried.
pub const MAX_PRECISION: usize = 4096;

/// A ball: `Fin(mid, log2 radius)` (radius −inf: exact), or an exact infinity / NaN, or
/// undetermined at this precision.
#[derive(Clone, Debug)]
enum B {
    Fin(F, f64),
    Inf(bool),
    Nan,
    Unknown,
}

/// log2(2^a + 2^b).
fn lsum(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (1.0 + (lo - hi).exp2()).log2()
}

/// Upper bound on log2|x| (−inf for 0).
fn l2hi(x: &F) -> f64 {
    let r = x.repr();
    if r.significand().is_zero() {
        return f64::NEG_INFINITY;
    }
    (r.exponent() as f64) + (r.digits() as f64)
}

/// Lower bound on log2|x|.
fn l2lo(x: &F) -> f64 {
    l2hi(x) - 1.0
}

fn is_zero(x: &F) -> bool {
    x.repr().significand().is_zero()
}

fn is_neg(x: &F) -> bool {
    *x < F::ZERO
}

/// One evaluation at a fixed precision.
struct Eval {
    ctx: Context<HalfEven>,
    p: usize,
    /// Set when an argument was out of range for any precision (exp of 1e300, sin of 1e300).
    hopeless: std::cell::Cell<bool>,
}

impl Eval {
    fn new(p: usize) -> Eval {
        Eval { ctx: Context::new(p), p, hopeless: std::cell::Cell::new(false) }
    }

    fn out_of_range(&self) -> B {
        self.hopeless.set(true);
        B::Unknown
    }

    fn f(&self, x: f64) -> B {
        if x.is_nan() {
            return B::Nan;
        }
        if x.is_infinite() {
            return B::Inf(x < 0.0);
        }
        match F::try_from(x) {
            Ok(v) => B::Fin(self.fix(v), f64::NEG_INFINITY),
            Err(_) => B::Unknown,
        }
    }

    /// Gives a value (such as an exact special case) the working precision.
    fn fix(&self, v: F) -> F {
        if v.precision() == self.p {
            v
        } else {
            v.with_precision(self.p).value()
        }
    }

    /// A rounded result with the propagated radius `rad`.
    fn fin(&self, res: Fp, rad: f64) -> B {
        match res {
            Ok(a) => {
                let (v, exact) = a.value_with_exact();
                if v.repr().is_infinite() {
                    return B::Unknown;
                }
                let v = self.fix(v);
                let rr = if exact { rad } else { lsum(rad, l2hi(&v) - self.p as f64) };
                B::Fin(v, rr)
            }
            Err(_) => B::Unknown,
        }
    }

    fn cst(&self, x: f64) -> F {
        match self.f(x) {
            B::Fin(v, _) => v,
            _ => self.fix(F::ZERO),
        }
    }

    fn neg(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => B::Fin(-m.clone(), *r),
            B::Inf(n) => B::Inf(!n),
            other => other.clone(),
        }
    }

    fn abs(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => B::Fin(if is_neg(m) { -m.clone() } else { m.clone() }, *r),
            B::Inf(_) => B::Inf(false),
            other => other.clone(),
        }
    }

    fn add(&self, a: &B, b: &B) -> B {
        match (a, b) {
            (B::Unknown, _) | (_, B::Unknown) => B::Unknown,
            (B::Nan, _) | (_, B::Nan) => B::Nan,
            (B::Inf(x), B::Inf(y)) => {
                if x == y {
                    B::Inf(*x)
                } else {
                    B::Nan
                }
            }
            (B::Inf(x), _) | (_, B::Inf(x)) => B::Inf(*x),
            (B::Fin(x, rx), B::Fin(y, ry)) => self.fin(self.ctx.add(x.repr(), y.repr()), lsum(*rx, *ry)),
        }
    }

    fn sub(&self, a: &B, b: &B) -> B {
        self.add(a, &self.neg(b))
    }

    /// True when the ball may contain 0 (and is not exactly 0).
    fn straddles_zero(m: &F, r: f64) -> bool {
        r > f64::NEG_INFINITY && (is_zero(m) || r >= l2lo(m))
    }

    fn mul(&self, a: &B, b: &B) -> B {
        match (a, b) {
            (B::Unknown, _) | (_, B::Unknown) => B::Unknown,
            (B::Nan, _) | (_, B::Nan) => B::Nan,
            (B::Inf(x), B::Inf(y)) => B::Inf(x != y),
            (B::Inf(x), B::Fin(m, r)) | (B::Fin(m, r), B::Inf(x)) => {
                if is_zero(m) && *r == f64::NEG_INFINITY {
                    B::Nan
                } else if Self::straddles_zero(m, *r) {
                    B::Unknown
                } else {
                    B::Inf(*x != is_neg(m))
                }
            }
            (B::Fin(x, rx), B::Fin(y, ry)) => {
                let rad = lsum(lsum(l2hi(x) + ry, l2hi(y) + rx), rx + ry);
                self.fin(self.ctx.mul(x.repr(), y.repr()), rad)
            }
        }
    }

    fn div(&self, a: &B, b: &B) -> B {
        match (a, b) {
            (B::Unknown, _) | (_, B::Unknown) => B::Unknown,
            (B::Nan, _) | (_, B::Nan) => B::Nan,
            (B::Inf(_), B::Inf(_)) => B::Nan,
            (B::Fin(_, _), B::Inf(_)) => B::Fin(self.fix(F::ZERO), f64::NEG_INFINITY),
            (B::Inf(x), B::Fin(m, r)) => {
                if Self::straddles_zero(m, *r) {
                    B::Unknown
                } else {
                    B::Inf(*x != is_neg(m))
                }
            }
            (B::Fin(x, rx), B::Fin(y, ry)) => {
                if is_zero(y) && *ry == f64::NEG_INFINITY {
                    return if is_zero(x) && *rx == f64::NEG_INFINITY {
                        B::Nan
                    } else if Self::straddles_zero(x, *rx) {
                        B::Unknown
                    } else {
                        B::Inf(is_neg(x))
                    };
                }
                if *ry >= l2lo(y) - 1.0 {
                    return B::Unknown;
                }
                let q = self.ctx.div(x.repr(), y.repr());
                let lq = match &q {
                    Ok(v) => l2hi(v.value_ref()),
                    Err(_) => return B::Unknown,
                };
                let rad = lsum(*rx - l2lo(y), lq + ry - l2lo(y)) + 1.0;
                self.fin(q, rad)
            }
        }
    }

    /// Applies a smooth function given its rounded value at the midpoint and a bound on
    /// log2|f'| over the ball; the ball must be small.
    fn smooth(&self, r: f64, m: &F, res: Fp, lderiv: f64) -> B {
        if r > f64::NEG_INFINITY && r > l2lo(m).min(0.0) - 24.0 && r > -24.0 {
            return B::Unknown;
        }
        let prop = if r == f64::NEG_INFINITY { r } else { r + lderiv + 1.0 };
        // A transcendental result counts as rounded even where the library says exact
        // (exp(1e-200) rounds to 1 at P bits): only the rounding radius makes that visible.
        match self.fin(res, prop) {
            B::Fin(v, rr) => {
                let round = l2hi(&v) - self.p as f64;
                B::Fin(v, lsum(rr, round))
            }
            other => other,
        }
    }

    fn exp(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                let xm = m.to_f64().value();
                // dashu's exp runs out of memory for |x| around 1e12, and nothing finite in
                // either dtype needs exp beyond |x| = 1e6.
                if xm > EXP_LIMIT {
                    return self.out_of_range();
                }
                if xm < -EXP_LIMIT {
                    // Below 2^(x·log2 e): a zero with a vanishing radius (finite: for x near
                    // the largest float the product overflows, and a radius of −inf would
                    // claim an exact zero, making log(sigmoid(−1e308)) exactly −inf).
                    return B::Fin(self.fix(F::ZERO), (xm * std::f64::consts::LOG2_E + 1.0).max(f64::MIN));
                }
                let res = self.ctx.exp(m.repr(), None);
                let ld = match &res {
                    Ok(v) => l2hi(v.value_ref()),
                    Err(_) => return B::Unknown,
                };
                self.smooth(*r, m, res, ld)
            }
            B::Inf(true) => B::Fin(self.fix(F::ZERO), f64::NEG_INFINITY),
            B::Inf(false) => B::Inf(false),
            other => other.clone(),
        }
    }

    fn expm1(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                let xm = m.to_f64().value();
                // dashu's exp runs out of memory for |x| around 1e12, and nothing finite in
                // either dtype needs exp beyond |x| = 1e6.
                if xm > EXP_LIMIT {
                    return self.out_of_range();
                }
                if xm < -EXP_LIMIT {
                    return B::Fin(self.cst(-1.0), xm * std::f64::consts::LOG2_E + 1.0);
                }
                let ld = xm.max(0.0) * std::f64::consts::LOG2_E + 1.0;
                self.smooth(*r, m, self.ctx.exp_m1(m.repr(), None), ld)
            }
            B::Inf(true) => B::Fin(self.cst(-1.0), f64::NEG_INFINITY),
            B::Inf(false) => B::Inf(false),
            other => other.clone(),
        }
    }

    fn ln(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                if is_zero(m) && *r == f64::NEG_INFINITY {
                    return B::Inf(true);
                }
                if Self::straddles_zero(m, *r) {
                    return B::Unknown;
                }
                if is_neg(m) {
                    return B::Nan;
                }
                self.smooth(*r, m, self.ctx.ln(m.repr(), None), -l2lo(m))
            }
            B::Inf(false) => B::Inf(false),
            B::Inf(true) => B::Nan,
            other => other.clone(),
        }
    }

    fn ln1p(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                let one = B::Fin(self.cst(1.0), f64::NEG_INFINITY);
                let d = match self.add(&one, a) {
                    B::Fin(d, _) => d,
                    other => return other,
                };
                let exact_d = self.ctx.add(self.cst(1.0).repr(), m.repr());
                let d_exact_zero = matches!(&exact_d, Ok(v) if is_zero(v.value_ref()));
                if d_exact_zero && *r == f64::NEG_INFINITY {
                    return B::Inf(true);
                }
                if Self::straddles_zero(&d, *r) || is_zero(&d) {
                    return B::Unknown;
                }
                if is_neg(&d) {
                    return B::Nan;
                }
                self.smooth(*r, m, self.ctx.ln_1p(m.repr(), None), -l2lo(&d))
            }
            B::Inf(false) => B::Inf(false),
            B::Inf(true) => B::Nan,
            other => other.clone(),
        }
    }

    fn sqrt(&self, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                if is_zero(m) && *r == f64::NEG_INFINITY {
                    return a.clone();
                }
                if Self::straddles_zero(m, *r) {
                    return B::Unknown;
                }
                if is_neg(m) {
                    return B::Nan;
                }
                self.smooth(*r, m, self.ctx.sqrt(m.repr()), -l2lo(m) / 2.0)
            }
            B::Inf(false) => B::Inf(false),
            B::Inf(true) => B::Nan,
            other => other.clone(),
        }
    }

    fn trig(&self, op: Op, a: &B) -> B {
        match a {
            B::Fin(m, r) => {
                let xm = m.to_f64().value().abs();
                let (res, ld) = match op {
                    Op::Sin | Op::Cos if xm > 1e6 => return self.out_of_range(),
                    Op::Sin => (self.ctx.sin(m.repr(), None), 0.0),
                    Op::Cos => (self.ctx.cos(m.repr(), None), 0.0),
                    Op::Tanh if xm > EXP_LIMIT => {
                        // ±1 within 2·e^(−2|x|).
                        let one = self.cst(if is_neg(m) { -1.0 } else { 1.0 });
                        return B::Fin(one, (-2.0 * xm * std::f64::consts::LOG2_E + 2.0).max(f64::MIN));
                    }
                    Op::Tanh => (self.ctx.tanh(m.repr(), None), 0.0),
                    _ if xm > EXP_LIMIT => return self.out_of_range(),
                    Op::Cosh => (self.ctx.cosh(m.repr(), None), xm * std::f64::consts::LOG2_E),
                    _ => (self.ctx.sinh(m.repr(), None), xm * std::f64::consts::LOG2_E),
                };
                self.smooth(*r, m, res, ld)
            }
            B::Inf(n) => match op {
                Op::Tanh => B::Fin(self.cst(if *n { -1.0 } else { 1.0 }), f64::NEG_INFINITY),
                Op::Cosh => B::Inf(false),
                Op::Sinh => B::Inf(*n),
                _ => B::Nan,
            },
            other => other.clone(),
        }
    }

    /// The sign of a ball: Some(-1, 0, 1) when decided.
    fn sign_of(a: &B) -> Option<i8> {
        match a {
            B::Fin(m, r) => {
                if is_zero(m) && *r == f64::NEG_INFINITY {
                    Some(0)
                } else if Self::straddles_zero(m, *r) {
                    None
                } else if is_neg(m) {
                    Some(-1)
                } else {
                    Some(1)
                }
            }
            B::Inf(n) => Some(if *n { -1 } else { 1 }),
            _ => None,
        }
    }

    /// a < b, a == b, … decided, or None when the balls overlap (NaN compares false).
    fn compare(&self, op: Op, a: &B, b: &B) -> Option<bool> {
        if matches!(a, B::Nan) || matches!(b, B::Nan) {
            return Some(op == Op::Ne);
        }
        let d = self.sub(a, b);
        let s = match (a, b) {
            (B::Inf(x), B::Inf(y)) => {
                if x == y {
                    0
                } else if *x {
                    -1
                } else {
                    1
                }
            }
            _ => Self::sign_of(&d)?,
        };
        Some(match op {
            Op::Lt => s < 0,
            Op::Le => s <= 0,
            Op::Gt => s > 0,
            Op::Ge => s >= 0,
            Op::Eq => s == 0,
            _ => s != 0,
        })
    }

    fn truth(&self, b: bool) -> B {
        B::Fin(self.cst(if b { 1.0 } else { 0.0 }), f64::NEG_INFINITY)
    }

    fn is_true(a: &B) -> Option<bool> {
        match a {
            B::Nan => Some(true),
            _ => Self::sign_of(a).map(|s| s != 0),
        }
    }

    fn maximum(&self, a: &B, b: &B, max: bool) -> B {
        if matches!(a, B::Nan) || matches!(b, B::Nan) {
            return B::Nan;
        }
        match self.compare(Op::Gt, b, a) {
            Some(true) => {
                if max {
                    b.clone()
                } else {
                    a.clone()
                }
            }
            Some(false) => match self.compare(Op::Lt, b, a) {
                Some(true) if !max => b.clone(),
                Some(_) => a.clone(),
                None => B::Unknown,
            },
            None => B::Unknown,
        }
    }

    fn ln2(&self) -> B {
        self.ln(&self.f(2.0))
    }

    /// softplus(x) = max(x, 0) + log1p(exp(−|x|)), the branch picked by the midpoint (both are exact).
    fn softplus(&self, a: &B) -> B {
        match a {
            B::Fin(m, _) => {
                let na = self.neg(&self.abs(a));
                let t = self.ln1p(&self.exp(&na));
                if is_neg(m) {
                    t
                } else {
                    self.add(a, &t)
                }
            }
            B::Inf(true) => B::Fin(self.fix(F::ZERO), f64::NEG_INFINITY),
            other => other.clone(),
        }
    }

    fn sigmoid(&self, a: &B) -> B {
        let one = self.f(1.0);
        match a {
            B::Fin(m, _) => {
                if is_neg(m) {
                    let e = self.exp(a);
                    self.div(&e, &self.add(&one, &e))
                } else {
                    self.div(&one, &self.add(&one, &self.exp(&self.neg(a))))
                }
            }
            B::Inf(n) => self.f(if *n { 0.0 } else { 1.0 }),
            other => other.clone(),
        }
    }

    fn logaddexp(&self, a: &B, b: &B) -> B {
        match (a, b) {
            (B::Inf(true), _) => b.clone(),
            (_, B::Inf(true)) => a.clone(),
            (B::Fin(x, _), B::Fin(y, _)) => {
                let (hi, lo) = if x >= y { (a, b) } else { (b, a) };
                let d = self.sub(lo, hi);
                self.add(hi, &self.ln1p(&self.exp(&d)))
            }
            _ => self.add(a, b),
        }
    }

    fn log1mexp(&self, a: &B) -> B {
        match a {
            B::Fin(m, _) => {
                if m.to_f64().value() > -std::f64::consts::LN_2 {
                    let e = self.expm1(a);
                    self.ln(&self.neg(&e))
                } else {
                    self.ln1p(&self.neg(&self.exp(a)))
                }
            }
            B::Inf(true) => self.f(0.0),
            B::Inf(false) => B::Nan,
            other => other.clone(),
        }
    }

    fn log_cosh(&self, a: &B) -> B {
        let x = self.abs(a);
        match &x {
            B::Fin(m, _) => {
                if m.to_f64().value() < 1.0 {
                    let h = self.mul(&self.f(0.5), &x);
                    let s = self.trig(Op::Sinh, &h);
                    let two_s2 = self.mul(&self.f(2.0), &self.mul(&s, &s));
                    self.ln1p(&two_s2)
                } else {
                    let e = self.exp(&self.mul(&self.f(-2.0), &x));
                    self.add(&self.sub(&x, &self.ln2()), &self.ln1p(&e))
                }
            }
            other => other.clone(),
        }
    }

    fn pow(&self, a: &B, b: &B) -> B {
        let B::Fin(e, re) = b else { return B::Unknown };
        let ef = e.to_f64().value();
        if *re == f64::NEG_INFINITY && ef.fract() == 0.0 && ef.abs() <= 64.0 {
            let k = ef.abs() as u32;
            let mut acc = self.f(1.0);
            for _ in 0..k {
                acc = self.mul(&acc, a);
            }
            return if ef < 0.0 { self.div(&self.f(1.0), &acc) } else { acc };
        }
        if *re == f64::NEG_INFINITY && ef == 0.5 {
            return self.sqrt(a);
        }
        match Self::sign_of(a) {
            Some(1) => self.exp(&self.mul(b, &self.ln(a))),
            Some(0) => {
                if ef > 0.0 {
                    self.f(0.0)
                } else {
                    B::Inf(false)
                }
            }
            Some(_) => B::Nan,
            None => B::Unknown,
        }
    }

    fn xlogy(&self, u: &B, v: &B, log1p: bool) -> B {
        if matches!(v, B::Nan) {
            return B::Nan;
        }
        if Self::sign_of(u) == Some(0) {
            return self.f(0.0);
        }
        let l = if log1p { self.ln1p(v) } else { self.ln(v) };
        self.mul(u, &l)
    }

    fn unary(&self, op: Op, x: &B) -> B {
        match op {
            Op::Neg => self.neg(x),
            Op::Abs => self.abs(x),
            Op::Sign => match Self::sign_of(x) {
                Some(s) => self.f(f64::from(s)),
                None if matches!(x, B::Nan) => B::Nan,
                None => B::Unknown,
            },
            Op::Sqrt => self.sqrt(x),
            Op::Exp => self.exp(x),
            Op::Log => self.ln(x),
            Op::Log1p => self.ln1p(x),
            Op::Expm1 => self.expm1(x),
            Op::Sin | Op::Cos | Op::Tanh | Op::Cosh | Op::Sinh => self.trig(op, x),
            Op::Sigmoid => self.sigmoid(x),
            Op::LogSigmoid => self.neg(&self.softplus(&self.neg(x))),
            Op::Softplus => self.softplus(x),
            Op::Log1mexp => self.log1mexp(x),
            Op::LogCosh => self.log_cosh(x),
            Op::Relu => self.maximum(x, &self.f(0.0), true),
            Op::Square => self.mul(x, x),
            Op::Not => match Self::is_true(x) {
                Some(t) => self.truth(!t),
                None => B::Unknown,
            },
            Op::StopGradient => x.clone(),
            _ => B::Unknown,
        }
    }

    fn binary(&self, op: Op, a: &B, b: &B) -> B {
        match op {
            Op::Add => self.add(a, b),
            Op::Sub => self.sub(a, b),
            Op::Mul => self.mul(a, b),
            Op::Div => self.div(a, b),
            Op::Pow => self.pow(a, b),
            Op::Max => self.maximum(a, b, true),
            Op::Min => self.maximum(a, b, false),
            Op::Xlogy => self.xlogy(a, b, false),
            Op::Xlog1py => self.xlogy(a, b, true),
            Op::LogAddExp => self.logaddexp(a, b),
            Op::Hypot => self.sqrt(&self.add(&self.mul(a, a), &self.mul(b, b))),
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => match self.compare(op, a, b) {
                Some(t) => self.truth(t),
                None => B::Unknown,
            },
            Op::And | Op::Or => match (Self::is_true(a), Self::is_true(b)) {
                (Some(x), Some(y)) => self.truth(if op == Op::And { x && y } else { x || y }),
                _ => B::Unknown,
            },
            Op::StraightThrough => a.clone(),
            _ => B::Unknown,
        }
    }

    fn lse(&self, row: &[B]) -> B {
        // Shift by the largest midpoint, an exact constant (any shift is exact over the reals).
        let mut shift: Option<F> = None;
        for x in row {
            match x {
                B::Fin(m, _) => {
                    if shift.as_ref().is_none_or(|s| m > s) {
                        shift = Some(m.clone());
                    }
                }
                B::Inf(false) => return B::Inf(false),
                B::Nan => return B::Nan,
                B::Unknown => return B::Unknown,
                B::Inf(true) => {}
            }
        }
        let Some(s) = shift else { return B::Inf(true) };
        let sb = B::Fin(s, f64::NEG_INFINITY);
        let mut acc = self.f(0.0);
        for x in row {
            acc = self.add(&acc, &self.exp(&self.sub(x, &sb)));
        }
        self.add(&sb, &self.ln(&acc))
    }

    fn nll_softmax(&self, row: &[B], k: usize) -> B {
        // (m − x_k) + log1p(Σ_{j≠argmax} e^{x_j − m}) with m the largest midpoint.
        let mut best: Option<(usize, F)> = None;
        for (j, x) in row.iter().enumerate() {
            match x {
                B::Fin(m, _) => {
                    if best.as_ref().is_none_or(|(_, s)| m > s) {
                        best = Some((j, m.clone()));
                    }
                }
                _ => return self.sub(&self.lse(row), &row[k]),
            }
        }
        let Some((jm, s)) = best else { return B::Unknown };
        let sb = B::Fin(s, f64::NEG_INFINITY);
        let mut acc = self.f(0.0);
        for (j, x) in row.iter().enumerate() {
            if j != jm {
                acc = self.add(&acc, &self.exp(&self.sub(x, &sb)));
            }
        }
        self.add(&self.sub(&row[jm], &row[k]), &self.ln1p(&acc))
    }
}

/// Per-sample input data: one entry per program input (`C` values for `[C]` inputs, one
/// otherwise; the class number for an index target).
pub type Sample = Vec<Vec<f64>>;

/// The program's values at `roots` for one sample, at precision `p`, and whether an
/// argument was out of range for every precision.
fn eval_at(prog: &Program, sample: &Sample, classes: usize, roots: &[NodeId], p: usize) -> (Vec<Vec<B>>, bool) {
    let g: &Graph = &prog.graph;
    let ev = Eval::new(p);
    let max = roots.iter().map(|r| r.index()).max().map_or(0, |m| m + 1);
    let mut need = vec![false; max];
    for r in roots {
        need[r.index()] = true;
    }
    for i in (0..max).rev() {
        if need[i] {
            for c in g.node(NodeId(i as u32)).children() {
                need[c.index()] = true;
            }
        }
    }
    let mut vals: Vec<Vec<B>> = vec![Vec::new(); max];
    let width = |id: NodeId| if g.kind(id) == Kind::Class { classes } else { 1 };
    for i in 0..max {
        if !need[i] {
            continue;
        }
        let id = NodeId(i as u32);
        let node = g.node(id);
        let w = width(id);
        let at = |vals: &Vec<Vec<B>>, c: NodeId, j: usize| -> B {
            let v = &vals[c.index()];
            if v.len() == 1 {
                v[0].clone()
            } else {
                v[j].clone()
            }
        };
        let out: Vec<B> = match node.op {
            Op::Const(bits) => vec![ev.f(f64::from_bits(bits))],
            Op::Input(n) => sample[n as usize].iter().map(|x| ev.f(*x)).collect(),
            Op::NumClasses => vec![ev.f(classes as f64)],
            Op::ClassIndex => (0..classes).map(|c| ev.f(c as f64)).collect(),
            Op::Seed => vec![ev.f(1.0)],
            op if op.is_elementwise() => {
                let a = node.args;
                (0..w)
                    .map(|j| match op.arity() {
                        1 => ev.unary(op, &at(&vals, a[0], j)),
                        2 => ev.binary(op, &at(&vals, a[0], j), &at(&vals, a[1], j)),
                        _ => match op {
                            Op::Where => match Eval::is_true(&at(&vals, a[0], j)) {
                                Some(true) => at(&vals, a[1], j),
                                Some(false) => at(&vals, a[2], j),
                                None => B::Unknown,
                            },
                            _ => {
                                let m = ev.maximum(&at(&vals, a[0], j), &at(&vals, a[1], j), true);
                                ev.maximum(&m, &at(&vals, a[2], j), false)
                            }
                        },
                    })
                    .collect()
            }
            Op::Gather | Op::NllSoftmax => {
                let k = match g.node(node.args[1]).op {
                    Op::Input(n) => sample[n as usize][0],
                    _ => f64::NAN,
                };
                let row: Vec<B> = (0..classes).map(|j| at(&vals, node.args[0], j)).collect();
                if k.is_nan() {
                    vec![B::Unknown]
                } else if !(0.0..classes as f64).contains(&k) {
                    vec![ev.f(0.0)]
                } else if node.op == Op::Gather {
                    vec![row[k as usize].clone()]
                } else {
                    vec![ev.nll_softmax(&row, k as usize)]
                }
            }
            Op::RowSum | Op::RowMean | Op::RowMax | Op::RowMin | Op::RowLogSumExp | Op::RowNorm => {
                let row: Vec<B> = (0..classes).map(|j| at(&vals, node.args[0], j)).collect();
                let v = match node.op {
                    Op::RowSum | Op::RowMean => {
                        let s = row.iter().fold(ev.f(0.0), |s, x| ev.add(&s, x));
                        if node.op == Op::RowMean {
                            ev.div(&s, &ev.f(classes as f64))
                        } else {
                            s
                        }
                    }
                    Op::RowMax | Op::RowMin => {
                        let mut it = row.iter().cloned();
                        let first = it.next().unwrap_or(B::Unknown);
                        it.fold(first, |m, x| ev.maximum(&m, &x, node.op == Op::RowMax))
                    }
                    Op::RowLogSumExp => ev.lse(&row),
                    _ => ev.sqrt(&row.iter().fold(ev.f(0.0), |s, x| ev.add(&s, &ev.mul(x, x)))),
                };
                vec![v]
            }
            Op::Softmax | Op::LogSoftmax => {
                let row: Vec<B> = (0..classes).map(|j| at(&vals, node.args[0], j)).collect();
                let l = ev.lse(&row);
                row.iter()
                    .map(|x| {
                        let d = ev.sub(x, &l);
                        if node.op == Op::Softmax {
                            ev.exp(&d)
                        } else {
                            d
                        }
                    })
                    .collect()
            }
            _ => vec![B::Unknown; w],
        };
        vals[i] = out;
    }
    (roots.iter().map(|r| vals[r.index()].clone()).collect(), ev.hopeless.get())
}

/// Rounds a resolved ball to the dtype, or `None` if it is not resolved to within a small
/// fraction of an ulp.
fn resolve(b: &B, dtype: Dtype) -> Option<f64> {
    let bits = match dtype {
        Dtype::F32 => 24.0,
        Dtype::F64 => 53.0,
    };
    let tiny = match dtype {
        Dtype::F32 => -151.0,
        Dtype::F64 => -1076.0,
    };
    match b {
        B::Nan => Some(f64::NAN),
        B::Inf(n) => Some(if *n { f64::NEG_INFINITY } else { f64::INFINITY }),
        B::Unknown => None,
        B::Fin(m, r) => {
            let ok = *r == f64::NEG_INFINITY || *r < tiny - 2.0 || (!is_zero(m) && *r < l2lo(m) - bits - 12.0);
            if !ok {
                return None;
            }
            Some(match dtype {
                Dtype::F32 => f64::from(m.to_f32().value()),
                Dtype::F64 => m.to_f64().value(),
            })
        }
    }
}

/// The exact values of `roots` for one sample, each rounded once to `dtype`, with the
/// working precision raised until every value is resolved; `None` where even
/// [`MAX_PRECISION`] bits cannot resolve one.
pub fn reference(
    prog: &Program,
    sample: &Sample,
    classes: usize,
    roots: &[NodeId],
    dtype: Dtype,
) -> Vec<Vec<Option<f64>>> {
    let mut p = 128;
    let mut best: Vec<Vec<Option<f64>>> = Vec::new();
    loop {
        let (vals, hopeless) = eval_at(prog, sample, classes, roots, p);
        let res: Vec<Vec<Option<f64>>> = vals.iter().map(|v| v.iter().map(|b| resolve(b, dtype)).collect()).collect();
        let done = res.iter().all(|v| v.iter().all(Option::is_some));
        // A value resolved at a lower precision stays resolved.
        if best.is_empty() {
            best = res;
        } else {
            for (bv, rv) in best.iter_mut().zip(res) {
                for (b, r) in bv.iter_mut().zip(rv) {
                    if b.is_none() {
                        *b = r;
                    }
                }
            }
        }
        if done || best.iter().all(|v| v.iter().all(Option::is_some)) || p >= MAX_PRECISION {
            return best;
        }
        if hopeless {
            return best;
        }
        p *= 2;
    }
}
