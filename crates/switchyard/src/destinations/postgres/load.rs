//! Loading one micro-batch into Postgres (docs/destinations.md#loading).
//!
//! 1. Schema (`schema.rs`): tables, their standard columns (`standard.rs`) and columns missing
//!    from the cache are created under an advisory lock on the schema, then re-read: a column
//!    takes its first value's type in log order, and a `bigint` column that meets a
//!    non-integer number is widened to `numeric` (`lattice.rs`). A column Postgres will not
//!    add (a table has at most 1,600) is left out.
//! 2. Values that do not fit their column's type (or that Postgres cannot hold in it, or
//!    whose column was left out) become NULL, and the row, column, value and reason go to
//!    `_switchyard_discards` (`discards.rs`).
//! 3. In one transaction: per table, the rows are loaded by `isolate.rs` — `COPY` straight
//!    in, or through a staging table with `ON CONFLICT` when an id is already there (a retry,
//!    replay or redelivery never duplicates a row) — and rows Postgres refuses for good are
//!    isolated and discarded while the rest loads. `users` and object collections are merged
//!    per id in Rust (later non-null values win) and upserted. The discards are written last,
//!    in the same transaction.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio_postgres::Client;

use super::discards::{Discard, count_by_code, write};
use super::isolate::{Target, load_rows};
use super::lattice::{Needs, fits, note};
use super::rows::{Cell, ColType, Row, pg_holds_timestamp};
use super::schema::{Columns, Refusals, SchemaCache};
use super::standard::with_standard;

/// Why a value cannot go into a column of type `col` (reason, metric label), if it cannot.
/// `unwidened`: why Postgres would not widen the column to take it.
fn misfit(col: ColType, cell: &Cell, unwidened: Option<&str>) -> Option<(String, &'static str)> {
    if !fits(col, cell.ty) {
        let reason = format!(
            "{} does not fit the column's type {}",
            cell.ty.noun(),
            col.sql()
        );
        return Some(match unwidened {
            Some(why) => (
                format!("{reason}, which Postgres would not widen to numeric: {why}"),
                "widening_refused",
            ),
            None => (reason, "type_mismatch"),
        });
    }
    if col == ColType::Timestamp && !pg_holds_timestamp(&cell.text) {
        let reason = "Postgres cannot hold this timestamp (year 0, or a zone offset beyond ±15:59)";
        return Some((reason.into(), "timestamp_out_of_range"));
    }
    None
}

/// COPY text format: `\N` for NULL, backslash escapes for the rest. U+0000, which Postgres
/// text cannot hold, is left out (the rows never have it; this keeps COPY safe regardless).
pub(super) fn copy_field(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push_str("\\N");
        return;
    };
    let special = |b: &u8| matches!(b, b'\\' | b'\n' | b'\r' | b'\t' | 0);
    if !v.as_bytes().iter().any(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => {}
            c => out.push(c),
        }
    }
}

/// One table's part of a batch, rendered as COPY text with the column types of the cache.
pub struct TablePlan {
    table: String,
    cols: Vec<String>,
    data: Bytes,
    rows: usize,
    upsert: bool,
    discards: Vec<Discard>,
}

/// A table ready to load, or rows waiting for DDL (new table or columns) first.
pub enum Planned {
    Ready(TablePlan),
    NeedsDdl(String, Vec<Row>),
}

/// Groups one schema's rows by table and renders those whose columns the cache already
/// has. Runs on the thread that read the batch, while the previous batch loads.
pub fn plan(cache: &SchemaCache, schema: &str, rows: Vec<Row>) -> Vec<Planned> {
    let mut by_table: IndexMap<String, Vec<Row>> = IndexMap::new();
    for r in rows {
        match by_table.get_mut(&r.table) {
            Some(group) => group.push(r),
            None => {
                by_table.insert(r.table.clone(), vec![r]);
            }
        }
    }
    by_table
        .into_iter()
        .map(|(table, mut rows)| {
            if rows.first().is_some_and(|r| r.upsert) {
                rows = merge_by_id(rows);
            }
            let needs = wanted(&rows);
            match cache.ready(schema, &table, &needs) {
                Some(have) => {
                    let refusals = Refusals {
                        left_out: None,
                        unwidened: cache.unwidened(schema, &table),
                    };
                    Planned::Ready(prepare(table, &rows, &needs, &have, &refusals))
                }
                None => Planned::NeedsDdl(table, rows),
            }
        })
        .collect()
}

fn prepare(
    table: String,
    rows: &[Row],
    needs: &Needs,
    have: &Columns,
    refusals: &Refusals,
) -> TablePlan {
    let cols: Vec<String> = needs
        .keys()
        .filter(|c| have.contains_key(*c))
        .cloned()
        .collect();
    let mut discards = Vec::new();
    let data = Bytes::from(render(&table, rows, &cols, have, refusals, &mut discards));
    TablePlan {
        upsert: rows.first().is_some_and(|r| r.upsert),
        rows: rows.len(),
        table,
        cols,
        data,
        discards,
    }
}

/// What one schema's part of a batch came to.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Rows loaded (before `ON CONFLICT` skips).
    pub rows: usize,
    /// Discards written, by metric label.
    pub discards: BTreeMap<String, u64>,
}

/// Loads one schema's planned tables in one transaction, after any DDL they need, and
/// writes `discards` (records that made no rows) with those the load adds.
pub async fn load(
    client: &mut Client,
    cache: &SchemaCache,
    schema: &str,
    planned: Vec<Planned>,
    mut discards: Vec<Discard>,
) -> Result<Loaded, tokio_postgres::Error> {
    let mut plans = Vec::with_capacity(planned.len());
    for p in planned {
        plans.push(match p {
            Planned::Ready(plan) => plan,
            Planned::NeedsDdl(table, rows) => {
                let needs = wanted(&rows);
                let (have, refusals) = cache.ensure(client, schema, &table, &needs).await?;
                prepare(table, &rows, &needs, &have, &refusals)
            }
        });
    }
    let started = std::time::Instant::now();
    let tx = client.transaction().await?;
    let mut loaded = 0;
    for mut plan in plans {
        discards.append(&mut plan.discards);
        let target = Target {
            schema,
            table: &plan.table,
            cols: &plan.cols,
            upsert: plan.upsert,
        };
        let refused = load_rows(&tx, &target, plan.data).await?;
        loaded += plan.rows.saturating_sub(refused.len());
        discards.extend(refused);
    }
    write(&tx, cache, schema, &discards).await?;
    tx.commit().await?;
    if !discards.is_empty() {
        cache.remember_discards(schema);
    }
    tracing::debug!(
        took_ms = started.elapsed().as_millis() as u64,
        "warehouse transaction"
    );
    Ok(Loaded {
        rows: loaded,
        discards: count_by_code(&discards),
    })
}

/// What a table group's values ask of its columns (`lattice.rs`), its kind's standard
/// columns first.
fn wanted(rows: &[Row]) -> Needs {
    let mut needs = Needs::new();
    for r in rows {
        for (k, c) in &r.cols {
            note(&mut needs, k, c.ty);
        }
    }
    match rows.first() {
        Some(r) => with_standard(r.kind, needs),
        None => needs,
    }
}

/// Upserted tables: one row per id per batch, later non-null values over earlier ones.
fn merge_by_id(rows: Vec<Row>) -> Vec<Row> {
    let mut merged: IndexMap<String, Row> = IndexMap::new();
    for r in rows {
        let id = r.cols.get("id").map(|c| c.text.clone()).unwrap_or_default();
        match merged.get_mut(&id) {
            Some(m) => m.cols.extend(r.cols),
            None => {
                merged.insert(id, r);
            }
        }
    }
    merged.into_values().collect()
}

/// Renders `rows` as COPY text over `cols`. Values that cannot go into their column, and
/// values of columns the table does not have (`left_out` says why), become discards.
fn render(
    table: &str,
    rows: &[Row],
    cols: &[String],
    have: &Columns,
    refusals: &Refusals,
    discards: &mut Vec<Discard>,
) -> String {
    let position: HashMap<&str, usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let types: Vec<ColType> = cols
        .iter()
        .map(|c| have.get(c).copied().unwrap_or(ColType::Text))
        .collect();
    let mut out = String::with_capacity(rows.len() * 256);
    let mut slots: Vec<Option<&Cell>> = vec![None; cols.len()];
    for r in rows {
        let row_id = r.cols.get("id").map_or("", |c| c.text.as_str());
        let mut discard = |column: &str, value: &str, reason: String, code: &str| {
            discards.push(Discard {
                table: table.to_owned(),
                column: column.to_owned(),
                row_id: row_id.to_owned(),
                value: value.to_owned(),
                reason,
                code: code.to_owned(),
            });
        };
        slots.iter_mut().for_each(|s| *s = None);
        for (k, cell) in &r.cols {
            match position.get(k.as_str()) {
                Some(&i) => slots[i] = Some(cell),
                None => {
                    let why = refusals
                        .left_out
                        .as_deref()
                        .unwrap_or("the table has no such column");
                    discard(k, &cell.text, why.to_owned(), "column_left_out");
                }
            }
        }
        for (i, slot) in slots.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            let unwidened = refusals.unwidened.get(&cols[i]).map(String::as_str);
            let value = slot.and_then(|cell| match misfit(types[i], cell, unwidened) {
                None => Some(cell.text.as_str()),
                Some((reason, code)) => {
                    discard(&cols[i], &cell.text, reason, code);
                    None
                }
            });
            copy_field(&mut out, value);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::postgres::standard::TableKind;

    fn cell(ty: ColType, text: &str) -> Cell {
        Cell {
            ty,
            text: text.into(),
        }
    }

    #[test]
    fn copy_escaping_and_fit_rules() {
        let mut s = String::new();
        copy_field(&mut s, Some("a\tb\\c\nd\re\0f"));
        s.push('|');
        copy_field(&mut s, None);
        s.push('|');
        copy_field(&mut s, Some("x\0"));
        assert_eq!(s, "a\\tb\\\\c\\nd\\ref|\\N|x");
        let fits = |col, c: &Cell| misfit(col, c, None).is_none();
        assert!(fits(ColType::Float, &cell(ColType::Integer, "1")));
        assert!(fits(ColType::Text, &cell(ColType::Boolean, "true")));
        assert!(!fits(ColType::Integer, &cell(ColType::Float, "1.5")));
        assert!(!fits(ColType::Timestamp, &cell(ColType::Text, "x")));
        let at = |s| cell(ColType::Timestamp, s);
        assert!(fits(ColType::Timestamp, &at("2026-01-01T00:00:00+15:59")));
        assert!(fits(ColType::Text, &at("0000-01-01T00:00:00Z")));
        let year0 = misfit(ColType::Timestamp, &at("0000-01-01T00:00:00Z"), None);
        assert_eq!(year0.map(|m| m.1), Some("timestamp_out_of_range"));
        assert!(!fits(ColType::Timestamp, &at("2026-01-01T00:00:00-16:00")));
    }

    #[test]
    fn values_that_cannot_load_are_null_and_discarded() {
        let row = Row {
            table: "t".into(),
            cols: [
                ("id", cell(ColType::Text, "m-1")),
                ("n", cell(ColType::Float, "1.5")),
                ("gone", cell(ColType::Text, "v")),
            ]
            .into_iter()
            .map(|(k, c)| (k.to_owned(), c))
            .collect(),
            upsert: false,
            kind: TableKind::Object,
        };
        let have: Columns = [("id", ColType::Text), ("n", ColType::Integer)]
            .into_iter()
            .map(|(k, t)| (k.to_owned(), t))
            .collect();
        let want = wanted(std::slice::from_ref(&row));
        let refusals = Refusals {
            left_out: Some("too many columns".into()),
            unwidened: [("n".to_owned(), "a view uses it".to_owned())].into(),
        };
        let plan = prepare("t".into(), &[row], &want, &have, &refusals);
        assert_eq!(plan.cols, ["id", "n"]);
        assert_eq!(&plan.data[..], b"m-1\t\\N\n");
        let got: Vec<_> = plan
            .discards
            .iter()
            .map(|d| {
                (
                    d.column.as_str(),
                    d.row_id.as_str(),
                    d.value.as_str(),
                    d.code.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("gone", "m-1", "v", "column_left_out"),
                ("n", "m-1", "1.5", "widening_refused")
            ]
        );
        assert_eq!(plan.discards[0].reason, "too many columns");
        assert!(plan.discards[1].reason.ends_with("a view uses it"));
    }
}
