//! Request keys on the server side: checking a request's key, the per-key gate that
//! runs requests with the same (user, key) one at a time in this process, and the
//! periodic sweep of expired records. The records themselves, and the guarantee that
//! a keyed write applies at most once, live in storage (`themis_storage::RequestKey`,
//! `DocumentStore::run_keyed`): the record is read and written inside the write's own
//! engine transaction, so of two racing requests the second conflicts, reruns and
//! finds the record.
//!
//! Why a gate on top: it is what lets a resent COMMIT_TX whose transaction is gone
//! (its connection died) find the record of the original commit when that commit is
//! still running on the dead connection: the resend waits for it instead of looking
//! a moment too early. For CREATE/UPDATE/DELETE it only saves the loser of a race a
//! conflict and a rerun; correctness does not depend on it. The gate is held from
//! before the lookup until the storage commit returns (the guard travels into the
//! writer-pool job), not across the wait for durability: a waiter that then finds the
//! record answers after its own durability wait, which covers the original commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use themis_proto::wire;
use themis_storage::RequestKey;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::handlers::storage_error;
use crate::Shared;

/// Records deleted per sweep transaction.
const SWEEP_BATCH: usize = 1000;
/// Sweep transactions per round; the rest waits for the next round.
const SWEEP_MAX_BATCHES: usize = 10;

type Scope = (String, String);

/// The per-(user, key) gate. See the module doc.
#[derive(Default)]
pub(crate) struct KeyGates {
    gates: Arc<Mutex<HashMap<Scope, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while a keyed request looks up and writes its record; dropping it lets the
/// next request with the same key in.
pub(crate) struct KeyGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    gates: Arc<Mutex<HashMap<Scope, Arc<tokio::sync::Mutex<()>>>>>,
    scope: Scope,
}

impl KeyGates {
    /// Waits until no other request with `rk` runs here, then holds the gate.
    pub(crate) async fn enter(&self, rk: &RequestKey) -> KeyGuard {
        let scope = (rk.user().to_string(), rk.key().to_string());
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            gates.entry(scope.clone()).or_default().clone()
        };
        let guard = gate.lock_owned().await;
        KeyGuard {
            guard: Some(guard),
            gates: self.gates.clone(),
            scope,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.gates.lock().unwrap().len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody waits, so the entry goes (new arrivals clone
        // it under this lock, so the count cannot grow meanwhile).
        if gates
            .get(&self.scope)
            .is_some_and(|g| Arc::strong_count(g) == 1)
        {
            gates.remove(&self.scope);
        }
    }
}

/// The request key of a request by `user`, or `None` when `key` is empty; a bad key is
/// `ERR_INVALID_ARGUMENT` naming the rule.
pub(crate) fn request_key(
    user: &str,
    key: &str,
    window: Duration,
) -> Result<Option<RequestKey>, wire::Error> {
    if key.is_empty() {
        return Ok(None);
    }
    RequestKey::new(user, key, window)
        .map(Some)
        .map_err(storage_error)
}

/// How often the sweep runs for a window: a tenth of it, between 100 ms and a minute.
pub(crate) fn sweep_interval(window: Duration) -> Duration {
    (window / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Deletes expired request key records every [`sweep_interval`] until shutdown, at
/// most [`SWEEP_MAX_BATCHES`] × [`SWEEP_BATCH`] per round. It commits, so it runs on
/// the writer pool like every other storage commit.
pub(crate) async fn sweep_expired(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let every = sweep_interval(shared.config.server.request_key_window);
    loop {
        tokio::select! {
            _ = crate::stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let store = shared.store.clone();
        let round = shared
            .writers
            .run(move || {
                let mut removed = 0;
                for _ in 0..SWEEP_MAX_BATCHES {
                    let n = store.sweep_request_keys(SWEEP_BATCH)?;
                    removed += n;
                    if n < SWEEP_BATCH {
                        break;
                    }
                }
                Ok::<_, themis_storage::StorageError>(removed)
            })
            .await;
        match round {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => info!(removed, "expired request keys removed"),
            Ok(Err(e)) => warn!(error = %e, "removing expired request keys failed; retrying later"),
            Err(e) => warn!(error = %e, "removing expired request keys did not finish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_invalid_arguments_naming_the_rule() {
        let w = Duration::from_secs(600);
        assert_eq!(request_key("u", "", w).unwrap(), None);
        assert!(request_key("u", "abc", w).unwrap().is_some());
        let e = request_key("u", &"x".repeat(65), w).unwrap_err();
        assert_eq!(e.code, wire::ErrorCode::ErrInvalidArgument as i32);
        assert!(
            e.message.contains("1-64 bytes of printable ASCII"),
            "{}",
            e.message
        );
    }

    #[test]
    fn sweep_interval_is_a_tenth_of_the_window_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(500)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(86_400)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn gates_serialise_one_key_and_clean_up() {
        let gates = KeyGates::default();
        let w = Duration::from_secs(1);
        let a = RequestKey::new("u", "k", w).unwrap();
        let other_user = RequestKey::new("v", "k", w).unwrap();
        let first = gates.enter(&a).await;
        // Another user's key is a different gate.
        let _v = gates.enter(&other_user).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), gates.enter(&a)).await;
        assert!(waiting.is_err(), "a second request with the key must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), gates.enter(&a))
            .await
            .expect("the gate opens once the first is done");
        drop(second);
        drop(_v);
        assert_eq!(gates.len(), 0);
    }
}
