//! A `Client` keeps working across server restarts and GOAWAYs with no reconnect code
//! of its own ("a pool of one", ADR 0007): reads and writes after the server is back
//! reconnect transparently, nothing hangs past its request timeout while the server is
//! down, a keep-alive keeps an idle connection open, and a transaction whose
//! connection died fails with a clear error instead of moving to another connection.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use themis_client::{Client, ClientOptions};

use common::{ServerProcess, TestServer};

/// Generous: only to stop a broken test from hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn options(keepalive: Option<Duration>) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        keepalive_interval: keepalive,
        ..ClientOptions::default()
    }
}

/// `client.collection("c").get(key)` until it succeeds, within [`PATIENCE`].
async fn get_eventually(client: &Client, key: &str) -> Option<Value> {
    let started = Instant::now();
    loop {
        match client.collection("c").get::<Value>(key).await {
            Ok(doc) => return doc,
            Err(e) => {
                assert!(started.elapsed() < PATIENCE, "still failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_survives_server_restarts_without_reconnecting_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let port = server.addr.port();
    let client = Client::connect_with(&server.url(), options(None))
        .await
        .unwrap();
    client.create_collection("c").await.unwrap();
    client
        .collection("c")
        .insert(&json!({ "_key": "a", "n": 1 }))
        .await
        .unwrap();

    // A clean stop: the server says GOAWAY and closes.
    server.signal(libc::SIGTERM);
    server.wait(PATIENCE);
    let server = ServerProcess::start_on(&data, port, &[]);
    let doc = get_eventually(&client, "a").await.expect("a survives");
    assert_eq!(doc["n"], 1);
    client
        .collection("c")
        .insert(&json!({ "_key": "b", "n": 2 }))
        .await
        .expect("an insert on the reconnected client");

    // A crash: reads while the server is down fail (or succeed) but never hang.
    let mut server = server;
    server.signal(libc::SIGKILL);
    server.wait(PATIENCE);
    for _ in 0..3 {
        let started = Instant::now();
        let read = client.collection("c").get::<Value>("a").await;
        assert!(
            started.elapsed() < Duration::from_secs(5) + Duration::from_secs(2),
            "a read while the server is down took {:?}",
            started.elapsed()
        );
        if let Err(e) = read {
            assert!(
                e.to_string().contains(&port.to_string()),
                "the error names the address: {e}"
            );
        }
    }
    let _server = ServerProcess::start_on(&data, port, &[]);
    let doc = get_eventually(&client, "b").await.expect("b survives");
    assert_eq!(doc["n"], 2);
    client
        .collection("c")
        .insert(&json!({ "_key": "c", "n": 3 }))
        .await
        .expect("an insert after the crash");
    let all: Vec<u64> = client
        .query("FOR d IN c SORT d.n RETURN d.n")
        .all()
        .await
        .unwrap();
    assert_eq!(all, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_idle_goaway_the_next_request_reconnects() {
    let server = TestServer::start_with(|c| c.wire.idle_timeout = Duration::from_secs(1)).await;
    let client = Client::connect_with(&server.url(), options(None))
        .await
        .unwrap();
    client.create_collection("c").await.unwrap();
    client
        .collection("c")
        .insert(&json!({ "_key": "a" }))
        .await
        .unwrap();
    let started = Instant::now();
    while !client.is_closed() {
        assert!(started.elapsed() < PATIENCE, "the server never went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let doc = client
        .collection("c")
        .get::<Value>("a")
        .await
        .expect("the read reconnects transparently");
    assert!(doc.is_some());
    client
        .collection("c")
        .insert(&json!({ "_key": "b" }))
        .await
        .expect("so does a write on a connection found closed");
    assert!(!client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_keeps_an_idle_connection_open() {
    let server = TestServer::start_with(|c| c.wire.idle_timeout = Duration::from_secs(1)).await;
    let client = Client::connect_with(&server.url(), options(Some(Duration::from_millis(200))))
        .await
        .unwrap();
    let token = client.session_token().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!client.is_closed(), "the keep-alive kept the connection");
    assert_eq!(client.session_token(), token);
    client.ping().await.unwrap();
    assert_eq!(client.session_token(), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_whose_connection_died_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let port = server.addr.port();
    let client = Client::connect_with(&server.url(), options(None))
        .await
        .unwrap();
    client.create_collection("c").await.unwrap();
    let tx = client.begin().await.unwrap();
    tx.collection("c")
        .insert(&json!({ "_key": "in-tx" }))
        .await
        .unwrap();

    server.signal(libc::SIGKILL);
    server.wait(PATIENCE);
    let _server = ServerProcess::start_on(&data, port, &[]);

    let err = tx
        .collection("c")
        .insert(&json!({ "_key": "more" }))
        .await
        .unwrap_err();
    assert!(err.is_state_lost(), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("the connection holding transaction {}", tx.id()))
            && message.contains("rolled it back")
            && message.contains("run the transaction again"),
        "{message}"
    );
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_state_lost(), "{err}");

    // A new transaction begins on a fresh connection.
    let tx = client.begin().await.expect("begin after the restart");
    tx.collection("c")
        .insert(&json!({ "_key": "after" }))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(get_eventually(&client, "after").await.is_some());
    assert!(get_eventually(&client, "in-tx").await.is_none());
}
