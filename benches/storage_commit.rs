//! Commit rate of 4 KiB blobs from 16 concurrent writers (group commit at work), as monolithic
//! pushes and as upload sessions (begin + append + commit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{Store, StoreOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const THREADS: u64 = 16;
const PER_THREAD: u64 = 200;

fn blob(n: u64) -> Vec<u8> {
    let mut v = vec![0u8; 4096];
    v[..8].copy_from_slice(&n.to_le_bytes());
    v
}

fn run(store: &Store, counter: &AtomicU64, session: bool) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    let data = blob(counter.fetch_add(1, Ordering::Relaxed));
                    let d = Digest::of(Algorithm::Sha256, &data);
                    if session {
                        let id = store.begin_upload("bench/commit").unwrap();
                        store.append(&id, 0, &data).unwrap();
                        store.commit(&id, &d).unwrap();
                    } else {
                        store.put_blob("bench/commit", &d, &data).unwrap();
                    }
                }
            });
        }
    });
    t.elapsed()
}

fn commits(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(
        std::env::var("BERTH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("commit_4KiB_16_threads");
    g.throughput(Throughput::Elements(THREADS * PER_THREAD));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("put_blob", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(&store, &counter, false)).sum())
    });
    g.bench_function("upload_session", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(&store, &counter, true)).sum())
    });
    g.finish();
}

criterion_group!(benches, commits);
criterion_main!(benches);
