//! Configuration: the YAML file (`config/switchyard.example.yaml`, README "Configuration")
//! compiled into a validated `Config`.
//!
//! Layout: this file (the compiled `Config` types and `load`; each destination type's
//! settings are defined in `destinations/<type>/config.rs` and re-exported here), `raw.rs`
//! (serde structs as written), `vars.rs` (`${ENV}` substitution), `units.rs` (durations and
//! sizes), `compile.rs` (raw → `Config`, collecting every problem with its path; the helpers
//! every section's compile uses; also the `storage:` and `dedupe:` sections), `server.rs`
//! (the `server:` section), `sources.rs` (`sources:` and `functions:`), `destinations.rs`
//! (`destinations:`: the keys every destination has, and the registry from `type:` to each
//! type's compile), `demo.rs` (the workspace `serve` starts without `--config`), `tests.rs`
//! (the compiler's unit tests).

pub(crate) mod compile;
pub mod demo;
mod destinations;
pub(crate) mod raw;
mod server;
mod sources;
pub mod units;
mod vars;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::destinations::file::config::FileSettings;
pub use crate::destinations::nats::config::NatsTarget;
pub use crate::destinations::postgres::config::PostgresSettings;
pub use crate::destinations::segment::config::Forward;
pub use compile::compile_str;
pub use server::public_admin_token_problem;

/// One finding of the config compiler, printed by `check` as `<severity> <path> <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Problem {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        }
    }
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        write!(f, "{sev} {path} {}", self.message)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub dedupe: DedupeConfig,
    pub functions: FunctionsConfig,
    pub sources: Vec<SourceConfig>,
    pub destinations: Vec<DestinationConfig>,
    /// Write key → (source id, environment).
    pub write_keys: HashMap<String, (String, String)>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub allow_private_networks: bool,
    pub egress_allow: Vec<crate::egress::AllowRule>,
    pub shutdown_timeout: Duration,
    pub recent_events: usize,
    pub min_free_disk: u64,
    /// Connection limits of the HTTP listener (`http/listener.rs`).
    pub limits: ListenerLimits,
    /// Benchmark baseline only (`serve --bench-no-store`, never from YAML): ingest parses,
    /// authenticates and normalises as usual, then answers 200 without storing anything.
    pub bench_no_store: bool,
}

/// What one client connection may hold (`server.header_read_timeout` and the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From a new connection, or the first byte of a keep-alive connection's next request,
    /// to the end of the request headers.
    pub header_read_timeout: Duration,
    /// From the server's first wait on a request body to its last byte; then 408 and close.
    pub body_read_timeout: Duration,
    /// A keep-alive connection between requests.
    pub idle_timeout: Duration,
    /// Connections served at once (further ones wait, unaccepted, in the kernel's backlog).
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Whether the profile store is kept (`storage.profiles`).
    pub profiles: bool,
    /// Profiles kept at most (`storage.max_profiles`).
    pub max_profiles: u64,
    pub retention_max_age: Duration,
    pub retention_max_bytes: u64,
    pub segment_bytes: u64,
    pub commit_window: Duration,
    pub queue_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DedupeConfig {
    pub window: Duration,
    pub max_keys: u64,
}

#[derive(Debug, Clone)]
pub struct FunctionsConfig {
    pub limits: crate::functions::Limits,
    /// The largest webhook body accepted (also for sources without a function).
    pub max_body: usize,
    pub workers: usize,
    pub retry: FunctionRetry,
}

/// How a run that threw `RetryError` is re-run (docs/functions.md#outcomes).
#[derive(Debug, Clone)]
pub struct FunctionRetry {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// The Segment HTTP Tracking API.
    HttpApi {
        write_keys: Vec<(String, String)>,
        rate_limit: u64,
    },
    /// `POST /webhooks/{id}`: a function, or Segment events passed through.
    Webhook(Box<WebhookSource>),
}

#[derive(Clone)]
pub struct WebhookSource {
    pub environment: String,
    pub function: Option<crate::functions::pool::FunctionSpec>,
    pub token: Option<String>,
    pub verify: Option<Verify>,
    pub public: bool,
    /// `None` when idempotency is disabled.
    pub idempotency: Option<Idempotency>,
}

impl std::fmt::Debug for WebhookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSource")
            .field("environment", &self.environment)
            .field("function", &self.function.as_ref().map(|s| &s.filename))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("verify", &self.verify)
            .field("public", &self.public)
            .field("idempotency", &self.idempotency)
            .finish()
    }
}

/// Inbound signature verification (docs/sources.md#signature-schemes).
#[derive(Clone)]
pub enum Verify {
    /// `X-Signature`: hex HMAC-SHA1; an array body is signed by its first element only.
    Segment {
        secret: String,
        allow_unsigned_batch_tail: bool,
    },
    StandardWebhooks(crate::signing::StandardWebhooks),
    HmacSha256 {
        secret: String,
        header: String,
        base64: bool,
        prefix: String,
    },
}

impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verify::Segment { .. } => "Segment(***)",
            Verify::StandardWebhooks(_) => "StandardWebhooks(***)",
            Verify::HmacSha256 { .. } => "HmacSha256(***)",
        })
    }
}

/// Knock-style idempotency (docs/sources.md#idempotency): a key read from each event (or, for a
/// function source, from the request body) makes a repeat inside `window` a no-op.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key's path, split on `.`; default `["messageId"]`.
    pub key: Vec<String>,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Latest,
    Earliest,
}

#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub id: String,
    /// The destination-level FQL filter, if any.
    pub subscribe: Option<crate::fql::Fql>,
    /// `None` means every source.
    pub sources: Option<Vec<String>>,
    /// `None` means every environment.
    pub environments: Option<Vec<String>>,
    pub start: Start,
    /// `backlog:`: the caps past which its oldest pending events are dead-lettered.
    pub backlog: BacklogConfig,
    pub kind: DestinationKind,
}

/// A destination's backlog caps (`destinations/backlog.rs` enforces them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogConfig {
    /// Log bytes between the destination's cursor and the committed end.
    pub max_bytes: u64,
    /// Age of the oldest record the destination has not passed, by `receivedAt`.
    pub max_age: Duration,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        BacklogConfig {
            max_bytes: 10 << 30,
            max_age: Duration::from_secs(7 * 86_400),
        }
    }
}

impl DestinationConfig {
    /// Whether an event from `source`/`environment` is for this destination.
    pub fn wants(&self, source: &str, environment: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == source))
            && self
                .environments
                .as_ref()
                .is_none_or(|e| e.iter().any(|x| x == environment))
    }
}

/// The five destination types, one variant each. `webhook`, `segment` and `nats` send each
/// event out through the delivery engine (`delivery/`), configured by a `WebhookConfig`;
/// `segment` and `nats` add where they send. `file` and `postgres` write batches.
#[derive(Debug, Clone)]
pub enum DestinationKind {
    File(FileSettings),
    Webhook(Box<WebhookConfig>),
    /// Forwards whole events to another Segment-compatible endpoint's `/v1/batch`.
    Segment(Box<WebhookConfig>, Forward),
    /// Publishes whole events to NATS (JetStream unless `core`).
    Nats(Box<WebhookConfig>, NatsTarget),
    /// Segment's warehouse layout in Postgres (docs/destinations.md#warehouse).
    Postgres(PostgresSettings),
}

/// How a destination of the delivery engine sends: the part of its kind the engine needs.
#[derive(Debug, Clone)]
pub enum Route {
    Webhook,
    Segment(Forward),
    Nats(NatsTarget),
}

impl DestinationKind {
    /// The `type:` this kind is configured with.
    pub fn type_name(&self) -> &'static str {
        match self {
            DestinationKind::File(_) => "file",
            DestinationKind::Webhook(_) => "webhook",
            DestinationKind::Segment(..) => "segment",
            DestinationKind::Nats(..) => "nats",
            DestinationKind::Postgres(_) => "postgres",
        }
    }

    /// For the kinds the delivery engine sends: its settings and how it sends.
    pub fn delivered(&self) -> Option<(&WebhookConfig, Route)> {
        match self {
            DestinationKind::Webhook(c) => Some((c, Route::Webhook)),
            DestinationKind::Segment(c, f) => Some((c, Route::Segment(f.clone()))),
            DestinationKind::Nats(c, n) => Some((c, Route::Nats(n.clone()))),
            DestinationKind::File(_) | DestinationKind::Postgres(_) => None,
        }
    }
}

/// A Segment "Webhooks (Actions)" compatible destination; with `forward` set, the
/// `segment` destination (forwarding to another Tracking API) built on the same engine.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub signing: Signing,
    pub mappings: Vec<MappingConfig>,
    pub delivery: DeliveryConfig,
    pub retry: RetryConfig,
}

#[derive(Clone)]
pub enum Signing {
    None,
    /// `X-Signature`: hex HMAC-SHA1 with the shared secret.
    Segment(String),
    StandardWebhooks(crate::signing::StandardWebhooks),
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signing::None => "None",
            Signing::Segment(_) => "Segment(***)",
            Signing::StandardWebhooks(_) => "StandardWebhooks(***)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct MappingConfig {
    pub name: String,
    pub enabled: Enabled,
    pub subscribe: crate::fql::Fql,
    pub url: crate::mapping::Mapping,
    pub method: String,
    pub headers: Vec<(String, crate::mapping::Mapping)>,
    pub data: crate::mapping::Mapping,
    /// 0 = one event per request; otherwise up to this many events per request.
    pub batch_size: usize,
}

/// `enabled: true|false`, or per environment; an environment missing from the map is off.
#[derive(Debug, Clone)]
pub enum Enabled {
    All(bool),
    PerEnvironment(HashMap<String, bool>),
}

impl Enabled {
    pub fn for_environment(&self, env: &str) -> bool {
        match self {
            Enabled::All(b) => *b,
            Enabled::PerEnvironment(m) => m.get(env).copied().unwrap_or(false),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_in_flight: usize,
    pub batch_linger: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub max_age: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Reads and compiles a config file. On failure, every problem found is returned.
pub fn load(path: &Path) -> Result<(Config, Vec<Problem>), Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::error(
            path.display().to_string(),
            format!("cannot read config: {e}"),
        )]
    })?;
    let (config, problems) = compile_str(&text, &path.display().to_string(), &|k| {
        std::env::var(k).ok()
    });
    match config {
        Some(c) if problems.iter().all(|p| p.severity == Severity::Warning) => Ok((c, problems)),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests;
