//! Where to connect and how: [`ConnectTarget`] (parsed from `host:port` or a
//! `themis://` URL) and [`ClientOptions`].
//!
//! Accepted addresses:
//!
//! * `host:port`, `host` (port 8766), `[::1]:8766` — credentials and database then
//!   come from [`ClientOptions`];
//! * `themis://user:pass@host:port/db` — every part after the host optional; user and
//!   password are percent-decoded (`p%40ss` is `p@ss`), the port defaults to 8766 and
//!   the database to the connection's default (`_system`).
//!
//! How the client proves who it is is [`Auth`] (password, API key, JWT, or the TLS
//! client certificate).
//!
//! Invariant: parsing never touches the network, and `Debug` never prints a password,
//! an API key or a token.

use std::fmt;
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
}

/// TLS settings of a connection (seed 000's `enable_ssl`, `ssl_ca_cert_path`,
/// `ssl_cert_path`, `ssl_key_path`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) the server's certificate must chain to
    /// (`themisdb cert ca` makes a development CA).
    pub ca_cert_path: std::path::PathBuf,
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
    /// From the URL's user part, percent-decoded.
    pub username: Option<String>,
    /// From the URL's password part, percent-decoded.
    pub password: Option<String>,
    /// From the URL's path, percent-decoded.
    pub database: Option<String>,
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_deref().map(redacted))
            .field("database", &self.database)
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
    /// Parses `host:port`, `host`, or `themis://user:pass@host:port/db`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid(
                "the address is empty; give host:port or themis://user:pass@host:port/db",
            ));
        }
        if trimmed.contains("://") {
            Self::parse_url(trimmed).map_err(|reason| invalid(&reason))
        } else {
            Self::parse_host_port(trimmed).map_err(|reason| invalid(&reason))
        }
    }

    /// `host:port` as given to the socket layer.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
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
            username: None,
            password: None,
            database: None,
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
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "query parameters and fragments are not supported; set them in ClientOptions"
                    .to_owned(),
            );
        }
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
            username,
            password,
            database,
        })
    }

    /// Options with this target's credentials and database put over `options`
    /// (what the URL says wins over what the options say).
    pub(crate) fn apply_to(&self, mut options: ClientOptions) -> ClientOptions {
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
            username: None,
            password: None,
            database: None,
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
            ("themis://h/db?tls=1", "query"),
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
}
