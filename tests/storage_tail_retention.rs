//! Opening a store keeps only the newest few torn-tail copies (`<segment>.seg.tail-<unix ms>`)
//! recovery left in `segments/`, so repeated crashes cannot fill the disk with them.

use berth::storage::{Store, StoreOptions, KEPT_TAIL_FILES};

fn tail_name(ms: u64) -> String {
    format!("0000000000000001.seg.tail-{ms}")
}

#[test]
fn open_keeps_only_the_newest_tail_copies() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let segments = dir.path().join("segments");
    let total = KEPT_TAIL_FILES as u64 + 5;
    // Written oldest last, so directory order says nothing about age.
    for i in (0..total).rev() {
        std::fs::write(
            segments.join(tail_name(1_700_000_000_000 + i)),
            b"cut bytes",
        )
        .unwrap();
    }
    // Files that are not torn-tail copies are left alone.
    std::fs::write(segments.join("0000000000000001.seg.note"), b"x").unwrap();
    std::fs::write(segments.join("README"), b"x").unwrap();

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".seg.tail-"))
        .collect();
    left.sort();
    let newest: Vec<String> = (total - KEPT_TAIL_FILES as u64..total)
        .map(|i| tail_name(1_700_000_000_000 + i))
        .collect();
    assert_eq!(left, newest);
    assert!(segments.join("0000000000000001.seg.note").exists());
    assert!(segments.join("README").exists());
    assert!(segments.join("0000000000000001.seg").exists());
    drop(store);
}
