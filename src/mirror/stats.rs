//! Counters of each mirror, rendered for `/metrics` (label `ns`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Reads answered from the store without asking the upstream.
    pub hits: AtomicU64,
    /// Requests sent to the upstream (manifest GETs and HEADs, blob GETs).
    pub upstream_requests: AtomicU64,
    /// Blob bytes fetched from the upstream and stored.
    pub fetched_bytes: AtomicU64,
    /// Clients fed by a blob fetch another client started.
    pub joined_fetches: AtomicU64,
    /// Upstream requests that failed (unreachable, 5xx, timeout, bad bytes).
    pub upstream_failures: AtomicU64,
    /// Cached tags served because the upstream could not be asked.
    pub stale_served: AtomicU64,
}

impl MirrorStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Metric name, help text, and the counter of a mirror it reports.
type Series = (&'static str, &'static str, fn(&MirrorStats) -> &AtomicU64);

pub fn render<'a>(
    mirrors: impl Iterator<Item = (&'a str, &'a MirrorStats)> + Clone,
    fetches_in_progress: usize,
) -> String {
    let mut out = String::new();
    let series: [Series; 6] = [
        (
            "berth_mirror_hits_total",
            "Mirror reads answered from the store without asking the upstream.",
            |s| &s.hits,
        ),
        (
            "berth_mirror_upstream_requests_total",
            "Requests sent to an upstream registry.",
            |s| &s.upstream_requests,
        ),
        (
            "berth_mirror_fetched_bytes_total",
            "Blob bytes fetched from an upstream and stored.",
            |s| &s.fetched_bytes,
        ),
        (
            "berth_mirror_joined_fetches_total",
            "Blob reads served by a fetch another read had started.",
            |s| &s.joined_fetches,
        ),
        (
            "berth_mirror_upstream_failures_total",
            "Upstream requests that failed (unreachable, 5xx, timeout, bad bytes).",
            |s| &s.upstream_failures,
        ),
        (
            "berth_mirror_stale_served_total",
            "Cached tags served without the upstream's confirmation because it could not be asked.",
            |s| &s.stale_served,
        ),
    ];
    for (name, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (ns, stats) in mirrors.clone() {
            let _ = writeln!(
                out,
                "{name}{{ns=\"{ns}\"}} {}",
                get(stats).load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP berth_mirror_fetches_in_progress Blob fetches from upstreams in progress.\n\
         # TYPE berth_mirror_fetches_in_progress gauge\n\
         berth_mirror_fetches_in_progress {fetches_in_progress}"
    );
    out
}
