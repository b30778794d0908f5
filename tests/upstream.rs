//! The reference SIM Integrations API over real sockets: every operation
//! under both path families, both JSON Patch body forms, atomic patches,
//! 404s, bad bodies and concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use support::http::{Reply, send};
use support::upstream::spawn_reference;

const FAMILIES: [&str; 2] = ["/beta/sim-integrations", "/sim-integrations/v1"];
const PATCH_JSON: (&str, &str) = ("content-type", "application/json-patch+json");
const JSON: (&str, &str) = ("content-type", "application/json");

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: Value) -> Reply {
    let (header, bytes) = match (&method, &body) {
        (_, Value::Null) => (JSON, Bytes::new()),
        (&Method::PATCH, _) => (PATCH_JSON, Bytes::from(body.to_string())),
        _ => (JSON, Bytes::from(body.to_string())),
    };
    send(method, &url(addr, path), &[header], bytes).await
}

async fn create(addr: SocketAddr, family: &str, body: Value) -> Value {
    let res = call(addr, Method::POST, family, body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Asserts an ErrorResponseDto with this status.
fn assert_error(res: &Reply, status: u16) -> Value {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), "application/json");
    let body = res.json();
    assert!(
        body["detailCode"]
            .as_str()
            .unwrap()
            .starts_with(&status.to_string())
    );
    assert!(!body["trackingId"].as_str().unwrap().is_empty());
    let msg = &body["messages"][0];
    assert_eq!(msg["locale"], "en-US");
    assert_eq!(msg["localeOrigin"], "DEFAULT");
    assert!(!msg["text"].as_str().unwrap().is_empty());
    body
}

fn sample() -> Value {
    json!({
        "name": "ServiceNow prod",
        "description": "the main desk",
        "type": "ServiceNow Service Desk",
        "attributes": {"uid": "Walter White", "lastSyncDate": 1470348809380_u64},
        "sources": ["2c9180835d191a86015d28455b4a2329"],
        "cluster": "xyzzy999",
        "statusMap": {"closed_complete": "Committed"},
        "beforeProvisioningRule": {"type": "RULE", "id": "r1", "name": "Rule A"},
    })
}

#[tokio::test]
async fn every_operation_under_both_families() {
    let (addr, api) = spawn_reference().await;
    for family in FAMILIES {
        // create
        let created = create(addr, family, sample()).await;
        let id = id_of(&created);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let created_at = created["created"].as_str().unwrap().to_owned();
        assert!(
            created_at.ends_with('Z') && created_at.len() == 24,
            "{created_at}"
        );
        assert_eq!(created["modified"], created["created"]);
        for (k, v) in sample().as_object().unwrap() {
            assert_eq!(&created[k], v, "{k}");
        }
        let item = format!("{family}/{id}");

        // get
        let got = call(addr, Method::GET, &item, Value::Null).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), "application/json");
        assert_eq!(got.json(), created);

        // list
        let list = call(addr, Method::GET, family, Value::Null).await;
        assert_eq!(list.status, 200);
        assert!(list.json().as_array().unwrap().contains(&created));

        // put: full replace, id and created kept, modified moves on;
        // read-only fields in the body are ignored
        let res = call(
            addr,
            Method::PUT,
            &item,
            json!({"name": "replaced", "id": "0123", "created": "1999-01-01T00:00:00.000Z", "attributes": {"a": 1}}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let put = res.json();
        assert_eq!(put["id"], created["id"]);
        assert_eq!(put["created"], created["created"]);
        assert!(put["modified"].as_str().unwrap() > created_at.as_str());
        assert_eq!(put["name"], "replaced");
        assert_eq!(put["description"], "");
        assert_eq!(put["type"], "ServiceNowSDIM");
        assert_eq!(put["attributes"], json!({"a": 1}));
        assert!(put.get("sources").is_none() && put.get("beforeProvisioningRule").is_none());

        // patchSIMAttributes
        let res = call(
            addr,
            Method::PATCH,
            &item,
            json!([{"op": "replace", "path": "/description", "value": "patched"}]),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let patched = res.json();
        assert_eq!(patched["description"], "patched");
        assert!(patched["modified"].as_str().unwrap() > put["modified"].as_str().unwrap());

        // patchBeforeProvisioningRule (the integration has none now)
        let res = call(
            addr,
            Method::PATCH,
            &format!("{item}/beforeProvisioningRule"),
            json!([{"op": "add", "path": "/name", "value": "Rule B"}]),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let ruled = res.json();
        assert_eq!(ruled["beforeProvisioningRule"], json!({"name": "Rule B"}));
        assert_eq!(ruled["description"], "patched");

        // delete, then it is gone
        let res = call(addr, Method::DELETE, &item, Value::Null).await;
        assert_eq!(res.status, 200);
        assert!(res.body.is_empty());
        assert_error(&call(addr, Method::GET, &item, Value::Null).await, 404);
        assert_error(&call(addr, Method::DELETE, &item, Value::Null).await, 404);
    }
    assert!(api.is_empty());
}

#[tokio::test]
async fn families_share_one_store_and_list_in_creation_order() {
    let (addr, api) = spawn_reference().await;
    let a = create(addr, FAMILIES[0], json!({"name": "a"})).await;
    let b = create(addr, FAMILIES[1], json!({"name": "b"})).await;
    for family in FAMILIES {
        let list = call(addr, Method::GET, family, Value::Null).await.json();
        assert_eq!(list, json!([a, b]));
        let got = call(
            addr,
            Method::GET,
            &format!("{family}/{}", id_of(&a)),
            Value::Null,
        )
        .await;
        assert_eq!(got.json(), a);
    }
    assert_eq!(api.len(), 2);
}

#[tokio::test]
async fn patch_accepts_the_array_and_the_sdk_envelope() {
    let (addr, _reference) = spawn_reference().await;
    let created = create(addr, FAMILIES[0], sample()).await;
    let ops = json!([
        {"op": "test", "path": "/name", "value": "ServiceNow prod"},
        {"op": "add", "path": "/attributes/email", "value": "w@example.com"},
        {"op": "remove", "path": "/sources"},
        {"op": "copy", "from": "/cluster", "path": "/attributes/cluster"},
        {"op": "move", "from": "/statusMap", "path": "/request"},
    ]);
    let expect = |v: &Value| {
        assert_eq!(v["attributes"]["email"], "w@example.com");
        assert_eq!(v["attributes"]["cluster"], "xyzzy999");
        assert!(v.get("sources").is_none() && v.get("statusMap").is_none());
        assert_eq!(v["request"], json!({"closed_complete": "Committed"}));
    };
    for family in FAMILIES {
        let item = format!("{family}/{}", id_of(&created));
        // Each run starts from the same state.
        let reset = call(addr, Method::PUT, &item, sample()).await;
        assert_eq!(reset.status, 200);
        let res = call(addr, Method::PATCH, &item, ops.clone()).await;
        assert_eq!(res.status, 200, "{}", res.text());
        expect(&res.json());

        let reset = call(addr, Method::PUT, &item, sample()).await;
        assert_eq!(reset.status, 200);
        // The envelope, as the official SDK sends it, with a plain JSON
        // content type for good measure.
        let envelope = json!({ "operations": ops });
        let res = send(
            Method::PATCH,
            &url(addr, &item),
            &[JSON],
            envelope.to_string(),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        expect(&res.json());
        assert_eq!(
            call(addr, Method::GET, &item, Value::Null).await.json(),
            res.json()
        );
    }
}

#[tokio::test]
async fn failed_patches_change_nothing() {
    let (addr, _reference) = spawn_reference().await;
    let created = create(addr, FAMILIES[1], sample()).await;
    let item = format!("{}/{}", FAMILIES[1], id_of(&created));
    let rule = format!("{item}/beforeProvisioningRule");
    let cases = [
        // a failing test after a change that would otherwise apply
        (
            &item,
            json!([
                {"op": "replace", "path": "/description", "value": "must not stick"},
                {"op": "test", "path": "/name", "value": "another name"},
            ]),
        ),
        // a path that does not exist, after a good op
        (
            &item,
            json!([
                {"op": "add", "path": "/attributes/x", "value": 1},
                {"op": "replace", "path": "/nope/deeper", "value": 1},
            ]),
        ),
        // read-only fields
        (
            &item,
            json!([{"op": "replace", "path": "/id", "value": "0".repeat(32)}]),
        ),
        (&item, json!([{"op": "remove", "path": "/created"}])),
        (
            &item,
            json!({"operations": [{"op": "replace", "path": "/modified", "value": "2000-01-01T00:00:00.000Z"}]}),
        ),
        // results the SDK could not read back
        (&item, json!([{"op": "remove", "path": "/name"}])),
        (
            &item,
            json!([{"op": "replace", "path": "/attributes", "value": "flat"}]),
        ),
        (
            &rule,
            json!([{"op": "replace", "path": "/id", "value": 42}]),
        ),
        (
            &rule,
            json!([
                {"op": "replace", "path": "/name", "value": "Rule B"},
                {"op": "test", "path": "/type", "value": "NOT_A_RULE"},
            ]),
        ),
    ];
    for (path, body) in cases {
        let res = call(addr, Method::PATCH, path, body.clone()).await;
        assert_error(&res, 400);
        let now = call(addr, Method::GET, &item, Value::Null).await.json();
        assert_eq!(now, created, "changed by {body}");
    }
}

#[tokio::test]
async fn unknown_ids_and_paths_are_404() {
    let (addr, _reference) = spawn_reference().await;
    let missing = "0123456789abcdef0123456789abcdef";
    for family in FAMILIES {
        let item = format!("{family}/{missing}");
        assert_error(&call(addr, Method::GET, &item, Value::Null).await, 404);
        assert_error(&call(addr, Method::DELETE, &item, Value::Null).await, 404);
        assert_error(
            &call(addr, Method::PUT, &item, json!({"name": "n"})).await,
            404,
        );
        let ops = json!([{"op": "add", "path": "/x", "value": 1}]);
        assert_error(&call(addr, Method::PATCH, &item, ops.clone()).await, 404);
        let rule = format!("{item}/beforeProvisioningRule");
        assert_error(&call(addr, Method::PATCH, &rule, ops).await, 404);
        for path in [
            format!("{family}/"),
            format!("{item}/other"),
            format!("{family}x"),
        ] {
            assert_error(&call(addr, Method::GET, &path, Value::Null).await, 404);
        }
    }
    for path in ["/", "/v3/sim-integrations", "/sim-integrations", "/beta"] {
        assert_error(&call(addr, Method::GET, path, Value::Null).await, 404);
    }
}

#[tokio::test]
async fn bad_bodies_are_400_and_oversized_413() {
    let (addr, api) = spawn_reference().await;
    let created = create(addr, FAMILIES[0], json!({"name": "keep"})).await;
    for family in FAMILIES {
        let item = format!("{family}/{}", id_of(&created));
        for body in [
            "",
            "{not json",
            "[]",
            "\"x\"",
            "{}",
            r#"{"name": ""}"#,
            r#"{"name": 1}"#,
            r#"{"name": "n", "attributes": [1]}"#,
            r#"{"name": "n", "sources": "s"}"#,
            r#"{"name": "n", "description": null, "ownerRef": {"id": 1}}"#,
        ] {
            for (method, path) in [
                (Method::POST, family.to_owned()),
                (Method::PUT, item.clone()),
            ] {
                let res = send(method.clone(), &url(addr, &path), &[JSON], body).await;
                assert_error(&res, 400);
            }
        }
        for body in [
            "",
            "{",
            "{}",
            r#"{"operations": {}}"#,
            r#"[{"op": "jump", "path": "/a"}]"#,
            r#"[{"op": "add", "path": "/a"}]"#,
            r#"[{"path": "/a", "value": 1}]"#,
            "5",
        ] {
            let res = send(Method::PATCH, &url(addr, &item), &[PATCH_JSON], body).await;
            assert_error(&res, 400);
        }
        let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(1024 * 1024));
        assert_error(
            &send(Method::POST, &url(addr, family), &[JSON], huge).await,
            413,
        );
    }
    assert_eq!(api.len(), 1);
    let now = call(
        addr,
        Method::GET,
        &format!("{}/{}", FAMILIES[0], id_of(&created)),
        Value::Null,
    )
    .await;
    assert_eq!(now.json(), created);
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let (addr, _reference) = spawn_reference().await;
    let cases = [
        (Method::DELETE, "/beta/sim-integrations", "GET, POST"),
        (
            Method::POST,
            "/sim-integrations/v1/abc",
            "GET, PUT, PATCH, DELETE",
        ),
        (
            Method::GET,
            "/sim-integrations/v1/abc/beforeProvisioningRule",
            "PATCH",
        ),
    ];
    for (method, path, allow) in cases {
        let res = call(addr, method, path, Value::Null).await;
        assert_error(&res, 405);
        assert_eq!(res.header("allow"), allow);
    }
}

#[tokio::test]
async fn tracking_id_follows_the_request_id() {
    let (addr, _reference) = spawn_reference().await;
    let path = url(addr, "/beta/sim-integrations/missing");
    let res = send(Method::GET, &path, &[("x-request-id", "gw-req-42")], "").await;
    assert_eq!(assert_error(&res, 404)["trackingId"], "gw-req-42");
    // A malformed one is not echoed; a fresh 32-hex id is used instead.
    let res = send(Method::GET, &path, &[("x-request-id", "bad id!")], "").await;
    let tracking = assert_error(&res, 404)["trackingId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(tracking.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers() {
    const TASKS: usize = 8;
    const CREATES: usize = 50;
    let (addr, api) = spawn_reference().await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..CREATES {
                let family = FAMILIES[n % 2];
                ids.push(id_of(
                    &create(addr, family, json!({"name": format!("w{t}-{n}")})).await,
                ));
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.expect("writer task"));
    }
    assert_eq!(ids.len(), TASKS * CREATES);
    assert_eq!(api.len(), TASKS * CREATES);
    let list = call(addr, Method::GET, FAMILIES[1], Value::Null)
        .await
        .json();
    let listed: HashSet<String> = list.as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(listed, ids);

    // Concurrent patches of one item: none is lost.
    let target = ids.iter().next().unwrap().clone();
    let item = format!("{}/{target}", FAMILIES[0]);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let item = item.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let ops =
                    json!([{"op": "add", "path": format!("/attributes/k{t}_{n}"), "value": n}]);
                let res = call(addr, Method::PATCH, &item, ops).await;
                assert_eq!(res.status, 200, "{}", res.text());
            }
        }));
    }
    for task in tasks {
        task.await.expect("patch task");
    }
    let now = call(addr, Method::GET, &item, Value::Null).await.json();
    assert_eq!(now["attributes"].as_object().unwrap().len(), TASKS * 10);
}

#[tokio::test]
async fn serves_cleartext_http2() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let (addr, _reference) = spawn_reference().await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(url(addr, "/sim-integrations/v1"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(r#"{"name": "over h2"}"#)))
        .unwrap();
    let res = client.request(req).await.expect("h2c request");
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["name"], "over h2");
}
