//! OP_QUERY, OP_CURSOR_NEXT, OP_CURSOR_CLOSE.
//!
//! A read query runs on the query thread pool (it reads storage synchronously) and
//! hands back its first batch; if more remain, its [`ReadCursor`] is parked in the
//! connection's [`Cursors`] and each CURSOR_NEXT pulls the next batch from it, so the
//! server holds one batch at a time however large the result. A write query runs on
//! a writer thread in one transaction, is acknowledged once durable, and its
//! (materialised) results are served the same way.
//!
//! A query with a `transaction_id` runs inside that transaction (see
//! `transactions`): a read query reads the transaction's view through a cursor like
//! any other, a write query runs as one statement of the transaction and its results
//! are served like those of any write query. A cursor opened in a transaction is
//! closed when the transaction ends, and each fetch from it counts as a use of the
//! transaction (for its idle timeout).
//!
//! Cursors belong to their connection: at most `MAX_CURSORS` open, each closed after
//! `CURSOR_TTL` without a fetch, all dropped when the connection closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use themis_aql::exec::{self, Prepared, QueryOptions, ReadCursor, Stats};
use themis_aql::{ErrorKind, QueryError};
use themis_proto::wire::{
    self, CursorCloseRequest, CursorCloseResponse, CursorNextRequest, ErrorCode, QueryRequest,
    QueryResponse, QueryStats,
};
use themis_proto::ErrorExt;

use super::transactions::{Access, TxHandle};
use super::{database_of, fail, invalid, job_error, storage_error};
use crate::auth::Permission;
use crate::session::Session;
use crate::Shared;

/// Open cursors per connection (the contract's per-session cap; a session is bound to
/// one connection at a time).
pub const MAX_CURSORS: usize = 64;
/// A cursor not fetched from for this long is closed.
pub const CURSOR_TTL: Duration = Duration::from_secs(60);
/// Results per batch when the request leaves `batch_size` at 0.
pub const DEFAULT_BATCH: usize = 1000;
/// Upper bound on `batch_size`.
pub const MAX_BATCH: usize = 100_000;

enum CursorKind {
    Read(Box<ReadCursor>),
    /// A write query's results, produced before its commit.
    Materialised(std::vec::IntoIter<Value>, Stats),
}

struct Entry {
    kind: Arc<Mutex<CursorKind>>,
    last_used: Instant,
    /// The transaction the query ran in, if any: the cursor ends with it.
    tx: Option<Weak<TxHandle>>,
}

impl Entry {
    /// Whether the cursor may still be read: fetched recently, and its transaction
    /// (if any) still open.
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) < CURSOR_TTL
            && self
                .tx
                .as_ref()
                .is_none_or(|t| t.upgrade().is_some_and(|t| t.is_open()))
    }
}

/// The open cursors of one connection.
#[derive(Default)]
pub(crate) struct Cursors {
    map: Mutex<HashMap<String, Entry>>,
}

impl Cursors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(map: &mut HashMap<String, Entry>) {
        let now = Instant::now();
        map.retain(|_, e| e.live(now));
    }

    /// Closes the cursors of transactions that have ended (and idle ones).
    pub(crate) fn close_ended(&self) {
        Self::expire(&mut self.lock());
    }

    /// Fails when the connection has no free cursor slot (after expiring idle ones).
    fn room(map: &mut HashMap<String, Entry>) -> Result<(), wire::Error> {
        Self::expire(map);
        if map.len() < MAX_CURSORS {
            return Ok(());
        }
        Err(wire::Error::new(
            ErrorCode::ErrResourceExhausted,
            format!(
                "this connection already has {MAX_CURSORS} open cursors: read them to the end or close them (OP_CURSOR_CLOSE) before starting more"
            ),
        ))
    }

    fn park(&self, kind: CursorKind, tx: Option<&Arc<TxHandle>>) -> Result<String, wire::Error> {
        let mut map = self.lock();
        Self::room(&mut map)?;
        let id = super::random_id();
        map.insert(
            id.clone(),
            Entry {
                kind: Arc::new(Mutex::new(kind)),
                last_used: Instant::now(),
                tx: tx.map(Arc::downgrade),
            },
        );
        Ok(id)
    }

    /// Whether another cursor may be opened now. Checked before a write query runs,
    /// so that one is never refused after its writes committed.
    fn ensure_room(&self) -> Result<(), wire::Error> {
        Self::room(&mut self.lock())
    }

    fn take(&self, id: &str) -> Option<Arc<Mutex<CursorKind>>> {
        let mut map = self.lock();
        Self::expire(&mut map);
        let e = map.get_mut(id)?;
        e.last_used = Instant::now();
        if let Some(tx) = e.tx.as_ref().and_then(Weak::upgrade) {
            tx.touch();
        }
        Some(e.kind.clone())
    }

    fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }
}

fn query_error(e: QueryError) -> wire::Error {
    let code = match e.kind {
        ErrorKind::Conflict | ErrorKind::Contended => ErrorCode::ErrConflict,
        ErrorKind::NotFound => ErrorCode::ErrNotFound,
        ErrorKind::Transaction => ErrorCode::ErrTransaction,
        ErrorKind::Internal => {
            tracing::error!(error = %e, "storage failure inside a query");
            ErrorCode::ErrInternal
        }
        _ => ErrorCode::ErrQuery,
    };
    let mut err = wire::Error::new(code, e.to_string());
    err.retryable = e.kind == ErrorKind::Contended;
    err
}

fn stats(s: &Stats, plan: String) -> QueryStats {
    QueryStats {
        execution_time_us: s.execution_time_us,
        documents_scanned: s.documents_scanned,
        index_lookups: s.index_lookups,
        writes_executed: s.writes_executed,
        rows_returned: s.rows_returned,
        plan,
    }
}

fn batch_size(requested: i32) -> usize {
    if requested <= 0 {
        DEFAULT_BATCH
    } else {
        (requested as usize).min(MAX_BATCH)
    }
}

/// Encodes up to `n` results, stopping early at half the frame limit so one batch
/// always fits in a frame. A single result that cannot fit in a frame at all is an
/// error that says so.
fn encode_batch(
    values: impl Iterator<Item = Result<Value, QueryError>>,
    n: usize,
    frame_limit: usize,
) -> Result<Vec<Bytes>, QueryError> {
    let byte_budget = frame_limit / 2;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for v in values.take(n) {
        let json = serde_json::to_vec(&v?)
            .map_err(|e| QueryError::runtime(format!("cannot encode a result: {e}")))?;
        if json.len() + 1024 > frame_limit {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "a result of {} bytes does not fit in one frame (max_frame_bytes {frame_limit}): return fewer or smaller attributes",
                    json.len()
                ),
            ));
        }
        bytes += json.len() + 8;
        out.push(Bytes::from(json));
        if bytes >= byte_budget {
            break;
        }
    }
    Ok(out)
}

/// Pulls the next batch from a cursor (blocking: call on the query pool).
fn next_batch(
    kind: &mut CursorKind,
    n: usize,
    budget: usize,
) -> Result<(Vec<Bytes>, bool, Stats), QueryError> {
    match kind {
        CursorKind::Read(c) => {
            let started = Instant::now();
            let c: &mut ReadCursor = c;
            let batch = encode_batch(std::iter::from_fn(|| c.next_value().transpose()), n, budget)?;
            let more = c.has_more()?;
            let mut st = c.stats();
            st.execution_time_us = started.elapsed().as_micros() as u64;
            Ok((batch, more, st))
        }
        CursorKind::Materialised(it, st) => {
            let started = Instant::now();
            let batch = encode_batch(it.by_ref().map(Ok), n, budget)?;
            let mut st = st.clone();
            st.execution_time_us = started.elapsed().as_micros() as u64;
            Ok((batch, it.len() > 0, st))
        }
    }
}

fn options(shared: &Shared) -> QueryOptions {
    QueryOptions {
        auto_create_collections: shared.config.server.auto_create_collections,
        memory_limit_bytes: usize::try_from(shared.config.query.memory_limit).unwrap_or(usize::MAX),
        max_runtime: Some(shared.config.query.max_runtime),
        ..QueryOptions::default()
    }
}

pub(crate) async fn query(
    shared: &Shared,
    session: &Session,
    conn: &super::ConnState,
    req: QueryRequest,
) -> QueryResponse {
    let cursors = &conn.cursors;
    let mut bind_vars = BTreeMap::new();
    for (name, raw) in &req.bind_vars {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => {
                bind_vars.insert(name.clone(), v);
            }
            Err(e) => {
                return invalid(format!(
                    "bind parameter '{name}' is not valid JSON: {e}; every bind_vars value is a JSON document"
                ))
            }
        }
    }
    let prepared = match Prepared::new(&req.aql_query, bind_vars) {
        Ok(p) => p,
        Err(e) => return fail(query_error(e)),
    };
    let tx = if req.transaction_id.is_empty() {
        None
    } else {
        let access = if prepared.is_write() {
            Access::Write
        } else {
            Access::Read
        };
        match conn
            .transactions
            .find(&req.transaction_id, &req.database, access)
        {
            Ok(handle) => Some(handle),
            Err(e) => return fail(e),
        }
    };
    let db = match &tx {
        Some(handle) => handle.database().to_string(),
        None => database_of(&req.database, session).to_string(),
    };
    if prepared.is_write() {
        if let Err(e) = super::authorize(shared, session, conn, &db, Permission::Write) {
            return fail(e);
        }
    }
    let store = shared.store.clone();
    let opts = QueryOptions {
        cancel: Some(conn.cancel.clone()),
        user: Some(session.username.clone()),
        ..options(shared)
    };
    let n = batch_size(req.batch_size);
    let budget = shared.codec.max_frame_bytes() as usize;

    if req.explain {
        let explained = shared
            .queries
            .run(move || exec::explain(&store, &db, &prepared))
            .await;
        return match explained {
            Ok(Ok(plan)) => QueryResponse {
                success: true,
                stats: Some(stats(&Stats::default(), plan)),
                ..Default::default()
            },
            Ok(Err(e)) => fail(query_error(e)),
            Err(e) => fail(job_error(e)),
        };
    }

    let started = Instant::now();
    if prepared.is_write() {
        if let Err(e) = cursors.ensure_room() {
            return fail(e);
        }
    }
    let mut kind = match (&tx, prepared.is_write()) {
        (None, true) => {
            let ran = shared
                .writers
                .run(move || exec::run_write(&store, &db, &prepared, &opts))
                .await;
            let (results, st, pending) = match ran {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => return fail(query_error(e)),
                Err(e) => return fail(job_error(e)),
            };
            if let Err(e) = pending.wait().await {
                return fail(storage_error(e));
            }
            CursorKind::Materialised(results.into_iter(), st)
        }
        (None, false) => {
            let started_cursor = shared
                .queries
                .run(move || exec::run_read(&store, &db, &prepared, &opts))
                .await;
            match started_cursor {
                Ok(Ok(c)) => CursorKind::Read(Box::new(c)),
                Ok(Err(e)) => return fail(query_error(e)),
                Err(e) => return fail(job_error(e)),
            }
        }
        // One statement of the transaction: its writes stay in the transaction, so
        // there is nothing to wait for here.
        (Some(handle), true) => {
            let ran = conn
                .transactions
                .run(handle, &shared.queries, move |t| {
                    exec::run_write_in(t, &prepared, &opts)
                })
                .await;
            match ran {
                Ok(Ok((results, st))) => CursorKind::Materialised(results.into_iter(), st),
                Ok(Err(e)) => return fail(query_error(e)),
                Err(e) => return fail(e),
            }
        }
        (Some(handle), false) => {
            let ran = conn
                .transactions
                .run(handle, &shared.queries, move |t| {
                    let view = t.view().map_err(storage_error)?;
                    exec::run_read_in(view, t.database(), &prepared, &opts).map_err(query_error)
                })
                .await;
            match ran {
                Ok(Ok(c)) => CursorKind::Read(Box::new(c)),
                Ok(Err(e)) | Err(e) => return fail(e),
            }
        }
    };
    let first = shared
        .queries
        .run(move || {
            let r = next_batch(&mut kind, n, budget);
            (kind, r)
        })
        .await;
    let (kind, result) = match first {
        Ok(x) => x,
        Err(e) => return fail(job_error(e)),
    };
    let (results, more, mut st) = match result {
        Ok(x) => x,
        Err(e) => return fail(query_error(e)),
    };
    st.execution_time_us = started.elapsed().as_micros() as u64;
    let cursor_id = if more {
        let wrote = matches!(kind, CursorKind::Materialised(..));
        match cursors.park(kind, tx.as_ref()) {
            Ok(id) => id,
            Err(mut e) => {
                if wrote {
                    // Another request on this connection took the last slot after the
                    // check above: the writes stand, only the results are lost.
                    e.message.push_str(if tx.is_some() {
                        "; this query's writes WERE made in the transaction (they commit with it), but its results beyond the first batch could not be kept"
                    } else {
                        "; this query's writes WERE committed, but its results beyond the first batch could not be kept"
                    });
                }
                return fail(e);
            }
        }
    } else {
        String::new()
    };
    QueryResponse {
        success: true,
        results,
        has_more: more,
        cursor_id,
        stats: Some(stats(&st, String::new())),
        ..Default::default()
    }
}

pub(crate) async fn cursor_next(
    shared: &Shared,
    cursors: &Cursors,
    req: CursorNextRequest,
) -> QueryResponse {
    let Some(cursor) = cursors.take(&req.cursor_id) else {
        return fail(wire::Error::new(
            ErrorCode::ErrCursorNotFound,
            format!(
                "cursor '{}' not found: it was read to the end, closed, idle for more than {}s, belongs to another connection, or its transaction ended; run the query again",
                req.cursor_id,
                CURSOR_TTL.as_secs()
            ),
        ));
    };
    let n = batch_size(req.batch_size);
    let budget = shared.codec.max_frame_bytes() as usize;
    let ran = shared
        .queries
        .run(move || {
            let mut kind = cursor.lock().unwrap_or_else(|p| p.into_inner());
            next_batch(&mut kind, n, budget)
        })
        .await;
    let (results, more, st) = match ran {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            cursors.remove(&req.cursor_id);
            return fail(query_error(e));
        }
        Err(e) => return fail(job_error(e)),
    };
    if !more {
        cursors.remove(&req.cursor_id);
    }
    QueryResponse {
        success: true,
        results,
        has_more: more,
        cursor_id: if more { req.cursor_id } else { String::new() },
        stats: Some(stats(&st, String::new())),
        ..Default::default()
    }
}

pub(crate) fn cursor_close(cursors: &Cursors, req: CursorCloseRequest) -> CursorCloseResponse {
    if cursors.remove(&req.cursor_id) {
        CursorCloseResponse {
            success: true,
            ..Default::default()
        }
    } else {
        fail(wire::Error::new(
            ErrorCode::ErrCursorNotFound,
            format!(
                "cursor '{}' not found (already exhausted, closed or expired)",
                req.cursor_id
            ),
        ))
    }
}
