//! Admission control before any work is queued: free disk below `server.min_free_disk`, or
//! a source over its `rate_limit`, answers 429 with `Retry-After` (SDKs wait without
//! spending a retry). Never accept and then drop.
//!
//! A rate limit's bucket refills by the injected clock (`clock.rs`), like every window users
//! see; how fresh the free-disk figure is is only pacing of a cached `statvfs`, on `Instant`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, SourceKind};
use crate::http::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;

/// `Retry-After` while the disk is below `min_free_disk`.
const DISK_RETRY_AFTER_SECS: u64 = 30;
/// Age after which `admit` refreshes the free-disk figure itself.
const DISK_FRESH: Duration = Duration::from_millis(100);

pub struct Admission {
    data_dir: PathBuf,
    min_free_disk: u64,
    /// Free bytes on the data volume, refreshed by `refresh_disk`: by housekeeping once a
    /// second, and by `admit` when the last refresh is older than `DISK_FRESH`, so that
    /// a fast writer cannot run through the `min_free_disk` margin between two ticks.
    free_disk: AtomicU64,
    /// Where `refreshed_ms` counts from (monotonic: this is pacing, not a window).
    started: Instant,
    /// When `free_disk` was last refreshed, in milliseconds after `started`.
    refreshed_ms: AtomicU64,
    buckets: HashMap<String, Mutex<Bucket>>,
}

struct Bucket {
    rate: f64,
    tokens: f64,
    /// The clock's time of the last refill.
    at_ms: i64,
}

impl Bucket {
    /// Adds what the time since the last refill earned, up to one second's worth. Time that
    /// went back (the wall clock was set back) earns nothing, and refilling goes on from the
    /// new time rather than waiting for the clock to pass the old one.
    fn refill(&mut self, now_ms: i64) {
        let elapsed_ms = now_ms.saturating_sub(self.at_ms);
        if elapsed_ms > 0 {
            self.tokens = (self.tokens + elapsed_ms as f64 / 1000.0 * self.rate).min(self.rate);
        }
        self.at_ms = now_ms;
    }
}

impl Admission {
    /// `now_ms`: the injected clock's time, from which rate-limit buckets start full.
    pub fn new(config: &Config, now_ms: i64) -> Admission {
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
                            at_ms: now_ms,
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
            started: Instant::now(),
            refreshed_ms: AtomicU64::new(0),
            buckets,
        };
        a.refresh_disk();
        a
    }

    /// Milliseconds since this admission control was made (monotonic).
    fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn refresh_disk(&self) {
        self.refreshed_ms.store(self.uptime_ms(), Ordering::Relaxed);
        if let Some(free) = free_bytes(&self.data_dir) {
            self.free_disk.store(free, Ordering::Relaxed);
        }
    }

    /// Admits `events` events of `source` received at `now_ms` (the injected clock's time).
    pub fn admit(
        &self,
        state: &AppState,
        source: &str,
        events: usize,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let since = self
            .uptime_ms()
            .saturating_sub(self.refreshed_ms.load(Ordering::Relaxed));
        if since >= DISK_FRESH.as_millis() as u64 {
            // One statvfs (microseconds) at most every DISK_FRESH.
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
            b.refill(now_ms);
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

#[cfg(test)]
mod tests {
    use super::Bucket;

    #[test]
    fn a_bucket_refills_by_the_clock_and_not_when_it_goes_back() {
        let mut b = Bucket {
            rate: 10.0,
            tokens: 0.0,
            at_ms: 1_000,
        };
        b.refill(1_000);
        assert_eq!(b.tokens, 0.0, "no time, no tokens");
        b.refill(1_300);
        assert!((b.tokens - 3.0).abs() < 1e-9, "{}", b.tokens);
        b.refill(500);
        assert!(
            (b.tokens - 3.0).abs() < 1e-9,
            "time going back earns nothing"
        );
        b.refill(600);
        assert!(
            (b.tokens - 4.0).abs() < 1e-9,
            "refills from the new time on"
        );
        b.refill(60_000);
        assert_eq!(b.tokens, 10.0, "at most one second's worth");
    }
}
