//! Replay from the log (backfill) for the destinations that write whole batches: the file
//! destination writes the events again; the warehouse loads them again without a duplicate
//! row. Through the API and through `switchyard replay --from-log`.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::cli::client;

use crate::attacks::cli;
use crate::harness::*;

fn yaml(dir: &std::path::Path, pg: Option<&str>) -> String {
    let warehouse = pg.map_or(String::new(), |url| {
        format!(
            "  - {{ id: wh, type: postgres, start: earliest, settings: {{ url: \"{url}\" }} }}\n"
        )
    });
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
{warehouse}"#,
        dir = dir.display()
    )
}

/// `(replaying, replayed)` of a destination, from `inspect`.
async fn replay_status(app: &TestApp, dest: &str) -> (bool, u64) {
    let (_, report) = app.get("/api/v1/inspect").await;
    let d = report["destinations"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["id"] == dest).cloned())
        .unwrap_or_else(|| panic!("{dest} in {report}"));
    (d["replaying"] == true, d["replayed"].as_u64().unwrap_or(0))
}

async fn wait_replayed(app: &TestApp, dest: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = replay_status(app, dest).await;
        if status == (false, n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dest}: replay never finished: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /api/v1/destinations/{dest}/replay` from the log since `since`; must start.
async fn start_replay(app: &TestApp, dest: &str, since: &str) {
    let url = format!("{}/api/v1/destinations/{dest}/replay", app.url);
    let body = json!({"from_log": true, "since": since}).to_string();
    let r = client::call(Method::POST, &url, None, Some(body.into_bytes()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, StatusCode::OK, "{text}");
}

fn lines(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["messageId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_postgres_destinations_replay_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pg = crate::warehouse::fresh_db().await;
    let app = TestApp::start_with(
        dir.path(),
        &yaml(dir.path(), pg.as_ref().map(|p| p.0.as_str())),
    )
    .await;
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"type": "track", "event": "Order", "userId": format!("u{i}"), "messageId": format!("m-{i}")}))
        .collect();
    let (status, _) = app.post_json("/v1/batch", &json!({ "batch": batch })).await;
    assert_eq!(status, StatusCode::OK);
    app.wait_drained().await;
    assert_eq!(lines(dir.path()).len(), 30);

    // A window in the future holds nothing; the replay still finishes.
    start_replay(&app, "archive", "2999-01-01T00:00:00Z").await;
    wait_replayed(&app, "archive", 0).await;
    assert_eq!(lines(dir.path()).len(), 30);

    start_replay(&app, "archive", "1h").await;
    wait_replayed(&app, "archive", 30).await;
    let mut got = lines(dir.path());
    got.sort();
    let mut want: Vec<String> = (0..30)
        .flat_map(|i| [format!("m-{i}"), format!("m-{i}")])
        .collect();
    want.sort();
    assert_eq!(got, want, "each event written once more");

    if let Some((_, db, _)) = &pg {
        let out = cli([
            "replay",
            "--url",
            &app.url,
            "--destination",
            "wh",
            "--from-log",
            "--since",
            "1h",
            "--format",
            "json",
            "--wait",
            "30s",
        ]
        .map(String::from)
        .to_vec())
        .await;
        let summary: Value = out
            .lines()
            .find_map(|l| {
                serde_json::from_str(l)
                    .ok()
                    .filter(|v: &Value| v.get("replayed").is_some())
            })
            .unwrap_or_else(|| panic!("a JSON summary in {out}"));
        assert_eq!(summary["finished"], true, "{summary}");
        assert_eq!(summary["replayed"], 30, "{summary}");
        let row = db
            .query_one("SELECT count(*), count(DISTINCT id) FROM web.tracks", &[])
            .await
            .unwrap();
        let (rows, ids): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!((rows, ids), (30, 30), "no duplicate rows after the replay");
    }
    app.stop().await;
}
