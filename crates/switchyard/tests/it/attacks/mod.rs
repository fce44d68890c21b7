//! The attack suite: every attack on the product contract's security promises, tried
//! systematically from tables of cases, through HTTP against a real server (in-process
//! `TestApp`, or the real binary where the process environment or its log matters).
//!
//! | module | what it attacks |
//! |---|---|
//! | `signatures` | webhook verification: forged, replayed and stale signatures on every scheme, tokens |
//! | `ssrf` | the egress guard: every address spelling, redirects, proxy variables, for destinations and `fetch` |
//! | `bombs` | decompression, nesting, key-count, batch-size and size-limit bombs on `/v1/batch` and `/webhooks/{id}` |
//! | `admin` | admin auth: tokens, query strings, `Host` (DNS rebinding) and `Origin` (CSRF), `/metrics` |
//! | `sandbox` | function sandbox escapes, runaway code, and forging the prelude's output |
//! | `secrets` | a full run with every kind of secret configured: no response, log line, CLI output or data file shows one |
//!
//! It adds only what other tests do not already pin, and relies on them for the rest:
//! - `webhook_in::signed_segment_webhooks_are_verified_on_the_raw_bytes`,
//!   `standard_webhooks_and_hmac_sha256_senders` (far-off timestamps, i64 overflow),
//!   `idempotency_by_key_window_and_disable`, `idempotency_keys_survive_a_restart`,
//!   `bearer_in_any_case_for_source_and_admin_tokens`;
//! - `egress::loopback_in_other_spellings_is_warned_about_and_refused` (`check`'s warning),
//!   the unit tables in `src/egress/tests.rs` and `src/egress/literal.rs` (every private
//!   range, by address, with no packet sent);
//! - `hostile::*` (nesting past 100 levels, numbers out of range, lone surrogates, the
//!   writeKey of rejected events), `ingest::*` and the unit tests of `src/ingest/body.rs`
//!   (bombs at the decoder);
//! - `admin::admin_routes_refuse_foreign_hosts_and_origins_without_a_token`,
//!   `admin_token_is_required_when_set`, `cors_preflight_is_answered_on_ingest_only`;
//! - `src/functions/tests.rs` (infinite loop, memory bomb, console bound, timers) and
//!   `functions::a_stored_retry_request_keeps_no_write_key`,
//!   `a_run_emitting_too_many_events_fails_and_emits_nothing`;
//! - `nats::a_nats_url_password_is_never_shown`.
//!
//! No attack sends a packet anywhere but loopback: private, link-local and metadata
//! addresses are judged without connecting (the unit tables above, and `check` here).

mod admin;
mod bombs;
mod sandbox;
mod secrets;
mod signatures;
mod ssrf;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::Value;

/// A listener that must never be reached: it counts the connections it accepts.
#[derive(Clone)]
pub struct Trap {
    pub port: u16,
    hits: Arc<AtomicUsize>,
}

impl Trap {
    /// A trap on `127.0.0.1` (`v6: false`) or `[::1]`.
    pub async fn start(v6: bool) -> Trap {
        let addr = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind trap");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                drop(sock);
            }
        });
        Trap { port, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One HTTP request with arbitrary headers (`Host` included); status and body text.
pub async fn raw(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answered within 30 s")
        .expect("request");
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `switchyard serve --config cfg` with extra environment, its stderr collected at `RUST_LOG`
/// level `log_level`. Returns the child, its URL once ready, and the stderr once it exits.
pub async fn serve(
    cfg: &Path,
    env: &[(&str, &str)],
    log_level: &str,
) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", log_level)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchyard");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(&mut stdout));
        let url = lines
            .find_map(|l| l.ok()?.strip_prefix("ingest_url: ").map(str::to_owned))
            .expect("serve printed its URL");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        url
    })
    .await
    .unwrap();
    crate::crash::wait_ready(&url).await;
    (child, url, log)
}

/// Runs the CLI at `RUST_LOG=info` and returns its stdout and stderr together.
pub async fn cli(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .unwrap()
}

/// SIGTERM, then the exit (so the log is complete).
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `GET url` (with `auth`) until `pred` holds on the JSON answer (20 s at most).
pub async fn poll_json(
    url: &str,
    auth: Option<&str>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = switchyard::cli::client::call(Method::GET, url, auth, None)
            .await
            .expect("request");
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
