//! Admin calls (`OP_ADMIN`): databases, collections, stats, secondary indexes, users
//! and roles, API keys, sessions, and a generic [`Client::admin`] for actions without
//! a typed helper.
//!
//! The server answers every admin action with `AdminResponse.result`, a JSON value.
//! The typed helpers read it leniently: a list may be an array of names or of objects
//! with a `"name"`, optionally wrapped in an object holding that one array, and fields
//! a helper does not know are kept in `details` rather than rejected, so a server that
//! says more does not break an older client.
//!
//! Invariant: admin requests carry this handle's database (see [`Client::database`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use themis_proto::wire::{self, admin_request::Action};
use themis_proto::OpCode;

use crate::client::{Client, Resend};
use crate::collection::Collection;
use crate::error::{Error, Result};

/// One entry of [`Client::list_collections`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CollectionInfo {
    pub name: String,
    /// Everything else the server said about the collection.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// The answer of [`Client::collection_stats`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CollectionStats {
    pub name: String,
    /// Number of documents.
    #[serde(default)]
    pub count: u64,
    /// Bytes of stored document data.
    #[serde(default)]
    pub data_bytes: u64,
    /// Everything else the server reported.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// Options of [`Client::create_index`]. `IndexOptions::default()` is a non-unique,
/// non-sparse index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// No two documents may have equal values in all the index's fields (a write that
    /// would break it fails with `ERR_CONFLICT`).
    pub unique: bool,
    /// Leave out documents in which any indexed field is `null` or missing (so for a
    /// unique index such documents never conflict).
    pub sparse: bool,
}

impl IndexOptions {
    /// A unique, non-sparse index.
    pub fn unique() -> IndexOptions {
        IndexOptions {
            unique: true,
            sparse: false,
        }
    }

    /// Sets `sparse`.
    pub fn sparse(mut self, sparse: bool) -> IndexOptions {
        self.sparse = sparse;
        self
    }
}

fn persistent() -> String {
    "persistent".to_owned()
}

/// One index of a collection, as [`Client::list_indexes`] and
/// [`Client::create_index`] return it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IndexInfo {
    /// Index name (`"primary"` for the implicit `_key` index).
    pub name: String,
    /// The indexed attribute paths, in key order.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub sparse: bool,
    /// `"primary"` or `"persistent"`.
    #[serde(rename = "type", default = "persistent")]
    pub kind: String,
    /// Never-reused id (absent for the primary index).
    #[serde(default)]
    pub id: Option<u64>,
    /// Creation time in Unix milliseconds (absent for the primary index).
    #[serde(default)]
    pub created_at_ms: Option<u64>,
    /// Everything else the server said about the index.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl IndexInfo {
    /// Whether this is the implicit primary (`_key`) index.
    pub fn is_primary(&self) -> bool {
        self.kind == "primary"
    }
}

impl Client {
    /// Runs any admin action on this handle's database and returns the server's JSON
    /// result (`Value::Null` when it sent none).
    pub async fn admin(&self, action: Action) -> Result<Value> {
        // Listings, stats and who-am-i only read: sent again after a connection
        // failure. Changes are not (they may have been applied).
        let read = matches!(
            action,
            Action::ListDatabases(_)
                | Action::ListCollections(_)
                | Action::CollectionStats(_)
                | Action::ListIndexes(_)
                | Action::ListUsers(_)
                | Action::ListApiKeys(_)
                | Action::WhoAmI(_)
        );
        let request = wire::AdminRequest {
            database: self.database_field(),
            action: Some(action),
            ..Default::default()
        };
        let response: wire::AdminResponse = self
            .call_as(
                OpCode::OpAdmin,
                &request,
                if read { Resend::Read } else { Resend::Never },
            )
            .await?;
        if response.result.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&response.result)?)
    }

    /// Names of the databases this user can see.
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        let result = self
            .admin(Action::ListDatabases(wire::ListDatabases {}))
            .await?;
        names_from(result, "databases")
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.admin(Action::CreateDatabase(wire::CreateDatabase {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Drops database `name` and everything in it.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.admin(Action::DropDatabase(wire::DropDatabase {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// The collections of this handle's database.
    pub async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let result = self
            .admin(Action::ListCollections(wire::ListCollections {}))
            .await?;
        infos_from(result, "collections")
    }

    /// Creates collection `name` in this handle's database and returns a handle to it.
    pub async fn create_collection(&self, name: &str) -> Result<Collection> {
        self.admin(Action::CreateCollection(wire::CreateCollection {
            name: name.to_owned(),
        }))
        .await?;
        Ok(self.collection(name))
    }

    /// Drops collection `name` and its documents.
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.admin(Action::DropCollection(wire::DropCollection {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Document count, data size and whatever else the server reports.
    pub async fn collection_stats(&self, name: &str) -> Result<CollectionStats> {
        let result = self
            .admin(Action::CollectionStats(wire::CollectionStats {
                name: name.to_owned(),
            }))
            .await?;
        stats_from(name, result)
    }
}

impl Client {
    /// Creates index `name` on `fields` (dotted attribute paths such as
    /// `"address.city"`, at most 8) of `collection`, filling it from the documents
    /// already stored. A taken name, an identical existing index, or (for a unique
    /// index) documents that already share values fail with `ERR_CONFLICT`.
    pub async fn create_index<S: AsRef<str>>(
        &self,
        collection: &str,
        name: &str,
        fields: &[S],
        options: IndexOptions,
    ) -> Result<IndexInfo> {
        let result = self
            .admin(Action::CreateIndex(wire::CreateIndex {
                collection: collection.to_owned(),
                name: name.to_owned(),
                fields: fields.iter().map(|f| f.as_ref().to_owned()).collect(),
                unique: options.unique,
                sparse: options.sparse,
            }))
            .await?;
        match result {
            Value::Object(_) => Ok(serde_json::from_value(result)?),
            other => Err(Error::Protocol(format!(
                "admin result for create_index should be a JSON object, found {other}"
            ))),
        }
    }

    /// Drops index `name` of `collection` (the primary index cannot be dropped).
    pub async fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        self.admin(Action::DropIndex(wire::DropIndex {
            collection: collection.to_owned(),
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// The indexes of `collection`: the primary index first, then the secondary ones.
    pub async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexInfo>> {
        let result = self
            .admin(Action::ListIndexes(wire::ListIndexes {
                collection: collection.to_owned(),
            }))
            .await?;
        the_array(result, "indexes")?
            .into_iter()
            .map(|item| match item {
                Value::Object(_) => Ok(serde_json::from_value(item)?),
                other => Err(unexpected("indexes", &other.to_string())),
            })
            .collect()
    }
}

/// A role a user holds on one database (or on every database, `"*"`).
///
/// Parsed from and shown as `admin`, `readwrite`, `readonly`:
///
/// ```
/// use themis_client::Role;
///
/// let role: Role = "readwrite".parse().unwrap();
/// assert_eq!(role, Role::Readwrite);
/// assert_eq!(role.to_string(), "readwrite");
/// assert!("owner".parse::<Role>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything on the database: read, write, collections, indexes, and granting
    /// roles on it.
    Admin,
    /// Read and write documents, run queries and transactions.
    Readwrite,
    /// Read documents and run read-only queries.
    Readonly,
}

impl Role {
    /// Every role, strongest first.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Readwrite, Role::Readonly];

    /// `"admin"`, `"readwrite"` or `"readonly"`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Readwrite => "readwrite",
            Role::Readonly => "readonly",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `admin`, `readwrite` or `readonly` (see [`Role`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRoleError(String);

impl fmt::Display for ParseRoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role {:?}: use admin, readwrite or readonly",
            self.0
        )
    }
}

impl std::error::Error for ParseRoleError {}

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Accepts `admin`, `readwrite`, `readonly` (ASCII case ignored).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseRoleError(s.to_owned()))
    }
}

/// A user account, as the user and role calls return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    /// May do anything on the server, whatever its roles.
    #[serde(default)]
    pub superuser: bool,
    /// Role per database; the key `"*"` means every database.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Creation time in Unix milliseconds.
    #[serde(default)]
    pub created_at_ms: u64,
    /// Everything else the server said about the user.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl UserInfo {
    /// The role this user holds on `database`: the one granted on it, else the one
    /// on `"*"`. (A superuser may do anything regardless.)
    pub fn role_on(&self, database: &str) -> Option<Role> {
        self.roles
            .get(database)
            .or_else(|| self.roles.get("*"))
            .copied()
    }
}

/// Options of [`Client::create_user`]. `UserOptions::default()` is an ordinary user
/// without roles.
///
/// ```
/// use themis_client::{Role, UserOptions};
///
/// let options = UserOptions::default()
///     .role("shop", Role::Readwrite)
///     .role("*", Role::Readonly);
/// assert_eq!(options.roles.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserOptions {
    /// Make the user a superuser.
    pub superuser: bool,
    /// `(database, role)` grants; database `"*"` = every database.
    pub roles: Vec<(String, Role)>,
}

impl UserOptions {
    /// Adds a grant of `role` on `database` (`"*"` = every database).
    pub fn role(mut self, database: impl Into<String>, role: Role) -> Self {
        self.roles.push((database.into(), role));
        self
    }

    /// Sets `superuser`.
    pub fn superuser(mut self, superuser: bool) -> Self {
        self.superuser = superuser;
        self
    }
}

/// An API key as the server describes it (never with its secret; see [`NewApiKey`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The key's id, what [`Client::revoke_api_key`] takes.
    pub id: String,
    /// The key's public start, `themis_<id>`, to recognise it by.
    #[serde(default)]
    pub prefix: String,
    /// The user the key logs in as.
    #[serde(default)]
    pub username: String,
    /// The label given at creation.
    #[serde(default)]
    pub name: String,
    /// Creation time in Unix milliseconds.
    #[serde(default)]
    pub created_at_ms: u64,
    /// Expiry in Unix milliseconds; `None` = never expires.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    /// When it was revoked, in Unix milliseconds.
    #[serde(default)]
    pub revoked_at_ms: Option<u64>,
    /// Everything else the server said about the key.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ApiKeyInfo {
    /// Whether the key can log in at Unix time `now_ms`: not revoked, not expired.
    pub fn is_usable_at(&self, now_ms: u64) -> bool {
        !self.revoked && self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

/// A key just made by [`Client::create_api_key`]: the only time its secret is shown.
/// `Debug` does not print it (serializing it does, in the server's JSON shape).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// The whole key, `themis_<id>_<secret>`: log in with
    /// [`Auth::ApiKey`](crate::Auth::ApiKey). Store it now; the server keeps only a
    /// hash.
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// Options of [`Client::create_api_key`]. `ApiKeyOptions::default()` is an unnamed,
/// never-expiring key of the calling user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyOptions {
    /// Whose key; `None` = the calling user's (others need a superuser).
    pub username: Option<String>,
    /// A label for people (`"ci"`, `"backup job"`).
    pub name: String,
    /// Lifetime from now; `None` = never expires. Rounded up to whole milliseconds.
    pub expires_in: Option<Duration>,
}

/// Who this connection is logged in as, from [`Client::whoami`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub username: String,
    /// How the session authenticated: `USERNAME_PASSWORD`, `API_KEY`, `JWT` or
    /// `CERTIFICATE`.
    #[serde(default)]
    pub method: String,
    /// The database the request addressed.
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub superuser: bool,
    /// Role per database; `"*"` = every database.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// When the session ends, in Unix milliseconds.
    #[serde(default)]
    pub session_expires_at_ms: Option<u64>,
    /// The id of the API key the session logged in with, if it did.
    #[serde(default)]
    pub api_key_id: Option<String>,
    /// Everything else the server said.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl Client {
    /// Every user account for a superuser; for anyone else, only their own.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let result = self.admin(Action::ListUsers(wire::ListUsers {})).await?;
        objects_from(result, "users")
    }

    /// Creates user `name` with `password` (superuser only).
    ///
    /// ```no_run
    /// use themis_client::{Role, UserOptions};
    ///
    /// # async fn users(client: themis_client::Client) -> themis_client::Result<()> {
    /// let alice = client
    ///     .create_user("alice", "s3cret!", &UserOptions::default().role("shop", Role::Readwrite))
    ///     .await?;
    /// assert_eq!(alice.role_on("shop"), Some(Role::Readwrite));
    /// client.grant_role("alice", "*", Role::Readonly).await?;
    /// client.set_password("alice", "n3w-s3cret!").await?;
    /// for user in client.list_users().await? {
    ///     println!("{} {:?}", user.name, user.roles);
    /// }
    /// client.drop_user("alice").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        options: &UserOptions,
    ) -> Result<UserInfo> {
        let result = self
            .admin(Action::CreateUser(wire::CreateUser {
                name: name.to_owned(),
                password: password.to_owned(),
                superuser: options.superuser,
                roles: options
                    .roles
                    .iter()
                    .map(|(database, role)| wire::RoleGrant {
                        database: database.clone(),
                        role: role.as_str().to_owned(),
                    })
                    .collect(),
            }))
            .await?;
        object_from(result, "create_user")
    }

    /// Drops user `name`, their API keys and sessions (superuser only).
    pub async fn drop_user(&self, name: &str) -> Result<()> {
        self.admin(Action::DropUser(wire::DropUser {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Sets the password of another user `name` (a superuser may). For your own, use
    /// [`Client::change_password`]: it needs the current one.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        self.admin(Action::SetPassword(wire::SetPassword {
            name: name.to_owned(),
            password: password.to_owned(),
            old_password: String::new(),
        }))
        .await?;
        Ok(())
    }

    /// Changes the logged-in user's own password; `old` must be the current one (so
    /// a stolen session, API key or token cannot take the account over). The user's
    /// other sessions end.
    pub async fn change_password(&self, old: &str, new: &str) -> Result<()> {
        self.admin(Action::SetPassword(wire::SetPassword {
            name: self.server_info().username.clone(),
            password: new.to_owned(),
            old_password: old.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Grants `username` `role` on `database` (`"*"` = every database), replacing the
    /// role they had there. Needs a superuser, or an admin of `database`.
    pub async fn grant_role(&self, username: &str, database: &str, role: Role) -> Result<UserInfo> {
        let result = self
            .admin(Action::GrantRole(wire::GrantRole {
                username: username.to_owned(),
                database: database.to_owned(),
                role: role.as_str().to_owned(),
            }))
            .await?;
        object_from(result, "grant_role")
    }

    /// Takes away the role `username` has on `database` (exactly that entry; a role on
    /// `"*"` is revoked with `database = "*"`).
    pub async fn revoke_role(&self, username: &str, database: &str) -> Result<UserInfo> {
        let result = self
            .admin(Action::RevokeRole(wire::RevokeRole {
                username: username.to_owned(),
                database: database.to_owned(),
            }))
            .await?;
        object_from(result, "revoke_role")
    }

    /// Makes `username` a superuser or not (superuser only).
    pub async fn set_superuser(&self, username: &str, superuser: bool) -> Result<UserInfo> {
        let result = self
            .admin(Action::SetSuperuser(wire::SetSuperuser {
                username: username.to_owned(),
                superuser,
            }))
            .await?;
        object_from(result, "set_superuser")
    }

    /// Makes an API key. Its secret is in the answer this once only.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use themis_client::{ApiKeyOptions, Auth, Client, ClientOptions};
    ///
    /// # async fn keys(client: Client) -> themis_client::Result<()> {
    /// let new = client
    ///     .create_api_key(&ApiKeyOptions {
    ///         name: "ci".into(),
    ///         expires_in: Some(Duration::from_secs(30 * 24 * 3600)),
    ///         ..ApiKeyOptions::default()
    ///     })
    ///     .await?;
    /// let options = ClientOptions { auth: Auth::ApiKey(new.key), ..ClientOptions::default() };
    /// let as_ci = Client::connect_with("127.0.0.1:8766", options).await?;
    /// assert_eq!(as_ci.whoami().await?.api_key_id.as_deref(), Some(new.info.id.as_str()));
    /// client.revoke_api_key(&new.info.id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_api_key(&self, options: &ApiKeyOptions) -> Result<NewApiKey> {
        let result = self
            .admin(Action::CreateApiKey(wire::CreateApiKey {
                username: options.username.clone().unwrap_or_default(),
                name: options.name.clone(),
                expires_in_ms: options.expires_in.map_or(0, duration_ms),
            }))
            .await?;
        object_from(result, "create_api_key")
    }

    /// API keys of `username`: `None` = the caller's, `Some("*")` = everyone's
    /// (superuser only).
    pub async fn list_api_keys(&self, username: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        let result = self
            .admin(Action::ListApiKeys(wire::ListApiKeys {
                username: username.unwrap_or_default().to_owned(),
            }))
            .await?;
        objects_from(result, "keys")
    }

    /// Revokes an API key, given its id or the whole key. Sessions it opened end too.
    pub async fn revoke_api_key(&self, id_or_key: &str) -> Result<ApiKeyInfo> {
        let result = self
            .admin(Action::RevokeApiKey(wire::RevokeApiKey {
                id: id_or_key.to_owned(),
            }))
            .await?;
        object_from(result, "revoke_api_key")
    }

    /// Who this connection is logged in as, how, and with which roles.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        let result = self.admin(Action::WhoAmI(wire::WhoAmI {})).await?;
        object_from(result, "whoami")
    }

    /// Ends every session of `username` (`None` = the caller's own, this one
    /// included) and returns how many there were. Their connections fail with
    /// `ERR_UNAUTHENTICATED` and their session tokens no longer resume.
    pub async fn revoke_sessions(&self, username: Option<&str>) -> Result<u64> {
        let result = self
            .admin(Action::RevokeSessions(wire::RevokeSessions {
                username: username.unwrap_or_default().to_owned(),
            }))
            .await?;
        revoked_count(&result)
    }
}

/// Milliseconds of `d`, rounded up, at least 1 (0 on the wire means "never").
fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// An admin result that must be one JSON object of type `T`.
fn object_from<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    match value {
        Value::Object(_) => Ok(serde_json::from_value(value)?),
        other => Err(Error::Protocol(format!(
            "admin result for {what} should be a JSON object, found {other}"
        ))),
    }
}

/// An admin result that must be an array of JSON objects of type `T`.
fn objects_from<T: DeserializeOwned>(value: Value, key: &str) -> Result<Vec<T>> {
    the_array(value, key)?
        .into_iter()
        .map(|item| match item {
            Value::Object(_) => Ok(serde_json::from_value(item)?),
            other => Err(Error::Protocol(format!(
                "admin result for {key} should be a JSON array of objects, found {other}"
            ))),
        })
        .collect()
}

fn revoked_count(value: &Value) -> Result<u64> {
    value
        .get("revoked")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            Error::Protocol(format!(
                "admin result for revoke_sessions should be an object with a number \"revoked\", found {value}"
            ))
        })
}

/// The one array in `value`: `value` itself, or the field `key` (or the only array
/// field) of an object.
fn the_array(value: Value, key: &str) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        Value::Object(mut fields) => {
            if let Some(Value::Array(items)) = fields.remove(key) {
                return Ok(items);
            }
            let mut arrays = fields.into_iter().filter_map(|(_, v)| match v {
                Value::Array(items) => Some(items),
                _ => None,
            });
            match (arrays.next(), arrays.next()) {
                (Some(items), None) => Ok(items),
                _ => Err(unexpected(key, "an object without one array of entries")),
            }
        }
        other => Err(unexpected(key, &format!("{other}"))),
    }
}

fn unexpected(what: &str, found: &str) -> Error {
    Error::Protocol(format!(
        "admin result for {what} should be a JSON array of names or objects with \"name\", found {found}"
    ))
}

fn names_from(value: Value, key: &str) -> Result<Vec<String>> {
    the_array(value, key)?
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(name),
            Value::Object(mut fields) => match fields.remove("name") {
                Some(Value::String(name)) => Ok(name),
                _ => Err(unexpected(key, "an object without a string \"name\"")),
            },
            other => Err(unexpected(key, &other.to_string())),
        })
        .collect()
}

fn infos_from(value: Value, key: &str) -> Result<Vec<CollectionInfo>> {
    the_array(value, key)?
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(CollectionInfo {
                name,
                details: Map::new(),
            }),
            Value::Object(_) => Ok(serde_json::from_value(item)?),
            other => Err(unexpected(key, &other.to_string())),
        })
        .collect()
}

fn stats_from(name: &str, value: Value) -> Result<CollectionStats> {
    match value {
        Value::Object(mut fields) => {
            fields
                .entry("name")
                .or_insert_with(|| Value::String(name.to_owned()));
            Ok(serde_json::from_value(Value::Object(fields))?)
        }
        other => Err(Error::Protocol(format!(
            "admin result for collection_stats should be a JSON object, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_names_leniently() {
        assert_eq!(
            names_from(json!(["_system", "shop"]), "databases").unwrap(),
            vec!["_system", "shop"]
        );
        assert_eq!(
            names_from(json!([{"name": "a", "x": 1}, "b"]), "databases").unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            names_from(json!({"databases": ["a"]}), "databases").unwrap(),
            vec!["a"]
        );
        assert_eq!(
            names_from(json!({"result": ["a"], "n": 1}), "databases").unwrap(),
            vec!["a"]
        );
        assert!(names_from(Value::Null, "databases").unwrap().is_empty());
        assert!(matches!(
            names_from(json!(3), "databases"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            names_from(json!([{"id": 1}]), "databases"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn collection_infos_keep_details() {
        let got = infos_from(
            json!([{"name": "users", "count": 3, "type": "document"}, "logs"]),
            "collections",
        )
        .unwrap();
        assert_eq!(got[0].name, "users");
        assert_eq!(got[0].details.get("count"), Some(&json!(3)));
        assert_eq!(got[1].name, "logs");
        assert!(got[1].details.is_empty());
        assert!(infos_from(json!([{"count": 1}]), "collections").is_err());
    }

    #[test]
    fn index_infos() {
        let list = vec![
            json!({"name": "primary", "fields": ["_key"], "unique": true, "sparse": false, "type": "primary"}),
            json!({"name": "by_email", "id": 7, "fields": ["email"], "unique": true, "sparse": false, "created_at_ms": 5, "type": "persistent", "extra": 1}),
            json!({"name": "old"}),
        ];
        let got: Vec<IndexInfo> = list
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert!(got[0].is_primary());
        assert_eq!(got[0].id, None);
        assert_eq!(got[1].id, Some(7));
        assert_eq!(got[1].fields, vec!["email"]);
        assert!(!got[1].is_primary());
        assert_eq!(got[1].details.get("extra"), Some(&json!(1)));
        assert_eq!(got[2].kind, "persistent");
        assert_eq!(
            IndexOptions::unique().sparse(true),
            IndexOptions {
                unique: true,
                sparse: true
            }
        );
    }

    #[test]
    fn roles_parse_and_show() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
        }
        assert_eq!("admin".parse(), Ok(Role::Admin));
        assert_eq!("readwrite".parse(), Ok(Role::Readwrite));
        assert_eq!(" ReadOnly ".parse(), Ok(Role::Readonly));
        let e = "owner".parse::<Role>().unwrap_err().to_string();
        assert!(e.contains("owner") && e.contains("readwrite"), "{e}");
        assert!("".parse::<Role>().is_err());
        assert!(serde_json::from_value::<Role>(json!("owner")).is_err());
    }

    #[test]
    fn user_infos() {
        let one = json!({"name":"alice","superuser":false,"roles":{"shop":"readwrite","*":"readonly"},"created_at_ms":1763700000000u64});
        let alice: UserInfo = object_from(one.clone(), "create_user").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(!alice.superuser);
        assert_eq!(alice.created_at_ms, 1_763_700_000_000);
        assert_eq!(alice.roles.get("shop"), Some(&Role::Readwrite));
        assert_eq!(alice.role_on("shop"), Some(Role::Readwrite));
        assert_eq!(alice.role_on("other"), Some(Role::Readonly));
        assert!(alice.details.is_empty());
        let list: Vec<UserInfo> = objects_from(
            json!([one, {"name":"root","superuser":true,"roles":{},"created_at_ms":1}]),
            "users",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[1].superuser && list[1].roles.is_empty());
        assert_eq!(list[1].role_on("shop"), None);
        assert!(objects_from::<UserInfo>(json!(["alice"]), "users").is_err());
        assert!(object_from::<UserInfo>(json!({"dropped":"alice"}), "create_user").is_err());
        assert!(object_from::<UserInfo>(json!([1]), "create_user").is_err());
    }

    #[test]
    fn api_key_infos() {
        let info = json!({"id":"0123456789ab","prefix":"themis_0123456789ab","username":"alice","name":"ci","created_at_ms":1,"expires_at_ms":null,"revoked":false,"revoked_at_ms":null});
        let key: ApiKeyInfo = object_from(info.clone(), "revoke_api_key").unwrap();
        assert_eq!(key.id, "0123456789ab");
        assert_eq!(key.prefix, "themis_0123456789ab");
        assert_eq!((key.username.as_str(), key.name.as_str()), ("alice", "ci"));
        assert_eq!(key.created_at_ms, 1);
        assert_eq!(
            (key.expires_at_ms, key.revoked, key.revoked_at_ms),
            (None, false, None)
        );
        assert!(key.details.is_empty());
        assert!(key.is_usable_at(u64::MAX));

        let mut created = info.clone();
        let secret = "themis_0123456789ab_abcdefghijABCDEFGHIJabcdefghijABCDEFGHIJ";
        created["key"] = json!(secret);
        created["expires_at_ms"] = json!(100);
        let new: NewApiKey = object_from(created, "create_api_key").unwrap();
        assert_eq!(new.key, secret);
        assert_eq!(new.info.id, "0123456789ab");
        assert_eq!(new.info.expires_at_ms, Some(100));
        assert!(new.info.is_usable_at(99) && !new.info.is_usable_at(100));
        assert!(!new.info.details.contains_key("key"));
        assert_eq!(serde_json::to_value(&new).unwrap()["key"], json!(secret));
        let shown = format!("{new:?}");
        assert!(!shown.contains("abcdefghij"), "{shown}");
        assert!(shown.contains("0123456789ab"), "{shown}");

        let mut revoked = info;
        revoked["revoked"] = json!(true);
        revoked["revoked_at_ms"] = json!(5);
        let list: Vec<ApiKeyInfo> = objects_from(json!([revoked]), "keys").unwrap();
        assert!(list[0].revoked && !list[0].is_usable_at(0));
        assert_eq!(list[0].revoked_at_ms, Some(5));
        assert!(objects_from::<ApiKeyInfo>(Value::Null, "keys")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn whoami_and_revoked_sessions() {
        let me: WhoAmI = object_from(
            json!({"username":"alice","method":"API_KEY","database":"shop","superuser":false,"roles":{"shop":"readwrite"},"session_expires_at_ms":1,"api_key_id":"0123456789ab"}),
            "whoami",
        )
        .unwrap();
        assert_eq!(me.username, "alice");
        assert_eq!(me.method, crate::Auth::ApiKey(String::new()).method_name());
        assert_eq!(me.database, "shop");
        assert_eq!(me.roles.get("shop"), Some(&Role::Readwrite));
        assert_eq!(me.session_expires_at_ms, Some(1));
        assert_eq!(me.api_key_id.as_deref(), Some("0123456789ab"));
        let root: WhoAmI = object_from(
            json!({"username":"root","method":"USERNAME_PASSWORD","database":"_system","superuser":true,"roles":{},"session_expires_at_ms":1,"api_key_id":null}),
            "whoami",
        )
        .unwrap();
        assert!(root.superuser && root.api_key_id.is_none());

        assert_eq!(
            revoked_count(&json!({"username":"alice","revoked":3})).unwrap(),
            3
        );
        assert!(matches!(
            revoked_count(&json!({"username":"alice"})),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn expiry_in_whole_milliseconds() {
        assert_eq!(duration_ms(Duration::from_secs(30 * 86_400)), 2_592_000_000);
        assert_eq!(duration_ms(Duration::from_micros(1500)), 2);
        assert_eq!(duration_ms(Duration::ZERO), 1);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
        let options = UserOptions::default()
            .superuser(true)
            .role("*", Role::Admin);
        assert_eq!(
            options,
            UserOptions {
                superuser: true,
                roles: vec![("*".into(), Role::Admin)]
            }
        );
    }

    #[test]
    fn stats_leniently() {
        let s = stats_from(
            "users",
            json!({"name": "users", "count": 10, "data_bytes": 2048, "indexes": 2}),
        )
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.count, s.data_bytes),
            ("users", 10, 2048)
        );
        assert_eq!(s.details.get("indexes"), Some(&json!(2)));
        let s = stats_from("logs", json!({"count": 1})).unwrap();
        assert_eq!((s.name.as_str(), s.count, s.data_bytes), ("logs", 1, 0));
        assert!(stats_from("x", json!([1])).is_err());
    }
}
