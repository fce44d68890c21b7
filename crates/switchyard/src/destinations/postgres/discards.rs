//! `<schema>._switchyard_discards`: what the loader could not put where it belonged, and
//! why. Three kinds of rows:
//!
//! - a value that did not fit its column, or whose column could not be created: the row
//!   was loaded with NULL there; `column_name` names the column, `value` is the value;
//! - a row Postgres refused for a reason retrying cannot fix (`isolate.rs`): the rest of its
//!   batch was loaded; `column_name` is `*`, `value` the row as JSON, `reason` Postgres's
//!   message and SQLSTATE;
//! - a log record that could not be read or makes no rows: `table_name` and `column_name`
//!   are `*`, `row_id` is its messageId (`seq:<n>` when it has none), `value` its first bytes.
//!
//! The table is created inside the load's transaction when first needed. Values are cut to
//! 4 KiB and row ids to 1 KiB (the primary key's index must hold them), and U+0000 is
//! removed, as from every value.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;

use tokio_postgres::Transaction;

use super::schema::{SchemaCache, ident};
use crate::log::record::Record;

pub const DISCARDS: &str = "_switchyard_discards";
/// `column_name` (and `table_name`) of a discard about a whole row or record.
pub const WHOLE: &str = "*";
pub const MAX_VALUE: usize = 4 << 10;
const MAX_ROW_ID: usize = 1 << 10;
const MAX_REASON: usize = 2 << 10;
/// Discards per INSERT.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Discard {
    pub table: String,
    pub column: String,
    pub row_id: String,
    pub value: String,
    pub reason: String,
    /// A short, bounded label for the metric (`type_mismatch`, `unreadable`,
    /// `sqlstate_23514`, ...).
    pub code: String,
}

impl Discard {
    /// A log record that makes no rows: it cannot be read, is not an object, or names
    /// nothing to load.
    pub fn record(r: &Record, reason: impl Display, code: &str) -> Discard {
        let e = &r.entry;
        Discard {
            table: WHOLE.into(),
            column: WHOLE.into(),
            row_id: if e.message_id.is_empty() {
                format!("seq:{}", r.seq)
            } else {
                e.message_id.clone()
            },
            value: cut_bytes(&e.body, MAX_VALUE),
            reason: reason.to_string(),
            code: code.into(),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary, saying how long it was.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Raw bytes as text (invalid UTF-8 replaced), cut like [`cut`].
pub fn cut_bytes(b: &[u8], max: usize) -> String {
    let shown = String::from_utf8_lossy(&b[..b.len().min(max)]);
    if b.len() <= max {
        return shown.into_owned();
    }
    format!(
        "{}… ({} bytes)",
        shown.trim_end_matches('\u{fffd}'),
        b.len()
    )
}

/// Discards per metric label.
pub fn count_by_code(discards: &[Discard]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for d in discards {
        *counts.entry(d.code.clone()).or_insert(0) += 1;
    }
    counts
}

fn clean(s: &str, max: usize) -> String {
    cut(&s.replace('\0', ""), max)
}

/// Writes `discards` in the load's transaction (creating the table if the cache has not seen
/// it). A row already there for the same table, row id and column is kept.
pub(super) async fn write(
    tx: &Transaction<'_>,
    cache: &SchemaCache,
    schema: &str,
    discards: &[Discard],
) -> Result<(), tokio_postgres::Error> {
    if discards.is_empty() {
        return Ok(());
    }
    if cache.get(schema, DISCARDS).is_none_or(|c| c.is_empty()) {
        // Racing loaders may both create it; the loser's batch fails and is retried.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{DISCARDS} (\
             table_name text NOT NULL, column_name text NOT NULL, row_id text NOT NULL, \
             value text, reason text NOT NULL, discarded_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (table_name, row_id, column_name))",
            s = ident(schema)
        ))
        .await?;
    }
    let sql = format!(
        "INSERT INTO {}.{DISCARDS} (table_name, column_name, row_id, value, reason) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         ON CONFLICT DO NOTHING",
        ident(schema)
    );
    let mut seen = HashSet::new();
    let rows: Vec<[String; 5]> = discards
        .iter()
        .map(|d| {
            [
                clean(&d.table, MAX_ROW_ID),
                clean(&d.column, MAX_ROW_ID),
                clean(&d.row_id, MAX_ROW_ID),
                clean(&d.value, MAX_VALUE),
                clean(&d.reason, MAX_REASON),
            ]
        })
        .filter(|r| seen.insert([r[0].clone(), r[1].clone(), r[2].clone()]))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let column = |i: usize| chunk.iter().map(|r| r[i].as_str()).collect::<Vec<_>>();
        let (t, c, id, v, why) = (column(0), column(1), column(2), column(3), column(4));
        tx.execute(&sql, &[&t, &c, &id, &v, &why]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_at_character_boundaries() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("aéb", 2), "a… (4 bytes)");
        assert_eq!(cut_bytes(b"ab\xffc", 8), "ab\u{fffd}c");
        assert_eq!(cut_bytes("aéb".as_bytes(), 2), "a… (4 bytes)");
        assert_eq!(clean("a\0b", 10), "ab");
        let long = "x".repeat(5000);
        assert!(cut(&long, MAX_VALUE).len() < MAX_VALUE + 20);
    }

    #[test]
    fn record_discards_name_the_message_or_the_sequence() {
        use crate::log::record::{Entry, Kind};
        let rec = |id: &str| Record {
            seq: 7,
            entry: Entry {
                kind: Kind::Accepted,
                received_ms: 0,
                source: "web".into(),
                environment: "production".into(),
                message_id: id.into(),
                reason: String::new(),
                body: b"{oops".to_vec(),
            },
        };
        let d = Discard::record(&rec("m-1"), "the event could not be read: x", "unreadable");
        assert_eq!(
            (d.table.as_str(), d.column.as_str(), d.row_id.as_str()),
            ("*", "*", "m-1")
        );
        assert_eq!(d.value, "{oops");
        assert_eq!(Discard::record(&rec(""), "r", "c").row_id, "seq:7");
        let counts = count_by_code(&[d.clone(), d]);
        assert_eq!(counts.get("unreadable"), Some(&2));
    }
}
