//! Reclaiming log space. A sealed segment may be deleted only when every destination cursor
//! has passed it and the dedupe checkpoint covers it; retention (`storage.retention`) then
//! decides when: once it is older than `max_age`, or while the log is over `max_bytes`.
//!
//! A segment's age is the injected clock's `now_ms` minus the segment file's mtime: a sealed
//! segment is never written again, so its mtime is when it was sealed, and no new file or
//! format is needed. The age is decided by the server's clock (`clock.rs`), so a test that
//! starts a manual clock at the wall-clock time and moves it ages the segments with it.

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

/// Deletes the sealed segments that every cursor and the dedupe checkpoint have passed and
/// that retention lets go, oldest first; `now_ms` is the server's clock.
pub fn reclaim(
    log_dir: &Path,
    min_cursor: Position,
    dedupe_checkpoint: Option<u64>,
    max_age: Duration,
    max_bytes: u64,
    now_ms: i64,
) -> io::Result<Reclaimed> {
    let bases = segment::list_segments(log_dir)?;
    let mut sizes = Vec::with_capacity(bases.len());
    for &b in &bases {
        let meta = fs::metadata(segment::segment_path(log_dir, b))?;
        let age = meta.modified().map_or(Duration::ZERO, |m| age(m, now_ms));
        sizes.push((meta.len(), age));
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
        let (len, age) = sizes[i];
        let expired = age >= max_age;
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

/// How long before `now_ms` the file was last modified; zero for an mtime in the future (or
/// unreadable), as before: a segment of unknown age is not expired by age.
fn age(modified: SystemTime, now_ms: i64) -> Duration {
    let mtime_ms = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
    Duration::from_millis(now_ms.saturating_sub(mtime_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_the_clock_minus_the_mtime_and_never_negative() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(age(at, 1_700_000_060_000), Duration::from_secs(60));
        assert_eq!(age(at, 1_699_999_000_000), Duration::ZERO);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(age(before_epoch, 1_000), Duration::from_secs(1));
    }
}
