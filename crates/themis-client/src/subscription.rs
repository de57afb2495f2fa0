//! Change subscriptions: [`Client::subscribe`] with [`SubscribeOptions`] returns a
//! [`Subscription`], a [`futures::Stream`] of [`ChangeEvent`]s that keeps itself going.
//!
//! On the wire one `OP_SUBSCRIBE` is answered by a `SubscribeResponse`, then by
//! `OP_EVENT` frames with the same request id, in increasing sequence order, each
//! change once, until a final `END` event. The connection hands those frames to a
//! stream waiter (see `connection`), at most [`SubscribeOptions::buffer`] of them
//! waiting for the consumer; this module turns them into typed events and handles
//! every way a subscription can stop:
//!
//! | what happened | what the `Subscription` does |
//! |---|---|
//! | `END` `lagged`: the server's buffer for it filled up | subscribes again from the last delivered sequence |
//! | overflow: the client-side buffer filled up | `UNSUBSCRIBE`s the old one, subscribes again from the last delivered sequence |
//! | connection lost: EOF, I/O error, GOAWAY, connection-level error | reconnects (session token, else credentials), subscribes again from the last delivered sequence |
//! | `END` `unsubscribed` or `dropped` | ends the stream |
//! | the resume point is older than the server's change log (`ERR_INVALID_ARGUMENT`) | yields that error, ends the stream |
//! | [`SubscribeOptions::reconnect`] used up | yields the last error, ends the stream |
//!
//! Subscribing again from the last delivered sequence loses nothing and repeats
//! nothing: the server sends every retained change after that sequence.
//!
//! Invariants:
//! * Delivered sequences strictly increase: an event at or below the last delivered
//!   sequence is skipped. Belt and braces — the server already sends each change
//!   exactly once and in order; this only guards resumptions against a server that
//!   gets it wrong.
//! * Memory is bounded: at most `buffer` events wait per subscription, and the
//!   connection's reader never waits for the consumer.
//! * After an error item the stream ends; [`Subscription::last_sequence`] then says
//!   where to subscribe again.
//! * While it waits for events, a subscription pings its connection often enough that
//!   the server's idle timeout (which counts only frames from the client) never closes
//!   it.
//! * Dropping a live subscription sends `UNSUBSCRIBE` from a spawned task (fire and
//!   forget); without a runtime, it ends with its connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use prost::Message;
use serde::de::DeserializeOwned;
use themis_proto::{wire, ErrorCode, OpCode};
use tokio::time::{Instant, Sleep};

use crate::client::{decode_frame, Client};
use crate::connection::{Frame, FrameStream, StreamItem};
use crate::error::{check, Error, ErrorKind, Result};
use crate::retry::{Retry, RetryPolicy};

/// Events a subscription buffers for a slow consumer unless told otherwise.
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 1024;

/// The server's idle timeout when its handshake does not say (the contract's default).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

/// One change to one document, as a [`Subscription`] delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// Position in the database's change log; increases with every change.
    pub sequence: u64,
    pub kind: ChangeKind,
    pub collection: String,
    /// The document's `_key`.
    pub key: String,
    /// The document's `_rev` after the change.
    pub revision: String,
    /// The new version of the document, when the subscription asked for documents
    /// ([`SubscribeOptions::include_documents`]); `None` for deletes.
    pub document: Option<serde_json::Value>,
    /// When the change was committed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl ChangeEvent {
    /// The document as a `T`; `None` when the event carries none.
    pub fn document_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.document
            .as_ref()
            .map(|doc| T::deserialize(doc).map_err(Error::from))
            .transpose()
    }
}

/// What to subscribe to, built from [`SubscribeOptions::collection`] or
/// [`SubscribeOptions::database`].
///
/// ```
/// use themis_client::SubscribeOptions;
///
/// let options = SubscribeOptions::collection("orders")
///     .filter("doc.total > 100")
///     .include_documents(true)
///     .from_sequence(41);
/// assert_eq!(options.collection.as_deref(), Some("orders"));
/// assert!(SubscribeOptions::database().collection.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// The collection to watch; `None` = every collection of the handle's database.
    pub collection: Option<String>,
    /// An AQL boolean expression over `doc`; only changes it holds for are sent.
    pub filter: Option<String>,
    /// Send each changed document's new version. Default `false`.
    pub include_documents: bool,
    /// Start after this sequence (the server replays every retained change after it;
    /// 0 = the whole retained log). `None` = only changes from now on.
    pub from_sequence: Option<u64>,
    /// Events that may wait for a slow consumer (at least 1; default
    /// [`DEFAULT_SUBSCRIPTION_BUFFER`]). When it is full, the subscription drops what
    /// does not fit and subscribes again from the last event delivered.
    pub buffer: usize,
    /// How to get going again after the connection is lost. Default:
    /// [`RetryPolicy::default`].
    pub reconnect: RetryPolicy,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::database()
    }
}

impl SubscribeOptions {
    /// Changes to collection `name`.
    pub fn collection(name: impl Into<String>) -> Self {
        Self {
            collection: Some(name.into()),
            ..Self::database()
        }
    }

    /// Changes to every collection of the database.
    pub fn database() -> Self {
        Self {
            collection: None,
            filter: None,
            include_documents: false,
            from_sequence: None,
            buffer: DEFAULT_SUBSCRIPTION_BUFFER,
            reconnect: RetryPolicy::default(),
        }
    }

    /// Only changes for which the AQL expression `aql` over `doc` is true, e.g.
    /// `doc.status == "paid"`.
    pub fn filter(mut self, aql: impl Into<String>) -> Self {
        self.filter = Some(aql.into());
        self
    }

    /// Sets [`Self::include_documents`].
    pub fn include_documents(mut self, include: bool) -> Self {
        self.include_documents = include;
        self
    }

    /// Sets [`Self::from_sequence`]: continue after `sequence`, typically a
    /// [`Subscription::last_sequence`] saved earlier.
    pub fn from_sequence(mut self, sequence: u64) -> Self {
        self.from_sequence = Some(sequence);
        self
    }

    /// Sets [`Self::buffer`].
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// Sets [`Self::reconnect`].
    pub fn reconnect(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    fn request(&self, database: String) -> wire::SubscribeRequest {
        wire::SubscribeRequest {
            collection: self.collection.clone().unwrap_or_default(),
            filter: self.filter.clone().unwrap_or_default(),
            from_sequence: self.from_sequence,
            include_documents: self.include_documents,
            database,
            ..Default::default()
        }
    }
}

impl Client {
    /// Subscribes to changes in this handle's database; see [`Subscription`].
    ///
    /// Returns once the server accepted the subscription, so a bad collection,
    /// filter or `from_sequence` is an error here.
    pub async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription> {
        let request = options.request(self.database_field());
        let buffer = options.buffer.max(1);
        let (frames, response, client) = open(self, &request, buffer).await?;
        let position = options.from_sequence.unwrap_or(response.current_sequence);
        if position > response.current_sequence {
            tracing::warn!(
                from_sequence = position,
                current_sequence = response.current_sequence,
                "subscribing from a sequence the database has not reached yet"
            );
        }
        let keepalive_every = keepalive_interval(&client);
        Ok(Subscription {
            client,
            request,
            buffer,
            reconnect: options.reconnect,
            state: State::Active {
                frames,
                subscription_id: response.subscription_id,
            },
            position,
            current_sequence_at_start: response.current_sequence,
            unsubscribing: false,
            keepalive: Box::pin(tokio::time::sleep(keepalive_every)),
            keepalive_every,
        })
    }
}

/// A live subscription: a [`Stream`] of `Result<ChangeEvent>` that resumes by itself
/// after lagging, overflowing or losing its connection (see the module docs), and
/// ends after [`Subscription::unsubscribe`], when its collection or database is
/// dropped, or after an error.
///
/// ```no_run
/// use futures::TryStreamExt;
/// use serde::Deserialize;
/// use themis_client::{ChangeKind, SubscribeOptions};
///
/// #[derive(Debug, Deserialize)]
/// struct Order {
///     total: f64,
/// }
///
/// # async fn example(client: themis_client::Client) -> themis_client::Result<()> {
/// let mut changes = client
///     .subscribe(SubscribeOptions::collection("orders").include_documents(true))
///     .await?;
/// while let Some(change) = changes.try_next().await? {
///     match change.kind {
///         ChangeKind::Delete => println!("order {} deleted", change.key),
///         _ => println!("order {}: {:?}", change.key, change.document_as::<Order>()?),
///     }
///     // Persist this to continue later with SubscribeOptions::from_sequence.
///     let _checkpoint = changes.last_sequence();
/// }
/// # Ok(())
/// # }
/// ```
///
/// A subscription holds a slot on one of the pool's connections (so idle reaping
/// leaves that connection alone); one that had to reconnect takes a slot on another.
pub struct Subscription {
    /// The handle pinned to the connection that carries the subscription now.
    client: Client,
    /// What to send when subscribing again (`from_sequence` is set each time).
    request: wire::SubscribeRequest,
    buffer: usize,
    reconnect: RetryPolicy,
    state: State,
    /// The sequence of the last event delivered, or where the subscription started.
    position: u64,
    current_sequence_at_start: u64,
    /// `unsubscribe` was called: whatever ends the stream now ends it for good.
    unsubscribing: bool,
    keepalive: Pin<Box<Sleep>>,
    keepalive_every: Duration,
}

type Resume = Pin<Box<dyn Future<Output = Result<Opened>> + Send>>;

enum State {
    Active {
        frames: FrameStream,
        subscription_id: String,
    },
    /// Subscribing again, perhaps after reconnecting.
    Resuming(Resume),
    Ended,
}

/// A subscription the server accepted, and the handle it went out on.
struct Opened {
    client: Client,
    frames: FrameStream,
    response: wire::SubscribeResponse,
}

/// What one received item means for the consumer.
enum Step {
    Deliver(ChangeEvent),
    Fail(Error),
    Finish,
    /// Nothing to hand out (a skipped duplicate, or resuming): look again.
    Again,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Active {
                subscription_id, ..
            } => subscription_id.as_str(),
            State::Resuming(_) => "(resuming)",
            State::Ended => "(ended)",
        };
        f.debug_struct("Subscription")
            .field("subscription_id", &state)
            .field("collection", &self.request.collection)
            .field("last_sequence", &self.position)
            .field("current_sequence_at_start", &self.current_sequence_at_start)
            .finish()
    }
}

impl Subscription {
    /// The sequence of the last event delivered; before the first one, the sequence
    /// the subscription started after (its `from_sequence`, or
    /// [`Self::current_sequence_at_start`]). Every change up to it has been delivered
    /// or was before the start, so [`SubscribeOptions::from_sequence`] with it
    /// continues with no gap and no repeat.
    pub fn last_sequence(&self) -> u64 {
        self.position
    }

    /// The database's latest sequence when the server accepted the subscription.
    pub fn current_sequence_at_start(&self) -> u64 {
        self.current_sequence_at_start
    }

    /// Ends the subscription. Events the server sent before it took the request are
    /// still delivered; then the stream ends. Ending one whose connection is already
    /// gone succeeds.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        self.unsubscribing = true;
        let subscription_id = match &self.state {
            State::Active {
                subscription_id, ..
            } => subscription_id.clone(),
            State::Resuming(_) | State::Ended => {
                self.state = State::Ended;
                return Ok(());
            }
        };
        match unsubscribe(&self.client, subscription_id).await {
            Err(e) if e.is_connection_error() => {
                self.state = State::Ended;
                Ok(())
            }
            other => other,
        }
    }

    /// Handles one item from the connection.
    fn on_item(&mut self, item: StreamItem) -> Step {
        match item {
            StreamItem::Frame(frame) => {
                match decode_frame::<wire::ChangeEvent>(OpCode::OpSubscribe, OpCode::OpEvent, frame)
                {
                    Ok(event) => self.on_event(event),
                    Err(e) => Step::Fail(e),
                }
            }
            _ if self.unsubscribing => Step::Finish,
            StreamItem::Overflowed => {
                tracing::warn!(
                    buffer = self.buffer,
                    last_sequence = self.position,
                    "subscription consumer fell a whole buffer behind; subscribing again from the last delivered event"
                );
                let stale = match std::mem::replace(&mut self.state, State::Ended) {
                    State::Active {
                        subscription_id, ..
                    } => Some(subscription_id),
                    _ => None,
                };
                self.resume(stale, false, None);
                Step::Again
            }
            StreamItem::Failed(e) => {
                tracing::info!(
                    error = %e,
                    last_sequence = self.position,
                    "subscription lost its connection; reconnecting"
                );
                self.resume(None, true, e.retry_after());
                Step::Again
            }
        }
    }

    fn on_event(&mut self, event: wire::ChangeEvent) -> Step {
        let kind = match wire::ChangeKind::try_from(event.kind) {
            Ok(wire::ChangeKind::Insert) => ChangeKind::Insert,
            Ok(wire::ChangeKind::Update) => ChangeKind::Update,
            Ok(wire::ChangeKind::Delete) => ChangeKind::Delete,
            Ok(wire::ChangeKind::End) => return self.on_end(event),
            Err(_) => {
                return Step::Fail(Error::Protocol(format!(
                    "change event {} has kind {}, which this client does not know; upgrade themis-client",
                    event.sequence, event.kind
                )))
            }
        };
        if event.sequence <= self.position {
            tracing::debug!(
                sequence = event.sequence,
                last_sequence = self.position,
                "skipping a change event at or before the last one delivered"
            );
            return Step::Again;
        }
        // Delivered even if its document is unusable: an error in its place.
        self.position = event.sequence;
        let document = if event.document.is_empty() {
            None
        } else {
            match serde_json::from_slice(&event.document) {
                Ok(doc) => Some(doc),
                Err(e) => return Step::Fail(e.into()),
            }
        };
        Step::Deliver(ChangeEvent {
            sequence: event.sequence,
            kind,
            collection: event.collection,
            key: event.document_id,
            revision: event.revision,
            document,
            timestamp_ms: event.timestamp_ms,
        })
    }

    fn on_end(&mut self, event: wire::ChangeEvent) -> Step {
        match event.end_reason.as_str() {
            "lagged" if !self.unsubscribing => {
                if event.resume_sequence != self.position {
                    tracing::debug!(
                        server = event.resume_sequence,
                        client = self.position,
                        "lagged subscription: resuming from the last sequence delivered here"
                    );
                }
                tracing::info!(
                    last_sequence = self.position,
                    "subscription lagged behind the server's buffer; subscribing again"
                );
                // The server ended that subscription; nothing to unsubscribe.
                self.resume(None, false, None);
                Step::Again
            }
            "lagged" | "unsubscribed" | "dropped" => Step::Finish,
            other => Step::Fail(Error::Protocol(format!(
                "the server ended subscription {} with end_reason {other:?}, which this client does not know; upgrade themis-client",
                event.subscription_id
            ))),
        }
    }

    /// Starts subscribing again from the last delivered sequence: on a new connection
    /// when `reconnect`, after unsubscribing `stale` on the current one when given.
    fn resume(&mut self, stale: Option<String>, reconnect: bool, wait: Option<Duration>) {
        let mut request = self.request.clone();
        request.from_sequence = Some(self.position);
        self.state = State::Resuming(Box::pin(resume(
            self.client.clone(),
            request,
            self.buffer,
            self.reconnect.clone(),
            stale,
            reconnect,
            wait,
        )));
    }

    fn resumed(&mut self, opened: Opened) {
        tracing::info!(
            after = self.position,
            subscription_id = %opened.response.subscription_id,
            "subscription resumed"
        );
        self.client = opened.client;
        self.state = State::Active {
            frames: opened.frames,
            subscription_id: opened.response.subscription_id,
        };
        self.keepalive_every = keepalive_interval(&self.client);
        self.keepalive
            .as_mut()
            .reset(Instant::now() + self.keepalive_every);
    }

    /// Pings when the keep-alive timer is due, and re-arms it (registering `cx`).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) {
        while self.keepalive.as_mut().poll(cx).is_ready() {
            self.keepalive
                .as_mut()
                .reset(Instant::now() + self.keepalive_every);
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                continue;
            };
            let client = self.client.clone();
            runtime.spawn(async move {
                if let Err(e) = client.ping().await {
                    tracing::debug!(error = %e, "subscription keep-alive ping failed");
                }
            });
        }
    }
}

impl Stream for Subscription {
    type Item = Result<ChangeEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let step = match &mut this.state {
                State::Ended => return Poll::Ready(None),
                State::Resuming(resuming) => match std::task::ready!(resuming.as_mut().poll(cx)) {
                    Ok(opened) => {
                        this.resumed(opened);
                        continue;
                    }
                    Err(e) => Step::Fail(e),
                },
                State::Active { frames, .. } => match frames.poll_recv(cx) {
                    Poll::Ready(item) => this.on_item(item),
                    Poll::Pending => {
                        this.poll_keepalive(cx);
                        return Poll::Pending;
                    }
                },
            };
            match step {
                Step::Deliver(event) => return Poll::Ready(Some(Ok(event))),
                Step::Again => continue,
                Step::Finish => {
                    this.state = State::Ended;
                    return Poll::Ready(None);
                }
                Step::Fail(e) => {
                    this.state = State::Ended;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let State::Active {
            subscription_id, ..
        } = &mut self.state
        else {
            return;
        };
        if self.unsubscribing {
            return;
        }
        // No runtime: the subscription ends with its connection.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let subscription_id = std::mem::take(subscription_id);
        runtime.spawn(async move {
            if let Err(e) = unsubscribe(&client, subscription_id).await {
                tracing::debug!(error = %e, "unsubscribing a dropped subscription failed");
            }
        });
    }
}

/// Sends the SUBSCRIBE and waits for the server to accept it. Returns the stream, the
/// answer, and a handle pinned to the connection that carries it.
async fn open(
    client: &Client,
    request: &wire::SubscribeRequest,
    buffer: usize,
) -> Result<(FrameStream, wire::SubscribeResponse, Client)> {
    let (first, frames, pinned) = client
        .request_stream(OpCode::OpSubscribe, request, buffer, ends_subscription)
        .await?;
    let response: wire::SubscribeResponse = check(decode_frame(
        OpCode::OpSubscribe,
        OpCode::OpSubscribe,
        first,
    )?)?;
    if response.subscription_id.is_empty() {
        return Err(Error::Protocol(
            "SUBSCRIBE succeeded without a subscription_id".to_owned(),
        ));
    }
    Ok((frames, response, pinned))
}

async fn unsubscribe(client: &Client, subscription_id: String) -> Result<()> {
    let request = wire::UnsubscribeRequest {
        subscription_id,
        ..Default::default()
    };
    let _: wire::UnsubscribeResponse = client.call(OpCode::OpUnsubscribe, &request).await?;
    Ok(())
}

/// Subscribes again with `request`, retrying under `policy` while the failures are
/// about the connection or the server says to retry. See [`Subscription::resume`].
async fn resume(
    mut client: Client,
    request: wire::SubscribeRequest,
    buffer: usize,
    policy: RetryPolicy,
    stale: Option<String>,
    mut reconnect: bool,
    wait: Option<Duration>,
) -> Result<Opened> {
    if let Some(subscription_id) = stale {
        // Best effort: the server stops sending for it, and ends it with the
        // connection at the latest.
        if let Err(e) = unsubscribe(&client, subscription_id).await {
            tracing::debug!(error = %e, "unsubscribing an overflowed subscription failed");
        }
    }
    if let Some(wait) = wait {
        // The server's hint (GOAWAY's reconnect_after_ms), within the policy's time.
        tokio::time::sleep(wait.min(policy.max_elapsed)).await;
    }
    let mut retry = Retry::new(&policy);
    loop {
        let attempt = async {
            if reconnect {
                client = client.unpinned();
                reconnect = false;
            }
            open(&client, &request, buffer).await
        };
        let error = match attempt.await {
            Ok((frames, response, pinned)) => {
                return Ok(Opened {
                    client: pinned,
                    frames,
                    response,
                })
            }
            Err(e) if e.kind() == ErrorKind::Connection || e.is_retryable() => e,
            Err(e) => {
                if e.code() == Some(ErrorCode::ErrInvalidArgument) {
                    tracing::warn!(error = %e, from_sequence = ?request.from_sequence, "the server refused to resume the subscription");
                }
                return Err(e);
            }
        };
        // A connection that timed out may be dead without knowing it yet.
        reconnect = reconnect || client.is_closed() || matches!(error, Error::Timeout { .. });
        let Some(delay) = retry.next_delay(error.retry_after()) else {
            tracing::warn!(attempts = retry.failures(), error = %error, "subscription gives up reconnecting");
            return Err(error);
        };
        tracing::debug!(attempt = retry.failures(), ?delay, error = %error, "subscribing again failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// The stream waiter's rule for a subscription's final frame: a failed
/// `SubscribeResponse`, an `END` event, or anything that is neither a response nor an
/// event (the consumer reports it and stops).
fn ends_subscription(frame: &Frame) -> bool {
    match OpCode::try_from(frame.opcode) {
        Ok(OpCode::OpEvent) => EventKind::decode(frame.body.clone())
            .map_or(true, |e| e.kind == wire::ChangeKind::End as i32),
        Ok(OpCode::OpSubscribe) => {
            wire::SubscribeResponse::decode(frame.body.clone()).map_or(true, |r| !r.success)
        }
        _ => true,
    }
}

/// Field 3 (`kind`) of a `ChangeEvent` alone: the connection's reader looks at every
/// event's kind and should not decode the rest (which may carry a whole document).
#[derive(Clone, PartialEq, Message)]
struct EventKind {
    #[prost(int32, tag = "3")]
    kind: i32,
}

/// How often to ping so the server's idle timeout never fires.
fn keepalive_interval(client: &Client) -> Duration {
    let idle = match client.server_info().idle_timeout_ms {
        0 => DEFAULT_IDLE_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    (idle / 3).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame<M: Message>(opcode: OpCode, msg: &M) -> Frame {
        Frame {
            opcode: opcode as i32,
            body: msg.encode_to_vec().into(),
        }
    }

    fn event(kind: wire::ChangeKind) -> wire::ChangeEvent {
        wire::ChangeEvent {
            subscription_id: "s".into(),
            sequence: 5,
            kind: kind as i32,
            collection: "users".into(),
            document_id: "alice".into(),
            document: Bytes::from_static(br#"{"_key":"alice","age":30}"#),
            revision: "_r1".into(),
            timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn end_events_failed_responses_and_strangers_end_the_stream() {
        use wire::ChangeKind as K;
        for kind in [K::Insert, K::Update, K::Delete] {
            assert!(!ends_subscription(&frame(OpCode::OpEvent, &event(kind))));
        }
        assert!(ends_subscription(&frame(OpCode::OpEvent, &event(K::End))));
        let ok = wire::SubscribeResponse {
            success: true,
            subscription_id: "s".into(),
            ..Default::default()
        };
        assert!(!ends_subscription(&frame(OpCode::OpSubscribe, &ok)));
        let failed = wire::SubscribeResponse::default();
        assert!(ends_subscription(&frame(OpCode::OpSubscribe, &failed)));
        assert!(ends_subscription(&frame(
            OpCode::OpPong,
            &wire::Pong::default()
        )));
        let garbage = Frame {
            opcode: OpCode::OpEvent as i32,
            body: Bytes::from_static(&[0xFF, 0xFF, 0xFF]),
        };
        assert!(ends_subscription(&garbage));
    }

    #[test]
    fn options_become_the_subscribe_request() {
        let r = SubscribeOptions::database().request(String::new());
        assert_eq!(r, wire::SubscribeRequest::default());
        let r = SubscribeOptions::collection("users")
            .filter("doc.age > 21")
            .include_documents(true)
            .from_sequence(0)
            .request("shop".into());
        assert_eq!(r.collection, "users");
        assert_eq!(r.filter, "doc.age > 21");
        assert!(r.include_documents);
        assert_eq!(r.from_sequence, Some(0), "0 replays the retained log");
        assert_eq!(r.database, "shop");
        assert_eq!(
            SubscribeOptions::default().buffer,
            DEFAULT_SUBSCRIPTION_BUFFER
        );
    }

    #[test]
    fn typed_documents() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct User {
            age: u32,
        }
        let mut e = ChangeEvent {
            sequence: 1,
            kind: ChangeKind::Insert,
            collection: "users".into(),
            key: "alice".into(),
            revision: "_r1".into(),
            document: Some(serde_json::json!({ "_key": "alice", "age": 30 })),
            timestamp_ms: 0,
        };
        assert_eq!(e.document_as::<User>().unwrap(), Some(User { age: 30 }));
        assert!(matches!(
            e.document_as::<Vec<u8>>(),
            Err(Error::Serialization(_))
        ));
        e.document = None;
        assert_eq!(e.document_as::<User>().unwrap(), None);
    }
}
