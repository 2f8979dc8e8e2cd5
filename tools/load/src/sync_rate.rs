//! The disk's single-threaded durable append rate: append `size` bytes to a file, `fdatasync`,
//! repeat. It is the syscall pattern of a registry that makes each small push durable on its
//! own (berth's log grows by `pwritev` at its end and is synced with `fdatasync`), so a
//! registry's small-push rate over this one says how much its commits share syncs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::LoadError;
use crate::data::Stream;
use crate::report::{Latencies, Line};

pub struct Options {
    /// A directory on the file system to measure; the file is removed afterwards.
    pub dir: PathBuf,
    pub size: u64,
    pub seconds: f64,
}

pub fn run(opts: &Options) -> Result<(), LoadError> {
    if opts.size == 0 || opts.seconds <= 0.0 {
        return Err(LoadError::BadArgument(
            "size and seconds must be positive".into(),
        ));
    }
    let path = opts
        .dir
        .join(format!("berth-load-sync-rate.{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let measured = measure(&file, opts);
    drop(file);
    std::fs::remove_file(&path)?;
    let (syncs, wall, lat) = measured?;
    let line = Line::new("sync-rate")
        .field("dir", opts.dir.display())
        .field("size", opts.size)
        .field("syncs", syncs)
        .seconds("seconds", wall)
        .field(
            "syncs/s",
            format!("{:.1}", syncs as f64 / wall.as_secs_f64()),
        );
    Latencies::new(lat).add_to(line).print();
    Ok(())
}

/// Appends and syncs until the time is up; the number of syncs, the wall time, each sync's
/// latency (the append's included).
fn measure(file: &File, opts: &Options) -> Result<(u64, Duration, Vec<Duration>), LoadError> {
    let data = Stream::fresh().bytes(0, opts.size);
    let limit = Duration::from_secs_f64(opts.seconds);
    let mut lat = Vec::new();
    let mut at = 0u64;
    let start = Instant::now();
    while start.elapsed() < limit {
        let t = Instant::now();
        file.write_all_at(&data, at)?;
        file.sync_data()?;
        lat.push(t.elapsed());
        at += opts.size;
    }
    Ok((lat.len() as u64, start.elapsed(), lat))
}
