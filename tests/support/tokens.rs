//! Real signed tokens: a test issuer with a freshly generated RSA key, its
//! JWKS, and token minting.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The issuer every test gateway trusts.
pub const ISS: &str = "https://idp.simgate.test";
/// The audience every test gateway accepts.
pub const AUD: &str = "simgate";
/// The key id of the test issuer's key.
pub const KID: &str = "test-rsa-1";

/// A signing key with its public JWK.
pub struct Issuer {
    pub kid: String,
    pub pkcs8_pem: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("kid", &self.kid).finish()
    }
}

impl Issuer {
    /// A fresh RSA-2048 key under `kid`.
    pub fn generate(kid: &str) -> Issuer {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
        let der = pair.as_der().expect("pkcs8");
        let pkcs8_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let encoding = EncodingKey::from_rsa_pem(pkcs8_pem.as_bytes()).expect("encoding key");
        Issuer {
            kid: kid.to_owned(),
            pkcs8_pem,
            encoding,
            jwk,
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

    /// Signs arbitrary claims with RS256 under this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        self.sign_with(&header, claims)
    }

    /// Signs arbitrary claims with an arbitrary header.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
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
