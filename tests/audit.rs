//! The audit trail end to end: real gateways on loopback (and the real
//! `simgate` binary for the crash test), real signed tokens, a recording
//! upstream, and the trail file read back and verified.
// Helpers may fail loudly: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use simgate::audit::verify::{bad_line, verify_files};
use simgate::audit::{AuditConfig, AuditLog, FlushPolicy};
use support::gateway::{TestGateway, standard};
use support::http::{Reply, send};
use support::tokens::{self, token};
use support::upstream::Recording;

const LIST: &str = "/beta/sim-integrations";
const ONE: &str = "/beta/sim-integrations/2c9180835d2e5168015d32f890ca1581";
const SECRET: &str = "s3cr3t-do-not-log-4711";

/// Quotas high enough that no test here is rate limited by accident.
const GENEROUS: &str = r#"
[rate_limit.reads]
requests_per_second = 10000
burst = 10000
[rate_limit.mutations]
requests_per_second = 10000
burst = 10000
"#;

fn admin() -> String {
    token("svc-admin", &["ORG_ADMIN"], &["sp:scopes:all"])
}

fn create_body(secret: &str) -> String {
    json!({
        "name": "ServiceNow",
        "description": "audited",
        "type": "ServiceNow Service Desk",
        "attributes": {"url": "https://sn.example", "password": secret},
    })
    .to_string()
}

async fn call(method: Method, url: &str, token: Option<&str>, body: &str, ct: &str) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", ct)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(method, url, &headers, body.to_owned()).await
}

/// A gateway in front of `upstream_url` writing its trail to `audit`
/// (everything else standard).
async fn gateway(upstream_url: &str, audit: &str) -> TestGateway {
    let body = format!("{}\n{GENEROUS}\n[audit]\n{audit}\n", standard(upstream_url));
    TestGateway::start(&body).await
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

#[tokio::test]
async fn concurrent_mutations_through_the_gateway_keep_one_valid_chain() {
    for flush in ["always", "batch"] {
        let up = Recording::start().await;
        let gw = gateway(&up.url(), &format!("flush = \"{flush}\"")).await;
        let t = Arc::new(admin());
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (url, t) = (gw.url(ONE), t.clone());
                tokio::spawn(async move {
                    let rid = format!("{flush}-{i}");
                    let patch = r#"[{"op":"replace","path":"/description","value":"x"}]"#;
                    let auth = format!("Bearer {t}");
                    let headers = [
                        ("authorization", auth.as_str()),
                        ("content-type", "application/json-patch+json"),
                        ("x-request-id", rid.as_str()),
                    ];
                    let (method, body) = if i % 2 == 0 {
                        (Method::PATCH, patch)
                    } else {
                        (Method::DELETE, "")
                    };
                    send(method, &url, &headers, body.to_owned()).await.status
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
        let path = gw.path("audit/audit.jsonl");
        let report = verify_files(&[&path]).unwrap();
        assert_eq!(report.records, 48, "{flush}: intent + outcome each");
        let recs = records(&path);
        let mut intents = HashMap::new();
        for r in recs.iter().filter(|r| r["kind"] == "intent") {
            intents.insert(
                r["request_id"].as_str().unwrap().to_owned(),
                r["seq"].clone(),
            );
        }
        assert_eq!(intents.len(), 24);
        for r in recs.iter().filter(|r| r["kind"] == "outcome") {
            let rid = r["request_id"].as_str().unwrap();
            assert_eq!(r["decision"], "allowed");
            assert_eq!(r["upstream_status"], 200);
            assert_eq!(&r["intent_seq"], &intents[rid], "{rid}");
            assert!(r["seq"].as_u64() > intents[rid].as_u64());
        }
        assert_eq!(up.count(), 24);
        gw.stop().await;
    }
}

#[test]
fn concurrent_writers_keep_a_valid_chain() {
    for flush in [FlushPolicy::Always, FlushPolicy::Batch] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        config.flush = flush;
        let log = AuditLog::open(&config).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                let handle = rt.handle().clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| {
                            let mut r = support_record();
                            r.request_id = Some(format!("t{t}-{i}"));
                            handle.block_on(log.append(&r)).unwrap().seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "{flush:?}");
        assert_eq!(verify_files(&[&config.path]).unwrap().records, 200);
        let text = std::fs::read_to_string(&config.path).unwrap();
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
    }
}

fn support_record() -> simgate::audit::record::Record {
    use simgate::audit::record::{Actor, Decision, Kind, Record};
    Record {
        kind: Kind::Intent,
        request_id: None,
        trace_id: None,
        operation_id: "deleteSIMIntegration".into(),
        method: "DELETE".into(),
        path: ONE.into(),
        resource_id: None,
        actor: Actor::UNAUTHENTICATED,
        peer: None,
        decision: Decision::Allowed,
        reason: None,
        upstream_status: None,
        latency_ms: None,
        body_sha256: None,
        body_bytes: None,
        body: None,
        created_id: None,
        intent_seq: None,
    }
}

/// Every way of refusing a mutation because the trail cannot be written:
/// 503 with Retry-After, nothing forwarded, reads unaffected.
async fn assert_refuses_mutations(audit_path: &Path) {
    let up = Recording::start().await;
    let gw = gateway(
        &up.url(),
        &format!("path = {:?}", audit_path.display().to_string()),
    )
    .await;
    let t = admin();
    let res = call(
        Method::POST,
        &gw.url(LIST),
        Some(&t),
        &create_body(SECRET),
        "application/json",
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), "5");
    assert_eq!(res.json()["detailCode"], "503 Service Unavailable");
    let res = call(
        Method::DELETE,
        &gw.url(ONE),
        Some(&t),
        "",
        "application/json",
    )
    .await;
    assert_eq!(res.status, 503);
    assert_eq!(up.count(), 0, "nothing forwarded");
    let res = call(Method::GET, &gw.url(LIST), Some(&t), "", "application/json").await;
    assert_eq!(res.status, 200, "reads are not audited and still work");
    gw.stop().await;
}

#[tokio::test]
async fn full_target_refuses_mutations_without_forwarding() {
    // Every write to /dev/full fails with ENOSPC, like a full disk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    assert_refuses_mutations(&path).await;
}

#[tokio::test]
async fn unwritable_target_refuses_mutations_without_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that is a regular file: nothing can be created in it, even
    // by root (tests here often run as root, which mode bits do not stop).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let mut targets = vec![blocker.join("audit.jsonl")];
    // A read-only folder, where mode bits apply (not as root).
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    if std::fs::File::create(ro.join("probe")).is_err() {
        targets.push(ro.join("audit.jsonl"));
    }
    for target in targets {
        assert_refuses_mutations(&target).await;
    }
}

#[tokio::test]
async fn secrets_in_a_create_never_appear_in_the_trail() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(simgate::upstream::serve(listener, std::future::pending()));
    let gw = gateway(&upstream, "").await;
    let t = admin();
    let res = call(
        Method::POST,
        &gw.url(LIST),
        Some(&t),
        &create_body(SECRET),
        "application/json",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let patch = json!([
        {"op": "replace", "path": "/attributes/password", "value": SECRET},
        {"op": "replace", "path": "/description", "value": "rotated"},
    ])
    .to_string();
    let res = call(
        Method::PATCH,
        &gw.url(&format!("{LIST}/{id}")),
        Some(&t),
        &patch,
        "application/json-patch+json",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());

    let path = gw.path("audit/audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(SECRET), "secret in the trail:\n{text}");
    let recs = records(&path);
    assert_eq!(recs.len(), 4);
    let (intent, outcome) = (&recs[0], &recs[1]);
    assert_eq!(intent["kind"], "intent");
    assert_eq!(intent["operation_id"], "createSIMIntegration");
    assert_eq!(intent["body"]["attributes"], "[REDACTED]");
    assert_eq!(intent["body"]["name"], "ServiceNow");
    assert_eq!(intent["actor"]["subject"], "svc-admin");
    assert_eq!(intent["actor"]["issuer"], tokens::ISS);
    assert_eq!(intent["actor"]["roles"], json!(["ORG_ADMIN"]));
    assert!(intent["actor"]["token_id"].is_string());
    assert_eq!(
        intent["peer"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    assert_eq!(outcome["created_id"], id.as_str());
    assert_eq!(outcome["upstream_status"], 200);
    assert_eq!(outcome["body_sha256"], intent["body_sha256"]);
    let patch_intent = &recs[2];
    assert_eq!(patch_intent["resource_id"], id.as_str());
    assert_eq!(patch_intent["body"][0]["value"], "[REDACTED]");
    assert_eq!(patch_intent["body"][1]["value"], "rotated");
    assert_eq!(verify_files(&[&path]).unwrap().records, 4);
    gw.stop().await;
}

#[tokio::test]
async fn refused_mutations_are_recorded_once_and_never_forwarded() {
    let up = Recording::start().await;
    let gw = gateway(&up.url(), "").await;
    let reader = token("svc-reader", &["SIM_READER"], &["sp:scopes:all"]);
    let cases = [
        (None, Method::DELETE, "", 401, "unauthenticated"),
        (
            Some("not-a-jwt".to_owned()),
            Method::DELETE,
            "",
            401,
            "unauthenticated",
        ),
        (Some(reader), Method::DELETE, "", 403, "forbidden"),
        (
            Some(admin()),
            Method::POST,
            r#"{"name": 1}"#,
            400,
            "invalid",
        ),
    ];
    for (i, (t, method, body, status, _)) in cases.iter().enumerate() {
        let url = if *method == Method::POST {
            gw.url(LIST)
        } else {
            gw.url(ONE)
        };
        let rid = format!("refused-{i}");
        let auth = t.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-request-id", rid.as_str()),
        ];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let res = send(method.clone(), &url, &headers, body.to_string()).await;
        assert_eq!(res.status, *status, "{}", res.text());
    }
    // Not an operation: not recorded.
    let res = call(
        Method::DELETE,
        &gw.url("/beta/nothing-here"),
        Some(&admin()),
        "",
        "application/json",
    )
    .await;
    assert_eq!(res.status, 404);
    assert_eq!(up.count(), 0);

    let path = gw.path("audit/audit.jsonl");
    let recs = records(&path);
    assert_eq!(recs.len(), cases.len(), "{recs:#?}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["request_id"], format!("refused-{i}"));
        assert_eq!(r["decision"], cases[i].4);
        assert_eq!(r["kind"], "outcome");
        assert!(r["reason"].is_string());
        assert!(r["peer"].is_string());
    }
    assert_eq!(recs[0]["actor"], "unauthenticated");
    assert_eq!(recs[0]["resource_id"], "2c9180835d2e5168015d32f890ca1581");
    assert_eq!(recs[0]["operation_id"], "deleteSIMIntegration");
    assert_eq!(recs[2]["actor"]["subject"], "svc-reader");
    // Validation read the invalid body, so it is recorded (redacted).
    assert_eq!(recs[3]["body"], json!({"name": 1}));
    assert!(recs[3]["body_sha256"].is_string());
    assert_eq!(verify_files(&[&path]).unwrap().records, 4);
    gw.stop().await;
}

/// `simgate audit verify` through the binary: exit 0 with the count and the
/// last hash, exit 1 naming the first bad line.
#[test]
fn verify_command_reports_count_or_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
    config.rotate_max_bytes = Some(2000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = AuditLog::open(&config).unwrap();
    let mut last = None;
    for i in 0..12 {
        let mut r = support_record();
        r.request_id = Some(format!("r{i}"));
        last = Some(rt.block_on(log.append(&r)).unwrap());
    }
    drop(log);
    let mut files: Vec<PathBuf> = simgate::audit::rotate::rotated_files(&config.path)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(!files.is_empty(), "rotated at least once");
    files.push(config.path.clone());
    let run = |files: &[PathBuf]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
            .arg("audit")
            .arg("verify")
            .args(files)
            .output()
            .unwrap()
    };
    let out = run(&files);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = last.unwrap();
    assert_eq!(
        stdout.trim(),
        format!("ok: 12 records, last seq 12, last hash {}", last.hash)
    );

    // Edit the second line of the first file.
    let first = &files[0];
    let text = std::fs::read_to_string(first).unwrap();
    let edited = text.replacen("\"request_id\":\"r1\"", "\"request_id\":\"rX\"", 1);
    assert_ne!(text, edited);
    std::fs::write(first, edited).unwrap();
    let out = run(&files);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", first.display())),
        "{stderr}"
    );
    let err = verify_files(&files).unwrap_err();
    assert_eq!(bad_line(&err).map(|(_, l)| l), Some(2));
}

/// A plain HTTP client that reports failures instead of panicking (the
/// gateway dies under it).
type Plain = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn try_send(client: &Plain, req: Request<Full<Bytes>>) -> Result<u16, String> {
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

/// Kills the real binary with SIGKILL under concurrent mutations: the trail
/// verifies up to its last complete line, every mutation the upstream
/// received has its intent record, and a restart continues the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_forwarded_mutation() {
    use std::io::BufRead;

    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        tokens::issuer().jwks().to_string(),
    )
    .unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n{GENEROUS}\n[audit]\nflush = \"batch\"\n",
        standard(&up.url())
    );
    let config_path = dir.path().join("simgate.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the listening address, then keep draining the log so the
    // gateway never blocks on a full pipe.
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "simgate listening"
            {
                let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway listening");

    let client: Plain = Client::builder(TokioExecutor::new()).build_http();
    let t = Arc::new(admin());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, t, addr) = (client.clone(), t.clone(), addr.clone());
            tokio::spawn(async move {
                for i in 0..300 {
                    let req = Request::post(format!("http://{addr}{LIST}"))
                        .header("authorization", format!("Bearer {t}"))
                        .header("content-type", "application/json")
                        .header("x-request-id", format!("crash-{w}-{i}"))
                        .body(Full::new(Bytes::from(create_body(SECRET))))
                        .unwrap();
                    if try_send(&client, req).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    // Mid-load: once the upstream has seen some mutations (bounded wait).
    for _ in 0..1000 {
        if up.count() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .unwrap()
            .unwrap();
    }

    let path = dir.path().join("audit/audit.jsonl");
    let report = verify_files(&[&path]).expect("trail verifies up to its last complete line");
    assert!(report.records > 0);
    let intents: HashSet<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "intent")
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .collect();
    let received = up.seen();
    assert!(received.len() >= 40, "load was running: {}", received.len());
    eprintln!(
        "crash: upstream received {}, trail has {} records ({} intents), torn tail {:?}",
        received.len(),
        report.records,
        intents.len(),
        report.torn_tail
    );
    for seen in &received {
        let rid = seen.headers["x-request-id"].to_str().unwrap();
        assert!(
            intents.contains(rid),
            "{rid} reached the upstream without an intent record"
        );
    }
    assert!(!std::fs::read_to_string(&path).unwrap().contains(SECRET));

    // A restart continues the chain after the last complete line.
    let log = AuditLog::open(&AuditConfig::with_path(&path)).unwrap();
    let next = log.append(&support_record()).await.unwrap();
    assert_eq!(next.seq, report.last_seq + 1);
    drop(log);
    let after = verify_files(&[&path]).unwrap();
    assert_eq!((after.records, after.torn_tail), (report.records + 1, None));
}
