//! Accepting connections, the connection cap, and graceful shutdown.
//!
//! The listener owns a semaphore of `max_connections` permits. A connection that finds
//! none left is told so with one `OP_ERROR ERR_RESOURCE_EXHAUSTED` frame and closed;
//! everyone already connected keeps being served.
//!
//! Shutdown is a `watch` flag every connection listens to: on it the listener stops
//! accepting, each connection sends `OP_GOAWAY shutdown`, finishes its in-flight
//! requests, and closes; then storage is flushed. [`ServerHandle::shutdown`] returns
//! once all of that is done (or `shutdown_grace` ran out).
//!
//! Beside the connections runs one housekeeping task: trimming the change log to the
//! `[subscriptions]` retention, at start and every `prune_interval`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use themis_proto::wire::{self, ErrorCode};
use themis_proto::{ErrorExt, FrameCodec};
use themis_storage::{DocumentStore, Retention};

use crate::connection::{self, send_error_and_close};
use crate::pools::ThreadPool;
use crate::session::SessionRegistry;
use crate::tls::{TlsError, TlsReloader};

/// Storage writer threads: enough to keep commits flowing while one waits for the
/// journal, few enough not to fight over it (see `pools`).
const WRITER_THREADS: usize = 2;
/// Query threads: a few more than cores, so a query waiting on disk does not idle a
/// core, without letting hundreds of queries contend for two cores.
const QUERY_THREADS: usize = 4;
use crate::{store_options, Config, Shared, StartError, StartOptions};

/// A configured server, ready to [`Server::start`].
pub struct Server;

/// A running server. Dropping it does not stop the server; call [`Self::shutdown`].
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Arc<DocumentStore>,
    open_subscriptions: Arc<AtomicUsize>,
    tls: Option<Arc<TlsReloader>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Opens storage, creates the `root` user on first start, binds the listener and
    /// starts serving in the background.
    pub async fn start(config: Config, opts: StartOptions) -> Result<ServerHandle, StartError> {
        if !config.wire.enabled {
            return Err(StartError::NothingToServe);
        }
        // Certificates first: a TLS mistake is reported before anything is opened.
        let tls = if config.wire.tls.enabled {
            Some(Arc::new(
                crate::tls::TlsReloader::new(&config.wire.tls).map_err(StartError::Tls)?,
            ))
        } else {
            None
        };
        // The same for the JWT key and the audit log.
        let jwt = crate::auth::jwt::JwtVerifier::from_config(&config.security)
            .map_err(StartError::Jwt)?;
        let audit_path = config.security.audit_log.clone();
        let audit = crate::audit::AuditLog::open(audit_path.as_deref()).map_err(|error| {
            StartError::AuditLog {
                path: audit_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                error,
            }
        })?;
        let addr = config.wire.listen_address();
        let data_dir = config.server.data_dir.display().to_string();
        let store =
            DocumentStore::open(store_options(&config)).map_err(|error| StartError::Storage {
                path: data_dir.clone(),
                error,
            })?;
        let store = Arc::new(store);
        crate::session::bootstrap_root(&store, &config, opts.root_password)
            .await
            .map_err(StartError::Bootstrap)?;

        let listener =
            TcpListener::bind(addr.as_str())
                .await
                .map_err(|error| StartError::Bind {
                    addr: addr.to_string(),
                    error,
                })?;
        let local_addr = listener.local_addr().map_err(|error| StartError::Bind {
            addr: addr.to_string(),
            error,
        })?;

        let node_id = config
            .server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("themis-{}", local_addr.port()));
        let shared = Arc::new(Shared {
            codec: FrameCodec::new(config.wire.max_frame_bytes),
            tls,
            sessions: SessionRegistry::new(config.server.session_ttl),
            writers: ThreadPool::new("writer", WRITER_THREADS).map_err(StartError::Threads)?,
            queries: ThreadPool::new("query", QUERY_THREADS).map_err(StartError::Threads)?,
            store: store.clone(),
            node_id,
            open_subscriptions: Arc::new(AtomicUsize::new(0)),
            jwt,
            throttle: crate::auth::throttle::LoginThrottle::new(&config.security),
            rate_limiter: crate::auth::ratelimit::RateLimiter::new(
                config.security.rate_limit,
                config.security.rate_limit_burst,
            ),
            audit,
            user_admin: tokio::sync::Mutex::new(()),
            request_keys: Default::default(),
            config,
        });
        let open_subscriptions = shared.open_subscriptions.clone();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(prune_change_log(
            store.clone(),
            &shared.config,
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::request_keys::sweep_expired(
            shared.clone(),
            shutdown_rx.clone(),
        ));
        let tls = shared.tls.clone();
        if let Some(reloader) = &tls {
            let every = shared.config.wire.tls.reload_interval;
            if !every.is_zero() {
                tokio::spawn(watch_tls_files(
                    reloader.clone(),
                    every,
                    shutdown_rx.clone(),
                ));
            }
        }
        let tls_mode = tls_mode(&shared.config.wire.tls);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        info!(
            %local_addr,
            data_dir,
            tls = tls_mode,
            "ThemisDB wire protocol v1 listening"
        );
        Ok(ServerHandle {
            local_addr,
            shutdown_tx,
            task,
            store,
            open_subscriptions,
            tls,
            shared,
        })
    }
}

impl ServerHandle {
    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The storage engine this server writes to.
    pub fn store(&self) -> &Arc<DocumentStore> {
        &self.store
    }

    /// How many subscriptions are streaming events, on all connections (each is one
    /// task; it ends with its subscription or its connection).
    pub fn open_subscriptions(&self) -> usize {
        self.open_subscriptions.load(Ordering::Relaxed)
    }

    /// Reloads the TLS certificate, key and CA files (what SIGHUP and the file
    /// watcher do): new connections get the new certificate, established ones keep
    /// theirs. When the new files fail the startup checks, the old certificate keeps
    /// serving and the error names the file and the problem.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.tls.as_ref().ok_or(TlsError::NotEnabled)?.reload()
    }

    /// Reopens the audit log file at its configured path (after log rotation moved
    /// it away); nothing to do when the audit log goes to the server log.
    pub fn reopen_audit_log(&self) -> std::io::Result<()> {
        self.shared.audit.reopen()
    }

    /// How many TLS reloads failed since start (0 without TLS).
    pub fn tls_reload_failures(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.failures())
    }

    /// Graceful shutdown: stop accepting, GOAWAY every connection, let in-flight
    /// requests finish, close, then flush storage.
    pub async fn shutdown(self) -> Result<(), themis_storage::StorageError> {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.task.await {
            warn!(error = %e, "listener task ended abnormally");
        }
        self.store.flush().await
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(shared.config.wire.max_connections));
    let per_ip = Arc::new(PerIpLimit::new(
        shared.config.security.max_connections_per_ip,
    ));
    let mut connections = JoinSet::new();
    let conn_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::stopped(&mut shutdown) => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Some(ip_slot) = per_ip.take(peer.ip()) else {
                    let max = per_ip.max;
                    warn!(%peer, max, "connection refused: max_connections_per_ip reached");
                    connections.spawn(refuse_per_ip(stream, shared.codec, max));
                    continue;
                };
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let shutdown = conn_shutdown.clone();
                        let span = tracing::debug_span!("conn", %peer);
                        connections.spawn(
                            async move {
                                connection::accept(stream, peer, shared, shutdown).await;
                                drop(permit);
                                drop(ip_slot);
                            }
                            .instrument(span),
                        );
                    }
                    Err(_) => {
                        let max = shared.config.wire.max_connections;
                        warn!(%peer, max, "connection refused: max_connections reached");
                        connections.spawn(refuse(stream, shared.codec, max));
                    }
                }
            }
        }
    }
    drop(listener);
    let grace = shared.config.server.shutdown_grace;
    info!(
        open = connections.len(),
        "shutting down: draining connections"
    );
    let drained = tokio::time::timeout(grace + Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = connections.len(),
            "shutdown grace expired; closing remaining connections"
        );
        connections.shutdown().await;
    }
}

/// How the port is served, for the startup log line.
fn tls_mode(tls: &crate::config::TlsConfig) -> &'static str {
    match (tls.enabled, tls.required, tls.mtls, tls.require_client_cert) {
        (false, _, _, _) => "off (plaintext only)",
        (true, false, false, _) => "on (TLS and plaintext)",
        (true, true, false, _) => "required",
        (true, false, true, false) => "on, client certificates optional (TLS and plaintext)",
        (true, false, true, true) => "on, client certificates required (TLS and plaintext)",
        (true, true, true, false) => "required, client certificates optional",
        (true, true, true, true) => "required, client certificates required",
    }
}

/// Trims the change log to the configured retention now and every `prune_interval`,
/// until shutdown. Pruning deletes from storage, so it runs on a blocking thread.
fn prune_change_log(
    store: Arc<DocumentStore>,
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let retention = Retention {
        max_age: config.subscriptions.change_log_retention,
        max_bytes: config.subscriptions.change_log_max_bytes,
    };
    let every = config.subscriptions.prune_interval;
    async move {
        loop {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.changes().prune(retention)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => info!(removed, "change log pruned to its retention"),
                Ok(Err(e)) => warn!(error = %e, "pruning the change log failed; retrying later"),
                Err(e) => warn!(error = %e, "pruning the change log did not finish"),
            }
            tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Every `every`, reloads the TLS files when one changed (modification time or
/// length), until shutdown. A failed reload (say, a file caught mid-write) is tried
/// again once the files change again.
async fn watch_tls_files(
    reloader: Arc<TlsReloader>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = crate::stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let r = reloader.clone();
        // Errors are logged and counted by the reloader itself.
        let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
    }
}

/// Connections per client address (`[security] max_connections_per_ip`).
struct PerIpLimit {
    /// 0 = no limit.
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in [`PerIpLimit`], given back on drop.
struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: std::net::IpAddr,
}

impl PerIpLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Default::default(),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection from `ip`, unless it holds `max` already.
    /// Without a limit nothing is counted. IPv6 addresses count per /64: one host
    /// usually owns a whole /64.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Option<IpSlot>> {
        if self.max == 0 {
            return Some(None);
        }
        let ip = match ip {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => std::net::IpAddr::V4(v4),
                None => {
                    std::net::IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & (u128::MAX << 64)))
                }
            },
            v4 => v4,
        };
        let mut open = self.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(IpSlot {
            limit: self.clone(),
            ip,
        }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limit.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

async fn refuse_per_ip(stream: TcpStream, codec: FrameCodec, max: usize) {
    let err = wire::Error::retryable(
        ErrorCode::ErrResourceExhausted,
        format!(
            "this address already holds max_connections_per_ip ({max}) connections: close some (each connection multiplexes many requests, so a few are enough), or raise [security] max_connections_per_ip"
        ),
        1000,
    );
    send_error_and_close(stream, &codec, 0, err).await;
}

async fn refuse(stream: TcpStream, codec: FrameCodec, max: usize) {
    let err = wire::Error::retryable(
        ErrorCode::ErrResourceExhausted,
        format!(
            "server is at max_connections ({max}): retry later, reuse connections (each one multiplexes many requests), or raise [wire_protocol] max_connections"
        ),
        1000,
    );
    send_error_and_close(stream, &codec, 0, err).await;
}
