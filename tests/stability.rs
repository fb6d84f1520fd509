//! The stability rewriter (issue 4): every rule is sound (left side = right side in high
//! precision, value and gradients, wherever the left side is defined) and never less
//! accurate than the left side; lowerings compute the fused ops bit for bit; the §8.1
//! benchmark has no spurious non-finite results and meets its accuracy targets; the engine
//! is deterministic. Long sweeps (2000 points per formula) run with `LOSSC_LONG=1`.
//!
//! See: issue 4, "Stability rewriting: naive formulas stay finite and accurate to the last bits".

mod support;

use lossc::eval::{evaluate, Array, EvalOptions};
use lossc::program::{Layout, ReduceMode};
use lossc::stabilize::{lower_fused, rule_table, Phase};
use lossc::{compile, CompileOptions, Dtype};

use support::harness::{benchmark, check_rule, errors_at, measure, output_names, Engine, Formula, Gen, Rng, RowGen};

fn long() -> bool {
    std::env::var("LOSSC_LONG").is_ok_and(|v| v == "1")
}

/// One canonical case per rule: a formula whose stabilization fires it.
fn rule_cases() -> Vec<(&'static str, Formula)> {
    use Gen::*;
    let s = |name: &'static str, src: &str, scalars: Vec<(&'static str, Gen)>| {
        (name, Formula { name, source: src.to_string(), scalars, rows: vec![], classes: 1 })
    };
    let r = |name: &'static str, src: &str, rows: Vec<(&'static str, RowGen)>| {
        (name, Formula { name, source: src.to_string(), scalars: vec![], rows, classes: 5 })
    };
    vec![
        s("pow-special", "pred x\nx^2 + abs(x)^0.5", vec![("x", Residual)]),
        s("neg-out", "pred x\ntarget y\n(-x)*y + x/(-y)", vec![("x", Residual), ("y", Residual)]),
        s("neg-add", "pred x\ntarget y\n-x + y", vec![("x", Residual), ("y", Residual)]),
        s("sigmoid", "pred x\n1/(1+exp(-x))", vec![("x", Logit)]),
        s("one-minus-sigmoid", "pred x\n1 - sigmoid(x)", vec![("x", Logit)]),
        s("log-sigmoid", "pred x\nlog(sigmoid(x))", vec![("x", Logit)]),
        s("log1p-neg-sigmoid", "pred x\nlog1p(-sigmoid(x))", vec![("x", Logit)]),
        s("sigmoid-power", "pred x\nsigmoid(x)^0.5", vec![("x", Logit)]),
        s("sigmoid-odds", "pred x\nsigmoid(x)/sigmoid(-x)", vec![("x", Logit)]),
        s("exp-log-sigmoid", "pred x\nexp(log_sigmoid(x))", vec![("x", Logit)]),
        s("exp-times-sigmoid", "pred x\nexp(x)*sigmoid(-x)", vec![("x", Logit)]),
        s("sigmoid-cancel", "pred x\ntarget y\n(sigmoid(x)*y)/sigmoid(x)", vec![("x", Logit), ("y", Soft)]),
        r("softmax-cross-entropy", "pred x[C]\ntarget k: index\n-log_softmax(x)[k]", vec![("x", RowGen::Logits)]),
        r(
            "log-softmax",
            "pred x[C]\ntarget t[C]\nsum(t*log(softmax(x)))",
            vec![("x", RowGen::Logits), ("t", RowGen::Distribution)],
        ),
        r("logsumexp", "pred x[C]\nlog(sum(exp(x)))", vec![("x", RowGen::Logits)]),
        s("log-exp-ratio", "pred a\npred b\nlog(exp(a)/b)", vec![("a", Logit), ("b", Positive)]),
        s("logaddexp", "pred a\npred b\nlog(exp(a) + exp(b))", vec![("a", Logit), ("b", Logit)]),
        s("logdiffexp", "pred a\npred b\nlog(exp(a) - exp(b))", vec![("a", Logit), ("b", LogProb)]),
        s("log-cosh", "pred x\nlog(cosh(x))", vec![("x", Residual)]),
        s("softplus", "pred x\nlog1p(exp(x))", vec![("x", Logit)]),
        s("log1mexp", "pred x\nlog1p(-exp(x))", vec![("x", LogProb)]),
        s("log-exp", "pred x\nlog(exp(x))", vec![("x", Logit)]),
        s("kl-term", "pred q\ntarget p\np*log(p/q)", vec![("q", Prob), ("p", Prob)]),
        s("log1p", "pred x\nlog(1 + x)", vec![("x", NonNeg)]),
        s("xlogy", "pred p\ntarget y\ny*log(p)", vec![("p", Prob), ("y", Soft)]),
        s("expm1", "pred x\nexp(x) - 1", vec![("x", Residual)]),
        s("one-minus-cos", "pred x\n1 - cos(x)", vec![("x", Similarity)]),
        s("softplus-minus-self", "pred x\nsoftplus(x) - x", vec![("x", Logit)]),
        r(
            "softmax",
            "pred x[C]\ntarget t[C]\nsum(t*(exp(x)/sum(exp(x))))",
            vec![("x", RowGen::Logits), ("t", RowGen::Distribution)],
        ),
        s("hypot", "pred a\npred b\nsqrt(a^2 + b^2)", vec![("a", Residual), ("b", Residual)]),
        s("sqrt-square", "pred x\nsqrt(x^2)", vec![("x", Residual)]),
        s("square-times-exp", "pred a\npred b\n(a^2)*exp(b)", vec![("a", Residual), ("b", Logit)]),
        r(
            "cosine",
            "pred a[C]\npred b[C]\nsum(a*b)/(norm(a)*norm(b))",
            vec![("a", RowGen::Logits), ("b", RowGen::Logits)],
        ),
        r(
            "one-minus-cosine",
            "pred a[C]\npred b[C]\n1 - sum(a*b)/(norm(a)*norm(b))",
            vec![("a", RowGen::Vector), ("b", RowGen::Vector)],
        ),
        s("select-sink", "pred x\ntarget y\nexp(x)*where(y > 0, 0, x)", vec![("x", Logit), ("y", Similarity)]),
        s("log1p-difference", "pred p\ntarget t\n(log(1 + p) - log(1 + t))^2", vec![("p", NonNeg), ("t", NonNeg)]),
        s(
            "split-difference",
            "pred mu\npred s\ntarget y\n(y - mu)*exp(-s)",
            vec![("mu", Residual), ("s", Logit), ("y", Residual)],
        ),
        s(
            "sigmoid-xlogx",
            "pred x\ntarget y\n-(1 - y)*sigmoid(x)^2*log(1 - sigmoid(x))",
            vec![("x", Logit), ("y", Soft)],
        ),
        s("halve-square", "pred s\npred t\n0.5*(s + t^2)", vec![("s", Residual), ("t", Residual)]),
        s(
            "reuse-product",
            "pred mu\npred s\ntarget y\n0.5*(s + (y - mu)^2*exp(-s))",
            vec![("mu", Residual), ("s", Logit), ("y", Residual)],
        ),
        s(
            "halve-product",
            "pred mu\npred s\ntarget y\n0.5*(s + (mu - y)^2*exp(-s))",
            vec![("mu", Residual), ("s", Logit), ("y", Residual)],
        ),
    ]
}

#[test]
fn every_rule_is_sound_and_never_less_accurate() {
    let n = if long() { 400 } else { 24 };
    let cases = rule_cases();
    let mut failures = Vec::new();
    for (i, (rule, f)) in cases.iter().enumerate() {
        let rep = check_rule(rule, f, n, 0x5EED + i as u64);
        if !rep.fired {
            failures.push(format!("{rule}: did not fire on `{}`", f.source.replace('\n', "; ")));
        }
        if rep.compared < n / 2 {
            failures.push(format!("{rule}: only {} points compared", rep.compared));
        }
        for m in rep.mismatches.iter().take(3) {
            failures.push(format!("{rule}: unsound: {m}"));
        }
        for (dtype, (mean, max, nmean, nmax)) in ["f32", "f64"].iter().zip(&rep.bits) {
            if *mean > nmean + 0.25 || *max > nmax + 1.0 {
                failures.push(format!(
                    "{rule} {dtype}: less accurate than the left side: mean {mean:.2} max {max:.1} vs {nmean:.2} {nmax:.1}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The lowering tests' formulas (`nll_softmax` is not a surface function: it is reached
/// through its rule).
const LOWERING_CASES: &[&str] = &[
    "pred x\nsoftplus(x) + log_sigmoid(x) + sigmoid(x)",
    "pred a\npred b\nlogaddexp(a, b) + hypot(a, b)",
    "pred x\nlog1mexp(-abs(x)) + log_cosh(x)",
    "pred a\npred b\nxlogy(a, abs(b)) + xlog1py(a, b)",
    "pred x[C]\ntarget k: index\n-log_softmax(x)[k]",
];

/// The fused op each lowering rule spells out.
fn lowered_op(rule: &str) -> Option<lossc::ir::Op> {
    use lossc::ir::Op::*;
    Some(match rule {
        "lower-softplus" => Softplus,
        "lower-log-sigmoid" => LogSigmoid,
        "lower-sigmoid" => Sigmoid,
        "lower-logaddexp" => LogAddExp,
        "lower-log1mexp" => Log1mexp,
        "lower-xlogy" => Xlogy,
        "lower-log-cosh" => LogCosh,
        "lower-hypot" => Hypot,
        "lower-nll-softmax" => NllSoftmax,
        _ => return None,
    })
}

/// Tidy: every rule of `rule_table()` has its tests. A stability or canonicalization rule
/// needs a case in `rule_cases()` (soundness and accuracy, in
/// `every_rule_is_sound_and_never_less_accurate`); a lowering needs its fused op in a
/// `LOWERING_CASES` formula (bit for bit against the fused op, in
/// `lowerings_match_the_fused_ops_bit_for_bit`).
#[test]
fn every_rule_has_its_tests() {
    let cases = rule_cases();
    let opts = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
    let lowering_ops: Vec<lossc::ir::Op> = LOWERING_CASES
        .iter()
        .flat_map(|src| compile(src, &opts).expect("compiles").graph.nodes().iter().map(|n| n.op).collect::<Vec<_>>())
        .collect();
    let mut missing = Vec::new();
    for info in rule_table() {
        let covered = if info.phase == Phase::Lower {
            lowered_op(info.name).is_some_and(|op| lowering_ops.contains(&op))
        } else {
            cases.iter().any(|(name, _)| *name == info.name)
        };
        if !covered {
            missing.push(format!("{} ({})", info.name, info.id));
        }
    }
    assert!(missing.is_empty(), "rules without their soundness and accuracy tests: {}", missing.join(", "));
}

/// Every lowering (L1–L10) computes its fused op bit for bit as `math.rs` does.
#[test]
fn lowerings_match_the_fused_ops_bit_for_bit() {
    let mut rng = Rng(7);
    for src in LOWERING_CASES {
        for dtype in [Dtype::F32, Dtype::F64] {
            let opts = CompileOptions { dtype, params: Vec::new(), hessian: false, stabilize: true };
            let fused = compile(src, &opts).expect("compiles");
            let mut lowered = fused.clone();
            lower_fused(&mut lowered).expect("lowers");
            let fused_ops: Vec<_> = lowered
                .graph
                .nodes()
                .iter()
                .map(|n| n.op)
                .filter(|op| {
                    *op == lossc::ir::Op::Xlog1py
                        || rule_table().iter().any(|r| r.phase == Phase::Lower && lowered_op(r.name) == Some(*op))
                })
                .collect();
            assert!(fused_ops.is_empty(), "{src}: left unlowered: {fused_ops:?}");
            let rows = 300;
            let classes = 4;
            let mut data = Vec::new();
            for decl in &fused.inputs {
                let arr = match decl.layout {
                    Layout::Index => Array::vector((0..rows).map(|_| rng.below(classes) as f64).collect()),
                    Layout::Classes => Array {
                        shape: vec![rows, classes],
                        data: (0..rows * classes)
                            .map(|_| support::harness::draw(Gen::Logit, &mut rng, dtype))
                            .collect(),
                    },
                    Layout::Scalar => {
                        Array::vector((0..rows).map(|_| support::harness::draw(Gen::Logit, &mut rng, dtype)).collect())
                    }
                };
                data.push((decl.name.clone(), arr));
            }
            let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
            let o = EvalOptions { reduce: Some(ReduceMode::None), grad: true, hess: false, upstream: None };
            let a = evaluate(&fused, &refs, &o).expect("evaluates");
            let b = evaluate(&lowered, &refs, &o).expect("evaluates");
            let same = |x: &[f64], y: &[f64]| {
                x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits() || p.is_nan() && q.is_nan())
            };
            let (lossc::eval::LossValue::PerItem(la), lossc::eval::LossValue::PerItem(lb)) = (&a.loss, &b.loss) else {
                panic!("per item")
            };
            assert!(same(la, lb), "{src} {dtype:?}: lowered values differ");
            for ((_, ga), (_, gb)) in a.grad.iter().zip(&b.grad) {
                assert!(same(ga, gb), "{src} {dtype:?}: lowered gradients differ");
            }
        }
    }
}

/// The §8.1 benchmark through the interpreter and the JIT: no NaN/inf where the truth is
/// finite (focal loss's gradient at ±largest float, Gaussian NLL with |y − mu| near
/// overflow or 0.5·t² near the largest float: see rules S36–S40), and at most 3 bits of
/// error (issue 4's target) at every well-conditioned point, κ ≤ 2, of every value and
/// gradient. The accuracy figures are `cargo run --release --example accuracy`
/// (docs/accuracy.md; `--ill 2` for this test's points).
#[test]
fn benchmark_has_no_spurious_nonfinite_results_and_3_bits_where_well_conditioned() {
    let n = if long() { 2000 } else { 40 };
    let mut failures = Vec::new();
    for f in benchmark() {
        let names = output_names(&f.source);
        for dtype in [Dtype::F32, Dtype::F64] {
            let m = measure(&f, dtype, n, 0xBE7C, 2.0);
            for engine in [Engine::Interp, Engine::Jit] {
                for (name, s) in names.iter().zip(m.of(engine)) {
                    let at = format!("{} {} {} {name}", f.name, dtype.name(), engine.name());
                    if s.nonfinite > 0 {
                        failures.push(format!("{at}: {} non-finite results", s.nonfinite));
                    }
                    if s.max_bits > 3.0 {
                        failures.push(format!("{at}: {:.1} bits at a point with κ ≤ 2", s.max_bits));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Points where the kernels used to fail, through both engines: every output whose true
/// value is finite is finite and within `max_bits` of the correctly rounded value.
fn check_points(source: &str, classes: usize, dtype: Dtype, samples: &[Vec<Vec<f64>>], max_bits: f64) -> Vec<String> {
    let errs = errors_at(source, classes, dtype, samples);
    assert!(!errs.is_empty(), "{source}: no reference");
    errs.iter()
        .filter(|e| e.want.is_finite() && (!e.got.is_finite() || e.bits > max_bits))
        .map(|e| {
            format!(
                "{} {} {} sample {} {}[{}]: got {:e} want {:e} ({:.1} bits)",
                source.replace('\n', "; "),
                dtype.name(),
                e.engine.name(),
                e.sample,
                e.output,
                e.element,
                e.got,
                e.want,
                e.bits
            )
        })
        .collect()
}

/// See: issue 4. Focal loss's gradient at ±largest float was NaN (2·y·log_sigmoid(x)
/// overflowed before sigmoid(x) = 0 multiplied it; S37); Gaussian NLL with log-variance
/// was NaN/inf where y − mu overflows (S36) or where the adjoint multiplied (y − mu)²
/// before exp(−s) (S38); the entropy's gradient lost every digit at a confident class
/// (the log_softmax adjoint of a softmax-proportional seed, now exactly 0); MSLE lost
/// 10 bits where p ≈ t (S28 log1p-difference); Gaussian NLL's value overflowed where
/// 0.5·(y − mu)²·e^−s is within a factor 2 of the largest float (S39), and its gradient with
/// respect to s where t·t overflows and 0.5·t·t does not (S40); the soft-target
/// cross-entropy's gradient lost 7 bits at a dominant target (Σt − t_k; `diff::sum_of_others`).
#[test]
fn r4_fixed_points_stay_finite_and_accurate() {
    let mut failures = Vec::new();
    let focal =
        "pred x\ntarget y\nparam g = 2\n-(y*(1-sigmoid(x))^g*log(sigmoid(x)) + (1-y)*sigmoid(x)^g*log(1-sigmoid(x)))";
    let gauss = "pred mu\npred s\ntarget y\n0.5*(s + (y-mu)^2*exp(-s))";
    for (dtype, max) in [(Dtype::F32, f64::from(f32::MAX)), (Dtype::F64, f64::MAX)] {
        let pts: Vec<Vec<Vec<f64>>> =
            [(max, 0.3), (max, 0.7), (-max, 0.3), (-max, 0.7)].iter().map(|(x, y)| vec![vec![*x], vec![*y]]).collect();
        failures.extend(check_points(focal, 1, dtype, &pts, 3.0));
    }
    let g32 = [
        [-2.3654552883149995e38, 3.4028234663852886e38, 1.5574687905921526e38],
        [-1.6551439762115479, 88.07323455810547, 8.724422714384356e37],
    ];
    let g64 = [
        [1.0897612257203868e-23, -708.0, 3.0993563929187435],
        [1.2923721504507537e308, 30.898273791126382, -1.4417313827138245e308],
        [1.398806534816579e-6, 955.8504684202339, 2.4417934987660335e307],
        [-1.3404246175014855e308, 1.7976931348623157e308, 8.825656523302716e307],
    ];
    let pts =
        |v: &[[f64; 3]]| -> Vec<Vec<Vec<f64>>> { v.iter().map(|p| p.iter().map(|x| vec![*x]).collect()).collect() };
    failures.extend(check_points(gauss, 1, Dtype::F32, &pts(&g32), 3.0));
    failures.extend(check_points(gauss, 1, Dtype::F64, &pts(&g64[1..]), 3.0));
    // 0.5*square(t) is finite where square(t) overflows: the value (S39) and the gradient
    // with respect to s, 0.5 − 0.5·t², whose adjoint multiplied t·(t·seed) before the ½
    // (S40 halve-product; before it, the one non-finite gradient of the benchmark).
    failures.extend(check_points(gauss, 1, Dtype::F64, &pts(&g64[..1]), 3.0));
    let g32_square = [[2.5767154693603516, -87.0, -7.628564446804376e-8]];
    failures.extend(check_points(gauss, 1, Dtype::F32, &pts(&g32_square), 3.0));
    let entropy = "pred x[C]\n-sum(softmax(x)*log(softmax(x)))";
    let row = vec![vec![
        -0.120424662997352,
        -2.9798758299864048,
        -2.4288673216089407,
        2.7585280540897408,
        2.2812895848628028,
        1.7630682234870925,
        2.4939892658630693,
        45.24619014975681,
        -2.4415130982767597,
        2.434214159851453,
    ]];
    failures.extend(check_points(entropy, 10, Dtype::F64, &[row], 3.0));
    // Soft targets with one dominant class: Σt − t_k cancelled (7 bits at κ = 1).
    let soft = "pred x[C]\ntarget t[C]\n-sum(t*log(exp(x)/sum(exp(x))))";
    let x =
        vec![-0.765316, 30.320465, -2.048, -1.521983, -1.275026, -2.616237, 0.626413, -1.155379, 0.132558, 0.161645];
    let t = vec![0.0, 0.9905953, 0.0, 0.004691091, 0.0, 0.0027426155, 0.0016711990, 0.00013176014, 0.00016797715, 0.0];
    let round = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| f64::from(*x as f32)).collect() };
    failures.extend(check_points(soft, 10, Dtype::F32, &[vec![round(&x), round(&t)]], 3.0));
    failures.extend(check_points(soft, 10, Dtype::F64, &[vec![x, t]], 3.0));
    // 1 − cos at a well-conditioned angle (θ = 0.28, κ ≈ 7) lost ~5 bits to the rounding
    // of cos (S25 one-minus-cosine).
    let cosine = "pred a[C]\npred b[C]\n1 - sum(a*b)/(norm(a)*norm(b))";
    for dtype in [Dtype::F32, Dtype::F64] {
        let errs = errors_at(cosine, 2, dtype, &[vec![vec![3.0, 4.0], vec![4.0, 3.0]]]);
        for e in errs.iter().filter(|e| e.output == "value") {
            if e.bits > 3.0 {
                failures.push(format!(
                    "1 - cosine {} {}: got {:e} want {:e}",
                    dtype.name(),
                    e.engine.name(),
                    e.got,
                    e.want
                ));
            }
        }
    }
    let msle = "pred p\ntarget t\n(log(1+p) - log(1+t))^2";
    failures.extend(check_points(msle, 1, Dtype::F32, &[vec![vec![5733706.5], vec![5821231.0]]], 3.0));
    failures.extend(check_points(msle, 1, Dtype::F64, &[vec![vec![6.987983743401982], vec![7.043567374833005]]], 3.0));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lowering_logs_nothing_and_the_log_names_each_rewrite_once() {
    // softplus, log_sigmoid and xlogy all fire; lowering them adds nothing to the log.
    let src = "pred p\ntarget y\n-(y*log(sigmoid(p)) + (1 - y)*log(1 - sigmoid(p))) + y*log(y)";
    let opts = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
    let mut prog = compile(src, &opts).expect("compiles");
    let before = prog.rewrites.clone();
    assert!(before.len() >= 3, "{before:?}");
    lower_fused(&mut prog).expect("lowers");
    assert_eq!(prog.rewrites, before);
    for (i, r) in before.iter().enumerate() {
        assert!(!r.before.is_empty() && !r.after.is_empty() && r.before != r.after, "{r:?}");
        assert!(!before[..i].contains(r), "logged twice: {r:?}");
    }
}

#[test]
fn stabilization_is_deterministic_and_bounded() {
    // The same source twice gives the same graph, rewrites and printed forms.
    let src = "pred x[C]\ntarget k: index\ntarget y\n-log(exp(x[k])/sum(exp(x))) + log(1 + exp(-y*sum(x)))";
    let opts = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: true, stabilize: true };
    let a = compile(src, &opts).expect("compiles");
    let b = compile(src, &opts).expect("compiles");
    assert_eq!(a.rewrites, b.rewrites);
    assert_eq!(a.graph.nodes(), b.graph.nodes());
    // A long chain of nested rewrites stays fast and terminates.
    let mut e = "p".to_string();
    for _ in 0..60 {
        e = format!("log(1 + exp({e}))");
    }
    let t = std::time::Instant::now();
    let prog = compile(&e, &opts).expect("compiles");
    assert!(t.elapsed().as_secs_f64() < 5.0, "took {:?}", t.elapsed());
    let n_softplus = prog.graph.nodes().iter().filter(|n| n.op == lossc::ir::Op::Softplus).count();
    assert!(n_softplus >= 60, "{n_softplus} softplus nodes");
    assert!(prog.graph.nodes().iter().all(|n| n.op != lossc::ir::Op::Log1p), "a log1p(exp(..)) is left");
}

#[test]
fn user_clamps_and_barriers_stay() {
    let opts = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
    // A clamp and an epsilon are semantics; the value side of straight_through is a barrier.
    let prog = compile("pred p\ntarget y\nlog(maximum(p, 1e-7) + 1e-12) + straight_through(log(1 + exp(p)), p)", &opts)
        .expect("compiles");
    assert!(prog.rewrites.iter().all(|r| r.rule != "softplus"), "{:?}", prog.rewrites);
    assert!(prog.rewrites.iter().all(|r| r.rule != "log1p"), "{:?}", prog.rewrites);
}

/// Regression: S36 split Huber's `0.5*(p − y)*(p − y)` into a regime with a second form, which
/// cannot help (the product is k·(p − y)², infinite wherever p − y overflows) and doubled the
/// kernel's cost through nested selects in the gradient. It still splits `(p − y)*seed`, where
/// a small seed keeps the product finite.
#[test]
fn split_difference_leaves_scaled_squares_alone() {
    let opts = CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true };
    let prog = compile("e = p - y\nwhere(abs(e) < 1, 0.5*e^2, abs(e) - 0.5)", &opts).expect("compiles");
    let value_splits =
        prog.rewrites.iter().filter(|r| r.id == "S36" && r.stage == lossc::stabilize::Stage::Loss).count();
    assert_eq!(value_splits, 0, "{:?}", prog.rewrites);
    let grad_splits = prog.rewrites.iter().filter(|r| r.id == "S36").count();
    assert_eq!(grad_splits, 1, "{:?}", prog.rewrites);
    // The protected case: (p - y)*seed at inputs near the largest float, mean of 4 (seed 1/4).
    let f = f64::from(f32::MAX);
    let p = Array::vector(vec![f, 1.0, 0.5, -1.0]);
    let y = Array::vector(vec![-f, 0.0, 0.25, 0.0]);
    let out = evaluate(&prog, &[("p", &p), ("y", &y)], &EvalOptions { grad: true, ..EvalOptions::default() })
        .expect("evaluates");
    assert!(out.grad[0].1.iter().all(|g| g.is_finite()), "{:?}", out.grad);
}

/// A select inside a branch of another whose condition decides it takes its branch (a bound
/// on the same |d|): exact for every input, NaN included, and Huber's gradient keeps no
/// `|e| < inf` regime inside its `|e| < 1` branch.
#[test]
fn selects_decided_by_an_enclosing_bound_collapse() {
    let opts = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: false };
    let src = "d = p - y\nwhere(abs(d) < 1, 0.5*where(abs(d) < 1e30, p, y), 0) + where(abs(d) < 2, 0, where(abs(d) < 1, p, 3*y))";
    let prog = compile(src, &opts).expect("compiles");
    let names = |n: u16| prog.inputs[n as usize].name.clone();
    let printed = lossc::ir::print::Printer::new(&prog.graph, &names).print(&[("loss".to_string(), prog.loss)]);
    assert!(!printed.contains("1e+30") && !printed.contains("1e30"), "{printed}");
    let p = Array::vector(vec![0.5, 1.5, 3.0, f64::NAN, f64::INFINITY, 0.0]);
    let y = Array::vector(vec![0.0, 0.0, 0.0, 0.0, 0.0, f64::NAN]);
    let out = evaluate(
        &prog,
        &[("p", &p), ("y", &y)],
        &EvalOptions { reduce: Some(ReduceMode::None), ..EvalOptions::default() },
    )
    .expect("evaluates");
    let lossc::eval::LossValue::PerItem(v) = out.loss else { panic!("per item") };
    // By hand: |d| = 0.5 → 0.5*p; 1.5 → 0; 3 → 3*y; NaN (twice) and inf → 3*y.
    let want = [0.25, 0.0, 0.0, 0.0, 0.0, f64::NAN];
    for (g, w) in v.iter().zip(want) {
        assert!(g == &w || (g.is_nan() && w.is_nan()), "{v:?}");
    }
    let stable = CompileOptions { stabilize: true, ..opts };
    let huber = compile("e = p - y\nwhere(abs(e) < 1, 0.5*e^2, abs(e) - 0.5)", &stable).expect("compiles");
    let hnames = |n: u16| huber.inputs[n as usize].name.clone();
    let grad = lossc::ir::print::Printer::new(&huber.graph, &hnames).print(&[("g".to_string(), huber.derivs[0].grad)]);
    assert!(!grad.contains("< inf"), "{grad}");
}
