//! htpasswd files as `htpasswd -B` writes them, for importing users or for `basic` mode
//! pointing at such a file. Only bcrypt entries are accepted: the other schemes htpasswd
//! knows (MD5-crypt, SHA-1, crypt, plain) are too weak to keep, and are reported instead.

use std::collections::HashMap;
use std::path::Path;

use crate::auth::error::AuthError;
use crate::auth::password::{is_bcrypt, verify_password};

/// An entry that was skipped, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub line: usize,
    pub user: String,
    pub reason: &'static str,
}

/// The bcrypt entries of an htpasswd file.
#[derive(Clone, Debug, Default)]
pub struct HtpasswdFile {
    entries: HashMap<String, String>,
    unsupported: Vec<Unsupported>,
}

/// Parses `user:hash` lines; blank lines and `#` comments are skipped. The last entry of a
/// user wins, as with Apache.
pub fn parse(text: &str) -> HtpasswdFile {
    let mut file = HtpasswdFile::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            file.unsupported.push(Unsupported {
                line: i + 1,
                user: String::new(),
                reason: "not user:hash",
            });
            continue;
        };
        if is_bcrypt(hash) {
            file.entries.insert(user.to_owned(), hash.to_owned());
        } else {
            let reason = if hash.starts_with("$apr1$") {
                "MD5-crypt ($apr1$) is not supported; re-create it with htpasswd -B"
            } else if hash.starts_with("{SHA}") {
                "SHA-1 ({SHA}) is not supported; re-create it with htpasswd -B"
            } else {
                "only bcrypt ($2y$, $2a$, $2b$) is supported; re-create it with htpasswd -B"
            };
            file.unsupported.push(Unsupported {
                line: i + 1,
                user: user.to_owned(),
                reason,
            });
        }
    }
    file
}

impl HtpasswdFile {
    pub fn load(path: &Path) -> Result<HtpasswdFile, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(parse(&text))
    }

    /// Whether `user` has a bcrypt entry matching `password` (runs bcrypt: slow on purpose).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.entries
            .get(user)
            .is_some_and(|h| verify_password(password, h))
    }

    pub fn contains(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// The accepted users and their hashes, sorted by name.
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(u, h)| (u.as_str(), h.as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    pub fn unsupported(&self) -> &[Unsupported] {
        &self.unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_entries_verify_and_others_are_reported() {
        let h = bcrypt::hash("pw-of-alice", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let text = format!("# users\nalice:{h}\nbob:$apr1$abc$def\ncarol:{{SHA}}xyz\n\ngarbage\n");
        let f = parse(&text);
        assert!(f.verify("alice", "pw-of-alice"));
        assert!(!f.verify("alice", "wrong"));
        assert!(!f.verify("bob", "anything"));
        assert_eq!(f.entries().len(), 1);
        let skipped: Vec<_> = f
            .unsupported()
            .iter()
            .map(|u| (u.line, u.user.as_str()))
            .collect();
        assert_eq!(skipped, vec![(3, "bob"), (4, "carol"), (6, "")]);
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(
            &path,
            format!("u:{}\n", bcrypt::hash("pw-pw-pw", 4).unwrap()),
        )
        .unwrap();
        assert!(HtpasswdFile::load(&path).unwrap().verify("u", "pw-pw-pw"));
        assert!(HtpasswdFile::load(&dir.path().join("none")).is_err());
    }
}
