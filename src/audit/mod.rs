//! The durable, tamper-evident audit trail of mutations.
//!
//! Every request matched to a mutating operation (POST, PUT, PATCH, DELETE;
//! reads too with `record_reads`) leaves records in a JSON Lines file
//! ([`record`]), chained by SHA-256 ([`chain`]), written by one thread that
//! syncs them to stable storage before anyone waiting on them goes on
//! ([`writer`]), rotated by size or UTC day ([`rotate`]), with secrets
//! redacted ([`redact`]), and checked by `simgate audit verify` ([`verify`]).
//!
//! # One request record, two audit steps
//!
//! The audit reads the request's [`crate::record::RequestRecord`] and adds
//! one step to the stack ([`crate::stack`]):
//!
//! ```text
//! Record (creates the request record; at the end: audit outcome, metrics, access log)
//! → Rescue → … → Authenticate → MatchOperation → Note → Authorize → RateLimit → ValidateBody
//! → AuditIntent            the durable intent, before forwarding
//! → Forward → Proxy
//! ```
//!
//! 1. [`AuditIntentLayer`] buffers the body as it will be forwarded, writes
//!    the intent record (with its digest and redacted copy) and waits until
//!    it is on stable storage before the request goes on; if it cannot be
//!    written the mutation is refused with 503
//!    ([`crate::error::Error::AuditUnavailable`]) and not forwarded, unless
//!    `fail_open` is set. It notes the intent in the request record.
//! 2. When the response is ready, [`Audit::record_outcome`] writes one
//!    outcome record from the request record ([`outcome`]): refused
//!    (`unauthenticated`, `forbidden`, `rate_limited`, `invalid`, `error`),
//!    answered by the upstream (`allowed`, with status, latency and, for a
//!    create, the new id), or failed upstream (`upstream_error`). Mutations
//!    refused before matching (authentication, the failed-auth limiter) are
//!    recorded with actor `"unauthenticated"` when their path would have
//!    matched an audited operation.
//!
//! So an allowed mutation has two records (intent, then outcome with the
//! intent's `seq`); a refused one has one. Outcomes are durable before
//! their response is sent, which keeps the writer's queue bounded by the
//! number of requests in flight; a failure to write them is logged and does
//! not change the response. An intent without an outcome means the gateway
//! stopped before the upstream answered. Nothing is audited in
//! `server.mode = "passthrough"`.

//! ```no_run
//! use simgate::audit::{Audit, AuditConfig};
//! use simgate::body::{Body, BoxError, empty};
//! use simgate::metrics::Metrics;
//!
//! # fn main() -> std::io::Result<()> {
//! let metrics = Metrics::new();
//! let audit = Audit::open(&AuditConfig::with_path("audit/audit.jsonl"), metrics.clone())?;
//! let upstream = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(empty()))
//! });
//! // (The real stack puts rescue, matching and the checks in between.)
//! let svc = tower::ServiceBuilder::new()
//!     .layer(simgate::record::RecordLayer::new(metrics, Some(audit.clone()), None))
//!     .layer(simgate::rescue::RescueLayer)
//!     .layer(audit.intent_layer())
//!     .layer(simgate::record::ForwardLayer::new(true))
//!     .service(upstream);
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```

pub mod chain;
pub mod config;
pub mod context;
pub mod intent;
pub mod outcome;
pub mod record;
pub mod redact;
pub mod rotate;
pub mod tee;
pub mod verify;
pub mod writer;

use std::sync::Arc;

use http::Method;

pub use config::{AuditConfig, FlushPolicy};
pub use intent::AuditIntentLayer;
pub use redact::Redactor;
pub use writer::{Appended, AuditError, AuditLog};

use crate::metrics::Metrics;
use crate::routes::{Operation, PathParams};

/// The boxed future the audit layers return.
pub type ResponseFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<crate::body::Body>, crate::body::BoxError>,
            > + Send,
    >,
>;

/// Calls `inner` and boxes its future, so the layers' async blocks hold no
/// `S::Future` (which keeps their futures `Send` for any `S`).
fn call_boxed<S>(inner: &mut S, req: http::Request<crate::body::Body>) -> ResponseFuture
where
    S: tower::Service<
            http::Request<crate::body::Body>,
            Response = http::Response<crate::body::Body>,
            Error = crate::body::BoxError,
        >,
    S::Future: Send + 'static,
{
    Box::pin(inner.call(req))
}

/// Finds the operation (and path parameters) a method and raw path would
/// match, if any: the routes' [`crate::routes::OperationTable::find`], as a
/// function so the outcome can be tested alone.
pub type OperationLookup =
    Arc<dyn Fn(&Method, &str) -> Option<(Arc<Operation>, PathParams)> + Send + Sync>;

/// The audit trail and its settings, shared by the intent layer and the
/// outcome step.
#[derive(Debug, Clone)]
pub struct Audit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    log: AuditLog,
    redactor: Redactor,
    fail_open: bool,
    record_reads: bool,
    metrics: Metrics,
}

impl Audit {
    /// Starts the writer for `config`. Warns loudly when `fail_open` is set.
    pub fn start(config: &AuditConfig) -> std::io::Result<Audit> {
        Self::open(config, Metrics::new())
    }

    /// Like [`Audit::start`], counting records into `metrics`.
    pub fn open(config: &AuditConfig, metrics: Metrics) -> std::io::Result<Audit> {
        Ok(Self::with_log_and_metrics(
            AuditLog::open(config)?,
            config,
            metrics,
        ))
    }

    /// Uses an already started writer with `config`'s settings.
    pub fn with_log(log: AuditLog, config: &AuditConfig) -> Audit {
        Self::with_log_and_metrics(log, config, Metrics::new())
    }

    /// Like [`Audit::with_log`], counting records into `metrics`.
    pub fn with_log_and_metrics(log: AuditLog, config: &AuditConfig, metrics: Metrics) -> Audit {
        if config.fail_open {
            tracing::warn!(
                path = %config.path.display(),
                "AUDIT FAIL-OPEN: [audit] fail_open = true; mutations WILL BE FORWARDED \
                 WITHOUT AN AUDIT RECORD whenever the trail cannot be written"
            );
        }
        Audit {
            shared: Arc::new(Shared {
                log,
                redactor: Redactor::new(&config.redact_fields),
                fail_open: config.fail_open,
                record_reads: config.record_reads,
                metrics,
            }),
        }
    }

    /// The writer.
    pub fn log(&self) -> &AuditLog {
        &self.shared.log
    }

    /// Appends `record` and waits until it is durable, timing it in the
    /// metrics (`simgate_audit_sync_seconds`, queue depth, records by kind).
    pub async fn append(&self, record: &record::Record) -> Result<Appended, AuditError> {
        let timer = self.shared.metrics.audit_submitted();
        let result = self.shared.log.append(record).await;
        let kind = match record.kind {
            record::Kind::Intent => "intent",
            record::Kind::Outcome => "outcome",
            record::Kind::Reload => "reload",
        };
        timer.done(kind, result.is_ok());
        result
    }

    /// Appends a reload record and waits until it is durable, counted like
    /// [`Audit::append`] (kind `reload`).
    pub async fn append_reload(
        &self,
        record: &record::ReloadRecord,
    ) -> Result<Appended, AuditError> {
        let timer = self.shared.metrics.audit_submitted();
        let result = self.shared.log.append_reload(record).await;
        timer.done("reload", result.is_ok());
        result
    }

    /// The redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }

    /// Whether mutations go on when their intent cannot be written.
    pub fn fail_open(&self) -> bool {
        self.shared.fail_open
    }

    /// Whether requests with this method are audited.
    pub fn audits(&self, method: &Method) -> bool {
        self.shared.record_reads || crate::routes::is_mutating(method)
    }

    /// Whether requests for this operation are audited.
    pub fn audits_operation(&self, op: &Operation) -> bool {
        self.shared.record_reads || op.mutating
    }

    /// The durable intent before forwarding.
    pub fn intent_layer(&self) -> AuditIntentLayer {
        AuditIntentLayer::new(self.clone())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared helpers for the layers' unit tests.

    use std::sync::Arc;

    use http::Method;

    use super::record::{Actor, Decision, Kind, Record};
    use super::{Audit, AuditConfig};
    use crate::routes::Operation;

    /// An audit writing to a fresh temporary folder.
    pub(crate) fn audit(config: impl FnOnce(&mut AuditConfig)) -> (Audit, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        config(&mut c);
        (Audit::start(&c).unwrap(), dir)
    }

    /// The records written so far.
    pub(crate) fn records(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A minimal record numbered `i` (in its request id).
    pub(crate) fn record(i: usize) -> Record {
        Record {
            kind: Kind::Intent,
            request_id: Some(format!("req-{i}")),
            trace_id: None,
            operation_id: "createSIMIntegration".into(),
            method: "POST".into(),
            path: "/beta/sim-integrations".into(),
            resource_id: None,
            actor: Actor::UNAUTHENTICATED,
            peer: None,
            decision: Decision::Allowed,
            reason: None,
            upstream_status: None,
            latency_ms: None,
            body_sha256: None,
            body_bytes: None,
            body: None,
            created_id: None,
            intent_seq: None,
        }
    }

    /// The audit's steps of the stack around `upstream`: the record layer
    /// (which writes outcomes), rescue, the note of principal and operation,
    /// a check that refuses with `refuse()` when given, the intent layer and
    /// the upstream phase.
    pub(crate) fn stack<F, Fut>(
        audit: &Audit,
        lookup: Option<super::OperationLookup>,
        refuse: Option<fn() -> crate::error::Error>,
        upstream: F,
    ) -> impl tower::Service<
        http::Request<crate::body::Body>,
        Response = http::Response<crate::body::Body>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    where
        F: Fn(http::Request<crate::body::Body>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<
                Output = Result<http::Response<crate::body::Body>, crate::body::BoxError>,
            > + Send
            + 'static,
    {
        tower::ServiceBuilder::new()
            .layer(crate::record::RecordLayer::new(
                crate::metrics::Metrics::new(),
                Some(audit.clone()),
                lookup,
            ))
            .layer(crate::rescue::RescueLayer)
            .layer(crate::record::NoteLayer)
            .layer(tower::layer::layer_fn(move |inner| Refuse {
                inner,
                refuse,
            }))
            .layer(audit.intent_layer())
            .layer(crate::record::ForwardLayer::new(true))
            .service_fn(upstream)
    }

    /// Refuses every request with `refuse()`, when given (a stand-in for
    /// authorization, rate limiting and validation).
    #[derive(Clone)]
    pub(crate) struct Refuse<S> {
        inner: S,
        refuse: Option<fn() -> crate::error::Error>,
    }

    impl<S> tower::Service<http::Request<crate::body::Body>> for Refuse<S>
    where
        S: tower::Service<
                http::Request<crate::body::Body>,
                Response = http::Response<crate::body::Body>,
                Error = crate::body::BoxError,
            >,
        S::Future: Send + 'static,
    {
        type Response = http::Response<crate::body::Body>;
        type Error = crate::body::BoxError;
        type Future = super::ResponseFuture;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: http::Request<crate::body::Body>) -> Self::Future {
            match self.refuse {
                Some(error) => Box::pin(std::future::ready(Err(error().into()))),
                None => Box::pin(self.inner.call(req)),
            }
        }
    }

    /// An operation like the SIM Integrations API's.
    pub(crate) fn operation(id: &str, method: Method, template: &str) -> Arc<Operation> {
        Arc::new(Operation {
            operation_id: id.into(),
            mutating: crate::routes::is_mutating(&method),
            method,
            path_template: template.into(),
            scopes: vec![],
            request_bodies: vec![],
            path_params: vec![],
            document: 0,
            index: 0,
            ..Default::default()
        })
    }
}
