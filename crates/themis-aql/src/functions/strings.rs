//! String functions. Every argument that should be a string is converted with
//! `TO_STRING` first (so `UPPER(null)` is `""` and `LENGTH(123)` is 3), and
//! positions count Unicode characters.

use serde_json::Value;

use super::{arg, det, flag, int_arg, nondet, ok_bool, ok_null, str_arg, Def, MANY};
use crate::error::QueryError;
use crate::value;

/// The longest string `REPEAT()` builds before giving up (as in ArangoDB).
const MAX_REPEAT_BYTES: usize = 16 * 1024 * 1024;

pub(super) const DEFS: &[Def] = &[
    det("CHAR_LENGTH", 1, 1, char_length, "CHAR_LENGTH(value) → number: characters in TO_STRING(value) (4 for true, 5 for false, 0 for null)"),
    det("LENGTH", 1, 1, length, "LENGTH(value) → number: elements of an array, attributes of an object, characters of a string or number, 1/0 for true/false, 0 for null (LENGTH(collection) counts documents)"),
    det("COUNT", 1, 1, length, "COUNT(value) → number: alias of LENGTH()"),
    det("CONCAT", 1, MANY, concat, "CONCAT(value1, ...) or CONCAT(array) → string: the values as strings, joined; nulls are skipped"),
    det("CONCAT_SEPARATOR", 2, MANY, concat_separator, "CONCAT_SEPARATOR(separator, value1, ...) or CONCAT_SEPARATOR(separator, array) → string: the values joined by separator; nulls are skipped"),
    det("CONTAINS", 2, 3, contains, "CONTAINS(text, search, returnIndex?) → bool|number: whether search occurs in text (case-sensitive), or its character position (-1 if absent)"),
    det("FIND_FIRST", 2, 4, find_first, "FIND_FIRST(text, search, start?, end?) → number: character position of the first occurrence of search within start..end, or -1"),
    det("FIND_LAST", 2, 4, find_last, "FIND_LAST(text, search, start?, end?) → number: character position of the last occurrence of search within start..end, or -1"),
    det("LEFT", 2, 2, left, "LEFT(value, n) → string: the first n characters"),
    det("RIGHT", 2, 2, right, "RIGHT(value, n) → string: the last n characters"),
    det("LOWER", 1, 1, lower, "LOWER(value) → string: lower-cased"),
    det("UPPER", 1, 1, upper, "UPPER(value) → string: upper-cased"),
    det("TRIM", 1, 2, trim, "TRIM(value, chars?|type?) → string: strip whitespace (or the given characters) from both ends; type 1 = start only, 2 = end only"),
    det("LTRIM", 1, 2, ltrim, "LTRIM(value, chars?) → string: strip whitespace (or the given characters) from the start"),
    det("RTRIM", 1, 2, rtrim, "RTRIM(value, chars?) → string: strip whitespace (or the given characters) from the end"),
    det("SUBSTRING", 2, 3, substring, "SUBSTRING(value, offset, length?) → string: length characters from offset (negative offsets count from the end)"),
    det("SPLIT", 1, 3, split, "SPLIT(value, separator|separators?, limit?) → array: the parts between separators (\"\" splits into characters), at most limit of them"),
    det("SUBSTITUTE", 2, 4, substitute, "SUBSTITUTE(value, search, replace?, limit?) or SUBSTITUTE(value, mapping, limit?) → string: replace occurrences of search strings"),
    det("LIKE", 2, 3, like, "LIKE(text, pattern, caseInsensitive?) → bool: wildcard match, % = any sequence, _ = one character, \\ escapes"),
    det("REGEX_TEST", 2, 3, regex_test, "REGEX_TEST(text, regex, caseInsensitive?) → bool|null: whether the regular expression matches somewhere in text (null if the regex is invalid)"),
    det("REGEX_MATCHES", 2, 3, regex_matches, "REGEX_MATCHES(text, regex, caseInsensitive?) → array|null: the first match and its groups, or null"),
    det("REGEX_SPLIT", 2, 4, regex_split, "REGEX_SPLIT(text, regex, caseInsensitive?, limit?) → array|null: the parts between matches (capture groups are kept)"),
    det("REGEX_REPLACE", 3, 4, regex_replace, "REGEX_REPLACE(text, regex, replacement, caseInsensitive?) → string|null: replace every match ($1 refers to a group)"),
    det("REPEAT", 2, 3, repeat, "REPEAT(value, count, separator?) → string|null: value repeated count times (null beyond 16 MB)"),
    det("REVERSE", 1, 1, reverse, "REVERSE(value) → string|array: the characters of a string, or the elements of an array, in reverse order"),
    det("STARTS_WITH", 2, 3, starts_with, "STARTS_WITH(text, prefix|prefixes, minMatchCount?) → bool: whether text starts with prefix (or with at least minMatchCount of the prefixes)"),
    det("MD5", 1, 1, md5, "MD5(value) → string: MD5 of TO_STRING(value), lower-case hex"),
    det("SHA1", 1, 1, sha1, "SHA1(value) → string: SHA-1 of TO_STRING(value), lower-case hex"),
    det("SHA256", 1, 1, sha256, "SHA256(value) → string: SHA-256 of TO_STRING(value), lower-case hex"),
    det("SHA512", 1, 1, sha512, "SHA512(value) → string: SHA-512 of TO_STRING(value), lower-case hex"),
    det("CRC32", 1, 1, crc32, "CRC32(value) → string: CRC-32C (Castagnoli) of TO_STRING(value), upper-case hex"),
    det("FNV64", 1, 1, fnv64, "FNV64(value) → string: FNV-1a 64-bit hash of TO_STRING(value), upper-case hex"),
    det("TO_BASE64", 1, 1, to_base64, "TO_BASE64(value) → string: Base64 of TO_STRING(value)"),
    det("TO_HEX", 1, 1, to_hex, "TO_HEX(value) → string: the UTF-8 bytes of TO_STRING(value) in hex"),
    det("ENCODE_URI_COMPONENT", 1, 1, encode_uri_component, "ENCODE_URI_COMPONENT(value) → string: percent-encoded like JavaScript's encodeURIComponent"),
    det("SOUNDEX", 1, 1, soundex, "SOUNDEX(value) → string: the Soundex code (\"E251\" for \"example\")"),
    det("LEVENSHTEIN_DISTANCE", 2, 2, levenshtein_distance, "LEVENSHTEIN_DISTANCE(a, b) → number: Damerau-Levenshtein edit distance"),
    det("IPV4_TO_NUMBER", 1, 1, ipv4_to_number, "IPV4_TO_NUMBER(address) → number|null: \"1.2.3.4\" as an unsigned 32-bit number"),
    det("IPV4_FROM_NUMBER", 1, 1, ipv4_from_number, "IPV4_FROM_NUMBER(number) → string|null: an unsigned 32-bit number as \"a.b.c.d\""),
    det("IS_IPV4", 1, 1, is_ipv4, "IS_IPV4(value) → bool: whether value is a dotted-quad IPv4 address without leading zeros"),
    det("TO_CHAR", 1, 1, to_char, "TO_CHAR(codepoint) → string|null: the character with that Unicode code point"),
    det("JSON_STRINGIFY", 1, 1, json_stringify, "JSON_STRINGIFY(value) → string: value as JSON text"),
    det("JSON_PARSE", 1, 1, json_parse, "JSON_PARSE(text) → any: the value the JSON text describes, or null if it is not valid JSON"),
    nondet("UUID", 0, 0, uuid, "UUID() → string: a random (version 4) UUID"),
    nondet("RANDOM_TOKEN", 1, 1, random_token, "RANDOM_TOKEN(length) → string|null: random letters and digits, 0 ≤ length ≤ 65536"),
];

fn text(s: String) -> Result<Value, QueryError> {
    Ok(Value::String(s))
}

fn int(i: i64) -> Result<Value, QueryError> {
    Ok(Value::from(i))
}

fn char_length(args: Vec<Value>) -> Result<Value, QueryError> {
    let n = match arg(&args, 0) {
        Value::Null => 0,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        v => value::to_string(v).chars().count(),
    };
    Ok(Value::from(n))
}

fn length(args: Vec<Value>) -> Result<Value, QueryError> {
    let n = match arg(&args, 0) {
        Value::Null | Value::Bool(false) => 0,
        Value::Bool(true) => 1,
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        Value::String(s) => s.chars().count(),
        v @ Value::Number(_) => value::to_string(v).chars().count(),
    };
    Ok(Value::from(n))
}

/// Appends the non-null values as strings, separated by `sep`.
fn join<'a>(values: impl Iterator<Item = &'a Value>, sep: &str) -> String {
    let mut out = String::new();
    let mut first = true;
    for v in values.filter(|v| !v.is_null()) {
        if !first {
            out.push_str(sep);
        }
        first = false;
        out.push_str(&value::to_string(v));
    }
    out
}

fn concat(args: Vec<Value>) -> Result<Value, QueryError> {
    if let [Value::Array(items)] = args.as_slice() {
        return text(join(items.iter(), ""));
    }
    text(join(args.iter(), ""))
}

fn concat_separator(args: Vec<Value>) -> Result<Value, QueryError> {
    let sep = str_arg(&args, 0);
    if let [_, Value::Array(items)] = args.as_slice() {
        return text(join(items.iter(), &sep));
    }
    text(join(args[1..].iter(), &sep))
}

/// Character index of a byte offset in `s`.
fn char_index(s: &str, byte: usize) -> usize {
    s[..byte].chars().count()
}

fn contains(args: Vec<Value>) -> Result<Value, QueryError> {
    let (haystack, needle) = (str_arg(&args, 0), str_arg(&args, 1));
    let found = if needle.is_empty() {
        None
    } else {
        haystack.find(&needle)
    };
    if flag(&args, 2, false) {
        int(found.map_or(-1, |b| char_index(&haystack, b) as i64))
    } else {
        ok_bool(found.is_some())
    }
}

/// The `(start, end)` character bounds of `FIND_FIRST`/`FIND_LAST`, `None` when
/// they leave nothing to search; the flag says whether an end was given.
fn find_bounds(args: &[Value], len: usize) -> Option<(i64, i64, bool)> {
    let start = if args.len() >= 3 {
        int_arg(&args[2])
    } else {
        0
    };
    if start < 0 {
        return None;
    }
    match args.get(3) {
        Some(v) if !v.is_null() => {
            let end = int_arg(v);
            if end < start || end < 0 {
                return None;
            }
            Some((start, end, true))
        }
        _ => Some((start, len as i64, false)),
    }
}

/// Character positions of every (possibly overlapping) occurrence of `needle`.
fn occurrences<'a>(chars: &'a [char], needle: &[char]) -> impl Iterator<Item = usize> + 'a {
    let needle = needle.to_vec();
    (0..chars.len().saturating_sub(needle.len() - 1))
        .filter(move |&i| chars[i..].starts_with(&needle))
}

fn find_first(args: Vec<Value>) -> Result<Value, QueryError> {
    let hay: Vec<char> = str_arg(&args, 0).chars().collect();
    let needle: Vec<char> = str_arg(&args, 1).chars().collect();
    let Some((start, end, _)) = find_bounds(&args, hay.len()) else {
        return int(-1);
    };
    if needle.is_empty() {
        return int(start);
    }
    let n = needle.len() as i64;
    let found = occurrences(&hay, &needle)
        .map(|p| p as i64)
        .find(|&p| p >= start && p + n - 1 <= end);
    int(found.unwrap_or(-1))
}

fn find_last(args: Vec<Value>) -> Result<Value, QueryError> {
    let hay: Vec<char> = str_arg(&args, 0).chars().collect();
    let needle: Vec<char> = str_arg(&args, 1).chars().collect();
    let Some((start, end, end_given)) = find_bounds(&args, hay.len()) else {
        return int(-1);
    };
    if needle.is_empty() {
        return int(end + i64::from(end_given));
    }
    let n = needle.len() as i64;
    let found = occurrences(&hay, &needle)
        .map(|p| p as i64)
        .filter(|&p| p >= start && p + n - 1 <= end)
        .last();
    int(found.unwrap_or(-1))
}

fn left(args: Vec<Value>) -> Result<Value, QueryError> {
    let n = int_arg(arg(&args, 1)).max(0) as usize;
    text(str_arg(&args, 0).chars().take(n).collect())
}

fn right(args: Vec<Value>) -> Result<Value, QueryError> {
    let s = str_arg(&args, 0);
    let n = int_arg(arg(&args, 1)).max(0) as usize;
    let skip = s.chars().count().saturating_sub(n);
    text(s.chars().skip(skip).collect())
}

fn lower(args: Vec<Value>) -> Result<Value, QueryError> {
    text(str_arg(&args, 0).to_lowercase())
}

fn upper(args: Vec<Value>) -> Result<Value, QueryError> {
    text(str_arg(&args, 0).to_uppercase())
}

const DEFAULT_TRIM_CHARS: &str = "\r\n\t ";

fn trim_chars(args: &[Value]) -> Vec<char> {
    match args.get(1) {
        Some(v) => value::to_string(v).chars().collect(),
        None => DEFAULT_TRIM_CHARS.chars().collect(),
    }
}

fn trim(args: Vec<Value>) -> Result<Value, QueryError> {
    let s = str_arg(&args, 0);
    let (chars, mode): (Vec<char>, i64) = match args.get(1) {
        Some(Value::Number(_)) => {
            let mode = int_arg(&args[1]);
            (
                DEFAULT_TRIM_CHARS.chars().collect(),
                if (0..=2).contains(&mode) { mode } else { 0 },
            )
        }
        Some(Value::String(set)) => (set.chars().collect(), 0),
        _ => (DEFAULT_TRIM_CHARS.chars().collect(), 0),
    };
    let out = match mode {
        1 => s.trim_start_matches(chars.as_slice()),
        2 => s.trim_end_matches(chars.as_slice()),
        _ => s.trim_matches(chars.as_slice()),
    };
    text(out.to_string())
}

fn ltrim(args: Vec<Value>) -> Result<Value, QueryError> {
    let chars = trim_chars(&args);
    text(
        str_arg(&args, 0)
            .trim_start_matches(chars.as_slice())
            .to_string(),
    )
}

fn rtrim(args: Vec<Value>) -> Result<Value, QueryError> {
    let chars = trim_chars(&args);
    text(
        str_arg(&args, 0)
            .trim_end_matches(chars.as_slice())
            .to_string(),
    )
}

fn substring(args: Vec<Value>) -> Result<Value, QueryError> {
    let chars: Vec<char> = str_arg(&args, 0).chars().collect();
    let len = chars.len() as i64;
    let offset = int_arg(arg(&args, 1));
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset.min(len)
    };
    let count = match args.get(2) {
        Some(v) => int_arg(v).max(0),
        None => len,
    };
    let end = start.saturating_add(count).min(len);
    text(chars[start as usize..end as usize].iter().collect())
}

/// Splits `s` at every occurrence of any separator (the leftmost occurrence
/// wins; on a tie the separator listed first).
fn split_by(s: &str, seps: &[String]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        let next = seps
            .iter()
            .filter_map(|sep| rest.find(sep.as_str()).map(|pos| (pos, sep.len())))
            .min_by_key(|&(pos, _)| pos);
        match next {
            Some((pos, len)) => {
                parts.push(rest[..pos].to_string());
                rest = &rest[pos + len..];
            }
            None => {
                parts.push(rest.to_string());
                return parts;
            }
        }
    }
}

fn split(args: Vec<Value>) -> Result<Value, QueryError> {
    let limit = match args.get(2) {
        Some(Value::Number(_)) => Some(int_arg(&args[2])),
        Some(_) => return ok_null(),
        None => None,
    };
    match limit {
        Some(l) if l < 0 => return ok_null(),
        Some(0) => return Ok(Value::Array(Vec::new())),
        _ => {}
    }
    if args.len() == 1 {
        return Ok(Value::Array(args));
    }
    let seps: Vec<String> = match &args[1] {
        Value::Object(_) => return ok_null(),
        Value::Array(items) => items.iter().map(value::to_string).collect(),
        v => vec![value::to_string(v)],
    };
    let seps: Vec<String> = seps.into_iter().filter(|s| !s.is_empty()).collect();
    let s = str_arg(&args, 0);
    let parts: Vec<String> = if seps.is_empty() {
        s.chars().map(String::from).collect()
    } else {
        split_by(&s, &seps)
    };
    let limit = limit.map_or(usize::MAX, |l| l as usize);
    Ok(Value::Array(
        parts.into_iter().take(limit).map(Value::String).collect(),
    ))
}

/// A string or `null` (→ `""`) as a replacement; anything else is invalid.
fn replacement(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn substitute(args: Vec<Value>) -> Result<Value, QueryError> {
    // (search strings, replacements, replace-all-with-one, limit)
    let (searches, replaces, single, limit): (Vec<String>, Vec<String>, bool, i64) = match &args[1]
    {
        Value::Object(mapping) => {
            if args.len() > 3 {
                return ok_null();
            }
            let mut searches = Vec::new();
            let mut replaces = Vec::new();
            for (k, v) in mapping {
                let Some(r) = replacement(v) else {
                    return ok_null();
                };
                searches.push(k.clone());
                replaces.push(r);
            }
            let limit = args.get(2).map_or(-1, int_arg);
            (searches, replaces, false, limit)
        }
        search => {
            let searches = match search {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        let Value::String(s) = item else {
                            return ok_null();
                        };
                        out.push(s.clone());
                    }
                    out
                }
                _ => return ok_null(),
            };
            let (replaces, single) = match args.get(2) {
                None => (Vec::new(), false),
                Some(Value::String(r)) => (vec![r.clone()], true),
                Some(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for item in items {
                        let Some(r) = replacement(item) else {
                            return ok_null();
                        };
                        out.push(r);
                    }
                    (out, false)
                }
                Some(_) => return ok_null(),
            };
            let limit = args.get(3).map_or(-1, int_arg);
            (searches, replaces, single, limit)
        }
    };
    if limit == 0 || searches.is_empty() {
        return Ok(args.into_iter().next().unwrap_or(Value::Null));
    }
    let s = str_arg(&args, 0);
    let mut out = String::new();
    let mut pos = 0;
    let mut count = 0i64;
    loop {
        let next = searches
            .iter()
            .enumerate()
            .filter(|(_, search)| !search.is_empty())
            .filter_map(|(i, search)| s[pos..].find(search.as_str()).map(|p| (pos + p, i)))
            .min_by_key(|&(p, _)| p);
        let Some((found, which)) = next else { break };
        out.push_str(&s[pos..found]);
        if let Some(r) = replaces.get(which) {
            out.push_str(r);
        } else if single {
            out.push_str(&replaces[0]);
        }
        pos = found + searches[which].len();
        count += 1;
        if limit >= 0 && count >= limit {
            break;
        }
    }
    out.push_str(&s[pos..]);
    text(out)
}

fn like(args: Vec<Value>) -> Result<Value, QueryError> {
    let (t, pattern) = (str_arg(&args, 0), str_arg(&args, 1));
    match value::like(&t, &pattern, flag(&args, 2, false)) {
        Ok(b) => ok_bool(b),
        Err(_) => ok_null(),
    }
}

/// The compiled regular expression of argument 1, or `None` if it is invalid
/// (the functions then return null, as in ArangoDB).
fn regex_arg(args: &[Value], ci_index: usize) -> Option<std::rc::Rc<regex::Regex>> {
    value::cached_regex(&str_arg(args, 1), flag(args, ci_index, false)).ok()
}

fn regex_test(args: Vec<Value>) -> Result<Value, QueryError> {
    match regex_arg(&args, 2) {
        Some(re) => ok_bool(re.is_match(&str_arg(&args, 0))),
        None => ok_null(),
    }
}

fn regex_matches(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(re) = regex_arg(&args, 2) else {
        return ok_null();
    };
    let t = str_arg(&args, 0);
    let Some(caps) = re.captures(&t) else {
        return ok_null();
    };
    Ok(Value::Array(
        caps.iter()
            .map(|m| Value::String(m.map_or("", |m| m.as_str()).to_string()))
            .collect(),
    ))
}

fn regex_split(args: Vec<Value>) -> Result<Value, QueryError> {
    let limit = match args.get(3) {
        Some(Value::Number(_)) => int_arg(&args[3]),
        Some(_) => return ok_null(),
        None => -1,
    };
    if args.len() == 4 && limit < 0 {
        return ok_null();
    }
    if limit == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    let pattern = str_arg(&args, 1);
    let t = str_arg(&args, 0);
    let limit = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let parts: Vec<String> = if pattern.is_empty() {
        t.chars().map(String::from).collect()
    } else {
        let Some(re) = regex_arg(&args, 2) else {
            return ok_null();
        };
        let mut parts = Vec::new();
        let mut last = 0;
        for caps in re.captures_iter(&t) {
            let Some(m) = caps.get(0) else { continue };
            if m.start() == m.end() && (m.start() == 0 || m.start() == t.len()) {
                continue;
            }
            parts.push(t[last..m.start()].to_string());
            for group in caps.iter().skip(1) {
                parts.push(group.map_or("", |g| g.as_str()).to_string());
            }
            last = m.end();
        }
        parts.push(t[last..].to_string());
        parts
    };
    Ok(Value::Array(
        parts.into_iter().take(limit).map(Value::String).collect(),
    ))
}

fn regex_replace(args: Vec<Value>) -> Result<Value, QueryError> {
    let Some(re) = regex_arg(&args, 3) else {
        return ok_null();
    };
    let (t, replacement) = (str_arg(&args, 0), str_arg(&args, 2));
    text(re.replace_all(&t, replacement.as_str()).into_owned())
}

fn repeat(args: Vec<Value>) -> Result<Value, QueryError> {
    let count = int_arg(arg(&args, 1));
    if count == 0 {
        return text(String::new());
    }
    if count < 0 {
        return ok_null();
    }
    let s = str_arg(&args, 0);
    let sep = if args.len() > 2 {
        str_arg(&args, 2)
    } else {
        String::new()
    };
    if s.is_empty() && sep.is_empty() {
        return text(String::new());
    }
    let total = (s.len() as u128) * (count as u128) + (sep.len() as u128) * (count as u128 - 1);
    if total > MAX_REPEAT_BYTES as u128 {
        return ok_null();
    }
    text(vec![s; count as usize].join(&sep))
}

fn reverse(mut args: Vec<Value>) -> Result<Value, QueryError> {
    match super::take(&mut args, 0) {
        Value::Array(mut items) => {
            items.reverse();
            Ok(Value::Array(items))
        }
        v => text(value::to_string(&v).chars().rev().collect()),
    }
}

fn starts_with(args: Vec<Value>) -> Result<Value, QueryError> {
    let t = str_arg(&args, 0);
    match arg(&args, 1) {
        Value::Array(prefixes) => {
            let min = args.get(2).map_or(1, int_arg);
            let matched = prefixes
                .iter()
                .filter(|p| t.starts_with(value::to_string(p).as_str()))
                .count();
            ok_bool(matched as i64 >= min)
        }
        prefix => ok_bool(t.starts_with(value::to_string(prefix).as_str())),
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn md5(args: Vec<Value>) -> Result<Value, QueryError> {
    use md5::Digest;
    text(hex_lower(
        md5::Md5::digest(str_arg(&args, 0).as_bytes()).as_slice(),
    ))
}

fn sha1(args: Vec<Value>) -> Result<Value, QueryError> {
    use sha1::Digest;
    text(hex_lower(
        sha1::Sha1::digest(str_arg(&args, 0).as_bytes()).as_slice(),
    ))
}

fn sha256(args: Vec<Value>) -> Result<Value, QueryError> {
    use sha2::Digest;
    text(hex_lower(
        sha2::Sha256::digest(str_arg(&args, 0).as_bytes()).as_slice(),
    ))
}

fn sha512(args: Vec<Value>) -> Result<Value, QueryError> {
    use sha2::Digest;
    text(hex_lower(
        sha2::Sha512::digest(str_arg(&args, 0).as_bytes()).as_slice(),
    ))
}

/// CRC-32C (Castagnoli polynomial, reflected), as ArangoDB's `CRC32()`.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn crc32(args: Vec<Value>) -> Result<Value, QueryError> {
    text(format!("{:X}", crc32c(str_arg(&args, 0).as_bytes())))
}

/// FNV-1a, 64 bits.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn fnv64(args: Vec<Value>) -> Result<Value, QueryError> {
    text(format!("{:X}", fnv1a64(str_arg(&args, 0).as_bytes())))
}

fn to_base64(args: Vec<Value>) -> Result<Value, QueryError> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = str_arg(&args, 0);
    let mut out = String::with_capacity(s.len().div_ceil(3) * 4);
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    text(out)
}

fn to_hex(args: Vec<Value>) -> Result<Value, QueryError> {
    text(hex_lower(str_arg(&args, 0).as_bytes()))
}

fn encode_uri_component(args: Vec<Value>) -> Result<Value, QueryError> {
    let s = str_arg(&args, 0);
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    text(out)
}

fn soundex(args: Vec<Value>) -> Result<Value, QueryError> {
    fn code(c: char) -> char {
        match c {
            'b' | 'f' | 'p' | 'v' => '1',
            'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => '2',
            'd' | 't' => '3',
            'l' => '4',
            'm' | 'n' => '5',
            'r' => '6',
            'h' | 'w' => '-', // neither coded nor a separator
            _ => '0',         // vowels separate equal codes
        }
    }
    let s = str_arg(&args, 0).trim().to_lowercase();
    let mut letters = s.chars().filter(char::is_ascii_alphabetic);
    let Some(first) = letters.next() else {
        return text(String::new());
    };
    let mut out = String::from(first.to_ascii_uppercase());
    let mut last = code(first);
    for c in letters {
        let k = code(c);
        if k == '-' {
            continue;
        }
        if k != '0' && k != last {
            out.push(k);
            if out.len() == 4 {
                break;
            }
        }
        last = k;
    }
    while out.len() < 4 {
        out.push('0');
    }
    text(out)
}

fn levenshtein_distance(args: Vec<Value>) -> Result<Value, QueryError> {
    let a: Vec<char> = str_arg(&args, 0).chars().collect();
    let b: Vec<char> = str_arg(&args, 1).chars().collect();
    // Optimal string alignment distance (an adjacent transposition costs 1),
    // keeping only the last three rows of the table.
    let m = b.len();
    let mut before: Vec<usize> = vec![0; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur: Vec<usize> = vec![0; m + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(Value::from(prev[m]))
}

/// A strict dotted quad: four decimal octets 0-255, no leading zeros.
fn parse_ipv4(s: &str) -> Option<u32> {
    let mut out = 0u32;
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if parts > 4
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|c| c.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        let octet: u32 = part.parse().ok()?;
        if octet > 255 {
            return None;
        }
        out = (out << 8) | octet;
    }
    (parts == 4).then_some(out)
}

fn ipv4_to_number(args: Vec<Value>) -> Result<Value, QueryError> {
    match arg(&args, 0) {
        Value::String(s) => Ok(parse_ipv4(s).map_or(Value::Null, Value::from)),
        _ => ok_null(),
    }
}

fn ipv4_from_number(args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::Number(n) = arg(&args, 0) else {
        return ok_null();
    };
    let f = value::as_f64(n);
    if f.fract() != 0.0 || !(0.0..=4_294_967_295.0).contains(&f) {
        return ok_null();
    }
    let ip = f as u32;
    text(format!(
        "{}.{}.{}.{}",
        ip >> 24,
        (ip >> 16) & 255,
        (ip >> 8) & 255,
        ip & 255
    ))
}

fn is_ipv4(args: Vec<Value>) -> Result<Value, QueryError> {
    ok_bool(matches!(arg(&args, 0), Value::String(s) if parse_ipv4(s).is_some()))
}

fn to_char(args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::Number(n) = arg(&args, 0) else {
        return ok_null();
    };
    let f = value::as_f64(n);
    if !(0.0..=f64::from(u32::MAX)).contains(&f) {
        return ok_null();
    }
    match char::from_u32(f as u32) {
        Some(c) => text(c.to_string()),
        None => ok_null(),
    }
}

fn json_stringify(args: Vec<Value>) -> Result<Value, QueryError> {
    text(value::to_json(arg(&args, 0)))
}

/// Integral floats within 2^53 become integers, as AQL arithmetic produces them.
fn normalise_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => value::number(value::as_f64(&n)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalise_numbers).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, normalise_numbers(v)))
                .collect(),
        ),
        v => v,
    }
}

fn json_parse(args: Vec<Value>) -> Result<Value, QueryError> {
    let Value::String(s) = arg(&args, 0) else {
        return ok_null();
    };
    Ok(serde_json::from_str::<Value>(s).map_or(Value::Null, normalise_numbers))
}

fn uuid(_: Vec<Value>) -> Result<Value, QueryError> {
    let mut bytes = rand::random::<u128>().to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex_lower(&bytes);
    text(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn random_token(args: Vec<Value>) -> Result<Value, QueryError> {
    use rand::Rng;
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let len = int_arg(arg(&args, 0));
    if !(0..=65536).contains(&len) {
        return ok_null();
    }
    let mut rng = rand::rng();
    text(
        (0..len)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect(),
    )
}
