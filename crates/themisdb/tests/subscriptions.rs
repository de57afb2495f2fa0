//! Real-time subscriptions against a real server, over the raw protocol (SUBSCRIBE,
//! OP_EVENT, UNSUBSCRIBE frames read and written by hand), so that they test the
//! server independently of the client crate. Plain writes go through the client.
//!
//! No timing assertions: every wait is for a condition, with a generous limit.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{code_of, Frame, RawConn, ServerProcess, TestServer};
use serde_json::{json, Value};
use themis_client::{Client, IndexOptions};
use themis_proto::wire::{self, ChangeKind, ErrorCode, OpCode};

/// How long any single expected frame may take.
const WAIT: Duration = Duration::from_secs(30);

// ---- a hand-driven subscriber ------------------------------------------------------

/// One raw connection that subscribes and files what arrives: events by the
/// SUBSCRIBE's request id, other frames by their request id.
struct Subscriber {
    conn: RawConn,
    next_request: u64,
    events: HashMap<u64, VecDeque<wire::ChangeEvent>>,
    responses: HashMap<u64, Frame>,
}

/// What a subscription was told when it was made.
struct Subscription {
    request_id: u64,
    id: String,
    current_sequence: u64,
}

impl Subscriber {
    async fn login(addr: SocketAddr) -> Self {
        Self {
            conn: RawConn::login(addr).await,
            next_request: 100,
            events: HashMap::new(),
            responses: HashMap::new(),
        }
    }

    /// Reads one frame and files it.
    async fn pump(&mut self) {
        let f = self
            .conn
            .recv_within(WAIT)
            .await
            .expect("a frame within the limit")
            .expect("the server keeps the connection open");
        if f.op() == OpCode::OpEvent {
            let ev: wire::ChangeEvent = f.decode();
            // The queue exists once the SubscribeResponse has been read.
            self.events
                .get_mut(&f.request_id)
                .unwrap_or_else(|| panic!("an event before its SubscribeResponse: {ev:?}"))
                .push_back(ev);
        } else {
            assert!(
                self.responses.insert(f.request_id, f).is_none(),
                "two answers to one request"
            );
        }
    }

    async fn request<M: prost::Message>(&mut self, op: OpCode, msg: &M) -> (u64, Frame) {
        self.next_request += 1;
        let rid = self.next_request;
        self.conn.send(op, rid, msg).await;
        loop {
            if let Some(f) = self.responses.remove(&rid) {
                return (rid, f);
            }
            self.pump().await;
        }
    }

    async fn try_subscribe(
        &mut self,
        req: wire::SubscribeRequest,
    ) -> (u64, wire::SubscribeResponse) {
        let (rid, f) = self.request(OpCode::OpSubscribe, &req).await;
        assert_eq!(f.op(), OpCode::OpSubscribe, "{f:?}");
        assert!(
            !self.events.contains_key(&rid),
            "events arrived before the SubscribeResponse"
        );
        let resp: wire::SubscribeResponse = f.decode();
        if resp.success {
            self.events.insert(rid, VecDeque::new());
        }
        (rid, resp)
    }

    async fn subscribe(&mut self, req: wire::SubscribeRequest) -> Subscription {
        let (request_id, resp) = self.try_subscribe(req).await;
        assert!(resp.success, "{resp:?}");
        assert_eq!(resp.subscription_id.len(), 32, "{resp:?}");
        assert!(resp.subscription_id.bytes().all(|b| b.is_ascii_hexdigit()));
        Subscription {
            request_id,
            id: resp.subscription_id,
            current_sequence: resp.current_sequence,
        }
    }

    async fn next_event(&mut self, sub: &Subscription) -> wire::ChangeEvent {
        loop {
            if let Some(ev) = self
                .events
                .get_mut(&sub.request_id)
                .and_then(VecDeque::pop_front)
            {
                assert_eq!(ev.subscription_id, sub.id, "{ev:?}");
                return ev;
            }
            self.pump().await;
        }
    }

    /// The next `n` events of `sub`.
    async fn events(&mut self, sub: &Subscription, n: usize) -> Vec<wire::ChangeEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_event(sub).await);
        }
        out
    }

    /// Asserts that no event of `sub` is waiting: none has arrived by the time a PING
    /// is answered. (A check against extra events, which never fails spuriously.)
    async fn assert_quiet(&mut self, sub: &Subscription) {
        let (_, pong) = self
            .request(OpCode::OpPing, &wire::Ping { timestamp_ms: 1 })
            .await;
        assert_eq!(pong.op(), OpCode::OpPong);
        let queued = self
            .events
            .get(&sub.request_id)
            .map(VecDeque::len)
            .unwrap_or(0);
        assert_eq!(
            queued,
            0,
            "unexpected events: {:?}",
            self.events.get(&sub.request_id)
        );
    }

    async fn unsubscribe(&mut self, id: &str) -> (u64, wire::UnsubscribeResponse) {
        let req = wire::UnsubscribeRequest {
            subscription_id: id.to_string(),
            ..Default::default()
        };
        let (rid, f) = self.request(OpCode::OpUnsubscribe, &req).await;
        assert_eq!(f.op(), OpCode::OpUnsubscribe, "{f:?}");
        (rid, f.decode())
    }
}

fn sub_req(collection: &str) -> wire::SubscribeRequest {
    wire::SubscribeRequest {
        collection: collection.to_string(),
        include_documents: true,
        ..Default::default()
    }
}

/// [`sub_req`], resuming after sequence `from`.
fn sub_from(collection: &str, from: u64) -> wire::SubscribeRequest {
    wire::SubscribeRequest {
        from_sequence: Some(from),
        ..sub_req(collection)
    }
}

fn doc_of(ev: &wire::ChangeEvent) -> Value {
    serde_json::from_slice(&ev.document).unwrap_or_else(|e| panic!("{e}: {ev:?}"))
}

fn kind_of(ev: &wire::ChangeEvent) -> ChangeKind {
    ChangeKind::try_from(ev.kind).expect("known kind")
}

#[track_caller]
fn assert_end(ev: &wire::ChangeEvent, reason: &str, resume: u64) {
    assert_eq!(kind_of(ev), ChangeKind::End, "{ev:?}");
    assert_eq!(ev.end_reason, reason, "{ev:?}");
    assert_eq!(ev.resume_sequence, resume, "{ev:?}");
}

fn error_of(e: &Option<wire::Error>) -> (ErrorCode, String) {
    let e = e.as_ref().expect("error set");
    (code_of(e), e.message.clone())
}

/// Waits until `cond` holds, polling; panics after `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- the basics -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_arrive_in_order_with_their_fields() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let orders = client.collection("orders");
    orders.insert(&json!({ "_key": "warmup" })).await.unwrap();

    let mut s = Subscriber::login(server.addr).await;
    let full = s.subscribe(sub_req("orders")).await;
    assert_eq!(full.current_sequence, 1, "the warm-up insert is sequence 1");
    let bare = s
        .subscribe(wire::SubscribeRequest {
            include_documents: false,
            ..sub_req("orders")
        })
        .await;
    assert_ne!(full.id, bare.id);

    let a = orders
        .insert(&json!({ "_key": "a", "total": 5 }))
        .await
        .unwrap();
    let a2 = orders.update("a", &json!({ "total": 7 })).await.unwrap();
    assert!(orders.delete("a").await.unwrap());

    let evs = s.events(&full, 3).await;
    let expected = [
        (ChangeKind::Insert, &a.rev, Some(5)),
        (ChangeKind::Update, &a2.rev, Some(7)),
        (ChangeKind::Delete, &a2.rev, None),
    ];
    for (i, (ev, (kind, rev, total))) in evs.iter().zip(expected).enumerate() {
        assert_eq!(ev.sequence, 2 + i as u64, "{ev:?}");
        assert_eq!(kind_of(ev), kind, "{ev:?}");
        assert_eq!(ev.collection, "orders");
        assert_eq!(ev.document_id, "a");
        assert_eq!(&ev.revision, rev, "{ev:?}");
        assert!(ev.timestamp_ms > 1_600_000_000_000, "{ev:?}");
        assert!(ev.end_reason.is_empty() && ev.resume_sequence == 0);
        match total {
            Some(t) => {
                let doc = doc_of(ev);
                assert_eq!(doc["total"], t);
                assert_eq!(doc["_key"], "a");
                assert_eq!(doc["_id"], "orders/a");
                assert_eq!(&doc["_rev"], rev.as_str());
            }
            None => assert!(ev.document.is_empty(), "a delete carries no document"),
        }
    }
    for ev in s.events(&bare, 3).await {
        assert!(ev.document.is_empty(), "include_documents off: {ev:?}");
        assert_eq!(ev.document_id, "a");
    }
    s.assert_quiet(&full).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_whole_database_and_filter_choose_their_changes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut s = Subscriber::login(server.addr).await;
    // "orders" does not exist yet: following it is allowed (the database exists).
    let orders = s.subscribe(sub_req("orders")).await;
    let everything = s.subscribe(sub_req("")).await;
    let big_open = s
        .subscribe(wire::SubscribeRequest {
            filter: r#"doc.total > 100 && doc.status == "open""#.into(),
            ..sub_req("orders")
        })
        .await;
    let any_big = s
        .subscribe(wire::SubscribeRequest {
            filter: "doc.total > 100".into(),
            include_documents: false,
            ..sub_req("")
        })
        .await;

    let o = client.collection("orders");
    let other = client.collection("other");
    o.insert(&json!({ "_key": "o1", "total": 50, "status": "open" }))
        .await
        .unwrap(); // 1
    other
        .insert(&json!({ "_key": "x1", "total": 500 }))
        .await
        .unwrap(); // 2
    o.insert(&json!({ "_key": "o2", "total": 150, "status": "open" }))
        .await
        .unwrap(); // 3
    o.update("o1", &json!({ "total": 200 })).await.unwrap(); // 4: now matches
    o.update("o2", &json!({ "status": "closed" }))
        .await
        .unwrap(); // 5: no longer
    o.delete("o1").await.unwrap(); // 6: the deleted version matched
    o.delete("o2").await.unwrap(); // 7: the deleted version did not
    other.delete("x1").await.unwrap(); // 8

    let seqs = |evs: &[wire::ChangeEvent]| evs.iter().map(|e| e.sequence).collect::<Vec<_>>();
    assert_eq!(seqs(&s.events(&orders, 6).await), [1, 3, 4, 5, 6, 7]);
    let all = s.events(&everything, 8).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(all[1].collection, "other");
    let filtered = s.events(&big_open, 3).await;
    assert_eq!(seqs(&filtered), [3, 4, 6]);
    assert_eq!(kind_of(&filtered[2]), ChangeKind::Delete);
    assert!(filtered[2].document.is_empty());
    // The deletes match on the deleted version.
    assert_eq!(seqs(&s.events(&any_big, 7).await), [2, 3, 4, 5, 6, 7, 8]);
    for sub in [&orders, &everything, &big_open, &any_big] {
        s.assert_quiet(sub).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscriptions_per_connection_unsubscribe_and_no_leaked_tasks() {
    let server = TestServer::start_with(|c| c.subscriptions.max_per_connection = 8).await;
    let handle = server.handle.as_ref().unwrap();
    let client = server.client().await;
    let mut s = Subscriber::login(server.addr).await;
    let mut subs = Vec::new();
    for i in 0..8 {
        let coll = if i % 2 == 0 { "c" } else { "" };
        subs.push(s.subscribe(sub_req(coll)).await);
    }
    let (_, refused) = s.try_subscribe(sub_req("c")).await;
    assert!(!refused.success);
    let (code, msg) = error_of(&refused.error);
    assert_eq!(code, ErrorCode::ErrResourceExhausted, "{msg}");
    assert!(msg.contains("max_per_connection"), "{msg}");
    wait_until("8 subscription tasks run", WAIT, || {
        handle.open_subscriptions() == 8
    })
    .await;

    client
        .collection("c")
        .insert(&json!({ "n": 1 }))
        .await
        .unwrap();
    for sub in &subs {
        let ev = s.next_event(sub).await;
        assert_eq!((ev.sequence, kind_of(&ev)), (1, ChangeKind::Insert));
    }

    // UNSUBSCRIBE: END first, then the answer; the id is gone afterwards.
    let gone = subs.remove(3);
    let (_, resp) = s.unsubscribe(&gone.id).await;
    assert!(resp.success, "{resp:?}");
    let end = s
        .events
        .get_mut(&gone.request_id)
        .and_then(VecDeque::pop_front)
        .expect("END queued before the UnsubscribeResponse");
    assert_end(&end, "unsubscribed", 1);
    let (_, again) = s.unsubscribe(&gone.id).await;
    let (code, msg) = error_of(&again.error);
    assert!(!again.success);
    assert_eq!(code, ErrorCode::ErrNotFound, "{msg}");
    let (_, unknown) = s.unsubscribe("0123456789abcdef").await;
    assert_eq!(error_of(&unknown.error).0, ErrorCode::ErrNotFound);
    wait_until("7 subscription tasks run", WAIT, || {
        handle.open_subscriptions() == 7
    })
    .await;
    // The freed place can be taken again.
    subs.push(s.subscribe(sub_req("c")).await);
    client
        .collection("c")
        .insert(&json!({ "n": 2 }))
        .await
        .unwrap();
    for sub in &subs {
        let ev = s.next_event(sub).await;
        assert_eq!(ev.sequence, 2, "{ev:?}");
    }
    s.assert_quiet(&gone).await;

    // Subscriptions end with their connection; their tasks with them.
    drop(s);
    wait_until("every subscription task ended", WAIT, || {
        handle.open_subscriptions() == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_collection_or_database_ends_with_dropped() {
    let server = TestServer::start().await;
    let handle = server.handle.as_ref().unwrap();
    let client = server.client().await;
    client.create_database("shop").await.unwrap();
    let shop = client.database("shop");
    shop.collection("gone")
        .insert(&json!({ "_key": "g" }))
        .await
        .unwrap(); // 1

    let mut s = Subscriber::login(server.addr).await;
    let coll = s.subscribe(sub_req("gone")).await;
    let whole = s
        .subscribe(wire::SubscribeRequest {
            database: "shop".into(),
            ..sub_req("gone")
        })
        .await;
    let whole_db = s
        .subscribe(wire::SubscribeRequest {
            database: "shop".into(),
            ..sub_req("")
        })
        .await;
    // `coll` follows _system.gone, which never gets a change.
    shop.collection("gone")
        .insert(&json!({ "_key": "h" }))
        .await
        .unwrap(); // 2
    shop.drop_collection("gone").await.unwrap(); // 3: the drop
    shop.collection("kept")
        .insert(&json!({ "_key": "k" }))
        .await
        .unwrap(); // 4

    assert_eq!(s.next_event(&whole).await.sequence, 2);
    assert_end(&s.next_event(&whole).await, "dropped", 3);
    // A whole-database subscription skips the drop and carries on.
    let evs = s.events(&whole_db, 2).await;
    assert_eq!(
        evs.iter()
            .map(|e| (e.sequence, e.collection.as_str()))
            .collect::<Vec<_>>(),
        [(2, "gone"), (4, "kept")]
    );
    client.drop_database("shop").await.unwrap();
    let end = s.next_event(&whole_db).await;
    assert_end(&end, "dropped", 4);
    s.assert_quiet(&coll).await;
    wait_until("only the _system subscription runs", WAIT, || {
        handle.open_subscriptions() == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_get_typed_errors_and_the_connection_serves_on() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .collection("c")
        .insert(&json!({ "n": 1 }))
        .await
        .unwrap();
    let mut s = Subscriber::login(server.addr).await;

    let cases: Vec<(wire::SubscribeRequest, ErrorCode, &[&str])> = vec![
        (
            wire::SubscribeRequest {
                filter: "doc.total >".into(),
                ..sub_req("c")
            },
            ErrorCode::ErrQuery,
            &["invalid subscription filter", "line 1, column 12", "^"],
        ),
        (
            wire::SubscribeRequest {
                filter: "DOCUMENT('c/1') != null".into(),
                ..sub_req("c")
            },
            ErrorCode::ErrQuery,
            &["DOCUMENT() reads the database", "^^^"],
        ),
        (
            wire::SubscribeRequest {
                filter: "other.total > 1".into(),
                ..sub_req("c")
            },
            ErrorCode::ErrQuery,
            &["unknown variable 'other'", "`doc`"],
        ),
        (
            sub_from("c", 2),
            ErrorCode::ErrInvalidArgument,
            &["from_sequence 2 is ahead", "latest change is sequence 1"],
        ),
        (
            wire::SubscribeRequest {
                database: "nope".into(),
                ..sub_req("")
            },
            ErrorCode::ErrNotFound,
            &["nope"],
        ),
        (
            sub_req("bad name!"),
            ErrorCode::ErrInvalidArgument,
            &["collection"],
        ),
        (
            sub_req("_users"),
            ErrorCode::ErrInvalidArgument,
            &["reserved"],
        ),
    ];
    for (req, code, needles) in cases {
        let shown = format!("{req:?}");
        let (_, resp) = s.try_subscribe(req).await;
        assert!(!resp.success, "{shown}: {resp:?}");
        assert!(resp.subscription_id.is_empty());
        let (got, msg) = error_of(&resp.error);
        assert_eq!(got, code, "{shown}: {msg}");
        assert_eq!(resp.error_message, msg);
        for n in needles {
            assert!(msg.contains(n), "{shown}: {msg:?} lacks {n:?}");
        }
    }
    let (_, resp) = s.unsubscribe("").await;
    assert_eq!(error_of(&resp.error).0, ErrorCode::ErrInvalidArgument);
    s.conn.ping_ok(7).await;
    // Nothing was subscribed by the failures: a good one still works.
    let ok = s.subscribe(sub_req("c")).await;
    client
        .collection("c")
        .insert(&json!({ "n": 2 }))
        .await
        .unwrap();
    assert_eq!(s.next_event(&ok).await.sequence, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sequence_replays_the_log_then_goes_live_without_gap_or_duplicate() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let c = client.collection("c");
    for i in 0..10 {
        c.insert(&json!({ "_key": format!("k{i}"), "i": i }))
            .await
            .unwrap();
    }
    let mut s = Subscriber::login(server.addr).await;
    let from_zero = s.subscribe(sub_from("c", 0)).await;
    assert_eq!(from_zero.current_sequence, 10);
    let from_seven = s.subscribe(sub_from("", 7)).await;
    let from_ten = s.subscribe(sub_from("c", 10)).await;
    // Live writes race the replays.
    let writer = tokio::spawn(async move {
        for i in 10..40 {
            c.insert(&json!({ "_key": format!("k{i}"), "i": i }))
                .await
                .unwrap();
        }
    });
    let check = |evs: Vec<wire::ChangeEvent>, first: u64| {
        for (n, ev) in evs.iter().enumerate() {
            let seq = first + n as u64;
            assert_eq!(ev.sequence, seq, "{ev:?}");
            assert_eq!(ev.document_id, format!("k{}", seq - 1));
            assert_eq!(doc_of(ev)["i"], seq - 1);
        }
    };
    check(s.events(&from_zero, 40).await, 1);
    check(s.events(&from_seven, 33).await, 8);
    check(s.events(&from_ten, 30).await, 11);
    writer.await.unwrap();
    for sub in [&from_zero, &from_seven, &from_ten] {
        s.assert_quiet(sub).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_point_older_than_the_retention_fails_clearly() {
    let server = TestServer::start_with(|c| {
        c.subscriptions.change_log_max_bytes = 4096;
        c.subscriptions.prune_interval = Duration::from_millis(50);
    })
    .await;
    let client = server.client().await;
    let docs: Vec<Value> = (0..200)
        .map(|i| json!({ "i": i, "pad": "x".repeat(100) }))
        .collect();
    client.collection("c").insert_many(&docs).await.unwrap();
    let mut s = Subscriber::login(server.addr).await;
    // The prune task runs every 50 ms: wait until it has trimmed the log.
    let deadline = tokio::time::Instant::now() + WAIT;
    let msg = loop {
        let (_, resp) = s.try_subscribe(sub_from("c", 1)).await;
        if !resp.success {
            let (code, msg) = error_of(&resp.error);
            assert_eq!(code, ErrorCode::ErrInvalidArgument, "{msg}");
            break msg;
        }
        s.unsubscribe(&resp.subscription_id).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        msg.contains("from_sequence 1 is older than the change log"),
        "{msg}"
    );
    assert!(msg.contains("oldest retained change is sequence"), "{msg}");
    assert!(msg.contains("subscribe without from_sequence"), "{msg}");
    // 0 replays whatever is retained (the contract), never an error.
    let all = s.subscribe(sub_from("c", 0)).await;
    let first = s.next_event(&all).await;
    assert!(first.sequence > 2, "the oldest retained change: {first:?}");
    // A recent resume point still works: the newest change is always kept.
    let recent = s.subscribe(sub_from("c", 199)).await;
    let ev = s.next_event(&recent).await;
    assert_eq!(ev.sequence, 200);
    assert_eq!(doc_of(&ev)["i"], 199);
    server.shutdown().await;
}

// ---- rolled back writes -----------------------------------------------------------

async fn raw<Req: prost::Message, Resp: prost::Message + Default>(
    client: &Client,
    op: OpCode,
    req: &Req,
) -> Resp {
    client.raw_request(op, req).await.expect("request answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_writes_produce_no_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let c = client.collection("c");
    c.insert(&json!({ "_key": "base", "u": 1 })).await.unwrap(); // 1
    client
        .create_index("c", "by_u", &["u"], IndexOptions::unique())
        .await
        .unwrap();
    let mut s = Subscriber::login(server.addr).await;
    let sub = s.subscribe(sub_req("")).await;

    // A transaction rolled back explicitly.
    let begin: wire::BeginTxResponse =
        raw(&client, OpCode::OpBeginTx, &wire::BeginTxRequest::default()).await;
    assert!(begin.success, "{begin:?}");
    let tx = begin.transaction_id;
    let created: wire::CreateResponse = raw(
        &client,
        OpCode::OpCreate,
        &wire::CreateRequest {
            collection: "c".into(),
            document: br#"{"_key":"rolled-back","u":2}"#.to_vec().into(),
            transaction_id: tx.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(created.success, "{created:?}");
    let rolled: wire::RollbackTxResponse = raw(
        &client,
        OpCode::OpRollbackTx,
        &wire::RollbackTxRequest {
            transaction_id: tx,
            ..Default::default()
        },
    )
    .await;
    assert!(rolled.success, "{rolled:?}");

    // AQL writes that fail part-way (a unique-index violation on the third
    // document) roll back as a whole; so does a bulk insert with a duplicate.
    let q: wire::QueryResponse = raw(
        &client,
        OpCode::OpQuery,
        &wire::QueryRequest {
            aql_query:
                "FOR i IN 1..5 INSERT { _key: CONCAT('q', i), u: i == 3 ? 1 : i + 10 } INTO c"
                    .into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!q.success, "{q:?}");
    let bulk = c
        .insert_many(&[
            json!({ "_key": "b1", "u": 30 }),
            json!({ "_key": "b2", "u": 1 }),
        ])
        .await;
    assert!(bulk.is_err(), "{bulk:?}");

    // A committed transaction, then a marker: exactly these arrive, in order.
    let begin: wire::BeginTxResponse =
        raw(&client, OpCode::OpBeginTx, &wire::BeginTxRequest::default()).await;
    let tx = begin.transaction_id;
    for (key, u) in [("t1", 101), ("t2", 102)] {
        let r: wire::CreateResponse = raw(
            &client,
            OpCode::OpCreate,
            &wire::CreateRequest {
                collection: "c".into(),
                document: format!(r#"{{"_key":"{key}","u":{u}}}"#).into_bytes().into(),
                transaction_id: tx.clone(),
                ..Default::default()
            },
        )
        .await;
        assert!(r.success, "{r:?}");
    }
    let committed: wire::CommitTxResponse = raw(
        &client,
        OpCode::OpCommitTx,
        &wire::CommitTxRequest {
            transaction_id: tx,
            ..Default::default()
        },
    )
    .await;
    assert!(committed.success, "{committed:?}");
    c.insert(&json!({ "_key": "marker", "u": 103 }))
        .await
        .unwrap();

    let evs = s.events(&sub, 3).await;
    assert_eq!(
        evs.iter()
            .map(|e| (e.sequence, e.document_id.as_str()))
            .collect::<Vec<_>>(),
        [(2, "t1"), (3, "t2"), (4, "marker")],
        "nothing of the rolled-back writes, no gap in the sequence"
    );
    s.assert_quiet(&sub).await;
    server.shutdown().await;
}

// ---- slow and absent readers ------------------------------------------------------

/// `n` documents of about `pad` bytes each, numbered from `first`.
fn padded_docs(first: u64, n: u64, pad: usize) -> Vec<Value> {
    (first..first + n)
        .map(|i| json!({ "_key": format!("d{i}"), "i": i, "pad": "p".repeat(pad) }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_gets_lagged_and_resumes_without_gap() {
    const N: u64 = 12_000;
    let server = TestServer::start_with(|c| {
        c.subscriptions.buffer_events = 16;
        c.wire.max_in_flight = 4;
    })
    .await;
    let client = server.client().await;
    let mut s = Subscriber::login(server.addr).await;
    let sub = s.subscribe(sub_req("c")).await;
    // Far more than the socket buffers, the connection's event budget and the
    // subscription's 16 queued changes hold, written while nobody reads.
    let c = client.collection("c");
    for first in (0..N).step_by(1000) {
        c.insert_many(&padded_docs(first, 1000, 2000))
            .await
            .unwrap();
    }
    // Requests on the stalled connection still get answers, behind the events
    // already queued: events hold no request permits (max_in_flight is 4 here).
    for rid in 500..508 {
        s.conn
            .send(OpCode::OpPing, rid, &wire::Ping { timestamp_ms: rid })
            .await;
    }
    let mut seen = 0u64;
    let resume = loop {
        let ev = s.next_event(&sub).await;
        if kind_of(&ev) == ChangeKind::End {
            assert_eq!(ev.end_reason, "lagged", "{ev:?}");
            break ev.resume_sequence;
        }
        seen += 1;
        assert_eq!(ev.sequence, seen, "contiguous up to the END");
        assert_eq!(doc_of(&ev)["i"], seen - 1);
    };
    assert_eq!(resume, seen, "resume from the last change delivered");
    assert!(
        seen < N,
        "the subscriber lagged (saw {seen} of {N} before END)"
    );
    for rid in 500..508 {
        while !s.responses.contains_key(&rid) {
            s.pump().await;
        }
        let pong: wire::Pong = s.responses.remove(&rid).unwrap().decode();
        assert_eq!(pong.timestamp_ms, rid);
    }

    let again = s.subscribe(sub_from("c", resume)).await;
    assert_eq!(again.current_sequence, N);
    for seq in resume + 1..=N {
        let ev = s.next_event(&again).await;
        assert_eq!(ev.sequence, seq, "exactly the missing changes");
        assert_eq!(doc_of(&ev)["i"], seq - 1);
    }
    c.insert(&json!({ "_key": "after" })).await.unwrap();
    let live = s.next_event(&again).await;
    assert_eq!((live.sequence, live.document_id.as_str()), (N + 1, "after"));
    s.assert_quiet(&again).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_bounded_with_subscribers_that_never_read() {
    // The storage engine's memory grows by some 250 MiB over the first ~120 MB
    // written (its memtables), then stays flat; measure after that.
    const WARMUP: u64 = 120_000;
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let client = Client::connect(&server.url()).await.unwrap();
    let c = client.collection("c");
    for first in (0..WARMUP).step_by(2000) {
        c.insert_many(&padded_docs(first, 2000, 1000))
            .await
            .unwrap();
    }
    let warm = server.rss_kib();
    // Subscriptions that never read: whole-database ones and a filtered one.
    let mut sleeper = Subscriber::login(server.addr).await;
    let mut subs = Vec::new();
    for filter in ["", "", "", "", "", "", "", "doc.i % 2 == 0"] {
        subs.push(
            sleeper
                .subscribe(wire::SubscribeRequest {
                    filter: filter.into(),
                    ..sub_req("")
                })
                .await,
        );
    }
    let baseline = server.rss_kib();
    let mut peak = baseline;
    for first in (WARMUP..WARMUP + N).step_by(1000) {
        c.insert_many(&padded_docs(first, 1000, 1000))
            .await
            .unwrap();
        peak = peak.max(server.rss_kib());
    }
    eprintln!(
        "{N} changes of ~1 KiB, {} subscriptions that never read: server RSS {warm} KiB \
         after warm-up, {baseline} KiB -> peak {peak} KiB",
        subs.len()
    );
    // Queued for the sleeper, the changes would take ~65 MiB per subscription, some
    // 490 MiB for these 8. What may be held is each subscription's buffer_events
    // (1024) changes, the connection's 1 MiB event budget and the socket buffers: a
    // few MiB. The rest of the growth is the storage engine's memtables filling and
    // being flushed: with mimalloc, which hands freed memory back to the system, the
    // server's RSS rises and falls by up to ~130 MiB as they do.
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 200,
        "server RSS grew by {growth_mib} MiB (from {baseline} KiB to {peak} KiB)"
    );
    // Every sleeper, once it reads, learns that it lagged and where to resume.
    for sub in &subs {
        let resume = loop {
            let ev = sleeper.next_event(sub).await;
            if kind_of(&ev) == ChangeKind::End {
                assert_eq!(ev.end_reason, "lagged", "{ev:?}");
                break ev.resume_sequence;
            }
        };
        assert!((WARMUP..WARMUP + N).contains(&resume), "{resume}");
    }
    sleeper.conn.ping_ok(5).await;
}

// ---- acceptance: writers, subscribers, kill -9 ------------------------------------

/// One change as a subscriber saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sequence: u64,
    kind: ChangeKind,
    collection: String,
    key: String,
    revision: String,
}

impl Seen {
    fn of(ev: &wire::ChangeEvent) -> Self {
        Seen {
            sequence: ev.sequence,
            kind: kind_of(ev),
            collection: ev.collection.clone(),
            key: ev.document_id.clone(),
            revision: ev.revision.clone(),
        }
    }
}

/// A write the server acknowledged.
#[derive(Debug, Clone)]
enum Ack {
    /// `rev` is `None` for a bulk insert (its answer has keys only).
    Insert {
        coll: &'static str,
        key: String,
        rev: Option<String>,
    },
    Update {
        coll: &'static str,
        key: String,
        rev: String,
    },
    Delete {
        coll: &'static str,
        key: String,
    },
}

type SharedAddr = Arc<Mutex<SocketAddr>>;

fn current(addr: &SharedAddr) -> SocketAddr {
    *addr.lock().unwrap()
}

/// A client of whichever server is running now; waits through a restart.
async fn connect_client(addr: &SharedAddr) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("themis://root:{}@{}", common::ROOT_PASSWORD, current(addr));
        if let Ok(c) = Client::connect(&url).await {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Inserts, updates, deletes, rolled-back transactions and failing AQL writes, `ops`
/// of them; returns what was acknowledged. Any failure (the server being killed) makes
/// the write's outcome unknown: its key is not touched again.
async fn writer(w: usize, ops: usize, addr: SharedAddr, progress: Arc<Mutex<usize>>) -> Vec<Ack> {
    let mut acks = Vec::new();
    let mut live: Vec<(&'static str, String)> = Vec::new();
    let mut client: Option<Client> = None;
    for i in 0..ops {
        let c = match &client {
            Some(c) => c.clone(),
            None => {
                let c = connect_client(&addr).await;
                client = Some(c.clone());
                c
            }
        };
        let ok = match i % 10 {
            4 if i % 40 == 4 => {
                // A burst: 100 larger documents in one request.
                let docs: Vec<Value> = (0..100)
                    .map(|j| json!({ "_key": format!("w{w}-{i}-{j}"), "grp": j % 3, "pad": "y".repeat(2000) }))
                    .collect();
                match c.collection("c1").insert_many(&docs).await {
                    Ok(keys) => {
                        for key in keys {
                            acks.push(Ack::Insert {
                                coll: "c1",
                                key: key.clone(),
                                rev: None,
                            });
                            live.push(("c1", key));
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
            0..=4 => {
                let coll = if i % 2 == 0 { "c1" } else { "c2" };
                let key = format!("w{w}-{i}");
                let doc = json!({ "_key": key, "grp": i % 3, "n": i, "pad": "x".repeat(300) });
                match c.collection(coll).insert(&doc).await {
                    Ok(meta) => {
                        assert_eq!(meta.key, key);
                        acks.push(Ack::Insert {
                            coll,
                            key: key.clone(),
                            rev: Some(meta.rev),
                        });
                        live.push((coll, key));
                        true
                    }
                    Err(_) => false,
                }
            }
            5 | 6 if !live.is_empty() => {
                let (coll, key) = live[i % live.len()].clone();
                match c
                    .collection(coll)
                    .update(&key, &json!({ "n": i, "touched": true }))
                    .await
                {
                    Ok(meta) => {
                        acks.push(Ack::Update {
                            coll,
                            key,
                            rev: meta.rev,
                        });
                        true
                    }
                    Err(_) => {
                        live.retain(|(_, k)| *k != key);
                        false
                    }
                }
            }
            7 if !live.is_empty() => {
                let (coll, key) = live.swap_remove(i % live.len());
                match c.collection(coll).delete(&key).await {
                    Ok(deleted) => {
                        assert!(deleted, "{key} was live");
                        acks.push(Ack::Delete { coll, key });
                        true
                    }
                    Err(_) => false,
                }
            }
            8 => {
                // A transaction that writes, then rolls back.
                let begin = c
                    .raw_request::<_, wire::BeginTxResponse>(
                        OpCode::OpBeginTx,
                        &wire::BeginTxRequest::default(),
                    )
                    .await;
                match begin {
                    Ok(b) if b.success => {
                        let doc = format!(r#"{{"_key":"rb-w{w}-{i}","grp":0}}"#);
                        let create = wire::CreateRequest {
                            collection: "c1".into(),
                            document: doc.into_bytes().into(),
                            transaction_id: b.transaction_id.clone(),
                            ..Default::default()
                        };
                        let created = c
                            .raw_request::<_, wire::CreateResponse>(OpCode::OpCreate, &create)
                            .await;
                        let rollback = wire::RollbackTxRequest {
                            transaction_id: b.transaction_id,
                            ..Default::default()
                        };
                        let rolled = c
                            .raw_request::<_, wire::RollbackTxResponse>(
                                OpCode::OpRollbackTx,
                                &rollback,
                            )
                            .await;
                        created.is_ok() && rolled.is_ok()
                    }
                    _ => false,
                }
            }
            9 => {
                // An AQL write that fails on its third document: nothing of it stays.
                let aql = format!(
                    "FOR k IN ['rbq-w{w}-{i}-a', 'rbq-w{w}-{i}-b', 'anchor'] INSERT {{ _key: k, grp: 0 }} INTO c1"
                );
                let q = wire::QueryRequest {
                    aql_query: aql,
                    ..Default::default()
                };
                match c
                    .raw_request::<_, wire::QueryResponse>(OpCode::OpQuery, &q)
                    .await
                {
                    Ok(r) => {
                        assert!(!r.success, "the conflicting AQL insert succeeded");
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => true,
        };
        if !ok {
            client = None;
        }
        *progress.lock().unwrap() += 1;
    }
    acks
}

/// What a subscriber follows and how it reads.
#[derive(Clone)]
struct Follow {
    collection: &'static str,
    filter: &'static str,
    /// Reads with a small socket buffer, sleeps per event and pauses now and then.
    slow: bool,
}

/// What a subscriber recorded.
struct Recorded {
    seen: Vec<Seen>,
    lagged: usize,
    reconnects: usize,
}

async fn connect_subscriber(addr: SocketAddr, slow: bool) -> std::io::Result<RawConn> {
    if !slow {
        return RawConn::try_connect(addr).await;
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(8 * 1024)?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(RawConn::from_stream(stream))
}

/// Follows the change feed from sequence 0 until it sees the document `marker`,
/// resuming from its last sequence after `END lagged` and after reconnecting to a
/// restarted server. Panics on a duplicate or out-of-order sequence, and on a resume
/// point the server does not know (a change seen, then lost).
async fn subscriber(follow: Follow, addr: SharedAddr) -> Recorded {
    let mut rec = Recorded {
        seen: Vec::new(),
        lagged: 0,
        reconnects: 0,
    };
    let mut last = 0u64;
    let mut since_pause = 0usize;
    loop {
        let Ok(mut conn) = connect_subscriber(current(&addr), follow.slow).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        rec.reconnects += 1;
        let hs = wire::HandshakeRequest {
            protocol_version: "1.0".into(),
            username: "root".into(),
            password: common::ROOT_PASSWORD.into(),
            ..Default::default()
        };
        if conn.try_send(OpCode::OpHandshake, 1, &hs).await.is_err() {
            continue;
        }
        match conn.try_recv_within(WAIT).await {
            Ok(Some(f)) if f.op() == OpCode::OpHandshake => {
                let resp: wire::HandshakeResponse = f.decode();
                assert!(resp.success, "{resp:?}");
            }
            _ => continue,
        }
        let mut rid = 10;
        'subscribe: loop {
            rid += 1;
            let req = wire::SubscribeRequest {
                collection: follow.collection.into(),
                filter: follow.filter.into(),
                from_sequence: Some(last),
                include_documents: follow.slow,
                ..Default::default()
            };
            if conn.try_send(OpCode::OpSubscribe, rid, &req).await.is_err() {
                break 'subscribe;
            }
            loop {
                let f = match conn.try_recv_within(WAIT).await {
                    Ok(Some(f)) => f,
                    _ => break 'subscribe,
                };
                match f.op() {
                    OpCode::OpSubscribe => {
                        assert_eq!(f.request_id, rid);
                        let resp: wire::SubscribeResponse = f.decode();
                        assert!(
                            resp.success,
                            "resuming from {last} failed (a change seen, then lost?): {resp:?}"
                        );
                        assert!(resp.current_sequence >= last);
                    }
                    OpCode::OpEvent => {
                        assert_eq!(f.request_id, rid, "an event of an ended subscription");
                        let ev: wire::ChangeEvent = f.decode();
                        if kind_of(&ev) == ChangeKind::End {
                            assert_eq!(ev.end_reason, "lagged", "{ev:?}");
                            assert!(ev.resume_sequence >= last, "{ev:?} after {last}");
                            last = ev.resume_sequence;
                            rec.lagged += 1;
                            continue 'subscribe;
                        }
                        assert!(
                            ev.sequence > last,
                            "{ev:?} after {last}: duplicate or reordered"
                        );
                        last = ev.sequence;
                        rec.seen.push(Seen::of(&ev));
                        if ev.document_id == "marker" {
                            return rec;
                        }
                        if follow.slow {
                            since_pause += 1;
                            if since_pause % 1500 == 0 {
                                tokio::time::sleep(Duration::from_millis(1500)).await;
                            }
                        }
                    }
                    OpCode::OpGoaway | OpCode::OpError => break 'subscribe,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_survives_kill_9_with_no_gap_duplicate_or_phantom() {
    const WRITERS: usize = 2;
    const OPS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("THEMIS_SUBSCRIPTIONS_BUFFER_EVENTS", "32")];
    let mut server = ServerProcess::start(&data, &env);
    let addr: SharedAddr = Arc::new(Mutex::new(server.addr));
    let setup = connect_client(&addr).await;
    setup
        .collection("c1")
        .insert(&json!({ "_key": "anchor", "grp": 1 }))
        .await
        .unwrap();

    let follows = [
        Follow {
            collection: "",
            filter: "",
            slow: false,
        },
        Follow {
            collection: "",
            filter: "doc.grp == 0",
            slow: false,
        },
        Follow {
            collection: "c1",
            filter: "",
            slow: true,
        },
    ];
    let subscribers: Vec<_> = follows
        .iter()
        .map(|f| tokio::spawn(subscriber(f.clone(), addr.clone())))
        .collect();
    let progress = Arc::new(Mutex::new(0usize));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, OPS, addr.clone(), progress.clone())))
        .collect();

    // Mid-run: kill -9, restart on the same data.
    wait_until("the writers are half-way", Duration::from_secs(120), || {
        *progress.lock().unwrap() >= WRITERS * OPS / 2
    })
    .await;
    server.signal(libc::SIGKILL);
    server.wait(Duration::from_secs(10));
    server = ServerProcess::start(&data, &env);
    *addr.lock().unwrap() = server.addr;

    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.await.unwrap());
    }
    let client = connect_client(&addr).await;
    loop {
        let marker = json!({ "_key": "marker", "grp": 0 });
        match client.collection("c1").insert(&marker).await {
            Ok(_) => break,
            Err(e) => assert!(e.is_connection_error(), "{e}"),
        }
    }
    let mut recorded = Vec::new();
    for s in subscribers {
        recorded.push(
            tokio::time::timeout(Duration::from_secs(120), s)
                .await
                .expect("every subscriber reaches the marker")
                .unwrap(),
        );
    }

    // The committed history: the whole log, replayed from sequence 0.
    let mut h = Subscriber::login(server.addr).await;
    let all = h.subscribe(sub_from("", 0)).await;
    let mut history = Vec::new();
    let mut group: BTreeMap<String, i64> = BTreeMap::new();
    for seq in 1..=all.current_sequence {
        let ev = h.next_event(&all).await;
        assert_eq!(ev.sequence, seq, "the log has no gap");
        if kind_of(&ev) == ChangeKind::Insert {
            let grp = doc_of(&ev)["grp"].as_i64().expect("grp");
            assert!(
                group.insert(ev.document_id.clone(), grp).is_none(),
                "{ev:?}"
            );
        }
        history.push(Seen::of(&ev));
    }
    assert_eq!(history.last().map(|s| s.key.as_str()), Some("marker"));

    // Nothing rolled back is in it; everything acknowledged is.
    for s in &history {
        assert!(
            !s.key.starts_with("rb"),
            "a rolled-back write committed: {s:?}"
        );
    }
    let has = |kind: ChangeKind, coll: &str, key: &str, rev: Option<&str>| {
        history.iter().any(|s| {
            s.kind == kind
                && s.collection == coll
                && s.key == key
                && rev.is_none_or(|r| s.revision == r)
        })
    };
    for a in &acks {
        let found = match a {
            Ack::Insert { coll, key, rev } => has(ChangeKind::Insert, coll, key, rev.as_deref()),
            Ack::Update { coll, key, rev } => has(ChangeKind::Update, coll, key, Some(rev)),
            Ack::Delete { coll, key } => has(ChangeKind::Delete, coll, key, None),
        };
        assert!(found, "acknowledged but not in the change log: {a:?}");
    }

    // Each subscriber saw exactly the history its subscription selects.
    for (follow, rec) in follows.iter().zip(&recorded) {
        let expected: Vec<Seen> = history
            .iter()
            .filter(|s| follow.collection.is_empty() || s.collection == follow.collection)
            .filter(|s| follow.filter.is_empty() || group.get(&s.key) == Some(&0))
            .cloned()
            .collect();
        let name = format!(
            "collection {:?} filter {:?}",
            follow.collection, follow.filter
        );
        assert_eq!(rec.seen.len(), expected.len(), "{name}: number of events");
        for (got, want) in rec.seen.iter().zip(&expected) {
            assert_eq!(got, want, "{name}");
        }
        eprintln!(
            "{name}: {} events, {} connections, {} lagged",
            rec.seen.len(),
            rec.reconnects,
            rec.lagged
        );
        assert!(rec.reconnects >= 2, "{name} reconnected after the kill");
    }
    eprintln!(
        "history: {} changes, {} acknowledged writes",
        history.len(),
        acks.len()
    );
}

/// One commit with more changes than a subscription's queue holds, to a subscriber
/// that keeps reading: no `END lagged`, the subscription catches up from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_buffer_does_not_lag_a_reading_subscriber() {
    let server = TestServer::start_with(|c| c.subscriptions.buffer_events = 8).await;
    let client = server.client().await;
    let mut s = Subscriber::login(server.addr).await;
    let sub = s.subscribe(sub_req("burst")).await;
    let docs: Vec<Value> = (0..200).map(|i| json!({ "i": i })).collect();
    client.collection("burst").insert_many(&docs).await.unwrap();
    client
        .collection("burst")
        .insert(&json!({ "after": true }))
        .await
        .unwrap();
    let evs = s.events(&sub, 201).await;
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(kind_of(ev), ChangeKind::Insert, "{ev:?}");
        assert_eq!(ev.sequence, sub.current_sequence + 1 + i as u64, "{ev:?}");
    }
    s.assert_quiet(&sub).await;
    server.shutdown().await;
}
