//! Blob pull: GET a blob, count (and by default hash) every byte as it arrives, and print the
//! transfer rate.

use std::time::Instant;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};

use crate::client::{self, LoadError, Registry};
use crate::report::Line;

pub struct Options {
    pub repo: String,
    pub digest: String,
    /// Hashing costs about as much CPU as the transfer on these machines; turn it off to
    /// measure the registry rather than the client.
    pub verify: bool,
    pub repeat: usize,
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    if !opts.digest.starts_with("sha256:") {
        return Err(LoadError::BadArgument(format!(
            "only sha256 digests can be pulled and verified: {}",
            opts.digest
        )));
    }
    for _ in 0..opts.repeat {
        pull_once(reg, opts).await?;
    }
    Ok(())
}

async fn pull_once(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    let url = reg.url(&format!("/v2/{}/blobs/{}", opts.repo, opts.digest));
    let start = Instant::now();
    let resp = reg.send(Method::GET, &url, &[], client::empty()).await?;
    if resp.status() != StatusCode::OK {
        // Reuse the error path that reads the body for the message.
        client::expect("GET blob", resp, StatusCode::OK).await?;
        return Ok(());
    }
    let first_byte = start.elapsed();
    let declared = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = resp.into_body();
    let mut hasher = opts.verify.then(Sha256::new);
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(expected) = declared {
        if expected != received {
            return Err(LoadError::SizeMismatch {
                expected,
                actual: received,
            });
        }
    }
    if let Some(h) = hasher {
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != opts.digest {
            return Err(LoadError::DigestMismatch {
                expected: opts.digest.clone(),
                actual,
            });
        }
    }
    Line::new("pull")
        .field("registry", reg.base())
        .field("repo", &opts.repo)
        .field("size", received)
        .field("verified", opts.verify)
        .seconds("first_byte_seconds", first_byte)
        .seconds("seconds", elapsed)
        .mbps(received, elapsed)
        .field("digest", &opts.digest)
        .print();
    Ok(())
}
