//! [`RetryPolicy`]: how often, and how patiently, the client tries again on its own —
//! a transaction that lost a write conflict ([`Client::transaction`]) and a
//! subscription that lost its connection ([`Client::subscribe`]).
//!
//! Waits grow exponentially from `initial_backoff` up to `max_backoff`, each drawn at
//! random from its upper half ("equal jitter"), so clients that failed together do not
//! retry together. A server's hint (`retry_after_ms`, GOAWAY's `reconnect_after_ms`) is
//! a lower bound for the next wait.
//!
//! Invariant: a policy is used up after `max_attempts` attempts, or once the next wait
//! would end after `max_elapsed` since the first failure, whichever comes first; it
//! never sleeps past either limit.
//!
//! [`Client::transaction`]: crate::Client::transaction
//! [`Client::subscribe`]: crate::Client::subscribe

use std::time::{Duration, Instant};

/// How the client retries on its own; see the module docs.
///
/// ```
/// use std::time::Duration;
/// use themis_client::RetryPolicy;
///
/// let patient = RetryPolicy {
///     max_attempts: 50,
///     max_elapsed: Duration::from_secs(300),
///     ..RetryPolicy::default()
/// };
/// assert_eq!(patient.initial_backoff, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1). For a subscription:
    /// consecutive failed attempts to get going again. Default 10.
    pub max_attempts: u32,
    /// Give up once the next wait would end later than this after the first failure.
    /// Default 30 s.
    pub max_elapsed: Duration,
    /// The wait after the first failure (before jitter). Default 50 ms.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts (before jitter). Default 5 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after `failures` failures (1 = the first), with jitter.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(ceiling_ns / 2..=ceiling_ns))
    }
}

/// One run of attempts under a [`RetryPolicy`].
#[derive(Debug)]
pub(crate) struct Retry<'a> {
    policy: &'a RetryPolicy,
    first_failure: Option<Instant>,
    failures: u32,
}

impl<'a> Retry<'a> {
    pub fn new(policy: &'a RetryPolicy) -> Self {
        Self {
            policy,
            first_failure: None,
            failures: 0,
        }
    }

    /// Records a failed attempt. Returns how long to wait before the next one, at
    /// least `hint`, or `None` when the policy is used up.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        let first_failure = *self.first_failure.get_or_insert_with(Instant::now);
        self.failures += 1;
        if self.failures >= self.policy.max_attempts.max(1) {
            return None;
        }
        let delay = self
            .policy
            .backoff(self.failures)
            .max(hint.unwrap_or_default());
        // Saturating: the hint comes from the server and may be absurd.
        (first_failure.elapsed().saturating_add(delay) <= self.policy.max_elapsed).then_some(delay)
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            max_elapsed: Duration::from_secs(3600),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
    }

    #[test]
    fn waits_grow_exponentially_with_jitter_and_are_capped() {
        let p = policy(100);
        for _ in 0..200 {
            for (failures, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000)] {
                let d = p.backoff(failures);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(d <= ceiling && d >= ceiling / 2, "{failures}: {d:?}");
            }
            // Far past the cap, without overflow.
            assert!(p.backoff(u32::MAX) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn attempts_are_counted_first_one_included() {
        let p = policy(3);
        let mut retry = Retry::new(&p);
        assert!(retry.next_delay(None).is_some());
        assert!(retry.next_delay(None).is_some());
        assert_eq!(retry.next_delay(None), None);
        assert_eq!(retry.failures(), 3);

        let p = RetryPolicy::never();
        assert_eq!(Retry::new(&p).next_delay(None), None);
        let p = policy(0);
        assert_eq!(Retry::new(&p).next_delay(None), None, "0 means 1");
    }

    #[test]
    fn a_server_hint_is_a_lower_bound_and_time_is_limited() {
        let p = policy(10);
        let mut retry = Retry::new(&p);
        assert_eq!(
            retry.next_delay(Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        let p = RetryPolicy {
            max_elapsed: Duration::from_secs(1),
            ..policy(10)
        };
        let mut retry = Retry::new(&p);
        assert_eq!(retry.next_delay(Some(Duration::from_secs(2))), None);
        let mut retry = Retry::new(&p);
        assert_eq!(retry.next_delay(Some(Duration::MAX)), None, "no overflow");
    }
}
