//! `[audit]`: the audit trail file and its guarantees.
//!
//! [`AuditSection`] is what the file says; [`AuditConfig`] is what the audit
//! trail runs with, after validation (paths resolved against the config
//! file's folder).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;

/// The default trail file, relative to the config file.
pub const DEFAULT_PATH: &str = "audit/audit.jsonl";

/// Field names always redacted, whatever the config says (matched
/// case-insensitively, ignoring `_` and `-`). `attributes` is the
/// integration's credential bag and is always redacted as a whole.
pub const DEFAULT_REDACT: &[&str] = &[
    "attributes",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "private_key",
    "credentials",
    "authorization",
];

/// `[audit]`: the audit trail file and its guarantees.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The trail file (JSON Lines), relative to the config file.
    /// Default `audit/audit.jsonl`.
    pub path: Option<String>,
    /// `always` (default): fsync each record before anything waits on it
    /// goes on; `batch`: group-commit records that arrive together, one fsync
    /// for the group, still before any of them goes on.
    pub flush: Option<String>,
    /// Start a new file once the current one would grow past this many
    /// bytes (absent or 0: no size rotation).
    pub rotate_max_bytes: Option<u64>,
    /// Start a new file when the UTC day changes.
    #[serde(default)]
    pub rotate_daily: bool,
    /// Field names redacted in addition to [`DEFAULT_REDACT`].
    #[serde(default)]
    pub redact_fields: Vec<String>,
    /// Forward mutations even when their intent record cannot be written
    /// (default false: refuse them with 503). Logged loudly at start.
    #[serde(default)]
    pub fail_open: bool,
    /// Record reads (GET and other safe methods) too, outcome only.
    #[serde(default)]
    pub record_reads: bool,
}

/// When records reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// One fsync per record.
    Always,
    /// One fsync per group of records that were waiting together.
    Batch,
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The active trail file.
    pub path: PathBuf,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Size rotation threshold in bytes, if any.
    pub rotate_max_bytes: Option<u64>,
    /// Daily (UTC) rotation.
    pub rotate_daily: bool,
    /// Every redacted field name (defaults included), as configured.
    pub redact_fields: Vec<String>,
    /// Forward even when the intent cannot be written.
    pub fail_open: bool,
    /// Record reads too.
    pub record_reads: bool,
}

impl AuditConfig {
    /// A config with every default, writing to `path`.
    pub fn with_path(path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            path: path.into(),
            flush: FlushPolicy::Always,
            rotate_max_bytes: None,
            rotate_daily: false,
            redact_fields: DEFAULT_REDACT.iter().map(|s| (*s).to_owned()).collect(),
            fail_open: false,
            record_reads: false,
        }
    }

    /// Validates `section` from the config file `file`, resolving the trail
    /// path against `base_dir`.
    pub fn from_section(
        section: &AuditSection,
        file: &Path,
        base_dir: &Path,
    ) -> Result<AuditConfig, ConfigError> {
        let raw = section.path.as_deref().unwrap_or(DEFAULT_PATH);
        if raw.trim().is_empty() || raw.ends_with('/') {
            return Err(ConfigError::at(file, "audit.path", "must name a file"));
        }
        let path = crate::config::resolve(base_dir, Path::new(raw));
        let flush = match section.flush.as_deref() {
            None | Some("always") => FlushPolicy::Always,
            Some("batch") => FlushPolicy::Batch,
            Some(other) => {
                return Err(ConfigError::at(
                    file,
                    "audit.flush",
                    format!("{other:?}: expected \"always\" or \"batch\""),
                ));
            }
        };
        let mut redact_fields: Vec<String> =
            DEFAULT_REDACT.iter().map(|s| (*s).to_owned()).collect();
        for name in &section.redact_fields {
            if name.trim().is_empty() {
                return Err(ConfigError::at(
                    file,
                    "audit.redact_fields",
                    "field names must not be empty",
                ));
            }
            redact_fields.push(name.clone());
        }
        Ok(AuditConfig {
            path,
            flush,
            rotate_max_bytes: section.rotate_max_bytes.filter(|n| *n > 0),
            rotate_daily: section.rotate_daily,
            redact_fields,
            fail_open: section.fail_open,
            record_reads: section.record_reads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditConfig, ConfigError> {
        let section: AuditSection = toml::from_str(text).unwrap();
        AuditConfig::from_section(
            &section,
            Path::new("/etc/simgate/simgate.toml"),
            Path::new("/etc/simgate"),
        )
    }

    #[test]
    fn defaults_resolve_against_the_config_folder() {
        let c = parse("").unwrap();
        assert_eq!(c.path, PathBuf::from("/etc/simgate/audit/audit.jsonl"));
        assert_eq!(c.flush, FlushPolicy::Always);
        assert!(!c.fail_open && !c.record_reads && !c.rotate_daily);
        assert!(c.redact_fields.iter().any(|f| f == "attributes"));
    }

    #[test]
    fn configured_fields_add_to_the_defaults() {
        let c =
            parse("flush = \"batch\"\nredact_fields = [\"dbUrl\"]\nrotate_max_bytes = 0").unwrap();
        assert_eq!(c.flush, FlushPolicy::Batch);
        assert!(c.redact_fields.iter().any(|f| f == "dbUrl"));
        assert!(c.redact_fields.iter().any(|f| f == "password"));
        assert_eq!(c.rotate_max_bytes, None);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("flush = \"sometimes\"").unwrap_err();
        assert!(e.0.contains("audit.flush"), "{e}");
        let e = parse("path = \"\"").unwrap_err();
        assert!(e.0.contains("audit.path"), "{e}");
        let e = parse("redact_fields = [\" \"]").unwrap_err();
        assert!(e.0.contains("audit.redact_fields"), "{e}");
        assert!(toml::from_str::<AuditSection>("flsh = 1").is_err());
    }
}
