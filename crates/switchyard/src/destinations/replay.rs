//! Replay from the log for the destinations whose runner writes whole batches: `file` and
//! `postgres` (the delivery worker has its own, per delivery, in `delivery/worker/replay.rs`).
//!
//! `POST /api/v1/destinations/{id}/replay` saves a `ReplayState` (`cursors/<id>.replay.json`)
//! and sets `replaying`. Between live batches the runner reads one chunk from the replay's
//! position, writes the records its live path would write that were received since `since`
//! and come before `until_seq` (where the live cursor stood), then saves the replay's new
//! position — after the write, so a crash repeats a chunk rather than skipping one (at
//! least once). The warehouse loads by `id` with `ON CONFLICT`, so a replay adds no
//! duplicate rows; the file destination appends the events again, as a backfill should.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::DestinationStatus;
use crate::delivery::replay::{ReplayFile, ReplayState};
use crate::log::reader::Read1;
use crate::log::segment::Position;

/// Why a replay from the log could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a replay from the log is already running for this destination")]
    Running,
    #[error("starting the replay: {0}")]
    Io(#[from] std::io::Error),
}

/// Starts a replay from the log of every event `status`'s destination has passed that was
/// received at or after `since_ms`: saves its state and wakes the destination's runner, which
/// runs it (`delivery/worker.rs` or `LogReplay`). Blocking: call it on a blocking thread.
/// Only one runs per destination: the `replaying` flag is claimed first, atomically.
pub fn start(
    data_dir: &Path,
    log_dir: &Path,
    status: &DestinationStatus,
    since_ms: i64,
) -> Result<ReplayState, StartError> {
    let claimed =
        status
            .replaying
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire);
    if claimed.is_err() {
        return Err(StartError::Running);
    }
    let file = ReplayFile::new(data_dir, &status.id);
    let started = prepare(&file, data_dir, log_dir, status, since_ms);
    match &started {
        // One saved before a restart, not picked up yet: it is the one running.
        Err(StartError::Running) => status.wake.notify_one(),
        Err(StartError::Io(_)) => status.replaying.store(false, Ordering::Release),
        Ok(_) => {
            status.replayed.store(0, Ordering::Release);
            status.wake.notify_one();
        }
    }
    started
}

/// Writes the new replay's state: from the oldest segment to where the live cursor stands.
fn prepare(
    file: &ReplayFile,
    data_dir: &Path,
    log_dir: &Path,
    status: &DestinationStatus,
    since_ms: i64,
) -> Result<ReplayState, StartError> {
    if file.load()?.is_some() {
        return Err(StartError::Running);
    }
    let first = crate::log::segment::list_segments(log_dir)?
        .first()
        .copied()
        .unwrap_or(0);
    // The durable cursor: what the live destination resumes from.
    let saved = crate::cursor::CursorFile::new(data_dir, &status.id)
        .load()
        .ok()
        .flatten()
        .map(|c| c.next_seq);
    let run = ReplayState {
        position: Position {
            segment: first,
            offset: 0,
        },
        until_seq: saved.unwrap_or(0).max(status.next_seq()),
        since_ms,
        replayed: 0,
    };
    file.save(&run)?;
    Ok(run)
}

pub struct LogReplay {
    file: ReplayFile,
    pub state: ReplayState,
}

impl LogReplay {
    /// The replay to run, if one was started (now or before a restart): read when `start`
    /// has flagged one, or `always` (at start).
    pub fn pending(
        data_dir: &Path,
        id: &str,
        status: &DestinationStatus,
        always: bool,
    ) -> Option<LogReplay> {
        if !always && !status.replaying.load(Ordering::Acquire) {
            return None;
        }
        let file = ReplayFile::new(data_dir, id);
        match file.load() {
            Ok(Some(state)) => {
                tracing::info!(destination = %id, until_seq = state.until_seq, "Replaying from the log");
                status.replaying.store(true, Ordering::Release);
                status.replayed.store(state.replayed, Ordering::Release);
                Some(LogReplay { file, state })
            }
            // The flag is claimed just before the state is saved (`start`): not yet.
            Ok(None) => None,
            Err(error) => {
                tracing::error!(destination = %id, %error, "Could not read the replay state; not replaying");
                status.replaying.store(false, Ordering::Release);
                None
            }
        }
    }

    /// Whether a record read by the replay is one to send again.
    pub fn wants(&self, r: &Read1) -> bool {
        self.window().wants(r)
    }

    pub fn window(&self) -> Window {
        Window {
            until_seq: self.state.until_seq,
            since_ms: self.state.since_ms,
        }
    }

    /// After a chunk read up to `next` was written (`sent` events; `last_seq` the last
    /// record it read, `None` when none): saves the progress, or removes the state when the
    /// replay has reached `until_seq` or the end of the log. True when finished.
    pub fn advance(
        &mut self,
        last_seq: Option<u64>,
        next: Position,
        sent: u64,
        status: &DestinationStatus,
    ) -> std::io::Result<bool> {
        let done = last_seq.is_none_or(|seq| seq + 1 >= self.state.until_seq);
        self.state.position = next;
        self.state.replayed += sent;
        status
            .replayed
            .store(self.state.replayed, Ordering::Release);
        if done {
            self.file.remove()?;
            tracing::info!(
                replayed = self.state.replayed,
                "Replay from the log finished"
            );
            status.replaying.store(false, Ordering::Release);
        } else {
            self.file.save(&self.state)?;
        }
        Ok(done)
    }
}

/// Which records a replay sends again: received since `since_ms`, before `until_seq`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub until_seq: u64,
    pub since_ms: i64,
}

impl Window {
    pub fn wants(&self, r: &Read1) -> bool {
        r.record.seq < self.until_seq && r.record.entry.received_ms >= self.since_ms
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn status(id: &str, next_seq: u64) -> Arc<DestinationStatus> {
        Arc::new(DestinationStatus {
            id: id.to_owned(),
            next_seq: AtomicU64::new(next_seq),
            position: std::sync::Mutex::new(Position::default()),
            last_error: std::sync::Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            replaying: std::sync::atomic::AtomicBool::new(false),
            replayed: AtomicU64::new(7),
        })
    }

    /// Many starts at once (the API's check-then-set race): exactly one wins; the rest are
    /// told one is running; once it finishes, a new one can start.
    #[test]
    fn one_replay_at_a_time_even_when_started_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, log) = (tmp.path().to_owned(), tmp.path().join("log"));
        std::fs::create_dir_all(&log).unwrap();
        std::fs::create_dir_all(data.join("cursors")).unwrap();
        let st = status("d", 42);
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| start(&data, &log, &st, 5).is_ok()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
        let saved = ReplayFile::new(&data, "d").load().unwrap().unwrap();
        assert_eq!(
            (saved.until_seq, saved.since_ms, saved.replayed),
            (42, 5, 0)
        );
        assert_eq!(st.replayed.load(Ordering::Acquire), 0);
        assert!(matches!(
            start(&data, &log, &st, 5),
            Err(StartError::Running)
        ));

        // The runner finishes it: a new one can start.
        let mut run = LogReplay::pending(&data, "d", &st, false).unwrap();
        assert!(run.advance(None, Position::default(), 3, &st).unwrap());
        assert!(!st.replaying.load(Ordering::Acquire));
        assert!(start(&data, &log, &st, 9).is_ok());
    }
}
