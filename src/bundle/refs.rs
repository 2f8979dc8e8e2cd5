//! Image references as `berth export` takes them and as bundles name images: `repo:tag`,
//! `repo@digest`, a bare `repo` (all its tags) or a repository glob (`docker.io/library/*`).

use crate::oci::digest::Digest;
use crate::oci::name::{is_valid_name, is_valid_tag};

use super::error::BundleError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSpec {
    Tag {
        repo: String,
        tag: String,
    },
    Digest {
        repo: String,
        digest: Digest,
    },
    /// Every tag of the repository.
    Repo(String),
    /// Every tag of every repository the glob matches (`*` within a path component, `**`
    /// across components).
    Glob(String),
}

impl RefSpec {
    pub fn parse(s: &str) -> Result<RefSpec, BundleError> {
        let bad = || BundleError::BadRef(s.to_owned());
        if s.contains(['*', '?']) {
            return if s.contains(['@', ':']) {
                Err(bad())
            } else {
                Ok(RefSpec::Glob(s.to_owned()))
            };
        }
        match split_ref(s) {
            Some(Named::Tagged(repo, tag)) => Ok(RefSpec::Tag { repo, tag }),
            Some(Named::Digest(repo, digest)) => Ok(RefSpec::Digest { repo, digest }),
            Some(Named::Bare(repo)) => Ok(RefSpec::Repo(repo)),
            None => Err(bad()),
        }
    }
}

/// A full image name as found in annotations and `RepoTags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    Tagged(String, String),
    Digest(String, Digest),
    Bare(String),
}

/// Splits `repo:tag`, `repo@digest` or `repo`, each part checked against the OCI grammar.
/// The tag is what follows the last `:` after the last `/` (`host:5000/app` has none).
pub fn split_ref(s: &str) -> Option<Named> {
    if let Some((repo, digest)) = s.split_once('@') {
        let repo = repo.split_once(':').map_or(repo, |(r, _)| r);
        let digest = Digest::parse(digest).ok()?;
        return is_valid_name(repo).then(|| Named::Digest(repo.to_owned(), digest));
    }
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => {
            let (repo, tag) = (&s[..last_slash + i], &s[last_slash + i + 1..]);
            (is_valid_name(repo) && is_valid_tag(tag))
                .then(|| Named::Tagged(repo.to_owned(), tag.to_owned()))
        }
        None => is_valid_name(s).then(|| Named::Bare(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    #[test]
    fn references_parse() {
        assert_eq!(
            RefSpec::parse("docker.io/library/busybox:1.36").unwrap(),
            RefSpec::Tag {
                repo: "docker.io/library/busybox".into(),
                tag: "1.36".into()
            }
        );
        let d = Digest::of(Algorithm::Sha256, b"x");
        assert_eq!(
            RefSpec::parse(&format!("app@{d}")).unwrap(),
            RefSpec::Digest {
                repo: "app".into(),
                digest: d.clone()
            }
        );
        assert_eq!(
            split_ref(&format!("app:v1@{d}")),
            Some(Named::Digest("app".into(), d))
        );
        assert_eq!(RefSpec::parse("a/b").unwrap(), RefSpec::Repo("a/b".into()));
        assert_eq!(
            RefSpec::parse("docker.io/library/*").unwrap(),
            RefSpec::Glob("docker.io/library/*".into())
        );
        for bad in [
            "",
            "App:v1",
            "app:",
            "app:-x",
            "a/*:v1",
            "host:5000/app",
            "app@sha256:1",
        ] {
            assert!(RefSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
