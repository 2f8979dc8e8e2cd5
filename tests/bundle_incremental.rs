//! Incremental transfer: `inventory` on the receiver, or the earlier bundle itself, tells the
//! export what to leave out, so the second bundle holds only the new blobs; it still names
//! everything, so an import on a receiver that lacks the old blobs is refused.

mod bundle_support;

use std::collections::HashSet;

use berth::bundle::contents::read_contents;
use berth::bundle::inventory::inventory;
use berth::bundle::{import, BundleError, ImportOptions};
use berth::oci::digest::{Algorithm, Digest};
use bundle_support::*;

const BASE: &[u8] = &[7u8; 64 * 1024];

#[test]
fn second_bundle_holds_only_new_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&tmp.path().join("a"));
    put_image(&a, "app", "1", &[BASE, b"app 1 code"]);
    let first = tmp.path().join("first.tar");
    export_to(&a, &["app:1"], &HashSet::new(), &first);
    let b = open(&tmp.path().join("b"));
    import(&b, &first, &ImportOptions::default(), &mut |_, _| {}).unwrap();

    let v2 = put_image(&a, "app", "2", &[BASE, b"app 2 code"]);
    let have = inventory(&b).unwrap().have();
    let second = tmp.path().join("second.tar");
    let contents = export_to(&a, &["app:2"], &have, &second);

    // Shipped: the new layer, the new config and the new manifest; named: the base layer too.
    let shipped: HashSet<Digest> = contents.shipped().into_keys().collect();
    let new_layer = Digest::of(Algorithm::Sha256, b"app 2 code");
    let base = Digest::of(Algorithm::Sha256, BASE);
    assert_eq!(shipped.len(), 3, "{shipped:?}");
    assert!(shipped.contains(&new_layer) && shipped.contains(&v2));
    assert!(!shipped.contains(&base));
    assert!(contents
        .blobs
        .iter()
        .any(|b| b.digest == base && !b.shipped));
    let files: Vec<String> = tar_paths(&second)
        .into_iter()
        .filter(|p| p.starts_with("blobs/"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let size = std::fs::metadata(&second).unwrap().len();
    assert!(size < 16 * 1024, "the second bundle is {size} bytes");
    assert!(std::fs::metadata(&first).unwrap().len() > BASE.len() as u64);

    // --since: the first bundle's contents manifest as the have-list leaves out the same.
    let since = tmp.path().join("since.tar");
    let by_since = export_to(
        &a,
        &["app:2"],
        &read_contents(&first).unwrap().have(),
        &since,
    );
    assert_eq!(by_since.shipped(), contents.shipped());

    // A receiver without the first bundle refuses the second, naming the blob it lacks.
    let c = open(&tmp.path().join("c"));
    let err = import(&c, &second, &ImportOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, BundleError::Missing(_)), "{err}");
    assert!(err.to_string().contains(&base.to_string()), "{err}");
    assert!(seen(&c).tags.is_empty());

    // The receiver that has them takes it, and then serves app:2 as the sender does.
    import(&b, &second, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    let (got, want) = (seen(&b), seen(&a));
    assert_eq!(got.tags, want.tags);
    assert_eq!(got.manifests, want.manifests);
    assert_eq!(got.blobs, want.blobs);
}
