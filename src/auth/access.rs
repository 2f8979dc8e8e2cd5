//! The access-control service the registry holds: it turns credentials into a [`Caller`]
//! (Basic against the users, robots and htpasswd file; Bearer against berth's own key or an
//! external issuer's), decides whether a caller may act on a repository, and issues tokens
//! for the `/token` endpoint. No HTTP: the API layer maps [`Verdict`]s to 401/403/429.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::audit::{AuditEvent, AuditLimits, AuditLog};
use crate::auth::audit_queue::AuditQueue;
use crate::auth::cache::TokenCache;
use crate::auth::claims::{Claims, ResourceActions};
use crate::auth::db::AuthDb;
use crate::auth::error::AuthError;
use crate::auth::htpasswd::HtpasswdFile;
use crate::auth::jwt::{self, TokenKind, Verifier};
use crate::auth::keys::SigningKey;
use crate::auth::login::{Authenticator, AuthenticatorSettings, LoginError};
use crate::auth::model::{Action, ProjectName, UserName};
use crate::auth::policy::{Policy, PolicySettings, Principal, ProjectCreation};
use crate::auth::public::Alg;
use crate::auth::token_error::{KeyError, TokenError};
use crate::auth::verifying::VerifyingKeys;
use crate::config::access::{AuthMode, AuthSettings, KeyAlgorithm};

/// Who is asking, as far as this request proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub client: IpAddr,
    /// The verified bearer token, if the request carried one: what it grants bounds what the
    /// caller may do.
    pub token: Option<Arc<Claims>>,
    /// The token came from an external issuer: its grants alone decide.
    pub external: bool,
}

impl Caller {
    pub fn anonymous(client: IpAddr) -> Caller {
        Caller {
            principal: Principal::Anonymous,
            client,
            token: None,
            external: false,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self.principal, Principal::Anonymous) && !self.external
    }
}

/// The answer to "may this caller do this".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not proven enough: 401 with a challenge (no credentials, or a token that lacks a scope
    /// the caller could get; `insufficient_scope` tells the client to fetch a new token).
    Challenge {
        insufficient_scope: bool,
    },
    /// Authenticated, and not allowed: 403 `DENIED`.
    Deny,
}

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("bearer tokens are not accepted in basic mode")]
    BearerInBasicMode,
}

/// What the `/token` endpoint hands out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: Duration,
    pub issued_at: SystemTime,
    pub refresh_token: Option<String>,
}

/// Failures while assembling the service at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Everything access control needs at run time.
pub struct AccessControl {
    settings: AuthSettings,
    db: Arc<AuthDb>,
    policy: Policy,
    authenticator: Authenticator,
    audit: Arc<AuditLog>,
    /// Request-rate events (pushes, pulls, deletes, token logins), written in batches.
    queue: AuditQueue,
    signing: Option<SigningKey>,
    own: Option<Verifier>,
    external: Option<Verifier>,
    /// Verified tokens, one cache per verifier: a token verified by the external issuer's keys
    /// must never come back as one of berth's own.
    own_cache: TokenCache,
    external_cache: TokenCache,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

/// Verified tokens kept; a bound on memory, far above the tokens a cluster holds at once.
const TOKEN_CACHE_ENTRIES: usize = 65_536;

impl AccessControl {
    /// Opens `auth.redb` in `data_dir` (creating the system admin on first start; a generated
    /// password is returned to be shown once) and, in token mode, the signing key.
    pub fn open(
        data_dir: &Path,
        settings: &AuthSettings,
    ) -> Result<(AccessControl, Option<String>), SetupError> {
        let db = Arc::new(AuthDb::open(data_dir)?);
        let first_start = db.snapshot().users.is_empty() && db.snapshot().projects.is_empty();
        let first_password = db.ensure_admin(&crate::auth::password::PasswordSource::from_env())?;
        if first_start {
            // Harbor's first start: a public `library` for single-component names.
            let library = ProjectName::parse(&settings.default_project)?;
            match db.add_project(&library, true, None) {
                Ok(_) | Err(AuthError::Exists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let policy = Policy::new(
            db.clone(),
            PolicySettings {
                default_project: ProjectName::parse(&settings.default_project)?,
                project_creation: match settings.project_creation {
                    crate::config::access::ProjectCreation::Admin => ProjectCreation::Admins,
                    crate::config::access::ProjectCreation::User => ProjectCreation::Authenticated,
                },
            },
        );
        let audit = Arc::new(AuditLog::open(
            db.clone(),
            AuditLimits {
                max_rows: settings.audit_max_events,
                max_age: Some(settings.audit_max_age),
                jsonl: settings.audit_file.clone(),
                ..AuditLimits::default()
            },
        )?);
        let htpasswd = match &settings.htpasswd {
            Some(path) => Some(HtpasswdFile::load(path)?),
            None => None,
        };
        // htpasswd users keep what CNCF distribution gave them: everything.
        let authenticator = Authenticator::new(
            db.clone(),
            htpasswd,
            Some(audit.clone()),
            AuthenticatorSettings {
                htpasswd_admin: true,
                ..AuthenticatorSettings::default()
            },
        );
        let (signing, own) = if settings.mode == AuthMode::Token {
            let alg = match settings.key_algorithm {
                KeyAlgorithm::Eddsa => Alg::EdDSA,
                KeyAlgorithm::Es256 => Alg::ES256,
            };
            let key = SigningKey::load_or_create(data_dir, alg)?;
            let verifier = Verifier::new(
                VerifyingKeys::own(&key),
                settings.issuer.clone(),
                settings.service.clone(),
            );
            (Some(key), Some(verifier))
        } else {
            (None, None)
        };
        let external = match &settings.external {
            Some((issuer, path)) => {
                let bytes = std::fs::read(path).map_err(|source| SetupError::Read {
                    path: path.clone(),
                    source,
                })?;
                let keys = if bytes.trim_ascii_start().starts_with(b"{") {
                    VerifyingKeys::from_jwks(&bytes)?
                } else {
                    VerifyingKeys::from_pem_bundle(&bytes)?
                };
                Some(Verifier::new(
                    keys,
                    issuer.clone(),
                    settings.service.clone(),
                ))
            }
            None => None,
        };
        Ok((
            AccessControl {
                settings: settings.clone(),
                db,
                policy,
                authenticator,
                queue: AuditQueue::new(audit.clone()),
                audit,
                signing,
                own,
                external,
                own_cache: TokenCache::new(TOKEN_CACHE_ENTRIES),
                external_cache: TokenCache::new(TOKEN_CACHE_ENTRIES),
            },
            first_password,
        ))
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn db(&self) -> &Arc<AuthDb> {
        &self.db
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Queues a request's audit event (written within a fraction of a second, in a batch).
    pub fn record(&self, event: AuditEvent) {
        self.queue.push(event);
    }

    /// Writes every queued audit event now (before the trail is listed).
    pub fn flush_audit(&self) {
        self.queue.flush();
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Access-control lines for `/metrics` (Prometheus text format).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        gauge(
            "berth_auth_password_hashes_total",
            "Password and secret hashes computed for logins (cached logins compute none).",
            "counter",
            self.authenticator.slow_verifications().to_string(),
        );
        gauge(
            "berth_auth_token_cache_entries",
            "Verified tokens held until they expire.",
            "gauge",
            (self.own_cache.len() + self.external_cache.len()).to_string(),
        );
        gauge(
            "berth_audit_events_dropped_total",
            "Audit events dropped because the writer fell 100,000 events behind.",
            "counter",
            self.queue.dropped().to_string(),
        );
        // Silently expired robots break CI; this lets an alert fire days ahead.
        if let Some((_, expires_ms)) = self.db.soonest_expiry() {
            let left = expires_ms.saturating_sub(self.db.now_ms()) / 1000;
            gauge(
                "berth_robot_soonest_expiry_seconds",
                "Seconds until the next robot account expires.",
                "gauge",
                left.to_string(),
            );
        }
        out
    }

    /// The public keys tokens are signed with, as a JWKS document.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.signing.as_ref().map(SigningKey::jwks)
    }

    /// HTTP Basic credentials.
    pub fn basic(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Caller, CredentialError> {
        let principal = self
            .authenticator
            .authenticate_basic(user, password, client)?;
        Ok(Caller {
            principal,
            client,
            token: None,
            external: false,
        })
    }

    /// A bearer access token; verified once, then served from the cache until it expires.
    pub fn bearer(&self, token: &str, client: IpAddr) -> Result<Caller, CredentialError> {
        let now = SystemTime::now();
        if let Some(own) = &self.own {
            match self.own_cache.verify(own, token, now) {
                Ok(claims) => {
                    let principal = self.principal_of(&claims.sub);
                    return Ok(Caller {
                        principal,
                        client,
                        token: Some(claims),
                        external: false,
                    });
                }
                Err(e) if self.external.is_none() => return Err(e.into()),
                Err(_) => {}
            }
        }
        match &self.external {
            Some(ext) => {
                let claims = self.external_cache.verify(ext, token, now)?;
                Ok(Caller {
                    principal: Principal::Anonymous,
                    client,
                    token: Some(claims),
                    external: true,
                })
            }
            None => Err(CredentialError::BearerInBasicMode),
        }
    }

    /// The principal a token of berth's own names: its current rights, so a deleted user or
    /// robot loses what its unexpired tokens still list.
    fn principal_of(&self, subject: &str) -> Principal {
        if subject.is_empty() {
            return Principal::Anonymous;
        }
        let snapshot = self.db.snapshot();
        if let Some(robot) = snapshot.robots.get(subject) {
            return Principal::Robot {
                name: subject.to_owned(),
                grants: robot.grants.clone(),
            };
        }
        match snapshot.users.get(subject) {
            Some(u) => Principal::User {
                name: subject.to_owned(),
                admin: u.admin,
            },
            // An htpasswd user (not in auth.redb): its rights are the public projects'.
            None => Principal::User {
                name: subject.to_owned(),
                admin: false,
            },
        }
    }

    /// Whether the policy lets `principal` do `action` on `repository` (a push into a project
    /// that does not exist yet counts when the principal may create it).
    pub fn policy_allows(&self, principal: &Principal, repository: &str, action: Action) -> bool {
        self.policy.allowed(principal, repository, action)
            || (action == Action::Push
                && !self.project_exists(repository)
                && self.policy.may_create_project(principal))
    }

    fn project_exists(&self, repository: &str) -> bool {
        let project = self.policy.project_of(repository);
        self.db.snapshot().projects.contains_key(project)
    }

    /// May `caller` do `action` on `repository`?
    pub fn decide(&self, caller: &Caller, repository: &str, action: Action) -> Verdict {
        // Clients ask for `pull` to list tags; the policy still tells listing apart.
        let token_action = match action {
            Action::List => "pull",
            a => a.name(),
        };
        let token_ok = |t: &Claims| t.allows("repository", repository, token_action);
        if caller.external {
            return if caller.token.as_deref().is_some_and(token_ok) {
                Verdict::Allow
            } else {
                Verdict::Challenge {
                    insufficient_scope: true,
                }
            };
        }
        let policy_ok = self.policy_allows(&caller.principal, repository, action);
        match caller.token.as_deref() {
            Some(t) if !token_ok(t) => {
                if policy_ok || caller.is_anonymous() {
                    Verdict::Challenge {
                        insufficient_scope: true,
                    }
                } else {
                    Verdict::Deny
                }
            }
            _ if policy_ok => Verdict::Allow,
            _ if caller.is_anonymous() => Verdict::Challenge {
                insufficient_scope: false,
            },
            _ => Verdict::Deny,
        }
    }

    /// May `caller` see the catalog (its entries are filtered by [`AccessControl::visible`])?
    pub fn decide_catalog(&self, caller: &Caller) -> Verdict {
        let token_ok = caller
            .token
            .as_ref()
            .is_none_or(|t| t.allows("registry", "catalog", "*"));
        match (caller.is_anonymous(), token_ok) {
            (true, _) => Verdict::Challenge {
                insufficient_scope: false,
            },
            (false, true) => Verdict::Allow,
            (false, false) => Verdict::Challenge {
                insufficient_scope: true,
            },
        }
    }

    /// Is `caller` a system administrator (for `/metrics`, `/admin/`, `/api/v1/`)?
    pub fn is_admin(&self, caller: &Caller) -> bool {
        match &caller.principal {
            Principal::User { name, admin } => self
                .db
                .snapshot()
                .users
                .get(name)
                .map_or(*admin, |u| u.admin),
            _ => false,
        }
    }

    /// Repositories of `names` the caller may list (in `_catalog`, a caller sees only these;
    /// an external token's holder sees those its grants name).
    pub fn visible(&self, caller: &Caller, names: Vec<String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| {
                if caller.external {
                    self.decide(caller, n, Action::List) == Verdict::Allow
                } else {
                    // The catalog token grants the listing; the policy says of what.
                    self.policy.allowed(&caller.principal, n, Action::List)
                }
            })
            .collect()
    }

    /// Creates the project of `repository` for `principal` if it does not exist (a first push
    /// by someone allowed to create projects).
    pub fn ensure_project(&self, principal: &Principal, repository: &str) -> Result<(), AuthError> {
        if self.project_exists(repository) || !self.policy.may_create_project(principal) {
            return Ok(());
        }
        let project = ProjectName::parse(self.policy.project_of(repository))?;
        let created = match principal {
            // An admin's project has no members yet; anyone else becomes its projectAdmin.
            Principal::User { name, admin: false } => self
                .db
                .create_project_for(&project, &UserName::parse(name)?),
            _ => self.db.add_project(&project, false, None),
        };
        match created {
            Ok(_) | Err(AuthError::Exists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The part of `requested` that `principal` may have: never an error for asking too much.
    pub fn grant(
        &self,
        principal: &Principal,
        requested: &[ResourceActions],
    ) -> Vec<ResourceActions> {
        let mut granted = Vec::new();
        for r in requested {
            let actions: Vec<String> = match r.kind.as_str() {
                "repository" => {
                    let wanted: Vec<Action> = if r.actions.iter().any(|a| a == "*") {
                        Action::ALL.to_vec()
                    } else {
                        r.actions.iter().filter_map(|a| a.parse().ok()).collect()
                    };
                    wanted
                        .into_iter()
                        .filter(|a| self.policy_allows(principal, &r.name, *a))
                        .map(|a| a.name().to_owned())
                        .collect()
                }
                "registry" if r.name == "catalog" && principal.name().is_some() => {
                    vec!["*".to_owned()]
                }
                _ => Vec::new(),
            };
            if !actions.is_empty() {
                granted.push(ResourceActions {
                    actions,
                    ..r.clone()
                });
            }
        }
        granted
    }

    /// Signs an access token for `principal` with the grantable part of `requested`, and a
    /// refresh token when `offline`.
    pub fn issue(
        &self,
        principal: &Principal,
        requested: &[ResourceActions],
        offline: bool,
    ) -> Result<Issued, TokenError> {
        let key = self.signing.as_ref().ok_or(TokenError::Signing)?;
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let subject = principal.name().unwrap_or("").to_owned();
        let jti = crate::auth::password::random_bytes::<16>().map_err(|_| TokenError::Signing)?;
        let claims = |access: Vec<ResourceActions>, ttl: Duration| Claims {
            iss: self.settings.issuer.clone(),
            sub: subject.clone(),
            aud: vec![self.settings.service.clone()],
            exp: secs + ttl.as_secs(),
            nbf: Some(secs.saturating_sub(1)),
            iat: Some(secs),
            jti: Some(hex::encode(jti)),
            access,
        };
        let token = jwt::sign(
            key,
            &claims(self.grant(principal, requested), self.settings.token_ttl),
            TokenKind::Access,
        )?;
        let refresh_token = if offline && principal.name().is_some() {
            Some(jwt::sign(
                key,
                &claims(Vec::new(), self.settings.refresh_ttl),
                TokenKind::Refresh,
            )?)
        } else {
            None
        };
        Ok(Issued {
            token,
            expires_in: self.settings.token_ttl,
            issued_at: now,
            refresh_token,
        })
    }

    /// The principal a refresh token was issued to, if it is valid and they still exist.
    pub fn refresh(&self, token: &str) -> Result<Principal, CredentialError> {
        let own = self
            .own
            .as_ref()
            .ok_or(CredentialError::BearerInBasicMode)?;
        let claims = own.verify(token, TokenKind::Refresh, SystemTime::now())?;
        let principal = self.principal_of(&claims.sub);
        let snapshot = self.db.snapshot();
        let exists =
            snapshot.users.contains_key(&claims.sub) || snapshot.robots.contains_key(&claims.sub);
        if !exists {
            return Err(LoginError::Invalid.into());
        }
        Ok(principal)
    }
}
