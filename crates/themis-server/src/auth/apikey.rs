//! API keys: generated here, shown to their owner once, stored only as a hash.
//!
//! A key reads `themis_<id>_<secret>`:
//!
//! * `<id>`: 12 lowercase hex characters, random. It is public: it names the key in
//!   listings, logs and the store (`K` + id), and [`prefix`] gives the form people see.
//! * `<secret>`: 40 random characters from `[A-Za-z0-9]` (about 238 bits). Only its
//!   SHA-256 is stored ([`ApiKeyRecord::secret_hash`]); the secret itself exists only
//!   in the [`NewApiKey::key`] returned once by [`generate`].
//!
//! Logging in with a key is [`parse`] (shape), a store lookup by id (the caller's), then
//! [`verify`] (secret, revocation, expiry).

use std::fmt;

use rand::distr::{Alphanumeric, Distribution};
use rand::Rng;
use sha2::{Digest, Sha256};
use themis_storage::ApiKeyRecord;

/// The text every key starts with.
const KEY_PREFIX: &str = "themis_";
/// Length of the id, in lowercase hex characters (6 random bytes).
const ID_LEN: usize = 12;
/// Length of the secret, in characters from `[A-Za-z0-9]`.
const SECRET_LEN: usize = 40;
/// Length of a whole key.
const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// What every parse error ends with.
const SHAPE_HINT: &str =
    "an API key looks like themis_<12 hex>_<40 letters and digits>: check for a truncated copy";

/// A freshly generated API key.
///
/// `key` is the only copy of the secret: show it to the user once and drop it. `record`
/// holds no secret and is what gets stored. `Debug` redacts the secret part of `key`.
pub struct NewApiKey {
    /// The full key, `themis_<id>_<secret>`, to hand to the user once.
    pub key: String,
    /// What to store: id, owner, label, SHA-256 of the secret, times.
    pub record: ApiKeyRecord,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field(
                "key",
                &format_args!("{}_<redacted>", prefix(&self.record.id)),
            )
            .field("record", &self.record)
            .finish()
    }
}

/// Generates a new key for `username`, labelled `name`.
///
/// Guarantees: the id is 12 random lowercase hex characters and the secret 40 random
/// characters from `[A-Za-z0-9]`, both from the thread-local CSPRNG; `record.id` is the
/// id, `record.secret_hash` the lowercase hex SHA-256 of the secret, `created_at_ms` is
/// `now_ms`, `revoked_at_ms` is `None`. The returned `key` always passes [`parse`], and
/// [`verify`] accepts its secret against `record` (until revoked or expired).
///
/// The id is random, not checked for uniqueness: the caller stores the record with an
/// insert that fails on an existing id (a collision is a 1-in-2^48 event per pair).
pub fn generate(username: &str, name: &str, expires_at_ms: Option<u64>, now_ms: u64) -> NewApiKey {
    let mut rng = rand::rng();
    let id_bytes: [u8; ID_LEN / 2] = rng.random();
    let id = hex::encode(id_bytes);
    let secret: String = Alphanumeric
        .sample_iter(&mut rng)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let key = format!("{KEY_PREFIX}{id}_{secret}");
    let record = ApiKeyRecord {
        id,
        username: username.to_string(),
        name: name.to_string(),
        secret_hash: hex::encode(sha256(&secret)),
        created_at_ms: now_ms,
        expires_at_ms,
        revoked_at_ms: None,
    };
    NewApiKey { key, record }
}

/// Splits a key into `(id, secret)`.
///
/// Guarantees: `Ok` only when `key` is exactly `themis_`, 12 lowercase hex characters,
/// `_` and 40 characters from `[A-Za-z0-9]`, with nothing before or after (no
/// whitespace). The error says what is wrong and never contains the key or its secret.
pub fn parse(key: &str) -> Result<(&str, &str), String> {
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return Err(format!(
            "this is not an API key (it does not start with `themis_`); {SHAPE_HINT}"
        ));
    };
    if key.len() != KEY_LEN {
        return Err(format!(
            "an API key is {KEY_LEN} characters long, this one is {}; {SHAPE_HINT}",
            key.chars().count()
        ));
    }
    // All ASCII checks below run on bytes; the length check above is on bytes too, so
    // a multi-byte character makes one of them fail rather than a slice panic.
    let bytes = rest.as_bytes();
    let (id, after_id) = bytes.split_at(ID_LEN);
    if !id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "the id part of an API key is 12 lowercase hex characters; {SHAPE_HINT}"
        ));
    }
    let Some((b'_', secret)) = after_id.split_first() else {
        return Err(format!(
            "the id part of an API key is followed by `_`; {SHAPE_HINT}"
        ));
    };
    if !secret.iter().all(u8::is_ascii_alphanumeric) {
        return Err(format!(
            "the secret part of an API key is 40 letters and digits; {SHAPE_HINT}"
        ));
    }
    // Every byte checked is ASCII, so these are char boundaries.
    Ok((&rest[..ID_LEN], &rest[ID_LEN + 1..]))
}

/// Checks `secret` (from [`parse`]) against the stored `record`, at time `now_ms`.
///
/// Guarantees: the SHA-256 of `secret` is compared with `record.secret_hash` in constant
/// time (all 32 bytes, no early exit), and that check comes first, so revocation and
/// expiry are only revealed to someone holding the secret. Then a revoked key is refused,
/// then one whose `expires_at_ms` is at or before `now_ms`. The error never contains the
/// secret.
pub fn verify(record: &ApiKeyRecord, secret: &str, now_ms: u64) -> Result<(), String> {
    let key = prefix(&record.id);
    let stored: [u8; 32] = hex::decode(&record.secret_hash)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            format!(
                "API key {key} has a damaged stored hash; revoke it and create a new one with \
                 `themisdb apikey create`"
            )
        })?;
    if !constant_time_eq(&stored, &sha256(secret)) {
        return Err(format!(
            "API key {key}: the secret does not match (check for a mistyped or truncated copy)"
        ));
    }
    if record.revoked_at_ms.is_some() {
        return Err(format!("API key {key} was revoked"));
    }
    if let Some(expires) = record.expires_at_ms {
        if now_ms >= expires {
            return Err(format!(
                "API key {key} expired at {expires}; create a new one with `themisdb apikey create`"
            ));
        }
    }
    Ok(())
}

/// `themis_<id>`: how a key is named in listings and logs, without its secret.
///
/// Guarantees: never contains more than the (public) id it is given.
pub fn prefix(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal in time independent of where the arrays differ: every byte is XORed and ORed
/// into the accumulator, with no early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn generate_parse_verify_round_trip() {
        let new = generate("alice", "ci", None, NOW);
        assert_eq!(new.key.len(), KEY_LEN);
        let (id, secret) = parse(&new.key).unwrap();
        assert_eq!(id, new.record.id);
        assert_eq!(id.len(), 12);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(secret.len(), 40);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(new.record.username, "alice");
        assert_eq!(new.record.name, "ci");
        assert_eq!(new.record.created_at_ms, NOW);
        assert_eq!(new.record.expires_at_ms, None);
        assert_eq!(new.record.revoked_at_ms, None);
        assert_eq!(
            new.record.secret_hash,
            hex::encode(Sha256::digest(secret.as_bytes()))
        );
        assert_eq!(new.record.secret_hash.len(), 64);
        assert!(!new
            .record
            .secret_hash
            .bytes()
            .any(|b| b.is_ascii_uppercase()));
        verify(&new.record, secret, NOW).unwrap();
        assert_eq!(prefix(id), format!("themis_{id}"));
        assert!(new.key.starts_with(&prefix(id)));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let new = generate("alice", "ci", None, NOW);
        let (_, secret) = parse(&new.key).unwrap();
        let mut wrong = secret.to_string();
        let last = if wrong.ends_with('a') { "b" } else { "a" };
        wrong.replace_range(39.., last);
        let err = verify(&new.record, &wrong, NOW).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(!err.contains(secret) && !err.contains(&wrong));
        assert!(verify(&new.record, "", NOW).is_err());
        // Another key's secret does not open this one.
        let other = generate("alice", "ci", None, NOW);
        assert!(verify(&new.record, parse(&other.key).unwrap().1, NOW).is_err());
    }

    #[test]
    fn revoked_key_is_refused() {
        let mut new = generate("alice", "ci", None, NOW);
        new.record.revoked_at_ms = Some(NOW + 1);
        let (id, secret) = parse(&new.key).unwrap();
        let err = verify(&new.record, secret, NOW + 2).unwrap_err();
        assert_eq!(err, format!("API key themis_{id} was revoked"));
    }

    #[test]
    fn expired_key_is_refused() {
        let new = generate("alice", "ci", Some(NOW + 1000), NOW);
        let (id, secret) = parse(&new.key).unwrap();
        verify(&new.record, secret, NOW + 999).unwrap();
        let err = verify(&new.record, secret, NOW + 1000).unwrap_err();
        assert_eq!(
            err,
            format!(
                "API key themis_{id} expired at {}; create a new one with `themisdb apikey create`",
                NOW + 1000
            )
        );
    }

    #[test]
    fn wrong_secret_is_reported_before_revocation_or_expiry() {
        let mut new = generate("alice", "ci", Some(NOW), NOW);
        new.record.revoked_at_ms = Some(NOW);
        let err = verify(&new.record, &"x".repeat(40), NOW + 1).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn damaged_stored_hash_is_an_error() {
        let mut new = generate("alice", "ci", None, NOW);
        let (_, secret) = parse(&new.key).unwrap();
        new.record.secret_hash = "zz".into();
        assert!(verify(&new.record, secret, NOW)
            .unwrap_err()
            .contains("damaged"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = generate("alice", "ci", None, NOW).key;
        let id = &good[7..19];
        let secret = &good[20..];
        let cases = [
            String::new(),
            format!("themos_{id}_{secret}"),
            format!("Themis_{id}_{secret}"),
            format!("{id}_{secret}"),
            // truncated
            good[..good.len() - 1].to_string(),
            // short id
            format!("themis_{}_{secret}x", &id[..11]),
            // upper-case or non-hex id
            format!(
                "themis_{}_{secret}",
                id.to_uppercase().replace(char::is_numeric, "A")
            ),
            format!("themis_{}g_{secret}", &id[..11]),
            // bad characters in the secret
            format!("themis_{id}_{}-", &secret[..39]),
            format!("themis_{id}_{}é", &secret[..38]),
            // extra underscores
            format!("themis_{id}__{}", &secret[..39]),
            format!("themis_{id}_{}_{}", &secret[..20], &secret[21..]),
            format!("themis__{}_{secret}", &id[..11]),
            // surrounding whitespace
            format!("{good}\n"),
            format!(" {}", &good[..good.len() - 1]),
        ];
        for case in &cases {
            let err = parse(case).expect_err(case);
            assert!(
                err.contains("an API key looks like themis_<12 hex>_"),
                "{case:?}: {err}"
            );
            assert!(!err.contains(secret), "{err}");
        }
        assert!(parse(&good).is_ok());
    }

    #[test]
    fn two_keys_differ() {
        let a = generate("alice", "ci", None, NOW);
        let b = generate("alice", "ci", None, NOW);
        assert_ne!(a.key, b.key);
        assert_ne!(a.record.id, b.record.id);
        assert_ne!(a.record.secret_hash, b.record.secret_hash);
    }

    #[test]
    fn secret_never_appears_in_the_record() {
        let new = generate("alice", "ci", Some(NOW + 1), NOW);
        let (_, secret) = parse(&new.key).unwrap();
        let debug = format!("{:?}", new.record);
        assert!(!debug.contains(secret), "{debug}");
        let json = serde_json::to_string(&new.record).unwrap();
        assert!(!json.contains(secret), "{json}");
        let debug = format!("{new:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains(&prefix(&new.record.id)));
    }
}
