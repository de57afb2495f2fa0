//! OP_CREATE, OP_READ, OP_UPDATE, OP_DELETE.
//!
//! Validation of names, keys and JSON is storage's (one rule, one place); these
//! handlers shape requests and responses. Every write is answered only after storage
//! reports it durable.

use bytes::Bytes;
use themis_proto::wire::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ReadRequest, ReadResponse,
    UpdateMode, UpdateRequest, UpdateResponse,
};
use themis_storage::{DocumentStore, UpdateMode as StoreMode};

use super::{database, fail, invalid, reject_transaction, storage_error, write};
use crate::session::Session;
use crate::Shared;

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

pub(crate) async fn create(
    shared: &Shared,
    session: &Session,
    req: CreateRequest,
) -> CreateResponse {
    if let Some(r) = reject_transaction(&req.transaction_id) {
        return r;
    }
    let bulk = !req.documents.is_empty();
    let docs: Vec<Bytes> = match (req.document.is_empty(), bulk) {
        (false, true) => {
            return invalid("CreateRequest has both document and documents: send one document, or a bulk in documents")
        }
        (true, false) => return invalid("CreateRequest has no document: set document (a JSON object) or documents (bulk)"),
        (false, false) => vec![req.document],
        (true, true) => req.documents,
    };
    let db = database(&req.database, session).to_string();
    let auto_create = shared.config.server.auto_create_collections;
    let coll = req.collection;
    match write(shared, move |s| s.insert(&db, &coll, docs, auto_create)).await {
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
        Err(e) => fail(storage_error(e)),
    }
}

pub(crate) fn read(shared: &Shared, session: &Session, req: ReadRequest) -> ReadResponse {
    if let Some(r) = reject_transaction(&req.transaction_id) {
        return r;
    }
    let db = database(&req.database, session);
    match shared.store.get(db, &req.collection, &req.document_ids) {
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
        Err(e) => fail(storage_error(e)),
    }
}

pub(crate) async fn update(
    shared: &Shared,
    session: &Session,
    req: UpdateRequest,
) -> UpdateResponse {
    if let Some(r) = reject_transaction(&req.transaction_id) {
        return r;
    }
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
    let db = database(&req.database, session).to_string();
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
    match write(shared, update).await {
        Ok(meta) => UpdateResponse {
            success: true,
            document_id: meta.key,
            revision: meta.rev,
            ..Default::default()
        },
        Err(e) => fail(storage_error(e)),
    }
}

pub(crate) async fn delete(
    shared: &Shared,
    session: &Session,
    req: DeleteRequest,
) -> DeleteResponse {
    if let Some(r) = reject_transaction(&req.transaction_id) {
        return r;
    }
    let db = database(&req.database, session).to_string();
    let delete = move |s: &DocumentStore| {
        s.delete(
            &db,
            &req.collection,
            &req.document_ids,
            non_empty(&req.if_revision),
        )
    };
    match write(shared, delete).await {
        Ok(outcome) => DeleteResponse {
            success: true,
            deleted_count: outcome.deleted,
            not_found: outcome.not_found,
            ..Default::default()
        },
        Err(e) => fail(storage_error(e)),
    }
}
