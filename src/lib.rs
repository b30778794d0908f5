//! simgate: an authenticating reverse proxy for REST APIs described by OpenAPI.
//!
//! A request flows through one tower stack, assembled in [`stack`], one
//! concern per layer: request id and tracing, limits and timeouts, JWT
//! authentication, OpenAPI operation matching, role/scope authorization,
//! per-client rate limiting, body validation, a durable audit of every
//! mutation, and finally the proxy to the upstream. Every failure is a typed
//! [`error::Error`] that [`rescue`] turns into an HTTP response in the API's
//! own documented error shapes.
//!
//! Configuration is a value and starting it is a step: a [`generation`] is
//! the config file and every file it names, validated, with nothing
//! started; [`stack::Gateway`] starts one, and [`reload`] swaps in the
//! next without dropping a request.

pub mod access_log;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod body;
pub mod cli;
pub mod config;
pub mod cors;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod generation;
pub mod health;
pub mod limits;
mod log_writer;
pub mod metrics;
pub mod net;
pub mod proxy;
mod random;
pub mod rate_limit;
pub mod record;
pub mod reload;
pub mod request_head;
pub mod request_id;
pub mod rescue;
pub mod routes;
mod runtime;
pub mod server;
pub mod stack;
pub mod telemetry;
pub(crate) mod tls;
pub mod trace_context;
pub mod upstream;
pub mod validate;
