//! The `postgres` destination's task: micro-batches from its cursor (by `batch_rows` or
//! `batch_interval`, whichever comes first), one transaction per schema per batch, and the
//! cursor saved only after the commit. When Postgres is down it retries the same batch with
//! doubling backoff; the backlog waits in the log like any destination's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use super::load::{Planned, load, plan};
use super::rows::{Row, object_row, rows_for};
use super::schema::SchemaCache;
use super::snake::snakecase;
use crate::config::{DestinationConfig, PostgresSettings};
use crate::cursor::{CursorFile, CursorState};
use crate::destinations::DestinationStatus;
use crate::log::Committed;
use crate::log::reader::LogReader;
use crate::log::record::Kind;
use crate::log::segment::Position;
use crate::telemetry::{Metrics, metrics};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bytes read from the log per batch at most (besides `batch_rows`).
const MAX_BATCH_BYTES: usize = 64 << 20;

pub struct WarehouseWorker {
    pub dest: DestinationConfig,
    pub settings: PostgresSettings,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
    pub committed: watch::Receiver<Committed>,
    pub metrics: Arc<Metrics>,
}

/// What one batch read from the log holds.
struct Batch {
    next: CursorState,
    /// Planned tables per schema.
    plans: BTreeMap<String, Vec<Planned>>,
    events: usize,
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
        let labels = metrics::destination(&self.dest.id);
        let mut prefetched: Option<JoinHandle<std::io::Result<Batch>>> = None;
        loop {
            let batch = match prefetched.take() {
                Some(h) => match h.await {
                    Ok(Ok(b)) => b,
                    _ => continue,
                },
                None => {
                    if !self.wait_for_batch(&state, &cancel).await {
                        break;
                    }
                    let end = self.committed.borrow().end;
                    match self.spawn_read(&cache, state.clone(), end).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => {
                            tracing::error!(destination = %self.dest.id, error = %e, "reading the log failed");
                            break;
                        }
                        Err(_) => break,
                    }
                }
            };
            // While a backlog of full batches waits, read the next one as this one loads.
            let committed = *self.committed.borrow();
            let waiting = committed.next_seq.saturating_sub(batch.next.next_seq) as usize;
            if batch.next.position < committed.end && waiting >= self.settings.batch_rows {
                prefetched = Some(self.spawn_read(&cache, batch.next.clone(), committed.end));
            }
            let t = Instant::now();
            let loaded = self.load(&mut client, &cache, batch.plans).await;
            tracing::debug!(
                took_ms = t.elapsed().as_millis() as u64,
                events = batch.events,
                "warehouse batch loaded"
            );
            match loaded {
                Ok(()) => {
                    let (cursor, next) = (
                        CursorFile::new(&self.data_dir, &self.dest.id),
                        batch.next.clone(),
                    );
                    match tokio::task::spawn_blocking(move || cursor.save(&next)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(destination = %self.dest.id, error = %e, "cannot save the cursor")
                        }
                        Err(_) => break,
                    }
                    state = batch.next;
                    status.set(&state);
                    status.set_error(None);
                    self.metrics
                        .delivered
                        .get_or_create(&labels)
                        .inc_by(batch.events as u64);
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    prefetched = None;
                    let msg = format!(
                        "loading into Postgres failed; retrying the batch in {backoff:?}: {}",
                        describe(&e)
                    );
                    tracing::warn!(destination = %self.dest.id, "{msg}");
                    status.set_error(Some(msg));
                    if client.as_ref().is_some_and(Client::is_closed) {
                        client = None;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = cancel.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!(destination = %self.dest.id, next_seq = state.next_seq, "Destination stopped");
    }

    /// Waits until `batch_rows` records are waiting, or records have waited `batch_interval`.
    /// False when cancelled.
    async fn wait_for_batch(&mut self, state: &CursorState, cancel: &CancellationToken) -> bool {
        let labels = metrics::destination(&self.dest.id);
        let mut pending_since: Option<Instant> = None;
        loop {
            let committed = *self.committed.borrow_and_update();
            let backlog = committed.next_seq.saturating_sub(state.next_seq);
            self.metrics
                .backlog
                .get_or_create(&labels)
                .set(backlog as i64);
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
                changed = self.committed.changed() => if changed.is_err() { return false },
                () = sleep => {}
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
        let (dir, dest, cache) = (self.log_dir.clone(), self.dest.clone(), cache.clone());
        let limit = self.settings.batch_rows;
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let r = read_batch(&dir, &dest, from, end, limit, &cache);
            tracing::debug!(
                took_ms = t.elapsed().as_millis() as u64,
                "warehouse batch read"
            );
            r
        })
    }

    async fn load(
        &self,
        client: &mut Option<Client>,
        cache: &SchemaCache,
        plans: BTreeMap<String, Vec<Planned>>,
    ) -> Result<(), tokio_postgres::Error> {
        if plans.is_empty() {
            return Ok(());
        }
        if client.is_none() {
            let (c, connection) = tokio_postgres::connect(&self.settings.url, NoTls).await?;
            let id = self.dest.id.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(destination = %id, error = %e, "Postgres connection closed");
                }
            });
            *client = Some(c);
        }
        let Some(c) = client.as_mut() else {
            return Ok(());
        };
        for (schema, planned) in plans {
            let (_, discarded) = load(c, cache, &schema, planned).await?;
            if discarded > 0 {
                tracing::info!(destination = %self.dest.id, schema, discarded, "values that did not fit their column went to _switchyard_discards");
            }
        }
        Ok(())
    }
}

fn read_batch(
    dir: &std::path::Path,
    dest: &DestinationConfig,
    from: CursorState,
    end: Position,
    limit: usize,
    cache: &SchemaCache,
) -> std::io::Result<Batch> {
    let mut reader = LogReader::new(dir, from.position);
    let uuid_ts = crate::event::timestamp::format(time::OffsetDateTime::now_utc());
    let mut rows: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut batch = Batch {
        next: from,
        plans: BTreeMap::new(),
        events: 0,
    };
    let mut read = 0;
    while read < limit {
        let chunk = reader.read(end, (limit - read).min(2000), MAX_BATCH_BYTES)?;
        let Some(last) = chunk.last() else { break };
        batch.next = CursorState {
            position: last.next,
            next_seq: last.record.seq + 1,
            done: Vec::new(),
        };
        read += chunk.len();
        for r in &chunk {
            let e = &r.record.entry;
            if !matches!(e.kind, Kind::Accepted | Kind::Object)
                || !dest.wants(&e.source, &e.environment)
            {
                continue;
            }
            if e.kind == Kind::Object {
                let at = crate::event::timestamp::format(ms_to_time(e.received_ms));
                if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice(&e.body)
                    && let Some(row) = object_row(&obj, &at, &uuid_ts)
                {
                    rows.entry(snakecase(&e.source)).or_default().push(row);
                }
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.body) else {
                continue;
            };
            if dest.subscribe.as_ref().is_some_and(|f| !f.matches(&v)) {
                continue;
            }
            let serde_json::Value::Object(ev) = v else {
                continue;
            };
            batch.events += 1;
            rows.entry(snakecase(&e.source))
                .or_default()
                .extend(rows_for(&ev, &uuid_ts));
        }
    }
    if read == 0 {
        batch.next.position = reader.position();
    }
    batch.plans = rows
        .into_iter()
        .map(|(schema, rows)| {
            let planned = plan(cache, &schema, rows);
            (schema, planned)
        })
        .collect();
    Ok(batch)
}

fn ms_to_time(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A Postgres error with the server's message, detail and SQLSTATE when it sent them.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{}{detail} [SQLSTATE {}]", db.message(), db.code().code())
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
