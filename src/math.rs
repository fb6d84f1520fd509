//! Scalar semantics of every elementwise operation, generic over f32 and f64.
//!
//! The interpreter and constant folding both call [`apply_unary`], [`apply_binary`] and
//! [`apply_ternary`], so a folded constant is bitwise the value the interpreter would
//! compute in the same dtype. Fused functions use their stable textbook forms.

use crate::ir::Op;

/// The float operations the semantics need, for `f32` and `f64`.
pub trait Real: Copy + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Rounds an f64 to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
    /// `+`
    fn add(self, o: Self) -> Self;
    /// `-`
    fn sub(self, o: Self) -> Self;
    /// `*`
    fn mul(self, o: Self) -> Self;
    /// `/`
    fn div(self, o: Self) -> Self;
    /// unary `-`
    fn neg(self) -> Self;
    /// e^x
    fn exp(self) -> Self;
    /// natural log
    fn ln(self) -> Self;
    /// log(1+x)
    fn ln_1p(self) -> Self;
    /// e^x - 1
    fn exp_m1(self) -> Self;
    /// square root
    fn sqrt(self) -> Self;
    /// sine
    fn sin(self) -> Self;
    /// cosine
    fn cos(self) -> Self;
    /// hyperbolic tangent
    fn tanh(self) -> Self;
    /// hyperbolic cosine
    fn cosh(self) -> Self;
    /// hyperbolic sine
    fn sinh(self) -> Self;
    /// a^b
    fn powf(self, o: Self) -> Self;
    /// |x|
    fn abs(self) -> Self;
    /// NaN test.
    fn is_nan(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[allow(clippy::cast_possible_truncation)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn neg(self) -> Self {
                -self
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            fn powf(self, o: Self) -> Self {
                <$t>::powf(self, o)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

fn truth<T: Real>(b: bool) -> T {
    if b {
        T::ONE
    } else {
        T::ZERO
    }
}

/// Nonzero (NaN included) is true.
pub fn is_true<T: Real>(x: T) -> bool {
    x != T::ZERO
}

/// `maximum` with NaN propagation; a tie returns `a`.
pub fn maximum<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a.add(b)
    } else if b > a {
        b
    } else {
        a
    }
}

/// `minimum` with NaN propagation; a tie returns `a`.
pub fn minimum<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a.add(b)
    } else if b < a {
        b
    } else {
        a
    }
}

/// The logistic function, accurate for large negative x.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE.div(T::ONE.add(x.neg().exp()))
    } else {
        let e = x.exp();
        e.div(T::ONE.add(e))
    }
}

/// log(1 + e^x) without overflow or cancellation.
pub fn softplus<T: Real>(x: T) -> T {
    maximum(x, T::ZERO).add(x.abs().neg().exp().ln_1p())
}

/// log(sigmoid(x)) = -softplus(-x).
pub fn log_sigmoid<T: Real>(x: T) -> T {
    minimum(x, T::ZERO).sub(x.abs().neg().exp().ln_1p())
}

/// ln 2 in the type.
fn ln2<T: Real>() -> T {
    T::from_f64(std::f64::consts::LN_2)
}

/// log(e^a + e^b) (lowering L4): `a == b ? a + ln 2 : max(a, b) + log1p(exp(−|a − b|))`.
/// The equality branch keeps `(+inf, +inf)` and `(−inf, −inf)` exact.
pub fn logaddexp<T: Real>(a: T, b: T) -> T {
    if a == b {
        a.add(ln2())
    } else {
        maximum(a, b).add(a.sub(b).abs().neg().exp().ln_1p())
    }
}

/// log(1 − e^x) for x ≤ 0 (lowering L6, Mächler's switch at −ln 2):
/// `x > −ln 2 ? log(expm1(−x)) + x : log1p(−exp(x))` (the first is log(−expm1(x)) as a sum
/// of two terms of one sign, from the expm1(−x) its derivative uses). NaN for x > 0, −inf
/// at 0.
pub fn log1mexp<T: Real>(x: T) -> T {
    if x > ln2::<T>().neg() {
        x.neg().exp_m1().ln().add(x)
    } else {
        x.exp().neg().ln_1p()
    }
}

/// log(cosh(x)) in two regimes of a = |x|, both from e = expm1(a) and one log1p:
/// a < 1: `log1p(e²/(2(1 + e)))` (that is log1p(cosh(a) − 1), without cancellation);
/// otherwise `(a − ln 2) + log1p(1/(1 + e)²)` (e^(−2a) from e^a = 1 + e; finite where cosh
/// overflows, and 0 where (1 + e)² overflows, far below the last bit of a).
pub fn log_cosh<T: Real>(x: T) -> T {
    let a = x.abs();
    let e = a.exp_m1();
    let ope = T::ONE.add(e);
    if a < T::ONE {
        let two = T::from_f64(2.0);
        e.mul(e).div(two.mul(ope)).ln_1p()
    } else {
        a.sub(ln2()).add(T::ONE.div(ope.mul(ope)).ln_1p())
    }
}

/// sqrt(a² + b²) scaled by the larger magnitude m: `m·sqrt(1 + (n/m)²)`; 0 when both
/// are 0, +inf when either is infinite, NaN when either is NaN (and neither infinite).
pub fn hypot<T: Real>(a: T, b: T) -> T {
    let (x, y) = (a.abs(), b.abs());
    let m = maximum(x, y);
    let n = minimum(x, y);
    let inf = T::from_f64(f64::INFINITY);
    if x == inf || y == inf {
        return inf;
    }
    if m.is_nan() || m == T::ZERO {
        return m;
    }
    let r = n.div(m);
    m.mul(T::ONE.add(r.mul(r)).sqrt())
}

/// `u·log1p(v)`, 0 where u = 0 and v is not NaN.
pub fn xlog1py<T: Real>(u: T, v: T) -> T {
    if u == T::ZERO && !v.is_nan() {
        T::ZERO
    } else {
        u.mul(v.ln_1p())
    }
}

/// The log-sum-exp split of a row (rule S30, lowering L5): `(m, log1p(s))` with m = max(x)
/// and s = Σ_{x_j < m} e^{x_j − m} + (#{x_j = m} − 1), the sum over every entry but one
/// maximum, so that logsumexp(x) = m + log1p(s) keeps a tiny log1p(s) exact. `None` when
/// m is not finite (or NaN).
pub fn row_split<T: Real>(row: &[T]) -> Option<(T, T)> {
    let m = row.iter().copied().reduce(maximum)?;
    if m.is_nan() || !m.to_f64().is_finite() {
        return None;
    }
    let mut s = T::ZERO;
    let mut ties = T::ZERO;
    for x in row {
        s = s.add(if *x < m { exp_sub(*x, m) } else { T::ZERO });
        ties = ties.add(if *x == m { T::ONE } else { T::ZERO });
    }
    Some((m, s.add(ties.sub(T::ONE)).ln_1p()))
}

/// `a − b` as an unevaluated sum `hi + lo` (Knuth's TwoSum): `hi` is the rounded
/// difference and `lo` its rounding error, exactly, for finite a and b (NaN otherwise).
pub fn two_diff<T: Real>(a: T, b: T) -> (T, T) {
    let hi = a.sub(b);
    let nb = b.neg();
    let bp = hi.sub(a);
    let ap = hi.sub(bp);
    (hi, a.sub(ap).add(nb.sub(bp)))
}

/// e^(hi + lo) for a double-word argument: `e + e·lo` with e = e^hi (just e where lo is
/// not finite). The correction keeps e^(a − b) accurate when a − b rounds: its relative
/// error would otherwise be |a − b|·ε.
pub fn exp_dw<T: Real>(hi: T, lo: T) -> T {
    let e = hi.exp();
    if lo.is_nan() || !lo.to_f64().is_finite() {
        e
    } else {
        e.add(e.mul(lo))
    }
}

/// e^(a − b) with the rounding error of a − b corrected ([`two_diff`], [`exp_dw`]).
pub fn exp_sub<T: Real>(a: T, b: T) -> T {
    let (hi, lo) = two_diff(a, b);
    exp_dw(hi, lo)
}

/// logsumexp of a row: `m + log1p(s)` (see [`row_split`]); where the max is not finite,
/// `log(Σ e^x)` (−inf for a row of −inf, +inf with a +inf, NaN with a NaN).
pub fn logsumexp<T: Real>(row: &[T]) -> T {
    if let Some((m, l)) = row_split(row) {
        return m.add(l);
    }
    let m = row.iter().copied().reduce(maximum).unwrap_or(T::from_f64(f64::NEG_INFINITY));
    if m.is_nan() {
        return m;
    }
    row.iter().fold(T::ZERO, |s, x| s.add(x.exp())).ln()
}

/// log_softmax of a row into `out`: `(x_j − m) − log1p(s)` (see [`row_split`]), so the
/// entry of a confident class keeps its digits; with `softmax`, the exponential of that,
/// with the rounding errors of both differences corrected ([`exp_dw`]). Where the max is
/// not finite: `x_j − logsumexp(x)` (and its exponential).
///
/// The log form needs no correction: both terms are ≤ 0 (x_j ≤ m, log1p(s) ≥ 0), so the
/// two roundings and log1p's error stay relative to the result (within 2 ulps; the
/// exponential needs them because e^(d + δ) turns an absolute error δ of d into a relative
/// one).
pub fn log_softmax_row<T: Real>(row: &[T], out: &mut [T], softmax: bool) {
    match row_split(row) {
        Some((m, l)) => {
            for (o, x) in out.iter_mut().zip(row) {
                *o = if softmax {
                    let (hi, lo) = two_diff(*x, m);
                    let (s_hi, s_lo) = two_diff(hi, l);
                    exp_dw(s_hi, s_lo.add(lo))
                } else {
                    x.sub(m).sub(l)
                };
            }
        }
        None => {
            let lse = logsumexp(row);
            for (o, x) in out.iter_mut().zip(row) {
                let d = x.sub(lse);
                *o = if softmax { d.exp() } else { d };
            }
        }
    }
}

/// `−log_softmax(x)[k]` for one row, without cancellation (rule S30): `(m − x_k) + log1p(s)`
/// (see [`row_split`]), both terms ≥ 0; `logsumexp(x) − x_k` where the max is not finite.
/// `k` must be a valid class.
pub fn nll_softmax<T: Real>(row: &[T], k: usize) -> T {
    match row_split(row) {
        Some((m, l)) => m.sub(row[k]).add(l),
        None => logsumexp(row).sub(row[k]),
    }
}

/// Applies a unary elementwise op.
pub fn apply_unary<T: Real>(op: Op, x: T) -> T {
    match op {
        Op::Neg => x.neg(),
        Op::Abs => x.abs(),
        Op::Sign => {
            if x.is_nan() {
                x
            } else if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                T::ONE.neg()
            } else {
                T::ZERO
            }
        }
        Op::Sqrt => x.sqrt(),
        Op::Exp => x.exp(),
        Op::Log => x.ln(),
        Op::Log1p => x.ln_1p(),
        Op::Expm1 => x.exp_m1(),
        Op::Sin => x.sin(),
        Op::Cos => x.cos(),
        Op::Tanh => x.tanh(),
        Op::Cosh => x.cosh(),
        Op::Sinh => x.sinh(),
        Op::Sigmoid => sigmoid(x),
        Op::LogSigmoid => log_sigmoid(x),
        Op::Softplus => softplus(x),
        Op::Log1mexp => log1mexp(x),
        Op::LogCosh => log_cosh(x),
        Op::Relu => {
            if x.is_nan() || x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        Op::Square => x.mul(x),
        Op::Not => truth(!is_true(x)),
        Op::StopGradient | Op::Hold => x,
        _ => x.add(T::from_f64(f64::NAN)),
    }
}

/// Applies a binary elementwise op.
pub fn apply_binary<T: Real>(op: Op, a: T, b: T) -> T {
    match op {
        Op::Add => a.add(b),
        Op::Sub => a.sub(b),
        Op::Mul => a.mul(b),
        Op::Div => a.div(b),
        Op::Pow => pow(a, b),
        Op::Max => maximum(a, b),
        Op::Min => minimum(a, b),
        Op::Xlogy => {
            if a == T::ZERO && !b.is_nan() {
                T::ZERO
            } else {
                a.mul(b.ln())
            }
        }
        Op::Lt => truth(a < b),
        Op::Le => truth(a <= b),
        Op::Gt => truth(a > b),
        Op::Ge => truth(a >= b),
        Op::Eq => truth(a == b),
        Op::Ne => truth(a != b),
        Op::And => truth(is_true(a) && is_true(b)),
        Op::Or => truth(is_true(a) || is_true(b)),
        Op::Xlog1py => xlog1py(a, b),
        Op::LogAddExp => logaddexp(a, b),
        Op::Hypot => hypot(a, b),
        Op::ExpDw => exp_dw(a, b),
        Op::StraightThrough => a,
        _ => a.add(T::from_f64(f64::NAN)),
    }
}

/// a^b; small integral exponents are exact products, as in PyTorch.
fn pow<T: Real>(a: T, b: T) -> T {
    if b == T::from_f64(2.0) {
        a.mul(a)
    } else if b == T::ONE {
        a
    } else if b == T::from_f64(0.5) {
        a.sqrt()
    } else {
        a.powf(b)
    }
}

/// Applies a ternary elementwise op.
pub fn apply_ternary<T: Real>(op: Op, a: T, b: T, c: T) -> T {
    match op {
        Op::Where => {
            if is_true(a) {
                b
            } else {
                c
            }
        }
        Op::Clamp => minimum(maximum(a, b), c),
        _ => a.add(T::from_f64(f64::NAN)),
    }
}
