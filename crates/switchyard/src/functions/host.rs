//! Host services behind the prelude's globals: `atob`/`btoa`, `crypto.randomUUID`, `fetch`
//! and `setTimeout`. A `fetch` runs on the server's tokio runtime through the same
//! egress-guarded client as the destinations; the worker thread waits for fetches and timers
//! inside the run's deadline.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::Bytes;
use rquickjs::{Ctx, Exception, Function, Object};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::delivery::http::{FullResponse, HttpClient};

/// `fetch` calls one function run may start.
pub const MAX_FETCHES_PER_RUN: u32 = 100;
/// A `fetch` response body may be this large.
pub const MAX_FETCH_BODY: usize = 5 << 20;
/// Timers one run may set.
pub const MAX_TIMERS_PER_RUN: u32 = 1000;
/// Events and objects one run may emit (`Segment.track` ... `Segment.set`), checked at each
/// emit: the ingest bound on one request's events, so none is cut off as `batch_too_large`.
pub const MAX_EMITTED_PER_RUN: usize = crate::ingest::MAX_BATCH_EVENTS;
/// Characters of JSON of one run's events and objects, checked before they leave the
/// engine, so the copies the host makes of a run's output stay small.
pub const MAX_EMITTED_BYTES: usize = 8 << 20;

/// What woke a run that was waiting.
pub enum Wake {
    Fetch(FetchDone),
    Timer(i32),
}

/// A finished `fetch`, handed back to the worker thread.
pub struct FetchDone {
    id: i32,
    result: Result<FullResponse, String>,
}

impl FetchDone {
    /// Arguments of the prelude's `__fetchDone(id, status, headersJson, body, error)`.
    pub fn into_args(self) -> (i32, u16, String, String, Option<String>) {
        match self.result {
            Ok(r) => (
                self.id,
                r.status,
                serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into()),
                String::from_utf8_lossy(&r.body).into_owned(),
                None,
            ),
            Err(e) => (self.id, 0, "[]".into(), String::new(), Some(e)),
        }
    }
}

/// One per worker thread, shared by that worker's engines (calls there are sequential).
pub struct FetchHost {
    client: Option<(HttpClient, Handle)>,
    next_id: Cell<i32>,
    started: Cell<u32>,
    timers_set: Cell<u32>,
    tasks: RefCell<HashMap<i32, JoinHandle<()>>>,
    timers: RefCell<BinaryHeap<Reverse<(Instant, i32)>>>,
    tx: mpsc::Sender<FetchDone>,
    rx: mpsc::Receiver<FetchDone>,
}

impl FetchHost {
    pub fn new(client: HttpClient, handle: Handle) -> FetchHost {
        Self::with(Some((client, handle)))
    }

    /// For compiling only (`check`): `fetch` throws.
    pub fn unavailable() -> FetchHost {
        Self::with(None)
    }

    fn with(client: Option<(HttpClient, Handle)>) -> FetchHost {
        let (tx, rx) = mpsc::channel();
        FetchHost {
            client,
            next_id: Cell::new(0),
            started: Cell::new(0),
            timers_set: Cell::new(0),
            tasks: RefCell::new(HashMap::new()),
            timers: RefCell::new(BinaryHeap::new()),
            tx,
            rx,
        }
    }

    /// Fetches in flight and timers not yet fired.
    pub fn outstanding(&self) -> usize {
        self.tasks.borrow().len() + self.timers.borrow().len()
    }

    /// The next fetch to finish or timer to fire in the current run; `None` once `until`
    /// has passed first.
    pub fn next(&self, until: Instant) -> Option<Wake> {
        loop {
            let now = Instant::now();
            let due = self
                .timers
                .borrow()
                .peek()
                .map(|Reverse((t, id))| (*t, *id));
            if let Some((t, id)) = due
                && t <= now
            {
                self.timers.borrow_mut().pop();
                return Some(Wake::Timer(id));
            }
            let wake_at = due.map_or(until, |(t, _)| t.min(until));
            let left = wake_at.checked_duration_since(now)?;
            if self.tasks.borrow().is_empty() {
                due?;
                std::thread::sleep(left);
                continue;
            }
            match self.rx.recv_timeout(left) {
                // Results of an earlier run's aborted fetches may still arrive: skip them.
                Ok(done) if self.tasks.borrow_mut().remove(&done.id).is_some() => {
                    return Some(Wake::Fetch(done));
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
            if Instant::now() >= until {
                return None;
            }
        }
    }

    fn id(&self) -> i32 {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        id
    }

    fn set_timer(&self, ms: f64) -> Result<i32, String> {
        if self.timers_set.get() >= MAX_TIMERS_PER_RUN {
            return Err(format!("a run may set at most {MAX_TIMERS_PER_RUN} timers"));
        }
        self.timers_set.set(self.timers_set.get() + 1);
        let delay = Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(86_400.0));
        let id = self.id();
        self.timers
            .borrow_mut()
            .push(Reverse((Instant::now() + delay, id)));
        Ok(id)
    }

    /// Ends the run: cancels fetches still in flight.
    pub fn abort_all(&self) {
        for (_, t) in self.tasks.borrow_mut().drain() {
            t.abort();
        }
        self.timers.borrow_mut().clear();
        self.started.set(0);
        self.timers_set.set(0);
    }

    fn start(&self, req: FetchRequest, timeout: Duration) -> Result<i32, String> {
        let Some((client, handle)) = &self.client else {
            return Err("fetch is not available while the config is only being checked".into());
        };
        if self.started.get() >= MAX_FETCHES_PER_RUN {
            return Err(format!(
                "a run may start at most {MAX_FETCHES_PER_RUN} fetches"
            ));
        }
        self.started.set(self.started.get() + 1);
        let id = self.id();
        let (client, tx) = (client.clone(), self.tx.clone());
        let task = handle.spawn(async move {
            let result = client
                .fetch(
                    &req.method,
                    &req.url,
                    &req.headers,
                    req.body,
                    timeout,
                    MAX_FETCH_BODY,
                )
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(FetchDone { id, result });
        });
        self.tasks.borrow_mut().insert(id, task);
        Ok(id)
    }
}

struct FetchRequest {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Defines the `__host` object the prelude picks up and hides.
pub fn install<'js>(
    ctx: &Ctx<'js>,
    fetch: Rc<FetchHost>,
    deadline: Rc<Cell<Option<Instant>>>,
) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    let fetch_for_timers = fetch.clone();
    host.set("maxEmitted", MAX_EMITTED_PER_RUN)?;
    host.set("maxEmittedBytes", MAX_EMITTED_BYTES)?;
    host.set("btoa", Function::new(ctx.clone(), btoa)?)?;
    host.set("atob", Function::new(ctx.clone(), atob)?)?;
    host.set(
        "uuid",
        Function::new(ctx.clone(), || uuid::Uuid::new_v4().to_string())?,
    )?;
    let start = move |ctx: Ctx<'js>,
                      url: String,
                      method: String,
                      headers: String,
                      body: Option<String>|
          -> rquickjs::Result<i32> {
        let headers: Vec<(String, String)> = serde_json::from_str(&headers).unwrap_or_default();
        let left = deadline.get().map_or(Duration::from_secs(5), |t| {
            t.saturating_duration_since(Instant::now())
        });
        let req = FetchRequest {
            url,
            method,
            headers,
            body: body.map(Bytes::from).unwrap_or_default(),
        };
        fetch
            .start(req, left)
            .map_err(|m| Exception::throw_type(&ctx, &m))
    };
    host.set("fetch", Function::new(ctx.clone(), start)?)?;
    let timers = fetch_for_timers;
    let timer = move |ctx: Ctx<'js>, ms: f64| -> rquickjs::Result<i32> {
        timers
            .set_timer(ms)
            .map_err(|m| Exception::throw_range(&ctx, &m))
    };
    host.set("timer", Function::new(ctx.clone(), timer)?)?;
    ctx.globals().set("__host", host)
}

/// `btoa`: a "binary string" (every char ≤ U+00FF) to base64.
fn btoa(ctx: Ctx<'_>, s: String) -> rquickjs::Result<String> {
    let mut bytes = Vec::with_capacity(s.len());
    for c in s.chars() {
        let Ok(b) = u8::try_from(u32::from(c)) else {
            return Err(Exception::throw_dom(
                &ctx,
                "InvalidCharacterError",
                "btoa: the string has characters outside Latin-1",
            ));
        };
        bytes.push(b);
    }
    Ok(STANDARD.encode(bytes))
}

/// `atob`: forgiving base64 (whitespace ignored, padding optional) to a binary string.
fn atob(ctx: Ctx<'_>, s: String) -> rquickjs::Result<String> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = compact.trim_end_matches('=');
    match STANDARD_NO_PAD.decode(trimmed) {
        Ok(bytes) if compact.len() - trimmed.len() <= 2 => {
            Ok(bytes.into_iter().map(char::from).collect())
        }
        _ => Err(Exception::throw_dom(
            &ctx,
            "InvalidCharacterError",
            "atob: the string is not valid base64",
        )),
    }
}
