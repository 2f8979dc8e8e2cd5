//! `berth import --url` of a berth bundle: pushed as it is read, front to back, nothing kept on
//! disk. The contents manifest comes first and says where every blob goes, so each blob is
//! uploaded as it passes (hashed as it is sent; the registry checks it again at commit), or
//! skipped if the registry holds it; manifests, small, are kept in memory. Only when every
//! file checked out are the manifests put, by digest, children first, and then the tags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;

use crate::bundle::check;
use crate::bundle::contents::{Contents, CONTENTS_FILE, FORMAT_VERSION, SIGNATURE_FILE};
use crate::bundle::import::read_meta;
use crate::bundle::layout::{digest_of_path, INDEX_FILE, OCI_LAYOUT_FILE};
use crate::bundle::names::{target, RepoOverride};
use crate::bundle::origin::Origin;
use crate::bundle::sign::Verifier;
use crate::bundle::source::{Entry, Input};
use crate::bundle::{BundleError, ImportOptions, ImportReport};
use crate::oci::digest::Digest;
use crate::storage::Reference;

use super::push::{mount, put_manifest, upload};
use super::registry::Remote;
use super::transfer::Transfer;

/// Largest manifest or metadata file kept in memory.
const MAX_META: u64 = 16 << 20;

pub fn import(
    remote: &Remote,
    path: &Path,
    opts: &ImportOptions<'_>,
) -> Result<ImportReport, BundleError> {
    let input = Input::open(path)?;
    let mut s = Streaming {
        remote,
        over: opts.repo.as_ref(),
        verifier: opts.verifier,
        contents: None,
        signed: false,
        shipped: BTreeMap::new(),
        manifest_digests: HashSet::new(),
        homes: HashMap::new(),
        index: None,
        seen: BTreeMap::new(),
        bodies: HashMap::new(),
        report: ImportReport {
            format: "berth bundle",
            ..ImportReport::default()
        },
    };
    let mut progress = Transfer::for_stderr("import", input.total);
    let counter = input.read.clone();
    input.for_each(&mut |e| {
        let r = s.entry(e);
        progress.update(counter.get());
        r
    })?;
    progress.finish();
    s.publish()?;
    Ok(s.report)
}

struct Streaming<'a> {
    remote: &'a Remote,
    over: Option<&'a RepoOverride>,
    verifier: Option<&'a Verifier>,
    contents: Option<(Contents, Vec<u8>)>,
    signed: bool,
    /// What the contents manifest says the tar holds under `blobs/`: digest -> size.
    shipped: BTreeMap<Digest, u64>,
    manifest_digests: HashSet<Digest>,
    /// Blob -> the repository it is sent to first.
    homes: HashMap<Digest, String>,
    index: Option<Vec<u8>>,
    /// Files read under `blobs/`: digest -> size.
    seen: BTreeMap<Digest, u64>,
    /// Manifest bodies by digest.
    bodies: HashMap<Digest, Bytes>,
    report: ImportReport,
}

impl Streaming<'_> {
    fn contents(&self) -> Result<&Contents, BundleError> {
        self.contents.as_ref().map(|(c, _)| c).ok_or_else(|| {
            BundleError::format(format!("not a berth bundle: {CONTENTS_FILE} is not first"))
        })
    }

    /// Where `repo`'s images go (`--repo` moves a one-image bundle whole).
    fn repo<'r>(&'r self, repo: &'r str) -> &'r str {
        self.over.map_or(repo, |o| o.repo.as_str())
    }

    fn entry(&mut self, e: Entry<'_>) -> Result<(), BundleError> {
        let path = e.path.clone();
        if path == CONTENTS_FILE && self.contents.is_none() {
            let raw = read_meta(&path, e.size, MAX_META, e.data)?;
            let c: Contents = serde_json::from_slice(&raw).map_err(|err| {
                BundleError::ContentsMismatch(format!("{CONTENTS_FILE} does not parse: {err}"))
            })?;
            if c.format != FORMAT_VERSION {
                return Err(BundleError::format(format!(
                    "bundle format {} is not the one this berth reads",
                    c.format
                )));
            }
            if self.over.is_some() {
                target(
                    c.refs.keys().next().map(String::as_str),
                    self.over,
                    c.refs.len() == 1,
                )?;
            }
            self.shipped = c.shipped();
            self.manifest_digests = c.manifests.iter().map(|m| m.digest.clone()).collect();
            self.homes = c
                .blobs
                .iter()
                .map(|b| (b.digest.clone(), b.repository.clone()))
                .collect();
            self.contents = Some((c, raw));
            return Ok(());
        }
        self.contents()?;
        if path == SIGNATURE_FILE {
            let sig = read_meta(&path, e.size, MAX_META, e.data)?;
            if let (Some(v), Some((_, raw))) = (self.verifier, &self.contents) {
                v.verify(raw, &sig)?;
                self.signed = true;
            }
            return Ok(());
        }
        if self.verifier.is_some() && !self.signed {
            return Err(BundleError::Signature(
                "the bundle is not signed, and --verify-key was given".into(),
            ));
        }
        if path == INDEX_FILE {
            self.index = Some(read_meta(&path, e.size, MAX_META, e.data)?);
            return Ok(());
        }
        let Some(d) = digest_of_path(&path) else {
            if path != OCI_LAYOUT_FILE {
                return Err(BundleError::ContentsMismatch(format!(
                    "{path} has no place in a berth bundle"
                )));
            }
            io::copy(&mut e.data.take(e.size), &mut io::sink())?;
            return Ok(());
        };
        self.blob(&path, d, e.size, e.data)
    }

    fn blob(
        &mut self,
        path: &str,
        d: Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), BundleError> {
        self.contents()?;
        check::listed(&self.shipped, path, &d, size)?;
        if self.manifest_digests.contains(&d) {
            let body = Bytes::from(read_meta(path, size, MAX_META, data)?);
            let actual = Digest::of(d.algorithm(), &body);
            if actual != d {
                return Err(BundleError::DigestMismatch {
                    path: path.to_owned(),
                    expected: d,
                    actual,
                });
            }
            self.bodies.insert(d.clone(), body);
        } else {
            let home = self.homes.get(&d).cloned().unwrap_or_default();
            let repo = self.repo(&home).to_owned();
            if self.remote.blob_size(&repo, &d)? == Some(size) {
                io::copy(&mut data.take(size), &mut io::sink())?;
                self.report.blobs_present += 1;
                self.report.bytes_present += size;
            } else {
                upload(self.remote, &repo, &d, size, data).map_err(|e| at(path, e))?;
                self.report.blobs_written += 1;
                self.report.bytes_written += size;
            }
        }
        self.seen.insert(d, size);
        Ok(())
    }

    fn publish(&mut self) -> Result<(), BundleError> {
        let c = self.contents()?.clone();
        check::complete(&c, &self.seen, self.index.as_deref())?;
        // What an incremental bundle left out must be where its images go.
        let home: HashMap<&Digest, &str> = c
            .blobs
            .iter()
            .map(|b| (&b.digest, b.repository.as_str()))
            .collect();
        for b in c.blobs.iter().filter(|b| !b.shipped) {
            let repo = self.repo(&b.repository);
            if self.remote.blob_size(repo, &b.digest)? != Some(b.size) {
                return Err(BundleError::Missing(format!(
                    "the bundle leaves out {} ({} bytes), made for a receiver that holds it, and \
                     {repo} does not: import the earlier bundle first",
                    b.digest, b.size
                )));
            }
        }
        for m in c.manifests.iter().filter(|m| !m.shipped) {
            let repo = self.repo(&m.repository);
            let got = self
                .remote
                .manifest(repo, &Reference::Digest(m.digest.clone()))?;
            let body = got.map(|g| g.body).ok_or_else(|| {
                BundleError::Missing(format!(
                    "the bundle leaves out manifest {repo}@{}, and the registry does not hold it",
                    m.digest
                ))
            })?;
            self.bodies.insert(m.digest.clone(), body);
        }
        // Blobs used in more than their first repository: mounted from it (or sent again).
        let manifests: HashSet<&Digest> = c.manifests.iter().map(|m| &m.digest).collect();
        for m in &c.manifests {
            let repo = self.repo(&m.repository).to_owned();
            let body = self.body(&m.digest)?;
            let parsed = crate::oci::manifest::parse(&body, Some(&m.media_type))
                .map_err(|e| BundleError::format(format!("manifest {}: {e}", m.digest)))?;
            for r in parsed.references.iter().filter(|r| !manifests.contains(r)) {
                let from = self
                    .repo(home.get(r).copied().unwrap_or_default())
                    .to_owned();
                if from != repo
                    && self.remote.blob_size(&repo, r)?.is_none()
                    && !mount(self.remote, &repo, r, &from)?
                {
                    return Err(BundleError::Missing(format!(
                        "{repo}@{} names {r}, which the registry would not mount from {from}",
                        m.digest
                    )));
                }
            }
        }
        for m in &c.manifests {
            let repo = self.repo(&m.repository);
            put_manifest(
                self.remote,
                repo,
                &m.digest.to_string(),
                &m.media_type,
                self.body(&m.digest)?,
            )?;
        }
        for m in &c.manifests {
            let repo = self.repo(&m.repository).to_owned();
            let tags: Vec<String> = match self.over.and_then(|o| o.tag.clone()) {
                Some(t) if !m.tags.is_empty() => vec![t],
                _ => m.tags.clone(),
            };
            for tag in &tags {
                put_manifest(
                    self.remote,
                    &repo,
                    tag,
                    &m.media_type,
                    self.body(&m.digest)?,
                )?;
                self.report.images.push(format!("{repo}:{tag}"));
            }
        }
        self.report.manifests = c.manifests.len();
        Ok(())
    }

    fn body(&self, d: &Digest) -> Result<Bytes, BundleError> {
        self.bodies
            .get(d)
            .cloned()
            .ok_or_else(|| BundleError::Missing(format!("manifest {d} is not in the bundle")))
    }
}

/// Names the file of the bundle a push failure is about.
fn at(path: &str, e: BundleError) -> BundleError {
    match e {
        BundleError::DigestMismatch {
            expected, actual, ..
        } => BundleError::DigestMismatch {
            path: path.to_owned(),
            expected,
            actual,
        },
        BundleError::Truncated { expected, got, .. } => BundleError::Truncated {
            path: path.to_owned(),
            expected,
            got,
        },
        other => other,
    }
}
