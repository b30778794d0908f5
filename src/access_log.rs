//! One access-log line per request, from its [`RequestRecord`], at `info`
//! on the `simgate::access` target:
//!
//! ```text
//! method=DELETE path="/beta/sim-integrations/abc" operation="deleteSIMIntegration"
//!   status=403 decision="forbidden" reason="not authorized to call deleteSIMIntegration"
//!   latency_us=412 request_id="…" trace_id="…"
//! ```
//!
//! The operation is the matched operationId, or `unmatched` for requests
//! refused before matching (401, 404, …); refusals carry their decision and
//! reason. Query strings, headers, tokens and bodies are never logged.
//!
//! `RUST_LOG` and `[log] level` decide whether the line is written, as for
//! every other event. When simgate's own logging is installed
//! ([`crate::telemetry::init`]), the line is formatted here, in the shape
//! the subscriber gives its events (compact text or flattened JSON), and
//! appended straight to the log writer's buffer: no per-field dynamic
//! dispatch and no char-by-char escaping for the common case, about a
//! microsecond less per request. A program embedding the library with its
//! own subscriber gets the line as a tracing event.

use std::fmt::Write as _;
use std::time::SystemTime;

use http::StatusCode;

use crate::record::RequestRecord;

/// The tracing target of access-log lines.
const TARGET: &str = "simgate::access";

/// Writes the access-log line of a finished request.
pub fn log(record: &RequestRecord, status: StatusCode, decision: &str) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let line = Line {
        method: record.method().as_str(),
        path: record.path(),
        operation: record.operation_name(),
        status: status.as_u16(),
        decision,
        reason: record.failure().map(|f| f.reason.as_str()),
        latency_us: micros(record.start().elapsed()),
        upstream_us: record.upstream().map(|(_, d)| micros(d)),
        request_id: record.request_id().map(|id| id.as_str()).unwrap_or("-"),
        trace_id: record.trace_id().unwrap_or("-"),
    };
    if crate::telemetry::write_access(&line) {
        return;
    }
    tracing::info!(
        target: TARGET,
        method = %line.method,
        path = line.path,
        operation = line.operation,
        status = line.status,
        decision,
        reason = line.reason,
        latency_us = line.latency_us,
        upstream_us = line.upstream_us,
        request_id = line.request_id,
        trace_id = line.trace_id,
        "request"
    );
}

/// The fields of one access-log line.
pub(crate) struct Line<'a> {
    method: &'a str,
    path: &'a str,
    operation: &'a str,
    status: u16,
    decision: &'a str,
    reason: Option<&'a str>,
    latency_us: u64,
    upstream_us: Option<u64>,
    request_id: &'a str,
    trace_id: &'a str,
}

/// One field's value, as the subscriber would record it.
enum Value<'a> {
    /// Recorded with `%` (`Display`): bare in text, a string in JSON.
    Shown(&'a str),
    /// A `&str` (`Debug`): quoted and escaped in text, a string in JSON.
    Quoted(&'a str),
    Number(u64),
}

impl Line<'_> {
    /// The fields in the order the event lists them; absent ones are `None`
    /// and left out, as the subscriber leaves out an empty `Option`.
    fn fields(&self) -> [(&'static str, Option<Value<'_>>); 10] {
        use Value::{Number, Quoted, Shown};
        [
            ("method", Some(Shown(self.method))),
            ("path", Some(Quoted(self.path))),
            ("operation", Some(Quoted(self.operation))),
            ("status", Some(Number(u64::from(self.status)))),
            ("decision", Some(Quoted(self.decision))),
            ("reason", self.reason.map(Quoted)),
            ("latency_us", Some(Number(self.latency_us))),
            ("upstream_us", self.upstream_us.map(Number)),
            ("request_id", Some(Quoted(self.request_id))),
            ("trace_id", Some(Quoted(self.trace_id))),
        ]
    }

    /// As tracing-subscriber's compact format writes the event (without
    /// colours): `2026-12-02T04:41:44.123456Z  INFO simgate::access:
    /// request method=GET path="/x" …`, strings quoted and escaped as
    /// `Debug` does.
    pub(crate) fn write_text(&self, out: &mut String) {
        let now = humantime::format_rfc3339_micros(SystemTime::now());
        let _ = write!(out, "{now}  INFO {TARGET}: request");
        for (name, value) in self.fields() {
            let Some(value) = value else { continue };
            let _ = write!(out, " {name}=");
            match value {
                Value::Shown(s) => out.push_str(s),
                Value::Quoted(s) => debug_str(out, s),
                Value::Number(n) => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        out.push('\n');
    }

    /// As tracing-subscriber's JSON format with flattened events writes it:
    /// one object with `timestamp`, `level`, `message`, the fields and
    /// `target`.
    pub(crate) fn write_json(&self, out: &mut String) {
        let now = humantime::format_rfc3339_micros(SystemTime::now());
        let _ = write!(
            out,
            "{{\"timestamp\":\"{now}\",\"level\":\"INFO\",\"message\":\"request\""
        );
        for (name, value) in self.fields() {
            let Some(value) = value else { continue };
            let _ = write!(out, ",\"{name}\":");
            match value {
                Value::Shown(s) | Value::Quoted(s) => json_str(out, s),
                Value::Number(n) => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        let _ = writeln!(out, ",\"target\":\"{TARGET}\"}}");
    }
}

/// `s` as `{:?}` writes it.
fn debug_str(out: &mut String, s: &str) {
    quoted(out, s, |out, s| {
        let _ = write!(out, "{s:?}");
    });
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    // A `str` is valid UTF-8 and serde_json writes only that.
    quoted(out, s, |out, s| {
        let _ = serde_json::to_string(s).map(|q| out.push_str(&q));
    });
}

/// `s` in quotes, copied as it is when it needs no escaping (every path,
/// id and operation in practice), else as `escape` writes it.
fn quoted(out: &mut String, s: &str, escape: impl FnOnce(&mut String, &str)) {
    if s.bytes().all(plain) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        escape(out, s);
    }
}

/// A byte that needs no escaping in Rust's `Debug` or in JSON.
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, reason: Option<&'a str>) -> Line<'a> {
        Line {
            method: "DELETE",
            path,
            operation: "deleteSIMIntegration",
            status: 403,
            decision: "forbidden",
            reason,
            latency_us: 412,
            upstream_us: None,
            request_id: "rid-1",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    }

    #[test]
    fn text_has_the_compact_shape_and_escapes_as_debug_does() {
        let mut out = String::new();
        line("/beta/x\"y\u{7}é", Some("not authorized")).write_text(&mut out);
        let (stamp, rest) = out.split_once("  ").unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
        assert_eq!(
            rest,
            format!(
                "INFO simgate::access: request method=DELETE path={:?} \
                 operation=\"deleteSIMIntegration\" status=403 decision=\"forbidden\" \
                 reason=\"not authorized\" latency_us=412 request_id=\"rid-1\" \
                 trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"\n",
                "/beta/x\"y\u{7}é"
            )
        );
    }

    #[test]
    fn json_is_one_object_with_the_fields_and_without_absent_ones() {
        let mut out = String::new();
        let mut l = line("/beta/x\"y\u{7}é", None);
        l.upstream_us = Some(300);
        l.write_json(&mut out);
        assert!(out.ends_with("}\n") && out.lines().count() == 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["path"], "/beta/x\"y\u{7}é");
        assert_eq!(v["status"], 403);
        assert_eq!(v["upstream_us"], 300);
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["target"], "simgate::access");
        assert!(v.get("reason").is_none());
        assert!(humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
    }
}
