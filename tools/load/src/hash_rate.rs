//! `hash-rate`: how fast one core computes sha256 (the same `sha2` code berth uses) over data
//! that is not in the CPU's caches — the ceiling of any digest-verifying import or push.

use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::data::Stream;
use crate::report::Line;

/// A buffer larger than any L2/L3 cache of these machines, hashed round and round.
const BUFFER_BYTES: usize = 64 << 20;

pub fn run(size: u64) {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    Stream::fresh().fill(0, &mut buffer);
    let mut hasher = Sha256::new();
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(BUFFER_BYTES as u64) as usize;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    let digest = hasher.finalize();
    let elapsed = start.elapsed();
    Line::new("hash-rate")
        .field("algorithm", "sha256")
        .field("size", size)
        .seconds("seconds", elapsed)
        .mbps(size, elapsed)
        .field("digest", hex::encode(digest))
        .print();
}
