//! Query limits and cursor rules on a real server: the memory and time limits fail
//! a query with a clear error, open cursors are capped per connection, cursors are
//! private to their connection, and unknown or closed cursors are reported.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};
use themis_client::{wire, Client, ErrorCode, OpCode};

async fn query(client: &Client, aql: &str, batch_size: i32) -> wire::QueryResponse {
    let req = wire::QueryRequest {
        aql_query: aql.into(),
        batch_size,
        ..Default::default()
    };
    client
        .raw_request(OpCode::OpQuery, &req)
        .await
        .expect("round trip")
}

fn code(resp: &wire::QueryResponse) -> Option<ErrorCode> {
    resp.error
        .as_ref()
        .and_then(|e| ErrorCode::try_from(e.code).ok())
}

#[tokio::test]
async fn memory_limit_fails_a_materialising_query_clearly() {
    let server = TestServer::start_with(|c| c.query.memory_limit = 1024 * 1024).await;
    let client = server.client().await;
    let docs: Vec<Value> = (0..3000)
        .map(|n| json!({ "n": n, "pad": "x".repeat(1000) }))
        .collect();
    client.collection("wide").insert_many(&docs).await.unwrap();
    // Streaming needs no memory: fine.
    let ok = query(&client, "FOR d IN wide RETURN d.n", 0).await;
    assert!(ok.success, "{}", ok.error_message);
    // Sorting everything must hold it: over the limit.
    let resp = query(&client, "FOR d IN wide SORT d.n DESC RETURN d", 0).await;
    assert!(!resp.success);
    assert_eq!(code(&resp), Some(ErrorCode::ErrQuery));
    assert!(
        resp.error_message.contains("memory limit"),
        "{}",
        resp.error_message
    );
    // The server keeps serving.
    client.ping().await.unwrap();
}

#[tokio::test]
async fn time_limit_stops_a_runaway_query() {
    let server = TestServer::start_with(|c| c.query.max_runtime = Duration::from_millis(300)).await;
    let client = server.client().await;
    let started = std::time::Instant::now();
    let resp = query(
        &client,
        "FOR a IN 1..1000000 FOR b IN 1..1000 FILTER a == -b RETURN a",
        0,
    )
    .await;
    assert!(!resp.success);
    assert_eq!(code(&resp), Some(ErrorCode::ErrQuery));
    assert!(
        resp.error_message.contains("time limit"),
        "{}",
        resp.error_message
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    client.ping().await.unwrap();
}

#[tokio::test]
async fn cursors_are_capped_private_and_closable() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        let r = query(&client, "FOR i IN 1..10 RETURN i", 1).await;
        assert!(r.success && r.has_more, "{}", r.error_message);
        ids.push(r.cursor_id);
    }
    let over = query(&client, "FOR i IN 1..10 RETURN i", 1).await;
    assert_eq!(
        code(&over),
        Some(ErrorCode::ErrResourceExhausted),
        "{}",
        over.error_message
    );
    assert!(over.error_message.contains("64"), "{}", over.error_message);

    // Another connection cannot read this connection's cursor.
    let other = server.client().await;
    let stolen: wire::QueryResponse = other
        .raw_request(
            OpCode::OpCursorNext,
            &wire::CursorNextRequest {
                cursor_id: ids[0].clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&stolen), Some(ErrorCode::ErrCursorNotFound));

    // Closing one frees a slot; closing it again says it is gone.
    let closed: wire::CursorCloseResponse = client
        .raw_request(
            OpCode::OpCursorClose,
            &wire::CursorCloseRequest {
                cursor_id: ids[0].clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(closed.success);
    let again: wire::CursorCloseResponse = client
        .raw_request(
            OpCode::OpCursorClose,
            &wire::CursorCloseRequest {
                cursor_id: ids[0].clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!again.success);
    let r = query(&client, "FOR i IN 1..10 RETURN i", 1).await;
    assert!(r.success, "{}", r.error_message);

    // Reading a cursor to the end releases it: the last batch has no cursor id.
    let mut id = ids[1].clone();
    let mut seen = 1;
    loop {
        let next: wire::QueryResponse = client
            .raw_request(
                OpCode::OpCursorNext,
                &wire::CursorNextRequest {
                    cursor_id: id.clone(),
                    batch_size: 3,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(next.success, "{}", next.error_message);
        seen += next.results.len();
        if !next.has_more {
            assert!(next.cursor_id.is_empty());
            break;
        }
        id = next.cursor_id;
    }
    assert_eq!(seen, 10);
    let gone: wire::QueryResponse = client
        .raw_request(
            OpCode::OpCursorNext,
            &wire::CursorNextRequest {
                cursor_id: ids[1].clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&gone), Some(ErrorCode::ErrCursorNotFound));
    assert!(
        gone.error_message.contains("run the query again"),
        "{}",
        gone.error_message
    );
}

#[tokio::test]
async fn bad_bind_values_and_queries_are_answered_in_the_typed_response() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut req = wire::QueryRequest {
        aql_query: "RETURN @x".into(),
        ..Default::default()
    };
    req.bind_vars
        .insert("x".into(), b"{not json".to_vec().into());
    let resp: wire::QueryResponse = client.raw_request(OpCode::OpQuery, &req).await.unwrap();
    assert_eq!(code(&resp), Some(ErrorCode::ErrInvalidArgument));
    assert!(resp.error_message.contains("'x'"), "{}", resp.error_message);
    let resp = query(&client, "FOR x IN 1..3\n  RETURN x +", 0).await;
    assert_eq!(code(&resp), Some(ErrorCode::ErrQuery));
    assert!(
        resp.error_message.contains("line 2"),
        "{}",
        resp.error_message
    );
    assert!(resp.error_message.contains('^'), "{}", resp.error_message);
}

/// A query whose connection goes away stops: four runaway queries fill the four
/// query threads, their clients vanish, and a new query is answered promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_of_a_closed_connection_are_cancelled() {
    let server = TestServer::start().await;
    let mut hogs = Vec::new();
    for i in 0..4u64 {
        let mut c = common::RawConn::login(server.addr).await;
        let q = wire::QueryRequest {
            aql_query: "FOR a IN 1..100000 FOR b IN 1..100000 FILTER a == -b RETURN a".into(),
            ..Default::default()
        };
        c.send(OpCode::OpQuery, 10 + i, &q).await;
        hogs.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(hogs);
    let client = server.client().await;
    let answered =
        tokio::time::timeout(Duration::from_secs(10), query(&client, "RETURN 1", 0)).await;
    let resp = answered.expect("the query threads were freed by cancelling the abandoned queries");
    assert!(resp.success, "{}", resp.error_message);
}

/// Values a query builds and drops per row (an inner range, a subquery result) do
/// not add up against the memory limit: only what is held at once counts.
#[tokio::test]
async fn per_row_temporaries_do_not_accumulate_against_the_memory_limit() {
    let server = TestServer::start_with(|c| c.query.memory_limit = 8 * 1024 * 1024).await;
    let client = server.client().await;
    for aql in [
        // ~2.4 MB per inner range, 50 times over.
        "FOR a IN 1..50 FOR b IN 1..100000 FILTER a == -b RETURN a",
        // ~25 KB per subquery result, 2,000 times over.
        "FOR a IN 1..2000 LET s = (FOR b IN 1..1000 RETURN b) FILTER LENGTH(s) != 1000 RETURN a",
    ] {
        let resp = query(&client, aql, 0).await;
        assert!(resp.success, "{aql}: {}", resp.error_message);
    }
    // What is held at once still counts.
    let resp = query(&client, "RETURN LENGTH(1..2000000)", 0).await;
    assert!(
        resp.error_message.contains("memory limit"),
        "{}",
        resp.error_message
    );
}
