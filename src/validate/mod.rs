//! Request validation against the matched operation: parameters, and the
//! body by media type, JSON Patch aware.
//!
//! A request the upstream would misread never reaches it. The schemas come
//! from the loaded OpenAPI documents (OpenAPI 3.0 as draft 4 with its
//! extensions, 3.1 as JSON Schema 2020-12; see `dialect.rs`) and are
//! compiled once at start into [`Validators`]; [`ValidateBodyLayer`] applies
//! them per request. Bodies of media types the gateway does not parse
//! (multipart, XML, octet-stream, …) and of operations in `validation.skip`
//! pass within the size limit, unvalidated ([`Validators::unvalidated`]).
//! Refused, nothing forwarded:
//!
//! | what | status |
//! |---|---|
//! | a path, query or header parameter missing or not matching its schema (see `params.rs`) | 400: `query.status: must be one of …` |
//! | a form field not matching its schema (see `form.rs`) | 400: `/age: expected integer, got string` |
//! | media type not declared by the operation (or a `Content-Encoding`) | 415, listing the accepted ones |
//! | body over the operation's limit (`[validation] max_body_bytes`, `body_limits`) | 413 |
//! | invalid UTF-8, a BOM, duplicate keys, nesting too deep, trailing data, bad JSON | 400 |
//! | schema violations, read-only fields (unless configured to strip them) | 400, one message per violation: `/statusMap: expected object, got string` |
//! | bad JSON Patch operations (see `patch.rs`) | 400 |
//! | a patch path the caller's role may not touch (`[validation.patch_paths]`) | 403 |
//! | a non-empty body for an operation that takes none | 400 |
//!
//! What is forwarded is the exact bytes that were validated, never a
//! re-serialisation (with `read_only = "strip"`, the read-only members are
//! cut out of those bytes and nothing else changes).
//!
//! ```
//! use std::sync::Arc;
//! use http::{HeaderMap, HeaderValue, Method, header::CONTENT_TYPE};
//! use serde_json::json;
//! use simgate::routes::{Operation, RequestBody};
//! use simgate::validate::{Validators, config::ValidationSection};
//!
//! let doc = json!({"openapi": "3.0.1", "paths": {}, "components": {"schemas": {
//!     "Thing": {"type": "object", "required": ["name"], "properties": {
//!         "id": {"type": "string", "readOnly": true},
//!         "name": {"type": "string"},
//!         "statusMap": {"type": "object"}}}}}});
//! let op = Arc::new(Operation {
//!     operation_id: "createThing".into(),
//!     method: Method::POST,
//!     path_template: "/things".into(),
//!     mutating: true,
//!     scopes: vec![],
//!     request_bodies: vec![RequestBody {
//!         media_type: "application/json".into(),
//!         schema: json!({"$ref": "#/components/schemas/Thing"}),
//!         required: true,
//!     }],
//!     path_params: vec![],
//!     document: 0,
//!     index: 0,
//!     ..Default::default()
//! });
//! let validators = Validators::compile(
//!     [&op], |_| Some(&doc), &ValidationSection::default(), "simgate.toml".as_ref(),
//! ).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
//! let ok = validators.validate(&op, &headers, None, r#"{"name": "a"}"#.into());
//! assert_eq!(ok.unwrap(), r#"{"name": "a"}"#);
//! let err = validators
//!     .validate(&op, &headers, None, r#"{"name": "a", "statusMap": "x"}"#.into())
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "invalid request body");
//! ```

pub mod config;

mod check;
mod coerce;
mod compile;
mod dialect;
mod form;
mod json;
mod layer;
mod media;
mod params;
mod patch;
mod report;
mod store;
mod strip;

pub use compile::{Accepted, OperationCheck, Unvalidated, Validators};
pub use layer::{ValidateBody, ValidateBodyLayer};

#[cfg(test)]
mod tests;
