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

impl Line<'_> {
    /// As tracing-subscriber's compact format writes the event (without
    /// colours): `2026-12-02T04:41:44.123456Z  INFO simgate::access:
    /// request method=GET path="/x" …`, strings quoted and escaped as
    /// `Debug` does, absent fields left out.
    pub(crate) fn write_text(&self, out: &mut String) {
        let _ = write!(
            out,
            "{}  INFO {TARGET}: request method={} path=",
            humantime::format_rfc3339_micros(SystemTime::now()),
            self.method
        );
        debug_str(out, self.path);
        out.push_str(" operation=");
        debug_str(out, self.operation);
        let _ = write!(out, " status={} decision=", self.status);
        debug_str(out, self.decision);
        if let Some(reason) = self.reason {
            out.push_str(" reason=");
            debug_str(out, reason);
        }
        let _ = write!(out, " latency_us={}", self.latency_us);
        if let Some(us) = self.upstream_us {
            let _ = write!(out, " upstream_us={us}");
        }
        out.push_str(" request_id=");
        debug_str(out, self.request_id);
        out.push_str(" trace_id=");
        debug_str(out, self.trace_id);
        out.push('\n');
    }

    /// As tracing-subscriber's JSON format with flattened events writes it:
    /// one object with `timestamp`, `level`, `message`, the fields and
    /// `target`.
    pub(crate) fn write_json(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":\"request\",\"method\":",
            humantime::format_rfc3339_micros(SystemTime::now()),
        );
        json_str(out, self.method);
        out.push_str(",\"path\":");
        json_str(out, self.path);
        out.push_str(",\"operation\":");
        json_str(out, self.operation);
        let _ = write!(out, ",\"status\":{},\"decision\":", self.status);
        json_str(out, self.decision);
        if let Some(reason) = self.reason {
            out.push_str(",\"reason\":");
            json_str(out, reason);
        }
        let _ = write!(out, ",\"latency_us\":{}", self.latency_us);
        if let Some(us) = self.upstream_us {
            let _ = write!(out, ",\"upstream_us\":{us}");
        }
        out.push_str(",\"request_id\":");
        json_str(out, self.request_id);
        out.push_str(",\"trace_id\":");
        json_str(out, self.trace_id);
        let _ = writeln!(out, ",\"target\":\"{TARGET}\"}}");
    }
}

/// `s` as `{:?}` writes it; printable ASCII without quotes or backslashes
/// (every path, id and operation in practice) is copied as it is.
fn debug_str(out: &mut String, s: &str) {
    if s.bytes().all(plain) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    if s.bytes().all(plain) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // A `String` holds valid UTF-8 and serde_json writes only that.
        let _ = serde_json::to_string(s).map(|quoted| out.push_str(&quoted));
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
