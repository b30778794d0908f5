//! Fuzzes the strict path check and the operation matcher with the
//! repository's OpenAPI documents.
//!
//! Input: one selector byte (the method), then the raw path. Properties
//! checked on every input:
//! - nothing panics;
//! - a refusal is `BadPath`, `NoRoute` or `MethodNotAllowed` (or, for
//!   OPTIONS, the `Allow` answer), never another error;
//! - a matched path has none of what the check must refuse (dot or empty
//!   segments, `\`, `;`, encoded `/`, `.`, `%`, control characters), has as
//!   many segments as the operation's template, and the operation has the
//!   request's method;
//! - matching is deterministic.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::Method;
use libfuzzer_sys::fuzz_target;
use simgate::error::Error;
use simgate::routes::OperationTable;
use simgate::routes::config::{ApiSection, DocumentEntry};

fn table() -> &'static Arc<OperationTable> {
    static TABLE: OnceLock<Arc<OperationTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
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
        OperationTable::load(&api, &repo.join("fuzz.toml"), &repo).expect("documents load")
    })
}

const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, raw)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(raw) else {
        return;
    };
    let method = &METHODS[usize::from(sel) % METHODS.len()];
    let t = table();
    match t.find(method, path) {
        Ok((op, _params)) => {
            assert_eq!(&op.method, method);
            assert!(path.starts_with('/'), "{path:?}");
            let segments: Vec<&str> = path[1..].split('/').collect();
            assert_eq!(
                segments.len(),
                op.path_template.trim_start_matches('/').split('/').count(),
                "{path:?} matched {}",
                op.path_template
            );
            for s in &segments {
                assert!(!s.is_empty() && !s.bytes().all(|b| b == b'.'), "{path:?}");
                assert!(!s.contains(['\\', ';']), "{path:?}");
                let lower = s.to_ascii_lowercase();
                for bad in ["%2f", "%2e", "%25", "%5c", "%3b", "%00"] {
                    assert!(!lower.contains(bad), "{path:?}");
                }
                assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{path:?}");
            }
            let (again, _) = t.find(method, path).expect("deterministic");
            assert_eq!(again.operation_id, op.operation_id);
        }
        Err(Error::BadPath(_) | Error::NoRoute | Error::MethodNotAllowed { .. }) => {}
        // OPTIONS to a known path without an OPTIONS operation: 204 + Allow.
        Err(Error::Options { .. }) if method == Method::OPTIONS => {}
        Err(other) => panic!("unexpected error for {path:?}: {other:?}"),
    }
});
