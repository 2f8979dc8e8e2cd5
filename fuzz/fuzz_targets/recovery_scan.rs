//! Arbitrary segment files opened as a store with no index: recovery replays whatever decodes
//! (chunks and OP records with arbitrary JSON), and then listing, reading and scrubbing every
//! blob must work or fail cleanly, never panic.
#![no_main]

use berth::storage::memdisk::MemDisk;
use berth::storage::record::{encode_segment_header, seg, Stream};
use berth::storage::{Store, StoreOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Not recording the operation log, and the index in redb's own memory backend: the
    // interesting part is the scan and replay of the segments.
    let disk = std::sync::Arc::new(MemDisk::default());
    let segs = disk.segments();
    // Input: segments separated by the byte string "\n--\n"; each gets a valid log-stream
    // header of the current version, unless it starts with '!' (then the raw bytes are the
    // whole file), '#' (a compaction-stream header) or '~' (a version 1 header).
    let mut id = 1u64;
    let mut rest = data;
    loop {
        let (part, more) = match rest.windows(4).position(|w| w == b"\n--\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 4..])),
            None => (rest, None),
        };
        segs.create(id).unwrap();
        if let Some(raw) = part.strip_prefix(b"!") {
            segs.write_at(id, 0, &[raw]).unwrap();
        } else if let Some(body) = part.strip_prefix(b"#") {
            let h = encode_segment_header(id, 0, Stream::Compaction);
            segs.write_at(id, 0, &[&h, body]).unwrap();
        } else if let Some(body) = part.strip_prefix(b"~") {
            segs.write_at(id, 0, &[&version_1_header(id), body]).unwrap();
        } else {
            segs.write_at(id, 0, &[&encode_segment_header(id, 0, Stream::Log), part])
                .unwrap();
        }
        id += 1;
        match more {
            Some(m) if id < 8 => rest = m,
            _ => break,
        }
    }
    let opts = StoreOptions {
        chunk_record_bytes: 256,
        max_segment_bytes: 4096,
        ..Default::default()
    };
    let index = redb::backends::InMemoryBackend::new();
    let Ok(store) = Store::open_with(disk.segments(), index, opts) else {
        return;
    };
    if let Ok(blobs) = store.list_blobs(None, 64) {
        for b in blobs {
            if let Ok(Some(data)) = store.get(&b.digest) {
                assert_eq!(data.size, b.size);
            }
        }
    }
    let _ = store.verify();
    let _ = store.list_repositories(None, 10);
    let _ = store.space();
});

/// A segment header as version 1 wrote it: no stream byte, version 1, crc over bytes 0..60.
fn version_1_header(id: u64) -> [u8; seg::LEN] {
    let mut h = encode_segment_header(id, 0, Stream::Log);
    h[seg::OFF_VERSION..seg::OFF_VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
    h[seg::OFF_STREAM] = 0;
    let crc = crc32fast::hash(&h[..seg::OFF_CRC]);
    h[seg::OFF_CRC..seg::OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    h
}
