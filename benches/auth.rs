//! Cost per request of authentication: the `AuthenticateLayer` in front of
//! a service that answers at once, for RS256 (RSA-2048) and ES256 (P-256)
//! tokens, with the verified-token cache (the client reuses its token, so
//! every request after the first is a cache hit) and without it (every
//! request verifies the signature), against the same stack without the
//! layer as a baseline.
//!
//! Run with `cargo bench --bench auth`.
// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};

use simgate::auth::clock::{Clock, SystemClock};
use simgate::auth::keys::{SigningKey, generate_es256, generate_rsa, jwks};
use simgate::auth::mint::mint;
use simgate::auth::{AuthSection, AuthenticateLayer, Authenticator};
use simgate::body::{Body, BoxError, empty};

type Svc = tower::util::BoxCloneService<Request<Body>, Response<Body>, BoxError>;

fn authenticator(dir: &Path, cache_size: u64) -> Arc<Authenticator> {
    let section: AuthSection = toml::from_str(&format!(
        r#"cache_size = {cache_size}
[[issuers]]
issuer = "https://idp.bench"
audiences = ["simgate"]
jwks_file = "jwks.json"
algorithms = ["RS256", "ES256"]
"#
    ))
    .expect("section");
    Authenticator::from_config(&section, Path::new("bench.toml"), dir).expect("authenticator")
}

fn stack(auth: Option<Arc<Authenticator>>) -> Svc {
    ServiceBuilder::new()
        .option_layer(auth.map(AuthenticateLayer::new))
        .service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(empty())) })
        .boxed_clone()
}

fn token(key: &SigningKey) -> HeaderValue {
    let now = SystemClock.now();
    let t = mint(
        key,
        &json!({
            "iss": "https://idp.bench", "aud": "simgate", "sub": "svc-bench",
            "client_id": "svc-bench", "authorities": ["ORG_ADMIN"],
            "scope": "sp:scopes:all", "iat": now, "nbf": now, "exp": now + 3600,
            "jti": "bench",
        }),
    )
    .expect("mint");
    HeaderValue::from_str(&format!("Bearer {t}")).expect("header")
}

/// One request through `svc`. Every future in these stacks is ready at
/// once (file-based keys never wait), so it is polled without a runtime.
fn one(svc: &mut Svc, auth: &HeaderValue) {
    let mut req = Request::get("/beta/sim-integrations")
        .body(empty())
        .expect("request");
    req.headers_mut().insert(AUTHORIZATION, auth.clone());
    let res = svc
        .ready()
        .now_or_never()
        .expect("ready")
        .expect("ready ok")
        .call(req)
        .now_or_never()
        .expect("completes at once");
    assert!(res.is_ok(), "token refused");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rsa = generate_rsa("bench-rsa").expect("rsa");
    let ec = generate_es256("bench-ec").expect("ec");
    std::fs::write(
        dir.path().join("jwks.json"),
        jwks(&[rsa.clone(), ec.clone()]).to_string(),
    )
    .expect("jwks");
    let cached = authenticator(dir.path(), 10_000);
    let uncached = authenticator(dir.path(), 0);

    let mut g = c.benchmark_group("authenticate");
    let mut baseline = stack(None);
    let header = token(&rsa);
    g.bench_function("no auth layer", |b| b.iter(|| one(&mut baseline, &header)));
    for (alg, key) in [("RS256", &rsa), ("ES256", &ec)] {
        let header = token(key);
        for (name, auth) in [("cached", &cached), ("uncached", &uncached)] {
            let mut svc = stack(Some(auth.clone()));
            g.bench_with_input(BenchmarkId::new(alg, name), &header, |b, h| {
                b.iter(|| one(&mut svc, h))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
