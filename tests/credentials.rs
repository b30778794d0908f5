//! Upstream credentials end to end: a real token endpoint and a real
//! upstream on loopback ports, a real gateway between them and callers with
//! real signed IdP tokens.
//!
//! The gateway fetches its own token at start (not ready before), injects it
//! instead of the caller's, refreshes it ahead of expiry, keeps it while the
//! token endpoint is down, refuses with 503 + Retry-After once it expired,
//! recovers without restart, refreshes and resends once on an upstream 401
//! (502 on a second), and carries each role with its own client. No secret
//! or token ever reaches the gateway's log or audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

use support::gateway::{TestGateway, auth_section};
use support::http::{Reply, get, send};
use support::tokens;

const POLL: Duration = Duration::from_millis(50);
/// Bound on any wait for a background event (a refresh, a recovery).
const MAX_POLLS: usize = 600;

const READ_SCOPES: &[&str] = &["idn:service-desk-integration:read"];
const ALL_SCOPES: &[&str] = &[
    "idn:service-desk-integration:manage",
    "idn:service-desk-integration:read",
];

// ---------------------------------------------------------------- logs

/// Everything the gateway logged in this test binary (every level).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails if any of `secrets` appears in the gateway's log or audit trail.
fn assert_no_leak(gw: &TestGateway, secrets: &[String]) {
    let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let audit = std::fs::read_to_string(gw.path("audit/audit.jsonl")).unwrap_or_default();
    assert!(!log.is_empty(), "the log capture works");
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!log.contains(s.as_str()), "a secret or token is in the log");
        assert!(
            !audit.contains(s.as_str()),
            "a secret or token is in the audit trail"
        );
    }
}

// ------------------------------------------------------ token endpoint

/// A client-credentials token endpoint that counts requests, can be taken
/// down (503) and brought back, and remembers every token it issued.
#[derive(Clone)]
struct TokenEndpoint {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    expires_in: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
    issued: Arc<Mutex<Vec<(String, String)>>>,
    /// client id → secret.
    clients: Arc<Vec<(String, String)>>,
}

impl TokenEndpoint {
    async fn start(clients: &[(&str, &str)], expires_in: u64) -> TokenEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = TokenEndpoint {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            expires_in: Arc::new(AtomicU64::new(expires_in)),
            requests: Arc::default(),
            issued: Arc::default(),
            clients: Arc::new(
                clients
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            ),
        };
        let state = t.clone();
        serve(listener, move |req| {
            let state = state.clone();
            async move { state.answer(req).await }
        });
        t
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        if !self.up.load(Ordering::SeqCst) {
            return json_response(503, json!({"error": "temporarily_unavailable"}));
        }
        assert_eq!(parts.method, Method::POST);
        assert_eq!(
            parts.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let form: Vec<(String, String)> = form_pairs(&body);
        let field = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(field("grant_type"), "client_credentials");
        let id = field("client_id");
        let ok = self
            .clients
            .iter()
            .any(|(c, s)| *c == id && *s == field("client_secret"));
        if !ok {
            return json_response(401, json!({"error": "invalid_client"}));
        }
        let n = self.requests.load(Ordering::SeqCst);
        let token = format!("tok-{id}-{n}-{}", uuid::Uuid::new_v4().simple());
        self.issued.lock().unwrap().push((id, token.clone()));
        json_response(
            200,
            json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.expires_in.load(Ordering::SeqCst),
                "scope": "sp:scopes:all",
            }),
        )
    }

    fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn tokens(&self) -> Vec<String> {
        self.issued
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn last_token(&self) -> String {
        self.tokens().last().cloned().expect("a token was issued")
    }
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

// ------------------------------------------------------------ upstream

/// One request as the upstream got it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    authorization: String,
    body: Bytes,
}

/// An API that records every request and answers 401 to revoked tokens
/// (or to every token while `reject_all`), else 200.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    revoked: Arc<Mutex<HashSet<String>>>,
    reject_all: Arc<AtomicBool>,
}

impl Api {
    async fn start() -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Api {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            revoked: Arc::default(),
            reject_all: Arc::default(),
        };
        let state = api.clone();
        serve(listener, move |req| {
            let state = state.clone();
            async move { state.answer(req).await }
        });
        api
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let authorization = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or("")
            .to_owned();
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.clone(),
            authorization,
            body: body.clone(),
        });
        if self.reject_all.load(Ordering::SeqCst) || self.revoked.lock().unwrap().contains(&token) {
            return json_response(
                401,
                json!({"error": "JWT validation failed: JWT is expired"}),
            );
        }
        if parts.method == Method::POST {
            return json_response(
                200,
                json!({"id": "00000000000000000000000000000001", "name": "x"}),
            );
        }
        json_response(200, json!([]))
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn revoke(&self, token: &str) {
        self.revoked.lock().unwrap().insert(token.to_owned());
    }
}

fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    let bytes = Bytes::from(body.to_string());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(Full::new(bytes))
        .unwrap()
}

// ------------------------------------------------------------- gateway

/// Writes `secret` into a private file and returns its path.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, secret).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The full gateway config with `upstream` as the `[upstream]` table's
/// extra lines and `tables` appended (credential tables).
fn config(upstream_url: &str, upstream: &str, tables: &str, policy: Option<&Path>) -> String {
    let repo = env!("CARGO_MANIFEST_DIR");
    let policy = policy
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("{repo}/config/policy.toml"));
    format!(
        r#"
[upstream]
url = "{upstream_url}"
{upstream}
{tables}
{auth}
[api]
documents = [
  {{ path = "{repo}/config/openapi/sim-integrations.beta.json", mount = "/beta" }},
  {{ path = "{repo}/config/openapi/sim-integrations.v1.json", mount = "/" }},
]

[authz]
policy = "{policy}"
scope_match = "any"

[rate_limit.reads]
requests_per_second = 100000
burst = 100000

[rate_limit.mutations]
requests_per_second = 100000
burst = 100000
"#,
        auth = auth_section()
    )
}

/// One OAuth2 credential table.
fn oauth_table(name: &str, token_url: &str, client_id: &str, secret: &Path) -> String {
    format!(
        r#"
[upstream.credentials.{name}]
kind = "oauth2_client_credentials"
token_url = "{token_url}"
client_id = "{client_id}"
client_secret_file = "{}"
retry_max = "1s"
timeout = "2s"
"#,
        secret.display()
    )
}

async fn poll_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..MAX_POLLS {
        if f().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ready(gw: &TestGateway) -> Reply {
    get(&gw.url("/readyz"), None).await
}

fn admin() -> String {
    tokens::token("svc-admin", &["ORG_ADMIN"], ALL_SCOPES)
}

fn reader() -> String {
    tokens::token("svc-reader", &["SIM_READER"], READ_SCOPES)
}

const CREATE: &str = r#"{"name":"n","description":"d","type":"ServiceNow Service Desk","attributes":{"password":"p"},"sources":["2c9180835d191a86015d28455b4a2329"],"cluster":"xyzzy999"}"#;

async fn create(gw: &TestGateway, token: &str) -> Reply {
    send(
        Method::POST,
        &gw.url("/beta/sim-integrations"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        CREATE,
    )
    .await
}

fn audit_records(gw: &TestGateway) -> Vec<Value> {
    std::fs::read_to_string(gw.path("audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A gateway whose only credential is `admin` at `tokens`, for `api`.
async fn admin_gateway(tokens: &TokenEndpoint, api: &Api, secret: &Path) -> TestGateway {
    let body = config(
        &api.url(),
        "credential = \"admin\"",
        &oauth_table("admin", &tokens.url(), "gw-admin", secret),
        None,
    );
    TestGateway::start(&body).await
}

// --------------------------------------------------------------- tests

#[tokio::test]
async fn token_is_fetched_at_start_injected_and_refreshed_ahead_of_expiry() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let secret = "admin-secret-8c1f0e";
    let path = secret_file(dir.path(), "admin", secret);
    // Two-second tokens: refreshed when three quarters have passed.
    let endpoint = TokenEndpoint::start(&[("gw-admin", secret)], 2).await;
    let api = Api::start().await;
    let gw = admin_gateway(&endpoint, &api, &path).await;
    poll_until("readiness", || async { ready(&gw).await.status == 200 }).await;
    assert_eq!(endpoint.requests(), 1, "one token fetched at start");
    let first = endpoint.last_token();

    let caller = admin();
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, format!("Bearer {first}"));
    assert!(
        !seen[0].authorization.contains(&caller),
        "the caller's token stays here"
    );

    // The background refresh replaces it, with no request waiting on it.
    poll_until("the refresh", || async { endpoint.requests() >= 2 }).await;
    let second = endpoint.tokens()[1].clone();
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200);
    let seen = api.seen();
    assert!(seen[1].authorization.starts_with("Bearer tok-gw-admin-"));
    assert_ne!(seen[1].authorization, format!("Bearer {first}"));
    assert!(
        endpoint
            .tokens()
            .iter()
            .any(|t| seen[1].authorization == format!("Bearer {t}")),
        "a token the endpoint issued"
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization != format!("Bearer {caller}"))
    );
    let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        log.contains("upstream credential: token obtained"),
        "the gateway's log is captured"
    );
    let mut secrets = endpoint.tokens();
    secrets.extend([secret.to_owned(), second, caller]);
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}

#[tokio::test]
async fn many_callers_whose_token_is_refused_share_one_token_request() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let secret = "admin-secret-41d2aa";
    let path = secret_file(dir.path(), "admin", secret);
    let endpoint = TokenEndpoint::start(&[("gw-admin", secret)], 3600).await;
    let api = Api::start().await;
    let gw = admin_gateway(&endpoint, &api, &path).await;
    poll_until("readiness", || async { ready(&gw).await.status == 200 }).await;
    let stale = endpoint.last_token();
    // The upstream now considers the token expired.
    api.revoke(&stale);
    let caller = admin();
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let url = gw.url("/beta/sim-integrations");
            let caller = caller.clone();
            tokio::spawn(async move { get(&url, Some(&caller)).await })
        })
        .collect();
    for c in calls {
        let res = c.await.unwrap();
        assert_eq!(res.status, 200, "{}", res.text());
    }
    assert_eq!(endpoint.requests(), 2, "one token request for all callers");
    let fresh = format!("Bearer {}", endpoint.last_token());
    let seen = api.seen();
    let stale_tries = seen
        .iter()
        .filter(|s| s.authorization == format!("Bearer {stale}"))
        .count();
    let fresh_tries = seen.iter().filter(|s| s.authorization == fresh).count();
    assert_eq!(fresh_tries, 24, "every caller answered with the new token");
    assert_eq!(stale_tries + fresh_tries, seen.len());
    assert!(stale_tries <= 24);
    let mut secrets = endpoint.tokens();
    secrets.extend([secret.to_owned(), caller]);
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}

#[tokio::test]
async fn token_endpoint_down_at_start_then_later_then_back_up() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let secret = "admin-secret-77b9c3";
    let path = secret_file(dir.path(), "admin", secret);
    let endpoint = TokenEndpoint::start(&[("gw-admin", secret)], 8).await;
    endpoint.up.store(false, Ordering::SeqCst);
    let api = Api::start().await;
    let gw = admin_gateway(&endpoint, &api, &path).await;
    let caller = admin();

    // Down at start: not ready; requests refused with 503, nothing sent.
    poll_until("a failed attempt", || async { endpoint.requests() >= 1 }).await;
    let r = ready(&gw).await;
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .contains("upstream credential \\\"admin\\\" has no valid token"),
        "{}",
        r.text()
    );
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), "1", "retry_max is 1s");
    let body = res.json();
    assert_eq!(body["detailCode"], "503 Service Unavailable");
    assert!(body["trackingId"].is_string());
    assert!(
        body["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no valid credential")
    );
    // A mutation: refused, audited as not sent, with the reason.
    let res = create(&gw, &caller).await;
    assert_eq!(res.status, 503);
    assert!(api.seen().is_empty(), "nothing reached the upstream");
    let outcome = audit_records(&gw)
        .into_iter()
        .find(|r| r["kind"] == "outcome")
        .expect("an outcome record");
    assert_eq!(outcome["decision"], "error");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("no valid upstream credential \"admin\""),
        "{outcome}"
    );

    // Back up: recovers without a restart.
    endpoint.up.store(true, Ordering::SeqCst);
    poll_until("recovery", || async { ready(&gw).await.status == 200 }).await;
    let token = endpoint.last_token();
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        api.seen().last().unwrap().authorization,
        format!("Bearer {token}")
    );

    // Down later: the refresh (at 6 of 8 s) fails, the current token is
    // still used; once it has expired, 503 + Retry-After.
    endpoint.up.store(false, Ordering::SeqCst);
    let before = endpoint.requests();
    poll_until("a failed refresh", || async {
        endpoint.requests() > before
    })
    .await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(
        res.status, 200,
        "the current token is used until it expires"
    );
    assert_eq!(
        api.seen().last().unwrap().authorization,
        format!("Bearer {token}")
    );
    poll_until("expiry", || async {
        get(&gw.url("/beta/sim-integrations"), Some(&caller))
            .await
            .status
            == 503
    })
    .await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), "1");
    assert_eq!(ready(&gw).await.status, 503);

    // And back again.
    endpoint.up.store(true, Ordering::SeqCst);
    poll_until("second recovery", || async {
        get(&gw.url("/beta/sim-integrations"), Some(&caller))
            .await
            .status
            == 200
    })
    .await;
    assert_eq!(ready(&gw).await.status, 200);
    let mut secrets = endpoint.tokens();
    secrets.extend([secret.to_owned(), caller]);
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_401_refreshes_once_and_resends_once_then_502() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let secret = "admin-secret-0f3e19";
    let path = secret_file(dir.path(), "admin", secret);
    let endpoint = TokenEndpoint::start(&[("gw-admin", secret)], 3600).await;
    let api = Api::start().await;
    let gw = admin_gateway(&endpoint, &api, &path).await;
    poll_until("readiness", || async { ready(&gw).await.status == 200 }).await;
    let stale = endpoint.last_token();
    api.revoke(&stale);
    let caller = admin();

    // A mutation with a stale token: one refresh, one resend, same body.
    let res = create(&gw, &caller).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "exactly two requests upstream");
    assert_eq!(endpoint.requests(), 2, "exactly one refresh");
    assert_eq!(seen[0].authorization, format!("Bearer {stale}"));
    assert_eq!(
        seen[1].authorization,
        format!("Bearer {}", endpoint.last_token())
    );
    assert!(seen.iter().all(|s| s.method == Method::POST));
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(&seen[1].body[..], CREATE.as_bytes());
    let records = audit_records(&gw);
    let outcome = records.iter().find(|r| r["kind"] == "outcome").unwrap();
    assert_eq!(outcome["decision"], "allowed");
    assert_eq!(outcome["upstream_status"], 200);
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("sent again once with a new token"),
        "the audit shows the retry: {outcome}"
    );

    // Refused again after the refresh: 502, no third attempt.
    api.reject_all.store(true, Ordering::SeqCst);
    let res = create(&gw, &caller).await;
    assert_eq!(res.status, 502, "{}", res.text());
    let body = res.json();
    assert_eq!(body["detailCode"], "502 Bad Gateway");
    assert!(
        body["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("refused the gateway's credential")
    );
    assert_eq!(api.seen().len(), 4, "two more requests, not three");
    assert_eq!(endpoint.requests(), 3);
    let records = audit_records(&gw);
    let outcome = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "outcome")
        .unwrap();
    assert_eq!(outcome["decision"], "upstream_error");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("also after one refresh and resend")
    );
    let mut secrets = endpoint.tokens();
    secrets.extend([secret.to_owned(), caller]);
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}

#[tokio::test]
async fn each_role_is_carried_by_its_own_upstream_client() {
    logs();
    use simgate::upstream::{Api as Reference, OAuth, UpstreamClient};
    let dir = tempfile::tempdir().unwrap();
    let admin_client = UpstreamClient::generate("simgate-admin", false);
    let reader_client = UpstreamClient::generate("simgate-reader", true);
    let admin_secret = secret_file(dir.path(), "admin", &admin_client.secret);
    let reader_secret = secret_file(dir.path(), "reader", &reader_client.secret);
    let oauth = OAuth::new(
        vec![admin_client.clone(), reader_client.clone()],
        Duration::from_secs(600),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(simgate::upstream::serve_api(
        listener,
        Reference::with_oauth(oauth.clone()),
        std::future::pending(),
    ));
    let url = format!("http://{addr}");
    // The policy lets SIM_READER try a delete, so that the request reaches
    // the upstream: its read-only client must stop it there.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[roles]\nORG_ADMIN = [\"@all\"]\nSIM_READER = [\"@read\", \"deleteSIMIntegration\"]\n",
    )
    .unwrap();
    let tables = format!(
        "{}{}",
        oauth_table(
            "sailpoint-admin",
            &format!("{url}/oauth/token"),
            "simgate-admin",
            &admin_secret
        ),
        oauth_table(
            "sailpoint-reader",
            &format!("{url}/oauth/token"),
            "simgate-reader",
            &reader_secret
        )
    );
    let body = config(
        &url,
        "credential = \"sailpoint-admin\"\ncredential_by_role = { SIM_READER = \"sailpoint-reader\", ORG_ADMIN = \"sailpoint-admin\" }",
        &tables,
        Some(&policy),
    );
    let gw = TestGateway::start(&body).await;
    poll_until("readiness", || async { ready(&gw).await.status == 200 }).await;
    assert_eq!(oauth.token_requests(), 2, "one token per client at start");

    // ORG_ADMIN creates with the admin client.
    let res = create(&gw, &admin()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let id = res.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(oauth.calls("simgate-admin", &Method::POST, 200), 1);

    // SIM_READER reads with the reader client.
    let reader = reader();
    let res = get(
        &gw.url(&format!("/beta/sim-integrations/{id}")),
        Some(&reader),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(oauth.calls("simgate-reader", &Method::GET, 200), 1);
    assert_eq!(oauth.calls("simgate-admin", &Method::GET, 200), 0);

    // A SIM_READER delete (the policy and the caller's scopes let it
    // through the gateway) reached the upstream with the reader's token and
    // could not change anything.
    let deleter = tokens::token("svc-reader", &["SIM_READER"], ALL_SCOPES);
    let res = send(
        Method::DELETE,
        &gw.url(&format!("/beta/sim-integrations/{id}")),
        &[("authorization", &format!("Bearer {deleter}"))],
        Bytes::new(),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert_eq!(res.json()["detailCode"], "403 Forbidden");
    assert_eq!(oauth.calls("simgate-reader", &Method::DELETE, 403), 1);
    assert_eq!(oauth.calls("simgate-admin", &Method::DELETE, 200), 0);
    let res = get(
        &gw.url(&format!("/beta/sim-integrations/{id}")),
        Some(&admin()),
    )
    .await;
    assert_eq!(res.status, 200, "still there");

    // A caller with both roles: the first entry written (SIM_READER) wins.
    let both = tokens::token("svc-both", &["ORG_ADMIN", "SIM_READER"], ALL_SCOPES);
    let res = get(&gw.url("/beta/sim-integrations"), Some(&both)).await;
    assert_eq!(res.status, 200);
    assert_eq!(oauth.calls("simgate-reader", &Method::GET, 200), 2);

    let secrets = vec![
        admin_client.secret.clone(),
        reader_client.secret.clone(),
        reader,
        deleter,
        both,
    ];
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}

#[tokio::test]
async fn check_prints_the_credential_of_each_role_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = secret_file(dir.path(), "admin", "check-secret-5e6f");
    std::fs::write(
        dir.path().join("jwks.json"),
        tokens::issuer().jwks().to_string(),
    )
    .unwrap();
    let tables = format!(
        "{}{}",
        oauth_table(
            "sailpoint-admin",
            "https://tenant.example/oauth/token",
            "a",
            &secret_path
        ),
        oauth_table(
            "sailpoint-reader",
            "https://tenant.example/oauth/token",
            "r",
            &secret_path
        )
    );
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        config(
            "http://127.0.0.1:9",
            "credential = \"sailpoint-admin\"\ncredential_by_role = { SIM_READER = \"sailpoint-reader\" }",
            &tables,
            None
        )
    );
    let path = dir.path().join("simgate.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Upstream credential per role:"), "{stdout}");
    let line = |role: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(role))
            .unwrap_or_else(|| panic!("no line for {role}: {stdout}"))
            .to_owned()
    };
    assert!(line("SIM_READER").contains("sailpoint-reader (oauth2_client_credentials)"));
    assert!(line("ORG_ADMIN").contains("sailpoint-admin"));
    assert!(line("(other callers)").contains("sailpoint-admin"));
    assert!(!stdout.contains("check-secret-5e6f") && !stderr.contains("check-secret-5e6f"));

    // The same rows in `--json`, for tooling.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("check-secret-5e6f"));
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = value["upstream_credentials"].as_array().unwrap();
    let row = |role: serde_json::Value| {
        rows.iter()
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("no row for {role}: {stdout}"))
    };
    let oauth = "oauth2_client_credentials";
    assert_eq!(
        row("SIM_READER".into()),
        &serde_json::json!({"role": "SIM_READER", "credential": "sailpoint-reader", "kind": oauth})
    );
    assert_eq!(row("ORG_ADMIN".into())["credential"], "sailpoint-admin");
    assert_eq!(
        rows.last().unwrap(),
        &serde_json::json!({"role": null, "credential": "sailpoint-admin", "kind": oauth})
    );
    // One row per policy role (`credential_by_role` names no other) and one
    // for other callers.
    let roles = value["roles"].as_array().unwrap();
    assert_eq!(rows.len(), roles.len() + 1, "{stdout}");
}

#[tokio::test]
async fn config_refuses_inline_secrets_and_explains_the_old_key() {
    let api = "http://127.0.0.1:9";
    let inline = config(
        api,
        "credential = \"a\"",
        "[upstream.credentials.a]\nkind = \"oauth2_client_credentials\"\ntoken_url = \"https://t/oauth/token\"\nclient_id = \"a\"\nclient_secret = \"inline-secret-9a9a\"\n",
        None,
    );
    let e = TestGateway::try_start_with(&inline, "")
        .await
        .err()
        .unwrap();
    assert!(e.contains("upstream.credentials.a.client_secret"), "{e}");
    assert!(e.contains("client_secret_file"), "{e}");
    assert!(!e.contains("inline-secret-9a9a"), "{e}");
    let both = config(
        api,
        "authorization = \"forward\"\ncredential = \"c\"",
        "[upstream.credentials.c]\nkind = \"forward\"\n",
        None,
    );
    let e = TestGateway::try_start_with(&both, "").await.err().unwrap();
    assert!(
        e.contains("upstream.authorization") && e.contains("kind = \"forward\""),
        "{e}"
    );
    let undefined = config(
        api,
        "credential_by_role = { SIM_READER = \"nope\" }",
        "",
        None,
    );
    let e = TestGateway::try_start_with(&undefined, "")
        .await
        .err()
        .unwrap();
    assert!(
        e.contains("credential_by_role.SIM_READER") && e.contains("nope"),
        "{e}"
    );
}

#[tokio::test]
async fn old_forward_key_still_forwards_and_bearer_credentials_are_injected() {
    logs();
    let api = Api::start().await;
    let caller = admin();
    let gw = TestGateway::start(&config(&api.url(), "authorization = \"forward\"", "", None)).await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200);
    assert_eq!(api.seen()[0].authorization, format!("Bearer {caller}"));
    gw.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let static_token = "static-token-3c3c";
    let path = secret_file(dir.path(), "static", static_token);
    let tables = format!(
        "[upstream.credentials.static]\nkind = \"bearer\"\ntoken_file = \"{}\"\n",
        path.display()
    );
    let gw = TestGateway::start(&config(
        &api.url(),
        "credential = \"static\"",
        &tables,
        None,
    ))
    .await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        api.seen()[1].authorization,
        format!("Bearer {static_token}")
    );
    assert_no_leak(&gw, &[static_token.to_owned()]);
    gw.stop().await;

    // No credential at all: the caller's token is removed.
    let gw = TestGateway::start(&config(&api.url(), "", "", None)).await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&caller)).await;
    assert_eq!(res.status, 200);
    assert_eq!(api.seen()[2].authorization, "");
    gw.stop().await;
}

/// A client secret rotated in its file (the config unchanged) is read again
/// on the next reload, and the new secret gets the token; before the
/// reload, the old one gets none and nothing is forwarded. Token requests
/// are counted by result.
#[tokio::test]
async fn a_rotated_client_secret_is_read_again_on_reload() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = ("admin-secret-old-5d2a", "admin-secret-new-9b7e");
    let path = secret_file(dir.path(), "admin", old);
    let endpoint = TokenEndpoint::start(&[("gw-admin", new)], 3600).await;
    let api = Api::start().await;
    let body = config(
        &api.url(),
        "credential = \"admin\"",
        &oauth_table("admin", &endpoint.url(), "gw-admin", &path),
        None,
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = TestGateway::start(&body).await;
    poll_until("a refused token request", || async {
        endpoint.requests() >= 1
    })
    .await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&admin())).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(api.seen().is_empty(), "nothing forwarded without a token");

    secret_file(dir.path(), "admin", new);
    let res = send(Method::POST, &gw.admin_url("/reload"), &[], "").await;
    assert_eq!(res.status, 200, "{}", res.text());
    poll_until("a token from the rotated secret", || async {
        !endpoint.tokens().is_empty()
    })
    .await;
    poll_until("readiness", || async { ready(&gw).await.status == 200 }).await;
    let res = get(&gw.url("/beta/sim-integrations"), Some(&admin())).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization,
        format!("Bearer {}", endpoint.last_token())
    );

    // Reloading again with nothing changed keeps the token: no new fetch.
    let fetched = endpoint.requests();
    let res = send(Method::POST, &gw.admin_url("/reload"), &[], "").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let res = get(&gw.url("/beta/sim-integrations"), Some(&admin())).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        endpoint.requests(),
        fetched,
        "the unchanged credential kept its token"
    );

    // Every token request is counted, refused ones too.
    let scrape = get(&gw.admin_url("/metrics"), None).await.text();
    let count = |result: &str| -> usize {
        let series = format!(
            "simgate_upstream_token_fetches_total{{credential=\"admin\",result=\"{result}\"}} "
        );
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}in the scrape"))
    };
    assert_eq!(count("ok"), 1);
    assert!(count("error") >= 1);
    assert_eq!(count("ok") + count("error"), fetched);

    let mut secrets = endpoint.tokens();
    secrets.extend([old.to_owned(), new.to_owned()]);
    assert_no_leak(&gw, &secrets);
    gw.stop().await;
}
