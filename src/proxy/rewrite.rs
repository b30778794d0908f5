//! [`UpstreamRequestLayer`]: the one step that turns the client's request
//! into the upstream's (Pingora's `upstream_request_filter`).
//!
//! In order: the upstream URL's scheme and authority replace the request's
//! and its path (if any) is prefixed to the request path, the query kept as
//! received; hop-by-hop headers and method-override headers are removed
//! ([`super::headers`]); the forwarding headers are set (extended from trusted proxies, replaced
//! from anyone else); `Host` is the
//! upstream's unless `preserve_host`; the configured `upstream.headers` are
//! added; and `Authorization` is what the credential step above decided
//! ([`UpstreamAuth`]): removed, forwarded, or replaced by the injected
//! credential. Without that decision it is removed. The forwarder below
//! only sends.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::header::{AUTHORIZATION, HOST};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Uri};
use tower::{Layer, Service};

use super::headers;
use crate::body::{Body, BoxError};
use crate::config::UpstreamConfig;
use crate::credentials::UpstreamAuth;
use crate::error::Error;
use crate::net::{PeerAddr, Tls};
use crate::rate_limit::client_addr::ClientAddr;

/// Builds the upstream request.
#[derive(Debug, Clone)]
pub struct UpstreamRequestLayer {
    upstream: Arc<UpstreamConfig>,
    client_addr: Arc<ClientAddr>,
}

impl UpstreamRequestLayer {
    /// Rewrites requests for `upstream`.
    pub fn new(upstream: &UpstreamConfig) -> Self {
        UpstreamRequestLayer {
            upstream: Arc::new(upstream.clone()),
            client_addr: Arc::new(ClientAddr::default()),
        }
    }

    /// Extends the forwarding headers of requests from the trusted proxies
    /// of `client_addr`; from anyone else they are replaced (the rate
    /// limiter's rule for the client address).
    pub fn trusting(mut self, client_addr: ClientAddr) -> Self {
        self.client_addr = Arc::new(client_addr);
        self
    }
}

impl<S> Layer<S> for UpstreamRequestLayer {
    type Service = UpstreamRequest<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UpstreamRequest {
            inner,
            upstream: self.upstream.clone(),
            client_addr: self.client_addr.clone(),
        }
    }
}

/// Service of [`UpstreamRequestLayer`].
#[derive(Debug, Clone)]
pub struct UpstreamRequest<S> {
    inner: S,
    upstream: Arc<UpstreamConfig>,
    client_addr: Arc<ClientAddr>,
}

impl<S> Service<Request<Body>> for UpstreamRequest<S>
where
    S: Service<Request<Body>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<S::Future, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match rewrite(&self.upstream, &self.client_addr, &mut req) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(e) => Either::Right(ready(Err(Error::Internal(format!(
                "cannot build upstream request: {e}"
            ))
            .into()))),
        }
    }
}

/// Rewrites `req` in place into the request the upstream gets.
fn rewrite(
    upstream: &UpstreamConfig,
    client_addr: &ClientAddr,
    req: &mut Request<Body>,
) -> Result<(), BoxError> {
    let base = &upstream.url;
    let prefix = base.path().trim_end_matches('/');
    let pq = req
        .uri()
        .path_and_query()
        .map(PathAndQuery::as_str)
        .unwrap_or("/");
    let pq: PathAndQuery = match req.uri().path_and_query() {
        // The client's target as parsed (shares its bytes).
        Some(pq) if prefix.is_empty() => pq.clone(),
        _ if prefix.is_empty() => PathAndQuery::from_static("/"),
        _ => format!("{prefix}{pq}").parse()?,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(pq);
    let uri = Uri::from_parts(parts)?;

    // An absolute-form target's authority wins over Host (RFC 9112
    // §3.2.2); HTTP/2's :authority arrives the same way.
    let client_host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| req.headers().get(HOST).cloned());
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let tls = req.extensions().get::<Tls>().is_some_and(|t| t.0);
    let auth = req.extensions_mut().remove::<UpstreamAuth>();

    let h = req.headers_mut();
    headers::strip_hop_by_hop(h);
    for name in &headers::METHOD_OVERRIDE {
        h.remove(name);
    }
    if let Some(ip) = peer {
        headers::set_forwarding(
            h,
            ip,
            client_addr.trusts(ip),
            if tls { "https" } else { "http" },
            client_host.as_ref(),
        );
    }
    if upstream.preserve_host {
        if let Some(host) = client_host {
            h.insert(HOST, host);
        }
    } else {
        // hyper's client sets Host from the URI when it is absent.
        headers::remove_host(h);
    }
    for (name, value) in &upstream.headers {
        h.insert(name.clone(), value.clone());
    }
    // Last, so no configured header can replace the credential.
    match auth {
        Some(UpstreamAuth::Forward) => {}
        Some(UpstreamAuth::Set(value)) => {
            h.insert(AUTHORIZATION, value);
        }
        Some(UpstreamAuth::Strip) | None => {
            h.remove(AUTHORIZATION);
        }
    }
    *req.uri_mut() = uri;
    // The upstream connection's version is the client's business.
    *req.version_mut() = http::Version::HTTP_11;
    Ok(())
}
