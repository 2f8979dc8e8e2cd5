//! `inventory`: what a data directory holds, as the have-list an incremental export reads.

use crate::oci::digest::Digest;
use crate::storage::Store;

use super::contents::{Inventory, InventoryManifest, FORMAT_VERSION};
use super::error::BundleError;
use super::refs::RefSpec;
use super::select::{repositories, select};

const PAGE: usize = 1000;

/// Every blob of the store (manifest bodies included) and every manifest reachable from a tag.
pub fn inventory(store: &Store) -> Result<Inventory, BundleError> {
    let mut blobs: Vec<Digest> = Vec::new();
    loop {
        let page = store.list_blobs(blobs.last(), PAGE)?;
        let done = page.len() < PAGE;
        blobs.extend(page.into_iter().map(|b| b.digest));
        if done {
            break;
        }
    }
    let mut manifests = Vec::new();
    for repo in repositories(store)? {
        // A repository with no tags (only links, or a staging leftover) has nothing to select.
        let sel = match select(store, &[RefSpec::Repo(repo)]) {
            Ok(sel) => sel,
            Err(BundleError::UnknownRef(_)) => continue,
            Err(e) => return Err(e),
        };
        manifests.extend(sel.manifests.into_iter().map(|m| InventoryManifest {
            repository: m.repo,
            digest: m.digest,
            tags: m.tags,
        }));
    }
    Ok(Inventory {
        format: FORMAT_VERSION,
        blobs,
        manifests,
    })
}
