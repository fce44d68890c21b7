//! Loading one micro-batch into Postgres (reference §5.4, issue 5 "Loading").
//!
//! 1. Schema (`schema.rs`): tables and columns missing from the cache are created under an
//!    advisory lock on the schema, then re-read: whoever created a column first decided its
//!    type.
//! 2. Values that do not fit their column's type become NULL, and the row, column, value and
//!    reason go to `_switchyard_discards`.
//! 3. In one transaction: per table, `COPY` straight into it (inside a savepoint); if an id
//!    is already there (a retry, replay or redelivery), undo that and `COPY` into a temporary
//!    staging table typed like it, then `INSERT … SELECT … ON CONFLICT (id) DO NOTHING`, so a
//!    retry or replay never duplicates a
//!    row; `users` and object collections are merged per id in Rust (later non-null values
//!    win) and upserted.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures_util::SinkExt;
use indexmap::IndexMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::rows::{Cell, ColType, Row};
use super::schema::{Columns, SchemaCache, ensure_discards, ident};

/// A value that did not fit its column.
struct Discard {
    table: String,
    column: String,
    row_id: String,
    value: String,
    reason: String,
}

fn fits(col: ColType, cell: &Cell) -> bool {
    col == cell.ty || col == ColType::Text || (col == ColType::Float && cell.ty == ColType::Integer)
}

/// COPY text format: `\N` for NULL, backslash escapes for the rest.
fn copy_field(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push_str("\\N");
        return;
    };
    let special = |b: &u8| matches!(b, b'\\' | b'\n' | b'\r' | b'\t');
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
            let want = wanted(&rows);
            match cache.get(schema, &table) {
                Some(have) if want.keys().all(|c| have.contains_key(c)) => {
                    Planned::Ready(prepare(table, &rows, &want, &have))
                }
                _ => Planned::NeedsDdl(table, rows),
            }
        })
        .collect()
}

fn prepare(table: String, rows: &[Row], want: &Columns, have: &Columns) -> TablePlan {
    let cols: Vec<String> = want
        .keys()
        .filter(|c| have.contains_key(*c))
        .cloned()
        .collect();
    let mut discards = Vec::new();
    let data = Bytes::from(render(&table, rows, &cols, have, &mut discards));
    TablePlan {
        upsert: rows.first().is_some_and(|r| r.upsert),
        rows: rows.len(),
        table,
        cols,
        data,
        discards,
    }
}

/// Loads one schema's planned tables in one transaction, after any DDL they need. Returns
/// rows loaded (before `ON CONFLICT` skips) and values discarded.
pub async fn load(
    client: &mut Client,
    cache: &SchemaCache,
    schema: &str,
    planned: Vec<Planned>,
) -> Result<(usize, usize), tokio_postgres::Error> {
    let mut plans = Vec::with_capacity(planned.len());
    for p in planned {
        plans.push(match p {
            Planned::Ready(plan) => plan,
            Planned::NeedsDdl(table, rows) => {
                let want = wanted(&rows);
                let have = cache.ensure(client, schema, &table, &want).await?;
                prepare(table, &rows, &want, &have)
            }
        });
    }
    let discards: Vec<Discard> = plans
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.discards))
        .collect();
    if !discards.is_empty() {
        ensure_discards(client, cache, schema).await?;
    }
    let started = std::time::Instant::now();
    let tx = client.transaction().await?;
    let mut loaded = 0;
    for (i, plan) in plans.into_iter().enumerate() {
        let TablePlan {
            table,
            cols,
            data,
            rows: n,
            upsert,
            ..
        } = plan;
        let names = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let target = format!("{}.{}", ident(schema), ident(&table));
        // Usually every id is new: COPY straight into the table, as fast as a raw COPY. A
        // redelivery or replay hits the primary key; then undo that and take the staging path.
        if !upsert {
            tx.batch_execute("SAVEPOINT sy_direct").await?;
            match copy(&tx, &target, &names, data.clone()).await {
                Ok(()) => {
                    tx.batch_execute("RELEASE SAVEPOINT sy_direct").await?;
                    loaded += n;
                    continue;
                }
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT sy_direct").await?;
                }
                Err(e) => return Err(e),
            }
        }
        // Typed like the target, so COPY parses each value once and the insert casts nothing.
        let stage = format!("_sy_stage_{i}");
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {stage} (LIKE {target}) ON COMMIT DROP"
        ))
        .await?;
        copy(&tx, &stage, &names, data).await?;
        tx.batch_execute(&insert_sql(schema, &table, &stage, &cols, upsert))
            .await?;
        loaded += n;
    }
    write_discards(&tx, schema, &discards).await?;
    tx.commit().await?;
    tracing::debug!(
        took_ms = started.elapsed().as_millis() as u64,
        "warehouse transaction"
    );
    Ok((loaded, discards.len()))
}

async fn copy(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    names: &str,
    data: Bytes,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(&format!("COPY {table} ({names}) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await.map(|_| ())
}

/// Columns of a table group; a column new in this batch takes its most recent value's type.
fn wanted(rows: &[Row]) -> Columns {
    let mut want = Columns::new();
    for r in rows {
        for (k, c) in &r.cols {
            match want.get_mut(k) {
                Some(t) => *t = c.ty,
                None => {
                    want.insert(k.clone(), c.ty);
                }
            }
        }
    }
    want
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

fn render(
    table: &str,
    rows: &[Row],
    cols: &[String],
    have: &Columns,
    discards: &mut Vec<Discard>,
) -> String {
    let position: HashMap<&str, usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let types: Vec<ColType> = cols.iter().map(|c| have[c]).collect();
    let mut out = String::with_capacity(rows.len() * 256);
    let mut slots: Vec<Option<&Cell>> = vec![None; cols.len()];
    for r in rows {
        slots.iter_mut().for_each(|s| *s = None);
        for (k, cell) in &r.cols {
            if let Some(&i) = position.get(k.as_str()) {
                slots[i] = Some(cell);
            }
        }
        for (i, slot) in slots.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            let value = slot.and_then(|cell| {
                if fits(types[i], cell) {
                    return Some(cell.text.as_str());
                }
                let row_id = r
                    .cols
                    .get("id")
                    .map(|c| c.text.as_str())
                    .unwrap_or_default();
                discards.push(Discard {
                    table: table.to_owned(),
                    column: cols[i].clone(),
                    row_id: row_id.to_owned(),
                    value: cell.text.clone(),
                    reason: format!(
                        "a {:?} value does not fit the column's type {}",
                        cell.ty,
                        types[i].sql()
                    ),
                });
                None
            });
            copy_field(&mut out, value);
        }
        out.push('\n');
    }
    out
}

fn insert_sql(schema: &str, table: &str, stage: &str, cols: &[String], upsert: bool) -> String {
    let names = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let target = format!("{}.{}", ident(schema), ident(table));
    let insert = format!("INSERT INTO {target} ({names}) SELECT {names} FROM {stage}");
    if !upsert {
        return format!("{insert} ON CONFLICT (id) DO NOTHING");
    }
    // Latest values win: a newer identify overwrites what it carries and keeps the rest.
    let sets: Vec<String> = cols
        .iter()
        .filter(|c| c.as_str() != "id")
        .map(|c| format!("{n} = COALESCE(EXCLUDED.{n}, {target}.{n})", n = ident(c)))
        .collect();
    if sets.is_empty() {
        return format!("{insert} ON CONFLICT (id) DO NOTHING");
    }
    let newer = if cols.iter().any(|c| c == "received_at") {
        format!(
            " WHERE {target}.received_at IS NULL OR EXCLUDED.received_at >= {target}.received_at"
        )
    } else {
        String::new()
    };
    format!(
        "{insert} ON CONFLICT (id) DO UPDATE SET {}{newer}",
        sets.join(", ")
    )
}

async fn write_discards(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    discards: &[Discard],
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {}._switchyard_discards (table_name, column_name, row_id, value, reason) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        ident(schema)
    );
    let mut seen = HashSet::new();
    for d in discards {
        if seen.insert((&d.table, &d.row_id, &d.column)) {
            tx.execute(&sql, &[&d.table, &d.column, &d.row_id, &d.value, &d.reason])
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_escaping_and_fit_rules() {
        let mut s = String::new();
        copy_field(&mut s, Some("a\tb\\c\nd\re"));
        s.push('|');
        copy_field(&mut s, None);
        assert_eq!(s, "a\\tb\\\\c\\nd\\re|\\N");
        let cell = |ty| Cell {
            ty,
            text: "1".into(),
        };
        assert!(fits(ColType::Float, &cell(ColType::Integer)));
        assert!(fits(ColType::Text, &cell(ColType::Boolean)));
        assert!(!fits(ColType::Integer, &cell(ColType::Float)));
        assert!(!fits(ColType::Timestamp, &cell(ColType::Text)));
        assert_eq!(ident("order"), "\"order\"");
    }

    #[test]
    fn users_upsert_keeps_older_traits_and_respects_order() {
        let have: Columns = [
            ("id", ColType::Text),
            ("received_at", ColType::Timestamp),
            ("plan", ColType::Text),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_owned(), t))
        .collect();
        let cols: Vec<String> = have.keys().cloned().collect();
        let sql = insert_sql("web", "users", "_sy_stage_0", &cols, true);
        assert!(
            sql.contains(
                "ON CONFLICT (id) DO UPDATE SET \"received_at\" = COALESCE(EXCLUDED.\"received_at\""
            ),
            "{sql}"
        );
        assert!(
            sql.contains("EXCLUDED.received_at >= \"web\".\"users\".received_at"),
            "{sql}"
        );
        let plain = insert_sql("web", "tracks", "s", &cols, false);
        assert!(
            plain.ends_with("ON CONFLICT (id) DO NOTHING")
                && plain.contains("SELECT \"id\", \"received_at\", \"plan\" FROM s"),
            "{plain}"
        );
    }
}
