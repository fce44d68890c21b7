//! Regression tests for what an attacker holding a write key found (issue 10, defects 1, 3,
//! 4, 5 and 8): each input here once lost an event silently, panicked a handler, or showed a
//! secret. Every test goes through HTTP as the attacker did.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};
use switchyard::log::record::Kind;

use crate::harness::*;
use crate::old_log;
use crate::receiver::Receiver;

fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// Elements that serde_json's raw scanner lets through but a full parse refuses.
fn unreadable_elements() -> Vec<(&'static str, String)> {
    vec![
        (
            "huge-number",
            r#"{"type":"track","event":"E","userId":"u","messageId":"huge-number","properties":{"n":1e400}}"#.into(),
        ),
        (
            "lone-surrogate",
            r#"{"type":"track","event":"E","userId":"u","messageId":"lone-surrogate","properties":{"s":"a\ud800b"}}"#.into(),
        ),
        (
            "too-deep",
            format!(
                r#"{{"type":"track","event":"E","userId":"u","messageId":"too-deep","properties":{{"d":{}}}}}"#,
                nested(150)
            ),
        ),
    ]
}

fn batch_of(elements: &[String]) -> Vec<u8> {
    format!(r#"{{"batch":[{}]}}"#, elements.join(",")).into_bytes()
}

/// Defect 1 and 4: such an event was accepted with 200, then skipped by every destination
/// with no trace, and it broke the debugger API until newer events pushed it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_no_reader_can_parse_is_refused_at_ingest_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let mut elements: Vec<String> = unreadable_elements().into_iter().map(|(_, e)| e).collect();
    elements.push(r#"{"type":"track","event":"Good","userId":"u","messageId":"good"}"#.into());
    let (status, body) = app
        .post("/v1/batch", Some(&basic(KEY)), batch_of(&elements))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let delivered = app.delivered(1).await;
    app.wait_drained().await;
    let ids: Vec<&str> = app_ids(&delivered);
    assert_eq!(ids, ["good"], "only the readable event is delivered");

    // The debugger API answers, and shows each refusal with its reason.
    let rejected = app.recent("status=rejected").await;
    for (id, _) in unreadable_elements() {
        let r = rejected
            .iter()
            .find(|r| r["message_id"] == id)
            .unwrap_or_else(|| panic!("{id} is shown as rejected: {rejected:?}"));
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("unreadable_json: "), "{id}: {reason}");
        assert!(
            reason.contains("properties."),
            "{id} names the place: {reason}"
        );
    }
    let (status, all) = app.get("/api/v1/sources/web/events").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    for id in ["huge-number", "lone-surrogate", "too-deep", "good"] {
        let (status, lineage) = app.get(&format!("/api/v1/events/{id}?source=web")).await;
        assert_eq!(status, StatusCode::OK, "{id}: {lineage}");
    }
    app.stop().await;
}

fn app_ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["messageId"].as_str())
        .collect()
}

/// An envelope `context` no reader can parse would be merged into every event: each element
/// is refused with the reason instead of losing the context silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_envelope_context_refuses_its_events_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let body = r#"{"context":{"n":1e400},"batch":[{"type":"track","event":"E","userId":"u","messageId":"m1"}]}"#;
    let (status, _) = app
        .post("/v1/batch", Some(&basic(KEY)), body.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    let rejected = app.recent("status=rejected").await;
    let reason = rejected[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("unreadable_json: ") && reason.contains("context"),
        "{reason}"
    );
    assert!(app.recent("status=accepted").await.is_empty());
    app.stop().await;
}

/// Defect 8: an unparseable messageId was replaced by a random one, so a resend was stored
/// twice. It is refused instead, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparseable_message_id_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let el = r#"{"type":"track","event":"E","userId":"u","messageId":"\udfff"}"#;
    for _ in 0..2 {
        let (status, _) = app
            .post("/v1/track", Some(&basic(KEY)), el.as_bytes().to_vec())
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(app.recent("status=accepted").await.is_empty());
    assert_eq!(app.recent("status=rejected").await.len(), 2);
    app.stop().await;
}

/// Defect 3: these dates panicked the handler — an empty reply, and the good events of the
/// same batch lost. Out-of-range dates are unparseable: absent, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_out_of_range_are_treated_as_absent_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let far = "9999-12-31T23:59:59-23:59";
    let body = json!({"sentAt": far, "batch": [
        {"type": "track", "event": "E", "userId": "u", "messageId": "far-ts", "timestamp": far},
        {"type": "track", "event": "E", "userId": "u", "messageId": "year-zero", "timestamp": "0000-01-01T00:00:00+01:00"},
        {"type": "track", "event": "E", "userId": "u", "messageId": "plain"},
    ]});
    let (status, reply) = app.post_json("/v1/batch", &body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let events = app.delivered(3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        assert!(e.get("originalTimestamp").is_none(), "{e}");
        assert_eq!(e["timestamp"], e["receivedAt"], "{e}");
    }
    let accepted = app.recent("status=accepted").await;
    let warned = accepted
        .iter()
        .find(|r| r["message_id"] == "far-ts")
        .expect("shown");
    let warnings = warned["warnings"].to_string();
    assert!(warnings.contains("unparseable timestamp"), "{warnings}");

    // The replay `since` field takes the same parser, and a duration past the epoch.
    for since in [far, "999999999999999d"] {
        let (status, reply) = app
            .post_json(
                "/api/v1/destinations/archive/dead-letters/replay",
                &json!({ "since": since }),
            )
            .await;
        assert!(
            status.is_client_error() || status.is_success(),
            "{since}: {status} {reply}"
        );
        assert!(
            reply.get("code").is_some() || reply.get("replayed").is_some(),
            "{reply}"
        );
    }
    app.stop().await;
}

/// Defect 5: a rejected oversized event showed its body's writeKey in the debugger preview
/// and kept it in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_never_shows_or_stores_its_write_key() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let secret = "wk_secret_in_the_body_0123456789";
    let big = "x".repeat(40_000);
    let oversized = json!({"writeKey": secret, "type": "track", "event": "E", "userId": "u", "messageId": "big", "properties": {"pad": big}});
    // Not JSON a reader can parse, so it is shown as a text preview.
    let unreadable = format!(
        r#"{{"writeKey" : "{secret}","type":"track","event":"E","userId":"u","messageId":"odd","properties":{{"n":1e400}}}}"#
    );
    let small = json!({"writeKey": secret, "type": "track", "messageId": "no-user"});
    let body = format!(
        r#"{{"batch":[{},{unreadable},{}]}}"#,
        serde_json::to_string(&oversized).unwrap(),
        serde_json::to_string(&small).unwrap()
    );
    let (status, reply) = app
        .post("/v1/batch", Some(&basic(KEY)), body.into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let rejected = app.recent("status=rejected").await;
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    let shown = serde_json::to_string(&rejected).unwrap();
    assert!(
        !shown.contains(secret),
        "the API shows the writeKey: {shown}"
    );
    assert!(
        shown.contains("***:"),
        "the preview says a value was redacted"
    );
    app.stop().await;
    assert_no_file_holds(tmp.path(), secret.as_bytes());
}

fn assert_no_file_holds(dir: &Path, needle: &[u8]) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Defect 8: serde reads a struct from an array by position, so `[batch, writeKey, ...]`
/// was taken as an envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_array_is_not_an_envelope() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let body = format!(r#"[[{{"type":"track","event":"E","userId":"u"}}],"{KEY}"]"#);
    for path in ["/v1/batch", "/v1/track"] {
        let (status, reply) = app
            .post(path, Some(&basic(KEY)), body.clone().into_bytes())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reply}");
        assert_eq!(reply["code"], "invalid_json", "{reply}");
    }
    assert!(app.recent("").await.is_empty());
    app.stop().await;
}

/// Defect 8: admin errors for bad query parameters were axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_for_bad_parameters_are_json() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    for path in [
        "/api/v1/sources/web/events?limit=abc",
        "/api/v1/sources/web/events?before=-1",
        "/api/v1/destinations/archive/deliveries?limit=x",
        "/api/v1/events/%FF%FE",
    ] {
        let (status, reply) = app.get(path).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(
            reply["code"].is_string() && reply["message"].is_string(),
            "{path}: {reply}"
        );
    }
    let (status, reply) = app
        .post(
            "/api/v1/destinations/archive/replay",
            None,
            b"{\"from_log\": \"yes\"}".to_vec(),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(reply["code"].is_string(), "{reply}");
    app.stop().await;
}

/// Defect 1, readers: a log written before ingest refused such JSON still holds unreadable
/// records. A webhook destination dead-letters each with the reason instead of moving its
/// cursor past it silently, and the event behind it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_dead_letters_a_logged_event_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    old_log::write(
        tmp.path(),
        &[
            (
                Kind::Accepted,
                "old-bad",
                r#"{"type":"track","event":"E","userId":"u","messageId":"old-bad","properties":{"n":1e400}}"#,
            ),
            (
                Kind::Accepted,
                "old-good",
                r#"{"type":"track","event":"E","userId":"u","messageId":"old-good"}"#,
            ),
        ],
    );
    let r = Receiver::start().await;
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{port}"] }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: hook
    type: webhook
    start: earliest
    mappings:
      - {{ name: All, subscribe: 'type = "track"', url: "{url}/all" }}
"#,
        dir = tmp.path().display(),
        port = r.port,
        url = r.url
    );
    let app = TestApp::start_with(tmp.path(), &yaml).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let (_, body) = app.get("/api/v1/destinations/hook/dead-letters").await;
        let list = body["dead_letters"].as_array().cloned().unwrap_or_default();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["message_id"], "old-bad");
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be read"), "{reason}");
    let got = r.wait_for("the event behind it", |g| !g.is_empty()).await;
    assert_eq!(got[0].json()["messageId"], "old-good");
    app.stop().await;
}

/// Elements past a batch's 2,500th are folded into one rejected entry (so a body of 250,000
/// tiny elements costs one log record), and the counter still counts every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_past_the_batch_limit_are_one_entry_but_each_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::start(tmp.path()).await;
    let elements: Vec<String> = (0..2_510).map(|_| "1".to_owned()).collect();
    let (status, _) = app
        .post("/v1/batch", Some(&basic(KEY)), batch_of(&elements))
        .await;
    assert_eq!(status, StatusCode::OK);
    let rejected = app.recent("status=rejected&limit=1000").await;
    let folded: Vec<_> = rejected
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("batch_too_large"))
        })
        .collect();
    assert_eq!(folded.len(), 1, "{folded:?}");
    assert!(
        folded[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("10 more were rejected")
    );
    let (_, metrics) = app.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(
            r#"switchyard_events_rejected_total{source="web",reason="batch_too_large"} 10"#
        ),
        "{text}"
    );
    app.stop().await;
}
