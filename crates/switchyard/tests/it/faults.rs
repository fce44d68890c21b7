//! Destination faults, end to end through HTTP against real local servers: a slow receiver,
//! connection resets, 429 with `Retry-After`, 500s until `retry.max_age`, a 2xx that comes
//! after the timeout, a redirect to a private address, a TLS error, and dead destinations
//! past their backlog caps. For each: a healthy destination on the same server keeps
//! delivering and ingest keeps answering 200, retries follow their schedule (read from the
//! delivery log), and every event ends delivered or dead-lettered with a reason.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::cli::client;
use tokio::io::AsyncReadExt;

use crate::harness::*;
use crate::receiver::{Receiver, Reply};

/// One attempt from the delivery log.
#[derive(Debug, Clone)]
struct Attempt {
    message_id: String,
    /// When the attempt finished, and how long it took.
    at_ms: i64,
    latency_ms: i64,
    outcome: String,
    status: Option<u64>,
    error: Option<String>,
}

impl Attempt {
    fn started_ms(&self) -> i64 {
        self.at_ms - self.latency_ms
    }
}

fn ms(t: &str) -> i64 {
    let t = switchyard::event::timestamp::parse(t).expect("an RFC 3339 time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A config with a `healthy` webhook destination and a `faulty` one (`faulty` holds its
/// extra keys, indented by four spaces), both reading from the start of the log.
fn yaml(dir: &Path, healthy: &Receiver, faulty_url: &str, faulty: &str, extra: &str) -> String {
    let port = faulty_url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or("1");
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{hp}", "127.0.0.1:{port}"] }}
{extra}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: healthy
    type: webhook
    start: earliest
    delivery: {{ timeout: 2s }}
    mappings: [{{ name: all, subscribe: 'type = "track"', url: "{healthy}/healthy" }}]
  - id: faulty
    type: webhook
    start: earliest
{faulty}
    mappings: [{{ name: all, subscribe: 'type = "track"', url: "{faulty_url}" }}]
"#,
        dir = dir.display(),
        hp = healthy.port,
        healthy = healthy.url,
    )
}

fn track(id: &str, pad: usize) -> Value {
    json!({"type": "track", "event": "Ping", "userId": "u", "messageId": id, "properties": {"pad": "x".repeat(pad)}})
}

/// Posts `n` events in batches of `per`, checking every answer is a prompt 200; returns
/// their messageIds.
async fn send(app: &TestApp, tag: &str, n: usize, per: usize, pad: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    for chunk in ids.chunks(per) {
        let batch: Vec<Value> = chunk.iter().map(|id| track(id, pad)).collect();
        let t = Instant::now();
        let (status, body) = app.post_json("/v1/batch", &json!({"batch": batch})).await;
        assert_eq!(status, StatusCode::OK, "ingest keeps answering 200: {body}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "ingest stays prompt: {:?}",
            t.elapsed()
        );
    }
    ids
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `secs`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn attempts(app: &TestApp, dest: &str) -> Vec<Attempt> {
    let (status, body) = app
        .get(&format!(
            "/api/v1/destinations/{dest}/deliveries?limit=1000"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut out: Vec<Attempt> = body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Attempt {
            message_id: a["message_id"].as_str().unwrap().to_owned(),
            at_ms: ms(a["at"].as_str().unwrap()),
            latency_ms: a["latency_ms"].as_i64().unwrap(),
            outcome: a["outcome"].as_str().unwrap().to_owned(),
            status: a["status"].as_u64(),
            error: a["error"].as_str().map(str::to_owned),
        })
        .collect();
    out.reverse();
    out
}

/// The delivery log of `dest` once it holds the final attempt (delivered or dead-lettered)
/// of each of `ids`: it is written a moment after the outcome, so poll until then.
async fn logged(app: &TestApp, dest: &str, ids: &[String]) -> Vec<Attempt> {
    eventually(
        "the final attempt of each event in the delivery log",
        10,
        || async {
            let log = attempts(app, dest).await;
            let done = by_message(&log);
            let all = ids.iter().all(|id| {
                done.get(id)
                    .and_then(|t| t.last())
                    .is_some_and(|a| a.outcome == "delivered" || a.outcome == "dead_letter")
            });
            all.then_some(log)
        },
    )
    .await
}

/// Attempts per messageId, oldest first.
fn by_message(list: &[Attempt]) -> BTreeMap<String, Vec<Attempt>> {
    let mut m: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    for a in list {
        m.entry(a.message_id.clone()).or_default().push(a.clone());
    }
    m
}

/// Every dead letter of `dest` (up to 1000 a page).
async fn dead_letters(app: &TestApp, dest: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let (status, body) = app
            .get(&format!(
                "/api/v1/destinations/{dest}/dead-letters?limit=1000{before}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        out.extend(body["dead_letters"].as_array().unwrap().iter().cloned());
        match body["next"].as_u64() {
            Some(n) => before = format!("&before={n}"),
            None => return out,
        }
    }
}

fn ids_of(dead: &[Value], reason: &str) -> HashSet<String> {
    dead.iter()
        .filter(|d| d["reason"] == reason)
        .map(|d| d["message_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The healthy destination got every event promptly (called right after they were sent),
/// while `faulty` had not delivered any.
async fn healthy_first(app: &TestApp, healthy: &Receiver, ids: &[String]) {
    let sent = Instant::now();
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    healthy
        .wait_for("every event at the healthy destination", |g| {
            let seen: HashSet<String> = g
                .iter()
                .filter(|x| x.path == "/healthy")
                .filter_map(|x| x.json()["messageId"].as_str().map(str::to_owned))
                .collect();
            want.iter().all(|id| seen.contains(*id))
        })
        .await;
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the healthy destination was slowed down: {:?}",
        sent.elapsed()
    );
    let faulty = attempts(app, "faulty").await;
    assert!(
        faulty.iter().all(|a| a.outcome != "delivered"),
        "the faulty destination was still failing when the healthy one had everything: {faulty:?}"
    );
}

/// Each retry began no later than its backoff cap (plus `slack_ms` for a loaded machine)
/// after the attempt before it finished: retries are woken by the clock, on schedule.
fn assert_on_schedule(tries: &[Attempt], initial_ms: i64, max_ms: i64, slack_ms: i64) {
    for (k, pair) in tries.windows(2).enumerate() {
        let delay = pair[1].started_ms() - pair[0].at_ms;
        let cap = (initial_ms << k.min(20)).min(max_ms);
        assert!(
            delay >= -5 && delay <= cap + slack_ms,
            "retry {} began {delay} ms after the previous attempt (cap {cap} ms): {tries:?}",
            k + 1
        );
    }
}

/// Waits until every one of `ids` is, at `faulty`, delivered or dead-lettered with a reason;
/// returns (delivered, dead letters by messageId).
async fn all_settled(
    app: &TestApp,
    ids: &[String],
    secs: u64,
) -> (HashSet<String>, BTreeMap<String, Value>) {
    eventually("every event delivered or dead-lettered", secs, || async {
        let delivered: HashSet<String> = attempts(app, "faulty")
            .await
            .into_iter()
            .filter(|a| a.outcome == "delivered")
            .map(|a| a.message_id)
            .collect();
        let dead: BTreeMap<String, Value> = dead_letters(app, "faulty")
            .await
            .into_iter()
            .map(|d| (d["message_id"].as_str().unwrap().to_owned(), d))
            .collect();
        let settled = ids
            .iter()
            .all(|id| delivered.contains(id) || dead.contains_key(id));
        settled.then_some((delivered, dead))
    })
    .await
}

const SCHEDULE: &str = "    retry: { max_age: 3s, initial_backoff: 100ms, max_backoff: 400ms }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_times_out_is_retried_on_schedule_and_dead_lettered() {
    let (dir, healthy, slow) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    slow.respond(|_, _| Reply::status(200).after(Duration::from_millis(1500)));
    let faulty = format!("    delivery: {{ timeout: 300ms }}\n{SCHEDULE}");
    let url = format!("{}/slow", slow.url);
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "slow", 5, 5, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 15).await;
    assert!(delivered.is_empty(), "every attempt timed out");
    for id in &ids {
        let reason = dead[id]["reason"].as_str().unwrap();
        assert_eq!(
            reason, "retry.max_age (3s) exceeded; last attempt: timed out",
            "{id}"
        );
        let age = ms(dead[id]["dead_at"].as_str().unwrap())
            - ms(dead[id]["received_at"].as_str().unwrap());
        assert!(
            (3000..3000 + 400 + 300 + 1500).contains(&age),
            "retry.max_age counts from receivedAt: {age} ms"
        );
    }
    for (id, tries) in by_message(&logged(&app, "faulty", &ids).await) {
        assert!(tries.len() >= 3, "{id} was retried: {tries:?}");
        assert!(
            tries.iter().all(|a| a.error.as_deref() == Some("timed out")
                && a.latency_ms >= 300
                && a.latency_ms < 1000),
            "each attempt gives up at the 300 ms timeout: {tries:?}"
        );
        assert_eq!(tries.last().unwrap().outcome, "dead_letter");
        assert_on_schedule(&tries, 100, 400, 500);
    }
    // The receiver saw every attempt (it was only slow): the same Idempotency-Key each time.
    let got = slow.received();
    for id in &ids {
        let keys: Vec<_> = got
            .iter()
            .filter(|x| x.json()["messageId"] == id.as_str())
            .map(|x| x.header("idempotency-key").unwrap().to_owned())
            .collect();
        assert!(keys.len() >= 3 && keys.iter().all(|k| k == id), "{keys:?}");
    }
    app.stop().await;
}

/// A server that reads the request, then resets the connection (RST, not FIN).
async fn resetting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_are_retried_on_schedule_and_dead_lettered_with_the_reason() {
    let (dir, healthy) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let (port, connections) = resetting_server().await;
    let url = format!("http://127.0.0.1:{port}/reset");
    let faulty = format!("    delivery: {{ timeout: 1s }}\n{SCHEDULE}");
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "rst", 5, 5, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 15).await;
    assert!(delivered.is_empty());
    let reason = dead[&ids[0]]["reason"].as_str().unwrap().to_owned();
    eprintln!("connection reset dead letter: {reason}");
    assert!(
        reason.starts_with("retry.max_age (3s) exceeded; last attempt: network error: ")
            && (reason.contains("reset") || reason.contains("closed")),
        "{reason}"
    );
    for (_, tries) in by_message(&logged(&app, "faulty", &ids).await) {
        assert!(tries.len() >= 3, "{tries:?}");
        assert_on_schedule(&tries, 100, 400, 500);
    }
    assert!(connections.load(Ordering::SeqCst) >= 15);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_not_retried_sooner_than_it_says() {
    let (dir, healthy, limited) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    // Refused twice with Retry-After: 2, then accepted.
    limited.respond(|this, all| {
        let key = this.header("idempotency-key");
        let seen = all
            .iter()
            .filter(|x| x.header("idempotency-key") == key)
            .count();
        if seen <= 2 {
            Reply::status(429).header("retry-after", "2")
        } else {
            Reply::status(200)
        }
    });
    let url = format!("{}/limited", limited.url);
    let faulty = "    delivery: { timeout: 1s }\n    retry: { max_age: 1h, initial_backoff: 50ms, max_backoff: 100ms }";
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, faulty, "")).await;
    let ids = send(&app, "ra", 3, 3, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 20).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(delivered.len(), 3);
    for (id, tries) in by_message(&logged(&app, "faulty", &ids).await) {
        let outcomes: Vec<_> = tries.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["retry", "retry", "delivered"], "{id}");
        assert!(tries[..2].iter().all(|a| a.status == Some(429)));
        for pair in tries.windows(2) {
            let waited = pair[1].started_ms() - pair[0].at_ms;
            // Without Retry-After the backoff here is at most 100 ms.
            assert!(
                (1995..3000).contains(&waited),
                "{id}: the next attempt began {waited} ms after a 429 with Retry-After: 2"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_500s_dead_letter_at_retry_max_age_with_the_reason() {
    let (dir, healthy, failing) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    failing.answer(500);
    let url = format!("{}/failing", failing.url);
    let faulty = format!("    delivery: {{ timeout: 1s }}\n{SCHEDULE}");
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "five", 8, 4, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 15).await;
    assert!(delivered.is_empty());
    for id in &ids {
        let d = &dead[id];
        assert_eq!(
            d["reason"], "retry.max_age (3s) exceeded; last attempt: HTTP 500",
            "{d}"
        );
        assert_eq!(d["last_status"], 500);
        assert!(d["attempts"].as_u64().unwrap() >= 5, "{d}");
        assert!(
            d["request"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/failing")),
            "the dead letter keeps its request for a replay: {d}"
        );
    }
    let log = logged(&app, "faulty", &ids).await;
    for (_, tries) in by_message(&log) {
        assert!(tries.iter().all(|a| a.status == Some(500)));
        assert_on_schedule(&tries, 100, 400, 500);
    }
    // The failed attempts (every one logged) match what the receiver saw.
    assert_eq!(log.len(), failing.received().len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_after_the_timeout_is_a_failure_and_the_retry_is_a_duplicate_with_the_same_key() {
    let (dir, healthy, late) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    // The first request of each event is answered 200 — after the sender gave up.
    late.respond(|this, all| {
        let key = this.header("idempotency-key");
        let first = all
            .iter()
            .filter(|x| x.header("idempotency-key") == key)
            .count()
            == 1;
        let ok = Reply::status(200);
        if first {
            ok.after(Duration::from_millis(800))
        } else {
            ok
        }
    });
    let url = format!("{}/late", late.url);
    let faulty = format!("    delivery: {{ timeout: 300ms }}\n{SCHEDULE}");
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "late", 4, 4, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 15).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(delivered.len(), 4);
    for (id, tries) in by_message(&logged(&app, "faulty", &ids).await) {
        let outcomes: Vec<_> = tries.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["retry", "delivered"], "{id}: {tries:?}");
        assert_eq!(tries[0].error.as_deref(), Some("timed out"));
        assert_on_schedule(&tries, 100, 400, 500);
    }
    // The receiver processed each event twice: it must dedupe by Idempotency-Key.
    let got = late.received();
    for id in &ids {
        let copies: Vec<_> = got
            .iter()
            .filter(|x| x.header("idempotency-key") == Some(id.as_str()))
            .collect();
        assert_eq!(copies.len(), 2, "{id}");
        assert_eq!(copies[0].body, copies[1].body, "the same bytes both times");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_private_address_is_not_followed_and_dead_letters_with_the_reason() {
    let (dir, healthy, redirecting, trap) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let target = format!("http://127.0.0.1:{}/internal?token=s3cret", trap.port);
    let location = target.clone();
    redirecting.respond(move |_, _| Reply::status(302).header("location", location.clone()));
    let url = format!("{}/moved", redirecting.url);
    let faulty = format!("    delivery: {{ timeout: 1s }}\n{SCHEDULE}");
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "redir", 3, 3, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 10).await;
    assert!(delivered.is_empty());
    for id in &ids {
        let reason = dead[id]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!(
                "HTTP 302 (redirects are not followed; Location: http://127.0.0.1:{}/internal?token=",
                trap.port
            )) && !reason.contains("s3cret"),
            "a clear reason, the Location's secrets redacted: {reason}"
        );
        assert_eq!(dead[id]["attempts"], 1, "a redirect is permanent");
    }
    assert!(
        trap.received().is_empty(),
        "nothing reached the private address"
    );
    assert_eq!(redirecting.received().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_error_is_retried_then_dead_lettered_with_the_reason() {
    let (dir, healthy, plain) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    // https:// to a port that speaks plain HTTP (egress allows the port).
    let url = format!("https://127.0.0.1:{}/tls", plain.port);
    let faulty = format!("    delivery: {{ timeout: 1s }}\n{SCHEDULE}");
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &healthy, &url, &faulty, "")).await;
    let ids = send(&app, "tls", 3, 3, 10).await;
    healthy_first(&app, &healthy, &ids).await;
    let (delivered, dead) = all_settled(&app, &ids, 15).await;
    assert!(delivered.is_empty());
    let reason = dead[&ids[0]]["reason"].as_str().unwrap().to_owned();
    eprintln!("TLS dead letter: {reason}");
    assert!(
        reason.starts_with("retry.max_age (3s) exceeded; last attempt: network error: ")
            && reason.contains("InvalidContentType"),
        "{reason}"
    );
    for (_, tries) in by_message(&logged(&app, "faulty", &ids).await) {
        assert!(tries.len() >= 3);
        assert_on_schedule(&tries, 100, 400, 500);
    }
    assert!(
        plain.received().is_empty(),
        "no request was ever sent in clear"
    );
    app.stop().await;
}

/// Bytes of the log's segment files, and whether the first one is still there.
fn log_size(dir: &Path) -> (u64, bool) {
    let mut total = 0;
    let mut first = false;
    for e in std::fs::read_dir(dir.join("log")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
            first |= name == "00000000000000000000.log";
        }
    }
    (total, first)
}

async fn metric(app: &TestApp, line_start: &str) -> u64 {
    let (_, text) = app.get("/metrics").await;
    text.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn inspect_of(app: &TestApp, dest: &str) -> Value {
    let (_, report) = app.get("/api/v1/inspect").await;
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dest)
        .unwrap()
        .clone()
}

/// Sends `n` events of ~800 bytes, 20 to a request, one request every 100 ms, sampling the
/// log's size; returns the ids and the largest size seen in the middle third and in the last
/// third of the run (a log that keeps growing is about 1.5 times larger in the last).
async fn flood(app: &TestApp, tag: &str, n: usize) -> (Vec<String>, u64, u64) {
    let mut ids = Vec::new();
    let mut samples = Vec::new();
    for i in 0..n / 20 {
        ids.extend(send(app, &format!("{tag}{i}"), 20, 20, 600).await);
        samples.push(log_size(&app.dir).0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let third = samples.len() / 3;
    let peak = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
    (
        ids,
        peak(&samples[third..2 * third]),
        peak(&samples[2 * third..]),
    )
}

/// Small segments, reclaimed as soon as every cursor has passed them.
const SMALL_LOG: &str = "storage: { segment_bytes: 16KiB, retention: { max_age: 0s } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_past_backlog_max_bytes_overflows_and_the_log_stops_growing() {
    let (dir, healthy, dead) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    dead.answer(500);
    let url = format!("{}/dead", dead.url);
    let faulty = "    delivery: { timeout: 1s, max_in_flight: 10 }\n    retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 300ms }\n    backlog: { max_bytes: 64KiB }";
    let app = TestApp::start_with(
        dir.path(),
        &yaml(dir.path(), &healthy, &url, faulty, SMALL_LOG),
    )
    .await;
    let (ids, middle, last) = flood(&app, "cap", 1200).await;
    let written: u64 = 1200 * 900; // a record is about 900 bytes
    healthy_first(&app, &healthy, &ids).await;
    // Once ingest stops, the log shrinks to about the cap: old segments are reclaimed.
    let (size, first) = eventually("the log to shrink to the cap", 10, || async {
        let (size, first) = log_size(&app.dir);
        (size <= (64 << 10) + (48 << 10) && !first).then_some((size, first))
    })
    .await;
    eprintln!(
        "backlog max_bytes: the log peaked at {middle} bytes in the middle third of the run and {last} in the last (~{written} written); {size} once quiet"
    );
    assert!(!first, "the first segment was reclaimed");
    // It plateaus at the cap plus what ingest adds between a check (each second) and the
    // reclaim after it; growing with ingest it would hold over 2/3 of it by the last third.
    assert!(
        last < written / 2,
        "the log stopped growing: {middle} then {last} of {written}"
    );
    let d = eventually("inspect to show the backlog at its cap", 5, || async {
        let d = inspect_of(&app, "faulty").await;
        (d["backlog_bytes"].as_u64().unwrap() <= (64 << 10) + (10 << 10)).then_some(d)
    })
    .await;
    assert!(d["oldest_pending_age_s"].as_u64().is_some(), "{d}");
    let overflowed = metric(
        &app,
        "switchyard_backlog_overflow_total{destination=\"faulty\"} ",
    )
    .await;
    let dl = dead_letters(&app, "faulty").await;
    let refs = ids_of(&dl, "backlog_overflow");
    assert_eq!(refs.len() as u64, overflowed);
    assert!(refs.len() > 500, "{} overflowed", refs.len());
    let one = dl
        .iter()
        .find(|d| d["reason"] == "backlog_overflow")
        .unwrap();
    assert!(
        one["detail"]
            .as_str()
            .unwrap()
            .starts_with("backlog.max_bytes (64.0 KiB) exceeded"),
        "{one}"
    );
    assert!(one["log_seq"].is_u64() && one["received_at"].is_string() && one["request"].is_null());
    // A reference cannot be replayed from the queue; the answer says how to send it again.
    let url = format!(
        "{}/api/v1/destinations/faulty/dead-letters/{}/replay",
        app.url, one["id"]
    );
    let r = client::call(Method::POST, &url, None, Some(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body.to_string().contains("--from-log"), "{body}");
    // The destination recovers: every event ends delivered or a backlog_overflow dead letter.
    dead.answer(200);
    let (delivered, settled) = all_settled(&app, &ids, 20).await;
    let overflowed: HashSet<String> = settled.keys().cloned().collect();
    assert!(
        delivered.is_disjoint(&overflowed),
        "no event was both delivered and dead-lettered"
    );
    assert_eq!(delivered.len() + overflowed.len(), ids.len());
    assert!(settled.values().all(|d| d["reason"] == "backlog_overflow"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_destination_past_its_cap_still_lets_retention_reclaim_the_log() {
    let (dir, healthy, hole) = (
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
        Receiver::start().await,
    );
    hole.answer(0);
    let url = format!("{}/hole", hole.url);
    let faulty = "    delivery: { timeout: 200ms, concurrency: 2, max_in_flight: 10 }\n    retry: { max_age: 1h, initial_backoff: 50ms, max_backoff: 100ms }\n    backlog: { max_bytes: 32KiB }";
    let app = TestApp::start_with(
        dir.path(),
        &yaml(dir.path(), &healthy, &url, faulty, SMALL_LOG),
    )
    .await;
    let (ids, middle, last) = flood(&app, "hole", 900).await;
    healthy_first(&app, &healthy, &ids).await;
    let (size, _) = eventually("the log to shrink to the cap", 10, || async {
        let (size, first) = log_size(&app.dir);
        (size <= (32 << 10) + (48 << 10) && !first).then_some((size, first))
    })
    .await;
    eprintln!("black hole: the log peaked at {middle} bytes, then {last}; {size} once quiet");
    assert!(
        last < 900 * 900 / 2,
        "the log stopped growing: {middle} then {last}"
    );
    let refs = ids_of(&dead_letters(&app, "faulty").await, "backlog_overflow");
    assert!(refs.len() > 450, "{}", refs.len());
    assert!(hole.received().len() >= 10, "the hole was being called");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_destination_type_overflows_past_backlog_max_age_on_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A regular file where the file destination's directory should be: every write fails.
    std::fs::write(d.join("blocker"), b"").unwrap();
    let cap = "backlog: { max_age: 1h }";
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB, allow_private_networks: true }}
storage: {{ segment_bytes: 4KiB, retention: {{ max_age: 1s }} }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
  - {{ id: deadfile, type: file, start: earliest, {cap}, settings: {{ path: "{dir}/blocker/events.jsonl" }} }}
  - {{ id: deadpg, type: postgres, start: earliest, {cap}, settings: {{ url: "postgres://postgres@127.0.0.1:1/none" }} }}
  - {{ id: deadnats, type: nats, start: earliest, {cap}, settings: {{ url: "nats://127.0.0.1:1", subject: events }} }}
  - {{ id: deadseg, type: segment, start: earliest, {cap}, delivery: {{ max_in_flight: 5 }}, settings: {{ endpoint: "http://127.0.0.1:1", write_key: k, batch_size: 0 }} }}
  - id: deadhook
    type: webhook
    start: earliest
    {cap}
    delivery: {{ max_in_flight: 5 }}
    mappings: [{{ name: all, subscribe: 'type = "track"', url: "http://127.0.0.1:1/x" }}]
"#,
        dir = d.display()
    );
    let clock = switchyard::clock::ManualClock::new(switchyard::event::now_ms());
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    let ids = send(&app, "age", 50, 10, 200).await;
    assert_eq!(
        app.delivered(50).await.len(),
        50,
        "the healthy file has all"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dead = ["deadfile", "deadpg", "deadnats", "deadseg", "deadhook"];
    for id in dead {
        assert!(
            dead_letters(&app, id).await.is_empty(),
            "{id}: nothing is an hour old yet"
        );
        // The delivery engine read max_in_flight (5) into its retry set; the rest waits.
        let waiting = if id == "deadhook" || id == "deadseg" {
            45
        } else {
            50
        };
        assert_eq!(inspect_of(&app, id).await["backlog"], waiting, "{id}");
    }
    clock.advance(Duration::from_secs(2 * 3600));
    for id in dead {
        let (refs, retries) = eventually(&format!("{id} to overflow"), 15, || async {
            let refs = ids_of(&dead_letters(&app, id).await, "backlog_overflow");
            let d = inspect_of(&app, id).await;
            let retries = d["pending_retries"].as_u64().unwrap();
            (d["backlog"] == 0 && refs.len() as u64 + retries == 50).then_some((refs, retries))
        })
        .await;
        eprintln!(
            "{id}: {} backlog_overflow dead letters, {retries} retries",
            refs.len()
        );
        if id == "deadhook" || id == "deadseg" {
            assert!(retries <= 5, "{id}: only max_in_flight were read");
        } else {
            assert_eq!(refs.len(), 50, "{id}");
        }
        let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
        assert!(refs.iter().all(|r| want.contains(r.as_str())));
        let n = metric(
            &app,
            &format!("switchyard_backlog_overflow_total{{destination=\"{id}\"}} "),
        )
        .await;
        assert_eq!(n, refs.len() as u64, "{id}");
    }
    // File and postgres destinations keep no retry set: replaying their dead letters is
    // refused rather than moved where nobody reads them.
    for id in ["deadfile", "deadpg"] {
        let url = format!("{}/api/v1/destinations/{id}/dead-letters/replay", app.url);
        let r = client::call(Method::POST, &url, None, Some(b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{id}");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["code"], "unsupported_destination", "{body}");
    }
    let url = format!(
        "{}/api/v1/destinations/deadhook/dead-letters/replay",
        app.url
    );
    let r = client::call(Method::POST, &url, None, Some(b"{}".to_vec()))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], 0, "{body}");
    assert!(body["not_replayable"].as_u64().unwrap() >= 45, "{body}");
    // Every cursor has passed the first segment: retention reclaims it.
    eventually("the first segment to be reclaimed", 10, || async {
        (!log_size(d).1).then_some(())
    })
    .await;
    app.stop().await;
}
