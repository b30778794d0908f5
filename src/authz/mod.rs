//! Role and scope authorization of operations.

pub mod config;
