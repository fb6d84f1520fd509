//! Compiles one loss to its quick-tier kernel N times, for counting the instructions a
//! compile executes with callgrind — a figure that, unlike a timing, does not move with
//! whatever else the machine is doing:
//!
//!     cargo build --release --example compile_repeat
//!     valgrind --tool=callgrind target/release/examples/compile_repeat torch/cross_entropy 6
//!
//! (the count of 6 runs minus that of 1 run, divided by 5, is the cost of one compile
//! without the process's one-time work). LOSS is a standard-library name or a file.

use lossc::jit::JitLoss;
use lossc::{compile, stdlib, CompileOptions, Dtype};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: compile_repeat LOSS N");
        std::process::exit(2);
    };
    let text = match stdlib::source(&name) {
        Some(t) => t.to_string(),
        None => match std::fs::read_to_string(&name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(2);
            }
        },
    };
    let options = CompileOptions { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true };
    for _ in 0..n {
        let prog = match compile(&text, &options) {
            Ok(p) => p,
            Err(d) => {
                eprintln!("{name}: {}", d.first().map_or("does not compile", |d| d.message.as_str()));
                std::process::exit(1);
            }
        };
        match JitLoss::new_quick(prog) {
            Ok(jit) => drop(jit),
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
    }
}
