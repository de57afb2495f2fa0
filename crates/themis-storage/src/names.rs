//! The naming rules of the wire contract (section 5 "Names and documents").
//!
//! * Database and collection names: an ASCII letter first, then ASCII letters,
//!   digits, `_` or `-`, at most 64 characters. Names starting with `_` are reserved
//!   for the system: users cannot create them, but they can be looked up (`_system`).
//! * Document keys (`_key`): 1–254 bytes from ArangoDB's key alphabet — ASCII
//!   letters, digits and `_ - : . @ ( ) + , = ; $ ! * ' %`.
//!
//! Every rejection is `InvalidArgument` with a message naming the rule, since the
//! server shows it to the client as is.

use crate::error::{Result, StorageError};

/// Longest database or collection name, in characters (= bytes: names are ASCII).
pub const MAX_NAME_LEN: usize = 64;
/// Longest document key, in bytes.
pub const MAX_KEY_LEN: usize = 254;

const NAME_RULE: &str =
    "a name starts with a letter, followed by letters, digits, '_' or '-', at most 64 characters";
const KEY_RULE: &str =
    "a document key (_key) is 1-254 bytes of letters, digits and _ - : . @ ( ) + , = ; $ ! * ' %";

/// Shows at most 64 characters of untrusted input in an error message.
/// `s` for an error message, cut to `limit` characters.
pub(crate) fn shown(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        s.to_string()
    } else {
        let head: String = s.chars().take(limit).collect();
        format!("{head}...")
    }
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Checks a database or collection name a user wants to create. `kind` ("database",
/// "collection") names the thing in the error message.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    if name.starts_with('_') {
        return Err(StorageError::InvalidArgument(format!(
            "invalid {kind} name '{}': names starting with '_' are reserved for the system; \
             choose a name that starts with a letter",
            shown(name, 64)
        )));
    }
    check_name_shape(kind, name, false)
}

/// Checks a name used to look something up: the user rules, except that a reserved
/// `_` prefix is allowed (so `_system` can be addressed).
pub(crate) fn validate_lookup_name(kind: &str, name: &str) -> Result<()> {
    check_name_shape(kind, name, true)
}

fn check_name_shape(kind: &str, name: &str, allow_system: bool) -> Result<()> {
    let bytes = name.as_bytes();
    let (first, rest) = match bytes.split_first() {
        Some(split) => split,
        None => {
            return Err(StorageError::InvalidArgument(format!(
                "invalid {kind} name: the name is empty; {NAME_RULE}"
            )))
        }
    };
    let first_ok = first.is_ascii_alphabetic() || (allow_system && *first == b'_');
    if !first_ok || !rest.iter().all(|&b| is_name_char(b)) || bytes.len() > MAX_NAME_LEN {
        return Err(StorageError::InvalidArgument(format!(
            "invalid {kind} name '{}': {NAME_RULE}",
            shown(name, 64)
        )));
    }
    Ok(())
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'-'
                | b':'
                | b'.'
                | b'@'
                | b'('
                | b')'
                | b'+'
                | b','
                | b'='
                | b';'
                | b'$'
                | b'!'
                | b'*'
                | b'\''
                | b'%'
        )
}

/// Checks a document key (`_key`).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::InvalidArgument(format!(
            "invalid document key: the key is empty; {KEY_RULE}"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::InvalidArgument(format!(
            "invalid document key '{}': it is {} bytes long; {KEY_RULE}",
            shown(key, 64),
            key.len()
        )));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii() && is_key_char(*c as u8)))
    {
        return Err(StorageError::InvalidArgument(format!(
            "invalid document key '{}': character {bad:?} is not allowed; {KEY_RULE}",
            shown(key, 64)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "users", "A-b_c9", &"x".repeat(64)] {
            assert!(validate_name("collection", ok).is_ok(), "{ok}");
        }
        for bad in ["", "9a", "-a", "a b", "a/b", "ä", &"x".repeat(65), "a.b"] {
            assert!(validate_name("collection", bad).is_err(), "{bad}");
        }
        let e = validate_name("database", "_mine").unwrap_err();
        assert!(e.message().contains("reserved"), "{e}");
        assert!(validate_lookup_name("database", "_system").is_ok());
        assert!(validate_lookup_name("database", "_").is_ok());
        assert!(validate_lookup_name("database", "_a/b").is_err());
    }

    #[test]
    fn keys() {
        assert!(validate_key(&"k".repeat(254)).is_ok());
        assert!(validate_key(&"k".repeat(255)).is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key("a_-:.@()+,=;$!*'%Z9").is_ok());
        for bad in [
            "a/b", "a b", "é", "a\"", "a#", "a?", "a\u{0}", "a[b]", "a&b",
        ] {
            let e = validate_key(bad).unwrap_err();
            assert!(matches!(e, StorageError::InvalidArgument(_)), "{bad}");
            assert!(e.message().contains("1-254 bytes"), "{e}");
        }
    }
}
