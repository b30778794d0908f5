//! Shared test support: real servers on ephemeral loopback ports, a real
//! HTTP client and real signed tokens.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod gateway;
pub mod http;
pub mod tokens;
pub mod upstream;
