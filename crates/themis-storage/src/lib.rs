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
//! * `index`: persistent secondary indexes ([`IndexInfo`]) in their own key space,
//!   with the order-preserving value encoding [`encode_index_value`]; every document
//!   write maintains them in its own transaction (`write.rs`).
//! * For queries: [`QuerySnapshot`] (one consistent view; streaming collection and
//!   index scans) and [`WriteTx`] (all writes of a query in one transaction).
//! * [`Transaction`]: interactive transactions over many requests, with SNAPSHOT,
//!   SERIALIZABLE and READ_COMMITTED isolation (`transaction.rs`; own writes read
//!   through an overlay, `overlay.rs`).
//! * [`ChangeFeed`]: the change log — every committed document write numbered per
//!   database in commit order, in its own key space, retained by age and size — and
//!   the live feed that hands durable changes to subscribers (`changes.rs`).
//!
//! Invariants: storage never sees a socket; every write request is one transaction;
//! nothing is acknowledged before it is durable (unless [`SyncMode::Never`] was chosen),
//! and no subscriber sees a change before it is durable;
//! every error a user can see is a [`StorageError`] whose message says what to do.

mod batch;
mod catalog;
mod changes;
mod document;
mod error;
mod fjall_engine;
pub mod group_commit;
mod index;
#[cfg(test)]
mod index_consistency_tests;
pub mod kv;
mod names;
mod overlay;
mod query;
mod read_catalog;
mod request_keys;
mod revision;
mod store;
mod transaction;
mod users;
mod write;

pub use batch::{DocWrite, MAX_BATCH_BYTES, MAX_BATCH_WRITES};
pub use catalog::SYSTEM_DATABASE;
pub use changes::{ChangeFeed, ChangeKind, ChangeRecord, FeedItem, FeedSubscription, Retention};
pub use document::UpdateMode;
pub use error::{KvError, Result, StorageError};
pub use fjall_engine::FjallEngine;
pub use group_commit::{DurableTicket, GroupCommitter, Pending, SyncMode, SyncStats, WaitDurable};
pub use index::{
    encode_index_value, IndexInfo, IndexRange, MAX_FIELD_PATH_LEN, MAX_INDEX_FIELDS,
    PRIMARY_INDEX_NAME,
};
pub use kv::{KvEngine, KvIter, KvPair, KvRead, KvSnapshot, KvTx, Space};
pub use names::{validate_key, validate_name, MAX_KEY_LEN, MAX_NAME_LEN};
pub use query::{CollectionHandle, DocIter, QuerySnapshot};
pub use request_keys::{validate_request_key, RequestKey, MAX_REQUEST_KEY_LEN};
pub use revision::{decode_revision, encode_revision};
pub use store::{
    CollectionInfo, CollectionStats, DeleteOutcome, DocMeta, DocumentStore, StoreOptions,
    DEFAULT_CACHE_SIZE_BYTES, MAX_TX_ATTEMPTS,
};
pub use transaction::{Isolation, Transaction, MAX_TRANSACTION_BYTES};
pub use users::{ApiKeyRecord, UserRecord, MAX_USER_NAME_LEN};
pub use write::{KeyIter, WriteTx};

#[cfg(test)]
mod send_sync {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_shareable() {
        assert_send_sync::<DocumentStore>();
        assert_send_sync::<std::sync::Arc<dyn KvEngine>>();
        assert_send_sync::<QuerySnapshot>();
    }

    fn assert_send<T: Send>() {}

    #[test]
    fn query_handles_are_send() {
        assert_send::<WriteTx>();
        assert_send::<Transaction>();
        assert_send::<FeedSubscription>();
        assert_send::<DocIter>();
        assert_send::<KeyIter>();
    }
}
