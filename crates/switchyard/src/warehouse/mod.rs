//! The `postgres` destination: Segment's warehouse layout (reference §5).
//!
//! - `snake.rs`: go-snakecase, for schema, table and column names.
//! - `rows.rs`: one event → its rows (standard columns, flattened context and properties,
//!   inferred types).
//! - `schema.rs`: the schema cache and DDL under an advisory lock.
//! - `load.rs`: batches rendered as COPY text, COPY straight in or through staging with
//!   `ON CONFLICT`, the `users` and object upserts, `_switchyard_discards`.
//! - `runner.rs`: the destination task: micro-batches from the cursor, retries with backoff.

pub mod load;
pub mod rows;
pub mod runner;
pub mod schema;
pub mod snake;
