//! Chunk records written by the writer threads go around the page cache for their page-aligned
//! middle (`O_DIRECT`).
//!
//! Many uploads at once through the page cache pile up dirty pages until the kernel throttles
//! every writer to the pace of its flusher thread (16 concurrent 1 GiB pushes: 584-705 MB/s
//! buffered, 978 MB/s direct, on the development machine); a direct write hands the pages to
//! the disk itself, for less CPU. Only whole pages that no other write shares are written this
//! way: the unaligned head and tail of a write go through the page cache, so buffered and
//! direct writes never touch the same page. What lands on disk is the same either way;
//! durability still comes from the `fdatasync` of the commit.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Writes whose aligned middle is shorter than this stay buffered entirely.
const DIRECT_MIN: u64 = 256 << 10;
/// Alignment of direct writes: file offset, length and memory (the page size, so that no page
/// is shared with a buffered write).
const ALIGN: u64 = 4096;

/// The page-aligned middle `[a, b)` of a write of `len` bytes at `offset`, when it is worth a
/// direct write.
pub(crate) fn aligned_middle(offset: u64, len: u64) -> Option<(u64, u64)> {
    let a = offset.checked_next_multiple_of(ALIGN)?;
    let b = offset.checked_add(len)? / ALIGN * ALIGN;
    (b > a && b - a >= DIRECT_MIN).then_some((a, b))
}

/// The parts of `bufs` that cover bytes `from..to` of their concatenation.
pub(crate) fn sub_slices<'a>(bufs: &[&'a [u8]], from: usize, to: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for b in bufs {
        let (start, end) = (at, at + b.len());
        at = end;
        if end <= from || start >= to {
            continue;
        }
        out.extend(b.get(from.max(start) - start..to.min(end) - start));
    }
    out
}

/// The page-aligned middle of a write, copied ahead of time for the file offset the write is
/// expected at: a writer thread stages its record while the record before it is still being
/// written, so the write itself, under the log mutex, only hands pages to the disk.
pub struct Staged {
    /// Where the whole write was expected to start, and its length.
    offset: u64,
    len: u64,
    /// Bytes `[a - offset, b - offset)` of the write, for its aligned middle `[a, b)`.
    buf: Bounce,
}

/// Copies the aligned middle of a write of `bufs` at `offset` into this thread's buffer, taken
/// out of it until the `Staged` is dropped. `None` when that write would not go direct.
pub(crate) fn stage(offset: u64, bufs: &[&[u8]]) -> Option<Staged> {
    let len = bufs.iter().map(|b| b.len() as u64).sum();
    let (a, b) = aligned_middle(offset, len)?;
    let middle = sub_slices(bufs, (a - offset) as usize, (b - offset) as usize);
    let mut buf = BOUNCE.with(|bounce| std::mem::replace(&mut *bounce.borrow_mut(), Bounce::EMPTY));
    fill(buf.get((b - a) as usize).ok()?, &middle).ok()?;
    Some(Staged { offset, len, buf })
}

impl Staged {
    /// The middle `[a, b)` of a write of `bufs` at `offset`: as staged when it was staged for
    /// this offset, else copied now into the same buffer (the thread's only one).
    fn middle_for(&mut self, offset: u64, bufs: &[&[u8]], (a, b): (u64, u64)) -> io::Result<&[u8]> {
        let len = bufs.iter().map(|b| b.len() as u64).sum();
        let same = (self.offset, self.len) == (offset, len);
        let buf = self.buf.get((b - a) as usize)?;
        if !same {
            fill(
                buf,
                &sub_slices(bufs, (a - offset) as usize, (b - offset) as usize),
            )?;
        }
        Ok(buf)
    }
}

impl Drop for Staged {
    /// Gives the buffer back to the thread for its next write.
    fn drop(&mut self) {
        let buf = std::mem::replace(&mut self.buf, Bounce::EMPTY);
        BOUNCE.with(|bounce| {
            let mut bounce = bounce.borrow_mut();
            if bounce.cap < buf.cap {
                *bounce = buf;
            }
        });
    }
}

/// Writes `middle`, the aligned middle `[a, b)` of a write of `bufs` at `offset`, through
/// `direct` (opened with `O_DIRECT`): from `staged` when it was staged for this write, else
/// from a page-aligned copy made now (into the staged buffer, when there is one).
pub(crate) fn write_direct(
    direct: &File,
    offset: u64,
    bufs: &[&[u8]],
    (a, b): (u64, u64),
    staged: Option<&mut Staged>,
) -> io::Result<()> {
    if let Some(staged) = staged {
        return direct.write_all_at(staged.middle_for(offset, bufs, (a, b))?, a);
    }
    BOUNCE.with(|bounce| {
        let mut bounce = bounce.borrow_mut();
        let buf = bounce.get((b - a) as usize)?;
        fill(
            buf,
            &sub_slices(bufs, (a - offset) as usize, (b - offset) as usize),
        )?;
        direct.write_all_at(buf, a)
    })
}

fn fill(buf: &mut [u8], parts: &[&[u8]]) -> io::Result<()> {
    let mut rest = buf;
    for part in parts {
        let (dst, after) = rest
            .split_at_mut_checked(part.len())
            .ok_or_else(|| io::Error::other("direct write parts overrun their buffer"))?;
        dst.copy_from_slice(part);
        rest = after;
    }
    Ok(())
}

thread_local! {
    /// One reusable aligned buffer per writing thread.
    static BOUNCE: RefCell<Bounce> = const { RefCell::new(Bounce::EMPTY) };
}

/// A page-aligned heap buffer that only grows.
struct Bounce {
    ptr: *mut u8,
    cap: usize,
}

impl Bounce {
    const EMPTY: Bounce = Bounce {
        ptr: std::ptr::null_mut(),
        cap: 0,
    };

    fn get(&mut self, len: usize) -> io::Result<&mut [u8]> {
        if len > self.cap {
            self.free();
            let cap = len.next_multiple_of(ALIGN as usize);
            let layout = std::alloc::Layout::from_size_align(cap, ALIGN as usize)
                .map_err(io::Error::other)?;
            // SAFETY: the layout has a non-zero size (len > cap >= 0).
            let ptr = unsafe { std::alloc::alloc(layout) };
            if ptr.is_null() {
                return Err(io::Error::from(io::ErrorKind::OutOfMemory));
            }
            (self.ptr, self.cap) = (ptr, cap);
        }
        // SAFETY: `ptr` owns `cap >= len` bytes, borrowed mutably through `self`; every byte
        // handed out is overwritten by the caller before it is read, or was written through an
        // earlier `get` of the same length (a staged middle, read back by `Staged::middle_for`).
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, len) })
    }

    fn free(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated in `get` with exactly this layout.
            unsafe {
                std::alloc::dealloc(
                    self.ptr,
                    std::alloc::Layout::from_size_align_unchecked(self.cap, ALIGN as usize),
                )
            };
            (self.ptr, self.cap) = (std::ptr::null_mut(), 0);
        }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middles_are_page_aligned_and_large_enough() {
        assert_eq!(aligned_middle(0, 1 << 20), Some((0, 1 << 20)));
        assert_eq!(aligned_middle(100, 1 << 20), Some((4096, 1 << 20)));
        assert_eq!(aligned_middle(4000, 200 << 10), None);
        assert_eq!(aligned_middle(u64::MAX - 10, 5), None);
    }

    #[test]
    fn sub_slices_cover_exactly_the_range() {
        let bufs: [&[u8]; 3] = [b"abc", b"", b"defgh"];
        let joined = |v: Vec<&[u8]>| v.concat();
        assert_eq!(joined(sub_slices(&bufs, 0, 8)), b"abcdefgh");
        assert_eq!(joined(sub_slices(&bufs, 2, 5)), b"cde");
        assert_eq!(joined(sub_slices(&bufs, 3, 3)), b"");
        assert_eq!(joined(sub_slices(&bufs, 7, 8)), b"h");
    }
}
