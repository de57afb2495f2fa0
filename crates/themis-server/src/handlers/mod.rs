//! Opcode handlers: one module per family, each turning a typed request into its typed
//! response.
//!
//! The contract's error rule lives here: a request that reached its handler and failed
//! is answered with its own typed response (`success = false`, `error_message`,
//! `error` in field 15); every opcode the contract defines has a handler, so
//! [`dispatch`] never produces `OP_ERROR` (the connection layer does, for frames it
//! cannot tie to a handler).

pub mod admin;
pub mod documents;
pub mod handshake;
pub mod query;
pub mod subscriptions;
pub mod transactions;

use bytes::Bytes;
use themis_proto::wire::{self, ErrorCode, OpCode};
use themis_proto::{ErrorExt, Request, TypedResponse};
use themis_storage::{DocWrite, DocumentStore, Pending, StorageError};

use crate::audit::AuditEvent;
use crate::auth::Permission;
use crate::connection::response_frame;
use crate::pools::JobError;
use crate::session::{now_ms, Session};
use crate::Shared;

/// What a connection's requests share beyond the session: its open cursors, and the
/// flag that stops its running queries when it closes.
#[derive(Default)]
pub(crate) struct ConnState {
    pub cursors: query::Cursors,
    /// Its open transactions; dropping them (with this state, once the connection
    /// has closed) rolls them back.
    pub transactions: std::sync::Arc<transactions::Transactions>,
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Its subscriptions; they end when the connection closes.
    pub subscriptions: subscriptions::Subscriptions,
    /// The client's address, for the audit log.
    pub peer: Option<std::net::SocketAddr>,
}

/// Runs `$handler` when `$check` (a permission check) passes; otherwise the typed
/// failure response with its error.
macro_rules! checked {
    ($check:expr, $handler:expr) => {
        match $check {
            Ok(()) => $handler,
            Err(e) => fail(e),
        }
    };
}

/// Runs an authenticated request and returns its encoded response frame.
///
/// Every opcode that touches a database is checked against the session's roles here
/// ([`authorize`]), before its handler runs; QUERY is checked again by its handler
/// once the query is parsed (a writing query needs write permission), and ADMIN per
/// action (see `admin`). CURSOR_NEXT/CLOSE, COMMIT, ROLLBACK and UNSUBSCRIBE act
/// only on what this connection opened after such a check.
pub(crate) async fn dispatch(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    request_id: u64,
    request: Request,
) -> Bytes {
    let codec = &shared.codec;
    let op = request.opcode();
    let check = |database: &str, permission| authorize(shared, session, conn, database, permission);
    let tx_db = |database: &str, tx: &str| -> String {
        conn.transactions
            .database_of(tx)
            .unwrap_or_else(|| database_of(database, session).to_string())
    };
    match request {
        Request::Create(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(&tx_db(&r.database, &r.transaction_id), Permission::Write),
                documents::create(shared, session, conn, r).await
            ),
        ),
        Request::Read(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(&tx_db(&r.database, &r.transaction_id), Permission::Read),
                documents::read(shared, session, conn, r).await
            ),
        ),
        Request::Update(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(&tx_db(&r.database, &r.transaction_id), Permission::Write),
                documents::update(shared, session, conn, r).await
            ),
        ),
        Request::Delete(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(&tx_db(&r.database, &r.transaction_id), Permission::Write),
                documents::delete(shared, session, conn, r).await
            ),
        ),
        Request::Admin(r) => response_frame(
            codec,
            op,
            request_id,
            &admin::handle(shared, session, conn, r).await,
        ),
        Request::Ping(p) => response_frame(codec, OpCode::OpPong, request_id, &ping(&p)),
        // At least read permission to start; the handler asks for write once it knows
        // the query writes.
        Request::Query(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(&tx_db(&r.database, &r.transaction_id), Permission::Read),
                query::query(shared, session, conn, r).await
            ),
        ),
        Request::CursorNext(r) => response_frame(
            codec,
            op,
            request_id,
            &query::cursor_next(shared, &conn.cursors, r).await,
        ),
        Request::CursorClose(r) => response_frame(
            codec,
            op,
            request_id,
            &query::cursor_close(&conn.cursors, r),
        ),
        // Transactions.
        // Reading needs read permission; each write in the transaction is checked as
        // it comes, against the transaction's database.
        Request::BeginTx(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(database_of(&r.database, session), Permission::Read),
                transactions::begin(shared, session, conn, r).await
            ),
        ),
        Request::CommitTx(r) => response_frame(
            codec,
            op,
            request_id,
            &transactions::commit(shared, session, conn, r).await,
        ),
        Request::RollbackTx(r) => response_frame(
            codec,
            op,
            request_id,
            &transactions::rollback(conn, r).await,
        ),
        // Subscriptions.
        Request::Subscribe(r) => response_frame(
            codec,
            op,
            request_id,
            &checked!(
                check(database_of(&r.database, session), Permission::Read),
                subscriptions::subscribe(shared, session, &conn.subscriptions, request_id, r)
            ),
        ),
        Request::Unsubscribe(r) => response_frame(
            codec,
            op,
            request_id,
            &subscriptions::unsubscribe(&conn.subscriptions, r).await,
        ),
        // The connection answers a second HANDSHAKE itself; this is the same answer.
        Request::Handshake(_) => {
            response_frame(codec, op, request_id, &handshake::already_authenticated())
        }
    }
}

pub(crate) fn ping(ping: &wire::Ping) -> wire::Pong {
    wire::Pong {
        timestamp_ms: ping.timestamp_ms,
        server_time_ms: now_ms(),
    }
}

/// A fresh unguessable id (128 random bits, hex) for a cursor, transaction or
/// subscription.
pub(crate) fn random_id() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// The `session_token` field of any request.
pub(crate) fn session_token(request: &Request) -> &str {
    match request {
        Request::Handshake(r) => &r.session_token,
        Request::Create(r) => &r.session_token,
        Request::Read(r) => &r.session_token,
        Request::Update(r) => &r.session_token,
        Request::Delete(r) => &r.session_token,
        Request::Query(r) => &r.session_token,
        Request::BeginTx(r) => &r.session_token,
        Request::CommitTx(r) => &r.session_token,
        Request::RollbackTx(r) => &r.session_token,
        Request::Subscribe(r) => &r.session_token,
        Request::Unsubscribe(r) => &r.session_token,
        Request::Ping(_) => "",
        Request::CursorNext(r) => &r.session_token,
        Request::CursorClose(r) => &r.session_token,
        Request::Admin(r) => &r.session_token,
    }
}

/// Whether `session` may do what needs `permission` on `database`. A refusal is
/// ERR_PERMISSION_DENIED naming the user, the database and the role it would need,
/// and is written to the audit log.
pub(crate) fn authorize(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    database: &str,
    permission: Permission,
) -> Result<(), wire::Error> {
    let roles = session.roles();
    if roles.allows(database, permission) {
        return Ok(());
    }
    let held = match roles.role_on(database) {
        Some(role) => format!("role {role}"),
        None => "no role".to_string(),
    };
    let needed = match permission {
        Permission::Read => "readonly, readwrite or admin",
        Permission::Write => "readwrite or admin",
        Permission::Admin => "admin",
    };
    denied(
        shared,
        session,
        conn,
        format!(
            "user '{}' has {held} on database '{database}' and this needs {permission} permission ({needed}): ask a superuser or an admin of '{database}' to grant it",
            session.username
        ),
    )
}

/// A refusal: ERR_PERMISSION_DENIED with `message`, recorded in the audit log.
pub(crate) fn denied(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    message: String,
) -> Result<(), wire::Error> {
    audit(shared, session, conn, "permission_denied", message.clone());
    Err(wire::Error::new(ErrorCode::ErrPermissionDenied, message))
}

/// Records a security event done by `session` on `conn` in the audit log.
pub(crate) fn audit(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    kind: &'static str,
    detail: String,
) {
    shared.audit.record(AuditEvent {
        kind,
        peer: conn.peer,
        username: &session.username,
        method: Some(session.method.as_str_name()),
        detail,
    });
}

/// The request's database, or the connection's default when the field is empty.
pub(crate) fn database_of<'a>(requested: &'a str, session: &'a Session) -> &'a str {
    if requested.is_empty() {
        &session.database
    } else {
        requested
    }
}

/// Runs a storage write: the commit on a writer thread (the engine may block it while
/// a sync owns its journal), then the wait for durability back on the runtime. So a
/// sync never stalls the tasks serving other requests.
pub(crate) async fn write<T: Send + 'static>(
    shared: &Shared,
    commit: impl FnOnce(&DocumentStore) -> Result<Pending<T>, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let store = shared.store.clone();
    let pending = shared
        .writers
        .run(move || commit(&store))
        .await
        .map_err(|e| match e {
            JobError::Stopped => StorageError::Unavailable(e.to_string()),
            JobError::Panicked => StorageError::Internal(e.to_string()),
        })??;
    pending.wait().await
}

/// Runs a document write on storage's batch writer, which commits it together with
/// the other document writes that arrived meanwhile (`themis_storage::DocWrite`),
/// then awaits durability.
pub(crate) async fn submit<T: Send + 'static>(
    shared: &Shared,
    w: DocWrite<T>,
) -> Result<T, StorageError> {
    shared.store.submit(w).await?.wait().await
}

/// The error for a job a worker pool could not run to completion.
pub(crate) fn job_error(e: JobError) -> wire::Error {
    match e {
        JobError::Stopped => wire::Error::retryable(ErrorCode::ErrUnavailable, e.to_string(), 1000),
        JobError::Panicked => wire::Error::new(ErrorCode::ErrInternal, e.to_string()),
    }
}

/// Maps a storage error onto the wire error with the same meaning.
pub(crate) fn storage_error(e: StorageError) -> wire::Error {
    let code = match &e {
        StorageError::Contended(m) => {
            return wire::Error::retryable(ErrorCode::ErrConflict, m.clone(), 0)
        }
        StorageError::NotFound(_) => ErrorCode::ErrNotFound,
        StorageError::Conflict(_) => ErrorCode::ErrConflict,
        StorageError::InvalidArgument(_) => ErrorCode::ErrInvalidArgument,
        StorageError::Unavailable(_) => ErrorCode::ErrUnavailable,
        StorageError::Internal(_) => ErrorCode::ErrInternal,
        StorageError::Transaction(_) => ErrorCode::ErrTransaction,
    };
    if code == ErrorCode::ErrInternal {
        tracing::error!(error = %e, "storage failure");
    }
    wire::Error::new(code, e.to_string())
}

/// A typed failure response for `e`.
pub(crate) fn fail<R: TypedResponse>(e: wire::Error) -> R {
    R::failed(e)
}

pub(crate) fn invalid<R: TypedResponse>(message: impl Into<String>) -> R {
    R::failed(wire::Error::new(ErrorCode::ErrInvalidArgument, message))
}
