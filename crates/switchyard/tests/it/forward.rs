//! The `segment` destination, tested against a second Switchyard instance: events forwarded
//! over the Tracking API keep their messageId and corrected timestamp.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_forwarded_to_another_instance_keep_ids_and_timestamps() {
    let upstream_dir = tempfile::tempdir().unwrap();
    let upstream = TestApp::start(upstream_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", allow_private_networks: true, min_free_disk: 1MiB }}
sources:
  - {{ id: edge, type: http_api, write_keys: {{ staging: wk_edge }} }}
destinations:
  - {{ id: local, type: file, start: earliest, settings: {{ path: "{dir}/local.jsonl" }} }}
  - id: upstream
    type: segment
    start: earliest
    delivery: {{ batch_linger: 100ms }}
    settings: {{ endpoint: "{url}", write_key: {KEY} }}
"#,
        dir = dir.path().display(),
        url = upstream.url
    );
    let edge = TestApp::start_with(dir.path(), &yaml).await;
    let batch = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "fw-1", "timestamp": "2024-01-01T00:00:00Z", "properties": {"total": 27.5}},
        {"type": "identify", "userId": "u1", "messageId": "fw-2", "traits": {"email": "a@b.c"}},
        {"type": "page", "anonymousId": "a1", "messageId": "fw-3", "name": "Home"}
    ], "sentAt": "2024-01-01T00:00:10Z"});
    let auth = basic("wk_edge");
    let (status, _) = edge
        .post(
            "/v1/batch",
            Some(&auth),
            serde_json::to_vec(&batch).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let local = read_lines_until(&dir.path().join("local.jsonl"), 3).await;
    let forwarded = upstream.delivered(3).await;
    assert_eq!(forwarded.len(), 3, "every event reached the upstream");
    let by_id =
        |list: &[Value], id: &str| list.iter().find(|e| e["messageId"] == id).cloned().unwrap();
    for id in ["fw-1", "fw-2", "fw-3"] {
        let (ours, theirs) = (by_id(&local, id), by_id(&forwarded, id));
        assert_eq!(theirs["type"], ours["type"]);
        assert_eq!(
            theirs["originalTimestamp"], ours["timestamp"],
            "the upstream's originalTimestamp is our corrected timestamp"
        );
        let t = |v: &Value| {
            time::OffsetDateTime::parse(
                v.as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        let drift = (t(&theirs["timestamp"]) - t(&ours["timestamp"])).abs();
        assert!(
            drift < time::Duration::seconds(5),
            "no second skew correction: drift {drift}"
        );
        assert_eq!(
            theirs["context"]["switchyard"]["source"], "web",
            "the upstream records its own source"
        );
    }
    assert_eq!(
        by_id(&forwarded, "fw-1")["properties"],
        json!({"total": 27.5})
    );
    assert_eq!(by_id(&forwarded, "fw-2")["traits"]["email"], "a@b.c");
    edge.stop().await;
    upstream.stop().await;
}
