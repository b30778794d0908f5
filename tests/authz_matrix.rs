//! The default policy through a real gateway with real tokens: every role
//! (the vendor's two, the least-privilege reader, none, an unknown one) ×
//! every operation × both path families, asserting the status and whether
//! the upstream saw the request; scope checking; policy typos at start.

mod support;

use http::Method;
use serde_json::json;
use support::gateway::{TestGateway, auth_section, standard};
use support::http::{Reply, send};
use support::tokens::token;
use support::upstream::Recording;

const ID: &str = "2c9180835d2e5168015d32f890ca1581";
const READ: &str = "idn:service-desk-integration:read";
const MANAGE: &str = "idn:service-desk-integration:manage";

/// One operation of each family: (operationId, method, path, body media type).
struct Op {
    id: String,
    method: Method,
    path: String,
    media: Option<&'static str>,
}

fn operations() -> Vec<Op> {
    let families = [
        ("/beta/sim-integrations", ""),
        ("/sim-integrations/v1", "V1"),
    ];
    let mut ops = Vec::new();
    for (base, suffix) in families {
        let item = format!("{base}/{ID}");
        let rule = format!("{item}/beforeProvisioningRule");
        let json = Some("application/json");
        let patch = Some("application/json-patch+json");
        for (id, method, path, media) in [
            ("getSIMIntegrations", Method::GET, base.to_owned(), None),
            ("createSIMIntegration", Method::POST, base.to_owned(), json),
            ("getSIMIntegration", Method::GET, item.clone(), None),
            ("putSIMIntegration", Method::PUT, item.clone(), json),
            ("patchSIMAttributes", Method::PATCH, item.clone(), patch),
            ("deleteSIMIntegration", Method::DELETE, item.clone(), None),
            ("patchBeforeProvisioningRule", Method::PATCH, rule, patch),
        ] {
            ops.push(Op {
                id: format!("{id}{suffix}"),
                method,
                path,
                media,
            });
        }
    }
    ops
}

/// A body valid for the operation.
fn body(op: &Op) -> String {
    match op.media {
        Some("application/json") => json!({
            "name": "aName",
            "type": "ServiceNow Service Desk",
            "sources": ["2c9180835d191a86015d28455b4a2329"],
            "cluster": "xyzzy999"
        })
        .to_string(),
        // The rule patch changes the rule, the other patch the integration.
        Some(_) if op.path.ends_with("/beforeProvisioningRule") => {
            json!([{ "op": "replace", "path": "/name", "value": "Rule" }]).to_string()
        }
        Some(_) => json!([{ "op": "replace", "path": "/description", "value": "x" }]).to_string(),
        None => String::new(),
    }
}

async fn call(gw: &TestGateway, op: &Op, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("x-sailpoint-experimental", "true"),
    ];
    if let Some(media) = op.media {
        headers.push(("content-type", media));
    }
    send(op.method.clone(), &gw.url(&op.path), &headers, body(op)).await
}

/// Calls `op` and asserts the outcome: forwarded (200, the upstream saw
/// exactly this request) or refused (403 naming the operation, nothing
/// forwarded).
async fn expect(gw: &TestGateway, up: &Recording, op: &Op, token: &str, allowed: bool, who: &str) {
    let before = up.count();
    let res = call(gw, op, token).await;
    if allowed {
        assert_eq!(res.status, 200, "{who} {}: {}", op.id, res.text());
        let seen = up.seen();
        assert_eq!(seen.len(), before + 1, "{who} {}", op.id);
        let last = &seen[before];
        assert_eq!(last.method, op.method);
        assert_eq!(last.uri.path(), op.path);
    } else {
        assert_eq!(res.status, 403, "{who} {}: {}", op.id, res.text());
        let body = res.json();
        assert_eq!(body["detailCode"], "403 Forbidden");
        let text = body["messages"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains(&op.id), "{who} {}: {text}", op.id);
        assert!(!text.contains("policy") && !text.contains("ROLE"), "{text}");
        assert_eq!(up.count(), before, "{who} {} reached the upstream", op.id);
    }
}

#[tokio::test]
async fn every_role_every_operation_both_families() {
    let up = Recording::start().await;
    let gw = TestGateway::start(&standard(&up.url())).await;
    let ops = operations();
    assert_eq!(ops.len(), 14);
    // (who, roles, scopes, may call)
    type Rule = fn(&Op) -> bool;
    let callers: [(&str, &[&str], &[&str], Rule); 6] = [
        ("ORG_ADMIN", &["ORG_ADMIN"], &["sp:scopes:all"], |_| true),
        (
            "SERVICE_DESK_ADMIN",
            &["SERVICE_DESK_ADMIN"],
            &[MANAGE],
            |_| true,
        ),
        ("SIM_READER", &["SIM_READER"], &[READ], |op| {
            op.method == Method::GET
        }),
        // A role that reads is not helped by extra scopes.
        (
            "SIM_READER+all",
            &["SIM_READER"],
            &["sp:scopes:all", MANAGE],
            |op| op.method == Method::GET,
        ),
        ("none", &[], &["sp:scopes:all"], |_| false),
        (
            "HELPDESK_AGENT",
            &["HELPDESK_AGENT"],
            &["sp:scopes:all"],
            |_| false,
        ),
    ];
    for (who, roles, scopes, may) in callers {
        for op in &ops {
            let t = token(&format!("{who}-{}", op.id), roles, scopes);
            expect(&gw, &up, op, &t, may(op), who).await;
        }
    }
    assert_eq!(up.count(), 14 + 14 + 4 + 4);
    gw.stop().await;
}

#[tokio::test]
async fn the_token_must_carry_a_declared_scope() {
    let up = Recording::start().await;
    let gw = TestGateway::start(&standard(&up.url())).await;
    for op in &operations() {
        let reading = op.method == Method::GET;
        let sub = format!("scopes-{}", op.id);
        // The role alone is not enough: no scope, or an undeclared one.
        let t = token(&sub, &["ORG_ADMIN"], &[]);
        expect(&gw, &up, op, &t, false, "admin without scopes").await;
        let t = token(&sub, &["ORG_ADMIN"], &["sp:scopes:default"]);
        expect(&gw, &up, op, &t, false, "admin with sp:scopes:default").await;
        // The read scope covers reads only; manage covers everything.
        let t = token(&sub, &["ORG_ADMIN"], &[READ]);
        expect(&gw, &up, op, &t, reading, "admin with read scope").await;
        let t = token(&sub, &["SERVICE_DESK_ADMIN"], &["other", MANAGE]);
        expect(&gw, &up, op, &t, true, "desk admin with manage scope").await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn scope_checking_can_be_turned_off_or_widened() {
    let up = Recording::start().await;
    let off = standard(&up.url()).replace("[authz]\n", "[authz]\nrequire_scopes = false\n");
    let gw = TestGateway::start(&off).await;
    let ops = operations();
    let delete = ops
        .iter()
        .find(|o| o.id == "deleteSIMIntegrationV1")
        .unwrap();
    let get = ops.iter().find(|o| o.id == "getSIMIntegration").unwrap();
    expect(
        &gw,
        &up,
        delete,
        &token("off-admin", &["ORG_ADMIN"], &[]),
        true,
        "off",
    )
    .await;
    expect(
        &gw,
        &up,
        delete,
        &token("off-reader", &["SIM_READER"], &[]),
        false,
        "off",
    )
    .await;
    expect(
        &gw,
        &up,
        get,
        &token("off-reader", &["SIM_READER"], &[]),
        true,
        "off",
    )
    .await;
    gw.stop().await;

    let custom = standard(&up.url()).replace(
        "[authz]\n",
        "[authz]\nwildcard_scopes = [\"simgate:everything\"]\n",
    );
    let gw = TestGateway::start(&custom).await;
    let t = token("custom-admin", &["ORG_ADMIN"], &["simgate:everything"]);
    expect(&gw, &up, delete, &t, true, "custom wildcard").await;
    let t = token("custom-admin2", &["ORG_ADMIN"], &["sp:scopes:all"]);
    expect(&gw, &up, delete, &t, false, "default wildcard replaced").await;
    gw.stop().await;
}

/// A config whose `[authz] policy` is `policy` (written next to it).
async fn start_with_policy(upstream: &str, policy: &str) -> Result<TestGateway, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).map_err(|e| e.to_string())?;
    let repo = env!("CARGO_MANIFEST_DIR");
    let body = format!(
        r#"
[upstream]
url = "{upstream}"
{auth}
[api]
documents = [
  {{ path = "{repo}/config/openapi/sim-integrations.beta.json", mount = "/beta" }},
  {{ path = "{repo}/config/openapi/sim-integrations.v1.json", mount = "/" }},
]
[authz]
policy = "{policy}"
"#,
        auth = auth_section(),
        policy = path.display()
    );
    let gw = TestGateway::try_start_with(&body, "").await;
    drop(dir);
    gw
}

#[tokio::test]
async fn policy_typos_stop_start_up_naming_them() {
    let up = Recording::start().await;
    let cases = [
        (
            "[roles]\nSIM_READER = [\"getSIMIntegrations\", \"getSimIntegration\"]\n",
            "`roles.SIM_READER`: unknown operation \"getSimIntegration\" (no loaded OpenAPI document defines it; did you mean \"getSIMIntegration\"?)",
        ),
        (
            "[roles]\nSIM_READER = [\"getSIMIntegrationsV2\"]\n",
            "unknown operation \"getSIMIntegrationsV2\"",
        ),
        (
            "[roles]\nORG_ADMIN = [\"@admin\"]\n",
            "`roles.ORG_ADMIN`: unknown group \"@admin\"",
        ),
        ("[role]\nORG_ADMIN = [\"@all\"]\n", "unknown field `role`"),
    ];
    for (policy, want) in cases {
        let e = start_with_policy(&up.url(), policy).await.err().unwrap();
        assert!(e.contains("policy.toml") && e.contains(want), "{e}");
    }
    // Groups expanded from the documents are fine.
    let gw = start_with_policy(&up.url(), "[roles]\nWRITER = [\"@write\"]\n")
        .await
        .unwrap();
    let ops = operations();
    let create = ops
        .iter()
        .find(|o| o.id == "createSIMIntegrationV1")
        .unwrap();
    let get = ops.iter().find(|o| o.id == "getSIMIntegrationsV1").unwrap();
    let t = token("writer", &["WRITER"], &[MANAGE]);
    expect(&gw, &up, create, &t, true, "writer").await;
    expect(&gw, &up, get, &t, false, "writer").await;
    gw.stop().await;
}
