//! The group-commit writer: one OS thread owns the active segment and the dedupe index.
//!
//! Requests queue on a bounded channel. The writer takes one, gathers whatever else is
//! queued (waiting at most `commit_window` for more), checks every accepted entry against the
//! dedupe index and against the rest of the group, appends the whole group with one write,
//! and makes it durable with one `fdatasync`. Only then are the keys recorded, the new end
//! published to readers, and every waiting request answered.
//!
//! A failed write or fdatasync (e.g. ENOSPC) fails only the requests of that group: the
//! segment is cut back to its committed length before anything else is appended, the log
//! reports unhealthy until a commit succeeds again (or a probe finds room), and nothing is
//! acknowledged that did not reach the disk.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::record::{self, Entry, Kind};
use super::segment::{self, Position};
use super::{Committed, LogError, Shared};
use crate::clock::Clock;
use crate::dedupe::DedupeIndex;

/// Stop gathering once a group holds this many bytes.
const MAX_GROUP_BYTES: usize = 8 << 20;
const DEDUPE_SYNC_EVERY: Duration = Duration::from_secs(1);
/// Free bytes on the log's volume at which a failing log is tried as healthy again.
const PROBE_FREE_BYTES: u64 = 1 << 20;

pub struct Append {
    pub entries: Vec<Entry>,
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<Vec<Entry>, LogError>>,
}

pub struct Writer {
    pub dir: PathBuf,
    pub rx: Receiver<Append>,
    pub file: File,
    pub base: u64,
    pub len: u64,
    pub next_seq: u64,
    pub segment_bytes: u64,
    pub commit_window: Duration,
    pub dedupe: DedupeIndex,
    /// Decides when dedupe buckets expire (`LogOptions::clock`).
    pub clock: Arc<dyn Clock>,
    /// A failed write may have left bytes past `len`; cut before the next append.
    pub torn: bool,
    pub committed: watch::Sender<Committed>,
    pub shared: Arc<Shared>,
}

impl Writer {
    pub fn run(mut self) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut last_sync = Instant::now();
        loop {
            match self.rx.recv_timeout(DEDUPE_SYNC_EVERY) {
                Ok(first) => {
                    let group = self.gather(first);
                    let queued: u64 = group.iter().map(|a| a.bytes).sum();
                    self.commit(group, &mut buf);
                    self.shared.queued_bytes.fetch_sub(queued, Ordering::AcqRel);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Also when idle, so that the checkpoint catches up and segments can be reclaimed.
            if last_sync.elapsed() >= DEDUPE_SYNC_EVERY {
                self.probe();
                self.sync_dedupe();
                last_sync = Instant::now();
            }
        }
        self.sync_dedupe();
        tracing::info!(next_seq = self.next_seq, "Log writer stopped");
    }

    /// Gathers the rest of the group that `first` starts.
    fn gather(&mut self, first: Append) -> Vec<Append> {
        let mut bytes = first.bytes as usize;
        let mut group = vec![first];
        let deadline = Instant::now() + self.commit_window;
        while bytes < MAX_GROUP_BYTES {
            let next = match self.rx.try_recv() {
                Ok(a) => a,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.rx.recv_timeout(left) {
                        Ok(a) => a,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            bytes += next.bytes as usize;
            group.push(next);
        }
        group
    }

    fn commit(&mut self, mut group: Vec<Append>, buf: &mut Vec<u8>) {
        buf.clear();
        let mut new_keys = Vec::new();
        let result = self
            .encode_group(&mut group, buf, &mut new_keys)
            .and_then(|()| self.append_durably(buf));
        if let Err(error) = result {
            tracing::error!(%error, "Log commit failed; the requests in it are answered with an error");
            self.shared.commit_failed(&error.to_string());
            for a in group {
                let _ = a.reply.send(Err(LogError::Io(error.to_string())));
            }
            return;
        }
        // The records are durable: whatever happens to the dedupe index now, they are in the
        // log and numbered, so the commit stands.
        self.shared.commit_succeeded();
        self.next_seq += group.iter().map(|a| a.entries.len() as u64).sum::<u64>();
        self.committed.send_replace(Committed {
            end: Position {
                segment: self.base,
                offset: self.len,
            },
            next_seq: self.next_seq,
        });
        for a in group {
            let _ = a.reply.send(Ok(a.entries));
        }
        self.record_keys(&new_keys);
        if self.len >= self.segment_bytes
            && let Err(error) = self.roll()
        {
            tracing::error!(%error, "Could not start a new log segment");
        }
    }

    /// Adds a commit's new keys to the dedupe index. A key the index cannot take now (the
    /// disk is full) is still in memory or, failing that, re-added from the log at the next
    /// start: the checkpoint only moves once the index is synced.
    fn record_keys(&mut self, new_keys: &[(Vec<u8>, u64, i64)]) {
        let result = new_keys
            .iter()
            .try_for_each(|(key, seq, received_ms)| self.dedupe.insert(key, *seq, *received_ms))
            .and_then(|()| self.dedupe.flush());
        if let Err(error) = result {
            tracing::error!(%error, "Could not write to the dedupe index; it is rebuilt from the log at the next start");
        }
    }

    /// Encodes the group, turning repeated keys into duplicates.
    fn encode_group(
        &self,
        group: &mut [Append],
        buf: &mut Vec<u8>,
        new_keys: &mut Vec<(Vec<u8>, u64, i64)>,
    ) -> io::Result<()> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let entries = group.iter_mut().flat_map(|a| a.entries.iter_mut());
        for (seq, e) in (self.next_seq..).zip(entries) {
            if e.kind == Kind::Accepted {
                let key = e.dedupe_key();
                if seen.contains(&key) || self.dedupe.contains(&key, e.received_ms)? {
                    e.kind = Kind::Duplicate;
                    e.reason =
                        "duplicate: this messageId was already accepted within the dedupe window"
                            .into();
                } else {
                    seen.insert(key.clone());
                    new_keys.push((key, seq, e.received_ms));
                }
            }
            record::encode(buf, seq, e);
        }
        Ok(())
    }

    fn append_durably(&mut self, buf: &[u8]) -> io::Result<()> {
        self.repair()?;
        let started = Instant::now();
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of the group may be in the file: cut it now (or before the next commit),
            // so that the next commit starts on a frame boundary.
            self.torn = true;
            let _ = self.repair();
            return Err(e);
        }
        self.shared.metrics.observe_fsync(started.elapsed());
        self.len += buf.len() as u64;
        Ok(())
    }

    /// After a failed write, cuts the segment back to its committed length, durably. Until
    /// that succeeds nothing is appended.
    fn repair(&mut self) -> io::Result<()> {
        if !self.torn {
            return Ok(());
        }
        self.file.set_len(self.len)?;
        self.file.sync_all()?;
        if self.file.metadata()?.len() != self.len {
            return Err(io::Error::other(
                "the segment could not be cut back to its committed length",
            ));
        }
        self.torn = false;
        tracing::info!(
            segment = self.base,
            len = self.len,
            "Cut a failed write off the active log segment"
        );
        Ok(())
    }

    /// While commits fail, checks once a second whether they could succeed again (the
    /// segment is repaired and the volume has room), so that readiness comes back without
    /// waiting for a request.
    fn probe(&mut self) {
        if !self.shared.failing() {
            return;
        }
        let room = rustix::fs::statvfs(&self.dir)
            .map(|st| st.f_bavail.saturating_mul(st.f_frsize) >= PROBE_FREE_BYTES)
            .unwrap_or(false);
        if room && self.repair().is_ok() {
            tracing::info!("The log volume has room again; the log is healthy");
            self.shared.commit_succeeded();
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = segment::segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Err(e) = segment::sync_dir(&self.dir) {
            // A new segment the writer does not use would hide the records appended to the
            // current one after it from recovery: remove it, or else use it.
            if fs::remove_file(&path).is_ok() {
                return Err(e);
            }
        }
        self.file = file;
        self.base = self.next_seq;
        self.len = 0;
        self.torn = false;
        self.committed.send_replace(Committed {
            end: Position {
                segment: self.base,
                offset: 0,
            },
            next_seq: self.next_seq,
        });
        Ok(())
    }

    fn sync_dedupe(&mut self) {
        let now_ms = self.clock.now_ms();
        let covered = self.next_seq.checked_sub(1);
        if covered.is_some() && covered == self.dedupe.checkpoint() {
            return;
        }
        let res = self.dedupe.expire(now_ms).and_then(|()| match covered {
            Some(seq) => self.dedupe.sync(seq),
            None => Ok(()),
        });
        match res {
            Ok(()) => {
                if let Some(seq) = covered {
                    self.shared.dedupe_checkpoint.store(seq, Ordering::Release);
                }
                self.shared
                    .metrics
                    .set_dedupe(self.dedupe.len(), self.dedupe.evicted_early);
            }
            Err(error) => tracing::error!(%error, "Could not sync the dedupe index"),
        }
    }
}
