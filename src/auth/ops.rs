//! The administrative operations as data. The command line applies them to a stopped
//! registry's `auth.redb`; because they (and their replies) are serde types, an admin endpoint
//! of the running registry can later take the same JSON and call the same [`apply`].
//! Each change is recorded in the audit trail with whoever made it.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::auth::audit::{self, Actor, AuditAction, AuditEvent, AuditFilter, AuditLog, Detail};
use crate::auth::db::AuthDb;
use crate::auth::error::AuthError;
use crate::auth::model::{
    ActionSet, ImmutableRule, Member, Project, ProjectName, Role, TagPattern, UserInfo, UserName,
};
use crate::auth::robot::{Expiry, RobotInfo, RobotName};
use crate::auth::robots::NewRobot;

/// A password in transit: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum AdminOp {
    UserAdd {
        name: UserName,
        password: Secret,
        admin: bool,
    },
    UserDel {
        name: UserName,
    },
    UserPasswd {
        name: UserName,
        password: Secret,
    },
    UserList,
    ProjectAdd {
        name: ProjectName,
        public: bool,
        quota_bytes: Option<u64>,
    },
    ProjectDel {
        name: ProjectName,
    },
    ProjectList,
    ProjectSetPublic {
        name: ProjectName,
        public: bool,
    },
    ProjectQuota {
        name: ProjectName,
        quota_bytes: Option<u64>,
    },
    MemberAdd {
        project: ProjectName,
        user: UserName,
        role: Role,
    },
    MemberDel {
        project: ProjectName,
        user: UserName,
    },
    MemberList {
        project: ProjectName,
    },
    RobotAdd {
        name: RobotName,
        actions: ActionSet,
        expiry: Expiry,
    },
    RobotDel {
        name: RobotName,
    },
    RobotList {
        project: Option<ProjectName>,
    },
    ImmutableAdd {
        project: ProjectName,
        pattern: TagPattern,
    },
    ImmutableDel {
        project: ProjectName,
        pattern: TagPattern,
    },
    ImmutableList {
        project: ProjectName,
    },
    Audit {
        filter: AuditFilter,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "items", rename_all = "kebab-case")]
pub enum AdminReply {
    Done,
    Users(Vec<UserInfo>),
    Projects(Vec<Project>),
    Members(Vec<Member>),
    Robots(Vec<RobotInfo>),
    NewRobot(NewRobot),
    Rules(Vec<ImmutableRule>),
    Events(Vec<AuditEvent>),
}

/// Who asks, for the audit trail.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
    pub client: Option<IpAddr>,
}

/// Carries out `op`, recording changes in `audit` when given.
pub fn apply(
    db: &AuthDb,
    audit: Option<&AuditLog>,
    caller: &Caller,
    op: AdminOp,
) -> Result<AdminReply, AuthError> {
    use AdminOp::*;
    use AuditAction as A;
    let event = |action: AuditAction| {
        let e = AuditEvent::new(db.now_ms(), caller.actor.clone(), action);
        match caller.client {
            Some(ip) => e.client(ip),
            None => e,
        }
    };
    let (reply, record) = match op {
        UserAdd {
            name,
            password,
            admin,
        } => {
            db.add_user(&name, &password.0, admin)?;
            (
                AdminReply::Done,
                Some(event(A::UserAdd).detail(Detail::Member(name))),
            )
        }
        UserDel { name } => {
            db.delete_user(&name)?;
            (
                AdminReply::Done,
                Some(event(A::UserDelete).detail(Detail::Member(name))),
            )
        }
        UserPasswd { name, password } => {
            db.set_password(&name, &password.0)?;
            (
                AdminReply::Done,
                Some(event(A::UserPassword).detail(Detail::Member(name))),
            )
        }
        UserList => (AdminReply::Users(db.users()?), None),
        ProjectAdd {
            name,
            public,
            quota_bytes,
        } => {
            db.add_project(&name, public, quota_bytes)?;
            (
                AdminReply::Done,
                Some(
                    event(A::ProjectCreate)
                        .project(name)
                        .detail(Detail::Public(public)),
                ),
            )
        }
        ProjectDel { name } => {
            db.delete_project(&name)?;
            (
                AdminReply::Done,
                Some(event(A::ProjectDelete).project(name)),
            )
        }
        ProjectList => (AdminReply::Projects(db.projects()?), None),
        ProjectSetPublic { name, public } => {
            db.set_public(&name, public)?;
            (
                AdminReply::Done,
                Some(
                    event(A::ProjectUpdate)
                        .project(name)
                        .detail(Detail::Public(public)),
                ),
            )
        }
        ProjectQuota { name, quota_bytes } => {
            db.set_quota(&name, quota_bytes)?;
            let e = event(A::ProjectUpdate)
                .project(name)
                .detail(Detail::QuotaBytes(quota_bytes));
            (AdminReply::Done, Some(e))
        }
        MemberAdd {
            project,
            user,
            role,
        } => {
            db.add_member(&project, &user, role)?;
            let e = event(A::MemberAdd)
                .project(project)
                .detail(Detail::Member(user));
            (AdminReply::Done, Some(e))
        }
        MemberDel { project, user } => {
            db.remove_member(&project, &user)?;
            let e = event(A::MemberRemove)
                .project(project)
                .detail(Detail::Member(user));
            (AdminReply::Done, Some(e))
        }
        MemberList { project } => {
            require(db, &project)?;
            (AdminReply::Members(db.members(&project)?), None)
        }
        RobotAdd {
            name,
            actions,
            expiry,
        } => {
            let new = db.add_robot(&name, actions, expiry)?;
            let e = event(A::RobotAdd)
                .project(name.project().clone())
                .detail(Detail::Actions(actions));
            (AdminReply::NewRobot(new), Some(e))
        }
        RobotDel { name } => {
            db.delete_robot(&name)?;
            (
                AdminReply::Done,
                Some(event(A::RobotDelete).project(name.project().clone())),
            )
        }
        RobotList { project } => {
            if let Some(p) = &project {
                require(db, p)?;
            }
            (AdminReply::Robots(db.robots(project.as_ref())?), None)
        }
        ImmutableAdd { project, pattern } => {
            db.add_immutable(&project, &pattern)?;
            let e = event(A::ImmutableAdd)
                .project(project)
                .detail(Detail::Pattern(pattern));
            (AdminReply::Done, Some(e))
        }
        ImmutableDel { project, pattern } => {
            db.delete_immutable(&project, &pattern)?;
            let e = event(A::ImmutableDelete)
                .project(project)
                .detail(Detail::Pattern(pattern));
            (AdminReply::Done, Some(e))
        }
        ImmutableList { project } => {
            require(db, &project)?;
            (AdminReply::Rules(db.immutable_rules(&project)?), None)
        }
        Audit { filter } => (AdminReply::Events(audit::list(db, &filter)?), None),
    };
    if let (Some(log), Some(e)) = (audit, record) {
        log.record(&e)?;
    }
    Ok(reply)
}

fn require(db: &AuthDb, project: &ProjectName) -> Result<(), AuthError> {
    match db.project(project)? {
        Some(_) => Ok(()),
        None => Err(AuthError::not_found("project", project)),
    }
}
