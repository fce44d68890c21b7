//! The crash matrix (issue 10, suite 1): the real binary under load, killed with `kill -9`
//! at a random moment while it ingests, delivers to a webhook, loads the warehouse or
//! reclaims segments, and stopped with SIGTERM under load; then restarted on the same data
//! directory. Each trial counts what the clients had acknowledged and what reached the
//! destination afterwards: lost (acknowledged, never delivered — the bar is 0) and
//! duplicated (delivered more than once — allowed after a crash, bounded by what was in
//! flight; none after a graceful stop).
//!
//! `SWITCHYARD_CHAOS_TRIALS` sets the trials per scenario (2 by default, so CI stays short;
//! RELIABILITY.md records a dedicated run). Every trial prints one line:
//! `chaos <scenario> trial <n>: acked A, lost L, duplicated D, recovered in R ms`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use switchyard::cli::client;

use crate::crash::{Server, spawn_server, wait_drained, wait_ready};
use crate::harness::*;
use crate::receiver::Receiver;

fn trials() -> usize {
    std::env::var("SWITCHYARD_CHAOS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

/// One trial's outcome.
struct Tally {
    acked: usize,
    lost: Vec<String>,
    duplicated: usize,
    recovered_ms: u128,
}

/// Posts 20-event batches from 4 tasks until told to stop, keeping the messageIds of every
/// batch answered 200. Bounded: 60 s, or 50 failures per task.
fn start_load(url: &str, tag: &str) -> (Arc<Mutex<Vec<String>>>, Arc<tokio::sync::Notify>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (url, acked, tag) = (url.to_owned(), acked.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let auth = basic(KEY);
            let (mut n, mut failures) = (0u64, 0);
            while Instant::now() < deadline && failures < 50 {
                let ids: Vec<String> = (0..20).map(|i| format!("{tag}-{w}-{n}-{i}")).collect();
                n += 1;
                let events: Vec<_> = ids.iter().map(|id| json!({"type": "track", "event": "Chaos", "userId": format!("u{w}"), "messageId": id, "properties": {"n": n, "pad": "x".repeat(300)}})).collect();
                let body = serde_json::to_vec(&json!({"batch": events})).unwrap();
                let r = client::call(Method::POST, &format!("{url}/v1/batch"), Some(&auth), Some(body)).await;
                match r {
                    Ok(r) if r.status == StatusCode::OK => acked.lock().unwrap().extend(ids),
                    _ => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    let notify = stop.clone();
    tokio::spawn(async move {
        notify.notified().await;
        for t in tasks {
            t.abort();
        }
    });
    (acked, stop)
}

/// Runs the load, stops the server the given way at a random moment once `ready_to_stop`
/// says the interesting work is under way, restarts it, waits until every destination has
/// caught up, and compares what was acknowledged with what `delivered` counts.
async fn trial<F, Fut>(
    dir: &Path,
    yaml: &str,
    how: Stop,
    tag: &str,
    ready_to_stop: impl Fn(usize) -> bool,
    delivered: F,
) -> Tally
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = HashMap<String, usize>>,
{
    let config = dir.join("switchyard.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut server = spawn_server(&config);
    wait_ready(&server.url).await;
    let (acked, stop) = start_load(&server.url, tag);
    let started = Instant::now();
    while !ready_to_stop(acked.lock().unwrap().len()) && started.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A random moment in the next 0.5 s, so the stop lands anywhere in a commit or a delivery.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
    stop_server(&mut server, how);
    stop.notify_one();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "{tag}: no request was acknowledged before the stop"
    );

    let restarted = Instant::now();
    let mut server = spawn_server(&config);
    wait_ready(&server.url).await;
    let recovered_ms = restarted.elapsed().as_millis();
    wait_drained(&server.url).await;
    let got = wait_for_all(&acked, &delivered).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let lost: Vec<String> = acked
        .iter()
        .filter(|id| !got.contains_key(*id))
        .cloned()
        .collect();
    let duplicated = got.values().filter(|n| **n > 1).count();
    Tally {
        acked: acked.len(),
        lost,
        duplicated,
        recovered_ms,
    }
}

fn stop_server(server: &mut Server, how: Stop) {
    match how {
        Stop::Kill => server.child.kill().expect("kill -9"),
        Stop::Term => {
            let pid = server.child.id().to_string();
            let ok = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "SIGTERM sent");
        }
    }
    let status = server.child.wait().expect("reaped");
    if how == Stop::Term {
        assert!(
            status.success(),
            "SIGTERM under load exits cleanly, got {status}"
        );
    }
}

/// Polls the destination until it holds every acknowledged id (or 30 s pass).
async fn wait_for_all<F, Fut>(acked: &[String], delivered: &F) -> HashMap<String, usize>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = HashMap<String, usize>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = delivered().await;
        if acked.iter().all(|id| got.contains_key(id)) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(scenario: &str, n: usize, t: &Tally) {
    eprintln!(
        "chaos {scenario} trial {n}: acked {}, lost {}, duplicated {}, recovered in {} ms",
        t.acked,
        t.lost.len(),
        t.duplicated,
        t.recovered_ms
    );
    assert!(
        t.lost.is_empty(),
        "chaos {scenario} trial {n}: {} of {} acknowledged events lost, e.g. {:?}",
        t.lost.len(),
        t.acked,
        &t.lost[..t.lost.len().min(5)]
    );
}

/// The file destination's lines, counted by messageId.
fn file_counts(path: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let mut counts = HashMap::new();
    for line in whole.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines only");
        if let Some(id) = v["messageId"].as_str() {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

fn file_yaml(dir: &Path, storage: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{d}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
storage: {{ {storage} }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{d}/events.jsonl" }} }}
"#,
        d = dir.display()
    )
}

async fn file_scenario(scenario: &str, how: Stop, storage: &str) {
    for n in 0..trials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let yaml = file_yaml(dir.path(), storage);
        let t = trial(
            dir.path(),
            &yaml,
            how,
            &format!("{scenario}{n}"),
            |a| a >= 400,
            || {
                let path = path.clone();
                async move { file_counts(&path) }
            },
        )
        .await;
        report(scenario, n, &t);
        if how == Stop::Term {
            assert_eq!(t.duplicated, 0, "a graceful stop repeats no delivery");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_ingest() {
    file_scenario("ingest", Stop::Kill, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sigterm_under_load() {
    file_scenario("sigterm", Stop::Term, "").await;
}

/// Small segments and no retention age: sealed segments are deleted as soon as the archive
/// has passed them, so the kill lands among deletions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_retention() {
    file_scenario(
        "retention",
        Stop::Kill,
        "segment_bytes: 64KiB, retention: { max_age: 0s, max_bytes: 64KiB }",
    )
    .await;
}

/// A webhook receiver that answers slowly enough that deliveries are in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_webhook_delivery() {
    let r = Receiver::start().await;
    for n in 0..trials() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{d}", shutdown_timeout: 5s, min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{port}"] }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: hook
    type: webhook
    start: earliest
    retry: {{ initial_backoff: 20ms, max_backoff: 200ms }}
    mappings:
      - {{ name: All, subscribe: 'type = "track"', url: "{url}/t{n}" }}
"#,
            d = dir.path().display(),
            port = r.port,
            url = r.url
        );
        let path = format!("/t{n}");
        let receiver = r.clone();
        let delivered_now = || receiver_counts(&receiver, &path);
        let t = trial(
            dir.path(),
            &yaml,
            Stop::Kill,
            &format!("delivery{n}"),
            |_| receiver_counts(&r, &path).len() >= 200,
            || std::future::ready(delivered_now()),
        )
        .await;
        report("webhook-delivery", n, &t);
    }
}

fn receiver_counts(r: &Receiver, path: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for got in r.received().iter().filter(|g| g.path == path) {
        if let Some(id) = got.json()["messageId"].as_str() {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The warehouse loads in 500-row batches every 100 ms, so the kill lands inside a COPY
/// transaction or between it and the cursor save. Rows are keyed by messageId, so a
/// repeated batch must not duplicate them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_warehouse_load() {
    for n in 0..trials() {
        let Some((url, client, _db)) = crate::warehouse::fresh_db().await else {
            return;
        };
        let client = Arc::new(client);
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{d}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: wh, type: postgres, start: earliest, settings: {{ url: "{url}", batch_rows: 500, batch_interval: 100ms }} }}
"#,
            d = dir.path().display()
        );
        let rows = || {
            let client = client.clone();
            async move { warehouse_counts(&client).await }
        };
        let t = trial(
            dir.path(),
            &yaml,
            Stop::Kill,
            &format!("wh{n}"),
            |a| a >= 1500,
            rows,
        )
        .await;
        report("warehouse-load", n, &t);
        assert_eq!(t.duplicated, 0, "rows are keyed by messageId");
    }
}

async fn warehouse_counts(client: &tokio_postgres::Client) -> HashMap<String, usize> {
    let rows = client
        .query("SELECT id, count(*) FROM web.chaos GROUP BY id", &[])
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as usize))
        .collect()
}
