//! Many small monolithic pushes from concurrent clients: ops/s and latency percentiles.
//!
//! The OCI single-request push (`POST ?digest=` with the body) is optional in the spec; a
//! registry that answers it with 202 (CNCF distribution does) gets the two-request monolithic
//! push clients fall back to (`POST`, then `PUT ?digest=` with the body).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use http::{header, Method, StatusCode};

use crate::client::{self, LoadError, Registry};
use crate::data::{sha256_of, Stream};
use crate::report::{Latencies, Line};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Probe once: single POST if the registry completes it, else POST + PUT.
    Auto,
    /// One request: `POST /blobs/uploads/?digest=` with the body.
    Post,
    /// Two requests: empty `POST`, then `PUT ?digest=` with the body.
    PostPut,
}

pub struct Options {
    pub repo: String,
    pub count: u64,
    pub size: u64,
    pub concurrency: usize,
    pub mode: Mode,
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    if opts.count == 0 || opts.concurrency == 0 {
        return Err(LoadError::BadArgument(
            "count and concurrency must be positive".into(),
        ));
    }
    let base = Stream::fresh();
    let mode = match opts.mode {
        Mode::Auto => probe(reg, &opts.repo, base.derive(u64::MAX).bytes(0, opts.size)).await?,
        m => m,
    };

    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let (reg, next, repo) = (reg.clone(), next.clone(), opts.repo.clone());
        let (count, size) = (opts.count, opts.size);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, LoadError>(lat);
                }
                let data = base.derive(i).bytes(0, size);
                let t = Instant::now();
                push(&reg, &repo, mode, data).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => all.extend(r?),
            Err(e) => return Err(LoadError::BadArgument(format!("push task failed: {e}"))),
        }
    }
    let wall = start.elapsed();
    let line = Line::new("push-small")
        .field("registry", reg.base())
        .field("repo", &opts.repo)
        .field("count", all.len())
        .field("size", opts.size)
        .field("concurrency", opts.concurrency)
        .field(
            "mode",
            if mode == Mode::Post {
                "post"
            } else {
                "post+put"
            },
        )
        .seconds("seconds", wall)
        .field(
            "ops/s",
            format!("{:.1}", all.len() as f64 / wall.as_secs_f64()),
        );
    Latencies::new(all).add_to(line).print();
    Ok(())
}

/// Pushes one blob with a single POST; if the registry opens a session instead, finishes that
/// session with a PUT and tells the caller to use two requests from now on.
async fn probe(reg: &Registry, repo: &str, data: Bytes) -> Result<Mode, LoadError> {
    let digest = sha256_of(&data);
    let url = client::with_query(
        &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
        "digest",
        &digest,
    );
    let resp = reg
        .send(
            Method::POST,
            &url,
            &octet_stream(),
            client::full(data.clone()),
        )
        .await?;
    if resp.status() == StatusCode::CREATED {
        client::expect("POST digest", resp, StatusCode::CREATED).await?;
        return Ok(Mode::Post);
    }
    let parts = client::expect("POST digest", resp, StatusCode::ACCEPTED).await?;
    let location = client::location("POST digest", &parts)?;
    put_body(reg, &location, &digest, data).await?;
    Ok(Mode::PostPut)
}

/// Pushes one blob in the given mode (never `Auto`: that is resolved by the probe).
pub async fn push(reg: &Registry, repo: &str, mode: Mode, data: Bytes) -> Result<(), LoadError> {
    let digest = sha256_of(&data);
    let uploads = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    if mode == Mode::Post {
        let url = client::with_query(&uploads, "digest", &digest);
        let resp = reg
            .send(Method::POST, &url, &octet_stream(), client::full(data))
            .await?;
        client::expect("POST digest", resp, StatusCode::CREATED).await?;
        return Ok(());
    }
    let resp = reg
        .send(Method::POST, &uploads, &[], client::empty())
        .await?;
    let parts = client::expect("POST upload", resp, StatusCode::ACCEPTED).await?;
    let location = client::location("POST upload", &parts)?;
    put_body(reg, &location, &digest, data).await
}

async fn put_body(
    reg: &Registry,
    location: &str,
    digest: &str,
    data: Bytes,
) -> Result<(), LoadError> {
    let url = client::with_query(&reg.url(location), "digest", digest);
    let resp = reg
        .send(Method::PUT, &url, &octet_stream(), client::full(data))
        .await?;
    client::expect("PUT digest", resp, StatusCode::CREATED).await?;
    Ok(())
}

fn octet_stream() -> [(header::HeaderName, String); 1] {
    [(header::CONTENT_TYPE, "application/octet-stream".to_string())]
}
