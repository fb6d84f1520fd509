//! Lowering: AST to [`Program`] — name resolution, declarations, parameters, kind checks.
//!
//! Statements are lowered in source order, so a name must be bound above its first
//! use. Errors are collected (several per run) and returned together.

use std::collections::HashMap;

use crate::diagnostic::{suggest, Diagnostic};
use crate::ir::{Dtype, Graph, Kind, NodeId, Op, MAX_NODES};
use crate::program::{InputDecl, Layout, ParamInfo, Program, ReduceMode, Requirement, Role};
use crate::span::Span;
use crate::syntax::ast::{self, BinOp, Expr, ExprKind, UnOp};

/// What a function call lowers to.
#[derive(Clone, Copy)]
enum Func {
    Op(Op),
    Pow,
    Given,
}

/// Every function of the language: name, arity, meaning.
const FUNCTIONS: &[(&str, usize, Func)] = &[
    ("abs", 1, Func::Op(Op::Abs)),
    ("sign", 1, Func::Op(Op::Sign)),
    ("sqrt", 1, Func::Op(Op::Sqrt)),
    ("exp", 1, Func::Op(Op::Exp)),
    ("log", 1, Func::Op(Op::Log)),
    ("log1p", 1, Func::Op(Op::Log1p)),
    ("expm1", 1, Func::Op(Op::Expm1)),
    ("sin", 1, Func::Op(Op::Sin)),
    ("cos", 1, Func::Op(Op::Cos)),
    ("tanh", 1, Func::Op(Op::Tanh)),
    ("cosh", 1, Func::Op(Op::Cosh)),
    ("sigmoid", 1, Func::Op(Op::Sigmoid)),
    ("log_sigmoid", 1, Func::Op(Op::LogSigmoid)),
    ("softplus", 1, Func::Op(Op::Softplus)),
    ("relu", 1, Func::Op(Op::Relu)),
    ("square", 1, Func::Op(Op::Square)),
    ("stop_gradient", 1, Func::Op(Op::StopGradient)),
    ("pow", 2, Func::Pow),
    ("maximum", 2, Func::Op(Op::Max)),
    ("minimum", 2, Func::Op(Op::Min)),
    ("xlogy", 2, Func::Op(Op::Xlogy)),
    ("xlog1py", 2, Func::Op(Op::Xlog1py)),
    ("logaddexp", 2, Func::Op(Op::LogAddExp)),
    ("hypot", 2, Func::Op(Op::Hypot)),
    ("log1mexp", 1, Func::Op(Op::Log1mexp)),
    ("log_cosh", 1, Func::Op(Op::LogCosh)),
    ("straight_through", 2, Func::Op(Op::StraightThrough)),
    ("clamp", 3, Func::Op(Op::Clamp)),
    ("where", 3, Func::Op(Op::Where)),
    ("sum", 1, Func::Op(Op::RowSum)),
    ("mean", 1, Func::Op(Op::RowMean)),
    ("max", 1, Func::Op(Op::RowMax)),
    ("min", 1, Func::Op(Op::RowMin)),
    ("logsumexp", 1, Func::Op(Op::RowLogSumExp)),
    ("norm", 1, Func::Op(Op::RowNorm)),
    ("softmax", 1, Func::Op(Op::Softmax)),
    ("log_softmax", 1, Func::Op(Op::LogSoftmax)),
    ("batch_all", 1, Func::Op(Op::BatchAll)),
    ("batch_any", 1, Func::Op(Op::BatchAny)),
    ("batch_sum", 1, Func::Op(Op::BatchSum)),
    ("given", 1, Func::Given),
];

/// Names of every function, for completion and suggestions.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|(n, _, _)| *n)
}

/// Options that decide what a source text compiles to.
#[derive(Clone, Debug)]
pub struct LowerOptions<'a> {
    /// Compute type (constants are rounded and folded in it).
    pub dtype: Dtype,
    /// Scalar parameter values by name; names that are not scalar params are ignored here.
    pub params: &'a [(String, f64)],
}

/// What a name means at a point of the file.
#[derive(Clone, Copy, Debug)]
enum Binding {
    /// A value: an input, a parameter's constant, or a bound expression.
    Value(NodeId),
    /// An index target (input number); usable only in `[...]`, `==`, `!=`.
    Index(NodeId),
    /// An optional scalar parameter: its value and whether it was supplied.
    Optional(NodeId, bool),
}

struct Lowerer<'a> {
    graph: Graph,
    inputs: Vec<InputDecl>,
    params: Vec<ParamInfo>,
    scope: HashMap<String, (Binding, Span)>,
    diags: Vec<Diagnostic>,
    class_axis: bool,
    options: &'a LowerOptions<'a>,
    /// Nodes that depend on a pred (grows with the graph).
    pred_dep: Vec<bool>,
}

/// Lowers a parsed file. Returns the program without derivatives, or every error found.
pub fn lower(file: &ast::File, options: &LowerOptions<'_>) -> Result<Program, Vec<Diagnostic>> {
    let class_axis = file
        .stmts
        .iter()
        .any(|s| matches!(s, ast::Stmt::Header(h) if h.class_axis.is_some() && h.keyword.name != "reduce"));
    let mut lw = Lowerer {
        graph: Graph::new(options.dtype, Vec::new()),
        inputs: Vec::new(),
        params: Vec::new(),
        scope: HashMap::new(),
        diags: Vec::new(),
        class_axis,
        options,
        pred_dep: Vec::new(),
    };
    lw.declare_implicit(file);
    let mut reduce: Option<(ReduceMode, Option<NodeId>, Option<NodeId>, Span)> = None;
    let mut requires = Vec::new();
    let mut loss: Option<(NodeId, Span)> = None;
    let n_stmts = file.stmts.len();
    for (i, stmt) in file.stmts.iter().enumerate() {
        match stmt {
            ast::Stmt::Header(h) if h.keyword.name == "reduce" => {
                if let Some((_, _, _, prev)) = reduce {
                    lw.diags.push(
                        Diagnostic::error(h.span, "the reduction is given twice")
                            .with_secondary(prev, "first given here"),
                    );
                    continue;
                }
                if let Some(r) = lw.reduce_stmt(h) {
                    reduce = Some(r);
                }
            }
            ast::Stmt::Header(h) => lw.declare(h),
            ast::Stmt::Require { cond, message, span } => {
                if let Some(c) = lw.expr(cond) {
                    match lw.graph.constant(c) {
                        Some(v) if v != 0.0 => {}
                        Some(_) => lw.diags.push(
                            Diagnostic::error(*span, format!("requirement failed: {message}"))
                                .with_label("this condition is false for the given parameters"),
                        ),
                        None => requires.push(Requirement { cond: c, message: message.clone(), span: *span }),
                    }
                }
            }
            ast::Stmt::Let { name, value } => lw.bind(name, value),
            ast::Stmt::Expr(e) => {
                if i + 1 != n_stmts {
                    lw.diags.push(
                        Diagnostic::error(e.span, "only the last statement may be the loss expression")
                            .with_note("help: bind intermediate values to names (`e = p - y`)"),
                    );
                    continue;
                }
                if let Some(l) = lw.expr(e) {
                    loss = Some((l, e.span));
                }
            }
            ast::Stmt::Error(_) => {}
        }
    }
    let Some((loss, loss_span)) = loss else {
        if lw.diags.iter().all(|d| !d.is_error()) {
            let at = file.stmts.last().map_or(Span::default(), stmt_span);
            lw.diags.push(
                Diagnostic::error(at, "the file has no loss expression")
                    .with_note("help: end the file with the expression to minimise, e.g. `(p - y)^2`"),
            );
        }
        return Err(lw.diags);
    };
    let mut loss_kind = lw.graph.kind(loss).max(Kind::Row);
    if !lw.depends_on_pred(loss) {
        lw.diags
            .push(Diagnostic::warning(loss_span, "the loss does not depend on any pred, so every gradient is zero"));
    }
    let (mode, by, over) = match reduce {
        Some((m, by, over, _)) => (m, by, over),
        None => (ReduceMode::Mean, None, None),
    };
    for (what, w) in [("by", by), ("over", over)] {
        if let Some(w) = w {
            if lw.graph.kind(w) > loss_kind {
                let span = reduce.map_or(Span::default(), |r| r.3);
                lw.diags.push(
                    Diagnostic::error(
                        span,
                        format!("the `{what}` weight has one value per class but the loss has one per row"),
                    )
                    .with_note("help: reduce the weight over the class axis or make the loss per class"),
                );
            }
        }
    }
    if loss_kind == Kind::Class {
        loss_kind = Kind::Class;
    }
    let one = lw.graph.cst(1.0);
    let weight = by.unwrap_or(one);
    let over = over.unwrap_or(weight);
    for (n, input) in lw.inputs.iter().enumerate() {
        if !input.used && input.role != Role::VectorParam {
            let implicit = input.span == Span::default();
            if !implicit {
                lw.diags.push(Diagnostic::warning(input.span, format!("`{}` is declared but never used", input.name)));
            }
        }
        let _ = n;
    }
    if lw.graph.len() > MAX_NODES {
        lw.diags.push(Diagnostic::error(
            loss_span,
            format!("the loss is too large ({} graph nodes; the limit is {MAX_NODES})", lw.graph.len()),
        ));
    }
    if lw.diags.iter().any(Diagnostic::is_error) {
        // Warnings after errors are mostly their echoes.
        lw.diags.retain(Diagnostic::is_error);
        return Err(lw.diags);
    }
    let warnings = lw.diags;
    Ok(Program {
        graph: lw.graph,
        inputs: lw.inputs,
        params: lw.params,
        class_axis: lw.class_axis,
        loss,
        loss_kind,
        weight,
        over,
        reduce: mode,
        requires,
        derivs: Vec::new(),
        warnings,
        rewrites: Vec::new(),
        dtype: options.dtype,
    })
}

fn stmt_span(stmt: &ast::Stmt) -> Span {
    match stmt {
        ast::Stmt::Header(h) => h.span,
        ast::Stmt::Require { span, .. } | ast::Stmt::Error(span) => *span,
        ast::Stmt::Let { name, value } => name.span.to(value.span),
        ast::Stmt::Expr(e) => e.span,
    }
}

impl Lowerer<'_> {
    /// The bare-expression form: `p` is the pred and `y` the target when no pred is declared.
    fn declare_implicit(&mut self, file: &ast::File) {
        let headers: Vec<&ast::Header> =
            file.stmts.iter().filter_map(|s| if let ast::Stmt::Header(h) = s { Some(h) } else { None }).collect();
        if headers.iter().any(|h| h.keyword.name == "pred") {
            return;
        }
        let declared = |n: &str| headers.iter().any(|h| h.keyword.name != "reduce" && h.name.name == n);
        let bound = |n: &str| file.stmts.iter().any(|s| matches!(s, ast::Stmt::Let { name, .. } if name.name == n));
        for (name, role) in [("p", Role::Pred), ("y", Role::Target)] {
            if !declared(name) && !bound(name) {
                self.add_input(name, role, Layout::Scalar, None, Span::default());
            }
        }
    }

    fn add_input(&mut self, name: &str, role: Role, layout: Layout, default: Option<f64>, span: Span) -> NodeId {
        let n = u16::try_from(self.inputs.len()).unwrap_or(u16::MAX);
        let kind = if layout == Layout::Classes { Kind::Class } else { Kind::Row };
        self.inputs.push(InputDecl {
            name: name.to_string(),
            role,
            layout,
            default: default.map(|d| self.options.dtype.round(d)),
            used: false,
            span,
        });
        self.graph_input_kinds_push(kind);
        let id = self.graph.leaf(Op::Input(n), kind);
        let binding = if layout == Layout::Index { Binding::Index(id) } else { Binding::Value(id) };
        self.scope.insert(name.to_string(), (binding, span));
        id
    }

    fn graph_input_kinds_push(&mut self, kind: Kind) {
        // The graph keeps input kinds for later passes; rebuild it with the new list.
        let mut kinds: Vec<Kind> =
            (0..self.inputs.len().saturating_sub(1)).map(|i| self.graph.input_kind(i as u16)).collect();
        kinds.push(kind);
        self.graph.set_input_kinds(kinds);
    }

    fn check_new_name(&mut self, ident: &ast::Ident) -> bool {
        if let Some((_, prev)) = self.scope.get(&ident.name) {
            let prev = *prev;
            let mut d = Diagnostic::error(ident.span, format!("`{}` is already defined", ident.name))
                .with_label("defined again here");
            if prev != Span::default() {
                d = d.with_secondary(prev, "first defined here");
            } else {
                d = d.with_note(format!(
                    "note: `{}` is implicitly defined in a file without `pred` declarations",
                    ident.name
                ));
            }
            self.diags.push(d);
            return false;
        }
        if ident.name == "C" {
            self.diags.push(Diagnostic::error(ident.span, "`C` is the number of classes and cannot be redefined"));
            return false;
        }
        true
    }

    fn declare(&mut self, h: &ast::Header) {
        let kw = h.keyword.name.as_str();
        if !matches!(kw, "pred" | "target" | "param") {
            let mut d = Diagnostic::error(h.keyword.span, format!("`{kw}` does not start a statement"))
                .with_label("expected `pred`, `target`, `param` or `reduce`");
            if let Some(s) = suggest(kw, ["pred", "target", "param", "reduce"]) {
                d = d.with_note(format!("help: did you mean `{s}`?"));
            } else {
                d = d.with_note("help: an operator may be missing between two names (`a b` is not `a*b`)");
            }
            self.diags.push(d);
            return;
        }
        if let Some(e) = h.by.as_ref().or(h.over.as_ref()) {
            self.diags.push(Diagnostic::error(e.span, format!("`by` and `over` belong to `reduce`, not to `{kw}`")));
            return;
        }
        if let Some(ax) = &h.class_axis {
            if ax.name != "C" {
                // Reported, then declared as `[C]` so later uses do not cascade.
                self.diags
                    .push(Diagnostic::error(ax.span, format!("the class axis is written `[C]`, not `[{}]`", ax.name)));
            }
        }
        let index = match &h.ty {
            None => false,
            Some(t) if t.name == "index" && kw == "target" => true,
            Some(t) if t.name == "index" => {
                self.diags.push(Diagnostic::error(t.span, format!("only a target can be an index; a {kw} cannot")));
                return;
            }
            Some(t) => {
                self.diags.push(
                    Diagnostic::error(t.span, format!("unknown input type `{}`", t.name))
                        .with_note("help: the only input type is `index` (`target k: index`)"),
                );
                return;
            }
        };
        if index && h.class_axis.is_some() {
            self.diags.push(Diagnostic::error(h.span, "an index target holds one class per row and cannot have `[C]`"));
            return;
        }
        if let Some(q) = h.optional {
            if kw != "param" || h.class_axis.is_some() || h.default.is_some() {
                self.diags.push(Diagnostic::error(
                    q,
                    "only a scalar `param` without a default can be optional (`param NAME?`)",
                ));
                return;
            }
        }
        if kw == "pred" && h.default.is_some() {
            self.diags.push(Diagnostic::error(h.default.map_or(h.span, |d| d.1), "a pred cannot have a default value"));
            return;
        }
        if index && h.default.is_some() {
            self.diags.push(Diagnostic::error(h.span, "an index target cannot have a default value"));
            return;
        }
        if !self.check_new_name(&h.name) {
            return;
        }
        let name = h.name.name.as_str();
        let default = h.default.map(|d| d.0);
        match kw {
            "pred" => {
                let layout = if h.class_axis.is_some() { Layout::Classes } else { Layout::Scalar };
                self.add_input(name, Role::Pred, layout, None, h.span);
            }
            "target" => {
                let layout = if index {
                    Layout::Index
                } else if h.class_axis.is_some() {
                    Layout::Classes
                } else {
                    Layout::Scalar
                };
                self.add_input(name, Role::Target, layout, default, h.span);
            }
            _ if h.class_axis.is_some() => {
                self.add_input(name, Role::VectorParam, Layout::Classes, default, h.span);
            }
            _ => self.scalar_param(h, default),
        }
    }

    fn scalar_param(&mut self, h: &ast::Header, default: Option<f64>) {
        let name = h.name.name.clone();
        let supplied = self.options.params.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let optional = h.optional.is_some();
        let value = match (supplied, default) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) if optional => f64::NAN,
            (None, None) => {
                self.diags.push(Diagnostic::error(h.span, format!("parameter `{name}` has no value")).with_note(format!("help: give it on the command line as `{name}=VALUE`, or declare a default (`param {name} = VALUE`)")));
                f64::NAN
            }
        };
        let value = self.options.dtype.round(value);
        let id = self.graph.cst(value);
        let binding = if optional { Binding::Optional(id, supplied.is_some()) } else { Binding::Value(id) };
        self.scope.insert(name.clone(), (binding, h.span));
        self.params.push(ParamInfo { name, default, optional, value, span: h.span });
    }

    fn reduce_stmt(&mut self, h: &ast::Header) -> Option<(ReduceMode, Option<NodeId>, Option<NodeId>, Span)> {
        let Some(mode) = ReduceMode::from_name(&h.name.name) else {
            let names = ReduceMode::ALL.map(ReduceMode::name);
            let mut d = Diagnostic::error(h.name.span, format!("unknown reduction `{}`", h.name.name))
                .with_note(format!("help: the reductions are {}", names.join(", ")));
            if let Some(s) = suggest(&h.name.name, names) {
                d = d.with_label(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return None;
        };
        if h.class_axis.is_some() || h.ty.is_some() || h.optional.is_some() || h.default.is_some() {
            self.diags.push(Diagnostic::error(
                h.span,
                "`reduce` takes a mode and optional `by W` and `over D`, nothing else",
            ));
            return None;
        }
        let mut weight = |e: &Option<Expr>, what: &str| -> Option<NodeId> {
            let e = e.as_ref()?;
            let w = self.expr(e)?;
            if self.depends_on_pred(w) {
                self.diags.push(
                    Diagnostic::error(e.span, format!("the `{what}` weight depends on a pred"))
                        .with_note("help: weights may use only targets and parameters"),
                );
                return None;
            }
            Some(w)
        };
        let by = weight(&h.by, "by");
        let over = weight(&h.over, "over");
        Some((mode, by, over, h.span))
    }

    fn bind(&mut self, name: &ast::Ident, value: &Expr) {
        let Some(v) = self.expr(value) else {
            // Keep the name known so later uses do not report it again.
            let nan = self.graph.cst(f64::NAN);
            self.scope.entry(name.name.clone()).or_insert((Binding::Value(nan), name.span));
            return;
        };
        if !self.check_new_name(name) {
            return;
        }
        if FUNCTIONS.iter().any(|(f, _, _)| *f == name.name) {
            self.diags.push(Diagnostic::warning(
                name.span,
                format!("`{}` shadows the function of that name below this line", name.name),
            ));
        }
        self.scope.insert(name.name.clone(), (Binding::Value(v), name.span));
    }

    fn depends_on_pred(&mut self, id: NodeId) -> bool {
        let n = self.graph.len();
        for i in self.pred_dep.len()..n {
            let node = self.graph.node(NodeId(i as u32));
            let dep = match node.op {
                Op::Input(k) => self.inputs[k as usize].role == Role::Pred,
                _ => node.children().iter().any(|c| self.pred_dep[c.index()]),
            };
            self.pred_dep.push(dep);
        }
        self.pred_dep[id.index()]
    }

    fn mark_used(&mut self, id: NodeId) {
        if let Op::Input(k) = self.graph.node(id).op {
            self.inputs[k as usize].used = true;
        }
    }

    fn resolve(&mut self, name: &str, span: Span, allow_index: bool) -> Option<NodeId> {
        if let Some((binding, _)) = self.scope.get(name).copied() {
            return match binding {
                Binding::Value(id) | Binding::Optional(id, _) => {
                    self.mark_used(id);
                    Some(id)
                }
                Binding::Index(id) if allow_index => {
                    self.mark_used(id);
                    Some(id)
                }
                Binding::Index(_) => {
                    self.diags.push(Diagnostic::error(span, format!("the index target `{name}` can only be used inside `[...]` or compared with `==` / `!=`")).with_note(format!("help: to pick the target class of a row write `x[{name}]`")));
                    None
                }
            };
        }
        if name == "C" {
            if self.class_axis {
                return Some(self.graph.leaf(Op::NumClasses, Kind::Uniform));
            }
            self.diags
                .push(Diagnostic::error(span, "`C` is only defined when an input has a class axis (`pred x[C]`)"));
            return None;
        }
        let mut d = Diagnostic::error(span, format!("unknown name `{name}`"));
        let names: Vec<String> = self.scope.keys().cloned().collect();
        if let Some(s) = suggest(name, names.iter().map(String::as_str)) {
            d = d.with_label(format!("did you mean `{s}`?"));
        } else if FUNCTIONS.iter().any(|(f, _, _)| *f == name) {
            d = d.with_label(format!("`{name}` is a function; call it with parentheses"));
        } else if self.inputs.iter().all(|i| i.span == Span::default()) {
            d = d.with_note("note: a file without declarations may use only `p` (the prediction) and `y` (the target)");
        } else {
            d = d.with_note(format!("help: declare it first, e.g. `target {name}` or `param {name} = 1`"));
        }
        self.diags.push(d);
        None
    }

    /// Lowers an expression; `None` after reporting an error.
    fn expr(&mut self, e: &Expr) -> Option<NodeId> {
        self.expr_in(e, false)
    }

    fn expr_in(&mut self, e: &Expr, allow_index: bool) -> Option<NodeId> {
        match &e.kind {
            ExprKind::Number(v) => Some(self.graph.cst(*v)),
            ExprKind::Name(n) => self.resolve(n, e.span, allow_index),
            ExprKind::Error => None,
            ExprKind::Unary(op, a) => {
                let a = self.expr(a)?;
                Some(match op {
                    UnOp::Neg => self.graph.un(Op::Neg, a),
                    UnOp::Not => self.graph.un(Op::Not, a),
                })
            }
            ExprKind::Binary(op, a, b) => {
                let cmp_index = matches!(op, BinOp::Eq | BinOp::Ne);
                let (a, b) = (self.expr_in(a, cmp_index), self.expr_in(b, cmp_index));
                let (a, b) = (a?, b?);
                let op = match op {
                    BinOp::Or => Op::Or,
                    BinOp::And => Op::And,
                    BinOp::Lt => Op::Lt,
                    BinOp::Le => Op::Le,
                    BinOp::Gt => Op::Gt,
                    BinOp::Ge => Op::Ge,
                    BinOp::Eq => Op::Eq,
                    BinOp::Ne => Op::Ne,
                    BinOp::Add => Op::Add,
                    BinOp::Sub => Op::Sub,
                    BinOp::Mul => Op::Mul,
                    BinOp::Div => Op::Div,
                    BinOp::Pow => Op::Pow,
                };
                Some(self.graph.bin(op, a, b))
            }
            ExprKind::Index { base, index } => {
                let b = self.expr(base);
                let k = match &index.kind {
                    ExprKind::Name(n) => match self.scope.get(n).copied() {
                        Some((Binding::Index(id), _)) => {
                            self.mark_used(id);
                            Some(id)
                        }
                        Some(_) => {
                            self.diags.push(
                                Diagnostic::error(index.span, format!("`{n}` is not an index target"))
                                    .with_note(format!("help: declare it as `target {n}: index`")),
                            );
                            None
                        }
                        None => self.resolve(n, index.span, true),
                    },
                    _ => {
                        self.diags.push(Diagnostic::error(
                            index.span,
                            "the index in `x[...]` must be the name of a target declared `: index`",
                        ));
                        None
                    }
                };
                let (b, k) = (b?, k?);
                if self.graph.kind(b) != Kind::Class {
                    self.diags.push(Diagnostic::error(base.span, "only a row-valued expression can be indexed").with_label("this has one value per row").with_note("help: index a `[C]` input, a vector param or a row expression such as `log_softmax(z)`"));
                    return None;
                }
                Some(self.graph.bin(Op::Gather, b, k))
            }
            ExprKind::Call { func, args } => self.call(func, args, e.span),
        }
    }

    fn call(&mut self, func: &ast::Ident, args: &[Expr], span: Span) -> Option<NodeId> {
        if let Some((_, at)) = self.scope.get(&func.name) {
            let at = *at;
            self.diags.push(
                Diagnostic::error(func.span, format!("`{}` is a value here, not a function", func.name))
                    .with_secondary(at, "bound here"),
            );
            return None;
        }
        let Some((_, arity, meaning)) = FUNCTIONS.iter().find(|(n, _, _)| *n == func.name).copied() else {
            let mut d = Diagnostic::error(func.span, format!("unknown function `{}`", func.name));
            if let Some(s) = suggest(&func.name, function_names()) {
                d = d.with_label(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return None;
        };
        if args.len() != arity {
            let s = if arity == 1 { "" } else { "s" };
            self.diags.push(Diagnostic::error(
                span,
                format!("`{}` takes {arity} argument{s}, but {} were given", func.name, args.len()),
            ));
            return None;
        }
        if let Func::Given = meaning {
            let ExprKind::Name(n) = &args[0].kind else {
                self.diags.push(Diagnostic::error(args[0].span, "`given` takes the name of an optional parameter"));
                return None;
            };
            return match self.scope.get(n).copied() {
                Some((Binding::Optional(_, supplied), _)) => Some(self.graph.cst(if supplied { 1.0 } else { 0.0 })),
                Some(_) => {
                    self.diags.push(
                        Diagnostic::error(args[0].span, format!("`{n}` is not an optional parameter"))
                            .with_note(format!("help: declare it as `param {n}?`")),
                    );
                    None
                }
                None => self.resolve(n, args[0].span, false),
            };
        }
        let lowered: Vec<Option<NodeId>> = args.iter().map(|a| self.expr(a)).collect();
        let ids: Vec<NodeId> = lowered.into_iter().collect::<Option<Vec<_>>>()?;
        let op = match meaning {
            Func::Op(op) => op,
            Func::Pow => Op::Pow,
            Func::Given => return None,
        };
        if op.is_row_reduction() || matches!(op, Op::Softmax | Op::LogSoftmax) {
            if !self.class_axis {
                self.diags.push(
                    Diagnostic::error(
                        func.span,
                        format!("`{}` works over the class axis, but no input has one", func.name),
                    )
                    .with_note("help: declare a row-valued input such as `pred z[C]`"),
                );
                return None;
            }
            if self.graph.kind(ids[0]) != Kind::Class {
                self.diags.push(
                    Diagnostic::error(args[0].span, format!("`{}` needs a row-valued argument", func.name))
                        .with_label("this has one value per row"),
                );
                return None;
            }
        }
        if op.is_batch() && self.depends_on_pred(ids[0]) {
            self.diags.push(
                Diagnostic::error(args[0].span, format!("`{}` may use only targets and parameters", func.name))
                    .with_label("this depends on a pred"),
            );
            return None;
        }
        Some(self.graph.add(op, &ids))
    }
}
