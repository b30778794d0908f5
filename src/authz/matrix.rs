//! The effective access matrix: every operation × every role of the policy,
//! as `simgate check` prints it (text, or JSON with `--json`).
//!
//! Roles the policy does not name, and callers with no role, may call
//! nothing; operations no role can call are listed by
//! [`AccessMatrix::unreachable`] so `check` can warn about them.

use std::fmt;

use serde_json::{Value, json};

use super::policy::Policy;
use crate::routes::OperationTable;

/// Operations × roles.
#[derive(Debug, Clone)]
pub struct AccessMatrix {
    roles: Vec<String>,
    rows: Vec<Row>,
    require_scopes: bool,
    wildcard_scopes: Vec<String>,
    scope_match: super::ScopeMatch,
}

/// One operation's line of the matrix.
#[derive(Debug, Clone)]
pub struct Row {
    /// The operationId.
    pub operation_id: String,
    /// The HTTP method.
    pub method: String,
    /// The served path template.
    pub path: String,
    /// The scopes the document declares (any one suffices).
    pub scopes: Vec<String>,
    /// Whether each role (in [`AccessMatrix::roles`] order) may call it.
    pub allowed: Vec<bool>,
}

impl AccessMatrix {
    /// The matrix of `policy` over the operations of `table`.
    pub fn new(table: &OperationTable, policy: &Policy) -> AccessMatrix {
        let roles = policy.roles().to_vec();
        let rows = table
            .operations()
            .map(|op| Row {
                operation_id: op.operation_id.clone(),
                method: op.method.to_string(),
                path: op.path_template.clone(),
                scopes: op.scopes.clone(),
                allowed: roles.iter().map(|r| policy.role_allows(r, op)).collect(),
            })
            .collect();
        AccessMatrix {
            roles,
            rows,
            require_scopes: policy.require_scopes(),
            wildcard_scopes: policy.wildcard_scopes().to_vec(),
            scope_match: policy.scope_match(),
        }
    }

    /// The roles (columns), sorted.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The operations (rows), in table order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Operations no role can call.
    pub fn unreachable(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.allowed.contains(&true))
    }

    /// The matrix for machines.
    pub fn to_json(&self) -> Value {
        let operations: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let roles: serde_json::Map<String, Value> = self
                    .roles
                    .iter()
                    .zip(&r.allowed)
                    .map(|(role, ok)| (role.clone(), Value::Bool(*ok)))
                    .collect();
                json!({
                    "operationId": r.operation_id,
                    "method": r.method,
                    "path": r.path,
                    "scopes": r.scopes,
                    "roles": roles,
                })
            })
            .collect();
        let unreachable: Vec<&str> = self
            .unreachable()
            .map(|r| r.operation_id.as_str())
            .collect();
        json!({
            "roles": self.roles,
            "require_scopes": self.require_scopes,
            "wildcard_scopes": self.wildcard_scopes,
            "operations": operations,
            "unreachable": unreachable,
        })
    }
}

impl fmt::Display for AccessMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width =
            |items: &mut dyn Iterator<Item = usize>, min: usize| items.max().unwrap_or(0).max(min);
        let w_op = width(&mut self.rows.iter().map(|r| r.operation_id.len()), 9);
        let w_m = width(&mut self.rows.iter().map(|r| r.method.len()), 6);
        let w_p = width(&mut self.rows.iter().map(|r| r.path.len()), 4);
        let mut line = format!("{:w_op$}  {:w_m$}  {:w_p$}", "operation", "method", "path");
        for role in &self.roles {
            line.push_str("  ");
            line.push_str(role);
        }
        writeln!(f, "{}", line.trim_end())?;
        for r in &self.rows {
            let mut line = format!(
                "{:w_op$}  {:w_m$}  {:w_p$}",
                r.operation_id, r.method, r.path
            );
            for (role, ok) in self.roles.iter().zip(&r.allowed) {
                // The mark sits under the middle of the role name.
                let half = role.chars().count().saturating_sub(1) / 2;
                let pad = role.chars().count().saturating_sub(1 + half);
                let mark = if *ok { '✓' } else { '✗' };
                line.push_str(&format!("  {:half$}{mark}{:pad$}", "", ""));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        writeln!(f, "Any other role, or none: ✗ for every operation.")?;
        if self.require_scopes {
            let rule = match self.scope_match {
                super::ScopeMatch::All => {
                    "all the scopes of one of the operation's security requirements"
                }
                super::ScopeMatch::Any => "one of the operation's declared scopes",
            };
            writeln!(
                f,
                "Scopes: the token must also carry {rule}, or any of: {}.",
                self.wildcard_scopes.join(", ")
            )?;
        } else {
            writeln!(f, "Scopes: not checked (require_scopes = false).")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::config::{ApiSection, DocumentEntry};
    use std::path::Path;

    fn matrix(policy: &str) -> AccessMatrix {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let api = ApiSection {
            documents: vec![DocumentEntry {
                path: "openapi/sim-integrations.beta.json".into(),
                mount: "/beta".into(),
            }],
        };
        let t = OperationTable::load(&api, &dir.join("simgate.toml"), &dir).unwrap();
        let p = Policy::parse(policy, Path::new("policy.toml"), &t).unwrap();
        AccessMatrix::new(&t, &p)
    }

    #[test]
    fn renders_roles_as_columns_and_finds_unreachable_operations() {
        let m = matrix("[roles]\nREADER = [\"@read\"]\nDELETER = [\"deleteSIMIntegration\"]\n");
        assert_eq!(m.roles(), ["DELETER", "READER"]);
        let unreachable: Vec<_> = m.unreachable().map(|r| r.operation_id.as_str()).collect();
        assert_eq!(unreachable.len(), 4, "{unreachable:?}");
        assert!(unreachable.contains(&"createSIMIntegration"));
        let text = m.to_string();
        assert!(text.starts_with("operation "), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("deleteSIMIntegration "))
            .unwrap();
        assert!(line.contains("DELETE") && line.contains("/beta/sim-integrations/{id}"));
        assert_eq!(line.matches('✓').count(), 1);
        assert_eq!(line.matches('✗').count(), 1);
        let json = m.to_json();
        assert_eq!(json["roles"], json!(["DELETER", "READER"]));
        let get = json["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operationId"] == "getSIMIntegration")
            .unwrap();
        assert_eq!(get["roles"], json!({"DELETER": false, "READER": true}));
        assert_eq!(get["method"], "GET");
        assert_eq!(json["unreachable"].as_array().unwrap().len(), 4);
        assert_eq!(json["require_scopes"], true);
    }
}
