//! A berth bundle checked against its own contents manifest, the same way whether it goes into
//! a store or (in `cli`) straight to a registry: every file under `blobs/` listed with its
//! size, every listed file there, and `index.json` naming what the contents manifest names.

use std::collections::BTreeMap;

use crate::oci::digest::Digest;

use super::contents::{Contents, CONTENTS_FILE};
use super::error::BundleError;
use super::layout::{blob_path, Index, INDEX_FILE};

/// A file under `blobs/` found in the bundle: listed as shipped (`shipped` is
/// [`Contents::shipped`]), with this size.
pub fn listed(
    shipped: &BTreeMap<Digest, u64>,
    path: &str,
    digest: &Digest,
    size: u64,
) -> Result<(), BundleError> {
    match shipped.get(digest) {
        None => Err(BundleError::ContentsMismatch(format!(
            "{path} is in the bundle but not listed in {CONTENTS_FILE}"
        ))),
        Some(&n) if n != size => Err(BundleError::ContentsMismatch(format!(
            "{path} holds {size} bytes; {CONTENTS_FILE} lists {n}"
        ))),
        Some(_) => Ok(()),
    }
}

/// At the end: every shipped file was read (`seen`), and `index.json` is there and agrees.
pub fn complete(
    c: &Contents,
    seen: &BTreeMap<Digest, u64>,
    index: Option<&[u8]>,
) -> Result<(), BundleError> {
    for (d, size) in c.shipped() {
        if seen.get(&d) != Some(&size) {
            return Err(BundleError::ContentsMismatch(format!(
                "{} ({size} bytes) is listed but not in the bundle: the bundle is cut short \
                 or incomplete",
                blob_path(&d)
            )));
        }
    }
    // index.json is written last: without it the bundle was cut short.
    let Some(index) = index else {
        return Err(BundleError::ContentsMismatch(format!(
            "{INDEX_FILE} is missing: the bundle is cut short"
        )));
    };
    let index: Index = serde_json::from_slice(index)
        .map_err(|e| BundleError::format(format!("{INDEX_FILE}: {e}")))?;
    for e in &index.manifests {
        if e.name().and_then(|n| c.refs.get(n)) != Some(&e.digest) {
            return Err(BundleError::ContentsMismatch(format!(
                "{INDEX_FILE} names {} as {:?}, which {CONTENTS_FILE} does not list",
                e.digest,
                e.name().unwrap_or_default()
            )));
        }
    }
    Ok(())
}
