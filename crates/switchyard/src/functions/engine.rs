//! One compiled source function: a QuickJS runtime and context of its own (so the memory
//! cap is per function), the prelude, the function's code, and a call loop that drives
//! promises and awaited `fetch`es until `onRequest` settles or the deadline passes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Runtime};

use super::host::{self, FetchHost, Wake};
use super::{ErrorKind, FnError, FnRequest, Limits, Outcome, Settled};

const PRELUDE: &str = include_str!("prelude.js");
/// QuickJS's own stack limit; worker threads get a larger native stack than this.
pub const MAX_STACK: usize = 1 << 20;

/// Why a function could not be loaded; `location` is `file:line:col` when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub location: String,
    pub message: String,
}

pub struct Engine {
    rt: Runtime,
    ctx: Context,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
    fetch: Rc<FetchHost>,
    limits: Limits,
    /// Set after a timeout or out-of-memory: the context may be half-updated, so the owner
    /// builds a fresh engine before the next call.
    pub poisoned: bool,
}

impl Engine {
    pub fn new(
        filename: &str,
        code: &str,
        limits: Limits,
        fetch: Rc<FetchHost>,
    ) -> Result<Engine, CompileError> {
        let internal = |e: rquickjs::Error| CompileError {
            location: filename.to_owned(),
            message: format!("the JavaScript engine failed to start: {e}"),
        };
        let rt = Runtime::new().map_err(internal)?;
        rt.set_memory_limit(limits.memory);
        rt.set_max_stack_size(MAX_STACK);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        let (d, i) = (deadline.clone(), interrupted.clone());
        rt.set_interrupt_handler(Some(Box::new(move || {
            let over = d.get().is_some_and(|t| Instant::now() >= t);
            if over {
                i.set(true);
            }
            over
        })));
        let ctx = Context::full(&rt).map_err(internal)?;
        deadline.set(Some(Instant::now() + limits.deadline));
        let loaded = ctx.with(|ctx| load(&ctx, filename, code, fetch.clone(), deadline.clone()));
        deadline.set(None);
        if interrupted.get() {
            return Err(CompileError {
                location: filename.to_owned(),
                message: format!("top-level code ran past the {:?} deadline", limits.deadline),
            });
        }
        loaded?;
        Ok(Engine {
            rt,
            ctx,
            deadline,
            interrupted,
            fetch,
            limits,
            poisoned: false,
        })
    }

    /// Runs `onRequest(request, settings)` to completion, within the deadline.
    pub fn call(&mut self, req: &FnRequest, settings_json: &str) -> Outcome {
        let start = Instant::now();
        let until = start + self.limits.deadline;
        self.deadline.set(Some(until));
        self.interrupted.set(false);
        let headers = serde_json::to_string(&req.headers).unwrap_or_else(|_| "[]".into());
        let mut settled = self.ctx.with(|ctx| {
            let run: Function = ctx.globals().get("__run").catch(&ctx).map_err(describe)?;
            run.call::<_, ()>((req.body.as_str(), headers, req.url.as_str(), settings_json))
                .catch(&ctx)
                .map_err(describe)
        });
        let outcome = loop {
            if let Err(e) = settled {
                break self.failed(e);
            }
            if let Err(e) = self.drain_jobs() {
                break self.failed(e);
            }
            match self.poll() {
                Ok(Some(done)) => break done.into_outcome(),
                Ok(None) => {}
                Err(e) => break self.failed(e),
            }
            settled = self.await_host(until);
        };
        self.deadline.set(None);
        self.fetch.abort_all();
        if outcome.error.as_ref().is_some_and(|e| {
            matches!(
                e.kind,
                ErrorKind::Timeout | ErrorKind::Memory | ErrorKind::Internal
            )
        }) {
            self.poisoned = true;
        }
        Outcome {
            duration: start.elapsed(),
            ..outcome
        }
    }

    fn drain_jobs(&self) -> Result<(), FnError> {
        loop {
            match self.rt.execute_pending_job() {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(job) => {
                    return Err(job.0.with(|ctx| {
                        describe(CaughtError::from_error(&ctx, rquickjs::Error::Exception))
                    }));
                }
            }
        }
    }

    fn poll(&self) -> Result<Option<Settled>, FnError> {
        let json: Option<String> = self.ctx.with(|ctx| {
            let poll: Function = ctx.globals().get("__poll").catch(&ctx).map_err(describe)?;
            poll.call(()).catch(&ctx).map_err(describe)
        })?;
        match json {
            None => Ok(None),
            Some(j) => serde_json::from_str(&j).map(Some).map_err(|e| {
                FnError::new(
                    ErrorKind::Internal,
                    format!("unreadable function result: {e}"),
                )
            }),
        }
    }

    /// Waits for the next awaited `fetch` or timer and hands it to JavaScript.
    fn await_host(&self, until: Instant) -> Result<(), FnError> {
        if self.fetch.outstanding() == 0 {
            return Err(FnError::new(
                ErrorKind::Other,
                "onRequest awaited something that never settles",
            ));
        }
        let Some(wake) = self.fetch.next(until) else {
            self.interrupted.set(true);
            return Err(FnError::new(ErrorKind::Timeout, ""));
        };
        self.ctx.with(|ctx| {
            let globals = ctx.globals();
            match wake {
                Wake::Fetch(done) => {
                    let f: Function = globals.get("__fetchDone").catch(&ctx).map_err(describe)?;
                    f.call::<_, ()>(done.into_args())
                }
                Wake::Timer(id) => {
                    let f: Function = globals.get("__timerDone").catch(&ctx).map_err(describe)?;
                    f.call::<_, ()>((id,))
                }
            }
            .catch(&ctx)
            .map_err(describe)
        })
    }

    fn failed(&mut self, e: FnError) -> Outcome {
        let e = if self.interrupted.get() {
            FnError::new(
                ErrorKind::Timeout,
                format!(
                    "the function ran past its {:?} deadline",
                    self.limits.deadline
                ),
            )
        } else {
            e
        };
        Outcome::failed(e)
    }
}

fn load(
    ctx: &Ctx<'_>,
    filename: &str,
    code: &str,
    fetch: Rc<FetchHost>,
    deadline: Rc<Cell<Option<Instant>>>,
) -> Result<(), CompileError> {
    let at = |e: CaughtError<'_>| {
        let e = describe(e);
        CompileError {
            location: e.location.unwrap_or_else(|| filename.to_owned()),
            message: format!("{}: {}", e.name, e.message),
        }
    };
    host::install(ctx, fetch, deadline)
        .catch(ctx)
        .map_err(&at)?;
    ctx.eval::<(), _>(PRELUDE).catch(ctx).map_err(&at)?;
    let mut opts = EvalOptions::default();
    opts.strict = false;
    opts.filename = Some(filename.to_owned());
    ctx.eval_with_options::<(), _>(code, opts)
        .catch(ctx)
        .map_err(&at)?;
    let defined: bool = ctx
        .eval("typeof onRequest === 'function'")
        .catch(ctx)
        .map_err(&at)?;
    if !defined {
        return Err(CompileError {
            location: filename.to_owned(),
            message: "the function must define `async function onRequest(request, settings)`"
                .into(),
        });
    }
    Ok(())
}

/// Turns a caught JavaScript error into an `FnError`, classifying it by its class name.
fn describe(e: CaughtError<'_>) -> FnError {
    match e {
        CaughtError::Exception(ex) => {
            let obj = ex.as_object();
            let name: String = obj.get("name").unwrap_or_else(|_| "Error".into());
            let message = ex.message().unwrap_or_default();
            let mut err = FnError::named(&name, message);
            err.stack = ex.stack().unwrap_or_default();
            err.location = stack_location(&err.stack);
            err
        }
        CaughtError::Value(v) => {
            let shown = v
                .as_string()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| format!("{:?}", v.type_of()));
            FnError::new(
                ErrorKind::Other,
                format!("threw a non-Error value: {shown}"),
            )
        }
        CaughtError::Error(rquickjs::Error::Allocation) => {
            FnError::new(ErrorKind::Memory, "out of memory")
        }
        CaughtError::Error(e) => FnError::new(ErrorKind::Internal, e.to_string()),
    }
}

/// `file:line:col` from the first frame of a QuickJS stack (`    at file:line:col`).
fn stack_location(stack: &str) -> Option<String> {
    let frame = stack.lines().next()?.trim();
    let at = frame.strip_prefix("at ")?;
    let at = at
        .rsplit_once('(')
        .map_or(at, |(_, inner)| inner.trim_end_matches(')'));
    let mut parts = at.rsplitn(3, ':');
    let (col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
    (col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok())
        .then(|| format!("{file}:{line}:{col}"))
}

/// Compiles a function without running a request: the syntax check `switchyard check` does.
pub fn check(filename: &str, code: &str, limits: Limits) -> Result<(), CompileError> {
    Engine::new(filename, code, limits, Rc::new(FetchHost::unavailable())).map(|_| ())
}

impl Limits {
    pub fn defaults() -> Limits {
        Limits {
            deadline: Duration::from_secs(5),
            memory: 128 << 20,
        }
    }
}
