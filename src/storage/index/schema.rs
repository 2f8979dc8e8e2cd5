//! The redb tables and the byte encodings of their keys and values (storage-format.md §Index).

use std::collections::BTreeMap;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::oci::digest::{Algorithm, Digest};
use crate::storage::error::StorageError;
use crate::storage::segment::log::{Extent, Position};

/// digest key -> blob value (size + extents).
pub const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// repo 0x00 digest key -> linked-at ms (u64 LE).
pub const REPO_BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("repo_blobs");
/// repo -> ().
pub const REPOS: TableDefinition<&str, ()> = TableDefinition::new("repos");
/// repo 0x00 digest key -> manifest JSON.
pub const MANIFESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifests");
/// repo 0x00 tag -> digest key of the manifest, then tagged-at ms (u64 LE).
pub const TAGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tags");
/// repo 0x00 manifest digest key -> the digest keys it references, concatenated.
pub const MANIFEST_REFS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifest_refs");
/// repo 0x00 subject digest key referrer digest key -> referrer JSON.
pub const REFERRERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("referrers");
/// upload id (16 bytes) -> started_at ms (u64 LE) + repo.
pub const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uploads");
/// upload id + blob offset (u64 BE) -> extent.
pub const UPLOAD_CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("upload_chunks");
/// segment id -> live bytes (u64 LE) + dead bytes (u64 LE).
pub const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// name -> value; see META_* keys.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub const META_FORMAT: &str = "format_version";
pub const META_CHECKPOINT: &str = "checkpoint";
/// Version 2 added `manifest_refs`, times in `repo_blobs` and `tags`, and `pushed_ms` in
/// manifest metadata. An older index is rebuilt from the log (and base) on open.
pub const INDEX_FORMAT_VERSION: u32 = 2;

const EXTENT_LEN: usize = 20;

/// `[algorithm code][raw digest]`: fixed length per algorithm, so keys concatenate unambiguously.
pub fn digest_key(d: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + d.as_bytes().len());
    k.push(d.algorithm().code());
    k.extend_from_slice(d.as_bytes());
    k
}

/// Decodes a digest key at the start of `b`, returning it and the bytes it used.
pub fn decode_digest_key(b: &[u8]) -> Result<(Digest, usize), StorageError> {
    let bad = || StorageError::Corrupt("bad digest key in index".into());
    let alg = Algorithm::from_code(*b.first().ok_or_else(bad)?).ok_or_else(bad)?;
    let raw = b.get(1..1 + alg.digest_len()).ok_or_else(bad)?;
    Ok((
        Digest::from_raw(alg, raw).ok_or_else(bad)?,
        1 + alg.digest_len(),
    ))
}

/// `repo 0x00 rest`: repository names never contain 0x00, so a repo's keys form one range.
/// A `repo 0x00 rest` key split into the repository and the rest.
pub fn split_repo_key(k: &[u8]) -> Result<(&str, &[u8]), StorageError> {
    let mut parts = k.splitn(2, |&b| b == 0);
    let (Some(repo), Some(rest)) = (parts.next(), parts.next()) else {
        return Err(StorageError::Corrupt("index key without repository".into()));
    };
    let repo = std::str::from_utf8(repo)
        .map_err(|_| StorageError::Corrupt("repository not utf-8".into()))?;
    Ok((repo, rest))
}

pub fn repo_key(repo: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(repo.len() + 1 + rest.len());
    k.extend_from_slice(repo.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// What follows `prefix` in `key`, a key read from [`prefix_range`] of that prefix.
pub fn key_after<'k>(key: &'k [u8], prefix: &[u8]) -> Result<&'k [u8], StorageError> {
    key.strip_prefix(prefix)
        .ok_or_else(|| StorageError::Corrupt("index key outside its range".into()))
}

/// The half-open key range holding every `repo 0x00 prefix…` key.
pub fn prefix_range(repo: &str, prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = repo_key(repo, prefix);
    let mut end = start.clone();
    // Increment the last byte that is not 0xff; a prefix of all 0xff cannot occur here because
    // it always contains the 0x00 separator.
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    (start, end)
}

fn u64_le(b: &[u8], off: usize) -> Result<u64, StorageError> {
    let s = b
        .get(off..off + 8)
        .ok_or_else(|| StorageError::Corrupt("short index value".into()))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn u32_le(b: &[u8], off: usize) -> Result<u32, StorageError> {
    let s = b
        .get(off..off + 4)
        .ok_or_else(|| StorageError::Corrupt("short index value".into()))?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

pub fn encode_extent(e: &Extent, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.segment.to_le_bytes());
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
}

pub fn decode_extent(b: &[u8]) -> Result<Extent, StorageError> {
    Ok(Extent {
        segment: u64_le(b, 0)?,
        offset: u64_le(b, 8)?,
        len: u32_le(b, 16)?,
    })
}

/// Blob value: size (u64 LE), extent count (u32 LE), then 20-byte extents.
pub fn encode_blob(size: u64, extents: &[Extent]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + EXTENT_LEN * extents.len());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    for e in extents {
        encode_extent(e, &mut v);
    }
    v
}

pub fn decode_blob(b: &[u8]) -> Result<(u64, Vec<Extent>), StorageError> {
    let size = u64_le(b, 0)?;
    let n = u32_le(b, 8)? as usize;
    let extents = match b.get(12..) {
        Some(e) if e.len() == n * EXTENT_LEN => e,
        _ => return Err(StorageError::Corrupt("blob value length".into())),
    };
    let extents = extents
        .chunks_exact(EXTENT_LEN)
        .map(decode_extent)
        .collect::<Result<_, _>>()?;
    Ok((size, extents))
}

/// Tag value: the manifest's digest key, then when it was tagged.
pub fn encode_tag(manifest: &[u8], at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(manifest.len() + 8);
    v.extend_from_slice(manifest);
    v.extend_from_slice(&at_ms.to_le_bytes());
    v
}

/// The manifest's digest key and the tag time of a tag value.
pub fn decode_tag(b: &[u8]) -> Result<(&[u8], u64), StorageError> {
    let (_, n) = decode_digest_key(b)?;
    let (key, rest) = b
        .split_at_checked(n)
        .ok_or_else(|| StorageError::Corrupt("short index value".into()))?;
    Ok((key, u64_le(rest, 0)?))
}

/// Concatenated digest keys (each fixed-length by its first byte).
pub fn decode_digest_keys(mut b: &[u8]) -> Result<Vec<Digest>, StorageError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (d, n) = decode_digest_key(b)?;
        out.push(d);
        b = b.get(n..).unwrap_or_default();
    }
    Ok(out)
}

pub fn encode_time(ms: u64) -> [u8; 8] {
    ms.to_le_bytes()
}

pub fn decode_time(b: &[u8]) -> Result<u64, StorageError> {
    u64_le(b, 0)
}

pub fn encode_upload(started_ms: u64, repo: &str) -> Vec<u8> {
    let mut v = started_ms.to_le_bytes().to_vec();
    v.extend_from_slice(repo.as_bytes());
    v
}

pub fn decode_upload(b: &[u8]) -> Result<(u64, String), StorageError> {
    let started = u64_le(b, 0)?;
    let repo = String::from_utf8(b.get(8..).unwrap_or_default().to_vec())
        .map_err(|_| StorageError::Corrupt("upload repo not utf-8".into()))?;
    Ok((started, repo))
}

pub fn upload_chunk_key(id: &[u8; 16], blob_offset: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(id);
    k[16..].copy_from_slice(&blob_offset.to_be_bytes());
    k
}

/// The blob offset of an `upload_chunks` key.
pub fn decode_upload_chunk_key(k: &[u8]) -> Result<u64, StorageError> {
    match k.split_last_chunk::<8>() {
        Some((id, off)) if id.len() == 16 => Ok(u64::from_be_bytes(*off)),
        _ => Err(StorageError::Corrupt("upload chunk key length".into())),
    }
}

pub fn encode_space(live: u64, dead: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&live.to_le_bytes());
    v[8..].copy_from_slice(&dead.to_le_bytes());
    v
}

pub fn decode_space(b: &[u8]) -> Result<(u64, u64), StorageError> {
    Ok((u64_le(b, 0)?, u64_le(b, 8)?))
}

pub fn encode_position(p: Position) -> [u8; 16] {
    encode_space(p.segment, p.offset)
}

pub fn decode_position(b: &[u8]) -> Result<Position, StorageError> {
    let (segment, offset) = decode_space(b)?;
    Ok(Position { segment, offset })
}

/// Manifest metadata, stored as JSON so new fields stay readable by older code.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestMeta {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the manifest was pushed (0 for manifests logged before format version 2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pushed_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| StorageError::Index(e.to_string()))
}

pub fn from_json<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(b).map_err(|e| StorageError::Corrupt(format!("index json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_value_round_trips() {
        let ex = vec![
            Extent {
                segment: 1,
                offset: 112,
                len: 5,
            },
            Extent {
                segment: 2,
                offset: 64 + 48,
                len: u32::MAX,
            },
        ];
        let v = encode_blob(7, &ex);
        assert_eq!(decode_blob(&v).unwrap(), (7, ex));
        assert!(decode_blob(&v[..v.len() - 1]).is_err());
    }

    #[test]
    fn prefix_range_covers_only_the_repo() {
        let (lo, hi) = prefix_range("a/b", b"");
        assert!(repo_key("a/b", b"zzz").as_slice() < hi.as_slice());
        assert!(repo_key("a/b", b"").as_slice() >= lo.as_slice());
        assert!(repo_key("a/bc", b"").as_slice() >= hi.as_slice());
        assert!(repo_key("a/b/c", b"").as_slice() >= hi.as_slice());
    }

    #[test]
    fn digest_key_round_trips() {
        let d = Digest::of(Algorithm::Sha512, b"x");
        let mut k = digest_key(&d);
        k.push(9);
        assert_eq!(decode_digest_key(&k).unwrap(), (d, 65));
    }

    #[test]
    fn upload_chunk_key_round_trips() {
        let k = upload_chunk_key(&[3; 16], 1 << 40);
        assert_eq!(decode_upload_chunk_key(&k).unwrap(), 1 << 40);
        assert!(decode_upload_chunk_key(&k[..23]).is_err());
        assert!(decode_upload_chunk_key(&[k.as_slice(), &[0]].concat()).is_err());
    }

    #[test]
    fn repo_key_splits_at_the_first_nul() {
        let k = repo_key("a/b", b"x\0y");
        assert_eq!(split_repo_key(&k).unwrap(), ("a/b", &b"x\0y"[..]));
        assert!(split_repo_key(b"no separator").is_err());
    }
}
