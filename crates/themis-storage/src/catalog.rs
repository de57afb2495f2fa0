//! Key layout of the store and the catalog records.
//!
//! `Meta` space (first byte is the record type):
//! * `D` + database name → [`DatabaseEntry`] (JSON)
//! * `C` + db id (u64 BE) + collection name → [`CollectionEntry`] (JSON)
//! * `S` → next id to hand out (u64 BE); ids are shared by databases and
//!   collections and **never reused**
//! * `R` → the revision clock's reservation (see `revision.rs`)
//! * `U` + user name → `UserRecord` (JSON)
//! * `I` + db id (u64 BE) + collection id (u64 BE) + index name → [`IndexInfo`]
//!   (JSON): a secondary index of that collection; its id comes from the same
//!   never-reused sequence
//! * `P` + prefix → purge marker: documents (`Docs`) and index entries (`Index`) under
//!   that prefix belong to a dropped database or collection and are still being deleted
//!   (for a database, its change log in `Changes` too)
//! * `Q` + prefix → purge marker of a dropped index: `Index` entries under that prefix
//!   are still being deleted
//!
//! `Docs` space: db id (u64 BE) + collection id (u64 BE) + `_key` bytes → the stored
//! document. A collection is a 16-byte prefix, a database an 8-byte prefix.
//!
//! `Index` space: db id + collection id + index id (u64 BE each) + encoded values
//! (+ `_key` for non-unique indexes) → `_key` (see `index.rs`). The first 16 (8)
//! bytes are the same collection (database) prefix as in `Docs`, so one purge marker
//! covers a collection's documents and its index entries.
//!
//! Because ids are never reused, documents and index entries left behind by a drop are
//! unreachable from the catalog the moment the drop commits; the purge marker, written
//! in the same transaction, makes sure they are deleted even if the process dies first
//! (pending purges are finished on the next open).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::index::IndexInfo;
use crate::kv::{KvRead, KvTx, Space};

pub(crate) const DB_TAG: u8 = b'D';
pub(crate) const COLL_TAG: u8 = b'C';
pub(crate) const SEQ_KEY: &[u8] = b"S";
pub(crate) const USER_TAG: u8 = b'U';
pub(crate) const API_KEY_TAG: u8 = b'K';
pub(crate) const PURGE_TAG: u8 = b'P';
pub(crate) const INDEX_TAG: u8 = b'I';
pub(crate) const INDEX_PURGE_TAG: u8 = b'Q';

/// The database that exists from the first start and cannot be dropped.
pub const SYSTEM_DATABASE: &str = "_system";

/// Catalog record of a database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DatabaseEntry {
    pub id: u64,
    pub created_at_ms: u64,
}

/// Catalog record of a collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CollectionEntry {
    pub id: u64,
    pub name: String,
    pub created_at_ms: u64,
}

pub(crate) fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

pub(crate) fn db_key(name: &str) -> Vec<u8> {
    tagged(DB_TAG, name.as_bytes())
}

pub(crate) fn coll_prefix(db_id: u64) -> Vec<u8> {
    tagged(COLL_TAG, &db_id.to_be_bytes())
}

pub(crate) fn coll_key(db_id: u64, name: &str) -> Vec<u8> {
    let mut k = coll_prefix(db_id);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn user_key(name: &str) -> Vec<u8> {
    tagged(USER_TAG, name.as_bytes())
}

pub(crate) fn api_key_key(id: &str) -> Vec<u8> {
    tagged(API_KEY_TAG, id.as_bytes())
}

pub(crate) fn db_docs_prefix(db_id: u64) -> Vec<u8> {
    db_id.to_be_bytes().to_vec()
}

pub(crate) fn coll_docs_prefix(db_id: u64, coll_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&db_id.to_be_bytes());
    k.extend_from_slice(&coll_id.to_be_bytes());
    k
}

pub(crate) fn doc_key(db_id: u64, coll_id: u64, key: &str) -> Vec<u8> {
    let mut k = coll_docs_prefix(db_id, coll_id);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `Meta` prefix of the index catalog records of a database (8 bytes of id) or, with
/// `coll_id`, of one collection.
pub(crate) fn index_catalog_prefix(db_id: u64, coll_id: Option<u64>) -> Vec<u8> {
    let mut k = tagged(INDEX_TAG, &db_id.to_be_bytes());
    if let Some(c) = coll_id {
        k.extend_from_slice(&c.to_be_bytes());
    }
    k
}

pub(crate) fn index_catalog_key(db_id: u64, coll_id: u64, name: &str) -> Vec<u8> {
    let mut k = index_catalog_prefix(db_id, Some(coll_id));
    k.extend_from_slice(name.as_bytes());
    k
}

/// `Index` space prefix of one index's entries.
pub(crate) fn index_entries_prefix(db_id: u64, coll_id: u64, index_id: u64) -> Vec<u8> {
    let mut k = coll_docs_prefix(db_id, coll_id);
    k.extend_from_slice(&index_id.to_be_bytes());
    k
}

/// The secondary indexes of a collection, in creation (id) order. Inside a transaction
/// the scan joins the read set, so an index created or dropped concurrently makes the
/// transaction conflict and rerun with the new set: no write can miss an index.
pub(crate) fn read_indexes<R: KvRead + ?Sized>(
    r: &R,
    db_id: u64,
    coll_id: u64,
) -> Result<Vec<IndexInfo>> {
    let mut out = Vec::new();
    for item in r.scan_prefix(Space::Meta, &index_catalog_prefix(db_id, Some(coll_id))) {
        let (_, v) = item?;
        out.push(decode_json::<IndexInfo>("an index catalog record", &v)?);
    }
    out.sort_by_key(|i| i.id);
    Ok(out)
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(format!(
        "{what} is corrupt ({detail}); restore the data directory from a backup"
    ))
}

pub(crate) fn decode_json<T: for<'de> Deserialize<'de>>(what: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StorageError::Internal(format!("cannot serialize a catalog record: {e}")))
}

/// Hands out the next never-used id, inside `tx` (concurrent allocations conflict
/// and are retried by the caller).
pub(crate) fn allocate_id(tx: &mut dyn KvTx) -> Result<u64> {
    let next = match tx.get(Space::Meta, SEQ_KEY)? {
        None => 1,
        Some(v) => {
            let raw: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("the id sequence record", format!("{} bytes", v.len())))?;
            u64::from_be_bytes(raw)
        }
    };
    let after = next
        .checked_add(1)
        .ok_or_else(|| corrupt("the id sequence record", "exhausted"))?;
    tx.put(
        Space::Meta,
        SEQ_KEY,
        Bytes::copy_from_slice(&after.to_be_bytes()),
    )?;
    Ok(next)
}

pub(crate) fn read_database<R: KvRead + ?Sized>(
    r: &R,
    name: &str,
) -> Result<Option<DatabaseEntry>> {
    match r.get(Space::Meta, &db_key(name))? {
        None => Ok(None),
        Some(v) => decode_json("a database catalog record", &v).map(Some),
    }
}

pub(crate) fn read_collection<R: KvRead + ?Sized>(
    r: &R,
    db_id: u64,
    name: &str,
) -> Result<Option<CollectionEntry>> {
    match r.get(Space::Meta, &coll_key(db_id, name))? {
        None => Ok(None),
        Some(v) => decode_json("a collection catalog record", &v).map(Some),
    }
}

pub(crate) fn database_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!(
        "database '{name}' not found: create it first or connect to an existing one"
    ))
}

pub(crate) fn collection_not_found(db: &str, coll: &str) -> StorageError {
    StorageError::NotFound(format!(
        "collection '{coll}' not found in database '{db}': create it first or enable \
         auto_create_collections"
    ))
}

/// The catalog record of `db`, or NotFound.
pub(crate) fn require_database<R: KvRead + ?Sized>(r: &R, db: &str) -> Result<DatabaseEntry> {
    read_database(r, db)?.ok_or_else(|| database_not_found(db))
}

/// The ids of `db` and `coll`, or NotFound.
pub(crate) fn require_collection<R: KvRead + ?Sized>(
    r: &R,
    db: &str,
    coll: &str,
) -> Result<(DatabaseEntry, CollectionEntry)> {
    let d = require_database(r, db)?;
    let c = read_collection(r, d.id, coll)?.ok_or_else(|| collection_not_found(db, coll))?;
    Ok((d, c))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
