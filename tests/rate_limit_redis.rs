//! Shared quotas end to end: a real Redis (`redis-server` on a free loopback
//! port), two gateway replicas sharing it, real signed tokens, a recording
//! upstream and a real HTTP client. Redis is paused (SIGSTOP: nothing
//! answers) and killed mid-test to exercise each `on_error` policy, then
//! started again on the same port to see shared counting resume without
//! restarting the gateways. Also: the failed-authentication limiter never
//! refuses a token that is already in the verified-token cache.

// A failed expectation in a test is a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::gateway::{TestGateway, standard};
use support::http::{Reply, get};
use support::redis::RedisServer;
use support::tokens::token;
use support::upstream::Recording;

const LIST: &str = "/beta/sim-integrations";

/// Every request of these tests must finish well within this (the store's
/// `timeout` is 100 ms); a request that takes longer fails the test.
const NO_HANG: Duration = Duration::from_secs(5);

fn admin(client: &str) -> String {
    token(client, &["ORG_ADMIN"], &["sp:scopes:all"])
}

/// A GET that must not hang.
async fn read(gw: &TestGateway, token: &str) -> Reply {
    tokio::time::timeout(NO_HANG, get(&gw.url(LIST), Some(token)))
        .await
        .unwrap_or_else(|_| panic!("request to {} hung past {NO_HANG:?}", gw.addr))
}

/// `[rate_limit]` with the Redis store and `reads` quota.
fn shared(redis: &RedisServer, on_error: &str, reads: (f64, u32)) -> String {
    format!(
        r#"
[rate_limit]
store = "redis"
[rate_limit.reads]
requests_per_second = {}
burst = {}
[rate_limit.redis]
url = "{}"
key_prefix = "test:"
timeout = "100ms"
on_error = "{on_error}"
replicas = 2
[admin]
listen = "127.0.0.1:0"
"#,
        reads.0,
        reads.1,
        redis.url()
    )
}

/// Two replicas on one upstream, with `section`.
async fn replicas(section: &str) -> (Recording, TestGateway, TestGateway) {
    let up = Recording::start().await;
    let config = format!("{}\n{section}", standard(&up.url()));
    let a = TestGateway::start(&config).await;
    let b = TestGateway::start(&config).await;
    (up, a, b)
}

fn remaining(res: &Reply) -> Option<u32> {
    res.header("ratelimit")
        .strip_prefix("\"reads\";r=")?
        .split(';')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_quota_and_either_answers_429_with_retry_after() {
    let redis = RedisServer::start();
    // 5 per second, burst 10: one more every 200 ms.
    let (rate, burst) = (5.0, 10);
    let (up, a, b) = replicas(&shared(&redis, "deny", (rate, burst))).await;
    let t = admin("alice");
    let mut allowed = 0u32;
    let mut limited = [0u32; 2];
    let mut last_429 = None;
    // 60 requests, one every 50 ms (20/s offered), alternating replicas.
    let start = Instant::now();
    let mut last_sent = start;
    for i in 0..60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        last_sent = Instant::now();
        let res = read(gw, &t).await;
        match res.status.as_u16() {
            200 => {
                allowed += 1;
                assert_eq!(
                    res.header("ratelimit-policy"),
                    r#""reads";q=10;w=2, "mutations";q=5;w=3"#
                );
                assert!(remaining(&res).is_some_and(|r| r < burst), "{res:?}");
            }
            429 => {
                limited[i % 2] += 1;
                assert_eq!(
                    res.json(),
                    serde_json::json!({"message": "Rate Limit Exceeded"})
                );
                // At most one emission interval (200 ms) away, rounded up.
                assert_eq!(res.header("retry-after"), "1");
                assert!(res.header("ratelimit").starts_with(r#""reads";r=0;t="#));
                last_429 = Some(i % 2);
            }
            other => panic!("unexpected {other}: {}", res.text()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = last_sent - start;
    // GCRA over [first, last]: the burst plus one per interval elapsed.
    let expected = f64::from(burst) + rate * elapsed.as_secs_f64();
    assert!(
        (f64::from(allowed) - expected).abs() <= 2.0,
        "allowed {allowed}, expected {expected:.1} over {elapsed:?}"
    );
    assert_eq!(up.count(), allowed as usize);
    // Both replicas refused some: the count is shared.
    assert!(limited[0] > 0 && limited[1] > 0, "{limited:?}");

    // Retry-After honoured on the *other* replica: allowed again.
    let other = if last_429 == Some(0) { &b } else { &a };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(read(other, &t).await.status, 200);

    // One key per client and policy, expiring when its bucket is full again.
    let pttl: i64 = redis
        .command(&["PTTL", "test:reads:id:alice"])
        .and_then(|r| r.trim_start_matches(':').parse().ok())
        .expect("PTTL");
    assert!((1..=2000).contains(&pttl), "{pttl}");
    assert_eq!(redis.command(&["DBSIZE"]).as_deref(), Some(":1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_headers_are_the_local_ones() {
    let redis = RedisServer::start();
    let slow = (0.01, 3);
    let (_up, a, b) = replicas(&shared(&redis, "deny", slow)).await;
    let (_up2, local, _) =
        replicas("[rate_limit.reads]\nrequests_per_second = 0.01\nburst = 3\n").await;
    let t = admin("bob");
    for i in 0..4 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let s = read(gw, &t).await;
        let l = read(&local, &t).await;
        assert_eq!(s.status, l.status, "request {i}");
        assert_eq!(s.header("ratelimit-policy"), l.header("ratelimit-policy"));
        assert_eq!(s.header("ratelimit"), l.header("ratelimit"), "request {i}");
        let (sr, lr): (u64, u64) = (
            s.header("retry-after").parse().unwrap_or(0),
            l.header("retry-after").parse().unwrap_or(0),
        );
        assert!(sr.abs_diff(lr) <= 1, "{sr} vs {lr}");
    }
}

/// Uses up the shared quota (reads: burst 4, no refill) across both
/// replicas, then pauses Redis.
async fn outage(on_error: &str) -> (RedisServer, Recording, TestGateway, TestGateway, String) {
    let redis = RedisServer::start();
    let (up, a, b) = replicas(&shared(&redis, on_error, (0.001, 4))).await;
    let t = admin("carol");
    for (i, gw) in [&a, &b].into_iter().enumerate() {
        let res = read(gw, &t).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(remaining(&res), Some(3 - i as u32));
    }
    redis.pause();
    (redis, up, a, b, t)
}

/// Redis back (killed, started again empty on the same port): waits until
/// `a` counts in it again (its first shared answer is r=3), then `b`.
async fn resumed(redis: &mut RedisServer, a: &TestGateway, b: &TestGateway, t: &str) {
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (gw, want) in [(a, 3), (b, 2)] {
        loop {
            let res = read(gw, t).await;
            assert!(
                matches!(res.status.as_u16(), 200 | 429 | 503),
                "{}: {}",
                res.status,
                res.text()
            );
            if res.status == 200 && remaining(&res).is_some() {
                // The first request this replica counted in Redis again.
                if remaining(&res) == Some(want) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "shared counting did not resume");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Shared again: the two replicas count one quota.
    assert_eq!(remaining(&read(a, t).await), Some(1));
    assert_eq!(remaining(&read(b, t).await), Some(0));
    for gw in [a, b] {
        let res = read(gw, t).await;
        assert_eq!(res.status, 429);
        assert!(res.header("ratelimit").starts_with(r#""reads";r=0;"#));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_local_fallback_divides_quotas_by_replicas() {
    let (mut redis, up, a, b, t) = outage("local").await;
    // Each replica alone: burst 4 ÷ 2 replicas = 2, then 429.
    for gw in [&a, &b] {
        for _ in 0..2 {
            let res = read(gw, &t).await;
            assert_eq!(res.status, 200, "{}", res.text());
            assert_eq!(
                res.header("ratelimit-policy"),
                r#""reads";q=4;w=4000, "mutations";q=5;w=3"#
            );
        }
        let res = read(gw, &t).await;
        assert_eq!(res.status, 429, "{}", res.text());
        assert!(!res.header("retry-after").is_empty());
    }
    assert_eq!(up.count(), 2 + 4);
    // Still ready: the store is not a readiness condition.
    let ready = get(&a.url("/readyz"), None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    resumed(&mut redis, &a, &b, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_deny_answers_503_with_retry_after() {
    let (mut redis, up, a, b, t) = outage("deny").await;
    for gw in [&a, &b, &a] {
        let res = read(gw, &t).await;
        assert_eq!(res.status, 503, "{}", res.text());
        assert_eq!(res.header("retry-after"), "1");
        let body = res.json();
        assert_eq!(body["detailCode"], "503 Service Unavailable");
        assert!(body["trackingId"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // Nothing unlimited reached the upstream.
    assert_eq!(up.count(), 2);
    // A: one request timed out in the store, then the store was down.
    let scrape = get(&a.admin_url("/metrics"), None).await.text();
    for line in [
        "simgate_rate_limit_store_up{store=\"redis\"} 0",
        "simgate_rate_limit_store_errors_total{kind=\"timeout\"} 1",
        "simgate_rate_limit_store_fallback_total{on_error=\"deny\"} 2",
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line} not in\n{scrape}");
    }
    // Refusals before the limiter are unchanged; readiness too.
    assert_eq!(get(&a.url(LIST), None).await.status, 401);
    assert_eq!(get(&b.url("/readyz"), None).await.status, 200);
    resumed(&mut redis, &a, &b, &t).await;
    let scrape = get(&a.admin_url("/metrics"), None).await.text();
    assert!(
        scrape
            .lines()
            .any(|l| l == "simgate_rate_limit_store_up{store=\"redis\"} 1"),
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_allow_lets_everything_through() {
    let (mut redis, up, a, b, t) = outage("allow").await;
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let res = read(gw, &t).await;
        assert_eq!(res.status, 200, "{}", res.text());
        // The policy is advertised; no state, none was counted.
        assert!(!res.header("ratelimit-policy").is_empty());
        assert_eq!(res.header("ratelimit"), "");
    }
    assert_eq!(up.count(), 2 + 10);
    resumed(&mut redis, &a, &b, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_then_up() {
    let mut redis = RedisServer::start();
    let section = shared(&redis, "deny", (0.001, 4));
    redis.kill();
    let (_up, a, b) = replicas(&section).await;
    let t = admin("dave");
    // Never connected: refused at once, not after a hang.
    let res = read(&a, &t).await;
    assert_eq!(res.status, 503, "{}", res.text());
    resumed(&mut redis, &a, &b, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_failure_budget_keeps_its_cached_valid_token() {
    // Failures: burst 3, one more per second.
    let section = "[rate_limit.auth_failures]\nfailures_per_minute = 60\nburst = 3\n";
    let (up, gw, _) = replicas(section).await;
    let good = admin("tool-a");
    assert_eq!(read(&gw, &good).await.status, 200);
    // A broken tool behind the same address.
    for i in 0..6 {
        let res = read(&gw, "junk.junk.junk").await;
        let want = if i < 3 { 401 } else { 429 };
        assert_eq!(res.status, want, "junk {i}: {}", res.text());
    }
    // The cached token still works, again and again.
    for _ in 0..3 {
        let res = read(&gw, &good).await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    // A token that would need a signature check waits for the budget.
    let fresh = admin("tool-b");
    let res = read(&gw, &fresh).await;
    assert_eq!(res.status, 429, "{}", res.text());
    let wait: u64 = res.header("retry-after").parse().expect("Retry-After");
    assert_eq!(wait, 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(read(&gw, &fresh).await.status, 200);
    assert_eq!(up.count(), 1 + 3 + 1);
    // And it is cached now: the peer's budget is spent again, it still works.
    for _ in 0..3 {
        read(&gw, "junk.junk.junk").await;
    }
    assert_eq!(read(&gw, &fresh).await.status, 200);
}
