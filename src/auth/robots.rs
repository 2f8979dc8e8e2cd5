//! Robot accounts in `auth.redb`: creation (the secret is returned once and stored only as
//! its SHA-256), deletion, listing, and the expiry facts a metric and a warning need.

use std::time::Duration;

use redb::ReadableTable;

use crate::auth::db::{self, AuthDb, ROBOTS};
use crate::auth::error::AuthError;
use crate::auth::model::{ActionSet, ProjectName};
use crate::auth::password::{random_secret, sha256_hex};
use crate::auth::projects::require_project;
use crate::auth::robot::{Expiry, Robot, RobotInfo, RobotName};

/// A robot just created, with the only copy of its secret.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct NewRobot {
    #[serde(flatten)]
    pub robot: RobotInfo,
    pub secret: String,
}

impl std::fmt::Debug for NewRobot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRobot")
            .field("robot", &self.robot)
            .finish_non_exhaustive()
    }
}

impl AuthDb {
    pub fn add_robot(
        &self,
        name: &RobotName,
        actions: ActionSet,
        expiry: Expiry,
    ) -> Result<NewRobot, AuthError> {
        if actions.is_empty() {
            return Err(AuthError::Refused(
                "a robot needs at least one action".into(),
            ));
        }
        let now = self.now_ms();
        let secret = random_secret()?;
        let robot = Robot {
            name: name.clone(),
            actions,
            secret_sha256: sha256_hex(secret.as_bytes()),
            expires_at_ms: expiry.at_ms(now),
            created_at_ms: now,
        };
        let key = name.to_string();
        self.write(|txn| {
            require_project(txn, name.project())?;
            let mut robots = txn.open_table(ROBOTS)?;
            if robots.get(key.as_str())?.is_some() {
                return Err(AuthError::Exists {
                    kind: "robot",
                    name: key.clone(),
                });
            }
            robots.insert(key.as_str(), db::to_json(&robot).as_slice())?;
            Ok(())
        })?;
        Ok(NewRobot {
            robot: RobotInfo::from(&robot),
            secret,
        })
    }

    pub fn delete_robot(&self, name: &RobotName) -> Result<(), AuthError> {
        let key = name.to_string();
        self.write(|txn| match txn.open_table(ROBOTS)?.remove(key.as_str())? {
            Some(_) => Ok(()),
            None => Err(AuthError::not_found("robot", &key)),
        })
    }

    /// Robots of one project, or of all.
    pub fn robots(&self, project: Option<&ProjectName>) -> Result<Vec<RobotInfo>, AuthError> {
        Ok(self
            .robot_rows(project)?
            .iter()
            .map(RobotInfo::from)
            .collect())
    }

    /// The robot that expires first and when (ms), for a gauge; expired ones count too.
    pub fn soonest_expiry(&self) -> Option<(RobotName, u64)> {
        let s = self.snapshot();
        let (name, at) = s.soonest_expiry()?;
        Some((RobotName::parse(name).ok()?, at))
    }

    /// Robots not yet expired that will within `days`, soonest first, for a start-up warning.
    pub fn expiring_within(&self, days: u64) -> Vec<(RobotName, u64)> {
        let now = self.now_ms();
        let horizon = now.saturating_add(Duration::from_secs(days * 86_400).as_millis() as u64);
        let mut out: Vec<_> = self
            .snapshot()
            .robots
            .iter()
            .filter_map(|(n, r)| Some((n, r.expires_at_ms?)))
            .filter(|(_, at)| *at > now && *at <= horizon)
            .filter_map(|(n, at)| Some((RobotName::parse(n).ok()?, at)))
            .collect();
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::clock::ManualClock;
    use crate::auth::db::AuthDbOptions;
    use crate::auth::password::HashParams;

    #[test]
    fn robots_need_their_project_and_report_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_at(1_000_000);
        let db = AuthDb::open_with(
            dir.path(),
            AuthDbOptions {
                hash: HashParams::insecure_fast(),
                clock: clock.clone(),
            },
        )
        .unwrap();
        let team = ProjectName::parse("team").unwrap();
        let ci = RobotName::new(team.clone(), "ci").unwrap();
        let pull = "pull".parse().unwrap();
        assert!(matches!(
            db.add_robot(&ci, pull, Expiry::default()),
            Err(AuthError::NotFound { .. })
        ));
        db.add_project(&team, false, None).unwrap();
        let new = db
            .add_robot(&ci, pull, Expiry::After(Duration::from_secs(86_400)))
            .unwrap();
        assert_eq!(new.secret.len(), 64);
        assert!(!format!("{new:?}").contains(&new.secret));
        let nightly = RobotName::new(team.clone(), "nightly").unwrap();
        db.add_robot(&nightly, pull, Expiry::Never).unwrap();
        assert_eq!(
            db.soonest_expiry(),
            Some((ci.clone(), 1_000_000 + 86_400_000))
        );
        assert_eq!(db.expiring_within(2).len(), 1);
        assert_eq!(db.expiring_within(0).len(), 0);
        clock.advance(Duration::from_secs(2 * 86_400));
        assert!(db.expiring_within(30).is_empty());
        assert_eq!(db.robots(Some(&team)).unwrap().len(), 2);
        db.delete_project(&team).unwrap();
        assert!(db.robots(None).unwrap().is_empty());
    }
}
