//! AQL queries: [`Query`], a builder with bind parameters, and [`QueryStream`], its
//! results as a typed [`futures::Stream`].
//!
//! A query goes out as one `OP_QUERY`; the server answers with its first batch and,
//! when more remain, a cursor id. The stream hands out that batch one result at a time
//! and asks for the next (`OP_CURSOR_NEXT`) only once the consumer has drained it, so
//! a slow reader holds one batch in memory, never the whole result, and the server
//! holds one batch too.
//!
//! Invariants:
//! * Results are deserialized one at a time as the consumer takes them, so a result
//!   that does not fit `T` is an `Err` item in its place, not a lost batch.
//! * A stream dropped while the server still holds its cursor closes it with
//!   `OP_CURSOR_CLOSE` from a spawned task (fire and forget); without a runtime to
//!   spawn on, the server's idle TTL closes it instead.
//! * After an error item the stream ends.
//! * A query from [`crate::Transaction::query`] runs inside that transaction; its
//!   cursor fetches need no transaction id (the server keeps the cursor's context).
//! * A stream's cursor fetches go to the connection that answered the query (the
//!   server's cursor lives there); when it is gone they fail with
//!   [`crate::Error::StateLost`]. `OP_QUERY` itself is never retried after a
//!   connection failure (the client cannot tell a reading query from a writing one);
//!   an `explain` is.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use themis_proto::{wire, ErrorCode, OpCode};

use crate::client::{Client, Holder, Resend};
use crate::error::Result;

/// What the server reported about a query's work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Server time spent on this query so far, summed over the batches fetched.
    pub execution_time: Duration,
    /// Documents read from storage so far.
    pub documents_scanned: u64,
    /// Index entries looked up so far.
    pub index_lookups: u64,
    /// Documents inserted, updated or removed.
    pub writes_executed: u64,
    /// Results produced so far.
    pub rows_returned: u64,
}

impl QueryStats {
    /// Takes the server's latest counters (which cover the query so far) and adds the
    /// batch's time.
    fn absorb(&mut self, s: &wire::QueryStats) {
        self.execution_time += Duration::from_micros(s.execution_time_us);
        self.documents_scanned = s.documents_scanned;
        self.index_lookups = s.index_lookups;
        self.writes_executed = s.writes_executed;
        self.rows_returned = s.rows_returned;
    }
}

/// An AQL query to run: built by [`Client::query`], run by [`Query::all`],
/// [`Query::stream`], [`Query::first`] or [`Query::explain`].
///
/// ```no_run
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct User {
///     name: String,
///     age: u32,
/// }
///
/// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
/// let adults: Vec<User> = client
///     .query("FOR u IN @@coll FILTER u.age >= @min SORT u.age RETURN u")
///     .bind_collection("coll", "users")
///     .bind("min", 18)?
///     .all()
///     .await?;
/// for u in &adults {
///     println!("{} ({})", u.name, u.age);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    client: Client,
    aql: String,
    bind_vars: HashMap<String, Bytes>,
    batch_size: i32,
    /// The transaction the query runs in, if any.
    transaction: Option<Arc<str>>,
}

impl Client {
    /// An AQL query against this handle's database; see [`Query`].
    pub fn query(&self, aql: impl Into<String>) -> Query {
        Query {
            client: self.clone(),
            aql: aql.into(),
            bind_vars: HashMap::new(),
            batch_size: 0,
            transaction: None,
        }
    }
}

impl Query {
    /// This query, run inside transaction `id`.
    pub(crate) fn in_transaction(mut self, id: Arc<str>) -> Self {
        self.transaction = Some(id);
        self
    }

    /// The transaction the query runs in, if it came from
    /// [`crate::Transaction::query`].
    pub fn transaction_id(&self) -> Option<&str> {
        self.transaction.as_deref()
    }

    /// Binds `@name` (give the name without the `@`) to any serializable value. A
    /// value that cannot be turned into JSON is [`crate::Error::Serialization`].
    pub fn bind<T: Serialize>(mut self, name: &str, value: T) -> Result<Self> {
        let json = serde_json::to_vec(&value)?;
        self.bind_vars.insert(name.to_owned(), Bytes::from(json));
        Ok(self)
    }

    /// Binds the collection parameter `@@name` (give the name without the `@@`) to
    /// `collection`. On the wire this is bind variable `"@name"`.
    pub fn bind_collection(mut self, name: &str, collection: &str) -> Self {
        let name = name.trim_start_matches('@');
        let json = serde_json::Value::String(collection.to_owned()).to_string();
        self.bind_vars
            .insert(format!("@{name}"), Bytes::from(json.into_bytes()));
        self
    }

    /// Results per round trip (the server's default is 1000, its maximum 100,000; a
    /// batch also stops at half the server's frame limit).
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = i32::try_from(n).unwrap_or(i32::MAX);
        self
    }

    /// Runs the query and collects every result.
    pub async fn all<T: DeserializeOwned>(self) -> Result<Vec<T>> {
        self.stream::<T>().await?.try_collect().await
    }

    /// Runs the query and returns its first result (`None` if there is none). Asks
    /// for one result and closes the cursor; a write query still does all its writes.
    pub async fn first<T: DeserializeOwned>(self) -> Result<Option<T>> {
        let mut stream = self.batch_size(1).stream::<T>().await?;
        stream.next().await.transpose()
    }

    /// Runs the query; the first batch has arrived when this returns (so errors in
    /// the query itself surface here), later batches are fetched as the stream is
    /// read.
    ///
    /// ```no_run
    /// use futures::TryStreamExt;
    ///
    /// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
    /// let mut rows = client
    ///     .query("FOR o IN orders RETURN o.total")
    ///     .batch_size(500)
    ///     .stream::<f64>()
    ///     .await?;
    /// let mut sum = 0.0;
    /// while let Some(total) = rows.try_next().await? {
    ///     sum += total;
    /// }
    /// println!("{sum} over {} documents", rows.stats().documents_scanned);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stream<T: DeserializeOwned>(self) -> Result<QueryStream<T>> {
        let request = self.request(false);
        // Not retried: the client cannot tell whether the AQL writes. The stream's
        // cursor lives on the connection that answered, so its fetches go there.
        let (response, client): (wire::QueryResponse, Client) = self
            .client
            .call_pinning(OpCode::OpQuery, &request, Resend::Never, |_| Holder::Cursor)
            .await?;
        let mut stream = QueryStream {
            client,
            batch_size: self.batch_size,
            buffer: VecDeque::new(),
            cursor_id: None,
            pending: None,
            stats: QueryStats::default(),
            batches: 0,
            finished: false,
            _type: PhantomData,
        };
        stream.absorb(response);
        Ok(stream)
    }

    /// The server's plan for the query (which collections it scans, which indexes
    /// it uses), as text. Runs nothing.
    ///
    /// ```no_run
    /// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
    /// let plan = client
    ///     .query("FOR u IN users FILTER u.email == @e RETURN u")
    ///     .bind("e", "ann@example.com")?
    ///     .explain()
    ///     .await?;
    /// println!("{plan}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn explain(self) -> Result<String> {
        let request = self.request(true);
        // Runs nothing, so it may be sent again after a connection failure.
        let response: wire::QueryResponse = self
            .client
            .call_as(OpCode::OpQuery, &request, Resend::Read)
            .await?;
        Ok(response.stats.map(|s| s.plan).unwrap_or_default())
    }

    fn request(&self, explain: bool) -> wire::QueryRequest {
        wire::QueryRequest {
            aql_query: self.aql.clone(),
            bind_vars: self.bind_vars.clone(),
            batch_size: self.batch_size,
            database: self.client.database_field(),
            transaction_id: self.transaction.as_deref().unwrap_or_default().to_owned(),
            explain,
            ..Default::default()
        }
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<wire::QueryResponse>> + Send>>;

/// A query's results, one `Result<T>` at a time; see [`Query::stream`].
///
/// Holds one batch; the next is fetched when this one is drained. Dropping the
/// stream before its end closes the server's cursor.
pub struct QueryStream<T> {
    client: Client,
    batch_size: i32,
    /// Results of the current batch not yet handed out, as JSON.
    buffer: VecDeque<Bytes>,
    /// The server's cursor while it holds more results.
    cursor_id: Option<String>,
    /// The `OP_CURSOR_NEXT` in flight.
    pending: Option<Fetch>,
    stats: QueryStats,
    batches: u64,
    /// Set after an error: nothing more is handed out.
    finished: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for QueryStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryStream")
            .field("buffered", &self.buffer.len())
            .field("cursor_id", &self.cursor_id)
            .field("batches_fetched", &self.batches)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T> QueryStream<T> {
    /// What the server reported so far (counters as of the latest batch).
    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// Batches received so far, the first one included (one per round trip).
    pub fn batches_fetched(&self) -> u64 {
        self.batches
    }

    /// The server's cursor id while it holds more results; `None` once the last
    /// batch has arrived (or the result fit in one).
    pub fn cursor_id(&self) -> Option<&str> {
        self.cursor_id.as_deref()
    }

    fn absorb(&mut self, response: wire::QueryResponse) {
        self.batches += 1;
        if let Some(s) = &response.stats {
            self.stats.absorb(s);
        }
        self.buffer.extend(response.results);
        self.cursor_id =
            (response.has_more && !response.cursor_id.is_empty()).then_some(response.cursor_id);
    }

    fn fetch_next(&self, cursor_id: String) -> Fetch {
        let client = self.client.clone();
        let request = wire::CursorNextRequest {
            cursor_id,
            batch_size: self.batch_size,
            ..Default::default()
        };
        Box::pin(async move { client.call(OpCode::OpCursorNext, &request).await })
    }
}

impl<T: DeserializeOwned> Stream for QueryStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(json) = this.buffer.pop_front() {
                return Poll::Ready(Some(serde_json::from_slice(&json).map_err(Into::into)));
            }
            if let Some(fetch) = this.pending.as_mut() {
                let answer = std::task::ready!(fetch.as_mut().poll(cx));
                this.pending = None;
                match answer {
                    Ok(response) => this.absorb(response),
                    Err(e) => {
                        this.finished = true;
                        // The server drops a cursor whose fetch failed in the query;
                        // only a client-side failure (a timeout) leaves it to close.
                        if e.code() != Some(ErrorCode::ErrTimeout) {
                            this.cursor_id = None;
                        }
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                continue;
            }
            match &this.cursor_id {
                Some(id) => this.pending = Some(this.fetch_next(id.clone())),
                None => return Poll::Ready(None),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let buffered = if self.finished { 0 } else { self.buffer.len() };
        let upper = self.cursor_id.is_none().then_some(buffered);
        (buffered, upper)
    }
}

impl<T> Drop for QueryStream<T> {
    fn drop(&mut self) {
        let Some(cursor_id) = self.cursor_id.take() else {
            return;
        };
        // No runtime (dropped outside tokio): the server's idle TTL closes it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            let request = wire::CursorCloseRequest {
                cursor_id,
                ..Default::default()
            };
            // Fire and forget: a cursor already gone (expired, or exhausted by a
            // fetch that raced this close) is fine.
            let closed: Result<wire::CursorCloseResponse> =
                client.raw_request(OpCode::OpCursorClose, &request).await;
            if let Err(e) = closed {
                tracing::debug!(error = %e, "closing a dropped query cursor failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_latest_counters_and_sum_time() {
        let mut s = QueryStats::default();
        s.absorb(&wire::QueryStats {
            execution_time_us: 100,
            documents_scanned: 10,
            index_lookups: 1,
            writes_executed: 0,
            rows_returned: 10,
            plan: String::new(),
        });
        s.absorb(&wire::QueryStats {
            execution_time_us: 50,
            documents_scanned: 20,
            index_lookups: 2,
            writes_executed: 0,
            rows_returned: 20,
            plan: String::new(),
        });
        assert_eq!(s.execution_time, Duration::from_micros(150));
        assert_eq!(s.documents_scanned, 20);
        assert_eq!(s.index_lookups, 2);
        assert_eq!(s.rows_returned, 20);
    }
}
