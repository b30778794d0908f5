//! Upstream credentials: how simgate authenticates itself to the API it
//! guards, chosen per caller.
//!
//! Named credentials (`[upstream.credentials.NAME]`) are of three kinds:
//!
//! | kind | what the upstream gets |
//! |---|---|
//! | `oauth2_client_credentials` | `Bearer <token>` from the vendor's token endpoint, refreshed ahead of expiry ([`source`]) |
//! | `bearer` | `Bearer <token>` read at start from `token_file` or `token_env` |
//! | `forward` | the caller's own `Authorization`, as received |
//!
//! `upstream.credential` is the default; `upstream.credential_by_role` maps
//! roles to credentials, and a caller holding several roles gets the first
//! entry, in the order written, that names one of them. With no credential
//! configured the caller's `Authorization` is removed and nothing is added.
//!
//! Configuration ([`config`]) is a value: validating it reads nothing.
//! [`Credentials::start`] is the step that reads the secrets (warning about
//! files readable by group or others) and starts one refresh task per OAuth2
//! credential; dropping the [`Credentials`] ends them, so a reload can build
//! a new generation and swap it in. A reload keeps started credentials (and
//! their tokens) only when their config is unchanged and every secret reads
//! as it did at start ([`Credentials::serves`]): a rotated client secret or
//! token file is picked up by a reload.
//!
//! The request step is [`layer`]; it refuses (503, [`Error::UpstreamCredentialUnavailable`])
//! a request whose credential has no valid token, and turns a second 401
//! from the upstream into 502 ([`Error::UpstreamCredentialRejected`]).
//! Secrets and tokens are never in `Debug` output, logs or errors.
//!
//! [`Error::UpstreamCredentialUnavailable`]: crate::error::Error::UpstreamCredentialUnavailable
//! [`Error::UpstreamCredentialRejected`]: crate::error::Error::UpstreamCredentialRejected

pub mod config;
pub(crate) mod layer;
pub(crate) mod oauth;
pub(crate) mod secret;
pub(crate) mod source;

use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;

pub use config::CredentialsConfig;
pub(crate) use layer::{UpstreamAuth, UpstreamCredentialLayer};

use crate::error::ConfigError;
use crate::health::{CheckFuture, ReadinessCheck};
use crate::metrics::Metrics;
use secret::{Digester, SecretsDigest};
use source::TokenSource;

/// A started credential.
#[derive(Debug)]
pub(crate) enum Started {
    /// Tokens from a client-credentials grant.
    OAuth2(Arc<TokenSource>),
    /// A static `Bearer` value (marked sensitive).
    Bearer(HeaderValue),
    /// The caller's own `Authorization`.
    Forward,
}

/// The started credentials: cheap to clone, shared by every request.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    config: CredentialsConfig,
    /// What the secrets read at start were (to tell a rotated one).
    secrets: SecretsDigest,
    started: Vec<(Arc<str>, Started)>,
}

impl Credentials {
    /// Reads the secrets of `config` and starts fetching tokens (on the
    /// current runtime, if there is one). Errors name the file and key.
    /// Token requests are counted in `metrics`.
    pub fn start(
        config: &CredentialsConfig,
        file: &Path,
        metrics: &Metrics,
    ) -> Result<Credentials, ConfigError> {
        let mut digest = Digester::default();
        let mut started = Vec::new();
        for (name, spec) in &config.named {
            let key = |k: &str| format!("upstream.credentials.{name}.{k}");
            let secret = match spec.secret() {
                Some((k, source)) => {
                    let secret = source
                        .read()
                        .map_err(|e| ConfigError::at(file, &key(k), e))?;
                    digest.add(name, &secret);
                    Some(secret)
                }
                None => None,
            };
            let credential = match (spec, secret) {
                (config::CredentialSpec::Bearer(_), Some(token)) => {
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .map_err(|_| {
                            ConfigError::at(file, &key("token_file"), "not a valid header value")
                        })?;
                    value.set_sensitive(true);
                    Started::Bearer(value)
                }
                (config::CredentialSpec::OAuth2(spec), Some(secret)) => {
                    let client = oauth::ClientCredentials::new((**spec).clone(), secret)
                        .map_err(|e| ConfigError::at(file, &key("ca_file"), e))?;
                    let source = Arc::new(TokenSource::new(
                        name,
                        Box::new(client),
                        spec.retry_max,
                        metrics.clone(),
                    ));
                    source::spawn_refresher(&source);
                    Started::OAuth2(source)
                }
                // `forward`, the one kind without a secret.
                _ => Started::Forward,
            };
            started.push((Arc::from(name.as_str()), credential));
        }
        Ok(Credentials {
            inner: Arc::new(Inner {
                config: config.clone(),
                secrets: digest.finish(),
                started,
            }),
        })
    }

    /// Whether these credentials can serve `config` on (a reload keeps their
    /// tokens): the same config, and every secret it names reads as it did
    /// at start. A rotated or unreadable secret means starting again (which
    /// reads it, or refuses the reload naming it).
    pub(crate) fn serves(&self, config: &CredentialsConfig) -> bool {
        if self.inner.config != *config {
            return false;
        }
        let mut digest = Digester::default();
        for (name, spec) in &config.named {
            if let Some((_, source)) = spec.secret() {
                match source.read() {
                    Ok(secret) => digest.add(name, &secret),
                    Err(_) => return false,
                }
            }
        }
        digest.finish() == self.inner.secrets
    }

    /// The credential for a caller with `roles`, with its name.
    pub(crate) fn select(&self, roles: &[String]) -> Option<(&Arc<str>, &Started)> {
        let name = self.inner.config.select(roles)?;
        self.inner
            .started
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(n, s)| (n, s))
    }

    /// Whether any credential needs a token from an endpoint.
    pub fn has_token_sources(&self) -> bool {
        self.inner
            .started
            .iter()
            .any(|(_, s)| matches!(s, Started::OAuth2(_)))
    }

    /// The readiness check: every OAuth2 credential holds a valid token.
    pub fn readiness(&self) -> Arc<dyn ReadinessCheck> {
        Arc::new(CredentialsHaveTokens(self.clone()))
    }
}

/// Ready when every OAuth2 credential holds a valid token.
#[derive(Debug)]
struct CredentialsHaveTokens(Credentials);

impl ReadinessCheck for CredentialsHaveTokens {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            for (name, started) in &self.0.inner.started {
                if let Started::OAuth2(source) = started
                    && !source.has_valid_token()
                {
                    return Err(format!(
                        "upstream credential {name:?} has no valid token yet"
                    ));
                }
            }
            Ok(())
        })
    }
}

/// Which credential a group of callers gets: the rows `simgate check`
/// prints. Names and kinds only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment<'a> {
    /// The role; `None` for callers with none of the listed roles.
    pub role: Option<&'a str>,
    /// The credential's name; `None`: the caller's Authorization is removed.
    pub credential: Option<&'a str>,
    /// The credential's kind (`oauth2_client_credentials`, …).
    pub kind: Option<&'a str>,
}

/// Which credential each role uses (the policy's `roles`, then any other
/// role `credential_by_role` names), and last the default for other
/// callers.
pub(crate) fn assignments<'a>(
    config: &'a CredentialsConfig,
    roles: &'a [String],
) -> Vec<Assignment<'a>> {
    let mut all: Vec<&str> = roles.iter().map(String::as_str).collect();
    for (role, _) in &config.by_role {
        if !all.contains(&role.as_str()) {
            all.push(role);
        }
    }
    let row = |role: Option<&'a str>, credential: Option<&'a str>| Assignment {
        role,
        credential,
        kind: credential.and_then(|n| config.kind_of(n)),
    };
    let mut rows: Vec<Assignment<'a>> = all
        .into_iter()
        .map(|role| row(Some(role), config.credential_for_role(role)))
        .collect();
    rows.push(row(None, config.default.as_deref()));
    rows
}

/// The text `simgate check` prints: [`assignments`], one line each.
pub fn describe(config: &CredentialsConfig, roles: &[String]) -> String {
    use std::fmt::Write as _;
    let rows = assignments(config, roles);
    fn role<'a>(a: &Assignment<'a>) -> &'a str {
        a.role.unwrap_or("(other callers)")
    }
    let width = rows
        .iter()
        .map(|a| role(a).len())
        .max()
        .unwrap_or(0)
        .max(16);
    let mut out = String::new();
    for a in &rows {
        let shown = match a.credential {
            Some(n) => format!("{n} ({})", a.kind.unwrap_or("?")),
            None => "none (the caller's Authorization is removed)".to_owned(),
        };
        let _ = writeln!(out, "  {:<width$}  {shown}", role(a));
    }
    out
}

/// [`assignments`] as JSON, for `simgate check --json`: a list of
/// `{"role", "credential", "kind"}`, `null` where there is none.
pub(crate) fn describe_json(config: &CredentialsConfig, roles: &[String]) -> serde_json::Value {
    assignments(config, roles)
        .into_iter()
        .map(|a| serde_json::json!({"role": a.role, "credential": a.credential, "kind": a.kind}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn started_credentials_never_show_secrets_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "static-token-d3b6\n").unwrap();
        std::fs::write(dir.path().join("secret"), "client-secret-a1f9\n").unwrap();
        let text = r#"
[a]
kind = "bearer"
token_file = "token"
[b]
kind = "oauth2_client_credentials"
token_url = "https://idp.example/oauth/token"
client_id = "gw"
client_secret_file = "secret"
"#;
        let sections: BTreeMap<String, config::CredentialSection> = toml::from_str(text).unwrap();
        let file = dir.path().join("simgate.toml");
        let by_role = config::RoleCredentials(vec![("SIM_READER".into(), "a".into())]);
        let cfg =
            CredentialsConfig::validate(&sections, Some("b"), &by_role, None, &file, dir.path())
                .unwrap();
        // No runtime here: nothing is fetched, only secrets are read.
        let creds = Credentials::start(&cfg, &file, &crate::metrics::Metrics::new()).unwrap();
        let shown = format!("{creds:?} {cfg:?} {sections:?}");
        assert!(!shown.contains("static-token-d3b6"), "{shown}");
        assert!(!shown.contains("client-secret-a1f9"), "{shown}");
        assert!(matches!(
            creds.select(&["SIM_READER".into()]),
            Some((n, Started::Bearer(_))) if &**n == "a"
        ));
        assert!(matches!(creds.select(&[]), Some((n, Started::OAuth2(_))) if &**n == "b"));
        let text = describe(&cfg, &["ORG_ADMIN".into()]);
        assert!(
            text.contains("SIM_READER") && text.contains("a (bearer)"),
            "{text}"
        );
        assert!(text.contains("ORG_ADMIN") && text.contains("b (oauth2_client_credentials)"));
    }
}
