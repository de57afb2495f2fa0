//! OP_BEGIN_TX, OP_COMMIT_TX, OP_ROLLBACK_TX, and [`Transactions`]: the open
//! transactions of one connection, which CREATE, READ, UPDATE, DELETE and QUERY run in
//! when they carry a `transaction_id`.
//!
//! Storage transactions are optimistic (`themis_storage::Transaction`): nothing is
//! locked while one is open, so keeping it across network round trips blocks no other
//! client, and a stalled client only risks its own commit failing. What this module
//! adds is ownership and lifetime: which connection a transaction belongs to, one
//! request at a time in it, and when it ends if its client never ends it.
//!
//! Invariants:
//! * A transaction belongs to the connection that began it. Its id is 128 random bits
//!   in hex: another connection cannot guess it, and finds nothing under it anyway.
//! * One request at a time per transaction. A request takes the transaction's slot
//!   lock (an async, first-come-first-served lock, so a waiting request holds no
//!   thread) and keeps it while its statement runs on a worker pool. A request that
//!   waits longer than [`BUSY_WAIT`] for it fails with `ERR_TRANSACTION`.
//! * Storage work runs on the worker pools, never on the runtime's threads:
//!   statements on the query pool (they read and buffer writes, never touching the
//!   journal), BEGIN on the query pool, COMMIT on the writer pool; the wait for
//!   durability happens back on the runtime, as for every other write.
//! * A transaction with no request for its idle timeout is rolled back by the
//!   connection's reaper task, never while a request is running in it. The reaper
//!   holds only a `Weak` to the registry: it never keeps a closed connection's
//!   transactions alive.
//! * Dropping the registry (the connection's `ConnState`, when the connection has
//!   closed and its last request finished) rolls back every transaction still open.
//! * The last [`MAX_ENDED`] ids that ended are remembered with why, so a late request
//!   naming one is told what happened to it (committed, rolled back, timed out, lost
//!   its commit) rather than just "not found".

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use themis_proto::wire::{
    self, BeginTxRequest, BeginTxResponse, CommitTxRequest, CommitTxResponse, ErrorCode,
    IsolationLevel, RollbackTxRequest, RollbackTxResponse,
};
use themis_proto::ErrorExt;
use themis_storage::{Isolation, Pending, RequestKey, Transaction};
use tokio::sync::{Notify, OwnedMutexGuard};

use super::{database_of, fail, invalid, job_error, storage_error, ConnState};
use crate::pools::ThreadPool;
use crate::request_keys::{request_key, KeyGuard};
use crate::session::Session;
use crate::Shared;

/// How long a request waits for the transaction's previous request to finish.
pub const BUSY_WAIT: Duration = Duration::from_secs(10);
/// How many ended transaction ids a connection remembers, for clearer errors.
pub const MAX_ENDED: usize = 64;

/// What a request does in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Why a transaction is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Committed,
    RolledBack,
    /// Rolled back by the reaper after this long without a request.
    Idle(Duration),
    /// Its COMMIT failed (a lost conflict, or storage refused it): nothing of it was
    /// committed.
    CommitFailed,
    /// A worker running one of its requests failed: the transaction was dropped.
    Lost,
}

fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

impl Ended {
    fn error(self, id: &str) -> wire::Error {
        let message = match self {
            Ended::Committed => format!(
                "transaction '{id}' was already committed: begin a new transaction (OP_BEGIN_TX) for more work"
            ),
            Ended::RolledBack => format!(
                "transaction '{id}' was already rolled back: begin a new transaction (OP_BEGIN_TX)"
            ),
            Ended::Idle(timeout) => format!(
                "transaction '{id}' was rolled back after {} idle (its idle timeout): nothing of it was committed; begin a new transaction and run it again, sending a request at least every {} (or ask for a longer timeout_ms)",
                duration_text(timeout),
                duration_text(timeout)
            ),
            Ended::CommitFailed => format!(
                "transaction '{id}' ended when its COMMIT failed: nothing of it was committed; begin a new transaction and run it again"
            ),
            Ended::Lost => format!(
                "transaction '{id}' was rolled back because a request in it failed unexpectedly (the server logged it): nothing of it was committed; begin a new transaction and run it again"
            ),
        };
        wire::Error::new(ErrorCode::ErrTransaction, message)
    }
}

fn not_found(id: &str) -> wire::Error {
    wire::Error::new(
        ErrorCode::ErrTransaction,
        format!(
            "transaction '{id}' not found on this connection: it was never begun here, belongs to another connection (transactions end with their connection), or ended long ago; begin a new transaction with OP_BEGIN_TX"
        ),
    )
}

/// The transaction itself, while no request is running in it.
struct Slot {
    /// `None` once the transaction ended (or while a request runs in it: the request
    /// holds the slot lock then, so nobody else looks).
    tx: Option<Transaction>,
    /// Why it ended, once it has.
    ended: Option<Ended>,
}

/// One open transaction of a connection.
pub(crate) struct TxHandle {
    id: String,
    db: String,
    read_only: bool,
    /// Rolled back after this long without a request.
    timeout: Duration,
    /// Cleared when the transaction ends; read without the slot lock (by its cursors).
    open: AtomicBool,
    last_used: Mutex<Instant>,
    slot: Arc<tokio::sync::Mutex<Slot>>,
}

impl TxHandle {
    /// Whether the transaction has not ended yet.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The database the transaction works in.
    pub(crate) fn database(&self) -> &str {
        &self.db
    }

    /// Records a use: the idle timeout counts from here.
    pub(crate) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the transaction in `slot` ended for `why`; returns it (if still there)
    /// for the caller to drop, which rolls it back unless it was committed.
    fn end(&self, slot: &mut Slot, why: Ended) -> Option<Transaction> {
        let tx = slot.tx.take();
        slot.ended = Some(why);
        self.open.store(false, Ordering::Release);
        tx
    }

    /// Waits (at most [`BUSY_WAIT`]) until no other request runs in the transaction.
    async fn lock(&self) -> Result<OwnedMutexGuard<Slot>, wire::Error> {
        tokio::time::timeout(BUSY_WAIT, self.slot.clone().lock_owned())
            .await
            .map_err(|_| {
                wire::Error::new(
                    ErrorCode::ErrTransaction,
                    format!(
                        "transaction '{}' is still busy with an earlier request after {}: a transaction runs one request at a time; wait for the earlier answer before sending the next",
                        self.id,
                        duration_text(BUSY_WAIT)
                    ),
                )
            })
    }
}

#[derive(Default)]
struct Inner {
    open: HashMap<String, Arc<TxHandle>>,
    /// Recently ended ids, oldest first.
    ended: VecDeque<(String, Ended)>,
    /// Whether a reaper task is running for this registry.
    reaper: bool,
}

/// The open transactions of one connection; see the module doc.
#[derive(Default)]
pub(crate) struct Transactions {
    inner: Mutex<Inner>,
    /// Wakes the reaper: a transaction with an earlier deadline began, or the registry
    /// is gone.
    wake: Arc<Notify>,
}

impl Drop for Transactions {
    fn drop(&mut self) {
        let open = self.lock().open.len();
        if open > 0 {
            tracing::debug!(
                open,
                "connection closed: rolling back its open transactions"
            );
        }
        // The transactions themselves roll back as the map drops; the reaper only
        // needs to notice and exit.
        self.wake.notify_one();
    }
}

impl Transactions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of open transactions.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }

    fn room(inner: &Inner, max: usize) -> Result<(), wire::Error> {
        if inner.open.len() < max {
            return Ok(());
        }
        Err(wire::Error::new(
            ErrorCode::ErrResourceExhausted,
            format!(
                "this connection already has {max} open transactions (the limit, [transactions] max_per_connection): commit or roll back one before beginning another"
            ),
        ))
    }

    /// Registers a new transaction and returns its id; starts the reaper if none runs.
    fn insert(
        self: &Arc<Self>,
        tx: Transaction,
        timeout: Duration,
        max: usize,
    ) -> Result<String, wire::Error> {
        let id = super::random_id();
        let handle = Arc::new(TxHandle {
            id: id.clone(),
            db: tx.database().to_string(),
            read_only: tx.is_read_only(),
            timeout,
            open: AtomicBool::new(true),
            last_used: Mutex::new(Instant::now()),
            slot: Arc::new(tokio::sync::Mutex::new(Slot {
                tx: Some(tx),
                ended: None,
            })),
        });
        let mut inner = self.lock();
        Self::room(&inner, max)?;
        inner.open.insert(id.clone(), handle);
        if inner.reaper {
            // Its next deadline may be earlier than the one the reaper sleeps towards.
            self.wake.notify_one();
        } else {
            inner.reaper = true;
            tokio::spawn(reap(Arc::downgrade(self), self.wake.clone()));
        }
        Ok(id)
    }

    /// The database of open transaction `id`, if there is one.
    pub(crate) fn database_of(&self, id: &str) -> Option<String> {
        if id.is_empty() {
            return None;
        }
        self.lock().open.get(id).map(|h| h.db.clone())
    }

    /// The open transaction `id`, checked for a request in `database` (empty = the
    /// transaction's) that needs `access`.
    pub(crate) fn find(
        &self,
        id: &str,
        database: &str,
        access: Access,
    ) -> Result<Arc<TxHandle>, wire::Error> {
        let handle = {
            let inner = self.lock();
            match inner.open.get(id) {
                Some(h) => h.clone(),
                None => {
                    return Err(match inner.ended.iter().find(|(e, _)| e == id) {
                        Some((_, why)) => why.error(id),
                        None => not_found(id),
                    })
                }
            }
        };
        if !database.is_empty() && database != handle.db {
            return Err(wire::Error::new(
                ErrorCode::ErrTransaction,
                format!(
                    "transaction '{id}' works in database '{}', but the request names database '{database}': a transaction works in one database; leave database empty or set it to '{}'",
                    handle.db, handle.db
                ),
            ));
        }
        if access == Access::Write && handle.read_only {
            return Err(wire::Error::new(
                ErrorCode::ErrTransaction,
                format!("transaction '{id}' is read-only: begin one without read_only to write"),
            ));
        }
        handle.touch();
        Ok(handle)
    }

    /// Ends the transaction in `slot` (already taken out of it or not): drops it
    /// (a rollback, unless it was committed), and remembers why.
    fn finish(&self, handle: &TxHandle, slot: &mut Slot, why: Ended) {
        let tx = handle.end(slot, why);
        {
            let mut inner = self.lock();
            inner.open.remove(&handle.id);
            remember(&mut inner, &handle.id, why);
        }
        drop(tx);
    }

    /// Runs `f` on transaction `handle`, on `pool`, once no other request runs in it.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        handle: &TxHandle,
        pool: &ThreadPool,
        f: impl FnOnce(&mut Transaction) -> T + Send + 'static,
    ) -> Result<T, wire::Error> {
        let mut slot = handle.lock().await?;
        let Some(tx) = slot.tx.take() else {
            return Err(ended(handle, &slot));
        };
        let ran = pool
            .run(move || {
                let mut tx = tx;
                let out = f(&mut tx);
                (tx, out)
            })
            .await;
        match ran {
            Ok((tx, out)) => {
                slot.tx = Some(tx);
                handle.touch();
                Ok(out)
            }
            Err(e) => {
                self.finish(handle, &mut slot, Ended::Lost);
                Err(job_error(e))
            }
        }
    }

    /// Commits transaction `id`; see [`commit`]. With a request key (and its gate,
    /// held until the storage commit returns) the answer is the response bytes, fresh
    /// or stored; an `id` that is not open here is answered from the key's record
    /// when there is one.
    async fn commit(
        &self,
        shared: &Shared,
        id: &str,
        key: Option<(RequestKey, KeyGuard)>,
    ) -> Result<Option<Bytes>, wire::Error> {
        let handle = match self.find(id, "", Access::Read) {
            Ok(handle) => handle,
            Err(e) => return stored_or(shared, key, e).await,
        };
        let mut slot = handle.lock().await?;
        let Some(tx) = slot.tx.take() else {
            let e = ended(&handle, &slot);
            drop(slot);
            return stored_or(shared, key, e).await;
        };
        if let Some(why) = tx.aborted() {
            // COMMIT ends the transaction whatever happens (as in PostgreSQL, where
            // COMMIT of an aborted transaction rolls it back), so no client is left
            // holding one that can never commit.
            let e = wire::Error::new(
                ErrorCode::ErrTransaction,
                format!(
                    "transaction '{id}' cannot commit: it was aborted because {why}; it has been rolled back and nothing of it was committed. Run it again in a new transaction"
                ),
            );
            drop(tx);
            self.finish(&handle, &mut slot, Ended::CommitFailed);
            return Err(e);
        }
        let committed = shared
            .writers
            .run(move || match key {
                None => tx.commit().map(Committed::Plain),
                Some((rk, gate)) => {
                    let response = CommitTxResponse {
                        success: true,
                        ..Default::default()
                    };
                    let out = tx.commit_keyed(&rk, response.encode_to_vec().into());
                    drop(gate);
                    out.map(Committed::Keyed)
                }
            })
            .await;
        let pending = match committed {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => {
                self.finish(&handle, &mut slot, Ended::CommitFailed);
                return Err(storage_error(e));
            }
            Err(e) => {
                self.finish(&handle, &mut slot, Ended::Lost);
                return Err(job_error(e));
            }
        };
        // Applied and visible; what remains is durability, which needs no lock.
        self.finish(&handle, &mut slot, Ended::Committed);
        drop(slot);
        match pending {
            Committed::Plain(p) => p.wait().await.map(|()| None),
            Committed::Keyed(p) => p.wait().await.map(Some),
        }
        .map_err(storage_error)
    }

    /// Rolls back transaction `id`.
    async fn rollback(&self, id: &str) -> Result<(), wire::Error> {
        let handle = self.find(id, "", Access::Read)?;
        let mut slot = handle.lock().await?;
        if slot.tx.is_none() {
            return Err(ended(&handle, &slot));
        }
        self.finish(&handle, &mut slot, Ended::RolledBack);
        Ok(())
    }

    /// Rolls back every transaction idle for its timeout and not busy. Returns when
    /// to look again, or `None` (and marks the reaper stopped) when none is open.
    fn expire_idle(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        let mut inner = self.lock();
        inner.open.retain(|_, h| {
            let deadline = h.last_used() + h.timeout;
            if deadline > now {
                earliest(&mut next, deadline);
                return true;
            }
            let Ok(mut slot) = h.slot.clone().try_lock_owned() else {
                // A request is running in it: look again later.
                earliest(&mut next, now + h.timeout);
                return true;
            };
            // A request may have finished between the deadline check and the lock.
            let deadline = h.last_used() + h.timeout;
            if deadline > now {
                earliest(&mut next, deadline);
                return true;
            }
            let why = Ended::Idle(h.timeout);
            let tx = h.end(&mut slot, why);
            expired.push((h.id.clone(), why, tx));
            false
        });
        for (id, why, _) in &expired {
            remember(&mut inner, id, *why);
        }
        if inner.open.is_empty() {
            inner.reaper = false;
            next = None;
        }
        drop(inner);
        for (id, _, _) in &expired {
            tracing::debug!(transaction = %id, "rolled back an idle transaction");
        }
        // The rollbacks (drops) happen here, outside the registry lock.
        drop(expired);
        next
    }
}

/// Lowers `next` to `at` if that is earlier (or `next` is unset).
fn earliest(next: &mut Option<Instant>, at: Instant) {
    *next = Some(next.map_or(at, |n| n.min(at)));
}

fn remember(inner: &mut Inner, id: &str, why: Ended) {
    if inner.ended.len() == MAX_ENDED {
        inner.ended.pop_front();
    }
    inner.ended.push_back((id.to_string(), why));
}

/// The error for a request that got the slot of a transaction that had ended.
fn ended(handle: &TxHandle, slot: &Slot) -> wire::Error {
    slot.ended.unwrap_or(Ended::Lost).error(&handle.id)
}

/// The reaper of one connection: sleeps until the earliest idle deadline, rolls back
/// what expired, and exits when no transaction is open or the registry is gone.
async fn reap(registry: Weak<Transactions>, wake: Arc<Notify>) {
    loop {
        let next = match registry.upgrade() {
            Some(r) => r.expire_idle(),
            None => return,
        };
        let Some(next) = next else { return };
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = wake.notified() => {}
        }
    }
}

fn isolation(level: i32) -> Option<Isolation> {
    match IsolationLevel::try_from(level).ok()? {
        IsolationLevel::Snapshot => Some(Isolation::Snapshot),
        IsolationLevel::Serializable => Some(Isolation::Serializable),
        IsolationLevel::ReadCommitted => Some(Isolation::ReadCommitted),
    }
}

pub(crate) async fn begin(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    req: BeginTxRequest,
) -> BeginTxResponse {
    let Some(isolation) = isolation(req.isolation_level) else {
        return invalid(format!(
            "unknown isolation_level {}: use SNAPSHOT (0), SERIALIZABLE (1) or READ_COMMITTED (2)",
            req.isolation_level
        ));
    };
    let config = &shared.config.transactions;
    let timeout = match req.timeout_ms {
        0 => config.idle_timeout,
        ms => Duration::from_millis(ms).min(config.max_idle_timeout),
    };
    let max = config.max_per_connection;
    let txs = &conn.transactions;
    // Refuse before starting a storage transaction; `insert` checks again, for
    // BEGINs that race on this connection.
    if let Err(e) = Transactions::room(&txs.lock(), max) {
        return fail(e);
    }
    let db = database_of(&req.database, session).to_string();
    let store = shared.store.clone();
    let read_only = req.read_only;
    let began = shared
        .queries
        .run(move || store.begin_transaction(&db, isolation, read_only))
        .await;
    let tx = match began {
        Ok(Ok(tx)) => tx,
        Ok(Err(e)) => return fail(storage_error(e)),
        Err(e) => return fail(job_error(e)),
    };
    match txs.insert(tx, timeout, max) {
        Ok(transaction_id) => BeginTxResponse {
            success: true,
            transaction_id,
            ..Default::default()
        },
        Err(e) => fail(e),
    }
}

/// A commit's durability ticket: plain, or with the response bytes of a keyed commit.
enum Committed {
    Plain(Pending<()>),
    Keyed(Pending<Bytes>),
}

/// For a keyed COMMIT_TX whose transaction is not open here (its connection died and
/// the client resent the commit on a new one, or it was committed already): the
/// stored answer when the key has a live record, else `e`. The gate is held during
/// the lookup, so a commit with the key still running elsewhere has finished first.
async fn stored_or(
    shared: &Shared,
    key: Option<(RequestKey, KeyGuard)>,
    e: wire::Error,
) -> Result<Option<Bytes>, wire::Error> {
    let Some((rk, gate)) = key else {
        return Err(e);
    };
    let found = shared.store.request_key_response(&rk);
    drop(gate);
    match found.map_err(storage_error)?.wait().await {
        Ok(Some(bytes)) => Ok(Some(bytes)),
        Ok(None) => Err(e),
        Err(se) => Err(storage_error(se)),
    }
}

pub(crate) async fn commit(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    req: CommitTxRequest,
) -> CommitTxResponse {
    let window = shared.config.server.request_key_window;
    let key = match request_key(&session.username, &req.request_key, window) {
        Ok(None) => None,
        Ok(Some(rk)) => {
            let gate = shared.request_keys.enter(&rk).await;
            Some((rk, gate))
        }
        Err(e) => return fail(e),
    };
    let done = conn
        .transactions
        .commit(shared, &req.transaction_id, key)
        .await;
    conn.cursors.close_ended();
    match done {
        Ok(Some(bytes)) => super::documents::decode_stored(&bytes),
        Ok(None) => CommitTxResponse {
            success: true,
            ..Default::default()
        },
        Err(e) => fail(e),
    }
}

pub(crate) async fn rollback(conn: &ConnState, req: RollbackTxRequest) -> RollbackTxResponse {
    let done = conn.transactions.rollback(&req.transaction_id).await;
    conn.cursors.close_ended();
    match done {
        Ok(()) => RollbackTxResponse {
            success: true,
            ..Default::default()
        },
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use themis_storage::{DocumentStore, StoreOptions};

    fn store(dir: &std::path::Path) -> Arc<DocumentStore> {
        let mut opts = StoreOptions::new(dir.to_path_buf());
        opts.sync = themis_storage::SyncMode::Never;
        Arc::new(DocumentStore::open(opts).expect("store opens"))
    }

    fn begin_in(txs: &Arc<Transactions>, store: &DocumentStore, timeout: Duration) -> String {
        let tx = store
            .begin_transaction("_system", Isolation::Snapshot, false)
            .expect("begin");
        txs.insert(tx, timeout, 16).expect("room")
    }

    #[tokio::test]
    async fn idle_transactions_are_reaped_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let txs = Arc::new(Transactions::default());
        let short = begin_in(&txs, &store, Duration::from_millis(50));
        let long = begin_in(&txs, &store, Duration::from_secs(3600));
        assert_eq!(txs.len(), 2);
        // Poll the registry itself (not the transaction, which a lookup would touch).
        while txs.len() == 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let e = txs.find(&short, "", Access::Read).err().expect("reaped");
        assert_eq!(e.code, ErrorCode::ErrTransaction as i32);
        assert!(
            e.message.contains("rolled back after 0.050 s idle"),
            "{}",
            e.message
        );
        assert!(txs.find(&long, "", Access::Read).is_ok());
        let e = txs.find("feed", "", Access::Read).err().expect("unknown");
        assert!(
            e.message.contains("not found on this connection"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn dropping_the_registry_rolls_back_and_stops_the_reaper() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let txs = Arc::new(Transactions::default());
        let id = begin_in(&txs, &store, Duration::from_secs(3600));
        let handle = Arc::downgrade(&txs.find(&id, "", Access::Read).unwrap());
        let weak = Arc::downgrade(&txs);
        drop(txs);
        assert!(
            weak.upgrade().is_none(),
            "the reaper holds no strong reference"
        );
        assert!(handle.upgrade().is_none(), "the transaction was dropped");
    }

    #[tokio::test]
    async fn the_per_connection_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let txs = Arc::new(Transactions::default());
        for _ in 0..3 {
            let tx = store
                .begin_transaction("_system", Isolation::Snapshot, true)
                .unwrap();
            txs.insert(tx, Duration::from_secs(60), 3).unwrap();
        }
        let tx = store
            .begin_transaction("_system", Isolation::Snapshot, true)
            .unwrap();
        let e = txs.insert(tx, Duration::from_secs(60), 3).unwrap_err();
        assert_eq!(e.code, ErrorCode::ErrResourceExhausted as i32);
        assert!(
            e.message.contains("already has 3 open transactions"),
            "{}",
            e.message
        );
    }
}
