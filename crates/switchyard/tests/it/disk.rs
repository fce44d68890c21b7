//! Disk full, on a real filesystem: a small tmpfs mounted as `data_dir` (log, dedupe index,
//! cursors, redb stores and the file destination's output all on it). Skipped loudly where
//! mounting is not permitted, unless `SWITCHYARD_REQUIRE_SERVICES=1`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::*;

/// A tmpfs mounted on a fresh directory for the life of the value; unmounted on drop, also
/// when the test fails.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("SWITCHYARD_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "cannot mount a tmpfs ({why}) and SWITCHYARD_REQUIRE_SERVICES=1"
                );
                eprintln!("SKIPPED: cannot mount a tmpfs for the disk-full test: {why}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

pub fn yaml(dir: &Path, min_free_disk: &str) -> String {
    yaml_with(dir, min_free_disk, "")
}

/// `extra_storage` goes into the `storage` map.
pub fn yaml_with(dir: &Path, min_free_disk: &str, extra_storage: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: {min_free_disk} }}
storage: {{ segment_bytes: 1MiB {extra_storage} }}
sources:
  - id: web
    type: http_api
    write_keys: {{ production: {KEY} }}
destinations:
  - id: archive
    type: file
    start: earliest
    settings: {{ path: "{dir}/events.jsonl", max_bytes: 1GiB }}
"#,
        dir = dir.display()
    )
}

/// One answer: status, `Retry-After` and the body.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// POSTs a batch over a plain connection (the headers are needed, not only the status).
fn post_raw(url: &str, body: &[u8]) -> std::io::Result<Answer> {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let retry_after = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_owned())
    });
    Ok(Answer {
        status,
        retry_after,
        body: body.to_owned(),
    })
}

/// POSTs `n` events with ids `{prefix}-{i}`; the ids and the answer.
pub async fn post_batch(url: &str, prefix: &str, n: usize) -> (Vec<String>, Answer) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "track", "event": "Fill", "userId": id, "messageId": id, "properties": {"pad": "x".repeat(600)}}))
        .collect();
    let body = serde_json::to_vec(&json!({ "batch": events })).unwrap();
    let url = url.to_owned();
    let answer = tokio::task::spawn_blocking(move || post_raw(&url, &body))
        .await
        .unwrap()
        .expect("the server answers");
    (ids, answer)
}

/// Fills the volume with a file of `bytes` (real pages: tmpfs does not keep zeros sparse
/// when they are written).
pub fn filler(dir: &Path, bytes: usize) -> PathBuf {
    let path = dir.join("filler.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5Au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    path
}

pub fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

/// The messageIds in the file destination's output; every line must be whole JSON.
pub fn delivered(dir: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a torn line in the output ({e}): {l:.80}"));
            v["messageId"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `switchyard inspect --data-dir --format json` with no server: every record checked.
pub fn offline_inspect(dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["inspect", "--format", "json", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run inspect");
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    assert_eq!(report["integrity"]["mode"], "full");
    report
}

/// Waits until every destination and the profile store have caught up.
async fn wait_caught_up(url: &str) {
    crate::crash::wait_drained(url).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = switchyard::cli::client::call(
            hyper::Method::GET,
            &format!("{url}/api/v1/inspect"),
            None,
            None,
        )
        .await
        .unwrap();
        let report: Value = serde_json::from_slice(&r.body).unwrap();
        if report["profiles"]["backlog"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "profiles never caught up: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts batches until the server says stop (an answer other than 200) or `max` batches.
/// Returns the acked ids and the first refusal.
async fn load_until_refused(url: &str, tag: &str, max: usize) -> (Vec<String>, Option<Answer>) {
    let mut acked = Vec::new();
    for n in 0..max {
        let (ids, a) = post_batch(url, &format!("{tag}-{n}"), 50).await;
        if a.status != 200 {
            return (acked, Some(a));
        }
        acked.extend(ids);
    }
    (acked, None)
}

/// Posts until a batch is acked again (space came back), at most for `within`.
async fn wait_accepting(url: &str, tag: &str, within: Duration) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut n = 0;
    loop {
        let (ids, a) = post_batch(url, &format!("{tag}-{n}"), 10).await;
        n += 1;
        if a.status == 200 {
            return (ids, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "ingest never recovered: last {} {}",
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_all_delivered(dir: &Path, acked: &[String]) {
    let got = delivered(dir);
    let missing: Vec<_> = acked.iter().filter(|id| !got.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked events missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_free_disk_answers_429_before_the_disk_fills_and_recovers_alone() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let dir = fs.path();
    let app = TestApp::start_with(dir, &yaml(dir, "4MiB")).await;
    let fill = filler(dir, (free_bytes(dir) as usize).saturating_sub(10 << 20));

    let (mut acked, refused) = load_until_refused(&app.url, "a", 2000).await;
    let refused = refused.expect("ingest refused before 2000 batches");
    assert_eq!(
        refused.status, 429,
        "refused with 429, not: {}",
        refused.body
    );
    assert!(refused.body.contains("disk_full"), "{}", refused.body);
    assert_eq!(refused.retry_after.as_deref(), Some("30"));
    assert!(free_bytes(dir) > 1 << 20, "429 came before the disk filled");
    // Steady load while below the margin: every answer is 429, never an error.
    for n in 0..20 {
        let (_, a) = post_batch(&app.url, &format!("b-{n}"), 50).await;
        assert_eq!(a.status, 429, "{}", a.body);
    }

    std::fs::remove_file(&fill).unwrap();
    let (ids, took) = wait_accepting(&app.url, "c", Duration::from_secs(10)).await;
    acked.extend(ids);
    wait_caught_up(&app.url).await;
    assert_all_delivered(dir, &acked);
    app.stop().await;
    let report = offline_inspect(dir);
    assert_eq!(report["integrity"]["ok"], true, "{report}");
    eprintln!(
        "disk 429: {} acked, none lost, ingest back {} ms after space was freed",
        acked.len(),
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_in_the_log_acks_nothing_unwritten_and_recovers_alone() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let dir = fs.path();
    let app = TestApp::start_with(dir, &yaml(dir, "0")).await;
    let fill = filler(dir, (free_bytes(dir) as usize).saturating_sub(6 << 20));

    let (mut acked, refused) = load_until_refused(&app.url, "a", 2000).await;
    let refused = refused.expect("ingest failed once the disk was full");
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(refused.body.contains("storage_error"), "{}", refused.body);
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    // While full: only errors or acks, and each ack counts (a commit can succeed when
    // a small group fits the last pages).
    for n in 0..20 {
        let (ids, a) = post_batch(&app.url, &format!("b-{n}"), 50).await;
        match a.status {
            200 => acked.extend(ids),
            500 | 503 | 429 => {}
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    let ready = switchyard::cli::client::call(
        hyper::Method::GET,
        &format!("{}/readyz", app.url),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(ready.status, 503, "not ready while the log cannot commit");

    std::fs::remove_file(&fill).unwrap();
    let (ids, took) = wait_accepting(&app.url, "c", Duration::from_secs(10)).await;
    acked.extend(ids);
    wait_caught_up(&app.url).await;
    let ready = switchyard::cli::client::call(
        hyper::Method::GET,
        &format!("{}/readyz", app.url),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(ready.status, 200, "ready again");
    assert_all_delivered(dir, &acked);
    let metrics = switchyard::cli::client::call(
        hyper::Method::GET,
        &format!("{}/metrics", app.url),
        None,
        None,
    )
    .await
    .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_log_commit_failures_total ") && !l.ends_with(" 0")),
        "the ENOSPC happened in the log writer"
    );
    app.stop().await;
    let report = offline_inspect(dir);
    assert_eq!(
        report["integrity"]["ok"], true,
        "no torn or corrupt record: {report}"
    );
    eprintln!(
        "disk ENOSPC: {} acked, none lost, ingest back {} ms after space was freed",
        acked.len(),
        took.as_millis()
    );
}

/// The file destination and the profile store catch up on a full disk: their writes
/// (output lines, cursor saves, redb commits) fail with ENOSPC, the server keeps serving,
/// and once there is room both resume by themselves: no torn line, nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_writing_on_a_full_disk_resume_alone() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let dir = fs.path();
    if std::env::var_os("SWITCHYARD_TEST_LOG").is_some() {
        switchyard::telemetry::init_tracing();
    }
    // Phase 1: the log only (the destination starts at `earliest` later; profiles off).
    let phase1 = yaml_with(dir, "0", ", profiles: false").replace("destinations:", "unused:");
    let phase1 = phase1.split("unused:").next().unwrap().to_owned() + "destinations: []\n";
    let app = TestApp::start_with(dir, &phase1).await;
    let mut acked = Vec::new();
    for n in 0..60 {
        let (ids, a) = post_batch(&app.url, &format!("r-{n}"), 50).await;
        assert_eq!(a.status, 200, "{}", a.body);
        acked.extend(ids);
    }
    app.stop().await;
    let fill = filler(dir, (free_bytes(dir) as usize).saturating_sub(1 << 20));

    // Phase 2: about 2 MB of output and profiles to write into 1 MB.
    let app = TestApp::start_with(dir, &yaml(dir, "0")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = switchyard::cli::client::call(
            hyper::Method::GET,
            &format!("{}/api/v1/inspect", app.url),
            None,
            None,
        )
        .await
        .unwrap();
        let report: Value = serde_json::from_slice(&r.body).unwrap();
        if report["destinations"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the destination never hit ENOSPC: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivered(dir); // no torn line even now
    let started = Instant::now();
    std::fs::remove_file(&fill).unwrap();
    wait_caught_up(&app.url).await;
    let took = started.elapsed();
    assert_all_delivered(dir, &acked);
    let r = switchyard::cli::client::call(
        hyper::Method::GET,
        &format!("{}/api/v1/inspect", app.url),
        None,
        None,
    )
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        report["profiles"]["count"],
        acked.len(),
        "every profile applied: {report}"
    );
    app.stop().await;
    let report = offline_inspect(dir);
    assert_eq!(report["integrity"]["ok"], true, "{report}");
    eprintln!(
        "disk readers: {} events, none lost, caught up {} ms after space was freed",
        acked.len(),
        took.as_millis()
    );
}
