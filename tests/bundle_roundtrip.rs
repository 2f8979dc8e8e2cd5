//! A bundle carries tagged images, a multi-platform index and the referrers (signatures) of
//! what it holds from one data directory to another: everything the receiver's clients can
//! see is identical, byte for byte, under the same names, with no flags on the import.

mod bundle_support;

use std::collections::HashSet;

use berth::bundle::{import, ImportOptions};
use bundle_support::*;

#[test]
fn round_trip_between_two_data_dirs_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&tmp.path().join("a"));
    let app = put_image(
        &a,
        "docker.io/library/app",
        "1.0",
        &[b"layer one", b"layer two"],
    );
    put_image(
        &a,
        "docker.io/library/app",
        "2.0",
        &[b"layer one", b"layer three"],
    );
    put_referrer(&a, "docker.io/library/app", &app, b"signature of app 1.0");
    let multi = put_index(&a, "docker.io/library/multi", "latest");
    put_referrer(&a, "docker.io/library/multi", &multi, b"sbom");
    put_image(&a, "other/left-out", "v1", &[b"not exported"]);

    let bundle = tmp.path().join("bundle.tar");
    let contents = export_to(&a, &["docker.io/library/*"], &HashSet::new(), &bundle);
    assert_eq!(contents.refs.len(), 3, "{:?}", contents.refs);
    let paths = tar_paths(&bundle);
    assert_eq!(
        paths[0], "berth-bundle.json",
        "the contents manifest comes first"
    );
    assert_eq!(paths.last().map(String::as_str), Some("index.json"));
    let blob_files: Vec<&String> = paths.iter().filter(|p| p.starts_with("blobs/")).collect();
    let unique: HashSet<&&String> = blob_files.iter().collect();
    assert_eq!(unique.len(), blob_files.len(), "each blob once: {paths:?}");

    let b = open(&tmp.path().join("b"));
    let report = import(&b, &bundle, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.format, "berth bundle");
    assert_eq!(report.blobs_present, 0);

    let mut want = seen(&a);
    want.tags.remove("other/left-out");
    want.manifests
        .retain(|(repo, _), _| repo != "other/left-out");
    want.referrers
        .retain(|(repo, _), _| repo != "other/left-out");
    let got = seen(&b);
    assert_eq!(got.tags, want.tags);
    assert_eq!(got.manifests, want.manifests);
    assert_eq!(got.referrers, want.referrers);
    assert!(got.referrers.values().filter(|r| !r.is_empty()).count() == 2);
    for (d, bytes) in &got.blobs {
        assert_eq!(Some(bytes), want.blobs.get(d), "{d}");
    }
    assert!(!got.blobs.contains_key(&berth::oci::digest::Digest::of(
        berth::oci::digest::Algorithm::Sha256,
        b"not exported"
    )));
    // Nothing is left under the staging repository.
    let repos = berth::bundle::origin::Origin::repositories(&b).unwrap();
    assert!(repos.iter().all(|r| !r.starts_with('_')), "{repos:?}");

    // Importing again writes nothing new and changes nothing.
    let again = import(&b, &bundle, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(again.blobs_written, 0);
    assert_eq!(seen(&b), got);
}

#[test]
fn digest_references_import_untagged_and_blobs_shared_across_repositories_go_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&tmp.path().join("a"));
    let shared: &[u8] = b"a base layer both repositories use";
    let one = put_image(&a, "team/one", "v1", &[shared]);
    put_image(&a, "team/two", "v1", &[shared, b"two's own layer"]);
    let bundle = tmp.path().join("bundle.tar");
    let refs = [format!("team/one@{one}"), "team/two:v1".to_owned()];
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let contents = export_to(&a, &refs, &HashSet::new(), &bundle);
    let shared_digest =
        berth::oci::digest::Digest::of(berth::oci::digest::Algorithm::Sha256, shared);
    let files = tar_paths(&bundle);
    let shared_files = files
        .iter()
        .filter(|p| p.ends_with(&shared_digest.hex()))
        .count();
    assert_eq!(shared_files, 1, "{files:?}");
    assert!(contents.refs.contains_key(&format!("team/one@{one}")));

    let b = open(&tmp.path().join("b"));
    import(&b, &bundle, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    let got = b
        .get_manifest("team/one", &berth::storage::Reference::Digest(one.clone()))
        .unwrap();
    assert!(got.is_some(), "team/one@{one} imported");
    assert_eq!(b.list_tags("team/one", None, 10).unwrap(), Some(vec![]));
    assert_eq!(
        b.list_tags("team/two", None, 10).unwrap(),
        Some(vec!["v1".to_owned()])
    );
    assert!(b.repo_has_blob("team/one", &shared_digest).unwrap());
    assert!(b.repo_has_blob("team/two", &shared_digest).unwrap());
}
