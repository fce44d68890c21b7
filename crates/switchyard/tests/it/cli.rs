//! The CLI as a user runs it: `check`, `send` and `inspect` (live and offline).

use std::process::Command;

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
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        switchyard(&["inspect", "--url", &url, "--format", "json"])
    })
    .await
    .unwrap();
    let live: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("inspect --format json");
    assert_eq!(
        (
            live["log"]["next_seq"].as_u64(),
            live["integrity"]["mode"].as_str()
        ),
        (Some(3), Some("live"))
    );
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
            && text.contains("destination archive: backlog 0"),
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
