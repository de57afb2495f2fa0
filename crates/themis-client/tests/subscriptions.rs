//! Subscriptions against the scripted in-test peer (see `support`): typed events,
//! defensive dedupe, and every way a subscription resumes or ends — `END lagged`,
//! client-side overflow, EOF, GOAWAY, session resume refused, resume point too old,
//! reconnect attempts used up, unsubscribe, drop — which a real server cannot be made
//! to do on demand. The change feed itself is the server's, tested end to end there.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use support::{connect, fast_retry, finished, listen, serve, Peer, NO_HANG, TOKEN};
use themis_client::{
    wire, ChangeEvent, ChangeKind, Client, ClientOptions, ErrorCode, ErrorKind, OpCode,
    SubscribeOptions, Subscription,
};
use themis_proto::envelope::Request;
use themis_proto::{ErrorExt, TypedResponse};
use tokio::time::timeout;

/// Reads a SUBSCRIBE and accepts it as `subscription_id`. Returns its request id
/// (which the events carry) and the request.
async fn accept_subscribe(
    peer: &mut Peer,
    subscription_id: &str,
    current_sequence: u64,
) -> (u64, wire::SubscribeRequest) {
    let (rid, request) = peer.request().await;
    let Request::Subscribe(subscribe) = request else {
        panic!("expected SUBSCRIBE, got {request:?}");
    };
    let response = wire::SubscribeResponse {
        success: true,
        subscription_id: subscription_id.into(),
        current_sequence,
        ..Default::default()
    };
    peer.send(OpCode::OpSubscribe, rid, &response).await;
    (rid, subscribe)
}

fn change(sequence: u64, kind: wire::ChangeKind) -> wire::ChangeEvent {
    let document = match kind {
        wire::ChangeKind::Delete => Bytes::new(),
        _ => Bytes::from(format!(r#"{{"_key":"k{sequence}","total":{sequence}}}"#)),
    };
    wire::ChangeEvent {
        subscription_id: "sub".into(),
        sequence,
        kind: kind as i32,
        collection: "orders".into(),
        document_id: format!("k{sequence}"),
        document,
        revision: format!("_r{sequence}"),
        timestamp_ms: 1_700_000_000_000 + sequence,
        ..Default::default()
    }
}

fn end(reason: &str, resume_sequence: u64) -> wire::ChangeEvent {
    wire::ChangeEvent {
        subscription_id: "sub".into(),
        kind: wire::ChangeKind::End as i32,
        end_reason: reason.into(),
        resume_sequence,
        ..Default::default()
    }
}

/// Sends insert events for `sequences` on request `rid`.
async fn inserts(peer: &mut Peer, rid: u64, sequences: impl IntoIterator<Item = u64>) {
    for sequence in sequences {
        peer.send(
            OpCode::OpEvent,
            rid,
            &change(sequence, wire::ChangeKind::Insert),
        )
        .await;
    }
}

async fn read_unsubscribe(peer: &mut Peer) -> (u64, String) {
    let (rid, request) = peer.request().await;
    let Request::Unsubscribe(unsubscribe) = request else {
        panic!("expected UNSUBSCRIBE, got {request:?}");
    };
    (rid, unsubscribe.subscription_id)
}

async fn answer_unsubscribe(peer: &mut Peer, rid: u64) {
    let response = wire::UnsubscribeResponse {
        success: true,
        ..Default::default()
    };
    peer.send(OpCode::OpUnsubscribe, rid, &response).await;
}

/// Everything the subscription yields until it ends, bounded in time.
async fn drain(sub: &mut Subscription) -> Vec<themis_client::Result<ChangeEvent>> {
    timeout(NO_HANG, sub.collect::<Vec<_>>())
        .await
        .expect("the subscription ends")
}

fn sequences(items: &[themis_client::Result<ChangeEvent>]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i.as_ref().expect("an event").sequence)
        .collect()
}

#[tokio::test]
async fn events_are_typed_in_order_and_repeats_are_skipped() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, request) = accept_subscribe(&mut peer, "sub-1", 10).await;
        assert_eq!(request.collection, "orders");
        assert_eq!(request.filter, "doc.total > 1");
        assert!(request.include_documents);
        assert_eq!(request.from_sequence, None);
        assert_eq!(request.database, "shop");
        peer.send(OpCode::OpEvent, rid, &change(11, wire::ChangeKind::Insert))
            .await;
        peer.send(OpCode::OpEvent, rid, &change(12, wire::ChangeKind::Update))
            .await;
        // Repeats (a server bug) are skipped, not delivered twice.
        peer.send(OpCode::OpEvent, rid, &change(12, wire::ChangeKind::Update))
            .await;
        peer.send(OpCode::OpEvent, rid, &change(11, wire::ChangeKind::Insert))
            .await;
        peer.send(OpCode::OpEvent, rid, &change(13, wire::ChangeKind::Delete))
            .await;
        peer.send(OpCode::OpEvent, rid, &end("dropped", 13)).await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let mut sub = client
        .database("shop")
        .subscribe(
            SubscribeOptions::collection("orders")
                .filter("doc.total > 1")
                .include_documents(true),
        )
        .await
        .expect("subscribe");
    assert_eq!(sub.current_sequence_at_start(), 10);
    assert_eq!(
        sub.last_sequence(),
        10,
        "from now: starts after the current"
    );
    let events: Vec<ChangeEvent> = timeout(NO_HANG, (&mut sub).try_collect())
        .await
        .expect("ends")
        .expect("no error");
    assert_eq!(sub.last_sequence(), 13);
    let seen: Vec<(u64, ChangeKind, &str)> = events
        .iter()
        .map(|e| (e.sequence, e.kind, e.key.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (11, ChangeKind::Insert, "k11"),
            (12, ChangeKind::Update, "k12"),
            (13, ChangeKind::Delete, "k13")
        ]
    );
    #[derive(Deserialize, Debug, PartialEq)]
    struct Order {
        total: u64,
    }
    assert_eq!(
        events[0].document_as::<Order>().unwrap(),
        Some(Order { total: 11 })
    );
    assert_eq!(events[0].collection, "orders");
    assert_eq!(events[0].revision, "_r11");
    assert_eq!(events[0].timestamp_ms, 1_700_000_000_011);
    assert_eq!(events[2].document, None, "a delete carries no document");
    assert!(sub.next().await.is_none(), "stays ended");
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn lagged_subscription_resumes_from_the_last_delivered_sequence() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, first) = accept_subscribe(&mut peer, "sub-1", 0).await;
        inserts(&mut peer, rid, 1..=3).await;
        peer.send(OpCode::OpEvent, rid, &end("lagged", 3)).await;
        let (rid, again) = accept_subscribe(&mut peer, "sub-2", 5).await;
        assert_eq!(again.from_sequence, Some(3));
        assert_eq!(
            wire::SubscribeRequest {
                from_sequence: None,
                ..again
            },
            first,
            "the same subscription otherwise"
        );
        inserts(&mut peer, rid, 3..=5).await;
        peer.send(OpCode::OpEvent, rid, &end("dropped", 5)).await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database())
        .await
        .expect("subscribe");
    // Consumed on another task: a Subscription is Send.
    let (mut sub, items) = tokio::spawn(async move {
        let items = drain(&mut sub).await;
        (sub, items)
    })
    .await
    .expect("task");
    assert_eq!(sequences(&items), [1, 2, 3, 4, 5]);
    assert!(sub.next().await.is_none());
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn overflowing_the_client_buffer_unsubscribes_and_resumes_without_a_gap() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, _) = accept_subscribe(&mut peer, "sub-1", 0).await;
        inserts(&mut peer, rid, 1..=6).await;
        let (unsub_rid, id) = read_unsubscribe(&mut peer).await;
        assert_eq!(id, "sub-1");
        // The old subscription's last frames go to a request nobody waits for.
        inserts(&mut peer, rid, 7..=8).await;
        peer.send(OpCode::OpEvent, rid, &end("unsubscribed", 8))
            .await;
        answer_unsubscribe(&mut peer, unsub_rid).await;
        let (rid, again) = accept_subscribe(&mut peer, "sub-2", 8).await;
        assert_eq!(again.from_sequence, Some(2), "after the last delivered");
        // Within the buffer this time (and the final END always fits).
        inserts(&mut peer, rid, 3..=4).await;
        peer.send(OpCode::OpEvent, rid, &end("dropped", 8)).await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::collection("orders").buffer(2))
        .await
        .expect("subscribe");
    // The overflow drops the stream's registration: wait for it without reading.
    timeout(NO_HANG, async {
        while client.in_flight_requests() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("overflow");
    let items = drain(&mut sub).await;
    assert_eq!(sequences(&items), [1, 2, 3, 4]);
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn lost_connection_reconnects_with_the_session_token_and_resumes() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        let hs = first.handshake().await;
        assert_eq!(
            (hs.username.as_str(), hs.password.as_str()),
            ("root", "secret")
        );
        let (rid, _) = accept_subscribe(&mut first, "sub-1", 0).await;
        inserts(&mut first, rid, 1..=2).await;
        drop(first);

        let mut second = Peer::accept(&listener).await;
        let hs = second.handshake().await;
        assert_eq!(hs.session_token, TOKEN, "resumes the session");
        assert!(hs.password.is_empty(), "no credentials when resuming");
        assert_eq!(hs.database, "shop");
        let (rid, again) = accept_subscribe(&mut second, "sub-2", 3).await;
        assert_eq!(again.from_sequence, Some(2));
        inserts(&mut second, rid, 3..=3).await;
        second.send(OpCode::OpEvent, rid, &end("dropped", 3)).await;
        assert!(second.read().await.is_none());
    });
    let options = ClientOptions {
        username: "root".into(),
        password: "secret".into(),
        database: Some("shop".into()),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&addr, options).await.expect("connect");
    let mut sub = client
        .subscribe(SubscribeOptions::database().reconnect(fast_retry(5)))
        .await
        .expect("subscribe");
    let items = drain(&mut sub).await;
    assert_eq!(sequences(&items), [1, 2, 3]);
    assert_eq!(
        client.pool_stats().connections_created,
        2,
        "the subscription resumed on the pool's one new connection"
    );
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn refused_session_resume_falls_back_to_credentials() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        first.handshake().await;
        let (rid, _) = accept_subscribe(&mut first, "sub-1", 0).await;
        inserts(&mut first, rid, 1..=1).await;
        drop(first);

        let mut second = Peer::accept(&listener).await;
        let (id, request) = second.request().await;
        let Request::Handshake(hs) = request else {
            panic!("expected a handshake, got {request:?}");
        };
        assert_eq!(hs.session_token, TOKEN);
        let expired = wire::Error::new(
            ErrorCode::ErrAuthFailed,
            "session token unknown or expired: handshake again with credentials",
        );
        second
            .send(
                OpCode::OpHandshake,
                id,
                &wire::HandshakeResponse::failed(expired),
            )
            .await;
        assert!(second.read().await.is_none(), "that connection is given up");

        let mut third = Peer::accept(&listener).await;
        let hs = third.handshake().await;
        assert!(hs.session_token.is_empty());
        assert_eq!(
            (hs.username.as_str(), hs.password.as_str()),
            ("root", "secret")
        );
        let (rid, again) = accept_subscribe(&mut third, "sub-2", 1).await;
        assert_eq!(again.from_sequence, Some(1));
        inserts(&mut third, rid, 2..=2).await;
        third.send(OpCode::OpEvent, rid, &end("dropped", 2)).await;
        assert!(third.read().await.is_none());
    });
    let client = Client::connect(&format!("themis://root:secret@{addr}"))
        .await
        .expect("connect");
    let mut sub = client
        .subscribe(SubscribeOptions::database().reconnect(fast_retry(5)))
        .await
        .expect("subscribe");
    let items = drain(&mut sub).await;
    assert_eq!(sequences(&items), [1, 2]);
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn goaway_moves_the_subscription_to_a_new_connection_at_once() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        first.handshake().await;
        let (rid, _) = accept_subscribe(&mut first, "sub-1", 0).await;
        inserts(&mut first, rid, 1..=1).await;
        let goaway = wire::GoAway {
            reason: "shutdown".into(),
            reconnect_after_ms: 0,
        };
        first.send(OpCode::OpGoaway, 0, &goaway).await;
        // The first connection stays open: the client does not wait for its close.
        let mut second = Peer::accept(&listener).await;
        second.handshake().await;
        let (rid, again) = accept_subscribe(&mut second, "sub-2", 1).await;
        assert_eq!(again.from_sequence, Some(1));
        inserts(&mut second, rid, 2..=2).await;
        second.send(OpCode::OpEvent, rid, &end("dropped", 2)).await;
        assert!(second.read().await.is_none());
        drop(first);
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database().reconnect(fast_retry(5)))
        .await
        .expect("subscribe");
    let items = drain(&mut sub).await;
    assert_eq!(sequences(&items), [1, 2]);
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn a_resume_point_the_server_no_longer_has_is_an_error_then_the_end() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, _) = accept_subscribe(&mut peer, "sub-1", 0).await;
        inserts(&mut peer, rid, 1..=1).await;
        peer.send(OpCode::OpEvent, rid, &end("lagged", 1)).await;
        let (rid, request) = peer.request().await;
        assert!(matches!(request, Request::Subscribe(ref s) if s.from_sequence == Some(1)));
        let too_old = wire::Error::new(
            ErrorCode::ErrInvalidArgument,
            "from_sequence 1 is older than the retained change log (oldest 500): subscribe without from_sequence",
        );
        peer.send(
            OpCode::OpSubscribe,
            rid,
            &wire::SubscribeResponse::failed(too_old),
        )
        .await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database())
        .await
        .expect("subscribe");
    let mut items = drain(&mut sub).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let err = items.pop().unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ErrInvalidArgument));
    assert!(err.to_string().contains("older than the retained"), "{err}");
    assert_eq!(sequences(&items), [1]);
    assert_eq!(sub.last_sequence(), 1, "where to pick up by other means");
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn reconnecting_gives_up_after_the_policy_with_the_last_error() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.handshake().await;
        let (rid, _) = accept_subscribe(&mut peer, "sub-1", 0).await;
        inserts(&mut peer, rid, 1..=1).await;
        // Nobody listens any more: every reconnect is refused.
        drop(listener);
        drop(peer);
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database().reconnect(fast_retry(3)))
        .await
        .expect("subscribe");
    let mut items = drain(&mut sub).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let err = items.pop().unwrap().unwrap_err();
    // The last attempt waited acquire_timeout for a connection the address refuses.
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert_eq!(sequences(&items), [1]);
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn unsubscribe_delivers_what_was_in_flight_then_ends() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, _) = accept_subscribe(&mut peer, "sub-1", 0).await;
        inserts(&mut peer, rid, 1..=1).await;
        let (unsub_rid, id) = read_unsubscribe(&mut peer).await;
        assert_eq!(id, "sub-1");
        inserts(&mut peer, rid, 2..=2).await;
        peer.send(OpCode::OpEvent, rid, &end("unsubscribed", 2))
            .await;
        answer_unsubscribe(&mut peer, unsub_rid).await;
        // Ended by unsubscribing: dropping it sends nothing more.
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database())
        .await
        .expect("subscribe");
    let first = timeout(NO_HANG, sub.try_next()).await.expect("no hang");
    assert_eq!(first.expect("ok").expect("event").sequence, 1);
    sub.unsubscribe().await.expect("unsubscribe");
    let rest = drain(&mut sub).await;
    assert_eq!(sequences(&rest), [2]);
    sub.unsubscribe().await.expect("again: nothing to do");
    drop((sub, client));
    finished(peer).await;
}

#[tokio::test]
async fn dropping_a_live_subscription_unsubscribes() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        accept_subscribe(&mut peer, "sub-1", 0).await;
        let (rid, id) = read_unsubscribe(&mut peer).await;
        assert_eq!(id, "sub-1");
        answer_unsubscribe(&mut peer, rid).await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let sub = client
        .subscribe(SubscribeOptions::database())
        .await
        .expect("subscribe");
    drop(sub);
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn a_refused_subscribe_is_an_error_and_leaves_nothing_behind() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (rid, _) = peer.request().await;
        let missing = wire::Error::new(
            ErrorCode::ErrNotFound,
            "collection 'nope' not found: create it first",
        );
        peer.send(
            OpCode::OpSubscribe,
            rid,
            &wire::SubscribeResponse::failed(missing),
        )
        .await;
        assert!(peer.read().await.is_none());
    });
    let client = connect(&addr).await;
    let err = client
        .subscribe(SubscribeOptions::collection("nope"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(client.in_flight_requests(), 0);
    drop(client);
    finished(peer).await;
}

#[tokio::test]
async fn a_quiet_subscription_keeps_its_connection_alive() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        // Idle timeout 300 ms: without pings (every 100 ms) the server would close
        // this quiet connection.
        peer.handshake_with_idle_timeout(300).await;
        let (rid, _) = accept_subscribe(&mut peer, "sub-1", 0).await;
        for _ in 0..3 {
            let (id, ts) = peer.read_ping().await;
            peer.pong(id, ts).await;
        }
        peer.send(OpCode::OpEvent, rid, &end("dropped", 0)).await;
        // Until the client closes: the pool's own keep-alive may ping meanwhile.
        while let Some((id, request)) = peer.read().await {
            let Request::Ping(ping) = request else {
                panic!("only pings after the end, got {request:?}");
            };
            peer.pong(id, ping.timestamp_ms).await;
        }
    });
    let client = connect(&addr).await;
    let mut sub = client
        .subscribe(SubscribeOptions::database())
        .await
        .expect("subscribe");
    assert!(drain(&mut sub).await.is_empty());
    drop((sub, client));
    finished(peer).await;
}
