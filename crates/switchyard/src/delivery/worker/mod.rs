//! One task per webhook, segment or nats destination: read the log through the
//! destination's cursor, turn each event into one delivery per matching mapping, send with
//! bounded concurrency, and classify every answer. Failures leave the hot path durably: into
//! the retry set (sent again with backoff, woken by the clock, never polled) or the
//! dead-letter queue. The cursor moves past an event once all its deliveries are finished in
//! one of those ways.
//!
//! This is the I/O shell around `delivery/scheduler.rs`, which makes every decision:
//! `read.rs` reads the log and plans, `send.rs` starts what the scheduler says over the
//! transports, `finish.rs` records each outcome (store, metrics, delivery log), `replay.rs`
//! runs a replay from the log, `flush.rs` saves the delivery log and the cursor.

mod finish;
mod flush;
mod read;
mod replay;
mod send;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::http::{HttpClient, SendError};
use super::scheduler::{Job, Limits, Scheduler};
use super::store::{Attempt, DeliveryStore};
use super::transport::{Sent, Transports};
use crate::clock::Clock;
use crate::config::{DestinationConfig, Route, WebhookConfig};
use crate::cursor::CursorState;
use crate::destinations::DestinationStatus;
use crate::destinations::backlog::Backlog;
use crate::log::reader::LogReader;
use crate::log::tail::Tail;
use crate::telemetry::Metrics;

const FLUSH_EVERY: Duration = Duration::from_millis(200);

pub struct WebhookWorker {
    pub dest: DestinationConfig,
    pub cfg: Arc<WebhookConfig>,
    /// How this destination sends (webhook, segment or nats).
    pub route: Route,
    pub data_dir: PathBuf,
    /// The way through the log (`log/tail.rs`): the gauge and the read-error policy.
    pub tail: Tail,
    pub store: Arc<DeliveryStore>,
    pub client: HttpClient,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The destination's backlog caps (`destinations/backlog.rs`), checked before each read.
    pub backlog: Backlog,
}

/// An attempt that came back: the job, what its transport answered, and how long it took.
type Done = (Job, Result<Sent, SendError>, Duration);

struct State {
    sched: Scheduler,
    reader: Option<LogReader>,
    /// After a failed read of the log: when to read again (the tail's backoff).
    read_again: Option<tokio::time::Instant>,
    inflight: JoinSet<Done>,
    attempts: Vec<Attempt>,
    saved: CursorState,
    /// The delivery-log and cursor write in progress.
    flushing: Option<tokio::task::JoinHandle<Result<CursorState, String>>>,
    replay: Option<replay::ReplayRun>,
    /// The HTTP client, and the NATS connection of a `nats` destination.
    transports: Transports,
}

impl WebhookWorker {
    pub async fn run(
        self,
        cursor: CursorState,
        status: Arc<DestinationStatus>,
        cancel: CancellationToken,
    ) {
        let d = &self.cfg.delivery;
        let limits = Limits {
            max_in_flight: d.max_in_flight,
            concurrency: d.concurrency,
            linger_ms: d.batch_linger.as_millis() as i64,
        };
        let mut st = State {
            sched: Scheduler::new(cursor.clone(), limits),
            reader: Some(self.tail.reader(&cursor)),
            read_again: None,
            inflight: JoinSet::new(),
            attempts: Vec::new(),
            saved: cursor,
            flushing: None,
            replay: None,
            transports: Transports {
                http: self.client.clone(),
                nats: None,
                timeout: d.timeout,
            },
        };
        if let Route::Nats(target) = &self.route {
            match self.connect_nats(target, &mut st, &status, &cancel).await {
                Some(n) => st.transports.nats = Some(n),
                None => return,
            }
        }
        self.reload_retries(&mut st).await;
        self.load_replay(&mut st, &status).await;
        let mut committed = self.tail.watch();
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        loop {
            self.overflow(&mut st).await;
            self.fill(&mut st).await;
            st.sched.seal_due_batches(self.clock.now_ms());
            self.replay_step(&mut st, &status).await;
            self.dispatch(&mut st);
            // More is committed than read and there is room (records landed during the read,
            // or the read stopped at its cap): read again at once, not at the next wake-up.
            let end = committed.borrow_and_update().end;
            let read_now = st.sched.wants_read(end) && st.read_again.is_none();
            let room = st.sched.room() > 0;
            let wake = st.sched.next_wake();
            tokio::select! {
                () = std::future::ready(()), if read_now => {}
                Some(done) = st.inflight.join_next(), if !st.inflight.is_empty() => {
                    st.sched.returned();
                    if let Ok(done) = done { self.finish(&mut st, done).await }
                }
                _ = committed.changed(), if room && !read_now => {}
                () = self.clock.sleep_until(wake.unwrap_or(i64::MAX)), if wake.is_some() => {}
                () = read_again(st.read_again), if st.read_again.is_some() => {}
                () = status.wake.notified() => {
                    self.reload_retries(&mut st).await;
                    self.load_replay(&mut st, &status).await;
                }
                _ = flush.tick() => self.flush(&mut st, &status).await,
                () = cancel.cancelled() => break,
            }
        }
        self.drain(&mut st, &status).await;
    }
}

/// Resolves at `at` (never, without one).
async fn read_again(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
