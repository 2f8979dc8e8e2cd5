//! Progress of a collection on stderr: on a terminal a bar redrawn in place with `\r` (phase,
//! percent, amount, rate, time left), elsewhere a plain line per phase and every few seconds.
//! A bar crate would bring threads, templates and a dependency tree for what is one line of
//! text here.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::config::units::{format_bytes, format_duration};
use crate::maintenance::progress::{
    amount, counts_bytes, describe, percent, phase_name, ProgressLog,
};
use crate::storage::{GcPhase, GcProgress};

/// How often the bar is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Columns kept for the numbers after the bar (`100%  1023.9 MiB/1023.9 MiB  999.9 MiB/s
/// ETA 59m59s` is 52).
const TAIL_ROOM: usize = 52;
/// How often a plain progress line is written at most.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(Bar),
    Lines(ProgressLog),
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bar(Bar::new(terminal_width().unwrap_or(80)))
        } else {
            Progress::Lines(ProgressLog::new(LINE_EVERY))
        }
    }

    pub fn update(&mut self, p: GcProgress) {
        match self {
            Progress::Bar(bar) => bar.update(p, Instant::now()),
            Progress::Lines(log) => {
                if log.due(p, Instant::now()) {
                    eprintln!("gc: {}", describe(p));
                }
            }
        }
    }

    /// Ends the bar's line, so what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish(Instant::now());
        }
    }
}

/// The in-place bar.
pub struct Bar {
    width: usize,
    phase: Option<(GcPhase, Instant)>,
    last: Option<GcProgress>,
    drawn: Option<Instant>,
    /// Whether `last` arrived after the last draw.
    dirty: bool,
}

impl Bar {
    pub fn new(width: usize) -> Bar {
        Bar {
            width,
            phase: None,
            last: None,
            drawn: None,
            dirty: false,
        }
    }

    fn update(&mut self, p: GcProgress, now: Instant) {
        match self.phase {
            Some((phase, _)) if phase == p.phase => {}
            _ => {
                // A new phase: leave the last line of the previous one on screen.
                self.finish(now);
                self.phase = Some((p.phase, now));
            }
        }
        self.last = Some(p);
        self.dirty = true;
        let due = self
            .drawn
            .is_none_or(|t| now.duration_since(t) >= REDRAW_EVERY);
        if due || p.done >= p.total {
            self.draw(now);
        }
    }

    fn finish(&mut self, now: Instant) {
        if self.last.is_some() {
            if self.dirty {
                self.draw(now);
            }
            eprintln!();
        }
        self.last = None;
        self.drawn = None;
    }

    fn draw(&mut self, now: Instant) {
        let (Some(p), Some((_, start))) = (self.last, self.phase) else {
            return;
        };
        let line = render(p, now.duration_since(start), self.width);
        let mut err = std::io::stderr().lock();
        // Carriage return, the line, then clear what a longer previous line left.
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.drawn = Some(now);
        self.dirty = false;
    }
}

/// One bar line, at most `width` columns:
/// `compact [#####-----]  45%  1.2 GiB/2.7 GiB  98.0 MiB/s  ETA 15s`.
pub fn render(p: GcProgress, elapsed: Duration, width: usize) -> String {
    let pct = percent(p);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        p.done as f64 / secs
    } else {
        0.0
    };
    let speed = if counts_bytes(p.phase) {
        format!("{}/s", format_bytes(rate as u64))
    } else {
        format!("{}/s", rate as u64)
    };
    let remaining = p.total.saturating_sub(p.done);
    let eta = if remaining == 0 {
        format!("took {}", format_duration(elapsed))
    } else if rate > 0.0 {
        format!(
            "ETA {}",
            format_duration(Duration::from_secs_f64(remaining as f64 / rate))
        )
    } else {
        "ETA --".to_owned()
    };
    let head = format!("{:<7}", phase_name(p.phase));
    let tail = format!(" {pct:>3}%  {}  {speed}  {eta}", amount(p));
    // The bar keeps one width while the numbers after it grow and shrink: what is left
    // after room for the longest usual numbers, between 10 and 40 columns.
    let inner = width.saturating_sub(head.len() + 3 + TAIL_ROOM).min(40);
    let line = if inner < 10 {
        format!("{head}{tail}")
    } else {
        let filled = (inner as u64 * pct / 100) as usize;
        format!(
            "{head} [{}{}]{tail}",
            "#".repeat(filled),
            "-".repeat(inner - filled)
        )
    };
    // Never wrap: a wrapped line cannot be redrawn with `\r`.
    line.chars().take(width.saturating_sub(1)).collect()
}

/// Columns of the terminal on stderr.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, on a descriptor we
    // only read.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_lines() {
        let p = GcProgress {
            phase: GcPhase::Mark,
            done: 500,
            total: 2000,
        };
        let line = render(p, Duration::from_secs(5), 100);
        assert!(line.starts_with("mark    [#########-"), "{line}");
        assert!(
            line.contains(" 25%  500/2000 manifests  100/s  ETA 15.0s"),
            "{line}"
        );
        assert!(line.chars().count() < 100, "{line}");

        let p = GcProgress {
            phase: GcPhase::Compact,
            done: 3 << 30,
            total: 3 << 30,
        };
        let line = render(p, Duration::from_secs(30), 100);
        assert!(
            line.contains("100%  3.0 GiB/3.0 GiB  102.4 MiB/s  took 30.0s"),
            "{line}"
        );
        // 100 columns: 7 for the phase, 3 around the bar, 52 for the numbers.
        assert!(line.contains(&format!("[{}]", "#".repeat(38))), "{line}");
        // The bar does not change width with the numbers.
        let bar = |l: &str| l.find(']').unwrap();
        let early = GcProgress { done: 1, ..p };
        assert_eq!(bar(&render(early, Duration::ZERO, 100)), bar(&line));
    }

    #[test]
    fn narrow_terminals_drop_the_bar_and_nothing_wraps() {
        let p = GcProgress {
            phase: GcPhase::Sweep,
            done: 0,
            total: 10,
        };
        let line = render(p, Duration::ZERO, 40);
        assert!(!line.contains('['), "{line}");
        assert!(line.chars().count() < 40, "{line}");
        assert!(render(p, Duration::ZERO, 200).contains("ETA --"));
    }
}
