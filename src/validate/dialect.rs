//! OpenAPI schema objects, rewritten as plain JSON Schema for the
//! `jsonschema` crate: OpenAPI 3.0 schemas as draft 4, OpenAPI 3.1 schemas
//! (which are JSON Schema 2020-12: `type` arrays, `null`, `const`, `$defs`,
//! `$ref` with siblings) as 2020-12 ([`Dialect`]).
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
//! - Annotations (`example`, `xml`, `externalDocs`, `deprecated`,
//!   `writeOnly`, `x-*`) are dropped.
//! - A `discriminator` on a `oneOf`/`anyOf` of `$ref`s decides the branch:
//!   the property is required and must be one of the mapped values, and the
//!   value's branch alone is checked, so its messages are precise (a value
//!   matching two branches is no longer ambiguous).
//!
//! In 3.1 documents `nullable` means nothing and `$ref` siblings apply, as
//! JSON Schema 2020-12 says; `readOnly`, formats and `discriminator` are
//! handled as above.

use serde_json::{Map, Value, json};

/// The keyword `readOnly: true` becomes; it fails on any value.
pub(crate) const READ_ONLY: &str = "x-simgate-read-only";

/// Nesting beyond this in a document's schema is refused (documents are
/// config, but conversion must not recurse without bound).
const MAX_SCHEMA_DEPTH: usize = 64;

/// Which JSON Schema dialect a document's schemas speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAPI 3.0: extended draft 4.
    OpenApi30,
    /// OpenAPI 3.1: JSON Schema 2020-12.
    OpenApi31,
}

impl Dialect {
    /// The dialect of an OpenAPI document (by its `openapi` version).
    pub(crate) fn of(document: &Value) -> Dialect {
        match document.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.1.") => Dialect::OpenApi31,
            _ => Dialect::OpenApi30,
        }
    }
}

/// Converts one schema; `Err` says what is wrong and where (a JSON pointer
/// relative to `schema`).
pub(crate) fn convert(schema: &Value, dialect: Dialect) -> Result<Value, String> {
    convert_at(schema, dialect, 0, &mut String::new())
}

fn convert_at(schema: &Value, d: Dialect, depth: usize, at: &mut String) -> Result<Value, String> {
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
    let v31 = d == Dialect::OpenApi31;
    if let Some(r) = map.get("$ref") {
        let local = match r.as_str() {
            Some(r) if r.starts_with("#/") || r == "#" => r,
            _ => {
                return Err(format!(
                    "{}: only local $refs (\"#/...\") are supported, found {r}",
                    show(at)
                ));
            }
        };
        if !v31 {
            return Ok(json!({ "$ref": local }));
        }
    }
    let mut out = Map::new();
    for (key, value) in map {
        let len = at.len();
        at.push('/');
        at.push_str(&key.replace('~', "~0").replace('/', "~1"));
        let converted = match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "dependentSchemas" => Some(
                Value::Object(each_member(value, d, depth, at, "an object of schemas")?),
            ),
            "additionalProperties" | "items" | "not" if value.is_object() => {
                Some(convert_at(value, d, depth + 1, at)?)
            }
            "items" if value.is_array() => {
                Some(Value::Array(each_item(value, d, depth, at, "schemas")?))
            }
            "prefixItems" => Some(Value::Array(each_item(value, d, depth, at, "schemas")?)),
            "additionalItems"
            | "contains"
            | "propertyNames"
            | "if"
            | "then"
            | "else"
            | "unevaluatedProperties"
            | "unevaluatedItems"
                if value.is_object() =>
            {
                Some(convert_at(value, d, depth + 1, at)?)
            }
            "nullable" if v31 => None,
            "allOf" | "anyOf" | "oneOf" => Some(Value::Array(each_item(
                value,
                d,
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
    discriminate(map, &mut out);
    if !v31 && map.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(nullable(out));
    }
    Ok(Value::Object(out))
}

/// Rewrites a `oneOf`/`anyOf` of `$ref`s with a `discriminator` into: the
/// property is required and one of the known values, and for each value,
/// either the property has another value or the value's schema holds.
fn discriminate(map: &Map<String, Value>, out: &mut Map<String, Value>) {
    let Some(prop) = map
        .get("discriminator")
        .and_then(|d| d.get("propertyName"))
        .and_then(Value::as_str)
    else {
        return;
    };
    let key = if out.contains_key("oneOf") {
        "oneOf"
    } else {
        "anyOf"
    };
    let Some(Value::Array(branches)) = out.get(key) else {
        return;
    };
    let mut refs: Vec<&str> = Vec::new();
    for b in branches {
        match b.get("$ref").and_then(Value::as_str) {
            Some(r) => refs.push(r),
            // An inline branch: no name to map, keep plain oneOf semantics.
            None => return,
        }
    }
    let mut cases: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(mapping)) = map.get("discriminator").and_then(|d| d.get("mapping")) {
        for (value, target) in mapping {
            let Some(t) = target.as_str() else { continue };
            let target = if t.starts_with('#') {
                t.to_owned()
            } else {
                format!("#/components/schemas/{t}")
            };
            cases.push((value.clone(), target));
        }
    }
    for r in &refs {
        if !cases.iter().any(|(_, t)| t == r)
            && let Some(name) = r.rsplit('/').next()
        {
            cases.push((name.to_owned(), (*r).to_owned()));
        }
    }
    if cases.is_empty() {
        return;
    }
    let values: Vec<Value> = cases
        .iter()
        .map(|(v, _)| Value::String(v.clone()))
        .collect();
    let mut all = match out.remove("allOf") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    out.remove(key);
    all.push(json!({ "required": [prop], "properties": { prop: { "enum": values } } }));
    for (value, target) in cases {
        all.push(json!({ "anyOf": [
            { "not": { "required": [prop], "properties": { prop: { "enum": [value] } } } },
            { "$ref": target }
        ] }));
    }
    out.insert("allOf".into(), Value::Array(all));
}

fn each_member(
    value: &Value,
    d: Dialect,
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
        out.insert(name.clone(), convert_at(sub, d, depth + 1, at)?);
        at.truncate(len);
    }
    Ok(out)
}

fn each_item(
    value: &Value,
    d: Dialect,
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
        out.push(convert_at(sub, d, depth + 1, at)?);
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
    fn openapi_31_keeps_2020_12_keywords_and_ref_siblings() {
        let from = json!({"$ref": "#/components/schemas/X", "description": "d",
            "type": ["string", "null"], "const": "a", "nullable": true,
            "$defs": {"Y": {"type": "integer", "readOnly": true}}});
        let to = json!({"$ref": "#/components/schemas/X", "description": "d",
            "type": ["string", "null"], "const": "a",
            "$defs": {"Y": {"type": "integer", READ_ONLY: true}}});
        assert_eq!(convert(&from, Dialect::OpenApi31).unwrap(), to);
        assert_eq!(
            convert(
                &json!({"type": "string", "nullable": true}),
                Dialect::OpenApi31
            )
            .unwrap(),
            json!({"type": "string"})
        );
    }

    #[test]
    fn a_discriminator_picks_the_branch() {
        let from = json!({"oneOf": [{"$ref": "#/components/schemas/Dog"}, {"$ref": "#/components/schemas/Cat"}],
            "discriminator": {"propertyName": "kind", "mapping": {"dog": "Dog"}}});
        let got = convert(&from, Dialect::OpenApi30).unwrap();
        assert!(got.get("oneOf").is_none(), "{got}");
        let all = got["allOf"].as_array().unwrap();
        assert_eq!(
            all[0],
            json!({"required": ["kind"], "properties": {"kind": {"enum": ["dog", "Cat"]}}})
        );
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[1]["anyOf"][1],
            json!({"$ref": "#/components/schemas/Dog"})
        );
    }

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
            assert_eq!(convert(&from, Dialect::OpenApi30).unwrap(), to, "{from}");
        }
    }

    #[test]
    fn bad_schemas_are_refused_with_their_location() {
        let v30 = Dialect::OpenApi30;
        let e = convert(
            &json!({"properties": {"a": {"$ref": "other.json#/X"}}}),
            v30,
        )
        .unwrap_err();
        assert!(e.contains("/properties/a") && e.contains("local"), "{e}");
        let e = convert(&json!({"allOf": {"type": "string"}}), v30).unwrap_err();
        assert!(e.contains("/allOf"), "{e}");
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({ "items": deep });
        }
        assert!(convert(&deep, v30).unwrap_err().contains("deeper"));
    }
}
