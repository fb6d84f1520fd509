//! `lossc plot` and the REPL's `:plot` (binary only): a loss and its gradient along one input.
//!
//! `sample` evaluates a compiled loss with the reference interpreter at evenly spaced
//! values of one input while every other input stays fixed, giving the curves
//! x ↦ L and x ↦ ∂L/∂x. `chart` draws curves into an SVG or PNG file with plotters;
//! `braille` draws them into the terminal.
//!
//! Invariant: a point where the loss cannot be evaluated (a failing `require`, say) is a
//! gap in the curve, never an error, unless no point of the range can be evaluated.

mod braille;
mod chart;

use std::fmt::Write as _;
use std::path::Path;

use lossc::eval::{evaluate, Array, EvalOptions, LossValue};
use lossc::program::{Layout, Program, ReduceMode, Role};
use lossc::{compile, CompileOptions, Diagnostic, Dtype};

use crate::render::{Failure, Source};

pub(crate) use braille::{draw as draw_braille, Panel};
pub(crate) use chart::Format;

/// Points sampled along a range, ends included.
pub(crate) const POINTS: usize = 401;

/// Where `lossc plot` writes without `-o`.
pub(crate) const DEFAULT_OUTPUT: &str = "plot.svg";

/// The varying input: `NAME=LO:HI`, or `NAME[K]=LO:HI` for element K of NAME's data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Range {
    /// The input's name.
    pub name: String,
    /// The element that varies (flat, row-major), when NAME has data of its own.
    pub element: Option<usize>,
    /// Start of the range.
    pub lo: f64,
    /// End of the range (greater than `lo`).
    pub hi: f64,
}

impl Range {
    /// Parses `NAME=LO:HI` or `NAME[K]=LO:HI`.
    pub fn parse(text: &str) -> Result<Range, Failure> {
        let bad = |why: &str| {
            Failure::plain(format!(
                "error: bad range `{text}`: {why}\nhelp: write NAME=LO:HI, e.g. `input=-3:3` (or `input[0]=-3:3` for one element)"
            ))
        };
        let Some((lhs, rhs)) = text.split_once('=') else { return Err(bad("no `=`")) };
        let (name, element) = match lhs.split_once('[') {
            Some((name, rest)) => {
                let k = rest.strip_suffix(']').and_then(|k| k.trim().parse::<usize>().ok());
                let Some(k) = k else { return Err(bad("the element must be `[K]` with K a whole number")) };
                (name, Some(k))
            }
            None => (lhs, None),
        };
        let name = name.trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(bad(&format!("`{name}` is not a name")));
        }
        // `-3:-1` splits at the colon; a leading minus belongs to LO.
        let Some((lo, hi)) = rhs.split_once(':') else { return Err(bad("no `:` between LO and HI")) };
        let (Some(lo), Some(hi)) = (lossc::data::parse_number(lo.trim()), lossc::data::parse_number(hi.trim())) else {
            return Err(bad("LO and HI must be numbers"));
        };
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(bad("LO and HI must be finite"));
        }
        if lo >= hi {
            return Err(bad("LO must be less than HI"));
        }
        if !(hi - lo).is_finite() {
            return Err(bad("the range is wider than the largest number"));
        }
        Ok(Range { name: name.to_string(), element, lo, hi })
    }

    /// The x-axis label: `NAME` or `NAME[K]`.
    pub fn label(&self) -> String {
        match self.element {
            Some(k) => format!("{}[{k}]", self.name),
            None => self.name.clone(),
        }
    }

    /// The `n` sample points, ends included.
    pub fn points(&self, n: usize) -> Vec<f64> {
        let steps = n.max(2) - 1;
        (0..=steps).map(|i| self.lo + (self.hi - self.lo) * (i as f64 / steps as f64)).collect()
    }
}

/// One loss sampled along a range.
#[derive(Clone, Debug)]
pub(crate) struct Curve {
    /// The legend entry.
    pub label: String,
    /// The sample points.
    pub xs: Vec<f64>,
    /// The reduced loss at each point (NaN where it could not be evaluated).
    pub loss: Vec<f64>,
    /// ∂L/∂x at each point, when the varying input is a pred.
    pub grad: Option<Vec<f64>>,
    /// Why some points are missing, if some are.
    pub gap: Option<String>,
}

/// Samples `prog` along `range` with the inputs `fixed` (params are compiled in).
///
/// The loss is reduced as the file says (`none` is summed, so L is Σ l and ∂L/∂x is
/// the gradient `--grad` prints). A number given for the varying input broadcasts to
/// every element, so ∂L/∂x is the sum of the gradient over the elements (an input with
/// a class axis becomes a row of one class); `NAME[K]` varies one element of NAME's data
/// and reads that element's gradient.
pub(crate) fn sample(
    src: &Source,
    prog: &Program,
    range: &Range,
    fixed: &[(String, Array)],
    label: &str,
) -> Result<Curve, Failure> {
    let Some(input) = prog.input(&range.name) else {
        return Err(no_such_input(src, prog, &range.name));
    };
    let decl = &prog.inputs[input as usize];
    match (decl.layout, range.element) {
        (Layout::Index, _) => {
            return Err(Failure::plain(format!(
                "error: `{}` is a class-index target of {}; it cannot vary along a range",
                decl.name, src.name
            )));
        }
        (Layout::Classes, None) if fixed.iter().any(|(n, _)| *n == range.name) => {
            return Err(Failure::plain(format!(
                "error: `{0}` is given a row and a range\nhelp: `{0}[K]=LO:HI` varies element K of the row",
                decl.name
            )));
        }
        _ => {}
    }
    let base = match range.element {
        None => None,
        Some(k) => {
            let Some((_, arr)) = fixed.iter().rev().find(|(n, _)| *n == range.name) else {
                return Err(Failure::plain(format!(
                    "error: `{0}[{k}]` varies element {k} of `{0}`'s data, but `{0}` is not given\nhelp: give the other elements too, e.g. `{0}=0,1,2`",
                    range.name
                )));
            };
            if k >= arr.data.len() {
                return Err(Failure::plain(format!(
                    "error: `{}` has {} values, so it has no element {k}",
                    range.name,
                    arr.data.len()
                )));
            }
            Some((k, arr.clone()))
        }
    };
    let others: Vec<(&str, &Array)> =
        fixed.iter().filter(|(n, _)| *n != range.name).map(|(n, a)| (n.as_str(), a)).collect();
    let is_pred = decl.role == Role::Pred;
    let opts = EvalOptions {
        reduce: (prog.reduce == ReduceMode::None).then_some(ReduceMode::Sum),
        grad: is_pred,
        hess: false,
        upstream: None,
    };
    let deriv = prog.derivs.iter().position(|d| d.input == input);
    let xs = range.points(POINTS);
    let mut loss = Vec::with_capacity(xs.len());
    let mut grad = Vec::with_capacity(xs.len());
    let mut first_error: Option<Diagnostic> = None;
    for &x in &xs {
        let arr = match &base {
            Some((k, arr)) => {
                let mut arr = arr.clone();
                arr.data[*k] = x;
                arr
            }
            // A class-axis input alone is a row of one class: the loss of one element.
            None if decl.layout == Layout::Classes => Array::vector(vec![x]),
            None => Array::scalar(x),
        };
        let mut inputs = others.clone();
        inputs.push((range.name.as_str(), &arr));
        match evaluate(prog, &inputs, &opts) {
            Ok(ev) => {
                loss.push(match &ev.loss {
                    LossValue::Scalar(v) => *v,
                    LossValue::PerItem(v) => v.iter().sum(),
                });
                let g = deriv.and_then(|d| ev.grad.get(d)).map_or(f64::NAN, |(_, g)| match &base {
                    Some((k, _)) => g.get(*k).copied().unwrap_or(f64::NAN),
                    None => g.iter().sum(),
                });
                grad.push(g);
            }
            Err(d) => {
                first_error.get_or_insert(d);
                loss.push(f64::NAN);
                grad.push(f64::NAN);
            }
        }
    }
    if !loss.iter().any(|v| v.is_finite()) {
        return Err(match first_error {
            Some(d) if d.span.is_some() => Failure::source(src.clone(), vec![d]),
            Some(d) => Failure::diag(d),
            None => Failure::plain(format!(
                "error: {} is not finite anywhere on {}={}:{}",
                src.name,
                range.label(),
                lossc::ir::print::number(range.lo),
                lossc::ir::print::number(range.hi)
            )),
        });
    }
    let gap = first_error.map(|d| format!("{} is undefined on part of the range: {}", label, d.message));
    Ok(Curve { label: label.to_string(), xs, loss, grad: is_pred.then_some(grad), gap })
}

fn no_such_input(src: &Source, prog: &Program, name: &str) -> Failure {
    let mut msg = format!("error: {} has no input named `{name}`", src.name);
    if prog.params.iter().any(|p| p.name == name) {
        msg.push_str(&format!(
            "\nnote: `{name}` is a parameter; a range varies an input (fix a parameter with `{name}=VALUE`)"
        ));
        return Failure::plain(msg);
    }
    let known: Vec<&str> = prog.inputs.iter().map(|i| i.name.as_str()).collect();
    if let Some(s) = lossc::diagnostic::suggest_name(name, known.iter().copied()) {
        msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        msg.push_str(&format!("\nnote: its inputs are {}", list.join(", ")));
    }
    Failure::plain(msg)
}

/// `lossc plot SPEC... --over NAME=LO:HI [NAME=VALUE...] [-o FILE]`.
pub(crate) fn command(out: &mut String, items: &[String], over: &str, output: Option<&Path>) -> Result<(), Failure> {
    // Positional words: NAME=VALUE assignments, and the losses (anything else).
    let mut specs = Vec::new();
    let mut args = Vec::new();
    for item in items {
        if item.contains('=') && !Path::new(item).is_file() {
            let arg = crate::cli::parse_assignment(item).map_err(|e| Failure::plain(format!("error: {e}")))?;
            if arg.1.is_empty() {
                return Err(Failure::plain(format!("error: `{item}` needs a value after `=`")));
            }
            args.push(arg);
        } else {
            specs.push(item.as_str());
        }
    }
    if specs.is_empty() {
        return Err(Failure::plain(
            "error: no loss to plot\nhelp: name a `.loss` file or a standard-library loss, e.g. `lossc plot torch/mse_loss --over input=-3:3 target=0`"
                .to_string(),
        ));
    }
    let range = Range::parse(over)?;
    let path = output.unwrap_or(Path::new(DEFAULT_OUTPUT));
    let format = Format::of(path)?;
    // Compile every loss first, so that a mistake is reported before any sampling.
    let mut losses = Vec::new();
    let mut known = vec![false; args.len()];
    for spec in &specs {
        let src = crate::cli::load_source(spec)?;
        let options =
            CompileOptions { dtype: Dtype::F64, params: crate::cli::numbers(&args), hessian: false, stabilize: true };
        let prog = compile(&src.text, &options).map_err(|d| Failure::source(src.clone(), d))?;
        crate::render::warnings(&src, &prog.warnings);
        let mut mine = Vec::new();
        for (arg, seen) in args.iter().zip(known.iter_mut()) {
            let name = arg.0.as_str();
            if prog.input(name).is_some() || prog.params.iter().any(|p| p.name == name) {
                *seen = true;
                mine.push(arg.clone());
            }
        }
        crate::cli::check_args(&prog, &mine)?;
        losses.push((spec, src, prog, mine));
    }
    if let Some(((name, _), _)) = args.iter().zip(&known).find(|(_, seen)| !**seen) {
        let mut all: Vec<&str> = Vec::new();
        for (_, _, prog, _) in &losses {
            all.extend(prog.inputs.iter().map(|i| i.name.as_str()));
            all.extend(prog.params.iter().map(|p| p.name.as_str()));
        }
        let what = if losses.len() == 1 { "the loss has" } else { "no loss has" };
        let mut msg = format!("error: {what} an input or parameter named `{name}`");
        if let Some(s) = lossc::diagnostic::suggest_name(name, all.iter().copied()) {
            msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
        }
        return Err(Failure::plain(msg));
    }
    let mut curves = Vec::new();
    for (spec, src, prog, mine) in &losses {
        let mut fixed = Vec::new();
        for (name, value) in mine {
            if prog.input(name).is_some() {
                fixed.push((name.clone(), crate::cli::parse_value(value).map_err(Failure::diag)?));
            }
        }
        curves.push(sample(src, prog, &range, &fixed, spec)?);
    }
    chart::write(&curves, &range, path, format)?;
    let _ = writeln!(out, "wrote {}", path.display());
    for curve in &curves {
        if let Some(gap) = &curve.gap {
            let _ = writeln!(out, "note: {gap}");
        }
        if curve.grad.is_none() {
            let _ =
                writeln!(out, "note: `{}` is not a pred of {}, so there is no gradient curve", range.name, curve.label);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_explain() {
        let r = Range::parse("input=-3:3").map_err(|f| f.text().to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, Range { name: "input".into(), element: None, lo: -3.0, hi: 3.0 });
        let r = Range::parse("z[2]=-1e1:-1").map_err(|f| f.text().to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, Range { name: "z".into(), element: Some(2), lo: -10.0, hi: -1.0 });
        for (bad, why) in [
            ("p", "no `=`"),
            ("p=1", "no `:`"),
            ("p=a:b", "must be numbers"),
            ("p=3:1", "less than"),
            ("p=0:inf", "finite"),
            ("1p=0:1", "not a name"),
            ("p[x]=0:1", "whole number"),
            ("p=-1e308:1e308", "wider"),
        ] {
            let Err(f) = Range::parse(bad) else { panic!("{bad} parsed") };
            assert!(f.text().contains(why), "{bad}: {}", f.text());
        }
        assert_eq!(r.points(3), vec![-10.0, -5.5, -1.0]);
    }
}
