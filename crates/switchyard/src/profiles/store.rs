//! `profiles.redb`: the profiles, their identity links, the trait index, the recency order
//! that bounds the store, and the log position they reflect.

use std::collections::HashMap;
use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde_json::{Map, Value};
use thiserror::Error;

use super::model::Profile;
use crate::cursor::CursorState;
use crate::log::segment::Position;

const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
const TRAITS: TableDefinition<&str, u8> = TableDefinition::new("traits");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `last_seen \0 key`: the order in which profiles are evicted past the cap.
const RECENCY: TableDefinition<&str, u8> = TableDefinition::new("recency");
/// Profiles kept at most; past this the least recently seen are evicted.
pub const MAX_PROFILES: u64 = 5_000_000;
/// Longest trait value indexed for lookups.
const MAX_INDEXED: usize = 256;

#[derive(Debug, Error)]
#[error("profile store: {0}")]
pub struct StoreError(String);

pub(super) fn e(err: impl std::fmt::Display) -> StoreError {
    StoreError(err.to_string())
}

pub struct ProfileStore {
    db: Database,
    /// How far the store has read the log: log segments before it must not be reclaimed.
    position: std::sync::Mutex<Option<Position>>,
    max_profiles: u64,
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
        Self::open_with_cap(path, MAX_PROFILES)
    }

    /// `open` with another cap on the number of profiles.
    pub fn open_with_cap(path: &Path, max_profiles: u64) -> Result<ProfileStore, StoreError> {
        // A small page cache: the profile store must not grow the server's memory with traffic.
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(PROFILES).map_err(e)?;
        txn.open_table(LINKS).map_err(e)?;
        txn.open_table(TRAITS).map_err(e)?;
        txn.open_table(META).map_err(e)?;
        txn.open_table(RECENCY).map_err(e)?;
        txn.commit().map_err(e)?;
        let store = ProfileStore {
            db,
            position: std::sync::Mutex::new(None),
            max_profiles: max_profiles.max(1),
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

    pub(super) fn set_position(&self, p: Position) {
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

    pub(super) fn cursor(&self) -> Result<Option<CursorState>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let meta = txn.open_table(META).map_err(e)?;
        let v = meta.get("cursor").map_err(e)?;
        v.map(|b| serde_json::from_slice(b.value()).map_err(e))
            .transpose()
    }

    /// Applies a batch of events and moves the stored position, in one transaction.
    pub(super) fn apply(
        &self,
        events: &[(Map<String, Value>, String)],
        next: &CursorState,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        // Each profile a batch touches is read once and written once.
        let mut batch = Batch::default();
        for (ev, source) in events {
            apply_one(&txn, &mut batch, ev, source)?;
        }
        for p in batch.profiles.values() {
            put(&txn, p)?;
        }
        evict(&txn, self.max_profiles)?;
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
    let recency = format!("{}\0{key}", p.last_seen);
    txn.open_table(RECENCY)
        .map_err(e)?
        .remove(recency.as_str())
        .map_err(e)?;
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
    let recency = format!("{}\0{}", p.last_seen, p.id);
    txn.open_table(RECENCY)
        .map_err(e)?
        .insert(recency.as_str(), 0)
        .map_err(e)?;
    let bytes = serde_json::to_vec(p).map_err(e)?;
    txn.open_table(PROFILES)
        .map_err(e)?
        .insert(p.id.as_str(), bytes.as_slice())
        .map_err(e)?;
    Ok(())
}

/// Keeps the store bounded: past `max` profiles, the least recently seen go, with their
/// links and trait index entries.
fn evict(txn: &WriteTransaction, max: u64) -> Result<(), StoreError> {
    loop {
        if txn.open_table(PROFILES).map_err(e)?.len().map_err(e)? <= max {
            return Ok(());
        }
        let oldest = {
            let recency = txn.open_table(RECENCY).map_err(e)?;
            let first = recency.first().map_err(e)?;
            first.map(|(k, _)| k.value().to_owned())
        };
        let Some(oldest) = oldest else { return Ok(()) };
        let key = oldest
            .split_once('\0')
            .map_or(oldest.as_str(), |(_, k)| k)
            .to_owned();
        txn.open_table(RECENCY)
            .map_err(e)?
            .remove(oldest.as_str())
            .map_err(e)?;
        if let Some(p) = take(txn, &key)? {
            let mut links = txn.open_table(LINKS).map_err(e)?;
            let users = p.user_ids.iter().map(|u| format!("user:{u}"));
            for link in users.chain(p.anonymous_ids.iter().map(|a| format!("anon:{a}"))) {
                let here = links
                    .get(link.as_str())
                    .map_err(e)?
                    .is_some_and(|v| v.value() == key);
                if here {
                    links.remove(link.as_str()).map_err(e)?;
                }
            }
        }
    }
}

/// The profiles of one batch, taken out of the tables until the batch is written, and the
/// identity links made during it.
#[derive(Default)]
struct Batch {
    profiles: HashMap<String, Profile>,
    links: HashMap<String, String>,
}

impl Batch {
    fn resolve(&self, txn: &WriteTransaction, link: &str) -> Result<Option<String>, StoreError> {
        match self.links.get(link) {
            Some(k) => Ok(Some(k.clone())),
            None => resolve(txn, link),
        }
    }

    fn take(&mut self, txn: &WriteTransaction, key: &str) -> Result<Option<Profile>, StoreError> {
        match self.profiles.remove(key) {
            Some(p) => Ok(Some(p)),
            None => take(txn, key),
        }
    }
}

/// Finds (or starts) the event's profile, folds in any other profile the event proves is the
/// same person (anonymousId seen with userId, alias previousId), and applies the event.
fn apply_one(
    txn: &WriteTransaction,
    batch: &mut Batch,
    ev: &Map<String, Value>,
    source: &str,
) -> Result<(), StoreError> {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let key = match (s("userId"), s("anonymousId")) {
        (Some(u), _) => batch
            .resolve(txn, &format!("user:{u}"))?
            .unwrap_or_else(|| u.to_owned()),
        (None, Some(a)) => batch
            .resolve(txn, &format!("anon:{a}"))?
            .unwrap_or_else(|| format!("anonymous:{a}")),
        (None, None) => return Ok(()),
    };
    let mut profile = batch.take(txn, &key)?.unwrap_or_else(|| Profile::new(&key));
    let mut others = Vec::new();
    if s("userId").is_some()
        && let Some(a) = s("anonymousId")
    {
        let other = batch.resolve(txn, &format!("anon:{a}"))?;
        others.push(other.unwrap_or_else(|| format!("anonymous:{a}")));
    }
    if s("type") == Some("alias")
        && let Some(p) = s("previousId")
    {
        let user = batch.resolve(txn, &format!("user:{p}"))?;
        others.push(user.unwrap_or_else(|| p.to_owned()));
        let anon = batch.resolve(txn, &format!("anon:{p}"))?;
        others.push(anon.unwrap_or_else(|| format!("anonymous:{p}")));
    }
    let mut absorbed = false;
    for other in others.into_iter().filter(|o| *o != key) {
        if let Some(o) = batch.take(txn, &other)? {
            profile.absorb(o);
            absorbed = true;
        }
    }
    profile.apply(ev, source);
    // Later events of this batch must find this profile by any id it now has: all of them
    // after a merge, otherwise the ids this event brought.
    let links: Vec<String> = if absorbed {
        let users = profile.user_ids.iter().map(|u| format!("user:{u}"));
        users
            .chain(profile.anonymous_ids.iter().map(|a| format!("anon:{a}")))
            .collect()
    } else {
        let mut l: Vec<String> = s("userId")
            .map(|u| format!("user:{u}"))
            .into_iter()
            .collect();
        l.extend(s("anonymousId").map(|a| format!("anon:{a}")));
        l.extend(s("previousId").map(|p| format!("user:{p}")));
        l
    };
    for link in links {
        batch.links.insert(link, key.clone());
    }
    batch.profiles.insert(key, profile);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev(v: Value) -> (Map<String, Value>, String) {
        (v.as_object().unwrap().clone(), "web".to_owned())
    }

    #[test]
    fn the_store_is_bounded_and_evicts_the_least_recently_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::open_with_cap(&dir.path().join("p.redb"), 2).unwrap();
        let cursor = CursorState {
            position: Position {
                segment: 0,
                offset: 0,
            },
            next_seq: 0,
            done: Vec::new(),
        };
        let events: Vec<_> = [("u1", 1), ("u2", 2), ("u3", 3), ("u1", 4)]
            .into_iter()
            .map(|(u, d)| ev(json!({"type":"identify","userId":u,"anonymousId":format!("a-{u}"),"messageId":format!("m{d}"),
                "timestamp":format!("2026-01-0{d}T00:00:00.000Z"),"traits":{"email":format!("{u}@x.io")}})))
            .collect();
        store.apply(&events[..3], &cursor).unwrap();
        assert!(
            store.get("u1").unwrap().is_none(),
            "u1 was the least recently seen"
        );
        assert!(
            store.get("a-u1").unwrap().is_none(),
            "its links went with it"
        );
        assert!(
            store
                .find_by_trait("email", "u1@x.io", 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.get("a-u3").unwrap().map(|p| p.id),
            Some("u3".to_owned())
        );
        store.apply(&events[3..], &cursor).unwrap();
        assert!(store.get("u2").unwrap().is_none() && store.get("u1").unwrap().is_some());
        assert_eq!(store.cursor().unwrap(), Some(cursor));
    }
}
