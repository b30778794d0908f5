//! Any OpenAPI API behind a real gateway: an OpenAPI 3.1 fixture document
//! (tests/fixtures/openapi/streams.v31.yaml) with parameters of each style,
//! text inside path segments, form, multipart and other non-JSON bodies, an
//! operation without operationId, multi-requirement security, HEAD,
//! OPTIONS and CORS. Every refusal is checked for what the upstream did not
//! receive; every pass for what it did.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::Method;
use support::gateway::{TestGateway, auth_section};
use support::http::{Reply, send};
use support::tokens::token;
use support::upstream::Recording;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openapi");
const ORIGIN: &str = "https://tools.example.com";

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[upstream]
url = "{upstream}"
[upstream.headers]
X-Upstream-Key = "from-the-gateway"
{auth}
[api]
documents = [ {{ path = "{FIXTURES}/streams.v31.yaml", mount = "/api" }} ]

[authz]
policy = "{FIXTURES}/streams.policy.toml"

[validation]
skip = ["putNote"]
{extra}

[cors]
allowed_origins = ["{ORIGIN}"]
allowed_headers = ["authorization", "content-type", "x-tenant"]

[rate_limit.reads]
requests_per_second = 100000
burst = 100000

[rate_limit.mutations]
requests_per_second = 100000
burst = 100000
"#,
        auth = auth_section()
    )
}

async fn gateway(extra: &str) -> (Recording, TestGateway) {
    let up = Recording::start().await;
    let gw = TestGateway::start(&config(&up.url(), extra)).await;
    (up, gw)
}

fn streamer() -> String {
    token(
        "streamer",
        &["STREAMER"],
        &["streams:read", "streams:write", "streams:admin"],
    )
}

async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        all.push(("authorization", a));
    }
    send(method, &gw.url(path), &all, body).await
}

fn texts(reply: &Reply) -> Vec<String> {
    reply.json()["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {}", reply.text()))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// A 400 ErrorResponseDto whose messages are exactly `want` (any order).
fn assert_400(reply: &Reply, want: &[&str]) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["trackingId"], reply.header("x-request-id"));
    let mut got = texts(reply);
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn query_header_and_path_parameters_are_validated() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let tenant = [("x-tenant", "acme")];
    let bad = [
        (
            "/api/streams?status=bogus",
            &tenant[..],
            vec![r#"query.status: must be one of "live", "ended""#],
        ),
        (
            "/api/streams?limit=abc&limit=2",
            &tenant[..],
            vec!["query.limit: given more than once"],
        ),
        (
            "/api/streams?limit=abc",
            &tenant[..],
            vec!["query.limit: expected integer, got string"],
        ),
        (
            "/api/streams?limit=0&ids=1,x",
            &tenant[..],
            vec![
                "query.limit: less than 1",
                "query.ids/1: expected integer, got string",
            ],
        ),
        (
            "/api/streams?tags=a&tags=waytoolong",
            &tenant[..],
            vec!["query.tags/1: longer than 8 characters"],
        ),
        (
            "/api/streams?filter[minViewers]=many&filter[colour]=red",
            &tenant[..],
            vec![
                "query.filter/minViewers: expected integer, got string",
                r#"query.filter: unknown fields "colour""#,
            ],
        ),
        (
            "/api/streams",
            &[][..],
            vec!["header.X-Tenant: required, missing"],
        ),
        (
            "/api/streams",
            &[("x-tenant", "ACME")][..],
            vec!["header.X-Tenant: does not match ^[a-z]+$"],
        ),
        (
            "/api/streams/abc",
            &[][..],
            vec!["path.id: expected integer, got string"],
        ),
        ("/api/streams/0", &[][..], vec!["path.id: less than 1"]),
        (
            "/api/streams?status=%FF",
            &tenant[..],
            vec!["query: status: invalid percent-encoding or not UTF-8"],
        ),
    ];
    for (path, headers, want) in bad {
        let r = call(&gw, Method::GET, path, Some(&t), headers, "").await;
        assert_eq!(r.json()["detailCode"], "400.0 Bad Request", "{path}");
        assert_400(&r, &want);
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");

    // Valid values pass, the query exactly as sent; unknown parameters are
    // allowed by default; the required header the gateway sets upstream
    // need not come from the client.
    let query = "/api/streams?status=live&limit=10&tags=a&tags=b&ids=1,2&filter[owner]=x&filter[minViewers]=3&utm=1";
    let r = call(&gw, Method::GET, query, Some(&t), &tenant, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, Method::GET, "/api/streams/42", Some(&t), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri.to_string(), query);
    assert_eq!(seen[0].headers["x-tenant"], "acme");
    assert_eq!(seen[0].headers["x-upstream-key"], "from-the-gateway");
    assert_eq!(seen[1].uri.path(), "/api/streams/42");
    gw.stop().await;
}

#[tokio::test]
async fn strict_query_refuses_undeclared_parameters() {
    let (up, gw) = gateway("strict_query = true").await;
    let t = streamer();
    let r = call(
        &gw,
        Method::GET,
        "/api/streams?status=live&utm=1",
        Some(&t),
        &[("x-tenant", "acme")],
        "",
    )
    .await;
    assert_400(&r, &["query.utm: unknown parameter"]);
    let r = call(&gw, Method::GET, "/api/streams/1?x=1", Some(&t), &[], "").await;
    assert_400(&r, &["query.x: unknown parameter"]);
    assert_eq!(up.count(), 0);
    let r = call(&gw, Method::GET, "/api/streams/1", Some(&t), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn text_inside_a_segment_matches_and_forms_are_validated_field_by_field() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let r = call(
        &gw,
        Method::GET,
        "/api/Accounts/AC12ab.json",
        Some(&t),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, Method::GET, "/api/Accounts/XY.json", Some(&t), &[], "").await;
    assert_400(&r, &["path.Sid: does not match ^AC[0-9a-f]{4}$"]);
    let r = call(
        &gw,
        Method::GET,
        "/api/Accounts/AC12ab.xml",
        Some(&t),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let bad = [
        ("Age=12", vec!["/FriendlyName: required, missing"]),
        (
            "FriendlyName=a&Age=old&Active=yes&Other=1",
            vec![
                "/Age: expected integer, got string",
                "/Active: expected boolean, got string",
                r#"body: unknown fields "Other""#,
            ],
        ),
        (
            "FriendlyName=a&FriendlyName=b",
            vec!["/FriendlyName: given more than once"],
        ),
        (
            "FriendlyName=%zz",
            vec!["body: FriendlyName: invalid percent-encoding or not UTF-8"],
        ),
    ];
    for (body, want) in bad {
        let r = call(
            &gw,
            Method::POST,
            "/api/Accounts/AC12ab.json",
            Some(&t),
            &form,
            body,
        )
        .await;
        assert_eq!(r.json()["detailCode"], "400.1 Bad Request Content");
        assert_400(&r, &want);
    }
    assert_eq!(up.count(), 1);
    let body = "FriendlyName=My+Account&Age=42&Active=true&Tags=a&Tags=b";
    let r = call(
        &gw,
        Method::POST,
        "/api/Accounts/AC12ab.json",
        Some(&t),
        &form,
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].uri.path(), "/api/Accounts/AC12ab.json");
    assert_eq!(seen[1].body, body.as_bytes());
    gw.stop().await;
}

#[tokio::test]
async fn non_json_bodies_are_forwarded_byte_exact_and_415s_say_why() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\x02 not json {\r\n--XyZ--\r\n";
    let cases = [
        (
            "multipart/form-data; boundary=XyZ",
            multipart.as_bytes().to_vec(),
        ),
        ("application/octet-stream", vec![0u8, 159, 146, 150, 255]),
        ("application/xml", b"<note><to>x</to></note>".to_vec()),
    ];
    for (ct, body) in &cases {
        let r = call(
            &gw,
            Method::POST,
            "/api/files",
            Some(&t),
            &[("content-type", ct)],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
        let seen = up.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.body, body.as_slice(), "{ct}");
        assert_eq!(last.headers["content-type"], *ct);
    }
    assert_eq!(up.count(), 3);

    // Undeclared media types, a missing Content-Type and gzip: 415, nothing forwarded.
    let r = call(
        &gw,
        Method::POST,
        "/api/files",
        Some(&t),
        &[("content-type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        texts(&r),
        [
            "Content-Type text/plain is not accepted; it must be one of: application/octet-stream, application/xml, multipart/form-data."
        ]
    );
    assert_eq!(r.header("accept-patch"), "");
    let r = call(&gw, Method::POST, "/api/files", Some(&t), &[], "x").await;
    assert_eq!(r.status, 415);
    assert!(
        texts(&r)[0].starts_with("A single Content-Type header is required"),
        "{}",
        r.text()
    );
    let r = call(
        &gw,
        Method::POST,
        "/api/events",
        Some(&t),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        vec![0x1f, 0x8b, 8, 0],
    )
    .await;
    assert_eq!(r.status, 415);
    assert!(
        texts(&r)[0].contains("Content-Encoding \"gzip\" is not accepted"),
        "{}",
        r.text()
    );
    // A 415 to a PATCH names the patch formats in Accept-Patch.
    let r = call(
        &gw,
        Method::PATCH,
        "/api/streams/1",
        Some(&t),
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.header("accept-patch"), "application/merge-patch+json");
    assert_eq!(up.count(), 3);

    // validation.skip: the body goes as sent, whatever the schema says.
    let r = call(
        &gw,
        Method::PUT,
        "/api/notes",
        Some(&t),
        &[("content-type", "application/json")],
        "{\"no\": 1}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen().last().unwrap().body, "{\"no\": 1}");
    gw.stop().await;
}

#[tokio::test]
async fn openapi_31_schemas_discriminators_and_optional_bodies() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let json = [("content-type", "application/json")];
    let ok = r#"{"title": "t", "note": null, "kind": "video", "size": 3}"#;
    let r = call(&gw, Method::POST, "/api/streams", Some(&t), &json, ok).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen()[0].body, ok);
    let cases = [
        (
            "/api/streams",
            r#"{"title": "t", "note": 5, "kind": "audio", "size": 0, "id": "x"}"#,
            vec![
                "/note: expected string or null, got integer",
                "/kind: is not the allowed constant",
                "/size: not greater than 0",
                "/id: read-only, must not be sent",
            ],
        ),
        (
            "/api/events",
            r#"{"type": "click"}"#,
            vec!["/x: required, missing"],
        ),
        (
            "/api/events",
            r#"{"type": "view", "page": 1}"#,
            vec!["/page: expected string, got integer"],
        ),
        (
            "/api/events",
            r#"{"type": "zoom"}"#,
            vec![r#"/type: must be one of "click", "view""#],
        ),
        (
            "/api/shapes",
            r#"{"r": 1, "w": 2}"#,
            vec![
                "body: matches two of the 2 allowed shapes (#1 and #2) but must match exactly one",
            ],
        ),
    ];
    for (path, body, want) in cases {
        let r = call(&gw, Method::POST, path, Some(&t), &json, body).await;
        assert_400(&r, &want);
    }
    assert_eq!(up.count(), 1);
    // An optional body may be left out; a required one may not.
    let r = call(&gw, Method::POST, "/api/events", Some(&t), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, Method::POST, "/api/shapes", Some(&t), &[], "").await;
    assert_400(&r, &["body: required, missing"]);
    let r = call(
        &gw,
        Method::POST,
        "/api/events",
        Some(&t),
        &json,
        r#"{"type": "click", "x": 1}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn security_requirements_are_an_or_of_and_sets() {
    let (up, gw) = gateway("").await;
    let json = [("content-type", "application/json")];
    let body = r#"{"title": "t"}"#;
    // (roles, scopes, expected status, message fragment)
    let cases: [(&[&str], &[&str], u16, &str); 6] = [
        (&["STREAMER"], &["streams:write", "streams:admin"], 200, ""),
        (&["STREAMER"], &["root"], 200, ""),
        (&["STREAMER"], &["sp:scopes:all"], 200, ""),
        (
            &["STREAMER"],
            &["streams:write"],
            403,
            "the caller's role may call post /api/streams but the token lacks the scopes it needs (one of: streams:write streams:admin | root)",
        ),
        (&["STREAMER"], &["streams:read"], 403, "lacks the scopes"),
        (
            &["VIEWER"],
            &["root"],
            403,
            "the caller may not call post /api/streams (no role of the caller is granted it)",
        ),
    ];
    for (i, (roles, scopes, status, text)) in cases.iter().enumerate() {
        let t = token(&format!("sec-{i}"), roles, scopes);
        let before = up.count();
        let r = call(&gw, Method::POST, "/api/streams", Some(&t), &json, body).await;
        assert_eq!(r.status, *status, "{roles:?} {scopes:?}: {}", r.text());
        if *status == 403 {
            assert_eq!(r.json()["detailCode"], "403 Forbidden");
            assert!(texts(&r)[0].contains(text), "{}", r.text());
            assert_eq!(up.count(), before);
        } else {
            assert_eq!(up.count(), before + 1);
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn head_is_served_wherever_get_is_and_options_lists_the_methods() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let r = call(&gw, Method::HEAD, "/api/streams/7", Some(&t), &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::HEAD);
    assert_eq!(seen[0].uri.path(), "/api/streams/7");
    let r = call(&gw, Method::OPTIONS, "/api/streams", Some(&t), &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), "GET, HEAD, POST, OPTIONS");
    let r = call(&gw, Method::DELETE, "/api/streams/7", Some(&t), &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET, HEAD, PATCH, OPTIONS");
    // OPTIONS needs a token like any request that is not a CORS preflight.
    let r = call(&gw, Method::OPTIONS, "/api/streams", None, &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn browsers_get_cors_from_allowed_origins_only() {
    let (up, gw) = gateway("").await;
    let t = streamer();
    let preflight = [
        ("origin", ORIGIN),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization, x-tenant"),
    ];
    // The preflight needs no token and is never forwarded.
    let r = call(&gw, Method::OPTIONS, "/api/streams", None, &preflight, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), ORIGIN);
    assert!(r.header("access-control-allow-methods").contains("GET"));
    let allowed = r
        .header("access-control-allow-headers")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-tenant"),
        "{allowed}"
    );
    assert!(r.header("vary").to_ascii_lowercase().contains("origin"));
    assert_eq!(up.count(), 0);

    // The actual request: authenticated as usual, CORS headers on the answer.
    let r = call(
        &gw,
        Method::GET,
        "/api/streams/1",
        Some(&t),
        &[("origin", ORIGIN)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), ORIGIN);
    assert!(
        r.header("access-control-expose-headers")
            .contains("x-request-id")
    );
    assert_eq!(up.seen()[0].headers["origin"], ORIGIN);
    // Refusals carry them too, so the browser can read the error.
    let r = call(
        &gw,
        Method::GET,
        "/api/streams/1",
        None,
        &[("origin", ORIGIN)],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), ORIGIN);

    // Another origin gets no CORS headers at all; its preflight is an
    // ordinary unauthenticated request.
    let evil = "https://evil.example";
    let mut other = preflight;
    other[0] = ("origin", evil);
    let r = call(&gw, Method::OPTIONS, "/api/streams", None, &other, "").await;
    assert_eq!(r.status, 401);
    let r2 = call(
        &gw,
        Method::GET,
        "/api/streams/1",
        Some(&t),
        &[("origin", evil)],
        "",
    )
    .await;
    assert_eq!(r2.status, 200);
    for r in [&r, &r2] {
        assert!(
            !r.headers
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{:?}",
            r.headers
        );
    }
    // Rate limiting counts requests the same with or without Origin.
    let plain = call(&gw, Method::GET, "/api/streams/1", Some(&t), &[], "").await;
    let with = call(
        &gw,
        Method::GET,
        "/api/streams/1",
        Some(&t),
        &[("origin", ORIGIN)],
        "",
    )
    .await;
    assert_eq!(
        plain.header("ratelimit-policy"),
        with.header("ratelimit-policy")
    );
    assert_eq!(up.count(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn documents_that_cannot_be_served_unambiguously_are_refused_at_start() {
    let up = Recording::start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            write(
                "ambiguous.yaml",
                "openapi: 3.1.0\ninfo: {title: a, version: '1'}\npaths:\n  /f/{a}.json:\n    parameters: [{name: a, in: path, required: true}]\n    get: {operationId: x}\n  /f/x{b}:\n    parameters: [{name: b, in: path, required: true}]\n    get: {operationId: y}\n",
            ),
            "can match the same request path",
        ),
        (
            write("v32.json", r#"{"openapi": "3.2.0", "paths": {}}"#),
            "is OpenAPI 3.2.0; only OpenAPI 3.0.x and 3.1.x documents are supported",
        ),
        (
            write("unquoted.yaml", "openapi: 3.1\npaths: {}\n"),
            "`openapi` must be a version string",
        ),
    ];
    for (path, want) in cases {
        let body = config(&up.url(), "").replace(&format!("{FIXTURES}/streams.v31.yaml"), &path);
        let e = TestGateway::try_start_with(&body, "")
            .await
            .err()
            .expect("refused");
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn check_lists_generated_names_and_bodies_that_are_not_validated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        support::tokens::issuer().jwks().to_string(),
    )
    .unwrap();
    let path = dir.path().join("simgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[audit]\npath = \"{}\"\n",
            config("http://127.0.0.1:9", ""),
            dir.path().join("audit.log").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("post /api/streams"), "{stdout}");
    let listing = stdout
        .split("Request bodies forwarded without schema validation:")
        .nth(1)
        .unwrap_or_else(|| panic!("no listing: {stdout}"));
    for line in [
        "uploadFile  multipart/form-data  (media type not parsed by the gateway)",
        "uploadFile  application/octet-stream  (media type not parsed by the gateway)",
        "uploadFile  application/xml  (media type not parsed by the gateway)",
        "putNote  application/json  (validation.skip)",
    ] {
        assert!(listing.contains(line), "{line:?} missing from {listing}");
    }
    assert!(!listing.contains("updateAccount"), "{listing}");
}
