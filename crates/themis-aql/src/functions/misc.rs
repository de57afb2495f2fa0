//! Miscellaneous functions: control flow (`NOT_NULL()`, `FIRST_LIST()`, ...),
//! assertions, hashing, dynamic calls and the like.

use serde_json::Value;

use super::{arg, call, det, is_executor_function, nondet, ok_bool, ok_null, take, Def, MANY};
use crate::error::{ErrorKind, QueryError};
use crate::value;

pub(super) const DEFS: &[Def] = &[
    det("NOT_NULL", 1, MANY, not_null, "NOT_NULL(value1, ...) → any: the first argument that is not null, or null (SQL's COALESCE)"),
    det("FIRST_LIST", 1, MANY, first_list, "FIRST_LIST(value1, ...) → array|null: the first argument that is an array"),
    det("FIRST_DOCUMENT", 1, MANY, first_document, "FIRST_DOCUMENT(value1, ...) → object|null: the first argument that is an object"),
    det("MIN_MATCH", 2, MANY, min_match, "MIN_MATCH(condition1, ..., minMatchCount) → bool: whether at least minMatchCount of the conditions are true"),
    det("IN_RANGE", 5, 5, in_range, "IN_RANGE(value, low, high, includeLow, includeHigh) → bool|null: whether low ≤ value ≤ high (bounds inclusive or not) in AQL's value order"),
    det("PASSTHRU", 1, 1, passthru, "PASSTHRU(value) → any: value unchanged"),
    nondet("NOOPT", 1, 1, passthru, "NOOPT(value) → any: value unchanged, hidden from the optimizer"),
    det("NOEVAL", 1, 1, passthru, "NOEVAL(value) → any: value unchanged, not evaluated at plan time"),
    nondet("FAIL", 0, 1, fail, "FAIL(reason?) → never returns: aborts the query with reason"),
    nondet("ASSERT", 2, 2, assert, "ASSERT(condition, message) → true: aborts the query with message if condition is false"),
    nondet("WARN", 2, 2, warn, "WARN(condition, message) → bool: TO_BOOL(condition) (ThemisDB records no warnings)"),
    det("HASH", 1, 1, hash, "HASH(value) → number: a stable 51-bit hash of the value (equal values hash alike)"),
    det("CHECK_DOCUMENT", 1, 1, check_document, "CHECK_DOCUMENT(value) → bool: whether value is a valid document (an object)"),
    det("VERSION", 0, 0, version, "VERSION() → string: the ThemisDB version"),
    nondet("CALL", 1, MANY, call_function, "CALL(name, arg1, ...) → any: calls the built-in function named by a string"),
    nondet("APPLY", 1, 2, apply, "APPLY(name, arguments) → any: calls the built-in function named by a string with an array of arguments"),
];

fn not_null(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(args
        .into_iter()
        .find(|v| !v.is_null())
        .unwrap_or(Value::Null))
}

fn first_list(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(args
        .into_iter()
        .find(Value::is_array)
        .unwrap_or(Value::Null))
}

fn first_document(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(args
        .into_iter()
        .find(Value::is_object)
        .unwrap_or(Value::Null))
}

fn min_match(args: Vec<Value>) -> Result<Value, QueryError> {
    let (count, conditions) = args.split_last().unwrap_or((&Value::Null, &[]));
    let want = value::to_number(count);
    let matched = conditions.iter().filter(|c| value::truthy(c)).count();
    ok_bool(matched as f64 >= want)
}

fn in_range(args: Vec<Value>) -> Result<Value, QueryError> {
    let (Value::Bool(include_low), Value::Bool(include_high)) = (arg(&args, 3), arg(&args, 4))
    else {
        return ok_null();
    };
    let v = arg(&args, 0);
    let low = value::compare(arg(&args, 1), v);
    let high = value::compare(v, arg(&args, 2));
    let above = low.is_lt() || (*include_low && low.is_eq());
    let below = high.is_lt() || (*include_high && high.is_eq());
    ok_bool(above && below)
}

fn passthru(mut args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(take(&mut args, 0))
}

fn fail(args: Vec<Value>) -> Result<Value, QueryError> {
    let reason = match args.first() {
        Some(v) => value::to_string(v),
        None => "FAIL() was called".to_string(),
    };
    Err(QueryError::runtime(reason))
}

fn assert(args: Vec<Value>) -> Result<Value, QueryError> {
    if value::truthy(arg(&args, 0)) {
        return ok_bool(true);
    }
    Err(QueryError::runtime(value::to_string(arg(&args, 1))))
}

fn warn(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(value::truthy(arg(&args, 0)))
}

fn hash(args: Vec<Value>) -> Result<Value, QueryError> {
    let h = super::strings::fnv1a64(value::hash_key(arg(&args, 0)).as_bytes());
    Ok(Value::from(h & 0x0007_ffff_ffff_ffff))
}

fn check_document(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_object())
}

fn version(_: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String(env!("CARGO_PKG_VERSION").to_string()))
}

/// Calls the function named by `name` for `CALL()`/`APPLY()`.
fn dynamic_call(via: &str, name: &Value, args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::String(name) = name else {
        return Err(QueryError::runtime(format!(
            "{via}() needs a function name as a string, got {}",
            value::typename(name)
        )));
    };
    let upper = name.to_ascii_uppercase();
    if upper == "CALL" || upper == "APPLY" || is_executor_function(&upper) {
        return Err(QueryError::runtime(format!(
            "{via}() cannot call {upper}(): call it directly"
        )));
    }
    call(&upper, args).map_err(|mut e| {
        if e.kind == ErrorKind::Semantic {
            // Arity and unknown-name errors surface while running here.
            e.kind = ErrorKind::Runtime;
            e.message = format!("in {via}(): {}", e.message);
        }
        e
    })
}

fn call_function(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let name = take(&mut args, 0);
    args.remove(0);
    dynamic_call("CALL", &name, args)
}

fn apply(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let name = take(&mut args, 0);
    let call_args = match take(&mut args, 1) {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => {
            return Err(QueryError::runtime(format!(
                "APPLY() needs the arguments as an array, got {}",
                value::typename(&other)
            )))
        }
    };
    dynamic_call("APPLY", &name, call_args)
}
