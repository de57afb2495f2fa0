//! AQL value semantics, as ArangoDB documents them: type order, comparison,
//! equality, truthiness, the implicit casts (`TO_NUMBER`, `TO_STRING`), the
//! operators, ranges, and a canonical hash key for `DISTINCT`/`COLLECT`.
//!
//! Values are `serde_json::Value`. AQL numbers are IEEE doubles; [`number`] turns a
//! double back into a JSON number (an integer when it is integral and safe, so
//! `1 + 1` serialises as `2`), and returns `null` for NaN and infinities, which AQL
//! has no way to represent.
//!
//! Invariants:
//! - [`compare`] is a total order: `null < bool < number < string < array <
//!   object`; arrays compare element by element (a missing element counts as
//!   `null`), objects by the sorted union of their attribute names (a missing
//!   attribute counts as `null`). So `[] == [null]` and `{} == {"a": null}`.
//! - `equals(a, b)` ⇔ `compare(a, b) == Equal` ⇔ `hash_key(a) == hash_key(b)`.
//! - Integers compare exactly, even beyond 2^53, and `1 == 1.0`.
//!
//! Where ThemisDB differs from ArangoDB: strings compare by Unicode code point
//! (ArangoDB uses an ICU collation for the server language), and regular
//! expressions use the syntax of Rust's `regex` crate (no look-around or
//! back-references).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use regex::{Regex, RegexBuilder};
use serde_json::{Number, Value};

use crate::ast::{BinaryOp, UnaryOp};
use crate::error::{ErrorKind, QueryError};

/// 2^53: integral doubles below this are exact and print as integers.
const SAFE_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The default cap on the number of elements a range (`a..b`, `RANGE()`) may
/// materialise, as in ArangoDB.
pub const DEFAULT_RANGE_LIMIT: usize = 10_000_000;

static NULL: Value = Value::Null;

/// Rank of a value's type in AQL's type order: null 0, bool 1, number 2,
/// string 3, array 4, object 5.
pub fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// The name `TYPENAME()` returns.
pub fn typename(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON number as a double (large integers lose precision, as in AQL).
pub fn as_f64(v: &Number) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// A double as an AQL value: `null` for NaN and ±infinity, an integer when `f` is
/// integral and |f| < 2^53, else a float.
pub fn number(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    if f.fract() == 0.0 && f.abs() < SAFE_INTEGER_LIMIT {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A number as stored: an exact integer, or a double.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num_repr(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(as_f64(n))
    }
}

/// An integral double as an exact integer, when it fits comfortably in i128.
fn float_as_int(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.0e38).then_some(f as i128)
}

/// Exact comparison of an integer with a double.
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    if let Some(fi) = float_as_int(f) {
        return i.cmp(&fi);
    }
    if f.is_nan() {
        return Ordering::Less;
    }
    if f.abs() >= 1.0e38 {
        return if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // f is not integral, so it lies strictly between floor(f) and floor(f) + 1.
    if i <= f.floor() as i128 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (num_repr(a), num_repr(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// AQL's total order over values (used by `SORT`, the comparison operators,
/// `MIN`/`MAX`, `SORTED` ...).
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let l = x.get(i).unwrap_or(&NULL);
                let r = y.get(i).unwrap_or(&NULL);
                let c = compare(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            Ordering::Equal
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                let l = x.get(k.as_str()).unwrap_or(&NULL);
                let r = y.get(k.as_str()).unwrap_or(&NULL);
                let c = compare(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            Ordering::Equal
        }
        _ => Ordering::Equal, // both null
    }
}

/// AQL `==`: no type conversion, `1 == 1.0`, `{} == {"a": null}`.
pub fn equals(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal
}

/// Conversion to a boolean: `null`, `false`, `0` and `""` are false; every other
/// value, including every array and object (even empty ones), is true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => as_f64(n) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `TO_NUMBER` semantics: null/false → 0, true → 1, numeric strings (surrounding
/// whitespace allowed) → their value, `[x]` → `TO_NUMBER(x)`; everything else,
/// and anything that would be NaN or infinite, → 0.
pub fn to_number(v: &Value) -> f64 {
    let f = match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => as_f64(n),
        Value::String(s) => parse_number(s).unwrap_or(0.0),
        Value::Array(a) if a.len() == 1 => to_number(&a[0]),
        Value::Array(_) | Value::Object(_) => 0.0,
    };
    if f.is_finite() {
        f
    } else {
        0.0
    }
}

/// Parses a string the way ArangoDB converts strings to numbers (C's `strtod`):
/// leading whitespace, a sign, a decimal number with optional exponent, or a hex
/// integer (`0x1F`), then only whitespace. `None` when the text is not a number.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let b = t.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let value;
    let rest = &t[i..];
    if (rest.starts_with("0x") || rest.starts_with("0X"))
        && rest.as_bytes().get(2).is_some_and(u8::is_ascii_hexdigit)
    {
        let digits: &str = &rest[2..];
        let end = digits
            .bytes()
            .position(|c| !c.is_ascii_hexdigit())
            .unwrap_or(digits.len());
        let mut v = 0.0f64;
        for c in digits[..end].chars() {
            v = v * 16.0 + f64::from(c.to_digit(16).unwrap_or(0));
        }
        value = v;
        i += 2 + end;
    } else {
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("inf") || lower.starts_with("nan") {
            let len = if lower.starts_with("infinity") { 8 } else { 3 };
            value = if lower.starts_with("nan") {
                f64::NAN
            } else {
                f64::INFINITY
            };
            i += len;
        } else {
            let start = i;
            let mut digits = 0;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
                digits += 1;
            }
            if b.get(i) == Some(&b'.') {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    digits += 1;
                }
            }
            if digits == 0 {
                return None;
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    while b.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                    }
                    i = j;
                }
            }
            let mut text = t[start..i].to_string();
            if text.ends_with('.') {
                text.push('0');
            }
            if text.starts_with('.') {
                text.insert(0, '0');
            }
            value = text.parse::<f64>().ok()?;
        }
    }
    if !t[i..]
        .bytes()
        .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'))
    {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// `TO_STRING` semantics: null → `""`, booleans → `"true"`/`"false"`, numbers in
/// their shortest form (`"2e-7"`), strings unchanged, arrays and objects as JSON
/// without whitespace.
pub fn to_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format_number(n),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => to_json(v),
    }
}

/// A number as AQL prints it: integers exactly, doubles in their shortest
/// round-trip digits, switching to exponent notation for very large or small
/// magnitudes the way ArangoDB does (`1e+21`, `2e-7`).
pub fn format_number(n: &Number) -> String {
    match num_repr(n) {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => format_double(f),
    }
}

fn format_double(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return "0".to_string();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let nd = digits.len() as i32;
    // The value is digits × 10^k.
    let k = exp - (nd - 1);
    let exp_abs = (k + nd - 1).abs();
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if k >= 0 && exp_abs < nd + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || exp_abs < 4) {
        let offset = nd + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if k + nd - 1 < 0 { '-' } else { '+' });
        let _ = write!(out, "{exp_abs}");
    }
    out
}

/// JSON text without whitespace, numbers formatted as [`format_number`]; what
/// `TO_STRING` and `JSON_STRINGIFY` produce for arrays and objects.
pub fn to_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json_string(s: &str, out: &mut String) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(e, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, e)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(e, out);
            }
            out.push('}');
        }
    }
}

/// A canonical string with `equals(a, b)` ⇔ `hash_key(a) == hash_key(b)`, for
/// hashing in `DISTINCT`, `COLLECT`, `UNIQUE()`: numbers normalised (`1` and
/// `1.0` agree), object attributes sorted and `null` attributes dropped, trailing
/// `null` array elements dropped.
pub fn hash_key(v: &Value) -> String {
    let mut out = String::new();
    write_key(v, &mut out);
    out
}

fn write_key(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push('n'),
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Number(n) => {
            out.push('#');
            let _ = match num_repr(n) {
                Num::Int(i) => write!(out, "{i}"),
                Num::Float(f) => match float_as_int(f) {
                    Some(i) => write!(out, "{i}"),
                    None => write!(out, "{f:e}"),
                },
            };
        }
        Value::String(s) => {
            out.push('s');
            write_json_string(s, out);
        }
        Value::Array(a) => {
            let end = a.iter().rposition(|e| !e.is_null()).map_or(0, |p| p + 1);
            out.push('[');
            for (i, e) in a[..end].iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(e, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> =
                o.iter().filter(|(_, e)| !e.is_null()).collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, e)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_key(e, out);
            }
            out.push('}');
        }
    }
}

/// An exact integer operand, for the integer fast path of arithmetic (ArangoDB
/// computes with int64 when both sides are integers and nothing overflows).
fn exact_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn arithmetic(op: BinaryOp, a: &Value, b: &Value) -> Value {
    if let (Some(x), Some(y)) = (exact_int(a), exact_int(b)) {
        let exact = match op {
            BinaryOp::Add => x.checked_add(y),
            BinaryOp::Sub => x.checked_sub(y),
            BinaryOp::Mul => x.checked_mul(y),
            BinaryOp::Div if y != 0 && x.checked_rem(y) == Some(0) => x.checked_div(y),
            BinaryOp::Mod if y != 0 => x.checked_rem(y),
            _ => None,
        };
        if let Some(r) = exact {
            return Value::from(r);
        }
    }
    let (x, y) = (to_number(a), to_number(b));
    let r = match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        // Division or modulus by zero yields null (ArangoDB adds a warning).
        BinaryOp::Div if y == 0.0 => return Value::Null,
        BinaryOp::Div => x / y,
        BinaryOp::Mod if y == 0.0 => return Value::Null,
        BinaryOp::Mod => x % y,
        _ => return Value::Null,
    };
    number(r)
}

/// `x IN array`: false when the right-hand side is not an array.
pub fn in_array(x: &Value, array: &Value) -> bool {
    match array {
        Value::Array(items) => items.iter().any(|e| equals(x, e)),
        _ => false,
    }
}

/// Evaluates a binary operator on two evaluated operands. `AND`/`OR` are
/// normally short-circuited by the executor; given both operands they return
/// the deciding operand as AQL does (`1 || 7` is `1`, `null && true` is `null`).
pub fn binary(op: BinaryOp, a: &Value, b: &Value) -> Result<Value, QueryError> {
    use BinaryOp::*;
    Ok(match op {
        Add | Sub | Mul | Div | Mod => arithmetic(op, a, b),
        Eq => Value::Bool(equals(a, b)),
        Ne => Value::Bool(!equals(a, b)),
        Lt => Value::Bool(compare(a, b) == Ordering::Less),
        Le => Value::Bool(compare(a, b) != Ordering::Greater),
        Gt => Value::Bool(compare(a, b) == Ordering::Greater),
        Ge => Value::Bool(compare(a, b) != Ordering::Less),
        In => Value::Bool(in_array(a, b)),
        NotIn => Value::Bool(!in_array(a, b)),
        Like | NotLike => {
            let (text, pattern) = (to_string(a), to_string(b));
            let matched = like(&text, &pattern, false).map_err(|e| {
                QueryError::runtime(format!("invalid LIKE pattern '{pattern}': {e}"))
            })?;
            Value::Bool(matched == (op == Like))
        }
        RegexMatch | RegexNotMatch => {
            let (text, pattern) = (to_string(a), to_string(b));
            let re = cached_regex(&pattern, false).map_err(|e| regex_error(&pattern, &e))?;
            Value::Bool(re.is_match(&text) == (op == RegexMatch))
        }
        And => {
            if truthy(a) {
                b.clone()
            } else {
                a.clone()
            }
        }
        Or => {
            if truthy(a) {
                a.clone()
            } else {
                b.clone()
            }
        }
    })
}

/// The error for a regular expression that does not compile, naming the pattern.
pub fn regex_error(pattern: &str, e: &regex::Error) -> QueryError {
    QueryError::runtime(format!(
        "invalid regular expression '{pattern}': {}",
        regex_error_reason(e)
    ))
}

/// The one line of a `regex` error that says what is wrong.
pub fn regex_error_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

/// Evaluates a unary operator.
pub fn unary(op: UnaryOp, v: &Value) -> Value {
    match op {
        UnaryOp::Not => Value::Bool(!truthy(v)),
        UnaryOp::Neg => match exact_int(v).and_then(i64::checked_neg) {
            Some(i) => Value::from(i),
            None => number(-to_number(v)),
        },
        UnaryOp::Plus => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => number(to_number(v)),
        },
    }
}

/// `low..high`: the integers from `low` to `high` inclusive (descending when
/// `low > high`); non-integer bounds are truncated, non-numbers converted with
/// `TO_NUMBER`. More than `limit` elements is an [`ErrorKind::Limit`] error.
pub fn range(low: &Value, high: &Value, limit: usize) -> Result<Value, QueryError> {
    let lo = to_number(low).trunc() as i64;
    let hi = to_number(high).trunc() as i64;
    let count = (i128::from(hi) - i128::from(lo)).unsigned_abs() + 1;
    if count > limit as u128 {
        return Err(QueryError::new(
            ErrorKind::Limit,
            format!(
                "the range {lo}..{hi} has {count} elements, more than the limit of {limit}: \
                 use a smaller range"
            ),
        ));
    }
    let items: Vec<Value> = if lo <= hi {
        (lo..=hi).map(Value::from).collect()
    } else {
        (hi..=lo).rev().map(Value::from).collect()
    };
    Ok(Value::Array(items))
}

// ---------------------------------------------------------------------------
// LIKE and regular expressions, with a small per-thread cache of compiled
// patterns: a query applies the same pattern to every row.

const REGEX_CACHE_CAPACITY: usize = 128;

#[derive(Clone, Copy)]
enum PatternKind {
    Regex = 0,
    RegexCaseInsensitive = 1,
    Like = 2,
    LikeCaseInsensitive = 3,
}

#[derive(Default)]
struct RegexCache {
    // Shared, not cloned: cloning a `Regex` gives it a fresh search-cache pool, which
    // per row would throw away exactly what the cache is for.
    maps: [HashMap<String, Rc<Regex>>; 4],
}

thread_local! {
    static REGEX_CACHE: RefCell<RegexCache> = RefCell::new(RegexCache::default());
}

fn cached(
    kind: PatternKind,
    pattern: &str,
    build: impl FnOnce() -> Result<Regex, regex::Error>,
) -> Result<Rc<Regex>, regex::Error> {
    let hit = REGEX_CACHE.with(|c| c.borrow().maps[kind as usize].get(pattern).cloned());
    if let Some(re) = hit {
        return Ok(re);
    }
    let re = Rc::new(build()?);
    REGEX_CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        let map = &mut cache.maps[kind as usize];
        if map.len() >= REGEX_CACHE_CAPACITY {
            // Evict an arbitrary entry: cheap, and bounded.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(pattern.to_string(), re.clone());
    });
    Ok(re)
}

/// A compiled regular expression for `=~`, `REGEX_TEST()` and friends, cached.
pub fn cached_regex(pattern: &str, case_insensitive: bool) -> Result<Rc<Regex>, regex::Error> {
    let kind = if case_insensitive {
        PatternKind::RegexCaseInsensitive
    } else {
        PatternKind::Regex
    };
    cached(kind, pattern, || {
        RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .build()
    })
}

/// Translates a LIKE pattern to an anchored regular expression: `%` is any
/// sequence, `_` any one character, `\` makes the next character literal.
fn like_to_regex(pattern: &str) -> String {
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            '\\' => {
                let lit = chars.next().unwrap_or('\\');
                re.push_str(&regex::escape(lit.encode_utf8(&mut [0; 4])));
            }
            _ => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    re
}

/// A LIKE pattern without `_` and with `%` only at its ends, matched without a
/// regular expression.
enum SimpleLike {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

fn simple_like(pattern: &str) -> Option<SimpleLike> {
    if pattern.contains(['_', '\\']) {
        return None;
    }
    let lead = pattern.starts_with('%');
    let core = pattern.trim_start_matches('%');
    let trail = core.ends_with('%');
    let core = core.trim_end_matches('%');
    if core.contains('%') {
        return None;
    }
    let core = core.to_string();
    Some(match (lead, trail) {
        (false, false) => SimpleLike::Exact(core),
        (false, true) => SimpleLike::Prefix(core),
        (true, false) => SimpleLike::Suffix(core),
        (true, true) => SimpleLike::Contains(core),
    })
}

/// `text LIKE pattern`; errors only if the translated pattern is too large to
/// compile.
pub fn like(text: &str, pattern: &str, case_insensitive: bool) -> Result<bool, regex::Error> {
    if !case_insensitive {
        if let Some(simple) = simple_like(pattern) {
            return Ok(match simple {
                SimpleLike::Exact(s) => text == s,
                SimpleLike::Prefix(s) => text.starts_with(&s),
                SimpleLike::Suffix(s) => text.ends_with(&s),
                SimpleLike::Contains(s) => text.contains(&s),
            });
        }
    }
    let kind = if case_insensitive {
        PatternKind::LikeCaseInsensitive
    } else {
        PatternKind::Like
    };
    let re = cached(kind, pattern, || {
        RegexBuilder::new(&like_to_regex(pattern))
            .case_insensitive(case_insensitive)
            .build()
    })?;
    Ok(re.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON {text}: {e}"))
    }

    /// Every pair in the list is strictly ascending in AQL's order.
    #[test]
    fn type_and_value_order() {
        let ascending = [
            ("null", "false"),
            ("null", "true"),
            ("null", "0"),
            ("null", "\"\""),
            ("null", "[]"),
            ("null", "{}"),
            ("false", "true"),
            ("false", "0"),
            ("false", "\"\""),
            ("false", "[]"),
            ("true", "0"),
            ("true", "-100"),
            ("true", "\"\""),
            ("true", "\"0\""),
            ("true", "[]"),
            ("true", "{}"),
            ("0", "\"\""),
            ("99999", "\" \""),
            ("0", "\"abc\""),
            ("0", "[]"),
            ("0", "{}"),
            ("\"\"", "\" \""),
            ("\"\"", "\"0\""),
            ("\"abc\"", "[]"),
            ("\"zzz\"", "{}"),
            ("[]", "{}"),
            ("[9,9,9]", "{}"),
            ("[]", "[0]"),
            ("[1]", "[2]"),
            ("[1, 2]", "[2]"),
            ("[99, 99]", "[100]"),
            ("[false]", "[true]"),
            ("[false, 1]", "[false, \"\"]"),
            ("[null]", "[false]"),
            ("{}", "{\"a\": 1}"),
            ("{\"a\": 1}", "{\"a\": 2}"),
            ("{\"b\": 1}", "{\"a\": 0}"),
            ("{\"a\": {\"c\": true}}", "{\"a\": {\"c\": 0}}"),
            (
                "{\"a\": {\"c\": true, \"a\": 0}}",
                "{\"a\": {\"c\": false, \"a\": 1}}",
            ),
            ("-1.5", "-1"),
            ("1", "1.5"),
            ("1.5", "2"),
            ("9007199254740992", "9007199254740993"),
            ("-1e300", "-9223372036854775808"),
            ("18446744073709551615", "1e300"),
            ("\"A\"", "\"a\""),
            ("\"a\"", "\"ab\""),
            ("\"Z\"", "\"ä\""),
        ];
        for (a, b) in ascending {
            let (a, b) = (v(a), v(b));
            assert_eq!(compare(&a, &b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(&b, &a), Ordering::Greater, "{b} > {a}");
            assert!(!equals(&a, &b), "{a} != {b}");
            assert_ne!(hash_key(&a), hash_key(&b), "hash {a} vs {b}");
        }
    }

    #[test]
    fn equal_values_and_hash_keys() {
        let equal = [
            ("1", "1.0"),
            ("-0.0", "0"),
            ("1e2", "100"),
            ("[]", "[null]"),
            ("[1]", "[1, null, null]"),
            ("{}", "{\"a\": null}"),
            ("{\"a\": 1, \"b\": 2}", "{\"b\": 2, \"a\": 1}"),
            ("{\"a\": [1.0, {\"x\": null}]}", "{\"a\": [1, {}]}"),
            ("null", "null"),
            ("\"abc\"", "\"abc\""),
            ("2.5", "2.5"),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (a, b) in equal {
            let (a, b) = (v(a), v(b));
            assert!(equals(&a, &b), "{a} == {b}");
            assert_eq!(hash_key(&a), hash_key(&b), "hash {a} vs {b}");
        }
        assert!(!equals(&json!(0), &json!("0")));
        assert!(!equals(&json!(0), &json!(false)));
        assert!(!equals(&json!(0), &json!(null)));
        assert!(!equals(&json!(0), &json!([0])));
        assert!(!equals(&json!("abc"), &json!("ABC")));
        assert_ne!(hash_key(&json!("1")), hash_key(&json!(1)));
        assert_ne!(hash_key(&json!([null, 1])), hash_key(&json!([1])));
    }

    #[test]
    fn truthiness() {
        for (text, expected) in [
            ("null", false),
            ("false", false),
            ("true", true),
            ("0", false),
            ("-0.0", false),
            ("0.0", false),
            ("1", true),
            ("-0.5", true),
            ("\"\"", false),
            ("\" \"", true),
            ("\"0\"", true),
            ("\"false\"", true),
            ("[]", true),
            ("[0]", true),
            ("{}", true),
        ] {
            assert_eq!(truthy(&v(text)), expected, "truthy({text})");
            assert_eq!(
                unary(UnaryOp::Not, &v(text)),
                Value::Bool(!expected),
                "!{text}"
            );
        }
    }

    #[test]
    fn to_number_edge_cases() {
        for (text, expected) in [
            ("null", 0.0),
            ("false", 0.0),
            ("true", 1.0),
            ("42", 42.0),
            ("-1.5", -1.5),
            ("\"\"", 0.0),
            ("\"   \"", 0.0),
            ("\"5\"", 5.0),
            ("\" 12 \"", 12.0),
            ("\"\\t-3.25\\n\"", -3.25),
            ("\"1e3\"", 1000.0),
            ("\"1E-2\"", 0.01),
            ("\".5\"", 0.5),
            ("\"5.\"", 5.0),
            ("\"+7\"", 7.0),
            ("\"0x1F\"", 31.0),
            ("\"12abc\"", 0.0),
            ("\"abc\"", 0.0),
            ("\"1 2\"", 0.0),
            ("\"-\"", 0.0),
            ("\"1e\"", 0.0),
            ("\"inf\"", 0.0),
            ("\"1e999\"", 0.0),
            ("[]", 0.0),
            ("[8]", 8.0),
            ("[\"8\"]", 8.0),
            ("[[2]]", 2.0),
            ("[8, 9]", 0.0),
            ("{}", 0.0),
            ("{\"a\": 1}", 0.0),
        ] {
            assert_eq!(to_number(&v(text)), expected, "to_number({text})");
        }
        assert_eq!(parse_number("12abc"), None);
        assert_eq!(parse_number(" 3 "), Some(3.0));
    }

    #[test]
    fn to_string_edge_cases() {
        for (text, expected) in [
            ("null", ""),
            ("true", "true"),
            ("false", "false"),
            ("123", "123"),
            ("1.23", "1.23"),
            ("-1.23", "-1.23"),
            ("0.0000002", "2e-7"),
            ("0.00001", "0.00001"),
            ("1.5e-7", "1.5e-7"),
            ("1e21", "1e+21"),
            ("1e300", "1e+300"),
            ("123456789.25", "123456789.25"),
            ("2.0", "2"),
            ("-0.0", "0"),
            ("9007199254740993", "9007199254740993"),
            ("\"abc\"", "abc"),
            ("[1,2,3]", "[1,2,3]"),
            ("[1.0, \"a\", null, true]", "[1,\"a\",null,true]"),
            (
                "{\"foo\":\"bar\",\"baz\":null}",
                "{\"foo\":\"bar\",\"baz\":null}",
            ),
            ("{\"q\":\"a\\\"b\"}", "{\"q\":\"a\\\"b\"}"),
        ] {
            assert_eq!(to_string(&v(text)), expected, "to_string({text})");
        }
    }

    #[test]
    fn number_normalisation() {
        assert_eq!(number(2.0), json!(2));
        assert_eq!(number(-0.0), json!(0));
        assert_eq!(number(2.5), json!(2.5));
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(number(f64::INFINITY), Value::Null);
        assert_eq!(number(f64::NEG_INFINITY), Value::Null);
        assert!(number(1e300).is_f64());
        assert!(number(9007199254740992.0).is_f64());
        assert_eq!(as_f64(&Number::from(7u64)), 7.0);
    }

    fn bin(op: BinaryOp, a: &str, b: &str) -> Value {
        binary(op, &v(a), &v(b)).unwrap_or_else(|e| panic!("{a} {op:?} {b}: {e}"))
    }

    #[test]
    fn arithmetic_follows_to_number() {
        use BinaryOp::*;
        for (a, op, b, expected) in [
            ("1", Add, "1", "2"),
            ("1", Add, "\"a\"", "1"),
            ("1", Add, "\"99\"", "100"),
            ("1", Add, "null", "1"),
            ("null", Add, "1", "1"),
            ("3", Add, "[]", "3"),
            ("24", Add, "[2]", "26"),
            ("24", Add, "[2, 4]", "24"),
            ("25", Sub, "null", "25"),
            ("17", Sub, "true", "16"),
            ("23", Mul, "{}", "0"),
            ("5", Mul, "[7]", "35"),
            ("24", Div, "\"12\"", "2"),
            ("1", Div, "0", "null"),
            ("1", Div, "\"0\"", "null"),
            ("0", Div, "0", "null"),
            ("1", Mod, "0", "null"),
            ("7", Div, "2", "3.5"),
            ("23", Mod, "7", "2"),
            ("-7", Mod, "3", "-1"),
            ("7.5", Mod, "2", "1.5"),
            ("12.5", Mul, "4", "50"),
            ("13.0", Div, "0.1", "130"),
            ("0.1", Add, "0.2", "0.30000000000000004"),
            ("1.5", Add, "1.5", "3"),
            ("9007199254740993", Add, "0", "9007199254740993"),
            ("9223372036854775807", Add, "1", "9223372036854775808.0"),
            ("1e308", Mul, "10", "null"),
            ("\" 2 \"", Mul, "\"3\"", "6"),
        ] {
            assert_eq!(bin(op, a, b), v(expected), "{a} {op:?} {b}");
        }
    }

    #[test]
    fn comparison_operators() {
        use BinaryOp::*;
        for (a, op, b, expected) in [
            ("0", Eq, "null", false),
            ("1", Gt, "0", true),
            ("true", Ne, "null", true),
            ("45", Le, "\"yikes!\"", true),
            ("65", Ne, "\"65\"", true),
            ("65", Eq, "65", true),
            ("1.23", Gt, "1.32", false),
            ("\"abc\"", Eq, "\"abc\"", true),
            ("\"abc\"", Eq, "\"ABC\"", false),
            ("null", Lt, "false", true),
            ("true", Lt, "0", true),
            ("[]", Lt, "{}", true),
            ("\"a\"", Lt, "[]", true),
            ("[1, 2]", Lt, "[1, 3]", true),
            ("1", Eq, "1.0", true),
            ("1", Ge, "1.0", true),
            ("1", Le, "1.0", true),
            ("{\"a\": 1}", Eq, "{\"a\": 1.0, \"b\": null}", true),
        ] {
            assert_eq!(bin(op, a, b), Value::Bool(expected), "{a} {op:?} {b}");
        }
    }

    #[test]
    fn in_operator() {
        use BinaryOp::*;
        for (a, op, b, expected) in [
            ("1.5", In, "[2, 3, 1.5]", true),
            ("\"foo\"", In, "null", false),
            ("\"foo\"", In, "\"foo\"", false),
            ("\"a\"", In, "{\"a\": 1}", false),
            ("42", NotIn, "[17, 40, 50]", true),
            ("42", NotIn, "42", true),
            ("42", NotIn, "null", true),
            ("1", In, "[1.0]", true),
            ("[1]", In, "[[1], [2]]", true),
            ("null", In, "[]", false),
            ("null", In, "[null]", true),
        ] {
            assert_eq!(bin(op, a, b), Value::Bool(expected), "{a} {op:?} {b}");
        }
    }

    #[test]
    fn like_wildcards_and_escapes() {
        for (text, pattern, expected) in [
            ("foo", "f%", true),
            ("abc", "a%", true),
            ("abc", "_bc", true),
            ("abc", "abc", true),
            ("abc", "ab", false),
            ("abc", "%b%", true),
            ("abc", "%c", true),
            ("abc", "%a", false),
            ("cart", "ca_t", true),
            ("carrot", "ca_t", false),
            ("carrot", "ca%t", true),
            ("foo bar baz", "bar", false),
            ("foo bar baz", "%bar%", true),
            ("bar", "%bar%", true),
            ("a_b_foo", "a\\_b\\_foo", true),
            ("axb_foo", "a\\_b\\_foo", false),
            ("100%", "100\\%", true),
            ("1000", "100\\%", false),
            ("a\\b", "a\\\\b", true),
            ("FoO", "foo", false),
            ("line1\nline2", "line1%", true),
            ("a.c", "a.c", true),
            ("abc", "a.c", false),
            ("(x)", "(%)", true),
            ("ü", "_", true),
            ("", "%", true),
            ("", "_", false),
        ] {
            assert_eq!(
                like(text, pattern, false).ok(),
                Some(expected),
                "{text:?} LIKE {pattern:?}"
            );
        }
        assert_eq!(like("FoO bAr BaZ", "fOo%bAz", true).ok(), Some(true));
        assert_eq!(like("FoO bAr BaZ", "fOo%bAz", false).ok(), Some(false));
        assert_eq!(bin(BinaryOp::NotLike, "\"foo\"", "\"f%\""), json!(false));
        assert_eq!(bin(BinaryOp::Like, "123", "\"1%\""), json!(true));
        assert_eq!(bin(BinaryOp::Like, "null", "\"\""), json!(true));
    }

    #[test]
    fn regex_operators_and_errors() {
        assert_eq!(
            bin(BinaryOp::RegexMatch, "\"foo\"", "\"^f[o].$\""),
            json!(true)
        );
        assert_eq!(
            bin(BinaryOp::RegexNotMatch, "\"foo\"", "\"[a-z]+bar$\""),
            json!(true)
        );
        assert_eq!(
            bin(BinaryOp::RegexMatch, "\"the quick\"", "\"QUICK\""),
            json!(false)
        );
        let err = binary(BinaryOp::RegexMatch, &json!("x"), &json!("(unclosed")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Runtime);
        assert!(err.message.contains("'(unclosed'"), "{}", err.message);
        assert!(!err.message.contains('\n'), "{}", err.message);
        let err = binary(BinaryOp::RegexNotMatch, &json!("x"), &json!("a{2,1}")).unwrap_err();
        assert!(err.message.contains("a{2,1}"), "{}", err.message);
        // The cache stays bounded however many patterns a query uses.
        for i in 0..(REGEX_CACHE_CAPACITY * 2) {
            assert!(cached_regex(&format!("^x{i}$"), false).is_ok());
        }
        let size = REGEX_CACHE.with(|c| c.borrow().maps[0].len());
        assert!(size <= REGEX_CACHE_CAPACITY, "{size}");
    }

    #[test]
    fn logical_fallbacks_and_unary() {
        assert_eq!(bin(BinaryOp::Or, "1", "7"), json!(1));
        assert_eq!(bin(BinaryOp::Or, "null", "\"foo\""), json!("foo"));
        assert_eq!(bin(BinaryOp::And, "null", "true"), json!(null));
        assert_eq!(bin(BinaryOp::And, "true", "23"), json!(23));
        for (op, input, expected) in [
            (UnaryOp::Plus, "\"5\"", "5"),
            (UnaryOp::Plus, "[8]", "8"),
            (UnaryOp::Plus, "[8, 9]", "0"),
            (UnaryOp::Plus, "{}", "0"),
            (UnaryOp::Plus, "null", "0"),
            (UnaryOp::Neg, "\"5\"", "-5"),
            (UnaryOp::Neg, "[8]", "-8"),
            (UnaryOp::Neg, "[8, 9]", "0"),
            (UnaryOp::Neg, "{}", "0"),
            (UnaryOp::Neg, "-5", "5"),
            (UnaryOp::Neg, "2.5", "-2.5"),
            (UnaryOp::Neg, "0", "0"),
            (
                UnaryOp::Neg,
                "-9223372036854775808",
                "9223372036854775808.0",
            ),
            (UnaryOp::Not, "0", "true"),
            (UnaryOp::Not, "[]", "false"),
        ] {
            assert_eq!(unary(op, &v(input)), v(expected), "{op:?} {input}");
        }
    }

    #[test]
    fn ranges_and_limits() {
        assert_eq!(
            range(&json!(1), &json!(4), 100).ok(),
            Some(json!([1, 2, 3, 4]))
        );
        assert_eq!(
            range(&json!(3), &json!(1), 100).ok(),
            Some(json!([3, 2, 1]))
        );
        assert_eq!(range(&json!(2), &json!(2), 100).ok(), Some(json!([2])));
        assert_eq!(
            range(&json!(1.9), &json!(3.7), 100).ok(),
            Some(json!([1, 2, 3]))
        );
        assert_eq!(
            range(&json!("2"), &json!(null), 100).ok(),
            Some(json!([2, 1, 0]))
        );
        assert_eq!(
            range(&json!(-1), &json!(1), 3).ok(),
            Some(json!([-1, 0, 1]))
        );
        let err = range(&json!(-1), &json!(2), 3).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Limit);
        assert!(err.message.contains("-1..2"), "{}", err.message);
        let err = range(&json!(0), &json!(1e18), DEFAULT_RANGE_LIMIT).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Limit);
    }

    #[test]
    fn type_names_and_ranks() {
        for (text, name, rank) in [
            ("null", "null", 0),
            ("true", "bool", 1),
            ("1.5", "number", 2),
            ("\"\"", "string", 3),
            ("[]", "array", 4),
            ("{}", "object", 5),
        ] {
            assert_eq!(typename(&v(text)), name);
            assert_eq!(type_rank(&v(text)), rank);
        }
    }
}
