//! Write floors: compaction must never delete a segment that holds records a writer has not
//! resolved yet (committed or discarded): its index rows do not name those records yet, so the
//! segment looks empty. Every writer holds a floor at the active log segment from before its
//! first write until its records are resolved; writes only go to the active segment or later
//! ones, so every segment below the lowest floor is done with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct Floors(Mutex<BTreeMap<u64, usize>>);

/// Keeps segments from `segment` on out of compaction while it lives.
pub(crate) struct FloorGuard {
    floors: Arc<Floors>,
    segment: u64,
}

impl Floors {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hold(self: &Arc<Self>, segment: u64) -> FloorGuard {
        *self.lock().entry(segment).or_default() += 1;
        FloorGuard {
            floors: self.clone(),
            segment,
        }
    }

    /// The lowest segment some writer may still need, if any writer is active.
    pub fn lowest(&self) -> Option<u64> {
        self.lock().keys().next().copied()
    }
}

impl Drop for FloorGuard {
    fn drop(&mut self) {
        let mut m = self.floors.lock();
        if let Some(n) = m.get_mut(&self.segment) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.segment);
            }
        }
    }
}

impl std::fmt::Debug for FloorGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FloorGuard({})", self.segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_floor_goes_when_its_last_guard_does() {
        let f = Arc::new(Floors::default());
        let a = f.hold(5);
        let b = f.hold(3);
        let c = f.hold(3);
        assert_eq!(f.lowest(), Some(3));
        drop(b);
        assert_eq!(f.lowest(), Some(3));
        drop(c);
        assert_eq!(f.lowest(), Some(5));
        drop(a);
        assert_eq!(f.lowest(), None);
    }
}
