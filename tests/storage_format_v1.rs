//! Segments written by format version 1 (a checked-in fixture, with no index) stay readable:
//! replaying them rebuilds the blob, the manifest, its tag, the tag deletion and the open
//! upload session. A change that breaks this needs a new format version (storage-format.md §13).

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/storage-v1/segments"
);

/// A data directory holding a copy of the fixture's segments and no index.
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("segments")).unwrap();
    for f in std::fs::read_dir(FIXTURE).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join("segments").join(f.file_name())).unwrap();
    }
    dir
}

#[test]
fn version_1_segments_replay_into_a_fresh_index() {
    let dir = fixture_copy();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();

    let layer = b"hello berth, format one";
    let d = Digest::of(Algorithm::Sha256, layer);
    let blob = s.get(&d).unwrap().unwrap();
    assert_eq!(blob.read_all().unwrap().to_vec(), layer);
    assert_eq!(blob.extent_count(), 3, "written as 8-byte chunk records");
    assert!(s.repo_has_blob("fixture/app", &d).unwrap());

    let body = br#"{"schemaVersion":2,"fixture":true}"#;
    let m = s
        .get_manifest("fixture/app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(&m.body[..], body);
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        s.list_tags("fixture/app", None, 10).unwrap().unwrap(),
        vec!["v1"]
    );

    let open: UploadId = "3693a57d873ab82f5bb62ee4a646a9a2".parse().unwrap();
    assert_eq!(s.status(&open).unwrap().offset, 16);
    s.append(&open, 16, b"!").unwrap();
    s.commit(&open, &Digest::of(Algorithm::Sha256, b"0123456789abcdef!"))
        .unwrap();

    assert!(s.verify().unwrap().is_clean());
}

/// A version 1 store opens, collects and compacts: its only segment is rewritten into the
/// version 2 compaction stream and deleted, and a rebuild from the base that replaced its ops
/// reaches the same index.
#[test]
fn version_1_segments_are_collected_and_compacted() {
    let dir = fixture_copy();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let open: UploadId = "3693a57d873ab82f5bb62ee4a646a9a2".parse().unwrap();
    // The open session's chunks keep their segment from being compacted: finish it first.
    s.abort(&open).unwrap();
    let report = s
        .gc(
            &GcOptions {
                compact_threshold: 1.0,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(report.segments_compacted >= 1, "{report:?}");
    assert!(!dir.path().join("segments/0000000000000001.seg").exists());

    let layer = b"hello berth, format one";
    let d = Digest::of(Algorithm::Sha256, layer);
    assert_eq!(
        s.get(&d).unwrap().unwrap().read_all().unwrap().to_vec(),
        layer
    );
    let m = s
        .get_manifest("fixture/app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(&m.body[..], br#"{"schemaVersion":2,"fixture":true}"#);
    assert!(s.verify().unwrap().is_clean());

    s.checkpoint().unwrap();
    let before = s.dump_index().unwrap();
    drop(s);
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.dump_index().unwrap(), before);
    assert_eq!(
        s.get(&d).unwrap().unwrap().read_all().unwrap().to_vec(),
        layer
    );
}
