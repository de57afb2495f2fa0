//! [`KvEngine`] on fjall 3's optimistic transactions (`OptimisticTxDatabase`).
//!
//! Each [`Space`] is one fjall keyspace. Transactions are fjall `OptimisticWriteTx`s:
//! snapshot isolation with read-set conflict detection at commit (serializable for
//! the keys and ranges a transaction read).
//!
//! Durability: commits never fsync on their own. With `flush_each_commit = false`
//! (the normal mode) a commit only lands in the journal's user-space buffer, and
//! durability comes from [`KvEngine::persist`] called by the group committer. With
//! `flush_each_commit = true` each commit is also handed to the OS (survives a crash
//! of this process, not of the machine); that is the `SyncMode::Never` mode.
//! fjall's journal is sequential and syncs itself when it rotates, so a `persist`
//! covers every commit that returned before it.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjall::{
    Keyspace, KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticWriteTx, PersistMode,
    Readable, Snapshot,
};

use crate::error::KvError;
use crate::kv::{range_is_empty, KvEngine, KvIter, KvRead, KvSnapshot, KvTx, Space};

fn engine_err(e: fjall::Error) -> KvError {
    KvError::Engine(e.to_string())
}

/// The fjall-backed engine. Cheap to share: clones of fjall handles are `Arc`s.
pub struct FjallEngine {
    db: OptimisticTxDatabase,
    spaces: Arc<[Keyspace; 4]>,
    commit_durability: Option<PersistMode>,
}

impl FjallEngine {
    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// `cache_size_bytes` is fjall's block cache. See the module doc for
    /// `flush_each_commit`.
    pub fn open(
        path: &Path,
        cache_size_bytes: u64,
        flush_each_commit: bool,
    ) -> Result<FjallEngine, KvError> {
        // Persistence is ours to drive (group commit), so fjall must not flush on
        // every transaction by itself.
        let db = OptimisticTxDatabase::builder(path)
            .cache_size(cache_size_bytes)
            .manual_journal_persist(true)
            .open()
            .map_err(engine_err)?;
        let open = |space: Space| -> Result<Keyspace, KvError> {
            let ks = db
                .keyspace(space.name(), KeyspaceCreateOptions::default)
                .map_err(engine_err)?;
            Ok(ks.inner().clone())
        };
        let spaces = Arc::new([
            open(Space::Meta)?,
            open(Space::Docs)?,
            open(Space::Index)?,
            open(Space::Changes)?,
        ]);
        Ok(FjallEngine {
            db,
            spaces,
            commit_durability: flush_each_commit.then_some(PersistMode::Buffer),
        })
    }
}

fn pair(guard: fjall::Guard) -> Result<(Bytes, Bytes), KvError> {
    let (k, v) = guard.into_inner().map_err(engine_err)?;
    Ok((Bytes::from(k), Bytes::from(v)))
}

fn scan(iter: fjall::Iter) -> KvIter {
    Box::new(iter.map(pair))
}

fn scan_rev(iter: fjall::Iter) -> KvIter {
    Box::new(iter.rev().map(pair))
}

/// Owned bounds for fjall's `range`.
type OwnedRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn owned_range(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> OwnedRange {
    (lower.map(<[u8]>::to_vec), upper.map(<[u8]>::to_vec))
}

fn empty_scan() -> KvIter {
    Box::new(std::iter::empty())
}

impl KvEngine for FjallEngine {
    fn begin(&self) -> Result<Box<dyn KvTx>, KvError> {
        let tx = self
            .db
            .write_tx()
            .map_err(engine_err)?
            .durability(self.commit_durability);
        Ok(Box::new(FjallTx {
            tx,
            spaces: self.spaces.clone(),
        }))
    }

    fn snapshot(&self) -> Result<Box<dyn KvSnapshot>, KvError> {
        Ok(Box::new(FjallSnapshot {
            snap: self.db.read_tx(),
            spaces: self.spaces.clone(),
        }))
    }

    fn persist(&self) -> Result<(), KvError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine_err)
    }
}

struct FjallTx {
    tx: OptimisticWriteTx,
    spaces: Arc<[Keyspace; 4]>,
}

impl FjallTx {
    fn ks(&self, space: Space) -> &Keyspace {
        &self.spaces[space.index()]
    }
}

impl KvRead for FjallTx {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let v = self.tx.get(self.ks(space), key).map_err(engine_err)?;
        Ok(v.map(Bytes::from))
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        scan(self.tx.prefix(self.ks(space), prefix))
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        if range_is_empty(lower, upper) {
            return empty_scan();
        }
        let iter = self.tx.range(self.ks(space), owned_range(lower, upper));
        if reverse {
            scan_rev(iter)
        } else {
            scan(iter)
        }
    }
}

impl KvTx for FjallTx {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<(), KvError> {
        self.tx.insert(&self.spaces[space.index()], key, value);
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), KvError> {
        self.tx.remove(&self.spaces[space.index()], key);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), KvError> {
        match self.tx.commit() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(fjall::Conflict)) => Err(KvError::Conflict),
            Err(e) => Err(engine_err(e)),
        }
    }
}

struct FjallSnapshot {
    snap: Snapshot,
    spaces: Arc<[Keyspace; 4]>,
}

impl KvRead for FjallSnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let v = self
            .snap
            .get(&self.spaces[space.index()], key)
            .map_err(engine_err)?;
        Ok(v.map(Bytes::from))
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        scan(self.snap.prefix(&self.spaces[space.index()], prefix))
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        if range_is_empty(lower, upper) {
            return empty_scan();
        }
        let iter = self
            .snap
            .range(&self.spaces[space.index()], owned_range(lower, upper));
        if reverse {
            scan_rev(iter)
        } else {
            scan(iter)
        }
    }
}

impl KvSnapshot for FjallSnapshot {}
