//! One multiplexed connection: a reader task, a writer task, and a table of requests
//! waiting for their answers.
//!
//! A request gets a fresh `request_id` (starting at 1), registers a waiter in the
//! pending table, then hands its encoded frame to the writer task. The writer drains
//! whatever frames are queued into one `write_all`, so a thousand concurrent requests
//! cost a handful of syscalls, not a thousand. The reader decodes frames and hands each
//! answer to the waiter with the same `request_id`; answers come back in any order.
//!
//! Two kinds of waiter, one table:
//! * a *one-shot* waiter takes the one frame that answers its request;
//! * a *stream* waiter (`OP_SUBSCRIBE`) takes the typed response and then every later
//!   frame with its `request_id`, through a bounded channel, until its final frame: an
//!   `OP_ERROR`, or the frame its `is_last` rule recognizes (a failed response, an END
//!   event). The reader never waits for a slow consumer. The channel holds one slot
//!   more than the stream's capacity, kept for the final item, so the end of a stream
//!   is never lost; a frame that finds the capacity used up is not delivered, and the
//!   stream ends with [`StreamItem::Overflowed`] in the kept slot instead. What to do
//!   about the lost frames is the consumer's call (a subscription resubscribes from the
//!   last event it delivered).
//!
//! Frames with `request_id` 0 are about the connection itself:
//! * `OP_GOAWAY`: no new requests are accepted (they fail with [`Error::GoAway`]);
//!   one-shot requests already sent keep waiting, because the server finishes those
//!   before it closes; whatever is still unanswered when it closes fails with the
//!   GOAWAY. Stream waiters end at once with the GOAWAY: a stream has no end the
//!   server would wait for, so waiting for the close would only delay reconnecting.
//! * `OP_ERROR`: a connection-level error; every waiter fails with it and the
//!   connection takes no new requests.
//!
//! Invariants:
//! * No request waits forever: EOF, an I/O error or a bad frame fail every waiter
//!   (with [`Error::ConnectionClosed`], the GOAWAY, or the server's error), and the
//!   request timeout removes a one-shot waiter whose answer is late. A stream waiter's
//!   last item is always one of: its final frame, `Overflowed`, or `Failed`.
//! * The closed state and the pending table live under one lock, so a request can never
//!   register after the connection failed its pending requests.
//! * A waiter's entry is removed when its future ends for any reason (answered, timed
//!   out, or dropped by the caller), and a stream waiter's when its final item is
//!   queued or its [`FrameStream`] is dropped, so the table only holds live requests.
//! * The reader never awaits a waiter: one-shot sends and `try_send` on bounded stream
//!   channels only. Memory per stream is bounded by its capacity.
//! * The read buffer grows only towards a frame length the [`FrameCodec`] accepted.
//! * Dropping the [`Connection`] fails whatever still waits, stops both tasks and
//!   closes the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use themis_proto::{encode_frame, wire, FrameCodec, FrameError, OpCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// What a stream waiter receives. After `Overflowed`, `Failed`, or the frame that
/// ended the stream, nothing more comes.
#[derive(Debug)]
pub(crate) enum StreamItem {
    /// A frame with the stream's `request_id`.
    Frame(Frame),
    /// The consumer fell behind by the stream's whole capacity: the frame that did not
    /// fit was dropped, and so is everything after it (the registration is gone).
    Overflowed,
    /// The connection failed, closed or is going away.
    Failed(Error),
}

/// A failed [`Connection::attempt`].
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: Error,
    /// The request was queued for the socket, so the server may have run it.
    pub sent: bool,
}

impl Failed {
    fn unsent(error: Error) -> Self {
        Self { error, sent: false }
    }
}

/// Recognizes a stream's final frame (besides `OP_ERROR`, which always is one).
pub(crate) type IsLast = fn(&Frame) -> bool;

enum Waiter {
    /// Takes the one frame that answers the request.
    Once(oneshot::Sender<Result<Frame>>),
    /// Takes frames until the final one. The channel has one slot more than the
    /// stream's capacity, kept for the final item.
    Stream {
        tx: mpsc::Sender<StreamItem>,
        is_last: IsLast,
    },
}

impl Waiter {
    fn is_stream(&self) -> bool {
        matches!(self, Self::Stream { .. })
    }

    /// Hands over `frame` without ever waiting. Returns the waiter if it takes more.
    fn deliver(self, frame: Frame) -> Option<Self> {
        match self {
            Self::Once(tx) => {
                // The caller may have given up already; nothing to do then.
                let _ = tx.send(Ok(frame));
                None
            }
            Self::Stream { tx, is_last } => {
                let last = frame.opcode == OpCode::OpError as i32 || is_last(&frame);
                let item = if last {
                    StreamItem::Frame(frame)
                } else if tx.capacity() > 1 {
                    // Only the holder of the waiter (taken out of the table, under
                    // its lock) sends, so the capacity just seen is still there. Only
                    // a consumer that went away makes this fail.
                    return match tx.try_send(StreamItem::Frame(frame)) {
                        Ok(()) => Some(Self::Stream { tx, is_last }),
                        Err(_) => None,
                    };
                } else {
                    tracing::debug!(
                        capacity = tx.max_capacity() - 1,
                        "stream consumer fell behind by its whole buffer; ending the stream as overflowed"
                    );
                    StreamItem::Overflowed
                };
                // The kept slot: free unless the consumer is gone.
                let _ = tx.try_send(item);
                None
            }
        }
    }

    /// Ends the waiter with the connection's error, without waiting (a stream's final
    /// item goes into its kept slot).
    fn fail(self, error: Error) {
        match self {
            Self::Once(tx) => {
                let _ = tx.send(Err(error));
            }
            Self::Stream { tx, .. } => {
                let _ = tx.try_send(StreamItem::Failed(error));
            }
        }
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Waiter>,
    /// Set once; the first reason wins.
    closed: Option<CloseReason>,
}

/// What the reader, the writer and the request futures share.
struct Shared {
    state: Mutex<State>,
    /// When the connection started; `last_activity_ms` counts from here.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last frame read or written (keep-alive).
    last_activity_ms: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    /// Records traffic on the connection (a frame read or written).
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across code that can panic halfway through an update,
        // so a poisoned table is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recorded close reason as an error, or `ConnectionClosed(fallback)`.
    fn closed_error(&self, fallback: &str) -> Error {
        match &self.lock().closed {
            Some(reason) => reason.to_error(),
            None => Error::ConnectionClosed {
                reason: fallback.to_owned(),
            },
        }
    }

    /// Stops new requests with `reason` (unless already stopped) and ends the stream
    /// waiters with it; one-shot requests in flight keep waiting for their answers.
    fn refuse_new(&self, reason: CloseReason) {
        let (streams, reason) = {
            let mut state = self.lock();
            let reason = state.closed.get_or_insert(reason).clone();
            let ids: Vec<u64> = state
                .pending
                .iter()
                .filter(|(_, waiter)| waiter.is_stream())
                .map(|(id, _)| *id)
                .collect();
            let streams: Vec<Waiter> = ids
                .iter()
                .filter_map(|id| state.pending.remove(id))
                .collect();
            (streams, reason)
        };
        for stream in streams {
            stream.fail(reason.to_error());
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
            waiter.fail(reason.to_error());
        }
    }

    /// Adds a waiter, unless the connection no longer takes requests.
    fn register(&self, request_id: u64, waiter: Waiter) -> Result<()> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(reason.to_error());
        }
        state.pending.insert(request_id, waiter);
        Ok(())
    }

    /// Hands a frame to the waiter for `request_id`, keeping a stream waiter that takes
    /// more.
    fn deliver(&self, request_id: u64, frame: Frame) {
        let mut state = self.lock();
        let Some(waiter) = state.pending.remove(&request_id) else {
            drop(state);
            tracing::debug!(
                request_id,
                opcode = frame.opcode,
                "dropping a frame for a request nobody waits for (timed out, cancelled or ended)"
            );
            return;
        };
        // Under the lock, so a `FrameStream` dropped meanwhile cannot be put back.
        if let Some(waiter) = waiter.deliver(frame) {
            state.pending.insert(request_id, waiter);
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
        // flushing what is queued and shutting down the write half. The aborted reader
        // will not fail what still waits, so do it here.
        self.reader_task.abort();
        self.shared.fail_all(CloseReason::Closed(
            "the client's last handle was dropped".to_owned(),
        ));
    }
}

impl Connection {
    /// Starts the reader and writer tasks on an open TCP stream.
    ///
    /// `max_frame_bytes` limits frames in both directions until
    /// [`Self::set_send_limit`] raises or lowers the outgoing one.
    pub fn start(stream: TcpStream, max_frame_bytes: u32) -> Self {
        let peer = peer_of(&stream);
        let (read_half, write_half) = stream.into_split();
        Self::start_halves(read_half, write_half, peer, max_frame_bytes)
    }

    /// [`Self::start`] on any other stream: TLS over TCP.
    pub fn start_tls<S>(stream: S, peer: String, max_frame_bytes: u32) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        Self::start_halves(read_half, write_half, peer, max_frame_bytes)
    }

    fn start_halves<R, W>(read_half: R, write_half: W, peer: String, max_frame_bytes: u32) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared::new());
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

    /// Requests sent and not yet answered; a live stream counts as one.
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
        self.attempt(opcode, msg, timeout)
            .await
            .map_err(|f| f.error)
    }

    /// [`Self::request`], telling on failure whether the request may have reached
    /// the server ([`Failed::sent`]): a request refused before it was queued for the
    /// socket (the connection was already closed or going away) certainly did not.
    pub async fn attempt<M: Message>(
        &self,
        opcode: OpCode,
        msg: &M,
        timeout: Option<Duration>,
    ) -> std::result::Result<Frame, Failed> {
        let (request_id, frame) = self.encode(opcode, msg).map_err(Failed::unsent)?;
        let (tx, rx) = oneshot::channel();
        self.shared
            .register(request_id, Waiter::Once(tx))
            .map_err(Failed::unsent)?;
        let _guard = PendingGuard {
            shared: &self.shared,
            request_id,
        };
        // The writer drops a frame only when it stopped, and then nothing was sent.
        self.write(frame).await.map_err(Failed::unsent)?;

        let answer = async {
            match rx.await {
                Ok(answer) => answer,
                // The waiter was dropped without an answer: only when the table was
                // torn down, which always records a reason first.
                Err(_) => Err(self.shared.closed_error("the connection stopped")),
            }
        };
        let answered = match timeout {
            None => answer.await,
            Some(timeout) => match tokio::time::timeout(timeout, answer).await {
                Ok(answer) => answer,
                Err(_) => Err(Error::Timeout {
                    operation: format!("{} request {request_id}", opcode.as_str_name()),
                    after: timeout,
                }),
            },
        };
        answered.map_err(|error| Failed { error, sent: true })
    }

    /// How long nothing was read from or written to the connection.
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.shared.last_activity_ms.load(Ordering::Relaxed));
        self.shared.epoch.elapsed().saturating_sub(last)
    }

    /// Closes the connection from this side: new requests are refused and every
    /// waiter fails with `ConnectionClosed(reason)`; the reader stops. The socket
    /// closes when the `Connection` is dropped.
    pub fn close(&self, reason: String) {
        self.shared.fail_all(CloseReason::Closed(reason));
        self.reader_task.abort();
    }

    /// Sends `msg` as a request answered by a stream of frames, and returns the
    /// stream; see the module docs. At most `capacity` frames wait in it for the
    /// consumer; one more would end it with [`StreamItem::Overflowed`]. Bounding the
    /// wait for the first frame is the caller's job.
    pub async fn request_stream<M: Message>(
        &self,
        opcode: OpCode,
        msg: &M,
        capacity: usize,
        is_last: IsLast,
    ) -> Result<FrameStream> {
        let (request_id, frame) = self.encode(opcode, msg)?;
        let (tx, rx) = mpsc::channel(capacity.max(1) + 1);
        self.shared
            .register(request_id, Waiter::Stream { tx, is_last })?;
        // Registered first, so no frame can arrive before its waiter; dropped on any
        // error below, which removes the registration.
        let stream = FrameStream {
            request_id,
            rx,
            shared: self.shared.clone(),
        };
        self.write(frame).await?;
        Ok(stream)
    }

    /// A fresh request id and the request encoded as a frame, within the send limit.
    fn encode<M: Message>(&self, opcode: OpCode, msg: &M) -> Result<(u64, Bytes)> {
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
        Ok((request_id, buf.freeze()))
    }

    /// Queues a frame for the writer (waiting while the queue is full).
    async fn write(&self, frame: Bytes) -> Result<()> {
        self.writer.send(frame).await.map_err(|_| {
            self.shared
                .closed_error("the connection's writer has stopped")
        })
    }
}

/// The receiving end of a stream waiter (see [`Connection::request_stream`]).
/// Dropping it removes the registration; later frames for its request are discarded.
pub(crate) struct FrameStream {
    request_id: u64,
    rx: mpsc::Receiver<StreamItem>,
    shared: Arc<Shared>,
}

impl FrameStream {
    /// The next item. After a final item (see [`StreamItem`]) this reports the
    /// connection as closed.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<StreamItem> {
        self.rx.poll_recv(cx).map(|item| {
            // Every sender gone without a final item: only when the table was torn
            // down, which always records a reason first.
            item.unwrap_or_else(|| {
                StreamItem::Failed(self.shared.closed_error("the stream's connection stopped"))
            })
        })
    }

    /// The next item; see [`Self::poll_recv`].
    pub async fn recv(&mut self) -> StreamItem {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.request_id);
    }
}

impl std::fmt::Debug for FrameStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameStream")
            .field("request_id", &self.request_id)
            .field("buffered", &self.rx.len())
            .finish()
    }
}

/// Writes queued frames, coalescing everything already queued into one `write_all`.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
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
        shared.touch();
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
async fn read_loop<R: AsyncRead + Unpin>(mut socket: R, codec: FrameCodec, shared: Arc<Shared>) {
    let reason = read_frames(&mut socket, codec, &shared).await;
    shared.fail_all(reason);
}

async fn read_frames<R: AsyncRead + Unpin>(
    socket: &mut R,
    codec: FrameCodec,
    shared: &Shared,
) -> CloseReason {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(payload)) => {
                    shared.touch();
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
        shared.deliver(
            envelope.request_id,
            Frame {
                opcode: envelope.opcode,
                body: envelope.body,
            },
        );
        return Ok(());
    }
    match OpCode::try_from(envelope.opcode) {
        Ok(OpCode::OpGoaway) => {
            let goaway = wire::GoAway::decode(envelope.body).unwrap_or_else(|e| wire::GoAway {
                reason: format!("(undecodable GoAway body: {e})"),
                reconnect_after_ms: 0,
            });
            tracing::info!(reason = %goaway.reason, "server sent GOAWAY");
            // One-shot requests in flight are still answered; new ones are refused and
            // streams end now.
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

/// The server's address as the socket sees it, with TCP_NODELAY set on the way:
/// requests are small and latency-bound, and the writer already coalesces.
pub(crate) fn peer_of(stream: &TcpStream) -> String {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: OpCode, body: &'static [u8]) -> Frame {
        Frame {
            opcode: opcode as i32,
            body: Bytes::from_static(body),
        }
    }

    /// A frame whose body is `b"last"` ends the test streams.
    fn body_says_last(frame: &Frame) -> bool {
        frame.body.as_ref() == b"last"
    }

    fn stream(shared: &Arc<Shared>, request_id: u64, capacity: usize) -> FrameStream {
        let (tx, rx) = mpsc::channel(capacity + 1);
        shared
            .register(
                request_id,
                Waiter::Stream {
                    tx,
                    is_last: body_says_last,
                },
            )
            .unwrap();
        FrameStream {
            request_id,
            rx,
            shared: shared.clone(),
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new())
    }

    fn next(stream: &mut FrameStream) -> StreamItem {
        let waker = futures::task::noop_waker();
        match stream.poll_recv(&mut Context::from_waker(&waker)) {
            Poll::Ready(item) => item,
            Poll::Pending => panic!("nothing queued"),
        }
    }

    fn body(item: StreamItem) -> Bytes {
        match item {
            StreamItem::Frame(f) => f.body,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn stream_takes_frames_until_its_last_one() {
        let shared = shared();
        let mut s = stream(&shared, 7, 4);
        shared.deliver(7, frame(OpCode::OpSubscribe, b"response"));
        shared.deliver(7, frame(OpCode::OpEvent, b"one"));
        shared.deliver(7, frame(OpCode::OpEvent, b"last"));
        assert_eq!(shared.lock().pending.len(), 0, "the last frame ends it");
        shared.deliver(7, frame(OpCode::OpEvent, b"late"));
        assert_eq!(body(next(&mut s)), "response");
        assert_eq!(body(next(&mut s)), "one");
        assert_eq!(body(next(&mut s)), "last");
        assert!(matches!(next(&mut s), StreamItem::Failed(_)));
    }

    #[test]
    fn op_error_ends_a_stream() {
        let shared = shared();
        let mut s = stream(&shared, 1, 4);
        shared.deliver(1, frame(OpCode::OpError, b""));
        assert!(shared.lock().pending.is_empty());
        assert!(matches!(next(&mut s), StreamItem::Frame(f) if f.opcode == OpCode::OpError as i32));
    }

    #[test]
    fn full_stream_overflows_but_keeps_what_it_has() {
        let shared = shared();
        let mut s = stream(&shared, 3, 2);
        for _ in 0..5 {
            shared.deliver(3, frame(OpCode::OpEvent, b"e"));
        }
        assert!(
            shared.lock().pending.is_empty(),
            "overflow drops the registration"
        );
        assert_eq!(body(next(&mut s)), "e");
        assert_eq!(body(next(&mut s)), "e");
        assert!(matches!(next(&mut s), StreamItem::Overflowed));
    }

    #[test]
    fn full_stream_still_gets_its_last_frame_and_errors() {
        let shared = shared();
        let mut s = stream(&shared, 3, 1);
        shared.deliver(3, frame(OpCode::OpEvent, b"e"));
        shared.deliver(3, frame(OpCode::OpEvent, b"last"));
        assert_eq!(body(next(&mut s)), "e");
        assert_eq!(body(next(&mut s)), "last");

        let mut s = stream(&shared, 4, 1);
        shared.deliver(4, frame(OpCode::OpEvent, b"e"));
        shared.fail_all(CloseReason::Closed("gone".into()));
        assert_eq!(body(next(&mut s)), "e");
        assert!(
            matches!(next(&mut s), StreamItem::Failed(Error::ConnectionClosed { reason }) if reason == "gone")
        );
    }

    #[test]
    fn goaway_ends_streams_now_and_leaves_one_shot_requests_waiting() {
        let shared = shared();
        let mut s = stream(&shared, 1, 4);
        let (tx, _rx) = oneshot::channel();
        shared.register(2, Waiter::Once(tx)).unwrap();
        shared.refuse_new(CloseReason::GoAway {
            reason: "shutdown".into(),
            reconnect_after_ms: 0,
        });
        assert!(matches!(
            next(&mut s),
            StreamItem::Failed(Error::GoAway { .. })
        ));
        let state = shared.lock();
        assert_eq!(state.pending.len(), 1);
        assert!(state.pending.contains_key(&2));
    }

    #[test]
    fn dropping_the_stream_removes_its_registration() {
        let shared = shared();
        let s = stream(&shared, 9, 4);
        assert_eq!(shared.lock().pending.len(), 1);
        drop(s);
        assert!(shared.lock().pending.is_empty());
        // A frame for it now is discarded, not an error.
        shared.deliver(9, frame(OpCode::OpEvent, b"e"));
    }

    #[test]
    fn no_registration_after_close() {
        let shared = shared();
        shared.fail_all(CloseReason::Closed("gone".into()));
        let (tx, _rx) = mpsc::channel(2);
        let err = shared
            .register(
                1,
                Waiter::Stream {
                    tx,
                    is_last: body_says_last,
                },
            )
            .unwrap_err();
        assert!(err.is_connection_error());
    }
}
