//! The `postgres` destination: Segment's warehouse layout (docs/destinations.md#warehouse).
//!
//! - `snake.rs`: go-snakecase, for schema, table and column names.
//! - `rows.rs`: one event → its rows (standard columns, flattened context and properties,
//!   inferred types); U+0000, which Postgres text cannot hold, is removed first.
//! - `standard.rs`: the columns each kind of table has from its first day.
//! - `lattice.rs`: which value fits which column; `bigint` → `numeric`, the one widening.
//! - `schema.rs`: the schema cache and DDL (tables, columns, widenings) under an advisory lock.
//! - `read.rs`: a batch from the log: records → rows, or discards when they cannot be read.
//! - `load.rs`: batches rendered as COPY text, one transaction per schema per batch.
//! - `isolate.rs`: one table's rows in savepoints (COPY straight in, or staging with
//!   `ON CONFLICT`); rows Postgres refuses for good are found by halving and discarded.
//! - `discards.rs`: `_switchyard_discards`, where every value, row or record that could not
//!   be loaded is written with its reason.
//! - `config.rs`: `settings:` (URL, CA file, batch size and interval), checked at load.
//! - `connect.rs`: the connection, with TLS as `sslmode` says (rustls).
//! - `runner.rs`: the destination task: micro-batches from the cursor, retries with backoff.
//! - `replay.rs`: replay from the log, between live batches, without duplicate rows.

pub mod config;
pub mod connect;
pub mod discards;
pub mod isolate;
pub mod lattice;
pub mod load;
pub mod read;
mod replay;
pub mod rows;
pub mod runner;
pub mod schema;
pub mod snake;
pub mod standard;
