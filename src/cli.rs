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
    },
    /// Run the reference SIM Integrations API alone.
    Upstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
    },
    /// Validate a config file (exit 0 when valid, 1 when not) and print the
    /// effective access matrix (operations × roles), warning about
    /// operations no role can call.
    Check {
        /// The TOML config file.
        #[arg(long, short, default_value = "config/simgate.toml")]
        config: PathBuf,
        /// Print the access matrix as JSON (for machines) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(config, log_format),
        Command::Demo { dir, port } => {
            runtime().and_then(|rt| rt.block_on(crate::demo::run(&dir, port)))
        }
        Command::Upstream { listen } => upstream(listen),
        Command::Check { config, json } => check(config, json),
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
    crate::telemetry::init(format, &config.log.level);
    runtime()?.block_on(async move {
        let gateway = crate::stack::Gateway::from_config(config)?;
        let running = crate::server::start(gateway).await?;
        tracing::info!(addr = %running.local_addr(), "simgate listening");
        let stop = running.stopper();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        running.wait().await;
        Ok(())
    })
}

fn upstream(listen: SocketAddr) -> Result<(), BoxError> {
    crate::telemetry::init(LogFormat::Pretty, "info");
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        tracing::info!(addr = %listener.local_addr()?, "reference SIM Integrations API listening");
        crate::upstream::serve(listener, crate::server::shutdown_signal()).await?;
        Ok(())
    })
}

fn check(path: PathBuf, json: bool) -> Result<(), BoxError> {
    use std::io::Write;
    let config = Config::load(&path)?;
    let gateway = crate::stack::Gateway::from_config(config)?;
    let matrix = match (gateway.operations(), gateway.policy()) {
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
    let mut out = std::io::stdout().lock();
    if json {
        let value = matrix.as_ref().map(|m| m.to_json()).unwrap_or_default();
        writeln!(out, "{value:#}")?;
        return Ok(());
    }
    writeln!(out, "{}: ok", gateway.config().path.display())?;
    match &matrix {
        Some(m) => write!(out, "\nAccess matrix:\n{m}")?,
        None => writeln!(
            out,
            "passthrough mode: no operation matching or authorization"
        )?,
    }
    Ok(())
}
