use std::io::Write;

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn track(mid: &str) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": mid, "properties": {"revenue": 9.5}})
}

#[tokio::test]
async fn every_ingest_path_reaches_the_file_destination_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let sent_at = "2024-01-01T00:00:10.000Z";
    let batch = json!({"batch": [
        {"type": "identify", "userId": 42, "anonymousId": null, "traits": {"email": "a@b.c"}, "messageId": "m-identify", "timestamp": "2024-01-01T00:00:00Z"},
        {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m-group"},
        {"type": "alias", "userId": "u1", "previousId": "anon-1", "messageId": "m-alias"}
    ], "sentAt": sent_at, "context": {"library": {"name": "test-lib"}}, "writeKey": KEY});
    assert_eq!(
        app.post_json("/v1/batch", &batch).await,
        (StatusCode::OK, json!({"success": true}))
    );
    assert_eq!(
        app.post_json("/v1/track", &track("m-track")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.post_json(
            "/v1/page/",
            &json!({"anonymousId": "a", "name": "Home", "messageId": "m-page"})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        app.post_json(
            "/v1/screen",
            &json!({"userId": "u", "name": "Main", "messageId": "m-screen"})
        )
        .await
        .0,
        StatusCode::OK
    );
    // analytics.js: text/plain, the write key in the body, single-letter paths.
    let t = json!({"writeKey": KEY, "type": "track", "event": "Clicked", "anonymousId": "a", "messageId": "m-ajs-t", "sentAt": sent_at, "timestamp": "2024-01-01T00:00:00Z"});
    let text_plain = [("content-type", "text/plain")];
    let t = serde_json::to_vec(&t).unwrap();
    assert_eq!(
        post_raw(&app, "/v1/t", &text_plain, t).await,
        StatusCode::OK
    );
    let b = json!({"writeKey": KEY, "batch": [{"type": "page", "anonymousId": "a", "messageId": "m-ajs-b"}], "sentAt": sent_at});
    let b = serde_json::to_vec(&b).unwrap();
    assert_eq!(
        post_raw(&app, "/v1/b", &text_plain, b).await,
        StatusCode::OK
    );
    // Segment's legacy import alias of /v1/batch, with no Content-Type at all.
    let import = json!({"writeKey": KEY, "batch": [{"type": "identify", "userId": "imp", "messageId": "m-import"}]});
    let import = serde_json::to_vec(&import).unwrap();
    assert_eq!(
        post_raw(&app, "/v1/import", &[], import).await,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/v1/m", None, b"{\"series\":[]}".to_vec()).await.0,
        StatusCode::OK,
        "/v1/m needs no key"
    );

    let events = app.delivered(9).await;
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["messageId"] == id)
            .unwrap_or_else(|| panic!("{id} not delivered: {events:#?}"))
            .clone()
    };
    assert_eq!(events.len(), 9);
    assert_eq!(by_id("m-import")["type"], "identify");
    let identify = by_id("m-identify");
    assert_eq!(identify["userId"], "42", "numeric ids become strings");
    assert!(identify.get("anonymousId").is_none(), "null ids are absent");
    assert_eq!(identify["originalTimestamp"], "2024-01-01T00:00:00.000Z");
    assert_eq!(identify["sentAt"], sent_at);
    assert_eq!(
        identify["context"]["library"]["name"], "test-lib",
        "the envelope context is merged"
    );
    assert_eq!(
        identify["context"]["switchyard"],
        json!({"source": "web", "environment": "production"})
    );
    assert_eq!(identify["version"], 2);
    let skew = |e: &Value| {
        let p = |k: &str| {
            time::OffsetDateTime::parse(
                e[k].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        (p("receivedAt") - p("timestamp")).whole_milliseconds()
    };
    assert_eq!(
        skew(&identify),
        10_000,
        "timestamp = receivedAt - (sentAt - originalTimestamp)"
    );
    assert_eq!(skew(&by_id("m-ajs-t")), 10_000);
    assert_eq!(by_id("m-ajs-t")["type"], "track");
    assert!(
        by_id("m-ajs-t").get("writeKey").is_none(),
        "writeKey is stripped"
    );
    assert_eq!(by_id("m-page")["type"], "page");
    assert_eq!(by_id("m-ajs-b")["type"], "page");
    assert_eq!(by_id("m-track")["properties"], json!({"revenue": 9.5}));
    for e in &events {
        assert!(
            e["receivedAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "{e}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn auth_failures_are_401_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let body = serde_json::to_vec(&json!({"batch": [track("m-1")]})).unwrap();
    let (status, err) = app.post("/v1/batch", None, body.clone()).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_write_key"))
    );
    assert_eq!(err["error"], err["code"]);
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    let (status, err) = app
        .post("/v1/batch", Some(&basic("nope")), body.clone())
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_write_key"))
    );
    let conflicting =
        serde_json::to_vec(&json!({"batch": [track("m-1")], "writeKey": DEV_KEY})).unwrap();
    let (status, err) = app.post("/v1/batch", Some(&basic(KEY)), conflicting).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("conflicting_write_key"))
    );
    // Basic without the trailing colon is accepted.
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY)
    );
    assert_eq!(
        app.post("/v1/batch", Some(&no_colon), body).await.0,
        StatusCode::OK
    );
    let events = app.delivered(1).await;
    assert_eq!(events.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn environment_comes_from_the_write_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let body = serde_json::to_vec(&json!({"batch": [track("m-dev")]})).unwrap();
    assert_eq!(
        app.post("/v1/batch", Some(&basic(DEV_KEY)), body).await.0,
        StatusCode::OK
    );
    let events = app.delivered(1).await;
    assert_eq!(
        events[0]["context"]["switchyard"]["environment"],
        "development"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let auth = basic(KEY);
    let (status, err) = app
        .post("/v1/batch", Some(&auth), b"{\"batch\": [".to_vec())
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let (status, err) = app
        .post("/v1/batch", Some(&auth), b"{\"batch\": 5}".to_vec())
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_batch"))
    );
    // Over 512,000 bytes decompressed.
    let big = json!({"batch": [{"type": "track", "event": "x", "userId": "u", "properties": {"p": "x".repeat(520_000)}}]});
    let (status, err) = app
        .post("/v1/batch", Some(&auth), serde_json::to_vec(&big).unwrap())
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    app.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Posts with exactly the given headers (no Authorization unless given).
async fn post_raw(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> StatusCode {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::post(format!("{}{path}", app.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

async fn post_encoded(app: &TestApp, encoding: &str, body: Vec<u8>) -> StatusCode {
    let auth = basic(KEY);
    post_raw(
        app,
        "/v1/batch",
        &[("authorization", &auth), ("content-encoding", encoding)],
        body,
    )
    .await
}

#[tokio::test]
async fn gzip_deflate_and_bombs() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let body = serde_json::to_vec(&json!({"batch": [track("m-gz")]})).unwrap();
    assert_eq!(
        post_encoded(&app, "gzip", gzip(&body)).await,
        StatusCode::OK
    );
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&serde_json::to_vec(&json!({"batch": [track("m-deflate")]})).unwrap())
        .unwrap();
    assert_eq!(
        post_encoded(&app, "deflate", z.finish().unwrap()).await,
        StatusCode::OK
    );
    // 1 GiB of spaces compresses to about 1 MiB; so build a 100 MiB bomb (about 100 KiB).
    let bomb = gzip(&vec![b' '; 100 << 20]);
    assert!(bomb.len() < 200_000);
    assert_eq!(
        post_encoded(&app, "gzip", bomb).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        post_encoded(&app, "gzip", b"plainly not gzip".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    let events = app.delivered(2).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-gz", "m-deflate"]);
    app.stop().await;
}

#[tokio::test]
async fn per_event_rejections_are_visible_and_do_not_fail_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(
        dir.path(),
        &config_yaml(dir.path(), ", recent_events: 5000"),
    )
    .await;
    let mut batch = vec![
        json!({"type": "track", "userId": "u", "messageId": "m-noname"}),
        json!({"type": "identify", "messageId": "m-noid"}),
        json!({"type": "track", "event": "x", "userId": "u", "messageId": "m".repeat(101)}),
        json!({"type": "track", "event": "x", "userId": "u", "messageId": "m-huge", "properties": {"p": "x".repeat(33_000)}}),
        json!("not an object"),
        track("m-good"),
    ];
    // Fill to 2,501 elements: the last one is past the limit.
    for i in batch.len()..2501 {
        batch.push(json!({"type": "page", "anonymousId": "a", "messageId": format!("fill-{i}")}));
    }
    let (status, body) = app.post_json("/v1/batch", &json!({"batch": batch})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let rejected = app.recent("status=rejected&limit=1000").await;
    let reason_of = |mid: &str| {
        rejected
            .iter()
            .find(|e| e["message_id"] == mid)
            .and_then(|e| e["reason"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{mid} not in {rejected:#?}"))
    };
    assert!(reason_of("m-noname").starts_with("missing_event_name"));
    assert!(reason_of("m-noid").starts_with("no_user_anon_id"));
    assert!(reason_of("m-huge").starts_with("event_too_large"));
    assert!(rejected.iter().any(|e| {
        e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("message_id_too_long"))
    }));
    assert!(rejected.iter().any(|e| {
        e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("invalid_event"))
            && e["event"] == "not an object"
    }));
    assert!(rejected.iter().any(|e| {
        e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("batch_too_large"))
    }));
    assert_eq!(rejected.len(), 6);
    let events = app.delivered(2495).await;
    assert_eq!(events.len(), 2495);
    let (_, metrics) = app.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains(
            r#"switchyard_events_rejected_total{source="web",reason="batch_too_large"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_events_accepted_total{source="web"} 2495"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_answered_2xx_shown_and_not_stored_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let body = json!({"batch": [track("m-dup"), track("m-dup"), track("m-other")]});
    assert_eq!(app.post_json("/v1/batch", &body).await.0, StatusCode::OK);
    assert_eq!(
        app.post_json("/v1/track", &track("m-dup")).await.0,
        StatusCode::OK
    );
    // Concurrent requests carrying the same messageId share group commits: one wins.
    let race = track("m-race");
    let posts = (0..20).map(|_| app.post_json("/v1/track", &race));
    for (status, _) in futures_util::future::join_all(posts).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(app.delivered(3).await.len(), 3);
    let dups = app.recent("status=duplicate").await;
    assert_eq!(
        dups.iter().filter(|e| e["message_id"] == "m-dup").count(),
        2
    );
    assert_eq!(
        dups.iter().filter(|e| e["message_id"] == "m-race").count(),
        19
    );
    assert!(
        dups[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("duplicate"))
    );
    app.stop().await;

    let app = TestApp::start(dir.path()).await;
    assert_eq!(
        app.post_json("/v1/track", &track("m-dup")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.post_json("/v1/track", &track("m-after")).await.0,
        StatusCode::OK
    );
    let events = app.delivered(4).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["m-dup", "m-other", "m-race", "m-after"],
        "nothing delivered twice across the restart"
    );
    let recent = app.recent("limit=3").await;
    assert_eq!(recent[0]["message_id"], "m-after");
    assert_eq!(recent[1]["status"], "duplicate");
    app.stop().await;
}
