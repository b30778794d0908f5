//! `[upstream.credentials.NAME]`, `upstream.credential` and
//! `upstream.credential_by_role`: the serde mirror and its validation.
//!
//! Validation is pure: it reads no secret and starts nothing, so `simgate
//! check` and a reload can build a whole config before anything runs
//! ([`super::Credentials::start`] is the step that reads secrets and fetches
//! tokens). It refuses inline secrets (`client_secret`, `token`), unknown
//! kinds and auth methods, a `token_url` that is not `http(s)://`, a
//! credential name that is not defined, and `upstream.authorization` written
//! together with named credentials.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};

use super::secret::SecretSource;
use crate::config::{duration, resolve};
use crate::error::ConfigError;

/// One `[upstream.credentials.NAME]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSection {
    /// `oauth2_client_credentials`, `bearer` or `forward`.
    pub kind: String,
    /// OAuth2: the token endpoint, e.g. `https://tenant.api.identitynow.com/oauth/token`.
    pub token_url: Option<String>,
    /// OAuth2: the client id.
    pub client_id: Option<String>,
    /// OAuth2: file holding the client secret (relative to the config file).
    pub client_secret_file: Option<String>,
    /// OAuth2: environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Refused: secrets never live in the config file.
    pub client_secret: Option<Refused>,
    /// OAuth2: the `scope` to ask for (optional).
    pub scope: Option<String>,
    /// OAuth2: `client_secret_post` (default) or `client_secret_basic`.
    pub auth_method: Option<String>,
    /// OAuth2: extra PEM CA certificates trusted for the token endpoint,
    /// besides the system roots.
    pub ca_file: Option<String>,
    /// OAuth2: time allowed for one token request (default `10s`).
    pub timeout: Option<String>,
    /// OAuth2: longest wait between retries of a failed refresh (default `30s`).
    pub retry_max: Option<String>,
    /// Bearer: file holding the token.
    pub token_file: Option<String>,
    /// Bearer: environment variable holding the token.
    pub token_env: Option<String>,
    /// Refused: tokens never live in the config file.
    pub token: Option<Refused>,
}

/// A value that is accepted by the parser only to be refused with a clear
/// message; its content is never kept (so `Debug` cannot show it).
#[derive(Debug, Default)]
pub struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Refused)
    }
}

/// `credential_by_role`, in the order written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoleCredentials(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for RoleCredentials {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = RoleCredentials;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of role = \"credential name\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((role, name)) = map.next_entry::<String, String>()? {
                    entries.push((role, name));
                }
                Ok(RoleCredentials(entries))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the form-urlencoded id and secret.
    Basic,
}

/// An OAuth2 client-credentials client, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuth2Spec {
    pub(crate) token_url: Uri,
    pub(crate) client_id: String,
    pub(crate) secret: SecretSource,
    pub(crate) scope: Option<String>,
    pub(crate) auth_method: AuthMethod,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) timeout: Duration,
    pub(crate) retry_max: Duration,
}

/// What a named credential is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialSpec {
    /// Short-lived tokens from a client-credentials grant.
    OAuth2(Box<OAuth2Spec>),
    /// A static bearer token from a file or the environment.
    Bearer(SecretSource),
    /// The caller's own `Authorization`, sent as received.
    Forward,
}

impl CredentialSpec {
    /// The secret this credential reads when it starts, with its key.
    pub(crate) fn secret(&self) -> Option<(&'static str, &SecretSource)> {
        match self {
            CredentialSpec::OAuth2(spec) => Some(("client_secret_file", &spec.secret)),
            CredentialSpec::Bearer(source) => Some(("token_file", source)),
            CredentialSpec::Forward => None,
        }
    }

    /// The `kind` as written in the config.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            CredentialSpec::OAuth2(_) => "oauth2_client_credentials",
            CredentialSpec::Bearer(_) => "bearer",
            CredentialSpec::Forward => "forward",
        }
    }
}

/// The validated upstream credentials: a value, nothing started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsConfig {
    /// Named credentials, in name order.
    pub(crate) named: Vec<(String, CredentialSpec)>,
    /// The credential of callers no `by_role` entry matches; `None`: the
    /// caller's `Authorization` is removed and nothing is added.
    pub(crate) default: Option<String>,
    /// `credential_by_role`, in the order written.
    pub(crate) by_role: Vec<(String, String)>,
}

impl CredentialsConfig {
    /// Validates the credential keys of `[upstream]`. `legacy_forward` is
    /// `upstream.authorization = "forward"`; `authorization_set` whether
    /// `upstream.authorization` was written at all.
    pub(crate) fn validate(
        sections: &std::collections::BTreeMap<String, CredentialSection>,
        default: Option<&str>,
        by_role: &RoleCredentials,
        legacy: Option<&str>,
        file: &Path,
        base: &Path,
    ) -> Result<CredentialsConfig, ConfigError> {
        let mut named = Vec::new();
        for (name, section) in sections {
            named.push((name.clone(), spec(name, section, file, base)?));
        }
        let mut config = CredentialsConfig {
            named,
            default: default.map(str::to_owned),
            by_role: by_role.0.clone(),
        };
        if let Some(legacy) = legacy {
            if default.is_some() || !by_role.0.is_empty() || !sections.is_empty() {
                return Err(ConfigError::at(
                    file,
                    "upstream.authorization",
                    "cannot be combined with named upstream credentials; remove it and write \
                     `credential = \"caller\"` with `[upstream.credentials.caller] kind = \"forward\"` \
                     to send the caller's token, or leave `credential` unset to strip it",
                ));
            }
            if legacy == "forward" {
                // The old key keeps working: the same as a `forward` credential.
                config
                    .named
                    .push(("forward".into(), CredentialSpec::Forward));
                config.default = Some("forward".into());
            }
        }
        let defined = |name: &str| config.named.iter().any(|(n, _)| n == name);
        if let Some(d) = &config.default
            && !defined(d)
        {
            return Err(ConfigError::at(
                file,
                "upstream.credential",
                format!("{d:?} is not defined under [upstream.credentials]"),
            ));
        }
        for (role, name) in &config.by_role {
            if !defined(name) {
                return Err(ConfigError::at(
                    file,
                    &format!("upstream.credential_by_role.{role}"),
                    format!("{name:?} is not defined under [upstream.credentials]"),
                ));
            }
        }
        Ok(config)
    }

    /// The credential name for a caller with `roles`: the first
    /// `credential_by_role` entry (in the order written) naming one of them,
    /// else the default. `None`: no credential.
    pub(crate) fn select<'a>(&'a self, roles: &[String]) -> Option<&'a str> {
        self.by_role
            .iter()
            .find(|(role, _)| roles.iter().any(|r| r == role))
            .map(|(_, name)| name.as_str())
            .or(self.default.as_deref())
    }

    /// The credential name used for a caller holding only `role`.
    pub fn credential_for_role(&self, role: &str) -> Option<&str> {
        self.select(&[role.to_owned()])
    }

    /// The kind of the credential `name`.
    pub fn kind_of(&self, name: &str) -> Option<&'static str> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.kind())
    }

    /// Whether no credential is configured at all.
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

fn spec(
    name: &str,
    s: &CredentialSection,
    file: &Path,
    base: &Path,
) -> Result<CredentialSpec, ConfigError> {
    let key = |k: &str| format!("upstream.credentials.{name}.{k}");
    let err = |k: &str, why: &str| ConfigError::at(file, &key(k), why);
    if s.client_secret.is_some() {
        return Err(err(
            "client_secret",
            "inline secrets are refused: write client_secret_file = \"path\" (mode 600) or client_secret_env = \"VAR\"",
        ));
    }
    if s.token.is_some() {
        return Err(err(
            "token",
            "inline tokens are refused: write token_file = \"path\" (mode 600) or token_env = \"VAR\"",
        ));
    }
    let secret_source = |file_key: &str,
                         file_val: &Option<String>,
                         env_key: &str,
                         env_val: &Option<String>|
     -> Result<SecretSource, ConfigError> {
        match (file_val, env_val) {
            (Some(f), None) => Ok(SecretSource::File(resolve(base, Path::new(f)))),
            (None, Some(e)) if !e.is_empty() => Ok(SecretSource::Env(e.clone())),
            (Some(_), Some(_)) => Err(err(
                file_key,
                &format!("give {file_key} or {env_key}, not both"),
            )),
            _ => Err(err(
                file_key,
                &format!("{file_key} or {env_key} is required"),
            )),
        }
    };
    let oauth_only = [
        ("token_url", s.token_url.is_some()),
        ("client_id", s.client_id.is_some()),
        ("client_secret_file", s.client_secret_file.is_some()),
        ("client_secret_env", s.client_secret_env.is_some()),
        ("scope", s.scope.is_some()),
        ("auth_method", s.auth_method.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("timeout", s.timeout.is_some()),
        ("retry_max", s.retry_max.is_some()),
    ];
    let bearer_only = [
        ("token_file", s.token_file.is_some()),
        ("token_env", s.token_env.is_some()),
    ];
    let refuse_keys = |keys: &[(&str, bool)]| -> Result<(), ConfigError> {
        match keys.iter().find(|(_, set)| *set) {
            Some((k, _)) => Err(err(k, &format!("not a key of kind = {:?}", s.kind))),
            None => Ok(()),
        }
    };
    match s.kind.as_str() {
        "forward" => {
            refuse_keys(&oauth_only)?;
            refuse_keys(&bearer_only)?;
            Ok(CredentialSpec::Forward)
        }
        "bearer" => {
            refuse_keys(&oauth_only)?;
            Ok(CredentialSpec::Bearer(secret_source(
                "token_file",
                &s.token_file,
                "token_env",
                &s.token_env,
            )?))
        }
        "oauth2_client_credentials" => {
            refuse_keys(&bearer_only)?;
            let url = s
                .token_url
                .as_deref()
                .ok_or_else(|| err("token_url", "is required"))?;
            let token_url: Uri = url
                .parse()
                .map_err(|e| err("token_url", &format!("{url:?}: {e}")))?;
            if !matches!(token_url.scheme_str(), Some("http" | "https"))
                || token_url.authority().is_none()
            {
                return Err(err(
                    "token_url",
                    "must be an http:// or https:// URL with a host",
                ));
            }
            let client_id = s
                .client_id
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| err("client_id", "is required"))?;
            let auth_method = match s.auth_method.as_deref() {
                None | Some("client_secret_post") => AuthMethod::Post,
                Some("client_secret_basic") => AuthMethod::Basic,
                Some(other) => {
                    return Err(err(
                        "auth_method",
                        &format!(
                            "{other:?}: expected \"client_secret_post\" or \"client_secret_basic\""
                        ),
                    ));
                }
            };
            Ok(CredentialSpec::OAuth2(Box::new(OAuth2Spec {
                token_url,
                client_id,
                secret: secret_source(
                    "client_secret_file",
                    &s.client_secret_file,
                    "client_secret_env",
                    &s.client_secret_env,
                )?,
                scope: s.scope.clone().filter(|s| !s.is_empty()),
                auth_method,
                ca_file: s.ca_file.as_deref().map(|p| resolve(base, Path::new(p))),
                timeout: duration(
                    s.timeout.as_deref(),
                    Duration::from_secs(10),
                    file,
                    &key("timeout"),
                )?,
                retry_max: duration(
                    s.retry_max.as_deref(),
                    Duration::from_secs(30),
                    file,
                    &key("retry_max"),
                )?,
            })))
        }
        other => Err(err(
            "kind",
            &format!(
                "{other:?}: expected \"oauth2_client_credentials\", \"bearer\" or \"forward\""
            ),
        )),
    }
}
