//! Table-driven tests of the body checks against the repository's OpenAPI
//! documents (`config/openapi/`), with hand-made operations.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};

use super::Validators;
use super::config::ValidationSection;
use crate::auth::Principal;
use crate::error::Error;
use crate::routes::{Operation, RequestBody, is_mutating};

const JSON: &str = "application/json";
const PATCH: &str = "application/json-patch+json";

/// The vendor's documented request example for create (SDK docs): strings
/// where the schema says objects, and the read-only fields filled in.
pub(crate) const VENDOR_EXAMPLE: &str = r#"{
  "request" : "{\"description\":\"SailPoint Access Request,\",\"req_description\":\"The Service Request created by SailPoint ServiceNow Service Integration Module (SIM).,\",\"req_short_description\":\"SailPoint New Access Request Created from IdentityNow,\",\"short_description\":\"SailPoint Access Request $!plan.arguments.identityRequestId\"}",
  "beforeProvisioningRule" : {
    "name" : "Example Rule",
    "id" : "2c918085708c274401708c2a8a760001",
    "type" : "IDENTITY"
  },
  "name" : "aName",
  "cluster" : "xyzzy999",
  "description" : "Integration description",
  "modified" : "2015-05-28T14:07:17Z",
  "statusMap" : "{\"closed_cancelled\":\"Failed\",\"closed_complete\":\"Committed\",\"closed_incomplete\":\"Failed\",\"closed_rejected\":\"Failed\",\"in_process\":\"Queued\",\"requested\":\"Queued\"}",
  "attributes" : "{\"uid\":\"Walter White\",\"firstname\":\"walter\",\"cloudStatus\":\"UNREGISTERED\",\"displayName\":\"Walter White\",\"identificationNumber\":\"942\",\"lastSyncDate\":1470348809380,\"email\":\"walter@gmail.com\",\"lastname\":\"white\"}",
  "id" : "id12345",
  "type" : "ServiceNow Service Desk",
  "sources" : [ "2c9180835d191a86015d28455b4a2329", "2c5680835d191a85765d28455b4a9823" ],
  "created" : "2015-05-28T14:07:17Z"
}"#;

/// A create body as the official Python SDKs serialise it (`json.dumps`).
pub(crate) const SDK_CREATE: &str = r#"{"name": "aName", "description": "Integration description", "type": "ServiceNow Service Desk", "attributes": {"uid": "Walter White", "lastSyncDate": 1470348809380}, "sources": ["2c9180835d191a86015d28455b4a2329", "2c5680835d191a85765d28455b4a9823"], "cluster": "xyzzy999", "statusMap": {"closed_cancelled": "Failed", "in_process": "Queued"}, "request": {"short_description": "SailPoint Access Request"}, "beforeProvisioningRule": {"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Example Rule"}}"#;

/// The repository's documents, in load order (beta, v1).
pub(crate) fn documents() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        ["sim-integrations.beta.json", "sim-integrations.v1.json"]
            .iter()
            .map(|f| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("config/openapi")
                    .join(f);
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
            })
            .collect()
    })
}

/// The operations of a document, as the routes loader describes them.
pub(crate) fn operations(doc: &Value, index: usize, mount: &str) -> Vec<Arc<Operation>> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (name, op) in item.as_object().unwrap() {
            let Ok(method) = name.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            let mut request_bodies = Vec::new();
            if let Some(rb) = op.get("requestBody") {
                for (media, content) in rb["content"].as_object().unwrap() {
                    request_bodies.push(RequestBody {
                        media_type: media.clone(),
                        schema: content["schema"].clone(),
                        required: rb.get("required") == Some(&json!(true)),
                    });
                }
            }
            out.push(Arc::new(Operation {
                operation_id: id.to_owned(),
                mutating: is_mutating(&method),
                method,
                path_template: format!("{}{path}", mount.trim_end_matches('/')),
                scopes: vec![],
                request_bodies,
                path_params: vec![],
                document: index,
                index: out.len(),
                ..Default::default()
            }));
        }
    }
    out
}

/// Validators over both documents with the given `[validation]` TOML.
pub(crate) struct Fixture {
    pub(crate) validators: Arc<Validators>,
    ops: HashMap<String, Arc<Operation>>,
}

impl Fixture {
    pub(crate) fn new(toml_section: &str) -> Fixture {
        let docs = documents();
        let mut all = operations(&docs[0], 0, "/beta");
        all.extend(operations(&docs[1], 1, "/"));
        let section: ValidationSection = toml::from_str(toml_section).unwrap();
        let validators = Validators::compile(
            all.iter(),
            |i| docs.get(i),
            &section,
            Path::new("simgate.toml"),
        )
        .unwrap();
        let ops = all
            .into_iter()
            .map(|o| (o.operation_id.clone(), o))
            .collect();
        Fixture { validators, ops }
    }

    pub(crate) fn op(&self, id: &str) -> &Arc<Operation> {
        &self.ops[id]
    }

    fn run(&self, id: &str, ct: Option<&str>, roles: &[&str], body: &[u8]) -> Result<Bytes, Error> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        let principal = principal(roles);
        self.validators.validate(
            self.op(id),
            &headers,
            Some(&principal),
            Bytes::copy_from_slice(body),
        )
    }

    fn json(&self, id: &str, body: &str) -> Result<Bytes, Error> {
        self.run(id, Some(JSON), &["ORG_ADMIN"], body.as_bytes())
    }

    fn patch(&self, id: &str, body: &str) -> Result<Bytes, Error> {
        self.run(id, Some(PATCH), &["ORG_ADMIN"], body.as_bytes())
    }
}

pub(crate) fn principal(roles: &[&str]) -> Principal {
    Principal {
        subject: "alice".into(),
        client_key: "alice".into(),
        issuer: "https://idp".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: vec![],
        token_id: None,
    }
}

fn messages(r: Result<Bytes, Error>) -> Vec<String> {
    match r {
        Err(Error::InvalidBody { messages }) => messages,
        other => panic!("expected 400, got {other:?}"),
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture::new(""))
}

const CREATES: [&str; 4] = [
    "createSIMIntegration",
    "putSIMIntegration",
    "createSIMIntegrationV1",
    "putSIMIntegrationV1",
];
const PATCHES: [&str; 2] = ["patchSIMAttributes", "patchSIMAttributesV1"];
const RULE_PATCHES: [&str; 2] = [
    "patchBeforeProvisioningRule",
    "patchBeforeProvisioningRuleV1",
];

#[test]
fn the_vendor_example_is_refused_with_pointers() {
    for id in CREATES {
        let m = messages(fixture().json(id, VENDOR_EXAMPLE));
        for want in [
            "/statusMap: expected object, got string",
            "/request: expected object, got string",
            "/attributes: expected object or null, got string",
            "/id: read-only, must not be sent",
            "/created: read-only, must not be sent",
            "/modified: read-only, must not be sent",
        ] {
            assert!(m.contains(&want.to_owned()), "{id}: {want} not in {m:?}");
        }
        assert_eq!(m.len(), 6, "{m:?}");
    }
}

#[test]
fn valid_bodies_pass_byte_exact() {
    let f = fixture();
    let bodies = [
        SDK_CREATE,
        r#"{"name":"n"}"#,
        r#"{"name": null, "attributes": null}"#,
        "{\n  \"name\" : \"n\",\n  \"sources\" : [ ]\n}\n",
        r#"{"name":"n","unknownButAllowed":{"x":1}}"#,
    ];
    for id in CREATES {
        for body in bodies {
            assert_eq!(f.json(id, body).unwrap(), body.as_bytes(), "{id}: {body}");
        }
    }
    // charset=utf-8 is fine.
    let r = f.run(
        "createSIMIntegration",
        Some("application/json; charset=UTF-8"),
        &[],
        SDK_CREATE.as_bytes(),
    );
    assert!(r.is_ok());
}

#[test]
fn each_schema_violation_is_reported() {
    let cases = [
        (
            r#"{"name":"a","statusMap":"x"}"#,
            "/statusMap: expected object, got string",
        ),
        (r#"{}"#, "/name: required, missing"),
        (r#"{"description":"d"}"#, "/name: required, missing"),
        (
            r#"{"name":1}"#,
            "/name: expected string or null, got integer",
        ),
        (
            r#"{"name":"a","type":null}"#,
            "/type: expected string, got null",
        ),
        (
            r#"{"name":"a","sources":"x"}"#,
            "/sources: expected array, got string",
        ),
        (
            r#"{"name":"a","sources":["a",1]}"#,
            "/sources/1: expected string, got integer",
        ),
        (
            r#"{"name":"a","cluster":true}"#,
            "/cluster: expected string, got boolean",
        ),
        (
            r#"{"name":"a","request":[]}"#,
            "/request: expected object, got array",
        ),
        (
            r#"{"name":"a","beforeProvisioningRule":{"type":"NOPE"}}"#,
            "/beforeProvisioningRule/type: must be one of \"ACCOUNT_CORRELATION_CONFIG\"",
        ),
        (
            r#"{"name":"a","beforeProvisioningRule":{"id":5}}"#,
            "/beforeProvisioningRule/id: expected string, got integer",
        ),
        (
            r#"{"name":"a","id":"x"}"#,
            "/id: read-only, must not be sent",
        ),
        (
            r#"{"name":"a","created":"2020-01-01T00:00:00Z"}"#,
            "/created: read-only, must not be sent",
        ),
        (
            r#"{"name":"a","modified":null}"#,
            "/modified: read-only, must not be sent",
        ),
        (r#"[]"#, "body: expected object, got array"),
        (r#""x""#, "body: expected object, got string"),
    ];
    for id in CREATES {
        for (body, want) in cases {
            let m = messages(fixture().json(id, body));
            assert!(m.iter().any(|m| m.starts_with(want)), "{id} {body}: {m:?}");
        }
    }
}

#[test]
fn strict_parsing() {
    let deep =
        "{\"name\":\"a\",\"attributes\":".to_owned() + &"[".repeat(40) + &"]".repeat(40) + "}";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\xEF\xBB\xBF{\"name\":\"a\"}".to_vec(), "byte order mark"),
        (b"{\"name\":\"\xC0\xAF\"}".to_vec(), "UTF-8"),
        (
            b"{\"name\":\"a\",\"name\":\"b\"}".to_vec(),
            "duplicate key \"name\"",
        ),
        (
            b"{\"name\":\"a\",\"attributes\":{\"k\":1,\"\\u006b\":2}}".to_vec(),
            "duplicate key \"k\"",
        ),
        (
            b"{\"name\":\"a\"} trailing".to_vec(),
            "after the JSON value",
        ),
        (b"{\"name\":\"a\"}\n{}".to_vec(), "after the JSON value"),
        (b"{\"name\":\"a\",}".to_vec(), "not valid JSON"),
        (b"{\"name\":\"a\"".to_vec(), "not valid JSON"),
        (deep.into_bytes(), "deeper than 32"),
        ("[".repeat(60_000).into_bytes(), "deeper than 32"),
    ];
    for (body, want) in cases {
        let m = messages(fixture().run("createSIMIntegration", Some(JSON), &[], &body));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains(want),
            "{}: {m:?}",
            String::from_utf8_lossy(&body)
        );
    }
    // An empty body to an operation that requires one.
    let m = messages(fixture().json("createSIMIntegration", ""));
    assert_eq!(m, vec!["body: required, missing".to_owned()]);
}

#[test]
fn media_types() {
    let f = fixture();
    let cases: [(&str, Option<&str>, Result<(), &str>); 12] = [
        ("createSIMIntegration", Some(JSON), Ok(())),
        (
            "createSIMIntegration",
            Some("application/json;charset=utf-8"),
            Ok(()),
        ),
        ("createSIMIntegration", None, Err(JSON)),
        ("createSIMIntegration", Some("text/plain"), Err(JSON)),
        (
            "createSIMIntegration",
            Some("application/json; charset=iso-8859-1"),
            Err(JSON),
        ),
        ("createSIMIntegration", Some(PATCH), Err(JSON)),
        (
            "createSIMIntegration",
            Some("application/x-www-form-urlencoded"),
            Err(JSON),
        ),
        ("patchSIMAttributes", Some(PATCH), Ok(())),
        (
            "patchSIMAttributes",
            Some("application/json-patch+json; charset=utf-8"),
            Ok(()),
        ),
        ("patchSIMAttributes", Some(JSON), Err(PATCH)),
        (
            "patchSIMAttributes",
            Some("application/merge-patch+json"),
            Err(PATCH),
        ),
        ("patchSIMAttributesV1", None, Err(PATCH)),
    ];
    for (id, ct, want) in cases {
        let body = if id.starts_with("patch") {
            r#"[{"op":"replace","path":"/description","value":"x"}]"#
        } else {
            r#"{"name":"n"}"#
        };
        match (f.run(id, ct, &[], body.as_bytes()), want) {
            (Ok(_), Ok(())) => {}
            (Err(Error::UnsupportedMediaType { accepted, .. }), Err(list)) => {
                assert_eq!(accepted, vec![list.to_owned()], "{id} {ct:?}");
            }
            (got, _) => panic!("{id} {ct:?}: {got:?}"),
        }
    }
    // A compressed body is not validated, so it is refused.
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let r = f.validators.validate(
        f.op("createSIMIntegration"),
        &headers,
        None,
        Bytes::from_static(b"{}"),
    );
    assert!(matches!(r, Err(Error::ContentEncoded { .. })), "{r:?}");
}

#[test]
fn sizes() {
    let f = Fixture::new("max_body_bytes = 100\n[body_limits]\ncreateSIMIntegrationV1 = 1000\n");
    let body = |n: usize| format!(r#"{{"name":"{}"}}"#, "a".repeat(n - 11));
    assert_eq!(body(100).len(), 100);
    assert!(f.json("createSIMIntegration", &body(100)).is_ok());
    assert!(matches!(
        f.json("createSIMIntegration", &body(101)),
        Err(Error::PayloadTooLarge { limit: 100 })
    ));
    assert!(f.json("createSIMIntegrationV1", &body(1000)).is_ok());
    assert!(matches!(
        f.json("createSIMIntegrationV1", &body(1001)),
        Err(Error::PayloadTooLarge { limit: 1000 })
    ));
    // Default: 64 KiB.
    let d = fixture();
    assert!(d.json("createSIMIntegration", &body(65536)).is_ok());
    assert!(matches!(
        d.json("createSIMIntegration", &body(65537)),
        Err(Error::PayloadTooLarge { limit: 65536 })
    ));
}

#[test]
fn unknown_operation_ids_in_body_limits_are_refused() {
    let docs = documents();
    let ops = operations(&docs[0], 0, "/beta");
    let section: ValidationSection =
        toml::from_str("[body_limits]\ncreateSimIntegration = 5").unwrap();
    let e = Validators::compile(ops.iter(), |i| docs.get(i), &section, Path::new("x.toml"))
        .unwrap_err();
    assert!(
        e.0.contains("validation.body_limits.createSimIntegration"),
        "{e}"
    );
}

#[test]
fn operations_without_a_body() {
    let f = fixture();
    for id in [
        "getSIMIntegration",
        "deleteSIMIntegrationV1",
        "getSIMIntegrations",
    ] {
        assert!(f.validators.operation(f.op(id)).is_none());
        assert!(f.run(id, None, &[], b"").is_ok());
        let m = messages(f.run(id, Some(JSON), &[], b"{}"));
        assert_eq!(
            m,
            vec!["body: this operation takes no request body".to_owned()]
        );
    }
}

#[test]
fn valid_patches_pass_byte_exact() {
    let f = fixture();
    let bodies = [
        // SDK 1.x: the envelope.
        r#"{"operations":[{"op":"replace","path":"/description","value":"x"}]}"#,
        r#"{"operations": [{"op": "replace", "path": "/description", "value": "x"}]}"#,
        // RFC 6902 / SDK 2.x: the array.
        r#"[{"op": "replace", "path": "/description", "value": "x"}]"#,
        r#"[]"#,
        r#"[{"op":"add","path":"/sources/-","value":"2c9180835d191a86015d28455b4a2329"},
            {"op":"remove","path":"/sources/0"},
            {"op":"replace","path":"/statusMap","value":{"in_process":"Queued"}},
            {"op":"add","path":"/attributes/url","value":"https://x"},
            {"op":"test","path":"/name","value":"n"},
            {"op":"copy","from":"/name","path":"/description"},
            {"op":"move","from":"/cluster","path":"/description"},
            {"op":"replace","path":"/beforeProvisioningRule/name","value":"r"},
            {"op":"replace","path":"/provisioningConfig/managedResourceRefs","value":[]}]"#,
    ];
    for id in PATCHES {
        for body in bodies {
            assert_eq!(f.patch(id, body).unwrap(), body.as_bytes(), "{id}: {body}");
        }
    }
    for id in RULE_PATCHES {
        for body in [
            r#"[{"op":"replace","path":"/name","value":"Rule 2"}]"#,
            r#"{"operations":[{"op":"replace","path":"/id","value":"2c91"},{"op":"replace","path":"/type","value":"RULE"}]}"#,
        ] {
            assert_eq!(f.patch(id, body).unwrap(), body.as_bytes(), "{id}: {body}");
        }
    }
}

#[test]
fn bad_patches_are_refused() {
    let many = format!(
        "[{}]",
        vec![r#"{"op":"test","path":"/name","value":"n"}"#; 65].join(",")
    );
    let cases: Vec<(&str, &str)> = vec![
        (r#"{}"#, "body: a JSON Patch is an array"),
        (
            r#"{"operations":{}}"#,
            "/operations: expected array, got object",
        ),
        (r#"{"operations":[],"x":1}"#, "/x: unknown member"),
        (r#""x""#, "body: expected array or object, got string"),
        (r#"[1]"#, "/0: expected object, got integer"),
        (
            r#"[{"op":"frob","path":"/description","value":"x"}]"#,
            "/0/op: must be one of",
        ),
        (r#"[{"op":1,"path":"/description","value":"x"}]"#, "/0/op: "),
        (
            r#"[{"path":"/description","value":"x"}]"#,
            "/0/op: required, missing",
        ),
        (
            r#"[{"op":"replace","value":"x"}]"#,
            "/0/path: required, missing",
        ),
        (
            r#"[{"op":"replace","path":5,"value":"x"}]"#,
            "/0/path: expected string, got integer",
        ),
        (
            r#"[{"op":"replace","path":"/description"}]"#,
            "/0/value: required for replace",
        ),
        (
            r#"[{"op":"test","path":"/description"}]"#,
            "/0/value: required for test",
        ),
        (
            r#"[{"op":"remove","path":"/description","value":"x"}]"#,
            "/0/value: not used by remove",
        ),
        (
            r#"[{"op":"move","path":"/description"}]"#,
            "/0/from: required for move",
        ),
        (
            r#"[{"op":"copy","path":"/description","value":"x","from":"/name"}]"#,
            "/0/value: not used by copy",
        ),
        (
            r#"[{"op":"add","path":"/description","value":"x","from":"/name"}]"#,
            "/0/from: not used by add",
        ),
        (
            r#"[{"op":"replace","path":"/description","value":"x","extra":1}]"#,
            "/0/extra: unknown member",
        ),
        (
            r#"[{"op":"replace","path":"description","value":"x"}]"#,
            "/0/path: \"description\" is not a JSON Pointer",
        ),
        (
            r#"[{"op":"replace","path":"/a~2b","value":"x"}]"#,
            "is not a JSON Pointer",
        ),
        (
            r#"[{"op":"replace","path":"/a~","value":"x"}]"#,
            "is not a JSON Pointer",
        ),
        (
            r#"[{"op":"copy","from":"nope","path":"/name"}]"#,
            "/0/from: \"nope\" is not a JSON Pointer",
        ),
        (
            r#"[{"op":"replace","path":"","value":{}}]"#,
            "/0/path: must name a field",
        ),
        (
            r#"[{"op":"remove","path":""}]"#,
            "/0/path: must name a field",
        ),
        (
            r#"[{"op":"replace","path":"/nope","value":"x"}]"#,
            "/0/path: \"/nope\" is not a field of the resource",
        ),
        (
            r#"[{"op":"add","path":"/name/x","value":"x"}]"#,
            "is not a field of the resource",
        ),
        (
            r#"[{"op":"add","path":"/sources/x","value":"x"}]"#,
            "is not a field of the resource",
        ),
        (
            r#"[{"op":"add","path":"/sources/01","value":"x"}]"#,
            "is not a field of the resource",
        ),
        (
            r#"[{"op":"replace","path":"/sources/-","value":"x"}]"#,
            "uses \"-\"",
        ),
        (
            r#"[{"op":"copy","from":"/sources/-","path":"/cluster"}]"#,
            "uses \"-\"",
        ),
        (
            r#"[{"op":"replace","path":"/statusMap","value":"x"}]"#,
            "/0/value: expected object, got string",
        ),
        (
            r#"[{"op":"add","path":"/sources/-","value":"x"},{"op":"add","path":"/sources/0","value":5}]"#,
            "/1/value: expected string, got integer",
        ),
        (
            r#"[{"op":"replace","path":"/description","value":null}]"#,
            "/0/value: expected string, boolean, integer, object or array, got null",
        ),
        (
            r#"[{"op":"replace","path":"/description","value":1.5}]"#,
            "/0/value: expected string, boolean, integer, object or array, got number",
        ),
        (
            r#"[{"op":"move","from":"/statusMap","path":"/statusMap/x"}]"#,
            "/0/from: cannot move a field into itself",
        ),
        (
            r#"{"operations":[{"op":"remove","path":"/nope"}]}"#,
            "/operations/0/path: \"/nope\" is not a field",
        ),
        (&many, "body: more than 64 operations"),
    ];
    for id in PATCHES {
        for (body, want) in &cases {
            let m = messages(fixture().patch(id, body));
            assert!(m.iter().any(|m| m.contains(want)), "{id} {body}: {m:?}");
        }
    }
    // 64 operations are fine.
    let ok = format!(
        "[{}]",
        vec![r#"{"op":"test","path":"/name","value":"n"}"#; 64].join(",")
    );
    assert!(fixture().patch("patchSIMAttributes", &ok).is_ok());
    // Targets of the rule patch are relative to the rule.
    for id in RULE_PATCHES {
        let m = messages(fixture().patch(
            id,
            r#"[{"op":"replace","path":"/description","value":"x"}]"#,
        ));
        assert!(m[0].contains("is not a field of the resource"), "{m:?}");
        let m =
            messages(fixture().patch(id, r#"[{"op":"replace","path":"/type","value":"NOPE"}]"#));
        assert!(m[0].starts_with("/0/value: must be one of"), "{m:?}");
    }
}

#[test]
fn read_only_targets_are_refused() {
    let cases = [
        (
            r#"[{"op":"replace","path":"/id","value":"x"}]"#,
            "/0/path: \"/id\" is read-only",
        ),
        (
            r#"[{"op":"add","path":"/created","value":"x"}]"#,
            "/0/path: \"/created\" is read-only",
        ),
        (
            r#"[{"op":"remove","path":"/modified"}]"#,
            "/0/path: \"/modified\" is read-only",
        ),
        (
            r#"[{"op":"test","path":"/id","value":"x"}]"#,
            "/0/path: \"/id\" is read-only",
        ),
        (
            r#"[{"op":"move","from":"/id","path":"/name"}]"#,
            "/0/from: \"/id\" is read-only",
        ),
        (
            r#"[{"op":"copy","from":"/created","path":"/description"}]"#,
            "/0/from: \"/created\" is read-only",
        ),
        (
            r#"[{"op":"copy","from":"/name","path":"/id"}]"#,
            "/0/path: \"/id\" is read-only",
        ),
        (
            r#"{"operations":[{"op":"replace","path":"/provisioningConfig/universalManager","value":false}]}"#,
            "/operations/0/path: \"/provisioningConfig/universalManager\" is read-only",
        ),
        (
            r#"[{"op":"replace","path":"/provisioningConfig","value":{}}]"#,
            "\"/provisioningConfig\" contains read-only fields",
        ),
        (
            r#"[{"op":"remove","path":"/provisioningConfig"}]"#,
            "contains read-only fields",
        ),
        (
            r#"[{"op":"move","from":"/provisioningConfig","path":"/attributes/x"}]"#,
            "/0/from: \"/provisioningConfig\" contains read-only fields",
        ),
        // Escapes are decoded before the lookup: "~0" is "~", so these
        // name no field at all.
        (
            r#"[{"op":"replace","path":"/i~0d","value":"x"}]"#,
            "is not a field of the resource",
        ),
        (
            r#"[{"op":"replace","path":"/~1id","value":"x"}]"#,
            "is not a field of the resource",
        ),
    ];
    for id in PATCHES {
        for (body, want) in cases {
            let m = messages(fixture().patch(id, body));
            assert!(m.iter().any(|m| m.contains(want)), "{id} {body}: {m:?}");
        }
    }
    // Reading a container of read-only fields is fine.
    assert!(
        fixture()
            .patch(
                "patchSIMAttributes",
                r#"[{"op":"copy","from":"/provisioningConfig","path":"/attributes/cfg"}]"#
            )
            .is_ok()
    );
}

#[test]
fn read_only_targets_behind_escapes() {
    // A document whose read-only fields need escaping in pointers.
    let doc = json!({"openapi": "3.0.1", "paths": {
    "/things/{id}": {
        "put": {"operationId": "putThing", "requestBody": {"content": {"application/json":
            {"schema": {"$ref": "#/components/schemas/Thing"}}}}},
        "patch": {"operationId": "patchThing", "requestBody": {"content": {"application/json-patch+json":
            {"schema": {"type": "array", "items": {"type": "object"}}}}}},
    }},
    "components": {"schemas": {"Thing": {"type": "object", "properties": {
        "a/b": {"type": "string", "readOnly": true},
        "c~d": {"type": "string", "readOnly": true},
        "ab": {"type": "string"},
        "c~1d": {"type": "string"},
    }}}}});
    let ops = operations(&doc, 0, "/");
    let v = Validators::compile(
        ops.iter(),
        |_| Some(&doc),
        &ValidationSection::default(),
        Path::new("x.toml"),
    )
    .unwrap();
    let patch = ops.iter().find(|o| o.operation_id == "patchThing").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PATCH));
    let run = |body: &str| {
        v.validate(
            patch,
            &headers,
            None,
            Bytes::copy_from_slice(body.as_bytes()),
        )
    };
    for (path, ok) in [
        ("/a~1b", false),
        ("/c~0d", false),
        ("/ab", true),
        ("/c~01d", true),
        ("/a/b", false),
    ] {
        let body = format!(
            r#"[{{"op":"replace","path":"{path}","value":"x"}},{{"op":"copy","from":"{path}","path":"/ab"}}]"#
        );
        match run(&body) {
            Ok(_) => assert!(ok, "{path} passed"),
            Err(Error::InvalidBody { messages }) => {
                assert!(!ok, "{path}: {messages:?}");
                if path != "/a/b" {
                    assert_eq!(messages.len(), 2, "{messages:?}");
                    assert!(
                        messages.iter().all(|m| m.ends_with("is read-only")),
                        "{messages:?}"
                    );
                }
            }
            Err(e) => panic!("{path}: {e:?}"),
        }
    }
}

#[test]
fn patch_paths_per_role() {
    let f = Fixture::new("[patch_paths]\nOPERATOR = [\"/description\"]\n");
    let replace = |path: &str| format!(r#"[{{"op":"replace","path":"{path}","value":"x"}}]"#);
    let run = |id: &str, roles: &[&str], body: &str| f.run(id, Some(PATCH), roles, body.as_bytes());
    assert!(
        run(
            "patchSIMAttributes",
            &["OPERATOR"],
            &replace("/description")
        )
        .is_ok()
    );
    assert!(
        run(
            "patchSIMAttributesV1",
            &["OPERATOR"],
            r#"{"operations":[{"op":"replace","path":"/description","value":"x"}]}"#
        )
        .is_ok()
    );
    assert!(run("patchSIMAttributes", &["ORG_ADMIN"], &replace("/name")).is_ok());
    for (id, roles, body) in [
        ("patchSIMAttributes", &["OPERATOR"][..], replace("/name")),
        (
            "patchSIMAttributes",
            &["OPERATOR", "SIM_READER"],
            replace("/cluster"),
        ),
        (
            "patchSIMAttributesV1",
            &["OPERATOR"],
            r#"[{"op":"move","from":"/name","path":"/description"}]"#.to_owned(),
        ),
        (
            "patchBeforeProvisioningRule",
            &["OPERATOR"],
            replace("/name"),
        ),
    ] {
        match run(id, roles, &body) {
            Err(Error::Forbidden { operation }) => assert_eq!(operation, id),
            other => panic!("{id} {roles:?} {body}: {other:?}"),
        }
    }
    // Malformed patches are still 400, whoever sends them.
    assert!(matches!(
        run("patchSIMAttributes", &["OPERATOR"], &replace("/id")),
        Err(Error::InvalidBody { .. })
    ));
    let f = Fixture::new("[patch_paths]\nRULES = [\"/beforeProvisioningRule\"]\n");
    let r = f.run(
        "patchBeforeProvisioningRuleV1",
        Some(PATCH),
        &["RULES"],
        replace("/name").as_bytes(),
    );
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn read_only_fields_can_be_stripped() {
    let f = Fixture::new("read_only = \"strip\"");
    let body = r#"{"id": "x", "name": "n", "created": "2020-01-01T00:00:00Z",
        "statusMap": {"a": "b"}, "modified": null}"#;
    let out = f.json("createSIMIntegration", body).unwrap();
    assert_eq!(out, r#"{"name": "n", "statusMap": {"a": "b"}}"#);
    // Other violations are still refused, read-only ones not listed.
    let m = messages(f.json("createSIMIntegration", r#"{"id":"x","statusMap":"s"}"#));
    assert_eq!(
        m,
        vec![
            "/name: required, missing",
            "/statusMap: expected object, got string"
        ]
    );
    // Patches on read-only fields are refused either way.
    assert!(
        f.patch("patchSIMAttributes", r#"[{"op":"remove","path":"/id"}]"#)
            .is_err()
    );
}

#[test]
fn message_count_is_capped() {
    let body = format!(r#"{{"name":"a","sources":[{}]}}"#, vec!["1"; 50].join(","));
    let m = messages(fixture().json("createSIMIntegration", &body));
    assert_eq!(m.len(), 20);
    assert_eq!(m[19], "… and 31 more problems");
    let f = Fixture::new("max_messages = 3");
    let m = messages(f.json("createSIMIntegration", &body));
    assert_eq!(m.len(), 3);
}

#[test]
fn every_document_operation_compiles() {
    let f = fixture();
    let with_body: Vec<&str> = f
        .ops
        .values()
        .filter(|o| f.validators.operation(o).is_some())
        .map(|o| o.operation_id.as_str())
        .collect();
    assert_eq!(with_body.len(), 8, "{with_body:?}");
    let plain =
        serde_json::to_string(&json!([{"op":"replace","path":"/name","value":"x"}])).unwrap();
    for id in PATCHES.iter().chain(RULE_PATCHES.iter()) {
        assert!(f.patch(id, &plain).is_ok(), "{id}");
    }
}
