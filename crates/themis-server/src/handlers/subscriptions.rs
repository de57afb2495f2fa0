//! OP_SUBSCRIBE, OP_UNSUBSCRIBE, and the OP_EVENT stream of each subscription.
//!
//! A SUBSCRIBE is checked (names, filter, the per-connection cap), registers with the
//! database's change feed ([`themis_storage::ChangeFeed`]) and is answered with its
//! `subscription_id` and the database's `current_sequence`. Only once that answer is
//! queued does the subscription's task start (the connection calls
//! [`Subscriptions::start`]), so the answer always precedes the first event. The task
//! replays the change log from `from_sequence` (on a query thread: it reads storage),
//! then follows the live feed, and sends one `OP_EVENT` per matching change on the
//! SUBSCRIBE's `request_id`:
//!
//! * `collection` empty follows every collection of the database; a named collection
//!   follows only that one, whether or not it exists yet (the database must): a
//!   subscription can wait for a collection's first document. Dropping the followed
//!   collection ends the subscription with `END dropped`, `resume_sequence` = the
//!   drop's own sequence.
//! * The filter, an AQL expression over `doc`, is compiled once at SUBSCRIBE and
//!   evaluated on the new version of each document (on the deleted version for a
//!   delete). A document for which it fails at run time (rare in AQL) does not match.
//!   Replayed changes are judged and encoded on the query thread that read them; live
//!   ones on the subscription's task.
//! * Every change considered advances the subscription's position, matching or not,
//!   so a `resume_sequence` may name a change the subscriber never saw: it means
//!   "everything up to here was considered".
//!
//! **Flow control.** Events go through the connection's writer within its event budget
//! ([`EventSink`]); a task whose client does not read waits for that budget and
//! stops taking changes from its feed. The feed's live queue (`buffer_events`
//! changes) then overflows and the feed reports the subscription as lagged; the
//! client, once it reads again, receives what was queued and then `END lagged` with
//! the `resume_sequence` to subscribe again from (the change log replays the rest).
//! So a subscriber that never reads costs at most `buffer_events` changes, one replay
//! batch and the connection's event budget; publishers never wait for it. A queue
//! that overflows while the client keeps up (no event had to wait for the budget:
//! one commit brought more changes than `buffer_events`, say) is not a lag: the task
//! catches up from the log ([`FeedSubscription::catch_up`]) and carries on.
//!
//! A subscription ends with `END` (`lagged`, `dropped`, `unsubscribed`), or silently
//! when its connection closes ([`Subscriptions::close`]), and its task ends with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use themis_aql::filter::Filter;
use themis_proto::wire::{
    self, ChangeEvent, ErrorCode, OpCode, SubscribeRequest, SubscribeResponse, UnsubscribeRequest,
    UnsubscribeResponse,
};
use themis_proto::{encode_frame, ErrorExt, FrameCodec};
use themis_storage::{ChangeKind, ChangeRecord, FeedItem, FeedSubscription, StorageError};
use tokio::sync::oneshot;
use tracing::{debug, warn, Instrument};

use super::{database_of, fail, invalid, storage_error};
use crate::connection::EventSink;
use crate::session::Session;
use crate::Shared;

/// Most changes one replay step reads from the log.
const REPLAY_BATCH_MAX: usize = 256;
/// Roughly how many bytes of documents one replay step holds: steps shrink for large
/// documents (down to one change) so a replay's memory does not grow with them.
const REPLAY_BATCH_BYTES: usize = 1024 * 1024;

/// One connection's subscriptions.
#[derive(Default)]
pub(crate) struct Subscriptions {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    /// The connection's writer, from [`Subscriptions::open`] until
    /// [`Subscriptions::close`].
    sink: Option<EventSink>,
    closed: bool,
    /// Accepted subscriptions whose SUBSCRIBE answer is not queued yet, by the
    /// SUBSCRIBE's request id.
    starting: HashMap<u64, Starting>,
    /// Running subscriptions by id: dropping the sender stops the task silently,
    /// sending on it ends the subscription with `END unsubscribed`.
    running: HashMap<String, oneshot::Sender<Unsubscribe>>,
}

struct Starting {
    spec: Arc<Spec>,
    feed: FeedSubscription,
}

/// An UNSUBSCRIBE for a running subscription; answered once its END is queued.
struct Unsubscribe {
    done: oneshot::Sender<()>,
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

impl Subscriptions {
    /// Binds the registry to its connection's writer.
    pub(crate) fn open(&self, sink: EventSink) {
        lock(&self.registry).sink = Some(sink);
    }

    /// Ends every subscription of a closing connection: their tasks stop without
    /// another frame, and later SUBSCRIBEs are refused.
    pub(crate) fn close(&self) {
        let mut r = lock(&self.registry);
        r.closed = true;
        r.sink = None;
        r.starting.clear();
        r.running.clear();
    }

    /// Starts the subscription accepted by SUBSCRIBE `request_id`, now that its answer
    /// is queued. Does nothing for a SUBSCRIBE that failed.
    pub(crate) fn start(&self, request_id: u64, shared: &Arc<Shared>) {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (spec, feed, sink) = {
            let mut r = lock(&self.registry);
            let Some(Starting { spec, feed }) = r.starting.remove(&request_id) else {
                return;
            };
            let Some(sink) = r.sink.clone() else {
                return;
            };
            r.running.insert(spec.id.clone(), stop_tx);
            (spec, feed, sink)
        };
        // Outside the lock: the guard takes it when the task ends, which may be at
        // once (a runtime shutting down drops what is spawned onto it).
        let guard = TaskGuard::new(self.registry.clone(), spec.id.clone(), shared);
        let span = tracing::debug_span!("subscription", id = %spec.id, request_id);
        tokio::spawn(run(shared.clone(), sink, feed, spec, stop_rx, guard).instrument(span));
    }
}

impl Drop for Subscriptions {
    /// However the connection's state goes away (its task aborted, say), its
    /// subscriptions end with it.
    fn drop(&mut self) {
        self.close();
    }
}

/// Held by a subscription task: when the task ends, however it ends, it leaves the
/// registry and the server's count of open subscriptions.
struct TaskGuard {
    registry: Arc<Mutex<Registry>>,
    id: String,
    open: Arc<AtomicUsize>,
}

impl TaskGuard {
    fn new(registry: Arc<Mutex<Registry>>, id: String, shared: &Shared) -> Self {
        shared.open_subscriptions.fetch_add(1, Ordering::Relaxed);
        Self {
            registry,
            id,
            open: shared.open_subscriptions.clone(),
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        lock(&self.registry).running.remove(&self.id);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one subscription follows, and how its events are encoded.
struct Spec {
    id: String,
    request_id: u64,
    /// Empty: every collection of the database.
    collection: String,
    filter: Option<Filter>,
    include_documents: bool,
    codec: FrameCodec,
}

/// What a change means for a subscription.
enum Verdict {
    /// Not followed, or filtered out: only the position advances.
    Skip,
    Event(Bytes),
    /// The followed collection was dropped: the subscription ends.
    CollectionDropped,
}

impl Spec {
    fn judge(&self, r: &ChangeRecord) -> Verdict {
        let followed = self.collection.is_empty() || r.collection == self.collection;
        let kind = match r.kind {
            ChangeKind::CollectionDropped if !self.collection.is_empty() && followed => {
                return Verdict::CollectionDropped
            }
            ChangeKind::CollectionDropped => return Verdict::Skip,
            _ if !followed => return Verdict::Skip,
            ChangeKind::Insert => wire::ChangeKind::Insert,
            ChangeKind::Update => wire::ChangeKind::Update,
            ChangeKind::Delete => wire::ChangeKind::Delete,
        };
        if let Some(filter) = &self.filter {
            if !self.passes(filter, r) {
                return Verdict::Skip;
            }
        }
        let document = if self.include_documents && kind != wire::ChangeKind::Delete {
            r.document.clone()
        } else {
            Bytes::new()
        };
        let mut event = ChangeEvent {
            subscription_id: self.id.clone(),
            sequence: r.sequence,
            kind: kind as i32,
            collection: r.collection.clone(),
            document_id: r.key.clone(),
            document,
            revision: r.revision.clone(),
            timestamp_ms: r.timestamp_ms,
            ..Default::default()
        };
        if let Some(frame) = self.encode(&event) {
            return Verdict::Event(frame);
        }
        // Only a document near max_frame_bytes gets here: the event still goes, and
        // the client reads the document itself.
        warn!(
            sequence = r.sequence,
            bytes = r.document.len(),
            "document too large for an event frame; sending the event without it"
        );
        event.document = Bytes::new();
        match self.encode(&event) {
            Some(frame) => Verdict::Event(frame),
            None => Verdict::Skip,
        }
    }

    /// The filter on the stored document (the deleted version for a delete).
    fn passes(&self, filter: &Filter, r: &ChangeRecord) -> bool {
        let doc: Value = match serde_json::from_slice(&r.document) {
            Ok(doc) => doc,
            Err(e) => {
                warn!(sequence = r.sequence, error = %e, "change-log document is not JSON; filter skips it");
                return false;
            }
        };
        match filter.matches(doc) {
            Ok(pass) => pass,
            Err(e) => {
                debug!(sequence = r.sequence, error = %e, "filter failed on a document: not a match");
                false
            }
        }
    }

    fn end_frame(&self, reason: &str, resume_sequence: u64) -> Option<Bytes> {
        self.encode(&ChangeEvent {
            subscription_id: self.id.clone(),
            kind: wire::ChangeKind::End as i32,
            end_reason: reason.to_string(),
            resume_sequence,
            ..Default::default()
        })
    }

    fn encode(&self, event: &ChangeEvent) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        encode_frame(
            &self.codec,
            OpCode::OpEvent,
            self.request_id,
            event,
            &mut buf,
        )
        .ok()?;
        Some(buf.freeze())
    }
}

// ---- requests ---------------------------------------------------------------------

pub(crate) fn subscribe(
    shared: &Shared,
    session: &Session,
    subs: &Subscriptions,
    request_id: u64,
    req: SubscribeRequest,
) -> SubscribeResponse {
    let db = database_of(&req.database, session);
    if !req.collection.is_empty() {
        if let Err(e) = themis_storage::validate_name("collection", &req.collection) {
            return fail(storage_error(e));
        }
    }
    let filter = match req.filter.trim() {
        "" => None,
        text => match Filter::compile(text) {
            Ok(f) => Some(f),
            Err(e) => {
                return fail(wire::Error::new(
                    ErrorCode::ErrQuery,
                    format!("invalid subscription filter: {e}"),
                ))
            }
        },
    };
    let config = &shared.config.subscriptions;
    let mut r = lock(&subs.registry);
    if r.closed {
        return fail(wire::Error::retryable(
            ErrorCode::ErrUnavailable,
            "the connection is closing: subscribe again on a new connection",
            0,
        ));
    }
    let max = config.max_per_connection;
    if r.running.len() + r.starting.len() >= max {
        return fail(wire::Error::new(
            ErrorCode::ErrResourceExhausted,
            format!(
                "this connection already has {max} subscriptions ([subscriptions] max_per_connection): \
                 UNSUBSCRIBE one, follow the whole database with one subscription \
                 (empty collection) and a filter, or open another connection"
            ),
        ));
    }
    // A point read of the catalog, like a READ: done here, not on a query thread.
    let feed = match shared
        .store
        .changes()
        .subscribe(db, req.from_sequence, config.buffer_events)
    {
        Ok(feed) => feed,
        Err(e) => return fail(storage_error(e)),
    };
    let current_sequence = feed.current_sequence();
    let spec = Arc::new(Spec {
        id: super::random_id(),
        request_id,
        collection: req.collection,
        filter,
        include_documents: req.include_documents,
        codec: shared.codec,
    });
    let subscription_id = spec.id.clone();
    r.starting.insert(request_id, Starting { spec, feed });
    debug!(
        %subscription_id,
        db,
        from = ?req.from_sequence,
        current_sequence,
        "subscribed"
    );
    SubscribeResponse {
        success: true,
        subscription_id,
        current_sequence,
        ..Default::default()
    }
}

pub(crate) async fn unsubscribe(
    subs: &Subscriptions,
    req: UnsubscribeRequest,
) -> UnsubscribeResponse {
    if req.subscription_id.is_empty() {
        return invalid(
            "subscription_id is empty: send the id from the SubscribeResponse of the subscription to end",
        );
    }
    let stop = {
        let mut r = lock(&subs.registry);
        let stop = r.running.remove(&req.subscription_id);
        if stop.is_none() {
            // Answered, but its task not started yet: it ends before it begins.
            let starting = r
                .starting
                .iter()
                .find(|(_, s)| s.spec.id == req.subscription_id)
                .map(|(rid, _)| *rid);
            if let Some(Starting { spec, feed }) = starting.and_then(|rid| r.starting.remove(&rid))
            {
                if let (Some(sink), Some(end)) = (
                    r.sink.as_ref(),
                    spec.end_frame("unsubscribed", feed.last_sequence()),
                ) {
                    sink.send_final(end);
                }
                return UnsubscribeResponse {
                    success: true,
                    ..Default::default()
                };
            }
        }
        stop
    };
    let Some(stop) = stop else {
        return fail(wire::Error::new(
            ErrorCode::ErrNotFound,
            format!(
                "subscription '{}' not found on this connection: it has ended (its END event \
                 says why) or was made on another connection",
                req.subscription_id.chars().take(64).collect::<String>()
            ),
        ));
    };
    let (done, acked) = oneshot::channel();
    if stop.send(Unsubscribe { done }).is_ok() {
        // The task answers once its END is queued, so this response follows it. If
        // the task ended meanwhile, its own END was queued before it did.
        let _ = acked.await;
    }
    UnsubscribeResponse {
        success: true,
        ..Default::default()
    }
}

// ---- the event stream -------------------------------------------------------------

/// How a subscription's stream ended.
enum Outcome {
    /// Send `END` with this reason and resume sequence.
    End(&'static str, u64),
    Unsubscribed(oneshot::Sender<()>),
    /// The connection is closing: nothing more to send.
    Closed,
}

async fn run(
    shared: Arc<Shared>,
    sink: EventSink,
    feed: FeedSubscription,
    spec: Arc<Spec>,
    mut stop: oneshot::Receiver<Unsubscribe>,
    _guard: TaskGuard,
) {
    let mut position = feed.last_sequence();
    let outcome = stream(&shared, &sink, feed, &spec, &mut stop, &mut position).await;
    let (reason, resume, done) = match outcome {
        Outcome::End(reason, resume) => (reason, resume, None),
        Outcome::Unsubscribed(done) => ("unsubscribed", position, Some(done)),
        Outcome::Closed => {
            debug!(position, "subscription closed with its connection");
            return;
        }
    };
    debug!(reason, resume, "subscription ended");
    if let Some(frame) = spec.end_frame(reason, resume) {
        sink.send_final(frame);
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

fn stopped(stop: Result<Unsubscribe, oneshot::error::RecvError>) -> Outcome {
    match stop {
        Ok(Unsubscribe { done }) => Outcome::Unsubscribed(done),
        Err(_) => Outcome::Closed,
    }
}

/// One replay step's work, done on a query thread: read the next changes from the log
/// and judge each.
struct ReplayStep {
    /// `None`: caught up, live changes follow.
    verdicts: Option<Vec<(u64, Verdict)>>,
    /// Bytes of documents read, to size the next step.
    bytes: usize,
}

fn replay_step(
    feed: &mut FeedSubscription,
    spec: &Spec,
    max: usize,
) -> Result<ReplayStep, StorageError> {
    let Some(batch) = feed.replay(max)? else {
        return Ok(ReplayStep {
            verdicts: None,
            bytes: 0,
        });
    };
    let bytes = batch.iter().map(|r| r.document.len()).sum();
    let verdicts = batch.iter().map(|r| (r.sequence, spec.judge(r))).collect();
    Ok(ReplayStep {
        verdicts: Some(verdicts),
        bytes,
    })
}

/// Streams events until the subscription ends; `position` follows the last change
/// considered.
async fn stream(
    shared: &Arc<Shared>,
    sink: &EventSink,
    mut feed: FeedSubscription,
    spec: &Arc<Spec>,
    stop: &mut oneshot::Receiver<Unsubscribe>,
    position: &mut u64,
) -> Outcome {
    loop {
        // Whether an event had to wait for the connection's budget since the last
        // catch-up: the client is not keeping up.
        let mut waited = false;
        // Replay the log up to where the live feed takes over.
        let mut batch = REPLAY_BATCH_MAX;
        loop {
            // The live queue overflowed and the client is not keeping up with the
            // replay either: it resumes from here, as in the live case below.
            if feed.is_lagged() && waited {
                return Outcome::End("lagged", feed.last_sequence());
            }
            let job_spec = spec.clone();
            let job = shared.queries.run(move || {
                let step = replay_step(&mut feed, &job_spec, batch);
                (feed, step)
            });
            let (back, step) = tokio::select! {
                biased;
                s = &mut *stop => return stopped(s),
                done = job => match done {
                    Ok(done) => done,
                    Err(e) => {
                        warn!(error = %e, "change-log replay did not run");
                        return Outcome::End("lagged", *position);
                    }
                },
            };
            feed = back;
            let step = match step {
                Ok(step) => step,
                Err(e) => {
                    // Pruned while catching up, or a storage failure: the client resumes
                    // from here and is told precisely what is wrong if it cannot.
                    warn!(error = %e, "change-log replay failed; ending the subscription as lagged");
                    return Outcome::End("lagged", *position);
                }
            };
            let Some(verdicts) = step.verdicts else {
                break;
            };
            if !verdicts.is_empty() {
                let per_change = (step.bytes / verdicts.len()).max(1);
                batch = (REPLAY_BATCH_BYTES / per_change).clamp(1, REPLAY_BATCH_MAX);
            }
            for (sequence, verdict) in verdicts {
                if let Some(outcome) =
                    deliver(sink, stop, sequence, verdict, position, &mut waited).await
                {
                    return outcome;
                }
            }
        }
        // Live.
        loop {
            let item = tokio::select! {
                biased;
                s = &mut *stop => return stopped(s),
                item = feed.next() => item,
            };
            match item {
                FeedItem::Change(r) => {
                    let (sequence, verdict) = (r.sequence, spec.judge(&r));
                    drop(r);
                    if let Some(outcome) =
                        deliver(sink, stop, sequence, verdict, position, &mut waited).await
                    {
                        return outcome;
                    }
                }
                // One commit brought more changes than the queue holds while the client
                // keeps up: catch up from the log instead of ending.
                FeedItem::Lagged if !waited => {
                    feed.catch_up();
                    break;
                }
                // The client is not reading fast enough: it resumes from here.
                FeedItem::Lagged => return Outcome::End("lagged", feed.last_sequence()),
                FeedItem::Dropped => return Outcome::End("dropped", *position),
            }
        }
    }
}

/// Sends one change's event (if it has one) and advances `position` to it; `Some`
/// when the subscription ends here.
async fn deliver(
    sink: &EventSink,
    stop: &mut oneshot::Receiver<Unsubscribe>,
    sequence: u64,
    verdict: Verdict,
    position: &mut u64,
    waited: &mut bool,
) -> Option<Outcome> {
    match verdict {
        Verdict::Skip => {}
        Verdict::CollectionDropped => return Some(Outcome::End("dropped", sequence)),
        Verdict::Event(frame) => {
            let sent = tokio::select! {
                biased;
                s = &mut *stop => return Some(stopped(s)),
                sent = sink.send(frame) => sent,
            };
            match sent {
                None => return Some(Outcome::Closed),
                Some(w) => *waited |= w,
            }
        }
    }
    *position = sequence;
    None
}
