//! The verified-token cache: a bounded, sharded map from a token to the principal it verified
//! as, valid only inside the token's own time window.
//!
//! Only successes are cached, so a refused token is always checked in full again. A hit skips
//! parsing and the signature check but never the revocation check, which the verifier does on
//! every call.
//!
//! The key is a SHA-256 over the audience and the token's signature segment, and the entry keeps
//! the signed part (`header.payload`) to compare on a hit. A hit therefore means the very same
//! token (finding another signature with the same hash is a SHA-256 second preimage), while the
//! hash covers a few dozen bytes instead of the whole token, which keeps a hit cheap. The cache
//! never holds a usable bearer token: the signed part without its signature is not one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use authz_types::Principal;
use sha2::{Digest, Sha256};

/// The number of independently locked shards; a power of two so the shard is a bit mask.
const SHARDS: usize = 16;

/// A cache key: SHA-256 over the audience (length-prefixed) and the signature segment.
pub(crate) type Key = [u8; 32];

/// A token split for the cache: the signed part and the key.
pub(crate) struct Lookup<'t> {
    pub(crate) key: Key,
    signed: &'t str,
}

/// Computes the cache lookup for `token` at `audience`, or `None` if the token has no `.` (it
/// cannot verify, so it is never cached). The audience is part of the key because one token may
/// name several audiences and the verdict is per audience; the length prefix keeps `("ab", "c")`
/// and `("a", "bc")` apart.
pub(crate) fn lookup<'t>(audience: &str, token: &'t str) -> Option<Lookup<'t>> {
    let dot = token.rfind('.')?;
    let (signed, signature) = (&token[..dot], &token[dot + 1..]);
    let mut hasher = Sha256::new();
    hasher.update((audience.len() as u64).to_le_bytes());
    hasher.update(audience.as_bytes());
    hasher.update(signature.as_bytes());
    Some(Lookup {
        key: hasher.finalize().into(),
        signed,
    })
}

/// The keys are already uniformly distributed SHA-256 output, so the map hashes them by taking
/// eight of their bytes instead of running SipHash over all 32. Only verified tokens are
/// inserted, so nobody can flood a bucket with chosen keys.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length followed by its bytes; keep the last eight bytes seen.
        for &b in bytes.iter().rev().take(8).rev() {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}

type Shard = HashMap<Key, Entry, BuildHasherDefault<DigestHasher>>;

struct Entry {
    /// `header.payload` of the cached token, compared on every hit.
    signed: Box<str>,
    principal: Arc<Principal>,
    /// First second (Unix) at which the token is acceptable.
    valid_from: i64,
    /// First second (Unix) at which the token is no longer acceptable.
    valid_until: i64,
}

/// Counters of a verified-token cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries currently held (some may have expired and not been pruned yet).
    pub entries: usize,
    /// The configured capacity.
    pub capacity: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to verify the token in full.
    pub misses: u64,
}

pub(crate) struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TokenCache {
    /// A cache holding at most about `capacity` entries (rounded up to a multiple of the shard
    /// count). `capacity` must be positive.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &RwLock<Shard> {
        &self.shards[usize::from(key[0]) & (SHARDS - 1)]
    }

    /// The cached principal for exactly this token if it is acceptable at `now`.
    pub(crate) fn get(&self, lookup: &Lookup<'_>, now: i64) -> Option<Arc<Principal>> {
        let found = {
            let shard = read(self.shard(&lookup.key));
            shard
                .get(&lookup.key)
                .filter(|e| {
                    now >= e.valid_from && now < e.valid_until && *e.signed == *lookup.signed
                })
                .map(|e| Arc::clone(&e.principal))
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches a verified principal for its validity window. A full shard first drops entries
    /// that have expired; if it is still full, it drops an arbitrary entry (keys are hashes, so
    /// this is effectively random eviction).
    pub(crate) fn insert(
        &self,
        lookup: &Lookup<'_>,
        principal: Arc<Principal>,
        valid_from: i64,
        valid_until: i64,
        now: i64,
    ) {
        if valid_until <= now {
            return;
        }
        let key = lookup.key;
        let mut shard = write(self.shard(&key));
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.valid_until > now);
            if shard.len() >= self.per_shard {
                let victim = shard.keys().next().copied();
                if let Some(victim) = victim {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            key,
            Entry {
                signed: lookup.signed.into(),
                principal,
                valid_from,
                valid_until,
            },
        );
    }

    /// Forgets every entry (after keys were rotated out or went stale).
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            write(shard).clear();
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.shards.iter().map(|s| read(s).len()).sum(),
            capacity: self.per_shard * SHARDS,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

// A panic while a shard lock is held cannot leave a `HashMap` half-updated in a way that matters
// here (at worst an entry is missing), so a poisoned lock is used as it is.
fn read(lock: &RwLock<Shard>) -> std::sync::RwLockReadGuard<'_, Shard> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(lock: &RwLock<Shard>) -> std::sync::RwLockWriteGuard<'_, Shard> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Arc<Principal> {
        Arc::new(Principal {
            subject: sub.into(),
            issuer: "iss".into(),
            tenant: None,
            client_id: None,
            actors: Vec::new(),
            scopes: Vec::new(),
            roles: Vec::new(),
            token_id: None,
            expires_at: 100,
            issued_at: None,
            claims: Default::default(),
        })
    }

    fn look(audience: &str, token: &'static str) -> Lookup<'static> {
        lookup(audience, token).expect("has a dot")
    }

    #[test]
    fn keys_separate_audience_and_signature() {
        assert_ne!(look("ab", "x.c").key, look("a", "x.bc").key);
        assert_eq!(look("a", "x.b").key, look("a", "y.b").key);
        assert_eq!(look("a", "x.y.b").signed, "x.y");
        assert!(lookup("a", "nodot").is_none());
    }

    #[test]
    fn hits_only_inside_the_window() {
        let cache = TokenCache::new(10);
        let k = look("aud", "h.p.sig");
        cache.insert(&k, principal("alice"), 10, 20, 12);
        assert!(cache.get(&k, 9).is_none());
        assert_eq!(
            cache.get(&k, 10).map(|p| p.subject.clone()),
            Some("alice".into())
        );
        assert!(cache.get(&k, 19).is_some());
        assert!(cache.get(&k, 20).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 1));
        // An entry that is already over is not stored at all.
        cache.insert(&look("aud", "h.old.sig2"), principal("bob"), 0, 5, 5);
        assert_eq!(cache.stats().entries, 1);
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn the_same_signature_on_other_claims_is_a_miss() {
        let cache = TokenCache::new(10);
        cache.insert(&look("aud", "h.p.sig"), principal("alice"), 0, 20, 1);
        // Same key (audience and signature), different signed part: a forgery, never a hit.
        let forged = look("aud", "h.mallory.sig");
        assert_eq!(forged.key, look("aud", "h.p.sig").key);
        assert!(cache.get(&forged, 1).is_none());
        assert!(cache.get(&look("aud", "h.p.sig"), 1).is_some());
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(32);
        let tokens: Vec<String> = (0..1000).map(|i| format!("h.p.{i}")).collect();
        for t in &tokens {
            let k = lookup("aud", t).expect("dot");
            cache.insert(&k, principal("p"), 0, 100, 1);
        }
        let stats = cache.stats();
        assert!(stats.entries <= stats.capacity, "{stats:?}");
        assert_eq!(stats.capacity, 32);
        // The most recent insert is always present.
        assert!(
            cache
                .get(&lookup("aud", "h.p.999").expect("dot"), 1)
                .is_some()
        );
    }
}
