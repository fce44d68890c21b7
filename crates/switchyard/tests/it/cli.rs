//! The CLI as a user runs it: `check`, `send` and `inspect` (live and offline).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::crash::{start_binary, wait_drained};
use crate::harness::*;

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard")
}

#[test]
fn check_prints_every_problem_with_its_path_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "server: { listen: nowhere }\nsources:\n  - id: web\n    type: http_api\n    write_keys: { production: '${SWITCHYARD_TEST_UNSET_VAR}' }\ndestinations:\n  - { id: archive, type: file, settings: { path: /tmp/x.jsonl, keep: lots } }\n").unwrap();
    let out = switchyard(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<_> = stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("error server.listen ")),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l.starts_with("error sources[web].write_keys.production environment variable SWITCHYARD_TEST_UNSET_VAR is not set")), "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("error destinations[archive].settings.keep ")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("error ") || l.starts_with("warning ")),
        "{stdout}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config_yaml(dir.path(), "")).unwrap();
    let out = switchyard(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_inspect_live_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut server) = start_binary(dir.path()).await;
    let cfg = config.to_str().unwrap().to_owned();
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        switchyard(&["send", "--url", &url, "--write-key", KEY, "--count", "3"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("sent messageId cli-"))
            .count(),
        3
    );
    wait_drained(&server.url).await;
    // Live, until the profile store has applied the three events too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let url = server.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            switchyard(&["inspect", "--url", &url, "--format", "json"])
        })
        .await
        .unwrap();
        let live: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("inspect --format json");
        if live["profiles"]["backlog"] == 0 || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            live["log"]["next_seq"].as_u64(),
            live["integrity"]["mode"].as_str()
        ),
        (Some(3), Some("live"))
    );
    assert_eq!(
        (&live["profiles"]["next_seq"], &live["profiles"]["backlog"]),
        (&serde_json::json!(3), &serde_json::json!(0)),
        "{live}"
    );
    assert!(live["profiles"]["count"].as_u64() >= Some(1), "{live}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Offline: nothing listens, so inspect reads the data directory and checks every record.
    let out = tokio::task::spawn_blocking(move || switchyard(&["inspect", "--config", &cfg]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("next_seq 3")
            && text.contains("integrity: ok (full check")
            && text.contains("destination archive: backlog 0")
            && text.contains("backlog 0 (next_seq 3)\n")
            && text.contains("profiles: "),
        "{text}"
    );
    let events = read_lines_until(&dir.path().join("events.jsonl"), 3).await;
    assert!(events.iter().all(|e| e["event"] == "Switchyard Test Event"));
}

#[test]
fn test_mapping_reads_json_lines_and_answers_one_line_each() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("test-mapping")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn test-mapping");
    let input = [
        r#"{"subscribe": "type = \"track\" or type = \"identify\"", "mapping": {"email": {"@path": "$.traits.email"}, "id": {"@path": "$.userId"}, "empty": "", "none": null}, "event": {"type": "identify", "userId": 7, "traits": {"email": "a@b.c"}}}"#,
        r#"{"subscribe": "type = \"track\" or type = \"identify\"", "mapping": {"x": 1}, "event": {"type": "page"}}"#,
        "this is not JSON",
        r#"{"subscribe": "type = 'track'", "mapping": {}, "event": {}}"#,
        "",
        r#"{"subscribe": "type = \"track\"", "event": {"type": "track", "event": "E"}}"#,
    ];
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "one line per non-empty input line");
    assert_eq!(
        lines[0],
        serde_json::json!({"matched": true, "payload": {"email": "a@b.c", "id": 7, "empty": "", "none": null}, "error": null})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"matched": false, "payload": null, "error": null})
    );
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON line")
    );
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("double quotes")
    );
    assert_eq!(
        lines[4]["payload"],
        serde_json::json!({"type": "track", "event": "E"}),
        "no mapping means the whole event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_dead_letters_again_and_reports_the_outcome() {
    use serde_json::json;
    let r = crate::receiver::Receiver::start().await;
    r.answer(422);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.yaml");
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", allow_private_networks: true, min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n  - id: hook\n    type: webhook\n    mappings:\n      - {{ name: all, subscribe: 'type = \"track\"', url: \"{}/in\" }}\n",
        dir.path().display(),
        r.url
    );
    std::fs::write(&config, yaml).unwrap();
    let mut server = crate::crash::spawn_server(&config);
    crate::crash::wait_ready(&server.url).await;
    for i in 0..4 {
        let body = serde_json::to_vec(
            &json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("rp-{i}")}),
        )
        .unwrap();
        switchyard::cli::client::call(
            hyper::Method::POST,
            &format!("{}/v1/track", server.url),
            Some(&basic(KEY)),
            Some(body),
        )
        .await
        .unwrap();
    }
    r.wait_for("four rejected attempts", |g| g.len() >= 4).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = switchyard::cli::client::call(
            hyper::Method::GET,
            &format!("{}/api/v1/inspect", server.url),
            None,
            None,
        )
        .await
        .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        if report["destinations"][0]["dead_letters"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {report}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    r.answer(200);
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        switchyard(&[
            "replay",
            "--url",
            &url,
            "--destination",
            "hook",
            "--format",
            "json",
            "--wait",
            "20s",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    assert_eq!(
        summary,
        json!({"destination": "hook", "replayed": 4, "delivered": 4, "dead_lettered_again": 0, "still_pending": 0})
    );
    assert_eq!(
        r.received().iter().filter(|x| x.path == "/in").count(),
        8,
        "four refused, then four delivered"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn check_reports_a_function_syntax_error_as_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.js");
    std::fs::write(
        &f,
        "async function onRequest(request) {\n  const x = request.json(;\n}\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "sources:\n  - { id: hook, type: webhook, public: true, function: broken.js }\n",
    )
    .unwrap();
    let out = switchyard(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!("error {}:2:", f.display());
    assert!(
        stdout.starts_with(&want) && stdout.contains("SyntaxError"),
        "{stdout}"
    );
}

#[test]
fn the_examples_compile_and_test_function_runs_them() {
    for (name, var) in [
        ("knocommerce", "KNO_WEBHOOK_TOKEN"),
        ("stigg", "STIGG_WEBHOOK_TOKEN"),
        ("segment-to-switchyard", "SEGMENT_SHARED_SECRET"),
    ] {
        let cfg = examples().join(name).join("switchyard.yaml");
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["check", "--config", cfg.to_str().unwrap()])
            .env(var, "example_secret_0123456789")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let run = |source: &str, request: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["test-function", "--format", "json", "--source", source])
            .arg("--config")
            .arg(examples().join(source).join("switchyard.yaml"))
            .arg("--request")
            .arg(examples().join(source).join("payloads").join(request))
            .env("KNO_WEBHOOK_TOKEN", "example_secret_0123456789")
            .env("STIGG_WEBHOOK_TOKEN", "example_secret_0123456789")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let (code, report) = run("knocommerce", "survey-response.json");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["events"][0]["event"], "KnoCommerce Webhook Event");
    assert_eq!(report["error"], serde_json::Value::Null);
    let (code, report) = run("stigg", "feature-updated-no-customer.json");
    assert_eq!(
        (code, report["events"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    // A saved request that is not JSON makes request.json() throw: exit 1 with the error.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("form.txt");
    std::fs::write(&bad, "a=1&b=2").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "test-function",
            "--format",
            "json",
            "--source",
            "stigg",
            "--config",
        ])
        .arg(examples().join("stigg/switchyard.yaml"))
        .arg("--request")
        .arg(&bad)
        .env("STIGG_WEBHOOK_TOKEN", "example_secret_0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["name"], "SyntaxError", "{report}");
}

#[tokio::test]
async fn test_function_through_the_api_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - {{ id: kno, type: webhook, public: true, function: "{f}" }}
"#,
        dir = dir.path().display(),
        f = examples()
            .join("knocommerce/functions/knocommerce.js")
            .display()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let saved = serde_json::json!({"headers": {"X-Kno": "1"}, "body": {"email": "a@b.co"}});
    let (status, report) = app
        .post_with(
            "/api/v1/sources/kno/test-function",
            &[],
            saved.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, hyper::StatusCode::OK, "{report}");
    assert_eq!(report["events"][0]["userId"], "a@b.co");
    assert!(
        app.recent_of("kno", "").await.is_empty(),
        "a test run stores nothing"
    );
    let (status, _) = app
        .post_with("/api/v1/sources/web/test-function", &[], b"{}")
        .await;
    assert_eq!(status, hyper::StatusCode::NOT_FOUND);
}

/// Regression: `switchyard test-function` never settled an awaited `fetch` (the CLI drove
/// the engine without a runtime that ran the fetch), so the run ended as a timeout. It now
/// runs through the same function pool as the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_function_cli_settles_an_awaited_fetch() {
    let rx = crate::receiver::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("fetcher.js");
    std::fs::write(
        &f,
        "async function onRequest(request, settings) {\n  const r = await fetch(settings.url + '/cli-probe', { method: 'POST', body: request.text() });\n  Segment.track({event: 'Fetched', userId: 'u', properties: {status: r.status}});\n}\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ egress_allow: [\"127.0.0.1:{port}\"] }}\nfunctions: {{ deadline: 3s }}\nsources:\n  - {{ id: hook, type: webhook, public: true, function: fetcher.js, settings: {{ url: \"{url}\" }} }}\n",
            port = rx.port,
            url = rx.url
        ),
    )
    .unwrap();
    let req = dir.path().join("req.json");
    std::fs::write(&req, r#"{"body": {"hello": 1}}"#).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        switchyard(&[
            "test-function",
            "--format",
            "json",
            "--source",
            "hook",
            "--config",
            cfg.to_str().unwrap(),
            "--request",
            req.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(report["events"][0]["properties"]["status"], 200, "{report}");
    let got = rx
        .wait_for("the probe", |r| r.iter().any(|x| x.path == "/cli-probe"))
        .await;
    let probe = got.iter().find(|x| x.path == "/cli-probe").unwrap();
    assert_eq!(probe.json(), serde_json::json!({"hello": 1}));
}
