//! The warehouse schema as Postgres has it: a cache shared by the loader and the thread that
//! prepares the next batch, DDL under an advisory lock on the schema (so racing loaders take
//! turns), and a re-read of `information_schema` after every change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use tokio_postgres::Client;

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

    /// Makes sure `schema.table` has every column in `want`; returns the columns it has.
    pub(super) async fn ensure(
        &self,
        client: &mut Client,
        schema: &str,
        table: &str,
        want: &Columns,
    ) -> Result<Columns, tokio_postgres::Error> {
        let have = match self.get(schema, table) {
            Some(h) => h,
            None => {
                self.refresh(client, schema, table).await?;
                self.get(schema, table).unwrap_or_default()
            }
        };
        let missing: Vec<(&String, &ColType)> = want
            .iter()
            .filter(|(c, _)| !have.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            let tx = ddl_transaction(client, schema).await?;
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{t} (id varchar(1024) PRIMARY KEY)",
                s = ident(schema),
                t = ident(table)
            ))
            .await?;
            for (col, ty) in missing {
                tx.batch_execute(&format!(
                    "ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}",
                    ident(schema),
                    ident(table),
                    ident(col),
                    ty.sql()
                ))
                .await?;
            }
            tx.commit().await?;
            self.refresh(client, schema, table).await?;
            return Ok(self.get(schema, table).unwrap_or_default());
        }
        Ok(have)
    }
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

pub(super) async fn ensure_discards(
    client: &mut Client,
    cache: &SchemaCache,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    if cache
        .get(schema, "_switchyard_discards")
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(());
    }
    let tx = ddl_transaction(client, schema).await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}._switchyard_discards (\
         table_name text NOT NULL, column_name text NOT NULL, row_id text NOT NULL, value text, \
         reason text NOT NULL, discarded_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (table_name, row_id, column_name))",
        s = ident(schema)
    ))
    .await?;
    tx.commit().await?;
    cache.refresh(client, schema, "_switchyard_discards").await
}
