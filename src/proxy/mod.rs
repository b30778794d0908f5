//! The innermost service: sends the request to the upstream and streams the
//! answer back.
//!
//! The upstream request is built above it, in one step ([`rewrite`]: URL,
//! header hygiene, forwarding headers, credential); [`Proxy`] only sends it
//! and cleans the response's hop-by-hop headers ([`headers`]). Connection
//! failures become 502 ([`Error::UpstreamUnavailable`]), a response that
//! does not start within `upstream.response_timeout` becomes 504
//! ([`Error::UpstreamTimeout`]). An `https://` upstream is verified against
//! the system roots plus `upstream.ca_file`.

pub mod headers;
pub mod rewrite;

pub use rewrite::UpstreamRequestLayer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Scheme;
use http::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::Service;

use crate::body::{Body, BoxError, boxed};
use crate::config::UpstreamConfig;
use crate::error::Error;

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
        // System roots plus `upstream.ca_file`.
        let roots = crate::credentials::oauth::client_tls(upstream.ca_file.as_deref())?;
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(roots)
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
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let fut = self.client.request(req);
        let timeout = self.upstream.response_timeout;
        Box::pin(async move {
            let res = match tokio::time::timeout(timeout, fut).await {
                Err(_) => return Err(Error::UpstreamTimeout.into()),
                Ok(Err(e)) => return Err(classify(e)),
                Ok(Ok(res)) => res,
            };
            // We never ask for an upgrade (Upgrade is hop-by-hop and
            // dropped), and HTTP/2 has no 101 at all: relaying one would hand
            // the client a protocol it did not ask for (RFC 9110 §15.2.2).
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                return Err(Error::UpstreamUnavailable(
                    "upstream answered 101 Switching Protocols to a request without Upgrade".into(),
                )
                .into());
            }
            let (mut parts, body) = res.into_parts();
            headers::response_framing(&mut parts.headers);
            headers::strip_hop_by_hop(&mut parts.headers);
            headers::add_via(&mut parts.headers);
            Ok(Response::from_parts(parts, boxed(body)))
        })
    }
}

fn classify(e: hyper_util::client::legacy::Error) -> BoxError {
    // One of our errors in the cause chain (the request body went over its
    // limit while streaming, or its framing broke: the client's fault) is the
    // cause: passed on whole, so rescue and the record find it with the same
    // classification.
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
