//! Strict JSON parsing of request bodies.
//!
//! Refused, each with one plain message: a byte order mark, invalid UTF-8,
//! an empty body, duplicate object keys (compared after unescaping, so
//! `"id"` and `"\u0069d"` are the same key), nesting deeper than the
//! configured limit, anything after the value, and whatever serde_json
//! itself refuses (lone surrogates, control characters in strings, numbers
//! out of range, …). Recursion is bounded by the depth limit, which is
//! checked before descending, so no input can exhaust the stack.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one strict JSON value at most `max_depth` deep.
pub(crate) fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err("body: starts with a byte order mark (BOM), which JSON forbids".into());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("body: not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    if text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
        return Err("body: empty, a JSON value is required".into());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict {
        depth: 0,
        max: max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| format!("body: not valid JSON: {e}"))?;
    de.end()
        .map_err(|e| format!("body: unexpected data after the JSON value: {e}"))?;
    Ok(value)
}

/// Builds a [`Value`] one level deeper than its parent.
#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    max: usize,
}

impl Strict {
    fn enter<E: serde::de::Error>(&self) -> Result<Strict, E> {
        if self.depth >= self.max {
            return Err(E::custom(format_args!(
                "nested deeper than {} levels",
                self.max
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max: self.max,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format_args!("duplicate key {shown:?}")));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_plain_json() {
        assert_eq!(
            parse(b" {\"a\": [1, 2.5, null, true, \"\\u00e9\"]}\n", 32).unwrap(),
            json!({"a": [1, 2.5, null, true, "é"]})
        );
        assert_eq!(parse(b"[[[1]]]", 3).unwrap(), json!([[[1]]]));
    }

    #[test]
    fn refuses_what_a_parser_could_read_two_ways() {
        let deep_ok = "[".repeat(32) + &"]".repeat(32);
        assert!(parse(deep_ok.as_bytes(), 32).is_ok());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xEF\xBB\xBF{}".to_vec(), "byte order mark"),
            (b"{\"a\": \"\xff\"}".to_vec(), "UTF-8"),
            (b"{\"a\": \"\xc3\"}".to_vec(), "UTF-8"),
            (b"".to_vec(), "empty"),
            (b" \r\n".to_vec(), "empty"),
            (b"{\"id\": 1, \"id\": 2}".to_vec(), "duplicate key \"id\""),
            (
                b"{\"id\": 1, \"\\u0069d\": 2}".to_vec(),
                "duplicate key \"id\"",
            ),
            (
                b"[{\"a\": {\"b\": 1, \"b\": 1}}]".to_vec(),
                "duplicate key \"b\"",
            ),
            (b"{} x".to_vec(), "after the JSON value"),
            (b"{}{}".to_vec(), "after the JSON value"),
            (b"[1,]".to_vec(), "not valid JSON"),
            (b"{\"a\":1,}".to_vec(), "not valid JSON"),
            (b"{'a':1}".to_vec(), "not valid JSON"),
            (b"NaN".to_vec(), "not valid JSON"),
            (b"1e400".to_vec(), "not valid JSON"),
            (b"\"\\ud800\"".to_vec(), "not valid JSON"),
            (b"\"a\x01\"".to_vec(), "not valid JSON"),
            (b"/* c */ {}".to_vec(), "not valid JSON"),
            (
                ("[".repeat(33) + &"]".repeat(33)).into_bytes(),
                "deeper than 32",
            ),
            (
                ("{\"a\":".repeat(33) + "1" + &"}".repeat(33)).into_bytes(),
                "deeper than 32",
            ),
        ];
        for (input, want) in cases {
            let e = parse(&input, 32).unwrap_err();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn no_stack_overflow_on_huge_nesting() {
        for open in ["[", "{\"a\":", "[{\"a\":"] {
            let input = open.repeat(1_000_000);
            assert!(parse(input.as_bytes(), 100).is_err());
        }
    }
}
