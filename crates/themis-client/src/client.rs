//! [`Client`]: the cloneable handle, the handshake, and the request path every typed
//! call goes through.
//!
//! A `Client` is an `Arc` around a [`Link`] — "a pool of one": the current
//! established session (a handshaken [`Connection`] plus what the server said about
//! it), replaced when it dies — and the name of the database its requests address.
//! Clones, [`Client::database`] handles and [`Collection`]s all share that link and
//! its one multiplexed connection; the connection closes when the last of them is
//! dropped (or when it is replaced and its last pinned user is gone).
//!
//! The seam for pooling (ADR 0007): [`open_session`] is the only place a connection is
//! made and authenticated, and [`Client::transport`] the only place a request picks
//! the session it goes out on. Today it picks the link's current session; when that
//! session's connection is closed or draining (GOAWAY received), it first reconnects
//! (`Link::live_session`: one reconnect at a time, session resume by token, else the
//! credentials, with the [`RetryPolicy`] backoff, each attempt bounded by
//! `connect_timeout` and the whole by the request's `request_timeout`). When every
//! attempt the policy allows failed, the server is marked down for a few seconds
//! and requests meanwhile fail at once (naming the address) instead of each
//! retrying in turn. A full pool
//! replaces the one session with several and chooses among them there.
//!
//! Retries: a request whose connection died under it (`ConnectionClosed`, `GoAway`,
//! I/O) is sent once more, on a fresh connection, when it is a read — `READ`, `PING`,
//! `BEGIN_TX` (the server drops a transaction with its connection), an `explain`,
//! and ADMIN listings, stats and who-am-i. `QUERY` is never retried: the client cannot
//! tell a reading AQL query from a writing one. Writes are not retried: they fail with
//! the connection error, saying the write may or may not have been applied. A request
//! refused before it was queued for the socket (the connection was found closed) was
//! certainly not sent, and goes out on a fresh connection whatever it is.
//!
//! Pinned state: a [`crate::Transaction`] and a query's cursor keep the `Arc<Session>`
//! they began on (a pinned `Client`), never the link, and never reconnect: when that
//! connection dies their requests fail with [`Error::StateLost`].
//!
//! Keep-alive: each session opened by a link gets a task that pings when the
//! connection has been quiet for `min(keepalive_interval, server idle_timeout × 0.4)`
//! (a little over the third at which a subscription pings on its own),
//! and closes it when a ping goes unanswered for `connect_timeout`; it ends with the
//! session. [`Client::reconnect`] (used by subscriptions, each on a connection of its
//! own) makes a new link.
//!
//! Invariants: a request that fails is always an `Err`, never a response with
//! `success = false` — except from [`Client::raw_request`], which returns typed
//! responses untouched so tests can look at them. No request waits longer than its
//! `request_timeout`, reconnecting included.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use themis_proto::{features, wire, ErrorCode, OpCode, TypedResponse, PROTOCOL_VERSION};
use tokio::net::TcpStream;

use crate::collection::Collection;
use crate::connection::{Connection, Failed, Frame, FrameStream, IsLast, StreamItem};
use crate::error::{check, Error, ErrorKind, Result};
use crate::options::{Auth, ClientOptions, ConnectTarget, DEFAULT_DATABASE};
use crate::retry::{Retry, RetryPolicy};

/// Everything this client can do, advertised in the handshake.
const CLIENT_FEATURES: u64 = features::MULTIPLEXING
    | features::CURSORS
    | features::TRANSACTIONS
    | features::SUBSCRIPTIONS
    | features::BULK_WRITES
    | features::ADMIN;

/// After a whole reconnect failed, requests fail fast for this long before the next
/// one tries again.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// The shortest keep-alive interval, whatever the server's idle timeout.
const MIN_KEEPALIVE: Duration = Duration::from_millis(50);

/// One authenticated connection and what the server told us in the handshake.
pub(crate) struct Session {
    connection: Connection,
    session_token: String,
    server_info: wire::ServerInfo,
}

/// What clones of a [`Client`] share: the current session, replaced when it dies.
struct Link {
    current: RwLock<Arc<Session>>,
    /// Held while reconnecting, so only one reconnect runs at a time.
    reconnecting: tokio::sync::Mutex<()>,
    options: ClientOptions,
    /// Where it connects.
    target: ConnectTarget,
    /// The connection's default database, from the first handshake.
    default_database: String,
    /// Set when a whole reconnect (every attempt its policy allows) failed: until
    /// when requests fail fast instead of each trying again, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl Link {
    fn new(session: Session, options: ClientOptions, target: ConnectTarget) -> Arc<Self> {
        let default_database = if session.server_info.database.is_empty() {
            options
                .database
                .clone()
                .unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
        } else {
            session.server_info.database.clone()
        };
        let session = Arc::new(session);
        let link = Arc::new(Self {
            current: RwLock::new(session.clone()),
            reconnecting: tokio::sync::Mutex::new(()),
            options,
            target,
            default_database,
            down: Mutex::new(None),
        });
        link.start_keepalive(&session);
        link
    }

    fn current(&self) -> Arc<Session> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current session if its connection takes requests; else a new one, made
    /// before `deadline` (the request's own time limit).
    async fn live_session(&self, opcode: OpCode, deadline: Instant) -> Result<Arc<Session>> {
        let session = self.current();
        if !session.connection.is_closed() {
            return Ok(session);
        }
        let addr = self.target.addr();
        let too_late = || Error::Timeout {
            operation: format!(
                "reconnecting to {addr} for a {} request",
                opcode.as_str_name()
            ),
            after: self.options.request_timeout,
        };
        self.fail_fast_if_down(&addr)?;
        let _one_at_a_time = tokio::time::timeout_at(deadline.into(), self.reconnecting.lock())
            .await
            .map_err(|_| too_late())?;
        // Someone else may have reconnected (or given up) while this waited.
        let old = self.current();
        if !old.connection.is_closed() {
            return Ok(old);
        }
        self.fail_fast_if_down(&addr)?;
        let gave_up = |error: Error| {
            *self.down.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now() + DOWN_FOR, error.to_string()));
            error
        };
        let policy = RetryPolicy::default();
        let mut retry = Retry::new(&policy);
        loop {
            let attempt = tokio::time::timeout_at(
                deadline.into(),
                resume_or_login(&self.target, &self.options, &old.session_token),
            )
            .await
            .map_err(|_| too_late())?;
            let error = match attempt {
                Ok(session) => {
                    *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    let session = Arc::new(session);
                    tracing::info!(peer = session.connection.peer(), "reconnected");
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = session.clone();
                    self.start_keepalive(&session);
                    return Ok(session);
                }
                // Credentials refused, TLS misconfigured: waiting will not help.
                Err(e) if e.kind() != ErrorKind::Connection || matches!(e, Error::Tls(_)) => {
                    return Err(e)
                }
                Err(e) => e,
            };
            let Some(delay) = retry.next_delay(error.retry_after()) else {
                return Err(gave_up(error));
            };
            if Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::debug!(%addr, attempt = retry.failures(), ?delay, error = %error, "reconnecting failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Fails at once while the server is marked down (a whole reconnect failed
    /// recently), so a burst of requests does not retry one after another.
    fn fail_fast_if_down(&self, addr: &str) -> Result<()> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &*down {
            Some((until, why)) if Instant::now() < *until => Err(Error::ConnectionClosed {
                reason: format!(
                    "could not reconnect to {addr} ({why}); the next attempt is in {:?}",
                    until.saturating_duration_since(Instant::now())
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Spawns the keep-alive task of `session` (see the module docs).
    fn start_keepalive(&self, session: &Arc<Session>) {
        let Some(interval) = self.options.keepalive_interval else {
            return;
        };
        let every = match session.server_info.idle_timeout_ms {
            0 => interval,
            // A little over a third, so it never doubles the pings of a subscription
            // (which pings every third of the idle timeout on its own).
            ms => interval.min(Duration::from_millis(u64::from(ms)) * 2 / 5),
        }
        .max(MIN_KEEPALIVE);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(keepalive(
            Arc::downgrade(session),
            every,
            self.options.connect_timeout,
        ));
    }
}

/// Pings `session` whenever it has been quiet for `every`; closes it when a ping is not
/// answered within `limit`. Ends when the session is dropped or its connection closes.
async fn keepalive(session: Weak<Session>, every: Duration, limit: Duration) {
    loop {
        let wait = {
            let Some(session) = session.upgrade() else {
                return;
            };
            if session.connection.is_closed() {
                return;
            }
            every.saturating_sub(session.connection.quiet_for())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some(session) = session.upgrade() else {
            return;
        };
        let ping = wire::Ping {
            timestamp_ms: unix_millis(),
        };
        match session
            .connection
            .request(OpCode::OpPing, &ping, Some(limit))
            .await
        {
            Ok(_) => tracing::trace!(peer = session.connection.peer(), "keep-alive pong"),
            Err(Error::Timeout { .. }) => {
                let reason = format!(
                    "no answer from {} to a keep-alive ping within {limit:?} (connect_timeout)",
                    session.connection.peer()
                );
                tracing::warn!(%reason, "closing the connection");
                session.connection.close(reason);
                return;
            }
            Err(_) => return,
        }
    }
}

/// A new session for the same user: resumes `token`'s session; if the server no
/// longer knows it (expired, or the server restarted), authenticates with the
/// credentials again.
async fn resume_or_login(
    target: &ConnectTarget,
    options: &ClientOptions,
    token: &str,
) -> Result<Session> {
    let token = (!token.is_empty()).then_some(token);
    let resumed = open_session(target.clone(), options.clone(), token).await;
    match resumed {
        Err(e)
            if token.is_some()
                && matches!(
                    e.code(),
                    Some(ErrorCode::ErrAuthFailed | ErrorCode::ErrUnauthenticated)
                ) =>
        {
            tracing::debug!(error = %e, "session resume refused; handshaking with credentials");
            open_session(target.clone(), options.clone(), None).await
        }
        other => other,
    }
}

/// What state a pinned client holds on its session.
#[derive(Clone, Debug)]
pub(crate) enum Holder {
    Transaction(Arc<str>),
    Cursor,
}

/// A session that requests must use, and no other.
#[derive(Clone)]
struct Pinned {
    session: Arc<Session>,
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

/// A handle to a ThemisDB server. Cheap to clone; clones share one multiplexed
/// connection, and calls from many tasks run concurrently over it. When that
/// connection dies the next request reconnects (see the module docs).
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
    /// Set for a transaction's or a cursor's handle: the session it must use.
    pinned: Option<Pinned>,
    /// The database requests address; `None` = the connection's default.
    database: Option<Arc<str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = self.session();
        f.debug_struct("Client")
            .field("peer", &session.connection.peer())
            .field("database", &self.database_name())
            .field("username", &session.server_info.username)
            .field("closed", &self.is_closed())
            .field("pinned", &self.pinned.as_ref().map(|p| &p.holder))
            .finish()
    }
}

impl Client {
    /// Connects to `host:port` (no credentials) or
    /// `themis://user:pass@host:port/db`, and performs the handshake.
    pub async fn connect(addr_or_url: &str) -> Result<Self> {
        Self::connect_with(addr_or_url, ClientOptions::default()).await
    }

    /// Like [`Client::connect`], with options. Credentials, database and query
    /// parameters (TLS, timeouts: see [`UrlParams`](crate::UrlParams)) in a URL replace
    /// those in `options`.
    pub async fn connect_with(addr_or_url: &str, options: ClientOptions) -> Result<Self> {
        let target = ConnectTarget::parse(addr_or_url)?;
        let options = target.apply_to(options);
        let session = open_session(target.clone(), options.clone(), None).await?;
        Ok(Self {
            link: Link::new(session, options, target),
            pinned: None,
            database: None,
        })
    }

    /// A handle whose requests address database `name` (over the same connection).
    pub fn database(&self, name: &str) -> Client {
        Client {
            link: self.link.clone(),
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
            None => &self.link.default_database,
        }
    }

    /// The session token of the current connection (for resuming the session later).
    /// A resumed session keeps its token; one made with the credentials again (after
    /// a server restart) has a new one.
    pub fn session_token(&self) -> String {
        self.session().session_token.clone()
    }

    /// What the server said about itself in the current connection's handshake.
    pub fn server_info(&self) -> wire::ServerInfo {
        self.session().server_info.clone()
    }

    /// The options this client was connected with (URL parts applied).
    pub fn options(&self) -> &ClientOptions {
        &self.link.options
    }

    /// Requests sent on the current connection and not yet answered; a live
    /// subscription on it counts as one, and so does a keep-alive ping.
    pub fn in_flight_requests(&self) -> usize {
        self.session().connection.in_flight()
    }

    /// Whether the current connection refuses new requests (closed, failed, or the
    /// server sent GOAWAY). The next request reconnects; a transaction's or cursor's
    /// handle stays closed.
    pub fn is_closed(&self) -> bool {
        self.session().connection.is_closed()
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
        let (frame, _) = self.exchange(opcode, request, is_read(opcode)).await?;
        decode_answer(opcode, frame)
    }

    /// Sends a request whose answer is a typed response, and turns `success = false`
    /// into its error. Retried once after a connection failure when `opcode` is a read
    /// (see the module docs).
    pub(crate) async fn call<Req, Resp>(&self, opcode: OpCode, request: &Req) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        self.call_as(opcode, request, is_read(opcode)).await
    }

    /// [`Self::call`], saying whether the request only reads (and may be retried).
    pub(crate) async fn call_as<Req, Resp>(
        &self,
        opcode: OpCode,
        request: &Req,
        read: bool,
    ) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        let (frame, _) = self.exchange(opcode, request, read).await?;
        check(decode_answer(opcode, frame)?)
    }

    /// [`Self::call_as`], also returning a handle pinned to the session that answered
    /// (holding `holder` there). A handle pinned already returns itself.
    pub(crate) async fn call_pinning<Req, Resp>(
        &self,
        opcode: OpCode,
        request: &Req,
        read: bool,
        holder: impl FnOnce(&Resp) -> Holder,
    ) -> Result<(Resp, Client)>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        let (frame, session) = self.exchange(opcode, request, read).await?;
        let response: Resp = check(decode_answer(opcode, frame)?)?;
        let pinned = match &self.pinned {
            Some(_) => self.clone(),
            None => Client {
                link: self.link.clone(),
                pinned: Some(Pinned {
                    session,
                    holder: holder(&response),
                }),
                database: self.database.clone(),
            },
        };
        Ok((response, pinned))
    }

    /// Sends a request answered by a stream of frames (see `connection`) and waits
    /// up to the request timeout for its first frame, the typed response. Returns it
    /// undecoded, with the stream that delivers the frames after it.
    pub(crate) async fn request_stream<Req: Message>(
        &self,
        opcode: OpCode,
        request: &Req,
        capacity: usize,
        is_last: IsLast,
    ) -> Result<(Frame, FrameStream)> {
        let timeout = self.link.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let exchange = async {
            let session = self.transport(opcode, deadline).await?;
            let mut frames = session
                .connection
                .request_stream(opcode, request, capacity, is_last)
                .await?;
            match frames.recv().await {
                StreamItem::Frame(first) => Ok((first, frames)),
                StreamItem::Failed(e) => Err(e),
                // Capacity is at least one, so the first frame always fits.
                StreamItem::Overflowed => Err(Error::Protocol(format!(
                    "the answer to a {} request overflowed an empty stream buffer",
                    opcode.as_str_name()
                ))),
            }
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout {
                operation: format!("{} request", opcode.as_str_name()),
                after: timeout,
            }),
        }
    }

    /// A new connection to the same server for the same user, with this handle's
    /// database, in a link of its own. Resumes the session by its token; if the server
    /// no longer knows it (expired, or the server restarted), authenticates with the
    /// credentials again.
    pub(crate) async fn reconnect(&self) -> Result<Client> {
        let old = self.session();
        let link = &self.link;
        let session = resume_or_login(&link.target, &link.options, &old.session_token).await?;
        Ok(Client {
            link: Link::new(session, link.options.clone(), link.target.clone()),
            pinned: None,
            database: self.database.clone(),
        })
    }

    /// The `database` field for requests from this handle ("" = connection default).
    pub(crate) fn database_field(&self) -> String {
        self.database.as_deref().unwrap_or_default().to_owned()
    }

    /// The session this handle's requests would use now (without reconnecting).
    fn session(&self) -> Arc<Session> {
        match &self.pinned {
            Some(pinned) => pinned.session.clone(),
            None => self.link.current(),
        }
    }

    /// Sends a request and waits for its answer, within the request timeout: on the
    /// pinned session, or on the link's (reconnecting first when it is closed, and
    /// sending a `read` once more on a fresh connection if its connection died under
    /// it). Returns the answer and the session that gave it.
    async fn exchange<Req: Message>(
        &self,
        opcode: OpCode,
        request: &Req,
        read: bool,
    ) -> Result<(Frame, Arc<Session>)> {
        let timeout = self.link.options.request_timeout;
        if let Some(pinned) = &self.pinned {
            return match pinned
                .session
                .connection
                .attempt(opcode, request, Some(timeout))
                .await
            {
                Ok(frame) => Ok((frame, pinned.session.clone())),
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
        loop {
            let session = self.transport(opcode, deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let failed = match session
                .connection
                .attempt(opcode, request, Some(left))
                .await
            {
                Ok(frame) => return Ok((frame, session)),
                Err(failed) => failed,
            };
            let error = failed.error;
            if !error.is_connection_error() {
                return Err(error);
            }
            if !failed.sent && unsent < 3 {
                unsent += 1;
                continue;
            }
            if read && !resent {
                resent = true;
                tracing::debug!(opcode = opcode.as_str_name(), error = %error, "connection lost under a read; sending it again on a fresh connection");
                continue;
            }
            let addr = self.link.target.addr();
            return Err(if read || !failed.sent {
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

    /// The session the next request goes out on: the link's current one, after
    /// reconnecting if its connection is closed or draining. The pool seam: see the
    /// module docs.
    async fn transport(&self, opcode: OpCode, deadline: Instant) -> Result<Arc<Session>> {
        match &self.pinned {
            Some(pinned) => Ok(pinned.session.clone()),
            None => self.link.live_session(opcode, deadline).await,
        }
    }
}

/// Whether a request with `opcode` only reads, so it may be sent again after its
/// connection died (ADMIN requests are decided by their action, see `admin`).
fn is_read(opcode: OpCode) -> bool {
    matches!(
        opcode,
        OpCode::OpRead | OpCode::OpPing | OpCode::OpBeginTx | OpCode::OpHandshake
    )
}

/// Connects, handshakes, and applies what the server advertised. With `resume`, the
/// handshake resumes that session instead of sending the credentials.
async fn open_session(
    target: ConnectTarget,
    options: ClientOptions,
    resume: Option<&str>,
) -> Result<Session> {
    let addr = target.addr();
    let limit = options.connect_timeout;
    if options.auth == Auth::Certificate
        && options
            .tls
            .as_ref()
            .is_none_or(|tls| tls.client_cert_path.is_none())
    {
        return Err(Error::Tls(
            "Auth::Certificate needs a client certificate: set ClientOptions.tls with \
             client_cert_path and client_key_path"
                .to_owned(),
        ));
    }
    let handshake = async {
        let stream = TcpStream::connect(&addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("could not connect to {addr} ({e}); check that the server runs there"),
            )
        })?;
        let connection = match &options.tls {
            None => Connection::start(stream, options.max_frame_bytes),
            Some(tls) => {
                let peer = crate::connection::peer_of(&stream);
                let stream = crate::tls::connect(tls, &target.host, stream).await?;
                Connection::start_tls(stream, peer, options.max_frame_bytes)
            }
        };
        let request = handshake_request(&options, resume);
        let frame = connection
            .request(OpCode::OpHandshake, &request, None)
            .await?;
        let response: wire::HandshakeResponse = check(decode_answer(OpCode::OpHandshake, frame)?)?;
        Ok::<_, Error>((connection, response))
    };
    let (connection, response) = match tokio::time::timeout(limit, handshake).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Error::Timeout {
                operation: format!("connect and handshake with {addr}"),
                after: limit,
            })
        }
    };
    let server_info = response.server_info.unwrap_or_default();
    if server_info.max_frame_bytes > 0 {
        connection.set_send_limit(server_info.max_frame_bytes);
    }
    if server_info.features & features::MULTIPLEXING == 0 && server_info.features != 0 {
        tracing::warn!(
            features = server_info.features,
            "server does not advertise MULTIPLEXING; concurrent requests may be serialized"
        );
    }
    tracing::debug!(
        peer = connection.peer(),
        server_version = %server_info.server_version,
        protocol_version = %server_info.protocol_version,
        "connected"
    );
    Ok(Session {
        connection,
        session_token: response.session_token,
        server_info,
    })
}

/// The handshake for `options`: the credentials of its [`Auth`], or with `resume`
/// that session token instead (the method is still named; no secret is sent).
fn handshake_request(options: &ClientOptions, resume: Option<&str>) -> wire::HandshakeRequest {
    let mut request = wire::HandshakeRequest {
        protocol_version: PROTOCOL_VERSION.to_owned(),
        client_name: options.client_name.clone(),
        auth_method: options.auth.method() as i32,
        database: options.database.clone().unwrap_or_default(),
        client_features: CLIENT_FEATURES,
        ..Default::default()
    };
    if let Some(token) = resume {
        request.session_token = token.to_owned();
        return request;
    }
    match &options.auth {
        Auth::Password => {
            request.username = options.username.clone();
            request.password = options.password.clone();
        }
        Auth::ApiKey(key) => request.api_key = key.clone(),
        Auth::Jwt(token) => request.jwt_token = token.clone(),
        Auth::Certificate => request.username = options.username.clone(),
    }
    request
}

/// Decodes the frame answering a request with `opcode`.
fn decode_answer<Resp: Message + Default>(opcode: OpCode, frame: Frame) -> Result<Resp> {
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

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use themis_proto::ErrorExt;

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
        assert_eq!(CLIENT_FEATURES, 0b11_1111);
    }
}
