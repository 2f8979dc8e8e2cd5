//! The storage engine: append-only segment files with self-describing records, a redb index,
//! upload sessions, group commit and crash recovery. Knows nothing of HTTP.
//!
//! Layout, from the ground up (no module imports one above it):
//! - `segment/`: bytes on disk. The I/O seam (`io`, with the file backend and the in-memory,
//!   fault-injecting `memdisk`), the record codec (`record`), the log that appends to the active
//!   segment (`log`), and the writer threads and direct writes for session chunks.
//! - `index/`: the redb tables (`schema`), the logged ops that change them (`ops`, applied by
//!   group commit and replayed by recovery alike), base images of the index (`base`), `db`.
//! - `group` (group commit), `gate` and `floor` (what clients and writers tell a collection),
//!   `tail` and `session` (an upload session's state), `budget` (the memory all tails share),
//!   `verified` (chunks already checked).
//! - `recovery` (opening after a crash) and `store` (the `Store` handle and its batches).
//! - The operations users see, each an `impl Store` block: `uploads` + `chunking`, `blobs`,
//!   `manifests`, `read`, `verify`, `usage` (bytes per group of repositories, for quotas), and
//!   `gc/` (mark, sweep, compaction, retention).
//!
//! The on-disk format is in storage-format.md.

// Every integer on disk is little-endian (storage-format.md); a host-endian conversion is a bug.
#![deny(clippy::host_endian_bytes)]

mod blobs;
mod budget;
mod chunking;
#[cfg(test)]
mod commit_tests;
mod error;
mod floor;
mod gate;
pub mod gc;
mod group;
mod index;
mod manifests;
mod read;
mod recovery;
mod segment;
mod session;
mod store;
mod tail;
mod throttle;
mod types;
mod uploads;
mod usage;
mod verified;
mod verify;

pub use error::StorageError;
pub use manifests::ManifestRow;
pub use read::{BlobData, BlobReader};
pub use recovery::KEPT_TAIL_FILES;
pub use segment::{io, memdisk, record};
pub use store::Store;
pub use types::*;
pub use usage::RepoGroup;
