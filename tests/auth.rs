//! Authentication through a real gateway on loopback: valid tokens pass,
//! every known class of bad token is refused with 401, the RFC 6750
//! challenge and the vendor's `{"error": …}` body, and nothing reaches the
//! upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::gateway::{TestGateway, auth_section, standard};
use support::http::{Reply, get, send};
use support::tokens::{self, AUD, ISS, Issuer, KID, now};
use support::upstream::Recording;

/// The standard gateway config (test issuer, OpenAPI documents, policy),
/// without the per-peer failed-authentication limiter (these tests send
/// many bad tokens from one address on purpose).
fn body(upstream: &Recording) -> String {
    format!(
        "{}\n[rate_limit.auth_failures]\nenabled = false\n",
        standard(&upstream.url())
    )
}

/// An operation every test token (ORG_ADMIN, sp:scopes:all) may call.
const LIST: &str = "/beta/sim-integrations";

/// A valid token the policy lets through.
fn admin_token() -> String {
    tokens::token("svc-1", &["ORG_ADMIN"], &["sp:scopes:all"])
}

async fn gateway() -> (Recording, TestGateway) {
    let up = Recording::start().await;
    let gw = TestGateway::start(&body(&up)).await;
    (up, gw)
}

/// Valid claims from the test issuer, `extra` merged in (`null` removes).
fn claims(extra: Value) -> Value {
    let now = now();
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "svc-1", "client_id": "svc-1",
        "authorities": ["ORG_ADMIN"], "scope": "sp:scopes:all",
        "iat": now, "nbf": now, "exp": now + 600, "jti": "jti-1",
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Asserts a 401 with `reason`, the challenge and body, no token echo.
#[track_caller]
fn assert_refused(res: &Reply, reason: &str, token: &str) {
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(
        res.header("www-authenticate"),
        format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
    );
    assert_eq!(res.header("content-type"), "application/json");
    assert_eq!(res.json(), json!({ "error": reason }));
    if token.len() > 8 {
        assert!(!res.text().contains(token));
        assert!(!res.header("www-authenticate").contains(token));
    }
}

/// Sends each `(token, reason)` and checks the refusal; the upstream
/// must have received nothing.
async fn refuse_all(cases: &[(String, &str)]) {
    let (up, gw) = gateway().await;
    for (token, reason) in cases {
        let res = get(&gw.url(LIST), Some(token)).await;
        assert_refused(&res, reason, token);
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn valid_token_passes_and_is_stripped_upstream() {
    let (up, gw) = gateway().await;
    let token = admin_token();
    let res = get(&gw.url(LIST), Some(&token)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    // Again, from the cache.
    let res = get(&gw.url(LIST), Some(&token)).await;
    assert_eq!(res.status, 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization"))
    );
    assert_eq!(get(&gw.url("/readyz"), None).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn forward_sends_the_token_upstream() {
    let up = Recording::start().await;
    let text = body(&up).replace("[upstream]\n", "[upstream]\nauthorization = \"forward\"\n");
    let gw = TestGateway::start(&text).await;
    let token = admin_token();
    assert_eq!(get(&gw.url(LIST), Some(&token)).await.status, 200);
    assert_eq!(
        up.seen()[0].headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    gw.stop().await;
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let (up, gw) = gateway().await;
    let token = admin_token();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let auth = format!("{scheme} {token}");
        let res = send(Method::GET, &gw.url(LIST), &[("authorization", &auth)], "").await;
        assert_eq!(res.status, 200, "{scheme}");
    }
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn missing_or_misplaced_credentials_get_a_bare_challenge() {
    let (up, gw) = gateway().await;
    let token = admin_token();
    for (url, headers) in [
        (gw.url(LIST), vec![]),
        (gw.url(&format!("{LIST}?access_token={token}")), vec![]),
        (gw.url(LIST), vec![("authorization", "Basic dXNlcjpwYXNz")]),
    ] {
        let res = send(Method::GET, &url, &headers, "").await;
        assert_eq!(res.status, 401);
        assert_eq!(res.header("www-authenticate"), "Bearer");
        assert!(res.json()["error"].is_string());
        assert!(!res.text().contains(&token));
    }
    let auth = format!("Bearer {token}");
    let res = send(
        Method::GET,
        &gw.url(LIST),
        &[("authorization", &auth), ("authorization", &auth)],
        "",
    )
    .await;
    assert_refused(&res, "more than one Authorization header", &token);
    let res = send(
        Method::GET,
        &gw.url(LIST),
        &[("authorization", "Bearer ")],
        "",
    )
    .await;
    assert_refused(&res, "empty bearer token", "");
    // Mutations are refused the same way.
    let res = send(Method::POST, &gw.url(LIST), &[], "{}").await;
    assert_eq!(res.status, 401);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn alg_none_in_any_casing() {
    let mut cases = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": KID})),
            b64(&claims(json!({})))
        );
        cases.push((unsigned.clone(), "algorithm not allowed"));
        // With the signature of a real token glued on.
        let real = tokens::token("svc-1", &[], &[]);
        let sig = real.rsplit('.').next().unwrap();
        cases.push((format!("{unsigned}{sig}"), "algorithm not allowed"));
    }
    refuse_all(&cases).await;
}

#[tokio::test]
async fn algorithm_confusion() {
    let issuer = tokens::issuer();
    // HS256 with the issuer's RSA public key (as PEM-ish text and as the
    // raw JWK) for the HMAC secret.
    let jwk: Jwk = serde_json::from_value(issuer.jwk.clone()).unwrap();
    let mut cases = Vec::new();
    for secret in [
        issuer.jwk.to_string().into_bytes(),
        serde_json::to_vec(&jwk).unwrap(),
        URL_SAFE_NO_PAD
            .decode(issuer.jwk["n"].as_str().unwrap())
            .unwrap(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(KID.into());
        let t = jsonwebtoken::encode(&h, &claims(json!({})), &EncodingKey::from_secret(&secret))
            .unwrap();
        cases.push((t, "algorithm not allowed"));
    }
    // ES256 signed by an EC key but naming the RSA key's kid.
    let ec = Issuer::generate_es256("attacker-ec");
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(KID.into());
    cases.push((
        ec.sign_with(&h, &claims(json!({}))),
        "algorithm does not match the key",
    ));
    // Algorithms the key could do but the allow-list (RS256, ES256) does not
    // name. (A key's own `alg` binding is unit-tested in auth::jwks.)
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        let mut h = issuer.header();
        h.alg = alg;
        cases.push((
            issuer.sign_with(&h, &claims(json!({}))),
            "algorithm not allowed",
        ));
    }
    refuse_all(&cases).await;
}

#[tokio::test]
async fn wrong_forged_and_embedded_keys() {
    let attacker = Issuer::generate("attacker");
    let c = claims(json!({}));
    let mut cases = Vec::new();
    // Signed by another key under the trusted kid.
    let mut h = attacker.header();
    h.kid = Some(KID.into());
    cases.push((attacker.sign_with(&h, &c), "invalid signature"));
    // The attacker's key embedded in the header: ignored.
    let jwk: Jwk = serde_json::from_value(attacker.jwk.clone()).unwrap();
    let mut h = attacker.header();
    h.jwk = Some(jwk.clone());
    cases.push((attacker.sign_with(&h, &c), "unknown key id"));
    h.kid = Some(KID.into());
    cases.push((attacker.sign_with(&h, &c), "invalid signature"));
    h.kid = None;
    cases.push((attacker.sign_with(&h, &c), "invalid signature"));
    // Key URLs and certificates in the header: never fetched, never used.
    let mut h = attacker.header();
    h.jku = Some("http://127.0.0.1:9/jwks.json".into());
    h.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    h.x5c = Some(vec!["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".into()]);
    cases.push((attacker.sign_with(&h, &c), "unknown key id"));
    h.kid = Some(KID.into());
    cases.push((attacker.sign_with(&h, &c), "invalid signature"));
    // An unknown kid.
    let mut h = tokens::issuer().header();
    h.kid = Some("no-such-key".into());
    cases.push((tokens::issuer().sign_with(&h, &c), "unknown key id"));
    refuse_all(&cases).await;
}

#[tokio::test]
async fn time_issuer_and_audience_claims() {
    let now = now() as i64;
    let sign = |extra: Value| tokens::issuer().sign(&claims(extra));
    refuse_all(&[
        (sign(json!({"exp": now - 3600})), "token expired"),
        (sign(json!({"exp": null})), "token has no expiry (exp)"),
        (
            sign(json!({"exp": "tomorrow"})),
            "claim exp has the wrong type",
        ),
        (sign(json!({"nbf": now + 3600})), "token not yet valid"),
        (
            sign(json!({"iat": now + 3600})),
            "token issued in the future",
        ),
        (
            sign(json!({"iss": "https://evil.example"})),
            "issuer not accepted",
        ),
        (
            sign(json!({"iss": format!("{ISS}/")})),
            "issuer not accepted",
        ),
        (sign(json!({"iss": null})), "issuer not accepted"),
        (sign(json!({"aud": "other"})), "audience not accepted"),
        (
            sign(json!({"aud": ["other", "SIMGATE"]})),
            "audience not accepted",
        ),
        (sign(json!({"aud": null})), "token has no audience (aud)"),
        (
            sign(json!({"sub": null, "client_id": null})),
            "token has no subject (sub)",
        ),
    ])
    .await;
}

#[tokio::test]
async fn leeway_edges() {
    // leeway_seconds = 30; margins of 10 s keep these independent of the
    // second the request lands in (exact edges: unit tests with a manual clock).
    let (up, gw) = gateway().await;
    let now = now() as i64;
    let sign = |extra: Value| tokens::issuer().sign(&claims(extra));
    for (extra, ok) in [
        (json!({"exp": now - 20}), true),
        (json!({"exp": now - 40}), false),
        (json!({"nbf": now + 20}), true),
        (json!({"nbf": now + 40}), false),
        (json!({"iat": now + 20}), true),
        (json!({"iat": now + 40}), false),
    ] {
        let res = get(&gw.url(LIST), Some(&sign(extra.clone()))).await;
        assert_eq!(res.status == 200, ok, "{extra}: {}", res.text());
    }
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn malformed_oversized_and_tampered_tokens() {
    let issuer = tokens::issuer();
    let good = issuer.sign(&claims(json!({})));
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    // Flip one character of the signature.
    let mut sig = s.to_owned().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let sig = String::from_utf8(sig).unwrap();
    // Change a claim, keep the signature.
    let forged_claims = b64(&claims(json!({"authorities": ["ORG_ADMIN", "SUPER"]})));
    let padding = "x".repeat(9000);
    refuse_all(&[
        ("abc".into(), "malformed token: expected three segments"),
        (
            format!("{h}.{p}"),
            "malformed token: expected three segments",
        ),
        (
            format!("{h}.{p}.{s}.{s}"),
            "malformed token: expected three segments",
        ),
        (format!("{h}.{p}."), "malformed token: empty signature"),
        (format!(".{p}.{s}"), "malformed token: empty segment"),
        (format!("{h}.{p}.{s}=="), "malformed token: not base64url"),
        (format!("{h}.{p}.{s}%"), "malformed token: not base64url"),
        (
            format!("{}.{p}.{s}", b64(&json!("RS256"))),
            "malformed token: bad header",
        ),
        (format!("e30.{p}.{s}"), "malformed token: bad header"),
        (
            format!("{h}.bm90IGpzb24.{s}"),
            "malformed token: bad claims",
        ),
        (format!("{h}.{p}.{sig}"), "invalid signature"),
        (
            format!("{h}.{p}.{}", &s[..s.len() - 4]),
            "invalid signature",
        ),
        (format!("{h}.{forged_claims}.{s}"), "invalid signature"),
        (
            issuer.sign(&claims(json!({"pad": padding}))),
            "token too large",
        ),
    ])
    .await;
}

#[tokio::test]
async fn crit_header_is_refused() {
    let issuer = tokens::issuer();
    let mut h = issuer.header();
    h.crit = Some(vec!["exp".into()]);
    let mut unknown = issuer.header();
    unknown.crit = Some(vec!["http://example.com/ext".into()]);
    unknown.extras.insert("http://example.com/ext", true);
    refuse_all(&[
        (
            issuer.sign_with(&h, &claims(json!({}))),
            "unsupported critical header parameters (crit)",
        ),
        (
            issuer.sign_with(&unknown, &claims(json!({}))),
            "unsupported critical header parameters (crit)",
        ),
    ])
    .await;
}

#[tokio::test]
async fn es256_issuer_and_multiple_issuers() {
    let up = Recording::start().await;
    let keys_dir = tempfile::tempdir().unwrap();
    let ec = Issuer::generate_es256("ec-1");
    let ec_jwks = keys_dir.path().join("ec.json");
    std::fs::write(&ec_jwks, ec.jwks().to_string()).unwrap();
    let text = format!(
        r#"{}
[[auth.issuers]]
issuer = "https://second.example"
audiences = ["simgate"]
jwks_file = "{}"
algorithms = ["ES256"]
leeway_seconds = 0
[auth.issuers.claims]
roles = "groups"
"#,
        body(&up),
        ec_jwks.display()
    );
    let gw = TestGateway::start(&text).await;
    let c = json!({"iss": "https://second.example", "aud": "simgate", "sub": "ec-user",
        "groups": ["SIM_READER"], "scope": "idn:service-desk-integration:read",
        "exp": now() + 60});
    let res = get(&gw.url(LIST), Some(&ec.sign(&c))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    // The first issuer's token still works; the EC key does not sign for it.
    let first = admin_token();
    assert_eq!(get(&gw.url(LIST), Some(&first)).await.status, 200);
    let mut forged = c.clone();
    forged["iss"] = json!(ISS);
    let res = get(&gw.url(LIST), Some(&ec.sign(&forged))).await;
    assert_eq!(res.status, 401);
    assert_eq!(up.count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let up = Recording::start().await;
    let base = format!("[upstream]\nurl = \"{}\"\n", up.url());
    let err = TestGateway::try_start_with(&base, "").await.err().unwrap();
    assert!(err.contains("[auth] needs at least one issuer"), "{err}");
    let err = TestGateway::try_start_with(
        &format!(
            "{base}{}",
            auth_section().replace("\"RS256\", \"ES256\"", "\"none\"")
        ),
        "",
    )
    .await
    .err()
    .unwrap();
    assert!(err.contains("auth.issuers[0].algorithms"), "{err}");
    let err = TestGateway::try_start_with(
        &format!(
            "{base}{}",
            auth_section().replace("jwks.json", "missing.json")
        ),
        "",
    )
    .await
    .err()
    .unwrap();
    assert!(err.contains("auth.issuers[0].jwks_file"), "{err}");
    // Passthrough needs no issuers.
    let gw = TestGateway::passthrough(&up.url(), "").await;
    assert_eq!(get(&gw.url(LIST), None).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn token_command_and_demo_tokens_are_accepted() {
    use simgate::demo::{DEMO_AUDIENCE, DEMO_ISSUER, DEMO_KID};
    let keys = tempfile::tempdir().unwrap();
    let files = simgate::demo::write_keys_and_tokens(keys.path()).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["ORG_ADMIN.jwt", "SERVICE_DESK_ADMIN.jwt", "SIM_READER.jwt"]
    );
    let key = keys.path().join("signing-key.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["token", "--key"])
        .arg(&key)
        .args([
            "--kid",
            DEMO_KID,
            "--sub",
            "cli-user",
            "--roles",
            "SIM_READER",
        ])
        .args([
            "--scopes",
            "idn:service-desk-integration:read",
            "--ttl",
            "120",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let up = Recording::start().await;
    let text = format!(
        "{}\n[[auth.issuers]]\nissuer = \"{DEMO_ISSUER}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
         jwks_file = \"{}\"\nalgorithms = [\"RS256\"]\n",
        body(&up),
        keys.path().join("jwks.json").display()
    );
    let gw = TestGateway::start(&text).await;
    for token in files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .chain([cli_token])
    {
        let res = get(&gw.url(LIST), Some(token.trim())).await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    assert_eq!(up.count(), 4);
    gw.stop().await;
    // Every demo run makes a fresh key (ephemeral keys).
    let first_key = std::fs::read_to_string(keys.path().join("signing-key.pem")).unwrap();
    simgate::demo::write_keys_and_tokens(keys.path()).unwrap();
    let second_key = std::fs::read_to_string(keys.path().join("signing-key.pem")).unwrap();
    assert_ne!(first_key, second_key);
}
