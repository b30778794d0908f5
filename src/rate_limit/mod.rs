//! Per-client rate limiting.

pub mod config;
