//! Audit records from what a request carries, and the body capture.
//!
//! [`record_for`] builds the common part of a request's records (who, what,
//! where) from its facts; the intent layer fills it from the request
//! extensions, the outcome from the [`crate::record::RequestRecord`].
//! [`capture`] buffers a body about to be forwarded and [`summarize`]s it
//! (digest, size, redacted copy).

use std::sync::Arc;

use http::{Method, Request};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::record::{Actor, BodySummary, Decision, Kind, Record};
use super::redact::Redactor;
use crate::auth::Principal;
use crate::body::{Body, BoxError, full};
use crate::net::PeerAddr;
use crate::request_id::RequestId;
use crate::routes::{Operation, PathParams};
use crate::trace_context::TraceContext;

/// What a request's audit records say about it.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The request id.
    pub request_id: Option<&'a RequestId>,
    /// The trace id.
    pub trace_id: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The path (no query).
    pub path: &'a str,
    /// The TCP peer.
    pub peer: Option<PeerAddr>,
    /// The principal, if authenticated.
    pub principal: Option<&'a Arc<Principal>>,
    /// The operation.
    pub operation: &'a Operation,
    /// Its path parameters, when matched.
    pub params: Option<&'a PathParams>,
}

impl<'a> Facts<'a> {
    /// The facts of a request matched to `op`, from its extensions.
    pub fn of_request<B>(req: &'a Request<B>, op: &'a Operation) -> Facts<'a> {
        let ext = req.extensions();
        Facts {
            request_id: ext.get::<RequestId>(),
            trace_id: ext.get::<TraceContext>().map(TraceContext::trace_id),
            method: req.method(),
            path: req.uri().path(),
            peer: ext.get::<PeerAddr>().copied(),
            principal: ext.get::<Arc<Principal>>(),
            operation: op,
            params: ext.get::<PathParams>(),
        }
    }
}

/// A record of `kind` with the facts filled in, decision `allowed`.
pub fn record_for(kind: Kind, facts: &Facts<'_>) -> Record {
    let op = facts.operation;
    Record {
        kind,
        request_id: facts.request_id.map(|id| id.to_string()),
        trace_id: facts.trace_id.map(str::to_owned),
        operation_id: op.operation_id.clone(),
        method: facts.method.to_string(),
        path: facts.path.to_owned(),
        resource_id: facts
            .params
            .and_then(|p| p.get("id"))
            .map(str::to_owned)
            .or_else(|| id_from_template(&op.path_template, facts.path)),
        actor: Actor::from_principal(facts.principal),
        peer: facts.peer.map(|p| p.0.to_string()),
        decision: Decision::Allowed,
        reason: None,
        upstream_status: None,
        latency_ms: None,
        body_sha256: None,
        body_bytes: None,
        body: None,
        created_id: None,
        intent_seq: None,
    }
}

/// The `{id}` segment of `path` under `template`, when they align.
pub fn id_from_template(template: &str, path: &str) -> Option<String> {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    t.iter()
        .zip(&p)
        .find(|(t, _)| **t == "{id}")
        .map(|(_, p)| (*p).to_owned())
}

/// Digest, size and (for JSON) redacted copy of a body; `None` if empty.
pub fn summarize(bytes: &[u8], redactor: &Redactor) -> Option<BodySummary> {
    (!bytes.is_empty()).then(|| BodySummary {
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len(),
        redacted: serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .map(|mut v| {
                redactor.redact(&mut v);
                v
            }),
    })
}

/// Buffers the request body and summarizes it; the request goes on with
/// the same bytes.
pub async fn capture(
    req: Request<Body>,
    redactor: &Redactor,
) -> Result<(Request<Body>, Option<BodySummary>), BoxError> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let summary = summarize(&bytes, redactor);
    Ok((Request::from_parts(parts, full(bytes)), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_comes_from_the_template() {
        assert_eq!(
            id_from_template("/beta/sim-integrations/{id}", "/beta/sim-integrations/abc"),
            Some("abc".into())
        );
        assert_eq!(
            id_from_template(
                "/beta/sim-integrations/{id}/rule",
                "/beta/sim-integrations/x/rule"
            ),
            Some("x".into())
        );
        assert_eq!(
            id_from_template("/beta/sim-integrations", "/beta/sim-integrations"),
            None
        );
        assert_eq!(id_from_template("/a/{id}", "/a/b/c"), None);
    }

    #[tokio::test]
    async fn capture_digests_and_redacts_without_changing_the_body() {
        let r = Redactor::new(["attributes"]);
        let raw = r#"{"name":"n","attributes":{"password":"hunter2"}}"#;
        let req = Request::post("/").body(full(raw)).unwrap();
        let (req, summary) = capture(req, &r).await.unwrap();
        let summary = summary.unwrap();
        assert_eq!(summary.bytes, raw.len());
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(raw)));
        assert_eq!(summary.redacted.unwrap()["attributes"], "[REDACTED]");
        let sent = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, raw.as_bytes());

        let req = Request::post("/").body(full("not json")).unwrap();
        let (_, summary) = capture(req, &r).await.unwrap();
        assert_eq!(summary.unwrap().redacted, None);
        let req = Request::delete("/").body(crate::body::empty()).unwrap();
        assert_eq!(capture(req, &r).await.unwrap().1, None);
    }
}
