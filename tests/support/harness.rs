//! The accuracy harness: samples the hard input classes of stability.md §8.2, evaluates a
//! loss and its gradients with the interpreter and the JIT (stabilized and as written),
//! compares with the high-precision reference of [`super::reference`], and scores in
//! Herbie's bits of error.
//!
//! Scores: `bits = log2(1 + |ordinal(got) − ordinal(want)|)` in the dtype's ordering
//! (0 and −0 equal; NaN against a number scores the type width). A point is
//! *ill-conditioned* when the relative condition number of the output element (the value
//! or one gradient entry) with respect to all inputs exceeds 2^10. κ is estimated from
//! relative perturbations of 2^-26 of each input with the stabilized f64 interpreter, and
//! recomputed from the reference wherever an engine is more than 2 bits off at a point that
//! estimate calls well-conditioned. Ill-conditioned points are counted apart, and the mean
//! and maximum are taken over the well-conditioned ones. `nonfinite` counts NaN/±inf
//! results where the true value is finite, over every point.

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::ir::{Dtype, NodeId};
use lossc::jit::JitLoss;
use lossc::program::{Layout, Program, ReduceMode};
use lossc::{compile, CompileOptions};

use super::reference::{reference, Sample};

/// Deterministic uniform numbers (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// ±1.
    pub fn sign(&mut self) -> f64 {
        if self.bits() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// A standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// How one scalar input is drawn (each draw picks one of the kind's classes at random).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gen {
    /// Logits: U(−20, 20), U(−50, 50) with thresholds ± 1 ulp, ±10^U(1, 4), uniform bit
    /// patterns, specials (±0, ±smallest subnormal, ±largest finite).
    Logit,
    /// Non-positive log-probabilities: −|logit|.
    LogProb,
    /// Hard labels {0, 1}.
    Hard,
    /// Margin labels {−1, 1}.
    Margin,
    /// Soft labels: hard, U(0, 1), smoothed ε and 1 − ε.
    Soft,
    /// Probabilities: U(0, 1), near 0, near 1, exactly 0 and 1.
    Prob,
    /// Positive rates / variances: 10^U(−10, 10) and U(0, 5).
    Positive,
    /// Non-negative magnitudes (MSLE): 0, U(0, 10), 10^U(−10, 10).
    NonNeg,
    /// Residuals: ±10^U(−10, 3) (f32) or ±10^U(−30, 30) (f64), and near overflow.
    Residual,
    /// Counts 0..10.
    Count,
    /// Similarities U(−1, 1).
    Similarity,
    /// A constant.
    Fixed(f64),
}

/// How a `[C]` row (and the row's index target) is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowGen {
    /// Logit rows: offset ±10^U(0, 4) + spread 10^U(−3, 2)·N(0, 1), confident-correct,
    /// confident-wrong (margin U(5, 100)), all equal, U(−20, 20), entries masked at −inf.
    Logits,
    /// Target distributions: one-hot or normalized U(0, 1) (with exact zeros).
    Distribution,
    /// Positive distributions (no zeros).
    PositiveDistribution,
    /// Nearly parallel pairs at large and tiny scales (with the row of the other input).
    Vector,
    /// Similarities U(−1, 1).
    Similarity,
}

/// A formula to measure.
#[derive(Clone, Debug)]
pub struct Formula {
    /// Short name.
    pub name: &'static str,
    /// The `.loss` text.
    pub source: String,
    /// Scalar inputs' generators, by name.
    pub scalars: Vec<(&'static str, Gen)>,
    /// `[C]` inputs' generators, by name.
    pub rows: Vec<(&'static str, RowGen)>,
    /// Classes per row for `[C]` formulas.
    pub classes: usize,
}

fn f32_round(x: f64) -> f64 {
    f64::from(x as f32)
}

fn thresholds(dtype: Dtype) -> Vec<f64> {
    let mut t = vec![9.0, 15.0, 16.0, 16.6, 18.0, 20.0, 33.3, 36.7, 37.0];
    match dtype {
        Dtype::F32 => t.extend([88.72, -88.72, -103.97, 87.0, -87.0]),
        Dtype::F64 => t.extend([709.78, -709.78, -745.13, 708.0, -708.0]),
    }
    t
}

fn next_after(x: f64, up: bool, dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => {
            let b = (x as f32).to_bits() as i64;
            let s = if (x >= 0.0) == up { 1 } else { -1 };
            f64::from(f32::from_bits((b + s) as u32))
        }
        Dtype::F64 => {
            let b = x.to_bits() as i64;
            let s = if (x >= 0.0) == up { 1 } else { -1 };
            f64::from_bits((b + s) as u64)
        }
    }
}

fn finite_bits(rng: &mut Rng, dtype: Dtype) -> f64 {
    loop {
        let x = match dtype {
            Dtype::F32 => f64::from(f32::from_bits(rng.bits() as u32)),
            Dtype::F64 => f64::from_bits(rng.bits()),
        };
        if x.is_finite() {
            return x;
        }
    }
}

fn specials(dtype: Dtype) -> Vec<f64> {
    let (sub, max) = match dtype {
        Dtype::F32 => (f64::from(f32::from_bits(1)), f64::from(f32::MAX)),
        Dtype::F64 => (f64::from_bits(1), f64::MAX),
    };
    vec![0.0, -0.0, sub, -sub, max, -max]
}

fn pick(rng: &mut Rng, list: &[f64]) -> f64 {
    list[rng.below(list.len())]
}

/// One scalar draw.
pub fn draw(g: Gen, rng: &mut Rng, dtype: Dtype) -> f64 {
    let f32m = dtype == Dtype::F32;
    let x = match g {
        Gen::Logit => match rng.below(5) {
            0 => rng.uniform(-20.0, 20.0),
            1 => {
                if rng.below(2) == 0 {
                    rng.uniform(-50.0, 50.0)
                } else {
                    let t = pick(rng, &thresholds(dtype)) * rng.sign();
                    match rng.below(4) {
                        0 => t,
                        1 => next_after(t, true, dtype),
                        2 => next_after(t, false, dtype),
                        _ => t + rng.sign() * (2.0f64).powi(-10),
                    }
                }
            }
            2 => rng.sign() * 10f64.powf(rng.uniform(1.0, 4.0)),
            3 => finite_bits(rng, dtype),
            _ => pick(rng, &specials(dtype)),
        },
        Gen::LogProb => -draw(Gen::Logit, rng, dtype).abs(),
        Gen::Hard => rng.below(2) as f64,
        Gen::Margin => rng.sign(),
        Gen::Soft => match rng.below(3) {
            0 => rng.below(2) as f64,
            1 => rng.unit(),
            _ => {
                let eps = pick(rng, &[0.1, 0.05, 1e-2, 1e-4, 1e-8]);
                if rng.below(2) == 0 {
                    eps
                } else {
                    1.0 - eps
                }
            }
        },
        Gen::Prob => match rng.below(4) {
            0 => rng.unit(),
            1 => 10f64.powf(-rng.uniform(0.0, if f32m { 45.0 } else { 320.0 })),
            2 => 1.0 - 10f64.powf(-rng.uniform(0.0, if f32m { 7.0 } else { 16.0 })),
            _ => rng.below(2) as f64,
        },
        Gen::Positive => match rng.below(2) {
            0 => 10f64.powf(rng.uniform(-10.0, 10.0)),
            _ => rng.uniform(0.0, 5.0).max(1e-3),
        },
        Gen::NonNeg => match rng.below(3) {
            0 => 0.0,
            1 => rng.uniform(0.0, 10.0),
            _ => 10f64.powf(rng.uniform(-10.0, 10.0)),
        },
        Gen::Residual => match rng.below(6) {
            0 => rng.sign() * if f32m { 3e38 * rng.unit() } else { 1.7e308 * rng.unit() },
            1 => rng.uniform(-5.0, 5.0),
            _ => {
                let (lo, hi) = if f32m { (-10.0, 3.0) } else { (-30.0, 30.0) };
                rng.sign() * 10f64.powf(rng.uniform(lo, hi))
            }
        },
        Gen::Count => rng.below(11) as f64,
        Gen::Similarity => rng.uniform(-1.0, 1.0),
        Gen::Fixed(v) => v,
    };
    if f32m {
        f32_round(x)
    } else {
        x
    }
}

/// One row draw (and the index target where the row has one: the target class).
pub fn draw_row(g: RowGen, rng: &mut Rng, c: usize, dtype: Dtype, k: usize) -> Vec<f64> {
    let mut row: Vec<f64> = match g {
        RowGen::Logits => match rng.below(6) {
            0 => {
                let off = rng.sign() * 10f64.powf(rng.uniform(0.0, 4.0));
                let spread = 10f64.powf(rng.uniform(-3.0, 2.0));
                (0..c).map(|_| off + spread * rng.normal()).collect()
            }
            1 | 2 => {
                // Confident: class k (correct) or another class (wrong) leads by a margin.
                let lead = if rng.below(2) == 0 { k } else { (k + 1) % c };
                let base: Vec<f64> = (0..c).map(|_| rng.uniform(-3.0, 3.0)).collect();
                let top = base.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let margin = rng.uniform(5.0, 100.0);
                base.iter().enumerate().map(|(j, x)| if j == lead { top + margin } else { *x }).collect()
            }
            3 => vec![rng.uniform(-10.0, 10.0); c],
            4 => (0..c).map(|_| rng.uniform(-20.0, 20.0)).collect(),
            _ => {
                let mut r: Vec<f64> = (0..c).map(|_| rng.uniform(-20.0, 20.0)).collect();
                for (j, x) in r.iter_mut().enumerate() {
                    if j != k && rng.below(3) == 0 {
                        *x = f64::NEG_INFINITY;
                    }
                }
                r
            }
        },
        RowGen::Distribution | RowGen::PositiveDistribution => {
            if g == RowGen::Distribution && rng.below(2) == 0 {
                (0..c).map(|j| if j == k { 1.0 } else { 0.0 }).collect()
            } else {
                let w: Vec<f64> = (0..c)
                    .map(|_| {
                        let u = rng.unit();
                        if g == RowGen::Distribution && u < 0.2 {
                            0.0
                        } else {
                            u.max(1e-6) * 10f64.powf(-rng.uniform(0.0, 6.0))
                        }
                    })
                    .collect();
                let s: f64 = w.iter().sum();
                if s == 0.0 {
                    vec![1.0 / c as f64; c]
                } else {
                    w.iter().map(|x| x / s).collect()
                }
            }
        }
        RowGen::Vector => {
            let scales: &[f64] =
                if dtype == Dtype::F32 { &[1.0, 1e-15, 1e15, 1e-30, 1e30] } else { &[1.0, 1e-20, 1e20, 1e-150, 1e150] };
            let scale = pick(rng, scales);
            (0..c).map(|_| scale * rng.normal()).collect()
        }
        RowGen::Similarity => (0..c).map(|_| rng.uniform(-1.0, 1.0)).collect(),
    };
    if dtype == Dtype::F32 {
        for x in &mut row {
            *x = f32_round(*x);
        }
    }
    row
}

/// Scores of one output (the value or one gradient) of one formula in one dtype.
#[derive(Clone, Debug, Default)]
pub struct Score {
    /// Output points.
    pub points: usize,
    /// Points with a reference value.
    pub referenced: usize,
    /// Points whose reference came from the stabilized form (the as-written form could
    /// not be resolved at any precision tried, or is undefined there, like 0*log(0)).
    pub via_stable: usize,
    /// Ill-conditioned points (excluded from mean/max).
    pub ill: usize,
    /// Mean bits of error over well-conditioned points.
    pub mean_bits: f64,
    /// Largest bits of error over well-conditioned points.
    pub max_bits: f64,
    /// Largest excess over well-conditioned points: bits − log2(max(1, κ)), the error that
    /// the condition number κ does not explain (a backward-stable kernel stays near 1).
    pub max_excess: f64,
    /// NaN/±inf results where the true value is finite (all points).
    pub nonfinite: usize,
    /// The same for the formula as written (no stabilization).
    pub naive_mean_bits: f64,
    /// Largest bits of the formula as written.
    pub naive_max_bits: f64,
    /// Non-finite results of the formula as written.
    pub naive_nonfinite: usize,
    /// The worst well-conditioned point: (inputs of its sample, got, want).
    pub worst: Option<(Vec<Vec<f64>>, f64, f64)>,
    /// The first point with a spurious non-finite result: (inputs, got, want).
    pub first_nonfinite: Option<(Vec<Vec<f64>>, f64, f64)>,
    /// The point of the largest excess: (inputs, got, want, κ).
    pub worst_excess: Option<(Vec<Vec<f64>>, f64, f64, f64)>,
}

/// Bits of error (Herbie): log2(1 + ulps between `got` and `want` in the dtype).
pub fn bits(got: f64, want: f64, dtype: Dtype) -> f64 {
    let width = match dtype {
        Dtype::F32 => 32.0,
        Dtype::F64 => 64.0,
    };
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() { 0.0 } else { width };
    }
    let ord = |x: f64| -> i128 {
        match dtype {
            Dtype::F32 => {
                let b = (x as f32).to_bits() as i32;
                i128::from(if b < 0 { i32::MIN - b } else { b })
            }
            Dtype::F64 => {
                let b = x.to_bits() as i64;
                i128::from(if b < 0 { i64::MIN - b } else { b })
            }
        }
    };
    let d = (ord(got) - ord(want)).unsigned_abs() as f64;
    (1.0 + d).log2()
}

/// A formula's programs in one dtype.
struct Compiled {
    raw: Program,
    stable: Program,
}

fn compile_both(source: &str, dtype: Dtype) -> Compiled {
    let opts = |stabilize| CompileOptions { dtype, params: Vec::new(), hessian: false, stabilize };
    let raw = compile(source, &opts(false)).unwrap_or_else(|d| panic!("{source}: {d:?}"));
    let stable = compile(source, &opts(true)).unwrap_or_else(|d| panic!("{source}: {d:?}"));
    Compiled { raw, stable }
}

/// Samples: per sample, the data of each program input.
fn sample_inputs(f: &Formula, prog: &Program, n: usize, dtype: Dtype, rng: &mut Rng) -> Vec<Sample> {
    let c = f.classes;
    (0..n)
        .map(|_| {
            let k = rng.below(c.max(1));
            let mut pair_row: Option<Vec<f64>> = None;
            prog.inputs
                .iter()
                .map(|decl| match decl.layout {
                    Layout::Index => vec![k as f64],
                    Layout::Classes => {
                        let g = f.rows.iter().find(|(n, _)| *n == decl.name).map_or(RowGen::Logits, |(_, g)| *g);
                        if g == RowGen::Vector {
                            // The second vector of a pair is the first, slightly perturbed.
                            if let Some(first) = &pair_row {
                                let eps = 10f64.powf(-rng.uniform(1.0, 8.0));
                                let mut r: Vec<f64> = first.iter().map(|x| x * (1.0 + eps * rng.normal())).collect();
                                if dtype == Dtype::F32 {
                                    r.iter_mut().for_each(|x| *x = f32_round(*x));
                                }
                                return r;
                            }
                            let r = draw_row(g, rng, c, dtype, k);
                            pair_row = Some(r.clone());
                            return r;
                        }
                        draw_row(g, rng, c, dtype, k)
                    }
                    Layout::Scalar => {
                        let g = f.scalars.iter().find(|(n, _)| *n == decl.name).map_or(Gen::Logit, |(_, g)| *g);
                        vec![draw(g, rng, dtype)]
                    }
                })
                .collect()
        })
        .collect()
}

/// Which engine computes a formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The reference interpreter (`lossc::eval::evaluate`).
    Interp,
    /// The Cranelift kernels (`lossc::jit::JitLoss::evaluate`).
    Jit,
}

impl Engine {
    /// `"interp"` or `"jit"`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => "interp",
            Engine::Jit => "jit",
        }
    }
}

/// Outputs per sample, through `engine`: [value, grad elements of each pred...] per output.
fn run(engine: Engine, prog: &Program, samples: &[Sample], classes: usize) -> Vec<Vec<Vec<f64>>> {
    let n = samples.len();
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for (i, decl) in prog.inputs.iter().enumerate() {
        let data: Vec<f64> = samples.iter().flat_map(|s| s[i].iter().copied()).collect();
        let shape = if decl.layout == Layout::Classes { vec![n, classes] } else { vec![n] };
        arrays.push((decl.name.clone(), Array { shape, data }));
    }
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: false, upstream: None };
    let out = match engine {
        Engine::Interp => evaluate(prog, &refs, &opts),
        Engine::Jit => {
            let jit = JitLoss::new(prog.clone()).unwrap_or_else(|e| panic!("jit: {e}"));
            jit.evaluate(&refs, &opts)
        }
    }
    .unwrap_or_else(|d| panic!("{}: {d:?}", engine.name()));
    let LossValue::PerItem(loss) = out.loss else { panic!("reduce none gives per-item values") };
    (0..n)
        .map(|s| {
            let mut outs = vec![vec![loss[s]]];
            for (name, g) in &out.grad {
                let w = if prog.inputs.iter().any(|d| &d.name == name && d.layout == Layout::Classes) {
                    classes
                } else {
                    1
                };
                outs.push(g[s * w..(s + 1) * w].to_vec());
            }
            outs
        })
        .collect()
}

fn run_interp(prog: &Program, samples: &[Sample], classes: usize) -> Vec<Vec<Vec<f64>>> {
    run(Engine::Interp, prog, samples, classes)
}

fn roots(prog: &Program) -> Vec<NodeId> {
    let mut r = vec![prog.loss];
    r.extend(prog.derivs.iter().map(|d| d.grad));
    r
}

/// Output names: `value`, `grad NAME`...
pub fn output_names(source: &str) -> Vec<String> {
    let prog = compile_both(source, Dtype::F64).stable;
    let mut names = vec!["value".to_string()];
    names.extend(prog.derivs.iter().map(|d| format!("grad {}", prog.inputs[d.input as usize].name)));
    names
}

/// Relative perturbation used to estimate condition numbers.
const DELTA: f64 = 1.0 / (1u64 << 26) as f64;

/// Condition numbers above this count a point as ill-conditioned.
pub const ILL: f64 = 1024.0;

/// Adds to `kappa` (per output, per element) Σ over the float input entries of
/// |relative change of the output| / δ under a relative perturbation δ of that entry,
/// `eval` giving the outputs at a perturbed sample (`None`: unknown there).
fn add_kappa(
    kappa: &mut [Vec<f64>],
    base: &[Vec<Option<f64>>],
    sample: &Sample,
    prog: &Program,
    classes: usize,
    eval: &mut dyn FnMut(&Sample) -> Vec<Vec<Option<f64>>>,
) {
    for (i, decl) in prog.inputs.iter().enumerate() {
        if decl.layout == Layout::Index {
            continue;
        }
        let width = if decl.layout == Layout::Classes { classes } else { 1 };
        for j in 0..width {
            if sample[i][j] == 0.0 || !sample[i][j].is_finite() {
                continue;
            }
            let mut pert = sample.clone();
            pert[i][j] *= 1.0 + DELTA;
            let out = eval(&pert);
            for (o, kv) in kappa.iter_mut().enumerate() {
                for (e, k) in kv.iter_mut().enumerate() {
                    *k += match (out[o][e], base[o][e]) {
                        (Some(a), Some(b)) if a == b => 0.0,
                        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => ((a - b) / b).abs() / DELTA,
                        (None, _) | (_, None) => f64::NAN,
                        _ => f64::INFINITY,
                    };
                }
            }
        }
    }
}

/// The scores of one formula in one dtype, per engine: one [`Score`] per output.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Through the interpreter.
    pub interp: Vec<Score>,
    /// Through the JIT kernels.
    pub jit: Vec<Score>,
}

impl Measurement {
    /// The scores of one engine.
    pub fn of(&self, engine: Engine) -> &[Score] {
        match engine {
            Engine::Interp => &self.interp,
            Engine::Jit => &self.jit,
        }
    }
}

/// Measures one formula in one dtype over `n` samples, through the interpreter and the JIT.
///
/// Condition numbers are estimated for every output element (the value and each gradient
/// entry) by relative perturbations of 2^-26 of each float input entry, first with the
/// stabilized f64 interpreter; wherever an engine is off by more than 2 bits at a point
/// that estimate calls well-conditioned, κ is recomputed from the high-precision reference
/// (rounded to f64), so a kernel's own error cannot hide or fake ill-conditioning. Points
/// with κ above `ill` ([`ILL`] for the accuracy table; 2 for the well-conditioned points in
/// the strict sense) count as ill-conditioned, out of the mean and max.
pub fn measure(f: &Formula, dtype: Dtype, n: usize, seed: u64, ill: f64) -> Measurement {
    let c = compile_both(&f.source, dtype);
    let c64 = compile_both(&f.source, Dtype::F64);
    let mut rng = Rng(seed);
    let classes = f.classes.max(1);
    let samples = sample_inputs(f, &c.stable, n, dtype, &mut rng);
    let engines = [Engine::Interp, Engine::Jit];
    let got: Vec<_> = engines.iter().map(|e| run(*e, &c.stable, &samples, classes)).collect();
    let naive: Vec<_> = engines.iter().map(|e| run(*e, &c.raw, &samples, classes)).collect();
    let base64 = run_interp(&c64.stable, &samples, classes);
    let n_out = base64.first().map_or(0, Vec::len);
    // Condition numbers from the f64 kernel: one batched run per perturbed input entry.
    let mut kappa: Vec<Vec<Vec<f64>>> = base64.iter().map(|o| o.iter().map(|v| vec![0.0; v.len()]).collect()).collect();
    for (i, decl) in c.stable.inputs.iter().enumerate() {
        if decl.layout == Layout::Index {
            continue;
        }
        let width = if decl.layout == Layout::Classes { classes } else { 1 };
        for j in 0..width {
            let mut pert: Vec<Sample> = samples.clone();
            for s in &mut pert {
                s[i][j] *= 1.0 + DELTA;
            }
            let out = run_interp(&c64.stable, &pert, classes);
            for s in 0..n {
                for o in 0..n_out {
                    for e in 0..out[s][o].len() {
                        let (a, b) = (out[s][o][e], base64[s][o][e]);
                        let rel = if a == b {
                            0.0
                        } else if b == 0.0 || !b.is_finite() || !a.is_finite() {
                            f64::INFINITY
                        } else {
                            ((a - b) / b).abs() / DELTA
                        };
                        kappa[s][o][e] += rel;
                    }
                }
            }
        }
    }
    let raw_roots = roots(&c.raw);
    let stable_roots = roots(&c.stable);
    let exact64 = |s: &Sample| -> Vec<Vec<Option<f64>>> {
        let mut v = reference(&c.raw, s, classes, &raw_roots, Dtype::F64);
        if v.iter().flatten().any(|w| w.is_none_or(f64::is_nan)) {
            let alt = reference(&c.stable, s, classes, &stable_roots, Dtype::F64);
            for (wv, av) in v.iter_mut().zip(alt) {
                for (w, a) in wv.iter_mut().zip(av) {
                    if w.is_none_or(f64::is_nan) {
                        *w = a;
                    }
                }
            }
        }
        v
    };
    let mut scores = [vec![Score::default(); n_out], vec![Score::default(); n_out]];
    let mut sums = [vec![(0.0f64, 0usize, 0.0f64); n_out], vec![(0.0f64, 0usize, 0.0f64); n_out]];
    for s in 0..n {
        let mut want = reference(&c.raw, &samples[s], classes, &raw_roots, dtype);
        // Where the formula as written is undefined (NaN, e.g. 0*log(0)), the value of its
        // continuous extension is what the stabilized form computes: take that reference.
        for v in &mut want {
            for w in v.iter_mut() {
                if w.is_some_and(f64::is_nan) {
                    *w = None;
                }
            }
        }
        let missing = want.iter().any(|v| v.iter().any(Option::is_none));
        let alt = missing.then(|| reference(&c.stable, &samples[s], classes, &stable_roots, dtype));
        let mut exact_kappa: Option<Vec<Vec<f64>>> = None;
        for o in 0..n_out {
            for e in 0..got[0][s][o].len() {
                let mut w = want[o].get(e).copied().flatten();
                let from_stable = w.is_none();
                if w.is_none() {
                    w = alt.as_ref().and_then(|a| a[o].get(e).copied().flatten());
                }
                let mut k = kappa[s][o][e];
                if let Some(w) = w {
                    let suspicious = (0..2).any(|x| bits(got[x][s][o][e], w, dtype) > 2.0);
                    if suspicious && k <= ill {
                        let ek = exact_kappa.get_or_insert_with(|| {
                            let base = exact64(&samples[s]);
                            let mut kk: Vec<Vec<f64>> = base.iter().map(|v| vec![0.0; v.len()]).collect();
                            add_kappa(&mut kk, &base, &samples[s], &c.raw, classes, &mut |p| exact64(p));
                            kk
                        });
                        // An unknown exact κ keeps the kernel's estimate.
                        if !ek[o][e].is_nan() {
                            k = ek[o][e];
                        }
                    }
                }
                for x in 0..2 {
                    let sc = &mut scores[x][o];
                    sc.points += 1;
                    let Some(w) = w else { continue };
                    if from_stable {
                        sc.via_stable += 1;
                    }
                    sc.referenced += 1;
                    let (g, nv) = (got[x][s][o][e], naive[x][s][o][e]);
                    if w.is_finite() && !g.is_finite() {
                        sc.nonfinite += 1;
                        if sc.first_nonfinite.is_none() {
                            sc.first_nonfinite = Some((samples[s].clone(), g, w));
                        }
                    }
                    if w.is_finite() && !nv.is_finite() {
                        sc.naive_nonfinite += 1;
                    }
                    if k.is_nan() || k > ill {
                        sc.ill += 1;
                        continue;
                    }
                    let b = bits(g, w, dtype);
                    let bn = bits(nv, w, dtype);
                    let excess = b - k.max(1.0).log2();
                    if excess > sc.max_excess || sc.worst_excess.is_none() {
                        sc.max_excess = sc.max_excess.max(excess);
                        sc.worst_excess = Some((samples[s].clone(), g, w, k));
                    }
                    let acc = &mut sums[x][o];
                    acc.0 += b;
                    acc.1 += 1;
                    acc.2 += bn;
                    if b > sc.max_bits || sc.worst.is_none() {
                        sc.max_bits = sc.max_bits.max(b);
                        sc.worst = Some((samples[s].clone(), g, w));
                    }
                    sc.naive_max_bits = sc.naive_max_bits.max(bn);
                }
            }
        }
    }
    for x in 0..2 {
        for (sc, acc) in scores[x].iter_mut().zip(&sums[x]) {
            let k = acc.1.max(1) as f64;
            sc.mean_bits = acc.0 / k;
            sc.naive_mean_bits = acc.2 / k;
        }
    }
    let [interp, jit] = scores;
    Measurement { interp, jit }
}

/// The benchmark formulas of stability.md §8.1, items 1–20 (with variants).
pub fn benchmark() -> Vec<Formula> {
    use Gen::*;
    use RowGen::*;
    let f = |name, source: &str, scalars: Vec<(&'static str, Gen)>, rows: Vec<(&'static str, RowGen)>, classes| {
        Formula { name, source: source.to_string(), scalars, rows, classes }
    };
    vec![
        f("1 bce_sigmoid", "pred x\ntarget y\n-(y*log(sigmoid(x)) + (1-y)*log(1-sigmoid(x)))", vec![("x", Logit), ("y", Soft)], vec![], 1),
        f("2 bce_logistic", "pred x\ntarget y\n-(y*log(1/(1+exp(-x))) + (1-y)*log(1 - 1/(1+exp(-x))))", vec![("x", Logit), ("y", Soft)], vec![], 1),
        f("3 bce_probs", "pred p\ntarget y\n-(y*log(p) + (1-y)*log(1-p))", vec![("p", Prob), ("y", Soft)], vec![], 1),
        f("4 softmax_xent C=2", "pred x[C]\ntarget k: index\n-log(exp(x[k])/sum(exp(x)))", vec![], vec![("x", Logits)], 2),
        f("4 softmax_xent C=10", "pred x[C]\ntarget k: index\n-log(exp(x[k])/sum(exp(x)))", vec![], vec![("x", Logits)], 10),
        f("5 soft_xent C=10", "pred x[C]\ntarget t[C]\n-sum(t*log(exp(x)/sum(exp(x))))", vec![], vec![("x", Logits), ("t", Distribution)], 10),
        f("6 logsumexp C=10", "pred x[C]\nlog(sum(exp(x)))", vec![], vec![("x", Logits)], 10),
        f("7 logaddexp", "pred a\npred b\nlog(exp(a) + exp(b))", vec![("a", Logit), ("b", Logit)], vec![], 1),
        f("8 softplus", "pred x\nlog(1 + exp(x))", vec![("x", Logit)], vec![], 1),
        f("9 logistic", "pred x\ntarget y\nlog(1 + exp(-y*x))", vec![("x", Logit), ("y", Margin)], vec![], 1),
        f("10 focal g=2", "pred x\ntarget y\nparam g = 2\n-(y*(1-sigmoid(x))^g*log(sigmoid(x)) + (1-y)*sigmoid(x)^g*log(1-sigmoid(x)))", vec![("x", Logit), ("y", Soft)], vec![], 1),
        f("10 focal g=0.5", "pred x\ntarget y\nparam g = 0.5\n-(y*(1-sigmoid(x))^g*log(sigmoid(x)) + (1-y)*sigmoid(x)^g*log(1-sigmoid(x)))", vec![("x", Logit), ("y", Hard)], vec![], 1),
        f("11 kl C=10", "pred q[C]\ntarget p[C]\nsum(p*log(p/q))", vec![], vec![("q", PositiveDistribution), ("p", Distribution)], 10),
        f("12 entropy C=10", "pred x[C]\n-sum(softmax(x)*log(softmax(x)))", vec![], vec![("x", Logits)], 10),
        f("13 infonce tau=1", "pred s[C]\ntarget k: index\nparam tau = 1\n-log(exp(s[k]/tau)/sum(exp(s/tau)))", vec![], vec![("s", RowGen::Similarity)], 10),
        f("13 infonce tau=0.1", "pred s[C]\ntarget k: index\nparam tau = 0.1\n-log(exp(s[k]/tau)/sum(exp(s/tau)))", vec![], vec![("s", RowGen::Similarity)], 10),
        f("13 infonce tau=0.01", "pred s[C]\ntarget k: index\nparam tau = 0.01\n-log(exp(s[k]/tau)/sum(exp(s/tau)))", vec![], vec![("s", RowGen::Similarity)], 10),
        f("14 poisson rate", "pred lam\ntarget y\nlam - y*log(lam)", vec![("lam", Positive), ("y", Count)], vec![], 1),
        f("14 poisson lograte", "pred x\ntarget y\nexp(x) - y*x", vec![("x", Residual), ("y", Count)], vec![], 1),
        f("15 gaussian var", "pred mu\npred v\ntarget y\n0.5*(log(v) + (y-mu)^2/v)", vec![("mu", Residual), ("v", Positive), ("y", Residual)], vec![], 1),
        f("15 gaussian logvar", "pred mu\npred s\ntarget y\n0.5*(s + (y-mu)^2*exp(-s))", vec![("mu", Residual), ("s", Logit), ("y", Residual)], vec![], 1),
        f("16 log_cosh", "pred p\ntarget t\nlog(cosh(p - t))", vec![("p", Residual), ("t", Residual)], vec![], 1),
        f("17 msle", "pred p\ntarget t\n(log(1+p) - log(1+t))^2", vec![("p", NonNeg), ("t", NonNeg)], vec![], 1),
        f("18 one_minus_cos", "pred theta\n1 - cos(theta)", vec![("theta", Residual)], vec![], 1),
        f("18 cosine C=10", "pred a[C]\npred b[C]\n1 - sum(a*b)/(norm(a)*norm(b))", vec![], vec![("a", Vector), ("b", Vector)], 10),
        f("19 euclid C=10", "pred a[C]\ntarget b[C]\nsqrt(sum((a-b)^2))", vec![], vec![("a", Vector), ("b", Vector)], 10),
        f("20 log1mexp", "pred lp\nlog(1 - exp(lp))", vec![("lp", LogProb)], vec![], 1),
    ]
}

/// What one rule's test found (see [`check_rule`]).
#[derive(Debug, Default)]
pub struct RuleReport {
    /// Did the rule fire on the case?
    pub fired: bool,
    /// Points (output elements) where both sides had a high-precision value and the left side was defined.
    pub compared: usize,
    /// Soundness failures: `(sample, output, left, right)`.
    pub mismatches: Vec<String>,
    /// Per dtype (f32, f64): mean and max bits of the rewritten form, then of the form as written,
    /// over points with a reference.
    pub bits: Vec<(f64, f64, f64, f64)>,
}

/// Tests one rule on a formula that exhibits its left side: that it fires; that left and
/// right side (value and gradients) agree in high precision (within one rounding of the
/// f64 result) wherever the left side is defined; and the interpreter's bits of error of
/// both sides in f32 and f64.
pub fn check_rule(rule: &str, f: &Formula, n: usize, seed: u64) -> RuleReport {
    let mut report = RuleReport::default();
    let classes = f.classes.max(1);
    let c64 = compile_both(&f.source, Dtype::F64);
    report.fired = c64.stable.rewrites.iter().any(|r| r.rule == rule);
    let mut rng = Rng(seed);
    let samples = sample_inputs(f, &c64.stable, n, Dtype::F64, &mut rng);
    let (rr, sr) = (roots(&c64.raw), roots(&c64.stable));
    for s in &samples {
        let left = reference(&c64.raw, s, classes, &rr, Dtype::F64);
        let right = reference(&c64.stable, s, classes, &sr, Dtype::F64);
        for (o, (lv, rv)) in left.iter().zip(&right).enumerate() {
            for (l, r) in lv.iter().zip(rv) {
                let (Some(l), Some(r)) = (l, r) else { continue };
                if l.is_nan() {
                    continue;
                }
                report.compared += 1;
                if bits(*r, *l, Dtype::F64) > 1.0 {
                    report.mismatches.push(format!("{s:?} output {o}: left {l:e} right {r:e}"));
                }
            }
        }
    }
    for dtype in [Dtype::F32, Dtype::F64] {
        let c = compile_both(&f.source, dtype);
        let mut rng = Rng(seed ^ 0xACC);
        let samples = sample_inputs(f, &c.stable, n, dtype, &mut rng);
        let got = run_interp(&c.stable, &samples, classes);
        let naive = run_interp(&c.raw, &samples, classes);
        let (rr, sr) = (roots(&c.raw), roots(&c.stable));
        let (mut sum, mut max, mut nsum, mut nmax, mut count) = (0.0, 0.0f64, 0.0, 0.0f64, 0usize);
        for (i, s) in samples.iter().enumerate() {
            let mut want = reference(&c.raw, s, classes, &rr, dtype);
            if want.iter().flatten().any(|w| w.is_none_or(f64::is_nan)) {
                let alt = reference(&c.stable, s, classes, &sr, dtype);
                for (wv, av) in want.iter_mut().zip(alt) {
                    for (w, a) in wv.iter_mut().zip(av) {
                        if w.is_none_or(f64::is_nan) {
                            *w = a;
                        }
                    }
                }
            }
            for (o, wv) in want.iter().enumerate() {
                for (e, w) in wv.iter().enumerate() {
                    let Some(w) = w else { continue };
                    let (b, nb) = (bits(got[i][o][e], *w, dtype), bits(naive[i][o][e], *w, dtype));
                    sum += b;
                    nsum += nb;
                    max = max.max(b);
                    nmax = nmax.max(nb);
                    count += 1;
                }
            }
        }
        let k = count.max(1) as f64;
        report.bits.push((sum / k, max, nsum / k, nmax));
    }
    report
}

/// One output element at one point, through one engine (see [`errors_at`]).
#[derive(Clone, Debug)]
pub struct PointError {
    /// The engine.
    pub engine: Engine,
    /// The sample's index.
    pub sample: usize,
    /// The output's name (`value`, `grad NAME`).
    pub output: String,
    /// The element of that output.
    pub element: usize,
    /// The engine's result.
    pub got: f64,
    /// The correctly rounded result.
    pub want: f64,
    /// Bits of error.
    pub bits: f64,
}

/// The errors of every output element of the stabilized `source` at the given samples
/// (each a list of the program's inputs' data), through the interpreter and the JIT,
/// against the high-precision reference (where it resolves).
pub fn errors_at(source: &str, classes: usize, dtype: Dtype, samples: &[Sample]) -> Vec<PointError> {
    let c = compile_both(source, dtype);
    let names = output_names(source);
    let (raw_roots, stable_roots) = (roots(&c.raw), roots(&c.stable));
    let mut res = Vec::new();
    for engine in [Engine::Interp, Engine::Jit] {
        let got = run(engine, &c.stable, samples, classes);
        for (s, sample) in samples.iter().enumerate() {
            let want = reference(&c.raw, sample, classes, &raw_roots, dtype);
            let alt = reference(&c.stable, sample, classes, &stable_roots, dtype);
            for (o, name) in names.iter().enumerate() {
                for (e, g) in got[s][o].iter().enumerate() {
                    let w = want[o][e].filter(|w| !w.is_nan()).or(alt[o][e]);
                    let Some(w) = w else { continue };
                    let bits = bits(*g, w, dtype);
                    res.push(PointError {
                        engine,
                        sample: s,
                        output: name.clone(),
                        element: e,
                        got: *g,
                        want: w,
                        bits,
                    });
                }
            }
        }
    }
    res
}
