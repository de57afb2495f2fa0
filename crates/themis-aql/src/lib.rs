//! ThemisDB's AQL, as ArangoDB documents it.
//!
//! Pipeline: [`parser`] (text → [`ast::Query`] with source spans) → planner (index
//! choice) → executor (pull-based: rows are produced one at a time as the caller asks,
//! so large results stream). [`value`] holds AQL's value semantics (type order,
//! comparison, truthiness, casts) and [`functions`] the standard library.
//!
//! Invariant: every error a user can see is an [`error::QueryError`] that names what
//! was wrong, with the line, column and offending text for anything in the query.

pub mod ast;
mod compile;
pub mod error;
pub mod exec;
pub mod filter;
pub mod functions;
mod lexer;
pub mod parser;
pub mod value;

pub use error::{ErrorKind, QueryError, Span};
pub use exec::{explain, run_read, run_write, Prepared, QueryOptions, ReadCursor, Stats};
