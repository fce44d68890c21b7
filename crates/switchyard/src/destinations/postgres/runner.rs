//! The `postgres` destination's task: micro-batches from its cursor (by `batch_rows` or
//! `batch_interval`, whichever comes first), one transaction per schema per batch, and the
//! cursor saved only after the commit. Every record it reads is loaded or written to
//! `_switchyard_discards` with a reason (`read.rs`, `load.rs`, `isolate.rs`). When Postgres is
//! down — or fails for any reason that is not the rows' own — it retries the same batch with
//! doubling backoff; the backlog waits in the log like any destination's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::connect::{ConnectError, Target};
use super::isolate::describe;
use super::load::load;
use super::read::{Batch, SchemaBatch, read_batch};
use super::schema::SchemaCache;
use crate::config::{DestinationConfig, PostgresSettings};
use crate::cursor::{CursorFile, CursorState};
use crate::destinations::DestinationStatus;
use crate::destinations::backlog::Backlog;
use crate::destinations::replay::LogReplay;
use crate::log::segment::Position;
use crate::log::tail::Tail;
use crate::telemetry::{Metrics, metrics};

/// A failed load is retried on the same schedule as a failed read of the log.
use crate::log::tail::{BACKOFF_MAX as MAX_BACKOFF, BACKOFF_MIN as MIN_BACKOFF};

/// Why a batch did not load (the runner retries it).
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

pub struct WarehouseWorker {
    pub dest: DestinationConfig,
    pub settings: PostgresSettings,
    pub data_dir: PathBuf,
    /// The way through the log (`log/tail.rs`): waits, gauge, read-error policy.
    pub tail: Tail,
    pub metrics: Arc<Metrics>,
    /// The destination's backlog caps (`destinations/backlog.rs`), checked before each read.
    pub backlog: Backlog,
}

impl WarehouseWorker {
    pub async fn run(
        mut self,
        mut state: CursorState,
        status: Arc<DestinationStatus>,
        cancel: CancellationToken,
    ) {
        let mut client: Option<Client> = None;
        let cache = SchemaCache::default();
        let mut backoff = MIN_BACKOFF;
        let mut prefetched: Option<JoinHandle<std::io::Result<Batch>>> = None;
        let mut replay = LogReplay::pending(&self.data_dir, &self.dest.id, &status, true);
        loop {
            // A replay skips the wait for a batch, where cancellation is seen: check here too.
            if cancel.is_cancelled() {
                break;
            }
            if replay.is_none() {
                replay = LogReplay::pending(&self.data_dir, &self.dest.id, &status, false);
            }
            if let Some(r) = replay.as_mut() {
                match self.replay_step(r, &mut client, &cache, &status).await {
                    Ok(done) => {
                        if done {
                            replay = None;
                        }
                    }
                    Err(msg) => {
                        let msg =
                            format!("replay from the log failed; retrying in {backoff:?}: {msg}");
                        tracing::warn!(destination = %self.dest.id, "{msg}");
                        status.set_error(Some(msg));
                        if !self.pause(backoff, &mut state, &status, &cancel).await {
                            break;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            // Past a backlog cap, the oldest pending events become dead letters and the cursor
            // moves past them before anything is read.
            let end = self.tail.committed().end;
            if let Some(next) = self
                .backlog
                .enforce_cursor(&self.data_dir, &state, end)
                .await
            {
                state = next;
                status.set(&state);
                prefetched = None;
            }
            let read = match prefetched.take() {
                Some(h) => h.await,
                None => {
                    if replay.is_none() && !self.wait_for_batch(&state, &status, &cancel).await {
                        break;
                    }
                    let end = self.tail.committed().end;
                    self.spawn_read(&cache, state.clone(), end).await
                }
            };
            // A failed read is retried with backoff (the tail's policy), never a silent stop.
            let batch = match read
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(b) => {
                    self.tail.read_ok();
                    b
                }
                Err(e) => {
                    let wait = self.tail.read_failed(&e);
                    if !self.pause(wait, &mut state, &status, &cancel).await {
                        break;
                    }
                    continue;
                }
            };
            // While a backlog of full batches waits, read the next one as this one loads.
            let committed = self.tail.committed();
            let waiting = committed.next_seq.saturating_sub(batch.next.next_seq) as usize;
            if batch.next.position < committed.end && waiting >= self.settings.batch_rows {
                prefetched = Some(self.spawn_read(&cache, batch.next.clone(), committed.end));
            }
            let t = Instant::now();
            let loaded = self.load(&mut client, &cache, batch.schemas).await;
            tracing::debug!(
                took_ms = t.elapsed().as_millis() as u64,
                events = batch.events,
                "warehouse batch loaded"
            );
            match loaded {
                Ok(discards) => {
                    if !self
                        .batch_done(&batch.next, batch.events, discards, &status)
                        .await
                    {
                        break;
                    }
                    state = batch.next;
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    prefetched = None;
                    let msg = format!(
                        "loading into Postgres failed; retrying the batch in {backoff:?}: {e}"
                    );
                    tracing::warn!(destination = %self.dest.id, "{msg}");
                    status.set_error(Some(msg));
                    if client.as_ref().is_some_and(Client::is_closed) {
                        client = None;
                    }
                    // A table or column may have changed behind our back: re-read them.
                    cache.forget_all();
                    if !self.pause(backoff, &mut state, &status, &cancel).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!(destination = %self.dest.id, next_seq = state.next_seq, "Destination stopped");
    }

    /// Waits `d` before the next attempt, checking the backlog caps about once a second
    /// meanwhile (Postgres may be down for long). False when cancelled.
    async fn pause(
        &self,
        d: Duration,
        state: &mut CursorState,
        status: &DestinationStatus,
        cancel: &CancellationToken,
    ) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            let slice = until
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_secs(1));
            if slice.is_zero() {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(slice) => {}
                () = cancel.cancelled() => return false,
            }
            let end = self.tail.committed().end;
            if let Some(next) = self
                .backlog
                .enforce_cursor(&self.data_dir, state, end)
                .await
            {
                *state = next;
                status.set(state);
            }
        }
    }

    /// After a batch committed: saves the cursor, then the status and metrics. False when
    /// the runtime is shutting down.
    async fn batch_done(
        &self,
        next: &CursorState,
        events: usize,
        discards: BTreeMap<String, u64>,
        status: &DestinationStatus,
    ) -> bool {
        let (cursor, to_save) = (CursorFile::new(&self.data_dir, &self.dest.id), next.clone());
        match tokio::task::spawn_blocking(move || cursor.save(&to_save)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(destination = %self.dest.id, error = %e, "cannot save the cursor")
            }
            Err(_) => return false,
        }
        status.set(next);
        status.set_error(None);
        let id = &self.dest.id;
        self.metrics
            .delivered
            .get_or_create(&metrics::destination(id))
            .inc_by(events as u64);
        for (code, n) in discards {
            let labels = metrics::destination_reason(id, &code);
            self.metrics
                .warehouse_discards
                .get_or_create(&labels)
                .inc_by(n);
        }
        true
    }

    /// Waits until `batch_rows` records are waiting, or records have waited `batch_interval`.
    /// False when cancelled.
    async fn wait_for_batch(
        &mut self,
        state: &CursorState,
        status: &DestinationStatus,
        cancel: &CancellationToken,
    ) -> bool {
        let mut pending_since: Option<Instant> = None;
        loop {
            let committed = self.tail.committed_seen();
            let backlog = committed.next_seq.saturating_sub(state.next_seq);
            self.tail.gauge(state.next_seq);
            let wait = if state.position >= committed.end {
                None
            } else {
                let since = *pending_since.get_or_insert_with(Instant::now);
                let due = since + self.settings.batch_interval;
                if backlog as usize >= self.settings.batch_rows || Instant::now() >= due {
                    return true;
                }
                Some(due)
            };
            let sleep = async {
                match wait {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.tail.changed() => if !changed { return false },
                () = sleep => {}
                // A replay from the log was started: it runs between live batches.
                () = status.wake.notified() => return true,
                () = cancel.cancelled() => return false,
            }
        }
    }

    /// Reads up to `batch_rows` records from `from`, turns them into rows and renders the
    /// tables that need no DDL, on a blocking thread.
    fn spawn_read(
        &self,
        cache: &SchemaCache,
        from: CursorState,
        end: Position,
    ) -> JoinHandle<std::io::Result<Batch>> {
        let (dir, dest, cache) = (
            self.tail.log_dir().to_path_buf(),
            self.dest.clone(),
            cache.clone(),
        );
        let (limit, backlog) = (self.settings.batch_rows, self.backlog.clone());
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let mut batch = read_batch(&dir, &dest, from, end, limit, &cache, None)?;
            tracing::debug!(
                took_ms = t.elapsed().as_millis() as u64,
                "warehouse batch read"
            );
            // Durable before the cursor can move past them; read again if it fails.
            backlog.dead_letter_losses(std::mem::take(&mut batch.lost))?;
            Ok(batch)
        })
    }

    /// Loads each schema's part of the batch; returns the discards written, by metric label.
    pub(super) async fn load(
        &self,
        client: &mut Option<Client>,
        cache: &SchemaCache,
        schemas: BTreeMap<String, SchemaBatch>,
    ) -> Result<BTreeMap<String, u64>, LoadError> {
        let mut counts = BTreeMap::new();
        if schemas.is_empty() {
            return Ok(counts);
        }
        if client.is_none() {
            let ca_file = self.settings.ca_file.as_deref();
            let target = Target::parse(&self.settings.url, ca_file)?;
            *client = Some(target.connect(&self.dest.id).await?);
        }
        let Some(c) = client.as_mut() else {
            return Ok(counts);
        };
        for (schema, part) in schemas {
            let loaded = load(c, cache, &schema, part.planned, part.discards).await?;
            if !loaded.discards.is_empty() {
                tracing::warn!(destination = %self.dest.id, schema, discards = ?loaded.discards,
                    "values, rows or records went to _switchyard_discards");
            }
            for (code, n) in loaded.discards {
                *counts.entry(code).or_insert(0) += n;
            }
        }
        Ok(counts)
    }
}
