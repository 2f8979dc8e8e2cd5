//! Images put straight into a store, and what two stores are compared on, for the bundle
//! scenarios (`tests/bundle_*.rs`). Each scenario uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use berth::bundle::origin::Origin;
use berth::bundle::{export, select::select, RefSpec};
use berth::oci::digest::{Algorithm, Digest};
use berth::oci::manifest::{self, OCI_INDEX, OCI_MANIFEST};
use berth::storage::{ManifestPut, Reference, Store, StoreOptions};

pub fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

pub fn put_manifest(store: &Store, repo: &str, body: &[u8], tags: &[&str]) -> Digest {
    let p = manifest::parse(body, None).unwrap();
    let digest = Digest::of(Algorithm::Sha256, body);
    store
        .put_manifest(
            repo,
            &ManifestPut {
                digest: digest.clone(),
                media_type: p.media_type,
                body: body.to_vec(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                references: p.references,
                subject: p.subject,
                artifact_type: p.artifact_type,
                annotations: p.annotations,
            },
        )
        .unwrap();
    digest
}

pub fn put_blob(store: &Store, repo: &str, bytes: &[u8]) -> (Digest, u64) {
    let d = Digest::of(Algorithm::Sha256, bytes);
    store.put_blob(repo, &d, bytes).unwrap();
    (d, bytes.len() as u64)
}

fn descriptor(media_type: &str, d: &Digest, size: u64) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": d, "size": size})
}

/// An image manifest with a config and one layer per entry of `layers`.
pub fn image_body(store: &Store, repo: &str, seed: &str, layers: &[&[u8]]) -> Vec<u8> {
    let (cd, cs) = put_blob(store, repo, format!("{{\"config\":\"{seed}\"}}").as_bytes());
    let layers: Vec<_> = layers
        .iter()
        .map(|l| {
            let (d, s) = put_blob(store, repo, l);
            descriptor("application/vnd.oci.image.layer.v1.tar", &d, s)
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &cd, cs),
        "layers": layers,
    }))
    .unwrap()
}

pub fn put_image(store: &Store, repo: &str, tag: &str, layers: &[&[u8]]) -> Digest {
    let body = image_body(store, repo, &format!("{repo}:{tag}"), layers);
    put_manifest(store, repo, &body, &[tag])
}

/// An index of two platform images, tagged `tag`.
pub fn put_index(store: &Store, repo: &str, tag: &str) -> Digest {
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = format!("{repo} {arch} layer").into_bytes();
        let body = image_body(store, repo, arch, &[&layer]);
        let d = put_manifest(store, repo, &body, &[]);
        let mut desc = descriptor(OCI_MANIFEST, &d, body.len() as u64);
        desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        children.push(desc);
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
    }))
    .unwrap();
    put_manifest(store, repo, &body, &[tag])
}

/// A signature-like artifact whose subject is `subject`.
pub fn put_referrer(store: &Store, repo: &str, subject: &Digest, payload: &[u8]) -> Digest {
    let (ed, es) = put_blob(store, repo, b"{}");
    let (pd, ps) = put_blob(store, repo, payload);
    let subject_body = store
        .get_manifest(repo, &Reference::Digest(subject.clone()))
        .unwrap()
        .unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", &ed, es),
        "layers": [descriptor("application/vnd.example.sig", &pd, ps)],
        "subject": descriptor(&subject_body.media_type, subject, subject_body.body.len() as u64),
    }))
    .unwrap();
    put_manifest(store, repo, &body, &[])
}

/// What clients can see of a store: repository -> tag -> manifest digest, every manifest
/// body reachable from a tag (with referrers), and the bytes of every blob they name.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub tags: BTreeMap<String, BTreeMap<String, Digest>>,
    pub manifests: BTreeMap<(String, Digest), Vec<u8>>,
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    pub referrers: BTreeMap<(String, Digest), BTreeSet<Digest>>,
}

pub fn seen(store: &Store) -> Seen {
    let mut out = Seen {
        tags: BTreeMap::new(),
        manifests: BTreeMap::new(),
        blobs: BTreeMap::new(),
        referrers: BTreeMap::new(),
    };
    for repo in store.repositories().unwrap() {
        let t = Origin::tags(store, &repo).unwrap();
        if t.is_empty() {
            continue;
        }
        let mut map = BTreeMap::new();
        for tag in &t {
            let m = store
                .get_manifest(&repo, &Reference::Tag(tag.clone()))
                .unwrap()
                .unwrap();
            map.insert(tag.clone(), m.digest);
        }
        out.tags.insert(repo.clone(), map);
        let sel = select(store, &[RefSpec::Repo(repo.clone())]).unwrap();
        for m in &sel.manifests {
            let body = store
                .get_manifest(&repo, &Reference::Digest(m.digest.clone()))
                .unwrap()
                .unwrap()
                .body
                .to_vec();
            out.manifests.insert((repo.clone(), m.digest.clone()), body);
            let refs: BTreeSet<Digest> = store
                .referrers(&repo, &m.digest)
                .unwrap()
                .into_iter()
                .map(|r| r.digest)
                .collect();
            out.referrers.insert((repo.clone(), m.digest.clone()), refs);
        }
        for d in sel.blobs.iter().map(|b| &b.digest) {
            assert!(store.repo_has_blob(&repo, d).unwrap(), "{repo} lacks {d}");
            let bytes = store.get(d).unwrap().unwrap().read_all().unwrap().to_vec();
            assert_eq!(Digest::of(Algorithm::Sha256, &bytes), *d);
            out.blobs.insert(d.clone(), bytes);
        }
    }
    out
}

/// Writes the bundle of `refs` to `path`, leaving out `have`; returns its contents manifest.
pub fn export_to(
    store: &Store,
    refs: &[&str],
    have: &HashSet<Digest>,
    path: &Path,
) -> berth::bundle::Contents {
    let specs: Vec<RefSpec> = refs.iter().map(|r| RefSpec::parse(r).unwrap()).collect();
    let sel = select(store, &specs).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let (contents, _) = export::write(store, &sel, have, None, file, &mut |_| {}).unwrap();
    contents
}

/// The paths of a tar's files, in order.
pub fn tar_paths(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Copies the tar at `from` to `to`, letting `f` change (or drop, with `None`) each file.
pub fn rewrite_tar(from: &Path, to: &Path, mut f: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut a = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        if let Some(body) = f(&path, body) {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            out.append_data(&mut h, &path, &body[..]).unwrap();
        }
    }
    out.finish().unwrap();
}
