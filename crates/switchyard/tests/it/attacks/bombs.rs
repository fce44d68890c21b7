//! Category 3: bombs on `/v1/batch` and `/webhooks/{id}` (pass-through and function
//! sources): gzip and deflate bombs, JSON nesting bombs, many-keys objects, 2,501 elements,
//! and sizes just under and over each limit. Each answers quickly with the documented status
//! or per-event rejection, memory stays bounded, and the server keeps serving.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const ECHO: &str = "async function onRequest(request) {\n  const b = request.json();\n  Segment.track({event: 'Echo', userId: 'u', properties: {keys: Object.keys(b).length}});\n}\n";

/// `(name, path, content-encoding, body, acceptable statuses)`.
type Bomb = (String, &'static str, &'static str, Vec<u8>, Vec<StatusCode>);

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn ev(extra: &str) -> String {
    format!(r#"{{"type":"track","event":"E","userId":"u"{extra}}}"#)
}

/// A JSON object of `n` distinct keys.
fn many_keys(n: usize) -> String {
    let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
    format!("{{{}}}", keys.join(","))
}

fn bombs() -> Vec<Bomb> {
    let too_large = vec![StatusCode::PAYLOAD_TOO_LARGE];
    let refused = vec![StatusCode::BAD_REQUEST, StatusCode::OK];
    // Built once: compressing in a debug build is slow. 32 MiB is 64 times the limit.
    let spaces = vec![b' '; 32 << 20];
    let (gz, zl, raw) = (gzip(&spaces), zlib(&spaces), raw_deflate(&spaces));
    let brackets = gzip(&vec![b'['; 16 << 20]);
    let members = gzip(&vec![b' '; 100_000]).repeat(100);
    let double = gzip(&gz);
    let deep_gz = gzip(nested(256_000).as_bytes());
    let mut out: Vec<Bomb> = Vec::new();
    for path in ["/v1/batch", "/webhooks/pass", "/webhooks/fn"] {
        out.push((
            "gzip bomb, 32 MiB of spaces".into(),
            path,
            "gzip",
            gz.clone(),
            too_large.clone(),
        ));
        out.push((
            "zlib deflate bomb".into(),
            path,
            "deflate",
            zl.clone(),
            too_large.clone(),
        ));
        out.push((
            "raw deflate bomb".into(),
            path,
            "deflate",
            raw.clone(),
            too_large.clone(),
        ));
        out.push((
            "gzip bomb of brackets".into(),
            path,
            "gzip",
            brackets.clone(),
            too_large.clone(),
        ));
        // Many gzip members, each small, together past the limit.
        out.push((
            "100 concatenated gzip members".into(),
            path,
            "gzip",
            members.clone(),
            too_large.clone(),
        ));
        out.push((
            "gzip of gzip".into(),
            path,
            "gzip",
            double.clone(),
            refused.clone(),
        ));
        out.push((
            "truncated gzip".into(),
            path,
            "gzip",
            gzip(b"{\"batch\":[]}")[..12].to_vec(),
            vec![StatusCode::BAD_REQUEST],
        ));
        out.push((
            "unknown encoding".into(),
            path,
            "br",
            b"{}".to_vec(),
            vec![StatusCode::UNSUPPORTED_MEDIA_TYPE],
        ));
        // Nesting: a whole body, an element, and an element property, deep past every parser.
        out.push((
            "nesting bomb, whole body".into(),
            path,
            "",
            nested(200_000).into_bytes(),
            refused.clone(),
        ));
        out.push((
            "nesting bomb in the envelope".into(),
            path,
            "",
            format!(r#"{{"batch":[{}],"context":{}}}"#, ev(""), nested(200_000)).into_bytes(),
            refused.clone(),
        ));
        out.push((
            "nesting bomb in a property".into(),
            path,
            "",
            format!(
                r#"{{"batch":[{}]}}"#,
                ev(&format!(r#","properties":{{"d":{}}}"#, nested(200_000)))
            )
            .into_bytes(),
            refused.clone(),
        ));
        out.push((
            "gzipped nesting bomb at the limit".into(),
            path,
            "gzip",
            deep_gz.clone(),
            refused.clone(),
        ));
        out.push((
            "many keys in one event (60,000)".into(),
            path,
            "",
            format!(
                r#"{{"batch":[{}]}}"#,
                ev(&format!(r#","properties":{}"#, many_keys(60_000)))
            )
            .into_bytes(),
            vec![
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::PAYLOAD_TOO_LARGE,
            ],
        ));
        out.push((
            "many keys in the envelope context (50,000) for 100 events".into(),
            path,
            "",
            format!(
                r#"{{"context":{},"batch":[{}]}}"#,
                many_keys(50_000),
                vec![ev(""); 100].join(",")
            )
            .into_bytes(),
            vec![
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::PAYLOAD_TOO_LARGE,
            ],
        ));
        out.push((
            "a batch of 200,000 tiny elements".into(),
            path,
            "",
            format!(r#"{{"batch":[{}]}}"#, vec!["1"; 200_000].join(",")).into_bytes(),
            vec![StatusCode::OK, StatusCode::BAD_REQUEST],
        ));
        out.push((
            "a string of 500,000 escapes".into(),
            path,
            "",
            format!(
                r#"{{"batch":[{}]}}"#,
                ev(&format!(
                    r#","properties":{{"s":"{}"}}"#,
                    "\\u0041".repeat(80_000)
                ))
            )
            .into_bytes(),
            vec![StatusCode::OK, StatusCode::BAD_REQUEST],
        ));
    }
    out
}

fn yaml(dir: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
functions: {{ workers: 1, deadline: 3s }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - {{ id: pass, type: webhook, public: true }}
  - {{ id: fn, type: webhook, public: true, function: "{dir}/echo.js" }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_answer_quickly_and_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("echo.js"), ECHO).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;
    let auth = basic(KEY);
    let bombs = bombs();
    let before = rss_kib();
    let mut failures = Vec::new();
    for (name, path, encoding, body, want) in &bombs {
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        if !encoding.is_empty() {
            headers.push(("content-encoding", encoding));
        }
        let started = Instant::now();
        let (status, resp) = app.post_with(path, &headers, body).await;
        let took = started.elapsed();
        if !want.contains(&status) {
            failures.push(format!(
                "{path} {name} ({} wire bytes): {status} {resp}",
                body.len()
            ));
        }
        if took > Duration::from_secs(10) {
            failures.push(format!("{path} {name}: took {took:?}"));
        }
        if app.get("/healthz").await.0 != StatusCode::OK {
            failures.push(format!("{path} {name}: the server stopped serving"));
        }
    }
    let grown = rss_kib().saturating_sub(before);
    eprintln!("bombs: {} tried; RSS grew {} MiB", bombs.len(), grown >> 10);
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        bombs.len(),
        failures.join("\n")
    );
    // The test process holds the bombs themselves (~ tens of MiB); the server may add little.
    assert!(grown < 512 << 10, "RSS grew {} MiB", grown >> 10);
    app.stop().await;
}

/// Just under and just over each size limit, and the 2,501st element.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_at_each_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("echo.js"), ECHO).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;
    let auth = basic(KEY);
    // A body of exactly `len` bytes: one event padded with a string property.
    let body_of = |len: usize, mid: &str| -> Vec<u8> {
        let head = format!(
            r#"{{"batch":[{{"type":"track","event":"E","userId":"u","messageId":"{mid}","properties":{{"p":""#
        );
        let tail = r#""}}]}"#;
        let pad = len - head.len() - tail.len();
        format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
    };
    let post = |path: &'static str, body: Vec<u8>, enc: &'static str| {
        let app = &app;
        let auth = auth.clone();
        async move {
            let mut h = vec![("authorization", auth.as_str())];
            if !enc.is_empty() {
                h.push(("content-encoding", enc));
            }
            let body = match enc {
                "gzip" => gzip(&body),
                _ => body,
            };
            app.post_with(path, &h, &body).await
        }
    };
    let mut failures = Vec::new();
    for (path, limit) in [("/v1/batch", 512_000usize), ("/webhooks/pass", 512 << 10)] {
        for enc in ["", "gzip"] {
            let (s, r) = post(path, body_of(limit, &format!("lim-{path}-{enc}")), enc).await;
            // At the limit the request is read; the one event is over 32 KiB and rejected alone.
            if s != StatusCode::OK {
                failures.push(format!("{path} {enc} {limit} bytes: {s} {r}"));
            }
            let (s, r) = post(path, body_of(limit + 1, "over"), enc).await;
            if s != StatusCode::PAYLOAD_TOO_LARGE {
                failures.push(format!("{path} {enc} {} bytes: {s} {r}", limit + 1));
            }
        }
    }
    // One event at 32,768 bytes is accepted, at 32,769 rejected on its own.
    let event_of = |len: usize, mid: &str| -> String {
        let head = format!(
            r#"{{"type":"track","event":"E","userId":"u","messageId":"{mid}","properties":{{"p":""#
        );
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    for (path, source) in [("/v1/batch", "web"), ("/webhooks/pass", "pass")] {
        let tag = path.replace('/', "");
        let at = event_of(32_768, &format!("at-{tag}"));
        let over = event_of(32_769, &format!("over-{tag}"));
        let (s, r) = post(
            path,
            format!(r#"{{"batch":[{at},{over}]}}"#).into_bytes(),
            "",
        )
        .await;
        if s != StatusCode::OK {
            failures.push(format!("{path} events at the limit: {s} {r}"));
        }
        let rejected = app.recent_of(source, "status=rejected&limit=1000").await;
        let reason = |mid: &str| {
            rejected
                .iter()
                .find(|r| r["message_id"] == mid)
                .map(|r| r["reason"].as_str().unwrap_or("").to_owned())
        };
        if !reason(&format!("over-{tag}")).is_some_and(|r| r.starts_with("event_too_large")) {
            failures.push(format!(
                "{source}: the 32,769-byte event is not rejected as too large"
            ));
        }
        if reason(&format!("at-{tag}")).is_some() {
            failures.push(format!("{source}: the 32,768-byte event was rejected"));
        }
        // 2,501 elements: the first 2,500 accepted, the last rejected with the reason.
        let batch: Vec<Value> = (0..2501)
            .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("b-{tag}-{i}")}))
            .collect();
        let (s, r) = post(path, json!({"batch": batch}).to_string().into_bytes(), "").await;
        if s != StatusCode::OK {
            failures.push(format!("{path} 2,501 elements: {s} {r}"));
        }
        let last = app.recent_of(source, "limit=1").await;
        let last = last.first().cloned().unwrap_or_default();
        if last["status"] != "rejected"
            || !last["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("batch_too_large"))
        {
            failures.push(format!("{source}: the 2,501st element: {last}"));
        }
        let accepted = app.recent_of(source, "status=accepted&limit=1000").await;
        if accepted
            .iter()
            .any(|r| r["message_id"] == format!("b-{tag}-2500"))
        {
            failures.push(format!("{source}: the 2,501st element was accepted"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

/// Regression: each element past the 2,500th was logged as a rejection of its own, so a
/// 510 KB body of 255,000 `1`s wrote 29 MB to the log (57x) and took seconds. Past the
/// limit they are one rejected entry now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_batch_of_tiny_elements_is_not_amplified_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("echo.js"), ECHO).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;
    let body = format!(r#"{{"batch":[{}]}}"#, vec!["1"; 255_000].join(",")).into_bytes();
    for (path, source) in [("/v1/batch", "web"), ("/webhooks/pass", "pass")] {
        let before = app.get("/api/v1/inspect").await.1["log"]["bytes"]
            .as_u64()
            .unwrap();
        let (status, resp) = app
            .post_with(path, &[("authorization", &basic(KEY))], &body)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {resp}");
        let after = app.get("/api/v1/inspect").await.1["log"]["bytes"]
            .as_u64()
            .unwrap();
        assert!(
            after - before < 2 << 20,
            "{path}: a {} byte body grew the log by {} bytes",
            body.len(),
            after - before
        );
        let last = &app.recent_of(source, "limit=1").await[0];
        assert!(
            last["reason"]
                .as_str()
                .is_some_and(|r| r.contains("252500 more were rejected")),
            "{last}"
        );
    }
    let (_, resp) = app.post_with("/webhooks/pass", &[], &body).await;
    assert_eq!(resp["received"], 255_000, "{resp}");
    app.stop().await;
}
