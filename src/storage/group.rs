//! Group commit: callers queue work; whoever finds no commit in flight becomes the leader and
//! makes the whole queue durable with one log sync and one index transaction.
//!
//! Callers about to submit say so first ([`Group::prepare`]); a new leader waits briefly for
//! them, so a batch is not cut short just because the others were still writing their bytes.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::StorageError;

/// The longest a leader waits for announced callers before committing without them.
const GATHER_WAIT: Duration = Duration::from_millis(1);

struct State<Op, Out> {
    queue: Vec<(u64, Op)>,
    next_ticket: u64,
    leader_active: bool,
    preparing: usize,
    done: HashMap<u64, Result<Out, StorageError>>,
    /// Set when a leader's batch panicked: what it had done to the log and the index is
    /// unknown, so every later submit fails until the store is reopened.
    poisoned: bool,
}

pub struct Group<Op, Out> {
    state: Mutex<State<Op, Out>>,
    cv: Condvar,
}

/// A caller's announcement that it will submit soon; dropping it withdraws the announcement.
pub struct Preparing<'a, Op, Out> {
    group: &'a Group<Op, Out>,
    active: bool,
}

impl<Op, Out> Drop for Preparing<'_, Op, Out> {
    fn drop(&mut self) {
        if self.active {
            let mut st = self.group.lock();
            st.preparing -= 1;
            self.group.cv.notify_all();
        }
    }
}

impl<Op, Out> Group<Op, Out> {
    pub fn new() -> Self {
        Group {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_ticket: 0,
                leader_active: false,
                preparing: 0,
                done: HashMap::new(),
                poisoned: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Op, Out>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a leader panicked mid-batch: no batch runs again until the store is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// Waits until at least `n` ops are queued for the next batch, or `timeout` has passed;
    /// whether they are. Every submit notifies `cv` once its op is queued.
    pub fn wait_queued(&self, n: usize, timeout: Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .cv
            .wait_timeout_while(st, timeout, |st| st.queue.len() < n)
            .unwrap_or_else(|p| p.into_inner());
        st.queue.len() >= n
    }

    /// Announces a submit that is about to come (after a short write).
    pub fn prepare(&self) -> Preparing<'_, Op, Out> {
        self.lock().preparing += 1;
        Preparing {
            group: self,
            active: true,
        }
    }

    /// Queues `op` and returns its outcome once a batch containing it has run. `run` gets the
    /// batch in submission order and must return one outcome per op, in the same order.
    pub fn submit(
        &self,
        op: Op,
        announced: Option<Preparing<'_, Op, Out>>,
        run: impl Fn(Vec<Op>) -> Vec<Result<Out, StorageError>>,
    ) -> Result<Out, StorageError> {
        let mut st = self.lock();
        if let Some(mut a) = announced {
            a.active = false;
            st.preparing -= 1;
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, op));
        self.cv.notify_all();
        loop {
            if let Some(out) = st.done.remove(&ticket) {
                return out;
            }
            if st.poisoned {
                // A leader died since this op was queued: no batch may run any more.
                st.queue.retain(|(t, _)| *t != ticket);
                return Err(StorageError::Poisoned);
            }
            if !st.leader_active {
                st.leader_active = true;
                let deadline = Instant::now() + GATHER_WAIT;
                while st.preparing > 0 {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    st = self
                        .cv
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                let batch = std::mem::take(&mut st.queue);
                drop(st);
                let (tickets, ops): (Vec<u64>, Vec<Op>) = batch.into_iter().unzip();
                let n = ops.len();
                let guard = LeaderGuard {
                    group: self,
                    tickets: &tickets,
                    own: ticket,
                };
                let mut outs = run(ops);
                std::mem::forget(guard);
                // A runner that lost outcomes must not leave waiters hanging.
                while outs.len() < n {
                    outs.push(Err(StorageError::Index(
                        "group commit lost an outcome".into(),
                    )));
                }
                st = self.lock();
                st.leader_active = false;
                st.done.extend(tickets.into_iter().zip(outs));
                self.cv.notify_all();
                continue;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Armed while a leader runs its batch; only dropped during an unwind (a panic inside the
/// runner, say in redb). It hands the batch's waiters an error, lets a new leader step up, and
/// poisons the group: the panic may have left the log and the index out of step.
struct LeaderGuard<'a, Op, Out> {
    group: &'a Group<Op, Out>,
    tickets: &'a [u64],
    own: u64,
}

impl<Op, Out> Drop for LeaderGuard<'_, Op, Out> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        st.leader_active = false;
        st.poisoned = true;
        for &t in self.tickets {
            // The leader's own caller learns of the failure from the panic itself.
            if t != self.own {
                st.done.insert(t, Err(StorageError::Poisoned));
            }
        }
        self.group.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_op_gets_its_own_outcome() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let handles: Vec<_> = (0..16u32)
            .map(|i| {
                let g = g.clone();
                std::thread::spawn(move || {
                    let p = if i % 2 == 0 { Some(g.prepare()) } else { None };
                    g.submit(i, p, |ops| ops.into_iter().map(|x| Ok(x * 2)).collect())
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().unwrap(), i as u32 * 2);
        }
    }

    #[test]
    fn withdrawn_announcement_does_not_block_the_leader() {
        let g: Group<u32, u32> = Group::new();
        drop(g.prepare());
        assert_eq!(
            g.submit(1, None, |ops| ops.into_iter().map(Ok).collect())
                .unwrap(),
            1
        );
    }

    /// A runner that panics (say, inside redb) must not leave the group waiting for a leader
    /// that is gone: waiters get an error and later submits are refused.
    #[test]
    fn a_panicking_leader_fails_its_waiters_and_poisons_the_group() {
        use std::sync::mpsc;
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let leader = {
            let g = g.clone();
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    g.submit(1, None, |_ops| {
                        entered_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        panic!("index backend failed");
                    })
                }))
                .is_err()
            })
        };
        entered_rx.recv().unwrap();
        // Queued while the leader runs: it waits for the next batch, which must never run.
        let (out_tx, out_rx) = mpsc::channel();
        let waiter = {
            let g = g.clone();
            std::thread::spawn(move || {
                let out = g.submit(2, None, |ops| ops.into_iter().map(Ok).collect());
                out_tx.send(out.is_err()).unwrap();
            })
        };
        while g.lock().queue.is_empty() {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        assert!(leader.join().unwrap(), "the leader's caller sees the panic");
        // A hang here is the defect; the watchdog only turns it into a failure.
        let failed = out_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("waiter hung after the leader panicked");
        assert!(failed);
        waiter.join().unwrap();
        assert!(matches!(
            g.submit(3, None, |ops| ops.into_iter().map(Ok).collect()),
            Err(StorageError::Poisoned)
        ));
    }

    /// Waiters whose ops were in the panicking leader's own batch get an error too.
    #[test]
    fn waiters_in_the_panicking_batch_get_an_error() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let handles: Vec<_> = (0..8u32)
            .map(|i| {
                let g = g.clone();
                std::thread::spawn(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        g.submit(i, None, |ops| {
                            if ops.contains(&0) {
                                panic!("batch with op 0 fails");
                            }
                            ops.into_iter().map(Ok).collect()
                        })
                    }))
                })
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, h) in handles.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send((i as u32, h.join().unwrap())).unwrap());
        }
        let mut panics = 0;
        for _ in 0..8 {
            // A hang here is the defect; the watchdog only turns it into a failure.
            let (i, joined) = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("a waiter hung after a leader panicked");
            match joined {
                // The leader of the batch holding op 0 sees the panic itself.
                Err(_) => panics += 1,
                Ok(Ok(v)) => assert_eq!(v, i),
                Ok(Err(e)) => assert!(matches!(e, StorageError::Poisoned)),
            }
        }
        assert_eq!(panics, 1);
    }
}
