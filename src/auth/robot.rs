//! Robot accounts as Harbor names them: `robot$<project>+<name>`, also accepted as
//! `robot_<project>+<name>` because `$` is awkward in shells, CI variables and some clients.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::error::AuthError;
use crate::auth::model::{ActionSet, ProjectName};

/// The name of a robot of one project. Displayed (and stored) in the `robot$` form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RobotName {
    project: ProjectName,
    name: String,
}

impl RobotName {
    pub fn new(project: ProjectName, name: &str) -> Result<RobotName, AuthError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
            return Err(AuthError::invalid(
                "robot name",
                name,
                "1 to 64 of lowercase letters, digits and . _ -",
            ));
        }
        Ok(RobotName {
            project,
            name: name.to_owned(),
        })
    }

    /// `robot$team+ci` or `robot_team+ci`.
    pub fn parse(s: &str) -> Result<RobotName, AuthError> {
        let rest = s
            .strip_prefix("robot$")
            .or_else(|| s.strip_prefix("robot_"))
            .ok_or_else(|| AuthError::invalid("robot name", s, "starts with robot$ or robot_"))?;
        let (project, name) = rest
            .split_once('+')
            .ok_or_else(|| AuthError::invalid("robot name", s, "robot$<project>+<name>"))?;
        RobotName::new(ProjectName::parse(project)?, name)
    }

    /// Whether `s` is meant as a robot name (either prefix), valid or not.
    pub fn looks_like(s: &str) -> bool {
        s.starts_with("robot$") || s.starts_with("robot_")
    }

    pub fn project(&self) -> &ProjectName {
        &self.project
    }

    pub fn short_name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RobotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "robot${}+{}", self.project, self.name)
    }
}

impl FromStr for RobotName {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<RobotName, AuthError> {
        RobotName::parse(s)
    }
}

impl TryFrom<String> for RobotName {
    type Error = AuthError;
    fn try_from(s: String) -> Result<RobotName, AuthError> {
        RobotName::parse(&s)
    }
}

impl From<RobotName> for String {
    fn from(n: RobotName) -> String {
        n.to_string()
    }
}

/// What a robot may do in one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub project: ProjectName,
    pub actions: ActionSet,
}

/// A row of `robots`. The secret is kept only as its SHA-256: it is 32 random bytes, so
/// nobody can search for it and a slow hash would buy nothing but cost on every login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Robot {
    pub name: RobotName,
    pub actions: ActionSet,
    /// Lowercase hex SHA-256 of the secret as the client sends it.
    pub secret_sha256: String,
    /// `None`: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    pub created_at_ms: u64,
}

impl Robot {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    pub fn grants(&self) -> Vec<Grant> {
        vec![Grant {
            project: self.name.project().clone(),
            actions: self.actions,
        }]
    }
}

impl fmt::Debug for Robot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robot")
            .field("name", &self.name)
            .field("actions", &self.actions)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// What listings show of a robot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotInfo {
    pub name: RobotName,
    pub actions: ActionSet,
    pub expires_at_ms: Option<u64>,
    pub created_at_ms: u64,
}

impl From<&Robot> for RobotInfo {
    fn from(r: &Robot) -> RobotInfo {
        RobotInfo {
            name: r.name.clone(),
            actions: r.actions,
            expires_at_ms: r.expires_at_ms,
            created_at_ms: r.created_at_ms,
        }
    }
}

/// How long a new robot lives: `30d` (the default), any duration, or `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    Never,
    After(Duration),
}

impl Default for Expiry {
    fn default() -> Expiry {
        Expiry::After(Duration::from_secs(30 * 86_400))
    }
}

impl Expiry {
    pub fn at_ms(self, now_ms: u64) -> Option<u64> {
        match self {
            Expiry::Never => None,
            Expiry::After(d) => Some(now_ms.saturating_add(d.as_millis() as u64)),
        }
    }
}

impl FromStr for Expiry {
    type Err = String;
    fn from_str(s: &str) -> Result<Expiry, String> {
        if s.trim().eq_ignore_ascii_case("never") {
            return Ok(Expiry::Never);
        }
        let d = crate::config::units::parse_duration(s)?;
        if d.is_zero() {
            return Err(
                "a robot that expires at once is useless; say `never` for no expiry".into(),
            );
        }
        Ok(Expiry::After(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_name_forms_parse_to_one_robot() {
        let a = RobotName::parse("robot$team+ci").unwrap();
        let b = RobotName::parse("robot_team+ci").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "robot$team+ci");
        assert_eq!(a.project().as_str(), "team");
        assert_eq!(a.short_name(), "ci");
        for bad in [
            "robot$team",
            "robot$Team+ci",
            "bot$team+ci",
            "robot$team+",
            "robot$t+C",
        ] {
            assert!(RobotName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_parses() {
        assert_eq!("never".parse::<Expiry>(), Ok(Expiry::Never));
        assert_eq!(
            "7d".parse::<Expiry>(),
            Ok(Expiry::After(Duration::from_secs(7 * 86_400)))
        );
        assert!("0".parse::<Expiry>().is_err());
        assert_eq!(Expiry::default().at_ms(0), Some(30 * 86_400 * 1000));
    }
}
