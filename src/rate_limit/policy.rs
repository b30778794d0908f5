//! One quota policy: a keyed GCRA limiter (governor) and how its state is
//! advertised in the IETF `RateLimit` / `RateLimit-Policy` fields
//! (draft-ietf-httpapi-ratelimit-headers).
//!
//! A policy named `reads` with burst 40 refilling at 20 per second is
//! advertised as `"reads";q=40;w=2`: `q` is the burst and `w` the seconds
//! an empty bucket takes to refill (burst ÷ rate, rounded up). The state
//! after a request is `"reads";r=39;t=1`: `r` requests may follow at once,
//! and after `t` seconds (rounded up) the whole burst is available again.

use std::hash::Hash;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderValue;

/// A keyed limiter that reports its state on every decision.
type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, StateInformationMiddleware>;

/// The outcome of one request against a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through; `remaining` more may follow at once, and the bucket is
    /// full again after at most `reset`.
    Allowed {
        /// Requests that may follow at once.
        remaining: u32,
        /// Time until the full burst is available again (an upper bound,
        /// exact to one emission interval).
        reset: Duration,
    },
    /// Over quota: one request is allowed again after `retry_after`.
    Denied {
        /// Time until one request is allowed.
        retry_after: Duration,
        /// Time until the full burst is available again.
        reset: Duration,
    },
}

/// A named quota with per-key state.
#[derive(Debug)]
pub struct Policy<K: Hash + Eq + Clone, C: Clock> {
    name: String,
    /// What this process enforces.
    quota: Quota,
    /// What is advertised (and enforced by a shared store): `quota`, unless
    /// this is the local fallback's share of it.
    advertised: Quota,
    limiter: Keyed<K, C>,
}

impl<K, C> Policy<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// A policy with fresh state, timed by `clock`. `name` goes into the
    /// headers as a structured-field string: keep it to printable ASCII
    /// without `"` or `\` (the config validates this).
    pub fn new(name: &str, quota: Quota, clock: C) -> Self {
        Policy {
            name: name.to_owned(),
            quota,
            advertised: quota,
            limiter: Keyed::new(quota, DashMapStateStore::default(), clock),
        }
    }

    /// A policy advertising `quota` that enforces locally only one
    /// `replicas`-th of it: the rate divided, the burst divided rounding up
    /// (at least 1). The local fallback of a shared store.
    pub fn divided(name: &str, quota: Quota, replicas: u32, clock: C) -> Self {
        let replicas = replicas.max(1);
        let burst = quota.burst_size().get().div_ceil(replicas);
        let share = Quota::with_period(quota.replenish_interval().saturating_mul(replicas))
            .unwrap_or(quota)
            .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN));
        Policy {
            advertised: quota,
            ..Self::new(name, share, clock)
        }
    }

    /// The name in the headers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The advertised quota (the whole quota, across replicas).
    pub fn advertised(&self) -> Quota {
        self.advertised
    }

    /// Counts one request of `key`.
    pub fn check(&self, key: &K) -> Verdict {
        let interval = self.quota.replenish_interval();
        let burst = self.quota.burst_size().get();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict::Allowed {
                    remaining,
                    reset: interval.saturating_mul(burst.saturating_sub(remaining)),
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.limiter.clock().now());
                Verdict::Denied {
                    retry_after,
                    reset: retry_after + interval.saturating_mul(burst - 1),
                }
            }
        }
    }

    /// This policy's item of `RateLimit-Policy`, e.g. `"reads";q=40;w=2`.
    pub fn item(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.name,
            self.advertised.burst_size(),
            ceil_secs(self.advertised.burst_size_replenished_in()).max(1)
        )
    }

    /// The `RateLimit` value after `verdict`, e.g. `"reads";r=39;t=1`.
    pub fn state(&self, verdict: &Verdict) -> HeaderValue {
        let (r, reset) = match *verdict {
            Verdict::Allowed { remaining, reset } => (remaining, reset),
            Verdict::Denied { reset, .. } => (0, reset),
        };
        let text = format!("\"{}\";r={r};t={}", self.name, ceil_secs(reset));
        HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Drops keys whose bucket is full again; returns the keys left.
    pub fn evict(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;

    fn policy(period_ms: u64, burst: u32) -> (Policy<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(Duration::from_millis(period_ms))
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap());
        (Policy::new("reads", quota, clock.clone()), clock)
    }

    #[test]
    fn counts_down_then_denies_with_exact_wait() {
        let (p, clock) = policy(500, 3);
        assert_eq!(p.item(), "\"reads\";q=3;w=2");
        let mut states = Vec::new();
        for _ in 0..3 {
            let v = p.check(&1);
            states.push(p.state(&v));
        }
        assert_eq!(
            states,
            [
                "\"reads\";r=2;t=1",
                "\"reads\";r=1;t=1",
                "\"reads\";r=0;t=2"
            ]
        );
        let denied = p.check(&1);
        assert_eq!(
            denied,
            Verdict::Denied {
                retry_after: Duration::from_millis(500),
                reset: Duration::from_millis(1500),
            }
        );
        assert_eq!(p.state(&denied), "\"reads\";r=0;t=2");
        clock.advance(Duration::from_millis(499));
        assert!(matches!(p.check(&1), Verdict::Denied { .. }));
        clock.advance(Duration::from_millis(1));
        assert!(matches!(p.check(&1), Verdict::Allowed { remaining: 0, .. }));
    }

    #[test]
    fn a_divided_policy_advertises_the_whole_and_enforces_a_share() {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(Duration::from_millis(100))
            .unwrap()
            .allow_burst(NonZeroU32::new(5).unwrap());
        let p = Policy::divided("reads", quota, 2, clock.clone());
        assert_eq!(p.item(), "\"reads\";q=5;w=1");
        // Burst 3 (5 ÷ 2 rounded up), one more every 200 ms.
        for _ in 0..3 {
            assert!(matches!(p.check(&1), Verdict::Allowed { .. }));
        }
        assert_eq!(
            p.check(&1),
            Verdict::Denied {
                retry_after: Duration::from_millis(200),
                reset: Duration::from_millis(600),
            }
        );
    }

    #[test]
    fn keys_are_independent_and_idle_ones_are_evicted() {
        let (p, clock) = policy(1000, 2);
        for k in 0..100 {
            assert!(matches!(p.check(&k), Verdict::Allowed { remaining: 1, .. }));
        }
        assert_eq!(p.len(), 100);
        clock.advance(Duration::from_millis(1500));
        p.check(&7);
        clock.advance(Duration::from_millis(600));
        // Everyone but 7 is full again: dropped without losing anything.
        assert_eq!(p.evict(), 1);
        assert!(matches!(p.check(&7), Verdict::Allowed { remaining: 0, .. }));
        assert!(matches!(p.check(&8), Verdict::Allowed { remaining: 1, .. }));
    }
}
