//! `TestApp`: an in-process server on 127.0.0.1:0 with its own data directory, plus
//! helpers to post events and read what the file destination wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::{Method, StatusCode};
use serde_json::Value;
use switchyard::cli::client;
use tokio::sync::oneshot;

pub const KEY: &str = "wk_test_prod";
pub const DEV_KEY: &str = "wk_test_dev";

pub struct TestApp {
    pub url: String,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn config_yaml(dir: &Path, extra_server: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB {extra_server} }}
sources:
  - id: web
    type: http_api
    write_keys: {{ production: {KEY}, development: {DEV_KEY} }}
destinations:
  - id: archive
    type: file
    start: earliest
    settings: {{ path: "{dir}/events.jsonl" }}
"#,
        dir = dir.display()
    )
}

impl TestApp {
    pub async fn start(dir: &Path) -> TestApp {
        Self::start_with(dir, &config_yaml(dir, "")).await
    }

    pub async fn start_with(dir: &Path, yaml: &str) -> TestApp {
        Self::start_with_clock(
            dir,
            yaml,
            std::sync::Arc::new(switchyard::clock::SystemClock),
        )
        .await
    }

    pub async fn start_with_clock(
        dir: &Path,
        yaml: &str,
        clock: std::sync::Arc<dyn switchyard::clock::Clock>,
    ) -> TestApp {
        let (config, problems) = switchyard::config::compile_str(yaml, "test", &|_| None);
        let config = config.unwrap_or_else(|| panic!("test config invalid: {problems:?}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::app::run_with_clock(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            clock,
        ));
        let app = TestApp {
            url,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) =
                client::call(Method::GET, &format!("{}/readyz", self.url), None, None).await
                && r.status == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server at {} never became ready", self.url);
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server run");
        }
    }

    pub async fn post(&self, path: &str, auth: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let r = client::call(
            Method::POST,
            &format!("{}{path}", self.url),
            auth,
            Some(body),
        )
        .await
        .expect("request");
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// POST with arbitrary headers; the body is sent as given.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        let r = client::call_with_headers(Method::POST, &url, headers, Some(body.to_vec()))
            .await
            .expect("request");
        (
            r.status,
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into())),
        )
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post(path, Some(&basic(KEY)), serde_json::to_vec(body).unwrap())
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = client::call(Method::GET, &format!("{}{path}", self.url), None, None)
            .await
            .expect("request");
        (
            r.status,
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into())),
        )
    }

    /// Waits until the file destination holds at least `n` events and returns them.
    pub async fn delivered(&self, n: usize) -> Vec<Value> {
        read_lines_until(&self.dir.join("events.jsonl"), n).await
    }

    /// Waits until every destination has consumed the whole log.
    pub async fn wait_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, report) = self.get("/api/v1/inspect").await;
            let dests = report["destinations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if dests.iter().all(|d| d["backlog"] == 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "destinations never drained: {report}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn recent(&self, query: &str) -> Vec<Value> {
        self.recent_of("web", query).await
    }

    pub async fn recent_of(&self, source: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/sources/{source}/events?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

pub async fn read_lines_until(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // The destination may be mid-write: only whole lines count.
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        let lines: Vec<Value> = whole
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON event"))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether tests that need outside programs must fail instead of skipping.
pub fn require_services() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}
