//! Every metric Switchyard exports, in one place. Names follow Prometheus conventions and
//! are prefixed `switchyard_`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub accepted: Family<Labels, Counter>,
    pub rejected: Family<Labels, Counter>,
    pub duplicates: Family<Labels, Counter>,
    pub ingest_bytes: Family<Labels, Counter>,
    pub throttled: Family<Labels, Counter>,
    pub fsync_seconds: Histogram,
    pub log_truncated_bytes: Counter,
    pub log_commit_failures: Counter,
    pub dedupe_keys: Gauge,
    pub dedupe_evicted_early: Gauge,
    pub backlog: Family<Labels, Gauge>,
    pub profiles_backlog: Gauge,
    /// Failed reads of the log by the profile store (each retried with backoff).
    pub profiles_log_read_errors: Counter,
    pub delivered: Family<Labels, Counter>,
    pub retries: Family<Labels, Counter>,
    pub dead_letters: Family<Labels, Counter>,
    /// Failed reads of the log by a destination (each retried with backoff).
    pub log_read_errors: Family<Labels, Counter>,
    pub log_bytes: Gauge,
    pub function_runs: Family<Labels, Counter>,
    pub warehouse_discards: Family<Labels, Counter>,
    pub backlog_overflow: Family<Labels, Counter>,
    pub backlog_bytes: Family<Labels, Gauge>,
    pub backlog_oldest_age: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard");
        let m = Metrics {
            accepted: Family::default(),
            rejected: Family::default(),
            duplicates: Family::default(),
            ingest_bytes: Family::default(),
            throttled: Family::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            log_truncated_bytes: Counter::default(),
            log_commit_failures: Counter::default(),
            dedupe_keys: Gauge::default(),
            dedupe_evicted_early: Gauge::default(),
            backlog: Family::default(),
            profiles_backlog: Gauge::default(),
            profiles_log_read_errors: Counter::default(),
            delivered: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            log_read_errors: Family::default(),
            log_bytes: Gauge::default(),
            function_runs: Family::default(),
            warehouse_discards: Family::default(),
            backlog_overflow: Family::default(),
            backlog_bytes: Family::default(),
            backlog_oldest_age: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_accepted",
            "Events appended to the log, by source",
            m.accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Events rejected at ingest, by source and reason",
            m.rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events dropped as duplicates, by source",
            m.duplicates.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Decompressed request bytes received, by source",
            m.ingest_bytes.clone(),
        );
        registry.register(
            "requests_throttled",
            "Requests answered 429 or 503, by reason",
            m.throttled.clone(),
        );
        registry.register(
            "log_fsync_seconds",
            "Latency of one group-commit fdatasync",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "log_recovery_truncated_bytes",
            "Bytes cut from a torn or corrupt log tail at start-up",
            m.log_truncated_bytes.clone(),
        );
        registry.register(
            "log_commit_failures",
            "Group commits that failed (e.g. the disk was full); their requests got an error",
            m.log_commit_failures.clone(),
        );
        registry.register(
            "damage_quarantined",
            "Damaged files or log regions moved or copied to quarantine/, by kind",
            crate::quarantine::counter(),
        );
        registry.register(
            "dedupe_keys",
            "Keys in the dedupe index",
            m.dedupe_keys.clone(),
        );
        registry.register(
            "dedupe_buckets_evicted_early",
            "Dedupe buckets dropped early because max_keys was reached",
            m.dedupe_evicted_early.clone(),
        );
        registry.register(
            "destination_backlog_events",
            "Log records not yet consumed, by destination",
            m.backlog.clone(),
        );
        registry.register(
            "profiles_backlog_events",
            "Log records the profile store has not applied yet",
            m.profiles_backlog.clone(),
        );
        registry.register(
            "profiles_log_read_errors",
            "Failed reads of the log by the profile store, each retried with backoff and listed by /readyz",
            m.profiles_log_read_errors.clone(),
        );
        registry.register(
            "destination_delivered",
            "Events delivered, by destination",
            m.delivered.clone(),
        );
        registry.register(
            "log_bytes",
            "Bytes held by log segments",
            m.log_bytes.clone(),
        );
        registry.register(
            "delivery_retries",
            "Failed attempts scheduled for a retry, by destination",
            m.retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Deliveries moved to the dead-letter queue, by destination",
            m.dead_letters.clone(),
        );
        registry.register(
            "destination_log_read_errors",
            "Failed reads of the log by a destination's reader, each retried with backoff and shown in inspect's last_error, by destination",
            m.log_read_errors.clone(),
        );
        registry.register(
            "function_runs",
            "Source function runs, by source and outcome (ok, validation, retry, timeout, ...)",
            m.function_runs.clone(),
        );
        registry.register(
            "warehouse_discards",
            "Values, rows and records written to _switchyard_discards, by destination and reason",
            m.warehouse_discards.clone(),
        );
        registry.register(
            "backlog_overflow",
            "Events dead-lettered with reason backlog_overflow because a destination's backlog passed backlog.max_bytes or backlog.max_age, by destination",
            m.backlog_overflow.clone(),
        );
        registry.register(
            "destination_backlog_bytes",
            "Log bytes between a destination's cursor and the committed end (checked about once a second), by destination",
            m.backlog_bytes.clone(),
        );
        registry.register(
            "destination_backlog_oldest_age_seconds",
            "Age of the oldest record a destination has not passed, by receivedAt, by destination",
            m.backlog_oldest_age.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn observe_fsync(&self, d: Duration) {
        self.fsync_seconds.observe(d.as_secs_f64());
    }

    pub fn set_dedupe(&self, keys: u64, evicted_early: u64) {
        self.dedupe_keys.set(keys as i64);
        self.dedupe_evicted_early.set(evicted_early as i64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub fn source(id: &str) -> Labels {
    vec![("source", id.to_owned())]
}

pub fn source_reason(id: &str, reason: &str) -> Labels {
    vec![("source", id.to_owned()), ("reason", reason.to_owned())]
}

pub fn destination(id: &str) -> Labels {
    vec![("destination", id.to_owned())]
}

pub fn destination_reason(id: &str, reason: &str) -> Labels {
    vec![
        ("destination", id.to_owned()),
        ("reason", reason.to_owned()),
    ]
}

pub fn reason(r: &str) -> Labels {
    vec![("reason", r.to_owned())]
}
