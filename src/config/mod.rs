//! Configuration: the TOML file ([`file`]) validated into [`Config`].
//!
//! Every problem is an `Err` naming the file and the key; nothing panics.
//! Relative paths inside a file are resolved against the file's folder.
//! Loading a config reads the file and nothing else; the files it names
//! are read by [`crate::generation::Generation`], which completes it into
//! the runtime configuration. [`restart_required`] names the keys a reload
//! cannot change.

pub mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::error::ConfigError;

/// The validated configuration simgate runs with.
#[derive(Debug)]
pub struct Config {
    /// The file this came from (for error messages).
    pub path: PathBuf,
    /// The folder relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[server]`
    pub server: ServerConfig,
    /// `[upstream]`
    pub upstream: UpstreamConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// The raw sections of the other concerns; each concern validates its own
    /// (see [`crate::generation::Generation::build`]).
    pub sections: Sections,
}

/// The sections validated by their own concern.
#[derive(Debug, Default)]
pub struct Sections {
    /// `[auth]`
    pub auth: crate::auth::config::AuthSection,
    /// `[api]`
    pub api: crate::routes::config::ApiSection,
    /// `[authz]`
    pub authz: crate::authz::config::AuthzSection,
    /// `[rate_limit]`
    pub rate_limit: crate::rate_limit::config::RateLimitSection,
    /// `[validation]`
    pub validation: crate::validate::config::ValidationSection,
    /// `[audit]`
    pub audit: crate::audit::config::AuditSection,
    /// `[cors]`
    pub cors: crate::cors::CorsSection,
}

/// Which request path the gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The full security stack.
    Gateway,
    /// Plain proxying only.
    Passthrough,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Full stack or plain proxying.
    pub mode: Mode,
    /// TLS certificate chain and key files, if the listener speaks TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Liveness path.
    pub health_path: String,
    /// Readiness path.
    pub ready_path: String,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// How requests are scheduled on threads.
    pub runtime: RuntimeModel,
    /// Worker threads; `None`: one per core the process may run on.
    pub workers: Option<std::num::NonZeroUsize>,
}

/// How `simgate serve` schedules requests on threads (`server.runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeModel {
    /// One current-thread runtime per worker, each with its own listener
    /// (`SO_REUSEPORT`): a connection stays on one thread.
    PerCore,
    /// tokio's multi-thread runtime: one listener, tasks move between workers.
    WorkStealing,
}

/// What happens to the client's `Authorization` header upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAuthorization {
    /// Removed (default).
    Strip,
    /// Sent as received.
    Forward,
}

/// `[upstream]`, validated.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL (scheme and authority, optional path prefix).
    pub url: Uri,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time until response headers.
    pub response_timeout: Duration,
    /// Idle time of pooled connections.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections per host.
    pub pool_max_idle: usize,
    /// Client `Authorization` handling (the older key; see `credentials`).
    pub authorization: UpstreamAuthorization,
    /// Named upstream credentials and who uses which (validated, not started).
    pub credentials: crate::credentials::CredentialsConfig,
    /// Extra CA certificates for an `https://` upstream.
    pub ca_file: Option<PathBuf>,
    /// Send the client's Host.
    pub preserve_host: bool,
    /// Headers added to every upstream request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `[limits]`, validated.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Request head size limit.
    pub max_header_bytes: usize,
    /// Request body size limit.
    pub max_body_bytes: u64,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Time to receive the request head; also the time a new connection
    /// has for its TLS handshake and protocol preface.
    pub header_read_timeout: Duration,
    /// Time an HTTP/2 connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Concurrent requests before shedding.
    pub max_concurrent_requests: usize,
}

/// `[admin]`, validated.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Where the admin listener (metrics, health) listens; `None`: off.
    pub listen: Option<SocketAddr>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    pub level: String,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Validates config text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: file::File =
            toml::from_str(text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let server = server(&file.server, path, &base_dir)?;
        let upstream = upstream(&file.upstream, path, &base_dir)?;
        let limits = limits(&file.limits, path)?;
        let log = log(&file.log, path)?;
        let admin = admin(&file.admin, &server, path)?;
        Ok(Config {
            path: path.to_path_buf(),
            base_dir,
            server,
            upstream,
            limits,
            log,
            admin,
            sections: Sections {
                auth: file.auth,
                api: file.api,
                authz: file.authz,
                rate_limit: file.rate_limit,
                validation: file.validation,
                audit: file.audit,
                cors: file.cors,
            },
        })
    }

    /// Resolves a path from the file against the file's folder.
    pub fn resolve(&self, relative: impl AsRef<Path>) -> PathBuf {
        resolve(&self.base_dir, relative.as_ref())
    }
}

/// The keys that differ between `old` and `new` and cannot change while
/// simgate runs: the listener (address, mode, TLS on or off, connection
/// limits, shutdown grace, runtime model and workers), the admin listener
/// and logging. (`[audit]` keys are compared by
/// [`crate::generation::Generation::restart_required`].)
pub fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let (a, b) = (&old.server, &new.server);
    if a.listen != b.listen {
        keys.push("server.listen");
    }
    if a.mode != b.mode {
        keys.push("server.mode");
    }
    if a.tls.is_some() != b.tls.is_some() {
        keys.push("server.tls_cert");
    }
    if a.shutdown_grace != b.shutdown_grace {
        keys.push("server.shutdown_grace");
    }
    if a.runtime != b.runtime {
        keys.push("server.runtime");
    }
    if a.workers != b.workers {
        keys.push("server.workers");
    }
    if old.admin.listen != new.admin.listen {
        keys.push("admin.listen");
    }
    let (a, b) = (&old.limits, &new.limits);
    if a.max_header_bytes != b.max_header_bytes {
        keys.push("limits.max_header_bytes");
    }
    if a.header_read_timeout != b.header_read_timeout {
        keys.push("limits.header_read_timeout");
    }
    if old.log.format != new.log.format {
        keys.push("log.format");
    }
    if old.log.level != new.log.level {
        keys.push("log.level");
    }
    keys
}

/// Resolves `p` against `base` unless it is absolute.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Parses a duration such as `250ms`, `30s` or `2m`; `key` names it in errors.
pub fn duration(
    value: Option<&str>,
    default: Duration,
    file: &Path,
    key: &str,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v)
            .map_err(|e| ConfigError::at(file, key, format!("{v:?} is not a duration ({e})"))),
    }
}

fn server(s: &file::ServerSection, path: &Path, base: &Path) -> Result<ServerConfig, ConfigError> {
    let tls = match (&s.tls_cert, &s.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((resolve(base, Path::new(c)), resolve(base, Path::new(k)))),
        _ => {
            return Err(ConfigError::at(
                path,
                "server.tls_cert",
                "tls_cert and tls_key go together",
            ));
        }
    };
    for (key, p) in [
        ("server.health_path", &s.health_path),
        ("server.ready_path", &s.ready_path),
    ] {
        if !p.starts_with('/') {
            return Err(ConfigError::at(path, key, "must start with /"));
        }
    }
    let mode = match s.mode.as_deref() {
        None | Some("gateway") => Mode::Gateway,
        Some("passthrough") => Mode::Passthrough,
        Some(other) => {
            return Err(ConfigError::at(
                path,
                "server.mode",
                format!("{other:?}: expected \"gateway\" or \"passthrough\""),
            ));
        }
    };
    let runtime = match s.runtime.as_deref() {
        None | Some("per-core") => RuntimeModel::PerCore,
        Some("work-stealing") => RuntimeModel::WorkStealing,
        Some(other) => {
            return Err(ConfigError::at(
                path,
                "server.runtime",
                format!("{other:?}: expected \"per-core\" or \"work-stealing\""),
            ));
        }
    };
    let workers = match s.workers {
        None => None,
        Some(n @ 1..=1024) => std::num::NonZeroUsize::new(n),
        Some(n) => {
            return Err(ConfigError::at(
                path,
                "server.workers",
                format!("{n}: expected 1 to 1024 worker threads"),
            ));
        }
    };
    Ok(ServerConfig {
        listen: s.listen,
        mode,
        runtime,
        workers,
        tls,
        health_path: s.health_path.clone(),
        ready_path: s.ready_path.clone(),
        shutdown_grace: duration(
            Some(&s.shutdown_grace),
            Duration::from_secs(10),
            path,
            "server.shutdown_grace",
        )?,
    })
}

fn upstream(
    u: &file::UpstreamSection,
    path: &Path,
    base: &Path,
) -> Result<UpstreamConfig, ConfigError> {
    let url: Uri = u
        .url
        .parse()
        .map_err(|e| ConfigError::at(path, "upstream.url", format!("{:?}: {e}", u.url)))?;
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::at(
                path,
                "upstream.url",
                "must start with http:// or https://",
            ));
        }
    }
    if url.authority().is_none() || url.query().is_some() {
        return Err(ConfigError::at(
            path,
            "upstream.url",
            "must have a host and no query",
        ));
    }
    let authorization = match u.authorization.as_deref() {
        None | Some("strip") => UpstreamAuthorization::Strip,
        Some("forward") => UpstreamAuthorization::Forward,
        Some(other) => {
            return Err(ConfigError::at(
                path,
                "upstream.authorization",
                format!("{other:?}: expected \"strip\" or \"forward\""),
            ));
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &u.headers {
        let key = format!("upstream.headers.{name}");
        let n =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| ConfigError::at(path, &key, e))?;
        let v = HeaderValue::from_str(value).map_err(|e| ConfigError::at(path, &key, e))?;
        headers.push((n, v));
    }
    Ok(UpstreamConfig {
        url,
        connect_timeout: duration(
            u.connect_timeout.as_deref(),
            Duration::from_secs(2),
            path,
            "upstream.connect_timeout",
        )?,
        response_timeout: duration(
            u.response_timeout.as_deref(),
            Duration::from_secs(15),
            path,
            "upstream.response_timeout",
        )?,
        pool_idle_timeout: duration(
            u.pool_idle_timeout.as_deref(),
            Duration::from_secs(60),
            path,
            "upstream.pool_idle_timeout",
        )?,
        pool_max_idle: u.pool_max_idle.unwrap_or(256),
        authorization,
        credentials: crate::credentials::CredentialsConfig::validate(
            &u.credentials,
            u.credential.as_deref(),
            &u.credential_by_role,
            u.authorization.as_deref(),
            path,
            base,
        )?,
        ca_file: u.ca_file.as_deref().map(|p| resolve(base, Path::new(p))),
        preserve_host: u.preserve_host,
        headers,
    })
}

fn limits(l: &file::LimitsSection, path: &Path) -> Result<LimitsConfig, ConfigError> {
    let max_header_bytes = l.max_header_bytes.unwrap_or(16 * 1024);
    if max_header_bytes < 8192 {
        return Err(ConfigError::at(
            path,
            "limits.max_header_bytes",
            "must be at least 8192",
        ));
    }
    let max_concurrent_requests = l.max_concurrent_requests.unwrap_or(1024);
    if max_concurrent_requests == 0 {
        return Err(ConfigError::at(
            path,
            "limits.max_concurrent_requests",
            "must be at least 1",
        ));
    }
    Ok(LimitsConfig {
        max_header_bytes,
        max_body_bytes: l.max_body_bytes.unwrap_or(1024 * 1024),
        request_timeout: duration(
            l.request_timeout.as_deref(),
            Duration::from_secs(30),
            path,
            "limits.request_timeout",
        )?,
        header_read_timeout: duration(
            l.header_read_timeout.as_deref(),
            Duration::from_secs(10),
            path,
            "limits.header_read_timeout",
        )?,
        idle_timeout: duration(
            l.idle_timeout.as_deref(),
            Duration::from_secs(60),
            path,
            "limits.idle_timeout",
        )?,
        max_concurrent_requests,
    })
}

fn admin(
    a: &file::AdminSection,
    server: &ServerConfig,
    path: &Path,
) -> Result<AdminConfig, ConfigError> {
    if let Some(listen) = a.listen {
        let api = server.listen;
        let overlaps =
            listen.ip() == api.ip() || listen.ip().is_unspecified() || api.ip().is_unspecified();
        if listen.port() != 0 && listen.port() == api.port() && overlaps {
            return Err(ConfigError::at(
                path,
                "admin.listen",
                format!(
                    "{listen} is the API's address ([server] listen); the admin listener needs its own"
                ),
            ));
        }
    }
    Ok(AdminConfig { listen: a.listen })
}

fn log(l: &file::LogSection, path: &Path) -> Result<LogConfig, ConfigError> {
    let format = match l.format.as_deref() {
        None | Some("pretty") => LogFormat::Pretty,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::at(
                path,
                "log.format",
                format!("{other:?}: expected \"pretty\" or \"json\""),
            ));
        }
    };
    Ok(LogConfig {
        format,
        level: l.level.clone().unwrap_or_else(|| "info".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/simgate/simgate.toml"))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c =
            parse("[server]\nlisten = \"127.0.0.1:9\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n")
                .unwrap();
        assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(c.upstream.authorization, UpstreamAuthorization::Strip);
        assert_eq!(c.resolve("x.json"), PathBuf::from("/etc/simgate/x.json"));
    }

    #[test]
    fn restart_only_keys_are_named() {
        let base = "[server]\nlisten = \"127.0.0.1:9\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
        let a = parse(base).unwrap();
        let same = parse(&base.replace("127.0.0.1:1", "127.0.0.1:2")).unwrap();
        assert!(restart_required(&a, &same).is_empty());
        let b = parse(&format!(
            "{}[limits]\nheader_read_timeout = \"3s\"\n[log]\nlevel = \"debug\"\n",
            base.replace("127.0.0.1:9", "127.0.0.1:10")
        ))
        .unwrap();
        assert_eq!(
            restart_required(&a, &b),
            ["server.listen", "limits.header_read_timeout", "log.level"]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = parse(
            "[server]\nlisten = \"127.0.0.1:9\"\nlisen = 1\n[upstream]\nurl = \"http://a\"\n",
        )
        .unwrap_err();
        assert!(e.0.contains("lisen"), "{e}");
        let e = parse("[server]\nlisten = \"127.0.0.1:9\"\n[upstream]\nurl = \"ftp://a\"\n")
            .unwrap_err();
        assert!(e.0.contains("upstream.url"), "{e}");
        let e = parse(
            "[server]\nlisten = \"127.0.0.1:9\"\n[upstream]\nurl = \"http://a\"\n[limits]\nrequest_timeout = \"soon\"\n",
        )
        .unwrap_err();
        assert!(e.0.contains("limits.request_timeout"), "{e}");
    }

    #[test]
    fn admin_is_off_by_default_and_never_on_the_api_port() {
        let base = "[server]\nlisten = \"127.0.0.1:9000\"\n[upstream]\nurl = \"http://a\"\n";
        assert!(parse(base).unwrap().admin.listen.is_none());
        let c = parse(&format!("{base}[admin]\nlisten = \"127.0.0.1:9901\"\n")).unwrap();
        assert_eq!(c.admin.listen, Some("127.0.0.1:9901".parse().unwrap()));
        let e = parse(&format!("{base}[admin]\nlisten = \"0.0.0.0:9000\"\n")).unwrap_err();
        assert!(e.0.contains("admin.listen"), "{e}");
    }
}
