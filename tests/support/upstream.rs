//! Upstreams for tests: a recording echo server that remembers every request
//! it received, so tests can assert what did or did not reach the upstream;
//! a raw upstream that answers byte-exact responses; the reference API. Their
//! tasks run through [`Panics`]: a panic in one fails the test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::task::{CheckOnDrop, Panics};

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
    connections: Arc<AtomicUsize>,
    panics: Arc<CheckOnDrop>,
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
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let panics = Panics::default();
        let tasks = panics.clone();
        panics.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tasks.spawn(async move {
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
        Recording {
            addr,
            seen,
            connections,
            panics: Arc::new(CheckOnDrop(panics)),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.panics.0.check();
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.panics.0.check();
        self.seen.lock().unwrap().len()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.panics.0.check();
        self.connections.load(Ordering::SeqCst)
    }
}

/// The reference SIM Integrations API running for a test: derefs to its
/// store (for asserting what it holds); a panic in its tasks fails the test
/// when this is dropped.
#[derive(Debug)]
pub struct Reference {
    api: simgate::upstream::Api,
    _panics: CheckOnDrop,
}

impl std::ops::Deref for Reference {
    type Target = simgate::upstream::Api;
    fn deref(&self) -> &Self::Target {
        &self.api
    }
}

/// Starts the reference SIM Integrations API on an ephemeral loopback port
/// and returns its address and a handle on its store. It serves until the
/// test's runtime ends.
pub async fn spawn_reference() -> (SocketAddr, Reference) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let api = simgate::upstream::Api::new();
    let panics = Panics::default();
    let tasks = panics.clone();
    let serving = api.clone();
    panics.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let api = serving.clone();
            tasks.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.handle(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (
        addr,
        Reference {
            api,
            _panics: CheckOnDrop(panics),
        },
    )
}

/// What a [`Raw`] upstream answers each connection with.
pub type RawAnswer = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// An upstream that reads each request head (and its `Content-Length`
/// body) as raw bytes and writes a byte-exact answer, then closes: for
/// responses a well-behaved server cannot produce.
#[derive(Clone)]
pub struct Raw {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    panics: Arc<CheckOnDrop>,
}

impl Raw {
    /// Answers every request with `response`.
    pub async fn start(response: &[u8]) -> Raw {
        let response = response.to_vec();
        Self::start_with(Arc::new(move |_| response.clone())).await
    }

    /// Answers every request with what `answer` makes of it.
    pub async fn start_with(answer: RawAnswer) -> Raw {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let panics = Panics::default();
        let tasks = panics.clone();
        panics.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let answer = answer.clone();
                tasks.spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let out = answer(&buf);
                    log.lock().unwrap().push(buf);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Raw {
            addr,
            requests,
            panics: Arc::new(CheckOnDrop(panics)),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every raw request received so far.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.panics.0.check();
        self.requests.lock().unwrap().clone()
    }
}

/// The first position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
