//! The exact dedupe index over `(source, environment, messageId)` keys.
//!
//! Keys live on disk, one append-only file per time bucket (`dedupe/<start_ms>-<width_ms>.dd`,
//! 24 buckets per window). Memory holds only a 64-bit keyed hash and the entry's file offset
//! per key (about 16–24 B/key); a hash hit is confirmed by reading the full key back from
//! the file, so the index is exact, never probabilistic. Whole buckets expire once they are
//! older than the window, and the oldest expires early when `max_keys` is reached.
//!
//! Durability: entries are written (not synced) right after the log commit that appended
//! their events, and fsync'd about once a second together with a checkpoint naming the last
//! covered log sequence number. Recovery replays the log after the checkpoint (see
//! `log::Log::open`), so the index always covers every committed event.

mod bucket;

use std::collections::VecDeque;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};

use bucket::Bucket;

const CHECKPOINT: &str = "CHECKPOINT";

pub struct DedupeIndex {
    dir: PathBuf,
    window_ms: i64,
    bucket_ms: i64,
    max_keys: u64,
    hasher: RandomState,
    buckets: VecDeque<Bucket>,
    /// Buckets dropped before their time because `max_keys` was reached.
    pub evicted_early: u64,
    checkpoint: Option<u64>,
}

impl DedupeIndex {
    /// Opens the index under `dir`, dropping expired buckets.
    pub fn open(dir: &Path, window_ms: i64, max_keys: u64, now_ms: i64) -> io::Result<DedupeIndex> {
        fs::create_dir_all(dir)?;
        let window_ms = window_ms.max(1);
        let mut index = DedupeIndex {
            dir: dir.to_path_buf(),
            window_ms,
            bucket_ms: (window_ms / 24).max(1000),
            max_keys: max_keys.max(1),
            hasher: RandomState::new(),
            buckets: VecDeque::new(),
            evicted_early: 0,
            checkpoint: read_checkpoint(dir)?,
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if let Some((start, width)) = bucket::parse_name(&path) {
                found.push((start, width, path));
            }
        }
        found.sort();
        for (start, width, path) in found {
            if start + width + index.window_ms < now_ms {
                fs::remove_file(&path)?;
                continue;
            }
            let mut b = Bucket::load(&path, start, width, &index.hasher)?;
            if let Some(cut) = b.cut.take() {
                index.after_cut(&path, cut);
            }
            index.buckets.push_back(b);
        }
        Ok(index)
    }

    /// A bucket lost a tail: its keys belong to records after the cut's last intact entry,
    /// so the checkpoint goes back there and recovery re-adds them from the log. Damage (not
    /// a torn write) is also copied aside and reported.
    fn after_cut(&mut self, path: &Path, cut: bucket::Cut) {
        self.checkpoint = match (self.checkpoint, cut.last_seq) {
            (Some(c), Some(last)) => Some(c.min(last)),
            _ => None,
        };
        if cut.intact_after {
            let data_dir = self.dir.parent().unwrap_or(&self.dir);
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let what = format!(
                "{}: {} damaged bytes cut after the entry of record {:?}; the keys after it are re-added from the log",
                path.display(),
                cut.bytes.len(),
                cut.last_seq
            );
            crate::quarantine::copy_aside(
                data_dir,
                &name,
                &cut.bytes,
                crate::quarantine::Kind::Dedupe,
                &what,
            );
        }
    }

    /// The last log sequence number whose keys are durably in the index.
    pub fn checkpoint(&self) -> Option<u64> {
        self.checkpoint
    }

    pub fn len(&self) -> u64 {
        self.buckets.iter().map(|b| b.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Whether `key` was recorded within the window ending at `now_ms`.
    pub fn contains(&self, key: &[u8], now_ms: i64) -> io::Result<bool> {
        let h = self.hash(key);
        for b in self.buckets.iter().rev() {
            if b.end_ms() + self.window_ms < now_ms {
                continue;
            }
            if b.contains(h, key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records `key` for the event with log sequence `seq`, received at `received_ms`.
    /// Call `flush` once per commit to make the entries readable.
    pub fn insert(&mut self, key: &[u8], seq: u64, received_ms: i64) -> io::Result<()> {
        let start = received_ms.div_euclid(self.bucket_ms) * self.bucket_ms;
        let h = self.hash(key);
        let pos = match self.buckets.iter().rposition(|b| b.start_ms() == start) {
            Some(pos) => pos,
            None => self.open_bucket(start)?,
        };
        self.buckets[pos].insert(h, key, seq)?;
        while self.len() > self.max_keys && self.buckets.len() > 1 {
            self.drop_oldest()?;
            self.evicted_early += 1;
        }
        Ok(())
    }

    fn open_bucket(&mut self, start: i64) -> io::Result<usize> {
        let b = Bucket::create(&self.dir, start, self.bucket_ms)?;
        // Keep buckets ordered by start; inserts are almost always for the newest one.
        let pos = self
            .buckets
            .iter()
            .rposition(|b| b.start_ms() < start)
            .map_or(0, |p| p + 1);
        self.buckets.insert(pos, b);
        Ok(pos)
    }

    fn drop_oldest(&mut self) -> io::Result<()> {
        if let Some(b) = self.buckets.pop_front() {
            b.remove()?;
        }
        Ok(())
    }

    /// Writes buffered entries to their files (no fsync).
    pub fn flush(&mut self) -> io::Result<()> {
        self.buckets.iter_mut().try_for_each(Bucket::flush)
    }

    /// Drops buckets that left the window.
    pub fn expire(&mut self, now_ms: i64) -> io::Result<()> {
        while let Some(b) = self.buckets.front() {
            if b.end_ms() + self.window_ms >= now_ms {
                break;
            }
            self.drop_oldest()?;
        }
        Ok(())
    }

    /// Makes every entry durable and records `seq` as the checkpoint.
    pub fn sync(&mut self, seq: u64) -> io::Result<()> {
        self.flush()?;
        self.buckets.iter_mut().try_for_each(Bucket::sync)?;
        let tmp = self.dir.join("CHECKPOINT.tmp");
        fs::write(&tmp, seq.to_string())?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, self.dir.join(CHECKPOINT))?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.checkpoint = Some(seq);
        Ok(())
    }
}

/// The checkpoint; an unreadable one counts as none (the whole log is replayed).
fn read_checkpoint(dir: &Path) -> io::Result<Option<u64>> {
    match fs::read(dir.join(CHECKPOINT)) {
        Ok(bytes) => {
            let seq = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if seq.is_none() {
                let data_dir = dir.parent().unwrap_or(dir);
                crate::quarantine::copy_aside(
                    data_dir,
                    CHECKPOINT,
                    &bytes,
                    crate::quarantine::Kind::Dedupe,
                    &format!(
                        "{}: unreadable; the dedupe index is rebuilt from the whole log",
                        dir.join(CHECKPOINT).display()
                    ),
                );
            }
            Ok(seq)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
