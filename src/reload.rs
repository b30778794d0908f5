//! Live reload: `SIGHUP` (and `POST /reload` on the admin listener) builds
//! the next generation from the config file and swaps it in atomically.
//!
//! A reload reads and validates everything again ([`Generation::load`]):
//! the config file, the OpenAPI documents, the policy, the JWKS files, the
//! TLS certificate and key. Then, only if all of it is valid and no key
//! that needs a restart changed ([`Generation::restart_required`]), the new
//! generation is started on top of the current one and swapped in; requests
//! under way finish on the generation they started with. Otherwise the
//! reload is refused as a whole, the current generation keeps serving, and
//! the error names the file and the key.
//!
//! Every reload, applied or refused, is logged, counted
//! (`simgate_config_reloads_total{result="applied"|"refused"}`, and the
//! `simgate_config_generation` gauge) and written to the audit trail as a
//! chained [`ReloadRecord`] (generation, result, the files read and their
//! SHA-256). Reloads run one at a time. `POST /reload` on the admin
//! listener answers 200 with [`Reloaded`] as JSON, or 400 with the error
//! and the generation still serving.

use std::path::PathBuf;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::audit::record::{FileDigest, Kind, ReloadRecord};
use crate::body::{Body, full};
use crate::error::ConfigError;
use crate::generation::{Generation, combined, digests};
use crate::metrics::Metrics;
use crate::stack::Gateway;

/// An applied reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    /// SHA-256 over the files read.
    pub sha256: String,
    /// The files read, each with its SHA-256.
    pub files: Vec<FileDigest>,
}

/// Why a reload was refused; the previous generation keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid (the message names file and key).
    #[error("{0}")]
    Invalid(String),
    /// Keys that cannot change while simgate runs were changed.
    #[error("{file}: cannot change without a restart: {}", keys.join(", "))]
    RestartRequired {
        /// The config file.
        file: PathBuf,
        /// The keys, as named in the file.
        keys: Vec<&'static str>,
    },
}

impl From<ConfigError> for ReloadError {
    fn from(e: ConfigError) -> Self {
        ReloadError::Invalid(e.0)
    }
}

/// What a refused reload leaves: the error, and the generation still
/// serving.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reload refused (generation {generation} keeps serving): {error}")]
pub struct Refused {
    /// The generation still serving.
    pub generation: u64,
    /// Why.
    pub error: ReloadError,
}

/// Reloads `gateway` from its config file. Waits for a reload under way to
/// finish first.
pub async fn reload(gateway: &Gateway) -> Result<Reloaded, Refused> {
    let _one_at_a_time = gateway.reload_lock().await;
    let path = gateway.config().path.clone();
    let current = gateway.generation();
    // Reading files and compiling schemas blocks: off the runtime's threads.
    let loaded = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Generation::load(&path))
            .await
            .unwrap_or_else(|e| Err(ConfigError(format!("reload task failed: {e}"))))
    };
    let outcome = loaded.map_err(ReloadError::from).and_then(|next| {
        let keys = current.restart_required(&next);
        if !keys.is_empty() {
            return Err(ReloadError::RestartRequired {
                file: path.clone(),
                keys,
            });
        }
        let files = next.files().to_vec();
        let sha256 = next.sha256().to_owned();
        let generation = gateway.swap_in(next)?;
        Ok(Reloaded {
            generation,
            sha256,
            files,
        })
    });
    let record = match &outcome {
        Ok(r) => {
            tracing::info!(
                generation = r.generation,
                sha256 = %r.sha256,
                config = %path.display(),
                "configuration reloaded"
            );
            ReloadRecord {
                kind: Kind::Reload,
                generation: r.generation,
                result: "applied",
                config: path.display().to_string(),
                sha256: r.sha256.clone(),
                files: r.files.clone(),
                error: None,
            }
        }
        Err(e) => {
            let generation = gateway.generation_number();
            tracing::error!(
                generation,
                config = %path.display(),
                error = %e,
                "reload refused; the running configuration keeps serving"
            );
            let files = digests(&[&path]);
            ReloadRecord {
                kind: Kind::Reload,
                generation,
                result: "refused",
                config: path.display().to_string(),
                sha256: combined(&files),
                files,
                error: Some(e.to_string()),
            }
        }
    };
    count(
        gateway.metrics(),
        Some(record.result),
        gateway.generation_number(),
    );
    if let Some(audit) = gateway.audit()
        && let Err(e) = audit.append_reload(&record).await
    {
        tracing::error!(error = %e, generation = record.generation, "reload not audited");
    }
    outcome.map_err(|error| Refused {
        generation: gateway.generation_number(),
        error,
    })
}

/// `POST /reload` on the admin listener: 200 with [`Reloaded`], or 400
/// with `{"error": …, "generation": …}`.
pub(crate) async fn answer(gateway: &Gateway) -> Response<Body> {
    let (status, body) = match reload(gateway).await {
        Ok(r) => (StatusCode::OK, serde_json::to_value(&r).unwrap_or_default()),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": e.error.to_string(), "generation": e.generation }),
        ),
    };
    let mut res = Response::new(full(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Counts a reload (`result`: `applied` or `refused`; `None` at start, which
/// only shows both series at zero) and sets the generation gauge.
pub(crate) fn count(metrics: &Metrics, result: Option<&str>, generation: u64) {
    match metrics.counter(
        "simgate_config_reloads_total",
        "Configuration reloads, by result (applied, refused).",
        &["result"],
    ) {
        Ok(reloads) => {
            for r in ["applied", "refused"] {
                let series = reloads.with_label_values(&[r]);
                if result == Some(r) {
                    series.inc();
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "reload counter unavailable"),
    }
    match metrics.gauge(
        "simgate_config_generation",
        "The configuration generation serving (1 at start, one more per applied reload).",
        &[],
    ) {
        Ok(g) => g
            .with_label_values(&[] as &[&str])
            .set(i64::try_from(generation).unwrap_or(i64::MAX)),
        Err(e) => tracing::error!(error = %e, "generation gauge unavailable"),
    }
}

/// Listens for `SIGHUP` now (so a signal sent from here on is never the
/// default "terminate") and returns the task that reloads `gateway` on
/// each one. Call inside the tokio runtime. Outside Unix there is no
/// `SIGHUP`: the task just returns.
pub fn on_sighup(
    gateway: Gateway,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        Ok(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // Logged and audited by `reload`.
                let _ = reload(&gateway).await;
            }
        })
    }
    #[cfg(not(unix))]
    {
        drop(gateway);
        Ok(std::future::ready(()))
    }
}
