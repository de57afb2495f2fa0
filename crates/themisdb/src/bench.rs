//! `themisdb bench`: a load generator for a running server.
//!
//! N connections (one multiplexed client each) × M requests in flight per connection
//! issue one operation until a request count or a duration is reached. Latency is
//! recorded per request in HDR histograms (microseconds, 3 significant digits) and
//! reported as ops/s and p50/p99/p99.9/max.
//!
//! Two workloads measure something other than request latency: `tx` runs whole
//! read-modify-write transactions (one op = one committed transaction, conflicts
//! retried by the client's helper), and `fanout` runs one writer connection against
//! `--subscribers` subscriptions, reporting delivered events per second and the
//! delay from each insert being sent to its event arriving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use themis_client::{Client, SubscribeOptions, TxOptions};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// PING / PONG round trips.
    Ping,
    /// Single-document inserts (durable: each waits for the group commit).
    Insert,
    /// Single-document reads by key from a pre-filled collection.
    Get,
    /// AQL point lookup through a secondary index (`FILTER d.n == @n`).
    Point,
    /// AQL range scan of 100 documents through a secondary index.
    Range,
    /// AQL `COLLECT … WITH COUNT` over the whole query collection (a full scan).
    Collect,
    /// Read-modify-write transactions (begin, read, update, commit) on the `get`
    /// documents, retried on conflict.
    Tx,
    /// One writer connection inserting (with `--in-flight` inserts at once) while
    /// `--subscribers` subscriptions receive every insert.
    Fanout,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Server URL, e.g. themis://root:secret@127.0.0.1:8766 (or set THEMIS_URL).
    #[arg(
        long,
        env = "THEMIS_URL",
        default_value = "themis://root@127.0.0.1:8766"
    )]
    url: String,
    /// Operations to run, one after the other.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["ping", "insert", "get"])]
    op: Vec<Op>,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, short = 'i', default_value_t = 1)]
    in_flight: usize,
    /// Total requests per operation (ignored with --duration).
    #[arg(long, short = 'n', default_value_t = 100_000)]
    requests: u64,
    /// Run each operation for this many seconds instead of a request count.
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Collection used by insert and get (dropped and recreated first).
    #[arg(long, default_value = "bench")]
    collection: String,
    /// Documents pre-inserted for `get`.
    #[arg(long, default_value_t = 10_000)]
    get_keys: u64,
    /// Documents in the collection the query workloads (point, range, collect) use;
    /// it is `<collection>_q`, filled and indexed on `n` once.
    #[arg(long, default_value_t = 100_000)]
    query_docs: u64,
    /// Subscriptions for `fanout`, spread over the connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Print one JSON object per operation instead of a table.
    #[arg(long)]
    json: bool,
}

struct Report {
    op: Op,
    ops: u64,
    errors: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.connections == 0 || args.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut clients = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            clients.push(
                Client::connect(&args.url)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(&args.url)))?,
            );
        }
        if !args.json {
            println!(
                "themisdb bench: {} connections x {} in flight, server {}",
                args.connections,
                args.in_flight,
                clients[0].server_info().server_version
            );
            println!(
                "{:<8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}",
                "op", "requests", "ops/s", "p50 us", "p99 us", "p99.9 us", "max us", "errors"
            );
        }
        for &op in &args.op {
            prepare(&clients[0], op, &args).await?;
            let r = match op {
                Op::Fanout => run_fanout(&clients, &args).await?,
                _ => run_op(&clients, op, &args).await?,
            };
            print_report(&r, &args);
        }
        Ok(())
    })
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn query_collection(args: &BenchArgs) -> String {
    format!("{}_q", args.collection)
}

/// Fills `<collection>_q` with `query_docs` documents `{n, g}` indexed on `n`, unless
/// an earlier run left exactly that.
async fn prepare_queries(client: &Client, args: &BenchArgs) -> Result<()> {
    let name = query_collection(args);
    if let Ok(stats) = client.collection_stats(&name).await {
        if stats.count == args.query_docs {
            return Ok(());
        }
        client.drop_collection(&name).await?;
    }
    client.create_collection(&name).await?;
    let coll = client.collection(&name);
    let mut start = 0;
    while start < args.query_docs {
        let end = (start + 10_000).min(args.query_docs);
        let docs: Vec<_> = (start..end)
            .map(|i| json!({ "n": i, "g": i % 10, "pad": "x".repeat(40) }))
            .collect();
        coll.insert_many(&docs).await?;
        start = end;
    }
    client
        .create_index(
            &name,
            "by_n",
            &["n"],
            themis_client::IndexOptions::default(),
        )
        .await?;
    Ok(())
}

/// Runs one AQL query and returns how many rows came back (all in the first batch).
async fn aql(client: &Client, text: &str, binds: &[(&str, serde_json::Value)]) -> Option<usize> {
    let req = themis_client::wire::QueryRequest {
        aql_query: text.to_string(),
        bind_vars: binds
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::to_vec(v).unwrap_or_default().into(),
                )
            })
            .collect(),
        ..Default::default()
    };
    let resp: themis_client::wire::QueryResponse = client
        .raw_request(themis_client::OpCode::OpQuery, &req)
        .await
        .ok()?;
    resp.success.then_some(resp.results.len())
}

async fn prepare(client: &Client, op: Op, args: &BenchArgs) -> Result<()> {
    match op {
        Op::Ping => Ok(()),
        Op::Point | Op::Range | Op::Collect => prepare_queries(client, args).await,
        Op::Insert => {
            let _ = client.drop_collection(&args.collection).await;
            client.create_collection(&args.collection).await?;
            Ok(())
        }
        Op::Fanout => {
            let _ = client.drop_collection(&feed_collection(args)).await;
            client.create_collection(&feed_collection(args)).await?;
            Ok(())
        }
        Op::Get | Op::Tx => {
            let coll = client.collection(&args.collection);
            let mut start = 0;
            while start < args.get_keys {
                let end = (start + 1000).min(args.get_keys);
                let docs: Vec<_> = (start..end).map(|i| doc(Some(i))).collect();
                match coll.insert_many(&docs).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {} // already there from an earlier run
                    Err(e) => return Err(e.into()),
                }
                start = end;
            }
            Ok(())
        }
    }
}

fn doc(key: Option<u64>) -> serde_json::Value {
    let mut d = json!({
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "age": 36,
        "tags": ["math", "poetry", "engines"],
        "active": true
    });
    if let Some(k) = key {
        d["_key"] = json!(format!("k{k}"));
    }
    d
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

async fn run_op(clients: &[Client], op: Op, args: &BenchArgs) -> Result<Report> {
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let limit = args.requests;
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    // What every request of this run sends, built once.
    let qcoll = query_collection(args);
    let text: Arc<str> = match op {
        Op::Point => format!("FOR d IN {qcoll} FILTER d.n == @n RETURN d"),
        Op::Range => format!("FOR d IN {qcoll} FILTER d.n >= @lo AND d.n < @lo + 100 RETURN d"),
        Op::Collect => {
            format!("FOR d IN {qcoll} COLLECT g = d.g WITH COUNT INTO c RETURN {{g, c}}")
        }
        Op::Ping | Op::Insert | Op::Get | Op::Tx | Op::Fanout => String::new(),
    }
    .into();
    let insert_doc = Arc::new(doc(None));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (ci, client) in clients.iter().enumerate() {
        for wi in 0..args.in_flight {
            let client = client.clone();
            let coll = client.collection(&args.collection);
            let issued = issued.clone();
            let errors = errors.clone();
            let get_keys = args.get_keys.max(1);
            let query_docs = args.query_docs.max(1);
            let text = text.clone();
            let insert_doc = insert_doc.clone();
            let mut seed = (ci * 7919 + wi * 104_729 + 1) as u64;
            tasks.push(tokio::spawn(async move {
                let mut hist = latency_histogram();
                loop {
                    match deadline {
                        Some(d) if Instant::now() >= d => break,
                        Some(_) => {
                            issued.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                                break;
                            }
                        }
                    }
                    let t = Instant::now();
                    // xorshift: cheap, deterministic, spread over the key space.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let ok = match op {
                        Op::Ping => client.ping().await.is_ok(),
                        Op::Point => {
                            aql(&client, &text, &[("n", json!(seed % query_docs))]).await == Some(1)
                        }
                        Op::Range => {
                            let lo = seed % query_docs.saturating_sub(100).max(1);
                            aql(&client, &text, &[("lo", json!(lo))]).await.is_some()
                        }
                        Op::Collect => aql(&client, &text, &[]).await.is_some(),
                        Op::Insert => coll.insert(&*insert_doc).await.is_ok(),
                        Op::Get => {
                            let key = format!("k{}", seed % get_keys);
                            matches!(coll.get::<serde_json::Value>(&key).await, Ok(Some(_)))
                        }
                        Op::Tx => {
                            let key = format!("k{}", seed % get_keys);
                            increment(&client, coll.name(), &key).await.is_ok()
                        }
                        Op::Fanout => unreachable!("fanout has its own driver"),
                    };
                    if ok {
                        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                hist
            }));
        }
    }
    let mut hist = latency_histogram();
    for t in tasks {
        hist.add(t.await.context("bench task failed")?)
            .context("merging histograms")?;
    }
    Ok(Report {
        op,
        ops: hist.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        hist,
    })
}

/// One read-modify-write transaction: `n += 1` on document `key`.
async fn increment(client: &Client, coll: &str, key: &str) -> themis_client::Result<()> {
    client
        .transaction(TxOptions::default(), |tx| async move {
            let c = tx.collection(coll);
            let d: Option<serde_json::Value> = c.get(key).await?;
            let n = d.and_then(|d| d["n"].as_i64()).unwrap_or(0);
            c.update(key, &json!({ "n": n + 1 })).await?;
            Ok(())
        })
        .await
}

fn feed_collection(args: &BenchArgs) -> String {
    format!("{}_feed", args.collection)
}

fn micros_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One writer (the first connection, `--in-flight` inserts at once) against
/// `--subscribers` subscriptions spread over all connections. Each insert carries the
/// time it was sent; each event's delay from there is recorded. The report counts
/// delivered events; `errors` counts events that never arrived.
async fn run_fanout(clients: &[Client], args: &BenchArgs) -> Result<Report> {
    let coll = feed_collection(args);
    let mut subs = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let client = &clients[i % clients.len()];
        let sub = client
            .subscribe(SubscribeOptions::collection(&coll).include_documents(true))
            .await
            .context("cannot subscribe")?;
        subs.push(sub);
    }
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for mut sub in subs {
        let written = written.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            use futures::StreamExt;
            let mut hist = latency_histogram();
            let mut seen = 0u64;
            let mut quiet_since: Option<Instant> = None;
            loop {
                let finished = done.load(Ordering::Acquire);
                if finished && seen >= written.load(Ordering::Acquire) {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    Ok(Some(Ok(event))) => {
                        seen += 1;
                        quiet_since = None;
                        if let Some(t) = event.document.as_ref().and_then(|d| d["t"].as_u64()) {
                            let _ = hist.record(micros_since_epoch().saturating_sub(t).max(1));
                        }
                    }
                    Ok(Some(Err(_))) | Ok(None) => break,
                    // Writing is over and events stopped coming short of the count:
                    // after a grace period, the rest count as lost.
                    Err(_) if finished => {
                        if quiet_since.get_or_insert_with(Instant::now).elapsed()
                            > Duration::from_secs(10)
                        {
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
            (hist, seen)
        }));
    }
    let writer = clients[0].collection(&coll);
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let limit = args.requests;
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..args.in_flight {
        let writer = writer.clone();
        let issued = issued.clone();
        let written = written.clone();
        writers.push(tokio::spawn(async move {
            loop {
                match deadline {
                    Some(d) if Instant::now() >= d => break,
                    Some(_) => {}
                    None => {
                        if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                            break;
                        }
                    }
                }
                let d = json!({ "t": micros_since_epoch(), "pad": "x".repeat(64) });
                if writer.insert(&d).await.is_ok() {
                    written.fetch_add(1, Ordering::AcqRel);
                }
            }
        }));
    }
    for w in writers {
        w.await.context("writer task failed")?;
    }
    let write_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let mut hist = latency_histogram();
    let mut delivered = 0;
    for r in readers {
        let (h, seen) = r.await.context("subscriber task failed")?;
        hist.add(h).context("merging histograms")?;
        delivered += seen;
    }
    let writes = written.load(Ordering::Acquire);
    let expected = writes * args.subscribers as u64;
    if !args.json {
        println!(
            "fanout: {writes} inserts in {write_secs:.1} s ({:.0}/s) x {} subscribers",
            writes as f64 / write_secs.max(1e-9),
            args.subscribers
        );
    }
    Ok(Report {
        op: Op::Fanout,
        ops: delivered,
        errors: expected.saturating_sub(delivered),
        elapsed: started.elapsed(),
        hist,
    })
}

fn print_report(r: &Report, args: &BenchArgs) {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let ops_s = r.ops as f64 / secs;
    let name = format!("{:?}", r.op).to_lowercase();
    if args.json {
        println!(
            "{}",
            json!({
                "op": name, "connections": args.connections, "in_flight": args.in_flight,
                "requests": r.ops, "errors": r.errors, "seconds": secs, "ops_per_sec": ops_s.round(),
                "p50_us": r.hist.value_at_quantile(0.50), "p99_us": r.hist.value_at_quantile(0.99),
                "p999_us": r.hist.value_at_quantile(0.999), "max_us": r.hist.max(),
            })
        );
    } else {
        println!(
            "{:<8} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>7}",
            name,
            r.ops,
            ops_s,
            r.hist.value_at_quantile(0.50),
            r.hist.value_at_quantile(0.99),
            r.hist.value_at_quantile(0.999),
            r.hist.max(),
            r.errors
        );
    }
}
