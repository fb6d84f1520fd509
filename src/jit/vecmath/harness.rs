//! A small JIT harness around `vecmath` for the tests and the timing example.
//!
//! It compiles `f(in: *const T, out: *mut T, n: usize)`: a loop applying one function to `n`
//! elements, either one lane at a time or with 128-bit vectors and a scalar tail.
//! Each [`Kernel`] owns its `JITModule` and frees it on drop.
//! Invariant: the compiled code only reads `in[0..n]` and writes `out[0..n]`, and [`Kernel::run`]
//! checks that both slices have the same length before calling it.

use std::fmt;
use std::marker::PhantomData;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, BlockArg, FuncRef, InstBuilder, MemFlagsData, Type, UserFuncName, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};

use crate::jit::abi;
use crate::jit::vecmath::{self, MathFeatures};

/// A function of the `vecmath` module (the harness names `MathFunc` by its short name).
pub(crate) use crate::jit::vecmath::MathFunc as Func;

impl Func {
    /// Every function.
    pub const ALL: [Func; 12] = [
        Func::Exp,
        Func::Log,
        Func::Log1p,
        Func::Expm1,
        Func::Sigmoid,
        Func::Softplus,
        Func::LogSigmoid,
        Func::Tanh,
        Func::Sinh,
        Func::Cosh,
        Func::Sin,
        Func::Cos,
    ];
}

/// How the loop processes elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// One element per iteration, with the scalar emitter.
    Scalar,
    /// `f32x4` or `f64x2` per iteration, then a scalar tail.
    Vector,
}

/// Which ISA and emitter features to compile for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The host's features from `cranelift_native` (FMA, SSE4.1, AVX… when present), and `fma`
    /// in the emitters when the host has it.
    Host,
    /// The host's features, but the emitters avoid `fma`.
    HostNoFma,
    /// The SSE2 baseline ISA (`builder_with_options(false)`) and no `fma`.
    Baseline,
}

/// An error from the harness.
#[derive(Debug)]
pub enum HarnessError {
    /// The host ISA could not be set up.
    Isa(String),
    /// Cranelift failed to declare, define or finalize the function.
    Module(String),
    /// The emitter rejected the operand type.
    Math(String),
    /// Input and output slices have different lengths.
    LengthMismatch {
        /// Length of the input.
        input: usize,
        /// Length of the output.
        output: usize,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Isa(e) => write!(f, "cannot set up the host isa: {e}"),
            HarnessError::Module(e) => write!(f, "cranelift module error: {e}"),
            HarnessError::Math(e) => write!(f, "{e}"),
            HarnessError::LengthMismatch { input, output } => {
                write!(f, "input has {input} elements but output has {output}")
            }
        }
    }
}

impl std::error::Error for HarnessError {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type the harness can compile for: `f32` or `f64`.
pub trait Elem: Copy + sealed::Sealed {
    /// The scalar Cranelift type.
    const TY: Type;
    /// The 128-bit vector Cranelift type.
    const VEC: Type;
    /// Lanes in `VEC`.
    const LANES: i64;
}

impl Elem for f32 {
    const TY: Type = types::F32;
    const VEC: Type = types::F32X4;
    const LANES: i64 = 4;
}

impl Elem for f64 {
    const TY: Type = types::F64;
    const VEC: Type = types::F64X2;
    const LANES: i64 = 2;
}

/// Describes the features a target compiles with, e.g. `"isa: has_fma has_sse41 …; emit fma"`.
///
/// # Errors
///
/// [`HarnessError::Isa`] if the host ISA cannot be built.
pub fn describe(target: Target) -> Result<String, HarnessError> {
    let (isa, features) = make_isa(target)?;
    let mut on: Vec<&str> = isa.isa_flags().iter().filter(|v| v.as_bool() == Some(true)).map(|v| v.name).collect();
    on.sort_unstable();
    Ok(format!("isa {}: {}; emitters use fma: {}", isa.name(), on.join(" "), features.fma))
}

fn make_isa(target: Target) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, MathFeatures), HarnessError> {
    let mut fb = settings::builder();
    for (k, v) in [("opt_level", "speed"), ("is_pic", "false"), ("use_colocated_libcalls", "false")] {
        fb.set(k, v).map_err(|e| HarnessError::Isa(e.to_string()))?;
    }
    let isa_builder = match target {
        Target::Host | Target::HostNoFma => cranelift_native::builder(),
        Target::Baseline => cranelift_native::builder_with_options(false),
    }
    .map_err(|e| HarnessError::Isa(e.to_string()))?;
    let isa = isa_builder.finish(settings::Flags::new(fb)).map_err(|e| HarnessError::Isa(e.to_string()))?;
    let features = match target {
        Target::Host => MathFeatures::from_isa(&*isa),
        Target::HostNoFma | Target::Baseline => MathFeatures::BASELINE,
    };
    Ok((isa, features))
}

type RawFn<T> = unsafe extern "C" fn(*const T, *mut T, usize);

/// A compiled loop applying one function elementwise.
pub struct Kernel<T: Elem> {
    module: Option<JITModule>,
    func: RawFn<T>,
    relocs: usize,
    _elem: PhantomData<T>,
}

impl<T: Elem> Kernel<T> {
    /// Compiles the loop for `func` over `T` with the given width and target.
    ///
    /// # Errors
    ///
    /// [`HarnessError`] if the ISA, the emitter or Cranelift fails.
    pub fn new(func: Func, width: Width, target: Target) -> Result<Self, HarnessError> {
        Self::compile(func, width, target, None)
    }

    /// Like [`Kernel::new`], and also returns the CLIF text and the disassembly (for debugging).
    #[allow(dead_code)]
    ///
    /// # Errors
    ///
    /// [`HarnessError`] if the ISA, the emitter or Cranelift fails.
    pub fn with_listing(func: Func, width: Width, target: Target) -> Result<(Self, String), HarnessError> {
        let mut listing = String::new();
        let k = Self::compile(func, width, target, Some(&mut listing))?;
        Ok((k, listing))
    }

    fn compile(func: Func, width: Width, target: Target, listing: Option<&mut String>) -> Result<Self, HarnessError> {
        let (isa, features) = make_isa(target)?;
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        for (name, ptr) in abi::libm_symbols() {
            builder.symbol(name, ptr);
        }
        let mut module = JITModule::new(builder);
        let fallback = match func.fallback() {
            Some(f) => Some(f.declare(&mut module, T::TY).map_err(|e| HarnessError::Module(e.to_string()))?),
            None => None,
        };
        let ptr = module.target_config().pointer_type();
        let mut sig = module.make_signature();
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(ptr));
        let id = module.declare_anonymous_function(&sig).map_err(|e| HarnessError::Module(e.to_string()))?;
        let mut ctx = module.make_context();
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let fallback = fallback.map(|id| module.declare_func_in_func(id, b.func));
            let emit = Emit { func, features, fallback };
            build_loop::<T>(&mut b, ptr, &emit, width)?;
            b.finalize(module.target_config());
        }
        let want_listing = listing.is_some();
        if want_listing {
            ctx.set_disasm(true);
        }
        module.define_function(id, &mut ctx).map_err(|e| HarnessError::Module(format!("{e:?}")))?;
        if let Some(out) = listing {
            out.push_str(&ctx.func.display().to_string());
            if let Some(code) = ctx.compiled_code() {
                out.push_str(code.vcode.as_deref().unwrap_or(""));
            }
        }
        let relocs = ctx.compiled_code().map(|c| c.buffer.relocs().len()).unwrap_or(0);
        module.clear_context(&mut ctx);
        module.finalize_definitions().map_err(|e| HarnessError::Module(e.to_string()))?;
        let code = module.get_finalized_function(id);
        // SAFETY: the function was declared with three pointer-sized parameters and no return
        // value, which is the C ABI of `RawFn<T>` on this host.
        let func = unsafe { std::mem::transmute::<*const u8, RawFn<T>>(code) };
        Ok(Kernel { module: Some(module), func, relocs, _elem: PhantomData })
    }

    /// Number of relocations in the compiled code: 0 means no libcalls (1 for the fallback of
    /// `sin` and `cos`).
    pub fn relocs(&self) -> usize {
        self.relocs
    }

    /// Applies the function to every element of `input`, writing `out`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::LengthMismatch`] if the slices differ in length.
    pub fn run(&self, input: &[T], out: &mut [T]) -> Result<(), HarnessError> {
        if input.len() != out.len() {
            return Err(HarnessError::LengthMismatch { input: input.len(), output: out.len() });
        }
        // SAFETY: the loop reads `input.len()` elements from `input` and writes as many to `out`,
        // both valid for that length; the module stays alive as long as `self`.
        unsafe { (self.func)(input.as_ptr(), out.as_mut_ptr(), input.len()) };
        Ok(())
    }
}

impl<T: Elem> Drop for Kernel<T> {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: `self.func` points into this module and is never called after drop.
            unsafe { module.free_memory() };
        }
    }
}

fn math_err(e: vecmath::MathError) -> HarnessError {
    HarnessError::Math(e.to_string())
}

/// Emits: `entry → vhead(i) → vbody → vhead …; tail(i) → tbody → tail …; exit`.
/// What the loop body emits: `func` with these features and fallback.
struct Emit {
    func: Func,
    features: MathFeatures,
    fallback: Option<FuncRef>,
}

impl Emit {
    fn emit(&self, b: &mut FunctionBuilder, x: Value) -> Result<Value, HarnessError> {
        vecmath::emit_math(b, self.features, self.func, &[x], None, self.fallback).map_err(math_err)
    }
}

fn build_loop<T: Elem>(b: &mut FunctionBuilder, ptr: Type, emit: &Emit, width: Width) -> Result<(), HarnessError> {
    let flags = MemFlagsData::new().with_notrap();
    let elem_size = i64::from(T::TY.bytes());
    let entry = b.create_block();
    let vhead = b.create_block();
    let vbody = b.create_block();
    let thead = b.create_block();
    let tbody = b.create_block();
    let exit = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.append_block_param(vhead, ptr);
    b.append_block_param(thead, ptr);

    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    let [inp, out, n] = params[..] else {
        // Unreachable: `Kernel::compile` declares exactly three parameters.
        return Err(HarnessError::Module("the loop needs three parameters".to_string()));
    };
    let zero = b.ins().iconst(ptr, 0);
    match width {
        Width::Vector => b.ins().jump(vhead, &[BlockArg::Value(zero)]),
        Width::Scalar => b.ins().jump(thead, &[BlockArg::Value(zero)]),
    };

    // Vector loop.
    b.switch_to_block(vhead);
    let i = b.block_params(vhead)[0];
    let lanes = b.ins().iconst(ptr, T::LANES);
    let next = b.ins().iadd(i, lanes);
    let fits = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, next, n);
    b.ins().brif(fits, vbody, &[], thead, &[BlockArg::Value(i)]);
    b.switch_to_block(vbody);
    b.seal_block(vbody);
    let off = b.ins().imul_imm_s(i, elem_size);
    let src = b.ins().iadd(inp, off);
    let dst = b.ins().iadd(out, off);
    let x = b.ins().load(T::VEC, flags, src, 0);
    let y = emit.emit(b, x)?;
    b.ins().store(flags, y, dst, 0);
    b.ins().jump(vhead, &[BlockArg::Value(next)]);
    b.seal_block(vhead);

    // Scalar tail (or the whole loop for `Width::Scalar`).
    b.switch_to_block(thead);
    let j = b.block_params(thead)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, j, n);
    b.ins().brif(more, tbody, &[], exit, &[]);
    b.switch_to_block(tbody);
    b.seal_block(tbody);
    let off = b.ins().imul_imm_s(j, elem_size);
    let src = b.ins().iadd(inp, off);
    let dst = b.ins().iadd(out, off);
    let x = b.ins().load(T::TY, flags, src, 0);
    let y = emit.emit(b, x)?;
    b.ins().store(flags, y, dst, 0);
    let one = b.ins().iconst(ptr, 1);
    let j1 = b.ins().iadd(j, one);
    b.ins().jump(thead, &[BlockArg::Value(j1)]);
    b.seal_block(thead);

    b.switch_to_block(exit);
    b.seal_block(exit);
    b.ins().return_(&[]);
    Ok(())
}
