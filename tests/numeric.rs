//! Numeric checks of the symbolic derivatives: every gradient and Hessian diagonal
//! against central finite differences in f64, over formulas covering every function
//! and construct of the language, under the reductions none, mean and sum.

mod common;

use common::{inputs, Rng, CASES};
use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::program::ReduceMode;
use lossc::{compile, CompileOptions, Dtype, Program};

fn program(src: &str) -> Program {
    let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: true, stabilize: true };
    match compile(src, &options) {
        Ok(p) => p,
        Err(d) => panic!("{src}: {d:?}"),
    }
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

/// Within `tol` absolutely near zero, or relatively elsewhere.
fn close(a: f64, b: f64, tol: f64) -> bool {
    approx::relative_eq!(a, b, epsilon = tol, max_relative = tol)
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

/// k·u·u (a square written as a product with a scaled copy, as rule S39 leaves Huber's
/// 0.5*(p − y)^2) takes the square's derivative 2k·u, not the product rule's two halves:
/// the gradient of ½(p − y)² is p − y exactly, its Hessian 1.
#[test]
fn self_products_differentiate_as_squares() {
    let p: Vec<f64> = (0..200).map(|i| (i as f64 * 0.7318).sin() * 10f64.powi(i % 9 - 4)).collect();
    let y: Vec<f64> = (0..200).map(|i| (i as f64 * 1.913).cos() * 10f64.powi(i % 7 - 3)).collect();
    // At the smallest subnormals the product rule's two halves, 0.5·u each, round to 0.
    let (mut p, mut y) = (p, y);
    p.extend([5e-324, 1.5e-323, -5e-324]);
    y.extend([0.0, 0.0, 5e-324]);
    let data = [("p", p.clone()), ("y", y.clone())];
    for src in ["pred p\ntarget y\n0.5*(p - y)^2", "pred p\ntarget y\n(0.5*p - 0.5*y)*(p - y)"] {
        let (g, h) = eval_exact(src, &data, ReduceMode::Sum);
        let want: Vec<f64> = p.iter().zip(&y).map(|(a, b)| a - b).collect();
        assert_eq!(g, want, "{src}");
        assert!(h.iter().all(|x| *x == 1.0), "{src}: {h:?}");
    }
    // (−2·u)·u: 2k = −4.
    let (g, _) = eval_exact("pred p\n(-2*p)*p", &[("p", vec![3.0])], ReduceMode::Sum);
    assert_eq!(g, vec![-12.0]);
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
