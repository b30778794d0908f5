//! `GET /healthz` and `GET /readyz`, answered by the gateway itself.
//!
//! Liveness is unconditional. Readiness asks every registered
//! [`ReadinessCheck`] (the upstream is reachable, every issuer has keys, …)
//! and answers 503 naming the first one that fails. Other paths pass through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::body::{Body, BoxError, full};

/// A boxed future answering one readiness check.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Something that must be true before the gateway takes traffic.
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug {
    /// `Ok` when ready, else a short reason.
    fn check(&self) -> CheckFuture<'_>;
}

/// The health endpoints and the readiness checks behind them.
#[derive(Debug, Clone)]
pub struct Health {
    health_path: Arc<str>,
    ready_path: Arc<str>,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
}

impl Health {
    /// Serves `health_path` and `ready_path` with the given checks.
    pub fn new(health_path: &str, ready_path: &str, checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Health {
            health_path: health_path.into(),
            ready_path: ready_path.into(),
            checks: Arc::new(checks),
        }
    }

    /// Runs every check; the first failure's reason.
    pub async fn ready(&self) -> Result<(), String> {
        for c in self.checks.iter() {
            c.check().await?;
        }
        Ok(())
    }
}

impl<S> Layer<S> for Health {
    type Service = HealthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HealthService {
            health: self.clone(),
            inner,
        }
    }
}

/// Service of the [`Health`] layer.
#[derive(Debug, Clone)]
pub struct HealthService<S> {
    health: Health,
    inner: S,
}

impl<S> Service<Request<Body>> for HealthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let is_get = matches!(*req.method(), Method::GET | Method::HEAD);
        if is_get && path == &*self.health.health_path {
            return Box::pin(async { Ok(status_response(StatusCode::OK, "ok")) });
        }
        if is_get && path == &*self.health.ready_path {
            let health = self.health.clone();
            return Box::pin(async move {
                Ok(match health.ready().await {
                    Ok(()) => status_response(StatusCode::OK, "ready"),
                    Err(why) => status_response(StatusCode::SERVICE_UNAVAILABLE, &why),
                })
            });
        }
        Box::pin(self.inner.call(req))
    }
}

fn status_response(status: StatusCode, text: &str) -> Response<Body> {
    let body = serde_json::json!({ "status": text }).to_string();
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Ready when a TCP connection to the upstream can be opened.
#[derive(Debug)]
pub struct UpstreamReachable {
    /// `host:port` of the upstream.
    pub authority: String,
    /// Connect timeout.
    pub timeout: std::time::Duration,
}

impl ReadinessCheck for UpstreamReachable {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(
                self.timeout,
                tokio::net::TcpStream::connect(self.authority.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("upstream unreachable: {e}")),
                Err(_) => Err("upstream unreachable: connect timed out".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    #[derive(Debug)]
    struct Never;
    impl ReadinessCheck for Never {
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(async { Err("issuer has no keys".to_owned()) })
        }
    }

    fn svc(
        checks: Vec<Arc<dyn ReadinessCheck>>,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError> {
        ServiceBuilder::new()
            .layer(Health::new("/healthz", "/readyz", checks))
            .service_fn(|_req: Request<Body>| async {
                Ok::<_, BoxError>(Response::new(full("proxied")))
            })
    }

    async fn get(checks: Vec<Arc<dyn ReadinessCheck>>, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(crate::body::empty()).unwrap();
        let res = svc(checks).oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_and_readiness_are_answered_locally() {
        assert_eq!(get(vec![], "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(vec![], "/readyz").await.0, StatusCode::OK);
        let (status, body) = get(vec![Arc::new(Never)], "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("issuer has no keys"));
        assert_eq!(get(vec![], "/other").await.1, "proxied");
    }
}
