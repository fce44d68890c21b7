//! The real binary under load: `kill -9` mid-load, then restart on the same data directory;
//! and SIGTERM, which must drain and exit cleanly.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use switchyard::cli::client;

use crate::harness::*;

pub struct Server {
    pub child: Child,
    pub url: String,
}

/// Starts `switchyard serve --config` and reads the URL it prints.
pub fn spawn_server(config: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve printed its URL")
            .expect("stdout line");
        if let Some(u) = line.strip_prefix("ingest_url: ") {
            break u.to_owned();
        }
    };
    // Keep draining stdout so the server never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, url }
}

/// Writes the test config into `dir`, starts the binary on it and waits until it is ready.
pub async fn start_binary(dir: &Path) -> (std::path::PathBuf, Server) {
    let config = dir.join("switchyard.yaml");
    std::fs::write(&config, config_yaml(dir, "")).unwrap();
    let server = spawn_server(&config);
    wait_ready(&server.url).await;
    (config, server)
}

pub async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client::call(Method::GET, &format!("{url}/readyz"), None, None).await
            && r.status == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never became ready");
}

pub async fn wait_drained(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client::call(Method::GET, &format!("{url}/api/v1/inspect"), None, None)
            .await
            .expect("inspect");
        let report: serde_json::Value = serde_json::from_slice(&r.body).expect("inspect JSON");
        if report["destinations"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["backlog"] == 0))
        {
            return;
        }
        assert!(Instant::now() < deadline, "never drained: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts batches of `batch` events from `workers` tasks until `stop`, recording the
/// messageIds of every batch answered 200. Bounded: stops at `stop` or after 60 s.
async fn load(
    url: String,
    workers: usize,
    batch: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (url, acked) = (url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let auth = basic(KEY);
            let mut n = 0u64;
            let mut failures = 0;
            while Instant::now() < deadline && failures < 50 {
                let ids: Vec<String> = (0..batch).map(|i| format!("crash-{w}-{n}-{i}")).collect();
                n += 1;
                let events: Vec<_> = ids.iter().map(|id| json!({"type": "track", "event": "Load", "userId": "u", "messageId": id, "properties": {"pad": "x".repeat(600)}})).collect();
                let body = serde_json::to_vec(&json!({"batch": events})).unwrap();
                match client::call(Method::POST, &format!("{url}/v1/batch"), Some(&auth), Some(body)).await {
                    Ok(r) if r.status == StatusCode::OK => acked.lock().unwrap().extend(ids),
                    _ => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    stop.notified().await;
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut server) = start_binary(dir.path()).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let loader = tokio::spawn(load(server.url.clone(), 8, 50, acked.clone(), stop.clone()));
    // Let the load run, then kill -9 while requests are in flight.
    let started = Instant::now();
    while (acked.lock().unwrap().len() < 1_000 || started.elapsed() < Duration::from_secs(2))
        && started.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.notify_one();
    loader.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1_000,
        "the load generator got only {} acks before the kill",
        acked.len()
    );

    let mut server = spawn_server(&config);
    wait_ready(&server.url).await;
    wait_drained(&server.url).await;
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let delivered: HashSet<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole JSON lines only")["messageId"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !delivered.contains(*id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked events are missing, e.g. {missing:?}",
        acked.iter().filter(|id| !delivered.contains(*id)).count(),
        acked.len()
    );
    eprintln!(
        "crash test: {} events acked before kill -9, all delivered after restart ({} lines)",
        acked.len(),
        text.lines().count()
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_restart_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut server) = start_binary(dir.path()).await;
    let auth = basic(KEY);
    for i in 0..20 {
        let body = serde_json::to_vec(&json!({"batch": [{"type": "track", "event": "T", "userId": "u", "messageId": format!("term-{i}")}]})).unwrap();
        let r = client::call(
            Method::POST,
            &format!("{}/v1/batch", server.url),
            Some(&auth),
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    wait_drained(&server.url).await;
    let pid = server.child.id().to_string();
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exits cleanly, got {status}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "exit within shutdown_timeout"
    );

    let mut server = spawn_server(&config);
    wait_ready(&server.url).await;
    let body = serde_json::to_vec(&json!({"batch": [{"type": "track", "event": "T", "userId": "u", "messageId": "term-after"}]})).unwrap();
    client::call(
        Method::POST,
        &format!("{}/v1/batch", server.url),
        Some(&auth),
        Some(body),
    )
    .await
    .unwrap();
    wait_drained(&server.url).await;
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let ids: Vec<_> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["messageId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 21, "{ids:?}");
    assert_eq!(unique.len(), 21, "a graceful stop repeats no delivery");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
