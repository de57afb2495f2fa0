//! `themis.conf`: the server's settings, from built-in defaults, a file, the
//! environment and command-line flags, each overriding the one before.
//!
//! The file format is the INI-like one of seed 000:
//!
//! ```text
//! [wire_protocol]
//! enabled = true
//! bind_address = 0.0.0.0
//! port = 8766
//! # TLS Configuration
//! tls_min_version = TLSv1.2 # or TLSv1.3
//! ```
//!
//! `[section]` headers, `key = value` with unquoted values, `#` comments on their own
//! line or after a value (a `#` that starts the value or follows whitespace), blank
//! lines. A value may be wrapped in double quotes, which are stripped; that is the way
//! to keep a ` #` inside a value. Durations are whole seconds (`300`) or carry a unit
//! (`250ms`, `30s`, `5m`, `1h`); sizes are bytes or carry a binary unit (`512KiB`,
//! `16MiB`); booleans are `true/false`, `yes/no`, `on/off`, `1/0`.
//!
//! Invariants:
//! * Every value, whatever its source, is parsed by [`Config::apply_override`]: a file
//!   line, `THEMIS_WIRE_PROTOCOL_PORT=9000` and a `--port 9000` flag accept the same
//!   spellings and fail with the same message, differing only in the location named.
//! * A name this build does not know (section, key, `THEMIS_*` variable) is a warning,
//!   so a file written for a newer version, or with a harmless typo, still starts the
//!   server and the operator is told. A value that does not parse is an error: the
//!   server never runs with a setting other than the one written.
//! * Nothing here reads the process environment: callers pass `std::env::vars()` in,
//!   tests pass a `Vec`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file read when no path is given, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "themis.conf";

/// Prefix of the environment variables that override settings:
/// `THEMIS_<SECTION>_<KEY>`, upper-case (`THEMIS_SERVER_DATA_DIR`).
pub const ENV_PREFIX: &str = "THEMIS_";

/// `THEMIS_*` variables that other parts of the server read; they are not settings
/// of this file and are skipped without a warning.
pub const ENV_HANDLED_ELSEWHERE: &[&str] = &["THEMIS_ROOT_PASSWORD", "THEMIS_URL"];

/// Warning returned for `[storage] sync = never`.
pub const SYNC_NEVER_WARNING: &str =
    "[storage] sync = never: writes are acknowledged before they reach the disk, \
     so a crash or power loss can lose acknowledged data; use it for benchmarks only";

/// Every section and key this build knows. [`Config::apply_override`] accepts exactly
/// these; a test keeps this table, the parser and [`EXAMPLE_CONF`] in step.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "data_dir",
            "log_level",
            "log_format",
            "handshake_timeout",
            "shutdown_grace",
            "auto_create_collections",
            "bcrypt_cost",
            "session_ttl",
            "node_id",
            "request_key_window",
        ],
    ),
    (
        "wire_protocol",
        &[
            "enabled",
            "bind_address",
            "port",
            "max_connections",
            "idle_timeout",
            "handshake_timeout",
            "max_frame_bytes",
            "max_in_flight",
            "enable_tls",
            "tls_cert_path",
            "tls_key_path",
            "tls_min_version",
            "enable_mtls",
            "tls_ca_cert_path",
            "tls_require_client_cert",
            "require_tls",
            "tls_reload_interval",
        ],
    ),
    ("storage", &["sync", "cache_size_mb"]),
    ("query", &["memory_limit", "max_runtime"]),
    (
        "transactions",
        &["idle_timeout", "max_idle_timeout", "max_per_connection"],
    ),
    (
        "subscriptions",
        &[
            "buffer_events",
            "max_per_connection",
            "change_log_retention",
            "change_log_max_bytes",
            "prune_interval",
        ],
    ),
    (
        "security",
        &[
            "enable_password_auth",
            "enable_api_key_auth",
            "enable_jwt_auth",
            "enable_certificate_auth",
            "jwt_secret_file",
            "jwt_public_key_path",
            "jwt_jwks_path",
            "jwt_issuer",
            "jwt_audience",
            "jwt_leeway",
            "certificate_username",
            "auth_free_attempts_per_user",
            "auth_free_attempts_per_ip",
            "auth_delay",
            "auth_max_delay",
            "auth_failure_window",
            "max_connections_per_ip",
            "rate_limit",
            "rate_limit_burst",
            "audit_log",
        ],
    ),
];

/// A fully commented `themis.conf` holding every setting at its default.
/// Shipped as `themis.conf.example`; it parses to exactly [`Config::default`].
pub const EXAMPLE_CONF: &str = r#"# themis.conf: ThemisDB server configuration.
#
# Every setting is shown with its built-in default; keep only the ones you change.
# Precedence, lowest first: built-in defaults, this file, environment variables
# THEMIS_<SECTION>_<KEY> (e.g. THEMIS_WIRE_PROTOCOL_PORT=9000 or
# THEMIS_SERVER_DATA_DIR=/var/lib/themis), then command-line flags.
#
# Syntax: [section] headers; `key = value`; `#` starts a comment on its own line or
# after a value. Values need no quotes; wrap one in double quotes to keep a ` #`.
# Durations: whole seconds (300) or with a unit: 250ms, 30s, 5m, 1h.
# Sizes: bytes (16777216) or with a binary unit: 512KiB, 16MiB, 1GiB.
# Booleans: true/false, yes/no, on/off, 1/0.

[server]
# Directory of the database files; created if missing.
data_dir = ./data
# Log filter in tracing's EnvFilter syntax: error, warn, info, debug, trace, or
# per module, e.g. info,themis_server=debug.
log_level = info
# Log line format: text (for people) or json (one object per line, for collectors).
log_format = text
# handshake_timeout is accepted here too; it is shown under [wire_protocol].
# On shutdown (SIGTERM, Ctrl-C), how long to wait for in-flight requests to finish
# before closing connections anyway.
shutdown_grace = 30
# CREATE into a collection that does not exist creates it; off: ERR_NOT_FOUND.
auto_create_collections = true
# bcrypt work factor for stored passwords, 4-31; each step doubles the cost of a
# password check (and of guessing one).
bcrypt_cost = 10
# How long a session token stays valid after its HANDSHAKE.
session_ttl = 86400
# Name this server reports as ServerInfo.node_id; empty: themis-<port>.
node_id =
# How long the server remembers a write's request_key (its idempotent-retry record):
# a retry with the same key within this window gets the first answer instead of
# writing again. Far longer than any client retry; expired records are swept out.
request_key_window = 600

[wire_protocol]
# Serve the binary wire protocol at all.
enabled = true
# Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 (or ::) for every
# interface. Without TLS, passwords cross the network in plaintext.
bind_address = 127.0.0.1
# TCP port; 0 lets the operating system pick a free one (for tests).
port = 8766
# Connections served at once; the next one gets ERR_RESOURCE_EXHAUSTED and is closed.
max_connections = 1000
# A connection that sends nothing for this long is closed.
idle_timeout = 300
# How long a new connection has to complete its HANDSHAKE before it is closed.
handshake_timeout = 10
# Largest frame payload accepted (and advertised in the handshake), 1KiB-1GiB.
max_frame_bytes = 16MiB
# Requests one connection may have in flight; beyond it the server stops reading
# that connection until answers go out (backpressure, not an error).
max_in_flight = 1024

# TLS on the same port as plaintext: the server tells them apart by the first byte.
# Only TLS 1.2 and 1.3 with ECDHE and AES-GCM or ChaCha20-Poly1305 (docs/security.md).
enable_tls = false
# PEM files of the server's certificate chain and private key.
tls_cert_path =
tls_key_path =
# Oldest TLS version accepted: TLSv1.2 or TLSv1.3.
tls_min_version = TLSv1.2
# Mutual TLS: clients present certificates signed by the CA in tls_ca_cert_path.
enable_mtls = false
tls_ca_cert_path =
# With mTLS: refuse clients without a certificate (false: a certificate is optional,
# but one that is presented must be valid).
tls_require_client_cert = false
# Refuse plaintext connections (they get an OP_ERROR saying TLS is required); needs
# enable_tls = true.
require_tls = false
# How often the certificate, key and CA files are checked for changes (modification
# time and length); changed files are reloaded without a restart, as on SIGHUP.
# 0 turns the checks off (SIGHUP still reloads).
tls_reload_interval = 5

[storage]
# always: a write is acknowledged only once it is on disk (concurrent commits share
# one sync). never: UNSAFE, acknowledged writes can be lost on a crash or power
# loss; for benchmarks only.
sync = always
# Block cache of the storage engine, in MiB.
cache_size_mb = 64

[query]
# Memory one query may hold in the operations that must materialise (SORT without
# an index, COLLECT, RETURN DISTINCT, subquery results, a write query's results);
# beyond it the query fails with a clear error.
memory_limit = 256MiB
# Longest a query may run; beyond it the query fails with a clear error.
max_runtime = 300

[transactions]
# A transaction with no request for this long is rolled back; BEGIN_TX may ask for
# another timeout with timeout_ms (0 = this one).
idle_timeout = 60
# The longest idle timeout a BEGIN_TX may ask for; longer requests get this one.
max_idle_timeout = 1h
# Transactions one connection may have open at once; the next BEGIN_TX fails with
# ERR_RESOURCE_EXHAUSTED.
max_per_connection = 16

[subscriptions]
# Changes one subscription may have waiting for its connection; a subscriber that
# falls further behind gets END "lagged" with a resume_sequence to subscribe again
# from. Each waiting change holds its document.
buffer_events = 1024
# Subscriptions one connection may hold; the next SUBSCRIBE gets
# ERR_RESOURCE_EXHAUSTED.
max_per_connection = 64
# How long each database keeps its change log: the window in which a subscriber can
# resume with from_sequence.
change_log_retention = 24h
# Largest change log per database; the oldest changes beyond it are removed.
change_log_max_bytes = 256MiB
# How often the change log is trimmed to the two limits above (also once at start).
prune_interval = 60

[security]
# Authentication methods a HANDSHAKE may use; a disabled one is refused with a
# message saying so. USERNAME_PASSWORD checks bcrypt hashes; API_KEY takes keys made
# with `themisdb apikey create`; JWT needs one of the jwt_* keys below; CERTIFICATE
# (the mTLS client certificate names the user) needs enable_mtls.
enable_password_auth = true
enable_api_key_auth = true
enable_jwt_auth = false
enable_certificate_auth = false
# JWT verification key, one of: a file holding the HS256 shared secret; a PEM public
# key (RSA for RS256, P-256 for ES256); a JWKS file (keys chosen by the token's kid).
jwt_secret_file =
jwt_public_key_path =
jwt_jwks_path =
# When set, a token's iss / aud claim must equal these.
jwt_issuer =
jwt_audience =
# Clock skew allowed when checking exp and nbf.
jwt_leeway = 30
# Which name of a client certificate is the username with CERTIFICATE: cn (the
# subject's common name), san_email, san_dns or san_uri (its first such
# subjectAltName).
certificate_username = cn
# Failed logins: after this many failures for one username (or from one address)
# within auth_failure_window, each further attempt waits auth_delay, doubling per
# failure up to auth_max_delay (and never longer than handshake_timeout), before it
# is answered. auth_delay = 0 turns this off.
auth_free_attempts_per_user = 5
auth_free_attempts_per_ip = 20
auth_delay = 500ms
auth_max_delay = 8s
auth_failure_window = 15m
# Connections one client address may hold at once; 0 = no limit beyond
# max_connections.
max_connections_per_ip = 0
# Requests per second one principal (user) may send, over all its connections;
# beyond it requests get ERR_RATE_LIMITED with retry_after_ms. 0 = no limit.
rate_limit = 0
# Requests a principal may send in one burst; 0 = rate_limit (one second's worth).
rate_limit_burst = 0
# Security events (logins, failures, permission denials, user and key changes) as
# JSON lines appended to this file; empty = in the server log (target themis::audit).
audit_log =
"#;

/// All settings. Built by [`Config::load`]; every field may also be assigned directly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[wire_protocol]`
    pub wire: WireConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[query]`
    pub query: QueryConfig,
    /// `[transactions]`
    pub transactions: TransactionsConfig,
    /// `[subscriptions]`
    pub subscriptions: SubscriptionsConfig,
    /// `[security]`
    pub security: SecurityConfig,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// A tracing `EnvFilter` directive string.
    pub log_level: String,
    pub log_format: LogFormat,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    pub auto_create_collections: bool,
    /// 4..=31.
    pub bcrypt_cost: u32,
    pub session_ttl: Duration,
    pub node_id: Option<String>,
    /// How long a request key's record is kept (idempotent retries).
    pub request_key_window: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(30),
            auto_create_collections: true,
            bcrypt_cost: 10,
            session_ttl: Duration::from_secs(86_400),
            node_id: None,
            request_key_window: Duration::from_secs(600),
        }
    }
}

/// `[wire_protocol]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireConfig {
    pub enabled: bool,
    /// An IP address or host name, without a port (see [`WireConfig::listen_address`]).
    pub bind_address: String,
    /// 0 lets the operating system choose.
    pub port: u16,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_frame_bytes: u32,
    pub max_in_flight: usize,
    pub tls: TlsConfig,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_address: "127.0.0.1".to_string(),
            port: 8766,
            max_connections: 1000,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 * MIB as u32,
            max_in_flight: 1024,
            tls: TlsConfig::default(),
        }
    }
}

impl WireConfig {
    /// `bind_address:port`, with an IPv6 address in brackets (`[::1]:8766`), ready for
    /// `TcpListener::bind`.
    pub fn listen_address(&self) -> String {
        if self.bind_address.contains(':') {
            format!("[{}]:{}", self.bind_address, self.port)
        } else {
            format!("{}:{}", self.bind_address, self.port)
        }
    }
}

/// The TLS keys of `[wire_protocol]` (`enable_tls`, `tls_*`, `enable_mtls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `enable_tls`
    pub enabled: bool,
    /// `tls_cert_path`
    pub cert_path: Option<PathBuf>,
    /// `tls_key_path`
    pub key_path: Option<PathBuf>,
    /// `tls_min_version`
    pub min_version: TlsVersion,
    /// `enable_mtls`
    pub mtls: bool,
    /// `tls_ca_cert_path`
    pub ca_cert_path: Option<PathBuf>,
    /// `tls_require_client_cert`
    pub require_client_cert: bool,
    /// `require_tls`: refuse plaintext connections on the shared port.
    pub required: bool,
    /// `tls_reload_interval`: how often the files are checked for changes; zero: never.
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_path: None,
            key_path: None,
            min_version: TlsVersion::V1_2,
            mtls: false,
            ca_cert_path: None,
            require_client_cert: false,
            required: false,
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// `tls_min_version`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_2 => "TLSv1.2",
            Self::V1_3 => "TLSv1.3",
        })
    }
}

/// `[server] log_format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// `[query]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConfig {
    /// Bytes the materialising operations of one query may hold.
    pub memory_limit: u64,
    pub max_runtime: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit: 256 * MIB,
            max_runtime: Duration::from_secs(300),
        }
    }
}

/// `[transactions]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionsConfig {
    /// Idle timeout of a transaction whose BEGIN_TX leaves `timeout_ms` at 0.
    pub idle_timeout: Duration,
    /// Upper bound on the `timeout_ms` a BEGIN_TX may ask for.
    pub max_idle_timeout: Duration,
    pub max_per_connection: usize,
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            max_idle_timeout: Duration::from_secs(3600),
            max_per_connection: 16,
        }
    }
}

/// `[subscriptions]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionsConfig {
    /// Live changes one subscription may have queued before it ends as lagged.
    pub buffer_events: usize,
    pub max_per_connection: usize,
    /// Change-log records older than this are pruned.
    pub change_log_retention: Duration,
    /// Per database: the oldest change-log records beyond this many bytes are pruned.
    pub change_log_max_bytes: u64,
    pub prune_interval: Duration,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            buffer_events: 1024,
            max_per_connection: 64,
            change_log_retention: Duration::from_secs(24 * 3600),
            change_log_max_bytes: 256 * MIB,
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// `[security]`: authentication methods, login throttling, limits and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    pub password_auth: bool,
    pub api_key_auth: bool,
    pub jwt_auth: bool,
    pub certificate_auth: bool,
    /// File holding the HS256 secret.
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key for RS256 or ES256.
    pub jwt_public_key_path: Option<PathBuf>,
    /// JWKS file.
    pub jwt_jwks_path: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway: Duration,
    pub certificate_username: CertificateUsername,
    pub auth_free_attempts_per_user: u32,
    pub auth_free_attempts_per_ip: u32,
    pub auth_delay: Duration,
    pub auth_max_delay: Duration,
    pub auth_failure_window: Duration,
    /// 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Requests per second per principal; 0 = no limit.
    pub rate_limit: u32,
    /// 0 = `rate_limit`.
    pub rate_limit_burst: u32,
    /// `None` = the server log.
    pub audit_log: Option<PathBuf>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            password_auth: true,
            api_key_auth: true,
            jwt_auth: false,
            certificate_auth: false,
            jwt_secret_file: None,
            jwt_public_key_path: None,
            jwt_jwks_path: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            certificate_username: CertificateUsername::Cn,
            auth_free_attempts_per_user: 5,
            auth_free_attempts_per_ip: 20,
            auth_delay: Duration::from_millis(500),
            auth_max_delay: Duration::from_secs(8),
            auth_failure_window: Duration::from_secs(15 * 60),
            max_connections_per_ip: 0,
            rate_limit: 0,
            rate_limit_burst: 0,
            audit_log: None,
        }
    }
}

/// `[security] certificate_username`: the name of a client certificate that is the
/// username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateUsername {
    /// The subject's common name.
    #[default]
    Cn,
    SanEmail,
    SanDns,
    SanUri,
}

impl fmt::Display for CertificateUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cn => "cn",
            Self::SanEmail => "san_email",
            Self::SanDns => "san_dns",
            Self::SanUri => "san_uri",
        })
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub sync: SyncMode,
    pub cache_size_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            sync: SyncMode::Always,
            cache_size_mb: 64,
        }
    }
}

/// `[storage] sync`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// A write is acknowledged only once it is on disk.
    #[default]
    Always,
    /// Unsafe: acknowledged writes can be lost on a crash. For benchmarks.
    Never,
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// Why the configuration could not be loaded. Each message names where the problem
/// is (file and line, environment variable, or flag) and what would be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {}: {source}; check the path given with --config, or leave it \
         out to use ./themis.conf if present and the built-in defaults otherwise",
        path.display()
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: invalid value '{value}' for {key} in [{section}]: expected {expected}")]
    InvalidValue {
        /// `file:line`, an environment variable's name, or a flag.
        location: String,
        section: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("{location}: {problem}; found '{line}'")]
    Syntax {
        location: String,
        line: String,
        problem: String,
    },
    /// Only from [`Config::apply_override`] called directly (a flag); the file and the
    /// environment turn unknown names into warnings.
    #[error("{location}: unknown setting '{key}' in [{section}]{hint}")]
    UnknownKey {
        location: String,
        section: String,
        key: String,
        /// Empty, or "; did you mean ..." text.
        hint: String,
    },
    /// Settings that are each valid but do not fit together.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

const MIB: u64 = 1024 * 1024;
const MIN_FRAME_BYTES: u64 = 1024;
const MAX_FRAME_BYTES: u64 = 1024 * MIB;

impl Config {
    /// Defaults, then `path` (or `./themis.conf` if `path` is `None` and that file
    /// exists), then the `THEMIS_*` variables of `env`; then [`Config::validate`].
    /// Returns the warnings to log. Flags come after: apply them with
    /// [`Config::apply_override`] and call [`Config::validate`] again.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::default();
        let mut warnings = Vec::new();
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                p.is_file().then_some(p)
            }
        };
        if let Some(p) = file {
            let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            warnings.extend(config.parse_file(&text, &p.display().to_string())?);
        }
        warnings.extend(config.apply_env(env)?);
        warnings.extend(config.validate()?);
        Ok((config, warnings))
    }

    /// Parses `text` over the defaults; `name` is the file name used in messages
    /// (`themis.conf:5: ...`). Also runs [`Config::validate`].
    pub fn from_str_named(text: &str, name: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::default();
        let mut warnings = config.parse_file(text, name)?;
        warnings.extend(config.validate()?);
        Ok((config, warnings))
    }

    /// Applies every `THEMIS_<SECTION>_<KEY>` of `env`, in name order. Variables of
    /// [`ENV_HANDLED_ELSEWHERE`] and names without the prefix are skipped; a `THEMIS_*`
    /// name that matches no setting is a warning.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !ENV_HANDLED_ELSEWHERE.contains(&name.as_str())
            })
            .collect();
        vars.sort();
        let mut warnings = Vec::new();
        for (name, value) in vars {
            let target = all_keys().find(|(section, key)| env_name(section, key) == name);
            match target {
                Some((section, key)) => self.apply_override(section, key, value.trim(), &name)?,
                None => {
                    let names = all_keys().map(|(s, k)| env_name(s, k));
                    let hint = match closest(&name, names) {
                        Some(n) => format!("; did you mean {n}?"),
                        None => String::new(),
                    };
                    warnings.push(format!(
                        "{name}: environment variable matches no setting (ignored){hint}"
                    ));
                }
            }
        }
        Ok(warnings)
    }

    /// Sets `[section] key` from its text form, as a file line would. `origin` names
    /// where the value came from for the error message: `themis.conf:5`,
    /// `THEMIS_WIRE_PROTOCOL_PORT`, `--port`. Section and key are case-insensitive.
    ///
    /// `handshake_timeout` is accepted in `[server]` too, as another spelling of
    /// `[wire_protocol] handshake_timeout` (one setting, one field). The value is used as given (a file's parser has already trimmed
    /// it and stripped quotes; the environment's values are trimmed).
    pub fn apply_override(
        &mut self,
        section: &str,
        key: &str,
        value: &str,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let section = section.trim().to_ascii_lowercase();
        let key = key.trim().to_ascii_lowercase();
        if lookup(&section, &key).is_none() {
            return Err(ConfigError::UnknownKey {
                hint: unknown_key_hint(&section, &key),
                location: origin.to_string(),
                section,
                key,
            });
        }
        self.assign(&section, &key, value)
            .map_err(|expected| ConfigError::InvalidValue {
                location: origin.to_string(),
                section,
                key,
                value: value.to_string(),
                expected,
            })
    }

    /// Checks the settings that depend on each other, and returns warnings about
    /// valid but risky ones. Run it again after applying flags.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let tls = &self.wire.tls;
        if tls.enabled {
            let missing: Vec<&str> = [
                ("tls_cert_path", &tls.cert_path),
                ("tls_key_path", &tls.key_path),
            ]
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(k, _)| *k)
            .collect();
            if !missing.is_empty() {
                return Err(ConfigError::Inconsistent(format!(
                    "[wire_protocol] enable_tls = true but {} not set: point it at the \
                     server's PEM file, or set enable_tls = false",
                    missing.join(" and ")
                )));
            }
        }
        if tls.mtls && !tls.enabled {
            return Err(ConfigError::Inconsistent(
                "[wire_protocol] enable_mtls = true needs enable_tls = true \
                 (mutual TLS is TLS plus client certificates)"
                    .to_string(),
            ));
        }
        if tls.mtls && tls.ca_cert_path.is_none() {
            return Err(ConfigError::Inconsistent(
                "[wire_protocol] enable_mtls = true but tls_ca_cert_path is not set: point it \
                 at the PEM file of the CA that signs client certificates"
                    .to_string(),
            ));
        }
        if tls.require_client_cert && !tls.mtls {
            return Err(ConfigError::Inconsistent(
                "[wire_protocol] tls_require_client_cert = true needs enable_mtls = true \
                 and enable_tls = true"
                    .to_string(),
            ));
        }
        if tls.required && !tls.enabled {
            return Err(ConfigError::Inconsistent(
                "[wire_protocol] require_tls = true needs enable_tls = true (and \
                 tls_cert_path, tls_key_path): the server cannot require what it does not serve"
                    .to_string(),
            ));
        }
        let txs = &self.transactions;
        if txs.idle_timeout > txs.max_idle_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "[transactions] idle_timeout ({}) is longer than max_idle_timeout ({}): \
                 raise max_idle_timeout or lower idle_timeout",
                duration_text(txs.idle_timeout),
                duration_text(txs.max_idle_timeout)
            )));
        }
        self.security.validate(tls.mtls)?;
        let mut warnings = Vec::new();
        if self.storage.sync == SyncMode::Never {
            warnings.push(SYNC_NEVER_WARNING.to_string());
        }
        Ok(warnings)
    }

    /// The effective settings in `themis.conf` syntax, every key present; parsing the
    /// result gives back `self`. For `--print-config` and bug reports.
    pub fn to_conf_string(&self) -> String {
        let mut out = String::new();
        for (i, (section, keys)) in SECTIONS.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{section}]\n"));
            for key in keys.iter() {
                // One setting with two spellings: print it once, where the contract
                // lists it.
                if (*section, *key) == ("server", "handshake_timeout") {
                    continue;
                }
                let value = self.value_text(section, key);
                if value.is_empty() {
                    out.push_str(&format!("{key} =\n"));
                } else {
                    out.push_str(&format!("{key} = {value}\n"));
                }
            }
        }
        out
    }

    fn parse_file(&mut self, text: &str, name: &str) -> Result<Vec<String>, ConfigError> {
        enum Current {
            BeforeFirstHeader,
            Known(&'static str),
            Unknown,
        }
        let mut current = Current::BeforeFirstHeader;
        let mut warnings = Vec::new();
        // (section, key, line) of every setting seen, to warn about repeats.
        let mut seen: Vec<(&'static str, &'static str, usize)> = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let location = format!("{name}:{line_no}");
            let line = raw.trim();
            let syntax = |problem: &str| ConfigError::Syntax {
                location: location.clone(),
                line: line.to_string(),
                problem: problem.to_string(),
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some((inner, after)) = rest.split_once(']') else {
                    return Err(syntax("section header without closing ']'"));
                };
                if !is_comment_or_empty(after) {
                    return Err(syntax("unexpected text after section header"));
                }
                let section = inner.trim().to_ascii_lowercase();
                if !is_name(&section) {
                    return Err(syntax(
                        "section names are letters, digits and '_', e.g. [wire_protocol]",
                    ));
                }
                match SECTIONS.iter().find(|(s, _)| *s == section) {
                    Some((s, _)) => current = Current::Known(s),
                    None => {
                        let hint = match closest(&section, SECTIONS.iter().map(|(s, _)| *s)) {
                            Some(s) => format!("; did you mean [{s}]?"),
                            None => String::new(),
                        };
                        warnings.push(format!(
                            "{location}: unknown section [{}] (its keys are ignored){hint}",
                            inner.trim()
                        ));
                        current = Current::Unknown;
                    }
                }
                continue;
            }
            let Some((raw_key, raw_value)) = line.split_once('=') else {
                return Err(syntax(
                    "expected `key = value`, a `[section]` header or a `# comment`",
                ));
            };
            let key_text = raw_key.trim();
            let key = key_text.to_ascii_lowercase();
            if !is_name(&key) {
                return Err(syntax(
                    "expected `key = value` where the key is letters, digits and '_'",
                ));
            }
            let value = unquote(raw_value).map_err(|problem| syntax(&problem))?;
            let section = match current {
                Current::Known(s) => s,
                Current::Unknown => continue,
                Current::BeforeFirstHeader => {
                    let homes: Vec<String> = SECTIONS
                        .iter()
                        .filter(|(_, keys)| keys.contains(&key.as_str()))
                        .map(|(s, _)| format!("[{s}]"))
                        .collect();
                    let problem = if homes.is_empty() {
                        "setting before any [section] header".to_string()
                    } else {
                        format!(
                            "setting before any [section] header: put it under {}",
                            homes.join(" or ")
                        )
                    };
                    return Err(syntax(&problem));
                }
            };
            let Some(canonical) = lookup(section, &key) else {
                warnings.push(format!(
                    "{location}: unknown key '{key_text}' in [{section}] (ignored){}",
                    unknown_key_hint(section, &key)
                ));
                continue;
            };
            // handshake_timeout in either section is one setting.
            let identity = if canonical == "handshake_timeout" {
                "*"
            } else {
                section
            };
            if let Some((_, _, first_line)) = seen
                .iter()
                .find(|(s, k, _)| *s == identity && *k == canonical)
            {
                warnings.push(format!(
                    "{location}: {canonical} is set again (first at line {first_line}); \
                     the value on line {line_no} is used"
                ));
            } else {
                seen.push((identity, canonical, line_no));
            }
            self.apply_override(section, canonical, &value, &location)?;
        }
        Ok(warnings)
    }

    /// Parses `value` into the field of `[section] key`; the error is what would
    /// have been accepted. `section` and `key` are lower-case and known.
    fn assign(&mut self, section: &str, key: &str, v: &str) -> Result<(), String> {
        let s = &mut self.server;
        let w = &mut self.wire;
        match (section, key) {
            ("server", "data_dir") => s.data_dir = parse_path(v)?,
            ("server", "log_level") => s.log_level = parse_log_level(v)?,
            ("server", "log_format") => {
                s.log_format = match v.to_ascii_lowercase().as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err("text or json".to_string()),
                }
            }
            ("server" | "wire_protocol", "handshake_timeout") => {
                w.handshake_timeout = parse_duration(v, false)?;
            }
            ("server", "shutdown_grace") => s.shutdown_grace = parse_duration(v, true)?,
            ("server", "auto_create_collections") => s.auto_create_collections = parse_bool(v)?,
            ("server", "bcrypt_cost") => s.bcrypt_cost = parse_int(v, 4, 31)? as u32,
            ("server", "session_ttl") => s.session_ttl = parse_duration(v, false)?,
            ("server", "node_id") => s.node_id = (!v.is_empty()).then(|| v.to_string()),
            ("server", "request_key_window") => s.request_key_window = parse_duration(v, false)?,
            ("wire_protocol", "enabled") => w.enabled = parse_bool(v)?,
            ("wire_protocol", "bind_address") => w.bind_address = parse_host(v)?,
            ("wire_protocol", "port") => {
                w.port = parse_int(v, 0, u16::MAX as u64)
                    .map_err(|e| format!("{e} (0 lets the operating system pick a free port)"))?
                    as u16
            }
            ("wire_protocol", "max_connections") => {
                w.max_connections = parse_int(v, 1, 1_000_000)? as usize
            }
            ("wire_protocol", "idle_timeout") => w.idle_timeout = parse_duration(v, false)?,
            ("wire_protocol", "max_frame_bytes") => {
                w.max_frame_bytes = parse_size(v, MIN_FRAME_BYTES, MAX_FRAME_BYTES)? as u32
            }
            ("wire_protocol", "max_in_flight") => {
                w.max_in_flight = parse_int(v, 1, 1_000_000)? as usize
            }
            ("wire_protocol", "enable_tls") => w.tls.enabled = parse_bool(v)?,
            ("wire_protocol", "tls_cert_path") => w.tls.cert_path = parse_opt_path(v),
            ("wire_protocol", "tls_key_path") => w.tls.key_path = parse_opt_path(v),
            ("wire_protocol", "tls_min_version") => {
                w.tls.min_version = match v.to_ascii_lowercase().as_str() {
                    "tlsv1.2" | "tls1.2" | "1.2" => TlsVersion::V1_2,
                    "tlsv1.3" | "tls1.3" | "1.3" => TlsVersion::V1_3,
                    _ => return Err("TLSv1.2 or TLSv1.3".to_string()),
                }
            }
            ("wire_protocol", "enable_mtls") => w.tls.mtls = parse_bool(v)?,
            ("wire_protocol", "tls_ca_cert_path") => w.tls.ca_cert_path = parse_opt_path(v),
            ("wire_protocol", "require_tls") => w.tls.required = parse_bool(v)?,
            ("wire_protocol", "tls_reload_interval") => {
                w.tls.reload_interval = parse_duration(v, true)?
            }
            ("wire_protocol", "tls_require_client_cert") => {
                w.tls.require_client_cert = parse_bool(v)?
            }
            ("storage", "sync") => {
                self.storage.sync = match v.to_ascii_lowercase().as_str() {
                    "always" => SyncMode::Always,
                    "never" => SyncMode::Never,
                    _ => return Err("always, or never (unsafe: for benchmarks only)".to_string()),
                }
            }
            ("storage", "cache_size_mb") => {
                self.storage.cache_size_mb = parse_int(v, 1, 1024 * 1024)?
            }
            ("query", "memory_limit") => {
                self.query.memory_limit = parse_size(v, MIB, 1024 * 1024 * MIB)?
            }
            ("query", "max_runtime") => self.query.max_runtime = parse_duration(v, false)?,
            ("transactions", "idle_timeout") => {
                self.transactions.idle_timeout = parse_duration(v, false)?
            }
            ("transactions", "max_idle_timeout") => {
                self.transactions.max_idle_timeout = parse_duration(v, false)?
            }
            ("transactions", "max_per_connection") => {
                self.transactions.max_per_connection = parse_int(v, 1, 1_000_000)? as usize
            }
            ("subscriptions", "buffer_events") => {
                self.subscriptions.buffer_events = parse_int(v, 1, 1_000_000)? as usize
            }
            ("subscriptions", "max_per_connection") => {
                self.subscriptions.max_per_connection = parse_int(v, 1, 100_000)? as usize
            }
            ("subscriptions", "change_log_retention") => {
                self.subscriptions.change_log_retention = parse_duration(v, false)?
            }
            ("subscriptions", "change_log_max_bytes") => {
                self.subscriptions.change_log_max_bytes = parse_size(v, 1024, 1024 * 1024 * MIB)?
            }
            ("subscriptions", "prune_interval") => {
                self.subscriptions.prune_interval = parse_duration(v, false)?
            }
            ("security", _) => self.security.assign(key, v)?,
            // Unreachable while SECTIONS and this match agree; a test checks they do.
            _ => return Err("a setting this build knows".to_string()),
        }
        Ok(())
    }

    /// The text form of one setting, which [`Config::assign`] parses back.
    fn value_text(&self, section: &str, key: &str) -> String {
        let s = &self.server;
        let w = &self.wire;
        let path = |p: &Option<PathBuf>| p.as_deref().map(path_text).unwrap_or_default();
        match (section, key) {
            ("server", "data_dir") => path_text(&s.data_dir),
            ("server", "log_level") => quote_if_needed(&s.log_level),
            ("server", "log_format") => s.log_format.to_string(),
            ("server", "handshake_timeout") => duration_text(w.handshake_timeout),
            ("server", "shutdown_grace") => duration_text(s.shutdown_grace),
            ("server", "auto_create_collections") => s.auto_create_collections.to_string(),
            ("server", "bcrypt_cost") => s.bcrypt_cost.to_string(),
            ("server", "session_ttl") => duration_text(s.session_ttl),
            ("server", "request_key_window") => duration_text(s.request_key_window),
            ("server", "node_id") => s
                .node_id
                .as_deref()
                .map(quote_if_needed)
                .unwrap_or_default(),
            ("wire_protocol", "enabled") => w.enabled.to_string(),
            ("wire_protocol", "bind_address") => w.bind_address.clone(),
            ("wire_protocol", "port") => w.port.to_string(),
            ("wire_protocol", "max_connections") => w.max_connections.to_string(),
            ("wire_protocol", "idle_timeout") => duration_text(w.idle_timeout),
            ("wire_protocol", "handshake_timeout") => duration_text(w.handshake_timeout),
            ("wire_protocol", "max_frame_bytes") => size_text(w.max_frame_bytes as u64),
            ("wire_protocol", "max_in_flight") => w.max_in_flight.to_string(),
            ("wire_protocol", "enable_tls") => w.tls.enabled.to_string(),
            ("wire_protocol", "tls_cert_path") => path(&w.tls.cert_path),
            ("wire_protocol", "tls_key_path") => path(&w.tls.key_path),
            ("wire_protocol", "tls_min_version") => w.tls.min_version.to_string(),
            ("wire_protocol", "enable_mtls") => w.tls.mtls.to_string(),
            ("wire_protocol", "tls_ca_cert_path") => path(&w.tls.ca_cert_path),
            ("wire_protocol", "tls_require_client_cert") => w.tls.require_client_cert.to_string(),
            ("wire_protocol", "require_tls") => w.tls.required.to_string(),
            ("wire_protocol", "tls_reload_interval") => duration_text(w.tls.reload_interval),
            ("storage", "sync") => self.storage.sync.to_string(),
            ("storage", "cache_size_mb") => self.storage.cache_size_mb.to_string(),
            ("query", "memory_limit") => size_text(self.query.memory_limit),
            ("query", "max_runtime") => duration_text(self.query.max_runtime),
            ("transactions", "idle_timeout") => duration_text(self.transactions.idle_timeout),
            ("transactions", "max_idle_timeout") => {
                duration_text(self.transactions.max_idle_timeout)
            }
            ("transactions", "max_per_connection") => {
                self.transactions.max_per_connection.to_string()
            }
            ("subscriptions", "buffer_events") => self.subscriptions.buffer_events.to_string(),
            ("subscriptions", "max_per_connection") => {
                self.subscriptions.max_per_connection.to_string()
            }
            ("subscriptions", "change_log_retention") => {
                duration_text(self.subscriptions.change_log_retention)
            }
            ("subscriptions", "change_log_max_bytes") => {
                size_text(self.subscriptions.change_log_max_bytes)
            }
            ("subscriptions", "prune_interval") => duration_text(self.subscriptions.prune_interval),
            ("security", _) => self.security.value_text(key),
            _ => String::new(),
        }
    }
}

impl SecurityConfig {
    fn assign(&mut self, key: &str, v: &str) -> Result<(), String> {
        let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "enable_password_auth" => self.password_auth = parse_bool(v)?,
            "enable_api_key_auth" => self.api_key_auth = parse_bool(v)?,
            "enable_jwt_auth" => self.jwt_auth = parse_bool(v)?,
            "enable_certificate_auth" => self.certificate_auth = parse_bool(v)?,
            "jwt_secret_file" => self.jwt_secret_file = parse_opt_path(v),
            "jwt_public_key_path" => self.jwt_public_key_path = parse_opt_path(v),
            "jwt_jwks_path" => self.jwt_jwks_path = parse_opt_path(v),
            "jwt_issuer" => self.jwt_issuer = text(v),
            "jwt_audience" => self.jwt_audience = text(v),
            "jwt_leeway" => self.jwt_leeway = parse_duration(v, true)?,
            "certificate_username" => {
                self.certificate_username = match v.to_ascii_lowercase().as_str() {
                    "cn" => CertificateUsername::Cn,
                    "san_email" => CertificateUsername::SanEmail,
                    "san_dns" => CertificateUsername::SanDns,
                    "san_uri" => CertificateUsername::SanUri,
                    _ => return Err("cn, san_email, san_dns or san_uri".to_string()),
                }
            }
            "auth_free_attempts_per_user" => {
                self.auth_free_attempts_per_user = parse_int(v, 0, 1_000_000)? as u32
            }
            "auth_free_attempts_per_ip" => {
                self.auth_free_attempts_per_ip = parse_int(v, 0, 1_000_000)? as u32
            }
            "auth_delay" => self.auth_delay = parse_duration(v, true)?,
            "auth_max_delay" => self.auth_max_delay = parse_duration(v, true)?,
            "auth_failure_window" => self.auth_failure_window = parse_duration(v, false)?,
            "max_connections_per_ip" => {
                self.max_connections_per_ip = parse_int(v, 0, 1_000_000)? as usize
            }
            "rate_limit" => self.rate_limit = parse_int(v, 0, 100_000_000)? as u32,
            "rate_limit_burst" => self.rate_limit_burst = parse_int(v, 0, 100_000_000)? as u32,
            "audit_log" => self.audit_log = parse_opt_path(v),
            _ => return Err("a setting this build knows".to_string()),
        }
        Ok(())
    }

    fn value_text(&self, key: &str) -> String {
        let path = |p: &Option<PathBuf>| p.as_deref().map(path_text).unwrap_or_default();
        let text = |t: &Option<String>| t.as_deref().map(quote_if_needed).unwrap_or_default();
        match key {
            "enable_password_auth" => self.password_auth.to_string(),
            "enable_api_key_auth" => self.api_key_auth.to_string(),
            "enable_jwt_auth" => self.jwt_auth.to_string(),
            "enable_certificate_auth" => self.certificate_auth.to_string(),
            "jwt_secret_file" => path(&self.jwt_secret_file),
            "jwt_public_key_path" => path(&self.jwt_public_key_path),
            "jwt_jwks_path" => path(&self.jwt_jwks_path),
            "jwt_issuer" => text(&self.jwt_issuer),
            "jwt_audience" => text(&self.jwt_audience),
            "jwt_leeway" => duration_text(self.jwt_leeway),
            "certificate_username" => self.certificate_username.to_string(),
            "auth_free_attempts_per_user" => self.auth_free_attempts_per_user.to_string(),
            "auth_free_attempts_per_ip" => self.auth_free_attempts_per_ip.to_string(),
            "auth_delay" => duration_text(self.auth_delay),
            "auth_max_delay" => duration_text(self.auth_max_delay),
            "auth_failure_window" => duration_text(self.auth_failure_window),
            "max_connections_per_ip" => self.max_connections_per_ip.to_string(),
            "rate_limit" => self.rate_limit.to_string(),
            "rate_limit_burst" => self.rate_limit_burst.to_string(),
            "audit_log" => path(&self.audit_log),
            _ => String::new(),
        }
    }

    fn validate(&self, mtls: bool) -> Result<(), ConfigError> {
        let inconsistent = |m: &str| Err(ConfigError::Inconsistent(m.to_string()));
        if !(self.password_auth || self.api_key_auth || self.jwt_auth || self.certificate_auth) {
            return inconsistent(
                "[security] every authentication method is disabled, so nobody could log in: \
                 enable at least one of enable_password_auth, enable_api_key_auth, \
                 enable_jwt_auth, enable_certificate_auth",
            );
        }
        let jwt_keys = [
            &self.jwt_secret_file,
            &self.jwt_public_key_path,
            &self.jwt_jwks_path,
        ]
        .iter()
        .filter(|k| k.is_some())
        .count();
        if self.jwt_auth && jwt_keys != 1 {
            return inconsistent(
                "[security] enable_jwt_auth = true needs exactly one verification key: \
                 jwt_secret_file (HS256), jwt_public_key_path (RS256 or ES256) or \
                 jwt_jwks_path",
            );
        }
        if self.certificate_auth && !mtls {
            return inconsistent(
                "[security] enable_certificate_auth = true needs client certificates: set \
                 enable_tls, enable_mtls and tls_ca_cert_path in [wire_protocol]",
            );
        }
        if self.auth_delay > self.auth_max_delay {
            return inconsistent(
                "[security] auth_delay is longer than auth_max_delay: lower auth_delay or \
                 raise auth_max_delay",
            );
        }
        Ok(())
    }
}

fn all_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    SECTIONS
        .iter()
        .flat_map(|(s, keys)| keys.iter().map(move |k| (*s, *k)))
}

/// The canonical `&'static` key of `[section] key`, if this build knows it.
fn lookup(section: &str, key: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .and_then(|(_, keys)| keys.iter().find(|k| **k == key).copied())
}

fn env_name(section: &str, key: &str) -> String {
    format!("{ENV_PREFIX}{section}_{key}").to_ascii_uppercase()
}

/// "; did you mean ...?" for an unknown key: the key in another section, else the
/// closest key of this one; empty when nothing is close.
fn unknown_key_hint(section: &str, key: &str) -> String {
    let elsewhere: Vec<String> = SECTIONS
        .iter()
        .filter(|(s, keys)| *s != section && keys.contains(&key))
        .map(|(s, _)| format!("[{s}]"))
        .collect();
    if !elsewhere.is_empty() {
        return format!("; it belongs in {}", elsewhere.join(" or "));
    }
    let keys = SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .map(|(_, keys)| *keys)
        .unwrap_or(&[]);
    match closest(key, keys.iter().copied()) {
        Some(k) => format!("; did you mean '{k}'?"),
        None => String::new(),
    }
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a
/// plausible typo (at most a third of the word's length, at least 1).
fn closest<S: AsRef<str>>(word: &str, candidates: impl Iterator<Item = S>) -> Option<S> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c.as_ref()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two
/// neighbours (`prot` -> `port` is 1), ASCII case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_comment_or_empty(s: &str) -> bool {
    let s = s.trim();
    s.is_empty() || s.starts_with('#')
}

/// The value part of `key = value`: quotes stripped, or an inline comment (a `#` at
/// the start or after whitespace) cut off.
fn unquote(raw: &str) -> Result<String, String> {
    let v = raw.trim();
    if let Some(rest) = v.strip_prefix('"') {
        let Some(end) = rest.find('"') else {
            return Err("value opens a double quote but never closes it".to_string());
        };
        if !is_comment_or_empty(&rest[end + 1..]) {
            return Err("unexpected text after the closing double quote".to_string());
        }
        return Ok(rest[..end].to_string());
    }
    let bytes = v.as_bytes();
    let cut = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
        .unwrap_or(bytes.len());
    Ok(v[..cut].trim_end().to_string())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("a boolean: true/false, yes/no, on/off or 1/0".to_string()),
    }
}

fn parse_int(v: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || format!("an integer {min}-{max}");
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// Splits `"16MiB"` / `"30 s"` into its digits and its (trimmed) unit.
fn split_number(v: &str) -> Option<(u64, &str)> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n = v[..digits].parse::<u64>().ok()?;
    Some((n, v[digits..].trim()))
}

/// Whole seconds, or a whole number with unit ms, s, m, h.
fn parse_duration(v: &str, allow_zero: bool) -> Result<Duration, String> {
    let expected = || {
        format!(
            "a duration{}: whole seconds (300) or a whole number with a unit: 250ms, 30s, 5m, 1h",
            if allow_zero { "" } else { " above 0" }
        )
    };
    let (n, unit) = split_number(v).ok_or_else(expected)?;
    let millis = match unit.to_ascii_lowercase().as_str() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(expected)?;
    if millis == 0 && !allow_zero {
        return Err(expected());
    }
    Ok(Duration::from_millis(millis))
}

fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Bytes, or a whole number with a binary unit: KiB/KB/K = 1024, MiB/MB/M, GiB/GB/G.
fn parse_size(v: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || {
        format!(
            "a size from {} to {}: bytes (16777216) or with a unit: 512KiB, 16MiB, 1GiB",
            size_text(min),
            size_text(max)
        )
    };
    let (n, unit) = split_number(v).ok_or_else(expected)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return Err(expected()),
    };
    match n.checked_mul(factor) {
        Some(bytes) if (min..=max).contains(&bytes) => Ok(bytes),
        _ => Err(expected()),
    }
}

fn size_text(bytes: u64) -> String {
    for (factor, unit) in [(1024 * MIB, "GiB"), (MIB, "MiB"), (1024, "KiB")] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

fn parse_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("a directory path, e.g. ./data or /var/lib/themisdb".to_string());
    }
    Ok(PathBuf::from(v))
}

fn parse_opt_path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn path_text(p: &Path) -> String {
    quote_if_needed(&p.to_string_lossy())
}

/// Wraps `s` in double quotes when unquoted it would read back differently.
fn quote_if_needed(s: &str) -> String {
    let unquoted_ok = s.trim() == s
        && !s.starts_with('"')
        && !s.starts_with('#')
        && !s.contains(" #")
        && !s.contains("\t#");
    if unquoted_ok {
        s.to_string()
    } else {
        format!("\"{s}\"")
    }
}

fn parse_log_level(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err(
            "a log filter such as error, warn, info, debug, trace or info,themis_server=debug"
                .to_string(),
        )
    } else {
        Ok(v.to_string())
    }
}

/// An IP address (IPv6 with or without brackets) or a host name; never with a port.
fn parse_host(v: &str) -> Result<String, String> {
    let expected = || {
        "an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name, without a port \
         (the port is its own setting)"
            .to_string()
    };
    let inner = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    if inner.parse::<IpAddr>().is_ok() {
        return Ok(inner.to_string());
    }
    let labels: Vec<&str> = inner.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    // A name whose last label is all digits is a mistyped IPv4 address (999.1.1.1).
    let last_numeric = labels
        .last()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if inner.len() <= 253 && labels.iter().all(label_ok) && !last_numeric {
        Ok(inner.to_string())
    } else {
        Err(expected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 000, first example, as written (the extraction glued prose onto the last
    /// value; the value itself is `300`).
    const SEED_BASIC: &str = "[wire_protocol]
enabled = true
bind_address = 0.0.0.0
port = 8766
max_connections = 1000
idle_timeout = 300
";

    /// Seed 000, second example, with its comment line and inline comment.
    const SEED_TLS: &str = "[wire_protocol]
enabled = true
bind_address = 0.0.0.0
port = 8766
# TLS Configuration
enable_tls = true
tls_cert_path = /path/to/server-cert.pem
tls_key_path = /path/to/server-key.pem
tls_min_version = TLSv1.2 # or TLSv1.3
";

    /// Seed 000, third example.
    const SEED_MTLS: &str = "[wire_protocol]
enabled = true
bind_address = 0.0.0.0
port = 8766
# mTLS Configuration
enable_tls = true
enable_mtls = true
tls_cert_path = /path/to/server-cert.pem
tls_key_path = /path/to/server-key.pem
tls_ca_cert_path = /path/to/ca-cert.pem
tls_require_client_cert = true
";

    fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_str_named(text, "themis.conf")
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn seed_basic_example() {
        let (c, warnings) = parse(SEED_BASIC).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(c.wire.enabled);
        assert_eq!(c.wire.bind_address, "0.0.0.0");
        assert_eq!(c.wire.port, 8766);
        assert_eq!(c.wire.max_connections, 1000);
        assert_eq!(c.wire.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.wire.listen_address(), "0.0.0.0:8766");
        assert!(!c.wire.tls.enabled);
        // Everything not named keeps its default.
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.storage, StorageConfig::default());
    }

    #[test]
    fn seed_tls_example() {
        let (c, warnings) = parse(SEED_TLS).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let tls = &c.wire.tls;
        assert!(tls.enabled);
        assert_eq!(
            tls.cert_path.as_deref(),
            Some(Path::new("/path/to/server-cert.pem"))
        );
        assert_eq!(
            tls.key_path.as_deref(),
            Some(Path::new("/path/to/server-key.pem"))
        );
        // The inline comment is not part of the value.
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        assert!(!tls.mtls);
        assert_eq!(tls.ca_cert_path, None);
        assert!(!tls.require_client_cert);
        assert_eq!(c.wire.bind_address, "0.0.0.0");
        assert_eq!(c.wire.port, 8766);
    }

    #[test]
    fn seed_mtls_example() {
        let (c, warnings) = parse(SEED_MTLS).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let tls = &c.wire.tls;
        assert!(tls.enabled && tls.mtls && tls.require_client_cert);
        assert_eq!(
            tls.cert_path.as_deref(),
            Some(Path::new("/path/to/server-cert.pem"))
        );
        assert_eq!(
            tls.key_path.as_deref(),
            Some(Path::new("/path/to/server-key.pem"))
        );
        assert_eq!(
            tls.ca_cert_path.as_deref(),
            Some(Path::new("/path/to/ca-cert.pem"))
        );
        assert_eq!(tls.min_version, TlsVersion::V1_2);
    }

    #[test]
    fn seed_value_with_glued_prose_is_a_value_error() {
        // What a careless copy of the seed page would contain.
        let e = err_text(
            "[wire_protocol]\nidle_timeout = 300To enable TLS for secure communication:\n",
        );
        assert!(
            e.starts_with("themis.conf:2: invalid value '300To enable TLS for secure communication:' for idle_timeout in [wire_protocol]: expected a duration"),
            "{e}"
        );
    }

    #[test]
    fn example_conf_is_the_defaults_without_warnings() {
        let (c, warnings) = parse(EXAMPLE_CONF).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c, Config::default());
        for (section, key) in all_keys() {
            let line = format!("\n{key} = ");
            let bare = format!("\n{key} =\n");
            assert!(
                EXAMPLE_CONF.contains(&line) || EXAMPLE_CONF.contains(&bare),
                "EXAMPLE_CONF lacks [{section}] {key}"
            );
        }
    }

    #[test]
    fn every_key_round_trips_through_its_text_form() {
        // Keeps SECTIONS, assign and value_text in step.
        let mut c = Config::default();
        c.server.node_id = Some("node #1".to_string());
        c.server.data_dir = PathBuf::from(" odd dir ");
        c.server.log_level = "info,themis_server=debug".to_string();
        c.server.log_format = LogFormat::Json;
        c.wire.handshake_timeout = Duration::from_millis(2500);
        c.server.shutdown_grace = Duration::ZERO;
        c.wire.bind_address = "::1".to_string();
        c.wire.port = 0;
        c.wire.max_frame_bytes = 1536;
        c.wire.tls = TlsConfig {
            enabled: true,
            cert_path: Some(PathBuf::from("/c.pem")),
            key_path: Some(PathBuf::from("/k.pem")),
            min_version: TlsVersion::V1_3,
            mtls: true,
            ca_cert_path: Some(PathBuf::from("/ca.pem")),
            require_client_cert: true,
            required: true,
            reload_interval: Duration::ZERO,
        };
        c.storage.sync = SyncMode::Never;
        c.storage.cache_size_mb = 7;
        for config in [Config::default(), c] {
            for (section, key) in all_keys() {
                let mut fresh = Config::default();
                let text = config.value_text(section, key);
                let value = unquote(&text).unwrap();
                fresh
                    .apply_override(section, key, &value, "test")
                    .unwrap_or_else(|e| panic!("[{section}] {key} = {text}: {e}"));
                assert_eq!(fresh.value_text(section, key), text, "[{section}] {key}");
            }
            let (back, _) = parse(&config.to_conf_string()).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn unknown_key_warns_with_line_and_suggestion() {
        let text = "[wire_protocol]\nport = 9000\n# comment\n\nenabled = true\nbind_address = 0.0.0.0\nmax_conection = 5\n";
        let (c, warnings) = parse(text).unwrap();
        assert_eq!(
            warnings,
            vec!["themis.conf:7: unknown key 'max_conection' in [wire_protocol] (ignored); did you mean 'max_connections'?"]
        );
        assert_eq!(c.wire.max_connections, 1000);
        assert_eq!(c.wire.port, 9000);

        let (_, warnings) = parse("[server]\nport = 1\nzzzzzz = 2\n").unwrap();
        assert_eq!(
            warnings,
            vec![
                "themis.conf:2: unknown key 'port' in [server] (ignored); it belongs in [wire_protocol]",
                "themis.conf:3: unknown key 'zzzzzz' in [server] (ignored)",
            ]
        );
    }

    #[test]
    fn unknown_section_warns_once_and_skips_its_keys() {
        let (c, warnings) =
            parse("[wire_protocl]\nport = 1\nwhatever = 2\n[storage]\nsync = always\n").unwrap();
        assert_eq!(
            warnings,
            vec!["themis.conf:1: unknown section [wire_protocl] (its keys are ignored); did you mean [wire_protocol]?"]
        );
        assert_eq!(c.wire.port, 8766);
    }

    #[test]
    fn repeated_key_warns_and_last_wins() {
        let (c, warnings) =
            parse("[server]\nhandshake_timeout = 5\n[wire_protocol]\nport = 1\nport = 2\nhandshake_timeout = 7\n")
                .unwrap();
        assert_eq!(c.wire.port, 2);
        assert_eq!(c.wire.handshake_timeout, Duration::from_secs(7));
        assert_eq!(
            warnings,
            vec![
                "themis.conf:5: port is set again (first at line 4); the value on line 5 is used",
                "themis.conf:6: handshake_timeout is set again (first at line 2); the value on line 6 is used",
            ]
        );
    }

    #[test]
    fn bad_values_are_errors_naming_file_line_key_value_and_accepted() {
        let text = "[wire_protocol]\nenabled = true\n\n# the port\nport = abc\n";
        assert_eq!(
            err_text(text),
            "themis.conf:5: invalid value 'abc' for port in [wire_protocol]: expected an integer \
             0-65535 (0 lets the operating system pick a free port)"
        );
        let cases = [
            ("[wire_protocol]\nport = 65536\n", "for port"),
            ("[wire_protocol]\nport = -1\n", "for port"),
            ("[wire_protocol]\nenabled = maybe\n", "expected a boolean"),
            (
                "[wire_protocol]\ntls_min_version = TLSv1.1\n",
                "expected TLSv1.2 or TLSv1.3",
            ),
            (
                "[wire_protocol]\nmax_connections = 0\n",
                "expected an integer 1-1000000",
            ),
            (
                "[wire_protocol]\nmax_frame_bytes = 16XB\n",
                "expected a size from 1KiB to 1GiB",
            ),
            (
                "[wire_protocol]\nmax_frame_bytes = 2GiB\n",
                "expected a size",
            ),
            (
                "[wire_protocol]\nidle_timeout = 0\n",
                "expected a duration above 0",
            ),
            (
                "[wire_protocol]\nidle_timeout = 1.5h\n",
                "expected a duration",
            ),
            (
                "[wire_protocol]\nbind_address = 0.0.0.0:8766\n",
                "without a port",
            ),
            (
                "[wire_protocol]\nbind_address = 999.1.1.1\n",
                "an IP address",
            ),
            ("[server]\nbcrypt_cost = 3\n", "expected an integer 4-31"),
            ("[server]\nbcrypt_cost = 32\n", "expected an integer 4-31"),
            ("[server]\nlog_format = xml\n", "expected text or json"),
            ("[server]\ndata_dir =\n", "expected a directory path"),
            ("[server]\nlog_level = \"\"\n", "expected a log filter"),
            ("[storage]\nsync = sometimes\n", "expected always, or never"),
            ("[storage]\ncache_size_mb = 0\n", "expected an integer"),
        ];
        for (text, needle) in cases {
            let e = err_text(text);
            assert!(e.starts_with("themis.conf:2: invalid value"), "{text}: {e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let e = err_text("[wire_protocol]\nport 8766\n");
        assert_eq!(
            e,
            "themis.conf:2: expected `key = value`, a `[section]` header or a `# comment`; \
             found 'port 8766'"
        );
        let cases = [
            (
                "[wire_protocol\n",
                "themis.conf:1: section header without closing ']'",
            ),
            ("[wire protocol]\n", "themis.conf:1: section names are"),
            (
                "[server] junk\n",
                "themis.conf:1: unexpected text after section header",
            ),
            (
                "[server]\n= 5\n",
                "themis.conf:2: expected `key = value` where the key",
            ),
            (
                "[server]\nmax connections = 5\n",
                "themis.conf:2: expected `key = value`",
            ),
            (
                "[server]\nnode_id = \"abc\n",
                "themis.conf:2: value opens a double quote",
            ),
            (
                "[server]\nnode_id = \"a\" b\n",
                "themis.conf:2: unexpected text after the closing",
            ),
            (
                "# top\nport = 8766\n",
                "themis.conf:2: setting before any [section] header: put it under [wire_protocol]",
            ),
        ];
        for (text, prefix) in cases {
            let e = err_text(text);
            assert!(e.starts_with(prefix), "{text:?}: {e}");
        }
    }

    #[test]
    fn comments_quotes_and_whitespace() {
        let text = "\u{feff}# leading comment\r\n\r\n  [ Server ]  # trailing\r\n\
                    \tNODE_ID = \"a # b\"  # comment after quotes\r\n\
                    data_dir = /srv/themis#1   # a '#' inside a word stays\r\n\
                    log_level=debug\r\n";
        let (c, warnings) = parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.server.node_id.as_deref(), Some("a # b"));
        assert_eq!(c.server.data_dir, PathBuf::from("/srv/themis#1"));
        assert_eq!(c.server.log_level, "debug");

        let (c, _) = parse("[server]\nnode_id = # nothing\n").unwrap();
        assert_eq!(c.server.node_id, None);
    }

    #[test]
    fn durations_sizes_and_booleans() {
        let d = |v: &str| parse_duration(v, false);
        assert_eq!(d("300"), Ok(Duration::from_secs(300)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("30 S"), Ok(Duration::from_secs(30)));
        for bad in [
            "",
            "s",
            "1d",
            "-5",
            "1.5s",
            "0",
            "0ms",
            "99999999999999999999h",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("0", true), Ok(Duration::ZERO));

        let s = |v: &str| parse_size(v, MIN_FRAME_BYTES, MAX_FRAME_BYTES);
        assert_eq!(s("16777216"), Ok(16 * MIB));
        assert_eq!(s("16MiB"), Ok(16 * MIB));
        assert_eq!(s("16 mib"), Ok(16 * MIB));
        assert_eq!(s("512KiB"), Ok(512 * 1024));
        assert_eq!(s("1G"), Ok(1024 * MIB));
        assert_eq!(s("2048b"), Ok(2048));
        for bad in ["", "MiB", "1023", "16TiB", "2GiB", "16 MiBs", "1e6"] {
            assert!(s(bad).is_err(), "{bad}");
        }
        let (c, _) = parse("[wire_protocol]\nmax_frame_bytes = 512KiB\n").unwrap();
        assert_eq!(c.wire.max_frame_bytes, 512 * 1024);

        for t in ["true", "TRUE", "yes", "On", "1"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "No", "OFF", "0"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("y").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn bind_addresses() {
        for ok in [
            "0.0.0.0",
            "127.0.0.1",
            "::",
            "::1",
            "localhost",
            "db-1.example.com",
        ] {
            assert_eq!(parse_host(ok).as_deref(), Ok(ok));
        }
        assert_eq!(parse_host("[::1]").as_deref(), Ok("::1"));
        for bad in ["", "0.0.0.0:8766", "999.1.1.1", "-x", "a b", "a..b"] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.apply_override("wire_protocol", "bind_address", "::1", "--bind")
            .unwrap();
        assert_eq!(c.wire.listen_address(), "[::1]:8766");
    }

    #[test]
    fn precedence_defaults_file_env_cli() {
        let dir = std::env::temp_dir().join(format!("themis-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("themis.conf");
        std::fs::write(
            &path,
            "[wire_protocol]\nport = 9000\nmax_connections = 10\n[server]\ndata_dir = /from/file\n",
        )
        .unwrap();
        let vars = env(&[
            ("THEMIS_WIRE_PROTOCOL_PORT", "9001"),
            ("THEMIS_SERVER_DATA_DIR", "/from/env"),
            ("PATH", "/usr/bin"),
            ("THEMIS_ROOT_PASSWORD", "secret"),
        ]);
        let (mut c, warnings) = Config::load(Some(&path), vars).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.wire.max_connections, 10, "file over default");
        assert_eq!(c.wire.port, 9001, "env over file");
        assert_eq!(c.server.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.wire.idle_timeout, Duration::from_secs(300), "default");
        c.apply_override("wire_protocol", "port", "9002", "--port")
            .unwrap();
        assert_eq!(c.wire.port, 9002, "flag over env");
        assert!(c.validate().unwrap().is_empty());
    }

    #[test]
    fn env_overrides_errors_and_warnings() {
        let mut c = Config::default();
        let warnings = c
            .apply_env(env(&[
                ("THEMIS_WIRE_PROTOCOL_PROT", "1"),
                ("THEMIS_SERVER_HANDSHAKE_TIMEOUT", "3s"),
                ("THEMIS_STORAGE_SYNC", "never"),
                ("THEMIS_SERVER_NODE_ID", "n1"),
            ]))
            .unwrap();
        assert_eq!(
            warnings,
            vec!["THEMIS_WIRE_PROTOCOL_PROT: environment variable matches no setting (ignored); did you mean THEMIS_WIRE_PROTOCOL_PORT?"]
        );
        assert_eq!(c.wire.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.storage.sync, SyncMode::Never);
        assert_eq!(c.server.node_id.as_deref(), Some("n1"));
        assert_eq!(c.validate().unwrap(), vec![SYNC_NEVER_WARNING.to_string()]);

        let e = Config::default()
            .apply_env(env(&[("THEMIS_WIRE_PROTOCOL_PORT", "abc")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "THEMIS_WIRE_PROTOCOL_PORT: invalid value 'abc' for port in [wire_protocol]: \
             expected an integer 0-65535 (0 lets the operating system pick a free port)"
        );
    }

    #[test]
    fn apply_override_for_flags() {
        let mut c = Config::default();
        c.apply_override(
            "Wire_Protocol",
            "MAX_FRAME_BYTES",
            "1MiB",
            "--max-frame-bytes",
        )
        .unwrap();
        assert_eq!(c.wire.max_frame_bytes, 1 << 20);
        let e = c
            .apply_override("wire_protocol", "max_conections", "5", "--x")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--x: unknown setting 'max_conections' in [wire_protocol]; did you mean 'max_connections'?"
        );
        let e = c
            .apply_override("server", "bcrypt_cost", "40", "--bcrypt-cost")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--bcrypt-cost: invalid value '40' for bcrypt_cost in [server]: expected an integer 4-31"
        );
    }

    #[test]
    fn inconsistent_tls_settings_are_errors() {
        let e = err_text("[wire_protocol]\nenable_tls = true\ntls_key_path = /k.pem\n");
        assert!(
            e.contains("enable_tls = true but tls_cert_path not set"),
            "{e}"
        );
        let e = err_text("[wire_protocol]\nenable_mtls = true\ntls_ca_cert_path = /ca.pem\n");
        assert!(
            e.contains("enable_mtls = true needs enable_tls = true"),
            "{e}"
        );
        let e = err_text(
            "[wire_protocol]\nenable_tls = yes\ntls_cert_path = /c\ntls_key_path = /k\nenable_mtls = on\n",
        );
        assert!(e.contains("tls_ca_cert_path is not set"), "{e}");
        let e = err_text("[wire_protocol]\ntls_require_client_cert = 1\n");
        assert!(e.contains("needs enable_mtls = true"), "{e}");
        let e = err_text("[wire_protocol]\nrequire_tls = true\n");
        assert!(
            e.contains("require_tls = true needs enable_tls = true"),
            "{e}"
        );
        // TLS keys present but disabled: fine and silent.
        let (_, warnings) = parse(
            "[wire_protocol]\nenable_tls = false\ntls_cert_path = /c\ntls_min_version = TLSv1.3\n",
        )
        .unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn load_file_choice() {
        let missing = Path::new("/nonexistent/themis-test/themis.conf");
        let e = Config::load(Some(missing), no_env()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot read config file /nonexistent/themis-test/themis.conf: "),
            "{text}"
        );
        assert!(text.contains("--config"), "{text}");
        assert!(matches!(e, ConfigError::Read { .. }));

        // Errors inside a file name the path as given.
        let dir = std::env::temp_dir().join(format!("themis-config-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.conf");
        std::fs::write(&path, "[server]\nbcrypt_cost = 99\n").unwrap();
        let e = Config::load(Some(&path), no_env()).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.starts_with(&format!("{}:2: invalid value '99'", path.display())),
            "{e}"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("max_conection", "max_connections"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("PORT", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(closest("prot", ["port", "sync"].into_iter()), Some("port"));
        assert_eq!(closest("xyzzy", ["port", "sync"].into_iter()), None);
    }

    #[test]
    fn transactions_section() {
        let (c, warnings) = parse(
            "[transactions]\nidle_timeout = 250ms\nmax_idle_timeout = 5m\nmax_per_connection = 4\n",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.transactions.idle_timeout, Duration::from_millis(250));
        assert_eq!(c.transactions.max_idle_timeout, Duration::from_secs(300));
        assert_eq!(c.transactions.max_per_connection, 4);
        let e = err_text("[transactions]\nmax_per_connection = 0\n");
        assert!(e.contains("expected an integer 1-1000000"), "{e}");
        let e = err_text("[transactions]\nidle_timeout = 2h\n");
        assert_eq!(
            e,
            "invalid configuration: [transactions] idle_timeout (7200) is longer than \
             max_idle_timeout (3600): raise max_idle_timeout or lower idle_timeout"
        );
    }

    #[test]
    fn subscriptions_section() {
        let (c, warnings) = parse(
            "[subscriptions]\nbuffer_events = 16\nmax_per_connection = 2\n\
             change_log_retention = 5m\nchange_log_max_bytes = 4KiB\nprune_interval = 250ms\n",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let s = &c.subscriptions;
        assert_eq!(s.buffer_events, 16);
        assert_eq!(s.max_per_connection, 2);
        assert_eq!(s.change_log_retention, Duration::from_secs(300));
        assert_eq!(s.change_log_max_bytes, 4096);
        assert_eq!(s.prune_interval, Duration::from_millis(250));
        let e = err_text("[subscriptions]\nbuffer_events = 0\n");
        assert!(e.contains("expected an integer 1-1000000"), "{e}");
        let e = err_text("[subscriptions]\nchange_log_max_bytes = 10\n");
        assert!(e.contains("expected a size from 1KiB"), "{e}");
        let e = err_text("[subscriptions]\nprune_interval = 0\n");
        assert!(e.contains("expected a duration above 0"), "{e}");
    }

    #[test]
    fn security_section() {
        let (c, _) = parse(
            "[security]\nenable_api_key_auth = off\nauth_delay = 250ms\nauth_max_delay = 5s\n\
             max_connections_per_ip = 8\nrate_limit = 100\ncertificate_username = san_email\n\
             jwt_audience = themis\naudit_log = /var/log/themis-audit.log\n",
        )
        .unwrap();
        let s = &c.security;
        assert!(!s.api_key_auth && s.password_auth);
        assert_eq!(s.auth_delay, Duration::from_millis(250));
        assert_eq!(s.max_connections_per_ip, 8);
        assert_eq!(s.rate_limit, 100);
        assert_eq!(s.certificate_username, CertificateUsername::SanEmail);
        assert_eq!(s.jwt_audience.as_deref(), Some("themis"));
        assert_eq!(
            s.audit_log.as_deref(),
            Some(Path::new("/var/log/themis-audit.log"))
        );
        let e = err_text("[security]\ncertificate_username = subject\n");
        assert!(e.contains("cn, san_email, san_dns or san_uri"), "{e}");
        let e = err_text("[security]\nenable_password_auth = false\nenable_api_key_auth = false\n");
        assert!(e.contains("nobody could log in"), "{e}");
        let e = err_text("[security]\nenable_jwt_auth = true\n");
        assert!(e.contains("exactly one verification key"), "{e}");
        let e = err_text("[security]\nenable_certificate_auth = true\n");
        assert!(e.contains("enable_mtls"), "{e}");
        let e = err_text("[security]\nauth_delay = 10s\nauth_max_delay = 1s\n");
        assert!(e.contains("auth_max_delay"), "{e}");
    }

    #[test]
    fn shipped_example_file_is_example_conf() {
        assert_eq!(include_str!("../../../themis.conf.example"), EXAMPLE_CONF);
    }
}
