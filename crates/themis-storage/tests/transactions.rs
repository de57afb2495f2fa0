//! Interactive transactions and the change log, on real fjall storage.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use themis_storage::{
    ChangeKind, DocumentStore, FeedItem, FeedSubscription, Isolation, Retention, StorageError,
    StoreOptions, SyncMode, Transaction, UpdateMode, WaitDurable,
};

const DB: &str = "_system";

fn open(dir: &tempfile::TempDir) -> DocumentStore {
    DocumentStore::open(StoreOptions::new(dir.path())).expect("open store")
}

fn doc(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).expect("serialize"))
}

fn keys(ks: &[&str]) -> Vec<String> {
    ks.iter().map(|s| s.to_string()).collect()
}

fn value(b: &Option<Bytes>) -> Option<Value> {
    b.as_ref()
        .map(|b| serde_json::from_slice(b).expect("stored JSON"))
}

async fn seed(s: &DocumentStore, coll: &str, docs: Vec<Value>) {
    s.insert(DB, coll, docs.into_iter().map(doc).collect(), true)
        .wait()
        .await
        .expect("seed");
}

fn read(s: &DocumentStore, coll: &str, key: &str) -> Option<Value> {
    value(&s.get(DB, coll, &keys(&[key])).expect("get")[0])
}

/// Field `n` of document `key` of "c", read inside `tx`.
fn n_in(tx: &Transaction, key: &str) -> i64 {
    value(&tx.get("c", &keys(&[key])).unwrap()[0]).unwrap()["n"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn own_writes_are_visible_inside_and_nothing_outside_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "a", "n": 1})]).await;
    for (earlier, iso) in [
        Isolation::Snapshot,
        Isolation::Serializable,
        Isolation::ReadCommitted,
    ]
    .into_iter()
    .enumerate()
    {
        let mut tx = s.begin_transaction(DB, iso, false).unwrap();
        tx.insert(
            "c",
            vec![doc(json!({"_key": format!("new-{iso:?}")}))],
            false,
        )
        .unwrap();
        tx.update("c", "a", doc(json!({"n": 2})), UpdateMode::Merge, None)
            .unwrap();
        let got = tx.get("c", &keys(&["a", &format!("new-{iso:?}")])).unwrap();
        assert_eq!(value(&got[0]).unwrap()["n"], 2, "{iso:?}");
        assert!(got[1].is_some(), "{iso:?}");
        // A query view sees the same, scans included.
        let view = tx.view().unwrap();
        let h = view.collection(DB, "c").unwrap();
        let scanned = view.scan(&h).count();
        assert_eq!(scanned, 2 + earlier, "{iso:?}");
        // Nothing outside.
        assert_eq!(read(&s, "c", "a").unwrap()["n"], 1, "{iso:?}");
        assert!(read(&s, "c", &format!("new-{iso:?}")).is_none());
        tx.commit().wait().await.unwrap();
        assert_eq!(read(&s, "c", "a").unwrap()["n"], 2);
        assert!(read(&s, "c", &format!("new-{iso:?}")).is_some());
        s.update(DB, "c", "a", doc(json!({"n": 1})), UpdateMode::Merge, None)
            .wait()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn dropping_a_transaction_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "a"})]).await;
    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
    tx.delete("c", &keys(&["a"]), None).unwrap();
    tx.insert("c", vec![doc(json!({"_key": "b"}))], false)
        .unwrap();
    drop(tx);
    assert!(read(&s, "c", "a").is_some());
    assert!(read(&s, "c", "b").is_none());
}

#[tokio::test]
async fn concurrent_writers_of_one_document_conflict_instead_of_losing_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "ctr", "n": 0})]).await;
    for iso in [
        Isolation::Snapshot,
        Isolation::Serializable,
        Isolation::ReadCommitted,
    ] {
        let mut t1 = s.begin_transaction(DB, iso, false).unwrap();
        let mut t2 = s.begin_transaction(DB, iso, false).unwrap();
        let n1 = n_in(&t1, "ctr");
        let n2 = n_in(&t2, "ctr");
        t1.update(
            "c",
            "ctr",
            doc(json!({"n": n1 + 1})),
            UpdateMode::Merge,
            None,
        )
        .unwrap();
        t2.update(
            "c",
            "ctr",
            doc(json!({"n": n2 + 1})),
            UpdateMode::Merge,
            None,
        )
        .unwrap();
        t1.commit().wait().await.unwrap();
        let e = t2.commit().err().expect("the second commit must conflict");
        assert!(matches!(e, StorageError::Contended(_)), "{iso:?}: {e:?}");
    }
    assert_eq!(read(&s, "c", "ctr").unwrap()["n"], 3);
}

/// Two doctors on call; each goes off call if the other is still on. Under snapshot
/// isolation both commit (write skew); under serializable one of them conflicts.
#[tokio::test]
async fn write_skew_happens_under_snapshot_and_not_under_serializable() {
    for (iso, skew_expected) in [
        (Isolation::Snapshot, true),
        (Isolation::Serializable, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        seed(
            &s,
            "doctors",
            vec![
                json!({"_key": "alice", "on_call": true}),
                json!({"_key": "bob", "on_call": true}),
            ],
        )
        .await;
        let mut t1 = s.begin_transaction(DB, iso, false).unwrap();
        let mut t2 = s.begin_transaction(DB, iso, false).unwrap();
        let on_call = |tx: &Transaction| {
            tx.get("doctors", &keys(&["alice", "bob"]))
                .unwrap()
                .iter()
                .filter(|d| value(d).unwrap()["on_call"] == true)
                .count()
        };
        assert_eq!(on_call(&t1), 2);
        assert_eq!(on_call(&t2), 2);
        let off = doc(json!({"on_call": false}));
        t1.update("doctors", "alice", off.clone(), UpdateMode::Merge, None)
            .unwrap();
        t2.update("doctors", "bob", off, UpdateMode::Merge, None)
            .unwrap();
        t1.commit().wait().await.unwrap();
        let second = t2.commit();
        let remaining = ["alice", "bob"]
            .iter()
            .filter(|k| read(&s, "doctors", k).unwrap()["on_call"] == true)
            .count();
        if skew_expected {
            second.wait().await.unwrap();
            assert_eq!(remaining, 0, "snapshot isolation admits write skew");
        } else {
            assert!(matches!(second, Err(StorageError::Contended(_))));
            assert_eq!(remaining, 1, "serializable keeps one doctor on call");
        }
    }
}

#[tokio::test]
async fn snapshot_reads_are_stable_and_read_committed_reads_are_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "a", "n": 1})]).await;
    let snap = s.begin_transaction(DB, Isolation::Snapshot, true).unwrap();
    let rc = s
        .begin_transaction(DB, Isolation::ReadCommitted, true)
        .unwrap();
    s.update(DB, "c", "a", doc(json!({"n": 2})), UpdateMode::Merge, None)
        .wait()
        .await
        .unwrap();
    seed(&s, "c", vec![json!({"_key": "b"})]).await;
    assert_eq!(n_in(&snap, "a"), 1);
    assert!(snap.get("c", &keys(&["b"])).unwrap()[0].is_none());
    assert_eq!(n_in(&rc, "a"), 2);
    assert!(rc.get("c", &keys(&["b"])).unwrap()[0].is_some());
}

#[tokio::test]
async fn read_only_transactions_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "a"})]).await;
    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, true).unwrap();
    let e = tx
        .insert("missing", vec![doc(json!({}))], true)
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Transaction(ref m) if m.contains("read-only")),
        "{e:?}"
    );
    assert!(tx.delete("c", &keys(&["a"]), None).is_err());
    assert!(tx
        .update("c", "a", doc(json!({"x": 1})), UpdateMode::Merge, None)
        .is_err());
    tx.commit().wait().await.unwrap();
    assert!(read(&s, "c", "a").is_some());
}

#[tokio::test]
async fn a_statement_failing_after_it_wrote_aborts_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    seed(&s, "c", vec![json!({"_key": "taken"})]).await;
    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
    // Failing before any write: the transaction stays usable.
    let e = tx
        .update("c", "missing", doc(json!({})), UpdateMode::Merge, None)
        .unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)));
    assert!(tx.aborted().is_none());
    // A bulk insert whose second document collides after the first was written.
    let e = tx
        .insert(
            "c",
            vec![doc(json!({"_key": "fresh"})), doc(json!({"_key": "taken"}))],
            false,
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict(_)), "{e:?}");
    assert!(tx.aborted().is_some());
    let e = tx.get("c", &keys(&["fresh"])).unwrap_err();
    assert!(matches!(e, StorageError::Transaction(ref m) if m.contains("roll it back")));
    assert!(matches!(tx.commit(), Err(StorageError::Transaction(_))));
    assert!(read(&s, "c", "fresh").is_none());
}

// ---- change log ------------------------------------------------------------------

async fn replay_all(s: &DocumentStore, from: u64) -> Vec<themis_storage::ChangeRecord> {
    let mut sub = s.changes().subscribe(DB, Some(from), 16).unwrap();
    let mut out = Vec::new();
    while let Some(batch) = sub.replay(3).unwrap() {
        out.extend(batch.iter().map(|r| (**r).clone()));
    }
    out
}

/// The sequences `sub` receives live until it reports that it lagged.
async fn until_lagged(sub: &mut FeedSubscription) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match sub.next().await {
            FeedItem::Change(r) => got.push(r.sequence),
            FeedItem::Lagged => return got,
            FeedItem::Dropped => panic!("dropped"),
        }
    }
}

#[tokio::test]
async fn every_committed_write_gets_the_next_sequence_and_rollbacks_get_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.changes().current_sequence(DB).unwrap(), 0);
    seed(
        &s,
        "c",
        vec![json!({"_key": "a", "v": 1}), json!({"_key": "b"})],
    )
    .await;
    s.update(DB, "c", "a", doc(json!({"v": 2})), UpdateMode::Merge, None)
        .wait()
        .await
        .unwrap();
    let mut rolled_back = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
    rolled_back
        .insert("c", vec![doc(json!({"_key": "ghost"}))], false)
        .unwrap();
    drop(rolled_back);
    // A failed bulk insert (conflict) commits nothing either.
    assert!(s
        .insert(
            DB,
            "c",
            vec![doc(json!({"_key": "x"})), doc(json!({"_key": "a"}))],
            false
        )
        .is_err());
    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
    tx.delete("c", &keys(&["b"]), None).unwrap();
    tx.insert("c", vec![doc(json!({"_key": "t"}))], false)
        .unwrap();
    tx.commit().wait().await.unwrap();

    assert_eq!(s.changes().current_sequence(DB).unwrap(), 5);
    let log = replay_all(&s, 0).await;
    let summary: Vec<(u64, ChangeKind, &str)> = log
        .iter()
        .map(|r| (r.sequence, r.kind, r.key.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, ChangeKind::Insert, "a"),
            (2, ChangeKind::Insert, "b"),
            (3, ChangeKind::Update, "a"),
            (4, ChangeKind::Delete, "b"),
            (5, ChangeKind::Insert, "t"),
        ]
    );
    let updated: Value = serde_json::from_slice(&log[2].document).unwrap();
    assert_eq!(updated["v"], 2);
    assert_eq!(updated["_rev"], log[2].revision);
    // The delete carries the deleted version (for filters).
    let deleted: Value = serde_json::from_slice(&log[3].document).unwrap();
    assert_eq!(deleted["_key"], "b");
    // Resuming after 3 gives exactly 4 and 5.
    let tail: Vec<u64> = replay_all(&s, 3).await.iter().map(|r| r.sequence).collect();
    assert_eq!(tail, [4, 5]);
}

#[tokio::test]
async fn sequences_follow_commit_order_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(&dir));
    seed(&s, "c", vec![json!({"_key": "hot", "n": 0})]).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.insert(DB, "c", vec![doc(json!({"w": w, "i": i}))], false)
                    .wait()
                    .await
                    .unwrap();
                // Read-modify-write of one hot document: its successive versions
                // must appear in the log in the order they were committed.
                loop {
                    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
                    let n = n_in(&tx, "hot");
                    tx.update(
                        "c",
                        "hot",
                        doc(json!({"n": n + 1})),
                        UpdateMode::Merge,
                        None,
                    )
                    .unwrap();
                    match tx.commit() {
                        Ok(p) => break p.wait().await.unwrap(),
                        Err(StorageError::Contended(_)) => continue,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = replay_all(&s, 0).await;
    assert_eq!(log.len(), 1 + 8 * 50 * 2);
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.sequence, i as u64 + 1);
    }
    let hot: Vec<i64> = log
        .iter()
        .filter(|r| r.key == "hot")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.document).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(hot, (0..=400).collect::<Vec<_>>());
}

#[tokio::test]
async fn live_subscribers_get_durable_changes_in_order_and_a_full_queue_lags() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut fast = s.changes().subscribe(DB, None, 1024).unwrap();
    let mut slow = s.changes().subscribe(DB, None, 4).unwrap();
    assert!(fast.replay(10).unwrap().is_none());
    assert!(slow.replay(10).unwrap().is_none());
    for i in 0..10 {
        seed(&s, "c", vec![json!({"i": i})]).await;
    }
    for expected in 1..=10 {
        match fast.next().await {
            FeedItem::Change(r) => assert_eq!(r.sequence, expected),
            other => panic!("{other:?}"),
        }
    }
    let got = until_lagged(&mut slow).await;
    assert_eq!(got, [1, 2, 3, 4]);
    assert_eq!(slow.last_sequence(), 4);
    // Resuming from the lag point replays exactly the rest.
    let rest: Vec<u64> = replay_all(&s, slow.last_sequence())
        .await
        .iter()
        .map(|r| r.sequence)
        .collect();
    assert_eq!(rest, (5..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_commit_larger_than_the_queue_is_caught_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut sub = s.changes().subscribe(DB, None, 4).unwrap();
    assert!(sub.replay(16).unwrap().is_none());
    seed(&s, "c", (0..10).map(|i| json!({ "i": i })).collect()).await;
    let mut got = until_lagged(&mut sub).await;
    sub.catch_up();
    while let Some(batch) = sub.replay(3).unwrap() {
        got.extend(batch.iter().map(|r| r.sequence));
    }
    seed(&s, "c", vec![json!({"live": true})]).await;
    match sub.next().await {
        FeedItem::Change(r) => got.push(r.sequence),
        other => panic!("{other:?}"),
    }
    assert_eq!(got, (1..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_replay_hands_over_to_live_changes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..20 {
        seed(&s, "c", vec![json!({"i": i})]).await;
    }
    // A tiny live queue overflows while the subscriber is still replaying: the
    // subscription re-registers and replays further instead of lagging.
    let mut sub = s.changes().subscribe(DB, Some(5), 2).unwrap();
    for i in 0..10 {
        seed(&s, "c", vec![json!({"late": i})]).await;
    }
    let mut got = Vec::new();
    while let Some(batch) = sub.replay(4).unwrap() {
        got.extend(batch.iter().map(|r| r.sequence));
    }
    for i in 0..2 {
        seed(&s, "c", vec![json!({"live": i})]).await;
    }
    while got.len() < 25 {
        match sub.next().await {
            FeedItem::Change(r) => got.push(r.sequence),
            other => panic!("{other:?} after {got:?}"),
        }
    }
    assert_eq!(got, (6..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn resume_points_are_checked_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..10 {
        seed(&s, "c", vec![json!({"i": i, "pad": "x".repeat(100)})]).await;
    }
    let e = s.changes().subscribe(DB, Some(11), 8).unwrap_err();
    assert!(e.to_string().contains("ahead"), "{e}");
    // Keep about three records' worth of bytes.
    let removed = s
        .changes()
        .prune(Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 500,
        })
        .unwrap();
    assert!(removed >= 6, "removed {removed}");
    let first = replay_all(&s, 10 - (10 - removed)).await;
    assert_eq!(first.first().map(|r| r.sequence), Some(removed + 1));
    let e = s.changes().subscribe(DB, Some(1), 8).unwrap_err();
    assert!(e.to_string().contains("older than"), "{e}");
    // 0 means "whatever is retained" (the contract), never an error.
    let all = replay_all(&s, 0).await;
    assert_eq!(all.first().map(|r| r.sequence), Some(removed + 1));
    assert_eq!(all.len() as u64, 10 - removed);
    // Age-based pruning keeps the newest record, which carries the sequence.
    s.changes()
        .prune(Retention {
            max_age: Duration::ZERO,
            max_bytes: u64::MAX,
        })
        .unwrap();
    assert_eq!(replay_all(&s, 9).await.len(), 1);
    drop(s);
    let s = open(&dir);
    assert_eq!(s.changes().current_sequence(DB).unwrap(), 10);
    seed(&s, "c", vec![json!({"after": "restart"})]).await;
    assert_eq!(
        replay_all(&s, 9)
            .await
            .iter()
            .map(|r| r.sequence)
            .collect::<Vec<_>>(),
        [10, 11]
    );
}

#[tokio::test]
async fn drops_end_subscriptions_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_database("shop").wait().await.unwrap();
    s.insert("shop", "orders", vec![doc(json!({"_key": "o1"}))], true)
        .wait()
        .await
        .unwrap();
    let mut sub = s.changes().subscribe("shop", Some(0), 16).unwrap();
    while sub.replay(16).unwrap().is_some() {}
    s.drop_collection("shop", "orders").wait().await.unwrap();
    match sub.next().await {
        FeedItem::Change(r) => {
            assert_eq!(r.kind, ChangeKind::CollectionDropped);
            assert_eq!(r.collection, "orders");
            assert_eq!(r.sequence, 2);
        }
        other => panic!("{other:?}"),
    }
    s.drop_database("shop").wait().await.unwrap();
    assert!(matches!(sub.next().await, FeedItem::Dropped));
    assert!(s.changes().subscribe("shop", None, 16).is_err());
}

#[tokio::test]
async fn without_sync_changes_publish_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    opts.sync = SyncMode::Never;
    let s = DocumentStore::open(opts).unwrap();
    let mut sub = s.changes().subscribe(DB, None, 16).unwrap();
    seed(&s, "c", vec![json!({"_key": "a"})]).await;
    assert!(matches!(sub.next().await, FeedItem::Change(r) if r.key == "a"));
}

#[tokio::test]
async fn a_transaction_that_grows_too_large_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut tx = s.begin_transaction(DB, Isolation::Snapshot, false).unwrap();
    let big = "x".repeat(1 << 20);
    let mut failed = None;
    for i in 0..(themis_storage::MAX_TRANSACTION_BYTES >> 20) + 2 {
        if let Err(e) = tx.insert("c", vec![doc(json!({ "i": i, "big": big }))], true) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("the transaction hit its size limit");
    assert!(
        matches!(e, StorageError::Transaction(ref m) if m.contains("smaller transactions")),
        "{e:?}"
    );
    assert!(tx.aborted().is_some());
    assert!(matches!(tx.commit(), Err(StorageError::Transaction(_))));
    assert!(
        s.list_collections(DB).unwrap().is_empty(),
        "nothing committed"
    );
}
