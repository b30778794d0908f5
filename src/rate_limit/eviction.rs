//! The idle-key sweep: a background task that periodically drops limiter
//! state that carries no information any more.
//!
//! governor keeps one entry (the key and an 8-byte theoretical arrival time)
//! per key it has seen. An entry whose arrival time has passed describes a
//! key with its full burst available, exactly like a key never seen, so
//! dropping it (`retain_recent`) loses nothing; `shrink_to_fit` then returns
//! the map's spare capacity. After a sweep a limiter holds only the keys that
//! sent a request within its refill window (burst ÷ rate); between sweeps it
//! also holds the keys first seen since the last one.
//!
//! The task holds weak references only: it stops once the gateway that owns
//! the limiters is dropped.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// Limiter state that can drop its idle keys.
pub trait Evict: Send + Sync + 'static {
    /// Drops idle keys and spare capacity; returns the keys left.
    fn evict(&self) -> usize;
}

/// Sweeps `targets` every `every` on the current tokio runtime. Returns
/// `false` (and does nothing) outside a runtime, e.g. in `simgate check`.
pub fn spawn(every: Duration, targets: Vec<Weak<dyn Evict>>) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    // The schedule starts now, however late the task first runs.
    let first = tokio::time::Instant::now() + every;
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval_at(first, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let mut alive = false;
            let mut left = 0;
            for target in &targets {
                if let Some(t) = target.upgrade() {
                    alive = true;
                    left += t.evict();
                }
            }
            if !alive {
                return;
            }
            tracing::debug!(keys = left, "rate limiter: idle keys evicted");
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter(AtomicUsize);
    impl Evict for Counter {
        fn evict(&self) -> usize {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_on_schedule_until_dropped() {
        let c = Arc::new(Counter::default());
        let weak: Weak<dyn Evict> = Arc::downgrade(&(c.clone() as Arc<dyn Evict>));
        assert!(spawn(Duration::from_secs(60), vec![weak]));
        settle().await;
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
        for n in 1..=3 {
            tokio::time::advance(Duration::from_secs(60)).await;
            settle().await;
            assert_eq!(c.0.load(Ordering::SeqCst), n);
        }
        let weak = Arc::downgrade(&c);
        drop(c);
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn outside_a_runtime_nothing_is_spawned() {
        assert!(!spawn(Duration::from_secs(1), Vec::new()));
    }
}
