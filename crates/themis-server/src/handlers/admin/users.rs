//! ADMIN actions 20–31: users, roles, API keys and sessions.
//!
//! Who may do what:
//! * create_user, drop_user, set_superuser: a superuser;
//! * list_users: a superuser sees everyone, anyone else only themselves;
//! * set_password: one's own, or anyone's as a superuser;
//! * grant_role / revoke_role: a superuser, or an admin of that database (`"*"`,
//!   every database, only a superuser);
//! * create_api_key, list_api_keys, revoke_api_key, revoke_sessions: one's own, or
//!   anyone's as a superuser;
//! * who_am_i: anyone.
//!
//! Actions run one at a time (the caller holds `Shared::user_admin`), so two grants to
//! the same user never lose one another. Every change is written to the audit log and
//! reaches live sessions at once: new roles apply to their next request; dropping a
//! user or revoking a key revokes the sessions it opened.

use serde_json::{json, Value};
use themis_proto::wire::admin_request::Action;
use themis_proto::wire::{self, AdminResponse, AuthMethod, ErrorCode};
use themis_proto::ErrorExt;
use themis_storage::{ApiKeyRecord, UserRecord};

use super::{ok, superuser};
use crate::auth::roles::ALL_DATABASES;
use crate::auth::{apikey, Permission, Role, Roles};
use crate::handlers::{authorize, denied, storage_error, write, ConnState};
use crate::session::{hash_password, now_ms, verify_password, Session};
use crate::Shared;

/// bcrypt uses at most this many bytes of a password.
const MAX_PASSWORD_BYTES: usize = 72;

type Outcome = Result<AdminResponse, wire::Error>;

pub(super) async fn handle(
    shared: &Shared,
    session: &Session,
    conn: &ConnState,
    action: Action,
) -> Outcome {
    let ctx = Ctx {
        shared,
        session,
        conn,
    };
    match action {
        Action::ListUsers(_) => ctx.list_users(),
        Action::CreateUser(a) => ctx.create_user(a).await,
        Action::DropUser(a) => ctx.drop_user(&a.name).await,
        Action::SetPassword(a) => {
            ctx.set_password(&a.name, &a.password, &a.old_password)
                .await
        }
        Action::GrantRole(a) => {
            let role = Role::parse(&a.role).map_err(invalid)?;
            ctx.change_role(&a.username, &a.database, Some(role)).await
        }
        Action::RevokeRole(a) => ctx.change_role(&a.username, &a.database, None).await,
        Action::SetSuperuser(a) => ctx.set_superuser(&a.username, a.superuser).await,
        Action::CreateApiKey(a) => ctx.create_api_key(a).await,
        Action::ListApiKeys(a) => ctx.list_api_keys(&a.username),
        Action::RevokeApiKey(a) => ctx.revoke_api_key(&a.id).await,
        Action::WhoAmI(_) => Ok(ctx.who_am_i()),
        Action::RevokeSessions(a) => ctx.revoke_sessions(&a.username),
        // Handled by the caller.
        _ => Err(invalid("not a user, role, key or session action")),
    }
}

pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub session: &'a Session,
    pub conn: &'a ConnState,
}

fn invalid(message: impl Into<String>) -> wire::Error {
    wire::Error::new(ErrorCode::ErrInvalidArgument, message)
}

fn user_json(user: &UserRecord) -> Value {
    let roles = Roles::from_value(&user.roles);
    json!({
        "name": user.name,
        "superuser": roles.superuser,
        "roles": roles.databases,
        "created_at_ms": user.created_at_ms,
    })
}

fn key_json(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.id,
        "prefix": apikey::prefix(&key.id),
        "username": key.username,
        "name": key.name,
        "created_at_ms": key.created_at_ms,
        "expires_at_ms": key.expires_at_ms,
        "revoked": key.revoked_at_ms.is_some(),
        "revoked_at_ms": key.revoked_at_ms,
    })
}

fn check_password(password: &str) -> Result<(), wire::Error> {
    if password.is_empty() {
        return Err(invalid(
            "password is empty: give the user a password (a user meant to log in only with an API key, JWT or certificate still needs one; make it long and random)",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!(
            "password is {} bytes; bcrypt uses at most {MAX_PASSWORD_BYTES}: choose a shorter one",
            password.len()
        )));
    }
    Ok(())
}

impl Ctx<'_> {
    fn is_superuser(&self) -> bool {
        self.session.roles().superuser
    }

    pub(super) fn audit(&self, kind: &'static str, detail: String) {
        crate::handlers::audit(self.shared, self.session, self.conn, kind, detail);
    }

    /// Passes when `username` is the caller, or the caller is a superuser.
    fn own_or_superuser(&self, username: &str, what: &str) -> Result<(), wire::Error> {
        if username == self.session.username {
            return Ok(());
        }
        superuser(
            self.shared,
            self.session,
            self.conn,
            &format!("{what} for another user ('{username}')"),
        )
    }

    fn user(&self, name: &str) -> Result<UserRecord, wire::Error> {
        self.shared
            .store
            .get_user(name)
            .map_err(storage_error)?
            .ok_or_else(|| {
                wire::Error::new(
                    ErrorCode::ErrNotFound,
                    format!("user '{name}' not found: list_users shows who exists"),
                )
            })
    }

    async fn store_user(&self, user: UserRecord) -> Result<(), wire::Error> {
        write(self.shared, move |s| s.put_user(&user))
            .await
            .map_err(storage_error)
    }

    async fn store_key(&self, key: ApiKeyRecord) -> Result<(), wire::Error> {
        write(self.shared, move |s| s.put_api_key(&key))
            .await
            .map_err(storage_error)
    }

    /// Gives `username`'s live sessions their new roles. When the change takes
    /// anything away, the sessions end instead: what they opened under the old roles
    /// (cursors, transactions, subscriptions) must not outlive them. Clients log in
    /// again and get the new roles.
    fn apply_roles(&self, username: &str, before: &Roles, after: &Roles) {
        if before.weakened_by(after) {
            let ended = self
                .shared
                .sessions
                .revoke_where(|s| s.username == username);
            self.audit(
                "sessions_revoked",
                format!("user {username}: {ended} sessions ended by a role reduction"),
            );
        } else {
            self.shared.sessions.update_roles(username, after);
        }
    }

    fn list_users(&self) -> Outcome {
        let users = self.shared.store.list_users().map_err(storage_error)?;
        let all = self.is_superuser();
        let shown: Vec<Value> = users
            .iter()
            .filter(|u| all || u.name == self.session.username)
            .map(user_json)
            .collect();
        Ok(ok(&shown))
    }

    async fn create_user(&self, a: wire::CreateUser) -> Outcome {
        check_password(&a.password)?;
        if self
            .shared
            .store
            .get_user(&a.name)
            .map_err(storage_error)?
            .is_some()
        {
            return Err(wire::Error::new(
                ErrorCode::ErrConflict,
                format!(
                    "user '{}' already exists: choose another name, or change it with set_password / grant_role",
                    a.name
                ),
            ));
        }
        let mut roles = Roles {
            superuser: a.superuser,
            ..Roles::default()
        };
        for grant in &a.roles {
            let role = Role::parse(&grant.role).map_err(invalid)?;
            self.check_database_exists(&grant.database)?;
            roles.databases.insert(grant.database.clone(), role);
        }
        let user = UserRecord {
            name: a.name.clone(),
            password_hash: hash_password(&a.password, self.shared.config.server.bcrypt_cost)
                .await
                .map_err(|e| wire::Error::new(ErrorCode::ErrInternal, e))?,
            roles: roles.to_value(),
            created_at_ms: now_ms(),
        };
        let shown = user_json(&user);
        self.store_user(user).await?;
        self.audit(
            "user_created",
            format!("user {} with roles {}", a.name, roles.to_value()),
        );
        Ok(ok(&shown))
    }

    async fn drop_user(&self, name: &str) -> Outcome {
        if name == self.session.username {
            return Err(invalid(
                "you cannot drop the user you are logged in as: log in as another superuser to drop it",
            ));
        }
        self.user(name)?;
        let name_owned = name.to_string();
        write(self.shared, move |s| s.delete_user(&name_owned))
            .await
            .map_err(storage_error)?;
        // Its keys stop working, and so do its sessions.
        let keys = self.shared.store.list_api_keys().map_err(storage_error)?;
        let now = now_ms();
        for mut key in keys {
            if key.username == name && key.revoked_at_ms.is_none() {
                key.revoked_at_ms = Some(now);
                self.store_key(key).await?;
            }
        }
        let sessions = self.shared.sessions.revoke_where(|s| s.username == name);
        self.audit(
            "user_dropped",
            format!("user {name}; its API keys revoked, {sessions} sessions ended"),
        );
        Ok(ok(&json!({ "dropped": name })))
    }

    async fn set_password(&self, name: &str, password: &str, old_password: &str) -> Outcome {
        let name = if name.is_empty() {
            self.session.username.as_str()
        } else {
            name
        };
        self.own_or_superuser(name, "set_password")?;
        check_password(password)?;
        if name == self.session.username {
            // A session (or a stolen API key or token) alone does not make one the
            // owner of the account: changing one's own password takes the current one.
            let cost = self.shared.config.server.bcrypt_cost;
            let matches = verify_password(&self.shared.store, name, old_password, cost)
                .await
                .map_err(|e| wire::Error::new(ErrorCode::ErrInternal, e))?;
            if matches.is_none() {
                let _ = denied(
                    self.shared,
                    self.session,
                    self.conn,
                    format!("set_password of user {name}: old_password does not match"),
                );
                return Err(wire::Error::new(
                    ErrorCode::ErrPermissionDenied,
                    "old_password does not match: changing your own password takes the current one",
                ));
            }
        }
        let mut user = self.user(name)?;
        user.password_hash = hash_password(password, self.shared.config.server.bcrypt_cost)
            .await
            .map_err(|e| wire::Error::new(ErrorCode::ErrInternal, e))?;
        self.store_user(user).await?;
        // Whoever knew the old password is logged out; the caller stays.
        let token = &self.session.token;
        let ended = self
            .shared
            .sessions
            .revoke_where(|s| s.username == name && &s.token != token);
        self.audit(
            "password_changed",
            format!("user {name}; {ended} other sessions ended"),
        );
        Ok(ok(&json!({ "name": name })))
    }

    fn check_database_exists(&self, database: &str) -> Result<(), wire::Error> {
        if database == ALL_DATABASES {
            return Ok(());
        }
        if self
            .shared
            .store
            .database_exists(database)
            .map_err(storage_error)?
        {
            Ok(())
        } else {
            Err(wire::Error::new(
                ErrorCode::ErrNotFound,
                format!(
                    "database '{database}' not found: create it first (roles are granted on existing databases, or on \"*\" for all)"
                ),
            ))
        }
    }

    /// Grants `role` (Some) or revokes the role (None) of `username` on `database`.
    async fn change_role(&self, username: &str, database: &str, role: Option<Role>) -> Outcome {
        let database = if database.is_empty() {
            self.session.database.as_str()
        } else {
            database
        };
        let what = if role.is_some() {
            "grant_role"
        } else {
            "revoke_role"
        };
        if database == ALL_DATABASES {
            superuser(
                self.shared,
                self.session,
                self.conn,
                &format!("{what} on every database (\"*\")"),
            )?;
        } else {
            authorize(
                self.shared,
                self.session,
                self.conn,
                database,
                Permission::Admin,
            )?;
        }
        self.check_database_exists(database)?;
        let mut user = self.user(username)?;
        let mut roles = Roles::from_value(&user.roles);
        match role {
            Some(role) => {
                roles.databases.insert(database.to_string(), role);
            }
            None => {
                roles.databases.remove(database);
            }
        }
        let before = Roles::from_value(&user.roles);
        user.roles = roles.to_value();
        let shown = user_json(&user);
        self.store_user(user).await?;
        self.apply_roles(username, &before, &roles);
        let detail = match role {
            Some(role) => format!("user {username} granted {role} on {database}"),
            None => format!("user {username} role on {database} revoked"),
        };
        self.audit(
            if role.is_some() {
                "role_granted"
            } else {
                "role_revoked"
            },
            detail,
        );
        Ok(ok(&shown))
    }

    async fn set_superuser(&self, username: &str, on: bool) -> Outcome {
        if username == self.session.username && !on {
            return Err(invalid(
                "you cannot remove your own superuser status: ask another superuser to do it",
            ));
        }
        let mut user = self.user(username)?;
        let before = Roles::from_value(&user.roles);
        let mut roles = before.clone();
        roles.superuser = on;
        user.roles = roles.to_value();
        let shown = user_json(&user);
        self.store_user(user).await?;
        self.apply_roles(username, &before, &roles);
        self.audit(
            "superuser_changed",
            format!("user {username} superuser = {on}"),
        );
        Ok(ok(&shown))
    }

    async fn create_api_key(&self, a: wire::CreateApiKey) -> Outcome {
        let username = if a.username.is_empty() {
            self.session.username.clone()
        } else {
            a.username.clone()
        };
        self.own_or_superuser(&username, "create_api_key")?;
        if username == self.session.username
            && matches!(self.session.method, AuthMethod::ApiKey | AuthMethod::Jwt)
        {
            // Else a stolen key or token could mint itself a key that outlives it.
            return Err(wire::Error::new(
                ErrorCode::ErrPermissionDenied,
                format!(
                    "a session opened with {} cannot create API keys for its own user: log in with a password or a client certificate to create one",
                    self.session.method.as_str_name()
                ),
            ));
        }
        self.user(&username)?;
        let now = now_ms();
        let expires = (a.expires_in_ms > 0).then(|| now.saturating_add(a.expires_in_ms));
        // Ids are 48 random bits: a clash is unlikely, but must never replace a key.
        let mut new = apikey::generate(&username, &a.name, expires, now);
        while self
            .shared
            .store
            .get_api_key(&new.record.id)
            .map_err(storage_error)?
            .is_some()
        {
            new = apikey::generate(&username, &a.name, expires, now);
        }
        let mut shown = key_json(&new.record);
        shown["key"] = json!(new.key);
        let id = new.record.id.clone();
        self.store_key(new.record).await?;
        self.audit(
            "api_key_created",
            format!("key {} for user {username}", apikey::prefix(&id)),
        );
        Ok(ok(&shown))
    }

    fn list_api_keys(&self, username: &str) -> Outcome {
        let username = if username.is_empty() {
            self.session.username.as_str()
        } else {
            username
        };
        if username == "*" {
            superuser(
                self.shared,
                self.session,
                self.conn,
                "list_api_keys for everyone",
            )?;
        } else {
            self.own_or_superuser(username, "list_api_keys")?;
        }
        let keys = self.shared.store.list_api_keys().map_err(storage_error)?;
        let shown: Vec<Value> = keys
            .iter()
            .filter(|k| username == "*" || k.username == username)
            .map(key_json)
            .collect();
        Ok(ok(&shown))
    }

    async fn revoke_api_key(&self, id_or_key: &str) -> Outcome {
        // The whole key, its prefix or its id.
        let id = match apikey::parse(id_or_key) {
            Ok((id, _)) => id,
            Err(_) => id_or_key.strip_prefix("themis_").unwrap_or(id_or_key),
        };
        let not_found = || {
            wire::Error::new(
                ErrorCode::ErrNotFound,
                format!("API key '{id}' not found: list_api_keys shows the ids"),
            )
        };
        if id.is_empty() {
            return Err(not_found());
        }
        let mut key = self
            .shared
            .store
            .get_api_key(id)
            .map_err(storage_error)?
            // Someone else's key is "not found" to anyone but a superuser: ids are
            // not for probing.
            .filter(|k| k.username == self.session.username || self.is_superuser())
            .ok_or_else(not_found)?;
        if key.revoked_at_ms.is_none() {
            key.revoked_at_ms = Some(now_ms());
            self.store_key(key.clone()).await?;
        }
        let id = key.id.clone();
        let sessions = self
            .shared
            .sessions
            .revoke_where(|s| s.api_key_id.as_deref() == Some(id.as_str()));
        self.audit(
            "api_key_revoked",
            format!(
                "key {} of user {}; {sessions} sessions ended",
                apikey::prefix(&id),
                key.username
            ),
        );
        Ok(ok(&key_json(&key)))
    }

    /// Removes every grant on `database` (just dropped), so a new database of the
    /// same name starts with no one holding a role on it.
    pub(super) async fn forget_database(&self, database: &str) -> Result<(), wire::Error> {
        for mut user in self.shared.store.list_users().map_err(storage_error)? {
            let mut roles = Roles::from_value(&user.roles);
            if roles.databases.remove(database).is_none() {
                continue;
            }
            user.roles = roles.to_value();
            let name = user.name.clone();
            self.store_user(user).await?;
            // The database is gone, so nothing opened on it survives: no need to end
            // the sessions.
            self.shared.sessions.update_roles(&name, &roles);
        }
        Ok(())
    }

    fn who_am_i(&self) -> AdminResponse {
        let roles = self.session.roles();
        ok(&json!({
            "username": self.session.username,
            "method": self.session.method.as_str_name(),
            "database": self.session.database,
            "superuser": roles.superuser,
            "roles": roles.databases,
            "session_expires_at_ms": self.session.expires_at_ms,
            "api_key_id": self.session.api_key_id,
        }))
    }

    fn revoke_sessions(&self, username: &str) -> Outcome {
        let username = if username.is_empty() {
            self.session.username.as_str()
        } else {
            username
        };
        self.own_or_superuser(username, "revoke_sessions")?;
        let revoked = self
            .shared
            .sessions
            .revoke_where(|s| s.username == username);
        self.audit(
            "sessions_revoked",
            format!("user {username}: {revoked} sessions ended"),
        );
        Ok(ok(&json!({ "username": username, "revoked": revoked })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_must_be_non_empty_and_fit_bcrypt() {
        assert!(check_password("").is_err());
        assert!(check_password(&"x".repeat(73))
            .unwrap_err()
            .message
            .contains("72"));
        assert!(check_password("correct horse").is_ok());
    }
}
