//! Prometheus metrics: one registry per gateway, served by [`crate::admin`].
//!
//! [`Metrics`] is a cheap handle (`Arc` inside) built once at start-up and
//! handed to whatever records something. It owns the metric families of the
//! request path (requests, durations, refusals, audit, authentication) and
//! lets other concerns register their own families on the same registry
//! ([`Metrics::counter`], [`Metrics::gauge`], [`Metrics::histogram`]), so one
//! scrape shows everything.
//!
//! Label values come only from bounded sets: operationIds of the loaded
//! documents or `unmatched`, standard methods or `other`, status codes,
//! decisions and reasons from fixed lists, configured issuer names. Paths,
//! subjects and client ids are never labels.
//!
//! The scrape is the classic Prometheus text format, version 0.0.4, which
//! every scraper (and `promtool check metrics`) reads.
//!
//! ```
//! let metrics = simgate::metrics::Metrics::new();
//! metrics.auth_failure("expired");
//! assert!(metrics.render().contains("simgate_auth_failures_total{reason=\"expired\"} 1"));
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of the request and upstream duration histograms, in seconds
/// (a gateway adds microseconds; upstreams answer in milliseconds to seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of the audit sync histogram (an fsync: tens of µs to ms).
const SYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The gateway's metrics. Clone it freely; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    auth_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    audit_records: IntCounterVec,
    audit_sync: Histogram,
    audit_queue: IntGauge,
    in_flight: IntGauge,
    jwks_refreshes: IntCounterVec,
    jwks_keys: IntGaugeVec,
    token_cache: IntCounterVec,
    upstream_token_fetches: IntCounterVec,
    /// Families registered by other concerns, by name.
    extra: Mutex<HashMap<String, Extra>>,
}

#[derive(Clone)]
enum Extra {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
    Histogram(HistogramVec),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry holding every family of the request path, with
    /// `simgate_build_info` set.
    #[allow(
        clippy::expect_used,
        reason = "start-up only; the names and labels are constants, built by every unit test"
    )]
    pub fn new() -> Metrics {
        Self::build().expect("the built-in metric families are valid")
    }

    fn build() -> Result<Metrics, prometheus::Error> {
        let r = Registry::new();
        let inner = Inner {
            requests: counter_vec(
                &r,
                "simgate_requests_total",
                "Requests answered, by operation, method, status and decision.",
                &["operation", "method", "status", "decision"],
            )?,
            request_duration: histogram_vec(
                &r,
                "simgate_request_duration_seconds",
                "Time from receiving a request until its response head, by operation.",
                &["operation"],
                DURATION_BUCKETS,
            )?,
            upstream_duration: histogram_vec(
                &r,
                "simgate_upstream_duration_seconds",
                "Time from forwarding a request until the upstream's response head, by operation.",
                &["operation"],
                DURATION_BUCKETS,
            )?,
            upstream_errors: counter_vec(
                &r,
                "simgate_upstream_errors_total",
                "Forwarded requests that got no upstream response, by kind.",
                &["kind"],
            )?,
            auth_failures: counter_vec(
                &r,
                "simgate_auth_failures_total",
                "Requests refused by authentication, by reason.",
                &["reason"],
            )?,
            rate_limited: counter_vec(
                &r,
                "simgate_rate_limited_total",
                "Requests refused with 429, by quota class.",
                &["class"],
            )?,
            audit_records: counter_vec(
                &r,
                "simgate_audit_records_total",
                "Audit records made durable, by kind (intent, outcome), or that failed.",
                &["kind"],
            )?,
            audit_sync: histogram(
                &r,
                "simgate_audit_sync_seconds",
                "Time from submitting an audit record until it is on stable storage.",
                SYNC_BUCKETS,
            )?,
            audit_queue: gauge(
                &r,
                "simgate_audit_queue_depth",
                "Audit records submitted and not yet on stable storage.",
            )?,
            in_flight: gauge(
                &r,
                "simgate_requests_in_flight",
                "Requests being handled now.",
            )?,
            jwks_refreshes: counter_vec(
                &r,
                "simgate_jwks_refreshes_total",
                "JWKS fetches, by issuer and result (ok, error).",
                &["issuer", "result"],
            )?,
            upstream_token_fetches: counter_vec(
                &r,
                "simgate_upstream_token_fetches_total",
                "Token requests of the upstream credentials, by credential and result (ok, error).",
                &["credential", "result"],
            )?,
            jwks_keys: gauge_vec(
                &r,
                "simgate_jwks_keys",
                "Usable signature keys held, by issuer.",
                &["issuer"],
            )?,
            token_cache: counter_vec(
                &r,
                "simgate_token_cache_total",
                "Verified-token cache look-ups, by result (hit, miss).",
                &["result"],
            )?,
            extra: Mutex::new(HashMap::new()),
            registry: r,
        };
        let build = gauge_vec(
            &inner.registry,
            "simgate_build_info",
            "Always 1; the labels name the running build.",
            &["version"],
        )?;
        build
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])?
            .set(1);
        Ok(Metrics {
            inner: Arc::new(inner),
        })
    }

    /// The scrape: every family in the text format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding fails only for families we never build (empty names,
        // mismatched samples); what was written is still served.
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One answered request: `simgate_requests_total` and
    /// `simgate_request_duration_seconds`.
    pub fn request(
        &self,
        operation: &str,
        method: &Method,
        status: StatusCode,
        decision: &str,
        elapsed: Duration,
    ) {
        let labels = [operation, method_label(method), status.as_str(), decision];
        inc(&self.inner.requests, &labels);
        observe(
            &self.inner.request_duration,
            &[operation],
            elapsed.as_secs_f64(),
        );
    }

    /// The time the upstream took to answer a forwarded request.
    pub fn upstream_duration(&self, operation: &str, elapsed: Duration) {
        observe(
            &self.inner.upstream_duration,
            &[operation],
            elapsed.as_secs_f64(),
        );
    }

    /// A forwarded request that got no upstream response (`kind` from a
    /// fixed list: `unavailable`, `timeout`, …).
    pub fn upstream_error(&self, kind: &str) {
        inc(&self.inner.upstream_errors, &[kind]);
    }

    /// A request refused by authentication (`reason` from a fixed list).
    pub fn auth_failure(&self, reason: &str) {
        inc(&self.inner.auth_failures, &[reason]);
    }

    /// A request refused with 429 (`class`: `reads`, `mutations`,
    /// `auth_failures`, …).
    pub fn rate_limited(&self, class: &str) {
        inc(&self.inner.rate_limited, &[class]);
    }

    /// An audit record submitted: it counts in the queue depth until the
    /// returned timer is [done](AuditTimer::done) or dropped.
    pub fn audit_submitted(&self) -> AuditTimer {
        self.inner.audit_queue.inc();
        AuditTimer {
            metrics: self.clone(),
            start: Instant::now(),
            done: false,
        }
    }

    /// One more request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight(self.inner.in_flight.clone())
    }

    /// A JWKS fetch for `issuer` (`ok` false: it failed).
    pub fn jwks_refresh(&self, issuer: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        inc(&self.inner.jwks_refreshes, &[issuer, result]);
    }

    /// A token request of upstream credential `credential` (`ok` false: it
    /// failed).
    pub fn upstream_token_fetch(&self, credential: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        inc(&self.inner.upstream_token_fetches, &[credential, result]);
    }

    /// The number of usable keys `issuer` holds now.
    pub fn jwks_keys(&self, issuer: &str, keys: usize) {
        if let Ok(g) = self.inner.jwks_keys.get_metric_with_label_values(&[issuer]) {
            g.set(i64::try_from(keys).unwrap_or(i64::MAX));
        }
    }

    /// A verified-token cache look-up.
    pub fn token_cache(&self, hit: bool) {
        inc(&self.inner.token_cache, &[if hit { "hit" } else { "miss" }]);
    }

    /// A counter family of another concern, registered on first use (call
    /// it at start-up and keep the family). `name` ends in `_total`; label
    /// values must come from bounded sets. Asking again for the same name
    /// returns the same family; asking for it as another kind, or with an
    /// invalid name, is an error.
    ///
    /// ```
    /// let m = simgate::metrics::Metrics::new();
    /// let reloads = m
    ///     .counter("simgate_reloads_total", "Config reloads, by result.", &["result"])
    ///     .unwrap();
    /// reloads.with_label_values(&["ok"]).inc();
    /// assert!(m.render().contains("simgate_reloads_total{result=\"ok\"} 1"));
    /// ```
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        match self.extra(name, || {
            counter_vec(&self.inner.registry, name, help, labels).map(Extra::Counter)
        })? {
            Extra::Counter(c) => Ok(c),
            _ => Err(clash(name)),
        }
    }

    /// A gauge family of another concern (see [`Metrics::counter`]).
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        match self.extra(name, || {
            gauge_vec(&self.inner.registry, name, help, labels).map(Extra::Gauge)
        })? {
            Extra::Gauge(g) => Ok(g),
            _ => Err(clash(name)),
        }
    }

    /// A histogram family of another concern, in seconds (see
    /// [`Metrics::counter`]); empty `buckets` means Prometheus' defaults.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, prometheus::Error> {
        let buckets = if buckets.is_empty() {
            prometheus::DEFAULT_BUCKETS
        } else {
            buckets
        };
        match self.extra(name, || {
            histogram_vec(&self.inner.registry, name, help, labels, buckets).map(Extra::Histogram)
        })? {
            Extra::Histogram(h) => Ok(h),
            _ => Err(clash(name)),
        }
    }

    fn extra(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Extra, prometheus::Error>,
    ) -> Result<Extra, prometheus::Error> {
        let mut map = self
            .inner
            .extra
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = map.get(name) {
            return Ok(found.clone());
        }
        let made = make()?;
        map.insert(name.to_owned(), made.clone());
        Ok(made)
    }
}

fn clash(name: &str) -> prometheus::Error {
    prometheus::Error::Msg(format!(
        "metric {name} is already registered as another kind"
    ))
}

/// Times one audit record from submission until durable; see
/// [`Metrics::audit_submitted`]. Dropped without [`AuditTimer::done`], it
/// only takes the record off the queue.
#[derive(Debug)]
pub struct AuditTimer {
    metrics: Metrics,
    start: Instant,
    done: bool,
}

impl AuditTimer {
    /// The record of `kind` (`intent`, `outcome`) is durable (`ok`), or
    /// could not be written (counted as kind `failed`).
    pub fn done(mut self, kind: &str, ok: bool) {
        self.done = true;
        let inner = &self.metrics.inner;
        inner.audit_queue.dec();
        if ok {
            inner.audit_sync.observe(self.start.elapsed().as_secs_f64());
            inc(&inner.audit_records, &[kind]);
        } else {
            inc(&inner.audit_records, &["failed"]);
        }
    }
}

impl Drop for AuditTimer {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.inner.audit_queue.dec();
        }
    }
}

/// Counts a request in flight while alive; see [`Metrics::in_flight`].
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a label: the standard ones by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let family = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let family = IntGauge::with_opts(Opts::new(name, help))?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let family = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let family = Histogram::with_opts(opts)?;
    registry.register(Box::new(family.clone()))?;
    Ok(family)
}

/// Adds one to the series of `family` with `labels`; a wrong label count
/// (a bug) is ignored rather than panicking on the request path.
fn inc(family: &IntCounterVec, labels: &[&str]) {
    if let Ok(c) = family.get_metric_with_label_values(labels) {
        c.inc();
    }
}

fn observe(family: &HistogramVec, labels: &[&str], value: f64) {
    if let Ok(h) = family.get_metric_with_label_values(labels) {
        h.observe(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_build_and_render_in_the_classic_format() {
        let m = Metrics::new();
        m.request(
            "getSIMIntegrations",
            &Method::GET,
            StatusCode::OK,
            "allowed",
            Duration::from_millis(3),
        );
        m.request(
            "unmatched",
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            "no_route",
            Duration::from_millis(1),
        );
        let text = m.render();
        assert!(text.contains(
            "simgate_requests_total{decision=\"allowed\",method=\"GET\",operation=\"getSIMIntegrations\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(text.contains("# TYPE simgate_requests_total counter"));
        assert!(text.contains("simgate_build_info{version="));
        assert!(text.contains("# TYPE simgate_request_duration_seconds histogram"));
    }

    #[test]
    fn other_concerns_register_once_and_share() {
        let m = Metrics::new();
        let a = m
            .counter("simgate_things_total", "Things.", &["result"])
            .unwrap();
        let b = m
            .counter("simgate_things_total", "Things.", &["result"])
            .unwrap();
        a.with_label_values(&["ok"]).inc();
        b.with_label_values(&["ok"]).inc();
        assert!(m.render().contains("simgate_things_total{result=\"ok\"} 2"));
        assert!(m.gauge("simgate_things_total", "Clash.", &[]).is_err());
        assert!(m.counter("bad name", "Bad.", &[]).is_err());
    }

    #[test]
    fn audit_timer_and_in_flight_gauges_go_back_down() {
        let m = Metrics::new();
        let t = m.audit_submitted();
        let g = m.in_flight();
        assert!(m.render().contains("simgate_audit_queue_depth 1"));
        assert!(m.render().contains("simgate_requests_in_flight 1"));
        t.done("intent", true);
        drop(g);
        let _ = m.audit_submitted();
        let text = m.render();
        assert!(text.contains("simgate_audit_queue_depth 0"), "{text}");
        assert!(text.contains("simgate_requests_in_flight 0"));
        assert!(text.contains("simgate_audit_records_total{kind=\"intent\"} 1"));
        assert!(text.contains("simgate_audit_sync_seconds_count 1"));
    }
}
