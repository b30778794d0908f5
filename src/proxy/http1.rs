//! The client for `http://` upstreams: HTTP/1.1 over
//! `hyper::client::conn::http1`, with connections kept per serving thread
//! ([`Pool`]).
//!
//! The request goes out in origin form, with the upstream's `Host` when the
//! rewrite left none (`preserve_host` leaves the client's). A pooled
//! connection that the upstream closed before the request was written is
//! given up and the request sent on another; once written, a request is
//! never sent twice. A connection is put back when its response has been
//! read to the end.
//!
//! hyper-util's legacy client does the same for any scheme; it is kept for
//! `https://` upstreams (TLS, HTTP/2 by ALPN). For plain HTTP this one
//! takes a third fewer instructions per request: no pool map keyed by
//! scheme and authority, no checkout future, no task per response to watch
//! for the connection's readiness (docs/PERFORMANCE.md, phase 4).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pool::Pool;
use crate::body::{Body, BoxError, boxed};
use crate::config::UpstreamConfig;
use crate::error::Error;

/// Sends requests to one `http://` upstream.
#[derive(Debug)]
pub(crate) struct Http1Client {
    pool: Pool,
    /// Where to connect: a name, or an IP address without brackets.
    host: String,
    port: u16,
    /// `Host` when the request has none: the URL's host, and its port unless
    /// it is 80.
    host_header: HeaderValue,
    connect_timeout: Duration,
}

impl Http1Client {
    /// A client for `upstream.url`, which is `http://`.
    pub(crate) fn new(upstream: &UpstreamConfig) -> Result<Self, BoxError> {
        let url = &upstream.url;
        let host = url.host().ok_or("the upstream URL has no host")?;
        let port = super::default_port(url);
        let host_header = match url.port_u16() {
            Some(p) if p != 80 => HeaderValue::try_from(format!("{host}:{p}"))?,
            _ => HeaderValue::try_from(host)?,
        };
        Ok(Http1Client {
            pool: Pool::new(upstream.pool_max_idle, upstream.pool_idle_timeout),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            host_header,
            connect_timeout: upstream.connect_timeout,
        })
    }

    /// Sends `req` (its URI absolute or origin form) and returns the
    /// response head; its body streams from the connection.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, BoxError> {
        let target = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(target);
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host_header.clone());
        }
        loop {
            let (mut sender, reused) = match self.pool.take() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let pool = self.pool.clone();
                    return Ok(res.map(|body| {
                        boxed(Pooled {
                            body,
                            connection: Some((pool, sender)),
                        })
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the pooled connection had closed.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(super::classify(e.into_error())),
                },
            }
        }
    }

    /// A new connection, its task driving it on the current runtime.
    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let unavailable = |detail: String| -> BoxError {
            Error::UpstreamUnavailable(format!("connect to {}:{}: {detail}", self.host, self.port))
                .into()
        };
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "timed out after {:?}",
                    self.connect_timeout
                )));
            }
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };
        tcp.set_nodelay(true)
            .map_err(|e| unavailable(e.to_string()))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(super::classify)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// A response body that puts its connection back into the pool once read
/// to the end. Dropped before the end, it closes the connection.
struct Pooled {
    body: Incoming,
    connection: Option<(Pool, SendRequest<Body>)>,
}

impl Pooled {
    fn put_back(&mut self) {
        if let Some((pool, sender)) = self.connection.take() {
            pool.put(sender);
        }
    }
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.put_back(),
            Some(Ok(_)) if self.body.is_end_stream() => self.put_back(),
            Some(_) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) may never be polled.
        if self.body.is_end_stream() {
            self.put_back();
        }
    }
}
