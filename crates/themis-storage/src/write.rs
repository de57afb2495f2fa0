//! Document writes inside a transaction, with their index maintenance — the one code
//! path behind both the opcode writes ([`crate::DocumentStore::insert`], `update`,
//! `delete`) and query writes ([`WriteTx`]).
//!
//! Each operation (`insert_doc`, `update_doc`, `remove_doc`) does all of its checks
//! (existing `_key`, `_rev`, unique indexes) before it writes anything, so an operation
//! that fails with a user error leaves the transaction as it was: a query may carry on
//! after it, and an opcode write simply drops the transaction.
//!
//! [`WriteTx`] is one optimistic transaction for all writes of a query. It reads its
//! own writes, maintains indexes and checks uniqueness exactly like the opcode writes,
//! and commits all or nothing; a conflict at commit is [`StorageError::Contended`], and
//! the caller reruns the whole query.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::catalog::{
    coll_docs_prefix, corrupt, doc_key, read_collection, read_indexes, require_database,
};
use crate::document::{
    check_input, compose, parse_object, rev_of, serialize_map, stored_rev, updated_attrs,
    PreparedDoc, SYSTEM_ATTRS,
};
use crate::error::{KvError, Result, StorageError};
use crate::group_commit::{GroupCommitter, Pending};
use crate::index::{
    entry_keys, scan_bounds, update_entries, DocView, IndexInfo, IndexRange, IndexedCollection,
};
use crate::kv::{KvRead, KvTx, Space};
use crate::names::{validate_key, validate_lookup_name, validate_name};
use crate::query::{query_collection_not_found, CollectionHandle, DocIter};
use crate::revision::{encode_revision, RevisionClock};
use crate::store::new_collection;
use crate::UpdateMode;

/// How many fresh ticks an insert draws for a generated key before giving up.
const MAX_KEY_DRAWS: u32 = 100_000;

/// A stream of document keys (`_key`), from an index scan inside a [`WriteTx`].
pub type KeyIter = Box<dyn Iterator<Item = Result<String>> + Send>;

/// The collection `db`/`coll` with its indexes, read inside `r` (so a concurrent drop
/// of the collection or a change of its indexes makes a transaction conflict).
pub(crate) fn load_collection<R: KvRead + ?Sized>(
    r: &R,
    db: &str,
    coll: &str,
) -> Result<Option<IndexedCollection>> {
    let d = require_database(r, db)?;
    let Some(c) = read_collection(r, d.id, coll)? else {
        return Ok(None);
    };
    let indexes = read_indexes(r, d.id, c.id)?;
    Ok(Some(IndexedCollection {
        handle: CollectionHandle {
            db: db.to_string(),
            name: coll.to_string(),
            db_id: d.id,
            coll_id: c.id,
        },
        indexes,
    }))
}

fn parse_attrs(raw: &[u8]) -> Result<Map<String, Value>> {
    parse_object(raw).map_err(|m| corrupt("a stored document", m))
}

/// Inserts one checked document; returns its `_key` and `_rev`. `attrs` are the
/// document's user attributes when the caller has them parsed (else they are parsed
/// from `p.rest` if an index needs them).
pub(crate) fn insert_doc(
    tx: &mut dyn KvTx,
    clock: &RevisionClock,
    c: &IndexedCollection,
    p: &PreparedDoc,
    attrs: Option<&Map<String, Value>>,
) -> Result<(String, String)> {
    let h = &c.handle;
    let mut tick = clock.tick()?;
    let mut key = p.key.clone().unwrap_or_else(|| tick.to_string());
    let mut dk = doc_key(h.db_id, h.coll_id, &key);
    // A generated key may be taken by one a caller chose (keys that look like
    // timestamps): draw the next tick rather than fail a caller who chose no key. Each
    // draw advances the clock, so this ends.
    //
    // The read also makes a concurrent insert of the same key conflict; it sees this
    // transaction's own earlier writes, so duplicates within a bulk are caught too.
    let mut draws = 0;
    while tx.get(Space::Docs, &dk)?.is_some() {
        if p.key.is_some() || draws == MAX_KEY_DRAWS {
            return Err(StorageError::Conflict(format!(
                "unique constraint violated: document with _key '{key}' already exists in \
                 collection '{}'; choose another _key or update the existing document",
                h.name
            )));
        }
        draws += 1;
        tick = clock.tick()?;
        key = tick.to_string();
        dk = doc_key(h.db_id, h.coll_id, &key);
    }
    let rev = encode_revision(tick);
    if !c.indexes.is_empty() {
        let parsed;
        let attrs = match attrs {
            Some(a) => a,
            None => {
                parsed = parse_attrs(&p.rest)?;
                &parsed
            }
        };
        let view = DocView {
            coll: &h.name,
            key: &key,
            rev: &rev,
            attrs,
        };
        let old = vec![None; c.indexes.len()];
        let new = entry_keys(c, Some(&view));
        update_entries(tx, c, &key, &old, &new, Some(&view))?;
    }
    tx.put(Space::Docs, &dk, compose(&h.name, &key, &rev, &p.rest))?;
    Ok((key, rev))
}

/// The result of [`update_doc`].
pub(crate) struct Updated {
    /// The new `_rev`.
    pub rev: String,
    /// The document as it was (stored bytes).
    pub old: Bytes,
    /// The new user attributes.
    pub new_attrs: Map<String, Value>,
}

pub(crate) fn document_not_found(h: &CollectionHandle, key: &str) -> StorageError {
    StorageError::NotFound(format!(
        "document '{key}' not found in collection '{}' of database '{}'; insert it first",
        h.name, h.db
    ))
}

/// Updates document `key` (merge or replace); `NotFound` if it does not exist.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update_doc(
    tx: &mut dyn KvTx,
    clock: &RevisionClock,
    c: &IndexedCollection,
    key: &str,
    patch: Map<String, Value>,
    mode: UpdateMode,
    keep_null: bool,
    if_revision: Option<&str>,
) -> Result<Updated> {
    let h = &c.handle;
    let dk = doc_key(h.db_id, h.coll_id, key);
    let stored = tx
        .get(Space::Docs, &dk)?
        .ok_or_else(|| document_not_found(h, key))?;
    let current = parse_attrs(&stored)?;
    let old_rev = rev_of(&current).to_string();
    if let Some(expected) = if_revision {
        if old_rev != expected {
            return Err(revision_mismatch(&h.name, key, expected, &old_rev));
        }
    }
    let old_entries = if c.indexes.is_empty() {
        Vec::new()
    } else {
        let view = DocView {
            coll: &h.name,
            key,
            rev: &old_rev,
            attrs: &current,
        };
        entry_keys(c, Some(&view))
    };
    let new_attrs = updated_attrs(current, patch, mode, keep_null);
    let rest = serialize_map(&new_attrs).map_err(StorageError::InvalidArgument)?;
    let rev = encode_revision(clock.tick()?);
    if !c.indexes.is_empty() {
        let view = DocView {
            coll: &h.name,
            key,
            rev: &rev,
            attrs: &new_attrs,
        };
        let new_entries = entry_keys(c, Some(&view));
        update_entries(tx, c, key, &old_entries, &new_entries, Some(&view))?;
    }
    tx.put(Space::Docs, &dk, compose(&h.name, key, &rev, &rest))?;
    Ok(Updated {
        rev,
        old: stored,
        new_attrs,
    })
}

/// Removes document `key`; returns the stored bytes, or `None` if it did not exist.
pub(crate) fn remove_doc(
    tx: &mut dyn KvTx,
    c: &IndexedCollection,
    key: &str,
    if_revision: Option<&str>,
) -> Result<Option<Bytes>> {
    let h = &c.handle;
    let dk = doc_key(h.db_id, h.coll_id, key);
    let Some(stored) = tx.get(Space::Docs, &dk)? else {
        return Ok(None);
    };
    if let Some(expected) = if_revision {
        let actual = stored_rev(&stored).map_err(|m| corrupt("a stored document", m))?;
        if actual != expected {
            return Err(revision_mismatch(&h.name, key, expected, &actual));
        }
    }
    if !c.indexes.is_empty() {
        let attrs = parse_attrs(&stored)?;
        let rev = rev_of(&attrs).to_string();
        let view = DocView {
            coll: &h.name,
            key,
            rev: &rev,
            attrs: &attrs,
        };
        let old = entry_keys(c, Some(&view));
        let new = vec![None; c.indexes.len()];
        update_entries(tx, c, key, &old, &new, None)?;
    }
    tx.delete(Space::Docs, &dk)?;
    Ok(Some(stored))
}

pub(crate) fn revision_mismatch(
    coll: &str,
    key: &str,
    expected: &str,
    actual: &str,
) -> StorageError {
    StorageError::Conflict(format!(
        "revision mismatch for document '{coll}/{key}': expected _rev '{expected}' but the \
         current _rev is '{actual}'; read the document again and retry with its current _rev"
    ))
}

/// A whole document as a JSON value: system attributes first, then `attrs` (whose own
/// system attributes are ignored).
fn full_document(coll: &str, key: &str, rev: &str, attrs: Map<String, Value>) -> Value {
    let mut m = Map::with_capacity(attrs.len() + 3);
    m.insert("_key".to_string(), Value::String(key.to_string()));
    m.insert("_id".to_string(), Value::String(format!("{coll}/{key}")));
    m.insert("_rev".to_string(), Value::String(rev.to_string()));
    for (k, v) in attrs {
        if !SYSTEM_ATTRS.contains(&k.as_str()) {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

fn stored_value(raw: &[u8]) -> Result<Value> {
    serde_json::from_slice(raw).map_err(|e| corrupt("a stored document", e))
}

/// One transaction for all writes of a query. See the module doc.
///
/// `Send`, so it can move to the thread that commits. Reads (`get`, `scan`,
/// `index_keys`) see the transaction's own earlier writes and join its read set: if
/// another writer changes what this transaction read before it commits, the commit
/// fails with [`StorageError::Contended`] and nothing is written. Dropping it without
/// committing discards every write.
pub struct WriteTx {
    tx: Box<dyn KvTx>,
    clock: Arc<RevisionClock>,
    committer: Arc<GroupCommitter>,
    collections: Vec<IndexedCollection>,
    /// Set when the engine failed mid-operation: the transaction may hold half an
    /// operation and must not commit.
    broken: bool,
}

impl WriteTx {
    pub(crate) fn new(
        tx: Box<dyn KvTx>,
        clock: Arc<RevisionClock>,
        committer: Arc<GroupCommitter>,
    ) -> WriteTx {
        WriteTx {
            tx,
            clock,
            committer,
            collections: Vec::new(),
            broken: false,
        }
    }

    /// Notes engine failures (user errors leave the transaction intact).
    fn track<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(StorageError::Internal(_) | StorageError::Unavailable(_)) = &r {
            self.broken = true;
        }
        r
    }

    /// Resolves `db`/`name` in this transaction, creating the collection (as part of
    /// the transaction) when it is missing and `auto_create` is set.
    pub fn collection(
        &mut self,
        db: &str,
        name: &str,
        auto_create: bool,
    ) -> Result<CollectionHandle> {
        if let Some(c) = self
            .collections
            .iter()
            .find(|c| c.handle.db == db && c.handle.name == name)
        {
            return Ok(c.handle.clone());
        }
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", name)?;
        let r = self.resolve(db, name, auto_create);
        let c = self.track(r)?;
        let handle = c.handle.clone();
        self.collections.push(c);
        Ok(handle)
    }

    fn resolve(&mut self, db: &str, name: &str, auto_create: bool) -> Result<IndexedCollection> {
        if let Some(c) = load_collection(self.tx.as_ref(), db, name)? {
            return Ok(c);
        }
        if !auto_create {
            return Err(query_collection_not_found(db, name));
        }
        validate_name("collection", name)?;
        let d = require_database(self.tx.as_ref(), db)?;
        let entry = new_collection(self.tx.as_mut(), d.id, name)?;
        Ok(IndexedCollection {
            handle: CollectionHandle {
                db: db.to_string(),
                name: name.to_string(),
                db_id: d.id,
                coll_id: entry.id,
            },
            indexes: Vec::new(),
        })
    }

    /// Position of `c` in the cache, resolving it in this transaction if needed (a
    /// handle from a snapshot must still name the same collection).
    fn slot(&mut self, c: &CollectionHandle) -> Result<usize> {
        if let Some(i) = self
            .collections
            .iter()
            .position(|k| k.handle.coll_id == c.coll_id && k.handle.db_id == c.db_id)
        {
            return Ok(i);
        }
        let loaded = load_collection(self.tx.as_ref(), &c.db, &c.name);
        let loaded = self.track(loaded)?;
        match loaded {
            Some(k) if k.handle.coll_id == c.coll_id => {
                self.collections.push(k);
                Ok(self.collections.len() - 1)
            }
            _ => Err(query_collection_not_found(&c.db, &c.name)),
        }
    }

    /// The secondary indexes of `c` as this transaction sees them.
    pub fn indexes(&mut self, c: &CollectionHandle) -> Result<Vec<IndexInfo>> {
        let i = self.slot(c)?;
        Ok(self.collections[i].indexes.clone())
    }

    /// The document with `_key` `key`, including this transaction's own writes.
    pub fn get(&mut self, c: &CollectionHandle, key: &str) -> Result<Option<Value>> {
        if validate_key(key).is_err() {
            return Ok(None);
        }
        let r = self
            .tx
            .get(Space::Docs, &doc_key(c.db_id, c.coll_id, key))
            .map_err(StorageError::from)
            .and_then(|v| v.map(|raw| stored_value(&raw)).transpose());
        self.track(r)
    }

    /// Every document of `c` in `_key` order, as of the moment of the call (this
    /// transaction's writes up to then included). The scanned range joins the read
    /// set. To modify documents while scanning, collect the keys first.
    pub fn scan(&self, c: &CollectionHandle) -> DocIter {
        let iter = self
            .tx
            .scan_prefix(Space::Docs, &coll_docs_prefix(c.db_id, c.coll_id));
        Box::new(iter.map(|item| item.map(|(_, v)| v).map_err(Into::into)))
    }

    /// The `_key`s of the documents whose entries in `index` fall into `range`, in
    /// index order (see [`crate::QuerySnapshot::index_scan`]); fetch each with
    /// [`WriteTx::get`]. The scanned range joins the read set.
    pub fn index_keys(
        &self,
        c: &CollectionHandle,
        index: &IndexInfo,
        range: IndexRange,
        reverse: bool,
    ) -> KeyIter {
        let (lower, upper) = match scan_bounds(c, index, &range) {
            Err(e) => return Box::new(std::iter::once(Err(e))),
            Ok(None) => return Box::new(std::iter::empty()),
            Ok(Some(bounds)) => bounds,
        };
        let entries = self.tx.scan_range(
            Space::Index,
            lower.as_ref().map(Vec::as_slice),
            upper.as_ref().map(Vec::as_slice),
            reverse,
        );
        Box::new(entries.map(|item| {
            let (_, key) = item?;
            String::from_utf8(key.to_vec()).map_err(|e| corrupt("an index entry", e))
        }))
    }

    /// Inserts `doc` (a JSON object; `_key` optional, `_id`/`_rev` ignored) and
    /// returns the new document with its system attributes.
    pub fn insert(&mut self, c: &CollectionHandle, doc: Value) -> Result<Value> {
        let Value::Object(mut attrs) = doc else {
            return Err(StorageError::InvalidArgument(
                "a document to insert must be a JSON object".to_string(),
            ));
        };
        let key = check_input(&mut attrs).map_err(StorageError::InvalidArgument)?;
        let rest = serialize_map(&attrs).map_err(StorageError::InvalidArgument)?;
        let prepared = PreparedDoc { key, rest };
        let i = self.slot(c)?;
        let r = insert_doc(
            self.tx.as_mut(),
            &self.clock,
            &self.collections[i],
            &prepared,
            Some(&attrs),
        );
        let (key, rev) = self.track(r)?;
        Ok(full_document(&c.name, &key, &rev, attrs))
    }

    /// Updates document `key` with `patch` (a JSON object); returns the document as it
    /// was and as it is now. `NotFound` if it does not exist. `keep_null` applies to
    /// [`UpdateMode::Merge`]: a `null` in the patch is stored rather than removing the
    /// attribute.
    pub fn update(
        &mut self,
        c: &CollectionHandle,
        key: &str,
        patch: Value,
        mode: UpdateMode,
        keep_null: bool,
    ) -> Result<(Value, Value)> {
        let Value::Object(patch) = patch else {
            return Err(StorageError::InvalidArgument(
                "an update must be a JSON object".to_string(),
            ));
        };
        validate_key(key)?;
        let i = self.slot(c)?;
        let r = update_doc(
            self.tx.as_mut(),
            &self.clock,
            &self.collections[i],
            key,
            patch,
            mode,
            keep_null,
            None,
        );
        let updated = self.track(r)?;
        let old = stored_value(&updated.old)?;
        Ok((
            old,
            full_document(&c.name, key, &updated.rev, updated.new_attrs),
        ))
    }

    /// Removes document `key` and returns it as it was; `NotFound` if it does not
    /// exist.
    pub fn remove(&mut self, c: &CollectionHandle, key: &str) -> Result<Value> {
        validate_key(key)?;
        let i = self.slot(c)?;
        let r = remove_doc(self.tx.as_mut(), &self.collections[i], key, None);
        match self.track(r)? {
            Some(old) => stored_value(&old),
            None => Err(document_not_found(c, key)),
        }
    }

    /// Commits every write of the transaction, all or nothing. A conflict with a
    /// concurrent writer is [`StorageError::Contended`] (nothing was written; run the
    /// query again). Await the returned [`Pending`] for durability.
    pub fn commit(self) -> Result<Pending<()>> {
        if self.broken {
            return Err(StorageError::Internal(
                "the transaction was not committed because a storage operation in it failed; \
                 check the server log, then run the query again"
                    .to_string(),
            ));
        }
        match self.tx.commit() {
            Ok(()) => Ok(self.committer.pending(())),
            Err(KvError::Conflict) => Err(StorageError::Contended(
                "the query's writes conflicted with a concurrent transaction that changed \
                 data the query read; nothing was written: run the query again"
                    .to_string(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
