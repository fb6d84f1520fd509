//! Fuzz target: the data side. The fuzzer's bytes become two input files (`.npy` or `.csv`,
//! chosen by the first byte; split where the second byte says), which are parsed, then fed to
//! two standard-library losses (an element loss and a `[C]` loss with class-index targets)
//! through both engines, and the second file's raw bytes are also passed as i32 / i64 class
//! indices to the typed call. Nothing may panic or read outside its inputs (run it under a
//! sanitizer to check the latter); the engines must agree on errors and, where both
//! succeed on finite results, on values up to rounding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossc::data::{parse_csv, parse_npy};
use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::jit::{Arg, CallOptions, Data, JitLoss, Outputs};
use lossc::{compile, stdlib, CompileOptions, Dtype};
use std::path::Path;
use std::sync::OnceLock;

/// The two losses, compiled once per process.
fn losses() -> &'static [(JitLoss, lossc::Program); 2] {
    static LOSSES: OnceLock<[(JitLoss, lossc::Program); 2]> = OnceLock::new();
    LOSSES.get_or_init(|| {
        let make = |name: &str| {
            let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
            let prog = compile(stdlib::source(name).expect("a stdlib loss"), &options).expect("it compiles");
            (JitLoss::new(prog.clone()).expect("the JIT compiles it"), prog)
        };
        [make("torch/mse_loss"), make("torch/cross_entropy")]
    })
}

fn parse(npy: bool, bytes: &[u8]) -> Option<Array> {
    let path = Path::new("fuzz.dat");
    if npy { parse_npy(path, bytes).ok() } else { parse_csv(path, bytes).ok() }
}

fn close(a: f64, b: f64) -> bool {
    !(a.is_finite() && b.is_finite()) || a == b || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fuzz_target!(|data: &[u8]| {
    let [mode, split, rest @ ..] = data else { return };
    let cut = usize::from(*split).min(rest.len());
    let (first, second) = rest.split_at(cut);
    // Files: mode bit 0 says whether the first is .npy, bit 1 the second.
    let a = parse(mode & 1 == 1, first);
    let b = parse(mode & 2 == 2, second);
    let [(mse, mse_prog), (ce, ce_prog)] = losses();
    if let (Some(a), Some(b)) = (&a, &b) {
        let opts = EvalOptions { grad: true, ..EvalOptions::default() };
        for (jit, prog, names) in [(mse, mse_prog, ["input", "target"]), (ce, ce_prog, ["input", "target"])] {
            let inputs = [(names[0], a), (names[1], b)];
            match (evaluate(prog, &inputs, &opts), jit.evaluate(&inputs, &opts)) {
                (Ok(x), Ok(y)) => {
                    if let (LossValue::Scalar(p), LossValue::Scalar(q)) = (x.loss, y.loss) {
                        assert!(close(p, q), "interpreter {p} vs JIT {q}");
                    }
                    for (g, h) in x.grad.iter().zip(&y.grad) {
                        assert!(g.1.iter().zip(&h.1).all(|(p, q)| close(*p, *q)), "gradients differ");
                    }
                }
                (Err(x), Err(y)) => assert_eq!(x.message, y.message),
                (x, y) => panic!("engines disagree on success: {:?} vs {:?}", x.err(), y.err()),
            }
        }
    }
    // Raw bytes as class indices through the typed call: out-of-range values must be an
    // error (or masked), never a read outside the row.
    let logits: Vec<f64> = first.iter().map(|&v| f64::from(v) / 16.0 - 8.0).collect();
    let i32s: Vec<i32> = second.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let i64s: Vec<i64> = i32s.iter().map(|&v| i64::from(v) * 3).collect();
    let classes = usize::from(mode >> 4) + 1;
    let rows = logits.len() / classes;
    let mut grad = vec![0.0; rows * classes];
    for targets in [Data::I32(&i32s), Data::I64(&i64s)] {
        let args = [Arg { name: "input", data: Data::Values(&logits[..rows * classes]) }, Arg { name: "target", data: targets }];
        let mut grads = [&mut grad[..]];
        let mut out = Outputs { grad: &mut grads, ..Outputs::default() };
        let _ = ce.call(&args, &CallOptions { rows: Some(rows), ..CallOptions::default() }, &mut out);
    }
});
