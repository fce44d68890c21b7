//! Webhook sources without a function: signed Segment webhooks (also from our own webhook
//! destination), Standard Webhooks and HMAC-SHA256 senders, and Knock-style idempotency.
//! Plus the function test run through the API and the CLI.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use hyper::StatusCode;
use serde_json::{Value, json};
use switchyard::clock::ManualClock;

use crate::harness::*;

const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn yaml(dir: &Path, idempotency: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB, allow_private_networks: true }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - id: segment-in
    type: webhook
    environment: staging
    verify: {{ scheme: segment, secret: abc123 }}
    idempotency: {idempotency}
  - id: segment-tail
    type: webhook
    verify: {{ scheme: segment, secret: abc123, allow_unsigned_batch_tail: true }}
  - {{ id: sw-in, type: webhook, verify: {{ scheme: standard_webhooks, secret: "{SW_SECRET}" }} }}
  - id: hub-in
    type: webhook
    verify: {{ scheme: hmac_sha256, secret: hubsecret, header: X-Hub-Signature-256, prefix: "sha256=" }}
destinations:
  - {{ id: archive, type: file, start: earliest, sources: [segment-in, segment-tail, sw-in, hub-in], settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display()
    )
}

fn sha1_hex(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn track(mid: &str, extra: Value) -> Vec<u8> {
    let mut ev =
        json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": mid});
    if let (Some(m), Value::Object(x)) = (ev.as_object_mut(), extra) {
        m.extend(x);
    }
    serde_json::to_vec(&ev).unwrap()
}

#[tokio::test]
async fn signed_segment_webhooks_are_verified_on_the_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), "{}")).await;
    let body = track("m-1", json!({}));
    let sig = sha1_hex("abc123", &body);
    let (status, resp) = app
        .post_with("/webhooks/segment-in", &[("x-signature", &sig)], &body)
        .await;
    assert_eq!(
        (status, resp["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{resp}"
    );
    // Tampered body, wrong secret, missing header: 401 with a reason, shown as unverified.
    let tampered = track("m-2", json!({}));
    let wrong = sha1_hex("abc124", &tampered);
    for (headers, want) in [
        (vec![("x-signature", sig.as_str())], "does not match"),
        (vec![("x-signature", wrong.as_str())], "does not match"),
        (vec![], "missing X-Signature"),
    ] {
        let (status, resp) = app
            .post_with("/webhooks/segment-in", &headers, &tampered)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(resp["message"].as_str().unwrap().contains(want), "{resp}");
    }
    let unverified = app.recent_of("segment-in", "status=unverified").await;
    assert_eq!(unverified.len(), 3);
    assert_eq!(
        unverified[0]["event"]["messageId"], "m-2",
        "the body is kept for the debugger"
    );
    // A batch: Segment signs its first element only; the tail is refused unless allowed.
    let first = track("b-1", json!({}));
    let batch = format!(
        "[{},{}]",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&track("b-2", json!({})))
    );
    let sig = sha1_hex("abc123", &first);
    let (status, resp) = app
        .post_with(
            "/webhooks/segment-in",
            &[("x-signature", &sig)],
            batch.as_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        resp["message"]
            .as_str()
            .unwrap()
            .contains("allow_unsigned_batch_tail")
    );
    let (status, resp) = app
        .post_with(
            "/webhooks/segment-tail",
            &[("x-signature", &sig)],
            batch.as_bytes(),
        )
        .await;
    assert_eq!(
        (status, resp["accepted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{resp}"
    );
    let events = app.delivered(3).await;
    assert_eq!(
        events[0]["context"]["switchyard"]["environment"], "staging",
        "{}",
        events[0]
    );
}

#[tokio::test]
async fn standard_webhooks_and_hmac_sha256_senders() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), "{}")).await;
    let body = track("sw-1", json!({}));
    let key = base64::engine::general_purpose::STANDARD
        .decode(&SW_SECRET[6..])
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign = |ts: i64, body: &[u8]| {
        let signed = [format!("msg_1.{ts}.").as_bytes(), body].concat();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sha256(&key, &signed))
        )
    };
    let post = |ts: i64, sig: String, body: Vec<u8>| {
        let app = &app;
        async move {
            let ts = ts.to_string();
            let h = [
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", sig.as_str()),
            ];
            app.post_with("/webhooks/sw-in", &h, &body).await
        }
    };
    assert_eq!(
        post(now, sign(now, &body), body.clone()).await.0,
        StatusCode::OK
    );
    let stale = post(now - 400, sign(now - 400, &body), body.clone()).await;
    assert_eq!(stale.0, StatusCode::UNAUTHORIZED);
    assert!(
        stale.1["message"].as_str().unwrap().contains("5 minutes"),
        "{}",
        stale.1
    );
    // Regression: far-off timestamps overflowed the tolerance check; correctly signed,
    // they are refused as stale (401 with the reason), never accepted or a crash.
    for ts in [i64::MIN, i64::MIN.wrapping_add(now), i64::MAX] {
        let (status, resp) = post(ts, sign(ts, &body), body.clone()).await;
        assert_eq!(
            (status, resp["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unverified")),
            "{ts}: {resp}"
        );
        assert!(resp["message"].as_str().unwrap().contains("5 minutes"));
    }
    let tampered = post(now, sign(now, &body), track("sw-2", json!({}))).await;
    assert_eq!(tampered.0, StatusCode::UNAUTHORIZED);
    // HMAC-SHA256, GitHub style.
    let hub = track("hub-1", json!({}));
    let good = format!("sha256={}", hex::encode(sha256(b"hubsecret", &hub)));
    let (status, _) = app
        .post_with("/webhooks/hub-in", &[("x-hub-signature-256", &good)], &hub)
        .await;
    assert_eq!(status, StatusCode::OK);
    let bad = format!("sha256={}", hex::encode(sha256(b"other", &hub)));
    let (status, resp) = app
        .post_with("/webhooks/hub-in", &[("x-hub-signature-256", &bad)], &hub)
        .await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unverified"))
    );
    assert_eq!(app.delivered(2).await.len(), 2);
}

#[tokio::test]
async fn idempotency_by_key_window_and_disable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let post = |app: &TestApp, body: Vec<u8>| {
        let sig = sha1_hex("abc123", &body);
        let url = format!("{}/webhooks/segment-in", app.url);
        async move {
            let r = switchyard::cli::client::call_with_headers(
                hyper::Method::POST,
                &url,
                &[("x-signature", &sig)],
                Some(body),
            )
            .await
            .unwrap();
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            (r.status, v["accepted"].as_u64().unwrap_or(0))
        }
    };
    // A custom key path: two messageIds, one order id → the second is an idempotent replay.
    let clock = ManualClock::new(switchyard::event::now_ms());
    let yaml_1s = yaml(d, "{ key: properties.order_id, window: 1s }");
    let app = TestApp::start_with_clock(d, &yaml_1s, clock.clone()).await;
    let order = |mid: &str, id: Value| track(mid, json!({"properties": {"order_id": id}}));
    assert_eq!(
        post(&app, order("k-1", json!("o-1"))).await,
        (StatusCode::OK, 1)
    );
    assert_eq!(
        post(&app, order("k-2", json!("o-1"))).await,
        (StatusCode::OK, 0)
    );
    let dup = app.recent_of("segment-in", "status=duplicate").await;
    assert!(
        dup[0]["reason"].as_str().unwrap().starts_with("idempotent"),
        "{dup:?}"
    );
    // Not a string, or over 255 characters: processed without idempotency.
    assert_eq!(post(&app, order("k-3", json!(7))).await.1, 1);
    assert_eq!(post(&app, order("k-4", json!(7))).await.1, 1);
    assert_eq!(post(&app, order("k-5", json!("x".repeat(256)))).await.1, 1);
    assert_eq!(post(&app, order("k-6", json!("x".repeat(256)))).await.1, 1);
    // After the window (on the server's clock, moved instead of waited for), the key is
    // new again.
    clock.advance(Duration::from_millis(1100));
    assert_eq!(post(&app, order("k-7", json!("o-1"))).await.1, 1);
    app.stop().await;
    // Disabled: the same order id twice is processed twice.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app =
        TestApp::start_with(d, &yaml(d, "{ key: properties.order_id, enabled: false }")).await;
    assert_eq!(post(&app, order("d-1", json!("o-1"))).await.1, 1);
    assert_eq!(post(&app, order("d-2", json!("o-1"))).await.1, 1);
}

#[tokio::test]
async fn idempotency_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body = track("r-1", json!({"properties": {"order_id": "o-9"}}));
    let other = track("r-2", json!({"properties": {"order_id": "o-9"}}));
    let cfg = yaml(d, "{ key: properties.order_id }");
    let app = TestApp::start_with(d, &cfg).await;
    let (s, r) = app
        .post_with(
            "/webhooks/segment-in",
            &[("x-signature", &sha1_hex("abc123", &body))],
            &body,
        )
        .await;
    assert_eq!((s, r["accepted"].as_u64()), (StatusCode::OK, Some(1)));
    tokio::time::sleep(Duration::from_millis(1200)).await; // the keys are saved every second
    app.stop().await;
    let app = TestApp::start_with(d, &cfg).await;
    let (s, r) = app
        .post_with(
            "/webhooks/segment-in",
            &[("x-signature", &sha1_hex("abc123", &other))],
            &other,
        )
        .await;
    assert_eq!(
        (s, r["accepted"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{r}"
    );
}

#[tokio::test]
async fn our_webhook_destination_signs_what_our_webhook_source_verifies() {
    let (dir_b, dir_a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let receiver = TestApp::start_with(dir_b.path(), &yaml(dir_b.path(), "{}")).await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let sender = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{port}"] }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: hop
    type: webhook
    settings: {{ shared_secret: abc123 }}
    mappings:
      - {{ name: all, subscribe: 'type = "track"', url: "{url}/webhooks/segment-in" }}
"#,
        dir = dir_a.path().display(),
        url = receiver.url
    );
    let sender = TestApp::start_with(dir_a.path(), &sender).await;
    let (status, _) = sender
        .post_json(
            "/v1/track",
            &json!({"event": "Hopped", "userId": "u9", "messageId": "hop-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = receiver.delivered(1).await;
    assert_eq!(
        (got.len(), &got[0]["messageId"], &got[0]["event"]),
        (1, &json!("hop-1"), &json!("Hopped"))
    );
    assert!(
        receiver
            .recent_of("segment-in", "status=unverified")
            .await
            .is_empty()
    );
}

/// Regression: `Authorization: bearer <token>` (lowercase scheme) must be accepted for a
/// webhook source token and for the admin token; the auth scheme is case-insensitive
/// (RFC 9110 §11.1). The admin API refused it.
#[tokio::test]
async fn bearer_in_any_case_for_source_and_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token = "tok_case_0123456789";
    let yaml = format!(
        "server: {{ listen: 127.0.0.1:0, data_dir: \"{dir}\", min_free_disk: 1MiB, admin_token: adm_0123456789abcdef }}\nsources:\n  - {{ id: tok-in, type: webhook, token: {token} }}\n",
        dir = dir.path().display()
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    for (i, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"].iter().enumerate() {
        let auth = format!("{scheme} {token}");
        let body = track(&format!("case-{i}"), json!({}));
        let (status, resp) = app
            .post_with("/webhooks/tok-in", &[("authorization", &auth)], &body)
            .await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {resp}");
    }
    let (status, resp) = app
        .post_with(
            "/webhooks/tok-in",
            &[("authorization", &format!("bearer {token}x"))],
            &track("case-wrong", json!({})),
        )
        .await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unverified")),
        "{resp}"
    );
    let inspect = format!("{}/api/v1/inspect", app.url);
    for (auth, want) in [
        ("Bearer adm_0123456789abcdef", StatusCode::OK),
        ("bearer adm_0123456789abcdef", StatusCode::OK),
        ("BEARER  adm_0123456789abcdef", StatusCode::OK),
        ("bearer adm_0123456789abcdeX", StatusCode::UNAUTHORIZED),
        ("Basic adm_0123456789abcdef", StatusCode::UNAUTHORIZED),
    ] {
        let r = switchyard::cli::client::call(hyper::Method::GET, &inspect, Some(auth), None)
            .await
            .unwrap();
        assert_eq!(r.status, want, "{auth}");
    }
    app.stop().await;
}
