//! The delivery engine for destinations that call out over HTTP.
//!
//! Layout: `worker.rs` (one task per destination: cursor window, concurrency, retries),
//! `webhook.rs` (building, signing and classifying Webhooks (Actions) requests), `http.rs`
//! (the guarded HTTP client), `backoff.rs` (timing), `store.rs` (retry set, dead letters
//! and delivery log in `data_dir/deliveries.redb`).

pub mod backoff;
mod batch;
pub mod http;
pub mod nats;
mod plan;
pub mod replay;
pub mod store;
pub mod webhook;
mod window;
pub mod worker;
