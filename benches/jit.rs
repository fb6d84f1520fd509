//! `cargo bench`: compile time, small-batch latency, large-batch throughput, and the JIT
//! against the reference interpreter, on the losses of `../shared/bench/losses` (copied
//! inline so the benchmark needs nothing outside the repo).

use divan::{black_box, Bencher};

use lossc::eval::{evaluate, Array, EvalOptions};
use lossc::jit::{Arg, CallOptions, Data, JitLoss, Outputs};
use lossc::{compile, CompileOptions, Dtype};

fn main() {
    divan::main();
}

const LOSSES: &[(&str, &str)] = &[
    ("mse", "(p - y)^2"),
    ("l1", "abs(p - y)"),
    ("huber", "e = p - y\nwhere(abs(e) < 1, 0.5*e^2, abs(e) - 0.5)"),
    ("hinge", "maximum(1 - y*p, 0)"),
    ("bce_logits", "-(y*log(sigmoid(p)) + (1 - y)*log(1 - sigmoid(p)))"),
    ("cross_entropy", "pred p[C]\ntarget y: index\nlogsumexp(p) - p[y]"),
];

fn source(name: &str) -> &'static str {
    LOSSES.iter().find(|(n, _)| *n == name).map_or("(p - y)^2", |(_, s)| s)
}

fn options() -> CompileOptions {
    CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true }
}

/// Deterministic data: n values in [-2, 2), and class indices below `classes`.
fn data(n: usize, classes: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = 0x1234_5678u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let p = (0..n).map(|_| (4.0 * next() - 2.0) as f32).collect();
    let y = if classes > 1 {
        (0..n / classes).map(|_| (next() * classes as f64).floor() as f32).collect()
    } else {
        (0..n).map(|_| (4.0 * next() - 2.0) as f32).collect()
    };
    (p, y)
}

/// Source text to a callable value-and-gradient kernel (the quick tier).
#[divan::bench(args = ["mse", "huber", "bce_logits", "cross_entropy"])]
fn compile_time(name: &str) {
    let prog = compile(source(name), &options()).expect("valid loss");
    black_box(JitLoss::new_quick(prog).expect("compiles"));
}

/// Source text to the optimized kernel the background optimizer installs.
#[divan::bench(args = ["mse", "huber", "bce_logits", "cross_entropy"])]
fn compile_time_optimized(name: &str) {
    let prog = compile(source(name), &options()).expect("valid loss");
    let jit = JitLoss::new_quick(prog).expect("compiles");
    jit.optimize_now().expect("optimizes");
    black_box(jit);
}

fn call(bencher: Bencher, name: &str, n: usize) {
    let classes = if name == "cross_entropy" { 64 } else { 1 };
    let jit = JitLoss::new(compile(source(name), &options()).expect("valid loss")).expect("compiles");
    let (p, y) = data(n, classes);
    // Time the optimized kernels (the ones a trainer runs after its first calls).
    let first = [Arg { name: "p", data: Data::Values(&p) }, Arg { name: "y", data: Data::Values(&y) }];
    let rows0 = if classes > 1 { n / classes } else { n };
    let mut g0 = vec![0.0f32; p.len()];
    let _ = jit.call(
        &first,
        &CallOptions { rows: Some(rows0), ..CallOptions::default() },
        &mut Outputs { grad: &mut [g0.as_mut_slice()], hess: &mut [], loss_items: None },
    );
    jit.optimize_now().expect("optimizes");
    let mut grad = vec![0.0f32; p.len()];
    let args = [Arg { name: "p", data: Data::Values(&p) }, Arg { name: "y", data: Data::Values(&y) }];
    let rows = if classes > 1 { n / classes } else { n };
    let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
    bencher.counter(divan::counter::ItemsCount::new(n)).bench_local(|| {
        let mut grads = [grad.as_mut_slice()];
        let mut out = Outputs { grad: &mut grads, hess: &mut [], loss_items: None };
        black_box(jit.call(&args, &opts, &mut out).is_ok());
    });
}

/// Value and gradient on 1,024 elements: per-call latency.
#[divan::bench(args = ["mse", "l1", "huber", "hinge", "bce_logits", "cross_entropy"])]
fn small_batch(bencher: Bencher, name: &str) {
    call(bencher, name, 1 << 10);
}

/// Value and gradient on 4M elements: throughput (threads: the machine's cores).
#[divan::bench(args = ["mse", "l1", "huber", "hinge", "bce_logits", "cross_entropy"], sample_count = 10)]
fn large_batch(bencher: Bencher, name: &str) {
    call(bencher, name, 1 << 22);
}

/// The reference interpreter on the same 64K elements, for scale.
#[divan::bench(args = ["mse", "huber", "cross_entropy"], sample_count = 10)]
fn interpreter(bencher: Bencher, name: &str) {
    let classes = if name == "cross_entropy" { 64 } else { 1 };
    let prog = compile(source(name), &options()).expect("valid loss");
    let n = 1 << 16;
    let (p, y) = data(n, classes);
    let p = Array {
        shape: if classes > 1 { vec![n / classes, classes] } else { vec![n] },
        data: p.iter().map(|x| f64::from(*x)).collect(),
    };
    let y = Array::vector(y.iter().map(|x| f64::from(*x)).collect());
    let opts = EvalOptions { grad: true, ..EvalOptions::default() };
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| black_box(evaluate(&prog, &[("p", &p), ("y", &y)], &opts).is_ok()));
}

/// The JIT on the same 64K elements as `interpreter`.
#[divan::bench(args = ["mse", "huber", "cross_entropy"], sample_count = 10)]
fn jit_same_size(bencher: Bencher, name: &str) {
    call(bencher, name, 1 << 16);
}
