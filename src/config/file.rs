//! The TOML file, mirrored in serde types. Unknown keys are refused.
//!
//! These types are what the file says; [`super::Config`] is what simgate runs
//! with, after validation. Sections owned by one concern (auth, policy, …)
//! are defined next to that concern and only referenced here.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[server]`
    pub server: ServerSection,
    /// `[upstream]`
    pub upstream: UpstreamSection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// `[auth]`
    #[serde(default)]
    pub auth: crate::auth::config::AuthSection,
    /// `[api]`
    #[serde(default)]
    pub api: crate::routes::config::ApiSection,
    /// `[authz]`
    #[serde(default)]
    pub authz: crate::authz::config::AuthzSection,
    /// `[rate_limit]`
    #[serde(default)]
    pub rate_limit: crate::rate_limit::config::RateLimitSection,
    /// `[validation]`
    #[serde(default)]
    pub validation: crate::validate::config::ValidationSection,
    /// `[audit]`
    #[serde(default)]
    pub audit: crate::audit::config::AuditSection,
    /// `[cors]`
    #[serde(default)]
    pub cors: crate::cors::CorsSection,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[admin]`: the operators' listener (metrics, health); off when `listen`
/// is absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener, never the API's.
    pub listen: Option<SocketAddr>,
}

/// `[server]`: where and how the gateway listens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `gateway` (default): the full security stack; `passthrough`: plain
    /// proxying with no authentication, matching, policy or audit (for
    /// measuring the proxy alone; refused unless spelled out).
    pub mode: Option<String>,
    /// PEM certificate chain; with `tls_key`, the listener speaks TLS.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<String>,
    /// Liveness endpoint, answered by the gateway itself.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Readiness endpoint, answered by the gateway itself.
    #[serde(default = "default_ready_path")]
    pub ready_path: String,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// `per-core` (default): one single-threaded runtime per worker thread,
    /// each with its own `SO_REUSEPORT` listener; `work-stealing`: tokio's
    /// multi-thread runtime behind one listener.
    pub runtime: Option<String>,
    /// Worker threads (default: one per core the process may run on).
    pub workers: Option<usize>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            mode: None,
            tls_cert: None,
            tls_key: None,
            health_path: default_health_path(),
            ready_path: default_ready_path(),
            shutdown_grace: default_grace(),
            runtime: None,
            workers: None,
        }
    }
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_ready_path() -> String {
    "/readyz".into()
}
fn default_grace() -> String {
    "10s".into()
}

/// `[upstream]`: the API simgate guards.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Base URL, `http://` or `https://`; request paths are appended.
    pub url: String,
    /// Time allowed to open a connection.
    pub connect_timeout: Option<String>,
    /// Time allowed until the upstream's response headers arrive.
    pub response_timeout: Option<String>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Option<String>,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle: Option<usize>,
    /// `strip` (default): the client's `Authorization` is not sent upstream;
    /// `forward`: it is.
    pub authorization: Option<String>,
    /// Send the client's `Host` instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// Headers added to every upstream request (replacing any the client
    /// sent under the same name).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[limits]`: protections that apply to every request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Maximum size of the request head (HTTP/1) or header list (HTTP/2).
    pub max_header_bytes: Option<usize>,
    /// Maximum request body size (413 beyond it).
    pub max_body_bytes: Option<u64>,
    /// Time allowed for the whole request, upstream included.
    pub request_timeout: Option<String>,
    /// Time allowed for a client to send its request head.
    pub header_read_timeout: Option<String>,
    /// Requests handled at once; beyond it, 503 with Retry-After.
    pub max_concurrent_requests: Option<usize>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `pretty` (default) or `json`.
    pub format: Option<String>,
    /// Default filter when `RUST_LOG` is not set, e.g. `info`.
    pub level: Option<String>,
}
