//! `[authz]`: the policy file and scope checking.
//!
//! ```toml
//! [authz]
//! policy = "policy.toml"              # roles → operationIds (required in gateway mode)
//! require_scopes = true               # default: the token must carry a declared scope
//! wildcard_scopes = ["sp:scopes:all"] # default: scopes that satisfy any operation
//! scope_match = "all"                 # default: a requirement needs all its scopes
//! ```
//!
//! An operation's OpenAPI `security` is a list of requirement objects; the
//! token must meet one of them (OR). With `scope_match = "all"` (OpenAPI's
//! rule) it must carry every scope a requirement lists; with `"any"` (the
//! convention of documents such as SailPoint's, which list alternatives in
//! one requirement) one listed scope suffices. A requirement listing no
//! scope needs none.

use serde::Deserialize;

/// `[authz]`: the policy file and scope checking.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzSection {
    /// The policy file granting operationIds to roles; relative to the
    /// config file's folder.
    pub policy: Option<String>,
    /// Whether the token must also carry one of the scopes the document
    /// declares for the operation (default `true`).
    pub require_scopes: Option<bool>,
    /// Scopes that satisfy any operation's scope requirement (default
    /// `["sp:scopes:all"]`).
    pub wildcard_scopes: Option<Vec<String>>,
    /// Within one `security` requirement: `"all"` (default, OpenAPI) or
    /// `"any"` of its scopes.
    pub scope_match: Option<String>,
}
