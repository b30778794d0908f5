//! JSON Patch (RFC 6902) for the two PATCH operations.
//!
//! The body is either the RFC's bare array of operations or the
//! `{"operations": [...]}` envelope that the vendor spec's `JsonPatch` schema
//! describes and the official Python SDK sends. The patch is applied to a
//! copy, then the result is checked; only a patch that applies in full and
//! leaves a valid document is stored (all or nothing). A failed `test`, a
//! path that does not exist, a change to `id`, `created` or `modified`, or a
//! result the SDK could not read back is a 400.

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use super::dto;
use super::reply::Failure;
use super::store::{Doc, READ_ONLY};

/// Parses a PATCH body in either form.
pub(crate) fn parse(bytes: &[u8]) -> Result<Patch, Failure> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::bad_request(format!("The request body is not valid JSON: {e}.")))?;
    let operations = match value {
        Value::Array(_) => value,
        Value::Object(mut envelope) => match envelope.remove("operations") {
            Some(ops @ Value::Array(_)) if envelope.is_empty() => ops,
            _ => return Err(not_a_patch()),
        },
        _ => return Err(not_a_patch()),
    };
    serde_json::from_value(operations).map_err(|e| {
        Failure::bad_request(format!("The request body is not a valid JSON Patch: {e}."))
    })
}

/// Applies `patch` to a whole integration and returns the new document.
pub(crate) fn apply_to_integration(current: &Doc, patch: &Patch) -> Result<Doc, Failure> {
    let mut doc = Value::Object(current.clone());
    apply(&mut doc, patch)?;
    let Value::Object(doc) = doc else {
        return Err(Failure::bad_request("The patch must leave an object."));
    };
    for key in READ_ONLY {
        if doc.get(key) != current.get(key) {
            return Err(Failure::bad_request(format!(
                "The field '{key}' is read-only and cannot be changed."
            )));
        }
    }
    dto::normalize(doc)
}

/// Applies `patch` to the integration's `beforeProvisioningRule` (an empty
/// object when it has none) and returns the new integration.
pub(crate) fn apply_to_rule(current: &Doc, patch: &Patch) -> Result<Doc, Failure> {
    let mut rule = match current.get("beforeProvisioningRule") {
        None | Some(Value::Null) => Value::Object(Doc::new()),
        Some(rule) => rule.clone(),
    };
    apply(&mut rule, patch)?;
    dto::check_rule(&rule)?;
    let mut doc = current.clone();
    doc.insert("beforeProvisioningRule".into(), rule);
    dto::normalize(doc)
}

fn apply(doc: &mut Value, patch: &Patch) -> Result<(), Failure> {
    // `doc` is a copy: on failure it is dropped, so the cheaper non-undoing
    // variant is enough.
    json_patch::patch_unsafe(doc, patch).map_err(|e| {
        let op = patch.get(e.operation).map_or("?", op_name);
        Failure::bad_request(format!(
            "The patch could not be applied: operation {} ('{op}') at path '{}': {}.",
            e.operation, e.path, e.kind
        ))
    })
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn not_a_patch() -> Failure {
    Failure::bad_request(
        "The request body must be a JSON Patch: an array of operations or {\"operations\": [...]}.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Doc {
        let v = json!({
            "id": "abc", "created": "t0", "modified": "t0",
            "name": "n", "description": "d", "type": "t", "attributes": {"a": 1},
        });
        v.as_object().unwrap().clone()
    }

    fn patch(v: Value) -> Patch {
        parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn both_body_forms_parse_alike() {
        let ops = json!([{"op": "replace", "path": "/name", "value": "m"}]);
        assert_eq!(patch(ops.clone()), patch(json!({ "operations": ops })));
        for bad in [
            json!({"ops": []}),
            json!({"operations": [], "x": 1}),
            json!("x"),
            json!([{"op": "jump", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
        ] {
            assert_eq!(
                parse(bad.to_string().as_bytes()).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn applies_all_or_nothing() {
        let ok = apply_to_integration(
            &doc(),
            &patch(json!([
                {"op": "test", "path": "/name", "value": "n"},
                {"op": "replace", "path": "/description", "value": "e"},
                {"op": "add", "path": "/attributes/b", "value": 2},
            ])),
        )
        .unwrap();
        assert_eq!(ok["description"], "e");
        assert_eq!(ok["attributes"], json!({"a": 1, "b": 2}));
        let err = apply_to_integration(
            &doc(),
            &patch(json!([
                {"op": "replace", "path": "/description", "value": "e"},
                {"op": "test", "path": "/name", "value": "other"},
            ])),
        )
        .unwrap_err();
        assert!(err.text().contains("'test'"), "{}", err.text());
    }

    #[test]
    fn read_only_fields_stay() {
        for key in ["id", "created", "modified"] {
            let p = patch(json!([{"op": "replace", "path": format!("/{key}"), "value": "x"}]));
            assert!(
                apply_to_integration(&doc(), &p)
                    .unwrap_err()
                    .text()
                    .contains(key)
            );
            let p = patch(json!([{"op": "remove", "path": format!("/{key}")}]));
            assert_eq!(apply_to_integration(&doc(), &p).unwrap_err().status, 400);
        }
        let p = patch(json!([{"op": "remove", "path": "/name"}]));
        assert_eq!(apply_to_integration(&doc(), &p).unwrap_err().status, 400);
    }

    #[test]
    fn rule_patch_targets_the_sub_object() {
        let p = patch(json!([
            {"op": "add", "path": "/type", "value": "RULE"},
            {"op": "add", "path": "/id", "value": "r1"},
        ]));
        let out = apply_to_rule(&doc(), &p).unwrap();
        assert_eq!(
            out["beforeProvisioningRule"],
            json!({"type": "RULE", "id": "r1"})
        );
        assert_eq!(out["name"], "n");
        let p = patch(json!([{"op": "replace", "path": "/id", "value": 5}]));
        assert_eq!(apply_to_rule(&out, &p).unwrap_err().status, 400);
    }
}
