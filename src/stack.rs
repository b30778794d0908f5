//! The one place where the request path is assembled, outermost first.
//!
//! Each layer has one concern; it rejects with a typed
//! [`crate::error::Error`] and passes what it learned (request id, principal,
//! matched operation) to the layers below in request extensions, and writes
//! its part of the per-request [`crate::record::RequestRecord`], which the
//! outer record layer reads once the response is ready.
//!
//! A [`Gateway`] serves one started [`Generation`] at a time. Each request
//! takes the generation serving when it arrives and runs on it to the end,
//! so a reload ([`crate::reload`]) that swaps in the next one never changes
//! a request midway. What must outlive a generation is handed from each to
//! the next: the audit writer, the rate-limit state of unchanged quotas,
//! the verified-token cache and JWKS URL refreshers of unchanged issuers,
//! the concurrency permits and the listener's certificate resolver.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::{BoxCloneSyncService, Oneshot};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::audit::Audit;
use crate::auth::clock::SystemClock;
use crate::auth::{AuthenticateLayer, Authenticator, IssuersHaveKeys};
use crate::authz::{AuthorizeLayer, Policy};
use crate::body::{Body, BoxError};
use crate::config::Config;
use crate::credentials::{Credentials, UpstreamCredentialLayer};
use crate::error::ConfigError;
use crate::generation::Generation;
use crate::health::{CheckFuture, Health, ReadinessCheck, UpstreamReachable};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, UpstreamRequestLayer};
use crate::rate_limit::RateLimiting;
use crate::rate_limit::client_addr::ClientAddr;
use crate::record::{ForwardLayer, NoteLayer, RecordLayer};
use crate::routes::{MatchOperationLayer, OperationTable};
use crate::tls::CertResolver;
use crate::validate::{ValidateBodyLayer, Validators};

/// The request path of one generation, as the listener calls it.
type Stack = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The running gateway: the generation serving now and what outlives it.
/// Clones share it.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The generation new requests run on.
    current: ArcSwap<Live>,
    /// Held while a reload builds and swaps in the next generation.
    reloading: tokio::sync::Mutex<()>,
    /// The listener's certificate (`None`: plain TCP).
    tls: Option<Arc<CertResolver>>,
    /// The Prometheus registry every layer records into.
    metrics: Metrics,
}

/// One started generation.
struct Live {
    /// 1 for the generation simgate started with, then one more per
    /// applied reload.
    number: u64,
    generation: Arc<Generation>,
    parts: Parts,
    /// The request path built from `parts`.
    service: Stack,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("number", &self.number)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// The started components of one generation.
#[derive(Debug)]
struct Parts {
    health: Health,
    /// `max_concurrent_requests` permits, shared by generations with the
    /// same limit.
    permits: Arc<Semaphore>,
    permit_limit: usize,
    /// `None` in passthrough mode.
    auth: Option<Arc<Authenticator>>,
    proxy: Proxy,
    /// Whose forwarding headers are extended rather than replaced (the
    /// rate limiter's trusted proxies; nobody in passthrough mode).
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
    /// The Prometheus registry every layer records into (the gateway's).
    metrics: Metrics,
}

impl Parts {
    /// Starts `generation`'s components, taking over from `previous` (the
    /// generation being replaced) what outlives it. Spawns the background
    /// tasks (idle-key sweep, JWKS polling and refresh) on the current
    /// runtime; opens the audit trail only when there is no previous one.
    fn start(
        generation: &Generation,
        previous: Option<&Parts>,
        metrics: &Metrics,
    ) -> Result<Parts, ConfigError> {
        let config = generation.config();
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
        let max = config.limits.max_concurrent_requests;
        let permits = match previous {
            Some(p) if p.permit_limit == max => p.permits.clone(),
            _ => Arc::new(Semaphore::new(max)),
        };
        // Unchanged credentials (config and secrets) keep their tokens
        // across a reload; changed ones, a rotated secret file included,
        // start again and fetch anew.
        let credentials = match previous {
            Some(p) if p.credentials.serves(&config.upstream.credentials) => p.credentials.clone(),
            _ => Credentials::start(&config.upstream.credentials, &config.path, metrics)?,
        };
        if credentials.has_token_sources() {
            checks.push(credentials.readiness());
        }
        let Some(security) = generation.security() else {
            return Ok(Parts {
                health: Health::new(
                    &config.server.health_path,
                    &config.server.ready_path,
                    checks,
                ),
                permits,
                permit_limit: max,
                auth: None,
                proxy,
                // Forwarding headers follow `rate_limit.trusted_proxies` here
                // too, though nothing is rate limited.
                client_addr: config
                    .sections
                    .rate_limit
                    .validate(&config.path)?
                    .client_addr,
                credentials,
                operations: None,
                audit: None,
                validators: None,
                rate_limit: None,
                cors: generation.cors().cloned(),
                metrics: metrics.clone(),
            });
        };
        let auth = Authenticator::start(
            &security.auth,
            previous.and_then(|p| p.auth.as_deref()),
            Arc::new(SystemClock),
            metrics.clone(),
        )?;
        checks.push(Arc::new(IssuersHaveKeys(auth.clone())));
        let health = Health::new(
            &config.server.health_path,
            &config.server.ready_path,
            checks,
        );
        // Starts the idle-key sweep on the current runtime.
        let rate_limit = match previous.and_then(|p| p.rate_limit.as_ref()) {
            Some(p) => RateLimiting::carry_over(&security.rate_limit, p),
            None => RateLimiting::start(&security.rate_limit),
        };
        // The shared quota store's state, errors and fallback decisions.
        if let Some(store) = rate_limit.store() {
            store
                .record_into(metrics)
                .map_err(|e| ConfigError::at(&config.path, "rate_limit.store", e))?;
        }
        // Last, so a bad config never creates the trail.
        let audit = match previous.and_then(|p| p.audit.as_ref()) {
            Some(a) => {
                Audit::with_log_and_metrics(a.log().clone(), &security.audit, metrics.clone())
            }
            None => Audit::open(&security.audit, metrics.clone())
                .map_err(|e| ConfigError::at(&config.path, "audit.path", e))?,
        };
        Ok(Parts {
            health,
            permits,
            permit_limit: max,
            auth: Some(auth),
            proxy,
            // One rule for forwarding headers: the rate limiter's trusted proxies.
            client_addr: security.rate_limit.client_addr.clone(),
            credentials,
            operations: Some((security.operations.clone(), security.policy.clone())),
            audit: Some(audit),
            validators: Some(security.validators.clone()),
            rate_limit: Some(rate_limit),
            cors: generation.cors().cloned(),
            metrics: metrics.clone(),
        })
    }
}

impl Gateway {
    /// Validates `config` (reading every file it names) and starts it.
    /// Errors name the file and key at fault.
    pub fn from_config(config: Config) -> Result<Gateway, ConfigError> {
        Self::with_metrics(config, Metrics::new())
    }

    /// Like [`Gateway::from_config`], recording into `metrics` (so counters
    /// carry on across a rebuilt gateway).
    pub fn with_metrics(config: Config, metrics: Metrics) -> Result<Gateway, ConfigError> {
        Self::start(Generation::build(config)?, metrics)
    }

    /// Starts a validated generation, recording into `metrics`: opens the
    /// audit trail, starts the background tasks (on the current tokio
    /// runtime, if any).
    pub fn start(generation: Generation, metrics: Metrics) -> Result<Gateway, ConfigError> {
        let parts = Parts::start(&generation, None, &metrics)?;
        crate::reload::count(&metrics, None, 1);
        let tls = generation
            .tls()
            .cloned()
            .map(|c| Arc::new(CertResolver::new(c)));
        let live = Live::new(1, Arc::new(generation), parts);
        Ok(Gateway {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(live),
                reloading: tokio::sync::Mutex::new(()),
                tls,
                metrics,
            }),
        })
    }

    /// Starts `next` on top of the generation serving now and swaps it in:
    /// requests that arrive from now on run on it, requests under way
    /// finish on theirs. Returns the new generation's number. Callers hold
    /// [`Gateway::reload_lock`] and have checked
    /// [`Generation::restart_required`]. On error nothing changed.
    pub(crate) fn swap_in(&self, next: Generation) -> Result<u64, ConfigError> {
        let current = self.shared.current.load_full();
        let parts = Parts::start(&next, Some(&current.parts), &self.shared.metrics)?;
        if let (Some(resolver), Some(cert)) = (&self.shared.tls, next.tls()) {
            resolver.store(cert.clone());
        }
        let number = current.number + 1;
        self.shared
            .current
            .store(Arc::new(Live::new(number, Arc::new(next), parts)));
        Ok(number)
    }

    /// Serializes reloads.
    pub(crate) async fn reload_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.reloading.lock().await
    }

    /// Runs the readiness checks of the generation serving now (what
    /// `/readyz` answers).
    pub async fn ready(&self) -> Result<(), String> {
        let live = self.shared.current.load_full();
        live.parts.health.ready().await
    }

    /// The metrics every layer records into.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The admin endpoints, to be served by [`crate::admin::start`] on
    /// `[admin] listen`: `/metrics`, `/healthz`, `/readyz` (the readiness of
    /// the generation serving now) and `POST /reload` ([`crate::reload`]).
    pub fn admin(&self) -> crate::admin::Admin {
        let ready = Health::new(
            "/healthz",
            "/readyz",
            vec![Arc::new(CurrentReadiness(self.shared.clone()))],
        );
        let gateway = self.clone();
        crate::admin::Admin::new(self.shared.metrics.clone(), ready).route(
            Method::POST,
            "/reload",
            move |_req| {
                let gateway = gateway.clone();
                async move { crate::reload::answer(&gateway).await }
            },
        )
    }

    /// The number of the generation serving now (1 at start, one more per
    /// applied reload).
    pub fn generation_number(&self) -> u64 {
        self.shared.current.load().number
    }

    /// The generation serving now.
    pub fn generation(&self) -> Arc<Generation> {
        self.shared.current.load().generation.clone()
    }

    /// The configuration serving now.
    pub fn config(&self) -> Arc<Config> {
        self.shared.current.load().generation.config().clone()
    }

    /// The OpenAPI operations requests are matched to (`None` in passthrough
    /// mode).
    pub fn operations(&self) -> Option<Arc<OperationTable>> {
        self.shared.current.load().parts.operations().cloned()
    }

    /// The authorization policy (`None` in passthrough mode).
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.shared.current.load().parts.policy().cloned()
    }

    /// The request checks (`None` in passthrough mode).
    pub fn validators(&self) -> Option<Arc<Validators>> {
        self.shared.current.load().parts.validators.clone()
    }

    /// The audit trail (`None` in passthrough mode).
    pub fn audit(&self) -> Option<Audit> {
        self.shared.current.load().parts.audit.clone()
    }

    /// The listener's TLS acceptor (`None` for plain TCP): every handshake
    /// gets the certificate of the generation serving now.
    pub(crate) fn tls_acceptor(&self) -> Result<Option<tokio_rustls::TlsAcceptor>, BoxError> {
        match &self.shared.tls {
            None => Ok(None),
            Some(resolver) => Ok(Some(crate::tls::acceptor(resolver.clone())?)),
        }
    }

    /// The request path: each request runs on the generation serving when
    /// it arrives.
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
        Current(self.shared.clone())
    }
}

/// The readiness checks of the generation serving now.
#[derive(Debug)]
struct CurrentReadiness(Arc<Shared>);

impl ReadinessCheck for CurrentReadiness {
    fn check(&self) -> CheckFuture<'_> {
        let live = self.0.current.load_full();
        Box::pin(async move { live.parts.health.ready().await })
    }
}

/// The entry point: hands each request to the current generation's stack.
#[derive(Debug, Clone)]
struct Current(Arc<Shared>);

impl Service<Request<Body>> for Current {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Oneshot<Stack, Request<Body>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // One load: the whole request runs on this generation.
        self.0.current.load().service.clone().oneshot(req)
    }
}

impl Live {
    fn new(number: u64, generation: Arc<Generation>, parts: Parts) -> Live {
        let service =
            Stack::new(parts.stack(&generation.config().limits, &generation.config().upstream));
        Live {
            number,
            generation,
            parts,
            service,
        }
    }
}

impl Parts {
    fn operations(&self) -> Option<&Arc<OperationTable>> {
        self.operations.as_ref().map(|(t, _)| t)
    }

    fn policy(&self) -> Option<&Arc<Policy>> {
        self.operations.as_ref().map(|(_, p)| p)
    }

    /// The request path, top to bottom.
    fn stack(
        &self,
        limits: &crate::config::LimitsConfig,
        upstream: &crate::config::UpstreamConfig,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static {
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
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                self.permits.clone(),
            ))
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
            .layer(UpstreamRequestLayer::new(upstream).trusting(self.client_addr.clone()))
            // Send it; stream the answer back.
            .service(self.proxy.clone())
    }
}
