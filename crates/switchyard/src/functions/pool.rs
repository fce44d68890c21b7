//! Engine worker threads behind per-source bounded queues.
//!
//! QuickJS runtimes are `!Send`, so each worker thread owns one engine per function, compiled
//! when the worker starts and rebuilt after a timeout or out-of-memory. Each source has its
//! own queue; a worker takes the next job round-robin from the sources that hold fewer than
//! `workers - 1` workers (at least one; all of them when only one source has a function), so
//! a function stuck until its deadline leaves the other sources a worker, and a busy source's jobs run back to back on a hot thread. HTTP
//! ingest never touches this pool.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use thiserror::Error;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::engine::{Engine, MAX_STACK};
use super::host::FetchHost;
use super::{ErrorKind, FnError, FnRequest, Limits, Outcome};
use crate::delivery::http::HttpClient;

/// Runs waiting per source before its callers get `Busy`.
pub const QUEUE_PER_SOURCE: usize = 256;

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
    req: Arc<FnRequest>,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Job>,
    running: usize,
}

struct Sched {
    lanes: Vec<Lane>,
    /// Where the round-robin scan starts next.
    next: usize,
    share: usize,
    closed: bool,
}

impl Sched {
    /// The next runnable job, round-robin over sources under their share.
    fn take(&mut self) -> Option<(usize, Job)> {
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let lane = &mut self.lanes[i];
            if lane.running < self.share
                && let Some(job) = lane.queue.pop_front()
            {
                lane.running += 1;
                self.next = (i + 1) % n;
                return Some((i, job));
            }
        }
        None
    }

    fn has_runnable(&self) -> bool {
        self.lanes
            .iter()
            .any(|l| l.running < self.share && !l.queue.is_empty())
    }
}

struct Shared {
    sched: Mutex<Sched>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    lanes: HashMap<String, usize>,
}

impl Pool {
    /// Starts `workers` threads (none without functions); each compiles every function
    /// before taking work.
    pub fn start(
        specs: Vec<FunctionSpec>,
        workers: usize,
        limits: Limits,
        client: HttpClient,
        handle: Handle,
    ) -> std::io::Result<Pool> {
        let workers = if specs.is_empty() { 0 } else { workers.max(1) };
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched {
                lanes: specs.iter().map(|_| Lane::default()).collect(),
                next: 0,
                // With one function there is no other source to keep a worker free for.
                share: if specs.len() <= 1 {
                    workers.max(1)
                } else {
                    workers.saturating_sub(1).max(1)
                },
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let lanes = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.source.clone(), i))
            .collect();
        for i in 0..workers {
            let (shared, specs) = (shared.clone(), specs.clone());
            let (client, handle) = (client.clone(), handle.clone());
            std::thread::Builder::new()
                .name(format!("fn-worker-{i}"))
                .stack_size(MAX_STACK * 8)
                .spawn(move || worker(&shared, &specs, limits, FetchHost::new(client, handle)))?;
        }
        Ok(Pool { shared, lanes })
    }

    pub fn has_function(&self, source: &str) -> bool {
        self.lanes.contains_key(source)
    }

    /// Runs `source`'s function on `req`; `Busy` when the source's queue is full.
    pub async fn run(&self, source: &str, req: Arc<FnRequest>) -> Result<Outcome, PoolError> {
        let lane = *self
            .lanes
            .get(source)
            .ok_or_else(|| PoolError::NoFunction(source.to_owned()))?;
        let (reply, rx) = oneshot::channel();
        let wake = {
            let mut sched = self.shared.lock();
            if sched.closed {
                return Err(PoolError::Closed);
            }
            let queue = &mut sched.lanes[lane].queue;
            if queue.len() >= QUEUE_PER_SOURCE {
                return Err(PoolError::Busy);
            }
            queue.push_back(Job { req, reply });
            // A worker is woken only if one could take this: a source at its share waits
            // for its running worker, which takes the next job itself.
            sched.has_runnable()
        };
        if wake {
            self.shared.ready.notify_one();
        }
        rx.await.map_err(|_| PoolError::Closed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn worker(shared: &Shared, specs: &[FunctionSpec], limits: Limits, fetch: FetchHost) {
    let fetch = Rc::new(fetch);
    let build = |s: &FunctionSpec| {
        Engine::new(&s.filename, &s.code, limits, fetch.clone())
            .inspect_err(|e| tracing::error!(source = %s.source, error = %e.message, "function failed to load"))
            .ok()
    };
    let mut engines: Vec<Option<Engine>> = specs.iter().map(build).collect();
    let mut sched = shared.lock();
    loop {
        let Some((lane, job)) = sched.take() else {
            if sched.closed {
                return;
            }
            sched = shared.ready.wait(sched).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        // Wake another worker only when there is more it could run: the finishing worker
        // takes the next job itself, so a busy source does not bounce between threads.
        if sched.has_runnable() {
            shared.ready.notify_one();
        }
        drop(sched);
        // A caller that went away (client disconnected) needs no run.
        if !job.reply.is_closed() {
            let slot = &mut engines[lane];
            if slot.as_ref().is_none_or(|e| e.poisoned) {
                *slot = build(&specs[lane]);
            }
            let outcome = match slot {
                Some(engine) => engine.call(&job.req, &specs[lane].settings_json),
                None => Outcome::failed(FnError::new(
                    ErrorKind::Internal,
                    "the function could not be loaded; see the server log",
                )),
            };
            let _ = job.reply.send(outcome);
        }
        sched = shared.lock();
        sched.lanes[lane].running -= 1;
    }
}
