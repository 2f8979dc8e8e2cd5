//! kill -9 at random moments: a child process (this test binary re-executed) pushes blobs and
//! chunks and prints each digest after its commit returns; after every kill the store reopens
//! with every printed blob present and verified, and serves only blobs that were pushed. Each
//! round also grows one upload session; it must resume at no less than what the child's last
//! commit made durable, and finish into the right blob. Two profiles: small records and
//! segments (many rolls), and default 1 MiB records, which the writer threads write around the
//! page cache (`O_DIRECT`).

mod storage_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::SplitMix;
use berth::storage::*;
use storage_support::{blob_bytes, test_seed};

const CHILD_ENV: &str = "BERTH_CRASH_CHILD_DIR";

/// What one scenario's child writes.
#[derive(Clone, Copy)]
struct Profile {
    /// The test's name: the child is this test binary re-executed for that test alone.
    test: &'static str,
    record: usize,
    segment: u64,
    rounds: u64,
    /// Size of each round's long upload session; its bytes are a pure function of the round.
    long_len: usize,
    /// The long session grows by up to this much after each commit.
    long_step: u64,
    /// The child is killed this many milliseconds after it is ready to push (one round in four:
    /// after it was spawned), plus up to as many again.
    run_ms: u64,
}

const SMALL_RECORDS: Profile = Profile {
    test: "kill_9_at_random_moments_keeps_committed_blobs",
    record: 16 * 1024,
    segment: 512 * 1024,
    rounds: 20,
    long_len: 4 << 20,
    long_step: 30_000,
    run_ms: 120,
};

const DIRECT_RECORDS: Profile = Profile {
    test: "kill_9_during_direct_record_writes_keeps_committed_blobs",
    record: 1 << 20,
    segment: 8 << 20,
    rounds: 8,
    long_len: 16 << 20,
    long_step: 512 << 10,
    run_ms: 350,
};

fn opts(p: Profile) -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: p.record,
        max_segment_bytes: p.segment,
        ..Default::default()
    }
}

/// Blob contents are a pure function of (round, n), so the parent can check them.
fn blob_for(round: u64, n: u64) -> Vec<u8> {
    let mut rng = SplitMix(round << 32 | n);
    let len = match rng.below(4) {
        0 => rng.below(64),
        1 => rng.below(8 * 1024),
        _ => rng.below(200 * 1024),
    };
    let mut v = random_bytes(&mut rng, len.div_ceil(8) as usize * 8);
    v.truncate(len as usize);
    v
}

/// `len` (a multiple of 8) bytes from `rng`, eight per draw. Written as a plain loop: the
/// child makes megabytes of these before its first push, and iterator chains are slow in
/// debug builds.
fn random_bytes(rng: &mut SplitMix, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for word in v.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    v
}

/// Marks the long session's blob in the parent's `attempted` map.
const LONG: u64 = u64::MAX;

fn long_data(round: u64, p: Profile) -> Vec<u8> {
    let mut rng = SplitMix(round << 32 | 0xffff_ffff);
    random_bytes(&mut rng, p.long_len / 8 * 8)
}

fn content(round: u64, n: u64, p: Profile) -> Vec<u8> {
    if n == LONG {
        long_data(round, p)
    } else {
        blob_for(round, n)
    }
}

/// The child: push forever, announcing each blob before ("try") and after ("ok") its commit.
fn child(dir: &Path, round: u64, p: Profile) -> ! {
    let store = Store::open(dir, opts(p)).unwrap();
    let mut out = std::io::stdout().lock();
    let mut rng = SplitMix(round ^ 0xc0ffee);
    let long = store.begin_upload("crash/long").unwrap();
    let long_bytes = long_data(round, p);
    let mut long_off = 0usize;
    writeln!(out, "@@long {long}").unwrap();
    for n in 0.. {
        let data = blob_for(round, n);
        let d = Digest::of(Algorithm::Sha256, &data);
        writeln!(out, "@@try {round} {n} {d}").unwrap();
        out.flush().unwrap();
        if rng.below(3) == 0 {
            store.put_blob("crash/mono", &d, &data).unwrap();
        } else {
            let id = store.begin_upload("crash/chunked").unwrap();
            let mut off = 0;
            for part in data.chunks(1 + rng.below(40_000) as usize) {
                off = store.append(&id, off, part).unwrap();
            }
            store.commit(&id, &d).unwrap();
        }
        // The long session holds less than one record in its tail and at most four records in
        // flight; everything else it was given before this commit is in the log, which the
        // commit synced.
        let floor = long_off.saturating_sub(5 * p.record - 1);
        writeln!(out, "@@ok {d}").unwrap();
        writeln!(out, "@@durable {floor}").unwrap();
        out.flush().unwrap();
        let end = (long_off + 1 + rng.below(p.long_step) as usize).min(p.long_len);
        if end > long_off {
            store
                .append(&long, long_off as u64, &long_bytes[long_off..end])
                .unwrap();
            long_off = end;
        }
    }
    unreachable!()
}

#[test]
fn kill_9_at_random_moments_keeps_committed_blobs() {
    run(SMALL_RECORDS);
}

#[test]
fn kill_9_during_direct_record_writes_keeps_committed_blobs() {
    run(DIRECT_RECORDS);
}

fn run(p: Profile) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round = std::env::var("BERTH_CRASH_ROUND").unwrap().parse().unwrap();
        child(Path::new(&dir), round, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = test_seed(p.test);
    let mut rng = SplitMix(seed);
    let mut attempted: BTreeMap<Digest, (u64, u64)> = BTreeMap::new();
    let mut acknowledged: Vec<Digest> = Vec::new();
    for round in 0..p.rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", p.test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("BERTH_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut ready = Some(ready);
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("@@long ") {
                    ready.take().map(|r| r.send(()));
                }
                lines.push(line);
            }
            lines
        });
        // Most kills land at a random moment of the child's pushes, counted from when it is
        // ready: its start-up (opening the store, making the long session's bytes) takes a
        // good part of a second in debug, longer on a busy machine, where rounds used to end
        // before any push. One round in four counts from the spawn, so the kill may also
        // interrupt recovery.
        if rng.below(4) != 0 {
            let _ = started.recv_timeout(Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(p.run_ms + rng.below(p.run_ms)));
        let mut long: Option<UploadId> = None;
        let mut durable: Option<u64> = None;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            // libtest may print its "test … " prefix on the same line as the first record.
            let Some(at) = line.find("@@") else { continue };
            let parts: Vec<&str> = line[at + 2..].split(' ').collect();
            match parts.as_slice() {
                ["try", r, n, d] => {
                    attempted.insert(d.parse().unwrap(), (r.parse().unwrap(), n.parse().unwrap()));
                }
                ["ok", d] => acknowledged.push(d.parse().unwrap()),
                // A line cut by the kill parses short or not at all, never past the truth.
                ["long", id] => long = id.parse().ok(),
                ["durable", floor] => durable = floor.parse().ok().or(durable),
                _ => {} // a line cut by the kill, or test-harness output
            }
        }
        let store = Store::open(dir.path(), opts(p)).unwrap();
        if let (Some(id), Some(floor)) = (long, durable) {
            // A commit returned after the session began, so the session is durable too.
            let st = store
                .status(&id)
                .unwrap_or_else(|e| panic!("round {round}: long session lost: {e}"));
            assert!(
                st.offset >= floor,
                "round {round}: long session resumes at {} below its durable {floor}",
                st.offset
            );
            let data = long_data(round, p);
            store
                .append(&id, st.offset, &data[st.offset as usize..])
                .unwrap();
            let d = Digest::of(Algorithm::Sha256, &data);
            store.commit(&id, &d).unwrap();
            attempted.insert(d.clone(), (round, LONG));
            acknowledged.push(d);
        }
        // Content of this round's blobs is compared byte for byte; older ones were compared
        // in their own round and are covered by verify()'s scrub of every record since.
        for d in &acknowledged {
            let (r, n) = attempted[d];
            let got = store
                .get(d)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged {d} lost"));
            if r == round {
                assert_eq!(
                    got.read_all().unwrap().to_vec(),
                    content(r, n, p),
                    "round {round}: {d} content"
                );
            }
        }
        for b in store.list_blobs(None, usize::MAX).unwrap() {
            let &(r, n) = attempted
                .get(&b.digest)
                .unwrap_or_else(|| panic!("round {round}: never pushed {}", b.digest));
            if r == round {
                assert_eq!(blob_bytes(&store, &b.digest), content(r, n, p));
            }
        }
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
    eprintln!(
        "{} pushes attempted, {} acknowledged",
        attempted.len(),
        acknowledged.len()
    );
    assert!(
        acknowledged.len() as u64 >= p.rounds,
        "the child committed too little to test anything"
    );
}
