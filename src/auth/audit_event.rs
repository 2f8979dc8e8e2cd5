//! The audit event: who did what, from where, to which project, repository, digest or tag.
//! It has no free-text field: every field is a validated name, a digest, an address or one of
//! a closed set of details, so a password, secret or token has nowhere to go.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::auth::error::AuthError;
use crate::auth::model::{ActionSet, ProjectName, Role, TagPattern, UserName};
use crate::auth::policy::Principal;
use crate::auth::robot::RobotName;
use crate::oci::digest::Digest;
use crate::oci::name::{is_valid_name, is_valid_tag};

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    Anonymous,
    User(UserName),
    Robot(RobotName),
    /// The `berth` command line working on a stopped registry's data directory.
    Operator,
}

impl Actor {
    /// The actor of a request. A name that is not a valid user or robot name (possible only
    /// for htpasswd users) is recorded as anonymous rather than as free text.
    pub fn of(principal: &Principal) -> Actor {
        match principal {
            Principal::Anonymous => Actor::Anonymous,
            Principal::User { name, .. } => {
                UserName::parse(name).map_or(Actor::Anonymous, Actor::User)
            }
            Principal::Robot { name, .. } => {
                RobotName::parse(name).map_or(Actor::Anonymous, Actor::Robot)
            }
        }
    }

    /// The name a login attempt gave, if it is a syntactically valid user or robot name.
    pub fn claimed(name: &str) -> Actor {
        if RobotName::looks_like(name) {
            RobotName::parse(name).map_or(Actor::Anonymous, Actor::Robot)
        } else {
            UserName::parse(name).map_or(Actor::Anonymous, Actor::User)
        }
    }

    /// The user or robot name, for filters.
    pub fn name(&self) -> Option<String> {
        match self {
            Actor::User(n) => Some(n.to_string()),
            Actor::Robot(n) => Some(n.to_string()),
            Actor::Anonymous | Actor::Operator => None,
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Login,
    LoginFailed,
    Push,
    Pull,
    Delete,
    ProjectCreate,
    ProjectDelete,
    ProjectUpdate,
    MemberAdd,
    MemberRemove,
    UserAdd,
    UserDelete,
    UserPassword,
    RobotAdd,
    RobotDelete,
    ImmutableAdd,
    ImmutableDelete,
}

/// Why a login failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    BadCredentials,
    RateLimited,
    Expired,
}

/// What else is worth knowing about an event: a closed set, never free text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Role(Role),
    Actions(ActionSet),
    Public(bool),
    Admin(bool),
    QuotaBytes(Option<u64>),
    Pattern(TagPattern),
    ExpiresAtMs(Option<u64>),
    Member(UserName),
    Reason(FailReason),
}

/// A repository name as OCI allows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);

/// A tag as OCI allows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

macro_rules! checked_string {
    ($t:ident, $check:expr, $what:literal) => {
        impl TryFrom<String> for $t {
            type Error = AuthError;
            fn try_from(s: String) -> Result<$t, AuthError> {
                if $check(&s) {
                    Ok($t(s))
                } else {
                    Err(AuthError::invalid($what, &s, "not valid in OCI"))
                }
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl $t {
            pub fn parse(s: &str) -> Result<$t, AuthError> {
                $t::try_from(s.to_owned())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_string!(Repository, is_valid_name, "repository");
checked_string!(Tag, is_valid_tag, "tag");

/// One entry of the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at_ms: u64,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

impl AuditEvent {
    /// An event at `at_ms` with no subject yet; fill in with the builder methods.
    pub fn new(at_ms: u64, actor: Actor, action: AuditAction) -> AuditEvent {
        AuditEvent {
            at_ms,
            actor,
            client: None,
            action,
            project: None,
            repository: None,
            digest: None,
            tag: None,
            detail: None,
        }
    }

    pub fn client(mut self, ip: IpAddr) -> AuditEvent {
        self.client = Some(ip);
        self
    }

    pub fn project(mut self, p: ProjectName) -> AuditEvent {
        self.project = Some(p);
        self
    }

    pub fn repository(mut self, r: Repository) -> AuditEvent {
        self.repository = Some(r);
        self
    }

    pub fn digest(mut self, d: Digest) -> AuditEvent {
        self.digest = Some(d);
        self
    }

    pub fn tag(mut self, t: Tag) -> AuditEvent {
        self.tag = Some(t);
        self
    }

    pub fn detail(mut self, d: Detail) -> AuditEvent {
        self.detail = Some(d);
        self
    }
}
