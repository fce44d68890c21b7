//! Destinations: each runs its own task that reads the log through its own durable cursor,
//! so a slow destination only grows its own backlog (on disk), never ingest's or another
//! destination's.
//!
//! Shared by every type: this file (`DestinationStatus`, what the process can see of a
//! running destination, and `Runner::prepare`, the cursor set-up), `backlog.rs` (backlog
//! caps; `backlog/damage.rs`, `log_damage` dead letters) and `replay.rs` (replay from the log
//! for the batch runners).
//!
//! One folder per type (docs/destinations.md), each with its config, validation, runtime and
//! tests:
//! - `file/`: JSON lines on disk; its own runner (`mod.rs`), the sink, `config.rs`.
//! - `postgres/`: Segment's warehouse layout; its own runner, `config.rs` and the loader.
//! - `webhook/`, `segment/`, `nats/`: `config.rs` and how the type builds or sends a
//!   delivery; the delivery engine (`delivery/`) runs them.
//!
//! A new type needs: `destinations/<type>/mod.rs` and `config.rs` (its settings struct, raw
//! settings and `compile_<type>`) and its runtime in that folder; a `DestinationKind`
//! variant (`config/mod.rs`, with `type_name`); one line in the registry `kind` in
//! `config/destinations.rs`; and the docs. A batch type adds its task in `app.rs`; a type
//! the delivery engine sends adds instead a `Route` variant (`delivered`), its arm in
//! `delivery/plan.rs` and `delivery/worker/send.rs`, and its name to the engine's types in
//! `config/destinations.rs` (which may set `delivery:`, `retry:`, `mappings:`).

pub mod backlog;
pub mod file;
pub mod nats;
pub mod postgres;
pub mod replay;
pub mod segment;
pub mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::{DestinationConfig, Start};
use crate::cursor::{CursorFile, CursorState};
use crate::log::Committed;
use crate::log::segment::Position;
use crate::telemetry::Metrics;
pub use file::{FileSink, rotated_path};

/// What the rest of the process can see of a running destination.
pub struct DestinationStatus {
    pub id: String,
    next_seq: AtomicU64,
    position: Mutex<Position>,
    last_error: Mutex<Option<String>>,
    /// Wakes the destination's worker (dead-letter replay added retries, or a replay from
    /// the log was started).
    pub wake: tokio::sync::Notify,
    /// Whether a replay from the log is running, and how many events it has sent.
    pub replaying: std::sync::atomic::AtomicBool,
    pub replayed: AtomicU64,
}

impl DestinationStatus {
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire)
    }
    pub fn position(&self) -> Position {
        *self.position.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
    pub fn set(&self, s: &CursorState) {
        self.next_seq.store(s.next_seq, Ordering::Release);
        *self.position.lock().unwrap_or_else(|p| p.into_inner()) = s.position;
    }
}

impl crate::log::tail::ShowError for DestinationStatus {
    fn show_read_error(&self, error: Option<&str>) {
        match error {
            Some(e) => self.set_error(Some(e.to_owned())),
            None => {
                let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
                if last
                    .as_deref()
                    .is_some_and(|e| e.starts_with(crate::log::tail::READ_FAILED))
                {
                    *last = None;
                }
            }
        }
    }
}

pub struct Runner {
    pub config: DestinationConfig,
    pub data_dir: std::path::PathBuf,
    pub log_dir: std::path::PathBuf,
    pub committed: watch::Receiver<Committed>,
    pub metrics: Arc<Metrics>,
    /// The destination's backlog caps (`backlog.rs`), checked before each read.
    pub backlog: backlog::Backlog,
}

impl Runner {
    /// Loads (or creates) the cursor; the returned status is live from then on.
    pub fn prepare(&self) -> std::io::Result<(CursorState, Arc<DestinationStatus>)> {
        let cursor = CursorFile::new(&self.data_dir, &self.config.id);
        let state = match cursor.load_checked(&self.log_dir, *self.committed.borrow())? {
            Some(s) => s,
            None => {
                let committed = *self.committed.borrow();
                let s = match self.config.start {
                    Start::Latest => CursorState {
                        position: committed.end,
                        next_seq: committed.next_seq,
                        done: Vec::new(),
                    },
                    Start::Earliest => CursorState::earliest(&self.log_dir)?,
                };
                cursor.save(&s)?;
                s
            }
        };
        let status = Arc::new(DestinationStatus {
            id: self.config.id.clone(),
            next_seq: AtomicU64::new(state.next_seq),
            position: Mutex::new(state.position),
            last_error: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            replaying: std::sync::atomic::AtomicBool::new(false),
            replayed: AtomicU64::new(0),
        });
        Ok((state, status))
    }
}
