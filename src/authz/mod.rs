//! Role and scope authorization of operations.
//!
//! `[authz]` ([`config`]) names a policy file granting OpenAPI operationIds
//! to roles ([`Policy`]); [`AuthorizeLayer`] refuses (403, naming the
//! operation) every request whose matched operation is not granted to one of
//! the caller's roles, or — with `require_scopes` — whose token carries none
//! of the operation's declared scopes nor a wildcard scope.

pub mod config;
mod layer;
mod matrix;
mod policy;

pub use layer::{Authorize, AuthorizeLayer, ResponseFuture};
pub use matrix::{AccessMatrix, Row};
pub use policy::Policy;
