//! Reclaiming log space. A sealed segment may be deleted only when every destination cursor
//! has passed it and the dedupe checkpoint covers it; retention (`storage.retention`) then
//! decides when: once it is older than `max_age`, or while the log is over `max_bytes`.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::segment::{self, Position};

#[derive(Debug, Default, Clone, Copy)]
pub struct Reclaimed {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub remaining_bytes: u64,
}

pub fn reclaim(
    log_dir: &Path,
    min_cursor: Position,
    dedupe_checkpoint: Option<u64>,
    max_age: Duration,
    max_bytes: u64,
) -> io::Result<Reclaimed> {
    let bases = segment::list_segments(log_dir)?;
    let mut sizes = Vec::with_capacity(bases.len());
    for &b in &bases {
        let meta = fs::metadata(segment::segment_path(log_dir, b))?;
        sizes.push((meta.len(), meta.modified().unwrap_or(SystemTime::now())));
    }
    let mut total: u64 = sizes.iter().map(|(len, _)| len).sum();
    let mut out = Reclaimed::default();
    // Never the newest (active) segment: only those with a successor.
    for (i, pair) in bases.windows(2).enumerate() {
        let next_base = pair[1];
        let passed = min_cursor.segment >= next_base;
        let covered = dedupe_checkpoint.is_some_and(|c| c + 1 >= next_base);
        if !passed || !covered {
            break;
        }
        let (len, modified) = sizes[i];
        let expired = modified.elapsed().unwrap_or_default() >= max_age;
        if !expired && total <= max_bytes {
            break;
        }
        fs::remove_file(segment::segment_path(log_dir, pair[0]))?;
        total -= len;
        out.deleted_segments += 1;
        out.deleted_bytes += len;
    }
    if out.deleted_segments > 0 {
        segment::sync_dir(log_dir)?;
    }
    out.remaining_bytes = total;
    Ok(out)
}
