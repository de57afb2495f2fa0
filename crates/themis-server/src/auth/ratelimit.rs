//! Per-principal request rate limit: a token bucket per principal (user), shared by
//! all of that principal's connections.
//!
//! Each bucket holds at most `burst` tokens and refills continuously at `rate`
//! tokens per second; every request takes one. A request finding less than one
//! token is refused with the milliseconds until one is available.
//!
//! The buckets live in [`SHARDS`] maps, each behind its own mutex and chosen by a
//! hash of the principal, so connections of different principals rarely contend.
//! A bucket that has refilled to `burst` is equivalent to no bucket at all, so when
//! a shard grows past [`SHARD_PRUNE_AT`] buckets the full ones are dropped; memory
//! is bounded by the principals active within one `burst / rate` period.
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

/// Number of independently locked maps.
pub const SHARDS: usize = 16;

/// Buckets one shard may hold before full buckets are dropped.
pub const SHARD_PRUNE_AT: usize = 4096;

/// A token bucket per principal. `Send + Sync`; share one per server.
pub struct RateLimiter {
    /// Tokens per second; 0 = disabled.
    rate: u32,
    /// Bucket capacity, at least 1 when enabled.
    burst: u32,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

/// One token, in the units buckets count in (exact integer arithmetic: refilling
/// for `n` nanoseconds at `rate` tokens per second adds exactly `n * rate` units).
const TOKEN: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens at `last` in units of 1/[`TOKEN`], in `0..=burst * TOKEN`.
    units: u64,
    last: Instant,
}

struct Shard {
    buckets: HashMap<String, Bucket>,
    /// Size at which the next insert first drops full buckets; grows when most
    /// buckets are in use, so pruning stays amortised O(1) per insert.
    prune_at: usize,
}

impl RateLimiter {
    /// A limiter of `rate_per_second` requests per principal with bursts of up to
    /// `burst` requests. `rate_per_second = 0` disables it: [`check`](Self::check)
    /// always succeeds without taking a lock. `burst = 0` means `rate_per_second`
    /// (one second's worth).
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        let burst = if burst == 0 { rate_per_second } else { burst };
        let shards = if rate_per_second == 0 {
            Box::default()
        } else {
            (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        prune_at: SHARD_PRUNE_AT,
                    })
                })
                .collect()
        };
        RateLimiter {
            rate: rate_per_second,
            burst,
            hasher: RandomState::new(),
            shards,
        }
    }

    /// Takes one token from `principal`'s bucket. `Err(retry_after_ms)` when the
    /// bucket is empty: the milliseconds (at least 1) until one token is available.
    /// A refused request takes no token.
    pub fn check(&self, principal: &str) -> Result<(), u32> {
        if self.rate == 0 {
            return Ok(());
        }
        self.check_at(principal, Instant::now())
    }

    /// [`check`](Self::check) at time `now` (tests pass their own clock).
    fn check_at(&self, principal: &str, now: Instant) -> Result<(), u32> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = u64::from(self.rate);
        let capacity = u64::from(self.burst) * TOKEN;
        let index = (self.hasher.hash_one(principal) as usize) % self.shards.len();
        let mut guard = self.shards[index].lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *guard;
        if let Some(bucket) = shard.buckets.get_mut(principal) {
            bucket.units = refilled(bucket, now, rate, capacity);
            // Never move `last` backwards (a `now` read before another thread's
            // may arrive after it).
            if now > bucket.last {
                bucket.last = now;
            }
            return take(bucket, rate);
        }
        if shard.buckets.len() >= shard.prune_at {
            shard.prune(now, rate, capacity);
        }
        let bucket = shard.buckets.entry(principal.to_owned()).or_insert(Bucket {
            units: capacity,
            last: now,
        });
        take(bucket, rate)
    }
}

/// Takes one token from an already refilled bucket, or says how long until one is
/// there.
fn take(bucket: &mut Bucket, rate: u64) -> Result<(), u32> {
    if bucket.units >= TOKEN {
        bucket.units -= TOKEN;
        Ok(())
    } else {
        // Nanoseconds until the missing units have refilled, rounded up to ms.
        let nanos = (TOKEN - bucket.units).div_ceil(rate);
        let ms = nanos.div_ceil(1_000_000);
        Err(u32::try_from(ms).unwrap_or(u32::MAX).max(1))
    }
}

/// The bucket's units at `now`: refilled at `rate` tokens per second since `last`,
/// at most `capacity`.
fn refilled(bucket: &Bucket, now: Instant, rate: u64, capacity: u64) -> u64 {
    let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
    let units = u128::from(bucket.units).saturating_add(elapsed.saturating_mul(u128::from(rate)));
    // `min` with a u64 value, so the conversion cannot fail.
    u64::try_from(units.min(u128::from(capacity))).unwrap_or(capacity)
}

impl Shard {
    /// Drops buckets that have refilled to `burst` by `now`.
    fn prune(&mut self, now: Instant, rate: u64, capacity: u64) {
        self.buckets
            .retain(|_, b| refilled(b, now, rate, capacity) < capacity);
        self.prune_at = SHARD_PRUNE_AT.max(self.buckets.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refused_with_retry_after() {
        let l = RateLimiter::new(10, 5);
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check_at("alice", now), Ok(()));
        }
        // Empty: one token takes 1/10 s.
        assert_eq!(l.check_at("alice", now), Err(100));
        // Half a token later: 50 ms to go.
        assert_eq!(
            l.check_at("alice", now + Duration::from_millis(50)),
            Err(50)
        );
    }

    #[test]
    fn retry_after_is_at_least_one_ms() {
        let l = RateLimiter::new(100_000_000, 1);
        let now = Instant::now();
        assert_eq!(l.check_at("a", now), Ok(()));
        assert_eq!(l.check_at("a", now), Err(1));
    }

    #[test]
    fn refills_over_time_up_to_burst() {
        let l = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.check_at("alice", t0).is_ok());
        }
        assert!(l.check_at("alice", t0).is_err());
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check_at("alice", t1).is_ok());
        assert!(l.check_at("alice", t1).is_err());
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(l.check_at("alice", t2).is_ok());
        }
        assert!(l.check_at("alice", t2).is_err());
    }

    #[test]
    fn principals_are_independent() {
        let l = RateLimiter::new(1, 2);
        let now = Instant::now();
        assert!(l.check_at("alice", now).is_ok());
        assert!(l.check_at("alice", now).is_ok());
        assert_eq!(l.check_at("alice", now), Err(1000));
        assert!(l.check_at("bob", now).is_ok());
        assert!(l.check_at("bob", now).is_ok());
        assert!(l.check_at("bob", now).is_err());
    }

    #[test]
    fn disabled_never_refuses() {
        let l = RateLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert_eq!(l.check("alice"), Ok(()));
        }
        let l = RateLimiter::new(0, 5);
        for _ in 0..10_000 {
            assert_eq!(l.check_at("alice", Instant::now()), Ok(()));
        }
    }

    #[test]
    fn burst_zero_means_rate() {
        let l = RateLimiter::new(3, 0);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("alice", now).is_ok());
        }
        assert!(l.check_at("alice", now).is_err());
    }

    #[test]
    fn clock_going_backwards_does_not_refill() {
        let l = RateLimiter::new(10, 1);
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(l.check_at("a", t0).is_ok());
        assert!(l.check_at("a", t0 - Duration::from_millis(500)).is_err());
        assert!(l.check_at("a", t0).is_err());
    }

    #[test]
    fn full_buckets_are_dropped_when_shards_grow() {
        let l = RateLimiter::new(1000, 1);
        let t0 = Instant::now();
        let n = SHARDS * SHARD_PRUNE_AT * 3;
        for i in 0..n {
            // Each principal used once; 1 ms later its bucket is full again.
            let now = t0 + Duration::from_millis(i as u64 / 1000);
            assert!(l.check_at(&format!("p{i}"), now).is_ok());
        }
        let total: usize = l
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
            .sum();
        assert!(total <= SHARDS * SHARD_PRUNE_AT * 2, "{total} buckets kept");
    }

    #[test]
    fn busy_buckets_are_kept() {
        let l = RateLimiter::new(1, 1);
        let now = Instant::now();
        for i in 0..(SHARDS * SHARD_PRUNE_AT * 2) {
            assert!(l.check_at(&format!("p{i}"), now).is_ok());
        }
        // None refilled yet: every bucket is kept, so nobody gets a fresh burst.
        assert!(l.check_at("p0", now).is_err());
        assert!(l.check_at("p12345", now).is_err());
    }

    #[test]
    fn concurrent_use_counts_every_token() {
        let l = std::sync::Arc::new(RateLimiter::new(1, 1000));
        let now = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..250).filter(|_| l.check_at("x", now).is_ok()).count()
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(ok, 1000);
    }
}
