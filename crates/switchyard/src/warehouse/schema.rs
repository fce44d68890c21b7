//! The warehouse schema as Postgres has it: a cache shared by the loader and the thread that
//! prepares the next batch, DDL under an advisory lock on the schema (so racing loaders take
//! turns), and a re-read of `information_schema` after every change. Columns Postgres will
//! not add because the table is at its 1,600-column limit are left out, and said so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::discards::DISCARDS;
use super::isolate::describe;
use super::rows::ColType;

pub type Columns = IndexMap<String, ColType>;

/// The tables as Postgres has them, shared by the loader and the thread that prepares the
/// next batch (which renders with these types when no DDL is needed).
#[derive(Clone, Default)]
pub struct SchemaCache {
    tables: Arc<Mutex<HashMap<(String, String), Columns>>>,
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
        let rows = client
            .query(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &table],
            )
            .await?;
        let cols: Columns = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), ColType::from_pg(r.get::<_, &str>(1))))
            .collect();
        self.lock()
            .insert((schema.to_owned(), table.to_owned()), cols);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Columns>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, schema: &str, table: &str) -> Option<Columns> {
        self.lock()
            .get(&(schema.to_owned(), table.to_owned()))
            .cloned()
    }

    /// Forgets every table, so the next batch re-reads what Postgres has (after a failure
    /// that may come from a table or column changed behind our back).
    pub(super) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Notes that `schema` has `_switchyard_discards` (created in a load's transaction).
    pub(super) fn remember_discards(&self, schema: &str) {
        let cols: Columns = ["table_name", "column_name", "row_id", "value", "reason"]
            .into_iter()
            .map(|c| (c.to_owned(), ColType::Text))
            .chain([("discarded_at".to_owned(), ColType::Timestamp)])
            .collect();
        self.lock()
            .insert((schema.to_owned(), DISCARDS.to_owned()), cols);
    }

    /// Makes sure `schema.table` has every column in `want`; returns the columns it has, and
    /// why some were left out when Postgres would not add them (a table has at most 1,600
    /// columns, SQLSTATE 54011): their values then go to the discards.
    pub(super) async fn ensure(
        &self,
        client: &mut Client,
        schema: &str,
        table: &str,
        want: &Columns,
    ) -> Result<(Columns, Option<String>), tokio_postgres::Error> {
        let have = match self.get(schema, table) {
            Some(h) => h,
            None => {
                self.refresh(client, schema, table).await?;
                self.get(schema, table).unwrap_or_default()
            }
        };
        let missing: Vec<(&String, ColType)> = want
            .iter()
            .filter(|(c, _)| !have.contains_key(*c))
            .map(|(c, t)| (c, *t))
            .collect();
        if missing.is_empty() {
            return Ok((have, None));
        }
        let left_out = match add_columns(client, schema, table, &missing, false).await {
            Err(e) if e.code() == Some(&SqlState::TOO_MANY_COLUMNS) => {
                add_columns(client, schema, table, &missing, true).await?
            }
            other => other?,
        };
        self.refresh(client, schema, table).await?;
        Ok((self.get(schema, table).unwrap_or_default(), left_out))
    }
}

/// Creates `schema.table` if needed and adds `missing`, in one transaction holding the
/// schema's lock. `one_by_one`: each column in a savepoint, stopping at the first Postgres
/// refuses for the table's column limit; returns why the rest was left out.
async fn add_columns(
    client: &mut Client,
    schema: &str,
    table: &str,
    missing: &[(&String, ColType)],
    one_by_one: bool,
) -> Result<Option<String>, tokio_postgres::Error> {
    let tx = ddl_transaction(client, schema).await?;
    let (s, t) = (ident(schema), ident(table));
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{t} (id varchar(1024) PRIMARY KEY)"
    ))
    .await?;
    let mut left_out = None;
    for (col, ty) in missing {
        let alter = format!(
            "ALTER TABLE {s}.{t} ADD COLUMN IF NOT EXISTS {} {}",
            ident(col),
            ty.sql()
        );
        if !one_by_one {
            tx.batch_execute(&alter).await?;
            continue;
        }
        tx.batch_execute("SAVEPOINT sy_column").await?;
        match tx.batch_execute(&alter).await {
            Ok(()) => tx.batch_execute("RELEASE SAVEPOINT sy_column").await?,
            Err(e) if e.code() == Some(&SqlState::TOO_MANY_COLUMNS) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT sy_column").await?;
                left_out = Some(format!("the column could not be added: {}", describe(&e)));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(left_out)
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
