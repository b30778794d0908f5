//! `simgate demo`: the reference upstream and the gateway together on
//! loopback, from a config written into the demo folder.
//!
//! The folder is a contract: `simgate.toml` is the config the demo gateway
//! runs with, usable as is with `simgate serve --config`.

use std::path::Path;

use crate::body::BoxError;
use crate::config::{Config, LogFormat};

/// Writes the demo folder, starts both servers and runs until Ctrl-C.
pub async fn run(dir: &Path, port: u16) -> Result<(), BoxError> {
    crate::telemetry::init(LogFormat::Pretty, "info");
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
    let config_path = dir.join("simgate.toml");
    let text = config_text(port, &format!("http://{upstream_addr}"));
    std::fs::write(&config_path, &text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let gateway = crate::stack::Gateway::from_config(config)?;
    let running = crate::server::start(gateway).await?;
    let url = format!("http://{}", running.local_addr());
    println!(
        "simgate demo\n  gateway:  {url}\n  upstream: http://{upstream_addr} (reference SIM Integrations API)\n  config:   {}\n",
        config_path.display()
    );
    println!("try:\n  curl -s {url}/beta/sim-integrations\n");
    let stop = running.stopper();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        let _ = stop.send(true);
    });
    running.wait().await;
    Ok(())
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

fn config_text(port: u16, upstream: &str) -> String {
    format!(
        r#"# Written by `simgate demo`; usable as is with `simgate serve --config`.
[server]
listen = "127.0.0.1:{port}"

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
"#
    )
}
