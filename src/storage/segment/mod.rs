//! Bytes on disk: the segment I/O seam and its backends, the record codec, and the log that
//! appends records to the active segment (with the writer threads that write session chunks).
//! Knows nothing of the index.

pub(crate) mod direct;
pub mod io;
pub(crate) mod log;
pub mod memdisk;
pub mod record;
pub(crate) mod writers;
