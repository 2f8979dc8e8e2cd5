//! The containerd mirror endpoint and pull-through cache: content of upstream registries
//! served under local repositories named `<ns>/<repository>`.
//!
//! `config` (one `[[mirror]]` table), `names` (`?ns=` and Docker Hub names → local names).
//! `upstream` (the HTTP client toward an upstream, with `challenge`, `tokens` and `tls`).

pub mod config;
pub mod names;
pub mod upstream;

mod challenge;
mod tls;
mod tokens;
