//! The `postgres` destination: Segment's warehouse layout (reference §5).
//!
//! - `snake.rs`: go-snakecase, for schema, table and column names.
//! - `rows.rs`: one event → its rows (standard columns, flattened context and properties,
//!   inferred types).
//! - `load.rs`: schema evolution under an advisory lock, COPY into staging, inserts that
//!   skip loaded ids, the `users` upsert, `_switchyard_discards`.
//! - `runner.rs`: the destination task: micro-batches from the cursor, retries with backoff.

pub mod load;
pub mod rows;
pub mod runner;
pub mod snake;
