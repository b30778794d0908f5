//! Keys from a JWKS URL, against an IdP run in the test on loopback that
//! counts its fetches: rotation without restart, removed keys, the
//! unknown-`kid` cool-down, `Cache-Control: max-age`, failures keeping the
//! last good keys, and an IdP that is down at start.
//!
//! Waiting is by condition (bounded polling), never by asserting on time;
//! the exact schedule is unit-tested with `tokio::time::pause` in
//! `auth::source`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use simgate::auth::keys::{SigningKey, generate_es256, generate_rsa, jwks};
use simgate::auth::mint::mint;
use support::gateway::{TestGateway, standard};
use support::http::get;
use support::tokens::{AUD, ISS, now};
use support::upstream::Recording;

const LIST: &str = "/beta/sim-integrations";

/// A JWKS endpoint whose document, status and Cache-Control the test sets.
#[derive(Clone)]
struct Idp {
    addr: SocketAddr,
    doc: Arc<Mutex<Value>>,
    status: Arc<AtomicU16>,
    cache_control: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(keys: &[SigningKey]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Idp {
            addr: listener.local_addr().unwrap(),
            doc: Arc::new(Mutex::new(jwks(keys))),
            status: Arc::new(AtomicU16::new(200)),
            cache_control: Arc::new(Mutex::new(None)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let state = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(&req)) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        idp
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        assert_eq!(req.uri().path(), "/jwks.json");
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::new(Full::new(Bytes::from(self.doc.lock().unwrap().to_string())));
        *res.status_mut() = http::StatusCode::from_u16(self.status.load(Ordering::SeqCst)).unwrap();
        if let Some(cc) = self.cache_control.lock().unwrap().clone() {
            res.headers_mut()
                .insert("cache-control", cc.parse().unwrap());
        }
        res
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn serve(&self, keys: &[SigningKey]) {
        *self.doc.lock().unwrap() = jwks(keys);
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The standard config with the test issuer's keys at `idp` instead of a
/// file. The per-peer failed-authentication limiter is off, so that the
/// key source's own cool-down is what a flood of bad tokens meets.
fn config(up: &Recording, idp: &Idp, extra: &str) -> String {
    let body = standard(&up.url()).replace(
        "jwks_file = \"jwks.json\"",
        &format!("jwks_url = \"{}\"\n{extra}", idp.url()),
    );
    format!("{body}\n[rate_limit.auth_failures]\nenabled = false\n")
}

/// A token the policy lets through, signed by `key` under `kid`.
fn token(key: &SigningKey) -> String {
    let now = now();
    mint(
        key,
        &json!({
            "iss": ISS, "aud": AUD, "sub": "svc", "authorities": ["ORG_ADMIN"],
            "scope": "sp:scopes:all", "iat": now, "exp": now + 600,
            "jti": uuid::Uuid::new_v4().to_string(),
        }),
    )
    .unwrap()
}

/// Polls `check` every 50 ms until it holds; fails after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

async fn ready(gw: &TestGateway) -> bool {
    get(&gw.url("/readyz"), None).await.status == 200
}

#[tokio::test]
async fn rotation_removal_and_unknown_kid_flood() {
    let (k1, k2) = (generate_rsa("k1").unwrap(), generate_es256("k2").unwrap());
    let idp = Idp::start(std::slice::from_ref(&k1)).await;
    let up = Recording::start().await;
    let gw = TestGateway::start(&config(&up, &idp, "jwks_cooldown = \"1h\"")).await;
    eventually("ready", || ready(&gw)).await;
    assert_eq!(idp.fetches(), 1);

    let old = token(&k1);
    assert_eq!(get(&gw.url(LIST), Some(&old)).await.status, 200);

    // The IdP rotates: k2 replaces k1. The first k2 token triggers one
    // refetch and is accepted, no restart.
    idp.serve(std::slice::from_ref(&k2));
    let res = get(&gw.url(LIST), Some(&token(&k2))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(idp.fetches(), 2);

    // k1 is gone: even its cached token stops working.
    let res = get(&gw.url(LIST), Some(&old)).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.json(), json!({"error": "unknown key id"}));
    assert_eq!(get(&gw.url(LIST), Some(&token(&k1))).await.status, 401);

    // A flood of random kids within the cool-down: no fetch at all.
    for i in 0..50 {
        let mut forged = k2.clone();
        forged.kid = format!("random-{i}-{}", uuid::Uuid::new_v4());
        let res = get(&gw.url(LIST), Some(&token(&forged))).await;
        assert_eq!(res.status, 401);
        assert_eq!(res.json(), json!({"error": "unknown key id"}));
    }
    assert_eq!(idp.fetches(), 2);
    assert_eq!(up.count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn idp_down_at_start_leaves_simgate_alive_and_not_ready() {
    let k1 = generate_rsa("k1").unwrap();
    let idp = Idp::start(std::slice::from_ref(&k1)).await;
    idp.set_status(503);
    let up = Recording::start().await;
    let gw = TestGateway::start(&config(&up, &idp, "")).await;
    eventually("a first fetch", || async { idp.fetches() >= 1 }).await;
    assert_eq!(get(&gw.url("/healthz"), None).await.status, 200);
    let res = get(&gw.url("/readyz"), None).await;
    assert_eq!(res.status, 503);
    assert!(res.text().contains("has no keys"), "{}", res.text());

    // The IdP comes back; a token fetches the keys on demand.
    idp.set_status(200);
    let res = get(&gw.url(LIST), Some(&token(&k1))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(ready(&gw).await);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn max_age_schedule_and_last_good_keys() {
    let (k1, k2) = (generate_rsa("k1").unwrap(), generate_rsa("k2").unwrap());
    let idp = Idp::start(std::slice::from_ref(&k1)).await;
    *idp.cache_control.lock().unwrap() = Some("public, max-age=1".into());
    let up = Recording::start().await;
    let extra = "jwks_cooldown = \"1h\"\njwks_min_refresh = \"1s\"\njwks_refresh = \"5m\"";
    let gw = TestGateway::start(&config(&up, &idp, extra)).await;
    eventually("ready", || ready(&gw)).await;

    // Use up the one unknown-kid refetch of the cool-down.
    let mut stranger = k2.clone();
    stranger.kid = "stranger".into();
    assert_eq!(
        get(&gw.url(LIST), Some(&token(&stranger))).await.status,
        401
    );

    // Rotation picked up by the max-age schedule alone (jwks_refresh is 5m).
    idp.serve(std::slice::from_ref(&k2));
    eventually("k2 accepted", || async {
        get(&gw.url(LIST), Some(&token(&k2))).await.status == 200
    })
    .await;

    // The IdP fails: refreshes keep failing, the last good keys stay.
    idp.set_status(500);
    let failed_from = idp.fetches();
    eventually("two failed refreshes", || async {
        idp.fetches() >= failed_from + 2
    })
    .await;
    assert_eq!(get(&gw.url(LIST), Some(&token(&k2))).await.status, 200);
    assert!(ready(&gw).await);
    // So do malformed documents.
    idp.set_status(200);
    *idp.doc.lock().unwrap() = json!({"keys": "nope"});
    let bad_from = idp.fetches();
    eventually("a malformed refresh", || async { idp.fetches() > bad_from }).await;
    assert_eq!(get(&gw.url(LIST), Some(&token(&k2))).await.status, 200);
    gw.stop().await;
}
