//! The delivery worker's decisions, with no I/O, no runtime and no clock of its own (time is
//! passed in as `now_ms`), so they are tested without a network: which records are finished
//! (the cursor window), which deliveries wait (live queue, retry set by due time, open
//! batches), how many more records may be read, which attempt starts next, and when the
//! worker must wake. `worker/` is the I/O shell around it: it reads the log, plans, asks
//! here what to start, sends, and reports each outcome back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::batch::Batcher;
use super::plan::Planned;
use super::store::Pending;
use super::window::Window;
use crate::cursor::CursorState;
use crate::log::segment::Position;

/// One attempt to make: a delivery, and whether it holds back the cursor (or, for a
/// replay from the log, the replay's progress).
#[derive(Debug)]
pub struct Job {
    pub p: Pending,
    /// Read by the live cursor: the window waits for it.
    pub from_log: bool,
    /// Part of a replay from the log: the replay's chunk waits for it.
    pub replay: bool,
}

impl Job {
    pub fn live(p: Pending) -> Job {
        Job {
            p,
            from_log: true,
            replay: false,
        }
    }
    pub fn stored(p: Pending) -> Job {
        Job {
            p,
            from_log: false,
            replay: false,
        }
    }
    pub fn replayed(p: Pending) -> Job {
        Job {
            p,
            from_log: false,
            replay: true,
        }
    }
}

/// The destination's delivery limits (`delivery:` in its config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Records held in the window plus deliveries waiting to retry plus attempts in flight.
    pub max_in_flight: usize,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How long an open batch waits for more events.
    pub linger_ms: i64,
}

/// A delivery that could not be built, with the permanent reason: the shell dead-letters it.
pub type Unbuilt = (Job, String);

pub struct Scheduler {
    limits: Limits,
    /// Which records are finished; `read` is where the next read starts.
    pub window: Window,
    /// Records finished before a restart (the saved cursor's `done`): not delivered again.
    pub skip: BTreeSet<u64>,
    queue: VecDeque<Job>,
    /// Deliveries waiting for their next attempt, by (due time, tie-breaker).
    retries: BTreeMap<(i64, u64), Job>,
    in_flight: usize,
    /// Tie-breakers for retries that only live in memory (their store write failed).
    memory_ids: u64,
    batcher: Batcher,
    /// The last attempt started was a due retry (so a queued delivery goes next).
    last_was_retry: bool,
    /// Deliveries of the current replay chunk not finished yet.
    replay_outstanding: usize,
}

impl Scheduler {
    pub fn new(cursor: CursorState, limits: Limits) -> Scheduler {
        Scheduler {
            limits,
            skip: cursor.done.iter().copied().collect(),
            window: Window::new(cursor),
            queue: VecDeque::new(),
            retries: BTreeMap::new(),
            in_flight: 0,
            memory_ids: 0,
            batcher: Batcher::default(),
            last_was_retry: false,
            replay_outstanding: 0,
        }
    }

    /// How many more records may be read: `max_in_flight` bounds the records in the window
    /// and the deliveries waiting in the retry set together, so a failing destination stops
    /// reading and its backlog waits in the log on disk, not in memory.
    pub fn room(&self) -> usize {
        // Retries being attempted right now are in flight only; counting every attempt in
        // flight over-counts live ones (also held by the window) by at most `concurrency`.
        let busy = self.window.held() + self.retries.len() + self.in_flight;
        self.limits.max_in_flight.saturating_sub(busy)
    }

    /// Whether a read may start: room, something left to read, and no live delivery waiting.
    pub fn wants_read(&self, end: Position) -> bool {
        self.room() > 0 && self.window.read.position < end && self.queue.is_empty()
    }

    /// The durable cursor for the current state.
    pub fn cursor(&self) -> CursorState {
        self.window.cursor(&self.skip)
    }

    /// A record read by the live cursor, ending at `next`: its deliveries (from `plan`, not
    /// called for a record finished before a restart) are queued or batched. Returns those
    /// that could not be built.
    pub fn record(
        &mut self,
        seq: u64,
        next: Position,
        plan: impl FnOnce() -> Vec<Planned>,
        now_ms: i64,
    ) -> Vec<Unbuilt> {
        let at = self.window.read.position;
        if self.skip.remove(&seq) {
            self.window.opened(seq, at, next, 0);
            return Vec::new();
        }
        let planned = plan();
        self.window.opened(seq, at, next, planned.len() as u32);
        let mut unbuilt = Vec::new();
        for d in planned {
            match d.delivery {
                Ok(p) if d.batch_size == 0 || p.request.as_http().is_none() => {
                    self.queue.push_back(Job::live(p))
                }
                Ok(p) => {
                    if let Some(batch) = self.batcher.add(p, d.batch_size, now_ms) {
                        self.queue.push_back(Job::live(batch));
                    }
                }
                Err((p, reason)) => unbuilt.push((Job::live(p), reason)),
            }
        }
        unbuilt
    }

    /// Queues the batches that have lingered long enough.
    pub fn seal_due_batches(&mut self, now_ms: i64) {
        for batch in self.batcher.due(now_ms, self.limits.linger_ms) {
            self.queue.push_back(Job::live(batch));
        }
    }

    /// A new replay from the log starts: nothing of it is outstanding.
    pub fn replay_started(&mut self) {
        self.replay_outstanding = 0;
    }

    /// The previous replay chunk is finished and no live delivery waits: the next may start.
    pub fn replay_ready(&self) -> bool {
        self.replay_outstanding == 0 && self.queue.is_empty()
    }

    /// Queues one replay chunk's deliveries. Returns those that could not be built.
    pub fn replay_chunk(&mut self, planned: Vec<Planned>) -> Vec<Unbuilt> {
        self.replay_outstanding += planned.len();
        let mut unbuilt = Vec::new();
        for d in planned {
            match d.delivery {
                Ok(p) => self.queue.push_back(Job::replayed(p)),
                Err((p, reason)) => unbuilt.push((Job::replayed(p), reason)),
            }
        }
        unbuilt
    }

    /// The next attempt to start, while concurrency allows: due retries and new deliveries
    /// take turns, so that during an outage retries coming due cannot starve the records of
    /// the window (which hold the cursor back, and with it the log's reclaim).
    pub fn next_start(&mut self, now_ms: i64) -> Option<Job> {
        if self.in_flight >= self.limits.concurrency {
            return None;
        }
        let due = self
            .retries
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now_ms);
        let take_retry = due && (!self.last_was_retry || self.queue.is_empty());
        self.last_was_retry = take_retry;
        let job = if take_retry {
            self.retries.pop_first().map(|(_, j)| j)
        } else {
            self.queue.pop_front()
        }?;
        self.in_flight += 1;
        Some(job)
    }

    /// An attempt started by [`Scheduler::next_start`] came back (with an answer or not).
    pub fn returned(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// When the worker must wake even if nothing else happens: the earliest retry coming
    /// due (only while another attempt may start), or an open batch's linger deadline.
    pub fn next_wake(&self) -> Option<i64> {
        let retry = self
            .retries
            .keys()
            .next()
            .map(|(at, _)| *at)
            .filter(|_| self.in_flight < self.limits.concurrency);
        let batch = self.batcher.next_deadline(self.limits.linger_ms);
        match (retry, batch) {
            (Some(r), Some(b)) => Some(r.min(b)),
            (r, b) => r.or(b),
        }
    }

    /// One delivery is finished (delivered, durably stored for retry, or dead-lettered).
    pub fn complete(&mut self, job: &Job) {
        if job.replay {
            self.replay_outstanding = self.replay_outstanding.saturating_sub(1);
        }
        if !job.from_log {
            return;
        }
        if job.p.members.is_empty() {
            self.window.complete(job.p.seq);
        } else {
            job.p
                .members
                .iter()
                .for_each(|m| self.window.complete(m.seq));
        }
    }

    /// Keeps `job` for another attempt at `at_ms`.
    pub fn retry_at(&mut self, job: Job, at_ms: i64) {
        let id = if job.p.id != 0 {
            job.p.id
        } else {
            self.memory_ids += 1;
            u64::MAX - self.memory_ids
        };
        self.retries.insert((at_ms, id), job);
    }

    /// Adds the stored retries not known here yet (after a restart, or a dead-letter replay).
    pub fn reload(&mut self, stored: Vec<Pending>) {
        let known: BTreeSet<u64> = self.retries.values().map(|j| j.p.id).collect();
        for p in stored.into_iter().filter(|p| !known.contains(&p.id)) {
            self.retries.insert((p.next_at_ms, p.id), Job::stored(p));
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
