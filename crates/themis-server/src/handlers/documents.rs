//! OP_CREATE, OP_READ, OP_UPDATE, OP_DELETE.
//!
//! Validation of names, keys and JSON is storage's (one rule, one place); these
//! handlers shape requests and responses. Every write is answered only after storage
//! reports it durable.
//!
//! A request with a `transaction_id` runs inside that transaction instead (see
//! `transactions`): its writes are answered once they are in the transaction, and
//! become visible and durable with its commit.
//!
//! A write with a `request_key` is idempotent per user: its encoded response is
//! stored with it in the same storage transaction, and a request with the same key
//! gets that response back without running (see `crate::request_keys` and
//! `DocWrite::keyed`). Inside a transaction the key belongs on COMMIT_TX.

use bytes::Bytes;
use prost::Message;
use themis_proto::wire;
use themis_proto::wire::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ReadRequest, ReadResponse,
    UpdateMode, UpdateRequest, UpdateResponse,
};
use themis_proto::{ErrorCode, ErrorExt, TypedResponse};
use themis_storage::{
    DeleteOutcome, DocMeta, DocWrite, DocumentStore, RequestKey, StorageError, Transaction,
    UpdateMode as StoreMode,
};

use super::transactions::Access;
use super::{database_of, fail, invalid, job_error, storage_error, submit, ConnState};
use crate::request_keys::request_key;
use crate::session::Session;
use crate::Shared;

/// The request key of a write outside a transaction (`None` when the request has
/// none). A key on a request inside a transaction is refused: the transaction's
/// writes apply at COMMIT_TX, so that is where the key goes.
fn key_of(
    shared: &Shared,
    session: &Session,
    key: &str,
    transaction_id: &str,
) -> Result<Option<RequestKey>, wire::Error> {
    if !key.is_empty() && !transaction_id.is_empty() {
        return Err(wire::Error::new(
            ErrorCode::ErrInvalidArgument,
            "a request_key cannot go on a request inside a transaction: its writes apply \
             when the transaction commits, so put the request_key on COMMIT_TX",
        ));
    }
    request_key(
        &session.username,
        key,
        shared.config.server.request_key_window,
    )
}

/// Request bodies up to this size are parsed on the runtime; larger ones on the
/// writer pool, so that a multi-megabyte bulk insert does not hold a runtime worker
/// (and every connection it serves) while its JSON is parsed.
const PREPARE_INLINE_BYTES: usize = 64 * 1024;

/// Prepares a document write (names checked, JSON parsed) from a body of `bytes`.
async fn prepare<T: Send + 'static>(
    shared: &Shared,
    bytes: usize,
    f: impl FnOnce(&DocumentStore) -> Result<DocWrite<T>, StorageError> + Send + 'static,
) -> Result<DocWrite<T>, wire::Error> {
    if bytes <= PREPARE_INLINE_BYTES {
        return f(&shared.store).map_err(storage_error);
    }
    let store = shared.store.clone();
    let prepared = shared.writers.run(move || f(&store)).await;
    prepared.map_err(job_error)?.map_err(storage_error)
}

/// Runs a keyed write (see the module doc): waits for the key's gate, commits `w`
/// made idempotent by `rk` on storage's batch writer (the gate is released when the
/// commit returns), awaits durability, and decodes the response bytes, fresh or
/// stored, into the typed response.
async fn keyed_write<T: Send + 'static, R: Message + Default + TypedResponse>(
    shared: &Shared,
    rk: RequestKey,
    w: DocWrite<T>,
    encode: impl Fn(&T) -> Bytes + Send + 'static,
) -> R {
    let gate = shared.request_keys.enter(&rk).await;
    let committed = shared.store.submit(w.keyed(rk, encode)).await;
    drop(gate);
    let stored = match committed {
        Ok(pending) => pending.wait().await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(bytes) => decode_stored(&bytes),
        Err(e) => fail(storage_error(e)),
    }
}

/// A stored response, decoded; a record that does not decode is an internal error.
pub(crate) fn decode_stored<R: Message + Default + TypedResponse>(bytes: &[u8]) -> R {
    R::decode(bytes).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a stored request key response does not decode");
        fail(wire::Error::new(
            ErrorCode::ErrInternal,
            format!(
                "the stored answer of this request_key is corrupt ({e}); send the write \
                 again with a new request_key after checking whether it was applied"
            ),
        ))
    })
}

fn create_response(bulk: bool, metas: &[DocMeta]) -> CreateResponse {
    if bulk {
        return CreateResponse {
            success: true,
            document_ids: metas.iter().map(|m| m.key.clone()).collect(),
            ..Default::default()
        };
    }
    match metas.last() {
        Some(meta) => CreateResponse {
            success: true,
            document_id: meta.key.clone(),
            revision: meta.rev.clone(),
            ..Default::default()
        },
        None => invalid("no document was stored"),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Runs one statement in transaction `id` (on the query pool: it only buffers its
/// writes in the transaction).
async fn in_transaction<T: Send + 'static>(
    shared: &Shared,
    conn: &ConnState,
    id: &str,
    database: &str,
    access: Access,
    f: impl FnOnce(&mut Transaction) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, wire::Error> {
    let handle = conn.transactions.find(id, database, access)?;
    conn.transactions
        .run(&handle, &shared.queries, f)
        .await?
        .map_err(storage_error)
}

pub(crate) async fn create(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    req: CreateRequest,
) -> CreateResponse {
    let bulk = !req.documents.is_empty();
    let docs: Vec<Bytes> = match (req.document.is_empty(), bulk) {
        (false, true) => {
            return invalid("CreateRequest has both document and documents: send one document, or a bulk in documents")
        }
        (true, false) => return invalid("CreateRequest has no document: set document (a JSON object) or documents (bulk)"),
        (false, false) => vec![req.document],
        (true, true) => req.documents,
    };
    let auto_create = shared.config.server.auto_create_collections;
    let coll = req.collection;
    let rk = match key_of(shared, session, &req.request_key, &req.transaction_id) {
        Ok(rk) => rk,
        Err(e) => return fail(e),
    };
    let stored = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session).to_string();
        let bytes = docs.iter().map(Bytes::len).sum();
        let insert = move |s: &DocumentStore| s.insert_write(&db, &coll, docs, auto_create);
        let w = match prepare(shared, bytes, insert).await {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        if let Some(rk) = rk {
            let encode =
                move |metas: &Vec<DocMeta>| create_response(bulk, metas).encode_to_vec().into();
            return keyed_write(shared, rk, w, encode).await;
        }
        submit(shared, w).await.map_err(storage_error)
    } else {
        let insert = move |tx: &mut Transaction| tx.insert(&coll, docs, auto_create);
        in_transaction(
            shared,
            conn,
            &req.transaction_id,
            &req.database,
            Access::Write,
            insert,
        )
        .await
    };
    match stored {
        Ok(metas) => create_response(bulk, &metas),
        Err(e) => fail(e),
    }
}

pub(crate) async fn read(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    req: ReadRequest,
) -> ReadResponse {
    let found = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session);
        shared
            .store
            .get(db, &req.collection, &req.document_ids)
            .map_err(storage_error)
    } else {
        let coll = req.collection.clone();
        let keys = req.document_ids.clone();
        let get = move |tx: &mut Transaction| tx.get(&coll, &keys);
        in_transaction(
            shared,
            conn,
            &req.transaction_id,
            &req.database,
            Access::Read,
            get,
        )
        .await
    };
    match found {
        Ok(found) => {
            let mut not_found = Vec::new();
            let documents = found
                .into_iter()
                .zip(&req.document_ids)
                .map(|(doc, id)| {
                    doc.unwrap_or_else(|| {
                        not_found.push(id.clone());
                        Bytes::new()
                    })
                })
                .collect();
            ReadResponse {
                success: true,
                documents,
                not_found,
                ..Default::default()
            }
        }
        Err(e) => fail(e),
    }
}

pub(crate) async fn update(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    mut req: UpdateRequest,
) -> UpdateResponse {
    let mode = match UpdateMode::try_from(req.mode) {
        Ok(UpdateMode::Merge) => StoreMode::Merge,
        Ok(UpdateMode::Replace) => StoreMode::Replace,
        Err(_) => {
            return invalid(format!(
                "unknown update mode {}: use MERGE (0) or REPLACE (1)",
                req.mode
            ))
        }
    };
    if req.document.is_empty() {
        return invalid("UpdateRequest has no document: set document to a JSON object");
    }
    let rk = match key_of(shared, session, &req.request_key, &req.transaction_id) {
        Ok(rk) => rk,
        Err(e) => return fail(e),
    };
    let updated = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session).to_string();
        let bytes = req.document.len();
        let update = move |s: &DocumentStore| {
            let if_revision = non_empty(&req.if_revision);
            let (coll, key) = (&req.collection, &req.document_id);
            s.update_write(&db, coll, key, req.document, mode, if_revision)
        };
        let w = match prepare(shared, bytes, update).await {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        if let Some(rk) = rk {
            let encode = |meta: &DocMeta| update_response(meta).encode_to_vec().into();
            return keyed_write(shared, rk, w, encode).await;
        }
        submit(shared, w).await.map_err(storage_error)
    } else {
        let id = std::mem::take(&mut req.transaction_id);
        let db = std::mem::take(&mut req.database);
        let update = move |tx: &mut Transaction| {
            let if_revision = non_empty(&req.if_revision);
            tx.update(
                &req.collection,
                &req.document_id,
                req.document,
                mode,
                if_revision,
            )
        };
        in_transaction(shared, conn, &id, &db, Access::Write, update).await
    };
    match updated {
        Ok(meta) => update_response(&meta),
        Err(e) => fail(e),
    }
}

fn update_response(meta: &DocMeta) -> UpdateResponse {
    UpdateResponse {
        success: true,
        document_id: meta.key.clone(),
        revision: meta.rev.clone(),
        ..Default::default()
    }
}

pub(crate) async fn delete(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    mut req: DeleteRequest,
) -> DeleteResponse {
    let rk = match key_of(shared, session, &req.request_key, &req.transaction_id) {
        Ok(rk) => rk,
        Err(e) => return fail(e),
    };
    let deleted = if req.transaction_id.is_empty() {
        let w = shared.store.delete_write(
            database_of(&req.database, session),
            &req.collection,
            std::mem::take(&mut req.document_ids),
            non_empty(&req.if_revision),
        );
        let w = match w {
            Ok(w) => w,
            Err(e) => return fail(storage_error(e)),
        };
        if let Some(rk) = rk {
            let encode = |outcome: &DeleteOutcome| delete_response(outcome).encode_to_vec().into();
            return keyed_write(shared, rk, w, encode).await;
        }
        submit(shared, w).await.map_err(storage_error)
    } else {
        let id = std::mem::take(&mut req.transaction_id);
        let db = std::mem::take(&mut req.database);
        let delete = move |tx: &mut Transaction| {
            tx.delete(
                &req.collection,
                &req.document_ids,
                non_empty(&req.if_revision),
            )
        };
        in_transaction(shared, conn, &id, &db, Access::Write, delete).await
    };
    match deleted {
        Ok(outcome) => delete_response(&outcome),
        Err(e) => fail(e),
    }
}

fn delete_response(outcome: &DeleteOutcome) -> DeleteResponse {
    DeleteResponse {
        success: true,
        deleted_count: outcome.deleted,
        not_found: outcome.not_found.clone(),
        ..Default::default()
    }
}
