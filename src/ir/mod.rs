//! The expression graph: a hash-consed DAG of plain nodes in a `Vec`, addressed by `NodeId(u32)`.
//!
//! Invariant: children precede parents, so every pass walks node indices in order
//! (or in reverse) and never recurses. Constants are stored by canonical f64 bits so
//! `Eq`/`Hash` are sound. Building a node applies local simplifications that are exact
//! for every input, infinities and NaN included (see [`Graph::add`]).
//!
//! Invariant: `ir` knows nothing about Cranelift or the AST.

pub mod lower;
pub mod print;

use rustc_hash::FxHashMap;

use crate::math::{self, Real};

/// Index of a node in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// Placeholder for an unused child slot.
    pub const NONE: NodeId = NodeId(u32::MAX);

    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The compute type, which also decides how constants fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE single precision: every operation rounds to f32.
    F32,
    /// IEEE double precision.
    F64,
}

impl Dtype {
    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    /// Rounds `x` to this dtype (and back to f64).
    pub fn round(self, x: f64) -> f64 {
        match self {
            Dtype::F32 => f64::from(f32::from_f64(x)),
            Dtype::F64 => x,
        }
    }
}

/// How a value varies over the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One value for the whole call (constants, scalar params, `batch_*`).
    Uniform,
    /// One value per row (per element when no input has a class axis).
    Row,
    /// One value per class of each row.
    Class,
}

/// Operations. Arity is fixed per op (see [`Op::arity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A constant, by f64 bits (already rounded to the graph's dtype).
    Const(u64),
    /// Input number `n` of the program (pred, target or vector param).
    Input(u16),
    /// The number of classes `C` (known at call time).
    NumClasses,
    /// The class position 0..C of each element of a row.
    ClassIndex,
    /// The upstream gradient of each loss value (1/Σ D for mean, ...), supplied per call.
    Seed,
    /// `-x`
    Neg,
    /// `abs`
    Abs,
    /// `sign`
    Sign,
    /// `sqrt`
    Sqrt,
    /// `exp`
    Exp,
    /// `log`
    Log,
    /// `log1p`
    Log1p,
    /// `expm1`
    Expm1,
    /// `sin`
    Sin,
    /// `cos`
    Cos,
    /// `tanh`
    Tanh,
    /// `cosh`
    Cosh,
    /// `sinh` (internal: the derivative of `cosh`)
    Sinh,
    /// `sigmoid`
    Sigmoid,
    /// `log_sigmoid`
    LogSigmoid,
    /// `softplus`
    Softplus,
    /// `relu`
    Relu,
    /// `square`
    Square,
    /// `not`
    Not,
    /// `stop_gradient`: the value, no gradient.
    StopGradient,
    /// `hold(x)` (internal: a rewrite's derivative surrogate): the value of x, a constant to
    /// the gradient but not to the Hessian, whose tangents pass through it. A surrogate
    /// built with it has the gradient its rule writes down (`Σ a·hold(g)` differentiates
    /// to g), and, that gradient being exact as a function, the Jacobian of the gradient
    /// graph stays the true Hessian.
    Hold,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^` and `pow`
    Pow,
    /// `maximum`
    Max,
    /// `minimum`
    Min,
    /// `xlogy(a, b)`: 0 where a = 0 (and b is not NaN), else a·log b.
    Xlogy,
    /// `xlog1py(a, b)`: 0 where a = 0 (and b is not NaN), else a·log1p(b).
    Xlog1py,
    /// `logaddexp(a, b)` = log(e^a + e^b), without overflow.
    LogAddExp,
    /// `hypot(a, b)` = sqrt(a² + b²), without overflow or underflow.
    Hypot,
    /// `log1mexp(x)` = log(1 − e^x) for x ≤ 0 (NaN for x > 0).
    Log1mexp,
    /// `log_cosh(x)` = log(cosh(x)), accurate near 0 and finite where cosh overflows.
    LogCosh,
    /// `exp_dw(hi, lo)` = e^(hi + lo) for a double-word argument (internal: the row split's
    /// corrected exponentials, [`Graph::exp_dw`]): `hi ≤ 0` or NaN, `lo` the rounding error
    /// of a difference (finite, or NaN where the difference is not finite, then ignored).
    ExpDw,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `and`
    And,
    /// `or`
    Or,
    /// `straight_through(v, s)`: the value of v, the derivatives of s.
    StraightThrough,
    /// `where(c, a, b)`
    Where,
    /// `clamp(x, lo, hi)`
    Clamp,
    /// `sum` over the class axis.
    RowSum,
    /// `mean` over the class axis.
    RowMean,
    /// `max` over the class axis.
    RowMax,
    /// `min` over the class axis.
    RowMin,
    /// `logsumexp` over the class axis.
    RowLogSumExp,
    /// `norm` (L2) over the class axis.
    RowNorm,
    /// `softmax` of a row.
    Softmax,
    /// `log_softmax` of a row.
    LogSoftmax,
    /// `x[k]`: element k of each row; args (x, k).
    Gather,
    /// `nll_softmax(x, k)` = `−log_softmax(x)[k]`, computed as
    /// `(m − x[k]) + log1p(Σ_{j≠argmax} e^{x_j − m})` with m = max(x) (no cancellation);
    /// args (x, k), one value per row. Reads 0 where k is outside `[0, C)`, as `x[k]` does.
    NllSoftmax,
    /// `batch_all(c)`
    BatchAll,
    /// `batch_any(c)`
    BatchAny,
    /// `batch_sum(e)`
    BatchSum,
}

impl Op {
    /// Number of children.
    pub fn arity(self) -> usize {
        use Op::*;
        match self {
            Const(_) | Input(_) | NumClasses | ClassIndex | Seed => 0,
            Neg | Abs | Sign | Sqrt | Exp | Log | Log1p | Expm1 | Sin | Cos | Tanh | Cosh | Sinh | Sigmoid
            | LogSigmoid | Softplus | Relu | Square | Not | StopGradient | Hold | RowSum | RowMean | RowMax
            | RowMin | RowLogSumExp | RowNorm | Softmax | LogSoftmax | BatchAll | BatchAny | BatchSum | Log1mexp
            | LogCosh => 1,
            Add | Sub | Mul | Div | Pow | Max | Min | Xlogy | Lt | Le | Gt | Ge | Eq | Ne | And | Or
            | StraightThrough | Gather | Xlog1py | LogAddExp | Hypot | NllSoftmax | ExpDw => 2,
            Where | Clamp => 3,
        }
    }

    /// True for ops computed independently on each element.
    pub fn is_elementwise(self) -> bool {
        use Op::*;
        !matches!(
            self,
            Const(_)
                | Input(_)
                | NumClasses
                | ClassIndex
                | Seed
                | RowSum
                | RowMean
                | RowMax
                | RowMin
                | RowLogSumExp
                | RowNorm
                | Softmax
                | LogSoftmax
                | Gather
                | NllSoftmax
                | BatchAll
                | BatchAny
                | BatchSum
        )
    }

    /// True for the class-axis reductions (a row in, one value out).
    pub fn is_row_reduction(self) -> bool {
        matches!(self, Op::RowSum | Op::RowMean | Op::RowMax | Op::RowMin | Op::RowLogSumExp | Op::RowNorm)
    }

    /// True for the whole-call reductions.
    pub fn is_batch(self) -> bool {
        matches!(self, Op::BatchAll | Op::BatchAny | Op::BatchSum)
    }

    /// The function name as written in the language (operators included).
    pub fn name(self) -> &'static str {
        use Op::*;
        match self {
            Const(_) => "const",
            Input(_) => "input",
            NumClasses => "C",
            ClassIndex => "class_index",
            Seed => "seed",
            Neg => "-",
            Abs => "abs",
            Sign => "sign",
            Sqrt => "sqrt",
            Exp => "exp",
            Log => "log",
            Log1p => "log1p",
            Expm1 => "expm1",
            Sin => "sin",
            Cos => "cos",
            Tanh => "tanh",
            Cosh => "cosh",
            Sinh => "sinh",
            Sigmoid => "sigmoid",
            LogSigmoid => "log_sigmoid",
            Softplus => "softplus",
            Relu => "relu",
            Square => "square",
            Not => "not",
            StopGradient => "stop_gradient",
            Hold => "hold",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Pow => "^",
            Max => "maximum",
            Min => "minimum",
            Xlogy => "xlogy",
            Xlog1py => "xlog1py",
            LogAddExp => "logaddexp",
            Hypot => "hypot",
            Log1mexp => "log1mexp",
            LogCosh => "log_cosh",
            ExpDw => "exp_dw",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            Eq => "==",
            Ne => "!=",
            And => "and",
            Or => "or",
            StraightThrough => "straight_through",
            Where => "where",
            Clamp => "clamp",
            RowSum => "sum",
            RowMean => "mean",
            RowMax => "max",
            RowMin => "min",
            RowLogSumExp => "logsumexp",
            RowNorm => "norm",
            Softmax => "softmax",
            LogSoftmax => "log_softmax",
            Gather => "gather",
            NllSoftmax => "nll_softmax",
            BatchAll => "batch_all",
            BatchAny => "batch_any",
            BatchSum => "batch_sum",
        }
    }

    /// True when the op's value is always 0 or 1.
    pub fn is_boolean(self) -> bool {
        matches!(
            self,
            Op::Lt
                | Op::Le
                | Op::Gt
                | Op::Ge
                | Op::Eq
                | Op::Ne
                | Op::And
                | Op::Or
                | Op::Not
                | Op::BatchAll
                | Op::BatchAny
        )
    }
}

/// One node: an op and its children (unused slots hold [`NodeId::NONE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Children, `op.arity()` of them used.
    pub args: [NodeId; 3],
}

impl Node {
    /// The used children.
    pub fn children(&self) -> &[NodeId] {
        &self.args[..self.op.arity()]
    }
}

/// How deep `Graph::assume` looks into a select's branch for selects it decides.
const ASSUME_DEPTH: u32 = 3;

/// The nodes of [`Graph::row_split_parts`] for a class-valued `x`.
#[derive(Clone, Copy, Debug)]
pub struct RowSplit {
    /// max(x) (a row value).
    pub m: NodeId,
    /// e^(x − m) per class, rounding of x − m corrected (1 at a maximum).
    pub e: NodeId,
    /// Σ_c e^(x_c − m) − 1 ≥ 0 (a row value).
    pub total: NodeId,
    /// log1p(total): logsumexp(x) − m.
    pub l: NodeId,
    /// |m| < ∞.
    pub finite: NodeId,
}

/// The hash-consed DAG.
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Vec<Node>,
    kinds: Vec<Kind>,
    dedup: FxHashMap<Node, NodeId>,
    /// How constants fold.
    pub dtype: Dtype,
    /// Kind of each input, by input number.
    input_kinds: Vec<Kind>,
    /// Nodes a stability rule rewrote while keeping them inside its own result (a regime
    /// form keeps the matched expression as one branch), by rule name: that rule must not
    /// match them again (see `stabilize`).
    settled: Vec<(NodeId, &'static str)>,
}

/// Most nodes one graph may hold (source, gradients and Hessians together).
pub const MAX_NODES: usize = 1 << 20;

impl Graph {
    /// An empty graph whose inputs have the given kinds.
    pub fn new(dtype: Dtype, input_kinds: Vec<Kind>) -> Graph {
        Graph {
            nodes: Vec::new(),
            kinds: Vec::new(),
            dedup: FxHashMap::default(),
            dtype,
            input_kinds,
            settled: Vec::new(),
        }
    }

    /// An empty graph with the same dtype and input kinds (for passes that rebuild a graph).
    pub fn empty_like(&self) -> Graph {
        Graph::new(self.dtype, self.input_kinds.clone())
    }

    /// Marks `id` as already rewritten by `rule` (kept inside that rule's own result).
    pub(crate) fn settle(&mut self, id: NodeId, rule: &'static str) {
        if !self.is_settled(id, rule) {
            self.settled.push((id, rule));
        }
    }

    /// True when `rule` already rewrote `id` (see [`Graph::settle`]).
    pub(crate) fn is_settled(&self, id: NodeId, rule: &'static str) -> bool {
        self.settled.iter().any(|&(n, r)| n == id && r == rule)
    }

    /// The rules that already rewrote `id`.
    pub(crate) fn settled_rules(&self, id: NodeId) -> impl Iterator<Item = &'static str> + '_ {
        self.settled.iter().filter(move |(n, _)| *n == id).map(|(_, r)| *r)
    }

    /// The existing node `op(a, b)` of a binary op, as stored (no folding), if any.
    pub(crate) fn find_bin(&self, op: Op, a: NodeId, b: NodeId) -> Option<NodeId> {
        self.dedup.get(&Node { op, args: [a, b, NodeId::NONE] }).copied()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node.
    pub fn node(&self, id: NodeId) -> Node {
        self.nodes[id.index()]
    }

    /// All nodes in index order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// How the node's value varies.
    pub fn kind(&self, id: NodeId) -> Kind {
        self.kinds[id.index()]
    }

    /// Replaces the list of input kinds (lowering grows it as inputs are declared).
    pub(crate) fn set_input_kinds(&mut self, kinds: Vec<Kind>) {
        self.input_kinds = kinds;
    }

    /// Number of inputs the graph was built for.
    pub fn input_count(&self) -> usize {
        self.input_kinds.len()
    }

    /// Kind of input `n`.
    pub fn input_kind(&self, n: u16) -> Kind {
        self.input_kinds[n as usize]
    }

    /// The constant's value, if the node is one.
    pub fn constant(&self, id: NodeId) -> Option<f64> {
        match self.nodes[id.index()].op {
            Op::Const(bits) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    /// `Some(k)` when `x` is k·`y` over the reals for a constant k ≠ 0: `y` itself, or `y`
    /// under constant factors and negations, or `k*a − k*b` (rule S39's form) for `y = a − b`.
    pub fn scale_of(&self, x: NodeId, y: NodeId) -> Option<f64> {
        let mut x = x;
        let mut k = 1.0;
        for _ in 0..16 {
            if x == y {
                return Some(k);
            }
            let n = self.node(x);
            match n.op {
                Op::Neg => {
                    k = -k;
                    x = n.args[0];
                }
                Op::Mul => match (self.constant(n.args[0]), self.constant(n.args[1])) {
                    (Some(c), _) if c != 0.0 && c.is_finite() => {
                        k *= c;
                        x = n.args[1];
                    }
                    (_, Some(c)) if c != 0.0 && c.is_finite() => {
                        k *= c;
                        x = n.args[0];
                    }
                    _ => return None,
                },
                Op::Sub => {
                    let d = self.node(y);
                    if d.op != Op::Sub {
                        return None;
                    }
                    let scaled = |m: NodeId, want: NodeId| -> Option<f64> {
                        let t = self.node(m);
                        if t.op != Op::Mul {
                            return None;
                        }
                        match (self.constant(t.args[0]), self.constant(t.args[1])) {
                            (Some(c), _) if t.args[1] == want => Some(c),
                            (_, Some(c)) if t.args[0] == want => Some(c),
                            _ => None,
                        }
                    };
                    let k1 = scaled(n.args[0], d.args[0])?;
                    let k2 = scaled(n.args[1], d.args[1])?;
                    return (k1 == k2 && k1 != 0.0 && k1.is_finite()).then_some(k * k1);
                }
                _ => return None,
            }
        }
        None
    }

    /// A constant, rounded to the graph's dtype.
    pub fn cst(&mut self, x: f64) -> NodeId {
        let v = self.dtype.round(x);
        let v = if v.is_nan() { f64::NAN } else { v };
        self.intern(Node { op: Op::Const(v.to_bits()), args: [NodeId::NONE; 3] }, Kind::Uniform)
    }

    /// A leaf node (input, `C`, class index, seed of a given kind).
    pub fn leaf(&mut self, op: Op, kind: Kind) -> NodeId {
        self.intern(Node { op, args: [NodeId::NONE; 3] }, kind)
    }

    /// Unary op.
    pub fn un(&mut self, op: Op, a: NodeId) -> NodeId {
        self.add(op, &[a])
    }

    /// Binary op.
    pub fn bin(&mut self, op: Op, a: NodeId, b: NodeId) -> NodeId {
        self.add(op, &[a, b])
    }

    /// `where(c, a, b)`.
    pub fn select(&mut self, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
        self.add(Op::Where, &[c, a, b])
    }

    /// `a − b` as `(hi, lo)` with `hi + lo` exact (Knuth's TwoSum), node for node as
    /// `math::two_diff` computes it.
    pub fn two_diff(&mut self, a: NodeId, b: NodeId) -> (NodeId, NodeId) {
        let hi = self.bin(Op::Sub, a, b);
        let nb = self.un(Op::Neg, b);
        let bp = self.bin(Op::Sub, hi, a);
        let ap = self.bin(Op::Sub, hi, bp);
        let l1 = self.bin(Op::Sub, a, ap);
        let l2 = self.bin(Op::Sub, nb, bp);
        let lo = self.bin(Op::Add, l1, l2);
        (hi, lo)
    }

    /// e^(hi + lo) as `math::exp_dw` (`hi ≤ 0`: a difference from a row's max): one node,
    /// which the kernels compute as `exp` with `lo·(1 + r + h)` summed into its small terms
    /// before the one rounding and the scaling, so the correction never meets a subnormal
    /// number (`vecmath`).
    pub fn exp_dw(&mut self, hi: NodeId, lo: NodeId) -> NodeId {
        self.bin(Op::ExpDw, hi, lo)
    }

    /// The row split of `math::row_split`: `(m, log1p(s), m finite)` with m = max(x) and
    /// s = Σ_{x < m} e^(x − m) (each corrected by [`Graph::exp_dw`]) + (#{x = m} − 1).
    pub fn row_split(&mut self, x: NodeId) -> (NodeId, NodeId, NodeId) {
        let r = self.row_split_parts(x);
        (r.m, r.l, r.finite)
    }

    /// [`Graph::row_split`] with its intermediate nodes.
    pub fn row_split_parts(&mut self, x: NodeId) -> RowSplit {
        let zero = self.cst(0.0);
        let one = self.cst(1.0);
        let inf = self.cst(f64::INFINITY);
        let m = self.un(Op::RowMax, x);
        let below = self.bin(Op::Lt, x, m);
        let (hi, lo) = self.two_diff(x, m);
        let e = self.exp_dw(hi, lo);
        let terms = self.select(below, e, zero);
        let s = self.un(Op::RowSum, terms);
        let at = self.bin(Op::Eq, x, m);
        let ties = self.un(Op::RowSum, at);
        let extra = self.bin(Op::Sub, ties, one);
        let total = self.bin(Op::Add, s, extra);
        let l = self.un(Op::Log1p, total);
        let am = self.un(Op::Abs, m);
        let finite = self.bin(Op::Lt, am, inf);
        RowSplit { m, e, total, l, finite }
    }

    fn is_const(&self, id: NodeId, v: f64) -> bool {
        self.constant(id).is_some_and(|c| c == v && (c != 0.0 || c.is_sign_positive() == v.is_sign_positive()))
    }

    /// Adds a node after folding constants and applying exact local simplifications:
    /// `x+(-0)`, `x-0`, `x*1`, `x/1`, `x^1`, `--x`, `where` on a constant or equal branches
    /// (or a branch that is a `where` on the same condition),
    /// `stop_gradient` of a constant, row reductions of row-constant values.
    /// None of them changes a result for any input, infinities and NaN included
    /// (`x + 0` is applied only for `+0`… see the note on signed zeros in ARCHITECTURE.md).
    pub fn add(&mut self, op: Op, args: &[NodeId]) -> NodeId {
        debug_assert_eq!(args.len(), op.arity());
        if let Some(id) = self.simplify(op, args) {
            return id;
        }
        let mut slots = [NodeId::NONE; 3];
        slots[..args.len()].copy_from_slice(args);
        let kind = self.result_kind(op, args);
        self.intern(Node { op, args: slots }, kind)
    }

    fn result_kind(&self, op: Op, args: &[NodeId]) -> Kind {
        match op {
            _ if op.is_row_reduction() => Kind::Row,
            Op::Gather | Op::NllSoftmax => Kind::Row,
            Op::Softmax | Op::LogSoftmax => Kind::Class,
            _ if op.is_batch() => Kind::Uniform,
            _ => args.iter().map(|a| self.kind(*a)).max().unwrap_or(Kind::Uniform),
        }
    }

    /// `(d, k)` when `c` is `abs(d) < k` for a constant k.
    fn abs_bound(&self, c: NodeId) -> Option<(NodeId, f64)> {
        let n = self.node(c);
        if n.op != Op::Lt {
            return None;
        }
        let k = self.constant(n.args[1])?;
        let a = self.node(n.args[0]);
        (a.op == Op::Abs).then_some((a.args[0], k))
    }

    /// The truth of condition `c2` wherever condition `c` is `truth`, when that decides it:
    /// `c` itself, or `|d| < k1` against `|d| < k2` (true implies true for k1 ≤ k2; false —
    /// |d| ≥ k1 or NaN — implies false for k2 ≤ k1).
    fn decided(&self, c: NodeId, truth: bool, c2: NodeId) -> Option<bool> {
        if c2 == c {
            return Some(truth);
        }
        let (d1, k1) = self.abs_bound(c)?;
        let (d2, k2) = self.abs_bound(c2)?;
        match truth {
            _ if d1 != d2 => None,
            true if k1 <= k2 => Some(true),
            false if k2 <= k1 => Some(false),
            _ => None,
        }
    }

    /// `n` where condition `c` is `truth`: selects whose condition that decides take their
    /// branch, looked for through at most `depth` levels of arithmetic and selects (a bounded
    /// recursion, like `diff::through`'s). Returns `n` itself when nothing is decided.
    fn assume(&mut self, n: NodeId, c: NodeId, truth: bool, depth: u32) -> NodeId {
        let node = self.node(n);
        match node.op {
            Op::Where => {
                if let Some(t) = self.decided(c, truth, node.args[0]) {
                    let pick = if t { node.args[1] } else { node.args[2] };
                    return self.assume(pick, c, truth, depth);
                }
                if depth == 0 {
                    return n;
                }
                let x = self.assume(node.args[1], c, truth, depth - 1);
                let y = self.assume(node.args[2], c, truth, depth - 1);
                if (x, y) == (node.args[1], node.args[2]) {
                    n
                } else {
                    self.select(node.args[0], x, y)
                }
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Neg if depth > 0 => {
                let old = node.children();
                let new: Vec<NodeId> = old.iter().map(|a| self.assume(*a, c, truth, depth - 1)).collect();
                if new == old {
                    n
                } else {
                    self.add(node.op, &new)
                }
            }
            _ => n,
        }
    }

    fn simplify(&mut self, op: Op, args: &[NodeId]) -> Option<NodeId> {
        // (No allocation here: every node the rewriter builds passes through.)
        let mut consts = [None; 3];
        for (c, a) in consts.iter_mut().zip(args) {
            *c = self.constant(*a);
        }
        let consts = &consts[..args.len()];
        if op.is_elementwise() && !args.is_empty() && consts.iter().all(Option::is_some) {
            let mut c = [f64::NAN; 3];
            for (c, k) in c.iter_mut().zip(consts) {
                *c = k.unwrap_or(f64::NAN);
            }
            let v = match self.dtype {
                Dtype::F64 => fold::<f64>(op, &c[..args.len()]),
                Dtype::F32 => fold::<f32>(op, &c[..args.len()]),
            };
            return Some(self.cst(v));
        }
        let a = args.first().copied().unwrap_or(NodeId::NONE);
        let b = args.get(1).copied().unwrap_or(NodeId::NONE);
        match op {
            // x + (-0) and x - (+0) are x for every x, signed zeros included.
            Op::Add if self.is_const(b, -0.0) => Some(a),
            Op::Add if self.is_const(a, -0.0) => Some(b),
            Op::Add if self.node(b).op == Op::Neg => Some(self.bin(Op::Sub, a, self.node(b).args[0])),
            Op::Sub if self.is_const(b, 0.0) => Some(a),
            Op::Sub if self.node(b).op == Op::Neg => Some(self.bin(Op::Add, a, self.node(b).args[0])),
            Op::Mul if self.is_const(b, 1.0) => Some(a),
            Op::Mul if self.is_const(a, 1.0) => Some(b),
            Op::Mul if self.is_const(a, -1.0) => Some(self.un(Op::Neg, b)),
            Op::Mul if self.is_const(b, -1.0) => Some(self.un(Op::Neg, a)),
            // Constants first in products, for readable output.
            Op::Mul if consts[1].is_some() && consts[0].is_none() => Some(self.bin(Op::Mul, b, a)),
            Op::Div if self.is_const(b, 1.0) => Some(a),
            Op::Pow if self.is_const(b, 1.0) => Some(a),
            Op::Neg if self.node(a).op == Op::Neg => Some(self.node(a).args[0]),
            Op::StopGradient if consts[0].is_some() => Some(a),
            Op::Where => {
                let (x, y) = (args[1], args[2]);
                if let Some(cv) = consts[0] {
                    return Some(if math::is_true(cv) { x } else { y });
                }
                if x == y {
                    return Some(x);
                }
                // A select nested (through a little arithmetic) in a branch of one whose
                // condition decides it takes its branch: the same condition, or a bound on
                // the same |d| that the outer one implies (Huber's `|e| < 1` branch needs no
                // `|e| < inf` regime inside).
                let c = args[0];
                let x2 = self.assume(x, c, true, ASSUME_DEPTH);
                let y2 = self.assume(y, c, false, ASSUME_DEPTH);
                ((x2, y2) != (x, y)).then(|| self.select(c, x2, y2))
            }
            Op::RowSum | Op::RowMean | Op::RowMax | Op::RowMin | Op::RowNorm | Op::RowLogSumExp
                if self.kind(a) != Kind::Class =>
            {
                // The row holds C copies of the same value.
                Some(match op {
                    Op::RowSum => {
                        let c = self.leaf(Op::NumClasses, Kind::Uniform);
                        self.bin(Op::Mul, c, a)
                    }
                    Op::RowNorm => {
                        let c = self.leaf(Op::NumClasses, Kind::Uniform);
                        let s = self.un(Op::Sqrt, c);
                        let m = self.un(Op::Abs, a);
                        self.bin(Op::Mul, s, m)
                    }
                    Op::RowLogSumExp => {
                        let c = self.leaf(Op::NumClasses, Kind::Uniform);
                        let l = self.un(Op::Log, c);
                        self.bin(Op::Add, a, l)
                    }
                    _ => a,
                })
            }
            _ => None,
        }
    }

    fn intern(&mut self, node: Node, kind: Kind) -> NodeId {
        if let Some(id) = self.dedup.get(&node) {
            return *id;
        }
        // Graph size is limited by the caller (lowering and differentiation check
        // `len()` against MAX_NODES); u32 ids cannot overflow below that.
        let id = NodeId(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX - 1));
        self.nodes.push(node);
        self.kinds.push(kind);
        self.dedup.insert(node, id);
        id
    }
}

fn fold<T: Real>(op: Op, c: &[f64]) -> f64 {
    let a: Vec<T> = c.iter().map(|x| T::from_f64(*x)).collect();
    let v = match a.len() {
        1 => math::apply_unary(op, a[0]),
        2 => math::apply_binary(op, a[0], a[1]),
        _ => math::apply_ternary(op, a[0], a[1], a[2]),
    };
    v.to_f64()
}
