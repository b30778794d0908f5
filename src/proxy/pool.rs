//! Idle upstream HTTP/1.1 connections, kept per serving thread.
//!
//! A connection is taken for one request and put back when its response
//! body has been read to the end ([`super::http1`]); a response dropped
//! before its end takes its connection with it (it closes). Each thread
//! keeps its own idle list, so in the `per-core` runtime a request reuses a
//! connection driven by its own thread and the lock is never contended
//! (Pingora keeps its pools per thread the same way). The most recently
//! used connection is taken first, so a quiet pool shrinks from the old end.
//!
//! Limits, per thread: `upstream.pool_max_idle` idle connections (a
//! connection put back beyond it is closed), each idle for at most
//! `upstream.pool_idle_timeout`. A sweep task on the runtime that builds the
//! pool closes the ones idle for longer; it ends with the pool. A zero for
//! either limit keeps no connection idle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use hyper::client::conn::http1::SendRequest;

use crate::body::Body;

/// Idle lists per pool; threads beyond this share them (by a lock).
const SLOTS: usize = 16;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's idle list, in every pool.
    static SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

/// The idle connections to one upstream. Clones share them.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slots: [Slot; SLOTS],
    max_idle: usize,
    idle_timeout: Duration,
}

/// One thread's idle list, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(Mutex<Vec<Idle>>);

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// A pool of at most `max_idle` connections per thread, each idle for
    /// at most `idle_timeout`; swept on the current runtime, if any.
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            slots: Default::default(),
            max_idle,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && shared.keeps_idle()
        {
            runtime.spawn(sweep(Arc::downgrade(&shared)));
        }
        Pool { shared }
    }

    /// An idle connection of this thread's that can take a request now.
    pub(crate) fn take(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.shared.slot();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= self.shared.idle_timeout {
                // The rest were put back earlier still.
                idle.clear();
                return None;
            }
            if entry.sender.is_ready() {
                return Some(entry.sender);
            }
            // Closed by the upstream meanwhile: dropped.
        }
        None
    }

    /// Puts back a connection whose last response has been read. One that
    /// is not ready for the next request yet (its connection task has not
    /// seen the end) is put back once it is; a closed one, or one beyond
    /// the limit, is dropped.
    pub(crate) fn put(&self, mut sender: SendRequest<Body>) {
        if !self.shared.keeps_idle() || sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let pool = self.clone();
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
            return;
        }
        let mut idle = self.shared.slot();
        if idle.len() < self.shared.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Idle connections in all threads' lists.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shared.slots.iter().map(|s| s.lock().len()).sum()
    }
}

impl Shared {
    fn keeps_idle(&self) -> bool {
        self.max_idle > 0 && !self.idle_timeout.is_zero()
    }

    fn slot(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.slots[SLOT.with(|s| *s)].lock()
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // A panic while holding it leaves a valid list.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes connections idle for longer than the timeout, every half timeout,
/// until the pool is gone.
async fn sweep(shared: Weak<Shared>) {
    let Some(period) = shared.upgrade().map(|s| s.idle_timeout / 2) else {
        return;
    };
    let mut ticks = tokio::time::interval(period.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for slot in &shared.slots {
            let mut idle = slot.lock();
            // Oldest first: keep from the first one still within the timeout.
            let expired = idle
                .iter()
                .take_while(|e| e.since.elapsed() >= shared.idle_timeout)
                .count();
            idle.drain(..expired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection to a server that answers every request with an empty
    /// 200, and its driver task.
    async fn connection() -> SendRequest<Body> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_put_back_is_taken_again_until_it_has_been_idle_too_long() {
        let pool = Pool::new(4, Duration::from_millis(200));
        let mut sender = connection().await;
        sender.ready().await.unwrap();
        pool.put(sender);
        assert_eq!(pool.idle(), 1);
        let sender = pool.take().expect("the idle connection");
        assert_eq!(pool.idle(), 0);
        assert!(pool.take().is_none());
        pool.put(sender);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(pool.take().is_none(), "idle beyond the timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_connections_idle_too_long() {
        let pool = Pool::new(4, Duration::from_millis(100));
        let mut sender = connection().await;
        sender.ready().await.unwrap();
        pool.put(sender);
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn beyond_the_limit_and_closed_connections_are_not_kept() {
        let pool = Pool::new(1, Duration::from_secs(60));
        let (mut a, mut b) = (connection().await, connection().await);
        a.ready().await.unwrap();
        b.ready().await.unwrap();
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.idle(), 1);

        let none = Pool::new(0, Duration::from_secs(60));
        let mut c = connection().await;
        c.ready().await.unwrap();
        none.put(c);
        assert_eq!(none.idle(), 0);
    }
}
