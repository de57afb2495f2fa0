//! Interactive transactions: reads and writes spread over many requests, committed
//! (or rolled back) at the end, on fjall's optimistic transactions.
//!
//! A [`Transaction`] is a [`WriteTx`] plus the view its statements read. Nothing is
//! locked while it is open: every write reads the current version of what it
//! overwrites through the engine transaction (so a concurrent commit of the same key
//! makes this one conflict at commit — first committer wins, never a lost update),
//! and a slow or stalled client only risks its own commit failing.
//!
//! What statements read depends on the [`Isolation`]:
//!
//! | level | statements read | commit fails when a concurrent commit changed |
//! |---|---|---|
//! | `Snapshot` | one snapshot taken at begin, plus own writes | a document this transaction wrote |
//! | `Serializable` | through the engine transaction (every read tracked, ranges too) | anything this transaction read or wrote (no write skew) |
//! | `ReadCommitted` | a fresh snapshot per statement, plus own writes | a document this transaction wrote |
//!
//! A statement that fails after it wrote something (a bulk insert whose third
//! document collides, a query that fails half-way) cannot be undone inside the
//! engine transaction, so it **aborts** the transaction: later statements and the
//! commit fail with [`StorageError::Transaction`] and the client must roll back. A
//! statement that fails before writing (a missing document, a stale `_rev`) leaves the
//! transaction usable. PostgreSQL behaves the same way.

use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::collection_not_found;
use crate::document::parse_object;
use crate::error::{Result, StorageError};
use crate::group_commit::Pending;
use crate::kv::{KvEngine, KvSnapshot};
use crate::names::{validate_key, validate_lookup_name};
use crate::overlay::OverlayView;
use crate::query::QuerySnapshot;
use crate::request_keys::RequestKey;
use crate::store::{DeleteOutcome, DocMeta};
use crate::write::{prepare_docs, WriteTx};
use crate::UpdateMode;

/// The most change bytes (documents written) one interactive transaction may hold
/// before it commits; a statement that goes beyond aborts it.
pub const MAX_TRANSACTION_BYTES: usize = 64 * 1024 * 1024;

/// Isolation level of a [`Transaction`] (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    Snapshot,
    Serializable,
    ReadCommitted,
}

/// An interactive transaction. See the module doc. `Send`; not `Sync` (one statement
/// at a time).
pub struct Transaction {
    write: WriteTx,
    db: String,
    isolation: Isolation,
    engine: Arc<dyn KvEngine>,
    /// The snapshot every statement of a `Snapshot` transaction reads.
    base: Option<Arc<dyn KvSnapshot>>,
    /// Why the transaction can no longer commit.
    aborted: Option<String>,
    /// Bytes of the changes it holds (see [`MAX_TRANSACTION_BYTES`]).
    held_bytes: usize,
}

impl Transaction {
    pub(crate) fn new(
        write: WriteTx,
        db: &str,
        isolation: Isolation,
        engine: Arc<dyn KvEngine>,
        base: Option<Arc<dyn KvSnapshot>>,
    ) -> Transaction {
        Transaction {
            write,
            db: db.to_string(),
            isolation,
            engine,
            base,
            aborted: None,
            held_bytes: 0,
        }
    }

    /// The database the transaction works in.
    pub fn database(&self) -> &str {
        &self.db
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub fn is_read_only(&self) -> bool {
        self.write.is_read_only()
    }

    /// Why the transaction was aborted, if it was.
    pub fn aborted(&self) -> Option<&str> {
        self.aborted.as_deref()
    }

    fn usable(&self) -> Result<()> {
        match &self.aborted {
            Some(why) => Err(StorageError::Transaction(format!(
                "the transaction was aborted because {why}; roll it back and start again"
            ))),
            None => Ok(()),
        }
    }

    /// The view the next statement reads (see the module doc).
    pub fn view(&self) -> Result<QuerySnapshot> {
        self.usable()?;
        let overlay = self.write.overlay();
        let view: Arc<dyn KvSnapshot> = match (self.isolation, overlay) {
            (Isolation::Serializable, _) | (_, None) => Arc::new(self.write.reader()),
            // SNAPSHOT reads the snapshot taken at begin, READ_COMMITTED (which has
            // none) a fresh one.
            (_, Some(overlay)) => Arc::new(OverlayView {
                base: match &self.base {
                    Some(b) => b.clone(),
                    None => Arc::from(self.engine.snapshot()?),
                },
                overlay,
            }),
        };
        Ok(QuerySnapshot::shared(view))
    }

    /// Runs one statement's writes; a failure after it wrote aborts the transaction
    /// (see the module doc).
    pub fn statement<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&mut WriteTx) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.usable()?;
        let before = self.write.writes();
        let changes_before = self.write.change_count();
        let out = f(&mut self.write);
        if out.is_err() && (self.write.writes() != before || self.write.is_broken()) {
            self.aborted = Some(
                "a statement in it failed after it had already written (its effects cannot \
                 be undone separately)"
                    .to_string(),
            );
        }
        self.held_bytes += self.write.change_bytes_since(changes_before);
        if self.held_bytes > MAX_TRANSACTION_BYTES {
            let why = format!(
                "it grew beyond {} MiB of changes, the most one transaction may hold until it \
                 commits; split the work into smaller transactions",
                MAX_TRANSACTION_BYTES >> 20
            );
            self.aborted = Some(why.clone());
            return Err(StorageError::Transaction(format!(
                "the transaction was aborted because {why}"
            ))
            .into());
        }
        out
    }

    /// Inserts documents (raw JSON objects); a missing collection is created when
    /// `auto_create` is set.
    pub fn insert(
        &mut self,
        coll: &str,
        docs: Vec<Bytes>,
        auto_create: bool,
    ) -> Result<Vec<DocMeta>> {
        let prepared = prepare_docs(&docs)?;
        let db = self.db.clone();
        self.statement(|w| {
            w.writable()?;
            let i = w.cached(&db, coll, auto_create, collection_not_found)?;
            w.insert_prepared(i, &prepared)
        })
    }

    /// Reads documents by key through the transaction's view; positions of missing
    /// documents are `None`.
    pub fn get(&self, coll: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        validate_lookup_name("collection", coll)?;
        for k in keys {
            validate_key(k)?;
        }
        let view = self.view()?;
        let c = view
            .collection(&self.db, coll)
            .map_err(|_| collection_not_found(&self.db, coll))?;
        keys.iter().map(|k| view.get(&c, k)).collect()
    }

    /// Updates one document (see [`crate::DocumentStore::update`]).
    pub fn update(
        &mut self,
        coll: &str,
        key: &str,
        body: Bytes,
        mode: UpdateMode,
        if_revision: Option<&str>,
    ) -> Result<DocMeta> {
        validate_key(key)?;
        let patch = parse_object(&body).map_err(StorageError::InvalidArgument)?;
        let db = self.db.clone();
        self.statement(|w| {
            w.writable()?;
            let i = w.cached(&db, coll, false, collection_not_found)?;
            let updated = w.update_cached(i, key, patch, mode, false, if_revision)?;
            Ok(DocMeta {
                key: key.to_string(),
                rev: updated.rev,
            })
        })
    }

    /// Deletes documents (see [`crate::DocumentStore::delete`]).
    pub fn delete(
        &mut self,
        coll: &str,
        keys: &[String],
        if_revision: Option<&str>,
    ) -> Result<DeleteOutcome> {
        for k in keys {
            validate_key(k)?;
        }
        let db = self.db.clone();
        self.statement(|w| {
            w.writable()?;
            let i = w.cached(&db, coll, false, collection_not_found)?;
            w.delete_cached(i, keys, if_revision)
        })
    }

    /// Commits: all of the transaction becomes visible at once, or, when a concurrent
    /// commit changed what it wrote (or, for `Serializable`, read), nothing does and
    /// the result is [`StorageError::Contended`] — run the transaction again. Await the
    /// [`Pending`] for durability.
    pub fn commit(self) -> Result<Pending<()>> {
        self.usable()?;
        self.write.commit()
    }

    /// [`Self::commit`] made idempotent by `rk`: see [`crate::WriteTx::commit_keyed`].
    /// `response` is the encoded answer to store with the commit; the result is it,
    /// or the response an earlier commit with the same key stored (this transaction is
    /// then rolled back).
    pub fn commit_keyed(self, rk: &RequestKey, response: Bytes) -> Result<Pending<Bytes>> {
        self.usable()?;
        self.write.commit_keyed(rk, response)
    }
}
