//! Matching requests to OpenAPI operations.
//!
//! `[api]` ([`config`]) lists OpenAPI 3.0 documents (JSON or YAML) and the
//! prefix each is mounted at; [`OperationTable::load`] reads them once at
//! start-up and [`MatchOperationLayer`] matches every request to one
//! operation — strictly, on the raw path, never "fixing" it — or refuses it
//! (400 ambiguous path, 404 no operation, 405 other method). The matched
//! [`Operation`] and its [`PathParams`] travel in the request extensions.

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
