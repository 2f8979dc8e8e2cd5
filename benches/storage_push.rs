//! Chunked append + commit of a 1 GiB blob at three client chunk sizes, beside the two limits
//! measured on the same bytes: the hashing the format does (sha256 + blake3 per chunk record)
//! and the durable write bandwidth of the disk (write_all + sync_data of a plain file).

use std::io::Write;
use std::time::{Duration, Instant};

use berth::oci::digest::{Algorithm, Digest, Hasher};
use berth::storage::{Store, StoreOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BLOB: usize = 1 << 30;
const PATTERN: usize = 64 << 20;
const RECORD: usize = 1 << 20;

/// 64 MiB of pseudo-random bytes, fed 16 times to make 1 GiB.
fn pattern() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..PATTERN / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn blob_digest(p: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    for _ in 0..BLOB / PATTERN {
        h.update(p);
    }
    h.finish()
}

fn bench_dir() -> tempfile::TempDir {
    // Next to the target dir, on the same disk as a real data directory would be.
    tempfile::tempdir_in(std::env::var("BERTH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap()
}

fn push(c: &mut Criterion) {
    let p = pattern();
    let digest = blob_digest(&p);
    let mut g = c.benchmark_group("push_1GiB");
    g.throughput(Throughput::Bytes(BLOB as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(20));

    g.bench_function("limit_a/sha256+blake3", |b| {
        b.iter(|| {
            let mut h = Hasher::new(Algorithm::Sha256);
            for _ in 0..BLOB / PATTERN {
                h.update(&p);
                for rec in p.chunks(RECORD) {
                    std::hint::black_box(blake3::hash(rec));
                }
            }
            h.finish()
        })
    });
    g.bench_function("limit_a/sha256", |b| b.iter(|| blob_digest(&p)));
    g.bench_function("limit_a/blake3", |b| {
        b.iter(|| {
            for _ in 0..BLOB / PATTERN {
                for rec in p.chunks(RECORD) {
                    std::hint::black_box(blake3::hash(rec));
                }
            }
        })
    });
    g.bench_function("limit_b/write_all+sync_data", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir();
                let mut f = std::fs::File::create(dir.path().join("plain")).unwrap();
                let t = Instant::now();
                for _ in 0..BLOB / PATTERN {
                    f.write_all(&p).unwrap();
                }
                f.sync_data().unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    for chunk in [64 << 10, 1 << 20, 16 << 20] {
        g.bench_with_input(
            BenchmarkId::new("store", format!("{}KiB", chunk >> 10)),
            &chunk,
            |b, &chunk| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = bench_dir();
                        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
                        let t = Instant::now();
                        let id = store.begin_upload("bench/push").unwrap();
                        let mut off = 0;
                        for _ in 0..BLOB / PATTERN {
                            for part in p.chunks(chunk) {
                                off = store.append(&id, off, part).unwrap();
                            }
                        }
                        store.commit(&id, &digest).unwrap();
                        total += t.elapsed();
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, push);
criterion_main!(benches);
