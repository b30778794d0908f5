//! A real gateway on an ephemeral loopback port, from config text written
//! into a temporary folder (next to the test issuer's `jwks.json`).

use std::net::SocketAddr;
use std::path::PathBuf;

use simgate::config::Config;
use simgate::server::Running;
use simgate::stack::Gateway;

use super::tokens;

/// The `[auth]` section trusting the shared test issuer (its JWKS is written
/// as `jwks.json` next to the config).
pub fn auth_section() -> String {
    format!(
        r#"
[[auth.issuers]]
issuer = "{}"
audiences = ["{}"]
jwks_file = "jwks.json"
algorithms = ["RS256", "ES256"]
leeway_seconds = 30
"#,
        tokens::ISS,
        tokens::AUD
    )
}

/// The standard test config for an upstream: full gateway mode with the
/// test issuer, the repository's OpenAPI documents and policy.
pub fn standard(upstream_url: &str) -> String {
    let repo = env!("CARGO_MANIFEST_DIR");
    format!(
        r#"
[upstream]
url = "{upstream_url}"
{auth}
[api]
documents = [
  {{ path = "{repo}/config/openapi/sim-integrations.beta.json", mount = "/beta" }},
  {{ path = "{repo}/config/openapi/sim-integrations.v1.json", mount = "/" }},
]

[authz]
policy = "{repo}/config/policy.toml"
scope_match = "any"
"#,
        auth = auth_section()
    )
}

/// [`standard`] with quotas high enough that tests about other concerns
/// never meet the rate limiter (it has its own tests).
pub fn standard_unlimited(upstream_url: &str) -> String {
    format!(
        "{}\n[rate_limit.reads]\nrequests_per_second = 100000\nburst = 100000\n\n[rate_limit.mutations]\nrequests_per_second = 100000\nburst = 100000\n",
        standard(upstream_url)
    )
}

/// The `[server]` line that turns the security layers off.
pub const PASSTHROUGH: &str = "mode = \"passthrough\"";

/// A running gateway and the folder holding its config.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin listener's address, when the config has `[admin] listen`
    /// (it is bound on an ephemeral loopback port instead).
    pub admin: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    running: Option<Running>,
    admin_server: Option<simgate::admin::AdminServer>,
}

impl TestGateway {
    /// Starts a gateway from `body` (everything but `[server]`), with
    /// `server_extra` lines added to `[server]`.
    pub async fn start_with(body: &str, server_extra: &str) -> TestGateway {
        Self::try_start_with(body, server_extra)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Starts a gateway from `body` (everything but `[server]`).
    pub async fn start(body: &str) -> TestGateway {
        Self::start_with(body, "").await
    }

    /// Plain proxying to `upstream_url`, no security layers.
    pub async fn passthrough(upstream_url: &str, server_extra: &str) -> TestGateway {
        let body = format!("[upstream]\nurl = \"{upstream_url}\"\n");
        Self::start_with(&body, &format!("{PASSTHROUGH}\n{server_extra}")).await
    }

    /// Like [`start_with`], returning start-up errors instead of panicking.
    pub async fn try_start_with(body: &str, server_extra: &str) -> Result<TestGateway, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("jwks.json"),
            tokens::issuer().jwks().to_string(),
        )
        .expect("jwks");
        let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n{body}");
        let path = dir.path().join("simgate.toml");
        std::fs::write(&path, &text).expect("config");
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let gateway = Gateway::from_config(config).map_err(|e| e.to_string())?;
        let admin_server = match gateway.config().admin.listen {
            None => None,
            Some(_) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind admin");
                Some(
                    simgate::admin::start_on(listener, gateway.admin())
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = simgate::server::start_on(listener, gateway).map_err(|e| e.to_string())?;
        Ok(TestGateway {
            addr: running.local_addr(),
            admin: admin_server.as_ref().map(|a| a.local_addr()),
            dir,
            running: Some(running),
            admin_server,
        })
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://admin{path}`; the config must have `[admin] listen`.
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self.admin.expect("the config has no [admin] listen");
        format!("http://{addr}{path}")
    }

    /// The folder holding the config (and whatever the gateway writes).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        if let Some(a) = self.admin_server.take() {
            a.shutdown().await;
        }
    }
}
