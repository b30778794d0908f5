//! The `simgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::body::BoxError;
use crate::config::{Config, LogFormat};

/// simgate: an authenticating reverse proxy that gives internal tools
/// least-privilege access to a REST API and audits every change.
#[derive(Debug, Parser)]
#[command(name = "simgate", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway from a config file.
    Serve {
        /// The TOML config file.
        #[arg(long, short, default_value = "config/simgate.toml")]
        config: PathBuf,
        /// Log format, overriding the config's `[log] format`.
        #[arg(long, value_parser = ["pretty", "json"])]
        log_format: Option<String>,
    },
    /// Run the reference upstream and the gateway together on loopback, with
    /// a generated config (and, with authentication, keys and tokens).
    Demo {
        /// Folder for the generated config, keys and tokens.
        #[arg(long, default_value = "simgate-demo")]
        dir: PathBuf,
        /// Gateway port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Admin listener port on 127.0.0.1 (`/metrics`, `/healthz`, `/readyz`).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
    },
    /// Run the reference SIM Integrations API alone.
    Upstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Require the upstream's own OAuth2 tokens: generate an admin and a
        /// read-only client, write their secrets into this folder (mode 600)
        /// and serve `POST /oauth/token`.
        #[arg(long)]
        oauth_dir: Option<PathBuf>,
        /// Lifetime of the tokens `/oauth/token` issues (with `--oauth-dir`).
        #[arg(long, default_value = "12m", value_parser = humantime::parse_duration)]
        token_ttl: std::time::Duration,
    },
    /// Validate a config file and every file it names (exit 0 when valid, 1
    /// when not) and print the effective access matrix (operations × roles),
    /// warning about operations no role can call. Creates no file and starts
    /// nothing.
    Check {
        /// The TOML config file.
        #[arg(long, short, default_value = "config/simgate.toml")]
        config: PathBuf,
        /// Print the access matrix as JSON (for machines) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Mint a signed JWT for tests and demos (printed to stdout).
    Token(TokenArgs),
    /// Work with the audit trail.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `simgate audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain across trail files, oldest first (e.g.
    /// `audit/audit*.jsonl`): names the first bad line (exit 1) or prints the
    /// record count and the last hash (exit 0).
    Verify {
        /// The trail files, in chain order (rotated files first).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `simgate token`: what the token says and what signs it.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// PKCS#8 PEM private key (RSA → RS256, P-256 → ES256), e.g. the demo's
    /// `signing-key.pem`.
    #[arg(long)]
    pub key: PathBuf,
    /// Key id put in the header (must match the key's `kid` in the JWKS).
    #[arg(long)]
    pub kid: String,
    /// Subject (`sub`, also `client_id`).
    #[arg(long)]
    pub sub: String,
    /// Roles (`authorities`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Scopes (`scope`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    /// Issuer (`iss`).
    #[arg(long, default_value = crate::demo::DEMO_ISSUER)]
    pub iss: String,
    /// Audience (`aud`).
    #[arg(long, default_value = crate::demo::DEMO_AUDIENCE)]
    pub aud: String,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(config, log_format),
        Command::Demo {
            dir,
            port,
            admin_port,
        } => runtime().and_then(|rt| rt.block_on(crate::demo::run(&dir, port, admin_port))),
        Command::Upstream {
            listen,
            oauth_dir,
            token_ttl,
        } => upstream(listen, oauth_dir, token_ttl),
        Command::Check { config, json } => check(config, json),
        Command::Token(args) => token(&args).map(|t| println!("{t}")),
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => crate::audit::verify::run(&files).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(path: PathBuf, log_format: Option<String>) -> Result<(), BoxError> {
    let config = Config::load(&path)?;
    let format = match log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Pretty,
        None => config.log.format,
    };
    let _log = crate::telemetry::init(format, &config.log.level);
    crate::runtime::serve(config)
}

fn upstream(
    listen: SocketAddr,
    oauth_dir: Option<PathBuf>,
    token_ttl: std::time::Duration,
) -> Result<(), BoxError> {
    let _log = crate::telemetry::init(LogFormat::Pretty, "info");
    let api = match &oauth_dir {
        None => crate::upstream::Api::new(),
        Some(dir) => {
            let clients = crate::demo::upstream_clients(dir)?;
            for c in &clients {
                println!(
                    "client {} ({}): secret in {}",
                    c.id,
                    if c.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                    dir.join(&c.id).display()
                );
            }
            crate::upstream::Api::with_oauth(crate::upstream::OAuth::new(clients, token_ttl))
        }
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        tracing::info!(addr = %listener.local_addr()?, "reference SIM Integrations API listening");
        crate::upstream::serve_api(listener, api, crate::server::shutdown_signal()).await?;
        Ok(())
    })
}

fn check(path: PathBuf, json: bool) -> Result<(), BoxError> {
    use std::io::Write;
    // Validation only: reads the files, creates none, starts nothing.
    let generation = crate::generation::Generation::load(&path)?;
    let matrix = match (generation.operations(), generation.policy()) {
        (Some(table), Some(policy)) => Some(crate::authz::AccessMatrix::new(table, policy)),
        _ => None,
    };
    if let Some(m) = &matrix {
        for r in m.unreachable() {
            eprintln!(
                "warning: no role can call {} ({} {})",
                r.operation_id, r.method, r.path
            );
        }
    }
    let store = store_status(generation.config())?;
    let unvalidated = generation
        .validators()
        .map(|v| v.unvalidated().to_vec())
        .unwrap_or_default();
    let roles = matrix.as_ref().map(|m| m.roles()).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if json {
        eprintln!("{store}");
        // Passthrough mode has no matrix; the other keys are still there.
        let mut value = matrix
            .as_ref()
            .map(|m| m.to_json())
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "upstream_credentials".into(),
                crate::credentials::describe_json(&generation.config().upstream.credentials, roles),
            );
            let list: Vec<serde_json::Value> = unvalidated
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "operationId": u.operation_id,
                        "mediaType": u.media_type,
                        "reason": u.reason,
                    })
                })
                .collect();
            obj.insert("unvalidated_bodies".into(), list.into());
        }
        writeln!(out, "{value:#}")?;
        return Ok(());
    }
    writeln!(out, "{}: ok", generation.config().path.display())?;
    writeln!(out, "{store}")?;
    match &matrix {
        Some(m) => write!(out, "\nAccess matrix:\n{m}")?,
        None => writeln!(
            out,
            "passthrough mode: no operation matching or authorization"
        )?,
    }
    if !unvalidated.is_empty() {
        writeln!(out, "\nRequest bodies forwarded without schema validation:")?;
        for u in &unvalidated {
            writeln!(
                out,
                "  {}  {}  ({})",
                u.operation_id, u.media_type, u.reason
            )?;
        }
    }
    write!(
        out,
        "\nUpstream credential per role:\n{}",
        crate::credentials::describe(&generation.config().upstream.credentials, roles)
    )?;
    Ok(())
}

/// Which rate limit store `config` uses and, for Redis, whether it answers
/// (one connection and a `PING`, within 2 s). An unreachable store is not a
/// config error (the gateway starts in its degraded mode), only reported.
fn store_status(config: &Config) -> Result<String, BoxError> {
    use crate::rate_limit::store_config::StoreConfig;
    let rate_limit = config.sections.rate_limit.validate(&config.path)?;
    let StoreConfig::Redis(redis) = &rate_limit.store else {
        return Ok("rate limit store: local (each replica counts its own quotas)".into());
    };
    let limit = std::time::Duration::from_secs(2);
    let probe = runtime()?.block_on(crate::rate_limit::redis_store::probe(redis, limit));
    let target = redis.target();
    let mode = format!(
        "on_error = \"{}\", replicas = {}, timeout = {:?}",
        redis.on_error.as_str(),
        redis.replicas,
        redis.timeout
    );
    Ok(match probe {
        Ok(rtt) => format!(
            "rate limit store: redis {target}: reachable (PING {:.1} ms); {mode}",
            rtt.as_secs_f64() * 1000.0
        ),
        Err(why) => {
            eprintln!("warning: rate limit store {target} is unreachable: {why}");
            format!(
                "rate limit store: redis {target}: UNREACHABLE ({why}); until it answers, {mode}"
            )
        }
    })
}

/// Mints the token `simgate token` prints.
pub fn token(args: &TokenArgs) -> Result<String, BoxError> {
    use crate::auth::{clock::Clock, keys, mint};
    let pem =
        std::fs::read_to_string(&args.key).map_err(|e| format!("{}: {e}", args.key.display()))?;
    let key =
        keys::from_pem(&pem, &args.kid).map_err(|e| format!("{}: {e}", args.key.display()))?;
    if args.ttl <= 0 {
        return Err("--ttl must be positive".into());
    }
    let spec = mint::TokenSpec {
        issuer: args.iss.clone(),
        audience: Some(args.aud.clone()).filter(|a| !a.is_empty()),
        subject: args.sub.clone(),
        roles: args
            .roles
            .iter()
            .filter(|r| !r.is_empty())
            .cloned()
            .collect(),
        scopes: args
            .scopes
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        issued_at: crate::auth::clock::SystemClock.now(),
        ttl: args.ttl,
    };
    Ok(mint::mint(&key, &spec.claims())?)
}
