//! Queries at scale against a real server: an indexed lookup on 100,000 documents
//! reads only what matches, and a 1,000,000-document result streams to a slow reader
//! without the server's memory growing with the result.

mod common;

use std::time::Duration;

use common::{ServerProcess, TestServer};
use serde_json::{json, Value};
use themis_client::{wire, Client, IndexOptions, OpCode};

async fn fill(client: &Client, coll: &str, n: u64) {
    let c = client.collection(coll);
    let mut start = 0;
    while start < n {
        let end = (start + 10_000).min(n);
        let docs: Vec<Value> = (start..end)
            .map(|i| json!({ "n": i, "g": i % 10 }))
            .collect();
        c.insert_many(&docs).await.expect("bulk insert");
        start = end;
    }
}

async fn run(client: &Client, aql: &str, batch_size: i32, explain: bool) -> wire::QueryResponse {
    let req = wire::QueryRequest {
        aql_query: aql.into(),
        batch_size,
        explain,
        ..Default::default()
    };
    let resp: wire::QueryResponse = client
        .raw_request(OpCode::OpQuery, &req)
        .await
        .expect("query");
    assert!(resp.success, "{aql}: {}", resp.error_message);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_lookups_on_100k_documents_scan_only_matches() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill(&client, "big", 100_000).await;
    client
        .create_index("big", "by_n", &["n"], IndexOptions::default())
        .await
        .expect("create index");

    let cases: &[(&str, u64, u64)] = &[
        // (query, rows, documents scanned)
        ("FOR d IN big FILTER d.n == 4242 RETURN d.n", 1, 1),
        (
            "FOR d IN big FILTER d.n >= 100 AND d.n < 200 RETURN d.n",
            100,
            100,
        ),
        (
            "FOR d IN big FILTER d.n IN [7, 70000, 99999, 123456789] RETURN d.n",
            3,
            3,
        ),
        ("FOR d IN big SORT d.n DESC LIMIT 5 RETURN d.n", 5, 5),
    ];
    for (aql, rows, scanned) in cases {
        let plan = run(&client, aql, 0, true).await.stats.unwrap().plan;
        assert!(
            plan.contains("by_n"),
            "{aql}: plan names the index:\n{plan}"
        );
        let resp = run(&client, aql, 0, false).await;
        let stats = resp.stats.unwrap();
        assert_eq!(resp.results.len() as u64, *rows, "{aql}");
        assert_eq!(
            stats.documents_scanned, *scanned,
            "{aql}: only matching documents are read"
        );
        assert!(stats.index_lookups >= 1, "{aql}");
    }
    // Without an index the same filter scans everything: the comparison is real.
    let resp = run(
        &client,
        "FOR d IN big FILTER d.g == 3 AND d.n == 4243 RETURN d.n",
        0,
        false,
    )
    .await;
    assert_eq!(
        resp.stats.unwrap().documents_scanned,
        1,
        "planner uses by_n for the n condition"
    );
    let resp = run(
        &client,
        "FOR d IN big FILTER d.g == 3 COLLECT WITH COUNT INTO c RETURN c",
        0,
        false,
    )
    .await;
    assert_eq!(resp.stats.unwrap().documents_scanned, 100_000);
    let sorted = run(
        &client,
        "FOR d IN big SORT d.n DESC LIMIT 3 RETURN d.n",
        0,
        false,
    )
    .await;
    let got: Vec<Value> = sorted
        .results
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(got, vec![json!(99_999), json!(99_998), json!(99_997)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_document_result_streams_with_flat_server_memory() {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let client = Client::connect(&server.url()).await.unwrap();
    fill(&client, "huge", N).await;
    // Let the writes settle, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss_kib();

    let first = run(&client, "FOR d IN huge RETURN d", 1000, false).await;
    assert!(first.has_more);
    let mut received = first.results.len() as u64;
    let mut peak = server.rss_kib();
    let mut cursor = first.cursor_id.clone();
    let mut batches = 1u64;
    while !cursor.is_empty() {
        // A slow reader: the server must hold one batch, not the result.
        if batches % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            peak = peak.max(server.rss_kib());
        }
        let next: wire::QueryResponse = client
            .raw_request(
                OpCode::OpCursorNext,
                &wire::CursorNextRequest {
                    cursor_id: cursor.clone(),
                    batch_size: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(next.success, "{}", next.error_message);
        received += next.results.len() as u64;
        batches += 1;
        cursor = if next.has_more {
            next.cursor_id
        } else {
            String::new()
        };
    }
    assert_eq!(received, N);
    assert!(batches >= 1000);
    // 1,000,000 documents held as values would take several hundred MiB; the bound
    // leaves room for the storage engine's block cache (64 MiB) and allocator noise.
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "streamed {N} documents in {batches} batches; server RSS {baseline} KiB -> peak {peak} KiB"
    );
    assert!(
        growth_mib < 160,
        "server RSS grew by {growth_mib} MiB while streaming (baseline {baseline} KiB, peak {peak} KiB)"
    );
}
