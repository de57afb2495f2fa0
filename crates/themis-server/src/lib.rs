//! The ThemisDB server: everything between a socket and the storage engine.
//!
//! * [`config`]: `themis.conf` (seed 000's format), environment and CLI overrides.
//! * [`listener`]: accepts TCP connections, enforces `max_connections`, and drives
//!   graceful shutdown.
//! * [`connection`]: one native wire-protocol connection: a reader that checks frames
//!   and gates requests on the handshake, concurrent request tasks bounded by the
//!   in-flight cap, and a writer that coalesces response frames into few syscalls.
//! * [`tls`]: the certificate, key and client CA of `[wire_protocol]`, checked at
//!   startup, and the rustls configuration (TLS 1.2+, strong suites, optional mTLS).
//!   TLS and plaintext share the port; the first byte tells them apart.
//! * [`session`]: users, bcrypt password checks, session tokens, revocation.
//! * [`auth`]: roles and permissions, JWT, API keys, client-certificate logins,
//!   failed-login throttling and the per-user rate limit; [`audit`]: the audit log.
//! * [`handlers`]: one module per opcode family; each turns a typed request into its
//!   typed response, following the contract's one error rule.
//!
//! Invariants: storage never sees a socket; nothing from the network is trusted before
//! the frame codec has checked it; a write is answered only after storage has made it
//! durable.

pub mod audit;
pub mod auth;
pub mod config;
pub mod connection;
pub mod handlers;
pub mod listener;
mod outbox;
mod pools;
mod request_keys;
pub mod session;
pub mod tls;

use std::sync::Arc;

use themis_proto::FrameCodec;
use themis_storage::{DocumentStore, StoreOptions};

pub use config::Config;
pub use listener::{Server, ServerHandle};

/// The server's version, as reported in `ServerInfo.server_version`.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub store: Arc<DocumentStore>,
    pub sessions: session::SessionRegistry,
    /// Storage commits (see `pools`).
    pub writers: pools::ThreadPool,
    /// Query execution: starting queries and pulling cursor batches.
    pub queries: pools::ThreadPool,
    pub codec: FrameCodec,
    /// Set when `enable_tls`: connections starting with a TLS record go through its
    /// newest configuration (reloadable, see [`tls::TlsReloader`]).
    pub tls: Option<Arc<tls::TlsReloader>>,
    pub node_id: String,
    /// Subscription tasks running, on every connection.
    pub open_subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when `[security] enable_jwt_auth`.
    pub jwt: Option<auth::jwt::JwtVerifier>,
    pub throttle: auth::throttle::LoginThrottle,
    pub rate_limiter: auth::ratelimit::RateLimiter,
    pub audit: audit::AuditLog,
    /// Held while a user, role or key action runs: they read, change and write user
    /// records, one at a time.
    pub user_admin: tokio::sync::Mutex<()>,
    /// Requests with the same (user, request key) run one at a time (see
    /// `request_keys`).
    pub request_keys: request_keys::KeyGates,
}

/// Errors that stop the server from starting. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // Underlying errors are part of the message, not a `source`, so that a printed
    // error chain does not repeat them.
    #[error("cannot open storage in {path}: {error}")]
    Storage {
        path: String,
        error: themis_storage::StorageError,
    },
    #[error("cannot listen on {addr}: {error} (is another server running on that port? choose another with --port)")]
    Bind { addr: String, error: std::io::Error },
    #[error("nothing to serve: [wire_protocol] enabled = false, and the wire protocol is this build's only front door; set enabled = true")]
    NothingToServe,
    #[error("cannot start the server's worker threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(tls::TlsError),
    #[error("cannot create the root user: {0}")]
    Bootstrap(String),
    #[error("cannot set up JWT login ([security] enable_jwt_auth): {0}")]
    Jwt(String),
    #[error("cannot open the audit log {path}: {error} (check [security] audit_log and that its directory exists and is writable)")]
    AuditLog { path: String, error: std::io::Error },
}

/// Options that come from outside the config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Password for the `root` user created on first start (`THEMIS_ROOT_PASSWORD`).
    /// When `None`, a password is generated, printed once and stored 0600 in the data
    /// directory.
    pub root_password: Option<String>,
}

pub(crate) fn store_options(config: &Config) -> StoreOptions {
    let mut opts = StoreOptions::new(config.server.data_dir.clone());
    opts.sync = match config.storage.sync {
        config::SyncMode::Always => themis_storage::SyncMode::Always,
        config::SyncMode::Never => themis_storage::SyncMode::Never,
    };
    opts.cache_size_bytes = config.storage.cache_size_mb.saturating_mul(1024 * 1024);
    opts
}

/// Resolves once the shutdown flag is set (or its sender is gone). Returns no guard,
/// so it can sit in a `select!` of a `Send` future.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
