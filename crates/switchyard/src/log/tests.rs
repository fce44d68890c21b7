use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::reader::LogReader;
use super::*;

pub fn opts() -> LogOptions {
    LogOptions {
        segment_bytes: 64 << 20,
        commit_window: Duration::from_millis(1),
        queue_requests: 1024,
        queue_bytes: 64 << 20,
        dedupe_window: Duration::from_secs(86_400),
        dedupe_max_keys: 1_000_000,
        clock: Arc::new(crate::clock::SystemClock),
    }
}

fn entry(i: u64) -> Entry {
    Entry {
        kind: Kind::Accepted,
        received_ms: crate::event::now_ms(),
        source: "web".into(),
        environment: "production".into(),
        message_id: format!("m-{i}"),
        reason: String::new(),
        body: format!(
            r#"{{"messageId":"m-{i}","pad":"{}"}}"#,
            "x".repeat((i % 50) as usize)
        )
        .into_bytes(),
    }
}

fn kinds(entries: Vec<Entry>) -> Vec<Kind> {
    entries.iter().map(|e| e.kind).collect()
}

fn open(dir: &Path, opts: &LogOptions) -> (Log, Recovery) {
    Log::open(dir, opts, Arc::new(Metrics::new()), |_| {}).expect("log opens")
}

fn read_all(log: &Log) -> Vec<Record> {
    let end = log.committed().borrow().end;
    let mut r = LogReader::new(log.dir(), Position::default());
    let mut out = Vec::new();
    loop {
        let batch = r.read(end, 1000, 1 << 20).expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|r| r.record));
    }
}

fn write_n(log: &Log, n: u64) {
    write_from(log, 0, n);
}

fn write_from(log: &Log, from: u64, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for chunk in (from..from + n).collect::<Vec<_>>().chunks(7) {
            let got = kinds(
                log.append(chunk.iter().map(|&i| entry(i)).collect())
                    .await
                    .expect("append"),
            );
            assert!(got.iter().all(|k| *k == Kind::Accepted));
        }
    });
}

#[test]
fn appends_are_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.segment_bytes = 2048;
    let (log, _) = open(dir.path(), &o);
    write_n(&log, 300);
    let recs = read_all(&log);
    assert_eq!(recs.len(), 300);
    assert!(
        recs.iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 && r.entry.message_id == format!("m-{i}"))
    );
    assert!(
        segment::list_segments(log.dir()).unwrap().len() > 3,
        "small segments roll"
    );
    log.close();
    let (log, rec) = open(dir.path(), &o);
    assert_eq!(rec.next_seq, 300);
    assert_eq!(read_all(&log).len(), 300);
}

#[test]
fn duplicates_are_detected_within_a_group_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), &opts());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = kinds(
        rt.block_on(log.append(vec![entry(1), entry(1), entry(2)]))
            .unwrap(),
    );
    assert_eq!(got, vec![Kind::Accepted, Kind::Duplicate, Kind::Accepted]);
    log.close();
    let (log, _) = open(dir.path(), &opts());
    let got = kinds(rt.block_on(log.append(vec![entry(2), entry(3)])).unwrap());
    assert_eq!(got, vec![Kind::Duplicate, Kind::Accepted]);
}

#[test]
fn dedupe_is_rebuilt_from_the_log_when_its_files_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), &opts());
    write_n(&log, 20);
    log.close();
    std::fs::remove_dir_all(dir.path().join("dedupe")).unwrap();
    let (log, rec) = open(dir.path(), &opts());
    assert_eq!(rec.replayed_dedupe_keys, 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        kinds(rt.block_on(log.append(vec![entry(5)])).unwrap()),
        vec![Kind::Duplicate]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Random truncation or corruption of the tail never loses a record before the damage
    /// (nor, for a flipped byte, after it) and never panics; the log stays writable.
    #[test]
    fn recovery_keeps_everything_before_the_damage(n in 1u64..60, cut_frac in 0.0f64..1.0, flip in proptest::option::of(0usize..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), &opts());
        write_n(&log, n);
        let before = read_all(&log);
        log.close();
        let path = segment::segment_path(&dir.path().join("log"), 0);
        let len = std::fs::metadata(&path).unwrap().len();
        let damage_at = ((len as f64) * cut_frac) as u64;
        let mut f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        match flip {
            None => f.set_len(damage_at).unwrap(),
            Some(x) => {
                let at = damage_at.min(len - 1);
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(&[0xA5 ^ (x as u8 | 1)]).unwrap();
            }
        }
        drop(f);
        let (log, rec) = open(dir.path(), &opts());
        let after = read_all(&log);
        // Every record that ends before the damage point survives, unchanged and in order.
        let mut offset = 0u64;
        for r in &before {
            let mut framed = Vec::new();
            record::encode(&mut framed, r.seq, &r.entry);
            offset += framed.len() as u64;
            if offset <= damage_at {
                prop_assert_eq!(after.get(r.seq as usize), Some(r));
            }
        }
        prop_assert!(after.len() <= before.len());
        prop_assert_eq!(rec.next_seq, after.last().map_or(0, |r| r.seq + 1));
        for r in &after {
            prop_assert_eq!(Some(r), before.get(r.seq as usize));
        }
        if flip.is_some() {
            // A flipped byte loses the one record it is in: those after it are kept.
            prop_assert!(after.len() + 1 >= before.len(), "{} of {} kept", after.len(), before.len());
        }
        write_from(&log, 1000, 1);
        prop_assert_eq!(read_all(&log).len(), after.len() + 1);
    }
}

#[test]
fn readers_skip_a_damaged_record_in_a_sealed_segment_and_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.segment_bytes = 2048;
    let (log, _) = open(dir.path(), &o);
    write_n(&log, 200);
    let bases = segment::list_segments(log.dir()).unwrap();
    let sealed = segment::segment_path(log.dir(), bases[1]);
    let mut f = OpenOptions::new().write(true).open(&sealed).unwrap();
    f.seek(SeekFrom::Start(200)).unwrap();
    f.write_all(&[0xFF, 0x00, 0xFF]).unwrap();
    drop(f);
    let recs = read_all(&log);
    assert_eq!(recs.len(), 199, "one record lost, every other kept");
    let missing = (0..200u64)
        .find(|s| recs.iter().all(|r| r.seq != *s))
        .unwrap();
    // The reader names exactly what it skipped, for the destination to dead-letter.
    let mut r = LogReader::new(log.dir(), Position::default());
    let end = log.committed().borrow().end;
    while !r.read(end, 1000, usize::MAX).unwrap().is_empty() {}
    let lost = r.take_lost();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        (lost[0].first_seq, lost[0].next_seq),
        (missing, Some(missing + 1))
    );
    assert_eq!(lost[0].range(), missing.to_string());
    assert!(lost[0].what.contains("log/quarantine/"), "{}", lost[0].what);
    assert!(r.take_lost().is_empty(), "taken once");
    let quarantined = std::fs::read_dir(log.dir().join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 1, "the damaged bytes are copied aside");
    assert_eq!(crate::quarantine::problems(dir.path()).len(), 1);
    assert_eq!(
        read_all(&log).len(),
        199,
        "a second reader reports nothing new"
    );
    assert_eq!(crate::quarantine::problems(dir.path()).len(), 1);
}
