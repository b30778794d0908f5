//! Cost per request of the rate limiters with 10 and with 100 000 distinct
//! clients (or peers), requests cycling through them.
//!
//! - `check`: the per-client decision alone (`ClientQuotas::check`: override
//!   lookup, key copy, GCRA update, the two header values);
//! - `layer`: the per-client `RateLimit` service around a no-op service
//!   (adds the response future and setting the headers);
//! - `auth_failures`: the failed-authentication limiter on successful
//!   requests (a test of the peer's budget that never writes);
//! - `baseline`: what `layer` and `auth_failures` include besides the
//!   limiter (copying the request's extensions, the no-op service).
//!
//! Quotas are large enough that every request is allowed (the common path).
//!
//! Run with `cargo bench --bench rate_limit`.

// A benchmark whose set-up fails should stop, like a test.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use simgate::auth::Principal;
use simgate::body::{Body, BoxError, empty};
use simgate::net::PeerAddr;
use simgate::rate_limit::RateLimiting;
use simgate::rate_limit::config::RateLimitSection;
use simgate::routes::Operation;
use tower::{Layer, Service};

const SECTION: &str = r#"
[reads]
requests_per_second = 1000000000
burst = 1000
[mutations]
requests_per_second = 1000000000
burst = 1000
[auth_failures]
failures_per_minute = 60
burst = 10
"#;

fn fresh() -> RateLimiting {
    let section: RateLimitSection = toml::from_str(SECTION).expect("section");
    let config = section.validate(Path::new("bench.toml")).expect("config");
    RateLimiting::with_clock(&config, Default::default())
}

fn operation() -> Arc<Operation> {
    Arc::new(Operation {
        operation_id: "getSIMIntegrations".into(),
        method: http::Method::GET,
        path_template: "/beta/sim-integrations".into(),
        mutating: false,
        scopes: Vec::new(),
        request_bodies: Vec::new(),
        path_params: Vec::new(),
        document: 0,
        index: 0,
        ..Default::default()
    })
}

/// One prepared request per client, as the layers above would leave it.
fn requests(clients: usize) -> Vec<Request<()>> {
    let op = operation();
    (0..clients)
        .map(|i| {
            let mut req = Request::new(());
            req.extensions_mut().insert(Arc::new(Principal {
                subject: format!("service-account-{i:06}"),
                client_key: format!("service-account-{i:06}"),
                issuer: "https://idp.example".into(),
                roles: vec!["ORG_ADMIN".into()],
                scopes: vec!["sp:scopes:all".into()],
                token_id: None,
            }));
            req.extensions_mut().insert(op.clone());
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::new(ip, 40000)));
            req
        })
        .collect()
}

fn ok(_req: Request<()>) -> std::future::Ready<Result<Response<Body>, BoxError>> {
    std::future::ready(Ok(Response::new(empty())))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    for clients in [10usize, 100_000] {
        let reqs = requests(clients);

        let limits = fresh();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("check", clients), &clients, |b, _| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(limits.clients().check(&reqs[i]))
            })
        });

        let mut svc = tower::service_fn(ok);
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("baseline", clients), &clients, |b, _| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                let req = clone(&reqs[i]);
                black_box(svc.call(req).now_or_never())
            })
        });

        let limits = fresh();
        let mut svc = limits.layer().layer(tower::service_fn(ok));
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("layer", clients), &clients, |b, _| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                let req = clone(&reqs[i]);
                black_box(svc.call(req).now_or_never())
            })
        });

        let limits = fresh();
        let Some(layer) = limits.auth_failure_layer() else {
            return;
        };
        let mut svc = layer.layer(tower::service_fn(ok));
        let mut i = 0;
        group.bench_with_input(
            BenchmarkId::new("auth_failures", clients),
            &clients,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % reqs.len();
                    let req = clone(&reqs[i]);
                    black_box(svc.call(req).now_or_never())
                })
            },
        );
    }
    group.finish();
}

/// A request with the same extensions (the layers take requests by value).
fn clone(req: &Request<()>) -> Request<()> {
    let mut out = Request::new(());
    *out.extensions_mut() = req.extensions().clone();
    out
}

criterion_group!(benches, bench);
criterion_main!(benches);
