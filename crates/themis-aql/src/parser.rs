//! AQL text → [`crate::ast::Query`].
//!
//! A hand-written recursive-descent parser over the tokens of [`crate::lexer`], with
//! precedence climbing for expressions. It follows ArangoDB's grammar (`grammar.y`)
//! and operator precedence, lowest to highest:
//!
//! | level | operators                                  | associativity |
//! |-------|--------------------------------------------|---------------|
//! | 0     | `? :`, `?:`                                | right         |
//! | 1     | `\|\|`, `OR`                               | left          |
//! | 2     | `&&`, `AND`                                | left          |
//! | 3     | `==` `!=` `LIKE` `NOT LIKE` `=~` `!~`      | left          |
//! | 4     | `IN` `NOT IN`                              | left          |
//! | 5     | `<` `<=` `>=` `>`                          | left          |
//! | 6     | `..`                                       | left          |
//! | 7     | `+` `-`                                    | left          |
//! | 8     | `*` `/` `%`                                | left          |
//! | 9     | unary `!` `NOT` `-` `+`                    | right         |
//! | 10    | calls, `.attr`, `[index]`, `[*]`, `[**]`   | postfix       |
//!
//! So `NOT a == b` is `(NOT a) == b` and `x IN [1] == true` is `(x IN [1]) == true`,
//! exactly as in ArangoDB.
//!
//! Array expansion follows ArangoDB's rules too: whatever follows `[*]` in the same
//! chain (`.attr`, `[i]`, `.@param`) is applied to each element (`CURRENT`); a second
//! `[*]` nests under the outermost expansion, iterating over what that one projects
//! so far; `[**]` (and `[***]` …) first completes everything before it, flattens that
//! by one (two …) levels, and then expands the flattened array.
//!
//! Invariants:
//! - every error is a [`QueryError`] of kind `Syntax` whose span is the offending
//!   token (or the zero-width end of the text when it ended too early), carrying the
//!   query text for the caret display;
//! - expressions nest at most [`MAX_NESTING`] levels (parentheses, brackets, unary
//!   operators, operator chains and access chains all count), so hostile input gets
//!   an error instead of exhausting the stack — here or later in the planner and
//!   executor, which walk the tree recursively. The parser's own recursion also stays
//!   within a fixed stack budget, which unoptimised builds reach first (at roughly 80
//!   levels of parentheses); both limits give the same "nested too deeply" error;
//! - spans in the tree are byte ranges into the text.

use std::cell::Cell;

use crate::ast::{
    BinaryOp, Collect, CollectionRef, Expr, ExprKind, Name, ObjectKey, Op, OpKind, Query, SortKey,
    UnaryOp,
};
use crate::error::{QueryError, Span};
use crate::lexer::{self, Keyword, Punct, Token, TokenKind};

/// How deeply expressions and subqueries may nest.
pub const MAX_NESTING: usize = 256;

/// How much stack the parser's recursion may use, whatever [`MAX_NESTING`] allows:
/// unoptimised builds use several times the stack per level that release builds do,
/// and the parser runs on threads with as little as 2 MiB (tokio workers, tests).
const STACK_BUDGET: usize = 1024 * 1024;

/// The address of a local in a fresh frame: how far the stack has grown.
#[inline(never)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::from_ref(&marker)).addr()
}

const MUST_END: &str = "must end with RETURN or a data-modification operation (INSERT, UPDATE, REPLACE, REMOVE, UPSERT)";
const OPERATIONS: &str =
    "an operation (FOR, LET, FILTER, SORT, LIMIT, COLLECT, RETURN, INSERT, UPDATE, REPLACE, REMOVE or UPSERT)";

/// Parses a whole query. The error carries its span and the query text.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    parse_with(text, |parser| parser.parse_query(QueryEnd::Eof))
}

/// Parses a standalone expression, such as a subscription filter: the whole text is
/// one expression. The error carries its span and the text.
pub(crate) fn parse_expression(text: &str) -> Result<Expr, QueryError> {
    parse_with(text, |parser| {
        let expr = parser.parse_expr()?;
        if !matches!(parser.peek().kind, TokenKind::Eof) {
            return Err(
                parser.unexpected("the end of the expression (combine conditions with AND / OR)")
            );
        }
        Ok(expr)
    })
}

fn parse_with<T>(
    text: &str,
    parse: impl FnOnce(&mut Parser) -> Result<T, QueryError>,
) -> Result<T, QueryError> {
    let lexer::Lexed { tokens, error } = lexer::tokenize(text);
    let mut parser = Parser {
        src: text,
        tokens,
        pos: 0,
        lex_error: error,
        reached_end: Cell::new(false),
        depth: 0,
        stack_base: stack_position(),
    };
    let result = parse(&mut parser);
    // The tokens stop where a lexical error is. If the parser got that far, whatever
    // it would say there is a consequence of the bad token, so report that instead;
    // an error it found earlier comes first in the text and wins.
    let result = match (result, parser.lex_error.take()) {
        (Ok(_), Some(lex)) => Err(lex),
        (Err(_), Some(lex)) if parser.reached_end.get() => Err(lex),
        (result, _) => result,
    };
    result.map_err(|e| e.in_query(text))
}

/// What ends the query being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryEnd {
    /// The top-level query: the end of the text.
    Eof,
    /// A subquery in parentheses: `)`.
    Paren,
    /// A subquery written directly as a function argument, `LENGTH(FOR …)`: `)` or `,`.
    Argument,
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    lex_error: Option<QueryError>,
    /// Set once the parser has looked at the end-of-input token.
    reached_end: Cell<bool>,
    depth: usize,
    stack_base: usize,
}

/// A `[*]` (or `[**]`) being built while the access chain after it is parsed.
struct Expansion {
    base: Expr,
    filter: Option<Expr>,
    limit: Option<Expr>,
    /// `None` while the element itself (`CURRENT`) is the result.
    projection: Option<Expr>,
    /// Where the implicit `CURRENT` is written: the stars.
    current_span: Span,
    /// A `[**]` with nothing applied to the elements is just its flattened base.
    flatten_only: bool,
    end: usize,
}

impl Expansion {
    fn take_projection(&mut self) -> Expr {
        self.projection
            .take()
            .unwrap_or_else(|| Expr::new(ExprKind::Ident("CURRENT".into()), self.current_span))
    }

    fn close(self) -> Expr {
        if self.flatten_only
            && self.filter.is_none()
            && self.limit.is_none()
            && self.projection.is_none()
        {
            return self.base;
        }
        let span = Span::new(self.base.span.start, self.end);
        Expr::new(
            ExprKind::Expand {
                base: Box::new(self.base),
                filter: self.filter.map(Box::new),
                limit: self.limit.map(Box::new),
                projection: self.projection.map(Box::new),
            },
            span,
        )
    }
}

/// One step of an access chain after `.` or inside `[...]`.
enum Access {
    Attribute(String),
    Index(Expr),
}

fn apply_access(target: Expr, access: Access, end: usize) -> Expr {
    let span = Span::new(target.span.start, end);
    let kind = match access {
        Access::Attribute(name) => ExprKind::Attribute(Box::new(target), name),
        Access::Index(index) => ExprKind::Index(Box::new(target), Box::new(index)),
    };
    Expr::new(kind, span)
}

/// Moves an expression out, leaving a placeholder that is always overwritten.
fn take_expr(slot: &mut Expr) -> Expr {
    std::mem::replace(slot, Expr::new(ExprKind::Null, slot.span))
}

/// Closes every open expansion into one expression.
fn close_expansions(root: &mut Expr, frames: &mut Vec<Expansion>) {
    while let Some(frame) = frames.pop() {
        let closed = frame.close();
        match frames.last_mut() {
            Some(outer) => outer.projection = Some(closed),
            None => *root = closed,
        }
    }
}

fn is_operation(kw: Keyword) -> bool {
    matches!(
        kw,
        Keyword::For
            | Keyword::Let
            | Keyword::Filter
            | Keyword::Sort
            | Keyword::Limit
            | Keyword::Collect
            | Keyword::Window
            | Keyword::Return
            | Keyword::Insert
            | Keyword::Update
            | Keyword::Replace
            | Keyword::Remove
            | Keyword::Upsert
    )
}

fn is_graph_keyword(kw: Keyword) -> bool {
    matches!(
        kw,
        Keyword::Outbound
            | Keyword::Inbound
            | Keyword::Any
            | Keyword::Graph
            | Keyword::ShortestPath
            | Keyword::KShortestPaths
            | Keyword::KPaths
            | Keyword::AllShortestPaths
    )
}

fn is_modification(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::Insert { .. }
            | OpKind::Update { .. }
            | OpKind::Replace { .. }
            | OpKind::Remove { .. }
            | OpKind::Upsert { .. }
    )
}

/// Binary operators by precedence level (see the module table).
const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_EQUALITY: u8 = 3;
const PREC_IN: u8 = 4;
const PREC_COMPARE: u8 = 5;
const PREC_RANGE: u8 = 6;
const PREC_ADD: u8 = 7;
const PREC_MUL: u8 = 8;

#[derive(Debug, Clone, Copy)]
enum Infix {
    Binary(BinaryOp),
    Range,
}

impl<'a> Parser<'a> {
    // ----- token access -------------------------------------------------------------

    fn tok(&self, ahead: usize) -> &Token {
        let last = self.tokens.len() - 1;
        let token = &self.tokens[(self.pos + ahead).min(last)];
        if matches!(token.kind, TokenKind::Eof) {
            self.reached_end.set(true);
        }
        token
    }

    fn peek(&self) -> &Token {
        self.tok(0)
    }

    fn span(&self) -> Span {
        self.peek().span
    }

    fn prev_end(&self) -> usize {
        match self.pos {
            0 => 0,
            pos => self.tokens[pos - 1].span.end,
        }
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if !matches!(token.kind, TokenKind::Eof) {
            self.pos += 1;
        }
        token
    }

    fn at_punct(&self, p: Punct) -> bool {
        self.peek().kind == TokenKind::Punct(p)
    }

    fn at_kw(&self, kw: Keyword) -> bool {
        self.peek().kind == TokenKind::Keyword(kw)
    }

    /// A contextual word such as `OPTIONS` or `COUNT`: an identifier, any case.
    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(w) if w.eq_ignore_ascii_case(word))
    }

    fn at_operation(&self) -> bool {
        matches!(self.peek().kind, TokenKind::Keyword(kw) if is_operation(kw))
    }

    fn eat_punct(&mut self, p: Punct) -> Option<Span> {
        self.at_punct(p).then(|| self.bump().span)
    }

    fn eat_kw(&mut self, kw: Keyword) -> Option<Span> {
        self.at_kw(kw).then(|| self.bump().span)
    }

    fn expect_punct(&mut self, p: Punct, expected: &str) -> Result<Span, QueryError> {
        self.eat_punct(p).ok_or_else(|| self.unexpected(expected))
    }

    // ----- errors -------------------------------------------------------------------

    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.start..span.end).unwrap_or("")
    }

    /// `'text'` of a token for messages, shortened when long; "end of query" at the end.
    fn describe(&self, token: &Token) -> String {
        if matches!(token.kind, TokenKind::Eof) {
            return "end of query".into();
        }
        let text = self.text(token.span);
        let first_line = text.lines().next().unwrap_or("");
        let mut shown: String = first_line.chars().take(40).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        format!("'{shown}'")
    }

    fn unexpected(&self, expected: &str) -> QueryError {
        let token = self.peek();
        QueryError::syntax(
            format!("unexpected {}: expected {expected}", self.describe(token)),
            token.span,
        )
    }

    fn enter(&mut self, span: Span) -> Result<(), QueryError> {
        self.depth += 1;
        let stack_used = self.stack_base.abs_diff(stack_position());
        if self.depth > MAX_NESTING || stack_used > STACK_BUDGET {
            return Err(QueryError::syntax(
                format!(
                    "query is nested too deeply (at most {MAX_NESTING} levels of nested expressions \
                     and subqueries); simplify it, e.g. use IN [...] instead of a long OR chain, \
                     or LET variables for parts"
                ),
                span,
            ));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth = self.depth.saturating_sub(levels);
    }

    // ----- queries and operations ---------------------------------------------------

    fn at_query_end(&self, end: QueryEnd) -> bool {
        matches!(
            (&self.peek().kind, end),
            (TokenKind::Eof, QueryEnd::Eof)
                | (
                    TokenKind::Punct(Punct::RParen),
                    QueryEnd::Paren | QueryEnd::Argument
                )
                | (TokenKind::Punct(Punct::Comma), QueryEnd::Argument)
        )
    }

    fn parse_query(&mut self, end: QueryEnd) -> Result<Query, QueryError> {
        let start = self.span().start;
        let mut ops: Vec<Op> = Vec::new();
        while !self.at_query_end(end) {
            // Operations are parsed out of line and pushed onto `ops` so that this
            // frame, which recurs once per subquery level, stays small.
            self.parse_operation(&mut ops, end)?;
            if ops
                .last()
                .is_some_and(|op| matches!(op.kind, OpKind::Return { .. }))
            {
                if !self.at_query_end(end) {
                    return Err(self.after_return(end));
                }
                break;
            }
        }
        let complete = ops.last().is_some_and(|op| {
            matches!(op.kind, OpKind::Return { .. }) || is_modification(&op.kind)
        });
        if !complete {
            return Err(self.incomplete_query(end, ops.is_empty()));
        }
        Ok(Query {
            ops,
            span: Span::new(start, self.prev_end()),
        })
    }

    #[inline(never)]
    fn parse_operation(&mut self, ops: &mut Vec<Op>, end: QueryEnd) -> Result<(), QueryError> {
        let token = self.peek().clone();
        let TokenKind::Keyword(kw) = token.kind else {
            return Err(self.not_an_operation(end));
        };
        match kw {
            Keyword::For => self.parse_for(ops),
            Keyword::Let => self.parse_let(ops),
            Keyword::Filter => self.parse_filter(ops),
            Keyword::Sort => self.parse_sort(ops),
            Keyword::Limit => self.parse_limit(ops),
            Keyword::Collect => self.parse_collect(ops),
            Keyword::Return => self.parse_return(ops),
            Keyword::Insert => self.parse_insert(ops),
            Keyword::Update | Keyword::Replace => self.parse_update_replace(ops, kw),
            Keyword::Remove => self.parse_remove(ops),
            Keyword::Upsert => self.parse_upsert(ops),
            Keyword::Window => Err(QueryError::syntax(
                "WINDOW operations are not supported",
                token.span,
            )),
            Keyword::With if ops.is_empty() && end == QueryEnd::Eof => Err(QueryError::syntax(
                "WITH collection declarations are not supported; start the query with FOR, LET or RETURN",
                token.span,
            )),
            _ => Err(self.not_an_operation(end)),
        }
    }

    #[inline(never)]
    fn parse_filter(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let cond = self.parse_expr()?;
        ops.push(self.op(kw, OpKind::Filter(cond)));
        Ok(())
    }

    fn incomplete_query(&self, end: QueryEnd, empty: bool) -> QueryError {
        let message = match (end, empty) {
            (QueryEnd::Eof, true) => format!("empty query: query {MUST_END}"),
            (QueryEnd::Eof, false) => format!("query {MUST_END}"),
            _ => format!("subquery {MUST_END}"),
        };
        QueryError::syntax(message, self.span())
    }

    fn not_an_operation(&self, end: QueryEnd) -> QueryError {
        let expected = match end {
            QueryEnd::Eof => OPERATIONS.to_string(),
            QueryEnd::Paren => format!("{OPERATIONS} or ')' to close the subquery"),
            QueryEnd::Argument => format!("{OPERATIONS}, or ',' or ')' after the subquery"),
        };
        self.unexpected(&expected)
    }

    fn after_return(&self, end: QueryEnd) -> QueryError {
        let token = self.peek();
        let scope = if end == QueryEnd::Eof {
            "query"
        } else {
            "subquery"
        };
        if let TokenKind::Keyword(kw) = token.kind {
            if is_operation(kw) {
                return QueryError::syntax(
                    format!(
                        "unexpected {}: RETURN must be the last operation of a {scope}; \
                         put further operations in a subquery",
                        self.describe(token)
                    ),
                    token.span,
                );
            }
        }
        let expected = match end {
            QueryEnd::Eof => "an operator or the end of the query after the RETURN expression",
            QueryEnd::Paren => "an operator or ')' to close the subquery",
            QueryEnd::Argument => "an operator, or ',' or ')' after the subquery",
        };
        self.unexpected(expected)
    }

    /// An operation from its keyword to the last token consumed.
    fn op(&self, keyword: Span, kind: OpKind) -> Op {
        Op {
            kind,
            span: Span::new(keyword.start, self.prev_end().max(keyword.end)),
        }
    }

    fn parse_var_name(&mut self, context: &str) -> Result<Name, QueryError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Ident(name) | TokenKind::QuotedIdent(name) => {
                self.bump();
                Ok(Name {
                    name,
                    span: token.span,
                })
            }
            TokenKind::Keyword(_) => Err(QueryError::syntax(
                format!(
                    "unexpected {}: expected a variable name {context}; {} is a reserved word \
                     (quote it with backticks to use it as a name)",
                    self.describe(&token),
                    self.describe(&token)
                ),
                token.span,
            )),
            _ => Err(self.unexpected(&format!("a variable name {context}"))),
        }
    }

    #[inline(never)]
    fn parse_for(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let var = self.parse_var_name("after FOR")?;
        if self.at_punct(Punct::Comma) {
            return Err(QueryError::syntax(
                "graph traversals (FOR v, e, p IN ...) are not supported: FOR takes a single variable",
                self.span(),
            ));
        }
        if self.eat_kw(Keyword::In).is_none() {
            return Err(self.unexpected("IN after the loop variable"));
        }
        self.reject_graph_syntax()?;
        let source = self.parse_expr()?;
        self.reject_graph_syntax()?;
        for (word, what) in [
            ("SEARCH", "FOR ... SEARCH (views) is not supported"),
            ("OPTIONS", "FOR ... OPTIONS is not supported"),
            ("PRUNE", "graph traversals (PRUNE) are not supported"),
        ] {
            if self.at_word(word) {
                return Err(QueryError::syntax(what, self.span()));
            }
        }
        ops.push(self.op(kw, OpKind::For { var, source }));
        Ok(())
    }

    fn reject_graph_syntax(&self) -> Result<(), QueryError> {
        match self.peek().kind {
            TokenKind::Keyword(kw) if is_graph_keyword(kw) => Err(QueryError::syntax(
                format!(
                    "unexpected {}: graph traversals and path searches are not supported",
                    self.describe(self.peek())
                ),
                self.span(),
            )),
            _ => Ok(()),
        }
    }

    /// `LET a = x[, b = y ...]`: one operation per variable.
    #[inline(never)]
    fn parse_let(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let mut start = self.bump().span;
        loop {
            let var = self.parse_var_name("after LET")?;
            self.expect_punct(Punct::Assign, "'=' after the variable name")?;
            let expr = self.parse_expr()?;
            ops.push(self.op(start, OpKind::Let { var, expr }));
            if self.eat_punct(Punct::Comma).is_none() {
                return Ok(());
            }
            start = self.span();
        }
    }

    #[inline(never)]
    fn parse_sort(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let mut keys = Vec::new();
        loop {
            let expr = self.parse_expr()?;
            let ascending = if self.eat_kw(Keyword::Desc).is_some() {
                false
            } else {
                self.eat_kw(Keyword::Asc);
                true
            };
            keys.push(SortKey { expr, ascending });
            if self.eat_punct(Punct::Comma).is_none() {
                break;
            }
        }
        ops.push(self.op(kw, OpKind::Sort(keys)));
        Ok(())
    }

    #[inline(never)]
    fn parse_limit(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let first = self.parse_expr()?;
        let kind = if self.eat_punct(Punct::Comma).is_some() {
            let count = self.parse_expr()?;
            OpKind::Limit {
                offset: Some(first),
                count,
            }
        } else {
            OpKind::Limit {
                offset: None,
                count: first,
            }
        };
        ops.push(self.op(kw, kind));
        Ok(())
    }

    /// `name = expr, ...` (COLLECT groups and AGGREGATE lists).
    fn parse_assignments(&mut self, context: &str) -> Result<Vec<(Name, Expr)>, QueryError> {
        let mut list = Vec::new();
        loop {
            let var = self.parse_var_name(context)?;
            self.expect_punct(Punct::Assign, "'=' after the variable name")?;
            let expr = self.parse_expr()?;
            list.push((var, expr));
            if self.eat_punct(Punct::Comma).is_none() {
                return Ok(list);
            }
        }
    }

    #[inline(never)]
    fn parse_collect(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let groups = match self.peek().kind {
            TokenKind::Ident(_) | TokenKind::QuotedIdent(_) => {
                self.parse_assignments("in COLLECT")?
            }
            _ => Vec::new(),
        };
        let mut aggregates = Vec::new();
        let aggregate_kw = self.eat_kw(Keyword::Aggregate);
        if aggregate_kw.is_some() {
            aggregates = self.parse_assignments("after AGGREGATE")?;
            if let Some((_, expr)) = aggregates
                .iter()
                .find(|(_, expr)| !matches!(expr.kind, ExprKind::Call { .. }))
            {
                return Err(QueryError::syntax(
                    "an AGGREGATE expression must be a function call, e.g. total = SUM(u.amount)",
                    expr.span,
                ));
            }
        }
        let mut into = None;
        if let Some(into_kw) = self.eat_kw(Keyword::Into) {
            if groups.is_empty() && aggregates.is_empty() {
                return Err(QueryError::syntax(
                    "COLLECT ... INTO needs grouping variables or AGGREGATE first, e.g. COLLECT city = u.city INTO g",
                    into_kw,
                ));
            }
            let var = self.parse_var_name("after INTO")?;
            let projection = match self.eat_punct(Punct::Assign) {
                Some(_) => Some(self.parse_expr()?),
                None => None,
            };
            into = Some((var, projection));
            if self.at_word("KEEP") {
                return Err(QueryError::syntax(
                    "COLLECT ... INTO ... KEEP is not supported; use INTO g = { ... } to choose what to keep",
                    self.span(),
                ));
            }
        }
        let mut count_into = None;
        if let Some(with_kw) = self.eat_kw(Keyword::With) {
            if !self.at_word("COUNT") {
                return Err(self.unexpected("COUNT after WITH (COLLECT ... WITH COUNT INTO var)"));
            }
            self.bump();
            if self.eat_kw(Keyword::Into).is_none() {
                return Err(self.unexpected("INTO after WITH COUNT"));
            }
            let var = self.parse_var_name("after WITH COUNT INTO")?;
            if into.is_some() || !aggregates.is_empty() {
                return Err(QueryError::syntax(
                    "WITH COUNT INTO cannot be combined with INTO or AGGREGATE; count with AGGREGATE n = LENGTH(1) instead",
                    Span::new(with_kw.start, var.span.end),
                ));
            }
            count_into = Some(var);
        }
        if groups.is_empty() && aggregates.is_empty() && count_into.is_none() {
            return Err(self.unexpected(
                "a grouping variable (name = expression), AGGREGATE or WITH COUNT INTO after COLLECT",
            ));
        }
        if self.at_word("OPTIONS") {
            return Err(QueryError::syntax(
                "COLLECT ... OPTIONS is not supported",
                self.span(),
            ));
        }
        ops.push(self.op(
            kw,
            OpKind::Collect(Collect {
                groups,
                aggregates,
                into,
                count_into,
            }),
        ));
        Ok(())
    }

    #[inline(never)]
    fn parse_return(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        // RETURN DISTINCT needs a FOR before it in the same query, as in ArangoDB.
        let in_loop = ops.iter().any(|op| matches!(op.kind, OpKind::For { .. }));
        let kw = self.bump().span;
        let distinct = match self.eat_kw(Keyword::Distinct) {
            Some(span) if !in_loop => {
                return Err(QueryError::syntax(
                    "RETURN DISTINCT can only be used after a FOR loop; outside one use RETURN UNIQUE(...)",
                    span,
                ))
            }
            Some(_) => true,
            None => false,
        };
        let expr = self.parse_expr()?;
        ops.push(self.op(kw, OpKind::Return { distinct, expr }));
        Ok(())
    }

    /// `IN|INTO collection [OPTIONS {...}]` after a modification's document.
    fn parse_target(&mut self, after: &str) -> Result<(CollectionRef, Option<Expr>), QueryError> {
        if self.eat_kw(Keyword::In).is_none() && self.eat_kw(Keyword::Into).is_none() {
            return Err(self.unexpected(&format!("IN or INTO and a collection name after {after}")));
        }
        let token = self.peek().clone();
        let collection = match token.kind {
            TokenKind::Ident(name) | TokenKind::QuotedIdent(name) | TokenKind::String(name) => {
                CollectionRef::Name(Name {
                    name,
                    span: token.span,
                })
            }
            TokenKind::BindCollection(name) => CollectionRef::Bind(Name {
                name,
                span: token.span,
            }),
            TokenKind::BindVar(name) => {
                return Err(QueryError::syntax(
                    format!(
                        "unexpected '@{name}': a collection bind parameter needs two @ signs (@@{name})"
                    ),
                    token.span,
                ))
            }
            TokenKind::Keyword(_) => {
                return Err(QueryError::syntax(
                    format!(
                        "unexpected {}: expected a collection name; quote names that are reserved words with backticks",
                        self.describe(&token)
                    ),
                    token.span,
                ))
            }
            _ => return Err(self.unexpected("a collection name")),
        };
        self.bump();
        let options = if self.at_word("OPTIONS") {
            self.bump();
            if !self.at_punct(Punct::LBrace) {
                return Err(
                    self.unexpected("an object after OPTIONS, e.g. OPTIONS { keepNull: false }")
                );
            }
            Some(self.parse_object()?)
        } else {
            None
        };
        Ok((collection, options))
    }

    #[inline(never)]
    fn parse_insert(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let doc = self.parse_expr_no_in()?;
        let (collection, options) = self.parse_target("the document to insert")?;
        ops.push(self.op(
            kw,
            OpKind::Insert {
                doc,
                collection,
                options,
            },
        ));
        Ok(())
    }

    #[inline(never)]
    fn parse_update_replace(
        &mut self,
        ops: &mut Vec<Op>,
        which: Keyword,
    ) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let key = self.parse_expr_no_in()?;
        let with = match self.eat_kw(Keyword::With) {
            Some(_) => Some(self.parse_expr_no_in()?),
            None => None,
        };
        let after = if with.is_some() {
            "the document"
        } else {
            "the document (or WITH and the new values)"
        };
        let (collection, options) = self.parse_target(after)?;
        let kind = if which == Keyword::Update {
            OpKind::Update {
                key,
                with,
                collection,
                options,
            }
        } else {
            OpKind::Replace {
                key,
                with,
                collection,
                options,
            }
        };
        ops.push(self.op(kw, kind));
        Ok(())
    }

    #[inline(never)]
    fn parse_remove(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        let key = self.parse_expr_no_in()?;
        let (collection, options) = self.parse_target("the key or document to remove")?;
        ops.push(self.op(
            kw,
            OpKind::Remove {
                key,
                collection,
                options,
            },
        ));
        Ok(())
    }

    #[inline(never)]
    fn parse_upsert(&mut self, ops: &mut Vec<Op>) -> Result<(), QueryError> {
        let kw = self.bump().span;
        if self.at_kw(Keyword::Filter) {
            return Err(QueryError::syntax(
                "UPSERT FILTER is not supported; give the search document as an object, e.g. UPSERT { name: 'x' }",
                self.span(),
            ));
        }
        let search = self.parse_expr()?;
        if !matches!(search.kind, ExprKind::Object(_) | ExprKind::BindVar(_)) {
            return Err(QueryError::syntax(
                "UPSERT needs an object literal or a bind parameter as its search document, e.g. UPSERT { name: 'x' }",
                search.span,
            ));
        }
        if self.eat_kw(Keyword::Insert).is_none() {
            return Err(self.unexpected("INSERT after the UPSERT search document"));
        }
        let insert = self.parse_expr()?;
        let replace = if self.eat_kw(Keyword::Replace).is_some() {
            true
        } else if self.eat_kw(Keyword::Update).is_some() {
            false
        } else {
            return Err(self.unexpected("UPDATE or REPLACE after the UPSERT insert document"));
        };
        let update = self.parse_expr_no_in()?;
        let (collection, options) = self.parse_target("the UPSERT update document")?;
        ops.push(self.op(
            kw,
            OpKind::Upsert {
                search,
                insert,
                update,
                replace,
                collection,
                options,
            },
        ));
        Ok(())
    }

    // ----- expressions --------------------------------------------------------------

    fn parse_expr(&mut self) -> Result<Expr, QueryError> {
        self.parse_expr_ctx(false)
    }

    /// An expression that stops before a top-level `IN`/`NOT IN`, for the documents
    /// of data-modification operations (`INSERT doc IN coll`). Inside brackets,
    /// parentheses and arguments `IN` is an operator as usual.
    fn parse_expr_no_in(&mut self) -> Result<Expr, QueryError> {
        self.parse_expr_ctx(true)
    }

    fn parse_expr_ctx(&mut self, no_in: bool) -> Result<Expr, QueryError> {
        self.enter(self.span())?;
        let cond = self.parse_binary(PREC_OR, no_in)?;
        let expr = if self.eat_punct(Punct::Question).is_some() {
            let then = if self.eat_punct(Punct::Colon).is_some() {
                None
            } else {
                // The middle is delimited by `?` and `:`, so IN is unambiguous there.
                let then = self.parse_expr_ctx(false)?;
                self.expect_punct(
                    Punct::Colon,
                    "':' and the else-branch of the ternary operator",
                )?;
                Some(Box::new(then))
            };
            // Right-associative: `a ? b : c ? d : e` is `a ? b : (c ? d : e)`.
            let otherwise = self.parse_expr_ctx(no_in)?;
            let span = cond.span.to(otherwise.span);
            Expr::new(
                ExprKind::Ternary {
                    cond: Box::new(cond),
                    then,
                    otherwise: Box::new(otherwise),
                },
                span,
            )
        } else {
            cond
        };
        self.leave(1);
        Ok(expr)
    }

    /// The binary operator at the current position, its precedence and how many
    /// tokens it spans, or `None` where an expression ends.
    fn infix(&self, no_in: bool) -> Result<Option<(Infix, u8, usize)>, QueryError> {
        use BinaryOp as B;
        let token = self.peek();
        let found = match &token.kind {
            TokenKind::Punct(p) => match p {
                Punct::OrOr => (Infix::Binary(B::Or), PREC_OR, 1),
                Punct::AndAnd => (Infix::Binary(B::And), PREC_AND, 1),
                Punct::EqEq => (Infix::Binary(B::Eq), PREC_EQUALITY, 1),
                Punct::NotEq => (Infix::Binary(B::Ne), PREC_EQUALITY, 1),
                Punct::RegexMatch => (Infix::Binary(B::RegexMatch), PREC_EQUALITY, 1),
                Punct::RegexNotMatch => (Infix::Binary(B::RegexNotMatch), PREC_EQUALITY, 1),
                Punct::Lt => (Infix::Binary(B::Lt), PREC_COMPARE, 1),
                Punct::Le => (Infix::Binary(B::Le), PREC_COMPARE, 1),
                Punct::Gt => (Infix::Binary(B::Gt), PREC_COMPARE, 1),
                Punct::Ge => (Infix::Binary(B::Ge), PREC_COMPARE, 1),
                Punct::Range => (Infix::Range, PREC_RANGE, 1),
                Punct::Plus => (Infix::Binary(B::Add), PREC_ADD, 1),
                Punct::Minus => (Infix::Binary(B::Sub), PREC_ADD, 1),
                Punct::Star => {
                    let next = self.tok(1);
                    if next.kind == TokenKind::Punct(Punct::Star)
                        && next.span.start == token.span.end
                    {
                        return Err(QueryError::syntax(
                            "unknown operator '**': AQL has no power operator, use POW(base, exp)",
                            token.span.to(next.span),
                        ));
                    }
                    (Infix::Binary(B::Mul), PREC_MUL, 1)
                }
                Punct::Slash => (Infix::Binary(B::Div), PREC_MUL, 1),
                Punct::Percent => (Infix::Binary(B::Mod), PREC_MUL, 1),
                Punct::Assign => {
                    return Err(QueryError::syntax(
                        "unexpected '=': use == to compare values",
                        token.span,
                    ))
                }
                _ => return Ok(None),
            },
            TokenKind::Keyword(kw) => match kw {
                Keyword::Or => (Infix::Binary(B::Or), PREC_OR, 1),
                Keyword::And => (Infix::Binary(B::And), PREC_AND, 1),
                Keyword::Like => (Infix::Binary(B::Like), PREC_EQUALITY, 1),
                Keyword::In if no_in => return Ok(None),
                Keyword::In => (Infix::Binary(B::In), PREC_IN, 1),
                Keyword::Not => {
                    let next = self.tok(1);
                    match next.kind {
                        TokenKind::Keyword(Keyword::In) if no_in => return Ok(None),
                        TokenKind::Keyword(Keyword::In) => (Infix::Binary(B::NotIn), PREC_IN, 2),
                        TokenKind::Keyword(Keyword::Like) => {
                            (Infix::Binary(B::NotLike), PREC_EQUALITY, 2)
                        }
                        TokenKind::Punct(Punct::RegexMatch) => {
                            (Infix::Binary(B::RegexNotMatch), PREC_EQUALITY, 2)
                        }
                        TokenKind::Punct(Punct::RegexNotMatch) => {
                            (Infix::Binary(B::RegexMatch), PREC_EQUALITY, 2)
                        }
                        _ => {
                            return Err(QueryError::syntax(
                                format!(
                                    "unexpected {} after NOT: expected IN or LIKE (between two values NOT only forms NOT IN and NOT LIKE)",
                                    self.describe(next)
                                ),
                                next.span,
                            ))
                        }
                    }
                }
                Keyword::All | Keyword::Any | Keyword::None => {
                    let next = &self.tok(1).kind;
                    let comparison = matches!(
                        next,
                        TokenKind::Keyword(Keyword::In | Keyword::Not)
                            | TokenKind::Punct(
                                Punct::EqEq
                                    | Punct::NotEq
                                    | Punct::Lt
                                    | Punct::Le
                                    | Punct::Gt
                                    | Punct::Ge
                            )
                    );
                    if comparison {
                        return Err(QueryError::syntax(
                            format!(
                                "array comparison operators ({} ==, {} IN, ...) are not supported",
                                self.text(token.span).to_ascii_uppercase(),
                                self.text(token.span).to_ascii_uppercase()
                            ),
                            token.span,
                        ));
                    }
                    return Ok(None);
                }
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(found))
    }

    fn parse_binary(&mut self, min_prec: u8, no_in: bool) -> Result<Expr, QueryError> {
        let mut left = self.parse_unary()?;
        let mut chain = 0;
        while let Some((op, prec, len)) = self.infix(no_in)? {
            if prec < min_prec {
                break;
            }
            // Each link of a chain is one more level of the tree (`a OR b OR c` is
            // left-deep), so chains count towards the nesting limit.
            self.enter(self.span())?;
            chain += 1;
            for _ in 0..len {
                self.bump();
            }
            let right = self.parse_binary(prec + 1, no_in)?;
            let span = left.span.to(right.span);
            let kind = match op {
                Infix::Binary(op) => ExprKind::Binary(op, Box::new(left), Box::new(right)),
                Infix::Range => ExprKind::Range(Box::new(left), Box::new(right)),
            };
            left = Expr::new(kind, span);
        }
        self.leave(chain);
        Ok(left)
    }

    fn parse_unary(&mut self) -> Result<Expr, QueryError> {
        let op = match self.peek().kind {
            TokenKind::Punct(Punct::Bang) | TokenKind::Keyword(Keyword::Not) => UnaryOp::Not,
            TokenKind::Punct(Punct::Minus) => UnaryOp::Neg,
            TokenKind::Punct(Punct::Plus) => UnaryOp::Plus,
            _ => return self.parse_postfix(),
        };
        let start = self.bump().span;
        self.enter(start)?;
        let operand = self.parse_unary()?;
        self.leave(1);
        let span = start.to(operand.span);
        Ok(Expr::new(ExprKind::Unary(op, Box::new(operand)), span))
    }

    fn parse_postfix(&mut self) -> Result<Expr, QueryError> {
        let mut root = self.parse_primary()?;
        // Open expansions: at most two, the outermost and the one nested under it.
        let mut frames: Vec<Expansion> = Vec::new();
        let mut steps = 0;
        loop {
            let step_span = self.span();
            match self.peek().kind {
                TokenKind::Punct(Punct::Dot) => {
                    self.bump();
                    let access = self.parse_attribute_name()?;
                    self.apply(&mut root, &mut frames, access);
                }
                TokenKind::Punct(Punct::LBracket) => match self.tok(1).kind {
                    TokenKind::Punct(Punct::Star) => {
                        self.parse_expansion(&mut root, &mut frames)?;
                    }
                    TokenKind::Punct(Punct::Question) => {
                        return Err(QueryError::syntax(
                            "the array filter operator [? ...] is not supported; use LENGTH(arr[* FILTER ...]) > 0",
                            Span::new(step_span.start, self.tok(1).span.end),
                        ));
                    }
                    _ => {
                        self.bump();
                        let index = self.parse_expr()?;
                        self.expect_punct(Punct::RBracket, "']' to close the index")?;
                        self.apply(&mut root, &mut frames, Access::Index(index));
                    }
                },
                _ => break,
            }
            steps += 1;
            self.enter(step_span)?;
        }
        close_expansions(&mut root, &mut frames);
        self.leave(steps);
        Ok(root)
    }

    /// After `.`: a name (keywords allowed, spelled as written) or `@param`.
    fn parse_attribute_name(&mut self) -> Result<Access, QueryError> {
        let token = self.peek().clone();
        let access = match token.kind {
            TokenKind::Ident(name) | TokenKind::QuotedIdent(name) => Access::Attribute(name),
            TokenKind::Keyword(_) => Access::Attribute(self.text(token.span).to_string()),
            TokenKind::BindVar(name) => {
                Access::Index(Expr::new(ExprKind::BindVar(name), token.span))
            }
            TokenKind::BindCollection(name) => {
                return Err(QueryError::syntax(
                    format!(
                        "unexpected '@@{name}': an attribute name comes from a value bind parameter (@{name}), not a collection one"
                    ),
                    token.span,
                ))
            }
            _ => return Err(self.unexpected("an attribute name after '.'")),
        };
        self.bump();
        Ok(access)
    }

    /// Applies an access step to the innermost open expansion's elements, or to the
    /// expression itself when no expansion is open.
    fn apply(&self, root: &mut Expr, frames: &mut [Expansion], access: Access) {
        let end = self.prev_end();
        match frames.last_mut() {
            Some(frame) => {
                let target = frame.take_projection();
                frame.projection = Some(apply_access(target, access, end));
            }
            None => *root = apply_access(take_expr(root), access, end),
        }
        for frame in frames.iter_mut() {
            frame.end = end;
        }
    }

    /// `[*]`, `[**]`, … with optional inline `FILTER`, `LIMIT` and `RETURN`.
    fn parse_expansion(
        &mut self,
        root: &mut Expr,
        frames: &mut Vec<Expansion>,
    ) -> Result<(), QueryError> {
        self.bump(); // [
        let stars_start = self.span().start;
        let mut stars: u32 = 0;
        while self.eat_punct(Punct::Star).is_some() {
            stars += 1;
        }
        let current_span = Span::new(stars_start, self.prev_end());
        let filter = match self.eat_kw(Keyword::Filter) {
            Some(_) => Some(self.parse_expr()?),
            None => None,
        };
        let limit = match self.eat_kw(Keyword::Limit) {
            Some(_) => {
                let count = self.parse_expr()?;
                if self.at_punct(Punct::Comma) {
                    return Err(QueryError::syntax(
                        "LIMIT offset, count inside an array expansion is not supported; use [* LIMIT count] or SLICE()",
                        self.span(),
                    ));
                }
                Some(count)
            }
            None => None,
        };
        let projection = match self.eat_kw(Keyword::Return) {
            Some(_) => Some(self.parse_expr()?),
            None => None,
        };
        let expected = match (&filter, &limit, &projection) {
            (None, None, None) => "FILTER, LIMIT, RETURN or ']' in the array expansion",
            (_, None, None) => "LIMIT, RETURN or ']' in the array expansion",
            (_, _, None) => "RETURN or ']' in the array expansion",
            _ => "']' to close the array expansion",
        };
        let end = self.expect_punct(Punct::RBracket, expected)?.end;

        let (base, flatten_only) = if stars == 1 {
            // ArangoDB nests a further [*] directly under the outermost expansion,
            // iterating over what that one projects so far.
            let base = if frames.is_empty() {
                take_expr(root)
            } else {
                while frames.len() > 1 {
                    let inner = frames.pop().map(Expansion::close);
                    if let (Some(inner), Some(outer)) = (inner, frames.last_mut()) {
                        outer.projection = Some(inner);
                    }
                }
                match frames.last_mut() {
                    Some(outer) => outer.take_projection(),
                    None => take_expr(root),
                }
            };
            (base, false)
        } else {
            // [**] completes everything before it, then flattens that.
            close_expansions(root, frames);
            let span = Span::new(root.span.start, end);
            let flat = ExprKind::Flatten {
                base: Box::new(take_expr(root)),
                depth: stars - 1,
            };
            (Expr::new(flat, span), true)
        };
        frames.push(Expansion {
            base,
            filter,
            limit,
            projection,
            current_span,
            flatten_only,
            end,
        });
        for frame in frames.iter_mut() {
            frame.end = end;
        }
        Ok(())
    }

    fn parse_primary(&mut self) -> Result<Expr, QueryError> {
        let token = self.peek().clone();
        let span = token.span;
        let kind = match token.kind {
            TokenKind::Number(n) => ExprKind::Number(n),
            TokenKind::String(s) => ExprKind::String(s),
            TokenKind::Keyword(Keyword::Null) => ExprKind::Null,
            TokenKind::Keyword(Keyword::True) => ExprKind::Bool(true),
            TokenKind::Keyword(Keyword::False) => ExprKind::Bool(false),
            TokenKind::BindVar(name) => ExprKind::BindVar(name),
            TokenKind::BindCollection(name) => ExprKind::BindCollection(name),
            TokenKind::QuotedIdent(name) => ExprKind::Ident(name),
            TokenKind::Ident(name) => {
                if matches!(
                    self.tok(1).kind,
                    TokenKind::Punct(Punct::LParen | Punct::Scope)
                ) {
                    return self.parse_call();
                }
                ExprKind::Ident(name)
            }
            // LIKE is also a function: LIKE(text, pattern, caseInsensitive).
            TokenKind::Keyword(Keyword::Like)
                if self.tok(1).kind == TokenKind::Punct(Punct::LParen) =>
            {
                return self.parse_call();
            }
            TokenKind::Punct(Punct::LParen) => return self.parse_parenthesized(),
            TokenKind::Punct(Punct::LBracket) => return self.parse_array(),
            TokenKind::Punct(Punct::LBrace) => return self.parse_object(),
            TokenKind::Keyword(kw) if is_operation(kw) => {
                return Err(self.unexpected(
                    "an expression (write a subquery in parentheses: (FOR ... RETURN ...))",
                ))
            }
            _ => return Err(self.unexpected("an expression")),
        };
        self.bump();
        Ok(Expr::new(kind, span))
    }

    /// `NAME(args)` or `NS::NAME(args)`; the name is upper-cased.
    fn parse_call(&mut self) -> Result<Expr, QueryError> {
        let first = self.bump();
        let mut name = self.text(first.span).to_ascii_uppercase();
        while self.eat_punct(Punct::Scope).is_some() {
            match self.peek().kind {
                TokenKind::Ident(_) => {
                    let part = self.bump();
                    name.push_str("::");
                    name.push_str(&self.text(part.span).to_ascii_uppercase());
                }
                _ => return Err(self.unexpected("a function name after '::'")),
            }
        }
        self.expect_punct(Punct::LParen, "'(' after the function name")?;
        let mut args = Vec::new();
        if !self.at_punct(Punct::RParen) {
            loop {
                let arg = if self.at_operation() {
                    // ArangoDB accepts a bare subquery as an argument: LENGTH(FOR ...).
                    self.enter(self.span())?;
                    let query = self.parse_query(QueryEnd::Argument)?;
                    self.leave(1);
                    let span = query.span;
                    Expr::new(ExprKind::Subquery(Box::new(query)), span)
                } else {
                    self.parse_expr()?
                };
                args.push(arg);
                if self.eat_punct(Punct::Comma).is_none() {
                    break;
                }
            }
        }
        let close = self.expect_punct(Punct::RParen, "',' or ')' after the function argument")?;
        Ok(Expr::new(
            ExprKind::Call { name, args },
            first.span.to(close),
        ))
    }

    /// `( expression )` or a subquery `( FOR ... RETURN ... )`.
    fn parse_parenthesized(&mut self) -> Result<Expr, QueryError> {
        let open = self.bump().span;
        if self.at_operation() {
            self.enter(open)?;
            let query = self.parse_query(QueryEnd::Paren)?;
            let close = self.expect_punct(Punct::RParen, "')' to close the subquery")?;
            self.leave(1);
            return Ok(Expr::new(
                ExprKind::Subquery(Box::new(query)),
                open.to(close),
            ));
        }
        let inner = self.parse_expr()?;
        let close = self.expect_punct(Punct::RParen, "')' to close the parenthesis")?;
        Ok(Expr::new(inner.kind, open.to(close)))
    }

    fn parse_array(&mut self) -> Result<Expr, QueryError> {
        let open = self.bump().span;
        let mut items = Vec::new();
        let close = loop {
            if let Some(close) = self.eat_punct(Punct::RBracket) {
                break close;
            }
            items.push(self.parse_expr()?);
            if self.eat_punct(Punct::Comma).is_none() {
                break self.expect_punct(Punct::RBracket, "',' or ']' in the array")?;
            }
        };
        Ok(Expr::new(ExprKind::Array(items), open.to(close)))
    }

    fn parse_object(&mut self) -> Result<Expr, QueryError> {
        let open = self.bump().span;
        let mut entries = Vec::new();
        let close = loop {
            if let Some(close) = self.eat_punct(Punct::RBrace) {
                break close;
            }
            entries.push(self.parse_object_entry()?);
            if self.eat_punct(Punct::Comma).is_none() {
                break self.expect_punct(Punct::RBrace, "',' or '}' in the object")?;
            }
        };
        Ok(Expr::new(ExprKind::Object(entries), open.to(close)))
    }

    fn parse_object_entry(&mut self) -> Result<(ObjectKey, Expr), QueryError> {
        let token = self.peek().clone();
        let key = match token.kind {
            TokenKind::Ident(name) | TokenKind::QuotedIdent(name) => {
                self.bump();
                // Shorthand `{ name }` means `{ name: name }`.
                if self.at_punct(Punct::Comma) || self.at_punct(Punct::RBrace) {
                    let value = Expr::new(ExprKind::Ident(name.clone()), token.span);
                    return Ok((ObjectKey::Static(name), value));
                }
                ObjectKey::Static(name)
            }
            TokenKind::Keyword(_) => {
                self.bump();
                ObjectKey::Static(self.text(token.span).to_string())
            }
            TokenKind::String(name) => {
                self.bump();
                ObjectKey::Static(name)
            }
            TokenKind::BindVar(name) => {
                self.bump();
                ObjectKey::Computed(Expr::new(ExprKind::BindVar(name), token.span))
            }
            TokenKind::Punct(Punct::LBracket) => {
                self.bump();
                let key = self.parse_expr()?;
                self.expect_punct(Punct::RBracket, "']' after the computed attribute name")?;
                ObjectKey::Computed(key)
            }
            _ => {
                return Err(
                    self.unexpected("an attribute name, '[expression]' or '}' in the object")
                )
            }
        };
        self.expect_punct(Punct::Colon, "':' after the attribute name")?;
        let value = self.parse_expr()?;
        Ok((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ----- helpers ------------------------------------------------------------------

    fn q(text: &str) -> Query {
        match parse(text) {
            Ok(query) => query,
            Err(e) => panic!("{text:?} failed to parse:\n{e}"),
        }
    }

    fn err(text: &str) -> QueryError {
        match parse(text) {
            Ok(query) => panic!("{text:?} parsed but should fail: {query:#?}"),
            Err(e) => e,
        }
    }

    /// The expression of `RETURN <text>`.
    fn ret(text: &str) -> Expr {
        let query = q(&format!("RETURN {text}"));
        match query.ops.into_iter().next().map(|op| op.kind) {
            Some(OpKind::Return { expr, .. }) => expr,
            other => panic!("not a RETURN: {other:?}"),
        }
    }

    /// `RETURN <text>` as an S-expression.
    fn s(text: &str) -> String {
        sexp(&ret(text))
    }

    fn opt(e: &Option<Box<Expr>>) -> String {
        e.as_deref().map_or("_".into(), sexp)
    }

    fn sexp(e: &Expr) -> String {
        use BinaryOp as B;
        match &e.kind {
            ExprKind::Null => "null".into(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Number(n) => n.to_string(),
            ExprKind::String(s) => format!("{s:?}"),
            ExprKind::Array(items) => {
                format!("[{}]", items.iter().map(sexp).collect::<Vec<_>>().join(" "))
            }
            ExprKind::Object(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| match k {
                        ObjectKey::Static(name) => format!("{name}: {}", sexp(v)),
                        ObjectKey::Computed(key) => format!("[{}]: {}", sexp(key), sexp(v)),
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            ExprKind::Ident(name) => name.clone(),
            ExprKind::BindVar(name) => format!("@{name}"),
            ExprKind::BindCollection(name) => format!("@@{name}"),
            ExprKind::Attribute(base, name) => format!("(. {} {name})", sexp(base)),
            ExprKind::Index(base, index) => format!("([] {} {})", sexp(base), sexp(index)),
            ExprKind::Expand {
                base,
                filter,
                limit,
                projection,
            } => format!(
                "(expand {} {} {} {})",
                sexp(base),
                opt(filter),
                opt(limit),
                opt(projection)
            ),
            ExprKind::Flatten { base, depth } => format!("(flatten {} {depth})", sexp(base)),
            ExprKind::Unary(op, x) => {
                let op = match op {
                    UnaryOp::Not => "not",
                    UnaryOp::Neg => "neg",
                    UnaryOp::Plus => "pos",
                };
                format!("({op} {})", sexp(x))
            }
            ExprKind::Binary(op, a, b) => {
                let op = match op {
                    B::Add => "+",
                    B::Sub => "-",
                    B::Mul => "*",
                    B::Div => "/",
                    B::Mod => "%",
                    B::Eq => "==",
                    B::Ne => "!=",
                    B::Lt => "<",
                    B::Le => "<=",
                    B::Gt => ">",
                    B::Ge => ">=",
                    B::In => "in",
                    B::NotIn => "not-in",
                    B::Like => "like",
                    B::NotLike => "not-like",
                    B::RegexMatch => "=~",
                    B::RegexNotMatch => "!~",
                    B::And => "and",
                    B::Or => "or",
                };
                format!("({op} {} {})", sexp(a), sexp(b))
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => format!("(? {} {} {})", sexp(cond), opt(then), sexp(otherwise)),
            ExprKind::Range(a, b) => format!("(.. {} {})", sexp(a), sexp(b)),
            ExprKind::Call { name, args } => {
                let mut out = format!("({name}");
                for arg in args {
                    out.push(' ');
                    out.push_str(&sexp(arg));
                }
                out.push(')');
                out
            }
            ExprKind::Subquery(query) => format!("(subquery {})", ops_summary(query)),
        }
    }

    /// The operations of a query as `FOR u (users); RETURN u`.
    fn ops_summary(query: &Query) -> String {
        query
            .ops
            .iter()
            .map(|op| match &op.kind {
                OpKind::For { var, source } => format!("FOR {} {}", var.name, sexp(source)),
                OpKind::Let { var, expr } => format!("LET {} {}", var.name, sexp(expr)),
                OpKind::Filter(e) => format!("FILTER {}", sexp(e)),
                OpKind::Sort(keys) => {
                    let keys: Vec<String> = keys
                        .iter()
                        .map(|k| {
                            format!(
                                "{} {}",
                                sexp(&k.expr),
                                if k.ascending { "ASC" } else { "DESC" }
                            )
                        })
                        .collect();
                    format!("SORT {}", keys.join(", "))
                }
                OpKind::Limit { offset, count } => match offset {
                    Some(o) => format!("LIMIT {} {}", sexp(o), sexp(count)),
                    None => format!("LIMIT {}", sexp(count)),
                },
                OpKind::Collect(_) => "COLLECT".into(),
                OpKind::Return { distinct, expr } => {
                    format!(
                        "RETURN{} {}",
                        if *distinct { " DISTINCT" } else { "" },
                        sexp(expr)
                    )
                }
                OpKind::Insert { .. } => "INSERT".into(),
                OpKind::Update { .. } => "UPDATE".into(),
                OpKind::Replace { .. } => "REPLACE".into(),
                OpKind::Remove { .. } => "REMOVE".into(),
                OpKind::Upsert { .. } => "UPSERT".into(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn at(text: &str, needle: &str) -> Span {
        let start = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
        Span::new(start, start + needle.len())
    }

    /// The first `len` bytes where `needle` first occurs.
    fn at_len(text: &str, needle: &str, len: usize) -> Span {
        let span = at(text, needle);
        Span::new(span.start, span.start + len)
    }

    /// Asserts the error message contains `message` and points exactly at `span`.
    fn assert_err(text: &str, message: &str, span: Span) -> QueryError {
        let e = err(text);
        assert!(
            e.message.contains(message),
            "{text:?}: message {:?} lacks {message:?}",
            e.message
        );
        assert_eq!(
            e.span,
            Some(span),
            "{text:?}: wrong span for {:?}",
            e.message
        );
        assert_eq!(e.kind, crate::error::ErrorKind::Syntax);
        e
    }

    fn name(n: &str) -> String {
        n.to_string()
    }

    // ----- operations ---------------------------------------------------------------

    #[test]
    fn for_return_with_spans() {
        let text = "FOR u IN users RETURN u";
        let query = q(text);
        assert_eq!(query.span, Span::new(0, text.len()));
        assert_eq!(ops_summary(&query), "FOR u users; RETURN u");
        let OpKind::For { var, source } = &query.ops[0].kind else {
            panic!()
        };
        assert_eq!(var.span, Span::new(4, 5));
        assert_eq!(source.span, at(text, "users"));
        assert_eq!(query.ops[0].span, at(text, "FOR u IN users"));
        assert_eq!(query.ops[1].span, at(text, "RETURN u"));
    }

    #[test]
    fn let_filter_sort_limit() {
        let query = q("FOR u IN users FILTER u.age >= 18 SORT u.name, u.age DESC, u.x ASC LIMIT 10 LET n = u.name RETURN n");
        assert_eq!(
            ops_summary(&query),
            "FOR u users; FILTER (>= (. u age) 18); SORT (. u name) ASC, (. u age) DESC, (. u x) ASC; LIMIT 10; LET n (. u name); RETURN n"
        );
        let query = q("FOR u IN users LIMIT 5, 10 RETURN u");
        assert_eq!(ops_summary(&query), "FOR u users; LIMIT 5 10; RETURN u");
    }

    #[test]
    fn let_with_several_variables() {
        let text = "LET a = 1, b = a + 1 RETURN b";
        let query = q(text);
        assert_eq!(ops_summary(&query), "LET a 1; LET b (+ a 1); RETURN b");
        assert_eq!(query.ops[1].span, at(text, "b = a + 1"));
    }

    #[test]
    fn collect_groups_into_and_projection() {
        let query = q("FOR u IN users COLLECT city = u.city, age = u.age INTO g = u.name RETURN g");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[0].0.name, "city");
        assert_eq!(sexp(&c.groups[1].1), "(. u age)");
        let (into, projection) = c.into.as_ref().unwrap();
        assert_eq!(into.name, "g");
        assert_eq!(projection.as_ref().map(sexp), Some("(. u name)".into()));
        assert!(c.aggregates.is_empty() && c.count_into.is_none());

        let query = q("FOR u IN users COLLECT city = u.city INTO groups RETURN groups");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(
            c.into.as_ref().map(|(n, p)| (n.name.as_str(), p.is_none())),
            Some(("groups", true))
        );
    }

    #[test]
    fn collect_with_count_forms() {
        let query = q("FOR u IN users COLLECT WITH COUNT INTO n RETURN n");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert!(c.groups.is_empty() && c.aggregates.is_empty() && c.into.is_none());
        assert_eq!(c.count_into.as_ref().map(|n| n.name.as_str()), Some("n"));

        let query = q("FOR u IN users collect city = u.city with count into n RETURN [city, n]");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.count_into.as_ref().map(|n| n.name.as_str()), Some("n"));
    }

    #[test]
    fn collect_aggregate() {
        let query = q("FOR u IN users COLLECT city = u.city AGGREGATE s = sum(u.x), m = MAX(u.y) INTO g RETURN [s, m]");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(c.groups.len(), 1);
        let aggs: Vec<String> = c
            .aggregates
            .iter()
            .map(|(n, e)| format!("{}={}", n.name, sexp(e)))
            .collect();
        assert_eq!(aggs, ["s=(SUM (. u x))", "m=(MAX (. u y))"]);
        assert!(c.into.is_some());

        let query = q("FOR u IN users COLLECT AGGREGATE total = LENGTH(1) RETURN total");
        let OpKind::Collect(c) = &query.ops[1].kind else {
            panic!()
        };
        assert!(c.groups.is_empty());
        assert_eq!(c.aggregates.len(), 1);
    }

    #[test]
    fn collect_errors() {
        let text = "FOR u IN users COLLECT city = u.city INTO g WITH COUNT INTO n RETURN n";
        assert_err(
            text,
            "WITH COUNT INTO cannot be combined",
            at(text, "WITH COUNT INTO n"),
        );
        let text = "FOR u IN users COLLECT AGGREGATE s = u.x + 1 RETURN s";
        assert_err(text, "must be a function call", at(text, "u.x + 1"));
        let text = "FOR u IN users COLLECT RETURN 1";
        assert_err(
            text,
            "unexpected 'RETURN': expected a grouping variable",
            at(text, "RETURN"),
        );
        let text = "FOR u IN users COLLECT INTO g RETURN g";
        assert_err(text, "needs grouping variables", at(text, "INTO"));
        let text = "FOR u IN users COLLECT a = u.a INTO g KEEP u RETURN g";
        assert_err(text, "KEEP is not supported", at(text, "KEEP"));
        let text = "FOR u IN users COLLECT WITH TOTAL INTO n RETURN n";
        assert_err(
            text,
            "unexpected 'TOTAL': expected COUNT after WITH",
            at(text, "TOTAL"),
        );
        let text = "FOR u IN users COLLECT a == u.a RETURN a";
        assert_err(
            text,
            "unexpected '==': expected '=' after the variable name",
            at(text, "=="),
        );
    }

    #[test]
    fn return_distinct() {
        let query = q("FOR u IN users RETURN DISTINCT u.city");
        assert_eq!(
            ops_summary(&query),
            "FOR u users; RETURN DISTINCT (. u city)"
        );
        let text = "RETURN DISTINCT 1";
        assert_err(text, "only be used after a FOR loop", at(text, "DISTINCT"));
    }

    #[test]
    fn insert_forms() {
        let query = q("INSERT { name: 'x' } INTO users OPTIONS { ignoreErrors: true }");
        let OpKind::Insert {
            doc,
            collection,
            options,
        } = &query.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(sexp(doc), "{name: \"x\"}");
        assert!(matches!(collection, CollectionRef::Name(n) if n.name == "users"));
        assert_eq!(
            options.as_ref().map(sexp),
            Some("{ignoreErrors: true}".into())
        );

        let text = "FOR i IN 1..3 INSERT { i } IN @@coll RETURN NEW";
        let query = q(text);
        let OpKind::Insert { collection, .. } = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(
            collection,
            &CollectionRef::Bind(Name {
                name: name("coll"),
                span: at(text, "@@coll")
            })
        );
        assert_eq!(ops_summary(&query), "FOR i (.. 1 3); INSERT; RETURN NEW");
    }

    #[test]
    fn update_and_replace_forms() {
        let query = q(
            "FOR u IN users UPDATE u WITH { x: 1 } IN users OPTIONS { keepNull: false } RETURN NEW",
        );
        let OpKind::Update {
            key,
            with,
            collection,
            options,
        } = &query.ops[1].kind
        else {
            panic!()
        };
        assert_eq!(sexp(key), "u");
        assert_eq!(with.as_ref().map(sexp), Some("{x: 1}".into()));
        assert!(matches!(collection, CollectionRef::Name(n) if n.name == "users"));
        assert!(options.is_some());

        // Without WITH the document itself carries the key, and IN is not an operator.
        let query = q("FOR u IN users UPDATE { _key: u._key, seen: true } IN users");
        let OpKind::Update { key, with, .. } = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(sexp(key), "{_key: (. u _key), seen: true}");
        assert!(with.is_none());

        let query = q("FOR u IN users REPLACE u IN users LET x = 1 RETURN OLD");
        let OpKind::Replace { key, with, .. } = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!((sexp(key), with.is_none()), ("u".into(), true));
        assert_eq!(
            ops_summary(&query),
            "FOR u users; REPLACE; LET x 1; RETURN OLD"
        );

        let query = q("REPLACE 'k1' WITH { a: 1 } INTO `my-coll`");
        let OpKind::Replace {
            key,
            with,
            collection,
            ..
        } = &query.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(sexp(key), "\"k1\"");
        assert!(with.is_some());
        assert!(matches!(collection, CollectionRef::Name(n) if n.name == "my-coll"));
    }

    #[test]
    fn update_key_may_use_in_inside_brackets() {
        let query =
            q("FOR u IN users UPDATE (u.a IN [1, 2] ? u : u) WITH { b: 'x' IN ['x'] } IN users");
        let OpKind::Update { key, with, .. } = &query.ops[1].kind else {
            panic!()
        };
        assert_eq!(sexp(key), "(? (in (. u a) [1 2]) u u)");
        assert_eq!(
            with.as_ref().map(sexp),
            Some("{b: (in \"x\" [\"x\"])}".into())
        );
    }

    #[test]
    fn remove_form() {
        let query =
            q("FOR u IN users FILTER u.old REMOVE u._key IN users OPTIONS { waitForSync: true }");
        let OpKind::Remove {
            key,
            collection,
            options,
        } = &query.ops[2].kind
        else {
            panic!()
        };
        assert_eq!(sexp(key), "(. u _key)");
        assert!(matches!(collection, CollectionRef::Name(n) if n.name == "users"));
        assert!(options.is_some());
        let query = q("REMOVE 'abc' IN 'users'");
        assert!(
            matches!(&query.ops[0].kind, OpKind::Remove { collection: CollectionRef::Name(n), .. } if n.name == "users")
        );
    }

    #[test]
    fn upsert_forms() {
        let query = q("UPSERT { name: 'a' } INSERT { name: 'a', n: 1 } UPDATE { n: OLD.n + 1 } IN counters RETURN NEW");
        let OpKind::Upsert {
            search,
            insert,
            update,
            replace,
            collection,
            options,
        } = &query.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(sexp(search), "{name: \"a\"}");
        assert_eq!(sexp(insert), "{name: \"a\", n: 1}");
        assert_eq!(sexp(update), "{n: (+ (. OLD n) 1)}");
        assert!(!replace && options.is_none());
        assert!(matches!(collection, CollectionRef::Name(n) if n.name == "counters"));

        let query = q("UPSERT @s INSERT @d REPLACE @d INTO @@c OPTIONS {}");
        let OpKind::Upsert {
            replace,
            collection,
            ..
        } = &query.ops[0].kind
        else {
            panic!()
        };
        assert!(*replace);
        assert!(matches!(collection, CollectionRef::Bind(n) if n.name == "c"));

        let text = "UPSERT 'a' INSERT {} UPDATE {} IN c";
        assert_err(text, "object literal or a bind parameter", at(text, "'a'"));
        let text = "UPSERT {} INSERT {} MERGE {} IN c";
        assert_err(
            text,
            "unexpected 'MERGE': expected UPDATE or REPLACE",
            at(text, "MERGE"),
        );
    }

    #[test]
    fn modification_target_errors() {
        let text = "INSERT {} users";
        assert_err(
            text,
            "unexpected 'users': expected IN or INTO",
            at(text, "users"),
        );
        let text = "INSERT {} INTO @c";
        assert_err(text, "needs two @ signs (@@c)", at(text, "@c"));
        let text = "INSERT {} INTO filter";
        assert_err(
            text,
            "quote names that are reserved words",
            at(text, "filter"),
        );
        let text = "INSERT {} INTO c OPTIONS true";
        assert_err(
            text,
            "unexpected 'true': expected an object after OPTIONS",
            at(text, "true"),
        );
    }

    // ----- precedence ---------------------------------------------------------------

    #[test]
    fn arithmetic_precedence_and_associativity() {
        assert_eq!(s("1 + 2 * 3"), "(+ 1 (* 2 3))");
        assert_eq!(s("(1 + 2) * 3"), "(* (+ 1 2) 3)");
        assert_eq!(s("1 - 2 - 3"), "(- (- 1 2) 3)");
        assert_eq!(s("8 / 4 % 3 * 2"), "(* (% (/ 8 4) 3) 2)");
        assert_eq!(s("1 + 2 - 3 + 4"), "(+ (- (+ 1 2) 3) 4)");
    }

    #[test]
    fn logical_precedence() {
        assert_eq!(s("a || b && c"), "(or a (and b c))");
        assert_eq!(s("a and b or c and d"), "(or (and a b) (and c d))");
        assert_eq!(s("a == 1 && b != 2 || c"), "(or (and (== a 1) (!= b 2)) c)");
    }

    #[test]
    fn comparison_levels_follow_arangodb() {
        // IN binds tighter than ==, and < tighter than IN.
        assert_eq!(s("x IN [1] == true"), "(== (in x [1]) true)");
        assert_eq!(s("a < b IN c"), "(in (< a b) c)");
        assert_eq!(s("a == b < c"), "(== a (< b c))");
        assert_eq!(s("a LIKE b == c"), "(== (like a b) c)");
        assert_eq!(s("a NOT IN b == false"), "(== (not-in a b) false)");
        assert_eq!(s("x < 1 + 2"), "(< x (+ 1 2))");
    }

    #[test]
    fn range_precedence() {
        assert_eq!(s("1..10"), "(.. 1 10)");
        assert_eq!(s("1 + 1..2 * 5"), "(.. (+ 1 1) (* 2 5))");
        assert_eq!(s("a..b IN c"), "(in (.. a b) c)");
        assert_eq!(s("x < 1..3"), "(< x (.. 1 3))");
        assert_eq!(s("-1..1"), "(.. (neg 1) 1)");
        assert_eq!(s("x.a..x.b"), "(.. (. x a) (. x b))");
    }

    #[test]
    fn unary_operators() {
        assert_eq!(s("-2 * 3"), "(* (neg 2) 3)");
        assert_eq!(s("NOT a == b"), "(== (not a) b)");
        assert_eq!(s("!a.b"), "(not (. a b))");
        assert_eq!(s("- -1"), "(neg (neg 1))");
        assert_eq!(s("+x"), "(pos x)");
        assert_eq!(s("not not true"), "(not (not true))");
        assert_eq!(s("!(a || b)"), "(not (or a b))");
        assert_eq!(s("a - -b"), "(- a (neg b))");
    }

    #[test]
    fn matching_operators() {
        assert_eq!(s("a LIKE 'x%'"), "(like a \"x%\")");
        assert_eq!(s("a not like 'x%'"), "(not-like a \"x%\")");
        assert_eq!(s("a NOT IN [1, 2]"), "(not-in a [1 2])");
        assert_eq!(s("a =~ '^x'"), "(=~ a \"^x\")");
        assert_eq!(s("a !~ '^x'"), "(!~ a \"^x\")");
        assert_eq!(s("a NOT =~ '^x'"), "(!~ a \"^x\")");
        assert_eq!(s("a in b"), "(in a b)");
        // NOT IN across a line break and a comment is still NOT IN.
        assert_eq!(s("a NOT /* c */\n IN b"), "(not-in a b)");
    }

    #[test]
    fn ternary_forms() {
        assert_eq!(s("a ? b : c"), "(? a b c)");
        assert_eq!(s("a ?: c"), "(? a _ c)");
        assert_eq!(s("a ? : c"), "(? a _ c)");
        // Right-associative, and the lowest precedence.
        assert_eq!(s("a ? b : c ? d : e"), "(? a b (? c d e))");
        assert_eq!(s("a ? b ? c : d : e"), "(? a (? b c d) e)");
        assert_eq!(s("a || b ? c + 1 : d"), "(? (or a b) (+ c 1) d)");
        assert_eq!(s("x ?: y ?: z"), "(? x _ (? y _ z))");
        let text = "RETURN a ? b";
        assert_err(
            text,
            "unexpected end of query: expected ':'",
            Span::new(text.len(), text.len()),
        );
    }

    // ----- access, expansion, flattening --------------------------------------------

    #[test]
    fn attribute_and_index_access() {
        assert_eq!(s("doc.a.b"), "(. (. doc a) b)");
        assert_eq!(s("doc['a'][0]"), "([] ([] doc \"a\") 0)");
        assert_eq!(s("doc.list[-1].x"), "(. ([] (. doc list) (neg 1)) x)");
        assert_eq!(s("doc.`my attr`"), "(. doc my attr)");
        assert_eq!(s("FN(x).a[1]"), "([] (. (FN x) a) 1)");
        assert_eq!(s("[1, 2][0]"), "([] [1 2] 0)");
        assert_eq!(s("{a: 1}.a"), "(. {a: 1} a)");
    }

    #[test]
    fn keywords_as_attribute_names() {
        assert_eq!(s("doc.count"), "(. doc count)");
        assert_eq!(s("doc.in"), "(. doc in)");
        assert_eq!(s("doc.FILTER.Return"), "(. (. doc FILTER) Return)");
        assert_eq!(s("doc.null"), "(. doc null)");
        assert_eq!(s("u.for + 1"), "(+ (. u for) 1)");
    }

    #[test]
    fn expansion_simple() {
        let text = "RETURN users[*].name";
        let e = ret("users[*].name");
        assert_eq!(sexp(&e), "(expand users _ _ (. CURRENT name))");
        assert_eq!(e.span, Span::new(7, text.len()));
        let ExprKind::Expand {
            projection: Some(p),
            ..
        } = &e.kind
        else {
            panic!()
        };
        let ExprKind::Attribute(current, _) = &p.kind else {
            panic!()
        };
        assert_eq!(current.span, at(text, "*"));
        assert_eq!(s("users[*]"), "(expand users _ _ _)");
        assert_eq!(s("users[*][0]"), "(expand users _ _ ([] CURRENT 0))");
        assert_eq!(s("users[*].@attr"), "(expand users _ _ ([] CURRENT @attr))");
        assert_eq!(
            s("users[ * ].a.b"),
            "(expand users _ _ (. (. CURRENT a) b))"
        );
    }

    #[test]
    fn expansion_inline_clauses() {
        assert_eq!(
            s("u.friends[* FILTER CURRENT.age > 30 LIMIT 2 RETURN CURRENT.name]"),
            "(expand (. u friends) (> (. CURRENT age) 30) 2 (. CURRENT name))"
        );
        assert_eq!(
            s("u.friends[* filter CURRENT.ok]"),
            "(expand (. u friends) (. CURRENT ok) _ _)"
        );
        assert_eq!(s("xs[* LIMIT 1]"), "(expand xs _ 1 _)");
        assert_eq!(
            s("xs[* RETURN CURRENT * 2]"),
            "(expand xs _ _ (* CURRENT 2))"
        );
        // What follows applies on top of the inline RETURN.
        assert_eq!(
            s("xs[* RETURN CURRENT.a].b"),
            "(expand xs _ _ (. (. CURRENT a) b))"
        );
        let text = "RETURN xs[* LIMIT 1, 2]";
        assert_err(
            text,
            "LIMIT offset, count inside an array expansion",
            at(text, ","),
        );
        let text = "RETURN xs[* ALL FILTER CURRENT]";
        assert_err(
            text,
            "unexpected 'ALL': expected FILTER, LIMIT, RETURN or ']'",
            at(text, "ALL"),
        );
    }

    #[test]
    fn nested_expansion_follows_arangodb() {
        assert_eq!(
            s("users[*].friends[*].name"),
            "(expand users _ _ (expand (. CURRENT friends) _ _ (. CURRENT name)))"
        );
        // A third [*] iterates over what the outermost expansion projects so far.
        assert_eq!(
            s("a[*].b[*].c[*].d"),
            "(expand a _ _ (expand (expand (. CURRENT b) _ _ (. CURRENT c)) _ _ (. CURRENT d)))"
        );
        // Parentheses end the chain.
        assert_eq!(s("(a[*].b)[0]"), "([] (expand a _ _ (. CURRENT b)) 0)");
    }

    #[test]
    fn flatten_forms() {
        assert_eq!(s("x[**]"), "(flatten x 1)");
        assert_eq!(s("x[***]"), "(flatten x 2)");
        assert_eq!(s("x[* *]"), "(flatten x 1)");
        assert_eq!(
            s("x[**].name"),
            "(expand (flatten x 1) _ _ (. CURRENT name))"
        );
        assert_eq!(
            s("x[** FILTER CURRENT > 1]"),
            "(expand (flatten x 1) (> CURRENT 1) _ _)"
        );
        // [**] completes the expansion before it, then flattens.
        assert_eq!(
            s("users[*].friends[**].name"),
            "(expand (flatten (expand users _ _ (. CURRENT friends)) 1) _ _ (. CURRENT name))"
        );
        assert_eq!(
            s("(FOR u IN users RETURN u.tags)[**]"),
            "(flatten (subquery FOR u users; RETURN (. u tags)) 1)"
        );
        let e = ret("x[**]");
        assert_eq!(e.span, Span::new(7, 12));
    }

    // ----- literals -----------------------------------------------------------------

    #[test]
    fn literals() {
        assert_eq!(s("null"), "null");
        assert_eq!(s("TRUE"), "true");
        assert_eq!(s("False"), "false");
        let text = "RETURN 'it''s'";
        assert_err(text, "unexpected ''s''", at_len(text, "'s'", 3));
    }

    #[test]
    fn numbers() {
        let n = |text: &str| match ret(text).kind {
            ExprKind::Number(n) => n,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(n("42"), 42.0);
        assert_eq!(n("0"), 0.0);
        assert_eq!(n("3.25"), 3.25);
        assert_eq!(n("0.5"), 0.5);
        assert_eq!(n(".5"), 0.5);
        assert_eq!(n("1e3"), 1000.0);
        assert_eq!(n("2.5E-2"), 0.025);
        assert_eq!(n("1e+2"), 100.0);
        assert_eq!(n("0x1F"), 31.0);
        assert_eq!(n("0XfF"), 255.0);
        assert_eq!(n("0b101"), 5.0);
        assert_eq!(n("0B0"), 0.0);
        assert_eq!(s("[.5, 1]"), "[0.5 1]");
        assert_eq!(s("x.a"), "(. x a)");
    }

    #[test]
    fn number_errors() {
        for (text, message, bad) in [
            ("RETURN 0x", "invalid hexadecimal number literal '0x'", "0x"),
            (
                "RETURN 0b12",
                "invalid binary number literal '0b12'",
                "0b12",
            ),
            (
                "RETURN 0xFG + 1",
                "invalid hexadecimal number literal '0xFG'",
                "0xFG",
            ),
            ("RETURN 1e", "invalid number literal '1e'", "1e"),
            ("RETURN 12abc", "invalid number literal '12abc'", "12abc"),
            ("RETURN 007", "leading zeros are not allowed", "007"),
            ("RETURN 1e999", "out of range", "1e999"),
            (
                "RETURN 0x1FFFFFFFFFFFFFFFF",
                "out of range",
                "0x1FFFFFFFFFFFFFFFF",
            ),
        ] {
            assert_err(text, message, at(text, bad));
        }
    }

    #[test]
    fn strings_and_escapes() {
        let st = |text: &str| match ret(text).kind {
            ExprKind::String(s) => s,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(st("'single'"), "single");
        assert_eq!(st("\"double\""), "double");
        assert_eq!(
            st(r#""a\nb\tc\rd\"e\'f\\g\/h\bi\fj""#),
            "a\nb\tc\rd\"e'f\\g/h\u{8}i\u{c}j"
        );
        assert_eq!(st(r#"'it\'s'"#), "it's");
        assert_eq!(st(r#""caf\u00e9""#), "café");
        assert_eq!(st(r#""\uD83D\uDE00""#), "😀");
        assert_eq!(st(r#""\u20AC""#), "€");
        assert_eq!(st("'multi\nline'"), "multi\nline");
        assert_eq!(st("'ünïcødé ✓'"), "ünïcødé ✓");
        assert_eq!(st("''"), "");
    }

    #[test]
    fn string_errors() {
        let text = "RETURN \"abc";
        let e = assert_err(text, "unterminated string literal", Span::new(7, 8));
        assert_eq!(e.line_col(), Some((1, 8)));
        let text = "FOR u IN users\nRETURN 'abc\n";
        let e = assert_err(text, "unterminated string literal", at(text, "'"));
        assert_eq!(e.line_col(), Some((2, 8)));
        let text = r#"RETURN "a\qb""#;
        assert_err(text, "unknown escape sequence '\\q'", at(text, "\\q"));
        let text = r#"RETURN "\uD83D""#;
        assert_err(
            text,
            "high surrogate must be followed by a low surrogate",
            at(text, "\\uD83D"),
        );
        let text = r#"RETURN "\uD83Dx""#;
        assert_err(text, "high surrogate", at(text, "\\uD83D"));
        let text = r#"RETURN "\uDE00""#;
        assert_err(
            text,
            "a low surrogate must follow a high surrogate",
            at(text, "\\uDE00"),
        );
        let text = r#"RETURN "\u12G4""#;
        assert_err(text, "four hexadecimal digits", at(text, "\\u12"));
        let text = r#"RETURN "\uD83D\u0041""#;
        assert_err(text, "high surrogate", at(text, "\\uD83D\\u0041"));
    }

    #[test]
    fn objects() {
        assert_eq!(s("{}"), "{}");
        assert_eq!(
            s("{a: 1, \"b c\": 2, [k]: 3, short, @p: 4, `x-y`: 5, in: 6,}"),
            "{a: 1, b c: 2, [k]: 3, short: short, [@p]: 4, x-y: 5, in: 6}"
        );
        assert_eq!(s("{ a, b }"), "{a: a, b: b}");
        assert_eq!(
            s("{ [CONCAT('a', 'b')]: { nested: [1] } }"),
            "{[(CONCAT \"a\" \"b\")]: {nested: [1]}}"
        );
        assert_eq!(s("{'k': 'v'}"), "{k: \"v\"}");
        let text = "RETURN { a: 1 b: 2 }";
        assert_err(
            text,
            "unexpected 'b': expected ',' or '}' in the object",
            at_len(text, "b:", 1),
        );
        let text = "RETURN { 1: 2 }";
        assert_err(
            text,
            "unexpected '1': expected an attribute name",
            at(text, "1"),
        );
        let text = "RETURN { a 1 }";
        assert_err(
            text,
            "unexpected '1': expected ':' after the attribute name",
            at(text, "1"),
        );
        let text = "RETURN { a: 1";
        assert_err(
            text,
            "unexpected end of query: expected ',' or '}'",
            Span::new(text.len(), text.len()),
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(s("[]"), "[]");
        assert_eq!(s("[1, 'a', [true, null], {}]"), "[1 \"a\" [true null] {}]");
        assert_eq!(s("[1, 2,]"), "[1 2]");
        let text = "RETURN [,]";
        assert_err(
            text,
            "unexpected ',': expected an expression",
            at(text, ","),
        );
        let text = "RETURN [1 2]";
        assert_err(
            text,
            "unexpected '2': expected ',' or ']' in the array",
            at(text, "2"),
        );
        let text = "RETURN [1, 2";
        assert_err(
            text,
            "unexpected end of query",
            Span::new(text.len(), text.len()),
        );
    }

    // ----- names and parameters -----------------------------------------------------

    #[test]
    fn bind_parameters() {
        assert_eq!(s("@value"), "@value");
        assert_eq!(s("@p1 + @_x"), "(+ @p1 @_x)");
        assert_eq!(s("@@coll"), "@@coll");
        assert_eq!(s("doc.@attr"), "([] doc @attr)");
        assert_eq!(s("doc.@a.@b"), "([] ([] doc @a) @b)");
        assert_eq!(s("@0"), "@0");
        let query = q("FOR u IN @@users FILTER u.age > @min RETURN u");
        assert_eq!(
            ops_summary(&query),
            "FOR u @@users; FILTER (> (. u age) @min); RETURN u"
        );
        let text = "RETURN @ x";
        assert_err(
            text,
            "expected a bind parameter name after '@'",
            at(text, "@"),
        );
        let text = "RETURN @@";
        assert_err(text, "after '@@'", at(text, "@@"));
        let text = "RETURN doc.@@x";
        assert_err(text, "value bind parameter (@x)", at(text, "@@x"));
    }

    #[test]
    fn quoted_names() {
        let query = q("FOR `my-var` IN `my-coll` RETURN `my-var`.`some key`");
        assert_eq!(
            ops_summary(&query),
            "FOR my-var my-coll; RETURN (. my-var some key)"
        );
        let query = q("FOR `for` IN ´filter´ RETURN `for`");
        assert_eq!(ops_summary(&query), "FOR for filter; RETURN for");
        assert_eq!(s(r"`a\`b`"), "a`b");
        let text = "RETURN `abc";
        assert_err(text, "unterminated quoted name", at(text, "`"));
        let text = "RETURN ``";
        assert_err(text, "empty quoted name", at(text, "``"));
        let text = "LET filter = 1 RETURN filter";
        assert_err(text, "'filter' is a reserved word", at(text, "filter"));
    }

    #[test]
    fn old_new_current_are_identifiers() {
        assert_eq!(s("[OLD, NEW, CURRENT, old]"), "[OLD NEW CURRENT old]");
        // COUNT and OPTIONS are words only in their places.
        assert_eq!(s("count + options"), "(+ count options)");
        assert_eq!(s("COUNT(x)"), "(COUNT x)");
    }

    #[test]
    fn function_calls() {
        assert_eq!(s("length(users)"), "(LENGTH users)");
        assert_eq!(s("RAND()"), "(RAND)");
        assert_eq!(s("CONCAT('a', x, 1 + 2)"), "(CONCAT \"a\" x (+ 1 2))");
        assert_eq!(s("my::fn(1)"), "(MY::FN 1)");
        assert_eq!(s("a::b::c()"), "(A::B::C)");
        assert_eq!(s("like(a, 'x%', true)"), "(LIKE a \"x%\" true)");
        assert_eq!(s("LENGTH (x)"), "(LENGTH x)");
        let text = "RETURN my::(1)";
        assert_err(text, "expected a function name after '::'", at(text, "("));
        let text = "RETURN my::fn";
        assert_err(
            text,
            "expected '(' after the function name",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN F(1 2)";
        assert_err(
            text,
            "unexpected '2': expected ',' or ')' after the function argument",
            at(text, "2"),
        );
    }

    // ----- subqueries ---------------------------------------------------------------

    #[test]
    fn subqueries() {
        let text = "LET top = (FOR u IN users SORT u.score DESC LIMIT 3 RETURN u) RETURN top";
        let query = q(text);
        let OpKind::Let { expr, .. } = &query.ops[0].kind else {
            panic!()
        };
        assert_eq!(
            sexp(expr),
            "(subquery FOR u users; SORT (. u score) DESC; LIMIT 3; RETURN u)"
        );
        assert_eq!(
            expr.span,
            at(text, "(FOR u IN users SORT u.score DESC LIMIT 3 RETURN u)")
        );
        let ExprKind::Subquery(sub) = &expr.kind else {
            panic!()
        };
        assert_eq!(
            sub.span,
            at(text, "FOR u IN users SORT u.score DESC LIMIT 3 RETURN u")
        );

        assert_eq!(s("(RETURN 1)"), "(subquery RETURN 1)");
        assert_eq!(
            s("(let x = 1 return x)[0]"),
            "([] (subquery LET x 1; RETURN x) 0)"
        );
        assert_eq!(s("(1 + 2)"), "(+ 1 2)");
        let e = ret("(1 + 2)");
        assert_eq!(e.span, Span::new(7, 14));
        assert_eq!(
            s("LENGTH(FOR u IN users RETURN u)"),
            "(LENGTH (subquery FOR u users; RETURN u))"
        );
        assert_eq!(
            s("MERGE(FOR a IN x RETURN a, {b: 1})"),
            "(MERGE (subquery FOR a x; RETURN a) {b: 1})"
        );
        assert_eq!(
            s("(FOR x IN 1..3 FOR y IN (FOR z IN [x] RETURN z) RETURN y)"),
            "(subquery FOR x (.. 1 3); FOR y (subquery FOR z [x]; RETURN z); RETURN y)"
        );
        assert_eq!(
            s("(FOR u IN users INSERT u INTO backup)"),
            "(subquery FOR u users; INSERT)"
        );
    }

    #[test]
    fn subquery_errors() {
        let text = "LET x = (FOR u IN users FILTER u.a) RETURN x";
        assert_err(text, "subquery must end with RETURN", at(text, ")"));
        let text = "LET x = (FOR u IN users RETURN u RETURN 2) RETURN x";
        assert_err(
            text,
            "RETURN must be the last operation of a subquery",
            at_len(text, "RETURN 2", 6),
        );
        let text = "LET x = (RETURN 1 RETURN x";
        assert!(err(text)
            .message
            .contains("RETURN must be the last operation"));
        let text = "LET x = (RETURN 1";
        assert_err(
            text,
            "unexpected end of query: expected an operator or ')'",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN FOR u IN users RETURN u";
        assert_err(text, "write a subquery in parentheses", at(text, "FOR"));
    }

    // ----- lexical matters ----------------------------------------------------------

    #[test]
    fn comments_are_ignored() {
        let query = q("// leading comment\nFOR u IN users /* inline\n multi-line */ FILTER u.a // trailing\n RETURN u /* end */");
        assert_eq!(ops_summary(&query), "FOR u users; FILTER (. u a); RETURN u");
        assert_eq!(s("1 /* * / */ + /**/ 2"), "(+ 1 2)");
        assert_eq!(s("8 / 2"), "(/ 8 2)");
        let text = "RETURN 1 /* never closed";
        assert_err(text, "unterminated comment", at(text, "/*"));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let query =
            q("for u in users filter u.a and not u.b sort u.c desc limit 2 return distinct u");
        assert_eq!(
            ops_summary(&query),
            "FOR u users; FILTER (and (. u a) (not (. u b))); SORT (. u c) DESC; LIMIT 2; RETURN DISTINCT u"
        );
        let query = q("FoR x In [1] ReTuRn x");
        assert_eq!(ops_summary(&query), "FOR x [1]; RETURN x");
        let query = q("insert {} into c options {} let a = 1 return a");
        assert_eq!(ops_summary(&query), "INSERT; LET a 1; RETURN a");
    }

    #[test]
    fn whitespace_variants() {
        let query = q("\n\tFOR\r\nu\tIN\n users\n\nRETURN\tu\n\n");
        assert_eq!(ops_summary(&query), "FOR u users; RETURN u");
        assert_eq!(
            query.span,
            at(
                "\n\tFOR\r\nu\tIN\n users\n\nRETURN\tu\n\n",
                "FOR\r\nu\tIN\n users\n\nRETURN\tu"
            )
        );
    }

    // ----- error messages -----------------------------------------------------------

    #[test]
    fn expected_in_after_loop_variable() {
        let text = "FOR u FROM users RETURN u";
        let e = assert_err(
            text,
            "unexpected 'FROM': expected IN after the loop variable",
            at(text, "FROM"),
        );
        assert_eq!(e.line_col(), Some((1, 7)));
        let shown = e.to_string();
        assert!(
            shown.starts_with(
                "unexpected 'FROM': expected IN after the loop variable (line 1, column 7)"
            ),
            "{shown}"
        );
        assert!(
            shown.ends_with("\n  FOR u FROM users RETURN u\n        ^^^^"),
            "{shown:?}"
        );
    }

    #[test]
    fn error_on_a_later_line_shows_that_line() {
        let text = "FOR u IN users\n  FILTER u.age >> 3\n  RETURN u";
        let e = assert_err(text, "unknown operator '>>'", at(text, ">>"));
        assert_eq!(e.line_col(), Some((2, 16)));
        assert!(
            e.to_string()
                .ends_with("\n    FILTER u.age >> 3\n                 ^^"),
            "{e}"
        );
    }

    #[test]
    fn unexpected_end_of_query() {
        let text = "RETURN";
        let e = assert_err(
            text,
            "unexpected end of query: expected an expression",
            Span::new(6, 6),
        );
        assert_eq!(e.message, "unexpected end of query: expected an expression");
        assert_eq!(e.line_col(), Some((1, 7)));
        assert!(e.to_string().ends_with("\n  RETURN\n        ^"), "{e}");
        // Trailing blank lines do not move the position off the last line.
        let text = "FOR u IN users\nRETURN u.\n\n";
        let e = assert_err(
            text,
            "unexpected end of query: expected an attribute name",
            Span::new(24, 24),
        );
        assert_eq!(e.line_col(), Some((2, 10)));
        let text = "FOR u IN users FILTER u.a ==";
        assert_err(
            text,
            "unexpected end of query: expected an expression",
            Span::new(text.len(), text.len()),
        );
    }

    #[test]
    fn unknown_operators() {
        for (text, op, hint) in [
            ("RETURN a >> b", ">>", ""),
            ("RETURN a << b", "<<", ""),
            ("RETURN a === b", "===", "use =="),
            ("RETURN a !== b", "!==", "use !="),
            ("RETURN a <> b", "<>", "use !="),
            ("RETURN a & b", "&", "use && or AND"),
            ("RETURN a | b", "|", "use || or OR"),
            ("RETURN a => b", "=>", ""),
            ("RETURN a ** b", "**", "POW"),
            ("RETURN a...b", "...", ""),
        ] {
            let e = assert_err(text, &format!("unknown operator '{op}'"), at(text, op));
            assert!(e.message.contains(hint), "{}", e.message);
        }
    }

    #[test]
    fn unexpected_characters() {
        let text = "RETURN 1;";
        assert_err(text, "unexpected character ';'", at(text, ";"));
        let text = "RETURN #x";
        assert_err(text, "unexpected character '#'", at(text, "#"));
        let text = "RETURN café";
        let e = assert_err(text, "unexpected character 'é'", at(text, "é"));
        assert_eq!(e.span.map(|s| s.end - s.start), Some(2));
        assert_eq!(e.line_col(), Some((1, 11)));
        let text = "RETURN a\u{a0}+ b";
        assert_err(text, "unexpected character", at(text, "\u{a0}"));
    }

    #[test]
    fn empty_and_unfinished_queries() {
        for text in ["", "   ", "// only a comment", "/* c */"] {
            let e = err(text);
            assert_eq!(
                e.message,
                "empty query: query must end with RETURN or a data-modification operation (INSERT, UPDATE, REPLACE, REMOVE, UPSERT)",
                "{text:?}"
            );
        }
        let text = "FOR u IN users\n  FILTER u.active";
        let e = assert_err(
            text,
            "query must end with RETURN or a data-modification operation (INSERT, UPDATE, REPLACE, REMOVE, UPSERT)",
            Span::new(text.len(), text.len()),
        );
        assert_eq!(e.line_col(), Some((2, 18)));
        assert!(
            e.to_string()
                .contains("\n    FILTER u.active\n                   ^"),
            "{e}"
        );
        for text in [
            "FOR u IN users",
            "LET x = 1",
            "FOR u IN users SORT u.a LIMIT 1",
            "FOR u IN users COLLECT a = u.a",
        ] {
            assert!(
                err(text).message.starts_with("query must end with RETURN"),
                "{text}"
            );
        }
    }

    #[test]
    fn return_must_be_last() {
        let text = "RETURN 1 FOR x IN y RETURN x";
        assert_err(
            text,
            "RETURN must be the last operation of a query",
            at(text, "FOR"),
        );
        let text = "RETURN a b";
        assert_err(
            text,
            "unexpected 'b': expected an operator or the end of the query",
            at(text, "b"),
        );
        let text = "RETURN 1)";
        assert_err(text, "unexpected ')'", at(text, ")"));
    }

    #[test]
    fn misc_syntax_errors() {
        let text = "FOR u IN users FILTER u.a = 1 RETURN u";
        assert_err(text, "unexpected '=': use == to compare", at(text, "="));
        let text = "RETURN a NOT b";
        assert_err(
            text,
            "unexpected 'b' after NOT: expected IN or LIKE",
            at(text, "b"),
        );
        let text = "FOR u IN users FILTERR u.a RETURN u";
        assert_err(
            text,
            "unexpected 'FILTERR': expected an operation (FOR, LET,",
            at(text, "FILTERR"),
        );
        let text = "LET x == 1 RETURN x";
        assert_err(
            text,
            "unexpected '==': expected '=' after the variable name",
            at(text, "=="),
        );
        let text = "FOR IN users RETURN 1";
        assert_err(text, "expected a variable name after FOR", at(text, "IN"));
        let text = "FOR 1 IN users RETURN 1";
        assert_err(
            text,
            "unexpected '1': expected a variable name after FOR",
            at(text, "1"),
        );
        let text = "RETURN (1 + 2";
        assert_err(
            text,
            "expected ')' to close the parenthesis",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN x[1";
        assert_err(
            text,
            "expected ']' to close the index",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN x[* FILTER y";
        assert_err(
            text,
            "expected LIMIT, RETURN or ']' in the array expansion",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN x.";
        assert_err(
            text,
            "expected an attribute name after '.'",
            Span::new(text.len(), text.len()),
        );
        let text = "RETURN x.1";
        assert_err(
            text,
            "unexpected '1': expected an attribute name",
            at(text, "1"),
        );
        let text = "RETURN )";
        assert_err(
            text,
            "unexpected ')': expected an expression",
            at(text, ")"),
        );
        let text = "SORT";
        assert_err(
            text,
            "unexpected end of query: expected an expression",
            Span::new(4, 4),
        );
    }

    #[test]
    fn unsupported_arangodb_features_are_named() {
        let text = "FOR v, e IN 1..2 OUTBOUND 'a/1' edges RETURN v";
        assert_err(text, "graph traversals", at(text, ","));
        let text = "FOR v IN 1..2 OUTBOUND 'a/1' edges RETURN v";
        assert_err(text, "graph traversals", at(text, "OUTBOUND"));
        let text = "FOR v IN ANY 'a/1' edges RETURN v";
        assert_err(text, "graph traversals", at(text, "ANY"));
        let text = "WITH users FOR u IN users RETURN u";
        assert_err(
            text,
            "WITH collection declarations are not supported",
            at(text, "WITH"),
        );
        let text = "FOR d IN view SEARCH d.a == 1 RETURN d";
        assert_err(text, "SEARCH", at(text, "SEARCH"));
        let text = "FOR d IN c OPTIONS { indexHint: 'x' } RETURN d";
        assert_err(
            text,
            "FOR ... OPTIONS is not supported",
            at(text, "OPTIONS"),
        );
        let text = "RETURN [1, 2] ALL == 1";
        assert_err(text, "array comparison operators", at(text, "ALL"));
        let text = "RETURN xs[? FILTER CURRENT]";
        assert_err(text, "[? ...] is not supported", at(text, "[?"));
        let text = "FOR x IN y WINDOW { preceding: 1 } AGGREGATE s = SUM(x) RETURN s";
        assert_err(
            text,
            "WINDOW operations are not supported",
            at(text, "WINDOW"),
        );
        let text = "UPSERT FILTER CURRENT.a == 1 INSERT {} UPDATE {} IN c";
        assert_err(text, "UPSERT FILTER is not supported", at(text, "FILTER"));
    }

    #[test]
    fn lexical_errors_are_reported_in_text_order() {
        // A syntax error before the bad token wins...
        let text = "FOR u FROM users RETURN 'abc";
        assert_err(text, "unexpected 'FROM'", at(text, "FROM"));
        // ...but once the parser reaches it, the lexical error is what is wrong.
        let text = "FOR u IN users RETURN u.name + 'abc";
        assert_err(text, "unterminated string literal", at(text, "'"));
        let text = "RETURN 1 'abc";
        assert_err(text, "unterminated string literal", at(text, "'"));
        let text = "FOR u IN users FILTER u.a >> 1";
        assert_err(text, "unknown operator '>>'", at(text, ">>"));
    }

    #[test]
    fn expression_spans_cover_their_text() {
        let text = "RETURN -a.b + F(1, 2) * x[0]";
        let e = ret("-a.b + F(1, 2) * x[0]");
        assert_eq!(e.span, at(text, "-a.b + F(1, 2) * x[0]"));
        let ExprKind::Binary(_, left, right) = &e.kind else {
            panic!()
        };
        assert_eq!(left.span, at(text, "-a.b"));
        assert_eq!(right.span, at(text, "F(1, 2) * x[0]"));
        let ExprKind::Binary(_, call, index) = &right.kind else {
            panic!()
        };
        assert_eq!(call.span, at(text, "F(1, 2)"));
        assert_eq!(index.span, at(text, "x[0]"));
        let text = "RETURN a ? [1] : {b: 2}";
        assert_eq!(ret("a ? [1] : {b: 2}").span, at(text, "a ? [1] : {b: 2}"));
    }

    #[test]
    fn modification_op_spans_include_options() {
        let text =
            "FOR u IN users UPDATE u WITH {a: 1} IN users OPTIONS {keepNull: false} RETURN NEW";
        let query = q(text);
        assert_eq!(
            query.ops[1].span,
            at(
                text,
                "UPDATE u WITH {a: 1} IN users OPTIONS {keepNull: false}"
            )
        );
        let OpKind::Update { collection, .. } = &query.ops[1].kind else {
            panic!()
        };
        assert!(
            matches!(collection, CollectionRef::Name(n) if n.span == at_len(text, "users OPTIONS", 5))
        );
    }

    #[test]
    fn dot_digit_depends_on_context() {
        assert_eq!(s("[.5, -.25]"), "[0.5 (neg 0.25)]");
        assert_eq!(s("1..2"), "(.. 1 2)");
        assert_eq!(s("x.a..5"), "(.. (. x a) 5)");
        assert_eq!(s("(1)..(2)"), "(.. 1 2)");
        assert_eq!(s("2 * .5"), "(* 2 0.5)");
        let text = "RETURN x.5";
        assert_err(text, "expected an attribute name after '.'", at(text, "5"));
    }

    // ----- limits and robustness ----------------------------------------------------

    #[test]
    fn moderate_nesting_is_fine() {
        // Unoptimised test builds reach the stack budget after roughly 80 levels of
        // parentheses; release builds allow the full MAX_NESTING.
        let depth = 50;
        let text = format!("RETURN {}1{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(s(&text["RETURN ".len()..]), "1");
        let text = format!("RETURN {}1{}", "[".repeat(depth), "]".repeat(depth));
        q(&text);
        let text = format!("RETURN {}", vec!["x"; 150].join(" OR "));
        q(&text);
        let text = format!("RETURN x{}", ".a".repeat(150));
        q(&text);
        let text = format!("RETURN {}1", "-".repeat(150));
        q(&text);
        let mut sub = "RETURN 1".to_string();
        for _ in 0..30 {
            sub = format!("LET x = ({sub}) RETURN x");
        }
        q(&sub);
    }

    #[test]
    fn hostile_nesting_errors_cleanly() {
        let cases = [
            format!("RETURN {}", "(".repeat(10_000)),
            format!("RETURN {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
            format!("RETURN {}", "[".repeat(10_000)),
            format!("RETURN {}", "{a:".repeat(10_000)),
            format!("RETURN {}1", "-".repeat(10_000)),
            format!("RETURN {}1", "NOT ".repeat(10_000)),
            format!("RETURN {}", "F(".repeat(10_000)),
            format!("RETURN {}", "(RETURN ".repeat(10_000)),
            format!("RETURN {}", vec!["1"; 100_000].join(" + ")),
            format!("RETURN x{}", ".a".repeat(100_000)),
            format!("RETURN x{}", "[*]".repeat(10_000)),
            format!("RETURN {}", "a ? b : ".repeat(10_000)),
        ];
        for text in &cases {
            let e = err(text);
            assert!(
                e.message.contains("nested too deeply"),
                "{}: {}",
                &text[..20],
                e.message
            );
            let span = e.span.unwrap_or_default();
            assert!(span.start < text.len() && span.end <= text.len());
            assert_eq!(e.source.as_deref(), Some(text.as_str()));
        }
    }

    /// Deterministic pseudo-random inputs: the parser must return, never panic, and
    /// every error must point inside the text.
    #[test]
    fn garbage_never_panics() {
        const PIECES: &[&str] = &[
            "FOR",
            "u",
            "IN",
            "users",
            "LET",
            "x",
            "=",
            "FILTER",
            "SORT",
            "ASC",
            "DESC",
            "LIMIT",
            "COLLECT",
            "INTO",
            "WITH",
            "COUNT",
            "AGGREGATE",
            "RETURN",
            "DISTINCT",
            "INSERT",
            "UPDATE",
            "REPLACE",
            "REMOVE",
            "UPSERT",
            "OPTIONS",
            "NOT",
            "AND",
            "OR",
            "LIKE",
            "true",
            "null",
            "1",
            "0x1F",
            "0b1",
            ".5",
            "1e3",
            "1..3",
            "'s'",
            "\"d\\n\"",
            "'\\u",
            "\"\\uD83D",
            "`q`",
            "\u{b4}",
            "@p",
            "@@c",
            "@",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "[*]",
            "[**]",
            "[* FILTER",
            "?",
            ":",
            "?:",
            "::",
            ".",
            "..",
            ",",
            "+",
            "-",
            "*",
            "/",
            "%",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "=~",
            "!~",
            "!",
            "&&",
            "||",
            ">>",
            "/*",
            "*/",
            "//",
            "\n",
            " ",
            "\u{e9}",
            "\u{0}",
            "\\",
            "CURRENT",
            "F(",
            "NS::",
            "OUTBOUND",
            "ANY",
        ];
        const SEEDS: &[&str] = &[
            "FOR u IN users FILTER u.age >= @min SORT u.name DESC LIMIT 2, 10 RETURN u",
            "FOR u IN users COLLECT c = u.city AGGREGATE n = SUM(u.x) INTO g = u.name RETURN { c, n, g }",
            "LET xs = (FOR i IN 1..10 RETURN i * 2) RETURN xs[* FILTER CURRENT > 4 LIMIT 2 RETURN CURRENT + 1]",
            "UPSERT { k: 'a' } INSERT { k: 'a', n: 1 } UPDATE { n: OLD.n + 1 } IN @@c OPTIONS {} RETURN NEW",
            "FOR u IN users UPDATE u WITH { seen: true, tags: u.tags[**] } IN users RETURN NEW",
            "RETURN a ? b : c ?: NOT d IN [1, 2] && e LIKE 'x%' || f =~ \"^\\u00e9\"",
            "FOR x IN `my-coll` REMOVE x IN `my-coll` LET y = x.`a b`.@p RETURN MY::FN(y, -0x1F, .5e1)",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut parsed = 0;
        for round in 0..6000 {
            let mut bytes = Vec::new();
            if round % 2 == 0 {
                // Noise built from AQL tokens and raw bytes.
                for _ in 0..next() % 24 {
                    let r = next();
                    if r % 5 == 0 {
                        bytes.push((r >> 8) as u8);
                    } else {
                        bytes
                            .extend_from_slice(PIECES[(r >> 8) as usize % PIECES.len()].as_bytes());
                        if r % 3 == 0 {
                            bytes.push(b' ');
                        }
                    }
                }
            } else {
                // A valid query with a few random edits (none on every tenth).
                bytes.extend_from_slice(SEEDS[next() as usize % SEEDS.len()].as_bytes());
                let edits = if round % 10 == 1 { 0 } else { 1 + next() % 3 };
                for _ in 0..edits {
                    let at = next() as usize % (bytes.len() + 1);
                    match next() % 3 {
                        0 => {
                            let end = (at + 1 + next() as usize % 6).min(bytes.len());
                            bytes.drain(at.min(end)..end);
                        }
                        1 => {
                            let piece = PIECES[next() as usize % PIECES.len()];
                            bytes.splice(at..at, piece.bytes());
                        }
                        _ => {
                            let end = (at + next() as usize % 12).min(bytes.len());
                            let copy = bytes[at..end].to_vec();
                            bytes.splice(at..at, copy);
                        }
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match parse(&text) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    assert_eq!(e.kind, crate::error::ErrorKind::Syntax, "{text:?}");
                    let span = e.span.unwrap_or_else(|| panic!("no span for {text:?}"));
                    assert!(
                        span.start <= span.end && span.end <= text.len(),
                        "{text:?}: {span:?}"
                    );
                    assert!(
                        text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                        "{text:?}: {span:?}"
                    );
                    assert!(e.line_col().is_some());
                    // The caret is shown whenever there is a line to show it under.
                    assert!(
                        text.is_empty() || e.to_string().contains('^'),
                        "{text:?}: {e}"
                    );
                }
            }
        }
        assert!(parsed >= 300, "only {parsed} inputs parsed");
    }
}
