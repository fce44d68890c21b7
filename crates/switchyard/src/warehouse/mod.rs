//! The `postgres` destination: Segment's warehouse layout (reference §5).
//!
//! - `snake.rs`: go-snakecase, for schema, table and column names.

pub mod snake;
