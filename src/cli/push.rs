//! `berth import --url`: the input is first imported, with every check of a local import, into
//! a scratch store in the temporary directory (the registry's API has no repository a client
//! can stage blobs under unseen); then every blob is pushed, each manifest by digest, children
//! first, and the tags last, so the registry shows nothing that is not complete.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use http::{header, Method, StatusCode};

use crate::bundle::origin::Origin;
use crate::bundle::{BundleError, ImportOptions, ImportReport};
use crate::oci::digest::Digest;
use crate::storage::{Reference, Store, StoreOptions};

use super::registry::Remote;
use super::transfer::Transfer;

/// Bytes sent per PATCH of a chunked upload.
const CHUNK: usize = 8 << 20;

/// Imports `path` into a scratch store, then pushes what it published to `remote`.
pub fn import(
    remote: &Remote,
    path: &Path,
    opts: &ImportOptions<'_>,
) -> Result<ImportReport, BundleError> {
    let scratch = Scratch::create()?;
    let store = Store::open(&scratch.0, StoreOptions::default())?;
    let mut progress = Transfer::for_stderr("verify", 0);
    let report = crate::bundle::import(&store, path, opts, &mut |done, total| {
        progress.total_is(total);
        progress.update(done)
    });
    progress.finish();
    let report = report?;
    push(remote, &store, &report)?;
    store.close()?;
    Ok(report)
}

/// A directory of its own under the temporary directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn create() -> Result<Scratch, BundleError> {
        let mut salt = [0u8; 8];
        getrandom::getrandom(&mut salt)
            .map_err(|e| BundleError::Io(std::io::Error::other(e.to_string())))?;
        let dir = std::env::temp_dir().join(format!("berth-import-{}", hex::encode(salt)));
        std::fs::create_dir(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn push(remote: &Remote, store: &Store, report: &ImportReport) -> Result<(), BundleError> {
    let manifests: HashMap<&Digest, ()> =
        report.published.iter().map(|p| (&p.digest, ())).collect();
    let total: u64 = report.bytes_written + report.bytes_present;
    let mut progress = Transfer::for_stderr("push", total);
    let mut sent = 0u64;
    // Where each blob went first: later repositories mount it from there.
    let mut pushed: HashMap<Digest, String> = HashMap::new();
    for p in &report.published {
        for d in p.references.iter().filter(|d| !manifests.contains_key(d)) {
            sent += push_blob(remote, store, &p.repo, d, &mut pushed)?;
            progress.update(sent);
        }
    }
    for p in &report.published {
        let body = store
            .manifest(&p.repo, &Reference::Digest(p.digest.clone()))?
            .ok_or_else(|| BundleError::Missing(format!("{}@{} left", p.repo, p.digest)))?
            .body;
        put_manifest(remote, &p.repo, &p.digest.to_string(), &p.media_type, body)?;
    }
    for p in &report.published {
        for tag in &p.tags {
            let body = store
                .manifest(&p.repo, &Reference::Digest(p.digest.clone()))?
                .map(|m| m.body)
                .unwrap_or_default();
            put_manifest(remote, &p.repo, tag, &p.media_type, body)?;
        }
    }
    progress.finish();
    Ok(())
}

/// Pushes one blob into `repo` unless the registry has it there; returns the bytes sent.
fn push_blob(
    remote: &Remote,
    store: &Store,
    repo: &str,
    digest: &Digest,
    pushed: &mut HashMap<Digest, String>,
) -> Result<u64, BundleError> {
    if remote.blob_size(repo, digest)?.is_some() {
        return Ok(0);
    }
    let start = match pushed.get(digest) {
        Some(from) => format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let what = format!("pushing {digest} to {repo}");
    let resp = remote.send(Method::POST, &start, &[], None)?;
    let resp = remote.require(resp, &[StatusCode::CREATED, StatusCode::ACCEPTED], &what)?;
    if resp.status() == StatusCode::CREATED {
        return Ok(0);
    }
    let mut location = location_of(&resp, &what)?;
    let size = store
        .stat(digest)?
        .map(|i| i.size)
        .ok_or_else(|| BundleError::Missing(format!("{digest} left the scratch store")))?;
    let mut data = store.open_blob(repo, digest)?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < size {
        let n = fill(&mut data, &mut buf)?;
        if n == 0 {
            return Err(BundleError::Missing(format!("{digest} ended early")));
        }
        let range = format!("{}-{}", offset, offset + n as u64 - 1);
        let headers = [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_RANGE, range),
        ];
        let body = Bytes::copy_from_slice(&buf[..n]);
        let resp = remote.send(Method::PATCH, &location, &headers, Some(body))?;
        let resp = remote.require(resp, &[StatusCode::ACCEPTED], &what)?;
        location = location_of(&resp, &what)?;
        offset += n as u64;
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = remote.send(
        Method::PUT,
        &format!("{location}{sep}digest={digest}"),
        &[],
        None,
    )?;
    remote.require(resp, &[StatusCode::CREATED], &what)?;
    pushed.insert(digest.clone(), repo.to_owned());
    Ok(size)
}

fn put_manifest(
    remote: &Remote,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Bytes,
) -> Result<(), BundleError> {
    let what = format!("putting {repo}:{reference}");
    let headers = [(header::CONTENT_TYPE, media_type.to_owned())];
    let path = format!("/v2/{repo}/manifests/{reference}");
    let resp = remote.send(Method::PUT, &path, &headers, Some(body))?;
    remote.require(resp, &[StatusCode::CREATED], &what)?;
    Ok(())
}

/// The upload's `Location`, as a path of the registry (absolute URLs are cut to their path).
fn location_of(resp: &reqwest::Response, what: &str) -> Result<String, BundleError> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| BundleError::Format(format!("{what}: no Location in the answer")))?;
    match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            Ok(rest.find('/').map_or("/", |j| &rest[j..]).to_owned())
        }
        None => Ok(loc.to_owned()),
    }
}

fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
