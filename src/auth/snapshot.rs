//! The in-memory view of `auth.redb` that every request reads: users with their hashes,
//! projects with their members and immutable rules, robots with their grants. Rebuilt whole
//! after each administrative write (rare, and the data is small), so requests never open a
//! redb transaction.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable};

use crate::auth::db::{self, all_rows, IMMUTABLE, MEMBERS, PROJECTS, ROBOTS, USERS};
use crate::auth::error::AuthError;
use crate::auth::model::{ImmutableRule, Member, Project, Role, TagPattern, User};
use crate::auth::robot::{Grant, Robot};

#[derive(Clone, Debug)]
pub struct SnapUser {
    pub password_hash: String,
    pub admin: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SnapProject {
    pub public: bool,
    pub quota_bytes: Option<u64>,
    pub members: HashMap<String, Role>,
    pub immutable: Vec<TagPattern>,
}

#[derive(Clone, Debug)]
pub struct SnapRobot {
    pub secret_sha256: [u8; 32],
    pub grants: Arc<[Grant]>,
    pub expires_at_ms: Option<u64>,
}

/// One generation of the access model.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub users: HashMap<String, SnapUser>,
    pub projects: HashMap<String, SnapProject>,
    /// Keyed by the `robot$` form.
    pub robots: HashMap<String, SnapRobot>,
}

impl Snapshot {
    pub(crate) fn load(txn: &ReadTransaction, generation: u64) -> Result<Snapshot, AuthError> {
        let mut s = Snapshot {
            generation,
            ..Snapshot::default()
        };
        for u in all_rows::<User>(&txn.open_table(USERS)?, "users")? {
            s.users.insert(
                u.name.to_string(),
                SnapUser {
                    password_hash: u.password_hash,
                    admin: u.admin,
                },
            );
        }
        for p in all_rows::<Project>(&txn.open_table(PROJECTS)?, "projects")? {
            s.projects.insert(
                p.name.to_string(),
                SnapProject {
                    public: p.public,
                    quota_bytes: p.quota_bytes,
                    ..SnapProject::default()
                },
            );
        }
        for row in txn.open_table(MEMBERS)?.iter()? {
            let (_, v) = row?;
            let m: Member = db::from_json(v.value(), "members")?;
            if let Some(p) = s.projects.get_mut(m.project.as_str()) {
                p.members.insert(m.user.to_string(), m.role);
            }
        }
        for row in txn.open_table(IMMUTABLE)?.iter()? {
            let (_, v) = row?;
            let r: ImmutableRule = db::from_json(v.value(), "immutable_tags")?;
            if let Some(p) = s.projects.get_mut(r.project.as_str()) {
                p.immutable.push(r.pattern);
            }
        }
        for r in all_rows::<Robot>(&txn.open_table(ROBOTS)?, "robots")? {
            let mut secret = [0u8; 32];
            hex::decode_to_slice(&r.secret_sha256, &mut secret).map_err(|e| {
                AuthError::Corrupt {
                    table: "robots",
                    reason: e.to_string(),
                }
            })?;
            s.robots.insert(
                r.name.to_string(),
                SnapRobot {
                    secret_sha256: secret,
                    grants: r.grants().into(),
                    expires_at_ms: r.expires_at_ms,
                },
            );
        }
        Ok(s)
    }

    pub fn role_of(&self, project: &str, user: &str) -> Option<Role> {
        self.projects.get(project)?.members.get(user).copied()
    }

    /// The robot whose expiry comes first, among those that expire at all.
    pub fn soonest_expiry(&self) -> Option<(&str, u64)> {
        self.robots
            .iter()
            .filter_map(|(n, r)| r.expires_at_ms.map(|at| (n.as_str(), at)))
            .min_by_key(|(n, at)| (*at, *n))
    }
}
