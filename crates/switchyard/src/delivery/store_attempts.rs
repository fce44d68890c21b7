//! The delivery log: the newest `MAX_ATTEMPTS` attempts of each destination, kept as a ring.
//! Attempt `id` lives under the key `(destination, id % MAX_ATTEMPTS)`, so logging an attempt
//! overwrites the one `MAX_ATTEMPTS` older and nothing is ever deleted row by row. (Trimming
//! the oldest rows with deletes cost as much CPU as every delivery's HTTP request: a redb
//! delete rewrites its page path, and at 10k deliveries/s that was 15 % of the server.)
//! `meta["attempt:<dest>"]` holds the next id; the ids in the ring are the `MAX_ATTEMPTS`
//! before it.

use redb::{Database, Durability, ReadableTable, TableDefinition, TableHandle};

use super::{Attempt, DeliveryStore, MAX_ATTEMPTS, META, StoreError};
use crate::redb_store::store_err as e;
use crate::redb_store::{decode_row, encode_row};

/// `(destination, id % MAX_ATTEMPTS)` → the attempt.
pub(super) const RING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("attempt_ring");
/// Before the ring (stores written by older versions): `(destination, id)` → the attempt,
/// trimmed with deletes. Moved into the ring when the store opens.
const LEGACY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("attempts");

fn next_key(dest: &str) -> String {
    format!("attempt:{dest}")
}

/// Moves a delivery log written before the ring into it (at most `MAX_ATTEMPTS` rows per
/// destination, as that log was trimmed), then drops the old table.
pub(super) fn migrate(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RING)?;
    let legacy = txn.list_tables()?.any(|t| t.name() == LEGACY.name());
    if legacy {
        {
            let old = txn.open_table(LEGACY)?;
            let mut ring = txn.open_table(RING)?;
            for row in old.iter()? {
                let (k, v) = row?;
                let (dest, id) = k.value();
                ring.insert((dest, id % MAX_ATTEMPTS), v.value())?;
            }
        }
        txn.delete_table(LEGACY)?;
    }
    txn.commit()?;
    Ok(())
}

impl DeliveryStore {
    /// Appends attempts to the destination's delivery log (assigning their ids), keeping
    /// the newest `MAX_ATTEMPTS`. Not synced: the log is history, not a guarantee.
    pub fn log_attempts(&self, dest: &str, attempts: &mut [Attempt]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(e)?;
        txn.set_durability(Durability::None).map_err(e)?;
        {
            let mut meta = txn.open_table(META).map_err(e)?;
            let mut ring = txn.open_table(RING).map_err(e)?;
            let key = next_key(dest);
            let mut next = meta.get(key.as_str()).map_err(e)?.map_or(1, |v| v.value());
            for a in attempts.iter_mut() {
                a.id = next;
                next += 1;
                ring.insert((dest, a.id % MAX_ATTEMPTS), encode_row(a)?.as_slice())
                    .map_err(e)?;
            }
            meta.insert(key.as_str(), next).map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    /// Up to `limit` attempts of a destination, newest first, older than `before` if given.
    pub fn attempts(
        &self,
        dest: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<Attempt>, StoreError> {
        let txn = self.db.begin_read().map_err(e)?;
        let next = txn
            .open_table(META)
            .map_err(e)?
            .get(next_key(dest).as_str())
            .map_err(e)?
            .map_or(1, |v| v.value());
        let ring = txn.open_table(RING).map_err(e)?;
        // The ids held: [lo, next); wanted: [lo, hi), newest first.
        let lo = next.saturating_sub(MAX_ATTEMPTS).max(1);
        let hi = before.map_or(next, |b| b.min(next));
        let mut out = Vec::new();
        if hi <= lo || limit == 0 {
            return Ok(out);
        }
        let (top, bottom) = ((hi - 1) % MAX_ATTEMPTS, lo % MAX_ATTEMPTS);
        // The slots from `top` down to `bottom`, wrapping below 0 to the ring's end.
        let spans = if top >= bottom {
            vec![(bottom, top)]
        } else {
            vec![(0, top), (bottom, MAX_ATTEMPTS - 1)]
        };
        for (from, to) in spans {
            for row in ring.range((dest, from)..=(dest, to)).map_err(e)?.rev() {
                let (_, v) = row.map_err(e)?;
                let a: Attempt = decode_row(v.value())?;
                if (lo..hi).contains(&a.id) {
                    out.push(a);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}
