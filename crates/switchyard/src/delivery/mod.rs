//! The delivery engine for destinations that send each event out: `webhook`, `segment` and
//! `nats`. What only one of them does — its settings, how it builds a request, NATS
//! publishing, the segment batch envelope — lives in `destinations/<type>/`; `plan.rs` and
//! `worker/send.rs` call it by the destination's `Route`.
//!
//! Layout:
//! - `worker/` — one task per destination, the I/O shell: `mod.rs` (its loop), `read.rs`
//!   (reading the log, backlog caps, planning), `send.rs` (starting attempts, connecting to
//!   NATS), `finish.rs` (outcomes: delivery log, retry set, dead letters), `replay.rs`
//!   (replay from the log), `flush.rs` (saving the delivery log and the cursor, shutdown).
//! - `scheduler.rs` — every decision of the worker, pure and driven by `now_ms`: window,
//!   skip set, live queue, retry set by due time, room, dispatch order, next wake, batches
//!   (tests in `scheduler_tests.rs`).
//! - `window.rs` — which records are finished when deliveries complete out of order.
//! - `plan.rs` — a logged event → its deliveries, one per matching mapping.
//! - `request.rs` — the typed request a delivery sends (HTTP, or a NATS publish) and how
//!   it is stored.
//! - `transport.rs` — sending a request over its transport; the typed answers and what they
//!   mean (delivered, retry, permanent).
//! - `http.rs` — the guarded HTTP client (NATS publishes are `destinations/nats/publish.rs`).
//! - `webhook.rs` — what every HTTP attempt shares: its body and headers, the signature
//!   added at each attempt, and what an answer means (tests in `webhook_tests.rs`);
//!   `batch.rs` — mappings with `batch_size`.
//! - `config.rs` — compiling `delivery:`, `retry:` and `mappings:`, the keys the three
//!   types share.
//! - `backoff.rs` — retry timing; `replay.rs` — the saved state of a replay from the log.
//! - `store.rs` — retry set, dead letters and delivery log in `data_dir/deliveries.redb`
//!   (tests in `store_tests.rs`).

pub mod backoff;
mod batch;
pub(crate) mod config;
pub mod http;
mod plan;
pub mod replay;
pub mod request;
mod scheduler;
pub mod store;
pub mod transport;
pub mod webhook;
mod window;
pub mod worker;
