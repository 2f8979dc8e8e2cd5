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
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Op, Out>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
                let mut outs = run(ops);
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
}
