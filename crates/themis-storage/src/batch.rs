//! The batch writer: single-request document writes from many clients committed
//! together, in one engine transaction per batch.
//!
//! A document write ([`DocWrite`]: an insert, update or delete, with or without a
//! request key) is prepared on the caller's thread (names checked, JSON parsed) and
//! handed to [`BatchWriter::submit`]. One dedicated thread takes every write queued
//! by then (up to [`MAX_BATCH_WRITES`] writes and [`MAX_BATCH_BYTES`] of input) and
//! runs them one after the other in a single engine transaction, each behind a
//! [`Savepoint`]: a write that fails (a taken `_key`, a missing document, a unique
//! index violation) leaves nothing behind and gets its own error, the others go on,
//! and later writes see the earlier ones' effects exactly as if they had run one at a
//! time in that order. Then one commit, one pass through the change log's commit
//! lock, and one durability ticket each, all covered by the next group sync.
//!
//! Why: a durable single-document insert cost about 55 µs of server CPU, and most of
//! it was per transaction, not per document: waking a writer thread, beginning the
//! engine transaction, fjall's conflict check at commit, the change log's lock. Under
//! load the batch shares those among every write that arrived meanwhile (measured in
//! docs/benchmarks.md, "Batched document writes"). A write that arrives alone runs
//! alone, the same way it did before batching.
//!
//! Correctness:
//! * every write still is all-or-nothing (its savepoint), and the batch commits all
//!   its successful writes or none;
//! * a batch whose commit conflicts with a concurrent transaction (an interactive
//!   transaction, a DDL, an AQL write) is run again one write at a time, each in its
//!   own transaction with the usual conflict retries, so a batch never fails a write
//!   that would have succeeded alone;
//! * a write's answer is sent after the batch committed, and it resolves as
//!   [`Pending`]: durable with the next group sync, like any other write.
//!
//! The writes of a batch mostly name the same collection, and each reads its catalog
//! records (database, collection, index list) first. [`BatchTx`] remembers those reads
//! for the rest of the batch: the first read joined the transaction's read set, so a
//! concurrent DDL still makes the batch conflict, and a write into the catalog by a
//! write of the batch (a collection auto-created) forgets what it covers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::catalog::now_ms;
use crate::changes::{ChangeFeed, ChangeRecord};
use crate::error::{KvError, Result, StorageError};
use crate::group_commit::{GroupCommitter, Pending};
use crate::kv::{KvEngine, KvIter, KvPair, KvRead, KvTx, Space};
use crate::overlay::Savepoint;
use crate::request_keys::{self, RequestKey};
use crate::store::MAX_TX_ATTEMPTS;

/// Most writes run in one batch.
pub const MAX_BATCH_WRITES: usize = 256;

/// Most input bytes (documents, patches, keys) in one batch; a batch always takes its
/// first write, however large.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

type Body<T> = Box<dyn FnMut(&mut dyn KvTx, &mut Vec<ChangeRecord>) -> Result<T> + Send>;

/// A document write, checked and prepared, ready to run in a transaction (see the
/// module doc). Built by `DocumentStore::insert_write`, `update_write` and
/// `delete_write`; run by `DocumentStore::submit` (batched) or `execute` (alone, on
/// the calling thread).
pub struct DocWrite<T> {
    what: &'static str,
    bytes: usize,
    body: Body<T>,
}

impl<T: 'static> DocWrite<T> {
    /// A write described by `what` ("inserting documents") whose input is `bytes`
    /// long; `body` may run more than once (on conflicts), each time in a fresh
    /// transaction.
    pub(crate) fn new(
        what: &'static str,
        bytes: usize,
        body: impl FnMut(&mut dyn KvTx, &mut Vec<ChangeRecord>) -> Result<T> + Send + 'static,
    ) -> DocWrite<T> {
        DocWrite {
            what,
            bytes,
            body: Box::new(body),
        }
    }

    /// This write made idempotent by `rk`. In its transaction it (1) reads `rk`'s
    /// record and, when a live one exists, writes nothing and answers with the stored
    /// response; else (2) runs the write, encodes its result with `encode`, and writes
    /// the record (response and expiry) next to it.
    ///
    /// Both requests of a race between two with the same key read the record inside
    /// their transaction, so the one that commits second conflicts and is rerun, and
    /// then finds the record (see `request_keys.rs`); in one batch the second sees the
    /// first's record directly. A failing write commits nothing, so only successful
    /// writes are recorded. The answer, stored or fresh, is acknowledged once durable;
    /// for a stored one that also covers the original write, which committed before
    /// this request read its record.
    pub fn keyed(
        self,
        rk: RequestKey,
        encode: impl Fn(&T) -> Bytes + Send + 'static,
    ) -> DocWrite<Bytes> {
        let mut body = self.body;
        DocWrite {
            what: self.what,
            bytes: self.bytes,
            body: Box::new(move |tx, changes| {
                let now = now_ms();
                let before = request_keys::existing(&*tx, &rk, now)?;
                if let request_keys::Existing::Live(stored) = before {
                    return Ok(stored);
                }
                let out = body(tx, changes)?;
                let response = encode(&out);
                request_keys::record(tx, &rk, &response, now, &before)?;
                Ok(response)
            }),
        }
    }
}

/// What commits a write: the engine, the change log, the group committer.
#[derive(Clone)]
pub(crate) struct Committing {
    pub engine: Arc<dyn KvEngine>,
    pub feed: Arc<ChangeFeed>,
    pub committer: Arc<GroupCommitter>,
    pub conflict_retries: Arc<AtomicU64>,
}

impl Committing {
    /// Runs `body` in a transaction of its own and commits it, rerunning it on
    /// conflict up to [`MAX_TX_ATTEMPTS`] times; `body` records its changes, which the
    /// change log numbers at commit.
    pub(crate) fn run_doc_tx<T>(
        &self,
        what: &str,
        mut body: impl FnMut(&mut dyn KvTx, &mut Vec<ChangeRecord>) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut tx = self.engine.begin()?;
            let mut changes = Vec::new();
            let out = body(tx.as_mut(), &mut changes)?;
            match self.feed.commit(tx, changes) {
                Ok(()) => return Ok(out),
                Err(KvError::Conflict) if attempt + 1 < MAX_TX_ATTEMPTS => {
                    attempt += 1;
                    self.conflict_retries.fetch_add(1, Ordering::Relaxed);
                    backoff(attempt);
                }
                Err(KvError::Conflict) => {
                    return Err(StorageError::Contended(format!(
                        "{what} conflicted with concurrent writes {MAX_TX_ATTEMPTS} times in a \
                         row; retry the request"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `w` alone, on the calling thread; the result is durable once the returned
    /// [`Pending`] resolves.
    pub(crate) fn execute<T>(&self, mut w: DocWrite<T>) -> Result<Pending<T>> {
        let out = self.run_doc_tx(w.what, &mut w.body)?;
        Ok(self.committer.pending(out))
    }
}

fn backoff(attempt: u32) {
    if attempt < 3 {
        std::thread::yield_now();
        return;
    }
    // Jitter from the clock's low bits keeps retrying writers from colliding in
    // lockstep; the cap keeps the worst case at a few milliseconds.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % 64)
        .unwrap_or(0);
    let micros = (10u64 << attempt.min(8)) + jitter;
    std::thread::sleep(Duration::from_micros(micros));
}

/// A queued write with its reply, its type erased so one queue holds them all.
trait Queued: Send {
    fn bytes(&self) -> usize;
    /// Runs the write inside the batch's transaction; keeps its result.
    fn run(&mut self, tx: &mut dyn KvTx, changes: &mut Vec<ChangeRecord>) -> bool;
    /// Answers with the kept result; a success becomes durable with the next sync.
    fn answer(self: Box<Self>, committer: &GroupCommitter);
    /// Answers with `e` (the batch failed as a whole).
    fn fail(self: Box<Self>, e: StorageError);
    /// Runs the write alone and answers.
    fn run_alone(self: Box<Self>, c: &Committing);
}

struct Job<T> {
    write: DocWrite<T>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<Pending<T>>>,
}

impl<T: Send + 'static> Queued for Job<T> {
    fn bytes(&self) -> usize {
        self.write.bytes
    }

    fn run(&mut self, tx: &mut dyn KvTx, changes: &mut Vec<ChangeRecord>) -> bool {
        let out = (self.write.body)(tx, changes);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn answer(self: Box<Self>, committer: &GroupCommitter) {
        let answer = match self.out {
            Some(Ok(v)) => Ok(committer.pending(v)),
            Some(Err(e)) => Err(e),
            None => Err(StorageError::Internal(
                "a batched write was answered without having run".to_string(),
            )),
        };
        // A caller that went away (client disconnected) needs no answer.
        let _ = self.reply.send(answer);
    }

    fn fail(self: Box<Self>, e: StorageError) {
        let _ = self.reply.send(Err(e));
    }

    fn run_alone(self: Box<Self>, c: &Committing) {
        let _ = self.reply.send(c.execute(self.write));
    }
}

/// The batch writer's queue and thread. Dropping it lets the thread finish what is
/// queued, then joins it.
pub(crate) struct BatchWriter {
    queue: Option<mpsc::Sender<Box<dyn Queued>>>,
    thread: Option<JoinHandle<()>>,
    batches: Arc<AtomicU64>,
}

fn stopped() -> StorageError {
    StorageError::Unavailable(
        "the storage writer thread has stopped (the store is shutting down); retry against \
         a running server"
            .to_string(),
    )
}

impl BatchWriter {
    pub(crate) fn start(c: Committing) -> Result<BatchWriter> {
        let (queue, rx) = mpsc::channel::<Box<dyn Queued>>();
        let batches = Arc::new(AtomicU64::new(0));
        let counted = batches.clone();
        let thread = std::thread::Builder::new()
            .name("themis-batch-writer".to_string())
            .spawn(move || run(rx, c, counted))
            .map_err(|e| {
                StorageError::Internal(format!(
                    "cannot start the batch writer thread: {e}; check the process thread limit"
                ))
            })?;
        Ok(BatchWriter {
            queue: Some(queue),
            thread: Some(thread),
            batches,
        })
    }

    /// Queues `w`; resolves once it has committed (with its batch or alone).
    pub(crate) async fn submit<T: Send + 'static>(&self, w: DocWrite<T>) -> Result<Pending<T>> {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Job {
            write: w,
            out: None,
            reply,
        });
        match &self.queue {
            Some(q) if q.send(job).is_ok() => {}
            _ => return Err(stopped()),
        }
        // The thread answers every write it takes, also while the store closes; an
        // unanswered one was in a batch that panicked.
        rx.await.unwrap_or_else(|_| {
            Err(StorageError::Internal(
                "the write failed unexpectedly (the server logged it) and may or may not \
                 have been applied; read before sending it again"
                    .to_string(),
            ))
        })
    }

    /// How many batches of more than one write have committed together.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            // The last handle on the store may be dropped by a write running on the
            // thread itself (a test's); it then ends on its own once the queue is empty.
            if t.thread().id() == std::thread::current().id() {
                return;
            }
            if t.join().is_err() {
                tracing::error!("the batch writer thread panicked");
            }
        }
    }
}

fn run(rx: mpsc::Receiver<Box<dyn Queued>>, c: Committing, batches: Arc<AtomicU64>) {
    let mut next: Option<Box<dyn Queued>> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].bytes();
        while batch.len() < MAX_BATCH_WRITES {
            let Ok(job) = rx.try_recv() else { break };
            if bytes + job.bytes() > MAX_BATCH_BYTES {
                next = Some(job);
                break;
            }
            bytes += job.bytes();
            batch.push(job);
        }
        let single = batch.len() == 1;
        // A panic fails its batch (the callers get an internal error), not the thread:
        // every later write would fail with it.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if single {
                if let Some(job) = batch.pop() {
                    job.run_alone(&c);
                }
            } else {
                run_batch(batch, &c);
            }
        }));
        if ran.is_err() {
            tracing::error!(
                "a document write panicked; its batch failed, the batch writer goes on"
            );
        } else if !single {
            batches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prefix scans of the catalog longer than this are not remembered.
const MAX_REMEMBERED_SCAN: usize = 64;

/// A batch's engine transaction that remembers its point reads and short prefix
/// scans of [`Space::Meta`] (the catalog and request key records) until a write to
/// that space touches them (see the module doc).
struct BatchTx {
    tx: Box<dyn KvTx>,
    gets: RefCell<HashMap<Vec<u8>, Option<Bytes>>>,
    scans: RefCell<Vec<(Vec<u8>, Vec<KvPair>)>>,
}

impl BatchTx {
    fn new(tx: Box<dyn KvTx>) -> BatchTx {
        BatchTx {
            tx,
            gets: RefCell::default(),
            scans: RefCell::default(),
        }
    }

    fn forget(&self, space: Space, key: &[u8]) {
        if space == Space::Meta {
            self.gets.borrow_mut().remove(key);
            self.scans
                .borrow_mut()
                .retain(|(prefix, _)| !key.starts_with(prefix));
        }
    }
}

impl KvRead for BatchTx {
    fn get(&self, space: Space, key: &[u8]) -> std::result::Result<Option<Bytes>, KvError> {
        if space != Space::Meta {
            return self.tx.get(space, key);
        }
        if let Some(v) = self.gets.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.tx.get(space, key)?;
        self.gets.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        if space != Space::Meta {
            return self.tx.scan_prefix(space, prefix);
        }
        if let Some((_, pairs)) = self.scans.borrow().iter().find(|(p, _)| p == prefix) {
            return Box::new(pairs.clone().into_iter().map(Ok));
        }
        let mut scan = self.tx.scan_prefix(space, prefix);
        let mut pairs = Vec::new();
        for item in scan.by_ref() {
            match item {
                Ok(pair) => pairs.push(pair),
                Err(e) => return Box::new(pairs.into_iter().map(Ok).chain(Some(Err(e)))),
            }
            if pairs.len() > MAX_REMEMBERED_SCAN {
                return Box::new(pairs.into_iter().map(Ok).chain(scan));
            }
        }
        self.scans
            .borrow_mut()
            .push((prefix.to_vec(), pairs.clone()));
        Box::new(pairs.into_iter().map(Ok))
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        self.tx.scan_range(space, lower, upper, reverse)
    }
}

impl KvTx for BatchTx {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> std::result::Result<(), KvError> {
        self.forget(space, key);
        self.tx.put(space, key, value)
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> std::result::Result<(), KvError> {
        self.forget(space, key);
        self.tx.delete(space, key)
    }

    fn commit(self: Box<Self>) -> std::result::Result<(), KvError> {
        self.tx.commit()
    }
}

/// Runs `batch` in one transaction (see the module doc) and answers every write.
fn run_batch(mut batch: Vec<Box<dyn Queued>>, c: &Committing) {
    let mut tx: Box<dyn KvTx> = match c.engine.begin() {
        Ok(tx) => Box::new(BatchTx::new(tx)),
        Err(e) => {
            let e = StorageError::from(e);
            for job in batch {
                job.fail(e.clone());
            }
            return;
        }
    };
    let mut changes = Vec::new();
    let mut released = Ok(());
    for job in &mut batch {
        let mut own = Vec::new();
        let mut sp = Savepoint::new(tx.as_mut());
        if job.run(&mut sp, &mut own) {
            released = sp.release();
            if released.is_err() {
                break;
            }
            changes.append(&mut own);
        }
    }
    if let Err(e) = released {
        let e = StorageError::from(e);
        for job in batch {
            job.fail(e.clone());
        }
        return;
    }
    match c.feed.commit(tx, changes) {
        Ok(()) => {
            for job in batch {
                job.answer(&c.committer);
            }
        }
        Err(KvError::Conflict) => {
            c.conflict_retries.fetch_add(1, Ordering::Relaxed);
            for job in batch {
                job.run_alone(c);
            }
        }
        Err(e) => {
            let e = StorageError::from(e);
            for job in batch {
                job.fail(e.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::Duration;

    use super::*;
    use crate::group_commit::WaitDurable;
    use crate::{DocMeta, DocumentStore, StoreOptions, UpdateMode};

    type Submitted<T> = Pin<Box<dyn Future<Output = Result<Pending<T>>>>>;

    /// Queues `w` on the batch writer (the first poll sends it) and returns the rest.
    fn queue<T: Send + 'static>(s: &Arc<DocumentStore>, w: DocWrite<T>) -> Submitted<T> {
        let s = s.clone();
        let mut f: Submitted<T> = Box::pin(async move { s.submit(w).await });
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(f.as_mut().poll(&mut cx).is_pending());
        f
    }

    async fn done<T>(f: Submitted<T>) -> Result<T> {
        f.await?.wait().await
    }

    /// Occupies the batch writer until the returned sender is dropped or sent to, so
    /// that everything queued meanwhile forms the next batch.
    fn occupy(s: &Arc<DocumentStore>) -> (Sender<()>, Submitted<()>) {
        let (started_tx, started) = channel::<()>();
        let (release, released): (Sender<()>, Receiver<()>) = channel();
        let blocker = DocWrite::new("blocking the writer", 0, move |_, _| {
            let _ = started_tx.send(());
            let _ = released.recv();
            Ok(())
        });
        let f = queue(s, blocker);
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the batch writer runs the blocker");
        (release, f)
    }

    fn doc(json: &str) -> Vec<Bytes> {
        vec![Bytes::from(json.to_string())]
    }

    fn open() -> (tempfile::TempDir, Arc<DocumentStore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(DocumentStore::open(StoreOptions::new(dir.path())).unwrap());
        (dir, s)
    }

    fn read(s: &DocumentStore, key: &str) -> Option<serde_json::Value> {
        s.get("_system", "c", &[key.to_string()]).unwrap()[0]
            .as_ref()
            .map(|b| serde_json::from_slice(b).unwrap())
    }

    #[tokio::test]
    async fn a_batch_answers_each_write_as_if_it_ran_alone_in_order() {
        let (_dir, s) = open();
        s.insert("_system", "c", doc(r#"{"_key":"taken","v":0}"#), true)
            .wait()
            .await
            .unwrap();
        let (release, blocker) = occupy(&s);
        let before = s.write_batches();

        let ins = |json: &str| s.insert_write("_system", "c", doc(json), false).unwrap();
        let rk = RequestKey::new("u", "key-1", Duration::from_secs(600)).unwrap();
        let encode = |m: &Vec<DocMeta>| Bytes::from(m[0].key.clone());
        let a = queue(&s, ins(r#"{"_key":"a1","v":1}"#));
        let taken = queue(&s, ins(r#"{"_key":"taken","v":2}"#));
        let again = queue(&s, ins(r#"{"_key":"a1","v":3}"#));
        let k1 = queue(&s, ins(r#"{"_key":"k1"}"#).keyed(rk.clone(), encode));
        let k2 = queue(&s, ins(r#"{"_key":"k2"}"#).keyed(rk, encode));
        let patch = Bytes::from_static(br#"{"w":4}"#);
        let upd = s
            .update_write("_system", "c", "a1", patch, UpdateMode::Merge, None)
            .unwrap();
        let upd = queue(&s, upd);
        let del = s
            .delete_write("_system", "c", vec!["nope".to_string()], None)
            .unwrap();
        let del = queue(&s, del);
        release.send(()).unwrap();
        done(blocker).await.unwrap();

        assert_eq!(done(a).await.unwrap()[0].key, "a1");
        let e = done(taken).await.unwrap_err();
        assert!(matches!(e, StorageError::Conflict(_)), "{e:?}");
        // The earlier write of the batch is visible to the later one.
        let e = done(again).await.unwrap_err();
        assert!(matches!(e, StorageError::Conflict(_)), "{e:?}");
        // The second write with the key gets the first one's answer and writes nothing.
        assert_eq!(done(k1).await.unwrap(), Bytes::from("k1"));
        assert_eq!(done(k2).await.unwrap(), Bytes::from("k1"));
        assert_eq!(done(upd).await.unwrap().key, "a1");
        assert_eq!(done(del).await.unwrap().not_found, ["nope"]);
        assert_eq!(s.write_batches(), before + 1, "one batch ran the 7 writes");

        assert_eq!(read(&s, "a1").unwrap()["v"], 1);
        assert_eq!(read(&s, "a1").unwrap()["w"], 4);
        assert_eq!(read(&s, "taken").unwrap()["v"], 0);
        assert!(read(&s, "k1").is_some());
        assert!(read(&s, "k2").is_none());
    }

    #[tokio::test]
    async fn a_batch_that_conflicts_runs_again_one_write_at_a_time() {
        let (_dir, s) = open();
        s.insert("_system", "c", doc(r#"{"_key":"y","n":0}"#), true)
            .wait()
            .await
            .unwrap();
        let (release, blocker) = occupy(&s);
        // The first write of the batch, on its first run only, commits a change to `y`
        // from outside the batch; the batch's update of `y` read the older `y`.
        let outside = s.clone();
        let first_run = Arc::new(AtomicBool::new(true));
        let runs = first_run.clone();
        let meddler = DocWrite::new("meddling", 0, move |_, _| {
            if runs.swap(false, Ordering::SeqCst) {
                let patch = Bytes::from_static(br#"{"outside":true}"#);
                drop(outside.update("_system", "c", "y", patch, UpdateMode::Merge, None)?);
            }
            Ok(())
        });
        let meddler = queue(&s, meddler);
        let patch = Bytes::from_static(br#"{"batch":true}"#);
        let upd = s
            .update_write("_system", "c", "y", patch, UpdateMode::Merge, None)
            .unwrap();
        let upd = queue(&s, upd);
        let retries = s.conflict_retries();
        release.send(()).unwrap();
        done(blocker).await.unwrap();

        done(meddler).await.unwrap();
        done(upd).await.unwrap();
        assert!(!first_run.load(Ordering::SeqCst));
        assert!(s.conflict_retries() > retries, "the batch conflicted");
        // Neither update is lost.
        let y = read(&s, "y").unwrap();
        assert_eq!(
            (y["outside"].clone(), y["batch"].clone()),
            (true.into(), true.into())
        );
    }

    #[tokio::test]
    async fn a_collection_created_by_one_write_of_a_batch_is_the_one_the_next_uses() {
        let (_dir, s) = open();
        let (release, blocker) = occupy(&s);
        let ins = |coll: &str, key: &str| {
            let json = format!(r#"{{"_key":"{key}"}}"#);
            s.insert_write("_system", coll, doc(&json), true).unwrap()
        };
        // Each write reads the catalog before writing; the first one's creation of `n`
        // must replace what the batch remembered of that read.
        let writes = [ins("n", "1"), ins("n", "2"), ins("m", "3"), ins("n", "4")];
        let queued: Vec<_> = writes.into_iter().map(|w| queue(&s, w)).collect();
        release.send(()).unwrap();
        done(blocker).await.unwrap();
        for f in queued {
            done(f).await.unwrap();
        }
        let keys: Vec<String> = ["1", "2", "4"].map(String::from).to_vec();
        let found = s.get("_system", "n", &keys).unwrap();
        assert!(found.iter().all(Option::is_some), "{found:?}");
        assert_eq!(s.collection_stats("_system", "n").unwrap().count, 3);
        assert_eq!(s.list_collections("_system").unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_its_batch_and_the_writer_goes_on() {
        let (_dir, s) = open();
        s.insert("_system", "c", doc("{}"), true)
            .wait()
            .await
            .unwrap();
        let boom = || DocWrite::<()>::new("panicking", 0, |_, _| panic!("a bug in a write"));
        let e = done(queue(&s, boom())).await.unwrap_err();
        assert!(matches!(e, StorageError::Internal(_)), "{e:?}");
        // In a batch: the batch fails, nothing of it is written.
        let (release, blocker) = occupy(&s);
        let w = s
            .insert_write("_system", "c", doc(r#"{"_key":"lost"}"#), false)
            .unwrap();
        let lost = queue(&s, w);
        let panicking = queue(&s, boom());
        release.send(()).unwrap();
        done(blocker).await.unwrap();
        assert!(matches!(done(lost).await, Err(StorageError::Internal(_))));
        assert!(matches!(
            done(panicking).await,
            Err(StorageError::Internal(_))
        ));
        assert!(read(&s, "lost").is_none());
        // The writer still runs.
        let w = s
            .insert_write("_system", "c", doc(r#"{"_key":"after"}"#), false)
            .unwrap();
        assert_eq!(done(queue(&s, w)).await.unwrap()[0].key, "after");
    }
}
