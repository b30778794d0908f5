//! [`UpstreamCredentialLayer`]: chooses the caller's upstream credential
//! and hands it to the upstream-request step below in an [`UpstreamAuth`]
//! extension; it sets no header itself.
//!
//! For an OAuth2 credential it also owns the one retry: when the upstream
//! answers 401 to a request sent with an injected token, the token is
//! replaced (once for all concurrent callers, see [`super::source`]) and the
//! request is sent once more with the same, already buffered, body. The
//! request's [`RequestRecord`] notes the retry, so the audit shows it. A second 401 becomes [`Error::UpstreamCredentialRejected`] (502).
//! Bodies that cannot be replayed (unknown length, over the body limit) are
//! sent without the retry; their 401 passes through.
//!
//! Refuses with [`Error::UpstreamCredentialUnavailable`] (503 + Retry-After)
//! a request whose credential has no valid token; nothing is sent.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use super::source::{Token, TokenSource, Unavailable};
use super::{Credentials, Started};
use crate::auth::Principal;
use crate::body::{Body, BoxError, full};
use crate::error::Error;
use crate::record::RequestRecord;

/// What the upstream request carries as `Authorization`, decided by the
/// credential step for the upstream-request step below it.
#[derive(Debug, Clone)]
pub(crate) enum UpstreamAuth {
    /// The caller's `Authorization` is removed; none is sent.
    Strip,
    /// The caller's `Authorization` is sent as received.
    Forward,
    /// This value replaces the caller's (sensitive: never logged).
    Set(HeaderValue),
}

/// Injects the caller's upstream credential.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamCredentialLayer {
    credentials: Credentials,
    /// Largest body kept for a resend.
    max_replay: u64,
}

impl UpstreamCredentialLayer {
    /// Uses `credentials`; bodies up to `max_replay` bytes can be resent.
    pub(crate) fn new(credentials: Credentials, max_replay: u64) -> Self {
        UpstreamCredentialLayer {
            credentials,
            max_replay,
        }
    }
}

impl<S> Layer<S> for UpstreamCredentialLayer {
    type Service = UpstreamCredential<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UpstreamCredential {
            inner,
            credentials: self.credentials.clone(),
            max_replay: self.max_replay,
        }
    }
}

/// Service of [`UpstreamCredentialLayer`].
#[derive(Debug, Clone)]
pub(crate) struct UpstreamCredential<S> {
    inner: S,
    credentials: Credentials,
    max_replay: u64,
}

impl<S> Service<Request<Body>> for UpstreamCredential<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let roles = req
            .extensions()
            .get::<Arc<Principal>>()
            .map(|p| p.roles.clone())
            .unwrap_or_default();
        let (name, source) = match self.credentials.select(&roles) {
            None => return self.send_with(req, UpstreamAuth::Strip),
            Some((_, Started::Forward)) => return self.send_with(req, UpstreamAuth::Forward),
            Some((_, Started::Bearer(v))) => {
                let auth = UpstreamAuth::Set(v.clone());
                return self.send_with(req, auth);
            }
            Some((name, Started::OAuth2(source))) => (name.clone(), source.clone()),
        };
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let max_replay = self.max_replay;
        Box::pin(async move {
            let token = source.token().await.map_err(|u| unavailable(&name, u))?;
            let replayable = req.body().is_end_stream()
                || req
                    .body()
                    .size_hint()
                    .exact()
                    .is_some_and(|n| n <= max_replay);
            if !replayable {
                req.extensions_mut()
                    .insert(UpstreamAuth::Set(token.authorization.clone()));
                return oneshot(inner, req).await;
            }
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Err(match crate::limits::body_too_large(&*e) {
                        Some(limit) => Error::PayloadTooLarge { limit }.into(),
                        None => e,
                    });
                }
            };
            let first = oneshot(inner.clone(), build(&parts, &bytes, &token)).await?;
            if first.status() != StatusCode::UNAUTHORIZED {
                return Ok(first);
            }
            drop(first);
            retry(inner, name, source, token.generation, parts, bytes).await
        })
    }
}

impl<S> UpstreamCredential<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    fn send_with(
        &mut self,
        mut req: Request<Body>,
        auth: UpstreamAuth,
    ) -> BoxFuture<'static, Result<Response<Body>, BoxError>> {
        req.extensions_mut().insert(auth);
        Box::pin(self.inner.call(req))
    }
}

/// The resend after a 401: a replaced token, one more request.
fn retry<S>(
    inner: S,
    name: Arc<str>,
    source: Arc<TokenSource>,
    rejected: u64,
    parts: http::request::Parts,
    bytes: Bytes,
) -> BoxFuture<'static, Result<Response<Body>, BoxError>>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    Box::pin(async move {
        tracing::info!(credential = %name, "upstream answered 401 to the injected token; replacing it and resending once");
        if let Some(record) = parts.extensions.get::<RequestRecord>() {
            record.set_credential_retry(name.clone());
        }
        let fresh = source
            .replace(rejected)
            .await
            .map_err(|u| unavailable(&name, u))?;
        let second = oneshot(inner, build(&parts, &bytes, &fresh)).await?;
        if second.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::UpstreamCredentialRejected {
                credential: name.to_string(),
            }
            .into());
        }
        Ok(second)
    })
}

/// Drives `inner` to readiness and calls it, boxed, so the async blocks
/// above hold no `S::Future` (which keeps them `Send` for any `S`).
fn oneshot<S>(inner: S, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, BoxError>>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    Box::pin(inner.oneshot(req))
}

/// A request from the buffered head and body, carrying `token`.
fn build(parts: &http::request::Parts, bytes: &Bytes, token: &Token) -> Request<Body> {
    let mut req = Request::new(full(bytes.clone()));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req.extensions_mut()
        .insert(UpstreamAuth::Set(token.authorization.clone()));
    req
}

fn unavailable(name: &str, u: Unavailable) -> BoxError {
    Error::UpstreamCredentialUnavailable {
        credential: name.to_owned(),
        reason: u.reason,
        retry_after: u.retry_after,
    }
    .into()
}
