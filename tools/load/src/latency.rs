//! Read latency under whatever else the registry is doing: concurrent clients GET blobs and
//! manifests named in a targets file, each waiting for the whole response, until a duration
//! passes or a stop file appears; prints p50/p90/p99/max per kind.
//!
//! Targets file, one per line: `blob <repo> <digest>` or `manifest <repo> <tag-or-digest>`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, StatusCode};
use http_body_util::BodyExt;

use crate::client::{self, LoadError, Registry};
use crate::manifest::OCI_MANIFEST;
use crate::report::{Latencies, Line};

pub struct Options {
    pub targets: PathBuf,
    pub clients: usize,
    pub seconds: f64,
    pub stop_file: Option<PathBuf>,
    pub label: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blob,
    Manifest,
}

struct Target {
    kind: Kind,
    path: String,
}

fn read_targets(path: &PathBuf) -> Result<(Vec<Target>, Vec<Target>), LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::BadArgument(format!("{}: {e}", path.display())))?;
    let (mut blobs, mut manifests) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["blob", repo, digest] => blobs.push(Target {
                kind: Kind::Blob,
                path: format!("/v2/{repo}/blobs/{digest}"),
            }),
            ["manifest", repo, reference] => manifests.push(Target {
                kind: Kind::Manifest,
                path: format!("/v2/{repo}/manifests/{reference}"),
            }),
            _ => return Err(LoadError::BadArgument(format!("bad target line {line:?}"))),
        }
    }
    if blobs.is_empty() || manifests.is_empty() {
        return Err(LoadError::BadArgument(
            "the targets file needs blobs and manifests".into(),
        ));
    }
    Ok((blobs, manifests))
}

/// One GET, the whole body read; returns the bytes received.
async fn get(reg: &Registry, t: &Target) -> Result<u64, LoadError> {
    let headers = match t.kind {
        Kind::Manifest => vec![(header::ACCEPT, OCI_MANIFEST.to_string())],
        Kind::Blob => Vec::new(),
    };
    let resp = reg
        .send(Method::GET, &reg.url(&t.path), &headers, client::empty())
        .await?;
    if resp.status() != StatusCode::OK {
        client::expect("GET", resp, StatusCode::OK).await?;
        return Ok(0);
    }
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    let (blobs, manifests) = read_targets(&opts.targets)?;
    let (blobs, manifests) = (Arc::new(blobs), Arc::new(manifests));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.seconds);
    let watcher = {
        let (stop, file) = (stop.clone(), opts.stop_file.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline && !file.as_ref().is_some_and(|f| f.exists()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let (reg, blobs, manifests) = (reg.clone(), blobs.clone(), manifests.clone());
        let (stop, errors, bytes) = (stop.clone(), errors.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0xbf58_476d);
            let (mut blob_ms, mut manifest_ms) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // xorshift64: the targets a client visits are spread evenly and differ by client.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (set, out) = if (n + c as u64) & 1 == 0 {
                    (&blobs, &mut blob_ms)
                } else {
                    (&manifests, &mut manifest_ms)
                };
                n += 1;
                let t = &set[(x % set.len() as u64) as usize];
                let begun = Instant::now();
                match get(&reg, t).await {
                    Ok(b) => {
                        out.push(begun.elapsed());
                        bytes.fetch_add(b, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("berth-load: GET {}: {e}", t.path);
                        }
                    }
                }
            }
            (blob_ms, manifest_ms)
        }));
    }
    let (mut blob_all, mut manifest_all) = (Vec::new(), Vec::new());
    for t in tasks {
        let (b, m) = t.await.map_err(|e| LoadError::BadArgument(e.to_string()))?;
        blob_all.extend(b);
        manifest_all.extend(m);
    }
    let _ = watcher.await;
    let elapsed = started.elapsed();
    for (kind, all) in [("blob", blob_all), ("manifest", manifest_all)] {
        let count = all.len();
        let line = Line::new("latency")
            .field("label", &opts.label)
            .field("kind", kind)
            .field("clients", opts.clients)
            .field("count", count)
            .field(
                "per_second",
                format!("{:.0}", count as f64 / elapsed.as_secs_f64()),
            )
            .seconds("seconds", elapsed);
        Latencies::new(all).add_to(line).print();
    }
    Line::new("latency-total")
        .field("label", &opts.label)
        .field("errors", errors.load(Ordering::Relaxed))
        .mbps(bytes.load(Ordering::Relaxed), elapsed)
        .print();
    Ok(())
}
