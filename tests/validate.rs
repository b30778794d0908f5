//! Request body validation through a real gateway: refused bodies get the
//! documented error shapes and never reach the upstream; valid ones arrive
//! byte for byte as sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::Method;
use support::gateway::{TestGateway, standard_unlimited};
use support::http::{Reply, send};
use support::tokens::token;
use support::upstream::Recording;

const ID: &str = "2c9180835d2e5168015d32f890ca1581";
const JSON: &str = "application/json";
const PATCH: &str = "application/json-patch+json";

/// The vendor's documented create example: `statusMap`, `attributes` and
/// `request` as strings, read-only fields filled in.
const VENDOR_EXAMPLE: &str = r#"{
  "request" : "{\"description\":\"SailPoint Access Request,\"}",
  "beforeProvisioningRule" : { "name" : "Example Rule", "id" : "2c918085708c274401708c2a8a760001", "type" : "IDENTITY" },
  "name" : "aName",
  "cluster" : "xyzzy999",
  "description" : "Integration description",
  "modified" : "2015-05-28T14:07:17Z",
  "statusMap" : "{\"closed_cancelled\":\"Failed\",\"closed_complete\":\"Committed\"}",
  "attributes" : "{\"uid\":\"Walter White\"}",
  "id" : "id12345",
  "type" : "ServiceNow Service Desk",
  "sources" : [ "2c9180835d191a86015d28455b4a2329" ],
  "created" : "2015-05-28T14:07:17Z"
}"#;

/// A create body as the Python SDKs send it.
const SDK_CREATE: &str = r#"{"name": "aName", "description": "Integration description", "type": "ServiceNow Service Desk", "attributes": {"uid": "Walter White"}, "sources": ["2c9180835d191a86015d28455b4a2329"], "cluster": "xyzzy999", "statusMap": {"closed_cancelled": "Failed", "in_process": "Queued"}, "request": {"short_description": "SailPoint Access Request"}, "beforeProvisioningRule": {"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Example Rule"}}"#;

async fn gateway(extra: &str) -> (Recording, TestGateway) {
    let up = Recording::start().await;
    let gw = TestGateway::start(&format!("{}{extra}", standard_unlimited(&up.url()))).await;
    (up, gw)
}

fn admin() -> String {
    token("validate-admin", &["ORG_ADMIN"], &["sp:scopes:all"])
}

async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    token: &str,
    body: impl Into<bytes::Bytes>,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("x-sailpoint-experimental", "true"),
    ];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    send(method, &gw.url(path), &headers, body).await
}

/// Asserts a 400 `ErrorResponseDto` whose messages include `want`.
fn assert_400(reply: &Reply, want: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["detailCode"], "400.1 Bad Request Content");
    assert_eq!(body["trackingId"], reply.header("x-request-id"));
    let texts: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains(want)),
        "{want:?} not in {texts:?}"
    );
}

#[tokio::test]
async fn valid_bodies_arrive_byte_exact() {
    let (up, gw) = gateway("").await;
    let t = admin();
    let cases = [
        (
            Method::POST,
            "/beta/sim-integrations".to_owned(),
            JSON,
            SDK_CREATE,
        ),
        (
            Method::POST,
            "/sim-integrations/v1".to_owned(),
            JSON,
            SDK_CREATE,
        ),
        (
            Method::PUT,
            format!("/beta/sim-integrations/{ID}"),
            "application/json; charset=utf-8",
            "{\n  \"name\" : \"n\"\n}\n",
        ),
        (
            Method::PATCH,
            format!("/beta/sim-integrations/{ID}"),
            PATCH,
            r#"{"operations":[{"op":"replace","path":"/description","value":"x"}]}"#,
        ),
        (
            Method::PATCH,
            format!("/sim-integrations/v1/{ID}"),
            PATCH,
            r#"[{"op": "replace", "path": "/description", "value": "x"}, {"op": "add", "path": "/sources/-", "value": "s"}]"#,
        ),
        (
            Method::PATCH,
            format!("/sim-integrations/v1/{ID}/beforeProvisioningRule"),
            PATCH,
            r#"[ { "op" : "replace", "path" : "/name", "value" : "Rule \u00e9" } ]"#,
        ),
    ];
    for (i, (method, path, ct, body)) in cases.into_iter().enumerate() {
        let reply = call(&gw, method.clone(), &path, Some(ct), &t, body).await;
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.text());
        let seen = up.seen();
        assert_eq!(seen.len(), i + 1);
        let last = &seen[i];
        assert_eq!(last.method, method);
        assert_eq!(last.uri.path(), path);
        assert_eq!(last.body, body.as_bytes(), "{path}");
        assert_eq!(
            last.headers["content-length"],
            body.len().to_string().as_str()
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn refused_bodies_never_reach_the_upstream() {
    let (up, gw) = gateway("").await;
    let t = admin();
    let create = "/beta/sim-integrations";
    let patch = format!("/beta/sim-integrations/{ID}");
    // (method, path, content type, body, expected message)
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            create,
            Some(JSON),
            VENDOR_EXAMPLE.into(),
            "/statusMap: expected object, got string",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            VENDOR_EXAMPLE.into(),
            "/id: read-only, must not be sent",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            br#"{"name":"a","name":"b"}"#.to_vec(),
            "duplicate key",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            b"\xEF\xBB\xBF{\"name\":\"a\"}".to_vec(),
            "byte order mark",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            b"{\"name\":\"\xff\"}".to_vec(),
            "UTF-8",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            br#"{"name":"a"}x"#.to_vec(),
            "after the JSON value",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            format!(
                "{{\"name\":\"a\",\"attributes\":{}1{}}}",
                "[".repeat(50),
                "]".repeat(50)
            )
            .into_bytes(),
            "deeper than 32",
        ),
        (
            Method::POST,
            create,
            Some(JSON),
            Vec::new(),
            "body: required, missing",
        ),
        (
            Method::PATCH,
            &patch,
            Some(PATCH),
            br#"[{"op":"replace","path":"/id","value":"x"}]"#.to_vec(),
            "\"/id\" is read-only",
        ),
        (
            Method::PATCH,
            &patch,
            Some(PATCH),
            br#"[{"op":"move","from":"/created","path":"/name"}]"#.to_vec(),
            "\"/created\" is read-only",
        ),
        (
            Method::PATCH,
            &patch,
            Some(PATCH),
            br#"[{"op":"replace","path":"/nope","value":"x"}]"#.to_vec(),
            "is not a field of the resource",
        ),
        (
            Method::PATCH,
            &patch,
            Some(PATCH),
            br#"[{"op":"jump","path":"/name"}]"#.to_vec(),
            "/0/op: must be one of",
        ),
        (
            Method::PATCH,
            &patch,
            Some(PATCH),
            br#"{"operations":[{"op":"replace","path":"/statusMap","value":"x"}]}"#.to_vec(),
            "/operations/0/value: expected object, got string",
        ),
        (
            Method::GET,
            &patch,
            Some(JSON),
            b"{}".to_vec(),
            "takes no request body",
        ),
    ];
    for (method, path, ct, body, want) in cases {
        let reply = call(&gw, method.clone(), path, ct, &t, body).await;
        assert_400(&reply, want);
    }
    // Media type and size.
    let reply = call(
        &gw,
        Method::POST,
        create,
        Some("text/plain"),
        &t,
        SDK_CREATE,
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.json()["detailCode"], "415 Unsupported Media Type");
    assert!(reply.text().contains("application/json"));
    let reply = call(&gw, Method::PATCH, &patch, Some(JSON), &t, "[]").await;
    assert_eq!(reply.status, 415);
    assert!(reply.text().contains(PATCH));
    let reply = call(&gw, Method::POST, create, None, &t, SDK_CREATE).await;
    assert_eq!(reply.status, 415);
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000));
    let reply = call(&gw, Method::POST, create, Some(JSON), &t, big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(up.count(), 0, "{:?}", up.seen());
    gw.stop().await;
}

#[tokio::test]
async fn patch_paths_are_restricted_per_role() {
    let (up, gw) =
        gateway("\n[validation.patch_paths]\nSERVICE_DESK_ADMIN = [\"/description\"]\n").await;
    let desk = token("desk", &["SERVICE_DESK_ADMIN"], &["sp:scopes:all"]);
    let path = format!("/sim-integrations/v1/{ID}");
    let ok = r#"{"operations":[{"op":"replace","path":"/description","value":"x"}]}"#;
    let reply = call(&gw, Method::PATCH, &path, Some(PATCH), &desk, ok).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let no = r#"[{"op":"replace","path":"/cluster","value":"x"}]"#;
    let reply = call(&gw, Method::PATCH, &path, Some(PATCH), &desk, no).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["detailCode"], "403 Forbidden");
    // Unrestricted roles may.
    let reply = call(&gw, Method::PATCH, &path, Some(PATCH), &admin(), no).await;
    assert_eq!(reply.status, 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, ok.as_bytes());
    assert_eq!(seen[1].body, no.as_bytes());
    gw.stop().await;
}

#[tokio::test]
async fn read_only_fields_can_be_stripped() {
    let (up, gw) = gateway("\n[validation]\nread_only = \"strip\"\n").await;
    let body = r#"{"id": "x", "name": "n", "created": "2020-01-01T00:00:00Z", "statusMap": {}}"#;
    let reply = call(
        &gw,
        Method::POST,
        "/sim-integrations/v1",
        Some(JSON),
        &admin(),
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        up.seen()[0].body,
        r#"{"name": "n", "statusMap": {}}"#.as_bytes()
    );
    gw.stop().await;
}

#[tokio::test]
async fn passthrough_mode_does_not_validate() {
    let up = Recording::start().await;
    let gw = TestGateway::passthrough(&up.url(), "").await;
    let reply = send(
        Method::POST,
        &gw.url("/beta/sim-integrations"),
        &[("content-type", "text/plain")],
        VENDOR_EXAMPLE,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.seen()[0].body, VENDOR_EXAMPLE.as_bytes());
    gw.stop().await;
}
