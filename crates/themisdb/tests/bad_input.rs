//! Every malformed, oversized, unauthenticated or hostile input gets the answer the
//! contract prescribes, while a second, healthy client on the same server keeps
//! working.

mod common;

use std::time::Duration;

use common::{code_of, RawConn, ServerProcess, TestServer, ROOT_PASSWORD};
use themis_proto::wire::{self, ErrorCode, OpCode};

/// A logged-in connection that must keep working whatever the other one does.
async fn healthy(server: &TestServer) -> RawConn {
    RawConn::login(server.addr).await
}

async fn assert_healthy(conn: &mut RawConn, request_id: u64) {
    conn.ping_ok(request_id).await;
    let create = wire::CreateRequest {
        collection: "still_alive".into(),
        document: br#"{"ok":true}"#.to_vec().into(),
        ..Default::default()
    };
    conn.send(OpCode::OpCreate, request_id + 1, &create).await;
    let f = conn.recv().await.expect("create answer");
    assert_eq!(f.request_id, request_id + 1);
    let resp: wire::CreateResponse = f.decode();
    assert!(resp.success, "{resp:?}");
}

#[tokio::test]
async fn wrong_magic_is_protocol_error_then_close() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    bad.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let err = bad.recv().await.expect("error frame").error();
    assert_eq!(code_of(&err), ErrorCode::ErrProtocol);
    assert!(err.message.contains("0xDB01"), "{}", err.message);
    bad.expect_eof().await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn zero_length_is_protocol_error_then_close() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    bad.send_raw(&[0xDB, 0x01, 0, 0, 0, 0]).await;
    let f = bad.recv().await.expect("error frame");
    assert_eq!(f.request_id, 0);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrProtocol);
    bad.expect_eof().await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn oversized_length_is_rejected_from_the_header_alone() {
    let server = TestServer::start_with(|c| c.wire.max_frame_bytes = 1024 * 1024).await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    // Only the header: the answer must not wait for (or allocate) the claimed body.
    bad.send_raw(&[0xDB, 0x01, 0x00, 0x10, 0x00, 0x01]).await;
    let err = bad.recv().await.expect("error frame").error();
    assert_eq!(code_of(&err), ErrorCode::ErrMessageTooLarge);
    assert!(err.message.contains("max_frame_bytes"), "{}", err.message);
    bad.expect_eof().await;
    assert_healthy(&mut ok, 10).await;
}

/// Many connections each announce a maximal frame and then stall: the server must not
/// size buffers from the announced length.
#[tokio::test]
async fn announced_lengths_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let before = server.rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let mut c = RawConn::connect(server.addr).await;
        // 16 MiB exactly: the default limit, so the header is valid.
        c.send_raw(&[0xDB, 0x01, 0x01, 0x00, 0x00, 0x00, 0x0A, 0x00])
            .await;
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    // 64 x 16 MiB would be 1 GiB; allow generous noise but nothing near that.
    assert!(
        after.saturating_sub(before) < 128 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let mut ok = RawConn::login(server.addr).await;
    ok.ping_ok(5).await;
}

#[tokio::test]
async fn truncated_frame_then_eof_closes_quietly() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::login(server.addr).await;
    bad.send_raw(&[0xDB, 0x01, 0x00, 0x00, 0x00, 0x40, 1, 2, 3])
        .await;
    use tokio::io::AsyncWriteExt;
    bad.stream.shutdown().await.unwrap();
    bad.expect_eof().await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn envelope_that_is_not_protobuf_keeps_connection() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::login(server.addr).await;
    bad.send_payload(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).await;
    let f = bad.recv().await.expect("error frame");
    assert_eq!(f.request_id, 0);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrProtocol);
    bad.ping_ok(2).await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn garbage_body_is_protocol_error_with_request_id() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::login(server.addr).await;
    let env = wire::Envelope {
        opcode: OpCode::OpCreate as i32,
        request_id: 4242,
        body: vec![0x0A, 0xFF, 0xFF, 0xFF, 0x0F].into(),
    };
    bad.send_payload(&prost::Message::encode_to_vec(&env)).await;
    let f = bad.recv().await.expect("error frame");
    assert_eq!(f.request_id, 4242);
    let err = f.error();
    assert_eq!(code_of(&err), ErrorCode::ErrProtocol);
    assert!(err.message.contains("CreateRequest"), "{}", err.message);
    bad.ping_ok(3).await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn unknown_opcode_is_reported_with_request_id() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::login(server.addr).await;
    let env = wire::Envelope {
        opcode: 0x42,
        request_id: 99,
        body: Default::default(),
    };
    bad.send_payload(&prost::Message::encode_to_vec(&env)).await;
    let f = bad.recv().await.expect("error frame");
    assert_eq!(f.request_id, 99);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrUnknownOpcode);
    bad.ping_ok(3).await;
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn create_before_handshake_is_unauthenticated() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    // PING is allowed before the handshake.
    bad.ping_ok(1).await;
    let create = wire::CreateRequest {
        collection: "c".into(),
        document: br#"{"a":1}"#.to_vec().into(),
        ..Default::default()
    };
    bad.send(OpCode::OpCreate, 7, &create).await;
    let f = bad.recv().await.expect("error frame");
    assert_eq!(f.request_id, 7);
    let err = f.error();
    assert_eq!(code_of(&err), ErrorCode::ErrUnauthenticated);
    assert!(err.message.contains("HANDSHAKE"), "{}", err.message);
    // Still usable: the handshake may follow.
    assert!(bad.handshake("root", ROOT_PASSWORD).await.success);
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn wrong_password_fails_handshake_and_allows_retry() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    let resp = bad.handshake("root", "not-the-password").await;
    assert!(!resp.success);
    let err = resp.error.expect("error field 15");
    assert_eq!(code_of(&err), ErrorCode::ErrAuthFailed);
    assert_eq!(resp.error_message, err.message);
    let unknown = bad.handshake("nobody", "x").await;
    assert_eq!(
        code_of(unknown.error.as_ref().unwrap()),
        ErrorCode::ErrAuthFailed
    );
    assert_eq!(
        unknown.error_message, resp.error_message,
        "same answer for unknown users"
    );
    assert!(bad.handshake("root", ROOT_PASSWORD).await.success);
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn unsupported_major_version_is_refused() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut bad = RawConn::connect(server.addr).await;
    let req = wire::HandshakeRequest {
        protocol_version: "2.0".into(),
        username: "root".into(),
        password: ROOT_PASSWORD.into(),
        ..Default::default()
    };
    bad.send(OpCode::OpHandshake, 1, &req).await;
    let resp: wire::HandshakeResponse = bad.recv().await.unwrap().decode();
    assert!(!resp.success);
    let err = resp.error.unwrap();
    assert_eq!(code_of(&err), ErrorCode::ErrUnsupportedVersion);
    assert!(
        err.message.contains("1.0"),
        "names the supported versions: {}",
        err.message
    );
    // A higher minor of the same major is accepted and answered with ours.
    let req = wire::HandshakeRequest {
        protocol_version: "1.7".into(),
        username: "root".into(),
        password: ROOT_PASSWORD.into(),
        ..Default::default()
    };
    bad.send(OpCode::OpHandshake, 2, &req).await;
    let resp: wire::HandshakeResponse = bad.recv().await.unwrap().decode();
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.server_info.unwrap().protocol_version, "1.0");
    assert_healthy(&mut ok, 10).await;
}

async fn create_expect(
    conn: &mut RawConn,
    id: u64,
    collection: &str,
    doc: &[u8],
    code: ErrorCode,
) -> String {
    let create = wire::CreateRequest {
        collection: collection.into(),
        document: doc.to_vec().into(),
        ..Default::default()
    };
    conn.send(OpCode::OpCreate, id, &create).await;
    let f = conn.recv().await.expect("answer");
    assert_eq!(
        f.op(),
        OpCode::OpCreate,
        "typed response, not OP_ERROR: {f:?}"
    );
    let resp: wire::CreateResponse = f.decode();
    assert!(!resp.success);
    let err = resp.error.expect("error field 15");
    assert_eq!(code_of(&err), code, "{}", err.message);
    err.message
}

#[tokio::test]
async fn bad_documents_names_and_keys_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut ok = healthy(&server).await;
    let mut c = RawConn::login(server.addr).await;
    let e = ErrorCode::ErrInvalidArgument;
    create_expect(&mut c, 1, "docs", b"{\"a\": ", e).await;
    create_expect(&mut c, 2, "docs", b"[1,2,3]", e).await;
    create_expect(&mut c, 3, "docs", b"42", e).await;
    create_expect(&mut c, 4, "1bad", b"{}", e).await;
    create_expect(&mut c, 5, "has space", b"{}", e).await;
    create_expect(&mut c, 6, "_reserved", b"{}", e).await;
    create_expect(&mut c, 7, &"x".repeat(65), b"{}", e).await;
    let msg = create_expect(&mut c, 8, "docs", br#"{"_key":"no/slash"}"#, e).await;
    assert!(msg.contains("key"), "{msg}");
    let long_key = format!(r#"{{"_key":"{}"}}"#, "k".repeat(255));
    create_expect(&mut c, 9, "docs", long_key.as_bytes(), e).await;
    create_expect(&mut c, 10, "docs", br#"{"_key":""}"#, e).await;
    create_expect(&mut c, 11, "docs", br#"{"_key":42}"#, e).await;
    c.ping_ok(12).await;
    assert_healthy(&mut ok, 20).await;
}

#[tokio::test]
async fn connection_over_max_connections_gets_resource_exhausted() {
    let server = TestServer::start_with(|c| c.wire.max_connections = 2).await;
    let mut a = RawConn::login(server.addr).await;
    let mut b = RawConn::login(server.addr).await;
    let mut extra = RawConn::connect(server.addr).await;
    let err = extra.recv().await.expect("error frame").error();
    assert_eq!(code_of(&err), ErrorCode::ErrResourceExhausted);
    assert!(err.message.contains("max_connections"), "{}", err.message);
    extra.expect_eof().await;
    assert_healthy(&mut a, 10).await;
    b.ping_ok(3).await;
    // A slot frees up when a connection leaves.
    drop(b);
    let mut again = None;
    for _ in 0..50 {
        let mut c = RawConn::connect(server.addr).await;
        if c.handshake_or_refused().await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    again.expect("a freed slot is reusable").ping_ok(4).await;
}

trait HandshakeOrRefused {
    async fn handshake_or_refused(&mut self) -> bool;
}

impl HandshakeOrRefused for RawConn {
    async fn handshake_or_refused(&mut self) -> bool {
        let req = wire::HandshakeRequest {
            protocol_version: "1.0".into(),
            username: "root".into(),
            password: ROOT_PASSWORD.into(),
            ..Default::default()
        };
        self.send(OpCode::OpHandshake, 1, &req).await;
        match self.recv().await {
            Some(f) if f.op() == OpCode::OpHandshake => {
                f.decode::<wire::HandshakeResponse>().success
            }
            _ => false,
        }
    }
}

#[tokio::test]
async fn client_that_never_handshakes_is_closed_at_the_timeout() {
    let server =
        TestServer::start_with(|c| c.wire.handshake_timeout = Duration::from_millis(500)).await;
    let mut ok = healthy(&server).await;
    let mut silent = RawConn::connect(server.addr).await;
    let started = std::time::Instant::now();
    let f = silent.recv().await.expect("timeout error before close");
    let err = f.error();
    assert_eq!(code_of(&err), ErrorCode::ErrTimeout);
    assert!(err.message.contains("handshake"), "{}", err.message);
    silent.expect_eof().await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_healthy(&mut ok, 10).await;
}

#[tokio::test]
async fn idle_connection_gets_goaway() {
    let server = TestServer::start_with(|c| c.wire.idle_timeout = Duration::from_millis(600)).await;
    let mut idle = RawConn::login(server.addr).await;
    let mut busy = RawConn::login(server.addr).await;
    // The busy one pings more often than the idle timeout and stays open.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        busy.ping_ok(100 + i).await;
    }
    let f = idle.recv().await.expect("goaway");
    assert_eq!(f.op(), OpCode::OpGoaway);
    assert_eq!(f.request_id, 0);
    let goaway: wire::GoAway = f.decode();
    assert_eq!(goaway.reason, "idle", "the contract's reason, verbatim");
    idle.expect_eof().await;
    busy.ping_ok(200).await;
}

#[tokio::test]
async fn mismatched_session_token_is_unauthenticated() {
    let server = TestServer::start().await;
    let mut c = RawConn::login(server.addr).await;
    let read = wire::ReadRequest {
        collection: "c".into(),
        document_ids: vec!["a".into()],
        session_token: "not-my-token".into(),
        ..Default::default()
    };
    c.send(OpCode::OpRead, 5, &read).await;
    let f = c.recv().await.unwrap();
    assert_eq!(f.request_id, 5);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrUnauthenticated);
    c.ping_ok(6).await;
}

/// A peer that sends requests but never reads the answers: once its in-flight
/// permits are all held by unread answers for idle_timeout, the server closes it,
/// and serves everyone else meanwhile.
#[tokio::test]
async fn peer_that_never_reads_is_closed_and_others_are_served() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(|c| {
        c.wire.max_in_flight = 4;
        c.wire.idle_timeout = Duration::from_millis(800);
    })
    .await;
    let mut ok = healthy(&server).await;
    // A large document makes every answer big enough to fill the socket buffers.
    let big = format!(r#"{{"_key":"big","blob":"{}"}}"#, "x".repeat(1024 * 1024));
    let create = wire::CreateRequest {
        collection: "blobs".into(),
        document: big.into_bytes().into(),
        ..Default::default()
    };
    ok.send(OpCode::OpCreate, 1, &create).await;
    assert!(
        ok.recv()
            .await
            .unwrap()
            .decode::<wire::CreateResponse>()
            .success
    );

    let mut hog = RawConn::login(server.addr).await;
    let read = wire::ReadRequest {
        collection: "blobs".into(),
        document_ids: vec!["big".into()],
        ..Default::default()
    };
    for id in 10..200 {
        hog.send(OpCode::OpRead, id, &read).await;
    }
    // While the hog is stuck, others are served.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ok.ping_ok(100 + i).await;
    }
    // By now the server has given up on the hog: reading yields only what was already
    // in the socket buffers (a few MiB), not the ~190 MiB of answers it asked for.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match hog.stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the stalled connection was closed by the server"
    );
    assert!(
        total < 64 * 1024 * 1024,
        "server kept writing to a stalled peer: {total} bytes"
    );
    assert_healthy(&mut ok, 300).await;
}

#[tokio::test]
async fn request_id_zero_is_refused_and_connection_stays() {
    let server = TestServer::start().await;
    let mut c = RawConn::login(server.addr).await;
    c.send(OpCode::OpPing, 0, &wire::Ping { timestamp_ms: 1 })
        .await;
    let f = c.recv().await.expect("error frame");
    assert_eq!(f.request_id, 0);
    let err = f.error();
    assert_eq!(code_of(&err), ErrorCode::ErrProtocol);
    assert!(err.message.contains("request_id 0"), "{}", err.message);
    c.ping_ok(1).await;
}

#[tokio::test]
async fn server_only_opcodes_are_refused_with_their_id() {
    let server = TestServer::start().await;
    let mut c = RawConn::login(server.addr).await;
    // OP_PONG is sent only by the server.
    c.send(OpCode::OpPong, 5, &wire::Pong::default()).await;
    let f = c.recv().await.unwrap();
    assert_eq!(f.request_id, 5);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrProtocol);
    c.ping_ok(7).await;
}

#[tokio::test]
async fn impossible_user_names_fail_authentication_like_any_other() {
    let server = TestServer::start().await;
    let mut c = RawConn::connect(server.addr).await;
    for name in [
        "x".repeat(300),
        "bad\u{0}name".to_string(),
        "tab\tname".to_string(),
    ] {
        let resp = c.handshake(&name, "whatever").await;
        assert!(!resp.success);
        assert_eq!(
            code_of(resp.error.as_ref().unwrap()),
            ErrorCode::ErrAuthFailed,
            "{name:?}"
        );
    }
    assert!(c.handshake("root", ROOT_PASSWORD).await.success);
}
