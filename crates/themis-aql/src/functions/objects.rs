//! Document and object functions: `MERGE()`, `UNSET()`, `KEEP()`, `HAS()`,
//! `ATTRIBUTES()`, `ZIP()`, `PARSE_IDENTIFIER()` ... A non-object where an object
//! is expected gives `null`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{arg, det, flag, int_arg, ok_bool, ok_null, take, Def, MANY};
use crate::error::QueryError;
use crate::value;

pub(super) const DEFS: &[Def] = &[
    det("ATTRIBUTES", 1, 3, attributes, "ATTRIBUTES(document, removeSystemAttrs?, sort?) → array: the top-level attribute names"),
    det("KEYS", 1, 3, attributes, "KEYS(document, removeSystemAttrs?, sort?) → array: alias of ATTRIBUTES()"),
    det("VALUES", 1, 2, values, "VALUES(document, removeSystemAttrs?) → array: the top-level attribute values"),
    det("ENTRIES", 1, 1, entries, "ENTRIES(document) → array: [name, value] pairs of the top-level attributes"),
    det("HAS", 2, 2, has, "HAS(document, name) → bool: whether the attribute exists (even with a null value)"),
    det("KEEP", 2, MANY, keep, "KEEP(document, name1, ...) or KEEP(document, names) → object: only the named top-level attributes"),
    det("KEEP_RECURSIVE", 2, MANY, keep_recursive, "KEEP_RECURSIVE(document, name1, ...) or KEEP_RECURSIVE(document, names) → object: only the named attributes, at every level"),
    det("UNSET", 2, MANY, unset, "UNSET(document, name1, ...) or UNSET(document, names) → object: without the named top-level attributes"),
    det("UNSET_RECURSIVE", 2, MANY, unset_recursive, "UNSET_RECURSIVE(document, name1, ...) or UNSET_RECURSIVE(document, names) → object: without the named attributes, at every level"),
    det("MERGE", 1, MANY, merge, "MERGE(document1, document2, ...) or MERGE(documents) → object: top-level attributes combined, later ones win"),
    det("MERGE_RECURSIVE", 1, MANY, merge_recursive, "MERGE_RECURSIVE(document1, document2, ...) or MERGE_RECURSIVE(documents) → object: combined at every level, later ones win"),
    det("MATCHES", 2, 3, matches, "MATCHES(document, example|examples, returnIndex?) → bool|number: whether the document has all attribute values of one of the examples (or that example's index, -1 if none)"),
    det("ZIP", 2, 2, zip, "ZIP(names, values) → object: an object from an array of attribute names and an array of values of the same length"),
    det("VALUE", 2, 2, value_at, "VALUE(document, path) → any: the value at a path of attribute names and array positions, e.g. [\"a\", 0, \"b\"]"),
    det("TRANSLATE", 2, 3, translate, "TRANSLATE(value, lookup, default?) → any: lookup[TO_STRING(value)] if present, else default (or value)"),
    det("PARSE_IDENTIFIER", 1, 1, parse_identifier, "PARSE_IDENTIFIER(id|document) → object: {collection, key} of a document identifier \"coll/key\""),
    det("PARSE_COLLECTION", 1, 1, parse_collection, "PARSE_COLLECTION(id|document) → string: the collection part of a document identifier"),
    det("PARSE_KEY", 1, 1, parse_key, "PARSE_KEY(id|document) → string: the key part of a document identifier"),
    det("IS_SAME_COLLECTION", 2, 2, is_same_collection, "IS_SAME_COLLECTION(collection, id|document) → bool|null: whether the identifier belongs to the collection"),
];

fn is_system(name: &str) -> bool {
    name.starts_with('_')
}

fn attributes(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let (remove_system, sort) = (flag(&args, 1, false), flag(&args, 2, false));
    let Value::Object(o) = take(&mut args, 0) else {
        return ok_null();
    };
    let mut names: Vec<String> = o
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !(remove_system && is_system(k)))
        .collect();
    if sort {
        names.sort_unstable();
    }
    Ok(Value::Array(names.into_iter().map(Value::String).collect()))
}

fn values(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let remove_system = flag(&args, 1, false);
    let Value::Object(o) = take(&mut args, 0) else {
        return ok_null();
    };
    Ok(Value::Array(
        o.into_iter()
            .filter(|(k, _)| !(remove_system && is_system(k)))
            .map(|(_, v)| v)
            .collect(),
    ))
}

fn entries(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::Object(o) = take(&mut args, 0) else {
        return ok_null();
    };
    Ok(Value::Array(
        o.into_iter()
            .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
            .collect(),
    ))
}

fn has(args: Vec<Value>) -> Result<Value, QueryError> {
    match arg(&args, 0) {
        Value::Object(o) => ok_bool(o.contains_key(&value::to_string(arg(&args, 1)))),
        _ => ok_bool(false),
    }
}

/// Attribute names from the arguments after the document: strings and numbers,
/// or arrays of them.
fn names(args: &[Value]) -> HashSet<String> {
    fn add(v: &Value, out: &mut HashSet<String>) {
        match v {
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Number(_) => {
                out.insert(value::to_string(v));
            }
            Value::Array(items) => items.iter().for_each(|i| add(i, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    for a in args.iter().skip(1) {
        add(a, &mut out);
    }
    out
}

fn filter_object(o: Map<String, Value>, names: &HashSet<String>, keep: bool, deep: bool) -> Value {
    Value::Object(
        o.into_iter()
            .filter(|(k, _)| names.contains(k) == keep)
            .map(|(k, v)| match v {
                Value::Object(inner) if deep => (k, filter_object(inner, names, keep, deep)),
                v => (k, v),
            })
            .collect(),
    )
}

fn filter_attributes(mut args: Vec<Value>, keep: bool, deep: bool) -> Result<Value, QueryError> {
    let names = names(&args);
    match take(&mut args, 0) {
        Value::Object(o) => Ok(filter_object(o, &names, keep, deep)),
        _ => ok_null(),
    }
}

fn keep(args: Vec<Value>) -> Result<Value, QueryError> {
    filter_attributes(args, true, false)
}

fn keep_recursive(args: Vec<Value>) -> Result<Value, QueryError> {
    filter_attributes(args, true, true)
}

fn unset(args: Vec<Value>) -> Result<Value, QueryError> {
    filter_attributes(args, false, false)
}

fn unset_recursive(args: Vec<Value>) -> Result<Value, QueryError> {
    filter_attributes(args, false, true)
}

/// The documents to merge: the arguments, or the elements of a sole array
/// argument; `None` if any of them is not an object.
fn documents(args: Vec<Value>) -> Option<Vec<Map<String, Value>>> {
    let docs = match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(items)]) => items,
        Ok([single]) => vec![single],
        Err(args) => args,
    };
    docs.into_iter()
        .map(|d| match d {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn merge(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(docs) = documents(args) else {
        return ok_null();
    };
    let mut out = Map::new();
    for doc in docs {
        out.extend(doc);
    }
    Ok(Value::Object(out))
}

fn merge_into(target: &mut Map<String, Value>, source: Map<String, Value>) {
    for (k, v) in source {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(existing)), Value::Object(inner)) => merge_into(existing, inner),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

fn merge_recursive(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(docs) = documents(args) else {
        return ok_null();
    };
    let mut out = Map::new();
    for doc in docs {
        merge_into(&mut out, doc);
    }
    Ok(Value::Object(out))
}

fn matches(args: Vec<Value>) -> Result<Value, QueryError> {
    let return_index = flag(&args, 2, false);
    let examples: Vec<&Value> = match arg(&args, 1) {
        Value::Array(items) if items.is_empty() => return ok_null(),
        Value::Array(items) => items.iter().collect(),
        example @ Value::Object(_) => vec![example],
        _ => return ok_null(),
    };
    let found = match arg(&args, 0) {
        Value::Object(doc) => examples.iter().position(|ex| match ex {
            Value::Object(ex) => ex
                .iter()
                .all(|(k, want)| value::equals(doc.get(k).unwrap_or(&Value::Null), want)),
            _ => false,
        }),
        _ => None,
    };
    if return_index {
        Ok(Value::from(found.map_or(-1, |i| i as i64)))
    } else {
        ok_bool(found.is_some())
    }
}

fn zip(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let values = take(&mut args, 1);
    let keys = take(&mut args, 0);
    match (keys, values) {
        (Value::Array(keys), Value::Array(values)) if keys.len() == values.len() => Ok(
            Value::Object(keys.iter().map(value::to_string).zip(values).collect()),
        ),
        _ => ok_null(),
    }
}

fn value_at(args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::Array(path) = arg(&args, 1) else {
        return ok_null();
    };
    if path.is_empty() || !arg(&args, 0).is_object() {
        return ok_null();
    }
    let mut current = arg(&args, 0);
    for step in path {
        current = match (current, step) {
            (Value::Object(o), Value::String(name)) => match o.get(name) {
                Some(v) => v,
                None => return ok_null(),
            },
            (Value::Array(items), Value::Number(_)) => {
                let i = int_arg(step);
                let i = if i < 0 { items.len() as i64 + i } else { i };
                match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                    Some(v) => v,
                    None => return ok_null(),
                }
            }
            _ => return ok_null(),
        };
    }
    Ok(current.clone())
}

fn translate(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let has_default = args.len() == 3;
    let default = take(&mut args, 2);
    let v = take(&mut args, 0);
    let Value::Object(lookup) = arg(&args, 1) else {
        return ok_null();
    };
    let key = match &v {
        Value::String(s) => s.clone(),
        other => value::to_string(other),
    };
    Ok(match lookup.get(&key) {
        Some(mapped) => mapped.clone(),
        None if has_default => default,
        None => v,
    })
}

/// The `(collection, key)` of a document identifier string or a document's
/// `_id`.
fn identifier(v: &Value, function: &str) -> Result<(String, String), QueryError> {
    let id = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("_id").and_then(Value::as_str),
        _ => None,
    };
    id.and_then(|id| id.split_once('/'))
        .map(|(c, k)| (c.to_string(), k.to_string()))
        .ok_or_else(|| {
            QueryError::runtime(format!(
                "{function}() expects a document identifier like \"users/123\" or a document \
                 with an _id attribute, got {}",
                describe(v)
            ))
        })
}

/// A short description of a value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {}", value::to_json(&Value::String(s.clone()))),
        Value::Object(_) => "an object without an _id of that form".to_string(),
        other => format!("a value of type {}", value::typename(other)),
    }
}

fn parse_identifier(args: Vec<Value>) -> Result<Value, QueryError> {
    let (collection, key) = identifier(arg(&args, 0), "PARSE_IDENTIFIER")?;
    let mut out = Map::new();
    out.insert("collection".to_string(), Value::String(collection));
    out.insert("key".to_string(), Value::String(key));
    Ok(Value::Object(out))
}

fn parse_collection(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String(
        identifier(arg(&args, 0), "PARSE_COLLECTION")?.0,
    ))
}

fn parse_key(args: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::String(identifier(arg(&args, 0), "PARSE_KEY")?.1))
}

fn is_same_collection(args: Vec<Value>) -> Result<Value, QueryError> {
    let collection = value::to_string(arg(&args, 0));
    let id = match arg(&args, 1) {
        Value::String(s) => s.as_str(),
        Value::Object(o) => match o.get("_id").and_then(Value::as_str) {
            Some(id) => id,
            None => return ok_null(),
        },
        _ => return ok_null(),
    };
    ok_bool(id.split_once('/').is_some_and(|(c, _)| c == collection))
}
