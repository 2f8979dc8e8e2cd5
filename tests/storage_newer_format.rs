//! A store written by a newer berth is refused, never repaired: a record, a segment header or
//! an index of a newer format version, an op this build does not know, or an op newer than
//! its record's version stops the open with `UnsupportedFormat`, and every byte of every file
//! is as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::record::{encode_segment_header, trailer, Kind, RecordHeader, Stream};
use berth::storage::*;

/// A closed store with a few blobs; returns the path of its last segment.
fn store_with_blobs(dir: &Path) -> PathBuf {
    let s = Store::open(dir, StoreOptions::default()).unwrap();
    for i in 0..5u8 {
        let b = vec![i; 1000 + i as usize];
        s.put_blob("r", &Digest::of(Algorithm::Sha256, &b), &b)
            .unwrap();
    }
    s.close().unwrap();
    drop(s);
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn op_record(version: u8, payload: &[u8]) -> Vec<u8> {
    let h = RecordHeader {
        kind: Kind::Op,
        flags: 0,
        payload_len: payload.len() as u32,
        session: [0; 16],
        blob_offset: 0,
    };
    let mut v = h.encode_as(version).to_vec();
    v.extend_from_slice(payload);
    v.extend_from_slice(&trailer(payload));
    v
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn assert_refused_untouched(dir: &Path, what: &str) {
    let before = snapshot(dir);
    match Store::open(dir, StoreOptions::default()) {
        Err(StorageError::UnsupportedFormat(msg)) => eprintln!("{what}: {msg}"),
        Err(e) => panic!("{what}: expected UnsupportedFormat, got {e}"),
        Ok(_) => panic!("{what}: a newer store was opened"),
    }
    let after = snapshot(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: files appeared or vanished"
    );
    for (path, bytes) in &before {
        if path.ends_with("LOCK") {
            continue;
        }
        assert!(after[path] == *bytes, "{what}: {} changed", path.display());
    }
}

#[test]
fn a_record_of_a_newer_version_is_refused_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    append(&last, &op_record(4, br#"{"op":"from_the_future"}"#));
    assert_refused_untouched(dir.path(), "version 4 record");
}

#[test]
fn an_unknown_op_is_refused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    append(&last, &op_record(2, br#"{"op":"from_the_future","x":1}"#));
    assert_refused_untouched(dir.path(), "unknown op");
}

#[test]
fn a_version_2_op_in_a_version_1_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    append(&last, &op_record(1, br#"{"op":"drop_segments","ids":[1]}"#));
    assert_refused_untouched(dir.path(), "sweep in a v1 record");
}

#[test]
fn a_manifest_with_pending_references_in_a_version_2_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    let digest = format!("sha256:{}", "ab".repeat(32));
    let op = format!(
        r#"{{"op":"put_manifest","blob":{{"session":null,"repo":"r","digest":"{digest}","size":0,"extents":[]}},"meta":{{"media_type":"application/vnd.oci.image.manifest.v1+json","size":0}},"tags":[],"references":[],"subject":null,"references_pending":true}}"#
    );
    append(&last, &op_record(2, op.as_bytes()));
    assert_refused_untouched(dir.path(), "pending references in a v2 record");
}

#[test]
fn a_segment_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    let name = last.file_name().unwrap().to_str().unwrap();
    let id = u64::from_str_radix(&name[..16], 16).unwrap() + 1;
    let mut h = encode_segment_header(id, 0, Stream::Log);
    h[8] = 4; // format version
    let crc = crc32fast::hash(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(
        dir.path().join("segments").join(format!("{id:016x}.seg")),
        h,
    )
    .unwrap();
    assert_refused_untouched(dir.path(), "version 4 segment");
}

#[test]
fn a_record_with_reserved_bytes_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    let mut rec = op_record(2, br#"{"op":"checkpoint"}"#);
    rec[12] = 1; // reserved, covered by the header crc
    let crc = crc32fast::hash(&rec[..40]);
    rec[40..44].copy_from_slice(&crc.to_le_bytes());
    append(&last, &rec);
    assert_refused_untouched(dir.path(), "reserved bytes");
}

#[test]
fn without_an_index_a_newer_store_is_refused_and_no_index_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    append(&last, &op_record(3, br#"{"op":"from_the_future"}"#));
    assert_refused_untouched(dir.path(), "version 3 record, no index");
    assert_refused_untouched(dir.path(), "the same, opened again");
}

#[test]
fn a_segment_header_with_an_unknown_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let last = store_with_blobs(dir.path());
    let name = last.file_name().unwrap().to_str().unwrap();
    let id = u64::from_str_radix(&name[..16], 16).unwrap() + 1;
    let mut h = encode_segment_header(id, 0, Stream::Log);
    h[32] = 7; // stream
    let crc = crc32fast::hash(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(
        dir.path().join("segments").join(format!("{id:016x}.seg")),
        h,
    )
    .unwrap();
    assert_refused_untouched(dir.path(), "unknown stream");
}
