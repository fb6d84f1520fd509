//! Differential tests: the JIT against the reference interpreter.
//!
//! Each comparison runs both kernel tiers: the quick kernels must compute the same bits as
//! the optimized ones, which are compared with the interpreter.
//!
//! Every formula of the numeric suite and a stream of random well-formed losses run
//! through both engines in f32 and f64 under every reduction, with gradients and Hessian
//! diagonals. The engines differ only in their math routines (inline polynomials in the
//! JIT, the platform libm in the interpreter; both within about 1 ulp) and their summation
//! order (lanes, then chunks), so results must agree within a few ulps of the magnitudes
//! involved: |jit - interp| ≤ tol·(1 + |interp|) + tol·scale, with tol = 2e-12 (f64) or
//! 4e-5 (f32), scale the largest magnitude of that output. Where f32 results differ more
//! (ill-conditioned outputs such as deep Hessians), the f64 interpreter referees: the JIT must
//! be no farther from it than the f32 interpreter (one case in 100,000 needed this). `LOSSC_LONG=1` runs 20,000
//! random losses instead of 400 (`LOSSC_CASES=N` sets the count).

mod common;

use common::gen::Gen;
use common::{inputs, Rng, CASES};
use lossc::eval::{evaluate, Array, EvalOptions, Evaluation, LossValue};
use lossc::jit::JitLoss;
use lossc::program::ReduceMode;
use lossc::{compile, CompileOptions, Dtype};

fn tol(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F64 => 2e-12,
        Dtype::F32 => 4e-5,
    }
}

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

/// None when the two agree; else a description of the first difference.
fn differ(a: &Evaluation, b: &Evaluation, dtype: Dtype) -> Option<String> {
    let t = tol(dtype);
    for ((name, x), (_, y)) in flat(a).iter().zip(flat(b).iter()) {
        if x.len() != y.len() {
            return Some(format!("{name}: lengths {} and {}", x.len(), y.len()));
        }
        let scale = y.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let same = if p.is_nan() || q.is_nan() {
                p.is_nan() && q.is_nan()
            } else if p.is_infinite() || q.is_infinite() {
                p == q
            } else {
                (p - q).abs() <= t * (1.0 + q.abs()) + t * scale
            };
            if !same {
                return Some(format!("{name}[{i}]: jit {p:e}, interpreter {q:e}"));
            }
        }
    }
    None
}

/// True when some output of `jit` is farther from `truth` than the interpreter's `interp`
/// is, beyond f32 rounding of the value itself.
fn farther(jit: &Evaluation, interp: &Evaluation, truth: &Evaluation) -> bool {
    for (((_, j), (_, i)), (_, t)) in flat(jit).iter().zip(flat(interp).iter()).zip(flat(truth).iter()) {
        for ((a, b), c) in j.iter().zip(i).zip(t) {
            if !(a.is_finite() && b.is_finite() && c.is_finite()) {
                if (a.is_nan() != b.is_nan()) || (a.is_infinite() && a != b) {
                    return true;
                }
                continue;
            }
            let (ej, ei) = ((a - c).abs(), (b - c).abs());
            if ej > 2.0 * ei + 4e-5 * (1.0 + c.abs()) {
                return true;
            }
        }
    }
    false
}

fn both(src: &str, dtype: Dtype, data: &[(String, Array)], reduce: ReduceMode) -> Result<Option<String>, String> {
    let options = CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: true };
    let prog = compile(src, &options.clone())
        .map_err(|d| format!("{src}: {:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>()))?;
    // Both tiers: the quick kernels a new loss starts with must compute the same bits as the
    // optimized ones that replace them, which are then compared with the interpreter.
    let jit = JitLoss::new_quick(prog.clone()).map_err(|e| e.to_string())?;
    let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { reduce: Some(reduce), grad: true, hess: true, upstream: None };
    let want = evaluate(&prog, &refs, &opts);
    let quick = jit.evaluate(&refs, &opts);
    jit.optimize_now().map_err(|e| e.to_string())?;
    let got = jit.evaluate(&refs, &opts);
    if let (Ok(q), Ok(g)) = (&quick, &got) {
        let same = flat(q).iter().zip(flat(g)).all(|((_, x), (_, y))| {
            x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
        });
        if !same {
            return Ok(Some("the quick and the optimized kernels differ".to_string()));
        }
    }
    match (got, want) {
        (Ok(g), Ok(w)) => match differ(&g, &w, dtype) {
            // In f32 an ill-conditioned output (a deep Hessian, say) can differ between two
            // correct engines by far more than an ulp. The f64 interpreter referees: the JIT
            // passes if it is no farther from the f64 values than the f32 interpreter is.
            Some(d) if dtype == Dtype::F32 => {
                let options64 = CompileOptions { dtype: Dtype::F64, ..options };
                let prog64 = compile(src, &options64).map_err(|_| format!("{src}: no f64 compile"))?;
                let truth = evaluate(&prog64, &refs, &opts).map_err(|e| e.message)?;
                Ok(farther(&g, &w, &truth).then_some(d))
            }
            other => Ok(other),
        },
        (Err(g), Err(w)) if g.message == w.message => Ok(None),
        (g, w) => {
            Ok(Some(format!("jit {:?} vs interpreter {:?}", g.err().map(|d| d.message), w.err().map(|d| d.message))))
        }
    }
}

#[test]
fn every_numeric_formula_agrees_with_the_interpreter() {
    let mut rng = Rng(0xD1FF);
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in CASES {
        for dtype in [Dtype::F64, Dtype::F32] {
            let options = CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: true };
            let prog = compile(case.src, &options).expect("numeric formulas compile");
            let data = inputs(&prog, case, &mut rng);
            for reduce in [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None] {
                runs += 1;
                match both(case.src, dtype, &data, reduce) {
                    Ok(None) => {}
                    Ok(Some(d)) => failures.push(format!("{:?} {:?} {}: {d}", dtype, reduce, case.src)),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {runs} runs differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn random_losses_agree_with_the_interpreter() {
    // LOSSC_CASES=N overrides the count (the 100,000-case run).
    let n = common::case_count(400, 20_000);
    let mut generator = Gen::new(Rng(0x00C0_FFEE));
    let mut data_rng = Rng(0xDA7A);
    let mut failures = Vec::new();
    for i in 0..n {
        let src = generator.loss();
        if std::env::var_os("LOSSC_TRACE").is_some() {
            eprintln!("CASE {i}: {src}");
        }
        let dtype = if i % 2 == 0 { Dtype::F64 } else { Dtype::F32 };
        let reduce = [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None][i % 3];
        let options = CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: true };
        let prog = match compile(&src, &options) {
            Ok(p) => p,
            Err(d) => {
                failures
                    .push(format!("{src}: does not compile: {:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>()));
                continue;
            }
        };
        let case = common::Case { src: "", ranges: &[] };
        let data = inputs(&prog, &case, &mut data_rng);
        match both(&src, dtype, &data, reduce) {
            Ok(None) => {}
            Ok(Some(d)) => failures.push(format!("{dtype:?} {reduce:?} {src}: {d}")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} of {n} random losses differ:\n{}", failures.len(), failures.join("\n\n"));
}

/// Regression: an unused index target given no data made the JIT read a null pointer
/// (found by the random differential test); an unused pred given no data made the
/// interpreter index an empty gradient.
#[test]
fn unused_inputs_need_no_data() {
    let rows = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let z = Array { shape: vec![2, 3], data: rows.clone() };
    let t = Array { shape: vec![2, 3], data: rows.iter().map(|x| x * 0.5).collect() };
    for dtype in [Dtype::F64, Dtype::F32] {
        let data = vec![("z".to_string(), z.clone()), ("t".to_string(), t.clone())];
        let src = "pred z[C]\ntarget t[C]\ntarget k: index\nmax(exp(t)) + sum(z)";
        assert_eq!(both(src, dtype, &data, ReduceMode::Mean), Ok(None));
        let y = Array::vector(vec![0.5, -1.0]);
        let data = vec![("y".to_string(), y)];
        assert_eq!(both("log(1 + square(sigmoid(y)))", dtype, &data, ReduceMode::Sum), Ok(None));
    }
}

/// The quick kernels (no Cranelift optimization, single-pass register allocation) that make a
/// loss callable at once and the optimized ones that replace them in the background come
/// from the same IR: they must compute the same bits, for every formula of the suite and a
/// stream of random losses, in f32 and f64, under every reduction.
#[test]
fn quick_and_optimized_kernels_compute_the_same_bits() {
    let mut generator = Gen::new(Rng(0x7135_0001));
    let mut data_rng = Rng(0x7135_0002);
    let sources: Vec<String> =
        CASES.iter().map(|c| c.src.to_string()).chain((0..120).map(|_| generator.loss())).collect();
    let mut runs = 0;
    for (i, src) in sources.iter().enumerate() {
        let dtype = if i % 2 == 0 { Dtype::F64 } else { Dtype::F32 };
        let reduce = [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None][i % 3];
        let options = CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: true };
        let prog = compile(src, &options).expect("compiles");
        let case =
            CASES.get(i).map_or(common::Case { src: "", ranges: &[] }, |c| common::Case { src: "", ranges: c.ranges });
        let data = inputs(&prog, &case, &mut data_rng);
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let opts = EvalOptions { reduce: Some(reduce), grad: true, hess: true, upstream: None };
        let quick = JitLoss::new_quick(prog.clone()).expect("quick kernels");
        let optimized = JitLoss::new_quick(prog).expect("kernels");
        // Compile every variant the call needs in the quick tier, then optimize them.
        let _ = optimized.evaluate(&refs, &opts);
        optimized.optimize_now().expect("optimized kernels");
        let (a, b) = (quick.evaluate(&refs, &opts), optimized.evaluate(&refs, &opts));
        let (Ok(a), Ok(b)) = (a, b) else { continue };
        for ((what, x), (_, y)) in flat(&a).into_iter().zip(flat(&b)) {
            for (p, q) in x.iter().zip(&y) {
                assert!(
                    p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                    "{src}: {what}: quick {p} vs optimized {q}"
                );
            }
        }
        runs += 1;
    }
    assert!(runs > 150, "only {runs} losses ran");
}

/// Row kernels keep class values in per-thread scratch between passes and run a vector loop
/// plus a scalar tail per pass: class counts around the vector width, with ties and
/// non-finite entries in some rows, must agree with the interpreter everywhere.
#[test]
fn class_counts_around_the_vector_width_agree() {
    let losses = [
        "pred z[C]\ntarget k: index\n-log_softmax(z)[k]",
        "pred z[C]\ntarget k: index\nlogsumexp(z) - z[k]",
        "pred z[C]\ntarget t[C]\nsum(t*log_softmax(z)) + sum(softmax(z)^2)",
        "pred z[C]\nsum(softmax(z)*log_softmax(z))",
        "pred z[C]\ntarget t[C]\n(z - t)^2*softmax(z) + exp(z - logsumexp(z))",
    ];
    let mut rng = Rng(0x5C4A_7C11);
    for classes in [1usize, 2, 3, 4, 5, 7, 8, 9, 17, 64, 67] {
        let rows = 6;
        let z: Vec<f64> = (0..rows * classes)
            .map(|i| match (i / classes, i % classes) {
                (1, c) if c < 2 => 3.0, // a tie at the maximum
                (2, 0) => f64::NEG_INFINITY,
                (3, 0) => f64::INFINITY,
                (4, c) if c + 1 == classes => f64::NAN,
                _ => 6.0 * rng.next() - 3.0,
            })
            .collect();
        let t: Vec<f64> = (0..rows * classes).map(|_| rng.next()).collect();
        let k: Vec<f64> = (0..rows).map(|r| (r * 5 % classes) as f64).collect();
        let data = [
            ("z".to_string(), Array { shape: vec![rows, classes], data: z }),
            ("t".to_string(), Array { shape: vec![rows, classes], data: t }),
            ("k".to_string(), Array::vector(k)),
        ];
        for src in losses {
            for dtype in [Dtype::F64, Dtype::F32] {
                for reduce in [ReduceMode::Sum, ReduceMode::None] {
                    let used: Vec<(String, Array)> = data
                        .iter()
                        .filter(|(n, _)| src.contains(&format!("{n}[")) || src.contains(&format!("{n}:")))
                        .cloned()
                        .collect();
                    let res = both(src, dtype, &used, reduce);
                    assert_eq!(res, Ok(None), "C={classes} {dtype:?} {reduce:?}: {src}");
                }
            }
        }
    }
}

/// Regression (found by the `data` fuzz target): a `[C]` input with zero rows (a `(0, C)`
/// array) was accepted by the interpreter and rejected by the JIT as an internal error.
#[test]
fn zero_rows_agree() {
    let z = Array { shape: vec![0, 3], data: Vec::new() };
    for dtype in [Dtype::F64, Dtype::F32] {
        for reduce in [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None] {
            let data = vec![("z".to_string(), z.clone()), ("k".to_string(), Array::vector(vec![7.0]))];
            let src = "pred z[C]\ntarget k: index\n-log_softmax(z)[k]";
            assert_eq!(both(src, dtype, &data, reduce), Ok(None), "{dtype:?} {reduce:?}");
        }
    }
}

/// Regression (found by the `generated` fuzz target): an unused index target given
/// out-of-range data was an error in the interpreter and fine in the JIT; an index the loss
/// never reads cannot read outside a row, so both engines accept it now.
#[test]
fn unused_index_data_is_not_range_checked() {
    let z = Array { shape: vec![2, 3], data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] };
    let k = Array::vector(vec![-1.0, 7.0]);
    for dtype in [Dtype::F64, Dtype::F32] {
        let data = vec![("z".to_string(), z.clone()), ("t".to_string(), z.clone()), ("k".to_string(), k.clone())];
        let src = "pred z[C]\ntarget t[C]\ntarget k: index\nsum(z + t)";
        assert_eq!(both(src, dtype, &data, ReduceMode::Mean), Ok(None));
    }
}

fn big_call(jit: &JitLoss, p: &[f32], y: &[f32]) -> (f64, Vec<f32>) {
    use lossc::jit::{Arg, CallOptions, Data, Outputs};
    let mut grad = vec![0.0f32; p.len()];
    let args = [Arg { name: "p", data: Data::Values(p) }, Arg { name: "y", data: Data::Values(y) }];
    let opts = CallOptions { rows: Some(p.len()), ..CallOptions::default() };
    let mut grads = [grad.as_mut_slice()];
    let mut out = Outputs { grad: &mut grads, hess: &mut [], loss_items: None };
    let loss = jit.call(&args, &opts, &mut out).expect("valid call");
    (loss, grad)
}

/// The reduced loss is bitwise the same for any number of threads (fixed chunks, fixed
/// combination order), and one compiled loss serves many threads at once.
#[test]
fn results_do_not_depend_on_threads() {
    let options = CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true };
    let jit = JitLoss::new(compile("softplus(p*y) + (p - y)^2", &options).expect("valid")).expect("compiles");
    let mut rng = Rng(7);
    let n = 300_007; // several chunks and a ragged tail
    let p: Vec<f32> = (0..n).map(|_| (rng.next() * 6.0 - 3.0) as f32).collect();
    let y: Vec<f32> = (0..n).map(|_| (rng.next() * 2.0 - 1.0) as f32).collect();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("pool");
    let (l1, g1) = one.install(|| big_call(&jit, &p, &y));
    let (l4, g4) = four.install(|| big_call(&jit, &p, &y));
    assert_eq!(l1.to_bits(), l4.to_bits());
    assert_eq!(g1, g4);
    let results: Vec<(f64, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| big_call(&jit, &p, &y))).collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    for (l, g) in results {
        assert_eq!(l.to_bits(), l1.to_bits());
        assert_eq!(g, g1);
    }
}

#[test]
fn compiled_losses_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<JitLoss>();
}

fn rss_bytes() -> usize {
    // Resident pages are the second field of /proc/self/statm (Linux); 0 elsewhere.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Compiling and dropping losses frees their code: memory stays flat under churn.
/// `LOSSC_LONG=1` runs 100,000 cycles instead of 300.
#[test]
fn compile_and_drop_keeps_memory_flat() {
    let long = std::env::var("LOSSC_LONG").is_ok_and(|v| v == "1");
    let n = if long { 100_000 } else { 300 };
    let options = CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true };
    let cycle = |i: usize| {
        let src = format!("softplus(p*y) + {}*(p - y)^2", 1 + i % 7);
        let jit = JitLoss::new(compile(&src, &options).expect("valid")).expect("compiles");
        drop(jit);
    };
    for i in 0..200 {
        cycle(i);
    }
    let before = rss_bytes();
    for i in 0..n {
        cycle(i);
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(growth < 8 << 20, "RSS grew by {} KiB over {n} compile/drop cycles", growth >> 10);
}

/// Rows whose max is not finite (a +inf entry, all -inf, a NaN) take the interpreter's
/// `log(Σ e^x)` branch; the JIT computes it without exponentials and must agree exactly.
#[test]
fn rows_with_non_finite_max_agree() {
    let inf = f64::INFINITY;
    let z =
        Array { shape: vec![4, 3], data: vec![1.0, inf, 2.0, -inf, -inf, -inf, 0.5, f64::NAN, 1.0, 3.0, -1.0, 0.25] };
    let k = Array::vector(vec![0.0, 1.0, 2.0, 0.0]);
    let t = Array { shape: vec![4, 3], data: vec![0.2, 0.5, 0.3, 1.0, 0.0, 0.0, 0.1, 0.1, 0.8, 0.0, 0.9, 0.1] };
    for dtype in [Dtype::F64, Dtype::F32] {
        // The last one's gradient is t·expm1(log_softmax(z)) − …, which the JIT computes
        // from the kept exponentials.
        for body in
            ["logsumexp(z)", "sum(softmax(z))", "sum(log_softmax(z))", "-log_softmax(z)[k]", "-sum(t*log_softmax(z))"]
        {
            let src = format!("pred z[C]\ntarget k: index\ntarget t[C]\n{body}");
            let data = vec![("z".to_string(), z.clone()), ("k".to_string(), k.clone()), ("t".to_string(), t.clone())];
            assert_eq!(both(&src, dtype, &data, ReduceMode::None), Ok(None), "{body}");
        }
    }
}

/// `norm` is the plain sqrt(Σx²) where that sum is in range and the scaled form elsewhere,
/// whose passes over the row the kernel runs only on those rows (guarded passes): rows of
/// every scale, zero rows and non-finite entries agree with the interpreter whichever way
/// each row goes, next to each other.
#[test]
fn norm_rows_of_every_scale_agree() {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let rows: [[f64; 3]; 9] = [
        [1.0, 2.0, 3.0],
        [1e30, -2e30, 3.0],
        [1e-30, 2e-30, 0.0],
        [0.0, 0.0, 0.0],
        [inf, 1.0, 2.0],
        [nan, 1.0, 2.0],
        [1e-20, -1e-21, 3e-20],
        [1e200, 1e-200, 1.0],
        [1e-170, 1e-160, -1e-165],
    ];
    let z = Array { shape: vec![rows.len(), 3], data: rows.iter().flatten().copied().collect() };
    for dtype in [Dtype::F64, Dtype::F32] {
        // Two norms whose rows go different ways: their passes run where either needs them.
        for body in ["norm(z)", "sqrt(sum(z^2))", "norm(z)^2 + sum(z)", "norm(z)*norm(z - 1)"] {
            let src = format!("pred z[C]\n{body}");
            let data = vec![("z".to_string(), z.clone())];
            assert_eq!(both(&src, dtype, &data, ReduceMode::None), Ok(None), "{body} {dtype:?}");
        }
    }
}

/// Quick kernels call the elementary functions compiled once per process (`jit::mathlib`);
/// optimized kernels inline them. Both come from the same emitters and must agree bit for
/// bit on every function, in f32 and f64, on special and extreme values, in the vector body
/// (lanes across elements or classes) and in the scalar tail.
#[test]
fn called_and_inlined_math_compute_the_same_bits() {
    let specials = [
        0.0,
        -0.0,
        1e-45,
        -1e-45,
        1e-310,
        1e-30,
        -1e-8,
        0.5,
        -0.75,
        1.0,
        -1.0,
        2.5,
        -20.0,
        88.7,
        -103.9,
        709.0,
        -745.0,
        1e30,
        -1e30,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        3.0e38,
    ];
    let sources = [
        "exp(p) + log(abs(p)) + log1p(abs(p)) + expm1(p) + sigmoid(p) + softplus(p) + log_sigmoid(p) + tanh(p)",
        "pred p[C]\nsum(exp(p) + log1p(abs(p)) + expm1(p) + sigmoid(p) + softplus(p) + log_sigmoid(p) + tanh(p))",
    ];
    for src in sources {
        for dtype in [Dtype::F32, Dtype::F64] {
            let options = CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: false };
            let prog = compile(src, &options).expect("compiles");
            // The specials, then values of every magnitude (enough to meet the rare arguments
            // where two different roundings of the same formula part): a ragged tail;
            // as rows of 47 classes, a tail in every row.
            let mut rng = Rng(0x3a7b);
            let wide = (0..20_000).map(|_| (rng.next() * 2.0 - 1.0) * 10f64.powf(rng.next() * 8.0 - 5.0));
            let data: Vec<f64> = specials.iter().copied().chain(wide).collect();
            let p = if prog.class_axis {
                Array { shape: vec![data.len() / 47, 47], data: data[..data.len() / 47 * 47].to_vec() }
            } else {
                Array { shape: vec![data.len()], data }
            };
            let refs = [("p", &p)];
            let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: true, upstream: None };
            let quick = JitLoss::new_quick(prog.clone()).expect("quick kernels");
            let optimized = JitLoss::new_quick(prog).expect("kernels");
            let _ = optimized.evaluate(&refs, &opts);
            optimized.optimize_now().expect("optimized kernels");
            let a = quick.evaluate(&refs, &opts).expect("evaluates");
            let b = optimized.evaluate(&refs, &opts).expect("evaluates");
            for ((what, x), (_, y)) in flat(&a).into_iter().zip(flat(&b)) {
                for (p, q) in x.iter().zip(&y) {
                    assert!(
                        p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                        "{src} {dtype:?}: {what}: quick {p} vs optimized {q}"
                    );
                }
            }
        }
    }
}

/// Powers by small integer and half-integer constants are spelled out in the kernels (products,
/// a reciprocal, a square root): libm's special values exactly (signed zeros, infinities,
/// NaN for negative bases of half-integer powers) and its other values within 3 ulps, in
/// both dtypes, for every exponent that takes that path.
#[test]
fn constant_powers_match_libm() {
    let xs = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.0,
        -2.0,
        0.3,
        -0.7,
        7.5,
        1e-30,
        1e30,
        3e38,
        1e-42,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let mut failures = Vec::new();
    for c in [-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 1.5, 2.5, 3.0] {
        let src = format!("pred p\np^({c})");
        for dtype in [Dtype::F64, Dtype::F32] {
            let options = CompileOptions { dtype, params: Vec::new(), hessian: false, stabilize: true };
            let prog = compile(&src, &options).expect("compiles");
            let jit = JitLoss::new(prog).expect("kernels");
            let data = [("p", &Array::vector(xs.to_vec()))];
            let opts = EvalOptions { reduce: Some(ReduceMode::None), grad: false, hess: false, upstream: None };
            let _ = jit.evaluate(&data, &opts);
            jit.optimize_now().expect("optimized kernels");
            let got = jit.evaluate(&data, &opts).expect("evaluates");
            let LossValue::PerItem(got) = got.loss else { panic!("one value per item") };
            for (&x, &g) in xs.iter().zip(&got) {
                let (want, ulp) = match dtype {
                    Dtype::F64 => {
                        let w = x.powf(c);
                        (w, f64::EPSILON * w.abs())
                    }
                    Dtype::F32 => {
                        let w = f64::from((x as f32).powf(c as f32));
                        (w, f64::from(f32::EPSILON) * w.abs())
                    }
                };
                let special = !want.is_finite() || want == 0.0 || g.is_nan();
                let ok = if special {
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan())
                } else {
                    (g - want).abs() <= 3.0 * ulp.max(f64::MIN_POSITIVE)
                };
                if !ok {
                    failures.push(format!("{dtype:?} {x:e}^{c}: jit {g:e}, libm {want:e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
