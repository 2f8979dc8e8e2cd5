//! The touch gate closes the race between a collection and clients without a time window.
//!
//! While a collection is marking, every operation that makes a blob or manifest reachable or
//! fresh (a push, link, mount, manifest PUT, and a HEAD or GET that a client may act on) records
//! its digest here before it reads or changes the index. The sweep drops only candidates that
//! nobody touched since the mark began, and a touch of a candidate whose removal is being
//! committed right now waits until that commit is visible, so its read sees the blob gone.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::oci::digest::Digest;

/// Held by every reader and writer of the index while a collection may be marking.
#[derive(Default)]
pub(crate) struct Gate {
    marking: RwLock<Option<Arc<Marking>>>,
}

/// The touches of one collection.
#[derive(Default)]
pub(crate) struct Marking {
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Default)]
struct State {
    touched: HashSet<Digest>,
    /// Digests whose removal a group commit is making durable and visible now.
    sweeping: HashSet<Digest>,
    /// Touches waiting for such a removal to be visible.
    waiting: usize,
}

/// Keeps a collection from starting or ending (its snapshot from being taken) until the
/// caller's index read is done: a read either precedes the mark or is recorded.
pub(crate) struct Touch<'a> {
    _guard: RwLockReadGuard<'a, Option<Arc<Marking>>>,
}

impl Gate {
    /// Records `digest` as touched if a collection is marking; hold the result across the index
    /// read or write the touch is for.
    pub fn touch(&self, digest: &Digest) -> Touch<'_> {
        let guard = self.marking.read().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = guard.as_ref() {
            m.touch(digest);
        }
        Touch { _guard: guard }
    }

    /// The marking in progress, if any.
    pub fn current(&self) -> Option<Arc<Marking>> {
        self.marking
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts recording touches; waits for index reads in progress, so every later read is
    /// recorded and every earlier one precedes the snapshot the caller takes next.
    pub fn begin(&self) -> Arc<Marking> {
        let m = Arc::new(Marking::default());
        *self.marking.write().unwrap_or_else(|p| p.into_inner()) = Some(m.clone());
        m
    }

    pub fn end(&self) {
        *self.marking.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Marking {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a touch; if the digest's removal is being committed, waits until it is visible.
    pub fn touch(&self, digest: &Digest) {
        let mut st = self.lock();
        st.touched.insert(digest.clone());
        if st.sweeping.contains(digest) {
            st.waiting += 1;
            self.released.notify_all();
            while st.sweeping.contains(digest) {
                st = self.released.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.waiting -= 1;
        }
    }

    /// Waits up to `timeout` until a touch waits for a claim; whether one does. Lets a test
    /// stage a touch racing a sweep's commit without sleeping.
    pub fn wait_for_blocked_touch(&self, timeout: Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .released
            .wait_timeout_while(st, timeout, |st| st.waiting == 0)
            .unwrap_or_else(|p| p.into_inner());
        st.waiting > 0
    }

    /// Records touches without waiting (the group-commit leader, for the ops of its batch).
    pub fn touch_all<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) {
        let mut st = self.lock();
        for d in digests {
            st.touched.insert(d.clone());
        }
    }

    /// Keeps the digests for which `keep` says yes, dropping those touched since the mark
    /// began, and holds the kept ones as "being swept" until [`Marking::release`].
    pub fn claim<T>(&self, items: Vec<T>, digest: impl Fn(&T) -> &Digest) -> (Vec<T>, usize) {
        let mut st = self.lock();
        let before = items.len();
        let kept: Vec<T> = items
            .into_iter()
            .filter(|i| !st.touched.contains(digest(i)))
            .collect();
        for i in &kept {
            st.sweeping.insert(digest(i).clone());
        }
        let dropped = before - kept.len();
        (kept, dropped)
    }

    /// Ends the claims of a committed (or failed) sweep and wakes the touches waiting on them.
    pub fn release<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) {
        let mut st = self.lock();
        for d in digests {
            st.sweeping.remove(d);
        }
        drop(st);
        self.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    #[test]
    fn touched_items_are_not_claimed_and_a_touch_waits_for_a_claim() {
        let gate = Arc::new(Gate::default());
        let (a, b) = (
            Digest::of(Algorithm::Sha256, b"a"),
            Digest::of(Algorithm::Sha256, b"b"),
        );
        drop(gate.touch(&a)); // before the mark: not recorded
        let m = gate.begin();
        drop(gate.touch(&a));
        let (kept, dropped) = m.claim(vec![a.clone(), b.clone()], |d| d);
        assert_eq!((kept, dropped), (vec![b.clone()], 1));
        let g = gate.clone();
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            drop(g.touch(&b2));
            std::time::Instant::now()
        });
        assert!(m.wait_for_blocked_touch(Duration::from_secs(20)));
        let released_at = std::time::Instant::now();
        m.release([&b]);
        assert!(waiter.join().unwrap() >= released_at);
        gate.end();
    }
}
