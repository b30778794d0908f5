//! Real signed tokens: a test issuer with a freshly generated RSA key, its
//! JWKS, and token minting.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use serde_json::{Value, json};
use simgate::auth::keys::{self, SigningKey};
use simgate::auth::mint;

/// The issuer every test gateway trusts.
pub const ISS: &str = "https://idp.simgate.test";
/// The audience every test gateway accepts.
pub const AUD: &str = "simgate";
/// The key id of the test issuer's key.
pub const KID: &str = "test-rsa-1";

/// A signing key with its public JWK (the product's own key generation).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub kid: String,
    pub pkcs8_pem: String,
    pub jwk: Value,
    pub key: SigningKey,
}

impl Issuer {
    /// A fresh RSA-2048 key under `kid`.
    pub fn generate(kid: &str) -> Issuer {
        Self::from_key(keys::generate_rsa(kid).expect("rsa keygen"))
    }

    /// A fresh P-256 key under `kid` (ES256).
    pub fn generate_es256(kid: &str) -> Issuer {
        Self::from_key(keys::generate_es256(kid).expect("ec keygen"))
    }

    fn from_key(key: SigningKey) -> Issuer {
        Issuer {
            kid: key.kid.clone(),
            pkcs8_pem: key.pkcs8_pem.clone(),
            jwk: key.jwk.clone(),
            key,
        }
    }

    /// `{"keys": [this key]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A valid token for `sub` with `roles` (as `authorities`) and `scopes`
    /// (as a space-separated `scope`), expiring in ten minutes.
    pub fn token(&self, sub: &str, roles: &[&str], scopes: &[&str]) -> String {
        let now = now();
        self.sign(&json!({
            "iss": ISS, "aud": AUD, "sub": sub, "client_id": sub,
            "authorities": roles, "scope": scopes.join(" "),
            "iat": now, "nbf": now, "exp": now + 600, "jti": format!("jti-{sub}-{now}"),
        }))
    }

    /// Signs arbitrary claims with this key's algorithm under its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        mint::mint(&self.key, claims).expect("sign")
    }

    /// Signs arbitrary claims with an arbitrary header.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        mint::mint_with(&self.key, header, claims).expect("sign")
    }

    /// A header for this key's algorithm under its's `kid`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.key.alg);
        h.kid = Some(self.kid.clone());
        h
    }
}

/// The shared test issuer (generated once per test binary).
pub fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| Issuer::generate(KID))
}

/// A token from the shared issuer.
pub fn token(sub: &str, roles: &[&str], scopes: &[&str]) -> String {
    issuer().token(sub, roles, scopes)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
