//! The official Segment SDKs, unmodified, against a running server: only the host changes.
//! `.ci/run` installs them; without them these tests skip loudly, unless
//! `SWITCHYARD_REQUIRE_SERVICES=1`, which makes them fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Whether `check` succeeds; otherwise skips (or fails when services are required).
pub fn available(what: &str, check: &mut Command) -> bool {
    let ok = check.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !require_services(),
            "{what} is not installed and SWITCHYARD_REQUIRE_SERVICES=1; run .ci/run"
        );
        eprintln!("SKIPPED: {what} is not installed (run .ci/run to install it)");
    }
    ok
}

pub fn python() -> String {
    std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Checks the five events of one SDK run arrived normalised.
fn check_events(events: &[Value], prefix: &str, library: &str) {
    let get = |ty: &str| {
        let id = format!("{prefix}-{ty}");
        events
            .iter()
            .find(|e| e["messageId"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not delivered; got {events:#?}"))
            .clone()
    };
    let user = format!("{prefix}-user");
    let track = get("track");
    assert_eq!(
        (track["type"].as_str(), track["event"].as_str()),
        (Some("track"), Some("Order Completed"))
    );
    assert_eq!(track["properties"]["revenue"], 12.5);
    assert_eq!(track["originalTimestamp"], "2024-01-01T00:00:00.000Z");
    assert!(
        track["context"]["library"]["name"]
            .as_str()
            .is_some_and(|n| n.contains(library)),
        "{track}"
    );
    assert_eq!(
        get("identify")["traits"]["email"]
            .as_str()
            .map(|e| e.ends_with("@example.com")),
        Some(true)
    );
    assert_eq!(get("page")["name"], "Home");
    assert_eq!(get("group")["groupId"], "g-1");
    let alias = get("alias");
    assert_eq!(
        (alias["previousId"].as_str(), alias["userId"].as_str()),
        (Some(format!("{prefix}-anon").as_str()), Some(user.as_str()))
    );
    for ty in ["track", "identify", "page", "group", "alias"] {
        let e = get(ty);
        assert_eq!(e["type"], ty);
        assert_eq!(e["userId"], user.as_str());
        assert!(
            e.get("anonymousId").is_none_or(|a| a.is_string()),
            "null anonymousId is dropped: {e}"
        );
        assert!(e.get("writeKey").is_none());
        assert_eq!(e["version"], 2);
        assert_eq!(e["context"]["switchyard"]["source"], "web");
        for k in ["timestamp", "receivedAt", "sentAt"] {
            assert!(
                e[k].as_str()
                    .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
                "{k} in {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_python_with_and_without_gzip() {
    if !available(
        "segment-analytics-python",
        Command::new(python()).args(["-c", "import segment.analytics"]),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    for (gzip, prefix) in [("0", "py-plain"), ("1", "py-gzip")] {
        let out = tokio::process::Command::new(python())
            .arg(sdk_dir().join("send_python.py"))
            .args([&app.url, KEY, gzip, prefix])
            .output()
            .await
            .expect("run python");
        assert!(
            out.status.success(),
            "python SDK failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = app.delivered(10).await;
    check_events(&events, "py-plain", "analytics-python");
    check_events(&events, "py-gzip", "analytics-python");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_node() {
    let module = sdk_dir().join("node_modules/@segment/analytics-node/package.json");
    if !available(
        "node and @segment/analytics-node",
        Command::new("node")
            .arg("-e")
            .arg(format!("require({:?})", module.display().to_string())),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let out = tokio::process::Command::new("node")
        .arg(sdk_dir().join("send_node.mjs"))
        .args([&app.url, KEY, "node"])
        .current_dir(sdk_dir())
        .output()
        .await
        .expect("run node");
    assert!(
        out.status.success(),
        "node SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = app.delivered(5).await;
    check_events(&events, "node", "analytics-node");
    let track = events
        .iter()
        .find(|e| e["messageId"] == "node-track")
        .unwrap();
    assert!(
        track["_metadata"]["jsRuntime"].is_string(),
        "_metadata passes through: {track}"
    );
    app.stop().await;
}
