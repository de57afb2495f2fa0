//! OP_ADMIN: databases, collections and secondary indexes (list / create / drop /
//! stats), and users, roles, API keys and sessions (`users`).
//!
//! Each action is checked first: listing and stats need read permission on the
//! database, changing collections and indexes needs admin, creating and dropping
//! databases needs a superuser; `list_databases` shows only the databases the user
//! holds a role on.
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

use themis_proto::wire;

use super::{authorize, database_of, denied, fail, invalid, storage_error, write, ConnState};
use crate::auth::Permission;
use crate::session::Session;
use crate::Shared;

mod users;

pub(super) fn ok<T: Serialize>(value: &T) -> AdminResponse {
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

/// What an action needs, checked before it runs.
enum Needs {
    /// Any authenticated user (results may be narrowed to what they may see).
    Nothing,
    Superuser,
    /// A permission on the request's database.
    On(Permission),
}

fn needs(action: &Action) -> Needs {
    use Permission::{Admin, Read};
    match action {
        Action::ListDatabases(_) | Action::WhoAmI(_) => Needs::Nothing,
        Action::CreateDatabase(_) | Action::DropDatabase(_) => Needs::Superuser,
        Action::ListCollections(_) | Action::CollectionStats(_) | Action::ListIndexes(_) => {
            Needs::On(Read)
        }
        Action::CreateCollection(_)
        | Action::DropCollection(_)
        | Action::CreateIndex(_)
        | Action::DropIndex(_) => Needs::On(Admin),
        Action::CreateUser(_) | Action::DropUser(_) | Action::SetSuperuser(_) => Needs::Superuser,
        // Checked inside: they depend on whose user, key or database it is.
        Action::ListUsers(_)
        | Action::SetPassword(_)
        | Action::GrantRole(_)
        | Action::RevokeRole(_)
        | Action::CreateApiKey(_)
        | Action::ListApiKeys(_)
        | Action::RevokeApiKey(_)
        | Action::RevokeSessions(_) => Needs::Nothing,
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    req: AdminRequest,
) -> AdminResponse {
    let store = &shared.store;
    let db = database_of(&req.database, session).to_string();
    let Some(action) = req.action else {
        return invalid("AdminRequest has no action: set one of list_databases, create_database, drop_database, list_collections, create_collection, drop_collection, collection_stats, create_index, drop_index, list_indexes, list_users, create_user, drop_user, set_password, grant_role, revoke_role, set_superuser, create_api_key, list_api_keys, revoke_api_key, who_am_i, revoke_sessions");
    };
    let allowed = match needs(&action) {
        Needs::Nothing => Ok(()),
        Needs::Superuser => superuser(shared, session, conn, action_name(&action)),
        Needs::On(permission) => authorize(shared, session, conn, &db, permission),
    };
    if let Err(e) = allowed {
        return fail(e);
    }
    let result = match action {
        Action::ListDatabases(_) => store.list_databases().map(|mut d| {
            let roles = session.roles();
            d.retain(|name| roles.sees(name));
            ok(&d)
        }),
        Action::CreateDatabase(a) => {
            let name = a.name.clone();
            let created = write(shared, move |s| s.create_database(&name)).await;
            if created.is_ok() {
                let detail = format!("database {}", a.name);
                super::audit(shared, session, conn, "database_created", detail);
            }
            created.map(|()| ok(&serde_json::json!({ "name": a.name })))
        }
        Action::DropDatabase(a) => {
            if a.name == session.database {
                return invalid(format!(
                    "cannot drop database '{}' while this connection uses it as its default: connect to another database first",
                    a.name
                ));
            }
            let name = a.name.clone();
            let _serial = shared.user_admin.lock().await;
            if let Err(e) = write(shared, move |s| s.drop_database(&name)).await {
                return fail(storage_error(e));
            }
            let ctx = users::Ctx {
                shared,
                session,
                conn,
            };
            ctx.audit(
                "database_dropped",
                format!("database {}; its role grants removed", a.name),
            );
            if let Err(e) = ctx.forget_database(&a.name).await {
                return fail(e);
            }
            Ok(ok(&serde_json::json!({ "dropped": a.name })))
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
        action => {
            let _serial = shared.user_admin.lock().await;
            return users::handle(shared, session, conn, action)
                .await
                .unwrap_or_else(fail);
        }
    };
    result.unwrap_or_else(|e| fail(storage_error(e)))
}

/// Passes for a superuser; otherwise ERR_PERMISSION_DENIED (audited).
pub(crate) fn superuser(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    what: &str,
) -> Result<(), wire::Error> {
    if session.roles().superuser {
        return Ok(());
    }
    denied(
        shared,
        session,
        conn,
        format!(
            "{what} needs a superuser, and user '{}' is not one: ask a superuser (such as root)",
            session.username
        ),
    )
}

/// The action's field name in AdminRequest, for messages.
fn action_name(action: &Action) -> &'static str {
    match action {
        Action::ListDatabases(_) => "list_databases",
        Action::CreateDatabase(_) => "create_database",
        Action::DropDatabase(_) => "drop_database",
        Action::ListCollections(_) => "list_collections",
        Action::CreateCollection(_) => "create_collection",
        Action::DropCollection(_) => "drop_collection",
        Action::CollectionStats(_) => "collection_stats",
        Action::CreateIndex(_) => "create_index",
        Action::DropIndex(_) => "drop_index",
        Action::ListIndexes(_) => "list_indexes",
        Action::ListUsers(_) => "list_users",
        Action::CreateUser(_) => "create_user",
        Action::DropUser(_) => "drop_user",
        Action::SetPassword(_) => "set_password",
        Action::GrantRole(_) => "grant_role",
        Action::RevokeRole(_) => "revoke_role",
        Action::SetSuperuser(_) => "set_superuser",
        Action::CreateApiKey(_) => "create_api_key",
        Action::ListApiKeys(_) => "list_api_keys",
        Action::RevokeApiKey(_) => "revoke_api_key",
        Action::WhoAmI(_) => "who_am_i",
        Action::RevokeSessions(_) => "revoke_sessions",
    }
}
