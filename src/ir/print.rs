//! Stable text forms of graph values: infix formulas with shared subexpressions named.
//!
//! The output is a contract used by `lossc check`, tests and the REPL: it depends only
//! on the graph, never on hash-map order.

use crate::ir::{Graph, Kind, NodeId, Op};

/// Formats a constant in the shortest form that reads back to the same f64.
pub fn number(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".to_string() } else { "-inf".to_string() };
    }
    let a = x.abs();
    if a == 0.0 || (1e-4..1e15).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Marks a subexpression that [`Printer::inline`] abbreviates.
const ELIDED: usize = usize::MAX;

/// Operator precedence, higher binds tighter.
fn prec(op: Op) -> u8 {
    match op {
        Op::Or => 1,
        Op::And => 2,
        Op::Not => 3,
        Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => 4,
        Op::Add | Op::Sub => 5,
        Op::Mul | Op::Div => 6,
        Op::Neg => 7,
        Op::Pow => 8,
        _ => 9,
    }
}

/// Prints labelled roots of one graph, naming subexpressions used more than once
/// (`t1`, `t2`, ...) on lines of their own before the roots.
pub struct Printer<'g> {
    graph: &'g Graph,
    names: &'g dyn Fn(u16) -> String,
}

impl<'g> Printer<'g> {
    /// A printer that names input `n` with `names(n)`.
    pub fn new(graph: &'g Graph, names: &'g dyn Fn(u16) -> String) -> Printer<'g> {
        Printer { graph, names }
    }

    /// `label = formula` lines for every root, after the shared temporaries.
    pub fn print(&self, roots: &[(String, NodeId)]) -> String {
        let g = self.graph;
        let max = roots.iter().map(|(_, r)| r.index()).max().map_or(0, |m| m + 1);
        let mut uses = vec![0u32; max];
        let mut reach = vec![false; max];
        for (_, r) in roots {
            reach[r.index()] = true;
        }
        for i in (0..max).rev() {
            if !reach[i] {
                continue;
            }
            for c in g.node(NodeId(i as u32)).children() {
                uses[c.index()] += 1;
                reach[c.index()] = true;
            }
        }
        let mut temp: Vec<Option<usize>> = vec![None; max];
        let mut n_temps = 0;
        let mut out = String::new();
        let mut lines = Vec::new();
        for i in 0..max {
            let id = NodeId(i as u32);
            let node = g.node(id);
            if reach[i] && uses[i] > 1 && node.op.arity() > 0 && !matches!(node.op, Op::Neg) {
                n_temps += 1;
                lines.push(format!("  t{n_temps} = {}", self.expr(id, &temp, 0, true)));
                temp[i] = Some(n_temps);
            }
        }
        if !lines.is_empty() {
            out.push_str("where\n");
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        for (label, r) in roots {
            out.push_str(&format!("{label} = {}\n", self.expr(*r, &temp, 0, false)));
        }
        out
    }

    /// One formula on one line, with no temporaries; a subexpression that would print
    /// more than `max_nodes` nodes (counted as a tree) prints as `…`.
    pub fn inline(&self, id: NodeId, max_nodes: usize) -> String {
        self.inline_all(&[id], max_nodes).pop().unwrap_or_default()
    }

    /// [`Printer::inline`] of each of `ids`, sizing the graph's subexpressions once.
    pub fn inline_all(&self, ids: &[NodeId], max_nodes: usize) -> Vec<String> {
        let g = self.graph;
        let n = ids.iter().map(|id| id.index() + 1).max().unwrap_or(0);
        let mut size = vec![0usize; n];
        let mut temp: Vec<Option<usize>> = vec![None; n];
        for i in 0..n {
            let node = g.node(NodeId(i as u32));
            size[i] = node.children().iter().fold(1usize, |acc, c| acc.saturating_add(size[c.index()]));
            if size[i] > max_nodes {
                temp[i] = Some(ELIDED);
            }
        }
        ids.iter().map(|id| self.expr(*id, &temp, 0, true)).collect()
    }

    /// One formula, parenthesised as needed for a context of precedence `ctx`.
    fn expr(&self, id: NodeId, temp: &[Option<usize>], ctx: u8, top: bool) -> String {
        if !top {
            if let Some(Some(t)) = temp.get(id.index()) {
                if *t == ELIDED {
                    return "…".to_string();
                }
                return format!("t{t}");
            }
        }
        let g = self.graph;
        let node = g.node(id);
        let a = node.args;
        let sub = |i: usize, p: u8| self.expr(a[i], temp, p, false);
        let (text, p) = match node.op {
            Op::Const(bits) => {
                let v = f64::from_bits(bits);
                (number(v), if v < 0.0 || (v == 0.0 && v.is_sign_negative()) { 7 } else { 9 })
            }
            Op::Input(n) => ((self.names)(n), 9),
            Op::NumClasses => ("C".to_string(), 9),
            Op::ClassIndex => ("class_index".to_string(), 9),
            Op::Seed => ("seed".to_string(), 9),
            Op::Neg => (format!("-{}", sub(0, 8)), 7),
            Op::Not => (format!("not {}", sub(0, 3)), 3),
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne
            | Op::And
            | Op::Or => {
                let p = prec(node.op);
                // Left-associative; comparisons do not associate at all.
                let right_p = p + 1;
                let left_p = if p == 4 { p + 1 } else { p };
                let sep = match node.op {
                    Op::Mul | Op::Div => node.op.name().to_string(),
                    other => format!(" {} ", other.name()),
                };
                (format!("{}{sep}{}", sub(0, left_p), sub(1, right_p)), p)
            }
            Op::Pow => (format!("{}^{}", sub(0, 9), sub(1, 7)), 8),
            // `square(x)` and `x^2` are the same function, bit for bit.
            Op::Square => (format!("{}^2", sub(0, 9)), 8),
            Op::Gather => (format!("{}[{}]", sub(0, 9), sub(1, 0)), 9),
            op => {
                let args: Vec<String> = (0..op.arity()).map(|i| sub(i, 0)).collect();
                (format!("{}({})", op.name(), args.join(", ")), 9)
            }
        };
        if p < ctx {
            format!("({text})")
        } else {
            text
        }
    }
}

/// A one-word description of a kind, for messages and dumps.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Uniform => "uniform",
        Kind::Row => "per row",
        Kind::Class => "per class",
    }
}
