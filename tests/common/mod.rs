//! Shared test data: formulas covering every function and construct, a deterministic RNG,
//! and input generation following SPEC §1's data layout.

#![allow(dead_code)] // each test crate uses a different part

pub mod gen;

use lossc::eval::Array;
use lossc::program::Layout;
use lossc::Program;

/// How to draw one input.
#[derive(Clone, Copy)]
pub enum Gen {
    /// Uniform in [lo, hi).
    U(f64, f64),
}

pub struct Case {
    pub src: &'static str,
    pub ranges: &'static [(&'static str, Gen)],
}

pub const D: Gen = Gen::U(-2.0, 2.0);

/// Formulas away from kinks at the random points drawn (fixed seed).
pub const CASES: &[Case] = &[
    Case { src: "(p - y)^2", ranges: &[] },
    Case { src: "abs(p - y)", ranges: &[] },
    Case { src: "sign(p)*p^3", ranges: &[] },
    Case { src: "sqrt(p^2 + 1)", ranges: &[] },
    Case { src: "exp(p) - y*p", ranges: &[] },
    Case { src: "log(1 + p^2)", ranges: &[] },
    Case { src: "log1p(p^2) + log(p + 3)", ranges: &[] },
    Case { src: "expm1(p/2)*y", ranges: &[] },
    Case { src: "sin(p)*cos(y*p)", ranges: &[] },
    Case { src: "tanh(p - y)^2", ranges: &[] },
    Case { src: "log(cosh(p - y))", ranges: &[] },
    Case { src: "sigmoid(p)*y + sigmoid(-3*p)^2", ranges: &[] },
    Case { src: "log_sigmoid(p*y)", ranges: &[] },
    Case { src: "softplus(p) - y*p", ranges: &[] },
    Case { src: "relu(p - y)^2 + relu(p)", ranges: &[] },
    Case { src: "square(p) + 1/(p^2 + 1)", ranges: &[] },
    Case { src: "pow(abs(p) + 1, y) + (p^2 + 1)^-1.5", ranges: &[] },
    Case { src: "pow(2, p) + y^p", ranges: &[("y", Gen::U(0.5, 3.0))] },
    Case { src: "maximum(p, y)^2 + minimum(p, 2*y)", ranges: &[] },
    Case { src: "xlogy(y, p^2 + 0.5) + xlogy(p^2, y + 3)", ranges: &[] },
    Case { src: "clamp(p, -0.5, 0.5)^2 + clamp(y, p - 1, p + 1)*p", ranges: &[] },
    Case { src: "where(p > y, p^2, -p) + where(y > 0, 0, exp(p))", ranges: &[] },
    Case { src: "(not (p > 0))*p + (p > 0 and y > 0)*p^2 + (p < -1 or y < 0)*p", ranges: &[] },
    Case { src: "(p >= y)*p + (p <= y)*2*p + (p == y) + (p != y)*p^3", ranges: &[] },
    Case { src: "-p^-2 + 2^-p + -p^2", ranges: &[("p", Gen::U(0.5, 2.0))] },
    Case { src: "pred p\ntarget y\ntarget w\nreduce sum by w\n(p - y)^2*exp(p)", ranges: &[("w", Gen::U(0.0, 2.0))] },
    Case {
        src: "pred p\ntarget y\ntarget w\ntarget d\nreduce mean by w over d\nsoftplus(p*y)",
        ranges: &[("w", Gen::U(0.0, 2.0)), ("d", Gen::U(0.5, 1.0))],
    },
    Case { src: "pred z[C]\ntarget t[C]\nsum(z*t) + sum(z)^2", ranges: &[] },
    Case { src: "pred z[C]\nmean(z^2) + max(z)*min(z)", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\nlogsumexp(z*t) + norm(z)", ranges: &[] },
    Case { src: "pred z[C]\ntarget k: index\nsoftmax(z)[k] + z[k]^2", ranges: &[] },
    Case {
        src: "pred z[C]\ntarget k: index\nparam e = 0.1\nl = -log_softmax(z)\n(1 - e)*l[k] + e*mean(l)",
        ranges: &[],
    },
    Case { src: "pred z[C]\nsum(softmax(z)*log_softmax(z))", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\n(z - t)^2*softmax(z)", ranges: &[] },
    Case { src: "pred a[C]\npred b[C]\n1 - sum(a*b)/(norm(a)*norm(b))", ranges: &[] },
    Case { src: "pred s\npred z[C]\ntarget k: index\ns*logsumexp(z) + s^2*z[k] - exp(s)", ranges: &[] },
    Case { src: "p*batch_sum(y)/batch_sum(y^2) + p^2*batch_sum(1)", ranges: &[] },
    Case { src: "where(batch_all(y > -10), p^2, p) + where(batch_any(y > 10), p, p^3)", ranges: &[] },
    Case {
        src: "pred z[C]\nparam w[C] = 1\ntarget k: index\nsum(w*z^2) + w[k]*z[k]",
        ranges: &[("w", Gen::U(0.5, 2.0))],
    },
    Case { src: "pred z[C]\ntarget k: index\nsum(z)/C + z[k]*C + (k == 1)*z[k]^2 + (k != 0)*max(z)", ranges: &[] },
    Case { src: "param q?\nparam r = 2\npred p\nwhere(given(q), q*p, p^r) + where(given(q), 0, p)", ranges: &[] },
    Case {
        src: "pred z[C]\ntarget t[C]\ntarget w\nreduce mean by w\n(z - t)^2 + z*logsumexp(z)",
        ranges: &[("w", Gen::U(0.5, 2.0))],
    },
    Case { src: "pred p\ntarget y = 0.5\ne = p - y\nlog(cosh(e)) + e^2/2", ranges: &[] },
    Case { src: "pred z[C]\ntarget t[C]\nxlogy(t, softmax(z)) + t*log_softmax(z)", ranges: &[("t", Gen::U(0.0, 1.0))] },
    Case { src: "pred z[C]\ntarget k: index\nmaximum(1 + max(z) - z[k], 0)^2", ranges: &[] },
];

/// Deterministic uniform numbers (SplitMix64).
pub struct Rng(pub u64);

impl gen::Source for Rng {
    fn next(&mut self) -> f64 {
        Rng::next(self)
    }
}

impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub const ROWS: usize = 5;
pub const CLASSES: usize = 4;
pub const ELEMENTS: usize = 7;

pub fn inputs(prog: &Program, case: &Case, rng: &mut Rng) -> Vec<(String, Array)> {
    let rows = if prog.class_axis { ROWS } else { ELEMENTS };
    let mut out = Vec::new();
    for decl in &prog.inputs {
        if !decl.used && decl.layout != Layout::Classes {
            continue;
        }
        let Gen::U(lo, hi) = case.ranges.iter().find(|(n, _)| *n == decl.name).map_or(D, |(_, g)| *g);
        let arr = match decl.layout {
            Layout::Index => Array::vector((0..rows).map(|_| (rng.next() * CLASSES as f64).floor()).collect()),
            Layout::Classes => Array {
                shape: vec![rows, CLASSES],
                data: (0..rows * CLASSES).map(|_| lo + (hi - lo) * rng.next()).collect(),
            },
            Layout::Scalar => Array::vector((0..rows).map(|_| lo + (hi - lo) * rng.next()).collect()),
        };
        out.push((decl.name.clone(), arr));
    }
    out
}

/// The `.json` files of a directory, sorted (none when it cannot be read).
pub fn json_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// How many random cases a test runs: `LOSSC_CASES=N` if set, else `long` with
/// `LOSSC_LONG=1` and `short` without.
pub fn case_count(short: usize, long: usize) -> usize {
    let is_long = std::env::var("LOSSC_LONG").is_ok_and(|v| v == "1");
    std::env::var("LOSSC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(if is_long { long } else { short })
}
