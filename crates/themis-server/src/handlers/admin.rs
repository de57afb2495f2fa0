//! OP_ADMIN: databases and collections (list / create / drop / stats).
//!
//! Results are JSON in `AdminResponse.result`: arrays of names for list_databases, of
//! collection objects for list_collections, an object otherwise. Index actions are
//! part of the wire schema but arrive with the query engine.

use serde::Serialize;
use themis_proto::wire::admin_request::Action;
use themis_proto::wire::{AdminRequest, AdminResponse};

use super::{database, fail, invalid, storage_error, write};
use crate::session::Session;
use crate::Shared;

fn ok<T: Serialize>(value: &T) -> AdminResponse {
    match serde_json::to_vec(value) {
        Ok(json) => AdminResponse {
            success: true,
            result: json.into(),
            ..Default::default()
        },
        Err(e) => invalid(format!("cannot encode result: {e}")),
    }
}

pub(crate) async fn handle(shared: &Shared, session: &Session, req: AdminRequest) -> AdminResponse {
    let store = &shared.store;
    let db = database(&req.database, session).to_string();
    let Some(action) = req.action else {
        return invalid("AdminRequest has no action: set one of list_databases, create_database, drop_database, list_collections, create_collection, drop_collection, collection_stats");
    };
    let result = match action {
        Action::ListDatabases(_) => store.list_databases().map(|d| ok(&d)),
        Action::CreateDatabase(a) => {
            let name = a.name.clone();
            write(shared, move |s| s.create_database(&name))
                .await
                .map(|()| ok(&serde_json::json!({ "name": a.name })))
        }
        Action::DropDatabase(a) => {
            if a.name == session.database {
                return invalid(format!(
                    "cannot drop database '{}' while this connection uses it as its default: connect to another database first",
                    a.name
                ));
            }
            let name = a.name.clone();
            write(shared, move |s| s.drop_database(&name))
                .await
                .map(|()| ok(&serde_json::json!({ "dropped": a.name })))
        }
        Action::ListCollections(_) => store.list_collections(&db).map(|c| ok(&c)),
        Action::CreateCollection(a) => write(shared, move |s| s.create_collection(&db, &a.name))
            .await
            .map(|c| ok(&c)),
        Action::DropCollection(a) => {
            let name = a.name.clone();
            write(shared, move |s| s.drop_collection(&db, &name))
                .await
                .map(|()| ok(&serde_json::json!({ "dropped": a.name })))
        }
        Action::CollectionStats(a) => store.collection_stats(&db, &a.name).map(|s| ok(&s)),
        Action::CreateIndex(_) | Action::DropIndex(_) | Action::ListIndexes(_) => {
            return invalid("index management is not available in this server version yet")
        }
    };
    result.unwrap_or_else(|e| fail(storage_error(e)))
}
