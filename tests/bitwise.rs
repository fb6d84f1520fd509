//! Bitwise differential tests: the JIT against the kernel interpreter (`eval::Mode::Kernel`),
//! which evaluates the kernels' graphs with the JIT's own math routines and summation order.
//!
//! Every output — the reduced loss, per-item losses, every gradient and Hessian diagonal —
//! must have the same bits in both (any NaN matches any NaN; a signed zero must match). The
//! formulas: the numeric suite, the standard library and the custom losses on their golden
//! data, the CLI's bad-input corpus (through `lossc eval --engine jit|kernel-interp`), and
//! random well-formed losses of `tests/common/gen.rs` (400 in `cargo test`, 10,000 with
//! `LOSSC_LONG=1`, `LOSSC_CASES=N` to choose), in f32 and f64, per element and with a class
//! axis, on data sizes around the vector width and the unrolling, with ties, signed zeros,
//! infinities and NaN, broadcast preds, out-of-range (masked) class indices and upstream
//! gradients; large data runs on 1 and 4 threads.
//! Errors must agree too: when one engine rejects a call, the other gives the same message.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::gen::Gen;
use common::{case_count, json_files, Rng, CASES};
use lossc::eval::{evaluate_with, Array, EvalOptions, Evaluation, LossValue, Mode};
use lossc::jit::JitLoss;
use lossc::program::{Layout, ReduceMode};
use lossc::{compile, CompileOptions, Dtype, Program};

fn flat(e: &Evaluation) -> Vec<(String, Vec<f64>)> {
    let loss = match &e.loss {
        LossValue::Scalar(x) => vec![*x],
        LossValue::PerItem(v) => v.clone(),
    };
    let mut out = vec![("loss".to_string(), loss)];
    out.extend(e.grad.iter().map(|(n, v)| (format!("grad {n}"), v.clone())));
    out.extend(e.hess.iter().map(|(n, v)| (format!("hess {n}"), v.clone())));
    out
}

/// None when both evaluations have the same bits everywhere; else the first difference.
fn differ(jit: &Evaluation, kernel: &Evaluation) -> Option<String> {
    let (a, b) = (flat(jit), flat(kernel));
    if a.len() != b.len() {
        return Some(format!("{} outputs against {}", a.len(), b.len()));
    }
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        if name != other || x.len() != y.len() {
            return Some(format!("{name} ({} values) against {other} ({} values)", x.len(), y.len()));
        }
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            if p.to_bits() != q.to_bits() && !(p.is_nan() && q.is_nan()) {
                return Some(format!(
                    "{name}[{i}]: jit {p:e} ({:#x}), kernel interpreter {q:e} ({:#x})",
                    p.to_bits(),
                    q.to_bits()
                ));
            }
        }
    }
    None
}

/// Runs `f` on a rayon pool of `threads` threads (the JIT parallelizes large calls on the
/// current pool).
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool").install(f)
}

thread_local! {
    /// Calls on this thread that computed (rather than rejected their inputs in both engines).
    static COMPUTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Compares the JIT (on each thread count) with the kernel interpreter on one call: a
/// description of the first difference, or nothing.
fn compare(
    jit: &JitLoss,
    prog: &Program,
    data: &[(String, Array)],
    opts: &EvalOptions,
    threads: &[usize],
) -> Option<String> {
    let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let want = evaluate_with(Mode::Kernel, prog, &refs, opts);
    if want.is_ok() {
        COMPUTED.with(|c| c.set(c.get() + 1));
    }
    for &t in threads {
        let got = if t == 0 { jit.evaluate(&refs, opts) } else { on_threads(t, || jit.evaluate(&refs, opts)) };
        let report = match (&got, &want) {
            (Ok(g), Ok(w)) => differ(g, w),
            (Err(g), Err(w)) if g.message == w.message => None,
            (g, w) => Some(format!(
                "jit {:?} vs kernel interpreter {:?}",
                g.as_ref().err().map(|d| &d.message),
                w.as_ref().err().map(|d| &d.message)
            )),
        };
        if let Some(r) = report {
            return Some(if t > 0 { format!("{t} threads: {r}") } else { r });
        }
    }
    None
}

/// A value for random data: mostly uniform in [-2, 2), sometimes a tie with the previous
/// value, a signed zero, a large magnitude, an infinity or NaN (with `special`).
fn value(rng: &mut Rng, prev: f64, special: bool) -> f64 {
    let u = rng.next();
    if !special || u < 0.9 {
        return -2.0 + 4.0 * rng.next();
    }
    match ((u - 0.9) * 80.0) as usize {
        0 | 1 => prev,
        2 => 0.0,
        3 => -0.0,
        4 => 60.0 * (rng.next() - 0.5),
        5 => f64::INFINITY,
        6 => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

/// Random inputs for `prog`: `n` elements, or `n` rows of `classes` with a class axis. Preds
/// are sometimes one number or one row (broadcast: their derivatives are summed back), and
/// some class indices fall outside `[0, C)` when `masked` (the loss must mask them).
fn random_inputs(
    prog: &Program,
    n: usize,
    classes: usize,
    rng: &mut Rng,
    special: bool,
    masked: bool,
) -> Vec<(String, Array)> {
    let mut out = Vec::new();
    for decl in &prog.inputs {
        if !decl.used && decl.layout != Layout::Classes {
            continue;
        }
        let broadcast = rng.next() < 0.08;
        let arr = match decl.layout {
            Layout::Index => Array::vector(
                (0..n)
                    .map(|_| if masked && rng.next() < 0.2 { -100.0 } else { (rng.next() * classes as f64).floor() })
                    .collect(),
            ),
            Layout::Classes if prog.class_axis => {
                let rows = if broadcast { 1 } else { n };
                let mut prev = 0.5;
                let data = (0..rows * classes)
                    .map(|_| {
                        prev = value(rng, prev, special);
                        prev
                    })
                    .collect();
                let shape = if broadcast { vec![classes] } else { vec![n, classes] };
                Array { shape, data }
            }
            _ => {
                let len = if broadcast { 1 } else { n };
                let mut prev = 0.5;
                Array::vector(
                    (0..len)
                        .map(|_| {
                            prev = value(rng, prev, special);
                            prev
                        })
                        .collect(),
                )
            }
        };
        out.push((decl.name.clone(), arr));
    }
    out
}

fn options(dtype: Dtype, params: Vec<(String, f64)>, hessian: bool) -> CompileOptions {
    CompileOptions { dtype, params, hessian, stabilize: true }
}

/// Every formula of the numeric suite, f32 and f64, every reduction, at sizes around the
/// vector width and the unrolling (elements) or the class count (rows).
#[test]
fn numeric_suite_matches_the_kernel_interpreter_bit_for_bit() {
    let mut rng = Rng(0xB17_0001);
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in CASES {
        for dtype in [Dtype::F64, Dtype::F32] {
            let prog = compile(case.src, &options(dtype, Vec::new(), true)).expect("numeric formulas compile");
            let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
            for (k, reduce) in
                [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None, ReduceMode::BatchMean, ReduceMode::MeanOrZero]
                    .into_iter()
                    .enumerate()
            {
                let (n, classes) = if prog.class_axis {
                    ([1, 3, 6][k % 3], [1, 2, 3, 4, 5, 7, 8, 9, 17][k * 2 % 9])
                } else {
                    ([1, 7, 8, 9, 17, 33][k], 1)
                };
                let data = random_inputs(&prog, n, classes, &mut rng, k % 2 == 1, false);
                let upstream = (k == 2 && dtype == Dtype::F32).then(|| vec![0.5]);
                let opts = EvalOptions { reduce: Some(reduce), grad: true, hess: true, upstream };
                runs += 1;
                if let Some(d) = compare(&jit, &prog, &data, &opts, &[0]) {
                    failures.push(format!("{dtype:?} {reduce:?} n={n} C={classes} {}: {d}", case.src));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} runs differ:\n{}", failures.len(), failures.join("\n"));
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => f64::NAN,
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(number).collect(),
        other => vec![number(other)],
    }
}

/// Runs every case of a golden file (`tests/golden.rs`'s format) through both engines, with
/// the optimized kernels (the tier long-running callers get).
fn golden_file(path: &Path, source: &str, failures: &mut Vec<String>) -> usize {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("json");
    let dtype = if doc["dtype"].as_str() == Some("f32") { Dtype::F32 } else { Dtype::F64 };
    let cases = doc["cases"].as_array().cloned().unwrap_or_default();
    for case in &cases {
        let name = format!("{} / {}", path.display(), case["name"].as_str().unwrap_or("?"));
        let params =
            case["params"].as_object().map_or(Vec::new(), |m| m.iter().map(|(k, v)| (k.clone(), number(v))).collect());
        let prog = match compile(source, &options(dtype, params, true)) {
            Ok(p) => p,
            Err(d) => {
                failures.push(format!("{name}: does not compile: {:?}", d.first().map(|d| &d.message)));
                continue;
            }
        };
        let data: Vec<(String, Array)> = case["inputs"].as_object().map_or(Vec::new(), |m| {
            m.iter()
                .map(|(k, v)| {
                    let shape = v["shape"]
                        .as_array()
                        .map_or(Vec::new(), |s| s.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect());
                    (k.clone(), Array { shape, data: numbers(&v["data"]) })
                })
                .collect()
        });
        let reduce = case["reduce"].as_str().and_then(ReduceMode::from_name);
        let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
        let opts = EvalOptions { reduce, grad: true, hess: true, upstream: None };
        // Compile the variants the call needs, then replace them by optimized ones.
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let _ = jit.evaluate(&refs, &opts);
        jit.optimize_now().expect("optimized kernels");
        for reduce in [reduce, Some(ReduceMode::None)] {
            let opts = EvalOptions { reduce, ..opts.clone() };
            if let Some(d) = compare(&jit, &prog, &data, &opts, &[0]) {
                failures.push(format!("{name} {} {reduce:?}: {d}", dtype.name()));
            }
        }
    }
    cases.len()
}

/// The standard library and the custom losses on their golden data (PyTorch and Keras
/// cases), with the optimized kernels, as given and with `reduce none`.
#[test]
fn golden_losses_match_the_kernel_interpreter_bit_for_bit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for lib in ["torch", "keras"] {
        for path in json_files(&root.join("stdlib").join(lib)) {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("json");
            let name = doc["source"].as_str().expect("a stdlib name").to_string();
            let source = lossc::stdlib::source(&name).expect("a stdlib loss");
            n_cases += golden_file(&path, source, &mut failures);
        }
    }
    let custom = root.join("custom");
    for path in json_files(&custom) {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("json");
        let source =
            std::fs::read_to_string(custom.join(doc["source"].as_str().expect("a source"))).expect("the .loss file");
        n_cases += golden_file(&path, &source, &mut failures);
    }
    assert!(n_cases > 300, "only {n_cases} golden cases");
    assert!(failures.is_empty(), "{} of {n_cases} cases differ:\n{}", failures.len(), failures.join("\n"));
}

/// Every stdlib and custom loss on larger random data with special values, f32 and f64: on
/// one and four threads above the parallel threshold (several chunks), and with masked
/// out-of-range class indices.
#[test]
fn every_loss_file_matches_on_large_data_and_any_thread_count() {
    let mut sources: Vec<String> =
        lossc::stdlib::names().map(|n| lossc::stdlib::source(n).unwrap_or_default().to_string()).collect();
    let custom = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom");
    let mut files: Vec<_> = std::fs::read_dir(&custom).expect("custom losses").flatten().map(|e| e.path()).collect();
    files.sort();
    sources.extend(
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "loss"))
            .map(|p| std::fs::read_to_string(p).expect("readable")),
    );
    let mut rng = Rng(0xB17_0002);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (i, src) in sources.iter().enumerate() {
        let dtype = if i % 2 == 0 { Dtype::F32 } else { Dtype::F64 };
        // Required params get a value of 1.
        let probe = compile(src, &options(dtype, Vec::new(), true));
        let params = match &probe {
            Ok(_) => Vec::new(),
            Err(_) => vec![("a".to_string(), 1.0)],
        };
        let Ok(prog) = compile(src, &options(dtype, params, true)) else {
            failures.push(format!("{src}: does not compile"));
            continue;
        };
        let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
        // Above `PARALLEL_ELEMENTS` (65,536) and several chunks of 16,384 elements.
        let (n, classes) = if prog.class_axis { (7_001, 11) } else { (70_003, 1) };
        let masked = src.contains("ignore");
        // Finite data (a finite sum, so the chunks' partial sums and their combination
        // show), then data with special values.
        for special in [false, true] {
            let data = random_inputs(&prog, n, classes, &mut rng, special, masked);
            let opts = EvalOptions { reduce: None, grad: true, hess: true, upstream: None };
            runs += 1;
            if let Some(d) = compare(&jit, &prog, &data, &opts, &[1, 4]) {
                failures.push(format!("{} special={special} {}: {d}", dtype.name(), src.lines().next().unwrap_or("")));
            }
        }
    }
    assert!(runs > 50, "only {runs} loss files");
    assert!(failures.is_empty(), "{} of {runs} differ:\n{}", failures.len(), failures.join("\n"));
}

/// Random well-formed losses of `tests/common/gen.rs`: per element and with a class axis,
/// f32 and f64, every reduction, sizes around the vector width, special values in half of
/// them, with gradients and Hessians, through both tiers. `LOSSC_LONG=1` runs 10,000 (`LOSSC_CASES=N` sets it).
#[test]
fn random_losses_match_the_kernel_interpreter_bit_for_bit() {
    let n = case_count(400, 10_000);
    let mut generator = Gen::new(Rng(0xB17_0003));
    let mut rng = Rng(0xB17_0004);
    let mut failures = Vec::new();
    let mut kinds = [0usize; 2];
    let started = std::time::Instant::now();
    for i in 0..n {
        let src = generator.loss();
        let dtype = if i % 2 == 0 { Dtype::F64 } else { Dtype::F32 };
        let reduce =
            [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None, ReduceMode::BatchMean, ReduceMode::MeanOrZero][i % 5];
        let Ok(prog) = compile(&src, &options(dtype, Vec::new(), true)) else {
            failures.push(format!("{src}: does not compile"));
            continue;
        };
        kinds[usize::from(prog.class_axis)] += 1;
        let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
        let sizes = [1, 2, 3, 4, 5, 7, 8, 9, 12, 17, 33, 100];
        let mut n_rows = sizes[(rng.next() * sizes.len() as f64) as usize];
        let mut classes = if prog.class_axis { sizes[(rng.next() * 9.0) as usize] } else { 1 };
        // One case in a hundred is large: several chunks, on one and four threads.
        let large = i % 100 == 50;
        if large {
            (n_rows, classes) = if prog.class_axis { (7_001, 11) } else { (70_003, 1) };
        }
        // Out-of-range class indices in one case in five (mostly unmasked: both engines
        // must then give the same error).
        let data = random_inputs(&prog, n_rows, classes, &mut rng, i % 4 >= 2, i % 5 == 4);
        let upstream = (reduce == ReduceMode::None && i % 7 == 0).then(|| vec![-0.75]);
        let opts = EvalOptions { reduce: Some(reduce), grad: true, hess: i % 3 != 1, upstream };
        let threads: &[usize] = if large { &[1, 4] } else { &[0] };
        if let Some(d) = compare(&jit, &prog, &data, &opts, threads) {
            failures.push(format!("case {i} {dtype:?} {reduce:?} n={n_rows} C={classes}\n{src}\n{d}"));
            continue;
        }
        // The optimized tier's kernels for the variants that call compiled (row kernels
        // there take rows two at a time).
        jit.optimize_now().expect("optimized kernels");
        if let Some(d) = compare(&jit, &prog, &data, &opts, threads) {
            failures.push(format!("case {i} {dtype:?} {reduce:?} n={n_rows} C={classes} optimized\n{src}\n{d}"));
        }
    }
    let computed = COMPUTED.with(std::cell::Cell::get);
    if n >= 1000 {
        eprintln!(
            "{n} random losses ({} per element, {} with a class axis; {computed} computed, the rest rejected alike) in {:.0?}",
            kinds[0],
            kinds[1],
            started.elapsed()
        );
    }
    // Each case calls the quick tier, then the optimized one.
    assert!(computed > n * 3 / 2, "only {computed} of {} calls computed", 2 * n);
    assert!(kinds[0] > n / 5 && kinds[1] > n / 5, "losses per kind: {kinds:?}");
    assert!(failures.is_empty(), "{} of {n} random losses differ:\n{}", failures.len(), failures.join("\n\n"));
}

/// The bad-input corpus of `tests/cli.rs` through the command line: `--engine jit` and
/// `--engine kernel-interp` print the same thing and exit the same way on every file whose
/// run line is an `eval` (most fail before computing; those that compute must agree).
#[test]
fn bad_inputs_give_the_same_output_through_both_engines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("corpus").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut runs = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "loss")) {
        let text = std::fs::read_to_string(path).expect("readable");
        let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# run: eval")) else { continue };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mut outs = Vec::new();
        for engine in ["jit", "kernel-interp"] {
            let out = Command::new(env!("CARGO_BIN_EXE_lossc"))
                .current_dir(&dir)
                .arg("eval")
                .arg(name)
                .args(args.split_whitespace())
                .args(["--grad", "--json", "--engine", engine])
                .output()
                .expect("lossc runs");
            outs.push((out.status.code(), out.stdout, out.stderr));
        }
        assert_eq!(outs[0], outs[1], "{name}: the engines differ");
        runs += 1;
    }
    assert!(runs >= 5, "only {runs} eval runs in the corpus");
    // And one file that computes, so the flag is seen to select the kernel interpreter.
    let out = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(["eval", "torch/mse_loss", "input=1,2.5", "target=0,1", "--grad", "--json", "--engine", "kernel-interp"])
        .output()
        .expect("lossc runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"loss": 1.625, "grad": {"input": [1.0, 1.5]}}"#);
}

/// Regression (found by the random test above): naming the unmasked out-of-range class index
/// read every input at the failing row, and a class input given as one row is shorter than
/// the rows, so both engines panicked instead of reporting the index.
#[test]
fn an_unmasked_index_is_reported_when_a_class_input_is_one_row() {
    let src = "pred z[C]\ntarget t[C]\ntarget k: index\n-log_softmax(z*t)[k]";
    for dtype in [Dtype::F64, Dtype::F32] {
        let prog = compile(src, &options(dtype, Vec::new(), false)).expect("compiles");
        let z = Array { shape: vec![4, 2], data: vec![0.5; 8] };
        let t = Array { shape: vec![2], data: vec![1.0, 2.0] };
        let k = Array::vector(vec![0.0, 1.0, 1.0, -100.0]);
        let data = [("z".to_string(), z), ("t".to_string(), t), ("k".to_string(), k)];
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let opts = EvalOptions { reduce: None, grad: true, hess: false, upstream: None };
        let want = "class index -100 of `k` at row 3 is outside [0, 2) and the row is not masked";
        for mode in [Mode::Exact, Mode::Kernel] {
            let err = evaluate_with(mode, &prog, &refs, &opts).expect_err("an unmasked index");
            assert_eq!(err.message, want, "{mode:?}");
        }
        let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
        assert_eq!(jit.evaluate(&refs, &opts).expect_err("an unmasked index").message, want);
    }
}

/// Edge-case data: no elements, no rows, one element, every pred broadcast, `mean_or_zero`
/// over zero weights, out-of-range indices masked by a zero weight.
/// A weighted cross-entropy whose `[C]` weight the kernels read in place when it is one row.
const WEIGHTED: &str = "pred z[C]\ntarget k: index\nparam w[C] = 1\n-w[k]*log_softmax(z)[k] + sum(w*z*z)";
const ZS: [f64; 9] = [1.0, -2.0, 0.5, 3.0, 3.0, -0.0, 1e3, -7.0, 2.5];

#[test]
fn edge_case_data_matches_the_kernel_interpreter_bit_for_bit() {
    let vector = |v: &[f64]| Array::vector(v.to_vec());
    let rows = |r: usize, c: usize, v: &[f64]| Array { shape: vec![r, c], data: v.to_vec() };
    let cases: Vec<(&str, Vec<(&str, Array)>)> = vec![
        ("(p - y)^2 + exp(p)", vec![("p", vector(&[])), ("y", vector(&[]))]),
        ("(p - y)^2 + exp(p)", vec![("p", vector(&[0.5])), ("y", vector(&[-1.0]))]),
        (
            "(p - y)^2 + exp(p)",
            vec![("p", Array::scalar(0.5)), ("y", vector(&[1.0, -0.0, 2.0, 0.0, 3.0, 1e300, -3.0]))],
        ),
        (
            "pred p\ntarget y\ntarget w\nreduce mean_or_zero by w\nsoftplus(p*y)",
            vec![("p", vector(&[1.0, 2.0, 3.0])), ("y", vector(&[1.0, -1.0, 0.5])), ("w", vector(&[0.0, 0.0, -0.0]))],
        ),
        ("pred z[C]\ntarget k: index\n-log_softmax(z)[k]", vec![("z", rows(0, 3, &[])), ("k", vector(&[]))]),
        (
            "pred z[C]\ntarget k: index\n-log_softmax(z)[k]",
            vec![("z", Array { shape: vec![3], data: vec![1.0, 1.0, -0.0] }), ("k", Array::scalar(2.0))],
        ),
        (
            "pred z[C]\ntarget k: index\ntarget w\nreduce mean by w\n-log_softmax(z)[k]",
            vec![
                ("z", rows(3, 2, &[1.0, 2.0, 3.0, 3.0, f64::INFINITY, 0.0])),
                ("k", vector(&[1.0, -100.0, 0.0])),
                ("w", vector(&[1.0, 0.0, 0.5])),
            ],
        ),
        // A class input read in place for every row (row step 0): given as one row, as one
        // number, or left at its default; and the same weights given in full.
        (WEIGHTED, vec![("z", rows(3, 3, &ZS)), ("k", vector(&[2.0, 0.0, 1.0])), ("w", vector(&[0.5, 2.0, -1.0]))]),
        (WEIGHTED, vec![("z", rows(3, 3, &ZS)), ("k", vector(&[2.0, 0.0, 1.0])), ("w", Array::scalar(0.25))]),
        (WEIGHTED, vec![("z", rows(3, 3, &ZS)), ("k", vector(&[2.0, 0.0, 1.0]))]),
        (
            WEIGHTED,
            vec![
                ("z", rows(3, 3, &ZS)),
                ("k", vector(&[2.0, 0.0, 1.0])),
                ("w", rows(3, 3, &[0.5, 2.0, -1.0, 1.0, 1.0, 1.0, 3.0, -0.5, 0.25])),
            ],
        ),
        (
            "pred z[C]\nreduce batchmean\nsum(softmax(z)*z) + max(z) - min(z) + norm(z)",
            vec![("z", rows(2, 5, &[0.0, -0.0, 0.0, -0.0, 0.0, 1e-310, -1e-310, 5e-324, 0.0, 1.0]))],
        ),
    ];
    let (mut failures, mut errors, mut computed) = (Vec::new(), Vec::new(), 0);
    for (src, data) in &cases {
        let data: Vec<(String, Array)> = data.iter().map(|(n, a)| (n.to_string(), a.clone())).collect();
        for dtype in [Dtype::F64, Dtype::F32] {
            let prog = compile(src, &options(dtype, Vec::new(), true)).expect("compiles");
            let jit = JitLoss::new_quick(prog.clone()).expect("kernels");
            for reduce in [None, Some(ReduceMode::None), Some(ReduceMode::Sum)] {
                let opts = EvalOptions { reduce, grad: true, hess: true, upstream: None };
                if let Some(d) = compare(&jit, &prog, &data, &opts, &[0]) {
                    failures.push(format!("{dtype:?} {reduce:?} {src}: {d}"));
                }
                let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
                match evaluate_with(Mode::Kernel, &prog, &refs, &opts) {
                    Ok(_) => computed += 1,
                    Err(e) => errors.push(format!("{dtype:?} {reduce:?} {src}: {}", e.message)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(errors.is_empty(), "edge cases that do not evaluate:\n{}", errors.join("\n"));
    assert_eq!(computed, cases.len() * 6);
}

/// Both kernel tiers of `prog`: the quick kernels, and the optimized ones, compiled now for
/// the variants a call with `opts` needs (the background optimizer would install them at
/// some later call).
fn both_tiers(prog: &Program, refs: &[(&str, &Array)], opts: &EvalOptions) -> [JitLoss; 2] {
    let quick = JitLoss::new_quick(prog.clone()).expect("kernels");
    let optimized = JitLoss::new(prog.clone()).expect("kernels");
    // The first call compiles the variants it needs; their optimized kernels follow.
    let _ = optimized.evaluate(refs, opts);
    optimized.optimize_now().expect("optimized kernels");
    [quick, optimized]
}

/// The kernels' own rewrites of elementwise graphs (`jit::prepare`: selects on one condition
/// merged, common factors taken out of selects; `sign`'s lowering) are exact: where no inline
/// math is involved, the JIT gives the exact interpreter's bits, signed zeros and NaN
/// included, per element (no summation order in play).
#[test]
fn kernel_rewrites_of_selects_are_exact() {
    let special = [-0.0, 0.0, 1.0, -1.0, 0.5, -2.0, 3.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-45, 3e38];
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for a in special {
        for b in special {
            p.push(a);
            y.push(b);
        }
    }
    let data = [("p".to_string(), Array::vector(p)), ("y".to_string(), Array::vector(y))];
    let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let formulas = [
        "e = p - y\nwhere(abs(e) < 1, 0.5*e^2, abs(e) - 0.5)",
        "e = p - y\nwhere(abs(e) < 0.5, 0.5*e^2/0.5, abs(e) - 0.25)",
        "0.5*(p - y)^2 + 0.25*(y - p)^2",
        "where(p < y, p*y, 0) + where(p < y, 0, -p) + where(p < y, -y, p)",
        "where(p < y, p*y, 0) - where(p < y, 0, -p) - where(p < y, -y, p)",
        "(where(p < y, p, 0) + where(p < y, 0, y)) - where(p < y, y, 0) - where(p > 0, 0, p)",
        "where(p < y, p, -0) - where(p < y, y, -0) + where(p < y, -0, p*p)",
        "where(p < y, p*y, -0) - where(p < y, y, -0)",
        "sign(p - y)*y + abs(p)",
        "maximum(1 - p*y, 0)^2",
    ];
    let mut failures = Vec::new();
    for src in formulas {
        let src = format!("pred p\ntarget y\n{src}");
        for dtype in [Dtype::F64, Dtype::F32] {
            let prog = compile(&src, &options(dtype, Vec::new(), true)).expect("compiles");
            let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: true, upstream: None };
            let want = evaluate_with(Mode::Exact, &prog, &refs, &opts).expect("evaluates");
            for jit in both_tiers(&prog, &refs, &opts) {
                let got = jit.evaluate(&refs, &opts).expect("evaluates");
                if let Some(d) = differ(&got, &want) {
                    failures
                        .push(format!("{dtype:?} {src:?}: {}", d.replace("kernel interpreter", "exact interpreter")));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Inline `sin`, `cos`, `sinh`, `cosh` (`tanh` and `cosh` differentiate to them), `pow` by
/// constants and by data (libm per lane), and kernels split on finiteness tests: both kernel
/// tiers give the kernel interpreter's
/// bits on arguments around every case of the code (tiny, the reduction's quadrants, the
/// 10^6 limit beyond which a vector calls libm for its large lanes, overflow of the
/// hyperbolic functions, specials), with small and large lanes mixed in one vector; and
/// beyond 10^6 `sin` and `cos` are libm's, which is what the exact interpreter computes.
#[test]
fn trigonometric_and_hyperbolic_kernels_match_bit_for_bit() {
    let args = [
        0.3,
        -0.0,
        1e-30,
        std::f64::consts::FRAC_PI_2,
        -2.356194490192345,
        999_999.9,
        1_000_000.5,
        -3.0e7,
        12.0,
        3e38,
        f64::INFINITY,
        f64::NAN,
        88.9,
        -89.6,
        710.2,
        -711.0,
        1e-320,
    ];
    let (mut p, mut y) = (Vec::new(), Vec::new());
    // Every rotation, so each value meets every other in one vector.
    for shift in 0..args.len() {
        for i in 0..args.len() {
            p.push(args[(i + shift) % args.len()]);
            y.push(0.5 + i as f64);
        }
    }
    let data = [("p".to_string(), Array::vector(p.clone())), ("y".to_string(), Array::vector(y))];
    let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let mut failures = Vec::new();
    // The last two have selects on finiteness tests (rules S36, S21), whose kernels branch
    // to a body without the fallbacks when every lane is finite (with gradients only; the
    // Hessian's own tests leave too little to skip).
    let formulas = [
        "sin(p)*y",
        "cos(p) + y",
        "tanh(p)*y",
        "cosh(p) - y",
        "sin(p)*cos(y)",
        "p^y",
        "y^p",
        "p^3 + p^-0.5",
        "0.5*(y + (y - p)^2*exp(-y))",
        "0.5*(p + (y - p)^2*exp(-p))",
    ];
    for (f, hess) in formulas.iter().flat_map(|f| [(f, false), (f, true)]) {
        let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess, upstream: None };
        let src = format!("pred p\ntarget y\n{f}");
        for dtype in [Dtype::F64, Dtype::F32] {
            let prog = compile(&src, &options(dtype, Vec::new(), hess)).expect("compiles");
            let [quick, optimized] = both_tiers(&prog, &refs, &opts);
            for jit in [&quick, &optimized] {
                if let Some(d) = compare(jit, &prog, &data, &opts, &[0]) {
                    failures.push(format!("{dtype:?} {f:?}: {d}"));
                }
            }
            let got = optimized.evaluate(&refs, &opts).expect("evaluates");
            let want = evaluate_with(Mode::Exact, &prog, &refs, &opts).expect("evaluates");
            let (LossValue::PerItem(g), LossValue::PerItem(w)) = (&got.loss, &want.loss) else {
                panic!("reduce none gives one value per item")
            };
            let far = |x: f64| x.is_finite() && x.abs() > 1e6 && (dtype == Dtype::F64 || (x as f32).is_finite());
            for ((x, a), b) in p.iter().zip(g).zip(w) {
                // Where nothing else is inline math.
                let plain = *f == "sin(p)*y" || *f == "cos(p) + y";
                if plain && far(*x) && a.to_bits() != b.to_bits() {
                    failures.push(format!("{dtype:?} {f:?} at {x:e}: jit {a:e}, libm {b:e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Class values over a row value (two or more of them, as in the cosine term and a
/// normalized vector) are products by the row's reciprocal where that is a normal number,
/// and the optimized kernels run a copy of the pass without the divisions on such rows
/// (`prepare::div_by_row`, `codegen`'s split passes): both tiers give the kernel
/// interpreter's bits on rows of every kind in one call, norms in range, subnormal, huge,
/// zero, infinite and NaN.
#[test]
fn row_divisions_split_on_the_reciprocal_range_bit_for_bit() {
    let c = 7;
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut rng_state = 0x9e37_79b9_u64;
    let mut next = || {
        rng_state = rng_state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((rng_state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    for dtype in [Dtype::F32, Dtype::F64] {
        let (tiny, huge) = if dtype == Dtype::F32 { (1e-40, 6e37) } else { (1e-310, 3e307) };
        a.clear();
        b.clear();
        for (sa, sb) in [(1.0, 1.0), (tiny, 1.0), (1.0, huge), (0.0, 2.0), (huge, tiny), (1.0, 1e-3), (3.0, 1.0)] {
            for _ in 0..c {
                a.push(sa * next());
                b.push(sb * next());
            }
        }
        // Special rows: an infinity, a NaN.
        a.extend((0..c).map(|i| if i == 2 { f64::INFINITY } else { next() }));
        b.extend((0..c).map(|_| next()));
        a.extend((0..c).map(|_| next()));
        b.extend((0..c).map(|i| if i == 5 { f64::NAN } else { next() }));
        let rows = a.len() / c;
        let data = [
            ("a".to_string(), Array { shape: vec![rows, c], data: a.clone() }),
            ("b".to_string(), Array { shape: vec![rows, c], data: b.clone() }),
        ];
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, x)| (n.as_str(), x)).collect();
        let mut failures = Vec::new();
        for f in ["1 - sum(a*b)/(norm(a)*norm(b))", "n = norm(a)\nsum((a/n - b)^2) + sum(a*b)/n"] {
            let src = format!("pred a[C]\npred b[C]\n{f}");
            let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: false, upstream: None };
            let prog = compile(&src, &options(dtype, Vec::new(), false)).expect("compiles");
            for jit in both_tiers(&prog, &refs, &opts) {
                if let Some(d) = compare(&jit, &prog, &data, &opts, &[0]) {
                    failures.push(format!("{dtype:?} {f:?}: {d}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// Row maxima and minima over signed zeros: ties keep the first entry in the kernels' order
/// (lane 0, lane 1, …, then the scalar tail), so the sign of a zero extremum depends on
/// which lane each class went to. Every row of {−1, −0, +0, 1} at C around the vector
/// width, through both tiers, against the kernel interpreter's bits. (Written for an
/// overlapping last vector, measured and not kept, where a quick-tier tail that skipped
/// the classes it re-covers gave +0 for the f32 row (−1, +0, −0, +0, +0, +0) instead of −0.)
#[test]
fn row_extrema_of_signed_zeros_follow_the_lanes_bit_for_bit() {
    let values = [-1.0, -0.0, 0.0, 1.0];
    let mut failures = Vec::new();
    for (dtype, c) in [(Dtype::F32, 5), (Dtype::F32, 6), (Dtype::F32, 7), (Dtype::F64, 3), (Dtype::F64, 5)] {
        let rows = values.len().pow(c as u32);
        let data: Vec<f64> = (0..rows)
            .flat_map(|r| (0..c).map(move |k| values[r / values.len().pow(k as u32) % values.len()]))
            .collect();
        let data = [("x".to_string(), Array { shape: vec![rows, c], data })];
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, x)| (n.as_str(), x)).collect();
        let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: false, upstream: None };
        for f in ["max(x)", "min(x)", "max(x) - 2*min(x) + sum(x)"] {
            let prog = compile(&format!("pred x[C]\n{f}"), &options(dtype, Vec::new(), false)).expect("compiles");
            for jit in both_tiers(&prog, &refs, &opts) {
                if let Some(d) = compare(&jit, &prog, &data, &opts, &[0]) {
                    failures.push(format!("{dtype:?} C={c} {f:?}: {d}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A `log(x)` whose every use is under `where(x > 0, ·, ·)` on its own argument is computed
/// without log's fix-ups for x ≤ 0 and NaN (`MathFunc::LogPositive`, KL divergence's
/// `y·(log(y) − p)`): the lanes it gets wrong are those the select discards, so both tiers
/// still give the kernel interpreter's bits, through the vector body and the scalar tail;
/// a log also used outside such a select (the last loss) keeps the fix-ups.
#[test]
fn guarded_logs_match_the_kernel_interpreter_bit_for_bit() {
    let special = [0.0, -0.0, -1.0, 0.5, 2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-40, 1e-310, 3e38, 1e-45];
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for a in special {
        for b in special {
            p.push(a);
            y.push(b);
        }
    }
    let n = p.len();
    let kl = "pred p[C]\ntarget y[C]\nreduce batchmean\nsum(where(y > 0, y*(log(y) - p), 0))";
    let cases = [
        (kl, vec![n / 4, 4]),
        (kl, vec![n / 3, 3]),
        ("pred p\ntarget y\nwhere(p > 0, log(p)*y, -p)", vec![n]),
        ("pred p\ntarget y\nwhere(0 < p, log(p), p) + where(y > 0, log(p), 0)", vec![n]),
    ];
    let reduces = [None, Some(ReduceMode::None), Some(ReduceMode::Sum)];
    let failures = tiers_agree_on_p_and_y(&cases, &p, &y, &reduces, true);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs each `(source, shape)` of `cases` on inputs `p` and `y` (reshaped) through both tiers,
/// f64 and f32, with the gradient (and the Hessian with `hess`) under each reduction of
/// `reduces`, against the kernel interpreter; returns the mismatches.
fn tiers_agree_on_p_and_y(
    cases: &[(&str, Vec<usize>)],
    p: &[f64],
    y: &[f64],
    reduces: &[Option<ReduceMode>],
    hess: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (src, shape) in cases {
        let data = [
            ("p".to_string(), Array { shape: shape.clone(), data: p.to_vec() }),
            ("y".to_string(), Array { shape: shape.clone(), data: y.to_vec() }),
        ];
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        for dtype in [Dtype::F64, Dtype::F32] {
            let prog = compile(src, &options(dtype, Vec::new(), hess)).expect("compiles");
            for &reduce in reduces {
                let opts = EvalOptions { reduce, grad: true, hess, upstream: None };
                for (tier, jit) in both_tiers(&prog, &refs, &opts).iter().enumerate() {
                    if let Some(d) = compare(jit, &prog, &data, &opts, &[0]) {
                        failures.push(format!("tier {tier} {dtype:?} {reduce:?} {src}: {d}"));
                    }
                }
            }
        }
    }
    failures
}

/// The logs the kernels compute without log's fix-ups give log's bits: a log of a prediction
/// and the log1p of its negation in an element kernel (`log_normal` and `log1p_small`, and
/// the full routine for vectors with a lane out of their range — zero, subnormal, tiny,
/// negative, beyond 1, infinite or NaN — in a cold block around the one log, or in a cold
/// copy of the body for BCE's two), logs and log1p's of clipped probabilities (`log_normal`,
/// `log1p_small`, proved by the clip's range, with the tiny-argument fix-up only where the
/// range reaches 0) and `log1p(e^−|x|)` in softplus (`log1p_unit`).
/// Most vectors of the data are ordinary, some carry one special lane, at every lane position.
#[test]
fn logs_without_fix_ups_match_the_kernel_interpreter_bit_for_bit() {
    let special = [
        0.0,
        -0.0,
        -1.0,
        -0.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-40,
        1e-310,
        3e38,
        1e-45,
        1.0,
        1e-9,
        0.99999994,
        2.0,
    ];
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for i in 0..special.len() * 12 {
        let ordinary = 0.05 + 0.9 * ((i * 37 % 101) as f64 / 101.0);
        p.push(if i % 12 == i / 12 % 12 { special[i / 12] } else { ordinary });
        y.push((i * 53 % 97) as f64 / 97.0);
    }
    let n = p.len();
    let cases = [
        ("pred p\ntarget y\n-(y*log(p) + (1 - y)*log(1 - p))", vec![n]),
        ("pred p\ntarget y\nlog(p + 1e-8)*y - p", vec![n]),
        ("pred p\ntarget y\n-(1 - y)*log(1 - p)", vec![n]),
        ("pred p\ntarget y\nlog1p(clamp(p, -0.5, 0.5))*y", vec![n]),
        ("pred p\ntarget y\nsoftplus(p) - y*p", vec![n]),
        ("pred p[C]\ntarget y[C]\nq = where(p < 1e-7, 1e-7, where(p > 1 - 1e-7, 1 - 1e-7, p))\nmean(-(y*log(q) + (1 - y)*log(1 - q)))", vec![n / 4, 4]),
        ("pred p\ntarget y\nq = clamp(p, 1e-7, 1 - 1e-7)\n-(y*log(q) + (1 - y)*log1p(-q))", vec![n]),
    ];
    let failures = tiers_agree_on_p_and_y(&cases, &p, &y, &[None, Some(ReduceMode::None)], false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
