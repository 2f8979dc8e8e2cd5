//! Harness shared by the end-to-end scenarios: the registry under test, the real clients, test
//! images, certificates and the helper daemons (nginx, containerd) each scenario starts privately.
// Each scenario file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod auth;
pub mod cmd;
pub mod containerd;
pub mod engine;
pub mod flows;
pub mod image;
pub mod nginx;
pub mod python;
pub mod registry;
pub mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};

/// A private scratch directory with an all-lowercase name: podman derives image names from
/// `oci:` layout paths, and image names must be lowercase.
pub fn workdir() -> tempfile::TempDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Short on purpose: podman refuses a runroot path longer than 50 characters.
    let name = format!(
        "be-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    );
    tempfile::Builder::new()
        .prefix(&name)
        .rand_bytes(0)
        .tempdir()
        .unwrap()
}
