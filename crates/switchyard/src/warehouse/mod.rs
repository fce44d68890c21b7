//! The `postgres` destination: Segment's warehouse layout (reference §5).
//!
//! - `snake.rs`: go-snakecase, for schema, table and column names.
//! - `rows.rs`: one event → its rows (standard columns, flattened context and properties,
//!   inferred types).

pub mod rows;
pub mod snake;
