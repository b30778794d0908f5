//! Metrics end to end: a real gateway with its admin listener on loopback,
//! known traffic from a real client, and the scrape read back (and checked by
//! Debian's `promtool`, installed when missing).
// Helpers may fail loudly: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use http::Method;
use support::gateway::{TestGateway, standard_unlimited};
use support::http::{get, send};
use support::upstream::Recording;

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

/// `promtool`, installed from Debian's `prometheus` package when missing.
/// Fails (never skips) when it cannot be had.
fn promtool() -> &'static str {
    let have = || {
        Command::new("promtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have() {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "prometheus"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            install();
        }
    }
    assert!(
        have(),
        "promtool is missing and `apt-get install prometheus` failed{}",
        if std::env::var_os("CI").is_some() {
            " (CI)"
        } else {
            ""
        }
    );
    "promtool"
}

/// Runs `promtool check metrics` on a scrape; its complaints, if any.
fn promtool_check(scrape: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

/// The samples of a scrape: `name{labels}` → value.
fn samples(scrape: &str) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

async fn scrape(gw: &TestGateway) -> String {
    let res = get(&gw.admin_url("/metrics"), None).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    res.text()
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_health_and_the_api_port_does_not() {
    let up = Recording::start().await;
    let gw = TestGateway::start(&format!("{}{ADMIN}", standard_unlimited(&up.url()))).await;
    assert_ne!(gw.admin.unwrap().port(), gw.addr.port());

    let text = scrape(&gw).await;
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool refused the scrape: {e}\n{text}"));
    let s = samples(&text);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        s[&format!("simgate_build_info{{version=\"{version}\"}}")],
        1.0
    );

    let health = get(&gw.admin_url("/healthz"), None).await;
    assert_eq!(
        (health.status.as_u16(), health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = get(&gw.admin_url("/readyz"), None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let wrong = send(Method::DELETE, &gw.admin_url("/metrics"), &[], "").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), "GET");

    // The API port knows nothing of /metrics: it is an unknown path there,
    // refused before it could reach the upstream.
    let res = get(&gw.url("/metrics"), None).await;
    assert!(
        res.status == 401 || res.status == 404,
        "{} {}",
        res.status,
        res.text()
    );
    assert!(!res.text().contains("simgate_"));
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn admin_is_off_unless_configured() {
    let up = Recording::start().await;
    let gw = TestGateway::start(&standard_unlimited(&up.url())).await;
    assert!(gw.admin.is_none());
    gw.stop().await;
}

/// Quotas: reads never limited here; mutations allow 2 at once and refill
/// one every 1000 s, so the third is refused.
const QUOTAS: &str = r#"
[rate_limit.reads]
requests_per_second = 100000
burst = 100000
[rate_limit.mutations]
requests_per_second = 0.001
burst = 2
"#;

const LIST: &str = "/beta/sim-integrations";
const ONE: &str = "/beta/sim-integrations/2c9180835d2e5168015d32f890ca1581";

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic_sent() {
    use support::gateway::standard;
    use support::tokens::{self, token};

    let up = Recording::start().await;
    let gw = TestGateway::start(&format!("{}{QUOTAS}{ADMIN}", standard(&up.url()))).await;
    let reader = token("svc-reader", &["SIM_READER"], &["sp:scopes:all"]);
    let admin = token("svc-admin", &["ORG_ADMIN"], &["sp:scopes:all"]);
    let before = samples(&scrape(&gw).await);

    // 3 reads, allowed.
    for _ in 0..3 {
        assert_eq!(get(&gw.url(LIST), Some(&reader)).await.status, 200);
    }
    // 2 reads without a token: 401 before matching.
    for _ in 0..2 {
        assert_eq!(get(&gw.url(LIST), None).await.status, 401);
    }
    // 1 delete by a reader: 403.
    let bearer = |t: &str| format!("Bearer {t}");
    let (r, a) = (bearer(&reader), bearer(&admin));
    let res = send(Method::DELETE, &gw.url(ONE), &[("authorization", &r)], "").await;
    assert_eq!(res.status, 403);
    // 1 unknown path: 404.
    assert_eq!(
        get(&gw.url("/beta/nothing-here"), Some(&reader))
            .await
            .status,
        404
    );
    // 3 deletes by an admin: 2 forwarded, the third over quota.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            send(Method::DELETE, &gw.url(ONE), &[("authorization", &a)], "")
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses[2], 429, "{statuses:?}");
    let forwarded_deletes = statuses.iter().filter(|s| **s != 429).count();
    assert_eq!(forwarded_deletes, 2);
    assert_eq!(up.count(), 5, "3 reads and 2 deletes reached the upstream");

    let text = scrape(&gw).await;
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool refused the scrape: {e}\n{text}"));
    let after = samples(&text);
    let d = |key: &str| delta(&before, &after, key);
    let req = |op: &str, method: &str, status: u16, decision: &str| {
        format!(
            "simgate_requests_total{{decision=\"{decision}\",method=\"{method}\",operation=\"{op}\",status=\"{status}\"}}"
        )
    };
    let delete_status = statuses[0];
    assert_eq!(
        d(&req("getSIMIntegrations", "GET", 200, "allowed")),
        3.0,
        "{text}"
    );
    assert_eq!(d(&req("unmatched", "GET", 401, "unauthenticated")), 2.0);
    assert_eq!(
        d(&req("deleteSIMIntegration", "DELETE", 403, "forbidden")),
        1.0
    );
    assert_eq!(d(&req("unmatched", "GET", 404, "no_route")), 1.0);
    assert_eq!(
        d(&req(
            "deleteSIMIntegration",
            "DELETE",
            delete_status,
            "allowed"
        )),
        2.0
    );
    assert_eq!(
        d(&req("deleteSIMIntegration", "DELETE", 429, "rate_limited")),
        1.0
    );
    let total: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("simgate_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 10.0, "every request counted once");

    assert_eq!(
        d("simgate_auth_failures_total{reason=\"missing_token\"}"),
        2.0
    );
    assert_eq!(d("simgate_rate_limited_total{class=\"mutations\"}"), 1.0);
    assert_eq!(d("simgate_audit_records_total{kind=\"intent\"}"), 2.0);
    // Outcomes: 2 forwarded deletes, the 403 and the 429 (reads are not audited).
    assert_eq!(d("simgate_audit_records_total{kind=\"outcome\"}"), 4.0);
    assert_eq!(d("simgate_audit_sync_seconds_count"), 6.0);
    assert_eq!(after["simgate_audit_queue_depth"], 0.0);
    assert_eq!(after["simgate_requests_in_flight"], 0.0);
    assert_eq!(
        d("simgate_request_duration_seconds_count{operation=\"getSIMIntegrations\"}"),
        3.0
    );
    assert_eq!(
        d("simgate_upstream_duration_seconds_count{operation=\"deleteSIMIntegration\"}"),
        2.0
    );
    assert_eq!(
        d("simgate_upstream_duration_seconds_count{operation=\"getSIMIntegrations\"}"),
        3.0
    );
    // Tokens: the reader's first use misses, its 4 later uses hit; the
    // admin's 1 miss and 2 hits. The failed requests carried no token.
    assert_eq!(d("simgate_token_cache_total{result=\"miss\"}"), 2.0);
    assert_eq!(d("simgate_token_cache_total{result=\"hit\"}"), 6.0);
    assert_eq!(
        after[&format!("simgate_jwks_keys{{issuer=\"{}\"}}", tokens::ISS)],
        1.0
    );
    // No label carries a path, a subject or a client id.
    for key in after.keys() {
        assert!(!key.contains("svc-"), "{key}");
        assert!(!key.contains("/beta"), "{key}");
    }
    gw.stop().await;
}
