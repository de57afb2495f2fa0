//! Interactive transactions end to end: the Rust client against the real server on
//! loopback, real storage in a temp directory, real concurrency.
//!
//! The issue's acceptance tests are here — lost update under 32 concurrent
//! incrementers, the bank transfer invariant, write skew under SNAPSHOT versus
//! SERIALIZABLE, a stalled client that blocks nobody — followed by the lifecycle and
//! error behaviours (visibility, rollback, connection close, idle timeout, read-only,
//! unknown ids, other databases, aborted transactions, isolation levels, kill -9).
//!
//! Nothing here asserts on time. Waits that must happen (an idle timeout) poll for
//! the outcome; `HANG_GUARD` only turns a deadlock into a failure instead of a hung
//! test run.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expect_server_error, ServerProcess, TestServer};
use serde_json::{json, Value};
use themis_client::{
    wire, Client, Error, ErrorCode, IsolationLevel, OpCode, RetryPolicy, TxOptions,
};
use themis_proto::{features, TypedResponse};

/// Upper bound for work that must finish; reaching it means something hangs.
const HANG_GUARD: Duration = Duration::from_secs(120);

// ---- helpers ------------------------------------------------------------------------

/// Retries lost conflicts for a long time: under heavy contention every transaction
/// should commit eventually. (Waits of 10-200 ms thin out 32 clients contending for
/// one document; shorter ones mostly buy more lost conflicts.)
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 100_000,
        max_elapsed: Duration::from_secs(600),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
    }
}

async fn clients(server: &TestServer, n: usize) -> Vec<Client> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(server.client().await);
    }
    out
}

async fn guarded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {HANG_GUARD:?}: a hang"))
}

fn int(doc: &Value, field: &str) -> i64 {
    doc[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} is not an integer in {doc}"))
}

async fn begin_raw(client: &Client, req: wire::BeginTxRequest) -> wire::BeginTxResponse {
    client
        .raw_request(OpCode::OpBeginTx, &req)
        .await
        .expect("BEGIN_TX answered")
}

/// A CREATE of `doc` into `coll`, inside transaction `tx`.
fn create_in(tx: &str, coll: &str, doc: Value) -> wire::CreateRequest {
    wire::CreateRequest {
        collection: coll.into(),
        document: doc.to_string().into_bytes().into(),
        transaction_id: tx.into(),
        ..Default::default()
    }
}

/// Asserts a raw typed response failed with `code`, not retryable unless said, and a
/// message containing every needle; returns the error.
#[track_caller]
fn expect_failed<R: TypedResponse>(r: &R, code: ErrorCode, needles: &[&str]) -> wire::Error {
    assert!(!r.success(), "expected {code:?}, got success");
    let e = r.error().expect("field 15 (error) is set").clone();
    assert_eq!(e.code, code as i32, "{e:?}");
    for n in needles {
        assert!(e.message.contains(n), "message lacks {n:?}: {}", e.message);
    }
    e
}

/// A small xorshift generator: the tests need varied numbers, not good ones.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn keys_of(client: &Client, coll: &str) -> Vec<String> {
    client
        .query(format!("FOR d IN {coll} SORT d._key RETURN d._key"))
        .all()
        .await
        .expect("list keys")
}

// ---- the issue's acceptance tests ---------------------------------------------------

/// 32 clients each increment one counter 200 times, each increment a read and an
/// update in a SNAPSHOT transaction, retried on lost conflicts. No update may be
/// lost: the counter equals the number of commits, and every increment commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_update_32_clients_increment_one_counter() {
    const CLIENTS: usize = 32;
    const INCREMENTS: u64 = 200;
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup
        .collection("counters")
        .insert(&json!({"_key": "c", "n": 0}))
        .await
        .unwrap();

    let commits = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in clients(&server, CLIENTS).await {
        let commits = commits.clone();
        let attempts = attempts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                let options = TxOptions::snapshot().retry(patient());
                let attempts = &attempts;
                client
                    .transaction(options, |tx| async move {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let counters = tx.collection("counters");
                        let doc: Value = counters.get("c").await?.expect("counter exists");
                        counters
                            .update("c", &json!({"n": int(&doc, "n") + 1}))
                            .await?;
                        Ok(())
                    })
                    .await
                    .expect("the increment commits within the retry policy");
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    guarded("the incrementers", async {
        for t in tasks {
            t.await.expect("incrementer task");
        }
    })
    .await;

    let doc: Value = setup
        .collection("counters")
        .get("c")
        .await
        .unwrap()
        .unwrap();
    let commits = commits.load(Ordering::Relaxed);
    assert_eq!(int(&doc, "n") as u64, commits, "an update was lost");
    assert_eq!(commits, CLIENTS as u64 * INCREMENTS);
    eprintln!(
        "lost-update: {commits} commits in {} attempts",
        attempts.load(Ordering::Relaxed)
    );
}

/// 32 clients move random amounts between 100 accounts while readers check, in
/// snapshot reads, that the total never changes: a SNAPSHOT transaction reading every
/// balance, a read-only transaction summing with AQL, and a plain AQL SUM.
///
/// Runs 30 s, the issue's figure, everywhere (CI included). Half the transfer clients
/// use document operations, the other half one AQL UPDATE statement per transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_never_change_the_total() {
    const ACCOUNTS: usize = 100;
    const CLIENTS: usize = 32;
    const READERS: usize = 3;
    const START: i64 = 1000;
    const TOTAL: i64 = START * ACCOUNTS as i64;
    let duration = Duration::from_secs(30);
    let server = TestServer::start().await;
    let setup = server.client().await;
    let keys: Vec<String> = (0..ACCOUNTS).map(|i| format!("a{i:03}")).collect();
    let docs: Vec<Value> = keys
        .iter()
        .map(|k| json!({"_key": k, "balance": START}))
        .collect();
    setup
        .collection("accounts")
        .insert_many(&docs)
        .await
        .unwrap();

    let deadline = Instant::now() + duration;
    let transfers = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for (w, client) in clients(&server, CLIENTS).await.into_iter().enumerate() {
        let transfers = transfers.clone();
        let keys = keys.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(w as u64 + 1);
            while Instant::now() < deadline {
                let (from, to, amount) = {
                    let n = ACCOUNTS as u64;
                    let from = rng.below(n);
                    let to = (from + 1 + rng.below(n - 1)) % n;
                    (
                        keys[from as usize].clone(),
                        keys[to as usize].clone(),
                        1 + rng.below(100) as i64,
                    )
                };
                let options = TxOptions::snapshot().retry(patient());
                let (from, to) = (&from, &to);
                let moved = if w % 2 == 0 {
                    client
                        .transaction(options, |tx| async move {
                            let accounts = tx.collection("accounts");
                            let both: Vec<Option<Value>> =
                                accounts.get_many(&[from, to]).await?;
                            let (Some(a), Some(b)) = (&both[0], &both[1]) else {
                                panic!("accounts exist: {both:?}");
                            };
                            if int(a, "balance") < amount {
                                tx.rollback().await?;
                                return Ok(false);
                            }
                            accounts
                                .update(from, &json!({"balance": int(a, "balance") - amount}))
                                .await?;
                            accounts
                                .update(to, &json!({"balance": int(b, "balance") + amount}))
                                .await?;
                            Ok(true)
                        })
                        .await
                } else {
                    client
                        .transaction(options, |tx| async move {
                            let changed: Vec<String> = tx
                                .query(
                                    "FOR a IN accounts FILTER a._key IN [@from, @to] \
                                     UPDATE a WITH {balance: a.balance + (a._key == @from ? -@amount : @amount)} \
                                     IN accounts RETURN NEW._key",
                                )
                                .bind("from", from)?
                                .bind("to", to)?
                                .bind("amount", amount)?
                                .all()
                                .await?;
                            assert_eq!(changed.len(), 2, "{changed:?}");
                            Ok(true)
                        })
                        .await
                };
                if moved.expect("a transfer commits within the retry policy") {
                    transfers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (r, client) in clients(&server, READERS).await.into_iter().enumerate() {
        let reads = reads.clone();
        let keys = keys.clone();
        readers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let total: i64 = match r {
                    0 => {
                        let tx = client.begin().await.unwrap();
                        let all: Vec<Option<Value>> =
                            tx.collection("accounts").get_many(&keys).await.unwrap();
                        tx.commit().await.unwrap();
                        all.iter()
                            .map(|d| int(d.as_ref().expect("account exists"), "balance"))
                            .sum()
                    }
                    1 => {
                        let tx = client
                            .begin_with(TxOptions::snapshot().read_only(true))
                            .await
                            .unwrap();
                        let sum: Option<i64> = tx
                            .query("RETURN SUM(FOR a IN accounts RETURN a.balance)")
                            .first()
                            .await
                            .unwrap();
                        tx.rollback().await.unwrap();
                        sum.unwrap()
                    }
                    _ => client
                        .query("RETURN SUM(FOR a IN accounts RETURN a.balance)")
                        .first::<i64>()
                        .await
                        .unwrap()
                        .unwrap(),
                };
                assert_eq!(total, TOTAL, "reader {r} saw a total that is not {TOTAL}");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    guarded("the bank run", async {
        for t in writers.into_iter().chain(readers) {
            t.await.expect("bank task");
        }
    })
    .await;

    let all: Vec<Option<Value>> = setup.collection("accounts").get_many(&keys).await.unwrap();
    let total: i64 = all
        .iter()
        .map(|d| int(d.as_ref().unwrap(), "balance"))
        .sum();
    assert_eq!(total, TOTAL, "the total changed");
    let transfers = transfers.load(Ordering::Relaxed);
    let reads = reads.load(Ordering::Relaxed);
    assert!(
        transfers > 0 && reads > 0,
        "transfers {transfers}, reads {reads}"
    );
    eprintln!("bank: {transfers} transfers and {reads} snapshot reads in {duration:?}");
}

/// The on-call doctors of PostgreSQL's documentation. Alice and Bob are on call; at
/// least one must stay. Two transactions each check that two are on call, and each
/// takes a different doctor off. Interleaved by hand (both read, both write, both
/// commit): under SNAPSHOT both commit and nobody is on call — write skew, the
/// anomaly snapshot isolation allows; under SERIALIZABLE the second commit fails with
/// a retryable ERR_CONFLICT, and the invariant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_happens_under_snapshot_and_not_under_serializable() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let other = server.client().await;
    for isolation in [IsolationLevel::Snapshot, IsolationLevel::Serializable] {
        let coll = format!("doctors_{}", isolation.as_str_name().to_lowercase());
        client
            .collection(&coll)
            .insert_many(&[
                json!({"_key": "alice", "on_call": true}),
                json!({"_key": "bob", "on_call": true}),
            ])
            .await
            .unwrap();
        let options = TxOptions::snapshot();
        let options = TxOptions {
            isolation,
            ..options
        };
        let t1 = client.begin_with(options.clone()).await.unwrap();
        let t2 = other.begin_with(options).await.unwrap();

        // Both read: t1 with AQL, t2 with READ.
        let on_call: Vec<String> = t1
            .query(format!("FOR d IN {coll} FILTER d.on_call RETURN d._key"))
            .all()
            .await
            .unwrap();
        assert_eq!(on_call.len(), 2);
        let docs: Vec<Option<Value>> = t2
            .collection(&coll)
            .get_many(&["alice", "bob"])
            .await
            .unwrap();
        assert!(docs
            .iter()
            .all(|d| d.as_ref().unwrap()["on_call"] == json!(true)));

        // Both write a different document, then both commit.
        t1.collection(&coll)
            .update("alice", &json!({"on_call": false}))
            .await
            .unwrap();
        t2.collection(&coll)
            .update("bob", &json!({"on_call": false}))
            .await
            .unwrap();
        t1.commit().await.expect("the first commit always succeeds");
        let second = t2.commit().await;

        let still: Vec<String> = client
            .query(format!("FOR d IN {coll} FILTER d.on_call RETURN d._key"))
            .all()
            .await
            .unwrap();
        match isolation {
            IsolationLevel::Snapshot => {
                second.expect("under SNAPSHOT the second commit succeeds too");
                assert!(still.is_empty(), "write skew: nobody is on call: {still:?}");
            }
            _ => {
                let e = second.expect_err("under SERIALIZABLE the second commit fails");
                assert_eq!(e.code(), Some(ErrorCode::ErrConflict), "{e}");
                assert!(e.is_retryable(), "{e}");
                assert_eq!(still, vec!["bob".to_string()], "the invariant holds");
            }
        }
    }
}

/// A client opens a transaction, writes, and stalls. Other clients commit to other
/// documents and to the very documents it wrote, without waiting for it; its own
/// commit then fails with a retryable conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_transaction_delays_nobody() {
    let server = TestServer::start().await;
    let stalled_client = server.client().await;
    stalled_client
        .collection("s")
        .insert(&json!({"_key": "hot", "owner": "nobody"}))
        .await
        .unwrap();
    let stalled = stalled_client.begin().await.unwrap();
    let s = stalled.collection("s");
    s.update("hot", &json!({"owner": "stalled"})).await.unwrap();
    s.insert(&json!({"_key": "claimed", "owner": "stalled"}))
        .await
        .unwrap();

    // While it stalls (no request, no commit), everyone else gets on with it.
    const OTHERS: usize = 8;
    let mut tasks = Vec::new();
    for (i, client) in clients(&server, OTHERS).await.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                let tx = client.begin().await.unwrap();
                tx.collection("s")
                    .insert(&json!({"_key": format!("o{i}-{j}")}))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            if i == 0 {
                // The same documents the stalled transaction wrote.
                let tx = client.begin().await.unwrap();
                tx.collection("s")
                    .update("hot", &json!({"owner": "other"}))
                    .await
                    .unwrap();
                tx.collection("s")
                    .insert(&json!({"_key": "claimed", "owner": "other"}))
                    .await
                    .unwrap();
                tx.commit()
                    .await
                    .expect("commits although another tx wrote these");
            }
        }));
    }
    guarded("the other clients' commits", async {
        for t in tasks {
            t.await.expect("other client");
        }
    })
    .await;

    let reader = server.client().await;
    let keys = keys_of(&reader, "s").await;
    assert_eq!(keys.len(), OTHERS * 20 + 2, "{keys:?}");
    let e = stalled
        .commit()
        .await
        .expect_err("the stalled commit conflicts");
    assert_eq!(e.code(), Some(ErrorCode::ErrConflict), "{e}");
    assert!(e.is_retryable(), "{e}");
    let hot: Value = reader.collection("s").get("hot").await.unwrap().unwrap();
    assert_eq!(hot["owner"], json!("other"));
    let claimed: Value = reader
        .collection("s")
        .get("claimed")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed["owner"], json!("other"));
}

// ---- visibility ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_visible_inside_only_until_commit() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let outside = server.client().await;
    assert_ne!(
        client.server_info().features & features::TRANSACTIONS,
        0,
        "the server announces TRANSACTIONS"
    );
    let v = client.collection("v");
    v.insert_many(&[
        json!({"_key": "keep", "n": 1}),
        json!({"_key": "change", "n": 1}),
        json!({"_key": "gone", "n": 1}),
    ])
    .await
    .unwrap();

    let tx = client.begin().await.unwrap();
    let tv = tx.collection("v");
    tv.insert(&json!({"_key": "new", "n": 1})).await.unwrap();
    tv.update("change", &json!({"n": 2})).await.unwrap();
    assert!(tv.delete("gone").await.unwrap());
    // Write queries in the transaction, results served in batches of one.
    let made: Vec<String> = tx
        .query("FOR i IN 1..3 INSERT {_key: CONCAT('q', i), n: i} INTO v RETURN NEW._key")
        .batch_size(1)
        .all()
        .await
        .unwrap();
    assert_eq!(made, ["q1", "q2", "q3"]);

    let expected_inside = ["change", "keep", "new", "q1", "q2", "q3"];
    // Inside, by READ ...
    let docs: Vec<Option<Value>> = tv
        .get_many(&["keep", "change", "gone", "new", "q2"])
        .await
        .unwrap();
    assert_eq!(docs[1].as_ref().unwrap()["n"], json!(2));
    assert!(docs[2].is_none(), "own delete is visible");
    assert!(
        docs[3].is_some() && docs[4].is_some(),
        "own inserts are visible"
    );
    // ... and by AQL, through a cursor (batches of two: CURSOR_NEXT in the transaction).
    let inside: Vec<String> = tx
        .query("FOR d IN v SORT d._key RETURN d._key")
        .batch_size(2)
        .all()
        .await
        .unwrap();
    assert_eq!(inside, expected_inside);
    let n: Option<i64> = tx
        .query("RETURN DOCUMENT('v/change').n")
        .first()
        .await
        .unwrap();
    assert_eq!(n, Some(2));

    // Outside: another connection, and this one without the transaction.
    for c in [&outside, &client] {
        assert_eq!(keys_of(c, "v").await, ["change", "gone", "keep"]);
        let change: Value = c.collection("v").get("change").await.unwrap().unwrap();
        assert_eq!(change["n"], json!(1));
    }

    tx.commit().await.unwrap();
    assert_eq!(keys_of(&outside, "v").await, expected_inside);
    let change: Value = outside
        .collection("v")
        .get("change")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change["n"], json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_discards_everything_and_ends_the_transaction() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .collection("r")
        .insert(&json!({"_key": "old", "n": 1}))
        .await
        .unwrap();
    let tx = client.begin().await.unwrap();
    let id = tx.id().to_string();
    tx.collection("r")
        .insert(&json!({"_key": "new"}))
        .await
        .unwrap();
    tx.collection("r")
        .update("old", &json!({"n": 9}))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert_eq!(keys_of(&client, "r").await, ["old"]);
    let old: Value = client.collection("r").get("old").await.unwrap().unwrap();
    assert_eq!(old["n"], json!(1));

    let late: wire::CreateResponse = client
        .raw_request(
            OpCode::OpCreate,
            &create_in(&id, "r", json!({"_key": "late"})),
        )
        .await
        .unwrap();
    let e = expect_failed(
        &late,
        ErrorCode::ErrTransaction,
        &["already rolled back", "OP_BEGIN_TX"],
    );
    assert!(!e.retryable);
    expect_server_error(
        tx.commit().await,
        ErrorCode::ErrTransaction,
        &["already rolled back"],
    );
}

/// A transaction belongs to its connection: closing the connection rolls it back, and
/// its id means nothing on another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_rolls_back() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .collection("c")
        .insert(&json!({"_key": "committed"}))
        .await
        .unwrap();
    let id = {
        // Raw requests: no client-side transaction handle that would send a ROLLBACK
        // when dropped. Only the connection closes; the server must roll back alone.
        let client = server.client().await;
        let begun = begin_raw(&client, wire::BeginTxRequest::default()).await;
        assert!(begun.success, "{begun:?}");
        let id = begun.transaction_id;
        let r: wire::CreateResponse = client
            .raw_request(
                OpCode::OpCreate,
                &create_in(&id, "c", json!({"_key": "uncommitted"})),
            )
            .await
            .unwrap();
        assert!(r.success, "{r:?}");
        drop(client);
        id
    };
    let client = server.client().await;
    let got: Option<Value> = client.collection("c").get("uncommitted").await.unwrap();
    assert!(got.is_none(), "{got:?}");
    let resp: wire::CommitTxResponse = client
        .raw_request(
            OpCode::OpCommitTx,
            &wire::CommitTxRequest {
                transaction_id: id,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(
        &resp,
        ErrorCode::ErrTransaction,
        &["not found on this connection", "another connection"],
    );
    // The key is free: nothing of the closed connection's transaction holds it.
    let tx = client.begin().await.unwrap();
    tx.collection("c")
        .insert(&json!({"_key": "uncommitted"}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transaction_is_rolled_back_after_its_timeout() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let tx = client
        .begin_with(TxOptions::snapshot().timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let t = tx.collection("idle");
    t.insert(&json!({"_key": "x"})).await.unwrap();
    // Each attempt that still finds the transaction also renews it; the next pause is
    // longer than the timeout again, so this ends as soon as the reaper has run once.
    let mut expired = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        match t.get::<Value>("x").await {
            Ok(doc) => assert!(doc.is_some(), "own insert visible while alive"),
            Err(e) => {
                expired = Some(e);
                break;
            }
        }
    }
    let e = expired.expect("the idle transaction was rolled back");
    assert_eq!(e.code(), Some(ErrorCode::ErrTransaction), "{e}");
    assert!(!e.is_retryable());
    let message = e.server_message().unwrap();
    assert!(
        message.contains("rolled back after 0.300 s idle"),
        "{message}"
    );
    expect_server_error(
        tx.commit().await,
        ErrorCode::ErrTransaction,
        &["rolled back after 0.300 s idle"],
    );
    let got: Option<Value> = client.collection("idle").get("x").await.unwrap_or(None);
    assert!(got.is_none());
}

// ---- refusals -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_refuses_writes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .collection("ro")
        .insert(&json!({"_key": "a", "n": 1}))
        .await
        .unwrap();
    let tx = client
        .begin_with(TxOptions::serializable().read_only(true))
        .await
        .unwrap();
    let ro = tx.collection("ro");
    let needles = ["read-only", "without read_only"];
    expect_server_error(
        ro.insert(&json!({"_key": "b"})).await,
        ErrorCode::ErrTransaction,
        &needles,
    );
    expect_server_error(
        ro.update("a", &json!({"n": 2})).await,
        ErrorCode::ErrTransaction,
        &needles,
    );
    expect_server_error(ro.delete("a").await, ErrorCode::ErrTransaction, &needles);
    expect_server_error(
        tx.query("INSERT {_key: 'c'} INTO ro").all::<Value>().await,
        ErrorCode::ErrTransaction,
        &needles,
    );
    // Reads work, and the refusals did not abort it.
    let a: Value = ro.get("a").await.unwrap().unwrap();
    assert_eq!(a["n"], json!(1));
    let n: Vec<i64> = tx.query("FOR d IN ro RETURN d.n").all().await.unwrap();
    assert_eq!(n, [1]);
    tx.commit().await.unwrap();
    assert_eq!(keys_of(&client, "ro").await, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transaction_ids_and_bad_begins_are_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let unknown = "00112233445566778899aabbccddeeff";
    let needles = ["not found on this connection", "OP_BEGIN_TX"];

    let r: wire::CreateResponse = client
        .raw_request(OpCode::OpCreate, &create_in(unknown, "u", json!({})))
        .await
        .unwrap();
    let e = expect_failed(&r, ErrorCode::ErrTransaction, &needles);
    assert!(!e.retryable);
    let r: wire::ReadResponse = client
        .raw_request(
            OpCode::OpRead,
            &wire::ReadRequest {
                collection: "u".into(),
                document_ids: vec!["a".into()],
                transaction_id: unknown.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(&r, ErrorCode::ErrTransaction, &needles);
    let r: wire::QueryResponse = client
        .raw_request(
            OpCode::OpQuery,
            &wire::QueryRequest {
                aql_query: "RETURN 1".into(),
                transaction_id: unknown.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(&r, ErrorCode::ErrTransaction, &needles);
    let r: wire::RollbackTxResponse = client
        .raw_request(
            OpCode::OpRollbackTx,
            &wire::RollbackTxRequest {
                transaction_id: unknown.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(&r, ErrorCode::ErrTransaction, &needles);
    // Nothing was written outside a transaction by mistake.
    let got: Option<Value> = client.collection("u").get("a").await.unwrap_or(None);
    assert!(got.is_none());

    // An isolation level the contract does not define.
    let r = begin_raw(
        &client,
        wire::BeginTxRequest {
            isolation_level: 7,
            ..Default::default()
        },
    )
    .await;
    expect_failed(
        &r,
        ErrorCode::ErrInvalidArgument,
        &["unknown isolation_level 7", "SNAPSHOT (0)"],
    );
    // A database that does not exist.
    let r = begin_raw(
        &client,
        wire::BeginTxRequest {
            database: "nowhere".into(),
            ..Default::default()
        },
    )
    .await;
    expect_failed(&r, ErrorCode::ErrNotFound, &["nowhere"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_works_in_one_database() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.create_database("other").await.unwrap();
    let other = client.database("other");

    // Begun in "other": requests that leave database empty, or name it, run there.
    let tx = other.begin().await.unwrap();
    tx.collection("d")
        .insert(&json!({"_key": "here"}))
        .await
        .unwrap();
    let id = tx.id().to_string();
    let mut req = create_in(&id, "d", json!({"_key": "named"}));
    req.database = "other".into();
    let r: wire::CreateResponse = client.raw_request(OpCode::OpCreate, &req).await.unwrap();
    assert!(r.success, "{r:?}");
    // Naming another database is refused, and names both.
    let mut req = create_in(&id, "d", json!({"_key": "elsewhere"}));
    req.database = "_system".into();
    let r: wire::CreateResponse = client.raw_request(OpCode::OpCreate, &req).await.unwrap();
    expect_failed(
        &r,
        ErrorCode::ErrTransaction,
        &["works in database 'other'", "names database '_system'"],
    );
    let r: wire::QueryResponse = client
        .raw_request(
            OpCode::OpQuery,
            &wire::QueryRequest {
                aql_query: "FOR d IN d RETURN d".into(),
                transaction_id: id.clone(),
                database: "_system".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(
        &r,
        ErrorCode::ErrTransaction,
        &["works in database 'other'"],
    );
    // The raw request with no database ran in the transaction's, not the connection's.
    let r: wire::CreateResponse = client
        .raw_request(
            OpCode::OpCreate,
            &create_in(&id, "d", json!({"_key": "empty"})),
        )
        .await
        .unwrap();
    assert!(r.success, "{r:?}");
    tx.commit().await.unwrap();
    assert_eq!(keys_of(&other, "d").await, ["empty", "here", "named"]);
    let in_system = client.collection("d").get::<Value>("here").await;
    assert!(
        matches!(&in_system, Ok(None)) || in_system.as_ref().is_err_and(Error::is_not_found),
        "{in_system:?}"
    );
}

/// A statement that fails before writing leaves the transaction usable; one that fails
/// after writing part of its effects (a bulk insert whose second document collides)
/// aborts it: every later request, COMMIT included, fails until it is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bulk_insert_aborts_the_transaction() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .collection("b")
        .insert(&json!({"_key": "dup"}))
        .await
        .unwrap();

    // Fails before writing: the transaction carries on and commits.
    let tx = client.begin().await.unwrap();
    let b = tx.collection("b");
    assert!(b
        .update("missing", &json!({"n": 1}))
        .await
        .unwrap_err()
        .is_not_found());
    b.insert(&json!({"_key": "fine"})).await.unwrap();
    tx.commit().await.unwrap();

    // Fails half-way: aborted.
    let tx = client.begin().await.unwrap();
    let b = tx.collection("b");
    let e = b
        .insert_many(&[json!({"_key": "first"}), json!({"_key": "dup"})])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ErrConflict), "{e}");
    expect_server_error(
        b.insert(&json!({"_key": "after"})).await,
        ErrorCode::ErrTransaction,
        &["aborted", "roll it back"],
    );
    expect_server_error(
        b.get::<Value>("fine").await,
        ErrorCode::ErrTransaction,
        &["aborted"],
    );
    // COMMIT of an aborted transaction rolls it back: it ends either way.
    expect_server_error(
        tx.commit().await,
        ErrorCode::ErrTransaction,
        &["cannot commit", "aborted", "rolled back"],
    );
    expect_server_error(
        b.get::<Value>("fine").await,
        ErrorCode::ErrTransaction,
        &["commit"],
    );
    assert_eq!(keys_of(&client, "b").await, ["dup", "fine"]);
}

/// READ_COMMITTED reads what others committed between its statements; SNAPSHOT and
/// SERIALIZABLE keep reading the database as of BEGIN. READ_COMMITTED still refuses to
/// overwrite a document that changed after BEGIN (the commit conflicts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_commits_between_statements_snapshot_does_not() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let writer = server.client().await;
    let docs = writer.collection("iso");
    docs.insert(&json!({"_key": "k", "n": 1})).await.unwrap();

    let rc = client
        .begin_with(TxOptions::read_committed())
        .await
        .unwrap();
    let si = client.begin_with(TxOptions::snapshot()).await.unwrap();
    let se = client.begin_with(TxOptions::serializable()).await.unwrap();
    let n_by_read = |tx: &themis_client::Transaction| {
        let c = tx.collection("iso");
        async move { int(&c.get::<Value>("k").await.unwrap().unwrap(), "n") }
    };
    let n_by_aql = |tx: &themis_client::Transaction| {
        let q = tx.query("FOR d IN iso RETURN d.n");
        async move { q.first::<i64>().await.unwrap().unwrap() }
    };
    for tx in [&rc, &si, &se] {
        assert_eq!(n_by_read(tx).await, 1);
    }

    docs.update("k", &json!({"n": 2})).await.unwrap();
    docs.insert(&json!({"_key": "later", "n": 5}))
        .await
        .unwrap();

    assert_eq!(n_by_read(&rc).await, 2);
    assert_eq!(n_by_aql(&rc).await, 2);
    let rc_keys: Vec<String> = rc
        .query("FOR d IN iso SORT d._key RETURN d._key")
        .all()
        .await
        .unwrap();
    assert_eq!(rc_keys, ["k", "later"]);
    for tx in [&si, &se] {
        assert_eq!(n_by_read(tx).await, 1);
        assert_eq!(n_by_aql(tx).await, 1);
        let keys: Vec<String> = tx.query("FOR d IN iso RETURN d._key").all().await.unwrap();
        assert_eq!(keys, ["k"]);
    }
    si.commit().await.unwrap();
    se.commit().await.unwrap();

    rc.collection("iso")
        .update("k", &json!({"n": 3}))
        .await
        .unwrap();
    let e = rc.commit().await.expect_err("k changed after BEGIN");
    assert_eq!(e.code(), Some(ErrorCode::ErrConflict), "{e}");
    assert!(e.is_retryable());
    let k: Value = docs.get("k").await.unwrap().unwrap();
    assert_eq!(k["n"], json!(2));
}

// ---- one connection, many requests ---------------------------------------------------

/// Requests sent concurrently in one transaction run one at a time, all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_in_one_transaction_all_run() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let tx = client.begin().await.unwrap();
    let inserts = (0..32).map(|i| {
        let c = tx.collection("many");
        async move { c.insert(&json!({"_key": format!("k{i:02}")})).await }
    });
    for r in futures::future::join_all(inserts).await {
        r.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(keys_of(&client, "many").await.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_per_connection_are_capped() {
    let server = TestServer::start_with(|c| c.transactions.max_per_connection = 4).await;
    let client = server.client().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(client.begin().await.unwrap());
    }
    expect_server_error(
        client.begin().await,
        ErrorCode::ErrResourceExhausted,
        &["already has 4 open transactions", "commit or roll back"],
    );
    // Another connection has its own allowance.
    server
        .client()
        .await
        .begin()
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap();
    open.pop().unwrap().rollback().await.unwrap();
    client.begin().await.expect("a slot is free again");
}

/// A cursor opened in a transaction ends with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_cursor_closes_with_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let docs: Vec<Value> = (0..5).map(|i| json!({"_key": format!("c{i}")})).collect();
    client.collection("cur").insert_many(&docs).await.unwrap();
    let tx = client.begin().await.unwrap();
    let first: wire::QueryResponse = client
        .raw_request(
            OpCode::OpQuery,
            &wire::QueryRequest {
                aql_query: "FOR d IN cur RETURN d._key".into(),
                batch_size: 2,
                transaction_id: tx.id().into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(first.success && first.has_more, "{first:?}");
    tx.commit().await.unwrap();
    let next: wire::QueryResponse = client
        .raw_request(
            OpCode::OpCursorNext,
            &wire::CursorNextRequest {
                cursor_id: first.cursor_id,
                batch_size: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    expect_failed(
        &next,
        ErrorCode::ErrCursorNotFound,
        &["its transaction ended"],
    );
}

// ---- durability ---------------------------------------------------------------------

/// What a transaction committed survives kill -9; what an open one wrote does not
/// appear after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    let client = Client::connect(&server.url()).await.unwrap();
    client
        .collection("dur")
        .insert(&json!({"_key": "base", "n": 0}))
        .await
        .unwrap();

    let tx = client.begin_with(TxOptions::serializable()).await.unwrap();
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"_key": format!("t{i}"), "i": i}))
        .collect();
    tx.collection("dur").insert_many(&docs).await.unwrap();
    tx.collection("dur")
        .update("base", &json!({"n": 50}))
        .await
        .unwrap();
    tx.commit().await.expect("acknowledged: durable");

    let open = client.begin().await.unwrap();
    open.collection("dur")
        .insert(&json!({"_key": "never"}))
        .await
        .unwrap();
    open.collection("dur")
        .update("base", &json!({"n": -1}))
        .await
        .unwrap();

    server.signal(libc::SIGKILL);
    server.wait(Duration::from_secs(10));
    drop(client);
    let server = ServerProcess::start(&data, &[]);
    let client = Client::connect(&server.url()).await.unwrap();
    let keys: HashSet<String> = keys_of(&client, "dur").await.into_iter().collect();
    assert_eq!(keys.len(), 51, "{keys:?}");
    assert!(keys.contains("t0") && keys.contains("t49") && !keys.contains("never"));
    let base: Value = client.collection("dur").get("base").await.unwrap().unwrap();
    assert_eq!(base["n"], json!(50));
}
