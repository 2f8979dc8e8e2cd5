//! Units in and out: byte sizes on the command line (`16MiB`), and the one-line, `key=value`
//! results that scripts parse.

use std::fmt::Write as _;
use std::time::Duration;

/// Parses `4096`, `4KiB`, `16MiB`, `1GiB`, `1G` (binary multiples), `10MB`/`10kB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("bad size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// One result line: the subcommand name followed by `key=value` fields, in order.
pub struct Line {
    text: String,
}

impl Line {
    pub fn new(name: &str) -> Line {
        Line {
            text: name.to_string(),
        }
    }

    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Line {
        let _ = write!(self.text, " {key}={value}");
        self
    }

    pub fn seconds(self, key: &str, d: Duration) -> Line {
        self.field(key, format!("{:.3}", d.as_secs_f64()))
    }

    /// Throughput in MB/s with MB = 10^6 bytes, the unit dd and curl print.
    pub fn mbps(self, bytes: u64, d: Duration) -> Line {
        self.field(
            "MB/s",
            format!("{:.1}", bytes as f64 / d.as_secs_f64() / 1e6),
        )
    }

    pub fn print(self) {
        println!("{}", self.text);
    }
}

/// Latency summary of many operations, in milliseconds.
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort_unstable();
        Latencies { sorted: all }
    }

    /// The nearest-rank percentile; zero when nothing was measured.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn add_to(&self, mut line: Line) -> Line {
        for (key, p) in [
            ("p50_ms", 50.0),
            ("p90_ms", 90.0),
            ("p99_ms", 99.0),
            ("max_ms", 100.0),
        ] {
            line = line.field(
                key,
                format!("{:.3}", self.percentile(p).as_secs_f64() * 1e3),
            );
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Latencies::new(vec![]).percentile(50.0), Duration::ZERO);
    }

    #[test]
    fn lines_are_key_value() {
        let l = Line::new("x")
            .field("a", 1)
            .mbps(2_000_000, Duration::from_secs(1));
        assert_eq!(l.text, "x a=1 MB/s=2.0");
    }
}
