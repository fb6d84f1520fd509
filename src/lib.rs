//! lossc: a compiler for loss functions.
//!
//! A loss is written as a small text file (the language is in `docs/language.md`); lossc
//! parses it into an expression graph, differentiates it symbolically, rewrites it for
//! numerical stability and JIT-compiles it with Cranelift into fused, vectorized
//! value-and-gradient kernels. This page is the guide for Rust trainers: compile a loss
//! once, call it every step.
//!
//! # Compiling a loss
//!
//! A [`Loss`] comes from source text, a `.loss` file or a standard-library name
//! (`torch/...` and `keras/...`, option for option as PyTorch and Keras define them).
//! [`LossBuilder`] sets the compute type, parameter overrides and Hessians:
//!
//! ```
//! use lossc::{Dtype, Loss, LossBuilder};
//!
//! let hinge = Loss::new("maximum(1 - y*p, 0)^2")?; // f32, the file's defaults
//! let huber = LossBuilder::new().dtype(Dtype::F64).param("delta", 2.0).stdlib("torch/huber_loss")?;
//! # let dir = std::env::temp_dir().join(format!("lossc-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("squared_hinge.loss");
//! # std::fs::write(&path, "pred p\ntarget y\nmaximum(1 - y*p, 0)^2\n")?;
//! let from_file = Loss::from_file(&path)?;
//! assert_eq!(huber.program().params[0].value, 2.0);
//! // The same source and options give the same compiled kernels while one is alive.
//! assert!(hinge.same_kernels(&Loss::new("maximum(1 - y*p, 0)^2")?));
//! # assert!(from_file.preds().eq(["p"]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Compiling is the slow part (about a millisecond); keep the `Loss`. It is a cheap handle
//! (`Clone`, `Send + Sync`), so one loss serves every thread of a trainer.
//!
//! # Calling it
//!
//! Inputs are borrowed slices named as in the loss file ([`Arg`]). The call returns the
//! reduced loss and writes ∂L/∂pred into the buffers you pass, one per pred in
//! declaration order. It allocates nothing (below [`jit::PARALLEL_ELEMENTS`] elements, after
//! the first call on a thread) and runs on the calling thread; larger calls run in
//! parallel on rayon's pool, with the same result for any number of threads.
//!
//! ```
//! use lossc::{Arg, Loss};
//!
//! let loss = Loss::new("maximum(1 - y*p, 0)^2")?;
//! let (p, y) = ([0.5f32, 2.0], [1.0f32, 1.0]);
//! let mut grad = [0.0f32; 2];
//! let value = loss.call(&[Arg::values("p", &p), Arg::values("y", &y)], &mut [&mut grad])?;
//! assert_eq!(value, 0.125); // mean of 0.25 and 0
//! assert_eq!(grad, [-0.5, 0.0]);
//! # Ok::<(), lossc::Error>(())
//! ```
//!
//! # Class axes, index targets and per-class parameters
//!
//! Inputs declared `[C]` hold one row of C values per sample, row-major (PyTorch's
//! `(N, C, d1, ...)` must be moved to channels-last first). Such a call takes the row count
//! explicitly in [`CallOptions::rows`]. Index targets may be `i32`, `i64` or integral
//! floats; per-class vector parameters (`param weight[C]`) are data like any input:
//!
//! ```
//! use lossc::{Arg, CallOptions, Loss, Outputs};
//!
//! let loss = Loss::stdlib("torch/cross_entropy")?;
//! let logits = [1.0f32, 2.0, 0.5, /* row 2 */ 0.0, 0.0, 3.0];
//! let target = [1i64, 2];
//! let weight = [1.0f32, 1.0, 0.5];
//! let mut grad = [0.0f32; 6];
//! let args = [Arg::values("input", &logits), Arg::i64("target", &target), Arg::values("weight", &weight)];
//! let opts = CallOptions { rows: Some(2), ..CallOptions::default() };
//! let value = loss.call_with(&args, &opts, &mut Outputs { grad: &mut [&mut grad], ..Outputs::default() })?;
//! assert!(value > 0.0 && grad[1] < 0.0 && grad[5] < 0.0);
//! # Ok::<(), lossc::Error>(())
//! ```
//!
//! # `reduce none` and an upstream gradient
//!
//! With [`ReduceMode::None`] the call writes W·l per element (or per row) into
//! [`Outputs::loss_items`], and the gradient is that of Σ upstream·W·l, for chaining into
//! your own autograd:
//!
//! ```
//! use lossc::{Arg, CallOptions, Loss, Outputs, ReduceMode};
//!
//! let loss = Loss::new("(p - y)^2")?;
//! let (p, y) = ([1.0f32, 2.0, 3.0], [0.0f32; 3]);
//! let upstream = [1.0f32, 0.0, -1.0];
//! let (mut items, mut grad) = ([0.0f32; 3], [0.0f32; 3]);
//! let opts = CallOptions { reduce: Some(ReduceMode::None), upstream: Some(&upstream), ..CallOptions::default() };
//! let mut out = Outputs { grad: &mut [&mut grad], hess: &mut [], loss_items: Some(&mut items) };
//! loss.call_with(&[Arg::values("p", &p), Arg::values("y", &y)], &opts, &mut out)?;
//! assert_eq!(items, [1.0, 4.0, 9.0]);
//! assert_eq!(grad, [2.0, 0.0, -6.0]); // upstream · 2(p - y)
//! # Ok::<(), lossc::Error>(())
//! ```
//!
//! # Errors
//!
//! Nothing a caller passes makes lossc panic. Every problem is an [`Error`]: its
//! [`ErrorKind`], the [`Diagnostic`]s with their [`Span`]s into the loss source, and a
//! `Display` of the form `ORIGIN:LINE:COL: error: MESSAGE`, the command line's format:
//!
//! ```
//! use lossc::{Arg, ErrorKind, Loss};
//!
//! let err = Loss::new("pred p\ntarget y\nlog(p - z)").unwrap_err();
//! assert_eq!(err.to_string(), "<text>:3:9: error: unknown name `z`");
//!
//! let loss = Loss::new("(p - y)^2")?;
//! let err = loss.call(&[Arg::values("p", &[1.0f32, 2.0])], &mut [&mut [0.0f32; 3]]).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Data);
//! # Ok::<(), lossc::Error>(())
//! ```
//!
//! # Cargo features
//!
//! - `cli` (default): the `lossc` binary. A library user can turn it off
//!   (`default-features = false`) and skip clap, rustyline, plotters and codespan.
//! - `ndarray`: `Loss::call_ndarray` on `ndarray` views, rows and `batchmean`'s B taken
//!   from the shapes; views must be contiguous and row-major (an error otherwise, never a
//!   copy).
//! - `candle`: `lossc::candle::LossOp`, a lossc loss as a node of candle's autograd.
//!
//! # Lower levels
//!
//! [`compile`] gives the [`Program`] (the graph, its derivatives, the stability rewrites
//! that fired); [`eval::evaluate`] is the reference interpreter; [`jit::JitLoss`] is the
//! typed call underneath [`Loss`]. ARCHITECTURE.md describes the pipeline and its
//! invariants.
//!
//! ```
//! use lossc::{compile, CompileOptions, Dtype, eval::{evaluate, Array, EvalOptions, LossValue}};
//!
//! let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
//! let program = compile("maximum(1 - y*p, 0)^2", &options).expect("a valid loss");
//! let p = Array::vector(vec![0.5, 2.0]);
//! let y = Array::vector(vec![1.0, 1.0]);
//! let opts = EvalOptions { grad: true, ..EvalOptions::default() };
//! let out = evaluate(&program, &[("p", &p), ("y", &y)], &opts).expect("valid data");
//! assert_eq!(out.loss, LossValue::Scalar(0.125));
//! assert_eq!(out.grad[0].1, vec![-0.5, 0.0]);
//! ```

#[cfg(feature = "candle")]
pub mod candle;
pub mod data;
pub mod diagnostic;
pub mod diff;
pub mod eval;
pub mod ir;
pub mod jit;
pub mod loss;
pub mod math;
pub mod program;
pub mod span;
pub mod stabilize;
pub mod stdlib;
pub mod syntax;

pub use diagnostic::{Diagnostic, Severity};
pub use ir::Dtype;
pub use jit::{Arg, CallOptions, Data, Element, Outputs};
pub use loss::{Error, ErrorKind, Loss, LossBuilder};
pub use program::{Program, ReduceMode};
pub use span::Span;

/// How to compile a loss.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Compute type; literals and parameters are rounded to it.
    pub dtype: Dtype,
    /// Values of scalar parameters, by name (later entries win). Names that are not
    /// scalar parameters of the loss are ignored, so callers can pass every `NAME=NUMBER`.
    pub params: Vec<(String, f64)>,
    /// Also build the Hessian diagonal of every pred.
    pub hessian: bool,
    /// Rewrite the loss and its derivatives for numerical stability (SPEC §1 Stability;
    /// see [`stabilize`]). `false` keeps the formulas as written (`lossc check --no-stabilize`).
    pub stabilize: bool,
}

/// Compiles loss source text: parse, lower, check, stabilize, differentiate, stabilize
/// the derivatives.
///
/// # Errors
/// Every error found (several at once where possible), each with a span into `source`
/// where it has one. Warnings of a successful compile are in [`Program::warnings`].
pub fn compile(source: &str, options: &CompileOptions) -> Result<Program, Vec<Diagnostic>> {
    let (file, mut diags) = syntax::parse(source);
    let lower_options = ir::lower::LowerOptions { dtype: options.dtype, params: &options.params };
    let lowered = ir::lower::lower(&file, &lower_options);
    if diags.iter().any(Diagnostic::is_error) {
        // Report what the parsed statements get wrong too, except the echoes of
        // statements that did not parse (their names are unknown, the loss may be missing).
        if let Err(errs) = lowered {
            let echo =
                |d: &Diagnostic| d.message.starts_with("unknown name") || d.message.starts_with("the file has no loss");
            diags.extend(errs.into_iter().filter(|d| !echo(d)));
            diags.sort_by_key(|d| d.span.map(|s| s.start));
        }
        return Err(diags);
    }
    let mut program = match lowered {
        Ok(p) => p,
        Err(mut errs) => {
            diags.append(&mut errs);
            return Err(diags);
        }
    };
    if options.stabilize {
        stabilize::stabilize(&mut program, stabilize::Stage::Loss).map_err(|d| vec![d])?;
    }
    diff::differentiate(&mut program, false).map_err(|d| vec![d])?;
    if options.stabilize {
        stabilize::stabilize(&mut program, stabilize::Stage::Gradient).map_err(|d| vec![d])?;
    }
    if options.hessian {
        diff::add_hessians(&mut program).map_err(|d| vec![d])?;
        if options.stabilize {
            stabilize::stabilize(&mut program, stabilize::Stage::Hessian).map_err(|d| vec![d])?;
        }
    }
    diags.append(&mut program.warnings);
    program.warnings = diags;
    Ok(program)
}
