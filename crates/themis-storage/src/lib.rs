//! ThemisDB storage: databases, collections and JSON documents on a key-value engine.
//!
//! Layers, bottom up:
//! * [`kv`]: the narrow, object-safe [`KvEngine`] interface (snapshot reads, buffered
//!   writes, optimistic commit with a distinct conflict, explicit `persist`), and
//!   [`FjallEngine`], its implementation on fjall 3's optimistic transactions.
//! * [`group_commit`]: [`GroupCommitter`], which acknowledges a write only once it is
//!   durable and lets concurrent writes share one fsync.
//! * [`DocumentStore`]: the catalog (databases, collections with never-reused ids),
//!   documents keyed `db_id | collection_id | _key`, revisions from a hybrid logical
//!   clock, user records. Shared as `Arc<DocumentStore>`. Everything is synchronous:
//!   a write commits and returns a [`Pending`] whose `wait().await` resolves once the
//!   write is durable, so callers can commit off their async executor and wait on it.
//!
//! Invariants: storage never sees a socket; every write request is one transaction;
//! nothing is acknowledged before it is durable (unless [`SyncMode::Never`] was chosen);
//! every error a user can see is a [`StorageError`] whose message says what to do.

mod catalog;
mod document;
mod error;
mod fjall_engine;
pub mod group_commit;
pub mod kv;
mod names;
mod revision;
mod store;
mod users;

pub use catalog::SYSTEM_DATABASE;
pub use document::UpdateMode;
pub use error::{KvError, Result, StorageError};
pub use fjall_engine::FjallEngine;
pub use group_commit::{DurableTicket, GroupCommitter, Pending, SyncMode, SyncStats, WaitDurable};
pub use kv::{KvEngine, KvIter, KvPair, KvRead, KvSnapshot, KvTx, Space};
pub use names::{validate_key, validate_name, MAX_KEY_LEN, MAX_NAME_LEN};
pub use revision::{decode_revision, encode_revision};
pub use store::{
    CollectionInfo, CollectionStats, DeleteOutcome, DocMeta, DocumentStore, StoreOptions,
    DEFAULT_CACHE_SIZE_BYTES, MAX_TX_ATTEMPTS,
};
pub use users::{UserRecord, MAX_USER_NAME_LEN};

#[cfg(test)]
mod send_sync {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_shareable() {
        assert_send_sync::<DocumentStore>();
        assert_send_sync::<std::sync::Arc<dyn KvEngine>>();
    }
}
