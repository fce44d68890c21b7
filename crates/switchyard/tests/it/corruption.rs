//! Damage on disk while the server is stopped: flipped bytes in the log tail, in a sealed
//! middle segment, in a cursor file, in the dedupe index and in each redb store. The server
//! must start and become ready, keep every intact record, move the damage aside, count it
//! (`switchyard_damage_quarantined_total`) and report it in `inspect`.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::Value;
use switchyard::cli::client;

use crate::disk::{delivered, post_batch};
use crate::harness::*;

fn yaml(dir: &Path, with_destination: bool) -> String {
    let destinations = if with_destination {
        format!(
            "destinations:\n  - id: archive\n    type: file\n    start: earliest\n    settings: {{ path: \"{}/events.jsonl\" }}\n",
            dir.display()
        )
    } else {
        "destinations: []\n".to_owned()
    };
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
storage: {{ segment_bytes: 64KiB }}
sources:
  - id: web
    type: http_api
    write_keys: {{ production: {KEY} }}
{destinations}"#,
        dir = dir.display()
    )
}

/// Runs a server, posts `batches` × 50 events, stops it. Returns the acked ids.
pub async fn write_events(dir: &Path, with_destination: bool, batches: usize) -> Vec<String> {
    let app = TestApp::start_with(dir, &yaml(dir, with_destination)).await;
    let mut acked = Vec::new();
    for n in 0..batches {
        let (ids, a) = post_batch(&app.url, &format!("e-{n}"), 50).await;
        assert_eq!(a.status, 200, "{}", a.body);
        acked.extend(ids);
    }
    if with_destination {
        crate::crash::wait_drained(&app.url).await;
    }
    app.stop().await;
    acked
}

/// Flips `n` bytes at `at` (clamped into the file).
pub fn flip(path: &Path, at: u64, n: usize) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let at = at.min(len.saturating_sub(n as u64));
    let mut b = vec![0u8; n];
    f.read_exact_at(&mut b, at).unwrap();
    b.iter_mut().for_each(|x| *x ^= 0x5A);
    f.write_all_at(&b, at).unwrap();
}

/// Makes the second segment unreadable — a directory in its place, so every read of it
/// fails with an I/O error — until the returned guard's `restore`.
pub struct UnreadableSegment {
    seg: PathBuf,
    aside: PathBuf,
}

impl UnreadableSegment {
    pub fn new(dir: &Path) -> UnreadableSegment {
        let seg = segments(dir)[1].clone();
        let aside = seg.with_extension("aside");
        std::fs::rename(&seg, &aside).unwrap();
        std::fs::create_dir(&seg).unwrap();
        UnreadableSegment { seg, aside }
    }

    pub fn restore(self) {
        std::fs::remove_dir(&self.seg).unwrap();
        std::fs::rename(&self.aside, &self.seg).unwrap();
    }
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Starts the server again on the damaged directory: ready, and how long it took.
async fn restart(dir: &Path) -> (TestApp, Duration) {
    let started = Instant::now();
    let app = TestApp::start_with(dir, &yaml(dir, true)).await;
    (app, started.elapsed())
}

async fn inspect(app: &TestApp) -> Value {
    let r = client::call(
        Method::GET,
        &format!("{}/api/v1/inspect", app.url),
        None,
        None,
    )
    .await
    .unwrap();
    serde_json::from_slice(&r.body).unwrap()
}

/// The problems `inspect` lists, as one string to search.
async fn problems(app: &TestApp) -> String {
    inspect(app).await["integrity"]["problems"].to_string()
}

async fn quarantined_metric(app: &TestApp, kind: &str) -> u64 {
    let r = client::call(Method::GET, &format!("{}/metrics", app.url), None, None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let prefix = format!("switchyard_damage_quarantined_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// Posts a few more events and checks they are delivered: the server works on.
async fn still_works(app: &TestApp) {
    let (ids, a) = post_batch(&app.url, "after", 20).await;
    assert_eq!(a.status, 200, "{}", a.body);
    crate::crash::wait_drained(&app.url).await;
    let got = delivered(&app.dir);
    assert!(
        ids.iter().all(|id| got.contains(id)),
        "new events delivered"
    );
}

/// Damage to the log: `pick` chooses the segment; the destination reads it afterwards.
/// For the tail, a torn write (a partial record) is also appended.
async fn log_damage(tail: bool) -> (usize, usize, Duration, String) {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), false, 11).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "several segments: {segs:?}");
    let seg = if tail {
        &segs[segs.len() - 1]
    } else {
        &segs[1]
    };
    let len = std::fs::metadata(seg).unwrap().len();
    assert!(len > 8 << 10, "the damaged segment holds records: {len}");
    flip(seg, len / 2, 4);
    if tail {
        let f = std::fs::OpenOptions::new().append(true).open(seg).unwrap();
        f.write_all_at(&[0x40, 0x01, 0, 0, 1, 2, 3, 4, 1, 1, 9], len)
            .unwrap();
    }
    let (app, took) = restart(dir.path()).await;
    crate::crash::wait_drained(&app.url).await;
    let got = delivered(dir.path());
    let lost: Vec<_> = acked.iter().filter(|id| !got.contains(*id)).collect();
    assert!(lost.len() <= 1, "only the damaged record is lost: {lost:?}");
    let p = problems(&app).await;
    assert!(
        p.contains("log segment") && p.contains("log/quarantine/"),
        "{p}"
    );
    assert!(quarantined_metric(&app, "log_hole").await >= 1);
    assert!(
        std::fs::read_dir(dir.path().join("log/quarantine"))
            .unwrap()
            .count()
            >= 1
    );
    still_works(&app).await;
    app.stop().await;
    (acked.len(), lost.len(), took, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_log_tail_keeps_the_records_after_the_damage() {
    let (acked, lost, took, p) = log_damage(true).await;
    assert!(
        p.contains("cut a damaged tail") || p.contains("records"),
        "{p}"
    );
    eprintln!(
        "corruption log tail: {acked} acked, {lost} lost, ready in {} ms",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_sealed_segment_keeps_the_records_after_the_damage() {
    let (acked, lost, took, _) = log_damage(false).await;
    eprintln!(
        "corruption sealed segment: {acked} acked, {lost} lost, ready in {} ms",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_cursor_falls_back_to_the_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), true, 4).await;
    let cursor = dir.path().join("cursors/archive.json");
    for damage in [
        "{\"position\": {\"segm",
        "{\"position\":{\"segment\":0,\"offset\":77},\"next_seq\":150}",
    ] {
        std::fs::write(&cursor, damage).unwrap();
        let (app, took) = restart(dir.path()).await;
        crate::crash::wait_drained(&app.url).await;
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let mut count: HashMap<String, usize> = HashMap::new();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            *count
                .entry(v["messageId"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert!(
            acked
                .iter()
                .all(|id| count.get(id).is_some_and(|&n| n >= 2)),
            "delivered again from the start, none skipped"
        );
        let p = problems(&app).await;
        assert!(
            p.contains("archive.json") && p.contains("starts again at record 0"),
            "{p}"
        );
        assert!(quarantined_metric(&app, "cursor").await >= 1);
        still_works(&app).await;
        app.stop().await;
        eprintln!(
            "corruption cursor {damage:.20}: ready in {} ms, 0 lost",
            took.as_millis()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_dedupe_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), true, 4).await;
    let dd: Vec<PathBuf> = std::fs::read_dir(dir.path().join("dedupe"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dd"))
        .collect();
    assert!(!dd.is_empty());
    for f in &dd {
        let len = std::fs::metadata(f).unwrap().len();
        flip(f, len / 3, 8);
    }
    std::fs::write(dir.path().join("dedupe/CHECKPOINT"), "garbage").unwrap();
    let (app, took) = restart(dir.path()).await;
    // The same messageIds again: every one is still a duplicate.
    for n in 0..4 {
        let (_, a) = post_batch(&app.url, &format!("e-{n}"), 50).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    crate::crash::wait_drained(&app.url).await;
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    assert_eq!(text.lines().count(), acked.len(), "no duplicate delivered");
    let p = problems(&app).await;
    assert!(p.contains("dedupe"), "{p}");
    assert!(quarantined_metric(&app, "dedupe").await >= 1);
    app.stop().await;
    eprintln!(
        "corruption dedupe: ready in {} ms, 0 lost, 0 duplicates",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_redb_stores_are_quarantined_and_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), true, 4).await;
    let stores = ["profiles.redb", "webhooks.redb", "deliveries.redb"];
    for s in stores {
        let path = dir.path().join(s);
        std::fs::write(&path, vec![0xA5u8; 8192]).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let (app, took) = restart(dir.path()).await;
    let p = problems(&app).await;
    for s in stores {
        assert!(
            p.contains(&format!("{s}: does not open")),
            "{s} reported: {p}"
        );
    }
    assert!(quarantined_metric(&app, "redb").await >= 3);
    // The profile store is rebuilt from the log.
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect(&app).await["profiles"]["count"] != acked.len() {
        assert!(Instant::now() < deadline, "profiles rebuilt from the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_works(&app).await;
    app.stop().await;
    let moved = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .count();
    assert!(moved >= 3, "the damaged files are kept aside");
    eprintln!(
        "corruption redb: ready in {} ms, stores recreated, profiles rebuilt",
        took.as_millis()
    );
}
