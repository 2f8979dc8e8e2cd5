//! Power cuts while collections sweep and compact: the store reopened from the disk image as of
//! every sync point (later unsynced writes dropped or torn at random) still serves every image
//! that was acknowledged and never deleted, byte for byte; the scrub is clean; and the index
//! equals a rebuild from the segments and base alone.

mod storage_support;

use std::sync::Arc;

use berth::oci::digest::Digest;
use berth::storage::memdisk::{MemDisk, SplitMix};
use berth::storage::*;
use storage_support::{blob_bytes, sha};

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 512,
        max_segment_bytes: 6 * 1024,
        ..Default::default()
    }
}

struct Image {
    manifest: Digest,
    tag: String,
    layers: Vec<Vec<u8>>,
    /// Op count when its manifest PUT returned.
    acked: usize,
    /// Op count when its deletion started, if it was deleted.
    deleted: Option<usize>,
}

struct Run {
    disk: Arc<MemDisk>,
    images: Vec<Image>,
    collections: usize,
}

fn push(store: &Store, disk: &MemDisk, rng: &mut SplitMix, n: usize) -> Image {
    let mut layers = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let len = 100 + rng.below(1500) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if rng.below(2) == 0 {
            store.put_blob("gc/app", &sha(&data), &data).unwrap();
        } else {
            let id = store.begin_upload("gc/app").unwrap();
            let mut off = 0;
            for part in data.chunks(1 + rng.below(700) as usize) {
                off = store.append(&id, off, part).unwrap();
            }
            store.commit(&id, &sha(&data)).unwrap();
        }
        layers.push(data);
    }
    let refs: Vec<Digest> = layers.iter().map(|l| sha(l)).collect();
    let body = format!("{{\"n\":{n},\"layers\":{refs:?}}}").into_bytes();
    let tag = format!("t{n}");
    store
        .put_manifest(
            "gc/app",
            &ManifestPut {
                digest: sha(&body),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                body: body.clone(),
                tags: vec![tag.clone()],
                references: refs,
                subject: None,
                artifact_type: None,
                annotations: Default::default(),
            },
        )
        .unwrap();
    Image {
        manifest: sha(&body),
        tag,
        layers,
        acked: disk.op_count(),
        deleted: None,
    }
}

fn workload(seed: u64) -> Run {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let mut rng = SplitMix(seed);
    let mut images = Vec::new();
    let mut collections = 0;
    for round in 0..6 {
        for _ in 0..5 {
            let n = images.len();
            images.push(push(&store, &disk, &mut rng, n));
        }
        // Delete about half of what is alive, then collect and compact everything sparse.
        for img in images.iter_mut().filter(|i| i.deleted.is_none()) {
            if rng.below(2) == 0 {
                img.deleted = Some(disk.op_count());
                store.delete_manifest("gc/app", &img.manifest).unwrap();
            }
        }
        let threshold = if round % 2 == 0 { 0.6 } else { 1.0 };
        let report = store
            .gc(
                &GcOptions {
                    compact_threshold: threshold,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap();
        collections += usize::from(report.segments_compacted > 0);
    }
    drop(store);
    Run {
        disk,
        images,
        collections,
    }
}

fn check(run: &Run, point: usize, seed: u64) {
    let img = run.disk.power_cut_image(point, seed);
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("reopen at op {point} seed {seed}: {e}"));
    for i in &run.images {
        if i.acked > point || i.deleted.is_some_and(|d| d <= point) {
            continue;
        }
        let m = store
            .get_manifest("gc/app", &Reference::Tag(i.tag.clone()))
            .unwrap()
            .unwrap_or_else(|| panic!("tag {} lost at op {point}", i.tag));
        assert_eq!(m.digest, i.manifest);
        for l in &i.layers {
            assert!(
                blob_bytes(&store, &sha(l)) == *l,
                "layer lost at op {point}"
            );
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "verify at op {point}: {report:?}");
    // A second life: keep writing, then the index must equal a rebuild.
    let extra = format!("after the cut at {point}").into_bytes();
    store.put_blob("gc/after", &sha(&extra), &extra).unwrap();
    store.checkpoint().unwrap();
    let before = store.dump_index().unwrap();
    drop(store);
    img.remove_index();
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("rebuild at op {point}: {e}"));
    assert!(
        store.dump_index().unwrap() == before,
        "rebuilt index differs at op {point}"
    );
    assert!(blob_bytes(&store, &sha(&extra)) == extra);
}

#[test]
fn power_cuts_during_collection_and_compaction_lose_nothing_reachable() {
    let seed = std::env::var("BERTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (BERTH_TEST_SEED to replay)");
    let run = workload(seed);
    assert!(run.collections >= 3, "too few compactions to test anything");
    let points = run.disk.sync_points();
    let mut rng = SplitMix(seed ^ 0x9e37);
    // Every sync point is too many in debug; a random third of them, different each run.
    let mut checked = 0;
    for (i, &p) in points.iter().enumerate() {
        if rng.below(3) != 0 && i + 1 != points.len() {
            continue;
        }
        check(&run, p, seed.wrapping_add(i as u64));
        check(&run, p - 1, seed.wrapping_add(i as u64 + 7919));
        checked += 1;
    }
    eprintln!("{checked} of {} sync points checked", points.len());
}
