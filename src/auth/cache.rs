//! Verified access tokens, remembered until they expire so each token's signature is checked
//! once rather than on every request.
//!
//! Entries are keyed by a BLAKE3 hash of the token (the token itself is not kept) and hold the
//! claims behind an `Arc`. An entry is served only while `now < exp`: never past expiry, even
//! though the verifier itself grants a leeway. The map is split into shards, each behind a mutex
//! held for one lookup or insert, so concurrent requests rarely wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::claims::Claims;
use super::jwt::{TokenKind, Verifier};
use super::token_error::TokenError;

const SHARDS: usize = 16;

type Key = [u8; 32];

struct Entry {
    claims: Arc<Claims>,
    exp: u64,
}

/// A bounded map from token hash to verified claims.
pub struct TokenCache {
    shards: Box<[Mutex<HashMap<Key, Entry>>]>,
    per_shard: usize,
}

impl TokenCache {
    /// Enough for every token of a busy registry's clients within one token lifetime.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        TokenCache { shards, per_shard }
    }

    /// Verifies an access token, or returns the claims of an earlier successful verification.
    /// Refused tokens are not remembered.
    pub fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<Claims>, TokenError> {
        let key = blake3::hash(token.as_bytes()).into();
        let secs = unix_secs(now);
        if let Some(claims) = self.lookup(&key, secs) {
            return Ok(claims);
        }
        let claims = Arc::new(verifier.verify(token, TokenKind::Access, now)?);
        self.insert(key, Arc::clone(&claims), secs);
        Ok(claims)
    }

    /// The cached claims for `token`, if it was verified and has not expired.
    pub fn get(&self, token: &str, now: SystemTime) -> Option<Arc<Claims>> {
        self.lookup(&blake3::hash(token.as_bytes()).into(), unix_secs(now))
    }

    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry, e.g. after the trusted keys changed.
    pub fn clear(&self) {
        (0..SHARDS).for_each(|i| self.shard(i).clear());
    }

    fn lookup(&self, key: &Key, now: u64) -> Option<Arc<Claims>> {
        let mut shard = self.shard(shard_of(key));
        match shard.get(key) {
            Some(e) if now < e.exp => Some(Arc::clone(&e.claims)),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Adds an entry. A full shard first drops its expired entries; if that frees nothing it
    /// drops an arbitrary eighth (hash order), which costs only re-verifications later.
    fn insert(&self, key: Key, claims: Arc<Claims>, now: u64) {
        let exp = claims.exp;
        if now >= exp {
            return;
        }
        let mut shard = self.shard(shard_of(&key));
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.exp);
            if shard.len() >= self.per_shard {
                let mut evict = self.per_shard.div_ceil(8);
                shard.retain(|_, _| {
                    let keep = evict == 0;
                    evict = evict.saturating_sub(1);
                    keep
                });
            }
        }
        shard.insert(key, Entry { claims, exp });
    }

    /// A poisoned shard only means another thread panicked mid-insert; its map is still sound.
    #[allow(clippy::indexing_slicing)] // every index is below SHARDS: a loop bound or `shard_of`
    fn shard(&self, index: usize) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        TokenCache::new(TokenCache::DEFAULT_CAPACITY)
    }
}

fn shard_of(key: &Key) -> usize {
    usize::from(key[0]) % SHARDS
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::jwt::sign;
    use crate::auth::keys::SigningKey;
    use crate::auth::public::Alg;
    use crate::auth::verifying::VerifyingKeys;

    const T: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::generate(Alg::EdDSA).unwrap();
        let verifier = Verifier::new(VerifyingKeys::own(&key), "berth", "reg");
        (key, verifier)
    }

    fn token(key: &SigningKey, sub: &str, exp: u64) -> String {
        let claims = Claims {
            iss: "berth".into(),
            sub: sub.into(),
            aud: vec!["reg".into()],
            exp,
            nbf: None,
            iat: None,
            jti: None,
            access: vec![],
        };
        sign(key, &claims, TokenKind::Access).unwrap()
    }

    #[test]
    fn second_use_is_served_from_the_cache() {
        let (key, verifier) = setup();
        let cache = TokenCache::new(8);
        let t = token(&key, "alice", T + 100);
        assert!(cache.get(&t, at(T)).is_none());
        let first = cache.verify(&verifier, &t, at(T)).unwrap();
        let second = cache.get(&t, at(T + 1)).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // A verifier that trusts nothing proves the second answer came from the cache.
        let nothing = Verifier::new(VerifyingKeys::default(), "berth", "reg");
        assert!(Arc::ptr_eq(
            &cache.verify(&nothing, &t, at(T + 2)).unwrap(),
            &first
        ));
    }

    #[test]
    fn expired_entries_are_never_served() {
        let (key, verifier) = setup();
        let cache = TokenCache::new(8);
        let t = token(&key, "alice", T + 100);
        cache.verify(&verifier, &t, at(T)).unwrap();
        assert!(cache.get(&t, at(T + 99)).is_some());
        assert!(
            cache.get(&t, at(T + 100)).is_none(),
            "gone at exp, leeway or not"
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn refused_tokens_are_not_cached() {
        let (key, verifier) = setup();
        let cache = TokenCache::new(8);
        let other = Verifier::new(VerifyingKeys::own(&key), "berth", "other-service");
        let t = token(&key, "alice", T + 100);
        assert_eq!(
            cache.verify(&other, &t, at(T)).unwrap_err(),
            TokenError::WrongAudience
        );
        assert!(cache.is_empty());
        assert!(cache.verify(&verifier, &t, at(T)).is_ok());
    }

    #[test]
    fn size_stays_bounded() {
        let (key, verifier) = setup();
        let cache = TokenCache::new(32);
        for i in 0..400 {
            cache
                .verify(&verifier, &token(&key, &format!("u{i}"), T + 100), at(T))
                .unwrap();
        }
        assert!(cache.len() <= 32, "{} entries", cache.len());
        assert!(!cache.is_empty());
    }
}
