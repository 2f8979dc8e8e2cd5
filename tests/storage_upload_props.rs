//! Property test of upload-session state against a simple model: random appends (borrowed and
//! owned, some at wrong offsets), status checks, checkpoints, other commits, clean reopens and
//! power cuts, then commit.
//!
//! A power cut may lose what was never made durable, never what was: once a checkpoint or
//! another commit covering the session's bytes has returned, the session must survive the
//! cut with at least those bytes, and they must be the model's. After the cut the session
//! lives on: more records are written where recovery said the log ends, the store is closed
//! and reopened, and the session must hold exactly the model's bytes.

mod storage_support;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use proptest::prelude::*;
use storage_support::blob_bytes;

const CAP: usize = 1024;

#[derive(Clone, Debug)]
enum Step {
    Append(usize),
    AppendAtEnd(usize),
    /// Owned pieces of these sizes, in one call.
    AppendOwned(Vec<usize>),
    WrongOffset(u64),
    /// `checkpoint()`: every whole record appended so far is durable once it returns.
    Checkpoint,
    /// A commit of another blob: the log is synced, so every record written so far is durable
    /// once it returns (all but the session's tail and its records still in flight).
    OtherCommit(usize),
    Reopen,
    /// A power cut; the number picks the moment among the disk's sync points and the
    /// operations just before them.
    Crash(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Step::Append),
        2 => (0usize..3000).prop_map(Step::AppendAtEnd),
        3 => proptest::collection::vec(0usize..1500, 0..5).prop_map(Step::AppendOwned),
        1 => (1u64..5000).prop_map(Step::WrongOffset),
        1 => Just(Step::Checkpoint),
        1 => (0usize..2000).prop_map(Step::OtherCommit),
        1 => Just(Step::Reopen),
        1 => any::<usize>().prop_map(Step::Crash),
    ]
}

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: CAP,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    }
}

fn open(disk: &std::sync::Arc<MemDisk>) -> Store {
    Store::open_with(disk.segments(), disk.index(), opts()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn session_matches_model(steps in proptest::collection::vec(step(), 1..25), seed: u8) {
        let disk = MemDisk::new();
        let mut store = open(&disk);
        let id = store.begin_upload("p").unwrap();
        // The model: bytes the session holds.
        let mut model: Vec<u8> = Vec::new();
        // (op count when a call returned, bytes of the session durable from then on).
        let mut marks: Vec<(usize, u64)> = Vec::new();
        // Other blobs: (op count when the commit returned, digest, bytes).
        let mut others: Vec<(usize, Digest, Vec<u8>)> = Vec::new();
        let mut next = seed;
        let mut fresh = |n: usize| -> Vec<u8> {
            (0..n).map(|_| { next = next.wrapping_mul(73).wrapping_add(41); next }).collect()
        };
        for s in steps {
            match s {
                Step::Append(n) => {
                    let d = fresh(n);
                    let len = store.append(&id, model.len() as u64, &d).unwrap();
                    model.extend_from_slice(&d);
                    prop_assert_eq!(len, model.len() as u64);
                }
                Step::AppendAtEnd(n) => {
                    let d = fresh(n);
                    model.extend_from_slice(&d);
                    prop_assert_eq!(store.append_at_end(&id, &d).unwrap(), model.len() as u64);
                }
                Step::AppendOwned(sizes) => {
                    let pieces: Vec<bytes::Bytes> = sizes.iter().map(|&n| fresh(n).into()).collect();
                    let at = model.len() as u64;
                    for p in &pieces {
                        model.extend_from_slice(p);
                    }
                    prop_assert_eq!(store.append_owned(&id, at, pieces).unwrap(), model.len() as u64);
                }
                Step::WrongOffset(delta) => {
                    let off = model.len() as u64 + delta;
                    match store.append(&id, off, b"zz") {
                        Err(StorageError::UploadOffset { expected }) => prop_assert_eq!(expected, model.len() as u64),
                        other => prop_assert!(false, "expected UploadOffset, got {:?}", other),
                    }
                }
                Step::Checkpoint => {
                    store.checkpoint().unwrap();
                    marks.push((disk.op_count(), model.len().saturating_sub(CAP - 1) as u64));
                }
                Step::OtherCommit(n) => {
                    let mut data = fresh(n);
                    data.push(0xee);
                    let d = Digest::of(Algorithm::Sha256, &data);
                    store.put_blob("other", &d, &data).unwrap();
                    others.push((disk.op_count(), d, data));
                    marks.push((disk.op_count(), model.len().saturating_sub(5 * CAP - 1) as u64));
                }
                Step::Reopen => {
                    store.close().unwrap();
                    marks.push((disk.op_count(), model.len() as u64));
                    drop(store);
                    store = open(&disk);
                }
                Step::Crash(cut) => {
                    drop(store);
                    // Two cuts: one drawn from the case (at or just before a sync point, or the
                    // end), and one just before the last sync (after the longest run of
                    // unsynced records, and right after the index sync of a checkpoint).
                    let syncs = disk.sync_points();
                    let mut points: Vec<usize> = syncs.iter().flat_map(|&p| [p - 1, p]).collect();
                    points.push(disk.op_count());
                    let cuts = [
                        points[cut % points.len()],
                        syncs.last().map_or(0, |p| p - 1),
                    ];
                    for (i, point) in cuts.into_iter().enumerate() {
                        let img_seed = (cut as u64).wrapping_add(i as u64) ^ u64::from(seed);
                        let fresh_bytes = fresh(2 * CAP);
                        let cut = Cut { point, img_seed, marks: &marks, others: &others };
                        check_cut(&disk, &id, model.clone(), fresh_bytes, cut)?;
                    }
                    return Ok(());
                }
            }
            prop_assert_eq!(store.status(&id).unwrap().offset, model.len() as u64);
        }
        finish(&store, &id, &model)?;
    }
}

/// A power cut to check, and what was durable before it.
struct Cut<'a> {
    point: usize,
    img_seed: u64,
    /// (op count when a call returned, bytes of the session durable from then on).
    marks: &'a [(usize, u64)],
    /// Other blobs: (op count when the commit returned, digest, bytes).
    others: &'a [(usize, Digest, Vec<u8>)],
}

/// Reopens the image a power cut at `cut.point` leaves: every other blob committed before it is
/// there, and the session (if any call made it durable before the cut) holds at least what
/// was durable and at most the model, then lives on: `more` is written in whole records where
/// recovery says the log ends, the store is closed and reopened, and the session must hold
/// exactly the model's bytes.
fn check_cut(
    disk: &std::sync::Arc<MemDisk>,
    id: &UploadId,
    mut model: Vec<u8>,
    more: Vec<u8>,
    cut: Cut<'_>,
) -> Result<(), TestCaseError> {
    let img = disk.power_cut_image(cut.point, cut.img_seed);
    let at = format!(
        "cut at op {} of {} (image seed {})",
        cut.point,
        disk.op_count(),
        cut.img_seed
    );
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("reopen, {at}: {e}"));
    for (returned, d, data) in cut.others {
        if *returned <= cut.point {
            prop_assert_eq!(&blob_bytes(&store, d), data, "{}, {}", d, at);
        }
    }
    let floor = cut
        .marks
        .iter()
        .filter(|(m, _)| *m <= cut.point)
        .map(|&(_, f)| f)
        .max();
    match (store.status(id), floor) {
        (Ok(st), floor) => {
            let floor = floor.unwrap_or(0);
            prop_assert!(
                st.offset >= floor && st.offset <= model.len() as u64,
                "session resumes at {}, durable floor {}, model {}, {}",
                st.offset,
                floor,
                model.len(),
                at
            );
            model.truncate(st.offset as usize);
        }
        // The session start itself never became durable.
        (Err(StorageError::UploadUnknown), None) => return Ok(()),
        (Err(e), floor) => prop_assert!(false, "status: {} (durable floor {:?}), {}", e, floor, at),
    }
    store
        .append(id, model.len() as u64, &more)
        .unwrap_or_else(|e| panic!("append after the cut, {at}: {e}"));
    model.extend_from_slice(&more);
    store.close().unwrap();
    drop(store);
    let store = Store::open_with(img.segments(), img.index(), opts())
        .unwrap_or_else(|e| panic!("second reopen, {at}: {e}"));
    prop_assert_eq!(
        store.status(id).unwrap().offset,
        model.len() as u64,
        "after the cut's second life, {}",
        at
    );
    finish(&store, id, &model)
}

/// Commits the session: its bytes must hash to the model's digest and read back as the model.
fn finish(store: &Store, id: &UploadId, model: &[u8]) -> Result<(), TestCaseError> {
    let d = Digest::of(Algorithm::Sha256, model);
    let info = store
        .commit(id, &d)
        .unwrap_or_else(|e| panic!("the session's bytes are not the model's: {e}"));
    prop_assert_eq!(info.size, model.len() as u64);
    prop_assert_eq!(blob_bytes(store, &d), model.to_vec());
    Ok(())
}
