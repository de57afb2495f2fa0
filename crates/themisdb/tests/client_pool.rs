//! Acceptance tests of the client's connection pool, against real `themisdb` processes:
//! several targets and a dead one, saturation (acquire timeouts, FIFO waiters), idle
//! reaping, warm-up, keep-alive against the server's idle timeout, the statistics,
//! the pool's `themis://` URL parameters, and GOAWAY on a graceful shutdown.
//!
//! Timing: no test asserts that something happened *fast*; deadlines only stop a broken
//! test from hanging, and durations are checked only as lower bounds.
//!
//! A "hold" is a request that keeps its pooled connection busy for a known time: an AQL
//! query that would run for ages, on a server whose `[query] max_runtime` stops it
//! (with `ERR_QUERY`) after exactly that long.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use themis_client::{Client, ClientOptions, Error, ErrorCode, PoolStats, TargetStats};

use common::{ServerProcess, ROOT_PASSWORD};

/// Only to stop a broken test from hanging.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs "forever" (10^9 rows); the server's `max_runtime` ends it.
const HOLD_QUERY: &str =
    "FOR a IN 1..1000 FOR b IN 1..1000 FOR c IN 1..1000 COLLECT WITH COUNT INTO n RETURN n";

/// A server in a fresh temp dir (kept alive by the returned guard).
fn start_server(env: &[(&str, &str)]) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(&dir.path().join("data"), env);
    (server, dir)
}

/// A server whose queries stop after `max_runtime` (for holds).
fn slow_server(max_runtime: &str) -> (ServerProcess, tempfile::TempDir) {
    start_server(&[("THEMIS_QUERY_MAX_RUNTIME", max_runtime)])
}

/// `themis://root:<pw>@a,b,.../?query`
fn pool_url(servers: &[&ServerProcess], query: &str) -> String {
    let hosts: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let mut url = format!("themis://root:{ROOT_PASSWORD}@{}", hosts.join(","));
    if !query.is_empty() {
        url.push_str("/?");
        url.push_str(query);
    }
    url
}

/// Pool options for tests: no keep-alive pings (they would count as requests).
fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        keepalive_interval: None,
        ..ClientOptions::default()
    }
}

async fn connect(servers: &[&ServerProcess], options: ClientOptions) -> Client {
    let url = pool_url(servers, "");
    Client::connect_with(&url, options)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A plain client to one server (to set up or inspect its data directly).
async fn direct(server: &ServerProcess) -> Client {
    Client::connect(&server.url())
        .await
        .expect("direct client connects")
}

/// The statistics of the target listening on `port`.
fn target(stats: &PoolStats, port: u16) -> TargetStats {
    let suffix = format!(":{port}");
    stats
        .targets
        .iter()
        .find(|t| t.addr.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no target on port {port} in {stats:#?}"))
        .clone()
}

/// Polls `client.pool_stats()` until `done` holds; panics with the last stats after
/// `limit`.
async fn stats_eventually(
    client: &Client,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&PoolStats) -> bool,
) -> PoolStats {
    let started = Instant::now();
    loop {
        let stats = client.pool_stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not reached within {limit:?}; pool: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `f` until it succeeds; panics with the last error after `limit`.
async fn ok_eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    started.elapsed() < limit,
                    "{what}: still failing after {limit:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Starts a hold on `client`; it ends with the server's time-limit error.
fn spawn_hold(client: &Client) -> tokio::task::JoinHandle<Result<Vec<u64>, Error>> {
    let client = client.clone();
    tokio::spawn(async move { client.query(HOLD_QUERY).all::<u64>().await })
}

/// A finished hold: the server stopped it at its time limit (not a client error).
#[track_caller]
fn assert_hold_ended(result: Result<Result<Vec<u64>, Error>, tokio::task::JoinError>) {
    match result.expect("hold task") {
        Err(e) if e.code() == Some(ErrorCode::ErrQuery) => {
            assert!(e.to_string().contains("time limit"), "{e}");
        }
        other => panic!("the hold should end at the server's time limit, got {other:?}"),
    }
}

/// Kill -9 one of two targets: requests keep succeeding on the other (the first
/// within `connect_timeout` plus slack), the dead target shows as unhealthy, and once
/// it is back the pool reconnects to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_target_is_avoided_and_marked_unhealthy() {
    let dir_a = tempfile::tempdir().unwrap();
    let data_a = dir_a.path().join("data");
    let mut a = ServerProcess::start(&data_a, &[]);
    let (b, _dir_b) = start_server(&[]);
    let port_a = a.addr.port();
    for s in [&a, &b] {
        direct(s).await.create_collection("c").await.unwrap();
    }
    let opts = ClientOptions {
        min_connections_per_target: 1,
        ..options()
    };
    let connect_timeout = opts.connect_timeout;
    let client = connect(&[&a, &b], opts).await;
    let stats = client.pool_stats();
    assert_eq!(stats.targets.len(), 2, "{stats:#?}");
    assert!(target(&stats, port_a).healthy, "{stats:#?}");
    assert!(target(&stats, b.addr.port()).healthy, "{stats:#?}");
    client.ping().await.unwrap();

    a.signal(libc::SIGKILL);
    a.wait(PATIENCE);

    // The first success after the kill: within connect_timeout, plus slack.
    ok_eventually(
        "ping after killing one target",
        connect_timeout + Duration::from_secs(5),
        || client.ping(),
    )
    .await;

    // The pool finds out that a is gone (reconnecting to keep its minimum fails).
    let stats = stats_eventually(&client, "target a unhealthy", PATIENCE, |s| {
        !target(s, port_a).healthy
    })
    .await;
    let ta = target(&stats, port_a);
    assert_eq!(ta.open, 0, "{stats:#?}");
    assert!(ta.consecutive_failures >= 1, "{stats:#?}");
    assert!(target(&stats, b.addr.port()).healthy, "{stats:#?}");

    // With a known dead, every request goes to b, reads and writes alike.
    let coll = client.collection("c");
    for i in 0..20 {
        client
            .ping()
            .await
            .unwrap_or_else(|e| panic!("ping {i}: {e}"));
        let meta = coll
            .insert(&json!({ "_key": format!("k{i}"), "i": i }))
            .await
            .unwrap_or_else(|e| panic!("insert {i}: {e}"));
        let doc: Option<Value> = coll
            .get(&meta.key)
            .await
            .unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(doc.expect("just inserted")["i"], i);
    }
    let on_b = direct(&b).await.collection_stats("c").await.unwrap().count;
    assert_eq!(on_b, 20, "every insert landed on b");
    assert!(client.pool_stats().connect_failures >= 1);

    // Back on the same port: the pool reconnects to it by itself.
    let _a = ServerProcess::start_on(&data_a, port_a, &[]);
    let stats = stats_eventually(&client, "target a healthy again", PATIENCE, |s| {
        let t = target(s, port_a);
        t.healthy && t.open >= 1
    })
    .await;
    assert_eq!(target(&stats, port_a).consecutive_failures, 0, "{stats:#?}");
    client.ping().await.unwrap();
}

/// One connection carrying one request at most: while a hold has it, a second request
/// waits `acquire_timeout` and fails with a timeout that names the target and the
/// pool's state; the pool is fine afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acquire_timeout_under_saturation_names_the_target_and_the_pool_state() {
    let (server, _dir) = slow_server("2s");
    let acquire_timeout = Duration::from_millis(300);
    let client = connect(
        &[&server],
        ClientOptions {
            max_connections_per_target: 1,
            max_in_flight_per_connection: 1,
            acquire_timeout,
            ..options()
        },
    )
    .await;
    let hold = spawn_hold(&client);
    stats_eventually(&client, "the hold has the slot", PATIENCE, |s| {
        s.in_flight == 1
    })
    .await;

    let started = Instant::now();
    let result = client.ping().await;
    let waited = started.elapsed();
    let (operation, after) = match result {
        Err(Error::Timeout { operation, after }) => (operation, after),
        other => panic!("expected an acquire timeout, got {other:?}"),
    };
    assert!(waited >= acquire_timeout, "gave up after {waited:?}");
    assert!(after >= acquire_timeout, "{after:?}");
    let text = operation.to_lowercase();
    assert!(
        operation.contains(&server.addr.to_string()),
        "names the target: {operation}"
    );
    for word in ["open", "in flight", "waiting"] {
        assert!(text.contains(word), "says {word:?}: {operation}");
    }
    assert!(!hold.is_finished(), "the hold outlived the wait");
    let stats = client.pool_stats();
    assert_eq!(stats.acquire_timeouts, 1, "{stats:#?}");
    assert_eq!(stats.waiting, 0, "the timed-out request left the queue");
    assert_eq!(stats.open, 1, "{stats:#?}");

    assert_hold_ended(hold.await);
    client.ping().await.expect("the pool serves again");
    let stats = client.pool_stats();
    assert_eq!(stats.acquire_timeouts, 1, "{stats:#?}");
    assert_eq!(stats.connections_created, 1, "{stats:#?}");
    assert_eq!(stats.in_flight, 0, "{stats:#?}");
}

/// Requests waiting for a saturated pool get it in the order they asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_get_the_connection_in_fifo_order() {
    const WAITERS: usize = 6;
    let (server, _dir) = slow_server("1500ms");
    let client = connect(
        &[&server],
        ClientOptions {
            max_connections_per_target: 1,
            max_in_flight_per_connection: 1,
            acquire_timeout: Duration::from_secs(10),
            ..options()
        },
    )
    .await;
    let hold = spawn_hold(&client);
    stats_eventually(&client, "the hold has the slot", PATIENCE, |s| {
        s.in_flight == 1
    })
    .await;
    let wait_before = client.pool_stats().acquire_wait_total;

    let finished = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let (waiter, finished) = (client.clone(), finished.clone());
        waiters.push(tokio::spawn(async move {
            waiter
                .ping()
                .await
                .unwrap_or_else(|e| panic!("waiter {i}: {e}"));
            finished.fetch_add(1, Ordering::SeqCst)
        }));
        // The next one asks only once this one is queued.
        stats_eventually(&client, "waiter queued", PATIENCE, |s| s.waiting == i + 1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!hold.is_finished(), "all waiters queued while the hold ran");
    assert_hold_ended(hold.await);
    let mut order = Vec::new();
    for w in waiters {
        order.push(w.await.expect("waiter task"));
    }
    assert_eq!(order, (0..WAITERS).collect::<Vec<_>>(), "completion order");

    let stats = client.pool_stats();
    assert_eq!(stats.waiting, 0, "{stats:#?}");
    assert_eq!(stats.acquire_timeouts, 0, "{stats:#?}");
    assert_eq!(stats.connections_created, 1, "{stats:#?}");
    // Each waiter queued well before the hold (1.5 s) ended: the waits add up.
    let waited = stats.acquire_wait_total.saturating_sub(wait_before);
    assert!(
        waited >= Duration::from_millis(500) * WAITERS as u32,
        "acquire_wait_total grew by {waited:?} only"
    );
}

/// Four concurrent requests open extra connections; once idle for `idle_timeout` they
/// are closed, down to the minimum (and not below).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_reaped_down_to_the_minimum() {
    let (server, _dir) = slow_server("1s");
    let client = connect(
        &[&server],
        ClientOptions {
            min_connections_per_target: 1,
            max_connections_per_target: 4,
            max_in_flight_per_connection: 1,
            idle_timeout: Duration::from_millis(300),
            acquire_timeout: Duration::from_secs(10),
            ..options()
        },
    )
    .await;
    assert_eq!(client.pool_stats().open, 1);
    let holds: Vec<_> = (0..4).map(|_| spawn_hold(&client)).collect();
    let mut peak_open = 0;
    while !holds.iter().all(|h| h.is_finished()) {
        peak_open = peak_open.max(client.pool_stats().open);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in holds {
        assert_hold_ended(h.await);
    }
    let stats = client.pool_stats();
    println!("after the holds (peak open {peak_open}): {stats:#?}");
    assert!(
        stats.connections_created >= 2 && peak_open >= 2,
        "concurrent requests beyond max_in_flight_per_connection opened connections: {stats:#?}"
    );
    assert!(stats.connections_created <= 4, "{stats:#?}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = stats_eventually(&client, "reaped to the minimum", PATIENCE, |s| s.open == 1).await;
    assert_eq!(
        stats.connections_closed,
        stats.connections_created - 1,
        "{stats:#?}"
    );
    // The minimum stays.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stats = client.pool_stats();
    assert_eq!(stats.open, 1, "{stats:#?}");
    let created = stats.connections_created;
    client.ping().await.unwrap();
    assert_eq!(client.pool_stats().connections_created, created);
}

/// With warm-up, `connect` returns with the minimum open; without, with one.
///
/// On a current-thread runtime, so that nothing the pool spawns in the background
/// runs between `connect` returning and the statistics being read.
#[tokio::test]
async fn warmup_opens_the_minimum_before_connect_returns() {
    let (server, _dir) = start_server(&[]);
    let warm = connect(
        &[&server],
        ClientOptions {
            min_connections_per_target: 3,
            enable_warmup: true,
            ..options()
        },
    )
    .await;
    let stats = warm.pool_stats();
    assert_eq!(stats.open, 3, "{stats:#?}");
    assert_eq!(stats.connections_created, 3, "{stats:#?}");
    assert_eq!(stats.connecting, 0, "{stats:#?}");
    assert_eq!(stats.targets.len(), 1, "{stats:#?}");
    assert_eq!(stats.targets[0].open, 3, "{stats:#?}");
    assert!(stats.targets[0].healthy, "{stats:#?}");

    let cold = connect(
        &[&server],
        ClientOptions {
            min_connections_per_target: 3,
            enable_warmup: false,
            ..options()
        },
    )
    .await;
    let stats = cold.pool_stats();
    assert_eq!(stats.open, 1, "{stats:#?}");
    assert_eq!(stats.connections_created, 1, "{stats:#?}");
    cold.ping().await.unwrap();
    warm.ping().await.unwrap();
}

/// A server that closes connections idle for 1 s.
fn idle_closing_server() -> (ServerProcess, tempfile::TempDir) {
    start_server(&[("THEMIS_WIRE_PROTOCOL_IDLE_TIMEOUT", "1s")])
}

/// Keep-alive pings keep the pooled connection past the server's idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keepalive_keeps_the_connection_past_the_server_idle_timeout() {
    let (server, _dir) = idle_closing_server();
    let client = connect(
        &[&server],
        ClientOptions {
            keepalive_interval: Some(Duration::from_millis(200)),
            ..options()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.ping().await.expect("a request after 3 s idle");
    let stats = client.pool_stats();
    assert_eq!(stats.connections_created, 1, "{stats:#?}");
    assert_eq!(stats.connections_closed, 0, "{stats:#?}");
    assert_eq!(stats.open, 1, "{stats:#?}");
}

/// Without keep-alive the server closes the idle connection; the next request still
/// works, on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_keepalive_an_idled_out_connection_is_replaced_transparently() {
    let (server, _dir) = idle_closing_server();
    let client = connect(&[&server], options()).await;
    client.create_collection("c").await.unwrap();
    client
        .collection("c")
        .insert(&json!({ "_key": "a" }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .ping()
        .await
        .expect("a request after the idle GOAWAY");
    let doc: Option<Value> = client
        .collection("c")
        .get("a")
        .await
        .expect("a read after the idle GOAWAY");
    assert!(doc.is_some());
    client
        .collection("c")
        .insert(&json!({ "_key": "b" }))
        .await
        .expect("a write after the idle GOAWAY");
    let stats = client.pool_stats();
    // At least one replacement; more if the pool refilled its minimum in the background
    // and the server idled that one out too.
    assert!(stats.connections_created >= 2, "{stats:#?}");
    assert!(stats.connections_closed >= 1, "{stats:#?}");
    assert_eq!(stats.acquire_timeouts, 0, "{stats:#?}");
}

/// On a warm pool, N sequential requests are N acquisitions, all reusing the open
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_statistics_count_acquisitions_and_reuse() {
    const N: u64 = 25;
    let (server, _dir) = start_server(&[]);
    let client = connect(&[&server], options()).await;
    client.create_collection("c").await.unwrap();
    client
        .collection("c")
        .insert(&json!({ "_key": "k", "v": 1 }))
        .await
        .unwrap();
    let before = client.pool_stats();
    assert!(before.acquisitions >= 2, "{before:#?}");
    for _ in 0..N {
        let doc: Option<Value> = client.collection("c").get("k").await.unwrap();
        assert_eq!(doc.unwrap()["v"], 1);
    }
    let after = client.pool_stats();
    assert_eq!(after.acquisitions - before.acquisitions, N, "{after:#?}");
    assert_eq!(after.reused - before.reused, N, "{after:#?}");
    assert_eq!(after.connections_created, before.connections_created);
    assert_eq!(after.connections_created, 1, "{after:#?}");
    assert_eq!(after.connections_closed, 0, "{after:#?}");
    assert_eq!((after.in_flight, after.waiting), (0, 0), "{after:#?}");
    assert_eq!(after.acquire_timeouts, 0, "{after:#?}");
    assert_eq!(after.connect_failures, 0, "{after:#?}");
    assert!(after.reused <= after.acquisitions);
}

/// The pool's settings as URL query parameters behave as the options do.
///
/// On a current-thread runtime, like the warm-up test.
#[tokio::test]
async fn url_parameters_configure_the_pool() {
    let (server, _dir) = slow_server("1500ms");
    let client = Client::connect(&pool_url(
        &[&server],
        "min_connections_per_target=2&max_connections_per_target=4&idle_timeout=300ms\
         &acquire_timeout=200ms&enable_warmup=true&keepalive_interval=off\
         &max_in_flight_per_connection=2&max_connecting=1",
    ))
    .await
    .unwrap();
    let o = client.options();
    assert_eq!(o.min_connections_per_target, 2);
    assert_eq!(o.max_connections_per_target, 4);
    assert_eq!(o.max_in_flight_per_connection, 2);
    assert_eq!(o.max_connecting, 1);
    assert_eq!(o.idle_timeout, Duration::from_millis(300));
    assert_eq!(o.acquire_timeout, Duration::from_millis(200));
    assert_eq!(o.keepalive_interval, None);
    assert!(o.enable_warmup);
    let stats = client.pool_stats();
    assert_eq!(
        (stats.open, stats.connections_created),
        (2, 2),
        "warm-up via the URL: {stats:#?}"
    );

    let cold = Client::connect(&pool_url(
        &[&server],
        "min_connections_per_target=2&enable_warmup=false",
    ))
    .await
    .unwrap();
    assert_eq!(cold.pool_stats().open, 1, "{:#?}", cold.pool_stats());

    // Saturation and the acquire timeout, from the URL alone.
    let tight = Client::connect(&pool_url(
        &[&server],
        "max_connections_per_target=1&max_in_flight_per_connection=1&acquire_timeout=200ms\
         &keepalive_interval=off",
    ))
    .await
    .unwrap();
    let hold = spawn_hold(&tight);
    stats_eventually(&tight, "the hold has the slot", PATIENCE, |s| {
        s.in_flight == 1
    })
    .await;
    match tight.ping().await {
        Err(Error::Timeout { after, .. }) => assert!(after >= Duration::from_millis(200)),
        other => panic!("expected an acquire timeout, got {other:?}"),
    }
    assert_eq!(tight.pool_stats().acquire_timeouts, 1);
    assert_hold_ended(hold.await);

    // Two targets in the URL's authority, and in the plain host:port form.
    let (other, _dir2) = start_server(&[]);
    let two = Client::connect(&pool_url(&[&server, &other], "keepalive_interval=off"))
        .await
        .unwrap();
    let stats = two.pool_stats();
    assert_eq!(stats.targets.len(), 2, "{stats:#?}");
    target(&stats, server.addr.port());
    target(&stats, other.addr.port());
    assert_eq!(stats.open, 2, "min 1 per target, warmed up: {stats:#?}");
    let plain = Client::connect_with(
        &format!("{},{}", server.addr, other.addr),
        ClientOptions {
            username: "root".into(),
            password: ROOT_PASSWORD.into(),
            ..options()
        },
    )
    .await
    .unwrap();
    assert_eq!(plain.pool_stats().targets.len(), 2);
    plain.ping().await.unwrap();
}

/// Unknown names and malformed values are refused before connecting, naming the
/// parameter.
#[tokio::test]
async fn bad_pool_url_parameters_are_refused_by_name() {
    let cases = [
        (
            "min_connections_per_target=abc",
            "min_connections_per_target",
        ),
        (
            "min_connections_per_target=-1",
            "min_connections_per_target",
        ),
        ("max_connections_per_target=0", "max_connections_per_target"),
        (
            "max_connections_per_target=1.5",
            "max_connections_per_target",
        ),
        (
            "max_in_flight_per_connection=0",
            "max_in_flight_per_connection",
        ),
        ("max_connecting=many", "max_connecting"),
        ("idle_timeout=5parsecs", "idle_timeout"),
        ("idle_timeout=", "idle_timeout"),
        ("acquire_timeout=0ms", "acquire_timeout"),
        ("acquire_timeout=soon", "acquire_timeout"),
        ("keepalive_interval=sometimes", "keepalive_interval"),
        ("enable_warmup=maybe", "enable_warmup"),
        (
            "min_connections_per_target=1&min_connections_per_target=2",
            "min_connections_per_target",
        ),
        (
            "min_connections_per_target=5&max_connections_per_target=2",
            "min_connections_per_target",
        ),
        (
            "max_connections=4",
            "unknown query parameter \"max_connections\"",
        ),
        ("pool_size=4", "unknown query parameter \"pool_size\""),
    ];
    for (query, needle) in cases {
        for hosts in ["127.0.0.1:1", "127.0.0.1:1,127.0.0.1:2"] {
            let url = format!("themis://root:pw@{hosts}/?{query}");
            match Client::connect(&url).await {
                Err(e @ Error::InvalidUrl { .. }) => {
                    let shown = e.to_string();
                    assert!(shown.contains(needle), "{url}: {shown}");
                }
                Err(e) => panic!("{url}: not refused as a bad URL but {e:?}"),
                Ok(_) => panic!("{url}: accepted"),
            }
        }
    }
}

/// SIGTERM on one of two targets: it says GOAWAY and drains; requests running through
/// the shutdown never fail, and afterwards every request goes to the other server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_goaway_moves_requests_to_the_other_target() {
    let env = [("THEMIS_SERVER_SHUTDOWN_GRACE", "5s")];
    let (a, _dir_a) = start_server(&env);
    let (b, _dir_b) = start_server(&env);
    let (port_a, port_b) = (a.addr.port(), b.addr.port());
    for s in [&a, &b] {
        let c = direct(s).await;
        c.create_collection("c").await.unwrap();
        c.collection("c")
            .insert(&json!({ "_key": "both", "v": 7 }))
            .await
            .unwrap();
    }
    let client = connect(&[&a, &b], options()).await;
    let stats = client.pool_stats();
    assert_eq!(
        (target(&stats, port_a).open, target(&stats, port_b).open),
        (1, 1),
        "{stats:#?}"
    );

    // Readers and writers through the shutdown: requests that race the GOAWAY are
    // refused by a (not executed) or answered before it closes; either way the client
    // must not hand a failure to the application.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (client, stop) = (client.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let result = match (w % 4, done % 2) {
                    (0, _) => client
                        .collection("c")
                        .insert(&json!({ "_key": format!("during-{w}-{done}") }))
                        .await
                        .map(|_| ()),
                    (_, 0) => client.ping().await.map(|_| ()),
                    _ => client
                        .collection("c")
                        .get::<Value>("both")
                        .await
                        .map(|d| assert_eq!(d.expect("on both servers")["v"], 7)),
                };
                if let Err(e) = result {
                    errors.push(format!("worker {w}, request {done}: {e}"));
                }
                done += 1;
            }
            (done, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.signal(libc::SIGTERM);
    let _a = tokio::task::spawn_blocking(move || {
        let mut a = a;
        a.wait(Duration::from_secs(30));
        a
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut errors = Vec::new();
    for w in workers {
        let (done, errs) = w.await.unwrap();
        total += done;
        errors.extend(errs);
    }
    assert!(total > 0);
    assert!(
        errors.is_empty(),
        "{} of {total} requests failed through the GOAWAY: {errors:#?}",
        errors.len()
    );

    // Writes after it all land on b.
    let coll = client.collection("c");
    for i in 0..20 {
        coll.insert(&json!({ "_key": format!("after{i}") }))
            .await
            .unwrap_or_else(|e| panic!("insert {i} after a's shutdown: {e}"));
    }
    let keys: Vec<String> = direct(&b)
        .await
        .query("FOR d IN c FILTER LIKE(d._key, 'after%') RETURN d._key")
        .all()
        .await
        .unwrap();
    assert_eq!(keys.len(), 20, "{keys:?}");
    let stats = stats_eventually(&client, "a is out of the pool", PATIENCE, |s| {
        let t = target(s, port_a);
        t.open == 0 && !t.healthy
    })
    .await;
    assert!(stats.connections_closed >= 1, "{stats:#?}");
    assert!(target(&stats, port_b).healthy, "{stats:#?}");
}

/// A user dropped while its pool is connected: the server ends its session, and the
/// pool's reconnect (resume, then the password) is refused for good. Requests then
/// fail at once with that refusal instead of waiting for `acquire_timeout`, and the
/// credentials are not sent again every few milliseconds (each would count as a
/// failed login).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_credentials_fail_requests_at_once_and_are_not_resent_in_a_loop() {
    let (server, _dir) = start_server(&[]);
    let admin = direct(&server).await;
    let roles = vec![("_system".to_owned(), themis_client::Role::Readwrite)];
    admin
        .create_user(
            "carol",
            "carol-password",
            &themis_client::UserOptions {
                superuser: false,
                roles,
            },
        )
        .await
        .expect("create carol");
    let url = format!("themis://carol:carol-password@{}/_system", server.addr);
    let carol = Client::connect_with(
        &url,
        ClientOptions {
            acquire_timeout: Duration::from_secs(30),
            ..options()
        },
    )
    .await
    .expect("carol connects");
    carol.ping().await.expect("carol pings");

    admin.drop_user("carol").await.expect("drop carol");
    // Until the server has ended carol's session a ping may still pass; after that,
    // the first one that fails fails with the refusal, not an acquire timeout.
    let started = Instant::now();
    loop {
        match carol.ping().await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::ErrAuthFailed) => break,
            Err(e) => panic!("a refused login fails requests with it, got {e:?}"),
        }
        assert!(started.elapsed() < PATIENCE, "the session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once refused, later requests fail the same way, without new logins.
    let failures = carol.pool_stats().connect_failures;
    for _ in 0..20 {
        let e = carol.ping().await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::ErrAuthFailed), "{e:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = carol.pool_stats();
    assert_eq!(stats.connect_failures, failures, "{stats:?}");
    assert!(!stats.targets[0].healthy, "{stats:?}");
}
