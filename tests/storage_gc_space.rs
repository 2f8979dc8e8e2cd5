//! Space on a real directory: 40 images of three distinct 64–256 KiB layers in 1 MiB segments,
//! half of them deleted, then one `gc`. The data directory (every file under it: segments,
//! base files, index.redb, LOCK) must come down to within 10 % of the live payload plus the
//! fixed overhead, measured rather than assumed: the size of an empty store's directory, what
//! index.redb grew by since, and the base files. What is left reads back byte for byte, and a
//! second `gc` finds nothing to do and changes nothing.
//!
//! Compaction runs with `compact_threshold: 0.9`: at the default 0.5 a segment may keep up to
//! half of itself dead by design, and deleting every other image leaves most 1 MiB segments
//! near half dead, so the default would (correctly) leave more than 10 % behind.

mod storage_support;

use std::collections::BTreeMap;
use std::path::Path;

use berth::oci::digest::Digest;
use berth::storage::memdisk::SplitMix;
use berth::storage::record::{rec, seg};
use berth::storage::*;
use storage_support::sha;

const IMAGES: usize = 40;
const LAYERS: usize = 3;

fn opts() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 1 << 20,
        ..Default::default()
    }
}

/// Every file under `dir` (recursively): (relative path, size).
fn files(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn total(files: &BTreeMap<String, u64>) -> u64 {
    files.values().sum()
}

fn sum_where(files: &BTreeMap<String, u64>, pred: impl Fn(&str) -> bool) -> u64 {
    files
        .iter()
        .filter(|(name, _)| pred(name))
        .map(|(_, n)| n)
        .sum()
}

fn mib(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / (1 << 20) as f64)
}

struct Image {
    repo: String,
    manifest: Digest,
    body: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

#[test]
fn gc_shrinks_the_data_dir_to_the_live_bytes() {
    // The fixed overhead: an empty store's directory.
    let empty_dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(empty_dir.path(), opts()).unwrap();
        store.close().unwrap();
    }
    let empty = files(empty_dir.path());
    let empty_index = empty.get("index.redb").copied().unwrap_or(0);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let mut rng = SplitMix(0x5ace);
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let repo = format!("space/r{}", i % 4);
        let layers: Vec<Vec<u8>> = (0..LAYERS)
            .map(|_| {
                let len = (64 << 10) + rng.below(192 << 10) as usize;
                let mut v: Vec<u8> = (0..len.div_ceil(8))
                    .flat_map(|_| rng.next_u64().to_le_bytes())
                    .collect();
                v.truncate(len);
                v
            })
            .collect();
        for l in &layers {
            store.put_blob(&repo, &sha(l), l).unwrap();
        }
        let digests: Vec<Digest> = layers.iter().map(|l| sha(l)).collect();
        let body = format!("{{\"image\":{i},\"layers\":{digests:?}}}").into_bytes();
        store
            .put_manifest(
                &repo,
                &ManifestPut {
                    digest: sha(&body),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    body: body.clone(),
                    tags: vec![format!("v{i}")],
                    references: digests,
                    subject: None,
                    artifact_type: None,
                    annotations: BTreeMap::new(),
                },
            )
            .unwrap();
        images.push(Image {
            repo,
            manifest: sha(&body),
            body,
            layers,
        });
    }
    // Every other image goes: tag and manifest.
    let mut kept = Vec::new();
    for (i, img) in images.into_iter().enumerate() {
        if i % 2 == 0 {
            assert!(store.delete_tag(&img.repo, &format!("v{i}")).unwrap());
            assert!(store.delete_manifest(&img.repo, &img.manifest).unwrap());
        } else {
            kept.push((i, img));
        }
    }
    let live: u64 = kept
        .iter()
        .map(|(_, img)| {
            img.body.len() as u64 + img.layers.iter().map(|l| l.len() as u64).sum::<u64>()
        })
        .sum();
    store.checkpoint().unwrap();
    let before = files(dir.path());

    let report = store
        .gc(
            &GcOptions {
                compact_threshold: 0.9,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    store.checkpoint().unwrap();
    let after = files(dir.path());
    let space = store.space();
    assert_eq!(
        space.live_bytes, live,
        "the store's live bytes are the kept images'"
    );
    assert_eq!(report.blobs_removed as usize, (IMAGES / 2) * (LAYERS + 1));
    assert!(report.segments_compacted > 0, "{report:?}");

    let index = after.get("index.redb").copied().unwrap_or(0);
    let bases = sum_where(&after, |n| n.contains(".seg.base-"));
    let segment_files = sum_where(&after, |n| n.ends_with(".seg"));
    let segments = after.keys().filter(|n| n.ends_with(".seg")).count() as u64;
    let overhead = total(&empty) + index.saturating_sub(empty_index) + bases;
    let records: u64 = kept
        .iter()
        .map(|(_, img)| 1 + img.layers.len() as u64)
        .sum();
    let framing = records * rec::OVERHEAD as u64 + segments * seg::LEN as u64;
    eprintln!("empty store: {empty:?}");
    eprintln!(
        "before gc: {} in {} files",
        mib(total(&before)),
        before.len()
    );
    eprintln!(
        "after gc:  {} in {} files: {} in {segments} segment files ({} of them live payload, \
         {} record and segment headers, {} dead, the rest op records), index.redb {}, base \
         files {}",
        mib(total(&after)),
        after.len(),
        mib(segment_files),
        mib(live),
        mib(framing),
        mib(space.dead_bytes),
        mib(index),
        mib(bases),
    );
    eprintln!(
        "fixed overhead: empty store {} + index growth {} + bases {} = {}; bound 1.10 × live + \
         overhead = {}; gc relocated {} and reclaimed {} in {} segments",
        mib(total(&empty)),
        mib(index.saturating_sub(empty_index)),
        mib(bases),
        mib(overhead),
        mib(live + live / 10 + overhead),
        mib(report.bytes_relocated),
        mib(report.bytes_reclaimed),
        report.segments_compacted,
    );
    assert!(
        total(&after) <= live + live / 10 + overhead,
        "data dir {} exceeds live {} + 10 % + overhead {}",
        total(&after),
        live,
        overhead
    );
    assert!(total(&after) < total(&before));
    // What compaction itself controls: segment files hold the live payload and next to
    // nothing else.
    assert!(
        segment_files <= live + live / 10,
        "segment files {segment_files} vs live payload {live}"
    );

    for (i, img) in &kept {
        let m = store
            .get_manifest(&img.repo, &Reference::Tag(format!("v{i}")))
            .unwrap()
            .unwrap();
        assert!(m.body == img.body);
        for l in &img.layers {
            let got = store.get(&sha(l)).unwrap().unwrap().read_all().unwrap();
            assert!(got == *l, "layer of image {i} differs after compaction");
        }
    }
    assert!(store.verify().unwrap().is_clean());

    // Nothing left to collect: the second run reports nothing and changes nothing.
    let index_rows = store.dump_index().unwrap();
    let segments_before = files(&dir.path().join("segments"));
    let again = store
        .gc(
            &GcOptions {
                compact_threshold: 0.9,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    let empty_report = GcReport {
        mark_time: again.mark_time,
        sweep_time: again.sweep_time,
        compact_time: again.compact_time,
        ..Default::default()
    };
    assert_eq!(again, empty_report, "a second run found work");
    assert!(store.dump_index().unwrap() == index_rows);
    assert_eq!(files(&dir.path().join("segments")), segments_before);
}
