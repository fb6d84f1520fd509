//! Golden tests against reference values computed by PyTorch and Keras.
//!
//! Data: `tests/data/custom/*.json` (custom losses next to their `.loss` files, PyTorch
//! float64) and `tests/data/stdlib/{torch,keras}/*.{f64,f32}.json` (the standard library,
//! float64 and float32). Each file lists cases: scalar params, inputs, a reduction, and the
//! expected loss, gradients and (optionally) Hessian diagonals. The generators sit next to
//! the data; `cargo test` never runs them.
//!
//! Tolerances: f64 within 1e-9 relative, f32 within 1e-5 relative, each with an absolute
//! floor of the same relative size times the largest magnitude among the case's expected
//! loss and gradients (Hessians: among its Hessian values).
//! Where a case carries `loss_true` / `grad_true` (the reference loses accuracy and lossc
//! is meant to give the true value), those are compared instead.

mod common;
mod support;

use std::path::Path;

use serde_json::Value;

use common::json_files;

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::program::ReduceMode;
use lossc::{compile, CompileOptions, Dtype};

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("bad number string {other}"),
        },
        Value::Bool(b) => f64::from(u8::from(*b)),
        other => panic!("bad number {other}"),
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(number).collect(),
        other => vec![number(other)],
    }
}

/// One mismatch report, or nothing.
fn compare(what: &str, got: &[f64], want: &[f64], rtol: f64, floor: f64) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            g.is_finite() && (g - w).abs() <= rtol * g.abs().max(w.abs()) + floor
        };
        if !ok {
            return Some(format!("{what}[{i}]: got {g:e}, expected {w:e}"));
        }
    }
    None
}

/// The two engines every case runs through.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Interp,
    Jit,
}

fn run_file(path: &Path, source: &str, failures: &mut Vec<String>) -> usize {
    let text = std::fs::read_to_string(path).expect("readable golden file");
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dtype = match doc["dtype"].as_str() {
        Some("f32") => Dtype::F32,
        _ => Dtype::F64,
    };
    let default_rtol = if dtype == Dtype::F32 { 1e-5 } else { 1e-9 };
    let cases = doc["cases"].as_array().cloned().unwrap_or_default();
    for case in &cases {
        let name = format!("{} / {}", path.display(), case["name"].as_str().unwrap_or("?"));
        let params: Vec<(String, f64)> =
            case["params"].as_object().map_or(Vec::new(), |m| m.iter().map(|(k, v)| (k.clone(), number(v))).collect());
        let want_hess = case.get("hess").is_some_and(|h| !h.is_null());
        let options = CompileOptions { dtype, params, hessian: want_hess, stabilize: true };
        let prog = match compile(source, &options) {
            Ok(p) => p,
            Err(d) => {
                failures
                    .push(format!("{name}: does not compile: {:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>()));
                continue;
            }
        };
        let inputs: Vec<(String, Array)> = case["inputs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let shape = v["shape"]
                            .as_array()
                            .map_or(Vec::new(), |s| s.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect());
                        (k.clone(), Array { shape, data: numbers(&v["data"]) })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let refs: Vec<(&str, &Array)> = inputs.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let reduce = case["reduce"]
            .as_str()
            .map(|r| ReduceMode::from_name(r).unwrap_or_else(|| panic!("{name}: reduction {r}")));
        let opts = EvalOptions { reduce, grad: true, hess: want_hess, upstream: None };
        let jit = match lossc::jit::JitLoss::new(prog.clone()) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for engine in [Engine::Interp, Engine::Jit] {
            let result = match engine {
                Engine::Interp => evaluate(&prog, &refs, &opts),
                Engine::Jit => jit.evaluate(&refs, &opts),
            };
            let out = match result {
                Ok(o) => o,
                Err(d) => {
                    failures.push(format!("{name} [{engine:?}]: evaluation failed: {}", d.message));
                    continue;
                }
            };
            let rtol = case["rtol"].as_f64().unwrap_or(default_rtol);
            // The absolute floor: rtol times the largest magnitude among the case's expected
            // loss and gradients (the size of the terms a value is computed from).
            let magnitude = |v: &Value| -> f64 {
                let list: Vec<f64> = match v {
                    Value::Object(m) => m.values().flat_map(numbers).collect(),
                    Value::Null => Vec::new(),
                    other => numbers(other),
                };
                list.iter().filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(x.abs()))
            };
            let scale = magnitude(&case["loss"]).max(magnitude(&case["grad"]));
            let atol = case["atol"].as_f64().unwrap_or(rtol * scale);
            let hess_atol = case["atol"].as_f64().unwrap_or(rtol * magnitude(&case["hess"]));
            let loss = match &out.loss {
                LossValue::Scalar(x) => vec![*x],
                LossValue::PerItem(v) => v.clone(),
            };
            let want_loss = case.get("loss_true").filter(|v| !v.is_null()).unwrap_or(&case["loss"]);
            let mut report = compare("loss", &loss, &numbers(want_loss), rtol, atol);
            let grads = case.get("grad_true").filter(|v| !v.is_null()).unwrap_or(&case["grad"]);
            for (key, list) in [("grad", grads), ("hess", &case["hess"])] {
                let Some(map) = list.as_object() else { continue };
                let got = if key == "grad" { &out.grad } else { &out.hess };
                for (pred, want) in map {
                    let Some((_, g)) = got.iter().find(|(n, _)| n == pred) else {
                        report = report.or(Some(format!("{key} {pred}: not a pred of the loss")));
                        continue;
                    };
                    let floor = if key == "grad" { atol } else { hess_atol };
                    report = report.or_else(|| compare(&format!("{key} {pred}"), g, &numbers(want), rtol, floor));
                }
            }
            if let Some(r) = report {
                failures.push(format!("{name} [{engine:?}]: {r}"));
            }
        }
    }
    cases.len()
}

/// Cases that wait for the stability rewriter: none since issue 4 (the rewrites
/// `log1p(exp(z))` → `softplus(z)` and `log(cosh(e))` → `log_cosh(e)` give the true values).
/// A case listed here must fail; the test fails when one starts passing, so the list
/// cannot go stale.
const AWAITING_STABILITY: &[(&str, &str)] = &[];

/// Removes the expected failures of `AWAITING_STABILITY` under `prefix`, checking that
/// each still fails.
fn settle_awaiting(failures: &mut Vec<String>, prefix: &str) {
    for (file, case) in AWAITING_STABILITY {
        let tag = format!("{file} / {case} [");
        let in_scope =
            prefix == "custom/" && file.starts_with("custom/") || prefix == "stdlib/" && !file.starts_with("custom/");
        if !in_scope {
            continue;
        }
        let before = failures.len();
        failures.retain(|f| !f.contains(&tag));
        assert_eq!(
            before,
            failures.len() + 2,
            "{file} / {case} should fail until the stability rewriter lands; remove it from AWAITING_STABILITY"
        );
    }
}

#[test]
fn custom_losses_match_pytorch_float64() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom");
    let mut failures = Vec::new();
    let mut n_cases = 0;
    let files = json_files(&dir);
    for path in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("json");
        let src_path = dir.join(doc["source"].as_str().expect("a source"));
        let source = std::fs::read_to_string(&src_path).expect("the .loss file next to the json");
        n_cases += run_file(path, &source, &mut failures);
    }
    settle_awaiting(&mut failures, "custom/");
    assert!(files.len() >= 10, "only {} custom golden files", files.len());
    assert!(failures.is_empty(), "{} of {n_cases} cases fail:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn standard_library_matches_its_references() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stdlib");
    let mut failures = Vec::new();
    let mut n_cases = 0;
    let mut n_files = 0;
    for lib in ["torch", "keras"] {
        for path in json_files(&root.join(lib)) {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("json");
            let name = doc["source"].as_str().expect("a stdlib name").to_string();
            let Some(source) = lossc::stdlib::source(&name) else {
                failures.push(format!("{}: no stdlib loss `{name}`", path.display()));
                continue;
            };
            n_cases += run_file(&path, source, &mut failures);
            n_files += 1;
        }
    }
    settle_awaiting(&mut failures, "stdlib/");
    assert!(n_files >= 60, "only {n_files} stdlib golden files");
    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases in {n_files} files fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where a stdlib file's header says stability rewriting makes lossc more accurate than its
/// reference and the reference data cannot show it (no library value to compare), lossc is
/// compared with the true value (the high-precision reference of `tests/support`), through
/// both engines: every output within 3 bits.
///
/// See: issue 4 (rules S28 log1p-difference and S36 split-difference).
#[test]
fn stdlib_gives_the_true_value_where_its_header_says() {
    let cases: &[(&str, usize, Dtype, Vec<Vec<f64>>)] = &[
        // Keras's difference of logs loses ~10 bits where y_pred ≈ y_true (S28).
        ("keras/mean_squared_logarithmic_error", 2, Dtype::F32, vec![vec![5733706.5, 7.0], vec![5821231.0, 7.25]]),
        (
            "keras/mean_squared_logarithmic_error",
            2,
            Dtype::F64,
            vec![vec![6.987983743401982, 1e10], vec![7.043567374833005, 1.0000001e10]],
        ),
        // y_pred − y_true overflows; the gradient 2(y_pred − y_true)/C does not (S36).
        ("keras/mean_squared_error", 4, Dtype::F64, vec![vec![1e308, 1.0, 2.0, 3.0], vec![-1e308, 0.5, 2.0, 3.0]]),
        ("keras/mean_squared_error", 4, Dtype::F32, vec![vec![3e38, 1.0, 2.0, 3.0], vec![-3e38, 0.5, 2.0, 3.0]]),
        // input − target overflows; the gradient (input − target)/var does not (S36).
        ("torch/gaussian_nll_loss", 1, Dtype::F64, vec![vec![1e308], vec![-1e308], vec![4.0]]),
        ("torch/gaussian_nll_loss", 1, Dtype::F32, vec![vec![3e38], vec![-3e38], vec![4.0]]),
    ];
    let mut failures = Vec::new();
    for (name, classes, dtype, sample) in cases {
        let source = lossc::stdlib::source(name).expect("a stdlib loss");
        let errs = support::harness::errors_at(source, *classes, *dtype, std::slice::from_ref(sample));
        assert!(errs.iter().any(|e| e.output.starts_with("grad")), "{name}: no reference");
        for e in errs.iter().filter(|e| e.want.is_finite() && (!e.got.is_finite() || e.bits > 3.0)) {
            failures.push(format!(
                "{name} {} {}: {}[{}] got {:e} want {:e} ({:.1} bits)",
                dtype.name(),
                e.engine.name(),
                e.output,
                e.element,
                e.got,
                e.want,
                e.bits
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
