//! `[authz]`: the policy file and scope checking.

use serde::Deserialize;

/// `[authz]`: the policy file and scope checking.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzSection {}
