//! Where an issuer's keys come from: a JWKS file, read when the config is
//! loaded and then polled for changes, or a JWKS URL fetched and refreshed
//! in the background.
//!
//! For a file, a background task re-reads it every `[auth] jwks_file_poll`
//! and swaps in its keys when they change, so rotating a local key file
//! needs no reload; a file that cannot be read or holds no usable key
//! leaves the last good keys in use (with a warning).
//!
//! For a URL, one background task per issuer owns every fetch:
//! - at start (simgate starts even when the IdP is down; the issuer is then
//!   not ready until its keys arrive);
//! - on a schedule: the response's `Cache-Control: max-age`, clamped to
//!   `[jwks_min_refresh, jwks_max_refresh]`, else `jwks_refresh`; after a
//!   failure, 1 s doubling up to `jwks_min_refresh`;
//! - when a token names an unknown `kid` (or the issuer has no keys yet),
//!   at most once per `jwks_cooldown`, so a flood of random `kid`s cannot
//!   make simgate hammer the IdP. Requests arriving while such a refetch is
//!   under way wait for it instead of asking again.
//!
//! A failed fetch, a malformed document or one without usable keys leaves
//! the last good keys in use. Keys are swapped atomically (`arc-swap`); no
//! lock is held across an `.await`. Only `https://` URLs (or `http://` on
//! loopback) are fetched, redirects are not followed and documents over
//! 1 MiB are refused.

use crate::metrics::Metrics;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::config::JwksRemote;
use super::jwks::{KeySet, VerifyingKey};
use super::verify::Reject;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// First retry delay after a failed fetch.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The current key set of one issuer.
#[derive(Debug)]
pub struct KeySource {
    current: ArcSwap<KeySet>,
    remote: Option<RemoteState>,
}

/// The bookkeeping of a JWKS URL.
#[derive(Debug)]
struct RemoteState {
    issuer: String,
    config: JwksRemote,
    refetch: Mutex<Refetch>,
    /// Asks the background task to fetch now.
    wake: Arc<Notify>,
    /// The number of the last refetch request a completed fetch covered.
    done: watch::Sender<u64>,
    /// Fetches and key counts go here.
    metrics: Metrics,
}

#[derive(Debug)]
struct Refetch {
    /// Requests so far (the start-up fetch is request 1).
    requested: u64,
    /// When the last unknown-`kid` refetch was asked for.
    last: Option<Instant>,
}

/// A fetched JWKS document.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The document.
    pub body: Bytes,
    /// `Cache-Control: max-age`, if any.
    pub max_age: Option<Duration>,
}

/// A boxed fetch.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send + 'a>>;

/// Gets a JWKS document (over HTTP in production, scripted in tests).
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// One attempt.
    fn fetch(&self) -> FetchFuture<'_>;
}

impl KeySource {
    /// Keys that never change (a JWKS file).
    pub fn fixed(set: KeySet) -> Self {
        KeySource {
            current: ArcSwap::from_pointee(set),
            remote: None,
        }
    }

    /// Keys read from a JWKS file; see [`KeySource::watch_file`].
    pub fn from_set(set: Arc<KeySet>) -> Self {
        KeySource {
            current: ArcSwap::new(set),
            remote: None,
        }
    }

    /// Re-reads `path` every `every` and swaps in its keys when they change,
    /// until this source is dropped. Returns `false` (and does nothing)
    /// outside a tokio runtime or when `every` is zero.
    pub fn watch_file(self: &Arc<Self>, path: PathBuf, every: Duration) -> bool {
        if every.is_zero() {
            return false;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        rt.spawn(poll_file(Arc::downgrade(self), path, every));
        true
    }

    /// Keys fetched from `remote.url` over HTTPS. The background task runs
    /// only when called inside a tokio runtime (`simgate check` has none).
    /// Every fetch is counted in `metrics` (`simgate_jwks_refreshes_total`,
    /// `simgate_jwks_keys`).
    pub fn start(issuer: &str, remote: &JwksRemote, metrics: Metrics) -> Result<Arc<Self>, String> {
        let fetcher = HttpFetch::new(remote)?;
        Ok(Self::start_observed(
            issuer,
            remote,
            Arc::new(fetcher),
            metrics,
        ))
    }

    /// Keys fetched by `fetcher` with `remote`'s schedule.
    pub fn start_with(issuer: &str, remote: &JwksRemote, fetcher: Arc<dyn Fetch>) -> Arc<Self> {
        Self::start_observed(issuer, remote, fetcher, Metrics::new())
    }

    /// Like [`KeySource::start_with`], counting fetches in `metrics`.
    pub fn start_observed(
        issuer: &str,
        remote: &JwksRemote,
        fetcher: Arc<dyn Fetch>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let source = Arc::new(KeySource {
            current: ArcSwap::from_pointee(KeySet::default()),
            remote: Some(RemoteState {
                issuer: issuer.to_owned(),
                config: remote.clone(),
                refetch: Mutex::new(Refetch {
                    requested: 1,
                    last: None,
                }),
                wake: wake.clone(),
                done: watch::Sender::new(0),
                metrics,
            }),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(refresh(Arc::downgrade(&source), wake, fetcher));
        }
        source
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// The key for a token's `kid` and `alg`. An unknown `kid` (or no keys
    /// at all) of a URL issuer may wait for one refetch (see the module docs).
    pub async fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, Reject> {
        match self.try_select(kid, alg) {
            Err(Reject::UnknownKid | Reject::NoKeys) if self.refetch().await => {
                self.try_select(kid, alg)
            }
            other => other,
        }
    }

    fn try_select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, Reject> {
        let set = self.current.load();
        if set.is_empty() {
            return Err(Reject::NoKeys);
        }
        set.select(kid, alg).cloned()
    }

    /// Asks for a refetch (or joins one under way) and waits for it; false
    /// when the cool-down forbids one or there is no URL.
    async fn refetch(&self) -> bool {
        let Some(r) = &self.remote else {
            return false;
        };
        let target = {
            let mut st = r.refetch.lock().unwrap_or_else(|e| e.into_inner());
            let completed = *r.done.borrow();
            if st.requested > completed {
                st.requested
            } else if st.last.is_some_and(|t| t.elapsed() < r.config.cooldown) {
                return false;
            } else {
                st.last = Some(Instant::now());
                st.requested += 1;
                r.wake.notify_one();
                tracing::info!(issuer = %r.issuer, "unknown key id: refetching JWKS");
                st.requested
            }
        };
        let mut done = r.done.subscribe();
        let wait = r.config.timeout + FIRST_RETRY;
        matches!(
            tokio::time::timeout(wait, done.wait_for(|c| *c >= target)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for KeySource {
    fn drop(&mut self) {
        // Lets the background task notice it is no longer needed.
        if let Some(r) = &self.remote {
            r.wake.notify_one();
        }
    }
}

/// The background task of one JWKS URL; ends when its source is dropped.
async fn refresh(source: Weak<KeySource>, wake: Arc<Notify>, fetcher: Arc<dyn Fetch>) {
    let mut retry = FIRST_RETRY;
    loop {
        let delay = {
            let Some(src) = source.upgrade() else {
                return;
            };
            let Some(r) = &src.remote else {
                return;
            };
            let covers = r
                .refetch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .requested;
            let outcome = fetcher.fetch().await.and_then(|f| {
                let set = KeySet::parse(&f.body)?;
                if set.is_empty() {
                    return Err("no usable signature keys".into());
                }
                Ok((set, f.max_age))
            });
            r.metrics.jwks_refresh(&r.issuer, outcome.is_ok());
            let delay = match outcome {
                Ok((set, max_age)) => {
                    for why in set.skipped() {
                        tracing::warn!(issuer = %r.issuer, "JWKS key skipped: {why}");
                    }
                    r.metrics.jwks_keys(&r.issuer, set.len());
                    if !src.current.load().same_keys(&set) {
                        tracing::info!(issuer = %r.issuer, keys = set.len(), "JWKS updated");
                        src.current.store(Arc::new(set));
                    }
                    retry = FIRST_RETRY;
                    schedule(&r.config, max_age)
                }
                Err(why) => {
                    let delay = retry.min(r.config.min_refresh);
                    retry = (retry * 2).min(r.config.min_refresh);
                    tracing::warn!(
                        issuer = %r.issuer,
                        error = %why,
                        retry_in = ?delay,
                        keys = src.current.load().len(),
                        "JWKS fetch failed; keeping the last good keys"
                    );
                    delay
                }
            };
            r.done.send_modify(|c| *c = (*c).max(covers));
            delay
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
    }
}

/// The polling task of one JWKS file; ends when its source is dropped.
async fn poll_file(source: Weak<KeySource>, path: PathBuf, every: Duration) {
    let mut last_seen: Option<[u8; 32]> = None;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(src) = source.upgrade() else {
            return;
        };
        let read = tokio::fs::read(&path).await;
        let outcome = read
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if last_seen == Some(digest) {
                    return Ok(None);
                }
                last_seen = Some(digest);
                let set = KeySet::parse(&bytes)?;
                if set.is_empty() {
                    return Err("no usable signature keys".into());
                }
                Ok(Some(set))
            });
        match outcome {
            Ok(None) => {}
            Ok(Some(set)) => {
                for why in set.skipped() {
                    tracing::warn!(file = %path.display(), "JWKS key skipped: {why}");
                }
                if !src.current.load().same_keys(&set) {
                    let keys = set.len();
                    src.current.store(Arc::new(set));
                    tracing::info!(file = %path.display(), keys, "JWKS file changed: keys updated");
                }
            }
            Err(why) => tracing::warn!(
                file = %path.display(),
                error = %why,
                keys = src.current.load().len(),
                "JWKS file unusable; keeping the last good keys"
            ),
        }
    }
}

/// When to fetch next after a success.
fn schedule(config: &JwksRemote, max_age: Option<Duration>) -> Duration {
    max_age
        .unwrap_or(config.refresh)
        .clamp(config.min_refresh, config.max_refresh)
}

/// `max-age` of a `Cache-Control` header (`no-cache`/`no-store` count as 0).
pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let d = directive.trim();
            let (name, arg) = d.split_once('=').unwrap_or((d, ""));
            if name.eq_ignore_ascii_case("max-age") {
                age = arg.trim_matches('"').parse().ok().map(Duration::from_secs);
            } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store")
            {
                return Some(Duration::ZERO);
            }
        }
    }
    age
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Fetches a JWKS over HTTP(S) with hyper-util's client.
#[derive(Debug)]
struct HttpFetch {
    client: Client<Connector, Empty<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl HttpFetch {
    fn new(remote: &JwksRemote) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(remote.timeout));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(tls);
        Ok(HttpFetch {
            client,
            url: remote.url.clone(),
            timeout: remote.timeout,
        })
    }

    async fn get(&self) -> Result<Fetched, String> {
        let req = Request::get(self.url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let max_age = max_age(res.headers());
        let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the document: {e}"))?
            .to_bytes();
        Ok(Fetched { body, max_age })
    }
}

impl Fetch for HttpFetch {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.get())
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{SigningKey, generate_rsa, jwks};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scripted IdP: answers with `doc` (or fails) and counts fetches.
    #[derive(Debug)]
    struct Idp {
        doc: Mutex<Result<Fetched, String>>,
        fetches: AtomicUsize,
    }

    impl Idp {
        fn new() -> Arc<Self> {
            Arc::new(Idp {
                doc: Mutex::new(Err("down".into())),
                fetches: AtomicUsize::new(0),
            })
        }
        fn serve(&self, keys: &[SigningKey], max_age: Option<u64>) {
            *self.doc.lock().unwrap() = Ok(Fetched {
                body: jwks(keys).to_string().into(),
                max_age: max_age.map(Duration::from_secs),
            });
        }
        fn fail(&self) {
            *self.doc.lock().unwrap() = Err("HTTP 503".into());
        }
        fn count(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl Fetch for Idp {
        fn fetch(&self) -> FetchFuture<'_> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let doc = self.doc.lock().unwrap().clone();
            Box::pin(std::future::ready(doc))
        }
    }

    fn remote() -> JwksRemote {
        JwksRemote {
            url: "https://idp.test/jwks".parse().unwrap(),
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            cooldown: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn after(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        settle().await;
    }

    fn has(src: &KeySource, kid: &str) -> bool {
        src.current().get(kid).is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_honours_max_age_within_bounds() {
        let k1 = generate_rsa("k1").unwrap();
        let idp = Idp::new();
        idp.serve(std::slice::from_ref(&k1), Some(120));
        let src = KeySource::start_with("i", &remote(), idp.clone());
        settle().await;
        assert_eq!(idp.count(), 1);
        assert!(has(&src, "k1"));
        after(119).await;
        assert_eq!(idp.count(), 1);
        after(1).await;
        assert_eq!(idp.count(), 2);
        // max-age below the floor: 30 s.
        idp.serve(std::slice::from_ref(&k1), Some(1));
        after(120).await;
        assert_eq!(idp.count(), 3);
        after(29).await;
        assert_eq!(idp.count(), 3);
        after(1).await;
        assert_eq!(idp.count(), 4);
        // Above the ceiling: 3600 s; none: jwks_refresh (300 s).
        idp.serve(std::slice::from_ref(&k1), Some(1_000_000));
        after(30).await;
        assert_eq!(idp.count(), 5);
        after(3599).await;
        assert_eq!(idp.count(), 5);
        idp.serve(std::slice::from_ref(&k1), None);
        after(1).await;
        assert_eq!(idp.count(), 6);
        after(299).await;
        assert_eq!(idp.count(), 6);
        after(1).await;
        assert_eq!(idp.count(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn idp_down_at_start_then_up_with_backoff() {
        let idp = Idp::new();
        let src = KeySource::start_with("i", &remote(), idp.clone());
        settle().await;
        assert!(src.current().is_empty());
        assert_eq!(
            src.try_select(Some("k1"), Algorithm::RS256).unwrap_err(),
            Reject::NoKeys
        );
        // Retries after 1, 2, 4, 8, 16, then every 30 s (the floor).
        let mut at = Vec::new();
        for t in 1..=91u64 {
            after(1).await;
            if idp.count() > at.len() + 1 {
                at.push(t);
            }
        }
        assert_eq!(at, [1, 3, 7, 15, 31, 61, 91]);
        idp.serve(&[generate_rsa("k1").unwrap()], None);
        after(30).await;
        assert!(has(&src, "k1"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_keep_the_last_good_keys() {
        let idp = Idp::new();
        idp.serve(&[generate_rsa("k1").unwrap()], Some(60));
        let src = KeySource::start_with("i", &remote(), idp.clone());
        settle().await;
        idp.fail();
        after(60).await;
        assert_eq!(idp.count(), 2);
        assert!(has(&src, "k1"));
        // A document without usable keys is a failure too.
        *idp.doc.lock().unwrap() = Ok(Fetched {
            body: Bytes::from_static(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#),
            max_age: None,
        });
        after(1).await;
        assert_eq!(idp.count(), 3);
        assert!(has(&src, "k1"));
        *idp.doc.lock().unwrap() = Ok(Fetched {
            body: Bytes::from_static(b"<html>"),
            max_age: None,
        });
        after(2).await;
        assert_eq!(idp.count(), 4);
        assert!(has(&src, "k1"));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refetches_at_most_once_per_cooldown() {
        let (k1, k2, k3) = (
            generate_rsa("k1").unwrap(),
            generate_rsa("k2").unwrap(),
            generate_rsa("k3").unwrap(),
        );
        let idp = Idp::new();
        idp.serve(std::slice::from_ref(&k1), None);
        let src = KeySource::start_with("i", &remote(), idp.clone());
        settle().await;
        assert_eq!(idp.count(), 1);
        // Rotation: k2 appears and is picked up on first use.
        idp.serve(&[k1.clone(), k2.clone()], None);
        assert!(src.select(Some("k2"), Algorithm::RS256).await.is_ok());
        assert_eq!(idp.count(), 2);
        // A flood of unknown kids within the cool-down: no more fetches.
        idp.serve(&[k1.clone(), k2.clone(), k3.clone()], None);
        for i in 0..100 {
            let kid = format!("random-{i}");
            assert_eq!(
                src.select(Some(&kid), Algorithm::RS256).await.unwrap_err(),
                Reject::UnknownKid
            );
        }
        assert_eq!(
            src.select(Some("k3"), Algorithm::RS256).await.unwrap_err(),
            Reject::UnknownKid
        );
        assert_eq!(idp.count(), 2);
        // After the cool-down, one more.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(src.select(Some("k3"), Algorithm::RS256).await.is_ok());
        assert_eq!(idp.count(), 3);
        for i in 0..10 {
            let _ = src.select(Some(&format!("x{i}")), Algorithm::RS256).await;
        }
        assert_eq!(idp.count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_unknown_kids_share_one_fetch() {
        let (k1, k2) = (generate_rsa("k1").unwrap(), generate_rsa("k2").unwrap());
        let idp = Idp::new();
        idp.serve(std::slice::from_ref(&k1), None);
        let src = KeySource::start_with("i", &remote(), idp.clone());
        // Requests during the start-up fetch join it.
        let early = src.select(Some("k1"), Algorithm::RS256).await;
        assert!(early.is_ok());
        assert_eq!(idp.count(), 1);
        idp.serve(&[k1, k2], None);
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.select(Some("k2"), Algorithm::RS256).await.is_ok() })
            })
            .collect();
        for l in lookups {
            assert!(l.await.unwrap());
        }
        assert_eq!(idp.count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn task_ends_with_its_source() {
        let idp = Idp::new();
        idp.serve(&[generate_rsa("k1").unwrap()], Some(30));
        let src = KeySource::start_with("i", &remote(), idp.clone());
        settle().await;
        drop(src);
        after(600).await;
        assert_eq!(idp.count(), 1);
    }

    #[test]
    fn cache_control_max_age() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(
            max_age(&h("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(&h("Max-Age=\"60\"")), Some(Duration::from_secs(60)));
        assert_eq!(max_age(&h("no-cache")), Some(Duration::ZERO));
        assert_eq!(max_age(&h("max-age=soon")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }
}
