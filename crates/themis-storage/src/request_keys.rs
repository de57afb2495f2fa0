//! Request keys: the records that make a write idempotent (ADR 0007,
//! `docs/protocol.md`, "Request keys").
//!
//! A write that carries a request key stores, **in its own engine transaction**, a
//! record of the response it produced. A later request with the same (user, key) finds
//! the record and gets the stored response back instead of running again. Because the
//! record commits with the write, a crash (`kill -9`) leaves both or neither.
//!
//! `Meta` key layout (the tags join those of `catalog.rs`):
//! * `X` + user length (u16 BE) + user + request key → expiry (u64 BE, ms since the
//!   epoch) + the encoded response. The length prefix keeps (user, key) pairs apart
//!   whatever bytes a user name holds.
//! * `Y` + expiry (u64 BE) + user length (u16 BE) + user + request key → empty: the
//!   same record in expiry order. The sweep reads this index from its start up to
//!   "now", so it only ever touches expired records, never scans live ones. Both are
//!   written (and an overwritten record's old `Y` entry deleted) in one transaction.
//!
//! Atomicity against a concurrent request with the same key: the keyed write reads
//! the `X` record with the transaction's `get` (fjall's optimistic transactions add it
//! to the read set) before doing anything, and writes it before committing. Of two
//! transactions that both found no record, the first to commit wins; the second's read
//! of the `X` key was invalidated by that commit, so its commit conflicts, applies
//! nothing, and `run_doc_tx` reruns it: this time it finds the record and answers with
//! the stored response. So two requests with the same key never both apply.

use std::ops::Bound;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::catalog::corrupt;
use crate::error::{Result, StorageError};
use crate::kv::{KvRead, KvTx, Space};

/// Longest request key, in bytes.
pub const MAX_REQUEST_KEY_LEN: usize = 64;

pub(crate) const REQUEST_KEY_TAG: u8 = b'X';
pub(crate) const REQUEST_KEY_EXPIRY_TAG: u8 = b'Y';

/// Checks a request key: 1-64 bytes of printable ASCII (`!` to `~`, and space).
pub fn validate_request_key(key: &str) -> Result<()> {
    let rule = "a request_key is 1-64 bytes of printable ASCII (0x20-0x7E); a random \
                128-bit value in hex or base64 fits";
    if key.is_empty() {
        return Err(StorageError::InvalidArgument(format!(
            "the request_key is empty: {rule}"
        )));
    }
    if key.len() > MAX_REQUEST_KEY_LEN {
        return Err(StorageError::InvalidArgument(format!(
            "the request_key is {} bytes long: {rule}",
            key.len()
        )));
    }
    if let Some((i, c)) = key.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
        return Err(StorageError::InvalidArgument(format!(
            "the request_key has {c:?} at byte {i}: {rule}"
        )));
    }
    Ok(())
}

/// An idempotent write's identity: the user it belongs to (not the session: a
/// client that logs in again after a crash keeps its keys), the key, and how long
/// its record lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    user: String,
    key: String,
    window_ms: u64,
}

impl RequestKey {
    /// A checked request key of `user` (see [`validate_request_key`]); its record
    /// lives for `window`.
    pub fn new(user: &str, key: &str, window: Duration) -> Result<RequestKey> {
        validate_request_key(key)?;
        if user.len() > usize::from(u16::MAX) {
            return Err(StorageError::InvalidArgument(
                "the user name is too long for a request key".to_string(),
            ));
        }
        Ok(RequestKey {
            user: user.to_string(),
            key: key.to_string(),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The user the key belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The key as sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `user length | user | key`, shared by both records.
    fn scope(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + self.user.len() + self.key.len());
        k.extend_from_slice(&(self.user.len() as u16).to_be_bytes());
        k.extend_from_slice(self.user.as_bytes());
        k.extend_from_slice(self.key.as_bytes());
        k
    }

    /// The `X` key of the record.
    pub(crate) fn record_key(&self) -> Vec<u8> {
        let mut k = vec![REQUEST_KEY_TAG];
        k.extend_from_slice(&self.scope());
        k
    }

    /// The `Y` key of the record's expiry index entry.
    pub(crate) fn expiry_key(&self, expires_at_ms: u64) -> Vec<u8> {
        expiry_key(expires_at_ms, &self.scope())
    }
}

fn expiry_key(expires_at_ms: u64, scope: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + scope.len());
    k.push(REQUEST_KEY_EXPIRY_TAG);
    k.extend_from_slice(&expires_at_ms.to_be_bytes());
    k.extend_from_slice(scope);
    k
}

/// A stored record: expiry and response.
fn decode_record(raw: &Bytes) -> Result<(u64, Bytes)> {
    let head: [u8; 8] = raw
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| corrupt("a request key record", format!("{} bytes", raw.len())))?;
    Ok((u64::from_be_bytes(head), raw.slice(8..)))
}

fn encode_record(expires_at_ms: u64, response: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + response.len());
    b.put_u64(expires_at_ms);
    b.put_slice(response);
    b.freeze()
}

/// The stored response of `rk`, if its record is still live at `now_ms`. Inside a
/// transaction the read joins the read set (see the module doc).
pub(crate) fn lookup<R: KvRead + ?Sized>(
    r: &R,
    rk: &RequestKey,
    now_ms: u64,
) -> Result<Option<Bytes>> {
    match existing(r, rk, now_ms)? {
        Existing::Live(response) => Ok(Some(response)),
        Existing::Expired(_) | Existing::Absent => Ok(None),
    }
}

/// What the record of a key says at a time.
pub(crate) enum Existing {
    Absent,
    /// Live: the stored response.
    Live(Bytes),
    /// Expired at this time (its expiry index entry may still exist).
    Expired(u64),
}

/// The record of `rk` as of `now_ms` (one point read).
pub(crate) fn existing<R: KvRead + ?Sized>(
    r: &R,
    rk: &RequestKey,
    now_ms: u64,
) -> Result<Existing> {
    match r.get(Space::Meta, &rk.record_key())? {
        None => Ok(Existing::Absent),
        Some(raw) => {
            let (expires, response) = decode_record(&raw)?;
            Ok(if expires > now_ms {
                Existing::Live(response)
            } else {
                Existing::Expired(expires)
            })
        }
    }
}

/// Writes the record of `rk` with `response` into `tx`, live until `now_ms` plus the
/// key's window. `before` is what [`existing`] read in the same transaction: an
/// expired record under the same key is replaced, its expiry entry removed.
pub(crate) fn record(
    tx: &mut dyn KvTx,
    rk: &RequestKey,
    response: &[u8],
    now_ms: u64,
    before: &Existing,
) -> Result<()> {
    let key = rk.record_key();
    if let Existing::Expired(old_expiry) = before {
        tx.delete(Space::Meta, &rk.expiry_key(*old_expiry))?;
    }
    let expires = now_ms.saturating_add(rk.window_ms).max(now_ms + 1);
    tx.put(Space::Meta, &key, encode_record(expires, response))?;
    tx.put(Space::Meta, &rk.expiry_key(expires), Bytes::new())?;
    Ok(())
}

/// Deletes up to `limit` records that expired at or before `now_ms`, inside `tx`,
/// reading only the expiry index up to `now_ms`. Returns how many it deleted.
pub(crate) fn sweep(tx: &mut dyn KvTx, now_ms: u64, limit: usize) -> Result<usize> {
    let lower = [REQUEST_KEY_EXPIRY_TAG];
    let upper = expiry_key(now_ms.saturating_add(1), &[]);
    let mut entries = Vec::new();
    for item in tx
        .scan_range(
            Space::Meta,
            Bound::Included(&lower[..]),
            Bound::Excluded(&upper[..]),
            false,
        )
        .take(limit)
    {
        entries.push(item?.0);
    }
    for entry in &entries {
        let (expires, scope) = entry
            .get(1..9)
            .and_then(|e| <[u8; 8]>::try_from(e).ok())
            .map(|e| (u64::from_be_bytes(e), &entry[9..]))
            .ok_or_else(|| corrupt("a request key expiry entry", "too short"))?;
        let mut record_key = vec![REQUEST_KEY_TAG];
        record_key.extend_from_slice(scope);
        // The record may have been replaced since (a new write with the same key once
        // this one had expired); only the record this entry indexes is deleted.
        if let Some(raw) = tx.get(Space::Meta, &record_key)? {
            let (record_expires, _) = decode_record(&raw)?;
            if record_expires == expires {
                tx.delete(Space::Meta, &record_key)?;
            }
        }
        tx.delete(Space::Meta, entry)?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_rule() {
        assert!(validate_request_key("a").is_ok());
        assert!(validate_request_key(&"k".repeat(64)).is_ok());
        assert!(validate_request_key("with space ~!").is_ok());
        for bad in ["", &"k".repeat(65), "tab\there", "é", "nul\0"] {
            let e = validate_request_key(bad).unwrap_err().to_string();
            assert!(e.contains("1-64 bytes of printable ASCII"), "{bad:?}: {e}");
        }
        assert!(RequestKey::new("u", "", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn layout_keeps_scopes_apart_and_orders_by_expiry() {
        let w = Duration::from_secs(60);
        let a = RequestKey::new("ab", "c", w).unwrap();
        let b = RequestKey::new("a", "bc", w).unwrap();
        assert_ne!(a.record_key(), b.record_key());
        assert_eq!(a.record_key()[0], b'X');
        assert_eq!(&a.record_key()[1..3], &[0, 2]);
        assert_eq!(&a.record_key()[3..], b"abc");
        // Expiry entries sort by time first, whatever the user or key.
        assert!(b.expiry_key(1) < a.expiry_key(2));
        assert!(a.expiry_key(255) < b.expiry_key(256));
        assert_eq!(a.expiry_key(7)[0], b'Y');
        assert_eq!(&a.expiry_key(7)[9..], &a.record_key()[1..]);
    }

    #[test]
    fn records_round_trip() {
        let r = encode_record(42, b"resp");
        assert_eq!(
            decode_record(&r).unwrap(),
            (42, Bytes::from_static(b"resp"))
        );
        assert!(decode_record(&Bytes::from_static(b"short")).is_err());
    }
}
