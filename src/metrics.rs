//! Counters behind `/metrics`, rendered in the Prometheus text format. Request counters are
//! updated once per request, with atomics only (every request pays for them); store gauges and the garbage collection and scrub totals
//! (`Store::gc_stats`) are read at scrape time. Timestamps of things that never happened
//! are 0.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::storage::Store;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// Slots of the request counters: route kinds times the statuses each answers with are far
/// fewer.
const REQUEST_SLOTS: usize = 256;

/// One request counter, claimed by the first request of its route and status.
#[derive(Default)]
struct RequestSlot {
    key: OnceLock<(&'static str, u16)>,
    count: AtomicU64,
}

/// Request counts by route and status, counted with atomics only once a pair has its slot
/// (an open-addressing table that is never cleared); pairs beyond the table, which no
/// registry of today's routes reaches, are counted under a lock.
struct RequestCounts {
    slots: Box<[RequestSlot]>,
    overflow: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Default for RequestCounts {
    fn default() -> RequestCounts {
        RequestCounts {
            slots: (0..REQUEST_SLOTS).map(|_| RequestSlot::default()).collect(),
            overflow: Mutex::default(),
        }
    }
}

impl RequestCounts {
    fn add(&self, route: &'static str, status: u16) {
        let key = (route, status);
        let start = route.bytes().fold(usize::from(status), |h, b| {
            h.wrapping_mul(31) ^ usize::from(b)
        });
        let probes = self.slots.iter().cycle().skip(start % REQUEST_SLOTS);
        for slot in probes.take(REQUEST_SLOTS) {
            if *slot.key.get_or_init(|| key) == key {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if let Ok(mut map) = self.overflow.lock() {
            *map.entry(key).or_default() += 1;
        }
    }

    /// Every pair counted so far, in order.
    fn snapshot(&self) -> BTreeMap<(&'static str, u16), u64> {
        let mut all = self.overflow.lock().map(|m| m.clone()).unwrap_or_default();
        for slot in self.slots.iter() {
            if let Some(key) = slot.key.get() {
                *all.entry(*key).or_default() += slot.count.load(Ordering::Relaxed);
            }
        }
        all
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: RequestCounts,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Cumulative bucket counts are derived at render time; each slot counts its own bucket.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_micros: AtomicU64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Request body bytes, counted as they are read (chunked bodies have no length up front).
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record(&self, route: &'static str, status: u16, bytes_out: u64, took: Duration) {
        self.requests.add(route, status);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        if let Some(count) = self.latency.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests counted so far for one route and status (for tests and health checks).
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        self.requests
            .snapshot()
            .iter()
            .filter(|((r, s), _)| *r == route && *s == status)
            .map(|(_, c)| *c)
            .sum()
    }

    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let _ = self.render_into(&mut out, store);
        out
    }

    fn render_into(&self, out: &mut String, store: &Store) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP berth_http_requests_total HTTP requests by route and status."
        )?;
        writeln!(out, "# TYPE berth_http_requests_total counter")?;
        for ((route, status), count) in self.requests.snapshot() {
            writeln!(
                out,
                "berth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            )?;
        }
        counter(
            out,
            "berth_http_request_bytes_total",
            "Request body bytes received.",
            self.bytes_in.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "berth_http_response_bytes_total",
            "Response body bytes sent.",
            self.bytes_out.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "berth_log_lines_dropped_total",
            "Log lines (request lines among them) dropped because the log writer was behind.",
            crate::log_writer::dropped_lines(),
        )?;

        writeln!(
            out,
            "# HELP berth_http_request_duration_seconds Time to answer a request (headers)."
        )?;
        writeln!(out, "# TYPE berth_http_request_duration_seconds histogram")?;
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.latency) {
            cumulative += count.load(Ordering::Relaxed);
            writeln!(
                out,
                "berth_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            )?;
        }
        cumulative += self.latency.last().map_or(0, |c| c.load(Ordering::Relaxed));
        writeln!(
            out,
            "berth_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        )?;
        let sum = self.latency_micros.load(Ordering::Relaxed) as f64 / 1e6;
        writeln!(out, "berth_http_request_duration_seconds_sum {sum}")?;
        writeln!(
            out,
            "berth_http_request_duration_seconds_count {cumulative}"
        )?;

        let space = store.space();
        gauge(
            out,
            "berth_upload_sessions_open",
            "Upload sessions in progress.",
            store.open_uploads() as u64,
        )?;
        gauge(
            out,
            "berth_upload_tail_bytes",
            "Bytes upload sessions hold in memory, not yet written as chunk records.",
            store.upload_tail_bytes() as u64,
        )?;
        gauge(
            out,
            "berth_store_live_bytes",
            "Bytes of segment data still referenced.",
            space.live_bytes,
        )?;
        gauge(
            out,
            "berth_store_dead_bytes",
            "Bytes of segment data awaiting reclamation.",
            space.dead_bytes,
        )?;
        counter(
            out,
            "berth_store_corrupt_reads_total",
            "Chunks that failed their checksum while being served (the response was cut short).",
            store.corrupt_reads(),
        )?;
        render_gc(out, store)
    }
}

fn render_gc(out: &mut String, store: &Store) -> std::fmt::Result {
    let stats = store.gc_stats();
    counter(
        out,
        "berth_gc_runs_total",
        "Garbage collections completed (dry runs excluded) since the store was opened.",
        stats.runs,
    )?;
    gauge_f64(
        out,
        "berth_gc_last_run_timestamp_seconds",
        "When the last garbage collection (not a dry run) ended, Unix time.",
        unix_seconds(stats.last_run_unix_ms),
    )?;
    counter(
        out,
        "berth_gc_bytes_reclaimed_total",
        "Segment file bytes deleted by garbage collection.",
        stats.total_bytes_reclaimed,
    )?;
    counter(
        out,
        "berth_gc_blobs_removed_total",
        "Blobs garbage collection dropped from the index.",
        stats.total_blobs_removed,
    )?;
    counter(
        out,
        "berth_gc_manifests_deleted_total",
        "Manifests garbage collection deleted (retention rules, lost subjects).",
        stats.total_manifests_deleted,
    )?;
    counter(
        out,
        "berth_gc_segments_compacted_total",
        "Sealed segments garbage collection rewrote and deleted.",
        stats.total_segments_compacted,
    )?;
    writeln!(
        out,
        "# HELP berth_gc_last_duration_seconds Time each phase of the last garbage collection took."
    )?;
    writeln!(out, "# TYPE berth_gc_last_duration_seconds gauge")?;
    let last = stats.last.unwrap_or_default();
    for (phase, took) in [
        ("mark", last.mark_time),
        ("sweep", last.sweep_time),
        ("compact", last.compact_time),
    ] {
        writeln!(
            out,
            "berth_gc_last_duration_seconds{{phase=\"{phase}\"}} {}",
            took.as_secs_f64()
        )?;
    }
    gauge_f64(
        out,
        "berth_scrub_last_timestamp_seconds",
        "When the last full scrub ended, Unix time.",
        unix_seconds(stats.last_scrub_unix_ms),
    )?;
    counter(
        out,
        "berth_scrub_corrupt_records_total",
        "Damaged records found by scrubs since the store was opened.",
        stats.corrupt_records_found,
    )?;
    counter(
        out,
        "berth_blobs_quarantined_total",
        "Blobs taken out of service because a scrub found them damaged.",
        stats.blobs_quarantined,
    )
}

fn unix_seconds(ms: Option<u64>) -> f64 {
    ms.map_or(0.0, |ms| ms as f64 / 1000.0)
}

pub(crate) fn counter(out: &mut String, name: &str, help: &str, value: u64) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} counter")?;
    writeln!(out, "{name} {value}")
}

pub(crate) fn gauge(out: &mut String, name: &str, help: &str, value: u64) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} gauge")?;
    writeln!(out, "{name} {value}")
}

fn gauge_f64(out: &mut String, name: &str, help: &str, value: f64) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} gauge")?;
    writeln!(out, "{name} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [&str; 4] = ["manifest", "blob", "upload", "tags"];

    #[test]
    fn request_counts_from_many_threads_add_up_per_route_and_status() {
        let m = Metrics::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000u16 {
                        let route = ROUTES[usize::from(i) % ROUTES.len()];
                        m.record(route, 200 + i % 3, 0, Duration::ZERO);
                    }
                });
            }
        });
        let all = m.requests.snapshot();
        assert_eq!(all.len(), 12);
        assert_eq!(all.values().sum::<u64>(), 4000);
        // i ≡ 0 (mod 4) and i ≡ 0 (mod 3): 84 of 0..1000, per thread.
        assert_eq!(m.requests("manifest", 200), 4 * 84);
    }

    #[test]
    fn pairs_beyond_the_table_are_still_counted() {
        let m = Metrics::new();
        let routes: Vec<&'static str> = (0..40)
            .map(|i| &*Box::leak(format!("r{i}").into_boxed_str()))
            .collect();
        for route in &routes {
            for status in 100..110 {
                m.record(route, status, 0, Duration::ZERO);
                m.record(route, status, 0, Duration::ZERO);
            }
        }
        let all = m.requests.snapshot();
        assert_eq!(all.len(), 400);
        assert!(all.values().all(|&c| c == 2));
        assert!(!m.requests.overflow.lock().unwrap().is_empty());
    }
}
