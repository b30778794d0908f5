//! The durable, tamper-evident audit trail of mutations.
//!
//! Every request matched to a mutating operation (POST, PUT, PATCH, DELETE;
//! reads too with `record_reads`) leaves records in a JSON Lines file
//! ([`record`]), chained by SHA-256 ([`chain`]), written by one thread that
//! syncs them to stable storage before anyone waiting on them goes on
//! ([`writer`]), rotated by size or UTC day ([`rotate`]), with secrets
//! redacted ([`redact`]), and checked by `simgate audit verify` ([`verify`]).
//!
//! # Three layers, one record per fact
//!
//! The stack ([`crate::stack`]) gives the audit three places:
//!
//! ```text
//! BodyLimit
//! → AuditUnauthenticated   (1) refusals before the operation is matched
//! → [failed-auth limiter] → Authenticate → MatchOperation
//! → AuditOutcome           (2) the outcome of every matched mutation
//! → Authorize → RateLimit → ValidateBody
//! → AuditIntent            (3) the durable intent, before forwarding
//! → Proxy
//! ```
//!
//! 1. [`AuditUnauthenticatedLayer`] records a mutation attempt refused
//!    before matching — by authentication (`unauthenticated`) or by the
//!    failed-auth limiter (`rate_limited`) — with actor `"unauthenticated"`.
//!    It finds the operation with an [`OperationLookup`] only when the
//!    request failed, and skips requests the outcome layer took over, so
//!    nothing is recorded twice. The body of an unauthenticated request is
//!    never read.
//! 2. [`AuditOutcomeLayer`] sees the principal and the operation. It keeps
//!    what the layers below read of the body (without reading it itself),
//!    and after they have answered writes one outcome record: refused
//!    (`forbidden`, `rate_limited`, `invalid`), answered by the upstream
//!    (`allowed`, with status, latency and, for a create, the new id), or
//!    failed upstream (`upstream_error`). A drop guard writes the outcome of
//!    a request cancelled midway (client gone, request timeout).
//! 3. [`AuditIntentLayer`] buffers the body as it will be forwarded, writes
//!    the intent record (with its digest and redacted copy) and waits until
//!    it is on stable storage before the request is forwarded; if it cannot
//!    be written the mutation is refused with 503
//!    ([`crate::error::Error::AuditUnavailable`]) and not forwarded, unless
//!    `fail_open` is set.
//!
//! So an allowed mutation has two records (intent, then outcome with the
//! intent's `seq`); a refused one has one. Refusals and outcomes are also
//! durable before their response is sent, which keeps the writer's queue
//! bounded by the number of requests in flight; a failure to write them is
//! logged and does not change the response. An intent without an outcome
//! means the gateway stopped before the upstream answered. None of the
//! layers is installed in `server.mode = "passthrough"`.

//! ```no_run
//! use simgate::audit::{Audit, AuditConfig};
//! use simgate::body::{Body, BoxError, empty};
//!
//! # fn main() -> std::io::Result<()> {
//! let audit = Audit::start(&AuditConfig::with_path("audit/audit.jsonl"))?;
//! let upstream = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(empty()))
//! });
//! // (MatchOperation goes above the outcome layer; authorization, rate
//! // limiting and validation between the two.)
//! let svc = tower::ServiceBuilder::new()
//!     .layer(audit.outcome_layer())
//!     .layer(audit.intent_layer())
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
pub mod unauthenticated;
pub mod verify;
pub mod writer;

use std::sync::Arc;

use http::Method;

pub use config::{AuditConfig, FlushPolicy};
pub use intent::AuditIntentLayer;
pub use outcome::AuditOutcomeLayer;
pub use redact::Redactor;
pub use unauthenticated::AuditUnauthenticatedLayer;
pub use writer::{AuditError, AuditLog};

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
/// function so the layer can be tested alone.
pub type OperationLookup =
    Arc<dyn Fn(&Method, &str) -> Option<(Arc<Operation>, PathParams)> + Send + Sync>;

/// The audit trail and its settings, shared by the three layers.
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
}

impl Audit {
    /// Starts the writer for `config`. Warns loudly when `fail_open` is set.
    pub fn start(config: &AuditConfig) -> std::io::Result<Audit> {
        Ok(Self::with_log(AuditLog::open(config)?, config))
    }

    /// Uses an already started writer with `config`'s settings.
    pub fn with_log(log: AuditLog, config: &AuditConfig) -> Audit {
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
            }),
        }
    }

    /// The writer.
    pub fn log(&self) -> &AuditLog {
        &self.shared.log
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

    /// Layer (1): refusals before matching.
    pub fn unauthenticated_layer(&self, lookup: OperationLookup) -> AuditUnauthenticatedLayer {
        AuditUnauthenticatedLayer::new(self.clone(), lookup)
    }

    /// Layer (2): the outcome of every matched mutation.
    pub fn outcome_layer(&self) -> AuditOutcomeLayer {
        AuditOutcomeLayer::new(self.clone())
    }

    /// Layer (3): the durable intent before forwarding.
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
