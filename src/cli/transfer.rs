//! Progress of a transfer on stderr: on a terminal one line redrawn in place (bytes, percent,
//! rate, time left), elsewhere a plain log line every few seconds and one at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::config::units::{format_bytes, format_duration};

const REDRAW_EVERY: Duration = Duration::from_millis(200);
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Transfer {
    what: String,
    total: u64,
    done: u64,
    start: Instant,
    shown: Option<Instant>,
    terminal: bool,
}

impl Transfer {
    pub fn for_stderr(what: impl Into<String>, total: u64) -> Transfer {
        Transfer {
            what: what.into(),
            total,
            done: 0,
            start: Instant::now(),
            shown: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Sets the total once it is known (an input's size is, before its first entry).
    pub fn total_is(&mut self, total: u64) {
        self.total = total;
    }

    pub fn update(&mut self, done: u64) {
        self.done = done;
        let now = Instant::now();
        let every = if self.terminal {
            REDRAW_EVERY
        } else {
            LINE_EVERY
        };
        if self.shown.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        self.shown = Some(now);
        self.show(now);
    }

    /// The last state, and a line break after the redrawn line.
    pub fn finish(&mut self) {
        self.show(Instant::now());
        if self.terminal {
            eprintln!();
        }
    }

    fn show(&self, now: Instant) {
        let line = render(
            &self.what,
            self.done,
            self.total,
            now.duration_since(self.start),
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// `export  45%  1.2 GiB/2.7 GiB  98.0 MiB/s  ETA 15.0s`.
pub fn render(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    let left = total.saturating_sub(done);
    let eta = if left == 0 {
        format!("took {}", format_duration(elapsed))
    } else if rate > 0.0 {
        let t = Duration::from_secs_f64(left as f64 / rate);
        format!("ETA {}", format_duration(t))
    } else {
        "ETA --".to_owned()
    };
    format!(
        "{what} {pct:>3}%  {}/{}  {}/s  {eta}",
        format_bytes(done),
        format_bytes(total),
        format_bytes(rate as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let l = render("export", 1 << 30, 4 << 30, Duration::from_secs(10));
        assert!(l.starts_with("export  25%  1.0 GiB/4.0 GiB"), "{l}");
        assert!(l.ends_with("ETA 30.0s"), "{l}");
        let l = render("import", 5, 5, Duration::from_secs(1));
        assert!(l.contains("100%") && l.contains("took"), "{l}");
        assert!(render("x", 0, 0, Duration::ZERO).contains("100%"));
    }
}
