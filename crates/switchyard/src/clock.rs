//! The server's one clock, for every decision that depends on the time of day: the
//! `receivedAt` stamped at ingest, dedupe and idempotency windows, source rate limits,
//! delivery and function retries, backlog and log retention ages, and the ages `inspect`
//! shows. `app::run_with_clock` injects it, so tests move time instead of sleeping.
//!
//! Durations that only measure or bound work (latency metrics, commit windows, function CPU
//! deadlines, shutdown deadlines) stay on `Instant`: they decide nothing by the time of day.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> Sleep;
    /// `now_ms` as a UTC date-time, e.g. for `receivedAt` (which shows milliseconds).
    fn now_utc(&self) -> time::OffsetDateTime {
        utc(self.now_ms())
    }
}

/// Milliseconds since the Unix epoch as a UTC date-time (the epoch itself if out of range).
pub fn utc(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::event::now_ms()
    }
    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let wait = (at_ms - self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that only moves when told to.
pub struct ManualClock {
    now: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start_ms),
        })
    }
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as i64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }
    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|t| *t >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn(clock.sleep_until(61_000));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(clock.now_ms(), 61_000);
    }

    #[test]
    fn now_utc_is_now_ms_as_a_date_time() {
        let clock = ManualClock::new(1_700_000_000_123);
        let t = clock.now_utc();
        assert_eq!((t.unix_timestamp(), t.millisecond()), (1_700_000_000, 123));
        assert_eq!(utc(i64::MAX), time::OffsetDateTime::UNIX_EPOCH);
    }
}
