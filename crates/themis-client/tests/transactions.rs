//! Transactions against the scripted in-test peer (see `support`): what goes on the
//! wire — every operation of a transaction's handles carries its id, a dropped open
//! transaction is rolled back — and how `Client::transaction` retries lost conflicts.
//! Transaction semantics themselves (isolation, conflicts) are the server's, tested
//! end to end against it.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::{connect, fast_retry, finished, listen, ping, serve, Peer, NO_HANG};
use themis_client::{
    wire, DeleteOptions, Error, ErrorCode, IsolationLevel, OpCode, TxOptions, UpdateOptions,
};
use themis_proto::envelope::Request;
use themis_proto::{ErrorExt, TypedResponse};
use tokio::time::timeout;

/// Reads a BEGIN_TX and answers it with transaction `id`.
async fn begin(peer: &mut Peer, id: &str) -> wire::BeginTxRequest {
    let (rid, request) = peer.request().await;
    let Request::BeginTx(begin) = request else {
        panic!("expected BEGIN_TX, got {request:?}");
    };
    let response = wire::BeginTxResponse {
        success: true,
        transaction_id: id.into(),
        ..Default::default()
    };
    peer.send(OpCode::OpBeginTx, rid, &response).await;
    begin
}

/// What one request said about its transaction.
#[derive(Debug, PartialEq)]
struct Seen {
    op: &'static str,
    transaction_id: String,
    database: Option<String>,
}

/// Reads one document, query, commit or rollback request and answers it with a
/// minimal success.
async fn answer_ok(peer: &mut Peer) -> Seen {
    let (rid, request) = peer.request().await;
    let (op, transaction_id, database) = match request {
        Request::Create(r) => {
            let response = wire::CreateResponse {
                success: true,
                document_id: "k".into(),
                revision: "_r".into(),
                document_ids: (0..r.documents.len()).map(|i| format!("k{i}")).collect(),
                ..Default::default()
            };
            peer.send(OpCode::OpCreate, rid, &response).await;
            ("create", r.transaction_id, Some(r.database))
        }
        Request::Read(r) => {
            let response = wire::ReadResponse {
                success: true,
                documents: vec![Bytes::new(); r.document_ids.len()],
                ..Default::default()
            };
            peer.send(OpCode::OpRead, rid, &response).await;
            ("read", r.transaction_id, Some(r.database))
        }
        Request::Update(r) => {
            let response = wire::UpdateResponse {
                success: true,
                document_id: r.document_id.clone(),
                revision: "_r2".into(),
                ..Default::default()
            };
            peer.send(OpCode::OpUpdate, rid, &response).await;
            ("update", r.transaction_id, Some(r.database))
        }
        Request::Delete(r) => {
            let response = wire::DeleteResponse {
                success: true,
                deleted_count: r.document_ids.len() as u64,
                ..Default::default()
            };
            peer.send(OpCode::OpDelete, rid, &response).await;
            ("delete", r.transaction_id, Some(r.database))
        }
        Request::Query(r) => {
            let response = wire::QueryResponse {
                success: true,
                ..Default::default()
            };
            peer.send(OpCode::OpQuery, rid, &response).await;
            ("query", r.transaction_id, Some(r.database))
        }
        Request::CommitTx(r) => {
            let response = wire::CommitTxResponse {
                success: true,
                ..Default::default()
            };
            peer.send(OpCode::OpCommitTx, rid, &response).await;
            ("commit", r.transaction_id, None)
        }
        Request::RollbackTx(r) => {
            let response = wire::RollbackTxResponse {
                success: true,
                ..Default::default()
            };
            peer.send(OpCode::OpRollbackTx, rid, &response).await;
            ("rollback", r.transaction_id, None)
        }
        other => panic!("unexpected request {other:?}"),
    };
    Seen {
        op,
        transaction_id,
        database,
    }
}

/// Reads a COMMIT_TX for `id` and fails it with a lost, retryable write conflict.
async fn lose_commit(peer: &mut Peer, id: &str) {
    let (rid, request) = peer.request().await;
    let Request::CommitTx(commit) = request else {
        panic!("expected COMMIT_TX, got {request:?}");
    };
    assert_eq!(commit.transaction_id, id);
    let conflict = wire::Error::retryable(
        ErrorCode::ErrConflict,
        "write-write conflict on users/a: begin again and retry",
        0,
    );
    peer.send(
        OpCode::OpCommitTx,
        rid,
        &wire::CommitTxResponse::failed(conflict),
    )
    .await;
}

#[tokio::test]
async fn every_operation_of_a_transaction_carries_its_id() {
    const OPERATIONS: usize = 13;
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let request = begin(&mut peer, "tx-1").await;
        assert_eq!(request.isolation_level, IsolationLevel::Serializable as i32);
        assert_eq!(request.timeout_ms, 5000);
        assert!(request.read_only);
        assert_eq!(request.database, "shop");
        let mut seen = Vec::new();
        for _ in 0..OPERATIONS {
            seen.push(answer_ok(&mut peer).await);
        }
        // Committed: dropping it sends no rollback, so the ping comes next.
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        assert!(peer.read().await.is_none());
        let ops: Vec<&str> = seen.iter().map(|s| s.op).collect();
        assert_eq!(
            ops,
            [
                "create", "create", "read", "read", "update", "update", "update", "delete",
                "delete", "delete", "query", "query", "commit"
            ]
        );
        for s in seen {
            assert_eq!(s.transaction_id, "tx-1", "{s:?}");
            assert!(
                matches!(s.database.as_deref(), None | Some("shop")),
                "{s:?}"
            );
        }
    });

    let client = connect(&addr).await;
    let options = TxOptions::serializable()
        .read_only(true)
        .timeout(Duration::from_secs(5));
    let tx = client
        .database("shop")
        .begin_with(options)
        .await
        .expect("begin");
    assert_eq!(tx.id(), "tx-1");
    let users = tx.collection("users");
    assert_eq!(users.transaction_id(), Some("tx-1"));
    assert_eq!(client.collection("users").transaction_id(), None);

    users.insert(&json!({ "a": 1 })).await.expect("insert");
    users
        .insert_many(&[json!({}), json!({})])
        .await
        .expect("insert_many");
    let _: Option<Value> = users.get("a").await.expect("get");
    let _: Vec<Option<Value>> = users.get_many(&["a", "b"]).await.expect("get_many");
    users.update("a", &json!({ "x": 1 })).await.expect("update");
    users
        .replace("a", &json!({ "x": 2 }))
        .await
        .expect("replace");
    users
        .update_with("a", &json!({}), UpdateOptions::merge().if_revision("_r"))
        .await
        .expect("update_with");
    users.delete("a").await.expect("delete");
    users
        .delete_with("a", DeleteOptions::if_revision("_r"))
        .await
        .expect("delete_with");
    users.delete_many(&["a", "b"]).await.expect("delete_many");
    let query = tx.query("FOR u IN users RETURN u");
    assert_eq!(query.transaction_id(), Some("tx-1"));
    let _: Vec<Value> = query.clone().all().await.expect("query");
    query.explain().await.expect("explain");
    assert!(!tx.is_finished());
    tx.commit().await.expect("commit");
    assert!(tx.is_finished());
    drop((tx, users));
    assert_eq!(ping(&client, 1).await.expect("ping"), 1);
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn dropping_the_last_handle_of_an_open_transaction_rolls_it_back() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        begin(&mut peer, "tx-1").await;
        // Dropping a clone does nothing.
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        let seen = answer_ok(&mut peer).await;
        assert_eq!(
            (seen.op, seen.transaction_id.as_str()),
            ("rollback", "tx-1")
        );
    });
    let client = connect(&addr).await;
    let tx = client.begin().await.expect("begin");
    let clone = tx.clone();
    drop(clone);
    assert_eq!(ping(&client, 1).await.expect("ping"), 1);
    drop(tx);
    timeout(NO_HANG, peer)
        .await
        .expect("rolled back")
        .expect("peer");
}

#[tokio::test]
async fn transaction_retries_lost_conflicts_then_commits() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        for attempt in 1..=3 {
            let id = format!("tx-{attempt}");
            let request = begin(&mut peer, &id).await;
            assert_eq!(request.isolation_level, IsolationLevel::Snapshot as i32);
            let seen = answer_ok(&mut peer).await;
            assert_eq!(
                (seen.op, seen.transaction_id.as_str()),
                ("create", id.as_str())
            );
            if attempt < 3 {
                // The transaction is gone after a lost commit: no rollback follows.
                lose_commit(&mut peer, &id).await;
            } else {
                let seen = answer_ok(&mut peer).await;
                assert_eq!((seen.op, seen.transaction_id.as_str()), ("commit", "tx-3"));
            }
        }
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let calls = AtomicU32::new(0);
    let calls_ref = &calls;
    let committed_in = client
        .transaction(
            TxOptions::default().retry(fast_retry(10)),
            |tx| async move {
                calls_ref.fetch_add(1, Ordering::Relaxed);
                tx.collection("users")
                    .insert(&json!({ "_key": "a" }))
                    .await?;
                Ok(tx.id().to_owned())
            },
        )
        .await
        .expect("third attempt commits");
    assert_eq!(committed_in, "tx-3");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn transaction_gives_up_on_other_errors_at_once_and_on_conflicts_after_the_policy() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        // A revision mismatch is a conflict the server does not call retryable.
        begin(&mut peer, "tx-1").await;
        let (rid, request) = peer.request().await;
        assert!(matches!(request, Request::Update(_)), "{request:?}");
        let mismatch = wire::Error::new(ErrorCode::ErrConflict, "revision mismatch on users/a");
        peer.send(
            OpCode::OpUpdate,
            rid,
            &wire::UpdateResponse::failed(mismatch),
        )
        .await;
        let seen = answer_ok(&mut peer).await;
        assert_eq!(
            (seen.op, seen.transaction_id.as_str()),
            ("rollback", "tx-1")
        );

        // Two attempts, both lost.
        for id in ["tx-2", "tx-3"] {
            begin(&mut peer, id).await;
            lose_commit(&mut peer, id).await;
        }
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let options = TxOptions::default().retry(fast_retry(2));
    let err = client
        .transaction(options.clone(), |tx| async move {
            let meta = tx
                .collection("users")
                .update_with("a", &json!({}), UpdateOptions::merge().if_revision("old"))
                .await?;
            Ok(meta)
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict() && !err.is_retryable(), "{err:?}");

    let err = client
        .transaction(options, |_tx| async move { Ok(()) })
        .await
        .unwrap_err();
    assert!(err.is_conflict() && err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("retry"), "{err}");
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn a_body_that_rolls_back_is_neither_committed_nor_retried() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        begin(&mut peer, "tx-1").await;
        let seen = answer_ok(&mut peer).await;
        assert_eq!(
            (seen.op, seen.transaction_id.as_str()),
            ("rollback", "tx-1")
        );
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let outcome: Result<(), &str> = client
        .transaction(TxOptions::default(), |tx| async move {
            tx.rollback().await?;
            Ok(Err("insufficient funds"))
        })
        .await
        .expect("no client error");
    assert_eq!(outcome, Err("insufficient funds"));
    assert_eq!(ping(&client, 2).await.expect("ping"), 2);
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn begin_without_a_transaction_id_is_refused() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        begin(&mut peer, "").await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let err = client.begin().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol(m) if m.contains("transaction_id")),
        "{err:?}"
    );
    drop(client);
    finished(peer).await;
}

/// The connection dies during COMMIT (the peer reads it and hangs up without an
/// answer). The server advertised request keys, so the client asks again on a new
/// connection with the same key; a server that committed answers from its record,
/// and `commit` succeeds.
#[tokio::test]
async fn a_commit_whose_connection_died_is_asked_again_with_its_key() {
    use themis_proto::features::{MULTIPLEXING, REQUEST_KEYS};
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        first
            .handshake_advertising(0, MULTIPLEXING | REQUEST_KEYS)
            .await;
        begin(&mut first, "tx-1").await;
        let (_, request) = first.request().await;
        let Request::CommitTx(commit) = request else {
            panic!("expected COMMIT_TX, got {request:?}");
        };
        assert!(!commit.request_key.is_empty(), "the commit carries a key");
        drop(first);

        let mut second = Peer::accept(&listener).await;
        let hs = second
            .handshake_advertising(0, MULTIPLEXING | REQUEST_KEYS)
            .await;
        assert_eq!(hs.session_token, support::TOKEN, "resumes the session");
        let (rid, request) = second.request().await;
        let Request::CommitTx(again) = request else {
            panic!("expected the COMMIT_TX again, got {request:?}");
        };
        assert_eq!(again.transaction_id, "tx-1");
        assert_eq!(again.request_key, commit.request_key, "same key");
        let stored = wire::CommitTxResponse {
            success: true,
            ..Default::default()
        };
        second.send(OpCode::OpCommitTx, rid, &stored).await;
        while second.read().await.is_some() {}
    });
    let client = connect(&addr).await;
    let tx = client.begin().await.expect("begin");
    timeout(NO_HANG, tx.commit())
        .await
        .expect("no hang")
        .expect("the server's record says it committed");
    drop((tx, client));
    finished(peer).await;
}

/// Without request keys advertised, a COMMIT whose connection died is not asked
/// again: the error says it may or may not have been committed.
#[tokio::test]
async fn without_request_keys_a_lost_commit_is_an_unknown_outcome() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        begin(&mut peer, "tx-1").await;
        let (_, request) = peer.request().await;
        let Request::CommitTx(commit) = request else {
            panic!("expected COMMIT_TX, got {request:?}");
        };
        assert!(
            commit.request_key.is_empty(),
            "no key for a server without them"
        );
    });
    let client = connect(&addr).await;
    let tx = client.begin().await.expect("begin");
    let err = timeout(NO_HANG, tx.commit())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_connection_error(), "{err:?}");
    assert!(err.to_string().contains("may or may not"), "{err}");
    drop((tx, client));
    finished(peer).await;
}

/// Writes through a `Collection` carry a fresh request key when the server
/// deduplicates them, and none with `retry_writes = false` (or inside a transaction).
#[tokio::test]
async fn collection_writes_carry_request_keys_unless_turned_off() {
    use themis_proto::features::{MULTIPLEXING, REQUEST_KEYS};
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut keys = Vec::new();
        for _ in 0..2 {
            let mut peer = Peer::accept(&listener).await;
            peer.handshake_advertising(0, MULTIPLEXING | REQUEST_KEYS)
                .await;
            for _ in 0..2 {
                let (rid, request) = peer.request().await;
                let Request::Create(create) = request else {
                    panic!("expected CREATE, got {request:?}");
                };
                keys.push(create.request_key);
                let response = wire::CreateResponse {
                    success: true,
                    document_id: "k".into(),
                    ..Default::default()
                };
                peer.send(OpCode::OpCreate, rid, &response).await;
            }
            while peer.read().await.is_some() {}
        }
        keys
    });
    for retry_writes in [true, false] {
        let options = themis_client::ClientOptions {
            retry_writes,
            ..support::options(Duration::from_secs(10))
        };
        let client = themis_client::Client::connect_with(&addr, options)
            .await
            .expect("connect");
        for _ in 0..2 {
            client
                .collection("c")
                .insert(&json!({}))
                .await
                .expect("insert");
        }
    }
    let keys = timeout(NO_HANG, peer)
        .await
        .expect("no hang")
        .expect("peer");
    assert_eq!(keys[0].len(), 32, "{keys:?}");
    assert_ne!(keys[0], keys[1], "a fresh key per write");
    assert_eq!(keys[2..], ["", ""], "retry_writes = false: no keys");
}
