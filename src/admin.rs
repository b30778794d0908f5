//! The admin listener: operators' endpoints on their own address, never on
//! the API port.
//!
//! `[admin] listen = "127.0.0.1:9901"` turns it on (off when absent). It
//! serves, over HTTP/1.1 and HTTP/2:
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | the Prometheus scrape ([`crate::metrics`]), text format 0.0.4 |
//! | `GET /healthz` | `200 {"status":"ok"}` while the process runs |
//! | `GET /readyz` | `200 {"status":"ready"}`, or 503 naming the first failing readiness check |
//! | `POST /reload` | reloads the configuration ([`crate::reload`]): 200 with the new generation, 400 with the error |
//!
//! Other paths are 404 and other methods on a known path 405 (with
//! `Allow`), both as JSON. Nothing here is authenticated: bind it to
//! loopback or a management network. More routes are added with
//! [`Admin::route`] before the listener starts.
//!
//! ```no_run
//! # async fn run(gateway: simgate::stack::Gateway) -> Result<(), simgate::body::BoxError> {
//! let admin = gateway.admin().route(http::Method::POST, "/ping", |_req| async {
//!     http::Response::new(simgate::body::full("pong"))
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9901").await?;
//! let running = simgate::admin::start_on(listener, admin)?;
//! # running.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{Body, BoxError, boxed, full};
use crate::health::Health;
use crate::metrics::Metrics;

/// The future an admin handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// An admin route's handler.
pub type Handler = Arc<dyn Fn(Request<Body>) -> HandlerFuture + Send + Sync>;

/// The admin routes; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    routes: Vec<(Method, Arc<str>, Handler)>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        f.debug_struct("Admin").field("routes", &routes).finish()
    }
}

impl Admin {
    /// `/metrics` from `metrics`, `/healthz`, and `/readyz` from `health`'s
    /// readiness checks.
    pub fn new(metrics: Metrics, health: Health) -> Admin {
        Admin { routes: Vec::new() }
            .route(Method::GET, "/metrics", move |_req| {
                let text = metrics.render();
                async move {
                    let mut res = Response::new(full(text));
                    res.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                    );
                    res
                }
            })
            .route(Method::GET, "/healthz", |_req| async {
                json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
            })
            .route(Method::GET, "/readyz", move |_req| {
                let health = health.clone();
                async move {
                    match health.ready().await {
                        Ok(()) => json(StatusCode::OK, serde_json::json!({ "status": "ready" })),
                        Err(why) => json(
                            StatusCode::SERVICE_UNAVAILABLE,
                            serde_json::json!({ "status": why }),
                        ),
                    }
                }
            })
    }

    /// Adds a route answered by `handler` (replacing one with the same
    /// method and path). `GET` routes also answer `HEAD`.
    pub fn route<F, Fut>(mut self, method: Method, path: &str, handler: F) -> Admin
    where
        F: Fn(Request<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.routes
            .retain(|(m, p, _)| !(*m == method && &**p == path));
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.routes.push((method, path.into(), handler));
        self
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let path = req.uri().path();
        let method = if req.method() == Method::HEAD {
            Method::GET
        } else {
            req.method().clone()
        };
        let on_path: Vec<&(Method, Arc<str>, Handler)> = self
            .routes
            .iter()
            .filter(|(_, p, _)| &**p == path)
            .collect();
        if let Some((_, _, handler)) = on_path.iter().find(|(m, _, _)| *m == method) {
            let head = req.method() == Method::HEAD;
            let res = handler(req).await;
            return if head {
                res.map(|_| crate::body::empty())
            } else {
                res
            };
        }
        if on_path.is_empty() {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": "no such admin endpoint" }),
            );
        }
        let allow: Vec<&str> = on_path.iter().map(|(m, _, _)| m.as_str()).collect();
        let mut res = json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({ "error": "method not allowed" }),
        );
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            res.headers_mut().insert(ALLOW, v);
        }
        res
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A running admin listener.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits until the accept loop has ended (open
    /// connections are dropped).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}

/// Starts the admin listener of `gateway` when `[admin] listen` is set.
pub async fn start_configured(
    gateway: &crate::stack::Gateway,
) -> Result<Option<AdminServer>, BoxError> {
    let Some(addr) = gateway.config().admin.listen else {
        return Ok(None);
    };
    let server = start(addr, gateway.admin()).await?;
    tracing::info!(addr = %server.local_addr(), "admin listening (/metrics, /healthz, /readyz, POST /reload)");
    Ok(Some(server))
}

/// Binds `addr` and serves `admin` in the background.
pub async fn start(addr: SocketAddr, admin: Admin) -> Result<AdminServer, BoxError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ([admin] listen): {e}"))?;
    start_on(listener, admin)
}

/// Serves `admin` on an already bound listener.
pub fn start_on(listener: TcpListener, admin: Admin) -> Result<AdminServer, BoxError> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let done = tokio::spawn(accept_loop(listener, admin, stopped));
    Ok(AdminServer { addr, stop, done })
}

async fn accept_loop(listener: TcpListener, admin: Admin, mut stopped: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let admin = Arc::new(admin);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req.map(boxed)).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "admin connection closed with error");
                    }
                }
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn call(
        admin: &Admin,
        method: Method,
        path: &str,
    ) -> (StatusCode, String, http::HeaderMap) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(crate::body::empty())
            .unwrap();
        let res = admin.handle(req).await;
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            String::from_utf8_lossy(&bytes).into_owned(),
            parts.headers,
        )
    }

    #[tokio::test]
    async fn serves_metrics_health_and_added_routes() {
        let metrics = Metrics::new();
        metrics.auth_failure("expired");
        let admin = Admin::new(metrics, Health::new("/healthz", "/readyz", vec![])).route(
            Method::POST,
            "/reload",
            |_req| async { Response::new(full("reloaded")) },
        );
        let (status, text, headers) = call(&admin, Method::GET, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(headers[CONTENT_TYPE], crate::metrics::CONTENT_TYPE);
        assert!(text.contains("simgate_auth_failures_total{reason=\"expired\"} 1"));
        assert_eq!(call(&admin, Method::GET, "/healthz").await.0, 200);
        assert_eq!(call(&admin, Method::GET, "/readyz").await.0, 200);
        assert_eq!(call(&admin, Method::POST, "/reload").await.1, "reloaded");
        let (status, body, _) = call(&admin, Method::HEAD, "/metrics").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, ""));
        let (status, _, headers) = call(&admin, Method::POST, "/metrics").await;
        assert_eq!(status, 405);
        assert_eq!(headers[ALLOW], "GET");
        assert_eq!(call(&admin, Method::GET, "/nope").await.0, 404);
    }
}
