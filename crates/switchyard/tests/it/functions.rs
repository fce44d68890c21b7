//! Source function runs end to end: what a stored (`RetryError`) request keeps, and how
//! many events one run may emit.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

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
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, body) = app.get("/api/v1/sources/f/function-dead-letters").await;
        if body["dead_letters"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
        {
            break body;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    let lines: Vec<String> = logs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["logs"].as_array().cloned().unwrap_or_default())
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect();
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
