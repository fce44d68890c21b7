//! The `nats` destination against a real NATS server with JetStream
//! (`SWITCHYARD_NATS_URL`, default nats://127.0.0.1:4222).

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::cli::client;

use crate::harness::*;

fn nats_url() -> String {
    std::env::var("SWITCHYARD_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn connect() -> Option<async_nats::jetstream::Context> {
    let url = nats_url();
    match tokio::time::timeout(Duration::from_secs(3), async_nats::connect(&url)).await {
        Ok(Ok(c)) => Some(async_nats::jetstream::new(c)),
        _ => {
            assert!(
                !require_services(),
                "NATS is not reachable at {url} and SWITCHYARD_REQUIRE_SERVICES=1"
            );
            eprintln!("SKIPPED: NATS is not reachable at {url}");
            None
        }
    }
}

async fn message_count(stream: &mut async_nats::jetstream::stream::Stream) -> u64 {
    stream.info().await.map(|i| i.state.messages).unwrap_or(0)
}

/// An in-memory JetStream stream named after `tag` that captures `<tag>.>`.
async fn test_stream(
    js: &async_nats::jetstream::Context,
    tag: &str,
) -> async_nats::jetstream::stream::Stream {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: tag.to_uppercase(),
        subjects: vec![format!("{tag}.>")],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("create a test stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_to_jetstream_once_even_when_replayed() {
    let Some(js) = connect().await else { return };
    let tag = format!("sytest_{}", uuid::Uuid::new_v4().simple());
    let mut stream = test_stream(&js, &tag).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n  - {{ id: stream, type: nats, settings: {{ url: \"{}\", subject: \"{tag}.{{{{type}}}}\" }} }}\n",
        dir.path().display(),
        nats_url()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let events = json!({"batch": [
        {"type": "track", "event": "A", "userId": "u", "messageId": "n-1"},
        {"type": "track", "event": "B", "userId": "u", "messageId": "n-2"},
        {"type": "identify", "userId": "u", "messageId": "n-3", "traits": {"plan": "pro"}}
    ]});
    assert_eq!(app.post_json("/v1/batch", &events).await.0, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(15);
    while message_count(&mut stream).await < 3 {
        assert!(Instant::now() < deadline, "events never reached the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    for seq in 1..=3 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        let msg_id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert_eq!(
            msg_id,
            switchyard::signing::webhook_id(
                "web",
                body["messageId"].as_str().unwrap(),
                "stream",
                "nats"
            )
        );
        seen.push((
            m.subject.to_string(),
            body["messageId"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (format!("{tag}.identify"), "n-3".to_owned()),
            (format!("{tag}.track"), "n-1".to_owned()),
            (format!("{tag}.track"), "n-2".to_owned())
        ]
    );

    // A replay publishes everything again; JetStream drops the repeats by Nats-Msg-Id.
    // (It covers what the destination had finished as of its last saved progress.)
    app.wait_drained().await;
    let url = format!("{}/api/v1/destinations/stream/replay", app.url);
    let r = client::call(
        Method::POST,
        &url,
        None,
        Some(br#"{"from_log": true, "since": "1h"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        if report["destinations"][0]["replaying"] == false
            && report["destinations"][0]["replayed"] == 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replay never finished: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every replayed publish was acknowledged before the replay finished.
    assert_eq!(
        message_count(&mut stream).await,
        3,
        "replayed publishes were deduplicated"
    );
    // The delivery log is written a moment after each outcome: poll for JetStream's answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = app.get("/api/v1/destinations/stream/deliveries").await;
        let duplicate = log["deliveries"].as_array().unwrap().iter().any(|a| {
            a["response"]
                .as_str()
                .is_some_and(|r| r.ends_with("duplicate"))
        });
        if duplicate {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    let _ = js.delete_stream(tag.to_uppercase()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_captures_is_reported_and_nothing_is_lost() {
    let Some(_js) = connect().await else { return };
    let tag = format!("sytest_nostream_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n  - {{ id: stream, type: nats, settings: {{ url: \"{}\", subject: \"{tag}.{{{{type}}}}\" }} }}\n",
        dir.path().display(),
        nats_url()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    app.post_json(
        "/v1/track",
        &json!({"type": "track", "event": "A", "userId": "u", "messageId": "x-1"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        let d = &report["destinations"][0];
        if d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no JetStream stream captures"))
        {
            assert_eq!(d["backlog"], 1, "the event waits on disk: {report}");
            break;
        }
        assert!(Instant::now() < deadline, "no clear error: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_when_no_stream_captures_the_subject_unless_core() {
    if connect().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |core: bool| {
        let path = dir.path().join(format!("c-{core}.yaml"));
        let yaml = format!(
            "sources:\n  - {{ id: web, type: http_api, write_keys: {{ production: k }} }}\ndestinations:\n  - {{ id: stream, type: nats, settings: {{ url: \"{}\", subject: \"sytest_never_captured.{{{{type}}}}\", core: {core} }} }}\n",
            nats_url()
        );
        std::fs::write(&path, yaml).unwrap();
        path
    };
    let run = |path: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("check")
            .arg("--config")
            .arg(path)
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let p = write(false);
        move || run(p)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "error destinations[stream].settings.subject no JetStream stream captures"
        ),
        "{text}"
    );
    let out = tokio::task::spawn_blocking({
        let p = write(true);
        move || run(p)
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "core: true is at most once and needs no stream"
    );
}

const NATS_PASSWORD: &str = "nats_pw_secret_7731";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_url_password_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n  - {{ id: stream, type: nats, settings: {{ url: \"nats://syuser:{NATS_PASSWORD}@127.0.0.1:1\", subject: \"sy.{{{{type}}}}\" }} }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (mut child, url, log) = crate::attacks::serve(&cfg, &[], "info").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let live = loop {
        let r = client::call(Method::GET, &format!("{url}/api/v1/inspect"), None, None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let report: Value = serde_json::from_str(&text).unwrap();
        if report["destinations"][0]["last_error"].is_string() {
            break text;
        }
        assert!(Instant::now() < deadline, "no connect error: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(live.contains("cannot connect to nats://***:"), "{live}");
    let inspect = crate::attacks::cli(vec!["inspect".into(), "--url".into(), url.clone()]).await;
    assert!(inspect.contains("last error: cannot connect"), "{inspect}");
    let check = crate::attacks::cli(vec![
        "check".into(),
        "--config".into(),
        cfg.display().to_string(),
    ])
    .await;
    assert!(check.contains("could not verify"), "{check}");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(log.contains("NATS destination is not ready"), "{log}");
    for (what, shown) in [
        ("/api/v1/inspect", &live),
        ("inspect", &inspect),
        ("check", &check),
        ("the log", &log),
    ] {
        assert!(!shown.contains(NATS_PASSWORD), "{what}: {shown}");
    }
}

/// A NATS retry stored before requests were typed (pseudo-HTTP: `PUBLISH` to the subject, id
/// in a `Nats-Msg-Id` header) is published after the upgrade, with its own id; the delivery
/// log shows what JetStream said, and no HTTP status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_stored_before_typed_requests_is_published_after_upgrade() {
    let Some(js) = connect().await else { return };
    let tag = format!("sytest_upgrade_{}", uuid::Uuid::new_v4().simple());
    let mut stream = test_stream(&js, &tag).await;
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let row = format!(
        r#"{{"id":1,"seq":0,"source":"web","message_id":"old-1","mapping":"nats","received_ms":{now},
        "request":{{"url":"{tag}.track","method":"PUBLISH","headers":[["Nats-Msg-Id","legacy-id-1"]],"body":"{{\"messageId\":\"old-1\"}}","signed":""}},
        "attempts":1,"next_at_ms":0,"last_error":"timed out"}}"#
    );
    crate::store_format::write_old_store(
        &dir.path().join("deliveries.redb"),
        &[("stream", 1, &row)],
        &[],
    );
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{}\", min_free_disk: 1MiB }}\nsources:\n  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}\ndestinations:\n  - {{ id: stream, type: nats, settings: {{ url: \"{}\", subject: \"{tag}.{{{{type}}}}\" }} }}\n",
        dir.path().display(),
        nats_url()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let (_, log) = app.get("/api/v1/destinations/stream/deliveries").await;
        let found = log["deliveries"].as_array().and_then(|all| {
            all.iter()
                .find(|a| a["message_id"] == "old-1" && a["outcome"] == "delivered")
                .cloned()
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the old retry was never sent: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered["status"], Value::Null, "{delivered}");
    assert_eq!(delivered["url"], format!("{tag}.track"));
    assert_eq!(
        delivered["response"],
        format!("stream {} seq 1", tag.to_uppercase())
    );
    assert_eq!(message_count(&mut stream).await, 1);
    let m = stream.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.to_string(), format!("{tag}.track"));
    assert_eq!(
        m.headers.get("Nats-Msg-Id").map(|v| v.to_string()),
        Some("legacy-id-1".to_owned())
    );
    assert_eq!(&m.payload[..], br#"{"messageId":"old-1"}"#);
    app.stop().await;
    let _ = js.delete_stream(tag.to_uppercase()).await;
}
