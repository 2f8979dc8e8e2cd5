//! Sending to a registry through the distribution API: blobs (a chunked upload hashed as it is
//! sent, or a cross-repository mount) and manifests. And `import --url` for inputs other than
//! berth bundles (`stream` handles those): they are checked, as a local import checks them,
//! into a scratch store under the temporary directory, since which repository a blob of an
//! OCI layout or docker-archive belongs to is known only at its end; then every blob is
//! pushed, each manifest by digest, children first, and the tags last.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;
use http::{header, Method, StatusCode};

use crate::bundle::origin::Origin;
use crate::bundle::{BundleError, ImportOptions, ImportReport};
use crate::oci::digest::{Algorithm, Digest, Hasher};
use crate::storage::{Reference, Store, StoreOptions};

use super::registry::Remote;
use super::transfer::Transfer;

/// Bytes sent per PATCH of a chunked upload.
const CHUNK: usize = 8 << 20;

/// Imports `path` into a scratch store, then pushes what it published to `remote`.
pub fn import_via_scratch(
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
    push_published(remote, &store, &report)?;
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

fn push_published(
    remote: &Remote,
    store: &Store,
    report: &ImportReport,
) -> Result<(), BundleError> {
    let manifests: HashSet<&Digest> = report.published.iter().map(|p| &p.digest).collect();
    let total: u64 = report.bytes_written + report.bytes_present;
    let mut progress = Transfer::for_stderr("push", total);
    let mut sent = 0u64;
    // Where each blob went first: later repositories mount it from there.
    let mut home: HashMap<Digest, String> = HashMap::new();
    for p in &report.published {
        for d in p.references.iter().filter(|d| !manifests.contains(d)) {
            if remote.blob_size(&p.repo, d)?.is_some() {
                continue;
            }
            if let Some(from) = home.get(d) {
                if mount(remote, &p.repo, d, from)? {
                    continue;
                }
            }
            let size = store
                .stat(d)?
                .map(|i| i.size)
                .ok_or_else(|| BundleError::Missing(format!("{d} left the scratch store")))?;
            upload(remote, &p.repo, d, size, &mut store.open_blob(&p.repo, d)?)?;
            home.insert(d.clone(), p.repo.clone());
            sent += size;
            progress.update(sent);
        }
    }
    let body = |repo: &str, d: &Digest| -> Result<Bytes, BundleError> {
        Ok(store
            .manifest(repo, &Reference::Digest(d.clone()))?
            .ok_or_else(|| BundleError::Missing(format!("{repo}@{d} left")))?
            .body)
    };
    for p in &report.published {
        let b = body(&p.repo, &p.digest)?;
        put_manifest(remote, &p.repo, &p.digest.to_string(), &p.media_type, b)?;
    }
    for p in &report.published {
        for tag in &p.tags {
            put_manifest(
                remote,
                &p.repo,
                tag,
                &p.media_type,
                body(&p.repo, &p.digest)?,
            )?;
        }
    }
    progress.finish();
    Ok(())
}

/// Asks `repo` to take `digest` from the repository `from`; false if the registry started an
/// upload instead (then abandoned).
pub fn mount(
    remote: &Remote,
    repo: &str,
    digest: &Digest,
    from: &str,
) -> Result<bool, BundleError> {
    let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
    let what = format!("mounting {digest} into {repo}");
    let resp = remote.send(Method::POST, &path, &[], None)?;
    let resp = remote.require(resp, &[StatusCode::CREATED, StatusCode::ACCEPTED], &what)?;
    if resp.status() == StatusCode::CREATED {
        return Ok(true);
    }
    let location = location_of(&resp, &what)?;
    let _ = remote.send(Method::DELETE, &location, &[], None);
    Ok(false)
}

/// Pushes `size` bytes of `data` as `digest` into `repo`: chunked PATCHes, sent by a second
/// thread while this one reads and hashes the next chunk, so the registry stores one chunk
/// while the next is read. A wrong digest is refused here, and the upload abandoned, before
/// the registry is asked to commit it.
pub fn upload(
    remote: &Remote,
    repo: &str,
    digest: &Digest,
    size: u64,
    data: &mut dyn Read,
) -> Result<(), BundleError> {
    let what = format!("pushing {digest} to {repo}");
    let start = format!("/v2/{repo}/blobs/uploads/");
    let resp = remote.send(Method::POST, &start, &[], None)?;
    let resp = remote.require(resp, &[StatusCode::ACCEPTED], &what)?;
    let location = location_of(&resp, &what)?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut data = data.take(size);
    let (read, sent) = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Bytes>(1);
        let what = &what;
        let sender = scope.spawn(move || -> Result<(u64, String), BundleError> {
            let (mut location, mut offset) = (location, 0u64);
            for body in rx {
                let n = body.len() as u64;
                let headers = [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (
                        header::CONTENT_RANGE,
                        format!("{}-{}", offset, offset + n - 1),
                    ),
                ];
                let resp = remote.send(Method::PATCH, &location, &headers, Some(body))?;
                let resp = remote.require(resp, &[StatusCode::ACCEPTED], what)?;
                location = location_of(&resp, what)?;
                offset += n;
            }
            Ok((offset, location))
        });
        let read = (|| -> std::io::Result<()> {
            loop {
                let mut buf = Vec::with_capacity(CHUNK);
                if (&mut data).take(CHUNK as u64).read_to_end(&mut buf)? == 0 {
                    return Ok(());
                }
                hasher.update(&buf);
                // A closed channel: the sender stopped, and says why.
                if tx.send(Bytes::from(buf)).is_err() {
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let sent = sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (read, sent)
    });
    let (offset, location) = sent?;
    read?;
    let actual = hasher.finish();
    if offset != size || actual != *digest {
        let _ = remote.send(Method::DELETE, &location, &[], None);
        return Err(if offset != size {
            BundleError::Truncated {
                path: digest.to_string(),
                expected: size,
                got: offset,
            }
        } else {
            BundleError::DigestMismatch {
                path: digest.to_string(),
                expected: digest.clone(),
                actual,
            }
        });
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={digest}");
    let resp = remote.send(Method::PUT, &put, &[], None)?;
    remote.require(resp, &[StatusCode::CREATED], &what)?;
    Ok(())
}

pub fn put_manifest(
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
