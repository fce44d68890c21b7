//! Backlog caps (`backlog: { max_bytes, max_age }`), the same for every destination type.
//!
//! A destination's backlog is the log between the oldest record it has not passed (its
//! cursor, which pins the log: retention never deletes what a cursor has not passed) and the
//! committed end. About once a second each runner — the file runner, the delivery worker
//! (webhook, segment, nats) and the warehouse runner — calls [`Backlog::enforce`] before it
//! reads. Past either cap, the oldest records it has not read yet are passed over: each one it
//! wants (its sources, environments, `subscribe` and, for the delivery engine, a mapping that
//! matches) becomes a dead letter with reason `backlog_overflow`, durably, and only then does
//! its read position (and so its cursor) move past them, so retention can reclaim the space.
//!
//! A `backlog_overflow` dead letter is a reference to the logged event — messageId, source,
//! receivedAt, log seq, and which cap was passed — not the event: storing bodies would move the
//! backlog from the log into the delivery store and the disk would fill just the same. While
//! retention still keeps the log, `replay --from-log --since <receivedAt>` sends them again
//! (webhook, segment and nats destinations).
//!
//! Work per step is bounded (`STEP_RECORDS` records, `STEP_BYTES` of event bytes, one
//! durable write); a step that stops at the bound asks for the next one at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{DestinationConfig, DestinationKind};
use crate::cursor::{CursorFile, CursorState};
use crate::delivery::store::{BACKLOG_OVERFLOW, DeadLetter, DeliveryStore, Mark, Pending};
use crate::log::reader::LogReader;
use crate::log::record::{Entry, Kind};
use crate::log::segment::{self, Position};
use crate::telemetry::{Metrics, metrics};

/// How often the caps are checked (unless the last step stopped at its bound).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Records passed over per step at most.
pub const STEP_RECORDS: usize = 10_000;
/// Event bytes read per step at most.
pub const STEP_BYTES: usize = 16 << 20;
/// A destination held at its cap overflows a little every second: warn at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The caps of one destination, shared by its runner; cheap to clone.
#[derive(Clone)]
pub struct Backlog {
    inner: Arc<Inner>,
}

struct Inner {
    dest: DestinationConfig,
    log_dir: PathBuf,
    store: Arc<DeliveryStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// When the next check is due.
    next_check: Mutex<Instant>,
    /// Overflow not yet reported in a warning: (last warning, dead-lettered, passed over).
    unwarned: Mutex<(Option<Instant>, u64, u64)>,
}

/// What one check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Log bytes from the cursor to the committed end.
    pub bytes: u64,
    /// `receivedAt` of the oldest record the destination has not passed.
    pub oldest_ms: Option<i64>,
    /// Where reading continues, when records were passed over.
    pub moved: Option<CursorState>,
    /// Records passed over, and how many of them became dead letters.
    pub passed: u64,
    pub dead_lettered: u64,
    /// The step stopped at its bound with more to pass over.
    pub more: bool,
}

impl Backlog {
    pub fn new(
        dest: &DestinationConfig,
        log_dir: &Path,
        store: Arc<DeliveryStore>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Backlog {
        Backlog {
            inner: Arc::new(Inner {
                dest: dest.clone(),
                log_dir: log_dir.to_path_buf(),
                store,
                clock,
                metrics,
                next_check: Mutex::new(Instant::now()),
                unwarned: Mutex::new((None, 0, 0)),
            }),
        }
    }

    /// Whether a check is due: cheap, for runners that must compute where they are first.
    pub fn due(&self) -> bool {
        *self
            .inner
            .next_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            <= Instant::now()
    }

    fn schedule(&self, more: bool) {
        let at = if more {
            Instant::now()
        } else {
            Instant::now() + CHECK_EVERY
        };
        *self
            .inner
            .next_check
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// For a runner whose read position is its cursor (file, postgres): when a check is due,
    /// enforces the caps and, if records were passed over, saves the cursor after them (after
    /// their dead letters are durable). Returns the new cursor.
    pub async fn enforce_cursor(
        &self,
        data_dir: &Path,
        cursor: &CursorState,
        end: Position,
    ) -> Option<CursorState> {
        if !self.due() {
            return None;
        }
        let file = CursorFile::new(data_dir, &self.inner.dest.id);
        let next = self.enforce(cursor.position, cursor.clone(), end).await?;
        let saved = next.clone();
        match tokio::task::spawn_blocking(move || file.save(&saved)).await {
            Ok(Ok(())) => Some(next),
            Ok(Err(error)) => {
                // The dead letters are written and the overflow mark set: the next step
                // passes these records over again without writing them twice.
                tracing::error!(destination = %self.inner.dest.id, %error, "Could not save the cursor after a backlog overflow");
                Some(next)
            }
            Err(_) => None,
        }
    }

    /// When a check is due (about once a second), enforces the caps on a blocking thread.
    /// `pinned` is the oldest position the destination has not passed; `read`, where its next
    /// read starts (the same for file and postgres; the delivery worker has read ahead into
    /// its window). Returns where reading continues when records were passed over.
    pub async fn enforce(
        &self,
        pinned: Position,
        read: CursorState,
        end: Position,
    ) -> Option<CursorState> {
        if !self.due() {
            return None;
        }
        if pinned >= end {
            // Caught up: nothing waits.
            let labels = metrics::destination(&self.inner.dest.id);
            let m = &self.inner.metrics;
            m.backlog_bytes.get_or_create(&labels).set(0);
            m.backlog_oldest_age.get_or_create(&labels).set(0);
            self.schedule(false);
            return None;
        }
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.step(pinned, &read, end)).await;
        match result {
            Ok(Ok(step)) => {
                self.schedule(step.more);
                step.moved
            }
            Ok(Err(error)) => {
                self.schedule(false);
                tracing::error!(destination = %self.inner.dest.id, %error, "Checking the backlog caps failed");
                None
            }
            Err(_) => None,
        }
    }

    /// One check, blocking: measures the backlog, and past a cap passes over the oldest
    /// unread records (bounded), dead-lettering those the destination wants.
    pub fn step(
        &self,
        pinned: Position,
        read: &CursorState,
        end: Position,
    ) -> std::io::Result<Step> {
        let d = &self.inner;
        let caps = d.dest.backlog;
        let sizes = segment_sizes(&d.log_dir)?;
        let bytes = span(&sizes, pinned, end);
        let oldest_ms = LogReader::new(&d.log_dir, pinned)
            .read(end, 1, 1)?
            .first()
            .map(|r| r.record.entry.received_ms);
        let now = d.clock.now_ms();
        let labels = metrics::destination(&d.dest.id);
        d.metrics
            .backlog_bytes
            .get_or_create(&labels)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let age_ms = oldest_ms.map_or(0, |t| now.saturating_sub(t).max(0));
        d.metrics
            .backlog_oldest_age
            .get_or_create(&labels)
            .set(age_ms / 1000);
        let mut step = Step {
            bytes,
            oldest_ms,
            ..Step::default()
        };
        let cutoff =
            now.saturating_sub(i64::try_from(caps.max_age.as_millis()).unwrap_or(i64::MAX));
        let over_age = oldest_ms.is_some_and(|t| t < cutoff);
        if (bytes <= caps.max_bytes && !over_age) || read.position >= end {
            return Ok(step);
        }
        // What the records read ahead (the delivery worker's window) hold stays held.
        let held = span(&sizes, pinned, read.position);
        let mark = d
            .store
            .marked_through(&d.dest.id, Mark::Overflow)
            .map_err(std::io::Error::other)?;
        let mut reader = LogReader::new(&d.log_dir, read.position).expecting(read.next_seq);
        let (mut at, mut last): (Position, Option<(Position, u64)>) = (read.position, None);
        let (mut read_bytes, mut refs, mut first_seq) = (0usize, Vec::new(), None);
        let (mut by_bytes, mut by_age) = (0u64, 0u64);
        'steps: loop {
            let want = STEP_RECORDS - step.passed as usize;
            let chunk = reader.read(end, want.min(2000), STEP_BYTES.saturating_sub(read_bytes))?;
            if chunk.is_empty() {
                break;
            }
            for r in chunk {
                let e = &r.record.entry;
                let aged = e.received_ms < cutoff;
                let bulky = held + span(&sizes, at, end) > caps.max_bytes;
                if !aged && !bulky {
                    break 'steps;
                }
                let seq = r.record.seq;
                first_seq.get_or_insert(seq);
                if seq >= mark && wanted(&d.dest, e) {
                    let detail = if aged {
                        by_age += 1;
                        format!(
                            "backlog.max_age ({}) exceeded: received {} before the check",
                            human_duration(caps.max_age),
                            human_duration(Duration::from_millis(
                                now.saturating_sub(e.received_ms).max(0) as u64
                            ))
                        )
                    } else {
                        by_bytes += 1;
                        format!(
                            "backlog.max_bytes ({}) exceeded: {} waited in the log",
                            human_bytes(caps.max_bytes),
                            human_bytes(bytes)
                        )
                    };
                    refs.push(reference(seq, e, now, detail));
                }
                read_bytes += e.body.len();
                step.passed += 1;
                at = r.next;
                last = Some((r.next, seq + 1));
                if step.passed as usize >= STEP_RECORDS || read_bytes >= STEP_BYTES {
                    step.more = true;
                    break 'steps;
                }
            }
        }
        // A damaged region passed over here is dead-lettered like one the runner meets.
        self.dead_letter_losses(reader.take_lost())?;
        let Some((position, next_seq)) = last else {
            return Ok(step);
        };
        step.dead_lettered = refs.len() as u64;
        d.store
            .references(&d.dest.id, Mark::Overflow, refs, next_seq)
            .map_err(std::io::Error::other)?;
        d.metrics
            .backlog_overflow
            .get_or_create(&labels)
            .inc_by(step.dead_lettered);
        d.metrics
            .dead_letters
            .get_or_create(&labels)
            .inc_by(step.dead_lettered);
        let mut unwarned = d.unwarned.lock().unwrap_or_else(|p| p.into_inner());
        unwarned.1 += step.dead_lettered;
        unwarned.2 += step.passed;
        if unwarned.0.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                destination = %d.dest.id,
                dead_lettered = unwarned.1,
                passed = unwarned.2,
                to_seq = next_seq,
                over_max_bytes = by_bytes,
                over_max_age = by_age,
                backlog_bytes = bytes,
                max_bytes = %human_bytes(caps.max_bytes),
                max_age = %human_duration(caps.max_age),
                "Backlog over its cap: its oldest pending events went to the dead-letter queue with reason backlog_overflow"
            );
            *unwarned = (Some(Instant::now()), 0, 0);
        } else {
            tracing::debug!(destination = %d.dest.id, dead_lettered = step.dead_lettered, passed = step.passed,
                from_seq = first_seq.unwrap_or(read.next_seq), to_seq = next_seq, "Backlog overflow step");
        }
        drop(unwarned);
        step.moved = Some(CursorState {
            position,
            next_seq,
            done: Vec::new(),
        });
        Ok(step)
    }
}

/// Whether the destination would act on this record: the same choice its runner makes.
/// A body that cannot be parsed counts as wanted (its runner dead-letters or keeps it too).
fn wanted(dest: &DestinationConfig, e: &Entry) -> bool {
    let object = e.kind == Kind::Object && matches!(dest.kind, DestinationKind::Postgres(_));
    if !(e.kind == Kind::Accepted || object) || !dest.wants(&e.source, &e.environment) {
        return false;
    }
    let mappings = dest.kind.delivered().map(|(cfg, _)| &cfg.mappings);
    if object || (dest.subscribe.is_none() && mappings.is_none()) {
        return true;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&e.body) else {
        return true;
    };
    dest.subscribe.as_ref().is_none_or(|f| f.matches(&event))
        && mappings.is_none_or(|ms| {
            ms.iter()
                .any(|m| m.enabled.for_environment(&e.environment) && m.subscribe.matches(&event))
        })
}

fn reference(seq: u64, e: &Entry, now: i64, detail: String) -> DeadLetter {
    DeadLetter {
        delivery: Pending::reference(seq, &e.source, &e.message_id, e.received_ms),
        reason: BACKLOG_OVERFLOW.to_owned(),
        dead_at_ms: now,
        detail: Some(detail),
    }
}

/// (base, length) of every segment, oldest first.
pub fn segment_sizes(log_dir: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for base in segment::list_segments(log_dir)? {
        match std::fs::metadata(segment::segment_path(log_dir, base)) {
            Ok(m) => out.push((base, m.len())),
            // Reclaimed between the listing and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Log bytes from `from` to `to`.
pub fn span(sizes: &[(u64, u64)], from: Position, to: Position) -> u64 {
    sizes
        .iter()
        .filter(|(base, _)| *base >= from.segment && *base <= to.segment)
        .map(|&(base, len)| {
            let start = if base == from.segment { from.offset } else { 0 };
            let stop = if base == to.segment { to.offset } else { len };
            stop.min(len).saturating_sub(start)
        })
        .sum()
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `7d`, `1h30m`, `2s`, `250ms`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

mod damage;

#[cfg(test)]
mod tests;
