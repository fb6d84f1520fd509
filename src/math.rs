//! Scalar semantics of every elementwise operation, generic over f32 and f64.
//!
//! The interpreter and constant folding both call [`apply_unary`], [`apply_binary`] and
//! [`apply_ternary`], so a folded constant is bitwise the value the interpreter would
//! compute in the same dtype. Fused functions use their stable textbook forms.

use crate::ir::Op;

/// The float operations the semantics need, for `f32` and `f64`.
pub trait Real: Copy + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Rounds an f64 to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
    /// `+`
    fn add(self, o: Self) -> Self;
    /// `-`
    fn sub(self, o: Self) -> Self;
    /// `*`
    fn mul(self, o: Self) -> Self;
    /// `/`
    fn div(self, o: Self) -> Self;
    /// unary `-`
    fn neg(self) -> Self;
    /// e^x
    fn exp(self) -> Self;
    /// natural log
    fn ln(self) -> Self;
    /// log(1+x)
    fn ln_1p(self) -> Self;
    /// e^x - 1
    fn exp_m1(self) -> Self;
    /// square root
    fn sqrt(self) -> Self;
    /// sine
    fn sin(self) -> Self;
    /// cosine
    fn cos(self) -> Self;
    /// hyperbolic tangent
    fn tanh(self) -> Self;
    /// hyperbolic cosine
    fn cosh(self) -> Self;
    /// hyperbolic sine
    fn sinh(self) -> Self;
    /// a^b
    fn powf(self, o: Self) -> Self;
    /// |x|
    fn abs(self) -> Self;
    /// NaN test.
    fn is_nan(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[allow(clippy::cast_possible_truncation)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn neg(self) -> Self {
                -self
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            fn powf(self, o: Self) -> Self {
                <$t>::powf(self, o)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

fn truth<T: Real>(b: bool) -> T {
    if b {
        T::ONE
    } else {
        T::ZERO
    }
}

/// Nonzero (NaN included) is true.
pub fn is_true<T: Real>(x: T) -> bool {
    x != T::ZERO
}

/// `maximum` with NaN propagation; a tie returns `a`.
pub fn maximum<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a.add(b)
    } else if b > a {
        b
    } else {
        a
    }
}

/// `minimum` with NaN propagation; a tie returns `a`.
pub fn minimum<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a.add(b)
    } else if b < a {
        b
    } else {
        a
    }
}

/// The logistic function, accurate for large negative x.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE.div(T::ONE.add(x.neg().exp()))
    } else {
        let e = x.exp();
        e.div(T::ONE.add(e))
    }
}

/// log(1 + e^x) without overflow or cancellation.
pub fn softplus<T: Real>(x: T) -> T {
    maximum(x, T::ZERO).add(x.abs().neg().exp().ln_1p())
}

/// log(sigmoid(x)) = -softplus(-x).
pub fn log_sigmoid<T: Real>(x: T) -> T {
    minimum(x, T::ZERO).sub(x.abs().neg().exp().ln_1p())
}

/// Applies a unary elementwise op.
pub fn apply_unary<T: Real>(op: Op, x: T) -> T {
    match op {
        Op::Neg => x.neg(),
        Op::Abs => x.abs(),
        Op::Sign => {
            if x.is_nan() {
                x
            } else if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                T::ONE.neg()
            } else {
                T::ZERO
            }
        }
        Op::Sqrt => x.sqrt(),
        Op::Exp => x.exp(),
        Op::Log => x.ln(),
        Op::Log1p => x.ln_1p(),
        Op::Expm1 => x.exp_m1(),
        Op::Sin => x.sin(),
        Op::Cos => x.cos(),
        Op::Tanh => x.tanh(),
        Op::Cosh => x.cosh(),
        Op::Sinh => x.sinh(),
        Op::Sigmoid => sigmoid(x),
        Op::LogSigmoid => log_sigmoid(x),
        Op::Softplus => softplus(x),
        Op::Relu => {
            if x.is_nan() || x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        Op::Square => x.mul(x),
        Op::Not => truth(!is_true(x)),
        Op::StopGradient => x,
        _ => x.add(T::from_f64(f64::NAN)),
    }
}

/// Applies a binary elementwise op.
pub fn apply_binary<T: Real>(op: Op, a: T, b: T) -> T {
    match op {
        Op::Add => a.add(b),
        Op::Sub => a.sub(b),
        Op::Mul => a.mul(b),
        Op::Div => a.div(b),
        Op::Pow => pow(a, b),
        Op::Max => maximum(a, b),
        Op::Min => minimum(a, b),
        Op::Xlogy => {
            if a == T::ZERO && !b.is_nan() {
                T::ZERO
            } else {
                a.mul(b.ln())
            }
        }
        Op::Lt => truth(a < b),
        Op::Le => truth(a <= b),
        Op::Gt => truth(a > b),
        Op::Ge => truth(a >= b),
        Op::Eq => truth(a == b),
        Op::Ne => truth(a != b),
        Op::And => truth(is_true(a) && is_true(b)),
        Op::Or => truth(is_true(a) || is_true(b)),
        Op::StraightThrough => a,
        _ => a.add(T::from_f64(f64::NAN)),
    }
}

/// a^b; small integral exponents are exact products, as in PyTorch.
fn pow<T: Real>(a: T, b: T) -> T {
    if b == T::from_f64(2.0) {
        a.mul(a)
    } else if b == T::ONE {
        a
    } else if b == T::from_f64(0.5) {
        a.sqrt()
    } else {
        a.powf(b)
    }
}

/// Applies a ternary elementwise op.
pub fn apply_ternary<T: Real>(op: Op, a: T, b: T, c: T) -> T {
    match op {
        Op::Where => {
            if is_true(a) {
                b
            } else {
                c
            }
        }
        Op::Clamp => minimum(maximum(a, b), c),
        _ => a.add(T::from_f64(f64::NAN)),
    }
}
