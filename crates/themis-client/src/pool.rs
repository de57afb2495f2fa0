//! The connection pool every [`Client`](crate::Client) handle shares: authenticated,
//! multiplexed connections ([`Session`]s) to one or more targets, lent out per request
//! as [`Lease`]s.
//!
//! Choosing a connection ([`Pool::acquire`]):
//! * the open connection carrying the fewest requests, if it carries fewer than
//!   `max_in_flight_per_connection` (a connection serves many requests at once, so
//!   the pool grows only when every open one is saturated);
//! * else the request queues, first come first served, and the pool opens a
//!   connection if it may: fewer than `max_connections_per_target` to a target whose
//!   backoff has passed (healthy targets first, in the order given), and fewer than
//!   `max_connecting` being opened across the pool (no connect storms). A request that
//!   waits longer than `acquire_timeout` (or its own deadline) fails with
//!   [`Error::Timeout`] naming the targets and the pool's state.
//! * Requests never jump the queue: while anyone waits, a new request waits behind
//!   them, and a freed slot or a new connection goes to the oldest waiter.
//!
//! Connections leave the pool when they close or the server sends GOAWAY (their
//! in-flight requests finish on them: a lease holds its session), and when idle
//! (no request for `idle_timeout`) beyond `min_connections_per_target`. A maintenance
//! task reaps idle connections and reopens connections up to the minimum, which is
//! also how a failed target is retried: with exponential backoff and jitter, while
//! requests go to the other targets. A connection to a target that has a session token
//! resumes that session; when the server does not know it any more (it restarted,
//! the session expired) the credentials are sent again.
//!
//! Keep-alive: each session gets a task that pings when its connection has been quiet
//! for `min(keepalive_interval, server idle_timeout / 3)` (traffic of any kind, a
//! subscription's own pings included, counts as not quiet), and closes it when a ping
//! goes unanswered for `connect_timeout`; it ends with the session.
//!
//! Invariants: the pool's lock is never held across an `.await` or while a lease is
//! dropped; every lease given out is counted on its session until dropped, including
//! one sent to a waiter that gave up (the waiter's guard returns it); the counters in
//! [`PoolStats`] only grow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use themis_proto::{features, wire, ErrorCode, OpCode, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::client::decode_answer;
use crate::connection::Connection;
use crate::error::{check, Error, ErrorKind, Result};
use crate::options::{Auth, ClientOptions, ConnectTarget};
use crate::retry::RetryPolicy;

/// Everything this client can do, advertised in the handshake.
pub(crate) const CLIENT_FEATURES: u64 = features::MULTIPLEXING
    | features::CURSORS
    | features::TRANSACTIONS
    | features::SUBSCRIPTIONS
    | features::BULK_WRITES
    | features::ADMIN
    | features::REQUEST_KEYS;

/// The shortest keep-alive interval, whatever the server's idle timeout.
const MIN_KEEPALIVE: Duration = Duration::from_millis(50);

/// The least wait before a target that refused the credentials (or TLS) is tried
/// again.
const REFUSED_BACKOFF: Duration = Duration::from_secs(30);

/// The backoff between failed connects to one target.
fn connect_backoff() -> RetryPolicy {
    RetryPolicy {
        max_attempts: u32::MAX,
        max_elapsed: Duration::MAX,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
    }
}

/// One authenticated connection and what the server told us in the handshake.
pub(crate) struct Session {
    pub(crate) connection: Connection,
    pub(crate) session_token: String,
    pub(crate) server_info: wire::ServerInfo,
    /// Which of the pool's targets it goes to.
    pub(crate) target: usize,
    /// Leases held on it now.
    leases: AtomicUsize,
    /// Leases given out on it in all (0 = not used yet).
    served: AtomicU64,
    /// When its last lease ended (ms since the pool's epoch).
    idle_since_ms: AtomicU64,
}

impl Session {
    /// Whether the server advertised request keys (idempotent write retries).
    pub(crate) fn dedups_writes(&self) -> bool {
        self.server_info.features & features::REQUEST_KEYS != 0
    }

    /// Where it is connected.
    pub(crate) fn peer(&self) -> &str {
        self.connection.peer()
    }
}

/// A request's hold on a pooled session; given back when dropped.
pub(crate) struct Lease {
    pub(crate) session: Arc<Session>,
    pool: Arc<Pool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give_back(&self.session);
    }
}

/// A snapshot of a pool: what is open now and what happened so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Per target, in the order given.
    pub targets: Vec<TargetStats>,
    /// Connections open now (all targets).
    pub open: usize,
    /// Connections being opened now.
    pub connecting: usize,
    /// Requests holding a connection now.
    pub in_flight: usize,
    /// Requests waiting for a connection now.
    pub waiting: usize,
    /// Connections opened and authenticated, in all.
    pub connections_created: u64,
    /// Connections that left the pool, in all (died, GOAWAY, idle, dropped).
    pub connections_closed: u64,
    /// Failed attempts to open a connection, in all.
    pub connect_failures: u64,
    /// Requests that got a connection.
    pub acquisitions: u64,
    /// Of `acquisitions`, those served by a connection that had served before.
    pub reused: u64,
    /// Requests that gave up waiting for a connection.
    pub acquire_timeouts: u64,
    /// Time requests spent getting a connection, summed.
    pub acquire_wait_total: Duration,
}

impl PoolStats {
    /// The share of acquisitions served by a connection that was already in use.
    pub fn reuse_rate(&self) -> f64 {
        if self.acquisitions == 0 {
            0.0
        } else {
            self.reused as f64 / self.acquisitions as f64
        }
    }
}

/// One target of a [`PoolStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetStats {
    /// `host:port`.
    pub addr: String,
    /// Connections open to it now.
    pub open: usize,
    /// Connections being opened to it now.
    pub connecting: usize,
    /// Its last connect attempt succeeded (or none failed yet).
    pub healthy: bool,
    /// Connect attempts that failed since the last one that succeeded.
    pub consecutive_failures: u32,
}

/// What the pool knows about one target.
struct TargetState {
    target: ConnectTarget,
    addr: String,
    connecting: usize,
    failures: u32,
    /// No new connect before this (backoff after a failure).
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// The last connect was refused for good (credentials, TLS): requests fail with
    /// this at once while no connection is open, instead of waiting.
    refusal: Option<Error>,
    /// The session token to resume there.
    token: String,
}

/// A request waiting for a connection.
struct Waiter {
    id: u64,
    tx: oneshot::Sender<Result<Arc<Session>>>,
}

struct State {
    /// Open sessions (connections that take requests), all targets.
    open: Vec<Arc<Session>>,
    targets: Vec<TargetState>,
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
    /// The most recently opened session: what `Client::server_info` and friends
    /// report when no connection is open.
    latest: Arc<Session>,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    closed: AtomicU64,
    connect_failures: AtomicU64,
    acquisitions: AtomicU64,
    reused: AtomicU64,
    acquire_timeouts: AtomicU64,
    acquire_wait_ns: AtomicU64,
}

/// See the module docs.
pub(crate) struct Pool {
    pub(crate) options: ClientOptions,
    /// The connections' default database, from the first handshake.
    pub(crate) default_database: String,
    state: Mutex<State>,
    counters: Counters,
    epoch: Instant,
    /// Wakes the maintenance task early (a connect failed, a connection died, the
    /// pool is dropped). The task holds it, and only a `Weak` of the pool.
    wake: Arc<tokio::sync::Notify>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The maintenance task wakes, finds the pool gone, and ends.
        self.wake.notify_one();
    }
}

impl Pool {
    /// Connects: the first target that answers (in order) gives the first session;
    /// with `enable_warmup`, `min_connections_per_target` are then opened to every
    /// target (failures only mark a target unhealthy). Starts the maintenance task.
    pub(crate) async fn connect(
        target: ConnectTarget,
        mut options: ClientOptions,
    ) -> Result<Arc<Pool>> {
        if options.min_connections_per_target > options.max_connections_per_target {
            tracing::warn!(
                min = options.min_connections_per_target,
                max = options.max_connections_per_target,
                "min_connections_per_target is more than max_connections_per_target; using the maximum as the minimum"
            );
            options.min_connections_per_target = options.max_connections_per_target;
        }
        let targets = target.targets();
        let mut failures = Vec::new();
        let mut first = None;
        for (i, target) in targets.iter().enumerate() {
            match open_session(target, &options, None).await {
                Ok(session) => {
                    first = Some((i, session));
                    break;
                }
                // Credentials or TLS refused: another target will not differ.
                Err(e) if !is_worth_retrying(&e) => return Err(e),
                Err(e) => failures.push((i, e)),
            }
        }
        let Some((index, session)) = first else {
            let (_, error) = failures.pop().expect("at least one target");
            if targets.len() == 1 {
                return Err(error);
            }
            return Err(Error::ConnectionClosed {
                reason: format!("none of {} answered (last: {error})", join_addrs(&targets)),
            });
        };
        let default_database = if session.server_info.database.is_empty() {
            options
                .database
                .clone()
                .unwrap_or_else(|| crate::options::DEFAULT_DATABASE.to_owned())
        } else {
            session.server_info.database.clone()
        };
        let epoch = Instant::now();
        let session = Arc::new(session.into_pooled(index, 0));
        let mut target_states: Vec<TargetState> = targets
            .into_iter()
            .map(|target| TargetState {
                addr: target.addr(),
                target,
                connecting: 0,
                failures: 0,
                retry_at: None,
                last_error: None,
                refusal: None,
                token: String::new(),
            })
            .collect();
        target_states[index].token = session.session_token.clone();
        let pool = Arc::new(Pool {
            options,
            default_database,
            state: Mutex::new(State {
                open: vec![session.clone()],
                targets: target_states,
                waiters: VecDeque::new(),
                next_waiter: 0,
                latest: session.clone(),
            }),
            counters: Counters::default(),
            epoch,
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        pool.counters.created.fetch_add(1, Ordering::Relaxed);
        pool.opened(&session);
        for (i, error) in failures {
            pool.connect_failed(&mut pool.lock(), i, &error);
        }
        if pool.options.enable_warmup {
            pool.warm_up().await;
        }
        tokio::spawn(maintain(Arc::downgrade(&pool), pool.wake.clone()));
        Ok(pool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Opens connections until every target has `min_connections_per_target` (or
    /// failed), all at once.
    async fn warm_up(self: &Arc<Self>) {
        let mut opening = Vec::new();
        {
            let mut state = self.lock();
            for t in 0..state.targets.len() {
                let have = count_open(&state, t);
                for _ in have..self.options.min_connections_per_target {
                    state.targets[t].connecting += 1;
                    opening.push(self.clone().open_one(t, state.targets[t].token.clone()));
                }
            }
        }
        futures::future::join_all(opening).await;
    }

    /// A connection for one request, within `deadline` and `acquire_timeout`.
    pub(crate) async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Lease> {
        let started = Instant::now();
        let limit = deadline.min(started + self.options.acquire_timeout);
        let (id, rx) = {
            let mut state = self.lock();
            self.prune(&mut state);
            if state.open.is_empty() {
                if let Some(refusal) = refused_everywhere(&state) {
                    return Err(refusal);
                }
            }
            if state.waiters.is_empty() {
                if let Some(session) = self.pick(&state) {
                    drop(state);
                    return Ok(self.lend(session, started));
                }
            }
            let id = state.next_waiter;
            state.next_waiter += 1;
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back(Waiter { id, tx });
            self.grow(&mut state);
            (id, rx)
        };
        let mut waiting = Waiting {
            pool: self,
            id,
            rx: Some(rx),
        };
        let rx = waiting.rx.as_mut().expect("set above");
        match tokio::time::timeout_at(limit.into(), rx).await {
            Ok(Ok(Ok(session))) => {
                waiting.rx = None;
                Ok(self.lend_granted(session, started))
            }
            Ok(Ok(Err(error))) => {
                waiting.rx = None;
                Err(error)
            }
            Ok(Err(_)) => {
                waiting.rx = None;
                Err(Error::ConnectionClosed {
                    reason: "the connection pool was dropped".to_owned(),
                })
            }
            Err(_) => {
                drop(waiting);
                self.counters
                    .acquire_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                let state = self.lock();
                let operation = format!(
                    "acquiring a connection to {} ({})",
                    join_addrs_of(&state),
                    self.describe(&state)
                );
                drop(state);
                tracing::warn!(target: "themis_client::pool", %operation, "acquire timed out");
                Err(Error::Timeout {
                    operation,
                    after: limit.saturating_duration_since(started),
                })
            }
        }
    }

    /// A lease on `session`, counted already (`leases` was raised under the lock).
    fn lend_granted(self: &Arc<Self>, session: Arc<Session>, started: Instant) -> Lease {
        let waited = started.elapsed();
        self.counters.acquisitions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .acquire_wait_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        if session.served.fetch_add(1, Ordering::Relaxed) > 0 {
            self.counters.reused.fetch_add(1, Ordering::Relaxed);
        }
        Lease {
            session,
            pool: self.clone(),
        }
    }

    fn lend(self: &Arc<Self>, session: Arc<Session>, started: Instant) -> Lease {
        self.lend_granted(session, started)
    }

    /// The open session with the fewest leases under the cap, with a lease counted on
    /// it.
    fn pick(&self, state: &State) -> Option<Arc<Session>> {
        let cap = self.options.max_in_flight_per_connection.max(1);
        let session = state
            .open
            .iter()
            .filter(|s| s.leases.load(Ordering::Relaxed) < cap)
            .min_by_key(|s| s.leases.load(Ordering::Relaxed))?;
        session.leases.fetch_add(1, Ordering::Relaxed);
        Some(session.clone())
    }

    /// Removes sessions whose connection no longer takes requests.
    fn prune(&self, state: &mut State) {
        let before = state.open.len();
        state.open.retain(|s| {
            let keep = !s.connection.is_closed();
            if !keep {
                tracing::debug!(target: "themis_client::pool", peer = s.peer(), "connection left the pool (closed or going away)");
            }
            keep
        });
        let gone = before - state.open.len();
        if gone > 0 {
            self.counters
                .closed
                .fetch_add(gone as u64, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    /// Starts opening connections for the waiters, as far as the limits allow.
    fn grow(self: &Arc<Self>, state: &mut State) {
        let cap = self.options.max_in_flight_per_connection.max(1);
        loop {
            let connecting: usize = state.targets.iter().map(|t| t.connecting).sum();
            // Each connection being opened will serve `cap` waiters.
            let needed = state.waiters.len().div_ceil(cap);
            if connecting >= needed || connecting >= self.options.max_connecting.max(1) {
                return;
            }
            let Some(t) = self.target_to_open(state) else {
                return;
            };
            state.targets[t].connecting += 1;
            let token = state.targets[t].token.clone();
            tokio::spawn(self.clone().open_one(t, token));
        }
    }

    /// The target a new connection should go to: under its maximum, not in backoff;
    /// healthy ones first, then in the order given. (When every candidate is backing
    /// off, the maintenance task tries again when the earliest backoff ends.)
    fn target_to_open(&self, state: &State) -> Option<usize> {
        let now = Instant::now();
        let max = self.options.max_connections_per_target.max(1);
        let mut best: Option<usize> = None;
        for (i, t) in state.targets.iter().enumerate() {
            if count_open(state, i) + t.connecting >= max {
                continue;
            }
            if t.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => t.failures == 0 && state.targets[b].failures > 0,
            };
            if better {
                best = Some(i);
            }
        }
        best
    }

    /// Opens one connection to target `t` (counted in its `connecting` already) and
    /// puts it in the pool, or records the failure.
    async fn open_one(self: Arc<Self>, t: usize, token: String) {
        let target = self.lock().targets[t].target.clone();
        let result = tokio::time::timeout(
            self.options.connect_timeout,
            resume_or_login(&target, &self.options, &token),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                operation: format!("connect and handshake with {}", target.addr()),
                after: self.options.connect_timeout,
            })
        });
        let mut state = self.lock();
        state.targets[t].connecting -= 1;
        match result {
            Ok(session) => {
                let session = Arc::new(session.into_pooled(t, self.now_ms()));
                let target_state = &mut state.targets[t];
                target_state.failures = 0;
                target_state.retry_at = None;
                target_state.last_error = None;
                target_state.refusal = None;
                target_state.token = session.session_token.clone();
                state.open.push(session.clone());
                state.latest = session.clone();
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                self.serve_waiters(&mut state);
                self.grow(&mut state);
                drop(state);
                self.opened(&session);
            }
            Err(error) => {
                self.connect_failed(&mut state, t, &error);
                let connecting: usize = state.targets.iter().map(|t| t.connecting).sum();
                if !is_worth_retrying(&error) && state.open.is_empty() && connecting == 0 {
                    // Waiting will not help: tell everyone waiting now.
                    for waiter in state.waiters.drain(..) {
                        let _ = waiter.tx.send(Err(same_error(&error)));
                    }
                } else {
                    self.grow(&mut state);
                }
            }
        }
    }

    /// Logs a new session and starts its keep-alive.
    fn opened(&self, session: &Arc<Session>) {
        tracing::debug!(target: "themis_client::pool", peer = session.peer(), "connection created");
        self.start_keepalive(session);
    }

    fn connect_failed(&self, state: &mut State, t: usize, error: &Error) {
        self.counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        let target = &mut state.targets[t];
        target.failures = target.failures.saturating_add(1);
        // The server's hint (ERR_RESOURCE_EXHAUSTED's retry_after_ms) is a lower bound;
        // refused credentials are not sent again soon (they would count as failed
        // logins against the user).
        let floor = if is_worth_retrying(error) {
            target.refusal = None;
            error.retry_after().unwrap_or_default()
        } else {
            target.refusal = Some(same_error(error));
            REFUSED_BACKOFF
        };
        let delay = connect_backoff().backoff(target.failures).max(floor);
        target.retry_at = Some(Instant::now() + delay);
        target.last_error = Some(error.to_string());
        tracing::warn!(target: "themis_client::pool", addr = %target.addr, failures = target.failures, retry_in = ?delay, %error, "connect failed");
        // The maintenance task retries when this backoff ends (never called from it).
        self.wake.notify_one();
    }

    /// Hands free slots to the oldest waiters.
    fn serve_waiters(&self, state: &mut State) {
        while !state.waiters.is_empty() {
            let Some(session) = self.pick(state) else {
                return;
            };
            let waiter = state.waiters.pop_front().expect("not empty");
            if let Err(Ok(session)) = waiter.tx.send(Ok(session)) {
                // It gave up in the meantime: the lease was never handed over.
                session.leases.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends a lease on `session`: the slot goes to the oldest waiter, if any.
    fn give_back(&self, session: &Session) {
        session
            .idle_since_ms
            .store(self.now_ms(), Ordering::Relaxed);
        let mut state = self.lock();
        session.leases.fetch_sub(1, Ordering::Relaxed);
        if !state.waiters.is_empty() {
            self.prune(&mut state);
            self.serve_waiters(&mut state);
        }
    }

    /// Closes idle connections beyond the minimum, opens connections up to it (which
    /// retries failed targets once their backoff passed). Returns when to run again at
    /// the latest.
    fn maintain(self: &Arc<Self>) -> Option<Instant> {
        let mut state = self.lock();
        self.prune(&mut state);
        let now_ms = self.now_ms();
        let idle_ms = self.options.idle_timeout.as_millis() as u64;
        let min = self.options.min_connections_per_target;
        let mut reaped = Vec::new();
        for t in 0..state.targets.len() {
            let mut open = count_open(&state, t);
            // Longest idle first.
            let mut idle: Vec<Arc<Session>> = state
                .open
                .iter()
                .filter(|s| {
                    s.target == t
                        && s.leases.load(Ordering::Relaxed) == 0
                        && now_ms.saturating_sub(s.idle_since_ms.load(Ordering::Relaxed)) >= idle_ms
                })
                .cloned()
                .collect();
            idle.sort_by_key(|s| s.idle_since_ms.load(Ordering::Relaxed));
            for session in idle {
                if open <= min {
                    break;
                }
                open -= 1;
                reaped.push(session);
            }
        }
        state
            .open
            .retain(|s| !reaped.iter().any(|r| Arc::ptr_eq(r, s)));
        self.counters
            .closed
            .fetch_add(reaped.len() as u64, Ordering::Relaxed);
        // Up to the minimum, each target in turn.
        let now = Instant::now();
        for t in 0..state.targets.len() {
            let backing_off = state.targets[t].retry_at.is_some_and(|at| at > now);
            while !backing_off
                && count_open(&state, t) + state.targets[t].connecting < min
                && state.targets.iter().map(|t| t.connecting).sum::<usize>()
                    < self.options.max_connecting.max(1)
            {
                state.targets[t].connecting += 1;
                let token = state.targets[t].token.clone();
                tokio::spawn(self.clone().open_one(t, token));
            }
        }
        if !state.waiters.is_empty() {
            self.grow(&mut state);
        }
        let next_retry = state
            .targets
            .iter()
            .filter_map(|t| t.retry_at)
            .filter(|at| *at > now)
            .min();
        if reaped.iter().any(|r| Arc::ptr_eq(r, &state.latest)) {
            // `latest` keeps its session (and socket) alive: let it be an open one.
            if let Some(open) = state.open.last() {
                state.latest = open.clone();
            }
        }
        drop(state);
        for session in reaped {
            tracing::debug!(target: "themis_client::pool", peer = session.peer(), "closing idle connection");
            session
                .connection
                .close("idle in the pool for idle_timeout".to_owned());
        }
        next_retry
    }

    /// The pool's state in words, for errors.
    fn describe(&self, state: &State) -> String {
        let in_flight: usize = state
            .open
            .iter()
            .map(|s| s.leases.load(Ordering::Relaxed))
            .sum();
        let mut out = format!(
            "pool: {} open (max {} per target), {in_flight} requests in flight (max {} per \
             connection), {} waiting, {} connecting",
            state.open.len(),
            self.options.max_connections_per_target,
            self.options.max_in_flight_per_connection,
            state.waiters.len(),
            state.targets.iter().map(|t| t.connecting).sum::<usize>(),
        );
        for t in &state.targets {
            if t.failures > 0 {
                out.push_str(&format!(
                    "; {} down after {} failed connects (last: {})",
                    t.addr,
                    t.failures,
                    t.last_error.as_deref().unwrap_or("?")
                ));
            }
        }
        out
    }

    /// See [`PoolStats`].
    pub(crate) fn stats(&self) -> PoolStats {
        let state = self.lock();
        let c = &self.counters;
        PoolStats {
            targets: state
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| TargetStats {
                    addr: t.addr.clone(),
                    open: count_open(&state, i),
                    connecting: t.connecting,
                    healthy: t.failures == 0,
                    consecutive_failures: t.failures,
                })
                .collect(),
            open: state.open.len(),
            connecting: state.targets.iter().map(|t| t.connecting).sum(),
            in_flight: state
                .open
                .iter()
                .map(|s| s.leases.load(Ordering::Relaxed))
                .sum(),
            waiting: state.waiters.len(),
            connections_created: c.created.load(Ordering::Relaxed),
            connections_closed: c.closed.load(Ordering::Relaxed),
            connect_failures: c.connect_failures.load(Ordering::Relaxed),
            acquisitions: c.acquisitions.load(Ordering::Relaxed),
            reused: c.reused.load(Ordering::Relaxed),
            acquire_timeouts: c.acquire_timeouts.load(Ordering::Relaxed),
            acquire_wait_total: Duration::from_nanos(c.acquire_wait_ns.load(Ordering::Relaxed)),
        }
    }

    /// The most recently opened session (it may have closed since).
    pub(crate) fn latest(&self) -> Arc<Session> {
        self.lock().latest.clone()
    }

    /// An open session, if any (without waiting or counting a lease).
    pub(crate) fn any_open(&self) -> Option<Arc<Session>> {
        let mut state = self.lock();
        self.prune(&mut state);
        state.open.first().cloned()
    }

    /// Every target's address, comma-separated.
    pub(crate) fn addrs(&self) -> String {
        join_addrs_of(&self.lock())
    }

    /// Spawns the keep-alive task of `session` (see the module docs).
    fn start_keepalive(&self, session: &Arc<Session>) {
        let Some(interval) = self.options.keepalive_interval else {
            return;
        };
        let every = match session.server_info.idle_timeout_ms {
            0 => interval,
            ms => interval.min(Duration::from_millis(u64::from(ms)) / 3),
        }
        .max(MIN_KEEPALIVE);
        tokio::spawn(keepalive(
            Arc::downgrade(session),
            every,
            self.options.connect_timeout,
        ));
    }
}

/// A queued acquisition; dropping it (timeout, or the request was cancelled) leaves the
/// queue, and a session granted meanwhile is given back.
struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    id: u64,
    rx: Option<oneshot::Receiver<Result<Arc<Session>>>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        let granted = rx.try_recv();
        let mut state = self.pool.lock();
        state.waiters.retain(|w| w.id != self.id);
        if let Ok(Ok(session)) = granted {
            session.leases.fetch_sub(1, Ordering::Relaxed);
            self.pool.serve_waiters(&mut state);
        }
    }
}

/// The pool's background work: idle reaping, the minimum, retries of failed targets.
/// Ends when the pool is dropped.
async fn maintain(pool: Weak<Pool>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let (next_retry, period) = {
            let Some(pool) = pool.upgrade() else {
                return;
            };
            let next = pool.maintain();
            let period = (pool.options.idle_timeout / 4)
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            (next, period)
        };
        let until = next_retry.map_or(Instant::now() + period, |at| {
            at.min(Instant::now() + period)
        });
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = wake.notified() => {}
        }
    }
}

/// When every target refused its last connect for good and none is being tried: the
/// first refusal, for a request that would otherwise wait in vain.
fn refused_everywhere(state: &State) -> Option<Error> {
    if state
        .targets
        .iter()
        .any(|t| t.refusal.is_none() || t.connecting > 0)
    {
        return None;
    }
    state.targets[0].refusal.as_ref().map(same_error)
}

fn count_open(state: &State, t: usize) -> usize {
    state.open.iter().filter(|s| s.target == t).count()
}

fn join_addrs(targets: &[ConnectTarget]) -> String {
    targets
        .iter()
        .map(ConnectTarget::addr)
        .collect::<Vec<_>>()
        .join(",")
}

fn join_addrs_of(state: &State) -> String {
    state
        .targets
        .iter()
        .map(|t| t.addr.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a failed connect may succeed later (the server is down, restarting, or at
/// its connection limit), as opposed to refused credentials or broken TLS settings.
fn is_worth_retrying(error: &Error) -> bool {
    (error.kind() == ErrorKind::Connection && !matches!(error, Error::Tls(_)))
        || error.is_retryable()
}

/// The same error again, for each waiter told about one failed connect.
fn same_error(error: &Error) -> Error {
    match error {
        Error::Server {
            code,
            message,
            retryable,
            retry_after_ms,
        } => Error::Server {
            code: *code,
            message: message.clone(),
            retryable: *retryable,
            retry_after_ms: *retry_after_ms,
        },
        Error::Tls(m) => Error::Tls(m.clone()),
        Error::Protocol(m) => Error::Protocol(m.clone()),
        other => Error::ConnectionClosed {
            reason: other.to_string(),
        },
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
            Ok(_) => tracing::trace!(peer = session.peer(), "keep-alive pong"),
            Err(Error::Timeout { .. }) => {
                let reason = format!(
                    "no answer from {} to a keep-alive ping within {limit:?} (connect_timeout)",
                    session.peer()
                );
                tracing::warn!(%reason, "closing the connection");
                session.connection.close(reason);
                return;
            }
            Err(_) => return,
        }
    }
}

/// A handshaken connection before it joins a pool.
pub(crate) struct NewSession {
    connection: Connection,
    session_token: String,
    server_info: wire::ServerInfo,
}

impl NewSession {
    fn into_pooled(self, target: usize, now_ms: u64) -> Session {
        Session {
            connection: self.connection,
            session_token: self.session_token,
            server_info: self.server_info,
            target,
            leases: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
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
) -> Result<NewSession> {
    let token = (!token.is_empty()).then_some(token);
    let resumed = open_session(target, options, token).await;
    match resumed {
        Err(e)
            if token.is_some()
                && matches!(
                    e.code(),
                    Some(ErrorCode::ErrAuthFailed | ErrorCode::ErrUnauthenticated)
                ) =>
        {
            tracing::debug!(error = %e, "session resume refused; handshaking with credentials");
            open_session(target, options, None).await
        }
        other => other,
    }
}

/// Connects, handshakes, and applies what the server advertised. With `resume`, the
/// handshake resumes that session instead of sending the credentials.
async fn open_session(
    target: &ConnectTarget,
    options: &ClientOptions,
    resume: Option<&str>,
) -> Result<NewSession> {
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
        let _ = stream.set_nodelay(true);
        let connection = match &options.tls {
            None => Connection::start(stream, options.max_frame_bytes),
            Some(tls) => {
                let peer = crate::connection::peer_of(&stream);
                let stream = crate::tls::connect(tls, &target.host, stream).await?;
                Connection::start_tls(stream, peer, options.max_frame_bytes)
            }
        };
        let request = handshake_request(options, resume);
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
    Ok(NewSession {
        connection,
        session_token: response.session_token,
        server_info,
    })
}

/// The handshake for `options`: the credentials of its [`Auth`], or with `resume`
/// that session token instead (the method is still named; no secret is sent).
pub(crate) fn handshake_request(
    options: &ClientOptions,
    resume: Option<&str>,
) -> wire::HandshakeRequest {
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

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
