//! `switchyard inspect`: backlog per destination, log size, the oldest unconsumed event and
//! integrity. Served live by `GET /api/v1/inspect`, or computed offline from `data_dir` when
//! no server holds it (then every segment is checked record by record).

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cursor::{CursorFile, CursorState};
use crate::event::timestamp;
use crate::log::reader::LogReader;
use crate::log::segment::{self, Position};

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub log: LogReport,
    pub destinations: Vec<DestinationReport>,
    pub integrity: Integrity,
    /// The profile store, when there is one.
    #[serde(default)]
    pub profiles: Option<ProfilesReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProfilesReport {
    pub count: u64,
    /// The next log record the store will apply, and how many it has still to apply.
    pub next_seq: u64,
    pub backlog: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LogReport {
    pub segments: usize,
    pub bytes: u64,
    pub next_seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DestinationReport {
    pub id: String,
    pub next_seq: u64,
    pub backlog: u64,
    /// `receivedAt` of the oldest record this destination has not consumed yet.
    pub oldest_unconsumed: Option<String>,
    /// Log bytes between its cursor and the committed end (what `backlog.max_bytes` caps).
    #[serde(default)]
    pub backlog_bytes: u64,
    /// Seconds since the oldest record it has not consumed was received (what
    /// `backlog.max_age` caps).
    #[serde(default)]
    pub oldest_pending_age_s: Option<u64>,
    pub last_error: Option<String>,
    /// Deliveries waiting in the retry set (webhook destinations).
    #[serde(default)]
    pub pending_retries: u64,
    #[serde(default)]
    pub dead_letters: u64,
    /// A replay from the log is running, and how many events it has sent so far.
    #[serde(default)]
    pub replaying: bool,
    #[serde(default)]
    pub replayed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Integrity {
    pub ok: bool,
    /// `full` when every record was checked (offline), `live` otherwise.
    pub mode: String,
    pub problems: Vec<String>,
    pub quarantined_files: usize,
}

/// What a live server knows that the files do not.
pub struct Live {
    pub end: Position,
    pub next_seq: u64,
    pub problems: Vec<String>,
    /// The server's clock (`clock.rs`), so that the ages shown are the ones its backlog caps
    /// decide by.
    pub now_ms: i64,
}

pub fn report(
    data_dir: &Path,
    destinations: &[(String, Option<String>)],
    live: Option<Live>,
) -> io::Result<Report> {
    let log_dir = data_dir.join("log");
    let mut bases = segment::list_segments(&log_dir)?;
    let mut bytes = 0;
    let mut sizes = Vec::with_capacity(bases.len());
    for &b in &bases {
        // Housekeeping may reclaim a segment between the listing and this look at it.
        let len = match fs::metadata(segment::segment_path(&log_dir, b)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        sizes.push((b, len));
        bytes += len;
    }
    bases.retain(|b| sizes.iter().any(|(s, _)| s == b));
    let (end, next_seq, mut problems, mode, now_ms) = match live {
        Some(l) => (l.end, l.next_seq, l.problems, "live", l.now_ms),
        None => {
            // Offline, no server runs: the ages are the wall clock's.
            let (end, next_seq, problems) = full_scan(&log_dir, &bases)?;
            (end, next_seq, problems, "full", crate::event::now_ms())
        }
    };
    let quarantined_files = fs::read_dir(log_dir.join("quarantine"))
        .map(|d| d.count())
        .unwrap_or(0);
    problems.extend(crate::quarantine::problems(data_dir));
    let mut dests = Vec::new();
    for (id, last_error) in destinations {
        let cursor = CursorFile::new(data_dir, id).load().unwrap_or_else(|e| {
            problems.push(format!("the cursor of destination {id} is unreadable: {e}"));
            None
        });
        let at = Tail {
            end,
            next_seq,
            now_ms,
        };
        dests.push(destination(
            &log_dir,
            &sizes,
            id,
            cursor,
            at,
            last_error.clone(),
        )?);
    }
    let integrity = Integrity {
        ok: problems.is_empty(),
        mode: mode.into(),
        problems,
        quarantined_files,
    };
    Ok(Report {
        log: LogReport {
            segments: bases.len(),
            bytes,
            next_seq,
        },
        destinations: dests,
        integrity,
        profiles: None,
    })
}

/// The committed end of the log and the time a report is made at.
#[derive(Clone, Copy)]
struct Tail {
    end: Position,
    next_seq: u64,
    now_ms: i64,
}

fn destination(
    log_dir: &Path,
    sizes: &[(u64, u64)],
    id: &str,
    cursor: Option<CursorState>,
    at: Tail,
    last_error: Option<String>,
) -> io::Result<DestinationReport> {
    let Tail {
        end,
        next_seq,
        now_ms,
    } = at;
    let Some(c) = cursor else {
        return Ok(DestinationReport {
            id: id.into(),
            next_seq,
            backlog: 0,
            last_error,
            ..DestinationReport::default()
        });
    };
    let mut reader = LogReader::new(log_dir, c.position);
    let oldest = reader
        .read(end, 1, 1)?
        .first()
        .map(|r| r.record.entry.received_ms);
    let oldest_pending_age_s = oldest.map(|ms| (now_ms.saturating_sub(ms).max(0) / 1000) as u64);
    let oldest_unconsumed = oldest
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .map(timestamp::format);
    Ok(DestinationReport {
        id: id.into(),
        next_seq: c.next_seq,
        backlog: next_seq.saturating_sub(c.next_seq),
        oldest_unconsumed,
        backlog_bytes: crate::destinations::backlog::span(sizes, c.position, end),
        oldest_pending_age_s,
        last_error,
        ..DestinationReport::default()
    })
}

impl Report {
    /// Adds each destination's retry-set and dead-letter counts from the delivery store.
    pub fn add_profiles(&mut self, store: &crate::profiles::ProfileStore) {
        match (store.count(), store.applied_seq()) {
            (Ok(count), Ok(next_seq)) => {
                let backlog = self.log.next_seq.saturating_sub(next_seq);
                self.profiles = Some(ProfilesReport {
                    count,
                    next_seq,
                    backlog,
                });
            }
            (Err(e), _) | (_, Err(e)) => self.integrity.problems.push(e.to_string()),
        }
    }

    pub fn add_delivery_counts(&mut self, store: &crate::delivery::store::DeliveryStore) {
        for d in &mut self.destinations {
            match store.counts(&d.id) {
                Ok((retries, dead)) => (d.pending_retries, d.dead_letters) = (retries, dead),
                Err(e) => self.integrity.problems.push(format!("delivery store: {e}")),
            }
        }
    }
}

/// Checks every record of every segment; returns the end, the next sequence and problems.
fn full_scan(log_dir: &Path, bases: &[u64]) -> io::Result<(Position, u64, Vec<String>)> {
    let mut problems = Vec::new();
    let mut end = Position::default();
    let mut next_seq = 0;
    for (i, &base) in bases.iter().enumerate() {
        let scan = segment::scan(&segment::segment_path(log_dir, base), base, |_| {})?;
        if let Some(damage) = &scan.damage {
            problems.push(format!(
                "segment {base:020}: {damage} at byte {} of {}",
                scan.valid_len, scan.file_len
            ));
        }
        for hole in &scan.holes {
            problems.push(format!(
                "segment {base:020}: {} at byte {} ({} bytes; records {}..{} unreadable, the rest readable)",
                hole.damage,
                hole.offset,
                hole.len,
                hole.first_seq,
                hole.next_seq.saturating_sub(1)
            ));
        }
        if let Some(&next) = bases.get(i + 1)
            && scan.damage.is_none()
            && scan.last_seq.map_or(base, |s| s + 1) != next
        {
            problems.push(format!(
                "segment {base:020}: records end before the next segment starts at {next}"
            ));
        }
        end = Position {
            segment: base,
            offset: scan.valid_len,
        };
        next_seq = scan.last_seq.map_or(base, |s| s + 1);
    }
    Ok((end, next_seq, problems))
}

impl Report {
    /// The human form printed by the CLI.
    pub fn render(&self) -> String {
        let mut out = format!(
            "log: {} segment(s), {} bytes, next_seq {}\nintegrity: {} ({} check, {} quarantined file(s))\n",
            self.log.segments,
            self.log.bytes,
            self.log.next_seq,
            if self.integrity.ok { "ok" } else { "PROBLEMS" },
            self.integrity.mode,
            self.integrity.quarantined_files
        );
        for p in &self.integrity.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
        for d in &self.destinations {
            out.push_str(&format!(
                "destination {}: backlog {} (next_seq {}, {}), oldest unconsumed {}{}, {} pending retries, {} dead letters{}\n",
                d.id,
                d.backlog,
                d.next_seq,
                crate::destinations::backlog::human_bytes(d.backlog_bytes),
                d.oldest_unconsumed.as_deref().unwrap_or("-"),
                d.oldest_pending_age_s
                    .map(|s| format!(" ({} ago)", crate::destinations::backlog::human_duration(
                        std::time::Duration::from_secs(s)
                    )))
                    .unwrap_or_default(),
                d.pending_retries,
                d.dead_letters,
                d.last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(p) = &self.profiles {
            out.push_str(&format!(
                "profiles: {} kept, backlog {} (next_seq {})\n",
                p.count, p.backlog, p.next_seq
            ));
        }
        out
    }
}
