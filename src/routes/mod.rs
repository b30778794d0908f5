//! Matching requests to OpenAPI operations.
//!
//! `[api]` ([`config`]) lists OpenAPI 3.0 and 3.1 documents (JSON or YAML)
//! and the prefix each is mounted at; [`OperationTable::load`] reads them
//! once at start-up and [`MatchOperationLayer`] matches every request to one
//! operation — strictly, on the raw path, never "fixing" it — or refuses it
//! (400 ambiguous path, 404 no operation, 405 other method; an `OPTIONS`
//! without an OPTIONS operation is answered 204 with `Allow`; HEAD is served
//! by GET). The matched [`Operation`] and its [`PathParams`] travel in the
//! request extensions.

pub mod config;
mod layer;
mod load;
mod operation;
mod path;
mod table;

pub use layer::{MatchOperation, MatchOperationLayer, ResponseFuture};
pub use operation::{
    Operation, ParamIn, ParamStyle, Parameter, PathParams, RequestBody, is_mutating,
};
pub use table::{Document, OperationTable};
