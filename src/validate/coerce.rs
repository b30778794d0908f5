//! Text to JSON, as far as a schema says: parameter values and form fields
//! arrive as strings, and are validated as the types their schemas name.
//!
//! A string becomes an integer, a number, a boolean or `null` only when the
//! schema admits that type and the text is exactly its spelling (`12`,
//! `1.5`, `true`, `null`); otherwise it stays a string, and the validator
//! reports the mismatch (`expected integer, got string`). The forwarded
//! request is never rewritten: this only decides what is checked.

use serde_json::{Map, Number, Value};

use super::store::{Shape, Store};

/// One text value as the JSON the schema at `shape` expects.
pub(crate) fn scalar(raw: &str, shape: &Shape) -> Value {
    for t in &shape.types {
        let v = match t.as_str() {
            "integer" => raw
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| raw.parse::<u64>().map(Value::from))
                .ok(),
            "number" => raw
                .parse::<i64>()
                .map(Value::from)
                .ok()
                .or_else(|| {
                    raw.parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                })
                .filter(|_| !raw.starts_with('+') && !raw.contains(['i', 'I', 'n', 'N'])),
            "boolean" => match raw {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            "null" if raw == "null" || raw.is_empty() => Some(Value::Null),
            _ => None,
        };
        if let Some(v) = v {
            return v;
        }
    }
    Value::String(raw.to_owned())
}

/// A list of text values as an array of the item schema's type.
pub(crate) fn array<'a>(
    store: &Store,
    shape: &Shape,
    items: impl IntoIterator<Item = &'a str>,
) -> Value {
    let item = shape
        .items
        .as_deref()
        .map(|loc| store.shape(loc))
        .unwrap_or_default();
    Value::Array(items.into_iter().map(|v| scalar(v, &item)).collect())
}

/// Name/value pairs as an object whose members take their property's type.
pub(crate) fn object<'a>(
    store: &Store,
    shape: &Shape,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Value {
    let mut out = Map::new();
    for (name, value) in pairs {
        let member = shape
            .properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, loc)| store.shape(loc))
            .unwrap_or_default();
        out.insert(name.to_owned(), scalar(value, &member));
    }
    Value::Object(out)
}

/// `k1,v1,k2,v2` as pairs (an odd trailing name gets an empty value).
pub(crate) fn flat_pairs(raw: &str) -> Vec<(&str, &str)> {
    let items: Vec<&str> = raw.split(',').collect();
    items
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or("")))
        .collect()
}

/// `k1=v1,k2=v2` as pairs.
pub(crate) fn assigned_pairs(raw: &str) -> Vec<(&str, &str)> {
    raw.split(',')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect()
}

/// Splits an `application/x-www-form-urlencoded` text (a query string or a
/// form body) into decoded name/value pairs; `+` is a space. `Err` names
/// the first pair whose percent-encoding is broken or not UTF-8.
pub(crate) fn form_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_form(name)
            .ok_or_else(|| "a name has invalid percent-encoding or is not UTF-8".to_owned())?;
        let value = decode_form(value)
            .ok_or_else(|| format!("{name}: invalid percent-encoding or not UTF-8"))?;
        out.push((name, value));
    }
    Ok(out)
}

fn decode_form(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |k: usize| bytes.get(k).and_then(|&c| char::from(c).to_digit(16));
                let (hi, lo) = (hex(i + 1)?, hex(i + 2)?);
                // Two hex digits: at most 0xff.
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(types: &[&str]) -> Shape {
        Shape {
            types: types.iter().map(|t| t.to_string()).collect(),
            ..Shape::default()
        }
    }

    #[test]
    fn scalars_take_the_schema_type_when_spelled_exactly() {
        assert_eq!(scalar("12", &shape(&["integer"])), json!(12));
        assert_eq!(scalar("abc", &shape(&["integer"])), json!("abc"));
        assert_eq!(scalar("1.5", &shape(&["integer"])), json!("1.5"));
        assert_eq!(scalar("1.5", &shape(&["number"])), json!(1.5));
        assert_eq!(scalar("NaN", &shape(&["number"])), json!("NaN"));
        assert_eq!(scalar("true", &shape(&["boolean"])), json!(true));
        assert_eq!(scalar("True", &shape(&["boolean"])), json!("True"));
        assert_eq!(scalar("null", &shape(&["integer", "null"])), json!(null));
        assert_eq!(scalar("7", &shape(&["string"])), json!("7"));
        assert_eq!(scalar("7", &shape(&[])), json!("7"));
    }

    #[test]
    fn form_text_is_split_and_decoded_strictly() {
        assert_eq!(
            form_pairs("a=1&b=x+y%21&&c").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y!".to_owned()),
                ("c".to_owned(), String::new())
            ]
        );
        assert!(form_pairs("a=%ZZ").is_err());
        assert!(form_pairs("a=%FF").is_err());
        assert_eq!(flat_pairs("k,v,k2,v2"), [("k", "v"), ("k2", "v2")]);
        assert_eq!(assigned_pairs("k=v,k2=v2"), [("k", "v"), ("k2", "v2")]);
    }
}
