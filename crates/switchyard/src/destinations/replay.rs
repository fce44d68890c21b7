//! Replay from the log for the destinations whose runner writes whole batches: `file` and
//! `postgres` (the delivery worker has its own, per delivery, in `delivery/worker.rs`).
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

pub struct LogReplay {
    file: ReplayFile,
    pub state: ReplayState,
}

impl LogReplay {
    /// The replay to run, if one was started (now or before a restart): read when the API
    /// has flagged one, or `always` (at start). Clears the flag when there is none.
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
            Ok(None) => {
                status.replaying.store(false, Ordering::Release);
                None
            }
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
