//! The containerd mirror endpoint and pull-through cache: content of upstream registries
//! served under local repositories named `<ns>/<repository>`.
//!
//! `config` (one `[[mirror]]` table), `names` (`?ns=` and Docker Hub names → local names).

pub mod config;
pub mod names;
