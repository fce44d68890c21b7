//! Loading one table's rows so that rows Postgres refuses for good do not hold back the rest.
//!
//! Every attempt runs in a savepoint: `COPY` straight into the table (as fast as a raw COPY),
//! or — when an id is already there (a retry, a replay, another loader) or the table is
//! upserted — `COPY` into a staging table typed like it, then `INSERT … ON CONFLICT`.
//!
//! When an attempt fails for a reason retrying cannot fix ([`refuses_rows`]: SQLSTATE classes
//! 21, 22, 23, 44 and 54 — a value, a constraint, a limit), the savepoint is rolled back and
//! the rows are halved, each half attempted on its own, down to the rows that fail alone:
//! those become discards with Postgres's message and SQLSTATE, the rest loads. Any other
//! error (connection, shutdown, serialization, deadlock, resources, privileges, a schema
//! changed behind our back: classes 08, 40, 53, 57, 58, 42, ...) is returned, and the runner
//! retries the whole batch with backoff. Class 42 is not bisected: values reach Postgres only
//! through COPY's input functions, so a 42 is about the schema, and bisecting it would discard
//! every row.
//!
//! Cost: one bad row among 10,000 takes about 1.5 · log2(10,000 / 4) + 4 ≈ 21 attempts; a
//! batch whose every row fails takes about 1.7 attempts per row, and finishes.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Error, Transaction};

use super::discards::{Discard, MAX_VALUE, WHOLE, cut};
use super::schema::ident;

/// Ranges of at most this many rows are tried row by row.
const ROW_BY_ROW: usize = 4;

/// Where one table's rows go.
pub(super) struct Target<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub cols: &'a [String],
    pub upsert: bool,
}

/// Postgres refused the rows themselves (a value, a constraint, a limit): the same rows
/// would fail again, other rows would not.
pub fn refuses_rows(e: &Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| class_refuses_rows(db.code().code()))
}

fn class_refuses_rows(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("21" | "22" | "23" | "44" | "54"))
}

/// A Postgres error with the server's message, SQLSTATE, detail and context when it sent them.
pub fn describe(e: &Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            let context = db.where_().map(|w| format!(" at {w}")).unwrap_or_default();
            let text = format!(
                "{} [SQLSTATE {}]{detail}{context}",
                db.message(),
                db.code().code()
            );
            cut(&text, 2000)
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Loads `data` (COPY text, one row per line) into the table. Returns the rows Postgres
/// refused, as discards; any other failure is an error and the transaction is spent.
pub(super) async fn load_rows(
    tx: &Transaction<'_>,
    t: &Target<'_>,
    data: Bytes,
) -> Result<Vec<Discard>, Error> {
    let first = match attempt(tx, t, data.clone()).await? {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if refuses_rows(&e) => e,
        Err(e) => return Err(e),
    };
    let lines = lines(&data);
    let Some(last) = lines.len().checked_sub(1) else {
        return Err(first);
    };
    tracing::debug!(table = t.table, rows = lines.len(), error = %describe(&first), "isolating the rows Postgres refuses");
    let slice = |r: Range<usize>| data.slice(lines[r.start].start..lines[r.end - 1].end);
    let refused = bisect(last + 1, first, refuses_rows, move |r| {
        attempt(tx, t, slice(r))
    })
    .await?;
    Ok(refused
        .into_iter()
        .map(|(i, e)| row_discard(t, &data[lines[i].clone()], &e))
        .collect())
}

/// Finds the rows among `0..n` whose attempts fail alone, given that attempting all of them
/// failed with `first`. `attempt` answers `Ok(Ok)` loaded, `Ok(Err)` failed and rolled back,
/// `Err` the transaction is broken; a failure `refuses` does not accept ends the search.
pub(super) async fn bisect<E, F, Fut>(
    n: usize,
    first: E,
    refuses: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<Vec<(usize, E)>, E>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<Result<(), E>, E>>,
{
    let mut refused = Vec::new();
    if n <= 1 {
        refused.push((0, first));
        return Ok(refused);
    }
    let mut tried = async |r: Range<usize>| match attempt(r).await? {
        Err(e) if refuses(&e) => Ok(Some(e)),
        Err(e) => Err(e),
        Ok(()) => Ok(None),
    };
    // Every range here holds at least one row that fails.
    let mut failing: Vec<Range<usize>> = Vec::new();
    failing.push(0..n);
    while let Some(r) = failing.pop() {
        if r.len() <= ROW_BY_ROW {
            for i in r {
                if let Some(e) = tried(i..i + 1).await? {
                    refused.push((i, e));
                }
            }
            continue;
        }
        let mid = r.start + r.len() / 2;
        let (left, right) = (r.start..mid, mid..r.end);
        let left_failed = tried(left.clone()).await?.is_some();
        if left_failed {
            failing.push(left);
        }
        // When the left half loaded, the right one holds the failure: no need to try it whole.
        if !left_failed || tried(right.clone()).await?.is_some() {
            failing.push(right);
        }
    }
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}

/// One attempt in a savepoint. `Ok(Err(e))`: it failed and was rolled back; `Err(e)`: the
/// transaction is broken (the rollback failed).
async fn attempt(
    tx: &Transaction<'_>,
    t: &Target<'_>,
    data: Bytes,
) -> Result<Result<(), Error>, Error> {
    tx.batch_execute("SAVEPOINT sy_rows").await?;
    match insert(tx, t, data).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT sy_rows").await?;
            Ok(Ok(()))
        }
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT sy_rows; RELEASE SAVEPOINT sy_rows")
                .await?;
            Ok(Err(e))
        }
    }
}

/// Inside the savepoint `sy_rows`: usually every id is new, so COPY straight in; if an id is
/// already there, undo that and go through a staging table with `ON CONFLICT`.
async fn insert(tx: &Transaction<'_>, t: &Target<'_>, data: Bytes) -> Result<(), Error> {
    let names = t
        .cols
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let target = format!("{}.{}", ident(t.schema), ident(t.table));
    if !t.upsert {
        match copy(tx, &target, &names, data.clone()).await {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT sy_rows").await?;
            }
            done => return done,
        }
    }
    // Typed like the target, so COPY parses each value once and the insert casts nothing.
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE _sy_stage (LIKE {target}) ON COMMIT DROP"
    ))
    .await?;
    copy(tx, "_sy_stage", &names, data).await?;
    let insert = insert_sql(t.schema, t.table, "_sy_stage", t.cols, t.upsert);
    tx.batch_execute(&format!("{insert}; DROP TABLE _sy_stage"))
        .await
}

async fn copy(tx: &Transaction<'_>, table: &str, names: &str, data: Bytes) -> Result<(), Error> {
    let sink = tx
        .copy_in(&format!("COPY {table} ({names}) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await.map(|_| ())
}

pub(super) fn insert_sql(
    schema: &str,
    table: &str,
    stage: &str,
    cols: &[String],
    upsert: bool,
) -> String {
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

/// The byte range of each line (with its `\n`) of COPY text.
fn lines(data: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push(start..data.len());
    }
    out
}

/// One COPY text line back into its fields (`None` for `\N`).
fn fields(line: &[u8]) -> Vec<Option<String>> {
    let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
    text.split('\t')
        .map(|f| {
            if f == "\\N" {
                return None;
            }
            let mut out = String::with_capacity(f.len());
            let mut chars = f.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        })
        .collect()
}

/// A refused row: its id, the row as JSON (column → text), and Postgres's reason.
fn row_discard(t: &Target<'_>, line: &[u8], e: &Error) -> Discard {
    let row: serde_json::Map<String, Value> = t
        .cols
        .iter()
        .zip(fields(line))
        .map(|(c, v)| (c.clone(), v.map_or(Value::Null, Value::String)))
        .collect();
    Discard {
        table: t.table.to_owned(),
        column: WHOLE.into(),
        row_id: row
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        value: cut(&Value::Object(row).to_string(), MAX_VALUE),
        reason: describe(e),
        code: format!("sqlstate_{}", e.code().map_or("unknown", SqlState::code)),
    }
}

#[cfg(test)]
mod tests;
