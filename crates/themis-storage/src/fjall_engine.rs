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
//!
//! `persist` does not use fjall's own `persist(SyncAll)`: that holds the journal's
//! lock for the whole fsync, so no commit could proceed while a group sync runs, and
//! the commits that queued behind it missed the next sync as well. Instead
//! [`JournalSync`] hands the journal's buffer to the OS under the lock (a `write`),
//! then fsyncs the active journal file through a descriptor of its own, outside the
//! lock, while commits go on (measured in docs/benchmarks.md, "Syncing the journal
//! outside its lock").

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    journal: JournalSync,
}

/// Syncs fjall's active journal file outside fjall's journal lock (see the module
/// doc).
///
/// Why that covers every commit that returned before [`KvEngine::persist`] was called:
/// those commits are in the journal's buffer, and `persist(Buffer)` writes it to the
/// file that is active at that moment, `N.jnl`. Journals are numbered upwards and
/// fjall fsyncs `N.jnl` before it creates `N+1.jnl` when it rotates. So after the
/// write, if `N+1.jnl` exists then `N.jnl` is synced already, and the newest journal
/// is the only one that may hold unsynced data: that is the one fsynced here. fjall
/// deletes sealed journals oldest first, so when the journal last synced here is gone
/// the directory is listed again for the newest. When anything about the files is not
/// as expected, `persist` falls back to fjall's own `persist(SyncAll)`.
struct JournalSync {
    dir: PathBuf,
    /// The newest journal seen so far, with a descriptor to fsync it.
    active: Mutex<Option<(u64, File)>>,
}

impl JournalSync {
    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.jnl"))
    }

    /// The id of the newest journal in the directory.
    fn newest(&self) -> std::io::Result<u64> {
        let mut newest = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            newest = newest.max(id);
        }
        newest.ok_or_else(|| std::io::Error::other("no journal file in the data directory"))
    }

    /// Fsyncs the newest journal (after its buffer went to the OS).
    fn sync(&self) -> std::io::Result<()> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut id = match active.as_ref() {
            Some((id, _)) => *id,
            None => self.newest()?,
        };
        while self.path(id + 1).try_exists()? {
            id += 1;
        }
        if !self.path(id).try_exists()? {
            // Deleted since the last sync (sealed, flushed, removed): its successors
            // may be gone too.
            id = self.newest()?;
        }
        if active.as_ref().is_none_or(|(open, _)| *open != id) {
            // Written only by fjall; opened for writing because some systems refuse to
            // fsync a descriptor opened read-only.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(self.path(id))?;
            *active = Some((id, file));
        }
        match active.as_ref() {
            Some((_, file)) => file.sync_data(),
            None => Err(std::io::Error::other("no journal open")),
        }
    }
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
            journal: JournalSync {
                dir: path.to_path_buf(),
                active: Mutex::new(None),
            },
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
        self.db.persist(PersistMode::Buffer).map_err(engine_err)?;
        if let Err(e) = self.journal.sync() {
            tracing::warn!(error = %e, "syncing the journal file directly failed; syncing through fjall");
            self.journal
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            return self.db.persist(PersistMode::SyncAll).map_err(engine_err);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(e: &FjallEngine, key: &[u8], value: Bytes) {
        let mut tx = e.begin().unwrap();
        tx.put(Space::Docs, key, value).unwrap();
        tx.commit().unwrap();
    }

    fn synced_journal(e: &FjallEngine) -> u64 {
        e.journal.active.lock().unwrap().as_ref().unwrap().0
    }

    #[test]
    fn the_journal_synced_is_the_newest_even_after_older_ones_were_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let journal = |id: u64| dir.path().join(format!("{id}.jnl"));
        std::fs::write(journal(5), b"a").unwrap();
        let sync = JournalSync {
            dir: dir.path().to_path_buf(),
            active: Mutex::new(None),
        };
        let synced = || sync.active.lock().unwrap().as_ref().unwrap().0;
        sync.sync().unwrap();
        assert_eq!(synced(), 5);
        std::fs::write(journal(6), b"b").unwrap();
        sync.sync().unwrap();
        assert_eq!(synced(), 6);
        // Two rotations and a clean-up between syncs: 6 and 7 are gone, 8 is active.
        std::fs::write(journal(7), b"c").unwrap();
        std::fs::write(journal(8), b"d").unwrap();
        std::fs::remove_file(journal(5)).unwrap();
        std::fs::remove_file(journal(6)).unwrap();
        std::fs::remove_file(journal(7)).unwrap();
        sync.sync().unwrap();
        assert_eq!(synced(), 8);
    }

    #[test]
    fn persist_syncs_the_newest_journal_after_fjall_rotates_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path(), 8 << 20, false).unwrap();
        put(&e, b"first", Bytes::from_static(b"1"));
        e.persist().unwrap();
        let first = synced_journal(&e);
        assert_eq!(first, e.journal.newest().unwrap());

        // fjall rotates its journal at a memtable flush once it holds over 64 MB
        // (of incompressible bytes: the journal may be compressed).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..66u32 {
            let noise: Vec<u8> = (0..1 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            put(&e, &i.to_be_bytes(), Bytes::from(noise));
        }
        e.spaces[Space::Docs.index()]
            .rotate_memtable_and_wait()
            .unwrap();
        assert!(e.journal.newest().unwrap() > first, "the journal rotated");

        put(&e, b"last", Bytes::from_static(b"2"));
        e.persist().unwrap();
        assert_eq!(synced_journal(&e), e.journal.newest().unwrap());
        drop(e);
        let e = FjallEngine::open(dir.path(), 8 << 20, false).unwrap();
        let snap = e.snapshot().unwrap();
        assert_eq!(
            snap.get(Space::Docs, b"last").unwrap(),
            Some(Bytes::from("2"))
        );
        assert_eq!(
            snap.get(Space::Docs, b"first").unwrap(),
            Some(Bytes::from("1"))
        );
    }
}
