//! A few long-lived threads that hash and write full chunk records for upload sessions, so a
//! session's next appends are hashed while its last record is written, without starting a
//! thread per record (about 30 µs each, a thousand times per GiB).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; threads start with the first job and end once the pool is dropped and the jobs
/// already queued are done.
pub(crate) struct Writers {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

/// The result of a job, once a writer thread has run it.
pub(crate) struct Pending<T> {
    rx: mpsc::Receiver<std::thread::Result<T>>,
    ready: Option<std::thread::Result<T>>,
}

impl Writers {
    pub fn new() -> Writers {
        Writers {
            queue: Mutex::new(None),
        }
    }

    /// Queues `job` for a writer thread.
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Pending<T>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // A panic travels back to the waiter, as a joined thread's would.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(job)));
        });
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            *queue = Some(start_threads()?);
        }
        if let Some(q) = queue.as_ref() {
            // The receiving threads live as long as this sender, so the send cannot fail.
            let _ = q.send(job);
        }
        Ok(Pending { rx, ready: None })
    }
}

fn start_threads() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    // Writers wait on the disk (direct writes) and on the record before theirs, so there are
    // more of them than cores.
    let n = std::thread::available_parallelism().map_or(4, |n| n.get().clamp(4, 8));
    for _ in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name("berth-writer".into())
            .spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => return,
                };
                job();
            })?;
    }
    Ok(tx)
}

impl<T> Pending<T> {
    pub fn is_finished(&mut self) -> bool {
        if self.ready.is_none() {
            self.ready = self.rx.try_recv().ok();
        }
        self.ready.is_some()
    }

    /// Waits for the job; `Err` carries its panic.
    pub fn wait(mut self) -> std::thread::Result<T> {
        match self.ready.take() {
            Some(r) => r,
            // The job always sends before its sender drops.
            None => self
                .rx
                .recv()
                .unwrap_or_else(|_| Err(Box::new("chunk writer vanished"))),
        }
    }
}

impl<T> Drop for Pending<T> {
    /// A store dropped without `close` still finishes its writes before it is gone, so a store
    /// reopened on the same disk never sees a record land behind its back.
    fn drop(&mut self) {
        if self.ready.is_none() {
            let _ = self.rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Writers;

    #[test]
    fn jobs_run_and_return_their_results_and_panics() {
        let w = Writers::new();
        let pending: Vec<_> = (0..20u64)
            .map(|i| w.submit(move || i * 2).unwrap())
            .collect();
        let got: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
        assert_eq!(got, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        let boom = w.submit(|| -> u8 { panic!("boom") }).unwrap();
        assert!(boom.wait().is_err());
        // The pool survives a panicking job.
        assert_eq!(w.submit(|| 7).unwrap().wait().unwrap(), 7);
    }
}
