//! Behaviour of `DocumentStore` on real fjall storage in a temporary directory.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use themis_storage::{
    decode_revision, DocumentStore, StorageError, StoreOptions, SyncMode, UpdateMode, UserRecord,
    WaitDurable, SYSTEM_DATABASE,
};

fn open(dir: &tempfile::TempDir) -> DocumentStore {
    DocumentStore::open(StoreOptions::new(dir.path())).expect("open store")
}

fn doc(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).expect("serialize"))
}

fn parse(b: &Option<Bytes>) -> Value {
    serde_json::from_slice(b.as_ref().expect("document present")).expect("stored JSON")
}

fn keys(ks: &[&str]) -> Vec<String> {
    ks.iter().map(|s| s.to_string()).collect()
}

async fn get_one(s: &DocumentStore, db: &str, coll: &str, key: &str) -> Option<Value> {
    let got = s.get(db, coll, &keys(&[key])).expect("get");
    got[0]
        .as_ref()
        .map(|b| serde_json::from_slice(b).expect("stored JSON"))
}

#[tokio::test]
async fn crud_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let info = s
        .create_collection("_system", "users")
        .wait()
        .await
        .unwrap();
    assert_eq!(info.name, "users");

    let metas = s
        .insert(
            "_system",
            "users",
            vec![doc(
                json!({"_key":"alice","age":30,"_id":"x/y","_rev":"bogus"}),
            )],
            false,
        )
        .wait()
        .await
        .unwrap();
    assert_eq!(metas[0].key, "alice");
    let rev1 = metas[0].rev.clone();

    let got = s.get("_system", "users", &keys(&["alice", "bob"])).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[1].is_none());
    // System attributes come first, in this order, and input _id/_rev are ignored.
    let text = std::str::from_utf8(got[0].as_ref().unwrap()).unwrap();
    assert_eq!(
        text,
        format!(r#"{{"_key":"alice","_id":"users/alice","_rev":"{rev1}","age":30}}"#)
    );

    let m2 = s
        .update(
            "_system",
            "users",
            "alice",
            doc(json!({"age":31})),
            UpdateMode::Merge,
            None,
        )
        .wait()
        .await
        .unwrap();
    assert_ne!(m2.rev, rev1);
    let v = get_one(&s, "_system", "users", "alice").await.unwrap();
    assert_eq!(v["age"], 31);
    assert_eq!(v["_rev"], m2.rev.as_str());

    let stats = s.collection_stats("_system", "users").unwrap();
    assert_eq!(stats.count, 1);
    assert_eq!(
        stats.data_bytes,
        s.get("_system", "users", &keys(&["alice"])).unwrap()[0]
            .as_ref()
            .unwrap()
            .len() as u64
    );

    let out = s
        .delete(
            "_system",
            "users",
            &keys(&["alice", "nobody", "alice"]),
            None,
        )
        .wait()
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    assert_eq!(out.not_found, keys(&["nobody"]));
    assert!(get_one(&s, "_system", "users", "alice").await.is_none());
    assert_eq!(s.collection_stats("_system", "users").unwrap().count, 0);

    // Update of a missing document is NotFound.
    let e = s
        .update(
            "_system",
            "users",
            "alice",
            doc(json!({"a":1})),
            UpdateMode::Merge,
            None,
        )
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
}

#[tokio::test]
async fn generated_keys_are_unique_and_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let docs: Vec<Bytes> = (0..50).map(|i| doc(json!({ "i": i }))).collect();
    let metas = s.insert("_system", "c", docs, true).wait().await.unwrap();
    for w in metas.windows(2) {
        let a: u64 = w[0].key.parse().unwrap();
        let b: u64 = w[1].key.parse().unwrap();
        assert!(b > a);
        assert!(w[1].key > w[0].key, "string order follows creation order");
    }
    let v = get_one(&s, "_system", "c", &metas[7].key).await.unwrap();
    assert_eq!(v["i"], 7);
    assert_eq!(v["_id"], format!("c/{}", metas[7].key));
}

#[tokio::test]
async fn bulk_insert_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection("_system", "c").wait().await.unwrap();

    // One document that is not an object: nothing is stored, position named.
    let e = s
        .insert(
            "_system",
            "c",
            vec![
                doc(json!({"_key":"a"})),
                doc(json!([1, 2])),
                doc(json!({"_key":"b"})),
            ],
            false,
        )
        .wait()
        .await
        .unwrap_err();
    match &e {
        StorageError::InvalidArgument(m) => {
            assert!(m.contains("position 1"), "{m}");
            assert!(m.contains("JSON object"), "{m}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let e = s
        .insert(
            "_system",
            "c",
            vec![doc(json!({"_key":"a"})), Bytes::from_static(b"{not json")],
            false,
        )
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
    assert_eq!(s.collection_stats("_system", "c").unwrap().count, 0);

    // A duplicate key inside the bulk: Conflict, nothing stored.
    let e = s
        .insert(
            "_system",
            "c",
            vec![
                doc(json!({"_key":"x"})),
                doc(json!({"_key":"y"})),
                doc(json!({"_key":"x"})),
            ],
            false,
        )
        .wait()
        .await
        .unwrap_err();
    match &e {
        StorageError::Conflict(m) => assert!(
            m.contains("unique constraint violated: document with _key 'x' already exists in collection 'c'"),
            "{m}"
        ),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.collection_stats("_system", "c").unwrap().count, 0);

    // A key that exists already: Conflict, and the other documents are not stored.
    s.insert("_system", "c", vec![doc(json!({"_key":"x","v":1}))], false)
        .wait()
        .await
        .unwrap();
    let e = s
        .insert(
            "_system",
            "c",
            vec![doc(json!({"_key":"new"})), doc(json!({"_key":"x","v":2}))],
            false,
        )
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e}");
    let got = s.get("_system", "c", &keys(&["new", "x"])).unwrap();
    assert!(got[0].is_none());
    assert_eq!(parse(&got[1])["v"], 1);
}

#[tokio::test]
async fn key_validation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection("_system", "c").wait().await.unwrap();

    let k254 = "k".repeat(254);
    s.insert("_system", "c", vec![doc(json!({ "_key": k254 }))], false)
        .wait()
        .await
        .unwrap();
    assert!(get_one(&s, "_system", "c", &k254).await.is_some());

    let k255 = "k".repeat(255);
    let bad_keys = [
        json!(k255),
        json!(""),
        json!("a/b"),
        json!("a b"),
        json!("ü"),
        json!("a#b"),
        json!(42),
        json!(null),
    ];
    for bad in bad_keys {
        let e = s
            .insert("_system", "c", vec![doc(json!({ "_key": bad }))], false)
            .wait()
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::InvalidArgument(_)),
            "{bad}: {e:?}"
        );
    }
    let ok = "a_-:.@()+,=;$!*'%Z9";
    s.insert("_system", "c", vec![doc(json!({ "_key": ok }))], false)
        .wait()
        .await
        .unwrap();
    assert_eq!(
        get_one(&s, "_system", "c", ok).await.unwrap()["_id"],
        format!("c/{ok}")
    );

    // Reads and deletes reject invalid keys too, naming the rule.
    let e = s.get("_system", "c", &keys(&["a/b"])).unwrap_err();
    match e {
        StorageError::InvalidArgument(m) => assert!(m.contains("1-254 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    let e = s
        .delete("_system", "c", &keys(&[""]), None)
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)));
    assert_eq!(s.collection_stats("_system", "c").unwrap().count, 2);
}

#[tokio::test]
async fn name_validation_and_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for bad in ["_mine", "1abc", "a.b", "", &"x".repeat(65)] {
        let e = s.create_database(bad).wait().await.unwrap_err();
        assert!(
            matches!(e, StorageError::InvalidArgument(_)),
            "{bad}: {e:?}"
        );
        let e = s
            .create_collection("_system", bad)
            .wait()
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::InvalidArgument(_)),
            "{bad}: {e:?}"
        );
    }
    let e = s.create_database("_x").wait().await.unwrap_err();
    assert!(e.message().contains("reserved"), "{e}");
    s.create_database(&"x".repeat(64)).wait().await.unwrap();
    s.create_database("shop").wait().await.unwrap();
    let e = s.create_database("shop").wait().await.unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e}");
    s.create_collection("shop", "orders").wait().await.unwrap();
    let e = s
        .create_collection("shop", "orders")
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e}");

    let e = s.list_collections("nope").unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    let e = s
        .insert("nope", "c", vec![doc(json!({}))], true)
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    let e = s
        .insert("shop", "users", vec![doc(json!({}))], false)
        .wait()
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StorageError::NotFound(
            "collection 'users' not found in database 'shop': create it first or enable \
             auto_create_collections"
                .to_string()
        )
    );
    let e = s.get("shop", "users", &keys(&["a"])).unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    // auto_create makes it, with a valid name only.
    s.insert("shop", "users", vec![doc(json!({}))], true)
        .wait()
        .await
        .unwrap();
    let e = s
        .insert("shop", "_hidden", vec![doc(json!({}))], true)
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
    let names: Vec<String> = s
        .list_collections("shop")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, keys(&["orders", "users"]));
}

#[tokio::test]
async fn merge_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.insert(
        "_system",
        "c",
        vec![doc(json!({
            "_key": "d",
            "name": "n",
            "nested": {"a": 1, "b": {"x": 1, "y": 2}},
            "gone": true,
            "list": [1, 2, 3]
        }))],
        true,
    )
    .wait()
    .await
    .unwrap();

    s.update(
        "_system",
        "c",
        "d",
        doc(json!({
            "_key": "other", "_id": "c/other", "_rev": "nope",
            "nested": {"b": {"y": null, "z": 3}, "c": 4},
            "gone": null,
            "list": [9],
            "fresh": {"keep": 1, "drop": null}
        })),
        UpdateMode::Merge,
        None,
    )
    .wait()
    .await
    .unwrap();
    let v = get_one(&s, "_system", "c", "d").await.unwrap();
    assert_eq!(v["_key"], "d");
    assert_eq!(v["_id"], "c/d");
    assert_ne!(v["_rev"], "nope");
    let mut user = v.as_object().unwrap().clone();
    user.retain(|k, _| !k.starts_with('_'));
    assert_eq!(
        Value::Object(user),
        json!({
            "name": "n",
            "nested": {"a": 1, "b": {"x": 1, "z": 3}, "c": 4},
            "list": [9],
            "fresh": {"keep": 1}
        })
    );

    s.update(
        "_system",
        "c",
        "d",
        doc(json!({"only": 1, "n": null, "_key": "zzz"})),
        UpdateMode::Replace,
        None,
    )
    .wait()
    .await
    .unwrap();
    let v = get_one(&s, "_system", "c", "d").await.unwrap();
    let text = serde_json::to_string(&v).unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"_key":"d","_id":"c/d","_rev":{},"only":1,"n":null}}"#,
            v["_rev"]
        )
    );

    let e = s
        .update(
            "_system",
            "c",
            "d",
            doc(json!([1])),
            UpdateMode::Merge,
            None,
        )
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
}

#[tokio::test]
async fn if_revision_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let m = s
        .insert("_system", "c", vec![doc(json!({"_key":"d","v":1}))], true)
        .wait()
        .await
        .unwrap();
    let rev1 = m[0].rev.clone();

    let m2 = s
        .update(
            "_system",
            "c",
            "d",
            doc(json!({"v":2})),
            UpdateMode::Merge,
            Some(&rev1),
        )
        .wait()
        .await
        .unwrap();
    // The old revision no longer matches: Conflict naming both.
    let e = s
        .update(
            "_system",
            "c",
            "d",
            doc(json!({"v":3})),
            UpdateMode::Replace,
            Some(&rev1),
        )
        .wait()
        .await
        .unwrap_err();
    match &e {
        StorageError::Conflict(m) => {
            assert!(m.contains(&rev1) && m.contains(&m2.rev), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get_one(&s, "_system", "c", "d").await.unwrap()["v"], 2);

    let e = s
        .delete("_system", "c", &keys(&["d"]), Some(&rev1))
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e}");
    assert!(get_one(&s, "_system", "c", "d").await.is_some());
    let out = s
        .delete("_system", "c", &keys(&["d"]), Some(&m2.rev))
        .wait()
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_merges_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    s.insert("_system", "c", vec![doc(json!({"_key":"hot"}))], true)
        .wait()
        .await
        .unwrap();

    // Each task keeps its own counter attribute in the same document. A lost update
    // (a merge computed from a stale read) would roll back another task's counter.
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 1..=50 {
                s.update(
                    "_system",
                    "c",
                    "hot",
                    doc(json!({ format!("t{t}"): i, "nested": { format!("t{t}"): i } })),
                    UpdateMode::Merge,
                    None,
                )
                .wait()
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "1600 concurrent merges needed {} conflict retries",
        s.conflict_retries()
    );
    let v = get_one(&s, "_system", "c", "hot").await.unwrap();
    for t in 0..32 {
        assert_eq!(v[format!("t{t}")], 50, "task {t} lost an update: {v}");
        assert_eq!(v["nested"][format!("t{t}")], 50, "task {t}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_set_counter_with_if_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    s.insert("_system", "c", vec![doc(json!({"_key":"n","n":0}))], true)
        .wait()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                loop {
                    let cur = get_one(&s, "_system", "c", "n").await.unwrap();
                    let n = cur["n"].as_u64().unwrap();
                    let rev = cur["_rev"].as_str().unwrap().to_string();
                    match s
                        .update(
                            "_system",
                            "c",
                            "n",
                            doc(json!({ "n": n + 1 })),
                            UpdateMode::Merge,
                            Some(&rev),
                        )
                        .wait()
                        .await
                    {
                        Ok(_) => break,
                        Err(StorageError::Conflict(_)) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(get_one(&s, "_system", "c", "n").await.unwrap()["n"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_batches_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    s.create_collection("_system", "c").wait().await.unwrap();
    let before = s.sync_stats();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert("_system", "c", vec![doc(json!({ "i": i }))], false)
                .wait()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = s.sync_stats();
    let commits = after.commits - before.commits;
    let syncs = after.syncs - before.syncs;
    eprintln!("group commit: {commits} commits acknowledged with {syncs} syncs");
    assert_eq!(commits, 200);
    assert!(syncs >= 1);
    assert!(syncs < commits, "{syncs} syncs for {commits} commits");
    assert_eq!(s.collection_stats("_system", "c").unwrap().count, 200);
}

#[tokio::test]
async fn sync_never_acknowledges_without_fsync_and_flush_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    opts.sync = SyncMode::Never;
    {
        let s = DocumentStore::open(opts.clone()).unwrap();
        let before = s.sync_stats();
        for i in 0..10 {
            s.insert("_system", "c", vec![doc(json!({ "i": i }))], true)
                .wait()
                .await
                .unwrap();
        }
        let mid = s.sync_stats();
        assert_eq!(mid.commits - before.commits, 10);
        assert_eq!(mid.syncs, before.syncs);
        s.flush().await.unwrap();
        assert_eq!(s.sync_stats().syncs, mid.syncs + 1);
    }
    let s = DocumentStore::open(opts).unwrap();
    assert_eq!(s.collection_stats("_system", "c").unwrap().count, 10);
}

#[tokio::test]
async fn reopen_finds_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rev_before;
    {
        let s = open(&dir);
        s.create_database("shop").wait().await.unwrap();
        s.create_collection("shop", "orders").wait().await.unwrap();
        s.insert(
            "shop",
            "orders",
            vec![
                doc(json!({"_key":"o1","total":10})),
                doc(json!({"_key":"o2","total":20})),
                doc(json!({"_key":"o3","total":30})),
            ],
            false,
        )
        .wait()
        .await
        .unwrap();
        rev_before = s
            .update(
                "shop",
                "orders",
                "o1",
                doc(json!({"total":11})),
                UpdateMode::Merge,
                None,
            )
            .wait()
            .await
            .unwrap()
            .rev;
        s.delete("shop", "orders", &keys(&["o2"]), None)
            .wait()
            .await
            .unwrap();
        s.put_user(&UserRecord {
            name: "root".to_string(),
            password_hash: "$2b$12$hash".to_string(),
            roles: json!(["admin"]),
            created_at_ms: 1,
        })
        .wait()
        .await
        .unwrap();
        // No flush: acknowledged means durable already.
    }
    let s = open(&dir);
    assert_eq!(
        s.list_databases().unwrap(),
        keys(&[SYSTEM_DATABASE, "shop"])
    );
    let got = s.get("shop", "orders", &keys(&["o1", "o2", "o3"])).unwrap();
    assert_eq!(parse(&got[0])["total"], 11);
    assert_eq!(parse(&got[0])["_rev"], rev_before.as_str());
    assert!(got[1].is_none());
    assert_eq!(parse(&got[2])["total"], 30);
    let u = s.get_user("root").unwrap().unwrap();
    assert_eq!(u.roles, json!(["admin"]));

    // Revisions issued after a restart are above those issued before it.
    let rev_after = s
        .update(
            "shop",
            "orders",
            "o1",
            doc(json!({"total":12})),
            UpdateMode::Merge,
            None,
        )
        .wait()
        .await
        .unwrap()
        .rev;
    assert!(decode_revision(&rev_after).unwrap() > decode_revision(&rev_before).unwrap());
}

#[tokio::test]
async fn drop_and_recreate_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_database("db1").wait().await.unwrap();
    let c1 = s.create_collection("db1", "c").wait().await.unwrap();
    s.insert(
        "db1",
        "c",
        vec![doc(json!({"_key":"a"})), doc(json!({"_key":"b"}))],
        false,
    )
    .wait()
    .await
    .unwrap();
    s.drop_collection("db1", "c").wait().await.unwrap();
    let e = s.get("db1", "c", &keys(&["a"])).unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    let e = s.drop_collection("db1", "c").wait().await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");

    let c2 = s.create_collection("db1", "c").wait().await.unwrap();
    assert!(c2.id > c1.id, "collection ids are never reused");
    assert_eq!(s.collection_stats("db1", "c").unwrap().count, 0);
    assert!(get_one(&s, "db1", "c", "a").await.is_none());
    s.insert("db1", "c", vec![doc(json!({"_key":"a"}))], false)
        .wait()
        .await
        .unwrap();

    s.create_collection("db1", "other").wait().await.unwrap();
    s.drop_database("db1").wait().await.unwrap();
    assert_eq!(s.list_databases().unwrap(), keys(&[SYSTEM_DATABASE]));
    let e = s.list_collections("db1").unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    let e = s.drop_database("db1").wait().await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");

    s.create_database("db1").wait().await.unwrap();
    assert!(s.list_collections("db1").unwrap().is_empty());
    s.create_collection("db1", "c").wait().await.unwrap();
    assert_eq!(s.collection_stats("db1", "c").unwrap().count, 0);

    // And after a restart nothing comes back either.
    drop(s);
    let s = open(&dir);
    assert!(s
        .list_collections("db1")
        .unwrap()
        .iter()
        .all(|c| c.name == "c"));
    assert_eq!(s.collection_stats("db1", "c").unwrap().count, 0);
}

#[tokio::test]
async fn system_database_exists_and_cannot_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        assert_eq!(s.list_databases().unwrap(), keys(&[SYSTEM_DATABASE]));
        let e = s.drop_database(SYSTEM_DATABASE).wait().await.unwrap_err();
        assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
        let e = s.create_database(SYSTEM_DATABASE).wait().await.unwrap_err();
        assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
        assert!(s.list_collections(SYSTEM_DATABASE).unwrap().is_empty());
    }
    let s = open(&dir);
    assert_eq!(s.list_databases().unwrap(), keys(&[SYSTEM_DATABASE]));
}

#[tokio::test]
async fn revisions_increase() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut prev = s
        .insert("_system", "c", vec![doc(json!({"_key":"r"}))], true)
        .wait()
        .await
        .unwrap()[0]
        .rev
        .clone();
    for i in 0..100 {
        let rev = s
            .update(
                "_system",
                "c",
                "r",
                doc(json!({ "i": i })),
                UpdateMode::Merge,
                None,
            )
            .wait()
            .await
            .unwrap()
            .rev;
        assert!(
            decode_revision(&rev).unwrap() > decode_revision(&prev).unwrap(),
            "{rev} after {prev}"
        );
        assert!(rev > prev, "revision strings sort like their ticks");
        prev = rev;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_auto_create_makes_one_collection() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert("_system", "auto", vec![doc(json!({ "i": i }))], true)
                .wait()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let colls = s.list_collections("_system").unwrap();
    assert_eq!(colls.len(), 1);
    assert_eq!(s.collection_stats("_system", "auto").unwrap().count, 16);
}

#[tokio::test]
async fn users_crud() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert!(s.get_user("root").unwrap().is_none());
    let rec = UserRecord {
        name: "root".to_string(),
        password_hash: "h".to_string(),
        roles: json!({"admin": true}),
        created_at_ms: 5,
    };
    s.put_user(&rec).wait().await.unwrap();
    s.put_user(&UserRecord {
        name: "alice".to_string(),
        ..rec.clone()
    })
    .wait()
    .await
    .unwrap();
    assert_eq!(s.get_user("root").unwrap().unwrap(), rec);
    let names: Vec<String> = s
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, keys(&["alice", "root"]));
    s.delete_user("alice").wait().await.unwrap();
    let e = s.delete_user("alice").wait().await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e}");
    let e = s.get_user("").unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
}

#[tokio::test]
async fn second_open_of_same_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(&dir);
    let e = DocumentStore::open(StoreOptions::new(dir.path()))
        .err()
        .expect("second open must fail");
    assert!(matches!(e, StorageError::Internal(_)), "{e}");
    assert!(e.message().contains("no other server"), "{e}");
}
