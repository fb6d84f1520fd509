//! The reference interpreter: evaluates a [`Program`] on data, in f64 or f32.
//!
//! It is the oracle every other engine is tested against, so it favours clarity and
//! exactness over speed: it walks the graph row by row, node by node, computing each
//! operation in the program's dtype (f32 mode rounds every operation to f32); only the
//! final reduction accumulates in f64 with compensation and rounds once.

use crate::diagnostic::Diagnostic;
use crate::ir::{Dtype, Kind, NodeId, Op};
use crate::math::{self, Real};
use crate::program::{Layout, Program, ReduceMode, Role};

/// An n-dimensional array of numbers in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions; empty for a single number (0-d).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f64>,
}

impl Array {
    /// A 0-d array holding one number (broadcast everywhere).
    pub fn scalar(x: f64) -> Array {
        Array { shape: Vec::new(), data: vec![x] }
    }

    /// A 1-d array.
    pub fn vector(data: Vec<f64>) -> Array {
        Array { shape: vec![data.len()], data }
    }
}

/// What to compute besides the loss.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Overrides the file's reduction (keeping its `by`/`over`).
    pub reduce: Option<ReduceMode>,
    /// Compute ∂L/∂pred for every pred.
    pub grad: bool,
    /// Compute the Hessian diagonal (the program must have been compiled with it).
    pub hess: bool,
    /// Upstream gradient for `reduce none` (one per loss value); ones when absent.
    pub upstream: Option<Vec<f64>>,
}

/// The reduced loss: one number, or one per row / element for `none`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossValue {
    /// mean, mean_or_zero, sum, batchmean.
    Scalar(f64),
    /// none.
    PerItem(Vec<f64>),
}

/// Everything one evaluation produced; numbers are exactly representable in the dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The loss.
    pub loss: LossValue,
    /// Gradient per pred name, flat, same length as the pred's data.
    pub grad: Vec<(String, Vec<f64>)>,
    /// Hessian diagonal per pred name.
    pub hess: Vec<(String, Vec<f64>)>,
}

/// Evaluates `prog` on `inputs` (by name; preds, targets and vector params).
///
/// # Errors
/// A missing, unknown or mis-shaped input, a non-integral class index, an unmasked
/// class index outside `[0, C)`, or a failing `require`.
pub fn evaluate(prog: &Program, inputs: &[(&str, &Array)], opts: &EvalOptions) -> Result<Evaluation, Diagnostic> {
    match prog.dtype {
        Dtype::F64 => Interp::<f64>::new(prog, inputs, opts)?.run(),
        Dtype::F32 => Interp::<f32>::new(prog, inputs, opts)?.run(),
    }
}

/// Which interpreter evaluates a program (no default: callers choose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The reference semantics, the oracle: each op as `math.rs` computes it (the platform
    /// libm for `exp`, `log`, …), fused ops with their own algorithms, the reduced loss
    /// summed over rows with Neumaier compensation ([`evaluate`]).
    Exact,
    /// Exactly what the JIT computes, bit for bit, without running its kernels: the graphs
    /// the kernels are built from, the JIT's own math routines and its summation order
    /// (lanes, unrolling, tails, fixed chunks). The oracle of the JIT's loops; see
    /// `jit/interp.rs`.
    Kernel,
}

/// Evaluates `prog` on `inputs` with the interpreter `mode` selects.
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_with(
    mode: Mode,
    prog: &Program,
    inputs: &[(&str, &Array)],
    opts: &EvalOptions,
) -> Result<Evaluation, Diagnostic> {
    match mode {
        Mode::Exact => evaluate(prog, inputs, opts),
        Mode::Kernel => crate::jit::interp::evaluate(prog, inputs, opts),
    }
}

/// Data of one input, converted to the compute type, as given (1, C or full length).
pub(crate) struct Source<T> {
    /// The values in the compute type.
    pub(crate) data: Vec<T>,
    /// Raw values (for index targets, which must not be rounded).
    pub(crate) raw: Vec<f64>,
}

/// What [`Interp::setup`] found: the reduction's denominator and the roots evaluated.
pub(crate) struct Setup {
    /// Σ D for the means, B for batchmean, none for sum and none.
    pub denom: Option<f64>,
    /// mean_or_zero over Σ D = 0: the loss is 0 and the seed 0.
    pub nothing: bool,
    /// Nodes the call evaluates.
    pub roots: Vec<NodeId>,
}

/// The interpreter's state for one call; the JIT uses it for validation and pre-passes.
pub(crate) struct Interp<'a, T: Real> {
    prog: &'a Program,
    opts: &'a EvalOptions,
    pub(crate) mode: ReduceMode,
    pub(crate) sources: Vec<Option<Source<T>>>,
    /// Number of rows (elements when there is no class axis).
    pub(crate) rows: usize,
    /// Classes per row (1 without a class axis).
    pub(crate) classes: usize,
    /// B for batchmean.
    batch: usize,
    /// Rows whose class index is outside [0, C).
    pub(crate) invalid: Vec<bool>,
    offset: Vec<usize>,
    vals: Vec<T>,
    pub(crate) seed_uniform: T,
}

fn data_error(msg: String) -> Diagnostic {
    Diagnostic::error_nowhere(msg)
}

impl<'a, T: Real> Interp<'a, T> {
    pub(crate) fn new<'b>(
        prog: &'a Program,
        inputs: &[(&str, &'b Array)],
        opts: &'a EvalOptions,
    ) -> Result<Self, Diagnostic> {
        for (name, _) in inputs {
            if prog.input(name).is_none() {
                let mut msg = format!("the loss has no input named `{name}`");
                if prog.params.iter().any(|p| p.name == *name) {
                    msg = format!("`{name}` is a scalar parameter and takes a single number");
                }
                return Err(data_error(msg));
            }
        }
        let find = |name: &str| inputs.iter().rev().find(|(n, _)| *n == name).map(|(_, a)| *a);
        let (rows, classes) = Self::layout(prog, &find)?;
        let mut sources = Vec::new();
        for decl in &prog.inputs {
            let given = find(&decl.name);
            let arr = match (given, decl.default) {
                (Some(a), _) => a.clone(),
                (None, Some(d)) => Array::scalar(d),
                (None, None) if !decl.used => {
                    sources.push(None);
                    continue;
                }
                (None, None) => {
                    return Err(data_error(format!("missing input `{}`", decl.name)).with_note(format!(
                        "help: give it as `{}=FILE.npy`, `{}=FILE.csv`, a list `{}=1,2,3` or a number",
                        decl.name, decl.name, decl.name
                    )));
                }
            };
            let n = arr.data.len();
            let ok = match decl.layout {
                Layout::Classes => n == 1 || n == classes || n == rows * classes,
                Layout::Scalar | Layout::Index => n == 1 || n == rows,
            };
            if !ok {
                let want = match decl.layout {
                    Layout::Classes => {
                        format!("{} values ({rows} rows of {classes}), {classes} (one row) or 1", rows * classes)
                    }
                    _ if prog.class_axis => format!("{rows} values (one per row) or 1"),
                    _ => format!("{rows} values or 1"),
                };
                return Err(data_error(format!("input `{}` has {n} values but the loss needs {want}", decl.name))
                    .with_note(format!("note: shape of `{}` is {:?}", decl.name, arr.shape)));
            }
            if decl.layout == Layout::Index {
                if let Some((i, v)) = arr.data.iter().enumerate().find(|(_, v)| !(v.is_finite() && v.fract() == 0.0)) {
                    return Err(data_error(format!(
                        "class index target `{}` holds {v} at row {i}, which is not an integer",
                        decl.name
                    )));
                }
            }
            let data = arr.data.iter().map(|x| T::from_f64(*x)).collect();
            sources.push(Some(Source { data, raw: arr.data }));
        }
        let batch = prog
            .preds()
            .find_map(|p| find(&prog.inputs[p as usize].name))
            .map_or(rows, |a| a.shape.first().copied().unwrap_or(1));
        let mode = opts.reduce.unwrap_or(prog.reduce);
        // Rows whose class index is out of range; an index target the loss does not use
        // cannot read outside a row, so (as in the JIT) its range is not checked.
        let mut invalid = vec![false; rows];
        for (decl, src) in prog.inputs.iter().zip(&sources) {
            if let (Layout::Index, Some(src), true) = (decl.layout, src, decl.used) {
                for (r, bad) in invalid.iter_mut().enumerate() {
                    let k = src.raw[if src.raw.len() == 1 { 0 } else { r }];
                    if !(0.0..classes as f64).contains(&k) {
                        *bad = true;
                    }
                }
            }
        }
        // Slots: a value per node, C values for class-valued nodes.
        let mut offset = Vec::with_capacity(prog.graph.len());
        let mut total = 0;
        for i in 0..prog.graph.len() {
            offset.push(total);
            total += if prog.graph.kind(NodeId(i as u32)) == Kind::Class { classes } else { 1 };
        }
        let vals = vec![T::ZERO; total];
        Ok(Interp { prog, opts, mode, sources, rows, classes, batch, invalid, offset, vals, seed_uniform: T::ONE })
    }

    /// Rows and classes from the data (SPEC §1 Data layout).
    pub(crate) fn layout<'b>(
        prog: &Program,
        find: &dyn Fn(&str) -> Option<&'b Array>,
    ) -> Result<(usize, usize), Diagnostic> {
        if prog.class_axis {
            let order = prog.inputs.iter().filter(|i| i.layout == Layout::Classes);
            let preds_first =
                order.clone().filter(|i| i.role == Role::Pred).chain(order.filter(|i| i.role != Role::Pred));
            for decl in preds_first {
                let Some(arr) = find(&decl.name) else { continue };
                if arr.data.len() == 1 && decl.role != Role::Pred {
                    continue;
                }
                let Some(&c) = arr.shape.last() else {
                    return Err(data_error(format!(
                        "input `{}` needs a class axis (its last axis) but is a single number",
                        decl.name
                    )));
                };
                if c == 0 {
                    return Err(data_error(format!("input `{}` has an empty class axis", decl.name)));
                }
                return Ok((arr.data.len() / c, c));
            }
            Err(data_error("no input with a class axis was given, so the number of classes is unknown".to_string()))
        } else {
            let mut n: Option<(usize, &str)> = None;
            let decls = prog
                .inputs
                .iter()
                .filter(|i| i.role == Role::Pred)
                .chain(prog.inputs.iter().filter(|i| i.role != Role::Pred));
            for decl in decls {
                let Some(arr) = find(&decl.name) else { continue };
                let len = arr.data.len();
                if len == 1 {
                    continue;
                }
                match n {
                    None => n = Some((len, &decl.name)),
                    Some((m, first)) if m != len => {
                        return Err(data_error(format!(
                            "inputs `{first}` and `{}` have different numbers of elements ({m} and {len})",
                            decl.name
                        ))
                        .with_note("note: every input must have the same number of elements, or be a single number"));
                    }
                    _ => {}
                }
            }
            Ok((n.map_or(1, |(m, _)| m), 1))
        }
    }

    /// Everything before the main pass: uniform values, `batch_*` pre-passes,
    /// requirements and index checks, the reduction's denominator and the seed.
    pub(crate) fn setup(&mut self) -> Result<Setup, Diagnostic> {
        let prog = self.prog;
        let g = &prog.graph;
        let roots = self.roots()?;
        // Uniform values and batch reductions first, in index order.
        let last = roots.iter().max().copied().unwrap_or(NodeId(0));
        for i in 0..=last.index() {
            let id = NodeId(i as u32);
            let node = g.node(id);
            if node.op.is_batch() {
                let v = self.batch_value(id);
                self.vals[self.offset[i]] = v;
            } else if g.kind(id) == Kind::Uniform {
                self.eval_node(id, 0);
            }
        }
        self.check_requirements()?;
        // The seed: 1/Σ D for the means, 1/B for batchmean, 1 for sum, upstream for none.
        let denom = match self.mode {
            ReduceMode::Mean | ReduceMode::MeanOrZero => Some(self.sum_over_rows(prog.over)),
            ReduceMode::BatchMean => Some(self.batch as f64),
            ReduceMode::Sum | ReduceMode::None => None,
        };
        // mean_or_zero over nothing is 0, with zero gradient (Keras's divide_no_nan).
        let nothing = self.mode == ReduceMode::MeanOrZero && denom == Some(0.0);
        self.seed_uniform = match denom {
            _ if nothing => T::ZERO,
            Some(d) => T::from_f64(1.0 / d),
            None => T::ONE,
        };
        let n_items = if prog.loss_kind == Kind::Class { self.rows * self.classes } else { self.rows };
        if let Some(up) = &self.opts.upstream {
            if up.len() != n_items && up.len() != 1 {
                return Err(data_error(format!(
                    "the upstream gradient has {} values but the loss has {n_items}",
                    up.len()
                )));
            }
        }
        Ok(Setup { denom, nothing, roots })
    }

    fn roots(&self) -> Result<Vec<NodeId>, Diagnostic> {
        let prog = self.prog;
        let mut roots = vec![prog.loss, prog.weight, prog.over];
        roots.extend(prog.requires.iter().map(|r| r.cond));
        if self.opts.grad {
            roots.extend(prog.derivs.iter().map(|d| d.grad));
        }
        if self.opts.hess {
            for d in &prog.derivs {
                let Some(h) = d.hess else {
                    return Err(data_error("the Hessian was not compiled into this loss".to_string()));
                };
                roots.push(h);
            }
        }
        Ok(roots)
    }

    /// The reduced loss from the f64 sum of W·l, as both engines report it.
    pub(crate) fn reduce_total(&self, setup: &Setup, total: f64, per_item: Vec<f64>) -> LossValue {
        match (self.mode, setup.denom) {
            (ReduceMode::None, _) => LossValue::PerItem(per_item),
            _ if setup.nothing => LossValue::Scalar(0.0),
            (_, Some(d)) => LossValue::Scalar(T::from_f64(total / d).to_f64()),
            (_, None) => LossValue::Scalar(T::from_f64(total).to_f64()),
        }
    }

    fn run(mut self) -> Result<Evaluation, Diagnostic> {
        let prog = self.prog;
        let setup = self.setup()?;
        let roots = setup.roots.clone();
        let needed = self.needed(&roots);
        let mut acc = Neumaier::default();
        let mut per_item = Vec::new();
        let pred_len = |n: u16| self.sources[n as usize].as_ref().map_or(0, |s| s.data.len());
        let mut grads: Vec<Vec<f64>> = prog.derivs.iter().map(|d| vec![0.0; pred_len(d.input)]).collect();
        let mut hess: Vec<Vec<f64>> = grads.clone();
        for r in 0..self.rows {
            self.eval_row(r, &needed);
            let lw = self.width(prog.loss_kind);
            for c in 0..lw {
                let l = self.at(prog.loss, c);
                let w = self.at(prog.weight, c);
                let wl = w.mul(l);
                acc.add(wl.to_f64());
                if self.mode == ReduceMode::None {
                    per_item.push(wl.to_f64());
                }
            }
            if self.opts.grad || self.opts.hess {
                for (k, d) in prog.derivs.iter().enumerate() {
                    if self.opts.grad {
                        self.scatter(&mut grads[k], d.input, d.grad, r);
                    }
                    if let (true, Some(h)) = (self.opts.hess, d.hess) {
                        self.scatter(&mut hess[k], d.input, h, r);
                    }
                }
            }
        }
        let loss = self.reduce_total(&setup, acc.sum(), per_item);
        let names = |v: Vec<Vec<f64>>| {
            prog.derivs.iter().zip(v).map(|(d, g)| (prog.inputs[d.input as usize].name.clone(), g)).collect()
        };
        Ok(Evaluation {
            loss,
            grad: if self.opts.grad { names(grads) } else { Vec::new() },
            hess: if self.opts.hess { names(hess) } else { Vec::new() },
        })
    }

    /// Stores row `r`'s derivative values into `out`, summing where the pred was broadcast.
    fn scatter(&self, out: &mut [f64], input: u16, node: NodeId, r: usize) {
        let kind = self.prog.graph.input_kind(input);
        let w = self.width(kind);
        let len = out.len();
        if len == 0 {
            return; // an unused pred given no data has no gradient to report
        }
        let broadcast_all = len == 1 && self.rows * w > 1;
        let broadcast_row = kind == Kind::Class && len == self.classes && self.rows > 1;
        for c in 0..w {
            let v = if self.invalid[r] { 0.0 } else { self.at(node, c).to_f64() };
            if broadcast_all {
                out[0] += v;
            } else if broadcast_row {
                out[c] += v;
            } else {
                out[r * w + c] = v;
            }
        }
    }

    fn width(&self, kind: Kind) -> usize {
        if kind == Kind::Class {
            self.classes
        } else {
            1
        }
    }

    fn at(&self, id: NodeId, c: usize) -> T {
        let g = &self.prog.graph;
        let off = self.offset[id.index()];
        if g.kind(id) == Kind::Class {
            self.vals[off + c]
        } else {
            self.vals[off]
        }
    }

    /// Nodes reachable from `roots`, excluding uniform ones (already computed).
    fn needed(&self, roots: &[NodeId]) -> Vec<bool> {
        let g = &self.prog.graph;
        let mut need = vec![false; g.len()];
        for r in roots {
            need[r.index()] = true;
        }
        for i in (0..g.len()).rev() {
            if !need[i] {
                continue;
            }
            let node = g.node(NodeId(i as u32));
            if node.op.is_batch() {
                continue;
            }
            for c in node.children() {
                need[c.index()] = true;
            }
        }
        for (i, n) in need.iter_mut().enumerate() {
            if g.kind(NodeId(i as u32)) == Kind::Uniform {
                *n = false;
            }
        }
        need
    }

    fn eval_row(&mut self, r: usize, needed: &[bool]) {
        for (i, need) in needed.iter().enumerate() {
            if *need {
                self.eval_node(NodeId(i as u32), r);
            }
        }
    }

    /// Σ over all rows (and classes) of node `id`'s values, in f64.
    fn sum_over_rows(&mut self, id: NodeId) -> f64 {
        let needed = self.needed(&[id]);
        let mut acc = Neumaier::default();
        if self.prog.graph.kind(id) == Kind::Uniform {
            let n = if self.prog.loss_kind == Kind::Class { self.rows * self.classes } else { self.rows };
            return self.at(id, 0).to_f64() * n as f64;
        }
        for r in 0..self.rows {
            self.eval_row(r, &needed);
            let k = self.prog.graph.kind(id);
            let reps = if k != Kind::Class && self.prog.loss_kind == Kind::Class { self.classes } else { 1 };
            for c in 0..self.width(k) {
                acc.add(self.at(id, c).to_f64() * reps as f64);
            }
        }
        acc.sum()
    }

    fn batch_value(&mut self, id: NodeId) -> T {
        let node = self.prog.graph.node(id);
        let arg = node.args[0];
        let needed = self.needed(&[arg]);
        let kind = self.prog.graph.kind(arg);
        let (mut all, mut any, mut acc) = (true, false, Neumaier::default());
        // A value that is the same everywhere counts once per row (per element without a
        // class axis): `batch_sum(1)` is the number of rows.
        for r in 0..self.rows {
            self.eval_row(r, &needed);
            for c in 0..self.width(kind) {
                let v = self.at(arg, c);
                let t = math::is_true(v);
                all &= t;
                any |= t;
                acc.add(v.to_f64());
            }
        }
        match node.op {
            Op::BatchAll => {
                if all {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Op::BatchAny => {
                if any {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            _ => T::from_f64(acc.sum()),
        }
    }

    fn check_requirements(&mut self) -> Result<(), Diagnostic> {
        for req in &self.prog.requires {
            let needed = self.needed(&[req.cond]);
            let kind = self.prog.graph.kind(req.cond);
            let rows = if kind == Kind::Uniform { 1 } else { self.rows };
            for r in 0..rows {
                self.eval_row(r, &needed);
                for c in 0..self.width(kind) {
                    if !math::is_true(self.at(req.cond, c)) {
                        let place = match kind {
                            Kind::Uniform => String::new(),
                            Kind::Class => format!(" (first failing row: {r}, class {c})"),
                            Kind::Row if self.prog.class_axis => format!(" (first failing row: {r})"),
                            Kind::Row => format!(" (first failing element: {r})"),
                        };
                        return Err(Diagnostic::error(req.span, format!("requirement failed: {}{place}", req.message)));
                    }
                }
            }
        }
        // A class index outside [0, C) must be masked by a zero weight.
        if self.invalid.iter().any(|b| *b) {
            let w = self.prog.weight;
            let needed = self.needed(&[w]);
            for r in 0..self.rows {
                if !self.invalid[r] {
                    continue;
                }
                self.eval_row(r, &needed);
                let kind = self.prog.graph.kind(w);
                let masked = (0..self.width(kind)).all(|c| self.at(w, c) == T::ZERO);
                if !masked {
                    let (name, k) = self
                        .prog
                        .inputs
                        .iter()
                        .zip(&self.sources)
                        .find_map(|(d, s)| {
                            // Only used index targets have one value per row (or one): a
                            // class input given as one row is shorter than the rows.
                            let s = s.as_ref().filter(|_| d.layout == Layout::Index && d.used)?;
                            let k = s.raw[if s.raw.len() == 1 { 0 } else { r }];
                            (!(0.0..self.classes as f64).contains(&k)).then(|| (d.name.clone(), k))
                        })
                        .unwrap_or_default();
                    return Err(data_error(format!(
                        "class index {k} of `{name}` at row {r} is outside [0, {}) and the row is not masked",
                        self.classes
                    ))
                    .with_note(
                        "help: give such rows a zero weight with `reduce ... by where(...)`, as ignore_index does",
                    ));
                }
            }
        }
        Ok(())
    }

    fn read_input(&self, n: u16, r: usize, c: usize) -> T {
        let Some(src) = &self.sources[n as usize] else { return T::from_f64(f64::NAN) };
        let len = src.data.len();
        let i = if len == 1 {
            0
        } else if self.prog.inputs[n as usize].layout == Layout::Classes {
            if len == self.classes && self.rows != 1 {
                c
            } else {
                r * self.classes + c
            }
        } else {
            r
        };
        src.data[i]
    }

    fn raw_index(&self, n: u16, r: usize) -> f64 {
        self.sources[n as usize].as_ref().map_or(f64::NAN, |s| s.raw[if s.raw.len() == 1 { 0 } else { r }])
    }

    fn eval_node(&mut self, id: NodeId, r: usize) {
        let g = &self.prog.graph;
        let node = g.node(id);
        let kind = g.kind(id);
        let off = self.offset[id.index()];
        let w = self.width(kind);
        let [a, b, c3] = node.args;
        match node.op {
            Op::Const(bits) => self.vals[off] = T::from_f64(f64::from_bits(bits)),
            Op::Input(n) => {
                for c in 0..w {
                    self.vals[off + c] = self.read_input(n, r, c);
                }
            }
            Op::NumClasses => self.vals[off] = T::from_f64(self.classes as f64),
            Op::ClassIndex => {
                for c in 0..w {
                    self.vals[off + c] = T::from_f64(c as f64);
                }
            }
            Op::Seed => {
                for c in 0..w {
                    self.vals[off + c] = match &self.opts.upstream {
                        Some(up) if self.mode == ReduceMode::None => {
                            let i = if up.len() == 1 { 0 } else { r * w + c };
                            T::from_f64(up[i])
                        }
                        _ => self.seed_uniform,
                    };
                }
            }
            op if op.is_elementwise() => {
                for c in 0..w {
                    let v = match op.arity() {
                        1 => math::apply_unary(op, self.at(a, c)),
                        2 => math::apply_binary(op, self.at(a, c), self.at(b, c)),
                        _ => math::apply_ternary(op, self.at(a, c), self.at(b, c), self.at(c3, c)),
                    };
                    self.vals[off + c] = v;
                }
            }
            Op::Gather => {
                let Op::Input(n) = g.node(b).op else { return };
                let k = self.raw_index(n, r);
                self.vals[off] = if (0.0..self.classes as f64).contains(&k) { self.at(a, k as usize) } else { T::ZERO };
            }
            Op::NllSoftmax => {
                let Op::Input(n) = g.node(b).op else { return };
                let k = self.raw_index(n, r);
                self.vals[off] = if (0.0..self.classes as f64).contains(&k) {
                    let row: Vec<T> = (0..self.classes).map(|c| self.at(a, c)).collect();
                    math::nll_softmax(&row, k as usize)
                } else {
                    T::ZERO
                };
            }
            Op::RowSum | Op::RowMean | Op::RowMax | Op::RowMin | Op::RowLogSumExp | Op::RowNorm => {
                let row: Vec<T> = (0..self.classes).map(|c| self.at(a, c)).collect();
                self.vals[off] = row_reduce(node.op, &row);
            }
            Op::Softmax | Op::LogSoftmax => {
                let row: Vec<T> = (0..self.classes).map(|c| self.at(a, c)).collect();
                let mut out = vec![T::ZERO; row.len()];
                math::log_softmax_row(&row, &mut out, node.op == Op::Softmax);
                for (c, v) in out.into_iter().enumerate() {
                    self.vals[off + c] = v;
                }
            }
            // Batch values are computed in the pre-pass.
            _ => {}
        }
    }
}

/// A class-axis reduction of one row.
fn row_reduce<T: Real>(op: Op, row: &[T]) -> T {
    match op {
        Op::RowSum => row.iter().fold(T::ZERO, |s, x| s.add(*x)),
        Op::RowMean => row.iter().fold(T::ZERO, |s, x| s.add(*x)).div(T::from_f64(row.len() as f64)),
        Op::RowMax => row.iter().copied().reduce(math::maximum).unwrap_or(T::from_f64(f64::NEG_INFINITY)),
        Op::RowMin => row.iter().copied().reduce(math::minimum).unwrap_or(T::from_f64(f64::INFINITY)),
        Op::RowLogSumExp => math::logsumexp(row),
        Op::RowNorm => {
            // Scaled to avoid overflow and underflow of the squares.
            let m = row.iter().map(|x| x.abs()).reduce(math::maximum).unwrap_or(T::ZERO);
            if m.is_nan() || m == T::ZERO || !m.to_f64().is_finite() {
                return m;
            }
            let s = row.iter().fold(T::ZERO, |s, x| {
                let q = x.div(m);
                s.add(q.mul(q))
            });
            m.mul(s.sqrt())
        }
        _ => T::from_f64(f64::NAN),
    }
}

/// Neumaier's compensated summation in f64 (shared with the JIT's chunk combination).
#[derive(Default)]
pub(crate) struct Neumaier {
    sum: f64,
    comp: f64,
}

impl Neumaier {
    /// Adds one term.
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// The compensated total.
    pub(crate) fn sum(&self) -> f64 {
        let s = self.sum + self.comp;
        // Non-finite terms make the compensation NaN; the plain sum is then right.
        if s.is_finite() || !self.sum.is_finite() {
            if self.sum.is_finite() {
                s
            } else {
                self.sum
            }
        } else {
            self.sum
        }
    }
}
