//! What happens after an attempt: classify the transport's answer, log the attempt, and
//! finish the delivery durably (delivered, stored for retry, or dead-lettered) before the
//! scheduler may count it finished.

use std::time::Duration;

use super::{Done, State, WebhookWorker};
use crate::delivery::backoff::{next_delay, parse_retry_after};
use crate::delivery::scheduler::Job;
use crate::delivery::store::{Attempt, DeadLetter, Pending};
use crate::delivery::transport;
use crate::delivery::webhook::Outcome;
use crate::telemetry::metrics;

/// Attempts buffered for the delivery log while a write is slow; the oldest beyond this
/// are dropped from the log (never from delivery), with a warning.
const MAX_BUFFERED_ATTEMPTS: usize = 20_000;

impl WebhookWorker {
    pub(super) async fn finish(&self, st: &mut State, (mut job, result, took): Done) {
        let outcome = transport::classify(&result);
        let now = self.clock.now_ms();
        let (status, error, response) = match &result {
            Ok(sent) => (sent.status(), None, sent.response_text()),
            Err(e) => (None, Some(e.to_string()), String::new()),
        };
        job.p.attempts += 1;
        job.p.last_status = status;
        job.p.last_error = error.clone();
        let label = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } if self.expired(&job.p, now) => "dead_letter",
            Outcome::Retry { .. } => "retry",
            Outcome::Permanent(_) => "dead_letter",
        };
        let attempt = Attempt {
            id: 0,
            at_ms: now,
            source: job.p.source.clone(),
            message_id: job.p.message_id.clone(),
            mapping: job.p.mapping.clone(),
            url: job.p.request.target().to_owned(),
            status,
            latency_ms: took.as_millis() as u64,
            error,
            response,
            outcome: label.to_owned(),
        };
        self.log_attempt(st, &job.p, attempt);
        self.settle(st, job, outcome, now).await;
    }

    /// Buffers the attempt for the delivery log; a batch is logged once per member, so each
    /// event's lineage shows it.
    fn log_attempt(&self, st: &mut State, p: &Pending, attempt: Attempt) {
        if p.members.is_empty() {
            st.attempts.push(attempt);
        } else {
            for m in &p.members {
                st.attempts.push(Attempt {
                    message_id: m.message_id.clone(),
                    ..attempt.clone()
                });
            }
        }
        if st.attempts.len() > MAX_BUFFERED_ATTEMPTS {
            // Drop down to half, so a long stall warns now and then, not per attempt.
            let drop = st.attempts.len() - MAX_BUFFERED_ATTEMPTS / 2;
            st.attempts.drain(..drop);
            tracing::warn!(destination = %self.dest.id, dropped = drop, "Delivery log write is behind; dropped the oldest log entries (deliveries are unaffected)");
        }
    }

    /// Acts on the outcome: delivered (a stored retry is removed), retried later, or
    /// dead-lettered (also once `retry.max_age` has passed).
    async fn settle(&self, st: &mut State, job: Job, outcome: Outcome, now: i64) {
        match outcome {
            Outcome::Delivered => {
                let labels = metrics::destination(&self.dest.id);
                self.metrics.delivered.get_or_create(&labels).inc();
                if job.p.id != 0 {
                    let (store, dest, id) = (self.store.clone(), self.dest.id.clone(), job.p.id);
                    if let Ok(Err(error)) =
                        tokio::task::spawn_blocking(move || store.remove_retry(&dest, id)).await
                    {
                        tracing::error!(destination = %self.dest.id, %error, "Could not remove a delivered retry; it may be sent again");
                    }
                }
                st.sched.complete(&job);
            }
            Outcome::Retry { reason, .. } if self.expired(&job.p, now) => {
                let max_age = self.cfg.retry.max_age;
                let age = if max_age >= Duration::from_secs(3600) {
                    format!("{:.2}h", max_age.as_secs_f64() / 3600.0)
                } else {
                    crate::destinations::backlog::human_duration(max_age)
                };
                let reason = format!("retry.max_age ({age}) exceeded; last attempt: {reason}");
                self.dead(st, job, reason).await;
            }
            Outcome::Retry { retry_after, .. } => self.retry(st, job, retry_after, now).await,
            Outcome::Permanent(reason) => self.dead(st, job, reason).await,
        }
    }

    fn expired(&self, p: &Pending, now: i64) -> bool {
        now.saturating_sub(p.received_ms) >= self.cfg.retry.max_age.as_millis() as i64
    }

    /// Stores the delivery for another attempt after its backoff (or `Retry-After`); if the
    /// store write fails it is kept in memory, still holding its record.
    async fn retry(&self, st: &mut State, mut job: Job, retry_after: Option<String>, now: i64) {
        let ra = retry_after.and_then(|v| parse_retry_after(&v, now));
        let delay = next_delay(
            job.p.attempts,
            self.cfg.retry.initial_backoff,
            self.cfg.retry.max_backoff,
            ra,
            fastrand::f64(),
        );
        job.p.next_at_ms = now + delay.as_millis() as i64;
        let (store, dest, mut p) = (self.store.clone(), self.dest.id.clone(), job.p.clone());
        match tokio::task::spawn_blocking(move || store.put_retry(&dest, &mut p).map(|()| p)).await
        {
            Ok(Ok(p)) => {
                job.p = p;
                self.metrics
                    .retries
                    .get_or_create(&metrics::destination(&self.dest.id))
                    .inc();
                st.sched.complete(&job);
                job.from_log = false;
            }
            _ => {
                tracing::error!(destination = %self.dest.id, "Could not store a retry durably; keeping it in memory")
            }
        }
        let at = job.p.next_at_ms;
        st.sched.retry_at(job, at);
    }

    pub(super) async fn dead(&self, st: &mut State, job: Job, reason: String) {
        tracing::warn!(destination = %self.dest.id, message_id = %job.p.message_id, mapping = %job.p.mapping, %reason, "Delivery dead-lettered");
        let dl = DeadLetter {
            delivery: job.p.clone(),
            reason,
            dead_at_ms: self.clock.now_ms(),
            detail: None,
        };
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        match tokio::task::spawn_blocking(move || store.dead_letter(&dest, dl)).await {
            Ok(Ok(_)) => {
                self.metrics
                    .dead_letters
                    .get_or_create(&metrics::destination(&self.dest.id))
                    .inc();
                st.sched.complete(&job);
            }
            _ => {
                tracing::error!(destination = %self.dest.id, "Could not store a dead letter durably; retrying it later");
                let at = self.clock.now_ms() + 1000;
                st.sched.retry_at(job, at);
            }
        }
    }

    pub(super) async fn reload_retries(&self, st: &mut State) {
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        let Ok(Ok(list)) = tokio::task::spawn_blocking(move || store.retries(&dest)).await else {
            tracing::error!(destination = %self.dest.id, "Could not load the retry set");
            return;
        };
        st.sched.reload(list);
    }
}
