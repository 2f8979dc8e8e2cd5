//! Group commit: callers queue work, and whoever finds its own op queued and no batch being
//! logged becomes the leader of everything queued. A batch passes two stages:
//!
//! 1. *log*: its records are written and synced; one batch at a time.
//! 2. *apply*: it is applied to the index; batches in the order they were logged.
//!
//! A leader hands the log stage on as soon as its sync returns, so the next batch (the ops
//! that queued meanwhile) is written and synced while this one is applied. Nothing waits on a
//! clock: a leader takes what is queued at once, and whoever arrives during a sync is in the
//! next batch, which starts as soon as that sync returns.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::StorageError;

struct State<Op, Out> {
    /// Ops not taken by a leader yet, in ticket order (tickets are consecutive).
    queue: Vec<(u64, Op)>,
    next_ticket: u64,
    /// Set while a leader is in the log stage.
    logging: bool,
    /// Batches are numbered as they leave the queue ...
    next_batch: u64,
    /// ... and the batch with this number is the next to be applied.
    apply_turn: u64,
    done: HashMap<u64, Result<Out, StorageError>>,
    /// Set when a leader panicked: what its batch had done to the log and the index is
    /// unknown, so no batch is applied any more and every later submit fails until the store
    /// is reopened.
    poisoned: bool,
}

pub struct Group<Op, Out> {
    state: Mutex<State<Op, Out>>,
    cv: Condvar,
}

impl<Op, Out> Group<Op, Out> {
    pub fn new() -> Self {
        Group {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_ticket: 0,
                logging: false,
                next_batch: 0,
                apply_turn: 0,
                done: HashMap::new(),
                poisoned: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Op, Out>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, st: MutexGuard<'a, State<Op, Out>>) -> MutexGuard<'a, State<Op, Out>> {
        self.cv.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    /// Ops waiting for a leader to take them.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether a leader panicked mid-batch: no batch runs again until the store is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// Waits until at least `n` ops are queued for the next batch, or `timeout` has passed;
    /// whether they are. For tests that stage a race behind a batch: it looks every
    /// millisecond rather than have every submit wake the waiters of the hot path.
    pub fn wait_queued(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lock().queue.len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Queues `op` and returns its outcome once a batch containing it has been logged and
    /// applied. `log` gets the batch in submission order; `apply` gets what `log` returned and
    /// must return one outcome per op, in the same order. Batches are applied in the order
    /// they were logged, and the next batch may be logged while one is applied.
    pub fn submit<L>(
        &self,
        op: Op,
        log: impl FnOnce(Vec<Op>) -> L,
        apply: impl FnOnce(L) -> Vec<Result<Out, StorageError>>,
    ) -> Result<Out, StorageError> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, op));
        loop {
            if let Some(out) = st.done.remove(&ticket) {
                return out;
            }
            if st.poisoned {
                // A leader died since this op was queued: no batch may run any more.
                st.queue.retain(|(t, _)| *t != ticket);
                return Err(StorageError::Poisoned);
            }
            let queued = st.queue.first().is_some_and(|(t, _)| *t <= ticket);
            if queued && !st.logging {
                return self.lead(st, ticket, log, apply);
            }
            st = self.wait(st);
        }
    }

    /// Takes the whole queue as one batch (`own` is in it) through both stages and returns
    /// `own`'s outcome; the other ops' outcomes go to their waiting callers.
    fn lead<L>(
        &self,
        mut st: MutexGuard<'_, State<Op, Out>>,
        own: u64,
        log: impl FnOnce(Vec<Op>) -> L,
        apply: impl FnOnce(L) -> Vec<Result<Out, StorageError>>,
    ) -> Result<Out, StorageError> {
        st.logging = true;
        let number = st.next_batch;
        st.next_batch += 1;
        let (tickets, ops): (Vec<u64>, Vec<Op>) = std::mem::take(&mut st.queue).into_iter().unzip();
        drop(st);
        let n = ops.len();
        let guard = LeaderGuard {
            group: self,
            tickets: &tickets,
            own,
        };
        let logged = log(ops);
        let mut st = self.lock();
        st.logging = false;
        // Ops that queued during this batch's sync may be logged now, while this one applies.
        self.cv.notify_all();
        while st.apply_turn != number && !st.poisoned {
            st = self.wait(st);
        }
        if st.poisoned {
            // An earlier batch's leader panicked: its index changes are unknown, so this
            // batch must not be applied on top of them (a reopen replays it from the log).
            std::mem::forget(guard);
            fail_batch(&mut st, &tickets, own);
            self.cv.notify_all();
            return Err(StorageError::Poisoned);
        }
        drop(st);
        let mut outs = apply(logged);
        std::mem::forget(guard);
        // A runner that lost outcomes must not leave waiters hanging.
        while outs.len() < n {
            outs.push(Err(StorageError::Index(
                "group commit lost an outcome".into(),
            )));
        }
        let mut st = self.lock();
        st.apply_turn += 1;
        st.done.extend(tickets.into_iter().zip(outs));
        self.cv.notify_all();
        st.done.remove(&own).unwrap_or(Err(StorageError::Index(
            "group commit lost an outcome".into(),
        )))
    }
}

/// Hands every op of a batch that will not run, but the leader's own, a poison error.
fn fail_batch<Op, Out>(st: &mut State<Op, Out>, tickets: &[u64], own: u64) {
    for &t in tickets {
        // The leader's own caller learns of the failure from its return value (or panic).
        if t != own {
            st.done.insert(t, Err(StorageError::Poisoned));
        }
    }
}

/// Armed while a leader runs its batch; only dropped during an unwind (a panic inside a stage,
/// say in redb). It hands the batch's waiters an error, releases the log stage, and poisons the
/// group: the panic may have left the log and the index out of step.
struct LeaderGuard<'a, Op, Out> {
    group: &'a Group<Op, Out>,
    tickets: &'a [u64],
    own: u64,
}

impl<Op, Out> Drop for LeaderGuard<'_, Op, Out> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        // Once poisoned, no stage starts again; releasing the log stage (even when another
        // leader holds it) only lets the waiters see the poison.
        st.logging = false;
        st.poisoned = true;
        fail_batch(&mut st, self.tickets, self.own);
        self.group.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    /// A watchdog for the channel waits below: a hang is the defect it turns into a failure.
    const HANG: Duration = Duration::from_secs(60);

    fn log_all(ops: Vec<u32>) -> Vec<u32> {
        ops
    }

    fn apply_all(ops: Vec<u32>) -> Vec<Result<u32, StorageError>> {
        ops.into_iter().map(Ok).collect()
    }

    fn wait_until_queued(g: &Group<u32, u32>, n: usize) {
        while g.queued() < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn every_op_gets_its_own_outcome() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let handles: Vec<_> = (0..16u32)
            .map(|i| {
                let g = g.clone();
                std::thread::spawn(move || {
                    g.submit(i, log_all, |ops| {
                        ops.into_iter().map(|x| Ok(x * 2)).collect()
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().unwrap(), i as u32 * 2);
        }
    }

    /// Ops that arrive while a batch is being logged (its sync) wait for nothing else: they
    /// all go into the next batch, so eight callers share one more log stage, not eight.
    #[test]
    fn ops_queued_during_a_sync_share_the_next_batch() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let batches = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = {
            let (g, batches) = (g.clone(), batches.clone());
            std::thread::spawn(move || {
                g.submit(
                    0,
                    |ops| {
                        entered_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        batches.lock().unwrap().push(ops.clone());
                        ops
                    },
                    apply_all,
                )
            })
        };
        entered_rx.recv_timeout(HANG).unwrap();
        let others: Vec<_> = (1..=8u32)
            .map(|i| {
                let (g, batches) = (g.clone(), batches.clone());
                std::thread::spawn(move || {
                    g.submit(
                        i,
                        |ops| {
                            batches.lock().unwrap().push(ops.clone());
                            ops
                        },
                        apply_all,
                    )
                })
            })
            .collect();
        wait_until_queued(&g, 8);
        release_tx.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap(), 0);
        for (i, h) in others.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().unwrap(), i as u32 + 1);
        }
        let mut batches = batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 2, "nine ops, two log stages: {batches:?}");
        batches[1].sort_unstable();
        assert_eq!(batches, vec![vec![0], (1..=8).collect::<Vec<_>>()]);
    }

    /// The next batch is logged (its sync runs) while the one before is still being applied,
    /// and it is applied only after that one.
    #[test]
    fn the_next_batch_is_logged_while_one_is_applied_and_applies_after_it() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let applied = Arc::new(Mutex::new(Vec::<u32>::new()));
        let (applying_tx, applying_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = {
            let (g, applied) = (g.clone(), applied.clone());
            std::thread::spawn(move || {
                g.submit(1, log_all, |ops| {
                    applying_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    applied.lock().unwrap().extend(&ops);
                    apply_all(ops)
                })
            })
        };
        applying_rx.recv_timeout(HANG).unwrap();
        let (logged_tx, logged_rx) = mpsc::channel();
        let second = {
            let (g, applied) = (g.clone(), applied.clone());
            std::thread::spawn(move || {
                g.submit(
                    2,
                    |ops| {
                        logged_tx.send(()).unwrap();
                        ops
                    },
                    |ops| {
                        applied.lock().unwrap().extend(&ops);
                        apply_all(ops)
                    },
                )
            })
        };
        // Logged while batch 1 is held in its apply stage.
        logged_rx.recv_timeout(HANG).unwrap();
        assert!(applied.lock().unwrap().is_empty());
        release_tx.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap(), 1);
        assert_eq!(second.join().unwrap().unwrap(), 2);
        assert_eq!(*applied.lock().unwrap(), vec![1, 2]);
    }

    /// A runner that panics (say, inside redb) must not leave the group waiting for a leader
    /// that is gone: waiters get an error and later submits are refused.
    #[test]
    fn a_panicking_leader_fails_its_waiters_and_poisons_the_group() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let leader = {
            let g = g.clone();
            std::thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    g.submit(
                        1,
                        |ops| {
                            entered_tx.send(()).unwrap();
                            release_rx.recv().unwrap();
                            ops
                        },
                        |_ops| -> Vec<Result<u32, StorageError>> { panic!("index backend failed") },
                    )
                }))
                .is_err()
            })
        };
        entered_rx.recv_timeout(HANG).unwrap();
        // Queued while the leader logs: it waits for the next batch, which must never apply.
        let (out_tx, out_rx) = mpsc::channel();
        let waiter = {
            let g = g.clone();
            std::thread::spawn(move || {
                let out = g.submit(2, log_all, |ops| -> Vec<Result<u32, StorageError>> {
                    panic!("applied after a poison: {ops:?}")
                });
                out_tx.send(out.is_err()).unwrap();
            })
        };
        wait_until_queued(&g, 1);
        release_tx.send(()).unwrap();
        assert!(leader.join().unwrap(), "the leader's caller sees the panic");
        let failed = out_rx
            .recv_timeout(HANG)
            .expect("waiter hung after the leader panicked");
        assert!(failed);
        waiter.join().unwrap();
        assert!(matches!(
            g.submit(3, log_all, apply_all),
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
                        g.submit(i, log_all, |ops| {
                            if ops.contains(&0) {
                                panic!("batch with op 0 fails");
                            }
                            apply_all(ops)
                        })
                    }))
                })
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        for (i, h) in handles.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send((i as u32, h.join().unwrap())).unwrap());
        }
        let mut panics = 0;
        for _ in 0..8 {
            let (i, joined) = rx
                .recv_timeout(HANG)
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
