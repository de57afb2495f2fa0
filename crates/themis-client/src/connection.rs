//! One multiplexed connection: a reader task, a writer task, and a table of requests
//! waiting for their answers.
//!
//! A request gets a fresh `request_id` (starting at 1), registers a one-shot waiter in
//! the pending table, then hands its encoded frame to the writer task. The writer
//! drains whatever frames are queued into one `write_all`, so a thousand concurrent
//! requests cost a handful of syscalls, not a thousand. The reader decodes frames and
//! hands each answer to the waiter with the same `request_id`; answers come back in any
//! order.
//!
//! Frames with `request_id` 0 are about the connection itself:
//! * `OP_GOAWAY`: no new requests are accepted (they fail with [`Error::GoAway`]);
//!   requests already sent keep waiting, because the server finishes those before it
//!   closes; whatever is still unanswered when it closes fails with the GOAWAY.
//! * `OP_ERROR`: a connection-level error; every pending request fails with it and the
//!   connection takes no new requests.
//!
//! Invariants:
//! * No request waits forever: EOF, an I/O error or a bad frame fail every pending
//!   request (with [`Error::ConnectionClosed`], the GOAWAY, or the server's error),
//!   and the request timeout removes a waiter whose answer is late.
//! * The closed state and the pending table live under one lock, so a request can never
//!   register after the connection failed its pending requests.
//! * A waiter's entry is removed when its future ends for any reason (answered, timed
//!   out, or dropped by the caller), so the table only holds live requests.
//! * The read buffer grows only towards a frame length the [`FrameCodec`] accepted.
//! * Dropping the [`Connection`] stops both tasks and closes the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use themis_proto::{encode_frame, wire, FrameCodec, FrameError, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Frames queued for the writer before senders wait (backpressure when the server
/// stops reading).
const WRITE_QUEUE_FRAMES: usize = 4096;
/// Stop coalescing queued frames into one write beyond this many bytes.
const MAX_COALESCED_BYTES: usize = 1 << 20;
/// Minimum free space offered to each socket read.
const READ_CHUNK: usize = 16 * 1024;

/// One answer frame, as delivered to the request that waits for it.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub opcode: i32,
    pub body: Bytes,
}

/// Why the connection takes no new requests. Cloneable, so one reason can fail many
/// waiters.
#[derive(Debug, Clone)]
enum CloseReason {
    Closed(String),
    GoAway {
        reason: String,
        reconnect_after_ms: u64,
    },
    Server(wire::Error),
    Protocol(String),
}

impl CloseReason {
    fn to_error(&self) -> Error {
        match self {
            Self::Closed(reason) => Error::ConnectionClosed {
                reason: reason.clone(),
            },
            Self::GoAway {
                reason,
                reconnect_after_ms,
            } => Error::GoAway {
                reason: reason.clone(),
                reconnect_after_ms: *reconnect_after_ms,
            },
            Self::Server(e) => Error::from(e.clone()),
            Self::Protocol(m) => Error::Protocol(m.clone()),
        }
    }
}

type Waiter = oneshot::Sender<Result<Frame>>;

#[derive(Default)]
struct State {
    pending: HashMap<u64, Waiter>,
    /// Set once; the first reason wins.
    closed: Option<CloseReason>,
}

/// What the reader, the writer and the request futures share.
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across code that can panic halfway through an update,
        // so a poisoned table is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops new requests with `reason` (unless already stopped) without touching the
    /// requests in flight.
    fn refuse_new(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(reason);
        }
    }

    /// Stops new requests and fails every pending one, with the first recorded reason.
    fn fail_all(&self, reason: CloseReason) {
        let (waiters, reason) = {
            let mut state = self.lock();
            let reason = state.closed.get_or_insert(reason).clone();
            let waiters: Vec<Waiter> = state.pending.drain().map(|(_, w)| w).collect();
            (waiters, reason)
        };
        if !waiters.is_empty() {
            tracing::debug!(count = waiters.len(), ?reason, "failing pending requests");
        }
        for waiter in waiters {
            // The caller may have given up already; nothing to do then.
            let _ = waiter.send(Err(reason.to_error()));
        }
    }
}

/// Removes a request's pending entry when its future ends, however it ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    request_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.request_id);
    }
}

/// A multiplexed connection to one server. Not `Clone`: share it behind an `Arc`.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    next_request_id: AtomicU64,
    /// Limit for frames we send: the server's advertised `max_frame_bytes` once known.
    send_limit: AtomicU32,
    writer: mpsc::Sender<Bytes>,
    reader_task: JoinHandle<()>,
    peer: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer ends by itself when `self.writer` (its only sender) is dropped,
        // flushing what is queued and shutting down the write half.
        self.reader_task.abort();
    }
}

impl Connection {
    /// Starts the reader and writer tasks on an open stream.
    ///
    /// `max_frame_bytes` limits frames in both directions until
    /// [`Self::set_send_limit`] raises or lowers the outgoing one.
    pub fn start(stream: TcpStream, max_frame_bytes: u32) -> Self {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "unknown peer".to_owned());
        // Requests are small and latency-bound; the writer already coalesces.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        tokio::spawn(write_loop(write_half, rx, shared.clone()));
        let reader_task = tokio::spawn(read_loop(
            read_half,
            FrameCodec::new(max_frame_bytes),
            shared.clone(),
        ));
        Self {
            shared,
            next_request_id: AtomicU64::new(1),
            send_limit: AtomicU32::new(max_frame_bytes),
            writer: tx,
            reader_task,
            peer,
        }
    }

    /// The server's address as seen by the socket.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sets the limit for outgoing frames (the server's `max_frame_bytes`).
    pub fn set_send_limit(&self, max_frame_bytes: u32) {
        self.send_limit.store(max_frame_bytes, Ordering::Relaxed);
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Whether the connection refuses new requests (closed, failed or going away).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends `msg` as a request with `opcode` and waits up to `timeout` for the frame
    /// that answers it (which may be `OP_ERROR`; the caller interprets it). `None`
    /// waits without a limit of its own: only for callers that bound the whole
    /// exchange themselves (the handshake, under the connect timeout).
    pub async fn request<M: Message>(
        &self,
        opcode: OpCode,
        msg: &M,
        timeout: Option<Duration>,
    ) -> Result<Frame> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let codec = FrameCodec::new(self.send_limit.load(Ordering::Relaxed));
        let mut buf = BytesMut::new();
        encode_frame(&codec, opcode, request_id, msg, &mut buf).map_err(|e| match e {
            FrameError::TooLarge { len, max } => Error::MessageTooLarge {
                len: if len == u32::MAX {
                    msg.encoded_len() as u64
                } else {
                    u64::from(len)
                },
                max,
            },
            other => Error::Protocol(format!("could not encode request: {other}")),
        })?;

        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(reason.to_error());
            }
            state.pending.insert(request_id, tx);
        }
        let _guard = PendingGuard {
            shared: &self.shared,
            request_id,
        };

        let exchange = async {
            if self.writer.send(buf.freeze()).await.is_err() {
                return Err(self.closed_error("the connection's writer has stopped"));
            }
            match rx.await {
                Ok(answer) => answer,
                // The waiter was dropped without an answer: only when the table was
                // torn down, which always records a reason first.
                Err(_) => Err(self.closed_error("the connection stopped")),
            }
        };
        let Some(timeout) = timeout else {
            return exchange.await;
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout {
                operation: format!("{} request {request_id}", opcode.as_str_name()),
                after: timeout,
            }),
        }
    }

    /// The recorded close reason as an error, or `ConnectionClosed(fallback)`.
    fn closed_error(&self, fallback: &str) -> Error {
        match &self.shared.lock().closed {
            Some(reason) => reason.to_error(),
            None => Error::ConnectionClosed {
                reason: fallback.to_owned(),
            },
        }
    }
}

/// Writes queued frames, coalescing everything already queued into one `write_all`.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let written = match rx.try_recv() {
            // Only one frame queued: write it as is, no copy.
            Err(_) => socket.write_all(&first).await,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while batch.len() < MAX_COALESCED_BYTES {
                    match rx.try_recv() {
                        Ok(frame) => batch.extend_from_slice(&frame),
                        Err(_) => break,
                    }
                }
                let written = socket.write_all(&batch).await;
                if batch.capacity() > 4 * MAX_COALESCED_BYTES {
                    // One huge frame went through; do not keep its buffer forever.
                    batch = BytesMut::new();
                }
                written
            }
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "write to server failed");
            shared.fail_all(CloseReason::Closed(format!(
                "write to the server failed: {e}"
            )));
            return;
        }
    }
    // Every sender is gone: the client was dropped. Say goodbye politely.
    let _ = socket.shutdown().await;
}

/// Reads frames and hands each to its waiter until EOF, an I/O error or a bad frame.
async fn read_loop(mut socket: OwnedReadHalf, codec: FrameCodec, shared: Arc<Shared>) {
    let reason = read_frames(&mut socket, codec, &shared).await;
    shared.fail_all(reason);
}

async fn read_frames(
    socket: &mut OwnedReadHalf,
    codec: FrameCodec,
    shared: &Shared,
) -> CloseReason {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(payload)) => {
                    if let Err(reason) = dispatch(payload, shared) {
                        return reason;
                    }
                }
                Ok(None) => break,
                Err(e) => return CloseReason::Protocol(format!("bad frame from the server: {e}")),
            }
        }
        // Only a length the codec accepted decides how far the buffer grows.
        let needed = match codec.bytes_needed(&buf) {
            Ok(n) => n,
            Err(e) => return CloseReason::Protocol(format!("bad frame from the server: {e}")),
        };
        buf.reserve(needed.max(READ_CHUNK));
        match socket.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => {
                return CloseReason::Closed("the server closed the connection".to_owned())
            }
            Ok(0) => {
                return CloseReason::Closed(format!(
                    "the server closed the connection in the middle of a frame ({} bytes of it received)",
                    buf.len()
                ))
            }
            Ok(_) => {}
            Err(e) => return CloseReason::Closed(format!("read from the server failed: {e}")),
        }
    }
}

/// Routes one frame. `Err` means the connection must stop reading.
fn dispatch(payload: Bytes, shared: &Shared) -> std::result::Result<(), CloseReason> {
    let envelope = wire::Envelope::decode(payload).map_err(|e| {
        CloseReason::Protocol(format!("frame payload is not a valid Envelope: {e}"))
    })?;
    if envelope.request_id != 0 {
        let waiter = shared.lock().pending.remove(&envelope.request_id);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(Ok(Frame {
                    opcode: envelope.opcode,
                    body: envelope.body,
                }));
            }
            None => tracing::debug!(
                request_id = envelope.request_id,
                opcode = envelope.opcode,
                "dropping a frame for a request nobody waits for (timed out or cancelled)"
            ),
        }
        return Ok(());
    }
    match OpCode::try_from(envelope.opcode) {
        Ok(OpCode::OpGoaway) => {
            let goaway = wire::GoAway::decode(envelope.body).unwrap_or_else(|e| wire::GoAway {
                reason: format!("(undecodable GoAway body: {e})"),
                reconnect_after_ms: 0,
            });
            tracing::info!(reason = %goaway.reason, "server sent GOAWAY");
            // Requests in flight are still answered; only new ones are refused.
            shared.refuse_new(CloseReason::GoAway {
                reason: goaway.reason,
                reconnect_after_ms: goaway.reconnect_after_ms,
            });
            Ok(())
        }
        Ok(OpCode::OpError) => {
            let error = wire::Error::decode(envelope.body).map_err(|e| {
                CloseReason::Protocol(format!(
                    "connection-level OP_ERROR with an undecodable body: {e}"
                ))
            })?;
            tracing::warn!(code = error.code, message = %error.message, "connection-level error from server");
            shared.fail_all(CloseReason::Server(error));
            Ok(())
        }
        _ => {
            tracing::debug!(
                opcode = envelope.opcode,
                "ignoring unexpected server frame with request_id 0"
            );
            Ok(())
        }
    }
}
