//! Matching requests to OpenAPI operations.

pub mod config;
mod operation;

pub use operation::{Operation, PathParams, RequestBody, is_mutating};
