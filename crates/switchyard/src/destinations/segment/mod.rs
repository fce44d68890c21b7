//! The `segment` destination (docs/destinations.md): whole events forwarded to another
//! Segment-compatible Tracking API, sent by the delivery engine (`delivery/`).
//!
//! - `config.rs`: `settings:` (endpoint, write key, batch size) and the engine's route.
//! - `forward.rs`: the forwarded request and the gzipped batch envelope of each attempt.

pub mod config;
pub mod forward;
