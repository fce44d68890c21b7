//! Segment files and crash recovery.
//!
//! The log is a directory of segment files named after the sequence number of their first
//! record (`00000000000000000042.log`). Only the newest segment is ever appended to; a
//! segment is sealed (fsync'd) before the next one is created, so recovery only has to scan
//! the newest segment. A torn or corrupt tail there is moved to `quarantine/` and cut off;
//! every record before it survives. Damage with intact records after it (a hole) is copied
//! to `quarantine/` and skipped, by recovery and by every reader: the records after it
//! survive.

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

/// A damaged region in the middle of a segment, with intact records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// Byte range of the damaged bytes.
    pub offset: u64,
    pub len: u64,
    /// Sequence numbers lost in it: `first_seq..next_seq`.
    pub first_seq: u64,
    pub next_seq: u64,
    pub damage: DecodeError,
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Bytes up to the end of the last valid record.
    pub valid_len: u64,
    /// Sequence number of the last valid record, if any.
    pub last_seq: Option<u64>,
    /// Received time of the first valid record (for retention by age).
    pub first_received_ms: Option<i64>,
    /// Damaged regions followed by intact records: the scan resumed after each.
    pub holes: Vec<Hole>,
    /// Why the scan stopped before the end of the file (a torn or corrupt tail), if it did.
    pub damage: Option<DecodeError>,
    pub file_len: u64,
}

/// Reads a whole segment, calling `visit` for each valid record. Sequence numbers must
/// increase by one from `base`. A damaged frame followed by intact records (a flipped byte,
/// not a torn write) is a `Hole`: the scan resumes at the next intact record; damage with
/// nothing intact after it is the tail (`damage`).
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
        let damage = match record::decode(&buf[at..]) {
            Ok((rec, n)) if rec.seq == expected => {
                visit(&rec);
                scan.first_received_ms.get_or_insert(rec.entry.received_ms);
                scan.last_seq = Some(rec.seq);
                expected += 1;
                at += n;
                continue;
            }
            Ok(_) => DecodeError::Malformed("sequence number out of order"),
            Err(e) => e,
        };
        let Some((resume, seq)) = resync(&buf, at + 1, expected) else {
            scan.damage = Some(damage);
            break;
        };
        scan.holes.push(Hole {
            offset: at as u64,
            len: (resume - at) as u64,
            first_seq: expected,
            next_seq: seq,
            damage,
        });
        (at, expected) = (resume, seq);
    }
    scan.valid_len = at as u64;
    Ok(scan)
}

/// The first offset at or after `from` where an intact record numbered `min_seq` or later
/// starts, with its sequence number. A CRC32C match at a random offset is a 1 in 2^32 event
/// on top of a plausible length and sequence number.
pub fn resync(buf: &[u8], from: usize, min_seq: u64) -> Option<(usize, u64)> {
    (from..buf.len()).find_map(|at| {
        if !record::plausible(&buf[at..], min_seq) {
            return None;
        }
        match record::decode(&buf[at..]) {
            Ok((rec, _)) if rec.seq >= min_seq => Some((at, rec.seq)),
            _ => None,
        }
    })
}

/// Copies the damaged bytes of a hole into `quarantine/` (once: the name is derived from
/// the segment and offset), so that what was lost can be examined. Returns the copy's name,
/// and whether this call made it.
pub fn quarantine_hole(dir: &Path, base: u64, hole: &Hole) -> io::Result<(String, bool)> {
    let name = format!("{base:020}-{}-hole.bad", hole.offset);
    let qdir = dir.join("quarantine");
    let qpath = qdir.join(&name);
    if qpath.exists() {
        return Ok((name, false));
    }
    let mut bytes = vec![0u8; hole.len as usize];
    std::os::unix::fs::FileExt::read_exact_at(
        &File::open(segment_path(dir, base))?,
        &mut bytes,
        hole.offset,
    )?;
    fs::create_dir_all(&qdir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = qdir.join(format!("{name}.{nanos}.tmp"));
    let mut q = File::create(&tmp)?;
    q.write_all(&bytes)?;
    q.sync_all()?;
    fs::rename(&tmp, &qpath)?;
    sync_dir(&qdir)?;
    Ok((name, true))
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
