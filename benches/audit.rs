//! Mutations per second through the audit steps (request record + outcome,
//! durable intent)
//! with `flush = "always"`, with `flush = "batch"`, and without audit, in
//! front of an upstream that answers at once. Each iteration sends a wave of
//! concurrent PATCH requests (1 and 64 at a time) and waits for all of them.
//!
//! Run with `cargo bench --bench audit`; the trail goes to a temporary folder
//! on the same disk as `/tmp`.
// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};

use simgate::audit::{Audit, AuditConfig, FlushPolicy};
use simgate::auth::Principal;
use simgate::body::{Body, BoxError, empty, full};
use simgate::routes::{Operation, PathParams};

const BODY: &str = r#"[{"op":"replace","path":"/description","value":"bench"},{"op":"replace","path":"/attributes/password","value":"hunter2"}]"#;

fn request(op: &Arc<Operation>, principal: &Arc<Principal>) -> Request<Body> {
    let mut req = Request::patch("/beta/sim-integrations/2c9180835d191a86015d28455b4a2329")
        .header(CONTENT_TYPE, "application/json-patch+json")
        .body(full(BODY))
        .expect("request");
    req.extensions_mut().insert(op.clone());
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(PathParams(vec![(
        "id".into(),
        "2c9180835d191a86015d28455b4a2329".into(),
    )]));
    req
}

type Svc = tower::util::BoxCloneService<Request<Body>, Response<Body>, std::convert::Infallible>;

/// The request record (which writes the outcome), rescue, the note of
/// principal and operation, the durable intent and the upstream phase.
fn stack(audit: Option<&Audit>) -> Svc {
    let upstream = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, BoxError>(Response::new(empty()))
    });
    ServiceBuilder::new()
        .layer(simgate::record::RecordLayer::new(
            simgate::metrics::Metrics::new(),
            audit.cloned(),
            None,
        ))
        .layer(simgate::rescue::RescueLayer)
        .layer(simgate::record::NoteLayer)
        .option_layer(audit.map(Audit::intent_layer))
        .layer(simgate::record::ForwardLayer::new(audit.is_some()))
        .service(upstream)
        .boxed_clone()
}

async fn wave(svc: &Svc, n: usize, op: &Arc<Operation>, principal: &Arc<Principal>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut svc = svc.clone();
            let req = request(op, principal);
            tokio::spawn(async move {
                let svc = svc.ready().await?;
                svc.call(req).await
            })
        })
        .collect();
    for t in tasks {
        let res = t
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = res {
            eprintln!("mutation failed: {e}");
        }
    }
}

fn mutations(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let op = Arc::new(Operation {
        operation_id: "patchSIMAttributes".into(),
        method: Method::PATCH,
        path_template: "/beta/sim-integrations/{id}".into(),
        mutating: true,
        scopes: vec![],
        request_bodies: vec![],
        path_params: vec!["id".into()],
        document: 0,
        index: 0,
        ..Default::default()
    });
    let principal = Arc::new(Principal {
        subject: "svc-bench".into(),
        client_key: "svc-bench".into(),
        issuer: "https://idp.simgate.test".into(),
        roles: vec!["sim-admin".into()],
        scopes: vec!["sp:scopes:all".into()],
        token_id: Some("jti-bench".into()),
    });
    let variants: Vec<(&str, Option<Audit>)> = vec![
        ("no_audit", None),
        (
            "always",
            Some(start(&dir, "always", FlushPolicy::Always, &rt)),
        ),
        ("batch", Some(start(&dir, "batch", FlushPolicy::Batch, &rt))),
    ];
    let mut group = c.benchmark_group("mutations");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for concurrency in [1usize, 64] {
        group.throughput(Throughput::Elements(concurrency as u64));
        for (name, audit) in &variants {
            let svc = stack(audit.as_ref());
            group.bench_with_input(
                BenchmarkId::new(*name, concurrency),
                &concurrency,
                |b, &n| {
                    b.iter(|| rt.block_on(wave(&svc, n, &op, &principal)));
                },
            );
        }
    }
    group.finish();
}

fn start(
    dir: &tempfile::TempDir,
    name: &str,
    flush: FlushPolicy,
    rt: &tokio::runtime::Runtime,
) -> Audit {
    let mut config = AuditConfig::with_path(dir.path().join(format!("{name}.jsonl")));
    config.flush = flush;
    let _guard = rt.enter();
    Audit::start(&config).expect("audit")
}

criterion_group!(benches, mutations);
criterion_main!(benches);
