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
mod http1;
mod pool;
pub mod rewrite;

pub use rewrite::UpstreamRequestLayer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use http::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::Service;

use self::http1::Http1Client;
use crate::body::{Body, BoxError, boxed};
use crate::config::UpstreamConfig;
use crate::error::Error;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Forwards requests to the configured upstream over a pooled client.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: UpstreamClient,
    upstream: Arc<UpstreamConfig>,
}

/// The client for the upstream's scheme.
#[derive(Clone, Debug)]
enum UpstreamClient {
    /// `http://`: HTTP/1.1, connections kept per thread ([`http1`]).
    Http1(Arc<Http1Client>),
    /// `https://`: hyper-util's client (TLS, HTTP/2 by ALPN).
    Tls(Arc<Client<Connector, Body>>),
}

impl Proxy {
    /// A proxy to `upstream` with its own connection pool.
    pub fn new(upstream: &UpstreamConfig) -> Result<Self, BoxError> {
        // System roots plus `upstream.ca_file` (read even for `http://`, so a
        // bad file is refused whatever the scheme).
        let roots = match (upstream.url.scheme(), &upstream.ca_file) {
            (Some(s), _) if *s == Scheme::HTTPS => Some(crate::credentials::oauth::client_tls(
                upstream.ca_file.as_deref(),
            )?),
            (_, Some(file)) => {
                crate::credentials::oauth::client_tls(Some(file))?;
                None
            }
            (_, None) => None,
        };
        let client = match roots {
            None => UpstreamClient::Http1(Arc::new(Http1Client::new(upstream)?)),
            Some(roots) => UpstreamClient::Tls(Arc::new(tls_client(upstream, roots))),
        };
        Ok(Proxy {
            client,
            upstream: Arc::new(upstream.clone()),
        })
    }
}

fn tls_client(upstream: &UpstreamConfig, roots: rustls::ClientConfig) -> Client<Connector, Body> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(upstream.connect_timeout));
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(roots)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(upstream.pool_idle_timeout)
        .pool_max_idle_per_host(upstream.pool_max_idle)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(tls)
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let timeout = self.upstream.response_timeout;
        match &self.client {
            UpstreamClient::Http1(client) => Box::pin(respond(timeout, client.clone().send(req))),
            UpstreamClient::Tls(client) => {
                let sent = client.request(req);
                Box::pin(respond(timeout, async move {
                    Ok(sent.await.map_err(classify)?.map(boxed))
                }))
            }
        }
    }
}

/// The upstream's response to `sent`, within `timeout`, cleaned for the
/// client.
async fn respond(
    timeout: Duration,
    sent: impl Future<Output = Result<Response<Body>, BoxError>>,
) -> Result<Response<Body>, BoxError> {
    let res = match tokio::time::timeout(timeout, sent).await {
        Err(_) => return Err(Error::UpstreamTimeout.into()),
        Ok(res) => res?,
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
    Ok(Response::from_parts(parts, body))
}

/// A client error as the gateway's: one of ours found in its causes, or
/// the upstream unavailable, with the whole chain as the detail.
fn classify<E: std::error::Error + Send + Sync + 'static>(e: E) -> BoxError {
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
