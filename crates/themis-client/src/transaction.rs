//! Transactions: [`Client::begin`] / [`Client::begin_with`] return a [`Transaction`]
//! whose [`Collection`]s and [`Query`]s run inside it; [`Client::transaction`] runs a
//! closure in a transaction and retries it when the commit loses a write conflict.
//!
//! On the wire a transaction is an id from `BEGIN_TX`; every `CREATE`, `READ`,
//! `UPDATE`, `DELETE` and `QUERY` that carries it runs inside it and sees its writes,
//! and `COMMIT_TX` or `ROLLBACK_TX` ends it. A commit that loses a write conflict is
//! `ERR_CONFLICT` with `retryable` set, and the transaction is gone; an unknown,
//! expired (idle longer than its timeout) or finished transaction is
//! `ERR_TRANSACTION`.
//!
//! Invariants:
//! * A transaction's requests go out on the connection that began it: the
//!   `Transaction`, and every handle made from it, holds a [`Client`] pinned to that
//!   connection, which never reconnects. When it dies, the transaction's requests fail
//!   with [`Error::StateLost`] (the server rolled the transaction back), except a
//!   `COMMIT_TX` already sent, which fails with the connection error and says the
//!   commit may or may not have been applied.
//! * Every request from a transaction's `Collection` or `Query` carries its id.
//! * When the last handle of a transaction that was neither committed nor rolled back
//!   is dropped, a spawned task rolls it back (best effort, never blocking, never
//!   panicking); without a runtime to spawn on, the server's idle timeout ends it.
//! * [`Client::transaction`] commits only a transaction its closure left open, rolls
//!   back only one the closure failed in, and retries only errors that are both
//!   [`Error::is_conflict`] and [`Error::is_retryable`], or [`Error::is_state_lost`]
//!   (the server rolled it back with its connection; the next attempt begins on a
//!   fresh one). A commit whose outcome is unknown is never retried.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use themis_proto::{wire, OpCode};

use crate::client::{Client, Holder, Resend};
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::query::Query;
use crate::retry::{Retry, RetryPolicy};

pub use themis_proto::wire::IsolationLevel;

/// How a transaction runs: [`Client::begin_with`], [`Client::transaction`].
///
/// ```
/// use std::time::Duration;
/// use themis_client::{IsolationLevel, TxOptions};
///
/// let options = TxOptions::serializable().timeout(Duration::from_secs(5));
/// assert_eq!(options.isolation, IsolationLevel::Serializable);
/// assert_eq!(TxOptions::default().isolation, IsolationLevel::Snapshot);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOptions {
    /// Default [`IsolationLevel::Snapshot`].
    pub isolation: IsolationLevel,
    /// Writes inside the transaction fail with `ERR_TRANSACTION`. Default `false`.
    pub read_only: bool,
    /// The server ends the transaction after this long without a request in it;
    /// `None` = the server's default (60 s). Millisecond precision.
    pub timeout: Option<Duration>,
    /// How [`Client::transaction`] retries lost write conflicts (ignored by
    /// [`Client::begin_with`]). Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl Default for TxOptions {
    fn default() -> Self {
        Self::snapshot()
    }
}

impl TxOptions {
    /// Snapshot isolation (the default): the transaction reads one consistent
    /// snapshot; of two transactions writing the same document, one loses.
    pub fn snapshot() -> Self {
        Self::with_isolation(IsolationLevel::Snapshot)
    }

    /// Serializable isolation: as if the transactions ran one after the other.
    pub fn serializable() -> Self {
        Self::with_isolation(IsolationLevel::Serializable)
    }

    /// Read-committed isolation: each read sees what was committed when it ran.
    pub fn read_committed() -> Self {
        Self::with_isolation(IsolationLevel::ReadCommitted)
    }

    fn with_isolation(isolation: IsolationLevel) -> Self {
        Self {
            isolation,
            read_only: false,
            timeout: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Sets [`Self::read_only`].
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets [`Self::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`Self::retry`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn begin_request(&self, database: String) -> wire::BeginTxRequest {
        wire::BeginTxRequest {
            isolation_level: self.isolation as i32,
            // 0 would mean the server's default; a timeout that small means "at once".
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
                .unwrap_or(0),
            read_only: self.read_only,
            database,
            ..Default::default()
        }
    }
}

/// An open transaction. Cheap to clone; clones are the same transaction.
///
/// Operations go through [`Transaction::collection`] and [`Transaction::query`];
/// [`Transaction::commit`] or [`Transaction::rollback`] end it. If neither was called
/// when the last clone is dropped, it is rolled back in the background.
///
/// ```no_run
/// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
/// let tx = client.begin().await?;
/// let orders = tx.collection("orders");
/// let order = orders.insert(&serde_json::json!({ "total": 42 })).await?;
/// let open: Vec<u64> = tx
///     .query("FOR o IN orders FILTER o.total > 40 RETURN o.total")
///     .all()
///     .await?;
/// assert!(open.contains(&42), "the transaction sees its own writes");
/// tx.commit().await?;
/// # let _ = order;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Transaction {
    inner: Arc<TxInner>,
}

struct TxInner {
    client: Client,
    id: Arc<str>,
    /// Commit or rollback was sent (whatever came of it).
    finished: AtomicBool,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.inner.id)
            .field("database", &self.inner.client.database_name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Client {
    /// Begins a transaction with snapshot isolation and the server's idle timeout.
    pub async fn begin(&self) -> Result<Transaction> {
        self.begin_with(TxOptions::default()).await
    }

    /// Begins a transaction in this handle's database.
    pub async fn begin_with(&self, options: TxOptions) -> Result<Transaction> {
        self.begin_request(&options.begin_request(self.database_field()))
            .await
    }

    async fn begin_request(&self, request: &wire::BeginTxRequest) -> Result<Transaction> {
        // BEGIN_TX may be sent again after a connection failure: a transaction begun
        // on a connection that died is gone with it. The transaction's requests then
        // go to the connection that began it, and nowhere else.
        let (response, client): (wire::BeginTxResponse, Client) = self
            .call_pinning(
                OpCode::OpBeginTx,
                request,
                Resend::Read,
                |r: &wire::BeginTxResponse| {
                    Holder::Transaction(Arc::from(r.transaction_id.as_str()))
                },
            )
            .await?;
        if response.transaction_id.is_empty() {
            // Going on would run every "transactional" request outside any transaction.
            return Err(Error::Protocol(
                "BEGIN_TX succeeded without a transaction_id".to_owned(),
            ));
        }
        Ok(Transaction {
            inner: Arc::new(TxInner {
                client,
                id: Arc::from(response.transaction_id),
                finished: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `body` in a transaction and commits it, trying again from the start when
    /// it loses a write conflict.
    ///
    /// Each attempt begins a transaction with `options`, calls `body` with it, and
    /// commits it if `body` returned `Ok` and left it open. When `body` fails, a
    /// transaction it left open is rolled back. An error that is both
    /// [`Error::is_conflict`] and [`Error::is_retryable`] — from the commit, or from
    /// `body` — starts the next attempt after an exponential, jittered backoff
    /// (`options.retry`, at least the server's `retry_after` hint); any other error,
    /// or the last conflict once the policy is used up, is returned.
    ///
    /// `body` may run several times, so it should have no effects outside the
    /// transaction (or only ones that may repeat). It gets the transaction by value
    /// (a cheap clone), so `|tx| async move { ... }` owns it; borrow what else it
    /// needs from outside the closure. To give up without committing, roll back and
    /// return `Ok`: a transaction `body` finished itself is neither committed nor
    /// retried.
    ///
    /// ```no_run
    /// use serde::Deserialize;
    /// use serde_json::json;
    /// use themis_client::TxOptions;
    ///
    /// #[derive(Deserialize)]
    /// struct Account {
    ///     balance: i64,
    /// }
    ///
    /// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
    /// let amount = 100;
    /// let outcome = client
    ///     .transaction(TxOptions::serializable(), |tx| async move {
    ///         let accounts = tx.collection("accounts");
    ///         let from: Option<Account> = accounts.get("alice").await?;
    ///         let to: Option<Account> = accounts.get("bob").await?;
    ///         let (Some(from), Some(to)) = (from, to) else {
    ///             tx.rollback().await?;
    ///             return Ok(Err("no such account"));
    ///         };
    ///         if from.balance < amount {
    ///             tx.rollback().await?;
    ///             return Ok(Err("insufficient funds"));
    ///         }
    ///         accounts.update("alice", &json!({ "balance": from.balance - amount })).await?;
    ///         accounts.update("bob", &json!({ "balance": to.balance + amount })).await?;
    ///         Ok(Ok(from.balance - amount))
    ///     })
    ///     .await?;
    /// match outcome {
    ///     Ok(left) => println!("moved {amount}; alice has {left} left"),
    ///     Err(why) => println!("nothing moved: {why}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, options: TxOptions, mut body: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let request = options.begin_request(self.database_field());
        let mut retry = Retry::new(&options.retry);
        loop {
            let tx = self.begin_request(&request).await?;
            let outcome = match body(tx.clone()).await {
                Ok(value) if tx.is_finished() => Ok(value),
                Ok(value) => tx.commit().await.map(|()| value),
                Err(e) => {
                    if !tx.is_finished() {
                        if let Err(rollback) = tx.rollback().await {
                            tracing::debug!(error = %rollback, transaction = tx.id(), "rollback after a failed transaction body failed");
                        }
                    }
                    Err(e)
                }
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(e) if e.is_conflict() && e.is_retryable() => e,
                // The connection holding it died and the server rolled it back (a
                // commit that may have been applied is a different error).
                Err(e) if e.is_state_lost() => e,
                Err(e) => return Err(e),
            };
            let Some(delay) = retry.next_delay(error.retry_after()) else {
                tracing::debug!(attempts = retry.failures(), error = %error, "transaction conflicts: giving up");
                return Err(error);
            };
            tracing::debug!(attempt = retry.failures(), ?delay, error = %error, "transaction lost a conflict; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Transaction {
    /// The server's id for this transaction.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Collection `name` (in the database the transaction began in), with every
    /// operation inside this transaction.
    pub fn collection(&self, name: &str) -> Collection {
        self.inner
            .client
            .collection(name)
            .in_transaction(self.inner.id.clone())
    }

    /// An AQL query that runs inside this transaction; see [`Query`].
    pub fn query(&self, aql: impl Into<String>) -> Query {
        self.inner
            .client
            .query(aql)
            .in_transaction(self.inner.id.clone())
    }

    /// Commits. A lost write conflict is an error with [`Error::is_conflict`] and
    /// [`Error::is_retryable`]: begin again and redo the work (or let
    /// [`Client::transaction`] do that). Either way the transaction is over.
    ///
    /// When the connection dies during the COMMIT, and the server deduplicates request
    /// keys, the COMMIT is sent again (with the same key) on a new connection to the
    /// same server: a server that committed it answers from its record, and the commit
    /// succeeds. Otherwise the error says the transaction may or may not have been
    /// committed.
    pub async fn commit(&self) -> Result<()> {
        self.inner.finished.store(true, Ordering::Relaxed);
        let client = &self.inner.client;
        let request = wire::CommitTxRequest {
            transaction_id: self.inner.id.to_string(),
            request_key: client.commit_request_key(),
            ..Default::default()
        };
        let first: Result<wire::CommitTxResponse> = client.call(OpCode::OpCommitTx, &request).await;
        match first {
            Err(lost) if lost.is_connection_error() && !request.request_key.is_empty() => {
                tracing::debug!(transaction = %self.inner.id, error = %lost, "connection lost during COMMIT; asking the server again");
                let again: Result<wire::CommitTxResponse> =
                    client.resend_keyed(OpCode::OpCommitTx, &request).await;
                match again {
                    Ok(_) => Ok(()),
                    // No record (it did not commit, or its COMMIT is still on its way),
                    // or the server is out of reach: the first error says it all.
                    Err(again) => {
                        tracing::debug!(error = %again, "asking again about the COMMIT failed");
                        Err(lost)
                    }
                }
            }
            other => other.map(|_| ()),
        }
    }

    /// Rolls back: nothing the transaction wrote is kept.
    ///
    /// When the connection holding the transaction is gone, so is the transaction (the
    /// server rolled it back when it closed): that is `Ok` too.
    pub async fn rollback(&self) -> Result<()> {
        self.inner.finished.store(true, Ordering::Relaxed);
        let rolled_back: Result<wire::RollbackTxResponse> = self
            .inner
            .client
            .call(OpCode::OpRollbackTx, &self.inner.rollback_request())
            .await;
        match rolled_back {
            Ok(_) => Ok(()),
            Err(e) if e.is_state_lost() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether commit or rollback was sent (by any clone).
    pub fn is_finished(&self) -> bool {
        self.inner.finished.load(Ordering::Relaxed)
    }
}

impl TxInner {
    fn rollback_request(&self) -> wire::RollbackTxRequest {
        wire::RollbackTxRequest {
            transaction_id: self.id.to_string(),
            ..Default::default()
        }
    }
}

impl Drop for TxInner {
    fn drop(&mut self) {
        if *self.finished.get_mut() {
            return;
        }
        // No runtime (dropped outside tokio): the server's idle timeout ends it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let request = self.rollback_request();
        runtime.spawn(async move {
            // Best effort: a transaction that already expired is fine.
            let rolled_back: Result<wire::RollbackTxResponse> =
                client.call(OpCode::OpRollbackTx, &request).await;
            match rolled_back {
                Ok(_) => tracing::debug!(
                    transaction = %request.transaction_id,
                    "rolled back a transaction dropped without commit or rollback"
                ),
                Err(e) => tracing::debug!(
                    transaction = %request.transaction_id,
                    error = %e,
                    "rolling back a dropped transaction failed"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_begin_request() {
        let r = TxOptions::default().begin_request(String::new());
        assert_eq!(r.isolation_level, IsolationLevel::Snapshot as i32);
        assert_eq!(
            (r.timeout_ms, r.read_only, r.database.as_str()),
            (0, false, "")
        );

        let r = TxOptions::serializable()
            .read_only(true)
            .timeout(Duration::from_millis(1500))
            .begin_request("shop".into());
        assert_eq!(r.isolation_level, IsolationLevel::Serializable as i32);
        assert_eq!(
            (r.timeout_ms, r.read_only, r.database.as_str()),
            (1500, true, "shop")
        );

        let r = TxOptions::read_committed()
            .timeout(Duration::from_micros(10))
            .begin_request(String::new());
        assert_eq!(r.isolation_level, IsolationLevel::ReadCommitted as i32);
        assert_eq!(r.timeout_ms, 1, "a tiny timeout is not the server default");
    }
}
