//! `[rate_limit]`: per-client quotas, overrides, trusted proxies, eviction and
//! the failed-authentication limiter, mirrored from the file and validated
//! into a [`RateLimitConfig`].
//!
//! ```toml
//! [rate_limit]
//! trusted_proxies = ["10.0.0.0/8"]   # whose forwarding headers are believed (none by default)
//! forwarded_header = "x-forwarded-for" # the one header they maintain ("forwarded", "x-real-ip")
//! evict_every = "60s"                # idle client state is dropped this often
//!
//! [rate_limit.reads]                 # GET/HEAD (any non-mutating) operation
//! requests_per_second = 20
//! burst = 40
//!
//! [rate_limit.mutations]             # POST/PUT/PATCH/DELETE operations
//! requests_per_second = 2
//! burst = 5
//!
//! [[rate_limit.overrides]]           # a client key or a role with other quotas
//! client = "batch-loader"
//! reads = { requests_per_second = 100, burst = 200 }
//! mutations = { requests_per_second = 20, burst = 40 }
//!
//! [rate_limit.auth_failures]         # per peer address, failed authentications only
//! failures_per_minute = 30
//! burst = 20
//! ```
//!
//! `store` and `[rate_limit.redis]` (quotas shared by replicas) are
//! validated by [`super::store_config`].
//!
//! **Overrides.** Each `[[rate_limit.overrides]]` names exactly one selector,
//! `client` (a principal's client key) or `role` (one of its roles), and
//! `reads` and/or `mutations` quotas; a class it leaves out keeps the default
//! quota. A `client` override beats every `role` override; among `role`
//! overrides the first one in file order that the principal holds wins.
//! Each override has its own counters, so the quotas stay per client: a role
//! override gives *each* holder of the role that quota. `name` (letters,
//! digits, `-`, `_`, `.`) labels the policy in the `RateLimit` headers; it
//! defaults to `override-N` (N counting from 1 in file order).

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use governor::Quota;
use serde::Deserialize;

use super::client_addr::{ClientAddr, ForwardedHeader, TrustedProxies};
use super::store_config::{RedisSection, StoreConfig};
use crate::error::ConfigError;

/// `[rate_limit]`, as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// `[rate_limit.reads]`; defaults to 20 per second, burst 40.
    pub reads: Option<QuotaSection>,
    /// `[rate_limit.mutations]`; defaults to 2 per second, burst 5.
    pub mutations: Option<QuotaSection>,
    /// `[[rate_limit.overrides]]`, in precedence order.
    #[serde(default)]
    pub overrides: Vec<OverrideSection>,
    /// CIDRs (or single addresses) of proxies whose `Forwarded`,
    /// `X-Forwarded-For` and `X-Real-IP` are believed. Empty by default.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one forwarding header the trusted proxies maintain:
    /// `x-forwarded-for` (default), `forwarded` or `x-real-ip`.
    pub forwarded_header: Option<String>,
    /// How often idle keys are evicted, e.g. `"60s"` (the default).
    pub evict_every: Option<String>,
    /// `[rate_limit.auth_failures]`
    pub auth_failures: Option<AuthFailuresSection>,
    /// Where per-client quotas are counted: `"local"` (default) or `"redis"`.
    pub store: Option<String>,
    /// `[rate_limit.redis]`, with `store = "redis"`.
    pub redis: Option<RedisSection>,
}

/// A quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSection {
    /// Sustained rate; fractions allowed (`0.5` is one request every 2 s).
    pub requests_per_second: f64,
    /// Requests allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

/// One `[[rate_limit.overrides]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideSection {
    /// Label of the policy in the `RateLimit` headers.
    pub name: Option<String>,
    /// A principal's client key.
    pub client: Option<String>,
    /// A role.
    pub role: Option<String>,
    /// Quota of non-mutating operations (default quota when absent).
    pub reads: Option<QuotaSection>,
    /// Quota of mutating operations (default quota when absent).
    pub mutations: Option<QuotaSection>,
}

/// `[rate_limit.auth_failures]`: the per-peer budget of failed
/// authentications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFailuresSection {
    /// `false` turns the limiter off (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sustained rate of failures a peer may have (default 30).
    pub failures_per_minute: Option<f64>,
    /// Failures a peer may have at once (default 20).
    pub burst: Option<u32>,
    /// IPv6 peers are counted per prefix of this length (default 64), since
    /// one host usually holds a whole /64. 128 counts single addresses.
    pub ipv6_prefix: Option<u8>,
}

fn yes() -> bool {
    true
}

/// `[rate_limit]`, validated.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Default quota of non-mutating operations.
    pub reads: Quota,
    /// Default quota of mutating operations.
    pub mutations: Quota,
    /// Overrides, in file order.
    pub overrides: Vec<Override>,
    /// How the client address is found (trusted proxies, their header).
    pub client_addr: ClientAddr,
    /// Interval of the idle-key eviction.
    pub evict_every: Duration,
    /// The failed-authentication limiter, unless disabled.
    pub auth_failures: Option<AuthFailuresConfig>,
    /// Where per-client quotas are counted.
    pub store: StoreConfig,
}

/// Who an override applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The principal with this client key.
    Client(String),
    /// Every principal holding this role.
    Role(String),
}

/// One override, validated.
#[derive(Debug, Clone)]
pub struct Override {
    /// Label of its policies in the `RateLimit` headers.
    pub name: String,
    /// Who it applies to.
    pub selector: Selector,
    /// Quota of non-mutating operations, if overridden.
    pub reads: Option<Quota>,
    /// Quota of mutating operations, if overridden.
    pub mutations: Option<Quota>,
}

/// `[rate_limit.auth_failures]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailuresConfig {
    /// Failures allowed per peer.
    pub quota: Quota,
    /// Prefix length IPv6 peers are grouped by.
    pub ipv6_prefix: u8,
}

/// The longest refill window (burst ÷ rate) accepted, one day: longer
/// windows would keep idle keys for that long.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Default sustained rate of failed authentications per peer.
const AUTH_FAILURES_PER_MINUTE: f64 = 30.0;
/// Default failed authentications a peer may have at once.
const AUTH_FAILURES_BURST: u32 = 20;

/// A quota from constants known to be valid.
fn fixed(period: Duration, burst: u32) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or(Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Default for RateLimitConfig {
    /// The documented defaults: finite quotas, no trusted proxy, the
    /// failed-authentication limiter on.
    fn default() -> Self {
        RateLimitConfig {
            reads: fixed(Duration::from_millis(50), 40),
            mutations: fixed(Duration::from_millis(500), 5),
            overrides: Vec::new(),
            client_addr: ClientAddr::default(),
            evict_every: Duration::from_secs(60),
            auth_failures: Some(AuthFailuresConfig {
                quota: fixed(
                    Duration::from_secs_f64(60.0 / AUTH_FAILURES_PER_MINUTE),
                    AUTH_FAILURES_BURST,
                ),
                ipv6_prefix: 64,
            }),
            store: StoreConfig::Local,
        }
    }
}

impl RateLimitSection {
    /// Validates the section; errors name `file` and the key.
    pub fn validate(&self, file: &Path) -> Result<RateLimitConfig, ConfigError> {
        let defaults = RateLimitConfig::default();
        let reads = match &self.reads {
            Some(q) => quota(q, file, "rate_limit.reads")?,
            None => defaults.reads,
        };
        let mutations = match &self.mutations {
            Some(q) => quota(q, file, "rate_limit.mutations")?,
            None => defaults.mutations,
        };
        let mut overrides: Vec<Override> = Vec::with_capacity(self.overrides.len());
        for (i, o) in self.overrides.iter().enumerate() {
            let key = format!("rate_limit.overrides[{i}]");
            let o = validate_override(o, i, file, &key)?;
            if overrides.iter().any(|p| p.selector == o.selector) {
                return Err(ConfigError::at(
                    file,
                    &key,
                    "the same client or role is overridden twice",
                ));
            }
            if overrides.iter().any(|p| p.name == o.name) {
                return Err(ConfigError::at(
                    file,
                    &format!("{key}.name"),
                    format!("{:?} is used twice", o.name),
                ));
            }
            overrides.push(o);
        }
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError::at(file, "rate_limit.trusted_proxies", e))?;
        let header = match self.forwarded_header.as_deref() {
            None => ForwardedHeader::default(),
            Some(h) => ForwardedHeader::parse(h).ok_or_else(|| {
                ConfigError::at(
                    file,
                    "rate_limit.forwarded_header",
                    format!("{h:?}: expected \"x-forwarded-for\", \"forwarded\" or \"x-real-ip\""),
                )
            })?,
        };
        let evict_every = crate::config::duration(
            self.evict_every.as_deref(),
            defaults.evict_every,
            file,
            "rate_limit.evict_every",
        )?;
        if evict_every < Duration::from_secs(1) {
            return Err(ConfigError::at(
                file,
                "rate_limit.evict_every",
                "must be at least 1s",
            ));
        }
        let auth_failures = match &self.auth_failures {
            None => defaults.auth_failures,
            Some(a) => auth_failures(a, file)?,
        };
        let store = super::store_config::validate(
            self.store.as_deref(),
            self.redis.as_ref(),
            file,
            |var| std::env::var(var).ok(),
        )?;
        Ok(RateLimitConfig {
            reads,
            mutations,
            overrides,
            client_addr: ClientAddr::new(trusted_proxies, header),
            evict_every,
            auth_failures,
            store,
        })
    }
}

fn validate_override(
    o: &OverrideSection,
    index: usize,
    file: &Path,
    key: &str,
) -> Result<Override, ConfigError> {
    let selector = match (&o.client, &o.role) {
        (Some(c), None) if !c.is_empty() => Selector::Client(c.clone()),
        (None, Some(r)) if !r.is_empty() => Selector::Role(r.clone()),
        _ => {
            return Err(ConfigError::at(
                file,
                key,
                "needs exactly one non-empty `client` or `role`",
            ));
        }
    };
    let name = match &o.name {
        None => format!("override-{}", index + 1),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            n.clone()
        }
        Some(n) => {
            return Err(ConfigError::at(
                file,
                &format!("{key}.name"),
                format!("{n:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
    };
    let reads = o
        .reads
        .as_ref()
        .map(|q| quota(q, file, &format!("{key}.reads")))
        .transpose()?;
    let mutations = o
        .mutations
        .as_ref()
        .map(|q| quota(q, file, &format!("{key}.mutations")))
        .transpose()?;
    if reads.is_none() && mutations.is_none() {
        return Err(ConfigError::at(
            file,
            key,
            "sets neither `reads` nor `mutations`",
        ));
    }
    Ok(Override {
        name,
        selector,
        reads,
        mutations,
    })
}

fn auth_failures(
    a: &AuthFailuresSection,
    file: &Path,
) -> Result<Option<AuthFailuresConfig>, ConfigError> {
    if !a.enabled {
        return Ok(None);
    }
    let key = "rate_limit.auth_failures";
    let per_minute = a.failures_per_minute.unwrap_or(AUTH_FAILURES_PER_MINUTE);
    let q = QuotaSection {
        requests_per_second: per_minute / 60.0,
        burst: a.burst.unwrap_or(AUTH_FAILURES_BURST),
    };
    let quota = quota_named(&q, file, key, "failures_per_minute")?;
    let ipv6_prefix = a.ipv6_prefix.unwrap_or(64);
    if !(1..=128).contains(&ipv6_prefix) {
        return Err(ConfigError::at(
            file,
            &format!("{key}.ipv6_prefix"),
            "must be between 1 and 128",
        ));
    }
    Ok(Some(AuthFailuresConfig { quota, ipv6_prefix }))
}

/// A governor quota from a rate and a burst; `key` names the section.
fn quota(q: &QuotaSection, file: &Path, key: &str) -> Result<Quota, ConfigError> {
    quota_named(q, file, key, "requests_per_second")
}

/// Like [`quota`], with the rate's key named `rate_name`.
fn quota_named(
    q: &QuotaSection,
    file: &Path,
    key: &str,
    rate_name: &str,
) -> Result<Quota, ConfigError> {
    let rate = q.requests_per_second;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(ConfigError::at(
            file,
            &format!("{key}.{rate_name}"),
            "must be a positive number",
        ));
    }
    let period = Duration::try_from_secs_f64(1.0 / rate)
        .ok()
        .filter(|p| !p.is_zero())
        .ok_or_else(|| ConfigError::at(file, &format!("{key}.{rate_name}"), "out of range"))?;
    let burst = NonZeroU32::new(q.burst)
        .ok_or_else(|| ConfigError::at(file, &format!("{key}.burst"), "must be at least 1"))?;
    let window = period.checked_mul(burst.get());
    if window.is_none_or(|w| w > MAX_WINDOW) {
        return Err(ConfigError::at(
            file,
            key,
            "burst ÷ requests_per_second (the refill window) must be at most one day",
        ));
    }
    Quota::with_period(period)
        .map(|quota| quota.allow_burst(burst))
        .ok_or_else(|| ConfigError::at(file, key, "invalid quota"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RateLimitConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Wrapper {
            #[serde(default)]
            rate_limit: RateLimitSection,
        }
        let w: Wrapper = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        w.rate_limit.validate(Path::new("/etc/simgate.toml"))
    }

    fn forwarded(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn defaults_are_the_documented_finite_quotas() {
        let c = parse("").unwrap();
        assert_eq!(c.reads.burst_size().get(), 40);
        assert_eq!(c.reads.replenish_interval(), Duration::from_millis(50));
        assert_eq!(c.mutations.burst_size().get(), 5);
        assert_eq!(c.mutations.replenish_interval(), Duration::from_millis(500));
        assert_eq!(
            c.client_addr
                .of([10, 0, 0, 1].into(), &forwarded("1.2.3.4")),
            std::net::IpAddr::from([10, 0, 0, 1])
        );
        assert_eq!(c.evict_every, Duration::from_secs(60));
        let a = c.auth_failures.unwrap();
        assert_eq!(a.quota.burst_size().get(), 20);
        assert_eq!(a.quota.replenish_interval(), Duration::from_secs(2));
        assert_eq!(a.ipv6_prefix, 64);
    }

    #[test]
    fn full_section() {
        let c = parse(
            r#"
[rate_limit]
trusted_proxies = ["10.0.0.0/8", "::1"]
evict_every = "5m"
[rate_limit.reads]
requests_per_second = 0.5
burst = 3
[rate_limit.mutations]
requests_per_second = 2
burst = 5
[[rate_limit.overrides]]
client = "batch"
reads = { requests_per_second = 100, burst = 200 }
[[rate_limit.overrides]]
name = "admins"
role = "ORG_ADMIN"
mutations = { requests_per_second = 10, burst = 10 }
[rate_limit.auth_failures]
failures_per_minute = 6
burst = 3
ipv6_prefix = 56
"#,
        )
        .unwrap();
        assert_eq!(c.reads.replenish_interval(), Duration::from_secs(2));
        assert_eq!(c.reads.burst_size().get(), 3);
        assert_eq!(c.overrides.len(), 2);
        assert_eq!(c.overrides[0].name, "override-1");
        assert_eq!(c.overrides[0].selector, Selector::Client("batch".into()));
        assert!(c.overrides[0].mutations.is_none());
        assert_eq!(c.overrides[1].name, "admins");
        assert_eq!(c.overrides[1].selector, Selector::Role("ORG_ADMIN".into()));
        assert_eq!(c.evict_every, Duration::from_secs(300));
        let a = c.auth_failures.unwrap();
        assert_eq!(a.quota.replenish_interval(), Duration::from_secs(10));
        assert_eq!(a.quota.burst_size().get(), 3);
        assert_eq!(a.ipv6_prefix, 56);
        assert_eq!(
            c.client_addr
                .of([10, 0, 0, 1].into(), &forwarded("1.2.3.4")),
            std::net::IpAddr::from([1, 2, 3, 4])
        );
    }

    #[test]
    fn auth_failures_can_be_disabled() {
        let c = parse("[rate_limit.auth_failures]\nenabled = false\n").unwrap();
        assert!(c.auth_failures.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[rate_limit.reads]\nrequests_per_second = 0\nburst = 1\n",
                "rate_limit.reads.requests_per_second",
            ),
            (
                "[rate_limit.reads]\nrequests_per_second = -1\nburst = 1\n",
                "rate_limit.reads.requests_per_second",
            ),
            (
                "[rate_limit.mutations]\nrequests_per_second = 1\nburst = 0\n",
                "rate_limit.mutations.burst",
            ),
            (
                "[rate_limit.reads]\nrequests_per_second = 0.00001\nburst = 10\n",
                "rate_limit.reads",
            ),
            (
                "[[rate_limit.overrides]]\nclient = \"a\"\nrole = \"b\"\nreads = { requests_per_second = 1, burst = 1 }\n",
                "rate_limit.overrides[0]",
            ),
            (
                "[[rate_limit.overrides]]\nclient = \"a\"\n",
                "rate_limit.overrides[0]",
            ),
            (
                "[[rate_limit.overrides]]\nclient = \"a\"\nname = \"a b\"\nreads = { requests_per_second = 1, burst = 1 }\n",
                "rate_limit.overrides[0].name",
            ),
            (
                "[[rate_limit.overrides]]\nclient = \"a\"\nreads = { requests_per_second = 1, burst = 1 }\n[[rate_limit.overrides]]\nclient = \"a\"\nreads = { requests_per_second = 2, burst = 1 }\n",
                "rate_limit.overrides[1]",
            ),
            (
                "[rate_limit]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "rate_limit.trusted_proxies",
            ),
            (
                "[rate_limit]\nforwarded_header = \"via\"\n",
                "rate_limit.forwarded_header",
            ),
            (
                "[rate_limit]\nevict_every = \"10ms\"\n",
                "rate_limit.evict_every",
            ),
            (
                "[rate_limit.auth_failures]\nipv6_prefix = 0\n",
                "rate_limit.auth_failures.ipv6_prefix",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(key), "{text}: {e}");
            assert!(e.0.contains("/etc/simgate.toml"), "{e}");
        }
        assert!(parse("[rate_limit.reads]\nburst = 1\n").is_err());
        assert!(parse("[rate_limit.reads]\nrate = 1\nburst = 1\n").is_err());
    }
}
