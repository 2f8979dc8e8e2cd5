//! The output file of `berth export`: one file written under a temporary name and renamed
//! when complete (an interrupted export leaves no bundle that looks whole), or parts of at most
//! `--split-size` bytes, `FILE.000`, `FILE.001`, …, for media smaller than the bundle.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct Output {
    target: PathBuf,
    split: Option<u64>,
    /// The part (or temporary file) being written and the bytes in it.
    file: Option<(File, u64)>,
    written: Vec<PathBuf>,
}

impl Output {
    pub fn create(target: &Path, split: Option<u64>) -> Output {
        Output {
            target: target.to_owned(),
            split: split.filter(|&n| n > 0),
            file: None,
            written: Vec::new(),
        }
    }

    fn partial(&self) -> PathBuf {
        PathBuf::from(format!("{}.partial", self.target.display()))
    }

    fn open_next(&mut self) -> io::Result<()> {
        let path = match self.split {
            Some(_) => PathBuf::from(format!(
                "{}.{:03}",
                self.target.display(),
                self.written.len()
            )),
            None => self.partial(),
        };
        let f = File::create(&path)?;
        self.written.push(path);
        self.file = Some((f, 0));
        Ok(())
    }

    /// Syncs and names the result; returns the files written.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        if self.file.is_none() {
            self.open_next()?;
        }
        if let Some((f, _)) = self.file.take() {
            f.sync_all()?;
        }
        if self.split.is_none() {
            std::fs::rename(self.partial(), &self.target)?;
            self.written = vec![self.target.clone()];
        }
        Ok(std::mem::take(&mut self.written))
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let full = match (&self.file, self.split) {
            (None, _) => true,
            (Some((_, n)), Some(max)) => *n >= max,
            (Some(_), None) => false,
        };
        if full {
            if let Some((f, _)) = self.file.take() {
                f.sync_all()?;
            }
            self.open_next()?;
        }
        let room = match (self.split, &self.file) {
            (Some(max), Some((_, n))) => usize::try_from(max - n).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let Some((f, n)) = &mut self.file else {
            return Err(io::Error::other("no output file"));
        };
        let k = f.write(buf.get(..room).unwrap_or(buf))?;
        *n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((f, _)) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hold_at_most_the_split_size_and_concatenate_back() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.tar");
        let mut out = Output::create(&target, Some(10));
        let data: Vec<u8> = (0..25u8).collect();
        out.write_all(&data).unwrap();
        let parts = out.finish().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], dir.path().join("b.tar.002"));
        let mut back = Vec::new();
        for p in &parts {
            let bytes = std::fs::read(p).unwrap();
            assert!(bytes.len() <= 10);
            back.extend(bytes);
        }
        assert_eq!(back, data);
        assert!(!target.exists());

        let mut whole = Output::create(&target, None);
        whole.write_all(&data).unwrap();
        assert_eq!(whole.finish().unwrap(), vec![target.clone()]);
        assert_eq!(std::fs::read(&target).unwrap(), data);
    }
}
