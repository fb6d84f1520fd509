//! Code generation: a prepared graph to one Cranelift function that computes, for a range
//! of rows, every requested output and the partial sum Σ W·l in f64.
//!
//! Two loop shapes:
//! - without a class axis, lanes run across elements (`f32x4`/`f64x2`, unrolled by two)
//!   with a scalar tail;
//! - with one, rows run one after another and lanes run across the classes of a row. Class
//!   values are computed in *passes* over the row: a pass is one loop over the classes that
//!   accumulates the row reductions (`sum`, `max`, `min`) whose arguments it can compute;
//!   values that need a reduction's result go to a later pass. A class value a later pass
//!   needs again is kept in scratch (one array of C per value, in L1) when it costs an inline
//!   transcendental, and recomputed when it is cheap arithmetic on loads. Row values are
//!   computed before each class loop, which is rotated so Cranelift keeps them out of it.
//!
//! The function's signature is `fn(ptrs, uniforms, row_begin, row_end, classes, acc,
//! scratch)`: `ptrs` is the table of data pointers laid out by [`Layout`], `uniforms` the
//! values of the call-time uniform leaves (see [`Layout::uniform_slots`]), `acc` receives the
//! f64 partial sum of W·l over the rows, and `scratch` holds the kept class values (the
//! caller sizes it from the slot count [`codegen`] returns). Codegen never panics on a prepared graph; Cranelift's own errors
//! come back as [`JitError`].

// Node ids index several parallel per-node tables at once; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{self, Type};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, ConstantData, Endianness, FuncRef, InstBuilder, InstructionData, MemFlagsData, Opcode,
    SigRef, Signature, UserFuncName, Value, ValueDef,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};

use crate::ir::{Dtype, Graph, Kind, NodeId, Op};
use crate::jit::abi::Libm;
use crate::jit::vecmath::{self, emit_math, ConstPool, MathFeatures, MathFunc};
use crate::jit::{mathlib, JitError};

/// What the kernel stores, besides accumulating Σ W·l.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// W·l per loss item (reduce none).
    LossItems,
    /// A derivative array (same layout as its pred).
    Output,
}

/// Where everything lives in the pointer table and the uniform array.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Number of program inputs: `ptrs[n]` is input n's data (materialised to full length,
    /// except class inputs of row kernels, see [`Layout::row_step_slot`]), `ptrs[n_inputs + n]`
    /// its sanitised `i32` class indices for index targets.
    pub n_inputs: usize,
    /// Which inputs are preds (the others are targets and params).
    pub preds: Vec<bool>,
    /// Uniform leaves read from `uniforms[slot]`: `C` and the `batch_*` values.
    pub uniform_slots: Vec<NodeId>,
    /// The nodes stored (pointer slots after the inputs and the seed), what they are, and
    /// the kind of their destination array (a `Class` pred's derivative is stored per class
    /// even where its value is the same for the whole row).
    pub stores: Vec<(NodeId, Store, Kind)>,
}

impl Layout {
    /// Pointer slot of the seed array (reduce none only; null otherwise).
    pub(crate) fn seed_slot(&self) -> usize {
        2 * self.n_inputs
    }

    /// Pointer slot of store number `i`.
    pub(crate) fn store_slot(&self, i: usize) -> usize {
        2 * self.n_inputs + 1 + i
    }

    /// Slot of input n's row step in bytes (row kernels, class inputs): C times the element
    /// size when the data has a row per row, 0 when one row serves every row (a `[C]` weight
    /// given once, or its default), which is then read in place instead of repeated.
    pub(crate) fn row_step_slot(&self, n: usize) -> usize {
        2 * self.n_inputs + 1 + self.stores.len() + n
    }

    /// Number of entries in the table (pointers, then the row steps).
    pub(crate) fn n_ptrs(&self) -> usize {
        3 * self.n_inputs + 1 + self.stores.len()
    }
}

/// The kernel's roots.
pub(crate) struct Roots {
    /// W·l, accumulated (and stored for reduce none).
    pub wl: NodeId,
    /// Kind of W·l (`Row` or `Class`).
    pub wl_kind: Kind,
    /// Index-target inputs (their rows are masked when out of range).
    pub index_inputs: Vec<u16>,
}

/// What one class pass of a row kernel computes (see `Translator::plan_passes`).
struct PassPlan {
    /// Class nodes emitted in the pass (computed, or loaded from scratch).
    want: Vec<bool>,
    /// What the pass is for: its reductions' arguments, its class stores, W·l if
    /// accumulated here, and the class values it keeps for later passes.
    seeds: Vec<NodeId>,
    /// Row reductions accumulated in the pass.
    reductions: Vec<NodeId>,
    /// Class-layout stores written in the pass (indices into `Layout::stores`).
    class_stores: Vec<usize>,
    /// Whether W·l (a class value) is accumulated in the pass.
    loss_here: bool,
    /// Row conditions and the values they must have for the pass to matter: every result of
    /// the pass is used only on one side of a `where` on one of them, so a row where none
    /// has its value skips the pass. Empty: the pass always runs.
    guard: Vec<(NodeId, bool)>,
    /// Row conditions known before the pass that `where`s among its class values select on,
    /// tests that only extreme values fail ([`is_range_test`]; optimized tier): the pass is
    /// emitted twice, a copy for rows where they all hold, which takes the first side of those
    /// `where`s without computing the second, and the general copy; a row runs one of them.
    /// Empty: one copy.
    split: Vec<NodeId>,
}

/// What one class loop of a pass computes: all of the pass, or its reductions or its
/// stores alone (see `Translator::class_pass`).
struct PassPart<'p> {
    /// Class nodes computed (or loaded from scratch) in the loop.
    want: &'p [bool],
    reductions: &'p [NodeId],
    class_stores: &'p [usize],
    loss_here: bool,
}

/// Where a node's value is needed (see `Translator::guards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Not at all.
    Unused,
    /// Whatever the row.
    Always,
    /// Only on rows where the row condition has this value.
    When(NodeId, bool),
}

impl Need {
    /// Needed for two uses: the same condition, or always.
    fn meet(self, other: Need) -> Need {
        match (self, other) {
            (Need::Unused, x) | (x, Need::Unused) => x,
            (a, b) if a == b => a,
            _ => Need::Always,
        }
    }
}

/// The plan of a row kernel, shared by its rows.
struct RowCtx<'a> {
    roots: &'a Roots,
    needed: &'a [bool],
    pass: &'a [usize],
    plans: &'a [PassPlan],
    /// Scratch array of each class value kept between passes.
    slots: &'a [Option<usize>],
    /// Elements between scratch arrays.
    stride: Value,
    /// Scratch arrays one row uses.
    n_slots: usize,
}

/// One row of a row kernel as it is emitted: where it is, and what is known of it so far.
#[derive(Clone)]
struct RowState {
    /// The row index.
    r: Value,
    /// Its first element's index (r · C).
    base: Value,
    /// Its start in each class input (`None` for other inputs).
    ptrs: Vec<Option<Value>>,
    /// Row values computed so far.
    vals: HashMap<NodeId, Value>,
    /// Lane masks of the row comparisons among them.
    masks: HashMap<NodeId, Value>,
    /// Whether every class index of the row is in range (`None`: no index inputs).
    valid: Option<Value>,
    /// Its first scratch array (rows emitted together keep their class values apart).
    slot0: usize,
}

/// Generates the kernel into `module`; returns it and the number of scratch arrays of C
/// elements (rounded up to whole vectors) each call needs.
pub(crate) fn codegen(
    module: &mut JITModule,
    g: &Graph,
    roots: &Roots,
    layout: &Layout,
    class_axis: bool,
    features: MathFeatures,
    quick: bool,
) -> Result<(FuncId, usize), JitError> {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(ptr));
    }
    let id = module.declare_anonymous_function(&sig).map_err(JitError::module)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    let scratch_slots;
    {
        let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let libm = declare_libm(module, g)?;
        let mut t = Translator::new(b, g, layout, features, ptr, libm);
        let mut libm_refs = HashMap::new();
        for (f, id) in &t.libm_ids {
            let fref = module.declare_func_in_func(*id, t.b.func);
            libm_refs.insert(*f, fref);
        }
        t.libm_refs = libm_refs;
        t.quick = quick;
        t.call_conv = module.target_config().default_call_conv;
        t.positive_logs = positive_logs(g, roots, layout);
        // Element kernels only: in a row kernel's class loops the branch and merge around each
        // log cost more than the fix-ups (Keras KL divergence, rows in pairs: 31.7 → 44.8
        // instructions per element).
        t.lane_tests = if class_axis || quick { vec![None; g.len()] } else { lane_tests(g, layout, &t.positive_logs) };
        t.entry();
        if class_axis {
            t.rows_kernel(roots);
        } else {
            t.elements_kernel(roots);
        }
        scratch_slots = t.scratch_slots;
        if let Some(message) = t.math_error.take() {
            return Err(JitError { message });
        }
        let cfg = module.target_config();
        t.b.seal_all_blocks();
        t.b.finalize(cfg);
    }
    // A developer's view of what the translator emits: `LOSSC_DUMP_CLIF=1` prints each
    // kernel's Cranelift IR to stderr before it is compiled, `LOSSC_DUMP_ASM=1` the machine
    // code after.
    if std::env::var_os("LOSSC_DUMP_CLIF").is_some() {
        eprintln!("{}", ctx.func.display());
    }
    let asm = std::env::var_os("LOSSC_DUMP_ASM").is_some();
    ctx.set_disasm(asm);
    module.define_function(id, &mut ctx).map_err(JitError::module)?;
    if let Some(code) = ctx.compiled_code().filter(|_| asm) {
        eprintln!("{}", ctx.func.display());
        eprintln!("{}", code.vcode.as_deref().unwrap_or("(no disassembly)"));
    }
    module.clear_context(&mut ctx);
    Ok((id, scratch_slots))
}

fn libm_of(op: Op) -> Option<Libm> {
    Some(match op {
        Op::Pow => Libm::Pow,
        // Fallbacks of the inline code for arguments beyond its reduction's range.
        Op::Sin => Libm::Sin,
        Op::Cos => Libm::Cos,
        _ => return None,
    })
}

fn declare_libm(module: &mut JITModule, g: &Graph) -> Result<Vec<(Libm, FuncId)>, JitError> {
    let ty = float_type(g.dtype);
    let mut out: Vec<(Libm, FuncId)> = Vec::new();
    for node in g.nodes() {
        let Some(f) = libm_of(node.op) else { continue };
        if out.iter().any(|(x, _)| *x == f) {
            continue;
        }
        let id = f.declare(module, ty).map_err(|e| JitError::module(*e))?;
        out.push((f, id));
    }
    Ok(out)
}

fn float_type(d: Dtype) -> Type {
    match d {
        Dtype::F32 => types::F32,
        Dtype::F64 => types::F64,
    }
}

/// Per-loop context: which index (element or class) the loads use, and vector or scalar.
#[derive(Clone, Copy)]
struct At {
    /// Element index (no class axis) or class index within the row.
    idx: Value,
    /// Vector lanes or one scalar.
    vector: bool,
}

struct Translator<'a> {
    b: FunctionBuilder<'a>,
    g: &'a Graph,
    layout: &'a Layout,
    features: MathFeatures,
    ptr: Type,
    scalar: Type,
    vector: Type,
    lanes: i64,
    size: i64,
    libm_ids: Vec<(Libm, FuncId)>,
    libm_refs: HashMap<Libm, FuncRef>,
    // Entry-block values.
    ptrs: Vec<Value>,
    /// The current row's start in each class input (row kernels; `None` for other inputs).
    row_ptrs: Vec<Option<Value>>,
    uniforms_ptr: Value,
    row_begin: Value,
    row_end: Value,
    classes: Value,
    acc_out: Value,
    /// Per-call scratch: `scratch_slots` arrays of [`scratch_stride`] elements (row kernels).
    scratch: Value,
    /// Class values kept between passes, each in its own scratch array.
    scratch_slots: usize,
    /// The first inline-math emission that failed (a bug in lossc), reported by `codegen`.
    math_error: Option<String>,
    /// Uniform node values, scalar and splatted.
    uni_scalar: HashMap<NodeId, Value>,
    uni_vector: HashMap<NodeId, Value>,
    /// Quick tier: constants are defined once in the entry block (see [`ConstPool`]) and the
    /// elementary functions are calls into [`mathlib`] instead of inline code.
    quick: bool,
    /// The calling convention of calls into [`mathlib`].
    call_conv: CallConv,
    /// Signatures `fn(T, …) -> T` imported for those calls, by `T` and the operand count.
    math_sigs: HashMap<(Type, usize), SigRef>,
    /// The entry-block constants, once the entry block exists.
    pool: Option<ConstPool>,
    /// Logs computed with [`MathFunc::LogPositive`] (see [`positive_logs`]), by node.
    positive_logs: Vec<bool>,
    /// The vector logs and log1p's of predictions computed by a routine without fix-ups
    /// under a lane test (see [`LaneTest`]), by node (none in row kernels and the quick tier).
    lane_tests: Vec<Option<LaneTest>>,
    /// How the current body computes the nodes of `lane_tests`.
    log_path: LogPath,
}

/// The lanes a log routine without fix-ups computes right, tested before it is used: logs
/// and log1p's of values computed from predictions (probabilities, rates), which are almost
/// always in range. (Targets are left to the branch-free routines: zeros are common there,
/// in one-hot or sparse targets.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LaneTest {
    /// `log(x)` by `log_normal`: x positive normal finite.
    Normal,
    /// `log1p(−v)` by `log1p_small`: `tiny ≤ |−v| < 1` (the log of a probability's
    /// complement, `log(1 − p)`; a `log1p(v)` of a count or a rate is often beyond 1).
    Small,
}

/// How a body computes its lane-tested logs (see [`LaneTest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogPath {
    /// The routine without fix-ups, and the full one in a cold block for the vectors with a
    /// lane out of range.
    Guarded,
    /// The routine without fix-ups: every lane has passed the body's test.
    Fast,
    /// The full routine: some lane has failed the body's test.
    Full,
}

impl<'a> Translator<'a> {
    fn new(
        b: FunctionBuilder<'a>,
        g: &'a Graph,
        layout: &'a Layout,
        features: MathFeatures,
        ptr: Type,
        libm_ids: Vec<(Libm, FuncId)>,
    ) -> Translator<'a> {
        let (scalar, vector, size) = match g.dtype {
            Dtype::F32 => (types::F32, types::F32X4, 4),
            Dtype::F64 => (types::F64, types::F64X2, 8),
        };
        let lanes = vector_lanes(g.dtype) as i64;
        Translator {
            b,
            g,
            layout,
            features,
            ptr,
            scalar,
            vector,
            lanes,
            size,
            libm_ids,
            libm_refs: HashMap::new(),
            ptrs: Vec::new(),
            row_ptrs: Vec::new(),
            uniforms_ptr: Value::from_u32(0),
            row_begin: Value::from_u32(0),
            row_end: Value::from_u32(0),
            classes: Value::from_u32(0),
            acc_out: Value::from_u32(0),
            scratch: Value::from_u32(0),
            scratch_slots: 0,
            math_error: None,
            uni_scalar: HashMap::new(),
            uni_vector: HashMap::new(),
            quick: false,
            call_conv: CallConv::SystemV,
            math_sigs: HashMap::new(),
            pool: None,
            positive_logs: Vec::new(),
            lane_tests: Vec::new(),
            log_path: LogPath::Guarded,
        }
    }

    fn flags() -> MemFlagsData {
        MemFlagsData::new().with_notrap()
    }

    fn iconst(&mut self, v: i64) -> Value {
        if let Some(pool) = &mut self.pool {
            return pool.get(&mut self.b, self.ptr, v as u64);
        }
        self.b.ins().iconst(self.ptr, v)
    }

    fn fconst(&mut self, v: f64) -> Value {
        if let Some(pool) = &mut self.pool {
            return pool.float(&mut self.b, self.scalar, v);
        }
        match self.g.dtype {
            #[allow(clippy::cast_possible_truncation)]
            Dtype::F32 => self.b.ins().f32const(v as f32),
            Dtype::F64 => self.b.ins().f64const(v),
        }
    }

    fn splat(&mut self, v: Value) -> Value {
        self.b.ins().splat(self.vector, v)
    }

    /// The entry block: parameters, the pointer table, the uniform values.
    fn entry(&mut self) {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.b.seal_block(entry);
        if self.quick {
            self.pool = Some(ConstPool::new(entry));
        }
        let p = self.b.block_params(entry).to_vec();
        let (table, uni) = (p[0], p[1]);
        self.uniforms_ptr = uni;
        self.row_begin = p[2];
        self.row_end = p[3];
        self.classes = p[4];
        self.acc_out = p[5];
        self.scratch = p[6];
        let ptr_bytes = i32::from(self.ptr.bytes() as u8);
        for i in 0..self.layout.n_ptrs() {
            let off = i32::try_from(i).unwrap_or(0) * ptr_bytes;
            let v = self.b.ins().load(self.ptr, Self::flags(), table, off);
            self.ptrs.push(v);
        }
        // Uniform values: constants, call-time leaves, and what is computed from them.
        let g = self.g;
        for i in 0..g.len() {
            let id = NodeId(i as u32);
            if g.kind(id) != Kind::Uniform {
                continue;
            }
            let node = g.node(id);
            let v = match node.op {
                Op::Const(bits) => self.fconst(f64::from_bits(bits)),
                _ if node.op.arity() == 0 || node.op.is_batch() => {
                    let slot = self.layout.uniform_slots.iter().position(|s| *s == id).unwrap_or(0);
                    let off = i32::try_from(slot).unwrap_or(0) * self.size as i32;
                    self.b.ins().load(self.scalar, Self::flags(), self.uniforms_ptr, off)
                }
                op => {
                    let args: Vec<Value> = node.children().iter().map(|c| self.uni_scalar[c]).collect();
                    self.op(op, &args)
                }
            };
            self.uni_scalar.insert(id, v);
            let s = self.splat(v);
            self.uni_vector.insert(id, s);
        }
    }

    /// A vector constant with these lanes.
    fn vconst(&mut self, lanes: &[f64]) -> Value {
        let bytes: Vec<u8> = match self.g.dtype {
            #[allow(clippy::cast_possible_truncation)]
            Dtype::F32 => lanes.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
            Dtype::F64 => lanes.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        let handle = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(self.vector, handle)
    }

    /// Address of element `idx` (an i64 element index) of pointer slot `slot`.
    fn addr(&mut self, slot: usize, idx: Value, elem_size: i64) -> Value {
        let sz = self.iconst(elem_size);
        let off = self.b.ins().imul(idx, sz);
        self.b.ins().iadd(self.ptrs[slot], off)
    }

    fn load(&mut self, slot: usize, at: At) -> Value {
        let a = self.addr(slot, at.idx, self.size);
        let ty = if at.vector { self.vector } else { self.scalar };
        self.b.ins().load(ty, Self::flags(), a, 0)
    }

    /// Class `c` of the current row of class input `n` (row kernels).
    fn load_class(&mut self, n: usize, c: Value, vector: bool) -> Value {
        let row = self.row_ptrs[n].expect("a class input has a row pointer");
        let sz = self.iconst(self.size);
        let off = self.b.ins().imul(c, sz);
        let a = self.b.ins().iadd(row, off);
        let ty = if vector { self.vector } else { self.scalar };
        self.b.ins().load(ty, Self::flags(), a, 0)
    }

    fn store(&mut self, slot: usize, at: At, v: Value) {
        let a = self.addr(slot, at.idx, self.size);
        self.b.ins().store(Self::flags(), v, a, 0);
    }

    fn is_vector(&self, v: Value) -> bool {
        self.b.func.dfg.value_type(v).is_vector()
    }

    /// A constant of the width of `like`.
    fn cst_like(&mut self, x: f64, like: Value) -> Value {
        let ty = if self.is_vector(like) { self.vector } else { self.scalar };
        if let Some(pool) = &mut self.pool {
            return pool.float(&mut self.b, ty, x);
        }
        let s = self.fconst(x);
        if self.is_vector(like) {
            self.splat(s)
        } else {
            s
        }
    }

    /// `mask ? a : b` for scalar or vector operands (mask from `fcmp`).
    fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        if self.is_vector(a) {
            let ty = self.b.func.dfg.value_type(a);
            let m = self.b.ins().bitcast(ty, MemFlagsData::new(), mask);
            // `mask ? +0 : b` is `b & !mask`, one `andnps` instead of a two-micro-op blend
            // (x64 lowers every `bitselect` on a compare's mask to a blend).
            if self.is_plus_zero(a) {
                return self.b.ins().band_not(b, m);
            }
            // `mask ? a : +0` is `a & mask`, one `andps` instead of a blend.
            if self.is_plus_zero(b) {
                return self.b.ins().band(a, m);
            }
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// True when `v` is a +0.0 constant (all bits zero), scalar or splatted.
    fn is_plus_zero(&self, v: Value) -> bool {
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, _) = dfg.value_def(v) else { return false };
        match dfg.insts[inst] {
            InstructionData::UnaryIeee32 { opcode: Opcode::F32const, imm } => imm.bits() == 0,
            InstructionData::UnaryIeee64 { opcode: Opcode::F64const, imm } => imm.bits() == 0,
            InstructionData::Unary { opcode: Opcode::Splat, arg } => self.is_plus_zero(arg),
            InstructionData::UnaryConst { opcode: Opcode::Vconst, constant_handle } => {
                dfg.constants.get(constant_handle).as_slice().iter().all(|b| *b == 0)
            }
            _ => false,
        }
    }

    /// Pseudo-maximum `a < x ? x : a` (drops NaN; keeps `a` on ties); the `select(fcmp)`
    /// shape becomes one `maxps`/`maxss`.
    fn pmax(&mut self, a: Value, x: Value) -> Value {
        let m = self.b.ins().fcmp(FloatCC::LessThan, a, x);
        self.sel(m, x, a)
    }

    /// Pseudo-minimum `x < a ? x : a`.
    fn pmin(&mut self, a: Value, x: Value) -> Value {
        let m = self.b.ins().fcmp(FloatCC::LessThan, x, a);
        self.sel(m, x, a)
    }

    /// 1.0 where `mask`, else 0.0.
    fn truth(&mut self, mask: Value, like: Value) -> Value {
        let one = self.cst_like(1.0, like);
        let zero = self.cst_like(0.0, like);
        self.sel(mask, one, zero)
    }

    fn nonzero(&mut self, x: Value) -> Value {
        let zero = self.cst_like(0.0, x);
        self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
    }

    fn math(&mut self, f: MathFunc, x: Value) -> Value {
        self.math_n(f, &[x])
    }

    /// `f(args)`: a call to `mathlib`'s function in the quick tier, inline code otherwise.
    fn math_n(&mut self, f: MathFunc, args: &[Value]) -> Value {
        let x = args[0];
        if self.quick {
            let ty = self.b.func.dfg.value_type(x);
            // On an error the inline code below is the fallback.
            if let Ok(address) = mathlib::address(f, ty) {
                let key = (ty, args.len());
                let sig = match self.math_sigs.get(&key) {
                    Some(s) => *s,
                    None => {
                        let mut sig = Signature::new(self.call_conv);
                        for _ in args {
                            sig.params.push(AbiParam::new(ty));
                        }
                        sig.returns.push(AbiParam::new(ty));
                        let s = self.b.import_signature(sig);
                        self.math_sigs.insert(key, s);
                        s
                    }
                };
                let callee = self.iconst(address as i64);
                let call = self.b.ins().call_indirect(sig, callee, args);
                return self.b.inst_results(call)[0];
            }
        }
        let fallback = f.fallback().and_then(|l| self.libm_refs.get(&l).copied());
        match emit_math(&mut self.b, self.features, f, args, self.pool.as_mut(), fallback) {
            Ok(v) => v,
            // Operands are always f32/f64 scalars or vectors and fallbacks are declared for
            // every graph that needs one, so this is a bug in lossc: the kernel is not built.
            Err(e) => {
                self.math_error.get_or_insert_with(|| e.to_string());
                x
            }
        }
    }

    /// A libm function per lane.
    fn libm(&mut self, f: Libm, args: &[Value]) -> Value {
        let Some(fref) = self.libm_refs.get(&f).copied() else { return args[0] };
        if !self.is_vector(args[0]) {
            let call = self.b.ins().call(fref, args);
            return self.b.inst_results(call)[0];
        }
        let mut out = args[0];
        for lane in 0..self.lanes as u8 {
            let scalars: Vec<Value> = args.iter().map(|a| self.b.ins().extractlane(*a, lane)).collect();
            let call = self.b.ins().call(fref, &scalars);
            let r = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, r, lane);
        }
        out
    }

    /// One elementwise op on same-width operands, with the semantics of `math.rs`.
    fn op(&mut self, op: Op, a: &[Value]) -> Value {
        let x = a[0];
        match op {
            // Vectors in the optimized tier: an `xor`/`and` with a sign-bit constant that
            // can be hoisted (x64 builds the mask of an `fneg`/`fabs` at each use).
            Op::Neg if self.is_vector(x) && !self.quick => {
                let sign = self.cst_like(-0.0, x);
                self.b.ins().bxor(x, sign)
            }
            Op::Abs if self.is_vector(x) && !self.quick => {
                let sign = self.cst_like(-0.0, x);
                self.b.ins().band_not(x, sign)
            }
            Op::Neg => self.b.ins().fneg(x),
            Op::Abs => self.b.ins().fabs(x),
            Op::Sqrt => self.b.ins().sqrt(x),
            Op::Square => self.b.ins().fmul(x, x),
            Op::Sign => {
                let zero = self.cst_like(0.0, x);
                let one = self.cst_like(1.0, x);
                let m_one = self.cst_like(-1.0, x);
                // ±0 and NaN fall through both comparisons to x + 0: +0 for either zero
                // (math.rs gives +0), NaN for NaN.
                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                let lt = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                let r = self.b.ins().fadd(x, zero);
                let r = self.sel(lt, m_one, r);
                self.sel(gt, one, r)
            }
            Op::Exp => self.math(MathFunc::Exp, x),
            Op::Log => self.math(MathFunc::Log, x),
            Op::Log1p => self.math(MathFunc::Log1p, x),
            Op::Expm1 => self.math(MathFunc::Expm1, x),
            Op::Tanh => self.math(MathFunc::Tanh, x),
            Op::Sigmoid => self.math(MathFunc::Sigmoid, x),
            Op::Softplus => self.math(MathFunc::Softplus, x),
            Op::LogSigmoid => self.math(MathFunc::LogSigmoid, x),
            Op::Sin => self.math(MathFunc::Sin, x),
            Op::Cos => self.math(MathFunc::Cos, x),
            Op::Sinh => self.math(MathFunc::Sinh, x),
            Op::Cosh => self.math(MathFunc::Cosh, x),
            Op::ExpDw => self.math_n(MathFunc::ExpDw, a),
            Op::Relu => {
                let zero = self.cst_like(0.0, x);
                // x where x > 0 or x is NaN, else 0.
                let keep = self.b.ins().fcmp(FloatCC::UnorderedOrGreaterThan, x, zero);
                self.sel(keep, x, zero)
            }
            Op::Not => {
                let zero = self.cst_like(0.0, x);
                let z = self.b.ins().fcmp(FloatCC::Equal, x, zero);
                self.truth(z, x)
            }
            Op::StopGradient | Op::Hold | Op::StraightThrough => x,
            Op::Add => self.b.ins().fadd(x, a[1]),
            Op::Sub => self.b.ins().fsub(x, a[1]),
            Op::Mul => self.b.ins().fmul(x, a[1]),
            Op::Div => self.b.ins().fdiv(x, a[1]),
            Op::Pow => self.pow(x, a[1]),
            Op::Max | Op::Min => {
                let cc = if op == Op::Max { FloatCC::GreaterThan } else { FloatCC::LessThan };
                let wins = self.b.ins().fcmp(cc, a[1], x);
                let r = self.sel(wins, a[1], x);
                let nan = self.b.ins().fcmp(FloatCC::Unordered, x, a[1]);
                let s = self.b.ins().fadd(x, a[1]);
                self.sel(nan, s, r)
            }
            Op::Xlogy => {
                let zero = self.cst_like(0.0, x);
                let l = self.math(MathFunc::Log, a[1]);
                let p = self.b.ins().fmul(x, l);
                let xz = self.b.ins().fcmp(FloatCC::Equal, x, zero);
                let ord = self.b.ins().fcmp(FloatCC::Ordered, a[1], a[1]);
                let both = self.b.ins().band(xz, ord);
                self.sel(both, zero, p)
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                let cc = match op {
                    Op::Lt => FloatCC::LessThan,
                    Op::Le => FloatCC::LessThanOrEqual,
                    Op::Gt => FloatCC::GreaterThan,
                    Op::Ge => FloatCC::GreaterThanOrEqual,
                    Op::Eq => FloatCC::Equal,
                    _ => FloatCC::NotEqual,
                };
                let m = self.b.ins().fcmp(cc, x, a[1]);
                self.truth(m, x)
            }
            Op::And | Op::Or => {
                let p = self.nonzero(x);
                let q = self.nonzero(a[1]);
                let m = if op == Op::And { self.b.ins().band(p, q) } else { self.b.ins().bor(p, q) };
                self.truth(m, x)
            }
            Op::Where => {
                let c = self.nonzero(x);
                self.sel(c, a[1], a[2])
            }
            Op::Clamp => {
                let m = self.op(Op::Max, &[x, a[1]]);
                self.op(Op::Min, &[m, a[2]])
            }
            // Leaves, reductions and gathers are handled by the loops.
            _ => x,
        }
    }

    /// Emits node `id` (op `op` over `args`), reusing the lane masks of boolean children so a
    /// comparison feeding a `where` never goes through a 1.0/0.0 float and back.
    fn node_op(
        &mut self,
        op: Op,
        children: &[NodeId],
        args: &[Value],
        masks: &mut HashMap<NodeId, Value>,
        id: NodeId,
    ) -> Value {
        let mask_of = |m: &HashMap<NodeId, Value>, i: usize| children.get(i).and_then(|c| m.get(c)).copied();
        let cmp = match op {
            Op::Lt => Some(FloatCC::LessThan),
            Op::Le => Some(FloatCC::LessThanOrEqual),
            Op::Gt => Some(FloatCC::GreaterThan),
            Op::Ge => Some(FloatCC::GreaterThanOrEqual),
            Op::Eq => Some(FloatCC::Equal),
            Op::Ne => Some(FloatCC::NotEqual),
            _ => None,
        };
        let mask = if let Some(cc) = cmp {
            Some(self.b.ins().fcmp(cc, args[0], args[1]))
        } else {
            match op {
                Op::And | Op::Or => {
                    let p = match mask_of(masks, 0) {
                        Some(m) => m,
                        None => self.nonzero(args[0]),
                    };
                    let q = match mask_of(masks, 1) {
                        Some(m) => m,
                        None => self.nonzero(args[1]),
                    };
                    Some(if op == Op::And { self.b.ins().band(p, q) } else { self.b.ins().bor(p, q) })
                }
                Op::Where => {
                    let c = match mask_of(masks, 0) {
                        Some(m) => m,
                        None => self.nonzero(args[0]),
                    };
                    return self.sel(c, args[1], args[2]);
                }
                _ => None,
            }
        };
        match mask {
            Some(m) => {
                masks.insert(id, m);
                // Materialised only if something uses the number (dead code otherwise).
                self.truth(m, args[0])
            }
            None if op == Op::Exp && has_sign(self.g, children[0], true, 4) => {
                self.math(MathFunc::ExpNonPositive, args[0])
            }
            None if self.is_vector(args[0]) && self.lane_tests[id.index()].is_some() => {
                let test = self.lane_tests[id.index()].unwrap_or(LaneTest::Normal);
                self.lane_tested(test, args[0])
            }
            // The quick tier calls the full routines (the same bits): the calls cost the same,
            // and the fix-ups would be more code to compile.
            None if op == Op::Log && !self.quick && is_normal(self.g, children[0]) => {
                let l = self.math(MathFunc::LogNormal, args[0]);
                self.log_fixups(args[0], l, false)
            }
            None if op == Op::Log && self.positive_logs[id.index()] => self.math(MathFunc::LogPositive, args[0]),
            None if routine_variant(self.g, id) == Some(MathFunc::Log1pUnit) => self.math(MathFunc::Log1pUnit, args[0]),
            None if op == Op::Log1p && !self.quick && is_small(self.g, children[0]) => {
                let l = self.math(MathFunc::Log1pSmall, args[0]);
                // No tiny lanes where the range keeps away from 0 (−p of a clipped p).
                let r = value_range(self.g, children[0], &mut Vec::new(), RANGE_DEPTH);
                let tiny = vecmath::tiny(self.scalar);
                self.log_fixups(args[0], l, r.lo < tiny && r.hi > -tiny)
            }
            None if op == Op::Log1p && has_sign(self.g, children[0], false, 4) => {
                self.math(MathFunc::Log1pNonNegative, args[0])
            }
            None => self.op(op, args),
        }
    }

    /// `res` with the fix-ups [`MathFunc::LogNormal`] and [`MathFunc::Log1pSmall`] leave to
    /// their callers (see [`vecmath::emit_log_fixups`]).
    fn log_fixups(&mut self, x: Value, res: Value, tiny: bool) -> Value {
        match vecmath::emit_log_fixups(&mut self.b, self.features, x, res, tiny, self.pool.as_mut()) {
            Ok(v) => v,
            Err(e) => {
                self.math_error.get_or_insert_with(|| e.to_string());
                res
            }
        }
    }

    /// A lane-tested log (see [`LaneTest`]) of the vector `x`, as [`Translator::log_path`]
    /// says: the routine without fix-ups, the full one, or the first with the second in a
    /// cold block for the vectors with a lane out of range. All three give the same bits.
    fn lane_tested(&mut self, test: LaneTest, x: Value) -> Value {
        let (fast, full) = match test {
            LaneTest::Normal => (MathFunc::LogNormal, MathFunc::Log),
            LaneTest::Small => (MathFunc::Log1pSmall, MathFunc::Log1p),
        };
        match self.log_path {
            LogPath::Fast => self.math(fast, x),
            LogPath::Full => self.math(full, x),
            LogPath::Guarded => {
                let fast = self.math(fast, x);
                let out = self.lanes_out(test, x);
                let any = self.b.ins().vany_true(out);
                let cold = self.b.create_block();
                let merge = self.b.create_block();
                let result = self.b.append_block_param(merge, self.vector);
                self.b.set_cold_block(cold);
                self.b.ins().brif(any, cold, &[], merge, &[fast.into()]);
                self.b.switch_to_block(cold);
                self.b.seal_block(cold);
                let full = self.math(full, x);
                self.b.ins().jump(merge, &[full.into()]);
                self.b.switch_to_block(merge);
                self.b.seal_block(merge);
                result
            }
        }
    }

    /// The lanes of `x` outside `test`'s range (an integer mask): for [`LaneTest::Normal`]
    /// ±0, subnormal, negative, ±∞ and NaN; for [`LaneTest::Small`] tiny, ±1 and beyond, ±∞
    /// and NaN.
    fn lanes_out(&mut self, test: LaneTest, x: Value) -> Value {
        match test {
            LaneTest::Normal => {
                let (lo, hi) = self.float_bits(normal_bounds(self.g.dtype).0, f64::INFINITY);
                self.lanes_outside(x, lo, hi, false)
            }
            LaneTest::Small => {
                let (lo, hi) = self.float_bits(vecmath::tiny(self.scalar), 1.0);
                self.lanes_outside(x, lo, hi, true)
            }
        }
    }

    /// The lanes of `x` (or of `|x|` with `abs`) whose bits are not in `[lo, hi)`, the bit
    /// patterns of two nonnegative floats (an integer mask; NaN is outside). Adding
    /// `2^(w−1) − lo` to the bits wraps `[lo, hi)` onto the lowest integers, below
    /// `hi − lo − 2^(w−1)`: one signed comparison.
    fn lanes_outside(&mut self, x: Value, lo: i64, hi: i64, abs: bool) -> Value {
        let x = if abs {
            let sign = self.cst_like(-0.0, x);
            self.b.ins().band_not(x, sign)
        } else {
            x
        };
        let ity = self.int_vector();
        let bits = self.b.ins().bitcast(ity, MemFlagsData::new(), x);
        let half = self.sign_bit();
        let off = self.int_splat(half.wrapping_sub(lo));
        let wrapped = self.b.ins().iadd(bits, off);
        let limit = self.int_splat((hi - lo).wrapping_add(half).wrapping_sub(1));
        self.b.ins().icmp(IntCC::SignedGreaterThan, wrapped, limit)
    }

    /// The integer vector type of the kernel's lanes.
    fn int_vector(&self) -> Type {
        match self.g.dtype {
            Dtype::F32 => types::I32X4,
            Dtype::F64 => types::I64X2,
        }
    }

    /// The sign bit of a lane, `2^(w−1)` as an integer of the lane's width (negative).
    fn sign_bit(&self) -> i64 {
        match self.g.dtype {
            Dtype::F32 => i64::from(i32::MIN),
            Dtype::F64 => i64::MIN,
        }
    }

    /// `v` in every lane of an integer vector (wrapped to the lane width).
    fn int_splat(&mut self, v: i64) -> Value {
        let ity = self.int_vector();
        let lane = ity.lane_type();
        let imm = if lane == types::I32 { i64::from(v as i32 as u32) } else { v };
        let c = self.b.ins().iconst(lane, imm);
        self.b.ins().splat(ity, c)
    }

    /// The bit patterns of `a` and `b` rounded to the kernel's precision, as integers.
    fn float_bits(&self, a: f64, b: f64) -> (i64, i64) {
        match self.g.dtype {
            Dtype::F32 => (i64::from((a as f32).to_bits()), i64::from((b as f32).to_bits())),
            Dtype::F64 => (a.to_bits() as i64, b.to_bits() as i64),
        }
    }

    /// `a^b` as `math::pow`: exact products for b = 2 and 1, sqrt for 0.5, libm otherwise.
    fn pow(&mut self, a: Value, b: Value) -> Value {
        let general = self.libm(Libm::Pow, &[a, b]);
        let two = self.cst_like(2.0, a);
        let one = self.cst_like(1.0, a);
        let half = self.cst_like(0.5, a);
        let sq = self.b.ins().fmul(a, a);
        let rt = self.b.ins().sqrt(a);
        let is_half = self.b.ins().fcmp(FloatCC::Equal, b, half);
        let r = self.sel(is_half, rt, general);
        let is_one = self.b.ins().fcmp(FloatCC::Equal, b, one);
        let r = self.sel(is_one, a, r);
        let is_two = self.b.ins().fcmp(FloatCC::Equal, b, two);
        self.sel(is_two, sq, r)
    }

    /// f64 lanes of `v` added into the two f64 accumulators (vector) or one (scalar).
    fn accumulate(&mut self, acc: &[Variable], v: Value) {
        let f64x2 = types::F64X2;
        if !self.is_vector(v) {
            let w = if self.scalar == types::F32 { self.b.ins().fpromote(types::F64, v) } else { v };
            let a = self.b.use_var(acc[0]);
            let s = self.b.ins().fadd(a, w);
            self.b.def_var(acc[0], s);
            return;
        }
        if self.scalar == types::F64 {
            let a = self.b.use_var(acc[0]);
            let s = self.b.ins().fadd(a, v);
            self.b.def_var(acc[0], s);
            return;
        }
        let _ = f64x2;
        let lo = self.b.ins().fvpromote_low(v);
        // Lanes 2 and 3 moved down (one `pshufd`), then promoted.
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let bytes = self.b.ins().bitcast(types::I8X16, le, v);
        let mask: Vec<u8> = (8u8..16).chain(8..16).collect();
        let imm = self.b.func.dfg.immediates.push(ConstantData::from(mask));
        let moved = self.b.ins().shuffle(bytes, bytes, imm);
        let high = self.b.ins().bitcast(types::F32X4, le, moved);
        let hi = self.b.ins().fvpromote_low(high);
        let a0 = self.b.use_var(acc[0]);
        let s0 = self.b.ins().fadd(a0, lo);
        self.b.def_var(acc[0], s0);
        let a1 = self.b.use_var(acc[1]);
        let s1 = self.b.ins().fadd(a1, hi);
        self.b.def_var(acc[1], s1);
    }

    /// A loop `for i in (start..end).step_by(step)` whose body `body` emits at `i`.
    /// Returns with the builder in the exit block.
    ///
    /// A `rotated` loop has a guard before it, its test at the bottom, and its body block as
    /// its own header: Cranelift hoists loop-invariant pure values (splats of uniforms and
    /// row values, products of them, vector constants) out of such a loop, and out of none
    /// whose body a separate header block branches to (measured on Cranelift 0.135). Element
    /// loops and class loops are rotated: both run many iterations on values fixed outside
    /// them (−14% instructions for MSE, −28% for cross-entropy, with the class loops' row
    /// values no longer forced out by a loop-carried copy). The row loop is not: what would
    /// be hoisted out of it stays live over the whole kernel and spills (+4% for
    /// cross-entropy when it was rotated).
    fn counted_loop(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        var: Variable,
        rotated: bool,
        mut body: impl FnMut(&mut Self, Value),
    ) {
        let bodyb = self.b.create_block();
        let exit = self.b.create_block();
        self.b.def_var(var, start);
        let stepv = self.iconst(step);
        let head = if rotated {
            let next = self.b.ins().iadd(start, stepv);
            let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
            self.b.ins().brif(fits, bodyb, &[], exit, &[]);
            None
        } else {
            let head = self.b.create_block();
            self.b.ins().jump(head, &[]);
            self.b.switch_to_block(head);
            let i = self.b.use_var(var);
            let next = self.b.ins().iadd(i, stepv);
            let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
            self.b.ins().brif(fits, bodyb, &[], exit, &[]);
            Some(head)
        };
        self.b.switch_to_block(bodyb);
        let i = self.b.use_var(var);
        body(self, i);
        let i = self.b.use_var(var);
        let stepv = self.iconst(step);
        let next = self.b.ins().iadd(i, stepv);
        self.b.def_var(var, next);
        match head {
            Some(head) => {
                self.b.ins().jump(head, &[]);
            }
            None => {
                let after = self.b.ins().iadd(next, stepv);
                let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, after, end);
                self.b.ins().brif(fits, bodyb, &[], exit, &[]);
            }
        }
        self.b.switch_to_block(exit);
    }

    fn finish(&mut self, acc: &[Variable]) {
        // Horizontal sum in a fixed order: lanes of acc[0], then of acc[1], then the scalar.
        let mut total = self.b.ins().f64const(0.0);
        for (k, var) in acc.iter().enumerate() {
            let v = self.b.use_var(*var);
            if k < acc.len() - 1 {
                for lane in 0..2 {
                    let x = self.b.ins().extractlane(v, lane);
                    total = self.b.ins().fadd(total, x);
                }
            } else {
                total = self.b.ins().fadd(total, v);
            }
        }
        self.b.ins().store(Self::flags(), total, self.acc_out, 0);
        self.b.ins().return_(&[]);
    }

    fn new_accumulators(&mut self) -> Vec<Variable> {
        let zero_v = {
            let z = self.b.ins().f64const(0.0);
            self.b.ins().splat(types::F64X2, z)
        };
        let zero_s = self.b.ins().f64const(0.0);
        let n_vec = if self.scalar == types::F32 { 2 } else { 1 };
        let mut acc = Vec::new();
        for _ in 0..n_vec {
            let v = self.b.declare_var(types::F64X2);
            self.b.def_var(v, zero_v);
            acc.push(v);
        }
        let s = self.b.declare_var(types::F64);
        self.b.def_var(s, zero_s);
        acc.push(s);
        acc
    }

    // ---- elementwise kernels ----

    fn elements_kernel(&mut self, roots: &Roots) {
        let needed = self.needed(roots);
        let acc = self.new_accumulators();
        let (vec_acc, scalar_acc) = acc.split_at(acc.len() - 1);
        let vec_acc = vec_acc.to_vec();
        let scalar_acc = scalar_acc.to_vec();
        let i_var = self.b.declare_var(self.ptr);
        let begin = self.row_begin;
        let end = self.row_end;
        let lanes = self.lanes;
        // Cheap bodies: two vectors per iteration (into the same lane accumulators: a second
        // set would be four more live registers for f32, and spills), then scalars. Bodies
        // with inline transcendentals, or whose loss keeps many gradient values live (see
        // `vectors_per_iteration`): one vector per iteration, then scalars.
        if vectors_per_iteration(self.g, roots, self.layout) == 1 {
            self.counted_loop(begin, end, lanes, i_var, true, |t, i| {
                t.element_body(&needed, roots, At { idx: i, vector: true }, &vec_acc);
            });
        } else {
            self.counted_loop(begin, end, 2 * lanes, i_var, true, |t, i| {
                t.element_body(&needed, roots, At { idx: i, vector: true }, &vec_acc);
                let l = t.iconst(lanes);
                let j = t.b.ins().iadd(i, l);
                t.element_body(&needed, roots, At { idx: j, vector: true }, &vec_acc);
            });
        }
        let i = self.b.use_var(i_var);
        self.counted_loop(i, end, 1, i_var, true, |t, i| {
            let at = At { idx: i, vector: false };
            t.element_body(&needed, roots, at, &scalar_acc);
        });
        self.finish(&acc);
    }

    fn element_body(&mut self, needed: &[bool], roots: &Roots, at: At, acc: &[Variable]) {
        let mut vals: HashMap<NodeId, Value> = HashMap::new();
        let mut masks: HashMap<NodeId, Value> = HashMap::new();
        let split = if at.vector && !self.quick { finite_split(self.g, roots, self.layout, needed) } else { None };
        let Some(split) = split else {
            if at.vector {
                self.lane_split(needed, roots, at, acc);
            } else {
                self.emit_nodes(needed, at, &[], &mut vals, &mut masks);
                self.finish_element(roots, at, acc, &vals);
            }
            return;
        };
        // The finiteness tests first; when every lane passes every one (almost always), the
        // body without their other branches, else the whole body. Both compute the same bits.
        self.emit_nodes(&split.prefix, at, &[], &mut vals, &mut masks);
        let mut all = None;
        for c in &split.tests {
            let m = masks.get(c).copied().unwrap_or_else(|| self.nonzero(vals[c]));
            all = Some(match all {
                Some(a) => self.b.ins().band(a, m),
                None => m,
            });
        }
        let Some(all) = all else {
            // No test (`finite_split` never returns one without): the whole body.
            self.emit_nodes(&split.slow, at, &[], &mut vals, &mut masks);
            self.finish_element(roots, at, acc, &vals);
            return;
        };
        let pass = self.b.ins().vall_true(all);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.ins().brif(pass, fast, &[], slow, &[]);
        self.b.seal_block(fast);
        self.b.seal_block(slow);
        for (block, which, assumed) in [(fast, &split.fast, &split.tests[..]), (slow, &split.slow, &[][..])] {
            self.b.switch_to_block(block);
            let (mut vals, mut masks) = (vals.clone(), masks.clone());
            self.emit_nodes(which, at, assumed, &mut vals, &mut masks);
            self.finish_element(roots, at, acc, &vals);
            self.b.ins().jump(join, &[]);
        }
        self.b.switch_to_block(join);
        self.b.seal_block(join);
    }

    /// A vector element body with lane-tested logs (see [`LaneTest`]): their arguments
    /// first, one test of every lane of all of them, then the body with the routines
    /// without fix-ups when every lane passes (almost always), else the body with the full
    /// routines in a cold block. One branch where a cold block around each log takes one per
    /// log and a merge, whose values regalloc2 moves and spills on the hot path (BCE on
    /// probabilities, `log(p)` and `log1p(−p)`: 40.5 instructions per element with a cold
    /// block each, 37.25 split). With one such log the cold block costs less than copying
    /// the body (MSLE: 23.5 against 25.0), so bodies with fewer than two are emitted as they
    /// are, their log guarded by its own cold block.
    fn lane_split(&mut self, needed: &[bool], roots: &Roots, at: At, acc: &[Variable]) {
        let g = self.g;
        let (mut vals, mut masks) = (HashMap::new(), HashMap::new());
        let tested: Vec<NodeId> = (0..g.len())
            .map(|i| NodeId(i as u32))
            .filter(|id| needed[id.index()] && self.lane_tests[id.index()].is_some())
            .collect();
        if tested.len() < 2 {
            self.emit_nodes(needed, at, &[], &mut vals, &mut masks);
            self.finish_element(roots, at, acc, &vals);
            return;
        }
        let prefix = reachable(g, tested.iter().map(|id| g.node(*id).children()[0]));
        let prefix: Vec<bool> = prefix.iter().zip(needed).map(|(p, n)| *p && *n).collect();
        self.emit_nodes(&prefix, at, &[], &mut vals, &mut masks);
        // `log(p)` and `log1p(−p)` together need p in [tiny, 1): one test of p's bits.
        let pairs: Vec<(LaneTest, NodeId)> = tested
            .iter()
            .map(|id| (self.lane_tests[id.index()].unwrap_or(LaneTest::Normal), g.node(*id).children()[0]))
            .collect();
        let has = |test: LaneTest, x: NodeId| pairs.iter().any(|(t, a)| *t == test && *a == x);
        let negation = |x: NodeId| g.node(x).args[0];
        let (tiny, one) = self.float_bits(vecmath::tiny(self.scalar), 1.0);
        let mut out: Option<Value> = None;
        for &(test, x) in &pairs {
            let o = match test {
                LaneTest::Normal if pairs.iter().any(|(t, a)| *t == LaneTest::Small && negation(*a) == x) => continue,
                LaneTest::Small if has(LaneTest::Normal, negation(x)) => {
                    self.lanes_outside(vals[&negation(x)], tiny, one, false)
                }
                _ => self.lanes_out(test, vals[&x]),
            };
            out = Some(match out {
                Some(a) => self.b.ins().bor(a, o),
                None => o,
            });
        }
        let any = self.b.ins().vany_true(out.expect("at least one lane-tested log"));
        let fast = self.b.create_block();
        let full = self.b.create_block();
        let join = self.b.create_block();
        self.b.set_cold_block(full);
        self.b.ins().brif(any, full, &[], fast, &[]);
        self.b.seal_block(fast);
        self.b.seal_block(full);
        let rest: Vec<bool> = needed.iter().zip(&prefix).map(|(n, p)| *n && !*p).collect();
        // On the fast path no tested argument is NaN: `x == x` (xlogy's test) is true.
        let ordered: Vec<NodeId> = (0..g.len())
            .map(|i| NodeId(i as u32))
            .filter(|id| {
                let node = g.node(*id);
                rest[id.index()]
                    && node.op == Op::Eq
                    && node.args[0] == node.args[1]
                    && pairs.iter().any(|p| p.1 == node.args[0])
            })
            .collect();
        for (block, path, assumed) in [(fast, LogPath::Fast, &ordered[..]), (full, LogPath::Full, &[][..])] {
            self.b.switch_to_block(block);
            let (mut vals, mut masks) = (vals.clone(), masks.clone());
            self.log_path = path;
            self.emit_nodes(&rest, at, assumed, &mut vals, &mut masks);
            self.finish_element(roots, at, acc, &vals);
            self.b.ins().jump(join, &[]);
        }
        self.log_path = LogPath::Guarded;
        self.b.switch_to_block(join);
        self.b.seal_block(join);
    }

    /// Emits the nodes marked in `which` (in index order, into `vals` and `masks`), taking
    /// the conditions in `assumed` as true in every lane: a `where` on one is its first
    /// branch.
    fn emit_nodes(
        &mut self,
        which: &[bool],
        at: At,
        assumed: &[NodeId],
        vals: &mut HashMap<NodeId, Value>,
        masks: &mut HashMap<NodeId, Value>,
    ) {
        let g = self.g;
        for (i, need) in which.iter().enumerate() {
            if !need {
                continue;
            }
            let id = NodeId(i as u32);
            if g.kind(id) == Kind::Uniform {
                let v = if at.vector { self.uni_vector[&id] } else { self.uni_scalar[&id] };
                vals.insert(id, v);
                continue;
            }
            let node = g.node(id);
            let v = match node.op {
                Op::Input(n) => self.load(n as usize, at),
                Op::Seed => self.load(self.layout.seed_slot(), at),
                Op::Where if assumed.contains(&node.args[0]) => vals[&node.args[1]],
                // `a and c` with c true in every lane is `a`, for a comparison `a`.
                Op::And if assumed.iter().any(|c| node.args[..2].contains(c)) => {
                    let a = if assumed.contains(&node.args[1]) { node.args[0] } else { node.args[1] };
                    match masks.get(&a).copied() {
                        Some(m) => {
                            masks.insert(id, m);
                            self.truth(m, vals[&a])
                        }
                        None => {
                            let args: Vec<Value> = node.children().iter().map(|c| vals[c]).collect();
                            self.node_op(Op::And, node.children(), &args, masks, id)
                        }
                    }
                }
                op => {
                    let args: Vec<Value> = node.children().iter().map(|c| vals[c]).collect();
                    self.node_op(op, node.children(), &args, masks, id)
                }
            };
            vals.insert(id, v);
        }
    }

    /// Accumulates W·l and stores the outputs of one element (vector) of the body.
    fn finish_element(&mut self, roots: &Roots, at: At, acc: &[Variable], vals: &HashMap<NodeId, Value>) {
        let wl = vals[&roots.wl];
        self.accumulate(acc, wl);
        for (k, (node, _, _)) in self.layout.stores.iter().enumerate() {
            let v = vals[node];
            let slot = self.layout.store_slot(k);
            self.store(slot, at, v);
        }
    }

    fn needed(&self, roots: &Roots) -> Vec<bool> {
        needed(self.g, roots, self.layout)
    }

    // ---- row kernels ----

    /// Pass number of each node: class nodes are computed in pass ≥ 1; a row value is
    /// available after pass `avail` (0: at the start of the row).
    fn passes(&self, needed: &[bool]) -> Vec<usize> {
        let g = self.g;
        let mut pass = vec![0usize; g.len()];
        for i in 0..g.len() {
            if !needed[i] {
                continue;
            }
            let id = NodeId(i as u32);
            let node = g.node(id);
            let kind = g.kind(id);
            pass[i] = match (kind, node.op) {
                (Kind::Uniform, _) => 0,
                (Kind::Row, Op::RowSum | Op::RowMax | Op::RowMin) => pass[node.args[0].index()],
                (Kind::Row, Op::Gather) => 0,
                (Kind::Row, _) => node.children().iter().map(|c| pass[c.index()]).max().unwrap_or(0),
                (Kind::Class, _) => {
                    let mut p = 1;
                    for c in node.children() {
                        let cp = match g.kind(*c) {
                            Kind::Class => pass[c.index()],
                            Kind::Row => pass[c.index()] + 1,
                            Kind::Uniform => 1,
                        };
                        p = p.max(cp);
                    }
                    p
                }
            };
        }
        pass
    }

    fn rows_kernel(&mut self, roots: &Roots) {
        let g = self.g;
        let needed = self.needed(roots);
        let pass = self.passes(&needed);
        let class_nodes =
            (0..g.len()).filter(|i| needed[*i] && g.kind(NodeId(*i as u32)) == Kind::Class).map(|i| pass[i]);
        let class_stores = self.layout.stores.iter().filter(|s| s.2 == Kind::Class).map(|s| store_pass(g, &pass, s.0));
        let n_passes = class_nodes.chain(class_stores).max().unwrap_or(0);
        let (plans, slots) = self.plan_passes(roots, &needed, &pass, n_passes);
        self.scratch_slots = slots.iter().flatten().count();
        // Scratch arrays are `stride` elements apart: C rounded up to whole vectors.
        let round = self.iconst(self.lanes - 1);
        let up = self.b.ins().iadd(self.classes, round);
        let mask = self.iconst(!(self.lanes - 1));
        let stride = self.b.ins().band(up, mask);
        let acc = self.new_accumulators();
        let scalar_acc = acc[acc.len() - 1];
        let r_var = self.b.declare_var(self.ptr);
        let c_var = self.b.declare_var(self.ptr);
        let begin = self.row_begin;
        let end = self.row_end;
        let n_slots = self.scratch_slots;
        let ctx = RowCtx { roots, needed: &needed, pass: &pass, plans: &plans, slots: &slots, stride, n_slots };
        // Optimized tier: two rows per iteration, their class loops merged, so that each
        // iteration carries two independent dependency chains (a row's passes wait on each
        // other's reductions: max, then the exponentials and their sum, then the gradient):
        // −12% time for logsumexp at C = 10, naive and stable alike. Only where W·l is a row
        // value: its sum then takes the rows in order, as one row per iteration does.
        let pairable = roots.wl_kind == Kind::Row && n_passes > 0;
        let pair = pairable && !self.quick;
        // Both tiers ask for a pair's scratch: the optimized kernel that replaces the quick
        // one then runs in the scratch the caller already has (no allocation after a call).
        if pairable {
            self.scratch_slots *= 2;
        }
        if pair {
            // Rows r and r + 1 while r < end; the last row of an odd count goes with itself
            // (computed twice, stored twice with the same values, its W·l added once), so
            // that the kernel has one copy of the body.
            let one = self.iconst(1);
            let bound = self.b.ins().iadd(end, one);
            self.counted_loop(begin, bound, 2, r_var, false, |t, r| {
                let next = t.b.ins().iadd(r, one);
                let repeat = t.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, next, end);
                let second = t.b.ins().select(repeat, r, next);
                t.row_body(&[r, second], Some(repeat), &ctx, n_passes, &acc, scalar_acc, c_var);
            });
        } else {
            self.counted_loop(begin, end, 1, r_var, false, |t, r| {
                t.row_body(&[r], None, &ctx, n_passes, &acc, scalar_acc, c_var);
            });
        }
        self.finish(&acc);
    }

    /// What each class pass computes, and which class values are kept in scratch between
    /// passes. Passes are planned last to first: a class value a pass needs from an earlier
    /// pass is recomputed if it is cheap, and kept if it costs an inline transcendental
    /// (computed once, stored in its pass, loaded later), so no element pays for the same
    /// exponential twice.
    fn plan_passes(
        &self,
        roots: &Roots,
        needed: &[bool],
        pass: &[usize],
        n_passes: usize,
    ) -> (Vec<PassPlan>, Vec<Option<usize>>) {
        let g = self.g;
        let n = g.len();
        let mut heavy = vec![false; n];
        for i in 0..n {
            let id = NodeId(i as u32);
            if g.kind(id) == Kind::Class {
                let node = g.node(id);
                heavy[i] = is_transcendental(node.op) || node.children().iter().any(|c| heavy[c.index()]);
            }
        }
        let mut plans: Vec<PassPlan> = (0..=n_passes)
            .map(|_| PassPlan {
                want: vec![false; n],
                seeds: Vec::new(),
                reductions: Vec::new(),
                class_stores: Vec::new(),
                loss_here: false,
                guard: Vec::new(),
                split: Vec::new(),
            })
            .collect();
        let mut seeds: Vec<Vec<NodeId>> = vec![Vec::new(); n_passes + 1];
        for i in 0..n {
            let id = NodeId(i as u32);
            let node = g.node(id);
            if needed[i] && matches!(node.op, Op::RowSum | Op::RowMax | Op::RowMin) && g.kind(id) == Kind::Row {
                plans[pass[i]].reductions.push(id);
                seeds[pass[i]].push(node.args[0]);
            }
        }
        for (k, (node, _, dest)) in self.layout.stores.iter().enumerate() {
            if *dest == Kind::Class {
                let p = store_pass(g, pass, *node);
                plans[p].class_stores.push(k);
                seeds[p].push(*node);
            }
        }
        if roots.wl_kind == Kind::Class {
            let p = pass[roots.wl.index()];
            plans[p].loss_here = true;
            seeds[p].push(roots.wl);
        }
        let mut slots: Vec<Option<usize>> = vec![None; n];
        let mut n_slots = 0;
        for p in (1..=n_passes).rev() {
            let mut want = vec![false; n];
            for id in &seeds[p] {
                want[id.index()] = g.kind(*id) == Kind::Class;
            }
            for i in (0..n).rev() {
                let id = NodeId(i as u32);
                if !want[i] || g.kind(id) != Kind::Class || (pass[i] < p && slots[i].is_some()) {
                    continue;
                }
                for c in g.node(id).children() {
                    let ci = c.index();
                    if g.kind(*c) != Kind::Class {
                        continue;
                    }
                    if pass[ci] < p && heavy[ci] && !g.node(*c).op.is_boolean() && slots[ci].is_none() {
                        slots[ci] = Some(n_slots);
                        n_slots += 1;
                        seeds[pass[ci]].push(*c);
                    }
                    want[ci] = true;
                }
            }
            plans[p].want = want;
            plans[p].seeds = seeds[p].clone();
        }
        // A pass whose every result (reductions, class values kept for later passes) is
        // needed only under row conditions known before it runs is guarded by them: the
        // scaled passes of `norm`, needed only where Σx² over- or underflows (with two
        // norms in one loss, where either does).
        let need = self.guards(roots, needed);
        for (p, plan) in plans.iter_mut().enumerate().skip(1) {
            if !plan.class_stores.is_empty() || plan.loss_here {
                continue;
            }
            let results = plan
                .reductions
                .iter()
                .copied()
                .chain((0..n).filter(|i| slots[*i].is_some() && pass[*i] == p).map(|i| NodeId(i as u32)));
            let mut guard: Vec<(NodeId, bool)> = Vec::new();
            let mut guarded = true;
            for r in results {
                match need[r.index()] {
                    Need::When(c, v) if pass[c.index()] < p => {
                        if !guard.contains(&(c, v)) {
                            guard.push((c, v));
                        }
                    }
                    _ => guarded = false,
                }
            }
            if guarded {
                plan.guard = guard;
            }
        }
        if !self.quick {
            for (p, plan) in plans.iter_mut().enumerate().skip(1) {
                if !plan.guard.is_empty() {
                    continue;
                }
                for i in 0..n {
                    let node = g.node(NodeId(i as u32));
                    let c = node.args[0];
                    let here = plan.want[i] && g.kind(NodeId(i as u32)) == Kind::Class;
                    let before = node.op == Op::Where && g.kind(c) == Kind::Row && pass[c.index()] < p;
                    if here && before && is_range_test(g, c) && !plan.split.contains(&c) {
                        plan.split.push(c);
                    }
                }
            }
        }
        (plans, slots)
    }

    /// Where each node is needed: the roots and stores always; the branches of a `where` on
    /// a row condition only when it picks them (the outermost such condition is kept).
    fn guards(&self, roots: &Roots, needed: &[bool]) -> Vec<Need> {
        let g = self.g;
        let mut need = vec![Need::Unused; g.len()];
        need[roots.wl.index()] = Need::Always;
        for (node, _, _) in &self.layout.stores {
            need[node.index()] = Need::Always;
        }
        for i in (0..g.len()).rev() {
            let here = need[i];
            if here == Need::Unused || !needed[i] {
                continue;
            }
            let node = g.node(NodeId(i as u32));
            let [c, a, b] = node.args;
            if node.op == Op::Where && g.kind(c) == Kind::Row {
                let on = |v: bool| if here == Need::Always { Need::When(c, v) } else { here };
                need[c.index()] = need[c.index()].meet(here);
                need[a.index()] = need[a.index()].meet(on(true));
                need[b.index()] = need[b.index()].meet(on(false));
                continue;
            }
            for ch in node.children() {
                need[ch.index()] = need[ch.index()].meet(here);
            }
        }
        need
    }

    /// Address of class `c` (an i64) in scratch array `slot`.
    fn scratch_addr(&mut self, slot: usize, c: Value, stride: Value) -> Value {
        let first = self.iconst(slot as i64);
        let start = self.b.ins().imul(first, stride);
        let idx = self.b.ins().iadd(start, c);
        let sz = self.iconst(self.size);
        let off = self.b.ins().imul(idx, sz);
        self.b.ins().iadd(self.scratch, off)
    }

    /// The state of row `r` before its first pass: its start in the data, and whether its
    /// class indices are in range; `slot0` is its first scratch array.
    fn row_state(&mut self, r: Value, roots: &Roots, slot0: usize) -> RowState {
        let base = self.b.ins().imul(r, self.classes);
        let ptrs = (0..self.layout.n_inputs)
            .map(|n| {
                (self.g.input_kind(n as u16) == Kind::Class).then(|| {
                    let step = self.ptrs[self.layout.row_step_slot(n)];
                    let off = self.b.ins().imul(r, step);
                    self.b.ins().iadd(self.ptrs[n], off)
                })
            })
            .collect();
        // Rows whose class index is out of range: every derivative there is 0.
        let mut valid: Option<Value> = None;
        for n in &roots.index_inputs {
            let slot = self.layout.n_inputs + *n as usize;
            let a = self.addr(slot, r, 4);
            let k = self.b.ins().load(types::I32, Self::flags(), a, 0);
            let zero = self.b.ins().iconst(types::I32, 0);
            let ok = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, k, zero);
            valid = Some(match valid {
                Some(v) => self.b.ins().band(v, ok),
                None => ok,
            });
        }
        RowState { r, base, ptrs, vals: HashMap::new(), masks: HashMap::new(), valid, slot0 }
    }

    /// Rows `rs` (one, or two emitted together): their passes, row values, W·l and row stores.
    /// `repeat` (with two rows): the second is the first again, and its W·l is not added.
    #[allow(clippy::too_many_arguments)]
    fn row_body(
        &mut self,
        rs: &[Value],
        repeat: Option<Value>,
        ctx: &RowCtx<'_>,
        n_passes: usize,
        acc: &[Variable],
        scalar_acc: Variable,
        c_var: Variable,
    ) {
        let g = self.g;
        let (roots, needed, pass) = (ctx.roots, ctx.needed, ctx.pass);
        let mut rows: Vec<RowState> =
            rs.iter().enumerate().map(|(k, r)| self.row_state(*r, roots, k * ctx.n_slots)).collect();
        for p in 0..=n_passes {
            // A pass with nothing to make (no reduction, store, W·l or kept value; a class
            // input read only through a gather still numbers one) emits no loop: the Σ
            // pre-pass of cross-entropy's weights ran an empty class loop on every row.
            if p > 0 && !ctx.plans[p].seeds.is_empty() {
                if !ctx.plans[p].split.is_empty() {
                    self.split_pass(p, ctx, &mut rows, acc, c_var);
                } else if ctx.plans[p].guard.is_empty() {
                    self.class_pass(p, None, ctx, &mut rows, acc, c_var);
                } else {
                    self.guarded_pass(p, ctx, &mut rows, acc, c_var);
                }
            }
            // Row values available after pass p.
            for row in &mut rows {
                self.row_ptrs.clone_from(&row.ptrs);
                for i in 0..g.len() {
                    let id = NodeId(i as u32);
                    if !needed[i] || g.kind(id) != Kind::Row || pass[i] != p {
                        continue;
                    }
                    let node = g.node(id);
                    if matches!(node.op, Op::RowSum | Op::RowMax | Op::RowMin) {
                        continue; // set by the pass
                    }
                    let at = At { idx: row.r, vector: false };
                    let v = match node.op {
                        Op::Input(n) => self.load(n as usize, at),
                        Op::Seed => self.load(self.layout.seed_slot(), at),
                        Op::Gather => self.gather(node.args[0], node.args[1], row.r, row.base),
                        op => {
                            let args: Vec<Value> =
                                node.children().iter().map(|c| self.row_value(*c, &row.vals)).collect();
                            self.node_op(op, node.children(), &args, &mut row.masks, id)
                        }
                    };
                    row.vals.insert(id, v);
                }
            }
        }
        for (k, row) in rows.iter().enumerate() {
            if roots.wl_kind == Kind::Row {
                let wl = self.row_value(roots.wl, &row.vals);
                match repeat.filter(|_| k == 1) {
                    Some(again) => {
                        let before = self.b.use_var(scalar_acc);
                        self.accumulate(&[scalar_acc], wl);
                        let after = self.b.use_var(scalar_acc);
                        let total = self.b.ins().select(again, before, after);
                        self.b.def_var(scalar_acc, total);
                    }
                    None => self.accumulate(&[scalar_acc], wl),
                }
            }
            for (k, (node, _, dest)) in self.layout.stores.iter().enumerate() {
                if *dest == Kind::Class {
                    continue;
                }
                let v = self.row_value(*node, &row.vals);
                let v = match (row.valid, self.layout.stores[k].1) {
                    (Some(ok), Store::Output) => {
                        let zero = self.fconst(0.0);
                        self.b.ins().select(ok, v, zero)
                    }
                    _ => v,
                };
                let slot = self.layout.store_slot(k);
                self.store(slot, At { idx: row.r, vector: false }, v);
            }
        }
    }

    /// [`Self::class_pass`] run only when one of the pass's guard conditions has its value
    /// in one of the rows; elsewhere its reductions read 0 (every use of them is on the other
    /// side of a `where` on those conditions, so a row of a pair whose conditions lack their
    /// values computes them for nothing, with the same bits).
    fn guarded_pass(&mut self, p: usize, ctx: &RowCtx<'_>, rows: &mut [RowState], acc: &[Variable], c_var: Variable) {
        // Run when any condition has its value.
        let guard = ctx.plans[p].guard.clone();
        let Some(cond) = self.combine_row_masks(&guard, rows, false) else {
            self.class_pass(p, None, ctx, rows, acc, c_var);
            return;
        };
        let run = self.b.create_block();
        let skip = self.b.create_block();
        let (merge, reductions, params) = self.merge_block(p, ctx, rows.len());
        self.b.ins().brif(cond, run, &[], skip, &[]);
        self.b.switch_to_block(run);
        self.class_pass(p, None, ctx, rows, acc, c_var);
        let args = self.merge_args(&reductions, rows);
        self.b.ins().jump(merge, &args);
        self.b.switch_to_block(skip);
        let zero = self.fconst(0.0);
        let zeros: Vec<_> = args.iter().map(|_| zero.into()).collect();
        self.b.ins().jump(merge, &zeros);
        self.enter_merge(merge, &reductions, params, rows);
    }

    /// [`Self::class_pass`] emitted twice (see [`PassPlan::split`]): a copy for when every
    /// split condition holds in every row, taking the first side of the `where`s on them
    /// without computing the second, and the general copy otherwise. Same bits as the
    /// selects.
    fn split_pass(&mut self, p: usize, ctx: &RowCtx<'_>, rows: &mut [RowState], acc: &[Variable], c_var: Variable) {
        let conds = ctx.plans[p].split.clone();
        let tests: Vec<(NodeId, bool)> = conds.iter().map(|c| (*c, true)).collect();
        let Some(all) = self.combine_row_masks(&tests, rows, true) else {
            self.class_pass(p, None, ctx, rows, acc, c_var);
            return;
        };
        let fast = self.b.create_block();
        let general = self.b.create_block();
        let (merge, reductions, params) = self.merge_block(p, ctx, rows.len());
        self.b.ins().brif(all, fast, &[], general, &[]);
        for (block, choose) in [(fast, Some(conds.as_slice())), (general, None)] {
            self.b.switch_to_block(block);
            let mut copy = rows.to_vec();
            self.class_pass(p, choose, ctx, &mut copy, acc, c_var);
            let args = self.merge_args(&reductions, &copy);
            self.b.ins().jump(merge, &args);
        }
        self.enter_merge(merge, &reductions, params, rows);
    }

    /// The class nodes pass `p` computes where every condition of `conds` holds: the plan's,
    /// less those only the second side of a `where` on one of them needs.
    fn want_under(&self, p: usize, ctx: &RowCtx<'_>, conds: &[NodeId]) -> Vec<bool> {
        let g = self.g;
        let plan = &ctx.plans[p];
        let n = g.len();
        let mut want = vec![false; n];
        let class = |id: NodeId| g.kind(id) == Kind::Class;
        for id in &plan.seeds {
            want[id.index()] = class(*id);
        }
        for i in (0..n).rev() {
            let id = NodeId(i as u32);
            if !want[i] || !plan.want[i] || (ctx.pass[i] < p && ctx.slots[i].is_some()) {
                continue;
            }
            let node = g.node(id);
            if node.op == Op::Where && conds.contains(&node.args[0]) {
                let side = node.args[1];
                want[side.index()] = class(side);
                continue;
            }
            for ch in node.children() {
                if class(*ch) {
                    want[ch.index()] = true;
                }
            }
        }
        for (w, pw) in want.iter_mut().zip(&plan.want) {
            *w &= *pw;
        }
        want
    }

    /// The row conditions `tests` (each flipped where its value is `false`) of every row
    /// combined by AND (`all`) or OR, as one branch condition; `None` for no tests.
    fn combine_row_masks(&mut self, tests: &[(NodeId, bool)], rows: &[RowState], all: bool) -> Option<Value> {
        let mut acc: Option<Value> = None;
        for row in rows {
            for (c, v) in tests {
                let mask = self.row_mask(*c, row);
                // Row masks are 0/1 bytes from `fcmp`.
                let lit = if *v { mask } else { self.b.ins().bxor_imm_u(mask, 1) };
                acc = Some(match acc {
                    Some(a) if all => self.b.ins().band(a, lit),
                    Some(a) => self.b.ins().bor(a, lit),
                    None => lit,
                });
            }
        }
        acc
    }

    /// The arguments a copy of a pass jumps to its merge block with: each row's reductions.
    fn merge_args(&mut self, reductions: &[NodeId], rows: &[RowState]) -> Vec<BlockArg> {
        let mut args = Vec::with_capacity(reductions.len() * rows.len());
        for row in rows {
            for r in reductions {
                args.push(self.row_value(*r, &row.vals).into());
            }
        }
        args
    }

    /// Continues in `merge` (from [`Self::merge_block`]), where each reduction of the pass is
    /// the block parameter its copies jumped with.
    fn enter_merge(&mut self, merge: Block, reductions: &[NodeId], params: Vec<Value>, rows: &mut [RowState]) {
        self.b.switch_to_block(merge);
        let mut params = params.into_iter();
        for row in rows {
            for (r, v) in reductions.iter().zip(params.by_ref()) {
                row.vals.insert(*r, v);
            }
        }
    }

    /// The lane mask of row condition `c` (kept from its comparison, else tested ≠ 0).
    fn row_mask(&mut self, c: NodeId, row: &RowState) -> Value {
        match row.masks.get(&c) {
            Some(m) => *m,
            None => {
                let x = self.row_value(c, &row.vals);
                self.nonzero(x)
            }
        }
    }

    /// The block where the copies of pass `p` meet, with one parameter per reduction of the
    /// pass and row (each copy jumps there with its totals): the block, the reductions, the
    /// parameters (row by row).
    fn merge_block(&mut self, p: usize, ctx: &RowCtx<'_>, n_rows: usize) -> (Block, Vec<NodeId>, Vec<Value>) {
        let merge = self.b.create_block();
        let reductions = ctx.plans[p].reductions.clone();
        let params = (0..reductions.len() * n_rows).map(|_| self.b.append_block_param(merge, self.scalar)).collect();
        (merge, reductions, params)
    }

    fn row_value(&mut self, id: NodeId, row_vals: &HashMap<NodeId, Value>) -> Value {
        match row_vals.get(&id) {
            Some(v) => *v,
            None => self.uni_scalar.get(&id).copied().unwrap_or_else(|| self.b.ins().f32const(0.0)),
        }
    }

    /// Element k of the row of an input (or the seed); 0 where k is out of range.
    fn gather(&mut self, x: NodeId, k: NodeId, r: Value, base: Value) -> Value {
        let g = self.g;
        let slot = match g.node(x).op {
            Op::Input(n) => n as usize,
            _ => self.layout.seed_slot(),
        };
        let kslot = match g.node(k).op {
            Op::Input(n) => self.layout.n_inputs + n as usize,
            _ => return self.fconst(0.0),
        };
        let a = self.addr(kslot, r, 4);
        let k32 = self.b.ins().load(types::I32, Self::flags(), a, 0);
        let zero32 = self.b.ins().iconst(types::I32, 0);
        let ok = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, k32, zero32);
        let kc = self.b.ins().select(ok, k32, zero32);
        let k64 = self.b.ins().sextend(self.ptr, kc);
        let v = match g.node(x).op {
            Op::Input(n) => self.load_class(n as usize, k64, false),
            _ => {
                let idx = self.b.ins().iadd(base, k64);
                self.load(slot, At { idx, vector: false })
            }
        };
        let zero = self.fconst(0.0);
        self.b.ins().select(ok, v, zero)
    }

    /// Row values a pass's loop reads: the row arguments of the class values it computes
    /// (`want`) and the row values it stores, sorted.
    fn pass_row_inputs(&self, want: &[bool], class_stores: &[usize]) -> Vec<NodeId> {
        let g = self.g;
        let mut row_inputs: Vec<NodeId> = Vec::new();
        for i in 0..g.len() {
            let id = NodeId(i as u32);
            if !want[i] || g.kind(id) != Kind::Class {
                continue;
            }
            row_inputs.extend(g.node(id).children().iter().filter(|c| g.kind(**c) == Kind::Row));
        }
        for k in class_stores {
            let node = self.layout.stores[*k].0;
            if g.kind(node) == Kind::Row {
                row_inputs.push(node);
            }
        }
        row_inputs.sort_unstable();
        row_inputs.dedup();
        row_inputs
    }

    /// The loops over the classes of `rows` for pass `p` (see [`Self::class_loop`]): one
    /// for the pair, or one per row for a pass that only stores and reads many row values,
    /// or, for a pass that also reduces, a paired loop for its reductions followed by a loop
    /// per row for its stores (same bits either way: each loop computes the class values it
    /// needs, and the reductions add in the same order).
    fn class_pass(
        &mut self,
        p: usize,
        choose: Option<&[NodeId]>,
        ctx: &RowCtx<'_>,
        rows: &mut [RowState],
        acc: &[Variable],
        c_var: Variable,
    ) {
        let g = self.g;
        let plan = &ctx.plans[p];
        let chosen_want = choose.map(|conds| self.want_under(p, ctx, conds));
        let want = chosen_want.as_ref().unwrap_or(&plan.want);
        let all = PassPart {
            want,
            reductions: &plan.reductions,
            class_stores: &plan.class_stores,
            loss_here: plan.loss_here,
        };
        if rows.len() < 2 || plan.loss_here || plan.class_stores.is_empty() {
            self.class_loop(p, choose, &all, ctx, rows, acc, c_var);
            return;
        }
        if plan.reductions.is_empty() {
            // Stores only: a vector per row value and row is live over the loop; with many,
            // holding two rows at once spills, and with nothing to chain it gains nothing.
            if self.pass_row_inputs(want, &plan.class_stores).len() >= UNPAIRED_ROW_INPUTS {
                for k in 0..rows.len() {
                    self.class_loop(p, choose, &all, ctx, &mut rows[k..=k], acc, c_var);
                }
            } else {
                self.class_loop(p, choose, &all, ctx, rows, acc, c_var);
            }
            return;
        }
        // Reductions and stores: when the stores read many row values, the reductions get
        // their own paired loop and the stores a loop per row, unless that would compute an
        // inline transcendental twice or the pass keeps a value for a later one (stored once).
        let loaded = |i: usize| ctx.slots[i].is_some() && ctx.pass[i] < p;
        let keeps = (0..g.len()).any(|i| want[i] && ctx.slots[i].is_some() && ctx.pass[i] == p);
        let store_seeds: Vec<NodeId> = plan.class_stores.iter().map(|k| self.layout.stores[*k].0).collect();
        let want_stores = pass_closure(g, want, &loaded, &store_seeds);
        let red_seeds: Vec<NodeId> = plan.reductions.iter().map(|r| g.node(*r).args[0]).collect();
        let want_red = pass_closure(g, want, &loaded, &red_seeds);
        let heavy = (0..g.len())
            .any(|i| want_red[i] && want_stores[i] && !loaded(i) && is_transcendental(g.node(NodeId(i as u32)).op));
        if keeps || heavy || self.pass_row_inputs(&want_stores, &plan.class_stores).len() < UNPAIRED_ROW_INPUTS {
            self.class_loop(p, choose, &all, ctx, rows, acc, c_var);
            return;
        }
        let reduce = PassPart { want: &want_red, reductions: &plan.reductions, class_stores: &[], loss_here: false };
        self.class_loop(p, choose, &reduce, ctx, rows, acc, c_var);
        let store =
            PassPart { want: &want_stores, reductions: &[], class_stores: &plan.class_stores, loss_here: false };
        for k in 0..rows.len() {
            self.class_loop(p, choose, &store, ctx, &mut rows[k..=k], acc, c_var);
        }
    }

    /// One loop over the classes of `rows` for (part of) pass `p`: each iteration computes
    /// class c of every row, one row after the other. The rows' chains are independent, so the core
    /// overlaps them anyway; emitted row by row rather than node by node, only one row's
    /// temporaries are live at a time (fewer spills: −1% to −3% instructions, measured).
    #[allow(clippy::too_many_arguments)]
    fn class_loop(
        &mut self,
        p: usize,
        choose: Option<&[NodeId]>,
        part: &PassPart<'_>,
        ctx: &RowCtx<'_>,
        rows: &mut [RowState],
        acc: &[Variable],
        c_var: Variable,
    ) {
        let g = self.g;
        let roots = ctx.roots;
        let want = part.want;
        let (reductions, class_stores, loss_here) =
            (part.reductions.to_vec(), part.class_stores.to_vec(), part.loss_here);
        // Class values kept in scratch: loaded here when an earlier pass made them, stored
        // here when this pass makes them for a later one.
        let kept: Vec<(usize, bool)> =
            (0..g.len()).map(|i| ctx.slots[i].map_or((usize::MAX, false), |s| (s, ctx.pass[i] < p))).collect();
        let stride = ctx.stride;
        let n_rows = rows.len();
        let row_inputs = self.pass_row_inputs(want, &class_stores);
        // Accumulators for the reductions of each row: a vector and a scalar each.
        let mut red_vars = vec![Vec::new(); n_rows];
        let mut nan_vars = vec![Vec::new(); n_rows];
        for k in 0..n_rows {
            for rid in &reductions {
                let init = match g.node(*rid).op {
                    Op::RowSum => 0.0,
                    Op::RowMax => f64::NEG_INFINITY,
                    _ => f64::INFINITY,
                };
                let s = self.fconst(init);
                let v = self.splat(s);
                let vv = self.b.declare_var(self.vector);
                self.b.def_var(vv, v);
                let sv = self.b.declare_var(self.scalar);
                self.b.def_var(sv, s);
                // max/min run on pseudo-max/min (one instruction, NaN-dropping) and collect
                // "saw a NaN" separately, off the critical path; the result is NaN if so.
                let mask_ty = if self.scalar == types::F32 { types::I32X4 } else { types::I64X2 };
                let z = self.b.ins().iconst(mask_ty.lane_type(), 0);
                let zv = self.b.ins().splat(mask_ty, z);
                let nv = self.b.declare_var(mask_ty);
                self.b.def_var(nv, zv);
                let z8 = self.b.ins().iconst(types::I8, 0);
                let ns = self.b.declare_var(types::I8);
                self.b.def_var(ns, z8);
                red_vars[k].push((vv, sv));
                nan_vars[k].push((nv, ns));
            }
        }
        // Each row's validity as a float (1 or 0), for masking stores.
        let valid_f: Vec<Option<Value>> = rows
            .iter()
            .map(|row| {
                row.valid.map(|ok| {
                    let one = self.fconst(1.0);
                    let zero = self.fconst(0.0);
                    self.b.ins().select(ok, one, zero)
                })
            })
            .collect();
        let bases: Vec<Value> = rows.iter().map(|row| row.base).collect();
        let ptrs: Vec<Vec<Option<Value>>> = rows.iter().map(|row| row.ptrs.clone()).collect();
        let slot0: Vec<usize> = rows.iter().map(|row| row.slot0).collect();
        let zero_idx = self.iconst(0);
        let classes = self.classes;
        let lanes = self.lanes;
        let iota: Vec<f64> = (0..lanes).map(|l| l as f64).collect();
        let iota_v = self.vconst(&iota);
        for vector in [true, false] {
            let start = if vector { zero_idx } else { self.b.use_var(c_var) };
            let step = if vector { lanes } else { 1 };
            // Row values (splatted for the vector loop), computed before the loop.
            let mut row_in: Vec<HashMap<NodeId, Value>> = Vec::with_capacity(n_rows);
            for row in rows.iter() {
                let mut m = HashMap::with_capacity(row_inputs.len());
                for id in &row_inputs {
                    let s = self.row_value(*id, &row.vals);
                    let v = if vector { self.splat(s) } else { s };
                    m.insert(*id, v);
                }
                row_in.push(m);
            }
            let valid_in: Vec<Option<Value>> =
                valid_f.iter().map(|f| f.map(|f| if vector { self.splat(f) } else { f })).collect();
            let (red_vars, nan_vars) = (&red_vars, &nan_vars);
            let (reductions, class_stores, want, kept) = (&reductions, &class_stores, want, &kept);
            let (bases, ptrs, slot0) = (&bases, &ptrs, &slot0);
            self.counted_loop(start, classes, step, c_var, true, |t, c| {
                for k in 0..n_rows {
                    let at = At { idx: t.b.ins().iadd(bases[k], c), vector };
                    let mut vals: HashMap<NodeId, Value> = HashMap::new();
                    let mut masks: HashMap<NodeId, Value> = HashMap::new();
                    t.row_ptrs.clone_from(&ptrs[k]);
                    for i in 0..g.len() {
                        let id = NodeId(i as u32);
                        if !want[i] || g.kind(id) != Kind::Class {
                            continue;
                        }
                        let node = g.node(id);
                        let (slot, loaded) = kept[i];
                        if loaded {
                            let a = t.scratch_addr(slot0[k] + slot, c, stride);
                            let ty = if vector { t.vector } else { t.scalar };
                            let v = t.b.ins().load(ty, Self::flags(), a, 0);
                            vals.insert(id, v);
                            continue;
                        }
                        let v = match node.op {
                            Op::Input(n) => t.load_class(n as usize, c, vector),
                            Op::Seed => t.load(t.layout.seed_slot(), at),
                            Op::ClassIndex => {
                                let cf = t.b.ins().fcvt_from_sint(t.scalar, c);
                                if vector {
                                    let s = t.splat(cf);
                                    t.b.ins().fadd(s, iota_v)
                                } else {
                                    cf
                                }
                            }
                            op => {
                                // A `where` on the condition this copy of the pass is for
                                // reads only its side (the other is not computed here).
                                let children = match choose {
                                    Some(conds) if op == Op::Where && conds.contains(&node.args[0]) => {
                                        std::slice::from_ref(&node.args[1])
                                    }
                                    _ => node.children(),
                                };
                                let args: Vec<Value> = children
                                    .iter()
                                    .map(|a| match g.kind(*a) {
                                        Kind::Class => vals[a],
                                        Kind::Row => row_in[k][a],
                                        Kind::Uniform => {
                                            if vector {
                                                t.uni_vector[a]
                                            } else {
                                                t.uni_scalar[a]
                                            }
                                        }
                                    })
                                    .collect();
                                if children.len() == 1 && op == Op::Where {
                                    args[0]
                                } else {
                                    t.node_op(op, node.children(), &args, &mut masks, id)
                                }
                            }
                        };
                        if slot != usize::MAX {
                            let a = t.scratch_addr(slot0[k] + slot, c, stride);
                            t.b.ins().store(Self::flags(), v, a, 0);
                        }
                        vals.insert(id, v);
                    }
                    for ((rid, (vv, sv)), (nv, ns)) in reductions.iter().zip(&red_vars[k]).zip(&nan_vars[k]) {
                        let var = if vector { *vv } else { *sv };
                        let x = vals[&g.node(*rid).args[0]];
                        let a = t.b.use_var(var);
                        let op = g.node(*rid).op;
                        let n = match op {
                            Op::RowSum => t.b.ins().fadd(a, x),
                            Op::RowMax => t.pmax(a, x),
                            _ => t.pmin(a, x),
                        };
                        t.b.def_var(var, n);
                        if op != Op::RowSum {
                            let flag = if vector { *nv } else { *ns };
                            let nan = t.b.ins().fcmp(FloatCC::Unordered, x, x);
                            let f = t.b.use_var(flag);
                            let f = t.b.ins().bor(f, nan);
                            t.b.def_var(flag, f);
                        }
                    }
                    if loss_here {
                        let wl = vals[&roots.wl];
                        let target = if vector { &acc[..acc.len() - 1] } else { &acc[acc.len() - 1..] };
                        t.accumulate(target, wl);
                    }
                    for s in class_stores {
                        let (node, kind, _) = t.layout.stores[*s];
                        let mut v = match g.kind(node) {
                            Kind::Class => vals[&node],
                            Kind::Row => row_in[k][&node],
                            Kind::Uniform if vector => t.uni_vector[&node],
                            Kind::Uniform => t.uni_scalar[&node],
                        };
                        if let (Some(okf), Store::Output) = (valid_in[k], kind) {
                            let ok = t.nonzero(okf);
                            let zero = t.cst_like(0.0, v);
                            v = t.sel(ok, v, zero);
                        }
                        let slot = t.layout.store_slot(*s);
                        t.store(slot, at, v);
                    }
                }
            });
        }
        // Combine each reduction's lanes and its scalar tail, in a fixed order.
        let mut totals = Vec::with_capacity(reductions.len() * n_rows);
        for k in 0..n_rows {
            for ((rid, (vv, sv)), (nv, ns)) in reductions.iter().zip(&red_vars[k]).zip(&nan_vars[k]) {
                let op = g.node(*rid).op;
                let v = self.b.use_var(*vv);
                let tail = self.b.use_var(*sv);
                let mut total = self.b.ins().extractlane(v, 0);
                for lane in 1..lanes as u8 {
                    let x = self.b.ins().extractlane(v, lane);
                    total = match op {
                        Op::RowSum => self.b.ins().fadd(total, x),
                        Op::RowMax => self.pmax(total, x),
                        _ => self.pmin(total, x),
                    };
                }
                total = match op {
                    Op::RowSum => self.b.ins().fadd(total, tail),
                    Op::RowMax => self.pmax(total, tail),
                    _ => self.pmin(total, tail),
                };
                if op != Op::RowSum {
                    let fv = self.b.use_var(*nv);
                    let any_v = self.b.ins().vany_true(fv);
                    let fs = self.b.use_var(*ns);
                    let any = self.b.ins().bor(any_v, fs);
                    let nan = self.fconst(f64::NAN);
                    total = self.b.ins().select(any, nan, total);
                }
                totals.push((k, *rid, total));
            }
        }
        // The totals cross a block boundary as block parameters. Cranelift places pure
        // values at their uses and hoists them out of a loop only as far as the loop depth
        // of their operands; the accumulators are parameters of this pass's loop header (as
        // deep as the next pass's loop), so without the boundary every row value computed
        // from them (horizontal sums, the logsumexp, a reciprocal) was recomputed in every
        // iteration of the next pass.
        let join = self.b.create_block();
        let mut params = Vec::with_capacity(totals.len());
        for _ in &totals {
            params.push(self.b.append_block_param(join, self.scalar));
        }
        let args: Vec<_> = totals.iter().map(|(_, _, v)| (*v).into()).collect();
        self.b.ins().jump(join, &args);
        self.b.switch_to_block(join);
        for ((k, rid, _), v) in totals.iter().zip(params) {
            rows[*k].vals.insert(*rid, v);
        }
    }
}

// The summation order, which the kernel interpreter (`jit/interp.rs`) reproduces:
// - Σ W·l goes into one f64 accumulator per vector lane (lane l of a vector always into
//   accumulator l, also in the unrolled copy of an element kernel's body, so that element
//   i + lanes follows element i in the same accumulator) and one scalar accumulator for
//   tails. The partial sum is `((0 + a_0) + a_1) + … + a_{lanes−1}) + tail`.
// - A row reduction in a class pass keeps one vector accumulator in the dtype (lanes over
//   classes `c ≡ l mod lanes` of the whole vectors, in class order) and one scalar for the
//   tail classes, then combines lane 0, lane 1, …, and the tail in that order; `max`/`min`
//   are `a < x ? x : a` / `x < a ? x : a` from ±inf, NaN if any entry is NaN.
// - Class values are elementwise, so which pass computes them (or keeps them in scratch)
//   does not change their bits.

/// Lanes of the 128-bit vectors kernels compute in: 4 for f32, 2 for f64.
pub(crate) fn vector_lanes(dtype: Dtype) -> usize {
    match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 2,
    }
}

/// Nodes needed by the roots and the stores.
pub(crate) fn needed(g: &Graph, roots: &Roots, layout: &Layout) -> Vec<bool> {
    let stores = layout.stores.iter().map(|s| s.0);
    reachable(g, std::iter::once(roots.wl).chain(stores))
}

/// The class nodes of `want` that `seeds` need, through class arguments, not looking
/// past a value `loaded` from scratch.
fn pass_closure(g: &Graph, want: &[bool], loaded: &dyn Fn(usize) -> bool, seeds: &[NodeId]) -> Vec<bool> {
    let mut w = vec![false; g.len()];
    for id in seeds {
        w[id.index()] = want[id.index()] && g.kind(*id) == Kind::Class;
    }
    for i in (0..g.len()).rev() {
        if !w[i] || loaded(i) {
            continue;
        }
        for c in g.node(NodeId(i as u32)).children() {
            if want[c.index()] && g.kind(*c) == Kind::Class {
                w[c.index()] = true;
            }
        }
    }
    w
}

/// The nodes `from` reach (themselves included), by index, through the value argument only
/// of `straight_through`.
pub(crate) fn reachable(g: &Graph, from: impl IntoIterator<Item = NodeId>) -> Vec<bool> {
    let mut reach = vec![false; g.len()];
    for n in from {
        reach[n.index()] = true;
    }
    for i in (0..g.len()).rev() {
        if reach[i] {
            let node = g.node(NodeId(i as u32));
            // `straight_through(v, s)` has the value of v: s only carries derivatives,
            // which are nodes of their own by now.
            let value_args = if node.op == Op::StraightThrough { &node.children()[..1] } else { node.children() };
            for c in value_args {
                reach[c.index()] = true;
            }
        }
    }
    reach
}

/// An element body split on its finiteness tests (see [`finite_split`]).
pub(crate) struct FiniteSplit {
    /// The tests `|x| < inf` (or `x < inf`) that select between a formula and its overflow
    /// fallback, taken as true on the fast path.
    pub tests: Vec<NodeId>,
    /// Nodes computed before the branch: the tests and what they are computed from.
    pub prefix: Vec<bool>,
    /// Nodes the fast path computes after the branch.
    pub fast: Vec<bool>,
    /// Nodes the slow path (the whole body) computes after the branch.
    pub slow: Vec<bool>,
}

/// Fewest nodes the fast path must skip for a split to pay for its test and branch.
const SPLIT_SAVES: usize = 3;

/// A test that only infinities and NaN fail: `x < +inf` (stability rules write
/// `abs(x) < inf`), the condition of the overflow fallbacks of rules S36 and S21.
fn is_finiteness_test(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    node.op == Op::Lt && g.constant(node.args[1]) == Some(f64::INFINITY)
}

/// A test that only extreme values fail: a finiteness test, `abs(x) >= c` with `0 < c ≤
/// 2^-126`, `abs(x) <= c` with `2^126 ≤ c < inf` (`prepare`'s test that a reciprocal is a
/// normal number), or a conjunction of such tests.
fn is_range_test(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    let [a, b, _] = node.args;
    let of_abs = || g.node(a).op == Op::Abs;
    let c = || g.constant(b).unwrap_or(f64::NAN);
    match node.op {
        Op::And => is_range_test(g, a) && is_range_test(g, b),
        Op::Ge => of_abs() && c() > 0.0 && c() <= 2f64.powi(-126),
        Op::Le => of_abs() && c() >= 2f64.powi(126) && c() < f64::INFINITY,
        _ => is_finiteness_test(g, id),
    }
}

/// Splits an element body whose selects on finiteness tests keep costly fallbacks (an
/// operand that overflowed, computed another way): with every lane finite, which is almost
/// always, the fast path computes none of the fallbacks. `None` when there is no such select
/// or the fallbacks cost fewer than [`SPLIT_SAVES`] nodes.
pub(crate) fn finite_split(g: &Graph, roots: &Roots, layout: &Layout, needed: &[bool]) -> Option<FiniteSplit> {
    // Reach from the roots, following only the first branch of selects on finiteness tests:
    // the tests met on the way are the ones the fast path assumes.
    let mut fast = vec![false; g.len()];
    fast[roots.wl.index()] = true;
    for s in &layout.stores {
        fast[s.0.index()] = true;
    }
    let mut tests = Vec::new();
    for i in (0..g.len()).rev() {
        if !fast[i] {
            continue;
        }
        let node = g.node(NodeId(i as u32));
        if node.op == Op::Where && is_finiteness_test(g, node.args[0]) {
            if !tests.contains(&node.args[0]) {
                tests.push(node.args[0]);
            }
            fast[node.args[1].index()] = true;
            continue;
        }
        for c in node.children() {
            fast[c.index()] = true;
        }
    }
    if tests.is_empty() {
        return None;
    }
    let prefix = reachable(g, tests.iter().copied());
    let skipped = (0..g.len()).filter(|&i| needed[i] && !fast[i] && !prefix[i]).count();
    if skipped < SPLIT_SAVES {
        return None;
    }
    let after = |set: &[bool]| set.iter().zip(&prefix).map(|(n, p)| *n && !p).collect::<Vec<bool>>();
    Some(FiniteSplit { fast: after(&fast), slow: after(needed), tests, prefix })
}

/// Fewest row values (see `Translator::pass_row_inputs`) for which a store-only pass of a
/// row pair runs a loop per row. Instructions per element (optimized kernels, C = 64), a
/// loop per row against both rows in one: cosine similarity (6 row values) 15.7 → 14.7,
/// cross-entropy (5) 31.6 → 30.4, sparse categorical cross-entropy from logits (5)
/// 30.8 → 30.3; but categorical hinge (3) 10.3 → 10.8 and bootstrapped cross-entropy (4)
/// 50.0 → 50.6, whose loops held both rows without spilling and paid the per-row set-up twice.
const UNPAIRED_ROW_INPUTS: usize = 5;

/// Most values the gradient and the loss share for an element kernel to be unrolled.
const KEPT_FOR_UNROLLING: usize = 2;

/// Vectors per iteration of an element kernel's main loop (the unrolling): two for cheap
/// bodies, one for bodies with inline transcendentals (the math already fills the pipeline)
/// and for bodies whose loss keeps many of the gradient's values: Cranelift computes a
/// loop-carried sum where the back edge needs it, so the first copy's loss waits for the
/// end of the second copy with those values live across it (Huber: p, y, p − y, |p − y| and
/// the branch mask, which spilled the accumulators and constants to the stack: 9.3
/// instructions per element unrolled, 7.9 not).
pub(crate) fn vectors_per_iteration(g: &Graph, roots: &Roots, layout: &Layout) -> usize {
    let needed = needed(g, roots, layout);
    let heavy = needed.iter().enumerate().any(|(i, n)| *n && is_transcendental(g.node(NodeId(i as u32)).op));
    if heavy || kept_for_loss(g, &needed, layout) > KEPT_FOR_UNROLLING {
        1
    } else {
        2
    }
}

/// Values the stores need that the loss also reads after them: the non-uniform nodes of
/// the stores' graphs with a parent that only the loss needs.
fn kept_for_loss(g: &Graph, needed: &[bool], layout: &Layout) -> usize {
    let stored = reachable(g, layout.stores.iter().map(|s| s.0));
    let mut kept = vec![false; g.len()];
    for i in (0..g.len()).filter(|i| needed[*i] && !stored[*i]) {
        for c in g.node(NodeId(i as u32)).children() {
            if stored[c.index()] && g.kind(*c) != Kind::Uniform {
                kept[c.index()] = true;
            }
        }
    }
    kept.iter().filter(|k| **k).count()
}

/// True for the ops this code generator has code for (after `prepare` and the fused-op
/// lowering, nothing else reaches it; anything else is reported, never miscompiled).
pub(crate) fn supported(op: Op) -> bool {
    use Op::*;
    matches!(
        op,
        Const(_)
            | Input(_)
            | NumClasses
            | ClassIndex
            | Seed
            | Neg
            | Abs
            | Sign
            | Sqrt
            | Exp
            | Log
            | Log1p
            | Expm1
            | Sin
            | Cos
            | Tanh
            | Cosh
            | Sinh
            | ExpDw
            | Sigmoid
            | LogSigmoid
            | Softplus
            | Relu
            | Square
            | Not
            | StopGradient
            | Hold
            | Add
            | Sub
            | Mul
            | Div
            | Pow
            | Max
            | Min
            | Xlogy
            | Lt
            | Le
            | Gt
            | Ge
            | Eq
            | Ne
            | And
            | Or
            | StraightThrough
            | Where
            | Clamp
            | RowSum
            | RowMax
            | RowMin
            | Gather
            | BatchAll
            | BatchAny
            | BatchSum
    )
}

/// Ops emitted as long inline polynomials or calls.
fn is_transcendental(op: Op) -> bool {
    matches!(
        op,
        Op::Exp
            | Op::Log
            | Op::Log1p
            | Op::Expm1
            | Op::Tanh
            | Op::Sigmoid
            | Op::Softplus
            | Op::LogSigmoid
            | Op::Xlogy
            | Op::Sin
            | Op::Cos
            | Op::Sinh
            | Op::Cosh
            | Op::ExpDw
            | Op::Pow
    )
}

/// The pass in which a class-layout store of `node` is written.
fn store_pass(g: &Graph, pass: &[usize], node: NodeId) -> usize {
    match g.kind(node) {
        Kind::Class => pass[node.index()],
        _ => pass[node.index()] + 1,
    }
}

/// The `log(x)` nodes whose every path to the kernel's outputs (stores and W·l) goes through
/// the first branch of `where(x > 0, ·, ·)` on their own argument: the lanes where `x ≤ 0` or
/// NaN are discarded there, so [`MathFunc::LogPositive`] (log without the fix-ups for those
/// inputs) gives the same outputs, bit for bit.
fn positive_logs(g: &Graph, roots: &Roots, layout: &Layout) -> Vec<bool> {
    let n = g.len();
    let mut positive = vec![false; n];
    let outputs: Vec<usize> = layout.stores.iter().map(|s| s.0.index()).chain([roots.wl.index()]).collect();
    let mut reach = vec![false; n];
    for i in 0..n {
        let node = g.node(NodeId(i as u32));
        if node.op != Op::Log {
            continue;
        }
        let x = node.args[0];
        // reach[j]: node j depends on the log other than through such a first branch (nodes
        // are numbered after their arguments).
        reach[i..].fill(false);
        reach[i] = true;
        for j in i + 1..n {
            let user = g.node(NodeId(j as u32));
            let guarded = user.op == Op::Where && is_positive_test(g, user.args[0], x);
            reach[j] = user
                .children()
                .iter()
                .enumerate()
                .any(|(k, c)| c.index() >= i && reach[c.index()] && !(guarded && k == 1));
        }
        positive[i] = !outputs.iter().any(|o| *o >= i && reach[*o]);
    }
    positive
}

/// The lane-tested logs of an element kernel, by node (see [`LaneTest`]): logs and
/// `log1p(−v)` of values computed from a pred input, unless their argument's range is
/// proved (or, for a log, every use discards what is not positive: `positive`).
fn lane_tests(g: &Graph, layout: &Layout, positive: &[bool]) -> Vec<Option<LaneTest>> {
    let mut of_pred = vec![false; g.len()];
    let mut tests = vec![None; g.len()];
    for i in 0..g.len() {
        let id = NodeId(i as u32);
        let node = g.node(id);
        of_pred[i] = match node.op {
            Op::Input(n) => layout.preds.get(n as usize).copied().unwrap_or(false),
            _ => node.children().iter().any(|c| of_pred[c.index()]),
        };
        let Some(&x) = node.children().first() else { continue };
        if !of_pred[x.index()] || g.kind(id) == Kind::Uniform {
            continue;
        }
        tests[i] = match node.op {
            Op::Log if !positive[i] && !is_normal(g, x) => Some(LaneTest::Normal),
            Op::Log1p if g.node(x).op == Op::Neg && !is_small(g, x) && !is_unit_exp(g, x) => Some(LaneTest::Small),
            _ => None,
        };
    }
    tests
}

/// True when `c` is `x > 0` (or `0 < x`): false for x ≤ 0 and NaN.
fn is_positive_test(g: &Graph, c: NodeId, x: NodeId) -> bool {
    let node = g.node(c);
    let zero = |id: NodeId| g.constant(id) == Some(0.0);
    match node.op {
        Op::Gt => node.args[0] == x && zero(node.args[1]),
        Op::Lt => node.args[1] == x && zero(node.args[0]),
        _ => false,
    }
}

/// Levels of the graph [`value_range`] looks through: enough for a clip inside `1 − ·` or a
/// quotient (4), few enough that a query visits at most 3^6 nodes (a clamp has 3 children).
const RANGE_DEPTH: u32 = 6;

/// A closed interval `[lo, hi]` (bounds may be infinite) that a value lies in, or is NaN:
/// every interval admits NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    lo: f64,
    hi: f64,
}

impl Range {
    const ANY: Range = Range { lo: f64::NEG_INFINITY, hi: f64::INFINITY };

    fn new(lo: f64, hi: f64) -> Range {
        // A NaN bound (inf − inf, 0·inf) proves nothing.
        if lo.is_nan() || hi.is_nan() {
            Range::ANY
        } else {
            Range { lo, hi }
        }
    }

    fn union(self, o: Range) -> Range {
        Range::new(self.lo.min(o.lo), self.hi.max(o.hi))
    }

    fn meet(self, o: Range) -> Range {
        Range { lo: self.lo.max(o.lo), hi: self.hi.min(o.hi) }
    }
}

/// A node and a range its value is known to lie in (on one branch of a `where`).
type Fact = (NodeId, Range);

/// True when node `id` is a positive normal finite number (or NaN) whatever the inputs, the
/// range of [`MathFunc::LogNormal`].
fn is_normal(g: &Graph, id: NodeId) -> bool {
    let r = value_range(g, id, &mut Vec::new(), RANGE_DEPTH);
    let (min, max) = normal_bounds(g.dtype);
    r.lo >= min && r.hi <= max
}

/// True when node `id` is in (−1, 1] (or NaN) whatever the inputs, the range of
/// [`MathFunc::Log1pSmall`].
fn is_small(g: &Graph, id: NodeId) -> bool {
    let r = value_range(g, id, &mut Vec::new(), RANGE_DEPTH);
    r.lo > -1.0 && r.hi <= 1.0
}

/// The least positive normal number and the greatest finite one.
fn normal_bounds(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::F32 => (f64::from(f32::MIN_POSITIVE), f64::from(f32::MAX)),
        Dtype::F64 => (f64::MIN_POSITIVE, f64::MAX),
    }
}

/// The interval node `id`'s value lies in (or is NaN) whatever the inputs, `depth` levels
/// deep, where `known` holds what the enclosing `where` branches prove of some nodes: a
/// branch of `where(x < k, ·, ·)` (or `>`, `≤`, `≥`, either way round) with a constant `k`
/// bounds x on that side, the clamp shape `where(x < lo, lo, where(x > hi, hi, x))` included
/// (a NaN x takes the second branch and stays NaN). Sums, differences, products and
/// quotients bound their results by their operands' bounds computed in the kernel's
/// precision: its rounding is monotone, so the bounds of the rounded results are the
/// rounded bounds.
fn value_range(g: &Graph, id: NodeId, known: &mut Vec<Fact>, depth: u32) -> Range {
    let node = g.node(id);
    let [a, b, c] = node.args;
    let own = match node.op {
        Op::Const(bits) => {
            let v = round_to(g.dtype, f64::from_bits(bits));
            Range::new(v, v)
        }
        _ if depth == 0 => Range::ANY,
        Op::Where => {
            let (t_known, f_known) = branch_facts(g, a);
            let mut branch = |x: NodeId, fact: Option<Fact>| {
                let n = known.len();
                known.extend(fact);
                let r = value_range(g, x, known, depth - 1);
                known.truncate(n);
                r
            };
            branch(b, t_known).union(branch(c, f_known))
        }
        Op::Neg => {
            let r = value_range(g, a, known, depth - 1);
            Range::new(-r.hi, -r.lo)
        }
        Op::Max | Op::Min | Op::Clamp => {
            let ra = value_range(g, a, known, depth - 1);
            let rb = value_range(g, b, known, depth - 1);
            let m = if node.op == Op::Min {
                Range::new(ra.lo.min(rb.lo), ra.hi.min(rb.hi))
            } else {
                Range::new(ra.lo.max(rb.lo), ra.hi.max(rb.hi))
            };
            if node.op == Op::Clamp {
                let rc = value_range(g, c, known, depth - 1);
                Range::new(m.lo.min(rc.lo), m.hi.min(rc.hi))
            } else {
                m
            }
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let ra = value_range(g, a, known, depth - 1);
            let rb = value_range(g, b, known, depth - 1);
            arith_range(g.dtype, node.op, ra, rb)
        }
        _ => Range::ANY,
    };
    known.iter().filter(|(k, _)| *k == id).fold(own, |r, (_, f)| r.meet(*f))
}

/// What `where(cond, ·, ·)`'s first and second branches know of a node, when `cond`
/// compares it with a constant.
fn branch_facts(g: &Graph, cond: NodeId) -> (Option<Fact>, Option<Fact>) {
    let node = g.node(cond);
    let [a, b, _] = node.args;
    // x below k on the first branch (`x < k`, `x ≤ k`, `k > x`, `k ≥ x`), or above.
    let (x, k, below) = match (node.op, g.constant(a), g.constant(b)) {
        (Op::Lt | Op::Le, None, Some(k)) => (a, k, true),
        (Op::Gt | Op::Ge, None, Some(k)) => (a, k, false),
        (Op::Gt | Op::Ge, Some(k), None) => (b, k, true),
        (Op::Lt | Op::Le, Some(k), None) => (b, k, false),
        _ => return (None, None),
    };
    if k.is_nan() {
        return (None, None);
    }
    let k = round_to(g.dtype, k);
    let (lower, upper) = (Range::new(f64::NEG_INFINITY, k), Range::new(k, f64::INFINITY));
    // NaN fails every comparison and takes the second branch, which admits it.
    if below {
        (Some((x, lower)), Some((x, upper)))
    } else {
        (Some((x, upper)), Some((x, lower)))
    }
}

/// `v` rounded to the kernel's precision (constants are emitted so).
fn round_to(dtype: Dtype, v: f64) -> f64 {
    match dtype {
        Dtype::F32 => f64::from(v as f32),
        Dtype::F64 => v,
    }
}

/// Bounds of `a op b` for `a`, `b` in the given ranges, each bound computed in the kernel's
/// precision; products and quotients only for nonnegative operands (and positive divisors).
fn arith_range(dtype: Dtype, op: Op, a: Range, b: Range) -> Range {
    let f = |x: f64, y: f64| -> f64 {
        match dtype {
            Dtype::F32 => {
                let (x, y) = (x as f32, y as f32);
                f64::from(match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    _ => x / y,
                })
            }
            Dtype::F64 => match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                _ => x / y,
            },
        }
    };
    match op {
        Op::Add => Range::new(f(a.lo, b.lo), f(a.hi, b.hi)),
        Op::Sub => Range::new(f(a.lo, b.hi), f(a.hi, b.lo)),
        Op::Mul if a.lo >= 0.0 && b.lo >= 0.0 => Range::new(f(a.lo, b.lo), f(a.hi, b.hi)),
        Op::Div if a.lo >= 0.0 && b.lo > 0.0 => Range::new(f(a.lo, b.hi), f(a.hi, b.lo)),
        _ => Range::ANY,
    }
}

/// The routine the kernels compute node `id` with where it does not compute the op's own
/// routine's bits: `log1p` of `e^x` with `x ≤ 0` by [`MathFunc::Log1pUnit`] (2·atanh in f32
/// with `fma`). The kernel interpreter asks this too. The other variants the translator picks
/// (`exp_nonpositive`, `log_normal`, `log_positive`, `log1p_small`, `log1p_nonnegative`, and
/// `log1p_unit` in f64 or without `fma`) return the generic routine's bits, as vecmath's tests
/// check, so they need no mirror.
pub(crate) fn routine_variant(g: &Graph, id: NodeId) -> Option<MathFunc> {
    let node = g.node(id);
    (node.op == Op::Log1p && is_unit_exp(g, node.args[0])).then_some(MathFunc::Log1pUnit)
}

/// True when node `id` is `e^x` with `x ≤ 0` (or NaN), so in `[0, 1]` (or NaN), the range of
/// [`MathFunc::Log1pUnit`] (`exp`'s rounding stays within it).
fn is_unit_exp(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    node.op == Op::Exp && has_sign(g, node.args[0], true, 4)
}

/// True when node `id` is `≤ 0` (`nonpositive`) or `≥ 0` (otherwise), or NaN, whatever the
/// inputs: a conservative proof, `depth` levels deep. `exp` of a nonpositive argument needs
/// neither the upper clamp nor a scaling for `n > 0` ([`MathFunc::ExpNonPositive`]), `log1p`
/// of a nonnegative one no fix-up for −1 ([`MathFunc::Log1pNonNegative`]).
fn has_sign(g: &Graph, id: NodeId, nonpositive: bool, depth: u32) -> bool {
    let node = g.node(id);
    let [a, b, _] = node.args;
    match node.op {
        Op::Const(bits) => {
            let c = f64::from_bits(bits);
            if nonpositive {
                c <= 0.0
            } else {
                c >= 0.0
            }
        }
        Op::LogSigmoid => nonpositive,
        Op::Abs | Op::Square | Op::Exp | Op::Sqrt | Op::RowNorm | Op::Sigmoid | Op::Softmax => !nonpositive,
        _ if depth == 0 => false,
        Op::Neg => has_sign(g, a, !nonpositive, depth - 1),
        // a·b has a's sign where b ≥ 0, the opposite where b ≤ 0.
        Op::Mul => {
            (has_sign(g, a, nonpositive, depth - 1) && has_sign(g, b, false, depth - 1))
                || (has_sign(g, a, !nonpositive, depth - 1) && has_sign(g, b, true, depth - 1))
        }
        Op::Add => has_sign(g, a, nonpositive, depth - 1) && has_sign(g, b, nonpositive, depth - 1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(g: &Graph, id: NodeId) -> Range {
        value_range(g, id, &mut Vec::new(), RANGE_DEPTH)
    }

    /// Logs of predictions are lane-tested (`log(p)` and its complement's `log1p(−p)`), logs
    /// of targets, `log1p(p)`, clipped predictions and `log_positive`'s logs are not.
    #[test]
    fn logs_of_predictions_are_lane_tested() {
        let mut g = Graph::new(Dtype::F32, vec![Kind::Row, Kind::Row]);
        let p = g.leaf(Op::Input(0), Kind::Row);
        let y = g.leaf(Op::Input(1), Kind::Row);
        let layout = Layout { n_inputs: 2, preds: vec![true, false], uniform_slots: Vec::new(), stores: Vec::new() };
        let log_p = g.un(Op::Log, p);
        let neg_p = g.un(Op::Neg, p);
        let log1p_neg_p = g.un(Op::Log1p, neg_p);
        let log1p_p = g.un(Op::Log1p, p);
        let log_y = g.un(Op::Log, y);
        let scaled = g.bin(Op::Mul, y, p);
        let log_scaled = g.un(Op::Log, scaled);
        let (eps, top) = (g.cst(1e-7), g.cst(1.0 - 1e-7));
        let clipped = g.add(Op::Clamp, &[p, eps, top]);
        let log_clipped = g.un(Op::Log, clipped);
        let mut positive = vec![false; g.len()];
        let tests = lane_tests(&g, &layout, &positive);
        assert_eq!(tests[log_p.index()], Some(LaneTest::Normal));
        assert_eq!(tests[log1p_neg_p.index()], Some(LaneTest::Small));
        assert_eq!(tests[log_scaled.index()], Some(LaneTest::Normal), "computed from a pred");
        for (id, what) in [(log1p_p, "log1p(p)"), (log_y, "log(y)"), (log_clipped, "log of a clipped p")] {
            assert_eq!(tests[id.index()], None, "{what}");
        }
        positive[log_p.index()] = true;
        assert_eq!(lane_tests(&g, &layout, &positive)[log_p.index()], None, "log_positive");
    }

    /// `log1p` of `e^u` with `u` provably ≤ 0 (or NaN) is `log1p_unit`'s, which the kernel
    /// interpreter must know (its f32 bits are not `log1p`'s); of any other argument it is not.
    #[test]
    fn log1p_of_a_unit_exponential_is_the_unit_variant() {
        let mut g = Graph::new(Dtype::F32, vec![Kind::Row]);
        let x = g.leaf(Op::Input(0), Kind::Row);
        let ax = g.un(Op::Abs, x);
        let nax = g.un(Op::Neg, ax);
        let e_neg = g.un(Op::Exp, nax);
        let unit = g.un(Op::Log1p, e_neg);
        let e_any = g.un(Op::Exp, x);
        let not_unit = g.un(Op::Log1p, e_any);
        let plain = g.un(Op::Log1p, ax);
        assert_eq!(routine_variant(&g, unit), Some(MathFunc::Log1pUnit));
        for (id, what) in [(not_unit, "log1p(e^x)"), (plain, "log1p(|x|)"), (e_neg, "the exponential")] {
            assert_eq!(routine_variant(&g, id), None, "{what}");
        }
    }

    /// Keras's clip `where(p < ε, ε, where(p > 1 − ε, 1 − ε, p))` is [ε, 1 − ε] with the
    /// bounds rounded to the kernel's precision, so its log is `log_normal`'s and the log1p
    /// of its negation `log1p_small`'s; the data itself, or a one-sided clip, proves nothing.
    #[test]
    fn clipped_probabilities_have_a_range() {
        for dtype in [Dtype::F32, Dtype::F64] {
            let mut g = Graph::new(dtype, vec![Kind::Row]);
            let p = g.leaf(Op::Input(0), Kind::Row);
            let (eps, top) = (g.cst(1e-7), g.cst(1.0 - 1e-7));
            let low = g.bin(Op::Lt, p, eps);
            let high = g.bin(Op::Gt, p, top);
            let inner = g.select(high, top, p);
            let clipped = g.select(low, eps, inner);
            let r = range(&g, clipped);
            assert_eq!((r.lo, r.hi), (round_to(dtype, 1e-7), round_to(dtype, 1.0 - 1e-7)), "{dtype:?}");
            assert!(is_normal(&g, clipped));
            let neg = g.un(Op::Neg, clipped);
            let r = range(&g, neg);
            assert!(r.lo > -1.0 && r.hi < 0.0 && is_small(&g, neg));
            // ... and away from 0: its log1p needs no tiny-argument fix-up.
            let tiny = vecmath::tiny(if dtype == Dtype::F32 { types::F32 } else { types::F64 });
            assert!(r.hi <= -tiny, "{dtype:?}");
            // 1 − p: [fl(1 − (1 − ε)), fl(1 − ε)], still normal.
            let one = g.cst(1.0);
            let q = g.bin(Op::Sub, one, clipped);
            assert!(is_normal(&g, q));
            // The same clip written the other way round (`ε > p`) and as `clamp`.
            let low_rev = g.bin(Op::Gt, eps, p);
            let rev = g.select(low_rev, eps, inner);
            assert_eq!(range(&g, rev), range(&g, clipped));
            let clamp = g.add(Op::Clamp, &[p, eps, top]);
            assert_eq!(range(&g, clamp), range(&g, clipped));
            assert!(!is_normal(&g, p));
            assert!(!is_normal(&g, inner), "clipped above only");
            // Clipped at 0: log(0) = −inf needs the full log.
            let zero = g.cst(0.0);
            let at_zero = g.bin(Op::Lt, p, zero);
            let nonneg = g.select(at_zero, zero, inner);
            assert!(!is_normal(&g, nonneg));
        }
    }

    /// Products and quotients of nonnegative ranges, and nothing for signed ones.
    #[test]
    fn arithmetic_bounds() {
        let r = |lo, hi| Range::new(lo, hi);
        assert_eq!(arith_range(Dtype::F64, Op::Div, r(1e-7, 1.0), r(1e-7, 1.0)), r(1e-7, 1e7));
        assert_eq!(arith_range(Dtype::F64, Op::Mul, r(0.5, 2.0), r(2.0, 3.0)), r(1.0, 6.0));
        assert_eq!(arith_range(Dtype::F64, Op::Mul, r(-1.0, 2.0), r(2.0, 3.0)), Range::ANY);
        assert_eq!(arith_range(Dtype::F64, Op::Div, r(1.0, 2.0), r(0.0, 3.0)), Range::ANY);
        assert_eq!(
            arith_range(Dtype::F64, Op::Sub, r(f64::INFINITY, f64::INFINITY), r(1.0, f64::INFINITY)),
            Range::ANY
        );
        // Rounded as the kernel rounds: 1 + 2^-30 is 1 in f32.
        assert_eq!(arith_range(Dtype::F32, Op::Add, r(1.0, 1.0), r(2f64.powi(-30), 2f64.powi(-30))), r(1.0, 1.0));
    }
}
