//! Saving progress: the delivery log and the cursor, written off the async threads, at most
//! one write at a time; and the last save on shutdown.

use std::time::Duration;

use super::{State, WebhookWorker};
use crate::cursor::CursorFile;
use crate::destinations::DestinationStatus;

impl WebhookWorker {
    /// Writes the delivery log and the cursor on a blocking thread, without holding up
    /// deliveries; at most one such write runs at a time.
    pub(super) async fn flush(&self, st: &mut State, status: &DestinationStatus) {
        if let Some(h) = &st.flushing {
            if !h.is_finished() {
                return;
            }
            self.finish_flush(st, status).await;
        }
        let cursor = st.sched.cursor();
        self.tail.gauge(cursor.next_seq);
        let mut attempts = std::mem::take(&mut st.attempts);
        let changed = cursor != st.saved;
        if attempts.is_empty() && !changed {
            return;
        }
        let (store, dest) = (self.store.clone(), self.dest.id.clone());
        let file = CursorFile::new(&self.data_dir, &self.dest.id);
        st.flushing = Some(tokio::task::spawn_blocking(move || {
            if !attempts.is_empty() {
                store
                    .log_attempts(&dest, &mut attempts)
                    .map_err(|e| e.to_string())?;
            }
            if changed {
                file.save(&cursor).map_err(|e| e.to_string())?;
            }
            Ok(cursor)
        }));
    }

    /// Waits for the running write, if any, and records what it saved.
    pub(super) async fn finish_flush(&self, st: &mut State, status: &DestinationStatus) {
        let Some(h) = st.flushing.take() else { return };
        match h.await {
            Ok(Ok(cursor)) => {
                status.set(&cursor);
                st.saved = cursor;
            }
            Ok(Err(error)) => {
                tracing::error!(destination = %self.dest.id, %error, "Could not save delivery progress")
            }
            Err(error) => {
                tracing::error!(destination = %self.dest.id, %error, "Delivery progress task failed")
            }
        }
    }

    /// On shutdown: let requests in flight finish (each is bounded by the delivery timeout),
    /// then save progress so that nothing acknowledged is sent again.
    pub(super) async fn drain(&self, st: &mut State, status: &DestinationStatus) {
        let deadline =
            tokio::time::Instant::now() + self.cfg.delivery.timeout + Duration::from_secs(1);
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline, st.inflight.join_next()).await
        {
            st.sched.returned();
            let Ok(done) = joined else { break };
            self.finish(st, done).await;
        }
        st.inflight.abort_all();
        self.finish_flush(st, status).await;
        self.flush(st, status).await;
        self.finish_flush(st, status).await;
        tracing::info!(destination = %self.dest.id, next_seq = st.saved.next_seq, "Destination stopped");
    }
}
