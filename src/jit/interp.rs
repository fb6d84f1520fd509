//! The kernel interpreter: computes what the JIT's kernels compute, bit for bit, without
//! running them (`eval::Mode::Kernel`, `lossc eval --engine kernel-interp`).
//!
//! It evaluates the graphs the kernels are translated from ([`kernel_graph`]: the program
//! after [`lower_for_kernels`] and `prepare`), one element or row at a time in node order,
//! with the kernels' own math routines: the `vecmath` emitters compiled once per process as
//! scalar functions (`mathlib`, which quick-tier kernels call; vecmath's scalar and vector
//! code compute the same bits; `sin` and `cos` call libm from inside for arguments beyond
//! 10^6, as the kernels do), the platform libm for `pow` (by data, or by a constant `prepare`
//! does not spell out as products and roots), and `math.rs` for the IEEE operations and
//! selects (whose semantics the kernels implement). It sums in the kernels' order
//! (described above `codegen::vector_lanes`, with the lane count and the unrolling read from
//! `codegen`): one f64 accumulator per lane, a scalar tail, fixed chunks
//! ([`chunk_rows`]) combined with Neumaier summation, row reductions by lanes then tail.
//! Pre-passes, the reduction's denominator, the seed and the folding of broadcast
//! derivatives follow `JitLoss::call_in`. Which pass of a row kernel computes a class value,
//! and whether it is kept in scratch, does not change its bits, so passes are not modelled.
//!
//! The differential test `tests/bitwise.rs` holds the JIT to this interpreter bit for bit,
//! so a change to the kernels' loops or summation order must be mirrored here.

use std::sync::OnceLock;

use cranelift_codegen::ir::types;

use crate::diagnostic::Diagnostic;
use crate::eval::{Array, EvalOptions, Evaluation, Interp, LossValue, Neumaier};
use crate::ir::{Dtype, Kind, NodeId, Op};
use crate::math::{self, Real};
use crate::program::{Layout as InputLayout, Program, ReduceMode};

use super::abi::ScalarFns;
use super::codegen::{self, Store};
use super::vecmath::MathFunc;
use super::{
    batch_prepass, batch_value, chunk_rows, finish, kernel_graph, lower_for_kernels, mathlib, uniform_seed, Element,
    JitError, KernelGraph, PrePass, Variant,
};

/// The vecmath routines, in the order of [`ScalarFns`]' tables.
const FUNCS: [MathFunc; 13] = [
    MathFunc::Exp,
    MathFunc::Log,
    MathFunc::Log1p,
    MathFunc::Log1pUnit,
    MathFunc::Expm1,
    MathFunc::Sigmoid,
    MathFunc::Softplus,
    MathFunc::LogSigmoid,
    MathFunc::Tanh,
    MathFunc::Sinh,
    MathFunc::Cosh,
    MathFunc::Sin,
    MathFunc::Cos,
];

/// The vecmath routine of an op, if the kernels compute it inline.
fn math_func(op: Op) -> Option<MathFunc> {
    Some(match op {
        Op::Exp => MathFunc::Exp,
        Op::Log => MathFunc::Log,
        Op::Log1p => MathFunc::Log1p,
        Op::Expm1 => MathFunc::Expm1,
        Op::Sigmoid => MathFunc::Sigmoid,
        Op::Softplus => MathFunc::Softplus,
        Op::LogSigmoid => MathFunc::LogSigmoid,
        Op::Tanh => MathFunc::Tanh,
        Op::Sinh => MathFunc::Sinh,
        Op::Cosh => MathFunc::Cosh,
        Op::Sin => MathFunc::Sin,
        Op::Cos => MathFunc::Cos,
        _ => return None,
    })
}

/// The scalar math routines: `mathlib`'s functions (the `vecmath` emitters compiled once per
/// process with the kernels' ISA and math features), the ones quick-tier kernels call.
fn scalar_fns() -> Result<&'static ScalarFns, JitError> {
    static FNS: OnceLock<Result<ScalarFns, JitError>> = OnceLock::new();
    let init = || -> Result<ScalarFns, JitError> {
        let f32s = FUNCS.iter().map(|f| mathlib::address(*f, types::F32)).collect::<Result<Vec<_>, _>>()?;
        let f64s = FUNCS.iter().map(|f| mathlib::address(*f, types::F64)).collect::<Result<Vec<_>, _>>()?;
        let exp_dw = (mathlib::address(MathFunc::ExpDw, types::F32)?, mathlib::address(MathFunc::ExpDw, types::F64)?);
        Ok(ScalarFns::new(&f32s, &f64s, exp_dw))
    };
    FNS.get_or_init(init).as_ref().map_err(Clone::clone)
}

/// Element types with the kernels' math routines.
trait KernelReal: Element {
    /// `FUNCS[k](x)` as the kernels compute it.
    fn math(fns: &ScalarFns, k: usize, x: Self) -> Self;
    /// `exp_dw(hi, lo)` as the kernels compute it.
    fn exp_dw(fns: &ScalarFns, hi: Self, lo: Self) -> Self;
}

impl KernelReal for f32 {
    fn math(fns: &ScalarFns, k: usize, x: f32) -> f32 {
        (fns.f32[k])(x)
    }
    fn exp_dw(fns: &ScalarFns, hi: f32, lo: f32) -> f32 {
        (fns.exp_dw_f32)(hi, lo)
    }
}

impl KernelReal for f64 {
    fn math(fns: &ScalarFns, k: usize, x: f64) -> f64 {
        (fns.f64[k])(x)
    }
    fn exp_dw(fns: &ScalarFns, hi: f64, lo: f64) -> f64 {
        (fns.exp_dw_f64)(hi, lo)
    }
}

/// One elementwise op as the kernels compute it (`Translator::op`), with the routine
/// `variant` where the kernels use one ([`codegen::routine_variant`]).
fn apply<T: KernelReal>(fns: &ScalarFns, op: Op, variant: Option<MathFunc>, a: &[T]) -> T {
    let routine = |f: MathFunc, x: T| T::math(fns, FUNCS.iter().position(|g| *g == f).unwrap_or(0), x);
    if let Some(f) = variant.or_else(|| math_func(op)) {
        return routine(f, a[0]);
    }
    match op {
        // x·log(y) through the inline log; 0 where x = 0 and y is not NaN.
        Op::Xlogy if a[0] == T::ZERO && !a[1].is_nan() => T::ZERO,
        Op::Xlogy => a[0].mul(routine(MathFunc::Log, a[1])),
        Op::ExpDw => T::exp_dw(fns, a[0], a[1]),
        Op::StopGradient | Op::Hold | Op::StraightThrough => a[0],
        op if op.is_elementwise() => match a.len() {
            1 => math::apply_unary(op, a[0]),
            2 => math::apply_binary(op, a[0], a[1]),
            _ => math::apply_ternary(op, a[0], a[1], a[2]),
        },
        _ => a[0],
    }
}

/// Evaluates `prog` as [`super::JitLoss::evaluate`] does, bit for bit, without the JIT's
/// kernels (see the module docs).
///
/// # Errors
/// The interpreter's input errors (the same messages as both other engines), or a failure
/// to compile the math routines (a bug in lossc).
pub(crate) fn evaluate(
    prog: &Program,
    inputs: &[(&str, &Array)],
    opts: &EvalOptions,
) -> Result<Evaluation, Diagnostic> {
    match prog.dtype {
        Dtype::F32 => evaluate_as::<f32>(prog, inputs, opts),
        Dtype::F64 => evaluate_as::<f64>(prog, inputs, opts),
    }
}

/// The interpreter's diagnostic for inputs a pre-pass found wrong (as `JitLoss::diagnose`).
fn diagnose<T: Real>(prog: &Program, inputs: &[(&str, &Array)], opts: &EvalOptions) -> Diagnostic {
    Interp::<T>::new(prog, inputs, opts)
        .and_then(|mut i| i.setup().map(|_| ()))
        .err()
        .unwrap_or_else(|| Diagnostic::error_nowhere("internal error: the JIT rejected inputs the interpreter accepts"))
}

/// One call's data as the kernels see it (`jit::bind`): every input at full length.
struct Bound<T> {
    rows: usize,
    classes: usize,
    /// Full-length data per input (empty for an absent, unused input).
    data: Vec<Vec<T>>,
    /// Class indices per index target, -1 where out of range (empty for other inputs).
    indices: Vec<Vec<i32>>,
    /// The seed array of `reduce none` (empty otherwise).
    seed: Vec<T>,
    /// Values of the `batch_*` nodes.
    batch: Vec<(NodeId, T)>,
}

fn evaluate_as<T: KernelReal>(
    program: &Program,
    inputs: &[(&str, &Array)],
    opts: &EvalOptions,
) -> Result<Evaluation, Diagnostic> {
    let fns = scalar_fns()?;
    let lowered = lower_for_kernels(program)?;
    let prog = &lowered;
    // Names, shapes and index values are checked by the interpreter, as `JitLoss::evaluate`
    // has them checked.
    let interp = Interp::<T>::new(program, inputs, opts)?;
    let rows = interp.rows;
    // No rows: nothing is computed, and any class count will do (`jit::bind`).
    let classes = if prog.class_axis && rows > 0 { interp.classes } else { 1 };
    let mut b = Bound { rows, classes, data: Vec::new(), indices: Vec::new(), seed: Vec::new(), batch: Vec::new() };
    let mut any_invalid = false;
    for (decl, src) in prog.inputs.iter().zip(&interp.sources) {
        let Some(src) = src else {
            b.data.push(Vec::new());
            b.indices.push(Vec::new());
            continue;
        };
        let len = src.data.len();
        let full = rows * if decl.layout == InputLayout::Classes { classes } else { 1 };
        b.data.push((0..full).map(|i| src.data[if len == 0 { 0 } else { i % len }]).collect());
        let mut idx = Vec::new();
        if decl.layout == InputLayout::Index {
            for r in 0..rows {
                let k = src.data[if len == 1 { 0 } else { r }].to_f64();
                if (0.0..classes as f64).contains(&k) {
                    idx.push(k as i32);
                } else {
                    any_invalid = true;
                    idx.push(-1);
                }
            }
        }
        b.indices.push(idx);
    }
    let mode = opts.reduce.unwrap_or(prog.reduce);
    let fail = || diagnose::<T>(program, inputs, opts);
    // Pre-passes, in index order: batch values, requirements, index masks.
    let batch_nodes: Vec<(NodeId, Op, NodeId)> = (prog.graph.nodes().iter().enumerate())
        .filter(|(_, node)| node.op.is_batch())
        .map(|(i, node)| (NodeId(i as u32), node.op, node.args[0]))
        .collect();
    for (id, op, arg) in batch_nodes {
        let sum = sum(fns, prog, &b, arg, batch_prepass(op))?;
        b.batch.push((id, batch_value(op, sum)));
    }
    for req in &prog.requires {
        if sum(fns, prog, &b, req.cond, PrePass::Zeros)? > 0.0 {
            return Err(fail());
        }
    }
    if any_invalid && sum(fns, prog, &b, prog.weight, PrePass::UnmaskedInvalid)? > 0.0 {
        return Err(fail());
    }
    let n_items = if prog.loss_kind == Kind::Class { rows * classes } else { rows };
    let denom = match mode {
        ReduceMode::Mean | ReduceMode::MeanOrZero => Some(match prog.graph.constant(prog.over) {
            Some(d) => d * n_items as f64,
            None => {
                let s = sum(fns, prog, &b, prog.over, PrePass::Values)?;
                let reps = if prog.graph.kind(prog.over) != Kind::Class && prog.loss_kind == Kind::Class {
                    classes
                } else {
                    1
                };
                s * reps as f64
            }
        }),
        ReduceMode::BatchMean => {
            let find = |name: &str| inputs.iter().rev().find(|(n, _)| *n == name).map(|(_, a)| *a);
            let batch = prog.preds().find_map(|p| find(&prog.inputs[p as usize].name));
            Some(batch.map_or(rows, |a| a.shape.first().copied().unwrap_or(1)) as f64)
        }
        ReduceMode::Sum | ReduceMode::None => None,
    };
    let (nothing, seed_uniform) = uniform_seed::<T>(mode, denom);
    if opts.hess && prog.derivs.iter().any(|d| d.hess.is_none()) {
        return Err(Diagnostic::error_nowhere("the Hessian was not compiled into this loss"));
    }
    let seed_array = mode == ReduceMode::None;
    if seed_array {
        b.seed = match &opts.upstream {
            Some(up) if up.len() == n_items => up.iter().map(|x| T::from_f64(*x)).collect(),
            Some(up) if up.len() == 1 => vec![T::from_f64(up[0]); n_items],
            Some(_) => {
                return Err(Diagnostic::error_nowhere(format!("the upstream gradient must hold {n_items} values")))
            }
            None => vec![T::ONE; n_items],
        };
    }
    let variant = Variant::Main { grad: opts.grad, hess: opts.hess, seed_array };
    let kg = kernel_graph(prog, variant)?;
    let mut stores: Vec<Vec<T>> = (kg.layout.stores.iter())
        .map(|(_, _, dest)| vec![T::ZERO; if *dest == Kind::Class { rows * classes } else { rows }])
        .collect();
    let total = run(fns, prog, &b, &kg, seed_uniform, &mut stores);
    let loss = finish::<T>(mode, denom, nothing, total);
    // Derivatives of preds given as one number or one row are summed back in f64.
    let to_f64 = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let mut k = usize::from(seed_array);
    let mut outputs = Vec::new();
    for flag in [opts.grad, opts.hess] {
        let mut list = Vec::new();
        if flag {
            for d in &prog.derivs {
                let n = d.input as usize;
                let given = interp.sources[n].as_ref().map_or(0, |s| s.data.len());
                let full = &stores[k];
                let out = if given == full.len() || given == 0 {
                    let mut v = to_f64(full);
                    v.truncate(given);
                    v
                } else {
                    let row = if prog.graph.input_kind(d.input) == Kind::Class { classes } else { 1 };
                    let mut acc = vec![0.0f64; given];
                    for (i, v) in full.iter().enumerate() {
                        acc[if given == 1 { 0 } else { i % row }] += v.to_f64();
                    }
                    acc.iter().map(|a| T::from_f64(*a).to_f64()).collect()
                };
                list.push((prog.inputs[n].name.clone(), out));
                k += 1;
            }
        }
        outputs.push(list);
    }
    let hess = outputs.pop().unwrap_or_default();
    let grad = outputs.pop().unwrap_or_default();
    let loss = if seed_array { LossValue::PerItem(to_f64(&stores[0])) } else { LossValue::Scalar(loss) };
    Ok(Evaluation { loss, grad, hess })
}

/// Σ of a pre-pass transform of `node` (`JitLoss::sum`).
fn sum<T: KernelReal>(
    fns: &ScalarFns,
    prog: &Program,
    b: &Bound<T>,
    node: NodeId,
    how: PrePass,
) -> Result<f64, JitError> {
    if let (Some(c), PrePass::Values) = (prog.graph.constant(node), how) {
        let n = if prog.graph.kind(node) == Kind::Class { b.rows * b.classes } else { b.rows };
        return Ok(c * n as f64);
    }
    let kg = kernel_graph(prog, Variant::Sum(node, how))?;
    Ok(run(fns, prog, b, &kg, T::ONE, &mut []))
}

/// Runs kernel `kg` over every row, chunk by chunk (`jit::run_chunks`): returns Σ W·l and
/// fills `stores` (one full-length array per store of the layout).
fn run<T: KernelReal>(
    fns: &ScalarFns,
    prog: &Program,
    b: &Bound<T>,
    kg: &KernelGraph,
    seed_uniform: T,
    stores: &mut [Vec<T>],
) -> f64 {
    let g = &kg.graph;
    // Uniform values, as the kernel's entry block computes them.
    let slots: Vec<T> = kg.slot_sources.iter().map(|s| s.value(b.classes, seed_uniform, &b.batch)).collect();
    let variants: Vec<Option<MathFunc>> = (0..g.len()).map(|i| codegen::routine_variant(g, NodeId(i as u32))).collect();
    let mut uni = vec![T::ZERO; g.len()];
    for i in 0..g.len() {
        let id = NodeId(i as u32);
        if g.kind(id) != Kind::Uniform {
            continue;
        }
        let node = g.node(id);
        uni[i] = match node.op {
            Op::Const(bits) => T::from_f64(f64::from_bits(bits)),
            op if op.arity() == 0 || op.is_batch() => {
                let slot = kg.layout.uniform_slots.iter().position(|s| *s == id).unwrap_or(0);
                slots.get(slot).copied().unwrap_or(T::ZERO)
            }
            op => {
                let args: Vec<T> = node.children().iter().map(|c| uni[c.index()]).collect();
                apply(fns, op, variants[i], &args)
            }
        };
    }
    let k = Kernel { fns, b, kg, uni, needed: codegen::needed(g, &kg.roots, &kg.layout), variants };
    let chunk = chunk_rows(b.classes);
    let mut acc = Neumaier::default();
    let mut begin = 0;
    while begin < b.rows {
        let end = (begin + chunk).min(b.rows);
        acc.add(if prog.class_axis { k.rows(begin, end, stores) } else { k.elements(begin, end, stores) });
        begin = end;
    }
    acc.sum()
}

/// One kernel's graph, bound to a call.
struct Kernel<'a, T> {
    fns: &'a ScalarFns,
    b: &'a Bound<T>,
    kg: &'a KernelGraph,
    /// Values of the uniform nodes.
    uni: Vec<T>,
    /// Nodes the kernel computes (`codegen::needed`).
    needed: Vec<bool>,
    /// Each node's routine variant ([`codegen::routine_variant`]).
    variants: Vec<Option<MathFunc>>,
}

/// The partial sum from the lane accumulators and the tail: `((0 + a_0) + a_1) + …) + tail`.
fn horizontal(lanes: &[f64], tail: f64) -> f64 {
    lanes.iter().fold(0.0, |t, a| t + a) + tail
}

impl<T: KernelReal> Kernel<'_, T> {
    /// An element kernel over `[begin, end)`: Σ W·l in lane accumulators (the unrolled copy
    /// into the same ones), then a scalar tail.
    fn elements(&self, begin: usize, end: usize, stores: &mut [Vec<T>]) -> f64 {
        let g = &self.kg.graph;
        let lanes = codegen::vector_lanes(g.dtype);
        let step = lanes * codegen::vectors_per_iteration(g, &self.kg.roots, &self.kg.layout);
        let (mut acc, mut tail) = (vec![0.0f64; lanes], 0.0f64);
        let mut vals = vec![T::ZERO; g.len()];
        let mut i = begin;
        while i + step <= end {
            for j in 0..step {
                acc[j % lanes] += self.element(i + j, &mut vals, stores);
            }
            i += step;
        }
        while i < end {
            tail += self.element(i, &mut vals, stores);
            i += 1;
        }
        horizontal(&acc, tail)
    }

    /// Element `i`: computes the needed nodes, writes the stores, returns W·l.
    fn element(&self, i: usize, vals: &mut [T], stores: &mut [Vec<T>]) -> f64 {
        let g = &self.kg.graph;
        for n in 0..g.len() {
            if !self.needed[n] {
                continue;
            }
            let id = NodeId(n as u32);
            let node = g.node(id);
            vals[n] = match node.op {
                _ if g.kind(id) == Kind::Uniform => self.uni[n],
                Op::Input(m) => self.b.data[m as usize].get(i).copied().unwrap_or(T::ZERO),
                Op::Seed => self.b.seed.get(i).copied().unwrap_or(T::ZERO),
                op => {
                    let mut args = [T::ZERO; 3];
                    for (a, c) in args.iter_mut().zip(node.children()) {
                        *a = vals[c.index()];
                    }
                    apply(self.fns, op, self.variants[n], &args[..node.children().len()])
                }
            };
        }
        for (k, (node, _, _)) in self.kg.layout.stores.iter().enumerate() {
            stores[k][i] = vals[node.index()];
        }
        vals[self.kg.roots.wl.index()].to_f64()
    }

    /// A row kernel over rows `[begin, end)`: each needed node in index order (a class node
    /// over every class), row reductions in the kernels' order, W·l in lane accumulators
    /// (class values of whole vectors) and the scalar tail (tail classes, row values).
    fn rows(&self, begin: usize, end: usize, stores: &mut [Vec<T>]) -> f64 {
        let g = &self.kg.graph;
        let (c, lanes) = (self.b.classes, codegen::vector_lanes(g.dtype));
        let whole = c / lanes * lanes;
        let (mut acc, mut tail) = (vec![0.0f64; lanes], 0.0f64);
        // Node n's values start at offset[n]: C of them for class nodes, else one.
        let mut offset = Vec::with_capacity(g.len());
        let mut total = 0;
        for n in 0..g.len() {
            offset.push(total);
            total += if g.kind(NodeId(n as u32)) == Kind::Class { c } else { 1 };
        }
        let mut vals = vec![T::ZERO; total];
        let at = |vals: &[T], id: NodeId, cc: usize| -> T {
            match g.kind(id) {
                Kind::Class => vals[offset[id.index()] + cc],
                Kind::Row => vals[offset[id.index()]],
                Kind::Uniform => self.uni[id.index()],
            }
        };
        let roots = &self.kg.roots;
        for r in begin..end {
            // A row with an index target out of range stores 0 derivatives.
            let valid = roots.index_inputs.iter().all(|n| self.b.indices[*n as usize].get(r).is_some_and(|k| *k >= 0));
            for n in 0..g.len() {
                let id = NodeId(n as u32);
                if !self.needed[n] || g.kind(id) == Kind::Uniform {
                    continue;
                }
                let node = g.node(id);
                if g.kind(id) == Kind::Row {
                    vals[offset[n]] = match node.op {
                        Op::Input(m) => self.b.data[m as usize].get(r).copied().unwrap_or(T::ZERO),
                        Op::Seed => self.b.seed.get(r).copied().unwrap_or(T::ZERO),
                        Op::Gather => self.gather(node.args[0], node.args[1], r),
                        Op::RowSum | Op::RowMax | Op::RowMin => {
                            let xs: Vec<T> = (0..c).map(|cc| at(&vals, node.args[0], cc)).collect();
                            reduce(node.op, &xs, lanes)
                        }
                        op => {
                            let args: Vec<T> = node.children().iter().map(|a| at(&vals, *a, 0)).collect();
                            apply(self.fns, op, self.variants[n], &args)
                        }
                    };
                    continue;
                }
                for cc in 0..c {
                    let v = match node.op {
                        Op::Input(m) => self.b.data[m as usize].get(r * c + cc).copied().unwrap_or(T::ZERO),
                        Op::Seed => self.b.seed.get(r * c + cc).copied().unwrap_or(T::ZERO),
                        Op::ClassIndex => T::from_f64(cc as f64),
                        op => {
                            let args: Vec<T> = node.children().iter().map(|a| at(&vals, *a, cc)).collect();
                            apply(self.fns, op, self.variants[n], &args)
                        }
                    };
                    vals[offset[n] + cc] = v;
                }
            }
            if roots.wl_kind == Kind::Class {
                for cc in 0..c {
                    let wl = at(&vals, roots.wl, cc).to_f64();
                    if cc < whole {
                        acc[cc % lanes] += wl;
                    } else {
                        tail += wl;
                    }
                }
            } else {
                tail += at(&vals, roots.wl, 0).to_f64();
            }
            for (k, (node, store, dest)) in self.kg.layout.stores.iter().enumerate() {
                let masked = *store == Store::Output && !valid;
                let width = if *dest == Kind::Class { c } else { 1 };
                for cc in 0..width {
                    stores[k][r * width + cc] = if masked { T::ZERO } else { at(&vals, *node, cc) };
                }
            }
        }
        horizontal(&acc, tail)
    }

    /// Element k of row `r` of input (or seed) `x`, k from index target `k`; 0 where the
    /// index is out of range (`Translator::gather`).
    fn gather(&self, x: NodeId, k: NodeId, r: usize) -> T {
        let g = &self.kg.graph;
        let Op::Input(kn) = g.node(k).op else { return T::ZERO };
        let kk = self.b.indices[kn as usize].get(r).copied().unwrap_or(-1);
        let Ok(kk) = usize::try_from(kk) else { return T::ZERO };
        let i = r * self.b.classes + kk;
        let v = match g.node(x).op {
            Op::Input(m) => self.b.data[m as usize].get(i),
            _ => self.b.seed.get(i),
        };
        v.copied().unwrap_or(T::ZERO)
    }
}

/// A row reduction in the class pass's order: lane `l` accumulates classes `c ≡ l mod
/// lanes` of the whole vectors, a scalar the tail; then lane 0, lane 1, …, the tail.
/// `max`/`min` are the NaN-dropping `a < x ? x : a` / `x < a ? x : a`, NaN if any entry is.
fn reduce<T: Real>(op: Op, xs: &[T], lanes: usize) -> T {
    let init = match op {
        Op::RowSum => 0.0,
        Op::RowMax => f64::NEG_INFINITY,
        _ => f64::INFINITY,
    };
    let step = |a: T, x: T| match op {
        Op::RowSum => a.add(x),
        Op::RowMax if a < x => x,
        Op::RowMin if x < a => x,
        _ => a,
    };
    let whole = xs.len() / lanes * lanes;
    let mut vector = vec![T::from_f64(init); lanes];
    let mut tail = T::from_f64(init);
    for (c, x) in xs.iter().enumerate() {
        if c < whole {
            vector[c % lanes] = step(vector[c % lanes], *x);
        } else {
            tail = step(tail, *x);
        }
    }
    let total = vector[1..].iter().fold(vector[0], |t, x| step(t, *x));
    let total = step(total, tail);
    if op != Op::RowSum && xs.iter().any(|x| x.is_nan()) {
        T::from_f64(f64::NAN)
    } else {
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled routines are the emitters: on a few points they agree with the platform
    /// libm within the vecmath bound (so a table mix-up, say log for exp, cannot pass).
    #[test]
    fn scalar_routines_are_the_right_functions() {
        let fns = scalar_fns().expect("the routines compile");
        for x in [-3.5f64, -0.25, 0.0, 0.5, 2.0, 7.25] {
            // log1p_unit's argument is in [0, 1].
            let unit = x.abs() / 8.0;
            let want = [
                x.exp(),
                x.abs().ln(),
                x.abs().ln_1p(),
                unit.ln_1p(),
                x.exp_m1(),
                1.0 / (1.0 + (-x).exp()),
                x.exp().ln_1p(),
                -(-x).exp().ln_1p(),
                x.tanh(),
                x.sinh(),
                x.cosh(),
                x.sin(),
                x.cos(),
            ];
            for (k, w) in want.iter().enumerate() {
                let arg = match FUNCS[k] {
                    MathFunc::Log | MathFunc::Log1p => x.abs(),
                    MathFunc::Log1pUnit => unit,
                    _ => x,
                };
                let got = f64::math(fns, k, arg);
                assert!(got == *w || (got - w).abs() <= 1e-15 * w.abs(), "{:?}({arg}) = {got}, want {w}", FUNCS[k]);
                let got32 = f32::math(fns, k, arg as f32);
                assert!(
                    f64::from(got32) == *w || (f64::from(got32) - w).abs() <= 1e-6 * w.abs().max(1e-30),
                    "{:?}({arg}) f32 = {got32}, want {w}",
                    FUNCS[k]
                );
            }
        }
    }

    #[test]
    fn reductions_combine_lanes_then_the_tail() {
        // Two f64 lanes take classes 0, 2 and 1, 3; class 4 is the tail: the lanes hold
        // 1e16 − 1e16 = 0 and 3 + 3 = 6, so the sum is exactly 0 + 6 + 5.
        assert_eq!(reduce(Op::RowSum, &[1e16, 3.0, -1e16, 3.0, 5.0], 2), 11.0);
        assert!(reduce(Op::RowMax, &[1.0, f64::NAN, 3.0], 2).is_nan());
        assert_eq!(reduce(Op::RowMin, &[2.0, -1.0, 3.0], 4), -1.0);
        // Signed zeros: the first of equal entries in lane order wins.
        assert!(reduce(Op::RowMax, &[-0.0f64, 0.0], 2).is_sign_negative());
    }
}
