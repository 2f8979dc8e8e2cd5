//! One blob on its way from an upstream into the store, shared by every client that asked for
//! it meanwhile. The fetch runs as its own task: it appends what arrives to an upload session
//! and keeps the most recent bytes in a window that clients stream from, so the first client
//! gets bytes as they arrive and the sixteenth does not cause a second fetch. The commit checks
//! the digest; until it passed, no client is given the last byte of what it asked for, and a
//! failed fetch ends every client's body with an error (the connection is cut).
//!
//! A client that falls behind the window waits for the commit and reads the rest from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::mirror::blocking;
use crate::mirror::upstream::{Upstream, UpstreamBlob, UpstreamError};
use crate::oci::digest::Digest;
use crate::storage::{StorageError, Store, UploadId};

/// Recent bytes kept for clients that follow a fetch; one behind this falls back to the store.
const WINDOW_BYTES: usize = 32 << 20;
/// Bytes gathered before one store append (one chunk record).
const APPEND_BYTES: usize = 1 << 20;
/// Appends queued while the store hashes and writes the ones before.
const APPEND_QUEUE: usize = 8;
/// Most bytes handed to a client's body at once.
const SEND_BYTES: usize = 1 << 20;

/// Where a fetch is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for the upstream's response head.
    Starting,
    /// Bytes are arriving; the blob has this many bytes.
    Streaming { size: u64 },
    /// Stored and verified.
    Done { size: u64 },
    /// The upstream does not have it.
    Missing,
    /// Nothing was stored.
    Failed(Arc<str>),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bytes received so far.
    received: u64,
    /// The last bytes received, starting at blob offset `window_start`.
    window: VecDeque<Bytes>,
    window_start: u64,
    window_bytes: usize,
}

/// A fetch in progress; clients watch its state.
pub struct Flight {
    pub digest: Digest,
    state: watch::Sender<State>,
}

/// The blob fetches in progress, by mirror and digest (a client is only fed from its own
/// mirror's upstream).
#[derive(Default)]
pub struct Flights {
    by_key: Mutex<HashMap<(String, Digest), Arc<Flight>>>,
}

/// Counts a flight reports when it ends.
pub trait FlightReport: Send + Sync + 'static {
    fn fetched(&self, bytes: u64);
    fn failed(&self, reason: &str);
}

impl Flights {
    /// The fetch of `digest` from mirror `ns` in progress, or a new one (returns whether it is
    /// new: a joined fetch costs the upstream nothing).
    #[allow(clippy::too_many_arguments)]
    pub fn join_or_start(
        self: &Arc<Self>,
        store: &Store,
        ns: &str,
        upstream: Arc<Upstream>,
        local: &str,
        remote: &str,
        digest: &Digest,
        report: Arc<dyn FlightReport>,
    ) -> (Arc<Flight>, bool) {
        let key = (ns.to_owned(), digest.clone());
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&key) {
            return (f.clone(), false);
        }
        let (tx, _) = watch::channel(State {
            phase: Phase::Starting,
            received: 0,
            window: VecDeque::new(),
            window_start: 0,
            window_bytes: 0,
        });
        let flight = Arc::new(Flight {
            digest: digest.clone(),
            state: tx,
        });
        map.insert(key.clone(), flight.clone());
        drop(map);
        let run = Run {
            key,
            flight: flight.clone(),
            flights: self.clone(),
            store: store.clone(),
            upstream,
            local: local.to_owned(),
            remote: remote.to_owned(),
            report,
        };
        tokio::spawn(run.go());
        (flight, true)
    }

    pub fn in_progress(&self) -> usize {
        self.by_key.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Flight {
    /// Waits until the upstream answered: the blob's size, or why there is none.
    pub async fn started(&self) -> Phase {
        let mut rx = self.state.subscribe();
        loop {
            let phase = rx.borrow_and_update().phase.clone();
            if !matches!(phase, Phase::Starting) {
                return phase;
            }
            if rx.changed().await.is_err() {
                return Phase::Failed("the fetch ended".into());
            }
        }
    }

    /// Streams bytes `[start, end)` of the blob into `tx` as they arrive (from the window, or
    /// from the store once committed), ending with an error if the fetch fails.
    pub async fn follow(
        self: Arc<Self>,
        store: Store,
        start: u64,
        end: u64,
        tx: mpsc::Sender<Result<Bytes, StorageError>>,
    ) {
        let mut rx = self.state.subscribe();
        let mut pos = start;
        while pos < end {
            let step = {
                let s = rx.borrow_and_update();
                next_step(&s, pos, end)
            };
            match step {
                Step::Send(pieces) => {
                    for piece in pieces {
                        pos += piece.len() as u64;
                        if tx.send(Ok(piece)).await.is_err() {
                            return; // The client went away.
                        }
                    }
                }
                Step::Wait => {
                    if rx.changed().await.is_err() {
                        let _ = tx.send(Err(failed("the fetch ended"))).await;
                        return;
                    }
                }
                Step::FromStore => {
                    stream_from_store(&store, &self.digest, pos, end, &tx).await;
                    return;
                }
                Step::Fail(reason) => {
                    let _ = tx.send(Err(failed(&reason))).await;
                    return;
                }
            }
        }
    }
}

enum Step {
    Send(Vec<Bytes>),
    Wait,
    FromStore,
    Fail(Arc<str>),
}

/// What a client at `pos` (wanting up to `end`) does next. Before the commit the last byte of
/// its range is held back, so that a blob that fails its digest never reaches a client whole.
fn next_step(s: &State, pos: u64, end: u64) -> Step {
    let limit = match &s.phase {
        Phase::Failed(reason) => return Step::Fail(reason.clone()),
        Phase::Missing => return Step::Fail("the upstream does not have the blob".into()),
        Phase::Starting => return Step::Wait,
        Phase::Done { .. } if pos < s.window_start || s.received < end => return Step::FromStore,
        Phase::Done { .. } => end,
        Phase::Streaming { .. } if pos < s.window_start => return Step::Wait,
        Phase::Streaming { .. } => s.received.min(end - 1),
    };
    if pos >= limit {
        return Step::Wait;
    }
    let mut pieces = Vec::new();
    let mut at = s.window_start;
    let mut taken = 0usize;
    for chunk in &s.window {
        let chunk_end = at + chunk.len() as u64;
        if chunk_end > pos && at < limit {
            let from = (pos.max(at) - at) as usize;
            let to = (limit.min(chunk_end) - at) as usize;
            let piece = chunk.slice(from..to);
            taken += piece.len();
            pieces.push(piece);
            if taken >= SEND_BYTES {
                break;
            }
        }
        at = chunk_end;
        if at >= limit {
            break;
        }
    }
    // Pieces are contiguous from `pos`: the window is, and it starts at or before `pos`.
    if pieces.is_empty() {
        Step::Wait
    } else {
        Step::Send(pieces)
    }
}

fn failed(reason: &str) -> StorageError {
    StorageError::Io(std::io::Error::other(format!(
        "pull-through fetch failed: {reason}"
    )))
}

/// The rest of a committed blob, read (and checked) from the store on a blocking thread.
async fn stream_from_store(
    store: &Store,
    digest: &Digest,
    start: u64,
    end: u64,
    tx: &mpsc::Sender<Result<Bytes, StorageError>>,
) {
    let store = store.clone();
    let digest = digest.clone();
    let reader = tokio::task::spawn_blocking(move || store.get(&digest)).await;
    let mut reader = match reader {
        Ok(Ok(Some(data))) => data.range(start, end),
        Ok(Ok(None)) => {
            let _ = tx.send(Err(failed("the blob left the store"))).await;
            return;
        }
        Ok(Err(e)) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(Err(failed(&e.to_string()))).await;
            return;
        }
    };
    loop {
        let next = tokio::task::spawn_blocking(move || {
            let next = reader.next();
            (reader, next)
        })
        .await;
        let Ok((r, next)) = next else {
            let _ = tx.send(Err(failed("reading the stored blob"))).await;
            return;
        };
        reader = r;
        match next {
            None => return,
            Some(item) => {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        }
    }
}

/// The fetch task of one flight.
struct Run {
    key: (String, Digest),
    flight: Arc<Flight>,
    flights: Arc<Flights>,
    store: Store,
    upstream: Arc<Upstream>,
    local: String,
    remote: String,
    report: Arc<dyn FlightReport>,
}

impl Run {
    async fn go(self) {
        let phase = match self.fetch().await {
            Ok(Some(size)) => {
                self.report.fetched(size);
                Phase::Done { size }
            }
            Ok(None) => Phase::Missing,
            Err(reason) => {
                tracing::warn!(
                    target: "berth::mirror",
                    upstream = self.upstream.base(),
                    repository = %self.remote,
                    digest = %self.flight.digest,
                    "blob fetch failed: {reason}"
                );
                self.report.failed(&reason);
                Phase::Failed(reason.into())
            }
        };
        // Out of the map first: a request arriving after this finds the store, or starts anew.
        self.flights
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.flight.state.send_modify(|s| {
            s.phase = phase;
            if matches!(s.phase, Phase::Failed(_) | Phase::Missing) {
                s.window.clear();
                s.window_bytes = 0;
            }
        });
    }

    /// Fetches and stores the blob: `Ok(Some(size))` once committed, `Ok(None)` when the
    /// upstream has no such blob.
    async fn fetch(&self) -> Result<Option<u64>, String> {
        let digest = &self.flight.digest;
        let mut blob = match self.upstream.blob(&self.remote, digest).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let Some(size) = blob.size() else {
            return Err("the upstream sent no Content-Length".into());
        };
        self.flight
            .state
            .send_modify(|s| s.phase = Phase::Streaming { size });
        let store = self.store.clone();
        let local = self.local.clone();
        let id = blocking(move || store.begin_upload(&local))
            .await
            .map_err(|e| e.to_string())?;
        match self.copy(&mut blob, id, size).await {
            Ok(()) => Ok(Some(size)),
            Err(reason) => {
                let store = self.store.clone();
                // A session already gone (a failed commit) has nothing left to discard.
                let _ = blocking(move || store.abort(&id)).await;
                Err(reason)
            }
        }
    }

    /// Reads the upstream's body into the window and the upload session. Appends (which hash
    /// every byte) run on a blocking thread while the next bytes are read, so a fetch takes
    /// about the longer of the transfer and the hashing, not their sum.
    async fn copy(&self, blob: &mut UpstreamBlob, id: UploadId, size: u64) -> Result<(), String> {
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(APPEND_QUEUE);
        let store = self.store.clone();
        let appender = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut offset = 0u64;
            while let Some(pieces) = rx.blocking_recv() {
                offset = store
                    .append_owned(&id, offset, pieces)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let read = self.read_into(blob, size, tx).await;
        // The appender's own failure explains a send that found it gone.
        let appended = appender
            .await
            .map_err(|e| format!("appending: {e}"))
            .and_then(|r| r);
        appended?;
        read?;
        let store = self.store.clone();
        let digest = self.flight.digest.clone();
        blocking(move || store.commit(&id, &digest))
            .await
            .map(|_| ())
            .map_err(|e| match e {
                StorageError::DigestMismatch { actual, .. } => {
                    format!("the upstream's bytes hash to {actual}; nothing was stored")
                }
                other => other.to_string(),
            })
    }

    /// Publishes every chunk of the body to the window and hands batches to the appender;
    /// dropping `tx` at the end tells it the body is complete.
    async fn read_into(
        &self,
        blob: &mut UpstreamBlob,
        size: u64,
        tx: mpsc::Sender<Vec<Bytes>>,
    ) -> Result<(), String> {
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut received = 0u64;
        let gone = || "the store stopped taking the blob".to_owned();
        while let Some(chunk) = blob
            .chunk()
            .await
            .map_err(|e: UpstreamError| e.to_string())?
        {
            if chunk.is_empty() {
                continue;
            }
            received += chunk.len() as u64;
            if received > size {
                return Err(format!("the upstream sent more than its {size} bytes"));
            }
            self.publish(chunk.clone());
            pending_bytes += chunk.len();
            pending.push(chunk);
            if pending_bytes >= APPEND_BYTES {
                tx.send(std::mem::take(&mut pending))
                    .await
                    .map_err(|_| gone())?;
                pending_bytes = 0;
            }
        }
        if received != size {
            return Err(format!("the upstream sent {received} of {size} bytes"));
        }
        if !pending.is_empty() {
            tx.send(pending).await.map_err(|_| gone())?;
        }
        Ok(())
    }

    fn publish(&self, chunk: Bytes) {
        self.flight.state.send_modify(|s| {
            s.received += chunk.len() as u64;
            s.window_bytes += chunk.len();
            s.window.push_back(chunk);
            while s.window_bytes > WINDOW_BYTES && s.window.len() > 1 {
                if let Some(old) = s.window.pop_front() {
                    s.window_bytes -= old.len();
                    s.window_start += old.len() as u64;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(phase: Phase, window_start: u64, chunks: &[&'static [u8]]) -> State {
        let window: VecDeque<Bytes> = chunks.iter().map(|c| Bytes::from_static(c)).collect();
        let window_bytes = window.iter().map(Bytes::len).sum();
        State {
            phase,
            received: window_start + window_bytes as u64,
            window,
            window_start,
            window_bytes,
        }
    }

    fn sent(step: Step) -> Vec<u8> {
        match step {
            Step::Send(p) => p.concat(),
            _ => panic!("expected bytes"),
        }
    }

    #[test]
    fn the_last_byte_waits_for_the_commit() {
        let s = state(Phase::Streaming { size: 6 }, 0, &[b"abc", b"def"]);
        assert_eq!(sent(next_step(&s, 0, 6)), b"abcde");
        assert!(matches!(next_step(&s, 5, 6), Step::Wait));
        // A range ending early is held back the same way.
        assert_eq!(sent(next_step(&s, 1, 4)), b"bc");
        let done = state(Phase::Done { size: 6 }, 0, &[b"abc", b"def"]);
        assert_eq!(sent(next_step(&done, 5, 6)), b"f");
    }

    #[test]
    fn behind_the_window_means_the_store() {
        let s = state(Phase::Streaming { size: 9 }, 3, &[b"def", b"ghi"]);
        assert!(matches!(next_step(&s, 1, 9), Step::Wait));
        assert_eq!(sent(next_step(&s, 4, 9)), b"efgh");
        let done = state(Phase::Done { size: 9 }, 3, &[b"def", b"ghi"]);
        assert!(matches!(next_step(&done, 1, 9), Step::FromStore));
        let failed = state(Phase::Failed("bad digest".into()), 0, &[]);
        assert!(matches!(next_step(&failed, 0, 9), Step::Fail(_)));
    }
}
