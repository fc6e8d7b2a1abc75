//! The login rate limit per remote address (PROTOCOL.md section 7): a token bucket per
//! address, checked when `Hello` arrives and before its token or ticket is, so that a
//! script trying tokens, or a flood of logins, costs the node a map lookup per attempt
//! rather than a signature check and a player load.
//!
//! Sans-IO: [`LoginBuckets`] takes `now`; [`LoginLimiter`] shares it between sessions
//! behind a mutex held for one lookup, never across an await.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_shared::config::LoginLimitConfig;

/// Addresses whose buckets are kept at most; a new one beyond it evicts the address seen
/// least recently (which then starts again from a full bucket). About 100 bytes each (a
/// map entry and a queue entry): 6.5 MiB at most.
pub const LOGIN_ADDRESSES_MAX: usize = 65_536;

/// One address's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Logins it may make now (fractions accrue).
    tokens: f64,
    /// When `tokens` was last brought up to date (its last login attempt).
    seen: Instant,
}

/// The buckets of the addresses seen, at most `addresses_max`.
#[derive(Debug)]
pub struct LoginBuckets {
    limit: LoginLimitConfig,
    addresses_max: usize,
    buckets: HashMap<IpAddr, Bucket>,
    /// Each tracked address once, with when it was queued, oldest first. An address seen
    /// again since is queued again (with its `seen`) when it reaches the front, instead of
    /// being evicted: the front is then the address seen least recently.
    order: VecDeque<(IpAddr, Instant)>,
}

impl LoginBuckets {
    /// Buckets for `limit`, keeping at most `addresses_max` addresses (at least one).
    pub fn new(limit: LoginLimitConfig, addresses_max: usize) -> Self {
        LoginBuckets {
            limit,
            addresses_max: addresses_max.max(1),
            buckets: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes a login from `addr`'s bucket at `now`: `Ok`, or `Err` with how long until it
    /// holds one (at least a millisecond).
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = address_key(addr);
        if key.is_loopback() && !self.limit.loopback {
            return Ok(());
        }
        let burst = f64::from(self.limit.burst.max(1));
        let rate = f64::from(self.limit.per_s.max(1));
        if !self.buckets.contains_key(&key) {
            self.make_room();
            self.order.push_back((key, now));
            self.buckets.insert(
                key,
                Bucket {
                    tokens: burst,
                    seen: now,
                },
            );
        }
        let bucket = self.buckets.get_mut(&key).expect("inserted above");
        let elapsed_s = now.saturating_duration_since(bucket.seen).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed_s * rate).min(burst);
        bucket.seen = bucket.seen.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - bucket.tokens) / rate;
            Err(Duration::from_secs_f64(wait_s).max(Duration::from_millis(1)))
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Evicts the addresses seen least recently until there is room for one more.
    fn make_room(&mut self) {
        while self.buckets.len() >= self.addresses_max {
            let Some((addr, queued)) = self.order.pop_front() else {
                debug_assert!(false, "every tracked address is queued");
                self.buckets.clear();
                return;
            };
            match self.buckets.get(&addr) {
                Some(bucket) if bucket.seen > queued => self.order.push_back((addr, bucket.seen)),
                Some(_) => {
                    self.buckets.remove(&addr);
                }
                None => {}
            }
        }
    }
}

/// The address a bucket is kept for: an IPv4 address (IPv4-mapped IPv6 ones as IPv4), or
/// an IPv6 address's /64, which one subscriber usually holds whole.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        other => other,
    }
}

/// [`LoginBuckets`] shared by a node's sessions.
#[derive(Debug)]
pub struct LoginLimiter(Mutex<LoginBuckets>);

impl LoginLimiter {
    /// A limiter for `limit`, tracking at most [`LOGIN_ADDRESSES_MAX`] addresses.
    pub fn new(limit: LoginLimitConfig) -> Self {
        LoginLimiter(Mutex::new(LoginBuckets::new(limit, LOGIN_ADDRESSES_MAX)))
    }

    /// [`LoginBuckets::check`] now.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        // A panic while holding it cannot leave a bucket half-updated in a harmful way.
        let mut buckets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buckets.check(addr, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: LoginLimitConfig = LoginLimitConfig {
        per_s: 2,
        burst: 3,
        loopback: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_with_the_time_to_wait() {
        let mut b = LoginBuckets::new(LIMIT, 8);
        let t0 = Instant::now();
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(b.check(a, t0), Ok(()));
        }
        assert_eq!(b.check(a, t0), Err(Duration::from_millis(500)));
        assert_eq!(b.check(ip("203.0.113.8"), t0), Ok(()), "per address");
        assert_eq!(
            b.check(a, t0 + Duration::from_millis(250)),
            Err(Duration::from_millis(250))
        );
        assert_eq!(b.check(a, t0 + Duration::from_millis(500)), Ok(()));
        // Idle long enough: full again, never more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.check(a, later), Ok(()));
        }
        assert!(b.check(a, later).is_err());
    }

    #[test]
    fn loopback_is_exempt_unless_configured() {
        let mut exempt = LoginBuckets::new(LoginLimitConfig::DEFAULT, 8);
        let t0 = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(exempt.check(ip("127.0.0.1"), t0), Ok(()));
            assert_eq!(exempt.check(ip("::1"), t0), Ok(()));
            assert_eq!(exempt.check(ip("::ffff:127.0.0.1"), t0), Ok(()));
        }
        assert!(exempt.is_empty());
        let mut limited = LoginBuckets::new(LIMIT, 8);
        let refused = (0..10)
            .filter(|_| limited.check(ip("127.0.0.1"), t0).is_err())
            .count();
        assert_eq!(refused, 7);
    }

    #[test]
    fn an_ipv6_subscriber_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let mut b = LoginBuckets::new(LIMIT, 8);
        let t0 = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            assert_eq!(b.check(ip(host), t0), Ok(()));
        }
        assert!(b.check(ip("2001:db8:1:2::77"), t0).is_err());
        assert_eq!(b.check(ip("2001:db8:1:3::1"), t0), Ok(()), "another /64");
        for _ in 0..3 {
            assert_eq!(b.check(ip("::ffff:198.51.100.1"), t0), Ok(()));
        }
        assert!(b.check(ip("198.51.100.1"), t0).is_err(), "the same address");
    }

    #[test]
    fn the_map_is_bounded_and_evicts_the_address_seen_least_recently() {
        let mut b = LoginBuckets::new(LIMIT, 3);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let (a, c, d, e) = (
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3"),
            ip("192.0.2.4"),
        );
        for _ in 0..3 {
            b.check(a, at(0)).unwrap();
        }
        b.check(c, at(1)).unwrap();
        b.check(d, at(2)).unwrap();
        assert!(b.check(a, at(3)).is_err(), "a is empty, and seen last now");
        b.check(e, at(4)).unwrap(); // Evicts c, not a.
        assert_eq!(b.len(), 3);
        assert!(b.check(a, at(5)).is_err(), "a's bucket was kept");
        // A flood of new addresses: still at most 3.
        for i in 0..1_000u32 {
            let _ = b.check(IpAddr::from(std::net::Ipv4Addr::from(i)), at(10));
            assert!(b.len() <= 3 && b.order.len() <= 3);
        }
    }
}
