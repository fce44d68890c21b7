//! Reading one batch from the log for the `postgres` destination, on a blocking thread: each
//! record this destination wants becomes its rows, or — when it cannot be read, is not an
//! object or makes no rows — a row of `_switchyard_discards` saying why. No record is
//! passed over without a trace except those the destination does not subscribe to.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::discards::Discard;
use super::load::{Planned, plan};
use super::rows::{Row, object_row, rows_for, strip_nul};
use super::schema::SchemaCache;
use super::snake::snakecase;
use crate::config::DestinationConfig;
use crate::cursor::CursorState;
use crate::destinations::replay::Window;
use crate::log::reader::{LogReader, Loss};
use crate::log::record::{Kind, Record};
use crate::log::segment::Position;

/// Bytes read from the log per batch at most (besides `batch_rows`).
const MAX_BATCH_BYTES: usize = 64 << 20;

/// What one batch read from the log holds.
pub(super) struct Batch {
    pub next: CursorState,
    /// Per schema: its planned tables and the records that became discards.
    pub schemas: BTreeMap<String, SchemaBatch>,
    pub events: usize,
    /// The last record read, if any.
    pub last_seq: Option<u64>,
    /// Records the reader could not read (damaged log): the runner dead-letters them before
    /// the cursor moves past them.
    pub lost: Vec<Loss>,
}

#[derive(Default)]
pub(super) struct SchemaBatch {
    pub planned: Vec<Planned>,
    pub discards: Vec<Discard>,
}

/// What one log record becomes.
#[derive(Debug)]
enum Outcome {
    /// Not for this destination: another kind, source, environment or subscription.
    NotWanted,
    Event(Vec<Row>),
    Object(Row),
    Discard(Discard),
}

fn outcome(r: &Record, dest: &DestinationConfig, uuid_ts: &str) -> Outcome {
    let e = &r.entry;
    if !matches!(e.kind, Kind::Accepted | Kind::Object) || !dest.wants(&e.source, &e.environment) {
        return Outcome::NotWanted;
    }
    let what = if e.kind == Kind::Object {
        "object"
    } else {
        "event"
    };
    let mut v = match serde_json::from_slice::<Value>(&e.body) {
        Ok(v) => v,
        Err(err) => {
            let why = format!("the {what} could not be read: {err}");
            return Outcome::Discard(Discard::record(r, why, "unreadable"));
        }
    };
    if e.kind == Kind::Accepted && dest.subscribe.as_ref().is_some_and(|f| !f.matches(&v)) {
        return Outcome::NotWanted;
    }
    strip_nul(&mut v);
    let Value::Object(obj) = v else {
        let why = format!("the {what} is not a JSON object");
        return Outcome::Discard(Discard::record(r, why, "unreadable"));
    };
    if e.kind == Kind::Object {
        let at = crate::event::timestamp::format(ms_to_time(e.received_ms));
        return match object_row(&obj, &at, uuid_ts) {
            Some(row) => Outcome::Object(row),
            None => Outcome::Discard(Discard::record(
                r,
                "the object has no collection (with a letter or digit) or no string id",
                "no_rows",
            )),
        };
    }
    let rows = rows_for(&obj, uuid_ts);
    if rows.is_empty() {
        let ty = obj.get("type").map(Value::to_string).unwrap_or_default();
        let why = format!("an event of type {ty} makes no warehouse rows");
        return Outcome::Discard(Discard::record(r, why, "no_rows"));
    }
    Outcome::Event(rows)
}

pub(super) fn read_batch(
    dir: &Path,
    dest: &DestinationConfig,
    from: CursorState,
    end: Position,
    limit: usize,
    cache: &SchemaCache,
    replay: Option<Window>,
) -> std::io::Result<Batch> {
    let mut reader = LogReader::new(dir, from.position).expecting(from.next_seq);
    let uuid_ts = crate::event::timestamp::format(time::OffsetDateTime::now_utc());
    let mut rows: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut schemas: BTreeMap<String, SchemaBatch> = BTreeMap::new();
    let mut batch = Batch {
        next: from,
        schemas: BTreeMap::new(),
        events: 0,
        last_seq: None,
        lost: Vec::new(),
    };
    let mut read = 0;
    while read < limit {
        let chunk = reader.read(end, (limit - read).min(2000), MAX_BATCH_BYTES)?;
        let Some(last) = chunk.last() else { break };
        batch.next = CursorState {
            position: last.next,
            next_seq: last.record.seq + 1,
            done: Vec::new(),
        };
        read += chunk.len();
        batch.last_seq = Some(last.record.seq);
        for r in chunk.iter().filter(|r| replay.is_none_or(|w| w.wants(r))) {
            let schema = || snakecase(&r.record.entry.source);
            match outcome(&r.record, dest, &uuid_ts) {
                Outcome::NotWanted => {}
                Outcome::Event(event_rows) => {
                    batch.events += 1;
                    rows.entry(schema()).or_default().extend(event_rows);
                }
                Outcome::Object(row) => rows.entry(schema()).or_default().push(row),
                Outcome::Discard(d) => schemas.entry(schema()).or_default().discards.push(d),
            }
        }
    }
    if read == 0 {
        batch.next.position = reader.position();
    }
    for (schema, rows) in rows {
        let planned = plan(cache, &schema, rows);
        schemas.entry(schema).or_default().planned = planned;
    }
    batch.schemas = schemas;
    batch.lost = reader.take_lost();
    Ok(batch)
}

fn ms_to_time(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
