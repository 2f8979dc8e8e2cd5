//! Garbage collection decides liveness from the roots: tagged manifests, manifests without a
//! subject, an index's children and referrers of live subjects. What nothing reaches leaves
//! the index, compaction rewrites and deletes emptied segments, every reachable blob still
//! reads back, and the index equals a rebuild from the log (and base) afterwards.

mod storage_support;

use std::collections::BTreeMap;
use std::time::Duration;

use berth::oci::digest::Digest;
use berth::storage::*;
use storage_support::{blob_bytes, sha};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

fn no_progress() -> impl FnMut(GcProgress) {
    |_| {}
}

/// Pushes `layers` distinct blobs and a manifest naming them; returns (manifest, layers).
fn push_image(store: &Store, repo: &str, seed: u32, layers: usize, tags: &[&str]) -> Image {
    let mut blobs = Vec::new();
    for l in 0..layers {
        let data: Vec<u8> = (0..3000 + (seed as usize * 7 + l * 1013) % 9000)
            .map(|i| (i as u32 ^ seed.wrapping_mul(2654435761) ^ l as u32) as u8)
            .collect();
        store.put_blob(repo, &sha(&data), &data).unwrap();
        blobs.push(data);
    }
    let refs: Vec<Digest> = blobs.iter().map(|b| sha(b)).collect();
    let body = format!("{{\"image\":{seed},\"layers\":{refs:?}}}").into_bytes();
    let digest = sha(&body);
    put_manifest(store, repo, &body, MANIFEST, refs, None, tags);
    Image {
        repo: repo.to_string(),
        manifest: digest,
        blobs,
    }
}

fn put_manifest(
    store: &Store,
    repo: &str,
    body: &[u8],
    media_type: &str,
    references: Vec<Digest>,
    subject: Option<Digest>,
    tags: &[&str],
) -> Digest {
    let digest = sha(body);
    store
        .put_manifest(
            repo,
            &ManifestPut {
                digest: digest.clone(),
                media_type: media_type.into(),
                body: body.to_vec(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                references,
                subject,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
        )
        .unwrap();
    digest
}

struct Image {
    repo: String,
    manifest: Digest,
    blobs: Vec<Vec<u8>>,
}

fn assert_pulls(store: &Store, img: &Image) {
    let m = store
        .get_manifest(&img.repo, &Reference::Digest(img.manifest.clone()))
        .unwrap()
        .unwrap_or_else(|| panic!("manifest {} gone", img.manifest));
    assert_eq!(sha(&m.body), img.manifest);
    for b in &img.blobs {
        assert!(store.repo_has_blob(&img.repo, &sha(b)).unwrap());
        assert!(blob_bytes(store, &sha(b)) == *b);
    }
}

fn assert_gone(store: &Store, img: &Image) {
    assert!(store
        .get_manifest(&img.repo, &Reference::Digest(img.manifest.clone()))
        .unwrap()
        .is_none());
    for b in &img.blobs {
        assert!(store.get(&sha(b)).unwrap().is_none(), "{} kept", sha(b));
    }
}

/// The index a rebuild from the segments (and base) reaches equals the live one.
fn assert_rebuild_matches(disk: &std::sync::Arc<memdisk::MemDisk>, store: Store) {
    store.checkpoint().unwrap();
    let before = store.dump_index().unwrap();
    drop(store);
    disk.remove_index();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let after = store.dump_index().unwrap();
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "index rows differ after a rebuild");
    }
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn unreferenced_blobs_and_dead_referrers_go_reachable_ones_stay() {
    let disk = memdisk::MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let kept = push_image(&store, "app", 1, 3, &["v1"]);
    let untagged = push_image(&store, "app", 2, 2, &[]);
    let deleted = push_image(&store, "app", 3, 2, &["v3"]);
    // A signature of the image that will be deleted, and one of the kept image.
    let sig_dead = put_manifest(
        &store,
        "app",
        b"{\"sig\":3}",
        MANIFEST,
        vec![],
        Some(deleted.manifest.clone()),
        &[],
    );
    let sig_live = put_manifest(
        &store,
        "app",
        b"{\"sig\":1}",
        MANIFEST,
        vec![],
        Some(kept.manifest.clone()),
        &[],
    );
    // A blob pushed and never referenced, and one shared by a deleted and a kept image.
    let stray = b"stray layer".to_vec();
    store.put_blob("app", &sha(&stray), &stray).unwrap();
    store
        .put_blob("other", &sha(&kept.blobs[0]), &kept.blobs[0])
        .unwrap();
    assert!(store.delete_manifest("app", &deleted.manifest).unwrap());

    let report = store.gc(&GcOptions::default(), &mut no_progress()).unwrap();
    assert_pulls(&store, &kept);
    assert_pulls(&store, &untagged);
    assert_gone(&store, &deleted);
    assert!(store.get(&sha(&stray)).unwrap().is_none());
    assert_eq!(
        report.manifests_deleted,
        vec![("app".to_string(), sig_dead.clone())]
    );
    assert!(store
        .referrers("app", &kept.manifest)
        .unwrap()
        .iter()
        .any(|r| r.digest == sig_live));
    assert!(store
        .referrers("app", &deleted.manifest)
        .unwrap()
        .is_empty());
    // "other" only had a stray link to a blob "app" still uses: the link goes, the blob stays.
    assert!(!store.repo_has_blob("other", &sha(&kept.blobs[0])).unwrap());
    assert!(!store
        .list_repositories(None, 100)
        .unwrap()
        .contains(&"other".to_string()));
    // The deleted image's two layers and manifest body, the stray blob, the dead signature.
    assert_eq!(report.blobs_removed, 5, "{report:?}");
    assert!(report.bytes_swept > 0);

    // Nothing left to do the second time.
    let again = store.gc(&GcOptions::default(), &mut no_progress()).unwrap();
    assert_eq!((again.blobs_removed, again.links_removed), (0, 0));
    assert!(again.manifests_deleted.is_empty());
    assert_rebuild_matches(&disk, store);
}

#[test]
fn an_index_keeps_its_children_and_a_dry_run_changes_nothing() {
    let disk = memdisk::MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let amd = push_image(&store, "multi", 10, 2, &[]);
    let arm = push_image(&store, "multi", 11, 2, &[]);
    let body = format!(
        "{{\"manifests\":[\"{}\",\"{}\"]}}",
        amd.manifest, arm.manifest
    );
    put_manifest(
        &store,
        "multi",
        body.as_bytes(),
        INDEX,
        vec![amd.manifest.clone(), arm.manifest.clone()],
        None,
        &["latest"],
    );
    let old = push_image(&store, "multi", 12, 1, &[]);
    let rule = RetentionRule {
        repositories: "multi".into(),
        delete_untagged_after: Some(Duration::ZERO),
        ..Default::default()
    };
    let opts = GcOptions {
        retention: vec![rule],
        ..Default::default()
    };
    std::thread::sleep(Duration::from_millis(5));
    let before = store.dump_index().unwrap();
    let dry = store
        .gc(
            &GcOptions {
                dry_run: true,
                ..opts.clone()
            },
            &mut no_progress(),
        )
        .unwrap();
    assert_eq!(
        store.dump_index().unwrap(),
        before,
        "a dry run changed the index"
    );
    assert_eq!(
        dry.manifests_deleted,
        vec![("multi".to_string(), old.manifest.clone())]
    );
    assert_eq!(
        dry.blobs_removed, 2,
        "the old image's layer and its manifest body"
    );

    let real = store.gc(&opts, &mut no_progress()).unwrap();
    assert_eq!(real.manifests_deleted, dry.manifests_deleted);
    assert_eq!(real.blobs_removed, dry.blobs_removed);
    assert_pulls(&store, &amd);
    assert_pulls(&store, &arm);
    assert_gone(&store, &old);
    assert_rebuild_matches(&disk, store);
}

#[test]
fn keep_newest_tags_spares_protected_ones() {
    let disk = memdisk::MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let mut images = Vec::new();
    for (i, tag) in ["stable", "b1", "b2", "b3", "b4"].iter().enumerate() {
        images.push(push_image(&store, "ci", 20 + i as u32, 1, &[tag]));
        std::thread::sleep(Duration::from_millis(3));
    }
    let rule = RetentionRule {
        repositories: "c*".into(),
        keep_newest_tags: Some(2),
        protect_tags: vec!["stable".into()],
        delete_untagged_after: Some(Duration::ZERO),
    };
    std::thread::sleep(Duration::from_millis(5));
    let report = store
        .gc(
            &GcOptions {
                retention: vec![rule],
                ..Default::default()
            },
            &mut no_progress(),
        )
        .unwrap();
    let mut gone: Vec<&str> = report.tags_deleted.iter().map(|t| t.1.as_str()).collect();
    gone.sort();
    assert_eq!(gone, vec!["b1", "b2"]);
    assert_eq!(
        store.list_tags("ci", None, 10).unwrap().unwrap(),
        vec!["b3", "b4", "stable"]
    );
    assert_pulls(&store, &images[0]);
    assert_gone(&store, &images[1]);
    assert_gone(&store, &images[2]);
    assert_pulls(&store, &images[4]);
}

#[test]
fn compaction_moves_live_chunks_and_deletes_emptied_segments() {
    let disk = memdisk::MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let images: Vec<Image> = (0..24)
        .map(|i| push_image(&store, "big", 100 + i, 3, &[&format!("t{i}")]))
        .collect();
    for img in images.iter().step_by(3) {
        store.delete_manifest("big", &img.manifest).unwrap();
    }
    let segments_before = disk.segments().list().unwrap().len();
    // A reader that looked its blob up before the compaction still reads it afterwards.
    let early = store.get(&sha(&images[1].blobs[0])).unwrap().unwrap();
    let report = store
        .gc(
            &GcOptions {
                compact_threshold: 0.9,
                ..Default::default()
            },
            &mut no_progress(),
        )
        .unwrap();
    assert!(report.segments_compacted > 0, "{report:?}");
    assert!(report.bytes_relocated > 0);
    assert!(early.read_all().unwrap() == images[1].blobs[0]);
    drop(early);
    let space = store.space();
    assert!(space.segments.len() < segments_before + 2, "{space:?}");
    for (i, img) in images.iter().enumerate() {
        if i % 3 == 0 {
            assert_gone(&store, img);
        } else {
            assert_pulls(&store, img);
        }
    }
    assert!(store.verify().unwrap().is_clean());
    // Pushes go on, and a second compaction of everything works too.
    let late = push_image(&store, "big", 999, 2, &["late"]);
    store
        .gc(
            &GcOptions {
                compact_threshold: 1.0,
                ..Default::default()
            },
            &mut no_progress(),
        )
        .unwrap();
    assert_pulls(&store, &late);
    assert_rebuild_matches(&disk, store);
}

/// Everything a small registry holds sits in the active segment, which only a roll seals: a
/// collection seals it when it is mostly dead (and big enough to be worth it), so it shrinks.
#[test]
fn a_mostly_dead_active_segment_is_sealed_and_compacted() {
    let disk = memdisk::MemDisk::new();
    let opts = StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 1 << 20,
        ..Default::default()
    };
    let store = Store::open_with(disk.segments(), disk.index(), opts).unwrap();
    let images: Vec<Image> = (0..30)
        .map(|i| push_image(&store, "small", 500 + i, 2, &[&format!("t{i}")]))
        .collect();
    assert_eq!(store.space().segments.len(), 1, "all in the active segment");
    for img in &images[1..] {
        store.delete_manifest("small", &img.manifest).unwrap();
    }
    let before = store.space().segments.iter().map(|s| s.size).sum::<u64>();
    let report = store.gc(&GcOptions::default(), &mut no_progress()).unwrap();
    assert!(report.segments_compacted >= 1, "{report:?}");
    let after = store.space().segments.iter().map(|s| s.size).sum::<u64>();
    assert!(after * 4 < before, "{before} -> {after} bytes");
    assert_pulls(&store, &images[0]);
    assert!(store.verify().unwrap().is_clean());
}
