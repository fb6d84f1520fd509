//! The logos token enum of the loss language and the lexer's own error type.

use logos::Logos;

use crate::span::Span;

/// What went wrong while lexing, with its own span (lalrpop's user errors carry none).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum LexErrorKind {
    /// A character that starts no token.
    #[default]
    Stray,
    /// A string literal without its closing quote.
    UnterminatedString,
}

/// One lexical token. Literal values are decoded by the lexer adapter.
#[derive(Logos, Clone, Copy, Debug, PartialEq)]
#[logos(skip r"[ \t\r\f]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
#[logos(error = LexErrorKind)]
pub enum Token<'s> {
    /// A line break: ends a statement outside brackets.
    #[token("\n")]
    Newline,
    /// `;`: ends a statement.
    #[token(";")]
    Semi,
    /// A decimal number literal.
    #[regex(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?", |lex| lex.slice())]
    #[regex(r"\.[0-9]+([eE][+-]?[0-9]+)?", |lex| lex.slice())]
    Number(&'s str),
    /// A name.
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice(), priority = 1)]
    Ident(&'s str),
    /// A double-quoted string (raw slice, quotes included).
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| lex.slice())]
    Str(&'s str),
    /// An unterminated string literal.
    #[regex(r#""([^"\\\n]|\\.)*"#, priority = 0)]
    BadStr,
    /// `require`.
    #[token("require")]
    Require,
    /// `by`.
    #[token("by")]
    By,
    /// `over`.
    #[token("over")]
    Over,
    /// `and`.
    #[token("and")]
    And,
    /// `or`.
    #[token("or")]
    Or,
    /// `not`.
    #[token("not")]
    Not,
    /// `true`.
    #[token("true")]
    True,
    /// `false`.
    #[token("false")]
    False,
    /// `pi`.
    #[token("pi")]
    Pi,
    /// `inf`.
    #[token("inf")]
    Inf,
    /// `+`.
    #[token("+")]
    Plus,
    /// `-`.
    #[token("-")]
    Minus,
    /// `*`.
    #[token("*")]
    Star,
    /// `/`.
    #[token("/")]
    Slash,
    /// `^`.
    #[token("^")]
    Caret,
    /// `(`.
    #[token("(")]
    LParen,
    /// `)`.
    #[token(")")]
    RParen,
    /// `[`.
    #[token("[")]
    LBracket,
    /// `]`.
    #[token("]")]
    RBracket,
    /// `,`.
    #[token(",")]
    Comma,
    /// `=`.
    #[token("=")]
    Assign,
    /// `==`.
    #[token("==")]
    EqEq,
    /// `!=`.
    #[token("!=")]
    NotEq,
    /// `<`.
    #[token("<")]
    Lt,
    /// `<=`.
    #[token("<=")]
    Le,
    /// `>`.
    #[token(">")]
    Gt,
    /// `>=`.
    #[token(">=")]
    Ge,
    /// `:`.
    #[token(":")]
    Colon,
    /// `?`.
    #[token("?")]
    Question,
    /// Produced by the adapter in place of a lexing error, so parsing goes on.
    Error,
}

impl std::fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Token::Newline => "end of line",
            Token::Semi => "`;`",
            Token::Number(n) => return write!(f, "number `{n}`"),
            Token::Ident(n) => return write!(f, "name `{n}`"),
            Token::Str(_) | Token::BadStr => "string",
            Token::Require => "`require`",
            Token::By => "`by`",
            Token::Over => "`over`",
            Token::And => "`and`",
            Token::Or => "`or`",
            Token::Not => "`not`",
            Token::True => "`true`",
            Token::False => "`false`",
            Token::Pi => "`pi`",
            Token::Inf => "`inf`",
            Token::Plus => "`+`",
            Token::Minus => "`-`",
            Token::Star => "`*`",
            Token::Slash => "`/`",
            Token::Caret => "`^`",
            Token::LParen => "`(`",
            Token::RParen => "`)`",
            Token::LBracket => "`[`",
            Token::RBracket => "`]`",
            Token::Comma => "`,`",
            Token::Assign => "`=`",
            Token::EqEq => "`==`",
            Token::NotEq => "`!=`",
            Token::Lt => "`<`",
            Token::Le => "`<=`",
            Token::Gt => "`>`",
            Token::Ge => "`>=`",
            Token::Colon => "`:`",
            Token::Question => "`?`",
            Token::Error => "invalid token",
        };
        f.write_str(s)
    }
}

/// A lexing error with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    /// Where.
    pub span: Span,
    /// What.
    pub kind: LexErrorKind,
}
