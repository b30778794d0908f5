//! JWT authentication: who is calling.

pub mod config;
mod principal;

pub use principal::Principal;
