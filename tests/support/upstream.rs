//! Upstreams for tests: a recording echo server that remembers every request
//! it received, so tests can assert what did or did not reach the upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request and answers 200 with a small JSON
/// echo (`{"method": …, "path": …}`).
#[derive(Debug, Clone)]
pub struct Recording {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recording {
    /// Starts it on an ephemeral loopback port.
    pub async fn start() -> Recording {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let echo = serde_json::json!({
                                "method": parts.method.as_str(),
                                "path": parts.uri.path(),
                            });
                            log.lock().unwrap().push(Seen {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            });
                            let mut res = Response::new(Full::new(Bytes::from(echo.to_string())));
                            res.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Recording { addr, seen }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Starts the reference SIM Integrations API on an ephemeral loopback port
/// and returns its address and a handle on its store (for asserting what it
/// holds). It serves until the test's runtime ends.
pub async fn spawn_reference() -> (SocketAddr, simgate::upstream::Api) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let api = simgate::upstream::Api::new();
    tokio::spawn(simgate::upstream::serve_api(
        listener,
        api.clone(),
        std::future::pending(),
    ));
    (addr, api)
}
