//! Durable destination cursors: where each destination is in the log, in
//! `data_dir/cursors/<destination>.json`, replaced atomically (write, fsync, rename, fsync).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::Committed;
use crate::log::record;
use crate::log::segment::{self, Position};

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

    /// `load`, for a destination about to start: a cursor file that does not parse, or
    /// names a place where the log has no record with its `next_seq`, is moved to
    /// `quarantine/` and replaced by the start of the oldest retained segment. That is the
    /// safe side for at-least-once delivery: retention never reclaims a segment a cursor has
    /// not passed, so the real position is at or after it; what lies between is delivered
    /// again rather than skipped.
    pub fn load_checked(
        &self,
        log_dir: &Path,
        committed: Committed,
    ) -> io::Result<Option<CursorState>> {
        let why = match self.load() {
            Ok(None) => return Ok(None),
            Ok(Some(mut s)) => match check(log_dir, &s, committed)? {
                None => {
                    s.done
                        .retain(|&seq| seq > s.next_seq && seq < committed.next_seq);
                    return Ok(Some(s));
                }
                Some(why) => why,
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => format!("does not parse ({e})"),
            Err(e) => return Err(e),
        };
        let data_dir = log_dir.parent().unwrap_or(log_dir);
        let state = CursorState::earliest(log_dir)?;
        let action = format!(
            "the destination starts again at record {} (the oldest retained), so events it had delivered may be delivered again",
            state.next_seq
        );
        crate::quarantine::move_aside(
            data_dir,
            &self.path,
            crate::quarantine::Kind::Cursor,
            &why,
            &action,
        )?;
        self.save(&state)?;
        Ok(Some(state))
    }
}

/// Why a parsed cursor cannot be right, if it cannot: the record at its position must be
/// the one numbered `next_seq`. A reclaimed segment is not damage: the reader moves on.
fn check(log_dir: &Path, s: &CursorState, committed: Committed) -> io::Result<Option<String>> {
    let bad = |what: &str| {
        Ok(Some(format!(
            "position {}:{} with next_seq {}: {what}",
            s.position.segment, s.position.offset, s.next_seq
        )))
    };
    if s.position == committed.end {
        return if s.next_seq == committed.next_seq {
            Ok(None)
        } else {
            bad("the log ends there with another sequence number")
        };
    }
    if s.position > committed.end {
        return bad("past the end of the log");
    }
    let file = match fs::File::open(segment::segment_path(log_dir, s.position.segment)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if s.position.offset == file.metadata()?.len() {
        let next = segment::list_segments(log_dir)?
            .into_iter()
            .find(|&b| b > s.position.segment);
        return match next {
            Some(b) if b == s.next_seq => Ok(None),
            _ => bad("the end of a segment, but not before that record"),
        };
    }
    match read_record(&file, s.position.offset) {
        Some(seq) if seq == s.next_seq => Ok(None),
        Some(seq) => bad(&format!("the record there is {seq}")),
        None => bad("no intact record starts there"),
    }
}

/// The sequence number of the intact record at `offset`, if one starts there.
fn read_record(file: &fs::File, offset: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; record::FRAME_HEADER];
    file.read_exact_at(&mut header, offset).ok()?;
    let len = record::frame_len(&header).ok()?;
    let mut frame = vec![0u8; record::FRAME_HEADER + len];
    file.read_exact_at(&mut frame, offset).ok()?;
    record::decode(&frame).ok().map(|(rec, _)| rec.seq)
}

impl CursorFile {
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
