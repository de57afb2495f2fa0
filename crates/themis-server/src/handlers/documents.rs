//! OP_CREATE, OP_READ, OP_UPDATE, OP_DELETE.
//!
//! Validation of names, keys and JSON is storage's (one rule, one place); these
//! handlers shape requests and responses. Every write is answered only after storage
//! reports it durable.
//!
//! A request with a `transaction_id` runs inside that transaction instead (see
//! `transactions`): its writes are answered once they are in the transaction, and
//! become visible and durable with its commit.

use bytes::Bytes;
use themis_proto::wire;
use themis_proto::wire::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ReadRequest, ReadResponse,
    UpdateMode, UpdateRequest, UpdateResponse,
};
use themis_storage::{DocumentStore, StorageError, Transaction, UpdateMode as StoreMode};

use super::transactions::Access;
use super::{database_of, fail, invalid, storage_error, write, ConnState};
use crate::session::Session;
use crate::Shared;

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
    let stored = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session).to_string();
        write(shared, move |s| s.insert(&db, &coll, docs, auto_create))
            .await
            .map_err(storage_error)
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
        Ok(metas) if bulk => CreateResponse {
            success: true,
            document_ids: metas.into_iter().map(|m| m.key).collect(),
            ..Default::default()
        },
        Ok(mut metas) => match metas.pop() {
            Some(meta) => CreateResponse {
                success: true,
                document_id: meta.key,
                revision: meta.rev,
                ..Default::default()
            },
            None => invalid("no document was stored"),
        },
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
    let updated = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session).to_string();
        let update = move |s: &DocumentStore| {
            let if_revision = non_empty(&req.if_revision);
            s.update(
                &db,
                &req.collection,
                &req.document_id,
                req.document,
                mode,
                if_revision,
            )
        };
        write(shared, update).await.map_err(storage_error)
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
        Ok(meta) => UpdateResponse {
            success: true,
            document_id: meta.key,
            revision: meta.rev,
            ..Default::default()
        },
        Err(e) => fail(e),
    }
}

pub(crate) async fn delete(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    mut req: DeleteRequest,
) -> DeleteResponse {
    let deleted = if req.transaction_id.is_empty() {
        let db = database_of(&req.database, session).to_string();
        let delete = move |s: &DocumentStore| {
            s.delete(
                &db,
                &req.collection,
                &req.document_ids,
                non_empty(&req.if_revision),
            )
        };
        write(shared, delete).await.map_err(storage_error)
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
        Ok(outcome) => DeleteResponse {
            success: true,
            deleted_count: outcome.deleted,
            not_found: outcome.not_found,
            ..Default::default()
        },
        Err(e) => fail(e),
    }
}
