//! The change log and its live feed: every committed document write gets a
//! per-database sequence number, is kept durably for a retention period, and is
//! delivered to subscribers once it is durable, in sequence order, exactly once.
//!
//! **Sequence numbers follow commit order.** Writes collect [`ChangeRecord`]s while
//! their transaction runs; [`ChangeFeed::commit`] then takes the commit lock, numbers
//! the records (`last + 1, …` per database), writes them into the `Changes` space *in
//! the same engine transaction* as the documents, and commits. Numbering and commit
//! under one lock means a lower sequence never commits after a higher one, and a
//! failed commit consumes no number, so each database's sequence has no gaps. Only
//! transactions that carry changes take the lock; the fsync is not under it (the group
//! committer runs it afterwards).
//!
//! **Delivered only once durable.** Committed records wait in `unpublished` until the
//! group committer's next sync covers them ([`ChangeFeed::sync_mark`] before the sync,
//! [`ChangeFeed::publish_synced`] after it); only then do subscribers see them. So no
//! subscriber ever sees a change that a crash could take back, and after a restart the
//! log continues exactly where the delivered sequence left off.
//!
//! **Subscriptions** ([`FeedSubscription`]) first replay the log from their resume
//! point up to the sequence published when they registered, then take live records
//! from a bounded queue the publisher fills with `try_send`. A queue that overflows
//! while its subscriber is live ends the subscription as *lagged* (the subscriber
//! resumes from the log); publishers never block and memory stays bounded. During a
//! replay an overflow is harmless: the subscription re-registers and replays further.
//!
//! **Retention**: [`ChangeFeed::prune`] deletes each database's oldest records beyond
//! an age or a byte size, always keeping the newest one (it carries the sequence
//! across restarts). Key layout in `Changes`: db id (u64 BE) + sequence (u64 BE).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::StreamExt;

use crate::catalog::{corrupt, db_docs_prefix, now_ms, require_database};
use crate::error::{KvError, Result, StorageError};
use crate::kv::{KvEngine, KvTx, Space};
use crate::names::validate_lookup_name;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
    /// The collection was dropped (no document; ends that collection's subscriptions).
    CollectionDropped,
}

impl ChangeKind {
    fn tag(self) -> u8 {
        match self {
            ChangeKind::Insert => 0,
            ChangeKind::Update => 1,
            ChangeKind::Delete => 2,
            ChangeKind::CollectionDropped => 3,
        }
    }

    fn from_tag(t: u8) -> Option<ChangeKind> {
        Some(match t {
            0 => ChangeKind::Insert,
            1 => ChangeKind::Update,
            2 => ChangeKind::Delete,
            3 => ChangeKind::CollectionDropped,
            _ => return None,
        })
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub db_id: u64,
    /// Position in the database's change log, from 1.
    pub sequence: u64,
    pub kind: ChangeKind,
    pub collection: String,
    /// The document's `_key` (empty for [`ChangeKind::CollectionDropped`]).
    pub key: String,
    /// The `_rev` written (for a delete: the deleted one).
    pub revision: String,
    /// Commit time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The stored document: the new version, or for a delete the version deleted.
    pub document: Bytes,
}

impl ChangeRecord {
    /// A change a transaction made, numbered when it commits.
    pub(crate) fn new(
        db_id: u64,
        kind: ChangeKind,
        collection: &str,
        key: &str,
        revision: &str,
        document: Bytes,
    ) -> ChangeRecord {
        ChangeRecord {
            db_id,
            sequence: 0,
            kind,
            collection: collection.to_string(),
            key: key.to_string(),
            revision: revision.to_string(),
            timestamp_ms: 0,
            document,
        }
    }

    fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(
            16 + self.collection.len() + self.key.len() + self.revision.len() + self.document.len(),
        );
        b.put_u8(1); // format version
        b.put_u8(self.kind.tag());
        b.put_u64(self.timestamp_ms);
        for s in [&self.collection, &self.key, &self.revision] {
            b.put_u16(s.len() as u16);
            b.put_slice(s.as_bytes());
        }
        b.put_slice(&self.document);
        b.freeze()
    }

    /// The commit time in an encoded record, without decoding the rest.
    fn timestamp_of(raw: &[u8]) -> Option<u64> {
        raw.get(2..10)
            .map(|t| u64::from_be_bytes(t.try_into().expect("8 bytes")))
    }

    fn decode(db_id: u64, sequence: u64, raw: &Bytes) -> Result<ChangeRecord> {
        let bad = |why: &str| corrupt("a change-log record", why);
        if raw.len() < 10 || raw[0] != 1 {
            return Err(bad("unknown format"));
        }
        let kind = ChangeKind::from_tag(raw[1]).ok_or_else(|| bad("unknown kind"))?;
        let timestamp_ms = Self::timestamp_of(raw).expect("checked: at least 10 bytes");
        let mut at = 10;
        let mut strings = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = raw
                .get(at..at + 2)
                .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
                .ok_or_else(|| bad("truncated"))?;
            let s = raw
                .get(at + 2..at + 2 + len)
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| bad("truncated or not UTF-8"))?;
            strings.push(s.to_string());
            at += 2 + len;
        }
        let revision = strings.pop().unwrap_or_default();
        let key = strings.pop().unwrap_or_default();
        let collection = strings.pop().unwrap_or_default();
        Ok(ChangeRecord {
            db_id,
            sequence,
            kind,
            collection,
            key,
            revision,
            timestamp_ms,
            document: raw.slice(at..),
        })
    }
}

/// How many bytes of records one replay batch holds (at least one record).
const REPLAY_BATCH_BYTES: usize = 4 * 1024 * 1024;

fn log_key(db_id: u64, sequence: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&db_id.to_be_bytes());
    k[8..].copy_from_slice(&sequence.to_be_bytes());
    k
}

fn split_key(k: &[u8]) -> Result<(u64, u64)> {
    if k.len() != 16 {
        return Err(corrupt("a change-log key", "not 16 bytes"));
    }
    Ok((
        u64::from_be_bytes(k[..8].try_into().expect("8 bytes")),
        u64::from_be_bytes(k[8..].try_into().expect("8 bytes")),
    ))
}

/// How long and how much of the change log each database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records older than this are removed.
    pub max_age: Duration,
    /// Oldest records beyond this many bytes (keys and values) are removed.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One database's log, as the committer knows it.
#[derive(Debug, Clone, Copy)]
struct DbLog {
    /// Highest committed sequence (0: none yet).
    last: u64,
    /// Bytes held (keys and values).
    bytes: u64,
}

impl DbLog {
    const EMPTY: DbLog = DbLog { last: 0, bytes: 0 };
}

#[derive(Default)]
struct CommitState {
    logs: HashMap<u64, DbLog>,
}

/// Committed records waiting for a sync, behind a lock of their own so that the
/// group-commit thread never waits for a commit in progress.
#[derive(Default)]
struct Unpublished {
    /// In commit order (appended under the commit lock).
    records: VecDeque<Arc<ChangeRecord>>,
    /// Records ever published: with [`ChangeFeed::committed`], the positions for
    /// [`ChangeFeed::sync_mark`].
    published: u64,
}

const LIVE: u8 = 0;
const LAGGED: u8 = 1;
const DROPPED: u8 = 2;

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<ChangeRecord>>,
    state: Arc<AtomicU8>,
}

struct HubDb {
    /// Highest sequence published (durable and handed to subscribers).
    published: u64,
    /// Lowest retained sequence (kept here, not with the committer, so that
    /// subscribing never waits for a commit in progress).
    first: u64,
    slots: Vec<Slot>,
}

impl Default for HubDb {
    fn default() -> Self {
        HubDb {
            published: 0,
            first: 1,
            slots: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Hub {
    dbs: HashMap<u64, HubDb>,
    /// Dropped databases (ids are never reused): a late registration ends at once.
    dropped: std::collections::HashSet<u64>,
    next_slot: u64,
}

/// A subscriber's slot in the hub, and where the log stood when it registered.
struct Registration {
    slot_id: u64,
    state: Arc<AtomicU8>,
    rx: mpsc::Receiver<Arc<ChangeRecord>>,
    /// The highest sequence published so far: live records come after it.
    published: u64,
    /// The lowest sequence still retained.
    first: u64,
}

/// The change log and live feed of a store. See the module doc.
pub struct ChangeFeed {
    engine: Arc<dyn KvEngine>,
    commit: Mutex<CommitState>,
    unpublished: Mutex<Unpublished>,
    /// Records ever committed (raised after they joined `unpublished`).
    committed: std::sync::atomic::AtomicU64,
    hub: Mutex<Hub>,
    /// Publish at commit (the store does not sync before acknowledging).
    immediate: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChangeFeed {
    /// Opens the feed on `engine`, reading where each database's log stands.
    pub(crate) fn open(engine: Arc<dyn KvEngine>, immediate: bool) -> Result<ChangeFeed> {
        let snap = engine.snapshot()?;
        let mut logs: HashMap<u64, DbLog> = HashMap::new();
        let mut hub = Hub::default();
        for item in snap.scan_prefix(Space::Changes, &[]) {
            let (k, v) = item?;
            let (db, seq) = split_key(&k)?;
            let log = logs.entry(db).or_insert(DbLog::EMPTY);
            log.last = seq;
            log.bytes += (k.len() + v.len()) as u64;
            let h = hub.dbs.entry(db).or_insert_with(|| HubDb {
                first: seq,
                ..HubDb::default()
            });
            h.published = seq;
        }
        Ok(ChangeFeed {
            engine,
            commit: Mutex::new(CommitState { logs }),
            unpublished: Mutex::default(),
            committed: Default::default(),
            hub: Mutex::new(hub),
            immediate,
        })
    }

    /// Numbers `changes`, writes them into `tx` and commits it (see the module doc).
    /// Without changes this is a plain commit.
    pub(crate) fn commit(
        &self,
        mut tx: Box<dyn KvTx>,
        changes: Vec<ChangeRecord>,
    ) -> std::result::Result<(), KvError> {
        if changes.is_empty() {
            return tx.commit();
        }
        let mut st = lock(&self.commit);
        let ts = now_ms();
        let mut next: Vec<(u64, DbLog)> = Vec::with_capacity(1);
        let mut records = Vec::with_capacity(changes.len());
        for mut c in changes {
            let i = match next.iter().position(|(db, _)| *db == c.db_id) {
                Some(i) => i,
                None => {
                    let log = st.logs.get(&c.db_id).copied().unwrap_or(DbLog::EMPTY);
                    next.push((c.db_id, log));
                    next.len() - 1
                }
            };
            let log = &mut next[i].1;
            log.last += 1;
            c.sequence = log.last;
            c.timestamp_ms = ts;
            let value = c.encode();
            log.bytes += 16 + value.len() as u64;
            tx.put(Space::Changes, &log_key(c.db_id, c.sequence), value)?;
            records.push(Arc::new(c));
        }
        tx.commit()?;
        for (db, log) in next {
            st.logs.insert(db, log);
        }
        if self.immediate {
            // Still under the commit lock, so publications keep commit order.
            self.publish(&records);
        } else {
            let n = records.len() as u64;
            lock(&self.unpublished).records.extend(records);
            self.committed.fetch_add(n, Ordering::Release);
        }
        Ok(())
    }

    /// How many records have committed so far; taken just before a sync starts.
    pub(crate) fn sync_mark(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Publishes the records counted by `mark`, now that a sync covering them returned.
    pub(crate) fn publish_synced(&self, mark: u64) {
        let batch: Vec<Arc<ChangeRecord>> = {
            let mut u = lock(&self.unpublished);
            let n = mark.saturating_sub(u.published) as usize;
            let n = n.min(u.records.len());
            u.published += n as u64;
            u.records.drain(..n).collect()
        };
        // Only the group-commit thread calls this, so batches publish in order.
        self.publish(&batch);
    }

    fn publish(&self, records: &[Arc<ChangeRecord>]) {
        if records.is_empty() {
            return;
        }
        let mut hub = lock(&self.hub);
        for r in records {
            if hub.dropped.contains(&r.db_id) {
                continue;
            }
            let db = hub.dbs.entry(r.db_id).or_default();
            db.published = r.sequence;
            db.slots
                .retain_mut(|slot| match slot.tx.try_send(r.clone()) {
                    Ok(()) => true,
                    Err(e) => {
                        if e.is_full() {
                            slot.state.store(LAGGED, Ordering::Release);
                        }
                        false
                    }
                });
        }
    }

    /// Ends every subscription of a dropped database and forgets its log (its records
    /// are purged with its documents).
    pub(crate) fn drop_database(&self, db_id: u64) {
        lock(&self.commit).logs.remove(&db_id);
        let mut hub = lock(&self.hub);
        hub.dropped.insert(db_id);
        if let Some(db) = hub.dbs.remove(&db_id) {
            for slot in db.slots {
                slot.state.store(DROPPED, Ordering::Release);
            }
        }
    }

    /// The highest sequence published for database `db` (0 before its first write).
    pub fn current_sequence(&self, db: &str) -> Result<u64> {
        let id = self.database_id(db)?;
        Ok(lock(&self.hub).dbs.get(&id).map_or(0, |d| d.published))
    }

    fn database_id(&self, db: &str) -> Result<u64> {
        validate_lookup_name("database", db)?;
        let snap = self.engine.snapshot()?;
        Ok(require_database(snap.as_ref(), db)?.id)
    }

    /// Subscribes to database `db`'s changes: from now on (`from = None`), or every
    /// change after sequence `from` — an error if some of those are no longer
    /// retained, except for `from = 0`, which replays whatever the log still holds.
    /// `buffer` bounds the live queue.
    pub fn subscribe(
        self: &Arc<Self>,
        db: &str,
        from: Option<u64>,
        buffer: usize,
    ) -> Result<FeedSubscription> {
        let db_id = self.database_id(db)?;
        let Registration {
            slot_id,
            state,
            rx,
            published,
            first,
        } = self.register(db_id, buffer);
        if state.load(Ordering::Acquire) == DROPPED {
            return Err(crate::catalog::database_not_found(db));
        }
        let start = from.unwrap_or(published);
        let fail = |m: String| {
            self.unregister(db_id, slot_id);
            Err(StorageError::InvalidArgument(m))
        };
        if start > published {
            return fail(format!(
                "from_sequence {start} is ahead of database '{db}', whose latest change is \
                 sequence {published}; resume from at most {published}, or leave from_sequence \
                 unset to start from now"
            ));
        }
        // The contract: 0 replays the whole retained log, whatever was pruned.
        let start = if start == 0 { first - 1 } else { start };
        if start + 1 < first {
            return fail(format!(
                "from_sequence {start} is older than the change log of database '{db}' keeps \
                 (its oldest retained change is sequence {first}); changes in between are \
                 gone: re-read the data you follow, then subscribe without from_sequence \
                 (or raise the change-log retention)"
            ));
        }
        Ok(FeedSubscription {
            feed: self.clone(),
            db_id,
            db: db.to_string(),
            current: published,
            next: start + 1,
            replay_to: published,
            slot_id,
            state,
            rx,
            buffer,
        })
    }

    fn register(&self, db_id: u64, buffer: usize) -> Registration {
        // `mpsc::channel(n)` holds n + 1 per sender.
        let (tx, rx) = mpsc::channel(buffer.max(1) - 1);
        let state = Arc::new(AtomicU8::new(LIVE));
        let mut hub = lock(&self.hub);
        hub.next_slot += 1;
        let id = hub.next_slot;
        if hub.dropped.contains(&db_id) {
            // Dropped between the caller's lookup and now: the sender goes away
            // with `tx`, so the subscription ends as dropped.
            state.store(DROPPED, Ordering::Release);
            return Registration {
                slot_id: id,
                state,
                rx,
                published: 0,
                first: 1,
            };
        }
        let db = hub.dbs.entry(db_id).or_default();
        db.slots.push(Slot {
            id,
            tx,
            state: state.clone(),
        });
        Registration {
            slot_id: id,
            state,
            rx,
            published: db.published,
            first: db.first,
        }
    }

    fn unregister(&self, db_id: u64, slot: u64) {
        if let Some(db) = lock(&self.hub).dbs.get_mut(&db_id) {
            db.slots.retain(|s| s.id != slot);
        }
    }

    /// Records of `db_id` from `from` to `to` (inclusive), at most `max` and, beyond
    /// the first, at most [`REPLAY_BATCH_BYTES`] of them, read from the log.
    fn read(&self, db_id: u64, from: u64, to: u64, max: usize) -> Result<Vec<Arc<ChangeRecord>>> {
        let snap = self.engine.snapshot()?;
        let lo = log_key(db_id, from);
        let hi = log_key(db_id, to);
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in snap
            .scan_range(
                Space::Changes,
                std::ops::Bound::Included(&lo),
                std::ops::Bound::Included(&hi),
                false,
            )
            .take(max)
        {
            let (k, v) = item?;
            if !out.is_empty() && bytes + v.len() > REPLAY_BATCH_BYTES {
                break;
            }
            bytes += v.len();
            let (_, seq) = split_key(&k)?;
            out.push(Arc::new(ChangeRecord::decode(db_id, seq, &v)?));
        }
        Ok(out)
    }

    /// Removes records beyond `retention` from every database's log; returns how many.
    pub fn prune(&self, retention: Retention) -> Result<u64> {
        const CHUNK: usize = 4096;
        let logs: Vec<(u64, DbLog)> = lock(&self.commit)
            .logs
            .iter()
            .map(|(&db, &log)| (db, log))
            .collect();
        let cutoff = now_ms().saturating_sub(retention.max_age.as_millis() as u64);
        let mut removed = 0;
        for (db, log) in logs {
            let mut bytes = log.bytes;
            let mut first = lock(&self.hub).dbs.get(&db).map_or(1, |h| h.first);
            let snap = self.engine.snapshot()?;
            let mut iter = snap.scan_prefix(Space::Changes, &db_docs_prefix(db));
            'chunks: loop {
                let mut doomed = Vec::new();
                let mut freed = 0;
                for item in iter.by_ref() {
                    let (k, v) = item?;
                    let (_, seq) = split_key(&k)?;
                    let size = (k.len() + v.len()) as u64;
                    let old = ChangeRecord::timestamp_of(&v).is_some_and(|t| t < cutoff);
                    // The newest record stays: it carries the sequence across restarts.
                    if seq >= log.last || !(old || bytes - freed > retention.max_bytes) {
                        break;
                    }
                    doomed.push(k);
                    freed += size;
                    first = seq + 1;
                    if doomed.len() == CHUNK {
                        break;
                    }
                }
                if doomed.is_empty() {
                    break 'chunks;
                }
                // Advance the retained start before deleting, so no new subscription
                // starts a replay into the range being removed.
                if let Some(h) = lock(&self.hub).dbs.get_mut(&db) {
                    h.first = h.first.max(first);
                }
                if let Some(l) = lock(&self.commit).logs.get_mut(&db) {
                    l.bytes = l.bytes.saturating_sub(freed);
                }
                let mut tx = self.engine.begin()?;
                for k in &doomed {
                    tx.delete(Space::Changes, k)?;
                }
                tx.commit()?;
                bytes -= freed;
                removed += doomed.len() as u64;
                if doomed.len() < CHUNK {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

/// What a live subscription receives next.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Change(Arc<ChangeRecord>),
    /// The subscriber fell behind its bounded queue; resume from
    /// [`FeedSubscription::last_sequence`].
    Lagged,
    /// The database was dropped (or the store is closing).
    Dropped,
}

/// One subscriber's position in a database's change feed. Dropping it unsubscribes.
pub struct FeedSubscription {
    feed: Arc<ChangeFeed>,
    db_id: u64,
    db: String,
    current: u64,
    /// The next sequence to hand out.
    next: u64,
    /// Replay from the log while `next <= replay_to`.
    replay_to: u64,
    slot_id: u64,
    state: Arc<AtomicU8>,
    rx: mpsc::Receiver<Arc<ChangeRecord>>,
    buffer: usize,
}

impl FeedSubscription {
    /// The database's latest published sequence when the subscription started.
    pub fn current_sequence(&self) -> u64 {
        self.current
    }

    /// The last sequence handed out (the resume point).
    pub fn last_sequence(&self) -> u64 {
        self.next - 1
    }

    pub fn database(&self) -> &str {
        &self.db
    }

    /// The next records to replay from the durable log, at most `max`; `None` once the
    /// subscription has caught up and live records follow ([`Self::next`]). Reads
    /// storage: run it off the async executor.
    pub fn replay(&mut self, max: usize) -> Result<Option<Vec<Arc<ChangeRecord>>>> {
        match self.state.load(Ordering::Acquire) {
            DROPPED => return Ok(None),
            // Overflowed while replaying: replay further.
            LAGGED => self.catch_up(),
            _ => {}
        }
        if self.next > self.replay_to {
            return Ok(None);
        }
        let batch = self
            .feed
            .read(self.db_id, self.next, self.replay_to, max.max(1))?;
        match batch.first() {
            Some(r) if r.sequence == self.next => {}
            _ if self.state.load(Ordering::Acquire) == DROPPED => return Ok(None),
            _ => {
                return Err(StorageError::InvalidArgument(format!(
                    "change {} of database '{}' is no longer in the change log (removed by \
                     its retention while this subscription was catching up); re-read the \
                     data you follow, then subscribe without from_sequence",
                    self.next, self.db
                )))
            }
        }
        for r in &batch {
            if r.sequence != self.next {
                return Err(corrupt(
                    "the change log",
                    format!("sequence {} follows {}", r.sequence, self.next - 1),
                ));
            }
            self.next += 1;
        }
        Ok(Some(batch))
    }

    /// Whether the live queue overflowed (during a replay, [`Self::replay`] would
    /// take a fresh one and replay further).
    pub fn is_lagged(&self) -> bool {
        self.state.load(Ordering::Acquire) == LAGGED
    }

    /// After [`FeedItem::Lagged`], continues from the log instead of ending: takes a
    /// fresh live queue, and lets [`Self::replay`] hand out everything after
    /// [`Self::last_sequence`] up to the newest published change. For a subscriber
    /// whose queue overflowed because one commit brought more changes than it holds,
    /// not because it is slow.
    pub fn catch_up(&mut self) {
        self.feed.unregister(self.db_id, self.slot_id);
        let r = self.feed.register(self.db_id, self.buffer);
        let published = r.published;
        self.slot_id = r.slot_id;
        self.state = r.state;
        self.rx = r.rx;
        self.replay_to = self.replay_to.max(published);
    }

    /// The next live record (after [`Self::replay`] returned `None`).
    pub async fn next(&mut self) -> FeedItem {
        loop {
            match self.rx.next().await {
                Some(r) if r.sequence < self.next => continue,
                Some(r) if r.sequence == self.next => {
                    self.next += 1;
                    return FeedItem::Change(r);
                }
                // Never expected (publication is contiguous); resuming from the log
                // repairs it.
                Some(_) => return FeedItem::Lagged,
                None => {
                    return match self.state.load(Ordering::Acquire) {
                        LAGGED => FeedItem::Lagged,
                        _ => FeedItem::Dropped,
                    }
                }
            }
        }
    }
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        self.feed.unregister(self.db_id, self.slot_id);
    }
}

impl std::fmt::Debug for FeedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSubscription")
            .field("db", &self.db)
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut r = ChangeRecord::new(
            7,
            ChangeKind::Update,
            "orders",
            "k1",
            "_rev1",
            Bytes::from_static(b"{\"_key\":\"k1\"}"),
        );
        r.sequence = 42;
        r.timestamp_ms = 1_700_000_000_000;
        let raw = r.encode();
        assert_eq!(ChangeRecord::decode(7, 42, &raw).unwrap(), r);
        assert!(ChangeRecord::decode(7, 42, &raw.slice(..12)).is_err());
        assert!(ChangeRecord::decode(7, 42, &Bytes::from_static(b"\x09")).is_err());
    }
}
