//! Schema violations as plain messages: `<JSON pointer>: <reason>`, e.g.
//! `/statusMap: expected object, got string`.
//!
//! Messages name locations and expectations, never the offending values
//! (bodies carry credentials in `attributes`).

use std::fmt::Write as _;

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use super::dialect::READ_ONLY;

/// The message custom keyword [`READ_ONLY`] fails with.
pub(crate) const READ_ONLY_REASON: &str = "read-only, must not be sent";

/// Appends RFC 6901 escaped `token` to `out` as one more reference token.
pub(crate) fn push_token(out: &mut String, token: &str) {
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// A pointer for display: the whole body is `body`.
pub(crate) fn show(pointer: &str) -> &str {
    if pointer.is_empty() { "body" } else { pointer }
}

/// The JSON type name of a value, as schemas spell it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether the error is a `readOnly` field that was sent.
pub(crate) fn is_read_only(e: &ValidationError<'_>) -> bool {
    matches!(e.kind(), ValidationErrorKind::Custom { keyword, message }
        if keyword == READ_ONLY || message == READ_ONLY_REASON)
}

/// The decoded instance path of an error.
pub(crate) fn tokens(e: &ValidationError<'_>) -> Vec<String> {
    e.instance_path()
        .segments()
        .map(|s| match s {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

/// The messages of one error: usually one, [`message`]; a discriminated
/// `oneOf` (see `dialect.rs`) that failed reports its chosen branch's own
/// violations instead of "matches none".
pub(crate) fn messages(prefix: &str, e: &ValidationError<'_>) -> Vec<String> {
    if let ValidationErrorKind::AnyOf { context } = e.kind()
        && let [first, second] = context.as_slice()
        && let [not] = first.as_slice()
        && matches!(not.kind(), ValidationErrorKind::Not { .. })
        && !second.is_empty()
    {
        return second.iter().flat_map(|b| messages(prefix, b)).collect();
    }
    vec![message(prefix, e)]
}

/// `<prefix><instance path>: <reason>`.
pub(crate) fn message(prefix: &str, e: &ValidationError<'_>) -> String {
    let mut at = prefix.to_owned();
    for t in tokens(e) {
        push_token(&mut at, &t);
    }
    if let ValidationErrorKind::Required { property } = e.kind() {
        push_token(&mut at, property.as_str().unwrap_or("?"));
        return format!("{}: required, missing", show(&at));
    }
    format!("{}: {}", show(&at), reason(e))
}

fn reason(e: &ValidationError<'_>) -> String {
    let got = type_name(e.instance());
    match e.kind() {
        ValidationErrorKind::Type { kind } => format!("expected {}, got {got}", types(kind)),
        ValidationErrorKind::Enum { options } => match options.as_ref() {
            Value::Array(values) => format!("must be one of {}", list(values)),
            _ => "is not one of the allowed values".into(),
        },
        ValidationErrorKind::Constant { .. } => "is not the allowed constant".into(),
        ValidationErrorKind::Custom { message, .. } => message.clone(),
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            // `nullable` wraps a oneOf as anyOf [null, oneOf]: say what the
            // oneOf says.
            let inner = context.iter().find_map(|branch| match branch.as_slice() {
                [one]
                    if matches!(one.kind(), ValidationErrorKind::OneOfMultipleValid { .. })
                        && one.instance_path() == e.instance_path() =>
                {
                    Some(reason(one))
                }
                _ => None,
            });
            if let Some(inner) = inner {
                return inner;
            }
            branch_types(context, e.instance_path()).map_or_else(
                || "matches none of the allowed shapes".into(),
                |expected| format!("expected {expected}, got {got}"),
            )
        }
        ValidationErrorKind::OneOfMultipleValid { context } => {
            let valid: Vec<String> = context
                .iter()
                .enumerate()
                .filter(|(_, errors)| errors.is_empty())
                .map(|(i, _)| format!("#{}", i + 1))
                .collect();
            format!(
                "matches {} of the {} allowed shapes ({}) but must match exactly one",
                if valid.len() == 2 {
                    "two".to_owned()
                } else {
                    valid.len().to_string()
                },
                context.len(),
                alternatives(&valid.iter().map(String::as_str).collect::<Vec<_>>())
                    .replace(" or ", " and ")
            )
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!("unknown fields {}", quoted(unexpected))
        }
        ValidationErrorKind::Format { format } => format!("is not a valid {format}"),
        ValidationErrorKind::MinLength { limit } => format!("shorter than {limit} characters"),
        ValidationErrorKind::MaxLength { limit } => format!("longer than {limit} characters"),
        ValidationErrorKind::MinItems { limit } => format!("fewer than {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("more than {limit} items"),
        ValidationErrorKind::MinProperties { limit } => format!("fewer than {limit} fields"),
        ValidationErrorKind::MaxProperties { limit } => format!("more than {limit} fields"),
        ValidationErrorKind::Minimum { limit } => format!("less than {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("greater than {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("not greater than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("not less than {limit}"),
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("not a multiple of {multiple_of}")
        }
        ValidationErrorKind::Pattern { pattern } => format!("does not match {pattern}"),
        ValidationErrorKind::UniqueItems => "has duplicate items".into(),
        ValidationErrorKind::Not { .. } | ValidationErrorKind::FalseSchema => {
            "is not allowed here".into()
        }
        _ => e.masked().to_string(),
    }
}

fn types(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => t.as_str().to_owned(),
        TypeKind::Multiple(set) => {
            let mut names: Vec<&str> = set.iter().map(|t| t.as_str()).collect();
            // `null` reads best last: "string or null".
            names.sort_by_key(|n| *n == "null");
            alternatives(&names)
        }
    }
}

/// For a `oneOf`/`anyOf` whose branches each failed on their type alone,
/// the types they expected.
fn branch_types(
    context: &[Vec<ValidationError<'static>>],
    at: &jsonschema::paths::Location,
) -> Option<String> {
    let mut names = Vec::new();
    for branch in context {
        let [e] = branch.as_slice() else {
            return None;
        };
        if e.instance_path() != at {
            return None;
        }
        match e.kind() {
            ValidationErrorKind::Type {
                kind: TypeKind::Single(t),
            } => names.push(t.as_str()),
            ValidationErrorKind::Type {
                kind: TypeKind::Multiple(set),
            } => names.extend(set.iter().map(|t| t.as_str())),
            _ => return None,
        }
    }
    names.dedup();
    (!names.is_empty()).then(|| alternatives(&names))
}

/// `a`, `a or b`, `a, b or c`.
fn alternatives(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn list(values: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().take(12).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{v}");
    }
    if values.len() > 12 {
        out.push_str(", …");
    }
    out
}

fn quoted(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(12).map(|n| format!("{n:?}")).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(schema: Value, instance: Value) -> Vec<String> {
        let v = jsonschema::draft4::new(&schema).unwrap();
        v.iter_errors(&instance).map(|e| message("", &e)).collect()
    }

    #[test]
    fn reasons_are_plain() {
        let cases = [
            (
                json!({"properties": {"statusMap": {"type": "object"}}}),
                json!({"statusMap": "x"}),
                "/statusMap: expected object, got string",
            ),
            (
                json!({"properties": {"n": {"type": ["string", "null"]}}}),
                json!({"n": 1}),
                "/n: expected string or null, got integer",
            ),
            (
                json!({"required": ["name"]}),
                json!({}),
                "/name: required, missing",
            ),
            (
                json!({"type": "object"}),
                json!([]),
                "body: expected object, got array",
            ),
            (
                json!({"properties": {"t": {"enum": ["RULE"]}}}),
                json!({"t": "X"}),
                "/t: must be one of \"RULE\"",
            ),
            (
                json!({"items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}),
                json!([1.5]),
                "/0: expected string or integer, got number",
            ),
            (
                json!({"properties": {"a/b": {"format": "date-time", "type": "string"}}}),
                json!({"a/b": "yesterday"}),
                "/a~1b: is not a valid date-time",
            ),
        ];
        for (schema, instance, want) in cases {
            let v = jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap();
            let got: Vec<String> = v.iter_errors(&instance).map(|e| message("", &e)).collect();
            assert_eq!(got, vec![want.to_owned()], "{schema}");
        }
        // A value valid under two branches of a oneOf says so.
        let v = jsonschema::draft4::new(
            &json!({"oneOf": [{"type": "integer"}, {"minimum": 0}, {"type": "string"}]}),
        )
        .unwrap();
        let got: Vec<String> = v.iter_errors(&json!(3)).map(|e| message("", &e)).collect();
        assert_eq!(
            got,
            ["body: matches two of the 3 allowed shapes (#1 and #2) but must match exactly one"]
        );
        // Values never appear in messages.
        let got = messages(
            json!({"properties": {"p": {"maxLength": 2}}}),
            json!({"p": "s3cr3t"}),
        );
        assert!(!got[0].contains("s3cr3t"), "{got:?}");
    }
}
