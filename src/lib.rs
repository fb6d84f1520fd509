//! lossc: a compiler for loss functions.
//!
//! A loss is written as a small text file (SPEC §1); lossc parses it, lowers it to a
//! hash-consed expression graph, differentiates it symbolically and evaluates it.
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
//!
//! See ARCHITECTURE.md for the pipeline and its invariants.

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
