//! The server as a real child process: killed with SIGKILL mid-load, or stopped with
//! SIGTERM mid-load, and restarted on the same data directory. Nothing the server
//! acknowledged may be missing afterwards.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ServerProcess;
use serde_json::{json, Value};
use themis_client::{Client, ClientOptions, Error, ErrorCode, ErrorKind};

const WRITERS: usize = 16;

/// Writers insert documents with known keys until their connection fails. Returns the
/// acknowledged keys and, per writer, the error that stopped it.
async fn load_until_failure(
    url: String,
    ack: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<Error>> {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // The pool waits this long for the server to come back before a request fails.
        let options = ClientOptions {
            acquire_timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&url, options).await.expect("connect");
        let ack = ack.clone();
        tasks.push(tokio::spawn(async move {
            let coll = client.collection("durable");
            let mut i = 0u64;
            loop {
                let key = format!("w{w}-{i}");
                let doc = json!({ "_key": key, "writer": w, "seq": i, "pad": "x".repeat(64) });
                // Alternate single and bulk inserts: both must be durable when acked.
                let result = if i % 4 == 3 {
                    let k2 = format!("{key}-b");
                    let docs = vec![doc, json!({ "_key": k2, "writer": w, "seq": i })];
                    coll.insert_many(&docs).await
                } else {
                    coll.insert(&doc).await.map(|m| vec![m.key])
                };
                match result {
                    Ok(keys) => ack.lock().unwrap().extend(keys),
                    Err(e) => return e,
                }
                i += 1;
            }
        }));
    }
    tasks
}

async fn assert_all_present(url: &str, acked: &[String]) {
    let client = Client::connect(url).await.expect("connect after restart");
    let coll = client.collection("durable");
    for chunk in acked.chunks(1000) {
        let docs: Vec<Option<Value>> = coll.get_many(chunk).await.expect("read back");
        for (key, doc) in chunk.iter().zip(docs) {
            let doc = doc
                .unwrap_or_else(|| panic!("acknowledged document {key} is missing after restart"));
            assert_eq!(doc["_key"], json!(key));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let ack = Arc::new(Mutex::new(Vec::new()));
    let tasks = load_until_failure(server.url(), ack.clone()).await;

    // Let the load run, then kill without warning while writes are in flight.
    while ack.lock().unwrap().len() < 2000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal(libc::SIGKILL);
    let status = server.wait(Duration::from_secs(10));
    assert!(!status.success(), "killed, not exited: {status:?}");
    for t in tasks {
        let e = t.await.unwrap();
        assert_eq!(
            e.kind(),
            ErrorKind::Connection,
            "writers fail with a connection error, got {e:?}"
        );
    }
    let acked = ack.lock().unwrap().clone();
    assert!(acked.len() >= 2000);

    let restarted = ServerProcess::start(&data, &[]);
    assert_all_present(&restarted.url(), &acked).await;
    // Bulk inserts are atomic: no bulk is half there.
    let client = Client::connect(&restarted.url()).await.unwrap();
    let stats = client.collection_stats("durable").await.unwrap();
    assert!(stats.count >= acked.len() as u64);
    assert!(
        stats.count <= acked.len() as u64 + 2 * WRITERS as u64,
        "at most one unacked write per writer may have landed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_drains_with_goaway_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let ack = Arc::new(Mutex::new(Vec::new()));
    let tasks = load_until_failure(server.url(), ack.clone()).await;

    while ack.lock().unwrap().len() < 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");

    for t in tasks {
        let e = t.await.unwrap();
        // The pool reconnects by itself after GOAWAY, so a writer may instead stop
        // waiting for a connection the server (gone) refuses: nothing was reset.
        let refused = matches!(&e, Error::Timeout { operation, .. }
            if operation.starts_with("acquiring") && operation.contains("Connection refused"));
        let graceful = matches!(e, Error::GoAway { .. })
            || e.code() == Some(ErrorCode::ErrUnavailable)
            || refused;
        assert!(
            graceful,
            "clients see GOAWAY, UNAVAILABLE for late requests or a refused reconnect, \
             not a reset: {e:?}"
        );
        if let Error::GoAway { reason, .. } = &e {
            assert!(reason.starts_with("shutdown"), "{reason}");
        }
    }
    let acked = ack.lock().unwrap().clone();
    let restarted = ServerProcess::start(&data, &[]);
    assert_all_present(&restarted.url(), &acked).await;
}

#[tokio::test]
async fn first_start_generates_root_password_file_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An empty THEMIS_ROOT_PASSWORD means "generate one".
    let server = ServerProcess::start(&data, &[("THEMIS_ROOT_PASSWORD", "")]);
    let file = data.join("root-password");
    let meta = std::fs::metadata(&file).expect("root-password file exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 16);
    let url = format!("themis://root:{password}@{}", server.addr);
    let client = Client::connect(&url)
        .await
        .expect("generated password works");
    client.ping().await.unwrap();
    let wrong = Client::connect(&format!(
        "themis://root:{}@{}",
        common::ROOT_PASSWORD,
        server.addr
    ))
    .await;
    assert_eq!(
        wrong.err().and_then(|e| e.code()),
        Some(ErrorCode::ErrAuthFailed)
    );
}
