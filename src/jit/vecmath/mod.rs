//! Elementary functions emitted inline as branch-free Cranelift IR.
//!
//! Cranelift has no instructions for `exp`, `log` and friends, and a libm call per lane costs about
//! ten times more than the inline code, so this module writes the polynomial approximations out as
//! IR at the current insertion point of a [`FunctionBuilder`].
//! Every emitter works on `f32`, `f64`, `f32x4` and `f64x2` operands; the type is read from the
//! operand, and the coefficients and thresholds are chosen per element type.
//!
//! Functions and their design (p is the precision, 24 or 53 bits):
//! * `exp`: Cody–Waite reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, with `r` carried as `r + r_lo`;
//!   `e^r = 1 + r + r²/2 + r³·Q(r)`; the result is scaled by `2^a · 2^b` with `a + b = n`, so
//!   overflow gives `+inf` and subnormal results are rounded once (correctly up to the ulp budget).
//! * `expm1`: the same reduction, with `r²` split exactly and the final
//!   `2·(2^(n-1)·(1 + r + h) − 1/2)` summed in double-word arithmetic, so there is no cancellation
//!   for small arguments and no overflow of `2^n` before the last doubling.
//! * `log`: fdlibm's scheme (`x = 2^k·m`, `m ∈ [√½, √2)`, `s = f/(2+f)`, `R(s²)`), with
//!   subnormal inputs pre-scaled by `2^(p+1)`.
//! * `log1p`: `u = 1 + x` with its exact rounding error `c` (TwoSum); `log1p(x) = log(u) + c/u`
//!   through the same kernel as `log`.
//! * `sigmoid`, `softplus`, `log_sigmoid`, `tanh`: the stability.md §7E lowerings L1–L3 and an
//!   odd/sign split of `tanh` through `expm1`, all built on the four above.
//! * `sinh`, `cosh`: `e^|x|/2 ± 1/(4·e^|x|/2)`, where `e^|x|/2` is `exp` with its last scale
//!   factor halved (so it stays finite up to where the results overflow), and a Taylor
//!   polynomial for `sinh` below 1, where the difference cancels.
//! * `sin`, `cos`: computed in f64 for both lane types (f32 lanes are widened, two by two for
//!   vectors). Cody–Waite reduction by π/2 in four parts, three of 33 bits so that `n·part` is
//!   exact for `n < 2^20`, summed with TwoSum into `r + r_lo`; Taylor polynomials for
//!   `sin(r + r_lo)` and `cos(r + r_lo)` on `|r| ≤ π/4`, selected and signed by `n mod 4`.
//!   Beyond `|x| = 10^6` the reduction would need more of π: a vector with such a lane branches
//!   to a cold block that calls libm per lane (the caller declares the function,
//!   [`MathFunc::fallback`]) and keeps libm's result in those lanes.
//!
//! Invariants:
//! * No control flow: only selects (`select` on scalars, `bitselect` on vectors) and arithmetic,
//!   so the emitters can be called anywhere inside a block, any number of times. The one
//!   exception is the cold fallback of `sin` and `cos`, after which the builder is in a new
//!   block whose parameter is the result (callers must not assume the block is unchanged).
//! * No libcalls on any target except that fallback: rounding to an integer uses the
//!   `1.5·2^(p−1)` magic-constant trick (which also yields the integer bits, so no
//!   float-to-int conversion is needed), and `fma` is
//!   used only when [`MathFeatures::fma`] says the ISA has it natively; otherwise products and sums
//!   are separate instructions and exact products use Dekker's splitting.
//!   `nearest`, `floor`, `fcvt_*`, `fmin` and `fmax` are never emitted, so SSE4.1 is not needed
//!   either (with SSE4.1 Cranelift lowers the selects to `blendv`).
//! * Special values follow libm: NaN propagates, `exp` overflows to `+inf` and underflows to `0`
//!   through the subnormals, `log(±0) = -inf`, `log(x<0) = NaN`, `log(+inf) = +inf`,
//!   `log1p(-1) = -inf`, and `log1p`, `expm1` and `tanh` return `-0.0` for `-0.0`.
//! * Accuracy targets (checked by `tests.rs`): at most 1 ulp for
//!   `exp`, `log`, `log1p` and `expm1`, and at most 2 bits (f64) or 2.5 bits (f32) of error for the
//!   composites.
//!   Measured maxima: 0.75–0.83 ulp (f32, exhaustive) and 0.69–0.81 ulp (f64, sampled against
//!   double-double) for the four; 1.585 bits (2 ulps apart from the correctly rounded value) for
//!   `sigmoid` and `tanh`, 1 bit for `softplus` and `log_sigmoid`. `sin` and `cos` are held to
//!   1 ulp too (measured 0.561 f32 exhaustive over ±2·10^6, 0.785 f64 over 10M samples),
//!   `sinh` and `cosh` to the composites' bits (1.59 and 1.09 ulp).
//! * Scalar and vector code of one type compute bit-identical results; the `fma` and non-`fma`
//!   paths may differ in the last bit.
//!
//! Usage from a translator: `let y = emit_math(&mut builder, features, MathFunc::Exp, &[x], None,
//! None)?;` with `features` computed once per module by [`MathFeatures::from_isa`].
//! Constants are emitted at the call site (Cranelift turns vector ones into RIP-relative loads),
//! so several calls in one block simply share nothing; that costs loads, not correctness.

// The per-function wrappers and `BASELINE` serve the accuracy tests.
#![cfg_attr(not(test), allow(dead_code))]

use std::fmt;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{self, Type};
use std::collections::HashMap;

use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{Block, Endianness, FuncRef, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::FunctionBuilder;

use super::abi::Libm;

/// CPU features that change which instructions the emitters use.
///
/// Only fused multiply-add matters: on x86-64 without FMA3 Cranelift turns `fma` into a libcall per
/// lane, so the emitters then use a separate multiply and add (and Dekker's splitting where an exact
/// product is needed).
/// Rounding never needs SSE4.1 because it uses the magic-constant trick on every target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MathFeatures {
    /// Emit `fma` for multiply-adds and exact products.
    pub(crate) fma: bool,
}

impl MathFeatures {
    /// The portable path: no `fma` instruction.
    pub(crate) const BASELINE: MathFeatures = MathFeatures { fma: false };

    /// Reads the features of `isa`: `fma` is used when x86-64 reports `has_fma`, and always on
    /// AArch64, RISC-V and s390x, whose backends have a native fused multiply-add.
    pub(crate) fn from_isa(isa: &dyn TargetIsa) -> MathFeatures {
        let fma = match isa.name() {
            "x64" => isa.isa_flags().iter().any(|flag| flag.name == "has_fma" && flag.as_bool() == Some(true)),
            "aarch64" | "riscv64" | "s390x" => true,
            _ => false,
        };
        MathFeatures { fma }
    }
}

/// An error from an emitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MathError {
    /// The operand is not `f32`, `f64`, `f32x4` or `f64x2`.
    UnsupportedType(Type),
    /// The function needs a fallback ([`MathFunc::fallback`]) and none was given.
    NoFallback(MathFunc),
    /// The function was given this many operands instead of its [`MathFunc::arity`].
    Arity(MathFunc, usize),
}

impl fmt::Display for MathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MathError::UnsupportedType(ty) => {
                write!(f, "inline math does not support operands of type {ty}")
            }
            MathError::NoFallback(func) => {
                write!(f, "inline `{}` needs its libm fallback declared", func.name())
            }
            MathError::Arity(func, n) => {
                write!(f, "inline `{}` takes {} operands, not {n}", func.name(), func.arity())
            }
        }
    }
}

impl std::error::Error for MathError {}

/// The functions this module can emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MathFunc {
    /// `e^x` (≤ 1 ulp; overflow to `+inf`, gradual underflow to `0`).
    Exp,
    /// Natural logarithm (≤ 1 ulp; `log(±0) = -inf`, `log(x<0) = NaN`).
    Log,
    /// `log(1 + x)` (≤ 1 ulp; `log1p(-1) = -inf`, `log1p(x<-1) = NaN`, `log1p(-0) = -0`).
    Log1p,
    /// `e^x − 1` (≤ 1 ulp, accurate for small `x`; `expm1(-0) = -0`).
    Expm1,
    /// `1 / (1 + e^−x)`, as `x ≥ 0 ? 1/(1+e) : e/(1+e)` with `e = exp(−|x|)` (stability.md
    /// L3), which keeps the subnormal tail for very negative `x`.
    Sigmoid,
    /// `log(1 + e^x) = max(x, 0) + log1p(exp(−|x|))` (stability.md L1).
    Softplus,
    /// `log(sigmoid(x)) = min(x, 0) − log1p(exp(−|x|))` (stability.md L2).
    LogSigmoid,
    /// `tanh(x) = sign(x) · (−e / (e + 2))` with `e = expm1(−2|x|)`, accurate near 0 and exact
    /// in sign (`tanh(-0) = -0`).
    Tanh,
    /// Hyperbolic sine: a Taylor polynomial below `|x| = 1`, `e^|x|/2 − 1/(4·e^|x|/2)`
    /// above, finite up to where `sinh` overflows; odd, `sinh(-0) = -0`.
    Sinh,
    /// Hyperbolic cosine, `e^|x|/2 + 1/(4·e^|x|/2)`, finite up to where `cosh` overflows.
    Cosh,
    /// Sine: exact Cody–Waite reduction by π/2 in f64 (f32 arguments widened) for
    /// `|x| ≤ 10^6`, libm beyond (its [`MathFunc::fallback`]); `sin(-0) = -0`.
    Sin,
    /// Cosine, as `sin`.
    Cos,
    /// `e^(hi + lo)` of two operands, for `hi ≤ 0` (or NaN) and `lo` the rounding error of
    /// the difference `hi` (finite, or NaN where it is dropped): `exp` without the upper
    /// clamp, its unscaled result `u` corrected to `u + u·lo` before the scaling (one
    /// operation that never meets a subnormal number; `Op::ExpDw`).
    ExpDw,
    /// `exp` for arguments `≤ 0.34` (or NaN; `n ≤ 0` after reduction), bit for bit: without
    /// the upper clamp and with the one-factor scaling of [`MathFunc::ExpDw`]. Kernels use it
    /// where the graph proves the argument `≤ 0` (`−|x|` in `sigmoid`, `softplus`, ...).
    ExpNonPositive,
    /// `log` for arguments `> 0` (normal, subnormal or +inf), bit for bit, without the
    /// fix-ups for ±0, negative numbers and NaN (which give garbage). Kernels use it where
    /// every use of the log is under `where(x > 0, ·, ·)` on its own argument, which discards
    /// those lanes (`where(y > 0, y·(log(y) − p), 0)`, KL divergence).
    LogPositive,
    /// `log1p` for arguments `≥ 0` (or +inf, NaN), bit for bit, without the fix-up for
    /// `x = −1`; kernels use it where the graph proves the argument `≥ 0` (`log1p(e^−|x|)` in
    /// `softplus` and `log_sigmoid`, BCE with logits).
    Log1pNonNegative,
    /// `log1p` for arguments in `[+0, 1]` (or NaN): in f32 with `fma` 2·atanh(x/(2 + x)),
    /// within 0.68 ulp (not log1p's bits: `codegen::routine_variant` tells the kernel
    /// interpreter), otherwise log1p's bits with the reduction of `1 + x` to `[√½, √2)` by one
    /// comparison and no fix-ups but NaN's; kernels use it where the argument is an exponential
    /// of a nonpositive value, as in `log1p(e^−|x|)` (which `softplus` and `log_sigmoid` compute
    /// the same way).
    Log1pUnit,
    /// `log` for positive normal finite arguments, bit for bit, without any fix-up: every
    /// other argument, NaN included, gives garbage. Kernels use it where the argument's range
    /// is proved (`codegen::value_range`: a probability clipped to `[ε, 1 − ε]`, as Keras's
    /// cross-entropies do), adding NaN's fix-up, and under a lane test that sends the vectors
    /// with other lanes to `log` (`codegen::Translator::lane_tested` and `lane_split`).
    LogNormal,
    /// `log1p` for arguments in `(−1, 1]` of magnitude at least [`tiny`], bit for bit,
    /// without any fix-up: +inf, −1 and below, NaN and the tiny arguments (which `log1p`
    /// returns as they are, −0 included) give garbage. `log1p(−p)` of a probability, clipped
    /// (the caller adds the tiny arguments' and NaN's fix-ups) or under a lane test, as for
    /// [`MathFunc::LogNormal`].
    Log1pSmall,
}

impl MathFunc {
    /// The lower-case name, as in the loss language.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MathFunc::Exp => "exp",
            MathFunc::Log => "log",
            MathFunc::Log1p => "log1p",
            MathFunc::Expm1 => "expm1",
            MathFunc::Sigmoid => "sigmoid",
            MathFunc::Softplus => "softplus",
            MathFunc::LogSigmoid => "log_sigmoid",
            MathFunc::Tanh => "tanh",
            MathFunc::Sinh => "sinh",
            MathFunc::Cosh => "cosh",
            MathFunc::Sin => "sin",
            MathFunc::Cos => "cos",
            MathFunc::ExpDw => "exp_dw",
            MathFunc::ExpNonPositive => "exp_nonpositive",
            MathFunc::LogPositive => "log_positive",
            MathFunc::Log1pNonNegative => "log1p_nonnegative",
            MathFunc::Log1pUnit => "log1p_unit",
            MathFunc::LogNormal => "log_normal",
            MathFunc::Log1pSmall => "log1p_small",
        }
    }

    /// The number of operands: 2 for `ExpDw`, 1 for the others.
    pub(crate) fn arity(self) -> usize {
        if self == MathFunc::ExpDw {
            2
        } else {
            1
        }
    }

    /// The libm function the emitted code calls for arguments its own code does not cover
    /// (`sin` and `cos` beyond `|x| = 10^6`), if any; the caller declares it and passes its
    /// reference to [`emit_math_pooled`].
    pub(crate) fn fallback(self) -> Option<Libm> {
        match self {
            MathFunc::Sin => Some(Libm::Sin),
            MathFunc::Cos => Some(Libm::Cos),
            _ => None,
        }
    }
}

/// Emits `func(args)` at the current insertion point of `b` and returns the result, of the
/// type of the operands ([`MathFunc::arity`] of them, all of one type); constants come from
/// `pool` when one is given (see [`ConstPool`]), and `fallback` (the function
/// [`MathFunc::fallback`] names, declared for the lane type) is called for the arguments that
/// need it. Functions with a fallback leave the builder in a new block (see the module docs).
///
/// # Errors
///
/// [`MathError::UnsupportedType`] if an operand is not `f32`, `f64`, `f32x4` or `f64x2` (or
/// the operands differ in type), [`MathError::Arity`] for a wrong number of operands, and
/// [`MathError::NoFallback`] if `func` needs a fallback and `fallback` is `None`; nothing is
/// emitted then.
pub(crate) fn emit_math(
    b: &mut FunctionBuilder,
    features: MathFeatures,
    func: MathFunc,
    args: &[Value],
    pool: Option<&mut ConstPool>,
    fallback: Option<FuncRef>,
) -> Result<Value, MathError> {
    if args.len() != func.arity() {
        return Err(MathError::Arity(func, args.len()));
    }
    let fallback = match (func.fallback(), fallback) {
        (Some(_), None) => return Err(MathError::NoFallback(func)),
        (_, f) => f,
    };
    let x = args[0];
    let ty = b.func.dfg.value_type(x);
    if let Some(other) = args.iter().map(|a| b.func.dfg.value_type(*a)).find(|t| *t != ty) {
        return Err(MathError::UnsupportedType(other));
    }
    let mut em = Emitter::new(b, features, x)?;
    em.pool = pool;
    Ok(match func {
        MathFunc::Exp => em.exp(x),
        MathFunc::Log => em.log(x),
        MathFunc::Log1p => em.log1p_checked(x, true),
        MathFunc::Expm1 => em.expm1(x),
        MathFunc::Sigmoid => em.sigmoid(x),
        MathFunc::Softplus => em.softplus(x),
        MathFunc::LogSigmoid => em.log_sigmoid(x),
        MathFunc::Tanh => em.tanh(x),
        MathFunc::Sinh => em.sinh(x),
        MathFunc::Cosh => em.cosh(x),
        MathFunc::Sin | MathFunc::Cos => {
            let y = em.sin_cos(x, func == MathFunc::Cos);
            match fallback {
                Some(f) => em.trig_fallback(x, y, f),
                None => y,
            }
        }
        MathFunc::ExpDw => em.exp_dw(x, args[1]),
        MathFunc::ExpNonPositive => em.exp_nonpositive(x),
        MathFunc::LogPositive => em.log_positive(x),
        MathFunc::Log1pNonNegative => em.log1p_checked(x, false),
        MathFunc::Log1pUnit => em.log1p_unit(x),
        MathFunc::LogNormal => em.log_normal(x),
        MathFunc::Log1pSmall => em.log1p_small(x),
    })
}

/// The fix-ups that [`MathFunc::LogNormal`] and [`MathFunc::Log1pSmall`] leave to their
/// callers, applied to their result `res` for the argument `x`: with `tiny`, `x` itself where
/// `|x|` is below [`tiny`] (log1p's), then NaN where `x` is NaN. The same operations as the
/// full routines' fix-ups.
///
/// # Errors
///
/// [`MathError::UnsupportedType`] if `x` is not `f32`, `f64`, `f32x4` or `f64x2`.
pub(crate) fn emit_log_fixups(
    b: &mut FunctionBuilder,
    features: MathFeatures,
    x: Value,
    res: Value,
    tiny: bool,
    pool: Option<&mut ConstPool>,
) -> Result<Value, MathError> {
    let mut em = Emitter::new(b, features, x)?;
    em.pool = pool;
    let res = if tiny { em.tiny_is_itself(x, res) } else { res };
    Ok(em.nan_of_nan(x, res))
}

/// Constants defined once each, in the entry block, instead of at every use.
///
/// A kernel's inline math uses each of a few dozen constants many times; emitted at the
/// use, every one is an instruction (two for a vector) that the quick tier, which does no
/// value numbering, lowers each time, and they are a third of a row kernel's instructions.
/// Defined in the entry block they dominate every use. (The optimizing tier does without:
/// its e-graph merges the repeats and rematerializes constants next to their uses.)
pub(crate) struct ConstPool {
    entry: Block,
    map: HashMap<(Type, u64), Value>,
}

impl ConstPool {
    /// An empty pool for the function whose entry block is `entry`.
    pub(crate) fn new(entry: Block) -> ConstPool {
        ConstPool { entry, map: HashMap::new() }
    }

    /// The constant of type `ty` (a float or integer scalar, or a vector of one, splatted)
    /// whose lane has the bit pattern `bits` (zero-extended for narrow lanes).
    pub(crate) fn get(&mut self, b: &mut FunctionBuilder, ty: Type, bits: u64) -> Value {
        if let Some(v) = self.map.get(&(ty, bits)) {
            return *v;
        }
        let v = if ty.is_vector() {
            let lane = self.get(b, ty.lane_type(), bits);
            self.at_entry(b).ins().splat(ty, lane)
        } else if ty == types::F32 {
            self.at_entry(b).ins().f32const(Ieee32::with_bits(bits as u32))
        } else if ty == types::F64 {
            self.at_entry(b).ins().f64const(Ieee64::with_bits(bits))
        } else {
            self.at_entry(b).ins().iconst(ty, bits as i64)
        };
        self.map.insert((ty, bits), v);
        v
    }

    /// A float constant of type `ty` (scalar or vector), `x` rounded to its lane type.
    pub(crate) fn float(&mut self, b: &mut FunctionBuilder, ty: Type, x: f64) -> Value {
        let bits = if ty.lane_type() == types::F32 { u64::from((x as f32).to_bits()) } else { x.to_bits() };
        self.get(b, ty, bits)
    }

    /// A cursor in the entry block: before its terminator once it has one, else at its end.
    fn at_entry<'f>(&self, b: &'f mut FunctionBuilder) -> FuncCursor<'f> {
        let last = b.func.layout.last_inst(self.entry);
        let pos = FuncCursor::new(b.func);
        match last {
            Some(t) if pos.func.dfg.insts[t].opcode().is_terminator() => pos.at_inst(t),
            _ => pos.at_bottom(self.entry),
        }
    }
}

/// Coefficients and thresholds for one element type.
///
/// The `exp` and `log` polynomials were fitted by Chebyshev fits with mpmath, rounded to the
/// element type; the `sinh`, `sin` and `cos` ones are Taylor coefficients ([`inv_fact`]); all
/// other constants are exactly representable in the element type.
struct Consts {
    /// `f32` or `f64`.
    lane: Type,
    /// Explicit mantissa bits: 23 or 52.
    mant_bits: i64,
    /// Exponent bias: 127 or 1023.
    bias: i64,
    /// `1.5·2^mant_bits`: adding it rounds a float of magnitude below `2^(mant_bits−1)` to an
    /// integer (ties to even) and leaves that integer in the low bits of the sum.
    magic: f64,
    /// `1/ln 2`, rounded.
    log2e: f64,
    /// High part of ln 2 with enough trailing zeros that `n·LN2_HI` is exact for every `n` used.
    ln2_hi: f64,
    /// `ln 2 − ln2_hi`, rounded.
    ln2_lo: f64,
    /// `exp` clamps its argument to `[exp_lo, exp_hi]`: below `exp_lo` the result rounds to 0,
    /// above `exp_hi` it overflows, and `2^(n/2)` stays a normal number in between. At `exp_lo`,
    /// `n + exp_shift` is the exponent of +0 (`−bias`), one above it that of the least normal.
    exp_lo: f64,
    /// See `exp_lo`: `exp_lo/ln 2` rounds to `−bias − exp_shift`.
    exp_shift: i64,
    /// See `exp_lo`.
    exp_hi: f64,
    /// `expm1` clamps below at this argument, where the result rounds to −1.
    expm1_lo: f64,
    /// `Q(r)` with `e^r − 1 = r + r²/2 + r³·Q(r)` on `|r| ≤ 0.3467`, lowest degree first.
    exp_q: &'static [f64],
    /// `P(z)` with `log(1+f) = f − f²/2 + s·(f²/2 + z·P(z))`, `s = f/(2+f)`, `z = s²`.
    log_p: &'static [f64],
    /// `A(z)` with `log1p(x) = 2·atanh(s) = 2s + s·z·A(z)`, `s = x/(2+x)`, `z = s²`, for
    /// `x` in `[0, 1]` (`z ≤ 1/9`), lowest degree first: a minimax fit of relative error
    /// 2^-25 with coefficients rounded to f32 (`fit_log1p_unit.py` beside this file); only where
    /// [`Emitter::log1p_unit`] uses it (f32 with `fma`; f64 would need twice the terms).
    log1p_unit_a: Option<&'static [f64]>,
    /// Added to the bits of `x` so that the exponent field rounds `m` into `[√½, √2)`.
    log_off: i64,
    /// Bits of the float just above `√½` that `m`'s mantissa is rebased on.
    log_base: i64,
    /// Mask of the mantissa field.
    mant_mask: i64,
    /// Bits of `2^mant_bits`, used to turn a small integer into a float.
    two_mant_bits: i64,
    /// Smallest positive normal number.
    min_normal: f64,
    /// `2^(mant_bits + 2)`: subnormal inputs of `log` are multiplied by it first.
    sub_scale: f64,
    /// `mant_bits + 2`, the exponent of `sub_scale`.
    sub_k: f64,
    /// Below this magnitude `expm1(x)` and `log1p(x)` round to `x`.
    tiny: f64,
    /// Dekker's splitting constant `2^⌈p/2⌉ + 1`.
    split: f64,
    /// `S(z)` with `sinh(x) = x + x·z·S(z)`, `z = x²`, for `|x| < 1` (Taylor coefficients,
    /// the first one omitted past the precision).
    sinh_p: &'static [f64],
    /// `sinh` and `cosh` add `±1/(4·(e^|x|/2))` with `e^|x|/2` capped here: beyond the cap
    /// the term is far below the result's last bit, and uncapped it is subnormal for large
    /// `|x|` (a slow operation).
    hyp_cap: f64,
    /// `S(z)` with `sin(r) = r + r·z·S(z)`, `z = r²`, on `|r| ≤ π/4` (Taylor). `sin` and `cos`
    /// run in f64 arithmetic for both lane types; f32 needs fewer terms.
    sin_p: &'static [f64],
    /// `C(z)` with `cos(r) = 1 − z/2 + z²·C(z)` on `|r| ≤ π/4` (Taylor), likewise.
    cos_p: &'static [f64],
}

impl Consts {
    /// The `k_base` of [`Emitter::log_kernel`] for a normal argument: `2^mant_bits + bias`.
    fn normal_k_base(&self) -> f64 {
        (1i64 << self.mant_bits) as f64 + self.bias as f64
    }
}

/// `π/2` as four parts: three of 33 bits, so `n·PIO2[i]` is exact for `|n| < 2^20`, and the
/// rest rounded (error below 2^-160).
const PIO2: [f64; 4] = [1.5707963267341256, 6.077100506303966e-11, 2.0222662487111665e-21, 8.4784276603689e-32];

/// `2/π`, rounded.
const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;

/// `sin` and `cos` reduce arguments up to this magnitude inline (`n < 2^20`, so the products
/// with `PIO2` are exact); beyond it a vector that has such a lane calls libm for it.
const TRIG_MAX: f64 = 1.0e6;

/// Below this magnitude `sin(x)` rounds to `x` in f64 (and so in f32).
const SIN_TINY: f64 = 1.4901161193847656e-8; // 2^-26

/// Below this magnitude `cos(x)` rounds to 1 in f64 (and so in f32).
const COS_TINY: f64 = 7.450580596923828e-9; // 2^-27

/// `1/k!` rounded to f64.
const fn inv_fact(k: u32) -> f64 {
    let mut f = 1.0f64;
    let mut i = 2;
    while i <= k {
        f *= i as f64;
        i += 1;
    }
    1.0 / f
}

/// `1/k!` rounded to f32 (through f64: the factorials up to 11! are exact).
const fn inv_fact32(k: u32) -> f64 {
    inv_fact(k) as f32 as f64
}

/// The magnitude below which `log1p(x)` (and `expm1(x)`) rounds to `x`, for lanes of type
/// `lane` (`f32` or `f64`): the callers of `log1p_small` fix those arguments up.
pub(crate) fn tiny(lane: Type) -> f64 {
    if lane == types::F32 {
        F32_CONSTS.tiny
    } else {
        F64_CONSTS.tiny
    }
}

/// `f32` constants.
static F32_CONSTS: Consts = Consts {
    lane: types::F32,
    mant_bits: 23,
    bias: 127,
    magic: 12582912.0,
    log2e: std::f32::consts::LOG2_E as f64,
    ln2_hi: 0.693145751953125,
    ln2_lo: 1.428606765330187e-06,
    exp_lo: -105.0,
    exp_shift: 24,
    exp_hi: 89.0,
    expm1_lo: -20.0,
    exp_q: &[
        0.1666666716337204,
        0.041666556149721146,
        0.00833332072943449,
        0.0013926203828305006,
        0.00019882719789166003,
    ],
    log_p: &[0.6666666865348816, 0.4000012278556824, 0.2855081856250763, 0.23330561816692352],
    log1p_unit_a: Some(&[
        0.6666666865348816,
        0.3999970257282257,
        0.2859250009059906,
        0.217045396566391,
        0.23233532905578613,
    ]),
    log_off: 0x3f80_0000 - 0x3f35_04f3,
    log_base: 0x3f35_04f3,
    mant_mask: 0x007f_ffff,
    two_mant_bits: 0x4b00_0000,
    min_normal: 1.1754943508222875e-38,
    sub_scale: 33554432.0,
    sub_k: 25.0,
    tiny: 2.9802322387695312e-08,
    split: 4097.0,
    sinh_p: &[inv_fact32(3), inv_fact32(5), inv_fact32(7), inv_fact32(9), inv_fact32(11)],
    hyp_cap: 1.125899906842624e15, // 2^50
    sin_p: &[-inv_fact(3), inv_fact(5), -inv_fact(7), inv_fact(9)],
    cos_p: &[inv_fact(4), -inv_fact(6), inv_fact(8), -inv_fact(10)],
};

/// `f64` constants.
static F64_CONSTS: Consts = Consts {
    lane: types::F64,
    mant_bits: 52,
    bias: 1023,
    magic: 6755399441055744.0,
    log2e: std::f64::consts::LOG2_E,
    ln2_hi: 0.6931471805598903,
    ln2_lo: 5.497923018708371e-14,
    exp_lo: -746.0,
    exp_shift: 53,
    exp_hi: 710.0,
    expm1_lo: -40.0,
    exp_q: &[
        0.16666666666666669,
        0.041666666666666664,
        0.008333333333330055,
        0.0013888888888886548,
        0.00019841269863088255,
        2.4801587317169235e-05,
        2.7557268406190795e-06,
        2.7557282931125736e-07,
        2.51004110820149e-08,
        2.091125490208877e-09,
    ],
    log_p: &[
        0.666666666666667,
        0.39999999999899455,
        0.2857142862599856,
        0.2222221113102852,
        0.1818288939967772,
        0.15331712479381301,
        0.14616562422104645,
    ],
    log1p_unit_a: None,
    log_off: (0x3ff0_0000 - 0x3fe6_a09e) << 32,
    log_base: 0x3fe6_a09e << 32,
    mant_mask: 0x000f_ffff_ffff_ffff,
    two_mant_bits: 0x4330_0000_0000_0000,
    min_normal: 2.2250738585072014e-308,
    sub_scale: 18014398509481984.0,
    sub_k: 54.0,
    tiny: 5.551115123125783e-17,
    split: 134217729.0,
    sinh_p: &[
        inv_fact(3),
        inv_fact(5),
        inv_fact(7),
        inv_fact(9),
        inv_fact(11),
        inv_fact(13),
        inv_fact(15),
        inv_fact(17),
        inv_fact(19),
    ],
    hyp_cap: 1.2676506002282294e30, // 2^100
    sin_p: &[
        -inv_fact(3),
        inv_fact(5),
        -inv_fact(7),
        inv_fact(9),
        -inv_fact(11),
        inv_fact(13),
        -inv_fact(15),
        inv_fact(17),
    ],
    cos_p: &[
        inv_fact(4),
        -inv_fact(6),
        inv_fact(8),
        -inv_fact(10),
        inv_fact(12),
        -inv_fact(14),
        inv_fact(16),
        -inv_fact(18),
    ],
};

/// A lane mask from `fcmp`: `i8` for scalars, an integer vector for vectors.
#[derive(Clone, Copy)]
struct Mask(Value);

/// The result of the `exp` argument reduction.
struct Reduced {
    /// `x·log2e + magic`: its integer bits are `n` plus a constant multiple of `2^(mant_bits+1)`.
    t: Value,
    /// The reduced argument, `x − n·ln2` rounded.
    r: Value,
    /// The rounding error of `r`: `x − n·ln2 ≈ r + r_lo`.
    r_lo: Value,
}

/// Emission context: the builder, the operand type and its constants.
struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    /// The float type of operands and results (scalar or vector).
    ty: Type,
    /// The integer type of the same shape.
    int_ty: Type,
    /// Constants for the lane type.
    k: &'static Consts,
    /// Whether `fma` may be emitted.
    fma: bool,
    /// Where constants come from, if not from an instruction at the use.
    pool: Option<&'a mut ConstPool>,
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn new(b: &'a mut FunctionBuilder<'b>, features: MathFeatures, x: Value) -> Result<Self, MathError> {
        let ty = b.func.dfg.value_type(x);
        let (k, int_ty) = match ty {
            types::F32 => (&F32_CONSTS, types::I32),
            types::F64 => (&F64_CONSTS, types::I64),
            types::F32X4 => (&F32_CONSTS, types::I32X4),
            types::F64X2 => (&F64_CONSTS, types::I64X2),
            _ => return Err(MathError::UnsupportedType(ty)),
        };
        Ok(Emitter { b, ty, int_ty, k, fma: features.fma, pool: None })
    }

    // ---- Building blocks ----

    /// A float constant of the operand type (splatted for vectors).
    fn f(&mut self, v: f64) -> Value {
        if let Some(pool) = self.pool.as_deref_mut() {
            return pool.float(self.b, self.ty, v);
        }
        let s = if self.k.lane == types::F32 {
            // The constants are chosen to be exact in f32, so this cast does not round.
            self.b.ins().f32const(v as f32)
        } else {
            self.b.ins().f64const(v)
        };
        if self.ty.is_vector() {
            self.b.ins().splat(self.ty, s)
        } else {
            s
        }
    }

    /// An integer constant of the integer type matching the operand type.
    fn i(&mut self, v: i64) -> Value {
        let lane = self.int_ty.lane_type();
        // `iconst` wants narrow immediates zero-extended.
        let imm = if lane == types::I32 { i64::from(v as u32) } else { v };
        if let Some(pool) = self.pool.as_deref_mut() {
            return pool.get(self.b, self.int_ty, imm as u64);
        }
        let s = self.b.ins().iconst(lane, imm);
        if self.int_ty.is_vector() {
            self.b.ins().splat(self.int_ty, s)
        } else {
            s
        }
    }

    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }

    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }

    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }

    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }

    /// −a (an `fneg`, which Cranelift folds into an `fma` that adds it: `vfmsub`).
    fn neg(&mut self, a: Value) -> Value {
        self.b.ins().fneg(a)
    }

    /// |a|. A vector's clears the sign bit with an `andn` by −0 (a constant the optimizer can
    /// hoist out of a loop; x64 lowers `fabs` to an `and` with a mask it builds at each use:
    /// two more instructions); the quick tier's pooled constants stay `fabs`.
    fn abs(&mut self, a: Value) -> Value {
        if self.ty.is_vector() && self.pool.is_none() {
            let sign = self.f(-0.0);
            return self.b.ins().band_not(a, sign);
        }
        self.b.ins().fabs(a)
    }

    /// `a·b + c`: one `fma` when available, else a multiply and an add.
    fn mla(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// `a·K + c` for a constant `K`.
    fn mla_k(&mut self, a: Value, k: f64, c: Value) -> Value {
        let kv = self.f(k);
        self.mla(a, kv, c)
    }

    /// Reinterprets float bits as integers.
    fn int_bits(&mut self, x: Value) -> Value {
        self.b.ins().bitcast(self.int_ty, MemFlagsData::new(), x)
    }

    /// Reinterprets integer bits as a float.
    fn float_from_bits(&mut self, i: Value) -> Value {
        self.b.ins().bitcast(self.ty, MemFlagsData::new(), i)
    }

    fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Mask {
        Mask(self.b.ins().fcmp(cc, a, b))
    }

    /// `mask ? a : b` lane by lane.
    fn sel(&mut self, mask: Mask, a: Value, b: Value) -> Value {
        if self.ty.is_vector() {
            // The `bitcast(fcmp)` shape lets Cranelift use `blendv`, `minps` or `maxps`.
            let m = self.b.ins().bitcast(self.ty, MemFlagsData::new(), mask.0);
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask.0, a, b)
        }
    }

    /// `mask ? a : +0`. A vector's is `a & mask` (one `andps`; x64 lowers a `bitselect` on a
    /// compare's mask to a two-micro-op blend, which also needs the +0 in a register).
    fn sel_zero(&mut self, mask: Mask, a: Value) -> Value {
        if self.ty.is_vector() {
            let m = self.b.ins().bitcast(self.ty, MemFlagsData::new(), mask.0);
            self.b.ins().band(a, m)
        } else {
            let zero = self.f(0.0);
            self.b.ins().select(mask.0, a, zero)
        }
    }

    /// Knuth's TwoSum: `s + e = a + b` exactly, `s = fl(a + b)`.
    fn two_sum(&mut self, a: Value, b: Value) -> (Value, Value) {
        let s = self.add(a, b);
        let bb = self.sub(s, a);
        let ab = self.sub(s, bb);
        let da = self.sub(a, ab);
        let db = self.sub(b, bb);
        let e = self.add(da, db);
        (s, e)
    }

    /// Exact square: `p + e = a²`, `p = fl(a²)`.
    fn two_square(&mut self, a: Value) -> (Value, Value) {
        let p = self.mul(a, a);
        if self.fma {
            let np = self.neg(p);
            let e = self.b.ins().fma(a, a, np);
            return (p, e);
        }
        // Dekker: a = hi + lo with hi holding the upper half of the bits.
        let c = self.mul_k(a, self.k.split);
        let d = self.sub(c, a);
        let hi = self.sub(c, d);
        let lo = self.sub(a, hi);
        let hh = self.mul(hi, hi);
        let t = self.sub(hh, p);
        let hl = self.mul(hi, lo);
        let hl2 = self.add(hl, hl);
        let t = self.add(t, hl2);
        let ll = self.mul(lo, lo);
        let e = self.add(t, ll);
        (p, e)
    }

    fn mul_k(&mut self, a: Value, k: f64) -> Value {
        let kv = self.f(k);
        self.mul(a, kv)
    }

    fn add_k(&mut self, a: Value, k: f64) -> Value {
        let kv = self.f(k);
        self.add(a, kv)
    }

    /// Horner evaluation of `c[0] + c[1]·x + …`.
    fn poly(&mut self, x: Value, c: &[f64]) -> Value {
        let Some((&last, rest)) = c.split_last() else {
            return self.f(0.0);
        };
        let mut acc = self.f(last);
        for &ci in rest.iter().rev() {
            let cv = self.f(ci);
            acc = self.mla(acc, x, cv);
        }
        acc
    }

    /// `2^e` from an integer `e` held in the low bits of `bits` (modulo the exponent-field width),
    /// as `(bits + bias) << mant_bits`.
    fn pow2_from_bits(&mut self, bits: Value, extra: i64) -> Value {
        let bias = self.i(self.k.bias + extra);
        let e = self.b.ins().iadd(bits, bias);
        let sh = self.b.ins().ishl_imm_u(e, self.k.mant_bits);
        self.float_from_bits(sh)
    }

    // ---- exp family ----

    /// Clamps `x` to `[lo, hi]`, letting NaN through, and reduces it: `x = n·ln2 + r + r_lo`.
    /// The argument clamped to `[lo, hi]` (not above when `hi` is `+inf`), reduced.
    fn reduce(&mut self, x: Value, lo: f64, hi: f64) -> Reduced {
        let k = self.k;
        let lo_v = self.f(lo);
        let below = self.cmp(FloatCC::LessThan, x, lo_v);
        let mut xc = self.sel(below, lo_v, x);
        if hi < f64::INFINITY {
            let hi_v = self.f(hi);
            let above = self.cmp(FloatCC::LessThan, hi_v, xc);
            xc = self.sel(above, hi_v, xc);
        }
        let log2e = self.f(k.log2e);
        let magic = self.f(k.magic);
        let t = self.mla(xc, log2e, magic);
        let n = self.sub(t, magic);
        // n·ln2_hi is exact and so is the subtraction (Sterbenz), with or without fma.
        let r1 = self.mla_k(n, -k.ln2_hi, xc);
        let nlo = self.f(-k.ln2_lo);
        let r = self.mla(n, nlo, r1);
        let d = self.sub(r1, r);
        let r_lo = self.mla(n, nlo, d);
        Reduced { t, r, r_lo }
    }

    fn exp(&mut self, x: Value) -> Value {
        self.exp_scaled(x, self.k.exp_hi, 0)
    }

    /// `e^x · 2^extra` for `extra ∈ {−1, 0}`, with the argument clamped to `[exp_lo, hi]`
    /// (`hi ≤ exp_hi + 1`: the result overflows above it).
    fn exp_scaled(&mut self, x: Value, hi: f64, extra: i64) -> Value {
        let (u, tb) = self.exp_unscaled(x, hi, None);
        self.exp_scale(u, tb, extra)
    }

    /// `e^(hi + lo)` for `hi ≤ 0` or NaN (no upper clamp) and `lo` the rounding error of the
    /// difference `hi`: `e^(r + r_lo)·(1 + lo)`, the `lo·(1 + r + h)` term summed into the
    /// small terms before `exp`'s one rounding (|lo| ≤ ulp(hi)/2, so the first order is exact
    /// to well under an ulp), then scaled as `exp`: no operation meets a subnormal number.
    /// A NaN `lo` (the difference was not finite) is dropped: `e^(−inf)` stays 0.
    fn exp_dw(&mut self, hi: Value, lo: Value) -> Value {
        let finite = self.cmp(FloatCC::Equal, lo, lo);
        let lo = self.sel_zero(finite, lo);
        let (u, tb) = self.exp_unscaled(hi, f64::INFINITY, Some(lo));
        self.exp_scale_nonpositive(u, tb)
    }

    /// `e^x` for `x ≤ 0.34` or NaN (`n ≤ 0`): `exp`'s bits without its upper clamp, scaled as
    /// [`Emitter::exp_dw`].
    fn exp_nonpositive(&mut self, x: Value) -> Value {
        let (u, tb) = self.exp_unscaled(x, f64::INFINITY, None);
        self.exp_scale_nonpositive(u, tb)
    }

    /// `e^r` of the reduced argument (`x` clamped to `[exp_lo, hi]`) before scaling by `2^n`,
    /// times `1 + lo` for a small `lo`, and the integer bits of `n` (see
    /// [`Emitter::exp_scale`]).
    fn exp_unscaled(&mut self, x: Value, hi: f64, lo: Option<Value>) -> (Value, Value) {
        let k = self.k;
        let red = self.reduce(x, k.exp_lo, hi);
        let r = red.r;
        // h = r²/2 + r³·Q(r) = r²·(1/2 + r·Q(r)).
        let q = self.poly(r, k.exp_q);
        let half = self.f(0.5);
        let inner = self.mla(r, q, half);
        let r2 = self.mul(r, r);
        let h = self.mul(r2, inner);
        // 1 + r exactly as s + e (|r| < 1), then the small terms, then one rounding.
        let one = self.f(1.0);
        let s = self.add(one, r);
        let sr = self.sub(one, s);
        let e = self.add(sr, r);
        let rr = self.mla(r, red.r_lo, red.r_lo); // r_lo·(1 + r)
        let mut tail = self.add(h, rr);
        if let Some(lo) = lo {
            // + lo·(1 + r + h), to within lo·(e + rr): far below the result's ulp.
            let sh = self.add(s, h);
            tail = self.mla(lo, sh, tail);
        }
        let tail = self.add(e, tail);
        let u = self.add(s, tail);
        (u, self.int_bits(red.t))
    }

    /// `u · 2^n · 2^extra`, `n` given by its bits `tb` from [`Emitter::exp_unscaled`].
    fn exp_scale(&mut self, u: Value, tb: Value, extra: i64) -> Value {
        // Scale by 2^a·2^b, b = min(⌈n/2⌉, n + exp_shift), a = n − b: for n above the clamp's
        // each factor is normal, the first product is exact and the second rounds once (to a
        // subnormal or to infinity where it must). At the clamp's n, 2^b has exponent bits 0:
        // it is +0, and the result 0 comes without an operation on subnormals, which x86 runs
        // as a microcode assist (a row of logits 10^3 apart: every exponential below the clamp).
        // Integers here are n plus half the magic constant's bits (see `pow2_from_bits`).
        let half_n = self.b.ins().ushr_imm_u(tb, 1);
        let ceil_half = self.b.ins().isub(tb, half_n);
        let magic_half = if self.k.lane == types::F32 {
            i64::from((self.k.magic as f32).to_bits() / 2)
        } else {
            (self.k.magic.to_bits() / 2) as i64
        };
        let low = self.i(self.k.exp_shift - magic_half);
        let shifted = self.b.ins().iadd(tb, low);
        let b_n = self.b.ins().smin(ceil_half, shifted);
        let a_n = self.b.ins().isub(tb, b_n);
        let s1 = self.pow2_from_bits(a_n, extra);
        let s2 = self.pow2_from_bits(b_n, 0);
        let u = self.mul(u, s1);
        self.mul(u, s2)
    }

    /// [`Emitter::exp_scale`] for `n ≤ 0` (an argument `≤ 0` or NaN): `u · 2^(n + exp_shift)`
    /// then `· 2^−exp_shift`. The first factor is a normal number for every `n` above the
    /// clamp's, where the product is exact (or, one above the clamp with `u < 1`, a subnormal
    /// whose rounding the second product's cannot change: both give 0 unless `u > 1`); the
    /// second product rounds once. At the clamp's `n` the first factor has exponent bits 0:
    /// it is +0, as in `exp_scale`. One integer addition and a shift where `exp_scale` takes
    /// nine operations for its two variable factors (a positive `n` would overflow the exponent
    /// field from `n = bias − exp_shift` up).
    fn exp_scale_nonpositive(&mut self, u: Value, tb: Value) -> Value {
        let magic_bits = if self.k.lane == types::F32 {
            i64::from((self.k.magic as f32).to_bits())
        } else {
            self.k.magic.to_bits() as i64
        };
        // 2^(n + exp_shift): n's bits are tb − magic_bits, added to the bias in one constant.
        let s1 = self.pow2_from_bits(tb, self.k.exp_shift - magic_bits);
        let u = self.mul(u, s1);
        let s2 = self.f((-self.k.exp_shift as f64).exp2());
        self.mul(u, s2)
    }

    fn expm1(&mut self, x: Value) -> Value {
        let k = self.k;
        let red = self.reduce(x, k.expm1_lo, k.exp_hi);
        let r = red.r;
        // h = e^r − 1 − r = r²/2 + r³·Q(r), with r² split exactly: h = hh + hl.
        let (r2, r2_err) = self.two_square(r);
        let q = self.poly(r, k.exp_q);
        let hh = self.mul_k(r2, 0.5);
        let r3 = self.mul(r2, r);
        let half_err = self.mul_k(r2_err, 0.5);
        let hl = self.mla(r3, q, half_err);
        let rr = self.mla(r, red.r_lo, red.r_lo); // r_lo·(1 + r)
        let small = self.add(hl, rr);
        // result = 2·(P·(1 + r + hh + small) − 1/2) with P = 2^(n−1), summed in double-word
        // arithmetic: P·r and P·hh are exact, P − 1/2 is split by TwoSum.
        let tb = self.int_bits(red.t);
        let p = self.pow2_from_bits(tb, -1);
        let mhalf = self.f(-0.5);
        let (a_hi, a_lo) = self.two_sum(p, mhalf);
        let t1 = self.mul(p, r);
        let t2 = self.mul(p, hh);
        let t3 = self.mul(p, small);
        let (s1, e1) = self.two_sum(a_hi, t1);
        let (s2, e2) = self.two_sum(s1, t2);
        let tail = self.add(e1, e2);
        let tail = self.add(tail, a_lo);
        let tail = self.add(tail, t3);
        let inner = self.add(s2, tail);
        let res = self.add(inner, inner);
        self.tiny_is_itself(x, res)
    }

    // ---- log family ----

    /// `log(xs) + corr` for a positive normal `xs` (other inputs give garbage that the callers
    /// replace), where the exponent is reduced by `k_base − 2^mant_bits − bias`.
    /// `corr` must be small compared with `xs`'s own rounding (it is `c/u` for `log1p`).
    fn log_kernel(&mut self, xs: Value, k_base: Value, corr: Option<Value>) -> Value {
        let (m, kf) = self.log_reduce(xs, k_base);
        self.log_reduced(m, kf, corr)
    }

    /// `xs = m·2^k` with `m` in `[√½, √2)`, from the exponent bits (`k_base` as in
    /// [`Emitter::log_kernel`]): `(m, k as a float)`.
    fn log_reduce(&mut self, xs: Value, k_base: Value) -> (Value, Value) {
        let k = self.k;
        let off = self.i(k.log_off);
        let bits = self.int_bits(xs);
        let ix = self.b.ins().iadd(bits, off);
        // k as a float: put the exponent field under 2^mant_bits and subtract.
        let eb = self.b.ins().ushr_imm_u(ix, k.mant_bits);
        let two_m = self.i(k.two_mant_bits);
        let eb = self.b.ins().bor(eb, two_m);
        let ef = self.float_from_bits(eb);
        let kf = self.sub(ef, k_base);
        // m in [√½, √2), f = m − 1 exactly.
        let mask = self.i(k.mant_mask);
        let mb = self.b.ins().band(ix, mask);
        let base = self.i(k.log_base);
        let mb = self.b.ins().iadd(mb, base);
        (self.float_from_bits(mb), kf)
    }

    /// `log(m·2^k) + corr` for `m` in `[√½, √2)` (and `kf` = k), fdlibm's polynomial.
    fn log_reduced(&mut self, m: Value, kf: Value, corr: Option<Value>) -> Value {
        let k = self.k;
        let one = self.f(1.0);
        let f = self.sub(m, one);
        let half_f = self.mul_k(f, 0.5);
        let hfsq = self.mul(half_f, f);
        // 2 + f as m + 1 (f = m − 1 is exact): the same sum, rounded once, with the constant
        // 1 that f already needs.
        let den = self.add(m, one);
        let s = self.div(f, den);
        let z = self.mul(s, s);
        let p = self.poly(z, k.log_p);
        let rr = self.mul(z, p);
        // log = k·ln2_hi − ((hfsq − (s·(hfsq + R) + (k·ln2_lo + corr))) − f)   (fdlibm)
        let lo_v = self.f(k.ln2_lo);
        let low = match corr {
            Some(c) => self.mla(kf, lo_v, c),
            None => self.mul(kf, lo_v),
        };
        let hr = self.add(hfsq, rr);
        let a = self.mla(s, hr, low);
        let bterm = self.sub(hfsq, a);
        let c = self.sub(bterm, f);
        let nc = self.neg(c);
        self.mla_k(kf, k.ln2_hi, nc)
    }

    /// `log` for `x > 0` (normal, subnormal or +inf): the other inputs give garbage.
    fn log_positive(&mut self, x: Value) -> Value {
        let k = self.k;
        // Subnormal inputs: scale into the normal range and correct k.
        let min_normal = self.f(k.min_normal);
        let sub = self.cmp(FloatCC::LessThan, x, min_normal);
        let scaled = self.mul_k(x, k.sub_scale);
        let xs = self.sel(sub, scaled, x);
        let base = k.normal_k_base();
        let kb_sub = self.f(base + k.sub_k);
        let kb = self.f(base);
        let k_base = self.sel(sub, kb_sub, kb);
        let res = self.log_kernel(xs, k_base, None);
        let inf = self.f(f64::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x, inf);
        self.sel(is_inf, inf, res)
    }

    /// `log` for positive normal finite `x`, bit for bit: the kernel alone.
    fn log_normal(&mut self, x: Value) -> Value {
        let k = self.k;
        let k_base = self.f(k.normal_k_base());
        self.log_kernel(x, k_base, None)
    }

    /// Special values: +inf → +inf (in [`Emitter::log_positive`]), x < 0 or NaN → NaN, ±0 → −inf.
    fn log(&mut self, x: Value) -> Value {
        let res = self.log_positive(x);
        let zero = self.f(0.0);
        let bad = self.cmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.f(f64::NAN);
        let res = self.sel(bad, nan, res);
        let is_zero = self.cmp(FloatCC::Equal, x, zero);
        let ninf = self.f(f64::NEG_INFINITY);
        self.sel(is_zero, ninf, res)
    }

    /// `log1p` without the special-value fix-ups: valid for `x ≥ 0` (finite or not) and NaN,
    /// which is what the composites pass.
    fn log1p_core(&mut self, x: Value) -> Value {
        let k = self.k;
        let one = self.f(1.0);
        // u + c = 1 + x exactly (TwoSum); log1p(x) = log(u) + c/u.
        let (u, c) = self.two_sum(one, x);
        let corr = self.div(c, u);
        let k_base = self.f(k.normal_k_base());
        self.log_kernel(u, k_base, Some(corr))
    }

    /// `log1p` for `+0 ≤ x ≤ 1` (or NaN; −0 gives +0), as `exp(−|t|)` feeds it: in f32 with
    /// `fma` by [`Emitter::log1p_atanh`], otherwise bit for bit `log1p`'s: `u = 1 + x` lies in
    /// `[1, 2]`, so the reduction to `[√½, √2)` is one comparison (`m = u` or `u/2`, `k = 0` or 1) instead of
    /// the exponent bits, TwoSum's error term is FastTwoSum's (x's exponent is at most 1's),
    /// and only NaN needs a fix-up: ±inf, −1 and below are out of range, and a tiny `x`
    /// comes out of the polynomial as itself (`corr = x/1`, every other term 0).
    fn log1p_unit(&mut self, x: Value) -> Value {
        if let Some(a) = self.atanh_terms() {
            return self.log1p_atanh(x, a);
        }
        let k = self.k;
        let (u, corr) = self.one_plus_small(x);
        // The least u that `log_reduce` gives an exponent of 1: `2^mant_bits + log_base`.
        let split_bits = (1i64 << k.mant_bits) + k.log_base;
        let split = if k.lane == types::F32 {
            f64::from(f32::from_bits(split_bits as u32))
        } else {
            f64::from_bits(split_bits as u64)
        };
        let split = self.f(split);
        let big = self.cmp(FloatCC::GreaterThanOrEqual, u, split);
        let half = self.mul_k(u, 0.5);
        let m = self.sel(big, half, u);
        let one = self.f(1.0);
        let kf = self.sel_zero(big, one);
        let res = self.log_reduced(m, kf, Some(corr));
        self.nan_of_nan(x, res)
    }

    /// [`Consts::log1p_unit_a`] where [`Emitter::log1p_atanh`] may use it: its remainder
    /// needs an exact `fma`.
    fn atanh_terms(&self) -> Option<&'static [f64]> {
        self.k.log1p_unit_a.filter(|_| self.fma)
    }

    /// `log1p(x)` for `+0 ≤ x ≤ 1` (or NaN, which it propagates) as `2·atanh(s)`,
    /// `s = x/(2 + x)` ≤ 1/3: one division and a polynomial `a` in `s²` (see
    /// [`Consts::log1p_unit_a`]), no reduction, no fix-up, 17 operations against the general
    /// routine's 28, and within 0.7 ulp in f32. The rounding of `s` is made up for: `2 + x =
    /// d + δ` exactly (FastTwoSum), the division's remainder `x − s·d` is exact (`fma`), and
    /// `x/(d + δ) = s + (x − s·d − s·δ)/(d + δ)`, with `1/(2 + x) = (1 − s)/2` in exact arithmetic,
    /// so the correction `c = 2·(s_exact − s)` is `(x − s·d − s·δ)·(1 − s)` to far below s's last bit.
    /// Tiny and subnormal `x` come out as themselves (`t` underflows to 0 and `2s + c = x`),
    /// `+0` as `+0`.
    fn log1p_atanh(&mut self, x: Value, a: &[f64]) -> Value {
        let two = self.f(2.0);
        let d = self.add(two, x);
        let dm2 = self.sub(d, two);
        let delta = self.sub(x, dm2);
        let s = self.div(x, d);
        let ns = self.neg(s);
        let rem = self.mla(ns, d, x);
        let rem = self.mla(ns, delta, rem);
        let one = self.f(1.0);
        let one_minus_s = self.sub(one, s);
        let c = self.mul(rem, one_minus_s);
        let z = self.mul(s, s);
        let t = self.mul(s, z);
        let p = self.poly(z, a);
        let tail = self.mla(t, p, c);
        self.mla(s, two, tail)
    }

    /// `u = fl(1 + x)` and `c/u`, where `c = 1 + x − u` exactly: FastTwoSum's error term,
    /// which is TwoSum's for `|x| ≤ 1` (and for x below 2, whose exponent is 1's).
    fn one_plus_small(&mut self, x: Value) -> (Value, Value) {
        let one = self.f(1.0);
        let u = self.add(one, x);
        let um1 = self.sub(u, one);
        let c = self.sub(x, um1);
        (u, self.div(c, u))
    }

    /// `res`, or log's and log1p's NaN (not the argument's) where `x` is NaN.
    fn nan_of_nan(&mut self, x: Value, res: Value) -> Value {
        let is_nan = self.cmp(FloatCC::Unordered, x, x);
        let nan = self.f(f64::NAN);
        self.sel(is_nan, nan, res)
    }

    /// `res`, or `x` itself where `|x|` is below `tiny` (±0 and subnormals included), which is
    /// the rounded `expm1(x)` and `log1p(x)` there.
    fn tiny_is_itself(&mut self, x: Value, res: Value) -> Value {
        let ax = self.abs(x);
        let tiny = self.f(self.k.tiny);
        let is_tiny = self.cmp(FloatCC::LessThan, ax, tiny);
        self.sel(is_tiny, x, res)
    }

    /// `log1p` for `−1 < x ≤ 1` and `|x| ≥ tiny`, bit for bit: FastTwoSum for `1 + x` and no
    /// fix-ups (for ±inf, −1 and below, NaN, or the tiny arguments, −0 among them).
    fn log1p_small(&mut self, x: Value) -> Value {
        let k = self.k;
        let (u, corr) = self.one_plus_small(x);
        let k_base = self.f(k.normal_k_base());
        self.log_kernel(u, k_base, Some(corr))
    }

    /// `log1p` with its special values: +inf → +inf, x < −1 or NaN → NaN, and with
    /// `below_zero` (arguments that may be negative) −1 → −inf.
    fn log1p_checked(&mut self, x: Value, below_zero: bool) -> Value {
        let res = self.log1p_core(x);
        let inf = self.f(f64::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x, inf);
        let res = self.sel(is_inf, inf, res);
        let m1 = self.f(-1.0);
        let bad = self.cmp(FloatCC::UnorderedOrLessThan, x, m1);
        let nan = self.f(f64::NAN);
        let mut res = self.sel(bad, nan, res);
        if below_zero {
            let is_m1 = self.cmp(FloatCC::Equal, x, m1);
            let ninf = self.f(f64::NEG_INFINITY);
            res = self.sel(is_m1, ninf, res);
        }
        self.tiny_is_itself(x, res)
    }

    // ---- composites ----

    fn sigmoid(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let nax = self.neg(ax);
        let e = self.exp(nax);
        let one = self.f(1.0);
        let d = self.add(one, e);
        let zero = self.f(0.0);
        let pos = self.cmp(FloatCC::GreaterThanOrEqual, x, zero);
        let num = self.sel(pos, one, e);
        self.div(num, d)
    }

    /// `log1p(exp(−|x|))`, shared by softplus and log_sigmoid (the exponential is in [+0, 1]).
    fn log1p_exp_neg_abs(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let nax = self.neg(ax);
        let e = self.exp(nax);
        self.log1p_unit(e)
    }

    fn softplus(&mut self, x: Value) -> Value {
        let l = self.log1p_exp_neg_abs(x);
        let zero = self.f(0.0);
        // max(x, 0) in the `maxps` shape; NaN gives 0 here and NaN through `l`.
        let pos = self.cmp(FloatCC::LessThan, zero, x);
        let m = self.sel(pos, x, zero);
        self.add(m, l)
    }

    fn log_sigmoid(&mut self, x: Value) -> Value {
        let l = self.log1p_exp_neg_abs(x);
        let zero = self.f(0.0);
        // min(x, 0) in the `minps` shape.
        let neg = self.cmp(FloatCC::LessThan, x, zero);
        let m = self.sel(neg, x, zero);
        // −(l − m) rather than m − l: the same value, but −0 (the sign of the exact result)
        // when both terms are 0.
        let d = self.sub(l, m);
        self.neg(d)
    }

    fn tanh(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let y = self.mul_k(ax, -2.0);
        let e = self.expm1(y);
        // tanh|x| = −e/(e + 2), e ∈ [−1, 0].
        let ne = self.neg(e);
        let den = self.add_k(e, 2.0);
        let t = self.div(ne, den);
        self.copy_sign(t, x)
    }

    /// `|t|` with the sign of `x`, for `t ≥ 0` or NaN (vector `fcopysign` has no x64 lowering).
    fn copy_sign(&mut self, t: Value, x: Value) -> Value {
        let sign = self.f(-0.0);
        let sx = self.b.ins().band(x, sign);
        self.b.ins().bor(t, sx)
    }

    /// `e^|x|/2`, the large-argument part of `sinh` and `cosh` (finite while they are), and
    /// `1/(4·e^|x|/2)`, taken of a capped copy (see `hyp_cap`).
    fn half_exp_abs(&mut self, ax: Value) -> (Value, Value) {
        let k = self.k;
        let eh = self.exp_scaled(ax, k.exp_hi + 1.0, -1);
        let cap = self.f(k.hyp_cap);
        let over = self.cmp(FloatCC::LessThan, cap, eh);
        let capped = self.sel(over, cap, eh);
        let quarter = self.f(0.25);
        let inv = self.div(quarter, capped);
        (eh, inv)
    }

    /// `sinh(x) = sign(x)·(e^|x|/2 − 1/(4·e^|x|/2))`, and for `|x| < 1`, where that cancels,
    /// `x + x·z·S(z)`.
    fn sinh(&mut self, x: Value) -> Value {
        let k = self.k;
        let ax = self.abs(x);
        let z = self.mul(ax, ax);
        let sp = self.poly(z, k.sinh_p);
        let zs = self.mul(z, sp);
        let small = self.mla(ax, zs, ax);
        let (eh, inv) = self.half_exp_abs(ax);
        let large = self.sub(eh, inv);
        let one = self.f(1.0);
        let is_small = self.cmp(FloatCC::LessThan, ax, one);
        let t = self.sel(is_small, small, large);
        self.copy_sign(t, x)
    }

    /// `cosh(x) = e^|x|/2 + 1/(4·e^|x|/2)`: two positive terms, no cancellation.
    fn cosh(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let (eh, inv) = self.half_exp_abs(ax);
        self.add(eh, inv)
    }

    // ---- sin and cos ----

    /// `sin(x)` or `cos(x)` for `|x| ≤ TRIG_MAX` (other lanes: garbage or NaN that
    /// [`Emitter::trig_fallback`] replaces), computed in f64 for both lane types: f32
    /// arguments are widened, which makes a two-part reduction exact and leaves the f32
    /// result one rounding from the f64 one.
    fn sin_cos(&mut self, x: Value, cos: bool) -> Value {
        let terms = self.k;
        if self.k.lane == types::F64 {
            return self.sin_cos64(x, cos, terms);
        }
        let saved = (self.ty, self.int_ty, self.k);
        self.k = &F64_CONSTS;
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        let y = if self.ty.is_vector() {
            (self.ty, self.int_ty) = (types::F64X2, types::I64X2);
            // Lanes 0–1 and 2–3 widened separately, narrowed and put back together.
            let lo = self.b.ins().fvpromote_low(x);
            let xi = self.b.ins().bitcast(types::I64X2, flags, x);
            let upper = self.b.ins().extractlane(xi, 1);
            let upper = self.b.ins().scalar_to_vector(types::I64X2, upper);
            let upper = self.b.ins().bitcast(types::F32X4, flags, upper);
            let hi = self.b.ins().fvpromote_low(upper);
            let ylo = self.sin_cos64(lo, cos, terms);
            let yhi = self.sin_cos64(hi, cos, terms);
            let nlo = self.b.ins().fvdemote(ylo);
            let nhi = self.b.ins().fvdemote(yhi);
            let nlo = self.b.ins().bitcast(types::I64X2, flags, nlo);
            let nhi = self.b.ins().bitcast(types::I64X2, flags, nhi);
            let upper = self.b.ins().extractlane(nhi, 0);
            let both = self.b.ins().insertlane(nlo, upper, 1);
            self.b.ins().bitcast(types::F32X4, flags, both)
        } else {
            (self.ty, self.int_ty) = (types::F64, types::I64);
            let xd = self.b.ins().fpromote(types::F64, x);
            let yd = self.sin_cos64(xd, cos, terms);
            self.b.ins().fdemote(types::F32, yd)
        };
        (self.ty, self.int_ty, self.k) = saved;
        y
    }

    /// [`Emitter::sin_cos`] on f64 operands, with the polynomials of `terms`.
    ///
    /// `x = n·π/2 + r + r_lo` with `n = round(x·2/π)`: `x − n·PIO2[0]` is exact (Sterbenz)
    /// and the next two parts are subtracted exactly (TwoSum), so `r + r_lo` carries about
    /// 100 bits of the reduced argument however close `x` is to a multiple of π/2. Both
    /// `sin(r + r_lo)` and `cos(r + r_lo)` are evaluated, and `n mod 4` picks one and its sign.
    fn sin_cos64(&mut self, x: Value, cos: bool, terms: &'static Consts) -> Value {
        let k = self.k;
        let two_over_pi = self.f(TWO_OVER_PI);
        let magic = self.f(k.magic);
        let t = self.mla(x, two_over_pi, magic);
        let n = self.sub(t, magic);
        let a = self.mla_k(n, -PIO2[0], x);
        let p2 = self.mul_k(n, -PIO2[1]);
        let (s1, e1) = self.two_sum(a, p2);
        let p3 = self.mul_k(n, -PIO2[2]);
        let (s2, e2) = self.two_sum(s1, p3);
        let lo = self.add(e1, e2);
        let lo = self.mla_k(n, -PIO2[3], lo);
        let (r, r_lo) = self.two_sum(s2, lo);
        let z = self.mul(r, r);
        let hz = self.mul_k(z, 0.5);
        // sin(r + r_lo) = r + (r·z·S(z) + r_lo·(1 − z/2)).
        let sp = self.poly(z, terms.sin_p);
        let zs = self.mul(z, sp);
        let rzs = self.mul(r, zs);
        let lhz = self.mul(r_lo, hz);
        let tail = self.sub(r_lo, lhz);
        let tail = self.add(tail, rzs);
        let sin = self.add(r, tail);
        // cos(r + r_lo) = w + (((1 − w) − z/2) + (z²·C(z) − r·r_lo)) with w = 1 − z/2 rounded.
        let cp = self.poly(z, terms.cos_p);
        let z2 = self.mul(z, z);
        let rl = self.mul(r, r_lo);
        let nrl = self.neg(rl);
        let small = self.mla(z2, cp, nrl);
        let one = self.f(1.0);
        let w = self.sub(one, hz);
        let back = self.sub(one, w);
        let back = self.sub(back, hz);
        let corr = self.add(back, small);
        let cosv = self.add(w, corr);
        // Quadrant: the low bits of t are n; cos(x) = sin(x + π/2).
        let q = self.int_bits(t);
        let q = if cos {
            let one_i = self.i(1);
            self.b.ins().iadd(q, one_i)
        } else {
            q
        };
        let one_i = self.i(1);
        let odd = self.b.ins().band(q, one_i);
        let zero_i = self.i(0);
        let odd = Mask(self.b.ins().icmp(IntCC::NotEqual, odd, zero_i));
        let v = self.sel(odd, cosv, sin);
        let two_i = self.i(2);
        let half_turn = self.b.ins().band(q, two_i);
        let sign = self.b.ins().ishl_imm_u(half_turn, 62);
        let vb = self.int_bits(v);
        let vb = self.b.ins().bxor(vb, sign);
        let v = self.float_from_bits(vb);
        // Tiny arguments, ±0 and subnormals: sin x = x, cos x = 1, as rounded.
        let ax = self.abs(x);
        let (tiny, small_value) = if cos { (COS_TINY, one) } else { (SIN_TINY, x) };
        let tiny = self.f(tiny);
        let is_tiny = self.cmp(FloatCC::LessThan, ax, tiny);
        self.sel(is_tiny, small_value, v)
    }

    /// `y` with the lanes whose `|x|` exceeds `TRIG_MAX` replaced by `fallback(x)`, called per
    /// lane in a block that runs only for vectors that have such a lane. Leaves the builder
    /// in a new block, where the result is a block parameter.
    fn trig_fallback(&mut self, x: Value, y: Value, fallback: FuncRef) -> Value {
        let ax = self.abs(x);
        let max = self.f(TRIG_MAX);
        let big = self.cmp(FloatCC::GreaterThan, ax, max);
        let any = if self.ty.is_vector() { self.b.ins().vany_true(big.0) } else { big.0 };
        let slow = self.b.create_block();
        let merge = self.b.create_block();
        let result = self.b.append_block_param(merge, self.ty);
        self.b.ins().brif(any, slow, &[], merge, &[y.into()]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let fixed = if self.ty.is_vector() {
            let mut called = y;
            for lane in 0..self.ty.lane_count() as u8 {
                let xl = self.b.ins().extractlane(x, lane);
                let call = self.b.ins().call(fallback, &[xl]);
                let r = self.b.inst_results(call)[0];
                called = self.b.ins().insertlane(called, r, lane);
            }
            self.sel(big, called, y)
        } else {
            let call = self.b.ins().call(fallback, &[x]);
            self.b.inst_results(call)[0]
        };
        self.b.ins().jump(merge, &[fixed.into()]);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        result
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
