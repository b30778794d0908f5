//! What the audit layers know about one request, and the body capture.
//!
//! The outcome layer builds an [`AuditContext`] once the operation is
//! matched, wraps the request body in a [`super::tee`] (so whatever the
//! layers below read of it is kept) and puts the context into the request
//! extensions. The intent layer buffers the body that is about to be
//! forwarded, digests and redacts it, writes the intent and marks the
//! request as forwarded, so the outcome layer knows what to record at the
//! end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::Request;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::record::{Actor, BodySummary, Decision, Kind, Record};
use super::redact::Redactor;
use super::tee::{Seen, tee};
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
    /// What the layers below read of the body, as it arrived.
    seen: OnceLock<Arc<Seen>>,
    /// The body as forwarded (set by the intent layer).
    forwarded_body: OnceLock<Option<BodySummary>>,
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
            seen: OnceLock::new(),
            forwarded_body: OnceLock::new(),
            intent_seq: OnceLock::new(),
            forwarded: AtomicBool::new(false),
        }
    }

    /// The request id, for logs.
    pub fn request_id(&self) -> &str {
        self.template.request_id.as_deref().unwrap_or("-")
    }

    /// Wraps the request body so what the layers below read is kept.
    pub fn tee(&self, body: Body) -> Body {
        let (body, seen) = tee(body);
        let _ = self.seen.set(seen);
        body
    }

    /// Records the summary of the body as forwarded (once).
    pub fn set_forwarded_body(&self, body: Option<BodySummary>) {
        let _ = self.forwarded_body.set(body);
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

    /// The intent record: decision `allowed`, with the forwarded body.
    pub fn intent(&self) -> Record {
        let mut r = self.template.clone();
        r.kind = Kind::Intent;
        r.with_body(self.forwarded_body.get().and_then(Option::as_ref))
    }

    /// An outcome record. The body is the one forwarded, else whatever the
    /// layers below read completely (e.g. validation), else none. Its
    /// redacted copy is left out when the intent carried it already; the
    /// digest is always there.
    pub fn outcome(
        &self,
        decision: Decision,
        reason: Option<String>,
        redactor: &Redactor,
    ) -> Record {
        let read = || {
            self.seen
                .get()
                .and_then(|s| s.complete_body())
                .and_then(|b| summarize(&b, redactor))
        };
        let body = match self.forwarded_body.get() {
            Some(forwarded) => forwarded.clone(),
            None => read(),
        };
        let mut r = self.template.clone().with_body(body.as_ref());
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
