//! `cargo bench --bench api`: the per-call overhead of the public API on small batches.
//!
//! Each case times a value-and-gradient call three ways on the same data:
//! - `direct`: the JIT kernel alone, bound once (`JitLoss::direct`, a benchmark hook):
//!   no name lookup, no length checks, no index sanitising, no reduction bookkeeping;
//! - `api`: [`lossc::Loss::call_with`] on borrowed slices, everything checked every call;
//! - `jit`: the lower-level [`lossc::jit::JitLoss::call`] the API wraps.
//!
//! The target: `api` within 10% of `direct`.

use divan::{black_box, Bencher};

use lossc::{Arg, CallOptions, Loss, Outputs};

fn main() {
    divan::main();
}

/// An element loss and a `[C]` loss (16 classes, i64 class indices).
const CASES: &[&str] = &["bce_logits", "cross_entropy"];
const SIZES: &[usize] = &[64, 1024];
const CLASSES: usize = 16;

fn source(case: &str) -> &'static str {
    match case {
        "cross_entropy" => "pred z[C]\ntarget k: index\nlogsumexp(z) - z[k]",
        _ => "softplus(p) - y*p",
    }
}

struct Data {
    loss: Loss,
    p: Vec<f32>,
    y: Vec<f32>,
    k: Vec<i64>,
    rows: usize,
}

/// One compiled loss per case for the whole run, so that every variant times the same
/// machine code (two compilations of one loss can differ by their code's alignment).
fn compiled(case: &str) -> Loss {
    static LOSSES: std::sync::OnceLock<Vec<(&str, Loss)>> = std::sync::OnceLock::new();
    let all = LOSSES.get_or_init(|| CASES.iter().map(|c| (*c, Loss::new(source(c)).expect("valid loss"))).collect());
    all.iter().find(|(c, _)| *c == case).map(|(_, l)| l.clone()).expect("a known case")
}

fn data(case: &str, n: usize) -> Data {
    let loss = compiled(case);
    // Time the optimized kernels, not the quick ones a new loss starts with.
    loss.jit().optimize_now().expect("optimizes");
    let p: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 101.0) * 4.0 - 2.0).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let classes = if case == "cross_entropy" { CLASSES } else { 1 };
    let rows = n / classes;
    let k: Vec<i64> = (0..rows as i64).map(|r| (r * 7) % CLASSES as i64).collect();
    Data { loss, p, y, k, rows }
}

fn args<'a>(case: &str, d: &'a Data) -> [Arg<'a, f32>; 2] {
    if case == "cross_entropy" {
        [Arg::values("z", &d.p), Arg::i64("k", &d.k)]
    } else {
        [Arg::values("p", &d.p), Arg::values("y", &d.y)]
    }
}

#[divan::bench(args = CASES, consts = SIZES, sample_count = 200, sample_size = 500)]
fn direct<const N: usize>(bencher: Bencher, case: &str) {
    let d = data(case, N);
    let mut grad = vec![0.0f32; N];
    let args = args(case, &d);
    let kernel = d.loss.jit().direct(&args, d.rows, &mut grad).expect("a direct kernel");
    bencher.bench_local(|| black_box(kernel.run()));
}

#[divan::bench(args = CASES, consts = SIZES, sample_count = 200, sample_size = 500)]
fn api<const N: usize>(bencher: Bencher, case: &str) {
    let d = data(case, N);
    let mut grad = vec![0.0f32; N];
    let args = args(case, &d);
    let opts = CallOptions { rows: Some(d.rows), ..CallOptions::default() };
    let mut grads = [grad.as_mut_slice()];
    bencher.bench_local(|| {
        let mut out = Outputs { grad: &mut grads, ..Outputs::default() };
        black_box(d.loss.call_with(black_box(&args), &opts, &mut out).ok())
    });
}

#[divan::bench(args = CASES, consts = SIZES, sample_count = 200, sample_size = 500)]
fn jit<const N: usize>(bencher: Bencher, case: &str) {
    let d = data(case, N);
    let mut grad = vec![0.0f32; N];
    let args = args(case, &d);
    let opts = CallOptions { rows: Some(d.rows), ..CallOptions::default() };
    let mut grads = [grad.as_mut_slice()];
    bencher.bench_local(|| {
        let mut out = Outputs { grad: &mut grads, ..Outputs::default() };
        black_box(d.loss.jit().call(black_box(&args), &opts, &mut out).ok())
    });
}
