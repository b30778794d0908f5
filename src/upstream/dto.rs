//! What an integration document may look like, checked on every write.
//!
//! Requests carry a `SimIntegrationDetails`; responses are
//! `ServiceDeskIntegrationDto`s. The official SDKs deserialise responses with
//! strict types (`name`, `description`, `type` required strings, `attributes`
//! a required object, the `…Ref` objects with string fields), so a value the
//! SDK could not read back is refused at write time with a 400 instead of
//! being stored. Missing optional-on-input fields get the values the SDK
//! needs: `description` `""`, `type` `"ServiceNowSDIM"` (the spec's default),
//! `attributes` `{}`. Unknown fields are kept as sent. The read-only fields
//! `id`, `created` and `modified` are the store's business.

use serde_json::Value;

use super::reply::Failure;
use super::store::{Doc, READ_ONLY};

/// The `type` given to integrations created without one.
const DEFAULT_TYPE: &str = "ServiceNowSDIM";

/// Parses a create or replace body into a document without its read-only
/// fields.
pub(crate) fn from_body(bytes: &[u8]) -> Result<Doc, Failure> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::bad_request(format!("The request body is not valid JSON: {e}.")))?;
    let Value::Object(mut doc) = value else {
        return Err(Failure::bad_request(
            "The request body must be a JSON object (SimIntegrationDetails).",
        ));
    };
    for key in READ_ONLY {
        doc.remove(key);
    }
    normalize(doc)
}

/// Checks a whole document and fills in the defaults.
pub(crate) fn normalize(mut doc: Doc) -> Result<Doc, Failure> {
    match doc.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return Err(invalid("name", "a non-empty string")),
    }
    default(&mut doc, "description", Value::String(String::new()));
    default(&mut doc, "type", Value::String(DEFAULT_TYPE.into()));
    default(&mut doc, "attributes", Value::Object(Doc::new()));
    for key in ["description", "type"] {
        if !doc[key].is_string() {
            return Err(invalid(key, "a string"));
        }
    }
    if !doc["attributes"].is_object() {
        return Err(invalid("attributes", "an object"));
    }
    check_optional(&doc, "cluster", "a string", Value::is_string)?;
    check_optional(&doc, "sources", "an array of strings", is_string_array)?;
    check_optional(
        &doc,
        "managedSources",
        "an array of strings",
        is_string_array,
    )?;
    check_optional(&doc, "statusMap", "an object", Value::is_object)?;
    check_optional(&doc, "request", "an object", Value::is_object)?;
    for key in ["ownerRef", "clusterRef", "beforeProvisioningRule"] {
        check_optional(&doc, key, "an object of strings", is_reference)?;
    }
    check_optional(&doc, "provisioningConfig", "an object", Value::is_object)?;
    if let Some(Value::Object(config)) = doc.get("provisioningConfig") {
        check_config(config)?;
    }
    Ok(doc)
}

/// Checks what a beforeProvisioningRule PATCH left of that sub-object.
pub(crate) fn check_rule(rule: &Value) -> Result<(), Failure> {
    if rule.is_null() || is_reference(rule) {
        Ok(())
    } else {
        Err(invalid("beforeProvisioningRule", "an object of strings"))
    }
}

fn check_config(config: &Doc) -> Result<(), Failure> {
    let field = |key: &str| format!("provisioningConfig.{key}");
    for key in ["universalManager", "noProvisioningRequests"] {
        if !config
            .get(key)
            .is_none_or(|v| v.is_null() || v.is_boolean())
        {
            return Err(invalid(&field(key), "a boolean"));
        }
    }
    let expiration = config.get("provisioningRequestExpiration");
    if !expiration
        .is_none_or(|v| v.is_null() || v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()))
    {
        return Err(invalid(
            &field("provisioningRequestExpiration"),
            "a 32-bit integer",
        ));
    }
    let refs = config.get("managedResourceRefs");
    let refs_ok = refs
        .is_none_or(|v| v.is_null() || v.as_array().is_some_and(|a| a.iter().all(is_reference)));
    if !refs_ok {
        return Err(invalid(
            &field("managedResourceRefs"),
            "an array of references",
        ));
    }
    let script = config.get("planInitializerScript");
    let script_ok = script.is_none_or(|v| {
        v.is_null()
            || v.as_object()
                .is_some_and(|s| s.get("source").is_none_or(|v| v.is_null() || v.is_string()))
    });
    if !script_ok {
        return Err(invalid(
            &field("planInitializerScript"),
            "an object with a string source",
        ));
    }
    Ok(())
}

/// Sets `key` to `value` when it is missing or null.
fn default(doc: &mut Doc, key: &str, value: Value) {
    if doc.get(key).is_none_or(Value::is_null) {
        doc.insert(key.to_owned(), value);
    }
}

fn check_optional(
    doc: &Doc,
    key: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<(), Failure> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if ok(v) => Ok(()),
        Some(_) => Err(invalid(key, what)),
    }
}

fn is_string_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

/// A `{type, id, name}` reference: an object whose known fields are strings.
fn is_reference(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        ["type", "id", "name"]
            .iter()
            .all(|k| o.get(*k).is_none_or(|v| v.is_null() || v.is_string()))
    })
}

fn invalid(field: &str, what: &str) -> Failure {
    Failure::bad_request(format!("The field '{field}' must be {what}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Result<Doc, Failure> {
        from_body(v.to_string().as_bytes())
    }

    #[test]
    fn fills_defaults_and_drops_read_only_fields() {
        let doc = body(json!({"name": "n", "id": "x", "created": "y", "sources": ["a"]})).unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"name": "n", "description": "", "type": "ServiceNowSDIM", "attributes": {}, "sources": ["a"]})
        );
    }

    #[test]
    fn refuses_what_the_sdk_could_not_read_back() {
        for bad in [
            json!({}),
            json!({"name": ""}),
            json!({"name": 5}),
            json!({"name": "n", "description": 1}),
            json!({"name": "n", "attributes": []}),
            json!({"name": "n", "sources": [1]}),
            json!({"name": "n", "beforeProvisioningRule": {"id": 7}}),
            json!({"name": "n", "provisioningConfig": {"universalManager": "yes"}}),
            json!({"name": "n", "provisioningConfig": {"provisioningRequestExpiration": 1e12}}),
            json!([{"name": "n"}]),
        ] {
            let err = body(bad.clone()).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
        }
        let err = from_body(b"{nope").unwrap_err();
        assert!(err.text().contains("not valid JSON"), "{}", err.text());
    }
}
