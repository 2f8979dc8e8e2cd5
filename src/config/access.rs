//! The `[auth]` and `[audit]` tables and their `--auth-*` / `--audit-*` flags: who may do what,
//! how clients prove who they are, and what the audit log keeps.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::config::units::HumanDuration;
use crate::config::ConfigError;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Everyone may do everything (the embedded loopback default).
    #[default]
    None,
    /// HTTP Basic against berth's users, robots and an optional htpasswd file.
    Basic,
    /// The docker token flow: `/token` issues JWTs; Basic is accepted on `/v2/` too.
    Token,
}

/// Algorithm of berth's own token signing key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    #[default]
    Eddsa,
    Es256,
}

/// Who may create a project by pushing into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectCreation {
    /// Only system admins (Harbor's default).
    #[default]
    Admin,
    /// Any authenticated user, who becomes the new project's admin.
    User,
}

/// `[auth]`: flags `--auth-*`, variables `BERTH_AUTH_*`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthArgs {
    /// none, basic or token [default: none].
    #[arg(
        id = "auth_mode",
        long = "auth-mode",
        env = "BERTH_AUTH_MODE",
        value_enum
    )]
    pub mode: Option<AuthMode>,
    /// htpasswd file (bcrypt entries) whose users may log in too.
    #[arg(
        id = "auth_htpasswd",
        long = "auth-htpasswd",
        env = "BERTH_AUTH_HTPASSWD",
        value_name = "FILE"
    )]
    pub htpasswd: Option<PathBuf>,
    /// Name of this registry in tokens (`aud`) and challenges [default: berth].
    #[arg(
        id = "auth_service",
        long = "auth-service",
        env = "BERTH_AUTH_SERVICE",
        value_name = "NAME"
    )]
    pub service: Option<String>,
    /// `iss` of the tokens berth issues [default: berth].
    #[arg(
        id = "auth_issuer",
        long = "auth-issuer",
        env = "BERTH_AUTH_ISSUER",
        value_name = "NAME"
    )]
    pub issuer: Option<String>,
    /// Token endpoint URL announced in challenges [default: derived from each request's
    /// X-Forwarded-Proto/X-Forwarded-Host or Host, path /token].
    #[arg(
        id = "auth_realm",
        long = "auth-realm",
        env = "BERTH_AUTH_REALM",
        value_name = "URL"
    )]
    pub realm: Option<String>,
    /// Lifetime of issued access tokens [default: 5m].
    #[arg(
        id = "auth_token_ttl",
        long = "auth-token-ttl",
        env = "BERTH_AUTH_TOKEN_TTL",
        value_name = "DURATION"
    )]
    pub token_ttl: Option<HumanDuration>,
    /// Lifetime of refresh tokens (`offline_token=true`) [default: 30d].
    #[arg(
        id = "auth_refresh_ttl",
        long = "auth-refresh-ttl",
        env = "BERTH_AUTH_REFRESH_TTL",
        value_name = "DURATION"
    )]
    pub refresh_ttl: Option<HumanDuration>,
    /// Signing key algorithm, used when the key is first created [default: eddsa].
    #[arg(
        id = "auth_key_algorithm",
        long = "auth-key-algorithm",
        env = "BERTH_AUTH_KEY_ALGORITHM",
        value_enum
    )]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Also accept tokens of this external issuer (with --auth-external-keys).
    #[arg(
        id = "auth_external_issuer",
        long = "auth-external-issuer",
        env = "BERTH_AUTH_EXTERNAL_ISSUER",
        value_name = "ISS",
        requires = "auth_external_keys"
    )]
    pub external_issuer: Option<String>,
    /// PEM bundle (certificates or public keys) or JWKS file of the external issuer's keys.
    #[arg(
        id = "auth_external_keys",
        long = "auth-external-keys",
        env = "BERTH_AUTH_EXTERNAL_KEYS",
        value_name = "FILE",
        requires = "auth_external_issuer"
    )]
    pub external_keys: Option<PathBuf>,
    /// Project of single-component repository names [default: library].
    #[arg(
        id = "auth_default_project",
        long = "auth-default-project",
        env = "BERTH_AUTH_DEFAULT_PROJECT",
        value_name = "NAME"
    )]
    pub default_project: Option<String>,
    /// Who may create a project by pushing into it: admin or user [default: admin].
    #[arg(
        id = "auth_project_creation",
        long = "auth-project-creation",
        env = "BERTH_AUTH_PROJECT_CREATION",
        value_enum
    )]
    pub project_creation: Option<ProjectCreation>,
}

impl AuthArgs {
    pub fn or(self, other: AuthArgs) -> AuthArgs {
        AuthArgs {
            mode: self.mode.or(other.mode),
            htpasswd: self.htpasswd.or(other.htpasswd),
            service: self.service.or(other.service),
            issuer: self.issuer.or(other.issuer),
            realm: self.realm.or(other.realm),
            token_ttl: self.token_ttl.or(other.token_ttl),
            refresh_ttl: self.refresh_ttl.or(other.refresh_ttl),
            key_algorithm: self.key_algorithm.or(other.key_algorithm),
            external_issuer: self.external_issuer.or(other.external_issuer),
            external_keys: self.external_keys.or(other.external_keys),
            default_project: self.default_project.or(other.default_project),
            project_creation: self.project_creation.or(other.project_creation),
        }
    }
}

/// `[audit]`: flags `--audit-*`, variables `BERTH_AUDIT_*`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuditArgs {
    /// Most audit events kept; the oldest go first [default: 1000000].
    #[arg(
        id = "audit_max_events",
        long = "audit-max-events",
        env = "BERTH_AUDIT_MAX_EVENTS",
        value_name = "N"
    )]
    pub max_events: Option<u64>,
    /// Audit events older than this are dropped [default: 90d].
    #[arg(
        id = "audit_max_age",
        long = "audit-max-age",
        env = "BERTH_AUDIT_MAX_AGE",
        value_name = "DURATION"
    )]
    pub max_age: Option<HumanDuration>,
    /// Also append every event to this JSON-lines file (for log shippers).
    #[arg(
        id = "audit_file",
        long = "audit-file",
        env = "BERTH_AUDIT_FILE",
        value_name = "FILE"
    )]
    pub file: Option<PathBuf>,
    /// Record pulls too (one event per manifest GET) [default: true].
    #[arg(
        id = "audit_pulls",
        long = "audit-pulls",
        env = "BERTH_AUDIT_PULLS",
        value_name = "BOOL"
    )]
    pub pulls: Option<bool>,
}

impl AuditArgs {
    pub fn or(self, other: AuditArgs) -> AuditArgs {
        AuditArgs {
            max_events: self.max_events.or(other.max_events),
            max_age: self.max_age.or(other.max_age),
            file: self.file.or(other.file),
            pulls: self.pulls.or(other.pulls),
        }
    }
}

/// Resolved `[auth]` and `[audit]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub htpasswd: Option<PathBuf>,
    pub service: String,
    pub issuer: String,
    pub realm: Option<String>,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub key_algorithm: KeyAlgorithm,
    pub external: Option<(String, PathBuf)>,
    pub default_project: String,
    pub project_creation: ProjectCreation,
    pub audit_max_events: u64,
    pub audit_max_age: Duration,
    pub audit_file: Option<PathBuf>,
    pub audit_pulls: bool,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            mode: AuthMode::None,
            htpasswd: None,
            service: "berth".into(),
            issuer: "berth".into(),
            realm: None,
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            key_algorithm: KeyAlgorithm::Eddsa,
            external: None,
            default_project: "library".into(),
            project_creation: ProjectCreation::Admin,
            audit_max_events: 1_000_000,
            audit_max_age: Duration::from_secs(90 * 86_400),
            audit_file: None,
            audit_pulls: true,
        }
    }
}

impl AuthSettings {
    pub fn resolve(auth: &AuthArgs, audit: &AuditArgs) -> Result<AuthSettings, ConfigError> {
        let d = AuthSettings::default();
        let token_ttl = auth.token_ttl.map_or(d.token_ttl, |t| t.0);
        if token_ttl < Duration::from_secs(60) {
            // docker and containerd refresh a token with less than a minute left on every use.
            return Err(ConfigError::Invalid(
                "auth token-ttl must be at least 60s".into(),
            ));
        }
        if let Some(realm) = &auth.realm {
            if !(realm.starts_with("http://") || realm.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "auth realm must be an http:// or https:// URL, not {realm:?}"
                )));
            }
        }
        let default_project = auth.default_project.clone().unwrap_or(d.default_project);
        if default_project.is_empty() || default_project.contains('/') {
            return Err(ConfigError::Invalid(format!(
                "auth default-project must be one path component, not {default_project:?}"
            )));
        }
        Ok(AuthSettings {
            mode: auth.mode.unwrap_or(d.mode),
            htpasswd: auth.htpasswd.clone(),
            service: auth.service.clone().unwrap_or(d.service),
            issuer: auth.issuer.clone().unwrap_or(d.issuer),
            realm: auth.realm.clone(),
            token_ttl,
            refresh_ttl: auth.refresh_ttl.map_or(d.refresh_ttl, |t| t.0),
            key_algorithm: auth.key_algorithm.unwrap_or(d.key_algorithm),
            external: auth.external_issuer.clone().zip(auth.external_keys.clone()),
            default_project,
            project_creation: auth.project_creation.unwrap_or(d.project_creation),
            audit_max_events: audit.max_events.unwrap_or(d.audit_max_events).max(1),
            audit_max_age: audit.max_age.map_or(d.audit_max_age, |t| t.0),
            audit_file: audit.file.clone(),
            audit_pulls: audit.pulls.unwrap_or(d.audit_pulls),
        })
    }
}
