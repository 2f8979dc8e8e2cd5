//! Group commit: callers queue work; whoever finds no commit in flight becomes the leader and
//! makes the whole queue durable with one segment sync and one index transaction.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::error::StorageError;

struct State<Op, Out> {
    queue: Vec<(u64, Op)>,
    next_ticket: u64,
    leader_active: bool,
    done: HashMap<u64, Result<Out, StorageError>>,
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
                leader_active: false,
                done: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Op, Out>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` and returns its outcome once a batch containing it has run. `run` gets the
    /// batch in submission order and must return one outcome per op, in the same order.
    pub fn submit(
        &self,
        op: Op,
        run: impl Fn(Vec<Op>) -> Vec<Result<Out, StorageError>>,
    ) -> Result<Out, StorageError> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, op));
        loop {
            if let Some(out) = st.done.remove(&ticket) {
                return out;
            }
            if !st.leader_active {
                st.leader_active = true;
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn every_op_gets_its_own_outcome() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::new());
        let batches = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..16u32)
            .map(|i| {
                let (g, b) = (g.clone(), batches.clone());
                std::thread::spawn(move || {
                    g.submit(i, |ops| {
                        b.fetch_add(1, Ordering::SeqCst);
                        ops.into_iter().map(|x| Ok(x * 2)).collect()
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().unwrap(), i as u32 * 2);
        }
        assert!(batches.load(Ordering::SeqCst) >= 1);
    }
}
