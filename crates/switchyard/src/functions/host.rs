//! Host services behind the prelude's globals: `atob`/`btoa`, `crypto.randomUUID`, and
//! `fetch`. A `fetch` runs on the server's tokio runtime through the same egress-guarded
//! client as the destinations; the worker thread waits for it inside the deadline.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
    tasks: RefCell<HashMap<i32, JoinHandle<()>>>,
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
            tasks: RefCell::new(HashMap::new()),
            tx,
            rx,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// The next finished fetch of the current run, or `None` once `wait` has passed.
    pub fn next(&self, wait: Duration) -> Option<FetchDone> {
        let until = Instant::now() + wait;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let done = self.rx.recv_timeout(left).ok()?;
            // Results of an earlier run's aborted fetches may still arrive: skip them.
            if self.tasks.borrow_mut().remove(&done.id).is_some() {
                return Some(done);
            }
        }
    }

    /// Ends the run: cancels fetches still in flight.
    pub fn abort_all(&self) {
        for (_, t) in self.tasks.borrow_mut().drain() {
            t.abort();
        }
        self.started.set(0);
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
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
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
