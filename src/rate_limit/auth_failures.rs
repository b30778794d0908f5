//! [`AuthFailureLimitLayer`]: a per-peer budget of *failed*
//! authentications, placed just before authentication so that floods of
//! junk tokens cost a map lookup instead of a signature check.
//!
//! The peer is the client address ([`super::client_addr`]: the TCP peer,
//! unless it is a trusted proxy), IPv6 peers grouped by prefix (a /64 by
//! default). Each [`Error::Unauthenticated`] coming back from the inner
//! service spends one unit of the peer's budget (GCRA, governor); successful
//! requests spend nothing, so valid clients sharing an address (a NAT, a
//! proxy) are never throttled by their own traffic.
//!
//! **Rejects** a request from a peer whose budget is spent with
//! [`Error::RateLimited`] (429, `Retry-After` = time until one more attempt
//! is allowed, no `RateLimit` fields), without calling the inner service —
//! unless its bearer token is one the authenticator has already verified
//! and still holds in its cache ([`VerifiedTokens`]): such a request costs
//! no signature check, so it is let through. Only tokens that would need a
//! signature check are refused, so one broken tool behind a shared address
//! (a NAT, an egress proxy) does not lock out the working ones.
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response};
//! use simgate::body::{Body, BoxError, empty};
//! use simgate::rate_limit::{AuthFailureLimitLayer, AuthFailures, config::RateLimitConfig};
//! use tower::ServiceBuilder;
//!
//! let config = RateLimitConfig::default();
//! let failures = AuthFailures::new(config.auth_failures.unwrap(), config.client_addr);
//! let svc = ServiceBuilder::new()
//!     .layer(AuthFailureLimitLayer::new(Arc::new(failures)))
//!     .service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(empty())) });
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{RateLimiter, middleware::NoOpMiddleware};
use http::{HeaderMap, Request, Response};
use ipnet::Ipv6Net;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::client_addr::ClientAddr;
use super::config::AuthFailuresConfig;
use super::eviction::Evict;
use super::probe::{Probe, ProbeStore};
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::net::PeerAddr;

/// Tokens already verified (the authenticator's cache).
pub trait VerifiedTokens: Send + Sync + std::fmt::Debug {
    /// Whether `token` would be accepted without a signature check.
    fn is_verified(&self, token: &str) -> bool;
}

type Limiter<C> =
    RateLimiter<Probe<IpAddr>, ProbeStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The failure budgets of all peers. Built once at start-up and shared.
#[derive(Debug)]
pub struct AuthFailures<C: Clock = DefaultClock> {
    limiter: Limiter<C>,
    ipv6_prefix: u8,
    client_addr: ClientAddr,
}

impl AuthFailures {
    /// Budgets per `config`, peers found by `client_addr`, on the system
    /// clock.
    pub fn new(config: AuthFailuresConfig, client_addr: ClientAddr) -> Self {
        Self::with_clock(config, client_addr, DefaultClock::default())
    }
}

impl<C: Clock> AuthFailures<C> {
    /// Like [`AuthFailures::new`], timed by `clock` (a fake one in tests).
    pub fn with_clock(config: AuthFailuresConfig, client_addr: ClientAddr, clock: C) -> Self {
        AuthFailures {
            limiter: RateLimiter::new(config.quota, ProbeStore::default(), clock),
            ipv6_prefix: config.ipv6_prefix,
            client_addr,
        }
    }

    /// The key of a peer: its client address, IPv6 cut to the prefix.
    fn key(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        match self.client_addr.of(peer, headers) {
            IpAddr::V6(v6) => Ipv6Net::new(v6, self.ipv6_prefix)
                .map_or(IpAddr::V6(v6), |net| IpAddr::V6(net.trunc().addr())),
            v4 => v4,
        }
    }

    /// `Err(wait)` if `key` has no budget left now.
    fn test(&self, key: IpAddr) -> Result<(), Duration> {
        let probe = Probe { key, spend: false };
        self.limiter
            .check_key(&probe)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Spends one unit of `key`'s budget.
    fn fail(&self, key: IpAddr) {
        let _ = self.limiter.check_key(&Probe { key, spend: true });
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

impl<C> Evict for AuthFailures<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn evict(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

/// Applies [`AuthFailures`] around authentication.
#[derive(Debug)]
pub struct AuthFailureLimitLayer<C: Clock = DefaultClock> {
    failures: Arc<AuthFailures<C>>,
    verified: Option<Arc<dyn VerifiedTokens>>,
}

impl<C: Clock> Clone for AuthFailureLimitLayer<C> {
    fn clone(&self) -> Self {
        AuthFailureLimitLayer {
            failures: self.failures.clone(),
            verified: self.verified.clone(),
        }
    }
}

impl<C: Clock> AuthFailureLimitLayer<C> {
    /// Limits with `failures` (shared state).
    pub fn new(failures: Arc<AuthFailures<C>>) -> Self {
        AuthFailureLimitLayer {
            failures,
            verified: None,
        }
    }

    /// Lets peers over budget through with a token `verified` holds.
    pub fn verified_by<T: VerifiedTokens + 'static>(mut self, verified: Option<Arc<T>>) -> Self {
        self.verified = verified.map(|v| v as Arc<dyn VerifiedTokens>);
        self
    }
}

impl<S, C: Clock> Layer<S> for AuthFailureLimitLayer<C> {
    type Service = AuthFailureLimit<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthFailureLimit {
            inner,
            failures: self.failures.clone(),
            verified: self.verified.clone(),
        }
    }
}

/// Service of [`AuthFailureLimitLayer`].
#[derive(Debug)]
pub struct AuthFailureLimit<S, C: Clock = DefaultClock> {
    inner: S,
    failures: Arc<AuthFailures<C>>,
    verified: Option<Arc<dyn VerifiedTokens>>,
}

impl<S: Clone, C: Clock> Clone for AuthFailureLimit<S, C> {
    fn clone(&self) -> Self {
        AuthFailureLimit {
            inner: self.inner.clone(),
            failures: self.failures.clone(),
            verified: self.verified.clone(),
        }
    }
}

impl<S, B, C> Service<Request<B>> for AuthFailureLimit<S, C>
where
    S: Service<Request<B>, Response = Response<Body>, Error = BoxError>,
    C: Clock,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(peer) = req.extensions().get::<PeerAddr>().map(|p| p.0.ip()) else {
            // Not from a connection (in-process callers): nothing to key on.
            let state = State::Unkeyed {
                inner: self.inner.call(req),
            };
            return ResponseFuture { state };
        };
        let key = self.failures.key(peer, req.headers());
        if let Err(retry_after) = self.failures.test(key)
            && !self.verified.as_ref().is_some_and(|v| {
                crate::auth::layer::bearer(req.headers()).is_ok_and(|t| v.is_verified(&t))
            })
        {
            let error = Error::RateLimited {
                retry_after,
                headers: HeaderMap::new(),
            };
            let state = State::Refused { error: Some(error) };
            return ResponseFuture { state };
        }
        let state = State::Counted {
            inner: self.inner.call(req),
            failures: self.failures.clone(),
            key,
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// Future of [`AuthFailureLimit`].
    #[derive(Debug)]
    pub struct ResponseFuture<F, C: Clock> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = Projection]
    #[derive(Debug)]
    enum State<F, C: Clock> {
        // The peer's budget is spent; the inner service was not called.
        Refused { error: Option<Error> },
        // Authentication failures of `key` spend its budget.
        Counted { #[pin] inner: F, failures: Arc<AuthFailures<C>>, key: IpAddr },
        // No peer address: passed through.
        Unkeyed { #[pin] inner: F },
    }
}

impl<F, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
    C: Clock,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projection::Refused { error } => Poll::Ready(Err(error.take().map_or_else(
                || "auth failure limit future polled after completion".into(),
                Into::into,
            ))),
            Projection::Unkeyed { inner } => inner.poll(cx),
            Projection::Counted {
                inner,
                failures,
                key,
            } => {
                let result = ready!(inner.poll(cx));
                if let Err(e) = &result
                    && matches!(
                        e.downcast_ref::<Error>(),
                        Some(Error::Unauthenticated { .. })
                    )
                {
                    failures.fail(*key);
                }
                Poll::Ready(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::client_addr::{ForwardedHeader, TrustedProxies};
    use crate::rescue::RescueLayer;
    use governor::Quota;
    use governor::clock::FakeRelativeClock;
    use http::header::RETRY_AFTER;
    use std::net::SocketAddr;
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceBuilder, ServiceExt};

    const GOOD: &str = "Bearer good";

    struct Rig {
        clock: FakeRelativeClock,
        failures: Arc<AuthFailures<FakeRelativeClock>>,
        verified: Arc<AtomicUsize>,
    }

    /// Budget 3, one more every 10 s; the inner service stands in for
    /// authentication and counts the tokens it verifies.
    fn rig(trusted: &[&str]) -> Rig {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(Duration::from_secs(10))
            .unwrap()
            .allow_burst(NonZeroU32::new(3).unwrap());
        let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        let client_addr = ClientAddr::new(
            TrustedProxies::parse(&trusted).unwrap(),
            ForwardedHeader::XForwardedFor,
        );
        let config = AuthFailuresConfig {
            quota,
            ipv6_prefix: 64,
        };
        Rig {
            failures: Arc::new(AuthFailures::with_clock(config, client_addr, clock.clone())),
            clock,
            verified: Arc::new(AtomicUsize::new(0)),
        }
    }

    impl Rig {
        async fn send(&self, peer: &str, token: &str, xff: Option<&str>) -> Response<Body> {
            let verified = self.verified.clone();
            let svc = ServiceBuilder::new()
                .layer(RescueLayer)
                .layer(AuthFailureLimitLayer::new(self.failures.clone()))
                .service_fn(move |req: Request<Body>| {
                    verified.fetch_add(1, Ordering::SeqCst);
                    let ok = req.headers()["authorization"] == GOOD;
                    async move {
                        if ok {
                            Ok(Response::new(crate::body::empty()))
                        } else {
                            Err(BoxError::from(Error::invalid_token("bad signature")))
                        }
                    }
                });
            let mut req = Request::builder().header("authorization", token);
            if let Some(x) = xff {
                req = req.header("x-forwarded-for", x);
            }
            let mut req = req.body(crate::body::empty()).unwrap();
            let peer: SocketAddr = peer.parse().unwrap();
            req.extensions_mut().insert(PeerAddr(peer));
            svc.oneshot(req).await.unwrap()
        }

        fn verified(&self) -> usize {
            self.verified.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn over_budget_peers_are_refused_before_verification() {
        let rig = rig(&[]);
        for _ in 0..3 {
            assert_eq!(
                rig.send("203.0.113.9:1", "Bearer junk", None)
                    .await
                    .status(),
                401
            );
        }
        assert_eq!(rig.verified(), 3);
        let res = rig.send("203.0.113.9:2", "Bearer junk", None).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[RETRY_AFTER], "10");
        assert!(!res.headers().contains_key("ratelimit"));
        // Refused without looking at the token, even a good one.
        assert_eq!(rig.send("203.0.113.9:3", GOOD, None).await.status(), 429);
        assert_eq!(rig.verified(), 3);
        // Other peers are unaffected.
        assert_eq!(rig.send("198.51.100.7:1", GOOD, None).await.status(), 200);
        // Retry-After honoured: one more attempt.
        rig.clock.advance(Duration::from_secs(10));
        assert_eq!(rig.send("203.0.113.9:4", GOOD, None).await.status(), 200);
    }

    #[tokio::test]
    async fn successes_spend_nothing() {
        let rig = rig(&[]);
        for _ in 0..50 {
            assert_eq!(rig.send("192.0.2.1:1", GOOD, None).await.status(), 200);
        }
        assert!(rig.failures.is_empty());
        for _ in 0..3 {
            assert_eq!(
                rig.send("192.0.2.1:1", "Bearer junk", None).await.status(),
                401
            );
        }
        assert_eq!(rig.send("192.0.2.1:1", GOOD, None).await.status(), 429);
    }

    #[tokio::test]
    async fn spoofed_forwarding_headers_do_not_change_the_peer() {
        let rig = rig(&[]);
        for i in 0..3 {
            let spoof = format!("10.0.0.{i}");
            let res = rig.send("203.0.113.9:1", "Bearer junk", Some(&spoof)).await;
            assert_eq!(res.status(), 401);
        }
        let res = rig.send("203.0.113.9:1", GOOD, Some("10.9.9.9")).await;
        assert_eq!(res.status(), 429);
    }

    #[tokio::test]
    async fn behind_a_trusted_proxy_each_client_has_its_budget() {
        let rig = rig(&["10.0.0.0/8"]);
        for _ in 0..3 {
            let res = rig
                .send("10.0.0.1:1", "Bearer junk", Some("203.0.113.9"))
                .await;
            assert_eq!(res.status(), 401);
        }
        let res = rig.send("10.0.0.1:1", GOOD, Some("203.0.113.9")).await;
        assert_eq!(res.status(), 429);
        // A client prepending someone else's address is still itself.
        let res = rig
            .send("10.0.0.1:1", GOOD, Some("198.51.100.7, 203.0.113.9"))
            .await;
        assert_eq!(res.status(), 429);
        let res = rig.send("10.0.0.1:1", GOOD, Some("198.51.100.7")).await;
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn ipv6_peers_share_their_prefix() {
        let rig = rig(&[]);
        for i in 1..=3 {
            let peer = format!("[2001:db8:0:1::{i}]:443");
            assert_eq!(rig.send(&peer, "Bearer junk", None).await.status(), 401);
        }
        let res = rig.send("[2001:db8:0:1:ffff::9]:443", GOOD, None).await;
        assert_eq!(res.status(), 429);
        let res = rig.send("[2001:db8:0:2::1]:443", GOOD, None).await;
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn idle_peers_are_evicted() {
        let rig = rig(&[]);
        for i in 0..1000u32 {
            rig.failures.fail(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(rig.failures.len(), 1000);
        rig.clock.advance(Duration::from_secs(20));
        assert_eq!(rig.failures.evict(), 0);
    }
}
