//! Connection facts that the server puts into every request's extensions.

use std::net::SocketAddr;

/// The TCP peer of the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Whether the connection a request arrived on was TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls(pub bool);
