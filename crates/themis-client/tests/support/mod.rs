//! A tiny in-test peer on loopback that speaks the framing and the handshake, for the
//! integration tests of this crate. It is not a ThemisDB server: each test scripts
//! exactly what the peer answers, to make the client face what a real server cannot
//! be made to do on demand (answer out of order, die mid-flight, fill a buffer).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use themis_client::{wire, Client, ClientOptions, Error, OpCode, RetryPolicy};
use themis_proto::envelope::Request;
use themis_proto::{encode_frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound for anything in these tests that must not hang.
pub const NO_HANG: Duration = Duration::from_secs(20);

/// The session token every peer handshake hands out.
pub const TOKEN: &str = "tok-123";

/// The server side of one connection, speaking frames.
pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
}

impl Peer {
    pub async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = listener.accept().await.expect("accept");
        Peer {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::default(),
        }
    }

    /// The next request, or `None` at EOF.
    pub async fn read(&mut self) -> Option<(u64, Request)> {
        loop {
            if let Some(payload) = self.codec.decode(&mut self.buf).expect("client frame") {
                let decoded = Request::decode_payload(payload).expect("client envelope");
                return Some((decoded.request_id, decoded.request));
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// The next request, which must come.
    pub async fn request(&mut self) -> (u64, Request) {
        self.read().await.expect("a request, not EOF")
    }

    pub async fn read_ping(&mut self) -> (u64, u64) {
        match self.read().await {
            Some((id, Request::Ping(p))) => (id, p.timestamp_ms),
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    pub fn frame<M: Message>(op: OpCode, id: u64, msg: &M, dst: &mut BytesMut) {
        encode_frame(&FrameCodec::default(), op, id, msg, dst).expect("encode");
    }

    pub async fn send<M: Message>(&mut self, op: OpCode, id: u64, msg: &M) {
        let mut out = BytesMut::new();
        Self::frame(op, id, msg, &mut out);
        self.stream.write_all(&out).await.expect("peer write");
    }

    pub async fn pong(&mut self, id: u64, timestamp_ms: u64) {
        let pong = wire::Pong {
            timestamp_ms,
            server_time_ms: 0,
        };
        self.send(OpCode::OpPong, id, &pong).await;
    }

    /// Reads the handshake and accepts it.
    pub async fn handshake(&mut self) -> wire::HandshakeRequest {
        self.handshake_with_idle_timeout(0).await
    }

    /// Reads the handshake and accepts it, advertising `idle_timeout_ms`.
    pub async fn handshake_with_idle_timeout(
        &mut self,
        idle_timeout_ms: u32,
    ) -> wire::HandshakeRequest {
        self.handshake_advertising(idle_timeout_ms, themis_proto::features::MULTIPLEXING)
            .await
    }

    /// Reads the handshake and accepts it, advertising `idle_timeout_ms` and
    /// `features`.
    pub async fn handshake_advertising(
        &mut self,
        idle_timeout_ms: u32,
        features: u64,
    ) -> wire::HandshakeRequest {
        let (id, request) = self.read().await.expect("handshake frame");
        let Request::Handshake(hs) = request else {
            panic!("first frame must be a handshake, got {request:?}");
        };
        let response = wire::HandshakeResponse {
            success: true,
            session_token: TOKEN.into(),
            server_info: Some(wire::ServerInfo {
                server_version: "fake-peer".into(),
                protocol_version: "1.0".into(),
                features,
                max_frame_bytes: 1 << 20,
                database: "_system".into(),
                username: hs.username.clone(),
                idle_timeout_ms,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.send(OpCode::OpHandshake, id, &response).await;
        hs
    }
}

pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// Starts a peer that handshakes and then runs `script`.
pub fn serve<F, Fut>(listener: TcpListener, script: F) -> JoinHandle<()>
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.handshake().await;
        script(peer).await;
    })
}

/// Options with `request_timeout`; a request waits at most 1 s for a connection (the
/// peers here never come back once gone).
pub fn options(request_timeout: Duration) -> ClientOptions {
    ClientOptions {
        request_timeout,
        acquire_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    }
}

pub async fn ping(client: &Client, n: u64) -> Result<u64, Error> {
    let pong: wire::Pong = client
        .raw_request(OpCode::OpPing, &wire::Ping { timestamp_ms: n })
        .await?;
    Ok(pong.timestamp_ms)
}

/// A client of the peer at `addr`, with a request timeout no test reaches.
pub async fn connect(addr: &str) -> Client {
    Client::connect_with(addr, options(Duration::from_secs(60)))
        .await
        .expect("connect")
}

/// A retry policy of `max_attempts` with waits of a few milliseconds.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

/// Waits for the peer's script to run to its end.
pub async fn finished(peer: JoinHandle<()>) {
    tokio::time::timeout(NO_HANG, peer)
        .await
        .expect("no hang")
        .expect("peer");
}
