//! Request body validation against the operation's schema.

pub mod config;
