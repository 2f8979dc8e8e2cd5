//! Scrub: re-read every record of every segment and name the blobs a damaged byte touches.

use std::collections::BTreeMap;

use redb::ReadableTable;

use super::error::StorageError;
use super::index::schema::{decode_blob, decode_digest_key, BLOBS};
use super::segment::record::{decode_segment_header, rec, seg, trailer, RecordHeader};
use super::store::Store;
use super::throttle::Throttle;
use super::types::{CorruptRecord, VerifyReport};

impl Store {
    /// Checks the header crc and payload blake3 of every record up to each segment's known end.
    /// A bad payload is skipped (its length is trusted from a good header); a bad header ends
    /// the segment's scan and marks the rest of it damaged.
    pub fn verify(&self) -> Result<VerifyReport, StorageError> {
        let _one = self.inner.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.verify_at(None)
    }

    /// The scrub, reading at most `rate` bytes per second. The caller holds the collection
    /// lock, so no segment is deleted or relocated under the scrub.
    pub(crate) fn verify_at(&self, rate: Option<u64>) -> Result<VerifyReport, StorageError> {
        self.check_open()?;
        let mut throttle = Throttle::new(rate);
        let io = self.inner.log.io().clone();
        let mut report = VerifyReport::default();
        let mut damaged: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        let ends = self.inner.log.ends();
        for (&id, &end) in &ends {
            report.segments += 1;
            let end = end.min(io.len(id)?);
            let data = io.read(id, 0, end as usize)?;

            let mut bad = |off: u64, to: u64, reason: String, report: &mut VerifyReport| {
                report.corrupt.push(CorruptRecord {
                    segment: id,
                    offset: off,
                    reason,
                });
                damaged.entry(id).or_default().push((off, to));
            };
            if let Err(e) = decode_segment_header(&data).and_then(|h| {
                if h.id == id {
                    Ok(())
                } else {
                    Err(super::segment::record::FrameError::BadPayload)
                }
            }) {
                bad(0, end, format!("segment header: {e}"), &mut report);
                continue;
            }
            let mut pos = seg::LEN;
            while let Some(rest @ [_, ..]) = data.get(pos..) {
                let h = match RecordHeader::decode(rest) {
                    Ok(h) => h,
                    Err(e) => {
                        bad(pos as u64, end, format!("record header: {e}"), &mut report);
                        break;
                    }
                };
                let total = h.record_len() as usize;
                let Some(record) = rest.get(..total) else {
                    bad(
                        pos as u64,
                        end,
                        "record runs past segment end".into(),
                        &mut report,
                    );
                    break;
                };
                let body = record.get(rec::HEADER_LEN..);
                let body = body.and_then(<[u8]>::split_last_chunk::<{ rec::TRAILER_LEN }>);
                if body.is_none_or(|(payload, sum)| trailer(payload) != *sum) {
                    bad(
                        pos as u64,
                        (pos + total) as u64,
                        "payload checksum mismatch".into(),
                        &mut report,
                    );
                }
                report.records += 1;
                report.bytes += total as u64;
                throttle.spend(total as u64);
                pos += total;
            }
        }
        let txn = self.inner.db.begin_read()?;
        for r in txn.open_table(BLOBS)?.iter()? {
            let (k, v) = r?;
            let (digest, _) = decode_digest_key(k.value())?;
            let (_, extents) = decode_blob(v.value())?;
            let hit = extents.iter().any(|e| {
                let (lo, hi) = (
                    e.offset,
                    e.offset
                        .saturating_add(u64::from(e.len) + rec::TRAILER_LEN as u64),
                );
                ends.get(&e.segment).is_none_or(|&end| hi > end)
                    || damaged
                        .get(&e.segment)
                        .is_some_and(|ranges| ranges.iter().any(|&(a, b)| a < hi && lo < b))
            });
            if hit {
                report.damaged_blobs.push(digest);
            }
        }
        Ok(report)
    }
}
