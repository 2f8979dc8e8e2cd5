//! `import`: reads an input once, front to back, staging every blob as it passes (see
//! `staging`), then decides what the input is (a berth bundle, an OCI layout, a
//! docker-archive), plans its manifests, checks them all, and only then publishes them.
//! Any refusal leaves the store's repositories and tags as they were.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::oci::digest::Digest;
use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::oci::name::{is_valid_name, is_valid_tag};
use crate::storage::Store;

use super::contents::{Contents, CONTENTS_FILE, FORMAT_VERSION, SIGNATURE_FILE};
use super::docker::{self, Files, MANIFEST_FILE};
use super::error::BundleError;
use super::layout::{blob_path, digest_of_path, Index, INDEX_FILE, OCI_LAYOUT_FILE};
use super::names::{target, RepoOverride};
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
    /// `repo:tag` of every tag set, `repo@digest` of every image imported by digest.
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
                let raw = read_meta(path, e.size, e.data)?;
                let c: Contents = serde_json::from_slice(&raw).map_err(|err| {
                    BundleError::ContentsMismatch(format!("{CONTENTS_FILE} does not parse: {err}"))
                })?;
                if c.format != FORMAT_VERSION {
                    return Err(BundleError::format(format!(
                        "bundle format {} is not the one this berth reads ({FORMAT_VERSION})",
                        c.format
                    )));
                }
                self.contents = Some((c, raw));
            }
            SIGNATURE_FILE => {
                let sig = read_meta(path, e.size, e.data)?;
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
                let body = read_meta(path, e.size, e.data)?;
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
        if let Some((c, _)) = &self.contents {
            let listed = c.shipped();
            match listed.get(&d) {
                None => {
                    return Err(BundleError::ContentsMismatch(format!(
                        "{path} is in the bundle but not listed in {CONTENTS_FILE}"
                    )))
                }
                Some(&size) if size != e.size => {
                    return Err(BundleError::ContentsMismatch(format!(
                        "{path} holds {} bytes; {CONTENTS_FILE} lists {size}",
                        e.size
                    )))
                }
                Some(_) => {}
            }
        }
        let s = self.staging.stage(path, Some(&d), e.size, e.data)?;
        self.count(&s);
        self.blobs.insert(d, e.size);
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
            return self.plan_bundle(&c, over);
        }
        if let Some(index) = self.meta.get(INDEX_FILE) {
            self.report.format = "OCI image layout";
            let index: Index = serde_json::from_slice(index)
                .map_err(|e| BundleError::format(format!("{INDEX_FILE}: {e}")))?;
            return plan_layout(self.store, &index, over);
        }
        if let Some(list) = self.meta.get(MANIFEST_FILE) {
            self.report.format = "docker-archive";
            return self.plan_docker(list, over);
        }
        Err(BundleError::format(
            "neither a berth bundle, an OCI image layout (no index.json) nor a docker-archive \
             (no manifest.json)",
        ))
    }

    fn plan_bundle(
        &self,
        c: &Contents,
        over: Option<&RepoOverride>,
    ) -> Result<Vec<Planned>, BundleError> {
        for (d, size) in c.shipped() {
            if self.blobs.get(&d) != Some(&size) {
                return Err(BundleError::ContentsMismatch(format!(
                    "{} ({size} bytes) is listed but not in the bundle: the bundle is cut short \
                     or incomplete",
                    blob_path(&d)
                )));
            }
        }
        for (d, size) in c.assumed() {
            if self.store.stat(&d)?.map(|i| i.size) != Some(size) {
                return Err(BundleError::Missing(format!(
                    "the bundle leaves out {d} ({size} bytes), made for a receiver that holds \
                     it, and this data directory does not: import the earlier bundle first"
                )));
            }
        }
        let Some(index) = self.meta.get(INDEX_FILE) else {
            return Err(BundleError::ContentsMismatch(format!(
                "{INDEX_FILE} is missing: the bundle is cut short"
            )));
        };
        let index: Index = serde_json::from_slice(index)
            .map_err(|e| BundleError::format(format!("{INDEX_FILE}: {e}")))?;
        for e in &index.manifests {
            let named = e.name().and_then(|n| c.refs.get(n));
            if named != Some(&e.digest) {
                return Err(BundleError::ContentsMismatch(format!(
                    "{INDEX_FILE} names {} as {:?}, which {CONTENTS_FILE} does not list",
                    e.digest,
                    e.name().unwrap_or_default()
                )));
            }
        }
        let single = c.refs.len() == 1;
        if over.is_some() {
            // Checked once: every manifest of a one-image bundle moves along with it.
            target(c.refs.keys().next().map(String::as_str), over, single)?;
        }
        let mut plan = Vec::with_capacity(c.manifests.len());
        for m in &c.manifests {
            let (repo, tags) = match over {
                Some(o) => {
                    let tags = match (&o.tag, m.tags.is_empty()) {
                        (Some(t), false) => vec![t.clone()],
                        _ => m.tags.clone(),
                    };
                    (o.repo.clone(), tags)
                }
                None => (m.repository.clone(), m.tags.clone()),
            };
            if !is_valid_name(&repo) || !m.tags.iter().all(|t| is_valid_tag(t)) {
                return Err(BundleError::ContentsMismatch(format!(
                    "{repo:?} {:?}: not a valid repository name and tags",
                    m.tags
                )));
            }
            plan.push(Planned {
                repo,
                digest: m.digest.clone(),
                media_type: Some(m.media_type.clone()),
                tags,
                body: None,
            });
        }
        Ok(plan)
    }

    fn plan_docker(
        &self,
        list: &[u8],
        over: Option<&RepoOverride>,
    ) -> Result<Vec<Planned>, BundleError> {
        let files = Files {
            staged: &self.files,
            links: &self.links,
        };
        let store = self.store;
        let config = |d: &Digest| -> Result<Vec<u8>, BundleError> {
            let blob = store
                .get(d)?
                .ok_or_else(|| BundleError::Missing(format!("config {d} was not stored")))?;
            Ok(blob.read_all()?.to_vec())
        };
        let images = docker::images(list, &files, &config)?;
        let single = images.len() == 1;
        let mut plan = Vec::new();
        for img in images {
            let mut tags: Vec<(String, Option<String>)> = Vec::new();
            if img.names.is_empty() || over.is_some() {
                let t = target(img.names.first().map(String::as_str), over, single)?;
                tags.push((t.repo, t.tag));
            } else {
                for n in &img.names {
                    let t = target(Some(n), None, single)?;
                    tags.push((t.repo, t.tag));
                }
            }
            for (repo, tag) in tags {
                plan.push(Planned {
                    repo,
                    digest: img.digest.clone(),
                    media_type: Some(DOCKER_MANIFEST.to_owned()),
                    tags: tag.into_iter().collect(),
                    body: Some(img.body.clone()),
                });
            }
        }
        Ok(plan)
    }
}

/// The manifests of an OCI layout: each named `index.json` entry, its children first.
fn plan_layout(
    store: &Store,
    index: &Index,
    over: Option<&RepoOverride>,
) -> Result<Vec<Planned>, BundleError> {
    let single = index.manifests.len() == 1;
    let mut plan = Vec::new();
    let mut skipped = 0;
    for e in &index.manifests {
        if e.name().is_none() && !single && over.is_none() {
            skipped += 1;
            continue;
        }
        let t = target(e.name(), over, single)?;
        let media_type = (!e.media_type.is_empty()).then(|| e.media_type.clone());
        children_first(store, &t.repo, &e.digest, media_type, &mut plan, 0)?;
        if let (Some(tag), Some(last)) = (t.tag, plan.last_mut()) {
            last.tags.push(tag);
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "index.json entries without an image name were left out"
        );
    }
    if plan.is_empty() {
        return Err(BundleError::Names("index.json names no image".into()));
    }
    Ok(plan)
}

/// Indexes nest a level or two in practice; deeper is refused rather than followed forever.
const MAX_DEPTH: usize = 8;

fn children_first(
    store: &Store,
    repo: &str,
    digest: &Digest,
    media_type: Option<String>,
    plan: &mut Vec<Planned>,
    depth: usize,
) -> Result<(), BundleError> {
    if depth > MAX_DEPTH {
        return Err(BundleError::format(format!(
            "{digest}: indexes nested deeper than {MAX_DEPTH}"
        )));
    }
    let body = store
        .get(digest)?
        .ok_or_else(|| {
            BundleError::Missing(format!(
                "{INDEX_FILE} names {digest}, which is not in {} nor stored",
                blob_path(digest)
            ))
        })?
        .read_all()?;
    let parsed = crate::oci::manifest::parse(&body, media_type.as_deref())
        .map_err(|e| BundleError::format(format!("manifest {digest}: {e}")))?;
    if parsed.media_type == OCI_INDEX || parsed.media_type == DOCKER_MANIFEST_LIST {
        for child in &parsed.references {
            children_first(store, repo, child, None, plan, depth + 1)?;
        }
    }
    plan.push(Planned {
        repo: repo.to_owned(),
        digest: digest.clone(),
        media_type: Some(parsed.media_type),
        tags: Vec::new(),
        body: None,
    });
    Ok(())
}

fn read_meta(path: &str, size: u64, data: &mut dyn Read) -> Result<Vec<u8>, BundleError> {
    if size > MAX_META {
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
