//! Collection ids by name for point reads outside transactions
//! (`DocumentStore::get`), so a read does not look up and decode the database and
//! collection records on every request (they were half of a `get`'s storage time).
//!
//! A name resolves to the same ids until the database or collection is dropped
//! (a name created again gets new ids; creating one never changes existing ids). So
//! only drops invalidate, and they go through [`ReadCatalog::dropping`], a seqlock:
//! the epoch is odd while a drop commits and moves on after it. A read loads the epoch,
//! takes its snapshot, loads the epoch again; when both loads agree and are even, no
//! drop committed in between, so an id remembered at that epoch is the one its
//! snapshot's catalog holds. Otherwise it resolves from its snapshot as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::catalog::require_collection;
use crate::error::Result;
use crate::kv::KvSnapshot;

/// Names remembered at most; beyond it the map starts again empty.
const MAX_REMEMBERED: usize = 4096;

/// (epoch, database id, collection id) by database, then collection name.
type Ids = HashMap<String, HashMap<String, (u64, u64, u64)>>;

#[derive(Default)]
pub(crate) struct ReadCatalog {
    epoch: AtomicU64,
    ids: RwLock<Ids>,
}

impl ReadCatalog {
    /// A snapshot from `snapshot` and the ids of `db`/`coll` in it (`NotFound` as
    /// `require_collection` words it).
    pub(crate) fn resolve(
        &self,
        snapshot: impl FnOnce() -> Result<Box<dyn KvSnapshot>>,
        db: &str,
        coll: &str,
    ) -> Result<(Box<dyn KvSnapshot>, u64, u64)> {
        let before = self.epoch.load(Ordering::SeqCst);
        let snap = snapshot()?;
        let stable = before % 2 == 0 && self.epoch.load(Ordering::SeqCst) == before;
        if stable {
            let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
            if let Some(&(epoch, d, c)) = ids.get(db).and_then(|m| m.get(coll)) {
                if epoch == before {
                    return Ok((snap, d, c));
                }
            }
        }
        let (d, c) = require_collection(snap.as_ref(), db, coll)?;
        if stable {
            let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
            if ids.values().map(HashMap::len).sum::<usize>() >= MAX_REMEMBERED {
                ids.clear();
            }
            ids.entry(db.to_string())
                .or_default()
                .insert(coll.to_string(), (before, d.id, c.id));
        }
        Ok((snap, d.id, c.id))
    }

    /// Runs `drop`, which commits the drop of a database or collection, with the epoch
    /// odd, and moves the epoch on afterwards, also when it fails or panics.
    pub(crate) fn dropping<T>(&self, drop: impl FnOnce() -> T) -> T {
        struct Done<'a>(&'a ReadCatalog);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0
                    .ids
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.0.epoch.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let _done = Done(self);
        drop()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::group_commit::WaitDurable;
    use crate::{DocumentStore, StoreOptions};

    fn get(s: &DocumentStore, db: &str, key: &str) -> Option<Bytes> {
        s.get(db, "c", &[key.to_string()]).unwrap().pop().unwrap()
    }

    async fn insert(s: &DocumentStore, db: &str, key: &str) {
        let doc = Bytes::from(format!(r#"{{"_key":"{key}"}}"#));
        s.insert(db, "c", vec![doc], true).wait().await.unwrap();
    }

    #[tokio::test]
    async fn reads_follow_a_collection_or_database_dropped_and_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
        s.create_database("d").wait().await.unwrap();
        for db in ["_system", "d"] {
            insert(&s, db, "old").await;
            assert!(get(&s, db, "old").is_some(), "remembered from here on");
            assert!(get(&s, db, "old").is_some());
        }

        s.drop_collection("_system", "c").wait().await.unwrap();
        assert!(s.get("_system", "c", &["old".to_string()]).is_err());
        insert(&s, "_system", "new").await;
        assert!(
            get(&s, "_system", "new").is_some(),
            "the new collection's ids"
        );
        assert!(get(&s, "_system", "old").is_none());

        s.drop_database("d").wait().await.unwrap();
        assert!(s.get("d", "c", &["old".to_string()]).is_err());
        s.create_database("d").wait().await.unwrap();
        insert(&s, "d", "new").await;
        assert!(get(&s, "d", "new").is_some(), "the new database's ids");
        assert!(get(&s, "d", "old").is_none());
    }
}
