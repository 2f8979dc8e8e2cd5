//! The bytes of an upload session not yet handed to the log (less than one chunk record), kept
//! as the pieces they arrived in so owned request frames are written without a copy. Every
//! tail counts its bytes in the store's shared [`TailBudget`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::budget::TailBudget;

/// Pieces shorter than this are copied together instead of kept one by one, so a record is a
/// bounded number of slices and tiny request frames do not each pin a buffer of their own.
const SMALL_PIECE: usize = 8 << 10;

/// A session's bytes not yet handed to the log: fewer than one record, kept as the pieces they
/// arrived in (small ones gathered in `fill`, which logically follows `parts`).
pub(crate) struct Tail {
    parts: Vec<Bytes>,
    fill: BytesMut,
    len: usize,
    /// Where `len` is counted for all sessions together.
    budget: Arc<TailBudget>,
}

/// A tail counted in a budget of its own, without a limit (tests, and sessions restored by
/// recovery until the store gives them its budget).
impl Default for Tail {
    fn default() -> Tail {
        Tail::new(Arc::new(TailBudget::new(usize::MAX)))
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.budget.sub(self.len);
    }
}

impl Tail {
    pub fn new(budget: Arc<TailBudget>) -> Tail {
        Tail {
            parts: Vec::new(),
            fill: BytesMut::new(),
            len: 0,
            budget,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps an owned piece (small ones are copied into the fill buffer).
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.len() < SMALL_PIECE {
            self.push_slice(&bytes);
        } else {
            self.seal();
            self.len += bytes.len();
            self.budget.add(bytes.len());
            self.parts.push(bytes);
        }
    }

    /// Keeps a copy of borrowed bytes.
    pub fn push_slice(&mut self, data: &[u8]) {
        if data.len() >= SMALL_PIECE {
            self.push(Bytes::copy_from_slice(data));
            return;
        }
        if self.fill.capacity() - self.fill.len() < data.len() {
            self.fill.reserve(data.len().max(8 * SMALL_PIECE));
        }
        self.fill.extend_from_slice(data);
        self.len += data.len();
        self.budget.add(data.len());
    }

    /// Moves the fill buffer's bytes to the end of `parts`.
    fn seal(&mut self) {
        if !self.fill.is_empty() {
            self.parts.push(self.fill.split().freeze());
        }
    }

    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let fill = (!self.fill.is_empty()).then_some(&self.fill[..]);
        self.parts.iter().map(|b| &b[..]).chain(fill)
    }

    /// Empties the tail and lets go of its buffers (an idle session keeps no allocation).
    pub fn clear(&mut self) {
        self.parts = Vec::new();
        self.fill = BytesMut::new();
        self.budget.sub(self.len);
        self.len = 0;
    }

    /// Keeps the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.seal();
        let mut left = n;
        self.parts.retain_mut(|p| {
            let keep = left.min(p.len());
            p.truncate(keep);
            left -= keep;
            keep > 0
        });
        let kept = n.min(self.len);
        self.budget.sub(self.len - kept);
        self.len = kept;
    }

    /// Splits off the first `n` bytes (at most `len`), slicing a piece where the cut falls.
    pub fn split_to(&mut self, n: usize) -> Vec<Bytes> {
        self.seal();
        let mut out = Vec::new();
        let mut left = n.min(self.len);
        self.len -= left;
        self.budget.sub(left);
        let mut taken = 0;
        for p in &mut self.parts {
            if left == 0 {
                break;
            }
            if p.len() <= left {
                left -= p.len();
                out.push(std::mem::take(p));
                taken += 1;
            } else {
                out.push(p.split_to(left));
                left = 0;
            }
        }
        self.parts.drain(..taken);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;
    use bytes::Bytes;

    fn tail_of(pieces: &[&[u8]]) -> Tail {
        let mut t = Tail::default();
        for p in pieces {
            t.push(Bytes::copy_from_slice(p));
        }
        t
    }

    fn flat(parts: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
        parts.into_iter().flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn split_to_cuts_inside_a_piece_and_keeps_the_rest_in_order() {
        let mut t = tail_of(&[b"abc", b"defg", b"hi"]);
        assert_eq!(flat(t.split_to(5)), b"abcde");
        assert_eq!(t.len(), 4);
        assert_eq!(flat(t.split_to(10)), b"fghi");
        assert!(t.is_empty());
    }

    fn flat_tail(t: &Tail) -> Vec<u8> {
        t.parts().flat_map(|p| p.to_vec()).collect()
    }

    #[test]
    fn truncate_keeps_a_prefix() {
        let big = vec![9u8; super::SMALL_PIECE];
        let mut t = tail_of(&[b"abc", &big, b"defg"]);
        t.truncate(super::SMALL_PIECE + 4);
        assert_eq!(t.len(), super::SMALL_PIECE + 4);
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&big);
        want.push(b'd');
        assert_eq!(flat_tail(&t), want);
        t.truncate(2);
        assert_eq!(flat_tail(&t), b"ab");
        t.truncate(0);
        assert!(t.is_empty());
        assert_eq!(t.parts().count(), 0);
    }

    #[test]
    fn small_pieces_are_gathered_and_large_ones_kept_apart() {
        let big = vec![1u8; super::SMALL_PIECE];
        let mut t = tail_of(&[b"a", b"b", &big, b"c"]);
        t.push_slice(b"de");
        // "ab", the large piece, then "cde" still in the fill buffer.
        assert_eq!(t.parts().count(), 3);
        assert_eq!(t.len(), super::SMALL_PIECE + 5);
        let record = t.split_to(t.len());
        assert_eq!(record.len(), 3);
        assert_eq!(&record[2][..], b"cde");
        assert!(t.is_empty());
    }

    #[test]
    fn the_budget_counts_what_every_tail_holds() {
        let budget = std::sync::Arc::new(super::TailBudget::new(usize::MAX));
        let mut a = super::Tail::new(budget.clone());
        let mut b = super::Tail::new(budget.clone());
        a.push_slice(b"abcdef");
        b.push(Bytes::from(vec![0u8; super::SMALL_PIECE]));
        assert_eq!(budget.held(), 6 + super::SMALL_PIECE);
        a.truncate(2);
        let _ = b.split_to(10);
        assert_eq!(budget.held(), 2 + super::SMALL_PIECE - 10);
        a.clear();
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn empty_pieces_are_not_kept() {
        let t = tail_of(&[b"", b"x", b""]);
        assert_eq!(t.parts().count(), 1);
        assert_eq!(t.len(), 1);
    }
}
