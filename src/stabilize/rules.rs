//! The rule table: every canonicalization, stability rule and lowering, by name.
//!
//! Numbers follow stability.md §7 (S1–S35 stability rules, L1–L7 lowerings; S36–S39 and
//! L8–L10 continue the numbering); C1–C3 are canonicalizations, exact bit for bit. Each
//! rule is a small procedural matcher over the graph being rebuilt: its children are
//! already rewritten, constants are matched exactly (after folding in the dtype), and its
//! replacement is built with `Graph::add`.
//! Each rule has a soundness test and an accuracy test in `tests/stability.rs`, which
//! checks that every rule of the table is covered.

use crate::ir::{Graph, Kind, NodeId, Op};
use crate::stabilize::{Cx, Phase, Rule};

/// A rule as documentation: what `lossc check` and the docs list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's name.
    pub name: &'static str,
    /// Its number (`S7`, `C1`, `L1`, …).
    pub id: &'static str,
    /// Its phase.
    pub phase: Phase,
    /// `lhs → rhs`.
    pub summary: &'static str,
    /// Why the right side is better.
    pub reason: &'static str,
}

/// Every rule, in the order they are tried.
pub fn rule_table() -> Vec<RuleInfo> {
    rules()
        .iter()
        .map(|r| RuleInfo { name: r.name, id: r.id, phase: r.phase, summary: r.summary, reason: r.reason })
        .collect()
}

macro_rules! rule {
    ($name:literal, $id:literal, $phase:ident, $summary:literal, $reason:literal, $f:path) => {
        Rule { name: $name, id: $id, phase: Phase::$phase, summary: $summary, reason: $reason, apply: $f }
    };
}

/// The table (order matters: on one node the first rule that matches wins).
pub(crate) fn rules() -> &'static [Rule] {
    RULES
}

static RULES: &[Rule] = &[
    // Canonicalize: exact, bit for bit.
    rule!("pow-special", "C1", Canonicalize, "x^2 → square(x); x^0.5 → sqrt(x)", "one spelling for the patterns below", pow_special),
    rule!("neg-out", "C2", Canonicalize, "(-a)*b, a*(-b) → -(a*b); the same for /", "negations outermost, so -u patterns match", neg_out),
    rule!("neg-add", "C3", Canonicalize, "(-a) + b → b - a", "one spelling of differences", neg_add),
    // Stabilize: sigmoid / softplus family (§7 A).
    rule!("sigmoid", "S1", Stabilize, "1/(1+exp(-u)) → sigmoid(u); exp(u)/(1+exp(u)) → sigmoid(u); c/(1+exp(u)) → c*sigmoid(-u)", "exp overflows to inf (inf/inf is NaN) and 1 + exp(u) absorbs small exp", sigmoid),
    rule!("one-minus-sigmoid", "S2", Stabilize, "1 - sigmoid(u) → sigmoid(-u)", "1 - sigmoid(u) cancels to 0 for u > 16.6 (f32) / 36.7 (f64)", one_minus_sigmoid),
    rule!("log-sigmoid", "S3", Stabilize, "log(sigmoid(u)) → log_sigmoid(u)", "sigmoid underflows to 0 (log gives -inf) and rounds to 1 (log gives 0)", log_sigmoid),
    rule!("log1p-neg-sigmoid", "S4", Stabilize, "log1p(-sigmoid(u)) → log_sigmoid(-u)", "sigmoid rounds to 1 for large u: log1p(-1) = -inf", log1p_neg_sigmoid),
    rule!("sigmoid-power", "S15", Stabilize, "sigmoid(u)^g (0<g<1) → where(u < 0, exp(g*u)*(1 + exp(u))^-g, (1 + exp(-u))^-g)", "sigmoid(u) underflows below -745 (f64) / -104 (f32) while sigmoid(u)^g does not, and its derivative is 0^(g-1)*0 = NaN there", sigmoid_power),
    rule!("sigmoid-odds", "S16", Stabilize, "sigmoid(u)/sigmoid(-u) → exp(u)", "both factors saturate: 1/0 or 0/0", sigmoid_odds),
    rule!("exp-log-sigmoid", "S20", Stabilize, "exp(log_sigmoid(u)) → sigmoid(u); exp(-softplus(u)) → sigmoid(-u)", "one fused op instead of an exp of a rounded logarithm", exp_log_sigmoid),
    rule!("exp-times-sigmoid", "S22", Stabilize, "exp(u)*sigmoid(-u) → sigmoid(u)", "exp overflows to inf while sigmoid(-u) is 0: inf*0 is NaN", exp_times_sigmoid),
    rule!("sigmoid-cancel", "S35", Stabilize, "(sigmoid(u)*b)/sigmoid(u) → b", "sigmoid underflows to 0: 0/0 is NaN", sigmoid_cancel),
    // log1p / expm1 / log-sum-exp (§7 A).
    rule!("softmax-cross-entropy", "S30", Stabilize, "-log_softmax(x)[k], logsumexp(x) - x[k], log(softmax(x)[k]) → nll_softmax(x, k)", "lse - x[k] cancels when the loss is small next to |x|; nll_softmax adds two terms >= 0 and keeps tiny losses with log1p; its gradient for the target class is -sum of the other probabilities, not softmax - 1", softmax_cross_entropy),
    rule!("log-softmax", "S12", Stabilize, "log(softmax(x)) → log_softmax(x); x - logsumexp(x) → log_softmax(x); exp(log_softmax(x)) → softmax(x)", "softmax underflows to 0 (log gives -inf)", log_softmax),
    rule!("logsumexp", "S10", Stabilize, "log(sum(exp(x))) → logsumexp(x)", "exp overflows (inf) or every term underflows (log 0 = -inf); logsumexp shifts by the row max", logsumexp),
    rule!("log-exp-ratio", "S24", Stabilize, "log(exp(a)/b) → a - log(b); log(1/u) → -log(u)", "exp(a) overflows and 1/u overflows or underflows", log_exp_ratio),
    rule!("logaddexp", "S9", Stabilize, "log(exp(a) + exp(b) + …) → logaddexp(a, logaddexp(b, …))", "exp overflows or underflows before the log", logaddexp),
    rule!("logdiffexp", "S13", Stabilize, "log(exp(a) - exp(b)) → where(b == -inf, a, a + log1mexp(b - a))", "exp overflows or underflows, and the difference cancels", logdiffexp),
    rule!("log-cosh", "S26", Stabilize, "log(cosh(u)) → log_cosh(u)", "cosh overflows for |u| > 89 (f32) / 710 (f64), and log(cosh(u)) loses its digits near 0 (cosh(u) rounds to 1)", log_cosh),
    rule!("softplus", "S7", Stabilize, "log1p(exp(u)) → softplus(u)", "exp overflows to inf for u > 88.7 (f32) / 709.8 (f64)", softplus),
    rule!("log1mexp", "S8", Stabilize, "log1p(-exp(u)) → log1mexp(u); log(-expm1(u)) → log1mexp(u)", "each form loses its digits on one side of -ln 2", log1mexp),
    rule!("log-exp", "S18", Stabilize, "log(exp(u)) → u; log1p(expm1(u)) → u", "exp overflows or underflows", log_exp),
    rule!("log1p-difference", "S28", Stabilize, "log1p(a) - log1p(b) → where(-0.5 <= q < inf, log1p(q), log((1 + a)/(1 + b))), q = (a - b)/(1 + b), as one log, with the derivatives of the left side", "the difference cancels when a ≈ b and keeps a few ulps of two logs near 20 at larger ratios (MSLE); log1p((a - b)/(1 + b)) keeps the digits, and the regime keeps 1 + q away from 0", log1p_difference),
    rule!("kl-term", "S28", Stabilize, "p*log(p/q) → where(q/2 <= p and p <= 2q, p*log1p((p-q)/q), xlogy(p, p/q)), with the derivatives of -xlogy(p, q) (-p/q) where p is data (then with one log for both: of 1 + (p-q)/q plus its rounding error over it, or of p/q)", "log(p/q) loses its digits when p ≈ q; p = 0 gives 0*(-inf) = NaN; the gradient -p/q needs neither regime", kl_term),
    rule!("log1p", "S5", Stabilize, "log(1 + u) → log1p(u); log(1 - u) → log1p(-u)", "1 + u absorbs a small u", log1p),
    rule!("xlogy", "S14", Stabilize, "u*log(v) → xlogy(u, v); u*log1p(v) → xlog1py(u, v) (u data: no pred)", "u = 0 with v = 0 gives 0*(-inf) = NaN; the limit is 0", xlogy),
    rule!("expm1", "S6", Stabilize, "exp(u) - 1 → expm1(u); 1 - exp(u) → -expm1(u)", "exp(u) - 1 cancels for small u", expm1),
    rule!("one-minus-cos", "S25", Stabilize, "1 - cos(u) → 2*square(sin(0.5*u))", "1 - cos(u) cancels for small u", one_minus_cos),
    rule!("softplus-minus-self", "S29", Stabilize, "softplus(u) - u → softplus(-u); u - softplus(u) → log_sigmoid(u)", "the difference cancels for large u", softplus_minus_self),
    rule!("softmax", "S11", Stabilize, "exp(x)/sum(exp(x)) → softmax(x)", "exp overflows (inf/inf) or every term underflows (0/0)", softmax),
    rule!("hypot", "S27", Stabilize, "sqrt(a^2 + b^2) → hypot(a, b); sqrt(sum(x^2)) → norm(x)", "the squares overflow or underflow", hypot),
    rule!("square-times-exp", "S21", Stabilize, "square(a)*exp(b) → square(a*exp(0.5*b))", "square(a) overflows or exp(b) under/overflows while the product does not (inf*0 is NaN)", square_times_exp),
    rule!("cosine", "S27", Stabilize, "sum(a*b)/(norm(a)*norm(b)) → sum((a/norm(a))*(b/norm(b)))", "the dot product and the product of norms overflow or underflow", cosine),
    rule!("one-minus-cosine", "S25", Stabilize, "1 - sum((a/norm(a))*(b/norm(b))) → 0.5*sum(square(a/norm(a) - b/norm(b)))", "the cosine of nearly parallel vectors rounds to 1 and 1 - cos keeps only its rounding error; |â - b̂|²/2 has no cancellation", one_minus_cosine),
    rule!("sqrt-square", "S23", Stabilize, "sqrt(square(u)) → abs(u)", "the square overflows or underflows", sqrt_square),
    rule!("halve-square", "S39", Stabilize, "c*(a + b) → c*a + c*b; c*square(u) → (c*u)*u (c = ±2^-k, k ≥ 1)", "the sum or the square overflows where the scaled result does not (0.5*(s + (y - mu)^2*exp(-s)) near the largest float); scaling by a power of two is exact, so nothing else changes", halve_square),
    rule!("split-difference", "S36", Stabilize, "(a - b)*c → where(abs(a - b) < inf, (a - b)*c, a*c - b*c) (a, b inputs)", "a - b overflows to inf for inputs near the largest float while (a - b)*c is finite (inf*0 is NaN)", split_difference),
    // Gradient safety (§7 D), derivative graphs only.
    rule!("select-sink", "S34", Gradient, "a*where(c, 0, b) → where(c, 0, a*b); the same for / and the other branch", "an inf or NaN factor times the unselected 0 gives NaN", select_sink),
    rule!("sigmoid-xlogx", "S37", Gradient, "a*(sigmoid(u)*(b*log_sigmoid(u))) → (sigmoid(u)*log_sigmoid(u))*(a*b): in a product, sigmoid(u) and log_sigmoid(u) first", "log_sigmoid(u) reaches -|u|, and its product with the other factors overflows before sigmoid(u) = 0 multiplies it (inf*0 is NaN); sigmoid(u)*log_sigmoid(u) is bounded by 1/e", sigmoid_xlogx),
    rule!("reuse-product", "S38", Gradient, "a*(b*c) → (a*b)*c where a*b is already computed; a*where(k, b*c, e) → where(k, (a*b)*c, a*e)", "the adjoint's order multiplies large factors first (b*c overflows) where the value's own product a*b is moderate", reuse_product),
    rule!("halve-product", "S40", Gradient, "c*(a*b) → where(abs(a*b) < inf, c*(a*b), (c*a)*b) where b is a multiple of a (c = ±2^-k, 1 ≤ k ≤ 64); also in a select's branch", "an adjoint's a*b is a square in disguise (t*(t*seed)) that overflows where the scaled product c*a*b does not; scaling by a power of two is exact, and c*a cannot underflow where a*b overflowed", halve_product),
    // Lowerings (§7 E), bit for bit as math.rs computes the fused ops.
    rule!("lower-softplus", "L1", Lower, "softplus(x) → maximum(x, 0) + log1p(exp(-abs(x)))", "primitive ops only", lower_softplus),
    rule!("lower-log-sigmoid", "L2", Lower, "log_sigmoid(x) → minimum(x, 0) - log1p(exp(-abs(x)))", "primitive ops only", lower_log_sigmoid),
    rule!("lower-sigmoid", "L3", Lower, "sigmoid(x) → where(x >= 0, 1/(1 + exp(-x)), exp(x)/(1 + exp(x)))", "primitive ops only", lower_sigmoid),
    rule!("lower-logaddexp", "L4", Lower, "logaddexp(a, b) → where(a == b, a + ln2, maximum(a, b) + log1p(exp(-abs(a - b))))", "primitive ops only", lower_logaddexp),
    rule!("lower-log1mexp", "L6", Lower, "log1mexp(x) → where(x > -ln2, log(expm1(-x)) + x, log1p(-exp(x)))", "primitive ops only", lower_log1mexp),
    rule!("lower-xlogy", "L7", Lower, "xlogy(u, v) → where(u == 0 and v == v, 0, u*log(v)); xlog1py likewise", "primitive ops only", lower_xlogy),
    rule!("lower-log-cosh", "L8", Lower, "log_cosh(x) → where(|x| < 1, l, (|x| - ln2) + l), l = log1p(where(|x| < 1, e*e/(2*(1 + e)), 1/(1 + e)^2)), e = expm1(|x|)", "primitive ops only", lower_log_cosh),
    rule!("lower-hypot", "L9", Lower, "hypot(a, b) → m*sqrt(1 + square(n/m)), m/n the larger/smaller magnitude", "primitive ops only", lower_hypot),
    rule!("lower-nll-softmax", "L10", Lower, "nll_softmax(x, k) → (m - x[k]) + log1p(sum(where(x < m, exp(x - m), 0)) + (sum(x == m) - 1)), m = max(x)", "primitive and row ops only", lower_nll_softmax),
];

// ---------------------------------------------------------------------------------------
// Matching helpers.

fn op(g: &Graph, id: NodeId) -> Op {
    g.node(id).op
}

fn arg(g: &Graph, id: NodeId, i: usize) -> NodeId {
    g.node(id).args[i]
}

/// The argument of a unary node of that op.
fn un(g: &Graph, id: NodeId, want: Op) -> Option<NodeId> {
    (op(g, id) == want).then(|| arg(g, id, 0))
}

/// The arguments of a binary node of that op.
fn bin(g: &Graph, id: NodeId, want: Op) -> Option<(NodeId, NodeId)> {
    (op(g, id) == want).then(|| (arg(g, id, 0), arg(g, id, 1)))
}

fn is_const(g: &Graph, id: NodeId, v: f64) -> bool {
    g.constant(id) == Some(v)
}

/// `w` where `id` is `1 + w` or `w + 1`.
fn one_plus(g: &Graph, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(g, id, Op::Add)?;
    if is_const(g, a, 1.0) {
        Some(b)
    } else if is_const(g, b, 1.0) {
        Some(a)
    } else {
        None
    }
}

/// True when `a` is `-b` (or `b` is `-a`).
fn is_neg_of(g: &Graph, a: NodeId, b: NodeId) -> bool {
    un(g, a, Op::Neg) == Some(b) || un(g, b, Op::Neg) == Some(a)
}

fn neg(g: &mut Graph, a: NodeId) -> NodeId {
    g.un(Op::Neg, a)
}

// ---------------------------------------------------------------------------------------
// Canonicalize.

fn pow_special(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (x, e) = bin(cx.g, id, Op::Pow)?;
    if is_const(cx.g, e, 2.0) {
        Some(cx.g.un(Op::Square, x))
    } else if is_const(cx.g, e, 0.5) {
        Some(cx.g.un(Op::Sqrt, x))
    } else {
        None
    }
}

fn neg_out(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let o = op(cx.g, id);
    if !matches!(o, Op::Mul | Op::Div) {
        return None;
    }
    let (a, b) = (arg(cx.g, id, 0), arg(cx.g, id, 1));
    let (a, b) = match (un(cx.g, a, Op::Neg), un(cx.g, b, Op::Neg)) {
        (Some(a), Some(b)) => return Some(cx.g.bin(o, a, b)),
        (Some(a), None) => (a, b),
        (None, Some(b)) => (a, b),
        (None, None) => return None,
    };
    let m = cx.g.bin(o, a, b);
    Some(neg(cx.g, m))
}

fn neg_add(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Add)?;
    let a = un(cx.g, a, Op::Neg)?;
    Some(cx.g.bin(Op::Sub, b, a))
}

// ---------------------------------------------------------------------------------------
// Sigmoid / softplus family.

fn sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (n, d) = bin(cx.g, id, Op::Div)?;
    let w = one_plus(cx.g, d)?;
    let u = un(cx.g, w, Op::Exp)?;
    if n == w {
        return Some(cx.g.un(Op::Sigmoid, u));
    }
    let nu = neg(cx.g, u);
    let s = cx.g.un(Op::Sigmoid, nu);
    if is_const(cx.g, n, 1.0) {
        Some(s)
    } else {
        Some(cx.g.bin(Op::Mul, n, s))
    }
}

fn one_minus_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (one, s) = bin(cx.g, id, Op::Sub)?;
    if !is_const(cx.g, one, 1.0) {
        return None;
    }
    let u = un(cx.g, s, Op::Sigmoid)?;
    let nu = neg(cx.g, u);
    Some(cx.g.un(Op::Sigmoid, nu))
}

fn log_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let s = un(cx.g, id, Op::Log)?;
    let u = un(cx.g, s, Op::Sigmoid)?;
    Some(cx.g.un(Op::LogSigmoid, u))
}

fn log1p_neg_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let n = un(cx.g, id, Op::Log1p)?;
    let s = un(cx.g, n, Op::Neg)?;
    let u = un(cx.g, s, Op::Sigmoid)?;
    let nu = neg(cx.g, u);
    Some(cx.g.un(Op::LogSigmoid, nu))
}

fn sigmoid_power(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    // sqrt(sigmoid(u)) is sigmoid(u)^0.5 after canonicalization.
    let (s, e) = match un(cx.g, id, Op::Sqrt) {
        Some(s) => (s, cx.g.cst(0.5)),
        None => bin(cx.g, id, Op::Pow)?,
    };
    let u = un(cx.g, s, Op::Sigmoid)?;
    let gamma = cx.g.constant(e)?;
    if !(gamma > 0.0 && gamma < 1.0) {
        return None;
    }
    // sigmoid(u)^g = (1 + exp(-u))^-g = exp(g*u)*(1 + exp(u))^-g: the first for u >= 0,
    // the second for u < 0, so that no exp overflows and the derivative's factors stay in
    // range (sigmoid(u) itself underflows below -745 while its power may not). exp(g*u) is
    // exact up to its own rounding where g*u is (g = 1/2, 1/4, ...).
    let t = 0.0;
    let g = &mut *cx.g;
    let t = g.cst(t);
    let one = g.cst(1.0);
    let below = g.bin(Op::Lt, u, t);
    let ng = g.un(Op::Neg, e);
    let gu = g.bin(Op::Mul, e, u);
    let egu = g.un(Op::Exp, gu);
    let eu = g.un(Op::Exp, u);
    let w_tail = g.bin(Op::Add, one, eu);
    let p_tail = g.bin(Op::Pow, w_tail, ng);
    let tail = g.bin(Op::Mul, egu, p_tail);
    let nu = neg(g, u);
    let enu = g.un(Op::Exp, nu);
    let w = g.bin(Op::Add, one, enu);
    let body = g.bin(Op::Pow, w, ng);
    Some(g.select(below, tail, body))
}

fn sigmoid_odds(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Div)?;
    let u = un(cx.g, a, Op::Sigmoid)?;
    let v = un(cx.g, b, Op::Sigmoid)?;
    if !is_neg_of(cx.g, u, v) {
        return None;
    }
    Some(cx.g.un(Op::Exp, u))
}

fn exp_log_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::Exp)?;
    if let Some(u) = un(cx.g, x, Op::LogSigmoid) {
        return Some(cx.g.un(Op::Sigmoid, u));
    }
    let sp = un(cx.g, x, Op::Neg)?;
    let u = un(cx.g, sp, Op::Softplus)?;
    let nu = neg(cx.g, u);
    Some(cx.g.un(Op::Sigmoid, nu))
}

fn exp_times_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Mul)?;
    for (e, s) in [(a, b), (b, a)] {
        let (Some(u), Some(v)) = (un(cx.g, e, Op::Exp), un(cx.g, s, Op::Sigmoid)) else { continue };
        if is_neg_of(cx.g, u, v) {
            return Some(cx.g.un(Op::Sigmoid, u));
        }
    }
    None
}

fn sigmoid_cancel(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (m, d) = bin(cx.g, id, Op::Div)?;
    un(cx.g, d, Op::Sigmoid)?;
    let (a, b) = bin(cx.g, m, Op::Mul)?;
    if a == d {
        Some(b)
    } else if b == d {
        Some(a)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// log1p / expm1 / log-sum-exp.

fn softplus(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let e = un(cx.g, id, Op::Log1p)?;
    let u = un(cx.g, e, Op::Exp)?;
    Some(cx.g.un(Op::Softplus, u))
}

fn log1mexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    if let Some(n) = un(cx.g, id, Op::Log1p) {
        let e = un(cx.g, n, Op::Neg)?;
        let u = un(cx.g, e, Op::Exp)?;
        return Some(cx.g.un(Op::Log1mexp, u));
    }
    let n = un(cx.g, id, Op::Log)?;
    let e = un(cx.g, n, Op::Neg)?;
    let u = un(cx.g, e, Op::Expm1)?;
    Some(cx.g.un(Op::Log1mexp, u))
}

fn log1p(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::Log)?;
    if let Some(u) = one_plus(cx.g, x) {
        return Some(cx.g.un(Op::Log1p, u));
    }
    let (one, u) = bin(cx.g, x, Op::Sub)?;
    if !is_const(cx.g, one, 1.0) {
        return None;
    }
    let nu = neg(cx.g, u);
    Some(cx.g.un(Op::Log1p, nu))
}

fn expm1(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    match op(g, id) {
        Op::Sub => {
            let (a, b) = (arg(g, id, 0), arg(g, id, 1));
            if is_const(g, b, 1.0) {
                let u = un(g, a, Op::Exp)?;
                return Some(g.un(Op::Expm1, u));
            }
            if is_const(g, a, 1.0) {
                let u = un(g, b, Op::Exp)?;
                let e = g.un(Op::Expm1, u);
                return Some(neg(g, e));
            }
            None
        }
        Op::Add => {
            let (a, b) = (arg(g, id, 0), arg(g, id, 1));
            let e = if is_const(g, a, -1.0) {
                b
            } else if is_const(g, b, -1.0) {
                a
            } else {
                return None;
            };
            let u = un(g, e, Op::Exp)?;
            Some(g.un(Op::Expm1, u))
        }
        _ => None,
    }
}

/// Leaves of a tree of `+` (at most 16), in order.
fn add_leaves(g: &Graph, id: NodeId, out: &mut Vec<NodeId>) -> bool {
    let mut stack = vec![id];
    while let Some(t) = stack.pop() {
        if let Some((a, b)) = bin(g, t, Op::Add) {
            stack.push(b);
            stack.push(a);
        } else {
            out.push(t);
        }
        if out.len() + stack.len() > 16 {
            return false;
        }
    }
    true
}

fn logaddexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let s = un(cx.g, id, Op::Log)?;
    let mut leaves = Vec::new();
    if op(cx.g, s) != Op::Add || !add_leaves(cx.g, s, &mut leaves) {
        return None;
    }
    let args: Option<Vec<NodeId>> = leaves.iter().map(|l| un(cx.g, *l, Op::Exp)).collect();
    let args = args?;
    let mut acc = args[0];
    for a in &args[1..] {
        acc = cx.g.bin(Op::LogAddExp, acc, *a);
    }
    Some(acc)
}

fn logdiffexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let d = un(cx.g, id, Op::Log)?;
    let (ea, eb) = bin(cx.g, d, Op::Sub)?;
    let a = un(cx.g, ea, Op::Exp)?;
    let b = un(cx.g, eb, Op::Exp)?;
    let g = &mut *cx.g;
    let ninf = g.cst(f64::NEG_INFINITY);
    let none = g.bin(Op::Eq, b, ninf);
    let diff = g.bin(Op::Sub, b, a);
    let l = g.un(Op::Log1mexp, diff);
    let s = g.bin(Op::Add, a, l);
    Some(g.select(none, a, s))
}

fn logsumexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let s = un(cx.g, id, Op::Log)?;
    let e = un(cx.g, s, Op::RowSum)?;
    let x = un(cx.g, e, Op::Exp)?;
    Some(cx.g.un(Op::RowLogSumExp, x))
}

fn softmax(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (n, d) = bin(cx.g, id, Op::Div)?;
    let x = un(cx.g, n, Op::Exp)?;
    let e = un(cx.g, d, Op::RowSum)?;
    if e != n || cx.g.kind(x) != Kind::Class {
        return None;
    }
    Some(cx.g.un(Op::Softmax, x))
}

fn log_softmax(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    if let Some(s) = un(g, id, Op::Log) {
        let x = un(g, s, Op::Softmax)?;
        return Some(g.un(Op::LogSoftmax, x));
    }
    if let Some(l) = un(g, id, Op::Exp) {
        let x = un(g, l, Op::LogSoftmax)?;
        return Some(g.un(Op::Softmax, x));
    }
    let (x, l) = bin(g, id, Op::Sub)?;
    if un(g, l, Op::RowLogSumExp) == Some(x) && g.kind(x) == Kind::Class {
        return Some(g.un(Op::LogSoftmax, x));
    }
    None
}

fn log_exp_ratio(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let q = un(cx.g, id, Op::Log)?;
    let (n, d) = bin(cx.g, q, Op::Div)?;
    if is_const(cx.g, n, 1.0) {
        let l = cx.g.un(Op::Log, d);
        return Some(neg(cx.g, l));
    }
    let a = un(cx.g, n, Op::Exp)?;
    let l = cx.g.un(Op::Log, d);
    Some(cx.g.bin(Op::Sub, a, l))
}

/// `x[k]` with the gather pushed down through elementwise ops to the class-valued
/// leaves (`f(x)[k]` → `f(x[k])`), as a user writes `exp(s[k]/tau)` next to
/// `sum(exp(s/tau))`. `None` when `x` is too deep.
fn push_gather(g: &mut Graph, x: NodeId, k: NodeId, depth: usize) -> Option<NodeId> {
    if g.kind(x) != Kind::Class {
        return Some(x);
    }
    let node = g.node(x);
    if !node.op.is_elementwise() || depth == 0 {
        return Some(g.bin(Op::Gather, x, k));
    }
    let mut args = Vec::with_capacity(3);
    for c in node.children() {
        args.push(push_gather(g, *c, k, depth - 1)?);
    }
    Some(g.add(node.op, &args))
}

/// The index target of the first `x[k]` in `a` (a short search).
fn find_gather_index(g: &Graph, a: NodeId) -> Option<NodeId> {
    let mut stack = vec![a];
    let mut steps = 0;
    while let Some(t) = stack.pop() {
        steps += 1;
        if steps > 64 {
            return None;
        }
        let node = g.node(t);
        if node.op == Op::Gather {
            return Some(node.args[1]);
        }
        stack.extend(node.children().iter().copied());
    }
    None
}

/// True when `a` is `x[k]`, up to pushing the gather through elementwise ops.
fn gathers(g: &mut Graph, a: NodeId, x: NodeId) -> Option<NodeId> {
    let k = find_gather_index(g, a)?;
    let pushed = push_gather(g, x, k, 16)?;
    (pushed == a).then_some(k)
}

fn softmax_cross_entropy(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    match op(g, id) {
        Op::Gather => {
            let (ls, k) = bin(g, id, Op::Gather)?;
            let x = un(g, ls, Op::LogSoftmax)?;
            let n = g.bin(Op::NllSoftmax, x, k);
            Some(neg(g, n))
        }
        Op::Log => {
            let gath = un(g, id, Op::Log)?;
            let (s, k) = bin(g, gath, Op::Gather)?;
            let x = un(g, s, Op::Softmax)?;
            let n = g.bin(Op::NllSoftmax, x, k);
            Some(neg(g, n))
        }
        Op::Sub => {
            let (a, b) = bin(g, id, Op::Sub)?;
            if let Some(x) = un(g, a, Op::RowLogSumExp) {
                let k = gathers(g, b, x)?;
                return Some(g.bin(Op::NllSoftmax, x, k));
            }
            let x = un(g, b, Op::RowLogSumExp)?;
            let k = gathers(g, a, x)?;
            let n = g.bin(Op::NllSoftmax, x, k);
            Some(neg(g, n))
        }
        _ => None,
    }
}

fn log_cosh(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let c = un(cx.g, id, Op::Log)?;
    let u = un(cx.g, c, Op::Cosh)?;
    Some(cx.g.un(Op::LogCosh, u))
}

fn log_exp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    if let Some(e) = un(cx.g, id, Op::Log) {
        return un(cx.g, e, Op::Exp);
    }
    let e = un(cx.g, id, Op::Log1p)?;
    un(cx.g, e, Op::Expm1)
}

fn kl_term(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Mul)?;
    let (p, l) = if op(cx.g, b) == Op::Log { (a, b) } else { (b, a) };
    let q_over = un(cx.g, l, Op::Log)?;
    let (p2, q) = bin(cx.g, q_over, Op::Div)?;
    if p2 != p {
        return None;
    }
    let data = !cx.depends_on_pred(p);
    let g = &mut *cx.g;
    let half = g.cst(0.5);
    let two = g.cst(2.0);
    let lo = g.bin(Op::Mul, half, q);
    let hi = g.bin(Op::Mul, two, q);
    let c1 = g.bin(Op::Le, lo, p);
    let c2 = g.bin(Op::Le, p, hi);
    let near = g.bin(Op::And, c1, c2);
    let d = g.bin(Op::Sub, p, q);
    if data {
        // One logarithm and one quotient for both regimes: r = (p − q)/q where near (p − q
        // is exact there) and u = 1 + r, with r's part that 1 + r drops, c = (1 − u) + r
        // (exact: |r| ≤ 1), added back as c/u, the way log1p is computed; r = u = p/q
        // elsewhere. (u is r + 1 or r + 0, not a select of two sums: the simplifier would
        // split a select of selects on one condition into two quotients.)
        let num = g.select(near, d, p);
        let r = g.bin(Op::Div, num, q);
        let one = g.cst(1.0);
        let zero = g.cst(0.0);
        let shift = g.select(near, one, zero);
        let u = g.bin(Op::Add, r, shift);
        let l = g.un(Op::Log, u);
        let e = g.bin(Op::Sub, one, u);
        let c = g.bin(Op::Add, e, r);
        let corr = g.bin(Op::Div, c, u);
        let l1 = g.bin(Op::Add, l, corr);
        let close = g.bin(Op::Mul, p, l1);
        let far = g.bin(Op::Xlogy, p, u);
        let value = g.select(near, close, far);
        // With p data the only derivative is ∂/∂q = −p/q, which is what −xlogy(p, q) has:
        // one division, where differentiating either regime would take three (1/(1 + r),
        // and r's quotient rule, or xlogy's p/(p/q) times (p/q)/q).
        let xq = g.bin(Op::Xlogy, p, q);
        let grad = g.un(Op::Neg, xq);
        return Some(g.bin(Op::StraightThrough, value, grad));
    }
    let r = g.bin(Op::Div, d, q);
    let l1 = g.un(Op::Log1p, r);
    let close = g.bin(Op::Mul, p, l1);
    // p*(-log(q/p)): the same value, in a form this rule does not match again.
    let qp = g.bin(Op::Div, q, p);
    let l = g.un(Op::Log, qp);
    let m = g.bin(Op::Mul, p, l);
    let far = g.un(Op::Neg, m);
    Some(g.select(near, close, far))
}

fn xlogy(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Mul)?;
    for (u, l) in [(a, b), (b, a)] {
        let (fused, v) = match op(cx.g, l) {
            Op::Log => (Op::Xlogy, arg(cx.g, l, 0)),
            Op::Log1p => (Op::Xlog1py, arg(cx.g, l, 0)),
            _ => continue,
        };
        if cx.g.constant(u).is_some() || cx.depends_on_pred(u) {
            continue;
        }
        return Some(cx.g.bin(fused, u, v));
    }
    None
}

fn one_minus_cos(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (one, c) = bin(cx.g, id, Op::Sub)?;
    if !is_const(cx.g, one, 1.0) {
        return None;
    }
    let u = un(cx.g, c, Op::Cos)?;
    let g = &mut *cx.g;
    let half = g.cst(0.5);
    let h = g.bin(Op::Mul, half, u);
    let s = g.un(Op::Sin, h);
    let s2 = g.un(Op::Square, s);
    let two = g.cst(2.0);
    Some(g.bin(Op::Mul, two, s2))
}

fn softplus_minus_self(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Sub)?;
    if un(cx.g, a, Op::Softplus) == Some(b) {
        let nb = neg(cx.g, b);
        return Some(cx.g.un(Op::Softplus, nb));
    }
    if un(cx.g, b, Op::Softplus) == Some(a) {
        return Some(cx.g.un(Op::LogSigmoid, a));
    }
    None
}

fn hypot(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let s = un(cx.g, id, Op::Sqrt)?;
    if let Some(sq) = un(cx.g, s, Op::RowSum) {
        let x = un(cx.g, sq, Op::Square)?;
        return Some(cx.g.un(Op::RowNorm, x));
    }
    let (a2, b2) = bin(cx.g, s, Op::Add)?;
    let a = un(cx.g, a2, Op::Square)?;
    let b = un(cx.g, b2, Op::Square)?;
    Some(cx.g.bin(Op::Hypot, a, b))
}

fn square_times_exp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (x, y) = bin(cx.g, id, Op::Mul)?;
    for (sq, ex) in [(x, y), (y, x)] {
        let (Some(a), Some(b)) = (un(cx.g, sq, Op::Square), un(cx.g, ex, Op::Exp)) else { continue };
        let g = &mut *cx.g;
        let half = g.cst(0.5);
        let hb = g.bin(Op::Mul, half, b);
        let e = g.un(Op::Exp, hb);
        let p = g.bin(Op::Mul, a, e);
        return Some(g.un(Op::Square, p));
    }
    None
}

fn cosine(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (dot, den) = bin(cx.g, id, Op::Div)?;
    let ab = un(cx.g, dot, Op::RowSum)?;
    let (a, b) = bin(cx.g, ab, Op::Mul)?;
    let (na, nb) = bin(cx.g, den, Op::Mul)?;
    let (na, nb) = if un(cx.g, na, Op::RowNorm) == Some(a) && un(cx.g, nb, Op::RowNorm) == Some(b) {
        (na, nb)
    } else if un(cx.g, na, Op::RowNorm) == Some(b) && un(cx.g, nb, Op::RowNorm) == Some(a) {
        (nb, na)
    } else {
        return None;
    };
    let g = &mut *cx.g;
    let ua = g.bin(Op::Div, a, na);
    let ub = g.bin(Op::Div, b, nb);
    let p = g.bin(Op::Mul, ua, ub);
    Some(g.un(Op::RowSum, p))
}

/// `u/norm(u)` → `u`.
fn unit_of(g: &Graph, id: NodeId) -> Option<NodeId> {
    let (u, n) = bin(g, id, Op::Div)?;
    (un(g, n, Op::RowNorm) == Some(u)).then_some(u)
}

fn one_minus_cosine(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (one, c) = bin(cx.g, id, Op::Sub)?;
    if !is_const(cx.g, one, 1.0) {
        return None;
    }
    let p = un(cx.g, c, Op::RowSum)?;
    let (ua, ub) = bin(cx.g, p, Op::Mul)?;
    unit_of(cx.g, ua)?;
    unit_of(cx.g, ub)?;
    let g = &mut *cx.g;
    let d = g.bin(Op::Sub, ua, ub);
    let d2 = g.un(Op::Square, d);
    let s = g.un(Op::RowSum, d2);
    let half = g.cst(0.5);
    let value = g.bin(Op::Mul, half, s);
    // The derivatives of v = |d|²/2, d = â − b̂, are (d − k_a·â)/|a| and −(d − k_b·b̂)/|b|
    // with k_a = â·d and k_b = b̂·d (the projections that keep the gradient orthogonal to
    // the vector, as computed: â·â is 1 only to its roundings, and using v for k_a costs
    // about a bit near parallel vectors). k_b = k_a − 2v exactly over the reals, and with
    // |k_b| ≈ v there is no cancellation: one sum for both where the quotient rule takes
    // two, and no pass of its own. The derivatives come from the surrogate
    // Σ a·hold(d/|a|) − hold(k_a/|a|)·|a| − Σ b·hold(d/|b|) + hold(k_b/|b|)·|b| (`Op::Hold`:
    // a constant to the gradient, not to the Hessian, so `--hess` stays exact).
    let (a, na) = bin(g, ua, Op::Div)?;
    let (b, nb) = bin(g, ub, Op::Div)?;
    let pa = g.bin(Op::Mul, ua, d);
    let ka = g.un(Op::RowSum, pa);
    let kb = g.bin(Op::Sub, ka, s);
    let part = |g: &mut Graph, x: NodeId, nx: NodeId, k: NodeId| {
        let dn = g.bin(Op::Div, d, nx);
        let dn = g.un(Op::Hold, dn);
        let xd = g.bin(Op::Mul, x, dn);
        let lin = g.un(Op::RowSum, xd);
        let kn = g.bin(Op::Div, k, nx);
        let kn = g.un(Op::Hold, kn);
        let radial = g.bin(Op::Mul, kn, nx);
        (lin, radial)
    };
    let (la, ra) = part(g, a, na, ka);
    let (lb, rb) = part(g, b, nb, kb);
    let sa = g.bin(Op::Sub, la, ra);
    let sb = g.bin(Op::Sub, rb, lb);
    let surrogate = g.bin(Op::Add, sa, sb);
    Some(g.bin(Op::StraightThrough, value, surrogate))
}

fn sqrt_square(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let s = un(cx.g, id, Op::Sqrt)?;
    let u = un(cx.g, s, Op::Square)?;
    Some(cx.g.un(Op::Abs, u))
}

// ---------------------------------------------------------------------------------------
// Gradient safety.

fn select_sink(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    let o = op(g, id);
    if !matches!(o, Op::Mul | Op::Div) {
        return None;
    }
    let (a, b) = (arg(g, id, 0), arg(g, id, 1));
    // The select, and the other factor (for `/`, only the numerator may be the select).
    let slots: &[(NodeId, NodeId, bool)] = if o == Op::Mul { &[(b, a, false), (a, b, true)] } else { &[(a, b, true)] };
    for (sel, other, sel_first) in slots.iter().copied() {
        if op(g, sel) != Op::Where || g.constant(other).is_some() {
            continue;
        }
        let [c, x, y] = g.node(sel).args;
        let zero_x = g.constant(x) == Some(0.0);
        let zero_y = g.constant(y) == Some(0.0);
        if !(zero_x || zero_y) {
            continue;
        }
        let apply = |g: &mut Graph, t: NodeId| if sel_first { g.bin(o, t, other) } else { g.bin(o, other, t) };
        let x2 = if zero_x { x } else { apply(g, x) };
        let y2 = if zero_y { y } else { apply(g, y) };
        return Some(g.select(c, x2, y2));
    }
    None
}

/// `log1p(a) - log1p(b)` (MSLE's difference of logs): where the ratio (1 + a)/(1 + b) is at
/// least 0.5, `log1p(q)` with q = (a − b)/(1 + b) ≥ −0.5: no cancellation (a − b is exact
/// when a and b are close), and the error of q passes to log1p(q) damped (by
/// q/((1 + q)·log1p(q)) ≤ 1.4). Elsewhere, and where q is not finite (1 + b near 0 under
/// a large a), the difference itself (kept as the regime's other branch; the engine does
/// not match it again), which there has |result| ≥ ln 2 next to log1p(b).
fn log1p_difference(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (la, lb) = bin(cx.g, id, Op::Sub)?;
    let a = un(cx.g, la, Op::Log1p)?;
    let b = un(cx.g, lb, Op::Log1p)?;
    let g = &mut *cx.g;
    let one = g.cst(1.0);
    let half = g.cst(-0.5);
    let inf = g.cst(f64::INFINITY);
    let d = g.bin(Op::Sub, a, b);
    let ob = g.bin(Op::Add, one, b);
    let q = g.bin(Op::Div, d, ob);
    let above = g.bin(Op::Ge, q, half);
    let finite = g.bin(Op::Lt, q, inf);
    let near = g.bin(Op::And, above, finite);
    // One logarithm for both regimes: log1p(q) as log(u) + c/u, u + c = 1 + q exactly (the
    // way log1p computes), where near; log(u), u = (1 + a)/(1 + b), elsewhere (the ratio
    // is below 1/2 or overflowed, so the log is at least ln 2 in magnitude and the three
    // roundings of u cost it under 2^-23 absolute), where two log1p's used to be.
    let nq = g.un(Op::Neg, q);
    let (u1, c) = g.two_diff(one, nq);
    let oa = g.bin(Op::Add, one, a);
    let ratio = g.bin(Op::Div, oa, ob);
    let u = g.select(near, u1, ratio);
    let l = g.un(Op::Log, u);
    let corr = g.bin(Op::Div, c, u1);
    let zero = g.cst(0.0);
    let corr = g.select(near, corr, zero);
    let value = g.bin(Op::Add, l, corr);
    // The derivatives are those of log1p(a) − log1p(b), 1/(1 + a) and −1/(1 + b), exact
    // and stable in both regimes.
    Some(g.bin(Op::StraightThrough, value, id))
}

/// True when `c` is ±2^-k with k ≥ 1 (a scaling that is exact away from subnormals).
fn is_small_power_of_two(g: &Graph, c: NodeId) -> bool {
    g.constant(c).is_some_and(|v| {
        let a = v.abs();
        a > 0.0 && a < 1.0 && (a.log2().fract() == 0.0) && a >= f64::from(f32::MIN_POSITIVE)
    })
}

/// A constant scaling by 2^-k distributed over a sum and into a square: `c*(a + b)` →
/// `c*a + c*b`, `c*square(u)` → `(c*u)*u`. Each right side rounds exactly as the left
/// (scaling by a power of two is exact) except where the left side's sum or square
/// overflows and the result does not.
fn halve_square(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (c, x) = bin(cx.g, id, Op::Mul)?;
    if !is_small_power_of_two(cx.g, c) {
        return None;
    }
    let g = &mut *cx.g;
    match op(g, x) {
        Op::Add | Op::Sub => {
            let (a, b) = (arg(g, x, 0), arg(g, x, 1));
            let ca = g.bin(Op::Mul, c, a);
            let cb = g.bin(Op::Mul, c, b);
            Some(g.bin(op(g, x), ca, cb))
        }
        Op::Square => {
            let u = arg(g, x, 0);
            let cu = g.bin(Op::Mul, c, u);
            Some(g.bin(Op::Mul, cu, u))
        }
        _ => None,
    }
}

/// `(a - b)*c` with a and b inputs: where `a - b` overflows (inputs near the largest float
/// of opposite signs), `a*c - b*c`, finite when c is small. Elsewhere the product as
/// written (the regime's first branch; the engine does not match it again).
fn split_difference(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (x, y) = bin(cx.g, id, Op::Mul)?;
    let is_input = |g: &Graph, n: NodeId| matches!(op(g, n), Op::Input(_));
    for (d, c) in [(x, y), (y, x)] {
        let Some((a, b)) = bin(cx.g, d, Op::Sub) else { continue };
        if !is_input(cx.g, a) || !is_input(cx.g, b) || cx.g.constant(c).is_some() {
            continue;
        }
        // Where c is k·(a − b) itself (Huber's 0.5*(a − b)*(a − b)), the product is k·(a − b)²,
        // infinite wherever a − b overflows, and a*c − b*c is no better: the regime would only
        // cost a second form.
        if cx.g.scale_of(c, d).is_some() {
            continue;
        }
        let g = &mut *cx.g;
        let inf = g.cst(f64::INFINITY);
        let ad = g.un(Op::Abs, d);
        let finite = g.bin(Op::Lt, ad, inf);
        let ac = g.bin(Op::Mul, a, c);
        let bc = g.bin(Op::Mul, b, c);
        let far = g.bin(Op::Sub, ac, bc);
        return Some(g.select(finite, id, far));
    }
    None
}

/// Most factors [`sigmoid_xlogx`] flattens out of one product.
const MAX_FACTORS: usize = 16;

/// True when `id` is `sigmoid(u)*log_sigmoid(u)` (either order).
fn is_xlogx_pair(g: &Graph, id: NodeId) -> bool {
    let Some((a, b)) = bin(g, id, Op::Mul) else { return false };
    let pair = |s: NodeId, l: NodeId| un(g, s, Op::Sigmoid).is_some_and(|u| un(g, l, Op::LogSigmoid) == Some(u));
    pair(a, b) || pair(b, a)
}

/// In a product tree, groups `sigmoid(u)` with `log_sigmoid(u)` (p·log p, bounded by
/// 1/e) ahead of the other factors, which multiply the unbounded log_sigmoid(u) into
/// an overflow where sigmoid(u) = 0 (focal loss's gradient at |x| near the largest float).
fn sigmoid_xlogx(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    op(g, id).eq(&Op::Mul).then_some(())?;
    // The factors, in order (a pair already grouped is one factor).
    let mut factors = Vec::new();
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if factors.len() + stack.len() > MAX_FACTORS {
            return None;
        }
        if op(g, n) == Op::Mul && !is_xlogx_pair(g, n) {
            stack.push(arg(g, n, 1));
            stack.push(arg(g, n, 0));
        } else {
            factors.push(n);
        }
    }
    let (i, j) = factors.iter().enumerate().find_map(|(i, &f)| {
        let u = un(g, f, Op::Sigmoid)?;
        factors.iter().position(|&l| un(g, l, Op::LogSigmoid) == Some(u)).map(|j| (i, j))
    })?;
    let pair = g.bin(Op::Mul, factors[i], factors[j]);
    let rest = factors.iter().enumerate().filter(|(k, _)| *k != i && *k != j).map(|(_, f)| *f);
    let mut acc: Option<NodeId> = None;
    for f in rest {
        acc = Some(match acc {
            None => f,
            Some(a) => g.bin(Op::Mul, a, f),
        });
    }
    Some(match acc {
        None => pair,
        Some(r) => g.bin(Op::Mul, pair, r),
    })
}

/// `a*(b*c)` → `(a*b)*c` when the graph already holds `a*b` (the loss's own product,
/// whose size is the value's): reverse mode multiplies an adjoint through the factors
/// one at a time, which can overflow (b*c) where the product a*b is moderate. Through a
/// select: `a*where(k, b*c, e)` → `where(k, (a*b)*c, a*e)`. Only an older product is
/// reused, so regrouping cannot cycle.
/// `c*(a*b)` with c = ±2^-k (1 ≤ k ≤ 64) and b a multiple of a (an adjoint's
/// `t*(t*seed)`): the product where it is finite, else `(c*a)*b`, the same value rounded
/// once more (c*a is exact: where |a*b| overflows, |a| ≥ MAX/|b| is far above the range
/// where c*a would be subnormal). Also through a select: `c*where(k, a*b, e)` →
/// `where(k, [the regime], c*e)` (multiplying each branch by c is exact).
fn halve_product(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (c, x) = bin(cx.g, id, Op::Mul)?;
    let cv = cx.g.constant(c)?;
    if !is_small_power_of_two(cx.g, c) || cv.abs() < 2f64.powi(-64) {
        return None;
    }
    let g = &mut *cx.g;
    if square_like(g, x) {
        return Some(product_regime(g, c, x, id));
    }
    if op(g, x) != Op::Where {
        return None;
    }
    let [k, u, v] = g.node(x).args;
    let (su, sv) = (square_like(g, u), square_like(g, v));
    if !su && !sv {
        return None;
    }
    let side = |g: &mut Graph, b: NodeId, square: bool| {
        let cb = g.bin(Op::Mul, c, b);
        if square {
            let r = product_regime(g, c, b, cb);
            // The regime keeps c*b as its first branch: this rule is done with it.
            g.settle(cb, "halve-product");
            r
        } else {
            cb
        }
    };
    let u2 = side(g, u, su);
    let v2 = side(g, v, sv);
    Some(g.select(k, u2, v2))
}

/// `a*b` with neither factor constant and one a multiple of the other: the other factor
/// reached within three levels of sums, differences, products and negations.
fn square_like(g: &Graph, x: NodeId) -> bool {
    let Some((a, b)) = bin(g, x, Op::Mul) else { return false };
    if g.constant(a).is_some() || g.constant(b).is_some() {
        return false;
    }
    fn mentions(g: &Graph, b: NodeId, a: NodeId, depth: u32) -> bool {
        let linear = matches!(op(g, b), Op::Add | Op::Sub | Op::Mul | Op::Neg);
        b == a || (depth > 0 && linear && g.node(b).children().iter().any(|c| mentions(g, *c, a, depth - 1)))
    }
    mentions(g, b, a, 3) || mentions(g, a, b, 3)
}

/// `where(abs(p) < inf, cp, (c*a)*b)` for p = a*b and cp = c*p.
fn product_regime(g: &mut Graph, c: NodeId, p: NodeId, cp: NodeId) -> NodeId {
    let (a, b) = (arg(g, p, 0), arg(g, p, 1));
    let inf = g.cst(f64::INFINITY);
    let ap = g.un(Op::Abs, p);
    let finite = g.bin(Op::Lt, ap, inf);
    let ca = g.bin(Op::Mul, c, a);
    let far = g.bin(Op::Mul, ca, b);
    g.select(finite, cp, far)
}

fn reuse_product(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let g = &mut *cx.g;
    let (x, y) = bin(g, id, Op::Mul)?;
    for (a, bc) in [(x, y), (y, x)] {
        if g.constant(a).is_some() {
            continue;
        }
        if let Some(r) = regroup(g, a, bc) {
            return Some(r);
        }
        if op(g, bc) != Op::Where {
            continue;
        }
        let [k, u, v] = g.node(bc).args;
        let (ru, rv) = (regroup(g, a, u), regroup(g, a, v));
        if ru.is_none() && rv.is_none() {
            continue;
        }
        let side = |g: &mut Graph, r: Option<NodeId>, b: NodeId| match r {
            Some(r) => r,
            None if g.constant(b) == Some(0.0) => b,
            None => g.bin(Op::Mul, a, b),
        };
        let u2 = side(g, ru, u);
        let v2 = side(g, rv, v);
        return Some(g.select(k, u2, v2));
    }
    None
}

/// `(a*b)*c` for `a*(b*c)` (`bc` = `b*c` in either order) when `a*b` is an older node.
fn regroup(g: &mut Graph, a: NodeId, bc: NodeId) -> Option<NodeId> {
    let (p, q) = bin(g, bc, Op::Mul)?;
    for (b, c) in [(p, q), (q, p)] {
        if g.constant(b).is_some() {
            continue;
        }
        let found = g.find_bin(Op::Mul, a, b).or_else(|| g.find_bin(Op::Mul, b, a));
        // A product of the value, not of an adjoint (one holding the seed is itself a
        // product that can overflow where the value does not: t*(t*seed)).
        if let Some(ab) = found.filter(|ab| ab.index() < bc.index() && !holds_seed(g, *ab)) {
            return Some(g.bin(Op::Mul, ab, c));
        }
    }
    None
}

/// True when the seed (the adjoint's upstream factor) is among `id`'s operands, at any depth.
fn holds_seed(g: &Graph, id: NodeId) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        let node = g.node(n);
        if node.op == Op::Seed {
            return true;
        }
        stack.extend_from_slice(node.children());
    }
    false
}

// ---------------------------------------------------------------------------------------
// Lowerings: each must compute exactly what `math.rs` computes for the fused op.

fn lower_softplus(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::Softplus)?;
    let g = &mut *cx.g;
    let zero = g.cst(0.0);
    let m = g.bin(Op::Max, x, zero);
    let t = tail(g, x);
    Some(g.bin(Op::Add, m, t))
}

/// `log1p(exp(-|x|))`.
fn tail(g: &mut Graph, x: NodeId) -> NodeId {
    let a = g.un(Op::Abs, x);
    let na = g.un(Op::Neg, a);
    let e = g.un(Op::Exp, na);
    g.un(Op::Log1p, e)
}

fn lower_log_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::LogSigmoid)?;
    let g = &mut *cx.g;
    let zero = g.cst(0.0);
    let m = g.bin(Op::Min, x, zero);
    let t = tail(g, x);
    Some(g.bin(Op::Sub, m, t))
}

fn lower_sigmoid(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::Sigmoid)?;
    let g = &mut *cx.g;
    let zero = g.cst(0.0);
    let one = g.cst(1.0);
    let c = g.bin(Op::Ge, x, zero);
    let nx = g.un(Op::Neg, x);
    let en = g.un(Op::Exp, nx);
    let d1 = g.bin(Op::Add, one, en);
    let pos = g.bin(Op::Div, one, d1);
    let e = g.un(Op::Exp, x);
    let d2 = g.bin(Op::Add, one, e);
    let negb = g.bin(Op::Div, e, d2);
    Some(g.select(c, pos, negb))
}

fn lower_logaddexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::LogAddExp)?;
    let g = &mut *cx.g;
    let ln2 = g.cst(std::f64::consts::LN_2);
    let eq = g.bin(Op::Eq, a, b);
    let same = g.bin(Op::Add, a, ln2);
    let m = g.bin(Op::Max, a, b);
    let d = g.bin(Op::Sub, a, b);
    let t = tail(g, d);
    let other = g.bin(Op::Add, m, t);
    Some(g.select(eq, same, other))
}

fn lower_log1mexp(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::Log1mexp)?;
    let g = &mut *cx.g;
    let nln2 = g.cst(-std::f64::consts::LN_2);
    let c = g.bin(Op::Gt, x, nln2);
    // log(−expm1(x)) = log(expm1(−x)) + x (two terms of one sign): the expm1(−x) the
    // derivative near 0 divides by (diff.rs), so a kernel computes it once.
    let nx = g.un(Op::Neg, x);
    let em = g.un(Op::Expm1, nx);
    let l = g.un(Op::Log, em);
    let near = g.bin(Op::Add, l, x);
    let e = g.un(Op::Exp, x);
    let ne = g.un(Op::Neg, e);
    let far = g.un(Op::Log1p, ne);
    Some(g.select(c, near, far))
}

fn lower_xlogy(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let o = op(cx.g, id);
    let log = match o {
        Op::Xlogy => Op::Log,
        Op::Xlog1py => Op::Log1p,
        _ => return None,
    };
    let (u, v) = (arg(cx.g, id, 0), arg(cx.g, id, 1));
    let g = &mut *cx.g;
    let zero = g.cst(0.0);
    let uz = g.bin(Op::Eq, u, zero);
    let vn = g.bin(Op::Eq, v, v);
    let c = g.bin(Op::And, uz, vn);
    let l = g.un(log, v);
    let p = g.bin(Op::Mul, u, l);
    Some(g.select(c, zero, p))
}

fn lower_log_cosh(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let x = un(cx.g, id, Op::LogCosh)?;
    let g = &mut *cx.g;
    let one = g.cst(1.0);
    let two = g.cst(2.0);
    let a = g.un(Op::Abs, x);
    let small = g.bin(Op::Lt, a, one);
    let e = g.un(Op::Expm1, a);
    let ope = g.bin(Op::Add, one, e);
    let e2 = g.bin(Op::Mul, e, e);
    let den = g.bin(Op::Mul, two, ope);
    let near_q = g.bin(Op::Div, e2, den);
    let sq = g.bin(Op::Mul, ope, ope);
    let far_q = g.bin(Op::Div, one, sq);
    // One log1p for both regimes (math::log_cosh).
    let q = g.select(small, near_q, far_q);
    let l = g.un(Op::Log1p, q);
    let ln2 = g.cst(std::f64::consts::LN_2);
    let am = g.bin(Op::Sub, a, ln2);
    let far = g.bin(Op::Add, am, l);
    Some(g.select(small, l, far))
}

fn lower_hypot(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (a, b) = bin(cx.g, id, Op::Hypot)?;
    let g = &mut *cx.g;
    let x = g.un(Op::Abs, a);
    let y = g.un(Op::Abs, b);
    let m = g.bin(Op::Max, x, y);
    let n = g.bin(Op::Min, x, y);
    let inf = g.cst(f64::INFINITY);
    let zero = g.cst(0.0);
    let one = g.cst(1.0);
    let xi = g.bin(Op::Eq, x, inf);
    let yi = g.bin(Op::Eq, y, inf);
    let any_inf = g.bin(Op::Or, xi, yi);
    let nan = g.bin(Op::Ne, m, m);
    let mz = g.bin(Op::Eq, m, zero);
    let degenerate = g.bin(Op::Or, nan, mz);
    let r = g.bin(Op::Div, n, m);
    let r2 = g.bin(Op::Mul, r, r);
    let s = g.bin(Op::Add, one, r2);
    let sq = g.un(Op::Sqrt, s);
    let scaled = g.bin(Op::Mul, m, sq);
    let inner = g.select(degenerate, m, scaled);
    Some(g.select(any_inf, inf, inner))
}

fn lower_nll_softmax(cx: &mut Cx<'_>, id: NodeId) -> Option<NodeId> {
    let (x, k) = bin(cx.g, id, Op::NllSoftmax)?;
    let g = &mut *cx.g;
    // m = max(x) and log1p(s), s the sum of exp(x − m) over all but one maximum, each
    // exponential with the rounding error of x − m corrected (math::row_split).
    let (m, lp, finite) = g.row_split(x);
    let xk = g.bin(Op::Gather, x, k);
    let gap = g.bin(Op::Sub, m, xk);
    let split = g.bin(Op::Add, gap, lp);
    let lse = g.un(Op::RowLogSumExp, x);
    let plain = g.bin(Op::Sub, lse, xk);
    Some(g.select(finite, split, plain))
}
