//! Query errors, with source positions and the offending text underlined.

use std::fmt;

/// A byte range of the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// What kind of failure; the server maps every kind to `ERR_QUERY` except where noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not valid AQL.
    Syntax,
    /// Valid syntax, invalid meaning: unknown variable, function or collection, a
    /// missing bind parameter, a wrong number of arguments.
    Semantic,
    /// Failed while running: a type error, a limit exceeded.
    Runtime,
    /// A write collided with existing data (maps to `ERR_CONFLICT`).
    Conflict,
    /// A write kept losing optimistic races with concurrent writers: the same query
    /// may succeed when run again (`ERR_CONFLICT`, retryable).
    Contended,
    /// A document or collection is missing where one is required (`ERR_NOT_FOUND`).
    NotFound,
    /// A resource limit of the query (memory, time) was exceeded.
    Limit,
    /// The query's transaction cannot run it: read-only, aborted or finished
    /// (`ERR_TRANSACTION`).
    Transaction,
    /// Storage failed underneath the query (I/O, corruption, shutting down): not the
    /// query's fault (`ERR_INTERNAL`).
    Internal,
}

/// An error in or while running a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
    /// Where in the query text, when the error belongs to a part of it.
    pub span: Option<Span>,
    /// The query text, for rendering the position; set by [`QueryError::in_query`].
    pub source: Option<String>,
}

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            span: None,
            source: None,
        }
    }

    pub fn syntax(message: impl Into<String>, span: Span) -> Self {
        Self::new(ErrorKind::Syntax, message).at(span)
    }

    pub fn semantic(message: impl Into<String>, span: Span) -> Self {
        Self::new(ErrorKind::Semantic, message).at(span)
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, message)
    }

    /// Attaches a position, unless the error already has one.
    pub fn at(mut self, span: Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    /// Attaches the query text so Display can show the line and a caret.
    pub fn in_query(mut self, query: &str) -> Self {
        self.source = Some(query.to_string());
        self
    }

    /// 1-based line and column (in characters) of the span's start.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let (src, span) = (self.source.as_deref()?, self.span?);
        let start = span.start.min(src.len());
        let before = &src[..floor_char_boundary(src, start)];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Some((line, col))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for QueryError {
    /// `message (line L, column C)` followed by the query line and `^^^` under the
    /// offending text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        let (Some(src), Some(span), Some((line, col))) =
            (self.source.as_deref(), self.span, self.line_col())
        else {
            return Ok(());
        };
        write!(f, " (line {line}, column {col})")?;
        let Some(text) = src.lines().nth(line - 1) else {
            return Ok(());
        };
        let start = floor_char_boundary(src, span.start.min(src.len()));
        let end = floor_char_boundary(src, span.end.min(src.len())).max(start);
        let width = src[start..end]
            .split('\n')
            .next()
            .map(|t| t.chars().count())
            .unwrap_or(0)
            .max(1);
        write!(
            f,
            "\n  {text}\n  {}{}",
            " ".repeat(col - 1),
            "^".repeat(width)
        )
    }
}

impl std::error::Error for QueryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_offending_text() {
        let q = "FOR u IN users\n  FILTER u.age >> 3\n  RETURN u";
        let start = q.find(">>").unwrap();
        let e = QueryError::syntax("unexpected '>'", Span::new(start + 1, start + 2)).in_query(q);
        assert_eq!(e.line_col(), Some((2, 17)));
        let shown = e.to_string();
        assert!(
            shown.starts_with("unexpected '>' (line 2, column 17)"),
            "{shown}"
        );
        assert!(
            shown.ends_with("\n    FILTER u.age >> 3\n                  ^"),
            "{shown:?}"
        );
    }
}
