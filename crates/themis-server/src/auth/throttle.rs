//! Failed-login throttling: growing delays per username and per client address.
//!
//! Every login attempt first asks [`LoginThrottle::delay`] how long to wait, waits,
//! then checks the credentials and reports the outcome with
//! [`LoginThrottle::failed`] or [`LoginThrottle::succeeded`].
//!
//! Failures are counted twice: once for the username and once for the client
//! address (IPv4 address, or IPv6 /64 network, since one host usually owns a whole
//! /64). With `f` failures counted so far and `F` free attempts
//! (`auth_free_attempts_per_user` or `auth_free_attempts_per_ip`) the wait is zero
//! while `f < F`, then `auth_delay * 2^(f - F)` capped at `auth_max_delay`. The
//! attempt waits the larger of the two.
//!
//! Window semantics: **fixed window starting at the first failure.** A counter
//! starts when its first failure is counted; once `auth_failure_window` has passed
//! since that first failure the counter is forgotten (counts as zero) and the next
//! failure starts a new window. Counters do not decay gradually.
//!
//! A successful login clears the username's counter only: the address counter is
//! kept, so an attacker who owns one valid account cannot use it to reset the
//! counter of the address they guess other passwords from.
//!
//! Memory is bounded under attack with random usernames or addresses: each map
//! holds at most [`MAX_ENTRIES`] counters. Expired counters are dropped
//! opportunistically (about once per window) and whenever a map is full (at most
//! once per second, so a full map of live counters does not make every failure
//! scan it). When a map is still full, the new key is not tracked: a new username
//! then gets no per-username delay but its address counter still applies, and vice
//! versa. Counters already tracked are never evicted before they expire, so flooding
//! the map cannot reset a victim's counter.
//!
//! Note: the delay is computed when the attempt starts, so attempts sent in parallel
//! all get the delay of the failures counted so far; `max_connections_per_ip`
//! bounds that parallelism per address.
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::SecurityConfig;

/// Most counters kept per map (usernames, addresses).
pub const MAX_ENTRIES: usize = 100_000;

/// Username keys are truncated to this many bytes (at a character boundary).
pub const MAX_USERNAME_KEY_BYTES: usize = 256;

/// How often a full map may be scanned for expired counters.
const FULL_PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Failed-login counters shared by every connection of the server.
///
/// `Send + Sync`; every method takes `&self` and holds an internal lock only
/// briefly (a map lookup, or rarely a scan of one map to drop expired counters).
pub struct LoginThrottle {
    free_per_user: u32,
    free_per_ip: u32,
    base_delay: Duration,
    max_delay: Duration,
    window: Duration,
    users: Mutex<Counters<String>>,
    ips: Mutex<Counters<IpAddr>>,
}

impl fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("free_per_user", &self.free_per_user)
            .field("free_per_ip", &self.free_per_ip)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// One counter: failures since `start`, the first failure of its window.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    start: Instant,
}

/// A bounded map of counters with its pruning state.
struct Counters<K> {
    map: HashMap<K, Entry>,
    last_prune: Instant,
}

impl<K: Hash + Eq> Counters<K> {
    fn new(now: Instant) -> Self {
        Counters {
            map: HashMap::new(),
            last_prune: now,
        }
    }

    /// Failures counted for `key` in its current window (0 when expired or absent).
    fn failures<Q>(&self, key: &Q, now: Instant, window: Duration) -> u32
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.map.get(key) {
            Some(e) if !expired(e, now, window) => e.failures,
            _ => 0,
        }
    }

    /// Counts one failure for `key`; `make_key` builds the owned key only when a
    /// new counter is inserted. Does nothing for a new key when the map is full.
    fn fail<Q>(&mut self, key: &Q, make_key: impl FnOnce() -> K, now: Instant, window: Duration)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Opportunistic clean-up, about once per window: amortised O(1) per failure.
        if now.saturating_duration_since(self.last_prune) >= window.max(FULL_PRUNE_INTERVAL) {
            self.prune(now, window);
        }
        if let Some(e) = self.map.get_mut(key) {
            if expired(e, now, window) {
                *e = Entry {
                    failures: 0,
                    start: now,
                };
            }
            e.failures = e.failures.saturating_add(1);
            return;
        }
        if self.map.len() >= MAX_ENTRIES
            && now.saturating_duration_since(self.last_prune) >= FULL_PRUNE_INTERVAL
        {
            self.prune(now, window);
        }
        if self.map.len() < MAX_ENTRIES {
            self.map.insert(
                make_key(),
                Entry {
                    failures: 1,
                    start: now,
                },
            );
        }
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        self.map.retain(|_, e| !expired(e, now, window));
        self.last_prune = now;
    }
}

fn expired(e: &Entry, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(e.start) >= window
}

/// The map key of a client address: IPv4 (also IPv4-mapped IPv6) as is, IPv6
/// reduced to its /64 network.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(net))
        }
    }
}

/// The map key of a username: at most [`MAX_USERNAME_KEY_BYTES`] bytes, cut at a
/// character boundary.
fn user_key(username: &str) -> &str {
    if username.len() <= MAX_USERNAME_KEY_BYTES {
        return username;
    }
    let mut end = MAX_USERNAME_KEY_BYTES;
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    &username[..end]
}

/// Lock a mutex, recovering the data if another thread panicked holding it (the
/// counters stay consistent: every update is a single assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LoginThrottle {
    /// A throttle with the `auth_*` settings of `config`. `auth_delay = 0` disables
    /// throttling: [`delay`](Self::delay) is always zero and nothing is counted.
    pub fn new(config: &SecurityConfig) -> Self {
        let now = Instant::now();
        LoginThrottle {
            free_per_user: config.auth_free_attempts_per_user,
            free_per_ip: config.auth_free_attempts_per_ip,
            base_delay: config.auth_delay,
            max_delay: config.auth_max_delay,
            window: config.auth_failure_window,
            users: Mutex::new(Counters::new(now)),
            ips: Mutex::new(Counters::new(now)),
        }
    }

    fn enabled(&self) -> bool {
        !self.base_delay.is_zero()
    }

    /// How long to wait before checking a login attempt of `username` from `ip`:
    /// the larger of the username's and the address's delay, each zero while fewer
    /// failures than its free attempts were counted in the window, then
    /// `auth_delay * 2^(failures - free)`, never more than `auth_max_delay`.
    pub fn delay(&self, ip: IpAddr, username: &str) -> Duration {
        self.delay_at(ip, username, Instant::now())
    }

    fn delay_at(&self, ip: IpAddr, username: &str, now: Instant) -> Duration {
        if !self.enabled() {
            return Duration::ZERO;
        }
        let user_failures = lock(&self.users).failures(user_key(username), now, self.window);
        let ip_failures = lock(&self.ips).failures(&ip_key(ip), now, self.window);
        self.delay_for(user_failures, self.free_per_user)
            .max(self.delay_for(ip_failures, self.free_per_ip))
    }

    /// `auth_delay * 2^(failures - free)` capped at `auth_max_delay`; zero while
    /// `failures < free`.
    fn delay_for(&self, failures: u32, free: u32) -> Duration {
        if failures < free {
            return Duration::ZERO;
        }
        let doublings = failures - free;
        if doublings >= 32 {
            return self.max_delay;
        }
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// Counts a failed login of `username` from `ip`, for both counters.
    pub fn failed(&self, ip: IpAddr, username: &str) {
        self.failed_at(ip, username, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, username: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        let user = user_key(username);
        lock(&self.users).fail(user, || user.to_owned(), now, self.window);
        let ip = ip_key(ip);
        lock(&self.ips).fail(&ip, || ip, now, self.window);
    }

    /// A successful login of `username`: clears the username's counter. The
    /// address's counter is kept on purpose (see the module documentation).
    pub fn succeeded(&self, _ip: IpAddr, username: &str) {
        if !self.enabled() {
            return;
        }
        lock(&self.users).map.remove(user_key(username));
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (lock(&self.users).map.len(), lock(&self.ips).map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config(free_user: u32, free_ip: u32) -> SecurityConfig {
        SecurityConfig {
            auth_free_attempts_per_user: free_user,
            auth_free_attempts_per_ip: free_ip,
            auth_delay: Duration::from_millis(100),
            auth_max_delay: Duration::from_millis(1000),
            auth_failure_window: Duration::from_secs(60),
            ..SecurityConfig::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn free_attempts_have_no_delay_then_doubling_then_cap() {
        let t = LoginThrottle::new(&config(3, 1000));
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..9 {
            seen.push(t.delay_at(ip(1), "alice", now));
            t.failed_at(ip(1), "alice", now);
        }
        assert_eq!(
            seen,
            vec![
                ms(0),
                ms(0),
                ms(0),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[test]
    fn zero_free_attempts_delay_every_attempt() {
        let t = LoginThrottle::new(&config(0, 1000));
        let now = Instant::now();
        assert_eq!(t.delay_at(ip(1), "alice", now), ms(100));
        t.failed_at(ip(1), "alice", now);
        assert_eq!(t.delay_at(ip(1), "alice", now), ms(200));
    }

    #[test]
    fn huge_failure_counts_stay_at_the_cap() {
        let t = LoginThrottle::new(&config(0, 0));
        assert_eq!(t.delay_for(63, 0), ms(1000));
        assert_eq!(t.delay_for(64, 0), ms(1000));
        assert_eq!(t.delay_for(u32::MAX, 0), ms(1000));
        assert_eq!(t.delay_for(u32::MAX, u32::MAX), ms(100));
    }

    #[test]
    fn ip_counter_is_independent_of_username() {
        let t = LoginThrottle::new(&config(1000, 2));
        let now = Instant::now();
        for i in 0..4 {
            t.failed_at(ip(1), &format!("user{i}"), now);
        }
        // Fresh username from the same address: the address delay applies.
        assert_eq!(t.delay_at(ip(1), "fresh", now), ms(400));
        // Another address is not affected.
        assert_eq!(t.delay_at(ip(2), "fresh", now), ms(0));
        assert_eq!(t.delay_at(ip(2), "user0", now), ms(0));
    }

    #[test]
    fn username_counter_spans_addresses() {
        let t = LoginThrottle::new(&config(2, 1000));
        let now = Instant::now();
        for i in 0..3 {
            t.failed_at(ip(i), "alice", now);
        }
        assert_eq!(t.delay_at(ip(200), "alice", now), ms(200));
        assert_eq!(t.delay_at(ip(200), "bob", now), ms(0));
    }

    #[test]
    fn success_clears_username_but_not_ip() {
        let t = LoginThrottle::new(&config(1, 1));
        let now = Instant::now();
        for _ in 0..3 {
            t.failed_at(ip(1), "alice", now);
        }
        t.succeeded(ip(1), "alice");
        // Username cleared: from another address no delay.
        assert_eq!(t.delay_at(ip(2), "alice", now), ms(0));
        // Address counter kept.
        assert_eq!(t.delay_at(ip(1), "alice", now), ms(400));
        assert_eq!(t.delay_at(ip(1), "bob", now), ms(400));
    }

    #[test]
    fn window_expiry_resets_counters() {
        let t = LoginThrottle::new(&config(1, 1));
        let start = Instant::now();
        for _ in 0..3 {
            t.failed_at(ip(1), "alice", start);
        }
        let inside = start + Duration::from_secs(59);
        assert_eq!(t.delay_at(ip(1), "alice", inside), ms(400));
        // The window runs from the first failure, not the last.
        t.failed_at(ip(1), "alice", inside);
        let after = start + Duration::from_secs(60);
        assert_eq!(t.delay_at(ip(1), "alice", after), ms(0));
        // The next failure starts a new window at one.
        t.failed_at(ip(1), "alice", after);
        assert_eq!(t.delay_at(ip(1), "alice", after), ms(100));
    }

    #[test]
    fn zero_delay_disables() {
        let mut c = config(0, 0);
        c.auth_delay = Duration::ZERO;
        let t = LoginThrottle::new(&c);
        let now = Instant::now();
        for _ in 0..10 {
            t.failed_at(ip(1), "alice", now);
        }
        assert_eq!(t.delay_at(ip(1), "alice", now), Duration::ZERO);
        assert_eq!(t.tracked(), (0, 0));
    }

    #[test]
    fn memory_is_bounded_with_random_usernames() {
        let t = LoginThrottle::new(&config(3, 5));
        let now = Instant::now();
        for _ in 0..200_000 {
            let name = format!("{:016x}", rand::random::<u64>());
            t.failed_at(ip(1), &name, now);
        }
        let (users, ips) = t.tracked();
        assert_eq!(users, MAX_ENTRIES);
        assert_eq!(ips, 1);
        // An untracked new username still gets the address delay (capped).
        t.failed_at(ip(1), "victim", now);
        assert_eq!(t.delay_at(ip(1), "victim", now), ms(1000));
        assert_eq!(t.tracked().0, MAX_ENTRIES);
        // Once the window has passed, expired counters make room again.
        let later = now + Duration::from_secs(61);
        t.failed_at(ip(2), "victim", later);
        assert_eq!(t.tracked().0, 1);
        assert_eq!(lock(&t.users).failures("victim", later, t.window), 1);
    }

    #[test]
    fn memory_is_bounded_with_random_addresses() {
        let t = LoginThrottle::new(&config(3, 5));
        let now = Instant::now();
        for _ in 0..(MAX_ENTRIES + 5_000) {
            let addr = IpAddr::V4(Ipv4Addr::from(rand::random::<u32>()));
            t.failed_at(addr, "root", now);
        }
        assert!(t.tracked().1 <= MAX_ENTRIES);
        assert_eq!(t.tracked().0, 1);
        assert_eq!(t.delay_at(ip(9), "root", now), ms(1000));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = LoginThrottle::new(&config(1000, 2));
        let now = Instant::now();
        for i in 0..3u16 {
            let a: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, i, 7, i));
            t.failed_at(a, &format!("u{i}"), now);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(t.delay_at(same_64, "x", now), ms(200));
        assert_eq!(t.delay_at(other_64, "x", now), ms(0));
        assert_eq!(t.tracked().1, 1);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let t = LoginThrottle::new(&config(1000, 1));
        let now = Instant::now();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        t.failed_at(mapped, "a", now);
        assert_eq!(t.delay_at(ip(1), "b", now), ms(100));
        assert_eq!(t.delay_at(ip(2), "b", now), ms(0));
    }

    #[test]
    fn long_usernames_are_truncated_for_the_key() {
        let t = LoginThrottle::new(&config(0, 1000));
        let now = Instant::now();
        let long = "é".repeat(1000);
        t.failed_at(ip(1), &long, now);
        let key = user_key(&long);
        assert!(key.len() <= MAX_USERNAME_KEY_BYTES);
        assert!(long.starts_with(key));
        // Same 256-byte prefix, same counter.
        let other = format!("{key}different tail");
        assert_eq!(t.delay_at(ip(2), &other, now), ms(200));
    }
}
