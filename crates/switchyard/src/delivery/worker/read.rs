//! Reading the log through the destination's cursor: backlog caps, reads while the
//! scheduler has room, and each record's deliveries.

use super::{State, WebhookWorker};
use crate::delivery::plan;
use crate::log::reader::Read1;

impl WebhookWorker {
    /// Past a backlog cap, passes over the oldest records not read yet: they become
    /// `backlog_overflow` dead letters and reading continues after them (the window's records,
    /// already read, finish as usual).
    pub(super) async fn overflow(&self, st: &mut State) {
        if !self.backlog.due() {
            return;
        }
        let end = self.tail.committed().end;
        let pinned = st.sched.cursor().position;
        let read = st.sched.window.read.clone();
        if let Some(next) = self.backlog.enforce(pinned, read, end).await {
            st.reader = Some(self.tail.reader(&next));
            st.sched.window.pass_over(next);
        }
    }

    /// Reads more records while the window has room, turning them into jobs. A failed read
    /// is retried after the tail's backoff, shown in `inspect` and counted meanwhile.
    pub(super) async fn fill(&self, st: &mut State) {
        let room = st.sched.room();
        let end = self.tail.committed().end;
        if !st.sched.wants_read(end)
            || st
                .read_again
                .is_some_and(|at| at > tokio::time::Instant::now())
        {
            return;
        }
        let Some(mut reader) = st.reader.take() else {
            return;
        };
        let backlog = self.backlog.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let r = reader
                .read(end, room.min(1000), 8 << 20)
                .and_then(|records| {
                    // Records skipped as unreadable are dead letters before anything after them
                    // is handled (and so before the cursor can pass them).
                    backlog.dead_letter_losses(reader.take_lost())?;
                    Ok(records)
                });
            (reader, r)
        })
        .await;
        let Ok((reader, result)) = joined else { return };
        // The reader may have crossed into the next segment without returning a record; the
        // window must know, or it would wait for a change that already happened.
        let crossed = reader.position();
        st.reader = Some(reader);
        match result {
            Ok(records) => {
                st.read_again = None;
                self.tail.read_ok();
                for r in records {
                    self.plan(st, r).await;
                }
                let read = &mut st.sched.window.read;
                read.position = read.position.max(crossed);
            }
            Err(error) => {
                let wait = self.tail.read_failed(&error);
                st.read_again = Some(tokio::time::Instant::now() + wait);
                // Read again from where the window stands: the reader may have moved past
                // records it has not handed over.
                st.reader = Some(self.tail.reader(&st.sched.window.read));
            }
        }
    }

    /// The deliveries of one record: one per enabled mapping whose condition matches. Those
    /// that cannot be built are dead-lettered at once.
    async fn plan(&self, st: &mut State, r: Read1) {
        let seq = r.record.seq;
        let planned = || plan::plan(&self.dest, &self.cfg, &self.route, seq, &r.record.entry);
        let unbuilt = st.sched.record(seq, r.next, planned, self.clock.now_ms());
        for (job, reason) in unbuilt {
            self.dead(st, job, reason).await;
        }
    }
}
