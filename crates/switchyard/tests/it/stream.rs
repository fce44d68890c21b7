//! `GET /api/v1/stream`: the debugger's live feed over Server-Sent Events, read by a plain
//! HTTP/1.1 client: every status arrives as it is recorded, a filter by source holds, an
//! unknown source is a 404, and the stream ends when the server drains.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// An open SSE response: what has been read so far.
struct Sse {
    conn: TcpStream,
    text: String,
}

impl Sse {
    async fn open(app: &TestApp, query: &str) -> Sse {
        let addr = app.url.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /api/v1/stream{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut sse = Sse {
            conn,
            text: String::new(),
        };
        // The handler subscribes before it answers: once the head is here, nothing is missed.
        while !sse.text.contains("\r\n\r\n") {
            assert!(sse.read().await > 0, "closed before the head");
        }
        sse
    }

    async fn read(&mut self) -> usize {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.conn.read(&mut buf))
            .await
            .expect("the stream went quiet")
            .unwrap();
        self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        n
    }

    /// `(event, data)` of every complete SSE event read so far.
    fn events(&self) -> Vec<(String, Value)> {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let (mut out, mut name) = (Vec::new(), None);
        for line in body.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ")
                && let (Some(n), Ok(v)) = (name.take(), serde_json::from_str(d))
            {
                out.push((n, v));
            }
        }
        out
    }

    async fn until(&mut self, n: usize) -> Vec<(String, Value)> {
        while self.events().len() < n {
            assert!(self.read().await > 0, "stream ended early: {}", self.text);
        }
        self.events()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_arrives_live_and_the_stream_ends_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let mut sse = Sse::open(&app, "?source=web").await;
    let head = sse.text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");

    let ok = json!({"type": "track", "event": "Live", "userId": "u1", "messageId": "live-1"});
    assert_eq!(app.post_json("/v1/track", &ok).await.0, StatusCode::OK);
    // Answered 200 as Segment does; the debugger is where the rejection shows.
    let bad = json!({"type": "track", "event": "No ids", "messageId": "live-2"});
    app.post_json("/v1/track", &bad).await;
    assert_eq!(app.post_json("/v1/track", &ok).await.0, StatusCode::OK);

    let got = sse.until(3).await;
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["accepted", "rejected", "duplicate"]);
    let (_, first) = &got[0];
    assert_eq!(
        (first["status"].as_str(), first["message_id"].as_str()),
        (Some("accepted"), Some("live-1"))
    );
    assert_eq!(first["source"], "web");
    assert_eq!(
        first["event"]["event"], "Live",
        "the entry carries the event"
    );
    assert!(
        got[1].1["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a rejection says why: {}",
        got[1].1
    );

    let started = Instant::now();
    app.stop().await;
    while sse.read().await > 0 {}
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "an open stream must not hold shutdown to its deadline (5 s)"
    );
}

#[tokio::test]
async fn an_unknown_source_is_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let (status, body) = app.get("/api/v1/stream?source=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    app.stop().await;
}
