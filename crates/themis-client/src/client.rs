//! [`Client`]: the cloneable handle and the request path every typed call goes
//! through.
//!
//! A `Client` is an `Arc` around a [`Pool`] (see `pool`: the connections, how one is
//! chosen per request, reconnection, keep-alive, statistics) and the name of the
//! database its requests address. Clones, [`Client::database`] handles and
//! [`Collection`]s all share that pool; its connections close when the last of them is
//! dropped.
//!
//! Each request leases a connection from the pool for its round trip
//! ([`Client::exchange`]). When the connection dies under it (`ConnectionClosed`,
//! `GoAway`, I/O), the request is sent once more, on another connection, when that is
//! safe:
//! * reads — `READ`, `PING`, `BEGIN_TX` (the server drops a transaction with its
//!   connection), an `explain`, ADMIN listings, stats and who-am-i;
//! * writes that carry a request key (`CREATE`, `UPDATE`, `DELETE` made through
//!   [`Collection`]), when the server advertised `FEATURE_REQUEST_KEYS`: the server
//!   remembers the key with the write, in the same storage transaction, and answers a
//!   resend with the first answer instead of applying it twice;
//! * any request refused before it was queued for the socket (the connection was found
//!   closed): it was certainly not sent;
//! * any request still unanswered when a connection closes after a `shutdown` GOAWAY:
//!   the server had stopped reading before it arrived, so it never ran.
//!
//! A read or a keyed write answered with `ERR_UNAVAILABLE` (what a server shutting
//! down answers to requests that reach it after its GOAWAY, without executing them) is
//! sent again too, up to three times.
//!
//! `QUERY` is never sent again (the client cannot tell a reading AQL query from a
//! writing one), nor is a write without a key: they fail with the connection error,
//! saying the write may or may not have been applied.
//!
//! Pinned state: a [`crate::Transaction`] and a query's cursor keep the `Arc<Session>`
//! they began on (a pinned `Client`), never the pool, and never reconnect: when that
//! connection dies their requests fail with [`Error::StateLost`].
//!
//! Invariants: a request that fails is always an `Err`, never a response with
//! `success = false` — except from [`Client::raw_request`], which returns typed
//! responses untouched so tests can look at them. No request waits longer than its
//! `request_timeout`, waiting for a connection included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use themis_proto::{wire, OpCode, TypedResponse};

use crate::collection::Collection;
use crate::connection::{Failed, Frame, FrameStream, IsLast, StreamItem};
use crate::error::{check, Error, Result};
use crate::options::{ClientOptions, ConnectTarget};
use crate::pool::{unix_millis, Lease, Pool, PoolStats, Session};

/// When a request whose connection died under it may be sent again (see the module
/// docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Never: it may have been applied.
    Never,
    /// It only reads.
    Read,
    /// It carries a request key: when the server deduplicates them.
    Keyed,
}

impl Resend {
    /// `Read` for reading opcodes, else `Never`.
    pub(crate) fn of(opcode: OpCode) -> Self {
        if is_read(opcode) {
            Self::Read
        } else {
            Self::Never
        }
    }
}

/// What state a pinned client holds on its session.
#[derive(Clone, Debug)]
pub(crate) enum Holder {
    Transaction(Arc<str>),
    Cursor,
    /// A stream of frames (a subscription).
    Stream,
}

/// A session that requests must use, and no other.
#[derive(Clone)]
struct Pinned {
    /// The connection's pool slot, held until the last clone of the handle is dropped.
    lease: Arc<Lease>,
    holder: Holder,
}

impl Pinned {
    /// The error for a request on a pinned session whose connection died.
    fn lost(&self, opcode: OpCode, failed: Failed) -> Error {
        let cause = failed.error;
        match &self.holder {
            Holder::Transaction(id) if opcode == OpCode::OpCommitTx && failed.sent => with_context(
                cause,
                &format!(
                    "the connection holding transaction {id} closed during COMMIT: the \
                         transaction may or may not have been committed"
                ),
            ),
            Holder::Transaction(id) => Error::StateLost {
                message: format!(
                    "the connection holding transaction {id} closed; the server rolled it \
                     back: run the transaction again (cause: {cause})"
                ),
            },
            Holder::Cursor => Error::StateLost {
                message: format!(
                    "the connection holding this cursor closed: run the query again \
                     (cause: {cause})"
                ),
            },
            // A stream's owner (a subscription) resumes elsewhere on connection errors.
            Holder::Stream => cause,
        }
    }
}

/// A connection error with `context` added to its message (same variant and kind).
fn with_context(error: Error, context: &str) -> Error {
    match error {
        Error::ConnectionClosed { reason } => Error::ConnectionClosed {
            reason: format!("{reason}; {context}"),
        },
        Error::GoAway {
            reason,
            reconnect_after_ms,
        } => Error::GoAway {
            reason: format!("{reason}; {context}"),
            reconnect_after_ms,
        },
        Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), format!("{e}; {context}"))),
        other => other,
    }
}

/// A handle to a ThemisDB deployment (one server or several). Cheap to clone; clones
/// share one pool of multiplexed connections, and calls from many tasks run
/// concurrently over it. The pool reconnects by itself (see the module docs).
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
    /// Set for a transaction's or a cursor's handle: the session it must use.
    pinned: Option<Pinned>,
    /// The database requests address; `None` = the connection's default.
    database: Option<Arc<str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = self.session();
        f.debug_struct("Client")
            .field("targets", &self.pool.addrs())
            .field("peer", &session.connection.peer())
            .field("database", &self.database_name())
            .field("username", &session.server_info.username)
            .field("closed", &self.is_closed())
            .field("pinned", &self.pinned.as_ref().map(|p| &p.holder))
            .finish()
    }
}

impl Client {
    /// Connects to `host:port` (no credentials), `host1:port1,host2:port2`, or
    /// `themis://user:pass@host:port/db` (also with several hosts), and performs the
    /// handshake: with the first target that answers, then (with
    /// [`ClientOptions::enable_warmup`]) the pool's minimum with every target.
    pub async fn connect(addr_or_url: &str) -> Result<Self> {
        Self::connect_with(addr_or_url, ClientOptions::default()).await
    }

    /// Like [`Client::connect`], with options. Credentials, database and query
    /// parameters (TLS, timeouts: see [`UrlParams`](crate::UrlParams)) in a URL replace
    /// those in `options`.
    pub async fn connect_with(addr_or_url: &str, options: ClientOptions) -> Result<Self> {
        let target = ConnectTarget::parse(addr_or_url)?;
        let options = target.apply_to(options);
        Ok(Self {
            pool: Pool::connect(target, options).await?,
            pinned: None,
            database: None,
        })
    }

    /// A handle whose requests address database `name` (over the same pool).
    pub fn database(&self, name: &str) -> Client {
        Client {
            pool: self.pool.clone(),
            pinned: self.pinned.clone(),
            database: Some(Arc::from(name)),
        }
    }

    /// A handle to collection `name` in this handle's database.
    pub fn collection(&self, name: &str) -> Collection {
        Collection::new(self.clone(), name)
    }

    /// The database this handle's requests address.
    pub fn database_name(&self) -> &str {
        match &self.database {
            Some(name) => name,
            None => &self.pool.default_database,
        }
    }

    /// The session token of the current connection (for a handle that is not pinned:
    /// one of the pool's open connections, else the last one opened), for resuming the
    /// session later. A resumed session
    /// keeps its token; one made with the credentials again (after a server restart)
    /// has a new one.
    pub fn session_token(&self) -> String {
        self.session().session_token.clone()
    }

    /// What the server said about itself in the current connection's handshake.
    pub fn server_info(&self) -> wire::ServerInfo {
        self.session().server_info.clone()
    }

    /// The options this client was connected with (URL parts applied).
    pub fn options(&self) -> &ClientOptions {
        &self.pool.options
    }

    /// A snapshot of the connection pool: what is open and what happened so far.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Requests sent on the current connection and not yet answered; a live
    /// subscription on it counts as one, and so does a keep-alive ping.
    pub fn in_flight_requests(&self) -> usize {
        self.session().connection.in_flight()
    }

    /// For a transaction's or cursor's handle: whether its connection refuses new
    /// requests (closed, failed, or the server sent GOAWAY); it stays closed. For any
    /// other handle: whether the pool has no open connection now (the next request
    /// waits for one).
    pub fn is_closed(&self) -> bool {
        match &self.pinned {
            Some(pinned) => pinned.lease.session.connection.is_closed(),
            None => self.pool.any_open().is_none(),
        }
    }

    /// Measures a round trip (`OP_PING` answered by `OP_PONG`).
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let pong: wire::Pong = self
            .raw_request(
                OpCode::OpPing,
                &wire::Ping {
                    timestamp_ms: unix_millis(),
                },
            )
            .await?;
        tracing::trace!(server_time_ms = pong.server_time_ms, "pong");
        Ok(started.elapsed())
    }

    /// Sends any request and returns the decoded answer, untouched: a typed response
    /// with `success = false` is returned as is (see [`Error::from_failed_response`]).
    /// An `OP_ERROR` answer is returned as [`Error::Server`].
    ///
    /// `Resp` must be the opcode's response type (`Pong` for `OP_PING`). Fields such as
    /// `database` and `session_token` are sent exactly as given.
    pub async fn raw_request<Req, Resp>(&self, opcode: OpCode, request: &Req) -> Result<Resp>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let (frame, _) = self.exchange(opcode, request, Resend::of(opcode)).await?;
        decode_answer(opcode, frame)
    }

    /// Sends a request whose answer is a typed response, and turns `success = false`
    /// into its error. Sent again after a connection failure when that is safe for
    /// `opcode` ([`Resend::of`]; writes with a request key use [`Self::call_as`]).
    pub(crate) async fn call<Req, Resp>(&self, opcode: OpCode, request: &Req) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        self.call_as(opcode, request, Resend::of(opcode)).await
    }

    /// [`Self::call`], saying when the request may be sent again.
    pub(crate) async fn call_as<Req, Resp>(
        &self,
        opcode: OpCode,
        request: &Req,
        resend: Resend,
    ) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        let (frame, _) = self.exchange(opcode, request, resend).await?;
        check(decode_answer(opcode, frame)?)
    }

    /// [`Self::call_as`], also returning a handle pinned to the connection that
    /// answered (holding `holder` there, and a slot of the pool's until the last clone
    /// of the handle is dropped). A handle pinned already returns itself.
    pub(crate) async fn call_pinning<Req, Resp>(
        &self,
        opcode: OpCode,
        request: &Req,
        resend: Resend,
        holder: impl FnOnce(&Resp) -> Holder,
    ) -> Result<(Resp, Client)>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        let (frame, lease) = self.exchange(opcode, request, resend).await?;
        let response: Resp = check(decode_answer(opcode, frame)?)?;
        let pinned = self.pinned_to(lease, holder(&response));
        Ok((response, pinned))
    }

    /// This handle pinned to `lease`'s session (itself when pinned already).
    fn pinned_to(&self, lease: Option<Lease>, holder: Holder) -> Client {
        match (&self.pinned, lease) {
            (None, Some(lease)) => Client {
                pool: self.pool.clone(),
                pinned: Some(Pinned {
                    lease: Arc::new(lease),
                    holder,
                }),
                database: self.database.clone(),
            },
            _ => self.clone(),
        }
    }

    /// Sends a request answered by a stream of frames (see `connection`) and waits
    /// up to the request timeout for its first frame, the typed response. Returns it
    /// undecoded, with the stream that delivers the frames after it and a handle
    /// pinned to its connection (which holds a pool slot while the stream lives).
    pub(crate) async fn request_stream<Req: Message>(
        &self,
        opcode: OpCode,
        request: &Req,
        capacity: usize,
        is_last: IsLast,
    ) -> Result<(Frame, FrameStream, Client)> {
        let timeout = self.pool.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let exchange = async {
            let lease = match &self.pinned {
                Some(_) => None,
                None => Some(self.pool.acquire(deadline).await?),
            };
            let session = match (&self.pinned, &lease) {
                (Some(pinned), _) => pinned.lease.session.clone(),
                (None, Some(lease)) => lease.session.clone(),
                (None, None) => unreachable!("acquired above"),
            };
            let mut frames = session
                .connection
                .request_stream(opcode, request, capacity, is_last)
                .await?;
            match frames.recv().await {
                StreamItem::Frame(first) => Ok((first, frames, lease)),
                StreamItem::Failed(e) => Err(e),
                // Capacity is at least one, so the first frame always fits.
                StreamItem::Overflowed => Err(Error::Protocol(format!(
                    "the answer to a {} request overflowed an empty stream buffer",
                    opcode.as_str_name()
                ))),
            }
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(answer) => {
                let (first, frames, lease) = answer?;
                Ok((first, frames, self.pinned_to(lease, Holder::Stream)))
            }
            Err(_) => Err(Error::Timeout {
                operation: format!("{} request", opcode.as_str_name()),
                after: timeout,
            }),
        }
    }

    /// This handle on the pool, not pinned to any connection.
    pub(crate) fn unpinned(&self) -> Client {
        Client {
            pool: self.pool.clone(),
            pinned: None,
            database: self.database.clone(),
        }
    }

    /// The `database` field for requests from this handle ("" = connection default).
    pub(crate) fn database_field(&self) -> String {
        self.database.as_deref().unwrap_or_default().to_owned()
    }

    /// A fresh request key for a write from this handle: empty in a transaction
    /// (whose writes are never sent again; the commit is what counts), and when the
    /// server does not deduplicate writes.
    pub(crate) fn new_request_key(&self) -> String {
        if self.pinned.is_some()
            || !self.pool.options.retry_writes
            || !self.pool.latest().dedups_writes()
        {
            return String::new();
        }
        random_request_key()
    }

    /// A fresh request key for the COMMIT_TX of this handle's transaction: empty when
    /// its server does not deduplicate writes.
    pub(crate) fn commit_request_key(&self) -> String {
        if self.pool.options.retry_writes && self.session().dedups_writes() {
            random_request_key()
        } else {
            String::new()
        }
    }

    /// Sends a keyed write again through the pool, to the server this pinned handle's
    /// connection went to (the one that remembers the key), after that connection
    /// died under it.
    pub(crate) async fn resend_keyed<Req, Resp>(
        &self,
        opcode: OpCode,
        request: &Req,
    ) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        let target = self.session().target;
        let (frame, _) = self
            .unpinned()
            .exchange_on(opcode, request, Resend::Keyed, Some(target))
            .await?;
        check(decode_answer(opcode, frame)?)
    }

    /// The session this handle's requests would use now (without waiting).
    fn session(&self) -> Arc<Session> {
        match &self.pinned {
            Some(pinned) => pinned.lease.session.clone(),
            None => self.pool.any_open().unwrap_or_else(|| self.pool.latest()),
        }
    }

    /// Sends a request and waits for its answer, within the request timeout: on the
    /// pinned session, or on one leased from the pool (sent once more on another
    /// connection when its connection died under it and `resend` allows, see the
    /// module docs). Returns the answer and, when not pinned, the lease it used.
    async fn exchange<Req: Message>(
        &self,
        opcode: OpCode,
        request: &Req,
        resend: Resend,
    ) -> Result<(Frame, Option<Lease>)> {
        self.exchange_on(opcode, request, resend, None).await
    }

    /// [`Self::exchange`]; with `keyed_on`, only a connection to that target may carry
    /// the request (a keyed write being sent again).
    async fn exchange_on<Req: Message>(
        &self,
        opcode: OpCode,
        request: &Req,
        resend: Resend,
        mut keyed_on: Option<usize>,
    ) -> Result<(Frame, Option<Lease>)> {
        let timeout = self.pool.options.request_timeout;
        if let Some(pinned) = &self.pinned {
            return match pinned
                .lease
                .session
                .connection
                .attempt(opcode, request, Some(timeout))
                .await
            {
                Ok(frame) => Ok((frame, None)),
                Err(failed) if failed.error.is_connection_error() => {
                    Err(pinned.lost(opcode, failed))
                }
                Err(failed) => Err(failed.error),
            };
        }
        let deadline = Instant::now() + timeout;
        let mut resent = false;
        // Bounds sending again after "refused before it was sent" (a connection that
        // closed between the check and the send), which needs no budget of its own.
        let mut unsent = 0;
        // Bounds sending again after ERR_UNAVAILABLE (a server shutting down refuses
        // requests that reach it after its GOAWAY, unexecuted).
        let mut refused = 0;
        // `keyed_on`: for a keyed write sent again, the target that remembers its key
        // (each server keeps its own), where the resend must go.
        loop {
            let lease = self.pool.acquire(deadline).await?;
            if let Some(target) = keyed_on {
                if lease.session.target != target || !lease.session.dedups_writes() {
                    return Err(Error::ConnectionClosed {
                        reason: format!(
                            "the connection carrying a {} request closed, and the server \
                             that would recognise its request key is not reachable now \
                             (the pool moved to {}): the write may or may not have been \
                             applied; check, then send it again if needed",
                            opcode.as_str_name(),
                            lease.session.peer()
                        ),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let failed = match lease
                .session
                .connection
                .attempt(opcode, request, Some(left))
                .await
            {
                Ok(frame) if resend != Resend::Never && refused < 3 && is_unavailable(&frame) => {
                    refused += 1;
                    tracing::debug!(opcode = opcode.as_str_name(), "server unavailable (shutting down?); sending the request again on another connection");
                    continue;
                }
                Ok(frame) => return Ok((frame, Some(lease))),
                Err(failed) => failed,
            };
            let error = failed.error;
            if !error.is_connection_error() {
                return Err(error);
            }
            // After a shutdown GOAWAY the server finishes the requests it has read and
            // reads no more: one still unanswered when the connection closes was never
            // executed (only a server whose shutdown_grace ran out, which it logs,
            // closes with requests still running).
            let never_ran = matches!(&error, Error::GoAway { reason, .. } if reason == "shutdown");
            if (!failed.sent || never_ran) && unsent < 3 {
                unsent += 1;
                continue;
            }
            let safe = match resend {
                Resend::Never => false,
                Resend::Read => true,
                Resend::Keyed => lease.session.dedups_writes(),
            };
            if safe && !resent {
                resent = true;
                if resend == Resend::Keyed {
                    keyed_on = Some(lease.session.target);
                }
                tracing::debug!(opcode = opcode.as_str_name(), error = %error, "connection lost under the request; sending it again on another connection");
                continue;
            }
            let addr = lease.session.peer().to_owned();
            return Err(if safe || !failed.sent {
                with_context(error, &format!("server {addr}"))
            } else {
                with_context(
                    error,
                    &format!(
                        "the {} request to {addr} may or may not have been applied; it was \
                         not retried (check, then send it again if needed)",
                        opcode.as_str_name()
                    ),
                )
            });
        }
    }
}

/// A request key no other write will have: the time in milliseconds (48 bits), then 80
/// random bits, in hex. Keys made one after another sort in time order, so the
/// server's records of them are appended to its index rather than scattered.
fn random_request_key() -> String {
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    format!("{:012x}{random:020x}", unix_millis() & ((1 << 48) - 1))
}

/// Whether `frame` is an `OP_ERROR` with `ERR_UNAVAILABLE`: the server could not serve
/// the request now (it is shutting down), and another connection may.
fn is_unavailable(frame: &Frame) -> bool {
    frame.opcode == OpCode::OpError as i32
        && wire::Error::decode(frame.body.clone())
            .is_ok_and(|e| e.code == themis_proto::ErrorCode::ErrUnavailable as i32)
}

/// Whether a request with `opcode` only reads, so it may be sent again after its
/// connection died (ADMIN requests are decided by their action, see `admin`).
fn is_read(opcode: OpCode) -> bool {
    matches!(
        opcode,
        OpCode::OpRead | OpCode::OpPing | OpCode::OpBeginTx | OpCode::OpHandshake
    )
}

/// Decodes the frame answering a request with `opcode`.
pub(crate) fn decode_answer<Resp: Message + Default>(opcode: OpCode, frame: Frame) -> Result<Resp> {
    let expected = match opcode {
        OpCode::OpPing => OpCode::OpPong,
        other => other,
    };
    decode_frame(opcode, expected, frame)
}

/// Decodes a frame answering a request with `opcode`, which must be an `expected`
/// frame (or `OP_ERROR`, returned as [`Error::Server`]).
pub(crate) fn decode_frame<M: Message + Default>(
    opcode: OpCode,
    expected: OpCode,
    frame: Frame,
) -> Result<M> {
    if frame.opcode == OpCode::OpError as i32 {
        let error = wire::Error::decode(frame.body).map_err(|e| {
            Error::Protocol(format!("OP_ERROR answer with an undecodable body: {e}"))
        })?;
        return Err(Error::from(error));
    }
    if frame.opcode != expected as i32 {
        return Err(Error::Protocol(format!(
            "a {} request was answered with opcode {} (expected {} or OP_ERROR)",
            opcode.as_str_name(),
            OpCode::try_from(frame.opcode)
                .map(|o| o.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("0x{:02X}", frame.opcode)),
            expected.as_str_name()
        )));
    }
    M::decode(frame.body).map_err(|e| {
        Error::Protocol(format!(
            "the {} frame answering a {} request is not a valid message: {e}",
            expected.as_str_name(),
            opcode.as_str_name()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Auth;
    use crate::pool::{handshake_request, CLIENT_FEATURES};
    use themis_proto::{ErrorCode, ErrorExt};

    fn frame<M: Message>(opcode: OpCode, msg: &M) -> Frame {
        Frame {
            opcode: opcode as i32,
            body: msg.encode_to_vec().into(),
        }
    }

    #[test]
    fn ping_expects_pong() {
        let pong = wire::Pong {
            timestamp_ms: 7,
            server_time_ms: 8,
        };
        let got: wire::Pong = decode_answer(OpCode::OpPing, frame(OpCode::OpPong, &pong)).unwrap();
        assert_eq!(got, pong);
        let err =
            decode_answer::<wire::Pong>(OpCode::OpPing, frame(OpCode::OpPing, &pong)).unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m.contains("OP_PONG")));
    }

    #[test]
    fn op_error_becomes_server_error() {
        let e = wire::Error::new(ErrorCode::ErrUnauthenticated, "handshake first");
        let err = decode_answer::<wire::ReadResponse>(OpCode::OpRead, frame(OpCode::OpError, &e))
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ErrUnauthenticated));
        assert_eq!(err.server_message(), Some("handshake first"));
    }

    #[test]
    fn mismatched_or_garbage_answers_are_protocol_errors() {
        let err = decode_answer::<wire::ReadResponse>(
            OpCode::OpRead,
            Frame {
                opcode: 0x42,
                body: Default::default(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m.contains("0x42")));
        let err = decode_answer::<wire::ReadResponse>(
            OpCode::OpRead,
            Frame {
                opcode: OpCode::OpRead as i32,
                body: bytes::Bytes::from_static(&[0xFF, 0xFF, 0xFF]),
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Protocol(_)));
    }

    #[test]
    fn handshake_sends_the_chosen_credentials_only() {
        let base = ClientOptions {
            username: "alice".into(),
            password: "pw".into(),
            database: Some("shop".into()),
            ..ClientOptions::default()
        };
        let r = handshake_request(&base, None);
        assert_eq!(r.auth_method, wire::AuthMethod::UsernamePassword as i32);
        assert_eq!((r.username.as_str(), r.password.as_str()), ("alice", "pw"));
        assert_eq!((r.api_key.as_str(), r.jwt_token.as_str()), ("", ""));
        assert_eq!(r.database, "shop");

        let with = |auth: Auth| {
            handshake_request(
                &ClientOptions {
                    auth,
                    ..base.clone()
                },
                None,
            )
        };
        let r = with(Auth::ApiKey("themis_k".into()));
        assert_eq!(r.auth_method, wire::AuthMethod::ApiKey as i32);
        assert_eq!(r.api_key, "themis_k");
        assert_eq!((r.username.as_str(), r.password.as_str()), ("", ""));
        let r = with(Auth::Jwt("eyJ.t.s".into()));
        assert_eq!(r.auth_method, wire::AuthMethod::Jwt as i32);
        assert_eq!(r.jwt_token, "eyJ.t.s");
        assert_eq!((r.username.as_str(), r.password.as_str()), ("", ""));
        let r = with(Auth::Certificate);
        assert_eq!(r.auth_method, wire::AuthMethod::Certificate as i32);
        assert_eq!((r.username.as_str(), r.password.as_str()), ("alice", ""));

        let options = ClientOptions {
            auth: Auth::ApiKey("themis_k".into()),
            ..base.clone()
        };
        let r = handshake_request(&options, Some("tok"));
        assert_eq!(r.session_token, "tok");
        assert_eq!(r.api_key, "");
        assert_eq!((r.username.as_str(), r.password.as_str()), ("", ""));
    }

    #[tokio::test]
    async fn certificate_auth_without_a_client_certificate_fails_early() {
        let options = ClientOptions {
            auth: Auth::Certificate,
            ..ClientOptions::default()
        };
        let err = Client::connect_with("127.0.0.1:1", options)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Tls(m) if m.contains("client_cert_path")),
            "{err}"
        );
    }

    #[test]
    fn client_features_cover_all_contract_bits() {
        assert_eq!(CLIENT_FEATURES, 0b111_1111);
    }
}
