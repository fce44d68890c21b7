//! Durable webhook state in `data_dir/webhooks.redb`: idempotency keys, requests waiting for
//! a function re-run (`RetryError`), and the per-source function dead letters.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::redb_store::Db;

/// Idempotency key hash → expiry (unix ms).
const KEYS: TableDefinition<&[u8], i64> = TableDefinition::new("idempotency");
const RETRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("function_retries");
/// `(next_ms, id)` of every stored retry: the re-run loop reads only what is due.
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("function_retries_due");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("function_dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Function dead letters kept per source (the oldest go first).
pub const MAX_DEAD_PER_SOURCE: usize = 10_000;

pub use crate::redb_store::StoreError;
use crate::redb_store::store_err as e;
use crate::redb_store::{decode_row, encode_row};

/// Removes a stored retry and its due entry, if there is one.
fn unschedule(txn: &redb::WriteTransaction, id: u64) -> Result<(), StoreError> {
    let mut retries = txn.open_table(RETRIES).map_err(e)?;
    let old = retries.remove(id).map_err(e)?;
    let Some(old) = old else { return Ok(()) };
    let r: StoredRequest = decode_row(old.value())?;
    drop(old);
    txn.open_table(DUE)
        .map_err(e)?
        .remove((r.next_ms, id))
        .map_err(e)?;
    Ok(())
}

/// A webhook request kept for a later function run. Secret-bearing headers and the body's
/// top-level `writeKey` are dropped before it is stored (docs/security.md#secrets; `secrets.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredRequest {
    #[serde(default)]
    pub id: u64,
    pub source: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub url: String,
    pub received_ms: i64,
    /// Runs so far (the first, webhook-triggered run counts).
    pub attempts: u32,
    pub next_ms: i64,
    pub last_error: String,
}

pub struct WebhookStore {
    db: Db,
}

/// Creates the tables of a new store and indexes retries stored before the due index
/// existed (see `redb_store` for damage and I/O errors).
fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(KEYS)?;
    txn.open_table(DEAD)?;
    txn.open_table(META)?;
    {
        let retries = txn.open_table(RETRIES)?;
        let mut due = txn.open_table(DUE)?;
        if due.is_empty()? {
            for row in retries.iter()? {
                let (id, v) = row?;
                let r: StoredRequest = decode_row(v.value()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                due.insert((r.next_ms, id.value()), ())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl WebhookStore {
    /// Opens the store; a damaged file is quarantined and replaced by an empty one.
    pub fn open(path: &Path) -> Result<WebhookStore, StoreError> {
        let db = Db::open(path, crate::redb_store::capped, init).map_err(e)?;
        Ok(WebhookStore { db })
    }

    /// Unexpired idempotency keys, for warming the in-memory set at start.
    pub fn load_keys(&self, now_ms: i64) -> Result<Vec<([u8; 16], i64)>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(KEYS).map_err(e)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(e)? {
            let (k, v) = row.map_err(e)?;
            if let (Ok(key), exp) = (<[u8; 16]>::try_from(k.value()), v.value())
                && exp > now_ms
            {
                out.push((key, exp));
            }
        }
        Ok(out)
    }

    /// Writes new keys and drops expired ones. Not fsynced on its own: the next durable
    /// commit carries it (a crash may forget the last second of keys; the log's messageId
    /// dedupe still catches exact replays).
    pub fn save_keys(
        &self,
        new: &[([u8; 16], i64)],
        expire_before: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(e)?;
        txn.set_durability(Durability::None).map_err(e)?;
        {
            let mut t = txn.open_table(KEYS).map_err(e)?;
            for (k, exp) in new {
                t.insert(&k[..], *exp).map_err(e)?;
            }
            if let Some(cut) = expire_before {
                t.retain(|_, exp| exp >= cut).map_err(e)?;
            }
        }
        txn.commit().map_err(e)
    }

    /// Stores (or updates) a request waiting for a re-run, durably.
    pub fn put_retry(&self, r: &mut StoredRequest) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            if r.id == 0 {
                let mut meta = txn.open_table(META).map_err(e)?;
                let id = meta.get("request").map_err(e)?.map_or(1, |v| v.value());
                meta.insert("request", id + 1).map_err(e)?;
                r.id = id;
            }
            unschedule(&txn, r.id)?;
            let bytes = encode_row(r)?;
            txn.open_table(RETRIES)
                .map_err(e)?
                .insert(r.id, bytes.as_slice())
                .map_err(e)?;
            txn.open_table(DUE)
                .map_err(e)?
                .insert((r.next_ms, r.id), ())
                .map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    pub fn remove_retry(&self, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        unschedule(&txn, id)?;
        txn.commit().map_err(e)
    }

    /// Up to `limit` stored retries due at `now_ms`, the longest-waiting first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<StoredRequest>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let due = txn.open_table(DUE).map_err(e)?;
        let retries = txn.open_table(RETRIES).map_err(e)?;
        let mut out = Vec::new();
        for row in due.range(..=(now_ms, u64::MAX)).map_err(e)?.take(limit) {
            let (k, _) = row.map_err(e)?;
            if let Some(v) = retries.get(k.value().1).map_err(e)? {
                out.push(decode_row(v.value())?);
            }
        }
        Ok(out)
    }

    /// Moves a request that used up its re-runs to its source's dead letters, atomically.
    pub fn dead_letter(&self, r: &StoredRequest) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            unschedule(&txn, r.id)?;
            let mut dead = txn.open_table(DEAD).map_err(e)?;
            let bytes = encode_row(r)?;
            dead.insert((r.source.as_str(), r.id), bytes.as_slice())
                .map_err(e)?;
            let n = dead
                .range((r.source.as_str(), 0)..=(r.source.as_str(), u64::MAX))
                .map_err(e)?
                .count();
            if n > MAX_DEAD_PER_SOURCE {
                let oldest = dead
                    .range((r.source.as_str(), 0)..=(r.source.as_str(), u64::MAX))
                    .map_err(e)?
                    .next()
                    .and_then(|row| row.ok())
                    .map(|(k, _)| k.value().1);
                if let Some(id) = oldest {
                    dead.remove((r.source.as_str(), id)).map_err(e)?;
                }
            }
        }
        txn.commit().map_err(e)
    }

    /// Newest first.
    pub fn dead_letters(
        &self,
        source: &str,
        limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(DEAD).map_err(e)?;
        let mut out = Vec::new();
        for row in t
            .range((source, 0)..=(source, u64::MAX))
            .map_err(e)?
            .rev()
            .take(limit)
        {
            let (_, v) = row.map_err(e)?;
            out.push(decode_row(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: &str, next_ms: i64) -> StoredRequest {
        StoredRequest {
            id: 0,
            source: source.to_owned(),
            body: "{}".to_owned(),
            headers: Vec::new(),
            url: "/webhooks/x".to_owned(),
            received_ms: 0,
            attempts: 1,
            next_ms,
            last_error: String::new(),
        }
    }

    fn due_ids(store: &WebhookStore, now: i64) -> Vec<u64> {
        store
            .due(now, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn only_due_retries_are_read_and_the_index_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = WebhookStore::open(&dir.path().join("w.redb")).unwrap();
        let (mut a, mut b, mut c) = (request("s", 300), request("s", 100), request("s", 200));
        for r in [&mut a, &mut b, &mut c] {
            store.put_retry(r).unwrap();
        }
        assert_eq!(due_ids(&store, 50), Vec::<u64>::new());
        assert_eq!(
            due_ids(&store, 250),
            [b.id, c.id],
            "the longest-waiting first"
        );
        b.next_ms = 1000;
        store.put_retry(&mut b).unwrap();
        assert_eq!(
            due_ids(&store, 250),
            [c.id],
            "a rescheduled retry leaves its old slot"
        );
        store.remove_retry(c.id).unwrap();
        store.dead_letter(&a).unwrap();
        assert_eq!(due_ids(&store, 500), Vec::<u64>::new());
        assert_eq!(due_ids(&store, 1000), [b.id]);
        assert_eq!(store.dead_letters("s", 10).unwrap()[0].id, a.id);
        drop(store);
        let store = WebhookStore::open(&dir.path().join("w.redb")).unwrap();
        assert_eq!(due_ids(&store, 1000), [b.id], "kept across a restart");
        assert_eq!(store.due(i64::MAX, 0).unwrap().len(), 0, "the limit holds");
    }
}
