//! Fuzzes JWT parsing: the compact-JWS split and the header and claims
//! JSON, then the claim checks and the principal mapping a verified token
//! would get.
//!
//! Input: one selector byte, then either a whole token (selector bit 0
//! clear) or a header and a claims document separated by the first NUL byte
//! (bit 0 set), each base64url-encoded into a token with a dummy signature.
//! Properties checked on every input:
//! - nothing panics;
//! - a parsed token is exactly `message.signature`, and `iss` is read from
//!   its claims;
//! - the claim checks and the principal mapping never panic, and an
//!   accepted token has its issuer and a subject.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use simgate::auth::config::{ClaimsMapping, IssuerConfig, JwksLocation};
use simgate::auth::verify;

const MAX_TOKEN: usize = 8192;
const NOW: i64 = 1_700_000_000;

fn issuer(audiences: bool) -> IssuerConfig {
    IssuerConfig {
        issuer: "https://idp.fuzz".into(),
        audiences: if audiences { vec!["simgate".into()] } else { vec![] },
        jwks: JwksLocation::File("jwks.json".into()),
        algorithms: vec![jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256],
        leeway: 30,
        claims: ClaimsMapping::default(),
        key: "auth.issuers[0]".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let built;
    let token: &str = if sel & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(_) => return,
        }
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"RS256","kid":"k"}"#[..], rest),
        };
        built = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        &built
    };
    let Ok(parsed) = verify::parse(token, MAX_TOKEN) else {
        return;
    };
    assert_eq!(format!("{}.{}", parsed.message, parsed.signature), token);
    assert_eq!(
        parsed.issuer(),
        parsed.claims.get("iss").and_then(|v| v.as_str())
    );
    let issuer = issuer(sel & 2 != 0);
    if verify::check_claims(&parsed.claims, &issuer, NOW).is_ok() {
        assert_eq!(parsed.issuer(), Some(issuer.issuer.as_str()));
    }
    if let Ok(p) = verify::principal(&parsed.claims, &issuer) {
        assert!(!p.subject.is_empty() && !p.client_key.is_empty());
    }
});
