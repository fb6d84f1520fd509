//! Fuzz target: text → compiled loss → JIT kernel → a call on small data, compared with the
//! interpreter. Nothing may panic; both engines must agree on errors, and on values up to
//! rounding where both succeed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::jit::JitLoss;
use lossc::program::Layout;
use lossc::{compile, CompileOptions, Dtype};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.len() > 2000 {
        return;
    }
    let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: true, stabilize: true };
    let Ok(prog) = compile(text, &options) else { return };
    let Ok(jit) = JitLoss::new(prog.clone()) else { panic!("the JIT rejected a checked program") };
    // Small deterministic data for every input.
    let rows = 3;
    let classes = 4;
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for (n, decl) in prog.inputs.iter().enumerate() {
        let len = if decl.layout == Layout::Classes { rows * classes } else { rows };
        let data: Vec<f64> = (0..len)
            .map(|i| match decl.layout {
                Layout::Index => ((i + n) % classes) as f64,
                _ => ((i * 7 + n * 3) % 11) as f64 * 0.37 - 1.5,
            })
            .collect();
        let shape = if decl.layout == Layout::Classes { vec![rows, classes] } else { vec![len] };
        arrays.push((decl.name.clone(), Array { shape, data }));
    }
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { grad: true, hess: true, ..EvalOptions::default() };
    let a = evaluate(&prog, &refs, &opts);
    let b = jit.evaluate(&refs, &opts);
    match (a, b) {
        (Ok(x), Ok(y)) => {
            let (LossValue::Scalar(p), LossValue::Scalar(q)) = (x.loss, y.loss) else { return };
            let same = (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= 1e-9 * (1.0 + p.abs().max(q.abs()));
            assert!(same, "interpreter {p} vs JIT {q} for {text:?}");
        }
        (Err(x), Err(y)) => assert_eq!(x.message, y.message, "different errors for {text:?}"),
        (x, y) => panic!("engines disagree on success for {text:?}: {:?} vs {:?}", x.err(), y.err()),
    }
});
