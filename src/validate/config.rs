//! `[validation]`: request body limits and checks.
//!
//! [`ValidationSection`] is what the file says; [`ValidationConfig`] is what
//! the validators run with. Operation ids in `body_limits` and `skip` are
//! checked against the loaded documents when the validators are compiled
//! ([`super::Validators::compile`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;

/// Default body limit per operation (64 KiB).
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;
/// Default nesting limit for JSON bodies.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Highest nesting limit the config may set (serde_json stops at 128).
pub const MAX_DEPTH_CEILING: usize = 100;
/// Default bound on JSON Patch operations per request.
pub const DEFAULT_MAX_PATCH_OPERATIONS: usize = 64;
/// Default cap on the messages of one 400 response.
pub const DEFAULT_MAX_MESSAGES: usize = 20;

/// `[validation]`: request body limits and checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    /// Body limit in bytes for operations not listed in `body_limits`
    /// (default 65536). 413 beyond it.
    pub max_body_bytes: Option<u64>,
    /// Body limit in bytes per operationId, overriding `max_body_bytes`.
    #[serde(default)]
    pub body_limits: BTreeMap<String, u64>,
    /// Deepest allowed nesting of arrays and objects (default 32, at most 100).
    pub max_depth: Option<usize>,
    /// Most JSON Patch operations in one request (default 64).
    pub max_patch_operations: Option<usize>,
    /// What to do with `readOnly` fields in a request body: `refuse`
    /// (default, 400) or `strip` (removed from the forwarded bytes). Patch
    /// operations on read-only fields are refused either way.
    pub read_only: Option<String>,
    /// Most messages in one 400 response (default 20).
    pub max_messages: Option<usize>,
    /// Per role, the only JSON Patch paths its holders may touch (RFC 6901
    /// pointers relative to the resource; a pointer also covers everything
    /// below it; `"*"` means any path).
    #[serde(default)]
    pub patch_paths: BTreeMap<String, Vec<String>>,
    /// Refuse query parameters the operation does not declare (default
    /// `false`: unknown ones are forwarded).
    pub strict_query: Option<bool>,
    /// OperationIds whose request bodies are forwarded without schema
    /// validation (media type and size are still checked).
    #[serde(default)]
    pub skip: Vec<String>,
}

/// What happens to `readOnly` fields sent in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    /// 400, one message per field.
    Refuse,
    /// Removed from the bytes forwarded upstream; the rest is untouched.
    Strip,
}

/// `[validation]`, validated.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// The config file (for errors found later, at compile time).
    pub path: PathBuf,
    /// Body limit for operations without an override.
    pub max_body_bytes: u64,
    /// Body limits per operationId.
    pub body_limits: BTreeMap<String, u64>,
    /// Deepest allowed nesting.
    pub max_depth: usize,
    /// Most JSON Patch operations per request.
    pub max_patch_operations: usize,
    /// `readOnly` handling.
    pub read_only: ReadOnly,
    /// Most messages per 400 response.
    pub max_messages: usize,
    /// Patch path restrictions per role.
    pub patch_paths: PatchPaths,
    /// Whether undeclared query parameters are refused.
    pub strict_query: bool,
    /// OperationIds whose bodies are not schema-validated.
    pub skip: Vec<String>,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            path: PathBuf::new(),
            max_body_bytes: DEFAULT_BODY_LIMIT,
            body_limits: BTreeMap::new(),
            max_depth: DEFAULT_MAX_DEPTH,
            max_patch_operations: DEFAULT_MAX_PATCH_OPERATIONS,
            read_only: ReadOnly::Refuse,
            max_messages: DEFAULT_MAX_MESSAGES,
            patch_paths: PatchPaths::default(),
            strict_query: false,
            skip: Vec::new(),
        }
    }
}

impl ValidationConfig {
    /// Validates the section read from `path`.
    pub fn from_section(s: &ValidationSection, path: &Path) -> Result<Self, ConfigError> {
        let max_body_bytes = s.max_body_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
        if max_body_bytes == 0 {
            return Err(ConfigError::at(
                path,
                "validation.max_body_bytes",
                "must be at least 1",
            ));
        }
        for (op, limit) in &s.body_limits {
            if *limit == 0 {
                return Err(ConfigError::at(
                    path,
                    &format!("validation.body_limits.{op}"),
                    "must be at least 1",
                ));
            }
        }
        let max_depth = s.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
        if !(1..=MAX_DEPTH_CEILING).contains(&max_depth) {
            return Err(ConfigError::at(
                path,
                "validation.max_depth",
                format!("must be between 1 and {MAX_DEPTH_CEILING}"),
            ));
        }
        let max_patch_operations = s
            .max_patch_operations
            .unwrap_or(DEFAULT_MAX_PATCH_OPERATIONS);
        if max_patch_operations == 0 {
            return Err(ConfigError::at(
                path,
                "validation.max_patch_operations",
                "must be at least 1",
            ));
        }
        let read_only = match s.read_only.as_deref() {
            None | Some("refuse") => ReadOnly::Refuse,
            Some("strip") => ReadOnly::Strip,
            Some(other) => {
                return Err(ConfigError::at(
                    path,
                    "validation.read_only",
                    format!("{other:?}: expected \"refuse\" or \"strip\""),
                ));
            }
        };
        let max_messages = s.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
        if max_messages < 2 {
            return Err(ConfigError::at(
                path,
                "validation.max_messages",
                "must be at least 2",
            ));
        }
        let mut roles = BTreeMap::new();
        for (role, pointers) in &s.patch_paths {
            let key = format!("validation.patch_paths.{role}");
            let mut allowed = Vec::new();
            for p in pointers {
                if p == "*" {
                    allowed.push(Allowed::Any);
                    continue;
                }
                let ptr = jsonptr::Pointer::parse(p.as_str()).map_err(|e| {
                    ConfigError::at(path, &key, format!("{p:?} is not a JSON Pointer: {e}"))
                })?;
                if ptr.is_root() {
                    return Err(ConfigError::at(
                        path,
                        &key,
                        "the empty pointer names no field; use \"*\" for any path",
                    ));
                }
                allowed.push(Allowed::Under(
                    ptr.tokens().map(|t| t.decoded().into_owned()).collect(),
                ));
            }
            roles.insert(role.clone(), allowed);
        }
        Ok(ValidationConfig {
            path: path.to_path_buf(),
            max_body_bytes,
            body_limits: s.body_limits.clone(),
            max_depth,
            max_patch_operations,
            read_only,
            max_messages,
            patch_paths: PatchPaths { roles },
            strict_query: s.strict_query.unwrap_or(false),
            skip: s.skip.clone(),
        })
    }

    /// The body limit of an operation.
    pub fn body_limit(&self, operation_id: &str) -> u64 {
        self.body_limits
            .get(operation_id)
            .copied()
            .unwrap_or(self.max_body_bytes)
    }
}

/// One allowed patch path of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// Any path.
    Any,
    /// This field and everything below it (decoded tokens).
    Under(Vec<String>),
}

/// Which JSON Patch paths each restricted role may touch.
///
/// A principal holding none of the listed roles is not restricted here (the
/// policy decides whether it may call the operation at all). A principal
/// holding at least one listed role may touch only the union of the paths
/// of its listed roles; its other roles add nothing, so granting an extra
/// role never widens a restriction by accident (list a role with `"*"` to
/// lift it).
#[derive(Debug, Clone, Default)]
pub struct PatchPaths {
    roles: BTreeMap<String, Vec<Allowed>>,
}

impl PatchPaths {
    /// Whether any role is restricted.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// Whether a principal with `roles` may touch the field at `tokens`
    /// (decoded, relative to the resource).
    pub fn allows(&self, roles: &[String], tokens: &[String]) -> bool {
        let mut restricted = false;
        for role in roles {
            let Some(allowed) = self.roles.get(role) else {
                continue;
            };
            restricted = true;
            for a in allowed {
                match a {
                    Allowed::Any => return true,
                    Allowed::Under(prefix) if tokens.starts_with(prefix) => return true,
                    Allowed::Under(_) => {}
                }
            }
        }
        !restricted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ValidationConfig, ConfigError> {
        let s: ValidationSection = toml::from_str(text).unwrap();
        ValidationConfig::from_section(&s, Path::new("/etc/simgate.toml"))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.body_limit("createSIMIntegration"), 65536);
        assert_eq!(c.max_depth, 32);
        assert_eq!(c.read_only, ReadOnly::Refuse);
        assert!(c.patch_paths.is_empty());
    }

    #[test]
    fn overrides_and_bad_values_name_the_key() {
        let c =
            parse("max_body_bytes = 10\nread_only = \"strip\"\n[body_limits]\nx = 5\n").unwrap();
        assert_eq!(c.body_limit("x"), 5);
        assert_eq!(c.body_limit("y"), 10);
        assert_eq!(c.read_only, ReadOnly::Strip);
        for (text, key) in [
            ("read_only = \"drop\"", "validation.read_only"),
            ("max_depth = 0", "validation.max_depth"),
            ("max_depth = 500", "validation.max_depth"),
            (
                "max_patch_operations = 0",
                "validation.max_patch_operations",
            ),
            ("[body_limits]\ncreate = 0", "validation.body_limits.create"),
            (
                "[patch_paths]\nOP = [\"description\"]",
                "validation.patch_paths.OP",
            ),
            (
                "[patch_paths]\nOP = [\"/a~2\"]",
                "validation.patch_paths.OP",
            ),
            ("[patch_paths]\nOP = [\"\"]", "validation.patch_paths.OP"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(key), "{text}: {e}");
            assert!(e.0.contains("/etc/simgate.toml"), "{e}");
        }
    }

    #[test]
    fn patch_paths_restrict_only_listed_roles() {
        let c = parse("[patch_paths]\nOPERATOR = [\"/description\", \"/a~1b\"]\nADMIN = [\"*\"]\n")
            .unwrap();
        let p = &c.patch_paths;
        let t = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let op = t(&["OPERATOR"]);
        assert!(p.allows(&op, &t(&["description"])));
        assert!(p.allows(&op, &t(&["description", "x"])));
        assert!(p.allows(&op, &t(&["a/b"])));
        assert!(!p.allows(&op, &t(&["descriptionx"])));
        assert!(!p.allows(&op, &t(&["name"])));
        // Unlisted roles add nothing to a restricted principal...
        assert!(!p.allows(&t(&["OPERATOR", "SIM_READER"]), &t(&["name"])));
        // ...a listed "*" role lifts it, and unlisted principals are free.
        assert!(p.allows(&t(&["OPERATOR", "ADMIN"]), &t(&["name"])));
        assert!(p.allows(&t(&["ORG_ADMIN"]), &t(&["name"])));
        assert!(p.allows(&[], &t(&["name"])));
    }
}
