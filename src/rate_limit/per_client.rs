//! [`RateLimitLayer`]: per-client quotas (governor, GCRA), reads and
//! mutations counted separately.
//!
//! The key is the authenticated principal's client key (`client_id`, falling
//! back to `sub`), never anything the client can choose in a header. A
//! request without a principal (only possible if the layer is placed before
//! authentication) is counted under its client address instead (see
//! [`super::client_addr`]), under the default quotas. Whether a request
//! mutates comes from the matched operation, or from its method when no
//! operation was matched.
//!
//! Every counted request gets the IETF draft fields
//! (draft-ietf-httpapi-ratelimit-headers), on success and on any error
//! further down:
//!
//! ```text
//! RateLimit-Policy: "reads";q=40;w=2, "mutations";q=5;w=3
//! RateLimit: "reads";r=39;t=1
//! ```
//!
//! `RateLimit-Policy` lists the client's two policies (`q` = burst, `w` =
//! seconds to refill it from empty); `RateLimit` is the state of the policy
//! this request counted against (`r` = requests that may follow at once,
//! `t` = seconds until the full burst is back). Overridden policies are
//! named `<override>-reads` / `<override>-mutations`.
//!
//! **Rejects** a request over its quota with [`Error::RateLimited`] (429,
//! `Retry-After` = the exact wait rounded up, the same two fields with
//! `r=0`) without calling the inner service. With a shared store (`store =
//! "redis"`) the inner service is called once the store has decided (within
//! its `timeout`); while the store is down, its `on_error` policy decides
//! (see [`super::quotas`]), `deny` refusing with
//! [`Error::RateLimitStoreUnavailable`] (503).
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response};
//! use simgate::body::{Body, BoxError, empty};
//! use simgate::rate_limit::{ClientQuotas, RateLimitLayer, config::RateLimitConfig};
//! use tower::ServiceBuilder;
//!
//! let quotas = Arc::new(ClientQuotas::new(&RateLimitConfig::default()));
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(quotas))
//!     .service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(empty())) });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use governor::clock::{Clock, DefaultClock};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::quotas::{Check, ClientQuotas};
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::rescue::ErrorHeaders;

/// Applies [`ClientQuotas`] to every request.
#[derive(Debug)]
pub struct RateLimitLayer<C: Clock = DefaultClock> {
    quotas: Arc<ClientQuotas<C>>,
}

impl<C: Clock> Clone for RateLimitLayer<C> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            quotas: self.quotas.clone(),
        }
    }
}

impl<C: Clock> RateLimitLayer<C> {
    /// Limits with `quotas` (shared, so their state outlives any one
    /// connection's service).
    pub fn new(quotas: Arc<ClientQuotas<C>>) -> Self {
        RateLimitLayer { quotas }
    }
}

impl<S, C: Clock> Layer<S> for RateLimitLayer<C> {
    type Service = RateLimit<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            quotas: self.quotas.clone(),
        }
    }
}

/// Service of [`RateLimitLayer`].
#[derive(Debug)]
pub struct RateLimit<S, C: Clock = DefaultClock> {
    inner: S,
    quotas: Arc<ClientQuotas<C>>,
}

impl<S: Clone, C: Clock> Clone for RateLimit<S, C> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            quotas: self.quotas.clone(),
        }
    }
}

impl<S, B, C> Service<Request<B>> for RateLimit<S, C>
where
    S: Service<Request<B>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.quotas.check(&req) {
            Check::Now(Err(error)) => ResponseFuture {
                state: State::Limited { error: Some(error) },
            },
            Check::Now(Ok(headers)) => {
                let carry = Carry::new(&req, headers);
                ResponseFuture {
                    state: State::Called {
                        inner: self.inner.call(req),
                        carry: Some(carry),
                    },
                }
            }
            Check::Shared(decision) => {
                // The ready service goes into the future; a fresh clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = async move {
                    let headers = decision.await?;
                    let carry = Carry::new(&req, headers);
                    let res = inner.call(req).await;
                    carry.finish(res)
                };
                ResponseFuture {
                    state: State::Shared {
                        future: SharedFuture(Box::pin(shared)),
                    },
                }
            }
        }
    }
}

/// Where the `RateLimit` headers of an allowed request wait.
#[derive(Debug)]
enum Carry {
    /// In the future itself (no [`ErrorHeaders`] in the request).
    Here(HeaderMap),
    /// In the request's [`ErrorHeaders`].
    Slot(ErrorHeaders),
}

impl Carry {
    /// Keeps `headers` where Rescue finds them should the request fail below.
    fn new<B>(req: &Request<B>, headers: HeaderMap) -> Self {
        match req.extensions().get::<ErrorHeaders>() {
            Some(slot) => {
                slot.set(headers);
                Carry::Slot(slot.clone())
            }
            None => Carry::Here(headers),
        }
    }

    /// Puts the headers on a successful response.
    fn finish(self, res: Result<Response<Body>, BoxError>) -> Result<Response<Body>, BoxError> {
        let mut res = res?;
        let headers = match self {
            Carry::Here(h) => h,
            Carry::Slot(slot) => slot.take(),
        };
        res.headers_mut().extend(headers);
        Ok(res)
    }
}

/// The future of a request decided by the shared store.
struct SharedFuture(Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>);

impl std::fmt::Debug for SharedFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedFuture")
    }
}

pin_project! {
    /// Future of [`RateLimit`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Projection]
    #[derive(Debug)]
    enum State<F> {
        // Over quota; the inner service was not called.
        Limited { error: Option<Error> },
        // Allowed; the headers go on the response.
        Called { #[pin] inner: F, carry: Option<Carry> },
        // Decided by the shared store, then called.
        Shared { future: SharedFuture },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projection::Limited { error } => Poll::Ready(Err(error.take().map_or_else(
                || "rate limit future polled after completion".into(),
                Into::into,
            ))),
            Projection::Called { inner, carry } => {
                let res = ready!(inner.poll(cx));
                Poll::Ready(match carry.take() {
                    Some(carry) => carry.finish(res),
                    None => res,
                })
            }
            Projection::Shared { future } => future.0.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::net::PeerAddr;
    use crate::rate_limit::RateLimiting;
    use crate::rate_limit::config::RateLimitSection;
    use crate::rescue::RescueLayer;
    use crate::routes::Operation;
    use governor::clock::FakeRelativeClock;
    use http::Method;
    use http::header::RETRY_AFTER;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::{ServiceBuilder, ServiceExt};

    /// reads: 2/s, burst 3; mutations: 1/s, burst 2; `batch` and `ADMIN`
    /// overridden.
    const SECTION: &str = r#"
trusted_proxies = ["10.0.0.0/8"]
[reads]
requests_per_second = 2
burst = 3
[mutations]
requests_per_second = 1
burst = 2
[[overrides]]
name = "batch"
client = "batch"
reads = { requests_per_second = 10, burst = 10 }
[[overrides]]
role = "ADMIN"
reads = { requests_per_second = 5, burst = 5 }
mutations = { requests_per_second = 5, burst = 4 }
[[overrides]]
role = "AUDITOR"
reads = { requests_per_second = 1, burst = 1 }
"#;

    struct Rig {
        clock: FakeRelativeClock,
        limits: RateLimiting<FakeRelativeClock>,
        reached: Arc<AtomicUsize>,
    }

    fn rig() -> Rig {
        let section: RateLimitSection = toml::from_str(SECTION).unwrap();
        let config = section.validate(std::path::Path::new("t.toml")).unwrap();
        let clock = FakeRelativeClock::default();
        Rig {
            limits: RateLimiting::with_clock(&config, clock.clone()),
            clock,
            reached: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A principal with client key `client` (shared with other test modules).
    pub(crate) fn principal(client: &str, roles: &[&str]) -> Arc<Principal> {
        Arc::new(Principal {
            subject: format!("sub-{client}"),
            client_key: client.to_owned(),
            issuer: "https://idp.test".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes: Vec::new(),
            token_id: None,
        })
    }

    /// A read or mutating operation (shared with other test modules).
    pub(crate) fn operation(mutating: bool) -> Arc<Operation> {
        Arc::new(Operation {
            operation_id: if mutating {
                "createSIMIntegration"
            } else {
                "getSIMIntegrations"
            }
            .into(),
            method: if mutating { Method::POST } else { Method::GET },
            path_template: "/beta/sim-integrations".into(),
            mutating,
            scopes: Vec::new(),
            request_bodies: Vec::new(),
            path_params: Vec::new(),
            document: 0,
            index: 0,
            ..Default::default()
        })
    }

    #[derive(Clone, Copy)]
    enum Inner {
        Ok,
        Fails,
    }

    impl Rig {
        /// One request through Rescue → RateLimit → a counting inner service.
        async fn call(&self, req: Request<Body>, inner: Inner) -> (Response<()>, String) {
            let reached = self.reached.clone();
            let svc = ServiceBuilder::new()
                .layer(RescueLayer)
                .layer(self.limits.layer())
                .service_fn(move |_req: Request<Body>| {
                    reached.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match inner {
                            Inner::Ok => Ok(Response::new(crate::body::empty())),
                            Inner::Fails => Err(BoxError::from(Error::InvalidBody {
                                messages: vec!["nope".into()],
                            })),
                        }
                    }
                });
            let (parts, body) = svc.oneshot(req).await.unwrap().into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (
                Response::from_parts(parts, ()),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }

        async fn send(&self, client: &str, roles: &[&str], mutating: bool) -> Response<()> {
            let mut req = Request::new(crate::body::empty());
            req.extensions_mut().insert(principal(client, roles));
            req.extensions_mut().insert(operation(mutating));
            self.call(req, Inner::Ok).await.0
        }

        fn reached(&self) -> usize {
            self.reached.load(Ordering::SeqCst)
        }
    }

    fn header<'a>(res: &'a Response<()>, name: &str) -> &'a str {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn burst_then_429_with_headers_counting_down() {
        let rig = rig();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let res = rig.send("alice", &[], false).await;
            assert_eq!(res.status(), 200);
            assert_eq!(
                header(&res, "ratelimit-policy"),
                "\"reads\";q=3;w=2, \"mutations\";q=2;w=2"
            );
            seen.push(header(&res, "ratelimit").to_owned());
        }
        assert_eq!(
            seen,
            [
                "\"reads\";r=2;t=1",
                "\"reads\";r=1;t=1",
                "\"reads\";r=0;t=2"
            ]
        );
        assert_eq!(rig.reached(), 3);

        let mut req = Request::new(crate::body::empty());
        req.extensions_mut().insert(principal("alice", &[]));
        req.extensions_mut().insert(operation(false));
        let (res, body) = rig.call(req, Inner::Ok).await;
        assert_eq!(res.status(), 429);
        assert_eq!(body, r#"{"message":"Rate Limit Exceeded"}"#);
        assert_eq!(header(&res, "content-type"), "application/json");
        assert_eq!(header(&res, "retry-after"), "1");
        assert_eq!(header(&res, "ratelimit"), "\"reads\";r=0;t=2");
        assert_eq!(
            header(&res, "ratelimit-policy"),
            "\"reads\";q=3;w=2, \"mutations\";q=2;w=2"
        );
        // Never reached the inner service.
        assert_eq!(rig.reached(), 3);
    }

    #[tokio::test]
    async fn retry_after_is_exact_and_honoured() {
        let rig = rig();
        // AUDITOR reads: 1 per second, burst 1.
        assert_eq!(rig.send("carol", &["AUDITOR"], false).await.status(), 200);
        rig.clock.advance(Duration::from_millis(200));
        let res = rig.send("carol", &["AUDITOR"], false).await;
        assert_eq!(res.status(), 429);
        // 800 ms left, rounded up.
        assert_eq!(res.headers()[RETRY_AFTER], "1");
        rig.clock.advance(Duration::from_millis(799));
        assert_eq!(rig.send("carol", &["AUDITOR"], false).await.status(), 429);
        rig.clock.advance(Duration::from_millis(1));
        assert_eq!(rig.send("carol", &["AUDITOR"], false).await.status(), 200);

        // Mutations: burst 2 at 1/s; waiting Retry-After whole seconds works.
        for _ in 0..2 {
            assert_eq!(rig.send("dave", &[], true).await.status(), 200);
        }
        let res = rig.send("dave", &[], true).await;
        assert_eq!(res.status(), 429);
        let wait: u64 = header(&res, "retry-after").parse().unwrap();
        assert_eq!(wait, 1);
        rig.clock.advance(Duration::from_secs(wait));
        assert_eq!(rig.send("dave", &[], true).await.status(), 200);
    }

    #[tokio::test]
    async fn clients_are_independent() {
        let rig = rig();
        for _ in 0..3 {
            assert_eq!(rig.send("alice", &[], false).await.status(), 200);
        }
        assert_eq!(rig.send("alice", &[], false).await.status(), 429);
        let res = rig.send("bob", &[], false).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit"), "\"reads\";r=2;t=1");
    }

    #[tokio::test]
    async fn reads_and_mutations_are_limited_separately() {
        let rig = rig();
        for _ in 0..2 {
            assert_eq!(rig.send("alice", &[], true).await.status(), 200);
        }
        let res = rig.send("alice", &[], true).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "ratelimit"), "\"mutations\";r=0;t=2");
        // Reads are untouched.
        let res = rig.send("alice", &[], false).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit"), "\"reads\";r=2;t=1");
        // Without a matched operation, the method decides.
        let mut req = Request::builder()
            .method(Method::DELETE)
            .body(crate::body::empty())
            .unwrap();
        req.extensions_mut().insert(principal("alice", &[]));
        assert_eq!(rig.call(req, Inner::Ok).await.0.status(), 429);
    }

    #[tokio::test]
    async fn overrides_by_client_then_first_role() {
        let rig = rig();
        // Client override: reads 10, mutations stay default (and shared).
        let res = rig.send("batch", &["ADMIN"], false).await;
        assert_eq!(
            header(&res, "ratelimit-policy"),
            "\"batch-reads\";q=10;w=1, \"mutations\";q=2;w=2"
        );
        assert_eq!(header(&res, "ratelimit"), "\"batch-reads\";r=9;t=1");
        for _ in 0..9 {
            assert_eq!(rig.send("batch", &[], false).await.status(), 200);
        }
        assert_eq!(rig.send("batch", &[], false).await.status(), 429);
        let res = rig.send("batch", &[], true).await;
        assert_eq!(header(&res, "ratelimit"), "\"mutations\";r=1;t=1");
        // Role override: the first listed role the principal holds.
        let res = rig.send("erin", &["AUDITOR", "ADMIN"], true).await;
        assert_eq!(
            header(&res, "ratelimit-policy"),
            "\"override-2-reads\";q=5;w=1, \"override-2-mutations\";q=4;w=1"
        );
        assert_eq!(
            header(&res, "ratelimit"),
            "\"override-2-mutations\";r=3;t=1"
        );
        // Each holder of a role has its own counters.
        let res = rig.send("frank", &["ADMIN"], true).await;
        assert_eq!(
            header(&res, "ratelimit"),
            "\"override-2-mutations\";r=3;t=1"
        );
        let res = rig.send("gina", &["AUDITOR"], false).await;
        assert_eq!(header(&res, "ratelimit"), "\"override-3-reads\";r=0;t=1");
    }

    #[tokio::test]
    async fn forwarding_headers_never_change_the_key() {
        let rig = rig();
        for i in 0..3 {
            let mut req = Request::builder()
                .header("x-forwarded-for", format!("192.0.2.{i}"))
                .header("x-real-ip", format!("192.0.2.{i}"))
                .header("forwarded", format!("for=192.0.2.{i}"))
                .body(crate::body::empty())
                .unwrap();
            req.extensions_mut().insert(principal("alice", &[]));
            req.extensions_mut()
                .insert(PeerAddr(format!("10.0.0.{i}:1").parse().unwrap()));
            assert_eq!(rig.call(req, Inner::Ok).await.0.status(), 200);
        }
        assert_eq!(rig.send("alice", &[], false).await.status(), 429);
    }

    #[tokio::test]
    async fn without_a_principal_the_client_address_is_the_key() {
        let rig = rig();
        let send = |peer: &str, xff: &str| {
            let mut req = Request::builder()
                .header("x-forwarded-for", xff)
                .body(crate::body::empty())
                .unwrap();
            req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
            rig.call(req, Inner::Ok)
        };
        // An untrusted peer: its spoofed header is ignored.
        for i in 0..3 {
            let res = send("203.0.113.9:1", &format!("192.0.2.{i}")).await.0;
            assert_eq!(res.status(), 200);
        }
        assert_eq!(send("203.0.113.9:1", "192.0.2.99").await.0.status(), 429);
        // Behind a trusted proxy, the right-most untrusted entry counts.
        for _ in 0..3 {
            let res = send("10.0.0.1:1", "203.0.113.9, 198.51.100.7").await.0;
            assert_eq!(res.status(), 200);
        }
        let res = send("10.0.0.1:1", "192.0.2.1, 198.51.100.7").await.0;
        assert_eq!(res.status(), 429);
    }

    #[tokio::test]
    async fn errors_below_still_carry_the_headers() {
        let rig = rig();
        let mut req = Request::new(crate::body::empty());
        req.extensions_mut().insert(principal("alice", &[]));
        let (res, _) = rig.call(req, Inner::Fails).await;
        assert_eq!(res.status(), 400);
        assert_eq!(header(&res, "ratelimit"), "\"reads\";r=2;t=1");
        assert!(res.headers().contains_key("ratelimit-policy"));
    }
}
