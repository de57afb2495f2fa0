//! The writer pool: a few dedicated threads that run storage commits.
//!
//! A commit may block: the engine holds its journal while a group sync runs. Commits
//! therefore never run on the async runtime's workers (a sync would stall every
//! request, reads and pings included), and not on tokio's blocking pool either: with
//! hundreds of writes in flight that pool grows to hundreds of threads fighting over
//! one journal lock. A fixed, small set of writer threads takes jobs from one queue;
//! writes that arrive during a sync wait in the queue and commit in a burst after it,
//! which is what lets the next group sync cover many of them.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of writer threads; dropping it lets the threads finish queued jobs and
/// exit.
pub(crate) struct WritePool {
    queue: mpsc::Sender<Job>,
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteJobError {
    #[error("the writer pool has stopped (server shutting down)")]
    Stopped,
    #[error("the write failed unexpectedly; the server logged it")]
    Panicked,
}

impl WritePool {
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("themis-writer-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, never while running it.
                    let job = {
                        let Ok(jobs) = jobs.lock() else { return };
                        match jobs.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        }
                    };
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a storage write panicked");
                    }
                })?;
        }
        Ok(Self { queue })
    }

    /// Runs `job` on a writer thread and returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WriteJobError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| WriteJobError::Stopped)?;
        // A panicking job drops its sender.
        rx.await.map_err(|_| WriteJobError::Panicked)
    }
}
