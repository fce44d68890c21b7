use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::log::record::{self, Entry, Kind};

const T0: i64 = 1_700_000_000_000;

fn dest(extra: &str) -> DestinationConfig {
    let yaml = format!(
        "server: {{ data_dir: /tmp/unused }}\n\
         sources:\n  - {{ id: web, type: http_api, write_keys: {{ production: wk_1, development: wk_2 }} }}\n  \
         - {{ id: app, type: http_api, write_keys: {{ production: wk_3 }} }}\n\
         destinations:\n  - {{ id: d, type: file, settings: {{ path: /tmp/unused.jsonl }}, {extra} }}\n"
    );
    let (config, problems) = crate::config::compile_str(&yaml, "test", &|_| None);
    config
        .unwrap_or_else(|| panic!("config: {problems:?}"))
        .destinations[0]
        .clone()
}

fn entry(i: u64, received_ms: i64) -> Entry {
    Entry {
        kind: Kind::Accepted,
        received_ms,
        source: "web".into(),
        environment: "production".into(),
        message_id: format!("m-{i}"),
        reason: String::new(),
        body: format!(
            r#"{{"type":"track","event":"E{}","messageId":"m-{i}","pad":"{}"}}"#,
            i % 2,
            "x".repeat(100)
        )
        .into_bytes(),
    }
}

/// Writes `per` records per segment, seq from 0; returns the committed end.
fn write_log(dir: &Path, entries: &[Entry], per: usize) -> Position {
    std::fs::create_dir_all(dir).unwrap();
    let mut end = Position::default();
    for (n, chunk) in entries.chunks(per).enumerate() {
        let base = (n * per) as u64;
        let mut buf = Vec::new();
        for (i, e) in chunk.iter().enumerate() {
            record::encode(&mut buf, base + i as u64, e);
        }
        std::fs::write(segment::segment_path(dir, base), &buf).unwrap();
        end = Position {
            segment: base,
            offset: buf.len() as u64,
        };
    }
    end
}

struct Fixture {
    _tmp: tempfile::TempDir,
    log_dir: PathBuf,
    store: Arc<DeliveryStore>,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(DeliveryStore::open(&tmp.path().join("d.redb")).unwrap());
    Fixture {
        log_dir: tmp.path().join("log"),
        _tmp: tmp,
        store,
        clock: ManualClock::new(T0),
        metrics: Arc::new(Metrics::new()),
    }
}

impl Fixture {
    fn backlog(&self, d: &DestinationConfig) -> Backlog {
        Backlog::new(
            d,
            &self.log_dir,
            self.store.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
    }
    fn dead(&self) -> Vec<DeadLetter> {
        let mut all = self.store.dead_letters("d", usize::MAX, None).unwrap();
        all.reverse();
        all
    }
}

fn start() -> CursorState {
    CursorState {
        position: Position::default(),
        next_seq: 0,
        done: Vec::new(),
    }
}

#[test]
fn spans_and_human_units() {
    let sizes = [(0, 100), (10, 50), (20, 70)];
    let p = |segment, offset| Position { segment, offset };
    assert_eq!(span(&sizes, p(0, 0), p(20, 70)), 220);
    assert_eq!(span(&sizes, p(0, 40), p(20, 30)), 60 + 50 + 30);
    assert_eq!(span(&sizes, p(10, 50), p(20, 0)), 0);
    assert_eq!(span(&sizes, p(20, 10), p(20, 5)), 0);
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(64 << 10), "64.0 KiB");
    assert_eq!(human_bytes(10 << 30), "10.0 GiB");
    assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7d");
    assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
}

#[test]
fn past_max_bytes_the_oldest_records_become_references_and_the_rest_fits() {
    let f = fixture();
    let entries: Vec<Entry> = (0..100).map(|i| entry(i, T0)).collect();
    let end = write_log(&f.log_dir, &entries, 30);
    let total = span(
        &segment_sizes(&f.log_dir).unwrap(),
        Position::default(),
        end,
    );
    let d = dest("backlog: { max_bytes: 8KiB }");
    let b = f.backlog(&d);
    let step = b.step(Position::default(), &start(), end).unwrap();
    assert_eq!(step.bytes, total);
    let moved = step.moved.clone().expect("over the cap");
    let left = span(&segment_sizes(&f.log_dir).unwrap(), moved.position, end);
    assert!(left <= 8 << 10, "{left} bytes left");
    assert!(
        left > (8 << 10) - 300,
        "no more than needed was passed over"
    );
    let dead = f.dead();
    assert_eq!(dead.len() as u64, moved.next_seq);
    assert_eq!(step.dead_lettered, moved.next_seq);
    assert!(dead.iter().enumerate().all(|(i, dl)| {
        dl.reason == "backlog_overflow"
            && dl.delivery.seq == i as u64
            && dl.delivery.message_id == format!("m-{i}")
            && dl.delivery.source == "web"
            && dl.delivery.received_ms == T0
            && dl.is_reference()
            && dl
                .detail
                .as_deref()
                .is_some_and(|t| t.starts_with("backlog.max_bytes (8.0 KiB) exceeded"))
    }));
    // Under the cap now: nothing more.
    let again = b.step(moved.position, &moved, end).unwrap();
    assert_eq!((again.moved, again.passed), (None, 0));
    let text = f.metrics.render();
    assert!(
        text.contains(&format!(
            "switchyard_backlog_overflow_total{{destination=\"d\"}} {}",
            dead.len()
        )),
        "{text}"
    );
}

#[test]
fn past_max_age_by_the_injected_clock_only_the_old_ones_go() {
    let f = fixture();
    let hour = 3_600_000;
    // 10 records an hour apart.
    let entries: Vec<Entry> = (0..10).map(|i| entry(i, T0 + i as i64 * hour)).collect();
    let end = write_log(&f.log_dir, &entries, 4);
    let d = dest("backlog: { max_age: 3h }");
    let b = f.backlog(&d);
    let step = b.step(Position::default(), &start(), end).unwrap();
    assert_eq!(
        (step.moved, step.oldest_ms),
        (None, Some(T0)),
        "nothing is 3h old yet"
    );
    f.clock.advance(Duration::from_secs(5 * 3600));
    let moved = b
        .step(Position::default(), &start(), end)
        .unwrap()
        .moved
        .unwrap();
    assert_eq!(moved.next_seq, 2, "received before now - 3h: seq 0 and 1");
    f.clock.advance(Duration::from_secs(4 * 3600));
    let step = b.step(moved.position, &moved, end).unwrap();
    assert_eq!(step.oldest_ms, Some(T0 + 2 * hour));
    assert_eq!(step.moved.unwrap().next_seq, 6);
    let dead = f.dead();
    assert_eq!(dead.len(), 6);
    assert!(
        dead[0]
            .detail
            .as_deref()
            .is_some_and(|t| t.starts_with("backlog.max_age (3h) exceeded: received 5h before")),
        "{:?}",
        dead[0].detail
    );
}

#[test]
fn only_wanted_events_become_dead_letters_but_the_cursor_passes_all() {
    let f = fixture();
    let mut entries: Vec<Entry> = (0..8).map(|i| entry(i, T0)).collect();
    entries[1].source = "app".into();
    entries[2].environment = "development".into();
    entries[3].kind = Kind::Duplicate;
    entries[4].kind = Kind::Rejected;
    // entries[5] is E1: the subscribe filter wants E0 only.
    entries[6].body = b"{not json".to_vec();
    let end = write_log(&f.log_dir, &entries, 100);
    let d = dest(
        "sources: [web], environments: [production], subscribe: 'event = \"E0\"', backlog: { max_age: 1s }",
    );
    let b = f.backlog(&d);
    f.clock.advance(Duration::from_secs(10));
    let step = b.step(Position::default(), &start(), end).unwrap();
    assert_eq!(step.moved.unwrap().next_seq, 8);
    assert_eq!(step.passed, 8);
    let ids: Vec<String> = f
        .dead()
        .into_iter()
        .map(|d| d.delivery.message_id)
        .collect();
    assert_eq!(ids, ["m-0", "m-6"], "an unreadable body counts as wanted");
}

#[test]
fn a_step_is_bounded_and_a_repeat_after_a_crash_writes_nothing_twice() {
    let f = fixture();
    let n = STEP_RECORDS as u64 + 500;
    let entries: Vec<Entry> = (0..n).map(|i| entry(i, T0)).collect();
    let end = write_log(&f.log_dir, &entries, 4000);
    let d = dest("backlog: { max_age: 1s }");
    let b = f.backlog(&d);
    f.clock.advance(Duration::from_secs(10));
    let first = b.step(Position::default(), &start(), end).unwrap();
    assert!(first.more, "stopped at its bound");
    assert_eq!(first.passed, STEP_RECORDS as u64);
    // The cursor was not saved (a crash): the same step again writes no second reference.
    let repeat = b.step(Position::default(), &start(), end).unwrap();
    assert_eq!(
        (repeat.passed, repeat.dead_lettered),
        (STEP_RECORDS as u64, 0)
    );
    let next = repeat.moved.unwrap();
    let last = b.step(next.position, &next, end).unwrap();
    assert_eq!(
        (last.passed, last.dead_lettered, last.more),
        (500, 500, false)
    );
    assert_eq!(last.moved.unwrap().next_seq, n);
    let dead = f.dead();
    assert_eq!(dead.len() as u64, n);
    let seqs: std::collections::BTreeSet<u64> = dead.iter().map(|d| d.delivery.seq).collect();
    assert_eq!(seqs.len() as u64, n, "each event once");
}

#[test]
fn records_read_ahead_stay_held_and_count_against_the_cap() {
    let f = fixture();
    let entries: Vec<Entry> = (0..40).map(|i| entry(i, T0)).collect();
    let end = write_log(&f.log_dir, &entries, 100);
    let sizes = segment_sizes(&f.log_dir).unwrap();
    let d = dest("backlog: { max_bytes: 4KiB }");
    let b = f.backlog(&d);
    // The delivery worker has read 10 records into its window; the cursor is still at 0.
    let mut reader = LogReader::new(&f.log_dir, Position::default());
    let ahead = reader.read(end, 10, 1 << 20).unwrap();
    let read = CursorState {
        position: ahead.last().unwrap().next,
        next_seq: 10,
        done: Vec::new(),
    };
    let held = span(&sizes, Position::default(), read.position);
    let moved = b
        .step(Position::default(), &read, end)
        .unwrap()
        .moved
        .unwrap();
    assert!(moved.next_seq > 10);
    assert!(held + span(&sizes, moved.position, end) <= 4 << 10);
    let dead = f.dead();
    assert_eq!(
        dead.first().map(|d| d.delivery.seq),
        Some(10),
        "the window is not touched"
    );
}

#[test]
fn losses_become_log_damage_dead_letters_once() {
    use crate::log::reader::Loss;
    let f = fixture();
    let b = f.backlog(&dest(""));
    let loss = |first_seq, next_seq| Loss {
        first_seq,
        next_seq,
        what: "4 damaged bytes".into(),
    };
    assert_eq!(b.dead_letter_losses(vec![loss(5, Some(8))]).unwrap(), 1);
    // Read again after a crash before the cursor was saved, or by a replay: not twice.
    assert_eq!(b.dead_letter_losses(vec![loss(5, Some(8))]).unwrap(), 0);
    assert_eq!(b.dead_letter_losses(vec![loss(9, None)]).unwrap(), 1);
    let dead = f.dead();
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .all(|d| d.reason == "log_damage" && d.is_reference())
    );
    assert_eq!(dead[0].delivery.seq, 5);
    let detail = dead[0].detail.as_deref().unwrap();
    assert!(
        detail.starts_with("log records 5..=7 could not be read"),
        "{detail}"
    );
    assert!(
        dead[1]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("log records 9.. ")
    );
}
