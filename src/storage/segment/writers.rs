//! A few long-lived threads that hash and write full chunk records for upload sessions, so a
//! session's next appends are hashed while its last record is written, without starting a
//! thread per record (about 30 µs each, a thousand times per GiB).
//!
//! Each queued job holds a record's bytes, so the queue is bounded for all sessions together:
//! a few jobs per thread keep every thread busy, and more would only hold memory (16
//! concurrent pushes queued up to 64 records before).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; threads start with the first job and end once the pool is dropped and the jobs
/// already queued are done.
pub(crate) struct Writers {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    slots: Arc<Slots>,
}

/// Jobs queued or running, and the most there may be.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
    /// Hears of each submit that waits for a slot, so a test can tell one is held back.
    #[cfg(test)]
    parked: Mutex<Option<mpsc::Sender<()>>>,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self) {
        *self.lock() -= 1;
        self.freed.notify_one();
    }
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
            slots: Arc::new(Slots {
                used: Mutex::new(0),
                freed: Condvar::new(),
                max: 2 * thread_count(),
                #[cfg(test)]
                parked: Mutex::new(None),
            }),
        }
    }

    /// Queues `job` for a writer thread, first waiting while the queue is full. A job may wait
    /// for jobs queued before it, never after, so the oldest can always run and free a slot.
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Pending<T>> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut used = self.slots.lock();
            while *used >= self.slots.max {
                #[cfg(test)]
                if let Some(tx) = self.slots.parked.lock().unwrap().as_ref() {
                    let _ = tx.send(());
                }
                used = (self.slots.freed.wait(used)).unwrap_or_else(|p| p.into_inner());
            }
            *used += 1;
        }
        let slots = self.slots.clone();
        let job: Job = Box::new(move || {
            // A panic travels back to the waiter, as a joined thread's would.
            let result = catch_unwind(AssertUnwindSafe(job));
            slots.release();
            let _ = tx.send(result);
        });
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            match start_threads() {
                Ok(q) => *queue = Some(q),
                Err(e) => {
                    self.slots.release();
                    return Err(e);
                }
            }
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
    for _ in 0..thread_count() {
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

/// Writers wait on the disk (direct writes) and on the record before theirs, so there are more
/// of them than cores.
fn thread_count() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().clamp(4, 8))
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

    /// Once the queue is full, the next submit waits until a job has finished.
    #[test]
    fn a_full_queue_holds_the_next_submit_back() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Arc, Mutex};

        let w = Arc::new(Writers::new());
        let (parked_tx, parked) = mpsc::channel::<()>();
        *w.slots.parked.lock().unwrap() = Some(parked_tx);
        let (go, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let full: Vec<_> = (0..w.slots.max)
            .map(|_| {
                let wait = wait.clone();
                w.submit(move || {
                    let _ = wait.lock().unwrap().recv();
                })
                .unwrap()
            })
            .collect();
        let released = Arc::new(AtomicBool::new(false));
        let late = {
            let (w, released) = (w.clone(), released.clone());
            std::thread::spawn(move || {
                let pending = w.submit(|| ()).unwrap();
                let waited = released.load(Ordering::SeqCst);
                pending.wait().unwrap();
                waited
            })
        };
        // The late submit is parked on the full queue.
        parked
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the late submit never waited");
        released.store(true, Ordering::SeqCst);
        for _ in 0..w.slots.max {
            go.send(()).unwrap();
        }
        assert!(
            late.join().unwrap(),
            "submit returned while the queue was full"
        );
        for p in full {
            p.wait().unwrap();
        }
        assert_eq!(*w.slots.lock(), 0);
    }
}
