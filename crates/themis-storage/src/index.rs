//! Persistent secondary indexes: the order-preserving value encoding, the entry
//! layout, and the maintenance every document write runs in its own transaction.
//!
//! An index covers 1 to [`MAX_INDEX_FIELDS`] attribute paths (`"email"`,
//! `"address.city"`). Its entries live in the `Index` space:
//!
//! ```text
//! unique:      db_id | coll_id | index_id | enc(v1) .. enc(vn)          -> _key
//! non-unique:  db_id | coll_id | index_id | enc(v1) .. enc(vn) | _key   -> _key
//! ```
//!
//! (ids are big-endian u64s). `enc` is [`encode_index_value`]: byte order equals AQL's
//! type and value order, and every encoding is prefix-free, so concatenated field
//! encodings order like the tuple of values, and a range of values is a range of keys.
//! The value always holds the `_key`, so a scan never has to parse a key back.
//!
//! Rules (ArangoDB's persistent index):
//! * a missing attribute (or a path through a non-object) indexes as `null`;
//! * `sparse`: a document is left out of the index when **any** indexed attribute is
//!   `null` or missing, so sparse indexes can answer no query that must find `null`s;
//! * `unique`: two documents may not have equal values in all fields. In a non-sparse
//!   unique index `null` (or missing) is a value like any other and conflicts; in a
//!   sparse one it is never indexed and so never conflicts.
//!
//! Invariants:
//! * every document write reads its collection's index catalog inside its transaction
//!   (`read_indexes`), so a concurrent create or drop of an index makes one of them
//!   conflict and rerun: no write is ever missing from an index that exists;
//! * a document's entries are added, changed and removed in the same transaction as
//!   the document, so a crash can never separate them;
//! * the uniqueness check reads the entry's key in the transaction, so two concurrent
//!   writers of the same value conflict and the loser reruns and sees the winner.

use std::borrow::Cow;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::index_entries_prefix;
use crate::error::{Result, StorageError};
use crate::kv::{KvTx, Space};
use crate::query::CollectionHandle;

/// Most fields one index may cover.
pub const MAX_INDEX_FIELDS: usize = 8;
/// Longest attribute path of an index field, in bytes.
pub const MAX_FIELD_PATH_LEN: usize = 256;
/// The name under which listings show the implicit `_key` index.
pub const PRIMARY_INDEX_NAME: &str = "primary";

/// A secondary index as stored in the catalog and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Index name, unique within its collection.
    pub name: String,
    /// Never-reused numeric id (from the catalog's id sequence).
    pub id: u64,
    /// The indexed attribute paths, dotted (`"address.city"`), in key order.
    pub fields: Vec<String>,
    /// No two documents may have equal values in all fields.
    pub unique: bool,
    /// Documents with a `null` or missing value in any field are not indexed.
    pub sparse: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// Which entries of an index a scan visits: equality on the first `eq.len()` fields,
/// then an optional range on the next field. `IndexRange::default()` visits all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRange {
    /// Values the leading fields must equal (AQL equality: `1 == 1.0`).
    pub eq: Vec<Value>,
    /// Lower bound on the field after the `eq` ones, and whether it is inclusive.
    pub lower: Option<(Value, bool)>,
    /// Upper bound on the field after the `eq` ones, and whether it is inclusive.
    pub upper: Option<(Value, bool)>,
}

impl IndexRange {
    /// Every entry of the index.
    pub fn all() -> IndexRange {
        IndexRange::default()
    }

    /// Entries whose leading fields equal `values`.
    pub fn eq(values: Vec<Value>) -> IndexRange {
        IndexRange {
            eq: values,
            ..IndexRange::default()
        }
    }
}

// ---- order-preserving encoding ---------------------------------------------------

/// Ends an array or object; below every type tag and entry marker.
const END: u8 = 0x00;
/// Starts an object member.
const MEMBER: u8 = 0x01;
const T_NULL: u8 = 0x02;
const T_FALSE: u8 = 0x03;
const T_TRUE: u8 = 0x04;
const T_NUMBER: u8 = 0x05;
const T_STRING: u8 = 0x06;
const T_ARRAY: u8 = 0x07;
const T_OBJECT: u8 = 0x08;

/// Appends the order-preserving encoding of `v` to `out`.
///
/// Byte order of encodings equals AQL's order of values:
/// `null < false < true < numbers < strings < arrays < objects`, with
/// * numbers by numeric value (`1 == 1.0`, `-0.0 == 0.0`): the nearest `f64`'s IEEE
///   bits, sign bit flipped for positives and all bits flipped for negatives,
///   big-endian; then two bytes of the exact value's distance from that double, which
///   is 0 except for integers beyond 2^53, so that those still order exactly;
/// * strings bytewise on UTF-8, a `0x00` byte escaped as `00 FF` and the end marked
///   `00 01`, so a string sorts before its extensions;
/// * arrays element by element, a shorter array padded with `null`s (AQL's rule), which
///   the encoding gets by dropping trailing `null`s and ending with a byte below every
///   type tag;
/// * objects as AQL compares them — over the sorted union of attribute names, a
///   missing attribute counting as `null` — encoded as their non-null members sorted
///   by name, each a member marker, the name with every byte inverted (so that the
///   object holding the smaller extra name sorts *higher*, as its value beats the other
///   side's implied `null`), and the value.
///
/// Every encoding is prefix-free (none is a prefix of another), so encodings of several
/// values can be concatenated and still order like tuples.
pub fn encode_index_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(T_NULL),
        Value::Bool(false) => out.push(T_FALSE),
        Value::Bool(true) => out.push(T_TRUE),
        Value::Number(n) => {
            out.push(T_NUMBER);
            encode_number(n, out);
        }
        Value::String(s) => {
            out.push(T_STRING);
            encode_str(s, out);
        }
        Value::Array(items) => {
            out.push(T_ARRAY);
            let used = items
                .iter()
                .rposition(|e| !e.is_null())
                .map_or(0, |last| last + 1);
            for item in &items[..used] {
                encode_index_value(item, out);
            }
            out.push(END);
        }
        Value::Object(members) => {
            out.push(T_OBJECT);
            let mut present: Vec<(&String, &Value)> =
                members.iter().filter(|(_, v)| !v.is_null()).collect();
            present.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (name, value) in present {
                out.push(MEMBER);
                let start = out.len();
                encode_str(name, out);
                for b in &mut out[start..] {
                    *b = !*b;
                }
                encode_index_value(value, out);
            }
            out.push(END);
        }
    }
}

/// The number's nearest `f64`, then how far the exact value (an integer JSON number
/// beyond 2^53) lies from it, so integers that round to the same double still order
/// exactly, as AQL compares them.
fn encode_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    let f = n.as_f64().unwrap_or(0.0);
    encode_f64(f, out);
    let exact = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    // |exact| < 2^64, where doubles are at most 2^12 apart: the rounding error is at
    // most 2^11 and fits an i16 (and `f` converts to i128 exactly).
    let delta = exact.map_or(0, |i| i - f as i128);
    let delta = i16::try_from(delta).unwrap_or(0);
    out.extend_from_slice(&((delta as u16) ^ 0x8000).to_be_bytes());
}

fn encode_f64(f: f64, out: &mut Vec<u8>) {
    // -0.0 == 0.0 in AQL: one encoding for both.
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.extend_from_slice(&ordered.to_be_bytes());
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// The smallest key above every key that starts with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

// ---- definitions -----------------------------------------------------------------

const FIELD_RULE: &str = "an index field is an attribute path: attribute names joined by '.', \
     none of them empty (like \"email\" or \"address.city\"), 1-256 bytes without control \
     characters";

/// Checks the fields of an index definition.
pub(crate) fn validate_index_fields(fields: &[String]) -> Result<()> {
    if fields.is_empty() {
        return Err(StorageError::InvalidArgument(
            "an index needs at least one field: list the attribute paths to index, like \
             [\"email\"] or [\"last_name\", \"first_name\"]"
                .to_string(),
        ));
    }
    if fields.len() > MAX_INDEX_FIELDS {
        return Err(StorageError::InvalidArgument(format!(
            "an index covers at most {MAX_INDEX_FIELDS} fields, this one lists {}; index \
             fewer attributes",
            fields.len()
        )));
    }
    for (i, f) in fields.iter().enumerate() {
        let bad = f.is_empty()
            || f.len() > MAX_FIELD_PATH_LEN
            || f.split('.').any(str::is_empty)
            || f.chars().any(char::is_control);
        if bad {
            let shown: String = f.chars().take(64).collect();
            return Err(StorageError::InvalidArgument(format!(
                "invalid index field {shown:?}: {FIELD_RULE}"
            )));
        }
        if fields[..i].contains(f) {
            return Err(StorageError::InvalidArgument(format!(
                "index field {f:?} is listed twice; list each attribute once"
            )));
        }
    }
    Ok(())
}

// ---- entries ---------------------------------------------------------------------

/// A document version as the index code sees it.
pub(crate) struct DocView<'a> {
    /// Collection name (for `_id`).
    pub coll: &'a str,
    pub key: &'a str,
    pub rev: &'a str,
    /// The attributes; system attributes in it are ignored.
    pub attrs: &'a Map<String, Value>,
}

impl<'a> DocView<'a> {
    /// The value at a dotted path; `null` when missing or when the path runs through
    /// something that is not an object.
    pub(crate) fn field(&self, path: &str) -> Cow<'a, Value> {
        let mut segments = path.split('.');
        let first = segments.next().unwrap_or("");
        let system = match first {
            "_key" => Some(self.key.to_string()),
            "_id" => Some(format!("{}/{}", self.coll, self.key)),
            "_rev" => Some(self.rev.to_string()),
            _ => None,
        };
        if let Some(s) = system {
            return if segments.next().is_none() {
                Cow::Owned(Value::String(s))
            } else {
                Cow::Owned(Value::Null)
            };
        }
        let mut cur = match self.attrs.get(first) {
            Some(v) => v,
            None => return Cow::Owned(Value::Null),
        };
        for seg in segments {
            cur = match cur.as_object().and_then(|m| m.get(seg)) {
                Some(v) => v,
                None => return Cow::Owned(Value::Null),
            };
        }
        Cow::Borrowed(cur)
    }
}

/// A collection with the secondary indexes its writes must maintain.
#[derive(Debug, Clone)]
pub(crate) struct IndexedCollection {
    pub handle: CollectionHandle,
    pub indexes: Vec<IndexInfo>,
}

/// The entry key of `doc` in `index`; `None` when a sparse index leaves it out.
pub(crate) fn entry_key(c: &CollectionHandle, index: &IndexInfo, doc: &DocView) -> Option<Vec<u8>> {
    let mut k = index_entries_prefix(c.db_id, c.coll_id, index.id);
    for f in &index.fields {
        let v = doc.field(f);
        if index.sparse && v.is_null() {
            return None;
        }
        encode_index_value(&v, &mut k);
    }
    if !index.unique {
        k.extend_from_slice(doc.key.as_bytes());
    }
    Some(k)
}

/// Per index of `c`, the entry key of `doc` (all `None` for no document).
pub(crate) fn entry_keys(c: &IndexedCollection, doc: Option<&DocView>) -> Vec<Option<Vec<u8>>> {
    c.indexes
        .iter()
        .map(|idx| doc.and_then(|d| entry_key(&c.handle, idx, d)))
        .collect()
}

/// Moves the entries of document `key` from `old` to `new` (as computed by
/// [`entry_keys`]), checking unique indexes first: on a violation nothing has been
/// written. `new_doc` is the new version, for the error message.
pub(crate) fn update_entries(
    tx: &mut dyn KvTx,
    c: &IndexedCollection,
    key: &str,
    old: &[Option<Vec<u8>>],
    new: &[Option<Vec<u8>>],
    new_doc: Option<&DocView>,
) -> Result<()> {
    let changed = || {
        c.indexes
            .iter()
            .zip(old.iter().zip(new))
            .filter(|(_, (o, n))| o != n)
    };
    for (index, (_, n)) in changed() {
        let Some(n) = n else { continue };
        if index.unique {
            // The read joins the transaction's read set: a concurrent writer of the
            // same value makes one of us conflict and rerun.
            if let Some(other) = tx.get(Space::Index, n)? {
                if other.as_ref() != key.as_bytes() {
                    return Err(unique_violation(&c.handle, index, new_doc, &other));
                }
            }
        }
    }
    for (_, (o, n)) in changed() {
        if let Some(o) = o {
            tx.delete(Space::Index, o)?;
        }
        if let Some(n) = n {
            tx.put(Space::Index, n, Bytes::copy_from_slice(key.as_bytes()))?;
        }
    }
    Ok(())
}

/// A JSON value for an error message, cut to 100 characters.
pub(crate) fn shown_value(v: &Value) -> String {
    crate::names::shown(&v.to_string(), 100)
}

/// `email = "a@b", age = 3` for the fields of `index` in `doc`.
pub(crate) fn describe_values(index: &IndexInfo, doc: Option<&DocView>) -> String {
    index
        .fields
        .iter()
        .map(|f| {
            let v = doc.map_or(Cow::Owned(Value::Null), |d| d.field(f));
            format!("{f} = {}", shown_value(&v))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn unique_violation(
    c: &CollectionHandle,
    index: &IndexInfo,
    doc: Option<&DocView>,
    other_key: &[u8],
) -> StorageError {
    StorageError::Conflict(format!(
        "unique constraint violated: index '{}' on {} already has a document with {} \
         (_key '{}'); use another value, or change or remove that document first",
        index.name,
        c.name,
        describe_values(index, doc),
        String::from_utf8_lossy(other_key)
    ))
}

// ---- scans -----------------------------------------------------------------------

/// Lower and upper bound of a key range.
pub(crate) type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Key bounds in the `Index` space for `range` over `index` of `c`; `None` when the
/// range cannot hold anything.
pub(crate) fn scan_bounds(
    c: &CollectionHandle,
    index: &IndexInfo,
    range: &IndexRange,
) -> Result<Option<KeyBounds>> {
    let has_range = range.lower.is_some() || range.upper.is_some();
    let needed = range.eq.len() + usize::from(has_range);
    if needed > index.fields.len() {
        return Err(StorageError::InvalidArgument(format!(
            "index '{}' covers {} field(s) but the scan constrains {needed}: give equality \
             values for at most the index's fields, and a range only on the field after them",
            index.name,
            index.fields.len()
        )));
    }
    let mut base = index_entries_prefix(c.db_id, c.coll_id, index.id);
    for v in &range.eq {
        if index.sparse && v.is_null() {
            // Sparse indexes hold no nulls.
            return Ok(None);
        }
        encode_index_value(v, &mut base);
    }
    let with = |v: &Value| {
        let mut k = base.clone();
        encode_index_value(v, &mut k);
        k
    };
    let lower = match &range.lower {
        None => Bound::Included(base.clone()),
        Some((v, true)) => Bound::Included(with(v)),
        Some((v, false)) => match prefix_end(&with(v)) {
            Some(end) => Bound::Included(end),
            None => return Ok(None),
        },
    };
    let upper = match &range.upper {
        None => prefix_end(&base).map_or(Bound::Unbounded, Bound::Excluded),
        Some((v, true)) => prefix_end(&with(v)).map_or(Bound::Unbounded, Bound::Excluded),
        Some((v, false)) => Bound::Excluded(with(v)),
    };
    Ok(Some((lower, upper)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cmp::Ordering;

    /// AQL's order, written from its documentation, independent of the encoding.
    fn aql_cmp(a: &Value, b: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Number(_) => 2,
                Value::String(_) => 3,
                Value::Array(_) => 4,
                Value::Object(_) => 5,
            }
        }
        const NULL: Value = Value::Null;
        match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
            (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    let o = aql_cmp(x.get(i).unwrap_or(&NULL), y.get(i).unwrap_or(&NULL));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            }
            (Value::Object(x), Value::Object(y)) => {
                let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                names.dedup();
                for n in names {
                    let o = aql_cmp(x.get(n).unwrap_or(&NULL), y.get(n).unwrap_or(&NULL));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            }
            _ => rank(a).cmp(&rank(b)),
        }
    }

    /// Exact numeric order: integers as integers, doubles as doubles, mixed pairs
    /// compared on the real line.
    fn num_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
        fn int(n: &serde_json::Number) -> Option<i128> {
            n.as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
        }
        fn int_vs_float(i: i128, f: f64) -> Ordering {
            if f.fract() == 0.0 && f.abs() < 1e30 {
                i.cmp(&(f as i128))
            } else if f >= 1e30 {
                Ordering::Less
            } else if f <= -1e30 {
                Ordering::Greater
            } else if i <= f.floor() as i128 {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        match (int(x), int(y)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(a), None) => int_vs_float(a, y.as_f64().unwrap()),
            (None, Some(b)) => int_vs_float(b, x.as_f64().unwrap()).reverse(),
            (None, None) => x
                .as_f64()
                .unwrap()
                .partial_cmp(&y.as_f64().unwrap())
                .unwrap(),
        }
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_index_value(v, &mut out);
        out
    }

    /// A small deterministic generator (xorshift), so the test needs no crate.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn value(&mut self, depth: u32) -> Value {
            let kinds = if depth == 0 { 5 } else { 7 };
            match self.below(kinds) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 1),
                2 => {
                    let pool = [
                        json!(0),
                        json!(-0.0),
                        json!(1),
                        json!(-1),
                        json!(1.5),
                        json!(-1.5),
                        json!(2),
                        json!(1e300),
                        json!(-1e300),
                        json!(1e-300),
                        json!(-1e-300),
                        json!(u64::MAX),
                        json!(u64::MAX - 1),
                        json!(18446744073709551615.0),
                        json!(i64::MIN),
                        json!(i64::MIN + 1),
                        json!(9007199254740993u64),
                        json!(9007199254740992u64),
                        json!(9007199254740992.0),
                        json!(-9007199254740993i64),
                        json!(3.25),
                    ];
                    pool[self.below(pool.len() as u64) as usize].clone()
                }
                3 | 4 => {
                    let pool = [
                        "", "a", "ab", "b", "a\u{0}", "a\u{0}b", "a\u{1}", "é", "z", "ab\u{0}",
                    ];
                    Value::String(pool[self.below(pool.len() as u64) as usize].to_string())
                }
                5 => {
                    let n = self.below(4);
                    Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
                }
                _ => {
                    let n = self.below(4);
                    let names = ["a", "b", "ab", "", "c"];
                    let mut m = Map::new();
                    for _ in 0..n {
                        let name = names[self.below(names.len() as u64) as usize];
                        m.insert(name.to_string(), self.value(depth - 1));
                    }
                    Value::Object(m)
                }
            }
        }
    }

    fn check_all_pairs(values: &[Value]) {
        for a in values {
            for b in values {
                assert_eq!(
                    aql_cmp(a, b),
                    enc(a).cmp(&enc(b)),
                    "order of {a} and {b} differs from AQL's"
                );
            }
        }
    }

    #[test]
    fn encoding_orders_like_aql_on_chosen_values() {
        let mut values = vec![
            json!(null),
            json!(false),
            json!(true),
            json!(-1e308),
            json!(-5),
            json!(-1),
            json!(-0.5),
            json!(-0.0),
            json!(0),
            json!(0.0),
            json!(1e-310),
            json!(0.5),
            json!(1),
            json!(1.0),
            json!(2),
            json!(10),
            json!(9007199254740992u64),
            json!(9007199254740992.0),
            json!(9007199254740993u64),
            json!(9007199254740994u64),
            json!(i64::MAX),
            json!(9223372036854775808u64),
            json!(9223372036854775808.0),
            json!(u64::MAX - 1),
            json!(u64::MAX),
            json!(1.8446744073709552e19),
            json!(i64::MIN),
            json!(i64::MIN + 1),
            json!(-9223372036854775808.0),
            json!(1e308),
            json!(""),
            json!("\u{0}"),
            json!("\u{1}"),
            json!(" "),
            json!("0"),
            json!("A"),
            json!("a"),
            json!("a\u{0}"),
            json!("a\u{0}\u{0}"),
            json!("a\u{1}"),
            json!("ab"),
            json!("abc"),
            json!("b"),
            json!("é"),
            json!("\u{10FFFF}"),
            json!([]),
            json!([null]),
            json!([null, null]),
            json!([null, 1]),
            json!([false]),
            json!([0]),
            json!([0, null]),
            json!([0, 1]),
            json!([1]),
            json!(["a"]),
            json!([[]]),
            json!([[null]]),
            json!([{}]),
            json!({}),
            json!({"a": null}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"a": 1, "b": 1}),
            json!({"b": 1}),
            json!({"b": null, "c": 1}),
            json!({"ab": 1}),
            json!({"": 1}),
            json!({"a": [1]}),
            json!({"a": {"x": 1}}),
            json!({"a": {}}),
            json!({"a\u{0}": 1}),
        ];
        values.sort_by(aql_cmp);
        check_all_pairs(&values);
        // Numbers are compared as doubles.
        assert_eq!(enc(&json!(1)), enc(&json!(1.0)));
        assert_eq!(enc(&json!(-0.0)), enc(&json!(0)));
        // Padding rules make these equal in AQL, so they share an encoding.
        assert_eq!(enc(&json!([])), enc(&json!([null])));
        assert_eq!(enc(&json!({})), enc(&json!({"a": null})));
    }

    #[test]
    fn encoding_orders_like_aql_on_random_values() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let values: Vec<Value> = (0..700).map(|_| g.value(3)).collect();
        check_all_pairs(&values);
    }

    #[test]
    fn compound_encodings_order_like_tuples() {
        let mut g = Gen(42);
        let tuples: Vec<(Value, Value)> = (0..300).map(|_| (g.value(2), g.value(2))).collect();
        for (a1, a2) in &tuples {
            for (b1, b2) in &tuples {
                let expected = aql_cmp(a1, b1).then_with(|| aql_cmp(a2, b2));
                let mut ea = enc(a1);
                encode_index_value(a2, &mut ea);
                let mut eb = enc(b1);
                encode_index_value(b2, &mut eb);
                assert_eq!(expected, ea.cmp(&eb), "({a1}, {a2}) vs ({b1}, {b2})");
            }
        }
    }

    #[test]
    fn encodings_are_prefix_free() {
        let mut g = Gen(7);
        let values: Vec<Vec<u8>> = (0..400).map(|_| enc(&g.value(3))).collect();
        for a in &values {
            for b in &values {
                if a != b {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
        }
    }

    #[test]
    fn prefix_end_is_the_successor() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn field_validation() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_index_fields(&f(&["email"])).is_ok());
        assert!(validate_index_fields(&f(&["address.city", "a", "_key"])).is_ok());
        for bad in [
            f(&[]),
            f(&[""]),
            f(&["a..b"]),
            f(&[".a"]),
            f(&["a."]),
            f(&["a\nb"]),
            f(&["a", "a"]),
            f(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
            vec!["x".repeat(257)],
        ] {
            let e = validate_index_fields(&bad).unwrap_err();
            assert!(matches!(e, StorageError::InvalidArgument(_)), "{bad:?}");
        }
    }

    #[test]
    fn field_lookup() {
        let attrs = json!({"a": {"b": 1, "c": [1]}, "n": null});
        let attrs = attrs.as_object().unwrap();
        let doc = DocView {
            coll: "users",
            key: "k1",
            rev: "r",
            attrs,
        };
        assert_eq!(*doc.field("a.b"), json!(1));
        assert_eq!(*doc.field("a.c.x"), Value::Null);
        assert_eq!(*doc.field("a.z"), Value::Null);
        assert_eq!(*doc.field("n"), Value::Null);
        assert_eq!(*doc.field("_key"), json!("k1"));
        assert_eq!(*doc.field("_id"), json!("users/k1"));
        assert_eq!(*doc.field("_key.x"), Value::Null);
    }
}
