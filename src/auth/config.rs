//! `[auth]`: token issuers and claims mapping.

use serde::Deserialize;

/// `[auth]`: token issuers and claims mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {}
