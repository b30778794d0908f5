//! The [`Authenticator`]: the configured issuers, their keys and the
//! verified-token cache, turning a bearer token into a [`Principal`].
//!
//! An [`AuthPlan`] is `[auth]` validated with its JWKS files read (pure, so
//! a reload can build and check one before using it);
//! [`Authenticator::start`] turns it into a working authenticator, reusing
//! what the replaced generation's authenticator had that is still valid.
//!
//! Order of work for a token: the cache (by hash); then the shape and header
//! ([`verify::parse`]); the issuer chosen by the exact `iss`; the algorithm
//! against that issuer's allow-list; the key by `kid` from the issuer's key
//! set (an unknown `kid` of a URL issuer may trigger one refetch, see
//! [`super::source`]); the signature; the claims; the principal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use super::Principal;
use super::cache::{Entry, TokenHash, VerifiedCache};
use super::clock::{Clock, SystemClock};
use super::config::{AuthConfig, AuthSection, IssuerConfig, JwksLocation};
use super::jwks::{KeySet, VerifyingKey};
use super::source::KeySource;
use super::verify::{self, Reject};
use crate::error::ConfigError;
use crate::health::{CheckFuture, ReadinessCheck};
use crate::metrics::Metrics;

/// Verifies bearer tokens against the configured issuers.
#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    cache: Option<Arc<VerifiedCache>>,
    clock: Arc<dyn Clock>,
    max_token_bytes: usize,
    metrics: Metrics,
}

/// One trusted issuer and its keys.
#[derive(Debug)]
struct Issuer {
    config: IssuerConfig,
    keys: Arc<KeySource>,
    /// Identifies `config`: cached tokens of an issuer whose settings a
    /// reload changed are dropped.
    stamp: u64,
}

/// `[auth]` validated, with every `jwks_file` read and parsed: what a
/// configuration generation holds. Building it touches nothing (no task,
/// no fetch); [`Authenticator::start`] puts it to work.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    config: AuthConfig,
    /// The keys of each issuer with a `jwks_file` (`None` for a URL).
    file_keys: Vec<Option<Arc<KeySet>>>,
    config_path: PathBuf,
}

impl AuthPlan {
    /// Validates `[auth]` and reads its JWKS files; errors name the file
    /// and the key.
    pub fn load(
        section: &AuthSection,
        config_path: &Path,
        base_dir: &Path,
    ) -> Result<AuthPlan, ConfigError> {
        let config = section.validate(config_path, base_dir)?;
        let mut file_keys = Vec::with_capacity(config.issuers.len());
        for ic in &config.issuers {
            file_keys.push(match &ic.jwks {
                JwksLocation::File(path) => Some(Arc::new(read_jwks(path).map_err(|why| {
                    ConfigError::at(config_path, &format!("{}.jwks_file", ic.key), why)
                })?)),
                JwksLocation::Url(_) => None,
            });
        }
        Ok(AuthPlan {
            config,
            file_keys,
            config_path: config_path.to_path_buf(),
        })
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.config.issuers.is_empty()
    }

    /// The JWKS files read.
    pub fn jwks_files(&self) -> impl Iterator<Item = &Path> {
        self.config.issuers.iter().filter_map(|i| match &i.jwks {
            JwksLocation::File(p) => Some(p.as_path()),
            JwksLocation::Url(_) => None,
        })
    }
}

impl Authenticator {
    /// Builds the authenticator from `[auth]` with the system clock. JWKS
    /// files are read now (and polled when called inside a tokio runtime);
    /// JWKS URLs are fetched in the background (when
    /// called inside a tokio runtime) and the issuer is not ready until
    /// its keys arrive.
    pub fn from_config(
        section: &AuthSection,
        config_path: &Path,
        base_dir: &Path,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        Self::with_clock(section, config_path, base_dir, Arc::new(SystemClock))
    }

    /// Like [`Authenticator::from_config`], counting JWKS fetches, key
    /// counts and token-cache look-ups in `metrics`.
    pub fn with_metrics(
        section: &AuthSection,
        config_path: &Path,
        base_dir: &Path,
        metrics: Metrics,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        Self::build(
            section,
            config_path,
            base_dir,
            Arc::new(SystemClock),
            metrics,
        )
    }

    /// Like [`Authenticator::from_config`], reading time from `clock`.
    pub fn with_clock(
        section: &AuthSection,
        config_path: &Path,
        base_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        Self::build(section, config_path, base_dir, clock, Metrics::new())
    }

    fn build(
        section: &AuthSection,
        config_path: &Path,
        base_dir: &Path,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        let plan = AuthPlan::load(section, config_path, base_dir)?;
        Self::start(&plan, None, clock, metrics)
    }

    /// Puts `plan` to work: starts the polling of its JWKS files and the
    /// refresh of its JWKS URLs (inside a tokio runtime). With `previous`
    /// (the authenticator of the generation being replaced), a JWKS URL
    /// with unchanged settings keeps its keys and refresh task, and the
    /// verified-token cache is kept (if its size did not change) except for
    /// the entries of issuers whose settings or keys changed.
    pub fn start(
        plan: &AuthPlan,
        previous: Option<&Authenticator>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Arc<Authenticator>, ConfigError> {
        let config = &plan.config;
        let mut issuers = Vec::with_capacity(config.issuers.len());
        for (ic, file_keys) in config.issuers.iter().zip(&plan.file_keys) {
            let keys = match (&ic.jwks, file_keys) {
                (JwksLocation::File(path), Some(set)) => {
                    metrics.jwks_keys(&ic.issuer, set.len());
                    let source = Arc::new(KeySource::from_set(set.clone()));
                    source.watch_file(path.clone(), config.jwks_file_poll);
                    source
                }
                (JwksLocation::Url(remote), _) => {
                    let kept = previous.and_then(|p| {
                        p.issuers.iter().find_map(|i| match &i.config.jwks {
                            JwksLocation::Url(r) if r == remote && i.config.issuer == ic.issuer => {
                                Some(i.keys.clone())
                            }
                            _ => None,
                        })
                    });
                    match kept {
                        Some(source) => source,
                        None => KeySource::start(&ic.issuer, remote, metrics.clone()).map_err(
                            |why| {
                                ConfigError::at(
                                    &plan.config_path,
                                    &format!("{}.jwks_url", ic.key),
                                    why,
                                )
                            },
                        )?,
                    }
                }
                (JwksLocation::File(_), None) => {
                    return Err(ConfigError::at(
                        &plan.config_path,
                        &format!("{}.jwks_file", ic.key),
                        "keys not read",
                    ));
                }
            };
            issuers.push(Issuer {
                stamp: stamp(ic),
                config: ic.clone(),
                keys,
            });
        }
        let cache = match previous.and_then(|p| p.cache.as_ref()) {
            Some(kept) if kept.capacity() == config.cache_size => {
                kept.retain(|e| {
                    issuers.get(e.issuer).is_some_and(|i| {
                        i.stamp == e.stamp && i.keys.current().fingerprint() == &e.keys
                    })
                });
                Some(kept.clone())
            }
            _ => VerifiedCache::new(config.cache_size).map(Arc::new),
        };
        Ok(Arc::new(Authenticator {
            issuers,
            cache,
            clock,
            max_token_bytes: config.max_token_bytes,
            metrics,
        }))
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Verifies `token` and returns who it describes.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, Reject> {
        let now = self.clock.now();
        let hash = self.cache.as_ref().map(|_| VerifiedCache::hash(token));
        if let Some(hit) = hash.as_ref().and_then(|h| self.cached(h, now)) {
            self.metrics.token_cache(true);
            return Ok(hit.principal);
        }
        if self.cache.is_some() {
            self.metrics.token_cache(false);
        }
        let parsed = verify::parse(token, self.max_token_bytes)?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| Some(i.config.issuer.as_str()) == parsed.issuer())
            .ok_or(Reject::UnknownIssuer)?;
        if !issuer.config.algorithms.contains(&parsed.alg) {
            return Err(Reject::AlgorithmNotAllowed);
        }
        let key: Arc<VerifyingKey> = issuer
            .keys
            .select(parsed.kid.as_deref(), parsed.alg)
            .await?;
        // The set the key came from (taken after `select`, which may have
        // refetched): a later change of the set invalidates the entry.
        let keys = *issuer.keys.current().fingerprint();
        key.verify(parsed.message.as_bytes(), parsed.signature, parsed.alg)?;
        let exp = verify::check_claims(&parsed.claims, &issuer.config, now)?;
        let principal = Arc::new(verify::principal(&parsed.claims, &issuer.config)?);
        if let (Some(cache), Some(hash)) = (&self.cache, hash)
            && now < exp
        {
            cache.insert(
                hash,
                Entry {
                    principal: principal.clone(),
                    issuer: index,
                    stamp: issuer.stamp,
                    keys,
                    key: key.fingerprint,
                    exp,
                },
            );
        }
        Ok(principal)
    }

    /// The cache entry of `hash`, if still valid at `now` and its issuer's
    /// settings and key set are the ones it was verified with.
    fn cached(&self, hash: &TokenHash, now: i64) -> Option<Entry> {
        self.cache.as_ref()?.get(hash, now, |e| {
            self.issuers.get(e.issuer).is_some_and(|i| {
                let keys = i.keys.current();
                i.stamp == e.stamp && keys.fingerprint() == &e.keys && keys.contains(&e.key)
            })
        })
    }

    /// Whether `token` is in the verified-token cache (and would be accepted
    /// from it, without a signature check).
    pub fn is_cached(&self, token: &str) -> bool {
        self.cache.is_some()
            && self
                .cached(&VerifiedCache::hash(token), self.clock.now())
                .is_some()
    }

    /// `Ok` when every issuer has keys, else the first issuer without.
    pub fn ready(&self) -> Result<(), String> {
        match self.issuers.iter().find(|i| i.keys.current().is_empty()) {
            None => Ok(()),
            Some(i) => Err(format!("issuer {} has no keys", i.config.issuer)),
        }
    }
}

impl crate::rate_limit::auth_failures::VerifiedTokens for Authenticator {
    fn is_verified(&self, token: &str) -> bool {
        self.is_cached(token)
    }
}

/// Reads and parses a JWKS file; it must hold at least one usable key.
fn read_jwks(path: &Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set = KeySet::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    for why in set.skipped() {
        tracing::warn!(file = %path.display(), "JWKS key skipped: {why}");
    }
    if set.is_empty() {
        return Err(format!("{}: no usable signature keys", path.display()));
    }
    Ok(set)
}

/// Identifies an issuer's settings (every field, the keys' location too).
fn stamp(config: &IssuerConfig) -> u64 {
    let digest = sha2::Sha256::digest(format!("{config:?}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// `/readyz` is not ready until every issuer has keys.
#[derive(Debug)]
pub struct IssuersHaveKeys(pub Arc<Authenticator>);

impl ReadinessCheck for IssuersHaveKeys {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(std::future::ready(self.0.ready()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::clock::ManualClock;
    use crate::auth::keys::generate_es256;
    use crate::auth::mint::mint;
    use serde_json::json;

    const T: i64 = 1_700_000_000;

    fn setup(
        leeway: u64,
    ) -> (
        Arc<Authenticator>,
        Arc<ManualClock>,
        String,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_es256("e1").unwrap();
        std::fs::write(dir.path().join("jwks.json"), key.jwks().to_string()).unwrap();
        let section: AuthSection = toml::from_str(&format!(
            "[[issuers]]\nissuer = \"https://idp\"\njwks_file = \"jwks.json\"\n\
             algorithms = [\"ES256\"]\nleeway_seconds = {leeway}\n"
        ))
        .unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let auth =
            Authenticator::with_clock(&section, Path::new("t.toml"), dir.path(), clock.clone())
                .unwrap();
        let token = mint(
            &key,
            &json!({"iss": "https://idp", "sub": "s", "exp": T + 100}),
        )
        .unwrap();
        (auth, clock, token, dir)
    }

    #[tokio::test]
    async fn cache_never_accepts_a_token_at_or_after_exp() {
        let (auth, clock, token, _dir) = setup(0);
        assert_eq!(auth.authenticate(&token).await.unwrap().subject, "s");
        assert_eq!(auth.cache.as_ref().unwrap().len(), 1);
        clock.set(T + 99);
        assert!(auth.authenticate(&token).await.is_ok());
        clock.set(T + 100);
        assert_eq!(
            auth.authenticate(&token).await.unwrap_err(),
            Reject::Expired
        );
        // The stale entry is gone and an expired token is never cached.
        assert_eq!(auth.cache.as_ref().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn leeway_is_granted_by_verification_not_by_the_cache() {
        let (auth, clock, token, _dir) = setup(30);
        assert!(auth.authenticate(&token).await.is_ok());
        clock.set(T + 129);
        assert!(auth.authenticate(&token).await.is_ok());
        assert_eq!(auth.cache.as_ref().unwrap().len(), 0);
        clock.set(T + 130);
        assert_eq!(
            auth.authenticate(&token).await.unwrap_err(),
            Reject::Expired
        );
    }

    #[tokio::test]
    async fn readiness_and_unknown_issuers() {
        let (auth, _clock, _token, _dir) = setup(0);
        assert_eq!(auth.ready(), Ok(()));
        assert!(IssuersHaveKeys(auth.clone()).check().await.is_ok());
        let other = generate_es256("e1").unwrap();
        let t = mint(
            &other,
            &json!({"iss": "https://other", "sub": "s", "exp": T + 100}),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(&t).await.unwrap_err(),
            Reject::UnknownIssuer
        );
        let t = mint(
            &other,
            &json!({"iss": "https://idp", "sub": "s", "exp": T + 100}),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(&t).await.unwrap_err(),
            Reject::BadSignature
        );
    }
}
