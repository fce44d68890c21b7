//! Webhook destinations end to end: events in over the Tracking API, mapped, signed
//! requests out to a real local receiver; outages, dead letters, replay and restarts.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::cli::client;

use crate::harness::*;
use crate::receiver::Receiver;

const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn yaml(dir: &Path, r: &Receiver, retry: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{port}"] }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: knock
    type: webhook
    start: earliest
    settings: {{ shared_secret: abc123 }}
    delivery: {{ timeout: 300ms }}
    retry: {retry}
    mappings:
      - name: Send to Knock
        subscribe: 'type = "track" or type = "identify"'
        url: {url}/knock
        headers: {{ X-Env: prod }}
  - id: sw
    type: webhook
    start: earliest
    settings: {{ shared_secret: "{SW_SECRET}", signing: standard_webhooks }}
    mappings:
      - name: Orders
        subscribe: 'event = "Order Completed"'
        url: {{ "@template": "{url}/orders/{{{{userId}}}}" }}
        data: {{ order: {{ "@path": "$.properties" }}, user: {{ "@path": "$.userId" }} }}
      - name: Everything
        subscribe: 'type = "track"'
        url: {url}/all
"#,
        dir = dir.display(),
        port = r.port,
        url = r.url,
    )
}

const FAST_RETRY: &str = "{ initial_backoff: 20ms, max_backoff: 100ms }";

fn hmac_sha1_hex(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn track(mid: &str, event: &str) -> Value {
    json!({"type": "track", "event": event, "userId": "u1", "messageId": mid, "properties": {"revenue": 5}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sdk_event_reaches_the_right_mappings_signed() {
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    if !std::process::Command::new(&python)
        .args(["-c", "import segment.analytics"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            !require_services(),
            "segment-analytics-python is not installed; run .ci/run"
        );
        eprintln!("SKIPPED: segment-analytics-python is not installed");
        return;
    }
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &r, FAST_RETRY)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/send_python.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .args([&app.url, KEY, "1", "py"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.wait_for("track+identify to /knock, the order and the track", |g| {
        g.len() >= 4
    })
    .await;
    // Give a wrongly matched page or group time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = r.received();
    let knock: Vec<_> = got.iter().filter(|x| x.path == "/knock").collect();
    let types: HashSet<_> = knock
        .iter()
        .map(|x| x.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        HashSet::from(["track".to_owned(), "identify".to_owned()]),
        "pages, groups and aliases are filtered out"
    );
    for k in &knock {
        assert_eq!(
            k.header("x-signature"),
            Some(hmac_sha1_hex("abc123", &k.body).as_str()),
            "X-Signature is HMAC-SHA1 of the body"
        );
        assert_eq!(k.header("idempotency-key"), k.json()["messageId"].as_str());
        assert_eq!(
            (k.header("user-agent"), k.header("x-env")),
            (Some("Segment (Actions)"), Some("prod"))
        );
        assert_eq!(k.header("x-switchyard-mapping"), Some("Send%20to%20Knock"));
        assert_eq!(k.header("content-type"), Some("application/json"));
    }
    let order = got
        .iter()
        .find(|x| x.path == "/orders/py-user")
        .expect("the order mapping fired");
    assert_eq!(
        order.json(),
        json!({"order": {"revenue": 12.5}, "user": "py-user"})
    );
    let sw = switchyard::signing::StandardWebhooks::from_secret(SW_SECRET).unwrap();
    let (id, ts, sig) = (
        order.header("webhook-id").unwrap(),
        order.header("webhook-timestamp").unwrap(),
        order.header("webhook-signature").unwrap(),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    sw.verify(id, ts, &order.body, sig, now)
        .expect("a valid Standard Webhooks signature");
    assert_eq!(
        id,
        switchyard::signing::webhook_id("web", "py-track", "sw", "Orders")
    );
    assert_eq!(got.iter().filter(|x| x.path == "/all").count(), 1);
    app.stop().await;
}

/// Waits (10 s at most) until `dest` has at least `n` dead letters, and returns them.
async fn dead_letters_once(app: &TestApp, dest: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = app
            .get(&format!("/api/v1/destinations/{dest}/dead-letters"))
            .await;
        let list = body["dead_letters"].as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{dest} never had {n} dead letters: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliveries(app: &TestApp, dest: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "/api/v1/destinations/{dest}/deliveries?limit=1000"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

fn delivered_ids(got: &[crate::receiver::Received], path: &str, after: Instant) -> HashSet<String> {
    got.iter()
        .filter(|x| x.path == path && x.at >= after)
        .map(|x| x.json()["messageId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_then_recovery_loses_nothing_and_every_attempt_is_logged() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &r, FAST_RETRY)).await;
    r.answer(500);
    let ids: Vec<String> = (0..20).map(|i| format!("out-{i}")).collect();
    for id in &ids {
        assert_eq!(
            app.post_json("/v1/track", &track(id, "Ping")).await.0,
            StatusCode::OK
        );
    }
    r.wait_for("failed attempts", |g| {
        g.iter().filter(|x| x.path == "/knock").count() >= 40
    })
    .await;
    r.answer(0); // now every request hangs until the 300 ms timeout
    tokio::time::sleep(Duration::from_millis(800)).await;
    let recovered_at = Instant::now();
    r.answer(200);
    let want: HashSet<String> = ids.iter().cloned().collect();
    r.wait_for("every event after recovery", |g| {
        delivered_ids(g, "/knock", recovered_at).is_superset(&want)
    })
    .await;
    // The delivery log is written a moment after each outcome: wait until it has every
    // delivery (the assertions below are on what it holds then).
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = deliveries(&app, "knock").await;
        let logged: HashSet<String> = log
            .iter()
            .filter(|a| a["outcome"] == "delivered")
            .filter_map(|a| a["message_id"].as_str().map(str::to_owned))
            .collect();
        if logged.is_superset(&want) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        log.iter()
            .any(|a| a["outcome"] == "retry" && a["status"] == 500),
        "500s are logged as retries"
    );
    assert!(
        log.iter()
            .any(|a| a["outcome"] == "retry" && a["error"] == "timed out"),
        "timeouts are logged as retries"
    );
    let delivered: HashSet<_> = log
        .iter()
        .filter(|a| a["outcome"] == "delivered")
        .map(|a| a["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(delivered.is_superset(&want));
    let (_, dead) = app.get("/api/v1/destinations/knock/dead-letters").await;
    assert_eq!(dead["dead_letters"], json!([]), "nothing was dead-lettered");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_dead_letter_and_replay_delivers_them() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &r, FAST_RETRY)).await;
    r.answer(400);
    for i in 0..3 {
        app.post_json("/v1/track", &track(&format!("dl-{i}"), "Ping"))
            .await;
    }
    let dead = dead_letters_once(&app, "knock", 3).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(
        (dead[0]["reason"].as_str(), dead[0]["last_status"].as_u64()),
        (Some("HTTP 400"), Some(400))
    );
    assert_eq!(dead[0]["attempts"], 1, "a permanent failure is not retried");
    r.answer(200);
    // Taken before the replay call: the delivery may land before the call returns.
    let replayed_at = Instant::now();
    let one = dead[0]["id"].as_u64().unwrap();
    let url = format!(
        "{}/api/v1/destinations/knock/dead-letters/{one}/replay",
        app.url
    );
    assert_eq!(
        client::call(Method::POST, &url, None, Some(b"{}".to_vec()))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    r.wait_for("the replayed dead letter", |g| {
        delivered_ids(g, "/knock", replayed_at).len() == 1
    })
    .await;
    let url = format!("{}/api/v1/destinations/knock/dead-letters/replay", app.url);
    let resp = client::call(
        Method::POST,
        &url,
        None,
        Some(br#"{"since": "1h"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&resp.body).unwrap(),
        json!({"replayed": 2})
    );
    let want: HashSet<String> = (0..3).map(|i| format!("dl-{i}")).collect();
    r.wait_for("all replayed", |g| {
        delivered_ids(g, "/knock", replayed_at) == want
    })
    .await;
    let (_, body) = app.get("/api/v1/destinations/knock/dead-letters").await;
    assert_eq!(body["dead_letters"], json!([]));
    // The whole story of one event (the delivery log is written every 200 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let lineage = loop {
        let (status, lineage) = app.get("/api/v1/events/dl-1?source=web").await;
        assert_eq!(status, StatusCode::OK, "{lineage}");
        let knock_attempts = lineage["destinations"][0]["attempts"]
            .as_array()
            .map_or(0, Vec::len);
        if knock_attempts >= 2 || Instant::now() > deadline {
            break lineage;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lineage["event"]["messageId"], "dl-1");
    let knock = lineage["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "knock")
        .unwrap()
        .clone();
    assert_eq!(
        (
            knock["matched"].as_bool(),
            knock["mappings"][0]["matched"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let outcomes: Vec<_> = knock["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        ["delivered", "dead_letter"],
        "newest first: dead-lettered, then delivered after replay"
    );
    let sw = lineage["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "sw")
        .unwrap()
        .clone();
    let matched: Vec<_> = sw["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["matched"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        matched,
        [
            ("Orders".to_owned(), false),
            ("Everything".to_owned(), true)
        ]
    );
    assert_eq!(
        app.get("/api/v1/events/never-sent").await.0,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_retries_loses_nothing() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let yaml = yaml(
        dir.path(),
        &r,
        "{ initial_backoff: 100ms, max_backoff: 300ms }",
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    r.answer(503);
    for i in 0..10 {
        app.post_json("/v1/track", &track(&format!("rs-{i}"), "Ping"))
            .await;
    }
    r.wait_for("a failed attempt for each", |g| {
        delivered_ids(g, "/knock", Instant::now() - Duration::from_secs(60)).len() == 10
    })
    .await;
    app.stop().await;
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let recovered_at = Instant::now();
    r.answer(200);
    let want: HashSet<String> = (0..10).map(|i| format!("rs-{i}")).collect();
    r.wait_for("every event after the restart", |g| {
        delivered_ids(g, "/knock", recovered_at).is_superset(&want)
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_expire_into_the_dead_letter_queue_by_the_clock_not_by_sleeping() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let clock = switchyard::clock::ManualClock::new(switchyard::event::now_ms());
    let yaml = yaml(
        dir.path(),
        &r,
        "{ max_age: 1h, initial_backoff: 10m, max_backoff: 30m }",
    );
    let app = TestApp::start_with_clock(dir.path(), &yaml, clock.clone()).await;
    r.answer(500);
    app.post_json("/v1/track", &track("exp-1", "Ping")).await;
    r.wait_for("the first attempt", |g| {
        g.iter().any(|x| x.path == "/knock")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.received().iter().filter(|x| x.path == "/knock").count(),
        1,
        "the next attempt waits for the clock"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let d = dead_letters_once(&app, "knock", 1).await.remove(0);
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("retry.max_age (1.00h) exceeded; last attempt: HTTP 500"),
        "{d}"
    );
    assert_eq!(d["attempts"], 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_to_private_addresses_is_refused_with_a_clear_reason() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let yaml = yaml(dir.path(), &r, FAST_RETRY)
        .replace(&format!(", egress_allow: [\"127.0.0.1:{}\"]", r.port), "");
    let (_, problems) = switchyard::config::compile_str(&yaml, "t", &|_| None);
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .starts_with("warning destinations[knock].mappings[0].url deliveries will fail")),
        "{problems:?}"
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    app.post_json("/v1/track", &track("ssrf-1", "Ping")).await;
    let d = dead_letters_once(&app, "knock", 1).await.remove(0);
    assert!(
        d["reason"].as_str().unwrap().contains("loopback address"),
        "{d}"
    );
    assert!(
        r.received().is_empty(),
        "nothing reached the private address"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_group_by_url_sign_the_first_element_and_survive_a_retry() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB, allow_private_networks: true }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - id: batched
    type: webhook
    settings: {{ sharedSecret: abc123 }}
    delivery: {{ batch_linger: 300ms }}
    retry: {FAST_RETRY}
    mappings:
      - name: Batched
        subscribe: 'type = "track"'
        url: {{ "@template": "{url}/b/{{{{properties.bucket}}}}" }}
        batch_size: 3
        data: {{ id: {{ "@path": "$.messageId" }}, n: {{ "@path": "$.properties.n" }} }}
"#,
        dir = dir.path().display(),
        url = r.url
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    r.answer(503);
    let events: Vec<Value> = (0..7)
        .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("b-{i}"), "properties": {"n": i, "bucket": if i < 6 { "x" } else { "y" }}}))
        .collect();
    assert_eq!(
        app.post_json("/v1/batch", &json!({"batch": events}))
            .await
            .0,
        StatusCode::OK
    );
    let keys = |g: &[crate::receiver::Received]| {
        g.iter()
            .filter_map(|x| x.header("idempotency-key").map(str::to_owned))
            .collect::<HashSet<_>>()
            .len()
    };
    r.wait_for("two full batches and a lingering one, refused", |g| {
        keys(g) >= 3
    })
    .await;
    let recovered_at = Instant::now();
    r.answer(200);
    let got = r
        .wait_for("the batches after recovery", |g| {
            g.iter().filter(|x| x.at >= recovered_at).count() >= 3
        })
        .await;
    let ok: Vec<_> = got.iter().filter(|x| x.at >= recovered_at).collect();
    let mut sizes: Vec<usize> = ok
        .iter()
        .map(|x| x.json().as_array().unwrap().len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [1, 3, 3],
        "batches of 3 per URL; the odd URL lingers alone"
    );
    for x in &ok {
        let items = x.json();
        let first = serde_json::to_vec(&items[0]).unwrap();
        assert_eq!(
            x.header("x-signature"),
            Some(hmac_sha1_hex("abc123", &first).as_str()),
            "only the first element is signed"
        );
        assert!(
            x.header("idempotency-key")
                .is_some_and(|k| k.starts_with("batch_"))
        );
        let bucket = if x.path == "/b/y" { "y" } else { "x" };
        assert!(
            items
                .as_array()
                .unwrap()
                .iter()
                .all(|i| (i["n"].as_u64().unwrap() < 6) == (bucket == "x"))
        );
    }
    let refused_keys: HashSet<_> = got
        .iter()
        .filter(|x| x.at < recovered_at)
        .filter_map(|x| x.header("idempotency-key").map(str::to_owned))
        .collect();
    let ok_keys: HashSet<_> = ok
        .iter()
        .filter_map(|x| x.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(
        ok_keys.is_subset(&refused_keys),
        "a retried batch keeps its members and its id"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_does_not_stall_when_the_log_rolls_to_a_new_segment() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let yaml = yaml(dir.path(), &r, FAST_RETRY)
        .replace("sources:", "storage: { segment_bytes: 4KiB }\nsources:");
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let mut slow = Vec::new();
    for i in 0..40 {
        let id = format!("roll-{i}");
        let e = json!({"type": "identify", "userId": "u", "messageId": id, "traits": {"pad": "x".repeat(900)}});
        assert_eq!(app.post_json("/v1/identify", &e).await.0, StatusCode::OK);
        let acked = Instant::now();
        let got = r
            .wait_for("the event", |g| {
                g.iter()
                    .any(|x| x.path == "/knock" && x.json()["messageId"] == id.as_str())
            })
            .await;
        let at = got
            .iter()
            .find(|x| x.json()["messageId"] == id.as_str())
            .map(|x| x.at)
            .unwrap();
        let ms = at.saturating_duration_since(acked).as_millis();
        if ms > 60 {
            slow.push((i, ms));
        }
    }
    let segments = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments > 5, "the log rolled ({segments} segments)");
    assert!(
        slow.len() <= 2,
        "deliveries waited after segment rolls: {slow:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_log_sends_past_events_again_since_a_time() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &r, FAST_RETRY)).await;
    for i in 0..3 {
        app.post_json("/v1/track", &track(&format!("old-{i}"), "Ping"))
            .await;
    }
    r.wait_for("the first three", |g| {
        g.iter().filter(|x| x.path == "/knock").count() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = switchyard::event::timestamp::format(time::OffsetDateTime::now_utc());
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..2 {
        app.post_json("/v1/track", &track(&format!("new-{i}"), "Ping"))
            .await;
    }
    r.wait_for("all five", |g| {
        g.iter().filter(|x| x.path == "/knock").count() >= 5
    })
    .await;
    app.wait_drained().await;
    let replay_started = Instant::now();
    let url = app.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "replay",
                "--url",
                &url,
                "--destination",
                "knock",
                "--from-log",
                "--since",
                &since,
                "--format",
                "json",
                "--wait",
                "20s",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["replayed"].as_u64(), summary["finished"].as_bool()),
        (Some(2), Some(true)),
        "{summary}"
    );
    let again: HashSet<String> = delivered_ids(&r.received(), "/knock", replay_started);
    assert_eq!(
        again,
        HashSet::from(["new-0".to_owned(), "new-1".to_owned()]),
        "only events received since T are sent again"
    );
    let url = format!("{}/api/v1/destinations/knock/replay", app.url);
    let bad = client::call(
        Method::POST,
        &url,
        None,
        Some(br#"{"from_log": true, "since": "yesterday-ish"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_keeps_its_backlog_on_disk_not_in_memory() {
    let (dir, r) = (tempfile::tempdir().unwrap(), Receiver::start().await);
    let yaml = yaml(
        dir.path(),
        &r,
        "{ initial_backoff: 200ms, max_backoff: 400ms }",
    )
    .replace(
        "delivery: { timeout: 300ms }",
        "delivery: { timeout: 300ms, max_in_flight: 20 }",
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    r.answer(503);
    let batch: Vec<Value> = (0..100)
        .map(|i| track(&format!("bl-{i}"), "Ping"))
        .collect();
    assert_eq!(
        app.post_json("/v1/batch", &json!({"batch": batch})).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, report) = app.get("/api/v1/inspect").await;
    let knock = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "knock")
        .unwrap()
        .clone();
    assert!(
        knock["pending_retries"].as_u64().unwrap() <= 20,
        "retries are bounded by max_in_flight: {knock}"
    );
    assert!(
        knock["backlog"].as_u64().unwrap() >= 80,
        "the rest waits in the log: {knock}"
    );
    let recovered_at = Instant::now();
    r.answer(200);
    let want: HashSet<String> = (0..100).map(|i| format!("bl-{i}")).collect();
    r.wait_for("every event once the destination recovers", |g| {
        delivered_ids(g, "/knock", recovered_at).is_superset(&want)
    })
    .await;
    app.stop().await;
}
