//! Opening an input and handing its files over one by one, front to back: a tar (plain, gzip or
//! zstd; one file or split parts `NAME.000`, `NAME.001`, …) or an OCI layout directory. Nothing
//! is extracted: each file's bytes go straight to whoever takes the entry.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::contents::{CONTENTS_FILE, SIGNATURE_FILE};
use super::error::BundleError;

/// One file of the input.
pub struct Entry<'a> {
    /// Relative, `/`-separated, without a leading `./`.
    pub path: String,
    pub size: u64,
    /// For a link (docker save links repeated layers): the path it stands for.
    pub link: Option<String>,
    pub data: &'a mut dyn Read,
}

/// What the input is made of, and how many bytes that is (for progress).
pub struct Input {
    kind: Kind,
    pub total: u64,
    /// Bytes of the input read so far (compressed bytes for a compressed tar).
    pub read: Rc<Cell<u64>>,
}

enum Kind {
    Tar(Vec<PathBuf>),
    Dir(PathBuf),
}

/// The parts of a split bundle, in order, starting at `first` (`NAME.000`).
fn parts_from(first: &Path) -> Vec<PathBuf> {
    let base = first.to_string_lossy();
    let base = base.strip_suffix(".000").unwrap_or(&base).to_owned();
    (0..)
        .map(|i| PathBuf::from(format!("{base}.{i:03}")))
        .take_while(|p| p.is_file())
        .collect()
}

impl Input {
    pub fn open(path: &Path) -> Result<Input, BundleError> {
        let kind = if path.is_dir() {
            Kind::Dir(path.to_owned())
        } else if path.is_file() {
            if path.to_string_lossy().ends_with(".000") {
                Kind::Tar(parts_from(path))
            } else {
                Kind::Tar(vec![path.to_owned()])
            }
        } else {
            let first = PathBuf::from(format!("{}.000", path.display()));
            if !first.is_file() {
                return Err(BundleError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{}: no such file, directory or split bundle",
                        path.display()
                    ),
                )));
            }
            Kind::Tar(parts_from(&first))
        };
        let total = match &kind {
            Kind::Tar(parts) => parts.iter().map(file_len).sum::<io::Result<u64>>()?,
            Kind::Dir(dir) => dir_files(dir)?
                .iter()
                .map(|(_, p)| file_len(p))
                .sum::<io::Result<u64>>()?,
        };
        Ok(Input {
            kind,
            total,
            read: Rc::new(Cell::new(0)),
        })
    }

    /// Calls `f` on every regular file of the input, in order; stops at the first error.
    pub fn for_each(
        &self,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), BundleError>,
    ) -> Result<(), BundleError> {
        self.for_first(usize::MAX, f)
    }

    /// Like [`Input::for_each`] for the first `n` files only (links count too, directories
    /// do not).
    pub fn for_first(
        &self,
        n: usize,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), BundleError>,
    ) -> Result<(), BundleError> {
        match &self.kind {
            Kind::Tar(parts) => {
                let chain = Parts {
                    files: parts.clone(),
                    next: 0,
                    current: None,
                };
                let counted = Counted {
                    inner: chain,
                    read: self.read.clone(),
                };
                let reader = decompressed(BufReader::with_capacity(1 << 20, counted))?;
                each_tar_entry(reader, n, f)
            }
            Kind::Dir(dir) => {
                for (rel, path) in dir_files(dir)?.into_iter().take(n) {
                    let mut file = File::open(&path)?;
                    let size = file.metadata()?.len();
                    let mut counted = Counted {
                        inner: &mut file,
                        read: self.read.clone(),
                    };
                    f(Entry {
                        path: rel,
                        size,
                        link: None,
                        data: &mut counted,
                    })?;
                }
                Ok(())
            }
        }
    }
}

fn file_len(p: &PathBuf) -> io::Result<u64> {
    Ok(std::fs::metadata(p)?.len())
}

/// The files of a layout directory, the contents manifest and its signature first.
fn dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let path = e.path();
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| BundleError::format("path outside the directory"))?
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, path));
            }
        }
    }
    let rank = |p: &str| match p {
        CONTENTS_FILE => 0,
        SIGNATURE_FILE => 1,
        _ => 2,
    };
    out.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    Ok(out)
}

/// gzip and zstd are recognised by their magic bytes, whatever the file is called.
fn decompressed<R: BufRead + 'static>(mut r: R) -> Result<Box<dyn Read>, BundleError> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| BundleError::format(format!("zstd: {e}")))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(r))
    }
}

fn each_tar_entry(
    reader: Box<dyn Read>,
    n: usize,
    f: &mut dyn FnMut(Entry<'_>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let mut archive = tar::Archive::new(reader);
    let mut after = String::from("the start");
    let cut = |after: &str, e: io::Error| BundleError::CutShort {
        after: after.to_owned(),
        reason: e.to_string(),
    };
    let entries = archive.entries().map_err(|e| cut(&after, e))?;
    // Counts the files handed over, not directory entries (`tar -C dir -cf x.tar .` starts
    // with `./`).
    let mut handed = 0;
    for entry in entries {
        if handed == n {
            break;
        }
        let mut entry = entry.map_err(|e| cut(&after, e))?;
        let ty = entry.header().entry_type();
        let path = normalize(&entry.path()?.to_string_lossy());
        after.clone_from(&path);
        if ty.is_symlink() || ty.is_hard_link() {
            let target = entry
                .link_name()?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = if ty.is_symlink() {
                resolve(&path, &target)
            } else {
                normalize(&target)
            };
            handed += 1;
            f(Entry {
                path,
                size: 0,
                link: Some(target),
                data: &mut io::empty(),
            })?;
            continue;
        }
        if !(ty.is_file() || ty == tar::EntryType::Continuous) || path.is_empty() {
            continue;
        }
        let size = entry.header().size()?;
        handed += 1;
        f(Entry {
            path,
            size,
            link: None,
            data: &mut entry,
        })?;
    }
    Ok(())
}

fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// A symlink's target relative to the link's own directory.
fn resolve(link: &str, target: &str) -> String {
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    normalize(&format!("{dir}/{target}"))
}

/// The parts of a split bundle read as one stream.
struct Parts {
    files: Vec<PathBuf>,
    next: usize,
    current: Option<File>,
}

impl Read for Parts {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = &mut self.current {
                let n = f.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.current = None;
            }
            let Some(path) = self.files.get(self.next) else {
                return Ok(0);
            };
            self.current = Some(File::open(path)?);
            self.next += 1;
        }
    }
}

struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_is_found_past_directory_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "./", io::empty()).unwrap();
        for name in ["./berth-bundle.json", "./later"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            b.append_data(&mut h, name, &b"{}"[..]).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let mut seen = Vec::new();
        Input::open(&path)
            .unwrap()
            .for_first(1, &mut |e| {
                seen.push(e.path);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec!["berth-bundle.json".to_owned()]);
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(normalize("/index.json"), "index.json");
        assert_eq!(
            resolve("abc/layer.tar", "../def/layer.tar"),
            "def/layer.tar"
        );
        assert_eq!(resolve("x.tar", "y.tar"), "y.tar");
    }
}
