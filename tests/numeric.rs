//! Numeric checks of the symbolic derivatives: every gradient and Hessian diagonal
//! against central finite differences in f64, over formulas covering every function
//! and construct of the language, under the reductions none, mean and sum.

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::program::{Layout, ReduceMode};
use lossc::{compile, CompileOptions, Dtype, Program};

/// How to draw one input.
#[derive(Clone, Copy)]
enum Gen {
    /// Uniform in [lo, hi).
    U(f64, f64),
}

struct Case {
    src: &'static str,
    ranges: &'static [(&'static str, Gen)],
}

const D: Gen = Gen::U(-2.0, 2.0);

/// Formulas away from kinks at the random points drawn (fixed seed).
const CASES: &[Case] = &[
    Case { src: "(p - y)^2", ranges: &[] },
    Case { src: "abs(p - y)", ranges: &[] },
    Case { src: "sign(p)*p^3", ranges: &[] },
    Case { src: "sqrt(p^2 + 1)", ranges: &[] },
    Case { src: "exp(p) - y*p", ranges: &[] },
    Case { src: "log(1 + p^2)", ranges: &[] },
    Case { src: "log1p(p^2) + log(p + 3)", ranges: &[] },
    Case { src: "expm1(p/2)*y", ranges: &[] },
    Case { src: "sin(p)*cos(y*p)", ranges: &[] },
    Case { src: "tanh(p - y)^2", ranges: &[] },
    Case { src: "log(cosh(p - y))", ranges: &[] },
    Case { src: "sigmoid(p)*y + sigmoid(-3*p)^2", ranges: &[] },
    Case { src: "log_sigmoid(p*y)", ranges: &[] },
    Case { src: "softplus(p) - y*p", ranges: &[] },
    Case { src: "relu(p - y)^2 + relu(p)", ranges: &[] },
    Case { src: "square(p) + 1/(p^2 + 1)", ranges: &[] },
    Case { src: "pow(abs(p) + 1, y) + (p^2 + 1)^-1.5", ranges: &[] },
    Case { src: "pow(2, p) + y^p", ranges: &[("y", Gen::U(0.5, 3.0))] },
    Case { src: "maximum(p, y)^2 + minimum(p, 2*y)", ranges: &[] },
    Case { src: "xlogy(y, p^2 + 0.5) + xlogy(p^2, y + 3)", ranges: &[] },
    Case { src: "clamp(p, -0.5, 0.5)^2 + clamp(y, p - 1, p + 1)*p", ranges: &[] },
    Case { src: "where(p > y, p^2, -p) + where(y > 0, 0, exp(p))", ranges: &[] },
    Case { src: "(not (p > 0))*p + (p > 0 and y > 0)*p^2 + (p < -1 or y < 0)*p", ranges: &[] },
    Case { src: "(p >= y)*p + (p <= y)*2*p + (p == y) + (p != y)*p^3", ranges: &[] },
    Case { src: "-p^-2 + 2^-p + -p^2", ranges: &[("p", Gen::U(0.5, 2.0))] },
    Case { src: "pred p\ntarget y\ntarget w\nreduce sum by w\n(p - y)^2*exp(p)", ranges: &[("w", Gen::U(0.0, 2.0))] },
    Case {
        src: "pred p\ntarget y\ntarget w\ntarget d\nreduce mean by w over d\nsoftplus(p*y)",
        ranges: &[("w", Gen::U(0.0, 2.0)), ("d", Gen::U(0.5, 1.0))],
    },
    Case { src: "pred z[C]\ntarget t[C]\nsum(z*t) + sum(z)^2", ranges: &[] },
    Case { src: "pred z[C]\nmean(z^2) + max(z)*min(z)", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\nlogsumexp(z*t) + norm(z)", ranges: &[] },
    Case { src: "pred z[C]\ntarget k: index\nsoftmax(z)[k] + z[k]^2", ranges: &[] },
    Case {
        src: "pred z[C]\ntarget k: index\nparam e = 0.1\nl = -log_softmax(z)\n(1 - e)*l[k] + e*mean(l)",
        ranges: &[],
    },
    Case { src: "pred z[C]\nsum(softmax(z)*log_softmax(z))", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\n(z - t)^2*softmax(z)", ranges: &[] },
    Case { src: "pred a[C]\npred b[C]\n1 - sum(a*b)/(norm(a)*norm(b))", ranges: &[] },
    Case { src: "pred s\npred z[C]\ntarget k: index\ns*logsumexp(z) + s^2*z[k] - exp(s)", ranges: &[] },
    Case { src: "p*batch_sum(y)/batch_sum(y^2) + p^2*batch_sum(1)", ranges: &[] },
    Case { src: "where(batch_all(y > -10), p^2, p) + where(batch_any(y > 10), p, p^3)", ranges: &[] },
    Case {
        src: "pred z[C]\nparam w[C] = 1\ntarget k: index\nsum(w*z^2) + w[k]*z[k]",
        ranges: &[("w", Gen::U(0.5, 2.0))],
    },
    Case { src: "pred z[C]\ntarget k: index\nsum(z)/C + z[k]*C + (k == 1)*z[k]^2 + (k != 0)*max(z)", ranges: &[] },
    Case { src: "param q?\nparam r = 2\npred p\nwhere(given(q), q*p, p^r) + where(given(q), 0, p)", ranges: &[] },
    Case {
        src: "pred z[C]\ntarget t[C]\ntarget w\nreduce mean by w\n(z - t)^2 + z*logsumexp(z)",
        ranges: &[("w", Gen::U(0.5, 2.0))],
    },
    Case { src: "pred p\ntarget y = 0.5\ne = p - y\nlog(cosh(e)) + e^2/2", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\nxlogy(t, softmax(z)) + t*log_softmax(z)", ranges: &[("t", Gen::U(0.0, 1.0))] },
    Case { src: "pred z[C]\ntarget k: index\nmaximum(1 + max(z) - z[k], 0)^2", ranges: &[] },
];

/// Deterministic uniform numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

const ROWS: usize = 5;
const CLASSES: usize = 4;
const ELEMENTS: usize = 7;

fn program(src: &str) -> Program {
    let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: true, stabilize: true };
    match compile(src, &options) {
        Ok(p) => p,
        Err(d) => panic!("{src}: {d:?}"),
    }
}

fn inputs(prog: &Program, case: &Case, rng: &mut Rng) -> Vec<(String, Array)> {
    let rows = if prog.class_axis { ROWS } else { ELEMENTS };
    let mut out = Vec::new();
    for decl in &prog.inputs {
        if !decl.used && decl.layout != Layout::Classes {
            continue;
        }
        let Gen::U(lo, hi) = case.ranges.iter().find(|(n, _)| *n == decl.name).map_or(D, |(_, g)| *g);
        let arr = match decl.layout {
            Layout::Index => Array::vector((0..rows).map(|_| (rng.next() * CLASSES as f64).floor()).collect()),
            Layout::Classes => Array {
                shape: vec![rows, CLASSES],
                data: (0..rows * CLASSES).map(|_| lo + (hi - lo) * rng.next()).collect(),
            },
            Layout::Scalar => Array::vector((0..rows).map(|_| lo + (hi - lo) * rng.next()).collect()),
        };
        out.push((decl.name.clone(), arr));
    }
    out
}

/// Per-pred values, by name.
type PerPred = Vec<(String, Vec<f64>)>;

fn run(prog: &Program, data: &[(String, Array)], reduce: ReduceMode, grad: bool) -> (f64, PerPred, PerPred) {
    let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { reduce: Some(reduce), grad, hess: grad, upstream: None };
    let out = evaluate(prog, &refs, &opts).unwrap_or_else(|d| panic!("{d:?}"));
    let loss = match out.loss {
        LossValue::Scalar(x) => x,
        LossValue::PerItem(v) => v.iter().sum(),
    };
    (loss, out.grad, out.hess)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn gradients_and_hessians_match_finite_differences() {
    let mut rng = Rng(0x5EED);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in CASES {
        let prog = program(case.src);
        let data = inputs(&prog, case, &mut rng);
        for reduce in [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None] {
            let (_, grads, hess) = run(&prog, &data, reduce, true);
            for (pred, grad) in &grads {
                let slot = data.iter().position(|(n, _)| n == pred).expect("preds are given");
                let h_diag = &hess.iter().find(|(n, _)| n == pred).expect("hessian per pred").1;
                for i in 0..grad.len() {
                    let step = 1e-5;
                    let mut plus = data.clone();
                    plus[slot].1.data[i] += step;
                    let mut minus = data.clone();
                    minus[slot].1.data[i] -= step;
                    let (lp, gp, _) = run(&prog, &plus, reduce, true);
                    let (lm, gm, _) = run(&prog, &minus, reduce, true);
                    let fd = (lp - lm) / (2.0 * step);
                    if !close(fd, grad[i], 1e-6) {
                        failures.push(format!(
                            "{:?} {}: d/d{pred}[{i}] symbolic {} finite difference {fd}",
                            reduce, case.src, grad[i]
                        ));
                    }
                    let gi = |g: &[(String, Vec<f64>)]| g.iter().find(|(n, _)| n == pred).expect("grad").1[i];
                    let fd2 = (gi(&gp) - gi(&gm)) / (2.0 * step);
                    if !close(fd2, h_diag[i], 1e-5) {
                        failures.push(format!(
                            "{:?} {}: d²/d{pred}[{i}]² symbolic {} finite difference {fd2}",
                            reduce, case.src, h_diag[i]
                        ));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(CASES.len() >= 30);
    assert!(checked > 1000, "only {checked} derivatives checked");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

fn eval_exact(src: &str, data: &[(&str, Vec<f64>)], reduce: ReduceMode) -> (Vec<f64>, Vec<f64>) {
    let prog = program(src);
    let arrays: Vec<(String, Array)> = data.iter().map(|(n, v)| (n.to_string(), Array::vector(v.clone()))).collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { reduce: Some(reduce), grad: true, hess: true, upstream: None };
    let out = evaluate(&prog, &refs, &opts).unwrap_or_else(|d| panic!("{d:?}"));
    (out.grad[0].1.clone(), out.hess[0].1.clone())
}

#[test]
fn barriers_have_their_own_derivatives() {
    // stop_gradient: value of x, no derivative.
    let (g, h) = eval_exact("stop_gradient(p)*p", &[("p", vec![3.0])], ReduceMode::Sum);
    assert_eq!((g, h), (vec![3.0], vec![0.0]));
    // straight_through(v, s): value of v, derivatives of s (GaussianNLL's variance clamp).
    let (g, h) = eval_exact("straight_through(maximum(p, 1), p^2)", &[("p", vec![0.5])], ReduceMode::Sum);
    assert_eq!((g, h), (vec![1.0], vec![2.0]));
}

#[test]
fn kink_conventions() {
    let sum = ReduceMode::Sum;
    assert_eq!(eval_exact("abs(p)", &[("p", vec![0.0])], sum).0, vec![0.0]);
    assert_eq!(eval_exact("relu(p)", &[("p", vec![0.0])], sum).0, vec![0.0]);
    assert_eq!(eval_exact("maximum(p, 1)", &[("p", vec![1.0])], sum).0, vec![0.5]);
    assert_eq!(eval_exact("minimum(p, 1)", &[("p", vec![1.0])], sum).0, vec![0.5]);
    assert_eq!(eval_exact("clamp(p, 0, 1)", &[("p", vec![0.0, 1.0, 0.5])], sum).0, vec![0.0, 0.0, 1.0]);
    assert_eq!(eval_exact("where(2 > p, 2, p)", &[("p", vec![2.0])], sum).0, vec![1.0]);
    let (g, _) = eval_exact("pred z[C]\nmax(z)", &[("z", vec![1.0, 3.0, 3.0, 0.0])], sum);
    assert_eq!(g, vec![0.0, 0.5, 0.5, 0.0]);
    let (g, _) = eval_exact("pred z[C]\nnorm(z)", &[("z", vec![0.0, 0.0])], sum);
    assert_eq!(g, vec![0.0, 0.0]);
}

#[test]
fn unselected_branches_never_leak() {
    let sum = ReduceMode::Sum;
    // log(p) has an infinite derivative at 0, sqrt at 0 too; the branch is not taken.
    let (g, h) = eval_exact("where(p > 0, log(p), p)", &[("p", vec![0.0, -1.0])], sum);
    assert_eq!((g, h), (vec![1.0, 1.0], vec![0.0, 0.0]));
    let (g, _) = eval_exact("maximum(sqrt(p), 2)", &[("p", vec![0.0])], sum);
    assert_eq!(g, vec![0.0]);
    let (g, _) = eval_exact("relu(p)*0 + where(p < 0, 0, sqrt(p))", &[("p", vec![0.0])], sum);
    assert!(g[0].is_infinite(), "the taken branch keeps its infinite derivative: {g:?}");
    let (g, _) = eval_exact("clamp(log(p), -1, 1)", &[("p", vec![0.0])], sum);
    assert_eq!(g, vec![0.0]);
}

#[test]
fn nan_inputs_propagate() {
    let prog = program("(p - y)^2");
    let p = Array::vector(vec![f64::NAN, 1.0]);
    let y = Array::vector(vec![0.0, 0.0]);
    let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: false, upstream: None };
    let out = evaluate(&prog, &[("p", &p), ("y", &y)], &opts).expect("valid data");
    let LossValue::PerItem(l) = out.loss else { panic!("per item") };
    assert!(l[0].is_nan() && l[1] == 1.0);
    assert!(out.grad[0].1[0].is_nan() && out.grad[0].1[1] == 2.0);
}
