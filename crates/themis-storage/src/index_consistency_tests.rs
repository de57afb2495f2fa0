//! White-box tests of index maintenance: after every kind of write, the `Index` space
//! holds exactly the entries a from-scratch rebuild from the documents would hold, and
//! drops leave no entries behind.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::catalog::{
    coll_docs_prefix, read_indexes, require_collection, tagged, INDEX_PURGE_TAG, PURGE_TAG,
};
use crate::document::parse_object;
use crate::index::{entry_key, DocView};
use crate::kv::Space;
use crate::query::CollectionHandle;
use crate::{DocumentStore, StorageError, StoreOptions, UpdateMode, WaitDurable};

const DB: &str = "_system";

fn count(s: &DocumentStore, space: Space, prefix: &[u8]) -> usize {
    s.engine
        .snapshot()
        .unwrap()
        .scan_prefix(space, prefix)
        .count()
}

/// Asserts that the collection's index entries are exactly those its documents need
/// (which also proves unique indexes hold no duplicates); returns the entry count.
fn assert_consistent(s: &DocumentStore, coll: &str) -> usize {
    let snap = s.engine.snapshot().unwrap();
    let (d, c) = require_collection(snap.as_ref(), DB, coll).unwrap();
    let indexes = read_indexes(snap.as_ref(), d.id, c.id).unwrap();
    let handle = CollectionHandle {
        db: DB.to_string(),
        name: coll.to_string(),
        db_id: d.id,
        coll_id: c.id,
    };
    let prefix = coll_docs_prefix(d.id, c.id);
    let mut expected: BTreeMap<Vec<u8>, Bytes> = BTreeMap::new();
    for item in snap.scan_prefix(Space::Docs, &prefix) {
        let (k, raw) = item.unwrap();
        let key = std::str::from_utf8(&k[prefix.len()..]).unwrap().to_string();
        let attrs = parse_object(&raw).unwrap();
        let rev = attrs["_rev"].as_str().unwrap().to_string();
        let view = DocView {
            coll,
            key: &key,
            rev: &rev,
            attrs: &attrs,
        };
        for idx in &indexes {
            if let Some(e) = entry_key(&handle, idx, &view) {
                let clash = expected.insert(e, Bytes::from(key.clone()));
                assert!(
                    clash.is_none(),
                    "two documents share an entry of unique index {}: {clash:?} and {key}",
                    idx.name
                );
            }
        }
    }
    let actual: BTreeMap<Vec<u8>, Bytes> = snap
        .scan_prefix(Space::Index, &prefix)
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v)
        })
        .collect();
    assert_eq!(actual.len(), expected.len(), "entry count");
    assert_eq!(actual, expected);
    actual.len()
}

struct Gen(u64);
impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn key(&mut self) -> String {
        format!("k{}", self.below(80))
    }
    /// A document with some of the indexed attributes, from small value pools so that
    /// values collide.
    fn doc(&mut self) -> Value {
        let mut m = serde_json::Map::new();
        if self.below(5) != 0 {
            m.insert("u".into(), json!(self.below(60)));
        }
        match self.below(4) {
            0 => {}
            1 => {
                m.insert("a".into(), json!({"b": null}));
            }
            _ => {
                m.insert("a".into(), json!({"b": format!("s{}", self.below(40))}));
            }
        }
        let g = [
            json!(null),
            json!(1),
            json!("x"),
            json!([1, 2]),
            json!(true),
        ];
        if self.below(3) != 0 {
            m.insert("g".into(), g[self.below(5) as usize].clone());
        }
        if self.below(2) == 0 {
            m.insert("h".into(), json!(self.below(4)));
        }
        m.insert("pad".into(), json!(self.below(1000)));
        Value::Object(m)
    }
    fn keyed(&mut self) -> Value {
        let mut d = self.doc();
        if self.below(2) == 0 {
            let k = self.key();
            d.as_object_mut().unwrap().insert("_key".into(), json!(k));
        }
        d
    }
}

fn raw(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap())
}

/// Expected failures of a random operation; anything else fails the test.
fn tolerate<T>(r: Result<T, StorageError>) {
    match r {
        Ok(_) | Err(StorageError::Conflict(_)) | Err(StorageError::NotFound(_)) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[tokio::test]
async fn random_writes_keep_entries_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    s.create_collection(DB, "c").wait().await.unwrap();
    let defs: [(&str, &[&str], bool, bool); 4] = [
        ("u", &["u"], true, false),
        ("ab", &["a.b"], true, true),
        ("gh", &["g", "h"], false, false),
        ("h", &["h"], false, true),
    ];
    for (name, fields, unique, sparse) in defs {
        let fields = fields.iter().map(|f| f.to_string()).collect();
        s.create_index(DB, "c", name, fields, unique, sparse)
            .wait()
            .await
            .unwrap();
    }
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    for op in 0..2000 {
        match g.below(9) {
            0 | 1 => tolerate(s.insert(DB, "c", vec![raw(&g.keyed())], false).wait().await),
            2 => {
                let n = 1 + g.below(3);
                let docs = (0..n).map(|_| raw(&g.keyed())).collect();
                tolerate(s.insert(DB, "c", docs, false).wait().await);
            }
            3 | 4 => {
                let mode = if g.below(2) == 0 {
                    UpdateMode::Merge
                } else {
                    UpdateMode::Replace
                };
                let (k, d) = (g.key(), g.doc());
                tolerate(s.update(DB, "c", &k, raw(&d), mode, None).wait().await);
            }
            5 => {
                let keys = vec![g.key(), g.key()];
                tolerate(s.delete(DB, "c", &keys, None).wait().await);
            }
            _ => {
                // A query transaction with a few operations; committed or dropped.
                let mut tx = s.begin_write().unwrap();
                let c = tx.collection(DB, "c", false).unwrap();
                for _ in 0..1 + g.below(4) {
                    match g.below(3) {
                        0 => tolerate(tx.insert(&c, g.keyed())),
                        1 => {
                            let (k, d) = (g.key(), g.doc());
                            let keep_null = g.below(2) == 0;
                            tolerate(tx.update(&c, &k, d, UpdateMode::Merge, keep_null));
                        }
                        _ => tolerate(tx.remove(&c, &g.key())),
                    }
                }
                if g.below(4) != 0 {
                    tx.commit().unwrap().wait().await.unwrap();
                }
            }
        }
        if op % 250 == 0 {
            assert_consistent(&s, "c");
        }
    }
    let entries = assert_consistent(&s, "c");
    assert!(
        entries > 50,
        "the mix left enough to check: {entries} entries"
    );
    // An index created now, over what the mix left, equals the maintained one.
    s.create_index(DB, "c", "late", vec!["h".into(), "g".into()], false, false)
        .wait()
        .await
        .unwrap();
    assert_consistent(&s, "c");
}

#[tokio::test]
async fn drops_purge_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    s.create_database("shop").wait().await.unwrap();
    for (db, coll) in [(DB, "a"), (DB, "b"), ("shop", "p")] {
        let docs = (0..1500).map(|i| raw(&json!({"n": i}))).collect();
        s.insert(db, coll, docs, true).wait().await.unwrap();
        for (name, unique) in [("n", true), ("n2", false)] {
            s.create_index(db, coll, name, vec!["n".into()], unique, false)
                .wait()
                .await
                .unwrap();
        }
    }
    assert_eq!(count(&s, Space::Index, &[]), 3 * 3000);

    // Drop one index: its entries go, the other's stay.
    s.drop_index(DB, "a", "n").wait().await.unwrap();
    assert_eq!(assert_consistent(&s, "a"), 1500);
    assert_eq!(count(&s, Space::Index, &[]), 3 * 3000 - 1500);
    // Drop a collection, then a database.
    let snap = s.engine.snapshot().unwrap();
    let (d, b) = require_collection(snap.as_ref(), DB, "b").unwrap();
    drop(snap);
    s.drop_collection(DB, "b").wait().await.unwrap();
    assert_eq!(count(&s, Space::Index, &coll_docs_prefix(d.id, b.id)), 0);
    s.drop_database("shop").wait().await.unwrap();
    assert_eq!(count(&s, Space::Index, &[]), 1500);
    assert_eq!(count(&s, Space::Meta, &[PURGE_TAG]), 0);
    assert_eq!(count(&s, Space::Meta, &[INDEX_PURGE_TAG]), 0);
    // Catalog records of dropped indexes are gone with their collections.
    assert_eq!(count(&s, Space::Meta, &[crate::catalog::INDEX_TAG]), 1);
    // A recreated collection starts without indexes.
    s.insert(DB, "b", vec![raw(&json!({"n": 1}))], true)
        .wait()
        .await
        .unwrap();
    assert!(s.list_indexes(DB, "b").unwrap().is_empty());
}

#[tokio::test]
async fn refused_unique_index_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    let docs = (0..2000).map(|i| raw(&json!({"n": i % 1999}))).collect();
    s.insert(DB, "c", docs, true).wait().await.unwrap();
    let before = count(&s, Space::Meta, &[]);
    let r = s
        .create_index(DB, "c", "n", vec!["n".into()], true, false)
        .wait()
        .await;
    assert!(matches!(r, Err(StorageError::Conflict(_))), "{r:?}");
    assert_eq!(count(&s, Space::Index, &[]), 0);
    assert_eq!(count(&s, Space::Meta, &[]), before, "no catalog change");
}

/// A crash between an index drop's commit and the end of its purge: the next open
/// deletes the orphaned entries and the marker.
#[tokio::test]
async fn interrupted_index_purge_finishes_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let prefix;
    {
        let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
        let docs = (0..1200).map(|i| raw(&json!({"n": i}))).collect();
        s.insert(DB, "c", docs, true).wait().await.unwrap();
        let info = s
            .create_index(DB, "c", "n", vec!["n".into()], false, false)
            .wait()
            .await
            .unwrap();
        // The drop's transaction, without the purge that normally follows it.
        prefix = s
            .run_tx("test drop", |tx| {
                let (d, c) = require_collection(&*tx, DB, "c")?;
                tx.delete(
                    Space::Meta,
                    &crate::catalog::index_catalog_key(d.id, c.id, "n"),
                )?;
                let prefix = crate::catalog::index_entries_prefix(d.id, c.id, info.id);
                tx.put(Space::Meta, &tagged(INDEX_PURGE_TAG, &prefix), Bytes::new())?;
                Ok(prefix)
            })
            .unwrap();
        s.pending(()).wait().await.unwrap();
        assert_eq!(count(&s, Space::Index, &prefix), 1200);
        assert!(s.list_indexes(DB, "c").unwrap().is_empty());
    }
    let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(count(&s, Space::Index, &prefix), 0);
    assert_eq!(count(&s, Space::Meta, &[INDEX_PURGE_TAG]), 0);
    assert_eq!(count(&s, Space::Docs, &[]), 1200);
}
