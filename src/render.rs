//! Rendering diagnostics for the terminal with codespan-reporting (binary only).
//!
//! The first line of a diagnostic about source text is `PATH:LINE:COL: error: MESSAGE`;
//! the rendered snippet follows.

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;

use lossc::span::line_col;
use lossc::{Diagnostic, Severity};

/// A loss file's name and text.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path or stdlib name shown in messages.
    pub name: String,
    /// The text.
    pub text: String,
}

/// Why a command failed: what to print on stderr, and the exit code (always 1).
#[derive(Debug)]
pub struct Failure {
    text: String,
}

impl Failure {
    /// An already formatted message.
    pub fn plain(text: String) -> Failure {
        Failure { text }
    }

    /// Diagnostics about `src`.
    pub fn source(src: Source, diags: Vec<Diagnostic>) -> Failure {
        let text = diags.iter().map(|d| render(&src, d)).collect::<Vec<_>>().join("\n");
        Failure { text }
    }

    /// A diagnostic about data or arguments.
    pub fn diag(d: Diagnostic) -> Failure {
        let mut text =
            if d.message.contains(": error: ") { d.message.clone() } else { format!("error: {}", d.message) };
        for n in &d.notes {
            text.push('\n');
            text.push_str(n);
        }
        Failure { text }
    }

    /// The message.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Prints the message.
    pub fn print(&self) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{}", self.text.trim_end());
    }
}

/// Prints warnings about `src`.
pub fn warnings(src: &Source, diags: &[Diagnostic]) {
    use std::io::Write;
    for d in diags.iter().filter(|d| d.severity == Severity::Warning) {
        let _ = writeln!(std::io::stderr().lock(), "{}", render(src, d).trim_end());
    }
}

/// One diagnostic: the `PATH:LINE:COL: error: MESSAGE` line, then the snippet.
pub fn render(src: &Source, d: &Diagnostic) -> String {
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let Some(span) = d.span else {
        let mut s = format!("{}: {sev}: {}\n", src.name, d.message);
        for n in &d.notes {
            s.push_str(n);
            s.push('\n');
        }
        return s;
    };
    let (line, col) = line_col(&src.text, span.start);
    let mut out = format!("{}:{line}:{col}: {sev}: {}\n", src.name, d.message);
    let file = SimpleFile::new(src.name.as_str(), src.text.as_str());
    let mut labels = vec![cs::Label::primary((), span.range()).with_message(d.label.clone())];
    for l in &d.labels {
        labels.push(cs::Label::secondary((), l.span.range()).with_message(l.message.clone()));
    }
    let diag = match d.severity {
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    }
    .with_message(d.message.clone())
    .with_labels(labels)
    .with_notes(d.notes.clone());
    let mut rendered = String::new();
    let config = term::Config::default();
    if term::emit_to_string(&mut rendered, &config, &file, &diag).is_ok() {
        // Drop codespan's own header line; ours replaces it.
        let body = rendered.split_once('\n').map_or("", |(_, rest)| rest);
        out.push_str(body);
    }
    out
}
