//! `[auth]`: token issuers, claims mapping and the verified-token cache.
//!
//! ```toml
//! [auth]
//! cache_size = 10000                 # verified tokens remembered (0: no cache)
//! max_token_bytes = 8192             # longer bearer tokens are refused
//! jwks_file_poll = "5s"              # how often jwks_file issuers' files are re-read ("0s": never)
//!
//! [auth.claims]                      # where the principal comes from (defaults shown)
//! roles = "authorities"              # array of strings (or space-separated string)
//! scopes = "scope"                   # array of strings or space-separated string
//! client_key = "client_id"           # falls back to `sub`
//!
//! [[auth.issuers]]
//! issuer = "https://idp.example.com" # exact `iss`
//! audiences = ["simgate"]            # `aud` must contain one of these (required when set)
//! jwks_file = "jwks.json"            # or jwks_url = "https://…/jwks.json" (one of the two)
//! algorithms = ["RS256", "ES256"]    # explicit allow-list; `none` and HMAC never
//! leeway_seconds = 30                # clock skew allowed on exp, nbf, iat (at most 300)
//! # Only with jwks_url:
//! # jwks_refresh = "5m"              # schedule when the response has no Cache-Control max-age
//! # jwks_min_refresh = "30s"         # max-age is clamped to [jwks_min_refresh, jwks_max_refresh]
//! # jwks_max_refresh = "24h"
//! # jwks_cooldown = "30s"            # unknown `kid` refetches at most once per cool-down
//! # jwks_timeout = "5s"              # one JWKS fetch
//! ```
//!
//! The serde mirror ([`AuthSection`]) is validated into [`AuthConfig`];
//! every problem names the file and the key. HMAC algorithms are not
//! supported: keys come only from a JWKS, and symmetric keys in a JWKS are
//! never used, which rules out algorithm confusion by construction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::config::{duration, resolve};
use crate::error::ConfigError;

/// `[auth]`: token issuers, claims mapping and the verified-token cache.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `[[auth.issuers]]`: the trusted token issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
    /// `[auth.claims]`: claims mapping for every issuer.
    #[serde(default)]
    pub claims: ClaimsSection,
    /// How many verified tokens are remembered (default 10000; 0 disables).
    pub cache_size: Option<u64>,
    /// Longest bearer token accepted, in bytes (default 8192).
    pub max_token_bytes: Option<usize>,
    /// How often every `jwks_file` is re-read for changed keys (default
    /// 5s; `0s` turns polling off).
    pub jwks_file_poll: Option<String>,
}

/// `[[auth.issuers]]`: one trusted token issuer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// `aud` must contain one of these; when set, `aud` is required.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A JWKS file (relative to the config file's folder).
    pub jwks_file: Option<String>,
    /// A JWKS URL (`https://`, or `http://` on loopback only).
    pub jwks_url: Option<String>,
    /// The algorithms accepted from this issuer.
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 30).
    pub leeway_seconds: Option<u64>,
    /// Claims mapping for this issuer, overriding `[auth.claims]` key by key.
    pub claims: Option<ClaimsSection>,
    /// Refresh interval when the JWKS response has no `max-age` (default 5m).
    pub jwks_refresh: Option<String>,
    /// Lower bound on a `max-age` refresh (default 30s).
    pub jwks_min_refresh: Option<String>,
    /// Upper bound on a `max-age` refresh (default 24h).
    pub jwks_max_refresh: Option<String>,
    /// Minimum time between refetches caused by an unknown `kid` (default 30s).
    pub jwks_cooldown: Option<String>,
    /// Time allowed for one JWKS fetch (default 5s).
    pub jwks_timeout: Option<String>,
}

/// `[auth.claims]`: which claims the principal is taken from.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsSection {
    /// Roles claim (default `authorities`); a dotted path reaches into objects.
    pub roles: Option<String>,
    /// Scopes claim (default `scope`).
    pub scopes: Option<String>,
    /// Client key claim (default `client_id`), falling back to `sub`.
    pub client_key: Option<String>,
}

/// The validated `[auth]` section.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The trusted issuers (at least one in gateway mode).
    pub issuers: Vec<IssuerConfig>,
    /// Verified-token cache entries (0: no cache).
    pub cache_size: u64,
    /// Longest bearer token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Interval of the `jwks_file` polling (zero: off).
    pub jwks_file_poll: Duration,
}

/// One validated issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted audiences (empty: `aud` not checked).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub jwks: JwksLocation,
    /// Algorithm allow-list (never empty, never `none` or HMAC).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed, in seconds.
    pub leeway: u64,
    /// Claims mapping.
    pub claims: ClaimsMapping,
    /// `config_key` prefix naming this issuer in messages, e.g. `auth.issuers[0]`.
    pub key: String,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum JwksLocation {
    /// A file, read when the config is loaded and then polled for changes.
    File(PathBuf),
    /// A URL, fetched at start and refreshed.
    Url(JwksRemote),
}

/// A JWKS URL and its refresh settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksRemote {
    /// The URL.
    pub url: Uri,
    /// Schedule when the response carries no usable `max-age`.
    pub refresh: Duration,
    /// Lower bound on the schedule.
    pub min_refresh: Duration,
    /// Upper bound on the schedule.
    pub max_refresh: Duration,
    /// Minimum time between unknown-`kid` refetches.
    pub cooldown: Duration,
    /// Time allowed for one fetch.
    pub timeout: Duration,
}

/// Which claims the principal is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsMapping {
    /// Roles claim.
    pub roles: String,
    /// Scopes claim.
    pub scopes: String,
    /// Client key claim (falls back to `sub`).
    pub client_key: String,
}

impl Default for ClaimsMapping {
    fn default() -> Self {
        ClaimsMapping {
            roles: "authorities".into(),
            scopes: "scope".into(),
            client_key: "client_id".into(),
        }
    }
}

/// Largest leeway accepted, in seconds.
pub const MAX_LEEWAY: u64 = 300;
/// Default leeway, in seconds.
pub const DEFAULT_LEEWAY: u64 = 30;
/// Default verified-token cache size.
pub const DEFAULT_CACHE_SIZE: u64 = 10_000;
/// Default interval of the `jwks_file` polling.
pub const DEFAULT_JWKS_FILE_POLL: Duration = Duration::from_secs(5);
/// Default longest bearer token, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

impl AuthSection {
    /// Validates the section; `file` names the config file in errors and
    /// relative paths are resolved against `base_dir`.
    pub fn validate(&self, file: &Path, base_dir: &Path) -> Result<AuthConfig, ConfigError> {
        let defaults = mapping(&self.claims, &ClaimsMapping::default(), file, "auth.claims")?;
        let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(self.issuers.len());
        for (i, s) in self.issuers.iter().enumerate() {
            let issuer = issuer(s, &format!("auth.issuers[{i}]"), &defaults, file, base_dir)?;
            if issuers.iter().any(|o| o.issuer == issuer.issuer) {
                return Err(ConfigError::at(
                    file,
                    &format!("{}.issuer", issuer.key),
                    format!("{:?} is configured twice", issuer.issuer),
                ));
            }
            issuers.push(issuer);
        }
        let max_token_bytes = self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if !(256..=65536).contains(&max_token_bytes) {
            return Err(ConfigError::at(
                file,
                "auth.max_token_bytes",
                "must be between 256 and 65536",
            ));
        }
        let jwks_file_poll = duration(
            self.jwks_file_poll.as_deref(),
            DEFAULT_JWKS_FILE_POLL,
            file,
            "auth.jwks_file_poll",
        )?;
        Ok(AuthConfig {
            issuers,
            cache_size: self.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
            max_token_bytes,
            jwks_file_poll,
        })
    }
}

fn issuer(
    s: &IssuerSection,
    key: &str,
    defaults: &ClaimsMapping,
    file: &Path,
    base_dir: &Path,
) -> Result<IssuerConfig, ConfigError> {
    let at = |k: &str, why: &str| ConfigError::at(file, &format!("{key}.{k}"), why);
    if s.issuer.trim().is_empty() || s.issuer.trim() != s.issuer {
        return Err(at(
            "issuer",
            "must be the exact, non-empty `iss` of the tokens",
        ));
    }
    if s.audiences.iter().any(|a| a.is_empty()) {
        return Err(at("audiences", "must not contain an empty audience"));
    }
    let algorithms = algorithms(s.algorithms.as_deref(), &at)?;
    let leeway = s.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_LEEWAY {
        return Err(at(
            "leeway_seconds",
            &format!("must be at most {MAX_LEEWAY}"),
        ));
    }
    let remote_keys = [
        ("jwks_refresh", &s.jwks_refresh),
        ("jwks_min_refresh", &s.jwks_min_refresh),
        ("jwks_max_refresh", &s.jwks_max_refresh),
        ("jwks_cooldown", &s.jwks_cooldown),
        ("jwks_timeout", &s.jwks_timeout),
    ];
    let jwks = match (&s.jwks_file, &s.jwks_url) {
        (Some(f), None) => {
            if let Some((k, _)) = remote_keys.iter().find(|(_, v)| v.is_some()) {
                return Err(at(k, "applies only with jwks_url"));
            }
            JwksLocation::File(resolve(base_dir, Path::new(f)))
        }
        (None, Some(u)) => JwksLocation::Url(remote(s, u, key, file)?),
        _ => return Err(at("jwks_file", "set exactly one of jwks_file and jwks_url")),
    };
    let claims = match &s.claims {
        Some(c) => mapping(c, defaults, file, &format!("{key}.claims"))?,
        None => defaults.clone(),
    };
    Ok(IssuerConfig {
        issuer: s.issuer.clone(),
        audiences: s.audiences.clone(),
        jwks,
        algorithms,
        leeway,
        claims,
        key: key.to_owned(),
    })
}

fn algorithms(
    names: Option<&[String]>,
    at: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Err(at(
            "algorithms",
            "an explicit allow-list is required, e.g. [\"RS256\"]",
        ));
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let alg = parse_algorithm(name).map_err(|why| at("algorithms", &why))?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

/// The asymmetric algorithm named exactly `name`; `none` (any casing) and
/// HMAC are refused with a reason.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        n if n.eq_ignore_ascii_case("none") => {
            return Err("`none` can never be allowed".into());
        }
        "HS256" | "HS384" | "HS512" => {
            return Err(format!(
                "{name}: HMAC is not supported; use an asymmetric algorithm with a JWKS"
            ));
        }
        other => {
            return Err(format!(
                "{other:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            ));
        }
    })
}

fn remote(s: &IssuerSection, url: &str, key: &str, file: &Path) -> Result<JwksRemote, ConfigError> {
    let k = |name: &str| format!("{key}.{name}");
    let uri: Uri = url
        .parse()
        .map_err(|e| ConfigError::at(file, &k("jwks_url"), format!("{url:?}: {e}")))?;
    let host = uri.host().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if loopback => {}
        _ => {
            return Err(ConfigError::at(
                file,
                &k("jwks_url"),
                "must be https:// (http:// only on a loopback address)",
            ));
        }
    }
    let d = |v: &Option<String>, default: u64, name: &str| {
        duration(v.as_deref(), Duration::from_secs(default), file, &k(name))
    };
    let remote = JwksRemote {
        url: uri,
        refresh: d(&s.jwks_refresh, 300, "jwks_refresh")?,
        min_refresh: d(&s.jwks_min_refresh, 30, "jwks_min_refresh")?,
        max_refresh: d(&s.jwks_max_refresh, 86_400, "jwks_max_refresh")?,
        cooldown: d(&s.jwks_cooldown, 30, "jwks_cooldown")?,
        timeout: d(&s.jwks_timeout, 5, "jwks_timeout")?,
    };
    if remote.min_refresh.is_zero() || remote.min_refresh > remote.max_refresh {
        return Err(ConfigError::at(
            file,
            &k("jwks_min_refresh"),
            "must be above zero and at most jwks_max_refresh",
        ));
    }
    if remote.refresh < remote.min_refresh || remote.refresh > remote.max_refresh {
        return Err(ConfigError::at(
            file,
            &k("jwks_refresh"),
            "must lie between jwks_min_refresh and jwks_max_refresh",
        ));
    }
    if remote.timeout.is_zero() {
        return Err(ConfigError::at(
            file,
            &k("jwks_timeout"),
            "must be above zero",
        ));
    }
    Ok(remote)
}

fn mapping(
    c: &ClaimsSection,
    defaults: &ClaimsMapping,
    file: &Path,
    key: &str,
) -> Result<ClaimsMapping, ConfigError> {
    let pick = |v: &Option<String>, d: &String, name: &str| match v {
        Some(v) if v.is_empty() => Err(ConfigError::at(
            file,
            &format!("{key}.{name}"),
            "must name a claim",
        )),
        Some(v) => Ok(v.clone()),
        None => Ok(d.clone()),
    };
    Ok(ClaimsMapping {
        roles: pick(&c.roles, &defaults.roles, "roles")?,
        scopes: pick(&c.scopes, &defaults.scopes, "scopes")?,
        client_key: pick(&c.client_key, &defaults.client_key, "client_key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthConfig, String> {
        #[derive(Deserialize)]
        struct Wrap {
            #[serde(default)]
            auth: AuthSection,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| e.to_string())?;
        w.auth
            .validate(Path::new("/etc/simgate.toml"), Path::new("/etc"))
            .map_err(|e| e.to_string())
    }

    const ISSUER: &str = r#"
[[auth.issuers]]
issuer = "https://idp.example.com"
audiences = ["simgate"]
jwks_file = "jwks.json"
algorithms = ["RS256", "ES256"]
leeway_seconds = 30
"#;

    #[test]
    fn issue_example_parses_with_defaults() {
        let c = parse(ISSUER).unwrap();
        let i = &c.issuers[0];
        assert_eq!(i.algorithms, [Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(i.leeway, 30);
        assert_eq!(i.claims, ClaimsMapping::default());
        assert!(matches!(&i.jwks, JwksLocation::File(p) if p == Path::new("/etc/jwks.json")));
        assert_eq!(c.cache_size, DEFAULT_CACHE_SIZE);
    }

    #[test]
    fn claims_mapping_overrides_key_by_key() {
        let text = format!(
            "[auth.claims]\nroles = \"roles\"\n{ISSUER}[auth.issuers.claims]\nscopes = \"scp\"\n"
        );
        let c = parse(&text).unwrap();
        let m = &c.issuers[0].claims;
        assert_eq!(
            (m.roles.as_str(), m.scopes.as_str(), m.client_key.as_str()),
            ("roles", "scp", "client_id")
        );
    }

    #[test]
    fn none_and_hmac_can_never_be_configured() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let e =
                parse(&ISSUER.replace("\"RS256\", \"ES256\"", &format!("\"{alg}\""))).unwrap_err();
            assert!(
                e.contains("auth.issuers[0].algorithms") && e.contains("never"),
                "{e}"
            );
        }
        let e = parse(&ISSUER.replace("\"ES256\"", "\"HS256\"")).unwrap_err();
        assert!(e.contains("HMAC"), "{e}");
        let e = parse(&ISSUER.replace("algorithms = [\"RS256\", \"ES256\"]", "")).unwrap_err();
        assert!(e.contains("algorithms"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse(&format!("{ISSUER}secret = \"x\"\n")).unwrap_err();
        assert!(e.contains("secret"), "{e}");
        let e = parse(&ISSUER.replace("leeway_seconds = 30", "leeway_seconds = 3600")).unwrap_err();
        assert!(e.contains("leeway_seconds"), "{e}");
        let e = parse(&ISSUER.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"a\"\njwks_url = \"https://x/\"",
        ))
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse(&ISSUER.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_url = \"http://idp.example.com/jwks\"",
        ))
        .unwrap_err();
        assert!(e.contains("jwks_url"), "{e}");
        let e = parse(&ISSUER.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"j\"\njwks_cooldown = \"1s\"",
        ))
        .unwrap_err();
        assert!(e.contains("jwks_cooldown"), "{e}");
        let e = parse(&format!("{ISSUER}{ISSUER}")).unwrap_err();
        assert!(e.contains("auth.issuers[1].issuer"), "{e}");
    }

    #[test]
    fn loopback_http_jwks_url_is_allowed() {
        let c = parse(&ISSUER.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_url = \"http://127.0.0.1:9/jwks\"\njwks_cooldown = \"1m\"",
        ))
        .unwrap();
        let JwksLocation::Url(r) = &c.issuers[0].jwks else {
            panic!("not a url")
        };
        assert_eq!(r.cooldown, Duration::from_secs(60));
        assert_eq!(r.refresh, Duration::from_secs(300));
    }
}
