//! The `file` destination (docs/destinations.md): its runner follows the log through the
//! shared tail and writes each batch of wanted events through the sink before the cursor
//! moves past it.
//!
//! - `mod.rs`: the runner (live batches, replay from the log, the read and write error
//!   policy); `sink.rs`: JSON lines, rotation and durability; `config.rs`: `settings:`.

pub mod config;
mod sink;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DestinationStatus, Runner, backlog, replay};
use crate::config::{DestinationConfig, DestinationKind};
use crate::cursor::{CursorFile, CursorState};
use crate::log::reader::LogReader;
use crate::log::record::{Entry, Kind};
use crate::log::segment::Position;
use crate::log::tail::{READ_FAILED, Tail, Wait};
use crate::telemetry::metrics;
pub use sink::{FileSink, rotated_path};

const BATCH_RECORDS: usize = 2000;
const BATCH_BYTES: usize = 4 << 20;
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

impl Runner {
    /// Runs until `cancel`; finishes the batch in hand first. Follows the log through
    /// `tail` (waiting, reading on a blocking thread, the gauge, the read-error policy).
    pub async fn run(
        self,
        mut tail: Tail,
        mut state: CursorState,
        status: Arc<DestinationStatus>,
        cancel: CancellationToken,
    ) {
        let DestinationKind::File(settings) = self.config.kind.clone() else {
            tracing::error!(destination = %self.config.id, "Not a file destination");
            return;
        };
        let mut work = Some(Work {
            reader: tail.reader(&state),
            sink: FileSink::new(settings),
            backlog: self.backlog.clone(),
        });
        let mut replay = replay::LogReplay::pending(&self.data_dir, &self.config.id, &status, true);
        // A long replay keeps the loop busy: shutdown must not wait for it to finish.
        while !cancel.is_cancelled() {
            let committed = tail.committed_seen();
            tail.gauge(state.next_seq);
            if replay.is_none() {
                replay =
                    replay::LogReplay::pending(&self.data_dir, &self.config.id, &status, false);
            }
            if let Some(r) = replay.take() {
                let Some(w) = work.take() else { break };
                (work, replay) = self.replay_chunk(&mut tail, w, r, &status, &cancel).await;
            }
            if state.position >= committed.end {
                if replay.is_some() {
                    continue;
                }
                if tail
                    .wait_past(state.position, Some(&status.wake), &cancel)
                    .await
                    == Wait::Cancelled
                {
                    break;
                }
                continue;
            }
            // Past a backlog cap, the oldest pending events become dead letters and the cursor
            // moves past them before anything is read.
            if let Some(next) = self
                .backlog
                .enforce_cursor(&self.data_dir, &state, committed.end)
                .await
            {
                state = next;
                status.set(&state);
                if let Some(w) = work.as_mut() {
                    w.reader = tail.reader(&state);
                }
                continue;
            }
            let Some(w) = work.take() else { break };
            let Some(w) = self.step(&mut tail, w, &mut state, &status, &cancel).await else {
                break;
            };
            work = Some(w);
        }
        tracing::info!(destination = %self.config.id, next_seq = state.next_seq, "Destination stopped");
    }

    /// Reads and writes one batch on a blocking thread, then updates the status and gauge;
    /// a failed read or write is retried after a pause. `None` if the thread was lost.
    async fn step(
        &self,
        tail: &mut Tail,
        w: Work,
        state: &mut CursorState,
        status: &DestinationStatus,
        cancel: &CancellationToken,
    ) -> Option<Work> {
        let (config, from) = (self.config.clone(), state.clone());
        let cursor = CursorFile::new(&self.data_dir, &self.config.id);
        let (mut w, result) = tail
            .read(w, move |mut w: Work, end| {
                let r = w.step(&config, &cursor, from, end);
                (w, r)
            })
            .await?;
        let labels = metrics::destination(&self.config.id);
        match result {
            Ok((next, delivered)) => {
                tail.read_ok();
                let stuck = next == *state;
                *state = next;
                if stuck {
                    // Nothing could be read before the committed end: wait, don't spin.
                    tail.pause(ERROR_BACKOFF, cancel).await;
                }
                status.set(state);
                // The gauge follows the status at once, as `inspect` does: whoever sees
                // the backlog drained in one sees it in the other.
                tail.gauge(state.next_seq);
                if status
                    .last_error()
                    .is_some_and(|e| !e.starts_with(READ_FAILED))
                {
                    status.set_error(None);
                }
                self.metrics
                    .delivered
                    .get_or_create(&labels)
                    .inc_by(delivered as u64);
            }
            Err(StepError::Read(error)) => {
                let wait = tail.read_failed(&error);
                w.reader = tail.reader(state);
                tail.pause(wait, cancel).await;
            }
            Err(StepError::Write(error)) => {
                tracing::error!(destination = %self.config.id, %error, "Destination write failed; retrying the batch");
                status.set_error(Some(error.to_string()));
                w.reader = tail.reader(state);
                tail.pause(ERROR_BACKOFF, cancel).await;
            }
        }
        Some(w)
    }

    /// Runs one chunk of a replay from the log on a blocking thread. Returns the work back
    /// (`None` if the thread was lost) and the replay while it is unfinished.
    async fn replay_chunk(
        &self,
        tail: &mut Tail,
        w: Work,
        r: replay::LogReplay,
        status: &Arc<DestinationStatus>,
        cancel: &CancellationToken,
    ) -> (Option<Work>, Option<replay::LogReplay>) {
        let (config, st) = (self.config.clone(), status.clone());
        let reader = LogReader::new(tail.log_dir(), r.state.position);
        let Some((w, r, result)) = tail
            .read(
                (w, r),
                move |(mut w, mut r): (Work, replay::LogReplay), end| {
                    let mut reader = reader;
                    let result = w.replay_step(&config, &mut reader, &mut r, end, &st);
                    (w, r, result)
                },
            )
            .await
        else {
            return (None, None);
        };
        match result {
            Ok(true) => (Some(w), None),
            Ok(false) => (Some(w), Some(r)),
            Err(StepError::Read(error)) => {
                let wait = tail.read_failed(&error);
                tail.pause(wait, cancel).await;
                (Some(w), Some(r))
            }
            Err(StepError::Write(error)) => {
                tracing::error!(destination = %self.config.id, %error, "Replay from the log failed; retrying the chunk");
                status.set_error(Some(format!("replay from the log: {error}")));
                tail.pause(ERROR_BACKOFF, cancel).await;
                (Some(w), Some(r))
            }
        }
    }
}

/// Why a step of the file runner failed: reading the log (the tail's policy) or writing.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Write(std::io::Error),
}

struct Work {
    reader: LogReader,
    sink: FileSink,
    backlog: backlog::Backlog,
}

impl Work {
    /// Reads one batch, writes what matches, then saves the cursor. Blocking.
    fn step(
        &mut self,
        config: &DestinationConfig,
        cursor: &CursorFile,
        state: CursorState,
        end: Position,
    ) -> Result<(CursorState, usize), StepError> {
        let batch = self
            .reader
            .read(end, BATCH_RECORDS, BATCH_BYTES)
            .map_err(StepError::Read)?;
        // Records skipped as unreadable are dead letters before the cursor moves past them.
        self.backlog
            .dead_letter_losses(self.reader.take_lost())
            .map_err(StepError::Read)?;
        let Some(last) = batch.last() else {
            // Nothing readable before `end` (e.g. a reclaimed or damaged segment was skipped).
            let next = CursorState {
                position: self.reader.position(),
                next_seq: state.next_seq,
                done: Vec::new(),
            };
            cursor.save(&next).map_err(StepError::Write)?;
            return Ok((next, 0));
        };
        let next = CursorState {
            position: last.next,
            next_seq: last.record.seq + 1,
            done: Vec::new(),
        };
        let wanted = wanted(config, batch.iter().map(|r| &r.record.entry));
        let delivered = self
            .sink
            .write_batch(wanted.map(|e| e.body.as_slice()))
            .map_err(StepError::Write)?;
        cursor.save(&next).map_err(StepError::Write)?;
        Ok((next, delivered))
    }

    /// One chunk of a replay from the log: writes again what the live path would have
    /// written, then saves the replay's progress. True when the replay is finished. Blocking.
    fn replay_step(
        &mut self,
        config: &DestinationConfig,
        reader: &mut LogReader,
        replay: &mut replay::LogReplay,
        end: Position,
        status: &DestinationStatus,
    ) -> Result<bool, StepError> {
        let batch = reader
            .read(end, BATCH_RECORDS, BATCH_BYTES)
            .map_err(StepError::Read)?;
        let again = batch
            .iter()
            .filter(|r| replay.wants(r))
            .map(|r| &r.record.entry);
        let sent = self
            .sink
            .write_batch(wanted(config, again).map(|e| e.body.as_slice()))
            .map_err(StepError::Write)?;
        let last_seq = batch.last().map(|r| r.record.seq);
        replay
            .advance(last_seq, reader.position(), sent as u64, status)
            .map_err(StepError::Write)
    }
}

/// The events of `entries` this file destination writes.
fn wanted<'a>(
    config: &'a DestinationConfig,
    entries: impl Iterator<Item = &'a Entry> + 'a,
) -> impl Iterator<Item = &'a Entry> + 'a {
    entries
        .filter(|e| e.kind == Kind::Accepted && config.wants(&e.source, &e.environment))
        .filter(|e| {
            let Some(filter) = config.subscribe.as_ref() else {
                return true;
            };
            match serde_json::from_slice(&e.body) {
                Ok(v) => filter.matches(&v),
                // Ingest refuses JSON a reader cannot parse, so only an older log holds
                // such a record. The archive keeps it rather than drop it unseen.
                Err(err) => {
                    tracing::warn!(destination = %config.id, message_id = %e.message_id,
                        "the logged event could not be read ({err}); written without its subscribe filter");
                    true
                }
            }
        })
}
