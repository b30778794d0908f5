//! What the audit layers know about one request, and the body capture.
//!
//! The outcome layer builds an [`AuditContext`] once the operation is
//! matched, buffers the request body (already bounded by the body limit) to
//! digest and redact it, and puts the context into the request extensions;
//! the intent layer reads it, writes the intent and marks the request as
//! forwarded, so the outcome layer knows what to record at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::Request;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::record::{Actor, BodySummary, Decision, Kind, Record};
use super::redact::Redactor;
use crate::auth::Principal;
use crate::body::{Body, BoxError, full};
use crate::net::PeerAddr;
use crate::request_id::RequestId;
use crate::routes::{Operation, PathParams};

/// One request's audit state, shared by the audit layers through an
/// `Arc<AuditContext>` request extension.
#[derive(Debug)]
pub struct AuditContext {
    template: Record,
    start: Instant,
    body: OnceLock<Option<BodySummary>>,
    intent_seq: OnceLock<u64>,
    forwarded: AtomicBool,
}

impl AuditContext {
    /// The context of a request matched to `op`, from its extensions
    /// (request id, principal, path parameters, peer).
    pub fn new<B>(req: &Request<B>, op: &Operation) -> Self {
        let ext = req.extensions();
        let resource_id = ext
            .get::<PathParams>()
            .and_then(|p| p.get("id"))
            .map(str::to_owned)
            .or_else(|| id_from_template(&op.path_template, req.uri().path()));
        AuditContext {
            template: Record {
                kind: Kind::Outcome,
                request_id: ext.get::<RequestId>().map(|id| id.to_string()),
                operation_id: op.operation_id.clone(),
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
                resource_id,
                actor: Actor::from_principal(ext.get::<Arc<Principal>>()),
                peer: ext.get::<PeerAddr>().map(|p| p.0.to_string()),
                decision: Decision::Allowed,
                reason: None,
                upstream_status: None,
                latency_ms: None,
                body_sha256: None,
                body_bytes: None,
                body: None,
                created_id: None,
                intent_seq: None,
            },
            start: Instant::now(),
            body: OnceLock::new(),
            intent_seq: OnceLock::new(),
            forwarded: AtomicBool::new(false),
        }
    }

    /// The request id, for logs.
    pub fn request_id(&self) -> &str {
        self.template.request_id.as_deref().unwrap_or("-")
    }

    /// Records the body summary (once).
    pub fn set_body(&self, body: Option<BodySummary>) {
        let _ = self.body.set(body);
    }

    /// Records that the intent was written with `seq`.
    pub fn set_intent(&self, seq: u64) {
        let _ = self.intent_seq.set(seq);
    }

    /// Marks the request as handed to the upstream.
    pub fn set_forwarded(&self) {
        self.forwarded.store(true, Ordering::Release);
    }

    /// Whether the request was handed to the upstream.
    pub fn forwarded(&self) -> bool {
        self.forwarded.load(Ordering::Acquire)
    }

    /// The intent record: decision `allowed`, with the redacted body.
    pub fn intent(&self) -> Record {
        let mut r = self.template.clone();
        r.kind = Kind::Intent;
        r.with_body(self.body.get().and_then(Option::as_ref))
    }

    /// An outcome record. The redacted body is included only when no intent
    /// carried it already; the digest always is.
    pub fn outcome(&self, decision: Decision, reason: Option<String>) -> Record {
        let mut r = self
            .template
            .clone()
            .with_body(self.body.get().and_then(Option::as_ref));
        r.decision = decision;
        r.reason = reason;
        r.latency_ms = Some(self.start.elapsed().as_secs_f64() * 1000.0);
        r.intent_seq = self.intent_seq.get().copied();
        if r.intent_seq.is_some() {
            r.body = None;
        }
        r
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

/// Buffers the request body, digests it and redacts it if it is JSON; the
/// request goes on with the same bytes. An empty body has no summary.
pub async fn capture(
    req: Request<Body>,
    redactor: &Redactor,
) -> Result<(Request<Body>, Option<BodySummary>), BoxError> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let summary = (!bytes.is_empty()).then(|| BodySummary {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len(),
        redacted: serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .map(|mut v| {
                redactor.redact(&mut v);
                v
            }),
    });
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
