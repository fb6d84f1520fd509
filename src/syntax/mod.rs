//! Parsing: text to [`ast::File`] plus diagnostics. Never fails; several errors are reported at once.
//!
//! Invariant: `syntax` knows nothing about `ir`.

pub mod ast;
pub(crate) mod lexer;
pub mod token;

use lalrpop_util::{lalrpop_mod, ErrorRecovery, ParseError};

use crate::diagnostic::Diagnostic;
use crate::span::Span;
use crate::syntax::ast::{BinOp, Expr, ExprKind, UnOp, MAX_DEPTH};
use crate::syntax::token::{LexErrorKind, Token};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, missing_docs, unused_imports, unused_parens)]
    grammar,
    "/loss.rs"
);

/// Largest source text accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Longest identifier accepted, in bytes.
pub const MAX_IDENT_BYTES: usize = 128;

/// Parses a whole `.loss` file. Diagnostics are sorted by position.
pub fn parse(text: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    if text.len() > MAX_SOURCE_BYTES {
        diags.push(Diagnostic::error(
            Span::new(MAX_SOURCE_BYTES, MAX_SOURCE_BYTES),
            format!("the loss file is too large ({} bytes; the limit is {MAX_SOURCE_BYTES})", text.len()),
        ));
        return (ast::File { stmts: Vec::new() }, diags);
    }
    let (mut tokens, lex_errors) = lexer::lex(text);
    for err in &lex_errors {
        let msg = match err.kind {
            LexErrorKind::Stray => {
                let ch = text.get(err.span.range()).unwrap_or("?");
                format!("unexpected character `{}`", ch.escape_debug())
            }
            LexErrorKind::UnterminatedString => "unterminated string".to_string(),
        };
        diags.push(Diagnostic::error(err.span, msg));
    }
    for (start, tok, end) in tokens.iter().flatten() {
        if let Token::Ident(name) = tok {
            if name.len() > MAX_IDENT_BYTES {
                diags.push(Diagnostic::error(
                    Span::new(*start, *end),
                    format!("name is too long ({} bytes; the limit is {MAX_IDENT_BYTES})", name.len()),
                ));
            }
        }
    }
    // A trailing separator ends the last statement; the grammar wants none.
    if matches!(tokens.last(), Some(Ok((_, Token::Newline | Token::Semi, _)))) {
        tokens.pop();
    }
    let unclosed = lexer::unclosed_brackets(&tokens);
    let tokens_for_brackets = tokens.clone();
    let parser = grammar::FileParser::new();
    let mut parse_diags = Vec::new();
    let file = match parser.parse(&mut parse_diags, tokens) {
        Ok(file) => file,
        Err(err) => {
            parse_diags.push(parse_error(&err));
            ast::File { stmts: Vec::new() }
        }
    };
    for mut d in parse_diags {
        // An error token was already reported by the lexer.
        if lex_errors.iter().any(|e| Some(e.span) == d.span) {
            continue;
        }
        let at = d.span.map_or(u32::MAX, |s| s.start);
        if d.message.starts_with("unexpected end of file") {
            if let Some(open) = unclosed.last() {
                d = d.with_secondary(*open, "this bracket is never closed");
            }
        } else if let Some(open) = lexer::open_bracket_at(&tokens_for_brackets, at) {
            // Line breaks inside brackets do not end a statement, so a missing `)`
            // shows up on a later line: point at the bracket.
            if text.get(open.end as usize..at as usize).is_some_and(|between| between.contains('\n')) {
                d = d
                    .with_secondary(open, "this bracket is not closed before the next line")
                    .with_note("help: close the bracket, or remove it");
            }
        }
        diags.push(d);
    }
    diags.sort_by_key(|d| d.span.map(|s| s.start));
    (file, diags)
}

type LalrError<'s> = ParseError<usize, Token<'s>, std::convert::Infallible>;

fn parse_error(err: &LalrError<'_>) -> Diagnostic {
    match err {
        ParseError::InvalidToken { location } => {
            Diagnostic::error(Span::new(*location, *location + 1), "invalid token")
        }
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::error(
            Span::new(*location, *location),
            format!("unexpected end of file, expected {}", expected_list(expected)),
        ),
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => {
            let what = match tok {
                Token::Newline | Token::Semi => "end of statement".to_string(),
                other => other.to_string(),
            };
            // A lone `(` means lalrpop listed only the shifts of a state that would
            // otherwise reduce: such a list would mislead, so leave it out.
            let only_call = expected.len() == 1 && expected[0] == "\"(\"";
            let msg = if only_call {
                format!("unexpected {what}")
            } else {
                format!("unexpected {what}, expected {}", expected_list(expected))
            };
            let mut d = Diagnostic::error(Span::new(*l, *r), msg);
            if matches!(tok, Token::Ident(_)) && expected.iter().any(|e| e == "\"\\n\"") {
                d = d.with_note("help: an operator may be missing between two names (`a b` is not `a*b`)");
            }
            d
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::error(Span::new(*l, *r), format!("unexpected {tok}"))
        }
        ParseError::User { error } => match *error {},
    }
}

/// Turns lalrpop's expected-terminal names into words.
fn expected_list(expected: &[String]) -> String {
    let starts_expr = ["\"number\"", "\"name\"", "\"(\"", "\"-\""];
    let is_expr = starts_expr.iter().all(|s| expected.iter().any(|e| e == s));
    let mut words: Vec<String> = Vec::new();
    if is_expr {
        words.push("an expression".to_string());
    }
    for e in expected {
        if is_expr
            && (starts_expr.contains(&e.as_str())
                || ["\"not\"", "\"true\"", "\"false\"", "\"pi\"", "\"inf\""].contains(&e.as_str()))
        {
            continue;
        }
        let w = match e.as_str() {
            "\"\\n\"" | "\";\"" => "end of statement".to_string(),
            "\"number\"" => "a number".to_string(),
            "\"name\"" => "a name".to_string(),
            "\"string\"" => "a string".to_string(),
            other => format!("`{}`", other.trim_matches('"')),
        };
        if !words.contains(&w) {
            words.push(w);
        }
    }
    match words.len() {
        0 => "nothing more".to_string(),
        1 => words.remove(0),
        n if n <= 6 => {
            let last = words.pop().unwrap_or_default();
            format!("{} or {last}", words.join(", "))
        }
        _ => format!("{}, or another operator", words[..5].join(", ")),
    }
}

// ---- helpers called from grammar actions ----

pub(crate) fn recovered(diags: &mut Vec<Diagnostic>, err: ErrorRecovery<usize, Token<'_>, std::convert::Infallible>) {
    diags.push(parse_error(&err.error));
}

pub(crate) fn number(diags: &mut Vec<Diagnostic>, text: &str, l: usize, r: usize) -> f64 {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => {
            diags.push(
                Diagnostic::error(Span::new(l, r), format!("number `{text}` is too large for a 64-bit float"))
                    .with_label("overflows to infinity"),
            );
            f64::NAN
        }
    }
}

pub(crate) fn unescape(raw: &str) -> String {
    let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds an inner node, replacing it by an error node past the depth limit (reported once).
pub(crate) fn node(diags: &mut Vec<Diagnostic>, kind: ExprKind, l: usize, r: usize) -> Expr {
    let span = Span::new(l, r);
    let e = Expr::node(kind, span);
    if e.depth <= MAX_DEPTH {
        return e;
    }
    let already = match &e.kind {
        ExprKind::Call { args, .. } => args.iter().any(is_depth_error),
        ExprKind::Index { base, index } => is_depth_error(base) || is_depth_error(index),
        ExprKind::Unary(_, a) => is_depth_error(a),
        ExprKind::Binary(_, a, b) => is_depth_error(a) || is_depth_error(b),
        _ => false,
    };
    if !already {
        diags.push(
            Diagnostic::error(span, format!("expression is nested too deeply (the limit is {MAX_DEPTH} levels)"))
                .with_note("help: bind parts of it to names on lines of their own"),
        );
    }
    Expr { kind: ExprKind::Error, span, depth: MAX_DEPTH }
}

fn is_depth_error(e: &Expr) -> bool {
    e.kind == ExprKind::Error && e.depth >= MAX_DEPTH
}

pub(crate) fn binary(diags: &mut Vec<Diagnostic>, op: BinOp, a: Expr, b: Expr, l: usize, r: usize) -> Expr {
    node(diags, ExprKind::Binary(op, Box::new(a), Box::new(b)), l, r)
}

pub(crate) fn unary(diags: &mut Vec<Diagnostic>, op: UnOp, e: Expr, l: usize, r: usize) -> Expr {
    node(diags, ExprKind::Unary(op, Box::new(e)), l, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text).1.into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn precedence_of_power_and_minus() {
        let (file, diags) = parse("-x^2");
        assert!(diags.is_empty());
        let ast::Stmt::Expr(e) = &file.stmts[0] else { panic!("expected an expression") };
        assert!(
            matches!(&e.kind, ExprKind::Unary(UnOp::Neg, inner) if matches!(inner.kind, ExprKind::Binary(BinOp::Pow, ..)))
        );
    }

    #[test]
    fn several_errors_in_one_run() {
        let errs = errors("a = (1 +\nb = 2 $\nc = )\nc");
        assert!(errs.len() >= 2, "{errs:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // Parentheses add no tree levels; calls do.
        let text = format!("{}x{}", "(".repeat(5000), ")".repeat(5000));
        assert!(errors(&text).is_empty());
        let text = format!("{}x{}", "exp(".repeat(5000), ")".repeat(5000));
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        let text = format!("{}x", "-".repeat(100_000));
        assert_eq!(errors(&text).len(), 1);
    }

    #[test]
    fn overflowing_literal_is_an_error() {
        assert_eq!(errors("1e999*p").len(), 1);
    }
}
