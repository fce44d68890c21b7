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
