//! Log records a destination's reader could not read — a damaged region of a segment, or a
//! segment that is gone — become `log_damage` dead letters of that destination, durably,
//! before its cursor moves past them: nothing is skipped unseen. One dead letter stands for
//! one damaged region: the events in it cannot be read, so it names the log sequence numbers
//! lost (`log_seq` is the first; `detail` has the range, the damage and where its bytes were
//! copied). Like a `backlog_overflow` reference it holds no request and is not replayable.
//!
//! Idempotent: a mark in the delivery store records the first sequence number after the
//! last loss written, so a runner that reads the same hole again (after a crash before its
//! cursor was saved, or a replay from the log) does not write it twice.

use crate::delivery::store::{DeadLetter, LOG_DAMAGE, Mark, Pending};
use crate::log::reader::Loss;
use crate::telemetry::metrics;

use super::Backlog;

impl Backlog {
    /// Dead-letters `lost` (from `LogReader::take_lost`), blocking. Returns how many dead
    /// letters were written; an error means none was, and the caller must read again.
    pub fn dead_letter_losses(&self, lost: Vec<Loss>) -> std::io::Result<u64> {
        if lost.is_empty() {
            return Ok(0);
        }
        let d = &self.inner;
        let mark = d
            .store
            .marked_through(&d.dest.id, Mark::Damage)
            .map_err(std::io::Error::other)?;
        let now = d.clock.now_ms();
        let mut through = mark;
        let mut refs = Vec::new();
        for loss in lost.into_iter().filter(|l| l.first_seq >= mark) {
            tracing::error!(destination = %d.dest.id, records = %loss.range(), what = %loss.what,
                "Log records this destination could not read are dead-lettered as log_damage");
            through = through.max(loss.next_seq.unwrap_or(loss.first_seq + 1));
            refs.push(reference(&loss, now));
        }
        if refs.is_empty() {
            return Ok(0);
        }
        let written = refs.len() as u64;
        d.store
            .references(&d.dest.id, Mark::Damage, refs, through)
            .map_err(std::io::Error::other)?;
        let labels = metrics::destination(&d.dest.id);
        d.metrics
            .dead_letters
            .get_or_create(&labels)
            .inc_by(written);
        Ok(written)
    }
}

fn reference(loss: &Loss, now: i64) -> DeadLetter {
    DeadLetter {
        delivery: Pending::reference(loss.first_seq, "", "", 0),
        reason: LOG_DAMAGE.to_owned(),
        dead_at_ms: now,
        detail: Some(format!(
            "log records {} could not be read and are lost to this destination: {}",
            loss.range(),
            loss.what
        )),
    }
}
