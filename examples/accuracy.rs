//! The accuracy table: every formula of stability.md §8.1 (items 1–20), or the given loss
//! files, in f32 and f64, value and gradients, through the interpreter and the JIT, against
//! high-precision references.
//!
//!     cargo run --release --example accuracy                      # the benchmark, 2000 points each
//!     cargo run --release --example accuracy -- --points 200 --only softplus
//!     cargo run --release --example accuracy -- my_loss.loss     # any file: logits and labels drawn generically
//!     cargo run --release --example accuracy -- --ill 2          # score only points with κ ≤ 2
//!
//! Columns, for the interpreter and then the JIT: mean and max bits of error over
//! well-conditioned points, `exc` (the largest bits − log2 κ there: error the
//! conditioning does not explain), `nonf` (NaN/inf where the truth is finite, all
//! points); then `ill` (points with condition number > 2^10, or `--ill K`, left out of mean/max),
//! `noref` (no reference), and the formula as written (no stabilization) through the
//! interpreter.

#[path = "../tests/support/mod.rs"]
mod support;

use lossc::Dtype;
use support::harness::{benchmark, measure, output_names, Engine, Formula, Gen, RowGen};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut points = 2000;
    let mut only: Option<String> = None;
    let mut files = Vec::new();
    let mut worst = false;
    let mut ill = support::harness::ILL;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--points" => points = it.next().and_then(|s| s.parse().ok()).unwrap_or(points),
            "--only" => only = it.next().cloned(),
            "--worst" => worst = true,
            "--ill" => ill = it.next().and_then(|s| s.parse().ok()).unwrap_or(ill),
            f => files.push(f.to_string()),
        }
    }
    let formulas: Vec<Formula> = if files.is_empty() {
        benchmark()
    } else {
        files
            .iter()
            .map(|path| {
                let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let prog = lossc::compile(
                    &source,
                    &lossc::CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true },
                )
                .unwrap_or_else(|d| panic!("{path}: {d:?}"));
                let scalars = prog
                    .inputs
                    .iter()
                    .map(|i| {
                        let name: &'static str = Box::leak(i.name.clone().into_boxed_str());
                        let g = if i.role == lossc::program::Role::Pred { Gen::Logit } else { Gen::Soft };
                        (name, g)
                    })
                    .collect();
                let rows = prog
                    .inputs
                    .iter()
                    .map(|i| {
                        let name: &'static str = Box::leak(i.name.clone().into_boxed_str());
                        let g =
                            if i.role == lossc::program::Role::Pred { RowGen::Logits } else { RowGen::Distribution };
                        (name, g)
                    })
                    .collect();
                let name: &'static str = Box::leak(path.clone().into_boxed_str());
                Formula { name, source, scalars, rows, classes: 10 }
            })
            .collect()
    };
    println!(
        "{:<22} {:<4} {:<9} {:>5} {:>5} {:>5} {:>4} | {:>5} {:>5} {:>5} {:>4} | {:>5} {:>5} | {:>6} {:>5} {:>5}",
        "formula",
        "type",
        "output",
        "mean",
        "max",
        "exc",
        "nonf",
        "mean",
        "max",
        "exc",
        "nonf",
        "ill",
        "noref",
        "naive",
        "max",
        "nonf"
    );
    for f in &formulas {
        if only.as_ref().is_some_and(|o| !f.name.contains(o.as_str())) {
            continue;
        }
        let names = output_names(&f.source);
        for dtype in [Dtype::F32, Dtype::F64] {
            let m = measure(f, dtype, points, 0x5EED, ill);
            for (o, name) in names.iter().enumerate() {
                let (s, j) = (&m.interp[o], &m.jit[o]);
                println!(
                    "{:<22} {:<4} {:<9} {:>5.2} {:>5.1} {:>5.1} {:>4} | {:>5.2} {:>5.1} {:>5.1} {:>4} | {:>5} {:>5} | {:>6.2} {:>5.1} {:>5}",
                    f.name,
                    dtype.name(),
                    name,
                    s.mean_bits,
                    s.max_bits,
                    s.max_excess,
                    s.nonfinite,
                    j.mean_bits,
                    j.max_bits,
                    j.max_excess,
                    j.nonfinite,
                    s.ill,
                    s.points - s.referenced,
                    s.naive_mean_bits,
                    s.naive_max_bits,
                    s.naive_nonfinite
                );
                if worst {
                    for (engine, sc) in [(Engine::Interp, s), (Engine::Jit, j)] {
                        if let Some((inputs, got, want)) = &sc.worst {
                            println!("    {} worst: inputs {inputs:?} got {got:e} want {want:e}", engine.name());
                        }
                        if let Some((inputs, got, want, k)) = &sc.worst_excess {
                            println!(
                                "    {} worst excess: inputs {inputs:?} got {got:e} want {want:e} κ {k:.1}",
                                engine.name()
                            );
                        }
                        if let Some((inputs, got, want)) = &sc.first_nonfinite {
                            println!("    {} non-finite: inputs {inputs:?} got {got:e} want {want:e}", engine.name());
                        }
                    }
                }
            }
        }
    }
}
