//! Record and segment-header codec. Offsets are named after storage-format.md; all integers
//! are little-endian.

/// Segment header layout (64 bytes).
pub mod seg {
    pub const MAGIC: &[u8; 8] = b"BERTHSEG";
    pub const OFF_MAGIC: usize = 0;
    pub const OFF_VERSION: usize = 8;
    pub const OFF_HEADER_LEN: usize = 12;
    pub const OFF_SEGMENT_ID: usize = 16;
    pub const OFF_CREATED_MS: usize = 24;
    /// Version 2 on: which stream the segment belongs to (see [`super::Stream`]).
    pub const OFF_STREAM: usize = 32;
    pub const OFF_CRC: usize = 60;
    pub const LEN: usize = 64;
}

/// Record header layout (48 bytes), followed by the payload and a 32-byte blake3 trailer.
pub mod rec {
    pub const MAGIC: &[u8; 4] = b"BREC";
    pub const OFF_MAGIC: usize = 0;
    pub const OFF_VERSION: usize = 4;
    pub const OFF_KIND: usize = 5;
    pub const OFF_FLAGS: usize = 6;
    pub const OFF_PAYLOAD_LEN: usize = 8;
    pub const OFF_RESERVED: usize = 12;
    pub const OFF_SESSION: usize = 16;
    pub const OFF_BLOB_OFFSET: usize = 32;
    pub const OFF_CRC: usize = 40;
    pub const OFF_RESERVED2: usize = 44;
    pub const HEADER_LEN: usize = 48;
    pub const TRAILER_LEN: usize = 32;
    pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
}

/// The format version this code writes (records and segment headers); readers decode every
/// version from 1 up to this one and refuse anything newer (storage-format.md §13).
pub const FORMAT_VERSION: u8 = 3;

/// Which append stream a segment belongs to. Version 1 segments are all [`Stream::Log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stream {
    /// The log: OP records and the chunks of pushes, in the order the index applies them.
    Log = 0,
    /// Chunk records relocated by compaction, named only by `relocate` ops in the log.
    Compaction = 1,
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub id: u64,
    pub version: u8,
    pub stream: Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Bytes of a blob at `blob_offset`, belonging to the session in the header.
    Chunk = 1,
    /// One index change, as a JSON document (storage-format.md, "Index operations"). The log
    /// of these is what recovery replays and what a lost index is rebuilt from.
    Op = 2,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Chunk),
            2 => Some(Kind::Op),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: Kind,
    pub flags: u16,
    pub payload_len: u32,
    pub session: [u8; 16],
    pub blob_offset: u64,
}

/// Why bytes do not decode as a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated record")]
    Truncated,
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported record version {0}")]
    BadVersion(u8),
    /// Written by a newer berth: an older reader must stop, never guess or cut it off.
    #[error("format version {0} is newer than this build understands")]
    Newer(u32),
    #[error("reserved header field is not zero")]
    Reserved,
    #[error("header checksum mismatch")]
    HeaderCrc,
    #[error("unknown record kind {0}")]
    BadKind(u8),
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("malformed payload")]
    BadPayload,
}

/// The `N` bytes at `off`, or `Truncated` when `b` ends first.
fn bytes_at<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], FrameError> {
    b.get(off..)
        .and_then(<[u8]>::first_chunk)
        .copied()
        .ok_or(FrameError::Truncated)
}
fn u16_at(b: &[u8], off: usize) -> Result<u16, FrameError> {
    bytes_at(b, off).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize) -> Result<u32, FrameError> {
    bytes_at(b, off).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Result<u64, FrameError> {
    bytes_at(b, off).map(u64::from_le_bytes)
}

impl RecordHeader {
    /// Encodes the header as this version writes it.
    pub fn encode(&self) -> [u8; rec::HEADER_LEN] {
        self.encode_as(FORMAT_VERSION)
    }

    /// Encodes the header with an explicit format version (tests, fixtures, fuzzing).
    pub fn encode_as(&self, version: u8) -> [u8; rec::HEADER_LEN] {
        let mut h = [0u8; rec::HEADER_LEN];
        h[rec::OFF_MAGIC..rec::OFF_MAGIC + 4].copy_from_slice(rec::MAGIC);
        h[rec::OFF_VERSION] = version;
        h[rec::OFF_KIND] = self.kind as u8;
        h[rec::OFF_FLAGS..rec::OFF_FLAGS + 2].copy_from_slice(&self.flags.to_le_bytes());
        h[rec::OFF_PAYLOAD_LEN..rec::OFF_PAYLOAD_LEN + 4]
            .copy_from_slice(&self.payload_len.to_le_bytes());
        h[rec::OFF_SESSION..rec::OFF_SESSION + 16].copy_from_slice(&self.session);
        h[rec::OFF_BLOB_OFFSET..rec::OFF_BLOB_OFFSET + 8]
            .copy_from_slice(&self.blob_offset.to_le_bytes());
        let crc = crc32fast::hash(&h[..rec::OFF_CRC]);
        h[rec::OFF_CRC..rec::OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header; does not look at the payload.
    pub fn decode(b: &[u8]) -> Result<RecordHeader, FrameError> {
        let Some(b) = b.first_chunk::<{ rec::HEADER_LEN }>() else {
            return Err(FrameError::Truncated);
        };
        if &b[rec::OFF_MAGIC..rec::OFF_MAGIC + 4] != rec::MAGIC {
            return Err(FrameError::BadMagic);
        }
        if crc32fast::hash(&b[..rec::OFF_CRC]) != u32_at(b, rec::OFF_CRC)? {
            return Err(FrameError::HeaderCrc);
        }
        let version = b[rec::OFF_VERSION];
        if version > FORMAT_VERSION {
            return Err(FrameError::Newer(version.into()));
        }
        if version == 0 {
            return Err(FrameError::BadVersion(version));
        }
        if u32_at(b, rec::OFF_RESERVED)? != 0 {
            return Err(FrameError::Reserved);
        }
        let kind = Kind::from_u8(b[rec::OFF_KIND]).ok_or(FrameError::BadKind(b[rec::OFF_KIND]))?;
        Ok(RecordHeader {
            kind,
            flags: u16_at(b, rec::OFF_FLAGS)?,
            payload_len: u32_at(b, rec::OFF_PAYLOAD_LEN)?,
            session: bytes_at(b, rec::OFF_SESSION)?,
            blob_offset: u64_at(b, rec::OFF_BLOB_OFFSET)?,
        })
    }

    /// Bytes the whole record occupies.
    pub fn record_len(&self) -> u64 {
        rec::OVERHEAD as u64 + u64::from(self.payload_len)
    }
}

pub fn trailer(payload: &[u8]) -> [u8; rec::TRAILER_LEN] {
    *blake3::hash(payload).as_bytes()
}

/// A record decoded from the start of `b`, with its payload borrowed.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub header: RecordHeader,
    /// The record's format version (1 ..= [`FORMAT_VERSION`]): it bounds which ops it may hold.
    pub version: u8,
    pub payload: &'a [u8],
}

/// Decodes one record at the start of `b`, checking header crc and payload blake3.
pub fn decode_record(b: &[u8]) -> Result<Decoded<'_>, FrameError> {
    let header = RecordHeader::decode(b)?;
    let payload_len = usize::try_from(header.payload_len).map_err(|_| FrameError::Truncated)?;
    let Some((head, rest)) = b.split_first_chunk::<{ rec::HEADER_LEN }>() else {
        return Err(FrameError::Truncated);
    };
    let Some((payload, rest)) = rest.split_at_checked(payload_len) else {
        return Err(FrameError::Truncated);
    };
    let Some(sum) = rest.first_chunk::<{ rec::TRAILER_LEN }>() else {
        return Err(FrameError::Truncated);
    };
    if trailer(payload) != *sum {
        return Err(FrameError::PayloadChecksum);
    }
    Ok(Decoded {
        header,
        version: head[rec::OFF_VERSION],
        payload,
    })
}

/// Iterates the records of a segment body, stopping at the first undecodable one.
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    pub error: Option<(u64, FrameError)>,
}

impl<'a> Scanner<'a> {
    /// `buf` holds segment bytes starting at segment offset `base`.
    pub fn new(buf: &'a [u8], base: u64) -> Scanner<'a> {
        Scanner {
            buf,
            pos: 0,
            base,
            error: None,
        }
    }

    /// Segment offset just past the last good record returned.
    pub fn valid_end(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The bytes from [`Scanner::valid_end`] on: what is left after the last good record.
    pub fn rest(&self) -> &'a [u8] {
        // `pos` only moves past records that decoded whole, so it never passes the end.
        self.buf.get(self.pos..).unwrap_or_default()
    }
}

impl<'a> Iterator for Scanner<'a> {
    /// (segment offset of the record, decoded record)
    type Item = (u64, Decoded<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.error.is_some() || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        match decode_record(rest) {
            Ok(d) => {
                let at = self.base + self.pos as u64;
                self.pos += d.header.record_len() as usize;
                Some((at, d))
            }
            Err(e) => {
                self.error = Some((self.valid_end(), e));
                None
            }
        }
    }
}

/// Encodes a segment header of the current version.
pub fn encode_segment_header(id: u64, created_ms: u64, stream: Stream) -> [u8; seg::LEN] {
    let mut h = [0u8; seg::LEN];
    h[seg::OFF_MAGIC..seg::OFF_MAGIC + 8].copy_from_slice(seg::MAGIC);
    h[seg::OFF_VERSION..seg::OFF_VERSION + 4]
        .copy_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    h[seg::OFF_HEADER_LEN..seg::OFF_HEADER_LEN + 4]
        .copy_from_slice(&(seg::LEN as u32).to_le_bytes());
    h[seg::OFF_SEGMENT_ID..seg::OFF_SEGMENT_ID + 8].copy_from_slice(&id.to_le_bytes());
    h[seg::OFF_CREATED_MS..seg::OFF_CREATED_MS + 8].copy_from_slice(&created_ms.to_le_bytes());
    h[seg::OFF_STREAM] = stream as u8;
    let crc = crc32fast::hash(&h[..seg::OFF_CRC]);
    h[seg::OFF_CRC..seg::OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header.
pub fn decode_segment_header(b: &[u8]) -> Result<SegmentHeader, FrameError> {
    let Some(b) = b.first_chunk::<{ seg::LEN }>() else {
        return Err(FrameError::Truncated);
    };
    if &b[seg::OFF_MAGIC..seg::OFF_MAGIC + 8] != seg::MAGIC {
        return Err(FrameError::BadMagic);
    }
    if crc32fast::hash(&b[..seg::OFF_CRC]) != u32_at(b, seg::OFF_CRC)? {
        return Err(FrameError::HeaderCrc);
    }
    let version = u32_at(b, seg::OFF_VERSION)?;
    if version > u32::from(FORMAT_VERSION) {
        return Err(FrameError::Newer(version));
    }
    if version == 0 || u32_at(b, seg::OFF_HEADER_LEN)? as usize != seg::LEN {
        return Err(FrameError::BadVersion(version.min(255) as u8));
    }
    let stream = match (version, b[seg::OFF_STREAM]) {
        (1, _) | (_, 0) => Stream::Log,
        (_, 1) => Stream::Compaction,
        _ => return Err(FrameError::Reserved),
    };
    let reserved = if version == 1 {
        &b[seg::OFF_STREAM..seg::OFF_CRC]
    } else {
        &b[seg::OFF_STREAM + 1..seg::OFF_CRC]
    };
    if reserved.iter().any(|&x| x != 0) {
        return Err(FrameError::Reserved);
    }
    Ok(SegmentHeader {
        id: u64_at(b, seg::OFF_SEGMENT_ID)?,
        version: version as u8,
        stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(h: &RecordHeader, payload: &[u8]) -> Vec<u8> {
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v.extend_from_slice(&trailer(payload));
        v
    }

    proptest! {
        #[test]
        fn record_round_trips(kind in 1u8..=2, flags: u16, session: [u8; 16], off: u64,
                              payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let h = RecordHeader { kind: Kind::from_u8(kind).unwrap(), flags,
                                   payload_len: payload.len() as u32, session, blob_offset: off };
            let bytes = frame(&h, &payload);
            let d = decode_record(&bytes).unwrap();
            prop_assert_eq!(d.header, h);
            prop_assert_eq!(d.payload, &payload[..]);
        }

        #[test]
        fn any_flipped_bit_is_caught(payload in proptest::collection::vec(any::<u8>(), 1..256),
                                     pick: usize, bit in 0u8..8) {
            let h = RecordHeader { kind: Kind::Chunk, flags: 0, payload_len: payload.len() as u32,
                                   session: [7; 16], blob_offset: 0 };
            let mut bytes = frame(&h, &payload);
            let i = pick % bytes.len();
            // Reserved header bytes are covered by the crc too, except the 4 after it.
            prop_assume!(!(rec::OFF_RESERVED2..rec::HEADER_LEN).contains(&i));
            bytes[i] ^= 1 << bit;
            prop_assert!(decode_record(&bytes).is_err());
        }

        #[test]
        fn scanner_stops_at_torn_tail(sizes in proptest::collection::vec(0usize..300, 1..8), cut: usize) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let p = vec![i as u8; *n];
                let h = RecordHeader { kind: Kind::Chunk, flags: 0, payload_len: *n as u32,
                                       session: [1; 16], blob_offset: 0 };
                buf.extend(frame(&h, &p));
                ends.push(buf.len() as u64);
            }
            let cut = cut % (buf.len() + 1);
            let mut sc = Scanner::new(&buf[..cut], 100);
            let n = sc.by_ref().count();
            let expect = ends.iter().filter(|e| **e <= cut as u64).count();
            prop_assert_eq!(n, expect);
            prop_assert_eq!(sc.valid_end(), 100 + if expect == 0 { 0 } else { ends[expect - 1] });
        }
    }

    #[test]
    fn segment_header_round_trips() {
        let h = encode_segment_header(42, 1234, Stream::Compaction);
        let d = decode_segment_header(&h).unwrap();
        assert_eq!(
            (d.id, d.version, d.stream),
            (42, FORMAT_VERSION, Stream::Compaction)
        );
        let mut bad = h;
        bad[20] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(FrameError::HeaderCrc));
    }
}
