//! The warehouse schema as Postgres has it: a cache shared by the loader and the thread that
//! prepares the next batch, DDL under an advisory lock on the schema (so racing loaders take
//! turns), and a re-read of `information_schema` after every change. Columns Postgres will
//! not add because the table is at its 1,600-column limit are left out, and said so.
//!
//! A `bigint` column that meets a non-integer number is widened to `numeric`
//! (`lattice.rs`) in the same locked transaction, after re-reading the table's columns (a
//! racing loader may have widened it first). When Postgres refuses (a view depends on the
//! column; the loader does not own the table), the column keeps its type, the numbers that do
//! not fit are discarded with Postgres's reason, and the widening is not tried again for five
//! minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::discards::DISCARDS;
use super::isolate::describe;
use super::lattice::Needs;
use super::rows::ColType;

pub type Columns = IndexMap<String, ColType>;

/// How long a widening Postgres refused (a view depends on the column, the loader does not
/// own the table) is not tried again; its values are discarded meanwhile.
const RETRY_WIDENING: Duration = Duration::from_secs(300);

/// The tables as Postgres has them, shared by the loader and the thread that prepares the
/// next batch (which renders with these types when no DDL is needed).
#[derive(Clone, Default)]
pub struct SchemaCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    tables: HashMap<(String, String), Columns>,
    /// Per `(schema, table, column)`: when Postgres refused to widen it, and why.
    unwidened: HashMap<(String, String, String), (Instant, String)>,
}

/// Why some values of a table cannot be loaded as they are.
#[derive(Debug, Default, Clone)]
pub struct Refusals {
    /// Why the columns the table lacks were not added (it is at 1,600 columns).
    pub left_out: Option<String>,
    /// Per `bigint` column Postgres would not widen to `numeric`: why.
    pub unwidened: HashMap<String, String>,
}

/// Columns and the type each is to be created with or widened to.
type Changes = Vec<(String, ColType)>;

/// The DDL `needs` asks of a table with columns `have`: columns to add, columns to widen.
fn changes(have: &Columns, needs: &Needs) -> (Changes, Changes) {
    let mut add = Vec::new();
    let mut widen = Vec::new();
    for (col, need) in needs {
        match have.get(col) {
            None => add.push((col.clone(), need.create())),
            Some(h) => widen.extend(need.widen(*h).map(|t| (col.clone(), t))),
        }
    }
    (add, widen)
}

/// Quotes an identifier (our names are already snake_case; this keeps keywords safe).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl SchemaCache {
    async fn refresh(
        &self,
        client: &Client,
        schema: &str,
        table: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let cols = read_columns(client, schema, table).await?;
        self.lock()
            .tables
            .insert((schema.to_owned(), table.to_owned()), cols);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, schema: &str, table: &str) -> Option<Columns> {
        self.lock()
            .tables
            .get(&(schema.to_owned(), table.to_owned()))
            .cloned()
    }

    /// Forgets every table and refused widening, so the next batch re-reads what Postgres
    /// has (after a failure that may come from a table or column changed behind our back).
    pub(super) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.tables.clear();
        inner.unwidened.clear();
    }

    /// The widenings of `schema.table` Postgres refused lately, and why.
    pub(super) fn unwidened(&self, schema: &str, table: &str) -> HashMap<String, String> {
        let mut inner = self.lock();
        inner
            .unwidened
            .retain(|_, (at, _)| at.elapsed() < RETRY_WIDENING);
        inner
            .unwidened
            .iter()
            .filter(|((s, t, _), _)| s == schema && t == table)
            .map(|((_, _, c), (_, why))| (c.clone(), why.clone()))
            .collect()
    }

    /// Whether the cache has every column `needs` asks for, at a type that takes its
    /// values (or one Postgres lately refused to widen): the table needs no DDL.
    pub(super) fn ready(&self, schema: &str, table: &str, needs: &Needs) -> Option<Columns> {
        let have = self.get(schema, table)?;
        let (add, widen) = changes(&have, needs);
        if !add.is_empty() {
            return None;
        }
        let refused = self.unwidened(schema, table);
        widen
            .iter()
            .all(|(c, _)| refused.contains_key(c))
            .then_some(have)
    }

    /// Notes that `schema` has `_switchyard_discards` (created in a load's transaction).
    pub(super) fn remember_discards(&self, schema: &str) {
        let cols: Columns = ["table_name", "column_name", "row_id", "value", "reason"]
            .into_iter()
            .map(|c| (c.to_owned(), ColType::Text))
            .chain([("discarded_at".to_owned(), ColType::Timestamp)])
            .collect();
        self.lock()
            .tables
            .insert((schema.to_owned(), DISCARDS.to_owned()), cols);
    }

    /// Makes sure `schema.table` has every column `needs` asks for, at a type that takes its
    /// values; returns the columns it has and why some values cannot go in anyway: columns
    /// Postgres would not add (a table has at most 1,600 columns, SQLSTATE 54011), and
    /// `bigint` columns it would not widen to `numeric`.
    pub(super) async fn ensure(
        &self,
        client: &mut Client,
        schema: &str,
        table: &str,
        needs: &Needs,
    ) -> Result<(Columns, Refusals), tokio_postgres::Error> {
        let mut refusals = Refusals {
            left_out: None,
            unwidened: self.unwidened(schema, table),
        };
        if self.get(schema, table).is_none() {
            self.refresh(client, schema, table).await?;
        }
        if let Some(have) = self.ready(schema, table, needs) {
            return Ok((have, refusals));
        }
        let done = match alter(client, schema, table, needs, false).await {
            Err(e) if e.code() == Some(&SqlState::TOO_MANY_COLUMNS) => {
                alter(client, schema, table, needs, true).await?
            }
            other => other?,
        };
        refusals.left_out = done.left_out;
        for (col, why) in done.unwidened {
            let key = (schema.to_owned(), table.to_owned(), col.clone());
            let memo = (Instant::now(), why.clone());
            self.lock().unwidened.insert(key, memo);
            refusals.unwidened.insert(col, why);
        }
        self.refresh(client, schema, table).await?;
        Ok((self.get(schema, table).unwrap_or_default(), refusals))
    }
}

/// In one transaction holding the schema's lock: creates `schema.table` if needed, reads its
/// columns afresh (another loader may have changed them), adds the missing ones and widens
/// those that must be. `one_by_one`: each column in a savepoint, stopping at the first
/// Postgres refuses for the table's column limit.
async fn alter(
    client: &mut Client,
    schema: &str,
    table: &str,
    needs: &Needs,
    one_by_one: bool,
) -> Result<Refusals, tokio_postgres::Error> {
    let tx = ddl_transaction(client, schema).await?;
    let (s, t) = (ident(schema), ident(table));
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{t} (id varchar(1024) PRIMARY KEY)"
    ))
    .await?;
    let (add, widen) = changes(&read_columns(&tx, schema, table).await?, needs);
    let mut done = Refusals::default();
    for (col, ty) in add {
        let alter = format!(
            "ALTER TABLE {s}.{t} ADD COLUMN IF NOT EXISTS {} {}",
            ident(&col),
            ty.sql()
        );
        if !one_by_one {
            tx.batch_execute(&alter).await?;
            continue;
        }
        match in_savepoint(&tx, &alter).await? {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::TOO_MANY_COLUMNS) => {
                done.left_out = Some(format!("the column could not be added: {}", describe(&e)));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    for (col, ty) in widen {
        let alter = format!(
            "ALTER TABLE {s}.{t} ALTER COLUMN {} TYPE {}",
            ident(&col),
            ty.sql()
        );
        match in_savepoint(&tx, &alter).await? {
            Ok(()) => tracing::info!(
                schema,
                table,
                column = col,
                "column widened to {}",
                ty.sql()
            ),
            Err(e) if retry_fixes(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(schema, table, column = col, error = %describe(&e), "column not widened");
                done.unwidened.insert(col, describe(&e));
            }
        }
    }
    tx.commit().await?;
    Ok(done)
}

/// A failure that a later attempt may not meet: the connection, a deadlock or serialization
/// failure, a lock or resource shortage, an operator's intervention.
fn retry_fixes(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none_or(|db| {
        matches!(
            db.code().code().get(..2),
            Some("08" | "40" | "53" | "55" | "57" | "58")
        )
    })
}

/// Runs `sql` in a savepoint: `Ok(Err(e))` when it failed and was rolled back.
async fn in_savepoint(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
) -> Result<Result<(), tokio_postgres::Error>, tokio_postgres::Error> {
    tx.batch_execute("SAVEPOINT sy_ddl").await?;
    match tx.batch_execute(sql).await {
        Ok(()) => tx.batch_execute("RELEASE SAVEPOINT sy_ddl").await.map(Ok),
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT sy_ddl").await?;
            Ok(Err(e))
        }
    }
}

async fn read_columns(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    table: &str,
) -> Result<Columns, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), ColType::from_pg(r.get::<_, &str>(1))))
        .collect())
}

/// A transaction holding the schema's advisory lock: loaders racing on DDL take turns.
async fn ddl_transaction<'c>(
    client: &'c mut Client,
    schema: &str,
) -> Result<tokio_postgres::Transaction<'c>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("switchyard:{schema}")],
    )
    .await?;
    Ok(tx)
}
