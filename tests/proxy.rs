//! Proxy core: header hygiene, request ids, forwarding headers, limits and
//! upstream failures, through a real gateway on loopback.

#![allow(clippy::unwrap_used)] // test helpers below are test code too

mod support;

use http::Method;
use support::gateway::TestGateway;
use support::http::{get, send};
use support::upstream::Recording;

#[tokio::test]
async fn forwards_and_sets_forwarding_headers() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    let res = send(
        Method::GET,
        &gw.url("/beta/sim-integrations?limit=5"),
        &[
            ("x-request-id", "req-1"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("x-http-method-override", "DELETE"),
        ],
        "",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-request-id"), "req-1");
    assert_eq!(res.header("via"), "1.1 simgate");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        s.uri.path_and_query().unwrap().as_str(),
        "/beta/sim-integrations?limit=5"
    );
    assert_eq!(s.headers["x-request-id"], "req-1");
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["host"], up.addr.to_string().as_str());
    assert!(
        s.headers["forwarded"]
            .to_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
    assert!(!s.headers.contains_key("x-hop"));
    assert!(!s.headers.contains_key("x-http-method-override"));
    gw.stop().await;
}

#[tokio::test]
async fn health_is_local() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    assert_eq!(get(&gw.url("/healthz"), None).await.status, 200);
    assert_eq!(get(&gw.url("/readyz"), None).await.status, 200);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

/// An upstream that answers after `delay`, echoing the request body length.
async fn slow_upstream(delay: std::time::Duration) -> std::net::SocketAddr {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let n = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from(n.to_string()),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_down_is_502_with_tracking_id() {
    // A port that was just free: nothing listens there.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::passthrough(&format!("http://{free}"), "").await;
    let res = send(
        Method::GET,
        &gw.url("/beta/sim-integrations"),
        &[("x-request-id", "down-1")],
        "",
    )
    .await;
    assert_eq!(res.status, 502);
    let body = res.json();
    assert_eq!(body["detailCode"], "502 Bad Gateway");
    assert_eq!(body["trackingId"], "down-1");
    assert_eq!(get(&gw.url("/readyz"), None).await.status, 503);
    gw.stop().await;
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let addr = slow_upstream(std::time::Duration::from_secs(5)).await;
    let body = format!("[upstream]\nurl = \"http://{addr}\"\nresponse_timeout = \"200ms\"\n");
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    let res = get(&gw.url("/x"), None).await;
    assert_eq!(res.status, 504);
    assert_eq!(res.json()["detailCode"], "504 Gateway Timeout");
    gw.stop().await;
}

#[tokio::test]
async fn body_over_limit_is_413_and_not_forwarded() {
    let up = Recording::start().await;
    let body = format!(
        "[upstream]\nurl = \"{}\"\n[limits]\nmax_body_bytes = 1024\n",
        up.url()
    );
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    let res = send(
        Method::POST,
        &gw.url("/beta/sim-integrations"),
        &[("content-type", "application/json")],
        vec![b'x'; 2048],
    )
    .await;
    assert_eq!(res.status, 413);
    assert_eq!(res.json()["detailCode"], "413 Payload Too Large");
    // Chunked (no Content-Length): counted while streaming.
    let raw = support::http::raw(
        gw.addr,
        format!(
            "POST /beta/sim-integrations HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "y".repeat(2048)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(support::http::raw_status(&raw), 413, "{raw}");
    assert!(up.seen().iter().all(|s| s.body.len() <= 1024));
    assert_eq!(up.seen().iter().filter(|s| !s.body.is_empty()).count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn large_body_streams_through() {
    let addr = slow_upstream(std::time::Duration::ZERO).await;
    let body =
        format!("[upstream]\nurl = \"http://{addr}\"\n[limits]\nmax_body_bytes = 16777216\n");
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    let res = send(
        Method::PUT,
        &gw.url("/big"),
        &[],
        vec![b'z'; 8 * 1024 * 1024],
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), (8 * 1024 * 1024).to_string());
    gw.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let addr = slow_upstream(std::time::Duration::from_millis(500)).await;
    let gw = TestGateway::passthrough(&format!("http://{addr}"), "shutdown_grace = \"5s\"").await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let gw_addr = gw.addr;
    gw.stop().await;
    let res = in_flight.await.unwrap();
    assert_eq!(res.status, 200, "in-flight request finished");
    // The listener is closed now.
    assert!(tokio::net::TcpStream::connect(gw_addr).await.is_err());
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    let addr = slow_upstream(std::time::Duration::from_millis(800)).await;
    let body =
        format!("[upstream]\nurl = \"http://{addr}\"\n[limits]\nmax_concurrent_requests = 1\n");
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    let url = gw.url("/slow");
    let first = tokio::spawn(async move { get(&url, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = get(&gw.url("/slow"), None).await;
    assert_eq!(second.status, 503);
    assert_eq!(second.header("retry-after"), "1");
    assert_eq!(first.await.unwrap().status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn configured_headers_are_added_and_authorization_stripped() {
    let up = Recording::start().await;
    let body = format!(
        "[upstream]\nurl = \"{}\"\n[upstream.headers]\n\"X-SailPoint-Experimental\" = \"true\"\n",
        up.url()
    );
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    let res = send(
        Method::GET,
        &gw.url("/a"),
        &[
            ("authorization", "Bearer secret"),
            ("x-sailpoint-experimental", "false"),
        ],
        "",
    )
    .await;
    assert_eq!(res.status, 200);
    let seen = &up.seen()[0];
    assert_eq!(seen.headers["x-sailpoint-experimental"], "true");
    assert!(!seen.headers.contains_key("authorization"));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_reused_up_to_pool_max_idle() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    for _ in 0..5 {
        assert_eq!(
            get(&gw.url("/beta/sim-integrations"), None).await.status,
            200
        );
    }
    assert_eq!(up.count(), 5);
    assert_eq!(up.connections(), 1, "one kept-alive upstream connection");
    gw.stop().await;

    let up = Recording::start().await;
    let body = format!("[upstream]\nurl = \"{}\"\npool_max_idle = 0\n", up.url());
    let gw = TestGateway::start_with(&body, support::gateway::PASSTHROUGH).await;
    for _ in 0..3 {
        assert_eq!(
            get(&gw.url("/beta/sim-integrations"), None).await.status,
            200
        );
    }
    assert_eq!(up.count(), 3);
    assert_eq!(up.connections(), 3, "none kept idle");
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_answer_gets_a_new_connection_per_request() {
    // No `Connection: close`: the upstream just closes, as one whose idle
    // timeout has passed.
    let up = support::upstream::Raw::start(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await;
    let gw = TestGateway::passthrough(&format!("http://{}", up.addr), "").await;
    for _ in 0..3 {
        let res = get(&gw.url("/beta/sim-integrations"), None).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "{}");
    }
    assert_eq!(up.requests().len(), 3);
    gw.stop().await;
}

/// An `https://` upstream (here a second gateway with a TLS listener in
/// front of the recording upstream) is verified against `upstream.ca_file`
/// and reached over TLS; without the CA it is refused as unavailable.
#[tokio::test]
async fn an_https_upstream_is_verified_against_ca_file() {
    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = support::tls::certificate("tls upstream");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let tls_server = format!(
        "{}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        support::gateway::PASSTHROUGH,
        cert_file.display(),
        key_file.display()
    );
    let front = TestGateway::start_with(
        &format!("[upstream]\nurl = \"{}\"\n", up.url()),
        &tls_server,
    )
    .await;
    let https = format!("https://127.0.0.1:{}", front.addr.port());

    let trusting = format!(
        "[upstream]\nurl = \"{https}\"\nca_file = \"{}\"\n",
        cert_file.display()
    );
    let gw = TestGateway::start_with(&trusting, support::gateway::PASSTHROUGH).await;
    let res = get(&gw.url("/beta/sim-integrations?limit=1"), None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["path"], "/beta/sim-integrations");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].uri.path_and_query().unwrap().as_str(),
        "/beta/sim-integrations?limit=1"
    );
    gw.stop().await;

    let untrusting = format!("[upstream]\nurl = \"{https}\"\n");
    let gw = TestGateway::start_with(&untrusting, support::gateway::PASSTHROUGH).await;
    let res = get(&gw.url("/beta/sim-integrations"), None).await;
    assert_eq!(res.status, 502);
    assert_eq!(up.count(), 1, "nothing more reached the upstream");
    gw.stop().await;
    front.stop().await;
}
