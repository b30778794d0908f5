//! [`RedisStore`]: per-client GCRA state shared by every replica, in Redis.
//!
//! One counted request is one round trip: `EVALSHA` of a small Lua script
//! ([`gcra.lua`](https://redis.io/docs/latest/develop/interact/programmability/eval-intro/),
//! loaded once per server by [`redis::Script`], reloaded by it after a
//! restart) that reads the key's theoretical arrival time, decides exactly
//! as governor does for the local store, writes the new time and lets the
//! key expire when the bucket would be full again. Time comes from Redis
//! (`TIME`), so the replicas' clocks do not matter, and Redis holds one key
//! per client active within its refill window.
//!
//! Connections are the redis crate's [`ConnectionManager`] (multiplexed,
//! reconnecting on its own): one per thread that serves requests, made on
//! that thread's first counted request, so the connection's driver task runs
//! on the runtime that serves the request and a check never hops to another
//! thread and back (that hop cost about 20 µs of CPU per request on a loaded
//! core). The retry task pings over one more, on the runtime that started
//! the store. Every call is bounded by `timeout`.
//!
//! # Degraded mode
//!
//! The store is *up* or *down*. While up, each request asks Redis; the first
//! error or timeout marks it down (logged once, at `warn`; at `error` with
//! `on_error = "allow"`) and from then on requests do not wait for Redis at
//! all: the caller applies its `on_error` policy at once. A background task
//! pings Redis every [`RETRY_EVERY`] and marks the store up again (logged
//! once) when it answers within `timeout`. Readiness (`/readyz`) never
//! depends on the store.
//!
//! # Metrics
//!
//! Once [`RedisStore::record_into`] is called (the gateway does): the gauge
//! `simgate_rate_limit_store_up` (1 while shared quotas are counted, 0 in
//! the degraded mode), `simgate_rate_limit_store_errors_total{kind}`
//! (`timeout` or `error`: requests the store failed to decide) and
//! `simgate_rate_limit_store_fallback_total{on_error}` (requests decided by
//! the degraded mode).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use governor::Quota;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::Notify;

use super::policy::Verdict;
use super::store_config::{OnError, RedisConfig};
use crate::metrics::Metrics;

/// How often a store that is down is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Why the store did not decide a request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Redis refused, or the connection failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// Created outside a tokio runtime (e.g. by `simgate check`): never
    /// connected.
    #[error("not started")]
    NotStarted,
    /// An answer the script never gives.
    #[error("unexpected reply {0:?}")]
    Reply(Vec<i64>),
}

/// The shared quota store of one gateway. Built once at start-up.
#[derive(Debug)]
pub struct RedisStore {
    /// The retry task's connection; `None` outside a tokio runtime.
    connection: Option<ConnectionManager>,
    /// What each serving thread's connection is made from.
    connect: Option<Connect>,
    /// Tells this store's connections apart in each thread's list.
    identity: Arc<()>,
    /// One more each time the store answers again after an outage: a
    /// thread's connection from before it is replaced on next use, so a
    /// restarted Redis costs one outage, not one per thread.
    epoch: AtomicU64,
    script: Script,
    prefix: String,
    timeout: Duration,
    on_error: OnError,
    target: String,
    up: AtomicBool,
    /// Transitions to down, for metrics and tests.
    outages: AtomicU64,
    /// Requests the store failed to decide.
    errors: AtomicU64,
    /// Wakes the retry task when the store goes down (and on drop).
    wake: Arc<Notify>,
    metrics: OnceLock<StoreMetrics>,
}

/// How a connection to the store is made.
struct Connect {
    client: Client,
    config: ConnectionManagerConfig,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect").finish_non_exhaustive()
    }
}

impl Connect {
    /// A connection made on first use, its driver spawned on the runtime
    /// current then.
    fn lazy(&self) -> Result<ConnectionManager, redis::RedisError> {
        ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
    }
}

thread_local! {
    /// This thread's connection to each store it has counted requests in.
    /// A `Weak` keeps its store's identity allocation, so no live store can
    /// share its address; entries of dropped stores go when one is added.
    static CONNECTIONS: RefCell<Vec<ThreadConnection>> = const { RefCell::new(Vec::new()) };
}

/// One thread's connection to one store.
struct ThreadConnection {
    store: std::sync::Weak<()>,
    /// The store's epoch when it was made.
    epoch: u64,
    connection: ConnectionManager,
}

/// The store's metric families.
#[derive(Debug)]
struct StoreMetrics {
    up: prometheus::IntGauge,
    timeouts: prometheus::IntCounter,
    errors: prometheus::IntCounter,
    fallback: prometheus::IntCounter,
}

impl RedisStore {
    /// The store of `config`. Inside a tokio runtime the connection is made
    /// in the background and the retry task is started; outside one the
    /// store stays down (`simgate check` uses [`probe`] instead).
    pub fn start(config: &RedisConfig) -> Arc<RedisStore> {
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        let config_for_manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RETRY_EVERY))
            .set_response_timeout(Some(RETRY_EVERY))
            // Reconnection is retried by the retry task, not here: one
            // attempt per use, so the store is back as soon as Redis is.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connect = match Client::open(config.connection.clone()) {
            Ok(client) => Some(Connect {
                client,
                config: config_for_manager,
            }),
            Err(e) => {
                tracing::error!(store = %config.target(), error = %e, "rate limit store unusable");
                None
            }
        };
        let connection = match (&connect, in_runtime) {
            (Some(connect), true) => match connect.lazy() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(store = %config.target(), error = %e, "rate limit store unusable");
                    None
                }
            },
            _ => None,
        };
        let store = Arc::new(RedisStore {
            up: AtomicBool::new(connection.is_some()),
            connection,
            connect,
            identity: Arc::new(()),
            epoch: AtomicU64::new(0),
            script: Script::new(include_str!("gcra.lua")),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            on_error: config.on_error,
            target: config.target().to_string(),
            outages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            metrics: OnceLock::new(),
        });
        if config.on_error == OnError::Allow {
            tracing::warn!(
                store = %store.target,
                "rate limit store: on_error = \"allow\": while Redis fails, per-client quotas are NOT enforced"
            );
        }
        if in_runtime {
            tokio::spawn(retry(Arc::downgrade(&store), store.wake.clone()));
        }
        store
    }

    /// The key of `policy` for `client` (`id:` a client key, `ip:` an
    /// address).
    pub fn key(&self, policy: &str, client: &super::quotas::ClientKey) -> String {
        use super::quotas::ClientKey;
        match client {
            ClientKey::Client(c) => format!("{}{policy}:id:{c}", self.prefix),
            ClientKey::Address(a) => format!("{}{policy}:ip:{a}", self.prefix),
        }
    }

    /// Whether requests should ask the store (else: apply `on_error`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The degraded mode.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Transitions to down so far.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Requests the store failed to decide so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Records the store's state, errors and fallback decisions into
    /// `metrics` from now on (the first call wins).
    pub fn record_into(&self, metrics: &Metrics) -> Result<(), prometheus::Error> {
        let up = metrics.gauge(
            "simgate_rate_limit_store_up",
            "1 while per-client quotas are counted in the shared store, 0 while its on_error policy applies.",
            &["store"],
        )?;
        let errors = metrics.counter(
            "simgate_rate_limit_store_errors_total",
            "Requests the shared rate limit store failed to decide, by kind (timeout, error).",
            &["kind"],
        )?;
        let fallback = metrics.counter(
            "simgate_rate_limit_store_fallback_total",
            "Requests decided by the on_error policy while the shared store was unavailable.",
            &["on_error"],
        )?;
        let m = StoreMetrics {
            up: up.with_label_values(&["redis"]),
            timeouts: errors.with_label_values(&["timeout"]),
            errors: errors.with_label_values(&["error"]),
            fallback: fallback.with_label_values(&[self.on_error.as_str()]),
        };
        m.up.set(i64::from(self.is_up()));
        let _ = self.metrics.set(m);
        Ok(())
    }

    /// Counts one request decided by the `on_error` policy.
    pub fn fell_back(&self) {
        if let Some(m) = self.metrics.get() {
            m.fallback.inc();
        }
    }

    /// Counts one request of `key` against `quota`, within `timeout`.
    pub async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, StoreError> {
        let mut connection = self.thread_connection()?;
        let interval = micros_ceil(quota.replenish_interval());
        let burst = quota.burst_size().get();
        let mut call = self.script.key(key);
        call.arg(interval).arg(burst);
        let reply: Vec<i64> =
            tokio::time::timeout(self.timeout, call.invoke_async(&mut connection))
                .await
                .map_err(|_| StoreError::Timeout(self.timeout))??;
        verdict(&reply, quota)
    }

    /// This thread's connection, made on its first call here.
    fn thread_connection(&self) -> Result<ConnectionManager, StoreError> {
        // No retry connection: started outside a runtime, never connects.
        let (Some(connect), Some(_)) = (&self.connect, &self.connection) else {
            return Err(StoreError::NotStarted);
        };
        let me = Arc::as_ptr(&self.identity);
        let epoch = self.epoch.load(Ordering::Acquire);
        CONNECTIONS.with_borrow_mut(|list| {
            if let Some(t) = list
                .iter()
                .find(|t| t.store.as_ptr() == me && t.epoch == epoch)
            {
                return Ok(t.connection.clone());
            }
            list.retain(|t| t.store.strong_count() > 0 && t.store.as_ptr() != me);
            let connection = connect.lazy()?;
            list.push(ThreadConnection {
                store: Arc::downgrade(&self.identity),
                epoch,
                connection: connection.clone(),
            });
            Ok(connection)
        })
    }

    /// Marks the store down after `error`: logged once per outage, the
    /// retry task woken.
    pub fn failed(&self, error: &StoreError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.metrics.get() {
            match error {
                StoreError::Timeout(_) => m.timeouts.inc(),
                _ => m.errors.inc(),
            }
        }
        if self.up.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = self.metrics.get() {
                m.up.set(0);
            }
            match self.on_error {
                OnError::Allow => tracing::error!(
                    store = %self.target, %error, on_error = "allow",
                    "rate limit store unavailable: per-client quotas are NOT enforced until it answers again"
                ),
                other => tracing::warn!(
                    store = %self.target, %error, on_error = other.as_str(),
                    "rate limit store unavailable: degraded mode until it answers again"
                ),
            }
            self.wake.notify_one();
        }
    }

    /// One `PING` within `timeout`.
    async fn ping(&self) -> Result<(), StoreError> {
        let Some(mut connection) = self.connection.clone() else {
            return Err(StoreError::NotStarted);
        };
        let ping = redis::cmd("PING");
        tokio::time::timeout(self.timeout, ping.query_async::<()>(&mut connection))
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        Ok(())
    }

    fn resume(&self) {
        if let Some(m) = self.metrics.get() {
            m.up.set(1);
        }
        // Before `up`: a request that sees the store up makes a new connection.
        self.epoch.fetch_add(1, Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(store = %self.target, "rate limit store answers again: shared quotas resumed");
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Lets the retry task see the store is gone.
        self.wake.notify_one();
    }
}

/// The retry task: an immediate first check (so an unreachable store is
/// reported at start-up), then, whenever the store is down, a ping every
/// [`RETRY_EVERY`] until it answers. Ends when the store is dropped.
async fn retry(store: Weak<RedisStore>, wake: Arc<Notify>) {
    match store.upgrade() {
        Some(s) => match s.ping().await {
            Ok(()) => tracing::info!(store = %s.target, "rate limit store connected"),
            Err(e) => s.failed(&e),
        },
        None => return,
    }
    loop {
        wake.notified().await;
        loop {
            let Some(s) = store.upgrade() else { return };
            if s.is_up() {
                break;
            }
            match s.ping().await {
                Ok(()) => {
                    s.resume();
                    break;
                }
                Err(e) => {
                    tracing::debug!(store = %s.target, error = %e, "rate limit store still unavailable")
                }
            }
            drop(s);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}

/// Connects to the store of `config` once and pings it, for `simgate
/// check`: the round-trip time, or why it failed. Bounded by `limit`.
pub async fn probe(config: &RedisConfig, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let client = Client::open(config.connection.clone())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let ping_started = Instant::now();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok::<_, redis::RedisError>(ping_started.elapsed())
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(rtt)) => Ok(rtt),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", started.elapsed())),
    }
}

/// Whole microseconds, rounded up (never a faster rate than configured).
fn micros_ceil(d: Duration) -> u64 {
    let us = d.as_nanos().div_ceil(1000);
    u64::try_from(us).unwrap_or(u64::MAX).max(1)
}

/// The script's reply as a [`Verdict`], with the same `reset` arithmetic as
/// the local store.
fn verdict(reply: &[i64], quota: Quota) -> Result<Verdict, StoreError> {
    let interval = quota.replenish_interval();
    let burst = quota.burst_size().get();
    match *reply {
        [1, remaining] if (0..i64::from(burst)).contains(&remaining) => {
            let remaining = u32::try_from(remaining).unwrap_or(0);
            Ok(Verdict::Allowed {
                remaining,
                reset: interval.saturating_mul(burst - remaining),
            })
        }
        [0, wait] if wait > 0 => {
            let retry_after = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
            Ok(Verdict::Denied {
                retry_after,
                reset: retry_after + interval.saturating_mul(burst - 1),
            })
        }
        _ => Err(StoreError::Reply(reply.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn quota(period_ms: u64, burst: u32) -> Quota {
        Quota::with_period(Duration::from_millis(period_ms))
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap())
    }

    #[test]
    fn replies_become_the_local_verdicts() {
        let q = quota(500, 3);
        assert_eq!(
            verdict(&[1, 2], q).unwrap(),
            Verdict::Allowed {
                remaining: 2,
                reset: Duration::from_millis(500)
            }
        );
        assert_eq!(
            verdict(&[1, 0], q).unwrap(),
            Verdict::Allowed {
                remaining: 0,
                reset: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            verdict(&[0, 500_000], q).unwrap(),
            Verdict::Denied {
                retry_after: Duration::from_millis(500),
                reset: Duration::from_millis(1500)
            }
        );
        for bad in [&[1, 3][..], &[0, 0], &[2, 1], &[1], &[]] {
            assert!(verdict(bad, q).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn intervals_round_up_to_microseconds() {
        assert_eq!(micros_ceil(Duration::from_nanos(333_333_333)), 333_334);
        assert_eq!(micros_ceil(Duration::from_secs(100)), 100_000_000);
        assert_eq!(micros_ceil(Duration::from_nanos(1)), 1);
    }
}
