//! Key sets: a JWKS document parsed into the public keys tokens may be
//! verified with, and key selection for a token.
//!
//! Only signature keys of these types are kept: RSA (at least 2048 bits),
//! EC P-256 and P-384, and Ed25519. Symmetric (`oct`) keys, encryption keys
//! (`"use": "enc"`), keys whose `key_ops` exclude `verify`, and keys that do
//! not parse are skipped with a warning, so one odd key does not cost the
//! others. Selection is by `kid` only; a token's own `jwk`, `jku`, `x5u` and
//! `x5c` headers are never looked at. The token's algorithm must fit the
//! selected key's type (and curve, and the key's own `alg` when it has one).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::verify::Reject;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The type of a public key, which decides the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA: RS256/384/512 and PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyType {
    /// Whether a key of this type verifies `alg`.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::P256 => alg == ES256,
            KeyType::P384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }
}

/// One public key from a JWKS.
pub struct VerifyingKey {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// Its type.
    pub key_type: KeyType,
    /// Its own `alg`, if it names one.
    pub alg: Option<Algorithm>,
    /// Identifies the key material (a hash of it), to notice replaced keys.
    pub fingerprint: [u8; 32],
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Checks `signature` (base64url) over `message` with `alg`.
    pub fn verify(&self, message: &[u8], signature: &str, alg: Algorithm) -> Result<(), Reject> {
        if !self.fits(alg) {
            return Err(Reject::KeyMismatch);
        }
        match jsonwebtoken::crypto::verify(signature, message, &self.key, alg) {
            Ok(true) => Ok(()),
            _ => Err(Reject::BadSignature),
        }
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    skipped: Vec<String>,
    /// See [`KeySet::fingerprint`].
    fingerprint: [u8; 32],
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Fails only when the
    /// document itself is malformed; unusable keys are skipped (see
    /// [`KeySet::skipped`]).
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut set = KeySet::default();
        for (i, value) in raw.keys.into_iter().enumerate() {
            match key(value) {
                Ok(k) => {
                    if k.kid.is_some() && set.keys.iter().any(|o| o.kid == k.kid) {
                        set.skipped
                            .push(format!("key {i}: duplicate kid {:?}", k.kid));
                    } else {
                        set.keys.push(Arc::new(k));
                    }
                }
                Err(why) => set.skipped.push(format!("key {i}: {why}")),
            }
        }
        let mut h = Sha256::new();
        for k in &set.keys {
            h.update(k.kid.as_deref().unwrap_or("").as_bytes());
            h.update([0]);
            h.update(k.fingerprint);
        }
        set.fingerprint = h.finalize().into();
        Ok(set)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no usable keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Why keys were skipped, one line each.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Whether both sets hold the same keys.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.kid == b.kid && a.fingerprint == b.fingerprint)
    }

    /// Identifies the whole set (its keys' `kid`s and material, in order):
    /// equal for sets with [`KeySet::same_keys`], so a verified token can be
    /// tied to the key set it was verified against.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Whether a key with this fingerprint is in the set.
    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }

    /// The key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key a token with `kid` and `alg` is verified with. Without a
    /// `kid`, the set must hold exactly one key fitting `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Arc<VerifyingKey>, Reject> {
        let key = match kid {
            Some(kid) => self.get(kid).ok_or(Reject::UnknownKid)?,
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => k,
                    _ => return Err(Reject::MissingKid),
                }
            }
        };
        if key.fits(alg) {
            Ok(key)
        } else {
            Err(Reject::KeyMismatch)
        }
    }
}

fn key(value: serde_json::Value) -> Result<VerifyingKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let c = &jwk.common;
    if matches!(
        c.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err("not a signature key (use)".into());
    }
    if let Some(ops) = &c.key_operations
        && !ops.iter().any(|o| matches!(o, KeyOperations::Verify))
    {
        return Err("key_ops does not include verify".into());
    }
    let (key_type, material) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_err(|_| "RSA modulus is not base64url")?;
            let bits = significant_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key of {bits} bits (at least {MIN_RSA_BITS})"));
            }
            (KeyType::Rsa, format!("RSA|{}|{}", p.n, p.e))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let t = match p.curve {
                EllipticCurve::P256 => KeyType::P256,
                EllipticCurve::P384 => KeyType::P384,
                _ => return Err("unsupported EC curve".into()),
            };
            (t, format!("EC|{:?}|{}|{}", p.curve, p.x, p.y))
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (KeyType::Ed25519, format!("OKP|{}", p.x))
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are never used".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = match c.key_algorithm {
        None => None,
        Some(a) => {
            let alg = super::config::parse_algorithm(&format!("{a:?}"))
                .map_err(|why| format!("alg: {why}"))?;
            if !key_type.fits(alg) {
                return Err(format!("alg {a:?} does not fit the key type"));
            }
            Some(alg)
        }
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(VerifyingKey {
        kid: c.key_id.clone(),
        key_type,
        alg,
        fingerprint: Sha256::digest(material.as_bytes()).into(),
        key: decoding,
    })
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let mut bytes = big_endian.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * bytes.count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwk(kid: &str) -> serde_json::Value {
        crate::auth::keys::generate_rsa(kid).unwrap().jwk
    }

    #[test]
    fn keeps_usable_keys_and_skips_the_rest() {
        let ec = crate::auth::keys::generate_es256("ec-1").unwrap().jwk;
        let doc = json!({"keys": [
            rsa_jwk("r1"),
            ec,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "weird"},
            rsa_jwk("r1"),
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 2, "{:?}", set.skipped());
        assert_eq!(set.skipped().len(), 5);
        assert_eq!(set.get("r1").unwrap().key_type, KeyType::Rsa);
        assert_eq!(set.get("ec-1").unwrap().key_type, KeyType::P256);
        assert!(set.get("hmac").is_none());
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn selection_is_by_kid_and_algorithm_must_fit() {
        let mut jwk = rsa_jwk("r1");
        jwk.as_object_mut().unwrap().remove("alg");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert!(set.select(Some("r1"), Algorithm::RS256).is_ok());
        assert!(set.select(Some("r1"), Algorithm::PS256).is_ok());
        assert_eq!(
            set.select(Some("r1"), Algorithm::ES256).unwrap_err(),
            Reject::KeyMismatch
        );
        assert_eq!(
            set.select(Some("r2"), Algorithm::RS256).unwrap_err(),
            Reject::UnknownKid
        );
        // Without a kid, the one fitting key.
        assert!(set.select(None, Algorithm::RS256).is_ok());
        assert_eq!(
            set.select(None, Algorithm::ES256).unwrap_err(),
            Reject::MissingKid
        );
    }

    #[test]
    fn a_keys_own_alg_is_binding() {
        let mut jwk = rsa_jwk("r1");
        jwk["alg"] = json!("RS256");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert_eq!(
            set.select(Some("r1"), Algorithm::PS256).unwrap_err(),
            Reject::KeyMismatch
        );
    }

    #[test]
    fn same_keys_compares_material() {
        let a = json!({"keys": [rsa_jwk("r1")]}).to_string();
        let b = json!({"keys": [rsa_jwk("r1")]}).to_string();
        let (a1, a2, b1) = (
            KeySet::parse(a.as_bytes()).unwrap(),
            KeySet::parse(a.as_bytes()).unwrap(),
            KeySet::parse(b.as_bytes()).unwrap(),
        );
        assert!(a1.same_keys(&a2));
        assert!(!a1.same_keys(&b1));
    }
}
