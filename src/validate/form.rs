//! `application/x-www-form-urlencoded` bodies, field by field.
//!
//! The body is split into decoded fields (strictly: broken
//! percent-encoding or non-UTF-8 text is refused), each field becomes the
//! JSON its property's schema names (a field repeated or declared as an
//! array becomes an array; see [`super::coerce`]), and the resulting object
//! is validated against the operation's schema, one message per violation
//! (`/age: expected integer, got string`). Read-only fields are refused.
//! What is forwarded is the bytes as sent.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::check::invalid;
use super::config::ValidationConfig;
use super::store::Store;
use super::{coerce, report};
use crate::error::Error;

/// Checks a form body against the schema at `loc`.
pub(crate) fn check(
    config: &ValidationConfig,
    store: &Store,
    loc: &str,
    body: Bytes,
) -> Result<Bytes, Error> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        invalid(
            config,
            vec![format!(
                "body: not valid UTF-8 (at byte {})",
                e.valid_up_to()
            )],
        )
    })?;
    let fields = coerce::form_pairs(text.trim_end_matches(['\r', '\n']))
        .map_err(|e| invalid(config, vec![format!("body: {e}")]))?;
    let shape = store.shape(loc);
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in fields {
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    let mut object = Map::new();
    let mut messages = Vec::new();
    for (name, values) in grouped {
        let member = shape
            .properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| store.shape(l))
            .unwrap_or_default();
        let value = if member.is("array") {
            coerce::array(store, &member, values.iter().map(String::as_str))
        } else {
            if values.len() > 1 {
                let mut at = String::new();
                report::push_token(&mut at, &name);
                messages.push(format!("{at}: given more than once"));
            }
            // The first value stands for the field in the other checks.
            coerce::scalar(values.first().map_or("", String::as_str), &member)
        };
        object.insert(name, value);
    }
    let value = Value::Object(object);
    let validator = store
        .validator(loc)
        .ok_or_else(|| Error::Internal(format!("no validator at {loc}")))?;
    messages.extend(
        validator
            .iter_errors(&value)
            .flat_map(|e| report::messages("", &e)),
    );
    if messages.is_empty() {
        Ok(body)
    } else {
        Err(invalid(config, messages))
    }
}
