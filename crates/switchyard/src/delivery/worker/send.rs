//! Starting attempts over the transports, and connecting a `nats` destination first.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{State, WebhookWorker};
use crate::config::Route;
use crate::delivery::store::Request;
use crate::delivery::webhook;
use crate::destinations::DestinationStatus;
use crate::destinations::nats::publish::{NatsPublisher, render_subject};

impl WebhookWorker {
    /// Starts every attempt the scheduler allows now (`Scheduler::next_start`), each on its
    /// own task; its answer comes back through `State::inflight`.
    pub(super) fn dispatch(&self, st: &mut State) {
        let now = self.clock.now_ms();
        while let Some(job) = st.sched.next_start(now) {
            // An HTTP attempt is signed and (for segment) wrapped now; a publish sends the
            // event as planned.
            let (headers, body) = match &job.p.request {
                Request::Http(h) => (
                    webhook::attempt_headers(&job.p, h, &self.cfg.signing, &self.dest.id, now),
                    webhook::attempt_body(
                        &job.p,
                        matches!(self.route, Route::Segment(_)),
                        self.clock.now_ms(),
                    ),
                ),
                Request::Nats(_) => (Vec::new(), Bytes::new()),
            };
            let transports = st.transports.clone();
            st.inflight.spawn(async move {
                let started = Instant::now();
                let r = transports.send(&job.p.request, &headers, body).await;
                (job, r, started.elapsed())
            });
        }
    }

    /// Connects to NATS and checks that a JetStream stream captures the subject (unless
    /// `core`), retrying every few seconds; the backlog waits on disk meanwhile.
    pub(super) async fn connect_nats(
        &self,
        t: &crate::config::NatsTarget,
        st: &mut State,
        status: &DestinationStatus,
        cancel: &CancellationToken,
    ) -> Option<NatsPublisher> {
        let sample = render_subject(&t.subject, &serde_json::json!({"type": "track"}));
        loop {
            let attempt = async {
                let n = NatsPublisher::connect(&t.url, t.core).await?;
                if !t.core {
                    n.stream_for(&sample).await?;
                }
                Ok::<_, String>(n)
            };
            match attempt.await {
                Ok(n) => {
                    status.set_error(None);
                    return Some(n);
                }
                Err(error) => {
                    tracing::error!(destination = %self.dest.id, %error, "NATS destination is not ready; retrying in 5s");
                    status.set_error(Some(error));
                }
            }
            // The backlog caps hold while NATS is away.
            for _ in 0..5 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => {
                        self.finish_flush(st, status).await;
                        return None;
                    }
                }
                self.overflow(st).await;
                self.flush(st, status).await;
            }
        }
    }
}
