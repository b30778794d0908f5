//! The floor for simgate's proxy core: a bare reverse proxy with the same
//! crates (hyper 1 server, hyper-util legacy client with its pool) on a
//! current-thread runtime, and nothing else: no header hygiene, no limits,
//! no layers. `benches/run.sh` runs it side by side with simgate.
//!
//! `cargo build --release --example minimal_proxy`, then
//! `minimal_proxy LISTEN_ADDR UPSTREAM_ADDR` (both `host:port`).

use std::net::SocketAddr;

use http::Uri;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: minimal_proxy LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: http::uri::Authority = upstream.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: http::uri::Authority) -> Result<(), Error> {
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), upstream.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: http::uri::Authority,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, Error> {
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(upstream);
    *req.uri_mut() = Uri::from_parts(parts)?;
    req.headers_mut().remove(http::header::HOST);
    Ok(client.request(req).await?)
}
