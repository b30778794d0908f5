//! A configuration generation: the config file and every file it names,
//! read and validated into the complete runtime configuration, before
//! anything is started.
//!
//! [`Generation::load`] reads the config file, the OpenAPI documents (and
//! compiles their schemas), the policy, the JWKS files and the TLS
//! certificate and key, and checks them against each other (the policy
//! names operations of the documents, …). It creates no file, opens no
//! socket and spawns no task: `simgate check` is exactly this step, and a
//! reload ([`crate::reload`]) builds a whole new generation this way before
//! anything changes. Starting a generation is [`crate::stack::Gateway`]'s
//! job. Every error names the file and the key at fault.
//!
//! A generation also lists the files it read with their SHA-256 (for the
//! audit record of a reload); secret files (the TLS key) are left out.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::audit::AuditConfig;
use crate::audit::record::FileDigest;
use crate::auth::AuthPlan;
use crate::authz::Policy;
use crate::config::{Config, Mode};
use crate::error::ConfigError;
use crate::rate_limit::config::RateLimitConfig;
use crate::routes::OperationTable;
use crate::validate::Validators;

/// One validated configuration, ready to start.
#[derive(Debug)]
pub struct Generation {
    config: Arc<Config>,
    /// The listener's certificate, when it speaks TLS.
    tls: Option<Arc<CertifiedKey>>,
    /// The security stack; `None` in passthrough mode.
    security: Option<Security>,
    /// Browser cross-origin requests; `None` unless `[cors]` allows origins.
    cors: Option<crate::cors::CorsGateLayer>,
    /// The files read, with their digests, in reading order.
    files: Vec<FileDigest>,
    /// Digest of `files`.
    sha256: String,
}

/// What gateway mode adds: everything the security layers are built from.
#[derive(Debug)]
pub(crate) struct Security {
    /// `[auth]`, with the JWKS files read.
    pub(crate) auth: AuthPlan,
    /// The OpenAPI operations.
    pub(crate) operations: Arc<OperationTable>,
    /// The authorization policy.
    pub(crate) policy: Arc<Policy>,
    /// The compiled request body checks.
    pub(crate) validators: Arc<Validators>,
    /// `[rate_limit]`, validated.
    pub(crate) rate_limit: RateLimitConfig,
    /// `[audit]`, validated.
    pub(crate) audit: AuditConfig,
}

impl Generation {
    /// Reads and validates the config file at `path` and every file it
    /// names.
    pub fn load(path: &Path) -> Result<Generation, ConfigError> {
        Self::build(Config::load(path)?)
    }

    /// Reads and validates every file `config` names.
    pub fn build(config: Config) -> Result<Generation, ConfigError> {
        let path = &config.path;
        let base = &config.base_dir;
        let tls = match &config.server.tls {
            Some((cert, key)) => Some(crate::tls::load(path, cert, key)?),
            None => None,
        };
        let security = match config.server.mode {
            Mode::Passthrough => None,
            Mode::Gateway => {
                let sections = &config.sections;
                let auth = AuthPlan::load(&sections.auth, path, base)?;
                if auth.is_empty() {
                    return Err(ConfigError::at(
                        path,
                        "auth.issuers",
                        "[auth] needs at least one issuer",
                    ));
                }
                let operations = OperationTable::load(&sections.api, path, base)?;
                let policy = Policy::load(&sections.authz, path, base, &operations)?;
                let validators = Validators::compile_with(
                    operations.operations(),
                    |idx| Some(operations.document(idx)),
                    &sections.validation,
                    path,
                    &config
                        .upstream
                        .headers
                        .iter()
                        .map(|(n, _)| n.to_string())
                        .collect::<Vec<_>>(),
                )?;
                Some(Security {
                    auth,
                    operations,
                    policy,
                    validators,
                    rate_limit: sections.rate_limit.validate(path)?,
                    audit: AuditConfig::from_section(&sections.audit, path, base)?,
                })
            }
        };
        let cors = crate::cors::CorsGateLayer::from_section(&config.sections.cors, path)?;
        if security.is_none() {
            // Validated in passthrough mode too, as before.
            config.sections.rate_limit.validate(path)?;
        }
        let mut read: Vec<&Path> = vec![path];
        if let Some((cert, _key)) = &config.server.tls {
            read.push(cert);
        }
        if let Some(s) = &security {
            read.extend(s.operations.documents().iter().map(|d| d.path.as_path()));
            read.push(s.policy.path());
            read.extend(s.auth.jwks_files());
        }
        let files = digests(&read);
        let sha256 = combined(&files);
        Ok(Generation {
            config: Arc::new(config),
            tls,
            security,
            cors,
            files,
            sha256,
        })
    }

    /// The validated config file.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The OpenAPI operations (`None` in passthrough mode).
    pub fn operations(&self) -> Option<&Arc<OperationTable>> {
        self.security.as_ref().map(|s| &s.operations)
    }

    /// The authorization policy (`None` in passthrough mode).
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.security.as_ref().map(|s| &s.policy)
    }

    /// The compiled request body checks (`None` in passthrough mode).
    pub fn validators(&self) -> Option<&Arc<Validators>> {
        self.security.as_ref().map(|s| &s.validators)
    }

    /// The files read, each with its SHA-256.
    pub fn files(&self) -> &[FileDigest] {
        &self.files
    }

    /// One SHA-256 over [`Generation::files`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The listener's certificate, when it speaks TLS.
    pub(crate) fn tls(&self) -> Option<&Arc<CertifiedKey>> {
        self.tls.as_ref()
    }

    /// The CORS layer (`None` unless `[cors]` allows origins).
    pub(crate) fn cors(&self) -> Option<&crate::cors::CorsGateLayer> {
        self.cors.as_ref()
    }

    /// The security stack's parts (`None` in passthrough mode).
    pub(crate) fn security(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    /// The keys whose change needs a restart and that differ in `next`,
    /// named as in the file. Empty when `next` can replace `self` live.
    pub fn restart_required(&self, next: &Generation) -> Vec<&'static str> {
        let mut keys = crate::config::restart_required(&self.config, &next.config);
        if let (Some(a), Some(b)) = (&self.security, &next.security) {
            // Compared in memory only: the settings may hold a password.
            if format!("{:?}", a.rate_limit.store) != format!("{:?}", b.rate_limit.store) {
                keys.push("rate_limit.store");
            }
            let (a, b) = (&a.audit, &b.audit);
            if a.path != b.path {
                keys.push("audit.path");
            }
            if a.flush != b.flush {
                keys.push("audit.flush");
            }
            if a.rotate_max_bytes != b.rotate_max_bytes {
                keys.push("audit.rotate_max_bytes");
            }
            if a.rotate_daily != b.rotate_daily {
                keys.push("audit.rotate_daily");
            }
        }
        keys
    }
}

/// The digests of `paths` (a file that cannot be read has none).
pub(crate) fn digests(paths: &[&Path]) -> Vec<FileDigest> {
    paths
        .iter()
        .map(|p| FileDigest {
            path: p.display().to_string(),
            sha256: std::fs::read(p)
                .ok()
                .map(|b| hex::encode(Sha256::digest(&b))),
        })
        .collect()
}

/// One digest over a list of file digests (each path and digest, in order).
pub(crate) fn combined(files: &[FileDigest]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.sha256.as_deref().unwrap_or("-").as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn passthrough_reads_only_the_config_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "simgate.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\nmode = \"passthrough\"\n\
             [upstream]\nurl = \"http://127.0.0.1:1\"\n[audit]\npath = \"nowhere/a.jsonl\"\n",
        );
        let g = Generation::load(&path).unwrap();
        assert!(g.operations().is_none());
        assert_eq!(g.files().len(), 1);
        assert_eq!(g.files()[0].path, path.display().to_string());
        assert_eq!(g.sha256().len(), 64);
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn the_digest_follows_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a", "one");
        let first = combined(&digests(&[&a]));
        write(dir.path(), "a", "two");
        let second = combined(&digests(&[&a]));
        assert_ne!(first, second);
        let missing = digests(&[&dir.path().join("missing")]);
        assert_eq!(missing[0].sha256, None);
    }
}
