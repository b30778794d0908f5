//! `simgate demo`: the reference upstream and the gateway together on
//! loopback, from a config written into the demo folder.
//!
//! The folder is a contract: `simgate.toml` is the config the demo gateway
//! runs with, usable as is with `simgate serve --config`; `signing-key.pem`
//! is the demo issuer's private key (PKCS#8, freshly generated on every run:
//! tokens of an earlier run stop working), `jwks.json` its public JWKS (with
//! `kid`), and `tokens/<ROLE>.jwt` one token per role of the demo policy.

use std::path::Path;

use crate::body::BoxError;
use crate::config::{Config, LogFormat};

/// Writes the demo folder, starts both servers and runs until Ctrl-C.
pub async fn run(dir: &Path, port: u16, admin_port: u16) -> Result<(), BoxError> {
    let _log = crate::telemetry::init(LogFormat::Pretty, "info");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(crate::upstream::serve(upstream, std::future::pending()));

    for (name, text) in DEMO_FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let tokens = write_keys_and_tokens(dir)?;
    let config_path = dir.join("simgate.toml");
    let text = config_text(port, admin_port, &format!("http://{upstream_addr}"));
    std::fs::write(&config_path, &text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let gateway = crate::stack::Gateway::from_config(config)?;
    let admin = crate::admin::start_configured(&gateway).await?;
    let running = crate::server::start(gateway).await?;
    let url = format!("http://{}", running.local_addr());
    let metrics = admin
        .as_ref()
        .map(|a| format!("http://{}/metrics", a.local_addr()))
        .unwrap_or_default();
    println!(
        "simgate demo\n  gateway:  {url}\n  upstream: http://{upstream_addr} (reference SIM Integrations API)\n  metrics:  {metrics}\n  config:   {}\n",
        config_path.display()
    );
    println!("tokens (valid {}h):", DEMO_TOKEN_TTL / 3600);
    for t in &tokens {
        println!("  {}", t.display());
    }
    println!("\n{}", try_lines(&url, dir));
    let stop = running.stopper();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        let _ = stop.send(true);
    });
    running.wait().await;
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    Ok(())
}

/// Ready-to-paste `curl` lines for the demo gateway at `url`.
fn try_lines(url: &str, dir: &Path) -> String {
    let token = |role: &str| format!("$(cat {}/tokens/{role}.jwt)", dir.display());
    let admin = token("ORG_ADMIN");
    let reader = token("SIM_READER");
    let create = r#"{"name":"demo","description":"made through simgate","type":"ServiceNow Service Desk","attributes":{"password":"s3cret"},"sources":["2c9180835d191a86015d28455b4a2329"],"cluster":"xyzzy999"}"#;
    format!(
        "try:\n\
         # create (ORG_ADMIN; the password is redacted in the audit log)\n\
         curl -s -X POST {url}/beta/sim-integrations -H \"Authorization: Bearer {admin}\" -H 'Content-Type: application/json' -d '{create}'\n\
         # list (SIM_READER may read)\n\
         curl -s {url}/beta/sim-integrations -H \"Authorization: Bearer {reader}\"\n\
         # SIM_READER may not change anything: 403\n\
         curl -s -X DELETE {url}/beta/sim-integrations/ID -H \"Authorization: Bearer {reader}\"\n\
         # patch (RFC 6902)\n\
         curl -s -X PATCH {url}/sim-integrations/v1/ID -H \"Authorization: Bearer {admin}\" -H 'Content-Type: application/json-patch+json' -d '[{{\"op\":\"replace\",\"path\":\"/description\",\"value\":\"patched\"}}]'\n\
         # no token: 401\n\
         curl -s {url}/beta/sim-integrations\n\
         # the audit trail, and its chain check\n\
         tail -n 2 {audit}\n\
         simgate audit verify {audit}\n",
        audit = dir.join("audit/audit.jsonl").display()
    )
}

/// The demo issuer (written into the demo config).
pub const DEMO_ISSUER: &str = "https://idp.simgate.demo";
/// The audience of demo tokens.
pub const DEMO_AUDIENCE: &str = "simgate";
/// The demo signing key's `kid`.
pub const DEMO_KID: &str = "simgate-demo-1";
/// Lifetime of demo tokens, in seconds.
pub const DEMO_TOKEN_TTL: i64 = 12 * 3600;
/// One token per role, with the scopes the vendor's documents declare.
const DEMO_ROLES: [(&str, &str); 3] = [
    (
        "ORG_ADMIN",
        "idn:service-desk-integration:manage idn:service-desk-integration:read",
    ),
    (
        "SERVICE_DESK_ADMIN",
        "idn:service-desk-integration:manage idn:service-desk-integration:read",
    ),
    ("SIM_READER", "idn:service-desk-integration:read"),
];

/// Generates a fresh `signing-key.pem`, writes `jwks.json` and one token per
/// role under `tokens/`; returns the token files.
pub fn write_keys_and_tokens(dir: &Path) -> Result<Vec<std::path::PathBuf>, BoxError> {
    use crate::auth::{keys, mint};
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let key_path = dir.join("signing-key.pem");
    let key = keys::generate_rsa(DEMO_KID)?;
    write(&key_path, &key.pkcs8_pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600));
    }
    write(&dir.join("jwks.json"), &key.jwks().to_string())?;
    let token_dir = dir.join("tokens");
    std::fs::create_dir_all(&token_dir).map_err(|e| format!("{}: {e}", token_dir.display()))?;
    let now = crate::auth::clock::Clock::now(&crate::auth::clock::SystemClock);
    let mut files = Vec::new();
    for (role, scopes) in DEMO_ROLES {
        let spec = mint::TokenSpec {
            issuer: DEMO_ISSUER.into(),
            audience: Some(DEMO_AUDIENCE.into()),
            subject: format!("demo-{}", role.to_ascii_lowercase().replace('_', "-")),
            roles: vec![role.into()],
            scopes: scopes.split(' ').map(str::to_owned).collect(),
            issued_at: now,
            ttl: DEMO_TOKEN_TTL,
        };
        let token = mint::mint(&key, &spec.claims())?;
        let path = token_dir.join(format!("{role}.jwt"));
        write(&path, &token)?;
        files.push(path);
    }
    Ok(files)
}

/// The OpenAPI documents and policy the demo config points at.
const DEMO_FILES: [(&str, &str); 3] = [
    (
        "openapi/sim-integrations.beta.json",
        include_str!("../config/openapi/sim-integrations.beta.json"),
    ),
    (
        "openapi/sim-integrations.v1.json",
        include_str!("../config/openapi/sim-integrations.v1.json"),
    ),
    ("policy.toml", include_str!("../config/policy.toml")),
];

fn config_text(port: u16, admin_port: u16, upstream: &str) -> String {
    format!(
        r#"# Written by `simgate demo`; usable as is with `simgate serve --config`.
[server]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
url = "{upstream}"
[upstream.headers]
"X-SailPoint-Experimental" = "true"

[api]
documents = [
  {{ path = "openapi/sim-integrations.beta.json", mount = "/beta" }},
  {{ path = "openapi/sim-integrations.v1.json", mount = "/" }},
]

[authz]
policy = "policy.toml"
scope_match = "any"

[[auth.issuers]]
issuer = "{DEMO_ISSUER}"
audiences = ["{DEMO_AUDIENCE}"]
jwks_file = "jwks.json"
algorithms = ["RS256"]
leeway_seconds = 30
"#
    )
}
