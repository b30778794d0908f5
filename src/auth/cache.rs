//! The verified-token cache: a client reusing its token pays for the
//! signature check once.
//!
//! Bounded (`[auth] cache_size` entries, evicted by quick_cache's
//! CLOCK-Pro policy), keyed by the SHA-256 of the token, so the cache never
//! holds a token. An entry is used only while the clock is before the
//! token's `exp` (leeway is not extended by the cache: past `exp` the token
//! is verified in full again, which refuses it once the leeway is gone),
//! and only while its issuer's key set and settings are the ones it was
//! verified with: a key rotation (of a JWKS URL, a polled `jwks_file` or a
//! reload) or a reload that changes the issuer's settings drops the
//! issuer's entries, so a removed key stops working for cached tokens too.
//! The cache outlives a reload ([`crate::reload`]); the entries of issuers
//! that did not change stay.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::Principal;

/// What is remembered about a verified token.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Who the token describes.
    pub principal: Arc<Principal>,
    /// Index of the issuer that verified it.
    pub issuer: usize,
    /// That issuer's settings (see `Authenticator`): a reload that changes
    /// them invalidates the entry.
    pub stamp: u64,
    /// The fingerprint of the issuer's whole key set when it was verified
    /// ([`crate::auth::jwks::KeySet::fingerprint`]).
    pub keys: [u8; 32],
    /// Fingerprint of the key that verified it.
    pub key: [u8; 32],
    /// The token's `exp`: the entry is not used at or after it.
    pub exp: i64,
}

/// The SHA-256 of a token: the cache key.
pub type TokenHash = [u8; 32];

/// A bounded map from token hash to [`Entry`].
#[derive(Debug)]
pub struct VerifiedCache {
    entries: Cache<TokenHash, Entry>,
    size: u64,
}

impl VerifiedCache {
    /// A cache of at most `size` entries; `None` when `size` is 0.
    pub fn new(size: u64) -> Option<Self> {
        let items = usize::try_from(size).unwrap_or(usize::MAX);
        (items > 0).then(|| VerifiedCache {
            entries: Cache::new(items),
            size,
        })
    }

    /// The configured size (`[auth] cache_size`).
    pub fn capacity(&self) -> u64 {
        self.size
    }

    /// The cache key of `token`.
    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The entry for `hash` if it is still valid at `now` and `key_present`
    /// confirms its key is still trusted; stale entries are dropped.
    pub fn get(
        &self,
        hash: &TokenHash,
        now: i64,
        key_present: impl FnOnce(&Entry) -> bool,
    ) -> Option<Entry> {
        let entry = self.entries.get(hash)?;
        if now < entry.exp && key_present(&entry) {
            Some(entry)
        } else {
            self.entries.remove(hash);
            None
        }
    }

    /// Remembers a verified token.
    pub fn insert(&self, hash: TokenHash, entry: Entry) {
        self.entries.insert(hash, entry);
    }

    /// Keeps only the entries `keep` approves (after a reload).
    pub fn retain(&self, keep: impl Fn(&Entry) -> bool) {
        self.entries.retain(|_, e| keep(e));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: i64) -> Entry {
        Entry {
            principal: Arc::new(Principal {
                subject: "s".into(),
                client_key: "s".into(),
                issuer: "i".into(),
                roles: vec![],
                scopes: vec![],
                token_id: None,
            }),
            issuer: 0,
            stamp: 0,
            keys: [0; 32],
            key: [1; 32],
            exp,
        }
    }

    #[test]
    fn entries_are_never_used_at_or_after_exp() {
        let c = VerifiedCache::new(10).unwrap();
        let h = VerifiedCache::hash("t");
        c.insert(h, entry(100));
        assert!(c.get(&h, 99, |_| true).is_some());
        assert!(c.get(&h, 100, |_| true).is_none());
        // Dropped once stale.
        assert!(c.is_empty());
    }

    #[test]
    fn entries_of_removed_keys_are_dropped() {
        let c = VerifiedCache::new(10).unwrap();
        let h = VerifiedCache::hash("t");
        c.insert(h, entry(100));
        assert!(c.get(&h, 0, |e| e.key == [2; 32]).is_none());
        assert!(c.get(&h, 0, |_| true).is_none());
    }

    #[test]
    fn retain_keeps_only_approved_entries() {
        let c = VerifiedCache::new(10).unwrap();
        let (a, b) = (VerifiedCache::hash("a"), VerifiedCache::hash("b"));
        c.insert(a, entry(100));
        c.insert(
            b,
            Entry {
                stamp: 7,
                ..entry(100)
            },
        );
        c.retain(|e| e.stamp == 7);
        assert!(c.get(&a, 0, |_| true).is_none());
        assert!(c.get(&b, 0, |_| true).is_some());
    }

    #[test]
    fn bounded_and_optional() {
        assert!(VerifiedCache::new(0).is_none());
        let c = VerifiedCache::new(8).unwrap();
        for i in 0..100 {
            c.insert(VerifiedCache::hash(&i.to_string()), entry(100));
        }
        assert!(c.len() <= 8 + 8, "{}", c.len());
        assert_ne!(VerifiedCache::hash("a"), VerifiedCache::hash("b"));
    }
}
