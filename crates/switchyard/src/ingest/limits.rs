//! Admission control before any work is queued: free disk below `server.min_free_disk`, or
//! a source over its `rate_limit`, answers 429 with `Retry-After` (SDKs wait without
//! spending a retry). Never accept and then drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::{Config, SourceKind};
use crate::http::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;

/// `Retry-After` while the disk is below `min_free_disk`.
const DISK_RETRY_AFTER_SECS: u64 = 30;
/// Age after which `admit` refreshes the free-disk figure itself.
const DISK_FRESH_MS: u64 = 100;

pub struct Admission {
    data_dir: PathBuf,
    min_free_disk: u64,
    /// Free bytes on the data volume, refreshed by `refresh_disk`: by housekeeping once a
    /// second, and by `admit` when the last refresh is older than `DISK_FRESH_MS`, so that
    /// a fast writer cannot run through the `min_free_disk` margin between two ticks.
    free_disk: AtomicU64,
    refreshed_ms: AtomicU64,
    buckets: HashMap<String, Mutex<Bucket>>,
}

struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Admission {
    pub fn new(config: &Config) -> Admission {
        let buckets = config
            .sources
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::HttpApi { rate_limit, .. } if *rate_limit > 0 => {
                    let rate = *rate_limit as f64;
                    Some((
                        s.id.clone(),
                        Mutex::new(Bucket {
                            rate,
                            tokens: rate,
                            at: Instant::now(),
                        }),
                    ))
                }
                SourceKind::HttpApi { .. } | SourceKind::Webhook(_) => None,
            })
            .collect();
        let a = Admission {
            data_dir: config.server.data_dir.clone(),
            min_free_disk: config.server.min_free_disk,
            free_disk: AtomicU64::new(u64::MAX),
            refreshed_ms: AtomicU64::new(0),
            buckets,
        };
        a.refresh_disk();
        a
    }

    pub fn refresh_disk(&self) {
        let now = crate::event::now_ms().max(0) as u64;
        self.refreshed_ms.store(now, Ordering::Relaxed);
        if let Some(free) = free_bytes(&self.data_dir) {
            self.free_disk.store(free, Ordering::Relaxed);
        }
    }

    pub fn admit(&self, state: &AppState, source: &str, events: usize) -> Result<(), ApiError> {
        let now = crate::event::now_ms().max(0) as u64;
        if now.saturating_sub(self.refreshed_ms.load(Ordering::Relaxed)) >= DISK_FRESH_MS {
            // One statvfs (microseconds) at most every DISK_FRESH_MS.
            self.refresh_disk();
        }
        let free = self.free_disk.load(Ordering::Relaxed);
        if free < self.min_free_disk {
            state
                .metrics
                .throttled
                .get_or_create(&metrics::reason("disk_full"))
                .inc();
            let msg =
                format!("free disk ({free} bytes) is below server.min_free_disk; retry later");
            return Err(ApiError::too_many("disk_full", msg, DISK_RETRY_AFTER_SECS));
        }
        if let Some(bucket) = self.buckets.get(source) {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(b.rate);
            b.at = now;
            let need = events as f64;
            if b.tokens < need && b.tokens < b.rate {
                state
                    .metrics
                    .throttled
                    .get_or_create(&metrics::reason("rate_limited"))
                    .inc();
                let wait = ((need.min(b.rate) - b.tokens) / b.rate).ceil().max(1.0) as u64;
                return Err(ApiError::too_many(
                    "rate_limited",
                    format!("source {source} is over its rate limit"),
                    wait,
                ));
            }
            b.tokens -= need;
        }
        Ok(())
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
