//! `[rate_limit]`: per-client quotas.

use serde::Deserialize;

/// `[rate_limit]`: per-client quotas.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {}
