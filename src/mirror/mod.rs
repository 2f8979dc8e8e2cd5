//! The containerd mirror endpoint and pull-through cache: content of upstream registries
//! served under local repositories named `<ns>/<repository>`.
//!
//! `config` (one `[[mirror]]` table), `names` (`?ns=` and Docker Hub names → local names),
//! `upstream` (the HTTP client toward an upstream, with `challenge`, `tokens` and `tls`),
//! `flight` (one blob fetch shared by every client waiting for it), `cache` (what a manifest
//! or blob read does when the content is missing or a tag is due for a check), `stats`
//! (counters for `/metrics`).

pub mod cache;
pub mod config;
pub mod evict;
pub mod flight;
pub mod names;
pub mod stats;
pub mod upstream;

mod challenge;
pub(crate) mod tls;
mod tokens;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::oci::digest::Digest;
use crate::storage::StorageError;
use config::{MirrorConfig, MirrorSettings};
use flight::Flights;
use stats::MirrorStats;
use upstream::Upstream;

/// One configured upstream.
pub struct Mirror {
    pub config: MirrorConfig,
    /// `None`: air-gapped, serve only what is stored.
    pub upstream: Option<Arc<Upstream>>,
    pub stats: Arc<MirrorStats>,
    /// When each tag (local repository, tag) was last confirmed by the upstream.
    checked: Mutex<HashMap<(String, String), Instant>>,
}

/// Every configured mirror, and the fetches in progress.
#[derive(Default)]
pub struct Mirrors {
    by_ns: HashMap<String, Arc<Mirror>>,
    unprefixed: Option<Arc<Mirror>>,
    flights: Arc<Flights>,
    manifests: cache::ManifestFetches,
    /// Manifests fetched and stored since start (eviction checks after each).
    pub(crate) manifests_stored: AtomicU64,
    /// When each cached manifest (local repository, digest) was last served, ms since the
    /// epoch: what eviction calls recently used.
    pulled: Mutex<HashMap<(String, Digest), u64>>,
}

/// Why a read's `ns` cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum NsError {
    /// Not a configured mirror (containerd then tries its next host).
    Unknown(String),
    /// The name under that mirror is not a valid repository name.
    BadName(String),
}

impl Mirrors {
    /// Builds the upstream clients; fails on an unusable CA file or upstream.
    pub fn new(settings: &MirrorSettings) -> Result<Mirrors, String> {
        let mut by_ns = HashMap::new();
        let mut unprefixed = None;
        for config in &settings.mirrors {
            let upstream = match &config.upstream {
                Some(_) => Some(Arc::new(Upstream::new(config)?)),
                None => None,
            };
            let mirror = Arc::new(Mirror {
                config: config.clone(),
                upstream,
                stats: Arc::default(),
                checked: Mutex::default(),
            });
            if config.unprefixed {
                unprefixed = Some(mirror.clone());
            }
            by_ns.insert(config.ns.clone(), mirror);
        }
        Ok(Mirrors {
            by_ns,
            unprefixed,
            ..Mirrors::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_ns.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Mirror>> {
        self.by_ns.values()
    }

    /// The local repository a read of `name` with containerd's `?ns=` means.
    pub fn local_name(&self, name: &str, ns: &str) -> Result<String, NsError> {
        let key = names::normalize_ns(ns).ok_or_else(|| NsError::Unknown(ns.to_owned()))?;
        if !self.by_ns.contains_key(&key) {
            return Err(NsError::Unknown(ns.to_owned()));
        }
        names::local_repo(&key, name).ok_or_else(|| NsError::BadName(format!("{key}/{name}")))
    }

    /// The local repository an unprefixed name falls back to (docker's `registry-mirrors`),
    /// when a mirror takes unprefixed names and `name` is not already under a mirror's prefix.
    pub fn unprefixed_name(&self, name: &str) -> Option<String> {
        let mirror = self.unprefixed.as_ref()?;
        if self.mirror_of(name).is_some() {
            return None;
        }
        names::local_repo(&mirror.config.ns, name)
    }

    /// The mirror whose prefix `local` is under, and the repository's name upstream.
    pub fn mirror_of(&self, local: &str) -> Option<(&Arc<Mirror>, String)> {
        let (first, rest) = local.split_once('/')?;
        let mirror = self.by_ns.get(first)?;
        Some((mirror, names::upstream_repo(&mirror.config.ns, rest)))
    }

    /// Notes that `local`'s manifest `digest` was served (for least-recently-pulled eviction).
    pub fn pulled(&self, local: &str, digest: &Digest) {
        if self.mirror_of(local).is_none() {
            return;
        }
        if let Ok(mut m) = self.pulled.lock() {
            m.insert((local.to_owned(), digest.clone()), now_ms());
        }
    }

    fn recency(&self) -> HashMap<(String, Digest), u64> {
        self.pulled.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn forget(&self, gone: &[(String, Digest)]) {
        if let Ok(mut m) = self.pulled.lock() {
            for key in gone {
                m.remove(key);
            }
        }
    }

    /// Text for `/metrics`.
    pub fn metrics(&self) -> String {
        let mut mirrors: Vec<&Arc<Mirror>> = self.by_ns.values().collect();
        mirrors.sort_by(|a, b| a.config.ns.cmp(&b.config.ns));
        stats::render(
            mirrors
                .iter()
                .map(|m| (m.config.ns.as_str(), m.stats.as_ref())),
            self.flights.in_progress(),
        )
    }
}

impl Mirror {
    /// Whether the upstream confirmed `tag` of `local` within the tag TTL.
    fn is_fresh(&self, local: &str, tag: &str) -> bool {
        self.checked
            .lock()
            .ok()
            .and_then(|m| m.get(&(local.to_owned(), tag.to_owned())).copied())
            .is_some_and(|at| at.elapsed() < self.config.tag_ttl)
    }

    fn confirmed(&self, local: &str, tag: &str) {
        if let Ok(mut m) = self.checked.lock() {
            if m.len() > 100_000 {
                let ttl = self.config.tag_ttl;
                m.retain(|_, at| at.elapsed() < ttl);
            }
            m.insert((local.to_owned(), tag.to_owned()), Instant::now());
        }
    }
}

/// Runs a store call on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
