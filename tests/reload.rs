//! Live reload end to end: the real `simgate serve` process, edited files,
//! `SIGHUP`, a recording upstream, real signed tokens and real TLS
//! handshakes; and `simgate check`, which must create nothing.
// Helpers may fail loudly: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use support::http::{Reply, send};
use support::tls::certificate;
use support::tokens::{self, Issuer};
use support::upstream::Recording;

const LIST: &str = "/beta/sim-integrations";
const READ: &str = "idn:service-desk-integration:read";
const MANAGE: &str = "idn:service-desk-integration:manage";
/// How long any awaited log line may take (a bound, not an expectation).
const PATIENCE: Duration = Duration::from_secs(60);

fn create_body() -> String {
    json!({
        "name": "aName",
        "type": "ServiceNow Service Desk",
        "sources": ["2c9180835d191a86015d28455b4a2329"],
        "cluster": "xyzzy999"
    })
    .to_string()
}

/// A SIM_READER holding both scopes: only the policy decides.
fn reader() -> String {
    tokens::token("reader", &["SIM_READER"], &[READ, MANAGE])
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A folder with a gateway config, its own copies of the OpenAPI
/// documents and the policy (so a test can edit them), the test issuer's
/// JWKS and an audit trail path.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(upstream: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("openapi")).unwrap();
        for doc in ["sim-integrations.beta.json", "sim-integrations.v1.json"] {
            std::fs::copy(
                repo(&format!("config/openapi/{doc}")),
                p.join("openapi").join(doc),
            )
            .unwrap();
        }
        std::fs::copy(repo("config/policy.toml"), p.join("policy.toml")).unwrap();
        std::fs::write(p.join("jwks.json"), tokens::issuer().jwks().to_string()).unwrap();
        let setup = Setup { dir };
        setup.write_config(upstream, extra);
        setup
    }

    fn write_config(&self, upstream: &str, extra: &str) {
        let text = format!(
            r#"[server]
listen = "127.0.0.1:0"
{extra}

[upstream]
url = "{upstream}"

[auth]
jwks_file_poll = "100ms"

[[auth.issuers]]
issuer = "{iss}"
audiences = ["{aud}"]
jwks_file = "jwks.json"
algorithms = ["RS256", "ES256"]

[api]
documents = [
  {{ path = "openapi/sim-integrations.beta.json", mount = "/beta" }},
  {{ path = "openapi/sim-integrations.v1.json", mount = "/" }},
]

[authz]
policy = "policy.toml"

[audit]
path = "audit/audit.jsonl"

[rate_limit.reads]
requests_per_second = 100000
burst = 100000

[rate_limit.mutations]
requests_per_second = 100000
burst = 100000
"#,
            iss = tokens::ISS,
            aud = tokens::AUD,
        );
        std::fs::write(self.path("simgate.toml"), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self) -> String {
        std::fs::read_to_string(self.path("policy.toml")).unwrap()
    }

    fn set_policy(&self, text: &str) {
        std::fs::write(self.path("policy.toml"), text).unwrap();
    }

    /// The audit trail's reload records.
    fn reload_records(&self) -> Vec<Value> {
        let trail = self.path("audit/audit.jsonl");
        let records = std::fs::read_to_string(&trail).unwrap_or_default();
        let verified = simgate::audit::verify::verify_files(&[&trail]);
        assert!(verified.is_ok(), "{verified:?}");
        records
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["kind"] == "reload")
            .collect()
    }
}

/// The policy with SIM_READER also granted `createSIMIntegration`.
fn granting_create(policy: &str) -> String {
    let edited = policy.replacen(
        "SIM_READER = [\n",
        "SIM_READER = [\n  \"createSIMIntegration\",\n",
        1,
    );
    assert_ne!(edited, policy, "the policy lists SIM_READER");
    edited
}

/// A running `simgate serve` and its JSON log.
struct Serve {
    child: Child,
    addr: SocketAddr,
    /// The admin listener, when configured.
    admin: Option<SocketAddr>,
    log: mpsc::UnboundedReceiver<Value>,
}

impl Serve {
    async fn start(config: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_simgate"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, mut log) = mpsc::unbounded_channel();
        // Drains the log so the gateway never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("simgate: {line}"),
                }
            }
        });
        // The admin listener (if any) starts first.
        let admin_seen = std::sync::Mutex::new(None);
        let listening = next(&mut log, |v| {
            if v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin listening"))
            {
                *admin_seen.lock().unwrap() = v["addr"].as_str().and_then(|a| a.parse().ok());
            }
            v["message"] == "simgate listening"
        })
        .await;
        let addr = listening["addr"].as_str().unwrap().parse().unwrap();
        let admin = admin_seen.into_inner().unwrap();
        Serve {
            child,
            addr,
            admin,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next log line `pick` accepts.
    async fn wait_for(&mut self, pick: impl Fn(&Value) -> bool) -> Value {
        next(&mut self.log, pick).await
    }

    /// Sends SIGHUP and returns the reload's log line (applied or refused).
    async fn reload(&mut self) -> Value {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for(|v| {
            v["message"] == "configuration reloaded"
                || v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("reload refused"))
        })
        .await
    }

    async fn create(&self, token: &str) -> Reply {
        send(
            Method::POST,
            &self.url(LIST),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            create_body(),
        )
        .await
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next(log: &mut mpsc::UnboundedReceiver<Value>, pick: impl Fn(&Value) -> bool) -> Value {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(v) = log.recv().await {
            if pick(&v) {
                return Some(v);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => v,
        Ok(None) => panic!("simgate exited before the expected log line"),
        Err(_) => panic!("no such log line within {PATIENCE:?}"),
    }
}

fn applied(line: &Value, generation: u64) {
    assert_eq!(line["message"], "configuration reloaded", "{line}");
    assert_eq!(line["generation"], generation, "{line}");
}

fn refused(line: &Value, mentions: &[&str]) {
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("reload refused")),
        "{line}"
    );
    for m in mentions {
        assert!(error.contains(m), "{m:?} not in {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_policy_edit_and_its_revert() {
    let up = Recording::start().await;
    let setup = Setup::new(&up.url(), "");
    let mut gw = Serve::start(&setup.path("simgate.toml")).await;
    let token = reader();

    let res = gw.create(&token).await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(up.count(), 0);

    let original = setup.policy();
    setup.set_policy(&granting_create(&original));
    applied(&gw.reload().await, 2);
    let res = gw.create(&token).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].uri.path(), LIST);
    assert_eq!(seen[0].body, create_body().as_bytes());

    setup.set_policy(&original);
    applied(&gw.reload().await, 3);
    let res = gw.create(&token).await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(
        res.json()["trackingId"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        up.count(),
        1,
        "a refused request never reaches the upstream"
    );

    // Both reloads are chained records of the trail.
    let records = setup.reload_records();
    assert_eq!(records.len(), 2, "{records:?}");
    for (r, generation) in records.iter().zip([2, 3]) {
        assert_eq!(r["result"], "applied");
        assert_eq!(r["generation"], generation);
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["sha256"].as_str().map(str::len), Some(64));
        let files: Vec<&str> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert!(
            files.iter().any(|f| f.ends_with("policy.toml")),
            "{files:?}"
        );
        assert!(files.iter().any(|f| f.ends_with("jwks.json")), "{files:?}");
    }
    assert_ne!(records[0]["sha256"], records[1]["sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policy_invalid_document_and_restart_keys_are_refused() {
    let up = Recording::start().await;
    let setup = Setup::new(&up.url(), "");
    let mut gw = Serve::start(&setup.path("simgate.toml")).await;
    let token = reader();
    let still_serving = async |gw: &Serve| {
        let res = support::http::get(&gw.url(LIST), Some(&token)).await;
        assert_eq!(res.status, 200, "{}", res.text());
        let res = gw.create(&token).await;
        assert_eq!(res.status, 403, "{}", res.text());
    };
    still_serving(&gw).await;

    // An operationId no document defines.
    let original = setup.policy();
    setup.set_policy(&original.replacen(
        "SIM_READER = [\n",
        "SIM_READER = [\n  \"createSIMIntegrationTypo\",\n",
        1,
    ));
    refused(
        &gw.reload().await,
        &[
            "policy.toml",
            "roles.SIM_READER",
            "createSIMIntegrationTypo",
        ],
    );
    still_serving(&gw).await;
    setup.set_policy(&granting_create(&original));

    // An invalid OpenAPI document (with the granting policy: nothing of
    // the reload may apply).
    let beta = setup.path("openapi/sim-integrations.beta.json");
    let good = std::fs::read_to_string(&beta).unwrap();
    std::fs::write(&beta, r#"{"openapi": "3.0.1", "paths": "#).unwrap();
    refused(
        &gw.reload().await,
        &[
            "simgate.toml",
            "api.documents[0]",
            "sim-integrations.beta.json",
        ],
    );
    still_serving(&gw).await;
    std::fs::write(&beta, good).unwrap();

    // A key that needs a restart: named, and the whole reload refused.
    setup.write_config(&up.url(), "shutdown_grace = \"3s\"");
    refused(
        &gw.reload().await,
        &["simgate.toml", "restart", "server.shutdown_grace"],
    );
    still_serving(&gw).await;
    assert_eq!(up.count(), 4, "only the allowed reads went upstream");

    let records = setup.reload_records();
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert_eq!(r["result"], "refused");
        assert_eq!(r["generation"], 1);
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }

    // Fixed: the next reload applies everything at once.
    setup.write_config(&up.url(), "");
    applied(&gw.reload().await, 2);
    let res = gw.create(&token).await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_on_the_admin_listener_and_the_metrics() {
    let up = Recording::start().await;
    let setup = Setup::new(&up.url(), "");
    let config = std::fs::read_to_string(setup.path("simgate.toml")).unwrap();
    std::fs::write(
        setup.path("simgate.toml"),
        format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let gw = Serve::start(&setup.path("simgate.toml")).await;
    let admin = |path: &str| format!("http://{}{path}", gw.admin.expect("admin listening"));
    let token = reader();
    let metric = async |name: &str| -> String {
        let text = support::http::get(&admin("/metrics"), None).await.text();
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    assert_eq!(
        metric("simgate_config_generation ").await,
        "simgate_config_generation 1"
    );
    assert_eq!(
        metric("simgate_config_reloads_total{result=\"applied\"}").await,
        "simgate_config_reloads_total{result=\"applied\"} 0"
    );

    let original = setup.policy();
    setup.set_policy(&granting_create(&original));
    let res = send(Method::POST, &admin("/reload"), &[], "").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), "application/json");
    let body = res.json();
    assert_eq!(body["generation"], 2);
    assert_eq!(body["sha256"].as_str().map(str::len), Some(64));
    assert!(
        body["files"].as_array().is_some_and(|f| f.len() >= 4),
        "{body}"
    );
    let res = gw.create(&token).await;
    assert_eq!(res.status, 200, "{}", res.text());

    setup.set_policy("[roles]\nSIM_READER = [\"nope\"]\n");
    let res = send(Method::POST, &admin("/reload"), &[], "").await;
    assert_eq!(res.status, 400, "{}", res.text());
    let body = res.json();
    assert_eq!(body["generation"], 2);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("policy.toml") && error.contains("nope"),
        "{error}"
    );
    let res = gw.create(&token).await;
    assert_eq!(
        res.status,
        200,
        "generation 2 keeps serving: {}",
        res.text()
    );
    assert_eq!(up.count(), 2);

    assert_eq!(
        metric("simgate_config_generation ").await,
        "simgate_config_generation 2"
    );
    assert_eq!(
        metric("simgate_config_reloads_total{result=\"applied\"}").await,
        "simgate_config_reloads_total{result=\"applied\"} 1"
    );
    assert_eq!(
        metric("simgate_config_reloads_total{result=\"refused\"}").await,
        "simgate_config_reloads_total{result=\"refused\"} 1"
    );
    let ready = support::http::get(&admin("/readyz"), None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let records = setup.reload_records();
    let results: Vec<&str> = records
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["applied", "refused"]);
}

/// Writes raw HTTP/1.1 and reads until the peer closes or `until` is seen.
async fn read_until(stream: &mut tokio::net::TcpStream, until: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            out.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&out).contains(until) {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no {until:?} within {PATIENCE:?}");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_generation_it_started_on() {
    let first = Recording::start().await;
    let second = Recording::start().await;
    let setup = Setup::new(&first.url(), "");
    setup.set_policy(&granting_create(&setup.policy()));
    let mut gw = Serve::start(&setup.path("simgate.toml")).await;
    let token = reader();
    let body = create_body();

    // A create that waits for `100 Continue` before sending its body: when
    // that arrives, the request is inside generation 1, past authentication
    // and authorization, and its body is being read.
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST {LIST} HTTP/1.1\r\nHost: simgate\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until(&mut slow, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");

    // Generation 2: SIM_READER may not create, and the upstream moved.
    setup.set_policy(&std::fs::read_to_string(repo("config/policy.toml")).unwrap());
    setup.write_config(&second.url(), "");
    applied(&gw.reload().await, 2);
    let res = gw.create(&token).await;
    assert_eq!(res.status, 403, "{}", res.text());
    let res = support::http::get(&gw.url(LIST), Some(&token)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(second.count(), 1);

    // The slow create completes on generation 1: allowed, to the first upstream.
    slow.write_all(body.as_bytes()).await.unwrap();
    let response = read_until(&mut slow, "}").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = first.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(
        second.count(),
        1,
        "nothing of generation 1 went to the new upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_to_jwks_file_is_accepted_without_a_restart() {
    let up = Recording::start().await;
    let setup = Setup::new(&up.url(), "");
    let mut gw = Serve::start(&setup.path("simgate.toml")).await;
    let rotated = Issuer::generate_es256("rotated-es256");
    let new_token = rotated.token("rotated", &["SIM_READER"], &[READ, MANAGE]);

    let res = support::http::get(&gw.url(LIST), Some(&new_token)).await;
    assert_eq!(res.status, 401, "{}", res.text());
    let old = support::http::get(&gw.url(LIST), Some(&reader())).await;
    assert_eq!(old.status, 200, "{}", old.text());

    let both = json!({ "keys": [tokens::issuer().jwk, rotated.jwk] });
    std::fs::write(setup.path("jwks.json"), both.to_string()).unwrap();
    let line = gw
        .wait_for(|v| v["message"] == "JWKS file changed: keys updated")
        .await;
    let res = support::http::get(&gw.url(LIST), Some(&new_token)).await;
    assert_eq!(res.status, 200, "{} {line}", res.text());

    // Rotated out: the old key's tokens stop working, cached or not.
    let only_new = json!({ "keys": [rotated.jwk] });
    std::fs::write(setup.path("jwks.json"), only_new.to_string()).unwrap();
    gw.wait_for(|v| v["message"] == "JWKS file changed: keys updated")
        .await;
    let res = support::http::get(&gw.url(LIST), Some(&reader())).await;
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(up.count(), 2);
}

/// Connects over TLS (trusting `roots`) and returns the server's
/// certificate and the connection.
async fn handshake(
    addr: SocketAddr,
    roots: &[&[u8]],
) -> (
    Vec<u8>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let mut store = rustls::RootCertStore::empty();
    for der in roots {
        store
            .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = connector.connect(name, tcp).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (presented, tls)
}

async fn get_over(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: simgate\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&out).contains("\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok());
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_certificate_reaches_new_tls_connections() {
    let up = Recording::start().await;
    let (cert_a, key_a, der_a) = certificate("simgate A");
    let (cert_b, key_b, der_b) = certificate("simgate B");
    let setup = Setup::new(
        &up.url(),
        "tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"",
    );
    std::fs::create_dir(setup.path("tls")).unwrap();
    std::fs::write(setup.path("tls/cert.pem"), &cert_a).unwrap();
    std::fs::write(setup.path("tls/key.pem"), &key_a).unwrap();
    let mut gw = Serve::start(&setup.path("simgate.toml")).await;

    let (presented, mut before) = handshake(gw.addr, &[&der_a, &der_b]).await;
    assert_eq!(presented, der_a);
    assert!(get_over(&mut before).await.starts_with("HTTP/1.1 200"));

    // A key that does not match the certificate: refused, A still served.
    std::fs::write(setup.path("tls/cert.pem"), &cert_b).unwrap();
    refused(&gw.reload().await, &["server.tls_key"]);
    let (presented, _) = handshake(gw.addr, &[&der_a, &der_b]).await;
    assert_eq!(presented, der_a);

    std::fs::write(setup.path("tls/key.pem"), &key_b).unwrap();
    applied(&gw.reload().await, 2);
    let (presented, mut after) = handshake(gw.addr, &[&der_a, &der_b]).await;
    assert_eq!(presented, der_b);
    assert!(get_over(&mut after).await.starts_with("HTTP/1.1 200"));
    // The connection made before the swap keeps working.
    assert!(get_over(&mut before).await.starts_with("HTTP/1.1 200"));
    let records = setup.reload_records();
    let files = records[1]["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("cert.pem"))
    );
    assert!(
        !files
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("key.pem")),
        "key files are never listed"
    );
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn check_validates_and_creates_nothing() {
    let setup = Setup::new("http://127.0.0.1:1", "");
    let before = tree(setup.dir.path());
    assert!(!setup.path("audit").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["check", "--config"])
        .arg(setup.path("simgate.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("simgate.toml: ok"), "{stdout}");
    assert!(stdout.contains("createSIMIntegration"), "{stdout}");
    assert_eq!(
        tree(setup.dir.path()),
        before,
        "check created or removed files"
    );

    // And a broken file is an error naming it, still creating nothing.
    setup.set_policy("[roles]\nSIM_READER = [\"nope\"]\n");
    let out = Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["check", "--config"])
        .arg(setup.path("simgate.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy.toml") && stderr.contains("nope"),
        "{stderr}"
    );
    assert_eq!(tree(setup.dir.path()), before);
}
