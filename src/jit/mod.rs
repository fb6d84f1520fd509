//! The Cranelift JIT: compiles a [`Program`] into fused, vectorized value-and-derivative
//! kernels and runs them over the data, in parallel for large inputs.
//!
//! One [`JitLoss`] owns its kernels; each kernel lives in its own `JITModule`, freed when the
//! kernel is dropped. Kernels are specialised on what a call wants (gradients, Hessians, and
//! whether the seed is one number or an upstream array) and compiled on first use.
//! Validation, `batch_*` pre-passes, requirement checks and the reduction's denominator reuse
//! the reference interpreter's code (`eval::Interp::setup`), so both engines accept and
//! reject exactly the same inputs. Invariant: the JIT never sees the AST.
//!
//! ```
//! use lossc::jit::{Arg, CallOptions, Data, JitLoss, Outputs};
//! use lossc::{compile, CompileOptions, Dtype};
//!
//! let options = CompileOptions { dtype: Dtype::F32, params: vec![], hessian: false, stabilize: true };
//! let jit = JitLoss::new(compile("maximum(1 - y*p, 0)^2", &options).unwrap()).unwrap();
//! let (p, y) = ([0.5f32, 2.0], [1.0f32, 1.0]);
//! let mut grad = [0.0f32; 2];
//! let args = [Arg { name: "p", data: Data::Values(&p) }, Arg { name: "y", data: Data::Values(&y) }];
//! let mut out = Outputs { grad: vec![&mut grad[..]], hess: vec![], loss_items: None };
//! let loss = jit.call(&args, &CallOptions { rows: Some(2), ..Default::default() }, &mut out).unwrap();
//! assert_eq!(loss, 0.125);
//! assert_eq!(grad, [-0.5, -0.0]);
//! ```

mod abi;
mod codegen;
mod prepare;
pub(crate) mod vecmath;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};

use crate::diagnostic::Diagnostic;
use crate::eval::{Array, EvalOptions, Evaluation, Interp, LossValue, Neumaier};
use crate::ir::{Dtype, Kind, NodeId, Op};
use crate::math::Real;
use crate::program::{Layout as InputLayout, Program, ReduceMode};

use self::abi::{Code, PtrTable};
use self::codegen::{Layout, Roots, Store};
use self::vecmath::MathFeatures;

/// An error from Cranelift while compiling a kernel (a bug in lossc, never bad input).
#[derive(Clone, Debug, PartialEq)]
pub struct JitError {
    /// What Cranelift said.
    pub message: String,
}

impl JitError {
    pub(crate) fn module(e: cranelift_module::ModuleError) -> JitError {
        JitError { message: format!("{e:?}") }
    }
}

impl std::fmt::Display for JitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal JIT error: {}", self.message)
    }
}

impl std::error::Error for JitError {}

impl From<JitError> for Diagnostic {
    fn from(e: JitError) -> Diagnostic {
        Diagnostic::error_nowhere(e.to_string())
    }
}

/// What a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Variant {
    /// Σ W·l, and the derivatives asked for.
    Main {
        grad: bool,
        hess: bool,
        /// The seed is an array (reduce none) rather than one number.
        seed_array: bool,
    },
    /// A pre-pass over the data: Σ of a transform of one node of the program.
    Sum(NodeId, PrePass),
}

/// The transform a pre-pass sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PrePass {
    /// The node's values.
    Values,
    /// 1 where the node is zero (a failing `require`, a false `batch_all` element).
    Zeros,
    /// 1 where the node is nonzero (a true `batch_any` element).
    Nonzeros,
    /// 1 on rows with a class index out of range whose weight (the node) is nonzero.
    UnmaskedInvalid,
}

/// A compiled kernel with what the caller needs to feed it.
struct Kernel {
    code: Code,
    layout: Layout,
    /// Scratch arrays of C elements (rounded up to whole vectors) each call needs.
    scratch_slots: usize,
    /// Bytes per element of the kernel's dtype.
    elem_size: usize,
    /// Where each uniform slot's value comes from.
    slot_sources: Vec<SlotSource>,
}

#[derive(Clone, Copy, Debug)]
enum SlotSource {
    Classes,
    Seed,
    Batch(NodeId),
}

/// Data for one input of a typed call.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a, T> {
    /// Numbers in the compute type (index targets may be integral floats).
    Values(&'a [T]),
    /// 32-bit class indices.
    I32(&'a [i32]),
    /// 64-bit class indices.
    I64(&'a [i64]),
}

impl<T> Data<'_, T> {
    fn len(&self) -> usize {
        match self {
            Data::Values(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
}

/// Options of a typed call.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallOptions<'a, T> {
    /// Overrides the file's reduction.
    pub reduce: Option<ReduceMode>,
    /// Number of rows, required for losses with a class axis.
    pub rows: Option<usize>,
    /// B for `batchmean` (default: the rows, or the elements without a class axis).
    pub batch: Option<usize>,
    /// Upstream gradient per loss value for `reduce none` (default: ones).
    pub upstream: Option<&'a [T]>,
}

/// Caller-provided output buffers of a typed call.
#[derive(Debug, Default)]
pub struct Outputs<'a, T> {
    /// ∂L/∂pred per pred in declaration order (empty: not computed); each as long as the pred's data.
    pub grad: Vec<&'a mut [T]>,
    /// The Hessian diagonal per pred (empty: not computed).
    pub hess: Vec<&'a mut [T]>,
    /// W·l per loss value, for `reduce none`.
    pub loss_items: Option<&'a mut [T]>,
}

/// A program with its JIT kernels. `Send + Sync`: call it from any thread.
pub struct JitLoss {
    /// The program as compiled (what [`JitLoss::program`] shows).
    program: Arc<Program>,
    /// The same program with the fused ops the kernels have no code for lowered to
    /// primitive ops, bit for bit as the interpreter computes them; everything the kernels
    /// and pre-passes see comes from it.
    lowered: Arc<Program>,
    kernels: Mutex<HashMap<Variant, Arc<Kernel>>>,
}

/// Rows per chunk are chosen so a chunk holds about this many elements; chunks are fixed by
/// the data's shape alone, so the reduced loss is the same for any number of threads.
const CHUNK_ELEMENTS: usize = 1 << 14;
/// Below this many elements a call runs on the calling thread.
pub const PARALLEL_ELEMENTS: usize = 1 << 16;

/// The data of one call, bound to the kernels' pointer layout.
struct Bound<'a, T> {
    rows: usize,
    classes: usize,
    /// Full-length data pointer per input (0 when the input is not used).
    ptrs: Vec<usize>,
    /// Sanitised class indices per input (-1 out of range); empty for other inputs.
    indices: Vec<Vec<i32>>,
    /// Copies made for broadcasting or conversion; the pointers above may point into them.
    _owned: Vec<Vec<T>>,
    any_invalid: bool,
    /// Length each input was given with.
    given: Vec<usize>,
    _marker: std::marker::PhantomData<&'a T>,
}

impl JitLoss {
    /// Wraps a compiled program and compiles its default kernel (value and gradient).
    ///
    /// # Errors
    /// A Cranelift error (a bug in lossc).
    pub fn new(program: Program) -> Result<JitLoss, JitError> {
        let mut lowered = program.clone();
        // sigmoid, softplus and log_sigmoid have inline code of their own.
        let keep = ["lower-sigmoid", "lower-softplus", "lower-log-sigmoid"];
        crate::stabilize::lower_fused_except(&mut lowered, &keep).map_err(|d| JitError { message: d.message })?;
        let jit =
            JitLoss { program: Arc::new(program), lowered: Arc::new(lowered), kernels: Mutex::new(HashMap::new()) };
        jit.kernel(Variant::Main { grad: true, hess: false, seed_array: false })?;
        Ok(jit)
    }

    /// The program this loss runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    fn kernel(&self, v: Variant) -> Result<Arc<Kernel>, JitError> {
        let mut map = self.kernels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = map.get(&v) {
            return Ok(Arc::clone(k));
        }
        let k = Arc::new(compile_kernel(&self.lowered, v)?);
        map.insert(v, Arc::clone(&k));
        Ok(k)
    }

    /// Evaluates like [`crate::eval::evaluate`], on the JIT kernels.
    ///
    /// # Errors
    /// The same input errors as the interpreter, or a JIT error.
    pub fn evaluate(&self, inputs: &[(&str, &Array)], opts: &EvalOptions) -> Result<Evaluation, Diagnostic> {
        match self.program.dtype {
            Dtype::F32 => self.evaluate_as::<f32>(inputs, opts),
            Dtype::F64 => self.evaluate_as::<f64>(inputs, opts),
        }
    }

    fn evaluate_as<T: Real + Element>(
        &self,
        inputs: &[(&str, &Array)],
        opts: &EvalOptions,
    ) -> Result<Evaluation, Diagnostic> {
        let prog = &*self.program;
        let find = |name: &str| inputs.iter().rev().find(|(n, _)| *n == name).map(|(_, a)| *a);
        let (rows, _) = match Interp::<T>::layout(prog, &find) {
            Ok(l) => l,
            Err(_) => return Err(self.diagnose::<T>(inputs, opts)),
        };
        let converted: Vec<(String, Vec<T>)> =
            inputs.iter().map(|(n, a)| (n.to_string(), a.data.iter().map(|x| T::from_f64(*x)).collect())).collect();
        let args: Vec<Arg<'_, T>> = converted.iter().map(|(n, v)| Arg { name: n, data: Data::Values(v) }).collect();
        let upstream: Option<Vec<T>> = opts.upstream.as_ref().map(|u| u.iter().map(|x| T::from_f64(*x)).collect());
        let batch = prog
            .preds()
            .find_map(|p| find(&prog.inputs[p as usize].name))
            .map(|a| a.shape.first().copied().unwrap_or(1));
        let call = CallOptions { reduce: opts.reduce, rows: Some(rows), batch, upstream: upstream.as_deref() };
        let given = |n: u16| find(&prog.inputs[n as usize].name).map_or(0, |a| a.data.len());
        let mut grad_bufs: Vec<Vec<T>> =
            if opts.grad { prog.derivs.iter().map(|d| vec![T::ZERO; given(d.input)]).collect() } else { Vec::new() };
        let mut hess_bufs: Vec<Vec<T>> =
            if opts.hess { prog.derivs.iter().map(|d| vec![T::ZERO; given(d.input)]).collect() } else { Vec::new() };
        let mode = opts.reduce.unwrap_or(prog.reduce);
        let mut items: Vec<T> = Vec::new();
        let result = {
            let mut out = Outputs {
                grad: grad_bufs.iter_mut().map(|v| v.as_mut_slice()).collect(),
                hess: hess_bufs.iter_mut().map(|v| v.as_mut_slice()).collect(),
                loss_items: None,
            };
            if mode == ReduceMode::None {
                let n_items = self.n_items(rows, prog, &args, rows);
                items = vec![T::ZERO; n_items];
                out.loss_items = Some(items.as_mut_slice());
            }
            self.call(&args, &call, &mut out)
        };
        let loss = match result {
            Ok(x) => x,
            Err(CallError::Diagnose) => return Err(self.diagnose::<T>(inputs, opts)),
            Err(CallError::Fatal(d)) => return Err(d),
        };
        let to_f64 = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
        let names = |bufs: Vec<Vec<T>>| -> Vec<(String, Vec<f64>)> {
            prog.derivs
                .iter()
                .zip(bufs)
                .map(|(d, b)| (prog.inputs[d.input as usize].name.clone(), to_f64(&b)))
                .collect()
        };
        Ok(Evaluation {
            loss: if mode == ReduceMode::None { LossValue::PerItem(to_f64(&items)) } else { LossValue::Scalar(loss) },
            grad: names(grad_bufs),
            hess: names(hess_bufs),
        })
    }

    fn n_items<T>(&self, _rows_hint: usize, prog: &Program, args: &[Arg<'_, T>], rows: usize) -> usize {
        if prog.loss_kind != Kind::Class {
            return rows;
        }
        let classes = prog
            .inputs
            .iter()
            .filter(|i| i.layout == InputLayout::Classes && i.role == crate::program::Role::Pred)
            .find_map(|i| args.iter().find(|a| a.name == i.name))
            .map_or(1, |a| a.data.len() / rows.max(1));
        rows * classes
    }

    /// Rows of `inputs` as SPEC §1's data layout reads them (the row count a typed call takes).
    ///
    /// # Errors
    /// As [`JitLoss::evaluate`].
    pub fn rows(&self, inputs: &[(&str, &Array)]) -> Result<usize, Diagnostic> {
        let find = |name: &str| inputs.iter().rev().find(|(n, _)| *n == name).map(|(_, a)| *a);
        match self.program.dtype {
            Dtype::F32 => Interp::<f32>::layout(&self.program, &find).map(|l| l.0),
            Dtype::F64 => Interp::<f64>::layout(&self.program, &find).map(|l| l.0),
        }
    }

    /// The interpreter's diagnostic for inputs the JIT path found wrong.
    fn diagnose<T: Real>(&self, inputs: &[(&str, &Array)], opts: &EvalOptions) -> Diagnostic {
        let prog = &*self.program;
        let res = Interp::<T>::new(prog, inputs, opts).and_then(|mut i| i.setup().map(|_| ()));
        match res {
            Err(d) => d,
            Ok(()) => Diagnostic::error_nowhere("internal error: the JIT rejected inputs the interpreter accepts"),
        }
    }

    /// Calls the loss on typed data: returns the reduced loss and fills `out`.
    ///
    /// # Errors
    /// [`CallError::Diagnose`] when the inputs are wrong in a way the interpreter explains
    /// (shapes, missing inputs, failing requirements, unmasked class indices); a JIT error.
    pub fn call<T: Real + Element>(
        &self,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &mut Outputs<'_, T>,
    ) -> Result<f64, CallError> {
        let prog = &*self.lowered;
        if T::DTYPE != prog.dtype {
            return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                "the loss was compiled for {} but called with {} data",
                prog.dtype.name(),
                T::DTYPE.name()
            ))));
        }
        let bound = bind(prog, args, opts.rows)?;
        let (rows, classes) = (bound.rows, bound.classes);
        let mode = opts.reduce.unwrap_or(prog.reduce);
        // Pre-passes over the data, in index order: batch values, requirements, index masks.
        let mut batch_values: HashMap<NodeId, T> = HashMap::new();
        for (i, node) in prog.graph.nodes().iter().enumerate() {
            if !node.op.is_batch() {
                continue;
            }
            let arg = node.args[0];
            let how = match node.op {
                Op::BatchAll => PrePass::Zeros,
                Op::BatchAny => PrePass::Nonzeros,
                _ => PrePass::Values,
            };
            let s = self.sum(arg, how, &bound, &batch_values)?;
            let v = match node.op {
                Op::BatchAll => T::from_f64(if s == 0.0 { 1.0 } else { 0.0 }),
                Op::BatchAny => T::from_f64(if s > 0.0 { 1.0 } else { 0.0 }),
                _ => T::from_f64(s),
            };
            batch_values.insert(NodeId(i as u32), v);
        }
        for req in &prog.requires {
            if self.sum(req.cond, PrePass::Zeros, &bound, &batch_values)? > 0.0 {
                return Err(CallError::Diagnose);
            }
        }
        if bound.any_invalid && self.sum(prog.weight, PrePass::UnmaskedInvalid, &bound, &batch_values)? > 0.0 {
            return Err(CallError::Diagnose);
        }
        let n_items = if prog.loss_kind == Kind::Class { rows * classes } else { rows };
        let denom = match mode {
            ReduceMode::Mean | ReduceMode::MeanOrZero => Some(match prog.graph.constant(prog.over) {
                Some(d) => d * n_items as f64,
                None => {
                    let s = self.sum(prog.over, PrePass::Values, &bound, &batch_values)?;
                    let reps = if prog.graph.kind(prog.over) != Kind::Class && prog.loss_kind == Kind::Class {
                        classes
                    } else {
                        1
                    };
                    s * reps as f64
                }
            }),
            ReduceMode::BatchMean => Some(opts.batch.unwrap_or(rows) as f64),
            ReduceMode::Sum | ReduceMode::None => None,
        };
        let nothing = mode == ReduceMode::MeanOrZero && denom == Some(0.0);
        let seed_uniform = match denom {
            _ if nothing => T::ZERO,
            Some(d) => T::from_f64(1.0 / d),
            None => T::ONE,
        };
        let grad = !out.grad.is_empty();
        let hess = !out.hess.is_empty();
        if hess && prog.derivs.iter().any(|d| d.hess.is_none()) {
            return Err(CallError::Fatal(Diagnostic::error_nowhere("the Hessian was not compiled into this loss")));
        }
        for (what, bufs) in [("gradient", &out.grad), ("Hessian", &out.hess)] {
            if !bufs.is_empty() && bufs.len() != prog.derivs.len() {
                return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                    "{} {what} buffers given for {} preds",
                    bufs.len(),
                    prog.derivs.len()
                ))));
            }
            for (buf, d) in bufs.iter().zip(&prog.derivs) {
                if buf.len() != bound.given[d.input as usize] {
                    return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                        "the {what} buffer of `{}` holds {} values but the pred has {}",
                        prog.inputs[d.input as usize].name,
                        buf.len(),
                        bound.given[d.input as usize]
                    ))));
                }
            }
        }
        let seed_array = mode == ReduceMode::None;
        let kernel = self.kernel(Variant::Main { grad, hess, seed_array }).map_err(|e| CallError::Fatal(e.into()))?;
        let mut table = bound.table(&kernel.layout);
        let seed: Vec<T> = if seed_array {
            match opts.upstream {
                Some(up) if up.len() == n_items => up.to_vec(),
                Some(up) if up.len() == 1 => vec![up[0]; n_items],
                Some(_) => {
                    return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                        "the upstream gradient must hold {n_items} values"
                    ))))
                }
                None => vec![T::ONE; n_items],
            }
        } else {
            Vec::new()
        };
        table[kernel.layout.seed_slot()] = seed.as_ptr() as usize;
        // Outputs: straight into the caller's buffers, or into full-size scratch for preds
        // given as one number or one row (summed back below).
        let mut scratch: Vec<Vec<T>> = Vec::new();
        let mut store_k = 0;
        if seed_array {
            match out.loss_items.as_deref_mut() {
                Some(items) if items.len() == n_items => {
                    table[kernel.layout.store_slot(0)] = items.as_mut_ptr() as usize
                }
                _ => {
                    return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                        "reduce none needs a loss buffer of {n_items} values"
                    ))))
                }
            }
            store_k = 1;
        }
        let mut folds: Vec<(usize, usize)> = Vec::new(); // (store index, scratch index)
        for bufs in [&mut out.grad, &mut out.hess] {
            for (buf, d) in bufs.iter_mut().zip(&prog.derivs) {
                let full = if prog.graph.input_kind(d.input) == Kind::Class { rows * classes } else { rows };
                if buf.len() == full {
                    table[kernel.layout.store_slot(store_k)] = buf.as_mut_ptr() as usize;
                } else {
                    scratch.push(vec![T::ZERO; full]);
                    table[kernel.layout.store_slot(store_k)] =
                        scratch.last_mut().map_or(0, |v| v.as_mut_ptr() as usize);
                    folds.push((store_k, scratch.len() - 1));
                }
                store_k += 1;
            }
        }
        let uniforms = uniform_bytes(&kernel, classes, seed_uniform, &batch_values);
        let total = run_chunks(&kernel, &PtrTable(table), &uniforms, rows, classes);
        // Fold scratch derivatives back to the length the pred was given with.
        let mut k = usize::from(seed_array);
        for bufs in [&mut out.grad, &mut out.hess] {
            for (buf, d) in bufs.iter_mut().zip(&prog.derivs) {
                if let Some((_, sidx)) = folds.iter().find(|(sk, _)| *sk == k).filter(|_| !buf.is_empty()) {
                    let row = if prog.graph.input_kind(d.input) == Kind::Class { classes } else { 1 };
                    let mut acc = vec![0.0f64; buf.len()];
                    for (i, v) in scratch[*sidx].iter().enumerate() {
                        let slot = if buf.len() == 1 { 0 } else { i % row };
                        acc[slot] += v.to_f64();
                    }
                    for (b, a) in buf.iter_mut().zip(acc) {
                        *b = T::from_f64(a);
                    }
                }
                k += 1;
            }
        }
        Ok(match (mode, denom) {
            _ if nothing => 0.0,
            (ReduceMode::None, _) => total,
            (_, Some(d)) => T::from_f64(total / d).to_f64(),
            (_, None) => T::from_f64(total).to_f64(),
        })
    }

    /// Σ of a pre-pass transform of `node` over the data.
    fn sum<T: Real + Element>(
        &self,
        node: NodeId,
        how: PrePass,
        bound: &Bound<'_, T>,
        batch: &HashMap<NodeId, T>,
    ) -> Result<f64, CallError> {
        let prog = &*self.lowered;
        if let (Some(c), PrePass::Values) = (prog.graph.constant(node), how) {
            let n = if prog.graph.kind(node) == Kind::Class { bound.rows * bound.classes } else { bound.rows };
            return Ok(c * n as f64);
        }
        let kernel = self.kernel(Variant::Sum(node, how)).map_err(|e| CallError::Fatal(e.into()))?;
        let table = bound.table(&kernel.layout);
        let uniforms = uniform_bytes(&kernel, bound.classes, T::ONE, batch);
        Ok(run_chunks(&kernel, &PtrTable(table), &uniforms, bound.rows, bound.classes))
    }
}

/// Why a typed call failed.
#[derive(Debug)]
pub enum CallError {
    /// The inputs are wrong; the interpreter's checks say how (see [`JitLoss::evaluate`]).
    Diagnose,
    /// Anything else, already explained.
    Fatal(Diagnostic),
}

/// One named input of a typed call.
#[derive(Clone, Copy, Debug)]
pub struct Arg<'a, T> {
    /// The input's name in the loss file.
    pub name: &'a str,
    /// Its data.
    pub data: Data<'a, T>,
}

fn uniform_bytes<T: Real + Element>(kernel: &Kernel, classes: usize, seed: T, batch: &HashMap<NodeId, T>) -> Vec<u8> {
    let values: Vec<T> = kernel
        .slot_sources
        .iter()
        .map(|s| match s {
            SlotSource::Classes => T::from_f64(classes as f64),
            SlotSource::Seed => seed,
            SlotSource::Batch(id) => batch.get(id).copied().unwrap_or(T::ZERO),
        })
        .collect();
    T::bytes(&values)
}

fn run_chunks(kernel: &Kernel, table: &PtrTable, uniforms: &[u8], rows: usize, classes: usize) -> f64 {
    let chunk_rows = (CHUNK_ELEMENTS / classes.max(1)).max(1);
    let n_chunks = rows.div_ceil(chunk_rows);
    let size = kernel.elem_size;
    let scratch = kernel.scratch_slots * classes.next_multiple_of(16 / size) * size;
    let run_chunk = |c: usize| {
        let begin = c * chunk_rows;
        let end = (begin + chunk_rows).min(rows);
        kernel.code.run(table, uniforms, begin, end, classes, scratch)
    };
    if rows * classes >= PARALLEL_ELEMENTS && n_chunks > 1 {
        use rayon::prelude::*;
        let partials: Vec<f64> = (0..n_chunks).into_par_iter().map(run_chunk).collect();
        neumaier(&partials)
    } else {
        let mut acc = Neumaier::default();
        for c in 0..n_chunks {
            acc.add(run_chunk(c));
        }
        acc.sum()
    }
}

impl<T: Copy> Bound<'_, T> {
    /// The pointer table for `layout` (stores and seed left null for the caller).
    fn table(&self, layout: &Layout) -> Vec<usize> {
        let mut t = vec![0usize; layout.n_ptrs()];
        let n = self.ptrs.len().min(layout.n_inputs);
        t[..n].copy_from_slice(&self.ptrs[..n]);
        for (i, idx) in self.indices.iter().enumerate().take(layout.n_inputs) {
            if !idx.is_empty() {
                t[layout.n_inputs + i] = idx.as_ptr() as usize;
            }
        }
        t
    }
}

/// Checks lengths and binds the inputs: `Diagnose` on anything the interpreter would reject.
fn bind<'a, T: Real>(prog: &Program, args: &[Arg<'a, T>], rows_hint: Option<usize>) -> Result<Bound<'a, T>, CallError> {
    for a in args {
        if prog.input(a.name).is_none() {
            return Err(CallError::Diagnose);
        }
    }
    let find = |name: &str| args.iter().rev().find(|a| a.name == name).map(|a| a.data);
    let (rows, classes) = if prog.class_axis {
        let Some(rows) = rows_hint else {
            return Err(CallError::Fatal(Diagnostic::error_nowhere(
                "a loss with a class axis needs the number of rows",
            )));
        };
        let first = prog
            .inputs
            .iter()
            .filter(|i| i.layout == InputLayout::Classes)
            .filter(|i| i.role == crate::program::Role::Pred)
            .chain(
                prog.inputs.iter().filter(|i| i.layout == InputLayout::Classes && i.role != crate::program::Role::Pred),
            )
            .find_map(|i| find(&i.name).filter(|d| d.len() != 1 || i.role == crate::program::Role::Pred));
        let Some(d) = first else { return Err(CallError::Diagnose) };
        match (rows, d.len()) {
            // No rows: nothing is computed, and any class count will do.
            (0, 0) => (0, 1),
            (0, _) | (_, 0) => return Err(CallError::Diagnose),
            (r, n) if n % r != 0 => return Err(CallError::Diagnose),
            (r, n) => (r, n / r),
        }
    } else {
        let mut n = None;
        for decl in prog
            .inputs
            .iter()
            .filter(|i| i.role == crate::program::Role::Pred)
            .chain(prog.inputs.iter().filter(|i| i.role != crate::program::Role::Pred))
        {
            let Some(d) = find(&decl.name) else { continue };
            if d.len() == 1 {
                continue;
            }
            match n {
                None => n = Some(d.len()),
                Some(m) if m != d.len() => return Err(CallError::Diagnose),
                _ => {}
            }
        }
        (n.unwrap_or(1), 1)
    };
    let mut ptrs = vec![0usize; prog.inputs.len()];
    let mut indices = vec![Vec::new(); prog.inputs.len()];
    let mut owned: Vec<Vec<T>> = Vec::new();
    let mut given = vec![1usize; prog.inputs.len()];
    let mut any_invalid = false;
    for (n, decl) in prog.inputs.iter().enumerate() {
        let data = match (find(&decl.name), decl.default) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) if !decl.used => {
                given[n] = 0;
                continue;
            }
            (None, None) => return Err(CallError::Diagnose),
        };
        let row = if decl.layout == InputLayout::Classes { classes } else { 1 };
        let full = rows * row;
        let len = data.map_or(1, |d| d.len());
        given[n] = len;
        let ok = len == 1 || len == full || (decl.layout == InputLayout::Classes && len == classes);
        if !ok {
            return Err(CallError::Diagnose);
        }
        let values: Option<&[T]> = match data {
            Some(Data::Values(v)) => Some(v),
            _ => None,
        };
        if decl.layout == InputLayout::Index {
            let at = |r: usize| -> f64 {
                let i = if len == 1 { 0 } else { r };
                match data {
                    Some(Data::Values(v)) => v[i].to_f64(),
                    Some(Data::I32(v)) => f64::from(v[i]),
                    #[allow(clippy::cast_precision_loss)]
                    Some(Data::I64(v)) => v[i] as f64,
                    None => f64::NAN,
                }
            };
            let mut idx = Vec::with_capacity(rows);
            for r in 0..rows {
                let k = at(r);
                if !(k.is_finite() && k.fract() == 0.0) {
                    return Err(CallError::Diagnose);
                }
                if (0.0..classes as f64).contains(&k) {
                    idx.push(k as i32);
                } else {
                    any_invalid = true;
                    idx.push(-1);
                }
            }
            indices[n] = idx;
        }
        match values {
            Some(v) if len == full => ptrs[n] = v.as_ptr() as usize,
            _ => {
                let src: Vec<T> = match data {
                    Some(Data::Values(v)) => v.to_vec(),
                    Some(Data::I32(v)) => v.iter().map(|x| T::from_f64(f64::from(*x))).collect(),
                    #[allow(clippy::cast_precision_loss)]
                    Some(Data::I64(v)) => v.iter().map(|x| T::from_f64(*x as f64)).collect(),
                    None => vec![T::from_f64(decl.default.unwrap_or(f64::NAN))],
                };
                owned.push(expand(&src, full, row));
                ptrs[n] = owned.last().map_or(0, |v| v.as_ptr() as usize);
            }
        }
    }
    Ok(Bound { rows, classes, ptrs, indices, _owned: owned, any_invalid, given, _marker: std::marker::PhantomData })
}

/// Element types the kernels compute in.
pub trait Element: Copy {
    /// The dtype of this type.
    const DTYPE: Dtype;
    /// The values' bytes, for the uniform array.
    fn bytes(v: &[Self]) -> Vec<u8>;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }
}

impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }
}

/// `data` (1 value, one row of `row` values, or `full`) repeated to `full` values.
fn expand<T: Copy>(data: &[T], full: usize, row: usize) -> Vec<T> {
    if data.len() == full {
        data.to_vec()
    } else if data.len() == 1 {
        vec![data[0]; full]
    } else {
        data.iter().copied().cycle().take(full).take(full.max(row)).collect()
    }
}

fn neumaier(xs: &[f64]) -> f64 {
    let mut acc = Neumaier::default();
    for x in xs {
        acc.add(*x);
    }
    acc.sum()
}

fn compile_kernel(prog: &Program, v: Variant) -> Result<Kernel, JitError> {
    let (roots, seed_uniform) = match v {
        Variant::Main { grad, hess, seed_array } => {
            let mut roots = vec![prog.loss, prog.weight];
            if grad {
                roots.extend(prog.derivs.iter().map(|d| d.grad));
            }
            if hess {
                roots.extend(prog.derivs.iter().filter_map(|d| d.hess));
            }
            (roots, !seed_array)
        }
        Variant::Sum(node, _) => (vec![node], true),
    };
    let prepared = prepare::prepare(&prog.graph, &roots, seed_uniform);
    if let Some(node) = prepared.graph.nodes().iter().find(|n| !codegen::supported(n.op)) {
        return Err(JitError { message: format!("no code for `{}`", node.op.name()) });
    }
    let mut g = prepared.graph;
    let mut stores = Vec::new();
    let (wl, wl_kind) = match v {
        Variant::Main { grad, hess, seed_array } => {
            let (l, w) = (prepared.roots[0], prepared.roots[1]);
            let wl = g.bin(Op::Mul, w, l);
            if seed_array {
                stores.push((wl, Store::LossItems, prog.loss_kind));
            }
            let mut k = 2;
            for flag in [grad, hess] {
                if !flag {
                    continue;
                }
                for d in &prog.derivs {
                    let dest = prog.graph.input_kind(d.input);
                    stores.push((prepared.roots[k], Store::Output, dest));
                    k += 1;
                }
            }
            (wl, prog.loss_kind)
        }
        Variant::Sum(_, how) => {
            let x = prepared.roots[0];
            let zero = g.cst(0.0);
            let e = match how {
                PrePass::Values => x,
                PrePass::Zeros => g.un(Op::Not, x),
                PrePass::Nonzeros => g.bin(Op::Ne, x, zero),
                PrePass::UnmaskedInvalid => {
                    let mut valid = g.cst(1.0);
                    let c = g.leaf(Op::NumClasses, Kind::Uniform);
                    for (n, decl) in prog.inputs.iter().enumerate() {
                        if decl.layout != InputLayout::Index || !decl.used {
                            continue;
                        }
                        let k = g.leaf(Op::Input(n as u16), Kind::Row);
                        let lo = g.bin(Op::Ge, k, zero);
                        let hi = g.bin(Op::Lt, k, c);
                        let ok = g.bin(Op::And, lo, hi);
                        valid = g.bin(Op::And, valid, ok);
                    }
                    let nz = g.bin(Op::Ne, x, zero);
                    g.select(valid, zero, nz)
                }
            };
            let kind = g.kind(e).max(Kind::Row);
            (e, kind)
        }
    };
    let mut uniform_slots = Vec::new();
    let mut slot_sources = Vec::new();
    for i in 0..g.len() {
        let id = NodeId(i as u32);
        let node = g.node(id);
        let source = match node.op {
            Op::NumClasses => SlotSource::Classes,
            Op::Seed if g.kind(id) == Kind::Uniform => SlotSource::Seed,
            op if op.is_batch() => match prepared.origin.get(&id) {
                Some(orig) => SlotSource::Batch(*orig),
                None => continue,
            },
            _ => continue,
        };
        uniform_slots.push(id);
        slot_sources.push(source);
    }
    // Only used index targets are bound (an unused one may be absent).
    let index_inputs = prog
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| i.layout == InputLayout::Index && i.used)
        .map(|(n, _)| n as u16)
        .collect();
    let layout = Layout { n_inputs: prog.inputs.len(), uniform_slots, stores };
    let roots = Roots { wl, wl_kind, index_inputs };
    let (mut module, features) = new_module()?;
    let (id, scratch_slots) = codegen::codegen(&mut module, &g, &roots, &layout, prog.class_axis, features)?;
    let code = Code::finalize(module, id).map_err(|e| JitError::module(*e))?;
    let elem_size = if prog.dtype == Dtype::F64 { 8 } else { 4 };
    Ok(Kernel { code, layout, scratch_slots, elem_size, slot_sources })
}

/// The host ISA and its math features, built once per process: detecting the CPU and
/// building the flags costs more than compiling a small kernel.
fn host_isa() -> Result<(cranelift_codegen::isa::OwnedTargetIsa, MathFeatures), JitError> {
    static ISA: std::sync::OnceLock<Result<(cranelift_codegen::isa::OwnedTargetIsa, MathFeatures), String>> =
        std::sync::OnceLock::new();
    let built = ISA.get_or_init(|| {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| e.to_string());
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        if !cfg!(debug_assertions) {
            set(&mut flags, "enable_verifier", "false")?;
        }
        let isa_builder = cranelift_native::builder().map_err(str::to_string)?;
        let isa = isa_builder.finish(settings::Flags::new(flags)).map_err(|e| e.to_string())?;
        let features = MathFeatures::from_isa(&*isa);
        Ok((isa, features))
    });
    built.clone().map_err(|message| JitError { message })
}

fn new_module() -> Result<(JITModule, MathFeatures), JitError> {
    let (isa, features) = host_isa()?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, ptr) in abi::libm_symbols() {
        builder.symbol(name, ptr);
    }
    Ok((JITModule::new(builder), features))
}
