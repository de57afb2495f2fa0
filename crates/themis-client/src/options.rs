//! Where to connect and how: [`ConnectTarget`] (parsed from `host:port` or a
//! `themis://` URL) and [`ClientOptions`].
//!
//! Accepted addresses:
//!
//! * `host:port`, `host` (port 8766), `[::1]:8766` — credentials and database then
//!   come from [`ClientOptions`];
//! * `themis://user:pass@host:port/db` — every part after the host optional; user and
//!   password are percent-decoded (`p%40ss` is `p@ss`), the port defaults to 8766 and
//!   the database to the connection's default (`_system`);
//! * `themis://user:pass@host:port/db?name=value&...` — plus connection settings
//!   ([`UrlParams`]), each at most once, names case-sensitive, values percent-decoded:
//!   `enable_ssl`, `ssl_ca_cert_path`, `ssl_cert_path`, `ssl_key_path`, `enable_mtls`,
//!   `ssl_server_name`, `connect_timeout`, `request_timeout`, and the pool's
//!   `min_connections_per_target`, `max_connections_per_target`,
//!   `max_in_flight_per_connection`, `max_connecting`, `idle_timeout`,
//!   `acquire_timeout`, `keepalive_interval`, `enable_warmup`, `retry_writes`. Any
//!   other name is an error; API keys, tokens and passwords are never accepted there;
//! * `host1:port1,host2:port2` in place of one `host:port`, in either form: several
//!   servers of one deployment (see [`ConnectTarget::alternates`]).
//!
//! What the URL says (credentials, database, settings) wins over [`ClientOptions`].
//!
//! How the client proves who it is is [`Auth`] (password, API key, JWT, or the TLS
//! client certificate).
//!
//! Invariant: parsing never touches the network, and `Debug` never prints a password,
//! an API key or a token.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The port a ThemisDB server listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 8766;
/// The database a connection uses when none is given.
pub const DEFAULT_DATABASE: &str = "_system";

/// How a [`Client`](crate::Client) connects and behaves.
///
/// Build with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use themis_client::ClientOptions;
///
/// let options = ClientOptions {
///     username: "root".into(),
///     password: "secret".into(),
///     request_timeout: Duration::from_secs(5),
///     ..ClientOptions::default()
/// };
/// assert_eq!(options.database, None);
/// ```
///
/// With an API key instead of a password (see [`Auth`]):
///
/// ```
/// use themis_client::{Auth, ClientOptions};
///
/// let options = ClientOptions {
///     auth: Auth::ApiKey("themis_0123456789ab_...".into()),
///     ..ClientOptions::default()
/// };
/// assert!(!format!("{options:?}").contains("0123456789ab"));
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    /// How to authenticate. Default [`Auth::Password`] (with `username` and
    /// `password`).
    pub auth: Auth,
    /// Sent in the handshake with [`Auth::Password`] (and with
    /// [`Auth::Certificate`] when not empty). Replaced by the URL's user when it has
    /// one.
    pub username: String,
    /// Sent in the handshake with [`Auth::Password`]. Replaced by the URL's password
    /// when it has one.
    pub password: String,
    /// The connection's default database; `None` = the server's default (`_system`).
    /// Replaced by the URL's path when it has one.
    pub database: Option<String>,
    /// Sent in the handshake; shows up in the server's logs.
    /// Default `themis-client-rust/<crate version>`.
    pub client_name: String,
    /// Limit for TCP connect plus handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Limit for each request, from queueing it to receiving its answer. Default 30 s.
    pub request_timeout: Duration,
    /// The largest frame this client accepts from the server (it closes the
    /// connection on a larger one). Outgoing frames are limited by the server's
    /// advertised `max_frame_bytes` instead. Default 16 MiB.
    pub max_frame_bytes: u32,
    /// Connect over TLS (and present a client certificate for mTLS). Default: off.
    pub tls: Option<TlsOptions>,
    /// Ping a connection that has been quiet this long (or a third of the server's
    /// idle timeout, if that is shorter), so the server does not close it as idle and
    /// a dead peer is noticed; a ping unanswered within `connect_timeout` closes the
    /// connection (the next request reconnects). `None` = no keep-alive.
    /// Default 30 s.
    pub keepalive_interval: Option<Duration>,
    /// The pool keeps at least this many connections open to each target (reopening
    /// them in the background, with backoff, when they die), and idle reaping stops
    /// there. Default 1.
    pub min_connections_per_target: usize,
    /// The pool opens at most this many connections to one target. Default 8.
    pub max_connections_per_target: usize,
    /// Requests one pooled connection carries at once before it counts as saturated:
    /// the next request then goes to another connection, a new one is opened (up to
    /// `max_connections_per_target`), or it waits its turn (first come, first served)
    /// up to `acquire_timeout`. An open transaction, cursor or subscription holds
    /// one of these slots on its connection until it ends. Default 256.
    pub max_in_flight_per_connection: usize,
    /// Connections being opened at once, for the whole pool: a burst of requests
    /// cannot start a connect storm. Default 2.
    pub max_connecting: usize,
    /// A pooled connection that carried no request for this long is closed, down to
    /// `min_connections_per_target`. Default 60 s.
    pub idle_timeout: Duration,
    /// How long a request waits for a pooled connection (while all are saturated, or
    /// while the pool reconnects) before failing with [`Error::Timeout`]. The request's
    /// own `request_timeout` bounds it too. Default 10 s.
    pub acquire_timeout: Duration,
    /// Open `min_connections_per_target` connections to every target before
    /// `Client::connect` returns. Off: `connect` returns after the first connection,
    /// and the pool opens the rest of the minimum in the background. Default on.
    pub enable_warmup: bool,
    /// Put a request key on every write made through a `Collection` (and on
    /// `Transaction::commit`), so a write whose connection died is sent again without
    /// being applied twice (the server remembers the key with the write; see
    /// `docs/client.md`). Costs the server a small record per write: off, writes are
    /// never sent again and a lost connection leaves their outcome unknown.
    /// Default on.
    pub retry_writes: bool,
}

/// TLS settings of a connection (seed 000's `enable_ssl`, `ssl_ca_cert_path`,
/// `ssl_cert_path`, `ssl_key_path`; a URL can set them too, see [`UrlParams`]).
///
/// ```
/// use themis_client::{ClientOptions, TlsOptions};
///
/// // Trust the operating system's roots (SSL_CERT_FILE / SSL_CERT_DIR honoured):
/// let system = ClientOptions { tls: Some(TlsOptions::default()), ..ClientOptions::default() };
/// // Trust only a private CA:
/// let private = TlsOptions { ca_cert_path: Some("certs/ca.pem".into()), ..TlsOptions::default() };
/// # let _ = (system, private);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) the server's certificate must chain to
    /// (`themisdb cert ca` makes a development CA). `None`: the operating system's
    /// trusted roots (loaded with `rustls-native-certs`; `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` replace them when set); connecting fails if none can be loaded.
    pub ca_cert_path: Option<PathBuf>,
    /// PEM client certificate, for servers that require mTLS.
    pub client_cert_path: Option<std::path::PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_path: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry; default: the host connected to.
    pub server_name: Option<String>,
}

/// How a client authenticates in the handshake (`HandshakeRequest.auth_method`).
///
/// `Debug` shows the method but never the key or token.
///
/// ```
/// use themis_client::Auth;
///
/// let auth = Auth::Jwt("eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into());
/// assert_eq!(format!("{auth:?}"), "Jwt(<redacted>)");
/// assert_eq!(auth.method_name(), "JWT");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// `USERNAME_PASSWORD`: [`ClientOptions::username`] and
    /// [`ClientOptions::password`].
    #[default]
    Password,
    /// `API_KEY`: a key made with `Client::create_api_key` (`themis_<id>_<secret>`);
    /// it names its user, so `username` is not sent.
    ApiKey(String),
    /// `JWT`: a bearer token signed by an issuer the server trusts; the token names the
    /// user.
    Jwt(String),
    /// `CERTIFICATE`: the client certificate presented over mTLS (set
    /// [`TlsOptions::client_cert_path`] and [`TlsOptions::client_key_path`]) names the
    /// user. [`ClientOptions::username`] is sent too when not empty (the server checks
    /// that the certificate allows it).
    Certificate,
}

impl Auth {
    /// The wire `AuthMethod` this sends.
    pub fn method(&self) -> themis_proto::wire::AuthMethod {
        use themis_proto::wire::AuthMethod;
        match self {
            Auth::Password => AuthMethod::UsernamePassword,
            Auth::ApiKey(_) => AuthMethod::ApiKey,
            Auth::Jwt(_) => AuthMethod::Jwt,
            Auth::Certificate => AuthMethod::Certificate,
        }
    }

    /// The method's name in the schema: `USERNAME_PASSWORD`, `API_KEY`, `JWT` or
    /// `CERTIFICATE` (what `WhoAmI::method` reports).
    pub fn method_name(&self) -> &'static str {
        self.method().as_str_name()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Password => f.write_str("Password"),
            Auth::ApiKey(key) => write!(f, "ApiKey({})", redacted_or_empty(key)),
            Auth::Jwt(token) => write!(f, "Jwt({})", redacted_or_empty(token)),
            Auth::Certificate => f.write_str("Certificate"),
        }
    }
}

fn redacted_or_empty(secret: &str) -> &'static str {
    if secret.is_empty() {
        "\"\""
    } else {
        "<redacted>"
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            auth: Auth::Password,
            username: String::new(),
            password: String::new(),
            database: None,
            client_name: format!("themis-client-rust/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: themis_proto::DEFAULT_MAX_FRAME_BYTES,
            tls: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            min_connections_per_target: 1,
            max_connections_per_target: 8,
            max_in_flight_per_connection: 256,
            max_connecting: 2,
            idle_timeout: Duration::from_secs(60),
            acquire_timeout: Duration::from_secs(10),
            enable_warmup: true,
            retry_writes: true,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("auth", &self.auth)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("database", &self.database)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field(
                "min_connections_per_target",
                &self.min_connections_per_target,
            )
            .field(
                "max_connections_per_target",
                &self.max_connections_per_target,
            )
            .field(
                "max_in_flight_per_connection",
                &self.max_in_flight_per_connection,
            )
            .field("max_connecting", &self.max_connecting)
            .field("idle_timeout", &self.idle_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("enable_warmup", &self.enable_warmup)
            .field("retry_writes", &self.retry_writes)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A parsed address: where to connect, plus whatever credentials and database the URL
/// carried.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// Host name or IP address; IPv6 addresses keep their brackets (`[::1]`).
    pub host: String,
    pub port: u16,
    /// Further servers of the same deployment (`host1:8766,host2:8766`), after the
    /// first: the pool connects to every target, prefers the healthy ones and moves
    /// requests away from one that fails.
    pub alternates: Vec<(String, u16)>,
    /// From the URL's user part, percent-decoded.
    pub username: Option<String>,
    /// From the URL's password part, percent-decoded.
    pub password: Option<String>,
    /// From the URL's path, percent-decoded.
    pub database: Option<String>,
    /// From the URL's query string (`?enable_ssl=true&...`).
    pub params: UrlParams,
}

/// Connection settings from a `themis://` URL's query string (seed 000's names).
/// Each is `None` when the URL does not give it; what is given wins over
/// [`ClientOptions`] (see [`UrlParams::apply_to`]).
///
/// ```
/// use std::time::Duration;
/// use themis_client::{ClientOptions, ConnectTarget};
///
/// let target = ConnectTarget::parse(
///     "themis://root@db.local/?ssl_ca_cert_path=%2Fetc%2Fthemis%2Fca.pem&request_timeout=5s",
/// )?;
/// let options = target.params.apply_to(ClientOptions::default());
/// let tls = options.tls.unwrap();
/// assert_eq!(tls.ca_cert_path.as_deref(), Some("/etc/themis/ca.pem".as_ref()));
/// assert_eq!(options.request_timeout, Duration::from_secs(5));
/// # Ok::<(), themis_client::Error>(())
/// ```
///
/// Invariant (checked by [`ConnectTarget::parse`]): `enable_ssl=false` comes with no
/// other TLS setting; `ssl_cert_path` and `ssl_key_path` come together;
/// `enable_mtls=true` comes with both; the timeouts are not zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlParams {
    /// `enable_ssl` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    pub enable_ssl: Option<bool>,
    /// `ssl_ca_cert_path`: the CA file the server's certificate must chain to. Implies
    /// TLS.
    pub ssl_ca_cert_path: Option<PathBuf>,
    /// `ssl_cert_path`: the client certificate for mTLS. Implies TLS.
    pub ssl_cert_path: Option<PathBuf>,
    /// `ssl_key_path`: the client certificate's private key. Implies TLS.
    pub ssl_key_path: Option<PathBuf>,
    /// `enable_mtls`: `true` needs `ssl_cert_path` and `ssl_key_path`; `false` drops a
    /// client certificate set in [`ClientOptions`].
    pub enable_mtls: Option<bool>,
    /// `ssl_server_name`: the name the server's certificate must carry. Implies TLS.
    pub ssl_server_name: Option<String>,
    /// `connect_timeout` (`5s`, `250ms`, `2m`, or plain seconds `10`).
    pub connect_timeout: Option<Duration>,
    /// `request_timeout` (same forms as `connect_timeout`).
    pub request_timeout: Option<Duration>,
    /// `min_connections_per_target` (a number).
    pub min_connections_per_target: Option<usize>,
    /// `max_connections_per_target` (a number, at least 1).
    pub max_connections_per_target: Option<usize>,
    /// `max_in_flight_per_connection` (a number, at least 1).
    pub max_in_flight_per_connection: Option<usize>,
    /// `max_connecting` (a number, at least 1).
    pub max_connecting: Option<usize>,
    /// `idle_timeout` (a duration).
    pub idle_timeout: Option<Duration>,
    /// `acquire_timeout` (a duration).
    pub acquire_timeout: Option<Duration>,
    /// `keepalive_interval` (a duration, or `off`); `Some(None)` turns keep-alive off.
    pub keepalive_interval: Option<Option<Duration>>,
    /// `enable_warmup` (a boolean).
    pub enable_warmup: Option<bool>,
    /// `retry_writes` (a boolean).
    pub retry_writes: Option<bool>,
}

/// The query parameter names a `themis://` URL accepts.
const URL_PARAMS: &[&str] = &[
    "enable_ssl",
    "ssl_ca_cert_path",
    "ssl_cert_path",
    "ssl_key_path",
    "enable_mtls",
    "ssl_server_name",
    "connect_timeout",
    "request_timeout",
    "min_connections_per_target",
    "max_connections_per_target",
    "max_in_flight_per_connection",
    "max_connecting",
    "idle_timeout",
    "acquire_timeout",
    "keepalive_interval",
    "enable_warmup",
    "retry_writes",
];

impl UrlParams {
    /// Whether the URL gives no setting at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether these settings turn TLS on (`enable_ssl=true` or any `ssl_*` path or
    /// name); `enable_ssl=false` turns it off, nothing leaves it as the options say.
    fn tls_wanted(&self) -> Option<bool> {
        if self.enable_ssl == Some(false) {
            return Some(false);
        }
        let implied = self.ssl_ca_cert_path.is_some()
            || self.ssl_cert_path.is_some()
            || self.ssl_key_path.is_some()
            || self.ssl_server_name.is_some()
            || self.enable_mtls.is_some();
        (self.enable_ssl == Some(true) || implied).then_some(true)
    }

    /// `options` with these settings put over them (the URL wins). TLS settings are
    /// merged into `options.tls` when it is set, so a URL can add `ssl_server_name` to
    /// a CA given in the options.
    pub fn apply_to(&self, mut options: ClientOptions) -> ClientOptions {
        match self.tls_wanted() {
            Some(false) => options.tls = None,
            Some(true) => {
                let mut tls = options.tls.take().unwrap_or_default();
                if let Some(ca) = &self.ssl_ca_cert_path {
                    tls.ca_cert_path = Some(ca.clone());
                }
                if self.enable_mtls == Some(false) {
                    tls.client_cert_path = None;
                    tls.client_key_path = None;
                }
                if let Some(cert) = &self.ssl_cert_path {
                    tls.client_cert_path = Some(cert.clone());
                }
                if let Some(key) = &self.ssl_key_path {
                    tls.client_key_path = Some(key.clone());
                }
                if let Some(name) = &self.ssl_server_name {
                    tls.server_name = Some(name.clone());
                }
                options.tls = Some(tls);
            }
            None => {}
        }
        if let Some(t) = self.connect_timeout {
            options.connect_timeout = t;
        }
        if let Some(t) = self.request_timeout {
            options.request_timeout = t;
        }
        if let Some(n) = self.min_connections_per_target {
            options.min_connections_per_target = n;
        }
        if let Some(n) = self.max_connections_per_target {
            options.max_connections_per_target = n;
        }
        if let Some(n) = self.max_in_flight_per_connection {
            options.max_in_flight_per_connection = n;
        }
        if let Some(n) = self.max_connecting {
            options.max_connecting = n;
        }
        if let Some(t) = self.idle_timeout {
            options.idle_timeout = t;
        }
        if let Some(t) = self.acquire_timeout {
            options.acquire_timeout = t;
        }
        if let Some(k) = self.keepalive_interval {
            options.keepalive_interval = k;
        }
        if let Some(w) = self.enable_warmup {
            options.enable_warmup = w;
        }
        if let Some(r) = self.retry_writes {
            options.retry_writes = r;
        }
        options
    }

    /// Parses a raw query string (`a=1&b=2`, without the `?`).
    fn parse(query: &str) -> std::result::Result<Self, String> {
        let mut params = Self::default();
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name).map_err(|e| format!("query parameter: {e}"))?;
            let Some(&known) = URL_PARAMS.iter().find(|n| **n == name) else {
                // The value is not shown: it might be a secret put in the wrong place.
                return Err(format!(
                    "unknown query parameter {name:?}; accepted: {} (credentials go in \
                     user:password@ or ClientOptions, never in the query)",
                    URL_PARAMS.join(", ")
                ));
            };
            if seen.contains(&known) {
                return Err(format!("query parameter {known} is given more than once"));
            }
            seen.push(known);
            let value = percent_decode(raw_value).map_err(|e| format!("{known}: {e}"))?;
            if value.is_empty() {
                return Err(format!(
                    "query parameter {known} needs a value: {known}=..."
                ));
            }
            let path = || Some(PathBuf::from(&value));
            match known {
                "enable_ssl" => params.enable_ssl = Some(parse_bool(known, &value)?),
                "enable_mtls" => params.enable_mtls = Some(parse_bool(known, &value)?),
                "ssl_ca_cert_path" => params.ssl_ca_cert_path = path(),
                "ssl_cert_path" => params.ssl_cert_path = path(),
                "ssl_key_path" => params.ssl_key_path = path(),
                "ssl_server_name" => params.ssl_server_name = Some(value.clone()),
                "connect_timeout" => params.connect_timeout = Some(parse_duration(known, &value)?),
                "request_timeout" => params.request_timeout = Some(parse_duration(known, &value)?),
                "min_connections_per_target" => {
                    params.min_connections_per_target = Some(parse_count(known, &value, 0)?)
                }
                "max_connections_per_target" => {
                    params.max_connections_per_target = Some(parse_count(known, &value, 1)?)
                }
                "max_in_flight_per_connection" => {
                    params.max_in_flight_per_connection = Some(parse_count(known, &value, 1)?)
                }
                "max_connecting" => params.max_connecting = Some(parse_count(known, &value, 1)?),
                "idle_timeout" => params.idle_timeout = Some(parse_duration(known, &value)?),
                "acquire_timeout" => params.acquire_timeout = Some(parse_duration(known, &value)?),
                "keepalive_interval" => {
                    params.keepalive_interval = Some(match value.as_str() {
                        "off" | "none" | "0" => None,
                        _ => Some(parse_duration(known, &value)?),
                    })
                }
                "enable_warmup" => params.enable_warmup = Some(parse_bool(known, &value)?),
                "retry_writes" => params.retry_writes = Some(parse_bool(known, &value)?),
                _ => unreachable!("every name in URL_PARAMS is handled"),
            }
        }
        params.check()?;
        Ok(params)
    }

    /// The combinations that contradict each other.
    fn check(&self) -> std::result::Result<(), String> {
        if let (Some(min), Some(max)) = (
            self.min_connections_per_target,
            self.max_connections_per_target,
        ) {
            if min > max {
                return Err(format!(
                    "min_connections_per_target={min} is more than \
                     max_connections_per_target={max}"
                ));
            }
        }
        if self.enable_ssl == Some(false) {
            let others: Vec<&str> = [
                ("ssl_ca_cert_path", self.ssl_ca_cert_path.is_some()),
                ("ssl_cert_path", self.ssl_cert_path.is_some()),
                ("ssl_key_path", self.ssl_key_path.is_some()),
                ("enable_mtls", self.enable_mtls.is_some()),
                ("ssl_server_name", self.ssl_server_name.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect();
            if !others.is_empty() {
                return Err(format!(
                    "enable_ssl=false contradicts {}; drop one or the other",
                    others.join(", ")
                ));
            }
        }
        match (&self.ssl_cert_path, &self.ssl_key_path) {
            (Some(_), None) => {
                return Err(
                    "ssl_cert_path needs ssl_key_path (the client certificate's \
                            private key) for mTLS"
                        .to_owned(),
                )
            }
            (None, Some(_)) => {
                return Err("ssl_key_path needs ssl_cert_path (the client certificate) \
                            for mTLS"
                    .to_owned())
            }
            _ => {}
        }
        match (self.enable_mtls, self.ssl_cert_path.is_some()) {
            (Some(true), false) => Err("enable_mtls=true needs ssl_cert_path and \
                                        ssl_key_path (the client certificate and its key)"
                .to_owned()),
            (Some(false), true) => Err("enable_mtls=false contradicts ssl_cert_path and \
                                        ssl_key_path; drop one or the other"
                .to_owned()),
            _ => Ok(()),
        }
    }
}

/// A whole number of at least `min`.
fn parse_count(name: &str, value: &str, min: usize) -> std::result::Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "{name}={value:?} must be a whole number of at least {min}"
        )),
    }
}

fn parse_bool(name: &str, value: &str) -> std::result::Result<bool, String> {
    match value {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{name}={value:?} is not a boolean; use true/false, 1/0, yes/no or on/off"
        )),
    }
}

/// `250ms`, `5s`, `2m`, `1h`, or plain seconds (`10`); zero is refused.
fn parse_duration(name: &str, value: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!(
            "{name}={value:?} is not a duration; write e.g. 5s, 250ms, 2m or plain seconds (10)"
        )
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    if duration.is_zero() {
        return Err(format!("{name} must be more than zero, got {value:?}"));
    }
    Ok(duration)
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("alternates", &self.alternates)
            .field("username", &self.username)
            .field("password", &self.password.as_deref().map(redacted))
            .field("database", &self.database)
            .field("params", &self.params)
            .finish()
    }
}

fn redacted(password: &str) -> &'static str {
    if password.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

impl ConnectTarget {
    /// Parses `host:port`, `host`, or `themis://user:pass@host:port/db?name=value`
    /// (see the [module docs](self) for the accepted query parameters).
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            input: redact_input(input),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid(
                "the address is empty; give host:port or themis://user:pass@host:port/db",
            ));
        }
        let (first, alternates) = split_hosts(trimmed).map_err(|reason| invalid(&reason))?;
        let mut target = if first.contains("://") {
            Self::parse_url(&first)
        } else {
            Self::parse_host_port(&first)
        }
        .map_err(|reason| invalid(&reason))?;
        target.alternates = alternates;
        Ok(target)
    }

    /// `host:port` (of the first target) as given to the socket layer.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Every target, the first one first: this target with its alternates moved out,
    /// one per server.
    pub fn targets(&self) -> Vec<ConnectTarget> {
        let first = ConnectTarget {
            alternates: Vec::new(),
            ..self.clone()
        };
        let mut all = vec![first.clone()];
        all.extend(self.alternates.iter().map(|(host, port)| ConnectTarget {
            host: host.clone(),
            port: *port,
            ..first.clone()
        }));
        all
    }

    fn parse_host_port(s: &str) -> std::result::Result<Self, String> {
        if s.contains('@') || s.contains('/') {
            return Err(
                "credentials or a database need the URL form themis://user:pass@host:port/db"
                    .to_owned(),
            );
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // [v6]:port or [v6]
            let (v6, after) = rest
                .split_once(']')
                .ok_or("an IPv6 address needs a closing ']'")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected ':port' after ']'")?),
            };
            (format!("[{v6}]"), port)
        } else {
            match s.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err("write IPv6 addresses in brackets: [::1]:8766".to_owned())
                }
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (s.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err("the host is missing".to_owned());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => parse_port(p)?,
        };
        Ok(Self {
            host,
            port,
            alternates: Vec::new(),
            username: None,
            password: None,
            database: None,
            params: UrlParams::default(),
        })
    }

    fn parse_url(s: &str) -> std::result::Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
        if url.scheme() != "themis" {
            return Err(format!(
                "unsupported scheme {:?}; use themis://user:pass@host:port/db",
                url.scheme()
            ));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err("the host is missing".to_owned()),
        };
        if url.fragment().is_some() {
            return Err("fragments (#...) are not supported".to_owned());
        }
        let params = UrlParams::parse(url.query().unwrap_or_default())?;
        let username = match url.username() {
            "" => None,
            u => Some(percent_decode(u).map_err(|e| format!("user: {e}"))?),
        };
        let password = match url.password() {
            None => None,
            Some(p) => Some(percent_decode(p).map_err(|e| format!("password: {e}"))?),
        };
        let database = match url.path().trim_start_matches('/') {
            "" => None,
            p if p.contains('/') => {
                return Err(format!(
                    "the path must be one database name, found {:?}",
                    url.path()
                ))
            }
            p => Some(percent_decode(p).map_err(|e| format!("database: {e}"))?),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            alternates: Vec::new(),
            username,
            password,
            database,
            params,
        })
    }

    /// Options with this target's credentials, database and query settings
    /// ([`UrlParams::apply_to`]) put over `options` (what the URL says wins over what
    /// the options say).
    pub(crate) fn apply_to(&self, options: ClientOptions) -> ClientOptions {
        let mut options = self.params.apply_to(options);
        if let Some(u) = &self.username {
            options.username = u.clone();
        }
        if let Some(p) = &self.password {
            options.password = p.clone();
        }
        if let Some(d) = &self.database {
            options.database = Some(d.clone());
        }
        options
    }
}

/// Splits a host list (`host1:8766,host2:8766`, in a URL's authority or alone) into
/// `input` with only the first host, and the others, parsed.
fn split_hosts(input: &str) -> std::result::Result<(String, Vec<(String, u16)>), String> {
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), input),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let mut hosts = hosts.split(',').map(str::trim);
    let first = hosts.next().unwrap_or_default();
    let mut seen = Vec::new();
    if !first.is_empty() {
        // The first host is parsed with the rest of the URL; here only for duplicates.
        if let Ok(t) = ConnectTarget::parse_host_port(first) {
            seen.push((t.host.to_ascii_lowercase(), t.port));
        }
    }
    let mut alternates = Vec::new();
    for host in hosts {
        if host.contains(char::is_whitespace) {
            return Err(format!("{host:?} in the host list contains a space"));
        }
        let target = ConnectTarget::parse_host_port(host)
            .map_err(|e| format!("in the host list, {host:?}: {e}"))?;
        let lowered = (target.host.to_ascii_lowercase(), target.port);
        if seen.contains(&lowered) {
            return Err(format!("{host:?} is in the host list twice"));
        }
        seen.push(lowered);
        alternates.push((target.host, target.port));
    }
    Ok((format!("{scheme}{userinfo}{first}{tail}"), alternates))
}

/// `input` as an error may show it: the URL's password and the values of unknown
/// query parameters (a secret put in the wrong place) become `<redacted>`.
fn redact_input(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return input.to_owned();
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, pass)) if !pass.is_empty() => format!("{user}:<redacted>@{host}"),
            _ => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value))
                    if !value.is_empty()
                        && !URL_PARAMS
                            .contains(&percent_decode(name).unwrap_or_default().as_str()) =>
                {
                    format!("{name}=<redacted>")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p:?} is not a number from 1 to 65535")),
        Ok(port) => Ok(port),
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}; write '%' as %25"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not decode to UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> ConnectTarget {
        ConnectTarget {
            host: host.into(),
            port,
            alternates: Vec::new(),
            username: None,
            password: None,
            database: None,
            params: UrlParams::default(),
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            ConnectTarget::parse("localhost:9000").unwrap(),
            target("localhost", 9000)
        );
        assert_eq!(
            ConnectTarget::parse("db.example.com").unwrap(),
            target("db.example.com", 8766)
        );
        assert_eq!(
            ConnectTarget::parse(" 10.0.0.7:8766 ").unwrap(),
            target("10.0.0.7", 8766)
        );
        assert_eq!(
            ConnectTarget::parse("[::1]:7000").unwrap(),
            target("[::1]", 7000)
        );
        assert_eq!(
            ConnectTarget::parse("[::1]").unwrap(),
            target("[::1]", 8766)
        );
        assert_eq!(
            ConnectTarget::parse("[::1]:7000").unwrap().addr(),
            "[::1]:7000"
        );
    }

    #[test]
    fn full_url() {
        let t = ConnectTarget::parse("themis://alice:s3cret@db.local:9001/shop").unwrap();
        assert_eq!(t.host, "db.local");
        assert_eq!(t.port, 9001);
        assert_eq!(t.username.as_deref(), Some("alice"));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(t.addr(), "db.local:9001");
    }

    #[test]
    fn url_defaults() {
        let t = ConnectTarget::parse("themis://db.local").unwrap();
        assert_eq!(t, target("db.local", 8766));
        let t = ConnectTarget::parse("themis://db.local/").unwrap();
        assert_eq!(t, target("db.local", 8766));
        let t = ConnectTarget::parse("themis://root@127.0.0.1:1234").unwrap();
        assert_eq!(t.username.as_deref(), Some("root"));
        assert_eq!(t.password, None);
        assert_eq!(t.database, None);
        let t = ConnectTarget::parse("themis://[::1]:8766/x").unwrap();
        assert_eq!(t.host, "[::1]");
        assert_eq!(t.database.as_deref(), Some("x"));
    }

    #[test]
    fn url_percent_decoding() {
        let t =
            ConnectTarget::parse("themis://us%65r%3Aname:p%40ss%2Fw%3Ard%25@h:1/my%2Ddb").unwrap();
        assert_eq!(t.username.as_deref(), Some("user:name"));
        assert_eq!(t.password.as_deref(), Some("p@ss/w:rd%"));
        assert_eq!(t.database.as_deref(), Some("my-db"));
        let t = ConnectTarget::parse("themis://j%C3%BCrgen:%E2%82%AC@h").unwrap();
        assert_eq!(t.username.as_deref(), Some("jürgen"));
        assert_eq!(t.password.as_deref(), Some("€"));
    }

    #[test]
    fn bad_addresses_name_the_problem() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("http://h:1", "scheme"),
            ("themis://", "host"),
            ("themis://h:99999", "valid URL"),
            ("themis://h/a/b", "one database"),
            ("themis://h/db?tls=1", "unknown query parameter \"tls\""),
            ("themis://h/db#frag", "fragment"),
            ("themis://u:%zz@h", "percent"),
            ("themis://u:%C3@h", "UTF-8"),
            ("h:0", "port"),
            ("h:abc", "port"),
            ("h:", "port"),
            (":8766", "host"),
            ("::1:8766", "brackets"),
            ("[::1", "']'"),
            ("[::1]x", "':port'"),
            ("user:pw@h:1", "themis://"),
        ];
        for (input, needle) in cases {
            match ConnectTarget::parse(input) {
                Err(e @ Error::InvalidUrl { .. }) => {
                    let shown = e.to_string();
                    assert!(shown.contains(needle), "{input:?}: {shown}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn url_overrides_options() {
        let base = ClientOptions {
            username: "opt-user".into(),
            password: "opt-pass".into(),
            database: Some("opt-db".into()),
            ..ClientOptions::default()
        };
        let from_url = ConnectTarget::parse("themis://u:p@h/d")
            .unwrap()
            .apply_to(base.clone());
        assert_eq!(
            (
                from_url.username.as_str(),
                from_url.password.as_str(),
                from_url.database.as_deref()
            ),
            ("u", "p", Some("d"))
        );
        let kept = ConnectTarget::parse("h:1").unwrap().apply_to(base);
        assert_eq!(
            (
                kept.username.as_str(),
                kept.password.as_str(),
                kept.database.as_deref()
            ),
            ("opt-user", "opt-pass", Some("opt-db"))
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let t = ConnectTarget::parse("themis://u:hunter2@h").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        let o = ConnectTarget::parse("themis://u:hunter2@h")
            .unwrap()
            .apply_to(ClientOptions::default());
        assert!(!format!("{o:?}").contains("hunter2"));
        assert!(ClientOptions::default()
            .client_name
            .starts_with("themis-client-rust/"));
    }

    #[test]
    fn debug_hides_keys_and_tokens() {
        let key = "themis_0123456789ab_abcdefghijabcdefghijabcdefghijabcdefghij";
        let options = ClientOptions {
            auth: Auth::ApiKey(key.into()),
            password: "hunter2".into(),
            ..ClientOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("0123456789ab") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("ApiKey(<redacted>)"), "{shown}");
        let shown = format!("{:#?}", Auth::Jwt("eyJ.secret.sig".into()));
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(format!("{:?}", Auth::Jwt(String::new())), "Jwt(\"\")");
        assert_eq!(format!("{:?}", Auth::Password), "Password");
        assert_eq!(format!("{:?}", Auth::Certificate), "Certificate");
        assert_eq!(ClientOptions::default().auth, Auth::Password);
    }

    #[test]
    fn auth_methods() {
        use themis_proto::wire::AuthMethod;
        assert_eq!(Auth::Password.method(), AuthMethod::UsernamePassword);
        assert_eq!(Auth::ApiKey("k".into()).method(), AuthMethod::ApiKey);
        assert_eq!(Auth::Jwt("t".into()).method(), AuthMethod::Jwt);
        assert_eq!(Auth::Certificate.method(), AuthMethod::Certificate);
        assert_eq!(Auth::ApiKey("k".into()).method_name(), "API_KEY");
        assert_eq!(Auth::Password.method_name(), "USERNAME_PASSWORD");
    }

    fn params(query: &str) -> UrlParams {
        ConnectTarget::parse(&format!("themis://u:pw@h:1/db?{query}"))
            .unwrap_or_else(|e| panic!("{query:?}: {e}"))
            .params
    }

    fn param_error(query: &str) -> String {
        match ConnectTarget::parse(&format!("themis://u:pw@h:1/db?{query}")) {
            Err(e @ Error::InvalidUrl { .. }) => e.to_string(),
            other => panic!("{query:?} gave {other:?}"),
        }
    }

    #[test]
    fn no_query_or_empty_query_means_no_params() {
        for url in [
            "themis://h",
            "themis://h/db",
            "themis://h/db?",
            "themis://h/?&",
        ] {
            let t = ConnectTarget::parse(url).unwrap();
            assert!(t.params.is_empty(), "{url}: {:?}", t.params);
        }
        let t = ConnectTarget::parse("themis://u:p@h:2/d?enable_ssl=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.database.as_deref()),
            ("h", 2, Some("d"))
        );
        assert_eq!(t.params.enable_ssl, Some(true));
    }

    #[test]
    fn enable_ssl_values() {
        for v in ["true", "1", "yes", "on"] {
            assert_eq!(
                params(&format!("enable_ssl={v}")).enable_ssl,
                Some(true),
                "{v}"
            );
        }
        for v in ["false", "0", "no", "off"] {
            assert_eq!(
                params(&format!("enable_ssl={v}")).enable_ssl,
                Some(false),
                "{v}"
            );
        }
        for v in ["TRUE", "2", "y", "enabled"] {
            let e = param_error(&format!("enable_ssl={v}"));
            assert!(
                e.contains("enable_ssl") && e.contains("not a boolean"),
                "{e}"
            );
        }
        let e = param_error("enable_ssl=");
        assert!(e.contains("enable_ssl needs a value"), "{e}");
        let e = param_error("enable_ssl");
        assert!(e.contains("enable_ssl needs a value"), "{e}");
    }

    #[test]
    fn tls_paths_are_percent_decoded() {
        let p = params(
            "ssl_ca_cert_path=%2Fetc%2Fthemis%20certs%2Fca.pem\
             &ssl_cert_path=/home/j%C3%BCrgen/client+1.pem&ssl_key_path=C%3A%5Ckey.pem",
        );
        assert_eq!(
            p.ssl_ca_cert_path,
            Some(PathBuf::from("/etc/themis certs/ca.pem"))
        );
        // '+' stays a '+': paths are percent-decoded, not form-decoded.
        assert_eq!(
            p.ssl_cert_path,
            Some(PathBuf::from("/home/jürgen/client+1.pem"))
        );
        assert_eq!(p.ssl_key_path, Some(PathBuf::from("C:\\key.pem")));
        let e = param_error("ssl_ca_cert_path=%zz");
        assert!(
            e.contains("ssl_ca_cert_path") && e.contains("percent"),
            "{e}"
        );
    }

    #[test]
    fn mtls_needs_cert_and_key_together() {
        let p = params("ssl_cert_path=c.pem&ssl_key_path=k.pem&enable_mtls=true");
        assert_eq!(p.enable_mtls, Some(true));
        let e = param_error("ssl_cert_path=c.pem");
        assert!(e.contains("ssl_cert_path needs ssl_key_path"), "{e}");
        let e = param_error("ssl_key_path=k.pem");
        assert!(e.contains("ssl_key_path needs ssl_cert_path"), "{e}");
        let e = param_error("enable_mtls=true");
        assert!(e.contains("enable_mtls=true needs ssl_cert_path"), "{e}");
        let e = param_error("enable_mtls=yes&ssl_cert_path=c.pem");
        assert!(e.contains("ssl_cert_path needs ssl_key_path"), "{e}");
        let e = param_error("enable_mtls=false&ssl_cert_path=c.pem&ssl_key_path=k.pem");
        assert!(e.contains("enable_mtls=false contradicts"), "{e}");
        assert_eq!(params("enable_mtls=off").enable_mtls, Some(false));
        let e = param_error("enable_mtls=maybe");
        assert!(e.contains("not a boolean"), "{e}");
    }

    #[test]
    fn enable_ssl_false_with_tls_settings_is_refused() {
        for other in [
            "ssl_ca_cert_path=ca.pem",
            "ssl_cert_path=c.pem&ssl_key_path=k.pem",
            "ssl_server_name=db",
            "enable_mtls=false",
        ] {
            let e = param_error(&format!("enable_ssl=false&{other}"));
            assert!(e.contains("enable_ssl=false contradicts"), "{other}: {e}");
        }
        // Timeouts do not contradict plain TCP.
        let p = params("enable_ssl=false&connect_timeout=1s");
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn server_name() {
        let p = params("ssl_server_name=db.internal");
        assert_eq!(p.ssl_server_name.as_deref(), Some("db.internal"));
        let p = params("ssl_server_name=%5B%3A%3A1%5D");
        assert_eq!(p.ssl_server_name.as_deref(), Some("[::1]"));
    }

    #[test]
    fn timeouts() {
        let cases = [
            ("5s", Duration::from_secs(5)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10", Duration::from_secs(10)),
        ];
        for (v, want) in cases {
            let p = params(&format!("connect_timeout={v}&request_timeout={v}"));
            assert_eq!(p.connect_timeout, Some(want), "{v}");
            assert_eq!(p.request_timeout, Some(want), "{v}");
        }
        for v in ["0", "0s", "0ms", "0m"] {
            let e = param_error(&format!("request_timeout={v}"));
            assert!(
                e.contains("request_timeout must be more than zero"),
                "{v}: {e}"
            );
        }
        for v in [
            "5 s",
            "-1",
            "1.5s",
            "s",
            "5sec",
            "1d",
            "99999999999999999999",
            "ms5",
        ] {
            let e = param_error(&format!("connect_timeout={v}"));
            assert!(
                e.contains("connect_timeout=") && e.contains("not a duration"),
                "{v}: {e}"
            );
        }
        let e = param_error("connect_timeout=999999999999999999h");
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn pool_settings_parse_and_apply() {
        let p = params(
            "min_connections_per_target=2&max_connections_per_target=20&idle_timeout=60s\
             &acquire_timeout=250ms&keepalive_interval=off&enable_warmup=no\
             &max_in_flight_per_connection=4&max_connecting=3",
        );
        let o = p.apply_to(ClientOptions::default());
        assert_eq!(
            (o.min_connections_per_target, o.max_connections_per_target),
            (2, 20)
        );
        assert_eq!(o.idle_timeout, Duration::from_secs(60));
        assert_eq!(o.acquire_timeout, Duration::from_millis(250));
        assert_eq!(o.keepalive_interval, None);
        assert!(!o.enable_warmup);
        assert_eq!((o.max_in_flight_per_connection, o.max_connecting), (4, 3));
        assert!(o.retry_writes, "not in that URL: the default");
        let o = params("retry_writes=false").apply_to(ClientOptions::default());
        assert!(!o.retry_writes);
        let o = params("keepalive_interval=5s").apply_to(ClientOptions::default());
        assert_eq!(o.keepalive_interval, Some(Duration::from_secs(5)));
        // Not given: the options' values stay.
        let o = params("").apply_to(ClientOptions::default());
        assert_eq!(o.max_connections_per_target, 8);
        assert!(o.enable_warmup);
    }

    #[test]
    fn bad_pool_settings_are_refused_by_name() {
        for (query, wanted) in [
            ("max_connections_per_target=0", "max_connections_per_target"),
            ("max_connections_per_target=x", "max_connections_per_target"),
            (
                "min_connections_per_target=-1",
                "min_connections_per_target",
            ),
            (
                "max_in_flight_per_connection=0",
                "max_in_flight_per_connection",
            ),
            ("idle_timeout=soon", "idle_timeout"),
            ("enable_warmup=maybe", "enable_warmup"),
            (
                "min_connections_per_target=5&max_connections_per_target=2",
                "more than",
            ),
        ] {
            let e = param_error(query);
            assert!(e.contains(wanted), "{query}: {e}");
        }
    }

    #[test]
    fn host_lists_name_every_target() {
        let t = ConnectTarget::parse("themis://u:p%2Cw@a:1,b:2,[::1]/db?enable_warmup=0").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("a", 1));
        assert_eq!(
            t.alternates,
            vec![("b".to_owned(), 2), ("[::1]".to_owned(), DEFAULT_PORT)]
        );
        assert_eq!(t.password.as_deref(), Some("p,w"));
        assert_eq!(t.database.as_deref(), Some("db"));
        assert_eq!(t.params.enable_warmup, Some(false));
        let all: Vec<String> = t.targets().iter().map(ConnectTarget::addr).collect();
        assert_eq!(all, ["a:1", "b:2", "[::1]:8766"]);
        assert!(t.targets().iter().all(|t| t.alternates.is_empty()));

        let t = ConnectTarget::parse("a:1,b").unwrap();
        assert_eq!(t.alternates, vec![("b".to_owned(), DEFAULT_PORT)]);
        let t = ConnectTarget::parse("a:1, b:2").unwrap();
        assert_eq!(t.alternates, vec![("b".to_owned(), 2)]);
        for bad in [
            "a:1,,b:2",
            "a:1,b:x",
            "themis://a:1,b:2,b:2/db",
            "a:1,a:1",
            "A:1,a:1",
            "a:1,b c:2",
        ] {
            assert!(ConnectTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_names_are_refused_and_listed() {
        for name in [
            "max_connections",
            "api_key",
            "password",
            "Enable_SSL",
            "ENABLE_SSL",
            "tls",
        ] {
            let e = param_error(&format!("{name}=1"));
            assert!(
                e.contains(&format!("unknown query parameter {name:?}")),
                "{name}: {e}"
            );
            for accepted in URL_PARAMS {
                assert!(e.contains(accepted), "{name}: {e}");
            }
        }
    }

    #[test]
    fn errors_do_not_echo_secrets() {
        let e = param_error("api_key=themis_0123456789ab_secretsecret&enable_ssl=1");
        assert!(!e.contains("secretsecret"), "{e}");
        assert!(
            e.contains("api_key=<redacted>") && e.contains("enable_ssl=1"),
            "{e}"
        );
        // The URL's password is not shown either.
        assert!(!e.contains(":pw@"), "{e}");
        let e = ConnectTarget::parse("themis://u:hunter2@h/db?x=1#f")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            redact_input("themis://u:hunter2@h:1/db?enable_ssl=1&k=v&flag#frag"),
            "themis://u:<redacted>@h:1/db?enable_ssl=1&k=<redacted>&flag#frag"
        );
        assert_eq!(redact_input("h:1"), "h:1");
    }

    #[test]
    fn duplicates_are_refused() {
        for query in [
            "enable_ssl=1&enable_ssl=1",
            "ssl_ca_cert_path=a&ssl_ca_cert_path=b",
            "connect_timeout=1s&request_timeout=1s&connect_timeout=2s",
            // An encoded name is the same name.
            "enable_ssl=1&enable%5Fssl=1",
        ] {
            let e = param_error(query);
            assert!(e.contains("more than once"), "{query}: {e}");
        }
    }

    #[test]
    fn apply_to_sets_tls_and_timeouts() {
        let base = ClientOptions::default();

        let o = ConnectTarget::parse("themis://h/?enable_ssl=true")
            .unwrap()
            .apply_to(base.clone());
        assert_eq!(o.tls, Some(TlsOptions::default()), "system roots");

        let o = ConnectTarget::parse(
            "themis://h/?ssl_ca_cert_path=%2Fca.pem&ssl_cert_path=%2Fc.pem\
             &ssl_key_path=%2Fk.pem&enable_mtls=1&ssl_server_name=db.internal\
             &connect_timeout=250ms&request_timeout=2m",
        )
        .unwrap()
        .apply_to(base.clone());
        assert_eq!(
            o.tls,
            Some(TlsOptions {
                ca_cert_path: Some("/ca.pem".into()),
                client_cert_path: Some("/c.pem".into()),
                client_key_path: Some("/k.pem".into()),
                server_name: Some("db.internal".into()),
            })
        );
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.request_timeout, Duration::from_secs(120));

        // Any TLS path or name alone turns TLS on.
        let o = ConnectTarget::parse("themis://h/?ssl_server_name=x")
            .unwrap()
            .apply_to(base.clone());
        assert_eq!(o.tls.unwrap().server_name.as_deref(), Some("x"));

        // No query: the options stay as they are.
        let o = ConnectTarget::parse("themis://h/").unwrap().apply_to(base);
        assert_eq!(o.tls, None);
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn url_params_win_over_options() {
        let base = ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(4),
            tls: Some(TlsOptions {
                ca_cert_path: Some("/opt-ca.pem".into()),
                client_cert_path: Some("/opt-c.pem".into()),
                client_key_path: Some("/opt-k.pem".into()),
                server_name: Some("opt-name".into()),
            }),
            ..ClientOptions::default()
        };
        // Merged: the URL's settings replace, the rest of the options' TLS stays.
        let o = ConnectTarget::parse("themis://h/?ssl_ca_cert_path=/url-ca.pem&request_timeout=9")
            .unwrap()
            .apply_to(base.clone());
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca_cert_path, Some("/url-ca.pem".into()));
        assert_eq!(tls.client_cert_path, Some("/opt-c.pem".into()));
        assert_eq!(tls.server_name.as_deref(), Some("opt-name"));
        assert_eq!(o.connect_timeout, Duration::from_secs(3));
        assert_eq!(o.request_timeout, Duration::from_secs(9));

        // enable_ssl=true keeps the options' TLS settings.
        let o = ConnectTarget::parse("themis://h/?enable_ssl=on")
            .unwrap()
            .apply_to(base.clone());
        assert_eq!(o.tls, base.tls);

        // enable_mtls=false drops the options' client certificate.
        let o = ConnectTarget::parse("themis://h/?enable_mtls=false")
            .unwrap()
            .apply_to(base.clone());
        let tls = o.tls.unwrap();
        assert_eq!((tls.client_cert_path, tls.client_key_path), (None, None));
        assert_eq!(tls.ca_cert_path, Some("/opt-ca.pem".into()));

        // enable_ssl=false turns TLS off.
        let o = ConnectTarget::parse("themis://h/?enable_ssl=0")
            .unwrap()
            .apply_to(base);
        assert_eq!(o.tls, None);
    }

    #[test]
    fn debug_shows_params() {
        let t =
            ConnectTarget::parse("themis://u:hunter2@h/?enable_ssl=1&request_timeout=5s").unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("enable_ssl: Some(true)") && shown.contains("request_timeout: Some(5s)"),
            "{shown}"
        );
    }
}
