//! The authenticated caller, as established by the authentication layer.

/// Who is calling, taken from a verified token. The authentication layer puts
/// an `Arc<Principal>` into the request extensions; later layers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The key quotas are counted under: `client_id`, falling back to `sub`.
    pub client_key: String,
    /// The token's `iss`.
    pub issuer: String,
    /// Roles (from `authorities` by default).
    pub roles: Vec<String>,
    /// Scopes (from `scope` by default).
    pub scopes: Vec<String>,
    /// The token's `jti`, if any.
    pub token_id: Option<String>,
}
