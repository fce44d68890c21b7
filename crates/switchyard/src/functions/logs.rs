//! The function log: per source, the most recent runs' console output and errors, bounded in
//! entries (in memory; it is a debugging aid, like Segment's, not an audit trail).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use super::{FnError, LogLine};

/// Runs kept per source.
pub const RUNS_KEPT: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct RunLog {
    /// Unix milliseconds when the run ended.
    pub at_ms: i64,
    /// `ok`, or the error kind (`validation`, `retry`, `timeout`, ...).
    pub outcome: String,
    pub duration_ms: f64,
    pub events: usize,
    pub logs: Vec<LogLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FnError>,
    /// Where the request came from: `webhook` or `retry`.
    pub trigger: &'static str,
    /// The messageIds of the events this run emitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
}

pub struct FunctionLogs {
    runs: HashMap<String, Mutex<VecDeque<RunLog>>>,
}

impl FunctionLogs {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a str>) -> FunctionLogs {
        FunctionLogs {
            runs: sources
                .into_iter()
                .map(|s| (s.to_owned(), Mutex::new(VecDeque::new())))
                .collect(),
        }
    }

    pub fn has_source(&self, source: &str) -> bool {
        self.runs.contains_key(source)
    }

    pub fn push(&self, source: &str, run: RunLog) {
        let Some(q) = self.runs.get(source) else {
            return;
        };
        let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == RUNS_KEPT {
            q.pop_front();
        }
        q.push_back(run);
    }

    /// The newest run of `source` that emitted `message_id`.
    pub fn find(&self, source: &str, message_id: &str) -> Option<RunLog> {
        let q = self.runs.get(source)?;
        let q = q.lock().unwrap_or_else(|p| p.into_inner());
        q.iter()
            .rev()
            .find(|r| r.message_ids.iter().any(|m| m == message_id))
            .cloned()
    }

    /// Newest first, at most `limit`.
    pub fn recent(&self, source: &str, limit: usize) -> Vec<RunLog> {
        self.runs.get(source).map_or_else(Vec::new, |q| {
            let q = q.lock().unwrap_or_else(|p| p.into_inner());
            q.iter().rev().take(limit).cloned().collect()
        })
    }
}
