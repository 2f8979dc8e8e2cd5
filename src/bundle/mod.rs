//! Air-gapped transfer with no HTTP in it: bundles (one OCI image layout in a tar, headed by a
//! contents manifest) written from a [`crate::storage::Store`], and bundles, OCI layouts,
//! oci-archives and docker-archives read into one. `cli::bundle` adds files, flags, progress
//! and the remote registry.
//!
//! Layout:
//! - `refs`, `names`: image references given to export, and where imported images go.
//! - `origin`: what an export reads from (a store here; a registry in `cli`).
//! - `select`: what references mean in an origin (index children, referrers), no bytes read.
//! - `contents`: the contents manifest `berth-bundle.json` and the have-list of `inventory`;
//!   `check`: a bundle against its contents manifest.
//! - `layout`: the OCI image layout's files and `index.json` annotations.
//! - `export`: streams a selection as a tar; `sign`: ed25519 over the contents manifest.
//! - `source`: an input's files one by one (tar, gzip, zstd, split parts, directory).
//! - `staging`: blobs streamed into upload sessions of a hidden repository.
//! - `docker`: schema 2 manifests built from a docker-archive's `manifest.json`.
//! - `import` (read once, stage), `plan` (what the input means) and `publish` (check
//!   everything, then make it visible).

pub mod check;
pub mod contents;
pub mod docker;
pub mod error;
pub mod export;
pub mod import;
pub mod inventory;
pub mod layout;
pub mod names;
pub mod origin;
pub mod plan;
pub mod publish;
pub mod refs;
pub mod select;
pub mod sign;
pub mod source;
pub mod staging;

pub use contents::{Contents, Inventory};
pub use error::BundleError;
pub use import::{import, ImportOptions, ImportReport};
pub use refs::RefSpec;
