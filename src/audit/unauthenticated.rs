//! Layer (1): mutation attempts refused before the operation is matched.
//!
//! Sits before authentication (and the failed-auth limiter). It lets every
//! request through; when one that could be audited (a mutating method, or
//! any with `record_reads`) comes back as an error that the outcome layer
//! did not take over — refused by authentication (`unauthenticated`) or by
//! the failed-auth limiter (`rate_limited`) — it looks the operation up and,
//! if the request would have matched an audited operation, records the
//! attempt with actor `"unauthenticated"` and waits until it is durable.
//! Requests that match no operation (404, 405) are not recorded, and the
//! body of an unauthenticated request is never read.
//!
//! The outcome layer marks the requests it records through a [`Claim`] in
//! the extensions, so a request refused after matching is recorded once.
//! Rejects nothing; a failure to record is logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::context::id_from_template;
use super::record::{Actor, Decision, Kind, Record};
use super::{Audit, OperationLookup, ResponseFuture};
use crate::body::{Body, BoxError};
use crate::net::PeerAddr;
use crate::request_id::RequestId;

/// Set by the outcome layer on the requests it records itself.
#[derive(Debug, Clone, Default)]
pub struct Claim(Arc<AtomicBool>);

impl Claim {
    /// The outcome layer records this request.
    pub fn take(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the outcome layer records this request.
    pub fn taken(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Records mutation attempts refused before matching.
#[derive(Clone)]
pub struct AuditUnauthenticatedLayer {
    audit: Audit,
    lookup: OperationLookup,
}

impl std::fmt::Debug for AuditUnauthenticatedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditUnauthenticatedLayer")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl AuditUnauthenticatedLayer {
    /// Writes to `audit`, finding operations with `lookup`.
    pub fn new(audit: Audit, lookup: OperationLookup) -> Self {
        AuditUnauthenticatedLayer { audit, lookup }
    }
}

impl<S> Layer<S> for AuditUnauthenticatedLayer {
    type Service = AuditUnauthenticated<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditUnauthenticated {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`AuditUnauthenticatedLayer`].
#[derive(Debug, Clone)]
pub struct AuditUnauthenticated<S> {
    inner: S,
    layer: AuditUnauthenticatedLayer,
}

impl<S> Service<Request<Body>> for AuditUnauthenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if !self.layer.audit.audits(req.method()) {
            return Box::pin(self.inner.call(req));
        }
        let claim = Claim::default();
        req.extensions_mut().insert(claim.clone());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.to_string());
        let fut = super::call_boxed(&mut self.inner, req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let result = fut.await;
            let Err(e) = &result else {
                return result;
            };
            if claim.taken() {
                return result;
            }
            let Some((op, params)) =
                (layer.lookup)(&method, &path).filter(|(op, _)| layer.audit.audits_operation(op))
            else {
                return result;
            };
            let record = Record {
                kind: Kind::Outcome,
                request_id,
                operation_id: op.operation_id.clone(),
                method: method.to_string(),
                resource_id: params
                    .get("id")
                    .map(str::to_owned)
                    .or_else(|| id_from_template(&op.path_template, &path)),
                path,
                actor: Actor::UNAUTHENTICATED,
                peer,
                decision: Decision::for_refusal(&**e),
                reason: Some(super::outcome::reason(&**e)),
                upstream_status: None,
                latency_ms: None,
                body_sha256: None,
                body_bytes: None,
                body: None,
                created_id: None,
                intent_seq: None,
            };
            if let Err(err) = layer.audit.log().append(&record).await {
                tracing::error!(
                    request_id = record.request_id.as_deref().unwrap_or("-"),
                    error = %err,
                    "audit record of a refused mutation not written"
                );
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditOutcomeLayer;
    use crate::audit::test_support::{audit, operation, records};
    use crate::error::Error;
    use crate::routes::PathParams;
    use http::Method;
    use std::time::Duration;
    use tower::{ServiceBuilder, ServiceExt};

    fn lookup() -> OperationLookup {
        Arc::new(|method: &Method, path: &str| {
            let id = path.strip_prefix("/beta/sim-integrations/")?;
            (!id.contains('/') && method == Method::DELETE).then(|| {
                let op = operation(
                    "deleteSIMIntegration",
                    Method::DELETE,
                    "/beta/sim-integrations/{id}",
                );
                (op, PathParams(vec![("id".into(), id.into())]))
            })
        })
    }

    fn request(method: Method, path: &str) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(crate::body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.7:4242".parse().unwrap()));
        req.extensions_mut()
            .insert(RequestId::parse(&"rid-1".parse().unwrap()).unwrap());
        req
    }

    #[tokio::test]
    async fn unauthenticated_mutation_is_recorded() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(audit.unauthenticated_layer(lookup()))
            .service_fn(|_req: Request<Body>| async {
                Err::<Response<Body>, BoxError>(Error::invalid_token("token expired").into())
            });
        let err = svc
            .oneshot(request(Method::DELETE, "/beta/sim-integrations/abc"))
            .await
            .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::Unauthenticated { .. })
        ));
        let recs = records(&dir);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r["decision"], "unauthenticated");
        assert_eq!(r["actor"], "unauthenticated");
        assert_eq!(r["reason"], "token expired");
        assert_eq!(r["operation_id"], "deleteSIMIntegration");
        assert_eq!(r["resource_id"], "abc");
        assert_eq!(r["peer"], "192.0.2.7:4242");
        assert_eq!(r["request_id"], "rid-1");
    }

    #[tokio::test]
    async fn failed_auth_limiter_is_rate_limited() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(audit.unauthenticated_layer(lookup()))
            .service_fn(|_req: Request<Body>| async {
                Err::<Response<Body>, BoxError>(
                    Error::RateLimited {
                        retry_after: Duration::from_secs(3),
                        headers: Default::default(),
                    }
                    .into(),
                )
            });
        svc.oneshot(request(Method::DELETE, "/beta/sim-integrations/abc"))
            .await
            .unwrap_err();
        assert_eq!(records(&dir)[0]["decision"], "rate_limited");
    }

    #[tokio::test]
    async fn reads_unknown_paths_and_successes_are_not_recorded() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(audit.unauthenticated_layer(lookup()))
            .service_fn(|req: Request<Body>| async move {
                if req.uri().path().ends_with("/ok") {
                    return Ok(Response::new(crate::body::empty()));
                }
                Err::<Response<Body>, BoxError>(Error::invalid_token("nope").into())
            });
        let _ = svc
            .clone()
            .oneshot(request(Method::GET, "/beta/sim-integrations/abc"))
            .await;
        let _ = svc
            .clone()
            .oneshot(request(Method::DELETE, "/nowhere"))
            .await;
        let _ = svc
            .oneshot(request(Method::DELETE, "/beta/sim-integrations/ok"))
            .await;
        assert!(records(&dir).is_empty());
    }

    #[tokio::test]
    async fn refusals_after_matching_are_recorded_once() {
        let (audit, dir) = audit(|_| {});
        let svc = ServiceBuilder::new()
            .layer(audit.unauthenticated_layer(lookup()))
            .map_request(|mut req: Request<Body>| {
                req.extensions_mut().insert(operation(
                    "deleteSIMIntegration",
                    Method::DELETE,
                    "/beta/sim-integrations/{id}",
                ));
                req
            })
            .layer(AuditOutcomeLayer::new(audit.clone()))
            .service_fn(|_req: Request<Body>| async {
                Err::<Response<Body>, BoxError>(
                    Error::Forbidden {
                        operation: "deleteSIMIntegration".into(),
                    }
                    .into(),
                )
            });
        svc.oneshot(request(Method::DELETE, "/beta/sim-integrations/abc"))
            .await
            .unwrap_err();
        let recs = records(&dir);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["decision"], "forbidden");
    }
}
