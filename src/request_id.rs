//! Request ids: taken from the client's `X-Request-Id` when well-formed,
//! generated otherwise, put into the request extensions, sent upstream and
//! returned to the client.
//!
//! A well-formed id is 1 to 128 characters of `A-Z a-z 0-9 - _ . :`; anything
//! else (empty, too long, control characters, several headers) is replaced
//! by a fresh one, so logs and audit records never carry client garbage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The header carrying the request id.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (also used as the `trackingId` of errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh random id: 32 lowercase hex digits, like the vendor's
    /// tracking ids.
    pub fn generate() -> Self {
        Self::generate_with_header().0
    }

    /// A fresh id and its header value, each built once from the same
    /// stack buffer (no intermediate `String`).
    fn generate_with_header() -> (Self, Option<HeaderValue>) {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        let text = crate::random::uuid_v4().simple().encode_lower(&mut buf);
        (
            RequestId(Arc::from(&*text)),
            HeaderValue::from_str(text).ok(),
        )
    }

    /// The client's id if it is well-formed.
    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        // Only ASCII passed the check above, so this cannot fail.
        ok.then(|| std::str::from_utf8(bytes).ok().map(|s| RequestId(s.into())))
            .flatten()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sets and propagates [`RequestId`].
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId { inner }
    }
}

/// Service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct SetRequestId<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
        let client = match (values.next(), values.next()) {
            (Some(v), None) => RequestId::parse(v).map(|id| (id, v.clone())),
            _ => None,
        };
        let (id, header) = match client {
            // The client's one well-formed header stays as it is upstream.
            Some((id, value)) => (id, Some(value)),
            None => {
                let (id, header) = RequestId::generate_with_header();
                match &header {
                    Some(h) => {
                        req.headers_mut().insert(X_REQUEST_ID.clone(), h.clone());
                    }
                    None => {
                        req.headers_mut().remove(&X_REQUEST_ID);
                    }
                }
                (id, header)
            }
        };
        req.extensions_mut().insert(id);
        ResponseFuture {
            inner: self.inner.call(req),
            header,
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`SetRequestId`]: adds the id to the response.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some(h) = this.header.take() {
            res.headers_mut().insert(X_REQUEST_ID.clone(), h);
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    async fn echo_id(req: Request<()>) -> Result<Response<String>, Infallible> {
        let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
        Ok(Response::new(id.unwrap_or_default()))
    }

    #[tokio::test]
    async fn keeps_a_well_formed_client_id() {
        let svc = ServiceBuilder::new()
            .layer(RequestIdLayer)
            .service_fn(echo_id);
        let req = Request::builder()
            .header("x-request-id", "abc-123")
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "abc-123");
        assert_eq!(res.body(), "abc-123");
    }

    #[tokio::test]
    async fn replaces_malformed_or_repeated_ids() {
        for headers in [vec!["a b"], vec![""], vec!["x"; 2], vec![&*"y".repeat(129)]] {
            let svc = ServiceBuilder::new()
                .layer(RequestIdLayer)
                .service_fn(echo_id);
            let mut req = Request::builder();
            for h in &headers {
                req = req.header("x-request-id", *h);
            }
            let res = svc.oneshot(req.body(()).unwrap()).await.unwrap();
            let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert_eq!(id.len(), 32, "{headers:?}");
            assert_eq!(res.body(), &id);
        }
    }
}
