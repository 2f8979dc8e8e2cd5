//! Actions on a repository and Harbor's project roles, each role with the actions it allows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::auth::error::AuthError;

/// What a request does to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// Listing tags, and seeing the repository in `_catalog`.
    List,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::List];

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
            Action::List => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::List => "list",
        }
    }
}

impl FromStr for Action {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Action, AuthError> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| AuthError::invalid("action", s, "one of pull, push, delete, list"))
    }
}

/// A set of actions, written `pull,push` on the command line and as a list in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Action>", into = "Vec<Action>")]
pub struct ActionSet(u8);

impl ActionSet {
    pub const EMPTY: ActionSet = ActionSet(0);

    pub fn of(actions: &[Action]) -> ActionSet {
        ActionSet(actions.iter().fold(0, |bits, a| bits | a.bit()))
    }

    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl From<Vec<Action>> for ActionSet {
    fn from(v: Vec<Action>) -> ActionSet {
        ActionSet::of(&v)
    }
}

impl From<ActionSet> for Vec<Action> {
    fn from(s: ActionSet) -> Vec<Action> {
        s.iter().collect()
    }
}

impl FromStr for ActionSet {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<ActionSet, AuthError> {
        let actions = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Action::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if actions.is_empty() {
            return Err(AuthError::invalid("actions", s, "name at least one action"));
        }
        Ok(ActionSet::of(&actions))
    }
}

impl fmt::Display for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Action::name).collect();
        f.write_str(&names.join(","))
    }
}

/// A member's role in a project, with Harbor's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Everything in the project, including its members.
    ProjectAdmin,
    Maintainer,
    Developer,
    Guest,
    /// Pull only: cannot list the project's tags or see its repositories in the catalog.
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ProjectAdmin,
        Role::Maintainer,
        Role::Developer,
        Role::Guest,
        Role::LimitedGuest,
    ];

    pub fn actions(self) -> ActionSet {
        use Action::*;
        match self {
            Role::ProjectAdmin | Role::Maintainer => ActionSet::of(&[Pull, Push, Delete, List]),
            Role::Developer => ActionSet::of(&[Pull, Push, List]),
            Role::Guest => ActionSet::of(&[Pull, List]),
            Role::LimitedGuest => ActionSet::of(&[Pull]),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "projectAdmin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limitedGuest",
        }
    }
}

impl FromStr for Role {
    type Err = AuthError;
    /// Harbor's names, case and `-`/`_` insensitive (`project-admin`, `limited_guest`).
    fn from_str(s: &str) -> Result<Role, AuthError> {
        let norm = |t: &str| t.to_ascii_lowercase().replace(['-', '_'], "");
        Role::ALL
            .into_iter()
            .find(|r| norm(r.name()) == norm(s))
            .ok_or_else(|| {
                AuthError::invalid(
                    "role",
                    s,
                    "one of projectAdmin, maintainer, developer, guest, limitedGuest",
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_actions_parse() {
        assert_eq!("project-admin".parse::<Role>().unwrap(), Role::ProjectAdmin);
        assert_eq!("limitedGuest".parse::<Role>().unwrap(), Role::LimitedGuest);
        assert!("owner".parse::<Role>().is_err());
        let set: ActionSet = "pull,push".parse().unwrap();
        assert!(set.contains(Action::Pull) && set.contains(Action::Push));
        assert!(!set.contains(Action::Delete));
        assert_eq!(set.to_string(), "pull,push");
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["pull","push"]"#);
        assert!("pull,fly".parse::<ActionSet>().is_err());
        assert!("".parse::<ActionSet>().is_err());
    }
}
