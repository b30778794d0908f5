//! The policy: which roles may call which operations, and the scope rule.
//!
//! The policy file grants operationIds to roles; anything not granted is
//! denied, and a principal with no granted role (or no roles) may call
//! nothing:
//!
//! ```toml
//! [roles]
//! ORG_ADMIN = ["@all"]
//! SIM_READER = ["getSIMIntegrations", "getSIMIntegration"]
//! ```
//!
//! Besides operationIds, a list may name groups expanded from the loaded
//! documents (never guessed from names): `@all` (every operation), `@read`
//! (operations whose method does not change state: GET, HEAD, OPTIONS,
//! TRACE) and `@write` (POST, PUT, PATCH, DELETE). Refused at start, naming
//! the file, the role and the name: an operationId that no loaded document
//! defines (with a suggestion when one is close), an unknown group, unknown
//! keys.
//!
//! With `require_scopes`, the token must also meet one of the operation's
//! `security` requirements (OR): carry all of its scopes (or, with
//! `scope_match = "any"`, one of them), or one of the wildcard scopes; an
//! operation that declares no scopes, or a requirement that lists none,
//! needs none. A refusal says which was missing: a granted role
//! ([`Error::Forbidden`]) or the scopes ([`Error::ScopeMissing`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::config::AuthzSection;
use crate::auth::Principal;
use crate::config::resolve;
use crate::error::{ConfigError, Error};
use crate::routes::{Operation, OperationTable};

/// The policy file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Role → operationIds and groups.
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
}

/// The groups a policy may name, expanded from the documents.
const GROUPS: &str = "@all (every operation), @read (operations that do not change state), \
                      @write (operations that do)";

/// The validated policy, built once at start-up.
#[derive(Debug)]
pub struct Policy {
    /// Where it came from.
    path: PathBuf,
    /// Role → granted, indexed by [`Operation::index`].
    grants: HashMap<String, Vec<bool>>,
    /// Role names, sorted.
    roles: Vec<String>,
    require_scopes: bool,
    wildcard_scopes: Vec<String>,
    scope_match: ScopeMatch,
}

/// How the scopes of one `security` requirement are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeMatch {
    /// Every listed scope (OpenAPI).
    All,
    /// One listed scope.
    Any,
}

impl Policy {
    /// Reads the policy file named by `[authz] policy` (relative to
    /// `base_dir`) and checks every name against `table`.
    pub fn load(
        section: &AuthzSection,
        config_path: &Path,
        base_dir: &Path,
        table: &OperationTable,
    ) -> Result<Arc<Policy>, ConfigError> {
        let Some(file) = &section.policy else {
            return Err(ConfigError::at(
                config_path,
                "authz.policy",
                "missing: gateway mode needs a policy file granting operations to roles",
            ));
        };
        let path = resolve(base_dir, Path::new(file));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::at(
                config_path,
                "authz.policy",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let mut policy = Policy::parse(&text, &path, table)?;
        policy.require_scopes = section.require_scopes.unwrap_or(true);
        if let Some(w) = &section.wildcard_scopes {
            policy.wildcard_scopes = w.clone();
        }
        policy.scope_match = match section.scope_match.as_deref() {
            None | Some("all") => ScopeMatch::All,
            Some("any") => ScopeMatch::Any,
            Some(other) => {
                return Err(ConfigError::at(
                    config_path,
                    "authz.scope_match",
                    format!("must be \"all\" or \"any\", found {other:?}"),
                ));
            }
        };
        Ok(Arc::new(policy))
    }

    /// Parses policy text as if read from `path` (scope checking on, with
    /// the default wildcard `sp:scopes:all` and `scope_match = "all"`).
    pub fn parse(text: &str, path: &Path, table: &OperationTable) -> Result<Policy, ConfigError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let mut grants = HashMap::with_capacity(file.roles.len());
        for (role, names) in &file.roles {
            let key = format!("roles.{role}");
            if role.is_empty() {
                return Err(ConfigError::at(path, &key, "empty role name"));
            }
            let mut granted = vec![false; table.len()];
            for name in names {
                expand(name, table, &mut granted).map_err(|e| ConfigError::at(path, &key, e))?;
            }
            grants.insert(role.clone(), granted);
        }
        Ok(Policy {
            path: path.to_path_buf(),
            roles: file.roles.into_keys().collect(),
            grants,
            require_scopes: true,
            wildcard_scopes: vec!["sp:scopes:all".to_owned()],
            scope_match: ScopeMatch::All,
        })
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The roles the policy names, sorted.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether tokens must carry one of the operation's scopes.
    pub fn require_scopes(&self) -> bool {
        self.require_scopes
    }

    /// The scopes that satisfy any operation.
    pub fn wildcard_scopes(&self) -> &[String] {
        &self.wildcard_scopes
    }

    /// Whether `role` is granted `op` (roles only, scopes aside).
    pub fn role_allows(&self, role: &str, op: &Operation) -> bool {
        self.grants
            .get(role)
            .and_then(|g| g.get(op.index))
            .copied()
            .unwrap_or(false)
    }

    /// How the scopes of one requirement are matched.
    pub fn scope_match(&self) -> ScopeMatch {
        self.scope_match
    }

    /// Whether `scopes` satisfy `op`'s `security` (always, when scope
    /// checking is off or the operation declares no scopes).
    pub fn scopes_allow(&self, scopes: &[String], op: &Operation) -> bool {
        if !self.require_scopes
            || op.scopes.is_empty()
            || scopes.iter().any(|s| self.wildcard_scopes.contains(s))
        {
            return true;
        }
        let has = |s: &String| scopes.contains(s);
        op.security.iter().any(|needed| match self.scope_match {
            _ if needed.is_empty() => true,
            ScopeMatch::All => needed.iter().all(has),
            ScopeMatch::Any => needed.iter().any(has),
        })
    }

    /// Decides whether `principal` may call `op`; a refusal names the
    /// operation and what was missing (a role or scopes), never the policy.
    pub fn authorize(&self, principal: &Principal, op: &Operation) -> Result<(), Error> {
        let by_role = principal.roles.iter().any(|r| self.role_allows(r, op));
        let by_scope = self.scopes_allow(&principal.scopes, op);
        if by_role && by_scope {
            return Ok(());
        }
        tracing::debug!(
            target: "simgate::authz",
            operation = %op.operation_id,
            subject = %principal.subject,
            reason = if by_role { "no declared scope" } else { "no granted role" },
            "refused"
        );
        if !by_role {
            return Err(Error::Forbidden {
                operation: op.operation_id.clone(),
            });
        }
        let join = match self.scope_match {
            ScopeMatch::All => " ",
            ScopeMatch::Any => " or ",
        };
        Err(Error::ScopeMissing {
            operation: op.operation_id.clone(),
            requirements: op.security.iter().map(|r| r.join(join)).collect(),
        })
    }
}

/// Marks the operations `name` stands for.
fn expand(name: &str, table: &OperationTable, granted: &mut [bool]) -> Result<(), String> {
    let pick: fn(&Operation) -> bool = match name {
        "@all" => |_| true,
        "@read" => |o| !o.mutating,
        "@write" => |o| o.mutating,
        _ if name.starts_with('@') => {
            return Err(format!("unknown group {name:?}; groups are {GROUPS}"));
        }
        _ => {
            let op = table.get(name).ok_or_else(|| unknown(name, table))?;
            if let Some(g) = granted.get_mut(op.index) {
                *g = true;
            }
            return Ok(());
        }
    };
    for op in table.operations().filter(|o| pick(o)) {
        if let Some(g) = granted.get_mut(op.index) {
            *g = true;
        }
    }
    Ok(())
}

fn unknown(name: &str, table: &OperationTable) -> String {
    let close = table
        .operations()
        .map(|o| o.operation_id.as_str())
        .map(|id| {
            (
                strsim::jaro_winkler(&name.to_lowercase(), &id.to_lowercase()),
                id,
            )
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match close {
        Some((_, id)) => format!(
            "unknown operation {name:?} (no loaded OpenAPI document defines it; did you mean {id:?}?)"
        ),
        None => format!("unknown operation {name:?} (no loaded OpenAPI document defines it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::config::{ApiSection, DocumentEntry};

    fn table() -> Arc<OperationTable> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let api = ApiSection {
            documents: vec![
                DocumentEntry {
                    path: "openapi/sim-integrations.beta.json".into(),
                    mount: "/beta".into(),
                },
                DocumentEntry {
                    path: "openapi/sim-integrations.v1.json".into(),
                    mount: "/".into(),
                },
            ],
        };
        OperationTable::load(&api, &dir.join("simgate.toml"), &dir).unwrap()
    }

    fn parse(text: &str) -> Result<Policy, ConfigError> {
        Policy::parse(text, Path::new("/etc/simgate/policy.toml"), &table())
    }

    fn who(roles: &[&str], scopes: &[&str]) -> Principal {
        Principal {
            subject: "s".into(),
            client_key: "s".into(),
            issuer: "i".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            token_id: None,
        }
    }

    #[test]
    fn the_default_policy_follows_the_vendor() {
        let t = table();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let section = AuthzSection {
            policy: Some("policy.toml".into()),
            ..Default::default()
        };
        let p = Policy::load(&section, &dir.join("simgate.toml"), &dir, &t).unwrap();
        assert_eq!(p.roles(), ["ORG_ADMIN", "SERVICE_DESK_ADMIN", "SIM_READER"]);
        assert!(p.require_scopes());
        assert_eq!(p.wildcard_scopes(), ["sp:scopes:all"]);
        for op in t.operations() {
            assert!(p.role_allows("ORG_ADMIN", op));
            assert!(p.role_allows("SERVICE_DESK_ADMIN", op));
            let reader = op.operation_id.starts_with("getSIMIntegration");
            assert_eq!(
                p.role_allows("SIM_READER", op),
                reader,
                "{}",
                op.operation_id
            );
            assert!(!p.role_allows("HELPDESK", op));
            assert!(!p.role_allows("org_admin", op));
        }
    }

    #[test]
    fn groups_expand_from_the_documents() {
        let p =
            parse("[roles]\nR = [\"@read\"]\nW = [\"@write\"]\nA = [\"@all\"]\nN = []\n").unwrap();
        let t = table();
        for op in t.operations() {
            assert_eq!(p.role_allows("R", op), !op.mutating);
            assert_eq!(p.role_allows("W", op), op.mutating);
            assert!(p.role_allows("A", op));
            assert!(!p.role_allows("N", op));
        }
    }

    #[test]
    fn typos_stop_start_up_naming_them() {
        let e = parse("[roles]\nSIM_READER = [\"getSimIntegration\"]\n").unwrap_err();
        assert!(
            e.0.contains("/etc/simgate/policy.toml: `roles.SIM_READER`: unknown operation \"getSimIntegration\""),
            "{e}"
        );
        assert!(e.0.contains("did you mean \"getSIMIntegration\""), "{e}");
        let e = parse("[roles]\nX = [\"frobnicate\"]\n").unwrap_err();
        assert!(
            e.0.contains("unknown operation \"frobnicate\"") && !e.0.contains("did you mean"),
            "{e}"
        );
        let e = parse("[roles]\nX = [\"@admin\"]\n").unwrap_err();
        assert!(e.0.contains("unknown group \"@admin\""), "{e}");
        let e = parse("[role]\nX = [\"@all\"]\n").unwrap_err();
        assert!(e.0.contains("unknown field `role`"), "{e}");
        let e = parse("[roles]\nX = \"@all\"\n").unwrap_err();
        assert!(e.0.contains("policy.toml"), "{e}");
    }

    #[test]
    fn missing_or_unreadable_policy_is_a_config_error() {
        let t = table();
        let cfg = Path::new("/etc/simgate/simgate.toml");
        let e =
            Policy::load(&AuthzSection::default(), cfg, Path::new("/etc/simgate"), &t).unwrap_err();
        assert!(e.0.contains("`authz.policy`: missing"), "{e}");
        let section = AuthzSection {
            policy: Some("nope.toml".into()),
            ..Default::default()
        };
        let e = Policy::load(&section, cfg, Path::new("/nonexistent"), &t).unwrap_err();
        assert!(e.0.contains("cannot read /nonexistent/nope.toml"), "{e}");
    }

    #[test]
    fn roles_and_scopes_decide() {
        let t = table();
        let mut p = parse("[roles]\nADMIN = [\"@all\"]\nREADER = [\"@read\"]\n").unwrap();
        // The vendor lists alternatives in one requirement.
        p.scope_match = ScopeMatch::Any;
        let get = t.get("getSIMIntegration").unwrap();
        let delete = t.get("deleteSIMIntegrationV1").unwrap();
        let read = "idn:service-desk-integration:read";
        let manage = "idn:service-desk-integration:manage";
        assert!(p.authorize(&who(&["ADMIN"], &[manage]), delete).is_ok());
        assert!(
            p.authorize(&who(&["ADMIN"], &["sp:scopes:all"]), delete)
                .is_ok()
        );
        assert!(
            p.authorize(&who(&["READER", "ADMIN"], &[manage]), delete)
                .is_ok()
        );
        assert!(p.authorize(&who(&["READER"], &[read]), get).is_ok());
        assert!(p.authorize(&who(&["READER"], &[manage]), get).is_ok());
        let refused = [
            p.authorize(&who(&["READER"], &["sp:scopes:all"]), delete),
            p.authorize(&who(&["ADMIN"], &[read]), delete),
            p.authorize(&who(&["ADMIN"], &[]), delete),
            p.authorize(&who(&["ADMIN"], &["sp:scopes:default"]), get),
            p.authorize(&who(&[], &["sp:scopes:all"]), get),
            p.authorize(&who(&["OTHER"], &["sp:scopes:all"]), get),
        ];
        for r in refused {
            match r {
                Err(Error::Forbidden { operation } | Error::ScopeMissing { operation, .. }) => {
                    assert!(operation.contains("SIMIntegration"))
                }
                other => panic!("{other:?}"),
            }
        }
        p.require_scopes = false;
        assert!(p.authorize(&who(&["ADMIN"], &[]), delete).is_ok());
        assert!(p.authorize(&who(&["READER"], &[]), delete).is_err());
        p.require_scopes = true;
        p.wildcard_scopes = vec!["custom:all".into()];
        assert!(
            p.authorize(&who(&["ADMIN"], &["custom:all"]), delete)
                .is_ok()
        );
        assert!(
            p.authorize(&who(&["ADMIN"], &["sp:scopes:all"]), delete)
                .is_err()
        );
        // OpenAPI's rule: every scope of one requirement.
        p.scope_match = ScopeMatch::All;
        assert!(matches!(
            p.authorize(&who(&["READER"], &[read]), get),
            Err(Error::ScopeMissing { .. })
        ));
        assert!(p.authorize(&who(&["READER"], &[read, manage]), get).is_ok());
        assert!(matches!(
            p.authorize(&who(&["OTHER"], &[read, manage]), get),
            Err(Error::Forbidden { .. })
        ));
    }
}
