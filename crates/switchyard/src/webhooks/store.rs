//! Durable webhook state in `data_dir/webhooks.redb`: idempotency keys, requests waiting for
//! a function re-run (`RetryError`), and the per-source function dead letters.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Idempotency key hash → expiry (unix ms).
const KEYS: TableDefinition<&[u8], i64> = TableDefinition::new("idempotency");
const RETRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("function_retries");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("function_dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Function dead letters kept per source (the oldest go first).
pub const MAX_DEAD_PER_SOURCE: usize = 10_000;

#[derive(Debug, Error)]
#[error("webhook store: {0}")]
pub struct StoreError(String);

fn e(err: impl std::fmt::Display) -> StoreError {
    StoreError(err.to_string())
}

/// A webhook request kept for a later function run. Secret-bearing headers are dropped
/// before it is stored (SPEC §3b).
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
    db: Database,
}

impl WebhookStore {
    pub fn open(path: &Path) -> Result<WebhookStore, StoreError> {
        let db = Database::create(path).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(KEYS).map_err(e)?;
        txn.open_table(RETRIES).map_err(e)?;
        txn.open_table(DEAD).map_err(e)?;
        txn.open_table(META).map_err(e)?;
        txn.commit().map_err(e)?;
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
            let bytes = serde_json::to_vec(r).map_err(e)?;
            txn.open_table(RETRIES)
                .map_err(e)?
                .insert(r.id, bytes.as_slice())
                .map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    pub fn remove_retry(&self, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        txn.open_table(RETRIES).map_err(e)?.remove(id).map_err(e)?;
        txn.commit().map_err(e)
    }

    pub fn retries(&self) -> Result<Vec<StoredRequest>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(RETRIES).map_err(e)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(e)? {
            let (_, v) = row.map_err(e)?;
            out.push(serde_json::from_slice(v.value()).map_err(e)?);
        }
        Ok(out)
    }

    /// Moves a request that used up its re-runs to its source's dead letters, atomically.
    pub fn dead_letter(&self, r: &StoredRequest) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            txn.open_table(RETRIES)
                .map_err(e)?
                .remove(r.id)
                .map_err(e)?;
            let mut dead = txn.open_table(DEAD).map_err(e)?;
            let bytes = serde_json::to_vec(r).map_err(e)?;
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
            out.push(serde_json::from_slice(v.value()).map_err(e)?);
        }
        Ok(out)
    }
}
