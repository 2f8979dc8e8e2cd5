//! Chunked blob push: POST an upload session, PATCH each chunk with `Content-Range`, PUT
//! `?digest=`; the clock runs from the POST to the PUT's response.

use std::time::{Duration, Instant};

use http::{header, Method, StatusCode};

use crate::client::{self, LoadError, Registry};
use crate::data::{Periodic, Stream};
use crate::report::Line;

/// Bytes generated per blob; longer blobs repeat them (16 parallel pushes hold 256 MiB).
const PERIOD: u64 = 16 << 20;

pub struct Options {
    pub repo: String,
    pub size: u64,
    pub chunk: u64,
    pub parallel: usize,
    pub seed: Option<u64>,
}

/// What one push measured.
struct Pushed {
    digest: String,
    total: Duration,
    /// Time of the final PUT alone: where a store that defers its flush to commit shows it.
    put: Duration,
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    if opts.chunk == 0 || opts.size == 0 || opts.parallel == 0 {
        return Err(LoadError::BadArgument(
            "size, chunk and parallel must be positive".into(),
        ));
    }
    let base = opts.seed.map(Stream::new).unwrap_or_else(Stream::fresh);
    eprintln!(
        "push-chunked: generating and hashing {} x {} bytes before the timed run",
        opts.parallel, opts.size
    );
    let streams: Vec<Periodic> = (0..opts.parallel as u64)
        .map(|i| Periodic::new(&base.derive(i), opts.size, PERIOD))
        .collect();
    let digests = digests_of(&streams, opts.size);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (stream, digest) in streams.into_iter().zip(digests) {
        let reg = reg.clone();
        let repo = opts.repo.clone();
        let (size, chunk) = (opts.size, opts.chunk);
        tasks.push(tokio::spawn(async move {
            push_one(&reg, &repo, stream, size, chunk, digest).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => results.push(r?),
            Err(e) => return Err(LoadError::BadArgument(format!("push task failed: {e}"))),
        }
    }
    let wall = start.elapsed();

    for r in &results {
        Line::new("push-chunked")
            .field("registry", reg.base())
            .field("repo", &opts.repo)
            .field("size", opts.size)
            .field("chunk", opts.chunk)
            .seconds("seconds", r.total)
            .mbps(opts.size, r.total)
            .seconds("put_seconds", r.put)
            .field("digest", &r.digest)
            .print();
    }
    if opts.parallel > 1 {
        Line::new("push-chunked-total")
            .field("parallel", opts.parallel)
            .field("bytes", opts.size * opts.parallel as u64)
            .seconds("seconds", wall)
            .mbps(opts.size * opts.parallel as u64, wall)
            .print();
    }
    Ok(())
}

/// Hashes every blob on its own thread: preparation is not measured, but it should not make a
/// 16-way run wait for 16 sequential hashes either.
fn digests_of(streams: &[Periodic], size: u64) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter()
            .map(|s| scope.spawn(move || s.sha256(size)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

async fn push_one(
    reg: &Registry,
    repo: &str,
    stream: Periodic,
    size: u64,
    chunk: u64,
    digest: String,
) -> Result<Pushed, LoadError> {
    let start = Instant::now();
    let resp = reg
        .send(
            Method::POST,
            &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
            &[],
            client::empty(),
        )
        .await?;
    let parts = client::expect("POST upload", resp, StatusCode::ACCEPTED).await?;
    let mut location = client::location("POST upload", &parts)?;

    let mut offset = 0;
    while offset < size {
        let end = (offset + chunk).min(size);
        let headers = [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_RANGE, format!("{}-{}", offset, end - 1)),
        ];
        let resp = reg
            .send(
                Method::PATCH,
                &reg.url(&location),
                &headers,
                client::boxed(stream.body(offset, end)),
            )
            .await?;
        let parts = client::expect("PATCH chunk", resp, StatusCode::ACCEPTED).await?;
        location = client::location("PATCH chunk", &parts)?;
        offset = end;
    }

    let put_start = Instant::now();
    let url = client::with_query(&reg.url(&location), "digest", &digest);
    let resp = reg.send(Method::PUT, &url, &[], client::empty()).await?;
    let parts = client::expect("PUT digest", resp, StatusCode::CREATED).await?;
    let total = start.elapsed();
    let put = put_start.elapsed();
    if let Some(got) = parts
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        if got != digest {
            return Err(LoadError::DigestMismatch {
                expected: digest,
                actual: got.to_string(),
            });
        }
    }
    Ok(Pushed { digest, total, put })
}
