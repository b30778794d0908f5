//! Shared test support: real servers on ephemeral loopback ports, a real
//! HTTP client and real signed tokens.
#![allow(dead_code, unreachable_pub, missing_docs)]
// Test support may fail loudly: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod gateway;
pub mod http;
pub mod redis;
pub mod task;
pub mod tls;
pub mod tokens;
pub mod upstream;
