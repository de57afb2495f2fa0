//! Standalone boolean expressions over one document: the filters of real-time
//! subscriptions (`doc.total > 100 && doc.status == "open"`).
//!
//! A thin layer over the query pipeline: the text is parsed by the AQL parser as one
//! expression, compiled by the query compiler with a single variable, `doc`, and
//! evaluated by the query executor's expression evaluator, so a filter means exactly
//! what the same expression means in `FILTER` of a query. What would need storage or
//! a query context (collections, bind parameters, subqueries, `DOCUMENT()`,
//! `CURRENT_USER()`, …) is refused when the filter is compiled, with the caret
//! display of any query error.
//!
//! A document matches when the expression's value is truthy, by AQL's rules (`null`,
//! `false`, `0`, `""` are false; arrays and objects, even empty, are true). AQL
//! rarely fails at run time (most type mismatches give `null`), but where it does
//! (a range too large, say), [`Filter::matches`] returns the error; subscriptions
//! count such a document as not matching.

use serde_json::Value;

use crate::compile::{self, CExpr};
use crate::error::QueryError;
use crate::exec::{self, QueryOptions};
use crate::{parser, value};

/// The name a filter's document is bound to.
pub const FILTER_VARIABLE: &str = "doc";

/// How much a range (`1..n`) or other value built while evaluating a filter may take.
const FILTER_MEMORY_LIMIT: usize = 16 * 1024 * 1024;
/// Largest array a range in a filter may build.
const FILTER_MAX_RANGE: usize = 10_000;
/// Time one evaluation may take: a filter runs once per change, for every
/// subscriber, so a pathological one (nested expansions over ranges) is cut short.
const FILTER_MAX_RUNTIME: std::time::Duration = std::time::Duration::from_millis(20);

/// A compiled filter: compile once, evaluate per document. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    expr: CExpr,
    slots: usize,
}

impl Filter {
    /// Parses and compiles `text`, a boolean expression over `doc`. The error
    /// (a syntax error, an unknown function, a refused construct) carries the text,
    /// so it displays with the line, column and a caret.
    pub fn compile(text: &str) -> Result<Filter, QueryError> {
        let what = "a subscription filter";
        let expr = parser::parse_expression(text)?;
        let (expr, slots) = compile::compile_expression(&expr, &[FILTER_VARIABLE], what)
            .map_err(|e| e.in_query(text))?;
        Ok(Filter {
            text: text.to_string(),
            expr,
            slots,
        })
    }

    /// The filter as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `doc` passes: the expression's value with `doc` bound to it, by AQL
    /// truthiness.
    pub fn matches(&self, doc: Value) -> Result<bool, QueryError> {
        let mut row = vec![Value::Null; self.slots.max(1)];
        row[0] = doc;
        let opts = QueryOptions {
            memory_limit_bytes: FILTER_MEMORY_LIMIT,
            max_runtime: Some(FILTER_MAX_RUNTIME),
            max_range_elements: FILTER_MAX_RANGE,
            ..QueryOptions::default()
        };
        let v = exec::eval_standalone(&self.expr, &row, &opts)?;
        Ok(value::truthy(&v))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_pathological_filter_is_cut_short() {
        let f = super::Filter::compile(
            "LENGTH((0..9999)[* FILTER LENGTH((0..9999)[* FILTER CURRENT > doc.n]) > 0]) > 0",
        )
        .unwrap();
        // Without the time limit inside expansions this runs for minutes.
        let e = f.matches(json!({"n": 1})).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Limit, "{e}");
    }

    use super::*;
    use crate::error::ErrorKind;

    fn matches(filter: &str, doc: Value) -> bool {
        Filter::compile(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(doc)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
    }

    #[test]
    fn evaluates_like_a_query_filter() {
        let doc = json!({ "total": 150, "status": "open", "tags": ["a", "b"],
                          "items": [{ "qty": 1 }, { "qty": 3 }], "nested": { "x": null } });
        assert!(matches(
            "doc.total > 100 && doc.status == \"open\"",
            doc.clone()
        ));
        assert!(!matches(
            "doc.total > 100 AND doc.status == 'closed'",
            doc.clone()
        ));
        assert!(matches("'b' IN doc.tags", doc.clone()));
        assert!(matches(
            "LENGTH(doc.items[* FILTER CURRENT.qty > 2]) == 1",
            doc.clone()
        ));
        assert!(matches("UPPER(doc.status) == 'OPEN'", doc.clone()));
        assert!(matches("doc.status =~ '^op'", doc.clone()));
        assert!(matches("doc.missing == null", doc.clone()));
        assert!(!matches("doc.nested.x.y", doc.clone()));
        // Truthiness, as in FILTER: any non-boolean value counts by AQL's rules.
        assert!(matches("doc.tags", doc.clone()));
        assert!(matches("doc.total", doc.clone()));
        assert!(!matches("doc.status == 'open' ? 0 : 1", doc.clone()));
        assert!(!matches("''", doc.clone()));
        assert!(matches("{}", doc.clone()));
        assert!(matches("true", Value::Null));
        assert!(!matches("doc.total > 1", Value::Null));
    }

    #[test]
    fn bad_filters_are_refused_when_compiled_with_a_caret() {
        let cases: &[(&str, &str)] = &[
            ("doc.total >", "unexpected end of query"),
            ("doc.a == 1 RETURN doc", "end of the expression"),
            ("orders[0].x == 1", "unknown variable 'orders'"),
            ("x.total > 1", "can use only `doc`"),
            ("doc.a == @value", "bind parameter '@value' cannot be used"),
            ("DOCUMENT('c/k') != null", "DOCUMENT() reads the database"),
            ("CURRENT_USER() == 'root'", "CURRENT_USER() reads"),
            (
                "LENGTH(FOR i IN doc.items RETURN i) > 0",
                "subqueries cannot be used",
            ),
            ("NO_SUCH_FN(doc)", "unknown function 'NO_SUCH_FN()'"),
        ];
        for (text, needle) in cases {
            let err = Filter::compile(text).expect_err(text);
            assert!(
                matches!(err.kind, ErrorKind::Syntax | ErrorKind::Semantic),
                "{text}: {err:?}"
            );
            let shown = err.to_string();
            assert!(shown.contains(needle), "{text}: {shown}");
            assert!(shown.contains('^'), "{text}: no caret in {shown}");
        }
    }

    #[test]
    fn runtime_failures_are_errors_for_the_caller_to_judge() {
        let f = Filter::compile("LENGTH(0..doc.n) > 0").unwrap();
        assert!(f.matches(json!({ "n": 10 })).unwrap());
        assert!(f.matches(json!({ "n": 10_000_000 })).is_err());
    }
}
