//! Running a replay from the log (started by `destinations::replay::start`, which saves its
//! state and wakes this worker): a chunk at a time, with its own reader, between live
//! deliveries. The state file is read and written on blocking threads.

use std::sync::atomic::Ordering;

use super::{State, WebhookWorker};
use crate::delivery::plan;
use crate::delivery::replay::{ReplayFile, ReplayState};
use crate::destinations::DestinationStatus;
use crate::log::reader::LogReader;
use crate::log::segment::Position;

/// A replay from the log in progress: its own reader, and where its current chunk ends
/// (how many of the chunk's deliveries are unfinished is the scheduler's to count).
pub(super) struct ReplayRun {
    state: ReplayState,
    reader: Option<LogReader>,
    /// Where the chunk in flight ends (saved once it is finished).
    chunk_end: Position,
    done: bool,
}

impl WebhookWorker {
    /// Picks up a replay saved by `destinations::replay::start` (or before a restart).
    pub(super) async fn load_replay(&self, st: &mut State, status: &DestinationStatus) {
        if st.replay.is_some() {
            return;
        }
        let file = ReplayFile::new(&self.data_dir, &self.dest.id);
        let Ok(loaded) = tokio::task::spawn_blocking(move || file.load()).await else {
            return;
        };
        match loaded {
            Ok(Some(state)) => {
                tracing::info!(destination = %self.dest.id, until_seq = state.until_seq, "Replaying from the log");
                status.replaying.store(true, Ordering::Release);
                status.replayed.store(state.replayed, Ordering::Release);
                let reader = Some(LogReader::new(self.tail.log_dir(), state.position));
                st.sched.replay_started();
                st.replay = Some(ReplayRun {
                    chunk_end: state.position,
                    state,
                    reader,
                    done: false,
                });
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(destination = %self.dest.id, %error, "Could not read the replay state")
            }
        }
    }

    /// Once the previous chunk is finished: save progress, then queue the next chunk's
    /// deliveries (only when no live delivery is waiting).
    pub(super) async fn replay_step(&self, st: &mut State, status: &DestinationStatus) {
        let backing_off = st
            .read_again
            .is_some_and(|at| at > tokio::time::Instant::now());
        if st.replay.is_none() || !st.sched.replay_ready() || backing_off {
            return;
        }
        let Some(run) = st.replay.as_mut() else {
            return;
        };
        let file = ReplayFile::new(&self.data_dir, &self.dest.id);
        run.state.position = run.chunk_end;
        if run.done {
            let removed = tokio::task::spawn_blocking(move || file.remove()).await;
            if let Ok(Err(error)) = removed {
                tracing::error!(destination = %self.dest.id, %error, "Could not remove the finished replay state");
            }
            tracing::info!(destination = %self.dest.id, replayed = run.state.replayed, "Replay from the log finished");
            status.replaying.store(false, Ordering::Release);
            st.replay = None;
            return;
        }
        let Some(mut reader) = run.reader.take() else {
            return;
        };
        let (end, progress) = (self.tail.committed().end, run.state.clone());
        let Ok((reader, saved, result)) = tokio::task::spawn_blocking(move || {
            let saved = file.save(&progress);
            let r = reader.read(end, 200, 4 << 20);
            (reader, saved, r)
        })
        .await
        else {
            return;
        };
        if let Err(error) = saved {
            tracing::error!(destination = %self.dest.id, %error, "Could not save replay progress");
        }
        let records = match result {
            Ok(records) => {
                self.tail.read_ok();
                records
            }
            Err(error) => {
                // The chunk is read again from its start after the tail's backoff.
                let wait = self.tail.read_failed(&error);
                st.read_again = Some(tokio::time::Instant::now() + wait);
                run.reader = Some(LogReader::new(self.tail.log_dir(), run.state.position));
                return;
            }
        };
        run.chunk_end = reader.position();
        run.reader = Some(reader);
        let (until, since) = (run.state.until_seq, run.state.since_ms);
        run.done = records.is_empty() || records.iter().any(|r| r.record.seq + 1 >= until);
        let mut jobs = Vec::new();
        for r in records
            .into_iter()
            .filter(|r| r.record.seq < until && r.record.entry.received_ms >= since)
        {
            jobs.extend(plan::plan(
                &self.dest,
                &self.cfg,
                &self.route,
                r.record.seq,
                &r.record.entry,
            ));
        }
        run.state.replayed += jobs.len() as u64;
        status.replayed.store(run.state.replayed, Ordering::Release);
        for (job, reason) in st.sched.replay_chunk(jobs) {
            self.dead(st, job, reason).await;
        }
    }
}
