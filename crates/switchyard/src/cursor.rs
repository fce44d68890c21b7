//! Durable destination cursors: where each destination is in the log, in
//! `data_dir/cursors/<destination>.json`, replaced atomically (write, fsync, rename, fsync).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::segment::Position;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// The position of the next record to handle.
    pub position: Position,
    /// Its sequence number.
    pub next_seq: u64,
    /// Records after `next_seq` already handled (deliveries complete out of order); skipped
    /// after a restart so that nothing acknowledged is delivered twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<u64>,
}

impl CursorState {
    /// The start of the oldest retained log segment: where `start: earliest` begins.
    pub fn earliest(log_dir: &Path) -> io::Result<CursorState> {
        let first = crate::log::segment::list_segments(log_dir)?
            .first()
            .copied()
            .unwrap_or(0);
        Ok(CursorState {
            position: Position {
                segment: first,
                offset: 0,
            },
            next_seq: first,
            done: Vec::new(),
        })
    }
}

pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(data_dir: &Path, destination: &str) -> CursorFile {
        CursorFile {
            path: data_dir.join("cursors").join(format!("{destination}.json")),
        }
    }

    pub fn load(&self) -> io::Result<Option<CursorState>> {
        read_json(&self.path)
    }

    pub fn save(&self, state: &CursorState) -> io::Result<()> {
        write_atomic(
            &self.path,
            &serde_json::to_vec(state).map_err(io::Error::other)?,
        )
    }
}

/// Reads a JSON file; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` durably: write a temporary file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let c = CursorFile::new(dir.path(), "archive");
        assert_eq!(c.load().unwrap(), None);
        let s = CursorState {
            position: Position {
                segment: 5,
                offset: 77,
            },
            next_seq: 9,
            done: vec![11, 12],
        };
        c.save(&s).unwrap();
        assert_eq!(
            CursorFile::new(dir.path(), "archive").load().unwrap(),
            Some(s)
        );
    }
}
