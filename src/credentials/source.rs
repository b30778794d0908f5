//! One credential's current token: kept fresh ahead of expiry, refreshed by
//! one caller at a time.
//!
//! A [`TokenSource`] holds the current token and fetches a new one through
//! its [`FetchToken`]. A background task (see [`spawn_refresher`]) fetches
//! the first token at start and each next one when three quarters of the
//! current one's lifetime has passed. Every fetch goes through one async
//! lock and is skipped when another caller has replaced the token
//! meanwhile, so however many requests find the token expired (or see it
//! rejected by the upstream), one token request goes out.
//!
//! A failed fetch keeps the current token while it is valid and is retried
//! with exponential backoff (1 s doubling up to `retry_max`). While there is
//! no valid token, requests are refused at once with the time of the next
//! attempt ([`Unavailable`]) instead of each waiting on a failing endpoint.
//! The log gets one line per change of state (token obtained, refresh
//! failing with a valid token, no valid token, recovered), never the token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::time::Instant;

use super::secret::Secret;
use crate::metrics::Metrics;

/// A token as the token endpoint gave it.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The access token.
    pub(crate) access_token: Secret,
    /// `expires_in`.
    pub(crate) lifetime: Duration,
}

/// A boxed future of one token request.
pub(crate) type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send + 'a>>;

/// Gets a new token (one request to a token endpoint). Errors are short
/// texts that never contain a secret.
pub(crate) trait FetchToken: Send + Sync + fmt::Debug {
    /// One attempt.
    fn fetch(&self) -> FetchFuture<'_>;
}

/// A token in use.
pub(crate) struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub(crate) authorization: HeaderValue,
    /// When it stops being valid.
    pub(crate) expires_at: Instant,
    /// When the background refresh replaces it.
    refresh_at: Instant,
    /// Which fetch produced it (1, 2, …).
    pub(crate) generation: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("authorization", &"[redacted]")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Token {
    fn valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// No valid token right now.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    /// Until the next fetch attempt.
    pub(crate) retry_after: Duration,
    /// The last failure (no secret in it).
    pub(crate) reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Fresh,
    /// Refresh failing, the current token still valid.
    Stale,
    /// Refresh failing, no valid token.
    Unavailable,
}

#[derive(Debug)]
struct Failures {
    state: State,
    count: u32,
    next_attempt: Option<Instant>,
    last_error: String,
}

/// The current token of one named credential.
#[derive(Debug)]
pub(crate) struct TokenSource {
    name: Arc<str>,
    fetcher: Box<dyn FetchToken>,
    current: ArcSwapOption<Token>,
    /// Held while a fetch is in flight: the single flight.
    refresh: tokio::sync::Mutex<u64>,
    failures: Mutex<Failures>,
    retry_max: Duration,
    /// Counts every token request (`simgate_upstream_token_fetches_total`).
    metrics: Metrics,
}

impl TokenSource {
    /// A source with no token yet.
    pub(crate) fn new(
        name: &str,
        fetcher: Box<dyn FetchToken>,
        retry_max: Duration,
        metrics: Metrics,
    ) -> Self {
        TokenSource {
            name: name.into(),
            fetcher,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(0),
            failures: Mutex::new(Failures {
                state: State::Starting,
                count: 0,
                next_attempt: None,
                last_error: "no token fetched yet".into(),
            }),
            retry_max: retry_max.max(Duration::from_secs(1)),
            metrics,
        }
    }

    /// Whether a valid token is held now.
    pub(crate) fn has_valid_token(&self) -> bool {
        let now = Instant::now();
        self.current
            .load()
            .as_ref()
            .is_some_and(|t| t.valid_at(now))
    }

    /// A valid token: the current one, or (when it has expired and no retry
    /// is pending) a new one, fetched once for all concurrent callers.
    pub(crate) async fn token(&self) -> Result<Arc<Token>, Unavailable> {
        let seen = match self.current.load_full() {
            Some(t) if t.valid_at(Instant::now()) => return Ok(t),
            Some(t) => t.generation,
            None => 0,
        };
        if let Some(wait) = self.backoff_left() {
            return Err(self.unavailable(wait));
        }
        self.refresh_from(seen, false).await
    }

    /// A token other than generation `rejected`, which the upstream refused:
    /// another caller's new one, or a new one fetched now.
    pub(crate) async fn replace(&self, rejected: u64) -> Result<Arc<Token>, Unavailable> {
        self.refresh_from(rejected, false).await
    }

    /// Fetches a new token unless the current one is no longer generation
    /// `seen` (someone else refreshed meanwhile). Outside the background
    /// task, a pending backoff is respected.
    async fn refresh_from(&self, seen: u64, background: bool) -> Result<Arc<Token>, Unavailable> {
        let mut last = self.refresh.lock().await;
        let now = Instant::now();
        if let Some(t) = self.current.load_full()
            && t.generation != seen
            && t.valid_at(now)
        {
            return Ok(t);
        }
        if !background && let Some(wait) = self.backoff_left() {
            return Err(self.unavailable(wait));
        }
        let started = Instant::now();
        match self.fetcher.fetch().await {
            Ok(fetched) => {
                *last += 1;
                let token = Arc::new(self.token_from(fetched, started, *last)?);
                self.current.store(Some(token.clone()));
                self.succeeded(&token);
                Ok(token)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn token_from(
        &self,
        f: Fetched,
        started: Instant,
        generation: u64,
    ) -> Result<Token, Unavailable> {
        let mut authorization = HeaderValue::from_str(&format!(
            "Bearer {}",
            f.access_token.expose()
        ))
        .map_err(|_| {
            self.failed(
                "the token endpoint returned a token that is not a valid header value".into(),
            )
        })?;
        authorization.set_sensitive(true);
        Ok(Token {
            authorization,
            expires_at: started + f.lifetime,
            refresh_at: started + f.lifetime.mul_f64(0.75),
            generation,
        })
    }

    fn succeeded(&self, token: &Token) {
        self.metrics.upstream_token_fetch(&self.name, true);
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let lifetime = token.expires_at.saturating_duration_since(Instant::now());
        match f.state {
            State::Fresh => {
                tracing::debug!(credential = %self.name, expires_in_s = lifetime.as_secs(), "upstream credential refreshed")
            }
            State::Starting => {
                tracing::info!(credential = %self.name, expires_in_s = lifetime.as_secs(), "upstream credential: token obtained")
            }
            State::Stale | State::Unavailable => {
                tracing::info!(credential = %self.name, expires_in_s = lifetime.as_secs(), failed_attempts = f.count, "upstream credential recovered: token obtained")
            }
        }
        f.state = State::Fresh;
        f.count = 0;
        f.next_attempt = None;
    }

    fn failed(&self, error: String) -> Unavailable {
        self.metrics.upstream_token_fetch(&self.name, false);
        let now = Instant::now();
        let valid = self
            .current
            .load()
            .as_ref()
            .filter(|t| t.valid_at(now))
            .map(|t| t.expires_at);
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        f.count = f.count.saturating_add(1);
        let exp = f.count.saturating_sub(1).min(16);
        let delay = Duration::from_secs(1u64 << exp).min(self.retry_max);
        f.next_attempt = Some(now + delay);
        f.last_error = error;
        let state = if valid.is_some() {
            State::Stale
        } else {
            State::Unavailable
        };
        if state != f.state {
            match valid {
                Some(expires) => tracing::warn!(
                    credential = %self.name, error = %f.last_error,
                    valid_for_s = expires.saturating_duration_since(now).as_secs(),
                    "upstream credential refresh failing; using the current token until it expires"
                ),
                None => tracing::error!(
                    credential = %self.name, error = %f.last_error,
                    "upstream credential has no valid token; requests that need it get 503 until a token is obtained"
                ),
            }
            f.state = state;
        }
        Unavailable {
            retry_after: delay,
            reason: f.last_error.clone(),
        }
    }

    /// Time left until the next attempt, if a failure's backoff is pending.
    fn backoff_left(&self) -> Option<Duration> {
        let f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        f.next_attempt
            .map(|at| at.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn unavailable(&self, wait: Duration) -> Unavailable {
        let f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        Unavailable {
            retry_after: wait,
            reason: f.last_error.clone(),
        }
    }

    /// How long the background task sleeps before its next fetch.
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let planned = self.current.load().as_ref().map(|t| t.refresh_at);
        let retry = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_attempt;
        let at = match (retry, planned) {
            (Some(r), _) => r,
            (None, Some(p)) => p,
            (None, None) => now,
        };
        at.saturating_duration_since(now)
    }

    fn generation(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |t| t.generation)
    }
}

/// Starts the background refresh of `source` on the current runtime (if
/// any): the first fetch now, then ahead of each expiry, with backoff on
/// failure. The task ends once the source is dropped.
pub(crate) fn spawn_refresher(source: &Arc<TokenSource>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<TokenSource> = Arc::downgrade(source);
    runtime.spawn(async move {
        loop {
            let Some(wait) = weak.upgrade().map(|s| s.next_wake()) else {
                return;
            };
            tokio::time::sleep(wait).await;
            let Some(source) = weak.upgrade() else {
                return;
            };
            let seen = source.generation();
            let _ = source.refresh_from(seen, true).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Answers after `delay` with `tok-N` living `lifetime`, or fails while
    /// `down`.
    #[derive(Debug)]
    struct Fake {
        calls: Arc<AtomicUsize>,
        down: Arc<AtomicBool>,
        lifetime: Duration,
        delay: Duration,
    }

    impl FetchToken for Fake {
        fn fetch(&self) -> FetchFuture<'_> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(self.delay).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err("token endpoint unreachable".into());
                }
                Ok(Fetched {
                    access_token: Secret::new(&format!("tok-{n}")),
                    lifetime: self.lifetime,
                })
            })
        }
    }

    fn source(
        lifetime: u64,
        delay_ms: u64,
    ) -> (Arc<TokenSource>, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let fake = Fake {
            calls: calls.clone(),
            down: down.clone(),
            lifetime: Duration::from_secs(lifetime),
            delay: Duration::from_millis(delay_ms),
        };
        let src = Arc::new(TokenSource::new(
            "admin",
            Box::new(fake),
            Duration::from_secs(8),
            Metrics::new(),
        ));
        (src, calls, down)
    }

    fn bearer(t: &Token) -> &str {
        t.authorization.to_str().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_in_the_background() {
        let (src, calls, _) = source(100, 0);
        spawn_refresher(&src);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(bearer(&src.token().await.unwrap()), "Bearer tok-1");
        // Three quarters of the lifetime: not yet; just after: a new token,
        // while the first was still valid for a quarter of its life.
        tokio::time::sleep(Duration::from_secs(74)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(bearer(&src.token().await.unwrap()), "Bearer tok-2");
        assert!(format!("{:?}", src.token().await.unwrap()).contains("[redacted]"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_fetch_for_many_callers_at_expiry() {
        // No background task: the token simply expires under the callers.
        let (src, calls, _) = source(10, 500);
        let first = src.token().await.unwrap();
        assert_eq!(first.generation, 1);
        tokio::time::sleep(Duration::from_secs(11)).await;
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.token().await.map(|t| t.generation) })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.unwrap().unwrap(), 2);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Many callers whose token the upstream refused: one more fetch.
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.replace(2).await.map(|t| t.generation) })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.unwrap().unwrap(), 3);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_refresh_keeps_the_valid_token_then_refuses_then_recovers() {
        let (src, calls, down) = source(40, 0);
        spawn_refresher(&src);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(src.has_valid_token());
        down.store(true, Ordering::SeqCst);
        // Refresh at 30 s fails; the token is used until 40 s.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert_eq!(src.token().await.unwrap().generation, 1);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let err = src.token().await.unwrap_err();
        assert!(err.reason.contains("unreachable"));
        assert!(!err.retry_after.is_zero() && err.retry_after <= Duration::from_secs(8));
        assert!(!src.has_valid_token());
        // Backoff is capped at retry_max (8 s): back within that.
        down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(src.has_valid_token());
        assert_eq!(
            bearer(&src.token().await.unwrap()).len(),
            "Bearer tok-N".len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_the_source() {
        let (src, calls, _) = source(4, 0);
        spawn_refresher(&src);
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(src);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
