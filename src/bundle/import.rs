//! `import`: reads an input once, front to back, staging every blob as it passes (see
//! `staging`), then decides what the input is (a berth bundle, an OCI layout, a
//! docker-archive), plans its manifests, checks them all, and only then publishes them.
//! Any refusal leaves the store's repositories and tags as they were.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::oci::digest::Digest;
use crate::storage::Store;

use super::check;
use super::contents::{Contents, CONTENTS_FILE, FORMAT_VERSION, SIGNATURE_FILE};
use super::docker::{Files, MANIFEST_FILE};
use super::error::BundleError;
use super::layout::{digest_of_path, Index, INDEX_FILE, OCI_LAYOUT_FILE};
use super::names::RepoOverride;
use super::plan;
pub use super::publish::Published;
use super::publish::{self, Planned};
use super::sign::Verifier;
use super::source::{Entry, Input};
use super::staging::{Staged, Staging};

/// Largest metadata file (`index.json`, `manifest.json`, the contents manifest) read into memory.
const MAX_META: u64 = 64 << 20;

#[derive(Default)]
pub struct ImportOptions<'a> {
    pub repo: Option<RepoOverride>,
    /// Refuse a bundle whose contents manifest this key did not sign.
    pub verifier: Option<&'a Verifier>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// `berth bundle`, `OCI image layout` or `docker-archive`.
    pub format: &'static str,
    /// `repo:tag` of every tag set (images imported by digest only are in `published`).
    pub images: Vec<String>,
    pub manifests: usize,
    pub blobs_written: u64,
    pub bytes_written: u64,
    /// Blobs the store already held: their bytes were read past, not written.
    pub blobs_present: u64,
    pub bytes_present: u64,
    /// Every manifest put, children before the indexes that list them.
    pub published: Vec<Published>,
}

/// Imports `path` into `store`; `progress(read, total)` hears the input bytes read so far.
pub fn import(
    store: &Store,
    path: &Path,
    opts: &ImportOptions<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ImportReport, BundleError> {
    let input = Input::open(path)?;
    let mut reading = Reading {
        store,
        staging: Staging::new(store)?,
        verifier: opts.verifier,
        contents: None,
        signed: false,
        shipped: BTreeMap::new(),
        entries: 0,
        meta: HashMap::new(),
        blobs: BTreeMap::new(),
        files: HashMap::new(),
        links: HashMap::new(),
        report: ImportReport::default(),
    };
    let counter = input.read.clone();
    let total = input.total;
    input.for_each(&mut |e| {
        let r = reading.entry(e);
        progress(counter.get(), total);
        r
    })?;
    let plan = reading.plan(opts.repo.as_ref())?;
    let ready = publish::check(store, publish::merge(plan))?;
    publish::publish(store, &ready)?;
    let Reading {
        staging,
        mut report,
        ..
    } = reading;
    staging.finish()?;
    report.manifests = ready.len();
    report.published = ready.iter().map(publish::Ready::published).collect();
    report.images = ready
        .iter()
        .filter(|r| r.is_tagged())
        .flat_map(|r| r.names())
        .collect();
    Ok(report)
}

struct Reading<'a, 's> {
    store: &'s Store,
    staging: Staging<'s>,
    verifier: Option<&'a Verifier>,
    /// The contents manifest, parsed and as its exact bytes (what the signature covers).
    contents: Option<(Contents, Vec<u8>)>,
    signed: bool,
    /// What the contents manifest says the tar holds under `blobs/`: digest -> size.
    shipped: BTreeMap<Digest, u64>,
    entries: usize,
    meta: HashMap<String, Vec<u8>>,
    /// `blobs/…` files read: digest -> size.
    blobs: BTreeMap<Digest, u64>,
    /// Other files (a docker-archive's), by path.
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
    report: ImportReport,
}

impl Reading<'_, '_> {
    fn entry(&mut self, e: Entry<'_>) -> Result<(), BundleError> {
        let first = self.entries == 0;
        self.entries += 1;
        if let Some(target) = e.link {
            self.links.insert(e.path, target);
            return Ok(());
        }
        let path = e.path.as_str();
        if self.verifier.is_some()
            && !self.signed
            && path != CONTENTS_FILE
            && path != SIGNATURE_FILE
        {
            return Err(BundleError::Signature(
                "the input is not a signed berth bundle (its contents manifest and signature \
                 must come first), and --verify-key was given"
                    .into(),
            ));
        }
        match path {
            CONTENTS_FILE => {
                if !first {
                    return Err(BundleError::ContentsMismatch(format!(
                        "{CONTENTS_FILE} must be the first file of the bundle"
                    )));
                }
                let raw = read_meta(path, e.size, MAX_META, e.data)?;
                let c: Contents = serde_json::from_slice(&raw).map_err(|err| {
                    BundleError::ContentsMismatch(format!("{CONTENTS_FILE} does not parse: {err}"))
                })?;
                if c.format != FORMAT_VERSION {
                    return Err(BundleError::format(format!(
                        "bundle format {} is not the one this berth reads ({FORMAT_VERSION})",
                        c.format
                    )));
                }
                self.shipped = c.shipped();
                self.contents = Some((c, raw));
            }
            SIGNATURE_FILE => {
                let sig = read_meta(path, e.size, MAX_META, e.data)?;
                if let Some(v) = self.verifier {
                    let Some((_, raw)) = &self.contents else {
                        return Err(BundleError::Signature(format!(
                            "{SIGNATURE_FILE} without a contents manifest before it"
                        )));
                    };
                    v.verify(raw, &sig)?;
                    self.signed = true;
                }
            }
            INDEX_FILE | MANIFEST_FILE | OCI_LAYOUT_FILE | "repositories" => {
                let body = read_meta(path, e.size, MAX_META, e.data)?;
                self.meta.insert(path.to_owned(), body);
            }
            _ => self.file(e)?,
        }
        Ok(())
    }

    fn file(&mut self, e: Entry<'_>) -> Result<(), BundleError> {
        let path = e.path.as_str();
        let Some(d) = digest_of_path(path) else {
            if self.contents.is_some() {
                return Err(BundleError::ContentsMismatch(format!(
                    "{path} has no place in a berth bundle"
                )));
            }
            let s = self.staging.stage(path, None, e.size, e.data)?;
            self.count(&s);
            self.files.insert(e.path, s);
            return Ok(());
        };
        if self.contents.is_some() {
            check::listed(&self.shipped, path, &d, e.size)?;
        }
        let s = self.staging.stage(path, Some(&d), e.size, e.data)?;
        self.count(&s);
        self.blobs.insert(d, e.size);
        // A docker-archive may name its files by these paths too (`docker save` since 25).
        self.files.insert(e.path, s);
        Ok(())
    }

    fn count(&mut self, s: &Staged) {
        if s.written {
            self.report.blobs_written += 1;
            self.report.bytes_written += s.size;
        } else {
            self.report.blobs_present += 1;
            self.report.bytes_present += s.size;
        }
    }

    fn plan(&mut self, over: Option<&RepoOverride>) -> Result<Vec<Planned>, BundleError> {
        if let Some((c, _)) = self.contents.take() {
            self.report.format = "berth bundle";
            let index = self.meta.get(INDEX_FILE).map(Vec::as_slice);
            return plan::bundle(self.store, &c, &self.blobs, index, over);
        }
        if let Some(index) = self.meta.get(INDEX_FILE) {
            self.report.format = "OCI image layout";
            let index: Index = serde_json::from_slice(index)
                .map_err(|e| BundleError::format(format!("{INDEX_FILE}: {e}")))?;
            return plan::layout(self.store, &index, over);
        }
        if let Some(list) = self.meta.get(MANIFEST_FILE) {
            self.report.format = "docker-archive";
            let files = Files {
                staged: &self.files,
                links: &self.links,
            };
            return plan::docker(self.store, list, &files, over);
        }
        Err(BundleError::format(
            "neither a berth bundle, an OCI image layout (no index.json) nor a docker-archive \
             (no manifest.json)",
        ))
    }
}

/// A small file of a tar (contents manifest, signature, index, manifest) read whole, refused
/// past `limit` bytes or when the tar ends before it does.
pub(crate) fn read_meta(
    path: &str,
    size: u64,
    limit: u64,
    data: &mut dyn Read,
) -> Result<Vec<u8>, BundleError> {
    if size > limit {
        return Err(BundleError::format(format!(
            "{path} is {size} bytes, more than any such file should be"
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    data.take(size).read_to_end(&mut buf)?;
    if buf.len() as u64 != size {
        return Err(BundleError::Truncated {
            path: path.to_owned(),
            expected: size,
            got: buf.len() as u64,
        });
    }
    Ok(buf)
}
