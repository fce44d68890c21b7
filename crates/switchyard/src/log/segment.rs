//! Segment files and crash recovery.
//!
//! The log is a directory of segment files named after the sequence number of their first
//! record (`00000000000000000042.log`). Only the newest segment is ever appended to; a
//! segment is sealed (fsync'd) before the next one is created, so recovery only has to scan
//! the newest segment. A torn or corrupt tail there is moved to `quarantine/` and cut off;
//! every record before it survives.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::record::{self, DecodeError, Record};

/// A position in the log: a segment (by base sequence number) and a byte offset in it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Lists segment base numbers in ascending order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Bytes of valid, contiguous records from the start.
    pub valid_len: u64,
    /// Sequence number of the last valid record, if any.
    pub last_seq: Option<u64>,
    /// Received time of the first valid record (for retention by age).
    pub first_received_ms: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub damage: Option<DecodeError>,
    pub file_len: u64,
}

/// Reads a whole segment, calling `visit` for each valid record, stopping at the first
/// damaged frame. Sequence numbers must increase by one from `base`.
pub fn scan(path: &Path, base: u64, mut visit: impl FnMut(&Record)) -> io::Result<Scan> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    let mut scan = Scan {
        file_len: buf.len() as u64,
        ..Scan::default()
    };
    let mut at = 0usize;
    let mut expected = base;
    while at < buf.len() {
        match record::decode(&buf[at..]) {
            Ok((rec, n)) if rec.seq == expected => {
                visit(&rec);
                scan.first_received_ms.get_or_insert(rec.entry.received_ms);
                scan.last_seq = Some(rec.seq);
                expected += 1;
                at += n;
            }
            Ok(_) => {
                scan.damage = Some(DecodeError::Malformed("sequence number out of order"));
                break;
            }
            Err(e) => {
                scan.damage = Some(e);
                break;
            }
        }
    }
    scan.valid_len = at as u64;
    Ok(scan)
}

/// Moves the bytes of `path` from `valid_len` on into `quarantine/` and truncates the file,
/// durably. Returns the number of bytes cut.
pub fn quarantine_tail(dir: &Path, path: &Path, base: u64, valid_len: u64) -> io::Result<u64> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    let cut = buf.len() as u64 - valid_len;
    if cut == 0 {
        return Ok(0);
    }
    let qdir = dir.join("quarantine");
    fs::create_dir_all(&qdir)?;
    let qpath = qdir.join(format!("{base:020}-{valid_len}.bad"));
    let mut q = File::create(&qpath)?;
    q.write_all(&buf[valid_len as usize..])?;
    q.sync_all()?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(valid_len)?;
    f.sync_all()?;
    sync_dir(&qdir)?;
    Ok(cut)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
