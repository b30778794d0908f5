//! `[api]`: the OpenAPI documents and where they are mounted.

use serde::Deserialize;

/// `[api]`: the OpenAPI documents and where they are mounted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {}
