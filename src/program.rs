//! A compiled loss: the validated graph with its inputs, reduction, requirements and derivatives.
//!
//! A [`Program`] only comes out of [`crate::compile`], which lowers, checks and
//! differentiates; everything downstream (printing, the interpreter, later the JIT)
//! may rely on its invariants: node ids in range, children before parents, kinds
//! consistent, index targets used only by `Gather`, `==` and `!=`, no pred under a
//! `batch_*`, a `by` or an `over`.

use crate::diagnostic::Diagnostic;
use crate::ir::{Dtype, Graph, Kind, NodeId};
use crate::span::Span;

/// What an input is to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Differentiated (`pred`).
    Pred,
    /// Data (`target`).
    Target,
    /// A per-class vector parameter given as data (`param w[C]`).
    VectorParam,
}

/// The shape of one input relative to the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One value per element (or per row when the loss has a class axis).
    Scalar,
    /// A row of C values per row (`[C]`).
    Classes,
    /// One integer class index per row (`: index`).
    Index,
}

/// A declared input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    /// Its name.
    pub name: String,
    /// Pred, target or vector param.
    pub role: Role,
    /// Scalar, `[C]` or index.
    pub layout: Layout,
    /// The value used everywhere when no data is given (`= NUMBER`), already rounded.
    pub default: Option<f64>,
    /// True when the loss uses it (an unused input need not be given).
    pub used: bool,
    /// The declaration.
    pub span: Span,
}

/// A scalar parameter as compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Its name.
    pub name: String,
    /// The declared default (`None` for required and optional ones).
    pub default: Option<f64>,
    /// Declared with `?`.
    pub optional: bool,
    /// The value compiled in (NaN for an unsupplied optional one).
    pub value: f64,
    /// The declaration.
    pub span: Span,
}

/// How per-element losses become the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceMode {
    /// Σ W·l / Σ D.
    Mean,
    /// As `Mean`, but 0 when Σ D = 0.
    MeanOrZero,
    /// Σ W·l.
    Sum,
    /// W·l per element or row.
    None,
    /// Σ W·l / B, B the length of the first pred's axis 0.
    BatchMean,
}

impl ReduceMode {
    /// Every mode, in documentation order.
    pub const ALL: [ReduceMode; 5] =
        [ReduceMode::Mean, ReduceMode::MeanOrZero, ReduceMode::Sum, ReduceMode::None, ReduceMode::BatchMean];

    /// The word used in `reduce` statements and `--reduce`.
    pub fn name(self) -> &'static str {
        match self {
            ReduceMode::Mean => "mean",
            ReduceMode::MeanOrZero => "mean_or_zero",
            ReduceMode::Sum => "sum",
            ReduceMode::None => "none",
            ReduceMode::BatchMean => "batchmean",
        }
    }

    /// Parses a mode word.
    pub fn from_name(name: &str) -> Option<ReduceMode> {
        ReduceMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A `require` checked on the data.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    /// Nonzero where the requirement holds.
    pub cond: NodeId,
    /// The user's message.
    pub message: String,
    /// The statement.
    pub span: Span,
}

/// Derivatives of the reduced loss with respect to one pred.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivatives {
    /// The input number of the pred.
    pub input: u16,
    /// ∂L/∂x, same kind as the pred.
    pub grad: NodeId,
    /// ∂²L/∂x_i², if requested at compile time.
    pub hess: Option<NodeId>,
}

/// A checked, differentiated loss.
#[derive(Clone, Debug)]
pub struct Program {
    /// The DAG holding the loss, its weights and its derivatives.
    pub graph: Graph,
    /// Inputs by number (`Op::Input(n)`).
    pub inputs: Vec<InputDecl>,
    /// Scalar parameters, with the values compiled in.
    pub params: Vec<ParamInfo>,
    /// True when some input has a class axis.
    pub class_axis: bool,
    /// Per-element or per-row loss l.
    pub loss: NodeId,
    /// `Row` for a per-row (or per-element without class axis) loss, `Class` for per-element with one.
    pub loss_kind: Kind,
    /// W of `reduce ... by W` (1 by default).
    pub weight: NodeId,
    /// D of `reduce ... over D` (W by default).
    pub over: NodeId,
    /// The file's reduction.
    pub reduce: ReduceMode,
    /// Data requirements.
    pub requires: Vec<Requirement>,
    /// Derivatives per pred, in declaration order.
    pub derivs: Vec<Derivatives>,
    /// Warnings found while compiling.
    pub warnings: Vec<Diagnostic>,
    /// The stability rewrites that fired, in the order they fired (empty when compiled
    /// without stabilization).
    pub rewrites: Vec<crate::stabilize::Rewrite>,
    /// The compute type.
    pub dtype: Dtype,
}

impl Program {
    /// The input numbers of the preds.
    pub fn preds(&self) -> impl Iterator<Item = u16> + '_ {
        self.inputs.iter().enumerate().filter(|(_, i)| i.role == Role::Pred).map(|(n, _)| n as u16)
    }

    /// The input with that name.
    pub fn input(&self, name: &str) -> Option<u16> {
        self.inputs.iter().position(|i| i.name == name).map(|n| n as u16)
    }
}
