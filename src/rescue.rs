//! The one place where errors become HTTP responses.
//!
//! Every layer below fails with a typed [`Error`] (boxed as tower's
//! `BoxError`); [`Rescue`] turns it into a response in the API's documented
//! shapes, so the service handed to hyper never fails:
//!
//! | cause | status | body |
//! |---|---|---|
//! | unauthenticated | 401 + `WWW-Authenticate` | `{"error": …}` |
//! | rate limited | 429 + `Retry-After` | `{"message": "Rate Limit Exceeded"}` |
//! | everything else | 400/403/404/405/413/415/5xx | `ErrorResponseDto` |
//!
//! Unknown errors are logged with the request id and shown to the client as
//! a generic 500; their details never reach the client. The cause, as
//! [`crate::error::classify`] sees it, goes into the request's
//! [`RequestRecord`] for the access log, the metrics and the audit.
//!
//! A layer that wants headers on the response even when the request fails
//! further down (the `RateLimit` fields of a request that was counted) puts
//! them into the request's [`ErrorHeaders`]; they are added to the error
//! response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, Service};

use crate::body::{Body, BoxError, full};
use crate::error::Error;
use crate::record::RequestRecord;
use crate::request_id::RequestId;

/// Turns inner errors into responses.
#[derive(Debug, Clone, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}

/// Headers for the response even if it ends as an error. [`Rescue`] puts one
/// into every request's extensions; inner layers [`set`](Self::set) it and
/// take the headers back when the request succeeds.
#[derive(Debug, Clone, Default)]
pub struct ErrorHeaders(Arc<Mutex<HeaderMap>>);

impl ErrorHeaders {
    /// Replaces the headers kept for an error response.
    pub fn set(&self, headers: HeaderMap) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = headers;
    }

    /// Takes the headers kept so far, leaving none.
    pub fn take(&self) -> HeaderMap {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Service of [`RescueLayer`].
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            // A failed readiness check is surfaced on the next call instead.
            Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate);
        let extra = ErrorHeaders::default();
        req.extensions_mut().insert(extra.clone());
        let record = req.extensions().get::<RequestRecord>().cloned();
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(res) => Ok(res),
                Err(e) => {
                    let e: BoxError = e.into();
                    if let Some(record) = &record {
                        record.set_failure(&*e);
                    }
                    let mut res = respond(&e, &id);
                    res.headers_mut().extend(extra.take());
                    Ok(res)
                }
            }
        })
    }
}

/// The response for an error, in the API's documented shapes.
pub fn respond(err: &BoxError, id: &RequestId) -> Response<Body> {
    let Some(err) = crate::error::classify(&**err) else {
        tracing::error!(request_id = %id, error = %err, "unhandled error");
        return dto(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500.0 Internal Fault",
            &["An internal fault occurred."],
            id,
        );
    };
    match err {
        Error::Unauthenticated {
            reason,
            token_present,
        } => {
            let challenge = if *token_present {
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                )
            } else {
                "Bearer".to_owned()
            };
            let mut res = json_response(StatusCode::UNAUTHORIZED, &json!({ "error": reason }));
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            res
        }
        Error::RateLimited {
            retry_after,
            headers,
        } => {
            let mut res = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({ "message": "Rate Limit Exceeded" }),
            );
            res.headers_mut().extend(headers.clone());
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            res
        }
        Error::RateLimitStoreUnavailable { retry_after } => {
            let mut res = dto(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable",
                &[
                    "The request was not counted against its quota because the rate limit store is unavailable; retry later.",
                ],
                id,
            );
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            res
        }
        Error::BadPath(why) => dto(
            StatusCode::BAD_REQUEST,
            "400.0 Bad Request",
            &[&format!("Malformed request path: {why}.")],
            id,
        ),
        Error::NoRoute => dto(
            StatusCode::NOT_FOUND,
            "404 Not found",
            &["The server did not find a current representation for the target resource."],
            id,
        ),
        Error::MethodNotAllowed { allow } => {
            let mut res = dto(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed",
                &[&format!(
                    "The method is not allowed for this resource; allowed: {allow}."
                )],
                id,
            );
            if let Ok(v) = HeaderValue::from_str(allow) {
                res.headers_mut().insert(ALLOW, v);
            }
            res
        }
        Error::Forbidden { operation } => dto(
            StatusCode::FORBIDDEN,
            "403 Forbidden",
            &[&format!(
                "The server understood the request but refuses to authorize it: the caller may not call {operation} (no role of the caller is granted it)."
            )],
            id,
        ),
        Error::ScopeMissing {
            operation,
            requirements,
        } => dto(
            StatusCode::FORBIDDEN,
            "403 Forbidden",
            &[&format!(
                "The server understood the request but refuses to authorize it: the caller's role may call {operation} but the token lacks the scopes it needs (one of: {}).",
                requirements.join(" | ")
            )],
            id,
        ),
        Error::Options { allow } => {
            let mut res = Response::new(crate::body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            if let Ok(v) = HeaderValue::from_str(allow) {
                res.headers_mut().insert(ALLOW, v);
            }
            res
        }
        Error::InvalidParameters { messages } => {
            let texts: Vec<&str> = messages.iter().map(String::as_str).collect();
            dto(StatusCode::BAD_REQUEST, "400.0 Bad Request", &texts, id)
        }
        Error::ContentEncoded { encoding } => dto(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "415 Unsupported Media Type",
            &[&format!(
                "Content-Encoding {encoding:?} is not accepted: the gateway validates the body as sent and does not decompress it; send it uncompressed."
            )],
            id,
        ),
        Error::UnsupportedMediaType {
            accepted,
            received,
            patch,
        } => {
            let text = match (accepted.is_empty(), received) {
                (true, _) => "This operation declares no request body media type.".to_owned(),
                (false, None) => format!(
                    "A single Content-Type header is required; it must be one of: {}.",
                    accepted.join(", ")
                ),
                (false, Some(r)) => format!(
                    "Content-Type {r} is not accepted; it must be one of: {}.",
                    accepted.join(", ")
                ),
            };
            let mut res = dto(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "415 Unsupported Media Type",
                &[&text],
                id,
            );
            if *patch
                && !accepted.is_empty()
                && let Ok(v) = HeaderValue::from_str(&accepted.join(", "))
            {
                res.headers_mut().insert("accept-patch", v);
            }
            res
        }
        Error::PayloadTooLarge { limit } => dto(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Payload Too Large",
            &[&format!("The request body is larger than {limit} bytes.")],
            id,
        ),
        Error::InvalidBody { messages } => {
            let texts: Vec<&str> = messages.iter().map(String::as_str).collect();
            dto(
                StatusCode::BAD_REQUEST,
                "400.1 Bad Request Content",
                &texts,
                id,
            )
        }
        Error::AuditUnavailable => {
            let mut res = dto(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable",
                &["The change was not made because it could not be recorded in the audit log."],
                id,
            );
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5));
            res
        }
        Error::Overloaded => {
            let mut res = dto(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable",
                &["The gateway is handling too many requests; retry later."],
                id,
            );
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1));
            res
        }
        Error::UpstreamUnavailable(detail) => {
            tracing::warn!(request_id = %id, error = %detail, "upstream unavailable");
            dto(
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway",
                &["The upstream service could not be reached."],
                id,
            )
        }
        Error::UpstreamTimeout => dto(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Timeout",
            &["The upstream service did not answer in time."],
            id,
        ),
        Error::Internal(detail) => {
            tracing::error!(request_id = %id, error = %detail, "internal error");
            dto(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500.0 Internal Fault",
                &["An internal fault occurred."],
                id,
            )
        }
    }
}

/// An `ErrorResponseDto` response.
pub fn dto(
    status: StatusCode,
    detail_code: &str,
    texts: &[&str],
    id: &RequestId,
) -> Response<Body> {
    let messages: Vec<_> = texts
        .iter()
        .map(|t| json!({ "locale": "en-US", "localeOrigin": "DEFAULT", "text": t }))
        .collect();
    json_response(
        status,
        &json!({ "detailCode": detail_code, "trackingId": id.as_str(), "messages": messages }),
    )
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::{ServiceBuilder, ServiceExt};

    async fn run(err: Error) -> (Response<()>, serde_json::Value) {
        let id = RequestId::parse(&HeaderValue::from_static("rid")).unwrap();
        let (parts, body) = respond(&BoxError::from(err), &id).into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn unauthenticated_is_401_with_challenge() {
        let (res, body) = run(Error::invalid_token("token expired")).await;
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(body, json!({"error": "token expired"}));
        let (res, _) = run(Error::Unauthenticated {
            reason: "missing bearer token".into(),
            token_present: false,
        })
        .await;
        assert_eq!(res.headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn rate_limited_rounds_retry_after_up() {
        let err = Error::RateLimited {
            retry_after: Duration::from_millis(1200),
            headers: Default::default(),
        };
        let (res, body) = run(err).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[RETRY_AFTER], "2");
        assert_eq!(body, json!({"message": "Rate Limit Exceeded"}));
        let err = Error::RateLimited {
            retry_after: Duration::ZERO,
            headers: Default::default(),
        };
        assert_eq!(run(err).await.0.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn rate_limit_store_unavailable_is_503_with_retry_after() {
        let err = Error::RateLimitStoreUnavailable {
            retry_after: Duration::from_secs(1),
        };
        let (res, body) = run(err).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[RETRY_AFTER], "1");
        assert_eq!(body["detailCode"], "503 Service Unavailable");
        assert_eq!(body["trackingId"], "rid");
    }

    #[tokio::test]
    async fn others_are_error_response_dto_with_tracking_id() {
        let (res, body) = run(Error::Forbidden {
            operation: "deleteSIMIntegration".into(),
        })
        .await;
        assert_eq!(res.status(), 403);
        assert_eq!(body["detailCode"], "403 Forbidden");
        assert_eq!(body["trackingId"], "rid");
        assert!(
            body["messages"][0]["text"]
                .as_str()
                .unwrap()
                .contains("deleteSIMIntegration")
        );
        let (res, _) = run(Error::MethodNotAllowed {
            allow: "GET, PUT".into(),
        })
        .await;
        assert_eq!(res.headers()[ALLOW], "GET, PUT");
    }

    #[tokio::test]
    async fn unknown_errors_are_generic_500() {
        let id = RequestId::generate();
        let res = respond(&BoxError::from("secret detail"), &id);
        assert_eq!(res.status(), 500);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }

    #[tokio::test]
    async fn error_headers_reach_error_responses() {
        let svc =
            ServiceBuilder::new()
                .layer(RescueLayer)
                .service_fn(|req: Request<()>| async move {
                    let mut h = HeaderMap::new();
                    h.insert("ratelimit", HeaderValue::from_static("\"reads\";r=1;t=1"));
                    req.extensions().get::<ErrorHeaders>().unwrap().set(h);
                    Err::<Response<Body>, BoxError>(Error::NoRoute.into())
                });
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["ratelimit"], "\"reads\";r=1;t=1");
    }

    #[tokio::test]
    async fn service_never_fails() {
        let svc = ServiceBuilder::new()
            .layer(RescueLayer)
            .service_fn(|_req: Request<()>| async {
                Err::<Response<Body>, BoxError>(Error::NoRoute.into())
            });
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), 404);
    }
}
