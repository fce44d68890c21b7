//! Wiring: open the store, start the destinations, serve HTTP, and the one shutdown story.
//!
//! Shutdown: the `shutdown` future resolves (SIGTERM/SIGINT in `serve`) → ingest answers 503
//! and the listener drains in-flight requests, for at most `server.shutdown_timeout` →
//! destinations finish the batch in hand and stop → the log writer commits what is queued
//! and stops. Every step is bounded by the same deadline.

use std::fs::{self, File};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DestinationKind};
use crate::cursor::CursorState;
use crate::delivery::http::HttpClient;
use crate::delivery::store::DeliveryStore;
use crate::delivery::worker::WebhookWorker;
use crate::destinations::backlog::Backlog;
use crate::destinations::postgres::runner::WarehouseWorker;
use crate::destinations::{DestinationStatus, Runner};
use crate::egress::EgressPolicy;
use crate::log::tail::Tail;
use crate::log::{Log, LogOptions, retention};
use crate::recent::{RecentEvent, RecentStore};
use crate::state::{AppState, Parts, Phase};
use crate::telemetry::Metrics;
use crate::webhooks::Webhooks;

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// The task that runs one destination.
enum Task {
    File(Runner, Tail),
    Webhook(WebhookWorker),
    Warehouse(WarehouseWorker),
}

/// Runs the server on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// `run` with the server's clock injected (tests move it by hand): every decision by the
/// time of day takes `now` from it (see `clock.rs`).
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let (log, recovery, recent) = open_log(&config, metrics.clone(), clock.clone()).await?;
    tracing::info!(
        next_seq = recovery.next_seq,
        segments = recovery.segments,
        truncated_bytes = recovery.truncated_bytes,
        replayed_dedupe_keys = recovery.replayed_dedupe_keys,
        "Log opened"
    );
    let store = Arc::new(
        DeliveryStore::open(&data_dir.join("deliveries.redb"))
            .context("cannot open the delivery store")?,
    );
    let policy = EgressPolicy {
        allow_private_networks: config.server.allow_private_networks,
        allow: config.server.egress_allow.clone(),
    };
    let client =
        HttpClient::new(policy).context("cannot load the system's TLS root certificates")?;
    let tasks = destination_tasks(&config, &log, &metrics, &store, &clock, &client)?;
    let destinations = tasks.iter().map(|(_, _, s)| s.clone()).collect();
    let shutdown_timeout = config.server.shutdown_timeout;
    let webhooks = Webhooks::open(&config, client, clock.now_ms())?;
    let profiles = Arc::new(
        crate::profiles::ProfileStore::open_with_cap(
            &data_dir.join("profiles.redb"),
            config.storage.max_profiles,
        )
        .context("cannot open the profile store")?,
    );
    let state = AppState::new(Parts {
        config,
        log,
        recovery,
        recent,
        metrics,
        destinations,
        store,
        clock,
        webhooks,
        profiles: profiles.clone(),
    });
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    for (task, cursor, status) in tasks {
        match task {
            Task::File(runner, tail) => {
                tracker.spawn(runner.run(tail, cursor, status, cancel.clone()))
            }
            Task::Webhook(worker) => tracker.spawn(worker.run(cursor, status, cancel.clone())),
            Task::Warehouse(worker) => tracker.spawn(worker.run(cursor, status, cancel.clone())),
        };
    }
    tracker.spawn(housekeeping(state.clone(), cancel.clone()));
    tracker.spawn(crate::webhooks::retry::run(state.clone(), cancel.clone()));
    if state.config.storage.profiles {
        let tail = state.log.tail(
            "profiles",
            state.metrics.profiles_backlog.clone(),
            state.metrics.profiles_log_read_errors.clone(),
            None,
        );
        tracker.spawn(crate::profiles::run(profiles, tail, cancel.clone()));
    }
    state.set_phase(Phase::Ready);
    serve(state.clone(), listener, shutdown, shutdown_timeout).await?;

    let deadline = Instant::now() + shutdown_timeout;
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout_at(deadline.into(), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Destinations did not stop before the shutdown deadline");
    }
    let closing = state.clone();
    tokio::task::spawn_blocking(move || closing.log.close()).await?;
    tracing::info!("Stopped");
    Ok(())
}

type Prepared = (Task, CursorState, Arc<DestinationStatus>);

/// Opens each destination's cursor and builds the task that will run it.
fn destination_tasks(
    config: &Config,
    log: &Log,
    metrics: &Arc<Metrics>,
    store: &Arc<DeliveryStore>,
    clock: &Arc<dyn Clock>,
    client: &HttpClient,
) -> anyhow::Result<Vec<Prepared>> {
    let mut out = Vec::new();
    for d in &config.destinations {
        let backlog = Backlog::new(d, log.dir(), store.clone(), clock.clone(), metrics.clone());
        let runner = Runner {
            config: d.clone(),
            data_dir: config.server.data_dir.clone(),
            log_dir: log.dir().to_path_buf(),
            committed: log.committed(),
            metrics: metrics.clone(),
            backlog: backlog.clone(),
        };
        let (cursor, status) = runner
            .prepare()
            .with_context(|| format!("cannot open the cursor of destination {}", d.id))?;
        let labels = crate::telemetry::metrics::destination(&d.id);
        let tail = log.tail(
            &d.id,
            metrics.backlog.get_or_create(&labels).clone(),
            metrics.log_read_errors.get_or_create(&labels).clone(),
            Some(status.clone()),
        );
        let task = match &d.kind {
            DestinationKind::File(_) => Task::File(runner, tail),
            DestinationKind::Postgres(settings) => Task::Warehouse(WarehouseWorker {
                dest: d.clone(),
                settings: settings.clone(),
                data_dir: config.server.data_dir.clone(),
                tail,
                metrics: metrics.clone(),
                backlog,
            }),
            DestinationKind::Webhook(_)
            | DestinationKind::Segment(..)
            | DestinationKind::Nats(..) => {
                let Some((cfg, route)) = d.kind.delivered() else {
                    anyhow::bail!("destination {} has no delivery settings", d.id);
                };
                Task::Webhook(WebhookWorker {
                    dest: d.clone(),
                    cfg: Arc::new(cfg.clone()),
                    route,
                    data_dir: config.server.data_dir.clone(),
                    tail,
                    store: store.clone(),
                    client: client.clone(),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    backlog,
                })
            }
        };
        out.push((task, cursor, status));
    }
    Ok(out)
}

async fn open_log(
    config: &Config,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Log, crate::log::Recovery, RecentStore)> {
    let opts = LogOptions {
        segment_bytes: config.storage.segment_bytes,
        commit_window: config.storage.commit_window,
        queue_requests: 4096,
        queue_bytes: config.storage.queue_bytes,
        dedupe_window: config.dedupe.window,
        dedupe_max_keys: config.dedupe.max_keys,
        clock,
    };
    let recent = RecentStore::new(
        config.sources.iter().map(|s| s.id.as_str()),
        config.server.recent_events,
    );
    let dir = config.server.data_dir.clone();
    tokio::task::spawn_blocking(move || {
        let (log, recovery) = Log::open(&dir, &opts, metrics, |rec| {
            if rec.entry.kind != crate::log::record::Kind::Object {
                recent.push(RecentEvent::from_record(rec.clone()));
            }
        })
        .with_context(|| format!("cannot open the event log in {}", dir.display()))?;
        Ok((log, recovery, recent))
    })
    .await?
}

/// Serves until `shutdown`, then drains for at most `timeout`.
async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    timeout: Duration,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let router = crate::http::router(state.clone());
    let limits = state.config.server.limits;
    let server = crate::http::listener::serve(listener, router, limits, stop.clone());
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => anyhow::bail!("the HTTP listener stopped on its own"),
        () = shutdown => {}
    }
    tracing::info!("Shutting down: ingest answers 503 while in-flight requests finish");
    state.set_phase(Phase::Draining);
    stop.cancel();
    if tokio::time::timeout(timeout, server).await.is_err() {
        tracing::warn!(
            ?timeout,
            "Shutdown deadline reached; aborting requests still in flight"
        );
    }
    Ok(())
}

/// Refreshes free disk space, reclaims log space, updates gauges. The tick is only cadence;
/// every decision in it (idempotency pruning, retention by age) takes `now` from the clock.
async fn housekeeping(state: AppState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            () = cancel.cancelled() => return,
        }
        let s = state.clone();
        let res = tokio::task::spawn_blocking(move || {
            s.admission.refresh_disk();
            let now = s.clock.now_ms();
            // Saves new idempotency keys every tick; prunes expired ones once a minute.
            let prune = now / 1000 % 60 == 0;
            s.webhooks.guard.save(&s.webhooks.store, now, prune);
            let committed = s.log.committed().borrow().end;
            // The profile store (when on) reads the log like a destination: keep what it has
            // not read. Off, an old stored position must not pin segments forever.
            let min_cursor = s
                .destinations
                .iter()
                .map(|d| d.position())
                .chain(s.profiles.position().filter(|_| s.config.storage.profiles))
                .min()
                .unwrap_or(committed);
            let storage = &s.config.storage;
            retention::reclaim(
                s.log.dir(),
                min_cursor,
                s.log.dedupe_checkpoint(),
                storage.retention_max_age,
                storage.retention_max_bytes,
                now,
            )
        })
        .await;
        match res {
            Ok(Ok(r)) => {
                state.metrics.log_bytes.set(r.remaining_bytes as i64);
                if r.deleted_segments > 0 {
                    tracing::info!(
                        segments = r.deleted_segments,
                        bytes = r.deleted_bytes,
                        "Reclaimed log segments every destination has passed"
                    );
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "Log housekeeping failed"),
            Err(error) => tracing::error!(%error, "Log housekeeping task failed"),
        }
    }
}

/// Holds an exclusive lock on `data_dir/LOCK` for the life of the process.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another switchyard process is using data_dir {}",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}
