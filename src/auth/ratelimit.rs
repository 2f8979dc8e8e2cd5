//! Limits on failed logins, per client address and per user name, so passwords cannot be
//! guessed at speed.
//!
//! Each key has a leaky bucket: a failure adds one, the level drains at `limit` per `window`,
//! and while the level is at `limit` or above the key is refused until it has drained enough
//! for one more attempt. Successes never fill a bucket. A success from an address empties that
//! address's bucket and marks the (user, address) pair as trusted for `trusted_for`: the
//! per-user limit does not apply to trusted pairs, so someone guessing a user's password from
//! elsewhere slows down only the guesser and new addresses, never the user where they already
//! logged in, and the refusal ends at most one `window` after the guessing stops. The maps
//! hold at most `max_entries` keys each: drained keys go first, then the lowest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::clock::Clock;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RateLimitSettings {
    /// Failures from one address within `window` before it is refused.
    pub per_address: u32,
    /// Failures for one user name, from untrusted addresses, within `window`.
    pub per_user: u32,
    #[serde(with = "secs")]
    pub window: Duration,
    #[serde(with = "secs")]
    pub trusted_for: Duration,
    pub max_entries: usize,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    use crate::config::units::HumanDuration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        HumanDuration::deserialize(d).map(|h| h.0)
    }
}

impl Default for RateLimitSettings {
    fn default() -> RateLimitSettings {
        RateLimitSettings {
            per_address: 10,
            per_user: 30,
            window: Duration::from_secs(300),
            trusted_for: Duration::from_secs(7 * 86_400),
            max_entries: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    level: f64,
    at_ms: u64,
}

impl Bucket {
    fn level_at(&self, now_ms: u64, drain_per_ms: f64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        (self.level - elapsed * drain_per_ms).max(0.0)
    }
}

#[derive(Default)]
struct State {
    by_address: HashMap<IpAddr, Bucket>,
    by_user: HashMap<String, Bucket>,
    trusted: HashMap<(String, IpAddr), u64>,
}

/// Failed-login limits; cheap to ask (one mutex, a few map lookups).
#[derive(Debug)]
pub struct LoginLimiter {
    settings: RateLimitSettings,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("addresses", &self.by_address.len())
            .field("users", &self.by_user.len())
            .finish_non_exhaustive()
    }
}

impl LoginLimiter {
    pub fn new(settings: RateLimitSettings, clock: Arc<dyn Clock>) -> LoginLimiter {
        LoginLimiter {
            settings,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn drain(&self, limit: u32) -> f64 {
        f64::from(limit.max(1)) / (self.settings.window.as_millis().max(1) as f64)
    }

    /// `Err(retry_after)` if a login of `user` from `address` must be refused without
    /// looking at the password.
    pub fn check(&self, user: &str, address: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now_ms();
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0.0f64;
        let mut consider = |bucket: Option<&Bucket>, limit: u32| {
            let drain = self.drain(limit);
            if let Some(b) = bucket {
                let level = b.level_at(now, drain);
                if level >= f64::from(limit) {
                    wait = wait.max((level - f64::from(limit) + 1.0) / drain);
                }
            }
        };
        consider(s.by_address.get(&address), self.settings.per_address);
        if !self.trusted(&s, user, address, now) {
            consider(s.by_user.get(user), self.settings.per_user);
        }
        if wait > 0.0 {
            Err(Duration::from_millis(wait.ceil() as u64).max(Duration::from_secs(1)))
        } else {
            Ok(())
        }
    }

    fn trusted(&self, s: &State, user: &str, address: IpAddr, now: u64) -> bool {
        s.trusted
            .get(&(user.to_owned(), address))
            .is_some_and(|&at| {
                now.saturating_sub(at) < self.settings.trusted_for.as_millis() as u64
            })
    }

    pub fn failed(&self, user: &str, address: IpAddr) {
        let now = self.clock.now_ms();
        let max = self.settings.max_entries.max(1);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let drain_a = self.drain(self.settings.per_address);
        add(&mut s.by_address, address, now, drain_a, max);
        if !self.trusted(&s, user, address, now) {
            let drain_u = self.drain(self.settings.per_user);
            add(&mut s.by_user, user.to_owned(), now, drain_u, max);
        }
    }

    pub fn succeeded(&self, user: &str, address: IpAddr) {
        let now = self.clock.now_ms();
        let max = self.settings.max_entries.max(1);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.by_address.remove(&address);
        let key = (user.to_owned(), address);
        if !s.trusted.contains_key(&key) && s.trusted.len() >= max {
            let horizon = self.settings.trusted_for.as_millis() as u64;
            s.trusted.retain(|_, at| now.saturating_sub(*at) < horizon);
            if s.trusted.len() >= max {
                if let Some(oldest) = s
                    .trusted
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                {
                    s.trusted.remove(&oldest);
                }
            }
        }
        s.trusted.insert(key, now);
    }

    /// Keys tracked (addresses, users, trusted pairs), for tests and a gauge.
    pub fn tracked(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.by_address.len(), s.by_user.len(), s.trusted.len())
    }
}

/// One more failure for `key`, making room in a full map first.
fn add<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, Bucket>,
    key: K,
    now: u64,
    drain: f64,
    max: usize,
) {
    if !map.contains_key(&key) && map.len() >= max {
        map.retain(|_, b| b.level_at(now, drain) > 0.0);
        if map.len() >= max {
            let lowest = map
                .iter()
                .min_by(|a, b| {
                    a.1.level_at(now, drain)
                        .total_cmp(&b.1.level_at(now, drain))
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = lowest {
                map.remove(&k);
            }
        }
    }
    let b = map.entry(key).or_insert(Bucket {
        level: 0.0,
        at_ms: now,
    });
    b.level = b.level_at(now, drain) + 1.0;
    b.at_ms = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::clock::ManualClock;

    fn limiter(clock: Arc<ManualClock>) -> LoginLimiter {
        let settings = RateLimitSettings {
            per_address: 3,
            per_user: 5,
            window: Duration::from_secs(60),
            trusted_for: Duration::from_secs(3600),
            max_entries: 4,
        };
        LoginLimiter::new(settings, clock)
    }

    #[test]
    fn an_address_is_refused_then_released() {
        let clock = ManualClock::starting_at(0);
        let l = limiter(clock.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check("alice", a).is_ok());
            l.failed("alice", a);
        }
        let wait = l.check("bob", a).unwrap_err();
        assert!(
            wait <= Duration::from_secs(20) && wait >= Duration::from_secs(19),
            "{wait:?}"
        );
        clock.advance(wait);
        assert!(l.check("bob", a).is_ok());
    }

    #[test]
    fn guessing_from_elsewhere_does_not_lock_out_a_trusted_address() {
        let clock = ManualClock::starting_at(0);
        let l = limiter(clock.clone());
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        l.succeeded("alice", home);
        for i in 0..5u8 {
            let attacker = IpAddr::from([192, 0, 2, i]);
            l.failed("alice", attacker);
        }
        let new_place: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(l.check("alice", new_place).is_err());
        assert!(l.check("alice", home).is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(l.check("alice", new_place).is_ok());
    }

    #[test]
    fn a_success_resets_its_address_and_maps_stay_bounded() {
        let clock = ManualClock::starting_at(0);
        let l = limiter(clock.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            l.failed("alice", a);
        }
        assert!(l.check("alice", a).is_err());
        l.succeeded("alice", a);
        assert!(l.check("alice", a).is_ok());
        for i in 0..50u8 {
            l.failed(&format!("user{i}"), IpAddr::from([192, 0, 2, i]));
            l.succeeded(&format!("user{i}"), IpAddr::from([198, 51, 100, i]));
        }
        let (addrs, users, trusted) = l.tracked();
        assert!(
            addrs <= 4 && users <= 4 && trusted <= 4,
            "{addrs} {users} {trusted}"
        );
    }
}
