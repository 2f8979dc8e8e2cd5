//! Mark and sweep over 100,000 manifests in 1,000 repositories, 10 % of them deleted: a dry run
//! (the mark alone: one pass over a redb snapshot) and a real run without compaction (mark,
//! then the sweep's logged ops). Goal: under 2 s for the real run.
//!
//! The store is built once, outside the measurements (its build time is printed): each
//! repository has 20 shared layers and 100 manifests of two layers each, pushed by 32 threads
//! so that the group commit shares its syncs; then every tenth manifest is deleted. A real run
//! changes the store, so each sample runs on a fresh copy of it (copied outside the timing).
//! `BERTH_BENCH_GC_TEMPLATE=<dir>` keeps the built store there and reuses it next time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{GcOptions, ManifestPut, Store, StoreOptions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};

const REPOS: u64 = 1000;
const MANIFESTS_PER_REPO: u64 = 100;
const LAYERS_PER_REPO: u64 = 20;
const THREADS: u64 = 32;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 4 << 20,
        ..Default::default()
    }
}

fn sha(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

fn layer(repo: u64, i: u64) -> Vec<u8> {
    format!("layer {i} of repository {repo}").into_bytes()
}

/// Builds the store: layers, manifests, then the deletions. Returns the manifests deleted.
fn build(dir: &Path) -> u64 {
    let store = Store::open(dir, opts()).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for r in (t..REPOS).step_by(THREADS as usize) {
                    let repo = format!("bench/r{r:04}");
                    let layers: Vec<Digest> = (0..LAYERS_PER_REPO)
                        .map(|i| {
                            let data = layer(r, i);
                            store.put_blob(&repo, &sha(&data), &data).unwrap();
                            sha(&data)
                        })
                        .collect();
                    for m in 0..MANIFESTS_PER_REPO {
                        let refs = vec![
                            layers[(m % LAYERS_PER_REPO) as usize].clone(),
                            layers[((m * 7 + 3) % LAYERS_PER_REPO) as usize].clone(),
                        ];
                        let body = format!(
                            "{{\"schemaVersion\":2,\"repo\":{r},\"n\":{m},\"layers\":{refs:?}}}"
                        )
                        .into_bytes();
                        let put = ManifestPut {
                            digest: sha(&body),
                            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                            body,
                            tags: vec![format!("v{m}")],
                            references: refs,
                            subject: None,
                            artifact_type: None,
                            annotations: BTreeMap::new(),
                        };
                        store.put_manifest(&repo, &put).unwrap();
                    }
                }
            });
        }
    });
    let pushed = started.elapsed();
    let mut deleted = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut n = 0u64;
                    for r in (t..REPOS).step_by(THREADS as usize) {
                        let repo = format!("bench/r{r:04}");
                        for m in (0..MANIFESTS_PER_REPO).step_by(10) {
                            let d = store
                                .get_manifest(
                                    &repo,
                                    &berth::storage::Reference::Tag(format!("v{m}")),
                                )
                                .unwrap()
                                .unwrap()
                                .digest;
                            assert!(store.delete_manifest(&repo, &d).unwrap());
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        deleted = handles.into_iter().map(|h| h.join().unwrap()).sum();
    });
    store.close().unwrap();
    eprintln!(
        "built {} manifests in {REPOS} repositories in {:.1} s, deleted {deleted} in {:.1} s",
        REPOS * MANIFESTS_PER_REPO,
        pushed.as_secs_f64(),
        (started.elapsed() - pushed).as_secs_f64()
    );
    deleted
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn template(root: &Path) -> PathBuf {
    if let Ok(keep) = std::env::var("BERTH_BENCH_GC_TEMPLATE") {
        let dir = PathBuf::from(keep);
        if dir.join("complete").exists() {
            eprintln!("reusing the store in {}", dir.display());
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir);
        std::fs::write(dir.join("complete"), b"").unwrap();
        return dir;
    }
    let dir = root.join("template");
    build(&dir);
    dir
}

fn gc(c: &mut Criterion) {
    let root = tempfile::tempdir_in(
        std::env::var("BERTH_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    let template = template(root.path());

    let mut g = c.benchmark_group("gc_100k_manifests_1k_repos");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(15));

    // A dry run changes nothing: one store serves every sample.
    {
        let copy = root.path().join("dry");
        copy_dir(&template, &copy);
        let store = Store::open(&copy, opts()).unwrap();
        let dry = GcOptions {
            dry_run: true,
            compact: false,
            ..Default::default()
        };
        let r = store.gc(&dry, &mut |_| {}).unwrap();
        eprintln!(
            "dry run: would remove {} blobs ({} bytes); mark {:?}",
            r.blobs_removed, r.bytes_swept, r.mark_time
        );
        g.bench_function("dry_run_mark_only", |b| {
            b.iter(|| store.gc(&dry, &mut |_| {}).unwrap())
        });
        drop(store);
        std::fs::remove_dir_all(&copy).unwrap();
    }

    let real = GcOptions {
        compact: false,
        ..Default::default()
    };
    let mut n = 0u64;
    let mut fresh = || {
        n += 1;
        let copy = root.path().join(format!("run{n}"));
        copy_dir(&template, &copy);
        let store = Store::open(&copy, opts()).unwrap();
        (store, Cleanup(copy))
    };
    {
        let (store, _copy) = fresh();
        let r = store.gc(&real, &mut |_| {}).unwrap();
        eprintln!(
            "real run: removed {} blobs and {} links ({} bytes), {} kept as touched; mark {:?}, \
             sweep {:?}",
            r.blobs_removed,
            r.links_removed,
            r.bytes_swept,
            r.kept_touched,
            r.mark_time,
            r.sweep_time
        );
    }
    g.bench_function("mark_and_sweep", |b| {
        b.iter_batched(
            &mut fresh,
            |(store, copy)| {
                let r = store.gc(&real, &mut |_| {}).unwrap();
                assert!(r.blobs_removed > 0);
                (store, copy)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Removes a store copy once its store is dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

criterion_group!(benches, gc);
criterion_main!(benches);
