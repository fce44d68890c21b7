//! Engine worker threads behind one bounded queue.
//!
//! QuickJS runtimes are `!Send`, so each worker thread owns one engine per function, compiled
//! when the worker starts and rebuilt after a timeout or out-of-memory. A source may use at
//! most `workers - 1` workers at once (at least one), so a function stuck until its deadline
//! leaves the other sources a worker; HTTP ingest never touches this pool.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};

use super::engine::{Engine, MAX_STACK};
use super::host::FetchHost;
use super::{ErrorKind, FnError, FnRequest, Limits, Outcome};
use crate::delivery::http::HttpClient;

/// Queued runs per worker before callers get `Busy`.
const QUEUE_PER_WORKER: usize = 64;

/// One source's function, as compiled into the config.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub source: String,
    /// Shown in errors and stack traces: the path from the config.
    pub filename: String,
    pub code: Arc<str>,
    pub settings_json: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("the function workers are busy; retry shortly")]
    Busy,
    #[error("the function workers have stopped")]
    Closed,
    #[error("source {0:?} has no function")]
    NoFunction(String),
}

struct Job {
    source: Arc<str>,
    req: FnRequest,
    reply: oneshot::Sender<Outcome>,
}

pub struct Pool {
    tx: SyncSender<Job>,
    shares: HashMap<String, (Arc<str>, Arc<Semaphore>)>,
    limits: Limits,
}

impl Pool {
    /// Starts `workers` threads; each compiles every function before taking work.
    pub fn start(
        specs: Vec<FunctionSpec>,
        workers: usize,
        limits: Limits,
        client: HttpClient,
        handle: Handle,
    ) -> std::io::Result<Pool> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        let share = workers.saturating_sub(1).max(1);
        let shares = specs
            .iter()
            .map(|s| {
                let id: Arc<str> = s.source.as_str().into();
                (s.source.clone(), (id, Arc::new(Semaphore::new(share))))
            })
            .collect();
        for i in 0..workers {
            let (rx, specs) = (rx.clone(), specs.clone());
            let (client, handle) = (client.clone(), handle.clone());
            std::thread::Builder::new()
                .name(format!("fn-worker-{i}"))
                .stack_size(MAX_STACK * 8)
                .spawn(move || worker(rx, specs, limits, FetchHost::new(client, handle)))?;
        }
        Ok(Pool { tx, shares, limits })
    }

    pub fn has_function(&self, source: &str) -> bool {
        self.shares.contains_key(source)
    }

    /// Runs `source`'s function on `req`. Waits at most one deadline for the source's share
    /// of the workers, then answers `Busy`.
    pub async fn run(&self, source: &str, req: FnRequest) -> Result<Outcome, PoolError> {
        let (id, share) = self
            .shares
            .get(source)
            .ok_or_else(|| PoolError::NoFunction(source.to_owned()))?;
        let _permit = tokio::time::timeout(self.limits.deadline, share.acquire())
            .await
            .map_err(|_| PoolError::Busy)?
            .map_err(|_| PoolError::Closed)?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            source: id.clone(),
            req,
            reply,
        };
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Closed,
        })?;
        rx.await.map_err(|_| PoolError::Closed)
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    specs: Vec<FunctionSpec>,
    limits: Limits,
    fetch: FetchHost,
) {
    let fetch = Rc::new(fetch);
    let build = |s: &FunctionSpec| Engine::new(&s.filename, &s.code, limits, fetch.clone());
    let mut engines: HashMap<Arc<str>, (usize, Option<Engine>)> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let engine = build(s)
            .inspect_err(|e| tracing::error!(source = %s.source, error = %e.message, "function failed to load"))
            .ok();
        engines.insert(s.source.as_str().into(), (i, engine));
    }
    loop {
        // The lock is held only while waiting for the next job, never during a run.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let outcome = match engines.get_mut(&job.source) {
            None => Outcome::failed(FnError::new(ErrorKind::Internal, "unknown function")),
            Some((i, slot)) => {
                let spec = &specs[*i];
                if slot.as_ref().is_none_or(|e| e.poisoned) {
                    *slot = build(spec).ok();
                }
                match slot {
                    Some(engine) => engine.call(&job.req, &spec.settings_json),
                    None => Outcome::failed(FnError::new(
                        ErrorKind::Internal,
                        "the function could not be loaded; see the server log",
                    )),
                }
            }
        };
        let _ = job.reply.send(outcome);
    }
}
