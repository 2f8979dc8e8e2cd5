//! Property test of upload-session state against a simple model: random appends (borrowed and
//! owned, some at wrong offsets), status checks, clean reopens and crash reopens, then commit.

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Append(usize),
    AppendAtEnd(usize),
    /// Owned pieces of these sizes, in one call.
    AppendOwned(Vec<usize>),
    WrongOffset(u64),
    Reopen,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Step::Append),
        2 => (0usize..3000).prop_map(Step::AppendAtEnd),
        3 => proptest::collection::vec(0usize..1500, 0..5).prop_map(Step::AppendOwned),
        1 => (1u64..5000).prop_map(Step::WrongOffset),
        1 => Just(Step::Reopen),
        1 => Just(Step::Crash),
    ]
}

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 1024,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn session_matches_model(steps in proptest::collection::vec(step(), 1..25), seed: u8) {
        let disk = MemDisk::new();
        let mut store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        let id = store.begin_upload("p").unwrap();
        // The model: bytes the session holds.
        let mut model: Vec<u8> = Vec::new();
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
                Step::Reopen => {
                    store.close().unwrap();
                    drop(store);
                    store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
                }
                Step::Crash => {
                    // Only what the last group commit made durable, plus whole records found
                    // by the recovery scan, survives; the model keeps that prefix.
                    drop(store);
                    let img = disk.power_cut_image(disk.op_count(), 1);
                    store = Store::open_with(img.segments(), img.index(), opts()).unwrap();
                    let disk2 = img;
                    match store.status(&id) {
                        Ok(st) => {
                            prop_assert!(st.offset <= model.len() as u64);
                            model.truncate(st.offset as usize);
                        }
                        Err(StorageError::UploadUnknown) => {
                            // The session start itself never became durable.
                            return Ok(());
                        }
                        Err(e) => prop_assert!(false, "status: {}", e),
                    }
                    drop(store);
                    // Continue on the crashed image from now on.
                    store = Store::open_with(disk2.segments(), disk2.index(), opts()).unwrap();
                    return finish(&store, &id, &model);
                }
            }
            prop_assert_eq!(store.status(&id).unwrap().offset, model.len() as u64);
        }
        finish(&store, &id, &model)?;
    }
}

fn finish(store: &Store, id: &UploadId, model: &[u8]) -> Result<(), TestCaseError> {
    let d = Digest::of(Algorithm::Sha256, model);
    let info = store.commit(id, &d).unwrap();
    prop_assert_eq!(info.size, model.len() as u64);
    prop_assert_eq!(
        store.get(&d).unwrap().unwrap().read_all().unwrap().to_vec(),
        model.to_vec()
    );
    Ok(())
}
