//! The errors of the storage crate.
//!
//! [`StorageError`] is what callers see. Its first four variants map one-to-one onto
//! wire error codes (`NotFound` → ERR_NOT_FOUND, `Conflict` → ERR_CONFLICT,
//! `InvalidArgument` → ERR_INVALID_ARGUMENT, `Internal` → ERR_INTERNAL), and
//! `Unavailable` → ERR_UNAVAILABLE, `Contended` → ERR_CONFLICT marked retryable,
//! `Transaction` → ERR_TRANSACTION. Every message says what was wrong and what to do
//! next, because the server passes it to the client unchanged.
//!
//! [`KvError`] is the narrower error of the key-value engine layer: its `Conflict` is
//! the optimistic-transaction conflict the document layer retries on, never shown to
//! a user as such.

/// Result type of the storage crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// An error a storage operation reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A database, collection, document or user does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation collides with existing data: a name or `_key` already taken, or
    /// a stale `_rev`. Retrying the same request fails the same way.
    #[error("{0}")]
    Conflict(String),
    /// A write kept losing optimistic races with concurrent writers; the same request
    /// may succeed when retried.
    #[error("{0}")]
    Contended(String),
    /// The request itself is wrong: a bad name, key or document.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store cannot serve now (it is shutting down, or a sync failed and the
    /// engine refuses further writes until restarted).
    #[error("{0}")]
    Unavailable(String),
    /// I/O failure or corrupt stored data; not the caller's fault.
    #[error("{0}")]
    Internal(String),
    /// The transaction cannot do this: it is read-only, aborted by an earlier failed
    /// statement, or already finished.
    #[error("{0}")]
    Transaction(String),
}

impl StorageError {
    /// The human-readable message, without the variant.
    pub fn message(&self) -> &str {
        match self {
            StorageError::NotFound(m)
            | StorageError::Conflict(m)
            | StorageError::Contended(m)
            | StorageError::InvalidArgument(m)
            | StorageError::Unavailable(m)
            | StorageError::Internal(m)
            | StorageError::Transaction(m) => m,
        }
    }
}

/// An error of the key-value engine layer ([`crate::KvEngine`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Optimistic concurrency control found that another transaction committed a
    /// write to something this transaction read; nothing of it was applied. Retry.
    #[error("transaction conflict: another transaction changed data this one read; retry it")]
    Conflict,
    /// The engine failed (I/O, corruption, or poisoned after a failed sync).
    #[error("storage engine error: {0}")]
    Engine(String),
}

impl From<KvError> for StorageError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Conflict => StorageError::Conflict(
                "write conflict: a concurrent transaction changed the same data; retry the request"
                    .to_string(),
            ),
            KvError::Engine(m) => StorageError::Internal(format!(
                "storage engine error: {m}; check the server log and the data directory's disk"
            )),
        }
    }
}
