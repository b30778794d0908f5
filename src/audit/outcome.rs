//! Layer (2): the outcome record of every matched mutation.
//!
//! Sits right after operation matching, so the principal and the operation
//! are in the extensions. For an audited operation it shares an
//! [`AuditContext`] with the intent layer below and wraps the request body
//! so that whatever the layers below read of it is kept (see
//! [`super::tee`]; it reads nothing itself, so a request refused before its
//! body is read is never buffered). Once the layers below have answered it
//! writes one outcome record — with the digest and redacted copy of the body
//! as forwarded, or as validation read it — and waits until it is durable:
//!
//! | what happened below | decision |
//! |---|---|
//! | upstream answered (any status) | `allowed` + `upstream_status`, `created_id` for a create; `reason` says so when it was resent after a 401 to the upstream credential |
//! | no valid upstream credential (nothing sent) | `error`, `reason` names the credential and why |
//! | forwarded, then an error (unreachable, timeout) | `upstream_error` |
//! | refused by authorization | `forbidden` |
//! | refused by the rate limit | `rate_limited` |
//! | refused by validation (body, media type, size) | `invalid` |
//! | anything else before forwarding (audit unavailable, …) | `error` |
//!
//! A request dropped midway (client gone, request timeout) still gets its
//! outcome from a drop guard: `upstream_error` if it had been forwarded (the
//! upstream's outcome is unknown), `error` otherwise.
//!
//! It rejects nothing itself: errors from below are recorded and passed on
//! unchanged. Failing to write the outcome
//! is logged and does not change the response. Requests without a matched
//! operation, and reads unless `record_reads`, pass through untouched.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::context::AuditContext;
use super::record::{Decision, Record};
use super::unauthenticated::Claim;
use super::{Audit, ResponseFuture};
use crate::body::{Body, BoxError, full};
use crate::error::Error;
use crate::routes::Operation;

/// Largest create response buffered to find the new id.
pub const MAX_CREATED_RESPONSE: u64 = 64 * 1024;

/// Records the outcome of every matched mutation.
#[derive(Debug, Clone)]
pub struct AuditOutcomeLayer {
    audit: Audit,
}

impl AuditOutcomeLayer {
    /// Writes to `audit`.
    pub fn new(audit: Audit) -> Self {
        AuditOutcomeLayer { audit }
    }
}

impl<S> Layer<S> for AuditOutcomeLayer {
    type Service = AuditOutcome<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditOutcome {
            inner,
            audit: self.audit.clone(),
        }
    }
}

/// Service of [`AuditOutcomeLayer`].
#[derive(Debug, Clone)]
pub struct AuditOutcome<S> {
    inner: S,
    audit: Audit,
}

impl<S> Service<Request<Body>> for AuditOutcome<S>
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
        let op = req
            .extensions()
            .get::<Arc<Operation>>()
            .filter(|op| self.audit.audits_operation(op))
            .cloned();
        let Some(op) = op else {
            return Box::pin(self.inner.call(req));
        };
        if let Some(claim) = req.extensions().get::<Claim>() {
            claim.take();
        }
        let ctx = Arc::new(AuditContext::new(&req, &op));
        let mut req = req.map(|body| ctx.tee(body));
        req.extensions_mut().insert(ctx.clone());
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let audit = self.audit.clone();
        Box::pin(async move {
            let mut guard = Guard {
                audit: Some(audit.clone()),
                ctx: ctx.clone(),
            };
            let result = super::call_boxed(&mut inner, req).await;
            let redactor = audit.redactor();
            let (result, record) = match result {
                Ok(res) => {
                    let (res, created) = created_id(res, &op).await;
                    let mut record = ctx.outcome(Decision::Allowed, None, redactor);
                    match res {
                        Ok(res) => {
                            record.upstream_status = Some(res.status().as_u16());
                            if let Some(r) = res
                                .extensions()
                                .get::<crate::credentials::CredentialRetried>()
                            {
                                record.reason = Some(format!(
                                    "upstream answered 401 to upstream credential {:?}; sent again once with a new token",
                                    r.credential
                                ));
                            }
                            record.created_id = created;
                            (Ok(res), record)
                        }
                        Err(e) => {
                            record.decision = Decision::UpstreamError;
                            record.reason = Some(e.to_string());
                            (Err(e), record)
                        }
                    }
                }
                Err(e) => {
                    // Refused for want of an upstream token: not sent.
                    let not_sent = matches!(
                        crate::error::classify(&*e),
                        Some(Error::UpstreamCredentialUnavailable { .. })
                    );
                    let decision = if ctx.forwarded() && !not_sent {
                        Decision::UpstreamError
                    } else {
                        Decision::for_refusal(&*e)
                    };
                    let reason = reason(&*e);
                    (Err(e), ctx.outcome(decision, Some(reason), redactor))
                }
            };
            guard.audit = None;
            if let Err(e) = audit.log().append(&record).await {
                tracing::error!(request_id = %ctx.request_id(), error = %e, "audit outcome not written");
            }
            result
        })
    }
}

/// The reason text for an error: our own errors' messages (which never
/// carry tokens or body content), else a generic one.
pub(crate) fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(limit) = crate::limits::body_too_large(e) {
        return Error::PayloadTooLarge { limit }.to_string();
    }
    match e.downcast_ref::<Error>() {
        Some(err) => err.to_string(),
        None if e.is::<tower::timeout::error::Elapsed>() => "request timed out".into(),
        None => "request failed".into(),
    }
}

/// For a successful create with a small JSON answer, the new id from it.
async fn created_id(
    res: Response<Body>,
    op: &Operation,
) -> (Result<Response<Body>, BoxError>, Option<String>) {
    let small_json = op.method == Method::POST
        && res.status().is_success()
        && res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"))
        && res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= MAX_CREATED_RESPONSE);
    if !small_json {
        return (Ok(res), None);
    }
    let (parts, body) = res.into_parts();
    match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
            (Ok(Response::from_parts(parts, full(bytes))), id)
        }
        Err(e) => (
            Err(Error::UpstreamUnavailable(format!("response body: {e}")).into()),
            None,
        ),
    }
}

/// Writes the outcome of a request dropped before it finished.
struct Guard {
    audit: Option<Audit>,
    ctx: Arc<AuditContext>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(audit) = self.audit.take() else {
            return;
        };
        let redactor = audit.redactor();
        let record: Record = if self.ctx.forwarded() {
            self.ctx.outcome(
                Decision::UpstreamError,
                Some("cancelled after forwarding (client gone or request timeout); the upstream outcome is unknown".into()),
                redactor,
            )
        } else {
            self.ctx.outcome(
                Decision::Error,
                Some("cancelled before forwarding (client gone or request timeout)".into()),
                redactor,
            )
        };
        audit.log().append_detached(&record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::{audit, operation, records};
    use crate::auth::Principal;
    use crate::routes::PathParams;
    use std::time::Duration;
    use tower::{ServiceBuilder, ServiceExt};

    fn principal() -> Arc<Principal> {
        Arc::new(Principal {
            subject: "svc-sim".into(),
            client_key: "svc-sim".into(),
            issuer: "https://idp".into(),
            roles: vec!["sim-admin".into()],
            scopes: vec![],
            token_id: Some("jti-9".into()),
        })
    }

    fn create(body: &str) -> Request<Body> {
        let mut req = Request::post("/beta/sim-integrations")
            .header(CONTENT_TYPE, "application/json")
            .body(full(body.to_owned()))
            .unwrap();
        req.extensions_mut().insert(operation(
            "createSIMIntegration",
            Method::POST,
            "/beta/sim-integrations",
        ));
        req.extensions_mut().insert(principal());
        req
    }

    fn json_response(body: &str) -> Response<Body> {
        let mut res = Response::new(full(body.to_owned()));
        res.headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().unwrap());
        res.headers_mut()
            .insert(CONTENT_LENGTH, body.len().to_string().parse().unwrap());
        res
    }

    #[tokio::test]
    async fn allowed_create_records_status_and_new_id() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(AuditOutcomeLayer::new(audit))
            .service_fn(|req: Request<Body>| async move {
                let ctx = req.extensions().get::<Arc<AuditContext>>().unwrap();
                ctx.set_forwarded();
                let body = req.into_body().collect().await?.to_bytes();
                assert_eq!(
                    &body[..],
                    br#"{"name":"x","attributes":{"password":"hunter2"}}"#
                );
                Ok::<_, BoxError>(json_response(r#"{"id":"new-1","name":"x"}"#))
            });
        let res = svc
            .oneshot(create(
                r#"{"name":"x","attributes":{"password":"hunter2"}}"#,
            ))
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"id":"new-1","name":"x"}"#);
        let recs = records(&dir);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r["kind"], "outcome");
        assert_eq!(r["decision"], "allowed");
        assert_eq!(r["upstream_status"], 200);
        assert_eq!(r["created_id"], "new-1");
        assert_eq!(r["operation_id"], "createSIMIntegration");
        assert_eq!(r["actor"]["subject"], "svc-sim");
        assert_eq!(r["actor"]["token_id"], "jti-9");
        assert_eq!(r["body"]["attributes"], "[REDACTED]");
        assert!(r["latency_ms"].as_f64().is_some());
        assert!(
            !std::fs::read_to_string(dir.path().join("audit.jsonl"))
                .unwrap()
                .contains("hunter2")
        );
    }

    #[tokio::test]
    async fn refusals_are_recorded_with_their_decision() {
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::Forbidden {
                    operation: "deleteSIMIntegration".into(),
                },
                "forbidden",
            ),
            (
                Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                    headers: Default::default(),
                },
                "rate_limited",
            ),
            (
                Error::InvalidBody {
                    messages: vec!["secret detail hunter2".into()],
                },
                "invalid",
            ),
            (Error::AuditUnavailable, "error"),
        ];
        for (err, decision) in cases {
            let (audit, dir) = audit(|_| {});
            let err = Arc::new(std::sync::Mutex::new(Some(err)));
            let svc = ServiceBuilder::new()
                .layer(AuditOutcomeLayer::new(audit))
                .service_fn(move |_req: Request<Body>| {
                    let e = err.lock().unwrap().take().unwrap();
                    async move { Err::<Response<Body>, BoxError>(e.into()) }
                });
            let mut req = Request::delete("/beta/sim-integrations/abc")
                .body(crate::body::empty())
                .unwrap();
            req.extensions_mut().insert(operation(
                "deleteSIMIntegration",
                Method::DELETE,
                "/beta/sim-integrations/{id}",
            ));
            req.extensions_mut()
                .insert(PathParams(vec![("id".into(), "abc".into())]));
            let e = svc.oneshot(req).await.unwrap_err();
            assert!(
                e.downcast_ref::<Error>().is_some(),
                "error passed on unchanged"
            );
            let recs = records(&dir);
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0]["decision"], decision);
            assert_eq!(recs[0]["resource_id"], "abc");
            assert_eq!(recs[0]["actor"], "unauthenticated");
            assert!(!recs[0].to_string().contains("hunter2"));
        }
    }

    #[tokio::test]
    async fn forwarded_then_failed_is_upstream_error() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(AuditOutcomeLayer::new(audit))
            .service_fn(|req: Request<Body>| async move {
                req.extensions()
                    .get::<Arc<AuditContext>>()
                    .unwrap()
                    .set_forwarded();
                Err::<Response<Body>, BoxError>(Error::UpstreamTimeout.into())
            });
        svc.oneshot(create("{}")).await.unwrap_err();
        let recs = records(&dir);
        assert_eq!(recs[0]["decision"], "upstream_error");
        assert_eq!(recs[0]["reason"], "upstream timed out");
    }

    #[tokio::test]
    async fn cancelled_requests_still_get_an_outcome() {
        for forwarded in [false, true] {
            let (audit, dir) = audit(|_| {});
            let svc = ServiceBuilder::new()
                .layer(AuditOutcomeLayer::new(audit.clone()))
                .service_fn(move |req: Request<Body>| async move {
                    if forwarded {
                        req.extensions()
                            .get::<Arc<AuditContext>>()
                            .unwrap()
                            .set_forwarded();
                    }
                    std::future::pending::<()>().await;
                    Ok::<_, BoxError>(Response::new(crate::body::empty()))
                });
            let timed_out =
                tokio::time::timeout(Duration::from_millis(20), svc.oneshot(create("{}"))).await;
            assert!(timed_out.is_err());
            // The guard's record is queued; one more awaited record orders after it.
            let probe = crate::audit::test_support::record(0);
            audit.log().append(&probe).await.unwrap();
            let recs = records(&dir);
            let want = if forwarded { "upstream_error" } else { "error" };
            assert_eq!(recs[0]["decision"], want);
            assert!(recs[0]["reason"].as_str().unwrap().contains("cancelled"));
        }
    }

    #[tokio::test]
    async fn unmatched_requests_and_reads_pass_untouched() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(AuditOutcomeLayer::new(audit))
            .service_fn(|req: Request<Body>| async move {
                assert!(req.extensions().get::<Arc<AuditContext>>().is_none());
                Ok::<_, BoxError>(Response::new(crate::body::empty()))
            });
        let mut read = Request::get("/beta/sim-integrations")
            .body(crate::body::empty())
            .unwrap();
        read.extensions_mut().insert(operation(
            "getSIMIntegrations",
            Method::GET,
            "/beta/sim-integrations",
        ));
        svc.clone().oneshot(read).await.unwrap();
        svc.oneshot(Request::post("/x").body(crate::body::empty()).unwrap())
            .await
            .unwrap();
        assert!(records(&dir).is_empty());
    }

    #[tokio::test]
    async fn reads_are_recorded_when_configured() {
        let (audit, dir) = audit(|c| c.record_reads = true);
        let svc = ServiceBuilder::new()
            .layer(AuditOutcomeLayer::new(audit))
            .service_fn(
                |_req: Request<Body>| async move { Ok::<_, BoxError>(json_response("[]")) },
            );
        let mut read = Request::get("/beta/sim-integrations")
            .body(crate::body::empty())
            .unwrap();
        read.extensions_mut().insert(operation(
            "getSIMIntegrations",
            Method::GET,
            "/beta/sim-integrations",
        ));
        svc.oneshot(read).await.unwrap();
        let recs = records(&dir);
        assert_eq!(recs[0]["operation_id"], "getSIMIntegrations");
        assert_eq!(recs[0]["created_id"], serde_json::Value::Null);
    }
}
