//! berth-gc-bench: the engine-side helper of `tools/bench/gc.sh` (built only with the `engine`
//! feature, so that berth-load itself stays a client of any registry).
//!
//! - `fill`: a store of bulk images (one large layer each) with small probe images spread
//!   among them, then a fraction of the bulk images deleted; writes the probes as a
//!   `berth-load latency` targets file.
//! - `compact`: one collection with compaction, unthrottled unless `--rate` is given; prints
//!   the live bytes relocated per second of compaction.
//!
//! Both open the store themselves: run them on a store no server has open (a running
//! `berth serve` is told to collect with `POST /admin/gc` instead).
//!
//! Every result is one `name key=value …` line on stdout, like berth-load's.

#[allow(dead_code)]
mod data;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{GcOptions, GcPhase, GcProgress, ManifestPut, Store, StoreOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-gc-bench",
    about = "Engine-side helper of tools/bench/gc.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fill a store with bulk and probe images and delete a fraction of the bulk ones.
    Fill {
        #[arg(long)]
        dir: PathBuf,
        /// Total bytes of bulk layers.
        #[arg(long, default_value = "4GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value = "8MiB", value_parser = parse_size)]
        layer: u64,
        /// Fraction of the bulk images deleted afterwards.
        #[arg(long, default_value_t = 0.6)]
        delete: f64,
        /// Probe images (one small layer each), spread evenly among the bulk ones.
        #[arg(long, default_value_t = 256)]
        probes: u64,
        #[arg(long, default_value = "64KiB", value_parser = parse_size)]
        probe_layer: u64,
        /// Where to write the probes as `berth-load latency` targets.
        #[arg(long)]
        targets: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run one collection with compaction and print its throughput.
    Compact {
        #[arg(long)]
        dir: PathBuf,
        /// Compaction budget in bytes per second (default: the engine's default).
        #[arg(long)]
        rate: Option<u64>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("bad unit in {s:?} (KiB, MiB, GiB)")),
    };
    Ok(n * mult)
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Fill {
            dir,
            size,
            layer,
            delete,
            probes,
            probe_layer,
            targets,
            seed,
        } => fill(
            &dir,
            size,
            layer,
            delete,
            probes,
            probe_layer,
            &targets,
            seed,
        ),
        Cmd::Compact { dir, rate } => compact(&dir, rate),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-gc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn store_options() -> StoreOptions {
    // What `berth serve` opens a store with when given no settings.
    berth::config::Config::with_data(Path::new(".")).store
}

fn sha(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

/// Pushes one layer and a manifest naming it under `tag`; returns (layer, manifest) digests.
fn push_image(
    store: &Store,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> Result<(Digest, Digest), Error> {
    let d = sha(layer);
    store.put_blob(repo, &d, layer)?;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}]}}"#,
        layer.len()
    )
    .into_bytes();
    let put = ManifestPut {
        digest: sha(&body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body,
        tags: vec![tag.to_string()],
        references: vec![d.clone()],
        subject: None,
        artifact_type: None,
        annotations: Default::default(),
    };
    store.put_manifest(repo, &put)?;
    Ok((d, put.digest))
}

#[allow(clippy::too_many_arguments)]
fn fill(
    dir: &Path,
    size: u64,
    layer: u64,
    delete: f64,
    probes: u64,
    probe_layer: u64,
    targets: &Path,
    seed: u64,
) -> Result<(), Error> {
    let started = Instant::now();
    let store = Store::open(dir, store_options())?;
    let stream = data::Stream::new(seed);
    let bulk = (size / layer).max(1);
    let every = (bulk / probes.max(1)).max(1);
    const WORKERS: u64 = 2;
    // Each worker pushes every WORKERS-th bulk image and the probes that follow them.
    let lines: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let store = &store;
                s.spawn(move || -> Result<Vec<String>, Error> {
                    let mut lines = Vec::new();
                    for i in (w..bulk).step_by(WORKERS as usize) {
                        let data = stream.derive(i).bytes(0, layer);
                        push_image(store, &format!("bulk/r{}", i % 16), &format!("b{i}"), &data)?;
                        if i % every == 0 && i / every < probes {
                            let p = i / every;
                            let repo = format!("probe/r{}", p % 8);
                            let data = stream.derive(u64::MAX - p).bytes(0, probe_layer);
                            let (d, _) = push_image(store, &repo, &format!("p{p}"), &data)?;
                            lines.push(format!("blob {repo} {d}"));
                            lines.push(format!("manifest {repo} p{p}"));
                        }
                    }
                    Ok(lines)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("fill worker panicked")?);
        }
        Ok::<_, Error>(all)
    })?;
    let pushed = started.elapsed();
    std::fs::write(targets, lines.join("\n") + "\n")?;
    // Delete a deterministic, evenly spread `delete` fraction of the bulk images.
    let mut deleted = 0u64;
    for i in 0..bulk {
        let x = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
        if x < delete {
            let repo = format!("bulk/r{}", i % 16);
            let m = store
                .get_manifest(&repo, &berth::storage::Reference::Tag(format!("b{i}")))?
                .ok_or("bulk image missing")?;
            store.delete_manifest(&repo, &m.digest)?;
            deleted += 1;
        }
    }
    store.checkpoint()?;
    let space = store.space();
    store.close()?;
    println!(
        "fill dir={} bulk_images={bulk} layer_bytes={layer} probes={} deleted={deleted} \
         segments={} segment_bytes={} push_seconds={:.1} MB/s={:.1} seconds={:.1}",
        dir.display(),
        lines.len() / 2,
        space.segments.len(),
        space.segments.iter().map(|s| s.size).sum::<u64>(),
        pushed.as_secs_f64(),
        (bulk * layer) as f64 / pushed.as_secs_f64() / 1e6,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn gc_options(rate: Option<u64>) -> GcOptions {
    let mut opts = GcOptions::default();
    if rate.is_some() {
        opts.compact_rate = rate;
    }
    opts
}

fn report_line(name: &str, r: &berth::storage::GcReport, total: Duration) -> String {
    let secs = r.compact_time.as_secs_f64();
    format!(
        "{name} swept_blobs={} swept_bytes={} segments_compacted={} relocated_bytes={} \
         reclaimed_bytes={} mark_seconds={:.3} sweep_seconds={:.3} compact_seconds={:.3} \
         MB/s={:.1} seconds={:.3}",
        r.blobs_removed,
        r.bytes_swept,
        r.segments_compacted,
        r.bytes_relocated,
        r.bytes_reclaimed,
        r.mark_time.as_secs_f64(),
        r.sweep_time.as_secs_f64(),
        secs,
        if secs > 0.0 {
            r.bytes_relocated as f64 / secs / 1e6
        } else {
            0.0
        },
        total.as_secs_f64(),
    )
}

/// Reports on stderr when the compaction starts and how much it has to move.
fn progress_printer() -> impl FnMut(GcProgress) {
    let mut compacting = false;
    move |p: GcProgress| {
        if p.phase == GcPhase::Compact && !compacting {
            compacting = true;
            eprintln!("berth-gc-bench: compacting, {} live bytes to move", p.total);
        }
    }
}

fn compact(dir: &Path, rate: Option<u64>) -> Result<(), Error> {
    let store = Store::open(dir, store_options())?;
    let started = Instant::now();
    let r = store.gc(&gc_options(rate), &mut progress_printer())?;
    println!("{}", report_line("compact", &r, started.elapsed()));
    store.close()?;
    Ok(())
}
