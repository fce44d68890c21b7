//! Durable delivery state in `data_dir/deliveries.redb`: the retry set, the dead-letter
//! queue and the delivery log, per destination. Only failures reach the first two, so the
//! healthy path writes nothing here but the (batched, non-synced) delivery log.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use crate::redb_store::Db;
use serde::{Deserialize, Serialize};

const RETRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("retries");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Attempts kept per destination in the delivery log.
pub const MAX_ATTEMPTS: u64 = 10_000;

pub use crate::redb_store::StoreError;
use crate::redb_store::store_err as e;
use crate::redb_store::{decode_row, encode_row};

pub use super::request::{HttpRequest, NatsPublish, Request};

/// One delivery of one event under one mapping, waiting for its next attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub id: u64,
    pub seq: u64,
    pub source: String,
    pub message_id: String,
    pub mapping: String,
    pub received_ms: i64,
    #[serde(default, skip_serializing_if = "Request::is_empty")]
    pub request: Request,
    pub attempts: u32,
    pub next_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a batch: every event in it (`seq`/`message_id` above then name the batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub seq: u64,
    pub message_id: String,
}

impl Pending {
    /// The delivery part of a reference dead letter (`backlog_overflow`, `log_damage`): what
    /// is known of the logged event, no request, no attempt.
    pub fn reference(seq: u64, source: &str, message_id: &str, received_ms: i64) -> Pending {
        Pending {
            id: 0,
            seq,
            source: source.to_owned(),
            message_id: message_id.to_owned(),
            mapping: String::new(),
            received_ms,
            request: Request::default(),
            attempts: 0,
            next_at_ms: 0,
            last_status: None,
            last_error: None,
            members: Vec::new(),
        }
    }

    /// Whether this delivery carries `message_id` (itself, or as a batch member).
    pub fn carries(&self, message_id: &str) -> bool {
        self.message_id == message_id || self.members.iter().any(|m| m.message_id == message_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub delivery: Pending,
    pub reason: String,
    pub dead_at_ms: i64,
    /// More about `reason` (for `backlog_overflow`: which cap, and by how much).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The reason of a dead letter written because its destination's backlog passed a cap.
pub const BACKLOG_OVERFLOW: &str = "backlog_overflow";
/// The reason of a dead letter for log records a destination's reader could not read.
pub const LOG_DAMAGE: &str = "log_damage";

/// Which kind of reference dead letters a `references` write records progress for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Overflow,
    Damage,
}

impl Mark {
    fn key(self, dest: &str) -> String {
        match self {
            Mark::Overflow => format!("overflow:{dest}"),
            Mark::Damage => format!("damage:{dest}"),
        }
    }
}

impl DeadLetter {
    /// A `backlog_overflow` dead letter is a reference to the logged event (its messageId,
    /// source, receivedAt and log seq), and a `log_damage` one to the log records that could
    /// not be read, not a request: there is nothing to send again.
    pub fn is_reference(&self) -> bool {
        self.reason == BACKLOG_OVERFLOW
            || self.reason == LOG_DAMAGE
            || self.delivery.request.is_empty()
    }
}

/// One attempt, for the delivery log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub id: u64,
    pub at_ms: i64,
    pub source: String,
    pub message_id: String,
    pub mapping: String,
    pub url: String,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The first 1 KiB of the response body.
    pub response: String,
    /// `delivered`, `retry` or `dead_letter`.
    pub outcome: String,
}

/// One message's attempts (newest first), pending retries and dead letters.
pub struct Lineage {
    pub attempts: Vec<Attempt>,
    pub retries: Vec<Pending>,
    pub dead: Vec<DeadLetter>,
}

pub struct DeliveryStore {
    db: Db,
}

/// Creates the tables of a new store (see `redb_store` for damage and I/O errors).
fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    for t in [RETRIES, DEAD] {
        txn.open_table(t)?;
    }
    txn.open_table(META)?;
    txn.commit()?;
    attempts::migrate(db)
}

impl DeliveryStore {
    /// Opens the store; a damaged file is quarantined and replaced by an empty one.
    pub fn open(path: &Path) -> Result<DeliveryStore, StoreError> {
        let db = Db::open(path, crate::redb_store::capped, init).map_err(e)?;
        Ok(DeliveryStore { db })
    }

    fn next_id(meta: &mut redb::Table<&str, u64>, name: &str) -> Result<u64, StoreError> {
        let id = meta.get(name).map_err(e)?.map_or(1, |v| v.value());
        meta.insert(name, id + 1).map_err(e)?;
        Ok(id)
    }

    /// Stores (or updates) a pending retry, durably. Assigns an id when it has none.
    pub fn put_retry(&self, dest: &str, p: &mut Pending) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            if p.id == 0 {
                p.id = Self::next_id(&mut txn.open_table(META).map_err(e)?, "delivery")?;
            }
            let bytes = encode_row(p)?;
            txn.open_table(RETRIES)
                .map_err(e)?
                .insert((dest, p.id), bytes.as_slice())
                .map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    pub fn remove_retry(&self, dest: &str, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        txn.open_table(RETRIES)
            .map_err(e)?
            .remove((dest, id))
            .map_err(e)?;
        txn.commit().map_err(e)
    }

    pub fn retries(&self, dest: &str) -> Result<Vec<Pending>, StoreError> {
        self.scan(RETRIES, dest, usize::MAX, None)
    }

    /// Moves a delivery to the dead-letter queue (and out of the retry set), durably.
    pub fn dead_letter(&self, dest: &str, mut dl: DeadLetter) -> Result<DeadLetter, StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            if dl.delivery.id == 0 {
                dl.delivery.id = Self::next_id(&mut txn.open_table(META).map_err(e)?, "delivery")?;
            }
            txn.open_table(RETRIES)
                .map_err(e)?
                .remove((dest, dl.delivery.id))
                .map_err(e)?;
            let bytes = encode_row(&dl)?;
            txn.open_table(DEAD)
                .map_err(e)?
                .insert((dest, dl.delivery.id), bytes.as_slice())
                .map_err(e)?;
        }
        txn.commit().map_err(e)?;
        Ok(dl)
    }

    /// Writes reference dead letters (no request: `backlog_overflow`, `log_damage`) and, under
    /// `mark`, that every record before `through_seq` has been handled so, in one durable
    /// transaction: a repeat of the step after a crash, before the cursor was saved, checks
    /// `marked_through` and does not write them twice.
    pub fn references(
        &self,
        dest: &str,
        mark: Mark,
        refs: Vec<DeadLetter>,
        through_seq: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        {
            let mut meta = txn.open_table(META).map_err(e)?;
            let mut dead = txn.open_table(DEAD).map_err(e)?;
            for mut dl in refs {
                dl.delivery.id = Self::next_id(&mut meta, "delivery")?;
                let bytes = encode_row(&dl)?;
                dead.insert((dest, dl.delivery.id), bytes.as_slice())
                    .map_err(e)?;
            }
            let key = mark.key(dest);
            let before = meta.get(key.as_str()).map_err(e)?.map_or(0, |v| v.value());
            meta.insert(key.as_str(), before.max(through_seq))
                .map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    /// Records before this sequence number were already handled under `mark`.
    pub fn marked_through(&self, dest: &str, mark: Mark) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let meta = txn.open_table(META).map_err(e)?;
        Ok(meta
            .get(mark.key(dest).as_str())
            .map_err(e)?
            .map_or(0, |v| v.value()))
    }

    /// Newest first, ids below `before`.
    pub fn dead_letters(
        &self,
        dest: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.scan(DEAD, dest, limit, before)
    }

    /// Moves dead letters back into the retry set, due at `now_ms`, durably. `pick` selects;
    /// `backlog_overflow` references are never moved (they hold no request to send): they are
    /// counted in the second value instead.
    pub fn replay_dead_letters(
        &self,
        dest: &str,
        now_ms: i64,
        pick: impl Fn(&DeadLetter) -> bool,
    ) -> Result<(Vec<Pending>, usize), StoreError> {
        let txn = self.db.begin_write().map_err(e)?;
        let mut moved = Vec::new();
        let mut references = 0;
        {
            let mut dead = txn.open_table(DEAD).map_err(e)?;
            let mut retries = txn.open_table(RETRIES).map_err(e)?;
            let chosen: Vec<DeadLetter> = dead
                .range((dest, 0)..=(dest, u64::MAX))
                .map_err(e)?
                .filter_map(|r| {
                    r.ok()
                        .and_then(|(_, v)| decode_row::<DeadLetter>(v.value()).ok())
                })
                .filter(|d| pick(d))
                .collect();
            for d in chosen {
                if d.is_reference() {
                    references += 1;
                    continue;
                }
                dead.remove((dest, d.delivery.id)).map_err(e)?;
                let mut p = d.delivery;
                p.next_at_ms = now_ms;
                p.attempts = 0;
                retries
                    .insert((dest, p.id), encode_row(&p)?.as_slice())
                    .map_err(e)?;
                moved.push(p);
            }
        }
        txn.commit().map_err(e)?;
        Ok((moved, references))
    }

    /// One dead letter by id.
    pub fn dead_letter_by_id(&self, dest: &str, id: u64) -> Result<Option<DeadLetter>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(DEAD).map_err(e)?;
        match t.get((dest, id)).map_err(e)? {
            Some(v) => Ok(Some(decode_row(v.value())?)),
            None => Ok(None),
        }
    }

    /// (pending retries, dead letters) of a destination.
    pub fn counts(&self, dest: &str) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let count = |t: TableDefinition<(&str, u64), &[u8]>| -> Result<u64, StoreError> {
            let table = txn.open_table(t).map_err(e)?;
            Ok(table
                .range((dest, 0)..=(dest, u64::MAX))
                .map_err(e)?
                .count() as u64)
        };
        Ok((count(RETRIES)?, count(DEAD)?))
    }

    /// Everything kept about one message at one destination.
    pub fn lineage(&self, dest: &str, message_id: &str) -> Result<Lineage, StoreError> {
        let attempts = self
            .attempts(dest, usize::MAX, None)?
            .into_iter()
            .filter(|a| a.message_id == message_id)
            .collect();
        let retries = self
            .retries(dest)?
            .into_iter()
            .filter(|p| p.message_id == message_id)
            .collect();
        // The dead-letter queue can hold many `backlog_overflow` references: only rows whose
        // bytes hold the id are parsed.
        let needle = serde_json::to_vec(message_id)?;
        let dead = {
            let txn = self.db.begin_read().map_err(e)?;
            let t = txn.open_table(DEAD).map_err(e)?;
            let mut out = Vec::new();
            for row in t.range((dest, 0)..=(dest, u64::MAX)).map_err(e)?.rev() {
                let (_, v) = row.map_err(e)?;
                let bytes = v.value();
                if !bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    continue;
                }
                let d: DeadLetter = decode_row(bytes)?;
                if d.delivery.message_id == message_id {
                    out.push(d);
                }
            }
            out
        };
        Ok(Lineage {
            attempts,
            retries,
            dead,
        })
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<(&str, u64), &[u8]>,
        dest: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(table).map_err(e)?;
        let upper = before.unwrap_or(u64::MAX);
        let iter = t.range((dest, 0)..(dest, upper)).map_err(e)?.rev();
        let mut out = Vec::new();
        for row in iter.take(limit) {
            let (_, v) = row.map_err(e)?;
            out.push(decode_row(v.value())?);
        }
        Ok(out)
    }
}

#[path = "store_attempts.rs"]
mod attempts;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
