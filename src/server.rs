//! The listener: accepts connections (plain or TLS), serves HTTP/1.1 and
//! HTTP/2 (auto-detected) with hyper-util, tags each request with its peer,
//! and shuts down gracefully.
//!
//! On shutdown the listener closes at once; connections finish their
//! in-flight requests within the grace period and are then dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::{Body, BoxError, boxed};
use crate::config::LimitsConfig;
use crate::net::{PeerAddr, Tls};
use crate::stack::Gateway;

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
    let builder = Arc::new(connection_builder(&gateway.config().limits));
    let service = gateway.service();
    let graceful = GracefulShutdown::new();
    let grace = gateway.config().server.shutdown_grace;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
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
        let is_tls = tls.is_some();
        let svc = Connection {
            service: service.clone(),
            peer: PeerAddr(peer),
            tls: Tls(is_tls),
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        watcher.watch(conn.into_owned()).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection closed with error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "grace period over; dropping remaining connections");
    }
}

/// The gateway as hyper sees it on one connection: each request is boxed
/// and tagged with the connection's peer address and TLS flag.
#[derive(Clone)]
struct Connection<S> {
    service: S,
    peer: PeerAddr,
    tls: Tls,
}

impl<S> hyper::service::Service<Request<Incoming>> for Connection<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<S, Request<Body>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(boxed);
        req.extensions_mut().insert(self.peer);
        req.extensions_mut().insert(self.tls);
        self.service.clone().oneshot(req)
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
        .max_concurrent_streams(256);
    builder
}

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
