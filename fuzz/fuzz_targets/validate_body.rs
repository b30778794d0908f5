//! Fuzzes the request body and JSON Patch validators with the repository's
//! OpenAPI documents.
//!
//! Input: one selector byte (operation, content type, read-only mode, role),
//! then the body. Properties checked on every input:
//! - nothing panics or overflows the stack;
//! - a refusal is a typed client error, never an internal one;
//! - an accepted body is forwarded byte for byte (`read_only = "refuse"`),
//!   or, when stripping read-only fields, as shorter JSON that passes again.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use simgate::auth::Principal;
use simgate::error::Error;
use simgate::routes::config::{ApiSection, DocumentEntry};
use simgate::routes::{Operation, OperationTable};
use simgate::validate::Validators;
use simgate::validate::config::ValidationSection;

struct World {
    refuse: Arc<Validators>,
    strip: Arc<Validators>,
    /// The operations with a request body, then one without.
    ops: Vec<Arc<Operation>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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
        let config = repo.join("fuzz.toml");
        let table = OperationTable::load(&api, &config, &repo).expect("documents load");
        let compile = |read_only: &str| {
            let section = ValidationSection {
                read_only: Some(read_only.into()),
                max_body_bytes: Some(1 << 20),
                patch_paths: [("SIM_OPERATOR".to_owned(), vec!["/description".to_owned()])]
                    .into_iter()
                    .collect(),
                ..ValidationSection::default()
            };
            Validators::compile(
                table.operations(),
                |i| Some(table.document(i)),
                &section,
                &config,
            )
            .expect("validators compile")
        };
        let refuse = compile("refuse");
        let mut ops: Vec<Arc<Operation>> = table
            .operations()
            .filter(|o| !o.request_bodies.is_empty())
            .cloned()
            .collect();
        ops.extend(
            table
                .operations()
                .find(|o| o.request_bodies.is_empty())
                .cloned(),
        );
        World {
            refuse,
            strip: compile("strip"),
            ops,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let op = &w.ops[usize::from(sel & 0x0f) % w.ops.len()];
    let content_type = match (sel >> 4) & 3 {
        0 => "application/json",
        1 => "application/json-patch+json",
        2 => "application/json-patch+json; charset=utf-8",
        _ => "application/json; charset=utf-8",
    };
    let strip = sel & 0x40 != 0;
    let role = if sel & 0x80 != 0 { "SIM_OPERATOR" } else { "ORG_ADMIN" };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let principal = Principal {
        subject: "fuzz".into(),
        client_key: "fuzz".into(),
        issuer: "fuzz".into(),
        roles: vec![role.into()],
        scopes: vec![],
        token_id: None,
    };
    let validators = if strip { &w.strip } else { &w.refuse };
    let input = Bytes::copy_from_slice(body);
    match validators.validate(op, &headers, Some(&principal), input.clone()) {
        Ok(out) if !strip => assert_eq!(out, input, "accepted bodies are forwarded as sent"),
        Ok(out) => {
            assert!(out.len() <= input.len());
            if out != input {
                // What was stripped must still be valid JSON that passes.
                serde_json::from_slice::<serde_json::Value>(&out).expect("stripped body is JSON");
                let again = validators.validate(op, &headers, Some(&principal), out.clone());
                assert_eq!(again.ok(), Some(out));
            }
        }
        Err(Error::Internal(why)) => panic!("internal error on client input: {why}"),
        Err(
            Error::InvalidBody { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::PayloadTooLarge { .. }
            | Error::Forbidden { .. },
        ) => {}
        Err(other) => panic!("unexpected refusal: {other:?}"),
    }
});
