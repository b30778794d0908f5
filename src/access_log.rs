//! One log line per request: method, path, operation, status, latency and
//! request id, at `info` on the `simgate::access` target.
//!
//! The operation is known only after matching, so the matching layer leaves
//! an [`OperationName`] in the response extensions; requests that matched
//! nothing log `-`. Query strings and headers are never logged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::request_id::RequestId;

/// The operationId a response answered, for the access log.
#[derive(Debug, Clone)]
pub struct OperationName(pub std::sync::Arc<str>);

/// Logs every request once it is answered.
#[derive(Debug, Clone, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

/// Service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let id = req.extensions().get::<RequestId>().cloned();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let latency_us = start.elapsed().as_micros() as u64;
            let id = id.as_ref().map(RequestId::as_str).unwrap_or("-");
            match &result {
                Ok(res) => {
                    let op = res
                        .extensions()
                        .get::<OperationName>()
                        .map(|o| &*o.0)
                        .unwrap_or("-");
                    tracing::info!(
                        target: "simgate::access",
                        %method, %path, operation = op, status = res.status().as_u16(),
                        latency_us, request_id = id, "request"
                    );
                }
                Err(_) => tracing::info!(
                    target: "simgate::access",
                    %method, %path, operation = "-", status = 0u16,
                    latency_us, request_id = id, "request failed"
                ),
            }
            result
        })
    }
}
