//! The durable embedded event log: segment files of CRC-framed records, written by one
//! group-commit thread (`writer.rs`) and read by any number of cursors (`reader.rs`).
//!
//! Invariants:
//! - A request is answered only after its records are fdatasync'd.
//! - Records are numbered by a gap-free sequence; readers never see uncommitted bytes.
//! - Segments are deleted only once every cursor has passed them, retention allows it, and
//!   the dedupe checkpoint covers them (so dedupe recovery can always replay from the log).

pub mod reader;
pub mod record;
pub mod retention;
pub mod segment;
pub mod tail;
mod writer;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::dedupe::DedupeIndex;
use crate::telemetry::Metrics;
use record::{Entry, Kind, Record};
use segment::Position;
pub use writer::Append;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LogError {
    #[error("the write queue is full")]
    Saturated,
    #[error("the log is closed")]
    Closed,
    #[error("log I/O failed: {0}")]
    Io(String),
}

/// The committed end of the log, published after every group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    pub end: Position,
    pub next_seq: u64,
}

#[derive(Clone)]
pub struct LogOptions {
    pub segment_bytes: u64,
    pub commit_window: Duration,
    pub queue_requests: usize,
    pub queue_bytes: u64,
    pub dedupe_window: Duration,
    pub dedupe_max_keys: u64,
    /// The server's clock: which dedupe buckets have left the window is decided by it (a
    /// key's own time is its record's `received_ms`, stamped at ingest by the same clock).
    pub clock: Arc<dyn Clock>,
}

/// State shared between the handle and the writer thread.
pub struct Shared {
    pub queued_bytes: AtomicU64,
    pub dedupe_checkpoint: AtomicU64,
    /// Failed group commits since start-up, whether the last one failed, and its error.
    pub failed_commits: AtomicU64,
    failing: AtomicBool,
    last_failure: Mutex<Option<String>>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    fn commit_failed(&self, error: &str) {
        self.failed_commits.fetch_add(1, Ordering::Relaxed);
        self.metrics.log_commit_failures.inc();
        self.failing.store(true, Ordering::Release);
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_owned());
    }

    fn commit_succeeded(&self) {
        self.failing.store(false, Ordering::Release);
    }

    fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// What recovery found and did, for logs, metrics and `inspect`.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    pub segments: usize,
    pub next_seq: u64,
    pub truncated_bytes: u64,
    pub replayed_dedupe_keys: u64,
    /// Damaged regions in the newest segment with intact records after them: copied to
    /// `log/quarantine/` and skipped.
    pub holes: Vec<String>,
}

pub struct Log {
    dir: PathBuf,
    tx: Mutex<Option<SyncSender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    committed: watch::Receiver<Committed>,
    shared: Arc<Shared>,
    queue_bytes: u64,
    /// Who follows the log and whose last read failed (`tail.rs`).
    readers: Arc<tail::Readers>,
}

impl Log {
    /// Opens (or creates) the log under `dir`, recovers its tail, rebuilds what the dedupe
    /// index lacks, and starts the writer thread. `visit_tail` sees every record of the
    /// newest segment, so that in-memory views can be warmed.
    pub fn open(
        dir: &Path,
        opts: &LogOptions,
        metrics: Arc<Metrics>,
        mut visit_tail: impl FnMut(&Record),
    ) -> io::Result<(Log, Recovery)> {
        let log_dir = dir.join("log");
        fs::create_dir_all(&log_dir)?;
        let mut bases = segment::list_segments(&log_dir)?;
        if bases.is_empty() {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment::segment_path(&log_dir, 0))?;
            segment::sync_dir(&log_dir)?;
            bases.push(0);
        }
        let base = *bases.last().unwrap_or(&0);
        let path = segment::segment_path(&log_dir, base);
        let scan = segment::scan(&path, base, &mut visit_tail)?;
        let mut recovery = Recovery {
            segments: bases.len(),
            ..Recovery::default()
        };
        recover_tail(dir, base, &scan, &mut recovery, &metrics)?;
        let next_seq = scan.last_seq.map_or(base, |s| s + 1);
        recovery.next_seq = next_seq;

        let now = opts.clock.now_ms();
        let mut dedupe = DedupeIndex::open(
            &dir.join("dedupe"),
            opts.dedupe_window.as_millis() as i64,
            opts.dedupe_max_keys,
            now,
        )?;
        recovery.replayed_dedupe_keys = replay_dedupe(&log_dir, &bases, &mut dedupe)?;
        if let Some(last) = next_seq.checked_sub(1) {
            dedupe.sync(last)?;
        }
        let shared = Arc::new(Shared {
            queued_bytes: AtomicU64::new(0),
            dedupe_checkpoint: AtomicU64::new(dedupe.checkpoint().unwrap_or(u64::MAX)),
            failed_commits: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            metrics,
        });
        let committed = Committed {
            end: Position {
                segment: base,
                offset: scan.valid_len,
            },
            next_seq,
        };
        let (committed_tx, committed_rx) = watch::channel(committed);
        let (tx, rx) = sync_channel(opts.queue_requests.max(1));
        let writer = writer::Writer {
            dir: log_dir.clone(),
            rx,
            file: OpenOptions::new().append(true).open(&path)?,
            base,
            len: scan.valid_len,
            next_seq,
            segment_bytes: opts.segment_bytes,
            commit_window: opts.commit_window,
            dedupe,
            clock: opts.clock.clone(),
            torn: false,
            committed: committed_tx,
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())?;
        let log = Log {
            dir: log_dir,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            committed: committed_rx,
            shared,
            queue_bytes: opts.queue_bytes,
            readers: Arc::default(),
        };
        Ok((log, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The readers of this log whose last read failed (`/readyz` lists them).
    pub fn readers(&self) -> Arc<tail::Readers> {
        self.readers.clone()
    }

    /// A way through the log for the reader `name`, reporting to `backlog`, `read_errors`
    /// and, if given, `shown` (see `tail.rs`).
    pub fn tail(
        &self,
        name: &str,
        backlog: prometheus_client::metrics::gauge::Gauge,
        read_errors: prometheus_client::metrics::counter::Counter,
        shown: Option<Arc<dyn tail::ShowError>>,
    ) -> tail::Tail {
        tail::Tail::new(tail::TailParts {
            name: name.to_owned(),
            log_dir: self.dir.clone(),
            committed: self.committed(),
            backlog,
            read_errors,
            readers: self.readers.clone(),
            shown,
        })
    }

    /// Queues entries for the next group commit. Fails fast when the queue is full.
    pub fn submit(
        &self,
        entries: Vec<Entry>,
    ) -> Result<oneshot::Receiver<Result<Vec<Entry>, LogError>>, LogError> {
        let bytes: u64 = entries.iter().map(|e| e.body.len() as u64 + 64).sum();
        let queued = self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued + bytes > self.queue_bytes && queued > 0 {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Saturated);
        }
        let (reply, rx) = oneshot::channel();
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match guard.as_ref() {
            None => Err(LogError::Closed),
            Some(tx) => tx
                .try_send(Append {
                    entries,
                    bytes,
                    reply,
                })
                .map_err(|e| match e {
                    TrySendError::Full(_) => LogError::Saturated,
                    TrySendError::Disconnected(_) => LogError::Closed,
                }),
        };
        drop(guard);
        if sent.is_err() {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        sent.map(|()| rx)
    }

    /// Appends and waits until durable. The entries come back with their final kind: an
    /// accepted entry whose key was already seen comes back as a duplicate.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Vec<Entry>, LogError> {
        self.submit(entries)?.await.map_err(|_| LogError::Closed)?
    }

    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// False from a failed commit until a commit succeeds again (or the writer's probe finds
    /// the volume has room again).
    pub fn healthy(&self) -> bool {
        !self.shared.failing()
    }

    /// Failed commits since start-up and the last one's error.
    pub fn failures(&self) -> (u64, Option<String>) {
        let last = self
            .shared
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (
            self.shared.failed_commits.load(Ordering::Relaxed),
            last.clone(),
        )
    }

    /// Stops accepting, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }

    /// The highest sequence number the dedupe index has made durable (None before any).
    pub fn dedupe_checkpoint(&self) -> Option<u64> {
        let v = self.shared.dedupe_checkpoint.load(Ordering::Acquire);
        (v != u64::MAX).then_some(v)
    }
}

/// Cuts a torn tail of the newest segment (into `log/quarantine/`) and copies aside each hole
/// whose records after it survive; both are reported.
fn recover_tail(
    data_dir: &Path,
    base: u64,
    scan: &segment::Scan,
    recovery: &mut Recovery,
    metrics: &Metrics,
) -> io::Result<()> {
    let log_dir = data_dir.join("log");
    for hole in &scan.holes {
        let (name, new) = segment::quarantine_hole(&log_dir, base, hole)?;
        let what = describe_hole(base, hole, &name);
        if new {
            crate::quarantine::record(data_dir, crate::quarantine::Kind::LogHole, &what);
        }
        recovery.holes.push(what);
    }
    if let Some(damage) = &scan.damage {
        let path = segment::segment_path(&log_dir, base);
        recovery.truncated_bytes = segment::quarantine_tail(&log_dir, &path, base, scan.valid_len)?;
        tracing::warn!(segment = base, valid_bytes = scan.valid_len, cut_bytes = recovery.truncated_bytes, %damage,
            "Recovered the log: a torn or corrupt tail was moved to quarantine/");
        metrics.log_truncated_bytes.inc_by(recovery.truncated_bytes);
    }
    Ok(())
}

/// How a hole is reported: where, what was lost, and where its bytes are.
pub fn describe_hole(base: u64, hole: &segment::Hole, name: &str) -> String {
    format!(
        "log segment {base:020}: {} damaged bytes at byte {} ({}); records {}..{} are lost and skipped by every reader, the records after them are kept; bytes copied to log/quarantine/{name}",
        hole.len,
        hole.offset,
        hole.damage,
        hole.first_seq,
        hole.next_seq.saturating_sub(1)
    )
}

/// Re-adds to the dedupe index the accepted keys of records after its checkpoint.
fn replay_dedupe(log_dir: &Path, bases: &[u64], dedupe: &mut DedupeIndex) -> io::Result<u64> {
    let from = dedupe.checkpoint().map_or(0, |c| c + 1);
    let first = bases.iter().rposition(|&b| b <= from).unwrap_or(0);
    let mut replayed = 0u64;
    let mut err = None;
    for &base in &bases[first..] {
        segment::scan(&segment::segment_path(log_dir, base), base, |rec| {
            if rec.seq < from || rec.entry.kind != Kind::Accepted || err.is_some() {
                return;
            }
            let key = rec.entry.dedupe_key();
            if let Err(e) = dedupe.insert(&key, rec.seq, rec.entry.received_ms) {
                err = Some(e);
            }
            replayed += 1;
        })?;
    }
    if let Some(e) = err {
        return Err(e);
    }
    dedupe.flush()?;
    Ok(replayed)
}

#[cfg(test)]
mod tests;
