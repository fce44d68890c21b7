//! Switchyard: a self-hosted, Segment-compatible customer-data event router.
//!
//! Layout (ARCHITECTURE.md follows one event through these):
//! - `cli/`: the `switchyard` subcommands; `main.rs` only calls `cli::main`.
//! - `config/`: the YAML config compiled into a validated `Config`, every error with its path.
//! - `app.rs`: wiring and the one shutdown story; `state.rs`: the shared `AppState`;
//!   `clock.rs`: the injected clock.
//! - `http/`: the listener (connection limits and timeouts), the router, the error shape,
//!   admin auth, the admin handlers (sources, destinations, functions, lineage, profiles),
//!   the live stream and the OpenAPI document.
//! - `ingest/`: the Segment HTTP Tracking API: body limits, write-key auth, admission.
//! - `event/`: normalisation of Segment events (timestamps, envelope merge, IDs, the
//!   readability walk).
//! - `log/`: the durable embedded log: CRC-framed segments, group commit, readers, retention.
//! - `dedupe/`: the exact, disk-backed `(source, environment, messageId)` index.
//! - `functions/`: source functions in embedded QuickJS; `webhooks/`: webhook sources
//!   (verification, idempotency, function runs and their durable retries).
//! - `fql/`: trigger conditions; `mapping/`: the mapping-kit directives.
//! - `destinations/`: per-destination status and cursor set-up, backlog caps, `log_damage`
//!   dead letters and replay from the log for batch runners; one folder per destination type
//!   (`file/`, `webhook/`, `segment/`, `nats/`, `postgres/`) with its config, validation,
//!   runtime and tests.
//! - `delivery/`: the engine that sends `webhook`, `segment` and `nats` events out, and the
//!   compile of the keys those three share.
//! - `profiles/`: the profile store; `egress.rs` and `egress/`: the outbound address guard.
//! - `recent.rs`: the bounded recent-events store; `cursor.rs`: durable cursors;
//!   `inspect.rs`: the `inspect` report; `telemetry/`: tracing and Prometheus metrics;
//!   `quarantine.rs`: damaged files moved aside and reported; `redb_store.rs`: opening a
//!   redb store so that damage or an I/O error never keeps it down, the stores' one error
//!   type and their versioned rows; `redact.rs`: secrets out of every answer and log line;
//!   `signing.rs`: `X-Signature` and Standard Webhooks signatures.

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
pub mod webhooks;
