//! Webhook sources end to end through HTTP: the seed functions, the sandbox, error classes
//! and RetryError re-runs, verification, idempotency, function logs and test runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;
use crate::receiver::Receiver;

const KNO_TOKEN: &str = "kno_token_0123456789";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn payload(rel: &str) -> Vec<u8> {
    std::fs::read(examples().join(rel)).expect("example payload")
}

/// Writes `code` as `dir/name.js` and returns its path.
fn function(dir: &Path, name: &str, code: &str) -> String {
    let path = dir.join(format!("{name}.js"));
    std::fs::write(&path, code).unwrap();
    path.display().to_string()
}

/// A server with the two seed functions plus `sources` (YAML list items).
fn yaml(dir: &Path, sources: &str, functions: &str, server: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB {server} }}
functions: {{ {functions} }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
  - {{ id: kno, type: webhook, function: "{ex}/knocommerce/functions/knocommerce.js", token: {KNO_TOKEN} }}
  - {{ id: stigg, type: webhook, function: "{ex}/stigg/functions/stigg.js", public: true }}
{sources}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display(),
        ex = examples().display(),
    )
}

async fn start(dir: &Path, sources: &str, functions: &str, server: &str) -> TestApp {
    TestApp::start_with(dir, &yaml(dir, sources, functions, server)).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn knocommerce_seed_function_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", "", "").await;
    let body = payload("knocommerce/payloads/survey-response.json");
    let (status, resp) = app
        .post_with(&format!("/webhooks/kno/{KNO_TOKEN}"), &[JSON], &body)
        .await;
    assert_eq!(
        (status, &resp),
        (StatusCode::OK, &json!({"success": true, "emitted": 1}))
    );
    let anon = payload("knocommerce/payloads/anonymous-response.json");
    let query = format!("/webhooks/kno?token={KNO_TOKEN}");
    assert_eq!(
        app.post_with(&query, &[JSON], &anon).await.0,
        StatusCode::OK
    );
    let events = app.delivered(2).await;
    assert_eq!(events.len(), 2);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let e = &events[0];
    assert_eq!(e["type"], "track");
    assert_eq!(e["event"], "KnoCommerce Webhook Event");
    assert_eq!(e["userId"], "gid://shopify/Customer/6623948201");
    assert_eq!(
        e["properties"], sent,
        "the whole payload becomes properties"
    );
    assert!(e["messageId"].as_str().unwrap().starts_with("fn-"));
    assert!(e["receivedAt"].is_string() && e["timestamp"].is_string());
    assert_eq!(events[1]["anonymousId"], "knocommerce-anon");
    // The lineage names the function run that emitted the event.
    let mid = e["messageId"].as_str().unwrap();
    let (status, lineage) = app.get(&format!("/api/v1/events/{mid}?source=kno")).await;
    assert_eq!(status, StatusCode::OK, "{lineage}");
    assert_eq!(lineage["function_run"]["trigger"], "webhook");
    assert_eq!(lineage["function_run"]["outcome"], "ok");
    assert!(events[1].get("userId").is_none());
    // The caller retries the same body: the deterministic messageId makes it a duplicate.
    let (status, resp) = app
        .post_with(&format!("/webhooks/kno/{KNO_TOKEN}"), &[JSON], &body)
        .await;
    assert_eq!(
        (status, resp["emitted"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let dups = app.recent_of("kno", "status=duplicate").await;
    assert_eq!(dups.len(), 1, "{dups:?}");
    // Without the token: 401, recorded as unverified, nothing emitted.
    let (status, resp) = app.post_with("/webhooks/kno", &[JSON], &body).await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unverified"))
    );
    let unverified = app.recent_of("kno", "status=unverified").await;
    assert!(
        unverified[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing token")
    );
    app.wait_drained().await;
    assert_eq!(app.delivered(2).await.len(), 2);
}

#[tokio::test]
async fn stigg_seed_function_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), "", "", "").await;
    for (file, emitted) in [
        ("stigg/payloads/customer-updated.json", 1),
        ("stigg/payloads/feature-updated-no-customer.json", 0),
        ("stigg/payloads/subscription-created.json", 1),
    ] {
        let (status, resp) = app
            .post_with("/webhooks/stigg", &[JSON], &payload(file))
            .await;
        assert_eq!(
            (status, resp["emitted"].as_u64()),
            (StatusCode::OK, Some(emitted)),
            "{file}"
        );
    }
    let events = app.delivered(2).await;
    let names: Vec<_> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["userId"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("customer_updated", "customer-5f1c9a"),
            ("subscription_created", "customer-5f1c9a")
        ]
    );
    assert_eq!(
        events[0]["properties"]["customer"]["billingId"],
        "cus_Q2w8Kx1"
    );
}

const LOOP: &str = "async function onRequest() { while (true) {} }";
const BOMB: &str = "async function onRequest() { const a = []; while (true) a.push('x'.repeat(65536) + a.length); }";
const ECHO: &str = "async function onRequest(request) { Segment.track({event: 'Echo', userId: 'u', properties: request.json()}); }";

#[tokio::test]
async fn the_sandbox_stops_loops_and_bombs_without_hurting_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sources = format!(
        "  - {{ id: spin, type: webhook, public: true, function: \"{}\" }}\n  - {{ id: bomb, type: webhook, public: true, function: \"{}\" }}\n  - {{ id: echo, type: webhook, public: true, function: \"{}\" }}\n",
        function(d, "spin", LOOP),
        function(d, "bomb", BOMB),
        function(d, "echo", ECHO)
    );
    let app = start(d, &sources, "deadline: 1s, memory: 16MiB, workers: 2", "").await;
    let spin = {
        let url = format!("{}/webhooks/spin", app.url);
        tokio::spawn(async move {
            let t = Instant::now();
            let r = switchyard::cli::client::call(
                hyper::Method::POST,
                &url,
                None,
                Some(b"{}".to_vec()),
            )
            .await
            .unwrap();
            (
                r.status,
                t.elapsed(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the loop holds a worker, another source's function and the Tracking API answer.
    let t = Instant::now();
    let (status, resp) = app
        .post_with("/webhooks/echo", &[JSON], br#"{"n":1}"#)
        .await;
    assert_eq!(
        (status, resp["emitted"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let ingest = app
        .post_json("/v1/track", &json!({"event": "E", "userId": "u"}))
        .await;
    assert_eq!(ingest.0, StatusCode::OK);
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "others waited {:?}",
        t.elapsed()
    );
    let (status, took, body) = spin.await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("function_timeout"), "{body}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let (status, resp) = app.post_with("/webhooks/bomb", &[JSON], b"{}").await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("function_crashed"))
    );
    assert!(
        resp["message"].as_str().unwrap().contains("out of memory"),
        "{resp}"
    );
    // The engines are rebuilt: the loop source answers (and times out) again.
    let (status, _) = app.post_with("/webhooks/spin", &[JSON], b"{}").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, logs) = app.get("/api/v1/sources/spin/function-logs").await;
    assert_eq!(logs["runs"][0]["outcome"], "timeout");
}

const FETCHER: &str = r#"async function onRequest(request, settings) {
  const r = await fetch(settings.url + '/probe', { method: 'POST', body: JSON.stringify({hello: 1}), headers: {'x-probe': '1'} });
  Segment.track({event: 'Fetched', userId: 'u', properties: {status: r.status}});
}"#;

#[tokio::test]
async fn fetch_to_a_private_address_is_refused_unless_allowed() {
    let rx = Receiver::start().await;
    for allowed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sources = format!(
            "  - {{ id: fetcher, type: webhook, public: true, function: \"{}\", settings: {{ url: \"{}\" }} }}\n",
            function(d, "fetcher", FETCHER),
            rx.url
        );
        let server = if allowed {
            format!(", egress_allow: [\"127.0.0.1:{}\"]", rx.port)
        } else {
            String::new()
        };
        let app = start(d, &sources, "", &server).await;
        let (status, resp) = app.post_with("/webhooks/fetcher", &[JSON], b"{}").await;
        if allowed {
            assert_eq!(
                (status, resp["emitted"].as_u64()),
                (StatusCode::OK, Some(1)),
                "{resp}"
            );
            let got = rx
                .wait_for("the probe", |r| r.iter().any(|x| x.path == "/probe"))
                .await;
            let probe = got.iter().find(|x| x.path == "/probe").unwrap();
            assert_eq!(
                (probe.header("x-probe"), probe.json()),
                (Some("1"), json!({"hello": 1}))
            );
            assert_eq!(app.delivered(1).await[0]["properties"]["status"], 200);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
            let msg = resp["message"].as_str().unwrap();
            assert!(
                msg.contains("TypeError") && msg.contains("refused"),
                "{msg}"
            );
            assert!(rx.received().iter().all(|x| x.path != "/probe"));
        }
        app.stop().await;
    }
}

const CLASSES: &str = r#"async function onRequest(request) {
  const b = request.json();
  console.log('class', b.throw);
  if (b.throw === 'ValidationError') throw new ValidationError('bad survey');
  if (b.throw === 'InvalidEventPayload') throw new InvalidEventPayload('bad payload');
  if (b.throw === 'EventNotSupported') throw new EventNotSupported('not this one');
  if (b.throw === 'Error') throw new Error('plain');
  if (b.throw === 'RetryError') {
    globalThis.runs = (globalThis.runs || 0) + 1;
    if (globalThis.runs < 3) throw new RetryError('upstream busy, run ' + globalThis.runs);
  }
  if (b.throw === 'always') throw new RetryError('never works');
  Segment.track({event: 'Done', userId: 'u', properties: {runs: globalThis.runs || 0}});
}"#;

#[tokio::test]
async fn error_classes_and_retry_error_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sources = format!(
        "  - {{ id: classes, type: webhook, public: true, function: \"{}\" }}\n",
        function(d, "classes", CLASSES)
    );
    let app = start(
        d,
        &sources,
        "workers: 1, retry: { attempts: 3, initial: 50ms, max: 200ms }",
        "",
    )
    .await;
    for class in [
        "ValidationError",
        "InvalidEventPayload",
        "EventNotSupported",
        "Error",
    ] {
        let body = json!({ "throw": class }).to_string();
        let (status, resp) = app
            .post_with("/webhooks/classes", &[JSON], body.as_bytes())
            .await;
        assert_eq!(
            (status, resp["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("function_error")),
            "{class}"
        );
        assert!(
            resp["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{class}: ")),
            "{resp}"
        );
    }
    let rejected = app.recent_of("classes", "status=rejected").await;
    assert_eq!(rejected.len(), 4);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("function_error: Error: plain")
    );
    // RetryError: 202 once stored, then re-run until it succeeds (third run).
    let (status, resp) = app
        .post_with("/webhooks/classes", &[JSON], br#"{"throw":"RetryError"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
    let events = app.delivered(1).await;
    assert_eq!(
        (
            events.len(),
            &events[0]["event"],
            &events[0]["properties"]["runs"]
        ),
        (1, &json!("Done"), &json!(3))
    );
    let (_, logs) = app.get("/api/v1/sources/classes/function-logs").await;
    let triggers: Vec<_> = logs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|r| {
            (
                r["trigger"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        triggers,
        [("retry", "ok"), ("retry", "retry"), ("webhook", "retry")]
    );
    assert_eq!(logs["runs"][0]["logs"][0]["message"], "class RetryError");
    // Always failing: dead-lettered with the reason after `attempts` runs.
    let (status, _) = app
        .post_with("/webhooks/classes", &[JSON], br#"{"throw":"always"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, body) = app
            .get("/api/v1/sources/classes/function-dead-letters")
            .await;
        if body["dead_letters"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            || Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dl = &dead["dead_letters"][0];
    assert_eq!(dl["attempts"], 3);
    assert_eq!(dl["reason"], "after 3 runs: RetryError: never works");
    assert_eq!(dl["body"], r#"{"throw":"always"}"#);
}

#[tokio::test]
async fn a_retry_waiting_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let code = "async function onRequest(request) { if (!globalThis.ok) { globalThis.ok = true; throw new RetryError('later'); } Segment.track({event: 'Late', userId: 'u'}); }";
    let sources = format!(
        "  - {{ id: late, type: webhook, public: true, function: \"{}\" }}\n",
        function(d, "late", code)
    );
    let app = start(
        d,
        &sources,
        "workers: 1, retry: { attempts: 3, initial: 2s, max: 2s }",
        "",
    )
    .await;
    let (status, _) = app.post_with("/webhooks/late", &[JSON], b"{}").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.stop().await;
    // A fresh process re-runs the stored request: its new engine throws once more, then
    // the next run succeeds.
    let app = start(
        d,
        &sources,
        "workers: 1, retry: { attempts: 3, initial: 2s, max: 2s }",
        "",
    )
    .await;
    let events = app.delivered(1).await;
    assert_eq!(events.len(), 1, "the stored request ran after the restart");
    assert_eq!(events[0]["event"], "Late");
}

const SLOW_ORDER: &str = r#"
async function onRequest(request, settings) {
  const body = request.json();
  await new Promise((resolve) => setTimeout(resolve, 400));
  Segment.track({ event: "Order Paid", userId: body.customer, properties: { order: body.id } });
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_flight_is_not_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sources = format!(
        "  - {{ id: orders, type: webhook, public: true, function: \"{}\", idempotency: {{ key: id }} }}\n",
        function(d, "orders", SLOW_ORDER)
    );
    let app = start(d, &sources, "workers: 2", "").await;
    let body = json!({"id": "ord-1", "customer": "c-1"}).to_string();
    let url = format!("{}/webhooks/orders", app.url);
    let send = || {
        let (url, body) = (url.clone(), body.clone());
        async move {
            switchyard::cli::client::call_with_headers(
                hyper::Method::POST,
                &url,
                &[JSON],
                Some(body.into_bytes()),
            )
            .await
            .unwrap()
        }
    };
    // The same order twice at once: one runs, the other is told to come back.
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let conflict = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    let v: Value = serde_json::from_slice(&conflict.body).unwrap();
    assert_eq!(v["code"], "idempotency_in_progress", "{v}");
    // Coming back later, it is a replay, and the order was emitted once.
    let again = send().await;
    let v: Value = serde_json::from_slice(&again.body).unwrap();
    assert_eq!(
        (again.status, &v["duplicate"]),
        (StatusCode::OK, &json!(true))
    );
    let emitted = app.recent_of("orders", "status=accepted").await;
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    app.stop().await;
}
