//! Issue 12 item 3: a log read error never stops the warehouse runner silently. It is
//! retried with backoff, shown in `inspect` (`last_error`) and counted
//! (`switchyard_destination_log_read_errors_total`), and once the read works again every
//! event loads.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::fresh_db;
use crate::corruption::write_events;
use crate::harness::*;

fn yaml(dir: &std::path::Path, url: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
storage: {{ segment_bytes: 64KiB, profiles: false }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: wh, type: postgres, start: earliest, settings: {{ url: "{url}" }} }}
"#,
        dir = dir.display()
    )
}

async fn wh_status(app: &TestApp) -> Value {
    let (_, report) = app.get("/api/v1/inspect").await;
    report["destinations"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "wh").cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_read_error_is_retried_and_shown_not_a_silent_stop() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), false, 11).await;
    // A sealed segment the runner must read becomes unreadable: a directory in its place.
    let unreadable = crate::corruption::UnreadableSegment::new(dir.path());

    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = wh_status(&app).await;
        let err = s["last_error"].as_str().unwrap_or_default().to_owned();
        let (_, metrics) = app.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        let counted =
            text.contains("switchyard_destination_log_read_errors_total{destination=\"wh\"}");
        if err.contains("reading the log failed") && counted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the read error never showed: {s} {text:.300}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The segment comes back: the runner, still running, loads every event.
    unreadable.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: i64 = db
            .query_one("SELECT count(*) FROM web.tracks", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if rows as usize == acked.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} of {} rows loaded",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(wh_status(&app).await["last_error"], Value::Null);
    app.stop().await;
}
