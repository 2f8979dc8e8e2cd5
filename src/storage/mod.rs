//! The storage engine: append-only segment files with self-describing records, a redb index,
//! upload sessions, group commit and crash recovery. Knows nothing of HTTP.
//!
//! Layout: `io` (segment I/O seam) → `record` (framing) → `log` (active segment) →
//! `group` + `ops` (logged index changes, group commit) → `store`/`blobs`/`uploads`/`manifests`
//! (public API), `chunking` turning session appends (held in a `tail`) into records written by
//! `writers`; `read` + `verified` check chunks as blobs are streamed out; `recovery` and
//! `verify` read the segments back. The on-disk format is in storage-format.md.

mod base;
mod blobs;
mod chunking;
mod direct;
mod error;
pub mod gc;
mod group;
mod index;
pub mod io;
mod log;
mod manifests;
pub mod memdisk;
mod ops;
mod read;
pub mod record;
mod recovery;
mod schema;
mod store;
mod tail;
mod types;
mod uploads;
mod verified;
mod verify;
mod writers;

pub use error::StorageError;
pub use gc::{GcOptions, GcPhase, GcProgress, GcReport, GcStats, RetentionRule};
pub use read::{BlobData, BlobReader};
pub use recovery::KEPT_TAIL_FILES;
pub use store::Store;
pub use types::*;
