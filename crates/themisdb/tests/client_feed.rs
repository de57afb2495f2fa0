//! The client's subscription stream against a real server process that is killed
//! with SIGKILL and restarted: it resumes by itself from the last sequence it
//! delivered, and the application sees every acknowledged write exactly once, in
//! order, with nothing that was never written.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use themis_client::{Client, SubscribeOptions};

use common::ServerProcess;

/// Inserts `{_key: "k<i>"}` for `range` until one fails (the client reconnects by
/// itself, so once the server is gone a failure means it stays gone for a while);
/// returns the keys the server acknowledged.
async fn insert_range(client: &Client, range: std::ops::Range<u32>) -> Vec<String> {
    let coll = client.collection("feed");
    let mut acked = Vec::new();
    for i in range {
        let key = format!("k{i}");
        if coll.insert(&json!({ "_key": key, "i": i })).await.is_err() {
            break;
        }
        acked.push(key);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_resumes_by_itself_across_a_server_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let port = server.addr.port();
    let client = Client::connect(&server.url()).await.unwrap();
    client.create_collection("feed").await.unwrap();
    let mut sub = client
        .subscribe(SubscribeOptions::collection("feed").include_documents(true))
        .await
        .unwrap();

    // The application: records what the stream hands it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = sub.next().await {
            let event = item.expect("the stream resumes instead of failing");
            let key = event.key.clone();
            let i = event.document.as_ref().map(|d| d["i"].clone());
            if tx.send((event.sequence, key, i)).is_err() {
                break;
            }
        }
    });

    let mut acked = insert_range(&client, 0..200).await;
    assert_eq!(acked.len(), 200);
    // Writes in flight while the server dies: some may commit without an answer.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move { insert_range(&client, 200..100_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGKILL);
    server.wait(Duration::from_secs(30));
    acked.extend(writer.await.unwrap());
    drop(client);

    let restarted = ServerProcess::start_on(&data, port, &[]);
    let client = Client::connect(&restarted.url()).await.unwrap();
    let after = insert_range(&client, 100_000..100_200).await;
    assert_eq!(after.len(), 200);
    acked.extend(after);

    let mut seen = Vec::new();
    let wanted: HashSet<&String> = acked.iter().collect();
    let mut missing = wanted.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while missing > 0 {
        let (seq, key, i) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{missing} acknowledged inserts never arrived"))
            .expect("the stream ended early");
        if wanted.contains(&key) {
            missing -= 1;
        }
        seen.push((seq, key, i));
    }
    reader.abort();

    // In order, each once, and nothing that was never written.
    for pair in seen.windows(2) {
        assert!(pair[0].0 < pair[1].0, "sequences out of order: {pair:?}");
    }
    let keys: HashSet<&String> = seen.iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys.len(), seen.len(), "an event was delivered twice");
    for (_, key, i) in &seen {
        let n: u32 = key[1..].parse().expect("a key this test wrote");
        assert_eq!(i.as_ref().and_then(|v| v.as_u64()), Some(u64::from(n)));
    }
    // The server's own log agrees: every delivered event is durable history.
    let replay = client
        .subscribe(SubscribeOptions::collection("feed").from_sequence(0))
        .await
        .unwrap();
    let logged: Vec<u64> = replay
        .take(seen.len())
        .map(|e| e.unwrap().sequence)
        .collect()
        .await;
    assert_eq!(
        logged,
        seen.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        "the delivered events are the logged history"
    );
}
