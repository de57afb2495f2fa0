//! OP_ADMIN: databases, collections and secondary indexes (list / create / drop /
//! stats).
//!
//! Results are JSON in `AdminResponse.result`: arrays of names for list_databases, of
//! collection objects for list_collections, of index objects for list_indexes (the
//! implicit primary index first), an object otherwise. Index objects carry a `type`:
//! `"primary"` for the `_key` index, `"persistent"` for the secondary ones.

use serde::Serialize;
use serde_json::{json, Value};
use themis_proto::wire::admin_request::Action;
use themis_proto::wire::{AdminRequest, AdminResponse};
use themis_storage::{IndexInfo, PRIMARY_INDEX_NAME};

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

/// The JSON of a secondary index: its stored definition plus `"type": "persistent"`.
fn index_json(info: &IndexInfo) -> Value {
    let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("type".to_string(), json!("persistent"));
    }
    v
}

/// The listing of a collection's indexes: the implicit primary index, then the
/// secondary ones in creation order.
fn index_list(indexes: &[IndexInfo]) -> Vec<Value> {
    let primary = json!({
        "name": PRIMARY_INDEX_NAME,
        "fields": ["_key"],
        "unique": true,
        "sparse": false,
        "type": "primary",
    });
    std::iter::once(primary)
        .chain(indexes.iter().map(index_json))
        .collect()
}

pub(crate) async fn handle(shared: &Shared, session: &Session, req: AdminRequest) -> AdminResponse {
    let store = &shared.store;
    let db = database(&req.database, session).to_string();
    let Some(action) = req.action else {
        return invalid("AdminRequest has no action: set one of list_databases, create_database, drop_database, list_collections, create_collection, drop_collection, collection_stats, create_index, drop_index, list_indexes");
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
        Action::CreateIndex(a) => write(shared, move |s| {
            s.create_index(&db, &a.collection, &a.name, a.fields, a.unique, a.sparse)
        })
        .await
        .map(|info| ok(&index_json(&info))),
        Action::DropIndex(a) => {
            let name = a.name.clone();
            write(shared, move |s| s.drop_index(&db, &a.collection, &name))
                .await
                .map(|()| ok(&json!({ "dropped": a.name })))
        }
        Action::ListIndexes(a) => store
            .list_indexes(&db, &a.collection)
            .map(|list| ok(&index_list(&list))),
    };
    result.unwrap_or_else(|e| fail(storage_error(e)))
}
