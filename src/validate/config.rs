//! `[validation]`: request body limits and checks.

use serde::Deserialize;

/// `[validation]`: request body limits and checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {}
