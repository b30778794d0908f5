//! The durable intent record, just before the request is forwarded.
//!
//! For a matched mutation that passed authorization, rate limiting and
//! validation, it buffers the body exactly as it will be forwarded, writes
//! the intent record (who, what, the body's SHA-256 and redacted copy) and
//! waits until the record is on stable storage; only then does the request
//! go on. It notes the intent's `seq` and the forwarded body in the
//! request's [`RequestRecord`], from which the outcome is written at the end.
//!
//! Rejects: a mutation whose intent cannot be written, with
//! [`Error::AuditUnavailable`] (503), unless `fail_open` is set, in which
//! case it goes on with a warning. Reads and unmatched requests pass
//! untouched.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::context::{Facts, capture, record_for};
use super::record::Kind;
use super::{Audit, ResponseFuture};
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::record::RequestRecord;
use crate::request_id::RequestId;
use crate::routes::Operation;

/// Writes the intent of every mutation durably before it is forwarded.
#[derive(Debug, Clone)]
pub struct AuditIntentLayer {
    audit: Audit,
}

impl AuditIntentLayer {
    /// Writes to `audit`.
    pub fn new(audit: Audit) -> Self {
        AuditIntentLayer { audit }
    }
}

impl<S> Layer<S> for AuditIntentLayer {
    type Service = AuditIntent<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditIntent {
            inner,
            audit: self.audit.clone(),
        }
    }
}

/// Service of [`AuditIntentLayer`].
#[derive(Debug, Clone)]
pub struct AuditIntent<S> {
    inner: S,
    audit: Audit,
}

impl<S> Service<Request<Body>> for AuditIntent<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(op) = req
            .extensions()
            .get::<Arc<Operation>>()
            .filter(|op| op.mutating)
            .cloned()
        else {
            return Box::pin(self.inner.call(req));
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let audit = self.audit.clone();
        Box::pin(async move {
            // The body as it will be forwarded (after validation).
            let (req, body) = capture(req, audit.redactor()).await?;
            let intent =
                record_for(Kind::Intent, &Facts::of_request(&req, &op)).with_body(body.as_ref());
            let id = req
                .extensions()
                .get::<RequestId>()
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into());
            let seq = match audit.append(&intent).await {
                Ok(appended) => Some(appended.seq),
                Err(e) if audit.fail_open() => {
                    tracing::warn!(
                        request_id = %id,
                        error = %e,
                        "audit intent NOT written; forwarding anyway (fail_open)"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!(
                        request_id = %id,
                        error = %e,
                        "audit intent not written; mutation refused"
                    );
                    return Err(Error::AuditUnavailable.into());
                }
            };
            if let Some(record) = req.extensions().get::<RequestRecord>() {
                record.set_intent(seq, body);
            }
            super::call_boxed(&mut inner, req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::{audit, operation, records, stack};
    use crate::body::full;
    use http::Method;
    use http::header::CONTENT_TYPE;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceBuilder, ServiceExt};

    fn patch() -> Request<Body> {
        let body = r#"[{"op":"replace","path":"/attributes/password","value":"hunter2"},{"op":"replace","path":"/description","value":"d"}]"#;
        let mut req = Request::patch("/beta/sim-integrations/abc")
            .header(CONTENT_TYPE, "application/json-patch+json")
            .body(full(body))
            .unwrap();
        req.extensions_mut().insert(operation(
            "patchSIMAttributes",
            Method::PATCH,
            "/beta/sim-integrations/{id}",
        ));
        req
    }

    #[tokio::test]
    async fn intent_is_durable_before_forwarding_and_outcome_links_to_it() {
        let (audit, dir) = audit(|_| {});
        let path = dir.path().join("audit.jsonl");
        let svc = stack(&audit, None, None, move |_req: Request<Body>| {
            // The intent is already in the file when the upstream is called.
            let text = std::fs::read_to_string(&path).unwrap();
            async move {
                assert_eq!(text.lines().count(), 1);
                assert!(text.contains("\"kind\":\"intent\""));
                Ok::<_, BoxError>(Response::new(crate::body::empty()))
            }
        });
        let res = svc.oneshot(patch()).await.unwrap();
        assert_eq!(res.status(), 200);
        let recs = records(&dir);
        assert_eq!(recs.len(), 2);
        let (intent, outcome) = (&recs[0], &recs[1]);
        assert_eq!(intent["kind"], "intent");
        assert_eq!(intent["decision"], "allowed");
        assert_eq!(intent["resource_id"], "abc");
        assert_eq!(intent["body"][0]["value"], "[REDACTED]");
        assert_eq!(intent["body"][0]["path"], "/attributes/password");
        assert_eq!(intent["body"][1]["value"], "d");
        assert_eq!(outcome["intent_seq"], intent["seq"]);
        assert_eq!(
            outcome["body"],
            serde_json::Value::Null,
            "body recorded once"
        );
        assert_eq!(outcome["body_sha256"], intent["body_sha256"]);
        assert_eq!(outcome["upstream_status"], 200);
        assert!(
            !std::fs::read_to_string(dir.path().join("audit.jsonl"))
                .unwrap()
                .contains("hunter2")
        );
    }

    #[tokio::test]
    async fn unwritable_trail_refuses_without_forwarding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        for fail_open in [false, true] {
            let mut config = crate::audit::AuditConfig::with_path(&path);
            config.fail_open = fail_open;
            let audit = Audit::start(&config).unwrap();
            let forwarded = Arc::new(AtomicUsize::new(0));
            let count = forwarded.clone();
            let svc = ServiceBuilder::new()
                .layer(AuditIntentLayer::new(audit))
                .service_fn(move |_req: Request<Body>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, BoxError>(Response::new(crate::body::empty())) }
                });
            let result = svc.oneshot(patch()).await;
            if fail_open {
                assert!(result.is_ok());
                assert_eq!(forwarded.load(Ordering::SeqCst), 1);
            } else {
                let err = result.unwrap_err();
                assert!(matches!(
                    err.downcast_ref::<Error>(),
                    Some(Error::AuditUnavailable)
                ));
                assert_eq!(forwarded.load(Ordering::SeqCst), 0);
            }
        }
    }

    #[tokio::test]
    async fn notes_the_intent_in_the_record_and_ignores_reads() {
        use http_body_util::BodyExt;
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(AuditIntentLayer::new(audit))
            .service_fn(|req: Request<Body>| async move {
                let seq = req
                    .extensions()
                    .get::<RequestRecord>()
                    .and_then(|r| r.intent().map(|i| i.seq));
                Ok::<_, BoxError>(Response::new(full(format!("{seq:?}"))))
            });
        let text = |res: Response<Body>| async move {
            res.into_body().collect().await.unwrap().to_bytes()
        };
        let mut req = patch();
        let record = RequestRecord::new(&req);
        req.extensions_mut().insert(record);
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(text(res).await, "Some(Some(1))");
        let recs = records(&dir);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["kind"], "intent");
        assert!(recs[0]["body_sha256"].is_string());
        let mut read = Request::get("/beta/sim-integrations")
            .body(crate::body::empty())
            .unwrap();
        read.extensions_mut().insert(operation(
            "getSIMIntegrations",
            Method::GET,
            "/beta/sim-integrations",
        ));
        let res = svc.oneshot(read).await.unwrap();
        assert_eq!(text(res).await, "None");
        assert_eq!(records(&dir).len(), 1);
    }
}
