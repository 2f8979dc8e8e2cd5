//! Where a read lands: containerd's `?ns=<upstream host>` and Docker Hub's name rules turned
//! into one local repository name, `<ns>/<repository>`. The map is closed: an `ns` is a key
//! into the configured mirrors, never a host to dial.

use crate::oci::name::is_valid_name;
use crate::storage::gc::glob_match;

/// Docker Hub's other names for itself.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// `ns` in its one spelling: lower case, Docker Hub's aliases folded into `docker.io`, a
/// default port dropped. `None` when it is not a host name (with an optional port).
pub fn normalize_ns(ns: &str) -> Option<String> {
    let ns = ns.trim().to_ascii_lowercase();
    let ns = ns.strip_suffix(":443").map(str::to_owned).unwrap_or(ns);
    let (host, port) = match ns.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (ns.as_str(), None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if !host_ok || !port_ok {
        return None;
    }
    if DOCKER_HUB_ALIASES.contains(&ns.as_str()) {
        return Some("docker.io".to_owned());
    }
    Some(ns)
}

/// The repository an upstream knows, as its clients name it: Docker Hub puts single-component
/// names under `library/`.
pub fn upstream_repo(ns: &str, repo: &str) -> String {
    if ns == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_owned()
    }
}

/// The local repository for `repo` asked of the mirror `ns` (already normalised):
/// `<ns>/<repo>`, with `library/` added for Docker Hub. A name that already starts with
/// `<ns>/` (containerd with `override_path` pointing at `/v2/<ns>`) is kept as it is.
/// `None` when the result is not a valid repository name.
pub fn local_repo(ns: &str, repo: &str) -> Option<String> {
    let local = match repo.strip_prefix(ns).and_then(|r| r.strip_prefix('/')) {
        Some(below) => format!("{ns}/{}", upstream_repo(ns, below)),
        None => format!("{ns}/{}", upstream_repo(ns, repo)),
    };
    is_valid_name(&local).then_some(local)
}

/// A repository glob: `*` any run within one path component, `**` any run, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, String> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*' | b'?')
            });
        if ok {
            Ok(Glob(s.to_owned()))
        } else {
            Err("a repository glob uses a-z, 0-9, . _ - / and the wildcards * ** ?".into())
        }
    }

    pub fn matches(&self, repo: &str) -> bool {
        glob_match(&self.0, repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_spellings() {
        assert_eq!(normalize_ns("docker.io").as_deref(), Some("docker.io"));
        assert_eq!(
            normalize_ns("index.docker.io").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_ns("Registry-1.Docker.io:443").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            normalize_ns("registry.local:5000").as_deref(),
            Some("registry.local:5000")
        );
        assert_eq!(normalize_ns("quay.io").as_deref(), Some("quay.io"));
        for bad in ["", "a/b", "x:", "x:99999", "-a.io", "a..io", "a b", "h:1:2"] {
            assert_eq!(normalize_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn local_names() {
        assert_eq!(
            local_repo("docker.io", "busybox").as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(
            local_repo("docker.io", "library/busybox").as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(
            local_repo("docker.io", "docker.io/library/busybox").as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(
            local_repo("quay.io", "busybox").as_deref(),
            Some("quay.io/busybox")
        );
        assert_eq!(
            local_repo("quay.io", "org/app").as_deref(),
            Some("quay.io/org/app")
        );
        // A port is not part of the name grammar's first component.
        assert_eq!(local_repo("registry.local:5000", "app"), None);
    }

    #[test]
    fn globs() {
        assert!(Glob::parse("Library/*").is_err());
        let g = Glob::parse("library/*").unwrap();
        assert!(g.matches("library/busybox"));
        assert!(!g.matches("library/a/b"));
        assert!(Glob::parse("**").unwrap().matches("a/b/c"));
    }
}
