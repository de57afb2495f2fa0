//! The read side for query execution: one consistent snapshot for a whole query, with
//! streaming scans of collections and secondary indexes.
//!
//! Everything here is synchronous and reads one engine snapshot, so a query sees the
//! store as it was when [`crate::DocumentStore::snapshot`] was called, however long it
//! runs and whatever commits meanwhile. Scans are iterators that own what they need
//! (the snapshot is shared, not borrowed), so they can be moved across threads and
//! hold only what the caller keeps: nothing is materialised up front.

use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::{
    coll_docs_prefix, corrupt, doc_key, read_collection, read_indexes, require_database,
};
use crate::error::{Result, StorageError};
use crate::index::{scan_bounds, IndexInfo, IndexRange};
use crate::kv::{KvSnapshot, Space};
use crate::names::{validate_key, validate_lookup_name};

/// A stream of documents: each item the document's JSON bytes as stored (system
/// attributes `_key`, `_id`, `_rev` first), or the error that ended the stream.
pub type DocIter = Box<dyn Iterator<Item = Result<Bytes>> + Send>;

/// A collection resolved to its ids, valid for the snapshot or transaction that
/// resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollectionHandle {
    /// Database name.
    pub db: String,
    /// Collection name.
    pub name: String,
    /// Database id.
    pub db_id: u64,
    /// Collection id (never reused).
    pub coll_id: u64,
}

pub(crate) fn query_collection_not_found(db: &str, name: &str) -> StorageError {
    StorageError::NotFound(format!(
        "collection '{name}' not found in database '{db}': check the name (list_collections \
         shows the existing ones) or create the collection first"
    ))
}

/// A consistent read-only view of the whole store for one query. `Send + Sync`;
/// dropping it releases the snapshot.
pub struct QuerySnapshot {
    snap: Arc<dyn KvSnapshot>,
}

impl QuerySnapshot {
    pub(crate) fn new(snap: Box<dyn KvSnapshot>) -> QuerySnapshot {
        QuerySnapshot {
            snap: Arc::from(snap),
        }
    }

    /// A view over any reader: a transaction's statement view, say.
    pub(crate) fn shared(snap: Arc<dyn KvSnapshot>) -> QuerySnapshot {
        QuerySnapshot { snap }
    }

    /// Resolves `db`/`name`; `NotFound` when either does not exist in this snapshot.
    pub fn collection(&self, db: &str, name: &str) -> Result<CollectionHandle> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", name)?;
        let d = require_database(self.snap.as_ref(), db)?;
        let c = read_collection(self.snap.as_ref(), d.id, name)?
            .ok_or_else(|| query_collection_not_found(db, name))?;
        Ok(CollectionHandle {
            db: db.to_string(),
            name: name.to_string(),
            db_id: d.id,
            coll_id: c.id,
        })
    }

    /// The collections of `db` in this snapshot, sorted by name.
    pub fn collections(&self, db: &str) -> Result<Vec<crate::CollectionInfo>> {
        crate::store::collections_of(self.snap.as_ref(), db)
    }

    /// The secondary indexes of `c`, in creation order (the primary `_key` index is
    /// implicit and not listed).
    pub fn indexes(&self, c: &CollectionHandle) -> Result<Vec<IndexInfo>> {
        read_indexes(self.snap.as_ref(), c.db_id, c.coll_id)
    }

    /// The document with `_key` `key`, if any. A string that cannot be a key finds
    /// nothing.
    pub fn get(&self, c: &CollectionHandle, key: &str) -> Result<Option<Bytes>> {
        if validate_key(key).is_err() {
            return Ok(None);
        }
        Ok(self
            .snap
            .get(Space::Docs, &doc_key(c.db_id, c.coll_id, key))?)
    }

    /// Every document of `c`, in `_key` order (bytewise).
    pub fn scan(&self, c: &CollectionHandle) -> DocIter {
        let iter = self
            .snap
            .scan_prefix(Space::Docs, &coll_docs_prefix(c.db_id, c.coll_id));
        Box::new(iter.map(|item| item.map(|(_, v)| v).map_err(Into::into)))
    }

    /// The documents of `c` whose entries in `index` fall into `range`, in index order
    /// (ascending, or descending with `reverse`); entries with equal values come in
    /// `_key` order (non-unique indexes). Sparse indexes hold no document with a
    /// `null` or missing value in any of their fields. A range that does not fit the
    /// index (more values than fields) yields one `InvalidArgument` error.
    pub fn index_scan(
        &self,
        c: &CollectionHandle,
        index: &IndexInfo,
        range: IndexRange,
        reverse: bool,
    ) -> DocIter {
        let (lower, upper) = match scan_bounds(c, index, &range) {
            Err(e) => return Box::new(std::iter::once(Err(e))),
            Ok(None) => return Box::new(std::iter::empty()),
            Ok(Some(bounds)) => bounds,
        };
        let entries = self.snap.scan_range(
            Space::Index,
            lower.as_ref().map(Vec::as_slice),
            upper.as_ref().map(Vec::as_slice),
            reverse,
        );
        let snap = self.snap.clone();
        let prefix = coll_docs_prefix(c.db_id, c.coll_id);
        let index_name = index.name.clone();
        Box::new(entries.map(move |item| {
            let (_, key) = item?;
            let mut dk = prefix.clone();
            dk.extend_from_slice(&key);
            snap.get(Space::Docs, &dk)?.ok_or_else(|| {
                corrupt(
                    &format!("index '{index_name}'"),
                    format!(
                        "it lists _key '{}', which has no document",
                        String::from_utf8_lossy(&key)
                    ),
                )
            })
        }))
    }
}
