//! The profile store (issue 5): one profile per person in `data_dir/profiles.redb`, kept in
//! sync by a thread of its own (at nice 10) that reads every accepted event from the log (its
//! position is stored in the same transaction as the profiles it changed, so a restart
//! neither skips nor repeats an event). `event.rs` reads the few fields a profile needs;
//! `model.rs` holds what an event does to a profile; `store.rs` the tables:
//! `profiles` (key → JSON), `links` (`user:<id>` / `anon:<id>` → key), `traits`
//! (`name \0 value \0 key`, for lookups by trait) and `recency` (`last_seen \0 key`: past
//! `MAX_PROFILES`, the least recently seen profiles are evicted).

pub mod event;
pub mod model;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cursor::CursorState;
use crate::log::reader::LogReader;
use crate::log::record::Kind;
use crate::log::segment::Position;
use crate::log::tail::{Tail, Wait};
use store::{Feed, Raw, e};
pub use store::{MAX_PROFILES, ProfileStore, StoreError};

/// How long the reader waits to gather more events after a small step.
const GATHER: Duration = Duration::from_millis(250);
/// One step (one synced transaction) applies at most this many events: bigger steps catch up
/// faster but keep more changed pages in memory until the commit.
const STEP_EVENTS: usize = 4000;

/// Nice value of the profile thread: under full load the durable ack of ingest comes
/// first, and the profiles catch up when the load eases (their backlog waits in the log,
/// which housekeeping keeps for them).
const NICE: i32 = 10;

/// Keeps the store in sync with the log until cancelled, on a thread of its own at a lower
/// CPU priority than ingest.
pub async fn run(store: Arc<ProfileStore>, tail: Tail, cancel: CancellationToken) {
    let handle = tokio::runtime::Handle::current();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("profiles".into())
        .spawn(move || {
            lower_priority();
            follow(&handle, &store, tail, &cancel);
            drop(done);
        });
    match spawned {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(error) => {
            tracing::error!(%error, "profiles: cannot start the thread; profiles are not updated")
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value belongs to the thread: this names the calling thread only.
    let me = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(me), NICE) {
        tracing::warn!(%error, "profiles: cannot lower the thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Applies the log to the store until cancelled. Waits and read errors go through `tail`
/// (`log/tail.rs`); a failed store write is retried after a second.
fn follow(
    rt: &tokio::runtime::Handle,
    store: &ProfileStore,
    mut tail: Tail,
    cancel: &CancellationToken,
) {
    let Some(mut state) = start(store, tail.log_dir()) else {
        return;
    };
    // Waits for `d` or cancellation; false when cancelled. On this thread's own clock, not
    // tokio's timer: at shutdown the runtime may be gone before the thread sees the
    // cancellation, and a tokio timer would then panic.
    let pause = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while !cancel.is_cancelled() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        false
    };
    loop {
        store.set_position(state.position);
        let end = tail.committed_seen().end;
        tail.gauge(state.next_seq);
        if state.position >= end {
            if rt.block_on(tail.wait_past(state.position, None, cancel)) == Wait::Cancelled {
                return;
            }
            continue;
        }
        match step(store, tail.log_dir(), state.clone(), end) {
            Ok(next) => {
                tail.read_ok();
                // Under a trickle of small commits, gather for a moment: each step is one
                // synced transaction, and profiles may lag ingest by this much.
                let small = next.next_seq.saturating_sub(state.next_seq) < STEP_EVENTS as u64 / 2;
                state = next;
                tail.gauge(state.next_seq);
                if small && !pause(GATHER) {
                    return;
                }
            }
            Err(StoreError::Log(error)) => {
                if !pause(tail.read_failed(&error)) {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "profiles: update failed; retrying");
                if !pause(Duration::from_secs(1)) {
                    return;
                }
            }
        }
    }
}

/// Where the store left off, or the start of the log; `None` (logged) if neither reads.
fn start(store: &ProfileStore, log_dir: &Path) -> Option<CursorState> {
    match store.cursor() {
        Ok(Some(s)) => Some(s),
        Ok(None) => match CursorState::earliest(log_dir) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::error!(%error, "profiles: cannot list the log; profiles are not updated");
                None
            }
        },
        Err(error) => {
            tracing::error!(%error, "profiles: cannot read the stored position; profiles are not updated");
            None
        }
    }
}

fn step(
    store: &ProfileStore,
    dir: &Path,
    from: CursorState,
    end: Position,
) -> Result<CursorState, StoreError> {
    let mut feed = LogFeed {
        reader: LogReader::new(dir, from.position),
        end,
        left: STEP_EVENTS,
        next_seq: from.next_seq,
    };
    store.apply(&mut feed)
}

/// The log records of one step, read one at a time.
struct LogFeed {
    reader: LogReader,
    end: Position,
    left: usize,
    next_seq: u64,
}

impl Feed for LogFeed {
    fn next_event(&mut self) -> Result<Option<Raw>, StoreError> {
        while self.left > 0 {
            let Some(r) = self.reader.read(self.end, 1, usize::MAX).map_err(e)?.pop() else {
                return Ok(None);
            };
            self.left -= 1;
            self.next_seq = r.record.seq + 1;
            if r.record.entry.kind == Kind::Accepted {
                return Ok(Some((r.record.entry.body, r.record.entry.source)));
            }
        }
        Ok(None)
    }

    fn cursor(&self) -> CursorState {
        CursorState {
            position: self.reader.position(),
            next_seq: self.next_seq,
            done: Vec::new(),
        }
    }
}
