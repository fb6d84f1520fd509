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
//! let mut grads = [&mut grad[..]];
//! let mut out = Outputs { grad: &mut grads, hess: &mut [], loss_items: None };
//! let loss = jit.call(&args, &CallOptions { rows: Some(2), ..Default::default() }, &mut out).unwrap();
//! assert_eq!(loss, 0.125);
//! assert_eq!(grad, [-0.5, -0.0]);
//! ```

mod abi;
mod codegen;
pub(crate) mod interp;
mod mathlib;
mod prepare;
pub(crate) mod vecmath;

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

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
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::Values(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Options of a typed call.
#[derive(Clone, Copy, Debug)]
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

impl<T> Default for CallOptions<'_, T> {
    fn default() -> Self {
        CallOptions { reduce: None, rows: None, batch: None, upstream: None }
    }
}

/// Caller-provided output buffers of a typed call.
///
/// Slices rather than vectors, so that a call needs no allocation: the caller keeps its
/// buffers (and the small arrays of borrows) across calls.
#[derive(Debug)]
pub struct Outputs<'a, 'b, T> {
    /// ∂L/∂pred per pred in declaration order (empty: not computed); each as long as the pred's data.
    pub grad: &'a mut [&'b mut [T]],
    /// The Hessian diagonal per pred (empty: not computed).
    pub hess: &'a mut [&'b mut [T]],
    /// W·l per loss value, for `reduce none`.
    pub loss_items: Option<&'a mut [T]>,
}

impl<T> Default for Outputs<'_, '_, T> {
    fn default() -> Self {
        Outputs { grad: &mut [], hess: &mut [], loss_items: None }
    }
}

/// A program with its JIT kernels. `Send + Sync`: call it from any thread.
pub struct JitLoss {
    /// The program as compiled (what [`JitLoss::program`] shows).
    program: Arc<Program>,
    /// The same program with the fused ops the kernels have no code for lowered to
    /// primitive ops, bit for bit as the interpreter computes them; everything the kernels
    /// and pre-passes see comes from it.
    lowered: Arc<Program>,
    /// Unique among all `JitLoss`es ever made (a thread's [`Repeat`] names its loss by it).
    id: u64,
    /// The `batch_*` nodes of `lowered`, in index order: (node, op, argument).
    batch_nodes: Vec<(NodeId, Op, NodeId)>,
    /// One slot per kernel the program can need (planned by [`plan_variants`]), each
    /// compiled on first use; looking one up takes no lock.
    kernels: Arc<Kernels>,
}

/// The kernel slots of a loss, shared with the background optimizer (which holds them
/// weakly, so a dropped loss is never optimized).
struct Kernels {
    /// `lowered` of the loss.
    program: Arc<Program>,
    /// One slot per kernel the program can need (planned by [`plan_variants`]).
    slots: Vec<(Variant, Slot)>,
    /// Whether quick kernels are upgraded in the background.
    upgrade: bool,
}

/// A kernel in two tiers: the quick one is compiled on first use (so a loss is callable
/// soon after its text arrives), the optimized one in the background; calls take the
/// optimized kernel once it exists. Both are translated from the same Cranelift IR, so they
/// compute the same numbers (checked bit for bit by `tests/jit.rs`).
#[derive(Default)]
struct Slot {
    quick: OnceLock<Kernel>,
    optimized: OnceLock<Kernel>,
}

/// The background optimizer: one thread for the process, fed jobs through a channel.
mod optimizer {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    /// Queues `job` for the optimizer thread (or runs it here if the thread cannot start).
    pub(super) fn spawn(job: Job) {
        static TX: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
        let tx = TX.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let started = std::thread::Builder::new().name("lossc-optimizer".into()).spawn(move || {
                for job in rx {
                    job();
                }
            });
            started.ok().map(|_| Mutex::new(tx))
        });
        let rejected = match tx {
            Some(tx) => tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = rejected {
            job();
        }
    }
}

/// Rows per chunk are chosen so a chunk holds about this many elements; chunks are fixed by
/// the data's shape alone, so the reduced loss is the same for any number of threads.
const CHUNK_ELEMENTS: usize = 1 << 14;
/// Below this many elements a call runs on the calling thread.
pub const PARALLEL_ELEMENTS: usize = 1 << 16;

/// From this many elements (rows × classes) a call waits for the optimized kernel rather
/// than run on the quick one: a quick kernel costs a few ns more per element (calls into
/// the shared math, no instruction selection across operations), and the optimized one
/// 1–3 ms to compile.
pub const OPTIMIZE_NOW_ELEMENTS: usize = 1 << 18;

/// The shape of one call's data; the bound pointers themselves are in the [`Scratch`].
#[derive(Clone, Copy)]
struct Bound {
    rows: usize,
    classes: usize,
    /// Some class index lies outside `[0, C)`.
    any_invalid: bool,
    /// Some input was copied out of the caller's data (broadcast or converted), so the
    /// kernel's table depends on the data's contents, not just its addresses.
    copied: bool,
}

/// Buffers a call reuses from one call to the next on the same thread, so that after a
/// warm-up call of the same shape a call below [`PARALLEL_ELEMENTS`] allocates nothing.
///
/// Raw pointers into these buffers go into the kernels' pointer tables: nothing may
/// reallocate a buffer between filling a table and running the kernel (each is filled
/// completely first; pushing to an outer vector moves only the inner vectors' headers).
struct Scratch<T> {
    /// The argument feeding each input (`usize::MAX`: none).
    slots: Vec<usize>,
    /// Data pointer per input (0 when the input is not used): full length, or one row for a
    /// class input of a loss with a class axis whose row step is 0.
    ptrs: Vec<usize>,
    /// Row step in bytes per input (see `Layout::row_step_slot`).
    row_steps: Vec<usize>,
    /// Length each input was given with.
    given: Vec<usize>,
    /// Sanitised class indices per input (-1 out of range); empty for other inputs.
    indices: Vec<Vec<i32>>,
    /// Copies made for broadcasting or conversion, per input.
    owned: Vec<Vec<T>>,
    /// A kernel's pointer table.
    table: Vec<usize>,
    /// A kernel's uniform values, as bytes.
    uniforms: Vec<u8>,
    /// The seed array of `reduce none` when the upstream gradient is not given in full.
    seed: Vec<T>,
    /// Full-size derivatives of preds given as one number or one row, before folding.
    derivs: Vec<Vec<T>>,
    /// (store index, `derivs` index) of each folded derivative.
    folds: Vec<(usize, usize)>,
    /// Folding accumulator.
    acc: Vec<f64>,
    /// Values of the `batch_*` nodes.
    batch: Vec<(NodeId, T)>,
    /// The last call's binding, when `table` and `uniforms` can serve an identical call again.
    repeat: Option<Repeat>,
}

impl<T> Scratch<T> {
    const fn new() -> Scratch<T> {
        Scratch {
            slots: Vec::new(),
            ptrs: Vec::new(),
            row_steps: Vec::new(),
            given: Vec::new(),
            indices: Vec::new(),
            owned: Vec::new(),
            table: Vec::new(),
            uniforms: Vec::new(),
            seed: Vec::new(),
            derivs: Vec::new(),
            folds: Vec::new(),
            acc: Vec::new(),
            batch: Vec::new(),
            repeat: None,
        }
    }

    /// Frees buffers grown past what a call below the parallel threshold needs, so a
    /// thread that once ran a huge call does not keep its copies.
    /// Freeing a buffer also forgets the remembered call, whose table may point into it.
    fn trim(&mut self) {
        fn cap<X>(v: &mut Vec<X>) -> bool {
            let big = v.capacity() > PARALLEL_ELEMENTS;
            if big {
                *v = Vec::new();
            }
            big
        }
        let mut freed = false;
        for v in &mut self.indices {
            freed |= cap(v);
        }
        for v in &mut self.owned {
            freed |= cap(v);
        }
        for v in &mut self.derivs {
            freed |= cap(v);
        }
        freed |= cap(&mut self.seed);
        freed |= cap(&mut self.acc);
        if freed {
            self.repeat = None;
        }
    }
}

/// One scratch per compute type per thread.
struct Scratches {
    f32: Scratch<f32>,
    f64: Scratch<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratches> = const { RefCell::new(Scratches { f32: Scratch::new(), f64: Scratch::new() }) };
}

/// Runs `f` with this thread's scratch for `T`, or with a fresh one when it is in use (a
/// call made from inside another call on the same thread, as rayon's work stealing can do).
fn with_scratch<T: Element, R>(f: impl FnOnce(&mut Scratch<T>) -> R) -> R {
    let mut f = Some(f);
    let res = SCRATCH.try_with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        let s = &mut *guard;
        let scratch = (&mut s.f32 as &mut dyn Any)
            .downcast_mut::<Scratch<T>>()
            .or_else(|| (&mut s.f64 as &mut dyn Any).downcast_mut::<Scratch<T>>())?;
        Some(f.take()?(scratch))
    });
    match (res, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => f(&mut Scratch::new()),
        // `f` is taken only on the path that returns its result.
        (_, None) => unreachable!("the scratch closure ran without a result"),
    }
}

impl JitLoss {
    /// Wraps a compiled program and compiles its default kernel (value and gradient).
    ///
    /// # Errors
    /// A Cranelift error (a bug in lossc).
    pub fn new(program: Program) -> Result<JitLoss, JitError> {
        Self::build(program, true)
    }

    fn build(program: Program, upgrade: bool) -> Result<JitLoss, JitError> {
        let lowered = lower_for_kernels(&program)?;
        let slots = plan_variants(&lowered).into_iter().map(|v| (v, Slot::default())).collect();
        let batch_nodes = (lowered.graph.nodes().iter().enumerate())
            .filter(|(_, node)| node.op.is_batch())
            .map(|(i, node)| (NodeId(i as u32), node.op, node.args[0]))
            .collect();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lowered = Arc::new(lowered);
        let kernels = Arc::new(Kernels { program: Arc::clone(&lowered), slots, upgrade });
        let jit = JitLoss { id, program: Arc::new(program), lowered, batch_nodes, kernels };
        jit.kernel(Variant::Main { grad: true, hess: false, seed_array: false }, 0)?;
        Ok(jit)
    }

    /// Like [`JitLoss::new`], but the quick kernels are never replaced by optimized ones:
    /// for measuring the tiers, and for checking that they compute the same numbers.
    ///
    /// # Errors
    /// As [`JitLoss::new`].
    pub fn new_quick(program: Program) -> Result<JitLoss, JitError> {
        Self::build(program, false)
    }

    /// Compiles, now, the optimized kernel of every variant compiled so far that lacks one
    /// (normally the background optimizer does this soon after first use). For benchmarks,
    /// which should time the optimized kernels.
    ///
    /// # Errors
    /// A Cranelift error (a bug in lossc).
    pub fn optimize_now(&self) -> Result<(), JitError> {
        for (v, slot) in &self.kernels.slots {
            if slot.quick.get().is_some() && slot.optimized.get().is_none() {
                let k = compile_kernel(&self.kernels.program, *v, Tier::Optimized)?;
                let _ = slot.optimized.set(k);
            }
        }
        Ok(())
    }

    /// The program this loss runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The kernel of variant `v` for a call over `elements` elements (rows × classes),
    /// compiled on first use: the quick tier, upgraded in the background, except for a call
    /// of at least [`OPTIMIZE_NOW_ELEMENTS`], which would run longer on the quick kernel than
    /// the optimized one takes to compile, and so compiles that first. Two threads asking
    /// for the same new kernel at once may both compile it; one result is kept, the other freed.
    fn kernel(&self, v: Variant, elements: usize) -> Result<&Kernel, JitError> {
        let Some(n) = self.kernels.slots.iter().position(|(k, _)| *k == v) else {
            return Err(JitError { message: format!("kernel variant {v:?} was not planned") });
        };
        let slot = &self.kernels.slots[n].1;
        if let Some(k) = slot.optimized.get() {
            return Ok(k);
        }
        if self.kernels.upgrade && elements >= OPTIMIZE_NOW_ELEMENTS {
            let k = compile_kernel(&self.lowered, v, Tier::Optimized)?;
            return Ok(slot.optimized.get_or_init(|| k));
        }
        if let Some(k) = slot.quick.get() {
            return Ok(k);
        }
        let k = compile_kernel(&self.lowered, v, Tier::Quick)?;
        let k = slot.quick.get_or_init(|| k);
        if self.kernels.upgrade {
            let weak = Arc::downgrade(&self.kernels);
            optimizer::spawn(Box::new(move || {
                // A loss dropped before its turn costs nothing more.
                let Some(kernels) = weak.upgrade() else { return };
                let slot = &kernels.slots[n].1;
                if slot.optimized.get().is_none() {
                    // On a Cranelift error the quick kernel simply stays.
                    if let Ok(k) = compile_kernel(&kernels.program, v, Tier::Optimized) {
                        let _ = slot.optimized.set(k);
                    }
                }
            }));
        }
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
            let mut grad_refs: Vec<&mut [T]> = grad_bufs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut hess_refs: Vec<&mut [T]> = hess_bufs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut out = Outputs { grad: &mut grad_refs, hess: &mut hess_refs, loss_items: None };
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
        self.interp_error::<T>(inputs, opts).unwrap_or_else(|| {
            Diagnostic::error_nowhere("internal error: the JIT rejected inputs the interpreter accepts")
        })
    }

    /// What the interpreter's checks say about `inputs`, if they reject them.
    pub(crate) fn interp_error<T: Real>(&self, inputs: &[(&str, &Array)], opts: &EvalOptions) -> Option<Diagnostic> {
        Interp::<T>::new(&self.program, inputs, opts).and_then(|mut i| i.setup().map(|_| ())).err()
    }

    /// Calls the loss on typed data: returns the reduced loss and fills `out`.
    ///
    /// Below [`PARALLEL_ELEMENTS`] the call runs on the calling thread and, after a first
    /// call of the same shape on that thread, allocates nothing (its buffers are reused).
    ///
    /// # Errors
    /// [`CallError::Diagnose`] when the inputs are wrong in a way the interpreter explains
    /// (shapes, missing inputs, failing requirements, unmasked class indices); a JIT error.
    pub fn call<T: Real + Element>(
        &self,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &mut Outputs<'_, '_, T>,
    ) -> Result<f64, CallError> {
        if T::DTYPE != self.lowered.dtype {
            return Err(CallError::Fatal(Diagnostic::error_nowhere(format!(
                "the loss was compiled for {} but called with {} data",
                self.lowered.dtype.name(),
                T::DTYPE.name()
            ))));
        }
        // The error is boxed until here: a small result keeps the success path cheap.
        with_scratch(|s: &mut Scratch<T>| {
            let res = self.call_in(args, opts, out, s);
            if s.repeat.is_none() {
                s.trim();
            }
            res
        })
        .map_err(|e| *e)
    }

    fn call_in<T: Real + Element>(
        &self,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &mut Outputs<'_, '_, T>,
        s: &mut Scratch<T>,
    ) -> Result<f64, Box<CallError>> {
        let prog = &*self.lowered;
        if let Some(repeat) = s.repeat.as_ref().filter(|r| r.matches(self.id, args, opts, out)) {
            // The same call again (same loss, names, data addresses and lengths, options
            // and buffers) of a loss whose table does not depend on the data's contents.
            let kernel =
                self.kernel(repeat.variant, repeat.rows * repeat.classes).map_err(|e| CallError::Fatal(e.into()))?;
            let total = run_chunks(kernel, &PtrTable(&s.table), &s.uniforms, repeat.rows, repeat.classes);
            return Ok(finish::<T>(repeat.mode, repeat.denom, repeat.nothing, total));
        }
        s.repeat = None;
        let bound = bind(prog, args, opts.rows, s)?;
        let (rows, classes) = (bound.rows, bound.classes);
        let mode = opts.reduce.unwrap_or(prog.reduce);
        // Pre-passes over the data, in index order: batch values, requirements, index masks.
        s.batch.clear();
        for &(id, op, arg) in &self.batch_nodes {
            let sum = self.sum(arg, batch_prepass(op), bound, s)?;
            s.batch.push((id, batch_value(op, sum)));
        }
        for req in &prog.requires {
            if self.sum(req.cond, PrePass::Zeros, bound, s)? > 0.0 {
                return Err(Box::new(CallError::Diagnose));
            }
        }
        if bound.any_invalid && self.sum(prog.weight, PrePass::UnmaskedInvalid, bound, s)? > 0.0 {
            return Err(Box::new(CallError::Diagnose));
        }
        let n_items = if prog.loss_kind == Kind::Class { rows * classes } else { rows };
        let denom = match mode {
            ReduceMode::Mean | ReduceMode::MeanOrZero => Some(match prog.graph.constant(prog.over) {
                Some(d) => d * n_items as f64,
                None => {
                    let sum = self.sum(prog.over, PrePass::Values, bound, s)?;
                    let reps = if prog.graph.kind(prog.over) != Kind::Class && prog.loss_kind == Kind::Class {
                        classes
                    } else {
                        1
                    };
                    sum * reps as f64
                }
            }),
            ReduceMode::BatchMean => Some(opts.batch.unwrap_or(rows) as f64),
            ReduceMode::Sum | ReduceMode::None => None,
        };
        let (nothing, seed_uniform) = uniform_seed::<T>(mode, denom);
        let grad = !out.grad.is_empty();
        let hess = !out.hess.is_empty();
        if hess && prog.derivs.iter().any(|d| d.hess.is_none()) {
            return Err(fatal(Diagnostic::error_nowhere("the Hessian was not compiled into this loss")));
        }
        for (what, bufs) in [("gradient", &*out.grad), ("Hessian", &*out.hess)] {
            if !bufs.is_empty() && bufs.len() != prog.derivs.len() {
                return Err(fatal(Diagnostic::error_nowhere(format!(
                    "{} {what} buffers given for {} preds",
                    bufs.len(),
                    prog.derivs.len()
                ))));
            }
            for (buf, d) in bufs.iter().zip(&prog.derivs) {
                if buf.len() != s.given[d.input as usize] {
                    return Err(fatal(Diagnostic::error_nowhere(format!(
                        "the {what} buffer of `{}` holds {} values but the pred has {}",
                        prog.inputs[d.input as usize].name,
                        buf.len(),
                        s.given[d.input as usize]
                    ))));
                }
            }
        }
        let seed_array = mode == ReduceMode::None;
        let kernel = self
            .kernel(Variant::Main { grad, hess, seed_array }, rows * classes)
            .map_err(|e| CallError::Fatal(e.into()))?;
        fill_table(&mut s.table, &kernel.layout, &s.ptrs, &s.row_steps, &s.indices);
        s.seed.clear();
        let seed_ptr = match opts.upstream {
            Some(up) if seed_array && up.len() == n_items => up.as_ptr(),
            Some(up) if seed_array && up.len() == 1 => {
                s.seed.resize(n_items, up[0]);
                s.seed.as_ptr()
            }
            Some(_) if seed_array => {
                return Err(fatal(Diagnostic::error_nowhere(format!(
                    "the upstream gradient must hold {n_items} values"
                ))))
            }
            None if seed_array => {
                s.seed.resize(n_items, T::ONE);
                s.seed.as_ptr()
            }
            _ => s.seed.as_ptr(),
        };
        s.table[kernel.layout.seed_slot()] = seed_ptr as usize;
        // Outputs: straight into the caller's buffers, or into full-size scratch for preds
        // given as one number or one row (summed back below).
        s.folds.clear();
        let mut store_k = 0;
        if seed_array {
            match out.loss_items.as_deref_mut() {
                Some(items) if items.len() == n_items => {
                    s.table[kernel.layout.store_slot(0)] = items.as_mut_ptr() as usize
                }
                _ => {
                    return Err(fatal(Diagnostic::error_nowhere(format!(
                        "reduce none needs a loss buffer of {n_items} values"
                    ))))
                }
            }
            store_k = 1;
        }
        for bufs in [&mut *out.grad, &mut *out.hess] {
            for (buf, d) in bufs.iter_mut().zip(&prog.derivs) {
                let full = if prog.graph.input_kind(d.input) == Kind::Class { rows * classes } else { rows };
                if buf.len() == full {
                    s.table[kernel.layout.store_slot(store_k)] = buf.as_mut_ptr() as usize;
                } else {
                    let k = s.folds.len();
                    if s.derivs.len() <= k {
                        s.derivs.push(Vec::new());
                    }
                    s.derivs[k].clear();
                    s.derivs[k].resize(full, T::ZERO);
                    s.table[kernel.layout.store_slot(store_k)] = s.derivs[k].as_mut_ptr() as usize;
                    s.folds.push((store_k, k));
                }
                store_k += 1;
            }
        }
        fill_uniforms(&mut s.uniforms, kernel, classes, seed_uniform, &s.batch);
        let total = run_chunks(kernel, &PtrTable(&s.table), &s.uniforms, rows, classes);
        // The table depends only on addresses when nothing was copied, sanitised, folded or
        // summed from the data's contents: an identical call may then reuse it.
        let from_contents = bound.copied
            || bound.any_invalid
            || !s.folds.is_empty()
            || !self.batch_nodes.is_empty()
            || !prog.requires.is_empty()
            || s.indices.iter().any(|i| !i.is_empty())
            || (matches!(mode, ReduceMode::Mean | ReduceMode::MeanOrZero) && prog.graph.constant(prog.over).is_none())
            || (seed_array && opts.upstream.is_some_and(|u| u.len() != n_items));
        if !from_contents {
            let variant = Variant::Main { grad, hess, seed_array };
            s.repeat = Repeat::new(self.id, args, opts, out, variant, (rows, classes), (mode, denom, nothing));
        }
        // Fold scratch derivatives back to the length the pred was given with.
        let mut k = usize::from(seed_array);
        for bufs in [&mut *out.grad, &mut *out.hess] {
            for (buf, d) in bufs.iter_mut().zip(&prog.derivs) {
                if let Some(&(_, sidx)) = s.folds.iter().find(|(sk, _)| *sk == k).filter(|_| !buf.is_empty()) {
                    let row = if prog.graph.input_kind(d.input) == Kind::Class { classes } else { 1 };
                    s.acc.clear();
                    s.acc.resize(buf.len(), 0.0);
                    for (i, v) in s.derivs[sidx].iter().enumerate() {
                        let slot = if buf.len() == 1 { 0 } else { i % row };
                        s.acc[slot] += v.to_f64();
                    }
                    for (b, a) in buf.iter_mut().zip(&s.acc) {
                        *b = T::from_f64(*a);
                    }
                }
                k += 1;
            }
        }
        Ok(finish::<T>(mode, denom, nothing, total))
    }

    /// Σ of a pre-pass transform of `node` over the data bound in `s`.
    fn sum<T: Real + Element>(
        &self,
        node: NodeId,
        how: PrePass,
        bound: Bound,
        s: &mut Scratch<T>,
    ) -> Result<f64, CallError> {
        let prog = &*self.lowered;
        if let (Some(c), PrePass::Values) = (prog.graph.constant(node), how) {
            let n = if prog.graph.kind(node) == Kind::Class { bound.rows * bound.classes } else { bound.rows };
            return Ok(c * n as f64);
        }
        let kernel =
            self.kernel(Variant::Sum(node, how), bound.rows * bound.classes).map_err(|e| CallError::Fatal(e.into()))?;
        fill_table(&mut s.table, &kernel.layout, &s.ptrs, &s.row_steps, &s.indices);
        fill_uniforms(&mut s.uniforms, kernel, bound.classes, T::ONE, &s.batch);
        Ok(run_chunks(kernel, &PtrTable(&s.table), &s.uniforms, bound.rows, bound.classes))
    }
}

/// The value-and-gradient kernel alone, bound once to one call's data: what a caller that
/// skipped every check and binding step would run. It exists for the overhead benchmark
/// (`benches/api.rs`) and is not part of the API.
#[doc(hidden)]
pub struct DirectKernel<'a, T> {
    kernel: &'a Kernel,
    scratch: Scratch<T>,
    rows: usize,
    classes: usize,
    /// The table holds pointers into the inputs and the gradient buffer.
    _borrows: std::marker::PhantomData<&'a mut [T]>,
}

impl<T> DirectKernel<'_, T> {
    /// Runs the kernel over every row: Σ W·l, with the gradient (seeded 1/n) written.
    pub fn run(&self) -> f64 {
        run_chunks(self.kernel, &PtrTable(&self.scratch.table), &self.scratch.uniforms, self.rows, self.classes)
    }
}

impl JitLoss {
    /// Binds `args` and `grad` (the full-length gradient of a loss's only pred) for
    /// [`DirectKernel::run`]; see there.
    ///
    /// # Errors
    /// Inputs the typed call would reject, a loss with pre-passes or several preds, or a
    /// gradient buffer that is not full length.
    #[doc(hidden)]
    pub fn direct<'a, T: Element>(
        &'a self,
        args: &[Arg<'a, T>],
        rows: usize,
        grad: &'a mut [T],
    ) -> Result<DirectKernel<'a, T>, CallError> {
        let prog = &*self.lowered;
        let unsupported = || CallError::Fatal(Diagnostic::error_nowhere("no direct kernel for this loss or data"));
        if T::DTYPE != prog.dtype || prog.derivs.len() != 1 || prog.graph.constant(prog.over).is_none() {
            return Err(unsupported());
        }
        if !prog.requires.is_empty() || prog.graph.nodes().iter().any(|n| n.op.is_batch()) {
            return Err(unsupported());
        }
        let mut s = Scratch::new();
        let bound = bind(prog, args, Some(rows), &mut s)?;
        let n_items = if prog.loss_kind == Kind::Class { bound.rows * bound.classes } else { bound.rows };
        if bound.any_invalid || grad.len() != s.given[prog.derivs[0].input as usize] {
            return Err(unsupported());
        }
        let kernel = self
            .kernel(Variant::Main { grad: true, hess: false, seed_array: false }, bound.rows * bound.classes)
            .map_err(|e| CallError::Fatal(e.into()))?;
        fill_table(&mut s.table, &kernel.layout, &s.ptrs, &s.row_steps, &s.indices);
        s.table[kernel.layout.seed_slot()] = s.seed.as_ptr() as usize;
        s.table[kernel.layout.store_slot(0)] = grad.as_mut_ptr() as usize;
        fill_uniforms(&mut s.uniforms, kernel, bound.classes, T::from_f64(1.0 / n_items as f64), &[]);
        Ok(DirectKernel {
            kernel,
            scratch: s,
            rows: bound.rows,
            classes: bound.classes,
            _borrows: std::marker::PhantomData,
        })
    }
}

fn fatal(d: Diagnostic) -> Box<CallError> {
    Box::new(CallError::Fatal(d))
}

/// The reduced loss from the kernel's Σ W·l.
fn finish<T: Element>(mode: ReduceMode, denom: Option<f64>, nothing: bool, total: f64) -> f64 {
    match (mode, denom) {
        _ if nothing => 0.0,
        (ReduceMode::None, _) => total,
        (_, Some(d)) => T::from_f64(total / d).to_f64(),
        (_, None) => T::from_f64(total).to_f64(),
    }
}

/// Most arguments, name bytes and output buffers a [`Repeat`] remembers.
const REPEAT_ARGS: usize = 8;
const REPEAT_NAME: usize = 32;
const REPEAT_BUFS: usize = 4;

/// What identifies a call whose bound table can be reused: the loss, each argument's name
/// (its bytes: a name's address may be reused for another name) and data (address, length,
/// type), the options, and every output buffer's address and length. Data addresses are
/// compared, never dereferenced.
#[derive(Clone, Copy)]
struct RepeatKey {
    loss: u64,
    n_args: usize,
    names: [([u8; REPEAT_NAME], usize); REPEAT_ARGS],
    data: [(usize, usize, u8); REPEAT_ARGS],
    rows: Option<usize>,
    reduce: Option<ReduceMode>,
    batch: Option<usize>,
    upstream: Option<(usize, usize)>,
    n_grad: usize,
    n_hess: usize,
    bufs: [(usize, usize); 2 * REPEAT_BUFS],
    items: Option<(usize, usize)>,
}

impl RepeatKey {
    /// The key of a call, if it is small enough to remember.
    fn of<T>(loss: u64, args: &[Arg<'_, T>], opts: &CallOptions<'_, T>, out: &Outputs<'_, '_, T>) -> Option<RepeatKey> {
        if args.len() > REPEAT_ARGS || out.grad.len() > REPEAT_BUFS || out.hess.len() > REPEAT_BUFS {
            return None;
        }
        let mut key = RepeatKey {
            loss,
            n_args: args.len(),
            names: [([0; REPEAT_NAME], 0); REPEAT_ARGS],
            data: [(0, 0, 0); REPEAT_ARGS],
            rows: opts.rows,
            reduce: opts.reduce,
            batch: opts.batch,
            upstream: opts.upstream.map(|u| (u.as_ptr() as usize, u.len())),
            n_grad: out.grad.len(),
            n_hess: out.hess.len(),
            bufs: [(0, 0); 2 * REPEAT_BUFS],
            items: out.loss_items.as_deref().map(|v| (v.as_ptr() as usize, v.len())),
        };
        for (i, a) in args.iter().enumerate() {
            let name = a.name.as_bytes();
            key.names[i].0.get_mut(..name.len())?.copy_from_slice(name);
            key.names[i].1 = name.len();
            key.data[i] = match a.data {
                Data::Values(v) => (v.as_ptr() as usize, v.len(), 0),
                Data::I32(v) => (v.as_ptr() as usize, v.len(), 1),
                Data::I64(v) => (v.as_ptr() as usize, v.len(), 2),
            };
        }
        for (i, b) in out.grad.iter().chain(out.hess.iter()).enumerate() {
            key.bufs[i] = (b.as_ptr() as usize, b.len());
        }
        Some(key)
    }
}

/// A remembered call: its key and what the result needs besides the kernel's sum.
struct Repeat {
    key: RepeatKey,
    variant: Variant,
    rows: usize,
    classes: usize,
    mode: ReduceMode,
    denom: Option<f64>,
    nothing: bool,
}

impl Repeat {
    fn new<T>(
        loss: u64,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &Outputs<'_, '_, T>,
        variant: Variant,
        (rows, classes): (usize, usize),
        (mode, denom, nothing): (ReduceMode, Option<f64>, bool),
    ) -> Option<Repeat> {
        let key = RepeatKey::of(loss, args, opts, out)?;
        Some(Repeat { key, variant, rows, classes, mode, denom, nothing })
    }

    /// True when the call is the remembered one (compared in place, without building a key).
    fn matches<T>(&self, loss: u64, args: &[Arg<'_, T>], opts: &CallOptions<'_, T>, out: &Outputs<'_, '_, T>) -> bool {
        let k = &self.key;
        let span = |v: &[T]| (v.as_ptr() as usize, v.len());
        if k.loss != loss
            || k.n_args != args.len()
            || k.rows != opts.rows
            || k.reduce != opts.reduce
            || k.batch != opts.batch
            || k.upstream != opts.upstream.map(span)
            || k.n_grad != out.grad.len()
            || k.n_hess != out.hess.len()
            || k.items != out.loss_items.as_deref().map(span)
        {
            return false;
        }
        let same_args = args.iter().zip(&k.names).zip(&k.data).all(|((a, (bytes, len)), data)| {
            let here = match a.data {
                Data::Values(v) => (v.as_ptr() as usize, v.len(), 0),
                Data::I32(v) => (v.as_ptr() as usize, v.len(), 1),
                Data::I64(v) => (v.as_ptr() as usize, v.len(), 2),
            };
            here == *data && bytes.get(..*len) == Some(a.name.as_bytes())
        });
        same_args && out.grad.iter().chain(out.hess.iter()).zip(&k.bufs).all(|(b, kb)| span(b) == *kb)
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

impl<'a, T> Arg<'a, T> {
    /// Numbers in the compute type (for any input; index targets must be integral).
    pub fn values(name: &'a str, data: &'a [T]) -> Arg<'a, T> {
        Arg { name, data: Data::Values(data) }
    }

    /// 32-bit class indices for an index target.
    pub fn i32(name: &'a str, data: &'a [i32]) -> Arg<'a, T> {
        Arg { name, data: Data::I32(data) }
    }

    /// 64-bit class indices for an index target.
    pub fn i64(name: &'a str, data: &'a [i64]) -> Arg<'a, T> {
        Arg { name, data: Data::I64(data) }
    }
}

/// Every kernel variant `prog` can need: value/gradient/Hessian kernels with either seed,
/// and the pre-pass sums that `JitLoss::call_in` asks for.
fn plan_variants(prog: &Program) -> Vec<Variant> {
    let mut variants = Vec::new();
    for grad in [true, false] {
        for hess in [false, true] {
            for seed_array in [false, true] {
                variants.push(Variant::Main { grad, hess, seed_array });
            }
        }
    }
    let mut sums = Vec::new();
    for node in prog.graph.nodes() {
        match node.op {
            Op::BatchAll => sums.push((node.args[0], PrePass::Zeros)),
            Op::BatchAny => sums.push((node.args[0], PrePass::Nonzeros)),
            op if op.is_batch() => sums.push((node.args[0], PrePass::Values)),
            _ => {}
        }
    }
    sums.extend(prog.requires.iter().map(|r| (r.cond, PrePass::Zeros)));
    sums.push((prog.over, PrePass::Values));
    sums.push((prog.weight, PrePass::UnmaskedInvalid));
    for (node, how) in sums {
        let v = Variant::Sum(node, how);
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    variants
}

/// The uniform array of `kernel`: C, the seed and the `batch_*` values, as bytes.
fn fill_uniforms<T: Real + Element>(
    buf: &mut Vec<u8>,
    kernel: &Kernel,
    classes: usize,
    seed: T,
    batch: &[(NodeId, T)],
) {
    buf.clear();
    for source in &kernel.slot_sources {
        source.value(classes, seed, batch).push_bytes(buf);
    }
}

impl SlotSource {
    /// The slot's value in a call with `classes` classes, this seed and these `batch_*` values.
    fn value<T: Real>(self, classes: usize, seed: T, batch: &[(NodeId, T)]) -> T {
        match self {
            SlotSource::Classes => T::from_f64(classes as f64),
            SlotSource::Seed => seed,
            SlotSource::Batch(id) => batch.iter().find(|(n, _)| *n == id).map_or(T::ZERO, |(_, v)| *v),
        }
    }
}

/// `program` with the fused ops the kernels have no code for lowered to primitive ops (bit
/// for bit as the interpreter computes them): what every kernel and pre-pass is built from.
///
/// # Errors
/// A lowering failure (a bug in lossc).
pub(crate) fn lower_for_kernels(program: &Program) -> Result<Program, JitError> {
    let mut lowered = program.clone();
    // sigmoid, softplus and log_sigmoid have inline code of their own.
    let keep = ["lower-sigmoid", "lower-softplus", "lower-log-sigmoid"];
    crate::stabilize::lower_fused_except(&mut lowered, &keep).map_err(|d| JitError { message: d.message })?;
    Ok(lowered)
}

/// Rows per chunk for rows of `classes` values (1 without a class axis): the fixed chunking
/// that makes the reduced loss independent of the number of threads.
pub(crate) fn chunk_rows(classes: usize) -> usize {
    (CHUNK_ELEMENTS / classes.max(1)).max(1)
}

fn run_chunks(kernel: &Kernel, table: &PtrTable<'_>, uniforms: &[u8], rows: usize, classes: usize) -> f64 {
    let chunk_rows = chunk_rows(classes);
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

/// The pointer table for `layout` (stores and seed left null for the caller).
fn fill_table(table: &mut Vec<usize>, layout: &Layout, ptrs: &[usize], row_steps: &[usize], indices: &[Vec<i32>]) {
    table.clear();
    table.resize(layout.n_ptrs(), 0);
    let n = ptrs.len().min(layout.n_inputs);
    table[..n].copy_from_slice(&ptrs[..n]);
    for (i, step) in row_steps.iter().enumerate().take(layout.n_inputs) {
        table[layout.row_step_slot(i)] = *step;
    }
    for (i, idx) in indices.iter().enumerate().take(layout.n_inputs) {
        if !idx.is_empty() {
            table[layout.n_inputs + i] = idx.as_ptr() as usize;
        }
    }
}

/// Checks lengths and binds the inputs into `s`: `Diagnose` on anything the interpreter
/// would reject.
fn bind<T: Real>(
    prog: &Program,
    args: &[Arg<'_, T>],
    rows_hint: Option<usize>,
    s: &mut Scratch<T>,
) -> Result<Bound, CallError> {
    // Which argument feeds each input (a later argument of the same name wins).
    let n_inputs = prog.inputs.len();
    s.slots.clear();
    s.slots.resize(n_inputs, usize::MAX);
    for (i, a) in args.iter().enumerate() {
        match prog.inputs.iter().position(|d| d.name == a.name) {
            Some(n) => s.slots[n] = i,
            None => return Err(CallError::Diagnose),
        }
    }
    let slots = &s.slots;
    let find = |n: usize| args.get(slots[n]).map(|a| a.data);
    let is_pred = |n: usize| prog.inputs[n].role == crate::program::Role::Pred;
    // Preds first, then the other inputs, each in declaration order.
    let pred_first = (0..n_inputs).filter(|n| is_pred(*n)).chain((0..n_inputs).filter(|n| !is_pred(*n)));
    let (rows, classes) = if prog.class_axis {
        let Some(rows) = rows_hint else {
            return Err(CallError::Fatal(Diagnostic::error_nowhere(
                "a loss with a class axis needs the number of rows",
            )));
        };
        let first = pred_first
            .filter(|n| prog.inputs[*n].layout == InputLayout::Classes)
            .find_map(|n| find(n).filter(|d| d.len() != 1 || is_pred(n)));
        let Some(d) = first else { return Err(CallError::Diagnose) };
        match (rows, d.len()) {
            // No rows: nothing is computed, and any class count will do.
            (0, 0) => (0, 1),
            (0, _) | (_, 0) => return Err(CallError::Diagnose),
            (r, n) if n % r != 0 => return Err(CallError::Diagnose),
            (r, n) => (r, n / r),
        }
    } else {
        let mut len = None;
        for n in pred_first {
            let Some(d) = find(n) else { continue };
            if d.len() == 1 {
                continue;
            }
            match len {
                None => len = Some(d.len()),
                Some(m) if m != d.len() => return Err(CallError::Diagnose),
                _ => {}
            }
        }
        (len.unwrap_or(1), 1)
    };
    s.ptrs.clear();
    s.ptrs.resize(n_inputs, 0);
    s.row_steps.clear();
    s.row_steps.resize(n_inputs, 0);
    s.given.clear();
    s.given.resize(n_inputs, 1);
    if s.indices.len() < n_inputs {
        s.indices.resize_with(n_inputs, Vec::new);
    }
    if s.owned.len() < n_inputs {
        s.owned.resize_with(n_inputs, Vec::new);
    }
    s.indices.iter_mut().for_each(Vec::clear);
    let mut any_invalid = false;
    let mut copied = false;
    for (n, decl) in prog.inputs.iter().enumerate() {
        let data = match (args.get(s.slots[n]).map(|a| a.data), decl.default) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) if !decl.used => {
                s.given[n] = 0;
                continue;
            }
            (None, None) => return Err(CallError::Diagnose),
        };
        let row = if decl.layout == InputLayout::Classes { classes } else { 1 };
        let full = rows * row;
        let len = data.map_or(1, |d| d.len());
        s.given[n] = len;
        let ok = len == 1 || len == full || (decl.layout == InputLayout::Classes && len == classes);
        if !ok {
            return Err(CallError::Diagnose);
        }
        // The value of element `i` of the data as given, in f64.
        let at = |i: usize| -> f64 {
            match data {
                Some(Data::Values(v)) => v[i].to_f64(),
                Some(Data::I32(v)) => f64::from(v[i]),
                #[allow(clippy::cast_precision_loss)]
                Some(Data::I64(v)) => v[i] as f64,
                None => decl.default.unwrap_or(f64::NAN),
            }
        };
        if decl.layout == InputLayout::Index {
            let idx = &mut s.indices[n];
            idx.reserve(rows);
            for r in 0..rows {
                let k = at(if len == 1 { 0 } else { r });
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
        }
        // A class input (with a class axis) given as one row, or as one number, or left at its
        // default: the kernels read one row for every row (row step 0) instead of a copy
        // repeated to full length (a `[C]` weight cost as much as the logits).
        let one_row = prog.class_axis && decl.layout == InputLayout::Classes && len != full;
        if prog.class_axis && decl.layout == InputLayout::Classes && !one_row {
            s.row_steps[n] = classes * std::mem::size_of::<T>();
        }
        match data {
            Some(Data::Values(v)) if len == full || (one_row && len == classes) => s.ptrs[n] = v.as_ptr() as usize,
            _ if one_row => {
                copied |= data.is_some();
                let owned = &mut s.owned[n];
                owned.clear();
                owned.extend((0..classes).map(|i| T::from_f64(at(if len == classes { i } else { 0 }))));
                s.ptrs[n] = owned.as_ptr() as usize;
            }
            _ => {
                // One number, one row, or integer data: repeated and converted to full length.
                copied |= data.is_some();
                let owned = &mut s.owned[n];
                owned.clear();
                owned.reserve(full);
                owned.extend((0..full).map(|i| T::from_f64(at(if len == 0 { 0 } else { i % len }))));
                s.ptrs[n] = owned.as_ptr() as usize;
            }
        }
    }
    Ok(Bound { rows, classes, any_invalid, copied })
}

/// Element types the kernels compute in: `f32` and `f64`.
pub trait Element: Real {
    /// The dtype of this type.
    const DTYPE: Dtype;
    /// Appends the value's bytes (native order) to the uniform array.
    fn push_bytes(self, out: &mut Vec<u8>);
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn push_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
}

impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn push_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_ne_bytes());
    }
}

fn neumaier(xs: &[f64]) -> f64 {
    let mut acc = Neumaier::default();
    for x in xs {
        acc.add(*x);
    }
    acc.sum()
}

/// The graph one kernel variant evaluates, with what its caller must bind: everything the
/// code generator translates, and what the kernel interpreter (`interp.rs`) evaluates.
pub(crate) struct KernelGraph {
    /// The prepared graph, W·l or the pre-pass transform added.
    pub(crate) graph: crate::ir::Graph,
    /// Pointer table, uniform slots and stores.
    pub(crate) layout: Layout,
    /// W·l, its kind and the index targets whose rows are masked.
    pub(crate) roots: Roots,
    /// Where each uniform slot's value comes from.
    slot_sources: Vec<SlotSource>,
}

/// The graph of variant `v` of `prog` (the lowered program).
///
/// # Errors
/// An op the code generator has no code for (a bug in lossc).
fn kernel_graph(prog: &Program, v: Variant) -> Result<KernelGraph, JitError> {
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
    let preds = prog.inputs.iter().map(|i| i.role == crate::program::Role::Pred).collect();
    let layout = Layout { n_inputs: prog.inputs.len(), preds, uniform_slots, stores };
    let roots = Roots { wl, wl_kind, index_inputs };
    Ok(KernelGraph { graph: g, layout, roots, slot_sources })
}

/// The uniform seed of a reduction whose mean divides by `denom` (None: no division), and
/// whether the reduction is `mean_or_zero` over nothing (seed 0, loss 0).
fn uniform_seed<T: Real>(mode: ReduceMode, denom: Option<f64>) -> (bool, T) {
    let nothing = mode == ReduceMode::MeanOrZero && denom == Some(0.0);
    let seed = match denom {
        _ if nothing => T::ZERO,
        Some(d) => T::from_f64(1.0 / d),
        None => T::ONE,
    };
    (nothing, seed)
}

/// The pre-pass that a batch node (`batch_all`, `batch_any`, `batch_sum`, ...) sums over.
fn batch_prepass(op: Op) -> PrePass {
    match op {
        Op::BatchAll => PrePass::Zeros,
        Op::BatchAny => PrePass::Nonzeros,
        _ => PrePass::Values,
    }
}

/// A batch node's value from the sum of its [`batch_prepass`].
fn batch_value<T: Real>(op: Op, sum: f64) -> T {
    match op {
        Op::BatchAll => T::from_f64(if sum == 0.0 { 1.0 } else { 0.0 }),
        Op::BatchAny => T::from_f64(if sum > 0.0 { 1.0 } else { 0.0 }),
        _ => T::from_f64(sum),
    }
}

fn compile_kernel(prog: &Program, v: Variant, tier: Tier) -> Result<Kernel, JitError> {
    let KernelGraph { graph: g, layout, roots, slot_sources } = kernel_graph(prog, v)?;
    let (mut module, features) = new_module(tier)?;
    let (id, scratch_slots) =
        codegen::codegen(&mut module, &g, &roots, &layout, prog.class_axis, features, tier == Tier::Quick)?;
    let code = Code::finalize(module, id).map_err(|e| JitError::module(*e))?;
    let elem_size = if prog.dtype == Dtype::F64 { 8 } else { 4 };
    Ok(Kernel { code, layout, scratch_slots, elem_size, slot_sources })
}

/// How much work Cranelift puts into a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// No middle-end optimization, single-pass register allocation: callable in a fraction
    /// of the time, about half as fast.
    Quick,
    /// `opt_level = speed` and the backtracking register allocator.
    Optimized,
}

/// The host ISA of a tier and its math features, built once per process: detecting the
/// CPU and building the flags costs more than compiling a small kernel.
pub(crate) fn host_isa(tier: Tier) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, MathFeatures), JitError> {
    type Built = Result<(cranelift_codegen::isa::OwnedTargetIsa, MathFeatures), String>;
    static QUICK: OnceLock<Built> = OnceLock::new();
    static OPTIMIZED: OnceLock<Built> = OnceLock::new();
    let build = || -> Built {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| e.to_string());
        match tier {
            Tier::Quick => {
                set(&mut flags, "opt_level", "none")?;
                set(&mut flags, "regalloc_algorithm", "single_pass")?;
            }
            Tier::Optimized => set(&mut flags, "opt_level", "speed")?,
        }
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        if !cfg!(debug_assertions) {
            set(&mut flags, "enable_verifier", "false")?;
        }
        let isa_builder = cranelift_native::builder().map_err(str::to_string)?;
        let isa = isa_builder.finish(settings::Flags::new(flags)).map_err(|e| e.to_string())?;
        let features = MathFeatures::from_isa(&*isa);
        Ok((isa, features))
    };
    let built = match tier {
        Tier::Quick => QUICK.get_or_init(build),
        Tier::Optimized => OPTIMIZED.get_or_init(build),
    };
    built.clone().map_err(|message| JitError { message })
}

fn new_module(tier: Tier) -> Result<(JITModule, MathFeatures), JitError> {
    let (isa, features) = host_isa(tier)?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, ptr) in abi::libm_symbols() {
        builder.symbol(name, ptr);
    }
    Ok((JITModule::new(builder), features))
}
