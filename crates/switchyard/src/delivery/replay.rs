//! Replay from the log (backfill): send a destination, again, every event it has already
//! passed that was received since a given time. The run reads the log with its own reader,
//! a chunk at a time, and saves its position in `cursors/<destination>.replay.json` only
//! once every delivery of a chunk is finished, so a restart resumes it (at least once).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cursor::{read_json, write_atomic};
use crate::log::segment::Position;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplayState {
    /// Where the next chunk starts.
    pub position: Position,
    /// Events from this sequence number on are delivered by the live cursor; stop there.
    pub until_seq: u64,
    /// Only events received at or after this time (ms since the epoch).
    pub since_ms: i64,
    /// Events sent again so far.
    pub replayed: u64,
}

pub struct ReplayFile {
    path: PathBuf,
}

impl ReplayFile {
    pub fn new(data_dir: &Path, destination: &str) -> ReplayFile {
        ReplayFile {
            path: data_dir
                .join("cursors")
                .join(format!("{destination}.replay.json")),
        }
    }

    pub fn load(&self) -> io::Result<Option<ReplayState>> {
        read_json(&self.path)
    }

    pub fn save(&self, s: &ReplayState) -> io::Result<()> {
        write_atomic(
            &self.path,
            &serde_json::to_vec(s).map_err(io::Error::other)?,
        )
    }

    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
