//! Reports as text for people. Both a local run and a registry's answer are rendered from the
//! same JSON shapes, so `berth gc --data` and `berth gc --url` print alike.

use std::fmt::Write;
use std::time::Duration;

use crate::config::units::{format_bytes, format_duration};
use crate::maintenance::wire::{GcReportJson, VerifyJson};

/// Most manifests, tags, records or blobs listed by name; `--json` has them all.
const LISTED: usize = 20;

pub fn gc_report(r: &GcReportJson) -> String {
    let mut out = String::new();
    let _ = write_gc(&mut out, r);
    out
}

fn write_gc(out: &mut String, r: &GcReportJson) -> std::fmt::Result {
    if r.dry_run {
        writeln!(
            out,
            "Garbage collection, dry run: nothing was changed. A collection would have:"
        )?;
    } else {
        writeln!(out, "Garbage collection finished:")?;
    }
    writeln!(
        out,
        "  manifests deleted        {}",
        r.manifests_deleted.len()
    )?;
    list(
        out,
        r.manifests_deleted
            .iter()
            .map(|m| format!("{}@{}", m.repository, m.digest)),
    )?;
    writeln!(out, "  tags deleted             {}", r.tags_deleted.len())?;
    list(
        out,
        r.tags_deleted
            .iter()
            .map(|t| format!("{}:{}", t.repository, t.tag)),
    )?;
    writeln!(out, "  repository links removed {}", r.links_removed)?;
    writeln!(
        out,
        "  blobs removed            {} ({} of payload now dead)",
        r.blobs_removed,
        format_bytes(r.bytes_swept)
    )?;
    writeln!(out, "  kept, touched meanwhile  {}", r.kept_touched)?;
    writeln!(
        out,
        "  segments compacted       {} ({} of live data moved)",
        r.segments_compacted,
        format_bytes(r.bytes_relocated)
    )?;
    writeln!(
        out,
        "  disk space reclaimed     {}",
        format_bytes(r.bytes_reclaimed)
    )?;
    writeln!(
        out,
        "  time                     mark {}, sweep {}, compact {}",
        seconds(r.mark_seconds),
        seconds(r.sweep_seconds),
        seconds(r.compact_seconds)
    )
}

pub fn verify_report(r: &VerifyJson) -> String {
    let mut out = String::new();
    let _ = write_verify(&mut out, r);
    out
}

fn write_verify(out: &mut String, r: &VerifyJson) -> std::fmt::Result {
    writeln!(
        out,
        "Scrub: {} segments, {} records, {} checked.",
        r.segments,
        r.records,
        format_bytes(r.bytes)
    )?;
    writeln!(out, "  damaged records  {}", r.damaged_records.len())?;
    list(
        out,
        r.damaged_records
            .iter()
            .map(|c| format!("segment {} offset {}: {}", c.segment, c.offset, c.reason)),
    )?;
    let fate = if r.damaged_blobs.is_empty() {
        String::new()
    } else if r.quarantine {
        format!(
            " ({} quarantined: no longer served; pushing them again heals them)",
            r.quarantined
        )
    } else {
        " (left in service: --no-quarantine)".to_owned()
    };
    writeln!(out, "  damaged blobs    {}{fate}", r.damaged_blobs.len())?;
    list(out, r.damaged_blobs.iter().cloned())?;
    writeln!(out, "Result: {}", if r.clean { "clean" } else { "DAMAGED" })
}

fn list(out: &mut String, items: impl ExactSizeIterator<Item = String>) -> std::fmt::Result {
    let n = items.len();
    for item in items.take(LISTED) {
        writeln!(out, "      {item}")?;
    }
    if n > LISTED {
        writeln!(
            out,
            "      … and {} more (--json lists them all)",
            n - LISTED
        )?;
    }
    Ok(())
}

fn seconds(s: f64) -> String {
    format_duration(Duration::try_from_secs_f64(s).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::wire::{CorruptRecordJson, ManifestRef};

    #[test]
    fn gc_text() {
        let r = GcReportJson {
            dry_run: true,
            manifests_deleted: (0..25)
                .map(|i| ManifestRef {
                    repository: "app".into(),
                    digest: format!("sha256:{i:064}"),
                })
                .collect(),
            bytes_reclaimed: 3 << 20,
            mark_seconds: 1.24,
            ..GcReportJson::default()
        };
        let text = gc_report(&r);
        assert!(text.starts_with("Garbage collection, dry run"), "{text}");
        assert!(text.contains("manifests deleted        25"), "{text}");
        assert!(text.contains(&format!("app@sha256:{:064}", 19)), "{text}");
        assert!(!text.contains(&format!("app@sha256:{:064}", 20)), "{text}");
        assert!(text.contains("… and 5 more"), "{text}");
        assert!(text.contains("disk space reclaimed     3.0 MiB"), "{text}");
        assert!(text.contains("mark 1.2s, sweep 0ms"), "{text}");
    }

    #[test]
    fn verify_text() {
        let clean = VerifyJson {
            clean: true,
            segments: 2,
            records: 10,
            bytes: 2048,
            quarantine: true,
            ..VerifyJson::default()
        };
        let text = verify_report(&clean);
        assert!(
            text.contains("2 segments, 10 records, 2.0 KiB checked"),
            "{text}"
        );
        assert!(text.ends_with("Result: clean\n"), "{text}");
        let damaged = VerifyJson {
            clean: false,
            damaged_records: vec![CorruptRecordJson {
                segment: 3,
                offset: 4096,
                reason: "payload checksum mismatch".into(),
            }],
            damaged_blobs: vec!["sha256:ab".into()],
            quarantined: 1,
            ..clean
        };
        let text = verify_report(&damaged);
        assert!(
            text.contains("segment 3 offset 4096: payload checksum mismatch"),
            "{text}"
        );
        assert!(text.contains("damaged blobs    1 (1 quarantined"), "{text}");
        assert!(text.ends_with("Result: DAMAGED\n"), "{text}");
    }
}
