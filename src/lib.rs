//! berth: an embedded OCI registry engine.
//!
//! # Layout
//! - [`oci`]: OCI vocabulary with no I/O (digests, names and tags, manifest facts).
//! - [`storage`]: the blob and metadata store (segments + redb index); no HTTP.
//! - [`auth`]: access control with no HTTP in it: Harbor's model (users, projects, members,
//!   robots, immutable tags, quotas, audit) in `auth.redb`, logins, tokens (JWT keys, checks,
//!   scopes, the verified-token cache) and the verdicts the API enforces.
//! - [`bundle`]: air-gapped transfer: bundles (OCI layouts in a tar) written from the store,
//!   and bundles, OCI layouts and docker-archives read into it; no HTTP.
//! - [`api`]: the distribution API over the store: routes, handlers, the OCI error mapping.
//! - [`mirror`]: the containerd mirror endpoint (`?ns=`) and pull-through cache of upstreams.
//! - [`server`]: the connection loop (plain HTTP or TLS), timeouts, graceful shutdown.
//! - [`cli`]: the one-off commands `berth gc`, `berth verify`, the access model's commands and
//!   `berth hosts-toml`.
//! - [`config`]: command line, environment and TOML settings.
//! - [`maintenance`]: garbage collection and scrubs of a serving registry, one at a time.
//! - [`metrics`]: Prometheus counters for `/metrics`.
//! - [`log_writer`]: log lines written to stdout by a thread of their own, batched, bounded.
//! - [`tlsgen`]: berth's own CA and server certificates (`berth cert`), expiry facts; no HTTP.

// Library code returns errors instead of panicking on short input; tests may unwrap and index.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod api;
pub mod auth;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod log_writer;
pub mod maintenance;
pub mod metrics;
pub mod mirror;
pub mod oci;
pub mod owner_only;
pub mod server;
pub mod storage;
pub mod tlsgen;
