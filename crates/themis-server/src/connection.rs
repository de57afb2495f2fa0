//! One native wire-protocol connection.
//!
//! ```text
//!   socket ──read──▶ reader (this task) ──spawn──▶ request task ──┐
//!                      │  frame checks, handshake gate,          │ encoded frame
//!                      │  in-flight permits, idle/handshake      ▼   + permit
//!                      │  timeouts, shutdown                 writer task ──write──▶ socket
//!                      └──────── errors / PONG / GOAWAY ────────▲
//!                                  subscription tasks ── OP_EVENT ──┘
//!                                  (each frame + bytes of the event budget)
//! ```
//!
//! Invariants:
//! * Every frame the reader accepts first takes one of `max_in_flight` permits, and the
//!   permit travels with its response frame until the writer has written it. When all
//!   permits are taken the reader stops reading: backpressure, never unbounded queues,
//!   even against a client that sends but never reads.
//! * Events are not requests: they take their own budget, [`EVENT_BUDGET_BYTES`] of
//!   queued event frames per connection ([`EventSink`]), so they never hold a request's
//!   permit, and a subscription whose client does not read waits for that budget
//!   instead of queueing (its change feed then reports it as lagged).
//! * Before a successful handshake only PING and HANDSHAKE are served, one at a time.
//! * Responses leave in completion order; the writer drains whatever is queued into
//!   one `write` call.
//! * TLS and plaintext share the port. [`accept`] peeks at the first byte: a TLS
//!   handshake record (`0x16`) goes through the TLS acceptor, anything else is the
//!   wire protocol in the clear (refused with `ERR_PROTOCOL` when `require_tls`).
//!   After that the connection code does not know which it has: it reads and writes
//!   boxed halves of either stream. The TLS handshake counts against
//!   `handshake_timeout`, and its failure ends only its own connection.
//! * Closing never resets the peer: the server half-closes its side, then reads and
//!   discards until the peer closes (or a short linger ends), so errors and GOAWAY
//!   frames reach the client.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use themis_proto::envelope::{DecodeError, Decoded};
use themis_proto::wire::{self, ErrorCode, OpCode};
use themis_proto::{encode_frame, ErrorExt, FrameCodec, FrameError, Request};

use crate::handlers;
use crate::outbox;
use crate::session::Session;
use crate::tls::TLS_HANDSHAKE_RECORD;
use crate::Shared;

/// Largest batch the writer hands to one `write` call.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// A write buffer grown past this is released once written, so a connection that
/// once carried a large batch does not keep its buffer while it sits quiet.
const KEPT_WRITE_BUFFER: usize = 64 * 1024;
/// A connection with nothing unread for this long gives back its read buffer.
const QUIET_AFTER: Duration = Duration::from_secs(1);
/// What a quiet connection reads into: a PING or a small request fits.
const QUIET_READ_BUFFER: usize = 64;
/// How long a closing connection waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(2);
/// During shutdown, at most this many late requests get an explicit UNAVAILABLE answer.
const MAX_REFUSALS_WHILE_DRAINING: usize = 1024;
/// Bytes of event frames one connection may have queued for its writer. A frame
/// larger than this takes the whole budget, so it still goes, alone.
pub(crate) const EVENT_BUDGET_BYTES: usize = 1024 * 1024;

/// Sets a connection's cancel flag when its task ends, however it ends.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A frame on its way to the socket, holding the in-flight permit of its request.
struct Outgoing {
    frame: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

type Tx = outbox::Sender<Outgoing>;

/// Where a connection's subscriptions put their OP_EVENT frames: the connection's
/// writer, through a budget of [`EVENT_BUDGET_BYTES`] that a frame holds until it is
/// written. Cloned into each subscription task.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: Tx,
    budget: Arc<Semaphore>,
}

impl EventSink {
    fn new(tx: Tx) -> Self {
        Self {
            tx,
            budget: Arc::new(Semaphore::new(EVENT_BUDGET_BYTES)),
        }
    }

    /// Queues `frame` once the budget has room for it: waits while the client is not
    /// reading. `Some(true)` when it had to wait, `None` when the connection's writer
    /// is gone.
    pub(crate) async fn send(&self, frame: Bytes) -> Option<bool> {
        let cost = frame.len().clamp(1, EVENT_BUDGET_BYTES) as u32;
        let (permit, waited) = match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(permit) => (permit, false),
            Err(_) => (
                self.budget.clone().acquire_many_owned(cost).await.ok()?,
                true,
            ),
        };
        self.tx
            .send(Outgoing {
                frame,
                _permit: Some(permit),
            })
            .is_ok()
            .then_some(waited)
    }

    /// Queues `frame` without waiting for the budget: for a subscription's one final
    /// `END` event, which must not wait for a client that may never read again.
    pub(crate) fn send_final(&self, frame: Bytes) -> bool {
        self.tx
            .send(Outgoing {
                frame,
                _permit: None,
            })
            .is_ok()
    }
}

/// Why the reader stopped.
enum ReadEnd {
    Eof {
        truncated: bool,
    },
    Io(std::io::Error),
    Frame(FrameError),
    Timeout,
    /// Every permit is held by an answer the peer has not read for `idle_timeout`.
    Stalled,
    Shutdown,
    /// The session was revoked or expired (the request was answered with
    /// ERR_UNAUTHENTICATED); the GOAWAY says which.
    SessionEnded(&'static str),
}

/// The read half of a connection, plaintext TCP or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection, plaintext TCP or TLS.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

struct Reader {
    rd: ReadHalf,
    buf: BytesMut,
    codec: FrameCodec,
}

impl Reader {
    /// The next complete frame's payload, or why there is none.
    async fn next_frame(
        &mut self,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Bytes, ReadEnd> {
        loop {
            if let Some(payload) = self.codec.decode(&mut self.buf).map_err(ReadEnd::Frame)? {
                return Ok(payload);
            }
            // A quiet connection (see below) reads its next bytes into a small buffer;
            // the first frame that does not fit grows it again.
            let quiet = self.buf.is_empty() && self.buf.capacity() <= QUIET_READ_BUFFER;
            if !quiet {
                // Grow only towards a frame whose header the codec accepted.
                let need = self.codec.bytes_needed(&self.buf).map_err(ReadEnd::Frame)?;
                self.buf.reserve(need.clamp(4096, 256 * 1024));
            }
            // With nothing unread for QUIET_AFTER the read buffer goes back to the
            // allocator: 10,000 idle connections would otherwise hold a touched page
            // each. The one timer serves both this and the deadline.
            let quiet_at = Instant::now() + QUIET_AFTER;
            let shrink = self.buf.is_empty() && !quiet && quiet_at < deadline;
            let wake = if shrink { quiet_at } else { deadline };
            tokio::select! {
                biased;
                _ = crate::stopped(shutdown) => return Err(ReadEnd::Shutdown),
                _ = tokio::time::sleep_until(wake) => {
                    if !shrink {
                        return Err(ReadEnd::Timeout);
                    }
                    self.buf = BytesMut::with_capacity(QUIET_READ_BUFFER);
                }
                read = self.rd.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Err(ReadEnd::Eof { truncated: !self.buf.is_empty() }),
                    Ok(_) => {}
                    Err(e) => return Err(ReadEnd::Io(e)),
                },
            }
        }
    }

    /// Reads and discards until the peer closes or `LINGER` passes.
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            loop {
                self.buf.clear();
                self.buf.reserve(4096);
                match self.rd.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// Takes a freshly accepted socket: TLS or plaintext by its first byte, then
/// [`serve`]. With TLS off the socket is served as plaintext without peeking.
pub(crate) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted_at = Instant::now();
    let stream = match shared.tls.clone() {
        None => {
            let (rd, wr) = stream.into_split();
            Negotiated {
                rd: Box::new(rd),
                wr: Box::new(wr),
                client_cert: None,
            }
        }
        Some(tls) => {
            // Boxed like the handshake in `serve`: no idle connection carries its state.
            let tls = Box::pin(negotiate(
                stream,
                peer,
                &shared,
                &tls,
                &mut shutdown,
                accepted_at,
            ));
            match tls.await {
                Some(negotiated) => negotiated,
                None => return,
            }
        }
    };
    serve(stream, peer, shared, shutdown, accepted_at).await
}

/// A connection ready to serve: its halves, and the client certificate (DER) its TLS
/// handshake presented, if any.
struct Negotiated {
    rd: ReadHalf,
    wr: WriteHalf,
    client_cert: Option<Vec<u8>>,
}

/// The stream to serve on a port that speaks TLS and plaintext: TLS after a
/// handshake when the first byte starts one, plaintext otherwise (unless TLS is
/// required). `None` when the connection ended here (handshake failed, plaintext
/// refused, peer gone, shutdown).
async fn negotiate(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    tls: &crate::tls::TlsReloader,
    shutdown: &mut watch::Receiver<bool>,
    accepted_at: Instant,
) -> Option<Negotiated> {
    let deadline = accepted_at + shared.config.wire.handshake_timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        biased;
        _ = crate::stopped(shutdown) => return None,
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => peeked,
    };
    match peeked {
        Ok(Ok(n)) if n > 0 => {}
        Ok(Ok(_)) => {
            debug!("peer closed before sending anything");
            return None;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "reading the first byte failed");
            return None;
        }
        Err(_) => {
            debug!("nothing received within handshake_timeout; closing");
            return None;
        }
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        // The newest certificate, read once: a reload later does not touch this one.
        let acceptor = tls.acceptor();
        let handshake = tokio::select! {
            biased;
            _ = crate::stopped(shutdown) => return None,
            tls = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => tls,
        };
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                warn!(%peer, reason = %e, "TLS handshake failed; connection closed");
                return None;
            }
            Err(_) => {
                warn!(
                    %peer,
                    reason = "not completed within handshake_timeout",
                    "TLS handshake failed; connection closed"
                );
                return None;
            }
        };
        let (_, state) = tls.get_ref();
        debug!(
            version = ?state.protocol_version(),
            suite = ?state.negotiated_cipher_suite().map(|s| s.suite()),
            client_cert = state.peer_certificates().is_some(),
            "TLS established"
        );
        // The end-entity certificate: rustls has verified its chain to the client CA.
        let client_cert = state
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref().to_vec());
        let (rd, wr) = tokio::io::split(tls);
        Some(Negotiated {
            rd: Box::new(rd),
            wr: Box::new(wr),
            client_cert,
        })
    } else if shared.config.wire.tls.required {
        info!(%peer, "plaintext connection refused: [wire_protocol] require_tls = true");
        let err = wire::Error::new(
            ErrorCode::ErrProtocol,
            "this server requires TLS ([wire_protocol] require_tls = true) and refuses \
             plaintext connections: enable TLS in the client and trust the server's CA \
             certificate, then reconnect to the same port",
        );
        send_error_and_close(stream, &shared.codec, 0, err).await;
        None
    } else {
        let (rd, wr) = stream.into_split();
        Some(Negotiated {
            rd: Box::new(rd),
            wr: Box::new(wr),
            client_cert: None,
        })
    }
}

/// Serves one connection until the peer leaves, a fatal frame error, a timeout, or
/// server shutdown. `accepted_at` starts the handshake clock.
async fn serve(
    stream: Negotiated,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    accepted_at: Instant,
) {
    debug!("connection opened");
    let Negotiated {
        rd,
        wr,
        client_cert,
    } = stream;
    let (tx, rx) = outbox::outbox();
    let writer = tokio::spawn(write_loop(wr, rx).in_current_span());
    let mut reader = Reader {
        rd,
        buf: BytesMut::with_capacity(8 * 1024),
        codec: shared.codec,
    };
    let max_in_flight = shared.config.wire.max_in_flight.max(1);
    let inflight = Arc::new(Semaphore::new(max_in_flight));
    let mut session: Option<Arc<Session>> = None;
    let conn = Arc::new(handlers::ConnState {
        peer: Some(peer),
        ..Default::default()
    });
    conn.subscriptions.open(EventSink::new(tx.clone()));
    // However the connection ends, its running queries stop.
    let _cancel_on_close = CancelOnDrop(conn.cancel.clone());
    let mut last_frame_at = accepted_at;
    // Once logged in: resolves when the session is revoked or expires, so the
    // connection (and its subscriptions) ends then, not at its next frame.
    let mut session_end: Option<Pin<Box<dyn Future<Output = &'static str> + Send>>> = None;

    let end = loop {
        let deadline = match session {
            None => accepted_at + shared.config.wire.handshake_timeout,
            Some(_) => last_frame_at + shared.config.wire.idle_timeout,
        };
        let next = reader.next_frame(deadline, &mut shutdown);
        let read = match session_end.as_mut() {
            None => next.await,
            Some(ended) => tokio::select! {
                read = next => read,
                why = ended => Err(ReadEnd::SessionEnded(why)),
            },
        };
        let payload = match read {
            Ok(payload) => payload,
            Err(end) => break end,
        };
        last_frame_at = Instant::now();
        // Take the permit before doing anything that produces a response. Waiting
        // here is the backpressure; waiting longer than idle_timeout means the peer
        // stopped reading its answers.
        let permit = tokio::select! {
            permit = inflight.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break ReadEnd::Shutdown,
            },
            _ = tokio::time::sleep(shared.config.wire.idle_timeout) => break ReadEnd::Stalled,
            _ = crate::stopped(&mut shutdown) => {
                refuse_shutting_down(&shared.codec, &tx, payload);
                break ReadEnd::Shutdown;
            }
        };
        let Decoded {
            request_id,
            request,
        } = match Request::decode_payload(payload) {
            Ok(decoded) => decoded,
            Err((request_id, e)) => {
                debug!(request_id, error = %e, "undecodable request");
                send_frame_error(
                    &shared.codec,
                    &tx,
                    request_id,
                    decode_error(&e),
                    Some(permit),
                );
                continue;
            }
        };
        if request_id == 0 {
            let err = wire::Error::new(
                ErrorCode::ErrProtocol,
                format!(
                    "{:?} with request_id 0: 0 is reserved for frames the server starts; number requests from 1, unique among those in flight",
                    request.opcode()
                ),
            );
            send_frame_error(&shared.codec, &tx, 0, err, Some(permit));
            continue;
        }
        // A revoked or expired session is served nothing more, not even PING (which
        // would keep its subscriptions streaming).
        if let Some(ended) = session.as_deref().and_then(session_ended) {
            let username = session
                .as_ref()
                .map(|s| s.username.as_str())
                .unwrap_or_default();
            info!(%peer, username, why = ended, "closing connection: its session ended");
            let err = wire::Error::new(
                ErrorCode::ErrUnauthenticated,
                format!(
                    "this connection's session {}: open a new connection and log in again",
                    if ended == "session_revoked" {
                        "was revoked"
                    } else {
                        "expired"
                    }
                ),
            );
            send_frame_error(&shared.codec, &tx, request_id, err, Some(permit));
            break ReadEnd::SessionEnded(ended);
        }
        match (&session, request) {
            (_, Request::Ping(ping)) => {
                let pong = handlers::ping(&ping);
                send(
                    &shared.codec,
                    &tx,
                    OpCode::OpPong,
                    request_id,
                    &pong,
                    Some(permit),
                );
            }
            (None, Request::Handshake(hs)) => {
                let span = tracing::info_span!("handshake", request_id, user = ?hs.username);
                // Boxed: its state lives only while it runs, instead of making every
                // connection's future (and its idle memory) as large as the handshake.
                let handshake =
                    handlers::handshake::handle(&shared, peer, client_cert.as_deref(), hs);
                let (resp, bound) = Box::pin(handshake.instrument(span)).await;
                send(
                    &shared.codec,
                    &tx,
                    OpCode::OpHandshake,
                    request_id,
                    &resp,
                    Some(permit),
                );
                if let Some(s) = &bound {
                    let s = s.clone();
                    session_end = Some(Box::pin(async move { s.ended().await }));
                }
                session = bound;
            }
            (Some(_), Request::Handshake(_)) => {
                let resp = handlers::handshake::already_authenticated();
                send::<wire::HandshakeResponse>(
                    &shared.codec,
                    &tx,
                    OpCode::OpHandshake,
                    request_id,
                    &resp,
                    Some(permit),
                );
            }
            (None, request) => {
                let err = wire::Error::new(
                    ErrorCode::ErrUnauthenticated,
                    format!(
                        "{:?} before handshake: send OP_HANDSHAKE first (only PING and HANDSHAKE are served before it)",
                        request.opcode()
                    ),
                );
                send_frame_error(&shared.codec, &tx, request_id, err, Some(permit));
            }
            (Some(sess), request) => {
                let token = handlers::session_token(&request);
                if !token.is_empty() && token != sess.token {
                    let err = wire::Error::new(
                        ErrorCode::ErrUnauthenticated,
                        "session_token does not match this connection's session: leave it empty or send the token from this connection's handshake",
                    );
                    send_frame_error(&shared.codec, &tx, request_id, err, Some(permit));
                    continue;
                }
                if let Err(retry_after_ms) = shared.rate_limiter.check(&sess.username) {
                    let err = wire::Error::retryable(
                        ErrorCode::ErrRateLimited,
                        format!(
                            "user '{}' is over its request rate limit ([security] rate_limit = {}/s): retry after {retry_after_ms} ms, or spread the load",
                            sess.username, shared.config.security.rate_limit
                        ),
                        retry_after_ms,
                    );
                    send_frame_error(&shared.codec, &tx, request_id, err, Some(permit));
                    continue;
                }
                spawn_request(
                    &shared,
                    sess.clone(),
                    &conn,
                    &tx,
                    request_id,
                    request,
                    permit,
                );
            }
        }
    };

    // Subscriptions end with the reader: their tasks stop (without END: the connection
    // is going away, with GOAWAY where it says why) and release the writer.
    conn.subscriptions.close();
    let closing = match end {
        ReadEnd::Eof { truncated } => {
            if truncated {
                debug!("peer closed mid-frame; partial frame discarded");
            }
            Closing::PeerGone
        }
        ReadEnd::Io(e) => {
            debug!(error = %e, "read failed");
            Closing::PeerGone
        }
        ReadEnd::Frame(e) => {
            warn!(%peer, error = %e, "closing connection after a bad frame");
            let code = match e {
                FrameError::TooLarge { .. } => ErrorCode::ErrMessageTooLarge,
                FrameError::BadMagic(..) | FrameError::Empty => ErrorCode::ErrProtocol,
            };
            let err = wire::Error::new(code, e.to_string());
            send_frame_error(&shared.codec, &tx, 0, err, None);
            Closing::AfterFinalFrame
        }
        ReadEnd::Timeout => {
            if session.is_some() {
                debug!("idle timeout");
                // Exactly "idle", as the contract names it; clients keep connections
                // alive with OP_PING.
                send_goaway(&shared.codec, &tx, "idle", 0);
            } else {
                warn!(%peer, "handshake timeout");
                let secs = shared.config.wire.handshake_timeout.as_secs_f64();
                let err = wire::Error::new(
                    ErrorCode::ErrTimeout,
                    format!("handshake not completed within {secs}s: send OP_HANDSHAKE right after connecting"),
                );
                send_frame_error(&shared.codec, &tx, 0, err, None);
            }
            Closing::AfterFinalFrame
        }
        ReadEnd::Stalled => {
            warn!(%peer, "closing connection: peer has not read its answers for idle_timeout");
            // Nothing more can reach a peer that does not read: drop it now.
            writer.abort();
            debug!("connection closed");
            return;
        }
        ReadEnd::Shutdown => {
            send_goaway(&shared.codec, &tx, "shutdown", 1000);
            Closing::Draining
        }
        ReadEnd::SessionEnded(why) => {
            send_goaway(&shared.codec, &tx, why, 0);
            Closing::AfterFinalFrame
        }
    };
    if closing == Closing::PeerGone {
        // Nobody will read the answers: stop the connection's running queries now
        // rather than after they finish or the grace period ends.
        conn.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let parts = ConnectionParts {
        reader,
        tx,
        writer,
        inflight,
        max_in_flight,
    };
    finish(parts, &shared, closing).await;
    debug!("connection closed");
}

/// Why `session` can no longer be served (the GOAWAY reason), if it cannot.
fn session_ended(session: &Session) -> Option<&'static str> {
    if session.is_revoked() {
        Some("session_revoked")
    } else if session.expires_at_ms <= crate::session::now_ms() {
        Some("session_expired")
    } else {
        None
    }
}

/// How a connection ends, once the reader has stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The peer closed or the socket failed: finish in-flight work, nothing to say.
    PeerGone,
    /// A final OP_ERROR or GOAWAY is queued: let it out, then linger so the peer
    /// reads it instead of seeing a reset.
    AfterFinalFrame,
    /// Server shutdown: like `AfterFinalFrame`, and requests that still arrive are
    /// answered with a retryable UNAVAILABLE, not executed.
    Draining,
}

/// What `finish` needs of a connection that stopped reading.
struct ConnectionParts {
    reader: Reader,
    tx: Tx,
    writer: tokio::task::JoinHandle<()>,
    inflight: Arc<Semaphore>,
    max_in_flight: usize,
}

/// Waits for in-flight requests (answering late ones with UNAVAILABLE when draining
/// for shutdown), lets the writer flush and half-close, then lingers so the peer
/// reads everything instead of seeing a reset.
async fn finish(conn: ConnectionParts, shared: &Shared, closing: Closing) {
    let ConnectionParts {
        mut reader,
        tx,
        writer,
        inflight,
        max_in_flight,
    } = conn;
    let refuse_late = closing == Closing::Draining;
    let linger = closing != Closing::PeerGone;
    let grace = shared.config.server.shutdown_grace;
    if refuse_late {
        // Requests that arrived with the last read but were not dispatched yet.
        while let Ok(Some(payload)) = reader.codec.decode(&mut reader.buf) {
            refuse_shutting_down(&reader.codec, &tx, payload);
        }
    }
    let all_done = inflight.acquire_many_owned(max_in_flight as u32);
    tokio::pin!(all_done);
    let deadline = Instant::now() + grace;
    let mut refused = 0usize;
    let mut reading = linger;
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            _ = tokio::time::sleep_until(deadline) => {
                warn!("in-flight requests still running after shutdown_grace; closing anyway");
                break;
            }
            read = reader.rd.read_buf(&mut reader.buf), if reading => {
                match read {
                    Ok(0) | Err(_) => reading = false,
                    Ok(_) => loop {
                        match reader.codec.decode(&mut reader.buf) {
                            Ok(Some(payload)) if refuse_late && refused < MAX_REFUSALS_WHILE_DRAINING => {
                                refused += 1;
                                refuse_shutting_down(&reader.codec, &tx, payload);
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => { reading = false; reader.buf.clear(); break; }
                        }
                    },
                }
                reader.buf.reserve(4096);
            }
        }
    }
    drop(tx);
    let abort = writer.abort_handle();
    if tokio::time::timeout(grace, writer).await.is_err() {
        warn!("writer did not finish in time (peer not reading?)");
        abort.abort();
    }
    if reading {
        reader.linger().await;
    }
}

fn spawn_request(
    shared: &Arc<Shared>,
    session: Arc<Session>,
    conn: &Arc<handlers::ConnState>,
    tx: &Tx,
    request_id: u64,
    request: Request,
    permit: OwnedSemaphorePermit,
) {
    let shared = shared.clone();
    let conn = conn.clone();
    let tx = tx.clone();
    let opcode = request.opcode();
    let span = tracing::debug_span!("request", request_id, op = ?opcode, user = %session.username);
    let mut work = Box::pin(
        async move {
            let started = std::time::Instant::now();
            let dispatched = std::panic::AssertUnwindSafe(handlers::dispatch(
                &shared, &session, &conn, request_id, request,
            ))
            .catch_unwind()
            .await;
            let frame = match dispatched {
                Ok(frame) => frame,
                Err(_) => {
                    tracing::error!("request handler panicked");
                    error_frame(
                        &shared.codec,
                        request_id,
                        wire::Error::new(
                            ErrorCode::ErrInternal,
                            "internal error while handling the request; the server logged it",
                        ),
                    )
                }
            };
            debug!(elapsed_us = started.elapsed().as_micros() as u64, "done");
            let _ = tx.send(Outgoing {
                frame,
                _permit: Some(permit),
            });
            if opcode == OpCode::OpSubscribe {
                // Only now, with the SubscribeResponse queued ahead of them, may the
                // subscription's events follow.
                conn.subscriptions.start(request_id, &shared);
            }
        }
        .instrument(span),
    );
    // Most requests outside a transaction (reads above all) finish without waiting
    // for anything: run them here on the reader's task, instead of paying for a task
    // and a wake-up each. One that has to wait (a write's commit, a query on the
    // query pool, ...) becomes a task of its own; spawning polls it again with a
    // real waker, which replaces the no-op one of this first poll.
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    if work.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(work);
    }
}

/// Drains whatever is queued into one buffer per `write` call; half-closes at the end.
async fn write_loop(mut wr: WriteHalf, mut rx: outbox::Receiver<Outgoing>) {
    // Grows with the batches it carries (up to about WRITE_BATCH_BYTES): an idle
    // connection holds no write buffer to speak of.
    let mut buf = BytesMut::new();
    let mut written: Vec<Outgoing> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut queued = first.frame.len();
        written.push(first);
        while queued < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Some(next) => {
                    queued += next.frame.len();
                    written.push(next);
                }
                None => break,
            }
        }
        let wrote = if let [only] = written.as_slice() {
            // Alone in the queue: written from where it is, without a copy.
            wr.write_all(&only.frame).await
        } else {
            for out in &written {
                buf.extend_from_slice(&out.frame);
            }
            wr.write_all(&buf).await
        };
        if let Err(e) = wrote {
            debug!(error = %e, "write failed; dropping the rest");
            return;
        }
        if buf.capacity() > KEPT_WRITE_BUFFER {
            buf = BytesMut::new();
        } else {
            buf.clear();
        }
        // Releases the in-flight permits of everything just written.
        written.clear();
    }
    let _ = wr.shutdown().await;
}

/// Encodes a typed response; a response over `max_frame_bytes` becomes an
/// `ERR_MESSAGE_TOO_LARGE` error for that request.
pub(crate) fn response_frame<M: Message>(
    codec: &FrameCodec,
    opcode: OpCode,
    request_id: u64,
    msg: &M,
) -> Bytes {
    let mut buf = BytesMut::new();
    match encode_frame(codec, opcode, request_id, msg, &mut buf) {
        Ok(()) => buf.freeze(),
        Err(e) => error_frame(
            codec,
            request_id,
            wire::Error::new(
                ErrorCode::ErrMessageTooLarge,
                format!("response too large to send: {e}; ask for fewer documents per request"),
            ),
        ),
    }
}

pub(crate) fn error_frame(codec: &FrameCodec, request_id: u64, err: wire::Error) -> Bytes {
    let mut buf = BytesMut::new();
    // An Error message is small, but its text comes from elsewhere: truncate rather
    // than fail if a limit were ever lower than it.
    let mut err = err;
    if encode_frame(codec, OpCode::OpError, request_id, &err, &mut buf).is_err() {
        err.message.truncate(256);
        buf.clear();
        let _ = encode_frame(codec, OpCode::OpError, request_id, &err, &mut buf);
    }
    buf.freeze()
}

fn send<M: Message>(
    codec: &FrameCodec,
    tx: &Tx,
    opcode: OpCode,
    request_id: u64,
    msg: &M,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = tx.send(Outgoing {
        frame: response_frame(codec, opcode, request_id, msg),
        _permit: permit,
    });
}

fn send_frame_error(
    codec: &FrameCodec,
    tx: &Tx,
    request_id: u64,
    err: wire::Error,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = tx.send(Outgoing {
        frame: error_frame(codec, request_id, err),
        _permit: permit,
    });
}

fn send_goaway(codec: &FrameCodec, tx: &Tx, reason: &str, reconnect_after_ms: u64) {
    let goaway = wire::GoAway {
        reason: reason.to_string(),
        reconnect_after_ms,
    };
    send(codec, tx, OpCode::OpGoaway, 0, &goaway, None);
}

/// Answers a request that arrived after GOAWAY: not executed, safe to retry elsewhere.
fn refuse_shutting_down(codec: &FrameCodec, tx: &Tx, payload: Bytes) {
    let request_id = wire::Envelope::decode(payload)
        .map(|e| e.request_id)
        .unwrap_or(0);
    let err = wire::Error::retryable(
        ErrorCode::ErrUnavailable,
        "server is shutting down: the request was not executed; retry on a new connection",
        1000,
    );
    send_frame_error(codec, tx, request_id, err, None);
}

fn decode_error(e: &DecodeError) -> wire::Error {
    let code = match e {
        DecodeError::UnknownOpcode(_) => ErrorCode::ErrUnknownOpcode,
        DecodeError::Envelope(_) | DecodeError::ServerOnly(_) | DecodeError::Body { .. } => {
            ErrorCode::ErrProtocol
        }
    };
    wire::Error::new(code, e.to_string())
}

/// Writes one `OP_ERROR` to a connection that will not be served, then closes it
/// without resetting the peer.
pub(crate) async fn send_error_and_close(
    stream: TcpStream,
    codec: &FrameCodec,
    request_id: u64,
    err: wire::Error,
) {
    let (rd, mut wr) = stream.into_split();
    let frame = error_frame(codec, request_id, err);
    let _ = tokio::time::timeout(LINGER, wr.write_all(&frame)).await;
    let _ = wr.shutdown().await;
    let mut reader = Reader {
        rd: Box::new(rd),
        buf: BytesMut::new(),
        codec: *codec,
    };
    reader.linger().await;
}
