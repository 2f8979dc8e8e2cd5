//! The server's log output, written by a thread of its own. A request formats its line and
//! appends it to a shared buffer under a lock held for the copy only; the writer thread takes
//! the whole buffer at once and writes it with one call. Lines that arrive during that write
//! form the next batch. A quiet server's line is written at once, so the log keeps up with
//! what clients see; after a large batch (a busy server) the writer lets the next one gather
//! for a millisecond, so it writes and wakes about a thousand times a second at most instead
//! of once per request.
//! No request ever waits for a write to stdout (a slow disk, a full pipe). The buffer is bounded: a line
//! that does not fit while the writer is behind is dropped and counted
//! (`berth_log_lines_dropped_total`), never queued without limit. [`LogFlusher::finish`]
//! writes out every line appended before it, so a graceful shutdown loses none.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes of formatted lines waiting for the writer; about half a second of request lines at
/// 40 000 requests/s.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// A batch this large (a dozen request lines) means the server is busy: let the next gather.
const BUSY_BATCH: usize = 2 << 10;
/// How long the next batch gathers after a busy one.
const GATHER: Duration = Duration::from_millis(1);

/// Lines dropped because the buffer was full, in this process (the logger is process-wide).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped since start because the writer was behind and the buffer full.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Where the writer thread puts the batches.
type Sink = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the buffer stops being empty, and at shutdown.
    wake: Condvar,
    capacity: usize,
}

struct Pending {
    lines: Vec<u8>,
    /// The writer sleeps on `wake` (only then does a line need to wake it).
    waiting: bool,
    /// Set by [`LogFlusher::finish`]: the writer drains and stops; later lines are written
    /// directly by whoever logs them.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer half handed to `tracing_subscriber` (one `write_all` per formatted event).
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
    /// Used only after shutdown, for the last lines of the process.
    direct: fn() -> Sink,
}

/// Ends the writer thread; dropping it does the same.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer to stdout through a thread named `berth-log`.
pub fn stdout(capacity: usize) -> std::io::Result<(LogWriter, LogFlusher)> {
    spawn(capacity, || Box::new(std::io::stdout()))
}

/// A writer whose batches go to what `sink` makes (once for the thread, and again for each
/// line written after shutdown).
pub fn spawn(capacity: usize, sink: fn() -> Sink) -> std::io::Result<(LogWriter, LogFlusher)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            lines: Vec::new(),
            waiting: false,
            closed: false,
        }),
        wake: Condvar::new(),
        capacity,
    });
    let thread = {
        let shared = shared.clone();
        let out = sink();
        std::thread::Builder::new()
            .name("berth-log".into())
            .spawn(move || write_batches(&shared, out))?
    };
    Ok((
        LogWriter {
            shared: shared.clone(),
            direct: sink,
        },
        LogFlusher {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_batches(shared: &Shared, mut out: Sink) {
    let mut batch = Vec::new();
    loop {
        {
            let mut pending = shared.lock();
            while pending.lines.is_empty() && !pending.closed {
                pending.waiting = true;
                pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            pending.waiting = false;
            if pending.lines.is_empty() {
                break;
            }
            std::mem::swap(&mut pending.lines, &mut batch);
        }
        // A log that cannot be written (stdout closed) is not a reason to stop serving.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        let busy = batch.len() >= BUSY_BATCH;
        batch.clear();
        if busy {
            std::thread::sleep(GATHER);
        }
    }
}

impl LogFlusher {
    /// Writes out every line appended so far and stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Write for LogWriter {
    /// Takes the whole line or none of it: `write_all` never splits an event.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.closed {
            drop(pending);
            return (self.direct)().write_all(line).map(|()| line.len());
        }
        if pending.lines.len() + line.len() > self.shared.capacity {
            drop(pending);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        pending.lines.extend_from_slice(line);
        let wake = std::mem::take(&mut pending.waiting);
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// What the test sinks received, per test (tests run in parallel in one process).
    fn received(slot: &'static OnceLock<Arc<Mutex<Vec<u8>>>>) -> Arc<Mutex<Vec<u8>>> {
        slot.get_or_init(Arc::default).clone()
    }

    struct Collect(Arc<Mutex<Vec<u8>>>);
    impl Write for Collect {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static DRAINED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

    #[test]
    fn finish_writes_every_line_appended_before_it_and_later_lines_directly() {
        let (w, flusher) =
            spawn(DEFAULT_CAPACITY, || Box::new(Collect(received(&DRAINED)))).unwrap();
        let mut writers: Vec<_> = (0..4).map(|_| w.clone()).collect();
        std::thread::scope(|s| {
            for (t, w) in writers.iter_mut().enumerate() {
                s.spawn(move || {
                    for i in 0..1000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                });
            }
        });
        flusher.finish();
        let mut w = w;
        w.write_all(b"after shutdown\n").unwrap();
        let text = String::from_utf8(received(&DRAINED).lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4001);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let want: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, want, "each thread's lines whole and in order");
        }
        assert_eq!(lines[4000], "after shutdown");
    }

    /// A sink that blocks until the test lets it go, like a stalled disk.
    struct Stalled(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);
    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static GATE: OnceLock<Arc<(Mutex<bool>, Condvar)>> = OnceLock::new();
    static STALLED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_beyond_the_bound_instead_of_blocking() {
        let gate = GATE.get_or_init(Arc::default).clone();
        let (w, flusher) = spawn(64, || {
            Box::new(Stalled(
                GATE.get_or_init(Arc::default).clone(),
                received(&STALLED),
            ))
        })
        .unwrap();
        let mut w = w;
        // The first line is taken by the writer, which then blocks in the sink.
        w.write_all(b"first line......\n").unwrap();
        while !w.shared.lock().lines.is_empty() {
            std::thread::yield_now();
        }
        let before = dropped_lines();
        for i in 0..100 {
            // 16 bytes each: four fit in the 64-byte buffer, the rest are dropped.
            w.write_all(format!("line {i:>10}\n").as_bytes()).unwrap();
        }
        assert_eq!(dropped_lines() - before, 96);
        assert!(w.shared.lock().lines.len() <= 64);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        flusher.finish();
        let text = String::from_utf8(received(&STALLED).lock().unwrap().clone()).unwrap();
        let want = "first line......\nline          0\nline          1\nline          2\nline          3\n";
        assert_eq!(text, want);
    }
}
