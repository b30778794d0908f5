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
