//! One task per webhook destination: read the log through the destination's cursor, turn
//! each event into one delivery per matching mapping, send with bounded concurrency, and
//! classify every answer. Failures leave the hot path durably: into the retry set (sent
//! again with backoff, woken by the clock, never polled) or the dead-letter queue. The
//! cursor moves past an event once all its deliveries are finished in one of those ways.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backoff::{next_delay, parse_retry_after};
use super::batch::Batcher;
use super::http::{HttpClient, SendError};
use super::nats::NatsPublisher;
use super::plan;
use super::replay::{ReplayFile, ReplayState};
use super::store::{Attempt, DeadLetter, DeliveryStore, Pending, Request};
use super::transport::{self, Sent, Transports};
use super::webhook::{self, Outcome};
use super::window::Window;
use crate::clock::Clock;
use crate::config::{DestinationConfig, WebhookConfig};
use crate::cursor::{CursorFile, CursorState};
use crate::destinations::DestinationStatus;
use crate::destinations::backlog::Backlog;
use crate::log::Committed;
use crate::log::reader::{LogReader, Read1};
use crate::log::segment::Position;
use crate::telemetry::{Metrics, metrics};

const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Attempts buffered for the delivery log while a write is slow; the oldest beyond this
/// are dropped from the log (never from delivery), with a warning.
const MAX_BUFFERED_ATTEMPTS: usize = 20_000;

pub struct WebhookWorker {
    pub dest: DestinationConfig,
    pub cfg: Arc<WebhookConfig>,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
    pub committed: watch::Receiver<Committed>,
    pub store: Arc<DeliveryStore>,
    pub client: HttpClient,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The destination's backlog caps (`destinations/backlog.rs`), checked before each read.
    pub backlog: Backlog,
}

/// One attempt to make: a delivery, and whether it holds back the cursor (or, for a
/// replay from the log, the replay's progress).
struct Job {
    p: Pending,
    from_log: bool,
    replay: bool,
}

impl Job {
    fn live(p: Pending) -> Job {
        Job {
            p,
            from_log: true,
            replay: false,
        }
    }
    fn stored(p: Pending) -> Job {
        Job {
            p,
            from_log: false,
            replay: false,
        }
    }
}

type Done = (Job, Result<Sent, SendError>, Duration);

struct State {
    window: Window,
    skip: BTreeSet<u64>,
    reader: Option<LogReader>,
    queue: VecDeque<Job>,
    retries: BTreeMap<(i64, u64), Job>,
    inflight: JoinSet<Done>,
    attempts: Vec<Attempt>,
    saved: CursorState,
    /// Keys for retries that only live in memory (their store write failed).
    memory_ids: u64,
    batcher: Batcher,
    /// The delivery-log and cursor write in progress.
    flushing: Option<tokio::task::JoinHandle<Result<CursorState, String>>>,
    replay: Option<ReplayRun>,
    /// The NATS connection of a `nats` destination.
    nats: Option<NatsPublisher>,
    /// The last attempt started was a due retry (so a queued delivery goes next).
    last_was_retry: bool,
}

/// A replay from the log in progress: its own reader, and how many of the current chunk's
/// deliveries are unfinished.
struct ReplayRun {
    state: ReplayState,
    reader: Option<LogReader>,
    outstanding: usize,
    /// Where the chunk in flight ends (saved once it is finished).
    chunk_end: Position,
    done: bool,
}

/// How a failed log read shows in the destination's `last_error`.
const READ_FAILED: &str = "reading the log failed";

/// The retry map's tie-breaker: the store id, or a fresh in-memory one.
fn retry_key(st: &mut State, job: &Job) -> u64 {
    if job.p.id != 0 {
        return job.p.id;
    }
    st.memory_ids += 1;
    u64::MAX - st.memory_ids
}

impl WebhookWorker {
    pub async fn run(
        self,
        cursor: CursorState,
        status: Arc<DestinationStatus>,
        cancel: CancellationToken,
    ) {
        let mut st = State {
            window: Window::new(cursor.clone()),
            skip: cursor.done.iter().copied().collect(),
            reader: Some(LogReader::new(&self.log_dir, cursor.position).expecting(cursor.next_seq)),
            queue: VecDeque::new(),
            retries: BTreeMap::new(),
            inflight: JoinSet::new(),
            attempts: Vec::new(),
            saved: cursor,
            memory_ids: 0,
            batcher: Batcher::default(),
            flushing: None,
            replay: None,
            nats: None,
            last_was_retry: false,
        };
        if let Some(target) = &self.cfg.nats {
            match self.connect_nats(target, &mut st, &status, &cancel).await {
                Some(n) => st.nats = Some(n),
                None => return,
            }
        }
        self.reload_retries(&mut st).await;
        self.load_replay(&mut st, &status);
        let mut committed = self.committed.clone();
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let linger = self.cfg.delivery.batch_linger.as_millis() as i64;
        loop {
            self.overflow(&mut st).await;
            self.fill(&mut st, &status).await;
            for batch in st.batcher.due(self.clock.now_ms(), linger) {
                st.queue.push_back(Job::live(batch));
            }
            self.replay_step(&mut st, &status).await;
            self.dispatch(&mut st);
            let batch_due = st.batcher.next_deadline(linger);
            let caught_up = st.window.read.position >= committed.borrow().end;
            let room = self.room(&st) > 0;
            let next_retry = st.retries.keys().next().map(|(at, _)| *at);
            let can_send = st.inflight.len() < self.cfg.delivery.concurrency;
            tokio::select! {
                Some(done) = st.inflight.join_next(), if !st.inflight.is_empty() => {
                    if let Ok(done) = done { self.finish(&mut st, done).await }
                }
                _ = committed.changed(), if caught_up && room => {}
                () = self.clock.sleep_until(next_retry.unwrap_or(i64::MAX)), if next_retry.is_some() && can_send => {}
                () = self.clock.sleep_until(batch_due.unwrap_or(i64::MAX)), if batch_due.is_some() => {}
                () = status.wake.notified() => {
                    self.reload_retries(&mut st).await;
                    self.load_replay(&mut st, &status);
                }
                _ = flush.tick() => self.flush(&mut st, &status).await,
                () = cancel.cancelled() => break,
            }
        }
        self.drain(&mut st, &status).await;
    }

    /// How many more records may be read: `max_in_flight` bounds the records in the window
    /// and the deliveries waiting in the retry set together, so a failing destination stops
    /// reading and its backlog waits in the log on disk, not in memory.
    fn room(&self, st: &State) -> usize {
        // Retries being attempted right now are in `inflight` only; counting every attempt in
        // flight over-counts live ones (also held by the window) by at most `concurrency`.
        let busy = st.window.held() + st.retries.len() + st.inflight.len();
        self.cfg.delivery.max_in_flight.saturating_sub(busy)
    }

    /// Past a backlog cap, passes over the oldest records not read yet: they become
    /// `backlog_overflow` dead letters and reading continues after them (the window's records,
    /// already read, finish as usual).
    async fn overflow(&self, st: &mut State) {
        if !self.backlog.due() {
            return;
        }
        let end = self.committed.borrow().end;
        let pinned = st.window.cursor(&st.skip).position;
        let read = st.window.read.clone();
        if let Some(next) = self.backlog.enforce(pinned, read, end).await {
            st.reader = Some(LogReader::new(&self.log_dir, next.position).expecting(next.next_seq));
            st.window.pass_over(next);
        }
    }

    /// Reads more records while the window has room, turning them into jobs. A failed read
    /// is retried at the next turn of the loop, shown in `inspect` and counted meanwhile.
    async fn fill(&self, st: &mut State, status: &DestinationStatus) {
        let room = self.room(st);
        let end = self.committed.borrow().end;
        if room == 0 || st.window.read.position >= end || !st.queue.is_empty() {
            return;
        }
        let Some(mut reader) = st.reader.take() else {
            return;
        };
        let backlog = self.backlog.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let r = reader
                .read(end, room.min(1000), 8 << 20)
                .and_then(|records| {
                    // Records skipped as unreadable are dead letters before anything after them
                    // is handled (and so before the cursor can pass them).
                    backlog.dead_letter_losses(reader.take_lost())?;
                    Ok(records)
                });
            (reader, r)
        })
        .await;
        let Ok((reader, result)) = joined else { return };
        // The reader may have crossed into the next segment without returning a record; the
        // window must know, or it would wait for a change that already happened.
        let crossed = reader.position();
        st.reader = Some(reader);
        match result {
            Ok(records) => {
                if status
                    .last_error()
                    .is_some_and(|e| e.starts_with(READ_FAILED))
                {
                    status.set_error(None);
                }
                for r in records {
                    self.plan(st, r).await;
                }
                st.window.read.position = st.window.read.position.max(crossed);
            }
            Err(error) => {
                tracing::error!(destination = %self.dest.id, %error, "Reading the log failed");
                status.set_error(Some(format!("{READ_FAILED}; retrying: {error}")));
                let labels = crate::telemetry::metrics::destination(&self.dest.id);
                self.metrics.log_read_errors.get_or_create(&labels).inc();
                // Read again from where the window stands: the reader may have moved past
                // records it has not handed over.
                let read = &st.window.read;
                st.reader =
                    Some(LogReader::new(&self.log_dir, read.position).expecting(read.next_seq));
            }
        }
    }

    /// The deliveries of one record: one per enabled mapping whose condition matches.
    async fn plan(&self, st: &mut State, r: Read1) {
        let at = st.window.read.position;
        let seq = r.record.seq;
        if st.skip.remove(&seq) {
            st.window.opened(seq, at, r.next, 0);
            return;
        }
        let planned = plan::plan(&self.dest, &self.cfg, seq, &r.record.entry);
        st.window.opened(seq, at, r.next, planned.len() as u32);
        for d in planned {
            match d.delivery {
                Ok(p) if d.batch_size == 0 || p.request.as_http().is_none() => {
                    st.queue.push_back(Job::live(p))
                }
                Ok(p) => {
                    if let Some(batch) = st.batcher.add(p, d.batch_size, self.clock.now_ms()) {
                        st.queue.push_back(Job::live(batch));
                    }
                }
                Err((p, reason)) => self.dead(st, Job::live(p), reason).await,
            }
        }
    }

    /// Connects to NATS and checks that a JetStream stream captures the subject (unless
    /// `core`), retrying every few seconds; the backlog waits on disk meanwhile.
    async fn connect_nats(
        &self,
        t: &crate::config::NatsTarget,
        st: &mut State,
        status: &DestinationStatus,
        cancel: &CancellationToken,
    ) -> Option<NatsPublisher> {
        let sample = super::nats::render_subject(&t.subject, &serde_json::json!({"type": "track"}));
        loop {
            let attempt = async {
                let n = NatsPublisher::connect(&t.url, t.core).await?;
                if !t.core {
                    n.stream_for(&sample).await?;
                }
                Ok::<_, String>(n)
            };
            match attempt.await {
                Ok(n) => {
                    status.set_error(None);
                    return Some(n);
                }
                Err(error) => {
                    tracing::error!(destination = %self.dest.id, %error, "NATS destination is not ready; retrying in 5s");
                    status.set_error(Some(error));
                }
            }
            // The backlog caps hold while NATS is away.
            for _ in 0..5 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => {
                        self.finish_flush(st, status).await;
                        return None;
                    }
                }
                self.overflow(st).await;
                self.flush(st, status).await;
            }
        }
    }

    fn load_replay(&self, st: &mut State, status: &DestinationStatus) {
        if st.replay.is_some() {
            return;
        }
        match ReplayFile::new(&self.data_dir, &self.dest.id).load() {
            Ok(Some(state)) => {
                tracing::info!(destination = %self.dest.id, until_seq = state.until_seq, "Replaying from the log");
                status.replaying.store(true, Ordering::Release);
                status.replayed.store(state.replayed, Ordering::Release);
                let reader = Some(LogReader::new(&self.log_dir, state.position));
                st.replay = Some(ReplayRun {
                    chunk_end: state.position,
                    state,
                    reader,
                    outstanding: 0,
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
    async fn replay_step(&self, st: &mut State, status: &DestinationStatus) {
        let Some(run) = st.replay.as_mut() else {
            return;
        };
        if run.outstanding > 0 || !st.queue.is_empty() {
            return;
        }
        let file = ReplayFile::new(&self.data_dir, &self.dest.id);
        run.state.position = run.chunk_end;
        if run.done {
            if let Err(error) = file.remove() {
                tracing::error!(destination = %self.dest.id, %error, "Could not remove the finished replay state");
            }
            tracing::info!(destination = %self.dest.id, replayed = run.state.replayed, "Replay from the log finished");
            status.replaying.store(false, Ordering::Release);
            st.replay = None;
            return;
        }
        if let Err(error) = file.save(&run.state) {
            tracing::error!(destination = %self.dest.id, %error, "Could not save replay progress");
        }
        let Some(mut reader) = run.reader.take() else {
            return;
        };
        let end = self.committed.borrow().end;
        let Ok((reader, result)) = tokio::task::spawn_blocking(move || {
            let r = reader.read(end, 200, 4 << 20);
            (reader, r)
        })
        .await
        else {
            return;
        };
        let records = result.unwrap_or_default();
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
                r.record.seq,
                &r.record.entry,
            ));
        }
        run.outstanding += jobs.len();
        run.state.replayed += jobs.len() as u64;
        status.replayed.store(run.state.replayed, Ordering::Release);
        for d in jobs {
            match d.delivery {
                Ok(p) => st.queue.push_back(Job {
                    p,
                    from_log: false,
                    replay: true,
                }),
                Err((p, reason)) => {
                    self.dead(
                        st,
                        Job {
                            p,
                            from_log: false,
                            replay: true,
                        },
                        reason,
                    )
                    .await
                }
            }
        }
    }

    /// Starts attempts while concurrency allows: due retries and new deliveries take turns,
    /// so that during an outage retries coming due cannot starve the records of the window
    /// (which hold the cursor back, and with it the log's reclaim).
    fn dispatch(&self, st: &mut State) {
        let now = self.clock.now_ms();
        while st.inflight.len() < self.cfg.delivery.concurrency {
            let due = st
                .retries
                .first_key_value()
                .is_some_and(|((at, _), _)| *at <= now);
            let take_retry = due && (!st.last_was_retry || st.queue.is_empty());
            st.last_was_retry = take_retry;
            let job = if take_retry {
                st.retries.pop_first().map(|(_, j)| j)
            } else {
                st.queue.pop_front()
            };
            let Some(job) = job else { break };
            // An HTTP attempt is signed and (for segment) wrapped now; a publish sends the
            // event as planned.
            let (headers, body) = match &job.p.request {
                Request::Http(h) => (
                    webhook::attempt_headers(&job.p, h, &self.cfg.signing, &self.dest.id, now),
                    webhook::attempt_body(&job.p, self.cfg.forward.is_some(), self.clock.now_ms()),
                ),
                Request::Nats(_) => (Vec::new(), bytes::Bytes::new()),
            };
            let transports = Transports {
                http: self.client.clone(),
                nats: st.nats.clone(),
                timeout: self.cfg.delivery.timeout,
            };
            st.inflight.spawn(async move {
                let started = Instant::now();
                let r = transports.send(&job.p.request, &headers, body).await;
                (job, r, started.elapsed())
            });
        }
    }

    async fn finish(&self, st: &mut State, (mut job, result, took): Done) {
        let outcome = transport::classify(&result);
        let labels = metrics::destination(&self.dest.id);
        let now = self.clock.now_ms();
        let (status, error, response) = match &result {
            Ok(sent) => (sent.status(), None, sent.response_text()),
            Err(e) => (None, Some(e.to_string()), String::new()),
        };
        job.p.attempts += 1;
        job.p.last_status = status;
        job.p.last_error = error.clone();
        let label = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } if self.expired(&job.p, now) => "dead_letter",
            Outcome::Retry { .. } => "retry",
            Outcome::Permanent(_) => "dead_letter",
        };
        // A batch is logged once per member, so each event's lineage shows it.
        let ids: Vec<String> = if job.p.members.is_empty() {
            vec![job.p.message_id.clone()]
        } else {
            job.p.members.iter().map(|m| m.message_id.clone()).collect()
        };
        for message_id in ids {
            st.attempts.push(Attempt {
                id: 0,
                at_ms: now,
                source: job.p.source.clone(),
                message_id,
                mapping: job.p.mapping.clone(),
                url: job.p.request.target().to_owned(),
                status,
                latency_ms: took.as_millis() as u64,
                error: error.clone(),
                response: response.clone(),
                outcome: label.to_owned(),
            });
        }
        if st.attempts.len() > MAX_BUFFERED_ATTEMPTS {
            // Drop down to half, so a long stall warns now and then, not per attempt.
            let drop = st.attempts.len() - MAX_BUFFERED_ATTEMPTS / 2;
            st.attempts.drain(..drop);
            tracing::warn!(destination = %self.dest.id, dropped = drop, "Delivery log write is behind; dropped the oldest log entries (deliveries are unaffected)");
        }
        match outcome {
            Outcome::Delivered => {
                self.metrics.delivered.get_or_create(&labels).inc();
                if job.p.id != 0 {
                    let (store, dest, id) = (self.store.clone(), self.dest.id.clone(), job.p.id);
                    if let Ok(Err(error)) =
                        tokio::task::spawn_blocking(move || store.remove_retry(&dest, id)).await
                    {
                        tracing::error!(destination = %self.dest.id, %error, "Could not remove a delivered retry; it may be sent again");
                    }
                }
                self.complete(st, &job);
            }
            Outcome::Retry { reason, .. } if self.expired(&job.p, now) => {
                let max_age = self.cfg.retry.max_age;
                let age = if max_age >= Duration::from_secs(3600) {
                    format!("{:.2}h", max_age.as_secs_f64() / 3600.0)
                } else {
                    crate::destinations::backlog::human_duration(max_age)
                };
                self.dead(
                    st,
                    job,
                    format!("retry.max_age ({age}) exceeded; last attempt: {reason}"),
                )
                .await;
            }
            Outcome::Retry { retry_after, .. } => self.retry(st, job, retry_after, now).await,
            Outcome::Permanent(reason) => self.dead(st, job, reason).await,
        }
    }

    fn expired(&self, p: &Pending, now: i64) -> bool {
        now.saturating_sub(p.received_ms) >= self.cfg.retry.max_age.as_millis() as i64
    }

    async fn retry(&self, st: &mut State, mut job: Job, retry_after: Option<String>, now: i64) {
        let ra = retry_after.and_then(|v| parse_retry_after(&v, now));
        let delay = next_delay(
            job.p.attempts,
            self.cfg.retry.initial_backoff,
            self.cfg.retry.max_backoff,
            ra,
            fastrand::f64(),
        );
        job.p.next_at_ms = now + delay.as_millis() as i64;
        let (store, dest, mut p) = (self.store.clone(), self.dest.id.clone(), job.p.clone());
        match tokio::task::spawn_blocking(move || store.put_retry(&dest, &mut p).map(|()| p)).await
        {
            Ok(Ok(p)) => {
                job.p = p;
                self.metrics
                    .retries
                    .get_or_create(&metrics::destination(&self.dest.id))
                    .inc();
                self.complete(st, &job);
                job.from_log = false;
            }
            _ => {
                tracing::error!(destination = %self.dest.id, "Could not store a retry durably; keeping it in memory")
            }
        }
        let key = (job.p.next_at_ms, retry_key(st, &job));
        st.retries.insert(key, job);
    }

    async fn dead(&self, st: &mut State, job: Job, reason: String) {
        tracing::warn!(destination = %self.dest.id, message_id = %job.p.message_id, mapping = %job.p.mapping, %reason, "Delivery dead-lettered");
        let dl = DeadLetter {
            delivery: job.p.clone(),
            reason,
            dead_at_ms: self.clock.now_ms(),
            detail: None,
        };
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        match tokio::task::spawn_blocking(move || store.dead_letter(&dest, dl)).await {
            Ok(Ok(_)) => {
                self.metrics
                    .dead_letters
                    .get_or_create(&metrics::destination(&self.dest.id))
                    .inc();
                self.complete(st, &job);
            }
            _ => {
                tracing::error!(destination = %self.dest.id, "Could not store a dead letter durably; retrying it later");
                let key = (self.clock.now_ms() + 1000, retry_key(st, &job));
                st.retries.insert(key, job);
            }
        }
    }

    fn complete(&self, st: &mut State, job: &Job) {
        if job.replay
            && let Some(run) = st.replay.as_mut()
        {
            run.outstanding = run.outstanding.saturating_sub(1);
        }
        if !job.from_log {
            return;
        }
        if job.p.members.is_empty() {
            st.window.complete(job.p.seq);
        } else {
            job.p.members.iter().for_each(|m| st.window.complete(m.seq));
        }
    }

    async fn reload_retries(&self, st: &mut State) {
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        let Ok(Ok(list)) = tokio::task::spawn_blocking(move || store.retries(&dest)).await else {
            tracing::error!(destination = %self.dest.id, "Could not load the retry set");
            return;
        };
        let known: BTreeSet<u64> = st.retries.values().map(|j| j.p.id).collect();
        for p in list.into_iter().filter(|p| !known.contains(&p.id)) {
            st.retries.insert((p.next_at_ms, p.id), Job::stored(p));
        }
    }

    /// Writes the delivery log and the cursor on a blocking thread, without holding up
    /// deliveries; at most one such write runs at a time.
    async fn flush(&self, st: &mut State, status: &DestinationStatus) {
        if let Some(h) = &st.flushing {
            if !h.is_finished() {
                return;
            }
            self.finish_flush(st, status).await;
        }
        let committed = self.committed.borrow().next_seq;
        let cursor = st.window.cursor(&st.skip);
        let backlog = committed.saturating_sub(cursor.next_seq) as i64;
        self.metrics
            .backlog
            .get_or_create(&metrics::destination(&self.dest.id))
            .set(backlog);
        let mut attempts = std::mem::take(&mut st.attempts);
        let changed = cursor != st.saved;
        if attempts.is_empty() && !changed {
            return;
        }
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        let file = CursorFile::new(&self.data_dir, &self.dest.id);
        st.flushing = Some(tokio::task::spawn_blocking(move || {
            if !attempts.is_empty() {
                store
                    .log_attempts(&dest, &mut attempts)
                    .map_err(|e| e.to_string())?;
            }
            if changed {
                file.save(&cursor).map_err(|e| e.to_string())?;
            }
            Ok(cursor)
        }));
    }

    /// Waits for the running write, if any, and records what it saved.
    async fn finish_flush(&self, st: &mut State, status: &DestinationStatus) {
        let Some(h) = st.flushing.take() else { return };
        match h.await {
            Ok(Ok(cursor)) => {
                status.set(&cursor);
                st.saved = cursor;
            }
            Ok(Err(error)) => {
                tracing::error!(destination = %self.dest.id, %error, "Could not save delivery progress")
            }
            Err(error) => {
                tracing::error!(destination = %self.dest.id, %error, "Delivery progress task failed")
            }
        }
    }

    /// On shutdown: let requests in flight finish (each is bounded by the delivery timeout),
    /// then save progress so that nothing acknowledged is sent again.
    async fn drain(&self, st: &mut State, status: &DestinationStatus) {
        let deadline =
            tokio::time::Instant::now() + self.cfg.delivery.timeout + Duration::from_secs(1);
        while let Ok(Some(Ok(done))) =
            tokio::time::timeout_at(deadline, st.inflight.join_next()).await
        {
            self.finish(st, done).await;
        }
        st.inflight.abort_all();
        self.finish_flush(st, status).await;
        self.flush(st, status).await;
        self.finish_flush(st, status).await;
        tracing::info!(destination = %self.dest.id, next_seq = st.saved.next_seq, "Destination stopped");
    }
}
