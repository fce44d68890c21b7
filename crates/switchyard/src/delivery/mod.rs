//! The delivery engine for destinations that send each event out: `webhook`, `segment` and
//! `nats`.
//!
//! Layout: `worker.rs` (one task per destination: cursor window, concurrency, retries,
//! batching, replay and dispatch), `window.rs` (which records are finished when deliveries
//! complete out of order), `plan.rs` (a logged event → its deliveries, one per matching
//! mapping), `batch.rs` (mappings with `batch_size`), `webhook.rs` (building, signing and
//! classifying Webhooks (Actions) requests), `http.rs` (the guarded HTTP client), `nats.rs`
//! (JetStream publishes), `request.rs` (the typed request a delivery sends: HTTP or a NATS
//! publish), `transport.rs` (sending it over its transport, and what the typed answer means),
//! `backoff.rs` (timing), `replay.rs` (the state of a replay from the log), `store.rs` (retry
//! set, dead letters and delivery log in `data_dir/deliveries.redb`).

pub mod backoff;
mod batch;
pub mod http;
pub mod nats;
mod plan;
pub mod replay;
pub mod request;
pub mod store;
pub mod transport;
pub mod webhook;
mod window;
pub mod worker;
