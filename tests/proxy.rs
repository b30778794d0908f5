//! Proxy core: header hygiene, request ids, forwarding headers, limits and
//! upstream failures, through a real gateway on loopback.

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
