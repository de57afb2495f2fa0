//! The pool's main acceptance test: one `Client` shared by 32 tasks for a minute while
//! its server is restarted five times (same data directory, same port), alternately
//! gracefully (SIGTERM: GOAWAY and drain) and by crash (SIGKILL). The tasks hold no
//! retry logic of their own; the client's promises are what keep them going:
//!
//! * reads (`get`, `PING`) whose connection dies are retried on a fresh connection, and
//!   requests wait for the pool to reconnect, so **no read fails**;
//! * writes carry request keys the server deduplicates, so retried inserts **never
//!   apply twice** and nearly all of them succeed;
//! * every acknowledged insert is there afterwards, exactly once, under the key the
//!   server returned.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use themis_client::{Client, ClientOptions, Error};

use common::ServerProcess;

const TASKS: usize = 32;
const RUN_FOR: Duration = Duration::from_secs(60);
const RESTARTS: usize = 5;
/// The first restart after this long, then one every [`RESTART_EVERY`].
const FIRST_RESTART: Duration = Duration::from_secs(5);
const RESTART_EVERY: Duration = Duration::from_secs(10);
const COLLECTION: &str = "chaos";
const SERVER_ENV: &[(&str, &str)] = &[("THEMIS_SERVER_SHUTDOWN_GRACE", "5s")];

/// What one task saw.
#[derive(Default)]
struct TaskReport {
    /// (op, key the server returned)
    acked: Vec<(String, String)>,
    /// Ops whose insert failed: applied or not, nobody knows.
    unknown: Vec<String>,
    write_errors: BTreeMap<String, u64>,
    write_error_samples: Vec<String>,
    reads: u64,
    pings: u64,
    /// Failed reads and pings, and reads that did not find an acknowledged document.
    read_failures: Vec<String>,
}

/// A small xorshift generator (no `rand` among the test's dependencies).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// How a failure is reported: the label, then the message (which, for a server
/// error, starts with the label already).
fn describe(e: &Error) -> String {
    match e {
        Error::Server { .. } => e.to_string(),
        other => format!("{}: {other}", error_label(other)),
    }
}

/// The error's variant (and wire code), for counting.
fn error_label(e: &Error) -> String {
    match e {
        Error::Server { code, .. } => code.as_str_name().to_owned(),
        Error::Io(io) => format!("Io({:?})", io.kind()),
        Error::ConnectionClosed { .. } => "ConnectionClosed".into(),
        Error::GoAway { .. } => "GoAway".into(),
        Error::StateLost { .. } => "StateLost".into(),
        Error::Timeout { .. } => "Timeout".into(),
        other => format!("{:?}", other.kind()),
    }
}

/// The application: insert, read back, sometimes ping; no retries, no reconnects.
async fn worker(client: Client, task: usize, stop: Arc<AtomicBool>) -> TaskReport {
    let coll = client.collection(COLLECTION);
    let mut rng = Rng::new(task as u64 + 1);
    let mut report = TaskReport::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let op = format!("t{task}-{n}");
        match coll
            .insert(&json!({ "op": op, "task": task, "n": n }))
            .await
        {
            Ok(meta) => report.acked.push((op, meta.key)),
            Err(e) => {
                *report.write_errors.entry(error_label(&e)).or_default() += 1;
                if report.write_error_samples.len() < 5 {
                    report.write_error_samples.push(format!("{op}: {e}"));
                }
                report.unknown.push(op);
            }
        }
        if !report.acked.is_empty() {
            let (op, key) = &report.acked[rng.below(report.acked.len())];
            report.reads += 1;
            match coll.get::<Value>(key).await {
                Ok(Some(doc)) if doc["op"] == json!(op) => {}
                Ok(Some(doc)) => report.read_failures.push(format!(
                    "get {key} (op {op}) returned another document: {doc}"
                )),
                Ok(None) => report.read_failures.push(format!(
                    "get {key} (op {op}): acknowledged document missing"
                )),
                Err(e) => report
                    .read_failures
                    .push(format!("get {key} (op {op}): {}", describe(&e))),
            }
        }
        if n % 8 == 7 {
            report.pings += 1;
            if let Err(e) = client.ping().await {
                report.read_failures.push(format!("ping: {}", describe(&e)));
            }
        }
        n += 1;
    }
    report
}

#[derive(Deserialize)]
struct Stored {
    op: String,
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn thirty_two_tasks_through_five_restarts_lose_nothing_and_apply_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, SERVER_ENV);
    let port = server.addr.port();
    let client = Client::connect_with(
        &server.url(),
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            acquire_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect");
    client.create_collection(COLLECTION).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..TASKS)
        .map(|task| tokio::spawn(worker(client.clone(), task, stop.clone())))
        .collect();

    // The restarts, from a blocking thread (the harness waits on processes).
    let restarter = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let mut log = Vec::new();
        for i in 0..RESTARTS {
            let at = FIRST_RESTART + RESTART_EVERY * i as u32;
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            let (sig, name) = if i % 2 == 0 {
                (libc::SIGTERM, "SIGTERM")
            } else {
                (libc::SIGKILL, "SIGKILL")
            };
            let down = Instant::now();
            let signalled_at = started.elapsed();
            server.signal(sig);
            let status = server.wait(Duration::from_secs(30));
            let exited = down.elapsed();
            server = ServerProcess::start_on(&data, port, SERVER_ENV);
            log.push(format!(
                "restart {}: {name} at {signalled_at:?}, exited after {exited:?} ({status}), \
                 listening again after {:?}",
                i + 1,
                down.elapsed()
            ));
        }
        (server, log)
    });

    tokio::time::sleep(RUN_FOR.saturating_sub(started.elapsed())).await;
    let (server, restart_log) = restarter.await.expect("restarter");
    stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for w in workers {
        reports.push(w.await.expect("worker task"));
    }
    let stats = client.pool_stats();

    // Everything the tasks saw.
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut unknown: HashSet<String> = HashSet::new();
    let mut write_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut read_failures = Vec::new();
    let (mut reads, mut pings) = (0u64, 0u64);
    for r in reports {
        for (op, key) in r.acked {
            assert!(acked.insert(op, key).is_none(), "ops are unique");
        }
        unknown.extend(r.unknown);
        for (label, n) in r.write_errors {
            *write_errors.entry(label).or_default() += n;
        }
        samples.extend(r.write_error_samples);
        read_failures.extend(r.read_failures);
        reads += r.reads;
        pings += r.pings;
    }
    let attempts = acked.len() + unknown.len();
    println!("restarts:\n  {}", restart_log.join("\n  "));
    println!(
        "{attempts} inserts: {} acknowledged, {} failed {write_errors:?}; {reads} reads, \
         {pings} pings, {} failed",
        acked.len(),
        unknown.len(),
        read_failures.len()
    );
    if !samples.is_empty() {
        println!("failed inserts (samples):\n  {}", samples.join("\n  "));
    }
    println!("pool: {stats:#?}");
    assert_eq!(restart_log.len(), RESTARTS);

    // The server's view, through the same client (the harness, not the application,
    // retries: a QUERY is never retried by the client).
    let mut stored: Vec<Stored> = Vec::new();
    let mut last_error = None;
    for _ in 0..20 {
        match client
            .query(format!(
                "FOR d IN {COLLECTION} RETURN {{ op: d.op, key: d._key }}"
            ))
            .batch_size(10_000)
            .all()
            .await
        {
            Ok(all) => {
                stored = all;
                last_error = None;
                break;
            }
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    if let Some(e) = last_error {
        panic!("the final scan failed: {e}");
    }
    let mut found: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in &stored {
        found.entry(&s.op).or_default().push(&s.key);
    }
    println!(
        "{} documents stored for {} distinct ops",
        stored.len(),
        found.len()
    );

    let mut problems = Vec::new();
    for (op, keys) in &found {
        if keys.len() > 1 {
            problems.push(format!(
                "op {op} stored {} times (a write applied twice): {keys:?}",
                keys.len()
            ));
        }
        if !acked.contains_key(*op) && !unknown.contains(*op) {
            problems.push(format!("op {op} stored but never attempted"));
        }
    }
    for (op, key) in &acked {
        match found.get(op.as_str()) {
            None => problems.push(format!("acknowledged op {op} (key {key}) is missing")),
            Some(keys) if !keys.contains(&key.as_str()) => problems.push(format!(
                "acknowledged op {op} was returned key {key} but is stored as {keys:?}"
            )),
            Some(_) => {}
        }
    }
    let unknown_applied = unknown
        .iter()
        .filter(|op| found.contains_key(op.as_str()))
        .count();
    println!(
        "of {} failed inserts, {unknown_applied} were applied anyway",
        unknown.len()
    );
    problems.sort();
    assert!(
        problems.is_empty(),
        "{} integrity problems (first 20): {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    assert!(
        read_failures.is_empty(),
        "{} of {} reads and pings failed (first 20): {:#?}",
        read_failures.len(),
        reads + pings,
        &read_failures[..read_failures.len().min(20)]
    );
    assert!(
        acked.len() > 1000,
        "the tasks got little done: {}",
        acked.len()
    );
    assert!(
        unknown.len() * 100 < attempts,
        "{} of {attempts} inserts failed (>= 1%): {write_errors:?}; samples: {samples:#?}",
        unknown.len()
    );
    assert!(stats.connections_created > RESTARTS as u64, "{stats:#?}");
    drop(server);
}
