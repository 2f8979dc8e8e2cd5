//! Reading a 1 GiB blob from the segment maps (checking every chunk's blake3 on every read, on
//! the first read only, or never), and index lookup latency among 20,000 blobs.

use std::time::Duration;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{ReadVerification, Store, StoreOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BLOB: usize = 1 << 30;

fn touch(parts: berth::storage::BlobReader) -> u64 {
    // Read every byte (8 at a time) so the pages really come from the map.
    parts
        .map(|b| {
            let b = b.unwrap();
            b.chunks_exact(8).fold(0u64, |a, w| {
                a ^ u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))
            })
        })
        .fold(0, |a, x| a ^ x)
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(
        std::env::var("BERTH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    let chunk: Vec<u8> = (0..(16usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let (digest, lookups) = {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut h = berth::oci::digest::Hasher::new(Algorithm::Sha256);
        let id = store.begin_upload("bench/read").unwrap();
        let mut off = 0;
        for _ in 0..BLOB / chunk.len() {
            h.update(&chunk);
            off = store.append(&id, off, &chunk).unwrap();
        }
        let digest = h.finish();
        store.commit(&id, &digest).unwrap();
        let small: Vec<Digest> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16u64)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || {
                        (0..1250u64)
                            .map(|i| {
                                let data = (t * 10_000 + i).to_le_bytes();
                                let d = Digest::of(Algorithm::Sha256, &data);
                                store.put_blob("bench/lookup", &d, &data).unwrap();
                                d
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        store.close().unwrap();
        (digest, small)
    };

    let mut g = c.benchmark_group("read_1GiB");
    g.throughput(Throughput::Bytes(BLOB as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(10));
    for policy in [
        ReadVerification::Always,
        ReadVerification::Once,
        ReadVerification::Off,
    ] {
        let store = Store::open(
            dir.path(),
            StoreOptions {
                read_verification: policy,
                ..Default::default()
            },
        )
        .unwrap();
        g.bench_function(format!("get+touch/verify_{policy}"), |b| {
            b.iter(|| touch(store.get(&digest).unwrap().unwrap().reader()))
        });
        drop(store);
    }
    g.finish();

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut g = c.benchmark_group("index_lookup_20k_blobs");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    g.bench_function("stat", |b| {
        b.iter(|| {
            i = (i + 7919) % lookups.len();
            store.stat(&lookups[i]).unwrap().unwrap()
        })
    });
    g.bench_function("repo_has_blob", |b| {
        b.iter(|| {
            i = (i + 7919) % lookups.len();
            store.repo_has_blob("bench/lookup", &lookups[i]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
