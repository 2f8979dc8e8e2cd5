//! Where imported images go: the names the input carries (`repo:tag`, `repo@digest`), or the
//! `--repo NAME[:TAG]` given for an input with one image.

use super::error::BundleError;
use super::refs::{split_ref, Named};
use crate::oci::name::{is_valid_name, is_valid_tag};

/// `--repo NAME[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOverride {
    pub repo: String,
    pub tag: Option<String>,
}

impl RepoOverride {
    pub fn parse(s: &str) -> Result<RepoOverride, BundleError> {
        match split_ref(s) {
            Some(Named::Bare(repo)) => Ok(RepoOverride { repo, tag: None }),
            Some(Named::Tagged(repo, tag)) => Ok(RepoOverride {
                repo,
                tag: Some(tag),
            }),
            _ => Err(BundleError::Names(format!(
                "--repo {s:?}: expected a repository name, optionally with :tag"
            ))),
        }
    }
}

/// Where one image of the input goes: a repository, and a tag unless it is imported by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub repo: String,
    pub tag: Option<String>,
}

/// The target of an image the input calls `name` (if anything). `single` says whether the
/// input holds this one image only, which is when `--repo` may rename it.
pub fn target(
    name: Option<&str>,
    over: Option<&RepoOverride>,
    single: bool,
) -> Result<Target, BundleError> {
    let parsed = name.map(|n| (n, split_ref(n)));
    if let Some(o) = over {
        if !single {
            return Err(BundleError::Names(
                "--repo renames the image of an input holding one image; this input holds \
                 several, each named in it"
                    .into(),
            ));
        }
        let own_tag = match parsed {
            Some((_, Some(Named::Tagged(_, t)))) => Some(t),
            Some((n, Some(Named::Bare(_)))) if is_valid_tag(n) => Some(n.to_owned()),
            _ => None,
        };
        let tag = o.tag.clone().or(own_tag).unwrap_or_else(|| "latest".into());
        return Ok(Target {
            repo: o.repo.clone(),
            tag: Some(tag),
        });
    }
    let need_repo = |why: String| {
        BundleError::Names(format!(
            "{why}: give the repository to import it into with --repo NAME[:TAG]"
        ))
    };
    match parsed {
        Some((_, Some(Named::Tagged(repo, tag)))) => Ok(Target {
            repo,
            tag: Some(tag),
        }),
        Some((_, Some(Named::Digest(repo, _)))) => Ok(Target { repo, tag: None }),
        // skopeo's `oci-archive:FILE:v1` names the image by its tag alone.
        Some((n, Some(Named::Bare(_)))) if !n.contains('/') => {
            Err(need_repo(format!("the image is named only {n:?}")))
        }
        Some((_, Some(Named::Bare(repo)))) if is_valid_name(&repo) => Ok(Target {
            repo,
            tag: Some("latest".into()),
        }),
        Some((n, _)) => Err(need_repo(format!("{n:?} is not a valid image name"))),
        None => Err(need_repo("the image has no name".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_input_and_the_flag() {
        let t = |repo: &str, tag: Option<&str>| Target {
            repo: repo.into(),
            tag: tag.map(Into::into),
        };
        assert_eq!(
            target(Some("docker.io/library/busybox:1.36"), None, false).unwrap(),
            t("docker.io/library/busybox", Some("1.36"))
        );
        assert_eq!(
            target(Some("a/b"), None, true).unwrap(),
            t("a/b", Some("latest"))
        );
        assert!(matches!(
            target(Some("v1"), None, true),
            Err(BundleError::Names(_))
        ));
        assert!(matches!(
            target(None, None, true),
            Err(BundleError::Names(_))
        ));
        let over = RepoOverride::parse("mirror/app").unwrap();
        assert_eq!(
            target(Some("v1"), Some(&over), true).unwrap(),
            t("mirror/app", Some("v1"))
        );
        assert_eq!(
            target(Some("x/y:2"), Some(&over), true).unwrap(),
            t("mirror/app", Some("2"))
        );
        let over = RepoOverride::parse("mirror/app:prod").unwrap();
        assert_eq!(
            target(None, Some(&over), true).unwrap(),
            t("mirror/app", Some("prod"))
        );
        assert!(target(Some("x:1"), Some(&over), false).is_err());
        assert!(RepoOverride::parse("Bad").is_err());
    }
}
