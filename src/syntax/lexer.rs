//! Adapter from logos' spanned token stream to lalrpop's `(start, token, end)` triples.
//!
//! It drops line breaks inside brackets and repeated statement separators, and turns
//! lexing errors into [`Token::Error`] plus a recorded [`LexError`], so parsing goes on.

use logos::Logos;

use crate::span::Span;
use crate::syntax::token::{LexError, LexErrorKind, Token};

/// The triples lalrpop consumes. The error type is never produced: errors are tokens.
pub(crate) type Spanned<'s> = Result<(usize, Token<'s>, usize), std::convert::Infallible>;

/// Lexes `text` completely: the tokens for the parser and the lexing errors.
pub(crate) fn lex(text: &str) -> (Vec<Spanned<'_>>, Vec<LexError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut depth: usize = 0;
    // True when the last token pushed was a separator (or nothing was pushed yet).
    let mut after_sep = true;
    let mut lexer = Token::lexer(text);
    while let Some(res) = lexer.next() {
        let range = lexer.span();
        let tok = match res {
            Ok(Token::BadStr) => {
                errors
                    .push(LexError { span: Span::new(range.start, range.end), kind: LexErrorKind::UnterminatedString });
                Token::Error
            }
            Ok(tok) => tok,
            Err(kind) => {
                errors.push(LexError { span: Span::new(range.start, range.end), kind });
                Token::Error
            }
        };
        match tok {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::Newline if depth > 0 => continue,
            Token::Newline | Token::Semi if after_sep => continue,
            _ => {}
        }
        after_sep = matches!(tok, Token::Newline | Token::Semi);
        out.push(Ok((range.start, tok, range.end)));
    }
    (out, errors)
}

/// Spans of brackets opened and never closed, innermost last.
pub(crate) fn unclosed_brackets(tokens: &[Spanned<'_>]) -> Vec<Span> {
    let mut open = Vec::new();
    for (start, tok, end) in tokens.iter().flatten() {
        match tok {
            Token::LParen | Token::LBracket => open.push(Span::new(*start, *end)),
            Token::RParen | Token::RBracket => {
                open.pop();
            }
            _ => {}
        }
    }
    open
}

/// The innermost bracket still open just before byte `pos`.
pub(crate) fn open_bracket_at(tokens: &[Spanned<'_>], pos: u32) -> Option<Span> {
    let mut open = Vec::new();
    for (start, tok, end) in tokens.iter().flatten() {
        if *start >= pos as usize {
            break;
        }
        match tok {
            Token::LParen | Token::LBracket => open.push(Span::new(*start, *end)),
            Token::RParen | Token::RBracket => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token<'_>> {
        lex(text).0.into_iter().map(|t| t.map(|(_, t, _)| t).unwrap_or(Token::Error)).collect()
    }

    #[test]
    fn newlines_inside_brackets_are_dropped() {
        assert_eq!(
            kinds("\n\nf(a,\n b)\n\n;x"),
            vec![
                Token::Ident("f"),
                Token::LParen,
                Token::Ident("a"),
                Token::Comma,
                Token::Ident("b"),
                Token::RParen,
                Token::Newline,
                Token::Ident("x"),
            ]
        );
    }

    #[test]
    fn stray_characters_become_error_tokens() {
        let (toks, errs) = lex("a $ b");
        assert_eq!(toks.len(), 3);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].span, Span::new(2, 3));
    }

    #[test]
    fn keywords_and_comments() {
        assert_eq!(kinds("require x # note"), vec![Token::Require, Token::Ident("x")]);
        assert_eq!(kinds("inference"), vec![Token::Ident("inference")]);
    }
}
