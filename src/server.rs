//! The listener: accepts connections (plain or TLS), serves HTTP/1.1 and
//! HTTP/2 (auto-detected) with hyper-util, tags each request with its peer,
//! and shuts down gracefully.
//!
//! Every connection has a deadline from its first byte: the TLS handshake
//! and the protocol preface must arrive within `limits.header_read_timeout`
//! (hyper-util's own auto-detection has no timer, see [`preface`]). After
//! it, HTTP/1.1 is bounded by hyper's header read timeout (which also
//! closes idle keep-alive connections) and HTTP/2 by `limits.idle_timeout`
//! and PING keep-alive. HTTP/2 resets beyond a small budget (rapid reset)
//! end the connection.
//!
//! On shutdown the listener closes at once; connections still before their
//! first request are dropped, the others finish their in-flight requests
//! within the grace period and are then dropped.

mod idle;
mod preface;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::{Body, BoxError, boxed};
use crate::config::LimitsConfig;
use crate::error::Error;
use crate::net::{PeerAddr, Tls};
use crate::stack::Gateway;

use self::idle::{Busy, Idle, Tracked};
use self::preface::{Protocol, Rewind};

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish within the grace
    /// period, and waits until it has.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }

    /// Waits until the server stops (after a shutdown from elsewhere).
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    /// A handle that can ask the server to stop.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds the configured address and serves the gateway in the background.
pub async fn start(gateway: Gateway) -> Result<Running, BoxError> {
    let config = gateway.config();
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    start_on(listener, gateway)
}

/// Serves the gateway on an already bound listener.
pub fn start_on(listener: TcpListener, gateway: Gateway) -> Result<Running, BoxError> {
    let addr = listener.local_addr()?;
    // The certificate is the current generation's, swapped by reloads.
    let tls = gateway.tls_acceptor()?;
    let (stop, stopped) = watch::channel(false);
    let done = tokio::spawn(accept_loop(listener, tls, gateway, stopped));
    Ok(Running { addr, stop, done })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Gateway,
    mut stopped: watch::Receiver<bool>,
) {
    let protocols = Arc::new(Protocols::new(&gateway.config().limits));
    let service = gateway.service();
    let grace = gateway.config().server.shutdown_grace;
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stopping(&mut stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = Connection {
            service: service.clone(),
            peer: PeerAddr(peer),
            tls: Tls(tls.is_some()),
            idle: None,
        };
        connections.spawn(serve(
            stream,
            tls.clone(),
            svc,
            protocols.clone(),
            stopped.clone(),
        ));
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(?grace, "grace period over; dropping remaining connections");
    }
    // Dropping the set aborts what is left.
}

/// The HTTP servers, one per protocol: [`preface`] decides which one a
/// connection gets, under the connection's first deadline.
struct Protocols {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    /// From the accepted socket to a known protocol (TLS handshake included).
    handshake_timeout: Duration,
    /// HTTP/2 with no request in flight.
    idle_timeout: Duration,
}

impl Protocols {
    fn new(limits: &LimitsConfig) -> Self {
        let builder = connection_builder(limits);
        Protocols {
            http1: builder.clone().http1_only(),
            http2: builder.http2_only(),
            handshake_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

/// One connection, from the accepted socket to its close. A deadline runs
/// from the first byte: the TLS handshake and the protocol preface must be
/// done within `header_read_timeout`, and shutdown cancels it at once. After
/// it, HTTP/1.1 is bounded by hyper's header read timeout and HTTP/2 by the
/// idle timeout; shutdown drains the connection gracefully.
async fn serve<S>(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    svc: Connection<S>,
    protocols: Arc<Protocols>,
    mut stopped: watch::Receiver<bool>,
) where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let deadline = tokio::time::Instant::now() + protocols.handshake_timeout;
    let peer = svc.peer.0;
    match tls {
        None => drive(stream, svc, &protocols, deadline, stopped).await,
        Some(acceptor) => match before(deadline, &mut stopped, acceptor.accept(stream)).await {
            Some(Ok(stream)) => drive(stream, svc, &protocols, deadline, stopped).await,
            Some(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            None => tracing::debug!(%peer, "TLS handshake not done in time"),
        },
    }
}

/// Resolves once shutdown has started (at once if it has).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// `step`, unless the deadline passes or shutdown starts first.
async fn before<F: std::future::Future>(
    deadline: tokio::time::Instant,
    stopped: &mut watch::Receiver<bool>,
    step: F,
) -> Option<F::Output> {
    tokio::select! {
        out = tokio::time::timeout_at(deadline, step) => out.ok(),
        _ = stopping(stopped) => None,
    }
}

async fn drive<I, S>(
    mut io: I,
    mut svc: Connection<S>,
    protocols: &Protocols,
    deadline: tokio::time::Instant,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let peer = svc.peer.0;
    let (protocol, prefix) = match before(deadline, &mut stopped, preface::read(&mut io)).await {
        Some(Ok(Some(found))) => found,
        Some(Ok(None)) => return,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before its first request");
            return;
        }
        None => {
            tracing::debug!(%peer, "no protocol preface in time; closing");
            return;
        }
    };
    let io = TokioIo::new(Rewind::new(prefix, io));
    let (conn, idle) = match protocol {
        Protocol::Http1 => (protocols.http1.serve_connection(io, svc), None),
        Protocol::Http2 => {
            let idle = Idle::default();
            svc.idle = Some(idle.clone());
            (protocols.http2.serve_connection(io, svc), Some(idle))
        }
    };
    tokio::pin!(conn);
    let idle_expired = async {
        match &idle {
            Some(idle) => idle.expired(protocols.idle_timeout).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopping(&mut stopped) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = idle_expired => {
            tracing::debug!(%peer, "HTTP/2 connection idle; closing");
            conn.as_mut().graceful_shutdown();
            // A peer that does not take part in the goodbye (no PING ack)
            // gets the handshake time for it, then the socket is dropped.
            match tokio::time::timeout(protocols.handshake_timeout, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection closed with error");
    }
}

/// The gateway as hyper sees it on one connection: each request is boxed
/// and tagged with the connection's peer address and TLS flag. Errors of
/// the client's body become [`Error::ClientBody`] where they arise. On
/// HTTP/2 each request counts as in flight for the idle timer until its
/// response body is dropped.
#[derive(Clone)]
struct Connection<S> {
    service: S,
    peer: PeerAddr,
    tls: Tls,
    idle: Option<Idle>,
}

impl<S> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = InFlight<tower::util::Oneshot<S, Request<Body>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(|b| boxed(b.map_err(Error::ClientBody)));
        req.extensions_mut().insert(self.peer);
        req.extensions_mut().insert(self.tls);
        InFlight {
            inner: self.service.clone().oneshot(req),
            busy: self.idle.as_ref().map(Idle::busy),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response future that hands its in-flight mark to the response body.
    struct InFlight<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F> std::future::Future for InFlight<F>
where
    F: std::future::Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(res.map(|res| match this.busy.take() {
            Some(busy) => res.map(|b| boxed(Tracked::new(b, busy))),
            None => res,
        }))
    }
}

fn connection_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // A peer that stops answering PINGs is gone (RFC 9113 §6.7).
        .keep_alive_interval(limits.idle_timeout.min(KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(limits.header_read_timeout)
        // Rapid reset (CVE-2023-44487): streams reset before they are
        // accepted count against a small budget; beyond it, GOAWAY.
        .max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    builder
}

/// Longest quiet time before an HTTP/2 keep-alive PING.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Streams the peer may open and reset before they are served.
const MAX_PENDING_RESETS: usize = 20;
/// Streams we may reset for the peer's protocol errors before GOAWAY.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
