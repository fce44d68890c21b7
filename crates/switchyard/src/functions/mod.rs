//! Source functions (docs/functions.md): Segment's `onRequest(request, settings)` run in
//! embedded QuickJS (rquickjs).
//!
//! - `prelude.js`: the globals Segment's runtime provides (Segment.*, error classes, URL,
//!   Headers, fetch, console capture).
//! - `host.rs`: the Rust side of atob/btoa, randomUUID and fetch.
//! - `engine.rs`: one function in its own runtime (memory cap) with a deadline that interrupts
//!   even `while(true){}`.
//! - `pool.rs`: worker threads behind a bounded queue, with a per-source share so a runaway
//!   function cannot occupy every worker.
//! - `logs.rs`: the bounded per-source function log; `saved.rs`: test runs of saved requests.

pub mod engine;
pub mod host;
pub mod logs;
pub mod pool;
pub mod saved;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use engine::{CompileError, check};
pub use pool::{Pool, PoolError};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Duration,
    /// Bytes one function's runtime may allocate.
    pub memory: usize,
}

/// The request a function sees.
#[derive(Debug, Clone, Default)]
pub struct FnRequest {
    /// The raw body as text (invalid UTF-8 replaced).
    pub body: String,
    /// Header names and values, in arrival order.
    pub headers: Vec<(String, String)>,
    pub url: String,
}

/// How a run ended when it did not succeed; decides the HTTP answer (docs/functions.md#outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Validation,
    InvalidEventPayload,
    EventNotSupported,
    Retry,
    Other,
    Timeout,
    Memory,
    /// The engine itself failed (not the function's fault).
    Internal,
}

#[derive(Debug, Clone, Serialize)]
pub struct FnError {
    pub kind: ErrorKind,
    /// The JavaScript class name, e.g. `ValidationError`.
    pub name: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stack: String,
    #[serde(skip)]
    pub location: Option<String>,
}

impl FnError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> FnError {
        let name = match kind {
            ErrorKind::Timeout => "TimeoutError",
            ErrorKind::Memory => "OutOfMemory",
            ErrorKind::Internal => "InternalError",
            _ => "Error",
        };
        FnError {
            kind,
            name: name.into(),
            message: message.into(),
            stack: String::new(),
            location: None,
        }
    }

    /// Classifies a thrown error by its class name (docs/functions.md#outcomes).
    pub fn named(name: &str, message: String) -> FnError {
        let kind = match name {
            "ValidationError" => ErrorKind::Validation,
            "InvalidEventPayload" => ErrorKind::InvalidEventPayload,
            "EventNotSupported" => ErrorKind::EventNotSupported,
            "RetryError" => ErrorKind::Retry,
            "InternalError" if message.contains("out of memory") => ErrorKind::Memory,
            _ => ErrorKind::Other,
        };
        FnError {
            kind,
            name: name.to_owned(),
            message,
            stack: String::new(),
            location: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// What one run produced. Events and objects are JSON as the function built them.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Box<RawValue>>,
    /// Indexes into `events` of those emitted without a `messageId`.
    pub without_message_id: Vec<usize>,
    /// `Segment.set` objects: `{collection, id, properties}`.
    pub objects: Vec<Box<RawValue>>,
    pub logs: Vec<LogLine>,
    pub error: Option<FnError>,
    pub duration: Duration,
}

impl Outcome {
    pub fn failed(e: FnError) -> Outcome {
        Outcome {
            error: Some(e),
            ..Outcome::default()
        }
    }
}

/// The prelude's `__poll()` result.
#[derive(Debug, Deserialize)]
pub(crate) struct Settled {
    ok: bool,
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    stack: String,
    #[serde(default)]
    logs: Vec<LogLine>,
    #[serde(default)]
    events: Vec<Box<RawValue>>,
    #[serde(default)]
    no_id: Vec<usize>,
    #[serde(default)]
    objects: Vec<Box<RawValue>>,
}

/// Console lines one run keeps, and characters of them (the prelude's `MAX_LINES` and
/// `MAX_LOG_BYTES`); past either, one marker line says the rest was dropped.
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_CHARS: usize = 16_384;

impl Settled {
    /// The run's outcome. The prelude already enforces the console and emit limits, but its
    /// output passes through globals the function can replace (`JSON.stringify`,
    /// `Array.prototype.push`, `toJSON`), so the limits are enforced again here, on what
    /// actually arrived.
    fn into_outcome(self) -> Outcome {
        let logs = bounded_logs(self.logs);
        // A failed run emits nothing (docs/functions.md#outcomes), but its console output is kept.
        if !self.ok {
            let mut e = FnError::named(&self.name, self.message);
            e.stack = self.stack;
            return Outcome {
                logs,
                error: Some(e),
                ..Outcome::default()
            };
        }
        let count = self.events.len() + self.objects.len();
        let chars: usize = self
            .events
            .iter()
            .chain(&self.objects)
            .map(|r| r.get().len())
            .sum();
        let over = if count > host::MAX_EMITTED_PER_RUN {
            Some(format!(
                "a run may emit at most {} events and objects",
                host::MAX_EMITTED_PER_RUN
            ))
        } else if chars > host::MAX_EMITTED_BYTES {
            Some(format!(
                "a run may emit at most {} characters of events and objects as JSON; this one emitted {chars}",
                host::MAX_EMITTED_BYTES
            ))
        } else {
            None
        };
        if let Some(why) = over {
            return Outcome {
                logs,
                error: Some(FnError::named(
                    "EmitLimitError",
                    format!("{why}; nothing was emitted"),
                )),
                ..Outcome::default()
            };
        }
        Outcome {
            events: self.events,
            without_message_id: self.no_id,
            objects: self.objects,
            logs,
            error: None,
            duration: Duration::ZERO,
        }
    }
}

/// At most `MAX_LOG_LINES` lines and `MAX_LOG_CHARS` characters; if anything was cut
/// (by the prelude or here), one marker line says so.
fn bounded_logs(logs: Vec<LogLine>) -> Vec<LogLine> {
    const MARKER: &str = "[switchyard] further console output of this run was dropped (limit 100 lines, 16384 bytes)";
    let mut out = Vec::with_capacity(logs.len().min(MAX_LOG_LINES + 1));
    let mut chars = 0;
    let mut cut = false;
    for mut line in logs {
        let n = line.message.chars().count();
        if line.message == MARKER || out.len() == MAX_LOG_LINES || chars + n > MAX_LOG_CHARS {
            cut = true;
            break;
        }
        chars += n;
        if !matches!(
            line.level.as_str(),
            "log" | "info" | "debug" | "warn" | "error"
        ) {
            line.level = "log".into();
        }
        out.push(line);
    }
    if cut {
        out.push(LogLine {
            level: "warn".into(),
            message: MARKER.into(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
