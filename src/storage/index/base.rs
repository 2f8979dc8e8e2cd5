//! Base images: every row of the index as of one log position, kept as a side file. A rebuild
//! starts from the newest base and replays the log after its position, so compaction may
//! delete log segments before that position (their ops live on in the base) and the segments
//! stay the source of truth (storage-format.md §10).

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use super::ops::Tables;
use super::schema::*;
use crate::storage::error::StorageError;
use crate::storage::segment::io::SegmentIo;
use crate::storage::segment::log::Position;

/// Base file header layout (64 bytes), followed by blocks and nothing else.
mod hdr {
    pub const MAGIC: &[u8; 8] = b"BERTHBAS";
    pub const OFF_VERSION: usize = 8;
    pub const OFF_HEADER_LEN: usize = 12;
    pub const OFF_SEGMENT: usize = 16;
    pub const OFF_OFFSET: usize = 24;
    pub const OFF_CREATED_MS: usize = 32;
    pub const OFF_ROWS: usize = 40;
    pub const OFF_CRC: usize = 60;
    pub const LEN: usize = 64;
}

const BASE_VERSION: u32 = 1;
/// A block's payload is cut after the row that takes it past this size.
const BLOCK_BYTES: usize = 1 << 20;
const TAG_PREFIX: &str = "base-";

/// Every table a base holds, with its id in the file. `meta` is not among them: a base's
/// position is the checkpoint, and the format version is the reader's own.
const TABLES: [(u8, &str); 10] = [
    (1, "blobs"),
    (2, "repo_blobs"),
    (3, "repos"),
    (4, "manifests"),
    (5, "manifest_refs"),
    (6, "tags"),
    (7, "referrers"),
    (8, "uploads"),
    (9, "upload_chunks"),
    (10, "segments"),
];

/// One index row: table id, key bytes, value bytes (`repos` keys are UTF-8, `segments` keys
/// u64 LE).
pub type Row = (u8, Vec<u8>, Vec<u8>);

/// Every row of the index in `txn` (table by table, in key order), for bases and for tests
/// that compare two indexes.
pub fn dump(txn: &ReadTransaction) -> Result<Vec<Row>, StorageError> {
    fn bytes_table(
        txn: &ReadTransaction,
        id: u8,
        def: TableDefinition<&[u8], &[u8]>,
        out: &mut Vec<Row>,
    ) -> Result<(), StorageError> {
        for r in txn.open_table(def)?.iter()? {
            let (k, v) = r?;
            out.push((id, k.value().to_vec(), v.value().to_vec()));
        }
        Ok(())
    }
    let mut out = Vec::new();
    bytes_table(txn, 1, BLOBS, &mut out)?;
    bytes_table(txn, 2, REPO_BLOBS, &mut out)?;
    for r in txn.open_table(REPOS)?.iter()? {
        out.push((3, r?.0.value().as_bytes().to_vec(), Vec::new()));
    }
    bytes_table(txn, 4, MANIFESTS, &mut out)?;
    bytes_table(txn, 5, MANIFEST_REFS, &mut out)?;
    bytes_table(txn, 6, TAGS, &mut out)?;
    bytes_table(txn, 7, REFERRERS, &mut out)?;
    bytes_table(txn, 8, UPLOADS, &mut out)?;
    bytes_table(txn, 9, UPLOAD_CHUNKS, &mut out)?;
    for r in txn.open_table(SEGMENTS)?.iter()? {
        let (k, v) = r?;
        out.push((10, k.value().to_le_bytes().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

/// The name of a table id (for error messages and dumps).
pub fn table_name(id: u8) -> &'static str {
    TABLES
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("unknown", |(_, n)| n)
}

/// A decoded base: its position and rows.
pub struct Base {
    pub name: String,
    pub position: Position,
    pub rows: Vec<Row>,
}

fn file_tag(p: Position) -> String {
    format!("{TAG_PREFIX}{:016x}", p.offset)
}

/// The position a side file name encodes, if it names a base.
fn parse_name(name: &str) -> Option<Position> {
    let (seg, off) = name.split_once(".seg.")?;
    let off = off.strip_prefix(TAG_PREFIX)?;
    if seg.len() != 16 || off.len() != 16 {
        return None;
    }
    Some(Position {
        segment: u64::from_str_radix(seg, 16).ok()?,
        offset: u64::from_str_radix(off, 16).ok()?,
    })
}

/// Base files present, newest position first.
pub fn list(io: &dyn SegmentIo) -> Result<Vec<(Position, String)>, StorageError> {
    let mut out: Vec<(Position, String)> = io
        .list_aside()?
        .into_iter()
        .filter_map(|n| Some((parse_name(&n)?, n)))
        .collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ok(out)
}

fn encode(position: Position, rows: &[Row]) -> Vec<u8> {
    let mut h = [0u8; hdr::LEN];
    h[..8].copy_from_slice(hdr::MAGIC);
    h[hdr::OFF_VERSION..hdr::OFF_VERSION + 4].copy_from_slice(&BASE_VERSION.to_le_bytes());
    h[hdr::OFF_HEADER_LEN..hdr::OFF_HEADER_LEN + 4]
        .copy_from_slice(&(hdr::LEN as u32).to_le_bytes());
    h[hdr::OFF_SEGMENT..hdr::OFF_SEGMENT + 8].copy_from_slice(&position.segment.to_le_bytes());
    h[hdr::OFF_OFFSET..hdr::OFF_OFFSET + 8].copy_from_slice(&position.offset.to_le_bytes());
    h[hdr::OFF_CREATED_MS..hdr::OFF_CREATED_MS + 8].copy_from_slice(&now_ms().to_le_bytes());
    h[hdr::OFF_ROWS..hdr::OFF_ROWS + 8].copy_from_slice(&(rows.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&h[..hdr::OFF_CRC]);
    h[hdr::OFF_CRC..hdr::LEN].copy_from_slice(&crc.to_le_bytes());
    let mut out = h.to_vec();
    let mut block = Vec::with_capacity(BLOCK_BYTES + 4096);
    let flush = |block: &mut Vec<u8>, out: &mut Vec<u8>| {
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(block);
        out.extend_from_slice(blake3::hash(block).as_bytes());
        block.clear();
    };
    for (table, k, v) in rows {
        block.push(*table);
        block.extend_from_slice(&(k.len() as u32).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u32).to_le_bytes());
        block.extend_from_slice(v);
        if block.len() >= BLOCK_BYTES {
            flush(&mut block, &mut out);
        }
    }
    if !block.is_empty() {
        flush(&mut block, &mut out);
    }
    out
}

fn decode(name: &str, b: &[u8]) -> Result<Base, StorageError> {
    let bad = |why: &str| StorageError::Corrupt(format!("base segments/{name}: {why}"));
    let Some((h, mut blocks)) = b.split_first_chunk::<{ hdr::LEN }>() else {
        return Err(bad("not a base file"));
    };
    let u32_at = |o: usize| {
        h.get(o..)
            .and_then(<[u8]>::first_chunk)
            .copied()
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        h.get(o..)
            .and_then(<[u8]>::first_chunk)
            .copied()
            .map(u64::from_le_bytes)
    };
    if &h[..8] != hdr::MAGIC {
        return Err(bad("not a base file"));
    }
    if crc32fast::hash(&h[..hdr::OFF_CRC]) != u32_at(hdr::OFF_CRC).unwrap_or(0) {
        return Err(bad("header checksum mismatch"));
    }
    let version = u32_at(hdr::OFF_VERSION).unwrap_or(0);
    if version > BASE_VERSION {
        return Err(StorageError::UnsupportedFormat(format!(
            "base segments/{name} has version {version}, newer than this build understands"
        )));
    }
    if version == 0 || u32_at(hdr::OFF_HEADER_LEN) != Some(hdr::LEN as u32) {
        return Err(bad("bad header"));
    }
    let position = Position {
        segment: u64_at(hdr::OFF_SEGMENT).unwrap_or(0),
        offset: u64_at(hdr::OFF_OFFSET).unwrap_or(0),
    };
    let want_rows = u64_at(hdr::OFF_ROWS).unwrap_or(0);
    let mut rows = Vec::new();
    while !blocks.is_empty() {
        let (payload, rest) = length_prefixed(blocks).ok_or_else(|| bad("torn block"))?;
        let (sum, rest) = rest
            .split_first_chunk::<32>()
            .ok_or_else(|| bad("torn block"))?;
        if blake3::hash(payload).as_bytes() != sum {
            return Err(bad("block checksum mismatch"));
        }
        let mut row = payload;
        while let Some((&table, rest)) = row.split_first() {
            if !TABLES.iter().any(|(id, _)| *id == table) {
                return Err(bad("unknown table"));
            }
            let (k, rest) = length_prefixed(rest).ok_or_else(|| bad("short row"))?;
            let (v, rest) = length_prefixed(rest).ok_or_else(|| bad("short row"))?;
            rows.push((table, k.to_vec(), v.to_vec()));
            row = rest;
        }
        blocks = rest;
    }
    if rows.len() as u64 != want_rows {
        return Err(bad("row count does not match the header (torn write?)"));
    }
    Ok(Base {
        name: name.to_string(),
        position,
        rows,
    })
}

/// Splits a field with a u32 LE length prefix off the front of `b`; `None` if `b` is short.
fn length_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    rest.split_at_checked(usize::try_from(u32::from_le_bytes(*len)).ok()?)
}

/// Writes a base of the index as `txn` sees it, at the checkpoint `txn` records; returns that
/// position. The file is synced (and its directory) before this returns.
pub fn write(io: &dyn SegmentIo, txn: &ReadTransaction) -> Result<Position, StorageError> {
    let position = match txn.open_table(META)?.get(META_CHECKPOINT)? {
        Some(v) => decode_position(v.value())?,
        None => return Err(StorageError::Corrupt("index has no checkpoint".into())),
    };
    let bytes = encode(position, &dump(txn)?);
    let tag = file_tag(position);
    match io.keep_aside(position.segment, &tag, &bytes) {
        Ok(()) => Ok(position),
        // An earlier run wrote a base at this very position: the same index state, unless a
        // crash tore it, in which case it is written again.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let name = format!(
                "{}.{tag}",
                crate::storage::segment::io::segment_file_name(position.segment)
            );
            let whole = io
                .read_aside(&name)
                .is_ok_and(|b| decode(&name, &b).is_ok());
            if !whole {
                io.remove_aside(&name)?;
                io.keep_aside(position.segment, &tag, &bytes)?;
            }
            Ok(position)
        }
        Err(e) => Err(StorageError::from_io(e)),
    }
}

/// The base a rebuild starts from. Only the newest base may fail to decode: a crash tore it
/// while it was written, before anything relied on it (segments are deleted only once it is
/// durable), so the base before it, or the whole log when there is none, is just as good.
/// Damage to any other base is an error: segments it stood for may be gone.
pub fn load_newest(io: &dyn SegmentIo) -> Result<Option<Base>, StorageError> {
    for (i, (_, name)) in list(io)?.into_iter().enumerate() {
        match io
            .read_aside(&name)
            .map_err(StorageError::from)
            .and_then(|b| decode(&name, &b))
        {
            Ok(base) => return Ok(Some(base)),
            Err(e @ StorageError::UnsupportedFormat(_)) => return Err(e),
            Err(e) if i == 0 => {
                tracing::warn!(base = %name, error = %e, "newest base torn; using the one before")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Removes every base older than `keep`.
pub fn prune(io: &dyn SegmentIo, keep: Position) -> Result<(), StorageError> {
    for (p, name) in list(io)? {
        if p < keep {
            io.remove_aside(&name)?;
        }
    }
    Ok(())
}

/// Inserts a base's rows into an empty index.
pub fn restore(t: &mut Tables<'_>, rows: &[Row]) -> Result<(), StorageError> {
    let bad = || StorageError::Corrupt("malformed row in base".into());
    for (table, k, v) in rows {
        let (k, v) = (&k[..], &v[..]);
        match table {
            1 => drop(t.blobs.insert(k, v)?),
            2 => drop(t.repo_blobs.insert(k, v)?),
            3 => drop(
                t.repos
                    .insert(std::str::from_utf8(k).map_err(|_| bad())?, ())?,
            ),
            4 => drop(t.manifests.insert(k, v)?),
            5 => drop(t.refs.insert(k, v)?),
            6 => drop(t.tags.insert(k, v)?),
            7 => drop(t.referrers.insert(k, v)?),
            8 => drop(t.uploads.insert(k, v)?),
            9 => drop(t.chunks.insert(k, v)?),
            10 => {
                let id = u64::from_le_bytes(k.try_into().map_err(|_| bad())?);
                drop(t.segments.insert(id, v)?)
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_round_trips_and_refuses_a_torn_copy() {
        let rows: Vec<Row> = (0..5000u32)
            .map(|i| {
                (
                    (i % 10) as u8 + 1,
                    i.to_le_bytes().to_vec(),
                    vec![7u8; (i % 300) as usize],
                )
            })
            .collect();
        let p = Position {
            segment: 3,
            offset: 4096,
        };
        let b = encode(p, &rows);
        let name = format!("0000000000000003.seg.{}", file_tag(p));
        assert_eq!(parse_name(&name), Some(p));
        let back = decode(&name, &b).unwrap();
        assert_eq!(back.position, p);
        assert!(back.rows == rows);
        assert!(decode(&name, &b[..b.len() - 1]).is_err());
        let mut flipped = b.clone();
        flipped[b.len() / 2] ^= 1;
        assert!(decode(&name, &flipped).is_err());
    }
}
