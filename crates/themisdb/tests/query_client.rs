//! AQL through the Rust client's query builder, and through the `themisdb query` and
//! `themisdb shell` commands, against a real server on loopback with real storage.
//!
//! Covers: typed results with bind parameters (`@name` and `@@coll`), streaming in
//! batches with one round trip per batch, closing the server cursor when a stream is
//! dropped early, explain naming the index it would use, error messages that point at
//! the offending text, and write queries returning their rows.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::TestServer;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use themis_client::{wire, Client, ErrorCode, IndexOptions, OpCode};

#[derive(Debug, Deserialize, PartialEq)]
struct User {
    name: String,
    age: u32,
}

async fn fill_users(client: &Client) {
    let users = [
        ("ann", 25),
        ("bob", 31),
        ("cy", 42),
        ("dee", 30),
        ("eve", 55),
    ];
    let docs: Vec<Value> = users
        .iter()
        .map(|(name, age)| json!({ "_key": name, "name": name, "age": age }))
        .collect();
    client
        .collection("users")
        .insert_many(&docs)
        .await
        .expect("insert users");
}

async fn fill_numbers(client: &Client, coll: &str, n: u64) {
    let c = client.collection(coll);
    let mut start = 0;
    while start < n {
        let end = (start + 2_000).min(n);
        let docs: Vec<Value> = (start..end).map(|i| json!({ "n": i })).collect();
        c.insert_many(&docs).await.expect("bulk insert");
        start = end;
    }
}

#[tokio::test]
async fn typed_all_with_bind_vars() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;

    let older: Vec<User> = client
        .query("FOR u IN users FILTER u.age > @min SORT u.age RETURN u")
        .bind("min", 30)
        .expect("bind")
        .all()
        .await
        .expect("query");
    assert_eq!(
        older,
        vec![
            User {
                name: "bob".into(),
                age: 31
            },
            User {
                name: "cy".into(),
                age: 42
            },
            User {
                name: "eve".into(),
                age: 55
            },
        ]
    );

    // Any Serialize value binds: here a list and a string.
    let names: Vec<String> = client
        .query(
            "FOR u IN users FILTER u.name IN @names AND u.name != @not SORT u.name RETURN u.name",
        )
        .bind("names", ["ann", "cy", "eve"])
        .expect("bind")
        .bind("not", "eve")
        .expect("bind")
        .all()
        .await
        .expect("query");
    assert_eq!(names, ["ann", "cy"]);

    // first(): the first result, or None.
    let youngest: Option<User> = client
        .query("FOR u IN users SORT u.age RETURN u")
        .first()
        .await
        .expect("first");
    assert_eq!(youngest.map(|u| u.name).as_deref(), Some("ann"));
    let none: Option<Value> = client
        .query("FOR u IN users FILTER u.age > 1000 RETURN u")
        .first()
        .await
        .expect("first");
    assert_eq!(none, None);

    // Results that do not fit the type are a serialization error.
    let err = client
        .query("FOR u IN users RETURN u.name")
        .all::<u32>()
        .await
        .expect_err("strings are not numbers");
    assert!(
        matches!(err, themis_client::Error::Serialization(_)),
        "{err:?}"
    );

    // A missing bind parameter is the server's query error.
    let err = client
        .query("FOR u IN users FILTER u.age > @min RETURN u")
        .all::<Value>()
        .await
        .expect_err("missing bind parameter");
    assert_eq!(err.code(), Some(ErrorCode::ErrQuery), "{err}");
    assert!(err.to_string().contains("min"), "{err}");
}

#[tokio::test]
async fn database_handle_queries_its_database() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.create_database("shop").await.expect("create db");
    let shop = client.database("shop");
    shop.collection("items")
        .insert(&json!({ "_key": "a", "price": 3 }))
        .await
        .expect("insert");

    let prices: Vec<u32> = shop
        .query("FOR i IN items RETURN i.price")
        .all()
        .await
        .expect("query in shop");
    assert_eq!(prices, [3]);
    // The default database has no such collection.
    let err = client
        .query("FOR i IN items RETURN i.price")
        .all::<u32>()
        .await
        .expect_err("items is in shop only");
    assert!(err.to_string().contains("items"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_10k_in_batches_of_100() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_numbers(&client, "numbers", 10_000).await;

    let mut stream = client
        .query("FOR d IN numbers SORT d.n RETURN d.n")
        .batch_size(100)
        .stream::<u64>()
        .await
        .expect("stream");
    assert_eq!(stream.batches_fetched(), 1, "only the first batch so far");
    assert!(stream.cursor_id().is_some(), "the server holds the rest");

    let mut expected = 0u64;
    while let Some(n) = stream.try_next().await.expect("next") {
        assert_eq!(n, expected, "results in order");
        expected += 1;
        // One batch held at a time: the next is fetched only once this one is drained.
        assert_eq!(
            stream.batches_fetched(),
            expected.div_ceil(100),
            "after {expected} results"
        );
    }
    assert_eq!(expected, 10_000);
    assert!(
        stream.batches_fetched() >= 100,
        "{} round trips",
        stream.batches_fetched()
    );
    assert_eq!(stream.cursor_id(), None, "exhausted: no cursor left");
    assert_eq!(stream.stats().rows_returned, 10_000);
    assert_eq!(stream.stats().documents_scanned, 10_000);
    // Ended streams stay ended.
    assert!(stream.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_early_closes_its_cursor() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_numbers(&client, "numbers", 500).await;

    let mut stream = client
        .query("FOR d IN numbers RETURN d.n")
        .batch_size(10)
        .stream::<u64>()
        .await
        .expect("stream");
    for _ in 0..15 {
        stream.try_next().await.expect("next").expect("a result");
    }
    assert_eq!(stream.batches_fetched(), 2);
    let cursor_id = stream.cursor_id().expect("more results remain").to_owned();
    drop(stream);

    // The close goes out from a spawned task; give it a moment.
    let request = wire::CursorNextRequest {
        cursor_id: cursor_id.clone(),
        batch_size: 1,
        ..Default::default()
    };
    let mut last = None;
    for _ in 0..100 {
        let response: wire::QueryResponse = client
            .raw_request(OpCode::OpCursorNext, &request)
            .await
            .expect("answer");
        if !response.success {
            last = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = last.expect("the cursor was closed within 2 s");
    let error = response.error.expect("error set");
    assert_eq!(error.code, ErrorCode::ErrCursorNotFound as i32, "{error:?}");
    assert!(error.message.contains(&cursor_id), "{}", error.message);

    // The connection still serves queries.
    let n: Vec<u64> = client
        .query("RETURN 1")
        .all()
        .await
        .expect("query after close");
    assert_eq!(n, [1]);
}

#[tokio::test]
async fn explain_names_the_index() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;
    client
        .create_index("users", "by_age", &["age"], IndexOptions::default())
        .await
        .expect("create index");

    let plan = client
        .query("FOR u IN users FILTER u.age == @age RETURN u")
        .bind("age", 30)
        .expect("bind")
        .explain()
        .await
        .expect("explain");
    assert!(plan.contains("by_age"), "plan names the index:\n{plan}");

    // Explain runs nothing: a write query's explain writes nothing.
    let plan = client
        .query("INSERT { name: 'zed', age: 1 } INTO users")
        .explain()
        .await
        .expect("explain write");
    assert!(!plan.is_empty());
    let count: Vec<u64> = client
        .query("FOR u IN users COLLECT WITH COUNT INTO n RETURN n")
        .all()
        .await
        .expect("count");
    assert_eq!(count, [5], "explain did not insert");
}

#[tokio::test]
async fn syntax_error_points_at_the_text() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;

    let err = client
        .query("FOR u IN users\n  FILTER u.age >> 3\n  RETURN u")
        .all::<Value>()
        .await
        .expect_err("syntax error");
    assert_eq!(err.code(), Some(ErrorCode::ErrQuery), "{err}");
    let message = err.server_message().expect("server error");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("FILTER u.age >> 3"), "{message}");
    assert!(message.contains('^'), "{message}");

    // Explain reports the same error.
    let err = client
        .query("FOR u IN users RETURN")
        .explain()
        .await
        .expect_err("syntax error");
    assert_eq!(err.code(), Some(ErrorCode::ErrQuery), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[tokio::test]
async fn bind_collection_parameters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;

    let names: Vec<String> = client
        .query("FOR u IN @@coll FILTER u.age < @max SORT u.name RETURN u.name")
        .bind_collection("coll", "users")
        .bind("max", 31)
        .expect("bind")
        .all()
        .await
        .expect("query");
    assert_eq!(names, ["ann", "dee"]);

    // The leading @s are optional in the name.
    let n: Vec<u64> = client
        .query("RETURN LENGTH(@@c)")
        .bind_collection("@@c", "users")
        .all()
        .await
        .expect("query");
    assert_eq!(n, [5]);
}

#[tokio::test]
async fn write_query_returns_its_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let inserted: Vec<Value> = client
        .query("FOR i IN 1..@n INSERT { _key: CONCAT('k', i), i: i } INTO things RETURN NEW")
        .bind("n", 3)
        .expect("bind")
        .all()
        .await
        .expect("insert query");
    assert_eq!(inserted.len(), 3);
    for (i, doc) in inserted.iter().enumerate() {
        assert_eq!(doc["i"], json!(i + 1));
        assert_eq!(doc["_key"], json!(format!("k{}", i + 1)));
        assert!(doc["_rev"].is_string(), "{doc}");
    }
    let stored: Option<Value> = client.collection("things").get("k2").await.expect("get");
    assert_eq!(stored.expect("stored")["i"], json!(2));

    let mut stream = client
        .query("FOR t IN things UPDATE t WITH { seen: true } IN things RETURN NEW.seen")
        .batch_size(2)
        .stream::<bool>()
        .await
        .expect("update query");
    let mut seen = Vec::new();
    while let Some(s) = stream.try_next().await.expect("next") {
        seen.push(s);
    }
    assert_eq!(seen, [true, true, true]);
    assert_eq!(stream.stats().writes_executed, 3);
    assert_eq!(stream.batches_fetched(), 2);
}

// ---- the binary ----------------------------------------------------------------------

/// Runs `themisdb <args>` with `stdin`, off the async runtime so the in-process
/// server keeps serving.
async fn themisdb(args: Vec<String>, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_themisdb"))
            .args(&args)
            .env_remove("THEMIS_URL")
            .env_remove("THEMIS_PASSWORD")
            .env("THEMIS_HISTORY", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn themisdb");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(pipe);
        child.wait_with_output().expect("themisdb runs")
    })
    .await
    .expect("blocking task")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_command_prints_json_lines() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;
    let url = server.url();

    let out = themisdb(
        args(&[
            "query",
            "--url",
            &url,
            "--bind",
            "min=30",
            "--bind",
            "@@c=users",
            "FOR u IN @@c FILTER u.age >= @min SORT u.age RETURN { name: u.name, age: u.age }",
        ]),
        None,
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"name": "dee", "age": 30}),
            json!({"name": "bob", "age": 31}),
            json!({"name": "cy", "age": 42}),
            json!({"name": "eve", "age": 55}),
        ]
    );

    // --json: one array.
    let out = themisdb(
        args(&[
            "query",
            "--url",
            &url,
            "--json",
            "FOR u IN users SORT u.name LIMIT 2 RETURN u.name",
        ]),
        None,
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(all, json!(["ann", "bob"]));

    // --explain prints the plan; the query from stdin with "-".
    let out = themisdb(
        args(&["query", "--url", &url, "--explain", "-"]),
        Some("FOR u IN users RETURN u;\n".into()),
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("users"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_command_fails_with_the_caret() {
    let server = TestServer::start().await;
    let url = server.url();

    let out = themisdb(
        args(&[
            "query",
            "--url",
            &url,
            "FOR u IN users FILTER u.age >> 3 RETURN u",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("ERR_QUERY"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    let caret_line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with('^'))
        .unwrap_or_else(|| panic!("no caret line in {stderr}"));
    let query_line = stderr
        .lines()
        .find(|l| l.contains("FILTER u.age >> 3"))
        .expect("query line");
    let at = caret_line.find('^').expect("caret");
    assert_eq!(&query_line[at..at + 2], ">>", "caret under the operator");

    // A bad --bind is refused before connecting.
    let out = themisdb(
        args(&["query", "--url", &url, "--bind", "name=Ann", "RETURN @name"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("quote strings"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_reads_statements_from_stdin() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill_users(&client).await;
    let url = server.url();

    let script = "\
FOR u IN users
  FILTER u.age < 31
  SORT u.name
  RETURN { name: u.name, age: u.age };
.json
RETURN { answer: 42 };
.table
.bind max=30
FOR u IN users FILTER u.age < @max RETURN u.name; RETURN 'a;b'
";
    let out = themisdb(args(&["shell", "--url", &url]), Some(script.into())).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {stdout}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // The table: header, rows aligned, numbers right-aligned.
    assert!(lines.contains(&"| name | age |"), "{stdout}");
    assert!(lines.contains(&"| ann  |  25 |"), "{stdout}");
    assert!(lines.contains(&"| dee  |  30 |"), "{stdout}");
    assert!(
        stdout.contains("2 rows (stats: scanned 5, index lookups 0,"),
        "{stdout}"
    );
    // .json: pretty JSON.
    assert!(stdout.contains("{\n  \"answer\": 42\n}"), "{stdout}");
    // .bind, then back to a table with a single value column.
    assert!(lines.contains(&"| value |"), "{stdout}");
    assert!(lines.contains(&"| ann   |"), "{stdout}");
    // The `;` inside a string does not split the statement; the last one needs none.
    assert!(lines.contains(&"| a;b   |"), "{stdout}");

    // Errors are shown in full and make the exit code 1; later statements still run.
    let out = themisdb(
        args(&["shell", "--url", &url]),
        Some("RETURN 1 +;\n.nonsense\nRETURN 2;\n".into()),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ERR_QUERY") && stderr.contains('^'),
        "{stderr}"
    );
    assert!(stderr.contains(".help"), "{stderr}");
    assert!(
        text(&out.stdout).contains("|     2 |"),
        "{}",
        text(&out.stdout)
    );
}
