//! Issue 12 item 3: every reader of the log follows one error policy. A read that fails is
//! retried with backoff, counted, shown in `inspect` and named by `/readyz` — for a file
//! destination and for the profile store alike — and once the log reads again each of
//! them catches up with nothing missing and the failure cleared.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::corruption::{UnreadableSegment, write_events};
use crate::harness::*;

fn yaml(dir: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{d}", min_free_disk: 1MiB }}
storage: {{ segment_bytes: 64KiB, profiles: true }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{d}/events.jsonl" }} }}
"#,
        d = dir.display()
    )
}

fn failing(ready: &Value) -> Vec<String> {
    ready["log_readers_failing"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn archive_error(app: &TestApp) -> Value {
    let (_, report) = app.get("/api/v1/inspect").await;
    report["destinations"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "archive"))
        .map(|d| d["last_error"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_profile_readers_retry_a_failed_read_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), false, 11).await;
    // The profile store applied them as they came: a new one starts from the oldest segment.
    std::fs::remove_file(dir.path().join("profiles.redb")).unwrap();
    let unreadable = UnreadableSegment::new(dir.path());
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, ready) = app.get("/readyz").await;
        let (_, metrics) = app.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        let err = archive_error(&app).await;
        let names = failing(&ready);
        let shown = names.contains(&"archive".to_owned())
            && names.contains(&"profiles".to_owned())
            && err
                .as_str()
                .is_some_and(|e| e.starts_with("reading the log failed"))
            && text
                .contains("switchyard_destination_log_read_errors_total{destination=\"archive\"}")
            && text.contains("switchyard_profiles_log_read_errors_total");
        if shown {
            // A failing reader does not take ingest down.
            assert_eq!(status, 200, "{ready}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not shown: {ready} {err} {text:.400}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    unreadable.restore();
    let file = dir.path().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = std::fs::read_to_string(&file).unwrap_or_default();
        let all = acked.iter().all(|id| written.contains(id.as_str()));
        let (_, ready) = app.get("/readyz").await;
        if all && failing(&ready).is_empty() && archive_error(&app).await.is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "not caught up: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
