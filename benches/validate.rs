//! Request body validation cost per request: a typical create body and a
//! typical JSON Patch, checked as the gateway does (media type, size, strict
//! parse, schema, patch targets), against the repository's documents.
//!
//! Run: `cargo bench --bench validate`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use simgate::auth::Principal;
use simgate::routes::config::{ApiSection, DocumentEntry};
use simgate::routes::{Operation, OperationTable};
use simgate::validate::Validators;
use simgate::validate::config::ValidationSection;

/// What the Python SDKs send to create an integration.
const CREATE: &str = r#"{"name": "aName", "description": "Integration description", "type": "ServiceNow Service Desk", "attributes": {"uid": "Walter White", "firstname": "walter", "cloudStatus": "UNREGISTERED", "displayName": "Walter White", "identificationNumber": "942", "lastSyncDate": 1470348809380, "email": "walter@gmail.com", "lastname": "white"}, "sources": ["2c9180835d191a86015d28455b4a2329", "2c5680835d191a85765d28455b4a9823"], "cluster": "xyzzy999", "statusMap": {"closed_cancelled": "Failed", "closed_complete": "Committed", "closed_incomplete": "Failed", "closed_rejected": "Failed", "in_process": "Queued", "requested": "Queued"}, "request": {"description": "SailPoint Access Request,", "req_description": "The Service Request created by SailPoint ServiceNow Service Integration Module (SIM).,", "short_description": "SailPoint Access Request $!plan.arguments.identityRequestId"}, "beforeProvisioningRule": {"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Example Rule"}}"#;

/// What the Python SDK 1.x sends to change the description.
const PATCH: &str =
    r#"{"operations": [{"op": "replace", "path": "/description", "value": "A new description"}]}"#;

/// A larger RFC 6902 patch touching several fields.
const PATCH_5: &str = r#"[{"op": "replace", "path": "/description", "value": "x"}, {"op": "add", "path": "/sources/-", "value": "2c9180835d191a86015d28455b4a2329"}, {"op": "replace", "path": "/statusMap", "value": {"in_process": "Queued"}}, {"op": "remove", "path": "/attributes/email"}, {"op": "test", "path": "/name", "value": "aName"}]"#;

/// The vendor's documented example, refused (statusMap etc. as strings).
const VENDOR: &str = r#"{"request": "{\"description\":\"SailPoint Access Request,\"}", "beforeProvisioningRule": {"name": "Example Rule", "id": "2c918085708c274401708c2a8a760001", "type": "IDENTITY"}, "name": "aName", "cluster": "xyzzy999", "description": "Integration description", "modified": "2015-05-28T14:07:17Z", "statusMap": "{\"closed_cancelled\":\"Failed\"}", "attributes": "{\"uid\":\"Walter White\"}", "id": "id12345", "type": "ServiceNow Service Desk", "sources": ["2c9180835d191a86015d28455b4a2329"], "created": "2015-05-28T14:07:17Z"}"#;

fn setup() -> (Arc<Validators>, Arc<OperationTable>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let api = ApiSection {
        documents: vec![
            DocumentEntry {
                path: "config/openapi/sim-integrations.beta.json".into(),
                mount: "/beta".into(),
            },
            DocumentEntry {
                path: "config/openapi/sim-integrations.v1.json".into(),
                mount: "/".into(),
            },
        ],
    };
    let config = repo.join("bench.toml");
    let table = OperationTable::load(&api, &config, repo).unwrap();
    let validators = Validators::compile(
        table.operations(),
        |i| Some(table.document(i)),
        &ValidationSection::default(),
        &config,
    )
    .unwrap();
    (validators, table)
}

fn headers(ct: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    h
}

fn bench(c: &mut Criterion) {
    let (v, table) = setup();
    let op = |id: &str| -> Arc<Operation> { table.get(id).unwrap().clone() };
    let principal = Principal {
        subject: "bench".into(),
        client_key: "bench".into(),
        issuer: "bench".into(),
        roles: vec!["ORG_ADMIN".into()],
        scopes: vec![],
        token_id: None,
    };
    let json = headers("application/json");
    let patch = headers("application/json-patch+json");
    let cases: [(&str, Arc<Operation>, &HeaderMap, &'static str, bool); 4] = [
        (
            "create (SDK body)",
            op("createSIMIntegration"),
            &json,
            CREATE,
            true,
        ),
        (
            "patch (SDK 1.x envelope, 1 op)",
            op("patchSIMAttributes"),
            &patch,
            PATCH,
            true,
        ),
        (
            "patch (RFC 6902 array, 5 ops)",
            op("patchSIMAttributesV1"),
            &patch,
            PATCH_5,
            true,
        ),
        (
            "create refused (vendor example)",
            op("createSIMIntegration"),
            &json,
            VENDOR,
            false,
        ),
    ];
    let mut group = c.benchmark_group("validate");
    for (name, op, headers, body, ok) in cases {
        let body = Bytes::from_static(body.as_bytes());
        assert_eq!(
            v.validate(&op, headers, Some(&principal), body.clone())
                .is_ok(),
            ok,
            "{name}"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                v.validate(
                    black_box(&op),
                    headers,
                    Some(&principal),
                    black_box(body.clone()),
                )
            })
        });
    }
    group.finish();
    c.bench_function("compile (both documents, at start)", |b| b.iter(setup));
}

criterion_group!(benches, bench);
criterion_main!(benches);
