//! Compile time from source text to a callable value-and-gradient kernel (the quick tier
//! a new loss starts with), for every loss
//! of the standard library and of `tests/data/custom/`: the median over repeated compiles
//! (parse, lower, stabilize, differentiate, prepare, Cranelift, finalize), in f32.
//!
//!     cargo run --release --example compile_times [REPS]

use std::time::Instant;

use lossc::jit::JitLoss;
use lossc::{compile, stdlib, CompileOptions, Dtype};

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(21);
    let mut sources: Vec<(String, String)> =
        stdlib::names().map(|n| (n.to_string(), stdlib::source(n).unwrap_or_default().to_string())).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom");
    let mut files: Vec<_> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "loss")) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        sources.push((format!("custom/{}", f.file_stem().unwrap_or_default().to_string_lossy()), text));
    }
    let mut rows = Vec::new();
    for (name, text) in &sources {
        let options = options_for(text);
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let prog = compile(text, &options).expect("the loss compiles");
            let jit = JitLoss::new_quick(prog).expect("the JIT compiles it");
            times.push(t.elapsed().as_secs_f64() * 1e6);
            drop(jit);
        }
        times.sort_by(f64::total_cmp);
        rows.push((times[reps / 2], name.clone()));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (us, name) in &rows {
        println!("{us:9.0} µs  {name}");
    }
    let over = rows.iter().filter(|r| r.0 > 1000.0).count();
    let mut all: Vec<f64> = rows.iter().map(|r| r.0).collect();
    all.sort_by(f64::total_cmp);
    println!(
        "{} losses: median of medians {:.0} µs, slowest {:.0} µs, {over} over 1 ms",
        rows.len(),
        all[all.len() / 2],
        all[all.len() - 1]
    );
}

/// f32 options, with 0.5 for every parameter the file declares without a default.
fn options_for(text: &str) -> CompileOptions {
    let mut options = CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true };
    while let Err(errors) = compile(text, &options) {
        let missing: Vec<String> = errors
            .iter()
            .filter_map(|d| d.message.strip_prefix("parameter `")?.split('`').next().map(str::to_string))
            .collect();
        if missing.is_empty() {
            break;
        }
        options.params.extend(missing.into_iter().map(|n| (n, 0.5)));
    }
    options
}
