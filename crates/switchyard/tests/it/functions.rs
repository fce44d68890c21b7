//! Source function runs end to end: what a stored (`RetryError`) request keeps, and how
//! many events one run may emit.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const JSON: (&str, &str) = ("content-type", "application/json");

/// A server with one public function source `f` running `code`.
async fn start(dir: &Path, code: &str, functions: &str) -> TestApp {
    let f = dir.join("f.js");
    std::fs::write(&f, code).unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
functions: {{ {functions} }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - {{ id: f, type: webhook, public: true, function: "{f}" }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display(),
        f = f.display()
    );
    TestApp::start_with(dir, &yaml).await
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Waits (10 s at most) until source `f` has `n` function dead letters.
async fn function_dead_letters(app: &TestApp, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = app.get("/api/v1/sources/f/function-dead-letters").await;
        if body["dead_letters"]
            .as_array()
            .is_some_and(|a| a.len() == n)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every console line of every run in a function-logs answer.
fn console_lines(logs: &Value) -> Vec<String> {
    logs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["logs"].as_array().cloned().unwrap_or_default())
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const SECRET: &str = "wk_body_secret_4242";

const ALWAYS_RETRY: &str = r#"async function onRequest(request) {
  console.log('body', request.text());
  const b = request.json();
  const first = Array.isArray(b) ? b[0] : b;
  console.log('has writeKey', 'writeKey' in first);
  throw new RetryError('later ' + first.writeKey);
}"#;

/// Regression: a request stored for a re-run (`RetryError`) kept the body's `writeKey`. It
/// is dropped before storing (object bodies and each element of array bodies), so neither
/// the data directory nor any API answer (dead letters, function log, debugger) shows it.
#[tokio::test]
async fn a_stored_retry_request_keeps_no_write_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app = start(
        d,
        ALWAYS_RETRY,
        "workers: 1, retry: { attempts: 2, initial: 50ms, max: 100ms }",
    )
    .await;
    let object = json!({"writeKey": SECRET, "order": 7}).to_string();
    let array = json!([{"writeKey": SECRET, "n": 1}, {"n": 2}]).to_string();
    for body in [&object, &array] {
        let (status, resp) = app.post_with("/webhooks/f", &[JSON], body.as_bytes()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
        assert!(!resp.to_string().contains(SECRET), "{resp}");
    }
    let dead = function_dead_letters(&app, 2).await;
    let bodies: Vec<&str> = dead["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, [r#"[{"n":1},{"n":2}]"#, r#"{"order":7}"#]);
    assert_eq!(
        dead["dead_letters"][0]["reason"], "after 2 runs: RetryError: later undefined",
        "the re-run saw the body without writeKey"
    );
    let (_, logs) = app.get("/api/v1/sources/f/function-logs").await;
    let lines = console_lines(&logs);
    assert!(lines.iter().any(|l| l == "has writeKey true"), "{logs}");
    assert!(lines.iter().any(|l| l == "has writeKey false"), "{logs}");
    let (_, recent) = app.get("/api/v1/sources/f/events").await;
    let (_, inspect) = app.get("/api/v1/inspect").await;
    for shown in [&dead, &logs, &recent, &inspect] {
        assert!(!shown.to_string().contains(SECRET), "{shown}");
    }
    app.stop().await;
    assert_eq!(files_containing(d, SECRET.as_bytes()), Vec::<String>::new());
}

const FLOOD: &str = r#"async function onRequest(request) {
  const b = request.json();
  let stopped = -1;
  for (let i = 0; i < b.n; i++) {
    try {
      Segment.track({event: 'Flood', userId: 'u', messageId: 'flood-' + i, properties: {pad: 'x'.repeat(b.pad || 0)}});
    } catch (e) {
      if (stopped < 0) stopped = i;
      if (!b.keepGoing) throw e;
    }
  }
  console.log('stopped at', stopped);
}"#;

/// Regression: one request whose function emitted 100,000 events raised RSS tenfold. A run
/// may emit at most 2,500 events (the ingest bound on one request), enforced at each
/// emit; past it the run fails with a clear 400 and emits nothing, even when the function
/// catches the error. Output over 8 MiB of JSON fails the same way.
#[tokio::test]
async fn a_run_emitting_too_many_events_fails_and_emits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A debug build on a loaded CI machine can take seconds to emit 2,500 events: the
    // deadline is not what this test is about.
    let app = start(dir.path(), FLOOD, "workers: 1, deadline: 30s").await;
    for keep_going in [false, true] {
        let body = json!({"n": 100_000, "keepGoing": keep_going}).to_string();
        let (status, resp) = app.post_with("/webhooks/f", &[JSON], body.as_bytes()).await;
        assert_eq!(
            (status, resp["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("function_error")),
            "{resp}"
        );
        let msg = resp["message"].as_str().unwrap();
        assert!(
            msg.starts_with("EmitLimitError: a run may emit at most 2500 events")
                && msg.contains("nothing was emitted"),
            "{msg}"
        );
    }
    let (_, logs) = app.get("/api/v1/sources/f/function-logs").await;
    let caught = &logs["runs"][0];
    assert_eq!(
        (&caught["events"], &caught["logs"][0]["message"]),
        (&json!(0), &json!("stopped at 2500")),
        "the cap is enforced as events are emitted: {logs}"
    );
    // 40 events of 300 KB each: under the count, over the size.
    let body = json!({"n": 40, "pad": 300_000}).to_string();
    let (status, resp) = app.post_with("/webhooks/f", &[JSON], body.as_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(
        resp["message"]
            .as_str()
            .unwrap()
            .contains("characters of events and objects as JSON"),
        "{resp}"
    );
    // Exactly the cap is fine, and all of it is accepted.
    let body = json!({"n": 2500}).to_string();
    let (status, resp) = app.post_with("/webhooks/f", &[JSON], body.as_bytes()).await;
    assert_eq!(
        (status, resp["emitted"].as_u64()),
        (StatusCode::OK, Some(2500)),
        "{resp}"
    );
    let events = app.delivered(2500).await;
    assert_eq!(events.len(), 2500, "nothing from the failed runs");
    assert!(events.iter().all(|e| e["event"] == "Flood"));
    app.stop().await;
}
