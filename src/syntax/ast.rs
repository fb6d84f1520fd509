//! The surface syntax tree, one to one with the grammar; every node has a span, no semantics.

use crate::span::Span;

/// Deepest expression nesting the parser accepts; deeper input gets a diagnostic, not a crash.
pub const MAX_DEPTH: u32 = 200;

/// A parsed `.loss` file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// Statements in source order.
    pub stmts: Vec<Stmt>,
}

/// A name with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per file; boxing buys nothing
pub enum Stmt {
    /// `pred`, `target` or `param` declaration, or `reduce` (a header statement).
    Header(Header),
    /// `require COND, "MESSAGE"`.
    Require {
        /// The condition.
        cond: Expr,
        /// The message, unescaped.
        message: String,
        /// The whole statement.
        span: Span,
    },
    /// `NAME = EXPR`.
    Let {
        /// The bound name.
        name: Ident,
        /// Its value.
        value: Expr,
    },
    /// A bare expression (the loss, when last).
    Expr(Expr),
    /// A statement that did not parse (already diagnosed).
    Error(Span),
}

/// A statement that starts with a keyword name followed by another name:
/// `pred NAME[C]`, `target NAME: index`, `param NAME? `, `param NAME = 1`,
/// `reduce MODE by W over D`. Which parts are allowed is checked when lowering.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// `pred`, `target`, `param` or `reduce` (anything else is diagnosed when lowering).
    pub keyword: Ident,
    /// The declared name, or the reduction mode.
    pub name: Ident,
    /// `[C]`: the class-axis name.
    pub class_axis: Option<Ident>,
    /// `: index`: the type word.
    pub ty: Option<Ident>,
    /// `?`.
    pub optional: Option<Span>,
    /// `= NUMBER`.
    pub default: Option<(f64, Span)>,
    /// `by W`.
    pub by: Option<Expr>,
    /// `over D`.
    pub over: Option<Expr>,
    /// The whole statement.
    pub span: Span,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^`
    Pow,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
        }
    }
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `not x`
    Not,
}

/// An expression node with its span and nesting depth.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
    /// 1 for a leaf; 1 + the deepest child otherwise.
    pub depth: u32,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number literal (`true`/`false` are 1/0, `pi`, `inf`).
    Number(f64),
    /// A name.
    Name(String),
    /// `f(args)`.
    Call {
        /// The function name.
        func: Ident,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `base[index]`.
    Index {
        /// The row-valued expression.
        base: Box<Expr>,
        /// The index.
        index: Box<Expr>,
    },
    /// A unary operation.
    Unary(UnOp, Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// Something that did not parse or nested too deeply (already diagnosed).
    Error,
}

impl Expr {
    /// A leaf.
    pub fn leaf(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span, depth: 1 }
    }

    /// A node over `children`, with depth one more than the deepest.
    pub fn node(kind: ExprKind, span: Span) -> Expr {
        let depth = 1 + match &kind {
            ExprKind::Call { args, .. } => args.iter().map(|a| a.depth).max().unwrap_or(0),
            ExprKind::Index { base, index } => base.depth.max(index.depth),
            ExprKind::Unary(_, e) => e.depth,
            ExprKind::Binary(_, a, b) => a.depth.max(b.depth),
            _ => 0,
        };
        Expr { kind, span, depth }
    }
}
