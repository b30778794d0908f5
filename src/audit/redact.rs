//! Redaction of request bodies before they are recorded.
//!
//! Every object member whose name is in the list (case-insensitive, `_` and
//! `-` ignored, so `client_secret`, `clientSecret` and `Client-Secret` are
//! one name) has its value replaced by `"[REDACTED]"`, at any depth. JSON
//! Patch operations (any object with string `op` and `path` members) are
//! recorded as operations: when a segment of their `path` (or `from`) is a
//! redacted name — `/attributes/…`, `/password` — their `value` is redacted
//! as a whole; otherwise the value is redacted like any other JSON.

use std::collections::HashSet;

use serde_json::Value;

/// The replacement text.
pub const REDACTED: &str = "[REDACTED]";

/// Redacts configured field names from JSON values.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: HashSet<String>,
}

/// `clientSecret`, `client_secret`, `CLIENT-SECRET` → `clientsecret`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Redactor {
    /// Redacts the given field names.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Redactor {
            names: names.into_iter().map(|n| normalize(n.as_ref())).collect(),
        }
    }

    /// Whether a member with this name is redacted.
    pub fn is_secret(&self, name: &str) -> bool {
        self.names.contains(&normalize(name))
    }

    /// Whether a JSON Pointer touches a redacted name in any segment.
    pub fn pointer_is_secret(&self, pointer: &str) -> bool {
        pointer
            .split('/')
            .skip(1)
            .any(|seg| self.is_secret(&seg.replace("~1", "/").replace("~0", "~")))
    }

    /// Redacts `value` in place.
    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            Value::Object(map) => {
                let patch_target = match (map.get("op"), map.get("path")) {
                    (Some(Value::String(_)), Some(Value::String(path))) => {
                        let from_secret = matches!(map.get("from"),
                            Some(Value::String(from)) if self.pointer_is_secret(from));
                        Some(self.pointer_is_secret(path) || from_secret)
                    }
                    _ => None,
                };
                for (name, member) in map.iter_mut() {
                    if self.is_secret(name) || (patch_target == Some(true) && name == "value") {
                        *member = Value::String(REDACTED.to_owned());
                    } else {
                        self.redact(member);
                    }
                }
            }
            _ => {}
        }
    }

    /// A redacted copy of `value`.
    pub fn redacted(&self, value: &Value) -> Value {
        let mut v = value.clone();
        self.redact(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::config::DEFAULT_REDACT;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(DEFAULT_REDACT.iter().chain(&["dbUrl"]))
    }

    #[test]
    fn names_match_case_and_separator_insensitively() {
        let r = redactor();
        for n in [
            "password",
            "PassWord",
            "clientSecret",
            "CLIENT-SECRET",
            "apiKey",
            "db_url",
        ] {
            assert!(r.is_secret(n), "{n}");
        }
        assert!(!r.is_secret("name"));
        assert!(!r.is_secret("passwords"));
    }

    #[test]
    fn redacts_at_any_depth() {
        let mut v = json!({
            "name": "ServiceNow",
            "attributes": {"user": "u", "password": "hunter2"},
            "provisioningConfig": {
                "nested": [{"deeper": {"Client_Secret": "s3cr3t", "keep": 1}}],
                "apiKey": {"even": "objects"},
            },
        });
        redactor().redact(&mut v);
        assert_eq!(v["name"], "ServiceNow");
        assert_eq!(v["attributes"], REDACTED);
        assert_eq!(
            v["provisioningConfig"]["nested"][0]["deeper"],
            json!({"Client_Secret": REDACTED, "keep": 1})
        );
        assert_eq!(v["provisioningConfig"]["apiKey"], REDACTED);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("s3cr3t"));
    }

    #[test]
    fn patch_values_aimed_at_secrets_are_redacted() {
        let mut v = json!([
            {"op": "replace", "path": "/attributes", "value": {"password": "p1", "x": 1}},
            {"op": "add", "path": "/attributes/apiKey", "value": "p2"},
            {"op": "replace", "path": "/ATTRIBUTES/x", "value": "p3"},
            {"op": "replace", "path": "/config/secret", "value": {"a": "p4"}},
            {"op": "copy", "from": "/attributes/password", "path": "/description", "value": "p5"},
            {"op": "replace", "path": "/description", "value": {"nested": {"token": "p6"}, "ok": "yes"}},
            {"op": "replace", "path": "/name", "value": "plain"},
        ]);
        redactor().redact(&mut v);
        for i in 0..5 {
            assert_eq!(v[i]["value"], REDACTED, "op {i}");
        }
        assert_eq!(
            v[5]["value"],
            json!({"nested": {"token": REDACTED}, "ok": "yes"})
        );
        assert_eq!(v[6]["value"], "plain");
        assert_eq!(v[0]["path"], "/attributes", "operations are kept");
        let text = v.to_string();
        for secret in ["p1", "p2", "p3", "p4", "p5", "p6"] {
            assert!(
                !text.contains(&format!("\"{secret}\"")),
                "{secret} in {text}"
            );
        }
    }
}
