//! The access log and the trace context end to end: the real `simgate`
//! binary with its log on a pipe, real signed tokens, a recording upstream.
// Helpers may fail loudly: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::Method;
use support::gateway::{TestGateway, standard, standard_unlimited};
use support::http::send;
use support::tokens::{self, token};
use support::upstream::Recording;

const ONE: &str = "/beta/sim-integrations/2c9180835d2e5168015d32f890ca1581";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for a log line satisfying `want`; every line seen goes
/// into `all`.
fn wait_for(
    lines: &mpsc::Receiver<String>,
    all: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                all.push(line.clone());
                if want(&line) {
                    return line;
                }
            }
            Err(_) => panic!("no such log line; seen:\n{}", all.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_the_operation_of_refusals_and_has_no_escape_codes_on_a_pipe() {
    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        tokens::issuer().jwks().to_string(),
    )
    .unwrap();
    let quotas = "[rate_limit.mutations]\nrequests_per_second = 0.001\nburst = 1\n";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n{}\n{quotas}\n[log]\nformat = \"pretty\"\n",
        standard(&up.url())
    );
    let path = dir.path().join("simgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = Child(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut all = Vec::new();
    let listening = wait_for(&lines, &mut all, |l| l.contains("simgate listening"));
    let addr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr in {listening:?}"))
        .trim_matches('"')
        .to_owned();

    let url = format!("http://{addr}{ONE}");
    let reader = format!(
        "Bearer {}",
        token("svc-reader", &["SIM_READER"], &["sp:scopes:all"])
    );
    let admin = format!(
        "Bearer {}",
        token("svc-admin", &["ORG_ADMIN"], &["sp:scopes:all"])
    );
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let forbidden = send(
        Method::DELETE,
        &url,
        &[
            ("authorization", &reader),
            ("x-request-id", "log-403"),
            ("traceparent", &traceparent),
        ],
        "",
    )
    .await;
    assert_eq!(forbidden.status, 403);
    for (i, want) in [(0, 200), (1, 429)] {
        let rid = format!("log-delete-{i}");
        let res = send(
            Method::DELETE,
            &url,
            &[("authorization", &admin), ("x-request-id", &rid)],
            "",
        )
        .await;
        assert_eq!(res.status, want, "{}", res.text());
    }

    let line_403 = wait_for(&lines, &mut all, |l| l.contains("log-403"));
    let line_429 = wait_for(&lines, &mut all, |l| l.contains("log-delete-1"));
    for (line, status, decision) in [
        (&line_403, 403, "forbidden"),
        (&line_429, 429, "rate_limited"),
    ] {
        assert!(line.contains("simgate::access"), "{line}");
        assert!(
            line.contains("operation=\"deleteSIMIntegration\""),
            "{line}"
        );
        assert!(line.contains(&format!("status={status}")), "{line}");
        assert!(line.contains(&format!("decision=\"{decision}\"")), "{line}");
        assert!(line.contains("reason="), "{line}");
        assert!(!line.contains("Bearer") && !line.contains("eyJ"), "{line}");
    }
    eprintln!("{line_403}\n{line_429}");
    assert!(
        line_403.contains(&format!("trace_id=\"{TRACE}\"")),
        "{line_403}"
    );
    for line in &all {
        assert!(!line.contains('\u{1b}'), "escape code on a pipe: {line:?}");
    }
}

#[tokio::test]
async fn traceparent_is_propagated_or_generated() {
    let up = Recording::start().await;
    let gw = TestGateway::start(&standard_unlimited(&up.url())).await;
    let t = format!(
        "Bearer {}",
        token("svc-reader", &["SIM_READER"], &["sp:scopes:all"])
    );
    let url = gw.url("/beta/sim-integrations");
    let theirs = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let cases: [&[(&str, &str)]; 3] = [
        &[("traceparent", &theirs), ("tracestate", "vendor=1")],
        &[],
        &[("traceparent", "00-zz-bad-01"), ("tracestate", "vendor=1")],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let mut headers = vec![("authorization", t.as_str())];
        headers.extend_from_slice(extra);
        assert_eq!(send(Method::GET, &url, &headers, "").await.status, 200);
        let seen = up.seen();
        let sent = seen[i].headers["traceparent"].to_str().unwrap().to_owned();
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(parts.len(), 4, "{sent}");
        assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        assert_eq!(seen[i].headers.get_all("traceparent").iter().count(), 1);
        if i == 0 {
            assert_eq!(parts[1], TRACE, "the client's trace goes on");
            assert_ne!(parts[2], "00f067aa0ba902b7", "with the gateway's own span");
            assert_eq!(parts[3], "01");
            assert_eq!(seen[i].headers["tracestate"], "vendor=1");
        } else {
            assert_ne!(parts[1], TRACE);
            assert!(parts[1].bytes().any(|b| b != b'0'));
            assert!(seen[i].headers.get("tracestate").is_none());
        }
    }
    gw.stop().await;
}
