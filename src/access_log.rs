//! One access-log line per request, from its [`RequestRecord`], at `info`
//! on the `simgate::access` target:
//!
//! ```text
//! method=DELETE path=/beta/sim-integrations/abc operation=deleteSIMIntegration
//!   status=403 decision=forbidden reason="not authorized to call deleteSIMIntegration"
//!   latency_us=412 upstream_us=- request_id=… trace_id=…
//! ```
//!
//! The operation is the matched operationId, or `unmatched` for requests
//! refused before matching (401, 404, …); refusals carry their decision and
//! reason. Query strings, headers, tokens and bodies are never logged. The
//! line goes through the subscriber's non-blocking writer (see
//! [`crate::telemetry`]), so a slow disk never stalls a request.

use http::StatusCode;

use crate::record::RequestRecord;

/// Writes the access-log line of a finished request.
pub fn log(record: &RequestRecord, status: StatusCode, decision: &str) {
    if !tracing::enabled!(target: "simgate::access", tracing::Level::INFO) {
        return;
    }
    let latency_us = micros(record.start().elapsed());
    let upstream_us = record.upstream().map(|(_, d)| micros(d));
    let reason = record.failure().map(|f| f.reason.as_str());
    tracing::info!(
        target: "simgate::access",
        method = %record.method(),
        path = record.path(),
        operation = record.operation_name(),
        status = status.as_u16(),
        decision,
        reason,
        latency_us,
        upstream_us,
        request_id = record.request_id().map(|id| id.as_str()).unwrap_or("-"),
        trace_id = record.trace_id().unwrap_or("-"),
        "request"
    );
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
