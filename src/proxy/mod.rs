//! The innermost service: sends the request to the upstream and streams the
//! answer back.
//!
//! The upstream URL's scheme and authority replace the request's, its path
//! (if any) is prefixed to the request path, the query is kept as received.
//! Header hygiene is in [`headers`]. Connection failures become 502
//! ([`Error::UpstreamUnavailable`]), a response that does not start within
//! `upstream.response_timeout` becomes 504 ([`Error::UpstreamTimeout`]).

pub mod headers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::Service;

use crate::body::{Body, BoxError, boxed};
use crate::config::{UpstreamAuthorization, UpstreamConfig};
use crate::error::Error;
use crate::net::{PeerAddr, Tls};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Forwards requests to the configured upstream over a pooled client.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<Connector, Body>,
    upstream: Arc<UpstreamConfig>,
}

impl Proxy {
    /// A proxy to `upstream` with its own connection pool.
    pub fn new(upstream: &UpstreamConfig) -> Result<Self, BoxError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(upstream.connect_timeout));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(upstream.pool_idle_timeout)
            .pool_max_idle_per_host(upstream.pool_max_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(tls);
        Ok(Proxy {
            client,
            upstream: Arc::new(upstream.clone()),
        })
    }

    fn rewrite(&self, req: &mut Request<Body>) -> Result<(), BoxError> {
        let base = &self.upstream.url;
        let prefix = base.path().trim_end_matches('/');
        let pq = req
            .uri()
            .path_and_query()
            .map(PathAndQuery::as_str)
            .unwrap_or("/");
        let pq: PathAndQuery = if prefix.is_empty() {
            pq.parse()?
        } else {
            format!("{prefix}{pq}").parse()?
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = base.scheme().cloned();
        parts.authority = base.authority().cloned();
        parts.path_and_query = Some(pq);
        let uri = Uri::from_parts(parts)?;

        let client_host = req.headers().get(HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        let tls = req.extensions().get::<Tls>().is_some_and(|t| t.0);

        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        for name in &headers::METHOD_OVERRIDE {
            h.remove(name);
        }
        if self.upstream.authorization == UpstreamAuthorization::Strip {
            h.remove(AUTHORIZATION);
        }
        if let Some(ip) = peer {
            headers::set_forwarding(
                h,
                ip,
                if tls { "https" } else { "http" },
                client_host.as_ref(),
            );
        }
        if self.upstream.preserve_host {
            if let Some(host) = client_host {
                h.insert(HOST, host);
            }
        } else {
            // hyper's client sets Host from the URI when it is absent.
            headers::remove_host(h);
        }
        for (name, value) in &self.upstream.headers {
            h.insert(name.clone(), value.clone());
        }
        *req.uri_mut() = uri;
        // The upstream connection's version is the client's business.
        *req.version_mut() = http::Version::HTTP_11;
        Ok(())
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Err(e) = self.rewrite(&mut req) {
            return Box::pin(async move {
                Err(Error::Internal(format!("cannot build upstream request: {e}")).into())
            });
        }
        let fut = self.client.request(req);
        let timeout = self.upstream.response_timeout;
        Box::pin(async move {
            let res = match tokio::time::timeout(timeout, fut).await {
                Err(_) => return Err(Error::UpstreamTimeout.into()),
                Ok(Err(e)) => return Err(classify(e)),
                Ok(Ok(res)) => res,
            };
            let (mut parts, body) = res.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            headers::add_via(&mut parts.headers);
            Ok(Response::from_parts(parts, boxed(body)))
        })
    }
}

fn classify(e: hyper_util::client::legacy::Error) -> BoxError {
    // One of our errors in the cause chain (the request body went over its
    // limit while streaming) is the cause: passed on whole, so rescue and the
    // record find it with the same classification.
    if crate::error::classify(&e).is_some() {
        return Box::new(e);
    }
    let mut detail = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(s) = cur {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        cur = s.source();
    }
    Error::UpstreamUnavailable(detail).into()
}

/// The scheme of the upstream, for readiness and logs.
pub fn default_port(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        })
}
