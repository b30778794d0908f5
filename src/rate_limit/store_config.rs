//! `[rate_limit] store` and `[rate_limit.redis]`: where the per-client
//! quotas are counted, mirrored from the file and validated into a
//! [`StoreConfig`].
//!
//! ```toml
//! [rate_limit]
//! store = "redis"                    # default "local": each replica counts alone
//!
//! [rate_limit.redis]
//! url = "redis://127.0.0.1:6379/0"   # or url_env = "SIMGATE_REDIS_URL"; rediss:// for TLS
//! password_file = "redis.password"   # optional; relative to the config file
//! key_prefix = "simgate:"            # default
//! timeout = "50ms"                   # one request's budget for the store (default)
//! on_error = "local"                 # "local" (default), "deny" or "allow"
//! replicas = 2                       # required with on_error = "local"
//! ```
//!
//! **Refuses** a `url` in the file that carries a password (put it into the
//! environment variable named by `url_env`, or into `password_file`), both
//! or neither of `url` / `url_env`, a URL the Redis client cannot use, a
//! `[rate_limit.redis]` section without `store = "redis"`, a zero or
//! missing `replicas` where the local fallback needs it, and a zero or
//! over-a-second `timeout`.
//!
//! The validated config holds the password (when there is one) only inside
//! the client's connection info, whose `Debug` output redacts it; its
//! [`Display`](std::fmt::Display) form ([`RedisConfig::target`]) shows the
//! scheme, host, port and database only.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use serde::Deserialize;

use crate::error::ConfigError;

/// `[rate_limit.redis]`, as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port/db` or `rediss://…`; no password.
    pub url: Option<String>,
    /// Name of an environment variable holding the URL (which may carry a
    /// password).
    pub url_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<String>,
    /// Prefix of every key simgate writes (default `simgate:`).
    pub key_prefix: Option<String>,
    /// One request's budget for the store, e.g. `"50ms"` (the default).
    pub timeout: Option<String>,
    /// What happens while the store fails: `local`, `deny` or `allow`.
    pub on_error: Option<String>,
    /// Replicas sharing the store; the local fallback divides quotas by it.
    pub replicas: Option<u32>,
}

/// What the per-client limiter does while the store errors or is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// In-process quotas, each divided by the number of replicas.
    Local,
    /// Refuse counted requests with 503 and `Retry-After`.
    Deny,
    /// No per-client limit at all (logged loudly).
    Allow,
}

impl OnError {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Local => "local",
            OnError::Deny => "deny",
            OnError::Allow => "allow",
        }
    }
}

/// Where the per-client quotas are counted.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// In this process (each replica on its own).
    #[default]
    Local,
    /// In Redis, shared by every replica.
    Redis(Box<RedisConfig>),
}

impl StoreConfig {
    /// `"local"` or `"redis"`.
    pub fn name(&self) -> &'static str {
        match self {
            StoreConfig::Local => "local",
            StoreConfig::Redis(_) => "redis",
        }
    }
}

/// `[rate_limit.redis]`, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Where to connect, with credentials (redacted from `Debug`).
    pub connection: ConnectionInfo,
    /// Prefix of every key.
    pub key_prefix: String,
    /// One request's budget for the store.
    pub timeout: Duration,
    /// The degraded mode.
    pub on_error: OnError,
    /// Replicas sharing the store (1 unless on_error = "local").
    pub replicas: u32,
}

impl RedisConfig {
    /// The store without credentials, e.g. `redis://127.0.0.1:6379/0`.
    pub fn target(&self) -> Target<'_> {
        Target(&self.connection)
    }
}

/// The printable form of a connection: scheme, host, port and database.
#[derive(Debug)]
pub struct Target<'a>(&'a ConnectionInfo);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = self.0.redis_settings().db();
        match self.0.addr() {
            ConnectionAddr::Tcp(host, port) => write!(f, "redis://{host}:{port}/{db}"),
            ConnectionAddr::TcpTls { host, port, .. } => write!(f, "rediss://{host}:{port}/{db}"),
            ConnectionAddr::Unix(path) => write!(f, "unix://{}?db={db}", path.display()),
            _ => write!(f, "redis (db {db})"),
        }
    }
}

/// The default key prefix.
const KEY_PREFIX: &str = "simgate:";
/// The default budget of one request.
const TIMEOUT: Duration = Duration::from_millis(50);

/// Validates `store` and `[rate_limit.redis]`; errors name `file` and the
/// key. `env` reads an environment variable (the process's in production).
pub fn validate(
    store: Option<&str>,
    section: Option<&RedisSection>,
    file: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<StoreConfig, ConfigError> {
    match (store.unwrap_or("local"), section) {
        ("local", None) => Ok(StoreConfig::Local),
        ("local", Some(_)) => Err(ConfigError::at(
            file,
            "rate_limit.redis",
            "is set but `rate_limit.store` is not \"redis\"",
        )),
        ("redis", None) => Err(ConfigError::at(
            file,
            "rate_limit.redis",
            "is required with store = \"redis\"",
        )),
        ("redis", Some(s)) => redis(s, file, env).map(|r| StoreConfig::Redis(Box::new(r))),
        (other, _) => Err(ConfigError::at(
            file,
            "rate_limit.store",
            format!("{other:?}: expected \"local\" or \"redis\""),
        )),
    }
}

fn redis(
    s: &RedisSection,
    file: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedisConfig, ConfigError> {
    let key = |k: &str| format!("rate_limit.redis.{k}");
    let (text, from_env) = match (&s.url, &s.url_env) {
        (Some(url), None) => (url.clone(), false),
        (None, Some(var)) => {
            let url = env(var).filter(|u| !u.is_empty()).ok_or_else(|| {
                ConfigError::at(
                    file,
                    &key("url_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            (url, true)
        }
        _ => {
            return Err(ConfigError::at(
                file,
                &key("url"),
                "set exactly one of `url` and `url_env`",
            ));
        }
    };
    let url_key = if from_env { key("url_env") } else { key("url") };
    // The URL text is never echoed: it may hold a password.
    let parsed = redis::parse_redis_url(&text).ok_or_else(|| {
        ConfigError::at(file, &url_key, "not a redis://, rediss:// or unix:// URL")
    })?;
    if !from_env && parsed.password().is_some() {
        return Err(ConfigError::at(
            file,
            &url_key,
            "must not contain a password; use `url_env` or `password_file`",
        ));
    }
    let mut connection = text
        .as_str()
        .into_connection_info()
        .map_err(|e| ConfigError::at(file, &url_key, format!("unusable: {}", e.category())))?;
    if !matches!(
        connection.addr(),
        ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. } | ConnectionAddr::Unix(_)
    ) {
        return Err(ConfigError::at(file, &url_key, "unsupported address"));
    }
    if let Some(p) = &s.password_file {
        let path = file.parent().unwrap_or(Path::new(".")).join(p);
        let password = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::at(
                file,
                &key("password_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(ConfigError::at(
                file,
                &key("password_file"),
                format!("{} is empty", path.display()),
            ));
        }
        let settings = connection.redis_settings().clone().set_password(password);
        connection = connection.set_redis_settings(settings);
    }
    let key_prefix = s
        .key_prefix
        .clone()
        .unwrap_or_else(|| KEY_PREFIX.to_owned());
    let timeout = crate::config::duration(s.timeout.as_deref(), TIMEOUT, file, &key("timeout"))?;
    if timeout.is_zero() || timeout > Duration::from_secs(1) {
        return Err(ConfigError::at(
            file,
            &key("timeout"),
            "must be more than 0 and at most 1s (it is added to requests while the store hangs)",
        ));
    }
    let on_error = match s.on_error.as_deref().unwrap_or("local") {
        "local" => OnError::Local,
        "deny" => OnError::Deny,
        "allow" => OnError::Allow,
        other => {
            return Err(ConfigError::at(
                file,
                &key("on_error"),
                format!("{other:?}: expected \"local\", \"deny\" or \"allow\""),
            ));
        }
    };
    let replicas = match (on_error, s.replicas) {
        (_, Some(0)) => {
            return Err(ConfigError::at(
                file,
                &key("replicas"),
                "must be at least 1",
            ));
        }
        (OnError::Local, None) => {
            return Err(ConfigError::at(
                file,
                &key("replicas"),
                "is required with on_error = \"local\": the number of replicas sharing the \
                 store, by which the fallback divides each quota",
            ));
        }
        (_, r) => r.unwrap_or(1),
    };
    Ok(RedisConfig {
        connection,
        key_prefix,
        timeout,
        on_error,
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<StoreConfig, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            store: Option<String>,
            redis: Option<RedisSection>,
        }
        let w: Wrapper = toml::from_str(text).map_err(|e| e.to_string())?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate(
            w.store.as_deref(),
            w.redis.as_ref(),
            Path::new("/etc/simgate.toml"),
            |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        )
        .map_err(|e| e.to_string())
    }

    fn redis_of(c: StoreConfig) -> RedisConfig {
        match c {
            StoreConfig::Redis(r) => *r,
            StoreConfig::Local => panic!("local"),
        }
    }

    #[test]
    fn local_by_default() {
        assert!(matches!(parse("", &[]).unwrap(), StoreConfig::Local));
        let e = parse("store = \"memcached\"", &[]).unwrap_err();
        assert!(e.contains("`rate_limit.store`"), "{e}");
        let e = parse("[redis]\nurl = \"redis://h\"", &[]).unwrap_err();
        assert!(e.contains("not \"redis\""), "{e}");
        let e = parse("store = \"redis\"", &[]).unwrap_err();
        assert!(e.contains("`rate_limit.redis`"), "{e}");
    }

    #[test]
    fn the_documented_example_and_defaults() {
        let c = redis_of(
            parse(
                "store = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379/0\"\nreplicas = 2\n",
                &[],
            )
            .unwrap(),
        );
        assert_eq!(c.target().to_string(), "redis://127.0.0.1:6379/0");
        assert_eq!(c.key_prefix, "simgate:");
        assert_eq!(c.timeout, Duration::from_millis(50));
        assert_eq!(c.on_error, OnError::Local);
        assert_eq!(c.replicas, 2);
        let c = redis_of(
            parse(
                "store = \"redis\"\n[redis]\nurl = \"rediss://cache.internal:6380/3\"\n\
                 on_error = \"deny\"\ntimeout = \"20ms\"\nkey_prefix = \"gw1:\"\n",
                &[],
            )
            .unwrap(),
        );
        assert_eq!(c.target().to_string(), "rediss://cache.internal:6380/3");
        assert_eq!((c.on_error, c.replicas), (OnError::Deny, 1));
        assert_eq!(c.timeout, Duration::from_millis(20));
        assert_eq!(c.key_prefix, "gw1:");
    }

    #[test]
    fn passwords_never_inline_and_never_shown() {
        let e = parse(
            "store = \"redis\"\n[redis]\nurl = \"redis://:hunter2@h:6379\"\nreplicas = 2\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("must not contain a password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // From the environment, a password is fine, and stays hidden.
        let c = redis_of(
            parse(
                "store = \"redis\"\n[redis]\nurl_env = \"R\"\non_error = \"allow\"\n",
                &[("R", "redis://u:hunter2@h:6379/1")],
            )
            .unwrap(),
        );
        assert_eq!(c.connection.redis_settings().password(), Some("hunter2"));
        assert_eq!(c.target().to_string(), "redis://h:6379/1");
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = parse(
            "store = \"redis\"\n[redis]\nurl_env = \"NOPE\"\nreplicas = 1\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = parse(
            "store = \"redis\"\n[redis]\nurl_env = \"R\"\nreplicas = 1\n",
            &[("R", "http://:hunter2@h")],
        )
        .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse(
            "store = \"redis\"\n[redis]\nurl = \"redis://h\"\nurl_env = \"R\"\nreplicas = 1\n",
            &[("R", "redis://h")],
        )
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn password_file_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let section: RedisSection = toml::from_str(
            "url = \"redis://127.0.0.1:6379\"\npassword_file = \"pw\"\non_error = \"deny\"\n",
        )
        .unwrap();
        let c = validate(
            Some("redis"),
            Some(&section),
            &dir.path().join("simgate.toml"),
            |_| None,
        )
        .unwrap();
        let c = redis_of(c);
        assert_eq!(c.connection.redis_settings().password(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let section: RedisSection =
            toml::from_str("url = \"redis://h\"\npassword_file = \"missing\"\nreplicas = 1\n")
                .unwrap();
        let e = validate(
            Some("redis"),
            Some(&section),
            &dir.path().join("simgate.toml"),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`rate_limit.redis.password_file`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "store = \"redis\"\n[redis]\nurl = \"redis://h\"\n";
        for (extra, key) in [
            ("replicas = 0\n", "replicas"),
            ("on_error = \"local\"\n", "replicas"),
            ("replicas = 2\non_error = \"open\"\n", "on_error"),
            ("replicas = 2\ntimeout = \"0s\"\n", "timeout"),
            ("replicas = 2\ntimeout = \"5s\"\n", "timeout"),
            ("replicas = 2\ntimeout = \"soon\"\n", "timeout"),
        ] {
            let e = parse(&format!("{base}{extra}"), &[]).unwrap_err();
            assert!(
                e.contains(&format!("`rate_limit.redis.{key}`")),
                "{extra}: {e}"
            );
        }
        let e = parse(
            "store = \"redis\"\n[redis]\nurl = \"http://h\"\nreplicas = 2\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("`rate_limit.redis.url`"), "{e}");
        let e = parse(
            "store = \"redis\"\n[redis]\nurl = \"redis://h\"\nreplicas = 2\nport = 1\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
