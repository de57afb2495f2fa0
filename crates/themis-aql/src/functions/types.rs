//! Type check and cast functions: `TO_NUMBER()`, `IS_STRING()`, `TYPENAME()` ...

use serde_json::Value;

use super::{arg, det, ok_bool, take, Def};
use crate::error::QueryError;
use crate::value;

pub(super) const DEFS: &[Def] = &[
    det("TO_BOOL", 1, 1, to_bool, "TO_BOOL(value) → bool: false for null, false, 0 and \"\"; true for everything else, including every array and object"),
    det("TO_NUMBER", 1, 1, to_number, "TO_NUMBER(value) → number: null/false → 0, true → 1, numeric strings → their value, [x] → TO_NUMBER(x), anything else → 0"),
    det("TO_STRING", 1, 1, to_string, "TO_STRING(value) → string: null → \"\", numbers in shortest form, arrays and objects as JSON"),
    det("TO_ARRAY", 1, 1, to_array, "TO_ARRAY(value) → array: null → [], arrays unchanged, objects → their values, anything else → [value]"),
    det("TO_LIST", 1, 1, to_array, "TO_LIST(value) → array: alias of TO_ARRAY()"),
    det("IS_NULL", 1, 1, is_null, "IS_NULL(value) → bool: whether value is null"),
    det("IS_BOOL", 1, 1, is_bool, "IS_BOOL(value) → bool: whether value is true or false"),
    det("IS_NUMBER", 1, 1, is_number, "IS_NUMBER(value) → bool: whether value is a number"),
    det("IS_STRING", 1, 1, is_string, "IS_STRING(value) → bool: whether value is a string"),
    det("IS_ARRAY", 1, 1, is_array, "IS_ARRAY(value) → bool: whether value is an array"),
    det("IS_LIST", 1, 1, is_array, "IS_LIST(value) → bool: alias of IS_ARRAY()"),
    det("IS_OBJECT", 1, 1, is_object, "IS_OBJECT(value) → bool: whether value is an object"),
    det("IS_DOCUMENT", 1, 1, is_object, "IS_DOCUMENT(value) → bool: alias of IS_OBJECT()"),
    det("IS_DATESTRING", 1, 1, is_datestring, "IS_DATESTRING(value) → bool: whether value is a string the date functions accept (\"2015\", \"2015-10-01T12:00:00Z\" ...)"),
    det("IS_KEY", 1, 1, is_key, "IS_KEY(value) → bool: whether value is a string usable as a document _key"),
    det("TYPENAME", 1, 1, typename, "TYPENAME(value) → string: \"null\", \"bool\", \"number\", \"string\", \"array\" or \"object\""),
];

fn to_bool(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(value::truthy(arg(&args, 0)))
}

fn to_number(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(value::unary(crate::ast::UnaryOp::Plus, arg(&args, 0)))
}

fn to_string(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String(value::to_string(arg(&args, 0))))
}

fn to_array(mut args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(match take(&mut args, 0) {
        Value::Null => Value::Array(Vec::new()),
        a @ Value::Array(_) => a,
        Value::Object(o) => Value::Array(o.into_iter().map(|(_, v)| v).collect()),
        v => Value::Array(vec![v]),
    })
}

fn is_null(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_null())
}

fn is_bool(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_boolean())
}

fn is_number(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_number())
}

fn is_string(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_string())
}

fn is_array(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_array())
}

fn is_object(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(arg(&args, 0).is_object())
}

fn is_datestring(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(match arg(&args, 0) {
        Value::String(s) => super::dates::parse_date_string(s).is_some(),
        _ => false,
    })
}

fn is_key(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(matches!(arg(&args, 0), Value::String(s) if themis_storage::validate_key(s).is_ok()))
}

fn typename(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String(value::typename(arg(&args, 0)).to_string()))
}
