//! The SSRF guard end to end: URL hosts that spell a private address in another form
//! (numbers the resolver reads as IPv4, IPv6 forms that reach IPv4) are warned about by
//! `check` and refused at delivery with a clear reason.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::receiver::Receiver;

fn yaml(dir: &std::path::Path, port: u16) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: hook
    type: webhook
    start: earliest
    retry: {{ initial_backoff: 20ms, max_backoff: 100ms }}
    mappings:
      - {{ name: Hex, subscribe: 'type = "track"', url: "http://0x7f000001:{port}/hex" }}
      - {{ name: Short, subscribe: 'type = "track"', url: "http://127.1:{port}/short" }}
      - {{ name: Compat, subscribe: 'type = "track"', url: "http://[::127.0.0.1]:{port}/compat" }}
"#,
        dir = dir.display()
    )
}

/// Regression: `http://0x7f000001:PORT/` (and `127.1`, `[::127.0.0.1]`) reach loopback, but
/// `check` did not warn; with the default config each delivery dead-letters, naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_in_other_spellings_is_warned_about_and_refused() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(dir.path(), rx.port);
    let (_, problems) = switchyard::config::compile_str(&yaml, "t", &|_| None);
    let warned: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for i in 0..3 {
        let path = format!("warning destinations[hook].mappings[{i}].url deliveries will fail");
        assert!(
            warned
                .iter()
                .any(|w| w.starts_with(&path) && w.contains("loopback")),
            "{path}: {warned:?}"
        );
    }
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning destinations[hook].mappings[0].url deliveries will fail: egress to 0x7f000001 (127.0.0.1) refused: it is a loopback address"),
        "{text}"
    );

    let app = TestApp::start_with(dir.path(), &yaml).await;
    let ev = json!({"type": "track", "event": "Ping", "userId": "u", "messageId": "ssrf-hex"});
    app.post_json("/v1/track", &ev).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, body) = app.get("/api/v1/destinations/hook/dead-letters").await;
        let list = body["dead_letters"].as_array().cloned().unwrap_or_default();
        if list.len() >= 3 {
            break list;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("0x7f000001 (127.0.0.1) refused")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|r| r.contains("loopback address")),
        "{reasons:?}"
    );
    assert!(rx.received().is_empty(), "nothing reached loopback");
    app.stop().await;
}
