//! `GroupCommitter`: a write is acknowledged only once it is durable, and concurrent
//! writes share one fsync.
//!
//! After a transaction commits (in memory and into the journal buffer), its writer
//! calls [`GroupCommitter::enqueue`] and awaits the returned [`DurableTicket`]. A
//! dedicated thread blocks for the first queued ticket, takes every other ticket
//! queued by then, calls [`KvEngine::persist`] once, and completes them all. Because
//! a ticket is queued only after its commit returned, and `persist` covers every
//! commit that returned before it was called, the sync that completes a ticket always
//! covers its commit. Tickets queued while a sync runs wait for the next one.
//!
//! The waiting side is a `futures` oneshot, so a tokio task awaiting durability does
//! not block its worker thread.
//!
//! With [`SyncMode::Never`] commit tickets complete at once, without any sync: a
//! benchmarking mode that loses acknowledged writes on power loss or an OS crash.
//! [`GroupCommitter::flush`] syncs in every mode, and so does dropping the committer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::channel::oneshot;
use serde::Serialize;

use crate::changes::ChangeFeed;
use crate::error::{Result, StorageError};
use crate::kv::KvEngine;

/// When writes become durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum SyncMode {
    /// Every write is fsynced (shared with concurrent writes) before it is
    /// acknowledged. The default.
    #[default]
    Always,
    /// Writes are acknowledged once committed and handed to the OS, without fsync.
    /// **Loses acknowledged writes on power loss or an OS crash.** For benchmarks.
    Never,
}

/// Counters of the group committer, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncStats {
    /// Number of `persist` calls (fsyncs) made.
    pub syncs: u64,
    /// Number of commits acknowledged as durable (in `Never` mode: acknowledged).
    pub commits: u64,
}

#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    commits: AtomicU64,
}

struct Waiter {
    reply: oneshot::Sender<Result<()>>,
    /// `false` for a flush request: it forces a sync but is not a commit.
    is_commit: bool,
}

/// Batches the fsyncs of concurrent commits. See the module doc.
pub struct GroupCommitter {
    mode: SyncMode,
    queue: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// A pending acknowledgement; await [`DurableTicket::wait`].
#[must_use = "a write is not durable until its ticket is awaited"]
pub struct DurableTicket {
    state: TicketState,
}

enum TicketState {
    Ready(Result<()>),
    Pending(oneshot::Receiver<Result<()>>),
}

impl DurableTicket {
    /// Resolves once the commit is durable (or the sync failed).
    pub async fn wait(self) -> Result<()> {
        match self.state {
            TicketState::Ready(r) => r,
            TicketState::Pending(rx) => rx.await.unwrap_or_else(|_| Err(stopped())),
        }
    }
}

/// The result of a write that has committed but may not be durable yet.
///
/// Write methods of [`crate::DocumentStore`] are synchronous: they run the transaction
/// (possibly blocking on the engine, e.g. while a sync holds its journal) and return
/// this. Run them off the async executor (the server has writer threads for it) and
/// then `.wait().await`
/// the acknowledgement, so that fsyncs never stall the tasks serving other requests.
#[must_use = "a write is not acknowledged until it is durable: call .wait().await"]
pub struct Pending<T> {
    pub(crate) value: T,
    pub(crate) ticket: DurableTicket,
}

impl<T> Pending<T> {
    /// Resolves to the write's result once it is durable (or fails if the sync did).
    pub async fn wait(self) -> Result<T> {
        self.ticket.wait().await?;
        Ok(self.value)
    }
}

/// `.wait()` straight on a write method's `Result<Pending<T>>`, so a caller that does
/// not care where the commit runs writes `store.insert(..).wait().await`.
pub trait WaitDurable<T> {
    fn wait(self) -> impl std::future::Future<Output = Result<T>> + Send;
}

impl<T: Send> WaitDurable<T> for Result<Pending<T>> {
    async fn wait(self) -> Result<T> {
        self?.wait().await
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable(
        "the storage sync thread has stopped (the store is shutting down); retry against a running server"
            .to_string(),
    )
}

impl GroupCommitter {
    /// Starts the sync thread. After each successful sync it publishes the change
    /// records the sync covered to `feed`'s subscribers.
    pub(crate) fn start(
        engine: Arc<dyn KvEngine>,
        mode: SyncMode,
        feed: Arc<ChangeFeed>,
    ) -> Result<GroupCommitter> {
        let (queue, rx) = mpsc::channel::<Waiter>();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("themis-group-commit".to_string())
            .spawn(move || run(engine, rx, thread_counters, feed))
            .map_err(|e| {
                StorageError::Internal(format!(
                    "cannot start the group-commit thread: {e}; check the process thread limit"
                ))
            })?;
        Ok(GroupCommitter {
            mode,
            queue: Some(queue),
            thread: Some(thread),
            counters,
        })
    }

    /// Wraps the result of a write whose commit has just returned.
    pub(crate) fn pending<T>(&self, value: T) -> Pending<T> {
        Pending {
            value,
            ticket: self.enqueue(),
        }
    }

    /// Registers a commit that has just returned; the ticket resolves when it is
    /// durable. Call it only after the commit returned.
    pub fn enqueue(&self) -> DurableTicket {
        if self.mode == SyncMode::Never {
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
            return DurableTicket {
                state: TicketState::Ready(Ok(())),
            };
        }
        self.send(true)
    }

    /// Syncs everything committed so far, in every mode.
    pub fn flush(&self) -> DurableTicket {
        self.send(false)
    }

    fn send(&self, is_commit: bool) -> DurableTicket {
        let (reply, rx) = oneshot::channel();
        let queued = match &self.queue {
            Some(q) => q.send(Waiter { reply, is_commit }).is_ok(),
            None => false,
        };
        DurableTicket {
            state: if queued {
                TicketState::Pending(rx)
            } else {
                TicketState::Ready(Err(stopped()))
            },
        }
    }

    /// Current counters.
    pub fn stats(&self) -> SyncStats {
        SyncStats {
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it has served what is queued and
        // made a final sync; joining means the engine is released when we return, so
        // the same directory can be reopened at once.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("group-commit thread panicked");
            }
        }
    }
}

fn run(
    engine: Arc<dyn KvEngine>,
    rx: mpsc::Receiver<Waiter>,
    counters: Arc<Counters>,
    feed: Arc<ChangeFeed>,
) {
    let mut batch: Vec<Waiter> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        // Every change counted now has committed, so the sync below covers it.
        let mark = feed.sync_mark();
        let outcome = engine.persist().map_err(|e| {
            tracing::error!(error = %e, "fsync failed; writes waiting for it are not acknowledged");
            StorageError::Unavailable(format!(
                "making the write durable failed ({e}); the write may or may not survive a \
                 restart: check the disk, restart the server, then read before retrying"
            ))
        });
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        if outcome.is_ok() {
            feed.publish_synced(mark);
        }
        for w in batch.drain(..) {
            if w.is_commit && outcome.is_ok() {
                counters.commits.fetch_add(1, Ordering::Relaxed);
            }
            // A receiver that went away (client disconnected) needs no answer.
            let _ = w.reply.send(outcome.clone());
        }
    }
    // Queue closed: the store is being dropped. One last sync so that a clean
    // shutdown keeps even `SyncMode::Never` writes.
    if let Err(e) = engine.persist() {
        tracing::error!(error = %e, "final fsync at shutdown failed");
    } else {
        counters.syncs.fetch_add(1, Ordering::Relaxed);
    }
}
