//! W3C Trace Context: the `traceparent` of every request, taken from the
//! client when valid, generated otherwise, and sent upstream.
//!
//! The gateway is one hop of the trace: the upstream request keeps the
//! client's trace id and flags, with a fresh parent id (the gateway's own
//! span), and the client's `tracestate` as sent. The trace id goes into the
//! request extensions ([`TraceContext`]) for the access log and the audit
//! records.
//!
//! Refused (replaced by a fresh context, and any `tracestate` dropped, as the
//! recommendation says): a `traceparent` that is repeated, not
//! `version-traceid-parentid-flags` in lowercase hex, version `ff`, an
//! all-zero trace or parent id, or a version `00` header with anything
//! after the flags. Later versions are read by their first four fields.
//!
//! ```
//! use simgate::trace_context::TraceContext;
//! let tc = TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(tc.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(tc.child().header().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! ```

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower::{Layer, Service};

/// The `traceparent` header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// One request's trace context (the gateway's span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    parent_id: [u8; 16],
    flags: [u8; 2],
}

impl TraceContext {
    /// A new trace (nothing sampled yet).
    pub fn generate() -> TraceContext {
        let mut trace_id = [0u8; 32];
        hex_into(&mut trace_id, &crate::random::bytes16());
        if trace_id.iter().all(|b| *b == b'0') {
            trace_id[31] = b'1';
        }
        TraceContext {
            trace_id,
            parent_id: fresh_parent_id(),
            flags: *b"00",
        }
    }

    /// A valid `traceparent` value, else `None`.
    pub fn parse(value: &[u8]) -> Option<TraceContext> {
        if value.len() < 55 {
            return None;
        }
        let (version, rest) = value.split_at(2);
        if !is_hex(version) || version == b"ff" || rest.first() != Some(&b'-') {
            return None;
        }
        let trace_id: [u8; 32] = rest.get(1..33)?.try_into().ok()?;
        let parent_id: [u8; 16] = rest.get(34..50)?.try_into().ok()?;
        let flags: [u8; 2] = rest.get(51..53)?.try_into().ok()?;
        let dashes = rest.get(33) == Some(&b'-') && rest.get(50) == Some(&b'-');
        let tail = &rest[53..];
        let tail_ok = if version == b"00" {
            tail.is_empty()
        } else {
            tail.is_empty() || tail.first() == Some(&b'-')
        };
        let valid = dashes
            && tail_ok
            && is_hex(&trace_id)
            && is_hex(&parent_id)
            && is_hex(&flags)
            && trace_id.iter().any(|b| *b != b'0')
            && parent_id.iter().any(|b| *b != b'0');
        valid.then_some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace with a fresh parent id: the gateway's hop.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            parent_id: fresh_parent_id(),
            ..*self
        }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        // Only lowercase hex digits are ever stored.
        std::str::from_utf8(&self.trace_id).unwrap_or("")
    }

    /// The `traceparent` value (version 00).
    pub fn header(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }

    /// The `traceparent` value, built on the stack.
    fn header_bytes(&self) -> [u8; 55] {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        out[3..35].copy_from_slice(&self.trace_id);
        out[36..52].copy_from_slice(&self.parent_id);
        out[53..55].copy_from_slice(&self.flags);
        out
    }
}

fn fresh_parent_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    hex_into(&mut out, &crate::random::bytes16()[..8]);
    if out.iter().all(|b| *b == b'0') {
        out[15] = b'1';
    }
    out
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

fn is_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Sets [`TraceContext`] and the upstream `traceparent`.
#[derive(Debug, Clone, Default)]
pub struct TraceContextLayer;

impl<S> Layer<S> for TraceContextLayer {
    type Service = SetTraceContext<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SetTraceContext { inner }
    }
}

/// Service of [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct SetTraceContext<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SetTraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut values = req.headers().get_all(&TRACEPARENT).iter();
        let client = match (values.next(), values.next()) {
            (Some(v), None) => TraceContext::parse(v.as_bytes()),
            _ => None,
        };
        let ctx = match client {
            Some(c) => c.child(),
            None => {
                req.headers_mut().remove(&TRACESTATE);
                TraceContext::generate()
            }
        };
        if let Ok(v) = HeaderValue::from_bytes(&ctx.header_bytes()) {
            req.headers_mut().insert(TRACEPARENT.clone(), v);
        }
        req.extensions_mut().insert(ctx);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_valid_and_refuses_the_rest() {
        let tc = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert_eq!(tc.header(), VALID);
        let later = format!("cc{}-what-the-future-holds", &VALID[2..]);
        assert!(TraceContext::parse(later.as_bytes()).is_some());
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(TraceContext::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        let g = TraceContext::generate();
        assert!(TraceContext::parse(g.header().as_bytes()).is_some());
    }

    async fn upstream_headers(headers: &[(&str, &str)]) -> (http::HeaderMap, TraceContext) {
        let svc = ServiceBuilder::new().layer(TraceContextLayer).service_fn(
            |req: Request<()>| async move {
                let tc = *req.extensions().get::<TraceContext>().unwrap();
                Ok::<_, Infallible>((req.headers().clone(), tc))
            },
        );
        let mut req = Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        svc.oneshot(req.body(()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn keeps_the_clients_trace_with_a_new_parent() {
        let (h, tc) = upstream_headers(&[("traceparent", VALID), ("tracestate", "k=v")]).await;
        let sent = h["traceparent"].to_str().unwrap();
        assert_eq!(tc.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
        assert_ne!(sent, VALID, "the gateway's hop has its own parent id");
        assert_eq!(h["tracestate"], "k=v");
    }

    #[tokio::test]
    async fn generates_one_for_missing_invalid_or_repeated_headers() {
        for headers in [
            vec![],
            vec![("traceparent", "garbage"), ("tracestate", "k=v")],
            vec![("traceparent", VALID), ("traceparent", VALID)],
        ] {
            let (h, tc) = upstream_headers(&headers).await;
            assert_eq!(h.get_all("traceparent").iter().count(), 1);
            assert_ne!(tc.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(TraceContext::parse(h["traceparent"].as_bytes()).is_some());
            assert!(h.get("tracestate").is_none(), "{headers:?}");
        }
    }
}
