//! The embedding API for Rust trainers: [`Loss`], [`LossBuilder`] and [`Error`].
//!
//! A [`Loss`] is compiled once (from text, a file or a standard-library name) and called
//! every step on borrowed slices; it writes gradients into the caller's buffers and, below
//! [`crate::jit::PARALLEL_ELEMENTS`], allocates nothing per call. It is a cheap handle
//! (`Clone`, `Send + Sync`) to a compiled loss shared through a cache: building the same
//! source with the same options while an earlier `Loss` of it is alive returns that loss.
//! The cache holds only weak references, so it never keeps a dropped loss's kernels.
//!
//! Invariant: nothing here panics on what a caller passes; every problem is an [`Error`].

#[cfg(feature = "ndarray")]
mod arrays;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::diagnostic::Diagnostic;
use crate::eval::{Array, EvalOptions};
use crate::ir::Dtype;
use crate::jit::{Arg, CallError, CallOptions, Data, Element, JitLoss, Outputs};
use crate::program::{Layout, Program, Role};

/// A compiled loss, ready to be called on borrowed slices from any thread.
///
/// Cloning is cheap (a reference count); clones share the kernels.
///
/// # Examples
/// ```
/// use lossc::{Arg, Loss};
///
/// let loss = Loss::new("(p - y)^2")?; // f32, mean reduction
/// let (p, y) = ([1.0f32, 2.0, 3.0], [1.0f32, 0.0, 3.0]);
/// let mut grad = [0.0f32; 3];
/// let value = loss.call(&[Arg::values("p", &p), Arg::values("y", &y)], &mut [&mut grad])?;
/// assert_eq!(value, 4.0 / 3.0);
/// assert_eq!(grad, [0.0, 4.0 / 3.0, 0.0]);
/// # Ok::<(), lossc::Error>(())
/// ```
#[derive(Clone)]
pub struct Loss {
    compiled: Arc<Compiled>,
    /// Where the source came from (a path, a stdlib name, or `<text>`), for messages.
    origin: Arc<str>,
}

/// What the cache shares: the kernels and the text they came from.
struct Compiled {
    jit: JitLoss,
    source: Arc<str>,
}

/// How to build a [`Loss`]: the compute type, parameter overrides, Hessians, stabilization.
///
/// # Examples
/// ```
/// use lossc::{Dtype, LossBuilder};
///
/// let huber = LossBuilder::new().dtype(Dtype::F64).param("delta", 0.5).stdlib("torch/huber_loss")?;
/// assert_eq!(huber.dtype(), Dtype::F64);
/// # Ok::<(), lossc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LossBuilder {
    dtype: Dtype,
    params: Vec<(String, f64)>,
    hessian: bool,
    stabilize: bool,
}

impl Default for LossBuilder {
    fn default() -> Self {
        LossBuilder::new()
    }
}

impl LossBuilder {
    /// f32, the file's parameter defaults, no Hessian, stabilized.
    pub fn new() -> LossBuilder {
        LossBuilder { dtype: Dtype::F32, params: Vec::new(), hessian: false, stabilize: true }
    }

    /// The compute type: every operation rounds to it, and calls take slices of it.
    pub fn dtype(&mut self, dtype: Dtype) -> &mut LossBuilder {
        self.dtype = dtype;
        self
    }

    /// Overrides scalar parameter `name` (`param NAME = ...` in the file). A later value
    /// for the same name wins; a name the loss does not declare is ignored.
    pub fn param(&mut self, name: &str, value: f64) -> &mut LossBuilder {
        self.params.push((name.to_string(), value));
        self
    }

    /// Also compiles the Hessian diagonal (for [`Outputs::hess`]).
    pub fn hessian(&mut self, yes: bool) -> &mut LossBuilder {
        self.hessian = yes;
        self
    }

    /// Rewrites the loss for numerical stability (on by default).
    pub fn stabilize(&mut self, yes: bool) -> &mut LossBuilder {
        self.stabilize = yes;
        self
    }

    /// Compiles loss source text (SPEC §1).
    ///
    /// # Errors
    /// [`ErrorKind::Source`] with every problem found, each with its span in `source`.
    pub fn build(&self, source: &str) -> Result<Loss, Error> {
        self.compile(Arc::from(source), Arc::from("<text>"))
    }

    /// Compiles a standard-library loss by name, e.g. `torch/cross_entropy`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown name; [`ErrorKind::Source`] when a parameter
    /// override breaks a `require` of the file.
    pub fn stdlib(&self, name: &str) -> Result<Loss, Error> {
        let Some(text) = crate::stdlib::source(name) else {
            let mut d = Diagnostic::error_nowhere(format!("no standard-library loss named `{name}`"));
            if let Some(s) = crate::diagnostic::suggest_name(name, crate::stdlib::names()) {
                d = d.with_note(format!("help: did you mean `{s}`?"));
            }
            return Err(Error::new(ErrorKind::NotFound, vec![d]));
        };
        self.compile(Arc::from(text), Arc::from(name))
    }

    /// Reads and compiles a `.loss` file (the library's only file access).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the file cannot be read as UTF-8 text;
    /// [`ErrorKind::Source`] as for [`LossBuilder::build`], the error naming the path.
    pub fn file(&self, path: impl AsRef<Path>) -> Result<Loss, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                vec![Diagnostic::error_nowhere(format!("cannot read {}: {e}", path.display()))],
            )
        })?;
        self.compile(Arc::from(text), Arc::from(path.display().to_string()))
    }

    fn compile(&self, source: Arc<str>, origin: Arc<str>) -> Result<Loss, Error> {
        let key = Key {
            source: Arc::clone(&source),
            dtype: self.dtype,
            params: self.params.iter().map(|(n, v)| (n.clone(), v.to_bits())).collect(),
            hessian: self.hessian,
            stabilize: self.stabilize,
        };
        if let Some(compiled) = cache_get(&key) {
            return Ok(Loss { compiled, origin });
        }
        let options = crate::CompileOptions {
            dtype: self.dtype,
            params: self.params.clone(),
            hessian: self.hessian,
            stabilize: self.stabilize,
        };
        let located = |kind, diags| Error::new(kind, diags).located(&source, &origin);
        let program = crate::compile(&source, &options).map_err(|d| located(ErrorKind::Source, d))?;
        let jit = JitLoss::new(program).map_err(|e| located(ErrorKind::Internal, vec![e.into()]))?;
        let compiled = cache_insert(key, Compiled { jit, source: Arc::clone(&source) });
        Ok(Loss { compiled, origin })
    }
}

impl Loss {
    /// Compiles loss source text with the default options of [`LossBuilder::new`].
    ///
    /// # Errors
    /// As [`LossBuilder::build`].
    pub fn new(source: &str) -> Result<Loss, Error> {
        LossBuilder::new().build(source)
    }

    /// Compiles a standard-library loss with the default options, e.g. `torch/mse_loss`.
    ///
    /// # Errors
    /// As [`LossBuilder::stdlib`].
    pub fn stdlib(name: &str) -> Result<Loss, Error> {
        LossBuilder::new().stdlib(name)
    }

    /// Reads and compiles a `.loss` file with the default options.
    ///
    /// # Errors
    /// As [`LossBuilder::file`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Loss, Error> {
        LossBuilder::new().file(path)
    }

    /// A builder for the other options (dtype, parameters, Hessian, stabilization).
    pub fn builder() -> LossBuilder {
        LossBuilder::new()
    }

    /// The compute type; calls take slices of the matching [`Element`] type.
    pub fn dtype(&self) -> Dtype {
        self.program().dtype
    }

    /// The compiled program (inputs, parameters, reduction, formulas).
    pub fn program(&self) -> &Program {
        self.compiled.jit.program()
    }

    /// The names of the preds, in declaration order: the order of gradient buffers.
    pub fn preds(&self) -> impl Iterator<Item = &str> + '_ {
        self.program().inputs.iter().filter(|i| i.role == Role::Pred).map(|i| i.name.as_str())
    }

    /// The source text the loss was compiled from.
    pub fn source(&self) -> &str {
        &self.compiled.source
    }

    /// The JIT-compiled kernels underneath (the lower-level typed call API).
    pub fn jit(&self) -> &JitLoss {
        &self.compiled.jit
    }

    /// True when both handles share one compiled loss (the cache returned the same one).
    pub fn same_kernels(&self, other: &Loss) -> bool {
        Arc::ptr_eq(&self.compiled, &other.compiled)
    }

    /// Computes the reduced loss with the file's reduction and writes ∂L/∂pred into
    /// `grad`, one buffer per pred in declaration order, each as long as that pred's data
    /// (`&mut []` computes the value only).
    ///
    /// For a loss with a class axis (`[C]` inputs) use [`Loss::call_with`], which takes
    /// the row count. Below [`crate::jit::PARALLEL_ELEMENTS`] elements the call runs on the
    /// calling thread and, once warmed up, allocates nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Data`] for wrong inputs (a missing or unknown input, lengths that do not
    /// match, a failing `require`, an unmasked class index out of range) or wrong buffers
    /// (count, length, or a dtype other than the loss's); the message is the interpreter's.
    pub fn call<T: Element>(&self, args: &[Arg<'_, T>], grad: &mut [&mut [T]]) -> Result<T, Error> {
        let mut out = Outputs { grad, hess: &mut [], loss_items: None };
        self.call_with(args, &CallOptions::default(), &mut out)
    }

    /// The general call: a reduction override, the row count of `[C]` data, B for
    /// `batchmean`, an upstream gradient for `reduce none`, and gradient, Hessian and
    /// per-item loss buffers in `out`. Returns the reduced loss (for `reduce none`, Σ W·l;
    /// the items are in `out.loss_items`).
    ///
    /// # Examples
    /// Cross-entropy over 3 classes with `i64` class indices, 2 rows:
    /// ```
    /// use lossc::{Arg, CallOptions, Loss, Outputs};
    ///
    /// let loss = Loss::stdlib("torch/cross_entropy")?;
    /// let logits = [2.0f32, 0.5, -1.0, 0.0, 0.0, 0.0];
    /// let target = [0i64, 2];
    /// let mut grad = [0.0f32; 6];
    /// let opts = CallOptions { rows: Some(2), ..CallOptions::default() };
    /// let mut out = Outputs { grad: &mut [&mut grad], ..Outputs::default() };
    /// let value = loss.call_with(&[Arg::values("input", &logits), Arg::i64("target", &target)], &opts, &mut out)?;
    /// assert!((value - 0.6700).abs() < 1e-3); // (0.2413 + ln 3) / 2
    /// assert!(grad[0] < 0.0 && grad[5] < 0.0); // the targets' logits go up
    /// # Ok::<(), lossc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Loss::call`]; also a missing row count for `[C]` data, an `upstream` or
    /// `loss_items` of the wrong length, Hessian buffers for a loss built without them.
    pub fn call_with<T: Element>(
        &self,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &mut Outputs<'_, '_, T>,
    ) -> Result<T, Error> {
        match self.compiled.jit.call(args, opts, out) {
            Ok(x) => Ok(T::from_f64(x)),
            Err(CallError::Fatal(d)) => Err(self.error(ErrorKind::Data, d)),
            Err(CallError::Diagnose) => Err(self.error(ErrorKind::Data, self.diagnose(args, opts, out))),
        }
    }

    fn error(&self, kind: ErrorKind, d: Diagnostic) -> Error {
        let kind = if d.message.starts_with("internal") { ErrorKind::Internal } else { kind };
        Error::new(kind, vec![d]).located(&self.compiled.source, &self.origin)
    }

    /// The interpreter's explanation of inputs the typed call rejected (the error path
    /// only: it copies the data).
    fn diagnose<T: Element>(
        &self,
        args: &[Arg<'_, T>],
        opts: &CallOptions<'_, T>,
        out: &Outputs<'_, '_, T>,
    ) -> Diagnostic {
        let prog = self.program();
        let class_len = |a: &Arg<'_, T>| {
            prog.input(a.name)
                .map(|n| &prog.inputs[n as usize])
                .filter(|d| d.layout == Layout::Classes)
                .map(|_| a.data.len())
        };
        // C as the typed call reads it: from the first [C] pred's data and the row count.
        let classes = opts.rows.filter(|r| *r > 0).and_then(|rows| {
            prog.inputs
                .iter()
                .filter(|d| d.layout == Layout::Classes && d.role == Role::Pred)
                .find_map(|d| args.iter().rev().find(|a| a.name == d.name))
                .and_then(class_len)
                .filter(|len| len % rows == 0)
                .map(|len| len / rows)
        });
        let arrays: Vec<(&str, Array)> = args
            .iter()
            .map(|a| {
                let data: Vec<f64> = match a.data {
                    Data::Values(v) => v.iter().map(|x| x.to_f64()).collect(),
                    Data::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
                    #[allow(clippy::cast_precision_loss)]
                    Data::I64(v) => v.iter().map(|x| *x as f64).collect(),
                };
                let len = data.len();
                let shape = match (class_len(a), classes, opts.rows) {
                    (Some(_), Some(c), Some(rows)) if c > 0 && len == rows * c && len != c => vec![rows, c],
                    _ => vec![len],
                };
                (a.name, Array { shape, data })
            })
            .collect();
        let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
        let eval = EvalOptions {
            reduce: opts.reduce,
            grad: !out.grad.is_empty(),
            hess: !out.hess.is_empty(),
            upstream: opts.upstream.map(|u| u.iter().map(|x| x.to_f64()).collect()),
        };
        let jit = &self.compiled.jit;
        let found = match prog.dtype {
            Dtype::F32 => jit.interp_error::<f32>(&refs, &eval),
            Dtype::F64 => jit.interp_error::<f64>(&refs, &eval),
        };
        found.unwrap_or_else(|| match opts.rows {
            Some(rows) => Diagnostic::error_nowhere(format!("the inputs do not fit {rows} rows")),
            None => Diagnostic::error_nowhere("the inputs do not fit together"),
        })
    }
}

impl std::fmt::Debug for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loss")
            .field("origin", &&*self.origin)
            .field("dtype", &self.dtype())
            .field("inputs", &self.program().inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// What went wrong, broadly; the [`Diagnostic`]s say exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The loss text (or a parameter override) does not compile; spans point into it.
    Source,
    /// No such standard-library loss, or the file cannot be read.
    NotFound,
    /// A call's inputs or output buffers are wrong (or a `require` failed on the data).
    Data,
    /// A bug in lossc (Cranelift rejected generated code); please report it.
    Internal,
}

/// An error of the library API: one or more diagnostics, located in the loss's source.
///
/// `Display` prints one line per error, `ORIGIN:LINE:COL: error: MESSAGE` where the
/// diagnostic has a span (as the command line does), `ORIGIN: error: MESSAGE` otherwise.
///
/// # Examples
/// ```
/// use lossc::{ErrorKind, Loss};
///
/// let err = Loss::new("(p - q)^2").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Source);
/// assert_eq!(err.to_string(), "<text>:1:6: error: unknown name `q`");
/// assert_eq!(err.line_col(), Some((1, 6)));
/// ```
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    diagnostics: Vec<Diagnostic>,
    origin: Option<Arc<str>>,
    source: Option<Arc<str>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, diagnostics: Vec<Diagnostic>) -> Error {
        Error { kind, diagnostics, origin: None, source: None }
    }

    fn located(mut self, source: &Arc<str>, origin: &Arc<str>) -> Error {
        self.source = Some(Arc::clone(source));
        self.origin = Some(Arc::clone(origin));
        self
    }

    /// The broad kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Every diagnostic (errors, and warnings that came with them), with spans into
    /// [`Error::source_text`] where they have one.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The loss source the spans point into, when the error concerns a loss.
    pub fn source_text(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// 1-based line and column (in characters) of the first error's span, if it has one.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let d = self.diagnostics.iter().find(|d| d.is_error())?;
        Some(crate::span::line_col(self.source.as_deref()?, d.span?.start))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for d in self.diagnostics.iter().filter(|d| d.is_error()) {
            if !first {
                writeln!(f)?;
            }
            first = false;
            if let Some(origin) = &self.origin {
                write!(f, "{origin}")?;
                if let (Some(text), Some(span)) = (&self.source, d.span) {
                    let (line, col) = crate::span::line_col(text, span.start);
                    write!(f, ":{line}:{col}")?;
                }
                write!(f, ": ")?;
            }
            write!(f, "{d}")?;
        }
        if first {
            write!(f, "error: unknown error")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// What identifies a compiled loss in the cache.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    source: Arc<str>,
    dtype: Dtype,
    params: Vec<(String, u64)>,
    hessian: bool,
    stabilize: bool,
}

type Cache = Mutex<HashMap<Key, Weak<Compiled>>>;

/// Live compiled losses by key. Only weak references: a loss is freed when its last
/// handle is dropped, and its dead entry is pruned at the next insertion.
fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_get(key: &Key) -> Option<Arc<Compiled>> {
    let map = cache().lock().unwrap_or_else(PoisonError::into_inner);
    map.get(key).and_then(Weak::upgrade)
}

/// Inserts `compiled` unless another thread compiled the same key meanwhile (then that
/// one is returned and `compiled` dropped); prunes dead entries first, so the map never
/// holds more than the live losses plus one.
fn cache_insert(key: Key, compiled: Compiled) -> Arc<Compiled> {
    let mut map = cache().lock().unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return live;
    }
    let compiled = Arc::new(compiled);
    map.insert(key, Arc::downgrade(&compiled));
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_len() -> usize {
        cache().lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The same source and options give the same kernels while one handle is alive;
    /// other options or text give others; dropped losses leave the cache.
    #[test]
    fn the_cache_shares_live_losses_and_forgets_dead_ones() {
        let a = Loss::new("softplus(p) - y*p + 0.125").expect("valid");
        let b = Loss::new("softplus(p) - y*p + 0.125").expect("valid");
        assert!(a.same_kernels(&b));
        let c = LossBuilder::new().dtype(Dtype::F64).build("softplus(p) - y*p + 0.125").expect("valid");
        assert!(!a.same_kernels(&c));
        let d = LossBuilder::new().param("unused", 1.0).build("softplus(p) - y*p + 0.125").expect("valid");
        assert!(!a.same_kernels(&d));
        drop((a, b, c, d));
        // Churn: many distinct sources compiled and dropped; the map stays small. Other
        // tests in this binary may hold a few losses of their own at the same time.
        for i in 0..200 {
            let loss = Loss::new(&format!("(p - y)^2 + {i}.5*p")).expect("valid");
            drop(loss);
            assert!(cache_len() <= 16, "the cache holds {} entries after {i} cycles", cache_len());
        }
        let e = Loss::new("softplus(p) - y*p + 0.125").expect("valid");
        let weak = Arc::downgrade(&e.compiled);
        drop(e);
        assert!(weak.upgrade().is_none(), "the cache kept a dropped loss alive");
    }
}
