//! Symbolic differentiation on the DAG: reverse mode for gradients, and the Hessian diagonal.
//!
//! Gradient nodes are added to the same graph and share its subexpressions.
//! Every walk goes over node indices (reverse order for adjoints, forward order for
//! the Hessian's tangents): no recursion, whatever the depth of the formula.
//!
//! Conventions (SPEC §1 Gradients): d|x|/dx = 0 at 0, relu'(0) = 0, `maximum`/`minimum`
//! split a tie's gradient equally, `clamp` passes none at its bounds, class-axis
//! `max`/`min` split ties evenly, `norm` of a zero row has gradient 0. An argument that
//! a select (`where`, `maximum`, `minimum`, `clamp`, `relu`) did not pick receives
//! exactly 0: adjoints that are selects with a zero branch are multiplied *inside*
//! the select (`through`), so an infinite or NaN partial in an unused branch never leaks.

use std::collections::HashMap;

use crate::diagnostic::Diagnostic;
use crate::ir::{Graph, Kind, NodeId, Op, MAX_NODES};
use crate::program::{Derivatives, Program, Role};

/// Adds the gradient (and, if asked, the Hessian diagonal) of the reduced loss
/// with respect to every pred to the program.
///
/// # Errors
/// When the derivative graph exceeds [`MAX_NODES`].
pub fn differentiate(prog: &mut Program, hessian: bool) -> Result<(), Diagnostic> {
    let g = &mut prog.graph;
    let upstream = g.leaf(Op::Seed, prog.loss_kind);
    // W·seed, pushed inside W's selects: a row that `by` masks gets exactly 0 even
    // when the seed is infinite (a mean over nothing).
    let seed = through(g, prog.weight, &mut |g, w| g.bin(Op::Mul, w, upstream));
    let preds: Vec<u16> =
        prog.inputs.iter().enumerate().filter(|(_, i)| i.role == Role::Pred).map(|(n, _)| n as u16).collect();
    let pred_nodes: Vec<NodeId> = preds.iter().map(|n| g.leaf(Op::Input(*n), g.input_kind(*n))).collect();
    let mut dep = Dependence::new(pred_nodes.clone());
    let adj = reverse(g, prog.loss, seed, &mut dep);
    let zero = g.cst(0.0);
    let mut derivs = Vec::new();
    for (n, node) in preds.iter().zip(&pred_nodes) {
        let grad = adj.get(node).copied().unwrap_or(zero);
        derivs.push(Derivatives { input: *n, grad, hess: None });
        if g.len() > MAX_NODES {
            return Err(too_large(g.len()));
        }
    }
    prog.derivs = derivs;
    if hessian {
        add_hessians(prog)?;
    }
    Ok(())
}

/// Adds the Hessian diagonal of every pred to a program that has its gradients
/// (from [`differentiate`]): the diagonal of the Jacobian of each gradient node.
/// `compile` calls it separately so that the gradient graph is stabilized first.
///
/// # Errors
/// When the derivative graph exceeds [`MAX_NODES`].
pub fn add_hessians(prog: &mut Program) -> Result<(), Diagnostic> {
    let g = &mut prog.graph;
    let zero = g.cst(0.0);
    for d in &mut prog.derivs {
        let p = g.leaf(Op::Input(d.input), g.input_kind(d.input));
        let mut dep_p = Dependence::tangents(vec![p]);
        let h = diag_derivative(g, d.grad, p, &mut dep_p);
        d.hess = Some(h.unwrap_or(zero));
        if g.len() > MAX_NODES {
            return Err(too_large(g.len()));
        }
    }
    Ok(())
}

fn too_large(n: usize) -> Diagnostic {
    Diagnostic::error_nowhere(format!("the derivative graph is too large ({n} nodes; the limit is {MAX_NODES})"))
}

/// Which nodes carry a derivative with respect to a set of pred nodes; grows with the graph.
struct Dependence {
    wrt: Vec<NodeId>,
    dep: Vec<bool>,
    /// Whether `hold` passes derivatives (the Hessian's tangents) or stops them (adjoints).
    hold_passes: bool,
}

impl Dependence {
    /// For reverse mode: `hold` stops derivatives.
    fn new(wrt: Vec<NodeId>) -> Dependence {
        Dependence { wrt, dep: Vec::new(), hold_passes: false }
    }

    /// For the Hessian's tangents: `hold` passes them.
    fn tangents(wrt: Vec<NodeId>) -> Dependence {
        Dependence { wrt, dep: Vec::new(), hold_passes: true }
    }

    fn get(&mut self, g: &Graph, id: NodeId) -> bool {
        for i in self.dep.len()..g.len() {
            let id = NodeId(i as u32);
            let node = g.node(id);
            let d = match node.op {
                _ if self.wrt.contains(&id) => true,
                Op::StopGradient => false,
                Op::Hold if !self.hold_passes => false,
                Op::StraightThrough => self.dep[node.args[1].index()],
                op if op.is_batch() => false,
                _ => node.children().iter().any(|c| self.dep[c.index()]),
            };
            self.dep.push(d);
        }
        self.dep.get(id.index()).copied().unwrap_or(false)
    }
}

/// Reverse mode from `root` with adjoint `seed`: the adjoint of every node that depends
/// on `dep`'s preds (only those nodes get an entry).
fn reverse(g: &mut Graph, root: NodeId, seed: NodeId, dep: &mut Dependence) -> HashMap<NodeId, NodeId> {
    let mut contribs: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    let mut adjoints = HashMap::new();
    if !dep.get(g, root) {
        return adjoints;
    }
    contribs.insert(root, vec![seed]);
    for i in (0..=root.index()).rev() {
        let v = NodeId(i as u32);
        let Some(list) = contribs.remove(&v) else { continue };
        let mut adj = list[0];
        for c in &list[1..] {
            adj = g.bin(Op::Add, adj, *c);
        }
        adjoints.insert(v, adj);
        let node = g.node(v);
        let parent_kind = g.kind(v);
        for (slot, child) in node.children().iter().enumerate() {
            if !dep.get(g, *child) {
                continue;
            }
            let Some(mut c) = local_adjoint(g, v, slot, adj) else { continue };
            if parent_kind == Kind::Class && g.kind(*child) < Kind::Class && node.op.is_elementwise() {
                // The child was broadcast over the classes of its row.
                c = g.un(Op::RowSum, c);
            }
            contribs.entry(*child).or_default().push(c);
        }
    }
    adjoints
}

/// Applies `f` to `t`, pushing it inside selects that have a zero branch (at any
/// depth, through sums and negations), so that the unselected side stays exactly 0
/// whatever `f` multiplies by. `f(where(c, a, b)) = where(c, f(a), f(b))` for every
/// elementwise `f`, so this changes no value where the partial is finite.
fn through(g: &mut Graph, t: NodeId, f: &mut dyn FnMut(&mut Graph, NodeId) -> NodeId) -> NodeId {
    if !has_zero_select(g, t) {
        return f(g, t);
    }
    let node = g.node(t);
    match node.op {
        Op::Where => {
            let [c, a, b] = node.args;
            let a = if g.constant(a) == Some(0.0) { a } else { through(g, a, f) };
            let b = if g.constant(b) == Some(0.0) { b } else { through(g, b, f) };
            g.select(c, a, b)
        }
        Op::Add => {
            let a = through(g, node.args[0], f);
            let b = through(g, node.args[1], f);
            g.bin(Op::Add, a, b)
        }
        Op::Neg => {
            let a = through(g, node.args[0], f);
            g.un(Op::Neg, a)
        }
        _ => f(g, t),
    }
}

/// True when `t` is a select with a zero branch, possibly under sums and negations.
fn has_zero_select(g: &Graph, t: NodeId) -> bool {
    let node = g.node(t);
    match node.op {
        Op::Where => {
            let [_, a, b] = node.args;
            g.constant(a) == Some(0.0) || g.constant(b) == Some(0.0) || has_zero_select(g, a) || has_zero_select(g, b)
        }
        Op::Add => has_zero_select(g, node.args[0]) || has_zero_select(g, node.args[1]),
        Op::Neg => has_zero_select(g, node.args[0]),
        _ => false,
    }
}

/// Σ_{j≠i} t_j for each class i, without cancellation where one t dominates: with T the
/// sum of the entries of largest magnitude and S the sum of the rest, S + (T − t_i) for
/// those entries (T − t_i is exact) and T + (S − t_i) for the others.
fn sum_of_others(g: &mut Graph, t: NodeId) -> NodeId {
    let zero = g.cst(0.0);
    let a = g.un(Op::Abs, t);
    let m = g.un(Op::RowMax, a);
    let at = g.bin(Op::Eq, a, m);
    let top = g.select(at, t, zero);
    let rest = g.select(at, zero, t);
    let big = g.un(Op::RowSum, top);
    let small = g.un(Op::RowSum, rest);
    let big_d = g.bin(Op::Sub, big, t);
    let on_top = g.bin(Op::Add, small, big_d);
    let small_d = g.bin(Op::Sub, small, t);
    let off_top = g.bin(Op::Add, big, small_d);
    g.select(at, on_top, off_top)
}

/// True when `t` is `softmax(x)` times a factor that is constant over each row (through
/// negations and products, a few levels deep), so that `t − softmax(x)·Σt` is exactly 0.
fn proportional_to_softmax(g: &Graph, t: NodeId, x: NodeId) -> bool {
    let mut t = t;
    for _ in 0..8 {
        let node = g.node(t);
        match node.op {
            Op::Softmax => return node.args[0] == x,
            Op::Neg => t = node.args[0],
            Op::Mul => {
                let [a, b, _] = node.args;
                t = match (g.kind(a) == Kind::Class, g.kind(b) == Kind::Class) {
                    (true, false) => a,
                    (false, true) => b,
                    _ => return false,
                };
            }
            _ => return false,
        }
    }
    false
}

/// For a product `x*y` where one factor is k times the other (see [`Graph::scale_of`]):
/// the slot of the scaled copy and k.
fn self_product(g: &Graph, x: NodeId, y: NodeId) -> Option<(usize, f64)> {
    if let Some(k) = g.scale_of(x, y) {
        return Some((0, k));
    }
    g.scale_of(y, x).map(|k| (1, k))
}

fn mul(g: &mut Graph, t: NodeId, p: NodeId) -> NodeId {
    through(g, t, &mut |g, t| g.bin(Op::Mul, p, t))
}

fn div(g: &mut Graph, t: NodeId, q: NodeId) -> NodeId {
    through(g, t, &mut |g, t| g.bin(Op::Div, t, q))
}

/// The contribution of adjoint (or tangent) `t` of node `v` to child `slot`:
/// the local partial derivative applied to `t`. `None` when the partial is 0.
fn local_adjoint(g: &mut Graph, v: NodeId, slot: usize, t: NodeId) -> Option<NodeId> {
    let node = g.node(v);
    let [x, y, z] = node.args;
    let zero = g.cst(0.0);
    Some(match (node.op, slot) {
        (Op::Neg, _) => g.un(Op::Neg, t),
        (Op::Abs, _) => {
            let s = g.un(Op::Sign, x);
            mul(g, t, s)
        }
        (Op::Sqrt, _) => {
            let two_v = {
                let two = g.cst(2.0);
                g.bin(Op::Mul, two, v)
            };
            div(g, t, two_v)
        }
        (Op::Exp, _) => mul(g, t, v),
        (Op::Log, _) => div(g, t, x),
        (Op::Log1p, _) => {
            let one = g.cst(1.0);
            let d = g.bin(Op::Add, one, x);
            div(g, t, d)
        }
        (Op::Expm1, _) => {
            let e = g.un(Op::Exp, x);
            mul(g, t, e)
        }
        (Op::Sin, _) => {
            let c = g.un(Op::Cos, x);
            mul(g, t, c)
        }
        (Op::Cos, _) => {
            let s = g.un(Op::Sin, x);
            let m = mul(g, t, s);
            g.un(Op::Neg, m)
        }
        (Op::Tanh, _) => {
            // 1 - tanh² as 1/cosh²: no cancellation where tanh rounds to ±1.
            let c = g.un(Op::Cosh, x);
            let c2 = g.un(Op::Square, c);
            div(g, t, c2)
        }
        (Op::Cosh, _) => {
            let s = g.un(Op::Sinh, x);
            mul(g, t, s)
        }
        // ∂/∂hi = ∂/∂lo = e^(hi + lo), the value itself.
        (Op::ExpDw, _) => mul(g, t, v),
        (Op::Sinh, _) => {
            let c = g.un(Op::Cosh, x);
            mul(g, t, c)
        }
        (Op::Sigmoid, _) => {
            // σ(x)σ(-x): accurate in both tails, unlike σ(1-σ).
            let nx = g.un(Op::Neg, x);
            let s = g.un(Op::Sigmoid, nx);
            let p = g.bin(Op::Mul, v, s);
            mul(g, t, p)
        }
        (Op::LogSigmoid, _) => {
            let nx = g.un(Op::Neg, x);
            let s = g.un(Op::Sigmoid, nx);
            mul(g, t, s)
        }
        (Op::Softplus, _) => {
            let s = g.un(Op::Sigmoid, x);
            mul(g, t, s)
        }
        (Op::Relu, _) => {
            let c = g.bin(Op::Gt, x, zero);
            g.select(c, t, zero)
        }
        (Op::Square, _) => {
            // (2t)·x rather than t·(2x): 2x overflows where the product does not.
            let two = g.cst(2.0);
            let t2 = mul(g, t, two);
            mul(g, t2, x)
        }
        (Op::Sign | Op::Not | Op::StopGradient, _) => return None,
        // Reached only by tangents (adjoints stop at a hold: `Dependence`).
        (Op::Hold, _) => t,
        (Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne | Op::And | Op::Or, _) => return None,
        (Op::Add, _) => t,
        (Op::Sub, 0) => t,
        (Op::Sub, _) => g.un(Op::Neg, t),
        // A product of a value with a scaled copy of itself, k·u·u (Huber's 0.5*(p − y)*(p − y)
        // after rule S39), is k·u² and takes the square's rule: (2k·t)·u to u, nothing through
        // the copy. The product rule would compute k·u·t twice, one of them by way of the copy.
        (Op::Mul, _) if let Some((copy, k)) = self_product(g, x, y) => {
            if slot == copy {
                return None;
            }
            let u = if copy == 0 { y } else { x };
            let two_k = 2.0 * k;
            let t2 = if two_k == 1.0 {
                t
            } else {
                let c = g.cst(two_k);
                mul(g, t, c)
            };
            mul(g, t2, u)
        }
        (Op::Mul, 0) => mul(g, t, y),
        (Op::Mul, _) => mul(g, t, x),
        (Op::Div, 0) => div(g, t, y),
        (Op::Div, _) => {
            // -(t/y)·v
            let q = div(g, t, y);
            let m = mul(g, q, v);
            g.un(Op::Neg, m)
        }
        (Op::Pow, 0) => {
            let one = g.cst(1.0);
            let e = g.bin(Op::Sub, y, one);
            let pw = g.bin(Op::Pow, x, e);
            let d = g.bin(Op::Mul, y, pw);
            mul(g, t, d)
        }
        (Op::Pow, _) => {
            let l = g.un(Op::Log, x);
            let d = g.bin(Op::Mul, v, l);
            mul(g, t, d)
        }
        (Op::Max | Op::Min, _) => {
            // The winner takes all; a tie splits evenly.
            let (me, other) = if slot == 0 { (x, y) } else { (y, x) };
            let wins = g.bin(if node.op == Op::Max { Op::Gt } else { Op::Lt }, me, other);
            let tie = g.bin(Op::Eq, me, other);
            let half = g.cst(0.5);
            let h = mul(g, t, half);
            let tie_part = g.select(tie, h, zero);
            g.select(wins, t, tie_part)
        }
        (Op::Xlogy | Op::Xlog1py, 0) => {
            // PyTorch: grad · xlogy(a != 0, b), so 0 where a = 0.
            let nz = g.bin(Op::Ne, x, zero);
            let l = g.un(if node.op == Op::Xlogy { Op::Log } else { Op::Log1p }, y);
            let m = mul(g, t, l);
            g.select(nz, m, zero)
        }
        (Op::Xlogy | Op::Xlog1py, _) => {
            // u/v (u/(1 + v) for xlog1py), and 0 where u = 0 (the value is 0 for every v).
            let nz = g.bin(Op::Ne, x, zero);
            let q = if node.op == Op::Xlogy {
                y
            } else {
                let one = g.cst(1.0);
                g.bin(Op::Add, one, y)
            };
            let m = mul(g, t, x);
            let d = div(g, m, q);
            g.select(nz, d, zero)
        }
        (Op::LogAddExp, _) => {
            // e^a/(e^a + e^b) = sigmoid(a − b); exactly 1/2 on the diagonal, which keeps
            // (±inf, ±inf) finite.
            let (me, other) = if slot == 0 { (x, y) } else { (y, x) };
            let tie = g.bin(Op::Eq, me, other);
            let d = g.bin(Op::Sub, me, other);
            let s = g.un(Op::Sigmoid, d);
            let half = g.cst(0.5);
            let w = g.select(tie, half, s);
            mul(g, t, w)
        }
        (Op::Hypot, _) => {
            let me = if slot == 0 { x } else { y };
            let is_zero = g.bin(Op::Eq, v, zero);
            let q = g.bin(Op::Div, me, v);
            let m = mul(g, t, q);
            g.select(is_zero, zero, m)
        }
        (Op::Log1mexp, _) => {
            // d/dx log(1 − e^x) = −1/expm1(−x), which overflows to −0 below −88.7 (f32) or
            // −709.8 (f64), where the derivative is still a subnormal; below −40 it is −e^x
            // to within e^x < 2^-57 relative, below half an f64 ulp. Both forms use what L6
            // lowers the value to (expm1(−x), exp(x)), so a kernel computes no other
            // exponential (not e^x/expm1(x), whose expm1(x) would be a third).
            let e = g.un(Op::Exp, x);
            let far = g.un(Op::Neg, e);
            let nx = g.un(Op::Neg, x);
            let emn = g.un(Op::Expm1, nx);
            let m1 = g.cst(-1.0);
            let r = g.bin(Op::Div, m1, emn);
            let lim = g.cst(-40.0);
            let c = g.bin(Op::Lt, x, lim);
            let q = g.select(c, far, r);
            mul(g, t, q)
        }
        (Op::LogCosh, _) => {
            let th = g.un(Op::Tanh, x);
            mul(g, t, th)
        }
        (Op::NllSoftmax, 0) => {
            // softmax(x) − onehot(k), with 1 − p_k written as Σ_{j≠k} p_j: no cancellation
            // where the target class is confident.
            let s = g.un(Op::Softmax, x);
            let ci = g.leaf(Op::ClassIndex, Kind::Class);
            let at = g.bin(Op::Eq, ci, y);
            let others = g.select(at, zero, s);
            let rest = g.un(Op::RowSum, others);
            let neg_rest = g.un(Op::Neg, rest);
            let d = g.select(at, neg_rest, s);
            mul(g, t, d)
        }
        (Op::NllSoftmax, _) => return None,
        (Op::StraightThrough, 0) => return None,
        (Op::StraightThrough, _) => t,
        (Op::Where, 0) => return None,
        (Op::Where, 1) => g.select(x, t, zero),
        (Op::Where, _) => g.select(x, zero, t),
        (Op::Clamp, 0) => {
            let above = g.bin(Op::Gt, x, y);
            let below = g.bin(Op::Lt, x, z);
            let inside = g.bin(Op::And, above, below);
            g.select(inside, t, zero)
        }
        (Op::Clamp, 1) => {
            let c = g.bin(Op::Lt, x, y);
            g.select(c, t, zero)
        }
        (Op::Clamp, _) => {
            let c = g.bin(Op::Gt, x, z);
            g.select(c, t, zero)
        }
        (Op::RowSum, _) => t,
        (Op::RowMean, _) => {
            let c = g.leaf(Op::NumClasses, Kind::Uniform);
            div(g, t, c)
        }
        (Op::RowMax | Op::RowMin, _) => {
            let at = g.bin(Op::Eq, x, v);
            let count = g.un(Op::RowSum, at);
            let share = div(g, t, count);
            g.select(at, share, zero)
        }
        (Op::RowLogSumExp, _) => {
            let s = g.un(Op::Softmax, x);
            mul(g, t, s)
        }
        (Op::RowNorm, _) => {
            // t·(x/norm): |x/norm| ≤ 1, so nothing overflows where the norm is tiny.
            let is_zero = g.bin(Op::Eq, v, zero);
            let q = g.bin(Op::Div, x, v);
            let m = mul(g, t, q);
            g.select(is_zero, zero, m)
        }
        (Op::Softmax, _) => {
            let tv = g.bin(Op::Mul, t, v);
            let s = g.un(Op::RowSum, tv);
            let d = g.bin(Op::Sub, t, s);
            g.bin(Op::Mul, v, d)
        }
        (Op::LogSoftmax, _) if proportional_to_softmax(g, t, x) => {
            // t = c·p with c constant over the row: t − p·Σt = c·p·(1 − Σp) is exactly 0 over
            // the reals. Computed, Σp − p_k for a confident class k is the rounding noise of
            // Σp (the entropy's gradient lost every digit there).
            return None;
        }
        (Op::LogSoftmax, _) => {
            // t − p·Σt, as t·(1 − p) − p·(Σt − t) with 1 − p = −expm1(log_softmax): no
            // cancellation where a class is confident (p ≈ 1) and t is one-hot. Σt − t
            // (the sum over the other classes) is summed without the row's largest t:
            // Σt − t cancels where one soft target dominates (t = 0.99: 7 bits lost).
            let s = g.un(Op::Softmax, x);
            let rest = sum_of_others(g, t);
            let m = g.bin(Op::Mul, s, rest);
            let em = g.un(Op::Expm1, v);
            let q = g.un(Op::Neg, em);
            let a = mul(g, t, q);
            g.bin(Op::Sub, a, m)
        }
        (Op::Gather, 0) => {
            let ci = g.leaf(Op::ClassIndex, Kind::Class);
            let at = g.bin(Op::Eq, ci, y);
            g.select(at, t, zero)
        }
        (Op::Gather, _) => return None,
        (Op::Const(_) | Op::Input(_) | Op::NumClasses | Op::ClassIndex | Op::Seed, _) => return None,
        (Op::BatchAll | Op::BatchAny | Op::BatchSum, _) => return None,
    })
}

/// ∂v_i/∂p_i for every element i (the diagonal of v's Jacobian with respect to `p`),
/// for `v` the gradient of the loss: the Hessian diagonal. `None` when it is 0.
///
/// Elementwise nodes take the chain rule forward; a node that mixes a row
/// (class-axis reductions, `x[k]`) takes the full gradient of its row value by
/// reverse mode, whose i-th entry is exactly ∂v/∂p_i.
fn diag_derivative(g: &mut Graph, target: NodeId, p: NodeId, dep: &mut Dependence) -> Option<NodeId> {
    let mut tangent: HashMap<NodeId, NodeId> = HashMap::new();
    let one = g.cst(1.0);
    for i in 0..=target.index() {
        let v = NodeId(i as u32);
        if !dep.get(g, v) {
            continue;
        }
        if v == p {
            tangent.insert(v, one);
            continue;
        }
        let node = g.node(v);
        let t = match node.op {
            op if op.is_row_reduction() || op == Op::Gather || op == Op::NllSoftmax => row_gradient(g, v, p),
            Op::LogSoftmax => log_softmax_tangent(g, node.args[0], p, &tangent),
            Op::Softmax => log_softmax_tangent(g, node.args[0], p, &tangent).map(|t| g.bin(Op::Mul, v, t)),
            _ => {
                let mut acc: Option<NodeId> = None;
                for (slot, child) in node.children().iter().enumerate() {
                    let Some(tc) = tangent.get(child).copied() else { continue };
                    let Some(c) = local_adjoint(g, v, slot, tc) else { continue };
                    acc = Some(match acc {
                        Some(a) => g.bin(Op::Add, a, c),
                        None => c,
                    });
                }
                acc
            }
        };
        if let Some(t) = t {
            tangent.insert(v, t);
        }
    }
    tangent.get(&target).copied()
}

fn row_gradient(g: &mut Graph, v: NodeId, p: NodeId) -> Option<NodeId> {
    let one = g.cst(1.0);
    let mut dep = Dependence::new(vec![p]);
    reverse(g, v, one, &mut dep).get(&p).copied()
}

fn log_softmax_tangent(g: &mut Graph, x: NodeId, p: NodeId, tangent: &HashMap<NodeId, NodeId>) -> Option<NodeId> {
    let lse = g.un(Op::RowLogSumExp, x);
    let t_lse = row_gradient(g, lse, p);
    match (tangent.get(&x).copied(), t_lse) {
        (Some(a), Some(b)) => Some(g.bin(Op::Sub, a, b)),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(g.un(Op::Neg, b)),
        (None, None) => None,
    }
}
