//! OCI vocabulary with no I/O: digests, names and manifest facts.

pub mod digest;
pub mod manifest;
pub mod name;
