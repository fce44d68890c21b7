//! Switchyard: a self-hosted, Segment-compatible customer-data event router.
//!
//! Layout (ARCHITECTURE.md follows one event through these):
//! - `cli/`: the `switchyard` subcommands; `main.rs` only calls `cli::main`.
//! - `config/`: the YAML config compiled into a validated `Config`, every error with its path.
//! - `app.rs`: wiring and the one shutdown story; `state.rs`: the shared `AppState`.
//! - `http/`: the router, the error shape, admin auth and admin handlers.
//! - `ingest/`: the Segment HTTP Tracking API: body limits, write-key auth, admission.
//! - `event/`: normalisation of Segment events (timestamps, envelope merge, IDs).
//! - `log/`: the durable embedded log: CRC-framed segments, group commit, readers, retention.
//! - `functions/`: source functions in embedded QuickJS; `webhooks/`: webhook sources
//!   (verification, idempotency, function runs and their durable retries).
//! - `dedupe/`: the exact, disk-backed `(source, environment, messageId)` index.
//! - `destinations/`: per-destination cursor loops and the `file` sink.
//! - `recent.rs`: the bounded recent-events store; `cursor.rs`: durable cursors;
//!   `inspect.rs`: the `inspect` report; `telemetry/`: tracing and Prometheus metrics;
//!   `quarantine.rs`: damaged files moved aside and reported; `redb_store.rs`: opening a
//!   redb store so that damage or an I/O error never keeps it down.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod dedupe;
pub mod delivery;
pub mod destinations;
pub mod egress;
pub mod event;
pub mod fql;
pub mod functions;
pub mod http;
pub mod ingest;
pub mod inspect;
pub mod log;
pub mod mapping;
pub mod profiles;
pub mod quarantine;
pub mod recent;
pub mod redact;
pub mod redb_store;
pub mod signing;
pub mod state;
pub mod telemetry;
pub mod warehouse;
pub mod webhooks;
