//! AQL text → [`crate::ast::Query`]. (Being written.)
