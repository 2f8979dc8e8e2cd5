//! One `[[mirror]]` table of the settings file: an upstream registry whose content berth
//! serves under the repository prefix `<ns>/`, checked and resolved once at start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units::{ByteRate, HumanDuration};
use crate::mirror::names::{normalize_ns, Glob};

/// How long a tag fetched from an upstream is served before berth asks again (one `HEAD`).
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(5 * 60);
/// How long berth waits for an upstream to connect and to start answering.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// A `[[mirror]]` table as written (keys in kebab-case).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MirrorTable {
    /// The upstream's name as containerd sends it in `?ns=` (`docker.io`, `quay.io`); also
    /// the first component of the local repositories holding its content.
    pub ns: String,
    /// Where to fetch from (`https://registry-1.docker.io`); none: serve only what was pushed
    /// or imported under `<ns>/`.
    pub upstream: Option<String>,
    /// Credentials for the upstream (Basic, or for its token service).
    pub username: Option<String>,
    pub password: Option<String>,
    /// File holding the password (its first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// PEM file of extra CA certificates trusted for this upstream, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// How long a fetched tag is served before it is checked again [default: 5m].
    pub tag_ttl: Option<HumanDuration>,
    /// Connect and first-byte timeout toward the upstream [default: 10s].
    pub timeout: Option<HumanDuration>,
    /// Repositories (below `<ns>/`) that may be fetched from the upstream, as globs
    /// (`library/*`, `myorg/**`); none: every repository.
    pub allow: Option<Vec<String>>,
    /// Also serve names without `ns` and without the `<ns>/` prefix when no local repository
    /// has them (docker's `registry-mirrors` sends Docker Hub names that way).
    pub unprefixed: Option<bool>,
}

/// Credentials toward an upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

/// A `[[mirror]]` table, resolved.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Normalised: lower case, Docker Hub's aliases folded into `docker.io`.
    pub ns: String,
    /// `scheme://host[:port]`, no trailing slash.
    pub upstream: Option<String>,
    pub credentials: Option<Credentials>,
    pub ca_file: Option<PathBuf>,
    pub tag_ttl: Duration,
    pub timeout: Duration,
    /// Empty: every repository may be fetched.
    pub allow: Vec<Glob>,
    pub unprefixed: bool,
}

/// The mirror settings of `berth serve`.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    pub mirrors: Vec<MirrorConfig>,
    /// Bytes the content of mirrors with an upstream may take before the least recently pulled
    /// images are dropped; `None`: no limit.
    pub cache_size: Option<u64>,
    /// How often the cache size is checked (when something was fetched since).
    pub check_every: Duration,
}

impl Default for MirrorSettings {
    fn default() -> MirrorSettings {
        MirrorSettings {
            mirrors: Vec::new(),
            cache_size: None,
            check_every: Duration::from_secs(10),
        }
    }
}

impl MirrorSettings {
    pub fn resolve(
        tables: &[MirrorTable],
        cache_size: Option<ByteRate>,
    ) -> Result<MirrorSettings, String> {
        let mut mirrors: Vec<MirrorConfig> = Vec::new();
        for table in tables {
            let m = MirrorConfig::resolve(table)?;
            if mirrors.iter().any(|o| o.ns == m.ns) {
                return Err(format!("[[mirror]] ns = {:?} is configured twice", m.ns));
            }
            mirrors.push(m);
        }
        if mirrors.iter().filter(|m| m.unprefixed).count() > 1 {
            return Err("[[mirror]] unprefixed = true may be set on one mirror only".into());
        }
        Ok(MirrorSettings {
            mirrors,
            cache_size: cache_size.and_then(|r| r.0),
            ..MirrorSettings::default()
        })
    }
}

impl MirrorConfig {
    pub fn resolve(t: &MirrorTable) -> Result<MirrorConfig, String> {
        let ns = normalize_ns(&t.ns).ok_or_else(|| {
            format!(
                "[[mirror]] ns = {:?}: not a registry host name such as \"docker.io\"",
                t.ns
            )
        })?;
        if ns.contains(':') {
            return Err(format!(
                "[[mirror]] ns = {ns:?}: a host with a port cannot name local repositories"
            ));
        }
        let upstream = match &t.upstream {
            None => None,
            Some(u) => Some(
                parse_upstream(u)
                    .map_err(|e| format!("[[mirror]] ns = {ns:?}: upstream = {u:?}: {e}"))?,
            ),
        };
        let password = match (&t.password, &t.password_file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "[[mirror]] ns = {ns:?}: give password or password-file, not both"
                ))
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "[[mirror]] ns = {ns:?}: password-file = {}: {e}",
                        path.display()
                    )
                })?;
                Some(text.lines().next().unwrap_or("").to_owned())
            }
            (None, None) => None,
        };
        let credentials = match (&t.username, password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password,
            }),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "[[mirror]] ns = {ns:?}: username and a password go together"
                ))
            }
        };
        if let Some(ca) = &t.ca_file {
            if !ca.is_file() {
                return Err(format!(
                    "[[mirror]] ns = {ns:?}: ca-file = {}: no such file",
                    ca.display()
                ));
            }
        }
        let allow = t
            .allow
            .iter()
            .flatten()
            .map(|g| {
                Glob::parse(g).map_err(|e| format!("[[mirror]] ns = {ns:?}: allow {g:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MirrorConfig {
            ns,
            upstream,
            credentials,
            ca_file: t.ca_file.clone(),
            tag_ttl: t.tag_ttl.map_or(DEFAULT_TAG_TTL, |d| d.0),
            timeout: t
                .timeout
                .map_or(DEFAULT_UPSTREAM_TIMEOUT, |d| d.0)
                .max(Duration::from_millis(100)),
            allow,
            unprefixed: t.unprefixed.unwrap_or(false),
        })
    }

    /// Whether `repo` (the part below `<ns>/`) may be fetched from the upstream.
    pub fn allows(&self, repo: &str) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|g| g.matches(repo))
    }
}

/// `https://host[:port]` or `http://host[:port]`, with no path, query or credentials.
fn parse_upstream(u: &str) -> Result<String, String> {
    let u = u.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path".into());
    }
    Ok(u.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ns: &str) -> MirrorTable {
        MirrorTable {
            ns: ns.into(),
            ..MirrorTable::default()
        }
    }

    #[test]
    fn resolves_defaults_and_aliases() {
        let m = MirrorConfig::resolve(&table("Registry-1.Docker.IO")).unwrap();
        assert_eq!(m.ns, "docker.io");
        assert_eq!(m.upstream, None);
        assert_eq!(m.tag_ttl, DEFAULT_TAG_TTL);
        assert!(m.allows("anything/at/all"));
    }

    #[test]
    fn refuses_bad_tables() {
        assert!(MirrorConfig::resolve(&table("not a host")).is_err());
        let mut t = table("quay.io");
        t.upstream = Some("quay.io".into());
        assert!(MirrorConfig::resolve(&t).unwrap_err().contains("https://"));
        t.upstream = Some("https://quay.io/v2".into());
        assert!(MirrorConfig::resolve(&t).is_err());
        t.upstream = Some("https://quay.io/".into());
        assert_eq!(
            MirrorConfig::resolve(&t).unwrap().upstream.as_deref(),
            Some("https://quay.io")
        );
        t.username = Some("u".into());
        assert!(MirrorConfig::resolve(&t).unwrap_err().contains("together"));
        let twice = [table("docker.io"), table("index.docker.io")];
        assert!(MirrorSettings::resolve(&twice, None)
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn allow_lists_restrict_fetches() {
        let mut t = table("docker.io");
        t.allow = Some(vec!["library/*".into(), "myorg/**".into()]);
        let m = MirrorConfig::resolve(&t).unwrap();
        assert!(m.allows("library/busybox"));
        assert!(!m.allows("library/a/b"));
        assert!(m.allows("myorg/a/b"));
        assert!(!m.allows("evil/miner"));
    }
}
