//! Fixed pools of dedicated threads for work that may block: storage commits (the
//! writer pool) and query execution (the query pool).
//!
//! A commit may block: the engine holds its journal while a group sync runs. A query
//! reads storage synchronously and may run long. Neither may run on the async
//! runtime's workers (a sync or a long scan would stall every request, pings
//! included), and neither on tokio's blocking pool: with hundreds of requests in
//! flight it grows to hundreds of threads contending for two cores and one journal
//! lock (measured in docs/benchmarks.md). A fixed, small set of threads takes jobs
//! from one queue instead; writes that arrive during a sync wait in the queue and
//! commit in a burst after it, which is what lets the next group sync cover many.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads; dropping it lets the threads finish queued jobs and exit.
pub(crate) struct ThreadPool {
    queue: mpsc::Sender<Job>,
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("the server's worker threads have stopped (server shutting down)")]
    Stopped,
    #[error("the operation failed unexpectedly; the server logged it")]
    Panicked,
}

impl ThreadPool {
    /// Starts `threads` threads named `themis-<name>-<i>`.
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("themis-{name}-{i}"))
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
                        tracing::error!("a job on a worker thread panicked");
                    }
                })?;
        }
        Ok(Self { queue })
    }

    /// Runs `job` on one of the pool's threads and returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| JobError::Stopped)?;
        // A panicking job drops its sender.
        rx.await.map_err(|_| JobError::Panicked)
    }
}
