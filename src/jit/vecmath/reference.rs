//! Double-double reference functions for measuring f64 errors.
//!
//! Values are returned as [`Scaled`]: `m · 2^e` with `m` a double-double near 1, so results that
//! overflow or are subnormal in f64 keep their full precision.
//! Accuracy is about 2^-100 relative (Taylor series in double-double after exact argument
//! reduction, then one Newton step for the logarithms), far below the 2^-53 being measured.
//! Invariant: arguments are finite and inside the function's domain; callers handle the rest.

#![allow(dead_code)]

/// An unevaluated sum `hi + lo` with `|lo| ≤ ulp(hi)/2`.
#[derive(Clone, Copy, Debug)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    Dd { hi: s, lo: e }
}

fn quick_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd { hi: s, lo: b - (s - a) }
}

fn two_prod(a: f64, b: f64) -> Dd {
    let p = a * b;
    Dd { hi: p, lo: a.mul_add(b, -p) }
}

impl Dd {
    pub fn new(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    pub fn add(self, b: Dd) -> Dd {
        let s = two_sum(self.hi, b.hi);
        let t = two_sum(self.lo, b.lo);
        let s = quick_two_sum(s.hi, s.lo + t.hi);
        quick_two_sum(s.hi, s.lo + t.lo)
    }

    pub fn neg(self) -> Dd {
        Dd { hi: -self.hi, lo: -self.lo }
    }

    pub fn sub(self, b: Dd) -> Dd {
        self.add(b.neg())
    }

    pub fn mul(self, b: Dd) -> Dd {
        let p = two_prod(self.hi, b.hi);
        let lo = p.lo + (self.hi * b.lo + self.lo * b.hi);
        quick_two_sum(p.hi, lo)
    }

    pub fn mul_f(self, b: f64) -> Dd {
        let p = two_prod(self.hi, b);
        quick_two_sum(p.hi, p.lo + self.lo * b)
    }

    pub fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        let r = self.sub(b.mul_f(q1));
        let q2 = r.hi / b.hi;
        let r = r.sub(b.mul_f(q2));
        let q3 = r.hi / b.hi;
        let q = quick_two_sum(q1, q2);
        q.add(Dd::new(q3))
    }

    pub fn div_f(self, b: f64) -> Dd {
        self.div(Dd::new(b))
    }

    /// Multiplies by 2^k exactly (no overflow or underflow for the ranges used here).
    pub fn ldexp(self, k: i32) -> Dd {
        Dd { hi: ldexp(self.hi, k), lo: ldexp(self.lo, k) }
    }

    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }
}

/// `x · 2^k` with a single rounding at the end.
pub fn ldexp(x: f64, k: i32) -> f64 {
    let mut x = x;
    let mut k = k;
    while k > 1000 {
        x *= 2f64.powi(1000);
        k -= 1000;
    }
    while k < -1000 {
        // Scale in steps that stay normal until the last one.
        if k < -1500 {
            x *= 2f64.powi(-1000);
            k += 1000;
        } else {
            x *= 2f64.powi(-500);
            k += 500;
        }
    }
    x * 2f64.powi(k)
}

/// `m · 2^e`.
#[derive(Clone, Copy, Debug)]
pub struct Scaled {
    pub m: Dd,
    pub e: i32,
}

impl Scaled {
    pub fn from_dd(m: Dd) -> Scaled {
        Scaled { m, e: 0 }
    }

    /// The correctly rounded f64 (up to rare double roundings in the subnormal range).
    pub fn to_f64(self) -> f64 {
        if self.e == 0 {
            return self.m.to_f64();
        }
        ldexp(self.m.to_f64(), self.e)
    }
}

const LN2: [f64; 3] = [std::f64::consts::LN_2, 2.3190468138462996e-17, 5.707708438416212e-34];

/// `e^r` for a small double-double `r` (|r| ≤ 0.36).
fn exp_small(r: Dd) -> Dd {
    // e^r = (e^(r/16))^16, Taylor series for e^(r/16) with |r/16| ≤ 0.023.
    let s = r.ldexp(-4);
    let mut term = Dd::new(1.0);
    let mut sum = Dd::new(1.0);
    for i in 1..=22 {
        term = term.mul(s).div_f(f64::from(i));
        sum = sum.add(term);
    }
    for _ in 0..4 {
        sum = sum.mul(sum);
    }
    sum
}

/// `e^x − 1` for |x| < 0.5 by its Taylor series.
fn expm1_small(x: Dd) -> Dd {
    let mut term = x;
    let mut sum = x;
    for i in 2..=30 {
        term = term.mul(x).div_f(f64::from(i));
        sum = sum.add(term);
    }
    sum
}

/// `e^x` for finite `x`.
pub fn exp(x: f64) -> Scaled {
    let k = (x / LN2[0]).round();
    // r = x − k·ln2 in double-double (k·LN2[0] exact as a product pair).
    let r = Dd::new(x).sub(two_prod(k, LN2[0])).sub(two_prod(k, LN2[1])).sub(Dd::new(k * LN2[2]));
    Scaled { m: exp_small(r), e: k as i32 }
}

/// `e^x − 1` for finite `x`.
pub fn expm1(x: f64) -> Scaled {
    if x.abs() < 0.5 {
        return Scaled::from_dd(expm1_small(Dd::new(x)));
    }
    let e = exp(x);
    if e.e > 200 {
        // The −1 is far below the double-double precision of the result.
        return e;
    }
    if e.e < -200 {
        return Scaled::from_dd(Dd::new(-1.0).add(e.m.ldexp(e.e)));
    }
    Scaled::from_dd(e.m.ldexp(e.e).sub(Dd::new(1.0)))
}

/// `e^x` as a double-double, for |x| ≤ 700.
pub fn exp_dd(x: f64) -> Dd {
    let e = exp(x);
    e.m.ldexp(e.e)
}

/// `e^x − 1` as a double-double for a double-double argument (|x| ≤ 700).
fn expm1_dd(x: Dd) -> Dd {
    if x.hi.abs() < 0.5 {
        return expm1_small(x);
    }
    // e^(hi + lo) − 1 = e^hi·(1 + lo) − 1 to first order in lo (|lo| ≤ 2^-53·|hi|).
    let e = exp_dd(x.hi);
    e.add(e.mul_f(x.lo)).sub(Dd::new(1.0))
}

/// `log(a)` for a positive double-double `a = (am · 2^ae)`, by one Newton step on `e^y = a`
/// from the f64 logarithm; only for results of magnitude ≥ 0.25 (absolute error ~2^-104).
fn log_newton(am: Dd, ae: i32) -> Dd {
    let y0 = am.hi.ln() + f64::from(ae) * std::f64::consts::LN_2;
    let e = exp(-y0);
    // a·e^(−y0) − 1, with the scales combined first.
    let p = am.mul(e.m).ldexp(ae + e.e);
    Dd::new(y0).add(p.sub(Dd::new(1.0)))
}

/// Splits a positive finite f64 into `m · 2^e` with `m ∈ [0.5, 1)`.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(x * 2f64.powi(64));
        return (m, e - 64);
    }
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, exp - 1022)
}

/// `log(1 + x)` for a double-double `x > −1` with `|x| ≤ 1`, by a Newton step on `expm1`.
fn log1p_small(x: Dd) -> Dd {
    let y0 = x.hi.ln_1p();
    if y0 == 0.0 {
        return x;
    }
    // y1 = y0 − (expm1(y0) − x) / (1 + expm1(y0)).
    let em = expm1_dd(Dd::new(y0));
    let num = em.sub(x);
    let den = em.add(Dd::new(1.0));
    Dd::new(y0).sub(num.div(den))
}

/// `log(x)` for a positive finite `x`.
pub fn ln(x: f64) -> Dd {
    if (0.5..=2.0).contains(&x) {
        return log1p_small(Dd::new(x - 1.0));
    }
    let (m, e) = frexp(x);
    log_newton(Dd::new(m), e)
}

/// `log(1 + x)` for finite `x > −1`.
pub fn ln_1p(x: f64) -> Dd {
    ln_1p_dd(Dd::new(x))
}

/// `log(1 + x)` for a double-double `x > −1`.
pub fn ln_1p_dd(x: Dd) -> Dd {
    if x.hi >= -0.5 && x.hi <= 1.0 {
        return log1p_small(x);
    }
    let a = Dd::new(1.0).add(x);
    let (m, e) = frexp(a.hi);
    // a = (m + lo·2^-e) · 2^e.
    log_newton(Dd::new(m).add(Dd::new(ldexp(a.lo, -e))), e)
}

/// The logistic function.
pub fn sigmoid(x: f64) -> Scaled {
    let e = exp(-x.abs());
    if e.e < -120 {
        // 1 + e rounds to 1 in double-double.
        return if x >= 0.0 { Scaled::from_dd(Dd::new(1.0)) } else { e };
    }
    let ev = e.m.ldexp(e.e);
    let d = Dd::new(1.0).add(ev);
    let num = if x >= 0.0 { Dd::new(1.0) } else { ev };
    Scaled::from_dd(num.div(d))
}

/// `log1p(exp(−|x|))`.
fn log1p_exp_neg_abs(x: f64) -> Scaled {
    let e = exp(-x.abs());
    if e.e < -60 {
        // log1p(e) = e·(1 − e/2 + e²/3) with e < 2^-60.
        let ev = ldexp(e.m.hi, e.e);
        let f = Dd::new(1.0).sub(Dd::new(ev / 2.0)).add(Dd::new(ev * ev / 3.0));
        return Scaled { m: e.m.mul(f), e: e.e };
    }
    Scaled::from_dd(ln_1p_dd(e.m.ldexp(e.e)))
}

/// `max(x, 0) + log1p(exp(−|x|))`.
pub fn softplus(x: f64) -> Scaled {
    let l = log1p_exp_neg_abs(x);
    if x <= 0.0 {
        return l;
    }
    if l.e < -200 {
        return Scaled::from_dd(Dd::new(x));
    }
    Scaled::from_dd(Dd::new(x).add(l.m.ldexp(l.e)))
}

/// `min(x, 0) − log1p(exp(−|x|))`.
pub fn log_sigmoid(x: f64) -> Scaled {
    let l = log1p_exp_neg_abs(x);
    if x >= 0.0 {
        return Scaled { m: l.m.neg(), e: l.e };
    }
    if l.e < -200 {
        return Scaled::from_dd(Dd::new(x));
    }
    Scaled::from_dd(Dd::new(x).sub(l.m.ldexp(l.e)))
}

/// Hyperbolic tangent.
pub fn tanh(x: f64) -> Scaled {
    let e = expm1(-2.0 * x.abs());
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    // Write e as a plain double-double, keeping tiny ones scaled.
    let (ev, scale) = if e.e < -900 { (e.m, e.e) } else { (e.m.ldexp(e.e), 0) };
    if scale != 0 {
        // |e| tiny: tanh = −e/2.
        return Scaled { m: ev.mul_f(-0.5 * sign), e: scale };
    }
    let t = ev.neg().div(ev.add(Dd::new(2.0)));
    Scaled::from_dd(t.mul_f(sign))
}

/// Hyperbolic sine for finite `x` with `|x| ≤ 711`.
pub fn sinh(x: f64) -> Scaled {
    let a = x.abs();
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    if a < 0.5 {
        // Taylor series: x + x³/3! + … (terms fall by more than 24 each step).
        let x = Dd::new(a);
        let x2 = x.mul(x);
        let mut term = x;
        let mut sum = x;
        for k in 1..=20 {
            term = term.mul(x2).div_f(f64::from((2 * k) * (2 * k + 1)));
            sum = sum.add(term);
        }
        return Scaled::from_dd(sum.mul_f(sign));
    }
    let e = exp(a);
    if a > 40.0 {
        // e^−|x| is below 2^-115 of the result.
        return Scaled { m: e.m.mul_f(sign), e: e.e - 1 };
    }
    Scaled::from_dd(exp_dd(a).sub(exp_dd(-a)).mul_f(0.5 * sign))
}

/// Hyperbolic cosine for finite `x` with `|x| ≤ 711`.
pub fn cosh(x: f64) -> Scaled {
    let a = x.abs();
    let e = exp(a);
    if a > 40.0 {
        return Scaled { m: e.m, e: e.e - 1 };
    }
    Scaled::from_dd(exp_dd(a).add(exp_dd(-a)).mul_f(0.5))
}

/// `π/2` as four doubles (error below 2^-215).
const PIO2: [f64; 4] =
    [std::f64::consts::FRAC_PI_2, 6.123233995736766e-17, -1.4973849048591698e-33, 5.562271104316826e-50];

/// `x = n·π/2 + r` with `|r| ≲ π/4`, for finite `|x| ≤ 2^40`: `x − fl(n·PIO2[0])` is exact, and
/// the rest is summed in double-double at magnitudes below `ulp(x)`, so `r` keeps ~100 bits
/// however close `x` is to a multiple of π/2.
fn reduce_pio2(x: f64) -> (Dd, i64) {
    let n = (x * std::f64::consts::FRAC_2_PI).round();
    let p0 = two_prod(n, PIO2[0]);
    let mut r = Dd::new(x - p0.hi);
    r = r.sub(Dd::new(p0.lo));
    for part in &PIO2[1..] {
        let p = two_prod(n, *part);
        r = r.sub(Dd::new(p.hi)).sub(Dd::new(p.lo));
    }
    (r, n as i64)
}

/// `sin(r)` and `cos(r)` for a double-double `|r| ≤ 0.8`, by their Taylor series.
fn sin_cos_small(r: Dd) -> (Dd, Dd) {
    let r2 = r.mul(r);
    let (mut s_term, mut s) = (r, r);
    let (mut c_term, mut c) = (Dd::new(1.0), Dd::new(1.0));
    for k in 1..=20 {
        s_term = s_term.mul(r2).div_f(-f64::from((2 * k) * (2 * k + 1)));
        s = s.add(s_term);
        c_term = c_term.mul(r2).div_f(-f64::from((2 * k - 1) * (2 * k)));
        c = c.add(c_term);
    }
    (s, c)
}

/// Sine for finite nonzero `x` with `|x| ≤ 2^40`.
pub fn sin(x: f64) -> Scaled {
    let (r, n) = reduce_pio2(x);
    let (s, c) = sin_cos_small(r);
    Scaled::from_dd(match n.rem_euclid(4) {
        0 => s,
        1 => c,
        2 => s.neg(),
        _ => c.neg(),
    })
}

/// Cosine for finite `x` with `|x| ≤ 2^40`.
pub fn cos(x: f64) -> Scaled {
    let (r, n) = reduce_pio2(x);
    let (s, c) = sin_cos_small(r);
    Scaled::from_dd(match n.rem_euclid(4) {
        0 => c,
        1 => s.neg(),
        2 => c.neg(),
        _ => s,
    })
}
