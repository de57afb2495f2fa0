//! The syntax tree of an AQL query, with source spans.
//!
//! A query is a sequence of operations, as ArangoDB defines it: each `FOR`, `LET`,
//! `FILTER`, `SORT`, `LIMIT` and `COLLECT` transforms the stream of rows produced by
//! the operations before it; the query ends with `RETURN` or a data-modification
//! operation (which may be followed by a `RETURN` of `OLD`/`NEW`). Subqueries are
//! queries in parentheses and have the same shape.
//!
//! Identifiers are not resolved here: `FOR u IN users` names either a variable or a
//! collection, which only the planner can tell ([`ExprKind::Ident`]).

use crate::error::Span;

/// A whole query or a subquery.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub ops: Vec<Op>,
    pub span: Span,
}

/// One operation of a query, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    /// `FOR var IN source` — source is a collection name (an `Ident` the planner
    /// resolves), a `@@bind` collection, or any expression yielding an array (a range
    /// `1..10`, a variable, a subquery).
    For { var: Name, source: Expr },
    /// `LET var = expr`
    Let { var: Name, expr: Expr },
    /// `FILTER expr`
    Filter(Expr),
    /// `SORT expr [ASC|DESC], ...`
    Sort(Vec<SortKey>),
    /// `LIMIT count` or `LIMIT offset, count`
    Limit { offset: Option<Expr>, count: Expr },
    /// `COLLECT [var = expr, ...] [AGGREGATE var = FUNC(expr), ...]
    ///  [INTO var [= projection]] [WITH COUNT INTO var]`, also `COLLECT WITH COUNT
    /// INTO var` alone.
    Collect(Collect),
    /// `RETURN [DISTINCT] expr`
    Return { distinct: bool, expr: Expr },
    /// `INSERT doc INTO|IN collection [OPTIONS {...}]`
    Insert {
        doc: Expr,
        collection: CollectionRef,
        options: Option<Expr>,
    },
    /// `UPDATE doc IN collection` or `UPDATE key WITH patch IN collection`
    /// (`key` may be a string `_key` or an object carrying `_key`).
    Update {
        key: Expr,
        with: Option<Expr>,
        collection: CollectionRef,
        options: Option<Expr>,
    },
    /// `REPLACE doc IN collection` or `REPLACE key WITH doc IN collection`.
    Replace {
        key: Expr,
        with: Option<Expr>,
        collection: CollectionRef,
        options: Option<Expr>,
    },
    /// `REMOVE key IN collection` (a string `_key` or an object carrying `_key`).
    Remove {
        key: Expr,
        collection: CollectionRef,
        options: Option<Expr>,
    },
    /// `UPSERT search INSERT doc UPDATE|REPLACE patch IN collection`.
    Upsert {
        search: Expr,
        insert: Expr,
        update: Expr,
        replace: bool,
        collection: CollectionRef,
        options: Option<Expr>,
    },
}

/// A variable name as written, with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    pub ascending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Collect {
    /// `var = expr` grouping criteria (may be empty).
    pub groups: Vec<(Name, Expr)>,
    /// `AGGREGATE var = FUNC(expr)`; each expression is a [`ExprKind::Call`].
    pub aggregates: Vec<(Name, Expr)>,
    /// `INTO var [= projection]`
    pub into: Option<(Name, Option<Expr>)>,
    /// `WITH COUNT INTO var`
    pub count_into: Option<Name>,
}

/// The target of a data-modification operation.
#[derive(Debug, Clone, PartialEq)]
pub enum CollectionRef {
    /// A collection name written in the query.
    Name(Name),
    /// `@@param`: a collection name supplied as a bind parameter (without the `@@`).
    Bind(Name),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    /// All AQL numbers are IEEE doubles.
    Number(f64),
    String(String),
    Array(Vec<Expr>),
    Object(Vec<(ObjectKey, Expr)>),
    /// A bare identifier: a variable, or (as a `FOR` source or function argument such
    /// as `LENGTH(users)`) a collection name. Keywords `OLD`, `NEW` and `CURRENT` come
    /// through as identifiers too.
    Ident(String),
    /// `@name`: a bind parameter value (name without the `@`).
    BindVar(String),
    /// `@@name`: a bind parameter naming a collection (name without the `@@`).
    BindCollection(String),
    /// `base.name` (also `base.@param`, resolved by the parser to `Index` with a
    /// bind-var expression).
    Attribute(Box<Expr>, String),
    /// `base[index]`: an array position (negative counts from the end) or an
    /// attribute name.
    Index(Box<Expr>, Box<Expr>),
    /// Array expansion `base[*]` with what follows applied to each element, which the
    /// projection, filter and limit see as the identifier `CURRENT`: `users[*].name`
    /// is `Expand { base: users, filter: None, limit: None, projection:
    /// Some(CURRENT.name) }`. Inline `[* FILTER cond
    /// LIMIT n RETURN proj]` forms fill `filter`, `limit` and `projection`.
    Expand {
        base: Box<Expr>,
        filter: Option<Box<Expr>>,
        limit: Option<Box<Expr>>,
        projection: Option<Box<Expr>>,
    },
    /// `base[**]`: flatten one level (`[***]` two levels, and so on).
    Flatten {
        base: Box<Expr>,
        depth: u32,
    },
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `cond ? then : else`; `cond ?: else` has `then = None` (yields `cond` when
    /// truthy).
    Ternary {
        cond: Box<Expr>,
        then: Option<Box<Expr>>,
        otherwise: Box<Expr>,
    },
    /// `low..high`: the array of integers from low to high inclusive.
    Range(Box<Expr>, Box<Expr>),
    /// `NAME(args)`; `name` is upper-cased by the parser. Namespaced user functions
    /// (`MY::FN`) keep their `::`.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// `( query )`
    Subquery(Box<Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObjectKey {
    /// `name: value`, `"name": value`, and the shorthand `{ name }` (whose value is
    /// `Ident(name)`).
    Static(String),
    /// `[expr]: value`
    Computed(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Like,
    NotLike,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNotMatch,
    And,
    Or,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Self { kind, span }
    }
}
