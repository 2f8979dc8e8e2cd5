//! berth: an embedded OCI registry engine.
//!
//! # Layout
//! - [`oci`]: OCI vocabulary with no I/O (digests, names, manifests).
//! - [`storage`]: the blob and metadata store (segments + redb index); no HTTP.

pub mod oci;
pub mod storage;
