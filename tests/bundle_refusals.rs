//! A damaged or lying bundle is refused whole, with a message naming what is wrong, and the
//! receiving data directory's repositories and tags stay exactly as they were: a truncated
//! tar, a flipped byte in a layer, and a contents manifest that lists a wrong size, a blob
//! that is not there, or leaves out one that is.

mod bundle_support;

use std::collections::HashSet;
use std::path::Path;

use berth::bundle::{import, BundleError, Contents, ImportOptions};
use berth::storage::Store;
use bundle_support::*;

const LAYER: &[u8] = b"the one layer of app, long enough to be found in the tar";

fn refuse(store: &Store, bundle: &Path) -> BundleError {
    let before = seen(store);
    let err = import(store, bundle, &ImportOptions::default(), &mut |_, _| {}).unwrap_err();
    assert_eq!(
        seen(store),
        before,
        "a refused import changed what clients see"
    );
    let repos = berth::bundle::origin::Origin::repositories(store).unwrap();
    assert!(repos.iter().all(|r| !r.starts_with('_')), "{repos:?}");
    err
}

fn edit_contents(from: &Path, to: &Path, f: impl Fn(&mut Contents)) {
    rewrite_tar(from, to, |path, body| {
        if path != "berth-bundle.json" {
            return Some(body);
        }
        let mut c: Contents = serde_json::from_slice(&body).unwrap();
        f(&mut c);
        Some(serde_json::to_vec(&c).unwrap())
    });
}

#[test]
fn damaged_and_lying_bundles_are_refused_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&tmp.path().join("a"));
    put_image(&a, "app", "v1", &[LAYER]);
    let bundle = tmp.path().join("b.tar");
    export_to(&a, &["app:v1"], &HashSet::new(), &bundle);
    let b = open(&tmp.path().join("b"));
    // The receiver already serves app:v0; no refusal may touch it.
    put_image(&b, "app", "v0", &[b"older layer"]);

    let bytes = std::fs::read(&bundle).unwrap();
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = refuse(&b, &cut);
    assert!(
        matches!(
            err,
            BundleError::Truncated { .. }
                | BundleError::CutShort { .. }
                | BundleError::ContentsMismatch(_)
        ),
        "{err}"
    );

    let mut flipped = bytes.clone();
    let at = flipped
        .windows(LAYER.len())
        .position(|w| w == LAYER)
        .unwrap();
    flipped[at + 10] ^= 0x01;
    let damaged = tmp.path().join("flipped.tar");
    std::fs::write(&damaged, &flipped).unwrap();
    let err = refuse(&b, &damaged);
    let layer_digest = berth::oci::digest::Digest::of(berth::oci::digest::Algorithm::Sha256, LAYER);
    match &err {
        BundleError::DigestMismatch { path, expected, .. } => {
            assert_eq!(expected, &layer_digest);
            assert!(path.contains(&layer_digest.hex()), "{path}");
        }
        other => panic!("{other}"),
    }

    // Cut inside the layer: the entry holds fewer bytes than its header says.
    let mid = tmp.path().join("mid.tar");
    std::fs::write(&mid, &bytes[..at + 5]).unwrap();
    let err = refuse(&b, &mid);
    assert!(
        matches!(
            err,
            BundleError::Truncated { .. } | BundleError::CutShort { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&layer_digest.hex()), "{err}");

    let wrong_size = tmp.path().join("size.tar");
    edit_contents(&bundle, &wrong_size, |c| c.blobs[1].size += 1);
    let err = refuse(&b, &wrong_size);
    assert!(err.to_string().contains("lists"), "{err}");

    let extra = tmp.path().join("extra.tar");
    let ghost = berth::oci::digest::Digest::of(berth::oci::digest::Algorithm::Sha256, b"ghost");
    edit_contents(&bundle, &extra, |c| {
        c.blobs.push(berth::bundle::contents::BlobEntry {
            digest: ghost.clone(),
            size: 5,
            shipped: true,
            repository: "app".into(),
        })
    });
    let err = refuse(&b, &extra);
    assert!(err.to_string().contains(&ghost.hex()), "{err}");
    assert!(err.to_string().contains("not in the bundle"), "{err}");

    let unlisted = tmp.path().join("unlisted.tar");
    edit_contents(&bundle, &unlisted, |c| {
        c.blobs.retain(|b| b.digest != layer_digest)
    });
    let err = refuse(&b, &unlisted);
    assert!(err.to_string().contains("not listed"), "{err}");

    // The bundle itself is fine: it imports, and the older tag is still there.
    import(&b, &bundle, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    let tags = seen(&b).tags;
    assert_eq!(tags["app"].len(), 2, "{tags:?}");
}
