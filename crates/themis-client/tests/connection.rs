//! Connection-level behaviour against a tiny in-test peer on loopback: multiplexing,
//! out-of-order answers, EOF, timeouts, GOAWAY, `OP_ERROR`, handshake failure, and
//! closing on drop.
//!
//! The peer speaks only the framing and the handshake; it is not a ThemisDB server.
//! Document and admin semantics are tested end to end against the real server
//! elsewhere. These tests cover what a real server cannot be made to do on demand
//! (answer in reverse order, die mid-flight, never answer).

mod support;

use std::time::Duration;

use bytes::BytesMut;
use support::{listen, options, ping, serve, Peer, NO_HANG};
use themis_client::{wire, Client, ClientOptions, Error, ErrorCode, ErrorKind, OpCode};
use themis_proto::envelope::Request;
use themis_proto::ErrorExt;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// A permutation of `0..n` from a fixed seed (xorshift, Fisher–Yates).
fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_pings_share_one_connection_and_get_their_own_answers() {
    const N: usize = 1000;
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        // Hold every answer until all N requests are in flight at once, then answer
        // in shuffled order, all in one write.
        let mut pings = Vec::with_capacity(N);
        while pings.len() < N {
            pings.push(peer.read_ping().await);
        }
        let mut ids: Vec<u64> = pings.iter().map(|p| p.0).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            N,
            "request ids must be unique among in-flight requests"
        );
        let mut out = BytesMut::new();
        for i in shuffled(N, 0x9E37_79B9_7F4A_7C15) {
            let (id, ts) = pings[i];
            let pong = wire::Pong {
                timestamp_ms: ts,
                server_time_ms: 0,
            };
            Peer::frame(OpCode::OpPong, id, &pong, &mut out);
        }
        peer.stream.write_all(&out).await.expect("peer write");
        // Stay up until the client hangs up.
        assert!(peer.read().await.is_none());
    });

    // One connection carries them all: no in-flight cap below N.
    let one_connection = ClientOptions {
        max_in_flight_per_connection: N,
        ..options(Duration::from_secs(60))
    };
    let client = Client::connect_with(&addr, one_connection)
        .await
        .expect("connect");
    assert_eq!(client.session_token(), "tok-123");
    assert_eq!(client.server_info().server_version, "fake-peer");

    let tasks: Vec<_> = (0..N as u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { (n, ping(&client, n).await) })
        })
        .collect();
    for task in tasks {
        let (n, answer) = timeout(NO_HANG, task)
            .await
            .expect("no hang")
            .expect("task");
        assert_eq!(answer.expect("pong"), n, "each request gets its own answer");
    }
    assert_eq!(client.in_flight_requests(), 0);
    drop(client);
    timeout(NO_HANG, peer)
        .await
        .expect("peer sees EOF")
        .expect("peer");
}

#[tokio::test]
async fn eof_fails_pending_requests_instead_of_hanging() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        for _ in 0..3 {
            peer.read_ping().await;
        }
        // Close with three requests unanswered.
        drop(peer);
    });
    // A long request timeout: the failure must come from the EOF, not the timer.
    let client = Client::connect_with(&addr, options(Duration::from_secs(600)))
        .await
        .expect("connect");
    let results = timeout(
        NO_HANG,
        futures_join3(ping(&client, 1), ping(&client, 2), ping(&client, 3)),
    )
    .await
    .expect("pending requests must fail, not hang");
    // Pings are reads: each was sent again, and waited for a fresh connection, which
    // the peer (gone for good) refuses until acquire_timeout.
    for result in results {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    }
    peer.await.expect("peer");
    assert!(client.is_closed());
    assert_eq!(client.in_flight_requests(), 0);
    // New requests wait for the pool to reconnect and fail, naming the address and
    // why it cannot be reached.
    let err = timeout(NO_HANG, ping(&client, 4)).await.expect("no hang");
    let err = err.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
}

/// Joins three futures concurrently without pulling in a futures crate.
async fn futures_join3<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
    c: impl std::future::Future<Output = T>,
) -> [T; 3] {
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}

#[tokio::test]
async fn late_answer_times_out_frees_its_slot_and_is_discarded() {
    let (listener, addr) = listen().await;
    let (late_tx, late_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = serve(listener, |mut peer| async move {
        let (late_id, late_ts) = peer.read_ping().await;
        // Answer only after the client gave up on it.
        late_rx.await.expect("signal");
        peer.pong(late_id, late_ts).await;
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        assert!(peer.read().await.is_none());
    });
    let client = Client::connect_with(&addr, options(Duration::from_millis(200)))
        .await
        .expect("connect");
    let err = ping(&client, 1).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::ErrTimeout));
    assert_eq!(
        client.in_flight_requests(),
        0,
        "timed-out request left the table"
    );
    late_tx.send(()).expect("peer alive");
    // The late pong for request 1 is dropped; request 2 gets its own answer.
    assert_eq!(ping(&client, 2).await.expect("pong"), 2);
    assert!(!client.is_closed());
    drop(client);
    timeout(NO_HANG, peer).await.expect("peer").expect("peer");
}

#[tokio::test]
async fn goaway_refuses_new_requests_but_lets_in_flight_ones_finish() {
    let (listener, addr) = listen().await;
    let (probed_tx, probed_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = serve(listener, |mut peer| async move {
        let (a, a_ts) = peer.read_ping().await;
        let (_b, _) = peer.read_ping().await;
        let goaway = wire::GoAway {
            reason: "shutdown".into(),
            reconnect_after_ms: 250,
        };
        peer.send(OpCode::OpGoaway, 0, &goaway).await;
        // Once the client saw a new request refused, finish one request in flight
        // and close with the other unanswered.
        probed_rx.await.expect("client probed");
        peer.pong(a, a_ts).await;
    });
    // A short connect timeout: the peer accepts only once, so reconnects time out.
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        ..options(Duration::from_secs(600))
    };
    let client = Client::connect_with(&addr, opts).await.expect("connect");
    let (c1, c2) = (client.clone(), client.clone());
    let a = tokio::spawn(async move { ping(&c1, 1).await });
    while client.in_flight_requests() < 1 {
        tokio::task::yield_now().await;
    }
    let b = tokio::spawn(async move { ping(&c2, 2).await });

    timeout(NO_HANG, async {
        while !client.is_closed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("GOAWAY seen");
    // A new request does not go out on the draining connection: the client opens a
    // new one, which this peer (it accepts only once) refuses.
    let refused = ping(&client, 3).await.unwrap_err();
    assert!(
        refused.is_connection_error() || matches!(refused, Error::Timeout { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains(&addr), "{refused}");
    probed_tx.send(()).expect("peer alive");

    let a = timeout(NO_HANG, a).await.expect("no hang").expect("task");
    assert_eq!(a.expect("in-flight request answered after GOAWAY"), 1);
    // Unanswered at close: a read, so tried again on a new connection (refused here).
    let b = timeout(NO_HANG, b).await.expect("no hang").expect("task");
    assert!(
        b.as_ref()
            .is_err_and(|e| e.is_connection_error() || matches!(e, Error::Timeout { .. })),
        "unanswered at close: {b:?}"
    );
    peer.await.expect("peer");
}

#[tokio::test]
async fn op_error_with_request_id_fails_only_that_request() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (first, _) = peer.read_ping().await;
        let (second, second_ts) = peer.read_ping().await;
        let (bad, good, good_ts) = if second_ts == 666 {
            (second, first, 7)
        } else {
            (first, second, second_ts)
        };
        let error = wire::Error::retryable(
            ErrorCode::ErrRateLimited,
            "too many requests from user root: wait 50 ms",
            50,
        );
        peer.send(OpCode::OpError, bad, &error).await;
        peer.pong(good, good_ts).await;
        assert!(peer.read().await.is_none());
    });
    let client = Client::connect_with(&addr, options(Duration::from_secs(60)))
        .await
        .expect("connect");
    let (bad, good) = tokio::join!(ping(&client, 666), ping(&client, 7));
    let err = bad.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ErrRateLimited));
    assert_eq!(
        err.server_message(),
        Some("too many requests from user root: wait 50 ms")
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_millis(50)));
    assert_eq!(
        err.to_string(),
        "ERR_RATE_LIMITED: too many requests from user root: wait 50 ms"
    );
    assert_eq!(good.expect("other request unaffected"), 7);
    assert!(!client.is_closed());
    drop(client);
    timeout(NO_HANG, peer).await.expect("peer").expect("peer");
}

#[tokio::test]
async fn connection_level_op_error_fails_everything_pending() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        peer.read_ping().await;
        peer.read_ping().await;
        let error = wire::Error::new(
            ErrorCode::ErrProtocol,
            "bad frame magic 0x4745: every ThemisDB v1 frame starts with 0xDB01",
        );
        peer.send(OpCode::OpError, 0, &error).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let client = Client::connect_with(&addr, options(Duration::from_secs(600)))
        .await
        .expect("connect");
    let (a, b) = timeout(NO_HANG, async {
        tokio::join!(ping(&client, 1), ping(&client, 2))
    })
    .await
    .expect("no hang");
    for result in [a, b] {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ErrProtocol), "{err:?}");
        assert!(err.to_string().contains("0xDB01"));
    }
    // The connection is gone; the next request waits for a new one (refused here).
    let err = ping(&client, 3).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    peer.await.expect("peer");
}

#[tokio::test]
async fn handshake_sends_credentials_and_maps_failure() {
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        let (id, request) = peer.read().await.expect("handshake");
        let Request::Handshake(hs) = request else {
            panic!("expected handshake, got {request:?}");
        };
        let response = wire::HandshakeResponse {
            success: false,
            error_message: "wrong password for user al:ice".into(),
            error: Some(wire::Error::new(
                ErrorCode::ErrAuthFailed,
                "wrong password for user al:ice",
            )),
            ..Default::default()
        };
        peer.send(OpCode::OpHandshake, id, &response).await;
        hs
    });
    let url = format!("themis://al%3Aice:p%40ss@{addr}/shop");
    let err = Client::connect(&url).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ErrAuthFailed));
    assert_eq!(err.server_message(), Some("wrong password for user al:ice"));

    let hs = peer.await.expect("peer");
    assert_eq!(hs.protocol_version, "1.0");
    assert!(hs.client_name.starts_with("themis-client-rust/"));
    assert_eq!(hs.auth_method, wire::AuthMethod::UsernamePassword as i32);
    assert_eq!(hs.username, "al:ice");
    assert_eq!(hs.password, "p@ss");
    assert_eq!(hs.database, "shop");
    assert_eq!(hs.client_features, 0b111_1111);
    assert!(hs.session_token.is_empty());
}

#[tokio::test]
async fn connect_errors_are_clear() {
    // Nothing listens on this port once the listener is gone.
    let (listener, addr) = listen().await;
    drop(listener);
    let err = Client::connect(&addr).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert!(err.is_connection_error());

    let err = Client::connect("themis://h/a/b").await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");

    // A peer that accepts but never answers the handshake.
    let (listener, addr) = listen().await;
    let _silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let err = Client::connect_with(
        &addr,
        ClientOptions {
            connect_timeout: Duration::from_millis(200),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("connect_timeout"), "{err}");
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        // EOF arrives only when every clone, database and collection handle is gone.
        assert!(peer.read().await.is_none());
    });
    let client = Client::connect(&addr).await.expect("connect");
    let shop = client.database("shop");
    let users = shop.collection("users");
    assert_eq!(shop.database_name(), "shop");
    assert_eq!(client.database_name(), "_system");
    assert_eq!(users.name(), "users");
    assert!(client.ping().await.expect("ping") < NO_HANG);
    drop(client);
    drop(shop);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !peer.is_finished(),
        "a collection handle keeps the connection"
    );
    drop(users);
    timeout(NO_HANG, peer)
        .await
        .expect("peer sees EOF")
        .expect("peer");
}

#[tokio::test]
async fn oversized_request_is_refused_before_sending() {
    let (listener, addr) = listen().await;
    let peer = serve(listener, |mut peer| async move {
        // The oversized insert never arrives; the ping after it does.
        let (id, ts) = peer.read_ping().await;
        peer.pong(id, ts).await;
        assert!(peer.read().await.is_none());
    });
    let client = Client::connect(&addr).await.expect("connect");
    // The peer advertised max_frame_bytes = 1 MiB.
    let big = serde_json::json!({ "blob": "x".repeat(2 << 20) });
    let err = client.collection("c").insert(&big).await.unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { max, .. } if max == 1 << 20),
        "{err:?}"
    );
    assert_eq!(ping(&client, 5).await.expect("still usable"), 5);
    drop(client);
    timeout(NO_HANG, peer).await.expect("peer").expect("peer");
}
