//! Issue 12 item 5: time that decides behaviour comes from the injected clock, so a test
//! moves time instead of waiting for it: a function re-run (`RetryError`) an hour away, the
//! `receivedAt` ingest stamps, the dedupe window, a source's rate limit, the log's
//! `retention.max_age`, and the backlog age `inspect` shows.

use std::time::Duration;

use hyper::StatusCode;
use switchyard::clock::{Clock, ManualClock};

use crate::harness::*;

const JSON: (&str, &str) = ("content-type", "application/json");

const LATE: &str = "async function onRequest(request) { if (!globalThis.ok) { globalThis.ok = true; throw new RetryError('later'); } Segment.track({event: 'Late', userId: 'u'}); }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_retry_waits_for_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("late.js");
    std::fs::write(&f, LATE).unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
functions: {{ workers: 1, retry: {{ attempts: 3, initial: 1h, max: 1h }} }}
sources:
  - {{ id: late, type: webhook, public: true, function: "{f}" }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = d.display(),
        f = f.display()
    );
    let clock = ManualClock::new(switchyard::event::now_ms());
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    let (status, _) = app.post_with("/webhooks/late", &[JSON], b"{}").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "stored for a re-run in an hour"
    );
    let (_, stored) = app.get("/api/v1/sources/late/function-logs").await;
    assert_eq!(stored["runs"][0]["events"], 0, "{stored}");
    // An hour passes on the clock, not on the wall: the re-run happens now.
    clock.advance(Duration::from_secs(3601));
    assert!(clock.now_ms() > switchyard::event::now_ms() + 3_500_000);
    let events = app.delivered(1).await;
    assert_eq!(events[0]["event"], "Late");
    app.stop().await;
}

/// 2030-01-02T03:04:05.678Z: far from the wall clock, so only the injected clock can give it.
const T0_MS: i64 = 1_893_553_445_678;
const T0: &str = "2030-01-02T03:04:05.678Z";

fn archive_yaml(dir: &std::path::Path, extra: &str, web: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
{extra}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} {web} }}
  - {{ id: hook, type: webhook, public: true }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display()
    )
}

fn track(message_id: &str) -> serde_json::Value {
    serde_json::json!({"type": "track", "event": "Clocked", "userId": "u", "messageId": message_id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_at_is_the_injected_clock_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clock = ManualClock::new(T0_MS);
    let app = TestApp::start_with_clock(d, &archive_yaml(d, "", ""), clock.clone()).await;
    assert_eq!(
        app.post_json("/v1/track", &track("api-1")).await.0,
        StatusCode::OK
    );
    let hooked = br#"{"type":"track","event":"Hooked","userId":"u","messageId":"hook-1"}"#;
    let (status, body) = app.post_with("/webhooks/hook", &[JSON], hooked).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = app.delivered(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["receivedAt"], T0, "{e}");
        assert_eq!(e["timestamp"], T0, "no client timestamp: receivedAt: {e}");
    }
    // The debugger shows the same time, for both sources.
    for source in ["web", "hook"] {
        let recent = app.recent_of(source, "").await;
        assert_eq!(recent.len(), 1, "{recent:?}");
        assert_eq!(recent[0]["received_at"], T0, "{recent:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_is_a_duplicate_only_inside_the_dedupe_window_of_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clock = ManualClock::new(T0_MS);
    let yaml = archive_yaml(d, "dedupe: { window: 2s }", "");
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    assert_eq!(
        app.post_json("/v1/track", &track("m-1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.post_json("/v1/track", &track("m-1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.recent("status=duplicate").await.len(),
        1,
        "a repeat inside the window"
    );
    // Twice the window: past it, and past the one-second bucket the key was filed in.
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        app.post_json("/v1/track", &track("m-1")).await.0,
        StatusCode::OK
    );
    let events = app.delivered(2).await;
    assert_eq!(
        events.len(),
        2,
        "accepted again once the window passed: {events:?}"
    );
    assert_eq!(events[1]["receivedAt"], "2030-01-02T03:04:09.678Z");
    assert_eq!(
        app.recent("status=duplicate").await.len(),
        1,
        "no new duplicate"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_refills_with_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clock = ManualClock::new(T0_MS);
    let yaml = archive_yaml(d, "", ", rate_limit: 2");
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    for id in ["r-1", "r-2"] {
        assert_eq!(
            app.post_json("/v1/track", &track(id)).await.0,
            StatusCode::OK
        );
    }
    // The wall clock moves between these requests; the bucket refills only when the
    // injected clock does.
    let (status, body) = app.post_json("/v1/track", &track("r-3")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited", "{body}");
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        app.post_json("/v1/track", &track("r-3")).await.0,
        StatusCode::OK
    );
    assert_eq!(app.delivered(3).await.len(), 3);
    app.stop().await;
}

/// Log segments in `inspect`.
async fn segments(app: &TestApp) -> u64 {
    let (_, report) = app.get("/api/v1/inspect").await;
    report["log"]["segments"].as_u64().expect("segments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_max_age_is_decided_by_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Segment age is the clock's time minus the file's mtime: start at the wall clock.
    let clock = ManualClock::new(switchyard::event::now_ms());
    let storage = "storage: { segment_bytes: 4KiB, retention: { max_age: 1h } }";
    let app = TestApp::start_with_clock(d, &archive_yaml(d, storage, ""), clock.clone()).await;
    for i in 0..20 {
        let batch: Vec<_> = (0..5)
            .map(|j| {
                let mut e = track(&format!("s-{i}-{j}"));
                e["properties"] = serde_json::json!({"pad": "x".repeat(300)});
                e
            })
            .collect();
        let body = serde_json::json!({ "batch": batch });
        assert_eq!(app.post_json("/v1/batch", &body).await.0, StatusCode::OK);
    }
    assert_eq!(app.delivered(100).await.len(), 100);
    app.wait_drained().await;
    let before = segments(&app).await;
    assert!(
        before > 4,
        "consumed but younger than max_age: kept ({before} segments)"
    );
    // Two hours pass on the clock (the mtimes are some wall-clock seconds past its start):
    // every sealed segment the destination passed is now older than max_age.
    clock.advance(Duration::from_secs(2 * 3600));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = segments(&app).await;
        if now <= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sealed segments were never reclaimed: {before} then {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_backlog_age_by_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The destination cannot write (its directory is a file), so its backlog stays.
    std::fs::write(d.join("blocker"), b"").unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: stuck, type: file, start: earliest, settings: {{ path: "{dir}/blocker/events.jsonl" }} }}
"#,
        dir = d.display()
    );
    let clock = ManualClock::new(T0_MS);
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    assert_eq!(
        app.post_json("/v1/track", &track("old-1")).await.0,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(90));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        let stuck = &report["destinations"][0];
        if stuck["oldest_pending_age_s"] == 90 {
            assert_eq!(stuck["oldest_unconsumed"], T0, "{report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the age never followed the clock: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
