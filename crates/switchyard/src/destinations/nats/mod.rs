//! The `nats` destination (docs/destinations.md): whole events published to a subject
//! rendered from a template, sent by the delivery engine (`delivery/`).
//!
//! - `config.rs`: `settings:` (URL, subject template, `core`) and the engine's route.
//! - `publish.rs`: JetStream (or core) publishes and the subject template.

pub mod config;
pub mod publish;
