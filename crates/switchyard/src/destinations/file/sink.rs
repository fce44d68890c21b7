//! The `file` destination: normalised events as JSON lines, one event per line, rotated by
//! size to `<stem>.<n>.<ext>` (newest is `.1`), keeping `keep` rotated files.
//!
//! Each batch is written and fdatasync'd before the cursor moves past it, so after a crash
//! an event may appear twice, never zero times.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::config::FileSettings;

pub struct FileSink {
    settings: FileSettings,
    file: Option<File>,
    size: u64,
    /// A failed write may have left a partial line past `size`.
    torn: bool,
}

impl FileSink {
    pub fn new(settings: FileSettings) -> FileSink {
        FileSink {
            settings,
            file: None,
            size: 0,
            torn: false,
        }
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self
                .settings
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.settings.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("file sink is not open"))
    }

    /// Appends one line per event and makes them durable.
    pub fn write_batch<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        let mut buf = Vec::new();
        let mut count = 0;
        for body in events {
            self.open()?;
            let line_len = body.len() as u64 + 1;
            if self.size + buf.len() as u64 + line_len > self.settings.max_bytes
                && self.size + buf.len() as u64 > 0
            {
                self.flush_buf(&mut buf)?;
                self.rotate()?;
            }
            buf.extend_from_slice(body);
            buf.push(b'\n');
            count += 1;
        }
        self.flush_buf(&mut buf)?;
        Ok(count)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (size, torn) = (self.size, self.torn);
        let f = self.open()?;
        if torn {
            f.set_len(size)?;
        }
        if let Err(e) = f.write_all(buf).and_then(|()| f.sync_data()) {
            // Cut a partly written batch (ENOSPC) now or before the next write, so that no
            // torn line stays behind: the batch is written again whole.
            self.torn = f.set_len(size).is_err();
            return Err(e);
        }
        self.torn = false;
        self.size += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// `path` → `stem.1.ext`, `stem.1.ext` → `stem.2.ext`, ..., dropping the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let path = &self.settings.path;
        let keep = self.settings.keep;
        if keep == 0 {
            fs::remove_file(path)?;
        } else {
            let _ = fs::remove_file(rotated_path(path, keep));
            for n in (1..keep).rev() {
                let from = rotated_path(path, n);
                if from.exists() {
                    fs::rename(&from, rotated_path(path, n + 1))?;
                }
            }
            fs::rename(path, rotated_path(path, 1))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.size = 0;
        Ok(())
    }
}

/// `events.jsonl` → `events.<n>.jsonl`; a name without extension gets `.<n>`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_and_rotates_keeping_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut sink = FileSink::new(FileSettings {
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        });
        let line = [b'x'; 39];
        for _ in 0..4 {
            sink.write_batch([&line[..], &line[..]]).unwrap();
        }
        // 8 lines of 40 bytes, at most 2 per 100-byte file: the current file and 2 rotated.
        let count = |p: &Path| {
            fs::read_to_string(p)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        assert_eq!(count(&path), 2);
        assert_eq!(count(&rotated_path(&path, 1)), 2);
        assert_eq!(count(&rotated_path(&path, 2)), 2);
        assert!(!rotated_path(&path, 3).exists());
        assert_eq!(
            rotated_path(Path::new("/a/b/log"), 4),
            Path::new("/a/b/log.4")
        );
    }
}
