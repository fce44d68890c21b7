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

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::http::{HttpClient, SendError};
use super::scheduler::{Job, Limits, Scheduler};
use super::store::{Attempt, DeliveryStore};
use super::transport::{Sent, Transports};
use crate::clock::Clock;
use crate::config::{DestinationConfig, WebhookConfig};
use crate::cursor::CursorState;
use crate::destinations::DestinationStatus;
use crate::destinations::backlog::Backlog;
use crate::log::Committed;
use crate::log::reader::LogReader;
use crate::telemetry::Metrics;

const FLUSH_EVERY: Duration = Duration::from_millis(200);

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

/// An attempt that came back: the job, what its transport answered, and how long it took.
type Done = (Job, Result<Sent, SendError>, Duration);

struct State {
    sched: Scheduler,
    reader: Option<LogReader>,
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
            reader: Some(LogReader::new(&self.log_dir, cursor.position).expecting(cursor.next_seq)),
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
        if let Some(target) = &self.cfg.nats {
            match self.connect_nats(target, &mut st, &status, &cancel).await {
                Some(n) => st.transports.nats = Some(n),
                None => return,
            }
        }
        self.reload_retries(&mut st).await;
        self.load_replay(&mut st, &status).await;
        let mut committed = self.committed.clone();
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        loop {
            self.overflow(&mut st).await;
            self.fill(&mut st, &status).await;
            st.sched.seal_due_batches(self.clock.now_ms());
            self.replay_step(&mut st, &status).await;
            self.dispatch(&mut st);
            let caught_up = st.sched.caught_up(committed.borrow().end);
            let room = st.sched.room() > 0;
            let wake = st.sched.next_wake();
            tokio::select! {
                Some(done) = st.inflight.join_next(), if !st.inflight.is_empty() => {
                    st.sched.returned();
                    if let Ok(done) = done { self.finish(&mut st, done).await }
                }
                _ = committed.changed(), if caught_up && room => {}
                () = self.clock.sleep_until(wake.unwrap_or(i64::MAX)), if wake.is_some() => {}
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
