//! The narrow key-value engine interface the document layer is written against.
//!
//! It is deliberately small — snapshot reads, buffered writes, optimistic commit and
//! an explicit `persist` — so that an engine other than fjall (a distributed KV
//! store, say) can plug in without the document layer changing. Everything is
//! object-safe: the document layer holds an `Arc<dyn KvEngine>`.
//!
//! Invariants every engine must keep:
//! * a transaction reads one consistent snapshot plus its own buffered writes;
//! * `commit` applies all of a transaction's writes or none, and returns
//!   [`KvError::Conflict`] (applying nothing) if another transaction committed, after
//!   this one began, a write to a key or range this one read;
//! * a successful `commit` is visible to every later snapshot, but need not be durable
//!   until a later [`KvEngine::persist`] returns. Commits are persisted in commit order:
//!   once `persist` returns, every commit that returned before it was called is durable.

use std::ops::Bound;

use bytes::Bytes;

use crate::error::KvError;

/// The fixed keyspaces of the store. Each is an independent sorted key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Catalog (databases, collections, id sequence), users, clocks, purge markers.
    Meta,
    /// Documents, keyed by `db_id | collection_id | _key`.
    Docs,
    /// Secondary index entries, keyed by `db_id | collection_id | index_id | encoded
    /// values [| _key]` (see `index.rs`).
    Index,
    /// The change log, keyed by `db_id | sequence` (see `changes.rs`).
    Changes,
}

impl Space {
    /// Every space, in [`Space::index`] order.
    pub const ALL: [Space; 4] = [Space::Meta, Space::Docs, Space::Index, Space::Changes];

    /// The engine-level name of the space (a directory name for fjall).
    pub fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Docs => "docs",
            Space::Index => "index",
            Space::Changes => "changes",
        }
    }

    /// Position of the space in an engine's array of open spaces.
    pub fn index(self) -> usize {
        match self {
            Space::Meta => 0,
            Space::Docs => 1,
            Space::Index => 2,
            Space::Changes => 3,
        }
    }
}

/// One key-value pair from a scan.
pub type KvPair = (Bytes, Bytes);

/// A scan in key order. It holds its snapshot, not a borrow, so memory stays bounded
/// by what the caller keeps, and it can be moved between threads.
pub type KvIter = Box<dyn Iterator<Item = Result<KvPair, KvError>> + Send>;

/// Reads against one consistent view.
pub trait KvRead {
    /// The value stored under `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError>;

    /// Every pair whose key starts with `prefix`, in key order. Inside a transaction
    /// the scanned range joins its read set, so a concurrent write into the range makes
    /// the commit conflict.
    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter;

    /// Every pair whose key lies between `lower` and `upper`, in key order, or in
    /// reverse key order when `reverse` is set. Bounds that cross (lower above upper)
    /// give an empty scan. Inside a transaction the range joins the read set, like
    /// [`KvRead::scan_prefix`].
    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter;
}

/// Whether `lower..upper` (as bounds) can hold any key at all. Engines use it to
/// answer crossed bounds with an empty scan instead of handing them to a tree that may
/// panic on them.
pub fn range_is_empty(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
    }
}

/// A read-only snapshot.
pub trait KvSnapshot: KvRead + Send + Sync {}

/// A read-write transaction: snapshot reads (plus its own writes), buffered writes,
/// all-or-nothing commit. Dropping it without committing discards the writes.
pub trait KvTx: KvRead + Send {
    /// Buffers a write of `value` under `key`.
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<(), KvError>;

    /// Buffers a removal of `key` (removing a missing key is not an error).
    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), KvError>;

    /// Applies every buffered write atomically, or returns [`KvError::Conflict`] and
    /// applies none. Not yet durable: see [`KvEngine::persist`].
    fn commit(self: Box<Self>) -> Result<(), KvError>;
}

/// A transactional key-value engine.
pub trait KvEngine: Send + Sync {
    /// Starts a read-write transaction on a fresh snapshot.
    fn begin(&self) -> Result<Box<dyn KvTx>, KvError>;

    /// A read-only snapshot of everything committed so far.
    fn snapshot(&self) -> Result<Box<dyn KvSnapshot>, KvError>;

    /// Makes every commit that returned before this call durable (fsync).
    fn persist(&self) -> Result<(), KvError>;
}
