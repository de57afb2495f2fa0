//! A connection's outgoing queue: many senders (request tasks, subscriptions, the
//! reader), one receiver (the writer task), unbounded (what bounds it is the
//! connection's in-flight permits and event budget that travel with each frame).
//!
//! It replaces tokio's unbounded mpsc channel, which allocates its first block of 32
//! slots (about 1.5 KB here) when the channel is created: with 10,000 mostly idle
//! connections that was 15 MB. An empty outbox holds no buffer, and one that carried a
//! burst gives its buffer back once drained.
//!
//! Semantics as the channel's: `send` fails once the receiver is gone; `recv` waits
//! for an item and returns `None` once every sender is gone and the queue is empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A drained queue whose buffer grew past this many items gives it back.
const KEPT_CAPACITY: usize = 64;

struct Inner<T> {
    queue: Mutex<VecDeque<T>>,
    /// Wakes the receiver: an item arrived, or the last sender went away. A
    /// notification sent while the receiver is not waiting is kept for its next wait.
    ready: Notify,
    senders: AtomicUsize,
    closed: AtomicBool,
}

impl<T> Inner<T> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; clone it for every producer.
pub(crate) struct Sender<T>(Arc<Inner<T>>);

/// The receiving side.
pub(crate) struct Receiver<T>(Arc<Inner<T>>);

/// A new, empty outbox.
pub(crate) fn outbox<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
    });
    (Sender(inner.clone()), Receiver(inner))
}

impl<T> Sender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        {
            let mut queue = self.0.queue();
            // Checked under the lock the receiver clears the queue under, so nothing
            // is queued after the receiver has gone.
            if self.0.closed.load(Ordering::Acquire) {
                return Err(item);
            }
            queue.push_back(item);
        }
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and nothing is left.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                // A last send happens before its sender's drop: look once more.
                return self.try_recv();
            }
            self.0.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut queue = self.0.queue();
        let item = queue.pop_front();
        if item.is_none() && queue.capacity() > KEPT_CAPACITY {
            *queue = VecDeque::new();
        }
        item
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut queue = self.0.queue();
        self.0.closed.store(true, Ordering::Release);
        // Drops what is queued now (their permits with them), not when the last
        // sender goes.
        queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = outbox();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        drop(tx);
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx2.send(3).unwrap();
        });
        // Waits for the remaining sender, then sees its item, then the end.
        assert_eq!(rx.recv().await, Some(3));
        late.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send_from_another_task() {
        let (tx, mut rx) = outbox();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send("x").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Some("x"));
    }

    #[test]
    fn sending_after_the_receiver_is_gone_fails_and_queued_items_are_dropped() {
        let (tx, rx) = outbox();
        let item = Arc::new(());
        tx.send(item.clone()).unwrap();
        assert_eq!(Arc::strong_count(&item), 2);
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1, "dropped with the receiver");
        assert!(tx.send(item).is_err());
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let (tx, mut rx) = outbox();
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.0.queue().capacity(), 0);
    }
}
