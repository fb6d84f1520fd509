//! Accuracy and special-value tests for the inline math emitters.
//!
//! Every function is JIT-compiled into a loop and run over sampled inputs; errors are measured in
//! ulps (|y − exact| / ulp(exact), fractional) and in bits (log2 of 1 + the ordinal distance to the
//! correctly rounded value).
//! * f32 references are the f64 `std` functions (or stable f64 formulas) rounded to f32.
//! * f64 references are the double-double implementations in `reference`.
//!
//! The default run samples about 1M f32 and 200k f64 points per function; `LOSSC_LONG=1` adds the
//! exhaustive f32 sweep over every finite float in each meaningful range and 10M f64 samples.
//! Tables are printed (run with `--nocapture` to see them).

use super::reference;

use std::fmt::Write as _;

use super::harness::{describe, Func, Kernel, Target, Width};

/// Configurations measured in the default run.
const CONFIGS: [(Width, Target); 5] = [
    (Width::Vector, Target::Host),
    (Width::Scalar, Target::Host),
    (Width::Vector, Target::HostNoFma),
    (Width::Vector, Target::Baseline),
    (Width::Scalar, Target::Baseline),
];

fn long_run() -> bool {
    std::env::var("LOSSC_LONG").is_ok_and(|v| v == "1")
}

fn is_base(func: Func) -> bool {
    matches!(func, Func::Exp | Func::Log | Func::Log1p | Func::Log1pUnit | Func::Expm1 | Func::Sin | Func::Cos)
}

/// Ulp bound for the elementary functions (exp, log, log1p, expm1, sin, cos).
const MAX_ULP: f64 = 1.0;

fn max_bits(is_f32: bool) -> f64 {
    if is_f32 {
        2.5
    } else {
        2.0
    }
}

// ---- sampling ----

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Monotonic integer key of a float (−0 and +0 share 0).
fn ord32(x: f32) -> i64 {
    let b = x.to_bits() as i32;
    i64::from(if b < 0 { i32::MIN.wrapping_sub(b) } else { b })
}

fn from_ord32(k: i64) -> f32 {
    let k = k as i32;
    f32::from_bits(if k < 0 { i32::MIN.wrapping_sub(k) } else { k } as u32)
}

fn ord64(x: f64) -> i128 {
    let b = x.to_bits() as i64;
    i128::from(if b < 0 { i64::MIN.wrapping_sub(b) } else { b })
}

fn from_ord64(k: i128) -> f64 {
    let k = k as i64;
    f64::from_bits(if k < 0 { i64::MIN.wrapping_sub(k) } else { k } as u64)
}

/// Meaningful input range of each function (outside it the result is constant or special).
fn range(func: Func, is_f32: bool) -> (f64, f64) {
    let max = if is_f32 { f64::from(f32::MAX) } else { f64::MAX };
    match (func, is_f32) {
        (Func::Exp | Func::ExpDw | Func::ExpNonPositive, true) => (-104.0, 89.0),
        (Func::Exp | Func::ExpDw | Func::ExpNonPositive, false) => (-746.0, 710.0),
        (Func::Log | Func::LogPositive, _) => (0.0, max),
        (Func::Log1p | Func::Log1pNonNegative, _) => (-1.0, max),
        (Func::Log1pUnit, _) => (0.0, 1.0),
        (Func::LogNormal, true) => (f64::from(f32::MIN_POSITIVE), max),
        (Func::LogNormal, false) => (f64::MIN_POSITIVE, max),
        (Func::Log1pSmall, _) => (-1.0, 1.0),
        (Func::Expm1, true) => (-20.0, 89.0),
        (Func::Expm1, false) => (-40.0, 710.0),
        (Func::Sigmoid | Func::Softplus, true) => (-110.0, 30.0),
        (Func::Sigmoid | Func::Softplus, false) => (-750.0, 60.0),
        (Func::LogSigmoid, true) => (-30.0, 110.0),
        (Func::LogSigmoid, false) => (-60.0, 750.0),
        (Func::Tanh, true) => (-10.0, 10.0),
        (Func::Tanh, false) => (-20.0, 20.0),
        (Func::Sinh | Func::Cosh, true) => (-90.0, 90.0),
        (Func::Sinh | Func::Cosh, false) => (-711.0, 711.0),
        // Half beyond 10^6, where a vector calls libm for its large lanes.
        (Func::Sin | Func::Cos, _) => (-2.0e6, 2.0e6),
    }
}

/// A range where the algorithm's cases meet (reduction boundaries, cancellation), sampled densely.
fn focus(func: Func) -> (f64, f64) {
    match func {
        Func::Exp | Func::ExpDw | Func::ExpNonPositive | Func::Expm1 => (-2.0, 2.0),
        Func::Log | Func::LogPositive | Func::LogNormal => (0.25, 4.0),
        Func::Log1p | Func::Log1pNonNegative => (-0.75, 2.0),
        Func::Log1pUnit => (0.0, 1.0),
        Func::Log1pSmall => (-0.75, 1.0),
        Func::Sigmoid | Func::Softplus | Func::LogSigmoid => (-40.0, 40.0),
        Func::Tanh => (-5.0, 5.0),
        Func::Sinh | Func::Cosh => (-3.0, 3.0),
        Func::Sin | Func::Cos => (-10.0, 10.0),
    }
}

const SPECIALS: [f64; 16] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    f64::MIN_POSITIVE,
    5e-324,
    -5e-324,
    1e-300,
    -1e-300,
    f64::MAX,
    f64::MIN,
];

/// A third uniform in value over the range, a third uniform over the focus range and a third
/// uniform over the float encodings of the range (which reaches tiny magnitudes), plus specials.
fn samples64(func: Func, n: usize, seed: u64) -> Vec<f64> {
    let (lo, hi) = range(func, false);
    let mut rng = Rng(seed);
    let (klo, khi) = (ord64(lo), ord64(hi));
    let mut v: Vec<f64> = SPECIALS.to_vec();
    for i in 0..n {
        let (flo, fhi) = focus(func);
        let x = if i % 3 == 0 {
            lo + (hi - lo) * rng.unit()
        } else if i % 3 == 1 {
            flo + (fhi - flo) * rng.unit()
        } else {
            let span = (khi - klo) as u128;
            let r = (u128::from(rng.next()) << 64 | u128::from(rng.next())) % (span + 1);
            from_ord64(klo + r as i128)
        };
        v.push(x);
    }
    v
}

fn samples32(func: Func, n: usize, seed: u64) -> Vec<f32> {
    let (lo, hi) = range(func, true);
    let mut rng = Rng(seed);
    let (klo, khi) = (ord32(lo as f32), ord32(hi as f32));
    let mut v: Vec<f32> = SPECIALS.iter().map(|&x| x as f32).collect();
    v.extend([1e-45f32, -1e-45, 1.1754942e-38, f32::MIN_POSITIVE, -87.33655, -103.97208, 88.72284]);
    for i in 0..n {
        let (flo, fhi) = focus(func);
        let x = if i % 3 == 0 {
            (lo + (hi - lo) * rng.unit()) as f32
        } else if i % 3 == 1 {
            (flo + (fhi - flo) * rng.unit()) as f32
        } else {
            let span = (khi - klo) as u64 + 1;
            from_ord32(klo + (rng.next() % span) as i64)
        };
        v.push(x);
    }
    v
}

// ---- references ----

fn ref32(func: Func, x: f32) -> f64 {
    let x = f64::from(x);
    match func {
        Func::Exp | Func::ExpDw | Func::ExpNonPositive => x.exp(),
        Func::Log | Func::LogPositive | Func::LogNormal => x.ln(),
        Func::Log1p | Func::Log1pNonNegative | Func::Log1pUnit | Func::Log1pSmall => x.ln_1p(),
        Func::Expm1 => x.exp_m1(),
        Func::Sigmoid => {
            let e = (-x.abs()).exp();
            if x >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            }
        }
        Func::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        // Written as −(l − min(x, 0)) so the sign of a zero result is that of the exact value.
        Func::LogSigmoid => -((-x.abs()).exp().ln_1p() - x.min(0.0)),
        Func::Tanh => x.tanh(),
        Func::Sinh => x.sinh(),
        Func::Cosh => x.cosh(),
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
    }
}

/// The double-double reference, or the exact special result for inputs outside the finite
/// domain handled by `reference`.
fn ref64(func: Func, x: f64) -> Result<reference::Scaled, f64> {
    use reference as r;
    if x.is_nan() {
        return Err(f64::NAN);
    }
    match func {
        Func::Exp | Func::ExpDw | Func::ExpNonPositive => {
            if x > 710.0 {
                Err(f64::INFINITY)
            } else if x < -746.0 {
                Err(0.0)
            } else {
                Ok(r::exp(x))
            }
        }
        Func::Log | Func::LogPositive | Func::LogNormal => {
            if x < 0.0 {
                Err(f64::NAN)
            } else if x == 0.0 {
                Err(f64::NEG_INFINITY)
            } else if x.is_infinite() {
                Err(x)
            } else {
                Ok(r::Scaled::from_dd(r::ln(x)))
            }
        }
        Func::Log1p | Func::Log1pNonNegative | Func::Log1pUnit | Func::Log1pSmall => {
            if x < -1.0 {
                Err(f64::NAN)
            } else if x == -1.0 {
                Err(f64::NEG_INFINITY)
            } else if x.is_infinite() || x == 0.0 {
                Err(x)
            } else {
                Ok(r::Scaled::from_dd(r::ln_1p(x)))
            }
        }
        Func::Expm1 => {
            if x > 710.0 {
                Err(f64::INFINITY)
            } else if x < -40.0 {
                Err(-1.0)
            } else if x == 0.0 {
                Err(x)
            } else {
                Ok(r::expm1(x))
            }
        }
        Func::Sigmoid => {
            if x.is_infinite() {
                Err(if x > 0.0 { 1.0 } else { 0.0 })
            } else {
                Ok(r::sigmoid(x.clamp(-800.0, 800.0)))
            }
        }
        Func::Softplus => {
            if x.is_infinite() {
                Err(if x > 0.0 { x } else { 0.0 })
            } else if x > 800.0 {
                Err(x)
            } else {
                Ok(r::softplus(x.max(-800.0)))
            }
        }
        Func::LogSigmoid => {
            if x.is_infinite() {
                Err(if x > 0.0 { -0.0 } else { x })
            } else if x < -800.0 {
                Err(x)
            } else {
                Ok(r::log_sigmoid(x.min(800.0)))
            }
        }
        Func::Tanh => {
            if x.is_infinite() {
                Err(x.signum())
            } else if x == 0.0 {
                Err(x)
            } else {
                Ok(r::tanh(x.clamp(-30.0, 30.0)))
            }
        }
        Func::Sinh => {
            if x == 0.0 || x.is_infinite() {
                Err(x)
            } else if x.abs() > 711.0 {
                Err(x.signum() * f64::INFINITY)
            } else {
                Ok(r::sinh(x))
            }
        }
        Func::Cosh => {
            if x.abs() > 711.0 {
                Err(f64::INFINITY)
            } else {
                Ok(r::cosh(x))
            }
        }
        Func::Sin | Func::Cos => {
            if x.is_infinite() {
                Err(f64::NAN)
            } else if x.abs() > 1.0e12 {
                // Beyond the reference's reduction (only f64::MAX and MIN among the samples):
                // the kernels call libm there, which is its own reference.
                Err(if func == Func::Sin { x.sin() } else { x.cos() })
            } else if func == Func::Sin {
                if x == 0.0 {
                    Err(x)
                } else {
                    Ok(r::sin(x))
                }
            } else {
                Ok(r::cos(x))
            }
        }
    }
}

// ---- error measures ----

/// Error of one result: fractional ulps and bits. Infinite when a special value is wrong.
#[derive(Clone, Copy, Default)]
struct Err1 {
    ulp: f64,
    bits: f64,
}

fn bits_from_ord(d: u128) -> f64 {
    ((d as f64) + 1.0).log2()
}

/// Exact comparison for special results (NaN matches NaN; zeros must match in sign).
fn exact_special(y: f64, want: f64) -> Err1 {
    let ok = if want.is_nan() { y.is_nan() } else { y == want && y.is_sign_negative() == want.is_sign_negative() };
    if ok {
        Err1::default()
    } else {
        Err1 { ulp: f64::INFINITY, bits: f64::INFINITY }
    }
}

fn err32(y: f32, exact: f64) -> Err1 {
    if exact.is_nan() || exact.is_infinite() || exact == 0.0 {
        return exact_special(f64::from(y), exact);
    }
    let rounded = exact as f32;
    if rounded.is_infinite() {
        return exact_special(f64::from(y), f64::from(rounded));
    }
    if y.is_nan() || y.is_infinite() {
        return exact_special(f64::from(y), exact);
    }
    let e = exact.abs().log2().floor() as i32;
    let ulp = 2f64.powi(e.max(-126) - 23);
    let ulp_err = (f64::from(y) - exact).abs() / ulp;
    let d = (ord32(y) - ord32(rounded)).unsigned_abs();
    Err1 { ulp: ulp_err, bits: bits_from_ord(u128::from(d)) }
}

fn err64(y: f64, exact: Result<reference::Scaled, f64>) -> Err1 {
    let s = match exact {
        Err(v) => return exact_special(y, v),
        Ok(s) => s,
    };
    let rounded = s.to_f64();
    if rounded.is_infinite() || y.is_nan() || y.is_infinite() {
        return exact_special(y, rounded);
    }
    if s.m.hi == 0.0 {
        return exact_special(y, 0.0);
    }
    // Exponent of the exact value m·2^e.
    let mut em = s.m.hi.abs().log2().floor() as i32;
    if s.m.hi.abs() == 2f64.powi(em) && s.m.lo.signum() == -s.m.hi.signum() && s.m.lo != 0.0 {
        em -= 1;
    }
    let ulp_exp = (em + s.e).max(-1022) - 52;
    // (y·2^-e − m) / 2^(ulp_exp − e), all exact until the last operations.
    let ys = reference::ldexp(y, -s.e);
    let diff = (ys - s.m.hi) - s.m.lo;
    let ulp_err = reference::ldexp(diff.abs(), s.e - ulp_exp);
    let d = (ord64(y) - ord64(rounded)).unsigned_abs();
    Err1 { ulp: ulp_err, bits: bits_from_ord(d) }
}

/// Running maxima over a set of points.
#[derive(Clone, Copy, Default)]
struct Stats {
    n: u64,
    max_ulp: f64,
    worst_ulp_x: f64,
    max_bits: f64,
    worst_bits_x: f64,
    sum_bits: f64,
}

impl Stats {
    fn add(&mut self, x: f64, e: Err1) {
        self.n += 1;
        if e.ulp > self.max_ulp || e.ulp.is_nan() {
            self.max_ulp = e.ulp;
            self.worst_ulp_x = x;
        }
        if e.bits > self.max_bits {
            self.max_bits = e.bits;
            self.worst_bits_x = x;
        }
        self.sum_bits += e.bits;
    }

    fn merge(&mut self, o: &Stats) {
        self.n += o.n;
        self.sum_bits += o.sum_bits;
        if o.max_ulp > self.max_ulp {
            self.max_ulp = o.max_ulp;
            self.worst_ulp_x = o.worst_ulp_x;
        }
        if o.max_bits > self.max_bits {
            self.max_bits = o.max_bits;
            self.worst_bits_x = o.worst_bits_x;
        }
    }

    fn row(&self, label: &str) -> String {
        format!(
            "{label:<40} n={:>11} max_ulp={:>7.4} (x={:e}) max_bits={:>5.3} (x={:e}) mean_bits={:.4}",
            self.n,
            self.max_ulp,
            self.worst_ulp_x,
            self.max_bits,
            self.worst_bits_x,
            self.sum_bits / self.n.max(1) as f64
        )
    }

    /// Checks the bound for `func`; returns a failure message.
    fn check(&self, func: Func, is_f32: bool, label: &str) -> Option<String> {
        let ok = if is_base(func) { self.max_ulp <= MAX_ULP } else { self.max_bits <= max_bits(is_f32) };
        (!ok).then(|| format!("bound exceeded: {}", self.row(label)))
    }
}

fn label(func: Func, ty: &str, width: Width, target: Target) -> String {
    format!("{} {ty} {width:?} {target:?}", func.name())
}

fn run32(k: &Kernel<f32>, xs: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; xs.len()];
    k.run(xs, &mut out).expect("lengths match by construction");
    out
}

fn run64(k: &Kernel<f64>, xs: &[f64]) -> Vec<f64> {
    let mut out = vec![0f64; xs.len()];
    k.run(xs, &mut out).expect("lengths match by construction");
    out
}

fn stats32(func: Func, xs: &[f32], ys: &[f32], refs: &[f64]) -> Stats {
    let mut st = Stats::default();
    for ((&x, &y), &r) in xs.iter().zip(ys).zip(refs) {
        st.add(f64::from(x), err32(y, r));
    }
    let _ = func;
    st
}

// ---- tests ----

#[test]
fn features_and_no_libcalls() {
    let mut report = String::new();
    for target in [Target::Host, Target::HostNoFma, Target::Baseline] {
        let d = describe(target).expect("isa");
        writeln!(report, "{target:?}: {d}").ok();
        for func in Func::ALL {
            for width in [Width::Scalar, Width::Vector] {
                let k32 = Kernel::<f32>::new(func, width, target).expect("compile f32");
                let k64 = Kernel::<f64>::new(func, width, target).expect("compile f64");
                // The only calls are sin's and cos's libm fallback, once per lane in the
                // vector body's cold block and once in the scalar tail.
                let calls = |lanes: usize| match (func.fallback(), width) {
                    (None, _) => 0,
                    (Some(_), Width::Scalar) => 1,
                    (Some(_), Width::Vector) => lanes + 1,
                };
                assert_eq!(k32.relocs(), calls(4), "{} f32 {width:?} {target:?}", func.name());
                assert_eq!(k64.relocs(), calls(2), "{} f64 {width:?} {target:?}", func.name());
            }
        }
    }
    println!("{report}");
}

#[test]
fn length_mismatch_is_an_error() {
    let k = Kernel::<f32>::new(Func::Exp, Width::Vector, Target::Host).expect("compile");
    let mut out = vec![0f32; 3];
    assert!(k.run(&[1.0, 2.0], &mut out).is_err());
}

/// Expected results that must match exactly (bit for bit, NaN as any NaN).
fn special_table(func: Func, is_f32: bool) -> Vec<(f64, f64)> {
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let (min_sub, min_norm) =
        if is_f32 { (f64::from(f32::from_bits(1)), f64::from(f32::MIN_POSITIVE)) } else { (5e-324, f64::MIN_POSITIVE) };
    // `log_normal` and `log1p_small` leave NaN to their callers.
    let mut t = if matches!(func, Func::LogNormal | Func::Log1pSmall) { vec![] } else { vec![(nan, nan)] };
    match func {
        // `exp_dw` has two operands: `exp_dw_of_row_differences` checks its special rows.
        Func::ExpDw
        | Func::ExpNonPositive
        | Func::LogPositive
        | Func::LogNormal
        | Func::Log1pNonNegative
        | Func::Log1pUnit
        | Func::Log1pSmall => {}
        Func::Exp => {
            t.extend([
                (0.0, 1.0),
                (-0.0, 1.0),
                (inf, 0.0_f64.max(inf)),
                (-inf, 0.0),
                (1000.0, inf),
                (-1000.0, 0.0),
                (min_sub, 1.0),
                (-min_sub, 1.0),
            ]);
            // Around the clamp, where the scaling's 2^b is +0 (no subnormal arithmetic): 0
            // below half the least subnormal, the least subnormal just above it.
            if is_f32 {
                t.extend([
                    (-200.0, 0.0),
                    (-105.5, 0.0),
                    (-105.0, 0.0),
                    (-104.5, 0.0),
                    (-104.0, 0.0),
                    (-103.98, 0.0),
                    (-103.9, min_sub),
                    (-103.5, min_sub),
                ]);
            } else {
                t.extend([(-800.0, 0.0), (-746.0, 0.0), (-745.5, 0.0), (-745.2, 0.0), (-745.1, min_sub)]);
            }
        }
        Func::Log => {
            t.extend([(0.0, -inf), (-0.0, -inf), (1.0, 0.0), (inf, inf), (-inf, nan), (-1.0, nan), (-min_sub, nan)])
        }
        Func::Log1p => t.extend([
            (0.0, 0.0),
            (-0.0, -0.0),
            (-1.0, -inf),
            (-2.0, nan),
            (inf, inf),
            (-inf, nan),
            (min_sub, min_sub),
            (-min_sub, -min_sub),
            (min_norm, min_norm),
        ]),
        Func::Expm1 => t.extend([
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, inf),
            (-inf, -1.0),
            (1000.0, inf),
            (-1000.0, -1.0),
            (min_sub, min_sub),
            (-min_sub, -min_sub),
            (min_norm, min_norm),
        ]),
        Func::Sigmoid => t.extend([(0.0, 0.5), (-0.0, 0.5), (inf, 1.0), (-inf, 0.0), (1000.0, 1.0), (-1000.0, 0.0)]),
        Func::Softplus => t.extend([(inf, inf), (-inf, 0.0), (1000.0, 1000.0), (-1000.0, 0.0)]),
        Func::LogSigmoid => t.extend([(inf, -0.0), (-inf, -inf), (1000.0, -0.0), (-1000.0, -1000.0)]),
        Func::Tanh => t.extend([
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, 1.0),
            (-inf, -1.0),
            (100.0, 1.0),
            (-100.0, -1.0),
            (min_sub, min_sub),
            (-min_sub, -min_sub),
        ]),
        Func::Sinh => {
            let over = if is_f32 { 89.5 } else { 710.5 };
            t.extend([
                (0.0, 0.0),
                (-0.0, -0.0),
                (inf, inf),
                (-inf, -inf),
                (over, inf),
                (-over, -inf),
                (1000.0, inf),
                (min_sub, min_sub),
                (-min_sub, -min_sub),
                (min_norm, min_norm),
            ]);
        }
        Func::Cosh => {
            let over = if is_f32 { 89.5 } else { 710.5 };
            t.extend([(0.0, 1.0), (-0.0, 1.0), (inf, inf), (-inf, inf), (over, inf), (-1000.0, inf), (min_sub, 1.0)]);
        }
        Func::Sin => t.extend([
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, nan),
            (-inf, nan),
            (min_sub, min_sub),
            (-min_sub, -min_sub),
            (min_norm, min_norm),
        ]),
        Func::Cos => t.extend([(0.0, 1.0), (-0.0, 1.0), (inf, nan), (-inf, nan), (min_sub, 1.0), (-min_norm, 1.0)]),
    }
    t
}

#[test]
fn special_values_exact() {
    let mut failures = Vec::new();
    for func in Func::ALL {
        for (width, target) in CONFIGS {
            for is_f32 in [true, false] {
                let table = special_table(func, is_f32);
                // Repeat so the vector path sees every value in every lane position.
                let mut xs = Vec::new();
                let mut want = Vec::new();
                for shift in 0..4 {
                    for i in 0..table.len() {
                        let (x, w) = table[(i + shift) % table.len()];
                        xs.push(x);
                        want.push(w);
                    }
                }
                let ys: Vec<f64> = if is_f32 {
                    let k = Kernel::<f32>::new(func, width, target).expect("compile");
                    let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
                    run32(&k, &xs32).into_iter().map(f64::from).collect()
                } else {
                    let k = Kernel::<f64>::new(func, width, target).expect("compile");
                    run64(&k, &xs)
                };
                for ((&x, &y), &w) in xs.iter().zip(&ys).zip(&want) {
                    let w = if is_f32 { f64::from(w as f32) } else { w };
                    if exact_special(y, w).ulp != 0.0 {
                        failures.push(format!(
                            "{} {} {width:?} {target:?}: f({x:e}) = {y:e}, want {w:e}",
                            func.name(),
                            if is_f32 { "f32" } else { "f64" }
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn f32_sampled_impl(n: usize) {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (fi, func) in Func::ALL.into_iter().enumerate() {
        let xs = samples32(func, n, 0x5eed_0000 + fi as u64);
        let refs: Vec<f64> = xs.iter().map(|&x| ref32(func, x)).collect();
        let mut first: Option<Vec<f32>> = None;
        for (width, target) in CONFIGS {
            let k = Kernel::<f32>::new(func, width, target).expect("compile");
            let ys = run32(&k, &xs);
            let lab = label(func, "f32", width, target);
            let st = stats32(func, &xs, &ys, &refs);
            writeln!(report, "{}", st.row(&lab)).ok();
            failures.extend(st.check(func, true, &lab));
            // Scalar and vector code must agree bit for bit within one feature set.
            if target == Target::Host || target == Target::Baseline {
                match (&first, width) {
                    (Some(v), Width::Scalar) => {
                        let same =
                            v.iter().zip(&ys).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                        if !same {
                            failures.push(format!("{lab}: scalar differs from vector"));
                        }
                    }
                    _ => first = Some(ys),
                }
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn f32_sampled() {
    f32_sampled_impl(1_000_000);
}

/// The double-double reference must rate glibc's f64 exp, log, log1p and expm1 at their measured
/// ≤ 0.51–0.76 ulp (stability.md §5.4); this checks the reference itself.
#[test]
fn reference_rates_libm() {
    let mut report = String::new();
    let funcs =
        [Func::Exp, Func::Log, Func::Log1p, Func::Expm1, Func::Tanh, Func::Sinh, Func::Cosh, Func::Sin, Func::Cos];
    for (fi, func) in funcs.into_iter().enumerate() {
        let xs = samples64(func, 100_000, 0xabc0 + fi as u64);
        let mut st = Stats::default();
        for &x in &xs {
            let y = match func {
                Func::Exp => x.exp(),
                Func::Log => x.ln(),
                Func::Log1p => x.ln_1p(),
                Func::Expm1 => x.exp_m1(),
                Func::Sinh => x.sinh(),
                Func::Cosh => x.cosh(),
                Func::Sin => x.sin(),
                Func::Cos => x.cos(),
                _ => x.tanh(),
            };
            st.add(x, err64(y, ref64(func, x)));
        }
        let lab = format!("std f64 {}", func.name());
        writeln!(report, "{}", st.row(&lab)).ok();
        // glibc documents up to 2 ulp for tanh (confirmed with mpmath at x = 0.2525696855776802,
        // where glibc is 2.036 ulp off), and 2 for sinh and cosh, so only exp, log, log1p,
        // expm1, sin and cos are held to 1 ulp.
        let bound = if matches!(func, Func::Tanh | Func::Sinh | Func::Cosh) { 3.0 } else { 1.0 };
        assert!(st.max_ulp < bound, "{}", st.row(&lab));
    }
    println!("{report}");
}

fn f64_sampled_impl(n: usize, seed: u64) {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (fi, func) in Func::ALL.into_iter().enumerate() {
        let xs = samples64(func, n, seed + fi as u64);
        let refs: Vec<_> = xs.iter().map(|&x| ref64(func, x)).collect();
        for (width, target) in CONFIGS {
            let k = Kernel::<f64>::new(func, width, target).expect("compile");
            let ys = run64(&k, &xs);
            let mut st = Stats::default();
            for ((&x, &y), &r) in xs.iter().zip(&ys).zip(&refs) {
                st.add(x, err64(y, r));
            }
            let lab = label(func, "f64", width, target);
            writeln!(report, "{}", st.row(&lab)).ok();
            failures.extend(st.check(func, false, &lab));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn f64_sampled() {
    f64_sampled_impl(200_000, 0xd0_0000);
}

#[test]
fn f64_long() {
    if !long_run() {
        return;
    }
    f64_sampled_impl(10_000_000, 0x10_0000_0000);
}

/// Every finite f32 in the meaningful range of each function, on two threads.
#[test]
fn f32_exhaustive() {
    if !long_run() {
        return;
    }
    let mut report = String::new();
    let mut failures = Vec::new();
    for func in Func::ALL {
        for target in [Target::Host, Target::Baseline] {
            let (lo, hi) = range(func, true);
            let (klo, khi) = (ord32(lo as f32), ord32(hi as f32));
            let mid = klo + (khi - klo) / 2;
            let parts = [(klo, mid), (mid + 1, khi)];
            let results: Vec<Stats> = std::thread::scope(|s| {
                let handles: Vec<_> = parts
                    .iter()
                    .map(|&(a, b)| {
                        s.spawn(move || {
                            let k = Kernel::<f32>::new(func, Width::Vector, target).expect("compile");
                            let mut st = Stats::default();
                            let chunk = 1 << 20;
                            let mut xs = Vec::with_capacity(chunk);
                            let mut out = vec![0f32; chunk];
                            let mut start = a;
                            while start <= b {
                                let end = (start + chunk as i64 - 1).min(b);
                                xs.clear();
                                xs.extend((start..=end).map(from_ord32));
                                let out = &mut out[..xs.len()];
                                k.run(&xs, out).expect("lengths match");
                                for (&x, &y) in xs.iter().zip(out.iter()) {
                                    st.add(f64::from(x), err32(y, ref32(func, x)));
                                }
                                start = end + 1;
                            }
                            st
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("worker")).collect()
            });
            let mut st = Stats::default();
            for r in &results {
                st.merge(r);
            }
            let lab = format!("exhaustive {}", label(func, "f32", Width::Vector, target));
            writeln!(report, "{}", st.row(&lab)).ok();
            println!("{}", st.row(&lab));
            failures.extend(st.check(func, true, &lab));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The compiled scalar routines the kernels and the kernel interpreter share: `[a, b]` in f32
/// (`fns.f32`) and f64 (`fns.f64`), and `exp_dw`.
fn scalar_routines(a: Func, b: Func) -> crate::jit::abi::ScalarFns {
    use crate::jit::mathlib;
    use cranelift_codegen::ir::types;
    let addr = |f, ty| mathlib::address(f, ty).expect("compiles");
    crate::jit::abi::ScalarFns::new(
        &[addr(a, types::F32), addr(b, types::F32)],
        &[addr(a, types::F64), addr(b, types::F64)],
        (addr(Func::ExpDw, types::F32), addr(Func::ExpDw, types::F64)),
    )
}

/// `exp_dw(x, 0)` and `exp_nonpositive(x)` scale by `2^(n + exp_shift)·2^−exp_shift` where
/// `exp` takes two variable factors; both round once, so for `x ≤ 0` they agree with `exp`
/// bit for bit: near the clamp, through the subnormal results, up to 0.34 (the last `n = 0`),
/// and (f32, `LOSSC_LONG=1`) at every float in [−110, 0].
#[test]
fn exp_dw_and_exp_nonpositive_are_exp_bit_for_bit() {
    let fns = scalar_routines(Func::Exp, Func::ExpNonPositive);
    let (lo, hi) = ((-110.0f32).to_bits(), (-0.0f32).to_bits());
    let step = if long_run() { 1 } else { 997 };
    let near_clamp = (-105.5f32).to_bits()..=(-102.5f32).to_bits();
    let near_zero = 0..=0.34f32.to_bits();
    let special = [f32::NEG_INFINITY, f32::NAN, -f32::MAX, -f32::MIN_POSITIVE].map(f32::to_bits);
    let mut checked = 0u64;
    for bits in (hi..=lo).step_by(step).chain(near_clamp).chain(near_zero.step_by(step)).chain(special) {
        let x = f32::from_bits(bits);
        let e = (fns.f32[0])(x).to_bits();
        assert_eq!((fns.exp_dw_f32)(x, 0.0).to_bits(), e, "f32 exp_dw at {x}");
        assert_eq!((fns.f32[1])(x).to_bits(), e, "f32 exp_nonpositive at {x}");
        checked += 1;
    }
    let mut rng = Rng(0x5eed_0e4d);
    for i in 0..200_000 {
        let x = match i % 3 {
            0 => -746.5 + 4.0 * rng.unit(),
            1 => -750.0 * rng.unit(),
            _ => 0.34 * rng.unit(),
        };
        let e = (fns.f64[0])(x).to_bits();
        assert_eq!((fns.f64[1])(x).to_bits(), e, "f64 exp_nonpositive at {x}");
        if x <= 0.0 {
            assert_eq!((fns.exp_dw_f64)(x, 0.0).to_bits(), e, "f64 exp_dw at {x}");
        }
    }
    println!("{checked} f32 and 200000 f64 arguments agree");
}

/// Asserts that `variant` computes `generic`'s bits at the f32 arguments of `f32s` (bit
/// patterns) and the f64 arguments of `f64s`, through the compiled scalar routines; returns
/// how many f32 arguments were checked.
fn same_bits(generic: Func, variant: Func, f32s: impl Iterator<Item = u32>, f64s: impl Iterator<Item = f64>) -> u64 {
    let fns = scalar_routines(generic, variant);
    let mut checked = 0u64;
    for bits in f32s {
        let x = f32::from_bits(bits);
        let (want, got) = ((fns.f32[0])(x).to_bits(), (fns.f32[1])(x).to_bits());
        assert_eq!(
            got,
            want,
            "f32 {} at {x:e}: {} against {}",
            variant.name(),
            f32::from_bits(got),
            f32::from_bits(want)
        );
        checked += 1;
    }
    for x in f64s {
        let (want, got) = ((fns.f64[0])(x).to_bits(), (fns.f64[1])(x).to_bits());
        assert_eq!(
            got,
            want,
            "f64 {} at {x:e}: {} against {}",
            variant.name(),
            f64::from_bits(got),
            f64::from_bits(want)
        );
    }
    checked
}

/// 200,000 f64 arguments from `pick(i, rng)`, then `extra`.
fn f64_sample(seed: u64, pick: impl Fn(usize, &mut Rng) -> f64, extra: &[f64]) -> std::vec::IntoIter<f64> {
    let mut rng = Rng(seed);
    let mut sample: Vec<f64> = (0..200_000).map(|i| pick(i, &mut rng)).collect();
    sample.extend_from_slice(extra);
    sample.into_iter()
}

/// Every f32 with `LOSSC_LONG=1`, a stride of 997 otherwise.
fn stride() -> usize {
    if long_run() {
        1
    } else {
        997
    }
}

/// NaNs of either sign and other payloads: the routines return log's own NaN, not the
/// argument's.
const NAN_BITS: [u32; 4] = [0x7fc0_0000, 0xffc0_0000, 0x7fc0_1234, 0x7f80_0001];
const NAN64: [f64; 2] = [f64::NAN, -f64::NAN];

/// `log_positive` is `log` without the fix-ups for ±0, negative numbers and NaN: for every
/// argument > 0 — subnormal, normal, +inf — the two agree bit for bit (every positive f32
/// with `LOSSC_LONG=1`, a stride through them otherwise; 200,000 f64).
#[test]
fn log_positive_is_log_bit_for_bit() {
    let near_one = (0.5f32.to_bits()..=2.0f32.to_bits()).step_by(stride().max(7) / 7);
    let f32s = (1..=f32::INFINITY.to_bits()).step_by(stride()).chain(near_one).chain([1, 0x007f_ffff, 0x0080_0000]);
    let pick = |i: usize, rng: &mut Rng| match i % 4 {
        0 => f64::from_bits(1 + rng.next() % f64::MIN_POSITIVE.to_bits()),
        1 => 0.5 + 1.5 * rng.unit(),
        _ => f64::from_bits(1 + rng.next() % (f64::INFINITY.to_bits() - 1)),
    };
    let checked = same_bits(Func::Log, Func::LogPositive, f32s, f64_sample(0x10_9051, pick, &[f64::INFINITY]));
    println!("{checked} f32 and 200001 f64 arguments agree");
}

/// `log_normal` is `log` without fix-ups: for every positive normal finite argument the two
/// agree bit for bit (every such f32 with `LOSSC_LONG=1`, a stride through them otherwise,
/// and every f32 in [0.5, 2]; 200,000 f64).
#[test]
fn log_normal_is_log_bit_for_bit() {
    let near_one = (0.5f32.to_bits()..=2.0f32.to_bits()).step_by(stride().max(7) / 7);
    let f32s = (f32::MIN_POSITIVE.to_bits()..=f32::MAX.to_bits())
        .step_by(stride())
        .chain(near_one)
        .chain([f32::MIN_POSITIVE.to_bits(), f32::MAX.to_bits()]);
    let pick = |i: usize, rng: &mut Rng| match i % 4 {
        0 => f64::MIN_POSITIVE * (1.0 + 1e3 * rng.unit()),
        1 => 0.5 + 1.5 * rng.unit(),
        _ => f64::from_bits(
            f64::MIN_POSITIVE.to_bits() + rng.next() % (f64::MAX.to_bits() - f64::MIN_POSITIVE.to_bits()),
        ),
    };
    let extra = [f64::MIN_POSITIVE, f64::MAX, 1e-7, 0.9999999];
    let checked = same_bits(Func::Log, Func::LogNormal, f32s, f64_sample(0x10_90a1, pick, &extra));
    println!("{checked} f32 and 200004 f64 arguments agree");
}

/// `log1p_nonnegative` is `log1p` without the fix-up for −1: for every argument ≥ 0 (±0,
/// subnormal, normal, +inf) and NaN the two agree bit for bit (every such f32 with
/// `LOSSC_LONG=1`, a stride through them otherwise; 200,000 f64).
#[test]
fn log1p_nonnegative_is_log1p_bit_for_bit() {
    let near_zero = (0..=1.0f32.to_bits()).step_by(stride().max(7) / 7);
    let special = [(-0.0f32).to_bits(), f32::INFINITY.to_bits()].into_iter().chain(NAN_BITS);
    let f32s = (0..=f32::INFINITY.to_bits()).step_by(stride()).chain(near_zero).chain(special);
    let pick = |i: usize, rng: &mut Rng| match i % 4 {
        0 => f64::from_bits(rng.next() % f64::MIN_POSITIVE.to_bits()),
        1 => 2.0 * rng.unit(),
        _ => f64::from_bits(rng.next() % f64::INFINITY.to_bits()),
    };
    let extra = [-0.0, f64::INFINITY, NAN64[0], NAN64[1], f64::from_bits(0x7ff8_0000_0000_1234)];
    let checked = same_bits(Func::Log1p, Func::Log1pNonNegative, f32s, f64_sample(0x1091_0a0e, pick, &extra));
    println!("{checked} f32 and 200005 f64 arguments agree");
}

/// `log1p_unit` is `log1p` with the reduction of `1 + x` by one comparison and no fix-ups
/// but NaN's, in f64 and in f32 without `fma`: for every argument in [+0, 1] (subnormal, tiny,
/// both sides of the split point √2 − 1) and NaN the two agree bit for bit (200,000 f64; the
/// f32 arguments of [`log1p_unit_f32_within_an_ulp`] on a host without `fma`).
#[test]
fn log1p_unit_is_log1p_bit_for_bit() {
    let f32s = if host_has_fma() { Vec::new() } else { log1p_unit_f32_arguments() };
    let pick = |i: usize, rng: &mut Rng| match i % 4 {
        0 => f64::from_bits(rng.next() % 1e-15f64.to_bits()),
        1 => 0.4142 + 1e-4 * rng.unit(),
        _ => rng.unit(),
    };
    let extra = [0.0, 1.0, 2f64.sqrt() - 1.0, NAN64[0], NAN64[1]];
    let checked = same_bits(Func::Log1p, Func::Log1pUnit, f32s.into_iter(), f64_sample(0x1091_0a01, pick, &extra));
    println!("{checked} f32 and 200005 f64 arguments agree");
}

fn host_has_fma() -> bool {
    crate::jit::host_isa(crate::jit::Tier::Optimized).expect("host ISA").1.fma
}

/// Every f32 in [+0, 1] with `LOSSC_LONG=1`, a stride through them otherwise, and every f32
/// near the split point √2 − 1, near 1, the least subnormal and normal, and NaNs.
fn log1p_unit_f32_arguments() -> Vec<u32> {
    let split = 0.4142f32.to_bits()..=0.41425f32.to_bits();
    let one = 0.99999f32.to_bits()..=1.0f32.to_bits();
    (0..=1.0f32.to_bits()).step_by(stride()).chain(split).chain(one).chain([1, 0x0080_0000]).chain(NAN_BITS).collect()
}

/// The f32 `log1p_unit` the kernels and the kernel interpreter call (with `fma`: 2·atanh of
/// `x/(2 + x)`, not `log1p`'s code) is within 1 ulp of `log1p` (at most 0.68 measured over
/// every f32 in [0, 1]); tiny and subnormal arguments give themselves, ±0 gives +0, NaN NaN;
/// and the vector code computes the scalar routine's bits.
#[test]
fn log1p_unit_f32_within_an_ulp() {
    let f = scalar_routines(Func::Log1p, Func::Log1pUnit).f32[1];
    let xs: Vec<f32> = log1p_unit_f32_arguments().into_iter().map(f32::from_bits).collect();
    let vector = Kernel::<f32>::new(Func::Log1pUnit, Width::Vector, Target::Host).expect("compile");
    let ys = run32(&vector, &xs);
    let mut st = Stats::default();
    for (&x, &y) in xs.iter().zip(&ys) {
        let z = f(x);
        assert!(
            y.to_bits() == z.to_bits() || (y.is_nan() && z.is_nan()),
            "log1p_unit({x:e}): vector {y:e}, scalar {z:e}"
        );
        if x.is_nan() {
            assert!(y.is_nan(), "log1p_unit(NaN) = {y}");
            continue;
        }
        if x < 1e-8 {
            assert_eq!(y.to_bits(), x.to_bits(), "log1p_unit({x:e}) = {y:e}, not the argument itself");
        }
        st.add(f64::from(x), err32(y, f64::from(x).ln_1p()));
    }
    assert_eq!(f(-0.0).to_bits(), 0, "log1p_unit(−0) is +0");
    println!("{}", st.row("log1p_unit f32 scalar"));
    assert!(st.max_ulp <= MAX_ULP, "{}", st.row("log1p_unit f32 scalar"));
}

/// `log1p_small` is `log1p` with FastTwoSum and no fix-ups: for every argument in (−1, 1] of
/// magnitude at least `tiny` (near it, near −1) the two agree bit for bit
/// (every such f32 with `LOSSC_LONG=1`, a stride through them otherwise, and every f32 near
/// 0 and near −1; 200,000 f64).
#[test]
fn log1p_small_is_log1p_bit_for_bit() {
    use cranelift_codegen::ir::types;
    let (t32, t64) = (super::tiny(types::F32) as f32, super::tiny(types::F64));
    let near_tiny = (-t32).to_bits()..=(-1e-7f32).to_bits();
    let near_m1 = (-0.99999f32).to_bits()..(-1.0f32).to_bits();
    let f32s = (t32.to_bits()..=1.0f32.to_bits())
        .step_by(stride())
        .chain(((-t32).to_bits()..(-1.0f32).to_bits()).step_by(stride()))
        .chain(t32.to_bits()..=1e-7f32.to_bits())
        .chain(near_tiny)
        .chain(near_m1);
    let pick = |i: usize, rng: &mut Rng| match i % 4 {
        0 => {
            let x = f64::from_bits(t64.to_bits() + rng.next() % (1e-15f64.to_bits() - t64.to_bits()));
            if i.is_multiple_of(8) {
                -x
            } else {
                x
            }
        }
        1 => -1.0 + 1e-6 * (1.0 - rng.unit()),
        _ => 2.0 * rng.unit() - 1.0,
    };
    let extra = [t64, -t64, 1.0, -0.5, -1e-7];
    let checked = same_bits(Func::Log1p, Func::Log1pSmall, f32s, f64_sample(0x1091_05a1, pick, &extra));
    println!("{checked} f32 and 200005 f64 arguments agree");
}

/// `exp_dw(hi, lo)` for the row split's differences `x − m` (x ≤ m, TwoSum-split), through the
/// compiled scalar routines the kernels and the kernel interpreter share, against
/// `e^(x − m)` computed from the exact difference: within 1 ulp like `exp`; `x = −inf` (a NaN
/// rounding term) gives 0, `x = m` gives 1, NaN gives NaN.
#[test]
fn exp_dw_of_row_differences() {
    use crate::jit::{abi::ScalarFns, mathlib};
    use crate::math::two_diff;
    use cranelift_codegen::ir::types;
    let addr = |ty| mathlib::address(Func::ExpDw, ty).expect("exp_dw compiles");
    let fns = ScalarFns::new(&[], &[], (addr(types::F32), addr(types::F64)));
    let n = if long_run() { 10_000_000 } else { 400_000 };
    let mut rng = Rng(0x5eed_e8d0);
    let (mut s32, mut s64) = (Stats::default(), Stats::default());
    for i in 0..n {
        // Row maxima from ±20 up to ±2·10^5 (f32) or ±2·10^7 (f64), differences to e^−110
        // (f32, below the subnormals) and e^−760 (f64); every 16th x right at the max.
        let scale = 10f64.powf(4.0 * rng.unit());
        let m = (2.0 * rng.unit() - 1.0) * 20.0 * scale;
        let d = if i % 16 == 0 { 0.0 } else { rng.unit() };
        let (m32, x32) = ((m as f32), ((m - 110.0 * d) as f32));
        let (hi, lo) = two_diff(x32, m32);
        let exact = reference::exp(f64::from(x32) - f64::from(m32)).to_f64();
        s32.add(f64::from(x32) - f64::from(m32), err32((fns.exp_dw_f32)(hi, lo), exact));
        let m64 = m * 100.0;
        let x64 = m64 - 760.0 * d;
        let (hi, lo) = two_diff(x64, m64);
        let e = reference::exp(hi);
        let exact = reference::Scaled { m: e.m.mul(reference::Dd::new(1.0).add(reference::Dd::new(lo))), e: e.e };
        s64.add(x64 - m64, err64((fns.exp_dw_f64)(hi, lo), Ok(exact)));
    }
    println!("{}\n{}", s32.row("exp_dw f32 (scalar routine)"), s64.row("exp_dw f64 (scalar routine)"));
    assert!(s32.max_ulp <= MAX_ULP, "{}", s32.row("exp_dw f32"));
    assert!(s64.max_ulp <= MAX_ULP, "{}", s64.row("exp_dw f64"));
    // Special rows: a −inf entry, the max itself, NaN.
    for m in [0.0f32, -3.5, 1e4] {
        let (hi, lo) = two_diff(f32::NEG_INFINITY, m);
        assert_eq!((fns.exp_dw_f32)(hi, lo).to_bits(), 0f32.to_bits(), "e^(−inf − {m})");
        let (hi, lo) = two_diff(m, m);
        assert_eq!((fns.exp_dw_f32)(hi, lo), 1.0, "e^({m} − {m})");
        let (hi, lo) = two_diff(f64::NEG_INFINITY, f64::from(m));
        assert_eq!((fns.exp_dw_f64)(hi, lo).to_bits(), 0f64.to_bits(), "e^(−inf − {m})");
        let (hi, lo) = two_diff(f64::from(m), f64::from(m));
        assert_eq!((fns.exp_dw_f64)(hi, lo), 1.0, "e^({m} − {m})");
    }
    assert!((fns.exp_dw_f32)(f32::NAN, 0.0).is_nan() && (fns.exp_dw_f64)(f64::NAN, f64::NAN).is_nan());
}
