//! `[api]`: the OpenAPI documents and where they are mounted.
//!
//! ```toml
//! [api]
//! documents = [
//!   { path = "openapi/sim-integrations.beta.json", mount = "/beta" },
//!   { path = "openapi/sim-integrations.v1.json", mount = "/" },
//! ]
//! ```
//!
//! Relative paths are resolved against the config file's folder. JSON
//! (`.json`) and YAML (`.yaml`, `.yml`) documents are accepted, OpenAPI
//! 3.0.x or 3.1.x.

use serde::Deserialize;

/// `[api]`: the OpenAPI documents and where they are mounted.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The documents, in load order (the order of the access matrix).
    #[serde(default)]
    pub documents: Vec<DocumentEntry>,
}

/// One `[api] documents` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentEntry {
    /// The OpenAPI 3.0 or 3.1 document (JSON or YAML).
    pub path: String,
    /// The path prefix its paths are served under, e.g. `/beta` or `/`.
    pub mount: String,
}
