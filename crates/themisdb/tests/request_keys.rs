//! Request keys (idempotent write retries) against the real server: a write sent
//! twice with the same key applies once and both answers are the same bytes, per
//! user; bulk inserts, updates, deletes and COMMIT_TX; bad keys; a key on a request
//! inside a transaction; the record surviving `kill -9`; and the record expiring.
//!
//! Inserts here carry no `_key`, so the server generates one: a write applied twice
//! would show up as two documents.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{RawConn, ServerProcess, TestServer, ROOT_PASSWORD};
use prost::Message;
use serde_json::{json, Value};
use themis_client::Client;
use themis_proto::wire::{self, ErrorCode, OpCode};

const COLL: &str = "keyed";

fn create(doc: Value, key: &str) -> wire::CreateRequest {
    wire::CreateRequest {
        collection: COLL.into(),
        document: serde_json::to_vec(&doc).unwrap().into(),
        request_key: key.into(),
        ..Default::default()
    }
}

async fn call<Req: Message, Resp: Message + Default>(
    client: &Client,
    op: OpCode,
    req: &Req,
) -> Resp {
    client
        .raw_request(op, req)
        .await
        .unwrap_or_else(|e| panic!("{op:?} failed at the transport level: {e}"))
}

async fn insert(client: &Client, doc: Value, key: &str) -> wire::CreateResponse {
    call(client, OpCode::OpCreate, &create(doc, key)).await
}

/// Every document of `coll`, by running a query.
async fn all_docs(client: &Client, coll: &str) -> Vec<Value> {
    let resp: wire::QueryResponse = call(
        client,
        OpCode::OpQuery,
        &wire::QueryRequest {
            aql_query: format!("FOR d IN {coll} SORT d._key RETURN d"),
            batch_size: 10_000,
            ..Default::default()
        },
    )
    .await;
    assert!(resp.success, "{resp:?}");
    assert!(!resp.has_more);
    resp.results
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect()
}

fn error_of(resp_error: &Option<wire::Error>) -> (ErrorCode, String) {
    let e = resp_error.clone().expect("an error");
    (ErrorCode::try_from(e.code).unwrap(), e.message)
}

async fn connect_as(addr: SocketAddr, user: &str, password: &str) -> Client {
    Client::connect(&format!("themis://{user}:{password}@{addr}"))
        .await
        .expect("client connects")
}

async fn create_user(root: &Client, name: &str) {
    let resp: wire::AdminResponse = call(
        root,
        OpCode::OpAdmin,
        &wire::AdminRequest {
            action: Some(wire::admin_request::Action::CreateUser(wire::CreateUser {
                name: name.into(),
                password: format!("{name}-password"),
                superuser: false,
                roles: vec![wire::RoleGrant {
                    database: "_system".into(),
                    role: "readwrite".into(),
                }],
            })),
            ..Default::default()
        },
    )
    .await;
    assert!(resp.success, "{resp:?}");
}

#[tokio::test]
async fn same_key_twice_applies_once_with_the_same_answer() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let first = insert(&client, json!({ "n": 1 }), "key-1").await;
    assert!(first.success, "{first:?}");
    assert!(!first.document_id.is_empty());
    // The retry, on another connection (the first "died"), even with another body.
    let other = server.client().await;
    let again = insert(&other, json!({ "n": 1 }), "key-1").await;
    assert_eq!(again, first);
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    let docs = all_docs(&client, COLL).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["_key"], json!(first.document_id));

    // Another key is another write; no key never deduplicates.
    let second = insert(&client, json!({ "n": 2 }), "key-2").await;
    assert_ne!(second.document_id, first.document_id);
    let plain_a = insert(&client, json!({ "n": 3 }), "").await;
    let plain_b = insert(&client, json!({ "n": 3 }), "").await;
    assert_ne!(plain_a.document_id, plain_b.document_id);
    assert_eq!(all_docs(&client, COLL).await.len(), 4);

    // A failed write records nothing: the same key then succeeds once it can.
    let dup = insert(&client, json!({ "_key": first.document_id }), "key-3").await;
    assert_eq!(error_of(&dup.error).0, ErrorCode::ErrConflict, "{dup:?}");
    let ok = insert(&client, json!({ "_key": "fresh" }), "key-3").await;
    assert!(ok.success, "{ok:?}");
    assert_eq!(ok.document_id, "fresh");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_on_many_connections_apply_once() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.client().await);
    }
    for round in 0..20 {
        let key = format!("race-{round}");
        let tasks: Vec<_> = clients
            .iter()
            .cloned()
            .map(|c| {
                let key = key.clone();
                tokio::spawn(async move { insert(&c, json!({ "round": round }), &key).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert!(answers[0].success, "{:?}", answers[0]);
        for a in &answers {
            assert_eq!(a, &answers[0], "every racer gets the one answer");
        }
    }
    let docs = all_docs(&clients[0], COLL).await;
    assert_eq!(docs.len(), 20, "one document per key");
    server.shutdown().await;
}

#[tokio::test]
async fn keys_belong_to_a_user_not_a_session() {
    let server = TestServer::start().await;
    let root = server.client().await;
    create_user(&root, "alice").await;
    create_user(&root, "bob").await;
    let alice = connect_as(server.addr, "alice", "alice-password").await;
    let bob = connect_as(server.addr, "bob", "bob-password").await;
    let a = insert(&alice, json!({ "who": "alice" }), "shared-key").await;
    let b = insert(&bob, json!({ "who": "bob" }), "shared-key").await;
    assert!(a.success && b.success, "{a:?} {b:?}");
    assert_ne!(
        a.document_id, b.document_id,
        "different users, different writes"
    );
    // Alice again, in a new session: her first answer.
    let alice_again = connect_as(server.addr, "alice", "alice-password").await;
    let a2 = insert(&alice_again, json!({ "who": "alice" }), "shared-key").await;
    assert_eq!(a2, a);
    assert_eq!(all_docs(&root, COLL).await.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bulk_insert_is_one_request_with_one_answer() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let bulk = wire::CreateRequest {
        collection: COLL.into(),
        documents: (0..5)
            .map(|i| serde_json::to_vec(&json!({ "i": i })).unwrap().into())
            .collect(),
        request_key: "bulk".into(),
        ..Default::default()
    };
    let first: wire::CreateResponse = call(&client, OpCode::OpCreate, &bulk).await;
    assert!(first.success, "{first:?}");
    assert_eq!(first.document_ids.len(), 5);
    let again: wire::CreateResponse = call(&client, OpCode::OpCreate, &bulk).await;
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    assert_eq!(all_docs(&client, COLL).await.len(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn updates_and_deletes_apply_once() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let created = insert(&client, json!({ "_key": "doc", "n": 0 }), "").await;
    assert!(created.success);

    let update = wire::UpdateRequest {
        collection: COLL.into(),
        document_id: "doc".into(),
        document: serde_json::to_vec(&json!({ "n": 1 })).unwrap().into(),
        if_revision: created.revision.clone(),
        request_key: "upd".into(),
        ..Default::default()
    };
    let first: wire::UpdateResponse = call(&client, OpCode::OpUpdate, &update).await;
    assert!(first.success, "{first:?}");
    // Without the key, the same conditional update would now conflict (the revision
    // moved on); with it, the retry gets the first answer.
    let again: wire::UpdateResponse = call(&client, OpCode::OpUpdate, &update).await;
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    let unkeyed = wire::UpdateRequest {
        request_key: String::new(),
        ..update.clone()
    };
    let conflict: wire::UpdateResponse = call(&client, OpCode::OpUpdate, &unkeyed).await;
    assert_eq!(error_of(&conflict.error).0, ErrorCode::ErrConflict);
    let docs = all_docs(&client, COLL).await;
    assert_eq!(docs[0]["_rev"], json!(first.revision));

    let delete = wire::DeleteRequest {
        collection: COLL.into(),
        document_ids: vec!["doc".into()],
        request_key: "del".into(),
        ..Default::default()
    };
    let first: wire::DeleteResponse = call(&client, OpCode::OpDelete, &delete).await;
    assert_eq!(first.deleted_count, 1, "{first:?}");
    assert!(first.not_found.is_empty());
    // A retry is told what the first did: deleted 1, not "not found".
    let again: wire::DeleteResponse = call(&client, OpCode::OpDelete, &delete).await;
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    assert!(all_docs(&client, COLL).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn bad_keys_are_refused_with_the_rule() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for bad in ["k".repeat(65), "tab\tkey".to_string(), "ключ".to_string()] {
        let resp = insert(&client, json!({}), &bad).await;
        let (code, message) = error_of(&resp.error);
        assert_eq!(code, ErrorCode::ErrInvalidArgument, "{bad:?}");
        assert!(
            message.contains("1-64 bytes of printable ASCII"),
            "{bad:?}: {message}"
        );
    }
    let commit: wire::CommitTxResponse = call(
        &client,
        OpCode::OpCommitTx,
        &wire::CommitTxRequest {
            transaction_id: "whatever".into(),
            request_key: "k".repeat(65),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(error_of(&commit.error).0, ErrorCode::ErrInvalidArgument);
    // 64 bytes is fine.
    assert!(insert(&client, json!({}), &"k".repeat(64)).await.success);
    assert_eq!(all_docs(&client, COLL).await.len(), 1);
    server.shutdown().await;
}

/// A request on a raw connection; returns the decoded typed response.
async fn raw_call<Req: Message, Resp: Message + Default>(
    conn: &mut RawConn,
    op: OpCode,
    id: u64,
    req: &Req,
) -> Resp {
    conn.send(op, id, req).await;
    let f = conn.recv().await.expect("an answer");
    assert_eq!(f.request_id, id);
    assert_eq!(f.op(), op, "{f:?}");
    f.decode()
}

async fn begin(conn: &mut RawConn) -> String {
    let resp: wire::BeginTxResponse = raw_call(
        conn,
        OpCode::OpBeginTx,
        10,
        &wire::BeginTxRequest::default(),
    )
    .await;
    assert!(resp.success, "{resp:?}");
    resp.transaction_id
}

#[tokio::test]
async fn transactions_take_the_key_on_commit() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut conn = RawConn::login(server.addr).await;
    let tx = begin(&mut conn).await;

    // A key on a statement inside the transaction is refused.
    let mut in_tx = create(json!({ "n": 1 }), "stmt-key");
    in_tx.transaction_id = tx.clone();
    let refused: wire::CreateResponse = raw_call(&mut conn, OpCode::OpCreate, 11, &in_tx).await;
    let (code, message) = error_of(&refused.error);
    assert_eq!(code, ErrorCode::ErrInvalidArgument);
    assert!(
        message.contains("put the request_key on COMMIT_TX"),
        "{message}"
    );

    in_tx.request_key.clear();
    let ok: wire::CreateResponse = raw_call(&mut conn, OpCode::OpCreate, 12, &in_tx).await;
    assert!(ok.success, "{ok:?}");
    let commit = wire::CommitTxRequest {
        transaction_id: tx.clone(),
        request_key: "commit-1".into(),
        ..Default::default()
    };
    let first: wire::CommitTxResponse = raw_call(&mut conn, OpCode::OpCommitTx, 13, &commit).await;
    assert!(first.success, "{first:?}");
    // The connection dies; the client resends the COMMIT on a new one, where the
    // transaction id means nothing: it gets the stored answer.
    drop(conn);
    let mut fresh = RawConn::login(server.addr).await;
    let again: wire::CommitTxResponse = raw_call(&mut fresh, OpCode::OpCommitTx, 2, &commit).await;
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    assert_eq!(all_docs(&client, COLL).await.len(), 1);

    // Without a record, an unknown transaction is still an error.
    let unknown: wire::CommitTxResponse = raw_call(
        &mut fresh,
        OpCode::OpCommitTx,
        3,
        &wire::CommitTxRequest {
            transaction_id: tx.clone(),
            request_key: "never-used".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!unknown.success);
    assert!(
        error_of(&unknown.error).1.contains("not found"),
        "{unknown:?}"
    );

    // A new transaction committed with a key that already has a record applies
    // nothing and gets the recorded answer.
    let tx2 = begin(&mut fresh).await;
    let mut doc = create(json!({ "n": 2 }), "");
    doc.transaction_id = tx2.clone();
    let ok: wire::CreateResponse = raw_call(&mut fresh, OpCode::OpCreate, 4, &doc).await;
    assert!(ok.success);
    let replay: wire::CommitTxResponse = raw_call(
        &mut fresh,
        OpCode::OpCommitTx,
        5,
        &wire::CommitTxRequest {
            transaction_id: tx2,
            request_key: "commit-1".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(replay.encode_to_vec(), first.encode_to_vec());
    assert_eq!(all_docs(&client, COLL).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let port = server.addr.port();
    let client = Client::connect(&server.url()).await.expect("connect");
    let first = insert(&client, json!({ "n": 1 }), "durable-key").await;
    assert!(first.success, "{first:?}");
    let bulk = wire::CreateRequest {
        collection: COLL.into(),
        documents: (0..3)
            .map(|i| serde_json::to_vec(&json!({ "i": i })).unwrap().into())
            .collect(),
        request_key: "durable-bulk".into(),
        ..Default::default()
    };
    let first_bulk: wire::CreateResponse = call(&client, OpCode::OpCreate, &bulk).await;
    assert!(first_bulk.success, "{first_bulk:?}");
    drop(client);

    server.signal(libc::SIGKILL);
    server.wait(Duration::from_secs(10));
    drop(server);
    let server = ServerProcess::start_on(&data, port, &[]);
    let client = Client::connect(&server.url())
        .await
        .expect("connect after restart");
    let again = insert(&client, json!({ "n": 1 }), "durable-key").await;
    assert_eq!(again.encode_to_vec(), first.encode_to_vec());
    let again_bulk: wire::CreateResponse = call(&client, OpCode::OpCreate, &bulk).await;
    assert_eq!(again_bulk.encode_to_vec(), first_bulk.encode_to_vec());
    assert_eq!(all_docs(&client, COLL).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[("THEMIS_SERVER_REQUEST_KEY_WINDOW", "1s")]);
    let client = Client::connect(&server.url()).await.expect("connect");
    let first = insert(&client, json!({ "n": 1 }), "short-lived").await;
    assert!(first.success);
    let again = insert(&client, json!({ "n": 1 }), "short-lived").await;
    assert_eq!(again, first, "still inside the window");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = insert(&client, json!({ "n": 1 }), "short-lived").await;
    assert!(later.success, "{later:?}");
    assert_ne!(later.document_id, first.document_id, "expired: a new write");
    assert_eq!(all_docs(&client, COLL).await.len(), 2);
    // And the new record holds for its own window.
    let replay = insert(&client, json!({ "n": 1 }), "short-lived").await;
    assert_eq!(replay, later);
    assert_eq!(all_docs(&client, COLL).await.len(), 2);
}

#[tokio::test]
async fn the_server_advertises_request_keys() {
    let server = TestServer::start().await;
    let mut conn = RawConn::connect(server.addr).await;
    let resp = conn.handshake("root", ROOT_PASSWORD).await;
    let features = resp.server_info.expect("server info").features;
    assert_ne!(features & themis_proto::features::REQUEST_KEYS, 0);
    server.shutdown().await;
}
