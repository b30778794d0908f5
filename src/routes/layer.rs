//! [`MatchOperationLayer`]: matches every request to an OpenAPI operation.
//!
//! The raw request path is checked strictly and matched against the
//! [`OperationTable`]; on a match, `Arc<Operation>` and [`PathParams`] go
//! into the request extensions for the layers below (the request record
//! takes the operation from there). Refused, and never
//! passed on: malformed or ambiguous paths ([`Error::BadPath`], 400), paths
//! no operation serves ([`Error::NoRoute`], 404) and known paths with
//! another method ([`Error::MethodNotAllowed`], 405 + `Allow`).
//!
//! Only the request line's method counts: method-override headers
//! (`X-HTTP-Method-Override` and kin) are ignored here and stripped by the
//! proxy.
//!
//! ```
//! # use std::sync::Arc;
//! # use simgate::routes::{MatchOperationLayer, OperationTable};
//! # fn stack(table: Arc<OperationTable>) {
//! let layer = tower::ServiceBuilder::new().layer(MatchOperationLayer::new(table));
//! # let _ = layer;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::table::OperationTable;
use crate::body::BoxError;
use crate::error::Error;

/// Matches requests to operations (configuration only).
#[derive(Debug, Clone)]
pub struct MatchOperationLayer {
    table: Arc<OperationTable>,
}

impl MatchOperationLayer {
    /// A layer matching against `table`.
    pub fn new(table: Arc<OperationTable>) -> Self {
        MatchOperationLayer { table }
    }
}

impl<S> Layer<S> for MatchOperationLayer {
    type Service = MatchOperation<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MatchOperation {
            inner,
            table: self.table.clone(),
        }
    }
}

/// Service of [`MatchOperationLayer`].
#[derive(Debug, Clone)]
pub struct MatchOperation<S> {
    inner: S,
    table: Arc<OperationTable>,
}

impl<S, B, RB> Service<Request<B>> for MatchOperation<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.table.find(req.method(), req.uri().path()) {
            Ok((operation, params)) => {
                req.extensions_mut().insert(operation);
                req.extensions_mut().insert(params);
                ResponseFuture::Matched {
                    inner: self.inner.call(req),
                }
            }
            Err(error) => ResponseFuture::Refused { error: Some(error) },
        }
    }
}

pin_project! {
    /// Future of [`MatchOperation`].
    #[allow(missing_docs)]
    #[project = Proj]
    #[derive(Debug)]
    pub enum ResponseFuture<F> {
        /// Matched; waiting for the inner service.
        Matched {
            #[pin]
            inner: F,
        },
        /// Refused before the inner service.
        Refused {
            error: Option<Error>,
        },
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Matched { inner } => inner.poll(cx).map_err(Into::into),
            Proj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::Internal("future polled after completion".into()))
                .into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::load::table_of;
    use crate::routes::{Operation, PathParams};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceBuilder, ServiceExt};

    fn table() -> Arc<OperationTable> {
        let doc = json!({
            "openapi": "3.0.0", "info": { "title": "t", "version": "1" },
            "paths": { "/things/{id}": {
                "parameters": [{ "name": "id", "in": "path", "required": true }],
                "get": { "operationId": "getThing", "responses": {} }
            } }
        });
        Arc::new(table_of(&[("/api", doc)]).unwrap())
    }

    #[tokio::test]
    async fn matched_requests_carry_the_operation() {
        let svc = ServiceBuilder::new()
            .layer(MatchOperationLayer::new(table()))
            .service_fn(|req: Request<()>| async move {
                let op = req.extensions().get::<Arc<Operation>>().unwrap();
                let params = req.extensions().get::<PathParams>().unwrap();
                let body = format!("{} {}", op.operation_id, params.get("id").unwrap());
                Ok::<_, BoxError>(Response::new(body))
            });
        let req = Request::get("/api/things/t1?x=1").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.body(), "getThing t1");
    }

    #[tokio::test]
    async fn refused_requests_never_reach_the_inner_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let svc = ServiceBuilder::new()
            .layer(MatchOperationLayer::new(table()))
            .service_fn(move |_req: Request<()>| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, BoxError>(Response::new(String::new())) }
            });
        let cases = [
            (http::Method::GET, "/api/things/..", "BadPath"),
            (http::Method::GET, "/api/thing/x", "NoRoute"),
            (http::Method::DELETE, "/api/things/x", "MethodNotAllowed"),
        ];
        for (method, path, want) in cases {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            let err = svc.clone().oneshot(req).await.unwrap_err();
            let err = err.downcast::<Error>().unwrap();
            assert!(format!("{err:?}").starts_with(want), "{path}: {err:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
