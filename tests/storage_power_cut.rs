//! Power cuts: the store reopened from the disk image as of every sync point, and as of a
//! random moment before it (later unsynced writes dropped or torn at random, un-synced
//! directory entries lost or kept), has every blob whose commit had returned, serves nothing
//! wrong, keeps every acknowledged tag, manifest, tag deletion, link and unlink, and resumes
//! upload sessions from their durable offset.
//!
//! The workload checkpoints while the log holds records that are not synced yet (chunks of
//! sessions still being written), so an index made durable ahead of the log is caught. Every
//! image then gets a second life: more writes, a clean close and another reopen, after which
//! every listed blob must still hash to its digest (bytes recovery left behind must never come
//! back under a later scan).
//!
//! Seeds come from the clock; a failing run prints `BERTH_TEST_SEED=…`, which replays the same
//! workload and the same images (writer threads may still interleave differently).

mod storage_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::{MemDisk, SplitMix};
use berth::storage::*;
use storage_support::{assert_listed_blobs_hash_to_their_digests, blob_bytes, test_seed};

const CAP: usize = 512;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: CAP,
        max_segment_bytes: 8 * 1024,
        ..Default::default()
    }
}

fn blob(rng: &mut SplitMix, max: u64) -> Vec<u8> {
    let n = rng.below(max);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

struct Run {
    /// The seed the workload ran with (printed with every failure).
    seed: u64,
    disk: Arc<MemDisk>,
    /// digest -> (data, op count when its commit returned)
    committed: BTreeMap<Digest, (Vec<u8>, usize)>,
    /// Everything that was ever submitted for commit, with its data.
    attempted: BTreeMap<Digest, Vec<u8>>,
    /// The long-running session and its full data.
    session: (UploadId, Vec<u8>),
    /// (op count when a commit returned, bytes of the long session known durable by then).
    session_marks: Vec<(usize, u64)>,
    /// Metadata changes: (op count before the call, op count when it returned, key, value).
    meta: Vec<(usize, usize, MetaKey, Option<Digest>)>,
}

/// A piece of metadata whose value the workload changes: a tag in `meta/app` (value: the
/// manifest it names) or a blob link in `meta/links` (value: the blob when linked).
#[derive(Clone, Debug, PartialEq, Eq)]
enum MetaKey {
    Tag(String),
    Link(Digest),
}

const APP: &str = "meta/app";
const LINKS: &str = "meta/links";

/// Tags, manifests and links riding along with a blob `d` that was just committed.
#[allow(clippy::too_many_arguments)]
fn metadata_step(
    store: &Store,
    disk: &MemDisk,
    step: u32,
    d: &Digest,
    live_tags: &mut Vec<String>,
    live_links: &mut Vec<Digest>,
    meta: &mut Vec<(usize, usize, MetaKey, Option<Digest>)>,
    committed: &mut BTreeMap<Digest, (Vec<u8>, usize)>,
    attempted: &mut BTreeMap<Digest, Vec<u8>>,
) {
    if step % 2 == 0 {
        store.link_blob(APP, d).unwrap();
        let body = format!("{{\"step\":{step},\"layer\":\"{d}\"}}").into_bytes();
        let md = Digest::of(Algorithm::Sha256, &body);
        let tag = format!("t{step}");
        attempted.insert(md.clone(), body.clone());
        let start = disk.op_count();
        store
            .put_manifest(
                APP,
                &ManifestPut {
                    digest: md.clone(),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    body: body.clone(),
                    tags: vec![tag.clone()],
                    references: vec![d.clone()],
                    subject: None,
                    artifact_type: None,
                    annotations: Default::default(),
                },
            )
            .unwrap();
        let end = disk.op_count();
        committed.entry(md.clone()).or_insert((body, end));
        meta.push((start, end, MetaKey::Tag(tag.clone()), Some(md)));
        live_tags.push(tag);
    }
    if step % 3 == 0 {
        let start = disk.op_count();
        store.link_blob(LINKS, d).unwrap();
        meta.push((
            start,
            disk.op_count(),
            MetaKey::Link(d.clone()),
            Some(d.clone()),
        ));
        live_links.push(d.clone());
    }
    if step % 3 == 2 && live_tags.len() > 1 {
        let tag = live_tags.remove(0);
        let start = disk.op_count();
        assert!(store.delete_tag(APP, &tag).unwrap());
        meta.push((start, disk.op_count(), MetaKey::Tag(tag), None));
    }
    if step % 4 == 3 && live_links.len() > 1 {
        let l = live_links.remove(0);
        let start = disk.op_count();
        store.unlink_blob(LINKS, &l).unwrap();
        meta.push((start, disk.op_count(), MetaKey::Link(l), None));
    }
}

/// Every metadata change acknowledged by `point` is there, unless a later change of the same
/// key had already started (its outcome is then either value).
fn check_metadata(run: &Run, store: &Store, point: usize) {
    for (i, (_, end, key, value)) in run.meta.iter().enumerate() {
        if *end > point {
            continue;
        }
        let superseded = run.meta[i + 1..]
            .iter()
            .any(|(start, _, k, _)| k == key && *start < point);
        if superseded {
            continue;
        }
        match key {
            MetaKey::Tag(t) => {
                let got = store
                    .get_manifest(APP, &Reference::Tag(t.clone()))
                    .unwrap()
                    .map(|m| m.digest);
                assert_eq!(&got, value, "tag {t} at op {point}");
            }
            MetaKey::Link(d) => {
                assert_eq!(
                    store.repo_has_blob(LINKS, d).unwrap(),
                    value.is_some(),
                    "link {d} at op {point}"
                );
            }
        }
    }
}

/// The session holds less than one record in its tail and at most four full records still
/// being written by writer threads; every record before those is in the log once `append` returns,
/// so a later synced commit makes all but the last `5 * chunk_record_bytes - 1` durable.
fn durable_floor(appended: usize) -> u64 {
    appended.saturating_sub(5 * CAP - 1) as u64
}

/// After `checkpoint()` returns, every full record appended before it is durable: only the
/// tail (less than one record) may be lost.
fn checkpoint_floor(appended: usize) -> u64 {
    appended.saturating_sub(CAP - 1) as u64
}

/// A mixed workload: monolithic pushes, chunked uploads, mismatches, aborts, plus one session
/// that keeps growing across the whole run.
fn workload(seed: u64) -> Run {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let mut rng = SplitMix(seed);
    let mut committed = BTreeMap::new();
    let mut attempted = BTreeMap::new();
    let long = store.begin_upload("long/session").unwrap();
    let long_data = blob(&mut rng, 1)
        .into_iter()
        .chain((0..6000).map(|i| (i * 7) as u8))
        .collect::<Vec<u8>>();
    let mut long_off = 0usize;
    let mut session_marks = Vec::new();
    let (mut live_tags, mut live_links, mut meta) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..30 {
        let mut data = blob(&mut rng, 3000);
        if step % 3 == 0 {
            // Whole records only, like most of a real log: a cut through them leaves a record
            // the size of the ones after it, and of the one a reopen writes next.
            data.truncate(data.len() / CAP * CAP);
        }
        let d = Digest::of(Algorithm::Sha256, &data);
        attempted.insert(d.clone(), data.clone());
        match rng.below(4) {
            0 => {
                store.put_blob("r/mono", &d, &data).unwrap();
            }
            1 | 2 => {
                let id = store.begin_upload("r/chunked").unwrap();
                let mut off = 0u64;
                // Sometimes checkpoint halfway, with this session's records just handed to the
                // writer threads (in flight, or written and not synced).
                let pause_after = if rng.below(2) == 0 { 1 } else { usize::MAX };
                for (k, part) in data.chunks(1 + rng.below(900) as usize).enumerate() {
                    off = store.append(&id, off, part).unwrap();
                    if k == pause_after {
                        store.checkpoint().unwrap();
                    }
                }
                store.commit(&id, &d).unwrap();
            }
            _ => {
                let id = store.begin_upload("r/bad").unwrap();
                store.append_at_end(&id, &data).unwrap();
                if step % 2 == 0 {
                    store.abort(&id).unwrap();
                } else {
                    assert!(store
                        .commit(&id, &Digest::of(Algorithm::Sha256, b"wrong"))
                        .is_err());
                }
                continue;
            }
        }
        committed
            .entry(d.clone())
            .or_insert((data, disk.op_count()));
        session_marks.push((disk.op_count(), durable_floor(long_off)));
        metadata_step(
            &store,
            &disk,
            step,
            &d,
            &mut live_tags,
            &mut live_links,
            &mut meta,
            &mut committed,
            &mut attempted,
        );
        let step_len = 200 + rng.below(200) as usize;
        let end = (long_off + step_len).min(long_data.len());
        store
            .append(&long, long_off as u64, &long_data[long_off..end])
            .unwrap();
        long_off = end;
        // Right after an append that may have completed a record: the log holds bytes no
        // commit synced yet when the checkpoint makes the index durable.
        if step % 3 == 1 || rng.below(4) == 0 {
            store.checkpoint().unwrap();
            session_marks.push((disk.op_count(), checkpoint_floor(long_off)));
        }
    }
    drop(store);
    Run {
        seed,
        disk,
        committed,
        attempted,
        session: (long, long_data),
        session_marks,
        meta,
    }
}

fn check_image(run: &Run, point: usize, seed: u64) {
    let img = run.disk.power_cut_image(point, seed);
    let at = format!(
        "op {point} (image seed {seed}, BERTH_TEST_SEED={})",
        run.seed
    );
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("reopen at {at}: {e}"));
    // Blobs that must be there from now on, with their bytes.
    let mut expected: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    for (d, (data, returned)) in &run.committed {
        if *returned <= point {
            let got = store
                .get(d)
                .unwrap()
                .unwrap_or_else(|| panic!("{d} lost at {at}"));
            assert_eq!(&got.read_all().unwrap().to_vec(), data, "{d} at {at}");
            expected.insert(d.clone(), data.clone());
        }
    }
    for d in assert_listed_blobs_hash_to_their_digests(&store) {
        let data = run
            .attempted
            .get(&d)
            .unwrap_or_else(|| panic!("unknown blob {d} at {at}"));
        assert_eq!(&blob_bytes(&store, &d), data, "{d} at {at}");
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "verify at {at}: {report:?}");
    check_metadata(run, &store, point);
    // The long session exists once a commit or checkpoint after its start returned, with at
    // least the bytes that made durable.
    let (id, data) = &run.session;
    let floor = run
        .session_marks
        .iter()
        .filter(|(at, _)| *at <= point)
        .map(|&(_, f)| f)
        .max();
    let long = match (store.status(id), floor) {
        (Ok(st), _) => {
            let floor = floor.unwrap_or(0);
            assert!(
                st.offset >= floor && st.offset as usize <= data.len(),
                "session resumes at {} at {at}, durable floor {floor}",
                st.offset
            );
            Some((*id, data.as_slice(), st.offset as usize))
        }
        (Err(StorageError::UploadUnknown), None) => None,
        (Err(e), floor) => panic!("session at {at} (durable floor {floor:?}): {e}"),
    };
    second_life(store, &img, expected, &run.attempted, long, &at, seed);
}

/// Reopens the image's store, checks that every listed blob hashes to its digest, is one that
/// was pushed, and that every blob in `expected` is there; returns the store.
fn reopen_and_check(
    img: &Arc<MemDisk>,
    expected: &BTreeMap<Digest, Vec<u8>>,
    attempted: &BTreeMap<Digest, Vec<u8>>,
    at: &str,
) -> Store {
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("reopen in the second life of {at}: {e}"));
    for d in assert_listed_blobs_hash_to_their_digests(&store) {
        assert!(
            expected.contains_key(&d) || attempted.contains_key(&d),
            "unknown blob {d} in the second life of {at}"
        );
    }
    for (d, data) in expected {
        assert_eq!(
            &blob_bytes(&store, d),
            data,
            "{d} in the second life of {at}"
        );
    }
    store
}

/// The image's second life: more writes on top of what recovery left, a clean close, another
/// reopen, and the same checks again. First a single whole chunk record of the long session
/// (`long`: id, data, where it resumes), which lands exactly where recovery said the log ends
/// and has the size most records in the log have: if bytes after that end were left in place,
/// the next scan reads on past the new record into them, and replays whatever whole records
/// they hold (say, a commit naming the chunk just overwritten). Then the rest of the long
/// session, blobs and a new session, closed and reopened once more.
fn second_life(
    store: Store,
    img: &Arc<MemDisk>,
    mut expected: BTreeMap<Digest, Vec<u8>>,
    attempted: &BTreeMap<Digest, Vec<u8>>,
    long: Option<(UploadId, &[u8], usize)>,
    at: &str,
    seed: u64,
) {
    let mut store = store;
    if let Some((id, data, offset)) = long {
        let mut offset = offset;
        if data.len() - offset >= CAP {
            store
                .append(&id, offset as u64, &data[offset..offset + CAP])
                .unwrap();
            store.close().unwrap();
            drop(store);
            store = reopen_and_check(img, &expected, attempted, at);
            offset = store.status(&id).unwrap().offset as usize;
        }
        store.append(&id, offset as u64, &data[offset..]).unwrap();
        let d = Digest::of(Algorithm::Sha256, data);
        store
            .commit(&id, &d)
            .unwrap_or_else(|e| panic!("long session commit in the second life of {at}: {e}"));
        expected.insert(d, data.to_vec());
    }
    let mut rng = SplitMix(seed ^ 0x5ec0_d11f);
    let fresh = |rng: &mut SplitMix, n: usize| -> Vec<u8> {
        // A marker byte keeps these apart from the workload's blobs.
        std::iter::once(0xa5)
            .chain((1..n).map(|_| rng.next_u64() as u8))
            .collect()
    };
    let session_data = fresh(&mut rng, 2 * CAP + 100);
    let id = store.begin_upload("second/life").unwrap();
    store.append(&id, 0, &session_data[..2 * CAP]).unwrap();
    for n in [3 * CAP, CAP + 17, 40] {
        let data = fresh(&mut rng, n);
        let d = Digest::of(Algorithm::Sha256, &data);
        store.put_blob("second/life", &d, &data).unwrap();
        expected.insert(d, data);
    }
    store
        .append(&id, 2 * CAP as u64, &session_data[2 * CAP..])
        .unwrap();
    store.close().unwrap();
    drop(store);

    let store = reopen_and_check(img, &expected, attempted, at);
    assert_eq!(
        store.status(&id).unwrap().offset,
        session_data.len() as u64,
        "second-life session after {at}"
    );
    store
        .commit(&id, &Digest::of(Algorithm::Sha256, &session_data))
        .unwrap_or_else(|e| panic!("second-life session commit after {at}: {e}"));
    let report = store.verify().unwrap();
    assert!(
        report.is_clean(),
        "verify after the second life of {at}: {report:?}"
    );
}

/// Where to cut: one moment per sync point, drawn from the seed: the sync point itself, the
/// operation just before it (where the writes the sync covers may themselves be torn), or any
/// moment since the previous sync point. Plus the very end.
fn cut_points(disk: &MemDisk, rng: &mut SplitMix) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut prev = 0;
    for p in disk.sync_points() {
        cuts.push(match rng.below(3) {
            0 => p,
            1 => p - 1,
            _ => prev + rng.below((p - prev) as u64) as usize,
        });
        prev = p;
    }
    cuts.push(disk.op_count());
    cuts
}

#[test]
fn reopen_at_every_sync_point_keeps_committed_blobs() {
    let seed = test_seed("reopen_at_every_sync_point_keeps_committed_blobs");
    let run = workload(seed);
    let points = run.disk.sync_points();
    eprintln!(
        "{} sync points over {} ops",
        points.len(),
        run.disk.op_count()
    );
    assert!(
        points.len() > 50,
        "workload too small: {} sync points",
        points.len()
    );
    let mut rng = SplitMix(seed ^ 0x1a6e);
    for p in cut_points(&run.disk, &mut rng) {
        check_image(&run, p, rng.next_u64());
    }
}

#[test]
fn lost_index_is_rebuilt_from_segments_at_any_sync_point() {
    let seed = test_seed("lost_index_is_rebuilt_from_segments_at_any_sync_point");
    let run = workload(seed);
    let mut rng = SplitMix(seed ^ 0x1ead);
    for p in cut_points(&run.disk, &mut rng).into_iter().step_by(3) {
        let img_seed = rng.next_u64();
        let at = format!("op {p} (image seed {img_seed}, BERTH_TEST_SEED={seed})");
        let img = run.disk.power_cut_image(p, img_seed);
        img.remove_index();
        let store = Store::open_with(img.segments(), img.index(), opts())
            .unwrap_or_else(|e| panic!("rebuild at {at}: {e}"));
        let mut expected = BTreeMap::new();
        for (d, (data, returned)) in &run.committed {
            if *returned <= p {
                assert_eq!(&blob_bytes(&store, d), data, "{d} after rebuild at {at}");
                expected.insert(d.clone(), data.clone());
            }
        }
        for d in assert_listed_blobs_hash_to_their_digests(&store) {
            assert!(run.attempted.contains_key(&d), "unknown blob {d} at {at}");
        }
        assert!(store.verify().unwrap().is_clean(), "verify at {at}");
        second_life(store, &img, expected, &run.attempted, None, &at, img_seed);
    }
}
