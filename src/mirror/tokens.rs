//! Bearer tokens from an upstream's token service: reading its answer (the docker token spec's
//! `token`/`access_token` and `expires_in`) and keeping each until shortly before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The lifetime the spec gives a token whose answer names none.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(60);
/// A longer claimed lifetime is cut to this: a token is cheap to fetch again, and an upstream
/// that revokes it early only costs one more challenge.
const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 60 * 60);
/// A token is dropped this long before it expires, so none is sent just as it lapses.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// A token service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    pub token: String,
    pub expires_in: Duration,
}

/// Reads a token answer: `token`, or `access_token` (its OAuth 2 name) when `token` is absent;
/// `expires_in` in seconds, the default when absent or unusable.
pub fn parse_answer(body: &[u8]) -> Result<TokenAnswer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let pick = |key: &str| v.get(key).and_then(Value::as_str).filter(|t| !t.is_empty());
    let token = pick("token")
        .or_else(|| pick("access_token"))
        .ok_or("no token or access_token in the answer")?;
    // The token goes into a header: refuse what could not, or could split it.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token holds characters a header cannot carry".into());
    }
    let expires_in = match v.get("expires_in") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 1.0)
            .map_or(DEFAULT_EXPIRES_IN, |s| {
                Duration::from_secs_f64(s.min(MAX_EXPIRES_IN.as_secs_f64()))
            }),
        _ => DEFAULT_EXPIRES_IN,
    };
    Ok(TokenAnswer {
        token: token.to_owned(),
        expires_in,
    })
}

struct Cached {
    token: String,
    until: Instant,
}

/// Tokens by scope. The lock is only held to look up or store, never across an await.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl TokenCache {
    /// The token cached for `scope`, unless it is about to expire.
    pub fn get(&self, scope: &str, now: Instant) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(scope)
            .filter(|c| now < c.until)
            .map(|c| c.token.clone())
    }

    /// Keeps `token`, fetched at `fetched`, for `expires_in` less the margin; drops every
    /// expired entry on the way so the map holds live tokens only.
    pub fn put(&self, scope: &str, token: &str, expires_in: Duration, fetched: Instant) {
        let until = fetched
            .checked_add(expires_in.saturating_sub(EXPIRY_MARGIN))
            .unwrap_or(fetched);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, c| fetched < c.until);
        if fetched < until {
            entries.insert(
                scope.to_owned(),
                Cached {
                    token: token.to_owned(),
                    until,
                },
            );
        }
    }

    /// Forgets the token of `scope` (the upstream refused it).
    pub fn forget(&self, scope: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_or_access_token() {
        let a = parse_answer(br#"{"token":"abc","access_token":"zzz","expires_in":300}"#).unwrap();
        assert_eq!(a.token, "abc");
        assert_eq!(a.expires_in, Duration::from_secs(300));
        let a =
            parse_answer(br#"{"access_token":"xyz","issued_at":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(a.token, "xyz");
        assert_eq!(a.expires_in, DEFAULT_EXPIRES_IN);
        // An empty `token` does not hide a usable `access_token`.
        let a = parse_answer(br#"{"token":"","access_token":"xyz"}"#).unwrap();
        assert_eq!(a.token, "xyz");
    }

    #[test]
    fn odd_lifetimes() {
        let life = |body: &str| parse_answer(body.as_bytes()).unwrap().expires_in;
        assert_eq!(life(r#"{"token":"t","expires_in":0}"#), DEFAULT_EXPIRES_IN);
        assert_eq!(life(r#"{"token":"t","expires_in":-5}"#), DEFAULT_EXPIRES_IN);
        assert_eq!(
            life(r#"{"token":"t","expires_in":"300"}"#),
            DEFAULT_EXPIRES_IN
        );
        assert_eq!(
            life(r#"{"token":"t","expires_in":90.5}"#),
            Duration::from_secs_f64(90.5)
        );
        assert_eq!(life(r#"{"token":"t","expires_in":1e300}"#), MAX_EXPIRES_IN);
    }

    #[test]
    fn malformed_answers() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"token":42}"#,
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            br#"{"token":"a\r\nX-Evil: 1"}"#,
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cache_expires_with_margin() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put("repository:a:pull", "tok", Duration::from_secs(60), t0);
        assert_eq!(cache.get("repository:a:pull", t0).as_deref(), Some("tok"));
        assert_eq!(cache.get("repository:b:pull", t0), None);
        let late = t0 + Duration::from_secs(56);
        assert_eq!(cache.get("repository:a:pull", late), None);
        // A lifetime shorter than the margin is not cached at all.
        cache.put("repository:c:pull", "short", Duration::from_secs(3), t0);
        assert_eq!(cache.get("repository:c:pull", t0), None);
        cache.forget("repository:a:pull");
        assert_eq!(cache.get("repository:a:pull", t0), None);
    }

    #[test]
    fn expired_entries_are_dropped_on_put() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put("old", "1", Duration::from_secs(10), t0);
        cache.put(
            "new",
            "2",
            Duration::from_secs(60),
            t0 + Duration::from_secs(30),
        );
        let entries = cache.entries.lock().unwrap();
        assert!(!entries.contains_key("old"));
        assert!(entries.contains_key("new"));
    }
}
