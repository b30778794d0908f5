//! Rate limiting end to end: a real gateway on loopback with real signed
//! tokens, a recording upstream, and a real HTTP client.
//!
//! Quotas are chosen so that no refill can happen while a test runs (one
//! request per 100 s) except where a test waits for `Retry-After` on
//! purpose.

mod support;

use http::Method;
use support::gateway::{TestGateway, standard};
use support::http::{Reply, get, send};
use support::tokens::token;
use support::upstream::Recording;

const LIST: &str = "/beta/sim-integrations";
const ONE: &str = "/beta/sim-integrations/2c9180835d2e5168015d32f890ca1581";

/// reads: burst 3, mutations: burst 1, both refilling one per 100 s.
const SLOW: &str = r#"
[rate_limit.reads]
requests_per_second = 0.01
burst = 3
[rate_limit.mutations]
requests_per_second = 0.01
burst = 1
"#;

fn admin(client: &str) -> String {
    token(client, &["ORG_ADMIN"], &["sp:scopes:all"])
}

async fn start(section: &str) -> (Recording, TestGateway) {
    let up = Recording::start().await;
    let gw = TestGateway::start(&format!("{}\n{section}", standard(&up.url()))).await;
    (up, gw)
}

async fn delete(url: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    send(Method::DELETE, url, &[("authorization", &auth)], "").await
}

#[tokio::test]
async fn burst_then_429_and_limited_requests_never_reach_the_upstream() {
    let (up, gw) = start(SLOW).await;
    let t = admin("alice");
    let mut states = Vec::new();
    for _ in 0..3 {
        let res = get(&gw.url(LIST), Some(&t)).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(
            res.header("ratelimit-policy"),
            r#""reads";q=3;w=300, "mutations";q=1;w=100"#
        );
        states.push(res.header("ratelimit").to_owned());
    }
    assert_eq!(
        states,
        [
            r#""reads";r=2;t=100"#,
            r#""reads";r=1;t=200"#,
            r#""reads";r=0;t=300"#
        ]
    );
    assert_eq!(up.count(), 3);

    let res = get(&gw.url(LIST), Some(&t)).await;
    assert_eq!(res.status, 429);
    assert_eq!(
        res.json(),
        serde_json::json!({"message": "Rate Limit Exceeded"})
    );
    assert_eq!(res.header("content-type"), "application/json");
    let retry_after: u64 = res.header("retry-after").parse().unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    assert!(res.header("ratelimit").starts_with(r#""reads";r=0;t="#));
    assert!(!res.header("ratelimit-policy").is_empty());
    assert!(!res.header("x-request-id").is_empty());
    // Nothing more was forwarded.
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

/// A limiter that does not limit fails this test: with one request per
/// 100 s and a burst of 1, the second request cannot have its quota back
/// before 100 s have passed, so it must be refused, with a `Retry-After`
/// within the window, and it must not reach the upstream. No wall-clock
/// wait: that waiting `Retry-After` out is enough is the fake-clock test
/// `retry_after_is_exact_and_honoured` in `src/rate_limit/per_client.rs`.
#[tokio::test]
async fn over_quota_is_refused_with_retry_after_until_the_window_refills() {
    let (up, gw) = start("[rate_limit.reads]\nrequests_per_second = 0.01\nburst = 1\n").await;
    let t = admin("alice");
    let first = get(&gw.url(LIST), Some(&t)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("ratelimit"), r#""reads";r=0;t=100"#);
    for _ in 0..3 {
        let res = get(&gw.url(LIST), Some(&t)).await;
        assert_eq!(res.status, 429, "{}", res.text());
        let wait: u64 = res.header("retry-after").parse().unwrap();
        assert!((1..=100).contains(&wait), "Retry-After {wait}");
        let state = res.header("ratelimit");
        assert!(state.starts_with(r#""reads";r=0;t="#), "{state}");
    }
    assert_eq!(up.count(), 1, "refused requests never reach the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn clients_are_independent() {
    let (up, gw) = start(SLOW).await;
    let alice = admin("alice");
    for _ in 0..3 {
        assert_eq!(get(&gw.url(LIST), Some(&alice)).await.status, 200);
    }
    assert_eq!(get(&gw.url(LIST), Some(&alice)).await.status, 429);
    let res = get(&gw.url(LIST), Some(&admin("bob"))).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("ratelimit"), r#""reads";r=2;t=100"#);
    assert_eq!(up.count(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn reads_and_mutations_are_limited_separately() {
    let (up, gw) = start(SLOW).await;
    let t = admin("alice");
    let res = delete(&gw.url(ONE), &t).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("ratelimit"), r#""mutations";r=0;t=100"#);
    let res = delete(&gw.url(ONE), &t).await;
    assert_eq!(res.status, 429);
    assert!(res.header("ratelimit").starts_with(r#""mutations";r=0;"#));
    // Reads still have their whole burst.
    let res = get(&gw.url(ONE), Some(&t)).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("ratelimit"), r#""reads";r=2;t=100"#);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, Method::DELETE);
    assert_eq!(seen[1].method, Method::GET);
    gw.stop().await;
}

#[tokio::test]
async fn spoofed_forwarding_headers_and_fresh_tokens_do_not_change_the_key() {
    let (up, gw) = start(SLOW).await;
    for i in 0..3 {
        // A new token each time (new jti), and a different claimed address.
        let auth = format!("Bearer {}", admin("alice"));
        let ip = format!("192.0.2.{i}");
        let res = send(
            Method::GET,
            &gw.url(LIST),
            &[
                ("authorization", &auth),
                ("x-forwarded-for", &ip),
                ("x-real-ip", &ip),
                ("forwarded", &format!("for={ip}")),
            ],
            "",
        )
        .await;
        assert_eq!(res.status, 200);
    }
    let auth = format!("Bearer {}", admin("alice"));
    let res = send(
        Method::GET,
        &gw.url(LIST),
        &[
            ("authorization", &auth),
            ("x-forwarded-for", "198.51.100.99"),
        ],
        "",
    )
    .await;
    assert_eq!(res.status, 429);
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn client_override_has_its_own_quota() {
    let (up, gw) = start(&format!(
        "{SLOW}\n[[rate_limit.overrides]]\nname = \"batch\"\nclient = \"batch-loader\"\nreads = {{ requests_per_second = 0.01, burst = 6 }}\n"
    ))
    .await;
    let t = admin("batch-loader");
    for i in 0..6 {
        let res = get(&gw.url(LIST), Some(&t)).await;
        assert_eq!(res.status, 200);
        assert_eq!(
            res.header("ratelimit-policy"),
            r#""batch-reads";q=6;w=600, "mutations";q=1;w=100"#
        );
        assert!(
            res.header("ratelimit")
                .starts_with(&format!(r#""batch-reads";r={};"#, 5 - i))
        );
    }
    assert_eq!(get(&gw.url(LIST), Some(&t)).await.status, 429);
    assert_eq!(up.count(), 6);
    gw.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_peer() {
    let (up, gw) = start(&format!(
        "{SLOW}\n[rate_limit.auth_failures]\nfailures_per_minute = 0.6\nburst = 3\n"
    ))
    .await;
    let good = admin("alice");
    // Successes spend nothing from the peer's failure budget.
    for _ in 0..3 {
        assert_eq!(get(&gw.url(LIST), Some(&good)).await.status, 200);
    }
    for _ in 0..3 {
        let res = get(&gw.url(LIST), Some("junk.junk.junk")).await;
        assert_eq!(res.status, 401);
    }
    // Over budget: refused before any token is looked at, good or bad, and
    // whatever address the client claims.
    let res = get(&gw.url(LIST), Some("junk.junk.junk")).await;
    assert_eq!(res.status, 429);
    assert_eq!(
        res.json(),
        serde_json::json!({"message": "Rate Limit Exceeded"})
    );
    let retry_after: u64 = res.header("retry-after").parse().unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    assert!(res.header("ratelimit").is_empty());
    let auth = format!("Bearer {}", admin("bob"));
    let res = send(
        Method::GET,
        &gw.url(LIST),
        &[("authorization", &auth), ("x-forwarded-for", "192.0.2.1")],
        "",
    )
    .await;
    assert_eq!(res.status, 429);
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn passthrough_mode_has_no_rate_limit() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    for _ in 0..50 {
        let res = get(&gw.url(LIST), None).await;
        assert_eq!(res.status, 200);
        assert!(res.header("ratelimit").is_empty());
    }
    assert_eq!(up.count(), 50);
    gw.stop().await;
}

#[tokio::test]
async fn bad_quotas_stop_start_up_naming_the_key() {
    let up = Recording::start().await;
    let body = format!(
        "{}\n[rate_limit.mutations]\nrequests_per_second = 0\nburst = 5\n",
        standard(&up.url())
    );
    let err = TestGateway::try_start_with(&body, "").await.err().unwrap();
    assert!(
        err.contains("rate_limit.mutations.requests_per_second"),
        "{err}"
    );
}

#[tokio::test]
async fn requests_refused_further_down_still_carry_the_headers() {
    let (up, gw) = start(SLOW).await;
    let auth = format!("Bearer {}", admin("alice"));
    // Counted, then refused by body validation: the quota is spent and said so.
    let res = send(
        Method::POST,
        &gw.url(LIST),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        "{\"name\": 42}",
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.header("ratelimit"), r#""mutations";r=0;t=100"#);
    assert_eq!(
        res.header("ratelimit-policy"),
        r#""reads";q=3;w=300, "mutations";q=1;w=100"#
    );
    let res = send(
        Method::POST,
        &gw.url(LIST),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        "{\"name\": 42}",
    )
    .await;
    assert_eq!(res.status, 429);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}
