//! [`ValidateBodyLayer`]: the request body checks, as a tower layer.
//!
//! For the matched operation (`Arc<Operation>` in the request extensions):
//!
//! - first its path, query and header parameters (400, see `params.rs`);
//! - no request body declared: requests pass untouched when their body is
//!   empty; a non-empty body is refused (400), since the upstream would
//!   ignore or misread it;
//! - an optional body that is absent (no `Content-Type`, empty) passes; a
//!   required one is refused (400);
//! - otherwise: the media type (415, listing the accepted ones), the size
//!   (413: from `Content-Length` before reading, else by counting while
//!   reading), then the content ([`super::OperationCheck::check`], 400, or
//!   403 for a patch path the caller's role may not touch).
//!
//! The request goes on with the exact bytes that were validated (rebuilt
//! with [`crate::body::full`] and a matching `Content-Length`); nothing is
//! forwarded when a check fails. A request without a matched operation is
//! a wiring bug and fails (500).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{FutureExt, TryFutureExt};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Body as _;
use http_body_util::{BodyExt, Collected, LengthLimitError, Limited};
use tower::{Layer, Service};

use super::compile::{Accepted, OperationCheck, Validators, has_content_type, no_body_expected};
use crate::auth::Principal;
use crate::body::{Body, BoxError, empty, full};
use crate::error::Error;
use crate::routes::{Operation, PathParams};

/// Validates request bodies against the matched operation.
#[derive(Debug, Clone)]
pub struct ValidateBodyLayer {
    validators: Arc<Validators>,
}

impl ValidateBodyLayer {
    /// A layer checking with `validators`.
    pub fn new(validators: Arc<Validators>) -> Self {
        ValidateBodyLayer { validators }
    }
}

impl<S> Layer<S> for ValidateBodyLayer {
    type Service = ValidateBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ValidateBody {
            inner,
            validators: self.validators.clone(),
        }
    }
}

/// Service of [`ValidateBodyLayer`].
#[derive(Debug, Clone)]
pub struct ValidateBody<S> {
    inner: S,
    validators: Arc<Validators>,
}

impl<S, R> Service<Request<Body>> for ValidateBody<S>
where
    S: Service<Request<Body>, Response = R, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = R;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is not ready; the ready one goes with this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match begin(&self.validators, req) {
            Err(e) => Box::pin(std::future::ready(Err(e))),
            Ok(Begin::Forward(req)) => Box::pin(inner.call(req)),
            Ok(Begin::Read(read)) => {
                let limit = usize::try_from(read.limit()).unwrap_or(usize::MAX);
                let Read { req, check } = read;
                let (parts, body) = req.into_parts();
                let read = Read {
                    req: Request::from_parts(parts, ()),
                    check,
                };
                Box::pin(
                    Limited::new(body, limit)
                        .collect()
                        .map(move |collected| read.finish(collected))
                        .and_then(move |req| inner.call(req)),
                )
            }
        }
    }
}

/// What to do with a request, decided from its head.
enum Begin {
    /// Pass it on as it is.
    Forward(Request<Body>),
    /// Read its body first.
    Read(Read<Body>),
}

/// A request whose body is read and then checked.
struct Read<B> {
    req: Request<B>,
    /// `None`: the operation takes no body, so only an empty one passes.
    check: Option<(Arc<OperationCheck>, Accepted)>,
}

impl<B> Read<B> {
    fn limit(&self) -> u64 {
        self.check.as_ref().map_or(0, |(c, _)| c.limit())
    }
}

impl Read<()> {
    /// The request with its checked body, or why it is refused.
    fn finish(
        self,
        collected: Result<Collected<Bytes>, BoxError>,
    ) -> Result<Request<Body>, BoxError> {
        let limit = self.limit();
        let (mut parts, ()) = self.req.into_parts();
        let bytes = match collected {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return Err(match self.check {
                    Some(_) => Error::PayloadTooLarge { limit },
                    None => no_body_expected(),
                }
                .into());
            }
            Err(e) => {
                return Err(match crate::limits::body_too_large(&*e) {
                    Some(limit) => Error::PayloadTooLarge { limit }.into(),
                    None => e,
                });
            }
        };
        parts.headers.remove(TRANSFER_ENCODING);
        let Some((check, accepted)) = self.check else {
            return Ok(Request::from_parts(parts, empty()));
        };
        let principal = parts.extensions.get::<Arc<Principal>>().cloned();
        let bytes = check.check(accepted, bytes, principal.as_deref())?;
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(Request::from_parts(parts, full(bytes)))
    }
}

/// Decides from the request head: refuse, forward, or read the body.
fn begin(v: &Validators, req: Request<Body>) -> Result<Begin, BoxError> {
    let Some(op) = req.extensions().get::<Arc<Operation>>().cloned() else {
        return Err(Error::Internal("body validation without a matched operation".into()).into());
    };
    v.check_params(
        &op,
        req.uri(),
        req.headers(),
        req.extensions().get::<PathParams>(),
    )?;
    let declared = content_length(req.headers());
    let Some(check) = v.operation(&op).cloned() else {
        // No body declared: only an empty one passes.
        return match declared {
            Some(0) => Ok(Begin::Forward(req)),
            Some(_) => Err(no_body_expected().into()),
            None if req.body().is_end_stream() => Ok(Begin::Forward(req)),
            None => Ok(Begin::Read(Read { req, check: None })),
        };
    };
    let empty = declared == Some(0) || (declared.is_none() && req.body().is_end_stream());
    if empty && !has_content_type(req.headers()) {
        check.absent()?;
        return Ok(Begin::Forward(req));
    }
    let accepted = check.media(req.headers())?;
    if declared.is_some_and(|n| n > check.limit()) {
        return Err(Error::PayloadTooLarge {
            limit: check.limit(),
        }
        .into());
    }
    Ok(Begin::Read(Read {
        req,
        check: Some((check, accepted)),
    }))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{Fixture, principal};
    use http::Response;
    use http::header::CONTENT_TYPE;
    use std::sync::Mutex;
    use tower::{ServiceBuilder, ServiceExt};

    type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

    /// Runs `req` through the layer over an inner service that records what
    /// it received.
    async fn run(f: &Fixture, req: Request<Body>) -> (Result<Response<Body>, BoxError>, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let svc = ServiceBuilder::new()
            .layer(ValidateBodyLayer::new(f.validators.clone()))
            .service_fn(move |req: Request<Body>| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = body.collect().await?.to_bytes();
                    log.lock().unwrap().push((parts.headers, bytes));
                    Ok::<_, BoxError>(Response::new(crate::body::empty()))
                }
            });
        (svc.oneshot(req).await, seen)
    }

    fn request(f: &Fixture, id: &str, ct: Option<&str>, body: Body) -> Request<Body> {
        let mut req = Request::post("/x").body(body).unwrap();
        if let Some(ct) = ct {
            req.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        req.extensions_mut().insert(f.op(id).clone());
        req
    }

    /// A body sent in chunks, without a length.
    fn chunked(parts: &[&'static str]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        crate::body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    /// A body that fails the test if it is read at all.
    fn unreadable() -> Body {
        crate::body::boxed(http_body_util::StreamBody::new(
            futures_util::stream::poll_fn(
                |_| -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
                    panic!("body was read")
                },
            ),
        ))
    }

    fn error(r: Result<Response<Body>, BoxError>) -> Error {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => panic!("not our error: {e}"),
            },
        }
    }

    #[tokio::test]
    async fn valid_bodies_are_forwarded_byte_exact() {
        let f = Fixture::new("");
        let body = "{ \"name\" : \"n\",\n \"statusMap\": {} }";
        for b in [
            full(body),
            chunked(&["{ \"name\" : \"n\",", "\n \"statusMap\": {} }"]),
        ] {
            let mut req = request(&f, "createSIMIntegration", Some("application/json"), b);
            req.headers_mut()
                .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            let (res, seen) = run(&f, req).await;
            assert!(res.is_ok());
            let seen = seen.lock().unwrap();
            assert_eq!(seen[0].1, body.as_bytes());
            assert_eq!(seen[0].0[CONTENT_LENGTH], body.len().to_string().as_str());
            assert!(!seen[0].0.contains_key(TRANSFER_ENCODING));
        }
        let patch = r#"{"operations":[{"op":"replace","path":"/description","value":"x"}]}"#;
        let req = request(
            &f,
            "patchSIMAttributes",
            Some("application/json-patch+json"),
            full(patch),
        );
        let (res, seen) = run(&f, req).await;
        assert!(res.is_ok());
        assert_eq!(seen.lock().unwrap()[0].1, patch.as_bytes());
    }

    #[tokio::test]
    async fn refusals_reach_nothing() {
        let f = Fixture::new("max_body_bytes = 16");
        let over = |ct: &str| {
            let mut r = request(&f, "createSIMIntegration", Some(ct), unreadable());
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("17"));
            r
        };
        // Decided from the head, body unread.
        let (res, seen) = run(&f, over("application/json")).await;
        assert!(matches!(error(res), Error::PayloadTooLarge { limit: 16 }));
        assert!(seen.lock().unwrap().is_empty());
        let (res, _) = run(&f, over("text/plain")).await;
        assert!(matches!(error(res), Error::UnsupportedMediaType { .. }));
        // Counted while streaming.
        let req = request(
            &f,
            "createSIMIntegration",
            Some("application/json"),
            chunked(&["{\"name\":", "\"0123456789\"}"]),
        );
        let (res, seen) = run(&f, req).await;
        assert!(matches!(error(res), Error::PayloadTooLarge { limit: 16 }));
        assert!(seen.lock().unwrap().is_empty());
        // Invalid content.
        let req = request(
            &f,
            "createSIMIntegration",
            Some("application/json"),
            full("{}"),
        );
        let (res, seen) = run(&f, req).await;
        assert!(matches!(error(res), Error::InvalidBody { .. }));
        assert!(seen.lock().unwrap().is_empty());
        // No matched operation: a wiring bug.
        let (res, _) = run(&f, Request::post("/x").body(full("{}")).unwrap()).await;
        assert!(matches!(error(res), Error::Internal(_)));
    }

    #[tokio::test]
    async fn the_outer_limit_while_streaming_is_413() {
        let f = Fixture::new("");
        let svc = ServiceBuilder::new()
            .layer(crate::limits::BodyLimitLayer::new(4))
            .layer(ValidateBodyLayer::new(f.validators.clone()))
            .service_fn(|_req: Request<Body>| async {
                Ok::<_, BoxError>(Response::new(crate::body::empty()))
            });
        let req = request(
            &f,
            "createSIMIntegration",
            Some("application/json"),
            chunked(&["{\"na", "me\":\"n\"}"]),
        );
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::PayloadTooLarge { limit: 4 })
        ));
    }

    #[tokio::test]
    async fn operations_without_a_body() {
        let f = Fixture::new("");
        let get = |body: Body| {
            let mut r = request(&f, "getSIMIntegration", None, body);
            *r.method_mut() = http::Method::GET;
            r
        };
        let (res, seen) = run(&f, get(crate::body::empty())).await;
        assert!(res.is_ok());
        assert!(seen.lock().unwrap()[0].1.is_empty());
        let (res, _) = run(&f, get(chunked(&[]))).await;
        assert!(res.is_ok());
        let (res, seen) = run(&f, get(chunked(&["{}"]))).await;
        assert!(matches!(error(res), Error::InvalidBody { .. }));
        assert!(seen.lock().unwrap().is_empty());
        let mut req = get(unreadable());
        req.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
        let (res, _) = run(&f, req).await;
        assert!(matches!(error(res), Error::InvalidBody { .. }));
    }

    #[tokio::test]
    async fn patch_paths_use_the_principal() {
        let f = Fixture::new("[patch_paths]\nOPERATOR = [\"/description\"]");
        for (path, allowed) in [("/description", true), ("/name", false)] {
            let body = format!(r#"[{{"op":"replace","path":"{path}","value":"x"}}]"#);
            let mut req = request(
                &f,
                "patchSIMAttributesV1",
                Some("application/json-patch+json"),
                full(body),
            );
            req.extensions_mut()
                .insert(Arc::new(principal(&["OPERATOR"])));
            let (res, seen) = run(&f, req).await;
            if allowed {
                assert!(res.is_ok());
            } else {
                assert!(matches!(error(res), Error::Forbidden { .. }));
                assert!(seen.lock().unwrap().is_empty());
            }
        }
    }
}
