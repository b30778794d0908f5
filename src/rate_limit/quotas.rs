//! [`ClientQuotas`]: every client's quotas and their state — the default
//! reads and mutations policies and the overrides — and the decision for one
//! request (see [`super::per_client`] for the layer and the headers).
//!
//! A principal's tier is its `client` override, else the first `role`
//! override (in file order) it holds, else the defaults. An override that
//! leaves a class out shares the default policy (and its counters) for it.
//!
//! With `store = "redis"` the decision is made by the shared
//! [`RedisStore`] (a [`Check::Shared`] future); while the store is down its
//! `on_error` policy decides at once: `local` counts in this process
//! against each quota divided by `replicas` (the same policy names and
//! `RateLimit-Policy`), `deny` refuses with
//! [`Error::RateLimitStoreUnavailable`] (503), `allow` lets the request
//! through with `RateLimit-Policy` only.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request};

use super::client_addr::ClientAddr;
use super::config::{Override, RateLimitConfig, Selector};
use super::eviction::Evict;
use super::policy::{Policy, Verdict};
use super::redis_store::{RETRY_EVERY, RedisStore};
use super::store_config::{OnError, StoreConfig};
use crate::auth::Principal;
use crate::error::Error;
use crate::net::PeerAddr;
use crate::routes::{Operation, is_mutating};

/// `RateLimit-Policy`: the quota policies of the client.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: the state of the policy the request counted against.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An authenticated principal's client key.
    Client(String),
    /// The client address of a request without a principal.
    Address(IpAddr),
}

type Shared<C> = Arc<Policy<ClientKey, C>>;

/// The reads and mutations policies of one group of clients.
#[derive(Debug)]
struct Tier<C: Clock> {
    reads: Shared<C>,
    mutations: Shared<C>,
    /// The `RateLimit-Policy` value.
    advertised: HeaderValue,
}

impl<C: Clock> Tier<C> {
    fn new(reads: Shared<C>, mutations: Shared<C>) -> Self {
        let text = format!("{}, {}", reads.item(), mutations.item());
        Tier {
            advertised: HeaderValue::try_from(text)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            reads,
            mutations,
        }
    }
}

/// Every client's quotas: the defaults and the overrides, with their state.
/// Built once at start-up and shared by all connections.
#[derive(Debug)]
pub struct ClientQuotas<C: Clock = DefaultClock> {
    default: Tier<C>,
    by_client: HashMap<String, Tier<C>>,
    by_role: Vec<(String, Tier<C>)>,
    /// Every distinct policy, for eviction.
    policies: Vec<Shared<C>>,
    client_addr: ClientAddr,
    /// The shared store, with `store = "redis"`.
    store: Option<Arc<RedisStore>>,
}

/// The decision on one request.
pub enum Check {
    /// Decided at once (the local store, or a shared store that is down):
    /// the `RateLimit` headers, or the refusal.
    Now(Result<HeaderMap, Error>),
    /// Waiting for the shared store (bounded by its `timeout`).
    Shared(Pin<Box<dyn Future<Output = Result<HeaderMap, Error>> + Send>>),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Now(r) => f.debug_tuple("Now").field(r).finish(),
            Check::Shared(_) => f.write_str("Shared(..)"),
        }
    }
}

impl Check {
    /// The decision, waiting for the store if needed.
    pub async fn decided(self) -> Result<HeaderMap, Error> {
        match self {
            Check::Now(r) => r,
            Check::Shared(f) => f.await,
        }
    }
}

impl ClientQuotas {
    /// The quotas of `config`, on the system clock.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> ClientQuotas<C> {
    /// The quotas of `config`, timed by `clock` (a fake one in tests).
    ///
    /// With `store = "redis"` the store is started too (its connection and
    /// retry task, inside a tokio runtime), and the local policies enforce
    /// the fallback's share of each quota.
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        Self::carrying(config, clock, None)
    }

    /// Like [`ClientQuotas::with_clock`] after a reload: keeps `previous`'s
    /// shared store (its settings need a restart) and the state (the
    /// clients' buckets) of every policy whose name and quota did not
    /// change.
    pub fn carrying(config: &RateLimitConfig, clock: C, previous: Option<&Self>) -> Self {
        let (store, replicas) = match &config.store {
            StoreConfig::Local => (None, None),
            StoreConfig::Redis(r) => (
                Some(
                    previous
                        .and_then(|p| p.store.clone())
                        .unwrap_or_else(|| RedisStore::start(r)),
                ),
                Some(r.replicas),
            ),
        };
        let policy = |name: &str, quota: governor::Quota| -> Shared<C> {
            let kept = previous.and_then(|p| {
                p.policies
                    .iter()
                    .find(|old| old.name() == name && old.advertised() == quota)
            });
            match (kept, replicas) {
                (Some(old), _) => old.clone(),
                (None, None) => Arc::new(Policy::new(name, quota, clock.clone())),
                (None, Some(n)) => Arc::new(Policy::divided(name, quota, n, clock.clone())),
            }
        };
        let reads = policy("reads", config.reads);
        let mutations = policy("mutations", config.mutations);
        let mut policies = vec![reads.clone(), mutations.clone()];
        let mut by_client = HashMap::new();
        let mut by_role = Vec::new();
        for o in &config.overrides {
            let Override {
                name,
                selector,
                reads: r,
                mutations: m,
            } = o;
            let mut own =
                |class: &str, quota: &Option<governor::Quota>, default: &Shared<C>| match quota {
                    Some(q) => {
                        let p = policy(&format!("{name}-{class}"), *q);
                        policies.push(p.clone());
                        p
                    }
                    None => default.clone(),
                };
            let tier = Tier::new(own("reads", r, &reads), own("mutations", m, &mutations));
            match selector {
                Selector::Client(c) => {
                    by_client.insert(c.clone(), tier);
                }
                Selector::Role(r) => by_role.push((r.clone(), tier)),
            }
        }
        ClientQuotas {
            default: Tier::new(reads, mutations),
            by_client,
            by_role,
            policies,
            client_addr: config.client_addr.clone(),
            store,
        }
    }
}

impl<C: Clock> ClientQuotas<C> {
    /// The shared store, with `store = "redis"`.
    pub fn store(&self) -> Option<&Arc<RedisStore>> {
        self.store.as_ref()
    }

    /// The tier of a principal: its client override, else the first role
    /// override it holds, else the defaults.
    fn tier(&self, principal: &Principal) -> &Tier<C> {
        if let Some(t) = self.by_client.get(&principal.client_key) {
            return t;
        }
        self.by_role
            .iter()
            .find(|(role, _)| principal.roles.iter().any(|r| r == role))
            .map_or(&self.default, |(_, t)| t)
    }

    /// Keys tracked over all policies.
    pub fn len(&self) -> usize {
        self.policies.iter().map(|p| p.len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.policies.iter().all(|p| p.is_empty())
    }
}

impl<C> ClientQuotas<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Counts `req`: its `RateLimit` headers if allowed, else the 429 error
    /// (or, with a shared store that is down and `on_error = "deny"`, the
    /// 503 error).
    pub fn check<B>(&self, req: &Request<B>) -> Check {
        let ext = req.extensions();
        let mutating = ext
            .get::<Arc<Operation>>()
            .map_or_else(|| is_mutating(req.method()), |op| op.mutating);
        let (tier, key) = match ext.get::<Arc<Principal>>() {
            Some(p) => (self.tier(p), ClientKey::Client(p.client_key.clone())),
            None => {
                let peer = ext
                    .get::<PeerAddr>()
                    .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
                let addr = self.client_addr.of(peer, req.headers());
                (&self.default, ClientKey::Address(addr))
            }
        };
        let policy = if mutating {
            &tier.mutations
        } else {
            &tier.reads
        };
        let Some(store) = &self.store else {
            return Check::Now(outcome(&tier.advertised, policy, policy.check(&key)));
        };
        if !store.is_up() {
            store.fell_back();
            return Check::Now(degraded(store.on_error(), &tier.advertised, policy, &key));
        }
        let store = store.clone();
        let policy = policy.clone();
        let advertised = tier.advertised.clone();
        Check::Shared(Box::pin(async move {
            let shared_key = store.key(policy.name(), &key);
            match store.check(&shared_key, policy.advertised()).await {
                Ok(verdict) => outcome(&advertised, &policy, verdict),
                Err(e) => {
                    store.failed(&e);
                    store.fell_back();
                    degraded(store.on_error(), &advertised, &policy, &key)
                }
            }
        }))
    }
}

/// The headers of a decided request, or its 429.
fn outcome<C: Clock>(
    advertised: &HeaderValue,
    policy: &Policy<ClientKey, C>,
    verdict: Verdict,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(RATELIMIT_POLICY, advertised.clone());
    headers.insert(RATELIMIT, policy.state(&verdict));
    match verdict {
        Verdict::Allowed { .. } => Ok(headers),
        Verdict::Denied { retry_after, .. } => Err(Error::RateLimited {
            retry_after,
            headers,
        }),
    }
}

/// The decision while the shared store is down.
fn degraded<C: Clock>(
    on_error: OnError,
    advertised: &HeaderValue,
    policy: &Policy<ClientKey, C>,
    key: &ClientKey,
) -> Result<HeaderMap, Error> {
    match on_error {
        // The policy enforces this replica's share.
        OnError::Local => outcome(advertised, policy, policy.check(key)),
        OnError::Deny => Err(Error::RateLimitStoreUnavailable {
            retry_after: RETRY_EVERY,
        }),
        OnError::Allow => {
            let mut headers = HeaderMap::with_capacity(1);
            headers.insert(RATELIMIT_POLICY, advertised.clone());
            Ok(headers)
        }
    }
}

impl<C> Evict for ClientQuotas<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn evict(&self) -> usize {
        self.policies.iter().map(|p| p.evict()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::RateLimiting;
    use crate::rate_limit::config::RateLimitSection;
    use crate::rate_limit::per_client::tests::{operation, principal};
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    /// reads: 2/s, burst 3.
    fn config() -> RateLimitConfig {
        let section: RateLimitSection =
            toml::from_str("[reads]\nrequests_per_second = 2\nburst = 3\n").unwrap();
        section.validate(std::path::Path::new("t.toml")).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_distinct_clients_is_evicted_on_schedule() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimiting::with_clock(&config(), clock.clone());
        assert!(limits.spawn_eviction(Duration::from_secs(60)));
        let quotas = limits.clients();
        const CLIENTS: usize = 200_000;
        let mut req = Request::new(());
        req.extensions_mut().insert(operation(false));
        for i in 0..CLIENTS {
            req.extensions_mut()
                .insert(principal(&format!("client-{i}"), &[]));
            assert!(quotas.check(&req).decided().await.is_ok());
        }
        // One client that keeps going.
        req.extensions_mut().insert(principal("steady", &[]));
        assert_eq!(quotas.len(), CLIENTS);
        // Its own budget is remembered across the sweep; the others' state
        // (full again after 1.5 s) is dropped.
        clock.advance(Duration::from_millis(59_500));
        for _ in 0..3 {
            assert!(quotas.check(&req).decided().await.is_ok());
        }
        clock.advance(Duration::from_millis(500));
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(quotas.len(), 1);
        // A fresh key would have r=2: the steady client's state survived.
        let headers = quotas.check(&req).decided().await.unwrap();
        assert_eq!(headers[RATELIMIT], "\"reads\";r=0;t=2");
    }
}
