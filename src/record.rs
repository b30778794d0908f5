//! The per-request record: one typed extension that the layers fill in and
//! that, once the response is ready, feeds the access log, the metrics and
//! the audit outcome.
//!
//! [`RecordLayer`] (outermost but for the request id and trace context)
//! creates a [`RequestRecord`] and puts it into the request extensions.
//! Each layer below writes only its own part, once (set-once cells), and
//! reads nothing back from a layer below it:
//!
//! | part | written by |
//! |---|---|
//! | method, path, request id, trace id, peer; the body as read below | [`RecordLayer`] |
//! | why the request failed (one [`crate::error::classify`]) | [`crate::rescue`] |
//! | the bounded reason of an authentication failure | [`crate::auth`] |
//! | principal, operation, path parameters | [`NoteLayer`], from the extensions above it |
//! | the audit intent's `seq` and the forwarded body's digest | [`crate::audit::AuditIntentLayer`] |
//! | forwarded; upstream status and time; a create's new id | [`ForwardLayer`], just above the proxy |
//!
//! When the inner service has answered, [`RecordLayer`] reads the record
//! once: it writes the audit outcome (durable before the response is sent,
//! see [`crate::audit`]), counts the request in [`crate::metrics`] and
//! writes the access-log line ([`crate::access_log`]). A request dropped
//! midway (client gone) is still counted, logged as `499 cancelled`, and
//! its audit outcome is queued by a drop guard.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::audit::record::BodySummary;
use crate::audit::tee::{Seen, tee};
use crate::audit::{Audit, OperationLookup};
use crate::auth::Principal;
use crate::body::{Body, BoxError, full};
use crate::error::{Error, Kind};
use crate::metrics::Metrics;
use crate::net::PeerAddr;
use crate::request_id::RequestId;
use crate::routes::{Operation, PathParams};
use crate::trace_context::TraceContext;

/// Largest create response buffered to find the new id.
pub const MAX_CREATED_RESPONSE: u64 = 64 * 1024;

/// One request's record, shared through the request extensions.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    inner: Arc<Parts>,
}

/// What the layers wrote. Fields are set once; the sinks read them after
/// the inner service has answered.
#[derive(Debug)]
struct Parts {
    start: Instant,
    method: Method,
    path: Box<str>,
    request_id: Option<RequestId>,
    trace: Option<TraceContext>,
    peer: Option<PeerAddr>,
    /// What the layers below read of the body (audited methods only).
    seen: Option<Arc<Seen>>,
    principal: OnceLock<Arc<Principal>>,
    operation: OnceLock<(Arc<Operation>, PathParams)>,
    auth_failure: OnceLock<&'static str>,
    failure: OnceLock<Failure>,
    intent: OnceLock<Intent>,
    forwarded: OnceLock<Instant>,
    upstream: OnceLock<(StatusCode, Duration)>,
    created_id: OnceLock<String>,
}

/// Why a request failed, as rescue classified it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The kind (`None`: not one of ours, answered 500).
    pub kind: Option<Kind>,
    /// The message, safe to log and record (never a token or body content).
    pub reason: String,
}

/// The audit intent of a forwarded mutation.
#[derive(Debug, Clone)]
pub struct Intent {
    /// The intent record's `seq` (`None` when it could not be written and
    /// `fail_open` let the request through).
    pub seq: Option<u64>,
    /// The body as forwarded.
    pub body: Option<BodySummary>,
}

impl RequestRecord {
    /// A record for `req`, from what the layers above put in its
    /// extensions (request id, trace context, peer).
    pub fn new<B>(req: &Request<B>) -> RequestRecord {
        Self::with_seen(req, None)
    }

    fn with_seen<B>(req: &Request<B>, seen: Option<Arc<Seen>>) -> RequestRecord {
        let ext = req.extensions();
        RequestRecord {
            inner: Arc::new(Parts {
                start: Instant::now(),
                method: req.method().clone(),
                path: req.uri().path().into(),
                request_id: ext.get::<RequestId>().cloned(),
                trace: ext.get::<TraceContext>().copied(),
                peer: ext.get::<PeerAddr>().copied(),
                seen,
                principal: OnceLock::new(),
                operation: OnceLock::new(),
                auth_failure: OnceLock::new(),
                failure: OnceLock::new(),
                intent: OnceLock::new(),
                forwarded: OnceLock::new(),
                upstream: OnceLock::new(),
                created_id: OnceLock::new(),
            }),
        }
    }

    // Writers: each layer calls only its own.

    /// The authenticated principal ([`NoteLayer`]).
    pub fn set_principal(&self, principal: Arc<Principal>) {
        let _ = self.inner.principal.set(principal);
    }

    /// The matched operation ([`NoteLayer`]).
    pub fn set_operation(&self, op: Arc<Operation>, params: PathParams) {
        let _ = self.inner.operation.set((op, params));
    }

    /// Why authentication failed, from a fixed list (the auth layer).
    pub fn set_auth_failure(&self, reason: &'static str) {
        let _ = self.inner.auth_failure.set(reason);
    }

    /// Why the request failed (rescue).
    pub fn set_failure(&self, err: &(dyn std::error::Error + 'static)) {
        let classified = crate::error::classify(err);
        let reason = match classified {
            Some(e) => e.to_string(),
            None => "request failed".to_owned(),
        };
        let _ = self.inner.failure.set(Failure {
            kind: classified.map(Error::kind),
            reason,
        });
    }

    /// The audit intent was written (the audit intent layer).
    pub fn set_intent(&self, seq: Option<u64>, body: Option<BodySummary>) {
        let _ = self.inner.intent.set(Intent { seq, body });
    }

    /// The request is handed to the upstream ([`ForwardLayer`]).
    pub fn set_forwarded(&self) {
        let _ = self.inner.forwarded.set(Instant::now());
    }

    /// The upstream answered with `status` after `elapsed` ([`ForwardLayer`]).
    pub fn set_upstream(&self, status: StatusCode, elapsed: Duration) {
        let _ = self.inner.upstream.set((status, elapsed));
    }

    /// A create's new id, from the upstream's answer ([`ForwardLayer`]).
    pub fn set_created_id(&self, id: String) {
        let _ = self.inner.created_id.set(id);
    }

    // Readers: for the sinks, once the inner service has answered.

    /// When the record was created.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.inner.method
    }

    /// The request path (no query).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The request id.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.inner.request_id.as_ref()
    }

    /// The trace id.
    pub fn trace_id(&self) -> Option<&str> {
        self.inner.trace.as_ref().map(TraceContext::trace_id)
    }

    /// The TCP peer.
    pub fn peer(&self) -> Option<PeerAddr> {
        self.inner.peer
    }

    /// The principal, once authenticated.
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        self.inner.principal.get()
    }

    /// The matched operation and its path parameters.
    pub fn operation(&self) -> Option<&(Arc<Operation>, PathParams)> {
        self.inner.operation.get()
    }

    /// The operationId, or `unmatched`.
    pub fn operation_name(&self) -> &str {
        self.operation()
            .map(|(op, _)| op.operation_id.as_str())
            .unwrap_or("unmatched")
    }

    /// Why authentication failed.
    pub fn auth_failure(&self) -> Option<&'static str> {
        self.inner.auth_failure.get().copied()
    }

    /// Why the request failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.inner.failure.get()
    }

    /// The audit intent, if one was written.
    pub fn intent(&self) -> Option<&Intent> {
        self.inner.intent.get()
    }

    /// Whether the request was handed to the upstream.
    pub fn forwarded(&self) -> bool {
        self.inner.forwarded.get().is_some()
    }

    /// The upstream's status and time, when it answered.
    pub fn upstream(&self) -> Option<(StatusCode, Duration)> {
        self.inner.upstream.get().copied()
    }

    /// A create's new id.
    pub fn created_id(&self) -> Option<&str> {
        self.inner.created_id.get().map(String::as_str)
    }

    /// The whole body, if the layers below read it to its end.
    pub fn body_read(&self) -> Option<bytes::Bytes> {
        self.inner.seen.as_ref().and_then(|s| s.complete_body())
    }

    /// The decision label: the failure's kind, `allowed` when the upstream
    /// answered, `local` for what the gateway answered itself (health).
    pub fn decision(&self) -> &'static str {
        match (self.failure(), self.upstream()) {
            (Some(f), _) => f.kind.map(Kind::as_str).unwrap_or("error"),
            (None, Some(_)) => "allowed",
            (None, None) => "local",
        }
    }

    /// The quota class of a 429: `reads` or `mutations` for a matched
    /// operation, `auth_failures` (the failed-authentication limiter, which
    /// refuses before matching) otherwise.
    pub fn rate_limit_class(&self) -> &'static str {
        match self.operation() {
            Some((op, _)) if op.mutating => "mutations",
            Some(_) => "reads",
            None => "auth_failures",
        }
    }
}

/// Creates the [`RequestRecord`] and, when the response is ready, feeds the
/// access log, the metrics and the audit outcome from it.
#[derive(Clone)]
pub struct RecordLayer {
    metrics: Metrics,
    audit: Option<Audit>,
    /// Finds the operation of a request refused before matching, for its
    /// audit record.
    lookup: Option<OperationLookup>,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl RecordLayer {
    /// Records into `metrics`, and into `audit` (with `lookup` for requests
    /// refused before matching) when there is one.
    pub fn new(metrics: Metrics, audit: Option<Audit>, lookup: Option<OperationLookup>) -> Self {
        RecordLayer {
            metrics,
            audit,
            lookup,
        }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Record {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RecordLayer`].
#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    layer: RecordLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Record<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The boxed future of [`Record`].
pub type RecordFuture<E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> Service<Request<Body>> for Record<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RecordFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let audited = self
            .layer
            .audit
            .as_ref()
            .is_some_and(|a| a.audits(req.method()));
        // Keep what the layers below read of an audited request's body; a
        // body nobody reads is never buffered.
        let (req, record) = if audited {
            let (parts, body) = req.into_parts();
            let (body, seen) = tee(body);
            let req = Request::from_parts(parts, body);
            let record = RequestRecord::with_seen(&req, Some(seen));
            (req, record)
        } else {
            let record = RequestRecord::new(&req);
            (req, record)
        };
        let mut req = req;
        req.extensions_mut().insert(record.clone());
        let in_flight = self.layer.metrics.in_flight();
        // Boxed here, so the async block below holds no `S::Future`.
        let fut: RecordFuture<Infallible> = Box::pin(self.inner.call(req));
        let layer = self.layer.clone();
        Box::pin(async move {
            let mut guard = Cancelled {
                layer: Some(layer.clone()),
                record: record.clone(),
            };
            let result = fut.await;
            guard.layer = None;
            if let Ok(res) = &result {
                finish(&layer, &record, res.status()).await;
            }
            drop(in_flight);
            result
        })
    }
}

/// The three sinks, once the response is ready.
async fn finish(layer: &RecordLayer, record: &RequestRecord, status: StatusCode) {
    if let Some(audit) = &layer.audit {
        audit.record_outcome(record, layer.lookup.as_ref()).await;
    }
    count(&layer.metrics, record, status);
    crate::access_log::log(record, status, record.decision());
}

/// Counts the request in every family it concerns.
fn count(metrics: &Metrics, record: &RequestRecord, status: StatusCode) {
    let operation = record.operation_name();
    let decision = record.decision();
    metrics.request(
        operation,
        record.method(),
        status,
        decision,
        record.start().elapsed(),
    );
    if let Some((_, elapsed)) = record.upstream() {
        metrics.upstream_duration(operation, elapsed);
    }
    let Some(kind) = record.failure().map(|f| f.kind) else {
        return;
    };
    match kind {
        Some(Kind::Unauthenticated) => {
            metrics.auth_failure(record.auth_failure().unwrap_or("invalid_token"));
        }
        Some(Kind::RateLimited) => metrics.rate_limited(record.rate_limit_class()),
        Some(Kind::UpstreamUnavailable) => metrics.upstream_error("unavailable"),
        Some(Kind::Timeout) if record.forwarded() => metrics.upstream_error("timeout"),
        _ if record.forwarded() => metrics.upstream_error("other"),
        _ => {}
    }
}

/// Counts, logs and audits a request dropped before it was answered.
struct Cancelled {
    layer: Option<RecordLayer>,
    record: RequestRecord,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        let Some(layer) = self.layer.take() else {
            return;
        };
        // nginx's "client closed request".
        let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
        let record = &self.record;
        if let Some(audit) = &layer.audit {
            audit.record_cancelled(record);
        }
        layer.metrics.request(
            record.operation_name(),
            record.method(),
            status,
            "cancelled",
            record.start().elapsed(),
        );
        crate::access_log::log(record, status, "cancelled");
    }
}

/// Notes the principal and the operation (put into the extensions by the
/// layers above) in the request record. Place it right after matching.
#[derive(Debug, Clone, Default)]
pub struct NoteLayer;

impl<S> Layer<S> for NoteLayer {
    type Service = Note<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Note { inner }
    }
}

/// Service of [`NoteLayer`].
#[derive(Debug, Clone)]
pub struct Note<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Note<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ext = req.extensions();
        if let Some(record) = ext.get::<RequestRecord>() {
            if let Some(p) = ext.get::<Arc<Principal>>() {
                record.set_principal(p.clone());
            }
            if let Some(op) = ext.get::<Arc<Operation>>() {
                let params = ext.get::<PathParams>().cloned().unwrap_or_default();
                record.set_operation(op.clone(), params);
            }
        }
        self.inner.call(req)
    }
}

/// The upstream phase, just above the proxy: marks the request forwarded,
/// times the upstream's answer and, for a create, finds the new id in a
/// small JSON answer (buffered, up to [`MAX_CREATED_RESPONSE`]).
#[derive(Debug, Clone, Default)]
pub struct ForwardLayer {
    created_ids: bool,
}

impl ForwardLayer {
    /// `created_ids`: look for a create's new id (when audits are kept).
    pub fn new(created_ids: bool) -> Self {
        ForwardLayer { created_ids }
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Forward {
            inner,
            created_ids: self.created_ids,
        }
    }
}

/// Service of [`ForwardLayer`].
#[derive(Debug, Clone)]
pub struct Forward<S> {
    inner: S,
    created_ids: bool,
}

impl<S> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = RecordFuture<BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let record = req.extensions().get::<RequestRecord>().cloned();
        let creates = self.created_ids
            && req.method() == Method::POST
            && req
                .extensions()
                .get::<Arc<Operation>>()
                .is_some_and(|op| op.mutating);
        if let Some(r) = &record {
            r.set_forwarded();
        }
        let start = Instant::now();
        let fut: RecordFuture<BoxError> = Box::pin(self.inner.call(req));
        Box::pin(async move {
            let res = fut.await?;
            let Some(record) = record else {
                return Ok(res);
            };
            record.set_upstream(res.status(), start.elapsed());
            if !creates {
                return Ok(res);
            }
            let (res, id) = created_id(res).await?;
            if let Some(id) = id {
                record.set_created_id(id);
            }
            Ok(res)
        })
    }
}

/// For a successful create with a small JSON answer, the new id from it.
async fn created_id(res: Response<Body>) -> Result<(Response<Body>, Option<String>), BoxError> {
    let small_json = res.status().is_success()
        && res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"))
        && res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= MAX_CREATED_RESPONSE);
    if !small_json {
        return Ok((res, None));
    }
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| Error::UpstreamUnavailable(format!("response body: {e}")))?
        .to_bytes();
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
    Ok((Response::from_parts(parts, full(bytes)), id))
}
