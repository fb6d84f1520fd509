//! Rewrites a program's graph into the form the code generator handles.
//!
//! Row maps and composite row reductions become elementwise ops around the three primitive
//! reductions the kernels accumulate (`sum`, `max`, `min`), with the interpreter's exact
//! algorithms: `softmax(x) = exp(x - lse(x))`, `log_softmax(x) = x - lse(x)`,
//! `lse(x) = s + log(sum(exp(x - s)))` with `s = max(x)` where finite, `mean = sum/C`, and
//! the scaled `norm`. `x[k]` is pushed through elementwise ops down to inputs (which the
//! kernel reads directly) and wrapped in a select that reads 0 on rows whose index is out of
//! range, as the language requires.

use std::collections::HashMap;

use crate::ir::{Dtype, Graph, Kind, NodeId, Op, RowSplit};

/// The prepared graph and the images of the requested roots.
pub(crate) struct Prepared {
    /// Only the nodes reachable from the roots, in the restricted op set.
    pub graph: Graph,
    /// `roots[i]` of the input, mapped.
    pub roots: Vec<NodeId>,
    /// The original node of each `batch_*` node (their values come from the pre-pass).
    pub origin: HashMap<NodeId, NodeId>,
}

/// Rebuilds the part of `g` reachable from `roots`. With `seed_uniform` the seed is one
/// number for the whole call (every reduction but `none`).
pub(crate) fn prepare(g: &Graph, roots: &[NodeId], seed_uniform: bool) -> Prepared {
    let kinds = (0..g.input_count()).map(|n| g.input_kind(n as u16)).collect();
    let mut out = Graph::new(g.dtype, kinds);
    let reach = super::codegen::reachable(g, roots.iter().copied());
    let mut map: Vec<NodeId> = vec![NodeId::NONE; g.len()];
    let mut gathers: HashMap<(NodeId, NodeId), NodeId> = HashMap::new();
    let mut origin = HashMap::new();
    // Class values divided by each row value: with two or more, one reciprocal per row
    // replaces divisions per class (`div_by_row`); with one, the row's reciprocal, range
    // test and branch cost about what they save at small C.
    let mut row_divisions = vec![0u32; g.len()];
    for i in (0..g.len()).filter(|i| reach[*i]) {
        let node = g.node(NodeId(i as u32));
        let [x, n, _] = node.args;
        if node.op == Op::Div && g.kind(x) == Kind::Class && g.kind(n) == Kind::Row {
            row_divisions[n.index()] += 1;
        }
    }
    for i in 0..g.len() {
        if !reach[i] {
            continue;
        }
        let id = NodeId(i as u32);
        let node = g.node(id);
        let args: Vec<NodeId> = node.children().iter().map(|c| map[c.index()]).collect();
        map[i] = match node.op {
            Op::Const(bits) => out.cst(f64::from_bits(bits)),
            Op::Seed if seed_uniform => out.leaf(Op::Seed, Kind::Uniform),
            Op::Input(_) | Op::NumClasses | Op::ClassIndex | Op::Seed => out.leaf(node.op, g.kind(id)),
            op if op.is_batch() => {
                let b = out.add(op, &args);
                origin.insert(b, id);
                b
            }
            // The value of v (`reachable` leaves s out).
            Op::StraightThrough => args[0],
            Op::Softmax => log_softmax_or_softmax(&mut out, args[0], true),
            Op::LogSoftmax => log_softmax(&mut out, args[0]),
            Op::RowLogSumExp => logsumexp(&mut out, args[0]),
            // Σ_{j≠k} softmax(x)_j (nll_softmax's gradient at the target class) from the
            // value's own row sum instead of one more pass over the row.
            Op::RowSum => match others_of_softmax(g, node.args[0]) {
                Some((x, k)) => softmax_others(&mut out, map[x.index()], map[k.index()], &mut gathers),
                None => out.add(Op::RowSum, &args),
            },
            // expm1(log_softmax(x)) = p − 1 (the log_softmax adjoint's factor) from the kept
            // exponential and the row sum, without a second transcendental per element.
            Op::Expm1 if g.node(node.args[0]).op == Op::LogSoftmax => {
                let x = g.node(node.args[0]).args[0];
                softmax_minus_one(&mut out, map[x.index()])
            }
            Op::RowMean => {
                let s = out.un(Op::RowSum, args[0]);
                let c = out.leaf(Op::NumClasses, Kind::Uniform);
                out.bin(Op::Div, s, c)
            }
            Op::RowNorm => norm(&mut out, args[0]),
            Op::Sigmoid | Op::Softplus | Op::LogSigmoid => logistic(&mut out, node.op, args[0]),
            // `math::pow`'s exact cases, decided at compile time when the exponent is constant.
            Op::Pow if out.constant(args[1]) == Some(2.0) => out.un(Op::Square, args[0]),
            Op::Pow if out.constant(args[1]) == Some(0.5) => out.un(Op::Sqrt, args[0]),
            // Other small integer and half-integer constants: products, a reciprocal and a
            // square root instead of `pow` per lane (see `power`).
            Op::Pow if let Some(c) = out.constant(args[1]).filter(|c| is_small_power(*c)) => {
                power(&mut out, args[0], c)
            }
            Op::Gather => {
                let k = args[1];
                let inner = gather(&mut out, args[0], k, &mut gathers);
                let zero = out.cst(0.0);
                let lo = out.bin(Op::Ge, k, zero);
                let c = out.leaf(Op::NumClasses, Kind::Uniform);
                let hi = out.bin(Op::Lt, k, c);
                let valid = out.bin(Op::And, lo, hi);
                out.select(valid, inner, zero)
            }
            Op::Add => add_selects(&mut out, args[0], args[1], false),
            Op::Sub => add_selects(&mut out, args[0], args[1], true),
            Op::Where => select_factored(&mut out, args[0], args[1], args[2]),
            // Class values over a row value: one reciprocal per row, products per class.
            Op::Div if row_divisions[node.args[1].index()] >= 2 && out.kind(args[0]) == Kind::Class => {
                div_by_row(&mut out, args[0], args[1])
            }
            op => out.add(op, &args),
        };
    }
    let roots = roots.iter().map(|r| map[r.index()]).collect();
    Prepared { graph: out, roots, origin }
}

/// `math::logsumexp`: `m + log1p(s)` where the max is finite, else `log(Σ e^x)`, which is
/// then exactly m itself (+inf with a +inf entry, -inf for a row of -inf, NaN with a NaN),
/// so the kernel spends no second exponential per element on that case.
fn logsumexp(g: &mut Graph, x: NodeId) -> NodeId {
    let (m, l, finite) = g.row_split(x);
    let split = g.bin(Op::Add, m, l);
    g.select(finite, split, m)
}

/// `math::log_softmax_row`: `(x − m) − log1p(s)`, and for softmax the exponential of that
/// with both differences' rounding errors corrected (which is also `x − logsumexp(x)` and
/// its exponential where the max is not finite).
fn log_softmax_or_softmax(g: &mut Graph, x: NodeId, softmax: bool) -> NodeId {
    let RowSplit { m, e, total, l, .. } = g.row_split_parts(x);
    let split = if softmax {
        // e^(x − m) / Σ e^(x − m), reusing the sum's exponentials (which the kernel keeps
        // from the pass that summed them): one exponential per element instead of two.
        // Within 2.5 ulps (e: 1, the reciprocal and the product: 0.5 each, 1 + total: 0.5);
        // the interpreter's e^((x − m) − l) is as close, but not bit for bit the same.
        let one = g.cst(1.0);
        let denom = g.bin(Op::Add, one, total);
        let inv = g.bin(Op::Div, one, denom);
        g.bin(Op::Mul, e, inv)
    } else {
        let d = g.bin(Op::Sub, x, m);
        g.bin(Op::Sub, d, l)
    };
    // Where the max is not finite, logsumexp is the max itself (see `logsumexp`), so the
    // interpreter's x − lse is −inf (x finite or −inf, m = +inf) or NaN (x = m = ±inf, or a
    // NaN), and its exponential 0 or NaN. The split gives the same without a select: there
    // x − m is −inf or NaN, `e` is 0 or NaN (exp_dw drops the NaN rounding term), and
    // `total` is finite (ties − 1), so `l` is finite and (x − m) − l keeps the −inf or NaN.
    split
}

/// `x / n` for a row value `n`: `x·(1/n)` where `1/n` is a normal number (one division per
/// row, products per class: a vector division issues 4–8 times slower than a product),
/// `x / n` elsewhere (|n| below the least normal, whose reciprocal overflows; above
/// 2^(emax − 1), whose reciprocal is subnormal; 0, ±inf, NaN). The optimized tier branches
/// on that row condition (`codegen`'s split passes), so a row computes one of the two.
/// Within one ulp of the quotient (two roundings: the reciprocal and the product).
fn div_by_row(g: &mut Graph, x: NodeId, n: NodeId) -> NodeId {
    let (min_normal, big) = match g.dtype {
        Dtype::F32 => (f64::from(f32::MIN_POSITIVE), 2f64.powi(126)),
        Dtype::F64 => (f64::MIN_POSITIVE, 2f64.powi(1022)),
    };
    let an = g.un(Op::Abs, n);
    let lo = g.cst(min_normal);
    let hi = g.cst(big);
    let above = g.bin(Op::Ge, an, lo);
    let below = g.bin(Op::Le, an, hi);
    let normal = g.bin(Op::And, above, below);
    let one = g.cst(1.0);
    let inv = g.bin(Op::Div, one, n);
    let fast = g.bin(Op::Mul, x, inv);
    let exact = g.bin(Op::Div, x, n);
    g.select(normal, fast, exact)
}

/// `(x, k)` when `w` is `where(class_index == k, 0, softmax(x))` with k an index input:
/// the terms of `nll_softmax`'s gradient at the target class, Σ_{j≠k} softmax(x)_j.
fn others_of_softmax(g: &Graph, w: NodeId) -> Option<(NodeId, NodeId)> {
    let n = g.node(w);
    if n.op != Op::Where || !is_plus_zero(g, n.args[1]) {
        return None;
    }
    let c = g.node(n.args[0]);
    if c.op != Op::Eq {
        return None;
    }
    let k = match (g.node(c.args[0]).op, g.node(c.args[1]).op) {
        (Op::ClassIndex, Op::Input(_)) => c.args[1],
        (Op::Input(_), Op::ClassIndex) => c.args[0],
        _ => return None,
    };
    let s = g.node(n.args[2]);
    (g.kind(k) == Kind::Row && s.op == Op::Softmax).then_some((s.args[0], k))
}

/// Σ_{j≠k} softmax(x)_j from the row split's own sum, without a pass over the row:
/// Σ_{j≠k} e^(x_j − m) is `total` (the sum over all but one maximum) when x_k is a maximum,
/// else `1 + (total − e_k)` (no cancellation: total includes e_k, and the result is ≥ 1).
/// Where the max is not finite, the sum of the others' 0 or NaN: 0 when k holds the row's
/// only maximum (or C = 1), else NaN.
fn softmax_others(g: &mut Graph, x: NodeId, k: NodeId, memo: &mut HashMap<(NodeId, NodeId), NodeId>) -> NodeId {
    let RowSplit { m, e, total, l: _, finite } = g.row_split_parts(x);
    let xk = gather(g, x, k, memo);
    let ek = gather(g, e, k, memo);
    let one = g.cst(1.0);
    let top = g.bin(Op::Eq, xk, m);
    let split = others_share(g, top, total, ek);
    // Where m is not finite, total is #{x ≥ m} − 1 (every exponential is 0 or NaN and
    // is left out), 0 exactly when one entry holds the maximum.
    let zero = g.cst(0.0);
    let unique = g.bin(Op::Eq, total, zero);
    let top_unique = g.bin(Op::And, top, unique);
    let c = g.leaf(Op::NumClasses, Kind::Uniform);
    let single = g.bin(Op::Eq, c, one);
    let zero_case = g.bin(Op::Or, single, top_unique);
    let nan = g.cst(f64::NAN);
    let plain = g.select(zero_case, zero, nan);
    g.select(finite, split, plain)
}

/// `expm1(log_softmax(x))`, that is p − 1 = −Σ_{j≠i} e^(x_j − m)/(1 + total): the sum of
/// the others is `total` at a maximum (where the corrected exponential e is exactly 1) and
/// `1 + (total − e)` elsewhere (no cancellation: total includes e, and the result is ≥ 1).
/// Where the max is not finite, e is 0 (giving −1, as expm1(−∞)) or NaN (giving NaN, as
/// expm1(NaN)), so no select on the max is needed.
fn softmax_minus_one(g: &mut Graph, x: NodeId) -> NodeId {
    let RowSplit { e, total, .. } = g.row_split_parts(x);
    let one = g.cst(1.0);
    let top = g.bin(Op::Eq, e, one);
    let q = others_share(g, top, total, e);
    g.un(Op::Neg, q)
}

/// Σ_{j≠i} e^(x_j − m)/(1 + total) for the entry with corrected exponential `e`: the sum of
/// the others is `total` where `top` (the entry is a maximum, e = 1) and `1 + (total − e)`
/// elsewhere, without cancellation.
fn others_share(g: &mut Graph, top: NodeId, total: NodeId, e: NodeId) -> NodeId {
    let one = g.cst(1.0);
    let denom = g.bin(Op::Add, one, total);
    let inv = g.bin(Op::Div, one, denom);
    let below = g.bin(Op::Sub, total, e);
    let plus_top = g.bin(Op::Add, one, below);
    let others = g.select(top, total, plus_top);
    g.bin(Op::Mul, others, inv)
}

fn log_softmax(g: &mut Graph, x: NodeId) -> NodeId {
    log_softmax_or_softmax(g, x, false)
}

/// `sigmoid`, `softplus` and `log_sigmoid` spelled around one shared `e = exp(−|x|)` (the
/// forms the inline math uses, stability.md L3/L4): `sigmoid = (x ≥ 0 ? 1 : e)·1/(1 + e)`,
/// `softplus = max(x, 0) + log1p(e)`, `log_sigmoid = −(log1p(e) − min(x, 0))`. A loss and its
/// gradient usually need two of them at the same x (softplus and its derivative sigmoid),
/// and hash-consing then computes the exponential once instead of twice.
fn logistic(g: &mut Graph, op: Op, x: NodeId) -> NodeId {
    let zero = g.cst(0.0);
    let one = g.cst(1.0);
    // |−y| is |y|: `sigmoid(−p)` next to `sigmoid(p)` shares its exponential too.
    let inner = if g.node(x).op == Op::Neg { g.node(x).args[0] } else { x };
    let ax = g.un(Op::Abs, inner);
    let nax = g.un(Op::Neg, ax);
    let e = g.un(Op::Exp, nax);
    match op {
        Op::Sigmoid => {
            // (x ≥ 0 ? 1 : e)·(1/(1 + e)): sigmoid(x) and sigmoid(−x) share the reciprocal
            // (within 1.5 ulps of the quotient, and never worse than e's own error).
            let pos = g.bin(Op::Ge, x, zero);
            let num = g.select(pos, one, e);
            let den = g.bin(Op::Add, one, e);
            let r = g.bin(Op::Div, one, den);
            g.bin(Op::Mul, num, r)
        }
        Op::Softplus => {
            let l = g.un(Op::Log1p, e);
            let pos = g.bin(Op::Lt, zero, x);
            let m = g.select(pos, x, zero);
            g.bin(Op::Add, m, l)
        }
        _ => {
            let l = g.un(Op::Log1p, e);
            let neg = g.bin(Op::Lt, x, zero);
            let m = g.select(neg, x, zero);
            let d = g.bin(Op::Sub, l, m);
            g.un(Op::Neg, d)
        }
    }
}

/// `math::norm`'s scaled form, `m·sqrt(Σ (x/m)²)` with m = max |x| (m itself where it is 0,
/// infinite or NaN), behind the plain `sqrt(Σ x²)` wherever that sum neither overflows nor
/// is small enough for underflowed squares to matter (≥ 2^-100 in f32, 2^-900 in f64: the
/// squares lost below the normal range are then below 2^-50 of the sum). Both are within
/// a few ulps. The scaled form reads |x| only where the plain form is out of range, so its
/// two passes over the row (the max, the scaled sum) come after the plain sum's and the
/// kernel runs them only on those rows (guarded passes, see `codegen`).
fn norm(g: &mut Graph, x: NodeId) -> NodeId {
    let zero = g.cst(0.0);
    let inf = g.cst(f64::INFINITY);
    let x2 = g.un(Op::Square, x);
    let s0 = g.un(Op::RowSum, x2);
    let tiny = g.cst(if g.dtype == Dtype::F32 { 2f64.powi(-100) } else { 2f64.powi(-900) });
    let big_enough = g.bin(Op::Ge, s0, tiny);
    let finite = g.bin(Op::Lt, s0, inf);
    let plain = g.bin(Op::And, big_enough, finite);
    let r0 = g.un(Op::Sqrt, s0);
    let ax = g.un(Op::Abs, x);
    let slow_ax = g.select(plain, zero, ax);
    let m = g.un(Op::RowMax, slow_ax);
    let pos = g.bin(Op::Gt, m, zero);
    let fin = g.bin(Op::Lt, m, inf);
    let ok = g.bin(Op::And, pos, fin);
    let q = g.bin(Op::Div, x, m);
    let q2 = g.un(Op::Square, q);
    let s = g.un(Op::RowSum, q2);
    let r = g.un(Op::Sqrt, s);
    let scaled = g.bin(Op::Mul, m, r);
    let slow = g.select(ok, scaled, m);
    g.select(plain, r0, slow)
}

/// `x[k]` with the gather pushed to the leaves: elementwise ops commute with it, values
/// that are the same for every class of a row are their own gather, and `class_index[k]` is k.
fn gather(g: &mut Graph, x: NodeId, k: NodeId, memo: &mut HashMap<(NodeId, NodeId), NodeId>) -> NodeId {
    if let Some(v) = memo.get(&(x, k)) {
        return *v;
    }
    let node = g.node(x);
    let v = if g.kind(x) != Kind::Class {
        x
    } else if node.op == Op::ClassIndex {
        k
    } else if node.op.is_elementwise() {
        let args: Vec<NodeId> = node.children().to_vec();
        let mapped: Vec<NodeId> = args.iter().map(|a| gather(g, *a, k, memo)).collect();
        g.add(node.op, &mapped)
    } else {
        // An input or the seed: the kernel loads element k of the row (0 when out of range).
        g.bin(Op::Gather, x, k)
    };
    memo.insert((x, k), v);
    v
}

/// `x + y` (or `x − y` with `sub`), merged into one select where both are selects on the
/// same condition (the adjoint of `where(c, a, b)` reaches an input once through each branch,
/// as `where(c, t, 0) + where(c, 0, u)`): one select instead of two and an addition.
///
/// Exact, signed zeros included. Write z(v) = v + 0 (−0 becomes +0, all else is unchanged);
/// then a + z(b) = z(a + b), z(a) − b = z(a − b) and 0 + b = z(b), so
/// `where(c, a, 0) + where(c, 0, b)` is z(`where(c, a, b)`), and in general the result is
/// z^f(`where(c, a₁ ± a₂, b₁ ± b₂)`) where both branches agree on f. The z is kept as an
/// addition of +0 that later merges see through. (a − z(b) is not z(a − b), nor is 0 − b
/// one operation: those are left as they are.)
fn add_selects(g: &mut Graph, x: NodeId, y: NodeId, sub: bool) -> NodeId {
    let merged = (|| {
        let (c, a1, b1, z1) = as_select(g, x)?;
        let (c2, a2, b2, z2) = as_select(g, y)?;
        if c != c2 || (sub && z2) {
            return None;
        }
        let (t, zt) = if sub { sub_branch(g, a1, a2)? } else { add_branch(g, a1, a2) };
        let (e, ze) = if sub { sub_branch(g, b1, b2)? } else { add_branch(g, b1, b2) };
        let (zt, ze) = (zt || z1 || z2, ze || z1 || z2);
        if zt != ze {
            return None;
        }
        let w = select_factored(g, c, t, e);
        Some(if zt {
            let zero = g.cst(0.0);
            g.bin(Op::Add, w, zero)
        } else {
            w
        })
    })();
    merged.unwrap_or_else(|| g.bin(if sub { Op::Sub } else { Op::Add }, x, y))
}

/// `a − b` as `(v, z)` with the difference = z^z(v), where that needs no new operation:
/// `a − (+0)` is a, `a − (−0)` is z(a), `(+0) − (+0)` is +0; `(+0) − b` (z(−b)) is `None`.
fn sub_branch(g: &mut Graph, a: NodeId, b: NodeId) -> Option<(NodeId, bool)> {
    if is_plus_zero(g, b) {
        Some((a, false))
    } else if is_minus_zero(g, b) {
        Some((a, true))
    } else if is_plus_zero(g, a) {
        None
    } else {
        Some((g.bin(Op::Sub, a, b), false))
    }
}

/// `(c, a, b, z)` when `n` is `where(c, a, b)` (z false) or `where(c, a, b) + 0` (z true).
fn as_select(g: &Graph, n: NodeId) -> Option<(NodeId, NodeId, NodeId, bool)> {
    let node = g.node(n);
    match node.op {
        Op::Where => Some((node.args[0], node.args[1], node.args[2], false)),
        Op::Add if is_plus_zero(g, node.args[1]) && g.node(node.args[0]).op == Op::Where => {
            let [c, a, b] = g.node(node.args[0]).args;
            Some((c, a, b, true))
        }
        _ => None,
    }
}

/// `a + b` as `(v, z)` with the sum = z^z(v): a +0 operand leaves z(the other), a −0 the
/// other exactly.
fn add_branch(g: &mut Graph, a: NodeId, b: NodeId) -> (NodeId, bool) {
    if is_plus_zero(g, a) {
        (b, true)
    } else if is_plus_zero(g, b) {
        (a, true)
    } else if is_minus_zero(g, a) {
        (b, false)
    } else if is_minus_zero(g, b) {
        (a, false)
    } else {
        (g.bin(Op::Add, a, b), false)
    }
}

fn is_plus_zero(g: &Graph, n: NodeId) -> bool {
    g.constant(n).is_some_and(|v| v == 0.0 && v.is_sign_positive())
}

fn is_minus_zero(g: &Graph, n: NodeId) -> bool {
    g.constant(n).is_some_and(|v| v == 0.0 && v.is_sign_negative())
}

/// `where(c, a, b)`, with a factor both branches multiply by taken out (exact: the select
/// picks which product is computed): `where(c, s*a, s*b) = s*where(c, a, b)`.
fn select_factored(g: &mut Graph, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
    let (na, nb) = (g.node(a), g.node(b));
    if na.op == Op::Mul && nb.op == Op::Mul {
        let [a0, a1, _] = na.args;
        let [b0, b1, _] = nb.args;
        let common = [(a0, a1, b0, b1), (a0, a1, b1, b0), (a1, a0, b0, b1), (a1, a0, b1, b0)]
            .into_iter()
            .find(|(s, _, t, _)| s == t);
        if let Some((s, ra, _, rb)) = common {
            let w = g.select(c, ra, rb);
            return g.bin(Op::Mul, s, w);
        }
    }
    g.select(c, a, b)
}

/// Exponents [`power`] spells out: multiples of ½ up to 3 in magnitude, other than the ones
/// `math::pow` and the code above treat exactly (0, ½, 1 and 2).
fn is_small_power(c: f64) -> bool {
    (2.0 * c).fract() == 0.0 && c.abs() <= 3.0 && ![0.0, 0.5, 1.0, 2.0].contains(&c)
}

/// `x^c` for an exponent of [`is_small_power`], within about 2 ulps of libm's `pow` and with
/// its special values: integer powers as products of `x` (or of `1/x` for negative `c`, so
/// that no intermediate underflows where the result does not); half-integer powers of
/// `x′ = where(x == −inf, inf, x + 0)` (`pow(−0, ±½)` is `+0`/`+inf` and `pow(−inf, ±½)` is
/// `+inf`/`+0`, while other negative `x` give NaN through the square root).
fn power(g: &mut Graph, x: NodeId, c: f64) -> NodeId {
    let half = c.fract() != 0.0;
    let x = if half {
        let ninf = g.cst(f64::NEG_INFINITY);
        let inf = g.cst(f64::INFINITY);
        let zero = g.cst(0.0);
        let is_ninf = g.bin(Op::Eq, x, ninf);
        let plus = g.bin(Op::Add, x, zero);
        g.select(is_ninf, inf, plus)
    } else {
        x
    };
    let one = g.cst(1.0);
    // |c| = n + ½·[half]: b^n with b = x or 1/x, times √x or 1/√x (not √(1/x): two roundings
    // before the root).
    let b = if c < 0.0 { g.bin(Op::Div, one, x) } else { x };
    let n = c.abs().trunc() as u32;
    let int_part = match n {
        0 => None,
        1 => Some(b),
        2 => Some(g.bin(Op::Mul, b, b)),
        _ => {
            let sq = g.bin(Op::Mul, b, b);
            Some(g.bin(Op::Mul, sq, b))
        }
    };
    let root = half.then(|| {
        let r = g.un(Op::Sqrt, x);
        if c < 0.0 {
            g.bin(Op::Div, one, r)
        } else {
            r
        }
    });
    match (int_part, root) {
        (Some(a), Some(r)) => g.bin(Op::Mul, a, r),
        (Some(a), None) => a,
        (None, Some(r)) => r,
        (None, None) => one,
    }
}
