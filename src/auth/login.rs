//! Basic authentication of users (argon2id), robots (either name form) and htpasswd users
//! (bcrypt), with a cache of successful verifications and limits on failures.
//!
//! A registry client sends its credentials with every request, so the slow hash must not run
//! per request: a success is cached under SHA-256(per-process salt, user, password) with the
//! snapshot generation it was checked against, and is used again only while that generation
//! is current (any administrative write, such as a password change or a robot deletion,
//! bumps it). The salt keeps the cache keys useless to anyone who reads the memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::audit::{Actor, AuditAction, AuditEvent, AuditLog, Detail, FailReason};
use crate::auth::db::AuthDb;
use crate::auth::htpasswd::HtpasswdFile;
use crate::auth::password::{self, constant_time_eq, random_bytes, sha256, verify_password};
use crate::auth::policy::Principal;
use crate::auth::ratelimit::{LoginLimiter, RateLimitSettings};
use crate::auth::robot::RobotName;
use crate::auth::snapshot::Snapshot;

/// Why a login was refused. The HTTP layer answers `Invalid` and `Expired` with 401 and
/// `RateLimited` with 429 and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("invalid user name or password")]
    Invalid,
    #[error("too many failed logins; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("robot account {0} has expired")]
    Expired(String),
}

#[derive(Clone, Debug)]
pub struct AuthenticatorSettings {
    pub rate_limit: RateLimitSettings,
    /// Users of the htpasswd file are system administrators (what `basic` mode over an
    /// htpasswd file means in CNCF distribution); otherwise they are plain users whose access
    /// comes from public projects only.
    pub htpasswd_admin: bool,
    /// Cached verifications kept; the cache is emptied when full.
    pub cache_entries: usize,
}

impl Default for AuthenticatorSettings {
    fn default() -> AuthenticatorSettings {
        AuthenticatorSettings {
            rate_limit: RateLimitSettings::default(),
            htpasswd_admin: false,
            cache_entries: 4096,
        }
    }
}

struct Cached {
    principal: Principal,
    generation: u64,
}

/// Checks credentials.
pub struct Authenticator {
    db: Arc<AuthDb>,
    htpasswd: Option<HtpasswdFile>,
    settings: AuthenticatorSettings,
    limiter: LoginLimiter,
    audit: Option<Arc<AuditLog>>,
    salt: [u8; 32],
    /// Verifies unknown user names against a real hash, so they take as long as known ones.
    decoy_hash: String,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    slow_verifications: AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("htpasswd", &self.htpasswd.is_some())
            .field("slow_verifications", &self.slow_verifications())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        db: Arc<AuthDb>,
        htpasswd: Option<HtpasswdFile>,
        audit: Option<Arc<AuditLog>>,
        settings: AuthenticatorSettings,
    ) -> Authenticator {
        // At start, not per request: without randomness the process cannot run safely.
        let random = |what| random_bytes::<32>().unwrap_or_else(|e| panic!("{what}: {e}"));
        let decoy = hex::encode(&random("decoy password")[..16]);
        let decoy_hash = password::hash_password(&decoy, db.hash_params()).unwrap_or_default();
        Authenticator {
            limiter: LoginLimiter::new(settings.rate_limit.clone(), db.clock().clone()),
            db,
            htpasswd,
            settings,
            audit,
            salt: random("login cache salt"),
            decoy_hash,
            cache: Mutex::new(HashMap::new()),
            slow_verifications: AtomicU64::new(0),
        }
    }

    /// How many times a password hash (argon2 or bcrypt) was computed, for a metric.
    pub fn slow_verifications(&self) -> u64 {
        self.slow_verifications.load(Ordering::Relaxed)
    }

    pub fn authenticate_basic(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Principal, LoginError> {
        if let Err(retry_after) = self.limiter.check(user, client) {
            self.log(user, client, Err(FailReason::RateLimited));
            return Err(LoginError::RateLimited { retry_after });
        }
        let snapshot = self.db.snapshot();
        let key = self.cache_key(user, password);
        if let Some(p) = self.cached(&key, &snapshot) {
            return self.check_expiry(&snapshot, p, user, client);
        }
        match self.verify(&snapshot, user, password) {
            Some(principal) => {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= self.settings.cache_entries.max(1) {
                    cache.clear();
                }
                cache.insert(
                    key,
                    Cached {
                        principal: principal.clone(),
                        generation: snapshot.generation,
                    },
                );
                drop(cache);
                let result = self.check_expiry(&snapshot, principal, user, client);
                if result.is_ok() {
                    self.limiter.succeeded(user, client);
                    self.log(user, client, Ok(()));
                }
                result
            }
            None => {
                self.limiter.failed(user, client);
                self.log(user, client, Err(FailReason::BadCredentials));
                Err(LoginError::Invalid)
            }
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut buf = Vec::with_capacity(40 + user.len() + password.len());
        buf.extend_from_slice(&self.salt);
        buf.extend_from_slice(&(user.len() as u64).to_le_bytes());
        buf.extend_from_slice(user.as_bytes());
        buf.extend_from_slice(password.as_bytes());
        sha256(&buf)
    }

    fn cached(&self, key: &[u8; 32], snapshot: &Snapshot) -> Option<Principal> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(key)?;
        (hit.generation == snapshot.generation).then(|| hit.principal.clone())
    }

    /// The principal these credentials prove, running at most one slow hash.
    fn verify(&self, s: &Snapshot, user: &str, password: &str) -> Option<Principal> {
        if RobotName::looks_like(user) {
            let name = RobotName::parse(user).ok()?.to_string();
            let robot = s.robots.get(&name)?;
            let given = sha256(password.as_bytes());
            return constant_time_eq(&given, &robot.secret_sha256).then(|| Principal::Robot {
                name,
                grants: robot.grants.clone(),
            });
        }
        self.slow_verifications.fetch_add(1, Ordering::Relaxed);
        if let Some(u) = s.users.get(user) {
            return verify_password(password, &u.password_hash).then(|| Principal::User {
                name: user.to_owned(),
                admin: u.admin,
            });
        }
        if let Some(h) = self.htpasswd.as_ref().filter(|h| h.contains(user)) {
            return h.verify(user, password).then(|| Principal::User {
                name: user.to_owned(),
                admin: self.settings.htpasswd_admin,
            });
        }
        let _ = verify_password(password, &self.decoy_hash);
        None
    }

    fn check_expiry(
        &self,
        s: &Snapshot,
        principal: Principal,
        user: &str,
        client: IpAddr,
    ) -> Result<Principal, LoginError> {
        if let Principal::Robot { name, .. } = &principal {
            let now = self.db.now_ms();
            let expired = s
                .robots
                .get(name)
                .is_none_or(|r| r.expires_at_ms.is_some_and(|at| at <= now));
            if expired {
                self.log(user, client, Err(FailReason::Expired));
                return Err(LoginError::Expired(name.clone()));
            }
        }
        Ok(principal)
    }

    fn known(&self, user: &str) -> bool {
        let s = self.db.snapshot();
        if RobotName::looks_like(user) {
            return RobotName::parse(user).is_ok_and(|n| s.robots.contains_key(&n.to_string()));
        }
        s.users.contains_key(user) || self.htpasswd.as_ref().is_some_and(|h| h.contains(user))
    }

    fn log(&self, user: &str, client: IpAddr, outcome: Result<(), FailReason>) {
        let Some(audit) = &self.audit else { return };
        let action = match outcome {
            Ok(()) => AuditAction::Login,
            Err(_) => AuditAction::LoginFailed,
        };
        // A name nobody has is recorded as anonymous: it is often a password typed one field
        // too early.
        let actor = if self.known(user) {
            Actor::claimed(user)
        } else {
            Actor::Anonymous
        };
        let mut event = AuditEvent::new(self.db.now_ms(), actor, action).client(client);
        if let Err(reason) = outcome {
            event = event.detail(Detail::Reason(reason));
        }
        if let Err(e) = audit.record(&event) {
            tracing::warn!(error = %e, "recording a login in the audit trail failed");
        }
    }
}
