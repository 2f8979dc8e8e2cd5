//! Losing index.redb: every index change is also an OP record in the segments, so replaying
//! the whole log brings back blobs, links, manifests, tags, deletions, space accounting and
//! open upload sessions (storage-format.md, "Rebuild").

mod storage_support;

use std::collections::BTreeMap;

use berth::storage::*;
use storage_support::{blob_bytes, sha};

#[test]
fn index_rebuilt_from_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        chunk_record_bytes: 1000,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    };
    let layers: Vec<Vec<u8>> = (0..12u8)
        .map(|i| vec![i; 1500 + i as usize * 300])
        .collect();
    let body = br#"{"schemaVersion":2}"#.to_vec();
    let space_before;
    let open_id;
    {
        let s = Store::open(dir.path(), opts()).unwrap();
        for (i, l) in layers.iter().enumerate() {
            let repo = if i % 2 == 0 { "even" } else { "odd" };
            let id = s.begin_upload(repo).unwrap();
            s.append(&id, 0, l).unwrap();
            s.commit(&id, &sha(l)).unwrap();
        }
        // Dead bytes: a duplicate, a mismatch and an abort.
        s.put_blob("odd", &sha(&layers[0]), &layers[0]).unwrap();
        let id = s.begin_upload("odd").unwrap();
        s.append(&id, 0, &layers[0]).unwrap();
        s.commit(&id, &sha(&layers[0])).unwrap();
        let id = s.begin_upload("odd").unwrap();
        s.append(&id, 0, b"junk").unwrap();
        assert!(s.commit(&id, &sha(b"not junk")).is_err());
        let id = s.begin_upload("odd").unwrap();
        s.append(&id, 0, b"more junk").unwrap();
        s.abort(&id).unwrap();
        s.put_manifest(
            "even",
            &ManifestPut {
                digest: sha(&body),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                body: body.clone(),
                tags: vec!["v1".into(), "gone-soon".into()],
                references: vec![sha(&layers[0])],
                subject: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
        )
        .unwrap();
        s.delete_tag("even", "gone-soon").unwrap();
        s.unlink_blob("odd", &sha(&layers[1])).unwrap();
        let open = s.begin_upload("even").unwrap();
        s.append(&open, 0, &[5u8; 2500]).unwrap();
        space_before = s.space();
        s.close().unwrap();
        open_id = open;
    }
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();

    let s = Store::open(dir.path(), opts()).unwrap();
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(&blob_bytes(&s, &sha(l)), l);
        let repo = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(s.repo_has_blob(repo, &sha(l)).unwrap(), i != 1);
    }
    assert_eq!(s.list_blobs(None, 100).unwrap().len(), layers.len() + 1);
    let m = s
        .get_manifest("even", &Reference::Digest(sha(&body)))
        .unwrap()
        .unwrap();
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    let by_tag = s
        .get_manifest("even", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(by_tag.digest, sha(&body));
    assert_eq!(s.list_tags("even", None, 10).unwrap().unwrap(), vec!["v1"]);
    assert_eq!(s.status(&open_id).unwrap().offset, 2500);
    let space_after = s.space();
    assert_eq!(space_after.live_bytes, space_before.live_bytes);
    assert_eq!(space_after.dead_bytes, space_before.dead_bytes);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn corrupted_index_is_set_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![7u8; 5000];
    {
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.put_blob("r", &sha(&data), &data).unwrap();
        s.close().unwrap();
    }
    let index = dir.path().join("index.redb");
    let len = std::fs::metadata(&index).unwrap().len() as usize;
    std::fs::write(&index, vec![0x5a; len]).unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(blob_bytes(&s, &sha(&data)), data);
    assert!(dir.path().join("index.redb.corrupt").exists());
}

/// Several sessions appending at once keep up to four records each in flight on the shared
/// writer threads; each session's records must still enter the log in blob order, or the
/// sessions rebuilt from the log alone would come back short or scrambled.
#[test]
fn concurrent_uploads_rebuild_from_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 256 * 1024,
        ..Default::default()
    };
    // 128 pieces of 3 KiB: 96 whole records, nothing left in the tail.
    let blob = |seed: u8| -> Vec<u8> {
        (0..128 * 3072u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    };
    let mut ids = Vec::new();
    {
        let s = Store::open(dir.path(), opts()).unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6u8)
                .map(|seed| {
                    let s = &s;
                    scope.spawn(move || {
                        let id = s.begin_upload("r").unwrap();
                        let data = bytes::Bytes::from(blob(seed));
                        let mut at = 0u64;
                        for start in (0..data.len()).step_by(3072) {
                            let piece = data.slice(start..start + 3072);
                            at = s.append_owned(&id, at, [piece]).unwrap();
                        }
                        (seed, id)
                    })
                })
                .collect();
            ids = handles.into_iter().map(|h| h.join().unwrap()).collect();
        });
        s.close().unwrap();
    }
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    for (seed, id) in ids {
        let data = blob(seed);
        assert_eq!(s.status(&id).unwrap().offset, data.len() as u64);
        s.commit(&id, &sha(&data)).unwrap();
        assert!(
            blob_bytes(&s, &sha(&data)) == data,
            "blob {seed} reads back as pushed"
        );
    }
    s.close().unwrap();
}
