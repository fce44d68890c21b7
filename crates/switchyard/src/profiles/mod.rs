//! The profile store (issue 5): one profile per person in `data_dir/profiles.redb`, kept in
//! sync by a task that reads every accepted event from the log (its position is stored in
//! the same transaction as the profiles it changed, so a restart neither skips nor repeats
//! an event). `model.rs` holds what an event does to a profile.
//!
//! Tables: `profiles` (key → JSON), `links` (`user:<id>` / `anon:<id>` → key) and `traits`
//! (`name \0 value \0 key`, for lookups by trait).

pub mod model;

use std::path::Path;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cursor::CursorState;
use crate::log::Committed;
use crate::log::reader::LogReader;
use crate::log::record::Kind;
use crate::log::segment::{self, Position};
use model::Profile;

const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
const TRAITS: TableDefinition<&str, u8> = TableDefinition::new("traits");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Longest trait value indexed for lookups.
const MAX_INDEXED: usize = 256;

#[derive(Debug, Error)]
#[error("profile store: {0}")]
pub struct StoreError(String);

fn e(err: impl std::fmt::Display) -> StoreError {
    StoreError(err.to_string())
}

pub struct ProfileStore {
    db: Database,
    /// How far the store has read the log: log segments before it must not be reclaimed.
    position: std::sync::Mutex<Option<Position>>,
}

fn index_key(name: &str, value: &Value, key: &str) -> Option<String> {
    let v = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (v.len() <= MAX_INDEXED && !name.contains('\0') && !v.contains('\0'))
        .then(|| format!("{name}\0{v}\0{key}"))
}

impl ProfileStore {
    pub fn open(path: &Path) -> Result<ProfileStore, StoreError> {
        let db = Database::create(path).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(PROFILES).map_err(e)?;
        txn.open_table(LINKS).map_err(e)?;
        txn.open_table(TRAITS).map_err(e)?;
        txn.open_table(META).map_err(e)?;
        txn.commit().map_err(e)?;
        let store = ProfileStore {
            db,
            position: std::sync::Mutex::new(None),
        };
        // Known from the first housekeeping tick on, before the task has started.
        if let Some(c) = store.cursor()? {
            store.set_position(c.position);
        }
        Ok(store)
    }

    /// The log position the store has applied up to, once its task has started.
    pub fn position(&self) -> Option<Position> {
        *self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_position(&self, p: Position) {
        *self.position.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
    }

    /// The profile of a user id or anonymous id.
    pub fn get(&self, id: &str) -> Result<Option<Profile>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let links = txn.open_table(LINKS).map_err(e)?;
        let profiles = txn.open_table(PROFILES).map_err(e)?;
        for link in [format!("user:{id}"), format!("anon:{id}")] {
            if let Some(key) = links.get(link.as_str()).map_err(e)?
                && let Some(bytes) = profiles.get(key.value()).map_err(e)?
            {
                return serde_json::from_slice(bytes.value()).map(Some).map_err(e);
            }
        }
        Ok(None)
    }

    /// Profiles whose trait `name` currently equals `value` (at most `limit`).
    pub fn find_by_trait(
        &self,
        name: &str,
        value: &str,
        limit: usize,
    ) -> Result<Vec<Profile>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let traits = txn.open_table(TRAITS).map_err(e)?;
        let profiles = txn.open_table(PROFILES).map_err(e)?;
        let prefix = format!("{name}\0{value}\0");
        let mut out = Vec::new();
        for row in traits.range(prefix.as_str()..).map_err(e)? {
            let (k, _) = row.map_err(e)?;
            let Some(key) = k.value().strip_prefix(prefix.as_str()).map(str::to_owned) else {
                break;
            };
            if let Some(bytes) = profiles.get(key.as_str()).map_err(e)? {
                out.push(serde_json::from_slice(bytes.value()).map_err(e)?);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn cursor(&self) -> Result<Option<CursorState>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let meta = txn.open_table(META).map_err(e)?;
        let v = meta.get("cursor").map_err(e)?;
        v.map(|b| serde_json::from_slice(b.value()).map_err(e))
            .transpose()
    }

    /// Applies a batch of events and moves the stored position, in one transaction.
    fn apply(
        &self,
        events: &[(Map<String, Value>, String)],
        next: &CursorState,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        for (ev, source) in events {
            apply_one(&txn, ev, source)?;
        }
        let bytes = serde_json::to_vec(next).map_err(e)?;
        txn.open_table(META)
            .map_err(e)?
            .insert("cursor", bytes.as_slice())
            .map_err(e)?;
        txn.commit().map_err(e)
    }
}

fn resolve(txn: &WriteTransaction, link: &str) -> Result<Option<String>, StoreError> {
    let links = txn.open_table(LINKS).map_err(e)?;
    let v = links.get(link).map_err(e)?;
    Ok(v.map(|k| k.value().to_owned()))
}

fn take(txn: &WriteTransaction, key: &str) -> Result<Option<Profile>, StoreError> {
    let mut profiles = txn.open_table(PROFILES).map_err(e)?;
    let v = profiles.remove(key).map_err(e)?;
    let Some(bytes) = v else { return Ok(None) };
    let p: Profile = serde_json::from_slice(bytes.value()).map_err(e)?;
    drop(bytes);
    let mut traits = txn.open_table(TRAITS).map_err(e)?;
    for (name, t) in &p.traits {
        if let Some(k) = index_key(name, &t.value, key) {
            traits.remove(k.as_str()).map_err(e)?;
        }
    }
    Ok(Some(p))
}

fn put(txn: &WriteTransaction, p: &Profile) -> Result<(), StoreError> {
    let mut links = txn.open_table(LINKS).map_err(e)?;
    for u in &p.user_ids {
        links
            .insert(format!("user:{u}").as_str(), p.id.as_str())
            .map_err(e)?;
    }
    for a in &p.anonymous_ids {
        links
            .insert(format!("anon:{a}").as_str(), p.id.as_str())
            .map_err(e)?;
    }
    let mut traits = txn.open_table(TRAITS).map_err(e)?;
    for (name, t) in &p.traits {
        if let Some(k) = index_key(name, &t.value, &p.id) {
            traits.insert(k.as_str(), 0).map_err(e)?;
        }
    }
    let bytes = serde_json::to_vec(p).map_err(e)?;
    txn.open_table(PROFILES)
        .map_err(e)?
        .insert(p.id.as_str(), bytes.as_slice())
        .map_err(e)?;
    Ok(())
}

/// Finds (or starts) the event's profile, folds in any other profile the event proves is the
/// same person (anonymousId seen with userId, alias previousId), and applies the event.
fn apply_one(
    txn: &WriteTransaction,
    ev: &Map<String, Value>,
    source: &str,
) -> Result<(), StoreError> {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let key = match (s("userId"), s("anonymousId")) {
        (Some(u), _) => resolve(txn, &format!("user:{u}"))?.unwrap_or_else(|| u.to_owned()),
        (None, Some(a)) => {
            resolve(txn, &format!("anon:{a}"))?.unwrap_or_else(|| format!("anonymous:{a}"))
        }
        (None, None) => return Ok(()),
    };
    let mut profile = take(txn, &key)?.unwrap_or_else(|| Profile::new(&key));
    let mut others = Vec::new();
    if s("userId").is_some()
        && let Some(a) = s("anonymousId")
    {
        others
            .push(resolve(txn, &format!("anon:{a}"))?.unwrap_or_else(|| format!("anonymous:{a}")));
    }
    if s("type") == Some("alias")
        && let Some(p) = s("previousId")
    {
        others.push(resolve(txn, &format!("user:{p}"))?.unwrap_or_else(|| p.to_owned()));
        others
            .push(resolve(txn, &format!("anon:{p}"))?.unwrap_or_else(|| format!("anonymous:{p}")));
    }
    for other in others.into_iter().filter(|o| *o != key) {
        if let Some(o) = take(txn, &other)? {
            profile.absorb(o);
        }
    }
    profile.apply(ev, source);
    put(txn, &profile)
}

/// Keeps the store in sync with the log until cancelled.
pub async fn run(
    store: std::sync::Arc<ProfileStore>,
    log_dir: std::path::PathBuf,
    mut committed: watch::Receiver<Committed>,
    cancel: CancellationToken,
) {
    let mut state = match store.cursor() {
        Ok(Some(s)) => s,
        Ok(None) => {
            let first = segment::list_segments(&log_dir)
                .ok()
                .and_then(|s| s.first().copied())
                .unwrap_or(0);
            CursorState {
                position: Position {
                    segment: first,
                    offset: 0,
                },
                next_seq: first,
                done: Vec::new(),
            }
        }
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
            Ok(Ok(next)) => state = next,
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
