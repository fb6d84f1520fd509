//! `lossc repl` (binary only): type a loss, see what it compiles to, evaluate and plot it.
//!
//! A line that is not a command defines the current loss (declarations alone are kept
//! until an expression completes them); a line starting with `:` is a meta-command from
//! the one table `COMMANDS`. Every handler returns a [`Reply`]; a mistake is a rendered
//! diagnostic, never the end of the session. Ctrl-C cancels the line, Ctrl-D ends.
//!
//! Line editing, history and completion come from rustyline. History is kept only for
//! interactive sessions, in `$LOSSC_HISTORY`, else `$XDG_DATA_HOME/lossc/history`, else
//! `~/.local/share/lossc/history`. Colour is used only when stdout is a terminal and
//! `NO_COLOR` is unset.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::ir::print::Printer;
use lossc::program::{Layout, Program, Role};
use lossc::syntax::ast;
use lossc::{compile, CompileOptions, Dtype};

use crate::plot::{self, Panel, Range};
use crate::render::{Failure, Source};

/// The name diagnostics give to text typed at the prompt.
const TYPED: &str = "<repl>";

/// What a command or an entry produced.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    /// Output for stdout (may be empty).
    Text(String),
    /// A rendered diagnostic for stderr; the session goes on.
    Error(String),
    /// End the session.
    Quit,
}

impl From<Result<String, String>> for Reply {
    fn from(res: Result<String, String>) -> Reply {
        match res {
            Ok(text) => Reply::Text(text),
            Err(text) => Reply::Error(text),
        }
    }
}

/// A meta-command: `:name args`.
struct Command {
    name: &'static str,
    aliases: &'static [&'static str],
    args: &'static str,
    help: &'static str,
    run: fn(&mut Session, &str) -> Reply,
}

/// Every meta-command, in the order `:help` lists them.
const COMMANDS: &[Command] = &[
    Command {
        name: "eval",
        aliases: &["e"],
        args: "NAME=VALUE...",
        help: "evaluate the loss and its gradient (values: numbers, lists 1,2,3, or .npy/.csv files)",
        run: |s, a| s.evaluate(a, Want::Loss).into(),
    },
    Command {
        name: "grad",
        aliases: &["g"],
        args: "[NAME=VALUE...]",
        help: "the gradient formulas; with values, the gradient at them",
        run: |s, a| s.derivative(a, Want::Grad).into(),
    },
    Command {
        name: "hess",
        aliases: &[],
        args: "[NAME=VALUE...]",
        help: "the Hessian-diagonal formulas; with values, the Hessian diagonal at them",
        run: |s, a| s.derivative(a, Want::Hess).into(),
    },
    Command {
        name: "set",
        aliases: &[],
        args: "[NAME=VALUE...]",
        help: "keep inputs and parameters for later commands (no arguments: list them)",
        run: |s, a| s.set(a).into(),
    },
    Command {
        name: "unset",
        aliases: &[],
        args: "[NAME...]",
        help: "forget kept values (no arguments: all of them)",
        run: |s, a| s.unset(a).into(),
    },
    Command {
        name: "load",
        aliases: &["l"],
        args: "FILE|STDLIB-NAME",
        help: "make a .loss file or a standard-library loss (e.g. torch/huber_loss) the current loss",
        run: |s, a| s.load(a).into(),
    },
    Command {
        name: "save",
        aliases: &[],
        args: "FILE",
        help: "write the current loss's source to FILE",
        run: |s, a| s.save(a).into(),
    },
    Command {
        name: "show",
        aliases: &[],
        args: "",
        help: "print the current loss's source",
        run: |s, _| s.show().into(),
    },
    Command {
        name: "plot",
        aliases: &["p"],
        args: "NAME=LO:HI [NAME=VALUE...]",
        help: "draw the loss and its gradient over a range of one input, in the terminal",
        run: |s, a| s.plot(a).into(),
    },
    Command {
        name: "bench",
        aliases: &[],
        args: "[N]",
        help: "time value+gradient on a generated batch of N elements (default 65536)",
        run: |s, a| s.bench(a).into(),
    },
    Command {
        name: "reset",
        aliases: &[],
        args: "",
        help: "drop declarations typed but not yet completed by a loss expression",
        run: |s, _| s.reset().into(),
    },
    Command { name: "help", aliases: &["h", "?"], args: "", help: "this list", run: |s, _| Reply::Text(s.help()) },
    Command {
        name: "quit",
        aliases: &["q", "exit"],
        args: "",
        help: "leave (Ctrl-D does too)",
        run: |_, _| Reply::Quit,
    },
];

/// What `:eval`, `:grad` and `:hess` print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Loss,
    Grad,
    Hess,
}

/// The current loss: its text and its compiled form (f64, with parameters as last compiled).
struct Loss {
    src: Source,
    prog: Program,
}

/// Everything a session remembers.
pub(crate) struct Session {
    current: Option<Loss>,
    /// Declarations typed without a loss expression yet.
    pending: String,
    /// `:set` values: name, text as typed, parsed value.
    kept: Vec<(String, String, Array)>,
    colour: bool,
    /// Terminal width, for plots.
    width: usize,
}

impl Session {
    pub(crate) fn new(colour: bool) -> Session {
        Session { current: None, pending: String::new(), kept: Vec::new(), colour, width: 80 }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Handles one entry: a command or loss text.
    pub(crate) fn handle(&mut self, entry: &str) -> Reply {
        let entry = entry.trim();
        if entry.is_empty() {
            return Reply::Text(String::new());
        }
        let Some(rest) = entry.strip_prefix(':') else { return self.define(entry).into() };
        let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        match COMMANDS.iter().find(|c| c.name == name || c.aliases.contains(&name)) {
            Some(cmd) => (cmd.run)(self, args.trim()),
            None => {
                let mut msg = format!("error: unknown command `:{name}`");
                if let Some(s) = lossc::diagnostic::suggest_name(name, COMMANDS.iter().map(|c| c.name)) {
                    msg.push_str(&format!("\nhelp: did you mean `:{s}`?"));
                }
                msg.push_str("\nnote: `:help` lists the commands");
                Reply::Error(msg)
            }
        }
    }

    /// Names worth completing: the current loss's inputs and parameters, and kept values.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if let Some(loss) = &self.current {
            names.extend(loss.prog.inputs.iter().map(|i| i.name.clone()));
            names.extend(loss.prog.params.iter().map(|p| p.name.clone()));
        }
        names.extend(self.kept.iter().map(|(n, _, _)| n.clone()));
        names.sort();
        names.dedup();
        names
    }

    fn help(&self) -> String {
        let mut out = String::from(
            "Type a loss to make it the current one: an expression over p (prediction) and y (target),\n\
             e.g. `(p - y)^2`, or declarations then an expression (`pred x; target t; param k = 2; k*(x - t)^2`).\n\
             Declarations typed alone are kept until an expression follows. An open bracket or a trailing `\\`\n\
             continues the entry on the next line. Numbers are computed in f64.\n\nCommands:\n",
        );
        for c in COMMANDS {
            let usage = if c.args.is_empty() { format!(":{}", c.name) } else { format!(":{} {}", c.name, c.args) };
            let _ = writeln!(out, "  {} {}", self.paint("1", &format!("{usage:<34}")), c.help);
        }
        out.push_str("Tab completes commands, functions, names and standard-library losses; Ctrl-C cancels a line.\n");
        out
    }

    fn current(&self) -> Result<&Loss, String> {
        self.current.as_ref().ok_or_else(|| {
            "error: there is no loss yet\nhelp: type one, e.g. `(p - y)^2`, or load one, e.g. `:load torch/huber_loss`"
                .to_string()
        })
    }

    /// Kept values that are numbers, as parameter values for compiling.
    fn params(&self, extra: &[(String, String)]) -> Vec<(String, f64)> {
        let mut params: Vec<(String, f64)> = self
            .kept
            .iter()
            .filter(|(_, _, a)| a.data.len() == 1 && a.shape.is_empty())
            .map(|(n, _, a)| (n.clone(), a.data[0]))
            .collect();
        params.extend(crate::cli::numbers(extra));
        params
    }

    fn compile(
        &self,
        src: &Source,
        extra: &[(String, String)],
        dtype: Dtype,
        hessian: bool,
    ) -> Result<Program, String> {
        let options = CompileOptions { dtype, params: self.params(extra), hessian, stabilize: true };
        compile(&src.text, &options).map_err(|d| Failure::source(src.clone(), d).text().to_string())
    }

    /// The rendered warnings of `prog`.
    fn warnings(&self, src: &Source, prog: &Program) -> String {
        let mut out = String::new();
        for d in prog.warnings.iter().filter(|d| !d.is_error()) {
            out.push_str(&self.paint("33", crate::render::render(src, d).trim_end()));
            out.push('\n');
        }
        out
    }

    /// Loss text: kept as declarations, or compiled into the current loss.
    fn define(&mut self, entry: &str) -> Result<String, String> {
        let text = join_continued_lines(entry);
        let text = if self.pending.is_empty() { text } else { format!("{}\n{text}", self.pending) };
        let (file, diags) = lossc::syntax::parse(&text);
        let complete = matches!(file.stmts.last(), Some(ast::Stmt::Expr(_)));
        if !diags.iter().any(lossc::Diagnostic::is_error) && !complete && !file.stmts.is_empty() {
            self.pending = text;
            return Ok("(declarations kept: now type the loss expression, or :reset to drop them)\n".to_string());
        }
        let src = Source { name: TYPED.to_string(), text };
        let prog = self.compile(&src, &[], Dtype::F64, false)?;
        self.pending.clear();
        let out = self.describe(&src, &prog);
        self.current = Some(Loss { src, prog });
        Ok(out)
    }

    /// `check`'s description of a loss, with colour.
    fn describe(&self, src: &Source, prog: &Program) -> String {
        let mut out = self.warnings(src, prog);
        for line in crate::cli::describe(prog).lines() {
            match line.split_once(" = ") {
                _ if line.starts_with('#') => out.push_str(&self.paint("2", line)),
                Some((label, rest)) if label == "loss" || label.starts_with("grad ") || label.starts_with("hess ") => {
                    out.push_str(&self.paint("1;36", label));
                    out.push_str(" = ");
                    out.push_str(rest);
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    /// Parses `NAME=VALUE` words.
    fn assignments(words: &str) -> Result<Vec<(String, String)>, String> {
        words
            .split_whitespace()
            .map(|w| match crate::cli::parse_assignment(w) {
                Ok((name, value)) if value.is_empty() => Err(format!("error: `{name}=` needs a value")),
                Ok(arg) => Ok(arg),
                Err(e) => Err(format!("error: {e}")),
            })
            .collect()
    }

    /// Kept values the current loss knows, overridden by `given`.
    fn values_for(&self, prog: &Program, given: &[(String, String)]) -> Vec<(String, String)> {
        let knows = |n: &str| prog.input(n).is_some() || prog.params.iter().any(|p| p.name == n);
        let mut all: Vec<(String, String)> = self
            .kept
            .iter()
            .filter(|(n, _, _)| knows(n) && !given.iter().any(|(g, _)| g == n))
            .map(|(n, raw, _)| (n.clone(), raw.clone()))
            .collect();
        all.extend(given.iter().cloned());
        all
    }

    /// The inputs among `values`, parsed.
    fn arrays(&self, prog: &Program, values: &[(String, String)]) -> Result<Vec<(String, Array)>, String> {
        let mut arrays = Vec::new();
        for (name, raw) in values {
            if prog.input(name).is_none() {
                continue;
            }
            let kept = self.kept.iter().find(|(n, r, _)| n == name && r == raw).map(|(_, _, a)| a.clone());
            let arr = match kept {
                Some(a) => a,
                None => crate::cli::parse_value(raw).map_err(|d| Failure::diag(d).text().to_string())?,
            };
            arrays.push((name.clone(), arr));
        }
        Ok(arrays)
    }

    fn evaluate(&mut self, args: &str, want: Want) -> Result<String, String> {
        let loss = self.current()?;
        let given = Self::assignments(args)?;
        crate::cli::check_args(&loss.prog, &given).map_err(|f| f.text().to_string())?;
        let values = self.values_for(&loss.prog, &given);
        let prog = self.compile(&loss.src, &values, Dtype::F64, want == Want::Hess)?;
        let arrays = self.arrays(&prog, &values)?;
        let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let opts = EvalOptions { reduce: None, grad: want != Want::Hess, hess: want == Want::Hess, upstream: None };
        let ev = evaluate(&prog, &refs, &opts).map_err(|d| {
            if d.span.is_some() {
                Failure::source(loss.src.clone(), vec![d]).text().to_string()
            } else {
                Failure::diag(d).text().to_string()
            }
        })?;
        let num = |x: f64| crate::cli::format_number(x, Dtype::F64);
        let list = |v: &[f64]| format!("[{}]", v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", "));
        let mut out = String::new();
        if want == Want::Loss {
            let value = match &ev.loss {
                LossValue::Scalar(x) => num(*x),
                LossValue::PerItem(v) => list(v),
            };
            let _ = writeln!(out, "{} = {value}", self.paint("1;36", "loss"));
        }
        let derivs = if want == Want::Hess { &ev.hess } else { &ev.grad };
        let word = if want == Want::Hess { "hess" } else { "grad" };
        for (name, v) in derivs {
            let _ = writeln!(out, "{} = {}", self.paint("1;36", &format!("{word} {name}")), list(v));
        }
        Ok(out)
    }

    /// `:grad` / `:hess`: formulas, or values when given any.
    fn derivative(&mut self, args: &str, want: Want) -> Result<String, String> {
        if !args.is_empty() {
            return self.evaluate(args, want);
        }
        let loss = self.current()?;
        let prog = self.compile(&loss.src, &[], Dtype::F64, want == Want::Hess)?;
        let names = |n: u16| prog.inputs[n as usize].name.clone();
        let roots: Vec<(String, lossc::ir::NodeId)> = prog
            .derivs
            .iter()
            .filter_map(|d| match want {
                Want::Hess => d.hess.map(|h| (format!("hess {}", names(d.input)), h)),
                _ => Some((format!("grad {}", names(d.input)), d.grad)),
            })
            .collect();
        if roots.is_empty() {
            return Ok("the loss has no pred, so nothing is differentiated\n".to_string());
        }
        let text = Printer::new(&prog.graph, &names).print(&roots);
        let mut out = String::new();
        for line in text.lines() {
            match line.split_once(" = ") {
                Some((label, rest)) if label.starts_with("grad ") || label.starts_with("hess ") => {
                    let _ = writeln!(out, "{} = {rest}", self.paint("1;36", label));
                }
                _ => {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let note = "# seed: 1/Σd for mean, 1/B for batchmean, 1 for sum, the upstream gradient for none";
        let _ = writeln!(out, "{}", self.paint("2", note));
        Ok(out)
    }

    fn set(&mut self, args: &str) -> Result<String, String> {
        if args.is_empty() {
            if self.kept.is_empty() {
                return Ok("nothing is set; `:set NAME=VALUE` keeps a value for later commands\n".to_string());
            }
            return Ok(self.kept.iter().map(|(n, raw, _)| format!("{n} = {raw}\n")).collect());
        }
        let given = Self::assignments(args)?;
        let mut parsed = Vec::new();
        for (name, raw) in given {
            let arr = crate::cli::parse_value(&raw).map_err(|d| Failure::diag(d).text().to_string())?;
            parsed.push((name, raw, arr));
        }
        let mut out = String::new();
        for (name, raw, arr) in parsed {
            if let Some(loss) = &self.current {
                let prog = &loss.prog;
                if prog.input(&name).is_none() && !prog.params.iter().any(|p| p.name == name) {
                    let _ = writeln!(out, "note: the current loss has no input or parameter `{name}`; kept for later");
                }
            }
            let _ = writeln!(out, "{name} = {raw}");
            self.kept.retain(|(n, _, _)| *n != name);
            self.kept.push((name, raw, arr));
        }
        Ok(out)
    }

    fn unset(&mut self, args: &str) -> Result<String, String> {
        if args.is_empty() {
            self.kept.clear();
            return Ok("forgot every kept value\n".to_string());
        }
        for name in args.split_whitespace() {
            if !self.kept.iter().any(|(n, _, _)| n == name) {
                return Err(format!("error: `{name}` is not set"));
            }
            self.kept.retain(|(n, _, _)| n != name);
        }
        Ok(String::new())
    }

    fn load(&mut self, args: &str) -> Result<String, String> {
        if args.is_empty() {
            return Err(
                "error: `:load` needs a .loss file or a standard-library name, e.g. `:load torch/mse_loss`".to_string()
            );
        }
        let src = crate::cli::load_source(args).map_err(|f| f.text().to_string())?;
        let prog = self.compile(&src, &[], Dtype::F64, false)?;
        self.pending.clear();
        let mut out = format!("{}\n", self.paint("2", &format!("# {}", src.name)));
        out.push_str(&self.describe(&src, &prog));
        self.current = Some(Loss { src, prog });
        Ok(out)
    }

    fn save(&mut self, args: &str) -> Result<String, String> {
        let loss = self.current()?;
        if args.is_empty() {
            return Err("error: `:save` needs a file name, e.g. `:save my.loss`".to_string());
        }
        let mut text = loss.src.text.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        std::fs::write(args, text).map_err(|e| format!("error: cannot write `{args}`: {e}"))?;
        Ok(format!("saved the current loss to {args}\n"))
    }

    fn show(&mut self) -> Result<String, String> {
        let loss = self.current()?;
        let mut out = loss.src.text.trim_end().to_string();
        out.push('\n');
        if !self.pending.is_empty() {
            let _ = writeln!(out, "{}", self.paint("2", "# typed, waiting for a loss expression:"));
            let _ = writeln!(out, "{}", self.pending);
        }
        Ok(out)
    }

    fn reset(&mut self) -> Result<String, String> {
        if self.pending.is_empty() {
            return Ok("nothing to drop\n".to_string());
        }
        self.pending.clear();
        Ok("dropped the declarations\n".to_string())
    }

    fn plot(&mut self, args: &str) -> Result<String, String> {
        let loss = self.current()?;
        let mut words = args.split_whitespace();
        let Some(first) = words.next() else {
            return Err("error: `:plot` needs a range, e.g. `:plot p=-3:3 y=0`".to_string());
        };
        let range = Range::parse(first).map_err(|f| f.text().to_string())?;
        let given = Self::assignments(&words.collect::<Vec<_>>().join(" "))?;
        crate::cli::check_args(&loss.prog, &given).map_err(|f| f.text().to_string())?;
        let values = self.values_for(&loss.prog, &given);
        let prog = self.compile(&loss.src, &values, Dtype::F64, false)?;
        let fixed = self.arrays(&prog, &values)?;
        let label = loss.src.name.clone();
        let curve = plot::sample(&loss.src, &prog, &range, &fixed, &label).map_err(|f| f.text().to_string())?;
        let x = range.label();
        let width = self.width.saturating_sub(16).clamp(20, 100);
        let bounds = (range.lo, range.hi);
        let mut out = String::new();
        let loss_panel = Panel { title: format!("loss L over {x}"), series: vec![(&label, &curve.xs, &curve.loss)] };
        out.push_str(&plot::draw_braille(&loss_panel, &x, bounds, (width, 10), self.colour));
        if let Some(grad) = &curve.grad {
            let panel = Panel { title: format!("gradient ∂L/∂{x}"), series: vec![(&label, &curve.xs, grad)] };
            out.push_str(&plot::draw_braille(&panel, &x, bounds, (width, 8), self.colour));
        } else {
            let _ = writeln!(out, "note: `{}` is not a pred, so there is no gradient curve", range.name);
        }
        if let Some(gap) = &curve.gap {
            let _ = writeln!(out, "note: {gap}");
        }
        Ok(out)
    }

    fn bench(&mut self, args: &str) -> Result<String, String> {
        let loss = self.current()?;
        let n = match args {
            "" => 65536,
            a => match a.parse::<usize>() {
                Ok(n) if (1..=10_000_000).contains(&n) => n,
                _ => return Err(format!("error: `:bench` takes a number of elements from 1 to 10000000, not `{a}`")),
            },
        };
        let values = self.values_for(&loss.prog, &[]);
        let prog = self.compile(&loss.src, &values, Dtype::F32, false)?;
        let kept = self.arrays(&prog, &values)?;
        let (data, what) = bench_data(&prog, &kept, n)?;
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let opts = EvalOptions { reduce: None, grad: true, hess: false, upstream: None };
        let compile_started = Instant::now();
        let jit = lossc::jit::JitLoss::new(prog).map_err(|e| format!("error: {e}"))?;
        let compile_time = compile_started.elapsed();
        // Time the optimized kernels (the background optimizer's), after a first call has
        // compiled every kernel the data needs.
        jit.evaluate(&refs, &opts).map_err(|d| Failure::diag(d).text().to_string())?;
        jit.optimize_now().map_err(|e| format!("error: {e}"))?;
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < 3 || (started.elapsed() < Duration::from_millis(500) && times.len() < 50) {
            let t = Instant::now();
            jit.evaluate(&refs, &opts).map_err(|d| Failure::diag(d).text().to_string())?;
            times.push(t.elapsed());
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        times.sort();
        let median = times[times.len() / 2];
        let per = median.as_secs_f64() * 1e9 / n as f64;
        let mut out = String::new();
        let _ = writeln!(out, "engine: Cranelift JIT, f32 (kernel compiled in {})", format_duration(compile_time));
        let _ = writeln!(out, "data:   {what}");
        let _ = writeln!(
            out,
            "time:   {} per value+gradient call, {per:.1} ns per element (median of {} runs)",
            self.paint("1", &format_duration(median)),
            times.len()
        );
        Ok(out)
    }
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Generated inputs for `:bench`: `n` values per pred (rows × 10 classes with a class
/// axis), kept values where set. Targets are tried as uniform numbers, then 0/1 labels,
/// then ±1 labels, until the loss's requirements hold.
fn bench_data(prog: &Program, kept: &[(String, Array)], n: usize) -> Result<(Vec<(String, Array)>, String), String> {
    let classes = if prog.class_axis { 10 } else { 1 };
    let rows = (n / classes).max(1);
    let mut last_error = String::new();
    for (kind, label) in [(0, "uniform in (0.05, 0.95)"), (1, "0/1 labels"), (2, "±1 labels")] {
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            // xorshift64*: deterministic, good enough for benchmark data.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut data: Vec<(String, Array)> = kept.to_vec();
        for decl in &prog.inputs {
            if !decl.used || decl.default.is_some() || kept.iter().any(|(k, _)| *k == decl.name) {
                continue;
            }
            let len = match decl.layout {
                Layout::Classes => rows * classes,
                Layout::Scalar | Layout::Index => rows,
            };
            let mut value = |_| match (decl.role, decl.layout) {
                (_, Layout::Index) => (next() * classes as f64).floor(),
                (Role::Target, _) if kind == 1 => (next() < 0.5) as u8 as f64,
                (Role::Target, _) if kind == 2 => {
                    if next() < 0.5 {
                        -1.0
                    } else {
                        1.0
                    }
                }
                (Role::VectorParam, _) => 0.5 + next(),
                _ => 0.05 + 0.9 * next(),
            };
            let values: Vec<f64> = (0..len).map(&mut value).collect();
            let shape = if decl.layout == Layout::Classes { vec![rows, classes] } else { vec![rows] };
            data.push((decl.name.clone(), Array { shape, data: values }));
        }
        let refs: Vec<(&str, &Array)> = data.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let opts = EvalOptions { reduce: None, grad: false, hess: false, upstream: None };
        match evaluate(prog, &refs, &opts) {
            Ok(_) => {
                let shape = if prog.class_axis {
                    format!("{rows} rows × {classes} classes")
                } else {
                    format!("{rows} elements")
                };
                return Ok((data, format!("{shape}; preds uniform in (0.05, 0.95), targets {label}")));
            }
            Err(d) if d.message.starts_with("requirement failed") => last_error = d.message,
            Err(d) => return Err(Failure::diag(d).text().to_string()),
        }
    }
    Err(format!(
        "error: no generated data satisfies the loss's requirements ({last_error})\nhelp: `:set` the targets yourself"
    ))
}

/// Replaces each backslash-newline with a space.
fn join_continued_lines(text: &str) -> String {
    text.replace("\\\r\n", " ").replace("\\\n", " ")
}

/// True while an entry needs another line: an open bracket or a trailing backslash.
fn incomplete(text: &str) -> bool {
    if text.trim_start().starts_with(':') {
        return false;
    }
    if text.trim_end_matches([' ', '\t']).ends_with('\\') {
        return true;
    }
    let (mut depth, mut in_string, mut in_comment, mut escaped) = (0i32, false, false, false);
    for c in text.chars() {
        if in_comment {
            in_comment = c != '\n';
        } else if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else {
            match c {
                '#' => in_comment = true,
                '"' => in_string = true,
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                _ => {}
            }
        }
    }
    depth > 0
}

/// Words starting statements, for completion.
const KEYWORDS: &[&str] = &["pred", "target", "param", "require", "reduce", "index", "by", "over", "and", "or", "not"];

/// rustyline's view of the session: completion and multi-line validation.
struct ReplHelper {
    names: Vec<String>,
    files: FilenameCompleter,
}

impl ReplHelper {
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let before = &line[..pos];
        let pair = |s: String, suffix: &str| Pair { display: s.clone(), replacement: format!("{s}{suffix}") };
        if let Some(cmd) = before.strip_prefix(':') {
            let Some((cmd, _)) = cmd.split_once(char::is_whitespace) else {
                let found =
                    COMMANDS.iter().filter(|c| c.name.starts_with(cmd)).map(|c| pair(format!(":{}", c.name), " "));
                return (0, found.collect());
            };
            let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
            let word = &before[start..];
            return match cmd {
                "load" | "l" => {
                    let mut found: Vec<Pair> = lossc::stdlib::names()
                        .filter(|n| n.starts_with(word))
                        .map(|n| pair(n.to_string(), ""))
                        .collect();
                    if let Ok((file_start, files)) = self.files.complete_path(line, pos) {
                        if file_start == start || found.is_empty() {
                            found.extend(files);
                            return (file_start.min(start), found);
                        }
                    }
                    (start, found)
                }
                "save" => self.files.complete_path(line, pos).unwrap_or((start, Vec::new())),
                "unset" => {
                    (start, self.names.iter().filter(|n| n.starts_with(word)).map(|n| pair(n.clone(), " ")).collect())
                }
                "eval" | "e" | "grad" | "g" | "hess" | "set" | "plot" | "p" => {
                    (start, self.names.iter().filter(|n| n.starts_with(word)).map(|n| pair(n.clone(), "=")).collect())
                }
                _ => (start, Vec::new()),
            };
        }
        let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return (start, Vec::new());
        }
        let mut found: Vec<Pair> = lossc::ir::lower::function_names()
            .filter(|f| f.starts_with(word))
            .map(|f| pair(f.to_string(), "("))
            .collect();
        found.extend(KEYWORDS.iter().filter(|k| k.starts_with(word)).map(|k| pair(k.to_string(), " ")));
        found.extend(self.names.iter().filter(|n| n.starts_with(word)).map(|n| pair(n.clone(), "")));
        found.sort_by(|a, b| a.display.cmp(&b.display));
        found.dedup_by(|a, b| a.display == b.display);
        (start, found)
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if incomplete(ctx.input()) { ValidationResult::Incomplete } else { ValidationResult::Valid(None) })
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, default: bool) -> Cow<'b, str> {
        let _ = default;
        Cow::Borrowed(prompt)
    }
}

impl Helper for ReplHelper {}

/// Where history lives: `$LOSSC_HISTORY` (empty: none), else the user's data directory.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LOSSC_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let data = std::env::var_os("XDG_DATA_HOME")
        .and_then(nonempty)
        .or_else(|| std::env::var_os("HOME").and_then(nonempty).map(|h| h.join(".local").join("share")))?;
    Some(data.join("lossc").join("history"))
}

/// Colour only for a terminal, and never when `NO_COLOR` is set or the terminal is dumb.
fn use_colour() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

fn print_error(text: &str, colour: bool) {
    let mut err = std::io::stderr().lock();
    for line in text.trim_end().lines() {
        let code = if line.contains("error:") && !line.starts_with(' ') {
            Some("1;31")
        } else if line.starts_with("help:") || line.starts_with("note:") {
            Some("36")
        } else {
            None
        };
        let _ = match code {
            Some(code) if colour => writeln!(err, "\x1b[{code}m{line}\x1b[0m"),
            _ => writeln!(err, "{line}"),
        };
    }
}

/// Runs the session until `:quit` or end of input.
pub(crate) fn run() -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    let colour = use_colour();
    let start_error = |e: ReadlineError| Failure::plain(format!("error: cannot start the line editor: {e}"));
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_dups(true)
        .map_err(start_error)?
        .max_history_size(1000)
        .map_err(start_error)?
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ReplHelper, FileHistory> = Editor::with_config(config).map_err(start_error)?;
    editor.set_helper(Some(ReplHelper { names: Vec::new(), files: FilenameCompleter::new() }));
    let history = if interactive { history_path() } else { None };
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    let mut session = Session::new(colour);
    if interactive {
        let title = format!("lossc {}", env!("CARGO_PKG_VERSION"));
        println!(
            "{} — type a loss such as `(p - y)^2`; :help lists the commands, Ctrl-D leaves",
            session.paint("1", &title)
        );
    }
    let mut stdout = std::io::stdout();
    loop {
        if let Some((cols, _)) = editor.dimensions() {
            session.width = cols as usize;
        }
        let names = session.names();
        if let Some(helper) = editor.helper_mut() {
            helper.names = names;
        }
        let prompt = if session.pending.is_empty() { "lossc> " } else { "lossc+ " };
        let styled = session.paint("1;32", prompt);
        match editor.readline(&(prompt, styled.as_str())) {
            Ok(line) => {
                if interactive && !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match session.handle(&line) {
                    Reply::Text(text) => {
                        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
                    }
                    Reply::Error(text) => print_error(&text, colour),
                    Reply::Quit => break,
                }
            }
            // Ctrl-C cancels the line being typed.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                print_error(&format!("error: cannot read the input: {e}"), colour);
                break;
            }
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = editor.save_history(path) {
            print_error(&format!("warning: cannot save the history to {}: {e}", path.display()), colour);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs entries through a session without colour; returns what each printed.
    fn run(entries: &[&str]) -> Vec<Reply> {
        let mut session = Session::new(false);
        entries.iter().map(|e| session.handle(e)).collect()
    }

    fn text(reply: &Reply) -> &str {
        match reply {
            Reply::Text(t) | Reply::Error(t) => t,
            Reply::Quit => "<quit>",
        }
    }

    #[test]
    fn define_evaluate_and_differentiate() {
        let replies = run(&["maximum(1 - y*p, 0)^2", ":eval p=0.5,2 y=1", ":grad", ":set y=1", ":eval p=0.5", ":q"]);
        assert!(text(&replies[0]).contains("loss = t2^2") && text(&replies[0]).contains("grad p = "), "{replies:?}");
        assert_eq!(text(&replies[1]), "loss = 0.125\ngrad p = [-0.5, -0.0]\n");
        assert!(text(&replies[2]).starts_with("where\n") && text(&replies[2]).contains("grad p = "), "{replies:?}");
        assert_eq!(text(&replies[4]), "loss = 0.25\ngrad p = [-1.0]\n");
        assert_eq!(replies[5], Reply::Quit);
    }

    #[test]
    fn declarations_wait_for_an_expression_and_params_follow_set() {
        let replies = run(&[
            "pred x; target t",
            "param k = 2",
            "k*(x - t)^2",
            ":eval x=3 t=1",
            ":set k=0.5",
            ":eval x=3 t=1",
            ":hess x=3 t=1",
        ]);
        assert!(text(&replies[0]).starts_with("(declarations kept"), "{replies:?}");
        assert!(text(&replies[2]).contains("param k = 2"), "{replies:?}");
        assert_eq!(text(&replies[3]), "loss = 8.0\ngrad x = [8.0]\n");
        assert_eq!(text(&replies[5]), "loss = 2.0\ngrad x = [2.0]\n");
        assert_eq!(text(&replies[6]), "hess x = [1.0]\n");
    }

    #[test]
    fn mistakes_are_diagnostics_and_the_session_goes_on() {
        let replies =
            run(&["(p - y", "(p - q)^2", ":eval p=1", ":frob", "(p - y)^2", ":eval p=1 y=2 z=3", ":eval p=3 y=1"]);
        assert!(matches!(&replies[0], Reply::Error(t) if t.starts_with("<repl>:1:")), "{replies:?}");
        assert!(matches!(&replies[1], Reply::Error(t) if t.contains("unknown name")), "{replies:?}");
        assert!(matches!(&replies[2], Reply::Error(t) if t.contains("no loss yet")), "{replies:?}");
        assert!(matches!(&replies[3], Reply::Error(t) if t.contains("unknown command `:frob`")), "{replies:?}");
        assert!(matches!(&replies[5], Reply::Error(t) if t.contains("no input or parameter named `z`")), "{replies:?}");
        assert_eq!(text(&replies[6]), "loss = 4.0\ngrad p = [4.0]\n");
        let replies = run(&["(p - y)^2", ":set p=", ":set 1p=2", ":unset zz", ":bench 0", ":load"]);
        for (reply, message) in
            replies.iter().skip(1).zip(["needs a value", "not a valid name", "not set", "from 1 to", "needs a .loss"])
        {
            assert!(matches!(reply, Reply::Error(t) if t.contains(message)), "{message}: {reply:?}");
        }
    }

    #[test]
    fn load_plot_save_and_bench() {
        let dir = std::env::temp_dir().join(format!("lossc-repl-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let saved = dir.join("saved.loss");
        let replies = run(&[
            ":load torch/huber_loss",
            ":plot input=-3:3 target=0",
            &format!(":save {}", saved.display()),
            ":bench 200",
            ":plot target=-1:1 input=0",
            ":plot delta=0:1",
        ]);
        assert!(text(&replies[0]).contains("param delta = 1"), "{replies:?}");
        let plot = text(&replies[1]);
        assert!(plot.contains("loss L over input") && plot.contains("gradient ∂L/∂input"), "{plot}");
        assert!(plot.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)), "{plot}");
        assert!(std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("huber")));
        assert!(text(&replies[3]).starts_with("engine: Cranelift JIT"), "{replies:?}");
        assert!(text(&replies[4]).contains("no gradient curve"), "{replies:?}");
        assert!(matches!(&replies[5], Reply::Error(t) if t.contains("is a parameter")), "{replies:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn continuation_and_completion() {
        assert!(incomplete("maximum(1 - y*p,"));
        assert!(incomplete("1 + \\"));
        assert!(!incomplete("maximum(1 - y*p, 0)"));
        assert!(!incomplete("p # (unbalanced in a comment"));
        assert!(!incomplete(":eval p=(1"));
        assert!(!incomplete("require p > 0, \"(\"\np"));
        assert_eq!(join_continued_lines("1 + \\\n2"), "1 +  2");
        let helper = ReplHelper { names: vec!["delta".into(), "input".into()], files: FilenameCompleter::new() };
        let shown = |line: &str| -> Vec<String> {
            helper.candidates(line, line.len()).1.into_iter().map(|p| p.replacement).collect()
        };
        assert_eq!(shown(":ev"), vec![":eval "]);
        assert_eq!(shown("sigm"), vec!["sigmoid("]);
        assert_eq!(shown("(del"), vec!["delta"]);
        assert_eq!(shown(":eval in"), vec!["input="]);
        assert!(shown(":load torch/hu").contains(&"torch/huber_loss".to_string()));
    }
}
