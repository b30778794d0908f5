//! The one place where the request path is assembled, outermost first.
//!
//! Each layer has one concern; it rejects with a typed
//! [`crate::error::Error`] and passes what it learned (request id, principal,
//! matched operation) to the layers below in request extensions, and writes
//! its part of the per-request [`crate::record::RequestRecord`], which the
//! outer record layer reads once the response is ready.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response};
use tower::{Service, ServiceBuilder};

use crate::audit::{Audit, AuditConfig};
use crate::auth::{AuthenticateLayer, Authenticator, IssuersHaveKeys};
use crate::authz::{AuthorizeLayer, Policy};
use crate::body::Body;
use crate::config::{Config, Mode};
use crate::credentials::{Credentials, UpstreamCredentialLayer};
use crate::error::ConfigError;
use crate::health::{Health, ReadinessCheck, UpstreamReachable};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, UpstreamRequestLayer};
use crate::rate_limit::RateLimiting;
use crate::rate_limit::client_addr::ClientAddr;
use crate::record::{ForwardLayer, NoteLayer, RecordLayer};
use crate::routes::{MatchOperationLayer, OperationTable};
use crate::validate::{ValidateBodyLayer, Validators};

/// Everything the request path shares, built once at start-up.
#[derive(Debug, Clone)]
pub struct Gateway {
    config: Arc<Config>,
    health: Health,
    /// `None` in passthrough mode.
    auth: Option<Arc<Authenticator>>,
    proxy: Proxy,
    /// Whose forwarding headers are extended rather than replaced (the
    /// rate limiter's trusted proxies).
    client_addr: ClientAddr,
    /// The upstream credentials, started (tokens being fetched).
    credentials: Credentials,
    /// The OpenAPI operations and the policy; `None` in passthrough mode.
    operations: Option<(Arc<OperationTable>, Arc<Policy>)>,
    /// The audit trail; `None` in passthrough mode.
    audit: Option<Audit>,
    /// The request body checks; `None` in passthrough mode.
    validators: Option<Arc<Validators>>,
    /// Per-client quotas and the failed-authentication limiter; `None` in
    /// passthrough mode.
    rate_limit: Option<RateLimiting>,
    /// Browser cross-origin requests; `None` unless `[cors]` allows origins.
    cors: Option<crate::cors::CorsGateLayer>,
    /// The Prometheus registry every layer records into.
    metrics: Metrics,
}

impl Gateway {
    /// Builds every component from a validated config. Errors name the file
    /// and key at fault.
    pub fn from_config(config: Config) -> Result<Gateway, ConfigError> {
        Self::with_metrics(config, Metrics::new())
    }

    /// Like [`Gateway::from_config`], recording into `metrics` (so counters
    /// carry on across a rebuilt gateway).
    pub fn with_metrics(config: Config, metrics: Metrics) -> Result<Gateway, ConfigError> {
        let proxy = Proxy::new(&config.upstream)
            .map_err(|e| ConfigError::at(&config.path, "upstream.url", e))?;
        let upstream = &config.upstream.url;
        let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(UpstreamReachable {
            authority: format!(
                "{}:{}",
                upstream.host().unwrap_or("localhost"),
                crate::proxy::default_port(upstream)
            ),
            timeout: config.upstream.connect_timeout,
        })];
        let auth = match config.server.mode {
            Mode::Passthrough => None,
            Mode::Gateway => {
                let auth = Authenticator::with_metrics(
                    &config.sections.auth,
                    &config.path,
                    &config.base_dir,
                    metrics.clone(),
                )?;
                if auth.is_empty() {
                    return Err(ConfigError::at(
                        &config.path,
                        "auth.issuers",
                        "[auth] needs at least one issuer",
                    ));
                }
                checks.push(Arc::new(IssuersHaveKeys(auth.clone())));
                Some(auth)
            }
        };
        let credentials = Credentials::start(&config.upstream.credentials, &config.path)?;
        if credentials.has_token_sources() {
            checks.push(credentials.readiness());
        }
        let health = Health::new(
            &config.server.health_path,
            &config.server.ready_path,
            checks,
        );
        let operations = match config.server.mode {
            Mode::Passthrough => None,
            Mode::Gateway => {
                let table =
                    OperationTable::load(&config.sections.api, &config.path, &config.base_dir)?;
                let policy = Policy::load(
                    &config.sections.authz,
                    &config.path,
                    &config.base_dir,
                    &table,
                )?;
                Some((table, policy))
            }
        };
        let validators = match &operations {
            None => None,
            Some((table, _)) => Some(Validators::compile_with(
                table.operations(),
                |idx| Some(table.document(idx)),
                &config.sections.validation,
                &config.path,
                &config
                    .upstream
                    .headers
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>(),
            )?),
        };
        let cors = crate::cors::CorsGateLayer::from_section(&config.sections.cors, &config.path)?;
        let rate_limit = config.sections.rate_limit.validate(&config.path)?;
        // One rule for forwarding headers: the rate limiter's trusted proxies.
        let client_addr = rate_limit.client_addr.clone();
        let rate_limit = match config.server.mode {
            Mode::Passthrough => None,
            // Starts the idle-key sweep on the current runtime.
            Mode::Gateway => Some(RateLimiting::start(&rate_limit)),
        };
        // The shared quota store's state, errors and fallback decisions.
        if let Some(store) = rate_limit.as_ref().and_then(RateLimiting::store) {
            store
                .record_into(&metrics)
                .map_err(|e| ConfigError::at(&config.path, "rate_limit.store", e))?;
        }
        // Last, so a bad config never creates the trail.
        let audit = match config.server.mode {
            Mode::Passthrough => None,
            Mode::Gateway => {
                let audit = AuditConfig::from_section(
                    &config.sections.audit,
                    &config.path,
                    &config.base_dir,
                )?;
                Some(
                    Audit::open(&audit, metrics.clone())
                        .map_err(|e| ConfigError::at(&config.path, "audit.path", e))?,
                )
            }
        };
        Ok(Gateway {
            config: Arc::new(config),
            health,
            auth,
            proxy,
            client_addr,
            credentials,
            operations,
            validators,
            rate_limit,
            audit,
            cors,
            metrics,
        })
    }

    /// Runs the readiness checks (what `/readyz` answers).
    pub async fn ready(&self) -> Result<(), String> {
        self.health.ready().await
    }

    /// The metrics every layer records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The admin endpoints (`/metrics`, `/healthz`, `/readyz`), to be
    /// served by [`crate::admin::start`] on `[admin] listen`.
    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin::new(self.metrics.clone(), self.health.clone())
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The OpenAPI operations requests are matched to (`None` in passthrough
    /// mode).
    pub fn operations(&self) -> Option<&Arc<OperationTable>> {
        self.operations.as_ref().map(|(t, _)| t)
    }

    /// The authorization policy (`None` in passthrough mode).
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.operations.as_ref().map(|(_, p)| p)
    }

    /// The request checks (`None` in passthrough mode).
    pub fn validators(&self) -> Option<&Arc<Validators>> {
        self.validators.as_ref()
    }

    /// The audit trail (`None` in passthrough mode).
    pub fn audit(&self) -> Option<&Audit> {
        self.audit.as_ref()
    }

    /// The request path, top to bottom.
    pub fn service(
        &self,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        let limits = &self.config.limits;
        // Finds the operation a request refused before matching would have
        // matched, for its audit record.
        let lookup: Option<crate::audit::OperationLookup> = self.operations().map(|table| {
            let table = table.clone();
            Arc::new(move |method: &Method, path: &str| table.find(method, path).ok())
                as crate::audit::OperationLookup
        });
        let rate_limit = self.rate_limit.as_ref();
        ServiceBuilder::new()
            // Request id: taken from the client when well-formed, else generated.
            .layer(crate::request_id::RequestIdLayer)
            // W3C traceparent: the client's when valid, else a new trace; sent upstream.
            .layer(crate::trace_context::TraceContextLayer)
            // The request record every layer below fills in; when the response
            // is ready it feeds the audit outcome, the metrics and the access log.
            .layer(RecordLayer::new(
                self.metrics.clone(),
                self.audit.clone(),
                lookup,
            ))
            // CORS for allowed origins: preflights answered here, without a
            // token; CORS headers on every response to them, errors included.
            .option_layer(self.cors.clone())
            // Every error below becomes a response in the API's error shapes
            // (and its classification goes into the record).
            .layer(crate::rescue::RescueLayer)
            // Heads RFC 9112 forbids and hyper accepts: two Hosts, CL with TE (400).
            .layer(crate::request_head::RequestHeadLayer)
            // /healthz and /readyz, answered here, never proxied or limited.
            .layer(self.health.clone())
            // Shed load beyond max_concurrent_requests (503 + Retry-After).
            .load_shed()
            .concurrency_limit(limits.max_concurrent_requests)
            // The whole request, upstream included, within request_timeout (504).
            .timeout(limits.request_timeout)
            // Bodies over max_body_bytes: 413.
            .layer(crate::limits::BodyLimitLayer::new(limits.max_body_bytes))
            // Peers over their budget of failed authentications: 429 before any
            // token is verified, except for tokens in the verified-token cache.
            .option_layer(
                rate_limit
                    .and_then(RateLimiting::auth_failure_layer)
                    .map(|l| l.verified_by(self.auth.clone())),
            )
            // Bearer JWT from a configured issuer (401); the principal goes into extensions.
            .option_layer(self.auth.clone().map(AuthenticateLayer::new))
            // Match to an OpenAPI operation on the raw path (400 ambiguous, 404, 405).
            .option_layer(self.operations().cloned().map(MatchOperationLayer::new))
            // The principal and the operation go into the request record.
            .layer(NoteLayer)
            // Only operations the policy grants to the caller's roles and scopes (403).
            .option_layer(self.policy().cloned().map(AuthorizeLayer::new))
            // Per-client quotas, reads and mutations apart (429 + Retry-After);
            // RateLimit headers on every counted request.
            .option_layer(rate_limit.map(RateLimiting::layer))
            // Body checks against the operation's schema (415, 413, 400; 403 for patch paths).
            .option_layer(self.validators.clone().map(ValidateBodyLayer::new))
            // Audit the intent durably before forwarding (503 when it cannot be).
            .option_layer(self.audit.as_ref().map(Audit::intent_layer))
            // The caller's upstream credential (503 + Retry-After without a
            // valid token); one refresh and resend on a 401 from upstream (502
            // on a second).
            .layer(UpstreamCredentialLayer::new(
                self.credentials.clone(),
                limits.max_body_bytes,
            ))
            // The upstream phase: forwarded, upstream status and time, a create's new id.
            .layer(ForwardLayer::new(self.audit.is_some()))
            // The upstream request, built in one place: URL, hop-by-hop
            // hygiene, forwarding headers, upstream.headers, Authorization.
            .layer(
                UpstreamRequestLayer::new(&self.config.upstream).trusting(self.client_addr.clone()),
            )
            // Send it; stream the answer back.
            .service(self.proxy.clone())
    }
}
