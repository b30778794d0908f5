//! Operation matching through a real gateway: path tricks refused (400),
//! unknown paths (404), other methods (405 + Allow), method overrides never
//! honoured, and what is matched is exactly what is forwarded.

mod support;

use http::Method;
use support::gateway::{TestGateway, standard};
use support::http::{raw, raw_status, send};
use support::tokens::token;
use support::upstream::Recording;

const ID: &str = "2c9180835d2e5168015d32f890ca1581";

async fn gateway() -> (Recording, TestGateway) {
    let up = Recording::start().await;
    let gw = TestGateway::start(&standard(&up.url())).await;
    (up, gw)
}

fn admin() -> String {
    token("routes-admin", &["ORG_ADMIN"], &["sp:scopes:all"])
}

/// A raw HTTP/1.1 request with the admin token, closing the connection.
fn raw_request(method: &str, target: &[u8], token: &str) -> Vec<u8> {
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: simgate.test\r\nAuthorization: Bearer {token}\r\n\
             X-SailPoint-Experimental: true\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    req
}

#[tokio::test]
async fn path_tricks_are_refused_and_never_forwarded() {
    let (up, gw) = gateway().await;
    let t = admin();
    let tricks: &[(&str, &[u8], u16)] = &[
        // Empty segments.
        ("GET", b"//beta/sim-integrations", 400),
        ("GET", b"/beta//sim-integrations", 400),
        ("GET", b"/beta/sim-integrations/", 400),
        ("GET", b"/beta/sim-integrations//", 400),
        // Dot segments, raw and encoded.
        ("GET", b"/beta/./sim-integrations", 400),
        ("GET", b"/beta/x/../sim-integrations", 400),
        (
            "DELETE",
            b"/beta/sim-integrations/x/../../../sim-integrations/v1/x",
            400,
        ),
        ("GET", b"/beta/sim-integrations/..", 400),
        ("GET", b"/beta/sim-integrations/...", 400),
        ("GET", b"/beta/%2e%2e/sim-integrations", 400),
        (
            "GET",
            b"/beta/sim-integrations/%2E%2E/%2E%2E/sim-integrations/v1",
            400,
        ),
        ("GET", b"/beta/sim-integrations/.%2e", 400),
        // Encoded separators.
        ("GET", b"/beta%2fsim-integrations", 400),
        ("GET", b"/beta%2Fsim-integrations", 400),
        ("GET", b"/beta/sim-integrations%2F2c91", 400),
        ("GET", b"/beta%5csim-integrations", 400),
        ("GET", b"/beta\\sim-integrations", 400),
        ("GET", b"/beta/sim-integrations%252f", 400),
        // `;` parameters.
        ("GET", b"/beta/sim-integrations;jsessionid=1", 400),
        ("GET", b"/beta/sim-integrations/x;v=1", 400),
        ("GET", b"/beta/sim-integrations%3Bx", 400),
        // `?` and `#` hidden in the path.
        ("GET", b"/beta/sim-integrations%3F", 400),
        ("GET", b"/beta/sim-integrations%3f/../x", 400),
        ("GET", b"/beta/sim-integrations%23", 400),
        ("GET", b"/beta/sim-integrations/x%23/../../v1", 400),
        // A raw `#` starts a fragment, which is never part of the path.
        ("GET", b"/nothing#/beta/sim-integrations", 404),
        // NUL and other controls, raw and encoded.
        ("GET", b"/beta/sim-integrations%00", 400),
        ("GET", b"/beta/sim-integrations/x%00.json", 400),
        ("GET", b"/beta/sim-integrations/x%0d%0aX-Injected:%201", 400),
        ("GET", b"/beta/sim-integrations\x00", 400),
        ("GET", b"/beta/sim-integrations/x\x7f", 400),
        // Needless or invalid encodings, invalid UTF-8.
        ("GET", b"/beta/sim-integr%61tions", 400),
        ("GET", b"/beta/sim-integrations/%zz", 400),
        ("GET", b"/beta/sim-integrations/%C3%28", 400),
        ("GET", b"/beta/sim-integrations/\xff", 400),
        ("GET", b"/beta/sim-integrations/caf\xc3\xa9", 400),
        // Case: matching is exact.
        ("GET", b"/Beta/sim-integrations", 404),
        ("GET", b"/beta/SIM-integrations", 404),
        ("GET", b"/BETA/SIM-INTEGRATIONS", 404),
        ("GET", b"/sim-integrations/V1", 404),
        (
            "PATCH",
            b"/beta/sim-integrations/x/beforeprovisioningrule",
            404,
        ),
        // Not origin-form.
        (
            "GET",
            b"http://simgate.test/beta/x/../sim-integrations",
            400,
        ),
        ("OPTIONS", b"*", 400),
    ];
    for (method, target, want) in tricks {
        let res = raw(gw.addr, &raw_request(method, target, &t)).await;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(raw_status(&res), *want, "{method} {shown}: {res}");
        assert_eq!(up.count(), 0, "{method} {shown} reached the upstream");
    }
    // The refusals are ErrorResponseDto naming the problem.
    let res = raw(gw.addr, &raw_request("GET", b"/beta/%2e%2e/x", &t)).await;
    assert!(
        res.contains("\"detailCode\":\"400.0 Bad Request\""),
        "{res}"
    );
    assert!(res.contains("percent-encoded '.'"), "{res}");
    gw.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_other_methods_405() {
    let (up, gw) = gateway().await;
    let auth = format!("Bearer {}", admin());
    let h = [("authorization", auth.as_str())];
    for path in [
        "/",
        "/beta",
        "/beta/",
        "/admin",
        "/beta/sim-integrations/x/y",
        "/v3/sim-integrations",
        "/sim-integrations",
        "/sim-integrations/v1/x/beforeProvisioningRule/y",
    ] {
        let res = send(Method::GET, &gw.url(path), &h, "").await;
        let want = if path.ends_with('/') && path.len() > 1 {
            400
        } else {
            404
        };
        assert_eq!(res.status, want, "{path}: {}", res.text());
    }
    let res = send(Method::GET, &gw.url("/admin"), &h, "").await;
    assert_eq!(res.json()["detailCode"], "404 Not found");

    let cases = [
        (
            Method::DELETE,
            "/beta/sim-integrations".to_owned(),
            "GET, HEAD, POST, OPTIONS",
        ),
        (
            Method::PUT,
            "/sim-integrations/v1".to_owned(),
            "GET, HEAD, POST, OPTIONS",
        ),
        (
            Method::POST,
            format!("/beta/sim-integrations/{ID}"),
            "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
        ),
        (
            Method::GET,
            format!("/beta/sim-integrations/{ID}/beforeProvisioningRule"),
            "PATCH, OPTIONS",
        ),
        (
            Method::HEAD,
            format!("/beta/sim-integrations/{ID}/beforeProvisioningRule"),
            "PATCH, OPTIONS",
        ),
        (
            Method::from_bytes(b"PURGE").unwrap(),
            "/beta/sim-integrations".to_owned(),
            "GET, HEAD, POST, OPTIONS",
        ),
    ];
    for (method, path, allow) in cases {
        let res = send(method.clone(), &gw.url(&path), &h, "").await;
        assert_eq!(res.status, 405, "{method} {path}");
        assert_eq!(res.header("allow"), allow, "{method} {path}");
        if method != Method::HEAD {
            assert_eq!(res.json()["detailCode"], "405 Method Not Allowed");
        }
    }
    // OPTIONS is answered by the gateway with the path's methods.
    let res = send(
        Method::OPTIONS,
        &gw.url(&format!("/sim-integrations/v1/{ID}")),
        &h,
        "",
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        res.header("allow"),
        "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn matched_requests_are_forwarded_exactly_as_received() {
    let (up, gw) = gateway().await;
    let t = admin();
    let auth = format!("Bearer {t}");
    let h = [
        ("authorization", auth.as_str()),
        ("x-sailpoint-experimental", "true"),
    ];
    let res = send(
        Method::GET,
        &gw.url("/beta/sim-integrations/abc%20d,e?limit=5&x=/../y"),
        &h,
        "",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    // A query is not part of the path: it is forwarded untouched.
    let res = send(
        Method::GET,
        &gw.url("/sim-integrations/v1?/../../admin"),
        &h,
        "",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    // A raw fragment is dropped before matching, and never forwarded.
    let res = raw(
        gw.addr,
        &raw_request("GET", b"/beta/sim-integrations/x#/../../admin", &t),
    )
    .await;
    assert_eq!(raw_status(&res), 200, "{res}");
    let seen: Vec<String> = up
        .seen()
        .iter()
        .map(|s| s.uri.path_and_query().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        [
            "/beta/sim-integrations/abc%20d,e?limit=5&x=/../y",
            "/sim-integrations/v1?/../../admin",
            "/beta/sim-integrations/x",
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn method_override_headers_are_never_honoured() {
    let (up, gw) = gateway().await;
    let reader = format!(
        "Bearer {}",
        token("routes-reader", &["SIM_READER"], &["sp:scopes:all"])
    );
    let overrides = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    // A reader's POST stays a POST (createSIMIntegration): refused.
    for name in overrides {
        let res = send(
            Method::POST,
            &gw.url("/beta/sim-integrations"),
            &[
                ("authorization", reader.as_str()),
                ("content-type", "application/json"),
                (name, "GET"),
            ],
            r#"{"name": "x"}"#,
        )
        .await;
        assert_eq!(res.status, 403, "{name}: {}", res.text());
        assert!(
            res.text().contains("createSIMIntegration"),
            "{}",
            res.text()
        );
    }
    assert_eq!(up.count(), 0);
    // A reader's GET stays a GET, and the override is not forwarded.
    for name in overrides {
        let res = send(
            Method::GET,
            &gw.url(&format!("/beta/sim-integrations/{ID}")),
            &[("authorization", reader.as_str()), (name, "DELETE")],
            "",
        )
        .await;
        assert_eq!(res.status, 200, "{name}: {}", res.text());
    }
    let seen = up.seen();
    assert_eq!(seen.len(), overrides.len());
    for s in &seen {
        assert_eq!(s.method, Method::GET);
        for name in overrides {
            assert!(!s.headers.contains_key(name), "{name} forwarded");
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn passthrough_mode_skips_matching() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    let res = send(Method::GET, &gw.url("/not/in/any/document"), &[], "").await;
    assert_eq!(res.status, 200);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn gateway_mode_needs_documents_and_policy() {
    let up = Recording::start().await;
    let url = up.url();
    let no_api = format!(
        "[upstream]\nurl = \"{url}\"\n{}\n[authz]\npolicy = \"/nonexistent.toml\"\n",
        support::gateway::auth_section()
    );
    let e = TestGateway::try_start_with(&no_api, "")
        .await
        .err()
        .unwrap();
    assert!(e.contains("`api.documents`"), "{e}");

    let no_policy = standard(&url).replace("[authz]\npolicy", "[authz]\n# policy");
    let e = TestGateway::try_start_with(&no_policy, "")
        .await
        .err()
        .unwrap();
    assert!(e.contains("`authz.policy`"), "{e}");

    let swagger = tempfile::tempdir().unwrap();
    let doc = swagger.path().join("old.yaml");
    std::fs::write(&doc, "swagger: '2.0'\npaths: {}\n").unwrap();
    let body = standard(&url).replace(
        "mount = \"/beta\" }",
        &format!(
            "mount = \"/beta\" }},\n  {{ path = \"{}\", mount = \"/old\" }}",
            doc.display()
        ),
    );
    let e = TestGateway::try_start_with(&body, "").await.err().unwrap();
    assert!(
        e.contains("`api.documents[1]`") && e.contains("Swagger 2.0"),
        "{e}"
    );

    let dup = swagger.path().join("dup.json");
    let doc = serde_json::json!({
        "openapi": "3.0.3", "info": { "title": "dup", "version": "1" },
        "paths": { "/sim-integrations": { "get": {
            "operationId": "listAgain", "responses": { "200": { "description": "ok" } }
        } } }
    });
    std::fs::write(&dup, doc.to_string()).unwrap();
    let body = standard(&url).replace(
        "mount = \"/beta\" }",
        &format!(
            "mount = \"/beta\" }},\n  {{ path = \"{}\", mount = \"/beta\" }}",
            dup.display()
        ),
    );
    let e = TestGateway::try_start_with(&body, "").await.err().unwrap();
    assert!(
        e.contains("GET /beta/sim-integrations is already served by getSIMIntegrations"),
        "{e}"
    );
}
