//! Per-client rate limiting, and a per-peer limiter of failed
//! authentications.
//!
//! - [`RateLimitLayer`] ([`per_client`]): each client (the principal's client
//!   key) has a quota for reads and one for mutations (GCRA, governor), with
//!   overrides per client key or role; over quota → 429 with `Retry-After`;
//!   every counted request carries the IETF draft `RateLimit-Policy` and
//!   `RateLimit` fields. Sits after authorization. The quotas and their state
//!   are [`quotas::ClientQuotas`], each quota a [`policy::Policy`].
//! - [`AuthFailureLimitLayer`] ([`auth_failures`]): each peer address has a
//!   budget of failed authentications; over it → 429 before its token is
//!   looked at. Sits just before authentication.
//! - [`client_addr`]: the client address behind trusted proxies (the key of
//!   the failure limiter; forwarding headers count only from
//!   `trusted_proxies`).
//! - [`config`]: the `[rate_limit]` section; [`store_config`]: its `store`
//!   and `[rate_limit.redis]`.
//! - [`redis_store`]: per-client quotas shared by every replica in Redis
//!   (one `EVALSHA` per counted request), and the degraded mode while Redis
//!   fails (`on_error`).
//!
//! # Memory bound
//!
//! Each limiter keeps one entry per key it has seen: the key (a client key
//! string, or an IP address for the failure limiter) and an 8-byte arrival
//! time, roughly 60–100 bytes with the map's overhead. Every `evict_every`
//! (60 s by default) a background task ([`eviction`]) drops the keys whose
//! budget is full again — which loses nothing, a full key behaves exactly
//! like an unknown one — and shrinks the maps. So at any time a limiter
//! holds at most the keys that made a request within the last
//! `evict_every` + its refill window (burst ÷ rate: 2 s for the default
//! reads, 2.5 s for mutations, 40 s for failures), and no more than the
//! requests it saw in that time. Client keys come from verified tokens only;
//! failure-limiter keys are addresses, IPv6 grouped per /64.
//!
//! With `store = "redis"` the per-client maps hold only the local
//! fallback's state (nothing while Redis answers), and Redis holds one key
//! per client and policy, expiring when its bucket is full again.

pub mod auth_failures;
pub mod client_addr;
pub mod config;
pub mod eviction;
pub mod per_client;
pub mod policy;
pub mod probe;
pub mod quotas;
pub mod redis_store;
pub mod store_config;

use std::sync::{Arc, Weak};

use governor::clock::{Clock, DefaultClock};

pub use auth_failures::{AuthFailureLimitLayer, AuthFailures};
pub use per_client::RateLimitLayer;
pub use quotas::{ClientQuotas, RATELIMIT, RATELIMIT_POLICY};

use self::client_addr::ClientAddr;
use self::config::{AuthFailuresConfig, RateLimitConfig};
use self::eviction::Evict;

/// The rate limiting state of a gateway: built once from the config, shared
/// by every connection, swept by a background task.
#[derive(Debug)]
pub struct RateLimiting<C: Clock = DefaultClock> {
    clients: Arc<ClientQuotas<C>>,
    failures: Option<Arc<AuthFailures<C>>>,
    /// What `failures` was built from, to keep it across a reload.
    failures_config: Option<(AuthFailuresConfig, ClientAddr)>,
}

impl<C: Clock> Clone for RateLimiting<C> {
    fn clone(&self) -> Self {
        RateLimiting {
            clients: self.clients.clone(),
            failures: self.failures.clone(),
            failures_config: self.failures_config.clone(),
        }
    }
}

impl RateLimiting {
    /// The limiters of `config` on the system clock, with their idle-key
    /// sweep started on the current tokio runtime (if any).
    pub fn start(config: &RateLimitConfig) -> Self {
        let limits = Self::with_clock(config, DefaultClock::default());
        limits.spawn_eviction(config.evict_every);
        limits
    }

    /// Like [`RateLimiting::start`] for a reloaded `config`: the state of
    /// every quota of `previous` that did not change (same name, same
    /// quota) is kept, and so is the failed-authentication limiter when its
    /// settings did not change.
    pub fn carry_over(config: &RateLimitConfig, previous: &RateLimiting) -> Self {
        let clock = DefaultClock::default();
        let failures = match (
            &previous.failures,
            &previous.failures_config,
            config.auth_failures,
        ) {
            (Some(kept), Some((was, addr)), Some(now))
                if *was == now && *addr == config.client_addr =>
            {
                Some(kept.clone())
            }
            _ => config.auth_failures.map(|f| {
                Arc::new(AuthFailures::with_clock(
                    f,
                    config.client_addr.clone(),
                    clock.clone(),
                ))
            }),
        };
        let limits = RateLimiting {
            clients: Arc::new(ClientQuotas::carrying(
                config,
                clock,
                Some(&previous.clients),
            )),
            failures,
            failures_config: config
                .auth_failures
                .map(|f| (f, config.client_addr.clone())),
        };
        limits.spawn_eviction(config.evict_every);
        limits
    }
}

impl<C> RateLimiting<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// The limiters of `config`, timed by `clock`; no sweep is started.
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        RateLimiting {
            clients: Arc::new(ClientQuotas::with_clock(config, clock.clone())),
            failures: config.auth_failures.map(|f| {
                Arc::new(AuthFailures::with_clock(
                    f,
                    config.client_addr.clone(),
                    clock,
                ))
            }),
            failures_config: config
                .auth_failures
                .map(|f| (f, config.client_addr.clone())),
        }
    }

    /// Sweeps idle keys every `every` until these limiters are dropped.
    /// Returns `false` outside a tokio runtime.
    pub fn spawn_eviction(&self, every: std::time::Duration) -> bool {
        let clients: Arc<dyn Evict> = self.clients.clone();
        let mut targets: Vec<Weak<dyn Evict>> = vec![Arc::downgrade(&clients)];
        if let Some(f) = &self.failures {
            let f: Arc<dyn Evict> = f.clone();
            targets.push(Arc::downgrade(&f));
        }
        eviction::spawn(every, targets)
    }

    /// The per-client limiter.
    pub fn layer(&self) -> RateLimitLayer<C> {
        RateLimitLayer::new(self.clients.clone())
    }

    /// The failed-authentication limiter, unless disabled.
    pub fn auth_failure_layer(&self) -> Option<AuthFailureLimitLayer<C>> {
        self.failures.clone().map(AuthFailureLimitLayer::new)
    }

    /// The per-client quotas and their state.
    pub fn clients(&self) -> &ClientQuotas<C> {
        &self.clients
    }

    /// The shared quota store, with `store = "redis"`.
    pub fn store(&self) -> Option<&Arc<redis_store::RedisStore>> {
        self.clients.store()
    }
}
