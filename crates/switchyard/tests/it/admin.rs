use hyper::{Method, StatusCode};
use serde_json::json;
use switchyard::cli::client;

use crate::harness::*;

#[tokio::test]
async fn health_readiness_metrics_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(
        (status, ready["ready"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    for i in 0..5 {
        let e =
            json!({"type": "track", "event": "e", "userId": "u", "messageId": format!("p-{i}")});
        app.post_json("/v1/track", &e).await;
    }
    let (_, page1) = app.get("/api/v1/sources/web/events?limit=2").await;
    let ids: Vec<_> = page1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["p-4", "p-3"]);
    let next = page1["next"].as_u64().expect("a next cursor");
    let (_, page2) = app
        .get(&format!(
            "/api/v1/sources/web/events?limit=10&before={next}"
        ))
        .await;
    assert_eq!(page2["events"].as_array().unwrap().len(), 3);
    assert!(page2["next"].is_null());
    let e = &page1["events"][0];
    for key in [
        "status",
        "reason",
        "received_at",
        "source",
        "environment",
        "message_id",
        "event",
    ] {
        assert!(e.get(key).is_some(), "{key} missing in {e}");
    }
    assert_eq!(
        app.get("/api/v1/sources/nope/events").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/sources/web/events?limit=5000").await.0,
        StatusCode::BAD_REQUEST
    );
    app.delivered(5).await;
    app.wait_drained().await;
    // `inspect` reads the saved cursor; the gauge follows when the runner's task resumes, a
    // moment later on a loaded machine: poll for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let names = [
        "switchyard_events_accepted_total",
        "switchyard_log_fsync_seconds_bucket",
        "switchyard_ingest_bytes_total",
        "switchyard_destination_backlog_events{destination=\"archive\"} 0",
    ];
    loop {
        let (_, metrics) = app.get("/metrics").await;
        let m = metrics.as_str().unwrap().to_owned();
        let missing: Vec<&str> = names.iter().copied().filter(|n| !m.contains(n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} not in metrics:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, report) = app.get("/api/v1/inspect").await;
    assert_eq!(report["log"]["next_seq"], 5);
    assert_eq!(report["destinations"][0]["backlog"], 0);
    assert_eq!(report["integrity"]["ok"], true);
    app.stop().await;
}

#[tokio::test]
async fn admin_routes_refuse_foreign_hosts_and_origins_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    let get = |host: &str, origin: Option<&str>| {
        let mut req =
            hyper::Request::get(format!("{}/api/v1/inspect", app.url)).header("host", host);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    assert_eq!(
        client
            .request(get("evil.example:80", None))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        client
            .request(get(&addr, Some("http://evil.example")))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        client
            .request(get(&addr, Some(&app.url)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn admin_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(dir.path(), ", admin_token: s3cret-token");
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let url = format!("{}/metrics", app.url);
    assert_eq!(
        client::call(Method::GET, &url, None, None)
            .await
            .unwrap()
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client::call(Method::GET, &url, Some("Bearer wrong"), None)
            .await
            .unwrap()
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client::call(Method::GET, &url, Some("Bearer s3cret-token"), None)
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    // Ingest and health stay open.
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_on_ingest_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let preflight = |path: &str| {
        hyper::Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{}{path}", app.url))
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-retry-count",
            )
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let resp = client.request(preflight("/v1/t")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(
        resp.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let resp = client.request(preflight("/api/v1/inspect")).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

#[tokio::test]
async fn low_disk_answers_429_with_retry_after_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        config_yaml(dir.path(), "").replace("min_free_disk: 1MiB", "min_free_disk: 1000000TiB");
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let body =
        serde_json::to_vec(&json!({"batch": [{"type": "track", "event": "e", "userId": "u"}]}))
            .unwrap();
    let r = client::call(
        Method::POST,
        &format!("{}/v1/batch", app.url),
        Some(&basic(KEY)),
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let err: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(err["code"], "disk_full");
    let (_, report) = app.get("/api/v1/inspect").await;
    assert_eq!(report["log"]["next_seq"], 0, "nothing was stored");
    app.stop().await;
}

#[tokio::test]
async fn consumed_segments_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(dir.path(), "").replace(
        "sources:",
        "storage: { segment_bytes: 4KiB, retention: { max_age: 0s } }\nsources:",
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    for i in 0..40 {
        let batch: Vec<_> = (0..5).map(|j| json!({"type": "track", "event": "e", "userId": "u", "messageId": format!("r-{i}-{j}"), "properties": {"pad": "x".repeat(300)}})).collect();
        assert_eq!(
            app.post_json("/v1/batch", &json!({"batch": batch})).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(app.delivered(200).await.len(), 200);
    app.wait_drained().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        if report["log"]["segments"].as_u64().is_some_and(|s| s <= 2) {
            assert!(
                report["log"]["bytes"].as_u64().unwrap() < 10_000,
                "{report}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segments were never reclaimed: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Dedupe still knows the keys whose log segments are gone.
    let again = json!({"type": "track", "event": "e", "userId": "u", "messageId": "r-0-0"});
    assert_eq!(app.post_json("/v1/track", &again).await.0, StatusCode::OK);
    let dups = app.recent("status=duplicate").await;
    assert_eq!(dups.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn test_mapping_api_answers_like_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let body = json!({"subscribe": "event = \"Order Completed\" and properties.total >= 100",
                      "mapping": {"total": {"@path": "$.properties.total"}, "who": {"@template": "{{userId}}"}},
                      "event": {"type": "track", "event": "Order Completed", "userId": "u9", "properties": {"total": 120}}});
    let r = client::call(
        Method::POST,
        &format!("{}/api/v1/test-mapping", app.url),
        None,
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        got,
        json!({"matched": true, "payload": {"total": 120, "who": "u9"}, "error": null})
    );
    let bad = json!({"subscribe": "type = \"track\" and", "event": {}});
    let r = client::call(
        Method::POST,
        &format!("{}/api/v1/test-mapping", app.url),
        None,
        Some(serde_json::to_vec(&bad).unwrap()),
    )
    .await
    .unwrap();
    let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (got["matched"].as_bool(), got["payload"].is_null()),
        (Some(false), true)
    );
    assert!(got["error"].as_str().unwrap().contains("dangling"));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let errors = &doc["components"]["schemas"]["Error"]["required"];
    assert_eq!(errors, &serde_json::json!(["error", "code", "message"]));
    assert!(doc["paths"]["/api/v1/stream"]["get"].is_object());
    app.stop().await;
}
