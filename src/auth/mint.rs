//! Token minting for `simgate token`, `simgate demo` and the tests.
//!
//! [`TokenSpec`] describes a token the way the vendor's IdP shapes them
//! (`authorities` for roles, a space-separated `scope`, `client_id`);
//! [`mint`] signs any claims with a [`SigningKey`] under its `kid`.

use jsonwebtoken::Header;
use serde_json::{Value, json};

use super::keys::{KeyError, SigningKey};

/// What a minted token says.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// `iss`.
    pub issuer: String,
    /// `aud`, if any.
    pub audience: Option<String>,
    /// `sub` (also `client_id`).
    pub subject: String,
    /// `authorities`.
    pub roles: Vec<String>,
    /// `scope`, space-separated.
    pub scopes: Vec<String>,
    /// `iat` and `nbf`, seconds since the epoch.
    pub issued_at: i64,
    /// Lifetime in seconds (`exp` = `iat` + ttl).
    pub ttl: i64,
}

impl TokenSpec {
    /// The claims of this token, with a fresh `jti`.
    pub fn claims(&self) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.subject,
            "client_id": self.subject,
            "authorities": self.roles,
            "scope": self.scopes.join(" "),
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.issued_at.saturating_add(self.ttl),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(aud) = &self.audience {
            claims["aud"] = json!(aud);
        }
        claims
    }
}

/// Signs `claims` with `key` (its algorithm, `kid` in the header).
pub fn mint(key: &SigningKey, claims: &Value) -> Result<String, KeyError> {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    mint_with(key, &header, claims)
}

/// Signs `claims` with `key` under an arbitrary header (tests use this to
/// build hostile tokens).
pub fn mint_with(key: &SigningKey, header: &Header, claims: &Value) -> Result<String, KeyError> {
    jsonwebtoken::encode(header, claims, key.encoding_key())
        .map_err(|e| KeyError(format!("signing failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_shapes_claims_like_the_vendor() {
        let spec = TokenSpec {
            issuer: "https://idp".into(),
            audience: Some("simgate".into()),
            subject: "svc".into(),
            roles: vec!["ORG_ADMIN".into()],
            scopes: vec!["sp:scopes:all".into(), "x".into()],
            issued_at: 1000,
            ttl: 60,
        };
        let c = spec.claims();
        assert_eq!(c["exp"], 1060);
        assert_eq!(c["scope"], "sp:scopes:all x");
        assert_eq!(c["authorities"][0], "ORG_ADMIN");
        assert_eq!(c["aud"], "simgate");
        let key = crate::auth::keys::generate_es256("k").unwrap();
        let token = mint(&key, &c).unwrap();
        assert_eq!(token.split('.').count(), 3);
    }
}
