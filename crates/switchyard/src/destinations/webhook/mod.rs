//! The `webhook` destination (docs/destinations.md#webhook-destinations): Segment's
//! "Webhooks (Actions)", sent by the delivery engine (`delivery/`).
//!
//! - `config.rs`: `settings:` (signing) and the whole destination's compile.
//! - `request.rs`: one (event, mapping) → its HTTP request.

pub mod config;
pub mod request;
