//! The public storage API end to end on a real directory: uploads, dedup, manifests, tags,
//! referrers, reopen.

mod storage_support;

use std::collections::BTreeMap;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::*;
use storage_support::{blob_bytes, sha};

fn small_opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 1000,
        max_segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn chunked_upload_commits_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let data = bytes(10_500, 1);
    let id = s.begin_upload("lib/a").unwrap();
    let mut off = 0u64;
    for part in data.chunks(777) {
        off = s.append(&id, off, part).unwrap();
    }
    assert_eq!(s.status(&id).unwrap().offset, data.len() as u64);
    assert!(
        matches!(s.append(&id, 5, b"x"), Err(StorageError::UploadOffset { expected }) if expected == 10_500)
    );
    let info = s.commit(&id, &sha(&data)).unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(matches!(s.status(&id), Err(StorageError::UploadUnknown)));
    let got = s.get(&sha(&data)).unwrap().unwrap();
    assert_eq!(got.read_all().unwrap().to_vec(), data);
    assert!(got.extent_count() > 1);
    let mid: Vec<u8> = got
        .range(990, 2010)
        .flat_map(|b| b.unwrap().to_vec())
        .collect();
    assert_eq!(mid, &data[990..2010]);
    assert!(s.repo_has_blob("lib/a", &sha(&data)).unwrap());
    assert!(!s.repo_has_blob("lib/b", &sha(&data)).unwrap());
    assert!(s.verify().unwrap().is_clean());
}

/// Request bodies can arrive in tiny frames (chunked encoding, HTTP/2): a record made of
/// thousands of owned pieces is still written whole (more pieces than one `pwritev` takes).
#[test]
fn owned_appends_of_tiny_pieces_make_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let data = bytes(3 << 20, 5);
    let id = s.begin_upload("lib/tiny").unwrap();
    let mut off = 0u64;
    for (n, batch) in data.chunks(64 << 10).enumerate() {
        // Alternate tiny and mid-sized pieces within each batch.
        let size = if n % 2 == 0 { 7 } else { 20_000 };
        let pieces = batch.chunks(size).map(bytes::Bytes::copy_from_slice);
        off = s.append_owned(&id, off, pieces).unwrap();
    }
    let info = s.commit(&id, &sha(&data)).unwrap();
    assert_eq!(info.size, data.len() as u64);
    let got = s.get(&sha(&data)).unwrap().unwrap();
    assert_eq!(got.read_all().unwrap().to_vec(), data);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn digest_mismatch_kills_the_session_and_marks_bytes_dead() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let id = s.begin_upload("r").unwrap();
    s.append_at_end(&id, &bytes(3000, 2)).unwrap();
    let err = s.commit(&id, &sha(b"other")).unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }));
    assert!(matches!(s.status(&id), Err(StorageError::UploadUnknown)));
    assert_eq!(s.space().dead_bytes, 3000);
    assert_eq!(s.space().live_bytes, 0);
}

#[test]
fn second_push_of_known_digest_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let data = bytes(2500, 3);
    s.put_blob("a", &sha(&data), &data).unwrap();
    let id = s.begin_upload("b").unwrap();
    s.append(&id, 0, &data).unwrap();
    s.commit(&id, &sha(&data)).unwrap();
    let sp = s.space();
    assert_eq!(sp.live_bytes, 2500);
    assert_eq!(sp.dead_bytes, 2500);
    assert!(s.repo_has_blob("b", &sha(&data)).unwrap());
    // A monolithic push of a known blob writes no new blob bytes (only the logged link).
    s.put_blob("c", &sha(&data), &data).unwrap();
    assert_eq!(
        (s.space().live_bytes, s.space().dead_bytes),
        (sp.live_bytes, sp.dead_bytes)
    );
    assert!(s.repo_has_blob("c", &sha(&data)).unwrap());
}

#[test]
fn mount_unlink_and_unknown_blob() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let data = b"layer".to_vec();
    s.put_blob("a", &sha(&data), &data).unwrap();
    assert!(s.link_blob("b", &sha(&data)).unwrap());
    assert!(!s.link_blob("b", &sha(b"nope")).unwrap());
    assert!(s.unlink_blob("b", &sha(&data)).unwrap());
    assert!(!s.unlink_blob("b", &sha(&data)).unwrap());
    assert!(s.stat(&sha(&data)).unwrap().is_some());
    assert!(s.get(&sha(b"nope")).unwrap().is_none());
    assert!(matches!(
        s.put_blob("a", &sha(b"x"), b"y"),
        Err(StorageError::DigestMismatch { .. })
    ));
}

#[test]
fn empty_and_sha512_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let id = s.begin_upload("r").unwrap();
    let info = s.commit(&id, &sha(b"")).unwrap();
    assert_eq!(info.size, 0);
    assert_eq!(blob_bytes(&s, &sha(b"")), b"");
    let data = bytes(4321, 9);
    let d512 = Digest::of(Algorithm::Sha512, &data);
    let id = s.begin_upload("r").unwrap();
    s.append(&id, 0, &data).unwrap();
    s.commit(&id, &d512).unwrap();
    assert_eq!(blob_bytes(&s, &d512), data);
}

fn manifest(body: &[u8], refs: Vec<Digest>, tags: &[&str], subject: Option<Digest>) -> ManifestPut {
    ManifestPut {
        digest: sha(body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: body.to_vec(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        references: refs,
        subject,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

#[test]
fn manifests_tags_and_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let layer = b"layer bytes".to_vec();
    let m = manifest(b"{\"m\":1}", vec![sha(&layer)], &["v1", "latest"], None);
    assert!(
        matches!(s.put_manifest("app", &m), Err(StorageError::ManifestBlobUnknown(d)) if d == sha(&layer))
    );
    assert_eq!(s.list_tags("app", None, 10).unwrap(), None);
    s.put_blob("app", &sha(&layer), &layer).unwrap();
    s.put_manifest("app", &m).unwrap();
    let got = s
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(&got.body[..], b"{\"m\":1}");
    assert_eq!(got.digest, m.digest);
    assert!(s
        .get_manifest("other", &Reference::Digest(m.digest.clone()))
        .unwrap()
        .is_none());
    assert_eq!(
        s.list_tags("app", None, 10).unwrap().unwrap(),
        vec!["latest", "v1"]
    );
    assert_eq!(
        s.list_tags("app", Some("latest"), 10).unwrap().unwrap(),
        vec!["v1"]
    );
    assert_eq!(
        s.list_tags("app", None, 1).unwrap().unwrap(),
        vec!["latest"]
    );

    let mut sig = manifest(b"{\"sig\":1}", vec![], &[], Some(m.digest.clone()));
    sig.artifact_type = Some("application/example".into());
    s.put_manifest("app", &sig).unwrap();
    let refs = s.referrers("app", &m.digest).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sig.digest);
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/example")
    );

    assert!(s.delete_tag("app", "latest").unwrap());
    assert!(!s.delete_tag("app", "latest").unwrap());
    assert!(s.delete_manifest("app", &sig.digest).unwrap());
    assert!(s.referrers("app", &m.digest).unwrap().is_empty());
    assert!(s.delete_manifest("app", &m.digest).unwrap());
    assert!(!s.delete_manifest("app", &m.digest).unwrap());
    assert_eq!(
        s.list_tags("app", None, 10).unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert!(s
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .is_none());

    s.put_blob("zeta", &sha(b"z"), b"z").unwrap();
    assert_eq!(s.list_repositories(None, 10).unwrap(), vec!["app", "zeta"]);
    assert_eq!(s.list_repositories(Some("app"), 10).unwrap(), vec!["zeta"]);
    assert!(s.repository_exists("zeta").unwrap());
    assert!(!s.repository_exists("nope").unwrap());
}

#[test]
fn sessions_and_blobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(5000, 4);
    let (id, blob) = {
        let s = Store::open(dir.path(), small_opts()).unwrap();
        assert!(matches!(
            Store::open(dir.path(), small_opts()),
            Err(StorageError::Locked)
        ));
        let blob = bytes(3333, 5);
        s.put_blob("r", &sha(&blob), &blob).unwrap();
        let id = s.begin_upload("r").unwrap();
        s.append(&id, 0, &data[..2500]).unwrap();
        s.close().unwrap();
        assert!(matches!(s.stat(&sha(&blob)), Err(StorageError::Closed)));
        (id, blob)
    };
    let s = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(blob_bytes(&s, &sha(&blob)), blob);
    assert_eq!(s.open_uploads(), 1);
    let st = s.status(&id).unwrap();
    assert_eq!((st.repo.as_str(), st.offset), ("r", 2500));
    s.append(&id, 2500, &data[2500..]).unwrap();
    s.commit(&id, &sha(&data)).unwrap();
    assert_eq!(blob_bytes(&s, &sha(&data)), data);
}

#[test]
fn too_many_uploads_and_idle_reclaim() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_open_uploads: 2,
        upload_max_idle: std::time::Duration::ZERO,
        ..small_opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let a = s.begin_upload("r").unwrap();
    s.append(&a, 0, b"abc").unwrap();
    s.begin_upload("r").unwrap();
    assert!(matches!(
        s.begin_upload("r"),
        Err(StorageError::TooManyUploads)
    ));
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(s.reclaim_idle_uploads().unwrap(), 2);
    assert_eq!(s.open_uploads(), 0);
    assert!(matches!(s.status(&a), Err(StorageError::UploadUnknown)));
    s.begin_upload("r").unwrap();
}

#[test]
fn abort_forgets_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let id = s.begin_upload("r").unwrap();
    s.append(&id, 0, &bytes(2000, 1)).unwrap();
    s.abort(&id).unwrap();
    assert!(matches!(s.abort(&id), Err(StorageError::UploadUnknown)));
    assert!(matches!(
        s.append(&id, 2000, b"x"),
        Err(StorageError::UploadUnknown)
    ));
    assert_eq!(s.space().dead_bytes, 2000);
}

#[test]
fn segments_roll_and_space_is_accounted_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), small_opts()).unwrap();
    for i in 0..40u8 {
        let b = bytes(4000, i);
        s.put_blob("r", &sha(&b), &b).unwrap();
    }
    let sp = s.space();
    assert!(sp.segments.len() > 1);
    assert_eq!(sp.live_bytes, 160_000);
    for seg in &sp.segments {
        assert!(seg.size <= 64 * 1024 + 2000);
        assert!(seg.live_ratio() <= 1.0);
    }
    drop(s);
    let s = Store::open(dir.path(), small_opts()).unwrap();
    assert_eq!(s.space().live_bytes, 160_000);
    for i in 0..40u8 {
        let b = bytes(4000, i);
        assert_eq!(blob_bytes(&s, &sha(&b)), b);
    }
}

#[test]
fn a_cached_manifest_is_stored_before_its_references_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let layer = b"layer bytes fetched later".to_vec();
    let m = manifest(b"{\"cached\":1}", vec![sha(&layer)], &["v1"], None);
    {
        let s = Store::open(dir.path(), small_opts()).unwrap();
        // The ordinary push path still insists on the references.
        assert!(matches!(
            s.put_manifest("docker.io/library/app", &m),
            Err(StorageError::ManifestBlobUnknown(_))
        ));
        s.put_cached_manifest("docker.io/library/app", &m).unwrap();
        let got = s
            .get_manifest("docker.io/library/app", &Reference::Tag("v1".into()))
            .unwrap()
            .unwrap();
        assert_eq!(got.digest, m.digest);
        assert!(!s
            .repo_has_blob("docker.io/library/app", &sha(&layer))
            .unwrap());
        let id = s.begin_upload("docker.io/library/app").unwrap();
        s.append(&id, 0, &layer).unwrap();
        s.commit(&id, &sha(&layer)).unwrap();
        s.close().unwrap();
    }
    // Read back after a reopen.
    let s = Store::open(dir.path(), small_opts()).unwrap();
    let got = s
        .get_manifest(
            "docker.io/library/app",
            &Reference::Digest(m.digest.clone()),
        )
        .unwrap()
        .unwrap();
    assert_eq!(&got.body[..], &m.body[..]);
    assert_eq!(blob_bytes(&s, &sha(&layer)), layer);
}
