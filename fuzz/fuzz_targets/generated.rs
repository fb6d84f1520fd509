//! Fuzz target: the structured generator of well-formed losses (`tests/common/gen.rs`,
//! shared with the differential test) driven by the fuzzer's bytes, then small data from the
//! leftover bytes (moderate values; class indices that may fall outside the row). The JIT and
//! the interpreter must both succeed or fail alike, and agree on the loss and every gradient
//! up to rounding.
#![no_main]

#[path = "../../tests/common/gen.rs"]
mod gen;

use gen::{Gen, Source};
use libfuzzer_sys::fuzz_target;
use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::jit::JitLoss;
use lossc::program::{Layout, ReduceMode};
use lossc::{compile, CompileOptions, Dtype};

/// Choices from the fuzzer's bytes, two at a time; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Source for Bytes<'_> {
    fn next(&mut self) -> f64 {
        let (a, b) = match self.0 {
            [a, b, rest @ ..] => {
                let v = (*a, *b);
                self.0 = rest;
                v
            }
            [a] => {
                let v = (*a, 0);
                self.0 = &[];
                v
            }
            [] => (0, 0),
        };
        f64::from(u16::from_le_bytes([a, b])) / 65536.0
    }
}

/// |a - b| within a few hundred ulps of the magnitudes involved (NaN only with NaN).
fn close(a: f64, b: f64, scale: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()) + scale)
}

fuzz_target!(|data: &[u8]| {
    let mut generator = Gen::new(Bytes(data));
    let src = generator.loss();
    let mut bytes = generator.into_source();
    let reduce = [ReduceMode::Mean, ReduceMode::Sum, ReduceMode::None][(bytes.next() * 3.0) as usize % 3];
    let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: true, stabilize: true };
    let prog = compile(&src, &options).unwrap_or_else(|d| panic!("a generated loss does not compile: {src}\n{d:?}"));
    let jit = JitLoss::new(prog.clone()).expect("the JIT compiles every checked program");
    let (rows, classes) = (3, 4);
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for decl in &prog.inputs {
        let (len, shape) = match decl.layout {
            Layout::Classes => (rows * classes, vec![rows, classes]),
            _ => (rows, vec![rows]),
        };
        let values = (0..len)
            .map(|_| match decl.layout {
                // -1 and C are outside the row: the interpreter reports them, the JIT must too.
                Layout::Index => (bytes.next() * (classes + 2) as f64).floor() - 1.0,
                _ => 8.0 * bytes.next() - 4.0,
            })
            .collect();
        arrays.push((decl.name.clone(), Array { shape, data: values }));
    }
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { grad: true, hess: false, reduce: Some(reduce), ..EvalOptions::default() };
    match (evaluate(&prog, &refs, &opts), jit.evaluate(&refs, &opts)) {
        (Ok(a), Ok(b)) => {
            let (va, vb) = match (&a.loss, &b.loss) {
                (LossValue::Scalar(x), LossValue::Scalar(y)) => (vec![*x], vec![*y]),
                (LossValue::PerItem(x), LossValue::PerItem(y)) => (x.clone(), y.clone()),
                _ => panic!("the engines return different kinds of loss for {src}"),
            };
            let mut pairs = vec![(va, vb)];
            pairs.extend(a.grad.iter().zip(&b.grad).map(|(x, y)| (x.1.clone(), y.1.clone())));
            for (x, y) in pairs {
                assert_eq!(x.len(), y.len(), "{src}");
                let scale = x.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
                for (p, q) in x.iter().zip(&y) {
                    assert!(close(*p, *q, scale), "interpreter {p} vs JIT {q} ({reduce:?}) for\n{src}");
                }
            }
        }
        (Err(x), Err(y)) => assert_eq!(x.message, y.message, "different errors for {src}"),
        (x, y) => panic!("engines disagree on success for {src}: {:?} vs {:?}", x.err(), y.err()),
    }
});
