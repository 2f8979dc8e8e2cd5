//! Power cuts: the store reopened from the disk image as of every sync point (later unsynced
//! writes dropped or torn at random) has every blob whose commit had returned, serves nothing
//! wrong, keeps every acknowledged tag, manifest, tag deletion, link and unlink, and resumes
//! upload sessions from their durable offset.

mod storage_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::{MemDisk, SplitMix};
use berth::storage::*;
use storage_support::blob_bytes;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 512,
        max_segment_bytes: 8 * 1024,
        ..Default::default()
    }
}

fn blob(rng: &mut SplitMix, max: u64) -> Vec<u8> {
    let n = rng.below(max);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

struct Run {
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
    appended.saturating_sub(5 * opts().chunk_record_bytes - 1) as u64
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
        let data = blob(&mut rng, 3000);
        let d = Digest::of(Algorithm::Sha256, &data);
        attempted.insert(d.clone(), data.clone());
        match rng.below(4) {
            0 => {
                store.put_blob("r/mono", &d, &data).unwrap();
            }
            1 | 2 => {
                let id = store.begin_upload("r/chunked").unwrap();
                let mut off = 0u64;
                for part in data.chunks(1 + rng.below(900) as usize) {
                    off = store.append(&id, off, part).unwrap();
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
        if step % 5 == 4 {
            store.checkpoint().unwrap();
        }
        let step_len = 200 + rng.below(200) as usize;
        let end = (long_off + step_len).min(long_data.len());
        store
            .append(&long, long_off as u64, &long_data[long_off..end])
            .unwrap();
        long_off = end;
    }
    drop(store);
    Run {
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
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("reopen at op {point} seed {seed}: {e}"));
    for (d, (data, at)) in &run.committed {
        if *at <= point {
            let got = store
                .get(d)
                .unwrap()
                .unwrap_or_else(|| panic!("{d} lost at op {point}"));
            assert_eq!(&got.read_all().unwrap().to_vec(), data, "{d} at op {point}");
        }
    }
    let mut seen = BTreeSet::new();
    let mut last = None;
    loop {
        let page = store.list_blobs(last.as_ref(), 100).unwrap();
        let Some(l) = page.last() else { break };
        last = Some(l.digest.clone());
        for b in page {
            let data = run
                .attempted
                .get(&b.digest)
                .unwrap_or_else(|| panic!("unknown blob {}", b.digest));
            assert_eq!(&blob_bytes(&store, &b.digest), data);
            seen.insert(b.digest);
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "verify at op {point}: {report:?}");
    check_metadata(run, &store, point);
    // The long session exists once a commit after its start returned, with at least the bytes
    // that commit made durable, and continues from there to a valid blob.
    let (id, data) = &run.session;
    let floor = run
        .session_marks
        .iter()
        .filter(|(at, _)| *at <= point)
        .map(|&(_, f)| f)
        .max();
    match (store.status(id), floor) {
        (Ok(st), _) => {
            let floor = floor.unwrap_or(0);
            assert!(
                st.offset >= floor && st.offset as usize <= data.len(),
                "session resumes at {} at op {point}, durable floor {floor}",
                st.offset
            );
            store
                .append(id, st.offset, &data[st.offset as usize..])
                .unwrap();
            store
                .commit(id, &Digest::of(Algorithm::Sha256, data))
                .unwrap();
        }
        (Err(StorageError::UploadUnknown), None) => {}
        (Err(e), floor) => panic!("session at op {point} (durable floor {floor:?}): {e}"),
    }
}

#[test]
fn reopen_at_every_sync_point_keeps_committed_blobs() {
    let run = workload(0x5eed);
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
    for (i, &p) in points.iter().enumerate() {
        check_image(&run, p, i as u64);
        // Also just before the sync, where the synced writes may themselves be torn.
        check_image(&run, p - 1, i as u64 + 1000);
    }
    check_image(&run, run.disk.op_count(), 7);
}

#[test]
fn lost_index_is_rebuilt_from_segments_at_any_sync_point() {
    let run = workload(0xbeef);
    let points = run.disk.sync_points();
    for (i, &p) in points.iter().enumerate().step_by(3) {
        let img = run.disk.power_cut_image(p, i as u64);
        img.remove_index();
        let store = Store::open_with(img.segments(), img.index(), opts()).unwrap();
        for (d, (data, at)) in &run.committed {
            if *at <= p {
                assert_eq!(&blob_bytes(&store, d), data, "{d} after rebuild at {p}");
            }
        }
        for b in store.list_blobs(None, usize::MAX).unwrap() {
            assert!(run.attempted.contains_key(&b.digest));
        }
        assert!(store.verify().unwrap().is_clean());
    }
}
