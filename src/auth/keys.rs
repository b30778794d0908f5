//! Signing keys for tests and the demo: generation, loading from PEM, and
//! the public half as a JWK.
//!
//! simgate itself only verifies tokens; these keys exist so that
//! `simgate demo`, `simgate token` and the tests can mint real tokens that
//! the gateway verifies exactly as it would an IdP's.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// Why a key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// A private signing key with its `kid`, algorithm and public JWK.
#[derive(Clone)]
pub struct SigningKey {
    /// The key id tokens name in their header.
    pub kid: String,
    /// RS256 (RSA keys) or ES256 (P-256 keys).
    pub alg: Algorithm,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub pkcs8_pem: String,
    /// The public key as a JWK (with `kid`, `alg`, `use: sig`).
    pub jwk: Value,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A fresh RSA-2048 key for RS256 under `kid`.
pub fn generate_rsa(kid: &str) -> Result<SigningKey, KeyError> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| err("RSA key generation"))?;
    let der = pair.as_der().map_err(|_| err("RSA key encoding"))?;
    rsa(kid, &pair, der.as_ref())
}

/// A fresh P-256 key for ES256 under `kid`.
pub fn generate_es256(kid: &str) -> Result<SigningKey, KeyError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| err("EC key generation"))?;
    let der = pair.to_pkcs8v1().map_err(|_| err("EC key encoding"))?;
    ec(kid, &pair, der.as_ref())
}

/// Loads a PKCS#8 PEM private key (RSA or P-256) under `kid`.
pub fn from_pem(pem_text: &str, kid: &str) -> Result<SigningKey, KeyError> {
    let doc = pem::parse(pem_text).map_err(|e| err(&format!("not a PEM key: {e}")))?;
    if doc.tag() != "PRIVATE KEY" {
        return Err(err(&format!(
            "expected a PKCS#8 `PRIVATE KEY`, found `{}`",
            doc.tag()
        )));
    }
    let der = doc.contents();
    if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
        return rsa(kid, &pair, der);
    }
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        return ec(kid, &pair, der);
    }
    Err(err("not an RSA or P-256 private key"))
}

impl SigningKey {
    /// `{"keys": [this key's public JWK]}`.
    pub fn jwks(&self) -> Value {
        jwks(std::slice::from_ref(self))
    }

    /// The key for signing.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// A JWKS document with the public halves of `keys`.
pub fn jwks(keys: &[SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

fn rsa(kid: &str, pair: &RsaKeyPair, pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    finish(kid, Algorithm::RS256, pkcs8, jwk)
}

fn ec(kid: &str, pair: &EcdsaKeyPair, pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(err("unexpected EC public key encoding"));
    }
    let jwk = json!({
        "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    finish(kid, Algorithm::ES256, pkcs8, jwk)
}

fn finish(kid: &str, alg: Algorithm, pkcs8: &[u8], jwk: Value) -> Result<SigningKey, KeyError> {
    let pkcs8_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec()));
    let encoding = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pkcs8_pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pkcs8_pem.as_bytes()),
    }
    .map_err(|e| err(&format!("unusable signing key: {e}")))?;
    Ok(SigningKey {
        kid: kid.to_owned(),
        alg,
        pkcs8_pem,
        jwk,
        encoding,
    })
}

fn err(what: &str) -> KeyError {
    KeyError(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem() {
        for key in [generate_rsa("r").unwrap(), generate_es256("e").unwrap()] {
            let again = from_pem(&key.pkcs8_pem, &key.kid).unwrap();
            assert_eq!(again.jwk, key.jwk);
            assert_eq!(again.alg, key.alg);
            assert_eq!(key.jwks()["keys"][0]["kid"], key.kid.as_str());
        }
        assert!(from_pem("junk", "k").is_err());
    }

    #[test]
    fn reloaded_key_signs_verifiably() {
        for key in [generate_rsa("r").unwrap(), generate_es256("e").unwrap()] {
            let again = from_pem(&key.pkcs8_pem, &key.kid).unwrap();
            let set = crate::auth::jwks::KeySet::parse(key.jwks().to_string().as_bytes()).unwrap();
            for k in [&key, &again] {
                let t = crate::auth::mint::mint(k, &serde_json::json!({"a": 1})).unwrap();
                let (msg, sig) = t.rsplit_once('.').unwrap();
                let vk = set.get(&key.kid).unwrap();
                assert!(
                    vk.verify(msg.as_bytes(), sig, key.alg).is_ok(),
                    "{:?}",
                    k.alg
                );
            }
        }
    }
}
