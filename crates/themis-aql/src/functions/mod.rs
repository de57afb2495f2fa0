//! The AQL standard library: every built-in function ThemisDB evaluates without
//! storage or query context, looked up by upper-case name.
//!
//! Each function is a [`Def`]: its name, how many arguments it takes, whether it
//! is deterministic (the planner may fold calls with constant arguments), a
//! one-line signature for `docs/aql.md` and the shell, and the implementation.
//!
//! Conventions, following ArangoDB:
//! - Arguments of the wrong type do not fail the query: the function returns
//!   `null` (ArangoDB also records a warning; ThemisDB does not record
//!   warnings). String functions convert their arguments with `TO_STRING`,
//!   numeric functions with `TO_NUMBER`.
//! - A wrong number of arguments is a semantic error, found at plan time by
//!   [`check_arity`].
//! - Functions that need storage or the query's context (`DOCUMENT()`,
//!   `COLLECTION_COUNT()`, ...) are recognised by [`is_executor_function`]; they exist
//!   for [`exists`]/[`check_arity`], but [`call`] refuses them.
//! - Positions in strings count Unicode characters (code points).
//! - Date functions work in UTC: a timezone argument other than UTC is an error.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::{ErrorKind, QueryError};
use crate::value;

mod arrays;
mod dates;
mod misc;
mod numeric;
mod objects;
mod strings;
mod types;

#[cfg(test)]
mod tests;

/// The implementation of a function: evaluated arguments in, value out.
type Impl = fn(Vec<Value>) -> Result<Value, QueryError>;

/// "Any number of further arguments".
const MANY: usize = usize::MAX;

/// One built-in function.
pub(crate) struct Def {
    name: &'static str,
    min_args: usize,
    max_args: usize,
    deterministic: bool,
    signature: &'static str,
    imp: Impl,
}

/// A deterministic function.
const fn det(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    imp: Impl,
    signature: &'static str,
) -> Def {
    Def {
        name,
        min_args,
        max_args,
        deterministic: true,
        signature,
        imp,
    }
}

/// A function whose result may differ between calls with the same arguments.
const fn nondet(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    imp: Impl,
    signature: &'static str,
) -> Def {
    Def {
        name,
        min_args,
        max_args,
        deterministic: false,
        signature,
        imp,
    }
}

/// Whether `name` is one of the functions the executor implements itself because
/// they need storage or the query's context (`EXECUTOR_DEFS`). [`exists`] and
/// [`check_arity`] know them; [`call`] refuses them.
pub fn is_executor_function(name: &str) -> bool {
    EXECUTOR_DEFS.iter().any(|d| d.name == name)
}

fn executor_only(_: Vec<Value>) -> Result<Value, QueryError> {
    Err(QueryError::runtime(
        "this function is evaluated by the query executor and cannot be called here",
    ))
}

const EXECUTOR_DEFS: &[Def] = &[
    nondet(
        "COLLECTIONS",
        0,
        0,
        executor_only,
        "COLLECTIONS() → array: the collections of the current database as {name, _id} objects",
    ),
    nondet(
        "COLLECTION_COUNT",
        1,
        1,
        executor_only,
        "COLLECTION_COUNT(collection) → number: how many documents a collection holds (LENGTH(collection) does the same)",
    ),
    nondet(
        "CURRENT_DATABASE",
        0,
        0,
        executor_only,
        "CURRENT_DATABASE() → string: the name of the current database",
    ),
    nondet(
        "CURRENT_USER",
        0,
        0,
        executor_only,
        "CURRENT_USER() → string|null: the authenticated user running the query, or null",
    ),
    nondet(
        "DOCUMENT",
        1,
        2,
        executor_only,
        "DOCUMENT(collection, key|id|array) or DOCUMENT(id|array) → object|array|null: look documents up by key or _id",
    ),
];

fn all_defs() -> impl Iterator<Item = &'static Def> {
    [
        types::DEFS,
        strings::DEFS,
        numeric::DEFS,
        arrays::DEFS,
        objects::DEFS,
        dates::DEFS,
        misc::DEFS,
        EXECUTOR_DEFS,
    ]
    .into_iter()
    .flatten()
}

fn registry() -> &'static HashMap<&'static str, &'static Def> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static Def>> = OnceLock::new();
    REGISTRY.get_or_init(|| all_defs().map(|d| (d.name, d)).collect())
}

fn lookup(name: &str) -> Option<&'static Def> {
    registry().get(name).copied()
}

fn unknown_function(name: &str) -> String {
    format!("unknown function '{name}()': see docs/aql.md for the functions ThemisDB supports")
}

/// Whether `name` (upper-case) is a built-in function, including the
/// executor-provided ones.
pub fn exists(name: &str) -> bool {
    lookup(name).is_some()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "argument"
    } else {
        "arguments"
    }
}

/// Plan-time check of the number of arguments, e.g. `"LENGTH() takes 1 argument,
/// got 2"`.
pub fn check_arity(name: &str, n: usize) -> Result<(), String> {
    arity(lookup(name).ok_or_else(|| unknown_function(name))?, n)
}

fn arity(def: &Def, n: usize) -> Result<(), String> {
    let name = def.name;
    if n >= def.min_args && n <= def.max_args {
        return Ok(());
    }
    let (min, max) = (def.min_args, def.max_args);
    let takes = if max == MANY {
        format!("at least {min} {}", plural(min))
    } else if min == max && min == 0 {
        "no arguments".to_string()
    } else if min == max {
        format!("{min} {}", plural(min))
    } else if max == min + 1 {
        format!("{min} or {max} arguments")
    } else {
        format!("{min} to {max} arguments")
    };
    Err(format!("{name}() takes {takes}, got {n}"))
}

/// Whether repeated calls with the same arguments give the same result (false
/// for `RAND()`, `UUID()`, `DATE_NOW()`, the executor-provided functions ...).
pub fn is_deterministic(name: &str) -> bool {
    lookup(name).is_some_and(|d| d.deterministic)
}

/// Calls a built-in function by its upper-case name.
pub fn call(name: &str, args: Vec<Value>) -> Result<Value, QueryError> {
    let def =
        lookup(name).ok_or_else(|| QueryError::new(ErrorKind::Semantic, unknown_function(name)))?;
    arity(def, args.len()).map_err(|m| QueryError::new(ErrorKind::Semantic, m))?;
    if is_executor_function(name) {
        return Err(QueryError::runtime(format!(
            "{name}() needs the query executor (storage or query context) and cannot be \
             evaluated as a plain function"
        )));
    }
    (def.imp)(args)
}

/// Every function as `(name, one-line signature and description)`, sorted by
/// name: the source for `docs/aql.md` and the shell's help.
pub fn list() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<(&'static str, &'static str)> =
        all_defs().map(|d| (d.name, d.signature)).collect();
    all.sort_unstable_by_key(|(name, _)| *name);
    all
}

// ---------------------------------------------------------------------------
// Helpers shared by the function modules.

static NULL: Value = Value::Null;

/// Argument `i`, or `null` when it was not given.
fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&NULL)
}

/// Moves argument `i` out, leaving `null`.
fn take(args: &mut [Value], i: usize) -> Value {
    args.get_mut(i).map(Value::take).unwrap_or(Value::Null)
}

/// A numeric argument as an integer (`TO_NUMBER`, truncated, saturating).
fn int_arg(v: &Value) -> i64 {
    value::to_number(v).trunc() as i64
}

/// An optional boolean flag: `default` when absent or null, else its truthiness.
fn flag(args: &[Value], i: usize, default: bool) -> bool {
    match args.get(i) {
        None | Some(Value::Null) => default,
        Some(v) => value::truthy(v),
    }
}

/// A string argument converted with `TO_STRING`.
fn str_arg(args: &[Value], i: usize) -> String {
    value::to_string(arg(args, i))
}

fn ok_bool(b: bool) -> Result<Value, QueryError> {
    Ok(Value::Bool(b))
}

fn ok_num(f: f64) -> Result<Value, QueryError> {
    Ok(value::number(f))
}

fn ok_null() -> Result<Value, QueryError> {
    Ok(Value::Null)
}
