//! JSON request bodies against the operation's schema.
//!
//! The body is parsed strictly ([`super::json`]), then validated; each
//! violation becomes one message with its JSON pointer. Read-only fields
//! are refused, or cut out of the forwarded bytes when configured to strip
//! them. What is forwarded is the bytes that were validated.

use bytes::Bytes;

use super::config::{ReadOnly, ValidationConfig};
use super::store::Store;
use super::{json, report, strip};
use crate::error::Error;

/// Checks `body` against the schema at `loc`.
pub(crate) fn json(
    config: &ValidationConfig,
    store: &Store,
    loc: &str,
    body: Bytes,
) -> Result<Bytes, Error> {
    let value = json::parse(&body, config.max_depth).map_err(|m| invalid(config, vec![m]))?;
    let validator = store
        .validator(loc)
        .ok_or_else(|| Error::Internal(format!("no validator at {loc}")))?;
    if validator.is_valid(&value) {
        return Ok(body);
    }
    let errors: Vec<_> = validator.iter_errors(&value).collect();
    let read_only: Vec<Vec<String>> = errors
        .iter()
        .filter(|e| report::is_read_only(e))
        .map(report::tokens)
        .collect();
    let strip = config.read_only == ReadOnly::Strip;
    let mut messages = Vec::new();
    for e in &errors {
        if report::is_read_only(e) {
            if !strip {
                messages.push(report::message("", e));
            }
            continue;
        }
        // Whatever else is wrong inside a read-only field goes with it.
        let at = report::tokens(e);
        if !read_only.iter().any(|r| at.starts_with(r)) {
            messages.extend(report::messages("", e));
        }
    }
    if !messages.is_empty() || read_only.is_empty() {
        if messages.is_empty() {
            messages.push("body: does not match the schema".into());
        }
        return Err(invalid(config, messages));
    }
    // Only read-only fields are wrong and they are to be stripped.
    let text = std::str::from_utf8(&body).map_err(|e| Error::Internal(e.to_string()))?;
    let stripped = strip::remove(text, &read_only)
        .ok_or_else(|| Error::Internal("read-only field not found to strip".into()))?;
    let again = json::parse(stripped.as_bytes(), config.max_depth).map_err(Error::Internal)?;
    if !validator.is_valid(&again) {
        return Err(Error::Internal(
            "body invalid after stripping read-only fields".into(),
        ));
    }
    Ok(Bytes::from(stripped))
}

/// A 400 with at most `config.max_messages` distinct messages.
pub(crate) fn invalid(config: &ValidationConfig, mut messages: Vec<String>) -> Error {
    // The same violation can be found through two schemas (allOf branches).
    let mut seen = std::collections::HashSet::new();
    messages.retain(|m| seen.insert(m.clone()));
    let max = config.max_messages;
    if messages.len() > max {
        let more = messages.len() - (max - 1);
        messages.truncate(max - 1);
        messages.push(format!("… and {more} more problems"));
    }
    Error::InvalidBody { messages }
}
