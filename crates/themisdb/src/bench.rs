//! `themisdb bench`: a load generator for a running server.
//!
//! N connections (one client with exactly one connection each) × M requests in flight
//! per connection issue one operation until a request count or a duration is reached,
//! after an optional warm-up whose figures are discarded. Latency is recorded per
//! request in HDR histograms (microseconds, 3 significant digits) and reported as
//! ops/s and p50/p90/p99/p99.9/max, with errors by code and bytes per operation.
//!
//! Closed loop (the default): each of the N × M workers sends its next request as soon
//! as the previous one is answered. Open loop (`--rate R`): a pacing thread ([`Pacer`])
//! releases send times evenly spaced at R per second, whichever worker is free takes
//! the next, and a request's latency runs from the time it was *scheduled*, so a slow
//! answer is charged to every request it held back (no coordinated omission).
//!
//! Key choice for the keyed workloads (get, update, mixed, tx) is uniform or zipfian
//! over `--keys` documents (see [`keys`]).
//!
//! Two workloads measure something other than request latency: `tx` runs whole
//! read-modify-write transactions (one op = one committed transaction, conflicts
//! retried by the client's helper), and `fanout` runs one writer connection against
//! `--subscribers` subscriptions, reporting delivered events per second and the
//! delay from each insert being sent to its event arriving.

mod keys;
mod netio;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use themis_client::{Client, ClientOptions, Collection, SubscribeOptions, TxOptions};

use keys::{KeyDist, Rng, Zipf};

/// The zipfian exponent (YCSB's default).
const ZIPF_THETA: f64 = 0.99;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// PING / PONG round trips.
    Ping,
    /// Single-document inserts (durable: each waits for the group commit).
    Insert,
    /// Single-document reads by key from a pre-filled collection.
    Get,
    /// Single-field patches (MERGE) of pre-filled documents picked like `get`'s.
    Update,
    /// Single-document deletes, each of a different pre-inserted document.
    Delete,
    /// `get` and `update` on the same keys, `--read-ratio` of them reads.
    Mixed,
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
    /// Opens the connections and holds them, idle, for `--duration` seconds (default
    /// 10), so the server's memory per connection can be measured from outside;
    /// prints `ready: N connections` on stderr once all are open. Log in with
    /// `--api-key` to spare the server N bcrypt checks.
    Idle,
}

impl Op {
    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Whether the op reads or writes the pre-filled `k<i>` documents.
    fn keyed(self) -> bool {
        matches!(self, Op::Get | Op::Update | Op::Mixed | Op::Tx)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent 0.99 (YCSB's): key k0 hottest, then k1, …
    Zipfian,
}

#[derive(Args, Debug)]
#[command(after_help = "\
TLS: give it in the URL, e.g.
  themis://root:PW@db.example:8766/?enable_ssl=true&ssl_ca_cert_path=/etc/themis/ca.pem
(add ssl_cert_path=…&ssl_key_path=… for mTLS). Any other client URL setting works
too (request_timeout, retry_writes, …); each connection is its own client, limited
to exactly one connection.

Open loop: with --rate, sends are scheduled evenly at that total rate and taken by
whichever of the connections x in-flight workers is free; latency counts from the
scheduled send time (no coordinated omission). Without --rate, the loop is closed.")]
pub struct BenchArgs {
    /// Server URL, e.g. themis://root:secret@127.0.0.1:8766 (or set THEMIS_URL);
    /// TLS with ?enable_ssl=true&ssl_ca_cert_path=ca.pem.
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
    /// Run each operation this many seconds first, discarding its figures.
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// Open loop: send this many requests per second in total, on a fixed schedule,
    /// with latency measured from each request's scheduled send time. Default: closed
    /// loop.
    #[arg(long, value_name = "OPS_PER_SEC")]
    rate: Option<f64>,
    /// Collection used by insert, get, update, mixed and tx (insert drops and
    /// recreates it); delete uses `<collection>_del`.
    #[arg(long, default_value = "bench")]
    collection: String,
    /// Key space of get, update, mixed and tx: documents k0 … k<N-1>, pre-inserted.
    /// Also how many documents `delete` pre-inserts with --duration.
    #[arg(
        long = "keys",
        alias = "get-keys",
        value_name = "N",
        default_value_t = 10_000
    )]
    keys: u64,
    /// How get, update, mixed and tx pick keys.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    distribution: Distribution,
    /// For `mixed`: the share of requests that are reads (the rest are updates).
    /// [default: 0.9]
    #[arg(long, value_name = "RATIO")]
    read_ratio: Option<f64>,
    /// Approximate JSON size of the documents written (insert, and the pre-filled
    /// documents of get/update/mixed/tx/delete), reached with a `pad` field. Default:
    /// a ~100-byte document without padding.
    #[arg(long, value_name = "BYTES")]
    doc_size: Option<usize>,
    /// Documents in the collection the query workloads (point, range, collect) use;
    /// it is `<collection>_q`, filled and indexed on `n` once.
    #[arg(long, default_value_t = 100_000)]
    query_docs: u64,
    /// Subscriptions for `fanout`, spread over the connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Send writes without request keys (the client's `retry_writes` off): a write
    /// whose connection dies is not sent again. Default: the client's default (on).
    #[arg(long)]
    no_retry_writes: bool,
    /// Log in with this API key (`themisdb apikey create`) instead of the URL's
    /// password: cheap to check, for opening many connections (`--op idle`).
    #[arg(long, env = "THEMIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print one JSON object per operation instead of a table.
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    fn read_ratio(&self) -> f64 {
        self.read_ratio.unwrap_or(0.9)
    }

    /// Length of the `pad` field, from `--doc-size`.
    fn pad_len(&self) -> Option<usize> {
        self.doc_size
            .map(|size| size.saturating_sub(padded_doc_base_len()))
    }
}

/// Checks flag combinations before anything connects.
fn validate(args: &BenchArgs) -> Result<()> {
    if args.connections == 0 || args.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    if args.op.is_empty() {
        bail!("--op needs at least one operation");
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds, not {d}");
        }
    }
    if let Some(w) = args.warmup {
        if !(w.is_finite() && w >= 0.0) {
            bail!("--warmup must be zero or a positive number of seconds, not {w}");
        }
        if w > 0.0 && args.op.contains(&Op::Fanout) {
            bail!("--warmup does not apply to fanout; run fanout in its own invocation");
        }
    }
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number of requests per second, not {r}");
        }
        if args.op.contains(&Op::Fanout) || args.op.contains(&Op::Idle) {
            bail!(
                "--rate (open loop) does not apply to fanout, whose writer runs closed loop, \
                 nor to idle; run them in their own invocation without --rate"
            );
        }
    }
    if let Some(r) = args.read_ratio {
        if !args.op.contains(&Op::Mixed) {
            bail!("--read-ratio only applies to --op mixed");
        }
        if !(0.0..=1.0).contains(&r) {
            bail!("--read-ratio must be between 0 and 1, not {r}");
        }
    }
    if args.keys == 0 && args.op.iter().any(|op| op.keyed() || *op == Op::Delete) {
        bail!("--keys must be at least 1 for get, update, delete, mixed and tx");
    }
    if let Some(size) = args.doc_size {
        let min = padded_doc_base_len();
        if size < min {
            bail!("--doc-size must be at least {min} bytes (the document without padding)");
        }
    }
    if args.op.contains(&Op::Delete) && args.duration.is_none() && args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    Ok(())
}

/// What one operation's measured phase produced.
struct Report {
    op: Op,
    /// Successful requests (the histogram's count).
    ops: u64,
    /// Failed requests by error code (`ERR_CONFLICT`, `IO`, …).
    errors: BTreeMap<&'static str, u64>,
    elapsed: Duration,
    hist: Histogram<u64>,
    /// For `mixed`: the reads' and the updates' latencies apart.
    split: Option<(Histogram<u64>, Histogram<u64>)>,
    /// TCP bytes sent and received per request (successful or not), from the
    /// kernel's socket counters (see [`netio`]); `None` where not available.
    bytes_per_op: Option<(f64, f64)>,
    /// `delete` ran out of pre-inserted documents before the end.
    exhausted: bool,
}

impl Report {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    validate(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let clients = connect_all(&args).await?;
        let retry_writes = clients[0].options().retry_writes;
        if !args.json {
            println!(
                "themisdb bench: {} connections x {} in flight, server {}, retry_writes {}, {}",
                args.connections,
                args.in_flight,
                clients[0].server_info().server_version,
                if retry_writes { "on" } else { "off" },
                match args.rate {
                    Some(r) => format!("open loop at {r} ops/s"),
                    None => "closed loop".into(),
                }
            );
            if args.op.iter().any(|op| op.keyed()) {
                println!(
                    "keys: {} ({}){}{}",
                    args.keys,
                    match args.distribution {
                        Distribution::Uniform => "uniform".to_string(),
                        Distribution::Zipfian => format!("zipfian, theta {ZIPF_THETA}"),
                    },
                    args.doc_size
                        .map(|s| format!(", doc size ~{s} B"))
                        .unwrap_or_default(),
                    if args.op.contains(&Op::Mixed) {
                        format!(", read ratio {}", args.read_ratio())
                    } else {
                        String::new()
                    }
                );
            }
            println!(
                "{:<8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>8}",
                "op",
                "requests",
                "ops/s",
                "p50 us",
                "p90 us",
                "p99 us",
                "p99.9 us",
                "max us",
                "errors",
                "out B/op",
                "in B/op"
            );
        }
        for &op in &args.op {
            if op == Op::Idle {
                hold_idle(&clients, &args).await;
                continue;
            }
            let workload = Arc::new(prepare(&clients, op, &args).await?);
            let r = match op {
                Op::Fanout => run_fanout(&clients, &args).await?,
                _ => {
                    if let Some(w) = args.warmup.filter(|w| *w > 0.0) {
                        let until = Instant::now() + Duration::from_secs_f64(w);
                        run_phase(&clients, &workload, &args, Stop::Until(until), "warm-up")
                            .await?;
                    }
                    let stop = match args.duration {
                        Some(d) => Stop::Until(Instant::now() + Duration::from_secs_f64(d)),
                        None => Stop::Count(args.requests),
                    };
                    run_phase(&clients, &workload, &args, stop, "run").await?
                }
            };
            print_report(&r, &args, retry_writes);
        }
        Ok(())
    })
}

/// `--op idle`: the connections stay open and quiet (keep-alive pings aside) for the
/// duration.
async fn hold_idle(clients: &[Client], args: &BenchArgs) {
    let hold = Duration::from_secs_f64(args.duration.unwrap_or(10.0));
    eprintln!("ready: {} connections", clients.len());
    tokio::time::sleep(hold).await;
    let open = clients.iter().filter(|c| !c.is_closed()).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"op": "idle", "connections": clients.len(), "still_open": open,
                "seconds": hold.as_secs_f64()})
        );
    } else {
        println!(
            "idle     held {} connections for {:?}; {open} still open",
            clients.len(),
            hold
        );
    }
}

/// One client per connection, each limited to exactly one connection that carries
/// all of its worker's requests (and, for fanout, its subscriptions).
async fn connect_all(args: &BenchArgs) -> Result<Vec<Client>> {
    let per_conn_subs = args.subscribers.div_ceil(args.connections);
    let options = ClientOptions {
        min_connections_per_target: 1,
        max_connections_per_target: 1,
        max_in_flight_per_connection: (args.in_flight + per_conn_subs + 16).max(256),
        retry_writes: if args.no_retry_writes {
            false
        } else {
            ClientOptions::default().retry_writes
        },
        auth: match &args.api_key {
            Some(key) => themis_client::Auth::ApiKey(key.clone()),
            None => themis_client::Auth::Password,
        },
        ..ClientOptions::default()
    };
    futures::stream::iter(0..args.connections)
        .map(|_| {
            let options = options.clone();
            async move {
                Client::connect_with(&args.url, options)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(&args.url)))
            }
        })
        .buffered(16)
        .try_collect()
        .await
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

fn delete_collection(args: &BenchArgs) -> String {
    format!("{}_del", args.collection)
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

/// Inserts documents `<prefix>0 … <prefix><count-1>` into `name` in bulks of 1000,
/// several bulks at once; a bulk whose keys exist already (an earlier run) is skipped.
async fn fill_keyed(
    clients: &[Client],
    name: &str,
    prefix: &str,
    count: u64,
    pad: Option<usize>,
) -> Result<()> {
    const BULK: u64 = 1000;
    let bulks = count.div_ceil(BULK);
    futures::stream::iter(0..bulks)
        .map(|b| {
            let coll = clients[b as usize % clients.len()].collection(name);
            async move {
                let docs: Vec<_> = (b * BULK..((b + 1) * BULK).min(count))
                    .map(|i| doc(Some(&format!("{prefix}{i}")), pad))
                    .collect();
                match coll.insert_many(&docs).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_conflict() => Ok(()), // already there from an earlier run
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await
        .with_context(|| format!("cannot pre-fill {name}"))
}

/// Everything a worker needs to issue one operation, built once per operation.
struct Workload {
    op: Op,
    /// The collection the op works on.
    coll: String,
    /// AQL text of point, range and collect.
    text: String,
    /// The document `insert` sends.
    insert_doc: serde_json::Value,
    keys: KeyDist,
    query_docs: u64,
    read_ratio: f64,
    /// `delete`: the next pre-inserted document (`d<i>`) to delete, and how many
    /// there are.
    delete_next: AtomicU64,
    delete_total: u64,
    exhausted: AtomicBool,
}

async fn prepare(clients: &[Client], op: Op, args: &BenchArgs) -> Result<Workload> {
    let client = &clients[0];
    let pad = args.pad_len();
    let mut coll = args.collection.clone();
    let mut delete_total = 0;
    match op {
        Op::Ping | Op::Idle => {}
        Op::Point | Op::Range | Op::Collect => prepare_queries(client, args).await?,
        Op::Insert => {
            let _ = client.drop_collection(&args.collection).await;
            client.create_collection(&args.collection).await?;
        }
        Op::Fanout => {
            let _ = client.drop_collection(&feed_collection(args)).await;
            client.create_collection(&feed_collection(args)).await?;
        }
        Op::Delete => {
            coll = delete_collection(args);
            delete_total = match args.duration {
                Some(_) => args.keys,
                None => args.keys.max(args.requests),
            };
            let _ = client.drop_collection(&coll).await;
            client.create_collection(&coll).await?;
            fill_keyed(clients, &coll, "d", delete_total, pad).await?;
        }
        Op::Get | Op::Update | Op::Mixed | Op::Tx => {
            // Documents left by an earlier run are reused, unless their size differs.
            let c = client.collection(&coll);
            match c.get::<serde_json::Value>("k0").await {
                Ok(Some(d)) => {
                    let have = d.get("pad").and_then(|p| p.as_str()).map(str::len);
                    if have != pad {
                        client.drop_collection(&coll).await?;
                        client.create_collection(&coll).await?;
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_not_found() => {
                    client.create_collection(&coll).await?;
                }
                Err(e) => return Err(e.into()),
            }
            fill_keyed(clients, &coll, "k", args.keys, pad).await?;
        }
    }
    let qcoll = query_collection(args);
    let text = match op {
        Op::Point => format!("FOR d IN {qcoll} FILTER d.n == @n RETURN d"),
        Op::Range => format!("FOR d IN {qcoll} FILTER d.n >= @lo AND d.n < @lo + 100 RETURN d"),
        Op::Collect => {
            format!("FOR d IN {qcoll} COLLECT g = d.g WITH COUNT INTO c RETURN {{g, c}}")
        }
        _ => String::new(),
    };
    let keys = match args.distribution {
        Distribution::Uniform => KeyDist::Uniform {
            n: args.keys.max(1),
        },
        Distribution::Zipfian => KeyDist::Zipfian(Zipf::new(args.keys.max(1), ZIPF_THETA)),
    };
    Ok(Workload {
        op,
        coll,
        text,
        insert_doc: doc(None, pad),
        keys,
        query_docs: args.query_docs.max(1),
        read_ratio: args.read_ratio(),
        delete_next: AtomicU64::new(0),
        delete_total,
        exhausted: AtomicBool::new(false),
    })
}

/// The document the bench writes, with `_key` when given and a `pad` of `pad` bytes.
fn doc(key: Option<&str>, pad: Option<usize>) -> serde_json::Value {
    let mut d = json!({
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "age": 36,
        "tags": ["math", "poetry", "engines"],
        "active": true
    });
    if let Some(k) = key {
        d["_key"] = json!(k);
    }
    if let Some(p) = pad {
        d["pad"] = json!("x".repeat(p));
    }
    d
}

/// JSON length of a keyed document with an empty `pad`: what `--doc-size` adds to.
fn padded_doc_base_len() -> usize {
    serde_json::to_vec(&doc(Some("k00000"), Some(0)))
        .map(|v| v.len())
        .unwrap_or(0)
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

#[derive(Clone, Copy)]
enum Stop {
    Count(u64),
    Until(Instant),
}

/// The open loop's clock: a thread that hands out send times at `rate` per second,
/// evenly spaced, to whichever worker is free.
///
/// Not one timer per worker: tokio's timers tick in milliseconds, so 50 workers each
/// sending once a millisecond all woke on the same tick and sent in bursts of 50,
/// which is not the steady rate the open loop promises (p50 of `get` at 50k/s was
/// 438 µs, mostly the burst queueing in the server). The thread sleeps with the OS's
/// finer timers and releases the sends that are due each time it wakes.
struct Pacer {
    due: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
}

impl Pacer {
    fn start(rate: f64, started: Instant, stop: Stop) -> Arc<Pacer> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let period = Duration::from_secs_f64(1.0 / rate);
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            loop {
                let at = started + period.mul_f64(n as f64);
                let over = match stop {
                    Stop::Until(d) => at >= d,
                    Stop::Count(limit) => n >= limit,
                };
                if over {
                    return;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if tx.send(at).is_err() {
                    return;
                }
                n += 1;
            }
        });
        Arc::new(Pacer {
            due: tokio::sync::Mutex::new(rx),
        })
    }

    /// The next send's scheduled time; `None` once the run is over.
    async fn next(&self) -> Option<Instant> {
        self.due.lock().await.recv().await
    }
}

/// The outcome of one request.
enum Outcome {
    Ok,
    Err(&'static str),
    /// `delete` has nothing left to delete: the worker stops.
    Exhausted,
}

/// A short name for an error, for the errors-by-code report: the wire code
/// (`ERR_CONFLICT`) for server errors, the client's failure otherwise.
fn error_name(e: &themis_client::Error) -> &'static str {
    use themis_client::Error as E;
    match e {
        E::Server { code, .. } => code.as_str_name(),
        E::Timeout { .. } => "CLIENT_TIMEOUT",
        E::Io(_) => "IO",
        E::ConnectionClosed { .. } => "CONNECTION_CLOSED",
        E::GoAway { .. } => "GOAWAY",
        E::StateLost { .. } => "STATE_LOST",
        E::Tls(_) => "TLS",
        E::Protocol(_) => "PROTOCOL",
        _ => match e.code() {
            Some(code) => code.as_str_name(),
            None => "CLIENT_ERROR",
        },
    }
}

fn outcome<T>(r: themis_client::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Err(error_name(&e)),
    }
}

/// Runs an AQL query and returns how many rows came back (all in the first batch).
async fn aql(
    client: &Client,
    text: &str,
    binds: &[(&str, serde_json::Value)],
) -> Result<usize, &'static str> {
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
        .map_err(|e| error_name(&e))?;
    if resp.success {
        Ok(resp.results.len())
    } else {
        Err(error_name(&themis_client::Error::from_failed_response(
            &resp,
        )))
    }
}

/// Issues one request of `w.op`; returns its outcome and whether it was a write
/// (for `mixed`'s split).
async fn execute(
    w: &Workload,
    client: &Client,
    coll: &Collection,
    rng: &mut Rng,
) -> (Outcome, bool) {
    match w.op {
        Op::Ping => (outcome(client.ping().await), false),
        Op::Point => {
            let n = rng.below(w.query_docs);
            let o = match aql(client, &w.text, &[("n", json!(n))]).await {
                Ok(1) => Outcome::Ok,
                Ok(_) => Outcome::Err("WRONG_ROW_COUNT"),
                Err(e) => Outcome::Err(e),
            };
            (o, false)
        }
        Op::Range => {
            let lo = rng.below(w.query_docs.saturating_sub(100).max(1));
            let o = match aql(client, &w.text, &[("lo", json!(lo))]).await {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            };
            (o, false)
        }
        Op::Collect => {
            let o = match aql(client, &w.text, &[]).await {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            };
            (o, false)
        }
        Op::Insert => (outcome(coll.insert(&w.insert_doc).await), true),
        Op::Get => (get(coll, &w.keys, rng).await, false),
        Op::Update => (update(coll, &w.keys, rng).await, true),
        Op::Mixed => {
            if rng.next_f64() < w.read_ratio {
                (get(coll, &w.keys, rng).await, false)
            } else {
                (update(coll, &w.keys, rng).await, true)
            }
        }
        Op::Delete => {
            let i = w.delete_next.fetch_add(1, Ordering::Relaxed);
            if i >= w.delete_total {
                w.exhausted.store(true, Ordering::Relaxed);
                return (Outcome::Exhausted, true);
            }
            let o = match coll.delete(&format!("d{i}")).await {
                Ok(true) => Outcome::Ok,
                Ok(false) => Outcome::Err("NOT_DELETED"),
                Err(e) => Outcome::Err(error_name(&e)),
            };
            (o, true)
        }
        Op::Tx => {
            let key = format!("k{}", w.keys.sample(rng));
            (outcome(increment(client, coll.name(), &key).await), true)
        }
        Op::Fanout | Op::Idle => unreachable!("fanout and idle have their own drivers"),
    }
}

async fn get(coll: &Collection, keys: &KeyDist, rng: &mut Rng) -> Outcome {
    let key = format!("k{}", keys.sample(rng));
    match coll.get::<serde_json::Value>(&key).await {
        Ok(Some(_)) => Outcome::Ok,
        Ok(None) => Outcome::Err("MISSING_DOCUMENT"),
        Err(e) => Outcome::Err(error_name(&e)),
    }
}

async fn update(coll: &Collection, keys: &KeyDist, rng: &mut Rng) -> Outcome {
    let key = format!("k{}", keys.sample(rng));
    let patch = json!({ "n": rng.next_u64() >> 12 });
    outcome(coll.update(&key, &patch).await)
}

/// Runs `w` on every worker until `stop`, then merges what they measured.
async fn run_phase(
    clients: &[Client],
    w: &Arc<Workload>,
    args: &BenchArgs,
    stop: Stop,
    label: &'static str,
) -> Result<Report> {
    let issued = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers = clients.len() * args.in_flight;
    let progress = (!args.json && std::io::stderr().is_terminal())
        .then(|| spawn_progress(w.op, label, issued.clone(), failed.clone(), stop));
    let io_before = netio::tcp_bytes();
    let started = Instant::now();
    let pacer = args.rate.map(|rate| Pacer::start(rate, started, stop));
    let mut tasks = Vec::with_capacity(workers);
    for (ci, client) in clients.iter().enumerate() {
        for wi in 0..args.in_flight {
            let client = client.clone();
            let coll = client.collection(&w.coll);
            let w = w.clone();
            let issued = issued.clone();
            let failed = failed.clone();
            let index = ci * args.in_flight + wi;
            let mut rng = Rng::new(index as u64 + 1);
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = latency_histogram();
                let mut writes = latency_histogram();
                let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
                loop {
                    // Open loop: the latency runs from the send's scheduled time, so
                    // a send that waited for a free worker counts its wait.
                    let t = match &pacer {
                        Some(pacer) => match pacer.next().await {
                            Some(at) => at,
                            None => break,
                        },
                        None => Instant::now(),
                    };
                    match stop {
                        Stop::Until(d) => {
                            if Instant::now() >= d {
                                break;
                            }
                            issued.fetch_add(1, Ordering::Relaxed);
                        }
                        Stop::Count(limit) => {
                            if issued.fetch_add(1, Ordering::Relaxed) >= limit {
                                break;
                            }
                        }
                    }
                    let (result, is_write) = execute(&w, &client, &coll, &mut rng).await;
                    match result {
                        Outcome::Ok => {
                            let us = t.elapsed().as_micros().max(1) as u64;
                            hist.saturating_record(us);
                            if is_write {
                                writes.saturating_record(us);
                            }
                        }
                        Outcome::Err(code) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *errors.entry(code).or_default() += 1;
                        }
                        Outcome::Exhausted => break,
                    }
                }
                (hist, writes, errors)
            }));
        }
    }
    let mut hist = latency_histogram();
    let mut writes = latency_histogram();
    let mut errors = BTreeMap::new();
    for t in tasks {
        let (h, wr, e) = t.await.context("bench task failed")?;
        hist.add(h).context("merging histograms")?;
        writes.add(wr).context("merging histograms")?;
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    let io_after = netio::tcp_bytes();
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let ops = hist.len();
    let requests = ops + errors.values().sum::<u64>();
    let bytes_per_op = match (io_before, io_after) {
        (Some((s0, r0)), Some((s1, r1))) if requests > 0 => Some((
            s1.saturating_sub(s0) as f64 / requests as f64,
            r1.saturating_sub(r0) as f64 / requests as f64,
        )),
        _ => None,
    };
    let split = (w.op == Op::Mixed).then(|| {
        let mut reads = hist.clone();
        // Reads = all minus writes; HDR histograms subtract exactly.
        let _ = reads.subtract(&writes);
        (reads, writes)
    });
    Ok(Report {
        op: w.op,
        ops,
        errors,
        elapsed,
        hist,
        split,
        bytes_per_op,
        exhausted: w.exhausted.load(Ordering::Relaxed),
    })
}

/// A progress line on stderr, rewritten every half second.
fn spawn_progress(
    op: Op,
    label: &'static str,
    issued: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Stop,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use std::io::Write;
        let started = Instant::now();
        let mut last = (started, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let n = issued.load(Ordering::Relaxed);
            let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
            last = (now, n);
            let done = match stop {
                Stop::Count(limit) => format!("{}/{limit} requests", n.min(limit)),
                Stop::Until(d) => format!(
                    "{:.1}/{:.1} s",
                    started.elapsed().as_secs_f64(),
                    d.saturating_duration_since(started).as_secs_f64()
                ),
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[K{} {label}: {done}, {rate:.0} req/s, {} errors",
                op.name(),
                failed.load(Ordering::Relaxed)
            );
            let _ = err.flush();
        }
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
/// delivered events; errors count events that never arrived (`LOST_EVENT`) and
/// failed inserts.
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
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for mut sub in subs {
        let written = written.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
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
                            hist.saturating_record(micros_since_epoch().saturating_sub(t).max(1));
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
    let pad = args.pad_len().unwrap_or(64);
    for _ in 0..args.in_flight {
        let writer = writer.clone();
        let issued = issued.clone();
        let written = written.clone();
        writers.push(tokio::spawn(async move {
            let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
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
                let d = json!({ "t": micros_since_epoch(), "pad": "x".repeat(pad) });
                match writer.insert(&d).await {
                    Ok(_) => {
                        written.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => *errors.entry(error_name(&e)).or_default() += 1,
                }
            }
            errors
        }));
    }
    let mut errors = BTreeMap::new();
    for w in writers {
        for (code, n) in w.await.context("writer task failed")? {
            *errors.entry(code).or_default() += n;
        }
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
    if expected > delivered {
        errors.insert("LOST_EVENT", expected - delivered);
    }
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
        errors,
        elapsed: started.elapsed(),
        hist,
        split: None,
        bytes_per_op: None,
        exhausted: false,
    })
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "requests": h.len(),
        "p50_us": h.value_at_quantile(0.50), "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99), "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(), "mean_us": (h.mean() * 10.0).round() / 10.0,
    })
}

fn print_report(r: &Report, args: &BenchArgs, retry_writes: bool) {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let ops_s = r.ops as f64 / secs;
    let error_count = r.error_count();
    let achieved = (r.ops + error_count) as f64 / secs;
    let name = r.op.name();
    if args.json {
        let mut out = json!({
            "op": name, "connections": args.connections, "in_flight": args.in_flight,
            "requests": r.ops, "errors": error_count, "errors_by_code": r.errors,
            "seconds": secs, "ops_per_sec": ops_s.round(),
            "p50_us": r.hist.value_at_quantile(0.50), "p90_us": r.hist.value_at_quantile(0.90),
            "p99_us": r.hist.value_at_quantile(0.99), "p999_us": r.hist.value_at_quantile(0.999),
            "max_us": r.hist.max(), "mean_us": (r.hist.mean() * 10.0).round() / 10.0,
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "target_rate": args.rate, "achieved_rate": achieved.round(),
            "warmup_seconds": args.warmup.unwrap_or(0.0),
            "retry_writes": retry_writes,
            "bytes_sent_per_op": r.bytes_per_op.map(|b| b.0.round()),
            "bytes_received_per_op": r.bytes_per_op.map(|b| b.1.round()),
        });
        if r.op.keyed() {
            out["keys"] = json!(args.keys);
            out["distribution"] = json!(match args.distribution {
                Distribution::Uniform => "uniform",
                Distribution::Zipfian => "zipfian",
            });
            if args.distribution == Distribution::Zipfian {
                out["zipf_theta"] = json!(ZIPF_THETA);
            }
        }
        if matches!(
            r.op,
            Op::Insert | Op::Get | Op::Update | Op::Mixed | Op::Tx | Op::Delete
        ) {
            out["doc_size"] = json!(serde_json::to_vec(&doc(Some("k00000"), args.pad_len()))
                .map(|v| v.len())
                .unwrap_or(0));
        }
        if r.op == Op::Mixed {
            out["read_ratio"] = json!(args.read_ratio());
        }
        if let Some((reads, writes)) = &r.split {
            out["reads"] = percentiles(reads);
            out["writes"] = percentiles(writes);
        }
        if r.op == Op::Delete {
            out["exhausted"] = json!(r.exhausted);
        }
        println!("{out}");
        return;
    }
    let bytes = |pick: fn(&(f64, f64)) -> f64| {
        r.bytes_per_op
            .as_ref()
            .map(|b| format!("{:.0}", pick(b)))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<8} {:>10} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>8}",
        name,
        r.ops,
        ops_s,
        r.hist.value_at_quantile(0.50),
        r.hist.value_at_quantile(0.90),
        r.hist.value_at_quantile(0.99),
        r.hist.value_at_quantile(0.999),
        r.hist.max(),
        error_count,
        bytes(|b| b.0),
        bytes(|b| b.1),
    );
    if let Some((reads, writes)) = &r.split {
        for (label, h) in [("  reads", reads), ("  writes", writes)] {
            println!(
                "{:<8} {:>10} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>9}",
                label,
                h.len(),
                h.len() as f64 / secs,
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.90),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
            );
        }
    }
    if let Some(rate) = args.rate {
        println!("  open loop: target {rate:.0} req/s, achieved {achieved:.0} req/s");
    }
    if !r.errors.is_empty() {
        let list: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        println!("  errors: {}", list.join(", "));
    }
    if r.exhausted {
        println!(
            "  delete ran out of pre-inserted documents after {secs:.1} s; raise --keys (or --requests)"
        );
    }
}
