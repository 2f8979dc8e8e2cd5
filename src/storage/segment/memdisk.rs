//! An in-memory, fault-injecting disk for crash and disk-full tests.
//!
//! It serves both the segment files ([`SegmentIo`]) and the redb index file
//! ([`redb::StorageBackend`]), records every write, truncate and sync in one global log, and can
//! rebuild the image a power cut would leave after any prefix of that log: writes covered by a
//! later sync of the same file survive, the others are kept, dropped or torn at random. Size
//! changes are durable in order. Creating or removing a segment (or a side file) is durable
//! only once a later directory sync covers it; before that the image may or may not have it.
//! The index file's name is always durable (it lives in another directory, which the store
//! syncs itself). See storage-format.md, "Assumptions".

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::io::{LockGuard, SegmentIo, SegmentPin};

const INDEX_FILE: &str = "index.redb";
/// Side files recovery keeps next to the segments (`SegmentIo::keep_aside`).
const ASIDE_PREFIX: &str = "aside/";

#[derive(Clone, Debug)]
enum Op {
    /// Creating or removing a name in the segment directory is durable only once a later
    /// `SyncDir` covers it.
    Create {
        file: String,
    },
    Remove {
        file: String,
    },
    /// `fsync` of the segment directory: every earlier create and remove there is durable.
    SyncDir,
    Write {
        file: String,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        file: String,
        len: u64,
    },
    Sync {
        file: String,
    },
}

#[derive(Default)]
struct DiskState {
    files: BTreeMap<String, Vec<u8>>,
    /// Contents of removed segments, for the pins that still read them (never durable).
    removed: BTreeMap<String, Vec<u8>>,
    log: Vec<Op>,
    /// Total bytes segment files may occupy; writes past it fail with ENOSPC after writing
    /// what fits, like a real full disk.
    segment_space: Option<u64>,
    record: bool,
    /// Set while a store holds the disk's lock ([`SegmentIo::lock`]).
    locked: bool,
}

/// A shared in-memory disk. Clone the `Arc` to hand it to several backends.
#[derive(Default)]
pub struct MemDisk {
    state: Mutex<DiskState>,
}

impl std::fmt::Debug for MemDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemDisk")
    }
}

fn seg_name(id: u64) -> String {
    format!("seg/{id:016x}")
}

/// Whether `file` lives in the segment directory (segments and side files), whose creates and
/// removes need a directory sync to be durable.
fn in_segment_dir(file: &str) -> bool {
    file.starts_with("seg/") || file.starts_with(ASIDE_PREFIX)
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    if let Some(dst) = buf.get_mut(offset as usize..end) {
        dst.copy_from_slice(data);
    }
}

/// splitmix64: a tiny deterministic generator so images are reproducible from a seed.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

impl MemDisk {
    /// A disk that records its operation log (for power-cut replays).
    pub fn new() -> Arc<MemDisk> {
        let d = MemDisk::default();
        d.lock().record = true;
        Arc::new(d)
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn segments(self: &Arc<Self>) -> Arc<dyn SegmentIo> {
        Arc::new(MemSegments(self.clone()))
    }

    pub fn index(self: &Arc<Self>) -> MemIndexFile {
        MemIndexFile(self.clone())
    }

    /// Whether the index file holds anything (an empty one means "create a new index").
    pub fn has_index(&self) -> bool {
        self.lock()
            .files
            .get(INDEX_FILE)
            .is_some_and(|f| !f.is_empty())
    }

    /// Drops the index file, as if `index.redb` had been lost.
    pub fn remove_index(&self) {
        let mut st = self.lock();
        st.files.remove(INDEX_FILE);
        MemDisk::log(
            &mut st,
            Op::Remove {
                file: INDEX_FILE.to_string(),
            },
        );
    }

    /// Limits the bytes segment files may hold; `None` lifts the limit.
    pub fn set_segment_space(&self, limit: Option<u64>) {
        self.lock().segment_space = limit;
    }

    /// Number of operations logged so far; a crash "after op n" keeps ops `0..n`.
    pub fn op_count(&self) -> usize {
        self.lock().log.len()
    }

    /// Log positions just after each sync (of a file or of the directory), the instants a power
    /// cut is most interesting.
    pub fn sync_points(&self) -> Vec<usize> {
        let st = self.lock();
        st.log
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Sync { .. } | Op::SyncDir))
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// One line per logged operation (for diagnosing a failing replay).
    pub fn describe_ops(&self, range: std::ops::Range<usize>) -> Vec<String> {
        let st = self.lock();
        st.log
            .get(range.start.min(st.log.len())..range.end.min(st.log.len()))
            .unwrap_or(&[])
            .iter()
            .map(|op| match op {
                Op::Write { file, offset, data } => {
                    format!("write {file} @{offset} +{}", data.len())
                }
                Op::SetLen { file, len } => format!("set_len {file} {len}"),
                Op::Sync { file } => format!("sync {file}"),
                Op::Create { file } => format!("create {file}"),
                Op::Remove { file } => format!("remove {file}"),
                Op::SyncDir => "sync dir".to_string(),
            })
            .collect()
    }

    /// Side files kept by recovery: (name after the segment's, e.g. `…0003.seg.tail-…`, bytes).
    pub fn aside_files(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .files
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(ASIDE_PREFIX)?.to_string(), v.clone())))
            .collect()
    }

    /// Flips one byte of a segment in place (for corruption tests).
    pub fn corrupt_segment_byte(&self, id: u64, offset: u64) {
        if let Some(f) = self.lock().files.get_mut(&seg_name(id)) {
            if let Some(b) = f.get_mut(offset as usize) {
                *b ^= 0x40;
            }
        }
    }

    /// The disk a power cut after the first `point` logged operations would leave behind.
    ///
    /// A write survives if a later sync of its file (before the cut) covers it; otherwise it is
    /// kept, dropped or torn at random (in half the images, most are kept). A create or remove in the segment directory holds if a
    /// later directory sync covers it; otherwise it may or may not have happened: a created file
    /// may vanish (with whatever was synced into it), a removed one may come back with what it
    /// held. Size changes hold in order.
    pub fn power_cut_image(&self, point: usize, seed: u64) -> Arc<MemDisk> {
        let st = self.lock();
        let ops = st.log.get(..point).unwrap_or(&st.log);
        let mut last_sync: BTreeMap<&str, usize> = BTreeMap::new();
        let mut last_dir_sync = None;
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Sync { file } => {
                    last_sync.insert(file.as_str(), i);
                }
                Op::SyncDir => last_dir_sync = Some(i),
                _ => {}
            }
        }
        let mut rng = SplitMix(seed);
        // Half the images keep, drop or tear each unsynced write alike; the other half keep
        // most of them, which leaves holes (a lost or torn write before later whole ones)
        // where the first kind mostly leaves a short, torn end.
        let keeps_most = rng.below(2) == 0;
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let name_durable = |file: &str| !in_segment_dir(file) || last_dir_sync > Some(i);
            let file = match op {
                Op::SyncDir => continue,
                Op::Create { file } => {
                    if name_durable(file) || rng.below(2) == 0 {
                        files.insert(file.clone(), Vec::new());
                    } else {
                        // The name never reached the disk: neither did anything written to it.
                        files.remove(file);
                    }
                    continue;
                }
                Op::Remove { file } => {
                    if name_durable(file) || rng.below(2) == 0 {
                        files.remove(file);
                    }
                    continue;
                }
                Op::Write { file, .. } | Op::SetLen { file, .. } | Op::Sync { file } => file,
            };
            let durable = last_sync.get(file.as_str()).is_some_and(|&s| s > i);
            let Some(buf) = (match files.get_mut(file.as_str()) {
                Some(buf) => Some(buf),
                // The index file comes into being with its first write or size change.
                None if !in_segment_dir(file) => Some(files.entry(file.clone()).or_default()),
                None => None,
            }) else {
                continue;
            };
            match op {
                Op::Sync { .. } | Op::Create { .. } | Op::Remove { .. } | Op::SyncDir => {}
                // Size changes are journaled metadata: they reach the disk in order, before the
                // data writes issued after them (redb relies on this when it grows its file).
                Op::SetLen { len, .. } => buf.resize(*len as usize, 0),
                Op::Write { offset, data, .. } => {
                    if durable {
                        write_into(buf, *offset, data);
                    } else {
                        let fate = match (keeps_most, rng.below(8)) {
                            (false, _) => rng.below(3),
                            (true, 0) => 0,
                            (true, 1) => 2,
                            (true, _) => 1,
                        };
                        match fate {
                            0 => {}
                            1 => write_into(buf, *offset, data),
                            _ => {
                                let keep = rng.below(data.len() as u64 + 1) as usize;
                                write_into(buf, *offset, data.get(..keep).unwrap_or(data));
                            }
                        }
                    }
                }
            }
        }
        let out = MemDisk::default();
        {
            let mut o = out.lock();
            o.files = files;
            o.record = false;
        }
        Arc::new(out)
    }

    fn log(st: &mut DiskState, op: Op) {
        if st.record {
            st.log.push(op);
        }
    }
}

struct MemSegments(Arc<MemDisk>);

/// The held lock of a [`MemDisk`]; dropping it releases the lock.
struct MemLock(Arc<MemDisk>);

impl Drop for MemLock {
    fn drop(&mut self) {
        self.0.lock().locked = false;
    }
}

fn missing(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl SegmentIo for MemSegments {
    fn lock(&self) -> io::Result<LockGuard> {
        let mut st = self.0.lock();
        if st.locked {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        st.locked = true;
        Ok(Box::new(MemLock(self.0.clone())))
    }

    fn list(&self) -> io::Result<Vec<u64>> {
        let st = self.0.lock();
        Ok(st
            .files
            .keys()
            .filter_map(|k| k.strip_prefix("seg/"))
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect())
    }

    fn create(&self, id: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        let name = seg_name(id);
        if st.files.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name));
        }
        st.files.insert(name.clone(), Vec::new());
        MemDisk::log(&mut st, Op::Create { file: name });
        Ok(())
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        let name = seg_name(id);
        let mut st = self.0.lock();
        let data = st.files.remove(&name).ok_or_else(|| missing(&name))?;
        st.removed.insert(name.clone(), data);
        MemDisk::log(&mut st, Op::Remove { file: name });
        Ok(())
    }

    fn len(&self, id: u64) -> io::Result<u64> {
        let name = seg_name(id);
        self.0
            .lock()
            .files
            .get(&name)
            .map(|f| f.len() as u64)
            .ok_or_else(|| missing(&name))
    }

    fn write_at(&self, id: u64, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let mut st = self.0.lock();
        let name = seg_name(id);
        let used: u64 = st
            .files
            .iter()
            .filter(|(k, _)| k.starts_with("seg/") && **k != name)
            .map(|(_, v)| v.len() as u64)
            .sum();
        let limit = st.segment_space;
        let mut off = offset;
        for b in bufs {
            let cur_len = st.files.get(&name).ok_or_else(|| missing(&name))?.len() as u64;
            let end = off + b.len() as u64;
            let allowed = match limit {
                Some(limit) if used + end.max(cur_len) > limit => (limit.saturating_sub(used))
                    .saturating_sub(off)
                    .min(b.len() as u64)
                    as usize,
                _ => b.len(),
            };
            let data = b.get(..allowed).unwrap_or(b).to_vec();
            if let Some(f) = st.files.get_mut(&name) {
                write_into(f, off, &data);
            }
            MemDisk::log(
                &mut st,
                Op::Write {
                    file: name.clone(),
                    offset: off,
                    data,
                },
            );
            if allowed < b.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            off = end;
        }
        Ok(())
    }

    fn read(&self, id: u64, offset: u64, len: usize) -> io::Result<Bytes> {
        let st = self.0.lock();
        let name = seg_name(id);
        read_range(
            st.files.get(&name).ok_or_else(|| missing(&name))?,
            offset,
            len,
        )
        .map(Bytes::copy_from_slice)
    }

    fn pin(&self, id: u64) -> io::Result<Arc<dyn SegmentPin>> {
        let name = seg_name(id);
        if !self.0.lock().files.contains_key(&name) {
            return Err(missing(&name));
        }
        Ok(Arc::new(MemPin {
            disk: self.0.clone(),
            name,
        }))
    }

    fn sync_data(&self, id: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        MemDisk::log(&mut st, Op::Sync { file: seg_name(id) });
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        MemDisk::log(&mut self.0.lock(), Op::SyncDir);
        Ok(())
    }

    fn keep_aside(&self, id: u64, tag: &str, data: &[u8]) -> io::Result<()> {
        let mut st = self.0.lock();
        let file = format!("{ASIDE_PREFIX}{id:016x}.seg.{tag}");
        if st.files.contains_key(&file) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, file));
        }
        st.files.insert(file.clone(), data.to_vec());
        MemDisk::log(&mut st, Op::Create { file: file.clone() });
        MemDisk::log(
            &mut st,
            Op::Write {
                file: file.clone(),
                offset: 0,
                data: data.to_vec(),
            },
        );
        MemDisk::log(&mut st, Op::Sync { file });
        MemDisk::log(&mut st, Op::SyncDir);
        Ok(())
    }

    fn set_len(&self, id: u64, len: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        let name = seg_name(id);
        st.files
            .get_mut(&name)
            .ok_or_else(|| missing(&name))?
            .resize(len as usize, 0);
        MemDisk::log(&mut st, Op::SetLen { file: name, len });
        Ok(())
    }

    fn list_aside(&self) -> io::Result<Vec<String>> {
        Ok(self
            .0
            .lock()
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(ASIDE_PREFIX))
            .map(str::to_string)
            .collect())
    }

    fn read_aside(&self, name: &str) -> io::Result<Vec<u8>> {
        let file = format!("{ASIDE_PREFIX}{name}");
        self.0
            .lock()
            .files
            .get(&file)
            .cloned()
            .ok_or_else(|| missing(&file))
    }

    fn remove_aside(&self, name: &str) -> io::Result<()> {
        let file = format!("{ASIDE_PREFIX}{name}");
        let mut st = self.0.lock();
        st.files.remove(&file).ok_or_else(|| missing(&file))?;
        MemDisk::log(&mut st, Op::Remove { file });
        MemDisk::log(&mut st, Op::SyncDir);
        Ok(())
    }
}

/// A pinned segment of a [`MemDisk`]: reads the live file, or its last contents once removed.
#[derive(Debug)]
struct MemPin {
    disk: Arc<MemDisk>,
    name: String,
}

impl SegmentPin for MemPin {
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let st = self.disk.lock();
        let f = st
            .files
            .get(&self.name)
            .or_else(|| st.removed.get(&self.name))
            .ok_or_else(|| missing(&self.name))?;
        read_range(f, offset, len).map(Bytes::copy_from_slice)
    }
}

fn read_range(f: &[u8], offset: u64, len: usize) -> io::Result<&[u8]> {
    let end = (offset as usize).saturating_add(len);
    f.get(offset as usize..end)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))
}

/// The index file on a [`MemDisk`], for `redb::Builder::create_with_backend`.
#[derive(Debug)]
pub struct MemIndexFile(Arc<MemDisk>);

impl redb::StorageBackend for MemIndexFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self
            .0
            .lock()
            .files
            .get(INDEX_FILE)
            .map_or(0, |f| f.len() as u64))
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let st = self.0.lock();
        let f = st
            .files
            .get(INDEX_FILE)
            .ok_or_else(|| missing(INDEX_FILE))?;
        read_range(f, offset, len).map(<[u8]>::to_vec)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        st.files
            .entry(INDEX_FILE.to_string())
            .or_default()
            .resize(len as usize, 0);
        MemDisk::log(
            &mut st,
            Op::SetLen {
                file: INDEX_FILE.to_string(),
                len,
            },
        );
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let mut st = self.0.lock();
        MemDisk::log(
            &mut st,
            Op::Sync {
                file: INDEX_FILE.to_string(),
            },
        );
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.0.lock();
        write_into(
            st.files.entry(INDEX_FILE.to_string()).or_default(),
            offset,
            data,
        );
        MemDisk::log(
            &mut st,
            Op::Write {
                file: INDEX_FILE.to_string(),
                offset,
                data: data.to_vec(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keeps_synced_writes() {
        let disk = MemDisk::new();
        let segs = disk.segments();
        segs.create(1).unwrap();
        segs.sync_dir().unwrap();
        segs.write_at(1, 0, &[b"durable"]).unwrap();
        segs.sync_data(1).unwrap();
        segs.write_at(1, 7, &[b"-volatile"]).unwrap();
        let point = *disk.sync_points().last().unwrap();
        for seed in 0..20 {
            let img = disk.power_cut_image(point, seed);
            let data = img.segments().read(1, 0, 7).unwrap();
            assert_eq!(&data[..], b"durable");
            assert!(img.segments().len(1).unwrap() <= 16);
        }
    }

    /// The segment lists a power cut at `point` leaves, over many seeds.
    fn lists_at(disk: &MemDisk, point: usize) -> std::collections::BTreeSet<Vec<u64>> {
        (0..64)
            .map(|seed| disk.power_cut_image(point, seed).segments().list().unwrap())
            .collect()
    }

    #[test]
    fn image_follows_creates_and_removes_once_the_directory_is_synced() {
        let disk = MemDisk::new();
        let segs = disk.segments();
        segs.create(1).unwrap();
        segs.create(2).unwrap();
        segs.sync_dir().unwrap();
        segs.sync_data(1).unwrap();
        segs.remove(1).unwrap();
        segs.sync_data(2).unwrap();
        segs.sync_dir().unwrap();
        let points = disk.sync_points();
        assert_eq!(lists_at(&disk, points[0]), [vec![1, 2]].into());
        // The remove is not durable yet: segment 1 may come back.
        assert_eq!(lists_at(&disk, points[2]), [vec![1, 2], vec![2]].into());
        assert_eq!(lists_at(&disk, points[3]), [vec![2]].into());
        // Before the first directory sync either creation may be lost.
        assert_eq!(lists_at(&disk, 2).len(), 4);
    }

    /// A segment synced but never named durably may vanish with its bytes; a removed one that
    /// comes back holds what was durable in it.
    #[test]
    fn undurable_names_take_their_contents_with_them() {
        let disk = MemDisk::new();
        let segs = disk.segments();
        segs.create(1).unwrap();
        segs.write_at(1, 0, &[b"synced"]).unwrap();
        segs.sync_data(1).unwrap();
        let synced = disk.sync_points()[0];
        segs.remove(1).unwrap();
        let removed = disk.op_count();
        segs.sync_dir().unwrap();
        assert_eq!(lists_at(&disk, synced), [vec![], vec![1]].into());
        for seed in 0..32 {
            let img = disk.power_cut_image(removed, seed);
            if img.segments().list().unwrap() == [1] {
                assert_eq!(&img.segments().read(1, 0, 6).unwrap()[..], b"synced");
            }
        }
        assert_eq!(lists_at(&disk, disk.op_count()), [vec![]].into());
    }

    #[test]
    fn space_limit_gives_enospc_after_partial_write() {
        let disk = MemDisk::new();
        let segs = disk.segments();
        segs.create(1).unwrap();
        disk.set_segment_space(Some(10));
        let err = segs.write_at(1, 0, &[b"0123456789abc"]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(segs.len(1).unwrap(), 10);
        disk.set_segment_space(None);
        segs.write_at(1, 10, &[b"abc"]).unwrap();
    }
}
