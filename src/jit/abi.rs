//! The only unsafe module: turns JIT code into a callable function, calls it, and frees it.
//!
//! Safety rests on three facts, each checked where it is established:
//! - the kernel's signature is the one [`KernelFn`] names (codegen declares exactly seven
//!   pointer-sized parameters and no return value);
//! - every pointer in the table addresses an array at least as long as the kernel reads or
//!   writes for the row range it is given (the caller in `jit/mod.rs` sizes them from the
//!   same rows and classes it passes, and clamps class indices to `[0, C)` or -1); a class
//!   input with row step 0 in the table is read as one row of C values for every row;
//! - the module stays alive while its code may run: [`Code`] owns it and frees it on drop;
//!   the only code outside it that a kernel calls (quick-tier calls into `jit::mathlib`, libm)
//!   lives for the whole process.

use cranelift_codegen::ir::types::{self, Type};
use cranelift_codegen::ir::{AbiParam, Signature};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module, ModuleError};

/// `fn(ptrs, uniforms, row_begin, row_end, classes, acc, scratch)`; see `codegen.rs`.
type KernelFn = unsafe extern "C" fn(*const usize, *const u8, i64, i64, i64, *mut f64, *mut u8);

thread_local! {
    /// The calling thread's kernel scratch (class values kept between a row's passes),
    /// grown on demand and reused by every later call on the thread.
    static SCRATCH: std::cell::RefCell<Vec<u128>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Finalized code and the module that owns it.
pub(crate) struct Code {
    module: Option<JITModule>,
    func: KernelFn,
}

// SAFETY: the finalized code is immutable, reentrant machine code that writes no globals;
// the module is only touched again in `drop`, which takes `&mut self`.
unsafe impl Send for Code {}
// SAFETY: as above; calling the code from several threads at once is what it is built for.
unsafe impl Sync for Code {}

impl Code {
    /// Finalizes `module` and takes `id` as the kernel.
    pub(crate) fn finalize(mut module: JITModule, id: FuncId) -> Result<Code, Box<cranelift_module::ModuleError>> {
        module.finalize_definitions().map_err(Box::new)?;
        let ptr = module.get_finalized_function(id);
        // SAFETY: `id` was defined by `codegen::codegen` with the signature of `KernelFn`
        // (seven pointer-sized integer parameters, no return), in this module, which is finalized.
        let func = unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) };
        Ok(Code { module: Some(module), func })
    }

    /// Runs the kernel over rows `[row_begin, row_end)`, with `scratch_bytes` of scratch.
    ///
    /// The caller guarantees (see the module docs) that `table` holds a valid pointer for
    /// every slot the kernel reads or writes, each addressing enough elements for `classes`
    /// classes of every row below `row_end` (of one row, for a class input whose row step in
    /// the table is 0), that `uniforms` holds every uniform slot, and
    /// that `scratch_bytes` covers the kernel's scratch arrays for `classes` classes.
    /// `Kernels::call` in `jit/mod.rs` is the only caller and establishes exactly this.
    pub(crate) fn run(
        &self,
        table: &PtrTable<'_>,
        uniforms: &[u8],
        row_begin: usize,
        row_end: usize,
        classes: usize,
        scratch_bytes: usize,
    ) -> f64 {
        let mut acc = 0.0f64;
        SCRATCH.with(|cell| {
            // A kernel never calls back into lossc, so the borrow cannot be taken twice.
            let mut scratch = cell.borrow_mut();
            let words = scratch_bytes.div_ceil(16);
            if scratch.len() < words {
                scratch.resize(words, 0);
            }
            // SAFETY: see the function docs; lengths are in elements of the kernel's dtype and
            // were sized by the caller from the same `row_end` and `classes`; the scratch
            // holds at least `scratch_bytes`, 16-byte aligned, and no one else uses it now.
            unsafe {
                (self.func)(
                    table.0.as_ptr(),
                    uniforms.as_ptr(),
                    row_begin as i64,
                    row_end as i64,
                    classes as i64,
                    &mut acc,
                    scratch.as_mut_ptr().cast::<u8>(),
                );
            }
        });
        acc
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the function pointer is dropped with `self`; no call can be running,
            // since `run` borrows `self` and `drop` needs it exclusively.
            unsafe { module.free_memory() };
        }
    }
}

/// The table of data pointers a kernel reads (addresses as integers so it can cross threads),
/// borrowed from the caller's reusable scratch.
/// Sharing it between threads is sound because the addresses are only dereferenced by the
/// kernel, and every thread writes to disjoint row ranges of the output arrays.
pub(crate) struct PtrTable<'a>(pub(crate) &'a [usize]);

/// A platform libm function that generated code calls per lane: `pow` by data (or by a
/// constant `jit::prepare` does not spell out), and `sin`/`cos` for the rare vectors with an
/// argument beyond the inline reduction's range (`vecmath`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Libm {
    /// `a^b`.
    Pow,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
}

impl Libm {
    /// The symbol registered with the JIT (see [`libm_symbols`]) for lanes of type `lane`
    /// (`f32` or `f64`; anything else is taken as `f64`).
    pub(crate) fn symbol(self, lane: Type) -> &'static str {
        let single = lane == types::F32;
        match (self, single) {
            (Libm::Pow, true) => "lossc_powf",
            (Libm::Pow, false) => "lossc_pow",
            (Libm::Sin, true) => "lossc_sinf",
            (Libm::Sin, false) => "lossc_sin",
            (Libm::Cos, true) => "lossc_cosf",
            (Libm::Cos, false) => "lossc_cos",
        }
    }

    /// Number of arguments.
    pub(crate) fn arity(self) -> usize {
        if self == Libm::Pow {
            2
        } else {
            1
        }
    }

    /// Declares `self` on `lane` scalars as an import of `module` (whose builder registered
    /// [`libm_symbols`]).
    ///
    /// # Errors
    /// Cranelift's, if the name is already declared with another signature (a bug in lossc).
    pub(crate) fn declare(self, module: &mut JITModule, lane: Type) -> Result<FuncId, Box<ModuleError>> {
        let mut sig = Signature::new(module.isa().default_call_conv());
        for _ in 0..self.arity() {
            sig.params.push(AbiParam::new(lane));
        }
        sig.returns.push(AbiParam::new(lane));
        module.declare_function(self.symbol(lane), Linkage::Import, &sig).map_err(Box::new)
    }
}

/// `extern "C"` math the kernels call per lane, by the names of [`Libm::symbol`].
pub(crate) fn libm_symbols() -> Vec<(&'static str, *const u8)> {
    /// One `extern "C"` wrapper per (symbol, type, std method, arity).
    macro_rules! wrappers {
        ($(($name:literal, $t:ty, $method:ident, $($arg:ident),+)),* $(,)?) => {
            vec![$({
                extern "C" fn f($($arg: $t),+) -> $t {
                    wrappers!(@call $method, $($arg),+)
                }
                ($name, f as *const u8)
            }),*]
        };
        (@call $method:ident, $a:ident) => { $a.$method() };
        (@call $method:ident, $a:ident, $b:ident) => { $a.$method($b) };
    }
    wrappers![
        ("lossc_powf", f32, powf, a, b),
        ("lossc_pow", f64, powf, a, b),
        ("lossc_sinf", f32, sin, a),
        ("lossc_sin", f64, sin, a),
        ("lossc_cosf", f32, cos, a),
        ("lossc_cos", f64, cos, a),
    ]
}

/// Typed pointers to `mathlib`'s scalar functions `fn(T) -> T` and its binary `exp_dw`
/// `fn(T, T) -> T` (the kernel interpreter's math routines, see `interp.rs`).
pub(crate) struct ScalarFns {
    /// One function per f32 routine, in the order of the addresses given to [`ScalarFns::new`].
    pub(crate) f32: Vec<extern "C" fn(f32) -> f32>,
    /// One function per f64 routine, likewise.
    pub(crate) f64: Vec<extern "C" fn(f64) -> f64>,
    /// `MathFunc::ExpDw` on f32.
    pub(crate) exp_dw_f32: extern "C" fn(f32, f32) -> f32,
    /// `MathFunc::ExpDw` on f64.
    pub(crate) exp_dw_f64: extern "C" fn(f64, f64) -> f64,
}

impl ScalarFns {
    /// Takes `f32s` as `fn(f32) -> f32` and `f64s` as `fn(f64) -> f64` functions, and
    /// `exp_dw` as `fn(f32, f32) -> f32` and `fn(f64, f64) -> f64`.
    ///
    /// The caller passes addresses from `mathlib::address` for `types::F32` and `types::F64`
    /// only: functions of [`MathFunc::arity`](super::vecmath::MathFunc::arity) parameters
    /// (1, and 2 for `exp_dw`) and one result of that type in the host's default calling
    /// convention (the C one), whose module is never freed.
    pub(crate) fn new(f32s: &[usize], f64s: &[usize], exp_dw: (usize, usize)) -> ScalarFns {
        let f32 = f32s
            .iter()
            // SAFETY: see the function docs: the signature is `extern "C" fn(f32) -> f32`
            // and the code stays mapped for the life of the process.
            .map(|a| unsafe { std::mem::transmute::<*const u8, extern "C" fn(f32) -> f32>(*a as *const u8) })
            .collect();
        let f64 = f64s
            .iter()
            // SAFETY: as above, with f64.
            .map(|a| unsafe { std::mem::transmute::<*const u8, extern "C" fn(f64) -> f64>(*a as *const u8) })
            .collect();
        // SAFETY: as above, with two parameters of the type.
        let exp_dw_f32 =
            unsafe { std::mem::transmute::<*const u8, extern "C" fn(f32, f32) -> f32>(exp_dw.0 as *const u8) };
        // SAFETY: as above, with f64.
        let exp_dw_f64 =
            unsafe { std::mem::transmute::<*const u8, extern "C" fn(f64, f64) -> f64>(exp_dw.1 as *const u8) };
        ScalarFns { f32, f64, exp_dw_f32, exp_dw_f64 }
    }
}
