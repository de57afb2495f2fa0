//! [`Client`]: the cloneable handle, the handshake, and the request path every typed
//! call goes through.
//!
//! A `Client` is an `Arc` around one established session (a handshaken
//! [`Connection`] plus what the server said about it) and the name of the database its
//! requests address. Clones, [`Client::database`] handles and [`Collection`]s all share
//! that one multiplexed connection; the connection closes when the last of them is
//! dropped.
//!
//! Seam for pooling and reconnection (a later issue): [`open_session`] is the only
//! place a connection is made and authenticated, and [`Client::transport`] the only
//! place a request picks the connection it goes out on. A pool replaces the single
//! `Session` with several and chooses among them there; it must send a transaction's
//! requests on the connection that began it (a [`crate::Transaction`] holds the
//! `Client` it began on). [`Client::reconnect`] re-runs `open_session`, resuming the
//! session by token and falling back to the credentials; today only subscriptions use
//! it (each reconnects on a connection of its own), a `Client` itself stays closed
//! once its connection is.
//!
//! Invariants: a request that fails is always an `Err`, never a response with
//! `success = false` — except from [`Client::raw_request`], which returns typed
//! responses untouched so tests can look at them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use themis_proto::{features, wire, ErrorCode, OpCode, TypedResponse, PROTOCOL_VERSION};
use tokio::net::TcpStream;

use crate::collection::Collection;
use crate::connection::{Connection, Frame, FrameStream, IsLast, StreamItem};
use crate::error::{check, Error, Result};
use crate::options::{Auth, ClientOptions, ConnectTarget, DEFAULT_DATABASE};

/// Everything this client can do, advertised in the handshake.
const CLIENT_FEATURES: u64 = features::MULTIPLEXING
    | features::CURSORS
    | features::TRANSACTIONS
    | features::SUBSCRIPTIONS
    | features::BULK_WRITES
    | features::ADMIN;

/// One authenticated connection and what the server told us in the handshake.
struct Session {
    connection: Connection,
    session_token: String,
    server_info: wire::ServerInfo,
    options: ClientOptions,
    /// Where it connected, for [`Client::reconnect`].
    target: ConnectTarget,
}

/// A handle to a ThemisDB server. Cheap to clone; clones share one multiplexed
/// connection, and calls from many tasks run concurrently over it.
#[derive(Clone)]
pub struct Client {
    session: Arc<Session>,
    /// The database requests address; `None` = the connection's default.
    database: Option<Arc<str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.session.connection.peer())
            .field("database", &self.database_name())
            .field("username", &self.session.server_info.username)
            .field("closed", &self.is_closed())
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
        let session = open_session(target, options, None).await?;
        Ok(Self {
            session: Arc::new(session),
            database: None,
        })
    }

    /// A handle whose requests address database `name` (over the same connection).
    pub fn database(&self, name: &str) -> Client {
        Client {
            session: self.session.clone(),
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
            None if !self.session.server_info.database.is_empty() => {
                &self.session.server_info.database
            }
            None => self
                .session
                .options
                .database
                .as_deref()
                .unwrap_or(DEFAULT_DATABASE),
        }
    }

    /// The session token from the handshake (for resuming the session later).
    pub fn session_token(&self) -> &str {
        &self.session.session_token
    }

    /// What the server said about itself in the handshake.
    pub fn server_info(&self) -> &wire::ServerInfo {
        &self.session.server_info
    }

    /// The options this client was connected with (URL parts applied).
    pub fn options(&self) -> &ClientOptions {
        &self.session.options
    }

    /// Requests sent on the connection and not yet answered; a live subscription on
    /// it counts as one.
    pub fn in_flight_requests(&self) -> usize {
        self.session.connection.in_flight()
    }

    /// Whether the connection refuses new requests (closed, failed, or the server sent
    /// GOAWAY). A closed client stays closed; connect again.
    pub fn is_closed(&self) -> bool {
        self.session.connection.is_closed()
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
        let frame = self.send(opcode, request).await?;
        decode_answer(opcode, frame)
    }

    /// Sends a request whose answer is a typed response, and turns `success = false`
    /// into its error.
    pub(crate) async fn call<Req, Resp>(&self, opcode: OpCode, request: &Req) -> Result<Resp>
    where
        Req: Message,
        Resp: TypedResponse,
    {
        check(self.raw_request(opcode, request).await?)
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
        let timeout = self.session.options.request_timeout;
        let exchange = async {
            let mut frames = self
                .transport()
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
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout {
                operation: format!("{} request", opcode.as_str_name()),
                after: timeout,
            }),
        }
    }

    /// A new connection to the same server for the same user, with this handle's
    /// database. Resumes the session by its token; if the server no longer knows it
    /// (expired, or the server restarted), authenticates with the credentials again.
    pub(crate) async fn reconnect(&self) -> Result<Client> {
        let old = &self.session;
        let token = (!old.session_token.is_empty()).then_some(old.session_token.as_str());
        let resumed = open_session(old.target.clone(), old.options.clone(), token).await;
        let session = match resumed {
            Err(e)
                if token.is_some()
                    && matches!(
                        e.code(),
                        Some(ErrorCode::ErrAuthFailed | ErrorCode::ErrUnauthenticated)
                    ) =>
            {
                tracing::debug!(error = %e, "session resume refused; handshaking with credentials");
                open_session(old.target.clone(), old.options.clone(), None).await?
            }
            other => other?,
        };
        Ok(Client {
            session: Arc::new(session),
            database: self.database.clone(),
        })
    }

    /// The `database` field for requests from this handle ("" = connection default).
    pub(crate) fn database_field(&self) -> String {
        self.database.as_deref().unwrap_or_default().to_owned()
    }

    /// Sends on the chosen connection. The pool seam: see the module docs.
    async fn send<Req: Message>(&self, opcode: OpCode, request: &Req) -> Result<Frame> {
        let timeout = self.session.options.request_timeout;
        self.transport()
            .request(opcode, request, Some(timeout))
            .await
    }

    /// The connection the next request goes out on.
    fn transport(&self) -> &Connection {
        &self.session.connection
    }
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
        options,
        target,
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
