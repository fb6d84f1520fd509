//! A generator of random well-formed losses, shared by the differential test
//! (`tests/jit.rs`, seeded) and the `generated` fuzz target (choices from fuzzer bytes),
//! which includes this file by path. It depends on nothing but std.

/// Where the generator's choices come from: numbers uniform in [0, 1).
pub trait Source {
    /// The next number in [0, 1).
    fn next(&mut self) -> f64;
}

/// A random well-formed loss: bounded subexpressions (squashed through tanh, sigmoid or
/// softplus of bounded arguments) so that differences are rounding, not overflow.
pub struct Gen<S> {
    source: S,
}

impl<S: Source> Gen<S> {
    /// A generator drawing its choices from `source`.
    pub fn new(source: S) -> Self {
        Gen { source }
    }

    /// The source of choices, back (the fuzz target reads leftover bytes from it).
    pub fn into_source(self) -> S {
        self.source
    }

    fn pick(&mut self, n: usize) -> usize {
        ((self.source.next() * n as f64) as usize).min(n - 1)
    }

    fn leaf(&mut self, names: &[&str]) -> String {
        match self.pick(4) {
            0 => format!("{:.3}", 0.25 + 1.5 * self.source.next()),
            _ => names[self.pick(names.len())].to_string(),
        }
    }

    /// An expression with values of moderate size over `names`.
    fn expr(&mut self, depth: u32, names: &[&str]) -> String {
        if depth == 0 {
            return self.leaf(names);
        }
        let a = self.expr(depth - 1, names);
        let b = self.expr(depth - 1, names);
        match self.pick(22) {
            0 => format!("({a} + {b})"),
            1 => format!("({a} - {b})"),
            2 => format!("({a} * {b})"),
            3 => format!("({a} / (1 + square({b})))"),
            4 => format!("tanh({a})"),
            5 => format!("sigmoid({a})"),
            6 => format!("softplus({a})"),
            7 => format!("log_sigmoid({a})"),
            8 => format!("exp(tanh({a}))"),
            9 => format!("log(1 + square({a}))"),
            10 => format!("log1p(square({a}))"),
            11 => format!("expm1(tanh({a}))"),
            12 => format!("sqrt(1 + square({a}))"),
            13 => format!("abs({a})"),
            14 => format!("maximum({a}, {b})"),
            15 => format!("minimum({a}, {b})"),
            // A threshold that is a constant: comparing two random expressions that happen to be
            // equal over the reals (log1p(x) against log(1 + x)) lets 1-ulp differences between
            // the engines' math pick different branches (seen once in 20,000 cases).
            16 => format!("where({a} > {:.3}, {a}, 0.5*{b})", 2.0 * self.source.next() - 1.0),
            17 => format!("clamp({a}, -1, 1)"),
            18 => format!("relu({a})"),
            19 => format!("xlogy(square({a}), 1 + square({b}))"),
            20 => format!("sin({a})*cos({b})"),
            _ => format!("pow(1 + square({a}), tanh({b}))"),
        }
    }

    /// A whole loss file: per element, per row with row functions, or per row with a class axis.
    pub fn loss(&mut self) -> String {
        let depth = 1 + self.pick(4) as u32;
        match self.pick(3) {
            0 => self.expr(depth, &["p", "y"]),
            1 => {
                // Row functions need a row-valued argument: make sure z is in it.
                let inner = format!("({} + z)", self.expr(depth, &["z", "t"]));
                let row = match self.pick(6) {
                    0 => format!("sum({inner})"),
                    1 => format!("logsumexp({inner})"),
                    2 => format!("max({inner}) + min({inner})"),
                    3 => format!("norm({inner})"),
                    4 => format!("-log_softmax({inner})[k]"),
                    _ => format!("mean(softmax({inner})*({inner}))"),
                };
                format!("pred z[C]\ntarget t[C]\ntarget k: index\n{row}")
            }
            _ => {
                let inner = self.expr(depth, &["z", "t", "s"]);
                format!("pred z[C]\npred s\ntarget t[C]\n{inner}")
            }
        }
    }
}
