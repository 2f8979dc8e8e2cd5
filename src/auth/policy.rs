//! Who may do what to which repository: Harbor's rules over the current [`Snapshot`], with no
//! redb transaction and no hashing per request.
//!
//! - A system administrator may do everything, everywhere.
//! - Anyone, anonymous included, may pull from and list a public project.
//! - A member may do what their role allows in their project (`Role::actions`).
//! - A robot may do what its grants name, while it exists and has not expired (checked here
//!   too, not only at login, so deleting a robot revokes the tokens it already holds).
//! - A repository whose project does not exist is reachable by administrators only; pushing
//!   there first needs [`Policy::may_create_project`].

use std::sync::Arc;

use serde::Deserialize;

use crate::auth::db::AuthDb;
pub use crate::auth::model::Action;
use crate::auth::model::{project_of, ProjectName, Role};
use crate::auth::robot::Grant;
use crate::auth::snapshot::Snapshot;

/// Who is asking, as authentication found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// A user of `auth.redb` or of an htpasswd file. `admin` is what was true at login; for
    /// users of `auth.redb` the current value is used instead.
    User {
        name: String,
        admin: bool,
    },
    /// `name` in the `robot$<project>+<name>` form.
    Robot {
        name: String,
        grants: Arc<[Grant]>,
    },
}

impl Principal {
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { name, .. } | Principal::Robot { name, .. } => Some(name),
        }
    }
}

/// Who may create a project by pushing into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectCreation {
    /// System administrators only (Harbor's default).
    #[default]
    Admins,
    /// Any user (not robots); they become the project's projectAdmin.
    Authenticated,
}

/// Settings of the policy.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    /// The project of single-component repository names (`app` → `library`).
    pub default_project: ProjectName,
    pub project_creation: ProjectCreation,
}

impl Default for PolicySettings {
    fn default() -> PolicySettings {
        PolicySettings {
            default_project: ProjectName::parse("library").expect("a valid name"),
            project_creation: ProjectCreation::Admins,
        }
    }
}

/// Access decisions over an [`AuthDb`].
#[derive(Debug, Clone)]
pub struct Policy {
    db: Arc<AuthDb>,
    settings: PolicySettings,
}

impl Policy {
    pub fn new(db: Arc<AuthDb>, settings: PolicySettings) -> Policy {
        Policy { db, settings }
    }

    pub fn db(&self) -> &Arc<AuthDb> {
        &self.db
    }

    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The project `repository` belongs to.
    pub fn project_of<'a>(&'a self, repository: &'a str) -> &'a str {
        project_of(repository, self.settings.default_project.as_str())
    }

    pub fn allowed(&self, principal: &Principal, repository: &str, action: Action) -> bool {
        let s = self.db.snapshot();
        self.allowed_in(&s, self.db.now_ms(), principal, repository, action)
    }

    fn allowed_in(
        &self,
        s: &Snapshot,
        now_ms: u64,
        principal: &Principal,
        repository: &str,
        action: Action,
    ) -> bool {
        if is_admin(s, principal) {
            return true;
        }
        let project = self.project_of(repository);
        let Some(p) = s.projects.get(project) else {
            return false;
        };
        if p.public && matches!(action, Action::Pull | Action::List) {
            return true;
        }
        match principal {
            Principal::Anonymous => false,
            Principal::User { name, .. } => p
                .members
                .get(name)
                .is_some_and(|role| role.actions().contains(action)),
            Principal::Robot { name, grants } => {
                robot_live(s, name, now_ms)
                    && grants
                        .iter()
                        .any(|g| g.project.as_str() == project && g.actions.contains(action))
            }
        }
    }

    /// Whether a push into a project that does not exist yet may create it.
    pub fn may_create_project(&self, principal: &Principal) -> bool {
        let s = self.db.snapshot();
        match principal {
            Principal::User { .. } if is_admin(&s, principal) => true,
            Principal::User { .. } => {
                self.settings.project_creation == ProjectCreation::Authenticated
            }
            Principal::Anonymous | Principal::Robot { .. } => false,
        }
    }

    /// Whether `principal` may change the project's members, robots, rules and settings.
    pub fn may_manage_project(&self, principal: &Principal, project: &str) -> bool {
        let s = self.db.snapshot();
        match principal {
            Principal::User { name, .. } => {
                is_admin(&s, principal) || s.role_of(project, name) == Some(Role::ProjectAdmin)
            }
            Principal::Anonymous | Principal::Robot { .. } => false,
        }
    }

    /// Whether an existing `tag` of `repository` may not be moved or deleted.
    pub fn tag_is_immutable(&self, repository: &str, tag: &str) -> bool {
        let s = self.db.snapshot();
        s.projects
            .get(self.project_of(repository))
            .is_some_and(|p| p.immutable.iter().any(|r| r.matches(tag)))
    }

    /// The quota of the repository's project; the storage engine computes the usage.
    pub fn quota_bytes(&self, repository: &str) -> Option<u64> {
        let s = self.db.snapshot();
        s.projects.get(self.project_of(repository))?.quota_bytes
    }

    /// The repositories `principal` may list, in the order given (for `_catalog`); one
    /// snapshot for the whole list.
    pub fn visible_repositories<S: AsRef<str>>(
        &self,
        principal: &Principal,
        repositories: impl IntoIterator<Item = S>,
    ) -> Vec<S> {
        let s = self.db.snapshot();
        let now = self.db.now_ms();
        repositories
            .into_iter()
            .filter(|r| self.allowed_in(&s, now, principal, r.as_ref(), Action::List))
            .collect()
    }
}

/// A user of `auth.redb` is an administrator if the database says so now; a user from
/// elsewhere (an htpasswd file) if authentication said so.
fn is_admin(s: &Snapshot, principal: &Principal) -> bool {
    match principal {
        Principal::User { name, admin } => s.users.get(name).map_or(*admin, |u| u.admin),
        _ => false,
    }
}

fn robot_live(s: &Snapshot, name: &str, now_ms: u64) -> bool {
    s.robots
        .get(name)
        .is_some_and(|r| r.expires_at_ms.is_none_or(|at| at > now_ms))
}
