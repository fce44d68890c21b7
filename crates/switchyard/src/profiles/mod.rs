//! The profile store (issue 5): one profile per person in `data_dir/profiles.redb`, kept in
//! sync by a task that reads every accepted event from the log (its position is stored in
//! the same transaction as the profiles it changed, so a restart neither skips nor repeats
//! an event). `model.rs` holds what an event does to a profile; `store.rs` the tables:
//! `profiles` (key → JSON), `links` (`user:<id>` / `anon:<id>` → key), `traits`
//! (`name \0 value \0 key`, for lookups by trait) and `recency` (`last_seen \0 key`: past
//! `MAX_PROFILES`, the least recently seen profiles are evicted).

pub mod model;
mod store;

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cursor::CursorState;
use crate::log::Committed;
use crate::log::reader::LogReader;
use crate::log::record::Kind;
use crate::log::segment::Position;
use store::e;
pub use store::{MAX_PROFILES, ProfileStore, StoreError};

/// How long the reader waits to gather more events after a small step.
const GATHER: Duration = Duration::from_millis(250);

/// Keeps the store in sync with the log until cancelled.
pub async fn run(
    store: std::sync::Arc<ProfileStore>,
    log_dir: std::path::PathBuf,
    mut committed: watch::Receiver<Committed>,
    cancel: CancellationToken,
) {
    let mut state = match store.cursor() {
        Ok(Some(s)) => s,
        Ok(None) => match CursorState::earliest(&log_dir) {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(%error, "profiles: cannot list the log; profiles are not updated");
                return;
            }
        },
        Err(error) => {
            tracing::error!(%error, "profiles: cannot read the stored position; profiles are not updated");
            return;
        }
    };
    loop {
        store.set_position(state.position);
        let end = committed.borrow_and_update().end;
        if state.position >= end {
            tokio::select! {
                changed = committed.changed() => if changed.is_err() { return },
                () = cancel.cancelled() => return,
            }
            continue;
        }
        let (s, dir, from) = (store.clone(), log_dir.clone(), state.clone());
        match tokio::task::spawn_blocking(move || step(&s, &dir, from, end)).await {
            Ok(Ok(next)) => {
                // Under a trickle of small commits, gather for a moment: each step is one
                // synced transaction, and profiles may lag ingest by this much.
                let small = next.next_seq.saturating_sub(state.next_seq) < 1000;
                state = next;
                if small {
                    tokio::select! {
                        () = tokio::time::sleep(GATHER) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "profiles: update failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => return,
                }
            }
            Err(_) => return,
        }
    }
}

fn step(
    store: &ProfileStore,
    dir: &Path,
    from: CursorState,
    end: Position,
) -> Result<CursorState, StoreError> {
    let mut reader = LogReader::new(dir, from.position);
    let batch = reader.read(end, 2000, 8 << 20).map_err(e)?;
    let next = match batch.last() {
        Some(last) => CursorState {
            position: last.next,
            next_seq: last.record.seq + 1,
            done: Vec::new(),
        },
        None => CursorState {
            position: reader.position(),
            ..from
        },
    };
    let events: Vec<(Map<String, Value>, String)> = batch
        .iter()
        .filter(|r| r.record.entry.kind == Kind::Accepted)
        .filter_map(|r| {
            let ev = serde_json::from_slice::<Map<String, Value>>(&r.record.entry.body).ok()?;
            Some((ev, r.record.entry.source.to_string()))
        })
        .collect();
    store.apply(&events, &next)?;
    Ok(next)
}
