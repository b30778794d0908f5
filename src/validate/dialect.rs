//! OpenAPI 3.0 schema objects, rewritten as JSON Schema (draft 4) for the
//! `jsonschema` crate.
//!
//! OpenAPI 3.0 speaks an extended subset of draft 4 (draft-wright-00). The
//! differences that matter for requests:
//!
//! - `nullable: true` also admits `null` (added to `type`, and to `enum`
//!   when there is one; a typeless `allOf`/`oneOf`/`anyOf` is wrapped in an
//!   `anyOf` with `null`).
//! - `readOnly: true` fields must not be sent: they become the
//!   [`READ_ONLY`] keyword, which always fails, so the validator reports
//!   each one at its own location; a `required` entry naming a read-only
//!   sibling applies to responses only and is dropped.
//! - `$ref` siblings are ignored, as OpenAPI 3.0 says; only local refs
//!   (`#/...`) are allowed (nothing is fetched).
//! - `format: int32` / `int64` become numeric bounds; the OpenAPI-only
//!   formats (`float`, `double`, `byte`, `binary`, `password`) are dropped.
//! - Annotations (`example`, `xml`, `externalDocs`, `discriminator`,
//!   `deprecated`, `writeOnly`, `x-*`) are dropped.

use serde_json::{Map, Value, json};

/// The keyword `readOnly: true` becomes; it fails on any value.
pub(crate) const READ_ONLY: &str = "x-simgate-read-only";

/// Nesting beyond this in a document's schema is refused (documents are
/// config, but conversion must not recurse without bound).
const MAX_SCHEMA_DEPTH: usize = 64;

/// Converts one schema; `Err` says what is wrong and where (a JSON pointer
/// relative to `schema`).
pub(crate) fn convert(schema: &Value) -> Result<Value, String> {
    convert_at(schema, 0, &mut String::new())
}

fn convert_at(schema: &Value, depth: usize, at: &mut String) -> Result<Value, String> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "{at}: schema nested deeper than {MAX_SCHEMA_DEPTH}"
        ));
    }
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(_) => return Ok(schema.clone()),
        _ => return Err(format!("{}: a schema must be an object", show(at))),
    };
    if let Some(r) = map.get("$ref") {
        return match r.as_str() {
            Some(r) if r.starts_with("#/") || r == "#" => Ok(json!({ "$ref": r })),
            _ => Err(format!(
                "{}: only local $refs (\"#/...\") are supported, found {r}",
                show(at)
            )),
        };
    }
    let mut out = Map::new();
    for (key, value) in map {
        let len = at.len();
        at.push('/');
        at.push_str(&key.replace('~', "~0").replace('/', "~1"));
        let converted = match key.as_str() {
            "properties" | "patternProperties" => Some(Value::Object(each_member(
                value,
                depth,
                at,
                "an object of schemas",
            )?)),
            "additionalProperties" | "items" | "not" if value.is_object() => {
                Some(convert_at(value, depth + 1, at)?)
            }
            "items" if value.is_array() => {
                Some(Value::Array(each_item(value, depth, at, "schemas")?))
            }
            "allOf" | "anyOf" | "oneOf" => Some(Value::Array(each_item(
                value,
                depth,
                at,
                "an array of schemas",
            )?)),
            "nullable" | "readOnly" | "writeOnly" | "example" | "examples" | "xml"
            | "externalDocs" | "deprecated" | "discriminator" | "format" => None,
            k if k.starts_with("x-") => None,
            _ => Some(value.clone()),
        };
        at.truncate(len);
        if let Some(v) = converted {
            out.insert(key.clone(), v);
        }
    }
    if map.get("readOnly") == Some(&Value::Bool(true)) {
        out.insert(READ_ONLY.into(), Value::Bool(true));
    }
    drop_read_only_required(map, &mut out);
    format(map, &mut out);
    if map.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(nullable(out));
    }
    Ok(Value::Object(out))
}

fn each_member(
    value: &Value,
    depth: usize,
    at: &mut String,
    what: &str,
) -> Result<Map<String, Value>, String> {
    let Value::Object(members) = value else {
        return Err(format!("{}: must be {what}", show(at)));
    };
    let mut out = Map::new();
    for (name, sub) in members {
        let len = at.len();
        at.push('/');
        at.push_str(&name.replace('~', "~0").replace('/', "~1"));
        out.insert(name.clone(), convert_at(sub, depth + 1, at)?);
        at.truncate(len);
    }
    Ok(out)
}

fn each_item(
    value: &Value,
    depth: usize,
    at: &mut String,
    what: &str,
) -> Result<Vec<Value>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{}: must be {what}", show(at)));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, sub) in items.iter().enumerate() {
        let len = at.len();
        at.push('/');
        at.push_str(&i.to_string());
        out.push(convert_at(sub, depth + 1, at)?);
        at.truncate(len);
    }
    Ok(out)
}

/// `required` names a read-only sibling: that applies to responses only.
fn drop_read_only_required(map: &Map<String, Value>, out: &mut Map<String, Value>) {
    let Some(props) = map.get("properties").and_then(Value::as_object) else {
        return;
    };
    let read_only = |name: &str| {
        props
            .get(name)
            .and_then(|p| p.get("readOnly"))
            .is_some_and(|r| r == &Value::Bool(true))
    };
    if let Some(Value::Array(required)) = out.get_mut("required") {
        required.retain(|n| !n.as_str().is_some_and(read_only));
        if required.is_empty() {
            out.remove("required");
        }
    }
}

/// Keeps the formats JSON Schema knows; OpenAPI's integer formats become
/// bounds.
fn format(map: &Map<String, Value>, out: &mut Map<String, Value>) {
    let Some(f) = map.get("format").and_then(Value::as_str) else {
        return;
    };
    let bounds = match f {
        "int32" => Some((json!(i32::MIN), json!(i32::MAX))),
        "int64" => Some((json!(i64::MIN), json!(i64::MAX))),
        "float" | "double" | "byte" | "binary" | "password" => None,
        other => {
            out.insert("format".into(), Value::String(other.into()));
            None
        }
    };
    if let Some((min, max)) = bounds {
        out.entry("minimum").or_insert(min);
        out.entry("maximum").or_insert(max);
    }
}

/// Admits `null` as well.
fn nullable(mut out: Map<String, Value>) -> Value {
    if let Some(Value::Array(values)) = out.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    match out.get("type").cloned() {
        Some(Value::String(t)) => {
            out.insert("type".into(), json!([t, "null"]));
            Value::Object(out)
        }
        Some(Value::Array(mut ts)) => {
            if !ts.contains(&json!("null")) {
                ts.push(json!("null"));
            }
            out.insert("type".into(), Value::Array(ts));
            Value::Object(out)
        }
        _ if ["allOf", "anyOf", "oneOf"]
            .iter()
            .any(|k| out.contains_key(*k)) =>
        {
            json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] })
        }
        _ => Value::Object(out),
    }
}

fn show(at: &str) -> &str {
    if at.is_empty() { "(schema)" } else { at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_dialect_is_rewritten() {
        let cases = [
            (
                json!({"type": "string", "nullable": true, "example": "x"}),
                json!({"type": ["string", "null"]}),
            ),
            (
                json!({"type": "string", "enum": ["A", "B"], "nullable": true}),
                json!({"type": ["string", "null"], "enum": ["A", "B", null]}),
            ),
            (
                json!({"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": true}),
                json!({"anyOf": [{"type": "null"}, {"allOf": [{"$ref": "#/components/schemas/X"}]}]}),
            ),
            (
                json!({"$ref": "#/components/schemas/X", "nullable": true, "readOnly": true}),
                json!({"$ref": "#/components/schemas/X"}),
            ),
            (
                json!({"type": "integer", "format": "int32"}),
                json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
            ),
            (
                json!({"type": "string", "format": "date-time", "x-foo": 1, "deprecated": true}),
                json!({"type": "string", "format": "date-time"}),
            ),
            (
                json!({"type": "number", "format": "double"}),
                json!({"type": "number"}),
            ),
            (
                json!({"type": "object", "required": ["id", "name"], "properties": {
                    "id": {"type": "string", "readOnly": true},
                    "name": {"type": "string", "nullable": false},
                }}),
                json!({"type": "object", "required": ["name"], "properties": {
                    "id": {"type": "string", READ_ONLY: true},
                    "name": {"type": "string"},
                }}),
            ),
            (
                json!({"type": "array", "items": {"type": "string", "example": ["a"]}}),
                json!({"type": "array", "items": {"type": "string"}}),
            ),
        ];
        for (from, to) in cases {
            assert_eq!(convert(&from).unwrap(), to, "{from}");
        }
    }

    #[test]
    fn bad_schemas_are_refused_with_their_location() {
        let e = convert(&json!({"properties": {"a": {"$ref": "other.json#/X"}}})).unwrap_err();
        assert!(e.contains("/properties/a") && e.contains("local"), "{e}");
        let e = convert(&json!({"allOf": {"type": "string"}})).unwrap_err();
        assert!(e.contains("/allOf"), "{e}");
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({ "items": deep });
        }
        assert!(convert(&deep).unwrap_err().contains("deeper"));
    }
}
