//! Writes seed inputs for `recovery_scan`: the segment files of small real stores, in the
//! target's input format ("!" + raw file, files separated by "\n--\n").
//! Usage: cargo run --bin make_seeds -- <corpus dir>

use std::collections::BTreeMap;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{GcOptions, ManifestPut, Store, StoreOptions};

fn main() {
    let out = std::env::args().nth(1).expect("corpus dir");
    std::fs::create_dir_all(&out).unwrap();
    for case in 0..4u8 {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            chunk_record_bytes: 256,
            // Case 3 collects and compacts: small segments, so that there is something to
            // compact besides the active one.
            max_segment_bytes: if case == 3 { 1024 } else { 4096 },
            ..Default::default()
        };
        let s = Store::open(dir.path(), opts).unwrap();
        let layer: Vec<u8> = (0..600u32)
            .map(|i| (i as u8).wrapping_mul(case + 1))
            .collect();
        let d = Digest::of(Algorithm::Sha256, &layer);
        let id = s.begin_upload("seed/repo").unwrap();
        s.append(&id, 0, &layer).unwrap();
        s.commit(&id, &d).unwrap();
        s.put_blob("seed/other", &d, &layer).unwrap();
        let body = format!("{{\"case\":{case}}}").into_bytes();
        s.put_manifest(
            "seed/repo",
            &ManifestPut {
                digest: Digest::of(Algorithm::Sha256, &body),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                body,
                tags: vec!["v1".into()],
                references: vec![d.clone()],
                subject: (case % 2 == 1).then(|| d.clone()),
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
        )
        .unwrap();
        if case > 1 {
            s.delete_tag("seed/repo", "v1").unwrap();
            if case == 3 {
                // A collection: the untagged referrer (its subject is a blob, not a manifest)
                // is swept, the layer stays (a tagged manifest names it), and every sealed
                // segment is compacted, so the seed holds sweep, relocate and drop_segments
                // ops and a compaction-stream segment.
                let keep = br#"{"keep":true}"#.to_vec();
                s.put_manifest(
                    "seed/repo",
                    &ManifestPut {
                        digest: Digest::of(Algorithm::Sha256, &keep),
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        body: keep,
                        tags: vec!["keep".into()],
                        references: vec![d.clone()],
                        subject: None,
                        artifact_type: None,
                        annotations: BTreeMap::new(),
                    },
                )
                .unwrap();
                let gc = GcOptions {
                    compact_threshold: 1.0,
                    ..Default::default()
                };
                s.gc(&gc, &mut |_| {}).unwrap();
            }
            let open = s.begin_upload("seed/repo").unwrap();
            s.append(&open, 0, &layer[..300]).unwrap();
        }
        s.close().unwrap();
        drop(s);
        // Segment files only: side files (bases, torn-tail copies) are not segments.
        let mut files: Vec<_> = std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        // The target numbers its segments 1, 2, ...: a segment compaction deleted becomes an
        // empty file (a torn creation, which recovery removes), so the others keep their ids.
        let id_of = |p: &std::path::PathBuf| {
            u64::from_str_radix(&p.file_name().unwrap().to_str().unwrap()[..16], 16).unwrap()
        };
        let mut seed = Vec::new();
        let mut next = 1u64;
        for f in &files {
            while next <= id_of(f) {
                if next > 1 {
                    seed.extend_from_slice(b"\n--\n");
                }
                seed.push(b'!');
                if next == id_of(f) {
                    seed.extend(std::fs::read(f).unwrap());
                }
                next += 1;
            }
        }
        std::fs::write(format!("{out}/store-{case}"), seed).unwrap();
    }
}
