//! `inventory`: what a data directory (or registry) holds, as the have-list an incremental
//! export reads.

use std::collections::BTreeSet;

use super::contents::{Inventory, InventoryManifest, FORMAT_VERSION};
use super::error::BundleError;
use super::origin::Origin;
use super::refs::RefSpec;
use super::select::select;

/// Every blob held (manifest bodies included; through the API, every blob a tagged manifest
/// names) and every manifest reachable from a tag.
pub fn inventory(origin: &dyn Origin) -> Result<Inventory, BundleError> {
    let mut named = BTreeSet::new();
    let mut manifests = Vec::new();
    for repo in origin.repositories()? {
        // A repository with no tags (only links, or a staging leftover) has nothing to select.
        let sel = match select(origin, &[RefSpec::Repo(repo)]) {
            Ok(sel) => sel,
            Err(BundleError::UnknownRef(_)) => continue,
            Err(e) => return Err(e),
        };
        named.extend(sel.digests());
        manifests.extend(sel.manifests.into_iter().map(|m| InventoryManifest {
            repository: m.repo,
            digest: m.digest,
            tags: m.tags,
        }));
    }
    let blobs = match origin.all_blobs()? {
        Some(all) => all,
        None => named.into_iter().collect(),
    };
    Ok(Inventory {
        format: FORMAT_VERSION,
        blobs,
        manifests,
    })
}
