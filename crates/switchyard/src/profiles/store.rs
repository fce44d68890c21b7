//! `profiles.redb`: the profiles, their identity links, the trait index, the recency order
//! that bounds the store, and the log position they reflect.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde_json::Value;

use super::event::ProfileEvent;
use super::model::Profile;
use crate::cursor::CursorState;
use crate::log::segment::Position;
use crate::redb_store::Db;

const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
const TRAITS: TableDefinition<&str, u8> = TableDefinition::new("traits");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `last_seen \0 key`: the order in which profiles are evicted past the cap.
const RECENCY: TableDefinition<&str, u8> = TableDefinition::new("recency");
/// Profiles kept at most by default (`storage.max_profiles`); past it the least recently seen
/// are evicted.
pub const MAX_PROFILES: u64 = 5_000_000;
/// Longest trait value indexed for lookups.
const MAX_INDEXED: usize = 256;

pub use crate::redb_store::StoreError;
pub(super) use crate::redb_store::store_err as e;
use crate::redb_store::{decode_row, encode_row};

pub struct ProfileStore {
    db: Db,
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
    // Names starting with \u{1} or \u{2} would read as other entries in `index_entries`.
    let plain = !name.starts_with(['\u{1}', '\u{2}']) && !name.contains('\0');
    (v.len() <= MAX_INDEXED && plain && !v.contains('\0')).then(|| format!("{name}\0{v}\0{key}"))
}

/// Creates the tables of a new store (see `redb_store` for damage and I/O errors).
fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(PROFILES)?;
    txn.open_table(LINKS)?;
    txn.open_table(TRAITS)?;
    txn.open_table(META)?;
    txn.open_table(RECENCY)?;
    txn.commit()?;
    Ok(())
}

impl ProfileStore {
    pub fn open(path: &Path) -> Result<ProfileStore, StoreError> {
        Self::open_with_cap(path, MAX_PROFILES)
    }

    /// `open` with another cap on the number of profiles.
    pub fn open_with_cap(path: &Path, max_profiles: u64) -> Result<ProfileStore, StoreError> {
        let db = Db::open(path, crate::redb_store::capped, init).map_err(e)?;
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
                return decode_row(bytes.value()).map(Some);
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
                out.push(decode_row(bytes.value())?);
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Profiles kept.
    pub fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        txn.open_table(PROFILES).map_err(e)?.len().map_err(e)
    }

    /// The next log sequence number the store will apply (0 before its first step).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        Ok(self.cursor()?.map_or(0, |c| c.next_seq))
    }

    pub(super) fn cursor(&self) -> Result<Option<CursorState>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let meta = txn.open_table(META).map_err(e)?;
        let v = meta.get("cursor").map_err(e)?;
        v.map(|b| decode_row(b.value())).transpose()
    }

    /// Applies the events of one step, taken one at a time from `feed` (so a step holds one
    /// event's bytes, not all of them), and moves the stored position, in one transaction.
    pub(super) fn apply(&self, feed: &mut dyn Feed) -> Result<CursorState, StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        let next = {
            let mut t = Tables::open(&txn)?;
            // Each profile a step touches is read once and written once.
            let mut batch = Batch::default();
            while let Some((body, source)) = feed.next_event()? {
                match ProfileEvent::parse(&body) {
                    Some(ev) => apply_one(&mut t, &mut batch, &ev, &source)?,
                    // Ingest refuses JSON a reader cannot parse; only an older log holds it.
                    None => {
                        tracing::warn!(%source, "profiles: a logged event could not be read; it updates no profile")
                    }
                }
            }
            for (key, entry) in batch.profiles {
                t.write(&key, entry)?;
            }
            evict(&mut t, self.max_profiles)?;
            let next = feed.cursor();
            let bytes = encode_row(&next)?;
            txn.open_table(META)
                .map_err(e)?
                .insert("cursor", bytes.as_slice())
                .map_err(e)?;
            next
        };
        txn.commit().map_err(e)?;
        Ok(next)
    }
}

/// One event as the log holds it: its JSON and its source.
pub(super) type Raw = (Vec<u8>, Arc<str>);

/// Where a step's events come from: the log (`super::LogFeed`) or, in tests, a list.
pub(super) trait Feed {
    /// The next accepted event's JSON and source; `None` ends the step.
    fn next_event(&mut self) -> Result<Option<Raw>, StoreError>;
    /// The log position after the events given so far.
    fn cursor(&self) -> CursorState;
}

/// The tables one write transaction works on, opened once.
struct Tables<'t> {
    profiles: Table<'t, &'static str, &'static [u8]>,
    links: Table<'t, &'static str, &'static str>,
    traits: Table<'t, &'static str, u8>,
    recency: Table<'t, &'static str, u8>,
}

/// A profile taken into a batch, with the index entries it had in the tables, so that
/// writing it back only touches what changed. `profile: None`: folded into another.
struct Entry {
    profile: Option<Profile>,
    stored: HashSet<String>,
}

fn recency_key(p: &Profile) -> String {
    format!("\u{1}{}\0{}", p.last_seen, p.id)
}

/// Every index entry of a profile: `\u{1}`recency, `\u{2}`links and trait index keys
/// (prefixed so that one set holds all three).
fn index_entries(p: &Profile) -> HashSet<String> {
    let mut out = HashSet::with_capacity(2 + p.user_ids.len() + p.traits.len());
    out.insert(recency_key(p));
    out.extend(p.user_ids.iter().map(|u| format!("\u{2}user:{u}")));
    out.extend(p.anonymous_ids.iter().map(|a| format!("\u{2}anon:{a}")));
    out.extend(p.aliases.iter().map(|a| format!("\u{2}anon:{a}")));
    for (name, t) in &p.traits {
        out.extend(index_key(name, &t.value, &p.id));
    }
    out
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            profiles: txn.open_table(PROFILES).map_err(e)?,
            links: txn.open_table(LINKS).map_err(e)?,
            traits: txn.open_table(TRAITS).map_err(e)?,
            recency: txn.open_table(RECENCY).map_err(e)?,
        })
    }

    fn resolve(&self, link: &str) -> Result<Option<String>, StoreError> {
        let v = self.links.get(link).map_err(e)?;
        Ok(v.map(|k| k.value().to_owned()))
    }

    fn read(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let v = self.profiles.get(key).map_err(e)?;
        let Some(bytes) = v else { return Ok(None) };
        let p: Profile = decode_row(bytes.value())?;
        let stored = index_entries(&p);
        Ok(Some(Entry {
            profile: Some(p),
            stored,
        }))
    }

    /// Adds or removes one index entry (see `index_entries`).
    fn index(&mut self, entry: &str, key: &str, add: bool) -> Result<(), StoreError> {
        if let Some(r) = entry.strip_prefix('\u{1}') {
            match add {
                true => self.recency.insert(r, 0).map(drop),
                false => self.recency.remove(r).map(drop),
            }
        } else if let Some(link) = entry.strip_prefix('\u{2}') {
            match add {
                true => self.links.insert(link, key).map(drop),
                false => {
                    // Another profile may hold the id by now; only our own link goes.
                    let ours = self
                        .links
                        .get(link)
                        .map_err(e)?
                        .is_some_and(|v| v.value() == key);
                    if !ours {
                        return Ok(());
                    }
                    self.links.remove(link).map(drop)
                }
            }
        } else {
            match add {
                true => self.traits.insert(entry, 0).map(drop),
                false => self.traits.remove(entry).map(drop),
            }
        }
        .map_err(e)
    }

    /// Writes a batch's profile back (or deletes it), touching only the index entries that
    /// changed.
    fn write(&mut self, key: &str, entry: Entry) -> Result<(), StoreError> {
        let now = entry
            .profile
            .as_ref()
            .map(index_entries)
            .unwrap_or_default();
        for old in entry.stored.difference(&now) {
            self.index(old, key, false)?;
        }
        for new in now.difference(&entry.stored) {
            self.index(new, key, true)?;
        }
        match entry.profile {
            Some(p) => {
                let bytes = encode_row(&p)?;
                self.profiles.insert(key, bytes.as_slice()).map_err(e)?;
            }
            None => {
                self.profiles.remove(key).map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Keeps the store bounded: past `max` profiles, the least recently seen go, with their
/// links and trait index entries.
fn evict(t: &mut Tables, max: u64) -> Result<(), StoreError> {
    while t.profiles.len().map_err(e)? > max {
        let oldest = {
            let first = t.recency.first().map_err(e)?;
            first.map(|(k, _)| k.value().to_owned())
        };
        let Some(oldest) = oldest else { return Ok(()) };
        let key = oldest.split_once('\0').map_or(oldest.as_str(), |(_, k)| k);
        match t.read(key)? {
            Some(mut entry) => {
                entry.profile = None;
                t.write(key, entry)?;
            }
            // A recency entry without its profile: drop it, or the loop would not end.
            None => {
                t.recency.remove(oldest.as_str()).map_err(e)?;
            }
        }
    }
    Ok(())
}

/// The profiles of one batch, taken out of the tables until the batch is written, and the
/// identity links made during it.
#[derive(Default)]
struct Batch {
    profiles: HashMap<String, Entry>,
    links: HashMap<String, String>,
}

impl Batch {
    fn resolve(&self, t: &Tables, link: &str) -> Result<Option<String>, StoreError> {
        match self.links.get(link) {
            Some(k) => Ok(Some(k.clone())),
            None => t.resolve(link),
        }
    }

    /// The profile stored under `key`, taken out (its entry stays, to be deleted unless
    /// put back).
    fn take(&mut self, t: &Tables, key: &str) -> Result<Option<Profile>, StoreError> {
        if let Some(entry) = self.profiles.get_mut(key) {
            return Ok(entry.profile.take());
        }
        let Some(mut entry) = t.read(key)? else {
            return Ok(None);
        };
        let p = entry.profile.take();
        self.profiles.insert(key.to_owned(), entry);
        Ok(p)
    }

    fn put(&mut self, key: String, p: Profile) {
        let entry = self.profiles.entry(key).or_insert_with(|| Entry {
            profile: None,
            stored: HashSet::new(),
        });
        entry.profile = Some(p);
    }
}

/// Finds (or starts) the event's profile, folds in any other profile the event proves is the
/// same person (anonymousId seen with userId, alias previousId), and applies the event.
fn apply_one(
    t: &mut Tables,
    batch: &mut Batch,
    ev: &ProfileEvent,
    source: &str,
) -> Result<(), StoreError> {
    let key = match (ev.user_id.get(), ev.anonymous_id.get()) {
        (Some(u), _) => batch
            .resolve(t, &format!("user:{u}"))?
            .unwrap_or_else(|| u.to_owned()),
        (None, Some(a)) => batch
            .resolve(t, &format!("anon:{a}"))?
            .unwrap_or_else(|| format!("anonymous:{a}")),
        (None, None) => return Ok(()),
    };
    let mut profile = batch.take(t, &key)?.unwrap_or_else(|| Profile::new(&key));
    let mut others = Vec::new();
    if ev.user_id.get().is_some()
        && let Some(a) = ev.anonymous_id.get()
    {
        let other = batch.resolve(t, &format!("anon:{a}"))?;
        others.push(other.unwrap_or_else(|| format!("anonymous:{a}")));
    }
    if ev.ty.get() == Some("alias")
        && let Some(p) = ev.previous_id.get()
    {
        let user = batch.resolve(t, &format!("user:{p}"))?;
        others.push(user.unwrap_or_else(|| p.to_owned()));
        let anon = batch.resolve(t, &format!("anon:{p}"))?;
        others.push(anon.unwrap_or_else(|| format!("anonymous:{p}")));
    }
    let mut absorbed = false;
    for other in others.into_iter().filter(|o| *o != key) {
        if let Some(o) = batch.take(t, &other)? {
            profile.absorb(o);
            absorbed = true;
        }
    }
    profile.apply(ev, source);
    // Later events of this batch must find this profile by any id it now has: all of them
    // after a merge, otherwise the ids this event brought.
    let links: Vec<String> = if absorbed {
        let users = profile.user_ids.iter().map(|u| format!("user:{u}"));
        let anons = profile.anonymous_ids.iter().chain(&profile.aliases);
        users.chain(anons.map(|a| format!("anon:{a}"))).collect()
    } else {
        let mut l: Vec<String> = ev
            .user_id
            .get()
            .map(|u| format!("user:{u}"))
            .into_iter()
            .collect();
        l.extend(ev.anonymous_id.get().map(|a| format!("anon:{a}")));
        if let Some(p) = ev
            .previous_id
            .get()
            .filter(|_| ev.ty.get() == Some("alias"))
        {
            l.extend([format!("user:{p}"), format!("anon:{p}")]);
        }
        l
    };
    for link in links {
        batch.links.insert(link, key.clone());
    }
    batch.put(key, profile);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_store_is_bounded_and_evicts_the_least_recently_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::open_with_cap(&dir.path().join("p.redb"), 2).unwrap();
        let events: Vec<Value> = [("u1", 1), ("u2", 2), ("u3", 3), ("u1", 4)]
            .into_iter()
            .map(|(u, d)| json!({"type":"identify","userId":u,"anonymousId":format!("a-{u}"),"messageId":format!("m{d}"),
                "timestamp":format!("2026-01-0{d}T00:00:00.000Z"),"traits":{"email":format!("{u}@x.io")}}))
            .collect();
        apply_json(&store, &events[..3]);
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
        let cursor = apply_json(&store, &events[3..]);
        assert!(store.get("u2").unwrap().is_none() && store.get("u1").unwrap().is_some());
        assert_eq!(cursor.next_seq, 1, "the feed gave one event");
        assert_eq!(
            store.cursor().unwrap(),
            Some(cursor),
            "the position is stored with the profiles"
        );
    }

    /// A feed of JSON events; its cursor counts them.
    struct List<'a>(std::slice::Iter<'a, Value>, u64);

    impl Feed for List<'_> {
        fn next_event(&mut self) -> Result<Option<Raw>, StoreError> {
            let next = self.0.next();
            self.1 += u64::from(next.is_some());
            Ok(next.map(|v| (v.to_string().into_bytes(), "web".into())))
        }
        fn cursor(&self) -> CursorState {
            CursorState {
                position: Position {
                    segment: 0,
                    offset: self.1,
                },
                next_seq: self.1,
                done: Vec::new(),
            }
        }
    }

    fn apply_json(store: &ProfileStore, events: &[Value]) -> CursorState {
        let mut feed = List(events.iter(), 0);
        store.apply(&mut feed).unwrap()
    }

    #[test]
    fn merging_across_batches_moves_links_and_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::open(&dir.path().join("p.redb")).unwrap();
        let ts = |d: u32| format!("2026-01-{d:02}T00:00:00.000Z");
        apply_json(
            &store,
            &[
                json!({"type":"page","anonymousId":"a9","name":"Home","messageId":"p1","timestamp":ts(1)}),
                json!({"type":"identify","userId":"old-id","messageId":"i0","timestamp":ts(2),"traits":{"company":"Initech"}}),
            ],
        );
        assert_eq!(store.get("a9").unwrap().unwrap().id, "anonymous:a9");
        apply_json(
            &store,
            &[
                json!({"type":"identify","userId":"u1","anonymousId":"a9","messageId":"i1","timestamp":ts(3),"traits":{"plan":"pro"}}),
                json!({"type":"alias","userId":"u1","previousId":"old-id","messageId":"a1","timestamp":ts(4)}),
            ],
        );
        for id in ["u1", "a9", "old-id"] {
            assert_eq!(store.get(id).unwrap().unwrap().id, "u1", "{id} leads to u1");
        }
        let by_company = store.find_by_trait("company", "Initech", 10).unwrap();
        let ids: Vec<_> = by_company.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["u1"], "the folded profile's index entry is gone");
        let txn = store.db.begin_read().unwrap();
        let rows = txn.open_table(PROFILES).unwrap().len().unwrap();
        let recency = txn.open_table(RECENCY).unwrap().len().unwrap();
        assert_eq!((rows, recency), (1, 1), "one person, one profile");
    }
}
