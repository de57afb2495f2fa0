//! `DocumentStore`: databases, collections and JSON documents on a [`KvEngine`].
//!
//! Shared as `Arc<DocumentStore>` by the server's tokio tasks. Reads are plain
//! synchronous functions on a fresh snapshot. Writes are `async fn`s that run one
//! optimistic transaction synchronously (retrying it on conflict), then await the
//! group commit, so a write is acknowledged only once durable and the awaiting task
//! does not hold a tokio worker during the fsync.
//!
//! Invariants:
//! * every write of a request is one transaction: all of it or none of it;
//! * a write transaction reads the catalog records it depends on, so a concurrent
//!   drop of the database or collection makes it conflict and retry (then fail
//!   cleanly) instead of writing under a dropped id;
//! * read-modify-write operations (update, the unique-key check of insert, id
//!   allocation) retry on conflict, up to [`MAX_TX_ATTEMPTS`] times, so concurrent
//!   updates of one document never lose one another;
//! * a dropped database or collection is gone from the catalog atomically with the
//!   drop; its documents and index entries are then deleted in chunks (see
//!   `catalog.rs` for why a crash in between cannot resurrect them);
//! * document writes go through `write.rs`, which maintains the collection's
//!   secondary indexes in the same transaction (see `index.rs`); `create_index` fills
//!   a new index in one transaction over the whole collection.
//!
//! Costs paid on the calling thread (a tokio worker, for the server): a conflict
//! retry backs off with a sleep of at most a few milliseconds, and the purge after a
//! drop deletes the dropped documents before the drop call returns (in transactions
//! of 1000 deletes, no fsync). Moving purges to a background thread is a later step.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::batch::{BatchWriter, Committing, DocWrite};
use crate::catalog::{
    allocate_id, coll_docs_prefix, coll_key, coll_prefix, collection_not_found, corrupt,
    db_docs_prefix, db_key, decode_json, doc_key, encode_json, index_catalog_key,
    index_catalog_prefix, index_entries_prefix, now_ms, read_collection, read_database,
    read_indexes, require_collection, require_database, tagged, CollectionEntry, DatabaseEntry,
    DB_TAG, INDEX_PURGE_TAG, PURGE_TAG, SYSTEM_DATABASE,
};
use crate::changes::{ChangeFeed, ChangeKind, ChangeRecord};
use crate::document::{parse_object, rev_of, PreparedDoc};
use crate::error::{Result, StorageError};
use crate::fjall_engine::FjallEngine;
use crate::group_commit::{GroupCommitter, Pending, SyncMode, SyncStats};
use crate::index::{
    describe_values, entry_key, validate_index_fields, DocView, IndexInfo, PRIMARY_INDEX_NAME,
};
use crate::kv::{KvEngine, KvRead, KvTx, Space};
use crate::names::{validate_key, validate_lookup_name, validate_name};
use crate::query::{CollectionHandle, QuerySnapshot};
use crate::read_catalog::ReadCatalog;
use crate::request_keys::{self, RequestKey};
use crate::revision::RevisionClock;
use crate::transaction::{Isolation, Transaction};
use crate::write::{
    delete_keys, insert_batch, load_collection, prepare_docs, resolve_collection, update_doc,
    WriteTx,
};
use crate::UpdateMode;

/// How many times a write transaction is attempted before giving up on conflicts.
pub const MAX_TX_ATTEMPTS: u32 = 64;

/// Documents deleted per transaction when purging a dropped collection or database.
const PURGE_CHUNK: usize = 1000;

/// Default block cache size: 64 MiB.
pub const DEFAULT_CACHE_SIZE_BYTES: u64 = 64 * 1024 * 1024;

/// How to open a [`DocumentStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Data directory (created if missing).
    pub path: PathBuf,
    /// When writes are synced before being acknowledged.
    pub sync: SyncMode,
    /// Block cache size in bytes.
    pub cache_size_bytes: u64,
}

impl StoreOptions {
    /// Defaults: [`SyncMode::Always`], a 64 MiB cache.
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            sync: SyncMode::Always,
            cache_size_bytes: DEFAULT_CACHE_SIZE_BYTES,
        }
    }
}

/// A collection as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionInfo {
    /// Collection name.
    pub name: String,
    /// Never-reused numeric id.
    pub id: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl From<CollectionEntry> for CollectionInfo {
    fn from(c: CollectionEntry) -> Self {
        CollectionInfo {
            name: c.name,
            id: c.id,
            created_at_ms: c.created_at_ms,
        }
    }
}

/// Size of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionStats {
    /// Collection name.
    pub name: String,
    /// Number of documents.
    pub count: u64,
    /// Sum of the stored documents' sizes in bytes (JSON, before compression).
    pub data_bytes: u64,
}

/// Identity of a written document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocMeta {
    /// `_key`.
    pub key: String,
    /// The new `_rev`.
    pub rev: String,
}

/// Result of a delete.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DeleteOutcome {
    /// Documents deleted.
    pub deleted: u64,
    /// Keys that named no document (not an error).
    pub not_found: Vec<String>,
}

/// The document store. See the module doc.
pub struct DocumentStore {
    // Declared first so it is dropped first: its thread finishes the queued writes
    // while the group committer still runs.
    batcher: BatchWriter,
    pub(crate) engine: Arc<dyn KvEngine>,
    clock: Arc<RevisionClock>,
    /// The change feed and the group committer live here, shared with the batch
    /// writer.
    commit: Committing,
    read_catalog: ReadCatalog,
}

impl DocumentStore {
    /// Opens the store on fjall in `opts.path`, creating the `_system` database on the
    /// first start and finishing any purge a crash interrupted.
    pub fn open(opts: StoreOptions) -> Result<DocumentStore> {
        std::fs::create_dir_all(&opts.path).map_err(|e| {
            StorageError::Internal(format!(
                "cannot create the data directory {}: {e}; check the path and its permissions",
                opts.path.display()
            ))
        })?;
        let engine = FjallEngine::open(
            &opts.path,
            opts.cache_size_bytes,
            opts.sync == SyncMode::Never,
        )
        .map_err(|e| {
            StorageError::Internal(format!(
                "cannot open the store in {}: {e}; check that no other server uses this \
                 data directory and that it is readable and writable",
                opts.path.display()
            ))
        })?;
        let store = DocumentStore::with_engine(Arc::new(engine), opts.sync)?;
        tracing::info!(path = %opts.path.display(), sync = ?opts.sync, "document store open");
        Ok(store)
    }

    /// Builds the store on any [`KvEngine`].
    pub fn with_engine(engine: Arc<dyn KvEngine>, sync: SyncMode) -> Result<DocumentStore> {
        let clock = Arc::new(RevisionClock::load(engine.clone())?);
        let feed = Arc::new(ChangeFeed::open(engine.clone(), sync == SyncMode::Never)?);
        let committer = Arc::new(GroupCommitter::start(engine.clone(), sync, feed.clone())?);
        let commit = Committing {
            engine: engine.clone(),
            feed,
            committer,
            conflict_retries: Arc::new(AtomicU64::new(0)),
        };
        let store = DocumentStore {
            batcher: BatchWriter::start(commit.clone())?,
            engine,
            clock,
            commit,
            read_catalog: ReadCatalog::default(),
        };
        let created = store.run_tx("creating the _system database", |tx| {
            if read_database(&*tx, SYSTEM_DATABASE)?.is_some() {
                return Ok(false);
            }
            let id = allocate_id(tx)?;
            let entry = DatabaseEntry {
                id,
                created_at_ms: now_ms(),
            };
            tx.put(Space::Meta, &db_key(SYSTEM_DATABASE), encode_json(&entry)?)?;
            Ok(true)
        })?;
        if created {
            store.engine.persist()?;
            tracing::info!("created the _system database");
        }
        store.finish_pending_purges()?;
        Ok(store)
    }

    /// Runs `body` in a transaction and commits it, retrying on conflict.
    pub(crate) fn run_tx<T>(
        &self,
        what: &str,
        mut body: impl FnMut(&mut dyn KvTx) -> Result<T>,
    ) -> Result<T> {
        self.run_doc_tx(what, |tx, _| body(tx))
    }

    /// [`Self::run_tx`] for transactions that change documents: `body` records its
    /// changes, which the change log numbers at commit.
    pub(crate) fn run_doc_tx<T>(
        &self,
        what: &str,
        body: impl FnMut(&mut dyn KvTx, &mut Vec<ChangeRecord>) -> Result<T>,
    ) -> Result<T> {
        self.commit.run_doc_tx(what, body)
    }

    /// Wraps the result of a write that has just committed: it becomes durable (as the
    /// configured [`SyncMode`] defines it) with the next group sync.
    pub(crate) fn pending<T>(&self, value: T) -> Pending<T> {
        self.commit.committer.pending(value)
    }

    /// Syncs everything committed so far to disk, whatever the [`SyncMode`]. Used at
    /// graceful shutdown.
    pub async fn flush(&self) -> Result<()> {
        self.commit.committer.flush().wait().await
    }

    /// Group-commit counters.
    pub fn sync_stats(&self) -> SyncStats {
        self.commit.committer.stats()
    }

    /// How many write transactions were rerun after an optimistic conflict.
    pub fn conflict_retries(&self) -> u64 {
        self.commit.conflict_retries.load(Ordering::Relaxed)
    }

    /// How many batches of more than one document write have committed together (see
    /// [`Self::submit`]).
    pub fn write_batches(&self) -> u64 {
        self.batcher.batches()
    }

    /// Runs a prepared document write on the batch writer, together with the others
    /// queued meanwhile (see `batch.rs`); resolves once it has committed, to a
    /// [`Pending`] that resolves once it is durable. The way for a server to write.
    pub async fn submit<T: Send + 'static>(&self, w: DocWrite<T>) -> Result<Pending<T>> {
        self.batcher.submit(w).await
    }

    /// Runs a prepared document write alone, on the calling thread (which it may
    /// block while a sync holds the journal).
    pub fn execute<T: 'static>(&self, w: DocWrite<T>) -> Result<Pending<T>> {
        self.commit.execute(w)
    }

    // ---- databases ---------------------------------------------------------------

    /// Names of all databases, sorted, `_system` included.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        let snap = self.engine.snapshot()?;
        let mut names = Vec::new();
        for item in snap.scan_prefix(Space::Meta, &[DB_TAG]) {
            let (k, _) = item?;
            let name = k
                .get(1..)
                .and_then(|n| std::str::from_utf8(n).ok())
                .ok_or_else(|| corrupt("a database catalog key", "not UTF-8"))?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Whether database `name` exists (one point read of the catalog).
    pub fn database_exists(&self, name: &str) -> Result<bool> {
        let snap = self.engine.snapshot()?;
        Ok(snap.get(Space::Meta, &db_key(name))?.is_some())
    }

    /// Creates a database. An existing name is a `Conflict`.
    pub fn create_database(&self, name: &str) -> Result<Pending<()>> {
        validate_name("database", name)?;
        self.run_tx("creating a database", |tx| {
            if read_database(&*tx, name)?.is_some() {
                return Err(StorageError::Conflict(format!(
                    "database '{name}' already exists: choose another name or use the existing one"
                )));
            }
            let id = allocate_id(tx)?;
            let entry = DatabaseEntry {
                id,
                created_at_ms: now_ms(),
            };
            tx.put(Space::Meta, &db_key(name), encode_json(&entry)?)
                .map_err(Into::into)
        })?;
        Ok(self.pending(()))
    }

    /// Drops a database with all its collections and documents. `_system` cannot be
    /// dropped.
    pub fn drop_database(&self, name: &str) -> Result<Pending<()>> {
        validate_lookup_name("database", name)?;
        if name == SYSTEM_DATABASE {
            return Err(StorageError::InvalidArgument(
                "database '_system' cannot be dropped: it holds the server's own data".to_string(),
            ));
        }
        let drop = || {
            self.run_tx("dropping a database", |tx| {
                let d = require_database(&*tx, name)?;
                // Scanning the collection range puts it in the read set: a collection
                // created concurrently in this database makes one of us retry.
                delete_prefix(tx, Space::Meta, &coll_prefix(d.id))?;
                delete_prefix(tx, Space::Meta, &index_catalog_prefix(d.id, None))?;
                tx.delete(Space::Meta, &db_key(name))?;
                tx.put(
                    Space::Meta,
                    &tagged(PURGE_TAG, &db_docs_prefix(d.id)),
                    Bytes::new(),
                )?;
                Ok(d.id)
            })
        };
        let db_id = self.read_catalog.dropping(drop)?;
        self.commit.feed.drop_database(db_id);
        // The journal is sequential: if any purge write survives a crash, the catalog
        // change before it did too.
        self.purge_logged(PURGE_TAG, &db_docs_prefix(db_id));
        Ok(self.pending(()))
    }

    // ---- collections -------------------------------------------------------------

    /// Collections of `db`, sorted by name.
    pub fn list_collections(&self, db: &str) -> Result<Vec<CollectionInfo>> {
        let snap = self.engine.snapshot()?;
        collections_of(snap.as_ref(), db)
    }

    /// Creates a collection in `db`. An existing name is a `Conflict`.
    pub fn create_collection(&self, db: &str, name: &str) -> Result<Pending<CollectionInfo>> {
        validate_lookup_name("database", db)?;
        validate_name("collection", name)?;
        let c = self.run_tx("creating a collection", |tx| {
            let d = require_database(&*tx, db)?;
            if read_collection(&*tx, d.id, name)?.is_some() {
                return Err(StorageError::Conflict(format!(
                    "collection '{name}' already exists in database '{db}': choose another \
                     name or use the existing one"
                )));
            }
            new_collection(tx, d.id, name)
        })?;
        Ok(self.pending(c.into()))
    }

    /// Drops a collection and its documents.
    pub fn drop_collection(&self, db: &str, name: &str) -> Result<Pending<()>> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", name)?;
        let drop = || {
            self.run_doc_tx("dropping a collection", |tx, changes| {
                let (d, c) = require_collection(&*tx, db, name)?;
                changes.push(ChangeRecord::new(
                    d.id,
                    ChangeKind::CollectionDropped,
                    name,
                    "",
                    "",
                    Bytes::new(),
                ));
                tx.delete(Space::Meta, &coll_key(d.id, name))?;
                delete_prefix(tx, Space::Meta, &index_catalog_prefix(d.id, Some(c.id)))?;
                let prefix = coll_docs_prefix(d.id, c.id);
                tx.put(Space::Meta, &tagged(PURGE_TAG, &prefix), Bytes::new())?;
                Ok(prefix)
            })
        };
        let prefix = self.read_catalog.dropping(drop)?;
        self.purge_logged(PURGE_TAG, &prefix);
        Ok(self.pending(()))
    }

    /// Document count and stored size of a collection (a full prefix scan).
    pub fn collection_stats(&self, db: &str, name: &str) -> Result<CollectionStats> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", name)?;
        let snap = self.engine.snapshot()?;
        let (d, c) = require_collection(snap.as_ref(), db, name)?;
        let mut count = 0u64;
        let mut data_bytes = 0u64;
        for item in snap.scan_prefix(Space::Docs, &coll_docs_prefix(d.id, c.id)) {
            let (_, v) = item?;
            count += 1;
            data_bytes += v.len() as u64;
        }
        Ok(CollectionStats {
            name: name.to_string(),
            count,
            data_bytes,
        })
    }

    // ---- documents ---------------------------------------------------------------

    /// Inserts documents (raw JSON objects) atomically: all or none. A missing
    /// collection is created when `auto_create` is set.
    pub fn insert(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Bytes>,
        auto_create: bool,
    ) -> Result<Pending<Vec<DocMeta>>> {
        self.execute(self.insert_write(db, coll, docs, auto_create)?)
    }

    /// [`Self::insert`] made idempotent by `rk` (see [`DocWrite::keyed`]). `encode`
    /// turns the result into the response bytes stored with it; the answer is those
    /// bytes (or the ones stored by an earlier request with the same key).
    pub fn insert_keyed(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Bytes>,
        auto_create: bool,
        rk: &RequestKey,
        encode: impl Fn(&[DocMeta]) -> Bytes + Send + 'static,
    ) -> Result<Pending<Bytes>> {
        let w = self.insert_write(db, coll, docs, auto_create)?;
        self.execute(w.keyed(rk.clone(), move |metas: &Vec<DocMeta>| encode(metas)))
    }

    /// [`Self::insert`], checked and prepared (the documents parsed) to run later with
    /// [`Self::submit`] or [`Self::execute`].
    pub fn insert_write(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Bytes>,
        auto_create: bool,
    ) -> Result<DocWrite<Vec<DocMeta>>> {
        let bytes = docs.iter().map(Bytes::len).sum();
        let prepared = prepare_batch(db, coll, docs)?;
        let (db, coll, clock) = (db.to_string(), coll.to_string(), self.clock.clone());
        Ok(DocWrite::new(
            "inserting documents",
            bytes,
            move |tx, changes| {
                let c = resolve_collection(tx, &db, &coll, auto_create, collection_not_found)?;
                insert_batch(tx, &clock, &c, &prepared, changes)
            },
        ))
    }

    /// Reads documents by key; positions of missing documents are `None`. The bytes
    /// are the stored JSON, ready for the wire.
    pub fn get(&self, db: &str, coll: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", coll)?;
        for k in keys {
            validate_key(k)?;
        }
        let snapshot = || Ok(self.engine.snapshot()?);
        let (snap, db_id, coll_id) = self.read_catalog.resolve(snapshot, db, coll)?;
        keys.iter()
            .map(|k| {
                snap.get(Space::Docs, &doc_key(db_id, coll_id, k))
                    .map_err(Into::into)
            })
            .collect()
    }

    /// Updates one document (see [`UpdateMode`]); `_rev` always changes.
    /// `if_revision` makes it conditional on the current `_rev`.
    pub fn update(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        body: Bytes,
        mode: UpdateMode,
        if_revision: Option<&str>,
    ) -> Result<Pending<DocMeta>> {
        self.execute(self.update_write(db, coll, key, body, mode, if_revision)?)
    }

    /// [`Self::update`] made idempotent by `rk` (see [`Self::insert_keyed`]).
    #[allow(clippy::too_many_arguments)]
    pub fn update_keyed(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        body: Bytes,
        mode: UpdateMode,
        if_revision: Option<&str>,
        rk: &RequestKey,
        encode: impl Fn(&DocMeta) -> Bytes + Send + 'static,
    ) -> Result<Pending<Bytes>> {
        let w = self.update_write(db, coll, key, body, mode, if_revision)?;
        self.execute(w.keyed(rk.clone(), encode))
    }

    /// [`Self::update`], checked and prepared (the patch parsed) to run later with
    /// [`Self::submit`] or [`Self::execute`].
    pub fn update_write(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        body: Bytes,
        mode: UpdateMode,
        if_revision: Option<&str>,
    ) -> Result<DocWrite<DocMeta>> {
        let bytes = body.len();
        let patch = prepare_update(db, coll, key, body)?;
        let (db, coll, key) = (db.to_string(), coll.to_string(), key.to_string());
        let if_revision = if_revision.map(str::to_string);
        let clock = self.clock.clone();
        Ok(DocWrite::new(
            "updating a document",
            bytes,
            move |tx, changes| {
                let c = load_collection(&*tx, &db, &coll)?
                    .ok_or_else(|| collection_not_found(&db, &coll))?;
                let updated = update_doc(
                    tx,
                    &clock,
                    &c,
                    &key,
                    patch.clone(),
                    mode,
                    false,
                    if_revision.as_deref(),
                    changes,
                )?;
                Ok(DocMeta {
                    key: key.clone(),
                    rev: updated.rev,
                })
            },
        ))
    }

    /// Deletes documents atomically. Missing keys are reported, not an error. With
    /// `if_revision`, every document found must have that `_rev`, else nothing is
    /// deleted and the result is a `Conflict`.
    pub fn delete(
        &self,
        db: &str,
        coll: &str,
        keys: &[String],
        if_revision: Option<&str>,
    ) -> Result<Pending<DeleteOutcome>> {
        self.execute(self.delete_write(db, coll, keys.to_vec(), if_revision)?)
    }

    /// [`Self::delete`] made idempotent by `rk` (see [`Self::insert_keyed`]).
    pub fn delete_keyed(
        &self,
        db: &str,
        coll: &str,
        keys: &[String],
        if_revision: Option<&str>,
        rk: &RequestKey,
        encode: impl Fn(&DeleteOutcome) -> Bytes + Send + 'static,
    ) -> Result<Pending<Bytes>> {
        let w = self.delete_write(db, coll, keys.to_vec(), if_revision)?;
        self.execute(w.keyed(rk.clone(), encode))
    }

    /// [`Self::delete`], checked, to run later with [`Self::submit`] or
    /// [`Self::execute`].
    pub fn delete_write(
        &self,
        db: &str,
        coll: &str,
        keys: Vec<String>,
        if_revision: Option<&str>,
    ) -> Result<DocWrite<DeleteOutcome>> {
        prepare_delete(db, coll, &keys)?;
        let bytes = keys.iter().map(String::len).sum();
        let (db, coll) = (db.to_string(), coll.to_string());
        let if_revision = if_revision.map(str::to_string);
        Ok(DocWrite::new(
            "deleting documents",
            bytes,
            move |tx, changes| {
                let c = load_collection(&*tx, &db, &coll)?
                    .ok_or_else(|| collection_not_found(&db, &coll))?;
                delete_keys(tx, &c, &keys, if_revision.as_deref(), changes)
            },
        ))
    }

    // ---- request keys --------------------------------------------------------------

    /// The stored response of `rk`, if a live record exists (a point read on a fresh
    /// snapshot). It resolves once durable: a record seen here may belong to a write
    /// that committed a moment ago and is not synced yet.
    pub fn request_key_response(&self, rk: &RequestKey) -> Result<Pending<Option<Bytes>>> {
        let snap = self.engine.snapshot()?;
        let found = request_keys::lookup(snap.as_ref(), rk, now_ms())?;
        Ok(self.pending(found))
    }

    /// Deletes up to `limit` expired request key records, oldest first, in one
    /// transaction; returns how many. Reads only the expiry index up to now, never a
    /// live record. Call it repeatedly (off any async executor: it commits) until it
    /// returns less than `limit`.
    pub fn sweep_request_keys(&self, limit: usize) -> Result<usize> {
        let now = now_ms();
        self.run_tx("removing expired request keys", |tx| {
            request_keys::sweep(tx, now, limit)
        })
    }

    // ---- secondary indexes ---------------------------------------------------------

    /// Creates a secondary index on `fields` of `db`/`coll` and fills it from the
    /// documents already there, in one transaction.
    ///
    /// `name` follows the collection-name rules (`primary` is reserved for the
    /// implicit `_key` index); `fields` are 1-8 distinct dotted attribute paths. A
    /// taken name is a `Conflict`, and so is an index with the same fields and options
    /// as an existing one (it would only cost writes). A unique index over documents
    /// that already hold duplicate values fails with a `Conflict` naming two of them,
    /// and leaves nothing behind.
    ///
    /// Why one transaction: it reads the whole collection, so any write that commits
    /// meanwhile makes it conflict and rerun (up to [`MAX_TX_ATTEMPTS`] times, then
    /// `Contended`), and writers that start after it committed read the new catalog
    /// record and maintain the index. No write can slip past the fill. The price: the
    /// new entries are buffered in memory until the commit, and under a steady stream
    /// of writes to the collection a large fill can keep losing the race.
    pub fn create_index(
        &self,
        db: &str,
        coll: &str,
        name: &str,
        fields: Vec<String>,
        unique: bool,
        sparse: bool,
    ) -> Result<Pending<IndexInfo>> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", coll)?;
        validate_name("index", name)?;
        if name == PRIMARY_INDEX_NAME {
            return Err(StorageError::InvalidArgument(format!(
                "invalid index name '{name}': it is reserved for the implicit _key index; choose another name"
            )));
        }
        validate_index_fields(&fields)?;
        let info = self.run_tx("creating an index", |tx| {
            let c = load_collection(&*tx, db, coll)?.ok_or_else(|| collection_not_found(db, coll))?;
            let existing = &c.indexes;
            if existing.iter().any(|i| i.name == name) {
                return Err(StorageError::Conflict(format!(
                    "index '{name}' already exists on collection '{coll}': choose another name, or drop the existing index first"
                )));
            }
            if let Some(same) = existing
                .iter()
                .find(|i| i.fields == fields && i.unique == unique && i.sparse == sparse)
            {
                return Err(StorageError::Conflict(format!(
                    "index '{}' on collection '{coll}' already covers the same fields with the same options; use it instead of creating '{name}'",
                    same.name
                )));
            }
            let info = IndexInfo {
                name: name.to_string(),
                id: allocate_id(tx)?,
                fields: fields.clone(),
                unique,
                sparse,
                created_at_ms: now_ms(),
            };
            fill_index(tx, &c.handle, &info)?;
            tx.put(
                Space::Meta,
                &index_catalog_key(c.handle.db_id, c.handle.coll_id, name),
                encode_json(&info)?,
            )?;
            Ok(info)
        })?;
        tracing::info!(db, collection = coll, index = name, "index created");
        Ok(self.pending(info))
    }

    /// Drops the secondary index `name` of `db`/`coll` and its entries.
    pub fn drop_index(&self, db: &str, coll: &str, name: &str) -> Result<Pending<()>> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", coll)?;
        if name == PRIMARY_INDEX_NAME {
            return Err(StorageError::InvalidArgument(
                "the primary index (_key) cannot be dropped: it is part of every collection"
                    .to_string(),
            ));
        }
        validate_lookup_name("index", name)?;
        let prefix = self.run_tx("dropping an index", |tx| {
            let (d, c) = require_collection(&*tx, db, coll)?;
            let key = index_catalog_key(d.id, c.id, name);
            let raw = tx.get(Space::Meta, &key)?.ok_or_else(|| {
                StorageError::NotFound(format!(
                    "index '{name}' not found on collection '{coll}' in database '{db}'; list_indexes shows the existing ones"
                ))
            })?;
            let info: IndexInfo = decode_json("an index catalog record", &raw)?;
            tx.delete(Space::Meta, &key)?;
            let prefix = index_entries_prefix(d.id, c.id, info.id);
            tx.put(Space::Meta, &tagged(INDEX_PURGE_TAG, &prefix), Bytes::new())?;
            Ok(prefix)
        })?;
        self.purge_logged(INDEX_PURGE_TAG, &prefix);
        Ok(self.pending(()))
    }

    /// The secondary indexes of `db`/`coll`, in creation order. The implicit primary
    /// index on `_key` is not included.
    pub fn list_indexes(&self, db: &str, coll: &str) -> Result<Vec<IndexInfo>> {
        validate_lookup_name("database", db)?;
        validate_lookup_name("collection", coll)?;
        let snap = self.engine.snapshot()?;
        let (d, c) = require_collection(snap.as_ref(), db, coll)?;
        read_indexes(snap.as_ref(), d.id, c.id)
    }

    // ---- queries -------------------------------------------------------------------

    /// A consistent read-only view of the whole store, for all reads of one query.
    pub fn snapshot(&self) -> Result<QuerySnapshot> {
        Ok(QuerySnapshot::new(self.engine.snapshot()?))
    }

    /// Starts a transaction for the writes of one query. See [`WriteTx`].
    pub fn begin_write(&self) -> Result<WriteTx> {
        Ok(WriteTx::new(
            self.engine.begin()?,
            self.clock.clone(),
            self.commit.committer.clone(),
            self.commit.feed.clone(),
            false,
            false,
        ))
    }

    /// Begins an interactive transaction on database `db`. See [`Transaction`].
    pub fn begin_transaction(
        &self,
        db: &str,
        isolation: Isolation,
        read_only: bool,
    ) -> Result<Transaction> {
        validate_lookup_name("database", db)?;
        let tx = self.engine.begin()?;
        require_database(tx.as_ref(), db)?;
        // The snapshot is taken after the transaction began, so anything it shows
        // that the transaction's own snapshot does not was committed after the
        // transaction began: overwriting it conflicts instead of losing it.
        let base = match isolation {
            Isolation::Snapshot => Some(Arc::from(self.engine.snapshot()?)),
            Isolation::Serializable | Isolation::ReadCommitted => None,
        };
        let write = WriteTx::new(
            tx,
            self.clock.clone(),
            self.commit.committer.clone(),
            self.commit.feed.clone(),
            isolation != Isolation::Serializable,
            read_only,
        );
        Ok(Transaction::new(
            write,
            db,
            isolation,
            self.engine.clone(),
            base,
        ))
    }

    /// The change log and its live feed.
    pub fn changes(&self) -> &Arc<ChangeFeed> {
        &self.commit.feed
    }

    // ---- purging -----------------------------------------------------------------

    /// Finishes purges a previous run left behind (it died between a drop and the end
    /// of its purge).
    fn finish_pending_purges(&self) -> Result<()> {
        let snap = self.engine.snapshot()?;
        let mut markers = Vec::new();
        for tag in [PURGE_TAG, INDEX_PURGE_TAG] {
            for item in snap.scan_prefix(Space::Meta, &[tag]) {
                let (k, _) = item?;
                markers.push((tag, k.slice(1..)));
            }
        }
        drop(snap);
        for (tag, p) in markers {
            tracing::info!(prefix = ?p, "finishing an interrupted purge of dropped data");
            self.purge(tag, &p)?;
        }
        Ok(())
    }

    fn purge_logged(&self, tag: u8, prefix: &[u8]) {
        // The drop is already committed and durable, and what it dropped is
        // unreachable; a failed purge only leaves garbage that the next open removes.
        if let Err(e) = self.purge(tag, prefix) {
            tracing::error!(error = %e, "purging dropped data failed; retried on next open");
        }
    }

    /// Deletes everything under `prefix` — documents and index entries for a
    /// [`PURGE_TAG`] marker, index entries for an [`INDEX_PURGE_TAG`] one — then the
    /// marker.
    fn purge(&self, tag: u8, prefix: &[u8]) -> Result<()> {
        // A database's prefix (8 bytes) also covers its change log.
        let spaces: &[Space] = match tag {
            PURGE_TAG if prefix.len() == 8 => &[Space::Docs, Space::Index, Space::Changes],
            PURGE_TAG => &[Space::Docs, Space::Index],
            _ => &[Space::Index],
        };
        for &space in spaces {
            self.purge_space(space, prefix)?;
        }
        // No sync needed: the journal is sequential, so the marker's removal cannot
        // become durable before the deletes written ahead of it.
        let mut tx = self.engine.begin()?;
        tx.delete(Space::Meta, &tagged(tag, prefix))?;
        tx.commit()?;
        Ok(())
    }

    fn purge_space(&self, space: Space, prefix: &[u8]) -> Result<()> {
        let snap = self.engine.snapshot()?;
        let mut iter = snap.scan_prefix(space, prefix);
        loop {
            let mut keys = Vec::with_capacity(PURGE_CHUNK);
            for item in iter.by_ref().take(PURGE_CHUNK) {
                keys.push(item?.0);
            }
            if keys.is_empty() {
                break;
            }
            // Blind deletes read nothing and cannot conflict, and nothing writes
            // under a dropped id any more (writers read the catalog records the drop
            // removed, so they conflict instead).
            let mut tx = self.engine.begin()?;
            for k in &keys {
                tx.delete(space, k)?;
            }
            tx.commit()?;
            if keys.len() < PURGE_CHUNK {
                break;
            }
        }
        Ok(())
    }
}

/// Checks the names and prepares the documents of an insert.
fn prepare_batch(db: &str, coll: &str, docs: Vec<Bytes>) -> Result<Vec<PreparedDoc>> {
    validate_lookup_name("database", db)?;
    validate_lookup_name("collection", coll)?;
    prepare_docs(&docs)
}

/// Checks the names and parses the patch of an update.
fn prepare_update(
    db: &str,
    coll: &str,
    key: &str,
    body: Bytes,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    validate_lookup_name("database", db)?;
    validate_lookup_name("collection", coll)?;
    validate_key(key)?;
    parse_object(&body).map_err(StorageError::InvalidArgument)
}

/// Checks the names and keys of a delete.
fn prepare_delete(db: &str, coll: &str, keys: &[String]) -> Result<()> {
    validate_lookup_name("database", db)?;
    validate_lookup_name("collection", coll)?;
    for k in keys {
        validate_key(k)?;
    }
    Ok(())
}

/// Writes the entries of every document of `c` into the new index `info`, inside
/// `tx`. The scan of the collection joins the read set; duplicates of a unique index
/// are found in memory (nothing else can write under the new id before the commit).
fn fill_index(tx: &mut dyn KvTx, c: &CollectionHandle, info: &IndexInfo) -> Result<()> {
    let mut entries: Vec<(Vec<u8>, Bytes)> = Vec::new();
    let mut seen: std::collections::HashMap<Vec<u8>, String> = std::collections::HashMap::new();
    let prefix_len = coll_docs_prefix(c.db_id, c.coll_id).len();
    for item in tx.scan_prefix(Space::Docs, &coll_docs_prefix(c.db_id, c.coll_id)) {
        let (k, raw) = item?;
        let key = std::str::from_utf8(&k[prefix_len..])
            .map_err(|e| corrupt("a document key", e))?
            .to_string();
        let attrs = parse_object(&raw).map_err(|m| corrupt("a stored document", m))?;
        let rev = rev_of(&attrs).to_string();
        let view = DocView {
            coll: &c.name,
            key: &key,
            rev: &rev,
            attrs: &attrs,
        };
        let Some(entry) = entry_key(c, info, &view) else {
            continue;
        };
        if info.unique {
            if let Some(other) = seen.get(&entry) {
                return Err(StorageError::Conflict(format!(
                    "cannot create unique index '{}' on collection '{}': documents '{other}' and '{key}' both have {}; remove or change the duplicates first, or create the index without unique",
                    info.name,
                    c.name,
                    describe_values(info, Some(&view))
                )));
            }
            seen.insert(entry.clone(), key.clone());
        }
        entries.push((entry, Bytes::from(key.into_bytes())));
    }
    for (k, v) in entries {
        tx.put(Space::Index, &k, v)?;
    }
    Ok(())
}

/// Deletes every key under `prefix` in `space` inside `tx` (for small catalog ranges;
/// the scan joins the read set).
fn delete_prefix(tx: &mut dyn KvTx, space: Space, prefix: &[u8]) -> Result<()> {
    let mut keys = Vec::new();
    for item in tx.scan_prefix(space, prefix) {
        keys.push(item?.0);
    }
    for k in &keys {
        tx.delete(space, k)?;
    }
    Ok(())
}

pub(crate) fn new_collection(tx: &mut dyn KvTx, db_id: u64, name: &str) -> Result<CollectionEntry> {
    let entry = CollectionEntry {
        id: allocate_id(tx)?,
        name: name.to_string(),
        created_at_ms: now_ms(),
    };
    tx.put(Space::Meta, &coll_key(db_id, name), encode_json(&entry)?)?;
    Ok(entry)
}

/// The collections of `db` as `r` sees them, sorted by name.
pub(crate) fn collections_of<R: KvRead + ?Sized>(r: &R, db: &str) -> Result<Vec<CollectionInfo>> {
    validate_lookup_name("database", db)?;
    let d = require_database(r, db)?;
    let mut out = Vec::new();
    for item in r.scan_prefix(Space::Meta, &coll_prefix(d.id)) {
        let (_, v) = item?;
        let c: CollectionEntry = decode_json("a collection catalog record", &v)?;
        out.push(c.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequestKey, WaitDurable};
    use std::time::Duration;

    fn count(store: &DocumentStore, space: Space, prefix: &[u8]) -> usize {
        let snap = store.engine.snapshot().unwrap();
        snap.scan_prefix(space, prefix).count()
    }

    /// A crash between a drop's commit and the end of its purge: the next open
    /// deletes the orphaned documents and the marker.
    #[tokio::test]
    async fn interrupted_purge_finishes_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let prefix;
        {
            let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
            let docs = (0..2500)
                .map(|i| Bytes::from(format!("{{\"i\":{i}}}")))
                .collect();
            s.insert("_system", "c", docs, true).wait().await.unwrap();
            // The drop's transaction, without the purge that normally follows it.
            prefix = s
                .run_tx("test drop", |tx| {
                    let (d, c) = require_collection(&*tx, "_system", "c")?;
                    tx.delete(Space::Meta, &coll_key(d.id, "c"))?;
                    let prefix = coll_docs_prefix(d.id, c.id);
                    tx.put(Space::Meta, &tagged(PURGE_TAG, &prefix), Bytes::new())?;
                    Ok(prefix)
                })
                .unwrap();
            s.pending(()).wait().await.unwrap();
            assert_eq!(count(&s, Space::Docs, &prefix), 2500);
            assert!(s.get("_system", "c", &["1".to_string()]).is_err());
        }
        let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
        assert_eq!(count(&s, Space::Docs, &prefix), 0);
        assert_eq!(count(&s, Space::Meta, &[PURGE_TAG]), 0);
        // A regular drop purges at once.
        s.insert("_system", "d", vec![Bytes::from_static(b"{}")], true)
            .wait()
            .await
            .unwrap();
        s.drop_collection("_system", "d").wait().await.unwrap();
        assert_eq!(count(&s, Space::Meta, &[PURGE_TAG]), 0);
        assert_eq!(count(&s, Space::Docs, &[]), 0);
    }

    fn keyed(user: &str, key: &str, window: Duration) -> RequestKey {
        RequestKey::new(user, key, window).unwrap()
    }

    /// An empty document into `_system`/`c` (created if missing), keyed by `rk`.
    fn insert_empty(s: &DocumentStore, rk: &RequestKey) -> Result<Pending<Bytes>> {
        let doc = vec![Bytes::from_static(b"{}")];
        s.insert_keyed("_system", "c", doc, true, rk, encode_keys)
    }

    fn encode_keys(metas: &[DocMeta]) -> Bytes {
        Bytes::from(
            metas
                .iter()
                .map(|m| format!("{}@{}", m.key, m.rev))
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// A keyed insert applies once, answers with the stored bytes, and stores the
    /// record and its expiry entry next to the document; a failed one stores none.
    #[tokio::test]
    async fn keyed_writes_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
        let rk = keyed("u", "k", Duration::from_secs(600));
        let first = insert_empty(&s, &rk).wait().await.unwrap();
        let again = insert_empty(&s, &rk).wait().await.unwrap();
        assert_eq!(first, again);
        assert_eq!(count(&s, Space::Docs, &[]), 1);
        assert_eq!(count(&s, Space::Meta, b"X"), 1);
        assert_eq!(count(&s, Space::Meta, b"Y"), 1);
        assert_eq!(
            s.request_key_response(&rk).wait().await.unwrap(),
            Some(first)
        );
        // Another user's key is another write.
        let other = keyed("v", "k", Duration::from_secs(600));
        insert_empty(&s, &other).wait().await.unwrap();
        assert_eq!(count(&s, Space::Docs, &[]), 2);
        // A failing write records nothing.
        let bad = keyed("u", "bad", Duration::from_secs(600));
        let dup = s.insert_keyed(
            "_system",
            "c",
            vec![Bytes::from_static(b"{\"_key\":\"x\"}"); 2],
            true,
            &bad,
            encode_keys,
        );
        assert!(matches!(dup, Err(StorageError::Conflict(_))));
        assert_eq!(s.request_key_response(&bad).wait().await.unwrap(), None);
    }

    /// Threads racing with one key on the real engine: one document, one answer.
    #[tokio::test]
    async fn racing_keyed_writes_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(DocumentStore::open(StoreOptions::new(dir.path())).unwrap());
        for round in 0..20 {
            let rk = keyed("u", &format!("race-{round}"), Duration::from_secs(600));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    let rk = rk.clone();
                    std::thread::spawn(move || insert_empty(&s, &rk).unwrap())
                })
                .collect();
            let mut answers = Vec::new();
            for t in threads {
                answers.push(t.join().unwrap().wait().await.unwrap());
            }
            assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
        }
        assert_eq!(count(&s, Space::Docs, &[]), 20);
    }

    /// Expired records are ignored, replaced by a new write, and swept in bounded
    /// batches that never touch live records.
    #[tokio::test]
    async fn expired_records_are_ignored_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
        let live = keyed("u", "live", Duration::from_secs(600));
        insert_empty(&s, &live).wait().await.unwrap();
        for i in 0..5 {
            let short = keyed("u", &format!("short-{i}"), Duration::from_millis(1));
            insert_empty(&s, &short).wait().await.unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let short = keyed("u", "short-0", Duration::from_millis(1));
        assert_eq!(s.request_key_response(&short).wait().await.unwrap(), None);
        assert_eq!(count(&s, Space::Meta, b"X"), 6);
        assert_eq!(s.sweep_request_keys(2).unwrap(), 2);
        assert_eq!(s.sweep_request_keys(10).unwrap(), 3);
        assert_eq!(s.sweep_request_keys(10).unwrap(), 0);
        assert_eq!(count(&s, Space::Meta, b"X"), 1);
        assert_eq!(count(&s, Space::Meta, b"Y"), 1);
        assert!(s
            .request_key_response(&live)
            .wait()
            .await
            .unwrap()
            .is_some());
        // An expired record that a new write replaced keeps only the new entry.
        let again = keyed("u", "again", Duration::from_millis(1));
        for _ in 0..2 {
            insert_empty(&s, &again).wait().await.unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(count(&s, Space::Docs, &[]), 8);
        assert_eq!(count(&s, Space::Meta, b"Y"), 2);
        assert_eq!(s.sweep_request_keys(10).unwrap(), 1);
        assert_eq!(count(&s, Space::Meta, b"X"), 1);
    }
}
