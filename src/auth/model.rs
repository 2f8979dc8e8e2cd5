//! The vocabulary of the access model: validated names, roles, actions and the rows of
//! `auth.redb` for users, projects and members. Names are checked once, where they enter, so
//! every later layer (keys, audit events, listings) can rely on their syntax.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::auth::error::AuthError;
pub use crate::auth::roles::{Action, ActionSet, Role};

/// A user name: 1 to 64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit. It cannot
/// contain `$`, `+` or `:`, so it never collides with a robot name or breaks Basic auth.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<UserName, AuthError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
        if s.is_empty() || s.len() > 64 {
            return Err(AuthError::invalid("user name", s, "1 to 64 characters"));
        }
        if !s.chars().all(ok_char) || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(AuthError::invalid(
                "user name",
                s,
                "letters, digits and . _ @ -, starting with a letter or digit",
            ));
        }
        Ok(UserName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project name: one repository path component as OCI allows it (`[a-z0-9]+` joined by
/// `.`, `_`, `__` or runs of `-`), at most 64 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<ProjectName, AuthError> {
        if s.len() > 64 || s.contains('/') || !crate::oci::name::is_valid_name(s) {
            return Err(AuthError::invalid(
                "project name",
                s,
                "lowercase letters and digits separated by . _ or -, at most 64 bytes",
            ));
        }
        Ok(ProjectName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag glob of an immutability rule: tag characters plus `*` (any run) and `?` (any one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagPattern(String);

impl TagPattern {
    pub fn parse(s: &str) -> Result<TagPattern, AuthError> {
        let ok_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?');
        if s.is_empty() || s.len() > 128 || !s.chars().all(ok_char) {
            return Err(AuthError::invalid(
                "tag pattern",
                s,
                "1 to 128 tag characters, `*` and `?`",
            ));
        }
        Ok(TagPattern(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, tag: &str) -> bool {
        glob_match(self.0.as_bytes(), tag.as_bytes())
    }
}

macro_rules! name_conversions {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = AuthError;
            fn try_from(s: String) -> Result<$t, AuthError> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = AuthError;
            fn from_str(s: &str) -> Result<$t, AuthError> {
                $t::parse(s)
            }
        }
    )*};
}

name_conversions!(UserName, ProjectName, TagPattern);

/// `*` matches any run of bytes (also none), `?` exactly one; iterative with one backtrack
/// point, so a hostile pattern costs O(pattern × text) at worst.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&tc) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == tc => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|&c| c == b'*')
}

/// A row of `users`. `password_hash` is a PHC string (argon2id), never shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: UserName,
    pub password_hash: String,
    pub admin: bool,
    pub created_at_ms: u64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// What listings show of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: UserName,
    pub admin: bool,
    pub created_at_ms: u64,
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> UserInfo {
        UserInfo {
            name: u.name.clone(),
            admin: u.admin,
            created_at_ms: u.created_at_ms,
        }
    }
}

/// A row of `projects`. Usage against `quota_bytes` is the storage engine's to compute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: ProjectName,
    pub public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    pub created_at_ms: u64,
    /// Bytes the project's repositories hold, each blob once: filled in for listings by
    /// whoever has the store at hand, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
}

/// A row of `members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub project: ProjectName,
    pub user: UserName,
    pub role: Role,
    pub added_at_ms: u64,
}

/// An immutability rule: tags of the project's repositories that match `pattern` cannot be
/// moved or deleted once they exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableRule {
    pub project: ProjectName,
    pub pattern: TagPattern,
    pub created_at_ms: u64,
}

/// The project a repository belongs to: its first path component, or `default` for a
/// single-component name (`app` is `library/app` to Docker Hub users).
pub fn project_of<'a>(repository: &'a str, default: &'a str) -> &'a str {
    match repository.split_once('/') {
        Some((first, _)) => first,
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("a.b_c@d-e").is_ok());
        for bad in ["", "robot$x+y", "a:b", "a b", "-x", &"x".repeat(65)] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
        assert!(ProjectName::parse("team").is_ok());
        for bad in ["Team", "a/b", "", "-a", "a..b"] {
            assert!(ProjectName::parse(bad).is_err(), "{bad}");
        }
        assert!(TagPattern::parse("v*").is_ok());
        assert!(TagPattern::parse("v 1").is_err());
    }

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| TagPattern::parse(p).unwrap().matches(t);
        assert!(m("v*", "v1.2"));
        assert!(m("v*", "v"));
        assert!(!m("v*", "latest"));
        assert!(m("release-*", "release-2024"));
        assert!(m("*-rc?", "1.0-rc1"));
        assert!(!m("*-rc?", "1.0-rc12"));
        assert!(m("*", "anything"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("latest", "latest"));
        assert!(!m("latest", "latest2"));
    }

    #[test]
    fn projects_of_repositories() {
        assert_eq!(project_of("team/app", "library"), "team");
        assert_eq!(project_of("team/a/b", "library"), "team");
        assert_eq!(project_of("app", "library"), "library");
    }
}
