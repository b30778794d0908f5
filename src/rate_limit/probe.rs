//! A governor state store that can also *test* a key without spending from
//! its budget.
//!
//! The failed-authentication limiter must refuse a peer that is over budget
//! before authenticating it, but only failures may spend the budget. governor
//! checks and spends in one step, so the key carries the intent: a
//! [`Probe`] with `spend: false` runs the same GCRA decision against the
//! stored state and throws the new state away (and never inserts a key).

use std::convert::Infallible;
use std::hash::Hash;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};

/// A key and whether the check spends from its budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe<K> {
    /// The key.
    pub key: K,
    /// `false`: only test whether the key would be allowed.
    pub spend: bool,
}

/// A [`DashMapStateStore`] keyed by `K` that honours [`Probe::spend`].
#[derive(Debug)]
pub struct ProbeStore<K: Hash + Eq>(DashMapStateStore<K>);

impl<K: Hash + Eq> Default for ProbeStore<K> {
    fn default() -> Self {
        ProbeStore(DashMapStateStore::default())
    }
}

impl<K: Hash + Eq + Clone> StateStore for ProbeStore<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if probe.spend {
            return self.0.measure_and_replace(&probe.key, f);
        }
        let Some(state) = self.0.get(&probe.key) else {
            // Never seen (or evicted, i.e. full): decide on empty state.
            return f(None).map(|(t, _)| t);
        };
        // Decide, then refuse to store the decision.
        let dry: Result<Infallible, Result<T, E>> =
            state.measure_and_replace(&NotKeyed::NonKey, |tat| match f(tat) {
                Ok((t, _)) => Err(Ok(t)),
                Err(e) => Err(Err(e)),
            });
        match dry {
            Ok(never) => match never {},
            Err(decision) => decision,
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for ProbeStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use governor::middleware::NoOpMiddleware;
    use governor::{Quota, RateLimiter};
    use std::num::NonZeroU32;
    use std::time::Duration;

    #[test]
    fn testing_never_spends_and_never_inserts() {
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(Duration::from_secs(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(2).unwrap());
        let lim: RateLimiter<_, _, _, NoOpMiddleware<Nanos>> =
            RateLimiter::new(quota, ProbeStore::<u8>::default(), clock.clone());
        let test = |k| Probe {
            key: k,
            spend: false,
        };
        let spend = |k| Probe {
            key: k,
            spend: true,
        };
        for _ in 0..10 {
            assert!(lim.check_key(&test(1)).is_ok());
        }
        assert_eq!(lim.len(), 0);
        assert!(lim.check_key(&spend(1)).is_ok());
        assert!(lim.check_key(&test(1)).is_ok());
        assert!(lim.check_key(&spend(1)).is_ok());
        assert!(lim.check_key(&test(1)).is_err());
        assert!(lim.check_key(&test(2)).is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(lim.check_key(&test(1)).is_ok());
        assert_eq!(lim.len(), 1);
        clock.advance(Duration::from_secs(5));
        lim.retain_recent();
        assert_eq!(lim.len(), 0);
    }
}
