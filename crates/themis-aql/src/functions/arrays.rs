//! Array functions. A non-array where an array is expected gives `null`, except
//! where ArangoDB treats `null` as an empty array (`PUSH(null, x)` is `[x]`).
//! Set operations compare with AQL equality (`1 == 1.0`) and keep the order in
//! which elements first appear.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{arg, det, flag, int_arg, ok_bool, ok_null, take, Def, MANY};
use crate::error::QueryError;
use crate::value;

pub(super) const DEFS: &[Def] = &[
    det("FIRST", 1, 1, first, "FIRST(array) → any: the first element, or null"),
    det("LAST", 1, 1, last, "LAST(array) → any: the last element, or null"),
    det("NTH", 2, 2, nth, "NTH(array, position) → any: the element at position (from 0), or null"),
    det("PUSH", 2, 3, push, "PUSH(array, value, unique?) → array: value appended (not if unique and already present)"),
    det("POP", 1, 1, pop, "POP(array) → array: without its last element"),
    det("APPEND", 2, 3, append, "APPEND(array, values, unique?) → array: the elements of values (or values itself) appended; unique removes all duplicates"),
    det("UNSHIFT", 2, 3, unshift, "UNSHIFT(array, value, unique?) → array: value prepended (not if unique and already present)"),
    det("SHIFT", 1, 1, shift, "SHIFT(array) → array: without its first element"),
    det("REMOVE_VALUE", 2, 3, remove_value, "REMOVE_VALUE(array, value, limit?) → array: without the occurrences of value (at most limit of them)"),
    det("REMOVE_VALUES", 2, 2, remove_values, "REMOVE_VALUES(array, values) → array: without any element that is in values"),
    det("REMOVE_NTH", 2, 2, remove_nth, "REMOVE_NTH(array, position) → array: without the element at position (negative counts from the end)"),
    det("REPLACE_NTH", 3, 4, replace_nth, "REPLACE_NTH(array, position, value, padding?) → array: the element at position replaced; beyond the end, padded with padding"),
    det("UNIQUE", 1, 1, unique, "UNIQUE(array) → array: without duplicates, first occurrences kept"),
    det("SORTED", 1, 1, sorted, "SORTED(array) → array: sorted in AQL's value order"),
    det("SORTED_UNIQUE", 1, 1, sorted_unique, "SORTED_UNIQUE(array) → array: sorted, without duplicates"),
    det("FLATTEN", 1, 2, flatten, "FLATTEN(array, depth?) → array: nested arrays expanded up to depth levels (default 1)"),
    det("SLICE", 2, 3, slice, "SLICE(array, start, length?) → array: length elements from start (negative start counts from the end; negative length ends that many before the end)"),
    det("UNION", 2, MANY, union, "UNION(array1, array2, ...) → array: all elements of all arrays, duplicates kept"),
    det("UNION_DISTINCT", 2, MANY, union_distinct, "UNION_DISTINCT(array1, array2, ...) → array: all distinct elements of all arrays"),
    det("INTERSECTION", 2, MANY, intersection, "INTERSECTION(array1, array2, ...) → array: the distinct elements present in every array"),
    det("MINUS", 2, MANY, minus, "MINUS(array1, array2, ...) → array: the distinct elements of array1 present in none of the others"),
    det("OUTERSECTION", 2, MANY, outersection, "OUTERSECTION(array1, array2, ...) → array: the elements that occur exactly once across all arrays"),
    det("INTERLEAVE", 2, MANY, interleave, "INTERLEAVE(array1, array2, ...) → array: one element of each array in turn"),
    det("JACCARD", 2, 2, jaccard, "JACCARD(array1, array2) → number: size of the intersection over size of the union (1 for two empty arrays)"),
    det("POSITION", 2, 3, position, "POSITION(array, value, returnIndex?) → bool|number: whether value is in the array, or its index (-1 if absent)"),
    det("CONTAINS_ARRAY", 2, 3, position, "CONTAINS_ARRAY(array, value, returnIndex?) → bool|number: alias of POSITION()"),
    det("COUNT_DISTINCT", 1, 1, count_distinct, "COUNT_DISTINCT(array) → number: how many distinct elements the array holds"),
    det("COUNT_UNIQUE", 1, 1, count_distinct, "COUNT_UNIQUE(array) → number: alias of COUNT_DISTINCT()"),
];

fn array(v: Vec<Value>) -> Result<Value, QueryError> {
    Ok(Value::Array(v))
}

fn first(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(items) => Ok(items.into_iter().next().unwrap_or(Value::Null)),
        _ => ok_null(),
    }
}

fn last(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(items) => Ok(items.into_iter().next_back().unwrap_or(Value::Null)),
        _ => ok_null(),
    }
}

fn nth(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let pos = int_arg(arg(&args, 1));
    match take(&mut args, 0) {
        Value::Array(items) if pos >= 0 => {
            Ok(items.into_iter().nth(pos as usize).unwrap_or(Value::Null))
        }
        _ => ok_null(),
    }
}

fn contains(items: &[Value], v: &Value) -> bool {
    items.iter().any(|e| value::equals(e, v))
}

fn push(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let unique = flag(&args, 2, false);
    let v = take(&mut args, 1);
    match take(&mut args, 0) {
        Value::Null => array(vec![v]),
        Value::Array(mut items) => {
            if !unique || !contains(&items, &v) {
                items.push(v);
            }
            array(items)
        }
        _ => ok_null(),
    }
}

fn pop(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(mut items) => {
            items.pop();
            array(items)
        }
        _ => ok_null(),
    }
}

fn shift(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(mut items) => {
            if !items.is_empty() {
                items.remove(0);
            }
            array(items)
        }
        _ => ok_null(),
    }
}

fn unshift(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let unique = flag(&args, 2, false);
    let v = take(&mut args, 1);
    match take(&mut args, 0) {
        Value::Null => array(vec![v]),
        Value::Array(mut items) => {
            if !unique || !contains(&items, &v) {
                items.insert(0, v);
            }
            array(items)
        }
        _ => ok_null(),
    }
}

/// Keeps the first occurrence of every distinct element.
fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .into_iter()
        .filter(|v| seen.insert(value::hash_key(v)))
        .collect()
}

fn append(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let unique = flag(&args, 2, false);
    let values = take(&mut args, 1);
    let list = take(&mut args, 0);
    if values.is_null() || matches!(&values, Value::Array(a) if a.is_empty()) {
        return Ok(list);
    }
    let mut items = match list {
        Value::Null => return Ok(values),
        Value::Array(items) => items,
        _ => return ok_null(),
    };
    match values {
        Value::Array(more) => items.extend(more),
        v => items.push(v),
    }
    array(if unique { dedup(items) } else { items })
}

fn remove_value(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let mut limit = match args.get(2) {
        None | Some(Value::Null) => -1,
        Some(v) => int_arg(v),
    };
    let target = take(&mut args, 1);
    match take(&mut args, 0) {
        Value::Null => array(Vec::new()),
        Value::Array(items) => array(
            items
                .into_iter()
                .filter(|e| {
                    if limit != 0 && value::equals(e, &target) {
                        limit -= 1;
                        false
                    } else {
                        true
                    }
                })
                .collect(),
        ),
        _ => ok_null(),
    }
}

fn remove_values(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let values = take(&mut args, 1);
    let list = take(&mut args, 0);
    if values.is_null() {
        return Ok(list);
    }
    match (list, values) {
        (Value::Null, _) => array(Vec::new()),
        (Value::Array(items), Value::Array(remove)) => {
            let remove: HashSet<String> = remove.iter().map(value::hash_key).collect();
            array(
                items
                    .into_iter()
                    .filter(|e| !remove.contains(&value::hash_key(e)))
                    .collect(),
            )
        }
        _ => ok_null(),
    }
}

fn remove_nth(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let pos = value::to_number(arg(&args, 1));
    match take(&mut args, 0) {
        Value::Null => array(Vec::new()),
        Value::Array(mut items) => {
            let n = items.len() as f64;
            if pos < n && pos >= -n {
                let idx = if pos < 0.0 { pos + n } else { pos };
                items.remove(idx as usize);
            }
            array(items)
        }
        _ => ok_null(),
    }
}

fn replace_nth(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let has_padding = args.len() == 4;
    let padding = take(&mut args, 3);
    let v = take(&mut args, 2);
    let pos = arg(&args, 1).clone();
    let Value::Array(mut items) = take(&mut args, 0) else {
        return ok_null();
    };
    if pos.is_null() {
        return Err(QueryError::runtime(
            "REPLACE_NTH() needs a position, got null",
        ));
    }
    let len = items.len() as i64;
    let p = int_arg(&pos);
    let offset = if p >= 0 { p } else { (len + p).max(0) } as usize;
    if offset > items.len().saturating_add(value::DEFAULT_RANGE_LIMIT) {
        return Err(QueryError::runtime(format!(
            "REPLACE_NTH(): position {p} is too far beyond the end of the array of length {len}"
        )));
    }
    if offset > items.len() && !has_padding {
        return Err(QueryError::runtime(format!(
            "REPLACE_NTH(): position {p} is beyond the end of the array of length {len}; \
             pass a padding value as the fourth argument"
        )));
    }
    if offset < items.len() {
        items[offset] = v;
    } else {
        items.resize(offset, padding);
        items.push(v);
    }
    array(items)
}

fn unique(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(items) => array(dedup(items)),
        _ => ok_null(),
    }
}

fn sorted(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(mut items) => {
            items.sort_by(value::compare);
            array(items)
        }
        _ => ok_null(),
    }
}

fn sorted_unique(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match take(&mut args, 0) {
        Value::Array(mut items) => {
            items.sort_by(value::compare);
            items.dedup_by(|a, b| value::equals(a, b));
            array(items)
        }
        _ => ok_null(),
    }
}

fn flatten_into(items: Vec<Value>, depth: i64, out: &mut Vec<Value>) {
    for item in items {
        match item {
            Value::Array(inner) if depth > 0 => flatten_into(inner, depth - 1, out),
            v => out.push(v),
        }
    }
}

fn flatten(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let depth = match args.get(1) {
        None | Some(Value::Null) => 1,
        Some(v) => int_arg(v),
    };
    match take(&mut args, 0) {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            flatten_into(items, depth, &mut out);
            array(out)
        }
        _ => ok_null(),
    }
}

fn slice(mut args: Vec<Value>) -> Result<Value, QueryError> {
    let start_arg = int_arg(arg(&args, 1));
    let length_arg = match args.get(2) {
        None | Some(Value::Null) => None,
        Some(v) => Some(int_arg(v)),
    };
    let Value::Array(items) = take(&mut args, 0) else {
        return ok_null();
    };
    let len = items.len() as i64;
    let start = if start_arg < 0 {
        (len + start_arg).max(0)
    } else {
        start_arg.min(len)
    };
    let end = match length_arg {
        None => len,
        Some(l) if l < 0 => (len + l).max(start),
        Some(l) => start.saturating_add(l).min(len),
    };
    array(
        items
            .into_iter()
            .skip(start as usize)
            .take((end - start) as usize)
            .collect(),
    )
}

/// All arguments as arrays, or `None` if one is not an array.
fn arrays(args: Vec<Value>) -> Option<Vec<Vec<Value>>> {
    args.into_iter()
        .map(|a| match a {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .collect()
}

fn union(args: Vec<Value>) -> Result<Value, QueryError> {
    match arrays(args) {
        Some(all) => array(all.into_iter().flatten().collect()),
        None => ok_null(),
    }
}

fn union_distinct(args: Vec<Value>) -> Result<Value, QueryError> {
    match arrays(args) {
        Some(all) => array(dedup(all.into_iter().flatten().collect())),
        None => ok_null(),
    }
}

fn key_set(items: &[Value]) -> HashSet<String> {
    items.iter().map(value::hash_key).collect()
}

fn intersection(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(mut all) = arrays(args) else {
        return ok_null();
    };
    let others: Vec<HashSet<String>> = all[1..].iter().map(|a| key_set(a)).collect();
    let first = std::mem::take(&mut all[0]);
    array(dedup(
        first
            .into_iter()
            .filter(|v| {
                let k = value::hash_key(v);
                others.iter().all(|s| s.contains(&k))
            })
            .collect(),
    ))
}

fn minus(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(mut all) = arrays(args) else {
        return ok_null();
    };
    let others: HashSet<String> = all[1..].iter().flat_map(|a| key_set(a)).collect();
    let first = std::mem::take(&mut all[0]);
    array(dedup(
        first
            .into_iter()
            .filter(|v| !others.contains(&value::hash_key(v)))
            .collect(),
    ))
}

fn outersection(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(all) = arrays(args) else {
        return ok_null();
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<(String, Value)> = Vec::new();
    for v in all.into_iter().flatten() {
        let k = value::hash_key(&v);
        let c = counts.entry(k.clone()).or_insert(0);
        *c += 1;
        if *c == 1 {
            order.push((k, v));
        }
    }
    array(
        order
            .into_iter()
            .filter(|(k, _)| counts.get(k) == Some(&1))
            .map(|(_, v)| v)
            .collect(),
    )
}

fn interleave(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(all) = arrays(args) else {
        return ok_null();
    };
    let total = all.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = all.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for it in &mut iters {
            if let Some(v) = it.next() {
                out.push(v);
            }
        }
    }
    array(out)
}

fn jaccard(args: Vec<Value>) -> Result<Value, QueryError> {
    let (Value::Array(a), Value::Array(b)) = (arg(&args, 0), arg(&args, 1)) else {
        return ok_null();
    };
    let (a, b) = (key_set(a), key_set(b));
    let union = a.union(&b).count();
    if union == 0 {
        return Ok(Value::from(1));
    }
    let inter = a.intersection(&b).count();
    Ok(value::number(inter as f64 / union as f64))
}

fn position(args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::Array(items) = arg(&args, 0) else {
        return ok_null();
    };
    let found = items.iter().position(|e| value::equals(e, arg(&args, 1)));
    if flag(&args, 2, false) {
        Ok(Value::from(found.map_or(-1, |i| i as i64)))
    } else {
        ok_bool(found.is_some())
    }
}

fn count_distinct(args: Vec<Value>) -> Result<Value, QueryError> {
    match arg(&args, 0) {
        Value::Array(items) => Ok(Value::from(key_set(items).len())),
        _ => ok_null(),
    }
}
