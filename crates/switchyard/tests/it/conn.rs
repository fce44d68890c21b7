//! Connection limits of the listener, through raw sockets: a client that stalls in its
//! headers or its body, or idles on a keep-alive connection, is cut off; past
//! `max_connections` new connections wait until one closes; keep-alive still works.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::*;

/// Long enough for a loaded machine; the timeouts under test are 500 ms.
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path, server: &str) -> TestApp {
    TestApp::start_with(dir, &config_yaml(dir, server)).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Reads until the server closes the connection (EOF or reset). `Err` with what was read if
/// it is still open at the deadline.
async fn read_to_close(conn: &mut TcpStream, deadline: Instant) -> Result<String, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return Err(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Reads one response with a `Content-Length` body; panics past `PATIENCE`.
async fn read_response(conn: &mut TcpStream) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no whole response in time; got {text:?}"))
            .expect("read");
        assert!(n > 0, "closed mid-response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), ", header_read_timeout: 500ms").await;

    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial.write_all(b"POST /v1/tra").await.unwrap();
    // Slowloris: a header line every 100 ms must not reset the clock.
    let mut trickle = connect(&app).await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        for i in 0..100 {
            let line = format!("X-Slow-{i}: 1\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let deadline = Instant::now() + PATIENCE;
    for (name, conn) in [("silent", &mut silent), ("partial", &mut partial)] {
        let got = read_to_close(conn, deadline).await;
        assert!(got.is_ok(), "{name} connection still open: {got:?}");
    }
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout_at(deadline, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickled head held the connection open");
    trickler.abort();
    app.stop().await;
}

#[tokio::test]
async fn a_slow_body_gets_408_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), ", body_read_timeout: 500ms").await;
    let mut conn = connect(&app).await;
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        basic(KEY)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(br#"{"type":"t"#).await.unwrap();

    let got = read_to_close(&mut conn, Instant::now() + PATIENCE).await;
    let text = got.unwrap_or_else(|open| panic!("still open after the body timeout: {open:?}"));
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");

    // The server itself is fine, and nothing was stored.
    assert_eq!(app.get("/healthz").await.0, hyper::StatusCode::OK);
    assert!(app.recent("").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn keep_alive_outlives_header_read_timeout_but_not_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(
        dir.path(),
        ", header_read_timeout: 300ms, idle_timeout: 60s",
    )
    .await;
    let mut conn = connect(&app).await;
    conn.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: an SDK's pooled connection must survive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    conn.write_all(get("/readyz").as_bytes()).await.unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let app = start(
        dir.path(),
        ", header_read_timeout: 60s, idle_timeout: 500ms",
    )
    .await;
    let mut conn = connect(&app).await;
    conn.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
    let got = read_to_close(&mut conn, Instant::now() + PATIENCE).await;
    assert_eq!(
        got,
        Ok(String::new()),
        "an idle keep-alive connection is closed"
    );
    app.stop().await;
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), ", max_connections: 5").await;
    // Five keep-alive connections, each proven served (so each holds a slot).
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut conn = connect(&app).await;
        conn.write_all(get("/healthz").as_bytes()).await.unwrap();
        assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    // The sixth completes its TCP handshake in the kernel's backlog but is not served...
    let mut sixth = connect(&app).await;
    sixth.write_all(get("/healthz").as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(500), sixth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the sixth connection was served while five were open: {early:?}"
    );
    // ...until one of the five closes.
    drop(held.remove(0));
    let answer = read_response(&mut sixth).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}
