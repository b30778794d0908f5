//! Secrets read at start: client secrets and static bearer tokens.
//!
//! A [`Secret`] never shows its value: `Debug` and `Display` print
//! `[redacted]`. Values come from a file or an environment variable, never
//! from the config file itself. A secret file readable by group or others
//! is used, with a start-up warning naming the file (not its contents).

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A value that must never be logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps `value` (surrounding whitespace, such as a final newline, removed).
    pub(crate) fn new(value: &str) -> Secret {
        Secret(value.trim().to_owned())
    }

    /// The value, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A SHA-256 over the secrets a set of credentials started with, so that a
/// reload can tell whether one changed (a rotated client secret). Never
/// shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct SecretsDigest([u8; 32]);

impl fmt::Debug for SecretsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsDigest([redacted])")
    }
}

/// Builds a [`SecretsDigest`], one named secret at a time.
#[derive(Default)]
pub(crate) struct Digester(Sha256);

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digester([redacted])")
    }
}

impl Digester {
    /// Adds credential `name`'s secret (each part length-prefixed, so no two
    /// lists of secrets give the same input).
    pub(crate) fn add(&mut self, name: &str, secret: &Secret) {
        for part in [name, secret.expose()] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part.as_bytes());
        }
    }

    /// The digest of everything added.
    pub(crate) fn finish(self) -> SecretsDigest {
        SecretsDigest(self.0.finalize().into())
    }
}

/// Where a secret comes from (this is what the config holds: no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// A file, resolved against the config's folder.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl SecretSource {
    /// Reads the secret. The error names the file or variable, never a value.
    pub(crate) fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretSource::File(path) => {
                warn_if_shared(path);
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
        };
        let secret = Secret::new(&value);
        if secret.0.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(secret)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(n) => write!(f, "environment variable {n}"),
        }
    }
}

/// Warns when a secret file can be read by its group or by others.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o044 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "secret file is readable by group or others; chmod 600 it"
                );
            }
        }
    }
}

/// Whether a secret file can be read by its group or others.
#[cfg(all(test, unix))]
fn is_shared(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2\n");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[cfg(unix)]
    #[test]
    fn reads_files_and_names_them_in_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(is_shared(&path));
        let src = SecretSource::File(path.clone());
        assert_eq!(src.read().unwrap().expose(), "abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!is_shared(&path));
        let e = SecretSource::File(dir.path().join("missing"))
            .read()
            .unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let e = SecretSource::Env("SIMGATE_TEST_NO_SUCH_VAR".into())
            .read()
            .unwrap_err();
        assert!(e.contains("SIMGATE_TEST_NO_SUCH_VAR"), "{e}");
    }
}
