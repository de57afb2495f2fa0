//! The JSON side of documents: checking input, composing stored bytes, merge/replace.
//!
//! Invariants of a stored document:
//! * it is one JSON object whose first three attributes are `_key`, `_id`
//!   (`collection/key`) and `_rev`, in that order, followed by the user's attributes
//!   in their original order;
//! * it is serialized once, when written, so reads hand the stored bytes to the wire
//!   without decoding or re-encoding;
//! * user input never sets `_id` or `_rev`, and sets `_key` only on insert.
//!
//! The user attributes are kept pre-serialized as "rest" bytes (`{...}` without the
//! system attributes), so a write retried after a transaction conflict only splices
//! a new `_rev` in front instead of serializing the whole document again.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::names::validate_key;

/// System attributes: set by the store, ignored when given by users.
pub(crate) const SYSTEM_ATTRS: [&str; 3] = ["_key", "_id", "_rev"];

/// How [`crate::DocumentStore::update`] (and [`crate::WriteTx::update`]) applies a body
/// to a stored document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Patch: attributes in the body overwrite stored ones; nested objects are merged
    /// recursively; a `null` value removes the attribute (ArangoDB `keepNull=false`,
    /// which also drops `null`s inside objects the patch adds).
    Merge,
    /// Replace every user attribute with the body's (nulls kept as values).
    Replace,
}

/// An input document, checked and ready to be stored.
#[derive(Debug)]
pub(crate) struct PreparedDoc {
    /// The `_key` the user gave, already validated.
    pub key: Option<String>,
    /// The user attributes, serialized.
    pub rest: Vec<u8>,
}

/// Parses bytes that must hold one JSON object. The error is a sentence fragment for
/// the caller to prefix (with a bulk position, say).
pub(crate) fn parse_object(raw: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "a document must be a JSON object, got {}; wrap the value in an object such as {{\"value\": ...}}",
            type_name(&other)
        )),
        Err(e) => Err(format!(
            "the document is not valid JSON ({e}); send one JSON object per document"
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks one input document for insert.
pub(crate) fn prepare_insert(raw: &[u8]) -> Result<PreparedDoc, String> {
    let mut map = parse_object(raw)?;
    let key = check_input(&mut map)?;
    Ok(PreparedDoc {
        key,
        rest: serialize_map(&map)?,
    })
}

/// Checks a parsed input document for insert: returns its `_key` (validated) if it
/// has one, and strips the system attributes from it.
pub(crate) fn check_input(map: &mut Map<String, Value>) -> Result<Option<String>, String> {
    let key = match map.get("_key") {
        None => None,
        Some(Value::String(k)) => {
            validate_key(k).map_err(|e| e.message().to_string())?;
            Some(k.clone())
        }
        Some(other) => {
            return Err(format!(
                "_key must be a string, got {}; omit _key to have one generated",
                type_name(other)
            ))
        }
    };
    strip_system(map);
    Ok(key)
}

/// Removes the system attributes, keeping the others in order.
pub(crate) fn strip_system(map: &mut Map<String, Value>) {
    map.retain(|k, _| !SYSTEM_ATTRS.contains(&k.as_str()));
}

pub(crate) fn serialize_map(map: &Map<String, Value>) -> Result<Vec<u8>, String> {
    serde_json::to_vec(map).map_err(|e| format!("the document cannot be serialized: {e}"))
}

/// Builds the stored bytes: `{"_key":..,"_id":"coll/key","_rev":..` + the rest.
pub(crate) fn compose(collection: &str, key: &str, rev: &str, rest: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(rest.len() + 2 * key.len() + collection.len() + 40);
    out.extend_from_slice(b"{\"_key\":");
    push_json_str(&mut out, key);
    out.extend_from_slice(b",\"_id\":");
    push_json_str(&mut out, &format!("{collection}/{key}"));
    out.extend_from_slice(b",\"_rev\":");
    push_json_str(&mut out, rev);
    // `rest` is a serialized object: "{}" or "{...}". Splice its members in.
    match rest.get(1..) {
        Some(members) if rest.len() > 2 => {
            out.push(b',');
            out.extend_from_slice(members);
        }
        _ => out.push(b'}'),
    }
    Bytes::from(out)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Keys and names are restricted to characters that need no escaping, but
    // escaping through serde_json keeps this correct whatever reaches it.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Applies an update body to a stored document's attributes and returns the new
/// user attributes (system attributes stripped from both). `keep_null` only matters
/// for [`UpdateMode::Merge`]: with it a `null` in the body is stored as `null` instead
/// of removing the attribute.
pub(crate) fn updated_attrs(
    mut stored: Map<String, Value>,
    mut body: Map<String, Value>,
    mode: UpdateMode,
    keep_null: bool,
) -> Map<String, Value> {
    strip_system(&mut body);
    match mode {
        UpdateMode::Replace => body,
        UpdateMode::Merge => {
            strip_system(&mut stored);
            merge_into(&mut stored, body, keep_null);
            stored
        }
    }
}

/// Recursive merge (ArangoDB `mergeObjects=true`). Without `keep_null` a `null`
/// removes the attribute, also inside objects the patch adds.
pub(crate) fn merge_into(
    target: &mut Map<String, Value>,
    patch: Map<String, Value>,
    keep_null: bool,
) {
    for (k, v) in patch {
        match v {
            Value::Null if !keep_null => {
                target.shift_remove(&k);
            }
            Value::Object(sub) => match target.get_mut(&k) {
                Some(Value::Object(existing)) => merge_into(existing, sub, keep_null),
                _ => {
                    let mut fresh = Map::new();
                    merge_into(&mut fresh, sub, keep_null);
                    target.insert(k, Value::Object(fresh));
                }
            },
            other => {
                target.insert(k, other);
            }
        }
    }
}

/// The `_rev` of a stored document.
/// The `_rev` of a parsed stored document ("" if it has none).
pub(crate) fn rev_of(attrs: &Map<String, Value>) -> &str {
    attrs.get("_rev").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn stored_rev(stored: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct RevOnly {
        #[serde(rename = "_rev")]
        rev: String,
    }
    serde_json::from_slice::<RevOnly>(stored)
        .map(|r| r.rev)
        .map_err(|e| format!("stored document has no readable _rev ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn compose_puts_system_attributes_first() {
        let p =
            prepare_insert(br#"{"b":1,"_rev":"x","_id":"y","a":{"c":null},"_key":"k1"}"#).unwrap();
        assert_eq!(p.key.as_deref(), Some("k1"));
        let doc = compose("users", "k1", "REV", &p.rest);
        assert_eq!(
            std::str::from_utf8(&doc).unwrap(),
            r#"{"_key":"k1","_id":"users/k1","_rev":"REV","b":1,"a":{"c":null}}"#
        );
        let empty = prepare_insert(b"{}").unwrap();
        assert_eq!(
            &compose("c", "k", "r", &empty.rest)[..],
            br#"{"_key":"k","_id":"c/k","_rev":"r"}"#
        );
        assert_eq!(stored_rev(&doc).unwrap(), "REV");
    }

    #[test]
    fn prepare_rejects_non_objects_and_bad_keys() {
        assert!(prepare_insert(b"[1]").unwrap_err().contains("JSON object"));
        assert!(prepare_insert(b"{").unwrap_err().contains("not valid JSON"));
        assert!(prepare_insert(br#"{"_key":5}"#)
            .unwrap_err()
            .contains("_key must be a string"));
        assert!(prepare_insert(br#"{"_key":"a/b"}"#)
            .unwrap_err()
            .contains("1-254 bytes"));
    }

    #[test]
    fn merge_semantics() {
        let mut t = obj(json!({"a":1,"n":{"x":1,"y":{"z":1}},"drop":true,"arr":[1,2]}));
        let patch =
            obj(json!({"n":{"y":{"w":2},"x":null},"drop":null,"arr":[3],"new":{"k":null,"v":1}}));
        let mut kept = t.clone();
        merge_into(&mut t, patch.clone(), false);
        assert_eq!(
            Value::Object(t),
            json!({"a":1,"n":{"y":{"z":1,"w":2}},"arr":[3],"new":{"v":1}})
        );
        merge_into(&mut kept, patch, true);
        assert_eq!(
            Value::Object(kept),
            json!({"a":1,"n":{"x":null,"y":{"z":1,"w":2}},"drop":null,"arr":[3],"new":{"k":null,"v":1}})
        );
    }
}
