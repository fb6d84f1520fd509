//! Command-line definitions (clap) and the `check`, `eval` and `list` commands; `plot` and `repl` live in their own modules.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::ir::print::Printer;
use lossc::program::{Program, ReduceMode, Role};
use lossc::{compile, CompileOptions, Diagnostic, Dtype};

use crate::render::{Failure, Source};

/// lossc: a compiler for loss functions.
#[derive(Parser, Debug)]
#[command(name = "lossc", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the loss and each gradient as formulas.
    Check {
        /// A `.loss` file or a standard-library name such as `torch/mse_loss`.
        spec: String,
        /// Parameter values, `NAME=NUMBER`.
        #[arg(value_parser = parse_assignment)]
        args: Vec<(String, String)>,
        /// Show the forms before stability rewriting.
        #[arg(long)]
        no_stabilize: bool,
        /// Also print the Hessian diagonal.
        #[arg(long)]
        hess: bool,
    },
    /// Evaluate the loss (and its derivatives) on data.
    Eval {
        /// A `.loss` file or a standard-library name such as `torch/mse_loss`.
        spec: String,
        /// Inputs and parameters: `NAME=NUMBER`, `NAME=1,2,3`, `NAME=FILE.npy` or `NAME=FILE.csv`.
        #[arg(value_parser = parse_assignment)]
        args: Vec<(String, String)>,
        /// Override the file's reduction (its `by`/`over` stay).
        #[arg(long, value_enum)]
        reduce: Option<ReduceArg>,
        /// Compute type.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        /// Also print the gradient of the reduced loss with respect to every pred.
        #[arg(long)]
        grad: bool,
        /// Also print the Hessian diagonal with respect to every pred.
        #[arg(long)]
        hess: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Which engine computes: the Cranelift JIT, the reference interpreter, or the kernel
        /// interpreter (the JIT's math and summation order, bit for bit, without its kernels).
        #[arg(long, value_enum, default_value = "jit")]
        engine: EngineArg,
    },
    /// Time compiling and calling the fused value-and-gradient kernel on data.
    Bench {
        /// A `.loss` file or a standard-library name.
        spec: String,
        /// Inputs and parameters, as for `eval`.
        #[arg(value_parser = parse_assignment)]
        args: Vec<(String, String)>,
        /// Compute type.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Timed calls (default: enough for about a second, at least 5).
        #[arg(long)]
        reps: Option<usize>,
        /// Time the formulas as written, without stability rewriting (what stabilizing costs).
        #[arg(long)]
        no_stabilize: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the standard-library losses.
    List,
    /// Draw each loss and its gradient over a range of one input, overlaid with a legend.
    ///
    /// Writes `plot.svg` in the current directory unless `-o` names another `.svg` or `.png` file.
    Plot {
        /// Losses to overlay (`.loss` files or standard-library names), then the fixed inputs
        /// and parameters, `NAME=VALUE` (a number, a list `1,2,3`, or a data file).
        #[arg(required = true, value_name = "SPEC... NAME=VALUE")]
        items: Vec<String>,
        /// The input that varies, `NAME=LO:HI`; `NAME[K]=LO:HI` varies element K of NAME's data.
        #[arg(long, value_name = "NAME=LO:HI")]
        over: String,
        /// The image to write: `FILE.svg` or `FILE.png` (default `plot.svg`).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Experiment interactively: type a loss, see its gradient, evaluate and plot it.
    Repl,
}

/// `--reduce` words.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(missing_docs)]
pub enum ReduceArg {
    Mean,
    #[value(name = "mean_or_zero")]
    MeanOrZero,
    Sum,
    None,
    Batchmean,
}

impl ReduceArg {
    fn mode(self) -> ReduceMode {
        match self {
            ReduceArg::Mean => ReduceMode::Mean,
            ReduceArg::MeanOrZero => ReduceMode::MeanOrZero,
            ReduceArg::Sum => ReduceMode::Sum,
            ReduceArg::None => ReduceMode::None,
            ReduceArg::Batchmean => ReduceMode::BatchMean,
        }
    }
}

/// `--engine` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)]
pub enum EngineArg {
    Jit,
    Interp,
    KernelInterp,
}

/// `--dtype` words.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(missing_docs)]
pub enum DtypeArg {
    F32,
    F64,
}

pub(crate) fn parse_assignment(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!("expected NAME=VALUE, got `{s}`"));
    };
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(format!("`{name}` is not a valid name in NAME=VALUE"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Runs a parsed command line: `Ok` carries what to print on stdout, `Err` what to
/// print on stderr (exit 1).
pub fn run(cli: Cli) -> Result<String, Failure> {
    let mut out = String::new();
    match cli.command {
        Command::Check { spec, args, no_stabilize, hess } => check(&mut out, &spec, &args, no_stabilize, hess)?,
        Command::Eval { spec, args, reduce, dtype, grad, hess, json, engine } => {
            let dtype = match dtype {
                DtypeArg::F32 => Dtype::F32,
                DtypeArg::F64 => Dtype::F64,
            };
            eval(&mut out, &spec, &args, reduce.map(ReduceArg::mode), dtype, grad, hess, json, engine)?;
        }
        Command::Bench { spec, args, dtype, threads, reps, no_stabilize, json } => {
            let dtype = match dtype {
                DtypeArg::F32 => Dtype::F32,
                DtypeArg::F64 => Dtype::F64,
            };
            let how = BenchHow { dtype, threads, reps, stabilize: !no_stabilize, json };
            bench(&mut out, &spec, &args, &how)?;
        }
        Command::List => list(&mut out),
        Command::Plot { items, over, output } => crate::plot::command(&mut out, &items, &over, output.as_deref())?,
        Command::Repl => crate::repl::run()?,
    }
    Ok(out)
}

/// Reads SPEC: a file path, or a standard-library name.
pub(crate) fn load_source(spec: &str) -> Result<Source, Failure> {
    let path = Path::new(spec);
    if path.is_file() {
        let text =
            std::fs::read(path).map_err(|e| Failure::plain(format!("{spec}: error: cannot read the file: {e}")))?;
        let text = String::from_utf8(text)
            .map_err(|_| Failure::plain(format!("{spec}: error: the file is not UTF-8 text")))?;
        return Ok(Source { name: spec.to_string(), text });
    }
    let name = spec.strip_suffix(".loss").unwrap_or(spec);
    if let Some(text) = lossc::stdlib::source(name) {
        return Ok(Source { name: format!("losses/{name}.loss"), text: text.to_string() });
    }
    let mut msg = format!("error: no file or standard-library loss named `{spec}`");
    if let Some(s) = lossc::diagnostic::suggest_name(name, lossc::stdlib::names()) {
        msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
    } else if path.extension().is_some()
        || spec.contains('/') && !spec.starts_with("torch/") && !spec.starts_with("keras/")
    {
        msg.push_str("\nnote: the path does not exist");
    } else {
        msg.push_str("\nhelp: `lossc list` shows the standard library");
    }
    Err(Failure::plain(msg))
}

/// Splits NAME=VALUE arguments into scalar numbers (params or broadcast inputs) and data.
pub(crate) fn numbers(args: &[(String, String)]) -> Vec<(String, f64)> {
    args.iter().filter_map(|(n, v)| lossc::data::parse_number(v).map(|x| (n.clone(), x))).collect()
}

fn compile_spec(
    src: &Source,
    args: &[(String, String)],
    dtype: Dtype,
    hessian: bool,
    stabilize: bool,
) -> Result<Program, Failure> {
    let options = CompileOptions { dtype, params: numbers(args), hessian, stabilize };
    let prog = compile(&src.text, &options).map_err(|diags| Failure::source(src.clone(), diags))?;
    crate::render::warnings(src, &prog.warnings);
    check_args(&prog, args)?;
    Ok(prog)
}

/// Every NAME must be a parameter or an input of `prog`, and a parameter takes a number.
pub(crate) fn check_args(prog: &Program, args: &[(String, String)]) -> Result<(), Failure> {
    for (name, value) in args {
        let is_param = prog.params.iter().any(|p| &p.name == name);
        let is_input = prog.input(name).is_some();
        if is_param && lossc::data::parse_number(value).is_none() {
            return Err(Failure::plain(format!("error: parameter `{name}` takes a single number, not `{value}`")));
        }
        if !is_param && !is_input {
            let mut known: Vec<&str> = prog.params.iter().map(|p| p.name.as_str()).collect();
            known.extend(prog.inputs.iter().map(|i| i.name.as_str()));
            let mut msg = format!("error: the loss has no input or parameter named `{name}`");
            if let Some(s) = lossc::diagnostic::suggest_name(name, known.iter().copied()) {
                msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
            } else if known.is_empty() {
                msg.push_str("\nnote: the loss takes no inputs or parameters");
            } else {
                msg.push_str(&format!(
                    "\nnote: it takes {}",
                    known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            return Err(Failure::plain(msg));
        }
    }
    Ok(())
}

fn check(
    out: &mut String,
    spec: &str,
    args: &[(String, String)],
    no_stabilize: bool,
    hess: bool,
) -> Result<(), Failure> {
    let src = load_source(spec)?;
    let prog = compile_spec(&src, args, Dtype::F64, hess, !no_stabilize)?;
    let text = describe(&prog);
    if no_stabilize {
        let raw = text.lines().filter(|l| !l.starts_with("# stability rewrites")).collect::<Vec<_>>().join("\n");
        out.push_str(&raw);
        out.push_str("\n# stability rewriting: off (--no-stabilize): the formulas as written\n");
    } else {
        out.push_str(&text);
    }
    Ok(())
}

/// The text `check` prints: declarations, the loss, its reduction and the derivatives.
pub fn describe(prog: &Program) -> String {
    let mut out = String::new();
    for input in &prog.inputs {
        let role = match input.role {
            Role::Pred => "pred",
            Role::Target => "target",
            Role::VectorParam => "param",
        };
        let layout = match input.layout {
            lossc::program::Layout::Scalar => "",
            lossc::program::Layout::Classes => "[C]",
            lossc::program::Layout::Index => ": index",
        };
        let default = input.default.map(|d| format!(" = {}", lossc::ir::print::number(d))).unwrap_or_default();
        out.push_str(&format!("{role} {}{layout}{default}\n", input.name));
    }
    for p in &prog.params {
        let opt = if p.optional { "?" } else { "" };
        out.push_str(&format!("param {}{opt} = {}\n", p.name, lossc::ir::print::number(p.value)));
    }
    let per = match (prog.class_axis, prog.loss_kind) {
        (true, lossc::ir::Kind::Class) => "one loss per class of each row",
        (true, _) => "one loss per row",
        _ => "one loss per element",
    };
    let one = prog.graph.constant(prog.weight) == Some(1.0);
    let mut reduce = format!("reduce {}", prog.reduce.name());
    if !one {
        reduce.push_str(" by w");
    }
    if prog.over != prog.weight {
        reduce.push_str(" over d");
    }
    out.push_str(&format!("{reduce}   # {per}\n"));
    let names = |n: u16| prog.inputs[n as usize].name.clone();
    let mut roots = vec![("loss".to_string(), prog.loss)];
    if !one {
        roots.push(("w".to_string(), prog.weight));
    }
    if prog.over != prog.weight {
        roots.push(("d".to_string(), prog.over));
    }
    for d in &prog.derivs {
        roots.push((format!("grad {}", names(d.input)), d.grad));
    }
    for d in &prog.derivs {
        if let Some(h) = d.hess {
            roots.push((format!("hess {}", names(d.input)), h));
        }
    }
    out.push_str(&Printer::new(&prog.graph, &names).print(&roots));
    out.push_str("# seed: 1/Σd for mean, 1/B for batchmean, 1 for sum, the upstream gradient for none\n");
    out.push_str(&describe_rewrites(prog));
    out
}

/// The list of stability rewrites that fired (canonicalizations are only counted).
fn describe_rewrites(prog: &Program) -> String {
    use lossc::stabilize::Phase;
    let mut out = String::new();
    let shown: Vec<_> = prog.rewrites.iter().filter(|r| r.phase != Phase::Canonicalize).collect();
    let n_canon = prog.rewrites.len() - shown.len();
    let canon = match n_canon {
        0 => String::new(),
        1 => " (and 1 exact canonicalization)".to_string(),
        n => format!(" (and {n} exact canonicalizations)"),
    };
    if shown.is_empty() {
        out.push_str(&format!("# stability rewrites: none{canon}\n"));
        return out;
    }
    out.push_str(&format!("# stability rewrites: {}{canon}\n", shown.len()));
    for r in shown {
        let place = match r.stage {
            lossc::stabilize::Stage::Loss => String::new(),
            stage => format!(" (in the {})", stage.name()),
        };
        out.push_str(&format!("#   {} {}{place}: {} → {}\n", r.id, r.rule, r.before, r.after));
        let inputs = if r.inputs.is_empty() { String::new() } else { format!(" (protects {})", r.inputs.join(", ")) };
        out.push_str(&format!("#     {}{inputs}\n", r.reason));
    }
    out
}

#[allow(clippy::too_many_arguments)] // one per command-line option
fn eval(
    out_text: &mut String,
    spec: &str,
    args: &[(String, String)],
    reduce: Option<ReduceMode>,
    dtype: Dtype,
    grad: bool,
    hess: bool,
    json: bool,
    engine: EngineArg,
) -> Result<(), Failure> {
    let src = load_source(spec)?;
    let prog = compile_spec(&src, args, dtype, hess, true)?;
    let arrays = input_arrays(&prog, args)?;
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let opts = EvalOptions { reduce, grad, hess, upstream: None };
    let result = match engine {
        EngineArg::Interp => evaluate(&prog, &refs, &opts),
        EngineArg::KernelInterp => lossc::eval::evaluate_with(lossc::eval::Mode::Kernel, &prog, &refs, &opts),
        EngineArg::Jit => {
            lossc::jit::JitLoss::new(prog).map_err(Diagnostic::from).and_then(|jit| jit.evaluate(&refs, &opts))
        }
    };
    let out =
        result.map_err(|d| if d.span.is_some() { Failure::source(src.clone(), vec![d]) } else { Failure::diag(d) })?;
    let fmt = |x: f64| format_number(x, dtype);
    if json {
        let mut s = String::from("{\"loss\": ");
        match &out.loss {
            LossValue::Scalar(x) => s.push_str(&json_number(*x, dtype)),
            LossValue::PerItem(v) => s.push_str(&json_array(v, dtype)),
        }
        for (key, list) in [("grad", &out.grad), ("hess", &out.hess)] {
            if (key == "grad" && grad) || (key == "hess" && hess) {
                s.push_str(&format!(", \"{key}\": {{"));
                let items: Vec<String> =
                    list.iter().map(|(n, v)| format!("\"{n}\": {}", json_array(v, dtype))).collect();
                s.push_str(&items.join(", "));
                s.push('}');
            }
        }
        s.push('}');
        let _ = writeln!(out_text, "{s}");
    } else {
        match &out.loss {
            LossValue::Scalar(x) => {
                let _ = writeln!(out_text, "loss = {}", fmt(*x));
            }
            LossValue::PerItem(v) => {
                let _ = writeln!(out_text, "loss = [{}]", v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(", "));
            }
        }
        for (n, v) in &out.grad {
            let _ = writeln!(out_text, "grad {n} = [{}]", v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(", "));
        }
        for (n, v) in &out.hess {
            let _ = writeln!(out_text, "hess {n} = [{}]", v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(", "));
        }
    }
    Ok(())
}

/// How `lossc bench` runs (its flags).
#[derive(Clone, Copy)]
struct BenchHow {
    dtype: Dtype,
    threads: Option<usize>,
    reps: Option<usize>,
    /// Stability rewriting on (`--no-stabilize` turns it off).
    stabilize: bool,
    json: bool,
}

fn bench(out: &mut String, spec: &str, args: &[(String, String)], how: &BenchHow) -> Result<(), Failure> {
    use std::time::Instant;
    let src = load_source(spec)?;
    let BenchHow { dtype, threads, reps, stabilize, json } = *how;
    let prog = compile_spec(&src, args, dtype, false, stabilize)?;
    let arrays = input_arrays(&prog, args)?;
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let elements: usize = prog
        .preds()
        .map(|p| arrays.iter().find(|(n, _)| *n == prog.inputs[p as usize].name).map_or(0, |(_, a)| a.data.len()))
        .sum();
    // Compile time: source text to a callable value-and-gradient kernel (the quick tier),
    // median of several; then the background optimizer's work for that kernel, timed here.
    let options = CompileOptions { dtype, params: numbers(args), hessian: false, stabilize };
    let mut compile_times = Vec::new();
    let mut optimize_times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let p = compile(&src.text, &options).map_err(|d| Failure::source(src.clone(), d))?;
        let jit = lossc::jit::JitLoss::new_quick(p).map_err(|e| Failure::diag(e.into()))?;
        compile_times.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        jit.optimize_now().map_err(|e| Failure::diag(e.into()))?;
        optimize_times.push(t.elapsed().as_secs_f64() * 1e6);
        drop(jit);
    }
    let jit = lossc::jit::JitLoss::new_quick(prog).map_err(|e| Failure::diag(e.into()))?;
    let n_threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()
        .map_err(|e| Failure::plain(format!("error: cannot start {n_threads} threads: {e}")))?;
    // Validate once through the checked path (same diagnostics as eval).
    let opts = EvalOptions { reduce: None, grad: true, hess: false, upstream: None };
    jit.evaluate(&refs, &opts).map_err(Failure::diag)?;
    let rows = jit.rows(&refs).map_err(Failure::diag)?;
    // Calls are timed on the optimized kernels (what a trainer runs after its first steps).
    jit.optimize_now().map_err(|e| Failure::diag(e.into()))?;
    let mut call_times = match dtype {
        Dtype::F32 => time_calls::<f32>(&jit, &arrays, rows, reps, &pool)?,
        Dtype::F64 => time_calls::<f64>(&jit, &arrays, rows, reps, &pool)?,
    };
    let reps = call_times.len();
    let compile_us = median(&mut compile_times);
    let optimize_us = median(&mut optimize_times);
    let call_us = median(&mut call_times);
    if json {
        let _ = writeln!(
            out,
            "{{\"compile_us\": {compile_us:.1}, \"call_us\": {call_us:.3}, \"elements\": {elements}, \"threads\": {n_threads}, \"optimize_us\": {optimize_us:.1}}}"
        );
    } else {
        let _ = writeln!(out, "compile: {compile_us:.1} µs (median of {}) to a callable kernel", compile_times.len());
        let _ = writeln!(out, "         {optimize_us:.1} µs more for the optimized kernel (in the background)");
        let _ = writeln!(out, "call:    {call_us:.3} µs (median of {reps}), {elements} elements, {n_threads} threads");
        if elements > 0 {
            let _ = writeln!(out, "         {:.3} ns per element", call_us * 1e3 / elements as f64);
        }
    }
    Ok(())
}

/// Times the typed value-and-gradient call on data converted once, with buffers allocated once.
fn time_calls<T: lossc::math::Real + lossc::jit::Element>(
    jit: &lossc::jit::JitLoss,
    arrays: &[(String, Array)],
    rows: usize,
    reps: Option<usize>,
    pool: &rayon::ThreadPool,
) -> Result<Vec<f64>, Failure> {
    use lossc::jit::{Arg, CallOptions, Data, Outputs};
    use std::time::Instant;
    let prog = jit.program();
    let typed: Vec<(String, Vec<T>)> =
        arrays.iter().map(|(n, a)| (n.clone(), a.data.iter().map(|x| T::from_f64(*x)).collect())).collect();
    let args: Vec<Arg<'_, T>> = typed.iter().map(|(n, v)| Arg { name: n, data: Data::Values(v) }).collect();
    let len =
        |input: u16| typed.iter().find(|(n, _)| *n == prog.inputs[input as usize].name).map_or(1, |(_, v)| v.len());
    let mut grads: Vec<Vec<T>> = prog.derivs.iter().map(|d| vec![T::ZERO; len(d.input)]).collect();
    let batch = None;
    let call_opts = CallOptions { reduce: None, rows: Some(rows), batch, upstream: None };
    let small = typed.iter().map(|(_, v)| v.len()).max().unwrap_or(0) < lossc::jit::PARALLEL_ELEMENTS;
    let mut grad_refs: Vec<&mut [T]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
    let mut once = || -> Result<f64, Failure> {
        let mut out = Outputs { grad: &mut grad_refs, hess: &mut [], loss_items: None };
        let t = Instant::now();
        // Small calls run on the calling thread anyway; handing them to the pool would
        // only add a thread wake-up to every call.
        let r = if small {
            jit.call(&args, &call_opts, &mut out)
        } else {
            pool.install(|| jit.call(&args, &call_opts, &mut out))
        };
        let us = t.elapsed().as_secs_f64() * 1e6;
        r.map_err(|_| Failure::plain("error: the benchmark call failed".to_string()))?;
        Ok(us)
    };
    let first = once()?;
    let reps = reps.unwrap_or_else(|| ((1e6 / first.max(0.1)) as usize).clamp(5, 20_000));
    (0..reps).map(|_| once()).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The data of every NAME=VALUE that is not a scalar parameter, loaded.
fn input_arrays(prog: &Program, args: &[(String, String)]) -> Result<Vec<(String, Array)>, Failure> {
    let mut arrays = Vec::new();
    for (name, value) in args {
        if prog.params.iter().any(|p| &p.name == name) {
            continue;
        }
        arrays.push((name.clone(), parse_value(value).map_err(Failure::diag)?));
    }
    Ok(arrays)
}

/// A VALUE: a number, a comma-separated list, or a data file.
pub(crate) fn parse_value(value: &str) -> Result<Array, Diagnostic> {
    if let Some(x) = lossc::data::parse_number(value) {
        return Ok(Array::scalar(x));
    }
    if value.contains(',') {
        let parts: Vec<Option<f64>> = value.split(',').map(lossc::data::parse_number).collect();
        if parts.iter().all(Option::is_some) {
            return Ok(Array::vector(parts.into_iter().flatten().collect()));
        }
    }
    lossc::data::load(&PathBuf::from(value))
}

/// The shortest text that reads back to the same value of the dtype.
pub fn format_number(x: f64, dtype: Dtype) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let mut buf = ryu::Buffer::new();
    #[allow(clippy::cast_possible_truncation)]
    let s = match dtype {
        Dtype::F32 => buf.format_finite(x as f32),
        Dtype::F64 => buf.format_finite(x),
    };
    s.to_string()
}

fn json_number(x: f64, dtype: Dtype) -> String {
    if x.is_finite() {
        format_number(x, dtype)
    } else {
        format!("\"{}\"", format_number(x, dtype))
    }
}

fn json_array(v: &[f64], dtype: Dtype) -> String {
    let items: Vec<String> = v.iter().map(|x| json_number(*x, dtype)).collect();
    format!("[{}]", items.join(", "))
}

fn list(out: &mut String) {
    let names: Vec<&str> = lossc::stdlib::names().collect();
    if names.is_empty() {
        let _ = writeln!(out, "the standard library is empty in this build");
        return;
    }
    for name in names {
        let Some(text) = lossc::stdlib::source(name) else { continue };
        let options = CompileOptions { dtype: Dtype::F64, params: Vec::new(), hessian: false, stabilize: true };
        match compile(text, &options) {
            Ok(prog) => {
                let params: Vec<String> = prog
                    .params
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.default.map_or("?".to_string(), lossc::ir::print::number)))
                    .collect();
                let inputs: Vec<&str> = prog.inputs.iter().map(|i| i.name.as_str()).collect();
                let _ = writeln!(out, "{name:<40} inputs: {:<28} params: {}", inputs.join(" "), params.join(" "));
            }
            Err(_) => {
                let _ = writeln!(out, "{name:<40} (does not compile)");
            }
        }
    }
}
