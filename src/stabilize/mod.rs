//! Stability rewriting: a phased, deterministic, terminating rewrite engine over the DAG.
//!
//! `compile` runs it twice around differentiation (SPEC §1 Stability):
//! canonicalize → stabilize the loss → differentiate (with the fused ops' own derivative
//! rules in `diff.rs`) → stabilize the gradient graph (and again the Hessian graph).
//! [`lower_fused`] is the last, optional phase: it spells fused ops in primitive ops,
//! bit for bit as `math.rs` computes them (lowerings L1–L7), for back ends without them.
//!
//! The engine is a PyTensor-style directed fixpoint. One pass rebuilds the part of the
//! graph reachable from the program's roots into a fresh [`Graph`], bottom-up in index
//! order, mapping children, and tries the phase's rules (in table order, first match wins)
//! on each rebuilt node, then again on what a rule returned. Passes repeat until one
//! fires nothing, at most [`MAX_PASSES`] times, and a pass stops applying rules when the
//! graph outgrows its size budget. Nothing recurses over the graph. A rule whose result
//! keeps the node it matched (a regime form's fallback branch) settles that node for
//! itself (`Graph::settle`), so it does not match it again in later passes or stages.
//!
//! Invariant: every rule is an identity over the reals wherever its left side is defined,
//! and its right side is defined wherever its left side is. No rule adds an epsilon or a
//! clamp, and none looks through a barrier: nodes reached only through `stop_gradient(x)`
//! or the value side of `straight_through(v, s)` are copied unchanged, so a file can keep
//! a reference's exact rounding.
//!
//! Invariant: rules that only make sense on derivative graphs (select sinking, S34) apply
//! only to nodes that are not part of the loss, its weights or its requirements, so the
//! loss has the same value whether or not it was differentiated.

pub mod rules;

use crate::diagnostic::Diagnostic;
use crate::ir::print::Printer;
use crate::ir::{Graph, NodeId, Op, MAX_NODES};
use crate::program::{Program, Role};

pub use rules::{rule_table, RuleInfo};

/// Most rebuild passes per phase.
pub const MAX_PASSES: usize = 16;

/// Most rules applied in a row to one node within a pass.
const MAX_CHAIN: usize = 8;

/// Largest subexpression (as a tree) printed in a rewrite record; bigger ones print `…`.
const PRINT_NODES: usize = 40;

/// Which graph a rewrite was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The loss, its weights and requirements, before differentiation.
    Loss,
    /// The gradient graph.
    Gradient,
    /// The Hessian-diagonal graph.
    Hessian,
}

impl Stage {
    /// `"loss"`, `"gradient"` or `"hessian"`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Loss => "loss",
            Stage::Gradient => "gradient",
            Stage::Hessian => "hessian",
        }
    }
}

/// The rule sets, run in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Exact normal forms that let stability patterns match (`x^2` → `square(x)`, negations out of products).
    Canonicalize,
    /// Numerical-stability rules (stability.md §7 A–C), on the loss and on derivative graphs.
    Stabilize,
    /// Rules for derivative graphs only (§7 D).
    Gradient,
    /// Spelling fused ops in primitive ops (§7 E, lowerings L1–L7); see [`lower_fused`].
    Lower,
}

impl Phase {
    /// `"canonicalize"`, `"stabilize"`, `"gradient"` or `"lower"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Canonicalize => "canonicalize",
            Phase::Stabilize => "stabilize",
            Phase::Gradient => "gradient",
            Phase::Lower => "lower",
        }
    }
}

/// One rewrite that fired, as `lossc check` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The rule's name (e.g. `softplus`).
    pub rule: &'static str,
    /// Its number in stability.md §7 (e.g. `S7`), or `C1`… for canonicalizations.
    pub id: &'static str,
    /// The rule's phase.
    pub phase: Phase,
    /// The graph it fired in.
    pub stage: Stage,
    /// The matched subexpression, as a formula.
    pub before: String,
    /// What replaced it.
    pub after: String,
    /// Names of the inputs the matched subexpression reads (the values it protects).
    pub inputs: Vec<String>,
    /// What goes wrong in the left side and why the right side does not.
    pub reason: &'static str,
}

/// A rule: a procedural matcher that returns the replacement of a node, built in the
/// same graph, or `None`.
pub(crate) struct Rule {
    pub name: &'static str,
    pub id: &'static str,
    pub phase: Phase,
    /// `lhs → rhs`, for documentation.
    pub summary: &'static str,
    pub reason: &'static str,
    pub apply: fn(&mut Cx<'_>, NodeId) -> Option<NodeId>,
}

/// What rules see: the graph being built and a pred-dependence analysis over it.
pub(crate) struct Cx<'g> {
    /// The graph being rebuilt.
    pub g: &'g mut Graph,
    /// `pred[n]`: input n is a pred.
    preds: &'g [bool],
    /// Whether each node depends on a pred (grows with the graph).
    dep: Vec<bool>,
}

impl Cx<'_> {
    /// True when the node's value depends on a pred.
    pub fn depends_on_pred(&mut self, id: NodeId) -> bool {
        for i in self.dep.len()..self.g.len() {
            let node = self.g.node(NodeId(i as u32));
            let d = match node.op {
                Op::Input(n) => self.preds.get(n as usize).copied().unwrap_or(false),
                _ => node.children().iter().any(|c| self.dep[c.index()]),
            };
            self.dep.push(d);
        }
        self.dep.get(id.index()).copied().unwrap_or(false)
    }
}

/// Evaluation contexts of a node during a rebuild (a node may be needed in several).
const FROZEN: usize = 0;
const VALUE: usize = 1;
const GRAD: usize = 2;

/// The result of one rebuild pass.
struct Pass {
    graph: Graph,
    /// `maps[ctx][old]` = new node.
    maps: [Vec<NodeId>; 3],
    fired: usize,
    exhausted: bool,
}

/// What one rebuild pass applies, and to what.
struct Setup<'a> {
    rules: Vec<&'a Rule>,
    /// `preds[n]`: input n is a pred.
    preds: &'a [bool],
    names: &'a dyn Fn(u16) -> String,
    stage: Stage,
    /// Log the rewrites ([`Program::rewrites`]); lowerings are not logged.
    record: bool,
}

/// Rebuilds the nodes reachable from `roots` (each with its context) into a new graph,
/// applying the rules to live nodes until the graph holds `budget` nodes.
fn rebuild(old: &Graph, roots: &[(NodeId, usize)], setup: &Setup<'_>, budget: usize, log: &mut Vec<Rewrite>) -> Pass {
    let (rules, preds, names, stage) = (&setup.rules, setup.preds, setup.names, setup.stage);
    let n = old.len();
    let mut need = vec![0u8; n];
    for (r, ctx) in roots {
        need[r.index()] |= 1 << ctx;
    }
    for i in (0..n).rev() {
        if need[i] == 0 {
            continue;
        }
        let node = old.node(NodeId(i as u32));
        for (slot, c) in node.children().iter().enumerate() {
            need[c.index()] |= if is_barrier(node.op, slot) { 1 << FROZEN } else { need[i] };
        }
    }
    let mut new = old.empty_like();
    let mut maps = [vec![NodeId::NONE; n], vec![NodeId::NONE; n], vec![NodeId::NONE; n]];
    let mut fired = 0;
    let mut exhausted = false;
    let mut cx_dep: Vec<bool> = Vec::new();
    let mut rewrites = Vec::new();
    for i in 0..n {
        if need[i] == 0 {
            continue;
        }
        let old_id = NodeId(i as u32);
        let node = old.node(old_id);
        for ctx in [FROZEN, VALUE, GRAD] {
            if need[i] & (1 << ctx) == 0 {
                continue;
            }
            let args: Vec<NodeId> = node
                .children()
                .iter()
                .enumerate()
                .map(|(slot, c)| {
                    let child_ctx = if is_barrier(node.op, slot) { FROZEN } else { ctx };
                    maps[child_ctx][c.index()]
                })
                .collect();
            let mut id = match node.op {
                Op::Const(bits) => new.cst(f64::from_bits(bits)),
                Op::Input(_) | Op::NumClasses | Op::ClassIndex | Op::Seed => new.leaf(node.op, old.kind(old_id)),
                op => new.add(op, &args),
            };
            for rule in old.settled_rules(old_id) {
                new.settle(id, rule);
            }
            if ctx != FROZEN && !exhausted {
                let mut cx = Cx { g: &mut new, preds, dep: std::mem::take(&mut cx_dep) };
                let mut chain = 0;
                'chain: while chain < MAX_CHAIN {
                    for rule in rules {
                        if (rule.phase == Phase::Gradient && ctx != GRAD) || cx.g.is_settled(id, rule.name) {
                            continue;
                        }
                        let Some(r) = (rule.apply)(&mut cx, id) else { continue };
                        if r == id {
                            continue;
                        }
                        if contains(cx.g, r, id) {
                            // A regime form keeps the matched expression as one branch.
                            cx.g.settle(id, rule.name);
                        }
                        if setup.record {
                            rewrites.push((*rule, id, r));
                        }
                        fired += 1;
                        id = r;
                        chain += 1;
                        continue 'chain;
                    }
                    break;
                }
                cx_dep = std::mem::take(&mut cx.dep);
                if new.len() > budget {
                    exhausted = true;
                }
            }
            maps[ctx][i] = id;
        }
    }
    record(&new, &rewrites, stage, names, log);
    Pass { graph: new, maps, fired, exhausted }
}

/// True when `id` is `root` or one of its descendants.
fn contains(g: &Graph, root: NodeId, id: NodeId) -> bool {
    if root.index() < id.index() {
        return false;
    }
    let base = id.index();
    let mut seen = vec![false; root.index() - base + 1];
    seen[root.index() - base] = true;
    for i in (base..=root.index()).rev() {
        if !seen[i - base] {
            continue;
        }
        if i == base {
            return true;
        }
        for c in g.node(NodeId(i as u32)).children() {
            if c.index() >= base {
                seen[c.index() - base] = true;
            }
        }
    }
    false
}

/// True when child `slot` of `op` is behind a barrier (no rewrite looks through it).
fn is_barrier(op: Op, slot: usize) -> bool {
    matches!((op, slot), (Op::StopGradient | Op::Hold, _) | (Op::StraightThrough, 0))
}

/// The log entries of the rewrites `fired` (rule, matched node, replacement) of one
/// rebuild into `g`, appended to `log` in order, each once: printed after the pass, with
/// one size table for all of them (a rewrite's nodes never change once built).
fn record(
    g: &Graph,
    fired: &[(&Rule, NodeId, NodeId)],
    stage: Stage,
    names: &dyn Fn(u16) -> String,
    log: &mut Vec<Rewrite>,
) {
    if fired.is_empty() {
        return;
    }
    let printer = Printer::new(g, names);
    let ids: Vec<NodeId> = fired.iter().flat_map(|(_, before, after)| [*before, *after]).collect();
    let mut texts = printer.inline_all(&ids, PRINT_NODES).into_iter();
    for (rule, before, _) in fired {
        let (Some(before_text), Some(after_text)) = (texts.next(), texts.next()) else { break };
        let mut entry = Rewrite {
            rule: rule.name,
            id: rule.id,
            phase: rule.phase,
            stage,
            before: before_text,
            after: after_text,
            inputs: inputs_of(g, *before).into_iter().map(names).collect(),
            reason: rule.reason,
        };
        if !log.contains(&entry) {
            entry.inputs.shrink_to_fit();
            log.push(entry);
        }
    }
}

/// Input numbers a node reads, sorted.
fn inputs_of(g: &Graph, id: NodeId) -> Vec<u16> {
    let mut seen = vec![false; id.index() + 1];
    seen[id.index()] = true;
    let mut out = Vec::new();
    for i in (0..=id.index()).rev() {
        if !seen[i] {
            continue;
        }
        let node = g.node(NodeId(i as u32));
        if let Op::Input(n) = node.op {
            out.push(n);
        }
        for c in node.children() {
            seen[c.index()] = true;
        }
    }
    out.sort_unstable();
    out
}

/// Every root of a program, with its context.
fn roots_of(prog: &Program) -> Vec<(NodeId, usize)> {
    let mut roots = vec![(prog.loss, VALUE), (prog.weight, VALUE), (prog.over, VALUE)];
    roots.extend(prog.requires.iter().map(|r| (r.cond, VALUE)));
    for d in &prog.derivs {
        roots.push((d.grad, GRAD));
        if let Some(h) = d.hess {
            roots.push((h, GRAD));
        }
    }
    roots
}

/// Points every root of `prog` at its image in `pass` and installs the new graph.
fn install(prog: &mut Program, pass: Pass) {
    let map = |id: NodeId, ctx: usize| pass.maps[ctx][id.index()];
    prog.loss = map(prog.loss, VALUE);
    prog.weight = map(prog.weight, VALUE);
    prog.over = map(prog.over, VALUE);
    for r in &mut prog.requires {
        r.cond = map(r.cond, VALUE);
    }
    for d in &mut prog.derivs {
        d.grad = map(d.grad, GRAD);
        d.hess = d.hess.map(|h| map(h, GRAD));
    }
    prog.graph = pass.graph;
}

/// Runs rule sets to a fixpoint on every root of `prog`, recording the rewrites.
fn run_phases(prog: &mut Program, phases: &[&[Phase]], stage: Stage) -> Result<(), Diagnostic> {
    run_phases_filtered(prog, phases, stage, &[], true)
}

/// As [`run_phases`], without the rules named in `skip`, logging the rewrites if `record`.
fn run_phases_filtered(
    prog: &mut Program,
    phases: &[&[Phase]],
    stage: Stage,
    skip: &[&str],
    record: bool,
) -> Result<(), Diagnostic> {
    let preds: Vec<bool> = prog.inputs.iter().map(|i| i.role == Role::Pred).collect();
    let names: Vec<String> = prog.inputs.iter().map(|i| i.name.clone()).collect();
    let name = |n: u16| names.get(n as usize).cloned().unwrap_or_default();
    let table = rules::rules();
    let mut log = std::mem::take(&mut prog.rewrites);
    let mut stopped = false;
    for set in phases {
        let rules: Vec<&Rule> = table.iter().filter(|r| set.contains(&r.phase) && !skip.contains(&r.name)).collect();
        let setup = Setup { rules, preds: &preds, names: &name, stage, record };
        for _ in 0..MAX_PASSES {
            let roots = roots_of(prog);
            let start = prog.graph.len();
            let budget = (4 * start).max(start + 10_000).min(MAX_NODES / 2);
            let pass = rebuild(&prog.graph, &roots, &setup, budget, &mut log);
            let (fired, exhausted) = (pass.fired, pass.exhausted);
            install(prog, pass);
            if exhausted && !stopped {
                stopped = true;
                let msg = "stability rewriting stopped at its size limit; the rest of the formula is left as written";
                prog.warnings.push(Diagnostic { span: None, ..Diagnostic::warning(crate::span::Span::default(), msg) });
            }
            if fired == 0 || exhausted {
                break;
            }
        }
    }
    prog.rewrites = log;
    if prog.graph.len() > MAX_NODES {
        return Err(Diagnostic::error_nowhere(format!(
            "the rewritten graph is too large ({} nodes; the limit is {MAX_NODES})",
            prog.graph.len()
        )));
    }
    Ok(())
}

/// Canonicalizes and stabilizes every root of `prog` (the loss before differentiation,
/// or, with `stage` set to `Gradient`/`Hessian`, the derivative graphs too), recording
/// each rewrite in [`Program::rewrites`].
///
/// # Errors
/// When the rewritten graph exceeds [`MAX_NODES`].
pub fn stabilize(prog: &mut Program, stage: Stage) -> Result<(), Diagnostic> {
    let second: &[Phase] = match stage {
        Stage::Loss => &[Phase::Canonicalize, Phase::Stabilize],
        _ => &[Phase::Canonicalize, Phase::Stabilize, Phase::Gradient],
    };
    run_phases(prog, &[&[Phase::Canonicalize], second], stage)
}

/// Lowers the fused ops of every root (`softplus`, `log_sigmoid`, `sigmoid`, `logaddexp`,
/// `log1mexp`, `xlogy`, `xlog1py`, `log_cosh`, `hypot`, `nll_softmax`) to primitive ops,
/// bit for bit as `math.rs` computes them, for back ends that lack them. Row reductions
/// (`logsumexp`, `softmax`, …) are left to the back end (lowering L5 is the interpreter's
/// max-shifted `row_reduce`). Lowerings are not recorded in [`Program::rewrites`].
///
/// # Errors
/// When the lowered graph exceeds [`MAX_NODES`].
pub fn lower_fused(prog: &mut Program) -> Result<(), Diagnostic> {
    lower_fused_except(prog, &[])
}

/// As [`lower_fused`], leaving alone the fused ops whose lowering rule is named in `keep`
/// (a back end with its own code for `sigmoid`, say, keeps `lower-sigmoid` out).
///
/// # Errors
/// When the lowered graph exceeds [`MAX_NODES`].
pub fn lower_fused_except(prog: &mut Program, keep: &[&str]) -> Result<(), Diagnostic> {
    run_phases_filtered(prog, &[&[Phase::Lower]], Stage::Loss, keep, false)
}
