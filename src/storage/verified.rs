//! The bounded in-memory record of chunk records whose trailer was already checked since the
//! store was opened (read verification `Once`, storage-format.md section 8).

use std::collections::HashSet;
use std::sync::Mutex;

use super::segment::log::Extent;

/// Two generations of verified extents: inserts go to `current`; when it holds half the
/// capacity it becomes `previous` and the old `previous` is dropped. A hit in `previous` moves
/// the extent back to `current`, so extents read again and again stay, and the set never holds
/// more than `cap` entries (about 40 bytes each) whatever the read pattern.
pub(crate) struct VerifiedSet {
    half: usize,
    gens: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashSet<Extent>,
    previous: HashSet<Extent>,
}

impl Generations {
    fn insert(&mut self, e: Extent, half: usize) {
        self.current.insert(e);
        if self.current.len() >= half {
            self.previous = std::mem::take(&mut self.current);
        }
    }
}

impl VerifiedSet {
    /// A set of at most `cap` extents; `0` remembers nothing.
    pub fn new(cap: usize) -> VerifiedSet {
        VerifiedSet {
            half: cap / 2,
            gens: Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.gens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `e` was verified since the store was opened (and is still remembered).
    pub fn contains(&self, e: &Extent) -> bool {
        if self.half == 0 {
            return false;
        }
        let mut g = self.lock();
        if g.current.contains(e) {
            return true;
        }
        if g.previous.remove(e) {
            g.insert(*e, self.half);
            return true;
        }
        false
    }

    pub fn insert(&self, e: Extent) {
        if self.half > 0 {
            self.lock().insert(e, self.half);
        }
    }

    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(i: u64) -> Extent {
        Extent {
            segment: 1,
            offset: 64 + i * 100,
            len: 20,
        }
    }

    #[test]
    fn stays_bounded_and_keeps_hot_extents() {
        let set = VerifiedSet::new(8);
        set.insert(ext(0));
        for i in 1..1000 {
            set.insert(ext(i));
            assert!(set.contains(&ext(0)), "a hot extent survives at step {i}");
            assert!(set.len() <= 8);
        }
        assert!(!set.contains(&ext(1)), "a cold extent is forgotten");
        assert!(set.contains(&ext(999)));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let set = VerifiedSet::new(0);
        set.insert(ext(1));
        assert!(!set.contains(&ext(1)));
        assert_eq!(set.len(), 0);
    }
}
