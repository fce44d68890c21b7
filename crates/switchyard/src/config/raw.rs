//! The config file as written: serde structs that reject unknown keys. `compile.rs` turns
//! them into a validated `Config`. Units stay text here so that errors can name the path.
//! A destination type's `settings:` are written out beside its compile
//! (`destinations/<type>/config.rs`; `delivery/config.rs` for `delivery:`, `retry:` and
//! `mappings:`).

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// A size or duration as written: `512KiB`, `10s`, or a bare integer.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub admin_token: Option<String>,
    pub allow_private_networks: Option<bool>,
    pub egress_allow: Option<Vec<String>>,
    pub shutdown_timeout: Option<Scalar>,
    pub recent_events: Option<usize>,
    pub min_free_disk: Option<Scalar>,
    /// The request line and headers must arrive within this (default 10s).
    pub header_read_timeout: Option<Scalar>,
    /// A request body must arrive within this once the server reads it (default 30s).
    pub body_read_timeout: Option<Scalar>,
    /// A keep-alive connection with no request in progress is closed after this (default 75s).
    pub idle_timeout: Option<Scalar>,
    /// Client connections served at once; more wait in the kernel's backlog (default 10000).
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub retention: Option<RawRetention>,
    pub nats: Option<Value>,
    pub postgres: Option<Value>,
    /// Size at which the active log segment is sealed (default 64MiB).
    pub segment_bytes: Option<Scalar>,
    /// How long a group commit waits to gather more requests (default 1ms).
    pub commit_window: Option<Scalar>,
    /// Bytes that may wait for the writer before ingest answers 429 (default 64MiB).
    pub queue_bytes: Option<Scalar>,
    /// Keep the profile store (default true).
    pub profiles: Option<bool>,
    /// Profiles kept at most; past it the least recently seen are evicted (default 5,000,000).
    pub max_profiles: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub max_age: Option<Scalar>,
    pub max_bytes: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    pub window: Option<Scalar>,
    pub max_keys: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctions {
    pub deadline: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub max_body: Option<Scalar>,
    pub workers: Option<usize>,
    pub retry: Option<RawFunctionRetry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunctionRetry {
    pub attempts: Option<u32>,
    pub initial: Option<Scalar>,
    pub max: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub write_keys: Option<IndexMap<String, String>>,
    pub rate_limit: Option<u64>,
    pub environment: Option<String>,
    pub function: Option<String>,
    pub settings: Option<Value>,
    pub token: Option<String>,
    pub idempotency: Option<RawIdempotency>,
    pub verify: Option<RawVerify>,
    pub public: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub scheme: String,
    pub secret: String,
    pub header: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    pub allow_unsigned_batch_tail: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    pub key: Option<String>,
    pub enabled: Option<bool>,
    pub window: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sources: Option<Vec<String>>,
    pub environments: Option<Vec<String>>,
    pub subscribe: Option<String>,
    pub settings: Option<Value>,
    pub delivery: Option<Value>,
    pub retry: Option<Value>,
    pub backlog: Option<Value>,
    pub start: Option<String>,
    pub mappings: Option<Value>,
}

/// `backlog:` of a destination: how much may wait for it in the log before its oldest
/// pending events are dead-lettered with reason `backlog_overflow`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBacklog {
    /// Log bytes between the destination's cursor and the committed end (default 10GiB).
    pub max_bytes: Option<Scalar>,
    /// Age of the oldest record it has not passed, by `receivedAt` (default 7d).
    pub max_age: Option<Scalar>,
}
