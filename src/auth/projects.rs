//! Projects, their members and their immutable tag rules in `auth.redb`.

use redb::{ReadableTable, WriteTransaction};

use crate::auth::db::{self, AuthDb, IMMUTABLE, MEMBERS, PROJECTS, ROBOTS, USERS};
use crate::auth::error::AuthError;
use crate::auth::model::{ImmutableRule, Member, Project, ProjectName, Role, TagPattern, UserName};
use crate::auth::robot::Robot;

impl AuthDb {
    pub fn add_project(
        &self,
        name: &ProjectName,
        public: bool,
        quota_bytes: Option<u64>,
    ) -> Result<Project, AuthError> {
        let project = Project {
            name: name.clone(),
            public,
            quota_bytes,
            created_at_ms: self.now_ms(),
            used_bytes: None,
        };
        self.write(|txn| insert_project(txn, &project))?;
        Ok(project)
    }

    /// Creates a project on a first push and makes `creator` its projectAdmin, in one commit.
    /// The caller has asked `Policy::may_create_project` first.
    pub fn create_project_for(
        &self,
        name: &ProjectName,
        creator: &UserName,
    ) -> Result<Project, AuthError> {
        let now = self.now_ms();
        let project = Project {
            name: name.clone(),
            public: false,
            quota_bytes: None,
            created_at_ms: now,
            used_bytes: None,
        };
        let member = Member {
            project: name.clone(),
            user: creator.clone(),
            role: Role::ProjectAdmin,
            added_at_ms: now,
        };
        self.write(|txn| {
            insert_project(txn, &project)?;
            txn.open_table(MEMBERS)?.insert(
                (name.as_str(), creator.as_str()),
                db::to_json(&member).as_slice(),
            )?;
            Ok(())
        })?;
        Ok(project)
    }

    /// Deletes the project with its members, robots and rules. Its repositories stay in the
    /// store: they become reachable by system administrators only until deleted there.
    pub fn delete_project(&self, name: &ProjectName) -> Result<(), AuthError> {
        self.write(|txn| {
            if txn.open_table(PROJECTS)?.remove(name.as_str())?.is_none() {
                return Err(AuthError::not_found("project", name));
            }
            remove_project_keys(&mut txn.open_table(MEMBERS)?, name.as_str())?;
            remove_project_keys(&mut txn.open_table(IMMUTABLE)?, name.as_str())?;
            let mut robots = txn.open_table(ROBOTS)?;
            let prefix = format!("robot${name}+");
            let theirs: Vec<String> = robots
                .range(prefix.as_str()..)?
                .filter_map(|r| r.ok())
                .map(|(k, _)| k.value().to_owned())
                .take_while(|k| k.starts_with(&prefix))
                .collect();
            for k in theirs {
                robots.remove(k.as_str())?;
            }
            Ok(())
        })
    }

    pub fn set_public(&self, name: &ProjectName, public: bool) -> Result<(), AuthError> {
        self.update_project(name, |p| p.public = public)
    }

    pub fn set_quota(&self, name: &ProjectName, quota_bytes: Option<u64>) -> Result<(), AuthError> {
        self.update_project(name, |p| p.quota_bytes = quota_bytes)
    }

    fn update_project(
        &self,
        name: &ProjectName,
        change: impl FnOnce(&mut Project),
    ) -> Result<(), AuthError> {
        self.write(|txn| {
            let mut projects = txn.open_table(PROJECTS)?;
            let mut p: Project = match projects.get(name.as_str())? {
                Some(v) => db::from_json(v.value(), "projects")?,
                None => return Err(AuthError::not_found("project", name)),
            };
            change(&mut p);
            projects.insert(name.as_str(), db::to_json(&p).as_slice())?;
            Ok(())
        })
    }

    pub fn project(&self, name: &ProjectName) -> Result<Option<Project>, AuthError> {
        self.read(|txn| {
            let t = txn.open_table(PROJECTS)?;
            let found = t.get(name.as_str())?;
            found
                .map(|v| db::from_json(v.value(), "projects"))
                .transpose()
        })
    }

    pub fn projects(&self) -> Result<Vec<Project>, AuthError> {
        self.read(|txn| db::all_rows(&txn.open_table(PROJECTS)?, "projects"))
    }

    /// Adds `user` to `project` with `role`, or changes their role.
    pub fn add_member(
        &self,
        project: &ProjectName,
        user: &UserName,
        role: Role,
    ) -> Result<Member, AuthError> {
        let member = Member {
            project: project.clone(),
            user: user.clone(),
            role,
            added_at_ms: self.now_ms(),
        };
        self.write(|txn| {
            require_project(txn, project)?;
            if txn.open_table(USERS)?.get(user.as_str())?.is_none() {
                return Err(AuthError::not_found("user", user));
            }
            txn.open_table(MEMBERS)?.insert(
                (project.as_str(), user.as_str()),
                db::to_json(&member).as_slice(),
            )?;
            Ok(())
        })?;
        Ok(member)
    }

    pub fn remove_member(&self, project: &ProjectName, user: &UserName) -> Result<(), AuthError> {
        self.write(|txn| {
            let mut members = txn.open_table(MEMBERS)?;
            if members.remove((project.as_str(), user.as_str()))?.is_none() {
                return Err(AuthError::not_found(
                    "member",
                    format!("{user} of project {project}"),
                ));
            }
            Ok(())
        })
    }

    pub fn members(&self, project: &ProjectName) -> Result<Vec<Member>, AuthError> {
        self.read(|txn| db::project_rows(&txn.open_table(MEMBERS)?, project.as_str(), "members"))
    }

    pub fn add_immutable(
        &self,
        project: &ProjectName,
        pattern: &TagPattern,
    ) -> Result<ImmutableRule, AuthError> {
        let rule = ImmutableRule {
            project: project.clone(),
            pattern: pattern.clone(),
            created_at_ms: self.now_ms(),
        };
        self.write(|txn| {
            require_project(txn, project)?;
            let mut rules = txn.open_table(IMMUTABLE)?;
            if rules.get((project.as_str(), pattern.as_str()))?.is_some() {
                return Err(AuthError::Exists {
                    kind: "immutable rule",
                    name: format!("{pattern} in project {project}"),
                });
            }
            rules.insert(
                (project.as_str(), pattern.as_str()),
                db::to_json(&rule).as_slice(),
            )?;
            Ok(())
        })?;
        Ok(rule)
    }

    pub fn delete_immutable(
        &self,
        project: &ProjectName,
        pattern: &TagPattern,
    ) -> Result<(), AuthError> {
        self.write(|txn| {
            let mut rules = txn.open_table(IMMUTABLE)?;
            if rules
                .remove((project.as_str(), pattern.as_str()))?
                .is_none()
            {
                return Err(AuthError::not_found(
                    "immutable rule",
                    format!("{pattern} in project {project}"),
                ));
            }
            Ok(())
        })
    }

    pub fn immutable_rules(&self, project: &ProjectName) -> Result<Vec<ImmutableRule>, AuthError> {
        self.read(|txn| {
            db::project_rows(
                &txn.open_table(IMMUTABLE)?,
                project.as_str(),
                "immutable_tags",
            )
        })
    }

    /// Robots of `project`, as stored.
    pub(crate) fn robot_rows(
        &self,
        project: Option<&ProjectName>,
    ) -> Result<Vec<Robot>, AuthError> {
        self.read(|txn| {
            let all: Vec<Robot> = db::all_rows(&txn.open_table(ROBOTS)?, "robots")?;
            Ok(all
                .into_iter()
                .filter(|r| project.is_none_or(|p| r.name.project() == p))
                .collect())
        })
    }
}

fn insert_project(txn: &WriteTransaction, project: &Project) -> Result<(), AuthError> {
    let mut projects = txn.open_table(PROJECTS)?;
    if projects.get(project.name.as_str())?.is_some() {
        return Err(AuthError::Exists {
            kind: "project",
            name: project.name.to_string(),
        });
    }
    projects.insert(project.name.as_str(), db::to_json(project).as_slice())?;
    Ok(())
}

pub(crate) fn require_project(txn: &WriteTransaction, name: &ProjectName) -> Result<(), AuthError> {
    match txn.open_table(PROJECTS)?.get(name.as_str())? {
        Some(_) => Ok(()),
        None => Err(AuthError::not_found("project", name)),
    }
}

fn remove_project_keys(
    table: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    project: &str,
) -> Result<(), AuthError> {
    let keys: Vec<String> = table
        .range((project, "")..)?
        .filter_map(|r| r.ok())
        .take_while(|(k, _)| k.value().0 == project)
        .map(|(k, _)| k.value().1.to_owned())
        .collect();
    for k in keys {
        table.remove((project, k.as_str()))?;
    }
    Ok(())
}
