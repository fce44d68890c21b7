//! Size limits at ingest: the per-call limit on single-event calls, and compressed bodies
//! over the request limit.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use hyper::StatusCode;
use serde_json::json;

use crate::harness::*;

/// Issue 11 item 1: a single-event call over 32 KB answers 400 `event_too_large` (Segment's
/// HTTP API: "400 for large payloads"), is logged and shown as rejected, and stores no
/// event; in a batch the same element is rejected on its own and the request answers 200.
#[tokio::test]
async fn a_single_call_over_32kb_is_400_and_a_batch_element_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let big = |mid: &str| json!({"type": "track", "event": "E", "userId": "u", "messageId": mid, "properties": {"pad": "x".repeat(33_000)}});
    for (path, mid) in [("/v1/track", "huge-track"), ("/v1/t", "huge-t")] {
        let (status, err) = app.post_json(path, &big(mid)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
        assert_eq!(err["code"], "event_too_large", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("the limit is 32768"), "{message}");
    }
    // Just under the limit is accepted.
    let mut fits = big("fits");
    let over = serde_json::to_vec(&fits).unwrap().len() - 32_768;
    fits["properties"]["pad"] = json!("x".repeat(33_000 - over));
    let (status, body) = app.post_json("/v1/track", &fits).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let batch = json!({"batch": [big("in-batch"), {"type": "track", "event": "E", "userId": "u", "messageId": "small"}]});
    let (status, body) = app.post_json("/v1/batch", &batch).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let rejected = app.recent("status=rejected").await;
    let ids: Vec<&str> = rejected
        .iter()
        .filter_map(|e| e["message_id"].as_str())
        .collect();
    for mid in ["huge-track", "huge-t", "in-batch"] {
        assert!(ids.contains(&mid), "{mid} is shown as rejected: {ids:?}");
    }
    let delivered = app.delivered(2).await;
    let got: Vec<&str> = delivered
        .iter()
        .filter_map(|e| e["messageId"].as_str())
        .collect();
    assert_eq!(got, ["fits", "small"]);
    app.stop().await;
}

/// Regression: an oversized zlib `deflate` body answered 400 (the raw-deflate fallback
/// replaced the 413); it answers 413 `payload_too_large` like gzip, raw deflate too.
#[tokio::test]
async fn oversized_deflate_answers_413_like_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let auth = basic(KEY);
    let spaces = vec![b' '; 20 << 20];
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(&spaces).unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
    raw.write_all(&spaces).unwrap();
    for (what, body) in [
        ("zlib", zlib.finish().unwrap()),
        ("raw", raw.finish().unwrap()),
    ] {
        let (status, err) = app
            .post_with(
                "/v1/batch",
                &[("authorization", &auth), ("content-encoding", "deflate")],
                &body,
            )
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
            "{what} deflate: {err}"
        );
    }
    let (status, err) = app
        .post_with(
            "/v1/batch",
            &[("authorization", &auth), ("content-encoding", "deflate")],
            b"plainly not deflate",
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_encoding")),
        "{err}"
    );
    app.stop().await;
}
