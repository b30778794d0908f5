//! Where an issuer's keys come from: a JWKS file read at start-up, or a
//! JWKS URL fetched and refreshed in the background.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;

use super::config::JwksRemote;
use super::jwks::{KeySet, VerifyingKey};
use super::verify::Reject;

/// The current key set of one issuer.
#[derive(Debug)]
pub struct KeySource {
    current: ArcSwap<KeySet>,
}

impl KeySource {
    /// Keys that never change (a JWKS file).
    pub fn fixed(set: KeySet) -> Self {
        KeySource {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Keys fetched from `remote.url`. (Fetching arrives in step 2: until
    /// then the issuer has no keys and is not ready.)
    pub fn start(issuer: &str, _remote: &JwksRemote) -> Result<Arc<Self>, String> {
        tracing::warn!(
            issuer,
            "JWKS URLs are not fetched yet; the issuer has no keys"
        );
        Ok(Arc::new(KeySource::fixed(KeySet::default())))
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// The key for a token's `kid` and `alg`.
    pub async fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, Reject> {
        let set = self.current();
        if set.is_empty() {
            return Err(Reject::NoKeys);
        }
        set.select(kid, alg).cloned()
    }
}
