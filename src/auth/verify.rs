//! Token checks, cheapest first: shape, header, claims.
//!
//! [`parse`] refuses tokens that are too long, that are not three non-empty
//! base64url segments, whose header is not a JSON object with a string
//! `alg` naming an asymmetric algorithm (so `none` in any casing and every
//! HMAC algorithm fail here), whose header carries `crit`, or whose claims
//! are not a JSON object. Header fields such as `jwk`, `jku`, `x5u` and
//! `x5c` are never read. The signature is checked by the caller with the
//! key the issuer's key set selects ([`super::jwks::KeySet::select`]);
//! only then are the claims checked by [`check_claims`] and mapped into a
//! [`Principal`] by [`principal`].
//!
//! Time rules (all with the issuer's leeway `L`, times in whole seconds):
//! a token is expired when `now >= exp + L`; not yet valid when
//! `now + L < nbf`; issued in the future when `now + L < iat`. `exp` is
//! required. Reasons never contain the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Principal;
use super::config::{ClaimsMapping, IssuerConfig};

/// Why a token is refused. The `Display` text is what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Longer than `max_token_bytes`.
    #[error("token too large")]
    TooLarge,
    /// Not three base64url segments, or a segment does not decode.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not on the issuer's allow-list (or is `none`/HMAC).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header names critical extensions.
    #[error("unsupported critical header parameters (crit)")]
    Critical,
    /// `iss` missing or not a configured issuer.
    #[error("issuer not accepted")]
    UnknownIssuer,
    /// The issuer currently has no keys (its JWKS could not be fetched).
    #[error("issuer keys unavailable")]
    NoKeys,
    /// No key with the token's `kid`.
    #[error("unknown key id")]
    UnknownKid,
    /// No `kid`, and the key set does not hold exactly one fitting key.
    #[error("token has no key id")]
    MissingKid,
    /// The algorithm does not fit the selected key.
    #[error("algorithm does not match the key")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// No `exp`.
    #[error("token has no expiry (exp)")]
    MissingExp,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// No `aud` although the issuer has audiences.
    #[error("token has no audience (aud)")]
    MissingAudience,
    /// `aud` names none of the issuer's audiences.
    #[error("audience not accepted")]
    Audience,
    /// Neither `sub` nor the client key claim.
    #[error("token has no subject (sub)")]
    MissingSubject,
    /// A claim has the wrong type.
    #[error("claim {0} has the wrong type")]
    BadClaim(String),
}

impl Reject {
    /// A short label from a fixed set, for metrics
    /// (`simgate_auth_failures_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Reject::TooLarge => "token_too_large",
            Reject::Malformed(_) | Reject::Critical => "malformed_token",
            Reject::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reject::UnknownIssuer => "unknown_issuer",
            Reject::NoKeys => "no_keys",
            Reject::UnknownKid | Reject::MissingKid => "unknown_key",
            Reject::KeyMismatch | Reject::BadSignature => "bad_signature",
            Reject::Expired => "expired",
            Reject::NotYetValid | Reject::IssuedInFuture => "not_yet_valid",
            Reject::MissingAudience | Reject::Audience => "audience",
            Reject::MissingExp | Reject::MissingSubject | Reject::BadClaim(_) => "claims",
        }
    }
}

/// A token taken apart, signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// `header.payload`, the signed bytes.
    pub message: &'a str,
    /// The signature segment (base64url).
    pub signature: &'a str,
    /// The header's algorithm.
    pub alg: Algorithm,
    /// The header's key id.
    pub kid: Option<String>,
    /// The claims (unverified until the signature is checked).
    pub claims: Map<String, Value>,
}

impl Parsed<'_> {
    /// The `iss` claim, if it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Takes a compact JWS apart. See the module docs for what is refused.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, Reject> {
    if token.len() > max_bytes {
        return Err(Reject::TooLarge);
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Reject::Malformed("not base64url"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed("expected three segments"));
    };
    if h.is_empty() || p.is_empty() {
        return Err(Reject::Malformed("empty segment"));
    }
    let header: RawHeader = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Reject::Malformed("bad header"))?;
    if header.crit.is_some() {
        return Err(Reject::Critical);
    }
    let alg =
        super::config::parse_algorithm(&header.alg).map_err(|_| Reject::AlgorithmNotAllowed)?;
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Reject::Malformed("bad claims"))?;
    // Checked after the header, so an unsigned `alg: none` token is named as such.
    if s.is_empty() {
        return Err(Reject::Malformed("empty signature"));
    }
    Ok(Parsed {
        message: &token[..h.len() + 1 + p.len()],
        signature: s,
        alg,
        kid: header.kid,
        claims,
    })
}

/// Checks the claims of a token whose signature verified; returns its `exp`.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: i64,
) -> Result<i64, Reject> {
    let leeway = i64::try_from(issuer.leeway).unwrap_or(0);
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(Reject::UnknownIssuer);
    }
    let exp = time(claims, "exp", f64::floor)?.ok_or(Reject::MissingExp)?;
    if now >= exp.saturating_add(leeway) {
        return Err(Reject::Expired);
    }
    if let Some(nbf) = time(claims, "nbf", f64::ceil)?
        && now.saturating_add(leeway) < nbf
    {
        return Err(Reject::NotYetValid);
    }
    if let Some(iat) = time(claims, "iat", f64::ceil)?
        && now.saturating_add(leeway) < iat
    {
        return Err(Reject::IssuedInFuture);
    }
    if !issuer.audiences.is_empty() {
        let accepted = |a: &str| issuer.audiences.iter().any(|x| x == a);
        match claims.get("aud") {
            None | Some(Value::Null) => return Err(Reject::MissingAudience),
            Some(Value::String(a)) if accepted(a) => {}
            Some(Value::String(_)) => return Err(Reject::Audience),
            Some(Value::Array(list)) => {
                let mut found = false;
                for a in list {
                    let a = a.as_str().ok_or_else(|| Reject::BadClaim("aud".into()))?;
                    found |= accepted(a);
                }
                if !found {
                    return Err(Reject::Audience);
                }
            }
            Some(_) => return Err(Reject::BadClaim("aud".into())),
        }
    }
    Ok(exp)
}

/// A NumericDate claim in whole seconds, rounded by `round`.
fn time(
    claims: &Map<String, Value>,
    name: &str,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, Reject> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(i64::try_from(u).unwrap_or(i64::MAX)))
            } else {
                match n.as_f64().map(round) {
                    // `as` saturates; NaN cannot come out of JSON.
                    Some(f) if f.is_finite() => Ok(Some(f as i64)),
                    _ => Err(Reject::BadClaim(name.into())),
                }
            }
        }
        Some(_) => Err(Reject::BadClaim(name.into())),
    }
}

/// The principal a verified token describes, by the issuer's mapping.
pub fn principal(claims: &Map<String, Value>, issuer: &IssuerConfig) -> Result<Principal, Reject> {
    let m: &ClaimsMapping = &issuer.claims;
    let string = |name: &str| -> Result<Option<String>, Reject> {
        match lookup(claims, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Ok(None),
            Some(_) => Err(Reject::BadClaim(name.into())),
        }
    };
    let sub = string("sub")?;
    let client = string(&m.client_key)?;
    let (subject, client_key) = match (sub, client) {
        (Some(s), Some(c)) => (s, c),
        (Some(s), None) => (s.clone(), s),
        (None, Some(c)) => (c.clone(), c),
        (None, None) => return Err(Reject::MissingSubject),
    };
    Ok(Principal {
        subject,
        client_key,
        issuer: issuer.issuer.clone(),
        roles: list(claims, &m.roles)?,
        scopes: list(claims, &m.scopes)?,
        token_id: string("jti")?,
    })
}

/// An array of strings, or one space-separated string; absent is empty.
fn list(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, Reject> {
    match lookup(claims, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Reject::BadClaim(name.into()))
            })
            .collect(),
        Some(_) => Err(Reject::BadClaim(name.into())),
    }
}

/// A claim by name; a name that is not a top-level claim is tried as a
/// dotted path into nested objects (`realm_access.roles`).
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::JwksLocation;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: &Value, claims: &Value) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    fn issuer(audiences: &[&str]) -> IssuerConfig {
        IssuerConfig {
            issuer: "https://idp".into(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            jwks: JwksLocation::File("x".into()),
            algorithms: vec![Algorithm::RS256],
            leeway: 30,
            claims: ClaimsMapping::default(),
            key: "auth.issuers[0]".into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn shape_is_checked_before_anything_else() {
        let ok = token(&json!({"alg": "RS256", "kid": "k"}), &json!({"iss": "x"}));
        let p = parse(&ok, 8192).unwrap();
        assert_eq!(
            (p.alg, p.kid.as_deref(), p.issuer()),
            (Algorithm::RS256, Some("k"), Some("x"))
        );
        assert_eq!(parse(&ok, 10).unwrap_err(), Reject::TooLarge);
        let unsigned = &ok[..ok.rfind('.').unwrap() + 1];
        assert_eq!(
            parse(unsigned, 8192).unwrap_err(),
            Reject::Malformed("empty signature")
        );
        for bad in [
            "a.b",
            "a.b.c.d",
            ".b.c",
            "a..c",
            "a.b.c=",
            "a b.c.d",
            "e30.e30.e30",
        ] {
            assert!(
                matches!(parse(bad, 8192), Err(Reject::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn none_hmac_unknown_and_crit_headers_are_refused() {
        for alg in ["none", "None", "NONE", "nOnE", "HS256", "rs256", "RSA"] {
            let t = token(&json!({"alg": alg}), &json!({}));
            assert_eq!(
                parse(&t, 8192).unwrap_err(),
                Reject::AlgorithmNotAllowed,
                "{alg}"
            );
        }
        let t = token(&json!({"alg": "RS256", "crit": ["exp"]}), &json!({}));
        assert_eq!(parse(&t, 8192).unwrap_err(), Reject::Critical);
        let dup = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","alg":"none"}"#),
            b64(&json!({}))
        );
        assert!(matches!(parse(&dup, 8192), Err(Reject::Malformed(_))));
        let t = token(&json!({"alg": "RS256"}), &json!([1]));
        assert!(matches!(parse(&t, 8192), Err(Reject::Malformed(_))));
    }

    #[test]
    fn time_edges_with_leeway() {
        let i = issuer(&[]);
        let c = |exp: i64| claims(json!({"iss": "https://idp", "exp": exp}));
        // exp = 1000, leeway 30: valid while now < 1030.
        assert_eq!(check_claims(&c(1000), &i, 1029), Ok(1000));
        assert_eq!(check_claims(&c(1000), &i, 1030), Err(Reject::Expired));
        let n = |nbf: i64| claims(json!({"iss": "https://idp", "exp": 5000, "nbf": nbf, "iat": 0}));
        // nbf = 1000, leeway 30: valid from now = 970.
        assert_eq!(check_claims(&n(1000), &i, 969), Err(Reject::NotYetValid));
        assert!(check_claims(&n(1000), &i, 970).is_ok());
        let iat = claims(json!({"iss": "https://idp", "exp": 5000, "iat": 1000}));
        assert_eq!(check_claims(&iat, &i, 969), Err(Reject::IssuedInFuture));
        assert!(check_claims(&iat, &i, 970).is_ok());
        // Fractional times are rounded against the token.
        let f = claims(json!({"iss": "https://idp", "exp": 1000.9}));
        assert_eq!(check_claims(&f, &i, 1030), Err(Reject::Expired));
        let missing = claims(json!({"iss": "https://idp"}));
        assert_eq!(check_claims(&missing, &i, 0), Err(Reject::MissingExp));
        let bad = claims(json!({"iss": "https://idp", "exp": "soon"}));
        assert_eq!(
            check_claims(&bad, &i, 0),
            Err(Reject::BadClaim("exp".into()))
        );
    }

    #[test]
    fn issuer_and_audience_are_exact() {
        let i = issuer(&["simgate"]);
        let c = |v: Value| {
            let mut m = claims(json!({"iss": "https://idp", "exp": 100}));
            if !v.is_null() {
                m.insert("aud".into(), v);
            }
            m
        };
        assert!(check_claims(&c(json!("simgate")), &i, 0).is_ok());
        assert!(check_claims(&c(json!(["other", "simgate"])), &i, 0).is_ok());
        assert_eq!(
            check_claims(&c(json!("Simgate")), &i, 0),
            Err(Reject::Audience)
        );
        assert_eq!(
            check_claims(&c(json!(["other"])), &i, 0),
            Err(Reject::Audience)
        );
        assert_eq!(
            check_claims(&c(Value::Null), &i, 0),
            Err(Reject::MissingAudience)
        );
        let wrong_iss = claims(json!({"iss": "https://idp/", "exp": 100, "aud": "simgate"}));
        assert_eq!(check_claims(&wrong_iss, &i, 0), Err(Reject::UnknownIssuer));
        // No audiences configured: aud is not checked.
        assert!(check_claims(&c(json!("anything")), &issuer(&[]), 0).is_ok());
    }

    #[test]
    fn principal_follows_the_mapping() {
        let i = issuer(&[]);
        let p = principal(
            &claims(json!({
                "sub": "u1", "client_id": "c1", "authorities": ["ORG_ADMIN", "X"],
                "scope": "a b", "jti": "j"
            })),
            &i,
        )
        .unwrap();
        assert_eq!(p.subject, "u1");
        assert_eq!(p.client_key, "c1");
        assert_eq!(p.issuer, "https://idp");
        assert_eq!(p.roles, ["ORG_ADMIN", "X"]);
        assert_eq!(p.scopes, ["a", "b"]);
        assert_eq!(p.token_id.as_deref(), Some("j"));
        let p = principal(&claims(json!({"sub": "u1", "scope": ["a"]})), &i).unwrap();
        assert_eq!(
            (p.client_key.as_str(), p.scopes.len(), p.roles.len()),
            ("u1", 1, 0)
        );
        let mut nested = issuer(&[]);
        nested.claims.roles = "realm_access.roles".into();
        let p = principal(
            &claims(json!({"sub": "u", "realm_access": {"roles": ["R"]}})),
            &nested,
        )
        .unwrap();
        assert_eq!(p.roles, ["R"]);
        assert_eq!(
            principal(&claims(json!({"sub": "u", "authorities": [1]})), &i),
            Err(Reject::BadClaim("authorities".into()))
        );
        assert_eq!(
            principal(&claims(json!({})), &i),
            Err(Reject::MissingSubject)
        );
    }
}
