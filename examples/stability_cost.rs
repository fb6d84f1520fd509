//! What stabilization costs at run time: every formula of stability.md §8.1 (items 1–20)
//! compiled for the JIT in f32 with and without stabilization, value and gradient over
//! about a million elements (C = 10 row formulas: 100,000 rows), on one thread.
//!
//!     cargo run --release --example stability_cost                 # 2^20 elements, 15 runs each
//!     cargo run --release --example stability_cost -- --elements 65536 --runs 5 --only focal
//!
//! Columns: nanoseconds per element (fastest of the runs, the two kernels alternating) of
//! the formula as written and of its stabilized form, their ratio, and the bound of
//! stability.md §8.4 T5 (1.5×, or 2× where a regime rule computes two forms and selects).
//! Inputs are typical values (no subnormals, which would time the FPU's slow path): logits
//! uniform in ±20, vectors standard normal. `--hard-rows` draws the rows from the accuracy
//! harness's hard classes instead (confident rows with margins up to 100, offsets up to
//! 10^4, −inf entries, vectors scaled by 10^±30), where both kernels meet subnormals and
//! infinities and row-level branches go either way.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use lossc::jit::{Arg, CallOptions, Data, JitLoss, Outputs};
use lossc::program::{Layout, Program};
use lossc::{compile, CompileOptions, Dtype};
use support::harness::{benchmark, draw, draw_row, Formula, Gen, Rng, RowGen};

/// Rules whose right side computes two forms and selects one (the 2× budget).
const REGIME_RULES: &[&str] =
    &["sigmoid-power", "kl-term", "log1p-difference", "logdiffexp", "log-cosh", "log1mexp", "split-difference"];

/// A typical value of a scalar input (the timing's inputs, not the accuracy's hard cases).
fn typical(g: Gen, rng: &mut Rng) -> f32 {
    let x = match g {
        Gen::Logit => rng.uniform(-20.0, 20.0),
        Gen::LogProb => -rng.uniform(0.0, 20.0),
        Gen::Prob => rng.uniform(0.0, 1.0),
        Gen::Positive => rng.uniform(0.1, 5.0),
        Gen::NonNeg => rng.uniform(0.0, 10.0),
        Gen::Residual => rng.uniform(-5.0, 5.0),
        Gen::Similarity => rng.uniform(-1.0, 1.0),
        other => draw(other, rng, Dtype::F32),
    };
    x as f32
}

/// A typical row (see the module docs); other row kinds as the harness draws them.
fn typical_row(g: RowGen, rng: &mut Rng, c: usize, k: usize) -> Vec<f64> {
    match g {
        RowGen::Logits => (0..c).map(|_| rng.uniform(-20.0, 20.0)).collect(),
        RowGen::Vector => (0..c).map(|_| rng.normal()).collect(),
        other => draw_row(other, rng, c, Dtype::F32, k),
    }
}

/// Data for every input of `prog`.
fn inputs(f: &Formula, prog: &Program, rows: usize, hard_rows: bool, rng: &mut Rng) -> Vec<(String, Vec<f32>)> {
    let c = f.classes.max(1);
    let ks: Vec<usize> = (0..rows).map(|_| rng.below(c)).collect();
    prog.inputs
        .iter()
        .map(|decl| {
            let data = match decl.layout {
                Layout::Index => ks.iter().map(|k| *k as f32).collect(),
                Layout::Classes => {
                    let g = f.rows.iter().find(|(n, _)| *n == decl.name).map(|(_, g)| *g);
                    let g = g.unwrap_or(RowGen::Logits);
                    let row = |rng: &mut Rng, k: usize| {
                        if hard_rows {
                            draw_row(g, rng, c, Dtype::F32, k)
                        } else {
                            typical_row(g, rng, c, k)
                        }
                    };
                    ks.iter().flat_map(|k| row(rng, *k)).map(|x| x as f32).collect()
                }
                Layout::Scalar => {
                    let g = f.scalars.iter().find(|(n, _)| *n == decl.name).map_or(Gen::Logit, |(_, g)| *g);
                    (0..rows).map(|_| typical(g, rng)).collect()
                }
            };
            (decl.name.clone(), data)
        })
        .collect()
}

/// One value-and-gradient call, in seconds.
fn time_call(jit: &JitLoss, data: &[(String, Vec<f32>)], grads: &mut [Vec<f32>], rows: usize) -> f64 {
    let args: Vec<Arg<'_, f32>> = data.iter().map(|(n, v)| Arg { name: n, data: Data::Values(v) }).collect();
    let opts = CallOptions { rows: Some(rows), ..CallOptions::default() };
    let mut grad_refs: Vec<&mut [f32]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
    let mut out = Outputs { grad: &mut grad_refs, hess: &mut [], loss_items: None };
    let t = Instant::now();
    let loss = jit.call(&args, &opts, &mut out);
    let dt = t.elapsed().as_secs_f64();
    assert!(loss.is_ok(), "call failed");
    std::hint::black_box(loss.ok());
    dt
}

/// The fastest run: on a shared machine the slower runs measure the other processes.
fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut elements = 1usize << 20;
    let mut runs = 15;
    let mut only: Option<String> = None;
    let mut hard_rows = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--elements" => elements = it.next().and_then(|s| s.parse().ok()).unwrap_or(elements),
            "--runs" => runs = it.next().and_then(|s| s.parse().ok()).unwrap_or(runs),
            "--only" => only = it.next().cloned(),
            "--hard-rows" => hard_rows = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    println!("{:<22} {:>9} {:>9} {:>6} {:>5}  regime rules", "formula", "naive ns", "stable ns", "ratio", "bound");
    for f in benchmark() {
        if only.as_ref().is_some_and(|o| !f.name.contains(o.as_str())) {
            continue;
        }
        let opts = |stabilize| CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize };
        let naive = compile(&f.source, &opts(false)).expect("compiles");
        let stable = compile(&f.source, &opts(true)).expect("compiles");
        let mut regimes: Vec<&str> =
            stable.rewrites.iter().map(|r| r.rule).filter(|r| REGIME_RULES.contains(r)).collect();
        regimes.dedup();
        let bound = if regimes.is_empty() { 1.5 } else { 2.0 };
        let rows = elements / f.classes.max(1);
        let mut rng = Rng(0xC057);
        let data = inputs(&f, &stable, rows, hard_rows, &mut rng);
        let grad_len = |p: &Program| -> Vec<Vec<f32>> {
            p.derivs
                .iter()
                .map(|d| data.iter().find(|(n, _)| *n == p.inputs[d.input as usize].name).map_or(0, |(_, v)| v.len()))
                .map(|n| vec![0.0f32; n])
                .collect()
        };
        let mut g_naive = grad_len(&naive);
        let mut g_stable = grad_len(&stable);
        let j_naive = JitLoss::new(naive).expect("jit");
        let j_stable = JitLoss::new(stable).expect("jit");
        let (mut tn, mut ts) = (Vec::new(), Vec::new());
        pool.install(|| {
            // One warm-up call each, then alternate.
            time_call(&j_naive, &data, &mut g_naive, rows);
            time_call(&j_stable, &data, &mut g_stable, rows);
            // Time the optimized kernels, not the quick ones a new loss starts with.
            j_naive.optimize_now().expect("optimizes");
            j_stable.optimize_now().expect("optimizes");
            for _ in 0..runs {
                tn.push(time_call(&j_naive, &data, &mut g_naive, rows));
                ts.push(time_call(&j_stable, &data, &mut g_stable, rows));
            }
        });
        let (n_ns, s_ns) = (fastest(&tn) * 1e9 / elements as f64, fastest(&ts) * 1e9 / elements as f64);
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>6.2} {:>5.1}  {}",
            f.name,
            n_ns,
            s_ns,
            s_ns / n_ns,
            bound,
            regimes.join(", ")
        );
    }
}
