//! Category 6: the real binary with every kind of secret configured, every route exercised
//! (ingest, webhook sources with secrets in headers, body and query, failed deliveries to a
//! URL with user-info, dead letters, function logs and dead letters, inspect, metrics,
//! openapi, the live stream, lineage, profiles, test-function, the CLI's `inspect` and
//! `check`) and its log at info level. No answer, log line or CLI output may hold a secret
//! in clear; under `data_dir`, only the stores that must hold a secret to retry may.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use hyper::Method;
use serde_json::json;
use switchyard::cli::client;

use super::{contains, files_under, poll_json, serve, stop};
use crate::harness::basic;
use crate::receiver::Receiver;

const WK_PROD: &str = "wk-prod-s3cr3t-0a1b2c";
const WK_DEV: &str = "wk-dev-s3cr3t-3d4e5f";
const SEG_SECRET: &str = "seg-verify-s3cr3t-6a7b";
const SW_KEY_B64: &str = "C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const HUB_SECRET: &str = "hub-verify-s3cr3t-8c9d";
const SRC_TOKEN: &str = "src-token-s3cr3t-0e1f2a";
const ADMIN: &str = "admin-token-s3cr3t-3b4c5d";
const NATS_PASSWORD: &str = "nats-pw-s3cr3t-6e7f";
const PG_PASSWORD: &str = "pg-pw-s3cr3t-8a9b";
const HOOK_PASSWORD: &str = "hook-pw-s3cr3t-0c1d";
const HOOK_QUERY_TOKEN: &str = "hook-qtoken-s3cr3t-2e3f";
const HOOK_AUTH: &str = "hook-auth-s3cr3t-4a5b";
const HOOK_API_KEY: &str = "hook-apikey-s3cr3t-6c7d";
const SHARED_SECRET: &str = "shared-s3cr3t-8e9f";
const FWD_WRITE_KEY: &str = "fwd-wk-s3cr3t-0a1c";
const REQ_COOKIE: &str = "req-cookie-s3cr3t-2b3d";
const REQ_API_KEY: &str = "req-apikey-s3cr3t-4c5e";

/// Every secret, by name.
fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("write_keys.production", WK_PROD),
        ("write_keys.development", WK_DEV),
        ("segment verify secret", SEG_SECRET),
        ("standard_webhooks secret", SW_KEY_B64),
        ("hmac_sha256 secret", HUB_SECRET),
        ("source token", SRC_TOKEN),
        ("admin_token", ADMIN),
        ("nats password", NATS_PASSWORD),
        ("postgres password", PG_PASSWORD),
        ("webhook URL password", HOOK_PASSWORD),
        ("webhook URL query token", HOOK_QUERY_TOKEN),
        ("webhook Authorization header", HOOK_AUTH),
        ("webhook X-Api-Key header", HOOK_API_KEY),
        ("shared_secret", SHARED_SECRET),
        ("segment destination write_key", FWD_WRITE_KEY),
        ("request Cookie", REQ_COOKIE),
        ("request X-Api-Key", REQ_API_KEY),
    ]
}

const FUNCTION: &str = r#"async function onRequest(request, settings) {
  const b = request.json();
  console.log('headers', JSON.stringify([...request.headers]));
  console.log('url', request.url.href, 'body', request.text());
  if (b.retry) throw new RetryError('later, ' + request.headers.get('authorization'));
  if (b.fail) throw new Error('failed with ' + request.headers.get('cookie') + ' ' + b.writeKey);
  Segment.track({ event: 'FromFn', userId: 'u', messageId: b.messageId });
}
"#;

fn config(dir: &Path, rx: u16) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{data}", shutdown_timeout: 5s, min_free_disk: 1MiB, admin_token: {ADMIN}, egress_allow: ["127.0.0.1:{rx}"] }}
functions: {{ workers: 1, retry: {{ attempts: 2, initial: 50ms, max: 100ms }} }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {WK_PROD}, development: {WK_DEV} }} }}
  - {{ id: seg, type: webhook, verify: {{ scheme: segment, secret: {SEG_SECRET} }} }}
  - {{ id: sw, type: webhook, verify: {{ scheme: standard_webhooks, secret: "whsec_{SW_KEY_B64}" }} }}
  - {{ id: hub, type: webhook, verify: {{ scheme: hmac_sha256, secret: {HUB_SECRET}, header: X-Hub-Signature-256, prefix: "sha256=" }} }}
  - {{ id: tok, type: webhook, token: {SRC_TOKEN}, function: "{dir}/fn.js" }}
destinations:
  - id: hook
    type: webhook
    start: earliest
    settings: {{ shared_secret: {SHARED_SECRET} }}
    retry: {{ initial_backoff: 20ms, max_backoff: 100ms, max_age: 1s }}
    mappings:
      - name: m
        subscribe: 'type = "track"'
        url: "http://hookuser:{HOOK_PASSWORD}@127.0.0.1:{rx}/hook?token={HOOK_QUERY_TOKEN}&x=1"
        headers: {{ Authorization: "Bearer {HOOK_AUTH}", X-Api-Key: "{HOOK_API_KEY}" }}
  - {{ id: fwd, type: segment, start: earliest, retry: {{ initial_backoff: 20ms, max_backoff: 100ms, max_age: 1s }}, settings: {{ endpoint: "http://127.0.0.1:{rx}/seg", write_key: {FWD_WRITE_KEY} }} }}
  - {{ id: stream, type: nats, settings: {{ url: "nats://syuser:{NATS_PASSWORD}@127.0.0.1:1", subject: "sy.x" }} }}
  - {{ id: wh, type: postgres, settings: {{ url: "postgres://pguser:{PG_PASSWORD}@127.0.0.1:1/db", batch_interval: 100ms }} }}
"#,
        data = dir.join("data").display(),
        dir = dir.display()
    )
}

fn hmac_hex<M: Mac + KeyInit>(key: &str, body: &[u8]) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Reads `GET /api/v1/stream` for `window`, while `during` runs.
fn stream(url: &str, window: Duration) -> std::thread::JoinHandle<String> {
    let addr = url.trim_start_matches("http://").to_owned();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (mut got, mut buf) = (Vec::new(), [0u8; 8192]);
        let end = Instant::now() + window;
        while Instant::now() < end {
            if let Ok(n) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_shown_logged_or_stored_in_clear() {
    let rx = Receiver::start().await;
    rx.answer(500);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fn.js"), FUNCTION).unwrap();
    let cfg = dir.path().join("switchyard.yaml");
    std::fs::write(&cfg, config(dir.path(), rx.port)).unwrap();
    let (child, url, log) = serve(&cfg, &[], "info").await;
    let admin = format!("Bearer {ADMIN}");
    let mut shown: Vec<(String, String)> = Vec::new();
    let live = stream(&url, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Requests; every answer is kept.
    let mut call = async |what: &str,
                          method: Method,
                          path: &str,
                          headers: Vec<(&str, String)>,
                          body: Vec<u8>| {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = client::call_with_headers(method, &format!("{url}{path}"), &h, Some(body))
            .await
            .unwrap();
        shown.push((
            what.to_owned(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ));
        r.status
    };
    let track = |mid: &str, extra: serde_json::Value| {
        let mut e =
            json!({"type": "track", "event": "Secretive", "userId": "u1", "messageId": mid});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e.to_string().into_bytes()
    };
    // Ingest: Basic auth, the body's writeKey, a rejected event carrying the key.
    call("ingest basic", Method::POST, "/v1/batch", vec![("authorization", basic(WK_PROD))], json!({"batch": [json!({"type": "track", "event": "Secretive", "userId": "u1", "messageId": "in-1"})]}).to_string().into_bytes()).await;
    call(
        "ingest body key",
        Method::POST,
        "/v1/track",
        vec![],
        track("in-2", json!({"writeKey": WK_DEV})),
    )
    .await;
    call(
        "ingest rejected",
        Method::POST,
        "/v1/track",
        vec![],
        track("in-3", json!({"writeKey": WK_PROD, "userId": null})),
    )
    .await;
    call(
        "ingest wrong key",
        Method::POST,
        "/v1/track",
        vec![("authorization", basic("wk-wrong"))],
        track("in-4", json!({})),
    )
    .await;
    // Webhooks: signed, unsigned, with secrets in headers, body and query.
    let body = track("seg-1", json!({"writeKey": WK_PROD}));
    call(
        "segment signed",
        Method::POST,
        "/webhooks/seg",
        vec![(
            "x-signature",
            hmac_hex::<Hmac<sha1::Sha1>>(SEG_SECRET, &body),
        )],
        body,
    )
    .await;
    call(
        "segment unverified",
        Method::POST,
        "/webhooks/seg",
        vec![
            ("x-signature", "00".into()),
            ("cookie", format!("s={REQ_COOKIE}")),
        ],
        track("seg-2", json!({"writeKey": WK_PROD})),
    )
    .await;
    let body = track("hub-1", json!({}));
    call(
        "hub signed",
        Method::POST,
        "/webhooks/hub",
        vec![(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hmac_hex::<Hmac<sha2::Sha256>>(HUB_SECRET, &body)
            ),
        )],
        body,
    )
    .await;
    let secret_headers = || {
        vec![
            ("cookie", format!("session={REQ_COOKIE}")),
            ("x-api-key", REQ_API_KEY.to_owned()),
        ]
    };
    call(
        "token in path",
        Method::POST,
        &format!("/webhooks/tok/{SRC_TOKEN}"),
        secret_headers(),
        track("tok-1", json!({"writeKey": WK_PROD})),
    )
    .await;
    call(
        "token in query",
        Method::POST,
        &format!("/webhooks/tok?token={SRC_TOKEN}&x=1"),
        secret_headers(),
        track("tok-2", json!({})),
    )
    .await;
    let mut h = secret_headers();
    h.push(("authorization", format!("Bearer {SRC_TOKEN}")));
    call(
        "token as bearer",
        Method::POST,
        "/webhooks/tok",
        h.clone(),
        track("tok-3", json!({})),
    )
    .await;
    call(
        "function fails",
        Method::POST,
        "/webhooks/tok",
        h.clone(),
        track("tok-4", json!({"fail": true, "writeKey": WK_PROD})),
    )
    .await;
    call(
        "function retries (path)",
        Method::POST,
        &format!("/webhooks/tok/{SRC_TOKEN}"),
        h.clone(),
        track("tok-5", json!({"retry": true, "writeKey": WK_PROD})),
    )
    .await;
    call(
        "function retries (query)",
        Method::POST,
        &format!("/webhooks/tok?token={SRC_TOKEN}"),
        h.clone(),
        track("tok-6", json!({"retry": true})),
    )
    .await;
    call(
        "wrong token",
        Method::POST,
        "/webhooks/tok/not-the-token-at-all",
        h.clone(),
        track("tok-7", json!({})),
    )
    .await;

    // Wait for the failures to settle: dead letters on both HTTP destinations and the function.
    let auth = Some(admin.as_str());
    for d in ["hook", "fwd"] {
        poll_json(
            &format!("{url}/api/v1/destinations/{d}/dead-letters"),
            auth,
            "dead letters",
            |v| v["dead_letters"].as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    }
    poll_json(
        &format!("{url}/api/v1/sources/tok/function-dead-letters"),
        auth,
        "function dead letters",
        |v| v["dead_letters"].as_array().is_some_and(|a| a.len() >= 2),
    )
    .await;
    poll_json(
        &format!("{url}/api/v1/inspect"),
        auth,
        "nats and postgres errors",
        |v| {
            v["destinations"]
                .as_array()
                .is_some_and(|ds| ds.iter().filter(|d| d["last_error"].is_string()).count() >= 2)
        },
    )
    .await;
    let a = || vec![("authorization", admin.clone())];
    let mut gets: Vec<String> = vec![
        "/api/v1/inspect".into(),
        "/metrics".into(),
        "/api/v1/openapi.json".into(),
        "/api/v1/profiles/u1".into(),
        "/api/v1/sources/tok/function-logs".into(),
        "/api/v1/sources/tok/function-dead-letters".into(),
        "/api/v1/events/in-1?source=web".into(),
        "/api/v1/events/seg-1?source=seg".into(),
        "/api/v1/events/tok-1?source=tok".into(),
    ];
    for s in ["web", "seg", "sw", "hub", "tok"] {
        gets.push(format!("/api/v1/sources/{s}/events?limit=1000"));
    }
    for d in ["hook", "fwd", "stream", "wh"] {
        gets.push(format!("/api/v1/destinations/{d}/deliveries?limit=1000"));
        gets.push(format!("/api/v1/destinations/{d}/dead-letters?limit=1000"));
    }
    for g in &gets {
        call(g, Method::GET, g, a(), vec![]).await;
    }
    let saved = json!({"headers": {"Authorization": format!("Bearer {SRC_TOKEN}")}, "body": {"messageId": "t-1"}, "url": format!("http://x/webhooks/tok/{SRC_TOKEN}")});
    call(
        "test-function",
        Method::POST,
        "/api/v1/sources/tok/test-function",
        a(),
        saved.to_string().into_bytes(),
    )
    .await;
    call(
        "replay dead letters",
        Method::POST,
        "/api/v1/destinations/hook/dead-letters/replay",
        a(),
        b"{}".to_vec(),
    )
    .await;
    shown.push(("the live stream".into(), live.join().unwrap()));
    // The CLI, live and against the config.
    shown.push((
        "inspect --url".into(),
        super::cli(vec![
            "inspect".into(),
            "--url".into(),
            url.clone(),
            "--token".into(),
            ADMIN.into(),
        ])
        .await,
    ));
    shown.push((
        "inspect --url --format json".into(),
        super::cli(vec![
            "inspect".into(),
            "--url".into(),
            url.clone(),
            "--token".into(),
            ADMIN.into(),
            "--format".into(),
            "json".into(),
        ])
        .await,
    ));
    shown.push((
        "inspect --config".into(),
        super::cli(vec![
            "inspect".into(),
            "--config".into(),
            cfg.display().to_string(),
        ])
        .await,
    ));
    shown.push((
        "check".into(),
        super::cli(vec![
            "check".into(),
            "--config".into(),
            cfg.display().to_string(),
        ])
        .await,
    ));
    stop(child);
    shown.push(("the server's log (info)".into(), log.join().unwrap()));
    shown.push((
        "inspect --data-dir (offline)".into(),
        super::cli(vec![
            "inspect".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ])
        .await,
    ));

    let mut leaks = Vec::new();
    for (what, text) in &shown {
        for (name, value) in secrets() {
            if text.contains(value) {
                let at = text.find(value).unwrap();
                let around = &text[at.saturating_sub(80)..(at + value.len() + 40).min(text.len())];
                leaks.push(format!("{what} shows the {name}: …{around}…"));
            }
        }
    }
    // Under data_dir: which file holds which secret.
    let data = dir.path().join("data");
    let mut stored = Vec::new();
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for (name, value) in secrets() {
            if contains(&bytes, value.as_bytes()) {
                let rel = f.strip_prefix(&data).unwrap().display().to_string();
                stored.push(format!("{rel}: {name}"));
            }
        }
    }
    stored.sort();
    // What the delivery store must keep to send a retry (the mapping renders URL and headers
    // once per event; signatures are computed per attempt, so the shared secret is not kept).
    let allowed = [
        "deliveries.redb: webhook URL password",
        "deliveries.redb: webhook URL query token",
        "deliveries.redb: webhook Authorization header",
        "deliveries.redb: webhook X-Api-Key header",
        "deliveries.redb: segment destination write_key",
    ];
    let unexpected: Vec<&String> = stored
        .iter()
        .filter(|s| !allowed.iter().any(|a| a == s))
        .collect();
    eprintln!(
        "secrets: {} outputs checked; stored under data_dir: {stored:#?}",
        shown.len()
    );
    assert!(
        leaks.is_empty() && unexpected.is_empty(),
        "shown in clear:\n{}\nstored in clear:\n{unexpected:#?}",
        leaks.join("\n")
    );
}
