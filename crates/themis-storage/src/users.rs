//! User records and API keys for authentication, stored durably in the `Meta` space
//! (`U` + user name → JSON [`UserRecord`], `K` + key id → JSON [`ApiKeyRecord`]).
//!
//! The store keeps records opaque: hashing passwords and interpreting `roles` is
//! the server's job. Writes go through the same transaction + group-commit path as
//! documents, so a created user survives a crash once `put_user` returned.

use serde::{Deserialize, Serialize};

use crate::catalog::{api_key_key, decode_json, encode_json, user_key, API_KEY_TAG, USER_TAG};
use crate::error::{Result, StorageError};
use crate::group_commit::Pending;
use crate::kv::Space;
use crate::DocumentStore;

/// Longest user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 256;

/// An account that can authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name (unique).
    pub name: String,
    /// Password hash (bcrypt, produced by the server).
    pub password_hash: String,
    /// Roles and permissions; free-form for now.
    pub roles: serde_json::Value,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// An API key: its id (the public part of the key), its owner and a hash of its
/// secret. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier, part of the key itself (`themis_<id>_<secret>`).
    pub id: String,
    /// The user the key logs in as.
    pub username: String,
    /// A label for people.
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    pub created_at_ms: u64,
    /// `None`: never expires.
    pub expires_at_ms: Option<u64>,
    /// Set once revoked; revoked keys are kept so listings show them.
    pub revoked_at_ms: Option<u64>,
}

fn validate_user_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN || name.chars().any(char::is_control) {
        return Err(StorageError::InvalidArgument(format!(
            "invalid user name: a user name is 1-{MAX_USER_NAME_LEN} bytes without control \
             characters (got {} bytes)",
            name.len()
        )));
    }
    Ok(())
}

impl DocumentStore {
    /// The user named `name`, if any.
    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        validate_user_name(name)?;
        let snap = self.engine.snapshot()?;
        match snap.get(Space::Meta, &user_key(name))? {
            None => Ok(None),
            Some(v) => decode_json("a user record", &v).map(Some),
        }
    }

    /// Creates or replaces the user `rec.name`; returns once durable.
    pub fn put_user(&self, rec: &UserRecord) -> Result<Pending<()>> {
        validate_user_name(&rec.name)?;
        let value = encode_json(rec)?;
        let key = user_key(&rec.name);
        self.run_tx("storing a user", |tx| {
            tx.put(Space::Meta, &key, value.clone()).map_err(Into::into)
        })?;
        Ok(self.pending(()))
    }

    /// All users, sorted by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let snap = self.engine.snapshot()?;
        let mut out = Vec::new();
        for item in snap.scan_prefix(Space::Meta, &[USER_TAG]) {
            let (_, v) = item?;
            out.push(decode_json("a user record", &v)?);
        }
        Ok(out)
    }

    /// Deletes the user `name`; a missing user is `NotFound`.
    pub fn delete_user(&self, name: &str) -> Result<Pending<()>> {
        validate_user_name(name)?;
        let key = user_key(name);
        self.run_tx("deleting a user", |tx| {
            if tx.get(Space::Meta, &key)?.is_none() {
                return Err(StorageError::NotFound(format!(
                    "user '{name}' not found; list users to see who exists"
                )));
            }
            tx.delete(Space::Meta, &key).map_err(Into::into)
        })?;
        Ok(self.pending(()))
    }

    /// The API key with this id, if any.
    pub fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let snap = self.engine.snapshot()?;
        match snap.get(Space::Meta, &api_key_key(id))? {
            None => Ok(None),
            Some(v) => decode_json("an API key record", &v).map(Some),
        }
    }

    /// Creates or replaces the API key `rec.id`; returns once durable.
    pub fn put_api_key(&self, rec: &ApiKeyRecord) -> Result<Pending<()>> {
        let value = encode_json(rec)?;
        let key = api_key_key(&rec.id);
        self.run_tx("storing an API key", |tx| {
            tx.put(Space::Meta, &key, value.clone()).map_err(Into::into)
        })?;
        Ok(self.pending(()))
    }

    /// All API keys (revoked ones included), by id.
    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let snap = self.engine.snapshot()?;
        let mut out = Vec::new();
        for item in snap.scan_prefix(Space::Meta, &[API_KEY_TAG]) {
            let (_, v) = item?;
            out.push(decode_json("an API key record", &v)?);
        }
        Ok(out)
    }
}
