//! The durable, tamper-evident audit trail of mutations.

pub mod config;
