//! Reading a transaction's own writes without joining its read set.
//!
//! A transaction's engine reads (`KvTx::get`, scans) are *tracked*: at commit, anything
//! they saw that a concurrent transaction changed makes the commit conflict. That is
//! what SERIALIZABLE needs, and what every write needs for the key it overwrites. A
//! SNAPSHOT or READ_COMMITTED transaction must read without that tracking, yet still
//! see its own writes. So [`TxCore`] records each write in an [`Overlay`] as it passes
//! it to the engine, and [`OverlayView`] answers reads from the overlay first and from
//! an untracked engine snapshot for everything else.
//!
//! The overlay is copy-on-write (`Arc`): a view freezes the writes made so far at no
//! cost, and the next write after that copies the map once.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::KvError;
use crate::index::prefix_end;
use crate::kv::{KvIter, KvPair, KvRead, KvSnapshot, KvTx, Space};

/// A transaction's writes so far: `None` is a deletion.
pub(crate) type Overlay = BTreeMap<(usize, Vec<u8>), Option<Bytes>>;

/// An engine transaction that also records its writes in an [`Overlay`] (when asked
/// to) and counts them.
pub(crate) struct TxCore {
    tx: Box<dyn KvTx>,
    overlay: Option<Arc<Overlay>>,
    writes: u64,
}

impl TxCore {
    pub(crate) fn new(tx: Box<dyn KvTx>, record: bool) -> TxCore {
        TxCore {
            tx,
            overlay: record.then(Default::default),
            writes: 0,
        }
    }

    /// The writes so far, frozen (`None` when not recording).
    pub(crate) fn overlay(&self) -> Option<Arc<Overlay>> {
        self.overlay.clone()
    }

    /// How many puts and deletes went through this transaction.
    pub(crate) fn writes(&self) -> u64 {
        self.writes
    }

    /// The engine transaction, to commit it.
    pub(crate) fn into_inner(self) -> Box<dyn KvTx> {
        self.tx
    }

    fn record(&mut self, space: Space, key: &[u8], value: Option<Bytes>) {
        self.writes += 1;
        if let Some(o) = &mut self.overlay {
            Arc::make_mut(o).insert((space.index(), key.to_vec()), value);
        }
    }
}

impl KvRead for TxCore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.tx.get(space, key)
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        self.tx.scan_prefix(space, prefix)
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

impl KvTx for TxCore {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<(), KvError> {
        self.tx.put(space, key, value.clone())?;
        self.record(space, key, Some(value));
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), KvError> {
        self.tx.delete(space, key)?;
        self.record(space, key, None);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), KvError> {
        self.tx.commit()
    }
}

/// An untracked snapshot with a transaction's frozen writes laid over it.
pub(crate) struct OverlayView {
    pub base: Arc<dyn KvSnapshot>,
    pub overlay: Arc<Overlay>,
}

/// The overlay's entries of `space` within the bounds, in scan order.
fn overlay_range(
    overlay: &Overlay,
    space: Space,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    reverse: bool,
) -> Vec<(Vec<u8>, Option<Bytes>)> {
    // BTreeMap::range panics on crossed bounds; an unbounded side cannot cross.
    if crate::kv::range_is_empty(lower, upper) {
        return Vec::new();
    }
    let s = space.index();
    let lo = match lower {
        Bound::Included(k) => Bound::Included((s, k.to_vec())),
        Bound::Excluded(k) => Bound::Excluded((s, k.to_vec())),
        Bound::Unbounded => Bound::Included((s, Vec::new())),
    };
    let hi = match upper {
        Bound::Included(k) => Bound::Included((s, k.to_vec())),
        Bound::Excluded(k) => Bound::Excluded((s, k.to_vec())),
        Bound::Unbounded => Bound::Excluded((s + 1, Vec::new())),
    };
    let items = overlay
        .range((lo, hi))
        .map(|((_, k), v)| (k.clone(), v.clone()));
    if reverse {
        items.rev().collect()
    } else {
        items.collect()
    }
}

/// `base` (a scan of `space` within the bounds) with `overlay`'s entries laid over it.
fn merged(
    base: KvIter,
    overlay: &Overlay,
    space: Space,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    reverse: bool,
) -> KvIter {
    let own = overlay_range(overlay, space, lower, upper, reverse);
    if own.is_empty() {
        return base;
    }
    Box::new(Merge {
        base: base.peekable(),
        own: own.into_iter().peekable(),
        reverse,
    })
}

/// The upper bound of a prefix scan.
fn prefix_upper(end: &Option<Vec<u8>>) -> Bound<&[u8]> {
    match end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    }
}

impl KvRead for OverlayView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        match self.overlay.get(&(space.index(), key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(space, key),
        }
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        let end = prefix_end(prefix);
        self.scan_range(space, Bound::Included(prefix), prefix_upper(&end), false)
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        let base = self.base.scan_range(space, lower, upper, reverse);
        merged(base, &self.overlay, space, lower, upper, reverse)
    }
}

impl KvSnapshot for OverlayView {}

/// One operation's writes inside a shared engine transaction, held apart until the
/// operation has succeeded: the batch writer (`batch.rs`) runs many requests' writes
/// in one engine transaction, and a request that fails must leave nothing behind.
///
/// Reads see the operation's own writes first, then the shared transaction (its
/// earlier operations' writes, then its snapshot), and are tracked by it: a
/// concurrent commit that changes what any operation read makes the whole batch
/// conflict. [`Savepoint::release`] passes the writes on to the shared transaction;
/// dropping the savepoint discards them.
pub(crate) struct Savepoint<'a> {
    parent: &'a mut dyn KvTx,
    own: Overlay,
}

impl<'a> Savepoint<'a> {
    pub(crate) fn new(parent: &'a mut dyn KvTx) -> Savepoint<'a> {
        Savepoint {
            parent,
            own: Overlay::new(),
        }
    }

    /// Writes the operation's writes into the shared transaction.
    pub(crate) fn release(self) -> Result<(), KvError> {
        for ((s, key), value) in self.own {
            let space = Space::ALL[s];
            match value {
                Some(v) => self.parent.put(space, &key, v)?,
                None => self.parent.delete(space, &key)?,
            }
        }
        Ok(())
    }
}

impl KvRead for Savepoint<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        match self.own.get(&(space.index(), key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.parent.get(space, key),
        }
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        // The parent's own prefix scan, which the batch transaction may answer from
        // what it remembers (`batch::BatchTx`).
        let end = prefix_end(prefix);
        let base = self.parent.scan_prefix(space, prefix);
        merged(
            base,
            &self.own,
            space,
            Bound::Included(prefix),
            prefix_upper(&end),
            false,
        )
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        let base = self.parent.scan_range(space, lower, upper, reverse);
        merged(base, &self.own, space, lower, upper, reverse)
    }
}

impl KvTx for Savepoint<'_> {
    fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<(), KvError> {
        self.own.insert((space.index(), key.to_vec()), Some(value));
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<(), KvError> {
        self.own.insert((space.index(), key.to_vec()), None);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), KvError> {
        Err(KvError::Engine(
            "a savepoint commits with its shared transaction, not on its own".to_string(),
        ))
    }
}

/// Merges a snapshot scan with overlay entries in the same order; the overlay wins on
/// equal keys and its deletions hide the snapshot's pairs.
struct Merge {
    base: std::iter::Peekable<KvIter>,
    own: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<Bytes>)>>,
    reverse: bool,
}

impl Iterator for Merge {
    type Item = Result<KvPair, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.own.peek()) {
                (Some(Err(_)), _) => return self.base.next(),
                (None, None) => return None,
                (Some(Ok(_)), None) => return self.base.next(),
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    let o = bk.as_ref().cmp(ok.as_slice());
                    if self.reverse {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            match order {
                std::cmp::Ordering::Less => return self.base.next(),
                std::cmp::Ordering::Equal => {
                    self.base.next();
                }
                std::cmp::Ordering::Greater => {}
            }
            let (k, v) = self.own.next()?;
            if let Some(v) = v {
                return Some(Ok((Bytes::from(k), v)));
            }
        }
    }
}

/// Reads through a shared transaction: tracked reads for SERIALIZABLE statements.
/// Fails once the transaction has ended.
pub(crate) struct TxReader {
    pub core: Arc<std::sync::Mutex<Option<TxCore>>>,
}

fn ended() -> KvError {
    KvError::Engine(
        "the transaction this read belongs to has ended (committed or rolled back); run the \
         query again"
            .to_string(),
    )
}

impl TxReader {
    fn with<T>(&self, f: impl FnOnce(&TxCore) -> T, or: impl FnOnce() -> T) -> T {
        let guard = self.core.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(core) => f(core),
            None => or(),
        }
    }
}

impl KvRead for TxReader {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.with(|c| c.get(space, key), || Err(ended()))
    }

    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
        self.with(
            |c| c.scan_prefix(space, prefix),
            || Box::new(std::iter::once(Err(ended()))),
        )
    }

    fn scan_range(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> KvIter {
        self.with(
            |c| c.scan_range(space, lower, upper, reverse),
            || Box::new(std::iter::once(Err(ended()))),
        )
    }
}

impl KvSnapshot for TxReader {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain in-memory snapshot for the merge tests.
    struct Mem(BTreeMap<Vec<u8>, Bytes>);

    impl KvRead for Mem {
        fn get(&self, _: Space, key: &[u8]) -> Result<Option<Bytes>, KvError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan_prefix(&self, space: Space, prefix: &[u8]) -> KvIter {
            let end = prefix_end(prefix);
            self.scan_range(
                space,
                Bound::Included(prefix),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                false,
            )
        }
        fn scan_range(
            &self,
            _: Space,
            lower: Bound<&[u8]>,
            upper: Bound<&[u8]>,
            reverse: bool,
        ) -> KvIter {
            if crate::kv::range_is_empty(lower, upper) {
                return Box::new(std::iter::empty());
            }
            let lo = lower.map(<[u8]>::to_vec);
            let hi = upper.map(<[u8]>::to_vec);
            let mut v: Vec<_> = self
                .0
                .range((lo, hi))
                .map(|(k, v)| Ok((Bytes::from(k.clone()), v.clone())))
                .collect();
            if reverse {
                v.reverse();
            }
            Box::new(v.into_iter())
        }
    }
    impl KvSnapshot for Mem {}

    fn view() -> OverlayView {
        let base: BTreeMap<Vec<u8>, Bytes> =
            [("a1", "A1"), ("a2", "A2"), ("a4", "A4"), ("b1", "B1")]
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Bytes::from(v)))
                .collect();
        let mut o = Overlay::new();
        let d = Space::Docs.index();
        o.insert((d, b"a2".to_vec()), None);
        o.insert((d, b"a3".to_vec()), Some(Bytes::from("A3")));
        o.insert((d, b"a4".to_vec()), Some(Bytes::from("A4'")));
        o.insert((d, b"a5".to_vec()), Some(Bytes::from("A5")));
        o.insert(
            (Space::Index.index(), b"a9".to_vec()),
            Some(Bytes::from("other space")),
        );
        OverlayView {
            base: Arc::new(Mem(base)),
            overlay: Arc::new(o),
        }
    }

    fn collect(it: KvIter) -> Vec<String> {
        it.map(|r| {
            let (k, v) = r.unwrap();
            format!(
                "{}={}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
    }

    #[test]
    fn scans_merge_own_writes_in_both_directions() {
        let v = view();
        assert_eq!(
            collect(v.scan_prefix(Space::Docs, b"a")),
            ["a1=A1", "a3=A3", "a4=A4'", "a5=A5"]
        );
        assert_eq!(
            collect(v.scan_range(
                Space::Docs,
                Bound::Excluded(b"a1"),
                Bound::Included(b"a4"),
                true
            )),
            ["a4=A4'", "a3=A3"]
        );
        assert_eq!(
            collect(v.scan_range(Space::Docs, Bound::Unbounded, Bound::Unbounded, false)),
            ["a1=A1", "a3=A3", "a4=A4'", "a5=A5", "b1=B1"]
        );
        assert!(collect(v.scan_range(
            Space::Docs,
            Bound::Included(b"a5"),
            Bound::Excluded(b"a3"),
            false
        ))
        .is_empty());
    }

    #[test]
    fn gets_prefer_own_writes_and_deletions() {
        let v = view();
        assert_eq!(v.get(Space::Docs, b"a2").unwrap(), None);
        assert_eq!(v.get(Space::Docs, b"a3").unwrap(), Some(Bytes::from("A3")));
        assert_eq!(v.get(Space::Docs, b"a1").unwrap(), Some(Bytes::from("A1")));
    }
}
