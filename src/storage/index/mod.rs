//! The redb index: its tables and their encodings, the logged ops that change it (applied by a
//! group commit and replayed by recovery alike), base images of it, and the database handle.

pub(crate) mod base;
pub(crate) mod db;
pub(crate) mod ops;
pub(crate) mod schema;
