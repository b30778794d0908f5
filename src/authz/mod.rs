//! Role and scope authorization of operations.
//!
//! `[authz]` ([`config`]) names a policy file granting OpenAPI operationIds
//! to roles ([`Policy`]); [`AuthorizeLayer`] refuses (403, naming the
//! operation and whether a role or a scope was missing) every request whose
//! matched operation is not granted to one of the caller's roles, or — with
//! `require_scopes` — whose token meets none of the operation's `security`
//! requirements (OR of AND-sets of scopes) and carries no wildcard scope.

pub mod config;
mod layer;
mod matrix;
mod policy;

pub use layer::{Authorize, AuthorizeLayer, ResponseFuture};
pub use matrix::{AccessMatrix, Row};
pub use policy::{Policy, ScopeMatch};
