//! What a read under a mirror's prefix does when the store cannot answer it alone.
//!
//! - A manifest by digest that is stored is served without asking the upstream; one that is
//!   not is fetched once (concurrent requests wait for the same fetch), verified and stored.
//! - A manifest by tag is served from the store while the upstream confirmed it within the
//!   tag TTL; after that one `HEAD` compares digests, and only a moved tag is fetched again.
//!   If the upstream cannot be asked (unreachable, 5xx, timeout), the stored tag is served
//!   stale and the outage counted.
//! - A blob that is stored (in any repository) is linked and served; one that is not is
//!   fetched by a `flight` that streams to every client waiting for it.
//!
//! Manifests are stored byte for byte with the upstream's media type, before the blobs they
//! name (`Store::put_cached_manifest`); clients fetch those next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::mirror::blocking;
use crate::mirror::flight::{Flight, FlightReport};
use crate::mirror::stats::MirrorStats;
use crate::mirror::upstream::{Upstream, UpstreamError};
use crate::mirror::{Mirror, Mirrors};
use crate::oci::digest::{Algorithm, Digest};
use crate::oci::manifest;
use crate::oci::name::ManifestRef;
use crate::storage::{ManifestPut, Reference, RepoGroup, StorageError, Store, StoredManifest};

/// Why a mirrored read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error("the upstream has no such content")]
    NotFound,
    #[error("{0} is not in the mirror's allow list")]
    NotAllowed(String),
    /// The upstream could not be asked or refused; `outage` when it was unreachable or failing.
    #[error("{}", naming(upstream, reason))]
    Upstream {
        upstream: String,
        reason: String,
        outage: bool,
    },
    /// The upstream's answer failed verification; nothing was stored.
    #[error("upstream {upstream} sent a bad manifest: {reason}")]
    Invalid { upstream: String, reason: String },
    #[error(transparent)]
    Storage(Arc<StorageError>),
}

impl From<StorageError> for MirrorError {
    fn from(e: StorageError) -> MirrorError {
        MirrorError::Storage(Arc::new(e))
    }
}

/// `reason` prefixed with the upstream it is about, unless it already starts that way (the
/// text of an `UpstreamError` does: `upstream <base>: <request>: …`).
fn naming(upstream: &str, reason: &str) -> String {
    let prefix = format!("upstream {upstream}: ");
    if reason.starts_with(&prefix) {
        reason.to_owned()
    } else {
        format!("{prefix}{reason}")
    }
}

type Shared = Arc<OnceCell<Result<StoredManifest, MirrorError>>>;

/// Manifest fetches in progress, by local repository and reference.
#[derive(Default)]
pub struct ManifestFetches {
    by_key: Mutex<HashMap<String, Shared>>,
}

/// A blob read's answer.
pub enum BlobSource {
    /// Stored (and linked into the repository): serve it from the store.
    Stored,
    /// Arriving from the upstream: this many bytes, streamed by the flight.
    Fetching { flight: Arc<Flight>, size: u64 },
}

impl Mirrors {
    /// A manifest read of `local` (under `mirror`'s prefix; `remote` is its upstream name).
    /// `Ok(None)`: neither the store nor the upstream has it.
    pub async fn manifest(
        &self,
        store: &Store,
        mirror: &Arc<Mirror>,
        local: &str,
        remote: &str,
        reference: &ManifestRef,
        max_bytes: usize,
    ) -> Result<Option<StoredManifest>, MirrorError> {
        let stats = &mirror.stats;
        let stored = {
            let store = store.clone();
            let (l, r) = (local.to_owned(), to_store_ref(reference));
            blocking(move || store.get_manifest(&l, &r)).await?
        };
        let Some(upstream) = mirror.upstream.clone() else {
            return Ok(stored);
        };
        let tag = match reference {
            ManifestRef::Digest(_) => {
                if stored.is_some() {
                    MirrorStats::add(&stats.hits, 1);
                    return Ok(stored);
                }
                None
            }
            ManifestRef::Tag(t) => Some(t.as_str()),
        };
        if let (Some(tag), Some(m)) = (tag, &stored) {
            if mirror.is_fresh(local, tag) {
                MirrorStats::add(&stats.hits, 1);
                return Ok(stored);
            }
            // Due for a check: one HEAD, compared by digest.
            MirrorStats::add(&stats.upstream_requests, 1);
            match upstream.manifest(remote, tag, true, max_bytes).await {
                Ok(Some(head)) if head.digest.as_ref() == Some(&m.digest) => {
                    mirror.confirmed(local, tag);
                    MirrorStats::add(&stats.hits, 1);
                    return Ok(stored);
                }
                Ok(Some(_)) => {} // Moved, or no digest to compare: fetch it.
                Ok(None) => {
                    // Gone upstream; what was pushed or imported here stays served.
                    mirror.confirmed(local, tag);
                    return Ok(stored);
                }
                Err(e) => {
                    self.stale(mirror, &upstream, local, tag, &e);
                    return Ok(stored);
                }
            }
        }
        if !mirror.config.allows(remote) {
            return match stored {
                Some(m) => Ok(Some(m)),
                None => Err(MirrorError::NotAllowed(format!(
                    "{}/{remote}",
                    mirror.config.ns
                ))),
            };
        }
        let fetch = ManifestFetch {
            store,
            mirror,
            upstream: &upstream,
            local,
            remote,
            reference,
            max_bytes,
        };
        let fetched = self.fetch_manifest(&fetch).await;
        match (fetched, stored) {
            (Ok(m), _) => Ok(Some(m)),
            (Err(MirrorError::NotFound), stored) => Ok(stored),
            (Err(e @ MirrorError::Upstream { .. }), Some(m)) => {
                if let Some(tag) = tag {
                    tracing::warn!(
                        target: "berth::mirror",
                        repository = local,
                        tag,
                        "serving the cached tag: {e}"
                    );
                    MirrorStats::add(&stats.stale_served, 1);
                }
                Ok(Some(m))
            }
            (Err(e), _) => Err(e),
        }
    }

    fn stale(
        &self,
        mirror: &Mirror,
        upstream: &Upstream,
        local: &str,
        tag: &str,
        e: &UpstreamError,
    ) {
        MirrorStats::add(&mirror.stats.upstream_failures, 1);
        MirrorStats::add(&mirror.stats.stale_served, 1);
        tracing::warn!(
            target: "berth::mirror",
            upstream = upstream.base(),
            repository = local,
            tag,
            "upstream not asked successfully, serving the cached tag: {e}"
        );
    }

    /// Fetches, verifies and stores a manifest; concurrent calls for the same one share it.
    async fn fetch_manifest(&self, f: &ManifestFetch<'_>) -> Result<StoredManifest, MirrorError> {
        let key = format!("{}@{}", f.local, reference_text(f.reference));
        let cell: Shared = {
            let mut map = self
                .manifests
                .by_key
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| f.run(&self.manifests_stored))
            .await
            .clone();
        let mut map = self
            .manifests
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&key);
        }
        result
    }

    /// A blob read of `local` under `mirror`'s prefix that the repository does not hold.
    /// `Ok(None)`: nobody has it. A blob that another repository of the same mirror holds is
    /// linked instead of fetched (layers shared by images); with `link_any`, one that any
    /// repository holds: only where everything is readable by everyone (no access control),
    /// or the link would reveal a private project's blob to whoever knows its digest.
    pub async fn blob(
        &self,
        store: &Store,
        mirror: &Arc<Mirror>,
        local: &str,
        remote: &str,
        digest: &Digest,
        link_any: bool,
    ) -> Result<Option<BlobSource>, MirrorError> {
        // Content-addressed and verified on the way in: linking it costs the upstream nothing.
        let linked = {
            let store = store.clone();
            let (l, d, ns) = (local.to_owned(), digest.clone(), mirror.config.ns.clone());
            blocking(move || {
                // Looked up first, because a link is a durable commit (a log record and an
                // fdatasync) even when it finds nothing, and a miss is on the first byte's path.
                let held = if link_any {
                    store.stat(&d)?.is_some()
                } else {
                    store.project_holds(&[RepoGroup::Under(&ns)], &d)?
                };
                if held {
                    store.link_blob(&l, &d)
                } else {
                    Ok(false)
                }
            })
            .await?
        };
        if linked {
            MirrorStats::add(&mirror.stats.hits, 1);
            return Ok(Some(BlobSource::Stored));
        }
        let Some(upstream) = mirror.upstream.clone() else {
            return Ok(None);
        };
        if !mirror.config.allows(remote) {
            return Err(MirrorError::NotAllowed(format!(
                "{}/{remote}",
                mirror.config.ns
            )));
        }
        let report: Arc<dyn FlightReport> = mirror.stats.clone();
        let (flight, new) = self.flights.join_or_start(
            store,
            &mirror.config.ns,
            upstream.clone(),
            local,
            remote,
            digest,
            report,
        );
        if new {
            MirrorStats::add(&mirror.stats.upstream_requests, 1);
        } else {
            MirrorStats::add(&mirror.stats.joined_fetches, 1);
        }
        use crate::mirror::flight::Phase;
        match flight.started().await {
            Phase::Streaming { size } => Ok(Some(BlobSource::Fetching { flight, size })),
            Phase::Done { .. } => {
                // Committed before this read looked: link it (the commit linked it into the
                // repository that started the fetch, which may be another).
                let store = store.clone();
                let (l, d) = (local.to_owned(), digest.clone());
                blocking(move || store.link_blob(&l, &d)).await?;
                Ok(Some(BlobSource::Stored))
            }
            Phase::Missing => Ok(None),
            Phase::Failed(reason) => Err(MirrorError::Upstream {
                upstream: upstream.base().to_owned(),
                reason: reason.to_string(),
                outage: true,
            }),
            Phase::Starting => Err(MirrorError::Upstream {
                upstream: upstream.base().to_owned(),
                reason: "the fetch ended before the upstream answered".into(),
                outage: true,
            }),
        }
    }
}

impl FlightReport for MirrorStats {
    fn fetched(&self, bytes: u64) {
        MirrorStats::add(&self.fetched_bytes, bytes);
    }

    fn failed(&self, _reason: &str) {
        MirrorStats::add(&self.upstream_failures, 1);
    }
}

/// One manifest to fetch: from where, into which repository.
struct ManifestFetch<'a> {
    store: &'a Store,
    mirror: &'a Arc<Mirror>,
    upstream: &'a Arc<Upstream>,
    local: &'a str,
    remote: &'a str,
    reference: &'a ManifestRef,
    max_bytes: usize,
}

impl ManifestFetch<'_> {
    /// Fetches, verifies and stores the manifest; counts it in `stored`.
    async fn run(
        &self,
        stored: &std::sync::atomic::AtomicU64,
    ) -> Result<StoredManifest, MirrorError> {
        let ManifestFetch {
            store,
            mirror,
            upstream,
            local,
            remote,
            reference,
            max_bytes,
        } = *self;
        let stats = &mirror.stats;
        MirrorStats::add(&stats.upstream_requests, 1);
        let fetched = match upstream
            .manifest(remote, &reference_text(reference), false, max_bytes)
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Err(MirrorError::NotFound),
            Err(e) => {
                MirrorStats::add(&stats.upstream_failures, 1);
                return Err(MirrorError::Upstream {
                    upstream: upstream.base().to_owned(),
                    outage: e.is_outage(),
                    reason: e.to_string(),
                });
            }
        };
        let invalid = |reason: String| {
            MirrorStats::add(&stats.upstream_failures, 1);
            MirrorError::Invalid {
                upstream: upstream.base().to_owned(),
                reason,
            }
        };
        let algorithm = match reference {
            ManifestRef::Digest(d) => d.algorithm(),
            ManifestRef::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &fetched.body);
        if let ManifestRef::Digest(expected) = reference {
            if *expected != digest {
                return Err(invalid(format!(
                    "its bytes hash to {digest}, not {expected}"
                )));
            }
        }
        if let Some(claimed) = &fetched.digest {
            if *claimed != Digest::of(claimed.algorithm(), &fetched.body) {
                return Err(invalid(format!(
                    "its bytes do not match its Docker-Content-Digest {claimed}"
                )));
            }
        }
        let parsed = manifest::parse(&fetched.body, Some(&fetched.media_type))
            .map_err(|e| invalid(e.to_string()))?;
        let tags = match reference {
            ManifestRef::Tag(t) => vec![t.clone()],
            ManifestRef::Digest(_) => Vec::new(),
        };
        let put = ManifestPut {
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            body: fetched.body.to_vec(),
            tags,
            references: parsed.references,
            subject: parsed.subject,
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
        };
        {
            let store = store.clone();
            let local = local.to_owned();
            blocking(move || store.put_cached_manifest(&local, &put)).await?;
        }
        if let ManifestRef::Tag(t) = reference {
            mirror.confirmed(local, t);
        }
        stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            target: "berth::mirror",
            upstream = upstream.base(),
            repository = local,
            reference = %reference_text(reference),
            digest = %digest,
            "manifest fetched"
        );
        Ok(StoredManifest {
            digest,
            media_type: parsed.media_type,
            body: fetched.body,
        })
    }
}

fn reference_text(reference: &ManifestRef) -> String {
    match reference {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    }
}

fn to_store_ref(reference: &ManifestRef) -> Reference {
    match reference {
        ManifestRef::Tag(t) => Reference::Tag(t.clone()),
        ManifestRef::Digest(d) => Reference::Digest(d.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_error_names_its_upstream_once() {
        let e = |reason: &str| MirrorError::Upstream {
            upstream: "http://up:5000".into(),
            reason: reason.into(),
            outage: false,
        };
        assert_eq!(
            e("upstream http://up:5000: GET /v2/a/manifests/1: 401").to_string(),
            "upstream http://up:5000: GET /v2/a/manifests/1: 401"
        );
        assert_eq!(
            e("the upstream sent 3 of 9 bytes").to_string(),
            "upstream http://up:5000: the upstream sent 3 of 9 bytes"
        );
    }
}
