//! Request body size limit.
//!
//! A request whose `Content-Length` exceeds the limit is refused with 413
//! before its body is read; a body without a length is counted as it streams
//! and fails once it crosses the limit (the proxy turns that into 413 too).
//! Concurrency, load shedding and the request timeout use tower's own layers
//! (see [`crate::stack`]).

use std::task::{Context, Poll};

use http::Request;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::{Layer, Service};

use crate::body::{Body, BoxError, boxed};
use crate::error::Error;

/// Refuses request bodies larger than `max` bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    max: u64,
}

impl BodyLimitLayer {
    /// Limits bodies to `max` bytes.
    pub fn new(max: u64) -> Self {
        BodyLimitLayer { max }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            max: self.max,
        }
    }
}

/// Service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    max: u64,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        futures_util::future::Either<S::Future, std::future::Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.max => {
                Either::Right(std::future::ready(Err(Error::PayloadTooLarge {
                    limit: self.max,
                }
                .into())))
            }
            // hyper enforces a declared length, so only unknown lengths need
            // counting; an empty body (every GET) has nothing to count.
            Some(_) => Either::Left(self.inner.call(req)),
            None if http_body::Body::is_end_stream(req.body()) => {
                Either::Left(self.inner.call(req))
            }
            None => {
                let limit = self.max;
                let max = usize::try_from(limit).unwrap_or(usize::MAX);
                let count = move |b| {
                    boxed(Limited::new(b, max).map_err(move |e| -> BoxError {
                        if e.is::<LengthLimitError>() {
                            Error::PayloadTooLarge { limit }.into()
                        } else {
                            e
                        }
                    }))
                };
                Either::Left(self.inner.call(req.map(count)))
            }
        }
    }
}

/// The limit, if `err` (or anything in its source chain) is a request body
/// that went over it while streaming.
pub fn body_too_large(err: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(Error::PayloadTooLarge { limit }) = e.downcast_ref::<Error>() {
            return Some(*limit);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tower::{ServiceBuilder, ServiceExt};

    async fn read_all(req: Request<Body>) -> Result<http::Response<()>, BoxError> {
        req.into_body().collect().await?;
        Ok(http::Response::new(()))
    }

    #[tokio::test]
    async fn declared_length_over_limit_is_refused_unread() {
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(4))
            .service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(http::Response::new(())) });
        let req = Request::post("/")
            .header(CONTENT_LENGTH, "5")
            .body(crate::body::full("12345"))
            .unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::PayloadTooLarge { limit: 4 })
        ));
    }

    #[tokio::test]
    async fn streamed_body_is_counted() {
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(4))
            .service_fn(read_all);
        let stream = http_body_util::StreamBody::new(futures_util::stream::iter(
            ["12", "345"].map(|s| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(s)))),
        ));
        let req = Request::post("/").body(boxed(stream)).unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(body_too_large(&*err), Some(4));
        let ok = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(4))
            .service_fn(read_all);
        assert!(
            ok.oneshot(Request::post("/").body(crate::body::full("1234")).unwrap())
                .await
                .is_ok()
        );
    }
}
