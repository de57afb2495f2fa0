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

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::catalog::{
    coll_docs_prefix, corrupt, doc_key, now_ms, read_collection, read_indexes, require_database,
};
use crate::changes::{ChangeFeed, ChangeKind, ChangeRecord};
use crate::document::{
    check_input, compose, parse_object, prepare_insert, rev_of, serialize_map, stored_rev,
    updated_attrs, PreparedDoc, SYSTEM_ATTRS,
};
use crate::error::{KvError, Result, StorageError};
use crate::group_commit::{GroupCommitter, Pending};
use crate::index::{
    entry_keys, scan_bounds, update_entries, DocView, IndexInfo, IndexRange, IndexedCollection,
};
use crate::kv::{KvRead, KvTx, Space};
use crate::names::{validate_key, validate_lookup_name, validate_name};
use crate::overlay::{Overlay, TxCore, TxReader};
use crate::query::{query_collection_not_found, CollectionHandle, DocIter};
use crate::request_keys::{self, RequestKey};
use crate::revision::{encode_revision, RevisionClock};
use crate::store::{new_collection, DeleteOutcome, DocMeta};
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

/// `db`/`coll` inside `tx`, created (as part of `tx`) when it is missing and
/// `auto_create` is set; else `NotFound` (`missing` builds the message).
pub(crate) fn resolve_collection(
    tx: &mut dyn KvTx,
    db: &str,
    coll: &str,
    auto_create: bool,
    missing: fn(&str, &str) -> StorageError,
) -> Result<IndexedCollection> {
    if let Some(c) = load_collection(&*tx, db, coll)? {
        return Ok(c);
    }
    if !auto_create {
        return Err(missing(db, coll));
    }
    validate_name("collection", coll)?;
    let d = require_database(&*tx, db)?;
    let entry = new_collection(tx, d.id, coll)?;
    Ok(IndexedCollection {
        handle: CollectionHandle {
            db: db.to_string(),
            name: coll.to_string(),
            db_id: d.id,
            coll_id: entry.id,
        },
        indexes: Vec::new(),
    })
}

/// Checks and prepares the documents of an insert; a failure names the document's
/// position in the batch.
pub(crate) fn prepare_docs(docs: &[Bytes]) -> Result<Vec<PreparedDoc>> {
    let count = docs.len();
    docs.iter()
        .enumerate()
        .map(|(i, raw)| {
            prepare_insert(raw).map_err(|m| StorageError::InvalidArgument(in_batch(count, i, m)))
        })
        .collect()
}

/// Prefixes `msg` with the position of a document in a batch of more than one.
pub(crate) fn in_batch(count: usize, index: usize, msg: String) -> String {
    if count > 1 {
        format!("document at position {index} of the batch (counting from 0): {msg}")
    } else {
        msg
    }
}

/// Inserts checked documents in order; a failure names the document's position.
pub(crate) fn insert_batch(
    tx: &mut dyn KvTx,
    clock: &RevisionClock,
    c: &IndexedCollection,
    docs: &[PreparedDoc],
    changes: &mut Vec<ChangeRecord>,
) -> Result<Vec<DocMeta>> {
    let count = docs.len();
    let mut metas = Vec::with_capacity(count);
    for (i, p) in docs.iter().enumerate() {
        let (key, rev) = insert_doc(tx, clock, c, p, None, changes).map_err(|e| match e {
            StorageError::Conflict(m) => StorageError::Conflict(in_batch(count, i, m)),
            other => other,
        })?;
        metas.push(DocMeta { key, rev });
    }
    Ok(metas)
}

/// Deletes `keys` (each once); missing ones are reported, not an error.
pub(crate) fn delete_keys(
    tx: &mut dyn KvTx,
    c: &IndexedCollection,
    keys: &[String],
    if_revision: Option<&str>,
    changes: &mut Vec<ChangeRecord>,
) -> Result<DeleteOutcome> {
    let mut outcome = DeleteOutcome::default();
    let mut seen = HashSet::with_capacity(keys.len());
    for key in keys {
        // A key listed twice is deleted once and not reported missing.
        if !seen.insert(key.as_str()) {
            continue;
        }
        match remove_doc(tx, c, key, if_revision, changes)? {
            None => outcome.not_found.push(key.clone()),
            Some(_) => outcome.deleted += 1,
        }
    }
    Ok(outcome)
}

fn parse_attrs(raw: &[u8]) -> Result<Map<String, Value>> {
    parse_object(raw).map_err(|m| corrupt("a stored document", m))
}

/// Inserts one checked document; returns its `_key` and `_rev`, and records the
/// change in `changes`. `attrs` are the document's user attributes when the caller has
/// them parsed (else they are parsed from `p.rest` if an index needs them).
pub(crate) fn insert_doc(
    tx: &mut dyn KvTx,
    clock: &RevisionClock,
    c: &IndexedCollection,
    p: &PreparedDoc,
    attrs: Option<&Map<String, Value>>,
    changes: &mut Vec<ChangeRecord>,
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
    let stored = compose(&h.name, &key, &rev, &p.rest);
    tx.put(Space::Docs, &dk, stored.clone())?;
    changes.push(ChangeRecord::new(
        h.db_id,
        ChangeKind::Insert,
        &h.name,
        &key,
        &rev,
        stored,
    ));
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

/// Updates document `key` (merge or replace) and records the change; `NotFound` if it
/// does not exist.
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
    changes: &mut Vec<ChangeRecord>,
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
    let new = compose(&h.name, key, &rev, &rest);
    tx.put(Space::Docs, &dk, new.clone())?;
    changes.push(ChangeRecord::new(
        h.db_id,
        ChangeKind::Update,
        &h.name,
        key,
        &rev,
        new,
    ));
    Ok(Updated {
        rev,
        old: stored,
        new_attrs,
    })
}

/// Removes document `key` and records the change; returns the stored bytes, or `None`
/// if it did not exist.
pub(crate) fn remove_doc(
    tx: &mut dyn KvTx,
    c: &IndexedCollection,
    key: &str,
    if_revision: Option<&str>,
    changes: &mut Vec<ChangeRecord>,
) -> Result<Option<Bytes>> {
    let h = &c.handle;
    let dk = doc_key(h.db_id, h.coll_id, key);
    let Some(stored) = tx.get(Space::Docs, &dk)? else {
        return Ok(None);
    };
    let rev = stored_rev(&stored).map_err(|m| corrupt("a stored document", m))?;
    if let Some(expected) = if_revision {
        if rev != expected {
            return Err(revision_mismatch(&h.name, key, expected, &rev));
        }
    }
    if !c.indexes.is_empty() {
        let attrs = parse_attrs(&stored)?;
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
    changes.push(ChangeRecord::new(
        h.db_id,
        ChangeKind::Delete,
        &h.name,
        key,
        &rev,
        stored.clone(),
    ));
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

/// One transaction for the writes of a query, or of an interactive transaction
/// ([`crate::Transaction`]). See the module doc.
///
/// `Send`, so it can move to the thread that commits. Reads (`get`, `scan`,
/// `index_keys`) see the transaction's own earlier writes and join its read set: if
/// another writer changes what this transaction read before it commits, the commit
/// fails with [`StorageError::Contended`] and nothing is written. Dropping it without
/// committing discards every write. Every write is also recorded as a change, which
/// the change log numbers when the transaction commits.
pub struct WriteTx {
    /// Shared with the readers of SERIALIZABLE statements ([`TxReader`]); `None` once
    /// committed.
    core: Arc<Mutex<Option<TxCore>>>,
    clock: Arc<RevisionClock>,
    committer: Arc<GroupCommitter>,
    feed: Arc<ChangeFeed>,
    collections: Vec<IndexedCollection>,
    changes: Vec<ChangeRecord>,
    read_only: bool,
    /// Set when the engine failed mid-operation: the transaction may hold half an
    /// operation and must not commit.
    broken: bool,
}

fn lock(core: &Mutex<Option<TxCore>>) -> MutexGuard<'_, Option<TxCore>> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

fn finished() -> StorageError {
    StorageError::Transaction(
        "the transaction has already been committed; begin a new one".to_string(),
    )
}

fn read_only_error() -> StorageError {
    StorageError::Transaction(
        "this transaction is read-only: begin one without read_only to write".to_string(),
    )
}

/// Runs `f` on the engine transaction inside `core`.
fn on_core<T>(core: &Mutex<Option<TxCore>>, f: impl FnOnce(&mut TxCore) -> Result<T>) -> Result<T> {
    let mut guard = lock(core);
    let core = guard.as_mut().ok_or_else(finished)?;
    f(core)
}

impl WriteTx {
    /// `record` keeps the writes in an overlay for untracked reads (see `overlay.rs`).
    pub(crate) fn new(
        tx: Box<dyn KvTx>,
        clock: Arc<RevisionClock>,
        committer: Arc<GroupCommitter>,
        feed: Arc<ChangeFeed>,
        record: bool,
        read_only: bool,
    ) -> WriteTx {
        WriteTx {
            core: Arc::new(Mutex::new(Some(TxCore::new(tx, record)))),
            clock,
            committer,
            feed,
            collections: Vec::new(),
            changes: Vec::new(),
            read_only,
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

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        Ok(())
    }

    /// Whether an engine failure left the transaction unable to commit.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bytes of the changes recorded from position `from` on (documents and keys):
    /// what the transaction holds in memory until it commits, about three times over
    /// (engine buffer, overlay, change records).
    pub(crate) fn change_bytes_since(&self, from: usize) -> usize {
        self.changes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|c| c.document.len() + c.key.len() + c.collection.len() + 64)
            .sum()
    }

    /// How many changes the transaction recorded so far.
    pub(crate) fn change_count(&self) -> usize {
        self.changes.len()
    }

    /// How many engine writes (documents and index entries) the transaction made.
    pub(crate) fn writes(&self) -> u64 {
        lock(&self.core).as_ref().map_or(0, TxCore::writes)
    }

    /// The transaction's writes so far, frozen, when it records them.
    pub(crate) fn overlay(&self) -> Option<Arc<Overlay>> {
        lock(&self.core).as_ref().and_then(TxCore::overlay)
    }

    /// A reader whose reads go through this transaction (tracked).
    pub(crate) fn reader(&self) -> TxReader {
        TxReader {
            core: self.core.clone(),
        }
    }

    /// Resolves `db`/`name` in this transaction, creating the collection (as part of
    /// the transaction) when it is missing and `auto_create` is set.
    pub fn collection(
        &mut self,
        db: &str,
        name: &str,
        auto_create: bool,
    ) -> Result<CollectionHandle> {
        let i = self.cached(db, name, auto_create, query_collection_not_found)?;
        Ok(self.collections[i].handle.clone())
    }

    /// Position of `db`/`name` in the cache, resolving it in this transaction first.
    pub(crate) fn cached(
        &mut self,
        db: &str,
        name: &str,
        auto_create: bool,
        missing: fn(&str, &str) -> StorageError,
    ) -> Result<usize> {
        if let Some(i) = self
            .collections
            .iter()
            .position(|c| c.handle.db == db && c.handle.name == name)
        {
            return Ok(i);
        }
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", name)?;
        let creates = auto_create && !self.read_only;
        let r = on_core(&self.core, |tx| {
            resolve_collection(tx, db, name, creates, missing)
        });
        let c = self.track(r)?;
        self.collections.push(c);
        Ok(self.collections.len() - 1)
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
        let loaded = on_core(&self.core, |tx| load_collection(&*tx, &c.db, &c.name));
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
        let r = on_core(&self.core, |tx| {
            tx.get(Space::Docs, &doc_key(c.db_id, c.coll_id, key))
                .map_err(StorageError::from)
                .and_then(|v| v.map(|raw| stored_value(&raw)).transpose())
        });
        self.track(r)
    }

    /// Every document of `c` in `_key` order, as of the moment of the call (this
    /// transaction's writes up to then included). The scanned range joins the read
    /// set.
    pub fn scan(&self, c: &CollectionHandle) -> DocIter {
        let prefix = coll_docs_prefix(c.db_id, c.coll_id);
        match lock(&self.core).as_ref() {
            Some(tx) => {
                let iter = tx.scan_prefix(Space::Docs, &prefix);
                Box::new(iter.map(|item| item.map(|(_, v)| v).map_err(Into::into)))
            }
            None => Box::new(std::iter::once(Err(finished()))),
        }
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
        let entries = match lock(&self.core).as_ref() {
            Some(tx) => tx.scan_range(
                Space::Index,
                lower.as_ref().map(Vec::as_slice),
                upper.as_ref().map(Vec::as_slice),
                reverse,
            ),
            None => return Box::new(std::iter::once(Err(finished()))),
        };
        Box::new(entries.map(|item| {
            let (_, key) = item?;
            String::from_utf8(key.to_vec()).map_err(|e| corrupt("an index entry", e))
        }))
    }

    /// Inserts `doc` (a JSON object; `_key` optional, `_id`/`_rev` ignored) and
    /// returns the new document with its system attributes.
    pub fn insert(&mut self, c: &CollectionHandle, doc: Value) -> Result<Value> {
        self.writable()?;
        let Value::Object(mut attrs) = doc else {
            return Err(StorageError::InvalidArgument(
                "a document to insert must be a JSON object".to_string(),
            ));
        };
        let key = check_input(&mut attrs).map_err(StorageError::InvalidArgument)?;
        let rest = serialize_map(&attrs).map_err(StorageError::InvalidArgument)?;
        let prepared = PreparedDoc { key, rest };
        let i = self.slot(c)?;
        let (clock, coll, changes) = (&self.clock, &self.collections[i], &mut self.changes);
        let r = on_core(&self.core, |tx| {
            insert_doc(tx, clock, coll, &prepared, Some(&attrs), changes)
        });
        let (key, rev) = self.track(r)?;
        Ok(full_document(&c.name, &key, &rev, attrs))
    }

    /// Inserts checked documents into the cached collection `i`. On an error the
    /// documents before the failing one stay written: drop (or abort) the transaction.
    pub(crate) fn insert_prepared(
        &mut self,
        i: usize,
        docs: &[PreparedDoc],
    ) -> Result<Vec<DocMeta>> {
        self.writable()?;
        let (clock, coll, changes) = (&self.clock, &self.collections[i], &mut self.changes);
        let r = on_core(&self.core, |tx| {
            insert_batch(tx, clock, coll, docs, changes)
        });
        self.track(r)
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
        let updated = self.update_cached(i, key, patch, mode, keep_null, None)?;
        let old = stored_value(&updated.old)?;
        Ok((
            old,
            full_document(&c.name, key, &updated.rev, updated.new_attrs),
        ))
    }

    /// [`update_doc`] on the cached collection `i`.
    pub(crate) fn update_cached(
        &mut self,
        i: usize,
        key: &str,
        patch: Map<String, Value>,
        mode: UpdateMode,
        keep_null: bool,
        if_revision: Option<&str>,
    ) -> Result<Updated> {
        self.writable()?;
        let (clock, coll, changes) = (&self.clock, &self.collections[i], &mut self.changes);
        let r = on_core(&self.core, |tx| {
            update_doc(
                tx,
                clock,
                coll,
                key,
                patch,
                mode,
                keep_null,
                if_revision,
                changes,
            )
        });
        self.track(r)
    }

    /// Removes document `key` and returns it as it was; `NotFound` if it does not
    /// exist.
    pub fn remove(&mut self, c: &CollectionHandle, key: &str) -> Result<Value> {
        self.writable()?;
        validate_key(key)?;
        let i = self.slot(c)?;
        let (coll, changes) = (&self.collections[i], &mut self.changes);
        let r = on_core(&self.core, |tx| remove_doc(tx, coll, key, None, changes));
        match self.track(r)? {
            Some(old) => stored_value(&old),
            None => Err(document_not_found(c, key)),
        }
    }

    /// [`delete_keys`] on the cached collection `i`.
    pub(crate) fn delete_cached(
        &mut self,
        i: usize,
        keys: &[String],
        if_revision: Option<&str>,
    ) -> Result<DeleteOutcome> {
        self.writable()?;
        let (coll, changes) = (&self.collections[i], &mut self.changes);
        let r = on_core(&self.core, |tx| {
            delete_keys(tx, coll, keys, if_revision, changes)
        });
        self.track(r)
    }

    /// Commits every write of the transaction, all or nothing, numbering its changes
    /// in the change log. A conflict with a concurrent writer is
    /// [`StorageError::Contended`] (nothing was written; run it again). Await the
    /// returned [`Pending`] for durability.
    pub fn commit(self) -> Result<Pending<()>> {
        let core = self.take_for_commit()?;
        Self::commit_tx(&self.feed, &self.committer, core.into_inner(), self.changes)
    }

    /// The transaction's state, taken to commit it: refused when a storage operation
    /// in it failed, or when it was committed or rolled back already.
    fn take_for_commit(&self) -> Result<TxCore> {
        if self.broken {
            return Err(StorageError::Internal(
                "the transaction was not committed because a storage operation in it failed; \
                 check the server log, then run it again"
                    .to_string(),
            ));
        }
        lock(&self.core).take().ok_or_else(finished)
    }

    /// [`Self::commit`] made idempotent by `rk`: when `rk` already has a live record,
    /// nothing of this transaction is applied (it is rolled back) and the answer is the
    /// stored response; else the record holding `response` is written in the commit's
    /// engine transaction, so it exists exactly when the commit does. The record is
    /// read through the engine transaction: a concurrent commit that records the same
    /// key makes this one conflict (see `request_keys.rs`).
    ///
    /// A transaction that wrote nothing commits as is, with no record: there is
    /// nothing to apply twice, and recording the key would make it a writing
    /// transaction, which a SERIALIZABLE one could then lose to a conflict over what it
    /// read.
    pub fn commit_keyed(self, rk: &RequestKey, response: Bytes) -> Result<Pending<Bytes>> {
        if self.changes.is_empty() {
            let done = self.commit()?;
            return Ok(Pending {
                value: response,
                ticket: done.ticket,
            });
        }
        let core = self.take_for_commit()?;
        let mut tx = core.into_inner();
        let now = now_ms();
        let before = request_keys::existing(tx.as_ref(), rk, now)?;
        if let request_keys::Existing::Live(stored) = before {
            drop(tx);
            return Ok(self.committer.pending(stored));
        }
        request_keys::record(tx.as_mut(), rk, &response, now, &before)?;
        let done = Self::commit_tx(&self.feed, &self.committer, tx, self.changes)?;
        Ok(Pending {
            value: response,
            ticket: done.ticket,
        })
    }

    fn commit_tx(
        feed: &ChangeFeed,
        committer: &GroupCommitter,
        tx: Box<dyn KvTx>,
        changes: Vec<ChangeRecord>,
    ) -> Result<Pending<()>> {
        match feed.commit(tx, changes) {
            Ok(()) => Ok(committer.pending(())),
            Err(KvError::Conflict) => Err(StorageError::Contended(
                "the transaction conflicted with a concurrent transaction that changed data \
                 it read or wrote; nothing was written: run it again"
                    .to_string(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
